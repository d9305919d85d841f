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
    let rules = crate::cli::scan::load_rules(&config.spam.rules, config.spam.threshold)?;
    Ok(Snapshot {
        config: Arc::new(config),
        rules,
    })
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
            SIGHUP => match load_snapshot(&args) {
                Ok(new) => {
                    handle.reload(&new);
                    eprintln!("conbool: configuration reloaded");
                }
                Err(e) => {
                    eprintln!("conbool: reload refused, keeping the running configuration: {e}")
                }
            },
            _ => break,
        }
    }
    eprintln!("conbool: stopping: no new connections; waiting for transactions in flight");
    match handle.stop() {
        Ok(stats) => {
            eprintln!(
                "conbool: stopped: connections={} messages={} delivered={} spam={}",
                stats.connections, stats.messages, stats.delivered, stats.spam
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("conbool: stopped with an error: {e}");
            ExitCode::from(1)
        }
    }
}
