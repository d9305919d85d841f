//! The configuration file as written: serde structs whose field names are the TOML keys of
//! DESIGN.md §6, each with `deny_unknown_fields` and a default, plus the pass that reads a TOML
//! text into them while collecting every problem (a typo'd key in `[server]` does not hide a
//! bad value in `[[tenant]]`).
//!
//! Values stay close to the text here (addresses and CIDRs are strings); `validate` turns them
//! into the typed [`Config`](super::Config).

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::{Table, Value};

use crate::config::{BareLf, NextHopTls};

/// The default of every key that has one (DESIGN.md §5 embedded defaults and §6).
pub mod defaults {
    /// `server.listen`
    pub const LISTEN: &str = "127.0.0.1:2525";
    /// `server.hostname`
    pub const HOSTNAME: &str = "mail.conbool.com";
    /// `server.workers`: 0 means one per core.
    pub const WORKERS: usize = 0;
    /// `limits.max_message_size`: 35 MiB, Exchange Online's default send limit.
    pub const MAX_MESSAGE_SIZE: u64 = 36_700_160;
    /// `limits.max_recipients`
    pub const MAX_RECIPIENTS: usize = 500;
    /// `limits.max_header_bytes`
    pub const MAX_HEADER_BYTES: usize = 262_144;
    /// `limits.max_hops`
    pub const MAX_HOPS: usize = 50;
    /// `limits.max_connections_per_ip`
    pub const MAX_CONNECTIONS_PER_IP: usize = 20;
    /// `limits.max_errors`
    pub const MAX_ERRORS: u32 = 10;
    /// `limits.scan_window`
    pub const SCAN_WINDOW: usize = 65_536;
    /// `limits.command_timeout_s`: RFC 5321 §4.5.3.2.7 server timeout.
    pub const COMMAND_TIMEOUT_S: u64 = 300;
    /// Postfix's `smtpd_upstream_proxy_timeout` default.
    pub const PROXY_TIMEOUT_S: u64 = 5;
    /// `limits.data_timeout_s`: RFC 5321 §4.5.3.2.5 data block timeout.
    pub const DATA_TIMEOUT_S: u64 = 180;
    /// `limits.next_hop_timeout_s`: how long the next hop has for each reply.
    pub const NEXT_HOP_TIMEOUT_S: u64 = 120;
    /// `tls.reload_check_s`: seconds between looks at the certificate, key and CA files
    /// (0 = only SIGHUP reloads them).
    pub const TLS_RELOAD_CHECK_S: u64 = 60;
    /// `spam.threshold`
    pub const SPAM_THRESHOLD: f64 = 5.0;
    /// The embedded tenant's `name` and only domain.
    pub const TENANT: &str = "example.com";
    /// The embedded tenant's `next_hop`.
    pub const NEXT_HOP: &str = "127.0.0.1:2526";
    /// The embedded tenant's `trusted_networks`.
    pub const TRUSTED_NETWORK: &str = "127.0.0.0/8";
    /// `exchange.connector_name`: the Exchange connectors' name, which the routing rule names.
    pub const EXCHANGE_CONNECTOR_NAME: &str = "Conbool";
    /// `exchange.rule_priority`: the "Relay to Conbool" rule runs first.
    pub const EXCHANGE_RULE_PRIORITY: u32 = 0;
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    pub server: RawServer,
    pub tls: Option<RawTls>,
    pub limits: RawLimits,
    pub spam: RawSpam,
    pub tenant: Vec<RawTenant>,
    pub exchange: RawExchange,
    pub log: RawLog,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: crate::logging::LogFormat,
    pub level: crate::logging::Level,
    pub file: Option<std::path::PathBuf>,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: Vec<String>,
    pub hostname: String,
    pub workers: usize,
    pub proxy_protocol: bool,
    pub proxy_from: Vec<String>,
    pub proxy_timeout_s: u64,
    pub metrics: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: vec![defaults::LISTEN.to_string()],
            hostname: defaults::HOSTNAME.to_string(),
            workers: defaults::WORKERS,
            proxy_protocol: false,
            proxy_from: Vec::new(),
            proxy_timeout_s: defaults::PROXY_TIMEOUT_S,
            metrics: None,
        }
    }
}

/// `[tls]`: `cert` and `key` are required, checked in `validate` so that every missing key
/// is reported.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub require: bool,
    pub client_ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub reload_check_s: u64,
    pub sni: Vec<RawSni>,
}

/// `[[tls.sni]]`: `cert` and `key` are required, checked in `validate`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSni {
    pub names: Option<Vec<String>>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Default for RawTls {
    fn default() -> Self {
        RawTls {
            cert: None,
            key: None,
            require: false,
            client_ca: None,
            client_cert: None,
            client_key: None,
            reload_check_s: defaults::TLS_RELOAD_CHECK_S,
            sni: Vec::new(),
        }
    }
}

/// `[limits]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_header_bytes: usize,
    pub max_hops: usize,
    pub max_connections_per_ip: usize,
    pub max_errors: u32,
    pub scan_window: usize,
    pub bare_lf: BareLf,
    pub command_timeout_s: u64,
    pub data_timeout_s: u64,
    pub next_hop_timeout_s: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
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
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSpam {
    pub threshold: f64,
    pub rules: Vec<PathBuf>,
    pub model: Option<PathBuf>,
    pub internal_hosts: Option<PathBuf>,
}

impl Default for RawSpam {
    fn default() -> Self {
        RawSpam {
            threshold: defaults::SPAM_THRESHOLD,
            rules: Vec::new(),
            model: None,
            internal_hosts: None,
        }
    }
}

/// One `[[tenant]]`. `name` and `next_hop` are required (checked in `validate`); `domains`
/// defaults to `[name]` when the key is absent.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTenant {
    pub name: Option<String>,
    pub domains: Option<Vec<String>>,
    pub next_hop: Option<String>,
    pub next_hop_tls: NextHopTls,
    pub next_hop_ca: Option<PathBuf>,
    pub next_hop_tls_name: Option<String>,
    pub trusted_networks: Vec<String>,
    pub trusted_cert_names: Vec<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub disclaimer: Option<RawDisclaimer>,
}

/// A tenant's `disclaimer = { text = "...", html = "..." }`: a text and an HTML footer, each
/// inline or from a file (`text_file`, `html_file`), plus where it applies.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDisclaimer {
    pub text: Option<String>,
    pub html: Option<String>,
    pub text_file: Option<PathBuf>,
    pub html_file: Option<PathBuf>,
    pub applies_to: super::DisclaimerScope,
    pub skip_rules: Vec<String>,
}

/// `[exchange]`: what `conbool exchange` writes into the PowerShell it prints.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawExchange {
    pub public_ips: Vec<String>,
    pub connector_name: String,
    pub rule_priority: u32,
    pub rule_name_prefix: String,
}

impl Default for RawExchange {
    fn default() -> Self {
        RawExchange {
            public_ips: Vec::new(),
            connector_name: defaults::EXCHANGE_CONNECTOR_NAME.to_string(),
            rule_priority: defaults::EXCHANGE_RULE_PRIORITY,
            rule_name_prefix: String::new(),
        }
    }
}

/// One problem found while reading: the key path (`tenant[1].next_hop`, or empty for the whole
/// file) and what is wrong.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Reads `text` into a [`RawConfig`].
///
/// A TOML syntax error ends the reading (`Err`). Otherwise every key that is unknown or has a
/// value of the wrong type is reported and dropped, and the rest is read, so that validation can
/// still report the problems of the keys that were fine. The problems returned alongside the
/// `RawConfig` name keys whose defaults now stand in for a bad value: validation must not
/// report those keys (or anything under them) again.
pub(super) fn parse(text: &str) -> Result<(RawConfig, Vec<Problem>), Vec<Problem>> {
    let mut top: Table = toml::from_str(text).map_err(|e| vec![syntax_problem(text, &e)])?;
    let mut problems = Vec::new();
    let keys: Vec<String> = top.keys().cloned().collect();
    for key in keys {
        let keep = match (key.as_str(), top.get_mut(&key)) {
            ("server", Some(v)) => check_table::<RawServer>("server", v, &[], &mut problems),
            ("tls", Some(v)) => {
                check_table::<RawTls>("tls", v, &[("sni", check_sni)], &mut problems)
            }
            ("limits", Some(v)) => check_table::<RawLimits>("limits", v, &[], &mut problems),
            ("spam", Some(v)) => check_table::<RawSpam>("spam", v, &[], &mut problems),
            ("exchange", Some(v)) => check_table::<RawExchange>("exchange", v, &[], &mut problems),
            ("log", Some(v)) => check_table::<RawLog>("log", v, &[], &mut problems),
            ("tenant", Some(v)) => check_tenants(v, &mut problems),
            _ => {
                problems.push(Problem::new(
                    &key,
                    "unknown key; the top level holds the sections `server`, `tls`, `limits`, `spam`, `tenant`, `exchange`, `log`",
                ));
                false
            }
        };
        if !keep {
            top.remove(&key);
        }
    }
    match RawConfig::deserialize(Value::Table(top)) {
        Ok(raw) => Ok((raw, problems)),
        // Unreachable when the checks above are complete; reported rather than trusted.
        Err(e) => {
            problems.push(Problem::new("", e.message().trim_end().to_string()));
            Err(problems)
        }
    }
}

type Check = fn(&str, &mut Value, &mut Vec<Problem>) -> bool;

/// `[[tenant]]`: an array of tables, each checked on its own as `tenant[i]`.
fn check_tenants(value: &mut Value, problems: &mut Vec<Problem>) -> bool {
    let Value::Array(tenants) = value else {
        problems.push(Problem::new(
            "tenant",
            format!(
                "expected an array of tables (`[[tenant]]`), got {}",
                type_name(value)
            ),
        ));
        return false;
    };
    fn check_disclaimer(path: &str, value: &mut Value, problems: &mut Vec<Problem>) -> bool {
        check_table::<RawDisclaimer>(path, value, &[], problems)
    }
    let nested: &[(&str, Check)] = &[("disclaimer", check_disclaimer)];
    for (i, tenant) in tenants.iter_mut().enumerate() {
        if !check_table::<RawTenant>(&format!("tenant[{i}]"), tenant, nested, problems) {
            // An empty stand-in keeps the later tenants at their index in the file.
            *tenant = Value::Table(Table::new());
        }
    }
    true
}

/// `[[tls.sni]]`: an array of tables, each checked on its own as `tls.sni[i]`.
fn check_sni(path: &str, value: &mut Value, problems: &mut Vec<Problem>) -> bool {
    let Value::Array(entries) = value else {
        problems.push(Problem::new(
            path,
            format!(
                "expected an array of tables (`[[tls.sni]]`), got {}",
                type_name(value)
            ),
        ));
        return false;
    };
    for (i, entry) in entries.iter_mut().enumerate() {
        if !check_table::<RawSni>(&format!("{path}[{i}]"), entry, &[], problems) {
            // An empty stand-in keeps the later entries at their index; validation then
            // reports its missing cert and key under a path already reported.
            *entry = Value::Table(Table::new());
        }
    }
    true
}

/// Checks that `value` is a table whose every key deserializes into `T` on its own; removes the
/// keys that do not (after reporting them as `path.key`). `nested` names keys holding tables
/// checked the same way, so problems inside them get their full path. Returns whether `value`
/// is a table at all (the caller drops it otherwise).
fn check_table<T: DeserializeOwned>(
    path: &str,
    value: &mut Value,
    nested: &[(&str, Check)],
    problems: &mut Vec<Problem>,
) -> bool {
    let Value::Table(table) = value else {
        problems.push(Problem::new(
            path,
            format!("expected a table, got {}", type_name(value)),
        ));
        return false;
    };
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let key_path = format!("{path}.{key}");
        let Some(v) = table.get_mut(&key) else {
            continue;
        };
        if let Some((_, check)) = nested.iter().find(|(name, _)| *name == key) {
            if !check(&key_path, v, problems) {
                table.remove(&key);
                continue;
            }
        }
        let mut alone = Table::new();
        alone.insert(key.clone(), v.clone());
        // Every field has a default, so a table with one key fails only because of that key.
        if let Err(e) = T::deserialize(Value::Table(alone)) {
            problems.push(Problem::new(key_path, describe(e.message())));
            table.remove(&key);
        }
    }
    true
}

/// serde's "unknown field `x`, expected one of ..." becomes "unknown key; expected one of ...";
/// other messages pass through.
fn describe(message: &str) -> String {
    let message = message.trim_end();
    if message.starts_with("unknown field") {
        match message.split_once(", ") {
            Some((_, expected)) => format!("unknown key; {expected}"),
            None => "unknown key".to_string(),
        }
    } else {
        // Rust type names mean little to someone editing a TOML file.
        let mut message = message.to_string();
        for (rust, toml) in [
            ("expected usize", "expected a non-negative integer"),
            ("expected u64", "expected a non-negative integer"),
            ("expected u32", "expected a non-negative integer"),
            ("expected f64", "expected a number"),
        ] {
            if let Some(head) = message.strip_suffix(rust) {
                message = format!("{head}{toml}");
            }
        }
        message
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// A TOML syntax error as `line L, column C: message`.
fn syntax_problem(text: &str, e: &toml::de::Error) -> Problem {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Problem::new(
                "",
                format!("line {line}, column {column}: TOML syntax: {message}"),
            )
        }
        None => Problem::new("", format!("TOML syntax: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text) {
            Ok((_, p)) => p,
            Err(p) => p,
        }
    }

    #[test]
    fn every_problem_is_collected() {
        let text = "
[server]
lisen = [\"0.0.0.0:25\"]
workers = \"many\"

[limits]
max_hops = -1

[[tenant]]
name = \"a.example\"
next_hop = 25
disclaimer = { txt = \"x\" }

[bogus]
";
        let got: Vec<String> = problems(text).into_iter().map(|p| p.key).collect();
        let want = [
            "server.lisen",
            "server.workers",
            "limits.max_hops",
            "tenant[0].next_hop",
            "tenant[0].disclaimer.txt",
            "bogus",
        ];
        for key in want {
            assert!(got.iter().any(|g| g == key), "missing {key} in {got:?}");
        }
        assert_eq!(got.len(), want.len(), "{got:?}");
    }

    #[test]
    fn unknown_key_lists_the_known_ones() {
        let p = problems("[server]\nlisen = []\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "server.lisen");
        assert!(p[0].message.starts_with("unknown key; expected one of"));
        assert!(p[0].message.contains("`listen`"), "{}", p[0].message);
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let p = problems("[server]\nhostname = \n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "");
        assert!(
            p[0].message.starts_with("line 2, column"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn section_of_wrong_type() {
        let p = problems("server = 1\ntenant = { name = \"x\" }\n");
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["server", "tenant"]);
    }

    #[test]
    fn bad_values_are_dropped_and_the_rest_is_kept() {
        let (raw, p) = parse("[limits]\nmax_hops = \"x\"\nmax_errors = 3\n").expect("parses");
        assert_eq!(p.len(), 1);
        assert_eq!(raw.limits.max_hops, defaults::MAX_HOPS);
        assert_eq!(raw.limits.max_errors, 3);
    }
}
