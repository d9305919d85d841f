//! One worker: a `mio` poll loop with its own `SO_REUSEPORT` listeners, its sessions in a slab,
//! its timers and its idle pool of next-hop connections. Boring on purpose: dispatch on the
//! token, drain until `WouldBlock`, let the session decide everything, close in one place.

use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::reactor::limiter::ConnLimiter;
use crate::reactor::timer::Timers;
use crate::reactor::WorkerStats;
use crate::relay::route::TenantId;
use crate::relay::session::{Action, ConnInfo, Session, Snapshot};
use crate::smtp::client::Client;
use crate::smtp::error::SessionError;

/// Tokens: listeners, then the waker, then two per connection (client, next hop), then the pool.
const WAKER: Token = Token(1024);
const CONN_BASE: usize = 2048;
const POOL_BASE: usize = 1 << 48;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 16 * 1024;
/// Connect timeout toward a next hop.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle next-hop connection stays pooled.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per next hop.
const POOL_MAX_PER_HOP: usize = 64;
/// How long a graceful stop waits for transactions in flight.
const DRAIN_GRACE: Duration = Duration::from_secs(60);

/// What the main thread tells a worker.
#[derive(Debug)]
pub enum Command {
    /// Use this snapshot for new sessions (open sessions keep theirs).
    Reload(Snapshot),
    /// Stop accepting, let transactions in flight finish, then exit.
    Drain,
}

/// Everything a worker starts with.
pub struct WorkerInit {
    /// Worker number (for ids and logs).
    pub id: usize,
    /// This worker's listeners (one per listen address, all `SO_REUSEPORT`).
    pub listeners: Vec<TcpListener>,
    /// Configuration and rules for new sessions.
    pub snapshot: Snapshot,
    /// Commands from the main thread.
    pub inbox: Receiver<Command>,
    /// The poll instance whose waker the main thread holds.
    pub poll: Poll,
    /// Connections per client address, across workers.
    pub limiter: Arc<ConnLimiter>,
    /// Log one line per message and refused session.
    pub log_messages: bool,
}

struct Down {
    stream: TcpStream,
    connecting: bool,
    connect_deadline: Option<Instant>,
    readable: bool,
    writable: bool,
    next_hop: String,
}

struct Conn {
    client: TcpStream,
    peer: IpAddr,
    readable: bool,
    writable: bool,
    down: Option<Down>,
    session: Session,
    deadline: Option<Instant>,
}

struct Idle {
    stream: TcpStream,
    client: Box<Client>,
    tenant: TenantId,
    next_hop: String,
    since: Instant,
}

/// The worker's state.
pub struct Worker {
    id: usize,
    poll: Poll,
    listeners: Vec<TcpListener>,
    snapshot: Snapshot,
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
}

impl Worker {
    /// Sets up the worker (registers listeners).
    pub fn new(init: WorkerInit) -> io::Result<Worker> {
        let WorkerInit {
            id,
            mut listeners,
            snapshot,
            inbox,
            poll,
            limiter,
            log_messages,
        } = init;
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry().register(l, Token(i), Interest::READABLE)?;
        }
        Ok(Worker {
            id,
            poll,
            listeners,
            snapshot,
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
        })
    }

    /// Runs until drained; returns the worker's counters.
    pub fn run(mut self) -> io::Result<WorkerStats> {
        let mut events = Events::with_capacity(1024);
        let mut touched: Vec<usize> = Vec::with_capacity(1024);
        let mut now = Instant::now();
        let mut last_sweep = now;
        loop {
            let timeout = self
                .timers
                .next()
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            now = Instant::now();
            touched.clear();
            for ev in events.iter() {
                let t = ev.token().0;
                if t < self.listeners.len() {
                    self.accept_all(t, now);
                } else if ev.token() == WAKER {
                    self.drain_inbox(now);
                } else if t >= POOL_BASE {
                    self.pool_event(t - POOL_BASE);
                } else if t >= CONN_BASE {
                    let key = (t - CONN_BASE) / 2;
                    let downstream = (t - CONN_BASE) % 2 == 1;
                    let Some(conn) = self.conns.get_mut(key) else {
                        continue;
                    };
                    if downstream {
                        if let Some(d) = conn.down.as_mut() {
                            d.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                            d.writable |= ev.is_writable() || ev.is_error();
                        }
                    } else {
                        conn.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                        conn.writable |= ev.is_writable() || ev.is_error();
                    }
                    touched.push(key);
                }
            }
            touched.sort_unstable();
            touched.dedup();
            for &key in &touched {
                self.drive(key, now);
            }
            for key in self.timers.expired(now) {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.deadline = None;
                    if let Some(d) = conn.down.as_ref() {
                        if d.connecting && d.connect_deadline.is_some_and(|t| t <= now) {
                            self.drop_down(key);
                            let conn = &mut self.conns[key];
                            conn.session
                                .downstream_failed(now, "connect timed out".to_string());
                        }
                    }
                    if let Some(conn) = self.conns.get_mut(key) {
                        conn.session.handle_timeout(now);
                    }
                    self.drive(key, now);
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
            let (stream, peer) = match self.listeners[index].accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and let the next readiness event retry.
                    eprintln!("worker={} accept error: {e}", self.id);
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().unwrap_or(peer);
            self.next_conn_id += 1;
            let info = ConnInfo {
                peer,
                local,
                conn_id: self.next_conn_id,
                wall_start: self.wall.1 + now.saturating_duration_since(self.wall.0),
                tls_available: false,
            };
            let allowed = self.limiter.acquire(peer.ip());
            self.stats.connections += 1;
            let snap = self.snapshot.clone();
            let session = if !allowed {
                self.stats.refused_connections += 1;
                if self.log_messages {
                    log_line(&format!(
                        "refused client={peer} reason=max_connections_per_ip"
                    ));
                }
                Session::new_refused(snap, info, now, SessionError::TooManyConnections)
            } else if self.draining.is_some() {
                Session::new_refused(snap, info, now, SessionError::ShuttingDown)
            } else {
                Session::new(snap, info, now)
            };
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            let mut conn = Conn {
                client: stream,
                peer: peer.ip(),
                readable: true,
                writable: true,
                down: None,
                session,
                deadline: None,
            };
            if let Err(e) = self.poll.registry().register(
                &mut conn.client,
                Token(CONN_BASE + key * 2),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                eprintln!("worker={} register error: {e}", self.id);
                self.limiter.release(peer.ip());
                continue;
            }
            entry.insert(conn);
            self.drive(key, now);
        }
    }

    fn drain_inbox(&mut self, now: Instant) {
        while let Ok(cmd) = self.inbox.try_recv() {
            match cmd {
                Command::Reload(snapshot) => {
                    self.snapshot = snapshot;
                    // Pooled connections were made under the old next-hop settings.
                    self.clear_pool();
                }
                Command::Drain => {
                    if self.draining.is_none() {
                        self.draining = Some(now + DRAIN_GRACE);
                        for l in &mut self.listeners {
                            let _ = self.poll.registry().deregister(l);
                        }
                        self.listeners.clear();
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

    /// Moves bytes until nothing more can move, then closes or re-arms the timer.
    fn drive(&mut self, key: usize, now: Instant) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let mut progress = false;

            // Client → session.
            while conn.readable {
                let room = conn.session.client_read_room().min(READ_CHUNK);
                if room == 0 {
                    break;
                }
                match read_some(&mut conn.client, conn.session.client_buffer(), room) {
                    Ok(0) => {
                        conn.readable = false;
                        conn.session.handle_client_eof(now);
                        progress = true;
                    }
                    Ok(n) => {
                        self.stats.bytes_in += n as u64;
                        conn.session.handle_client_data(now);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        conn.readable = false;
                        conn.session.handle_client_eof(now);
                        progress = true;
                    }
                }
            }

            // Next hop → session.
            if let Some(d) = conn.down.as_mut() {
                if d.connecting && d.writable {
                    match connect_result(&d.stream) {
                        Ok(true) => {
                            d.connecting = false;
                            d.connect_deadline = None;
                            conn.session.downstream_attached(now, None);
                            progress = true;
                        }
                        Ok(false) => d.writable = false,
                        Err(e) => {
                            self.drop_down(key);
                            self.conns[key]
                                .session
                                .downstream_failed(now, e.to_string());
                            continue;
                        }
                    }
                }
            }
            let conn = &mut self.conns[key];
            if let Some(d) = conn.down.as_mut().filter(|d| !d.connecting) {
                let mut failed = None;
                while d.readable {
                    let room = conn.session.downstream_read_room().min(READ_CHUNK);
                    if room == 0 {
                        break;
                    }
                    match read_some(&mut d.stream, conn.session.downstream_buffer(), room) {
                        Ok(0) => {
                            failed = Some("connection closed by next hop".to_string());
                            break;
                        }
                        Ok(_) => {
                            conn.session.handle_downstream_data(now);
                            progress = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => d.readable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                if let Some(why) = failed {
                    self.drop_down(key);
                    self.conns[key].session.downstream_failed(now, why);
                    progress = true;
                }
            }

            // Actions.
            while let Some(action) = self.conns[key].session.poll_action() {
                progress = true;
                self.act(key, now, action);
            }

            // Session → sockets.
            let conn = &mut self.conns[key];
            if conn.writable && !conn.session.client_output().is_empty() {
                let out = conn.session.client_output();
                match conn.client.write(out) {
                    Ok(n) => {
                        out.drain(..n);
                        self.stats.bytes_out += n as u64;
                        progress |= n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        conn.writable = false;
                        out.clear();
                        conn.session.handle_client_eof(now);
                    }
                }
            }
            if let Some(d) = conn.down.as_mut().filter(|d| !d.connecting && d.writable) {
                let out = conn.session.downstream_output();
                if !out.is_empty() {
                    let mut slices = [IoSlice::new(&[]); 64];
                    let n = out.io_slices(&mut slices);
                    match d.stream.write_vectored(&slices[..n]) {
                        Ok(n) => {
                            out.advance(n);
                            progress |= n > 0;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => d.writable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let why = e.to_string();
                            self.drop_down(key);
                            self.conns[key].session.downstream_failed(now, why);
                            progress = true;
                        }
                    }
                }
            }
            if !progress {
                break;
            }
        }
        let conn = &mut self.conns[key];
        if conn.session.is_closing() && conn.session.client_output().is_empty() {
            self.close(key);
            return;
        }
        let session_deadline = conn.session.next_deadline();
        let connect_deadline = conn.down.as_ref().and_then(|d| d.connect_deadline);
        let new = match (session_deadline, connect_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let old = conn.deadline;
        conn.deadline = new;
        self.timers.update(key, old, new);
    }

    fn act(&mut self, key: usize, now: Instant, action: Action) {
        match action {
            Action::ConnectDownstream { tenant, next_hop } => {
                self.drop_down(key);
                if let Some(idle) = self.take_pooled(tenant, &next_hop) {
                    let Idle {
                        mut stream, client, ..
                    } = idle;
                    let token = Token(CONN_BASE + key * 2 + 1);
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        let conn = &mut self.conns[key];
                        conn.down = Some(Down {
                            stream,
                            connecting: false,
                            connect_deadline: None,
                            readable: true,
                            writable: true,
                            next_hop,
                        });
                        conn.session.downstream_attached(now, Some(client));
                        return;
                    }
                }
                match connect(&next_hop) {
                    Ok(mut stream) => {
                        let token = Token(CONN_BASE + key * 2 + 1);
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
                            connecting: true,
                            connect_deadline: Some(now + CONNECT_TIMEOUT),
                            readable: false,
                            writable: false,
                            next_hop,
                        });
                    }
                    Err(e) => {
                        self.conns[key]
                            .session
                            .downstream_failed(now, format!("{next_hop}: {e}"));
                    }
                }
            }
            Action::CloseDownstream => self.drop_down(key),
            Action::StartTlsClient => {
                // TLS is not configured on this listener: the session never offers it.
                self.conns[key].session.handle_client_eof(now);
            }
            Action::StartTlsDownstream => {
                self.drop_down(key);
                self.conns[key]
                    .session
                    .downstream_failed(now, "STARTTLS toward the next hop is not available".into());
            }
            Action::Log(log) => {
                self.stats.messages += 1;
                if log.reply.starts_with('2') {
                    self.stats.delivered += 1;
                }
                if log.flag == Some("YES") {
                    self.stats.spam += 1;
                }
                if self.log_messages {
                    log_line(&log.to_string());
                }
            }
            Action::Close => {}
        }
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
        self.timers.update(key, conn.deadline, None);
        let _ = self.poll.registry().deregister(&mut conn.client);
        self.limiter.release(conn.peer);
        if let Some(mut d) = conn.down.take() {
            let _ = self.poll.registry().deregister(&mut d.stream);
            let reusable = self.draining.is_none() && !d.connecting;
            if let (true, Some((tenant, client))) = (reusable, conn.session.take_idle_downstream())
            {
                self.put_pooled(Idle {
                    stream: d.stream,
                    client,
                    tenant,
                    next_hop: d.next_hop,
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

    /// Anything from an idle pooled connection (a `421`, a close) makes it unusable.
    fn pool_event(&mut self, key: usize) {
        if self.pool.contains(key) {
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

/// Reads at most `max` bytes into the end of `buf`.
fn read_some(stream: &mut TcpStream, buf: &mut bytes::BytesMut, max: usize) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + max, 0);
    let r = stream.read(&mut buf[start..]);
    let n = *r.as_ref().unwrap_or(&0);
    buf.truncate(start + n);
    r
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

fn log_line(line: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Creates a worker's poll and waker.
pub fn poll_with_waker() -> io::Result<(Poll, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    Ok((poll, waker))
}
