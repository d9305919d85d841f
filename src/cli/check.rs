//! `conbool check --config FILE`: validates a configuration file and the files it refers to
//! (certificates, keys, CA files, rule files), explaining each problem on its own line.
//!
//! Each file must be readable; PEM certificate files must hold certificates, key files a
//! private key that rustls can use, and a key must match the first certificate of its chain.
//! Certificate chains (`tls.cert`, a tenant's `client_cert`) are then checked the way a peer
//! will see them: the own certificate first and each one issued and signed by the next (DER
//! issuer and subject names, and the signature with the next one's key), ending at a root
//! the system store knows (else a warning: an intermediate may be missing, or the CA is
//! private); nothing expired or not yet valid, with the days left; the extended key usage
//! right for the role. CA files must hold CA certificates. A tenant that verifies its next
//! hop without a client certificate gets a warning. Each `[[tls.sni]]` entry is checked like
//! `tls.cert`, and the names it serves are listed (a name its certificate does not cover is
//! a warning, a name served twice a problem). Whether the certificates name
//! `server.hostname` is part of the Exchange section (`exchange::check_warnings`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::cli::exchange;
use crate::config::{Config, NextHopTls, SniCert};
use crate::tls::inspect::{self, CertInfo};
use crate::tls::sni;

/// A certificate that expires within this many days gets a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 21;

/// The largest certificate, key or rule file read (a big CA bundle is a few hundred KiB).
pub const MAX_REFERENCED_FILE_BYTES: u64 = 16 << 20;

/// `conbool check` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The configuration file to check.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
}

/// Runs `conbool check`: prints the report (problems and warnings on stderr, the rest on
/// stdout) and returns 0 when there is no problem, 1 otherwise.
pub fn main(args: Args) -> ExitCode {
    let report = check(&args.config);
    // A closed stdout or stderr must not turn a verdict into a panic.
    let _ = report.print(&mut io::stdout().lock(), &mut io::stderr().lock());
    report.exit_code()
}

/// What `conbool check` found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Each problem, one line, `file: key: message`. Any problem makes the check fail.
    pub problems: Vec<String>,
    /// Settings that are valid but look wrong; they do not fail the check.
    pub warnings: Vec<String>,
    /// What was found in each referenced file (`tls.cert: 2 certificates in ...`).
    pub notes: Vec<String>,
    /// `ok: <file>: N tenants, listening on ...` when there is no problem.
    pub summary: Option<String>,
}

impl Report {
    /// Whether the configuration passed.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The process exit status: 0 when ok, 1 on any problem.
    pub fn code(&self) -> u8 {
        if self.is_ok() {
            0
        } else {
            1
        }
    }

    /// [`Report::code`] as an [`ExitCode`].
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    /// Writes problems and warnings to `err`, notes and the summary to `out`.
    pub fn print(&self, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<()> {
        for line in &self.problems {
            writeln!(err, "{line}")?;
        }
        for line in &self.warnings {
            writeln!(err, "warning: {line}")?;
        }
        for line in &self.notes {
            writeln!(out, "{line}")?;
        }
        if let Some(line) = &self.summary {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        err.flush()
    }
}

/// Checks the configuration file at `path` and every file it refers to.
pub fn check(path: &Path) -> Report {
    let mut report = Report::default();
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            report.problems = errors.iter().map(|e| e.to_string()).collect();
            return report;
        }
    };
    let file = path.display();
    report.warnings = config
        .warnings()
        .iter()
        .map(|w| format!("{file}: {w}"))
        .collect();
    let mut files = Files {
        file: path,
        report: &mut report,
        now: SystemTime::now(),
        system_roots: None,
    };
    files.check_all(&config);
    rules_section(&config, path, &mut report);
    exchange_section(&config, path, &mut report);
    if report.is_ok() {
        let tenants = config.tenants.len();
        let listen: Vec<String> = config.server.listen.iter().map(|a| a.to_string()).collect();
        report.summary = Some(format!(
            "ok: {file}: {tenants} tenant{}, listening on {}",
            if tenants == 1 { "" } else { "s" },
            listen.join(", ")
        ));
    }
    report
}

/// The rules: `spam.rules` (or the built-in set) compile, every rule's inline tests pass, and
/// the `spam.model` file (when set) is a model this build can use, and the
/// `spam.internal_hosts` list (when set) reads.
fn rules_section(config: &Config, path: &Path, report: &mut Report) {
    let file = path.display();
    let readable = config.spam.rules.iter().all(|p| p.is_file());
    if !readable {
        return; // the referenced-file checks already named the missing file
    }
    if let Some(model) = &config.spam.model {
        match crate::cli::scan::load_model(model) {
            Ok(m) => report.notes.push(format!(
                "{file}: spam.model: {}: {} hash bits, trained on {} messages",
                model.display(),
                m.bits(),
                m.trained_on()
            )),
            Err(e) => {
                report.problems.push(format!("{file}: spam.model: {e}"));
                return;
            }
        }
    }
    if let Some(list) = &config.spam.internal_hosts {
        match crate::cli::scan::load_internal_hosts(list) {
            Ok(hosts) if config.spam.model.is_some() => report.notes.push(format!(
                "{file}: spam.internal_hosts: {}: {} hosts and networks",
                list.display(),
                hosts.len()
            )),
            Ok(_) => report.notes.push(format!(
                "{file}: spam.internal_hosts: {}: no effect without spam.model (only the classifier reads it)",
                list.display()
            )),
            Err(e) => {
                report
                    .problems
                    .push(format!("{file}: spam.internal_hosts: {e}"));
                return;
            }
        }
    }
    match crate::cli::scan::load_spam_rules(&config.spam) {
        Ok(rules) => {
            let failed = rules.self_test();
            for problem in &failed {
                report
                    .problems
                    .push(format!("{file}: spam.rules: rule test failed: {problem}"));
            }
            if !failed.is_empty() {
                return;
            }
            report.notes.push(format!(
                "{file}: spam.rules: {} rules compiled, inline tests pass",
                rules.len()
            ));
        }
        Err(e) => report.problems.push(format!("{file}: spam.rules: {e}")),
    }
}

/// The Exchange section: settings that Exchange's connectors would refuse or that would make
/// mail loop (see [`exchange::check_warnings`]). Warnings only: the relay runs without Exchange.
fn exchange_section(config: &Config, path: &Path, report: &mut Report) {
    let file = path.display();
    for w in exchange::check_warnings(config) {
        report
            .warnings
            .push(format!("{file}: {}: Exchange: {}", w.key, w.message));
    }
}

/// The referenced-file checks, writing into one report.
struct Files<'a> {
    file: &'a Path,
    report: &'a mut Report,
    now: SystemTime,
    /// Subjects of the system trust anchors, loaded on first use.
    system_roots: Option<Vec<Vec<u8>>>,
}

/// What a certificate chain is for.
#[derive(Clone, Copy)]
enum Role {
    /// `tls.cert`: the relay's own certificate.
    Server,
    /// A tenant's `client_cert`, presented to its next hop.
    Client,
}

impl Files<'_> {
    fn check_all(&mut self, config: &Config) {
        let hostname = config.server.hostname.as_str();
        if let Some(tls) = &config.tls {
            if let Some(chain) = self.cert_and_key("tls.cert", &tls.cert, "tls.key", &tls.key) {
                self.chain("tls.cert", &tls.cert, &chain, Role::Server);
            }
            if let Some(ca) = &tls.client_ca {
                if let Some(certs) = self.certs("tls.client_ca", ca) {
                    self.ca_file("tls.client_ca", ca, &certs);
                }
            }
            if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
                let chain = self.cert_and_key("tls.client_cert", cert, "tls.client_key", key);
                if let Some(chain) = chain {
                    self.chain("tls.client_cert", cert, &chain, Role::Client);
                }
            }
            let mut served = Vec::new();
            for (i, sni) in tls.sni.iter().enumerate() {
                let cert_key = format!("tls.sni[{i}].cert");
                let key_key = format!("tls.sni[{i}].key");
                if let Some(chain) = self.cert_and_key(&cert_key, &sni.cert, &key_key, &sni.key) {
                    self.chain(&cert_key, &sni.cert, &chain, Role::Server);
                    self.sni_names(i, sni, &chain, &mut served);
                }
            }
        }
        let default_client_cert = config.tls.as_ref().is_some_and(|t| t.client_cert.is_some());
        for (i, rules) in config.spam.rules.iter().enumerate() {
            let key = format!("spam.rules[{i}]");
            if let Some(bytes) = self.read(&key, rules) {
                self.note(&key, rules, &format!("{} bytes", bytes.len()));
            }
        }
        for (i, t) in config.tenants.iter().enumerate() {
            if let Some(ca) = &t.next_hop_ca {
                let key = format!("tenant[{i}].next_hop_ca");
                if let Some(certs) = self.certs(&key, ca) {
                    self.ca_file(&key, ca, &certs);
                }
            }
            if let (Some(cert), Some(key)) = (&t.client_cert, &t.client_key) {
                let cert_key = format!("tenant[{i}].client_cert");
                let chain =
                    self.cert_and_key(&cert_key, cert, &format!("tenant[{i}].client_key"), key);
                if let Some(chain) = chain {
                    self.chain(&cert_key, cert, &chain, Role::Client);
                }
            } else if t.next_hop_tls == NextHopTls::Verify
                && !default_client_cert
                && !exchange::is_exchange_online(&t.next_hop)
            {
                // (Exchange Online next hops get their own, more specific warning.)
                self.report.warnings.push(format!(
                    "{}: tenant[{i}].client_cert: absent while next_hop_tls = \"verify\": \
                     Exchange's inbound connector (TlsSenderCertificateName {hostname}) \
                     identifies the relay by its client certificate",
                    self.file.display()
                ));
            }
        }
    }

    /// A certificate chain and its key; when both read, the key must match the first
    /// certificate. Returns the chain when it is usable.
    fn cert_and_key(
        &mut self,
        cert_key: &str,
        cert: &Path,
        key_key: &str,
        key: &Path,
    ) -> Option<Vec<CertificateDer<'static>>> {
        let chain = self.certs(cert_key, cert);
        let private = self.private_key(key_key, key);
        let (Some(chain), Some(private)) = (chain, private) else {
            return None;
        };
        let provider = rustls::crypto::ring::default_provider();
        if let Err(e) = rustls::sign::CertifiedKey::from_der(chain.clone(), private, &provider) {
            let message = match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    format!("does not match the first certificate in {cert_key}")
                }
                other => format!("unusable with {cert_key}: {other}"),
            };
            self.problem(key_key, key, &message);
            return None;
        }
        Some(chain)
    }

    /// The names `[[tls.sni]]` entry `i` serves: noted, each covered by its certificate,
    /// none served by an earlier entry (`served` holds theirs).
    fn sni_names(
        &mut self,
        i: usize,
        sni: &SniCert,
        chain: &[CertificateDer<'_>],
        served: &mut Vec<(String, usize)>,
    ) {
        let key = format!("tls.sni[{i}].cert");
        let Some(leaf) = chain.first() else {
            return;
        };
        let (names, from) = if sni.names.is_empty() {
            (sni::certificate_sni_names(leaf), "the certificate's names")
        } else {
            (sni.names.clone(), "tls.sni names")
        };
        if names.is_empty() {
            let msg = "the certificate holds no DNS name to serve by SNI; list them in `names`";
            return self.problem(&key, &sni.cert, msg);
        }
        let msg = format!("serves SNI {} ({from})", names.join(", "));
        self.note(&key, &sni.cert, &msg);
        for name in names {
            if !sni::certificate_covers(leaf, &name) {
                let msg = format!(
                    "serves SNI {name:?} but the certificate does not cover it: clients \
                     asking for it will refuse the certificate"
                );
                self.warning(&key, &sni.cert, &msg);
            }
            if let Some((_, other)) = served.iter().find(|(n, _)| *n == name) {
                let msg = format!("SNI {name:?} is already served by tls.sni[{other}]");
                self.problem(&key, &sni.cert, &msg);
            } else {
                served.push((name, i));
            }
        }
    }

    /// A chain as its peers will see it: order and signatures, completeness, validity,
    /// names and key usage.
    fn chain(&mut self, key: &str, path: &Path, chain: &[CertificateDer<'_>], role: Role) {
        let mut infos = Vec::with_capacity(chain.len());
        for (i, der) in chain.iter().enumerate() {
            match CertInfo::parse(der) {
                Ok(info) => infos.push(info),
                Err(e) => {
                    let msg = format!("certificate #{} cannot be read: {e}", i + 1);
                    return self.problem(key, path, &msg);
                }
            }
        }
        let Some(leaf) = infos.first() else {
            return;
        };
        let own = match role {
            Role::Server => "the server's own certificate",
            Role::Client => "the client certificate",
        };
        if leaf.is_ca {
            let msg = format!(
                "certificate #1 ({}) is a CA certificate: the file must start with {own}, \
                 then its intermediates",
                leaf.subject_cn
            );
            self.problem(key, path, &msg);
        }
        for (i, pair) in infos.windows(2).enumerate() {
            let (child, parent) = (&pair[0], &pair[1]);
            if child.issuer != parent.subject {
                let msg = format!(
                    "certificate #{} ({}) is issued by {}, but the next one, #{}, is {}: \
                     the chain is out of order or holds an unrelated certificate",
                    i + 1,
                    child.subject_cn,
                    child.issuer_cn,
                    i + 2,
                    parent.subject_cn
                );
                self.problem(key, path, &msg);
            } else if !child.is_signed_by(parent) {
                let msg = format!(
                    "certificate #{} ({}) names #{} ({}) as its issuer, but its signature does \
                     not verify with that certificate's key",
                    i + 1,
                    child.subject_cn,
                    i + 2,
                    parent.subject_cn
                );
                self.problem(key, path, &msg);
            }
        }
        self.completeness(key, path, &infos);
        self.validity(key, path, &infos);
        let (role_ok, usage) = match role {
            Role::Server => (leaf.eku_server, "serverAuth"),
            Role::Client => (leaf.eku_client, "clientAuth"),
        };
        if leaf.has_eku && !role_ok {
            let msg = format!(
                "certificate #1 ({}) does not allow {usage} in its extended key usage: peers \
                 will refuse it",
                leaf.subject_cn
            );
            self.problem(key, path, &msg);
        }
    }

    /// The chain should end at a root peers already trust (the system store), or include
    /// its root.
    fn completeness(&mut self, key: &str, path: &Path, infos: &[CertInfo]) {
        let Some(last) = infos.last() else {
            return;
        };
        if last.is_self_issued() {
            if infos.len() == 1 {
                let msg = format!(
                    "a single self-signed certificate ({}): only peers that trust it directly \
                     will accept it",
                    last.subject_cn
                );
                self.warning(key, path, &msg);
            } else {
                let msg = format!(
                    "ends with the self-signed root {}; peers need it in their own trust store \
                     anyway, so it may be left out",
                    last.subject_cn
                );
                self.note(key, path, &msg);
            }
            return;
        }
        let roots = self
            .system_roots
            .get_or_insert_with(inspect::system_root_subjects);
        if roots.contains(&last.issuer) {
            let msg = format!(
                "chain of {} complete up to {}, a root in the system trust store",
                infos.len(),
                last.issuer_cn
            );
            self.note(key, path, &msg);
        } else {
            let msg = format!(
                "the chain ends at {} (issued by {}), which is neither in the file nor in the \
                 system trust store: an intermediate is missing, or the CA is private (peers \
                 must then trust it explicitly)",
                last.subject_cn, last.issuer_cn
            );
            self.warning(key, path, &msg);
        }
    }

    /// Nothing expired or not yet valid; days left on the first certificate.
    fn validity(&mut self, key: &str, path: &Path, infos: &[CertInfo]) {
        for (i, info) in infos.iter().enumerate() {
            if self.now < info.not_before {
                let msg = format!(
                    "certificate #{} ({}) is not valid before {}",
                    i + 1,
                    info.subject_cn,
                    inspect::date(info.not_before)
                );
                self.problem(key, path, &msg);
            } else if self.now > info.not_after {
                let msg = format!(
                    "certificate #{} ({}) expired on {}",
                    i + 1,
                    info.subject_cn,
                    inspect::date(info.not_after)
                );
                self.problem(key, path, &msg);
            }
        }
        let Some(leaf) = infos.first() else {
            return;
        };
        let days = leaf.days_left(self.now);
        if days >= 0 {
            let msg = format!(
                "{} valid until {} ({days} days left)",
                leaf.subject_cn,
                inspect::date(leaf.not_after)
            );
            self.note(key, path, &msg);
            if days < EXPIRY_WARNING_DAYS {
                let msg = format!(
                    "{} expires in {days} days ({})",
                    leaf.subject_cn,
                    inspect::date(leaf.not_after)
                );
                self.warning(key, path, &msg);
            }
        }
    }

    /// A CA file: every certificate should be a CA that is currently valid.
    fn ca_file(&mut self, key: &str, path: &Path, certs: &[CertificateDer<'_>]) {
        for (i, der) in certs.iter().enumerate() {
            let info = match CertInfo::parse(der) {
                Ok(info) => info,
                Err(e) => {
                    let msg = format!("certificate #{} cannot be read: {e}", i + 1);
                    self.problem(key, path, &msg);
                    continue;
                }
            };
            if !info.is_ca {
                let msg = format!(
                    "certificate #{} ({}) is not a CA certificate (basicConstraints cA is not \
                     set): it cannot vouch for others",
                    i + 1,
                    info.subject_cn
                );
                self.warning(key, path, &msg);
            }
            if self.now > info.not_after {
                let msg = format!(
                    "certificate #{} ({}) expired on {}",
                    i + 1,
                    info.subject_cn,
                    inspect::date(info.not_after)
                );
                self.warning(key, path, &msg);
            }
        }
    }

    fn certs(&mut self, key: &str, path: &Path) -> Option<Vec<CertificateDer<'static>>> {
        let bytes = self.read(key, path)?;
        let parsed: Result<Vec<_>, _> = rustls_pemfile::certs(&mut bytes.as_slice()).collect();
        match parsed {
            Err(e) => {
                self.problem(key, path, &format!("not valid PEM: {e}"));
                None
            }
            Ok(certs) if certs.is_empty() => {
                self.problem(key, path, "no PEM CERTIFICATE block found");
                None
            }
            Ok(certs) => {
                let n = certs.len();
                let what = if n == 1 {
                    "certificate"
                } else {
                    "certificates"
                };
                self.note(key, path, &format!("{n} {what}"));
                Some(certs)
            }
        }
    }

    fn private_key(&mut self, key: &str, path: &Path) -> Option<PrivateKeyDer<'static>> {
        let bytes = self.read(key, path)?;
        match rustls_pemfile::private_key(&mut bytes.as_slice()) {
            Err(e) => {
                self.problem(key, path, &format!("not valid PEM: {e}"));
                None
            }
            Ok(None) => {
                self.problem(
                    key,
                    path,
                    "no PEM private key found (PKCS#8, PKCS#1 or SEC1; encrypted keys are not supported)",
                );
                None
            }
            Ok(Some(private)) => match rustls::crypto::ring::sign::any_supported_type(&private) {
                Ok(_) => {
                    let kind = match private {
                        PrivateKeyDer::Pkcs1(_) => "RSA (PKCS#1)",
                        PrivateKeyDer::Sec1(_) => "EC (SEC1)",
                        PrivateKeyDer::Pkcs8(_) => "PKCS#8",
                        _ => "other",
                    };
                    self.note(key, path, &format!("{kind} private key"));
                    Some(private)
                }
                Err(e) => {
                    self.problem(key, path, &format!("unsupported private key: {e}"));
                    None
                }
            },
        }
    }

    /// The whole file, or a problem when it cannot be read or is too large.
    fn read(&mut self, key: &str, path: &Path) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        let read = File::open(path).and_then(|f| {
            f.take(MAX_REFERENCED_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
        });
        match read {
            Err(e) => {
                self.problem(key, path, &format!("cannot read: {e}"));
                None
            }
            Ok(n) if n as u64 > MAX_REFERENCED_FILE_BYTES => {
                self.problem(
                    key,
                    path,
                    &format!("larger than {MAX_REFERENCED_FILE_BYTES} bytes"),
                );
                None
            }
            Ok(_) => Some(bytes),
        }
    }

    fn problem(&mut self, key: &str, path: &Path, message: &str) {
        self.report.problems.push(format!(
            "{}: {key}: {}: {message}",
            self.file.display(),
            path.display()
        ));
    }

    fn warning(&mut self, key: &str, path: &Path, message: &str) {
        self.report.warnings.push(format!(
            "{}: {key}: {}: {message}",
            self.file.display(),
            path.display()
        ));
    }

    fn note(&mut self, key: &str, path: &Path, message: &str) {
        self.report.notes.push(format!(
            "{}: {key}: {}: {message}",
            self.file.display(),
            path.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testpki::{Authority, World};

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("conbool-check-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).expect("write temp file");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const CONFIG: &str = r#"
[tls]
cert = "cert.pem"
key = "key.pem"
client_ca = "ca.pem"

[spam]
rules = ["rules.toml"]

[[tenant]]
name = "a.example"
next_hop = "127.0.0.1:2526"
next_hop_tls = "verify"
next_hop_tls_name = "mx.a.example"
next_hop_ca = "ca.pem"
trusted_cert_names = ["mx.a.example"]

client_cert = "client.pem"
client_key = "client-key.pem"

[[tenant]]
name = "b.example"
next_hop = "127.0.0.1:2527"
client_cert = "client.pem"
client_key = "client-key.pem"
"#;

    /// A directory with every file `CONFIG` names, all valid: a private PKI (root →
    /// intermediate → leaf, for the server and for clients), each chain file ending with its
    /// root so that no warning is due.
    fn valid_setup(name: &str) -> (TempDir, PathBuf) {
        valid_setup_in(name, &World::new())
    }

    fn valid_setup_in(name: &str, world: &World) -> (TempDir, PathBuf) {
        let dir = TempDir::new(name);
        dir.write("cert.pem", &(world.server_chain_pem() + &world.root.pem()));
        dir.write("key.pem", &world.server.key_pem());
        dir.write("ca.pem", &(world.root.pem() + &world.client_root.pem()));
        dir.write(
            "client.pem",
            &(world.client_chain_pem() + &world.client_root.pem()),
        );
        dir.write("client-key.pem", &world.client.key_pem());
        dir.write("rules.toml", "# rules\n");
        let config = dir.write("conbool.toml", CONFIG);
        (dir, config)
    }

    #[test]
    fn a_rule_file_that_does_not_compile_is_a_problem() {
        let world = World::new();
        let (dir, config) = valid_setup_in("badrules", &world);
        dir.write("rules.toml", "[[rule]]\nname = \"X\"\n");
        let report = check(&config);
        assert!(
            report.problems.iter().any(|p| p.contains("spam.rules")),
            "{:?}",
            report.problems
        );
        assert_eq!(report.code(), 1);
    }

    /// `spam.internal_hosts`: a list with an entry limited to sources (which only `conbool
    /// train` and `eval` know) is a problem; a good one without a model is a note.
    #[test]
    fn the_internal_hosts_list_is_checked() {
        let world = World::new();
        let (dir, _) = valid_setup_in("internalhosts", &world);
        let config = dir.write(
            "conbool.toml",
            &CONFIG.replace(
                "rules = [\"rules.toml\"]",
                "rules = [\"rules.toml\"]\ninternal_hosts = \"hosts.txt\"",
            ),
        );
        dir.write("hosts.txt", "outlook.com\n10.0.0.0/8 archive\n");
        let report = check(&config);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("spam.internal_hosts") && p.contains("line 2")),
            "{:?}",
            report.problems
        );
        dir.write("hosts.txt", "outlook.com\n10.0.0.0/8\n");
        let report = check(&config);
        assert_eq!(report.code(), 0, "{:?}", report.problems);
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("spam.internal_hosts") && n.contains("no effect")),
            "{:?}",
            report.notes
        );
    }

    #[test]
    fn sni_certificates_are_checked_and_their_names_reported() {
        let world = World::new();
        let (dir, config) = valid_setup_in("sni", &world);
        let a = world
            .intermediate
            .leaf(&["mail.example.net", "*.example.org"]);
        let b = world.intermediate.leaf(&["other.example"]);
        let chain = |leaf: &crate::tls::testpki::Leaf| {
            leaf.chain_pem(&[&world.intermediate]) + &world.root.pem()
        };
        dir.write("a.pem", &chain(&a));
        dir.write("a-key.pem", &a.key_pem());
        dir.write("b.pem", &chain(&b));
        dir.write("b-key.pem", &b.key_pem());
        // One line names `key` and says `message`.
        let has = |lines: &[String], key: &str, message: &str| {
            lines
                .iter()
                .any(|l| l.contains(&format!(": {key}: ")) && l.contains(message))
        };
        let entries = |b_names: &str| {
            format!(
                "{CONFIG}\n[[tls.sni]]\ncert = \"a.pem\"\nkey = \"a-key.pem\"\n\n\
                 [[tls.sni]]\nnames = [{b_names}]\ncert = \"b.pem\"\nkey = \"b-key.pem\"\n"
            )
        };
        std::fs::write(&config, entries("\"other.example\"")).unwrap();
        let report = check(&config);
        assert!(report.is_ok(), "{:?}", report.problems);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let notes = &report.notes;
        for (key, says) in [
            (
                "tls.sni[0].cert",
                "serves SNI mail.example.net, *.example.org (the certificate's names)",
            ),
            ("tls.sni[0].cert", "mail.example.net valid until"),
            ("tls.sni[0].cert", "ends with the self-signed root"),
            (
                "tls.sni[1].cert",
                "serves SNI other.example (tls.sni names)",
            ),
            ("tls.sni[1].cert", "other.example valid until"),
            ("tls.sni[1].key", "PKCS#8 private key"),
        ] {
            assert!(has(notes, key, says), "{key}: {says}: {notes:#?}");
        }

        // b also claims a name of a's that b's certificate does not cover.
        std::fs::write(&config, entries("\"other.example\", \"Mail.Example.net\"")).unwrap();
        let report = check(&config);
        assert!(
            has(
                &report.problems,
                "tls.sni[1].cert",
                "SNI \"mail.example.net\" is already served by tls.sni[0]"
            ),
            "{:#?}",
            report.problems
        );
        assert!(
            has(
                &report.warnings,
                "tls.sni[1].cert",
                "serves SNI \"mail.example.net\" but the certificate does not cover it"
            ),
            "{:#?}",
            report.warnings
        );
        // b's key is a's.
        dir.write("b-key.pem", &a.key_pem());
        let report = check(&config);
        assert!(
            has(
                &report.problems,
                "tls.sni[1].key",
                "does not match the first certificate in tls.sni[1].cert"
            ),
            "{:#?}",
            report.problems
        );
    }

    #[test]
    fn valid_setup_passes_with_exit_0() {
        let (_dir, config) = valid_setup("valid");
        let report = check(&config);
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.code(), 0);
        assert_eq!(
            report.summary.as_deref(),
            Some(
                format!(
                    "ok: {}: 2 tenants, listening on 127.0.0.1:2525",
                    config.display()
                )
                .as_str()
            )
        );
        let notes = report.notes.join("\n");
        assert!(notes.contains("tls.client_ca: "), "{notes}");
        assert!(notes.contains(": 2 certificates"), "{notes}");
        assert!(notes.contains("tls.key: "), "{notes}");
        let mut out = Vec::new();
        let mut err = Vec::new();
        report.print(&mut out, &mut err).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("listening on 127.0.0.1:2525\n"));
        assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
        assert!(
            notes.contains("mail.conbool.com valid until 4096-01-01"),
            "{notes}"
        );
        assert!(notes.contains("ends with the self-signed root"), "{notes}");
    }

    #[test]
    fn chain_problems_are_named() {
        let world = World::new();
        let inter = world.intermediate.pem();
        let root = world.root.pem();
        let leaf = world.server.pem();
        let expired = world.intermediate.expired_leaf(&["mail.conbool.com"]);
        let other_name = world.intermediate.leaf(&["other.example"]);
        let look_alike = Authority::root("Conbool Test Intermediate");
        let server_only = {
            let mut params =
                rcgen::CertificateParams::new(vec!["mail.conbool.com".to_string()]).unwrap();
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        struct Row<'a> {
            name: &'a str,
            /// (file, contents) written over the valid setup.
            files: Vec<(&'a str, String)>,
            /// Words in a problem (Some) or, with `None`, in a warning.
            problem: Option<&'a str>,
            warning: Option<&'a str>,
        }
        let key = world.server.key_pem();
        let rows = vec![
            Row {
                name: "out_of_order",
                files: vec![("cert.pem", leaf.clone() + &root + &inter)],
                problem: Some("is issued by Conbool Test Intermediate, but the next one, #2, is Conbool Test Root"),
                warning: None,
            },
            Row {
                name: "missing_intermediate",
                files: vec![("cert.pem", leaf.clone())],
                problem: None,
                warning: Some("neither in the file nor in the system trust store"),
            },
            Row {
                name: "look_alike_intermediate",
                files: vec![("cert.pem", leaf.clone() + &look_alike.pem())],
                problem: Some("its signature does not verify"),
                warning: None,
            },
            Row {
                name: "expired",
                files: vec![
                    ("cert.pem", expired.chain_pem(&[&world.intermediate])),
                    ("key.pem", expired.key_pem()),
                ],
                problem: Some("certificate #1 (mail.conbool.com) expired on 2001-01-01"),
                warning: None,
            },
            Row {
                name: "hostname_not_covered",
                files: vec![
                    ("cert.pem", other_name.chain_pem(&[&world.intermediate]) + &root),
                    ("key.pem", other_name.key_pem()),
                ],
                problem: None,
                warning: Some("server.hostname: Exchange: mail.conbool.com is not a name"),
            },
            Row {
                name: "client_cert_without_client_auth",
                files: vec![
                    ("client.pem", server_only.0.clone()),
                    ("client-key.pem", server_only.1.clone()),
                ],
                problem: Some("does not allow clientAuth"),
                warning: None,
            },
            Row {
                name: "ca_file_with_a_leaf",
                files: vec![("ca.pem", root.clone() + &leaf)],
                problem: None,
                warning: Some("#2 (mail.conbool.com) is not a CA certificate"),
            },
            Row {
                name: "valid_key_still_valid",
                files: vec![("key.pem", key.clone())],
                problem: None,
                warning: None,
            },
        ];
        for row in rows {
            let (dir, config) = valid_setup_in(row.name, &world);
            for (file, contents) in &row.files {
                dir.write(file, contents);
            }
            let report = check(&config);
            let problems = report.problems.join("\n");
            let warnings = report.warnings.join("\n");
            match row.problem {
                Some(words) => assert!(problems.contains(words), "row {}: {problems}", row.name),
                None => assert!(report.is_ok(), "row {}: {problems}", row.name),
            }
            match row.warning {
                Some(words) => assert!(warnings.contains(words), "row {}: {warnings}", row.name),
                None if row.problem.is_none() => {
                    assert!(warnings.is_empty(), "row {}: {warnings}", row.name)
                }
                None => {}
            }
        }
    }

    #[test]
    fn verify_without_a_client_certificate_is_a_warning() {
        let (dir, _config) = valid_setup("verify_no_client_cert");
        let text = CONFIG.replacen(
            "client_cert = \"client.pem\"\nclient_key = \"client-key.pem\"\n\n[[tenant]]",
            "\n[[tenant]]",
            1,
        );
        let config = dir.write("conbool.toml", &text);
        let report = check(&config);
        assert!(report.is_ok(), "{:?}", report.problems);
        let warnings = report.warnings.join("\n");
        assert!(
            warnings.contains("tenant[0].client_cert: absent while next_hop_tls = \"verify\""),
            "{warnings}"
        );

        // A server-wide default in [tls]: presented instead, and checked as a client chain.
        let text = text.replacen(
            "client_ca = \"ca.pem\"\n",
            "client_ca = \"ca.pem\"\nclient_cert = \"client.pem\"\nclient_key = \"client-key.pem\"\n",
            1,
        );
        let config = dir.write("conbool.toml", &text);
        let report = check(&config);
        assert!(report.is_ok(), "{:?}", report.problems);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let notes = report.notes.join("\n");
        assert!(notes.contains("tls.client_cert: "), "{notes}");
        assert!(notes.contains("tls.client_key: "), "{notes}");
    }

    #[test]
    fn each_broken_file_fails_with_exit_1_naming_its_key() {
        let other = rcgen::generate_simple_self_signed(vec!["x.example".to_string()]).unwrap();
        let other_key = other.key_pair.serialize_pem();
        let other_cert = other.cert.pem();
        // (row name, file to replace or None to delete, new contents, key named, words expected)
        let rows: &[(&str, &str, Option<&str>, &str, &str)] = &[
            ("cert_missing", "cert.pem", None, "tls.cert", "cannot read"),
            ("key_missing", "key.pem", None, "tls.key", "cannot read"),
            (
                "key_mismatch",
                "key.pem",
                Some(&other_key),
                "tls.key",
                "does not match",
            ),
            (
                "cert_is_a_key",
                "cert.pem",
                Some(&other_key),
                "tls.cert",
                "no PEM CERTIFICATE",
            ),
            (
                "key_is_a_cert",
                "key.pem",
                Some(&other_cert),
                "tls.key",
                "no PEM private key",
            ),
            (
                "ca_empty",
                "ca.pem",
                Some(""),
                "tls.client_ca",
                "no PEM CERTIFICATE",
            ),
            (
                "rules_missing",
                "rules.toml",
                None,
                "spam.rules[0]",
                "cannot read",
            ),
            (
                "client_key_mismatch",
                "client-key.pem",
                Some(&other_key),
                "tenant[1].client_key",
                "does not match",
            ),
            (
                "next_hop_ca_garbage",
                "ca.pem",
                Some("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
                "tls.client_ca",
                "not valid PEM",
            ),
        ];
        for (row, name, contents, key, words) in rows {
            let (dir, config) = valid_setup(row);
            match contents {
                Some(c) => {
                    dir.write(name, c);
                }
                None => std::fs::remove_file(dir.0.join(name)).unwrap(),
            }
            let report = check(&config);
            assert_eq!(report.code(), 1, "{row}");
            assert!(report.summary.is_none(), "{row}");
            let line = report
                .problems
                .iter()
                .find(|p| p.contains(&format!(": {key}: ")))
                .unwrap_or_else(|| panic!("{row}: no problem names {key}: {:?}", report.problems));
            assert!(line.contains(words), "{row}: {line}");
            assert!(
                line.starts_with(&config.display().to_string()),
                "{row}: {line}"
            );
        }
    }

    #[test]
    fn invalid_config_fails_with_exit_1() {
        let dir = TempDir::new("invalid");
        let config = dir.write(
            "conbool.toml",
            "[[tenant]]\nname = \"a.example\"\nnext_hop = \"x\"\n[limits]\nmax_errors = 0\n",
        );
        let report = check(&config);
        assert_eq!(report.code(), 1);
        let file = config.display();
        assert_eq!(
            report.problems,
            [
                format!("{file}: limits.max_errors: must be at least 1"),
                format!("{file}: tenant[0].next_hop: expected host:port, got \"x\""),
            ]
        );
        let missing = check(&dir.0.join("nope.toml"));
        assert_eq!(missing.code(), 1);
    }

    #[test]
    fn warnings_alone_pass() {
        let dir = TempDir::new("warnings");
        let config = dir.write(
            "conbool.toml",
            "[limits]\nmax_recipients = 10\n[[tenant]]\nname = \"a.example\"\nnext_hop = \"a:25\"\n",
        );
        let report = check(&config);
        assert_eq!(report.code(), 0, "{:?}", report.problems);
        assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
        assert!(report
            .summary
            .is_some_and(|s| s.contains("1 tenant, listening")));
    }

    #[test]
    fn design_example_names_missing_files() {
        // The example's certificates live in /etc/conbool, which a test machine lacks: the
        // configuration itself is valid, so every problem is about a referenced file.
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("conbool.example.toml");
        let report = check(&example);
        for p in &report.problems {
            assert!(p.contains("cannot read") || p.contains("no PEM"), "{p}");
        }
    }
}
