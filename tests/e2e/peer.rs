//! Blocking SMTP peers for end-to-end tests: a line-oriented client and a scriptable next hop,
//! both on real sockets on 127.0.0.1. Read timeouts are only a failsafe.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Failsafe so a broken relay fails a test instead of hanging it.
pub const FAILSAFE: Duration = Duration::from_secs(20);

/// A blocking SMTP client.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> (Client, String) {
        Client::over(TcpStream::connect(addr).expect("connect to relay"))
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to relay");
    }

    /// Sends one command line and returns the (possibly multi-line) reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Reads one reply (all lines joined with `\n`); empty on close.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("no reply within {FAILSAFE:?} (the relay hangs); so far: {all:?}")
                }
                Ok(0) | Err(_) => return all,
                Ok(_) => {}
            }
            let done = line.as_bytes().get(3) != Some(&b'-');
            all.push_str(line.trim_end());
            if done {
                return all;
            }
            all.push('\n');
        }
    }

    /// Sends a whole message with DATA (content must be CRLF and dot-stuffed by the caller)
    /// and returns the end-of-data reply.
    pub fn data(&mut self, stuffed: &[u8]) -> String {
        let r = self.cmd("DATA");
        assert!(r.starts_with("354"), "DATA: {r}");
        self.send(stuffed);
        if !stuffed.ends_with(b"\r\n") {
            self.send(b"\r\n");
        }
        self.send(b".\r\n");
        self.reply()
    }

    /// Whether the relay closed the connection (reads EOF).
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }
}

/// What a scripted next hop does with the message content.
#[derive(Clone, Copy, Debug)]
pub enum HopScript {
    /// Accept everything (no CHUNKING offered: the relay must use DATA).
    AcceptData,
    /// Close the connection after this many content bytes.
    DropAfter(usize),
}

/// A single-threaded blocking next hop: one connection at a time, reports each message's
/// content over a channel.
pub fn scripted_next_hop(script: HopScript) -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            thread::spawn(move || serve(stream, script, tx));
        }
    });
    (addr, rx)
}

fn serve(stream: TcpStream, script: HopScript, tx: mpsc::Sender<Vec<u8>>) {
    stream.set_read_timeout(Some(FAILSAFE)).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let _ = w.write_all(b"220 hop.test ESMTP\r\n");
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-hop.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 ok\r\n",
            "QUIT" => {
                let _ = w.write_all(b"221 2.0.0 bye\r\n");
                return;
            }
            "DATA" => {
                let _ = w.write_all(b"354 go\r\n");
                let mut content = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
                        return;
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    let l = if l.starts_with(b"..") {
                        &l[1..]
                    } else {
                        &l[..]
                    };
                    content.extend_from_slice(l);
                    if let HopScript::DropAfter(n) = script {
                        if content.len() >= n {
                            return; // drop the connection mid-DATA
                        }
                    }
                }
                let _ = tx.send(content);
                b"250 2.0.0 queued\r\n"
            }
            _ => b"502 5.5.1 unknown\r\n",
        };
        if w.write_all(reply).is_err() {
            return;
        }
    }
}

// ----- hardening helpers (issue 9) -----

/// A TCP connection to `addr` from the local address `from` (e.g. `127.0.0.2`): the whole of
/// 127.0.0.0/8 is loopback on Linux, so each test client can have its own source address.
/// `TcpStream::connect` cannot bind first, so this goes through `socket2`.
pub fn connect_from(addr: SocketAddr, from: IpAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// A local address where connections are refused, held for as long as the returned socket
/// lives: a socket bound to a free port that never listens. (Binding a listener to port 0 and
/// dropping it would free the port for the next test's listener, and the "unreachable" hop
/// would then answer.)
pub fn refusing_port() -> (Socket, SocketAddr) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("bound address");
    (socket, addr)
}

impl Client {
    /// A client over an already connected stream; reads the greeting.
    pub fn over(s: TcpStream) -> (Client, String) {
        s.set_read_timeout(Some(FAILSAFE)).unwrap();
        s.set_nodelay(true).unwrap();
        let mut c = Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        let greeting = c.reply();
        (c, greeting)
    }

    /// Connects from the local address `from` (see [`connect_from`]) and reads the greeting.
    pub fn connect_from(addr: SocketAddr, from: IpAddr) -> (Client, String) {
        Client::over(connect_from(addr, from).expect("connect to relay"))
    }

    /// Sends raw bytes; false if the relay has closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.writer.write_all(bytes).is_ok()
    }

    /// Sends one BDAT chunk and returns its reply.
    pub fn bdat(&mut self, chunk: &[u8], last: bool) -> String {
        let mut b = format!(
            "BDAT {}{}\r\n",
            chunk.len(),
            if last { " LAST" } else { "" }
        )
        .into_bytes();
        b.extend_from_slice(chunk);
        if !self.try_send(&b) {
            return String::new();
        }
        self.reply()
    }

    /// Another handle on the connection, for writing without the helpers.
    pub fn stream(&self) -> TcpStream {
        self.writer.try_clone().unwrap()
    }

    /// Closes both directions at once (a client vanishing mid-message).
    pub fn vanish(self) {
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}

/// Dot-stuffs CRLF content for DATA (RFC 5321 §4.5.2).
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 16);
    let mut at_line_start = true;
    for &b in content {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

/// The content after the relay's own fields (`Received` … `X-Conbool-Score`), or `None` when
/// they are missing.
pub fn strip_relay_fields(content: &[u8]) -> Option<&[u8]> {
    if !content.starts_with(b"Received: ") {
        return None;
    }
    let at = find(content, b"\r\nX-Conbool-Score: ")?;
    let end = at + 2 + find(&content[at + 2..], b"\r\n")? + 2;
    Some(&content[end..])
}

/// The value of the first `Message-ID` field of a header block.
pub fn message_id(content: &[u8]) -> Option<String> {
    let at = find(content, b"\r\nMessage-ID: <")? + 15;
    let len = content[at..].iter().position(|&b| b == b'>')?;
    Some(String::from_utf8_lossy(&content[at..at + len]).into_owned())
}

/// Index of the first occurrence of `needle`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// xorshift64*: a tiny seeded generator, so every fault schedule is reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator; seed 0 is replaced (xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u32) -> bool {
        self.below(100) < u64::from(pct)
    }
}

/// One message as a [`Hop`] received and accepted it.
#[derive(Clone, Debug, Default)]
pub struct HopMessage {
    /// `MAIL FROM` address.
    pub from: String,
    /// Accepted `RCPT TO` addresses, as sent by the relay.
    pub rcpts: Vec<String>,
    /// Content, unstuffed (DATA) or as chunked (BDAT).
    pub content: Vec<u8>,
    /// It came with BDAT.
    pub bdat: bool,
}

/// Where a [`Hop`] stops answering for good (it keeps reading until the relay closes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// Accepts the connection and never sends a greeting.
    Greeting,
    /// Takes the whole message and never answers its end.
    EndOfData,
    /// Stops reading after 64 kB of a message's content (holds the connection for
    /// [`FAILSAFE`], then closes it).
    Content,
}

/// How a [`Hop`] misbehaves. Each connection draws from its own generator, seeded from
/// `seed` and the connection's number; each message draws its fate at DATA/first BDAT.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Seed of the fault schedule.
    pub seed: u64,
    /// Messages answered `451 4.3.0` at end of data, in percent.
    pub tempfail_pct: u32,
    /// Messages answered `550 5.7.1` at end of data, in percent.
    pub reject_pct: u32,
    /// Connections closed in the middle of a message's content, in percent of messages.
    pub drop_pct: u32,
    /// Messages whose final reply is delayed by up to `stall_ms`, in percent.
    pub stall_pct: u32,
    /// Longest delay of a stalled reply, in milliseconds.
    pub stall_ms: u64,
    /// Offer CHUNKING (the relay then sends BDAT).
    pub chunking: bool,
    /// Offer CHUNKING on a random half of the connections instead (overrides `chunking`).
    pub mixed_chunking: bool,
    /// Offer SMTPUTF8.
    pub smtputf8: bool,
    /// Stop answering for good at this point.
    pub stall_forever: Option<Stall>,
    /// Greet with this reply line instead of `220` (then close if it is not `220`).
    pub greeting: Option<&'static str>,
    /// Answer every MAIL with this reply line.
    pub mail_reply: Option<&'static str>,
    /// Close the connection right after answering each message's end.
    pub close_after_message: bool,
}

impl Faults {
    /// A well-behaved next hop (DATA only, SMTPUTF8 offered).
    pub const NONE: Faults = Faults {
        seed: 1,
        tempfail_pct: 0,
        reject_pct: 0,
        drop_pct: 0,
        stall_pct: 0,
        stall_ms: 0,
        chunking: false,
        mixed_chunking: false,
        smtputf8: true,
        stall_forever: None,
        greeting: None,
        mail_reply: None,
        close_after_message: false,
    };
}

/// What a [`Hop`] did, summed over its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HopCounts {
    /// Connections accepted.
    pub connections: u64,
    /// Messages answered `250`.
    pub accepted: u64,
    /// Messages answered `451`.
    pub tempfailed: u64,
    /// Messages answered `550`.
    pub rejected: u64,
    /// Connections dropped mid-message on purpose.
    pub dropped: u64,
    /// Final replies delayed.
    pub stalled: u64,
    /// Messages whose content was cut short by the relay (it closed the connection).
    pub cut_short: u64,
}

#[derive(Default)]
struct HopState {
    messages: Vec<HopMessage>,
    counts: HopCounts,
}

/// A threaded blocking next hop (one thread per connection) with seeded faults. It records
/// a message as delivered before it answers `250`, so a client that heard `250` from the
/// relay can always find its message here.
pub struct Hop {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<(Mutex<HopState>, Condvar)>,
}

impl Hop {
    /// Starts a next hop on 127.0.0.1 with these faults.
    pub fn start(faults: Faults) -> Hop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new((Mutex::new(HopState::default()), Condvar::new()));
        let shared = state.clone();
        thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                shared.0.lock().unwrap().counts.connections += 1;
                let shared = shared.clone();
                let rng = Rng::new(faults.seed ^ (n as u64).wrapping_mul(0xA076_1D64_78BD_642F));
                thread::spawn(move || {
                    let _ = serve_hop(stream, faults, rng, &shared);
                });
            }
        });
        Hop { addr, state }
    }

    /// The messages accepted so far.
    pub fn messages(&self) -> Vec<HopMessage> {
        self.state.0.lock().unwrap().messages.clone()
    }

    /// The counters so far.
    pub fn counts(&self) -> HopCounts {
        self.state.0.lock().unwrap().counts
    }

    /// Waits (up to [`FAILSAFE`]) until at least `n` messages were accepted; returns them all.
    pub fn wait_for(&self, n: usize) -> Vec<HopMessage> {
        let (lock, cv) = &*self.state;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv
            .wait_timeout_while(guard, FAILSAFE, |s| s.messages.len() < n)
            .unwrap();
        guard.messages.clone()
    }
}

/// Why a hop connection ended early.
enum HopEnd {
    Closed,
}

impl From<io::Error> for HopEnd {
    fn from(_: io::Error) -> HopEnd {
        HopEnd::Closed
    }
}

fn serve_hop(
    stream: TcpStream,
    faults: Faults,
    mut rng: Rng,
    state: &Arc<(Mutex<HopState>, Condvar)>,
) -> Result<(), HopEnd> {
    stream.set_read_timeout(Some(FAILSAFE))?;
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let count = |f: &dyn Fn(&mut HopCounts)| f(&mut state.0.lock().unwrap().counts);
    if faults.stall_forever == Some(Stall::Greeting) {
        return drain_until_close(&mut r);
    }
    let chunking = if faults.mixed_chunking {
        rng.chance(50)
    } else {
        faults.chunking
    };
    if let Some(greeting) = faults.greeting {
        w.write_all(format!("{greeting}\r\n").as_bytes())?;
        if !greeting.starts_with("220") {
            return drain_until_close(&mut r);
        }
    } else {
        w.write_all(b"220 hop.test ESMTP\r\n")?;
    }
    let mut current = HopMessage::default();
    let mut chunks: Option<Fate> = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            if chunks.is_some() {
                count(&|c| c.cut_short += 1);
            }
            return Err(HopEnd::Closed);
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                let mut ehlo = String::from("250-hop.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n");
                if faults.smtputf8 {
                    ehlo.push_str("250-SMTPUTF8\r\n");
                }
                if chunking {
                    ehlo.push_str("250-CHUNKING\r\n");
                }
                ehlo.push_str("250 ENHANCEDSTATUSCODES\r\n");
                w.write_all(ehlo.as_bytes())?;
            }
            "HELO" | "NOOP" => w.write_all(b"250 2.0.0 ok\r\n")?,
            "RSET" => {
                current = HopMessage::default();
                chunks = None;
                w.write_all(b"250 2.0.0 reset\r\n")?;
            }
            "MAIL" => {
                current = HopMessage {
                    from: path_of(&line),
                    ..HopMessage::default()
                };
                chunks = None;
                match faults.mail_reply {
                    Some(reply) => w.write_all(format!("{reply}\r\n").as_bytes())?,
                    None => w.write_all(b"250 2.1.0 sender ok\r\n")?,
                }
            }
            "RCPT" => {
                current.rcpts.push(path_of(&line));
                w.write_all(b"250 2.1.5 recipient ok\r\n")?;
            }
            "QUIT" => {
                let _ = w.write_all(b"221 2.0.0 bye\r\n");
                return Ok(());
            }
            "DATA" => {
                let fate = Fate::draw(&mut rng, &faults);
                w.write_all(b"354 go ahead\r\n")?;
                let mut content = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l)? == 0 {
                        count(&|c| c.cut_short += 1);
                        return Err(HopEnd::Closed);
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    let l = if l.starts_with(b".") { &l[1..] } else { &l[..] };
                    content.extend_from_slice(l);
                    if faults.stall_forever == Some(Stall::Content) && content.len() >= 65536 {
                        // Hold the socket without reading: the relay's writes back up.
                        thread::sleep(FAILSAFE);
                        return Ok(());
                    }
                    if fate.drop_after.is_some_and(|n| content.len() >= n) {
                        count(&|c| c.dropped += 1);
                        return Ok(());
                    }
                }
                current.content = content;
                current.bdat = false;
                finish(
                    &mut w,
                    &mut r,
                    fate,
                    &faults,
                    std::mem::take(&mut current),
                    state,
                )?;
            }
            "BDAT" => {
                let mut words = line.split_whitespace().skip(1);
                let size: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let last = words.next().is_some_and(|w| w.eq_ignore_ascii_case("LAST"));
                let fate = *chunks.get_or_insert_with(|| Fate::draw(&mut rng, &faults));
                let mut chunk = vec![0; size];
                if r.read_exact(&mut chunk).is_err() {
                    count(&|c| c.cut_short += 1);
                    return Err(HopEnd::Closed);
                }
                current.content.extend_from_slice(&chunk);
                if fate.drop_after.is_some_and(|n| current.content.len() >= n) {
                    count(&|c| c.dropped += 1);
                    return Ok(());
                }
                if last {
                    chunks = None;
                    current.bdat = true;
                    finish(
                        &mut w,
                        &mut r,
                        fate,
                        &faults,
                        std::mem::take(&mut current),
                        state,
                    )?;
                } else {
                    w.write_all(b"250 2.0.0 chunk ok\r\n")?;
                }
            }
            _ => w.write_all(b"502 5.5.1 unknown\r\n")?,
        }
    }
}

/// What happens to one message at the hop.
#[derive(Clone, Copy, Debug)]
struct Fate {
    /// Drop the connection once this much content has arrived.
    drop_after: Option<usize>,
    reply: FinalReply,
    delay_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum FinalReply {
    Accept,
    Tempfail,
    Reject,
}

impl Fate {
    fn draw(rng: &mut Rng, f: &Faults) -> Fate {
        let roll = rng.below(100) as u32;
        let reply = if roll < f.tempfail_pct {
            FinalReply::Tempfail
        } else if roll < f.tempfail_pct + f.reject_pct {
            FinalReply::Reject
        } else {
            FinalReply::Accept
        };
        let drop_after = rng.chance(f.drop_pct).then(|| 1 + rng.below(8192) as usize);
        let delay_ms = if f.stall_ms > 0 && rng.chance(f.stall_pct) {
            1 + rng.below(f.stall_ms)
        } else {
            0
        };
        Fate {
            drop_after,
            reply,
            delay_ms,
        }
    }
}

fn finish(
    w: &mut TcpStream,
    r: &mut BufReader<TcpStream>,
    fate: Fate,
    faults: &Faults,
    msg: HopMessage,
    state: &Arc<(Mutex<HopState>, Condvar)>,
) -> Result<(), HopEnd> {
    if faults.stall_forever == Some(Stall::EndOfData) {
        return drain_until_close(r);
    }
    if fate.delay_ms > 0 {
        state.0.lock().unwrap().counts.stalled += 1;
        // A slow next hop, not a test waiting on itself: the relay must keep serving others.
        thread::sleep(Duration::from_millis(fate.delay_ms));
    }
    let reply: &[u8] = {
        let mut s = state.0.lock().unwrap();
        match fate.reply {
            FinalReply::Accept => {
                s.counts.accepted += 1;
                s.messages.push(msg);
                state.1.notify_all();
                b"250 2.0.0 queued\r\n"
            }
            FinalReply::Tempfail => {
                s.counts.tempfailed += 1;
                b"451 4.3.0 try again later\r\n"
            }
            FinalReply::Reject => {
                s.counts.rejected += 1;
                b"550 5.7.1 refused by next hop\r\n"
            }
        }
    };
    w.write_all(reply)?;
    if faults.close_after_message {
        return Err(HopEnd::Closed);
    }
    Ok(())
}

/// Keeps the connection open without answering until the relay closes it.
fn drain_until_close(r: &mut BufReader<TcpStream>) -> Result<(), HopEnd> {
    let mut sink = [0u8; 4096];
    loop {
        match r.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(HopEnd::Closed),
        }
    }
}

/// The address between `<` and `>` of a MAIL/RCPT line.
fn path_of(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_string()
}

/// Starts a quiet relay on 127.0.0.1 (two workers) with the embedded defaults changed by
/// `edit`; every tenant's next hop is `next_hop` unless `edit` says otherwise.
pub fn start_relay(
    next_hop: SocketAddr,
    edit: impl FnOnce(&mut conbool::config::Config),
) -> conbool::reactor::RelayHandle {
    let mut config = conbool::config::Config::embedded_defaults();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 2;
    for t in &mut config.tenants {
        t.next_hop = next_hop.to_string();
    }
    edit(&mut config);
    let rules = conbool::rules::CompiledRules::builtin(config.spam.threshold);
    let options = conbool::reactor::RelayOptions {
        log_messages: false,
    };
    conbool::reactor::spawn(
        conbool::relay::session::Snapshot {
            config: Arc::new(config),
            rules,
        },
        &options,
    )
    .expect("relay starts")
}
