//! One worker: a `mio` poll loop with its own `SO_REUSEPORT` listeners, its sessions in a slab,
//! its timers and its idle pool of next-hop connections. Boring on purpose: dispatch on the
//! token, move bytes until nothing moves, let the session decide everything, close in one
//! place.
//!
//! Each socket (client, next hop) is plain or, after the session asked for STARTTLS, wrapped
//! in a [`TlsSocket`]: ciphertext goes between the socket and the pipe, plaintext between the
//! pipe and the session's buffers. Nothing read from a socket after the upgrade was asked for
//! reaches the session as plaintext.

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::logging::{Level, LogWriter};
use crate::metrics::names::{RefuseReason, Side};
use crate::metrics::{RuleTable, Shard};
use crate::reactor::limiter::ConnLimiter;
use crate::reactor::timer::Timers;
use crate::reactor::tls::{RelayTls, SocketRead, TlsSocket};
use crate::reactor::WorkerStats;
use crate::relay::route::TenantId;
use crate::relay::session::{Action, ConnInfo, Session, Snapshot};
use crate::smtp::client::Client;
use crate::smtp::error::SessionError;
use crate::tls::TlsPipe;

mod header_wait;
mod observe;

/// Tokens: listeners, then the waker, then two per connection (client, next hop), then
/// connections waiting for their PROXY header, then the pool.
const WAKER: Token = Token(1024);
const CONN_BASE: usize = 2048;
/// Tokens (and timer keys) of connections waiting for their PROXY header.
const WAIT_BASE: usize = 1 << 40;
const POOL_BASE: usize = 1 << 48;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 16 * 1024;
/// Rounds of read → session → write one connection gets per turn of the loop; a connection
/// with more to do is driven again next turn, after everyone else (no starvation by a client
/// that pipelines or streams without pause).
const DRIVE_ROUNDS_PER_TURN: usize = 16;
/// Connect timeout toward a next hop.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle next-hop connection stays pooled.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per next hop.
const POOL_MAX_PER_HOP: usize = 64;
/// How long a graceful stop waits for transactions in flight.
const DRAIN_GRACE: Duration = Duration::from_secs(60);
/// How long a finished session waits for the client to take its last reply before the
/// connection is closed anyway (a client that never reads must not hold it forever).
const CLOSE_LINGER: Duration = Duration::from_secs(30);

/// What the main thread tells a worker.
#[derive(Debug)]
pub enum Command {
    /// Use this snapshot and these TLS configurations for new sessions (open sessions keep
    /// theirs); say so on `done`.
    Reload {
        /// Configuration and rules.
        snapshot: Snapshot,
        /// TLS configurations built from the same configuration.
        tls: Arc<RelayTls>,
        /// Told once the worker switched.
        done: Option<Sender<()>>,
        /// Listeners to start (`server.listen` addresses added) and to stop (removed; their
        /// open sessions finish).
        listeners: ListenerChange,
    },
    /// Stop accepting, let transactions in flight finish, then exit.
    Drain,
}

/// Listeners added and removed by a reload, by configured `server.listen` address.
#[derive(Debug, Default)]
pub struct ListenerChange {
    /// New listeners (this worker's `SO_REUSEPORT` socket for each added address).
    pub add: Vec<(SocketAddr, TcpListener)>,
    /// Addresses whose listeners close.
    pub remove: Vec<SocketAddr>,
}

/// Everything a worker starts with.
pub struct WorkerInit {
    /// Worker number (for ids and logs).
    pub id: usize,
    /// This worker's listeners (one per listen address, all `SO_REUSEPORT`), each with its
    /// configured address.
    pub listeners: Vec<(SocketAddr, TcpListener)>,
    /// Configuration and rules for new sessions.
    pub snapshot: Snapshot,
    /// TLS configurations built from the snapshot's configuration.
    pub tls: Arc<RelayTls>,
    /// Commands from the main thread.
    pub inbox: Receiver<Command>,
    /// The poll instance whose waker the main thread holds.
    pub poll: Poll,
    /// Connections per client address, across workers.
    pub limiter: Arc<ConnLimiter>,
    /// Log one line per message, refused session and failed TLS handshake.
    pub log_messages: bool,
    /// This worker's metrics shard.
    pub metrics: Arc<Shard>,
    /// This worker's log writer.
    pub log: LogWriter,
}

/// Whether a socket may have bytes to read, under edge-triggered readiness.
#[derive(Clone, Copy, Debug, Default)]
struct Reads {
    /// A read may find bytes (or EOF): set by events, cleared when the socket is drained.
    ready: bool,
    /// The peer closed its side or the socket failed (sticky): reads go on until they say
    /// so, even after a short read.
    closed: bool,
}

impl Reads {
    /// A new socket: read it once to find out.
    const FRESH: Reads = Reads {
        ready: true,
        closed: false,
    };

    fn on_event(&mut self, ev: &mio::event::Event) {
        let closed = ev.is_read_closed() || ev.is_error();
        self.ready |= ev.is_readable() || closed;
        self.closed |= closed;
    }

    /// A read returned fewer bytes than it asked for: the receive queue was empty, and the
    /// next arrival is a new edge, so no read needs to find `WouldBlock` (unless the peer
    /// closed: then reading goes on to the EOF, for which no edge will come).
    fn short_read(&mut self) {
        if !self.closed {
            self.ready = false;
        }
    }
}

struct Down {
    stream: TcpStream,
    tenant: TenantId,
    connecting: bool,
    connect_deadline: Option<Instant>,
    reads: Reads,
    writable: bool,
    next_hop: String,
    tls: Option<Box<TlsSocket>>,
}

struct Conn {
    client: TcpStream,
    peer: SocketAddr,
    reads: Reads,
    writable: bool,
    /// The client closed its side (reported to the session once).
    client_eof: bool,
    /// TLS on the client side, from `Action::StartTlsClient` on.
    tls: Option<Box<TlsSocket>>,
    /// The client's TLS handshake must finish by then.
    tls_deadline: Option<Instant>,
    /// The TLS configurations of the generation the session runs on.
    relay_tls: Arc<RelayTls>,
    /// When the session finished: its last reply must be taken by then.
    linger_deadline: Option<Instant>,
    down: Option<Down>,
    session: Session,
    deadline: Option<Instant>,
}

struct Idle {
    stream: TcpStream,
    client: Box<Client>,
    tenant: TenantId,
    next_hop: String,
    tls: Option<Box<TlsSocket>>,
    since: Instant,
}

/// Whether a step moved anything, or closed the connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Moved(bool),
    Closed,
}

/// The worker's state.
pub struct Worker {
    id: usize,
    poll: Poll,
    /// By configured address; the slab key is the token.
    listeners: Slab<(SocketAddr, TcpListener)>,
    /// Connections waiting for their PROXY header (`server.proxy_protocol`).
    waiting: Slab<header_wait::Waiting>,
    snapshot: Snapshot,
    tls: Arc<RelayTls>,
    inbox: Receiver<Command>,
    limiter: Arc<ConnLimiter>,
    conns: Slab<Conn>,
    pool: Slab<Idle>,
    timers: Timers,
    next_conn_id: u64,
    draining: Option<Instant>,
    stats: WorkerStats,
    wall: (Instant, SystemTime),
    log_messages: bool,
    metrics: Arc<Shard>,
    log: LogWriter,
    /// Rule names of the current snapshot, for the rule-hit counters.
    rule_table: RuleTable,
    /// Connections whose turn ended with work left (see `DRIVE_ROUNDS_PER_TURN`).
    again: Vec<usize>,
    /// Where socket reads land before they are appended to a session's buffer: zeroed once,
    /// so a read costs a copy of what arrived, not a clear of a whole chunk.
    scratch: Box<[u8]>,
}

impl Worker {
    /// Sets up the worker (registers listeners).
    pub fn new(init: WorkerInit) -> io::Result<Worker> {
        let WorkerInit {
            id,
            listeners,
            snapshot,
            tls,
            inbox,
            poll,
            limiter,
            log_messages,
            metrics,
            log,
        } = init;
        let rule_table = RuleTable::new(&snapshot.rules);
        metrics.set_rules(rule_table.names.clone());
        let mut worker = Worker {
            id,
            poll,
            listeners: Slab::new(),
            waiting: Slab::new(),
            snapshot,
            tls,
            inbox,
            limiter,
            conns: Slab::new(),
            pool: Slab::new(),
            timers: Timers::default(),
            next_conn_id: (id as u64) << 48,
            draining: None,
            stats: WorkerStats::default(),
            wall: (Instant::now(), SystemTime::now()),
            log_messages,
            metrics,
            log,
            rule_table,
            again: Vec::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        };
        for (addr, listener) in listeners {
            worker.add_listener(addr, listener)?;
        }
        Ok(worker)
    }

    /// Registers a listener; its slab key is its token.
    fn add_listener(&mut self, addr: SocketAddr, mut listener: TcpListener) -> io::Result<()> {
        let entry = self.listeners.vacant_entry();
        if entry.key() >= WAKER.0 {
            return Err(io::Error::other("too many listeners"));
        }
        self.poll
            .registry()
            .register(&mut listener, Token(entry.key()), Interest::READABLE)?;
        entry.insert((addr, listener));
        Ok(())
    }

    /// Applies a reload's listener changes. A removed listener closes (connections queued on
    /// it and not yet accepted by this worker go with it); sessions it accepted go on.
    fn change_listeners(&mut self, change: ListenerChange) {
        for addr in change.remove {
            let keys: Vec<usize> = self
                .listeners
                .iter()
                .filter(|(_, (a, _))| *a == addr)
                .map(|(k, _)| k)
                .collect();
            for key in keys {
                let (_, mut l) = self.listeners.remove(key);
                let _ = self.poll.registry().deregister(&mut l);
            }
        }
        for (addr, listener) in change.add {
            if let Err(e) = self.add_listener(addr, listener) {
                eprintln!("worker={} listen {addr}: {e}", self.id);
            }
        }
    }

    /// Runs until drained; returns the worker's counters.
    pub fn run(mut self) -> io::Result<WorkerStats> {
        let mut events = Events::with_capacity(1024);
        let mut touched: Vec<usize> = Vec::with_capacity(1024);
        let mut now = Instant::now();
        let mut last_sweep = now;
        loop {
            // This turn's log lines, in one write, after its replies went out.
            self.log.flush();
            let timeout = self
                .timers
                .next()
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            let timeout = if self.again.is_empty() {
                timeout
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            now = Instant::now();
            touched.clear();
            for ev in events.iter() {
                let t = ev.token().0;
                if t < WAKER.0 {
                    self.accept_all(t, now);
                } else if ev.token() == WAKER {
                    self.drain_inbox(now);
                } else if t >= POOL_BASE {
                    self.pool_event(t - POOL_BASE);
                } else if t >= WAIT_BASE {
                    self.header_event(t - WAIT_BASE, now);
                } else if t >= CONN_BASE {
                    let key = (t - CONN_BASE) / 2;
                    let downstream = (t - CONN_BASE) % 2 == 1;
                    let Some(conn) = self.conns.get_mut(key) else {
                        continue;
                    };
                    if downstream {
                        if let Some(d) = conn.down.as_mut() {
                            d.reads.on_event(ev);
                            d.writable |= ev.is_writable() || ev.is_error();
                        }
                    } else {
                        conn.reads.on_event(ev);
                        conn.writable |= ev.is_writable() || ev.is_error();
                    }
                    touched.push(key);
                }
            }
            // Connections left with work last turn go first this turn, then the new events.
            touched.append(&mut self.again);
            touched.sort_unstable();
            touched.dedup();
            for &key in &touched {
                self.drive(key, now);
            }
            for key in self.timers.expired(now) {
                if key >= WAIT_BASE {
                    self.header_timed_out(key - WAIT_BASE);
                } else {
                    self.on_deadline(key, now);
                }
            }
            if now.duration_since(last_sweep) >= Duration::from_secs(1) {
                last_sweep = now;
                self.sweep_pool(now);
            }
            if let Some(deadline) = self.draining {
                if self.drain_step(now, deadline) {
                    return Ok(self.stats);
                }
            }
        }
    }

    fn accept_all(&mut self, index: usize, now: Instant) {
        loop {
            let Some((_, listener)) = self.listeners.get(index) else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and let the next readiness event retry.
                    self.log_event(
                        now,
                        Level::Error,
                        "accept_failed",
                        &[("error", &e.to_string())],
                    );
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().unwrap_or(peer);
            if self.snapshot.config.server.proxy_protocol {
                self.await_proxy_header(stream, peer, local, now);
            } else {
                self.start_session(stream, peer, local, now, &[]);
            }
        }
    }

    /// Starts the SMTP session of an accepted connection; `peer` is the client (after the
    /// PROXY header, if any), `early` the bytes that came after that header.
    fn start_session(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        now: Instant,
        early: &[u8],
    ) {
        {
            self.next_conn_id += 1;
            let info = ConnInfo {
                peer,
                local,
                conn_id: self.next_conn_id,
                wall_start: self.wall.1 + now.saturating_duration_since(self.wall.0),
                tls_available: self.tls.server().is_some(),
            };
            let allowed = self.limiter.acquire(peer.ip());
            self.stats.connections += 1;
            self.metrics.connections.inc();
            let snap = self.snapshot.clone();
            let session = if !allowed {
                self.stats.refused_connections += 1;
                self.log_refused(now, &info, RefuseReason::PerIpLimit);
                Session::new_refused(snap, info, now, SessionError::TooManyConnections)
            } else if self.draining.is_some() {
                self.log_refused(now, &info, RefuseReason::ShuttingDown);
                Session::new_refused(snap, info, now, SessionError::ShuttingDown)
            } else {
                Session::new(snap, info, now)
            };
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            let mut conn = Conn {
                client: stream,
                peer,
                reads: Reads::FRESH,
                writable: true,
                client_eof: false,
                tls: None,
                tls_deadline: None,
                relay_tls: self.tls.clone(),
                linger_deadline: None,
                down: None,
                session,
                deadline: None,
            };
            if let Err(e) = self.poll.registry().register(
                &mut conn.client,
                Token(CONN_BASE + key * 2),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                self.log_event(
                    now,
                    Level::Error,
                    "register_failed",
                    &[("error", &e.to_string())],
                );
                self.metrics.connections_closed.inc();
                self.limiter.release(peer.ip());
                return;
            }
            if !early.is_empty() {
                conn.session.client_buffer().extend_from_slice(early);
                conn.session.handle_client_data(now);
            }
            entry.insert(conn);
            self.drive(key, now);
        }
    }

    fn drain_inbox(&mut self, now: Instant) {
        while let Ok(cmd) = self.inbox.try_recv() {
            match cmd {
                Command::Reload {
                    snapshot,
                    tls,
                    done,
                    listeners,
                } => {
                    self.rule_table = RuleTable::new(&snapshot.rules);
                    self.metrics.set_rules(self.rule_table.names.clone());
                    self.snapshot = snapshot;
                    self.tls = tls;
                    if self.draining.is_none() {
                        self.change_listeners(listeners);
                    }
                    // Pooled connections were made under the old next-hop settings.
                    self.clear_pool();
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                Command::Drain => {
                    if self.draining.is_none() {
                        self.draining = Some(now + DRAIN_GRACE);
                        for (_, (_, l)) in self.listeners.iter_mut() {
                            let _ = self.poll.registry().deregister(l);
                        }
                        self.listeners.clear();
                        self.drop_waiting();
                        self.clear_pool();
                    }
                }
            }
        }
    }

    /// One step of a graceful stop; true when the worker may exit.
    fn drain_step(&mut self, now: Instant, deadline: Instant) -> bool {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            if now >= deadline || (!conn.session.in_transaction() && !conn.session.is_closing()) {
                conn.session.refuse(SessionError::ShuttingDown);
                self.drive(key, now);
            }
            if now >= deadline + Duration::from_secs(5) && self.conns.contains(key) {
                self.close(key);
            }
        }
        self.conns.is_empty()
    }

    /// A connection's timer fired: connect and TLS handshake timeouts are the reactor's, the
    /// rest the session's.
    fn on_deadline(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.deadline = None;
        if conn.tls_deadline.is_some_and(|t| t <= now) {
            self.client_tls_failed(key, "handshake timed out");
            return;
        }
        if conn.linger_deadline.is_some_and(|t| t <= now) {
            self.close(key);
            return;
        }
        if let Some(d) = conn.down.as_ref() {
            if d.connecting && d.connect_deadline.is_some_and(|t| t <= now) {
                self.metrics.next_hop_connect_failures.inc();
                self.drop_down(key);
                self.conns[key]
                    .session
                    .downstream_failed(now, "connect timed out".to_string());
            }
        }
        self.conns[key].session.handle_timeout(now);
        self.drive(key, now);
    }

    /// Moves bytes until nothing more can move, then closes or re-arms the timer.
    fn drive(&mut self, key: usize, now: Instant) {
        let mut rounds = 0;
        loop {
            if !self.conns.contains(key) {
                return;
            }
            rounds += 1;
            if rounds > DRIVE_ROUNDS_PER_TURN {
                self.again.push(key);
                break;
            }
            let mut progress = false;
            match self.client_to_session(key, now) {
                Step::Closed => return,
                Step::Moved(moved) => progress |= moved,
            }
            progress |= self.connect_progress(key, now);
            progress |= self.next_hop_to_session(key, now);

            // Actions.
            while let Some(action) = self.conns[key].session.poll_action() {
                progress = true;
                self.act(key, now, action);
            }
            // Before the replies they count reach the client (a scrape after a reply sees it).
            if let Some(counts) = self.conns[key].session.take_counts() {
                self.add_counts(&counts);
            }
            // The session gave up its next-hop link on its own (a protocol failure): the
            // socket goes too.
            let conn = &self.conns[key];
            if conn.down.is_some() && !conn.session.has_downstream() {
                self.drop_down(key);
            }

            match self.session_to_client(key, now) {
                Step::Closed => return,
                Step::Moved(moved) => progress |= moved,
            }
            progress |= self.session_to_next_hop(key, now);
            if !progress {
                break;
            }
        }
        let conn = &mut self.conns[key];
        let flushed = conn.session.client_output().is_empty()
            && conn
                .tls
                .as_ref()
                .map_or(true, |t| t.pending_out() == 0 && !t.pipe.wants_write());
        if conn.session.is_closing() {
            if flushed {
                self.close(key);
                return;
            }
            conn.linger_deadline.get_or_insert(now + CLOSE_LINGER);
        }
        let deadlines = [
            conn.session.next_deadline(),
            conn.down.as_ref().and_then(|d| d.connect_deadline),
            conn.tls_deadline,
            conn.linger_deadline,
        ];
        let new = deadlines.into_iter().flatten().min();
        let old = conn.deadline;
        conn.deadline = new;
        self.timers.update(key, old, new);
    }

    /// Client socket → session: one read (plain), or one read through TLS.
    fn client_to_session(&mut self, key: usize, now: Instant) -> Step {
        let conn = &mut self.conns[key];
        let Some(t) = conn.tls.as_mut() else {
            if !conn.reads.ready || conn.client_eof {
                return Step::Moved(false);
            }
            let room = conn.session.client_read_room().min(READ_CHUNK);
            if room == 0 {
                return Step::Moved(false);
            }
            let scratch = &mut self.scratch[..room];
            return match read_some(&mut conn.client, conn.session.client_buffer(), scratch) {
                Ok(0) => {
                    conn.reads.ready = false;
                    conn.client_eof = true;
                    conn.session.handle_client_eof(now);
                    Step::Moved(true)
                }
                Ok(n) => {
                    if n < room {
                        conn.reads.short_read();
                    }
                    self.stats.bytes_in += n as u64;
                    self.metrics.client_bytes_in.add(n as u64);
                    conn.session.handle_client_data(now);
                    Step::Moved(true)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.reads.ready = false;
                    Step::Moved(false)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Moved(true),
                Err(_) => {
                    conn.reads.ready = false;
                    conn.client_eof = true;
                    conn.session.handle_client_eof(now);
                    Step::Moved(true)
                }
            };
        };
        let mut moved = false;
        if conn.reads.ready {
            let read = t.read_socket(&mut conn.client);
            if matches!(read, SocketRead::Drained(_)) {
                conn.reads.short_read();
            }
            match read {
                SocketRead::Data(n) | SocketRead::Drained(n) => {
                    self.stats.bytes_in += n as u64;
                    self.metrics.client_bytes_in.add(n as u64);
                    moved = true;
                }
                SocketRead::NoRoom => {}
                SocketRead::WouldBlock => conn.reads.ready = false,
                SocketRead::Closed => {
                    conn.reads.ready = false;
                    moved = true;
                }
            }
        }
        match t.process() {
            Ok(taken) => moved |= taken,
            Err(e) => {
                let why = e.to_string();
                self.client_tls_failed(key, &why);
                return Step::Closed;
            }
        }
        if !t.started && !t.pipe.is_handshaking() {
            t.started = true;
            conn.tls_deadline = None;
            self.stats.client_tls_handshakes += 1;
            self.metrics
                .tls_handshake(Side::Client, t.pipe.is_resumed());
            if t.pipe.is_resumed() {
                self.stats.client_tls_resumed += 1;
            }
            let names = t
                .pipe
                .peer_cert_matches(conn.relay_tls.trusted_cert_names());
            if !names.is_empty() {
                conn.session.set_client_cert_names(&names);
            }
            conn.session.set_tls_description(t.pipe.description());
            // Clears whatever plaintext was pipelined after STARTTLS before any decrypted
            // byte goes in.
            conn.session.client_tls_started(now);
            moved = true;
        }
        if t.started {
            let room = conn.session.client_read_room();
            if room > 0 && t.pipe.read_plaintext(conn.session.client_buffer(), room) > 0 {
                conn.session.handle_client_data(now);
                moved = true;
            }
        }
        if t.input_finished() && !conn.client_eof {
            conn.client_eof = true;
            if !t.started {
                self.client_tls_failed(key, "connection closed during the handshake");
                return Step::Closed;
            }
            conn.session.handle_client_eof(now);
            moved = true;
        }
        Step::Moved(moved)
    }

    /// A non-blocking connect toward the next hop finished (or failed).
    fn connect_progress(&mut self, key: usize, now: Instant) -> bool {
        let conn = &mut self.conns[key];
        let Some(d) = conn.down.as_mut().filter(|d| d.connecting && d.writable) else {
            return false;
        };
        match connect_result(&d.stream) {
            Ok(true) => {
                if let Some(deadline) = d.connect_deadline {
                    let took = now.saturating_duration_since(deadline - CONNECT_TIMEOUT);
                    self.metrics.next_hop_connects.inc();
                    self.metrics
                        .connect_latency
                        .observe_us(took.as_micros() as u64);
                }
                d.connecting = false;
                d.connect_deadline = None;
                conn.session.downstream_attached(now, None);
                true
            }
            Ok(false) => {
                d.writable = false;
                false
            }
            Err(e) => {
                self.metrics.next_hop_connect_failures.inc();
                self.drop_down(key);
                self.conns[key]
                    .session
                    .downstream_failed(now, e.to_string());
                true
            }
        }
    }

    /// Next-hop socket → session: one read (plain), or one read through TLS.
    fn next_hop_to_session(&mut self, key: usize, now: Instant) -> bool {
        let conn = &mut self.conns[key];
        let Some(d) = conn.down.as_mut().filter(|d| !d.connecting) else {
            return false;
        };
        let mut moved = false;
        let mut failed = None;
        // `Some(stage)` when the failure is TLS's: logged and counted.
        let mut tls_failed = None;
        match d.tls.as_mut() {
            None => {
                let room = conn.session.downstream_read_room().min(READ_CHUNK);
                if d.reads.ready && room > 0 {
                    let scratch = &mut self.scratch[..room];
                    match read_some(&mut d.stream, conn.session.downstream_buffer(), scratch) {
                        Ok(0) => failed = Some("connection closed by next hop".to_string()),
                        Ok(n) => {
                            if n < room {
                                d.reads.short_read();
                            }
                            conn.session.handle_downstream_data(now);
                            moved = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => d.reads.ready = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => moved = true,
                        Err(e) => failed = Some(e.to_string()),
                    }
                }
            }
            Some(t) => {
                if d.reads.ready {
                    let read = t.read_socket(&mut d.stream);
                    if matches!(read, SocketRead::Drained(_)) {
                        d.reads.short_read();
                    }
                    match read {
                        SocketRead::Data(_) | SocketRead::Drained(_) | SocketRead::Closed => {
                            moved = true
                        }
                        SocketRead::NoRoom => {}
                        SocketRead::WouldBlock => d.reads.ready = false,
                    }
                }
                match t.process() {
                    Ok(taken) => moved |= taken,
                    Err(e) => {
                        tls_failed = Some(if t.started { "record" } else { "handshake" });
                        t.goodbye(&mut d.stream, false);
                        failed = Some(format!("TLS with {}: {e}", d.next_hop));
                    }
                }
                if failed.is_none() && !t.started && !t.pipe.is_handshaking() {
                    t.started = true;
                    self.stats.next_hop_tls_handshakes += 1;
                    self.metrics
                        .tls_handshake(Side::NextHop, t.pipe.is_resumed());
                    if t.pipe.is_resumed() {
                        self.stats.next_hop_tls_resumed += 1;
                    }
                    conn.session.downstream_tls_started(now);
                    moved = true;
                }
                if failed.is_none() && t.started {
                    let room = conn.session.downstream_read_room();
                    if room > 0
                        && t.pipe
                            .read_plaintext(conn.session.downstream_buffer(), room)
                            > 0
                    {
                        conn.session.handle_downstream_data(now);
                        moved = true;
                    }
                }
                if failed.is_none() && t.input_finished() {
                    tls_failed = (!t.started).then_some("handshake");
                    failed = Some(match t.started {
                        true => "connection closed by next hop".to_string(),
                        false => format!("TLS with {}: closed during the handshake", d.next_hop),
                    });
                }
            }
        }
        if let Some(why) = failed {
            if let Some(stage) = tls_failed {
                self.log_next_hop_tls_failure(key, stage, &why);
            }
            self.drop_down(key);
            self.conns[key].session.downstream_failed(now, why);
            moved = true;
        }
        moved
    }

    /// TLS toward a next hop failed (`stage`: `handshake` or `record`; under TLS 1.3 a
    /// refused client certificate shows as a record failure after our side finished): counted
    /// and logged. The client hears a `4xx` from the session.
    fn log_next_hop_tls_failure(&mut self, key: usize, stage: &str, why: &str) {
        self.stats.next_hop_tls_failures += 1;
        self.metrics.tls_failure(Side::NextHop);
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let client = conn.peer.to_string();
        let hop = conn
            .down
            .as_ref()
            .map_or("-", |d| d.next_hop.as_str())
            .to_string();
        let fields = [
            ("client", client.as_str()),
            ("side", "next_hop"),
            ("next_hop", hop.as_str()),
            ("stage", stage),
            ("reason", why),
        ];
        self.log_event(Instant::now(), Level::Warn, "tls_failed", &fields);
    }

    /// Session → client socket (through TLS when it is on).
    fn session_to_client(&mut self, key: usize, now: Instant) -> Step {
        let conn = &mut self.conns[key];
        let Some(t) = conn.tls.as_mut() else {
            if !conn.writable || conn.session.client_output().is_empty() {
                return Step::Moved(false);
            }
            let out = conn.session.client_output();
            return match conn.client.write(out) {
                Ok(n) => {
                    out.drain(..n);
                    self.stats.bytes_out += n as u64;
                    self.metrics.client_bytes_out.add(n as u64);
                    Step::Moved(n > 0)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.writable = false;
                    Step::Moved(false)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Moved(true),
                Err(_) => {
                    conn.session.client_output().clear();
                    self.client_gone(key, now);
                    Step::Closed
                }
            };
        };
        let mut moved = false;
        let out = conn.session.client_output();
        if !out.is_empty() {
            let n = t.write_plaintext(out);
            out.drain(..n);
            moved |= n > 0;
        }
        moved |= t.seal() > 0;
        if conn.writable && t.pending_out() > 0 {
            match t.flush(&mut conn.client) {
                Ok(n) => {
                    self.stats.bytes_out += n as u64;
                    self.metrics.client_bytes_out.add(n as u64);
                    moved |= n > 0;
                    if t.pending_out() > 0 {
                        conn.writable = false;
                    }
                }
                Err(_) => {
                    self.client_gone(key, now);
                    return Step::Closed;
                }
            }
        }
        Step::Moved(moved)
    }

    /// Session → next-hop socket (through TLS when it is on).
    fn session_to_next_hop(&mut self, key: usize, now: Instant) -> bool {
        let conn = &mut self.conns[key];
        let Some(d) = conn.down.as_mut().filter(|d| !d.connecting) else {
            return false;
        };
        let out = conn.session.downstream_output();
        let mut moved = false;
        let result = match d.tls.as_mut() {
            None if d.writable && !out.is_empty() => {
                let mut slices = [IoSlice::new(&[]); 64];
                let n = out.io_slices(&mut slices);
                match d.stream.write_vectored(&slices[..n]) {
                    Ok(n) => {
                        out.advance(n);
                        moved = n > 0;
                        Ok(())
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        d.writable = false;
                        Ok(())
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        moved = true;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            None => Ok(()),
            Some(t) => {
                // Hand plaintext over while the pipe takes it (it keeps its own bound; the
                // rest stays queued in the session, which then stops reading the client).
                while let Some(front) = out.front() {
                    let n = t.write_plaintext(front);
                    if n == 0 {
                        break;
                    }
                    out.advance(n);
                    moved = true;
                }
                moved |= t.seal() > 0;
                if d.writable && t.pending_out() > 0 {
                    match t.flush(&mut d.stream) {
                        Ok(n) => {
                            moved |= n > 0;
                            if t.pending_out() > 0 {
                                d.writable = false;
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    Ok(())
                }
            }
        };
        if let Err(e) = result {
            let why = e.to_string();
            self.drop_down(key);
            self.conns[key].session.downstream_failed(now, why);
            moved = true;
        }
        moved
    }

    fn act(&mut self, key: usize, now: Instant, action: Action) {
        match action {
            Action::ConnectDownstream { tenant, next_hop } => {
                self.connect_downstream(key, now, tenant, next_hop)
            }
            Action::CloseDownstream => self.drop_down(key),
            Action::StartTlsClient => self.start_client_tls(key, now),
            Action::StartTlsDownstream => self.start_next_hop_tls(key, now),
            Action::Log(log) => {
                self.stats.messages += 1;
                if log.reply.starts_with('2') {
                    self.stats.delivered += 1;
                }
                if log.flag == Some("YES") {
                    self.stats.spam += 1;
                }
                self.log_message(key, now, &log);
            }
            Action::Close => {}
        }
    }

    fn connect_downstream(&mut self, key: usize, now: Instant, tenant: TenantId, next_hop: String) {
        self.drop_down(key);
        let token = Token(CONN_BASE + key * 2 + 1);
        if let Some(idle) = self.take_pooled(tenant, &next_hop) {
            let Idle {
                mut stream,
                client,
                tls,
                ..
            } = idle;
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_ok()
            {
                let conn = &mut self.conns[key];
                conn.down = Some(Down {
                    stream,
                    tenant,
                    connecting: false,
                    connect_deadline: None,
                    reads: Reads::FRESH,
                    writable: true,
                    next_hop,
                    tls,
                });
                conn.session.downstream_attached(now, Some(client));
                self.metrics.next_hop_pool_reuses.inc();
                return;
            }
        }
        match connect(&next_hop) {
            Ok(mut stream) => {
                if let Err(e) = self.poll.registry().register(
                    &mut stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    self.conns[key]
                        .session
                        .downstream_failed(now, e.to_string());
                    return;
                }
                self.conns[key].down = Some(Down {
                    stream,
                    tenant,
                    connecting: true,
                    connect_deadline: Some(now + CONNECT_TIMEOUT),
                    reads: Reads::default(),
                    writable: false,
                    next_hop,
                    tls: None,
                });
            }
            Err(e) => {
                self.metrics.next_hop_connect_failures.inc();
                self.conns[key]
                    .session
                    .downstream_failed(now, format!("{next_hop}: {e}"));
            }
        }
    }

    /// The `220` to the client's STARTTLS is queued: it goes out in plain text, then
    /// everything on this socket is TLS.
    fn start_client_tls(&mut self, key: usize, now: Instant) {
        let timeout = Duration::from_secs(self.snapshot.config.limits.command_timeout_s);
        let conn = &mut self.conns[key];
        if conn.tls.is_some() {
            return;
        }
        let pipe = match conn.relay_tls.server() {
            Some(config) => TlsPipe::new_server(config.clone()).map_err(|e| e.to_string()),
            // The session only offers STARTTLS when a server configuration exists.
            None => Err("TLS is not configured".to_string()),
        };
        match pipe {
            Ok(pipe) => {
                let first = std::mem::take(conn.session.client_output());
                conn.tls = Some(Box::new(TlsSocket::new(pipe, first)));
                conn.tls_deadline = Some(now + timeout);
            }
            Err(why) => {
                let client = conn.peer.to_string();
                let fields = [
                    ("client", client.as_str()),
                    ("side", "client"),
                    ("reason", &why),
                ];
                self.log_event(now, Level::Warn, "tls_failed", &fields);
                let conn = &mut self.conns[key];
                conn.client_eof = true;
                conn.session.handle_client_eof(now);
            }
        }
    }

    /// The next hop said `220` to our STARTTLS: from now on its socket is TLS, with the
    /// tenant's client configuration and the next hop's host name.
    fn start_next_hop_tls(&mut self, key: usize, now: Instant) {
        let conn = &mut self.conns[key];
        let Some(d) = conn.down.as_mut() else {
            return;
        };
        if d.tls.is_some() {
            return;
        }
        let pipe = match conn.relay_tls.next_hop(d.tenant) {
            Some(config) => {
                let name = conn.relay_tls.next_hop_name(d.tenant, &d.next_hop);
                TlsPipe::new_client(config.clone(), name)
                    .map_err(|e| format!("TLS with {}: {e}", d.next_hop))
            }
            None => Err(format!("TLS with {}: not configured", d.next_hop)),
        };
        match pipe {
            Ok(pipe) => {
                // Anything still queued is plain text from before the `220`.
                let out = conn.session.downstream_output();
                let mut first = Vec::with_capacity(out.len());
                for chunk in out.drain() {
                    first.extend_from_slice(&chunk);
                }
                d.tls = Some(Box::new(TlsSocket::new(pipe, first)));
                d.writable = true;
            }
            Err(why) => {
                self.log_next_hop_tls_failure(key, "setup", &why);
                self.drop_down(key);
                self.conns[key].session.downstream_failed(now, why);
            }
        }
    }

    /// The client's TLS failed (handshake, record, timeout): log it naming the client, send
    /// the alert if there is one, close.
    fn client_tls_failed(&mut self, key: usize, why: &str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let handshaking = conn.tls.as_ref().is_some_and(|t| !t.started);
        self.stats.client_tls_failures += u64::from(handshaking);
        if handshaking {
            self.metrics.tls_failure(Side::Client);
        }
        let stage = if handshaking { "handshake" } else { "record" };
        let client = conn.peer.to_string();
        let fields = [
            ("client", client.as_str()),
            ("side", "client"),
            ("stage", stage),
            ("reason", why),
        ];
        self.log_event(Instant::now(), Level::Warn, "tls_failed", &fields);
        let conn = &mut self.conns[key];
        if let Some(t) = conn.tls.as_mut() {
            t.goodbye(&mut conn.client, false);
        }
        conn.tls = None;
        self.close(key);
    }

    /// Writing to the client failed: the session ends now.
    fn client_gone(&mut self, key: usize, now: Instant) {
        let conn = &mut self.conns[key];
        if !conn.client_eof {
            conn.client_eof = true;
            conn.session.handle_client_eof(now);
        }
        conn.tls = None;
        // Let the session abandon what it had with the next hop before the socket goes.
        while let Some(action) = self.conns[key].session.poll_action() {
            self.act(key, now, action);
        }
        self.close(key);
    }

    fn drop_down(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if let Some(mut d) = conn.down.take() {
                let _ = self.poll.registry().deregister(&mut d.stream);
            }
        }
    }

    /// Closes a connection; an idle next-hop connection goes back to the pool.
    fn close(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        self.metrics.connections_closed.inc();
        self.timers.update(key, conn.deadline, None);
        if let Some(t) = conn.tls.as_mut().filter(|t| t.started) {
            t.goodbye(&mut conn.client, true);
        }
        let _ = self.poll.registry().deregister(&mut conn.client);
        self.limiter.release(conn.peer.ip());
        if let Some(mut d) = conn.down.take() {
            let _ = self.poll.registry().deregister(&mut d.stream);
            let tls_clean = d.tls.as_ref().map_or(true, |t| {
                t.started && !t.eof && t.pending_out() == 0 && !t.pipe.wants_write()
            });
            let reusable = self.draining.is_none() && !d.connecting && tls_clean;
            if let (true, Some((tenant, client))) = (reusable, conn.session.take_idle_downstream())
            {
                self.put_pooled(Idle {
                    stream: d.stream,
                    client,
                    tenant,
                    next_hop: d.next_hop,
                    tls: d.tls,
                    since: Instant::now(),
                });
            }
        }
    }

    fn take_pooled(&mut self, tenant: TenantId, next_hop: &str) -> Option<Idle> {
        let key = self
            .pool
            .iter()
            .rev()
            .find(|(_, i)| i.tenant == tenant && i.next_hop == next_hop)
            .map(|(k, _)| k)?;
        let mut idle = self.pool.remove(key);
        let _ = self.poll.registry().deregister(&mut idle.stream);
        Some(idle)
    }

    fn put_pooled(&mut self, mut idle: Idle) {
        let same = self
            .pool
            .iter()
            .filter(|(_, i)| i.tenant == idle.tenant && i.next_hop == idle.next_hop)
            .count();
        if same >= POOL_MAX_PER_HOP {
            return;
        }
        let entry = self.pool.vacant_entry();
        let token = Token(POOL_BASE + entry.key());
        if self
            .poll
            .registry()
            .register(&mut idle.stream, token, Interest::READABLE)
            .is_ok()
        {
            entry.insert(idle);
        }
    }

    /// Anything from an idle pooled connection (a `421`, a close) makes it unusable. Over
    /// TLS, records that carry no SMTP bytes (session tickets, key updates) are taken in
    /// and the connection stays.
    fn pool_event(&mut self, key: usize) {
        let Some(idle) = self.pool.get_mut(key) else {
            return;
        };
        let keep = match idle.tls.as_mut() {
            None => false,
            Some(t) => loop {
                match t.read_socket(&mut idle.stream) {
                    SocketRead::Data(_) | SocketRead::Drained(_) => {}
                    SocketRead::WouldBlock => break true,
                    SocketRead::NoRoom | SocketRead::Closed => break false,
                }
                if t.process().is_err() || t.pipe.plaintext_ready() > 0 || t.pipe.peer_closed() {
                    break false;
                }
            },
        };
        if !keep {
            let mut idle = self.pool.remove(key);
            let _ = self.poll.registry().deregister(&mut idle.stream);
        }
    }

    fn sweep_pool(&mut self, now: Instant) {
        let old: Vec<usize> = self
            .pool
            .iter()
            .filter(|(_, i)| now.saturating_duration_since(i.since) >= POOL_IDLE)
            .map(|(k, _)| k)
            .collect();
        for key in old {
            let mut idle = self.pool.remove(key);
            // A polite QUIT is not worth a round trip here; the next hop sees a close.
            let _ = self.poll.registry().deregister(&mut idle.stream);
        }
    }

    fn clear_pool(&mut self) {
        for mut idle in self.pool.drain() {
            let _ = self.poll.registry().deregister(&mut idle.stream);
        }
    }
}

/// Reads at most `scratch.len()` bytes from `stream` and appends them to `buf`.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut bytes::BytesMut,
    scratch: &mut [u8],
) -> io::Result<usize> {
    let n = stream.read(scratch)?;
    buf.extend_from_slice(&scratch[..n]);
    Ok(n)
}

/// Whether a non-blocking connect finished (`Ok(false)`: not yet).
fn connect_result(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Starts a non-blocking connect to `host:port`. A literal address needs no lookup; a name is
/// resolved here (blocking the worker briefly; next hops are few and usually literal or cached
/// by the system resolver).
fn connect(next_hop: &str) -> io::Result<TcpStream> {
    let addr: SocketAddr = match next_hop.parse() {
        Ok(a) => a,
        Err(_) => next_hop
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?,
    };
    let stream = TcpStream::connect(addr)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Creates a worker's poll and waker.
pub fn poll_with_waker() -> io::Result<(Poll, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    Ok((poll, waker))
}
