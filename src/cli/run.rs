//! `conbool run`: the relay. Loads the configuration (or the embedded defaults), starts the
//! workers, and turns signals into reload (SIGHUP) and graceful stop (SIGTERM, SIGINT).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::Config;
use crate::reactor;
use crate::relay::session::Snapshot;
use crate::rules::CompiledRules;

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
    if let Some(w) = args.workers {
        config.server.workers = if w == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            w
        };
    }
    let rules = CompiledRules::builtin(config.spam.threshold);
    Ok(Snapshot {
        config: Arc::new(config),
        rules,
    })
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
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conbool run: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let handle = match reactor::spawn(snapshot.clone(), &reactor::RelayOptions::default()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("conbool run: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let addrs: Vec<String> = handle.local_addrs.iter().map(|a| a.to_string()).collect();
    eprintln!(
        "conbool: listening on {} with {} workers; next hops: {}",
        addrs.join(", "),
        snapshot.config.server.workers.max(1),
        snapshot
            .config
            .tenants
            .iter()
            .map(|t| format!("{}={}", t.name, t.next_hop))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for sig in signals.forever() {
        match sig {
            // The configuration and the certificates are read again; if either is broken the
            // running ones stay (a renewal caught half-written must not stop TLS).
            SIGHUP => match load_snapshot(&args).and_then(|new| handle.reload(&new)) {
                Ok(()) => eprintln!("conbool: configuration and certificates reloaded"),
                Err(e) => eprintln!(
                    "conbool: reload refused, keeping the running configuration and certificates: {e}"
                ),
            },
            _ => break,
        }
    }
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
