//! `conbool sink`: a fast next hop for tests and load. It accepts every envelope, counts
//! messages, optionally stores them (in memory for tests, or in a maildir), and injects
//! temporary or permanent failures at end of data with a seeded PRNG.
//!
//! One mio loop on one thread drives the sans-IO [`Server`] core; the sink does no per-byte
//! work of its own beyond what the core does (and the copy into storage when asked to keep
//! messages). It shares no code with `reactor` on purpose: a bug shared with the relay would
//! hide itself.
//!
//! Programmatic use: [`Sink::spawn`] binds (port 0 is fine), runs the loop on its own thread and
//! returns a [`SinkHandle`] with the bound address, live [`SinkStats`] and a stop switch.
//!
//! With a TLS configuration ([`SinkOptions::tls`]; `--tls-cert`/`--tls-key`) it offers
//! STARTTLS; with `--client-ca` it asks for a client certificate, and with
//! `--require-client-cert` it refuses clients without one (as Exchange's inbound connector
//! does).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::cli::toolkit::{self, JsonWriter, ReadSizer, ReadStatus};
use crate::config::BareLf;
use crate::smtp::error::{reply_for, SessionError};
use crate::smtp::reply::Reply;
use crate::smtp::server::{Event, Server, ServerParams};
use crate::tls::{self, ServerConfig, TlsPipe};

/// Flags of `conbool sink` (DESIGN.md §5).
#[derive(clap::Args, Debug, Clone)]
pub struct SinkArgs {
    /// Address to accept SMTP on (the embedded defaults' next hop).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2526")]
    pub listen: SocketAddr,
    /// Store each accepted message as a file in DIR/new (written in DIR/tmp, then renamed).
    #[arg(long, value_name = "DIR")]
    pub maildir: Option<PathBuf>,
    /// Percentage of messages answered `451 4.3.0` at end of data.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, value_parser = parse_pct)]
    pub tempfail: f64,
    /// Percentage of messages answered `550 5.7.1` at end of data.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, value_parser = parse_pct)]
    pub reject: f64,
    /// Seed of the failure-injection PRNG (same seed, same sequence of verdicts).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// PEM certificate chain for STARTTLS.
    #[arg(long, value_name = "F", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for STARTTLS.
    #[arg(long, value_name = "F", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Request and verify client certificates against this CA file.
    #[arg(long, value_name = "F", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Refuse the TLS handshake of clients without a certificate from `--client-ca`.
    #[arg(long, requires = "client_ca")]
    pub require_client_cert: bool,
    /// Print the summary at exit as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// How a sink behaves.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    /// Address to bind (`127.0.0.1:0` for an ephemeral port).
    pub listen: SocketAddr,
    /// Maildir to store accepted messages in.
    pub maildir: Option<PathBuf>,
    /// Percentage (0..=100) of messages answered `451` at end of data.
    pub tempfail_pct: f64,
    /// Percentage (0..=100) of messages answered `550` at end of data.
    pub reject_pct: f64,
    /// Seed of the failure-injection PRNG.
    pub seed: u64,
    /// Keep every accepted message in memory (envelope plus the exact content as delivered,
    /// unstuffed), up to [`KEEP_MESSAGES_MAX_BYTES`]; read them with [`SinkHandle::take_messages`].
    pub keep_messages: bool,
    /// Our name in the greeting and EHLO reply.
    pub hostname: String,
    /// Advertised in `SIZE`; larger messages get `552 5.3.4`.
    pub max_message_size: u64,
    /// Offer STARTTLS with this configuration.
    pub tls: Option<Arc<ServerConfig>>,
}

impl Default for SinkOptions {
    fn default() -> SinkOptions {
        SinkOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            maildir: None,
            tempfail_pct: 0.0,
            reject_pct: 0.0,
            seed: 1,
            keep_messages: false,
            hostname: "sink.conbool.invalid".to_string(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            tls: None,
        }
    }
}

/// Largest message the sink takes by default (advertised as `SIZE`).
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 100 * 1024 * 1024;

/// Memory all kept messages may use together; later messages are counted but not kept
/// (see [`SinkStats::messages_not_kept`]).
pub const KEEP_MESSAGES_MAX_BYTES: usize = 512 * 1024 * 1024;

/// Connections whose counts are tracked one by one in [`SinkStats::per_connection`]; later
/// connections count only in the totals.
pub const MAX_TRACKED_CONNECTIONS: usize = 10_000;

/// Recipients per transaction (the core answers `452 4.5.3` beyond).
const MAX_RECIPIENTS: usize = 1000;

/// Unconsumed client input held per connection.
const MAX_INBUF: usize = 1024 * 1024;

/// Reply bytes waiting for the socket before the sink stops reading from that client.
const MAX_PENDING_REPLIES: usize = 256 * 1024;

/// How often command and data timeouts are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Ciphertext read from a TLS client and not yet taken by its pipe.
const MAX_CIPHERTEXT_IN: usize = 64 * 1024;

/// How long a client has for its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Counters of one sink, cumulative since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// Messages answered `250`.
    pub accepted: u64,
    /// Messages answered `4xx` (injected or a local error such as a maildir write failure).
    pub tempfailed: u64,
    /// Messages answered `5xx` (injected).
    pub rejected: u64,
    /// Transactions that started DATA/BDAT but never reached end of data.
    pub aborted: u64,
    /// Content bytes of accepted messages (unstuffed).
    pub bytes_accepted: u64,
    /// Accepted messages not kept in memory because [`KEEP_MESSAGES_MAX_BYTES`] was reached.
    pub messages_not_kept: u64,
    /// Maildir write or rename failures (each message answered `451`).
    pub maildir_errors: u64,
    /// TLS handshakes completed (after STARTTLS).
    pub tls_handshakes: u64,
    /// Of those, clients that presented a verified certificate.
    pub tls_client_certs: u64,
    /// TLS handshakes that failed (bad or missing client certificate, garbage, timeout).
    pub tls_failures: u64,
    /// The first [`MAX_TRACKED_CONNECTIONS`] connections, in accept order.
    pub per_connection: Vec<ConnectionStats>,
}

/// Counters of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionStats {
    /// The client's address.
    pub peer: SocketAddr,
    /// Messages accepted on it.
    pub accepted: u64,
    /// Messages refused on it (injected `4xx`/`5xx`).
    pub refused: u64,
    /// Content bytes accepted on it.
    pub bytes: u64,
    /// Still open.
    pub open: bool,
}

/// One accepted message as the sink received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// `MAIL FROM` address; empty for the null reverse-path.
    pub from: String,
    /// `RCPT TO` addresses, in order.
    pub rcpts: Vec<String>,
    /// The content exactly as delivered: unstuffed, without the final `.` line or BDAT framing.
    pub data: Vec<u8>,
    /// It arrived with BDAT.
    pub bdat: bool,
    /// It arrived over TLS.
    pub tls: bool,
}

/// Starts sinks.
#[derive(Debug)]
pub struct Sink;

impl Sink {
    /// Binds `opts.listen` (errors come back here) and runs the sink on its own thread.
    pub fn spawn(opts: SinkOptions) -> io::Result<SinkHandle> {
        validate_pcts(opts.tempfail_pct, opts.reject_pct)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if let Some(dir) = &opts.maildir {
            for sub in ["tmp", "new", "cur"] {
                fs::create_dir_all(dir.join(sub))?;
            }
        }
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(opts.listen)?;
        let addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("conbool-sink".to_string())
                .spawn(move || Loop::new(poll, listener, shared, opts).run())?
        };
        Ok(SinkHandle {
            addr,
            shared,
            waker,
            thread: Some(thread),
        })
    }
}

/// A running sink. Dropping it stops the sink and waits for its thread.
#[derive(Debug)]
pub struct SinkHandle {
    /// The address the sink listens on.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl SinkHandle {
    /// A snapshot of the counters. A message's counts are updated before its reply is sent,
    /// so after a client has its `250` the sink has counted it.
    pub fn stats(&self) -> SinkStats {
        lock(&self.shared.stats).clone()
    }

    /// Moves out the messages kept so far (with `keep_messages`), in the order they ended.
    pub fn take_messages(&self) -> Vec<ReceivedMessage> {
        std::mem::take(&mut *lock(&self.shared.messages))
    }

    /// A switch that stops the sink from another thread (e.g. a signal handler thread).
    pub fn stopper(&self) -> SinkStopper {
        SinkStopper {
            shared: Arc::clone(&self.shared),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Stops the sink (open connections get `421` and are closed) and returns the final
    /// counters, or the error that ended its loop.
    pub fn stop(mut self) -> io::Result<SinkStats> {
        self.stopper().stop();
        self.join()
    }

    /// Waits until the sink stops (through a [`SinkStopper`] or an error), then returns the
    /// final counters.
    pub fn wait(mut self) -> io::Result<SinkStats> {
        self.join()
    }

    fn join(&mut self) -> io::Result<SinkStats> {
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(result) => result?,
                Err(_) => return Err(io::Error::other("sink thread panicked")),
            }
        }
        Ok(self.stats())
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stopper().stop();
            let _ = self.join();
        }
    }
}

/// Stops a running sink; cheap to clone and `Send`.
#[derive(Clone, Debug)]
pub struct SinkStopper {
    shared: Arc<Shared>,
    waker: Arc<Waker>,
}

impl SinkStopper {
    /// Asks the sink to stop; returns at once.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// `conbool sink`: runs until SIGINT or SIGTERM, then prints a summary (text, or JSON with
/// `--json`) on stdout.
pub fn main(args: SinkArgs) -> ExitCode {
    let tls = match tls_from_args(&args) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("conbool sink: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = SinkOptions {
        listen: args.listen,
        maildir: args.maildir.clone(),
        tempfail_pct: args.tempfail,
        reject_pct: args.reject,
        seed: args.seed,
        tls,
        ..SinkOptions::default()
    };
    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conbool sink: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = match Sink::spawn(opts) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("conbool sink: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!("conbool sink: listening on {}", handle.addr);
    let stopper = handle.stopper();
    let mut signals = signals;
    // The signal thread stays blocked if the sink dies on its own; the process exits anyway.
    let _ = thread::Builder::new()
        .name("conbool-sink-signals".to_string())
        .spawn(move || {
            if signals.forever().next().is_some() {
                stopper.stop();
            }
        });
    let started = Instant::now();
    match handle.wait() {
        Ok(stats) => {
            let elapsed = started.elapsed();
            if args.json {
                println!("{}", stats_json(&stats, elapsed));
            } else {
                print!("{}", stats_text(&stats, elapsed));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("conbool sink: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The TLS configuration the flags ask for (`None` without `--tls-cert`).
pub fn tls_from_args(args: &SinkArgs) -> Result<Option<Arc<ServerConfig>>, String> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let config = match (&args.client_ca, args.require_client_cert) {
        (Some(ca), true) => tls::server_config_requiring_client_cert(cert, key, ca),
        (ca, _) => tls::server_config(cert, key, ca.as_deref()),
    };
    config.map(Some).map_err(|e| e.to_string())
}

/// The summary as text, one fact per line.
pub fn stats_text(stats: &SinkStats, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        stats.accepted as f64 / secs
    } else {
        0.0
    };
    let mut s = String::new();
    let _ = writeln!(s, "sink summary after {secs:.1} s");
    let _ = writeln!(
        s,
        "  messages    {} accepted, {} tempfailed, {} rejected, {} aborted ({rate:.0} msg/s)",
        stats.accepted, stats.tempfailed, stats.rejected, stats.aborted
    );
    let _ = writeln!(
        s,
        "  bytes       {} accepted ({:.1} MB)",
        stats.bytes_accepted,
        stats.bytes_accepted as f64 / 1e6
    );
    let _ = writeln!(
        s,
        "  connections {} ({} open)",
        stats.connections, stats.open_connections
    );
    if stats.maildir_errors > 0 {
        let _ = writeln!(s, "  maildir     {} write errors", stats.maildir_errors);
    }
    if stats.tls_handshakes + stats.tls_failures > 0 {
        let _ = writeln!(
            s,
            "  tls         {} handshakes ({} with a client certificate), {} failed",
            stats.tls_handshakes, stats.tls_client_certs, stats.tls_failures
        );
    }
    s
}

/// The summary as one JSON object (no per-connection detail).
pub fn stats_json(stats: &SinkStats, elapsed: Duration) -> String {
    let mut j = JsonWriter::object();
    j.field_f64("elapsed_s", elapsed.as_secs_f64());
    j.field_u64("connections", stats.connections);
    j.field_u64("open_connections", stats.open_connections);
    j.field_u64("accepted", stats.accepted);
    j.field_u64("tempfailed", stats.tempfailed);
    j.field_u64("rejected", stats.rejected);
    j.field_u64("aborted", stats.aborted);
    j.field_u64("bytes_accepted", stats.bytes_accepted);
    j.field_u64("maildir_errors", stats.maildir_errors);
    j.field_u64("tls_handshakes", stats.tls_handshakes);
    j.field_u64("tls_client_certs", stats.tls_client_certs);
    j.field_u64("tls_failures", stats.tls_failures);
    j.finish()
}

/// Parses a percentage 0..=100 (clap value parser).
fn parse_pct(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 100"))
    }
}

fn validate_pcts(tempfail: f64, reject: f64) -> Result<(), String> {
    for (name, v) in [("tempfail", tempfail), ("reject", reject)] {
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("{name} percentage {v} is not between 0 and 100"));
        }
    }
    if tempfail + reject > 100.0 {
        return Err(format!(
            "tempfail ({tempfail}) plus reject ({reject}) exceeds 100 percent"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- the loop

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    stats: Mutex<SinkStats>,
    messages: Mutex<Vec<ReceivedMessage>>,
}

/// A poisoned lock only means another thread panicked mid-update of plain counters.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What end of data gets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    Accept,
    Tempfail,
    Reject,
}

/// Deterministic verdicts from a seed (xorshift64*; quality is irrelevant here).
#[derive(Debug)]
struct Injector {
    state: u64,
    tempfail_bp: u64,
    reject_bp: u64,
}

impl Injector {
    fn new(seed: u64, tempfail_pct: f64, reject_pct: f64) -> Injector {
        Injector {
            state: (seed ^ 0x9E37_79B9_7F4A_7C15) | 1,
            tempfail_bp: (tempfail_pct * 100.0).round() as u64,
            reject_bp: (reject_pct * 100.0).round() as u64,
        }
    }

    fn next(&mut self) -> Verdict {
        if self.tempfail_bp == 0 && self.reject_bp == 0 {
            return Verdict::Accept;
        }
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        let roll = x.wrapping_mul(0x2545_F491_4F6C_DD1D) % 10_000;
        if roll < self.tempfail_bp {
            Verdict::Tempfail
        } else if roll < self.tempfail_bp + self.reject_bp {
            Verdict::Reject
        } else {
            Verdict::Accept
        }
    }
}

/// The message being received on one connection.
#[derive(Debug)]
struct Incoming {
    from: String,
    rcpts: Vec<String>,
    started: bool,
    bdat: bool,
    bytes: u64,
    data: Option<Vec<u8>>,
    file: Option<(File, String)>,
    file_error: bool,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    server: Server,
    inbuf: BytesMut,
    reads: ReadSizer,
    /// Reply plaintext (before STARTTLS straight to the socket, after it into the pipe).
    out: Vec<u8>,
    out_pos: usize,
    writable_interest: bool,
    eof: bool,
    incoming: Option<Incoming>,
    stats_slot: Option<usize>,
    /// The core accepted STARTTLS: once its `220` is queued, the socket becomes TLS.
    starttls_pending: bool,
    tls: Option<Box<SinkTls>>,
}

/// A connection's TLS side: ciphertext in and out around the pipe.
#[derive(Debug)]
struct SinkTls {
    pipe: TlsPipe,
    cipher_in: BytesMut,
    reads: ReadSizer,
    /// Bytes for the socket: the plain `220` first, then ciphertext.
    cipher_out: Vec<u8>,
    cipher_pos: usize,
    started: bool,
    deadline: Instant,
}

impl SinkTls {
    fn pending(&self) -> usize {
        self.cipher_out.len() - self.cipher_pos
    }
}

struct Loop {
    poll: Poll,
    listener: TcpListener,
    shared: Arc<Shared>,
    opts: SinkOptions,
    params: ServerParams,
    conns: Slab<Conn>,
    injector: Injector,
    kept_bytes: usize,
    maildir_seq: u64,
}

static MAILDIR_UNIQUE: AtomicU64 = AtomicU64::new(0);

impl Loop {
    fn new(poll: Poll, listener: TcpListener, shared: Arc<Shared>, opts: SinkOptions) -> Loop {
        let params = ServerParams {
            hostname: opts.hostname.clone(),
            max_message_size: opts.max_message_size,
            max_recipients: MAX_RECIPIENTS,
            max_errors: 10,
            // Store exactly what arrived: under BDAT a bare LF is content.
            bare_lf: BareLf::Accept,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            starttls: opts.tls.is_some(),
            tls_required: false,
            binarymime: true,
        };
        let injector = Injector::new(opts.seed, opts.tempfail_pct, opts.reject_pct);
        Loop {
            poll,
            listener,
            shared,
            opts,
            params,
            conns: Slab::new(),
            injector,
            kept_bytes: 0,
            maildir_seq: MAILDIR_UNIQUE.fetch_add(1 << 32, Ordering::Relaxed),
        }
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
        loop {
            toolkit::poll_retrying_eintr(&mut self.poll, &mut events, Some(SWEEP_INTERVAL))?;
            let now = Instant::now();
            if self.shared.stop.load(Ordering::SeqCst) {
                self.shutdown(now);
                return Ok(());
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(now)?,
                    WAKER => {}
                    Token(t) => {
                        if let Some(key) = t.checked_sub(FIRST_CONN) {
                            self.drive(key, now);
                        }
                    }
                }
            }
            if now >= next_sweep {
                next_sweep = now + SWEEP_INTERVAL;
                self.sweep_timeouts(now);
            }
        }
    }

    fn accept_all(&mut self, now: Instant) -> io::Result<()> {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Per-connection failures (aborted handshakes, fd exhaustion) must not end
                // the sink; the next readiness event retries.
                Err(_) => return Ok(()),
            };
            let _ = stream.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if self
                .poll
                .registry()
                .register(&mut stream, Token(key + FIRST_CONN), Interest::READABLE)
                .is_err()
            {
                continue;
            }
            let stats_slot = {
                let mut stats = lock(&self.shared.stats);
                stats.connections += 1;
                stats.open_connections += 1;
                if stats.per_connection.len() < MAX_TRACKED_CONNECTIONS {
                    stats.per_connection.push(ConnectionStats {
                        peer,
                        accepted: 0,
                        refused: 0,
                        bytes: 0,
                        open: true,
                    });
                    Some(stats.per_connection.len() - 1)
                } else {
                    None
                }
            };
            entry.insert(Conn {
                stream,
                server: Server::new(self.params.clone(), now),
                inbuf: BytesMut::new(),
                reads: ReadSizer::default(),
                out: Vec::new(),
                out_pos: 0,
                writable_interest: false,
                eof: false,
                incoming: None,
                stats_slot,
                starttls_pending: false,
                tls: None,
            });
            // The greeting is queued: send it without waiting for a readiness event.
            self.drive(key, now);
        }
    }

    /// Reads what is there, feeds the core, answers, writes; closes when the session is over.
    fn drive(&mut self, key: usize, now: Instant) {
        let mut broken = false;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.eof || conn.server.is_closing() {
                break;
            }
            // Backpressure: a client that pipelines without reading its replies is not read
            // further until they drain.
            let ciphertext = conn.tls.as_ref().map_or(0, |t| t.pending());
            if conn.out.len() - conn.out_pos + ciphertext > MAX_PENDING_REPLIES {
                break;
            }
            let read = if conn.tls.is_some() {
                self.read_tls(key)
            } else {
                conn.reads
                    .read(&mut conn.stream, &mut conn.inbuf, MAX_INBUF)
            };
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            match read {
                Ok(ReadStatus::Data(n)) => {
                    let before = conn.inbuf.len();
                    self.pump(key, now);
                    let Some(conn) = self.conns.get_mut(key) else {
                        return;
                    };
                    if n == 0 && conn.inbuf.len() == before {
                        // Buffer full and nothing consumed: a stuck core; give up on it.
                        broken = true;
                        break;
                    }
                    if flush(conn).is_err() {
                        broken = true;
                        break;
                    }
                }
                Ok(ReadStatus::WouldBlock) => break,
                Ok(ReadStatus::Eof) => {
                    conn.eof = true;
                    conn.server.handle_eof();
                    self.pump(key, now);
                    break;
                }
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        // Answers given outside a read (greeting, timeouts) still need pumping out.
        self.pump(key, now);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if broken || flush(conn).is_err() {
            self.close(key);
            return;
        }
        let pending = conn.out_pos < conn.out.len()
            || conn
                .tls
                .as_ref()
                .is_some_and(|t| t.pending() > 0 || t.pipe.wants_write());
        if (conn.eof || conn.server.is_closing()) && !pending {
            self.close(key);
            return;
        }
        if pending != conn.writable_interest {
            let interest = if pending {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(key + FIRST_CONN), interest)
                .is_err()
            {
                self.close(key);
                return;
            }
            conn.writable_interest = pending;
        }
    }

    /// Feeds buffered input to the core and answers its questions until neither moves.
    fn pump(&mut self, key: usize, now: Instant) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let before = conn.inbuf.len();
            if !conn.server.is_waiting() && !conn.server.is_closing() {
                conn.server.handle_input(now, &mut conn.inbuf);
            }
            let mut moved = conn.inbuf.len() != before;
            while let Some(ev) = self.conns.get_mut(key).and_then(|c| c.server.poll_event()) {
                moved = true;
                self.handle_event(key, ev);
            }
            // Draining replies each round lets the core go past its reply-backlog bound.
            if let Some(conn) = self.conns.get_mut(key) {
                if conn.out_pos == conn.out.len() {
                    conn.out.clear();
                    conn.out_pos = 0;
                }
                conn.server.poll_output(&mut conn.out);
            }
            if !moved {
                break;
            }
        }
        self.start_tls(key, now);
    }

    /// After the core's `220` to STARTTLS is queued: that reply goes out in plain text, then
    /// everything on the socket is TLS.
    fn start_tls(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !std::mem::take(&mut conn.starttls_pending) {
            return;
        }
        let pipe = self
            .opts
            .tls
            .clone()
            .and_then(|config| TlsPipe::new_server(config).ok());
        let Some(pipe) = pipe else {
            conn.eof = true;
            return;
        };
        let first = conn.out.split_off(conn.out_pos);
        conn.out.clear();
        conn.out_pos = 0;
        conn.tls = Some(Box::new(SinkTls {
            pipe,
            cipher_in: BytesMut::new(),
            reads: ReadSizer::default(),
            cipher_out: first,
            cipher_pos: 0,
            started: false,
            deadline: now + TLS_HANDSHAKE_TIMEOUT,
        }));
    }

    /// One read through TLS: ciphertext from the socket into the pipe, the handshake's end
    /// to the core, plaintext into `inbuf`. Reports `Data(n)` when anything moved (so the
    /// caller pumps and comes back), `WouldBlock` only when nothing did.
    fn read_tls(&mut self, key: usize) -> io::Result<ReadStatus> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(ReadStatus::WouldBlock);
        };
        let Some(t) = conn.tls.as_mut() else {
            return Ok(ReadStatus::WouldBlock);
        };
        let status = t
            .reads
            .read(&mut conn.stream, &mut t.cipher_in, MAX_CIPHERTEXT_IN)?;
        let used = match t.pipe.read_tls(&t.cipher_in) {
            Ok(used) => used,
            Err(e) => {
                // Send the alert, then give up on the connection.
                t.pipe.write_tls(&mut t.cipher_out);
                let _ = flush(conn);
                lock(&self.shared.stats).tls_failures += 1;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
            }
        };
        let _ = t.cipher_in.split_to(used);
        let mut moved = used;
        if !t.started && !t.pipe.is_handshaking() {
            t.started = true;
            conn.server.tls_started();
            let mut stats = lock(&self.shared.stats);
            stats.tls_handshakes += 1;
            stats.tls_client_certs += u64::from(t.pipe.peer_has_certificate());
            moved += 1;
        }
        if t.started {
            let room = MAX_INBUF.saturating_sub(conn.inbuf.len());
            moved += t.pipe.read_plaintext(&mut conn.inbuf, room);
        }
        Ok(match status {
            ReadStatus::Data(n) => ReadStatus::Data(n + moved),
            _ if moved > 0 => ReadStatus::Data(moved),
            ReadStatus::Eof if !t.started => {
                lock(&self.shared.stats).tls_failures += 1;
                ReadStatus::Eof
            }
            _ if t.pipe.peer_closed() => ReadStatus::Eof,
            other => other,
        })
    }

    fn handle_event(&mut self, key: usize, ev: Event) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match ev {
            Event::Helo { .. } => {}
            Event::Mail { from, .. } => {
                conn.incoming = Some(Incoming {
                    from: from.to_string(),
                    rcpts: Vec::new(),
                    started: false,
                    bdat: false,
                    bytes: 0,
                    data: None,
                    file: None,
                    file_error: false,
                });
                conn.server.answer(Reply::mail_ok());
            }
            Event::Rcpt { to, .. } => {
                if let Some(inc) = conn.incoming.as_mut() {
                    inc.rcpts.push(to.to_string());
                }
                conn.server.answer(Reply::rcpt_ok());
            }
            Event::DataStart { bdat } => {
                let keep = self.opts.keep_messages && self.kept_bytes < KEEP_MESSAGES_MAX_BYTES;
                let file = match &self.opts.maildir {
                    Some(dir) => {
                        self.maildir_seq += 1;
                        let name = maildir_name(self.maildir_seq);
                        File::create(dir.join("tmp").join(&name))
                            .ok()
                            .map(|f| (f, name))
                    }
                    None => None,
                };
                let file_error = self.opts.maildir.is_some() && file.is_none();
                let inc = conn.incoming.get_or_insert_with(|| Incoming {
                    from: String::new(),
                    rcpts: Vec::new(),
                    started: false,
                    bdat,
                    bytes: 0,
                    data: None,
                    file: None,
                    file_error: false,
                });
                inc.started = true;
                inc.bdat = bdat;
                inc.data = keep.then(Vec::new);
                inc.file = file;
                inc.file_error = file_error;
                if !bdat {
                    conn.server.answer(Reply::start_data());
                }
            }
            Event::Data(piece) => {
                if let Some(inc) = conn.incoming.as_mut() {
                    inc.bytes += piece.len() as u64;
                    if let Some(data) = inc.data.as_mut() {
                        data.extend_from_slice(&piece);
                    }
                    if let Some((file, _)) = inc.file.as_mut() {
                        if file.write_all(&piece).is_err() {
                            inc.file_error = true;
                        }
                    }
                }
            }
            Event::DataEnd => {
                let inc = conn.incoming.take();
                let reply = self.finish_message(key, inc);
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.server.answer(reply);
                }
            }
            Event::Abort => {
                if let Some(inc) = conn.incoming.take() {
                    if inc.started {
                        lock(&self.shared.stats).aborted += 1;
                    }
                    self.discard_file(inc.file);
                }
            }
            // Offered only with a TLS configuration (`start_tls` closes otherwise).
            Event::StartTls => conn.starttls_pending = true,
            Event::Close => {}
        }
    }

    /// Decides, stores and counts one complete message; returns its final reply.
    fn finish_message(&mut self, key: usize, inc: Option<Incoming>) -> Reply {
        let Some(mut inc) = inc else {
            return reply_for(&SessionError::Local("no transaction")).0;
        };
        let verdict = self.injector.next();
        let mut maildir_failed = inc.file_error;
        if verdict == Verdict::Accept && !maildir_failed {
            if let (Some(dir), Some((file, name))) = (&self.opts.maildir, inc.file.take()) {
                maildir_failed = commit_maildir(dir, file, &name).is_err();
            }
        }
        self.discard_file(inc.file.take());
        let slot = self.conns.get(key).and_then(|c| c.stats_slot);
        let tls = self
            .conns
            .get(key)
            .is_some_and(|c| c.tls.as_ref().is_some_and(|t| t.started));
        let mut stats = lock(&self.shared.stats);
        let (reply, accepted) = if maildir_failed {
            stats.maildir_errors += 1;
            stats.tempfailed += 1;
            (
                reply_for(&SessionError::Local("maildir write failed")).0,
                false,
            )
        } else {
            match verdict {
                Verdict::Accept => {
                    stats.accepted += 1;
                    stats.bytes_accepted += inc.bytes;
                    (Reply::message_ok(), true)
                }
                Verdict::Tempfail => {
                    stats.tempfailed += 1;
                    (reply_for(&SessionError::Local("injected failure")).0, false)
                }
                Verdict::Reject => {
                    stats.rejected += 1;
                    let err = SessionError::RejectedByRule("Injected rejection".to_string());
                    (reply_for(&err).0, false)
                }
            }
        };
        if let Some(c) = slot.and_then(|i| stats.per_connection.get_mut(i)) {
            if accepted {
                c.accepted += 1;
                c.bytes += inc.bytes;
            } else {
                c.refused += 1;
            }
        }
        if accepted {
            match inc.data {
                Some(data) => {
                    drop(stats);
                    self.kept_bytes += data.len();
                    lock(&self.shared.messages).push(ReceivedMessage {
                        from: inc.from,
                        rcpts: inc.rcpts,
                        data,
                        bdat: inc.bdat,
                        tls,
                    });
                }
                None if self.opts.keep_messages => stats.messages_not_kept += 1,
                None => {}
            }
        }
        reply
    }

    fn discard_file(&self, file: Option<(File, String)>) {
        if let (Some(dir), Some((file, name))) = (&self.opts.maildir, file) {
            drop(file);
            let _ = fs::remove_file(dir.join("tmp").join(name));
        }
    }

    fn sweep_timeouts(&mut self, now: Instant) {
        let slow_tls: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.tls
                    .as_ref()
                    .is_some_and(|t| !t.started && t.deadline <= now)
            })
            .map(|(k, _)| k)
            .collect();
        for key in slow_tls {
            lock(&self.shared.stats).tls_failures += 1;
            self.close(key);
        }
        let due: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.server.next_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k)
            .collect();
        for key in due {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.server.handle_timeout(now);
            }
            self.drive(key, now);
        }
    }

    fn shutdown(&mut self, now: Instant) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.server.refuse_session(SessionError::ShuttingDown);
            }
            self.pump(key, now);
            if let Some(conn) = self.conns.get_mut(key) {
                let _ = flush(conn);
            }
            self.close(key);
        }
    }

    /// The one place a connection ends.
    fn close(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        if let Some(t) = conn.tls.as_mut().filter(|t| t.started) {
            t.pipe.send_close_notify();
            t.pipe.write_tls(&mut t.cipher_out);
            let _ = flush(&mut conn);
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if let Some(inc) = conn.incoming.take() {
            if inc.started {
                lock(&self.shared.stats).aborted += 1;
            }
            self.discard_file(inc.file);
        }
        let mut stats = lock(&self.shared.stats);
        stats.open_connections = stats.open_connections.saturating_sub(1);
        if let Some(c) = conn
            .stats_slot
            .and_then(|i| stats.per_connection.get_mut(i))
        {
            c.open = false;
        }
    }
}

/// Writes pending replies (through TLS when it is on); `Ok` also when the socket would block.
fn flush(conn: &mut Conn) -> io::Result<()> {
    if let Some(t) = conn.tls.as_mut() {
        // Encrypt a bounded amount, write it, repeat until the socket would block or all is
        // out (stopping earlier would wait for a writable edge that never comes).
        loop {
            let mut moved = 0;
            while conn.out_pos < conn.out.len() && t.pending() < MAX_PENDING_REPLIES {
                let n = t.pipe.write_plaintext(&conn.out[conn.out_pos..]);
                if n == 0 {
                    break;
                }
                conn.out_pos += n;
                moved += t.pipe.write_tls(&mut t.cipher_out);
            }
            moved += t.pipe.write_tls(&mut t.cipher_out);
            if conn.out_pos == conn.out.len() {
                conn.out.clear();
                conn.out_pos = 0;
            }
            while t.cipher_pos < t.cipher_out.len() {
                match conn.stream.write(&t.cipher_out[t.cipher_pos..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => t.cipher_pos += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            t.cipher_out.clear();
            t.cipher_pos = 0;
            // All out, or the pipe takes no more (it failed or is closing).
            if (conn.out.is_empty() && !t.pipe.wants_write()) || moved == 0 {
                return Ok(());
            }
        }
    }
    while conn.out_pos < conn.out.len() {
        match conn.stream.write(&conn.out[conn.out_pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    conn.out.clear();
    conn.out_pos = 0;
    Ok(())
}

/// A maildir file name: `time.M<micros>P<pid>Q<seq>.conbool-sink` (unique per process).
fn maildir_name(seq: u64) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.conbool-sink",
        t.as_secs(),
        t.subsec_micros(),
        std::process::id(),
        seq
    )
}

fn commit_maildir(dir: &Path, mut file: File, name: &str) -> io::Result<()> {
    file.flush()?;
    drop(file);
    fs::rename(dir.join("tmp").join(name), dir.join("new").join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        sink: SinkArgs,
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "sink",
            "--listen",
            "127.0.0.1:2600",
            "--tempfail",
            "5",
            "--reject",
            "2.5%",
            "--maildir",
            "/tmp/x",
            "--json",
        ])
        .expect("parses");
        assert_eq!(cli.sink.listen, "127.0.0.1:2600".parse().expect("addr"));
        assert_eq!(cli.sink.tempfail, 5.0);
        assert_eq!(cli.sink.reject, 2.5);
        assert!(cli.sink.json);
        let cli = Cli::try_parse_from(["sink"]).expect("defaults");
        assert_eq!(cli.sink.listen, "127.0.0.1:2526".parse().expect("addr"));
    }

    #[test]
    fn bad_flags_are_refused() {
        const ROWS: &[(&str, &[&str])] = &[
            ("pct_over_100", &["sink", "--tempfail", "101"]),
            ("pct_negative", &["sink", "--reject", "-1"]),
            ("pct_not_a_number", &["sink", "--reject", "lots"]),
            ("cert_without_key", &["sink", "--tls-cert", "c.pem"]),
            ("client_ca_without_cert", &["sink", "--client-ca", "ca.pem"]),
            (
                "require_without_client_ca",
                &[
                    "sink",
                    "--tls-cert",
                    "c.pem",
                    "--tls-key",
                    "k.pem",
                    "--require-client-cert",
                ],
            ),
        ];
        for (name, argv) in ROWS {
            assert!(Cli::try_parse_from(*argv).is_err(), "{name}");
        }
    }

    #[test]
    fn tls_flags_build_a_configuration_or_name_the_bad_file() {
        use crate::tls::testpki::{TempDir, World};
        let world = World::new();
        let dir = TempDir::new("sink_tls_flags");
        let cert = dir.write("chain.pem", world.server_chain_pem());
        let key = dir.write("key.pem", world.server.key_pem());
        let ca = dir.write("ca.pem", world.client_root.pem());
        let args = |extra: &[&str]| {
            let mut argv = vec!["sink"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).expect("parses").sink
        };
        let (c, k, a) = (
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            ca.to_str().unwrap(),
        );
        assert!(tls_from_args(&args(&[])).expect("plain").is_none());
        for extra in [
            vec!["--tls-cert", c, "--tls-key", k],
            vec!["--tls-cert", c, "--tls-key", k, "--client-ca", a],
            vec![
                "--tls-cert",
                c,
                "--tls-key",
                k,
                "--client-ca",
                a,
                "--require-client-cert",
            ],
        ] {
            assert!(
                tls_from_args(&args(&extra)).expect("tls").is_some(),
                "{extra:?}"
            );
        }
        let err = tls_from_args(&args(&["--tls-cert", k, "--tls-key", c])).expect_err("swapped");
        assert!(err.contains("key.pem"), "{err}");
    }

    #[test]
    fn pcts_must_sum_to_at_most_100() {
        assert!(validate_pcts(60.0, 40.0).is_ok());
        assert!(validate_pcts(60.0, 41.0).is_err());
    }

    #[test]
    fn injector_is_deterministic_and_near_its_rates() {
        let run = || {
            let mut inj = Injector::new(7, 10.0, 5.0);
            (0..20_000).map(|_| inj.next()).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run(), "same seed, same verdicts");
        let temp = a.iter().filter(|v| **v == Verdict::Tempfail).count();
        let rej = a.iter().filter(|v| **v == Verdict::Reject).count();
        assert!((1_600..2_400).contains(&temp), "tempfail {temp}");
        assert!((700..1_300).contains(&rej), "reject {rej}");
        let mut never = Injector::new(7, 0.0, 0.0);
        assert!((0..1000).all(|_| never.next() == Verdict::Accept));
        let mut always = Injector::new(7, 0.0, 100.0);
        assert!((0..1000).all(|_| always.next() == Verdict::Reject));
    }

    #[test]
    fn summary_formats() {
        let stats = SinkStats {
            connections: 4,
            accepted: 195,
            tempfailed: 5,
            bytes_accepted: 2_000_000,
            ..SinkStats::default()
        };
        let text = stats_text(&stats, Duration::from_secs(2));
        assert!(text.contains("195 accepted, 5 tempfailed"), "{text}");
        assert!(text.contains("98 msg/s"), "{text}");
        let json = stats_json(&stats, Duration::from_secs(2));
        assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
        assert!(json.contains("\"accepted\":195"), "{json}");
        assert!(json.contains("\"bytes_accepted\":2000000"), "{json}");
    }

    #[test]
    fn spawn_binds_an_ephemeral_port_and_stops() {
        let handle = Sink::spawn(SinkOptions::default()).expect("spawn");
        assert_ne!(handle.addr.port(), 0);
        let stats = handle.stop().expect("stop");
        assert_eq!(stats.connections, 0);
    }

    #[test]
    fn spawn_refuses_bad_percentages() {
        let opts = SinkOptions {
            tempfail_pct: 80.0,
            reject_pct: 30.0,
            ..SinkOptions::default()
        };
        assert!(Sink::spawn(opts).is_err());
    }

    /// Sends `script` in one write (fully pipelined), then reads until the sink closes.
    fn transcript(addr: SocketAddr, script: &[u8]) -> String {
        use std::io::Read;
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("failsafe timeout");
        c.write_all(script).expect("write");
        let mut got = Vec::new();
        c.read_to_end(&mut got).expect("read until close");
        String::from_utf8_lossy(&got).into_owned()
    }

    fn codes(replies: &str) -> Vec<&str> {
        replies
            .lines()
            .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
            .map(|l| &l[..3])
            .collect()
    }

    const DATA_SCRIPT: &[u8] = b"EHLO t.example\r\nMAIL FROM:<a@example.com>\r\n\
RCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n\
Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";

    const BDAT_SCRIPT: &[u8] = b"EHLO t.example\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.com>\r\n\
BDAT 5\r\nab\ncdBDAT 3 LAST\r\n.\r\nQUIT\r\n";

    #[test]
    fn pipelined_data_session_is_stored_unstuffed() {
        let sink = Sink::spawn(SinkOptions {
            keep_messages: true,
            ..SinkOptions::default()
        })
        .expect("spawn");
        let replies = transcript(sink.addr, DATA_SCRIPT);
        assert_eq!(
            codes(&replies),
            ["220", "250", "250", "250", "250", "354", "250", "221"],
            "{replies}"
        );
        assert!(replies.contains("CHUNKING"), "{replies}");
        let msgs = sink.take_messages();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].from, "a@example.com");
        assert_eq!(msgs[0].rcpts, ["b@example.com", "c@example.com"]);
        assert_eq!(msgs[0].data, b"Subject: x\r\n\r\n.leading dot\r\n");
        assert!(!msgs[0].bdat);
        let stats = sink.stop().expect("stop");
        assert_eq!(stats.accepted, 1);
        assert_eq!(stats.bytes_accepted, 28);
        assert_eq!(stats.per_connection.len(), 1);
        assert!(!stats.per_connection[0].open);
    }

    #[test]
    fn bdat_session_keeps_bare_lf_and_null_sender() {
        let sink = Sink::spawn(SinkOptions {
            keep_messages: true,
            ..SinkOptions::default()
        })
        .expect("spawn");
        let replies = transcript(sink.addr, BDAT_SCRIPT);
        assert_eq!(
            codes(&replies),
            ["220", "250", "250", "250", "250", "250", "221"],
            "{replies}"
        );
        let msgs = sink.take_messages();
        assert_eq!(msgs.len(), 1, "{replies}");
        assert_eq!(msgs[0].from, "");
        assert_eq!(msgs[0].data, b"ab\ncd.\r\n");
        assert!(msgs[0].bdat);
    }

    #[test]
    fn injected_failures_answer_end_of_data() {
        const ROWS: &[(&str, f64, f64, &str)] = &[
            ("tempfail", 100.0, 0.0, "451"),
            ("reject", 0.0, 100.0, "550"),
        ];
        for (name, tempfail_pct, reject_pct, code) in ROWS {
            let sink = Sink::spawn(SinkOptions {
                tempfail_pct: *tempfail_pct,
                reject_pct: *reject_pct,
                keep_messages: true,
                ..SinkOptions::default()
            })
            .expect("spawn");
            let replies = transcript(sink.addr, DATA_SCRIPT);
            assert_eq!(codes(&replies)[6], *code, "{name}: {replies}");
            assert!(sink.take_messages().is_empty(), "{name}");
            let stats = sink.stop().expect("stop");
            assert_eq!(stats.accepted, 0, "{name}");
            assert_eq!(stats.tempfailed + stats.rejected, 1, "{name}");
            assert_eq!(stats.per_connection[0].refused, 1, "{name}");
        }
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("conbool-sink-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn files_in(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn maildir_gets_accepted_messages_only() {
        let dir = scratch_dir("maildir");
        let sink = Sink::spawn(SinkOptions {
            maildir: Some(dir.clone()),
            ..SinkOptions::default()
        })
        .expect("spawn");
        let replies = transcript(sink.addr, DATA_SCRIPT);
        assert_eq!(codes(&replies)[6], "250", "{replies}");
        sink.stop().expect("stop");
        let new = files_in(&dir.join("new"));
        assert_eq!(new.len(), 1);
        assert_eq!(
            fs::read(&new[0]).expect("read"),
            b"Subject: x\r\n\r\n.leading dot\r\n"
        );
        assert!(files_in(&dir.join("tmp")).is_empty());

        let refusing = Sink::spawn(SinkOptions {
            maildir: Some(dir.clone()),
            tempfail_pct: 100.0,
            ..SinkOptions::default()
        })
        .expect("spawn");
        transcript(refusing.addr, DATA_SCRIPT);
        refusing.stop().expect("stop");
        assert_eq!(
            files_in(&dir.join("new")).len(),
            1,
            "refused message stored"
        );
        assert!(
            files_in(&dir.join("tmp")).is_empty(),
            "temp file left behind"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn stop_closes_open_connections_with_421() {
        use std::io::Read;
        let sink = Sink::spawn(SinkOptions::default()).expect("spawn");
        let mut c = std::net::TcpStream::connect(sink.addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("failsafe timeout");
        let mut greeting = [0u8; 4];
        c.read_exact(&mut greeting).expect("greeting");
        assert_eq!(&greeting, b"220 ");
        let stats = sink.stop().expect("stop");
        assert_eq!(stats.open_connections, 0);
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        let rest = String::from_utf8_lossy(&rest);
        assert!(rest.contains("\r\n421 4.3.2 "), "{rest:?}");
    }

    #[test]
    fn a_client_that_never_reads_is_not_buffered_without_bound() {
        use std::io::Read;
        let sink = Sink::spawn(SinkOptions::default()).expect("spawn");
        let mut c = std::net::TcpStream::connect(sink.addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("failsafe timeout");
        c.set_write_timeout(Some(Duration::from_secs(10)))
            .expect("failsafe timeout");
        let mut script = b"EHLO t.example\r\n".to_vec();
        for _ in 0..200_000 {
            script.extend_from_slice(b"NOOP\r\n");
        }
        script.extend_from_slice(b"QUIT\r\n");
        // The write may block once the sink stops reading: drain replies on another thread.
        let mut reader = c.try_clone().expect("clone");
        let counter = thread::spawn(move || {
            let mut got = Vec::new();
            let _ = reader.read_to_end(&mut got);
            got.windows(4).filter(|w| w == b"250 ").count()
        });
        c.write_all(&script).expect("write");
        let ok = counter.join().expect("reader");
        assert_eq!(ok, 200_001, "every NOOP (and EHLO) answered");
        drop(sink);
    }
}
