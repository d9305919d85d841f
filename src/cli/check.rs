//! `conbool check --config FILE`: validates a configuration file and the files it refers to
//! (certificates, keys, CA files, rule files), explaining each problem on its own line.
//!
//! The file checks here are the basics: each file is readable, PEM certificate files hold
//! certificates, key files hold a private key that rustls can use, and a key matches the first
//! certificate of its chain. Chain, name and expiry checks belong to the TLS module.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::cli::exchange;
use crate::config::Config;

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
    };
    files.check_all(&config);
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
}

impl Files<'_> {
    fn check_all(&mut self, config: &Config) {
        if let Some(tls) = &config.tls {
            self.cert_and_key("tls.cert", &tls.cert, "tls.key", &tls.key);
            if let Some(ca) = &tls.client_ca {
                self.certs("tls.client_ca", ca);
            }
        }
        for (i, rules) in config.spam.rules.iter().enumerate() {
            let key = format!("spam.rules[{i}]");
            if let Some(bytes) = self.read(&key, rules) {
                self.note(&key, rules, &format!("{} bytes", bytes.len()));
            }
        }
        for (i, t) in config.tenants.iter().enumerate() {
            if let Some(ca) = &t.next_hop_ca {
                self.certs(&format!("tenant[{i}].next_hop_ca"), ca);
            }
            if let (Some(cert), Some(key)) = (&t.client_cert, &t.client_key) {
                self.cert_and_key(
                    &format!("tenant[{i}].client_cert"),
                    cert,
                    &format!("tenant[{i}].client_key"),
                    key,
                );
            }
        }
    }

    /// A certificate chain and its key; when both read, the key must match the first
    /// certificate.
    fn cert_and_key(&mut self, cert_key: &str, cert: &Path, key_key: &str, key: &Path) {
        let chain = self.certs(cert_key, cert);
        let private = self.private_key(key_key, key);
        let (Some(chain), Some(private)) = (chain, private) else {
            return;
        };
        let provider = rustls::crypto::ring::default_provider();
        if let Err(e) = rustls::sign::CertifiedKey::from_der(chain, private, &provider) {
            let message = match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    format!("does not match the first certificate in {cert_key}")
                }
                other => format!("unusable with {cert_key}: {other}"),
            };
            self.problem(key_key, key, &message);
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
next_hop_ca = "ca.pem"
trusted_cert_names = ["mx.a.example"]

[[tenant]]
name = "b.example"
next_hop = "127.0.0.1:2527"
client_cert = "client.pem"
client_key = "client-key.pem"
"#;

    /// A directory with every file `CONFIG` names, all valid.
    fn valid_setup(name: &str) -> (TempDir, PathBuf) {
        let dir = TempDir::new(name);
        let server = rcgen::generate_simple_self_signed(vec!["mail.conbool.com".to_string()])
            .expect("server cert");
        let client = rcgen::generate_simple_self_signed(vec!["mail.conbool.com".to_string()])
            .expect("client cert");
        dir.write("cert.pem", &server.cert.pem());
        dir.write("key.pem", &server.key_pair.serialize_pem());
        dir.write("ca.pem", &(server.cert.pem() + &client.cert.pem()));
        dir.write("client.pem", &client.cert.pem());
        dir.write("client-key.pem", &client.key_pair.serialize_pem());
        dir.write("rules.toml", "# rules\n");
        let config = dir.write("conbool.toml", CONFIG);
        (dir, config)
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
        assert!(err.is_empty());
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
