//! The reactor: worker threads (one per core by default), each a `mio` loop with its own
//! `SO_REUSEPORT` listeners, sessions, timers and next-hop pool. Only this room touches sockets
//! and the clock. Workers share nothing on the hot path; reload and stop arrive as commands.
//!
//! TLS: [`RelayTls`] holds the rustls configurations of one configuration generation (built at
//! start and on each reload, shared by every worker); when a session asks for STARTTLS, the
//! worker wraps that socket in a [`tls::TlsSocket`] around a [`crate::tls::TlsPipe`]. A pooled
//! next-hop connection keeps its TLS state, so it is one handshake per pooled connection, not
//! per message ([`WorkerStats`] counts both sides).

pub mod certwatch;
pub mod limiter;
pub mod timer;
pub mod tls;
pub mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use mio::Waker;
use socket2::{Domain, Protocol, Socket, Type};

use crate::logging::Logger;
use crate::metrics::http::MetricsServer;
use crate::metrics::Registry;
use crate::reactor::limiter::ConnLimiter;
use crate::reactor::worker::{Command, ListenerChange, Worker, WorkerInit};

pub use crate::reactor::tls::RelayTls;
use crate::relay::session::Snapshot;

/// Counters of one worker, summed over workers at exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections refused at once (limits, shutdown).
    pub refused_connections: u64,
    /// Messages that reached end of data (any outcome).
    pub messages: u64,
    /// Messages the next hop accepted.
    pub delivered: u64,
    /// Messages flagged as spam.
    pub spam: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// TLS handshakes completed with clients (after their STARTTLS).
    pub client_tls_handshakes: u64,
    /// Of those, resumed sessions (no certificate exchange).
    pub client_tls_resumed: u64,
    /// Client TLS handshakes that failed or timed out (each closes its connection).
    pub client_tls_failures: u64,
    /// TLS handshakes completed toward next hops: one per new next-hop connection, none
    /// for a connection reused from the pool.
    pub next_hop_tls_handshakes: u64,
    /// Of those, resumed sessions.
    pub next_hop_tls_resumed: u64,
    /// TLS failures toward next hops: handshakes, and records refused after our side of the
    /// handshake (a next hop that refuses our client certificate under TLS 1.3). Each gave
    /// the client a `4xx`.
    pub next_hop_tls_failures: u64,
}

impl std::ops::AddAssign for WorkerStats {
    fn add_assign(&mut self, o: WorkerStats) {
        self.connections += o.connections;
        self.refused_connections += o.refused_connections;
        self.messages += o.messages;
        self.delivered += o.delivered;
        self.spam += o.spam;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.client_tls_handshakes += o.client_tls_handshakes;
        self.client_tls_resumed += o.client_tls_resumed;
        self.client_tls_failures += o.client_tls_failures;
        self.next_hop_tls_handshakes += o.next_hop_tls_handshakes;
        self.next_hop_tls_resumed += o.next_hop_tls_resumed;
        self.next_hop_tls_failures += o.next_hop_tls_failures;
    }
}

/// How the relay runs, apart from its configuration.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// Write one log line per message and per refused session to stderr.
    pub log_messages: bool,
}

impl Default for RelayOptions {
    fn default() -> RelayOptions {
        RelayOptions { log_messages: true }
    }
}

/// A running relay.
pub struct RelayHandle {
    /// The addresses actually listened on at start (port 0 resolved); see
    /// [`RelayHandle::listen_addrs`] after a reload.
    pub local_addrs: Vec<SocketAddr>,
    /// Each `server.listen` address in effect, with the address actually bound.
    listening: Mutex<Vec<(SocketAddr, SocketAddr)>>,
    workers: Vec<(Sender<Command>, Arc<Waker>)>,
    limiter: Arc<ConnLimiter>,
    threads: Vec<JoinHandle<io::Result<WorkerStats>>>,
    metrics: Arc<Registry>,
    metrics_server: Option<MetricsServer>,
}

impl RelayHandle {
    /// The metrics of every worker (what `/metrics` serves).
    pub fn metrics(&self) -> &Arc<Registry> {
        &self.metrics
    }

    /// Where `/metrics` is served (`server.metrics`, port 0 resolved), when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(|m| m.local_addr)
    }

    /// Hands every worker a new snapshot for new sessions, with TLS configurations rebuilt
    /// from its configuration (certificates are read again) and listeners for `server.listen`
    /// addresses added (bound here, before anything changes) or removed (they stop accepting;
    /// their open sessions finish). When a certificate or key cannot be used or an address
    /// cannot be bound, nothing changes (the running configuration, certificates and
    /// listeners stay) and the error says why. `server.workers` takes effect at the next
    /// start only. Returns once every worker has switched, so a connection made after it sees
    /// the new configuration.
    pub fn reload(&self, snapshot: &Snapshot) -> Result<(), String> {
        let tls = Arc::new(RelayTls::load(&snapshot.config)?);
        self.reload_with(snapshot, tls)
    }

    /// [`RelayHandle::reload`] with TLS configurations already built; fails only when a new
    /// listen address cannot be bound.
    pub fn reload_with(&self, snapshot: &Snapshot, tls: Arc<RelayTls>) -> Result<(), String> {
        let mut listening = self.listening.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = &snapshot.config.server.listen;
        let removed: Vec<SocketAddr> = listening
            .iter()
            .map(|&(configured, _)| configured)
            .filter(|a| !wanted.contains(a))
            .collect();
        let added: Vec<SocketAddr> = wanted
            .iter()
            .copied()
            .filter(|a| !listening.iter().any(|(configured, _)| configured == a))
            .collect();
        let mut per_worker: Vec<ListenerChange> = self
            .workers
            .iter()
            .map(|_| ListenerChange::default())
            .collect();
        let mut bound = Vec::new();
        for addr in added {
            let sockets = bind_all(addr, self.workers.len())
                .map_err(|e| format!("server.listen {addr}: {e}"))?;
            bound.push((addr, sockets.0));
            for (change, l) in per_worker.iter_mut().zip(sockets.1) {
                change.add.push((addr, l));
            }
        }
        for change in &mut per_worker {
            change.remove = removed.clone();
        }
        listening.retain(|(configured, _)| !removed.contains(configured));
        listening.extend(bound);
        self.limiter
            .set_max(snapshot.config.limits.max_connections_per_ip);
        let (done_tx, done_rx) = crossbeam_channel::bounded(self.workers.len());
        let mut asked = 0;
        for ((tx, waker), listeners) in self.workers.iter().zip(per_worker) {
            let cmd = Command::Reload {
                snapshot: snapshot.clone(),
                tls: tls.clone(),
                done: Some(done_tx.clone()),
                listeners,
            };
            if tx.send(cmd).is_ok() {
                asked += 1;
            }
            let _ = waker.wake();
        }
        for _ in 0..asked {
            // A worker that exited (drained) never answers; do not wait for it forever.
            if done_rx.recv_timeout(RELOAD_ACK_TIMEOUT).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// The addresses listened on now (port 0 resolved), in `server.listen` order of when
    /// each was added.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        let listening = self.listening.lock().unwrap_or_else(|p| p.into_inner());
        listening.iter().map(|&(_, actual)| actual).collect()
    }

    /// Stops accepting; transactions in flight finish; then the workers exit.
    pub fn drain(&self) {
        for (tx, waker) in &self.workers {
            let _ = tx.send(Command::Drain);
            let _ = waker.wake();
        }
    }

    /// Waits for every worker to exit (call [`RelayHandle::drain`] first).
    pub fn join(mut self) -> io::Result<WorkerStats> {
        let mut total = WorkerStats::default();
        // Scrapes keep working while transactions in flight finish.
        let _metrics_server = self.metrics_server.take();
        for t in self.threads {
            match t.join() {
                Ok(Ok(s)) => total += s,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("worker thread panicked")),
            }
        }
        Ok(total)
    }

    /// Drains and joins.
    pub fn stop(self) -> io::Result<WorkerStats> {
        self.drain();
        self.join()
    }
}

/// How long [`RelayHandle::reload`] waits for each worker to switch.
const RELOAD_ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds the listeners and starts `config.server.workers` workers. The TLS configurations
/// (`[tls]`, each tenant's next-hop TLS) are built from the snapshot's configuration first; a
/// certificate or key that cannot be used is an `InvalidInput` error naming the file.
pub fn spawn(snapshot: Snapshot, options: &RelayOptions) -> io::Result<RelayHandle> {
    let tls = RelayTls::load(&snapshot.config)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    spawn_with_tls(snapshot, Arc::new(tls), options)
}

/// [`spawn`] with TLS configurations already built.
pub fn spawn_with_tls(
    snapshot: Snapshot,
    tls: Arc<RelayTls>,
    options: &RelayOptions,
) -> io::Result<RelayHandle> {
    let logger = if options.log_messages {
        Logger::stderr()
    } else {
        Logger::off()
    };
    spawn_logged(snapshot, tls, logger)
}

/// [`spawn_with_tls`] writing its log lines through `logger` (format, level, file). Starts the
/// `/metrics` endpoint too when `server.metrics` is set.
pub fn spawn_logged(
    snapshot: Snapshot,
    tls: Arc<RelayTls>,
    logger: Arc<Logger>,
) -> io::Result<RelayHandle> {
    let config = snapshot.config.clone();
    let workers = config.server.workers.max(1);
    let mut per_worker: Vec<Vec<(SocketAddr, mio::net::TcpListener)>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut listening = Vec::new();
    for addr in &config.server.listen {
        let (actual, sockets) = bind_all(*addr, workers)?;
        listening.push((*addr, actual));
        for (listeners, l) in per_worker.iter_mut().zip(sockets) {
            listeners.push((*addr, l));
        }
    }
    let local_addrs = listening.iter().map(|&(_, actual)| actual).collect();
    let limiter = Arc::new(ConnLimiter::new(config.limits.max_connections_per_ip));
    let metrics = Arc::new(Registry::new(workers));
    let metrics_server = match config.server.metrics {
        Some(addr) => Some(MetricsServer::start(
            addr,
            metrics.clone(),
            crate::metrics::http::REQUEST_TIMEOUT,
        )?),
        None => None,
    };
    let mut handles = Vec::new();
    let mut threads = Vec::new();
    for (id, listeners) in per_worker.into_iter().enumerate() {
        let (poll, waker) = worker::poll_with_waker()?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let worker = Worker::new(WorkerInit {
            id,
            listeners,
            snapshot: snapshot.clone(),
            tls: tls.clone(),
            inbox: rx,
            poll,
            limiter: limiter.clone(),
            log_messages: true,
            metrics: metrics.shard(id),
            log: logger.batched_writer(),
        })?;
        threads.push(
            std::thread::Builder::new()
                .name(format!("conbool-w{id}"))
                .spawn(move || worker.run())?,
        );
        handles.push((tx, waker));
    }
    Ok(RelayHandle {
        local_addrs,
        listening: Mutex::new(listening),
        workers: handles,
        limiter,
        threads,
        metrics,
        metrics_server,
    })
}

/// Binds `count` `SO_REUSEPORT` listeners on `addr`: the first one resolves port 0 to the
/// port all share. Returns the address bound and the listeners.
fn bind_all(
    addr: SocketAddr,
    count: usize,
) -> io::Result<(SocketAddr, Vec<mio::net::TcpListener>)> {
    let first = bind_reuseport(addr)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..count.max(1) {
        all.push(bind_reuseport(actual)?);
    }
    Ok((actual, all))
}

fn bind_reuseport(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}
