//! `conbool exchange --config FILE --target online|onprem [--tenant NAME]`: prints the
//! PowerShell that sets up the Exchange side of DESIGN.md §1 for one tenant: the connectors
//! between Exchange and the relay, the rule that routes outbound mail through the relay (with
//! the exceptions that keep mail from looping), and the rule that turns `X-Conbool-Flag: YES`
//! into SCL 7.
//!
//! Every value comes from the configuration (`server.hostname`, the tenant's loop header,
//! `[exchange]`); a value the script needs and the configuration lacks is an error that names
//! the key, never a guess. Strings are written as PowerShell single-quoted literals
//! ([`quote`]), and each command is a splatted hashtable so that the admin can read, edit
//! and re-run one parameter at a time.
//!
//! Also here: [`check_warnings`], the Exchange section of `conbool check` (certificate names,
//! client certificates and TLS toward Exchange Online, IPv4 addresses for on-premises).
//!
//! Must not touch: sockets or the relay's runtime; it only reads the configuration and the
//! certificate files it names.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rustls::client::verify_server_name;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::ParsedCertificate;

use crate::cli::check::MAX_REFERENCED_FILE_BYTES;
use crate::config::{Config, NextHopTls, Tenant};
use crate::tls::next_hop_server_name;

/// `conbool exchange` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The relay's configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Which Exchange: `online` (Exchange Online / Microsoft 365) or `onprem` (Exchange Server).
    #[arg(long, value_enum)]
    pub target: Target,
    /// The tenant (its `name`) to write the script for; required when there are several.
    #[arg(long, value_name = "NAME")]
    pub tenant: Option<String>,
}

/// The Exchange the script is for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Exchange Online (Microsoft 365): outbound and inbound connectors.
    Online,
    /// Exchange Server on premises: send and receive connectors.
    Onprem,
}

/// Why no script could be written; the message names the key or flag to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeError(String);

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExchangeError {}

/// One finding of [`check_warnings`]: the key to look at and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeWarning {
    /// The key path, such as `tenant[0].client_cert`.
    pub key: String,
    /// What looks wrong, and what Exchange does about it.
    pub message: String,
}

impl fmt::Display for ExchangeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Host name suffixes of Exchange Online's inbound endpoints (worldwide, US Government
/// GCC High/DoD, and Microsoft 365 operated by 21Vianet): a next hop ending in one of them
/// is Exchange Online.
pub const EXCHANGE_ONLINE_SUFFIXES: &[&str] = &[
    ".mail.protection.outlook.com",
    ".mail.protection.office365.us",
    ".mail.protection.partner.outlook.cn",
];

/// Runs `conbool exchange`: the script on stdout and exit 0, or the problem on stderr and
/// exit 1.
pub fn main(args: Args) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(1);
        }
    };
    match script(&config, args.target, args.tenant.as_deref()) {
        Ok(text) => {
            let mut out = io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("conbool exchange: cannot write the script: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("conbool exchange: {}: {e}", args.config.display());
            ExitCode::from(1)
        }
    }
}

/// The PowerShell script for `target` and the tenant named `tenant` (which may be omitted
/// when the configuration has exactly one).
pub fn script(
    config: &Config,
    target: Target,
    tenant: Option<&str>,
) -> Result<String, ExchangeError> {
    let (index, tenant) = choose_tenant(config, tenant)?;
    let host = relay_host(config)?;
    if target == Target::Onprem && config.exchange.public_ips.is_empty() {
        return Err(ExchangeError(
            "exchange.public_ips is empty: the on-premises receive connector needs the relay's \
             public IPv4 addresses (RemoteIPRanges)"
                .to_string(),
        ));
    }
    let mut w = Script::default();
    header(&mut w, config, target, tenant, host);
    let warnings: Vec<ExchangeWarning> = check_warnings(config)
        .into_iter()
        .filter(|warning| concerns(warning, target, index))
        .collect();
    if !warnings.is_empty() || !listens_on_port_25(config) {
        w.line("");
        for warning in &warnings {
            w.comment(&format!("Warning: {warning}"));
        }
        if !listens_on_port_25(config) {
            w.comment(&format!(
                "Warning: server.listen has no address on port 25, and Exchange connects to port 25 of {host}: a load balancer or NAT must forward it"
            ));
        }
    }
    w.line("");
    w.line("$ErrorActionPreference = 'Stop'");
    match target {
        Target::Online => online(&mut w, config, tenant, host),
        Target::Onprem => onprem(&mut w, config, host),
    }
    Ok(w.text)
}

/// The Exchange findings of `conbool check`:
/// - `server.hostname` not covered by the first certificate of `tls.cert` (Exchange verifies
///   the smart host's certificate against it: `DomainValidation`);
/// - a tenant whose next hop is Exchange Online without a client certificate, or with one that
///   does not cover `server.hostname` (the inbound connector recognises the relay by it:
///   `TlsSenderCertificateName`), or with `next_hop_tls` below `verify`;
/// - `exchange.public_ips` listing only IPv6 addresses.
///
/// On-premises next hops are not asked for a client certificate: the receive connector
/// recognises the relay by its addresses (`RemoteIPRanges`), since Exchange Server checks a
/// sending server's certificate name only for Domain Security partners.
///
/// Certificate files that cannot be read or parsed are skipped here: the file checks of
/// `conbool check` report them.
pub fn check_warnings(config: &Config) -> Vec<ExchangeWarning> {
    let mut found = Vec::new();
    let host = config.server.hostname.as_str();
    if let Some(tls) = &config.tls {
        if let Some(false) = leaf_covers(&tls.cert, host) {
            found.push(ExchangeWarning {
                key: "server.hostname".to_string(),
                message: format!(
                    "{host} is not a name of the first certificate in tls.cert ({}): Exchange \
                     verifies the relay's certificate against it (TlsSettings/TlsAuthLevel \
                     DomainValidation) and will not deliver (450 4.4.317 ... SubjectMismatch)",
                    tls.cert.display()
                ),
            });
        }
    }
    for (i, t) in config.tenants.iter().enumerate() {
        if !is_exchange_online(&t.next_hop) {
            continue;
        }
        let path = format!("tenant[{i}]");
        // A tenant without its own presents `tls.client_cert`.
        let client_cert = t
            .client_cert
            .as_ref()
            .or_else(|| config.tls.as_ref().and_then(|tls| tls.client_cert.as_ref()));
        match client_cert {
            None => found.push(ExchangeWarning {
                key: format!("{path}.client_cert"),
                message: format!(
                    "absent, and the next hop {} is Exchange Online: its inbound connector \
                     recognises the relay by a client certificate for {host} \
                     (TlsSenderCertificateName); without one, mail handed back is treated as \
                     anonymous internet mail (outbound mail is refused: 550 5.7.64 \
                     TenantAttribution)",
                    t.next_hop
                ),
            }),
            Some(cert) => {
                if let Some(false) = leaf_covers(cert, host) {
                    found.push(ExchangeWarning {
                        key: format!("{path}.client_cert"),
                        message: format!(
                            "{host} is not a name of its first certificate ({}): Exchange \
                             Online's inbound connector expects TlsSenderCertificateName {host}",
                            cert.display()
                        ),
                    });
                }
            }
        }
        if t.next_hop_tls != NextHopTls::Verify {
            found.push(ExchangeWarning {
                key: format!("{path}.next_hop_tls"),
                message: format!(
                    "\"{}\", and the next hop {} is Exchange Online, which always offers TLS \
                     with a public certificate: use \"verify\" so that mail cannot be handed \
                     to an impostor",
                    tls_mode_name(t.next_hop_tls),
                    t.next_hop
                ),
            });
        }
    }
    let ips = &config.exchange.public_ips;
    if !ips.is_empty() && ips.iter().all(|ip| ip.is_ipv6()) {
        found.push(ExchangeWarning {
            key: "exchange.public_ips".to_string(),
            message: "lists only IPv6 addresses: the on-premises receive connector needs the \
                      relay's public IPv4 addresses, which Exchange sees when the relay connects \
                      over IPv4"
                .to_string(),
        });
    }
    found
}

/// Whether a `host:port` next hop is Exchange Online.
pub fn is_exchange_online(next_hop: &str) -> bool {
    let host = next_hop_server_name(next_hop).to_ascii_lowercase();
    EXCHANGE_ONLINE_SUFFIXES
        .iter()
        .any(|suffix| host.ends_with(suffix))
}

/// `text` as a PowerShell single-quoted string literal: nothing inside is expanded, and each
/// single quote is doubled, including the typographic ones PowerShell also takes as quotes
/// (U+2018 to U+201B).
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if is_single_quote(c) {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The characters PowerShell's tokenizer treats as a single quote.
fn is_single_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

fn choose_tenant<'c>(
    config: &'c Config,
    name: Option<&str>,
) -> Result<(usize, &'c Tenant), ExchangeError> {
    let names = || {
        config
            .tenants
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => config
            .tenants
            .iter()
            .enumerate()
            .find(|(_, t)| t.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                ExchangeError(format!(
                    "--tenant {name:?}: no [[tenant]] has that name; the tenants are {}",
                    names()
                ))
            }),
        None => match config.tenants.as_slice() {
            [only] => Ok((0, only)),
            _ => Err(ExchangeError(format!(
                "the configuration has {} tenants ({}): choose one with --tenant NAME",
                config.tenants.len(),
                names()
            ))),
        },
    }
}

/// `server.hostname`, which must be a fully qualified name: it is the smart host Exchange
/// looks up in DNS and the name it verifies the certificate against.
fn relay_host(config: &Config) -> Result<&str, ExchangeError> {
    let host = config.server.hostname.as_str();
    if !host.contains('.') {
        return Err(ExchangeError(format!(
            "server.hostname {host:?} is not a fully qualified domain name: the Exchange \
             connectors need the relay's public DNS name (the name in its certificate)"
        )));
    }
    Ok(host)
}

/// Whether `warning` belongs in the script for `target` and the tenant at `index`.
fn concerns(warning: &ExchangeWarning, target: Target, index: usize) -> bool {
    let key = warning.key.as_str();
    match key.strip_prefix("tenant[") {
        Some(rest) => target == Target::Online && rest.starts_with(&format!("{index}]")),
        None if key == "exchange.public_ips" => target == Target::Onprem,
        None => true,
    }
}

fn listens_on_port_25(config: &Config) -> bool {
    config.server.listen.iter().any(|a| a.port() == 25)
}

fn header(w: &mut Script, config: &Config, target: Target, tenant: &Tenant, host: &str) {
    let x = &config.exchange;
    let (what, session) = match target {
        Target::Online => (
            "Exchange Online",
            "into PowerShell after Connect-ExchangeOnline",
        ),
        Target::Onprem => (
            "Exchange Server (on premises)",
            "into the Exchange Management Shell",
        ),
    };
    w.comment(&format!(
        "{what} setup for the conbool tenant {}",
        tenant.name
    ));
    w.comment(&format!(
        "Written by `conbool exchange --target {}` (conbool {}). Paste it {session}; \
         add -WhatIf to a command to see what it would do.",
        match target {
            Target::Online => "online",
            Target::Onprem => "onprem",
        },
        env!("CARGO_PKG_VERSION")
    ));
    w.comment("");
    w.comment(&format!("  relay host name  {host}  (server.hostname)"));
    w.comment(&format!(
        "  loop header      {}: true  (the relay adds it to every message it hands back)",
        tenant.loop_header()
    ));
    w.comment("  spam header      X-Conbool-Flag: YES or NO");
    w.comment(&format!(
        "  connectors       {}  (exchange.connector_name)",
        x.connector_name
    ));
    match target {
        Target::Online => w.comment(&format!(
            "  rules            \"{}\" priority {}, \"{}\" priority {}  (exchange.rule_priority)",
            x.relay_rule_name(),
            x.rule_priority,
            x.spam_rule_name(),
            x.rule_priority + 1
        )),
        Target::Onprem => {
            w.comment(&format!(
                "  rule             \"{}\" priority {}  (exchange.rule_priority)",
                x.spam_rule_name(),
                x.rule_priority
            ));
            let ips: Vec<String> = x.public_ips.iter().map(|ip| ip.to_string()).collect();
            w.comment(&format!(
                "  relay addresses  {}  (exchange.public_ips)",
                ips.join(", ")
            ));
        }
    }
    w.comment("");
    match target {
        Target::Online => {
            w.comment(&format!(
                "Before you run it: the relay needs a certificate for {host} from a public CA, with its"
            ));
            w.comment(
                "full chain, as tls.cert (Exchange Online verifies it when it connects) and as the tenant's",
            );
            w.comment(
                "client_cert (Exchange Online recognises the relay by it when mail comes back), and DNS",
            );
            w.comment(&format!(
                "must resolve {host} to the relay. See docs/exchange-online.md."
            ));
        }
        Target::Onprem => {
            w.comment(&format!(
                "Before you run it: the relay needs a certificate for {host} that the Exchange servers"
            ));
            w.comment(
                "trust, and the relay's next hop for this tenant must be these servers, port 25.",
            );
            w.comment(
                "Exchange Server's transport rules cannot choose a connector (RouteMessageOutboundConnector",
            );
            w.comment(
                "is Exchange Online only), so the send connector below carries all mail to external",
            );
            w.comment(
                "domains; see docs/exchange-onprem.md for the mail-flow layout that keeps returning mail",
            );
            w.comment("from being sent to the relay again.");
        }
    }
}

fn online(w: &mut Script, config: &Config, tenant: &Tenant, host: &str) {
    let x = &config.exchange;
    let loop_header = tenant.loop_header();
    w.line("");
    w.comment(
        "1. Outbound connector: Exchange Online hands mail to the relay, only when a rule says so.",
    );
    w.comment(&format!(
        "   TLS is always used and the relay's certificate must be valid for {host}."
    ));
    w.splat(
        "outboundConnector",
        "New-OutboundConnector",
        &[
            ("Name", Value::text(&x.connector_name)),
            ("ConnectorType", Value::text("Partner")),
            ("IsTransportRuleScoped", Value::Bool(true)),
            ("UseMXRecord", Value::Bool(false)),
            ("SmartHosts", Value::text(host)),
            ("TlsSettings", Value::text("DomainValidation")),
            ("TlsDomain", Value::text(host)),
            (
                "Comment",
                Value::text("conbool relay: outbound mail goes through it when the rule picks this connector"),
            ),
        ],
    );
    w.line("");
    w.comment(
        "2. Inbound connector: mail the relay hands back is recognised by the relay's client",
    );
    w.comment(&format!(
        "   certificate for {host}, and only accepted over TLS."
    ));
    w.splat(
        "inboundConnector",
        "New-InboundConnector",
        &[
            ("Name", Value::text(&x.connector_name)),
            ("ConnectorType", Value::text("Partner")),
            ("SenderDomains", Value::text("*")),
            ("RequireTls", Value::Bool(true)),
            ("TlsSenderCertificateName", Value::text(host)),
            ("RestrictDomainsToCertificate", Value::Bool(true)),
            (
                "Comment",
                Value::text(
                    "conbool relay: mail coming back from it, recognised by its certificate",
                ),
            ),
        ],
    );
    w.line("");
    w.comment("3. Routing rule: mail from inside the organisation goes to the relay, except mail the relay");
    w.comment(&format!(
        "   already handled ({loop_header}: true), meeting requests and responses, and"
    ));
    w.comment("   bounces (null sender: Return-Path <> or envelope sender <>), which must not be filtered");
    w.comment(
        "   or footed. A transport rule has one header-matches slot, taken by the loop header, so",
    );
    w.comment("   Return-Path uses the header-contains one.");
    w.splat(
        "relayRule",
        "New-TransportRule",
        &[
            ("Name", Value::text(&x.relay_rule_name())),
            ("Priority", Value::Int(x.rule_priority)),
            ("FromScope", Value::text("InOrganization")),
            ("RouteMessageOutboundConnector", Value::text(&x.connector_name)),
            ("ExceptIfHeaderMatchesMessageHeader", Value::text(&loop_header)),
            ("ExceptIfHeaderMatchesPatterns", Value::text("true")),
            ("ExceptIfMessageTypeMatches", Value::text("Calendaring")),
            ("ExceptIfHeaderContainsMessageHeader", Value::text("Return-Path")),
            ("ExceptIfHeaderContainsWords", Value::text("<>")),
            ("ExceptIfFromAddressMatchesPatterns", Value::text("<>")),
            ("SenderAddressLocation", Value::text("HeaderOrEnvelope")),
            (
                "Comments",
                Value::text(&format!(
                    "conbool: route outbound mail through the relay; {loop_header} marks mail it already filtered"
                )),
            ),
        ],
    );
    spam_rule(w, config, "4.", x.rule_priority + 1);
}

fn onprem(w: &mut Script, config: &Config, host: &str) {
    let x = &config.exchange;
    let ips: Vec<String> = x.public_ips.iter().map(|ip| ip.to_string()).collect();
    // Listen on IPv6 as well only when the relay may connect over it.
    let mut bindings = vec!["0.0.0.0:25".to_string()];
    if x.public_ips.iter().any(|ip| ip.is_ipv6()) {
        bindings.push("[::]:25".to_string());
    }
    w.line("");
    w.comment("1. Send connector: mail to external domains goes to the relay as its smart host, over TLS,");
    w.comment(&format!(
        "   with the relay's certificate verified against {host} and no smart-host authentication."
    ));
    w.comment(
        "   It serves every external domain (AddressSpaces *): give your existing internet send",
    );
    w.comment("   connector a higher cost or disable it. Add SourceTransportServers to choose the servers");
    w.comment("   that use it (docs/exchange-onprem.md).");
    w.splat(
        "sendConnector",
        "New-SendConnector",
        &[
            ("Name", Value::text(&x.connector_name)),
            ("Usage", Value::text("Custom")),
            ("AddressSpaces", Value::text("*")),
            ("SmartHosts", Value::text(host)),
            ("Port", Value::Int(25)),
            ("DNSRoutingEnabled", Value::Bool(false)),
            ("SmartHostAuthMechanism", Value::text("None")),
            ("RequireTLS", Value::Bool(true)),
            ("TlsAuthLevel", Value::text("DomainValidation")),
            ("TlsDomain", Value::text(host)),
            (
                "Comment",
                Value::text("conbool relay: mail to external domains goes through it"),
            ),
        ],
    );
    w.line("");
    w.comment("2. Receive connector: the relay delivers inbound mail, and outbound mail it filtered, to port");
    w.comment("   25 of the Front End Transport service; only the relay's addresses use this connector, and");
    w.comment(
        "   only over TLS. Partner usage alone admits only Domain Security partners, so anonymous",
    );
    w.comment("   senders (the relay) are added to its permission groups.");
    w.splat_assign(
        "receiveConnector",
        "New-ReceiveConnector",
        "conboolReceive",
        &[
            ("Name", Value::text(&x.connector_name)),
            ("TransportRole", Value::text("FrontendTransport")),
            ("Usage", Value::text("Partner")),
            ("Bindings", Value::List(bindings)),
            ("RemoteIPRanges", Value::List(ips)),
            ("RequireTLS", Value::Bool(true)),
            ("PermissionGroups", Value::text("AnonymousUsers,Partners")),
            (
                "Comment",
                Value::text("conbool relay: mail it hands back, from its public addresses only"),
            ),
        ],
    );
    w.comment("   Mail the relay hands back for external recipients is relayed onwards: allow that on this");
    w.comment("   connector only (its remote addresses are the relay's).");
    w.line("$conboolReceive | Add-ADPermission -User 'NT AUTHORITY\\ANONYMOUS LOGON' -ExtendedRights 'Ms-Exch-SMTP-Accept-Any-Recipient'");
    spam_rule(w, config, "3.", x.rule_priority);
}

fn spam_rule(w: &mut Script, config: &Config, number: &str, priority: u32) {
    let x = &config.exchange;
    w.line("");
    w.comment(&format!(
        "{number} Spam rule: what the relay flagged (X-Conbool-Flag: YES) gets SCL 7, so the recipient's"
    ));
    w.comment(
        "   junk mail settings apply to it. The relay removes any X-Conbool-Flag it did not write.",
    );
    w.splat(
        "spamRule",
        "New-TransportRule",
        &[
            ("Name", Value::text(&x.spam_rule_name())),
            ("Priority", Value::Int(priority)),
            ("HeaderMatchesMessageHeader", Value::text("X-Conbool-Flag")),
            ("HeaderMatchesPatterns", Value::text("YES")),
            ("SetSCL", Value::Int(7)),
            (
                "Comments",
                Value::text("conbool: the relay flagged this message as spam"),
            ),
        ],
    );
}

/// Whether `name` is a name of the first certificate in the PEM file at `path`; `None` when
/// the file cannot be read or holds no usable certificate.
fn leaf_covers(path: &Path, name: &str) -> Option<bool> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| {
            f.take(MAX_REFERENCED_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
        })
        .ok()?;
    if bytes.len() as u64 > MAX_REFERENCED_FILE_BYTES {
        return None;
    }
    let leaf: CertificateDer<'static> =
        rustls_pemfile::certs(&mut bytes.as_slice()).next()?.ok()?;
    cert_covers(&leaf, name)
}

/// Whether the certificate is valid for `name` (subject alternative names, wildcards as
/// RFC 6125 allows); `None` when the certificate or the name cannot be parsed.
fn cert_covers(leaf: &CertificateDer<'_>, name: &str) -> Option<bool> {
    let cert = ParsedCertificate::try_from(leaf).ok()?;
    let server_name = ServerName::try_from(name).ok()?;
    Some(verify_server_name(&cert, &server_name).is_ok())
}

/// A value in a splatted hashtable.
enum Value {
    Text(String),
    List(Vec<String>),
    Bool(bool),
    Int(u32),
}

impl Value {
    fn text(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    fn render(&self) -> String {
        match self {
            Value::Text(s) => quote(s),
            Value::List(items) => {
                let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
                format!("@({})", quoted.join(", "))
            }
            Value::Bool(true) => "$true".to_string(),
            Value::Bool(false) => "$false".to_string(),
            Value::Int(n) => n.to_string(),
        }
    }
}

/// The script being written.
#[derive(Default)]
struct Script {
    text: String,
}

impl Script {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn comment(&mut self, text: &str) {
        if text.is_empty() {
            self.line("#");
        } else {
            self.line(&format!("# {text}"));
        }
    }

    /// `$var = @{ ... }` then `Cmdlet @var`.
    fn splat(&mut self, var: &str, cmdlet: &str, params: &[(&str, Value)]) {
        self.hashtable(var, params);
        self.line(&format!("{cmdlet} @{var}"));
    }

    /// As [`Script::splat`], keeping the cmdlet's output in `$result`.
    fn splat_assign(&mut self, var: &str, cmdlet: &str, result: &str, params: &[(&str, Value)]) {
        self.hashtable(var, params);
        self.line(&format!("${result} = {cmdlet} @{var}"));
    }

    fn hashtable(&mut self, var: &str, params: &[(&str, Value)]) {
        let width = params.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        self.line(&format!("${var} = @{{"));
        for (key, value) in params {
            let _ = writeln!(self.text, "    {key:<width$} = {}", value.render());
        }
        self.line("}");
    }
}

/// The `next_hop_tls` value as written in the file.
fn tls_mode_name(mode: NextHopTls) -> &'static str {
    match mode {
        NextHopTls::None => "none",
        NextHopTls::Opportunistic => "opportunistic",
        NextHopTls::Require => "require",
        NextHopTls::Verify => "verify",
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;

    use super::*;

    const ONE_TENANT: &str = r#"
[server]
listen = ["0.0.0.0:25"]
hostname = "mail.conbool.com"

[[tenant]]
name = "example.co.uk"
next_hop = "example-co-uk.mail.protection.outlook.com:25"
next_hop_tls = "verify"
client_cert = "/etc/conbool/client-fullchain.pem"
client_key = "/etc/conbool/client-key.pem"

[exchange]
public_ips = ["198.51.100.10"]
"#;

    fn parse(text: &str) -> Config {
        Config::from_toml_str(text, Path::new("/etc/conbool/conbool.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// The script's lines, trimmed, for exact-line assertions.
    fn lines(script: &str) -> Vec<&str> {
        script.lines().map(str::trim).collect()
    }

    #[test]
    fn quote_doubles_every_kind_of_single_quote() {
        let rows: &[(&str, &str, &str)] = &[
            ("plain", "Conbool", "'Conbool'"),
            ("empty", "", "''"),
            ("apostrophe", "O'Brien", "'O''Brien'"),
            ("only_quote", "'", "''''"),
            (
                "typographic",
                "\u{2018}x\u{2019}",
                "'\u{2018}\u{2018}x\u{2019}\u{2019}'",
            ),
            (
                "low_and_reversed",
                "\u{201A}\u{201B}",
                "'\u{201A}\u{201A}\u{201B}\u{201B}'",
            ),
            ("not_expanded", "$env:PATH `n $(x)", "'$env:PATH `n $(x)'"),
            ("double_quote_left_alone", "say \"hi\"", "'say \"hi\"'"),
            ("angle_brackets", "<>", "'<>'"),
        ];
        for (row, input, want) in rows {
            assert_eq!(quote(input), *want, "{row}");
        }
    }

    #[test]
    fn online_script_has_the_connectors_and_both_rules() {
        let script = script(&parse(ONE_TENANT), Target::Online, None).expect("script");
        let got = lines(&script);
        let want = [
            "New-OutboundConnector @outboundConnector",
            "ConnectorType         = 'Partner'",
            "IsTransportRuleScoped = $true",
            "UseMXRecord           = $false",
            "SmartHosts            = 'mail.conbool.com'",
            "TlsSettings           = 'DomainValidation'",
            "TlsDomain             = 'mail.conbool.com'",
            "New-InboundConnector @inboundConnector",
            "SenderDomains                = '*'",
            "RequireTls                   = $true",
            "TlsSenderCertificateName     = 'mail.conbool.com'",
            "RestrictDomainsToCertificate = $true",
            "New-TransportRule @relayRule",
            "Name                                = 'Relay to Conbool'",
            "Priority                            = 0",
            "FromScope                           = 'InOrganization'",
            "RouteMessageOutboundConnector       = 'Conbool'",
            "ExceptIfHeaderMatchesMessageHeader  = 'X-Conbool-example-co-uk'",
            "ExceptIfHeaderMatchesPatterns       = 'true'",
            "ExceptIfMessageTypeMatches          = 'Calendaring'",
            "ExceptIfHeaderContainsMessageHeader = 'Return-Path'",
            "ExceptIfHeaderContainsWords         = '<>'",
            "ExceptIfFromAddressMatchesPatterns  = '<>'",
            "SenderAddressLocation               = 'HeaderOrEnvelope'",
            "New-TransportRule @spamRule",
            "Name                       = 'Classify Spam'",
            "Priority                   = 1",
            "HeaderMatchesMessageHeader = 'X-Conbool-Flag'",
            "HeaderMatchesPatterns      = 'YES'",
            "SetSCL                     = 7",
            "$ErrorActionPreference = 'Stop'",
        ];
        for line in want {
            assert!(got.contains(&line), "missing {line:?} in\n{script}");
        }
        assert!(!script.contains("New-SendConnector"), "{script}");
        // Nothing to warn about: port 25, verify, a client certificate (unreadable here, which
        // the file checks of `conbool check` report).
        assert!(!script.contains("Warning"), "{script}");
    }

    #[test]
    fn onprem_script_has_send_and_receive_connectors_and_the_spam_rule() {
        let config = parse(&ONE_TENANT.replace(
            "public_ips = [\"198.51.100.10\"]",
            "public_ips = [\"198.51.100.10\", \"2001:db8::25\"]",
        ));
        let script = script(&config, Target::Onprem, None).expect("script");
        let got = lines(&script);
        let want = [
            "New-SendConnector @sendConnector",
            "Usage                  = 'Custom'",
            "AddressSpaces          = '*'",
            "SmartHosts             = 'mail.conbool.com'",
            "Port                   = 25",
            "DNSRoutingEnabled      = $false",
            "SmartHostAuthMechanism = 'None'",
            "RequireTLS             = $true",
            "TlsAuthLevel           = 'DomainValidation'",
            "TlsDomain              = 'mail.conbool.com'",
            "$conboolReceive = New-ReceiveConnector @receiveConnector",
            "TransportRole    = 'FrontendTransport'",
            "Usage            = 'Partner'",
            "Bindings         = @('0.0.0.0:25', '[::]:25')",
            "RemoteIPRanges   = @('198.51.100.10', '2001:db8::25')",
            "RequireTLS       = $true",
            "PermissionGroups = 'AnonymousUsers,Partners'",
            "New-TransportRule @spamRule",
            "Priority                   = 0",
            "SetSCL                     = 7",
        ];
        for line in want {
            assert!(got.contains(&line), "missing {line:?} in\n{script}");
        }
        // Exchange Server has no rule action that picks a connector.
        assert!(
            !script.contains("RouteMessageOutboundConnector ="),
            "{script}"
        );
        assert!(!script.contains("New-OutboundConnector"), "{script}");
        let v4_only = script_for(ONE_TENANT, Target::Onprem);
        assert!(lines(&v4_only).contains(&"Bindings         = @('0.0.0.0:25')"));
    }

    fn script_for(text: &str, target: Target) -> String {
        script(&parse(text), target, None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn exchange_keys_and_awkward_names_reach_the_script_quoted() {
        let text = ONE_TENANT.replace(
            "[exchange]",
            "[exchange]\nconnector_name = \"O'Brien \u{2019}Relay\u{2019}\"\nrule_priority = 4\nrule_name_prefix = \"Acme's \"",
        );
        let script = script_for(&text, Target::Online);
        let got = lines(&script);
        for line in [
            "Name                  = 'O''Brien \u{2019}\u{2019}Relay\u{2019}\u{2019}'",
            "RouteMessageOutboundConnector       = 'O''Brien \u{2019}\u{2019}Relay\u{2019}\u{2019}'",
            "Name                                = 'Acme''s Relay to Conbool'",
            "Priority                            = 4",
            "Name                       = 'Acme''s Classify Spam'",
            "Priority                   = 5",
        ] {
            assert!(got.contains(&line), "missing {line:?} in\n{script}");
        }
    }

    #[test]
    fn missing_or_ambiguous_values_are_asked_for_by_name() {
        let two = format!(
            "{ONE_TENANT}\n[[tenant]]\nname = \"b.example\"\nnext_hop = \"mx.b.example:25\"\n"
        );
        let no_ips = ONE_TENANT.replace("public_ips = [\"198.51.100.10\"]", "");
        let short_host =
            ONE_TENANT.replace("hostname = \"mail.conbool.com\"", "hostname = \"relay\"");
        // (row, config, target, --tenant, words the error must contain)
        let rows: &[(&str, &str, Target, Option<&str>, &str)] = &[
            ("two_tenants_no_flag", &two, Target::Online, None, "choose one with --tenant NAME"),
            ("unknown_tenant", ONE_TENANT, Target::Online, Some("nope.example"), "the tenants are example.co.uk"),
            (
                "onprem_without_ips",
                &no_ips,
                Target::Onprem,
                None,
                "exchange.public_ips is empty: the on-premises receive connector needs the relay's public IPv4 addresses",
            ),
            ("single_label_host", &short_host, Target::Online, None, "server.hostname \"relay\" is not a fully qualified"),
        ];
        for (row, text, target, tenant, words) in rows {
            let err = script(&parse(text), *target, *tenant).expect_err(row);
            assert!(err.to_string().contains(words), "{row}: {err}");
        }
        // Online needs no public addresses; a named tenant is found whatever its case.
        assert!(script(&parse(&no_ips), Target::Online, None).is_ok());
        let b = script(&parse(&two), Target::Online, Some("B.Example")).expect("b");
        assert!(b.contains("'X-Conbool-b-example'"), "{b}");
    }

    #[test]
    fn exchange_online_next_hops_are_recognised() {
        let rows: &[(&str, &str, bool)] = &[
            (
                "worldwide",
                "contoso-com.mail.protection.outlook.com:25",
                true,
            ),
            (
                "upper_case",
                "Contoso-Com.MAIL.Protection.Outlook.com:25",
                true,
            ),
            (
                "gcc_high",
                "contoso-com.mail.protection.office365.us:25",
                true,
            ),
            (
                "china",
                "contoso-com.mail.protection.partner.outlook.cn:25",
                true,
            ),
            ("onprem", "mx.contoso.com:25", false),
            (
                "lookalike",
                "mail.protection.outlook.com.evil.example:25",
                false,
            ),
            ("ip", "192.0.2.1:25", false),
        ];
        for (row, hop, want) in rows {
            assert_eq!(is_exchange_online(hop), *want, "{row}");
        }
    }

    /// A temporary directory with certificates for the warning checks, removed on drop.
    struct Pki(PathBuf);

    impl Pki {
        fn new(name: &str) -> Pki {
            let dir = std::env::temp_dir()
                .join(format!("conbool-exchange-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            for (file, names) in [
                ("relay.pem", vec!["mail.conbool.com".to_string()]),
                ("wildcard.pem", vec!["*.conbool.com".to_string()]),
                ("other.pem", vec!["mx.other.example".to_string()]),
            ] {
                let cert = rcgen::generate_simple_self_signed(names).expect("cert");
                std::fs::write(dir.join(file), cert.cert.pem()).expect("write");
                std::fs::write(
                    dir.join(format!("{file}.key")),
                    cert.key_pair.serialize_pem(),
                )
                .expect("write");
            }
            Pki(dir)
        }

        fn config(&self, text: &str) -> Config {
            Config::from_toml_str(text, &self.0.join("conbool.toml"))
                .unwrap_or_else(|e| panic!("{e}\n{text}"))
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tenant(hop: &str, extra: &str) -> String {
        format!("[[tenant]]\nname = \"example.com\"\nnext_hop = \"{hop}\"\n{extra}\n")
    }

    #[test]
    fn check_warnings_name_their_keys() {
        let pki = Pki::new("warnings");
        let exo = "example-com.mail.protection.outlook.com:25";
        let tls = |cert: &str| format!("[tls]\ncert = \"{cert}\"\nkey = \"{cert}.key\"\n");
        let client = |cert: &str| {
            format!(
                "next_hop_tls = \"verify\"\nclient_cert = \"{cert}\"\nclient_key = \"{cert}.key\""
            )
        };
        // (row, config text, keys warned about)
        let rows: Vec<(&str, String, Vec<&str>)> = vec![
            (
                "all_good",
                format!("{}{}", tls("relay.pem"), tenant(exo, &client("relay.pem"))),
                vec![],
            ),
            (
                "wildcard_covers",
                format!(
                    "{}{}",
                    tls("wildcard.pem"),
                    tenant(exo, &client("wildcard.pem"))
                ),
                vec![],
            ),
            (
                "server_cert_other_name",
                format!("{}{}", tls("other.pem"), tenant(exo, &client("relay.pem"))),
                vec!["server.hostname"],
            ),
            (
                "unreadable_cert_is_left_to_the_file_checks",
                format!(
                    "{}{}",
                    tls("missing.pem"),
                    tenant(exo, &client("missing.pem"))
                ),
                vec![],
            ),
            (
                "exo_without_client_cert",
                tenant(exo, "next_hop_tls = \"verify\""),
                vec!["tenant[0].client_cert"],
            ),
            (
                "exo_client_cert_other_name",
                tenant(exo, &client("other.pem")),
                vec!["tenant[0].client_cert"],
            ),
            (
                "exo_opportunistic",
                tenant(
                    exo,
                    "client_cert = \"relay.pem\"\nclient_key = \"relay.pem.key\"",
                ),
                vec!["tenant[0].next_hop_tls"],
            ),
            (
                "exo_require_and_no_cert",
                tenant(exo, "next_hop_tls = \"require\""),
                vec!["tenant[0].client_cert", "tenant[0].next_hop_tls"],
            ),
            (
                "onprem_needs_no_client_cert",
                tenant("mx.example.com:25", ""),
                vec![],
            ),
            (
                "only_ipv6",
                format!(
                    "{}[exchange]\npublic_ips = [\"2001:db8::1\"]\n",
                    tenant("mx.example.com:25", "")
                ),
                vec!["exchange.public_ips"],
            ),
            (
                "ipv4_and_ipv6",
                format!(
                    "{}[exchange]\npublic_ips = [\"2001:db8::1\", \"198.51.100.1\"]\n",
                    tenant("mx.example.com:25", "")
                ),
                vec![],
            ),
        ];
        for (row, text, want) in rows {
            let got = check_warnings(&pki.config(&text));
            let keys: Vec<&str> = got.iter().map(|w| w.key.as_str()).collect();
            assert_eq!(keys, want, "{row}: {got:?}");
            for w in &got {
                assert!(!w.message.is_empty(), "{row}");
            }
        }
    }

    #[test]
    fn conbool_check_reports_the_exchange_section() {
        let pki = Pki::new("check");
        let text = format!(
            "[tls]\ncert = \"other.pem\"\nkey = \"other.pem.key\"\n{}",
            tenant(
                "example-com.mail.protection.outlook.com:25",
                "next_hop_tls = \"verify\""
            )
        );
        let path = pki.0.join("conbool.toml");
        std::fs::write(&path, text).expect("write config");
        let report = crate::cli::check::check(&path);
        assert!(
            report.is_ok(),
            "warnings do not fail the check: {:?}",
            report.problems
        );
        let file = path.display().to_string();
        for key in ["server.hostname", "tenant[0].client_cert"] {
            let prefix = format!("{file}: {key}: Exchange: ");
            assert!(
                report.warnings.iter().any(|w| w.starts_with(&prefix)),
                "{key}: {:?}",
                report.warnings
            );
        }
    }

    #[test]
    fn the_script_repeats_the_warnings_that_concern_it() {
        let text = r#"
[server]
listen = ["0.0.0.0:2525"]
[[tenant]]
name = "a.example"
next_hop = "a-example.mail.protection.outlook.com:25"
[[tenant]]
name = "b.example"
next_hop = "b-example.mail.protection.outlook.com:25"
next_hop_tls = "verify"
[exchange]
public_ips = ["2001:db8::1"]
"#;
        let config = parse(text);
        let a = script(&config, Target::Online, Some("a.example")).unwrap();
        assert!(
            a.contains("# Warning: tenant[0].client_cert: absent"),
            "{a}"
        );
        assert!(a.contains("# Warning: tenant[0].next_hop_tls:"), "{a}");
        assert!(a.contains("server.listen has no address on port 25"), "{a}");
        assert!(!a.contains("exchange.public_ips"), "{a}");
        let b = script(&config, Target::Online, Some("b.example")).unwrap();
        assert!(b.contains("# Warning: tenant[1].client_cert"), "{b}");
        assert!(!b.contains("tenant[0]"), "{b}");
        let onprem = script(&config, Target::Onprem, Some("a.example")).unwrap();
        assert!(
            onprem.contains("# Warning: exchange.public_ips: lists only IPv6"),
            "{onprem}"
        );
        assert!(!onprem.contains("tenant[0]"), "{onprem}");
    }

    #[test]
    fn no_line_of_the_script_can_be_broken_by_a_value() {
        // Control characters are refused by the configuration; what remains cannot end a
        // comment line or a string early.
        let text = ONE_TENANT.replace("[exchange]", "[exchange]\nconnector_name = \"a'b\"");
        for target in [Target::Online, Target::Onprem] {
            let s = script_for(&text, target);
            for line in s.lines() {
                let t = line.trim_start();
                let ok = t.is_empty()
                    || t.starts_with('#')
                    || t.starts_with('$')
                    || t.starts_with("New-")
                    || t == "}"
                    || t.contains(" = ");
                assert!(ok, "{target:?}: unexpected line {line:?}");
                if t.starts_with('#') {
                    continue;
                }
                // Quotes are balanced on each line of code (doubled ones count twice).
                let quotes = line.chars().filter(|c| is_single_quote(*c)).count();
                assert_eq!(quotes % 2, 0, "{target:?}: {line:?}");
            }
        }
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn command_line() {
        /// (row, argv, the target and tenant parsed, or None for a usage error)
        type Row<'a> = (&'a str, &'a [&'a str], Option<(Target, Option<&'a str>)>);
        let rows: &[Row] = &[
            (
                "online",
                &["x", "--config", "c.toml", "--target", "online"],
                Some((Target::Online, None)),
            ),
            (
                "onprem_tenant",
                &[
                    "x",
                    "-c",
                    "c.toml",
                    "--target",
                    "onprem",
                    "--tenant",
                    "a.example",
                ],
                Some((Target::Onprem, Some("a.example"))),
            ),
            (
                "unknown_target",
                &["x", "-c", "c.toml", "--target", "cloud"],
                None,
            ),
            ("no_target", &["x", "-c", "c.toml"], None),
            ("no_config", &["x", "--target", "online"], None),
        ];
        for (row, argv, want) in rows {
            let got = Cli::try_parse_from(*argv).ok().map(|c| c.args);
            match (got, want) {
                (Some(a), Some((target, tenant))) => {
                    assert_eq!(a.target, *target, "{row}");
                    assert_eq!(a.tenant.as_deref(), *tenant, "{row}");
                    assert_eq!(a.config, Path::new("c.toml"), "{row}");
                }
                (None, None) => {}
                (got, want) => panic!("{row}: got {got:?}, want {want:?}"),
            }
        }
    }
}
