//! `conbool run`: the relay. Loads the configuration (or the embedded defaults), starts the
//! workers, and turns signals into reload (SIGHUP) and graceful stop (SIGTERM, SIGINT).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crossbeam_channel::RecvTimeoutError;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::{Config, NextHopTls};
use crate::logging::{Level, LogFormat, Logger};
use crate::reactor;
use crate::reactor::certwatch::{self, CertWatch, WatchOutcome};
use crate::relay::session::Snapshot;
use crate::tls::inspect::{self, CertInfo};

/// Flags of `conbool run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Configuration file (TOML); embedded defaults when omitted.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen address (repeatable); replaces `server.listen`.
    #[arg(long)]
    pub listen: Vec<SocketAddr>,
    /// Next hop `host:port` for every tenant; replaces each `tenant.next_hop`.
    #[arg(long)]
    pub next_hop: Option<String>,
    /// Worker threads (0 = one per core); replaces `server.workers`.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Serve Prometheus metrics at `http://ADDR/metrics`; replaces `server.metrics`.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Log line format; replaces `log.format`.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Least severe level logged; replaces `log.level`.
    #[arg(long, value_enum)]
    pub log_level: Option<Level>,
    /// Append log lines to this file (reopened on SIGHUP) instead of stderr; replaces
    /// `log.file`.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

/// The log settings the flags (then the configuration) ask for.
pub fn log_settings(args: &RunArgs, config: &Config) -> (LogFormat, Level, Option<PathBuf>) {
    (
        args.log_format.unwrap_or(config.log.format),
        args.log_level.unwrap_or(config.log.level),
        args.log_file.clone().or_else(|| config.log.file.clone()),
    )
}

/// Loads the configuration the flags describe and builds a snapshot.
pub fn load_snapshot(args: &RunArgs) -> Result<Snapshot, String> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::embedded_defaults(),
    };
    if !args.listen.is_empty() {
        config.server.listen = args.listen.clone();
    }
    if let Some(hop) = &args.next_hop {
        for t in &mut config.tenants {
            t.next_hop = hop.clone();
        }
    }
    if let Some(addr) = args.metrics {
        config.server.metrics = Some(addr);
    }
    if let Some(w) = args.workers {
        config.server.workers = if w == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            w
        };
    }
    let rules = crate::cli::scan::load_spam_rules(&config.spam)?;
    Ok(Snapshot {
        config: Arc::new(config),
        rules,
    })
}

/// One line per certificate in use (`tls.cert`, each tenant's `client_cert`): its name and
/// how long it stays valid, so an operator sees a renewal take effect and an expiry coming.
pub fn certificate_lines(config: &Config, now: SystemTime) -> Vec<String> {
    let mut chains: Vec<(String, &Path)> = Vec::new();
    if let Some(tls) = &config.tls {
        chains.push(("tls.cert".to_string(), &tls.cert));
        if let Some(cert) = &tls.client_cert {
            chains.push(("tls.client_cert".to_string(), cert));
        }
    }
    for (i, t) in config.tenants.iter().enumerate() {
        if let Some(cert) = &t.client_cert {
            chains.push((format!("tenant[{i}].client_cert"), cert));
        }
    }
    chains
        .into_iter()
        .map(|(key, path)| {
            let first = std::fs::read(path).ok().and_then(|pem| {
                rustls_pemfile::certs(&mut pem.as_slice())
                    .next()
                    .and_then(Result::ok)
            });
            match first.map(|der| CertInfo::parse(&der)) {
                Some(Ok(info)) => format!(
                    "{key}: {} valid until {} ({} days left)",
                    info.subject_cn,
                    inspect::date(info.not_after),
                    info.days_left(now)
                ),
                Some(Err(e)) => format!("{key}: {}: {e}", path.display()),
                None => format!("{key}: {}: no certificate", path.display()),
            }
        })
        .collect()
}

/// The counters a stopped relay reports, one `key=value` each.
pub fn stats_line(stats: &reactor::WorkerStats) -> String {
    format!(
        "connections={} messages={} delivered={} spam={} client_tls_handshakes={} \
         client_tls_resumed={} client_tls_failures={} next_hop_tls_handshakes={} \
         next_hop_tls_resumed={} next_hop_tls_failures={}",
        stats.connections,
        stats.messages,
        stats.delivered,
        stats.spam,
        stats.client_tls_handshakes,
        stats.client_tls_resumed,
        stats.client_tls_failures,
        stats.next_hop_tls_handshakes,
        stats.next_hop_tls_resumed,
        stats.next_hop_tls_failures
    )
}

/// Runs the relay until SIGTERM or SIGINT.
pub fn main(args: RunArgs) -> ExitCode {
    let snapshot = match load_snapshot(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conbool run: {e}");
            return ExitCode::from(2);
        }
    };
    let signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conbool run: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let (format, level, file) = log_settings(&args, &snapshot.config);
    let logger = match Logger::new(format, level, file.clone()) {
        Ok(l) => l,
        Err(e) => {
            let path = file.unwrap_or_default();
            eprintln!("conbool run: cannot open log file {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let started = reactor::RelayTls::load(&snapshot.config)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        .and_then(|tls| reactor::spawn_logged(snapshot.clone(), Arc::new(tls), logger.clone()));
    let handle = match started {
        Ok(h) => h,
        Err(e) => {
            eprintln!("conbool run: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let addrs: Vec<String> = handle.local_addrs.iter().map(|a| a.to_string()).collect();
    eprintln!(
        "conbool: listening on {} with {} workers; STARTTLS {}; next hops: {}",
        addrs.join(", "),
        snapshot.config.server.workers.max(1),
        if snapshot.config.tls.is_some() {
            "offered"
        } else {
            "not offered"
        },
        snapshot
            .config
            .tenants
            .iter()
            .map(|t| {
                let tls = match t.next_hop_tls {
                    NextHopTls::None => "none",
                    NextHopTls::Opportunistic => "opportunistic",
                    NextHopTls::Require => "require",
                    NextHopTls::Verify => "verify",
                };
                format!("{}={} (tls {tls})", t.name, t.next_hop)
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(addr) = handle.metrics_addr() {
        eprintln!("conbool: metrics at http://{addr}/metrics");
    }
    for line in certificate_lines(&snapshot.config, SystemTime::now()) {
        eprintln!("conbool: {line}");
    }
    wait_for_signals(signals, &args, &handle, &logger, snapshot);
    eprintln!("conbool: stopping: no new connections; waiting for transactions in flight");
    match handle.stop() {
        Ok(stats) => {
            eprintln!("conbool: stopped: {}", stats_line(&stats));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("conbool: stopped with an error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The main thread's loop until SIGTERM or SIGINT: SIGHUP reloads the configuration and the
/// certificates; between signals, every `tls.reload_check_s` the certificate, key and CA
/// files are looked at and reloaded when one changed. A reload that fails keeps what runs
/// (a renewal caught half-written must not stop TLS) and says why.
fn wait_for_signals(
    mut signals: Signals,
    args: &RunArgs,
    handle: &reactor::RelayHandle,
    logger: &Logger,
    mut current: Snapshot,
) {
    // Signals arrive on a channel so that this thread can also wake up to look at files.
    let (tx, rx) = crossbeam_channel::bounded(16);
    let signal_handle = signals.handle();
    let forwarder = std::thread::Builder::new()
        .name("conbool-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(sig).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = forwarder {
        eprintln!("conbool: cannot start the signal thread: {e}");
        return;
    }
    let mut watch = CertWatch::new(&current.config);
    let next_look = |watch: &CertWatch, config: &Config| {
        CertWatch::interval(config)
            .filter(|_| !watch.is_empty())
            .map(|every| Instant::now() + every)
    };
    let mut look_at = next_look(&watch, &current.config);
    loop {
        let received = match look_at {
            Some(at) => rx.recv_deadline(at),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(SIGHUP) => {
                match reload(args, handle, &current) {
                    Ok((new, lines)) => {
                        for line in lines {
                            eprintln!("conbool: {line}");
                        }
                        // The log file is reopened (logrotate) and the log settings follow
                        // the file.
                        let (format, level, file) = log_settings(args, &new.config);
                        let reopened = logger.reconfigure(format, level, file);
                        handle.metrics().reload(reopened.is_ok());
                        if let Err(e) = reopened {
                            eprintln!("conbool: log file: {e}");
                            logger.reopen();
                        }
                        current = new;
                    }
                    Err(e) => {
                        handle.metrics().reload(false);
                        logger.reopen();
                        eprintln!("conbool: {e}");
                    }
                }
                // Either way, the files as they are now are the ones tried.
                watch = CertWatch::new(&current.config);
                look_at = next_look(&watch, &current.config);
            }
            Ok(_) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                match certwatch::reload_if_changed(&mut watch, handle, &current) {
                    WatchOutcome::Unchanged => {}
                    WatchOutcome::Reloaded(changed) => {
                        eprintln!(
                            "conbool: certificates reloaded: changed: {}",
                            changed.join(", ")
                        );
                        for line in certificate_lines(&current.config, SystemTime::now()) {
                            eprintln!("conbool: {line}");
                        }
                    }
                    WatchOutcome::Refused { changed, error } => eprintln!(
                        "conbool: certificate reload refused, keeping the running certificates \
                         (tried again when a file changes again): changed: {}: {error}",
                        changed.join(", ")
                    ),
                }
                look_at = next_look(&watch, &current.config);
            }
        }
    }
    signal_handle.close();
}

/// SIGHUP: reads the configuration, rules and certificates again and validates all of it,
/// binds added `server.listen` addresses, and only then swaps the new snapshot into every
/// worker (open sessions finish on theirs). On success, returns the new snapshot and the lines
/// to log; on failure nothing changed (a renewal caught half-written must not stop TLS) and
/// the error is the line to log, with the reason.
pub fn reload(
    args: &RunArgs,
    handle: &reactor::RelayHandle,
    running: &Snapshot,
) -> Result<(Snapshot, Vec<String>), String> {
    let refused = |e: String| {
        format!("reload refused, keeping the running configuration and certificates: {e}")
    };
    let new = load_snapshot(args).map_err(refused)?;
    handle.reload(&new).map_err(refused)?;
    let (old, now) = (&running.config.server, &new.config.server);
    let mut lines = vec![format!(
        "configuration and certificates reloaded; listening on {}",
        handle
            .listen_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )];
    if old.workers != now.workers {
        lines.push(format!(
            "server.workers changed from {} to {}: takes effect at the next start",
            old.workers, now.workers
        ));
    }
    lines.extend(certificate_lines(&new.config, SystemTime::now()));
    Ok((new, lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tls;
    use crate::tls::testpki::{TempDir, World};

    #[test]
    fn certificate_lines_name_each_certificate_and_its_days_left() {
        let world = World::new();
        let dir = TempDir::new("run_certificate_lines");
        let mut config = Config::embedded_defaults();
        assert!(certificate_lines(&config, SystemTime::now()).is_empty());
        config.tls = Some(Tls {
            cert: dir.write("chain.pem", world.server_chain_pem()),
            key: dir.write("key.pem", world.server.key_pem()),
            require: false,
            client_ca: None,
            client_cert: None,
            client_key: None,
            reload_check_s: 0,
            sni: Vec::new(),
        });
        config.tenants[0].client_cert = Some(dir.path().join("missing.pem"));
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 365 * 2000);
        let lines = certificate_lines(&config, now);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("tls.cert: mail.conbool.com valid until 4096-01-01 ("),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("tenant[0].client_cert: ") && lines[1].ends_with("no certificate"),
            "{lines:?}"
        );
    }

    #[test]
    fn log_settings_come_from_the_flags_then_the_log_section() {
        let tenant = "[[tenant]]\nname = \"a.example\"\ndomains = [\"a.example\"]\nnext_hop = \"127.0.0.1:25\"\n";
        let toml =
            format!("[log]\nformat = \"json\"\nlevel = \"warn\"\nfile = \"conbool.log\"\n{tenant}");
        let config = Config::from_toml_str(&toml, Path::new("/etc/conbool/conbool.toml")).unwrap();
        let from_file = log_settings(&RunArgs::default(), &config);
        assert_eq!(
            from_file,
            (
                LogFormat::Json,
                Level::Warn,
                Some(PathBuf::from("/etc/conbool/conbool.log"))
            )
        );
        let args = RunArgs {
            log_format: Some(LogFormat::Text),
            log_level: Some(Level::Info),
            ..RunArgs::default()
        };
        let (format, level, _) = log_settings(&args, &config);
        assert_eq!((format, level), (LogFormat::Text, Level::Info));
        let defaults = log_settings(&RunArgs::default(), &Config::embedded_defaults());
        assert_eq!(defaults, (LogFormat::Text, Level::Info, None));
        for bad in ["[log]\nformat = \"xml\"\n", "[log]\ncolour = true\n"] {
            let text = format!("{bad}{tenant}");
            let err = Config::from_toml_str(&text, Path::new("c.toml")).unwrap_err();
            assert!(err.to_string().contains("log."), "{bad}: {err}");
        }
    }

    #[test]
    fn production_example_parses_and_serves_metrics_on_loopback() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/conbool.production.toml");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let metrics = config.server.metrics.expect("metrics on");
        assert!(metrics.ip().is_loopback());
        assert_eq!(config.log.level, Level::Info);
    }

    #[test]
    fn stats_line_shows_handshakes() {
        let stats = reactor::WorkerStats {
            next_hop_tls_handshakes: 3,
            ..reactor::WorkerStats::default()
        };
        assert!(stats_line(&stats).contains(" next_hop_tls_handshakes=3 "));
    }
}
