//! Configuration: the TOML file of DESIGN.md §6 (serde structs whose field names are the
//! contract's keys, `deny_unknown_fields`), embedded defaults, and validation into a
//! [`Config`] that the rest of the crate reads. Errors name the file, the key and the problem.
//!
//! Must not touch: sockets or live runtime objects.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

mod raw;
mod validate;

pub use raw::defaults;
pub use validate::{ConfigError, ConfigErrors, ConfigWarning};

/// A validated configuration snapshot. Immutable once built; workers share it in an `Arc`.
#[derive(Clone, PartialEq, Debug)]
pub struct Config {
    /// `[server]`
    pub server: Server,
    /// `[tls]`; `None` when the section is absent (no STARTTLS).
    pub tls: Option<Tls>,
    /// `[limits]`
    pub limits: Limits,
    /// `[spam]`
    pub spam: Spam,
    /// `[[tenant]]`, in file order.
    pub tenants: Vec<Tenant>,
    /// `[exchange]`
    pub exchange: Exchange,
    /// `[log]`
    pub log: Log,
}

/// `[log]`: where and how `conbool run` writes its log lines (flags override each key).
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Log {
    /// `format`: `"text"` (key=value, the default) or `"json"`.
    pub format: crate::logging::LogFormat,
    /// `level`: `"off"`, `"error"`, `"warn"`, `"info"` (the default: one line per message),
    /// `"debug"`.
    pub level: crate::logging::Level,
    /// `file`: append lines here (reopened on SIGHUP) instead of writing to stderr.
    pub file: Option<PathBuf>,
}

/// The largest configuration file [`Config::load`] reads.
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 << 20;

impl Config {
    /// The configuration `conbool run` uses without a file (DESIGN.md §5): listen on
    /// `127.0.0.1:2525`, one tenant `example.com` whose next hop is `127.0.0.1:2526` and whose
    /// trusted network is `127.0.0.0/8`, no TLS, every other key at its default.
    pub fn embedded_defaults() -> Config {
        let loopback = Cidr {
            addr: IpAddr::from([127, 0, 0, 0]),
            prefix: 8,
        };
        Config {
            server: Server {
                listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
                hostname: defaults::HOSTNAME.to_string(),
                workers: validate::resolve_workers(defaults::WORKERS),
                proxy_protocol: false,
                proxy_from: Vec::new(),
                proxy_timeout_s: defaults::PROXY_TIMEOUT_S,
                metrics: None,
            },
            tls: None,
            limits: Limits::default(),
            spam: Spam {
                threshold: defaults::SPAM_THRESHOLD,
                rules: Vec::new(),
                model: None,
                internal_hosts: None,
            },
            tenants: vec![Tenant {
                name: defaults::TENANT.to_string(),
                domains: vec![defaults::TENANT.to_string()],
                next_hop: defaults::NEXT_HOP.to_string(),
                next_hop_tls: NextHopTls::Opportunistic,
                next_hop_ca: None,
                next_hop_tls_name: None,
                trusted_networks: vec![loopback],
                trusted_cert_names: Vec::new(),
                client_cert: None,
                client_key: None,
                disclaimer: None,
            }],
            exchange: Exchange::default(),
            log: Log::default(),
        }
    }

    /// Reads and validates the TOML text of a configuration file. `origin` is the file's path:
    /// it names the file in errors, and relative paths in the text (certificates, keys, CA
    /// files, rule files) are resolved against its directory. Every problem found is returned,
    /// not just the first.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigErrors> {
        validate::from_toml_str(text, origin)
    }

    /// Reads the file at `path` (at most [`MAX_CONFIG_FILE_BYTES`]) and validates it as
    /// [`Config::from_toml_str`] does.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        validate::load(path)
    }

    /// Settings that are valid but probably not what was meant (an RFC 5321 minimum not met,
    /// a key that is ignored, an open relay). `conbool check` prints them; they never stop the
    /// relay.
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        validate::warnings(self)
    }
}

/// `[server]`
#[derive(Clone, PartialEq, Debug)]
pub struct Server {
    /// `listen`: addresses to accept SMTP on.
    pub listen: Vec<SocketAddr>,
    /// `hostname`: our name in the greeting, EHLO and Received.
    pub hostname: String,
    /// `workers`: event loops; 0 in the file means one per core (resolved here to the count).
    pub workers: usize,
    /// `proxy_protocol`: expect HAProxy PROXY v1/v2 from `proxy_from`.
    pub proxy_protocol: bool,
    /// `proxy_from`: load balancers allowed to send PROXY headers.
    pub proxy_from: Vec<Cidr>,
    /// `proxy_timeout_s`: a PROXY header must be complete this long after connect, or the
    /// connection is closed without a greeting.
    pub proxy_timeout_s: u64,
    /// `metrics`: Prometheus endpoint address, if enabled.
    pub metrics: Option<SocketAddr>,
}

/// `[tls]`
#[derive(Clone, PartialEq, Debug)]
pub struct Tls {
    /// `cert`: PEM full chain.
    pub cert: PathBuf,
    /// `key`: PEM private key.
    pub key: PathBuf,
    /// `require`: refuse MAIL before STARTTLS.
    pub require: bool,
    /// `client_ca`: request and verify client certificates against this CA file.
    pub client_ca: Option<PathBuf>,
    /// `client_cert`: PEM chain presented to next hops by tenants without their own.
    pub client_cert: Option<PathBuf>,
    /// `client_key`: its key.
    pub client_key: Option<PathBuf>,
    /// `reload_check_s`: seconds between looks at every certificate, key and CA file the
    /// configuration names (`[tls]` and the tenants'); a changed one is reloaded. 0 = only
    /// SIGHUP reloads them.
    pub reload_check_s: u64,
    /// `[[tls.sni]]`: further server certificates, chosen by the name a client asks for
    /// (SNI); `cert`/`key` above serve clients that ask for none or for another name.
    pub sni: Vec<SniCert>,
}

/// One `[[tls.sni]]` entry: a server certificate served to clients asking for its names.
#[derive(Clone, Debug, PartialEq)]
pub struct SniCert {
    /// `names`: lower-case DNS names, or `*.` and a name for any one label in front of it;
    /// empty means the DNS names of the certificate itself.
    pub names: Vec<String>,
    /// `cert`: PEM full chain.
    pub cert: PathBuf,
    /// `key`: PEM private key.
    pub key: PathBuf,
}

impl Tls {
    /// `[tls]` with `cert` and `key` and every other key at its default.
    pub fn new(cert: PathBuf, key: PathBuf) -> Tls {
        Tls {
            cert,
            key,
            require: false,
            client_ca: None,
            client_cert: None,
            client_key: None,
            reload_check_s: defaults::TLS_RELOAD_CHECK_S,
            sni: Vec::new(),
        }
    }
}

/// What to do with a bare CR or LF in DATA (`limits.bare_lf`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLf {
    /// Each becomes CRLF (the default).
    #[default]
    Normalize,
    /// Refuse the message with `550 5.6.11`.
    Reject,
    /// Forward unchanged when the next hop takes BDAT; normalised under DATA.
    Accept,
}

/// `[limits]`: every bound the relay enforces.
#[derive(Clone, PartialEq, Debug)]
pub struct Limits {
    /// `max_message_size` in bytes (`552 5.3.4`); advertised in EHLO `SIZE`.
    pub max_message_size: u64,
    /// `max_recipients` per transaction (`452 4.5.3`).
    pub max_recipients: usize,
    /// `max_header_bytes` (`552 5.3.4`, then close).
    pub max_header_bytes: usize,
    /// `max_hops`: Received headers allowed (`554 5.4.6` beyond).
    pub max_hops: usize,
    /// `max_connections_per_ip` (`421 4.7.0`).
    pub max_connections_per_ip: usize,
    /// `max_errors` per session before `421`.
    pub max_errors: u32,
    /// `scan_window`: body bytes held and scanned before the verdict.
    pub scan_window: usize,
    /// `bare_lf`: normalize | reject | accept.
    pub bare_lf: BareLf,
    /// `command_timeout_s`
    pub command_timeout_s: u64,
    /// `data_timeout_s`
    pub data_timeout_s: u64,
    /// `next_hop_timeout_s`: how long the next hop has for each reply (connect, greeting,
    /// each command, end of data); then `451 4.4.2` to whatever waits on it.
    pub next_hop_timeout_s: u64,
}

impl Default for Limits {
    /// Every limit at its default (DESIGN.md §6).
    fn default() -> Limits {
        Limits {
            max_message_size: defaults::MAX_MESSAGE_SIZE,
            max_recipients: defaults::MAX_RECIPIENTS,
            max_header_bytes: defaults::MAX_HEADER_BYTES,
            max_hops: defaults::MAX_HOPS,
            max_connections_per_ip: defaults::MAX_CONNECTIONS_PER_IP,
            max_errors: defaults::MAX_ERRORS,
            scan_window: defaults::SCAN_WINDOW,
            bare_lf: BareLf::Normalize,
            command_timeout_s: defaults::COMMAND_TIMEOUT_S,
            data_timeout_s: defaults::DATA_TIMEOUT_S,
            next_hop_timeout_s: defaults::NEXT_HOP_TIMEOUT_S,
        }
    }
}

/// `[spam]`
#[derive(Clone, PartialEq, Debug)]
pub struct Spam {
    /// `threshold`: score at or above which a message is flagged `YES`.
    pub threshold: f64,
    /// `rules`: rule files; empty means the built-in defaults.
    pub rules: Vec<PathBuf>,
    /// `model`: a classifier model file (`conbool train`); none means rules only.
    pub model: Option<PathBuf>,
    /// `internal_hosts`: a list of the hosts that hand mail to the relay (the tenants'
    /// Exchange servers), whose `Received` fields at the top of a message the classifier does
    /// not read; the same list `conbool train --internal-hosts` takes (without sources).
    pub internal_hosts: Option<PathBuf>,
}

/// How to use TLS toward a tenant's next hop (`next_hop_tls`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NextHopTls {
    /// Plain text only.
    None,
    /// STARTTLS when offered, plain otherwise.
    #[default]
    Opportunistic,
    /// STARTTLS required, certificate not verified.
    Require,
    /// STARTTLS required and the certificate verified against the next hop's name.
    Verify,
}

/// One `[[tenant]]`: a customer.
#[derive(Clone, PartialEq, Debug)]
pub struct Tenant {
    /// `name`: the domain used in the loop header.
    pub name: String,
    /// `domains`: exact domains or `*.example.com` patterns, lower-cased.
    pub domains: Vec<String>,
    /// `next_hop`: `host:port`.
    pub next_hop: String,
    /// `next_hop_tls`
    pub next_hop_tls: NextHopTls,
    /// `next_hop_ca`: CA file for `verify` (system store when absent).
    pub next_hop_ca: Option<PathBuf>,
    /// `next_hop_tls_name`: the name sent as SNI and, under `verify`, checked against the
    /// next hop's certificate; the host part of `next_hop` when absent.
    pub next_hop_tls_name: Option<String>,
    /// `trusted_networks`: the tenant's Exchange servers.
    pub trusted_networks: Vec<Cidr>,
    /// `trusted_cert_names`: verified client-certificate names that make a client trusted.
    pub trusted_cert_names: Vec<String>,
    /// `client_cert`: PEM chain presented to the next hop.
    pub client_cert: Option<PathBuf>,
    /// `client_key`
    pub client_key: Option<PathBuf>,
    /// `disclaimer`
    pub disclaimer: Option<Disclaimer>,
}

impl Tenant {
    /// The name TLS toward the next hop is for (SNI, and the certificate check under
    /// `verify`): `next_hop_tls_name`, else the host part of `next_hop`.
    pub fn next_hop_tls_name(&self) -> &str {
        self.next_hop_tls_name
            .as_deref()
            .unwrap_or_else(|| crate::tls::next_hop_server_name(&self.next_hop))
    }

    /// The loop header's field name: `X-Conbool-` + name with dots as hyphens.
    pub fn loop_header(&self) -> String {
        format!("X-Conbool-{}", self.name.replace('.', "-"))
    }
}

/// A tenant's footer (`disclaimer`), added on the fly at the end of the first text/plain and
/// text/html parts (see `message::disclaimer`).
#[derive(Clone, PartialEq, Debug)]
pub struct Disclaimer {
    /// For text/plain parts (`text`, or the contents of `text_file`), UTF-8.
    pub text: String,
    /// For text/html parts (`html`, or the contents of `html_file`), UTF-8.
    pub html: String,
    /// `applies_to`: which mail gets it.
    pub applies_to: DisclaimerScope,
    /// `skip_rules`: a message hitting any of these rules is not footed.
    pub skip_rules: Vec<String>,
}

/// Most bytes of one disclaimer text (inline or file); the footer is copied into every
/// message that gets it.
pub const MAX_DISCLAIMER_BYTES: usize = 16 * 1024;

/// Which mail a tenant's disclaimer goes on (`disclaimer.applies_to`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisclaimerScope {
    /// Outbound mail: from the tenant's trusted clients only (DESIGN.md §4).
    #[default]
    Outbound,
    /// Every message routed to the tenant, inbound too.
    All,
}

/// `[exchange]`: the values `conbool exchange` puts into the PowerShell it prints.
#[derive(Clone, PartialEq, Debug)]
pub struct Exchange {
    /// `public_ips`: the relay's public addresses (the on-premises receive connector's
    /// `RemoteIPRanges`).
    pub public_ips: Vec<IpAddr>,
    /// `connector_name`: name of the connectors created on the Exchange side (default
    /// `Conbool`); the routing rule refers to the outbound connector by it.
    pub connector_name: String,
    /// `rule_priority`: priority of the "Relay to Conbool" rule (0 = evaluated first);
    /// "Classify Spam" gets the next one.
    pub rule_priority: u32,
    /// `rule_name_prefix`: put before both rule names ("Acme " gives "Acme Relay to
    /// Conbool"), for organisations that name their rules by owner; empty by default.
    pub rule_name_prefix: String,
}

impl Exchange {
    /// The routing rule's name without `rule_name_prefix` (DESIGN.md §1).
    pub const RELAY_RULE: &'static str = "Relay to Conbool";
    /// The spam rule's name without `rule_name_prefix` (DESIGN.md §1).
    pub const SPAM_RULE: &'static str = "Classify Spam";

    /// `rule_name_prefix` + "Relay to Conbool".
    pub fn relay_rule_name(&self) -> String {
        format!("{}{}", self.rule_name_prefix, Exchange::RELAY_RULE)
    }

    /// `rule_name_prefix` + "Classify Spam".
    pub fn spam_rule_name(&self) -> String {
        format!("{}{}", self.rule_name_prefix, Exchange::SPAM_RULE)
    }
}

impl Default for Exchange {
    /// No public addresses, connector `Conbool`, rule priority 0, no rule name prefix.
    fn default() -> Exchange {
        Exchange {
            public_ips: Vec::new(),
            connector_name: defaults::EXCHANGE_CONNECTOR_NAME.to_string(),
            rule_priority: defaults::EXCHANGE_RULE_PRIORITY,
            rule_name_prefix: String::new(),
        }
    }
}

/// An IPv4 or IPv6 network, `addr/prefix`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cidr {
    /// The network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses match IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl Cidr {
    /// The network `addr/prefix`, or an error when the prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(CidrError(format!(
                "prefix /{prefix} is longer than the address ({max} bits)"
            )));
        }
        Ok(Cidr { addr, prefix })
    }

    /// Whether `addr` has bits set beyond the prefix (`10.1.2.3/8`): harmless, since
    /// [`Cidr::contains`] masks them, but often a typo.
    pub fn has_host_bits(&self) -> bool {
        self.network() != self.addr
    }

    /// The network address: `addr` with the bits beyond the prefix cleared.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(v4) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `addr/prefix`, or a bare address meaning a single host (`/32` or `/128`), as Postfix's
    /// `mynetworks` accepts.
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| CidrError(format!("expected an IP network like 10.0.0.0/8, got {s:?}")))?;
        let prefix = match prefix_text {
            None if addr.is_ipv4() => 32,
            None => 128,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse()
                .map_err(|_| CidrError(format!("prefix /{p} is out of range in {s:?}")))?,
            Some(p) => return Err(CidrError(format!("bad prefix /{p} in {s:?}"))),
        };
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    /// `addr/prefix`; [`FromStr`] reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a text is not a [`Cidr`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[[tenant]]\nname = \"a.example\"\nnext_hop = \"10.0.0.1:25\"\n";

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_toml_str(text, Path::new("/etc/conbool/conbool.toml"))
    }

    fn errors(text: &str) -> Vec<(String, String)> {
        match parse(text) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .iter()
                .map(|e| (e.key().to_string(), e.message().to_string()))
                .collect(),
        }
    }

    /// The minimal file plus `extra` (a section or more keys).
    fn with(extra: &str) -> String {
        format!("{extra}\n{MINIMAL}")
    }

    #[test]
    fn every_key_has_its_default() {
        let c = parse(MINIMAL).expect("minimal file is valid");
        let t = &c.tenants[0];
        let rows: &[(&str, bool)] = &[
            (
                "server.listen",
                c.server.listen == ["127.0.0.1:2525".parse().unwrap()],
            ),
            ("server.hostname", c.server.hostname == "mail.conbool.com"),
            ("server.workers", c.server.workers >= 1),
            ("server.proxy_protocol", !c.server.proxy_protocol),
            ("server.proxy_from", c.server.proxy_from.is_empty()),
            ("server.proxy_timeout_s", c.server.proxy_timeout_s == 5),
            ("server.metrics", c.server.metrics.is_none()),
            ("tls", c.tls.is_none()),
            (
                "limits.max_message_size",
                c.limits.max_message_size == 36_700_160,
            ),
            ("limits.max_recipients", c.limits.max_recipients == 500),
            (
                "limits.max_header_bytes",
                c.limits.max_header_bytes == 262_144,
            ),
            ("limits.max_hops", c.limits.max_hops == 50),
            (
                "limits.max_connections_per_ip",
                c.limits.max_connections_per_ip == 20,
            ),
            ("limits.max_errors", c.limits.max_errors == 10),
            ("limits.scan_window", c.limits.scan_window == 65_536),
            ("limits.bare_lf", c.limits.bare_lf == BareLf::Normalize),
            (
                "limits.command_timeout_s",
                c.limits.command_timeout_s == 300,
            ),
            ("limits.data_timeout_s", c.limits.data_timeout_s == 180),
            (
                "limits.next_hop_timeout_s",
                c.limits.next_hop_timeout_s == 120,
            ),
            ("spam.threshold", c.spam.threshold == 5.0),
            ("spam.rules", c.spam.rules.is_empty()),
            ("tenant.next_hop_tls_name", t.next_hop_tls_name.is_none()),
            ("tenant.domains", t.domains == ["a.example"]),
            (
                "tenant.next_hop_tls",
                t.next_hop_tls == NextHopTls::Opportunistic,
            ),
            ("tenant.next_hop_ca", t.next_hop_ca.is_none()),
            ("tenant.trusted_networks", t.trusted_networks.is_empty()),
            ("tenant.trusted_cert_names", t.trusted_cert_names.is_empty()),
            ("tenant.client_cert", t.client_cert.is_none()),
            ("tenant.client_key", t.client_key.is_none()),
            ("tenant.disclaimer", t.disclaimer.is_none()),
            ("exchange.public_ips", c.exchange.public_ips.is_empty()),
            (
                "exchange.connector_name",
                c.exchange.connector_name == "Conbool",
            ),
            ("exchange.rule_priority", c.exchange.rule_priority == 0),
            (
                "exchange.rule_name_prefix",
                c.exchange.rule_name_prefix.is_empty(),
            ),
        ];
        for (key, ok) in rows {
            assert!(ok, "default of {key}");
        }
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn embedded_defaults_match_the_equivalent_file() {
        let file = "[[tenant]]\nname = \"example.com\"\nnext_hop = \"127.0.0.1:2526\"\n\
                    trusted_networks = [\"127.0.0.0/8\"]\n";
        assert_eq!(parse(file).expect("valid"), Config::embedded_defaults());
        let c = Config::embedded_defaults();
        assert_eq!(c.tenants[0].loop_header(), "X-Conbool-example-com");
        assert!(c.tenants[0]
            .trusted_networks
            .iter()
            .any(|n| n.contains("127.0.0.1".parse().unwrap())));
    }

    #[test]
    fn design_example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conbool.example.toml");
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server.listen, ["0.0.0.0:25".parse().unwrap()]);
        assert_eq!(c.server.metrics, Some("127.0.0.1:9425".parse().unwrap()));
        let tls = c.tls.as_ref().expect("tls section");
        assert_eq!(tls.cert, Path::new("/etc/conbool/fullchain.pem"));
        assert_eq!(
            tls.client_ca.as_deref(),
            Some(Path::new("/etc/conbool/clients-ca.pem"))
        );
        // Relative paths are resolved against the file's directory.
        assert_eq!(
            c.spam.rules,
            [Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml")]
        );
        let t = &c.tenants[0];
        assert_eq!(t.name, "example.com");
        assert_eq!(t.next_hop, "example-com.mail.protection.outlook.com:25");
        assert_eq!(t.next_hop_tls, NextHopTls::Verify);
        assert_eq!(t.trusted_networks.len(), 2);
        assert!(t
            .disclaimer
            .as_ref()
            .is_some_and(|d| d.html.starts_with("<p>")));
        assert_eq!(
            c.exchange.public_ips,
            ["198.51.100.10".parse::<IpAddr>().unwrap()]
        );
        let warned: Vec<String> = c.warnings().iter().map(|w| w.key().to_string()).collect();
        assert_eq!(warned, ["server.proxy_from"]);
    }

    #[test]
    fn every_value_is_read() {
        let text = r#"
[server]
listen = ["0.0.0.0:25", "[::]:587"]
hostname = "MX.Example.NET"
workers = 3
proxy_protocol = true
proxy_from = ["10.0.0.0/8"]

[tls]
cert = "certs/fullchain.pem"
key = "/abs/key.pem"
require = true
reload_check_s = 7
client_cert = "default-client.pem"
client_key = "default-client-key.pem"

[[tls.sni]]
names = ["Mail.Example.net", "*.example.org"]
cert = "net.pem"
key = "/abs/net-key.pem"

[[tls.sni]]
cert = "other.pem"
key = "other-key.pem"

[limits]
max_message_size = 100000
max_recipients = 101
max_header_bytes = 2048
max_hops = 5
max_connections_per_ip = 6
max_errors = 7
scan_window = 8
bare_lf = "reject"
command_timeout_s = 301
data_timeout_s = 181
next_hop_timeout_s = 30

[spam]
threshold = 4
rules = ["a.toml", "/b.toml"]

[[tenant]]
name = "A.example"
domains = ["A.example", "*.b.example"]
next_hop = "[2001:db8::1]:2525"
next_hop_tls = "none"
trusted_networks = ["192.0.2.1", "2001:db8::/32"]

[[tenant]]
name = "c.example"
next_hop = "mx.c.example:25"
next_hop_tls = "require"
next_hop_tls_name = "MX.C.example"
client_cert = "c.pem"
client_key = "k.pem"
"#;
        let c = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server.listen.len(), 2);
        assert_eq!(c.server.hostname, "mx.example.net");
        assert_eq!(c.server.workers, 3);
        assert!(c.server.proxy_protocol);
        let tls = c.tls.expect("tls");
        assert_eq!(tls.cert, Path::new("/etc/conbool/certs/fullchain.pem"));
        assert_eq!(tls.key, Path::new("/abs/key.pem"));
        assert!(tls.require);
        assert_eq!(tls.reload_check_s, 7);
        assert_eq!(
            tls.client_cert.as_deref(),
            Some(Path::new("/etc/conbool/default-client.pem"))
        );
        assert_eq!(
            tls.client_key.as_deref(),
            Some(Path::new("/etc/conbool/default-client-key.pem"))
        );
        assert_eq!(
            tls.sni,
            [
                SniCert {
                    names: vec!["mail.example.net".into(), "*.example.org".into()],
                    cert: "/etc/conbool/net.pem".into(),
                    key: "/abs/net-key.pem".into(),
                },
                SniCert {
                    names: Vec::new(),
                    cert: "/etc/conbool/other.pem".into(),
                    key: "/etc/conbool/other-key.pem".into(),
                },
            ]
        );
        let l = &c.limits;
        assert_eq!(
            (
                l.max_message_size,
                l.max_recipients,
                l.max_header_bytes,
                l.max_hops
            ),
            (100_000, 101, 2048, 5)
        );
        assert_eq!(
            (l.max_connections_per_ip, l.max_errors, l.scan_window),
            (6, 7, 8)
        );
        assert_eq!(l.bare_lf, BareLf::Reject);
        assert_eq!((l.command_timeout_s, l.data_timeout_s), (301, 181));
        assert_eq!(l.next_hop_timeout_s, 30);
        assert_eq!(c.spam.threshold, 4.0);
        assert_eq!(
            c.spam.rules,
            [
                PathBuf::from("/etc/conbool/a.toml"),
                PathBuf::from("/b.toml")
            ]
        );
        let a = &c.tenants[0];
        assert_eq!(a.name, "a.example");
        assert_eq!(a.domains, ["a.example", "*.b.example"]);
        assert_eq!(a.next_hop_tls, NextHopTls::None);
        assert_eq!(a.next_hop_tls_name(), "2001:db8::1");
        assert_eq!(c.tenants[1].next_hop_tls_name(), "mx.c.example");
        assert_eq!(a.trusted_networks[0].to_string(), "192.0.2.1/32");
        assert_eq!(a.trusted_networks[1].to_string(), "2001:db8::/32");
        let b = &c.tenants[1];
        assert_eq!(b.domains, ["c.example"]);
        assert_eq!(b.next_hop_tls, NextHopTls::Require);
        assert_eq!(
            b.client_cert.as_deref(),
            Some(Path::new("/etc/conbool/c.pem"))
        );
    }

    /// (row name, file text, the key every reported problem must name)
    const INVALID: &[(&str, &str, &str)] = &[
        ("listen_empty", "[server]\nlisten = []", "server.listen"),
        (
            "listen_not_addr",
            "[server]\nlisten = [\"0.0.0.0\"]",
            "server.listen[0]",
        ),
        (
            "listen_hostname",
            "[server]\nlisten = [\"0.0.0.0:25\", \"localhost:25\"]",
            "server.listen[1]",
        ),
        (
            "listen_duplicate",
            "[server]\nlisten = [\"0.0.0.0:25\", \"0.0.0.0:25\"]",
            "server.listen[1]",
        ),
        (
            "listen_wrong_type",
            "[server]\nlisten = \"0.0.0.0:25\"",
            "server.listen",
        ),
        (
            "hostname_empty",
            "[server]\nhostname = \"\"",
            "server.hostname",
        ),
        (
            "hostname_space",
            "[server]\nhostname = \"mail example\"",
            "server.hostname",
        ),
        (
            "hostname_ip",
            "[server]\nhostname = \"192.0.2.1\"",
            "server.hostname",
        ),
        (
            "hostname_hyphen",
            "[server]\nhostname = \"-mail.example\"",
            "server.hostname",
        ),
        (
            "workers_negative",
            "[server]\nworkers = -1",
            "server.workers",
        ),
        (
            "workers_too_many",
            "[server]\nworkers = 100000",
            "server.workers",
        ),
        (
            "proxy_without_from",
            "[server]\nproxy_protocol = true",
            "server.proxy_from",
        ),
        (
            "proxy_from_bad",
            "[server]\nproxy_from = [\"10.0.0.0/33\"]",
            "server.proxy_from[0]",
        ),
        (
            "proxy_timeout_zero",
            "[server]\nproxy_timeout_s = 0",
            "server.proxy_timeout_s",
        ),
        (
            "metrics_bad",
            "[server]\nmetrics = \"9425\"",
            "server.metrics",
        ),
        (
            "metrics_is_listen",
            "[server]\nmetrics = \"127.0.0.1:2525\"",
            "server.metrics",
        ),
        (
            "server_unknown",
            "[server]\nlisten_on = []",
            "server.listen_on",
        ),
        ("tls_no_cert", "[tls]\nkey = \"k.pem\"", "tls.cert"),
        ("tls_no_key", "[tls]\ncert = \"c.pem\"", "tls.key"),
        (
            "tls_empty_path",
            "[tls]\ncert = \"\"\nkey = \"k.pem\"",
            "tls.cert",
        ),
        (
            "tls_require_string",
            "[tls]\ncert = \"c\"\nkey = \"k\"\nrequire = \"yes\"",
            "tls.require",
        ),
        (
            "tls_client_cert_alone",
            "[tls]\ncert = \"c\"\nkey = \"k\"\nclient_cert = \"cc\"",
            "tls.client_key",
        ),
        (
            "tls_unknown",
            "[tls]\ncert = \"c\"\nkey = \"k\"\nca = \"x\"",
            "tls.ca",
        ),
        ("sni_no_cert", "[tls]\ncert = \"c\"\nkey = \"k\"\n[[tls.sni]]\nkey = \"k2\"", "tls.sni[0].cert"),
        ("sni_no_key", "[tls]\ncert = \"c\"\nkey = \"k\"\n[[tls.sni]]\ncert = \"c2\"", "tls.sni[0].key"),
        ("sni_names_empty", "[tls]\ncert = \"c\"\nkey = \"k\"\n[[tls.sni]]\nnames = []\ncert = \"c2\"\nkey = \"k2\"", "tls.sni[0].names"),
        ("sni_name_bad", "[tls]\ncert = \"c\"\nkey = \"k\"\n[[tls.sni]]\nnames = [\"mail example.net\"]\ncert = \"c2\"\nkey = \"k2\"", "tls.sni[0].names[0]"),
        ("sni_name_ip", "[tls]\ncert = \"c\"\nkey = \"k\"\n[[tls.sni]]\nnames = [\"192.0.2.1\"]\ncert = \"c2\"\nkey = \"k2\"", "tls.sni[0].names[0]"),
        ("sni_name_partial_wildcard", "[tls]\ncert = \"c\"\nkey = \"k\"\n[[tls.sni]]\nnames = [\"m*.example.net\"]\ncert = \"c2\"\nkey = \"k2\"", "tls.sni[0].names[0]"),
        ("sni_name_twice", "[tls]\ncert = \"c\"\nkey = \"k\"\n[[tls.sni]]\nnames = [\"a.example\"]\ncert = \"c2\"\nkey = \"k2\"\n[[tls.sni]]\nnames = [\"A.example\"]\ncert = \"c3\"\nkey = \"k3\"", "tls.sni[1].names[0]"),
        ("sni_unknown", "[tls]\ncert = \"c\"\nkey = \"k\"\n[[tls.sni]]\nname = \"a.example\"\ncert = \"c2\"\nkey = \"k2\"", "tls.sni[0].name"),
        ("sni_not_tables", "[tls]\ncert = \"c\"\nkey = \"k\"\nsni = \"a.example\"", "tls.sni"),
        (
            "size_small",
            "[limits]\nmax_message_size = 1000",
            "limits.max_message_size",
        ),
        (
            "recipients_zero",
            "[limits]\nmax_recipients = 0",
            "limits.max_recipients",
        ),
        (
            "header_small",
            "[limits]\nmax_header_bytes = 10",
            "limits.max_header_bytes",
        ),
        ("hops_zero", "[limits]\nmax_hops = 0", "limits.max_hops"),
        (
            "conn_zero",
            "[limits]\nmax_connections_per_ip = 0",
            "limits.max_connections_per_ip",
        ),
        (
            "errors_zero",
            "[limits]\nmax_errors = 0",
            "limits.max_errors",
        ),
        (
            "window_too_big",
            "[limits]\nmax_message_size = 65536\nscan_window = 65537",
            "limits.scan_window",
        ),
        (
            "bare_lf_unknown",
            "[limits]\nbare_lf = \"strip\"",
            "limits.bare_lf",
        ),
        (
            "command_timeout_zero",
            "[limits]\ncommand_timeout_s = 0",
            "limits.command_timeout_s",
        ),
        (
            "next_hop_timeout_zero",
            "[limits]\nnext_hop_timeout_s = 0",
            "limits.next_hop_timeout_s",
        ),
        (
            "data_timeout_zero",
            "[limits]\ndata_timeout_s = 0",
            "limits.data_timeout_s",
        ),
        (
            "data_timeout_huge",
            "[limits]\ndata_timeout_s = 100000000",
            "limits.data_timeout_s",
        ),
        (
            "limits_unknown",
            "[limits]\nmax_size = 1",
            "limits.max_size",
        ),
        ("threshold_nan", "[spam]\nthreshold = nan", "spam.threshold"),
        (
            "threshold_string",
            "[spam]\nthreshold = \"5\"",
            "spam.threshold",
        ),
        (
            "rules_empty_path",
            "[spam]\nrules = [\"\"]",
            "spam.rules[0]",
        ),
        (
            "exchange_ip",
            "[exchange]\npublic_ips = [\"198.51.100.0/24\"]",
            "exchange.public_ips[0]",
        ),
        ("exchange_unknown", "[exchange]\nips = []", "exchange.ips"),
        (
            "connector_name_empty",
            "[exchange]\nconnector_name = \" \"",
            "exchange.connector_name",
        ),
        (
            "connector_name_newline",
            "[exchange]\nconnector_name = \"Con\\nbool\"",
            "exchange.connector_name",
        ),
        (
            "connector_name_too_long",
            "[exchange]\nconnector_name = \"0123456789012345678901234567890123456789012345678901234567890123456789\"",
            "exchange.connector_name",
        ),
        (
            "rule_priority_negative",
            "[exchange]\nrule_priority = -1",
            "exchange.rule_priority",
        ),
        (
            "rule_priority_too_big",
            "[exchange]\nrule_priority = 299",
            "exchange.rule_priority",
        ),
        (
            "rule_name_prefix_too_long",
            "[exchange]\nrule_name_prefix = \"0123456789012345678901234567890123456789012345678 \"",
            "exchange.rule_name_prefix",
        ),
        (
            "rule_name_prefix_tab",
            "[exchange]\nrule_name_prefix = \"Acme\\t\"",
            "exchange.rule_name_prefix",
        ),
        ("section_unknown", "[logging]\nlevel = 1", "logging"),
        ("top_key_unknown", "hostname = \"x\"", "hostname"),
    ];

    /// Tenant rows replace the minimal tenant: (row name, `[[tenant]]` body, key).
    const INVALID_TENANT: &[(&str, &str, &str)] = &[
        ("no_name", "next_hop = \"a:25\"", "tenant[0].name"),
        ("bad_name", "name = \"a_b.example\"\nnext_hop = \"a:25\"", "tenant[0].name"),
        ("no_next_hop", "name = \"a.example\"", "tenant[0].next_hop"),
        ("next_hop_no_port", "name = \"a.example\"\nnext_hop = \"x\"", "tenant[0].next_hop"),
        ("next_hop_port_zero", "name = \"a.example\"\nnext_hop = \"x:0\"", "tenant[0].next_hop"),
        ("next_hop_port_big", "name = \"a.example\"\nnext_hop = \"x:65536\"", "tenant[0].next_hop"),
        ("next_hop_v6_unbracketed", "name = \"a.example\"\nnext_hop = \"2001:db8::1:25\"", "tenant[0].next_hop"),
        ("next_hop_tls_unknown", "name = \"a.example\"\nnext_hop = \"a:25\"\nnext_hop_tls = \"always\"", "tenant[0].next_hop_tls"),
        ("domain_bad", "name = \"a.example\"\nnext_hop = \"a:25\"\ndomains = [\"a.example\", \"b..example\"]", "tenant[0].domains[1]"),
        ("domain_twice", "name = \"a.example\"\nnext_hop = \"a:25\"\ndomains = [\"a.example\", \"A.example\"]", "tenant[0].domains[1]"),
        ("domains_empty_untrusted", "name = \"a.example\"\nnext_hop = \"a:25\"\ndomains = []", "tenant[0].domains"),
        ("domains_not_array", "name = \"a.example\"\nnext_hop = \"a:25\"\ndomains = \"a.example\"", "tenant[0].domains"),
        ("network_bad", "name = \"a.example\"\nnext_hop = \"a:25\"\ntrusted_networks = [\"10.0.0.0/8\", \"10.0.0.0/x\"]", "tenant[0].trusted_networks[1]"),
        ("cert_names_without_client_ca", "name = \"a.example\"\nnext_hop = \"a:25\"\ntrusted_cert_names = [\"mx.a.example\"]", "tenant[0].trusted_cert_names"),
        ("client_cert_alone", "name = \"a.example\"\nnext_hop = \"a:25\"\nclient_cert = \"c.pem\"", "tenant[0].client_key"),
        ("client_key_alone", "name = \"a.example\"\nnext_hop = \"a:25\"\nclient_key = \"k.pem\"", "tenant[0].client_cert"),
        ("tls_name_bad", "name = \"a.example\"\nnext_hop = \"a:25\"\nnext_hop_tls_name = \"mx a.example\"", "tenant[0].next_hop_tls_name"),
        ("disclaimer_no_html", "name = \"a.example\"\nnext_hop = \"a:25\"\ndisclaimer = { text = \"t\" }", "tenant[0].disclaimer.html"),
        ("disclaimer_unknown", "name = \"a.example\"\nnext_hop = \"a:25\"\ndisclaimer = { text = \"t\", html = \"h\", md = \"m\" }", "tenant[0].disclaimer.md"),
        ("disclaimer_string", "name = \"a.example\"\nnext_hop = \"a:25\"\ndisclaimer = \"t\"", "tenant[0].disclaimer"),
        ("disclaimer_text_twice", "name = \"a.example\"\nnext_hop = \"a:25\"\ndisclaimer = { text = \"t\", text_file = \"t.txt\", html = \"h\" }", "tenant[0].disclaimer.text_file"),
        ("disclaimer_file_missing", "name = \"a.example\"\nnext_hop = \"a:25\"\ndisclaimer = { text = \"t\", html_file = \"/nonexistent/conbool-h.html\" }", "tenant[0].disclaimer.html_file"),
        ("disclaimer_empty_text", "name = \"a.example\"\nnext_hop = \"a:25\"\ndisclaimer = { text = \"\", html = \"h\" }", "tenant[0].disclaimer.text"),
        ("disclaimer_applies_to_unknown", "name = \"a.example\"\nnext_hop = \"a:25\"\ndisclaimer = { text = \"t\", html = \"h\", applies_to = \"inbound\" }", "tenant[0].disclaimer.applies_to"),
        ("disclaimer_nul", "name = \"a.example\"\nnext_hop = \"a:25\"\ndisclaimer = { text = \"a\\u0000b\", html = \"h\" }", "tenant[0].disclaimer.text"),
        ("tenant_unknown", "name = \"a.example\"\nnext_hop = \"a:25\"\nnexthop = \"a:25\"", "tenant[0].nexthop"),
    ];

    fn assert_names_key(row: &str, text: &str, key: &str) {
        let got = errors(text);
        assert!(!got.is_empty(), "{row}: accepted\n{text}");
        for (k, message) in &got {
            assert_eq!(k, key, "{row}: {message}");
            assert!(!message.is_empty(), "{row}: empty message");
        }
    }

    #[test]
    fn each_validation_error_names_its_key() {
        for (row, extra, key) in INVALID {
            assert_names_key(row, &with(extra), key);
        }
        for (row, body, key) in INVALID_TENANT {
            assert_names_key(row, &format!("[[tenant]]\n{body}\n"), key);
        }
    }

    #[test]
    fn problems_across_sections_are_all_reported() {
        let text = r#"
[server]
listen = ["nope"]
workers = "x"

[limits]
max_errors = 0

[[tenant]]
name = "a.example"
next_hop = "a:25"

[[tenant]]
name = "b.example"
domains = ["a.example"]
next_hop = "b"
"#;
        let e = parse(text).expect_err("invalid");
        let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "/etc/conbool/conbool.toml: server.workers: invalid type: string \"x\", expected a non-negative integer",
                "/etc/conbool/conbool.toml: server.listen[0]: expected IP:port such as 0.0.0.0:25 or [::]:25, got \"nope\"",
                "/etc/conbool/conbool.toml: limits.max_errors: must be at least 1",
                "/etc/conbool/conbool.toml: tenant[1].next_hop: expected host:port, got \"b\"",
                "/etc/conbool/conbool.toml: tenant[1].domains[0]: \"a.example\" is already owned by tenant[0] (a.example)",
            ]
        );
        assert_eq!(e.to_string().lines().count(), 5);
    }

    #[test]
    fn duplicate_tenants() {
        let rows: &[(&str, &str, &str)] = &[
            (
                "same_name",
                "name = \"a.example\"\ndomains = [\"x.example\"]",
                "tenant[1].name",
            ),
            ("same_loop_header", "name = \"a-example\"", "tenant[1].name"),
            (
                "shared_domain",
                "name = \"b.example\"\ndomains = [\"b.example\", \"A.EXAMPLE\"]",
                "tenant[1].domains[1]",
            ),
        ];
        for (row, second, key) in rows {
            let text = format!("{MINIMAL}[[tenant]]\n{second}\nnext_hop = \"b:25\"\n");
            assert_names_key(row, &text, key);
        }
        // A wildcard beside an exact domain of another tenant is allowed: the exact one wins.
        let text = format!("{MINIMAL}[[tenant]]\nname = \"b.example\"\ndomains = [\"*.a.example\"]\nnext_hop = \"b:25\"\n");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn no_tenant_is_an_error() {
        assert_eq!(errors("[server]\nworkers = 1\n")[0].0, "tenant");
        assert_eq!(errors("")[0].0, "tenant");
    }

    #[test]
    fn bad_value_is_reported_once() {
        // tls.cert has the wrong type: reported as such, not again as "required".
        let got = errors(&with("[tls]\ncert = 5\nkey = \"k\"\n"));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "tls.cert");
        assert!(got[0].1.starts_with("invalid type"), "{got:?}");
        // A tenant that is not a table is reported once, and later tenants keep their index.
        let got = errors("tenant = [1, { name = \"b.example\", next_hop = \"x\" }]");
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["tenant[0]", "tenant[1].next_hop"]);
    }

    #[test]
    fn syntax_error_names_the_file_and_line() {
        let e = parse("[server\n").expect_err("invalid");
        let line = e.to_string();
        assert!(
            line.starts_with("/etc/conbool/conbool.toml: line 1, column"),
            "{line}"
        );
    }

    #[test]
    fn load_reports_missing_and_non_utf8_files() {
        let dir = std::env::temp_dir().join(format!("conbool-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.toml");
        let e = Config::load(&missing).expect_err("missing");
        assert!(e.to_string().contains("cannot open"), "{e}");
        let latin1 = dir.join("latin1.toml");
        std::fs::write(&latin1, b"# caf\xe9\n").unwrap();
        let e = Config::load(&latin1).expect_err("not utf-8");
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn warnings_name_their_keys() {
        let rows: &[(&str, &str, &str)] = &[
            (
                "few_recipients",
                "[limits]\nmax_recipients = 99",
                "limits.max_recipients",
            ),
            (
                "short_command_timeout",
                "[limits]\ncommand_timeout_s = 30",
                "limits.command_timeout_s",
            ),
            (
                "short_data_timeout",
                "[limits]\ndata_timeout_s = 30",
                "limits.data_timeout_s",
            ),
            (
                "proxy_from_unused",
                "[server]\nproxy_from = [\"10.0.0.0/8\"]",
                "server.proxy_from",
            ),
            ("threshold_zero", "[spam]\nthreshold = 0", "spam.threshold"),
        ];
        let tls = "[tls]\ncert = \"c\"\nkey = \"k\"\n";
        for (row, extra, key) in rows {
            let c =
                parse(&format!("{tls}{extra}\n{MINIMAL}")).unwrap_or_else(|e| panic!("{row}: {e}"));
            let keys: Vec<String> = c.warnings().iter().map(|w| w.key().to_string()).collect();
            assert_eq!(keys, [*key], "{row}");
        }
        let tenant_rows: &[(&str, &str, &str)] = &[
            (
                "open_relay",
                "trusted_networks = [\"0.0.0.0/0\"]",
                "tenant[0].trusted_networks[0]",
            ),
            (
                "host_bits",
                "trusted_networks = [\"10.1.2.3/8\"]",
                "tenant[0].trusted_networks[0]",
            ),
            (
                "ca_unused",
                "next_hop_ca = \"ca.pem\"",
                "tenant[0].next_hop_ca",
            ),
            (
                "client_cert_plain",
                "next_hop_tls = \"none\"\nclient_cert = \"c\"\nclient_key = \"k\"",
                "tenant[0].client_cert",
            ),
            (
                "tls_name_plain",
                "next_hop_tls = \"none\"\nnext_hop_tls_name = \"mx.a.example\"",
                "tenant[0].next_hop_tls_name",
            ),
            (
                "verify_ip_literal_without_name",
                "next_hop_tls = \"verify\"",
                "tenant[0].next_hop_tls_name",
            ),
        ];
        for (row, extra, key) in tenant_rows {
            let c =
                parse(&format!("{tls}{MINIMAL}{extra}\n")).unwrap_or_else(|e| panic!("{row}: {e}"));
            let keys: Vec<String> = c.warnings().iter().map(|w| w.key().to_string()).collect();
            assert_eq!(keys, [*key], "{row}");
        }
        let c = parse(MINIMAL).unwrap();
        let keys: Vec<String> = c.warnings().iter().map(|w| w.key().to_string()).collect();
        assert_eq!(keys, ["tls"]);
        // An IP-literal next hop under verify with the name its certificate carries: quiet.
        let named = format!(
            "{tls}{MINIMAL}next_hop_tls = \"verify\"\nnext_hop_tls_name = \"mx.a.example\"\n"
        );
        let c = parse(&named).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    #[test]
    fn exchange_keys_are_read() {
        let c = parse(&with(
            "[exchange]\npublic_ips = [\"198.51.100.10\", \"2001:db8::25\"]\n\
             connector_name = \"Conbool EU\"\nrule_priority = 3\nrule_name_prefix = \"Acme \"",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let x = &c.exchange;
        assert_eq!(x.public_ips.len(), 2);
        assert_eq!(x.connector_name, "Conbool EU");
        assert_eq!(x.rule_priority, 3);
        assert_eq!(x.relay_rule_name(), "Acme Relay to Conbool");
        assert_eq!(x.spam_rule_name(), "Acme Classify Spam");
        // The longest prefix that still fits: 48 + 16 = 64 characters.
        let prefix = "p".repeat(48);
        let c = parse(&with(&format!(
            "[exchange]\nrule_name_prefix = \"{prefix}\""
        )))
        .unwrap();
        assert_eq!(c.exchange.relay_rule_name().chars().count(), 64);
        assert_eq!(Exchange::default().relay_rule_name(), "Relay to Conbool");
    }

    #[test]
    fn cidr_parses_and_displays() {
        let rows: &[(&str, &str, Option<&str>)] = &[
            ("v4", "10.0.0.0/8", Some("10.0.0.0/8")),
            ("v4_host", "192.0.2.7", Some("192.0.2.7/32")),
            ("v4_zero", "0.0.0.0/0", Some("0.0.0.0/0")),
            ("v6", "2001:db8::/32", Some("2001:db8::/32")),
            ("v6_host", "::1", Some("::1/128")),
            ("v4_prefix_too_long", "10.0.0.0/33", None),
            ("v6_prefix_too_long", "::/129", None),
            ("prefix_huge", "10.0.0.0/999", None),
            ("prefix_plus", "10.0.0.0/+8", None),
            ("prefix_empty", "10.0.0.0/", None),
            ("prefix_space", "10.0.0.0/ 8", None),
            ("not_ip", "example.com/8", None),
            ("empty", "", None),
            ("two_slashes", "10.0.0.0/8/8", None),
        ];
        for (row, text, want) in rows {
            let got = text.parse::<Cidr>().map(|c| c.to_string()).ok();
            assert_eq!(got.as_deref(), *want, "{row}");
            if let Some(w) = want {
                assert_eq!(
                    w.parse::<Cidr>().unwrap().to_string(),
                    *w,
                    "{row}: round trip"
                );
            }
        }
    }

    #[test]
    fn cidr_contains_and_network() {
        let net: Cidr = "10.1.2.3/8".parse().unwrap();
        assert!(net.has_host_bits());
        assert_eq!(net.network().to_string(), "10.0.0.0");
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let all: Cidr = "::/0".parse().unwrap();
        assert!(!all.has_host_bits());
        assert!(all.contains("2001:db8::1".parse().unwrap()));
    }
}
