//! `conbool replay`: the corpus replayer and load generator. It opens `--sessions`
//! connections, sends corpus messages over them (each connection carries many messages) with the
//! sans-IO [`Client`] core, and reports throughput, reply codes and latency percentiles.
//!
//! Closed loop by default (each session sends its next message as soon as the last is
//! answered). With `--rate R` it is open loop: message `k` is *due* at `start + k / R`, and its
//! latency counts from that intended time, not from when a session got round to it, so a stall
//! in the server shows up in the tail instead of hiding it (coordinated omission; STYLE.md §3
//! habit 15). The schedule's resolution is that of `epoll` (1 ms), and a message the
//! generator itself sends late counts that lateness too, so open-loop numbers err on the
//! pessimistic side.
//!
//! With `--starttls` every session upgrades before its first message (verifying the server
//! against `--ca-file` when given, else encrypting without verification), optionally with a
//! client certificate. One TLS client configuration serves every session, so reconnects
//! resume.
//!
//! One mio loop on one thread drives every connection; it shares no code with `reactor` on
//! purpose.

pub mod corpus;
pub mod stats;

use std::collections::VecDeque;
use std::io::{self, IsTerminal};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::cli::toolkit::{self, ReadSizer, ReadStatus};
use crate::config::NextHopTls;
use crate::smtp::client::{ClientEvent, ClientParams, StartTlsPolicy};
use crate::smtp::command::{Body, ForwardPath, MailParams, RcptParams, ReversePath};
use crate::smtp::outbound::Outbound;
use crate::smtp::reply::Reply;
use crate::tls::{self, ClientConfig, TlsPipe};

pub use crate::smtp::client::Client;
pub use corpus::{Corpus, CorpusMessage};
pub use stats::{Latencies, Latency, LatencySummary, ReplayReport};

/// Flags of `conbool replay` (DESIGN.md §5).
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Where to send: `host:port`.
    #[arg(long, value_name = "ADDR")]
    pub to: String,
    /// Messages to send: a directory (every *.eml and *.msg below it) or one file. Default:
    /// ./corpus, else the corpus bundled with the source.
    #[arg(long, value_name = "DIR")]
    pub corpus: Option<PathBuf>,
    /// Concurrent SMTP sessions.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub sessions: usize,
    /// Messages to send in all, over all sessions (corpus messages repeat as needed). Default:
    /// each corpus message once.
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub messages: Option<u64>,
    /// Send for this many seconds instead of a message count.
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Open loop: start R messages per second in all, measuring latency from each intended
    /// start.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Use BDAT when the server offers CHUNKING.
    #[arg(long)]
    pub bdat: bool,
    /// Upgrade each session with STARTTLS.
    #[arg(long)]
    pub starttls: bool,
    /// Verify the server's certificate against these CAs (without it, TLS encrypts but does
    /// not verify).
    #[arg(long, value_name = "F", requires = "starttls")]
    pub ca_file: Option<PathBuf>,
    /// The name to verify the certificate against and send as SNI. Default: the host part of
    /// `--to`.
    #[arg(long, value_name = "NAME", requires = "starttls")]
    pub tls_name: Option<String>,
    /// Client certificate chain (PEM) to present.
    #[arg(long, value_name = "F", requires_all = ["starttls", "client_key"])]
    pub client_cert: Option<PathBuf>,
    /// Private key of `--client-cert`.
    #[arg(long, value_name = "F", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Envelope sender for every message (`<>` for the null sender) instead of each message's
    /// Return-Path or From.
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,
    /// Envelope recipient for every message instead of each message's To and Cc (repeatable).
    #[arg(long = "to-rcpt", value_name = "ADDR")]
    pub to_rcpt: Vec<String>,
    /// No progress line on stderr (it is also off when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
    /// Our EHLO name.
    #[arg(long, value_name = "NAME", default_value = "replay.conbool.invalid")]
    pub helo: String,
    /// Seconds to wait for each reply before giving up on a session.
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub timeout: u64,
}

/// How much to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// Each corpus message once.
    CorpusOnce,
    /// This many messages in all (the corpus repeats as needed).
    Messages(u64),
    /// Start messages for this long.
    Duration(Duration),
}

/// What a replay run does.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Where to send.
    pub to: SocketAddr,
    /// The corpus directory or file ([`run_replay`] loads it).
    pub corpus: PathBuf,
    /// Concurrent sessions.
    pub sessions: usize,
    /// How much to send.
    pub limit: Limit,
    /// Open-loop rate in messages per second (all sessions together).
    pub rate: Option<f64>,
    /// Use BDAT when offered.
    pub bdat: bool,
    /// Upgrade with STARTTLS.
    pub starttls: bool,
    /// Verify the server against this CA file (none: encrypt without verifying).
    pub ca_file: Option<PathBuf>,
    /// Name for SNI and verification (default: the IP address of `to`).
    pub tls_name: Option<String>,
    /// Client certificate chain and key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Envelope sender override.
    pub mail_from: Option<ReversePath>,
    /// Envelope recipients override (empty: from each message's header).
    pub rcpt_to: Vec<ForwardPath>,
    /// Our EHLO name.
    pub helo: String,
    /// Timeout for each reply.
    pub reply_timeout: Duration,
    /// A progress line on stderr every second.
    pub progress: bool,
}

impl ReplayOptions {
    /// Defaults: the bundled corpus once over 4 sessions, DATA, closed loop, no progress line.
    pub fn new(to: SocketAddr) -> ReplayOptions {
        ReplayOptions {
            to,
            corpus: corpus::default_corpus_dir(),
            sessions: 4,
            limit: Limit::CorpusOnce,
            rate: None,
            bdat: false,
            starttls: false,
            ca_file: None,
            tls_name: None,
            client_cert: None,
            mail_from: None,
            rcpt_to: Vec::new(),
            helo: "replay.conbool.invalid".to_string(),
            reply_timeout: Duration::from_secs(60),
            progress: false,
        }
    }
}

/// Most sessions one run opens.
pub const MAX_SESSIONS: usize = 10_000;

/// Failed connection attempts in a row after which a session gives up.
const MAX_CONNECT_ATTEMPTS: u32 = 3;

/// Unconsumed reply bytes held per session.
const MAX_REPLY_BUF: usize = 256 * 1024;

/// How often reply timeouts are checked, and the longest poll wait.
const TICK: Duration = Duration::from_millis(100);

/// How long a session waits for the server to close after QUIT.
const QUIT_GRACE: Duration = Duration::from_secs(1);

/// Ciphertext read and not yet taken by a session's TLS pipe.
const MAX_CIPHERTEXT_IN: usize = 64 * 1024;

/// Ciphertext waiting for the socket above which no more plaintext goes into the pipe.
const MAX_CIPHERTEXT_OUT: usize = 256 * 1024;

/// Loads `opts.corpus` and replays it.
pub fn run_replay(opts: &ReplayOptions) -> io::Result<ReplayReport> {
    let corpus = Corpus::load(&opts.corpus)?;
    run_replay_corpus(opts, &corpus)
}

/// Replays an already loaded corpus (`opts.corpus` is ignored).
pub fn run_replay_corpus(opts: &ReplayOptions, corpus: &Corpus) -> io::Result<ReplayReport> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    if corpus.is_empty() {
        return Err(invalid("the corpus has no messages".to_string()));
    }
    if opts.sessions == 0 || opts.sessions > MAX_SESSIONS {
        return Err(invalid(format!(
            "sessions must be 1..={MAX_SESSIONS}, not {}",
            opts.sessions
        )));
    }
    if let Some(r) = opts.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(invalid(format!("rate must be above 0, not {r}")));
        }
    }
    let tls = if opts.starttls {
        Some(tls_setup(opts).map_err(invalid)?)
    } else {
        None
    };
    Runner::new(opts, corpus, tls)?.run()
}

/// The TLS client side every session shares, and the server name to use.
fn tls_setup(opts: &ReplayOptions) -> Result<(Arc<ClientConfig>, String), String> {
    let policy = match opts.ca_file {
        Some(_) => NextHopTls::Verify,
        None => NextHopTls::Require,
    };
    let identity = opts
        .client_cert
        .as_ref()
        .map(|(cert, key)| (cert.as_path(), key.as_path()));
    let config =
        tls::client_config(policy, opts.ca_file.as_deref(), identity).map_err(|e| e.to_string())?;
    let name = opts
        .tls_name
        .clone()
        .unwrap_or_else(|| opts.to.ip().to_string());
    // Checked once here rather than failing every session.
    TlsPipe::new_client(config.clone(), &name).map_err(|e| e.to_string())?;
    Ok((config, name))
}

/// `conbool replay`: prints the report on stdout; exit status 0 when every message got a final
/// answer (whatever its code), 1 when some were lost to connection failures, 2 on bad input.
pub fn main(args: ReplayArgs) -> ExitCode {
    match options_from_args(&args) {
        Ok(opts) => match run_replay(&opts) {
            Ok(report) => {
                if args.json {
                    println!("{}", report.to_json());
                } else {
                    print!("{}", report.to_text());
                }
                if report.failed == 0 && report.attempted > 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("conbool replay: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("conbool replay: {e}");
            ExitCode::from(2)
        }
    }
}

/// Turns command-line flags into options (resolving `--to`, parsing addresses).
pub fn options_from_args(args: &ReplayArgs) -> Result<ReplayOptions, String> {
    let to = args
        .to
        .to_socket_addrs()
        .map_err(|e| format!("--to {}: {e}", args.to))?
        .next()
        .ok_or_else(|| format!("--to {}: no address", args.to))?;
    let mut opts = ReplayOptions::new(to);
    if let Some(dir) = &args.corpus {
        opts.corpus = dir.clone();
    }
    opts.sessions = args.sessions;
    opts.limit = match (args.messages, args.duration) {
        (Some(n), _) => Limit::Messages(n),
        (None, Some(s)) if s.is_finite() && s > 0.0 => Limit::Duration(Duration::from_secs_f64(s)),
        (None, Some(s)) => return Err(format!("--duration {s}: must be above 0")),
        (None, None) => Limit::CorpusOnce,
    };
    opts.rate = args.rate;
    opts.bdat = args.bdat;
    opts.starttls = args.starttls;
    opts.ca_file = args.ca_file.clone();
    opts.tls_name = args
        .tls_name
        .clone()
        .or_else(|| Some(tls::next_hop_server_name(&args.to).to_string()));
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        opts.client_cert = Some((cert.clone(), key.clone()));
    }
    if let Some(f) = &args.from {
        opts.mail_from = Some(
            corpus::parse_reverse_path(f).ok_or_else(|| format!("--from {f}: not an address"))?,
        );
    }
    for r in &args.to_rcpt {
        opts.rcpt_to.push(
            corpus::parse_forward_path(r)
                .ok_or_else(|| format!("--to-rcpt {r}: not an address"))?,
        );
    }
    opts.helo = args.helo.clone();
    opts.reply_timeout = Duration::from_secs(args.timeout.max(1));
    opts.progress = !args.quiet && io::stderr().is_terminal();
    Ok(opts)
}

// ---------------------------------------------------------------- schedule

/// Which message goes next and when: the pure part of the loop.
#[derive(Debug)]
struct Schedule {
    start: Instant,
    next_seq: u64,
    max: Option<u64>,
    until: Option<Instant>,
    rate: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Next {
    /// Send message `seq`, whose latency counts from `intended`.
    Send { seq: u64, intended: Instant },
    /// Nothing is due before this time.
    Wait(Instant),
    /// No more messages.
    Exhausted,
}

impl Schedule {
    fn new(start: Instant, limit: Limit, corpus_len: usize, rate: Option<f64>) -> Schedule {
        let (max, until) = match limit {
            Limit::CorpusOnce => (Some(corpus_len as u64), None),
            Limit::Messages(n) => (Some(n), None),
            Limit::Duration(d) => (None, Some(start + d)),
        };
        Schedule {
            start,
            next_seq: 0,
            max,
            until,
            rate,
        }
    }

    /// Moves the schedule (and a duration's end) to start at `now`, as long as nothing was
    /// sent yet: connection setup does not count against the first messages.
    fn restart(&mut self, now: Instant) {
        if self.next_seq == 0 {
            if let Some(until) = self.until.as_mut() {
                *until = now + until.saturating_duration_since(self.start);
            }
            self.start = now;
        }
    }

    fn intended(&self, seq: u64) -> Option<Instant> {
        self.rate
            .map(|r| self.start + Duration::from_secs_f64(seq as f64 / r))
    }

    fn peek(&self, now: Instant) -> Next {
        if self.max.is_some_and(|m| self.next_seq >= m) {
            return Next::Exhausted;
        }
        let intended = self.intended(self.next_seq).unwrap_or(now);
        if self.until.is_some_and(|u| intended >= u || now >= u) {
            return Next::Exhausted;
        }
        if intended > now {
            return Next::Wait(intended);
        }
        Next::Send {
            seq: self.next_seq,
            intended,
        }
    }

    fn take(&mut self, now: Instant) -> Next {
        let next = self.peek(now);
        if let Next::Send { .. } = next {
            self.next_seq += 1;
        }
        next
    }
}

// ---------------------------------------------------------------- the loop

#[derive(Debug)]
enum Phase {
    /// TCP connect in progress.
    Connecting,
    /// Connected; greeting and EHLO in progress.
    Greeting,
    /// Ready for a transaction.
    Idle,
    /// A transaction is running.
    Busy(Txn),
    /// QUIT sent; waiting for the server to close.
    Quitting { deadline: Instant },
    /// Finished (closed, or gave up).
    Done,
}

#[derive(Debug)]
struct Txn {
    msg: usize,
    intended: Instant,
    mail_at: Instant,
    mail_ok: bool,
    rcpts_sent: usize,
    rcpt_replies: usize,
    rcpt_ok: usize,
    /// The first envelope refusal (stage name and reply): it decides a message whose
    /// envelope failed as a whole.
    refusal: Option<(&'static str, Reply)>,
    /// Content and end were handed to the client.
    end_at: Option<Instant>,
    /// The last content byte was handed to the kernel.
    flushed_at: Option<Instant>,
    /// Refused before the content; RSET sent, `ResetDone` awaited.
    resetting: bool,
}

impl Txn {
    /// MAIL failed or no RCPT succeeded (known once every envelope reply is in).
    fn envelope_failed(&self) -> bool {
        !self.mail_ok || (self.rcpt_replies == self.rcpts_sent && self.rcpt_ok == 0)
    }
}

/// A session's TLS side: ciphertext in and out around the pipe.
#[derive(Debug)]
struct SessionTls {
    pipe: TlsPipe,
    cipher_in: BytesMut,
    reads: ReadSizer,
    cipher_out: Vec<u8>,
    cipher_pos: usize,
    started: bool,
}

impl SessionTls {
    fn pending(&self) -> usize {
        self.cipher_out.len() - self.cipher_pos
    }
}

#[derive(Debug)]
struct Session {
    stream: Option<TcpStream>,
    client: Option<Client>,
    tls: Option<Box<SessionTls>>,
    inbuf: BytesMut,
    reads: ReadSizer,
    out: Outbound,
    phase: Phase,
    connect_started: Instant,
    attempts_in_row: u32,
    eof: bool,
    idle_queued: bool,
}

struct Runner<'a> {
    poll: Poll,
    opts: &'a ReplayOptions,
    corpus: &'a Corpus,
    sessions: Vec<Session>,
    idle: VecDeque<usize>,
    schedule: Schedule,
    report: ReplayReport,
    client_params: ClientParams,
    /// The TLS client configuration and server name, with `--starttls`.
    tls: Option<(Arc<ClientConfig>, String)>,
    /// When the first session became ready: the schedule and the elapsed time count from here.
    start: Instant,
    last_answer: Option<Instant>,
}

impl<'a> Runner<'a> {
    fn new(
        opts: &'a ReplayOptions,
        corpus: &'a Corpus,
        tls: Option<(Arc<ClientConfig>, String)>,
    ) -> io::Result<Runner<'a>> {
        let start = Instant::now();
        let sessions = (0..opts.sessions)
            .map(|_| Session {
                stream: None,
                client: None,
                tls: None,
                inbuf: BytesMut::new(),
                reads: ReadSizer::default(),
                out: Outbound::new(),
                phase: Phase::Done,
                connect_started: start,
                attempts_in_row: 0,
                eof: false,
                idle_queued: false,
            })
            .collect();
        Ok(Runner {
            poll: Poll::new()?,
            opts,
            corpus,
            sessions,
            idle: VecDeque::new(),
            schedule: Schedule::new(start, opts.limit, corpus.len(), opts.rate),
            report: ReplayReport {
                target: opts.to.to_string(),
                sessions: opts.sessions,
                bdat: opts.bdat,
                rate: opts.rate,
                starttls: opts.starttls,
                ..ReplayReport::default()
            },
            tls,
            client_params: ClientParams {
                helo_name: opts.helo.clone(),
                starttls: if opts.starttls {
                    StartTlsPolicy::Required
                } else {
                    StartTlsPolicy::Never
                },
                reply_timeout: opts.reply_timeout,
                use_bdat: opts.bdat,
            },
            start,
            last_answer: None,
        })
    }

    fn run(mut self) -> io::Result<ReplayReport> {
        let mut events = Events::with_capacity(1024);
        for i in 0..self.sessions.len() {
            self.connect(i, Instant::now());
        }
        let mut next_tick = self.start + TICK;
        let mut next_progress = self.start + Duration::from_secs(1);
        while self
            .sessions
            .iter()
            .any(|s| !matches!(s.phase, Phase::Done))
        {
            let now = Instant::now();
            let mut wait = next_tick.saturating_duration_since(now);
            if !self.idle.is_empty() {
                if let Next::Wait(at) = self.schedule.peek(now) {
                    wait = wait.min(at.saturating_duration_since(now));
                }
            }
            toolkit::poll_retrying_eintr(&mut self.poll, &mut events, Some(wait))?;
            let now = Instant::now();
            for ev in events.iter() {
                let i = ev.token().0;
                if i < self.sessions.len() {
                    self.on_ready(i, now);
                }
            }
            self.dispatch_idle(now);
            if now >= next_tick {
                next_tick = now + TICK;
                self.sweep(now);
            }
            if self.opts.progress && now >= next_progress {
                next_progress += Duration::from_secs(1);
                self.print_progress(now);
            }
        }
        let end = self.last_answer.unwrap_or_else(Instant::now);
        self.report.elapsed = end.saturating_duration_since(self.start);
        Ok(self.report)
    }

    fn connect(&mut self, i: usize, now: Instant) {
        let s = &mut self.sessions[i];
        s.inbuf.clear();
        s.out.clear();
        s.tls = None;
        s.eof = false;
        s.connect_started = now;
        s.attempts_in_row += 1;
        s.client = Some(Client::new(self.client_params.clone(), now));
        match TcpStream::connect(self.opts.to) {
            Ok(mut stream) => {
                let registered = self.poll.registry().register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                );
                match registered {
                    Ok(()) => {
                        s.stream = Some(stream);
                        s.phase = Phase::Connecting;
                    }
                    Err(e) => self.fail(i, format!("register: {e}"), now),
                }
            }
            Err(e) => {
                s.phase = Phase::Connecting;
                self.fail(i, e.to_string(), now);
            }
        }
    }

    fn on_ready(&mut self, i: usize, now: Instant) {
        if let Phase::Connecting = self.sessions[i].phase {
            let Some(stream) = self.sessions[i].stream.as_ref() else {
                return;
            };
            match stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.fail(i, e.to_string(), now),
            }
            match stream.peer_addr() {
                Ok(_) => {
                    let _ = stream.set_nodelay(true);
                    self.sessions[i].phase = Phase::Greeting;
                }
                // Not connected yet: a spurious wakeup.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(i, e.to_string(), now),
            }
        }
        self.service(i, now);
    }

    /// Reads replies, reacts to the client core's events, starts messages, writes.
    fn service(&mut self, i: usize, now: Instant) {
        if matches!(self.sessions[i].phase, Phase::Connecting | Phase::Done) {
            return;
        }
        if let Err(why) = self.read_replies(i, now) {
            return self.fail(i, why, now);
        }
        loop {
            let mut moved = false;
            while let Some(ev) = self.sessions[i]
                .client
                .as_mut()
                .and_then(|c| c.poll_event())
            {
                moved = true;
                self.on_client_event(i, ev, now);
            }
            if matches!(self.sessions[i].phase, Phase::Idle) && self.try_start(i, now) {
                moved = true;
            }
            if !moved {
                break;
            }
        }
        if let Err(e) = self.write(i, now) {
            return self.fail(i, format!("write: {e}"), now);
        }
        let s = &self.sessions[i];
        if s.eof && matches!(s.phase, Phase::Quitting { .. }) {
            self.close(i);
        }
    }

    fn read_replies(&mut self, i: usize, now: Instant) -> Result<(), String> {
        let s = &mut self.sessions[i];
        let (Some(stream), Some(client)) = (s.stream.as_mut(), s.client.as_mut()) else {
            return Ok(());
        };
        if let Some(t) = s.tls.as_mut() {
            while !s.eof {
                let status = t
                    .reads
                    .read(stream, &mut t.cipher_in, MAX_CIPHERTEXT_IN)
                    .map_err(|e| format!("read: {e}"))?;
                let used = t.pipe.read_tls(&t.cipher_in).map_err(|e| {
                    // The alert goes out best-effort; the session is over either way.
                    t.pipe.write_tls(&mut t.cipher_out);
                    let _ = std::io::Write::write(stream, &t.cipher_out[t.cipher_pos..]);
                    format!("TLS: {e}")
                })?;
                let _ = t.cipher_in.split_to(used);
                let mut moved = used;
                if !t.started && !t.pipe.is_handshaking() {
                    t.started = true;
                    self.report.tls_handshakes += 1;
                    self.report.tls_resumed += u64::from(t.pipe.is_resumed());
                    if self.report.tls_cipher.is_none() {
                        self.report.tls_cipher = t.pipe.description();
                    }
                    client.tls_started();
                    moved += 1;
                }
                if t.started {
                    let room = MAX_REPLY_BUF.saturating_sub(s.inbuf.len());
                    moved += t.pipe.read_plaintext(&mut s.inbuf, room);
                    if !s.inbuf.is_empty() {
                        client.handle_input(now, &mut s.inbuf);
                    }
                }
                match status {
                    ReadStatus::Data(0) if moved == 0 => {
                        return Err("reply too long".to_string());
                    }
                    ReadStatus::Data(_) => {}
                    ReadStatus::WouldBlock if moved > 0 => {}
                    ReadStatus::WouldBlock => break,
                    ReadStatus::Eof => {
                        s.eof = true;
                        client.handle_eof();
                    }
                }
                if t.pipe.peer_closed() && t.pipe.plaintext_ready() == 0 {
                    s.eof = true;
                    client.handle_eof();
                }
            }
            return Ok(());
        }
        while !s.eof {
            match s.reads.read(stream, &mut s.inbuf, MAX_REPLY_BUF) {
                Ok(ReadStatus::Data(n)) => {
                    let before = s.inbuf.len();
                    client.handle_input(now, &mut s.inbuf);
                    if n == 0 && s.inbuf.len() == before {
                        return Err("reply too long".to_string());
                    }
                }
                Ok(ReadStatus::WouldBlock) => break,
                Ok(ReadStatus::Eof) => {
                    s.eof = true;
                    client.handle_input(now, &mut s.inbuf);
                    client.handle_eof();
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(())
    }

    fn write(&mut self, i: usize, now: Instant) -> io::Result<()> {
        let s = &mut self.sessions[i];
        let (Some(stream), Some(client)) = (s.stream.as_mut(), s.client.as_mut()) else {
            return Ok(());
        };
        client.poll_output(&mut s.out);
        let drained = match s.tls.as_mut() {
            None => toolkit::write_outbound(stream, &mut s.out)?,
            // Encrypt a bounded amount, write it, repeat until the socket would block (or
            // everything is out): stopping short of `WouldBlock` would wait for a writable
            // edge that never comes.
            Some(t) => loop {
                let mut moved = 0;
                while let Some(front) = s.out.front() {
                    if t.pending() >= MAX_CIPHERTEXT_OUT {
                        break;
                    }
                    let n = t.pipe.write_plaintext(front);
                    if n == 0 {
                        break;
                    }
                    s.out.advance(n);
                    moved += t.pipe.write_tls(&mut t.cipher_out);
                }
                moved += t.pipe.write_tls(&mut t.cipher_out);
                let mut blocked = false;
                while t.cipher_pos < t.cipher_out.len() {
                    match std::io::Write::write(stream, &t.cipher_out[t.cipher_pos..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => t.cipher_pos += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            blocked = true;
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
                if t.cipher_pos == t.cipher_out.len() {
                    t.cipher_out.clear();
                    t.cipher_pos = 0;
                }
                let drained = s.out.is_empty() && t.pending() == 0 && !t.pipe.wants_write();
                // `moved == 0`: the pipe takes no more (failed or closing).
                if drained || blocked || moved == 0 {
                    break drained;
                }
            },
        };
        if drained {
            if let Phase::Busy(txn) = &mut s.phase {
                if txn.end_at.is_some() && txn.flushed_at.is_none() {
                    txn.flushed_at = Some(now);
                }
            }
        }
        Ok(())
    }

    fn on_client_event(&mut self, i: usize, ev: ClientEvent, now: Instant) {
        match ev {
            ClientEvent::Ready => {
                let s = &mut self.sessions[i];
                self.report
                    .latencies
                    .connect
                    .record(now.saturating_duration_since(s.connect_started));
                if self.report.connections == 0 {
                    self.schedule.restart(now);
                    self.start = now;
                }
                self.report.connections += 1;
                s.attempts_in_row = 0;
                s.phase = Phase::Idle;
            }
            ClientEvent::StartTls => self.start_tls(i, now),
            ClientEvent::MailReply(reply) => {
                if let Phase::Busy(txn) = &mut self.sessions[i].phase {
                    txn.mail_ok = reply.is_positive();
                    if !txn.mail_ok {
                        txn.refusal.get_or_insert(("MAIL", reply));
                    }
                    if txn.rcpts_sent == 0 {
                        self.report
                            .latencies
                            .envelope
                            .record(now.saturating_duration_since(txn.mail_at));
                    }
                }
            }
            ClientEvent::RcptReply(reply) => {
                if let Phase::Busy(txn) = &mut self.sessions[i].phase {
                    txn.rcpt_replies += 1;
                    if reply.is_positive() {
                        txn.rcpt_ok += 1;
                    } else if txn.mail_ok {
                        self.report.count_error(format!("RCPT {}", short(&reply)));
                        txn.refusal.get_or_insert(("RCPT", reply));
                    }
                    if txn.rcpt_replies == txn.rcpts_sent {
                        self.report
                            .latencies
                            .envelope
                            .record(now.saturating_duration_since(txn.mail_at));
                    }
                }
            }
            // After 354, or at once under BDAT (the client holds nothing back for a dead
            // envelope: it refuses the DATA or fails the BDAT itself).
            ClientEvent::DataReady => {
                let s = &mut self.sessions[i];
                if let (Phase::Busy(txn), Some(client)) = (&mut s.phase, s.client.as_mut()) {
                    if txn.end_at.is_none() {
                        if let Some(m) = self.corpus.messages.get(txn.msg) {
                            client.send(m.content.clone());
                        }
                        client.end();
                        txn.end_at = Some(now);
                    }
                }
            }
            ClientEvent::DataRefused(reply) => self.refused(i, reply, now),
            ClientEvent::MessageReply(reply) => self.answered(i, reply, now),
            ClientEvent::ResetDone => {
                let s = &mut self.sessions[i];
                if matches!(&s.phase, Phase::Busy(t) if t.resetting) {
                    s.phase = Phase::Idle;
                }
            }
            ClientEvent::Failed(why) => self.fail(i, why, now),
        }
    }

    /// The server said `220` to STARTTLS: from now on the socket carries TLS.
    fn start_tls(&mut self, i: usize, now: Instant) {
        let Some((config, name)) = self.tls.as_ref() else {
            return self.fail(i, "unexpected STARTTLS".to_string(), now);
        };
        let pipe = match TlsPipe::new_client(config.clone(), name) {
            Ok(pipe) => pipe,
            Err(e) => return self.fail(i, e.to_string(), now),
        };
        let s = &mut self.sessions[i];
        // Whatever is still queued was meant to go before the handshake, in plain text.
        let mut first = Vec::with_capacity(s.out.len());
        for chunk in s.out.drain() {
            first.extend_from_slice(&chunk);
        }
        s.tls = Some(Box::new(SessionTls {
            pipe,
            cipher_in: BytesMut::new(),
            reads: ReadSizer::default(),
            cipher_out: first,
            cipher_pos: 0,
            started: false,
        }));
    }

    /// DATA was refused: count the message by the deciding reply (the envelope's when the
    /// envelope failed), then RSET.
    fn refused(&mut self, i: usize, data_reply: Reply, now: Instant) {
        let s = &mut self.sessions[i];
        let (Phase::Busy(txn), Some(client)) = (&mut s.phase, s.client.as_mut()) else {
            return;
        };
        txn.resetting = true;
        client.rset();
        let decided = match txn.refusal.take() {
            Some(envelope) if txn.envelope_failed() => envelope,
            _ => ("DATA", data_reply),
        };
        self.count_refusal(decided, now);
    }

    fn count_refusal(&mut self, (stage, reply): (&'static str, Reply), now: Instant) {
        let r = &mut self.report;
        *r.final_codes.entry(reply.code()).or_default() += 1;
        if reply.is_permanent() {
            r.rejected += 1;
        } else {
            r.tempfailed += 1;
        }
        // RCPT refusals were counted one by one as they came.
        if stage != "RCPT" {
            r.count_error(format!("{stage} {}", short(&reply)));
        }
        self.last_answer = Some(now);
    }

    /// The end-of-data reply arrived (under BDAT also a failing chunk's reply; the client
    /// then resets on its own).
    fn answered(&mut self, i: usize, reply: Reply, now: Instant) {
        let s = &mut self.sessions[i];
        let Phase::Busy(txn) = &mut s.phase else {
            return;
        };
        if !reply.is_positive() && txn.envelope_failed() {
            if let Some(envelope) = txn.refusal.take() {
                s.phase = Phase::Idle;
                return self.count_refusal(envelope, now);
            }
        }
        let r = &mut self.report;
        let eod = txn.flushed_at.or(txn.end_at).unwrap_or(now);
        r.latencies.data.record(now.saturating_duration_since(eod));
        r.latencies
            .message
            .record(now.saturating_duration_since(txn.intended));
        *r.final_codes.entry(reply.code()).or_default() += 1;
        if reply.is_positive() {
            r.accepted += 1;
            r.bytes_accepted += self
                .corpus
                .messages
                .get(txn.msg)
                .map_or(0, |m| m.content.len() as u64);
        } else {
            if reply.is_permanent() {
                r.rejected += 1;
            } else {
                r.tempfailed += 1;
            }
            r.count_error(format!("end of data {}", short(&reply)));
        }
        self.last_answer = Some(now);
        s.phase = Phase::Idle;
    }

    /// An idle session takes the next due message, or waits in the idle queue, or quits.
    /// Returns whether it did something.
    fn try_start(&mut self, i: usize, now: Instant) -> bool {
        match self.schedule.take(now) {
            Next::Send { seq, intended } => {
                self.start_message(i, seq, intended, now);
                true
            }
            Next::Wait(_) => {
                let s = &mut self.sessions[i];
                if !s.idle_queued {
                    s.idle_queued = true;
                    self.idle.push_back(i);
                }
                false
            }
            Next::Exhausted => {
                let s = &mut self.sessions[i];
                if let Some(client) = s.client.as_mut() {
                    client.quit();
                }
                s.phase = Phase::Quitting {
                    deadline: now + QUIT_GRACE,
                };
                true
            }
        }
    }

    fn start_message(&mut self, i: usize, seq: u64, intended: Instant, now: Instant) {
        let idx = (seq % self.corpus.len() as u64) as usize;
        let Some(msg) = self.corpus.messages.get(idx) else {
            return;
        };
        let s = &mut self.sessions[i];
        let Some(client) = s.client.as_mut() else {
            return;
        };
        let from = self.opts.mail_from.as_ref().unwrap_or(&msg.from);
        let rcpts = if self.opts.rcpt_to.is_empty() {
            &msg.rcpts
        } else {
            &self.opts.rcpt_to
        };
        let params = MailParams {
            size: Some(msg.content.len() as u64),
            body: if msg.eight_bit && client.capabilities().eightbitmime {
                Body::EightBitMime
            } else {
                Body::Unspecified
            },
            ..MailParams::default()
        };
        // Pipelined when offered (RFC 2920): MAIL, every RCPT and DATA in one go.
        client.mail(from, &params);
        for rcpt in rcpts {
            client.rcpt(rcpt, &RcptParams::default());
        }
        client.data();
        // With rate set, latency counts from the schedule; closed loop counts from now.
        let intended = if self.opts.rate.is_some() {
            intended
        } else {
            now
        };
        s.phase = Phase::Busy(Txn {
            msg: idx,
            intended,
            mail_at: now,
            mail_ok: false,
            rcpts_sent: rcpts.len(),
            rcpt_replies: 0,
            rcpt_ok: 0,
            refusal: None,
            end_at: None,
            flushed_at: None,
            resetting: false,
        });
        self.report.attempted += 1;
    }

    /// Wakes idle sessions whose next message is due (or quits them when none is left).
    fn dispatch_idle(&mut self, now: Instant) {
        while let Some(&i) = self.idle.front() {
            if let Next::Wait(_) = self.schedule.peek(now) {
                break;
            }
            self.idle.pop_front();
            self.sessions[i].idle_queued = false;
            self.service(i, now);
        }
    }

    /// Timeouts: the client core's reply deadlines, slow connects, QUIT grace.
    fn sweep(&mut self, now: Instant) {
        for i in 0..self.sessions.len() {
            let s = &mut self.sessions[i];
            match &s.phase {
                Phase::Connecting => {
                    if now.saturating_duration_since(s.connect_started) > self.opts.reply_timeout {
                        self.fail(i, "connect timed out".to_string(), now);
                    }
                }
                Phase::Quitting { deadline } if now >= *deadline => self.close(i),
                Phase::Done => {}
                _ => {
                    let due = s
                        .client
                        .as_ref()
                        .and_then(|c| c.next_deadline())
                        .is_some_and(|d| d <= now);
                    if due {
                        if let Some(c) = s.client.as_mut() {
                            c.handle_timeout(now);
                        }
                        self.service(i, now);
                    }
                }
            }
        }
    }

    /// The connection failed: count what it cost, then reconnect or give up.
    fn fail(&mut self, i: usize, why: String, now: Instant) {
        let phase = std::mem::replace(&mut self.sessions[i].phase, Phase::Done);
        match phase {
            Phase::Done | Phase::Quitting { .. } => {
                self.close(i);
                return;
            }
            Phase::Connecting | Phase::Greeting => {
                self.report.connect_failures += 1;
                self.report.count_error(format!("connect: {why}"));
            }
            Phase::Busy(_) => {
                self.report.failed += 1;
                self.report.count_error(format!("connection: {why}"));
                self.last_answer = Some(now);
            }
            Phase::Idle => self.report.count_error(format!("connection: {why}")),
        }
        self.close(i);
        let more = !matches!(self.schedule.peek(now), Next::Exhausted);
        if more && self.sessions[i].attempts_in_row < MAX_CONNECT_ATTEMPTS {
            self.connect(i, now);
        }
    }

    /// The one place a connection ends.
    fn close(&mut self, i: usize) {
        let s = &mut self.sessions[i];
        if let Some(mut stream) = s.stream.take() {
            if let Some(t) = s.tls.as_mut().filter(|t| t.started) {
                t.pipe.send_close_notify();
                let mut last = Vec::new();
                t.pipe.write_tls(&mut last);
                let _ = std::io::Write::write(&mut stream, &last);
            }
            let _ = self.poll.registry().deregister(&mut stream);
        }
        s.tls = None;
        s.client = None;
        s.phase = Phase::Done;
    }

    fn print_progress(&self, now: Instant) {
        let r = &self.report;
        let secs = now.saturating_duration_since(self.start).as_secs_f64();
        let done = r.accepted + r.tempfailed + r.rejected + r.failed;
        eprintln!(
            "replay: {secs:>5.0} s  {done} done  {} accepted  {:.0} msg/s  {} failed",
            r.accepted,
            if secs > 0.0 {
                r.accepted as f64 / secs
            } else {
                0.0
            },
            r.failed
        );
    }
}

/// `code enhanced` of a reply, for error keys (the text would make every key unique).
fn short(reply: &Reply) -> String {
    match reply.enhanced() {
        Some(e) => format!("{} {e}", reply.code()),
        None => reply.code().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use clap::Parser;

    use crate::cli::replay::corpus::canonical_crlf;
    use crate::cli::sink::{Sink, SinkOptions};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        replay: ReplayArgs,
    }

    fn parse(argv: &[&str]) -> Result<ReplayOptions, String> {
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        options_from_args(&cli.replay)
    }

    #[test]
    fn flags_become_options() {
        let o = parse(&[
            "replay",
            "--to",
            "127.0.0.1:2525",
            "--sessions",
            "8",
            "--messages",
            "1000",
            "--rate",
            "250",
            "--bdat",
            "--from",
            "<>",
            "--to-rcpt",
            "a@example.com",
            "--to-rcpt",
            "<b@example.com>",
            "--corpus",
            "/tmp/c",
        ])
        .expect("parses");
        assert_eq!(o.to, "127.0.0.1:2525".parse().expect("addr"));
        assert_eq!(o.sessions, 8);
        assert_eq!(o.limit, Limit::Messages(1000));
        assert_eq!(o.rate, Some(250.0));
        assert!(o.bdat);
        assert_eq!(o.mail_from, Some(ReversePath::Null));
        assert_eq!(o.rcpt_to.len(), 2);
        assert_eq!(o.corpus, PathBuf::from("/tmp/c"));
        let o = parse(&["replay", "--to", "127.0.0.1:25", "--duration", "2.5"]).expect("parses");
        assert_eq!(o.limit, Limit::Duration(Duration::from_millis(2500)));
        let o = parse(&["replay", "--to", "127.0.0.1:25"]).expect("parses");
        assert_eq!(o.limit, Limit::CorpusOnce);
        assert!(!o.starttls);
        let o = parse(&[
            "replay",
            "--to",
            "localhost:2525",
            "--starttls",
            "--ca-file",
            "ca.pem",
            "--client-cert",
            "c.pem",
            "--client-key",
            "k.pem",
        ])
        .expect("parses");
        assert!(o.starttls);
        assert_eq!(o.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(o.tls_name.as_deref(), Some("localhost"), "host of --to");
        assert_eq!(
            o.client_cert,
            Some((PathBuf::from("c.pem"), PathBuf::from("k.pem")))
        );
        let o = parse(&[
            "replay",
            "--to",
            "127.0.0.1:2525",
            "--starttls",
            "--tls-name",
            "mail.conbool.com",
        ])
        .expect("parses");
        assert_eq!(o.tls_name.as_deref(), Some("mail.conbool.com"));
    }

    #[test]
    fn bad_flags_are_refused() {
        const ROWS: &[(&str, &[&str])] = &[
            ("no_target", &["replay"]),
            (
                "messages_and_duration",
                &[
                    "replay",
                    "--to",
                    "127.0.0.1:25",
                    "--messages",
                    "1",
                    "--duration",
                    "1",
                ],
            ),
            (
                "bad_duration",
                &["replay", "--to", "127.0.0.1:25", "--duration", "0"],
            ),
            (
                "bad_from",
                &["replay", "--to", "127.0.0.1:25", "--from", "nobody"],
            ),
            ("bad_target", &["replay", "--to", "no port here"]),
            (
                "ca_file_without_starttls",
                &["replay", "--to", "127.0.0.1:25", "--ca-file", "ca.pem"],
            ),
            (
                "client_cert_without_key",
                &[
                    "replay",
                    "--to",
                    "127.0.0.1:25",
                    "--starttls",
                    "--client-cert",
                    "c.pem",
                ],
            ),
        ];
        for (name, argv) in ROWS {
            assert!(parse(argv).is_err(), "{name}");
        }
    }

    #[test]
    fn closed_loop_schedule_counts_messages() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Limit::Messages(3), 10, None);
        let later = t0 + Duration::from_secs(5);
        for seq in 0..3 {
            assert_eq!(
                s.take(later),
                Next::Send {
                    seq,
                    intended: later
                },
                "seq {seq}"
            );
        }
        assert_eq!(s.take(later), Next::Exhausted);
        let mut once = Schedule::new(t0, Limit::CorpusOnce, 2, None);
        assert!(matches!(once.take(t0), Next::Send { seq: 0, .. }));
        assert!(matches!(once.take(t0), Next::Send { seq: 1, .. }));
        assert_eq!(once.take(t0), Next::Exhausted);
    }

    #[test]
    fn open_loop_schedule_keeps_intended_times_when_late() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Limit::Messages(100), 10, Some(10.0));
        // Message 0 is due at once; message 1 at 100 ms.
        assert_eq!(
            s.take(t0),
            Next::Send {
                seq: 0,
                intended: t0
            }
        );
        assert_eq!(s.take(t0), Next::Wait(t0 + Duration::from_millis(100)));
        // A sender that falls 1 s behind still gets the old intended times: the lag counts.
        let late = t0 + Duration::from_secs(1);
        for seq in 1..=10u64 {
            let want = t0 + Duration::from_secs_f64(seq as f64 / 10.0);
            assert_eq!(
                s.take(late),
                Next::Send {
                    seq,
                    intended: want
                },
                "seq {seq}"
            );
        }
        assert!(matches!(s.take(late), Next::Wait(_)));
    }

    #[test]
    fn restart_moves_the_schedule_only_before_the_first_message() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(30);
        let mut s = Schedule::new(t0, Limit::Duration(Duration::from_secs(1)), 10, Some(10.0));
        s.restart(t1);
        assert_eq!(
            s.take(t1),
            Next::Send {
                seq: 0,
                intended: t1
            }
        );
        s.restart(t1 + Duration::from_secs(5));
        assert_eq!(s.peek(t1), Next::Wait(t1 + Duration::from_millis(100)));
        assert_eq!(s.until, Some(t1 + Duration::from_secs(1)));
    }

    #[test]
    fn duration_schedule_stops_at_the_deadline() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Limit::Duration(Duration::from_secs(1)), 10, Some(2.0));
        assert!(matches!(s.take(t0), Next::Send { seq: 0, .. }));
        let half = t0 + Duration::from_millis(500);
        assert!(matches!(s.take(half), Next::Send { seq: 1, .. }));
        // Message 2 would be due exactly at the deadline: not sent.
        assert_eq!(s.take(t0 + Duration::from_millis(999)), Next::Exhausted);
        let mut closed = Schedule::new(t0, Limit::Duration(Duration::from_secs(1)), 10, None);
        assert!(matches!(closed.take(half), Next::Send { .. }));
        assert_eq!(closed.take(t0 + Duration::from_secs(1)), Next::Exhausted);
    }

    fn bundled() -> Corpus {
        Corpus::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")).expect("bundled corpus")
    }

    /// Replays `count` bundled messages over 4 sessions into a sink that keeps them, then
    /// checks counts on both sides and every stored byte. With `tls`, the sink requires a
    /// client certificate and the replay verifies the sink's chain and presents one.
    fn replay_into_sink(count: usize, bdat: bool, tls: bool) {
        use crate::tls::testpki::{TempDir, World};
        let label = match (bdat, tls) {
            (false, false) => "data",
            (true, false) => "bdat",
            (false, true) => "data+tls",
            (true, true) => "bdat+tls",
        };
        let corpus = bundled();
        assert!(corpus.len() >= count);
        let world = World::new();
        let dir = TempDir::new(&format!("replay_{}", label.replace('+', "_")));
        let server_tls = tls.then(|| {
            let cert = dir.write("chain.pem", world.server_chain_pem());
            let key = dir.write("key.pem", world.server.key_pem());
            let client_ca = dir.write("client-ca.pem", world.client_root.pem());
            crate::tls::server_config_requiring_client_cert(&cert, &key, &client_ca)
                .expect("sink tls")
        });
        let sink = Sink::spawn(SinkOptions {
            keep_messages: true,
            tls: server_tls,
            ..SinkOptions::default()
        })
        .expect("sink");
        let mut opts = ReplayOptions::new(sink.addr);
        opts.sessions = 4;
        opts.limit = Limit::Messages(count as u64);
        opts.bdat = bdat;
        if tls {
            opts.starttls = true;
            opts.ca_file = Some(dir.write("ca.pem", world.root.pem()));
            opts.tls_name = Some("mail.conbool.com".to_string());
            opts.client_cert = Some((
                dir.write("client.pem", world.client_chain_pem()),
                dir.write("client-key.pem", world.client.key_pem()),
            ));
        }
        let report = run_replay_corpus(&opts, &corpus).expect("replay runs");
        if tls {
            assert_eq!(report.tls_handshakes, 4, "{label}: {}", report.to_text());
            assert!(
                report.to_text().contains("tls 4 handshakes"),
                "{label}: {}",
                report.to_text()
            );
        }
        assert_eq!(
            report.attempted,
            count as u64,
            "{label}: {}",
            report.to_text()
        );
        assert_eq!(
            report.accepted,
            count as u64,
            "{label}: {}",
            report.to_text()
        );
        assert_eq!(report.failed, 0, "{label}");
        assert_eq!(report.connections, 4, "{label}");
        assert_eq!(
            report.final_codes.get(&250),
            Some(&(count as u64)),
            "{label}"
        );
        let stats = sink.stats();
        assert_eq!(stats.accepted, report.accepted, "{label}: sink count");
        let handshakes = if tls { 4 } else { 0 };
        assert_eq!(stats.tls_handshakes, handshakes, "{label}");
        assert_eq!(stats.tls_client_certs, handshakes, "{label}");
        assert_eq!(stats.connections, 4, "{label}");
        let per_conn: u64 = stats.per_connection.iter().map(|c| c.accepted).sum();
        assert_eq!(per_conn, stats.accepted, "{label}");
        assert!(
            stats.per_connection.iter().all(|c| c.accepted > 0),
            "{label}: idle session"
        );

        let mut got = sink.take_messages();
        assert_eq!(got.len(), count, "{label}");
        assert!(
            got.iter().all(|m| m.bdat == bdat && m.tls == tls),
            "{label}: wrong transfer mode"
        );
        got.sort_by(|a, b| a.data.cmp(&b.data));
        let mut want: Vec<(Vec<u8>, &CorpusMessage)> = corpus.messages[..count]
            .iter()
            .map(|m| (canonical_crlf(&m.content).into_owned(), m))
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        for (g, (content, w)) in got.iter().zip(&want) {
            let name = w.path.display();
            assert!(g.data == *content, "{label}: {name}: content differs");
            assert_eq!(g.from, w.from.to_string(), "{label}: {name}: MAIL FROM");
            let rcpts: Vec<String> = w.rcpts.iter().map(|r| r.to_string()).collect();
            assert_eq!(g.rcpts, rcpts, "{label}: {name}: RCPT TO");
        }
        let end = sink.stop().expect("sink stops");
        assert_eq!(end.open_connections, 0, "{label}");
    }

    #[test]
    fn replay_200_messages_with_data_arrive_byte_exact() {
        replay_into_sink(200, false, false);
    }

    #[test]
    fn replay_200_messages_with_bdat_arrive_byte_exact() {
        replay_into_sink(200, true, false);
    }

    #[test]
    fn injected_failures_are_counted_alike_on_both_sides() {
        let corpus = bundled();
        let sink = Sink::spawn(SinkOptions {
            tempfail_pct: 10.0,
            reject_pct: 5.0,
            seed: 42,
            ..SinkOptions::default()
        })
        .expect("sink");
        let mut opts = ReplayOptions::new(sink.addr);
        opts.limit = Limit::Messages(300);
        let report = run_replay_corpus(&opts, &corpus).expect("replay");
        let stats = sink.stop().expect("stop");
        assert_eq!(report.attempted, 300);
        assert_eq!(report.accepted, stats.accepted);
        assert_eq!(report.tempfailed, stats.tempfailed);
        assert_eq!(report.rejected, stats.rejected);
        assert!(stats.tempfailed > 0 && stats.rejected > 0, "{stats:?}");
        assert_eq!(
            report.errors.get("end of data 451 4.3.0"),
            Some(&stats.tempfailed),
            "{:?}",
            report.errors
        );
    }

    #[test]
    fn open_loop_replay_measures_from_intended_times() {
        let corpus = bundled();
        let sink = Sink::spawn(SinkOptions::default()).expect("sink");
        let mut opts = ReplayOptions::new(sink.addr);
        opts.limit = Limit::Messages(40);
        opts.rate = Some(2000.0);
        opts.sessions = 2;
        let report = run_replay_corpus(&opts, &corpus).expect("replay");
        assert_eq!(report.accepted, 40, "{}", report.to_text());
        assert_eq!(report.latencies.message.count(), 40);
        // 40 messages at 2000/s take at least the 19.5 ms the schedule spans.
        assert!(
            report.elapsed >= Duration::from_micros(19_500),
            "{:?}",
            report.elapsed
        );
        drop(sink);
    }

    /// A blocking single-session SMTP server that refuses every recipient.
    fn refusing_server(chunking: bool) -> (SocketAddr, std::thread::JoinHandle<()>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let thread = std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let Ok(read_half) = stream.try_clone() else {
                return;
            };
            let mut r = BufReader::new(read_half);
            let mut w = stream;
            let _ = w.write_all(b"220 test ESMTP\r\n");
            let mut line = String::new();
            while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
                let up = line.to_ascii_uppercase();
                let reply: &[u8] = if up.starts_with("EHLO") && chunking {
                    b"250-test\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
                } else if up.starts_with("EHLO") {
                    b"250-test\r\n250 PIPELINING\r\n"
                } else if up.starts_with("MAIL") {
                    b"250 2.1.0 ok\r\n"
                } else if up.starts_with("RCPT") {
                    b"550 5.1.1 no such user\r\n"
                } else if up.starts_with("DATA") {
                    b"554 5.5.1 no valid recipients\r\n"
                } else if up.starts_with("BDAT") {
                    let n: u64 = up
                        .split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let _ = std::io::copy(&mut (&mut r).take(n), &mut std::io::sink());
                    b"554 5.5.1 no valid recipients\r\n"
                } else if up.starts_with("RSET") {
                    b"250 2.0.0 ok\r\n"
                } else if up.starts_with("QUIT") {
                    let _ = w.write_all(b"221 2.0.0 bye\r\n");
                    return;
                } else {
                    b"500 5.5.1 what\r\n"
                };
                if w.write_all(reply).is_err() {
                    return;
                }
                line.clear();
            }
        });
        (addr, thread)
    }

    #[test]
    fn refused_recipients_decide_the_message_under_data_and_bdat() {
        let corpus = bundled();
        for bdat in [false, true] {
            let (addr, server) = refusing_server(bdat);
            let mut opts = ReplayOptions::new(addr);
            opts.sessions = 1;
            opts.limit = Limit::Messages(3);
            opts.bdat = bdat;
            opts.rcpt_to = vec![corpus::parse_forward_path("x@example.com").expect("addr")];
            let report = run_replay_corpus(&opts, &corpus).expect("replay");
            let text = report.to_text();
            assert_eq!(report.attempted, 3, "bdat={bdat}: {text}");
            assert_eq!(report.rejected, 3, "bdat={bdat}: {text}");
            assert_eq!(report.accepted + report.failed, 0, "bdat={bdat}: {text}");
            assert_eq!(
                report.final_codes.get(&550),
                Some(&3),
                "bdat={bdat}: {text}"
            );
            assert_eq!(
                report.errors.get("RCPT 550 5.1.1"),
                Some(&3),
                "bdat={bdat}: {text}"
            );
            assert_eq!(report.errors.len(), 1, "bdat={bdat}: {text}");
            server.join().expect("server thread");
        }
    }

    #[test]
    fn nothing_listening_gives_connect_failures_not_a_hang() {
        // A bound socket that never listens refuses connections, and holds its port against
        // other tests' listeners for as long as it lives.
        use socket2::{Domain, Protocol, Socket, Type};
        let held = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        held.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind");
        let port = held
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("bound address");
        let corpus = bundled();
        let mut opts = ReplayOptions::new(port);
        opts.sessions = 2;
        opts.limit = Limit::Messages(10);
        let report = run_replay_corpus(&opts, &corpus).expect("replay returns");
        assert_eq!(report.attempted, 0);
        assert_eq!(report.connect_failures, 2 * u64::from(MAX_CONNECT_ATTEMPTS));
    }

    #[test]
    fn replay_with_starttls_and_a_client_certificate_arrives_byte_exact() {
        replay_into_sink(100, false, true);
        replay_into_sink(100, true, true);
    }

    #[test]
    fn starttls_without_a_client_certificate_fails_where_one_is_required() {
        use crate::tls::testpki::{TempDir, World};
        let world = World::new();
        let dir = TempDir::new("replay_no_client_cert");
        let cert = dir.write("chain.pem", world.server_chain_pem());
        let key = dir.write("key.pem", world.server.key_pem());
        let client_ca = dir.write("client-ca.pem", world.client_root.pem());
        let sink = Sink::spawn(SinkOptions {
            tls: Some(
                crate::tls::server_config_requiring_client_cert(&cert, &key, &client_ca)
                    .expect("sink tls"),
            ),
            ..SinkOptions::default()
        })
        .expect("sink");
        let mut opts = ReplayOptions::new(sink.addr);
        opts.sessions = 1;
        opts.limit = Limit::Messages(3);
        opts.starttls = true;
        let report = run_replay_corpus(&opts, &bundled()).expect("replay runs");
        assert_eq!(report.accepted, 0, "{}", report.to_text());
        assert!(report.connect_failures > 0, "{}", report.to_text());
        assert!(sink.stats().tls_failures > 0);
    }

    #[test]
    fn starttls_with_an_unreadable_ca_file_is_refused_at_start() {
        let corpus = bundled();
        let mut opts = ReplayOptions::new("127.0.0.1:1".parse().expect("addr"));
        opts.starttls = true;
        opts.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
        let err = run_replay_corpus(&opts, &corpus).expect_err("refused");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
