//! From the file as written ([`raw`](super::raw)) to a [`Config`]: parse addresses and networks,
//! resolve relative paths against the file's directory, resolve `workers = 0`, and check every
//! value that would make the relay unusable. Every problem is collected and named by its key
//! path (`tenant[1].next_hop`); nothing stops at the first.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::config::raw::{self, Problem, RawConfig, RawTenant};
use crate::config::{
    Cidr, Config, Disclaimer, Exchange, Limits, NextHopTls, Server, SniCert, Spam, Tenant, Tls,
    MAX_CONFIG_FILE_BYTES, MAX_DISCLAIMER_BYTES,
};

/// `limits.max_message_size` floor: RFC 5321 §4.5.3.1.7 requires at least 64 KiB of content.
pub const MIN_MESSAGE_SIZE: u64 = 65_536;
/// `limits.max_header_bytes` floor: room for a few real header lines.
pub const MIN_HEADER_BYTES: usize = 1024;
/// `limits.max_recipients` below this earns a warning (RFC 5321 §4.5.3.1.8).
pub const RFC_MIN_RECIPIENTS: usize = 100;
/// `limits.command_timeout_s` below this earns a warning (RFC 5321 §4.5.3.2.7).
pub const RFC_MIN_COMMAND_TIMEOUT_S: u64 = 300;
/// `limits.data_timeout_s` below this earns a warning (RFC 5321 §4.5.3.2.5).
pub const RFC_MIN_DATA_TIMEOUT_S: u64 = 180;
/// Ceiling of both timeouts: one day. Larger values are typos, and would overflow deadlines.
pub const MAX_TIMEOUT_S: u64 = 86_400;
/// Ceiling of `server.workers`.
pub const MAX_WORKERS: usize = 1024;
/// Longest name of an Exchange connector or transport rule (the cmdlets' `-Name` limit).
pub const MAX_EXCHANGE_NAME_CHARS: usize = 64;
/// Ceiling of `exchange.rule_priority`: Exchange Online holds at most 300 transport rules
/// (priorities 0 to 299), and "Classify Spam" takes the priority after "Relay to Conbool".
pub const MAX_EXCHANGE_RULE_PRIORITY: u32 = 298;

/// One problem in a configuration file.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfigError {
    file: PathBuf,
    key: String,
    message: String,
}

impl ConfigError {
    /// The file the problem is in, as given to [`Config::load`] or [`Config::from_toml_str`].
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The key path, such as `tenant[0].next_hop`; empty when the problem is the whole file
    /// (unreadable, TOML syntax).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    /// `conbool.toml: tenant[0].next_hop: expected host:port, got "x"`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration file; never empty.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    fn new(file: &Path, problems: Vec<Problem>) -> ConfigErrors {
        let errors = problems
            .into_iter()
            .map(|p| ConfigError {
                file: file.to_path_buf(),
                key: p.key,
                message: p.message,
            })
            .collect();
        ConfigErrors { errors }
    }

    /// The problems, grouped by section in file order (`server`, `tls`, `limits`, `spam`,
    /// `tenant`, `exchange`).
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a `ConfigErrors` holds at least one problem.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A setting that is valid but probably not meant; see [`Config::warnings`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfigWarning {
    key: String,
    message: String,
}

impl ConfigWarning {
    fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigWarning {
        ConfigWarning {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key path, as in [`ConfigError::key`].
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What looks wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigWarning {
    /// `limits.max_recipients: ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// `workers = 0` means one per core.
pub(super) fn resolve_workers(workers: usize) -> usize {
    if workers > 0 {
        return workers;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(super) fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let whole_file = |message: String| ConfigErrors::new(path, vec![Problem::new("", message)]);
    let file = std::fs::File::open(path).map_err(|e| whole_file(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| whole_file(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(whole_file(format!(
            "larger than {MAX_CONFIG_FILE_BYTES} bytes; is this the right file?"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        whole_file(format!(
            "not UTF-8 (byte {}): TOML files are UTF-8",
            e.utf8_error().valid_up_to()
        ))
    })?;
    from_toml_str(&text, path)
}

pub(super) fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigErrors> {
    let base = origin.parent().unwrap_or(Path::new(""));
    let (raw, mut problems) = raw::parse(text).map_err(|p| ConfigErrors::new(origin, p))?;
    let mut v = Validator {
        base,
        reported: problems.clone(),
        problems: Vec::new(),
    };
    let config = v.config(raw);
    problems.append(&mut v.problems);
    if problems.is_empty() {
        return Ok(config);
    }
    // Stable: within a section, problems keep the order they were found in.
    problems.sort_by_key(|p| section_rank(&p.key));
    Err(ConfigErrors::new(origin, problems))
}

fn section_rank(key: &str) -> usize {
    const ORDER: [&str; 7] = [
        "server", "tls", "limits", "spam", "tenant", "exchange", "log",
    ];
    let section = key.split(['.', '[']).next().unwrap_or("");
    if section.is_empty() {
        return 0;
    }
    ORDER
        .iter()
        .position(|s| *s == section)
        .map_or(ORDER.len() + 1, |i| i + 1)
}

struct Validator<'a> {
    base: &'a Path,
    /// Problems the raw pass already reported; their keys hold defaults now.
    reported: Vec<Problem>,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn config(&mut self, raw: RawConfig) -> Config {
        let server = self.server(raw.server);
        let tls = raw.tls.map(|t| self.tls(t));
        let limits = self.limits(raw.limits);
        let spam = self.spam(raw.spam);
        let client_ca = tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        let tenants = self.tenants(raw.tenant, client_ca);
        let exchange = self.exchange(raw.exchange);
        let log = crate::config::Log {
            format: raw.log.format,
            level: raw.log.level,
            file: raw.log.file.map(|p| self.path("log.file", p)),
        };
        Config {
            server,
            tls,
            limits,
            spam,
            tenants,
            exchange,
            log,
        }
    }

    fn server(&mut self, raw: raw::RawServer) -> Server {
        if raw.listen.is_empty() {
            self.problem("server.listen", "at least one address is required");
        }
        let mut listen: Vec<SocketAddr> = Vec::new();
        for (i, text) in raw.listen.iter().enumerate() {
            let key = format!("server.listen[{i}]");
            if let Some(addr) = self.socket_addr(&key, text) {
                match listen.iter().position(|a| *a == addr) {
                    Some(j) => self.problem(key, format!("{addr} is also server.listen[{j}]")),
                    None => listen.push(addr),
                }
            }
        }
        if let Err(message) = check_hostname(&raw.hostname) {
            self.problem("server.hostname", message);
        }
        if raw.workers > MAX_WORKERS {
            self.problem(
                "server.workers",
                format!(
                    "{} is more than {MAX_WORKERS}; 0 means one per core",
                    raw.workers
                ),
            );
        }
        if raw.proxy_protocol && raw.proxy_from.is_empty() {
            self.problem(
                "server.proxy_from",
                "required when proxy_protocol = true: the load balancers allowed to send PROXY headers",
            );
        }
        let proxy_from = self.cidrs("server.proxy_from", &raw.proxy_from);
        if raw.proxy_timeout_s == 0 || raw.proxy_timeout_s > MAX_TIMEOUT_S {
            self.problem(
                "server.proxy_timeout_s",
                format!(
                    "{} is outside 1 to {MAX_TIMEOUT_S} seconds",
                    raw.proxy_timeout_s
                ),
            );
        }
        let metrics = raw.metrics.as_deref().and_then(|text| {
            let addr = self.socket_addr("server.metrics", text)?;
            if let Some(i) = listen.iter().position(|a| *a == addr) {
                self.problem(
                    "server.metrics",
                    format!("{addr} is also server.listen[{i}]"),
                );
            }
            Some(addr)
        });
        Server {
            listen,
            hostname: raw.hostname.to_ascii_lowercase(),
            workers: resolve_workers(raw.workers.min(MAX_WORKERS)),
            proxy_protocol: raw.proxy_protocol,
            proxy_from,
            proxy_timeout_s: raw.proxy_timeout_s,
            metrics,
        }
    }

    /// `client_cert` and `client_key` of `path` (`tls` or `tenant[i]`): both or neither.
    fn cert_pair(
        &mut self,
        path: &str,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> (Option<PathBuf>, Option<PathBuf>) {
        match (cert, key) {
            (Some(c), Some(k)) => (
                Some(self.path(&format!("{path}.client_cert"), c)),
                Some(self.path(&format!("{path}.client_key"), k)),
            ),
            (Some(_), None) => {
                self.problem(format!("{path}.client_key"), "required with client_cert");
                (None, None)
            }
            (None, Some(_)) => {
                self.problem(format!("{path}.client_cert"), "required with client_key");
                (None, None)
            }
            (None, None) => (None, None),
        }
    }

    fn tls(&mut self, raw: raw::RawTls) -> Tls {
        let cert = self.required_path(
            "tls.cert",
            raw.cert,
            "(or remove [tls] to run without STARTTLS)",
        );
        let key = self.required_path(
            "tls.key",
            raw.key,
            "(or remove [tls] to run without STARTTLS)",
        );
        let client_ca = raw.client_ca.map(|p| self.path("tls.client_ca", p));
        let (client_cert, client_key) = self.cert_pair("tls", raw.client_cert, raw.client_key);
        let sni = self.sni(raw.sni);
        Tls {
            cert,
            key,
            require: raw.require,
            client_ca,
            client_cert,
            client_key,
            reload_check_s: raw.reload_check_s,
            sni,
        }
    }

    /// `[[tls.sni]]`: `cert` and `key` required; `names`, when given, non-empty, each a name
    /// or one-label wildcard, and none listed twice (here or in another entry). Names taken
    /// from the certificates are checked when the files are loaded.
    fn sni(&mut self, raw: Vec<raw::RawSni>) -> Vec<SniCert> {
        let mut seen: Vec<(String, usize)> = Vec::new();
        let mut entries = Vec::with_capacity(raw.len());
        for (i, entry) in raw.into_iter().enumerate() {
            let path = format!("tls.sni[{i}]");
            let hint = "(the certificate served for this entry's names)";
            let cert = self.required_path(&format!("{path}.cert"), entry.cert, hint);
            let key = self.required_path(&format!("{path}.key"), entry.key, "(cert's key)");
            let mut names = Vec::new();
            match entry.names {
                Some(list) if list.is_empty() => self.problem(
                    format!("{path}.names"),
                    "empty; omit it to serve the names in the certificate",
                ),
                Some(list) => {
                    for (j, name) in list.iter().enumerate() {
                        let key = format!("{path}.names[{j}]");
                        match crate::tls::sni::sni_name(name) {
                            Err(why) => self.problem(key, format!("{name:?}: {why}")),
                            Ok(name) => {
                                if let Some((_, other)) = seen.iter().find(|(n, _)| *n == name) {
                                    let message = if *other == i {
                                        format!("{name:?} is listed twice")
                                    } else {
                                        format!("{name:?} is already served by tls.sni[{other}]")
                                    };
                                    self.problem(key, message);
                                } else {
                                    seen.push((name.clone(), i));
                                    names.push(name);
                                }
                            }
                        }
                    }
                }
                None => {}
            }
            entries.push(SniCert { names, cert, key });
        }
        entries
    }

    fn limits(&mut self, raw: raw::RawLimits) -> Limits {
        if raw.max_message_size < MIN_MESSAGE_SIZE {
            self.problem(
                "limits.max_message_size",
                format!(
                    "{} is below {MIN_MESSAGE_SIZE} bytes, the RFC 5321 §4.5.3.1.7 minimum",
                    raw.max_message_size
                ),
            );
        }
        let at_least_one = [
            ("limits.max_recipients", raw.max_recipients as u64),
            ("limits.max_hops", raw.max_hops as u64),
            (
                "limits.max_connections_per_ip",
                raw.max_connections_per_ip as u64,
            ),
            ("limits.max_errors", u64::from(raw.max_errors)),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                self.problem(key, "must be at least 1");
            }
        }
        if raw.max_header_bytes < MIN_HEADER_BYTES {
            self.problem(
                "limits.max_header_bytes",
                format!("{} is below {MIN_HEADER_BYTES} bytes", raw.max_header_bytes),
            );
        }
        // Compared only with a usable max_message_size, so one mistake is reported once.
        if raw.max_message_size >= MIN_MESSAGE_SIZE && raw.scan_window as u64 > raw.max_message_size
        {
            self.problem(
                "limits.scan_window",
                format!(
                    "{} is larger than limits.max_message_size ({})",
                    raw.scan_window, raw.max_message_size
                ),
            );
        }
        for (key, value) in [
            ("limits.command_timeout_s", raw.command_timeout_s),
            ("limits.data_timeout_s", raw.data_timeout_s),
            ("limits.next_hop_timeout_s", raw.next_hop_timeout_s),
        ] {
            if value == 0 {
                self.problem(key, "must be at least 1 second");
            } else if value > MAX_TIMEOUT_S {
                self.problem(
                    key,
                    format!("{value} is more than {MAX_TIMEOUT_S} seconds (one day)"),
                );
            }
        }
        Limits {
            max_message_size: raw.max_message_size,
            max_recipients: raw.max_recipients,
            max_header_bytes: raw.max_header_bytes,
            max_hops: raw.max_hops,
            max_connections_per_ip: raw.max_connections_per_ip,
            max_errors: raw.max_errors,
            scan_window: raw.scan_window,
            bare_lf: raw.bare_lf,
            command_timeout_s: raw.command_timeout_s,
            data_timeout_s: raw.data_timeout_s,
            next_hop_timeout_s: raw.next_hop_timeout_s,
        }
    }

    fn spam(&mut self, raw: raw::RawSpam) -> Spam {
        if !raw.threshold.is_finite() {
            self.problem(
                "spam.threshold",
                format!("expected a finite number, got {}", raw.threshold),
            );
        }
        let rules = raw
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, p)| self.path(&format!("spam.rules[{i}]"), p))
            .collect();
        let model = raw.model.map(|p| self.path("spam.model", p));
        let internal_hosts = raw
            .internal_hosts
            .map(|p| self.path("spam.internal_hosts", p));
        Spam {
            threshold: raw.threshold,
            rules,
            model,
            internal_hosts,
        }
    }

    fn tenants(&mut self, raw: Vec<RawTenant>, client_ca: bool) -> Vec<Tenant> {
        if raw.is_empty() {
            self.problem(
                "tenant",
                "at least one [[tenant]] is required: without one every recipient is refused",
            );
        }
        let mut tenants: Vec<Tenant> = Vec::with_capacity(raw.len());
        // Lower-cased name, loop header and domain → index of the tenant that has it.
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut headers: HashMap<String, usize> = HashMap::new();
        let mut owners: HashMap<String, usize> = HashMap::new();
        for (i, t) in raw.into_iter().enumerate() {
            let path = format!("tenant[{i}]");
            let tenant = self.tenant(&path, t, client_ca);
            if !tenant.name.is_empty() {
                if let Some(j) = names.insert(tenant.name.clone(), i) {
                    self.problem(
                        format!("{path}.name"),
                        format!("{:?} is also tenant[{j}]'s name", tenant.name),
                    );
                } else if let Some(j) = headers.insert(tenant.loop_header(), i) {
                    self.problem(
                        format!("{path}.name"),
                        format!(
                            "its loop header {} is also tenant[{j}]'s",
                            tenant.loop_header()
                        ),
                    );
                }
            }
            for (k, domain) in tenant.domains.iter().enumerate() {
                match owners.get(domain) {
                    Some(&j) if j == i => self.problem(
                        format!("{path}.domains[{k}]"),
                        format!("{domain:?} is listed twice"),
                    ),
                    Some(&j) => self.problem(
                        format!("{path}.domains[{k}]"),
                        format!(
                            "{domain:?} is already owned by tenant[{j}] ({})",
                            tenants.get(j).map_or("", |t| t.name.as_str())
                        ),
                    ),
                    None => {
                        owners.insert(domain.clone(), i);
                    }
                }
            }
            tenants.push(tenant);
        }
        tenants
    }

    fn tenant(&mut self, path: &str, raw: RawTenant, client_ca: bool) -> Tenant {
        let name = match raw.name {
            None => {
                self.problem(format!("{path}.name"), "required");
                String::new()
            }
            Some(name) => {
                let name = name.to_ascii_lowercase();
                if let Err(message) = check_domain(&name) {
                    self.problem(format!("{path}.name"), message);
                }
                name
            }
        };
        let has_trust = !raw.trusted_networks.is_empty() || !raw.trusted_cert_names.is_empty();
        let domains: Vec<String> = match raw.domains {
            None => {
                // `domains` defaults to the tenant's name.
                if name.is_empty() {
                    Vec::new()
                } else {
                    vec![name.clone()]
                }
            }
            Some(list) => {
                if list.is_empty() && !has_trust {
                    self.problem(
                        format!("{path}.domains"),
                        "empty, and the tenant has no trusted_networks or trusted_cert_names: it would never get mail",
                    );
                }
                let mut domains = Vec::with_capacity(list.len());
                for (k, d) in list.into_iter().enumerate() {
                    let d = d.to_ascii_lowercase();
                    if let Err(message) = check_domain_pattern(&d) {
                        self.problem(format!("{path}.domains[{k}]"), message);
                    }
                    domains.push(d);
                }
                domains
            }
        };
        let next_hop = match raw.next_hop {
            None => {
                self.problem(format!("{path}.next_hop"), "required");
                String::new()
            }
            Some(hop) => {
                if let Err(message) = check_host_port(&hop) {
                    self.problem(format!("{path}.next_hop"), message);
                }
                hop
            }
        };
        let next_hop_ca = raw
            .next_hop_ca
            .map(|p| self.path(&format!("{path}.next_hop_ca"), p));
        let next_hop_tls_name = raw.next_hop_tls_name.map(|n| {
            let n = n.to_ascii_lowercase();
            if n.parse::<IpAddr>().is_err() {
                if let Err(message) = check_domain(&n) {
                    self.problem(format!("{path}.next_hop_tls_name"), message);
                }
            }
            n
        });
        let trusted_networks =
            self.cidrs(&format!("{path}.trusted_networks"), &raw.trusted_networks);
        if !raw.trusted_cert_names.is_empty() && !client_ca {
            self.problem(
                format!("{path}.trusted_cert_names"),
                "needs tls.client_ca: without it no client certificate is requested or verified",
            );
        }
        let mut trusted_cert_names = Vec::with_capacity(raw.trusted_cert_names.len());
        for (k, n) in raw.trusted_cert_names.into_iter().enumerate() {
            let n = n.to_ascii_lowercase();
            if let Err(message) = check_domain_pattern(&n) {
                self.problem(format!("{path}.trusted_cert_names[{k}]"), message);
            }
            trusted_cert_names.push(n);
        }
        let (client_cert, client_key) = self.cert_pair(path, raw.client_cert, raw.client_key);
        let disclaimer = raw.disclaimer.and_then(|d| self.disclaimer(path, d));
        Tenant {
            name,
            domains,
            next_hop,
            next_hop_tls: raw.next_hop_tls,
            next_hop_ca,
            next_hop_tls_name,
            trusted_networks,
            trusted_cert_names,
            client_cert,
            client_key,
            disclaimer,
        }
    }

    /// A tenant's disclaimer: each of text and html inline or from a file (exactly one), not
    /// empty, at most [`MAX_DISCLAIMER_BYTES`], UTF-8 without control characters but tab and
    /// line breaks.
    fn disclaimer(&mut self, path: &str, d: raw::RawDisclaimer) -> Option<Disclaimer> {
        let text = self.disclaimer_text(path, "text", d.text, d.text_file);
        let html = self.disclaimer_text(path, "html", d.html, d.html_file);
        let mut skip_rules = Vec::with_capacity(d.skip_rules.len());
        for (k, r) in d.skip_rules.into_iter().enumerate() {
            if r.trim().is_empty() {
                self.problem(
                    format!("{path}.disclaimer.skip_rules[{k}]"),
                    "empty rule name",
                );
            }
            skip_rules.push(r);
        }
        Some(Disclaimer {
            text: text?,
            html: html?,
            applies_to: d.applies_to,
            skip_rules,
        })
    }

    fn disclaimer_text(
        &mut self,
        path: &str,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
    ) -> Option<String> {
        let (at, value) = match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    format!("{path}.disclaimer.{key}_file"),
                    format!("give either {key} or {key}_file, not both"),
                );
                return None;
            }
            (None, None) => {
                self.problem(
                    format!("{path}.disclaimer.{key}"),
                    format!("required: a disclaimer has both text and html ({key} or {key}_file)"),
                );
                return None;
            }
            (Some(v), None) => (format!("{path}.disclaimer.{key}"), v),
            (None, Some(f)) => {
                let at = format!("{path}.disclaimer.{key}_file");
                let f = self.path(&at, f);
                match std::fs::read(&f) {
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Ok(v) => (at, v),
                        Err(_) => {
                            self.problem(at, format!("{} is not UTF-8", f.display()));
                            return None;
                        }
                    },
                    Err(e) => {
                        self.problem(at, format!("cannot read {}: {e}", f.display()));
                        return None;
                    }
                }
            }
        };
        if value.trim().is_empty() {
            self.problem(at, "empty disclaimer");
            return None;
        }
        if value.len() > MAX_DISCLAIMER_BYTES {
            self.problem(
                at,
                format!("{} bytes, at most {MAX_DISCLAIMER_BYTES}", value.len()),
            );
            return None;
        }
        if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
        {
            self.problem(at, "control characters other than tab and line breaks");
            return None;
        }
        Some(value)
    }

    fn exchange(&mut self, raw: raw::RawExchange) -> Exchange {
        let mut public_ips = Vec::with_capacity(raw.public_ips.len());
        for (i, text) in raw.public_ips.iter().enumerate() {
            match text.parse::<IpAddr>() {
                Ok(ip) => public_ips.push(ip),
                Err(_) => self.problem(
                    format!("exchange.public_ips[{i}]"),
                    format!("expected an IP address, got {text:?}"),
                ),
            }
        }
        if let Err(message) = check_exchange_name(&raw.connector_name, MAX_EXCHANGE_NAME_CHARS) {
            self.problem("exchange.connector_name", message);
        }
        // The prefix is checked as part of the longer of the two rule names it starts.
        let longest_rule = format!("{}{}", raw.rule_name_prefix, Exchange::RELAY_RULE);
        if let Err(message) = check_exchange_name(&longest_rule, MAX_EXCHANGE_NAME_CHARS) {
            self.problem(
                "exchange.rule_name_prefix",
                format!("gives a bad rule name: {message}"),
            );
        }
        if raw.rule_priority > MAX_EXCHANGE_RULE_PRIORITY {
            self.problem(
                "exchange.rule_priority",
                format!(
                    "{} is more than {MAX_EXCHANGE_RULE_PRIORITY}: Exchange Online holds at most 300 rules (priorities 0-299) and \"{}\" takes the priority after it",
                    raw.rule_priority,
                    Exchange::SPAM_RULE
                ),
            );
        }
        Exchange {
            public_ips,
            connector_name: raw.connector_name,
            rule_priority: raw.rule_priority.min(MAX_EXCHANGE_RULE_PRIORITY),
            rule_name_prefix: raw.rule_name_prefix,
        }
    }

    fn cidrs(&mut self, key: &str, texts: &[String]) -> Vec<Cidr> {
        let mut cidrs = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            match text.parse::<Cidr>() {
                Ok(c) => cidrs.push(c),
                Err(e) => self.problem(format!("{key}[{i}]"), e.to_string()),
            }
        }
        cidrs
    }

    fn socket_addr(&mut self, key: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problem(
                    key,
                    format!("expected IP:port such as 0.0.0.0:25 or [::]:25, got {text:?}"),
                );
                None
            }
        }
    }

    fn required_path(&mut self, key: &str, path: Option<PathBuf>, hint: &str) -> PathBuf {
        match path {
            Some(p) => self.path(key, p),
            None => {
                self.problem(key, format!("required {hint}"));
                PathBuf::new()
            }
        }
    }

    /// A path from the file, resolved against the file's directory when relative.
    fn path(&mut self, key: &str, path: PathBuf) -> PathBuf {
        if path.as_os_str().is_empty() {
            self.problem(key, "empty path");
            return path;
        }
        if path.is_absolute() {
            path
        } else {
            self.base.join(path)
        }
    }

    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let covered = self.reported.iter().any(|r| {
            key == r.key
                || key
                    .strip_prefix(r.key.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        });
        if !covered {
            self.problems.push(Problem::new(key, message));
        }
    }
}

pub(super) fn warnings(config: &Config) -> Vec<ConfigWarning> {
    let mut w = Vec::new();
    let limits = &config.limits;
    if config.tls.is_none() {
        w.push(ConfigWarning::new(
            "tls",
            "absent: STARTTLS is not offered, and Exchange connectors require TLS",
        ));
    }
    if !config.server.proxy_protocol && !config.server.proxy_from.is_empty() {
        w.push(ConfigWarning::new(
            "server.proxy_from",
            "ignored while proxy_protocol = false",
        ));
    }
    for (i, c) in config.server.proxy_from.iter().enumerate() {
        host_bits_warning(&mut w, &format!("server.proxy_from[{i}]"), c);
    }
    if limits.max_recipients > 0 && limits.max_recipients < RFC_MIN_RECIPIENTS {
        w.push(ConfigWarning::new(
            "limits.max_recipients",
            format!(
                "{} is below {RFC_MIN_RECIPIENTS}, the RFC 5321 §4.5.3.1.8 minimum",
                limits.max_recipients
            ),
        ));
    }
    if limits.command_timeout_s > 0 && limits.command_timeout_s < RFC_MIN_COMMAND_TIMEOUT_S {
        w.push(ConfigWarning::new(
            "limits.command_timeout_s",
            format!(
                "{} is below {RFC_MIN_COMMAND_TIMEOUT_S}, the RFC 5321 §4.5.3.2.7 server timeout",
                limits.command_timeout_s
            ),
        ));
    }
    if limits.data_timeout_s > 0 && limits.data_timeout_s < RFC_MIN_DATA_TIMEOUT_S {
        w.push(ConfigWarning::new(
            "limits.data_timeout_s",
            format!(
                "{} is below {RFC_MIN_DATA_TIMEOUT_S}, the RFC 5321 §4.5.3.2.5 data block timeout",
                limits.data_timeout_s
            ),
        ));
    }
    if config.spam.threshold <= 0.0 {
        w.push(ConfigWarning::new(
            "spam.threshold",
            "at or below 0: every message is flagged YES",
        ));
    }
    for (i, t) in config.tenants.iter().enumerate() {
        let path = format!("tenant[{i}]");
        for (k, c) in t.trusted_networks.iter().enumerate() {
            let key = format!("{path}.trusted_networks[{k}]");
            if c.prefix == 0 {
                w.push(ConfigWarning::new(
                    key,
                    format!("{c} trusts every address: anyone can send as {}", t.name),
                ));
            } else {
                host_bits_warning(&mut w, &key, c);
            }
        }
        if t.next_hop_ca.is_some() && t.next_hop_tls != NextHopTls::Verify {
            w.push(ConfigWarning::new(
                format!("{path}.next_hop_ca"),
                "only used with next_hop_tls = \"verify\"",
            ));
        }
        if t.next_hop_tls_name.is_some() && t.next_hop_tls == NextHopTls::None {
            w.push(ConfigWarning::new(
                format!("{path}.next_hop_tls_name"),
                "never used while next_hop_tls = \"none\"",
            ));
        }
        if t.next_hop_tls == NextHopTls::Verify
            && t.next_hop_tls_name.is_none()
            && crate::tls::next_hop_server_name(&t.next_hop)
                .parse::<IpAddr>()
                .is_ok()
        {
            w.push(ConfigWarning::new(
                format!("{path}.next_hop_tls_name"),
                format!(
                    "absent while next_hop_tls = \"verify\" and next_hop {} is an IP address: \
                     the next hop's certificate must then name that address (an IP SAN); set \
                     next_hop_tls_name to the name its certificate carries",
                    t.next_hop
                ),
            ));
        }
        if t.client_cert.is_some() && t.next_hop_tls == NextHopTls::None {
            w.push(ConfigWarning::new(
                format!("{path}.client_cert"),
                "never presented while next_hop_tls = \"none\"",
            ));
        }
    }
    w
}

fn host_bits_warning(w: &mut Vec<ConfigWarning>, key: &str, c: &Cidr) {
    if c.has_host_bits() {
        w.push(ConfigWarning::new(
            key,
            format!(
                "{c} has host bits set; it means {}/{}",
                c.network(),
                c.prefix
            ),
        ));
    }
}

/// `server.hostname`: a domain name, not an address.
fn check_hostname(name: &str) -> Result<(), String> {
    if name.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "expected a host name (the one in the TLS certificate), got the address {name:?}"
        ));
    }
    check_domain(name)
}

/// A domain name in ASCII (A-label) form: dot-separated labels of letters, digits and hyphens,
/// each 1-63 bytes and not starting or ending with a hyphen, 253 bytes in all.
pub(crate) fn check_domain(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("expected a domain name, got {name:?}: {why}"));
    if name.is_empty() {
        return Err("expected a domain name, got an empty string".to_string());
    }
    if !name.is_ascii() {
        return bad("write international names in their xn-- (punycode) form");
    }
    if name.len() > 253 {
        return bad("longer than 253 bytes");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return bad("empty label");
        }
        if label.len() > 63 {
            return bad("a label is longer than 63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("only letters, digits, hyphens and dots are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with a hyphen");
        }
    }
    Ok(())
}

/// The name of an Exchange object (connector, transport rule, or the start of one): at most
/// `max_chars` characters, no control characters (they would end the PowerShell comment or
/// string they are written into), no leading or trailing space.
fn check_exchange_name(name: &str, max_chars: usize) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("expected a name, got an empty string".to_string());
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{name:?} contains a control character"));
    }
    if name.trim() != name {
        return Err(format!("{name:?} starts or ends with a space"));
    }
    let chars = name.chars().count();
    if chars > max_chars {
        return Err(format!(
            "{name:?} is {chars} characters; at most {max_chars} fit in an Exchange name (64 characters in all)"
        ));
    }
    Ok(())
}

/// A domain, or `*.domain` for every subdomain of it.
fn check_domain_pattern(pattern: &str) -> Result<(), String> {
    check_domain(pattern.strip_prefix("*.").unwrap_or(pattern))
}

/// `host:port` where host is a domain name, an IPv4 address or a bracketed IPv6 address.
fn check_host_port(text: &str) -> Result<(), String> {
    let bad = || Err(format!("expected host:port, got {text:?}"));
    let Some((host, port)) = text.rsplit_once(':') else {
        return bad();
    };
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0);
    if !port_ok {
        return bad();
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().map(drop).or_else(|_| bad());
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    check_domain(host).or_else(|_| bad())
}
