//! The SMTP client phase machine (sans-IO) used toward the next hop: greeting, EHLO and
//! capabilities, optional STARTTLS, a pipelined envelope, DATA with dot-stuffing or BDAT
//! chunks, RSET for reuse, QUIT. Replies go in through [`Client::handle_input`]; commands and
//! message bytes come out through [`Client::poll_output`].
//!
//! # Call order
//!
//! ```text
//! new ─▶ (Ready) ─▶ mail ─▶ rcpt… ─▶ data ─▶ (DataReady) ─▶ send… ─▶ end ─▶ (MessageReply) ─┐
//!          ▲                                  (DataRefused) ─▶ rset ─▶ (ResetDone) ───────────┤
//!          └──────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! After every call, drain [`Client::poll_event`] and [`Client::poll_output`], and re-arm the
//! timer with [`Client::next_deadline`].
//!
//! - **Pipelining** (RFC 2920): when offered, MAIL, the RCPTs and DATA go out at once, DATA
//!   last; content waits for `354`. Without it, commands are held inside the client and sent
//!   one at a time as replies come back. Events come in command order: `MailReply`, one
//!   `RcptReply` per `rcpt()`, then `DataReady` or `DataRefused`.
//! - **A dead envelope never leads to content.** If MAIL failed or no RCPT succeeded, a
//!   pipelined DATA is answered `503`/`554` by the server and becomes `DataRefused`; if the
//!   server says `354` anyway, the client ends the empty message at once (RFC 2920 §3.1) and
//!   reports `DataRefused` with a local `554 5.5.1`; without pipelining, DATA is not sent and
//!   the same local reply is reported. The owner then calls [`Client::rset`].
//! - **BDAT** (RFC 3030) is used when [`ClientParams::use_bdat`] and the server offers
//!   CHUNKING. `data()` gives `DataReady` at once, before the envelope replies arrive. Pieces
//!   are coalesced into chunks of [`crate::smtp::encode::BDAT_CHUNK_BYTES`] (256 KiB; a bigger piece goes whole),
//!   and `end()` sends what is pending as `BDAT <n> LAST` (or `BDAT 0 LAST`). Replies to
//!   non-last chunks are swallowed while positive; the first failing one ends the message
//!   with `MessageReply` and the client sends RSET on its own; later `send()`/`end()` calls for
//!   that message are ignored. Content goes unchanged under BDAT.
//! - **DATA**: content is dot-stuffed, bare CR and LF become CRLF, and `end()` writes the
//!   terminator ([`DataEncoder`]). Content sent before `354` is held until then.
//! - A `421` at any time, an unexpected or malformed reply, an overdue reply or the server
//!   closing the connection (except after QUIT) give `Failed`; the client then does nothing
//!   more. Misuse by the owner (a call out of order) also gives `Failed("bug: …")`, which at
//!   worst costs a connection, never a corrupted message.
//! - **Time**: calls that queue a command take no `now`; the deadline of its reply counts from
//!   the last `now` the client saw (in `new`, `handle_input` or `handle_timeout`). To
//!   start a transaction on a connection that sat idle, call `handle_timeout(now)` first.
//! - **Memory**: besides what the owner hands it, the client holds only small commands and at
//!   most one BDAT chunk being filled. [`Client::buffered_bytes`] tells how much waits inside
//!   (content sent before `354`, chunks held without PIPELINING) for backpressure.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::smtp::command::{Body, ForwardPath, MailParams, RcptParams, Ret, ReversePath};
use crate::smtp::encode::{BdatChunk, BdatEncoder, DataEncoder};
use crate::smtp::outbound::Outbound;
use crate::smtp::reply::{EnhancedCode, Reply};
use crate::smtp::response::ReplyParser;

/// Whether to upgrade with STARTTLS.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StartTlsPolicy {
    /// Never.
    Never,
    /// When the server offers it.
    IfOffered,
    /// Always; fail if not offered.
    Required,
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientParams {
    /// Our EHLO name.
    pub helo_name: String,
    /// STARTTLS policy.
    pub starttls: StartTlsPolicy,
    /// Timeout for each reply (greeting, commands, end of data).
    pub reply_timeout: Duration,
    /// Allow BDAT when the server offers CHUNKING (otherwise always DATA).
    pub use_bdat: bool,
}

/// What the server offered in its EHLO reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// PIPELINING
    pub pipelining: bool,
    /// CHUNKING
    pub chunking: bool,
    /// BINARYMIME
    pub binarymime: bool,
    /// 8BITMIME
    pub eightbitmime: bool,
    /// SMTPUTF8
    pub smtputf8: bool,
    /// DSN
    pub dsn: bool,
    /// STARTTLS
    pub starttls: bool,
    /// ENHANCEDSTATUSCODES
    pub enhanced_status_codes: bool,
    /// SIZE, if given with a value (0 = no limit). A bare `SIZE` (no fixed limit, RFC 1870)
    /// is `Some(0)` too.
    pub size: Option<u64>,
}

impl Capabilities {
    /// Reads the keyword lines of an EHLO reply (the first line is the server's name).
    /// Keywords are case-insensitive; unknown ones are ignored.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines().iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "CHUNKING" => caps.chunking = true,
                "BINARYMIME" => caps.binarymime = true,
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                _ => {}
            }
        }
        caps
    }
}

/// Something the owner must act on.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ClientEvent {
    /// Greeting and EHLO (and STARTTLS, if any) done: a transaction may start.
    Ready,
    /// The server said `220` to STARTTLS: run the handshake, then call [`Client::tls_started`].
    StartTls,
    /// The reply to MAIL FROM.
    MailReply(Reply),
    /// The reply to one RCPT TO, in the order they were sent.
    RcptReply(Reply),
    /// Message content may now be sent (354 after DATA; at once under BDAT).
    DataReady,
    /// DATA was refused with this reply.
    DataRefused(Reply),
    /// The final reply for the message (end of data or the last BDAT; or an earlier failing
    /// BDAT chunk's reply).
    MessageReply(Reply),
    /// RSET done: ready for the next transaction.
    ResetDone,
    /// The connection is unusable (bad greeting, protocol violation, timeout, 421, STARTTLS
    /// required but not offered); the text says why. Close it.
    Failed(String),
}

/// The client side of one connection to a next hop. See the module docs for the call order.
#[derive(Debug)]
pub struct Client {
    params: ClientParams,
    phase: Phase,
    txn: Txn,
    caps: Capabilities,
    tls: bool,
    parser: ReplyParser,
    /// Replies awaited, in the order the commands went out.
    expects: VecDeque<Expect>,
    /// Commands not yet sent: without PIPELINING, one goes out per reply.
    held: VecDeque<Held>,
    out: Outbound,
    events: VecDeque<ClientEvent>,
    /// The last time seen; commands queued by calls without `now` count from it.
    now: Instant,
    /// The current envelope: MAIL reply positive (None while awaited), RCPTs accepted.
    mail_ok: Option<bool>,
    rcpts_ok: usize,
}

/// Where the connection is.
#[derive(Debug)]
enum Phase {
    /// Greeting, EHLO or HELO, STARTTLS in progress.
    Opening,
    /// STARTTLS accepted; the owner runs the handshake.
    TlsHandshake { deadline: Instant },
    /// Transactions may run (see [`Txn`]).
    Open,
    /// QUIT queued: replies still count, failures are quiet.
    Quitting,
    /// Over, quietly (after QUIT, or `quit()` where QUIT cannot be sent).
    Closed,
    /// Over; `Failed` was emitted.
    Failed,
}

/// Where the current transaction is.
#[derive(Debug)]
enum Txn {
    /// None: `mail()` may start one.
    Idle,
    /// `mail()` called, `data()` not yet.
    Envelope,
    /// DATA sent (or held); content given meanwhile waits here.
    DataWait { early: Vec<Bytes>, ended: bool },
    /// After `354`: content is encoded straight to the output.
    Content(DataEncoder),
    /// BDAT mode between `data()` and `end()`.
    Bdat(BdatEncoder),
    /// `end()` called: the final reply is awaited.
    Ending,
    /// `DataRefused` emitted: content calls are ignored until `rset()`.
    Refused,
    /// A BDAT chunk failed and ended the message: content calls are ignored, and a new
    /// transaction may start.
    Abandoned,
    /// RSET sent by the owner: `ResetDone` is awaited.
    Resetting,
}

/// What a reply in flight answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Awaiting {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Mail,
    Rcpt,
    Data,
    Bdat {
        last: bool,
    },
    DataEnd,
    Rset,
    /// The client's own RSET after a failed BDAT chunk: no event, but failure is fatal.
    AutoRset,
    /// A reply nobody needs any more (chunks of an abandoned message).
    Discard,
    Quit,
}

#[derive(Debug)]
struct Expect {
    what: Awaiting,
    deadline: Instant,
}

#[derive(Debug)]
struct Held {
    parts: Vec<Bytes>,
    what: Awaiting,
}

impl Client {
    /// A new connection; waits for the greeting.
    pub fn new(params: ClientParams, now: Instant) -> Client {
        let deadline = now + params.reply_timeout;
        let mut expects = VecDeque::new();
        expects.push_back(Expect {
            what: Awaiting::Greeting,
            deadline,
        });
        Client {
            params,
            phase: Phase::Opening,
            txn: Txn::Idle,
            caps: Capabilities::default(),
            tls: false,
            parser: ReplyParser::new(),
            expects,
            held: VecDeque::new(),
            out: Outbound::new(),
            events: VecDeque::new(),
            now,
            mail_ok: None,
            rcpts_ok: 0,
        }
    }

    /// Consumes replies from the front of `input`. A partial reply line stays in `input`;
    /// pass it again with what follows.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) {
        self.now = self.now.max(now);
        loop {
            match self.phase {
                Phase::Failed | Phase::Closed => return,
                Phase::TlsHandshake { .. } if !input.is_empty() => {
                    // Plaintext after the 220 would be read as if it came over TLS: the
                    // STARTTLS response injection (CVE-2011-0411 family).
                    self.fail("bytes after the STARTTLS reply".to_string());
                    return;
                }
                _ => {}
            }
            match self.parser.feed(input) {
                Err(e) => {
                    self.fail(format!("next hop sent a {e}"));
                    return;
                }
                Ok(parsed) => {
                    input.advance(parsed.used);
                    match parsed.reply {
                        Some(reply) => self.handle_reply(reply),
                        None => return,
                    }
                }
            }
        }
    }

    /// The server closed the connection.
    pub fn handle_eof(&mut self) {
        match self.phase {
            Phase::Failed | Phase::Closed => {}
            Phase::Quitting => self.phase = Phase::Closed,
            _ => self.fail("connection closed".to_string()),
        }
    }

    /// Moves queued commands and message bytes into `out`.
    pub fn poll_output(&mut self, out: &mut Outbound) {
        for chunk in self.out.drain() {
            out.push(chunk);
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The server's capabilities (valid after `Ready`).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Starts a transaction. Call after `Ready` or `ResetDone` or a `MessageReply`.
    ///
    /// Parameters go out only when the server offers their extension: SIZE with SIZE, BODY
    /// with 8BITMIME (BINARYMIME also needs BDAT in use), SMTPUTF8 with SMTPUTF8, RET and
    /// ENVID with DSN. An ENVID that is not printable ASCII is dropped.
    pub fn mail(&mut self, from: &ReversePath, params: &MailParams) {
        if self.is_over() {
            return;
        }
        if !self.is_idle() {
            return self.misuse("mail() outside an idle connection");
        }
        let from = from.to_string();
        if !is_safe_path(&from) {
            return self.misuse("mail() with CR, LF or NUL in the address");
        }
        let line = format!("MAIL FROM:<{from}>{}\r\n", self.mail_params(params));
        self.txn = Txn::Envelope;
        self.mail_ok = None;
        self.rcpts_ok = 0;
        self.send_command(vec![Bytes::from(line)], Awaiting::Mail);
    }

    /// Adds a recipient (pipelined when the server offers PIPELINING). NOTIFY and ORCPT go
    /// out only when the server offers DSN and they are printable ASCII.
    pub fn rcpt(&mut self, to: &ForwardPath, params: &RcptParams) {
        if self.is_over() {
            return;
        }
        if !matches!(self.txn, Txn::Envelope) || !matches!(self.phase, Phase::Open) {
            return self.misuse("rcpt() outside an envelope");
        }
        let to = to.to_string();
        if !is_safe_path(&to) {
            return self.misuse("rcpt() with CR, LF or NUL in the address");
        }
        let mut line = format!("RCPT TO:<{to}>");
        if self.caps.dsn {
            for (name, value) in [("NOTIFY", &params.notify), ("ORCPT", &params.orcpt)] {
                if let Some(v) = value.as_deref().filter(|v| is_xtext(v)) {
                    line.push_str(&format!(" {name}={v}"));
                }
            }
        }
        line.push_str("\r\n");
        self.send_command(vec![Bytes::from(line)], Awaiting::Rcpt);
    }

    /// Asks to send the message: DATA, or BDAT mode when offered and allowed.
    pub fn data(&mut self) {
        if self.is_over() {
            return;
        }
        if !matches!(self.txn, Txn::Envelope) || !matches!(self.phase, Phase::Open) {
            return self.misuse("data() outside an envelope");
        }
        if self.uses_bdat() {
            self.txn = Txn::Bdat(BdatEncoder::new());
            self.events.push_back(ClientEvent::DataReady);
        } else {
            self.txn = Txn::DataWait {
                early: Vec::new(),
                ended: false,
            };
            self.send_command(vec![Bytes::from_static(b"DATA\r\n")], Awaiting::Data);
        }
    }

    /// Message content (unstuffed; the client stuffs for DATA and frames for BDAT). Under DATA,
    /// bare CR or LF is written as CRLF.
    pub fn send(&mut self, piece: Bytes) {
        if self.is_over() || matches!(self.phase, Phase::Quitting) {
            return;
        }
        match &mut self.txn {
            Txn::Content(enc) => enc.encode(piece, &mut self.out),
            Txn::Bdat(enc) => {
                if let Some(chunk) = enc.push(piece) {
                    self.send_chunk(chunk);
                }
            }
            Txn::DataWait { early, .. } => early.push(piece),
            Txn::Refused | Txn::Abandoned | Txn::Resetting => {}
            _ => self.misuse("send() outside a message"),
        }
    }

    /// Ends the message (`CRLF . CRLF`, or `BDAT n LAST` / `BDAT 0 LAST`).
    pub fn end(&mut self) {
        if self.is_over() || matches!(self.phase, Phase::Quitting) {
            return;
        }
        match std::mem::replace(&mut self.txn, Txn::Ending) {
            Txn::Content(mut enc) => {
                enc.finish(&mut self.out);
                self.expect(Awaiting::DataEnd);
            }
            Txn::Bdat(mut enc) => {
                let chunk = enc.finish();
                self.send_chunk(chunk);
            }
            Txn::DataWait { early, .. } => {
                self.txn = Txn::DataWait { early, ended: true };
            }
            txn @ (Txn::Refused | Txn::Abandoned | Txn::Resetting) => self.txn = txn,
            txn => {
                self.txn = txn;
                self.misuse("end() outside a message");
            }
        }
    }

    /// Abandons the transaction with RSET (connection stays usable); `ResetDone` follows.
    ///
    /// Under DATA, once content may have started (DATA sent), RSET would be read as message
    /// text: the only safe abort is closing, so this gives `Failed`. Under BDAT, the pending
    /// chunk is dropped and RSET follows the chunks already sent. After `end()`, the message
    /// may already be delivered; its final reply is then discarded.
    pub fn rset(&mut self) {
        if self.is_over() {
            return;
        }
        if !matches!(self.phase, Phase::Open) {
            return self.misuse("rset() before the connection is ready");
        }
        match std::mem::replace(&mut self.txn, Txn::Resetting) {
            Txn::Content(_) => {
                return self.fail("transaction abandoned during DATA content".to_string())
            }
            Txn::DataWait { .. } => {
                let before = self.held.len();
                self.held.retain(|h| h.what != Awaiting::Data);
                if self.held.len() == before {
                    return self.fail("transaction abandoned while DATA was pending".to_string());
                }
            }
            Txn::Resetting => return self.misuse("rset() while a reset is pending"),
            _ => {}
        }
        self.held
            .retain(|h| !matches!(h.what, Awaiting::Bdat { .. }));
        self.discard_message_replies();
        self.send_command(vec![Bytes::from_static(b"RSET\r\n")], Awaiting::Rset);
    }

    /// Sends QUIT. Where QUIT cannot be sent (before `Ready`, or in the middle of DATA
    /// content) the client just stops: close the connection.
    pub fn quit(&mut self) {
        if self.is_over() {
            return;
        }
        let in_data = matches!(self.txn, Txn::Content(_) | Txn::DataWait { .. });
        if !matches!(self.phase, Phase::Open) || in_data {
            self.shut();
            self.phase = Phase::Closed;
            return;
        }
        if matches!(self.txn, Txn::Bdat(_)) {
            // an unfinished message: its chunk replies no longer matter
            self.held
                .retain(|h| !matches!(h.what, Awaiting::Bdat { .. }));
            self.discard_message_replies();
        }
        self.txn = Txn::Idle;
        self.phase = Phase::Quitting;
        self.send_command(vec![Bytes::from_static(b"QUIT\r\n")], Awaiting::Quit);
    }

    /// The TLS handshake finished: EHLO again (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        if self.is_over() {
            return;
        }
        if !matches!(self.phase, Phase::TlsHandshake { .. }) {
            return self.misuse("tls_started() without STARTTLS");
        }
        self.tls = true;
        // RFC 3207 §4.2: forget everything learnt before TLS.
        self.caps = Capabilities::default();
        self.phase = Phase::Opening;
        self.send_ehlo();
    }

    /// Whether a transaction may start now.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Open) && matches!(self.txn, Txn::Idle | Txn::Abandoned)
    }

    /// Whether TLS was negotiated on this connection.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Bytes held inside the client and not yet handed out by [`Client::poll_output`]:
    /// queued output, commands and BDAT chunks waiting for a reply (without PIPELINING),
    /// content given before `354`, and the BDAT chunk being filled.
    pub fn buffered_bytes(&self) -> usize {
        let held: usize = self
            .held
            .iter()
            .flat_map(|h| h.parts.iter())
            .map(Bytes::len)
            .sum();
        let txn = match &self.txn {
            Txn::DataWait { early, .. } => early.iter().map(Bytes::len).sum(),
            Txn::Bdat(enc) => enc.pending_bytes(),
            _ => 0,
        };
        self.out.len() + held + txn
    }

    /// When [`Client::handle_timeout`] must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::TlsHandshake { deadline } => Some(deadline),
            Phase::Failed | Phase::Closed => None,
            _ => self.expects.front().map(|e| e.deadline),
        }
    }

    /// Time passed: a reply overdue becomes `Failed`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.next_deadline().is_some_and(|d| now >= d) {
            self.fail("timeout".to_string());
        }
    }

    // ---- replies ----

    fn handle_reply(&mut self, reply: Reply) {
        if reply.code() == 421 && !matches!(self.phase, Phase::Quitting) {
            // RFC 5321 §3.8: the server is closing the channel.
            return self.fail(format!("next hop is closing: {reply}"));
        }
        let Some(expect) = self.expects.pop_front() else {
            return self.fail(format!("unexpected reply: {reply}"));
        };
        match expect.what {
            Awaiting::Greeting => {
                if reply.code() == 220 {
                    self.send_ehlo();
                } else {
                    self.fail(format!("greeting refused: {reply}"));
                }
            }
            Awaiting::Ehlo => {
                if reply.is_positive() {
                    self.caps = Capabilities::from_ehlo(&reply);
                    self.after_ehlo();
                } else if reply.is_permanent() {
                    // RFC 5321 §3.2: an old server; fall back to HELO without extensions.
                    let line = format!("HELO {}\r\n", self.params.helo_name);
                    self.send_command(vec![Bytes::from(line)], Awaiting::Helo);
                } else {
                    self.fail(format!("EHLO refused: {reply}"));
                }
            }
            Awaiting::Helo => {
                if reply.is_positive() {
                    self.caps = Capabilities::default();
                    self.after_ehlo();
                } else {
                    self.fail(format!("HELO refused: {reply}"));
                }
            }
            Awaiting::StartTls => {
                if reply.code() == 220 {
                    self.phase = Phase::TlsHandshake {
                        deadline: self.now + self.params.reply_timeout,
                    };
                    self.events.push_back(ClientEvent::StartTls);
                } else if self.params.starttls == StartTlsPolicy::Required {
                    self.fail(format!("STARTTLS refused: {reply}"));
                } else {
                    self.open();
                }
            }
            Awaiting::Mail => {
                self.mail_ok = Some(reply.is_positive());
                self.events.push_back(ClientEvent::MailReply(reply));
            }
            Awaiting::Rcpt => {
                if reply.is_positive() {
                    self.rcpts_ok += 1;
                }
                self.events.push_back(ClientEvent::RcptReply(reply));
            }
            Awaiting::Data => self.data_reply(reply),
            Awaiting::Bdat { last } => self.bdat_reply(reply, last),
            Awaiting::DataEnd => {
                self.txn = Txn::Idle;
                self.events.push_back(ClientEvent::MessageReply(reply));
            }
            Awaiting::Rset => {
                if reply.is_positive() {
                    self.txn = Txn::Idle;
                    self.events.push_back(ClientEvent::ResetDone);
                } else {
                    self.fail(format!("RSET refused: {reply}"));
                }
            }
            Awaiting::AutoRset => {
                if !reply.is_positive() {
                    self.fail(format!("RSET refused: {reply}"));
                }
            }
            Awaiting::Discard | Awaiting::Quit => {}
        }
        self.release_held();
    }

    fn data_reply(&mut self, reply: Reply) {
        let Txn::DataWait { early, ended } = std::mem::replace(&mut self.txn, Txn::Refused) else {
            return self.fail("bug: DATA reply outside DATA".to_string());
        };
        if reply.code() != 354 {
            self.events.push_back(ClientEvent::DataRefused(reply));
            return;
        }
        if !self.envelope_ok() {
            // RFC 2920 §3.1: the server took DATA with no valid recipient; end the empty
            // message at once and do not let any content through.
            self.out.push(Bytes::from_static(b".\r\n"));
            self.expect(Awaiting::Discard);
            self.events
                .push_back(ClientEvent::DataRefused(no_valid_recipients()));
            return;
        }
        self.events.push_back(ClientEvent::DataReady);
        let mut enc = DataEncoder::new();
        for piece in early {
            enc.encode(piece, &mut self.out);
        }
        if ended {
            enc.finish(&mut self.out);
            self.expect(Awaiting::DataEnd);
            self.txn = Txn::Ending;
        } else {
            self.txn = Txn::Content(enc);
        }
    }

    fn bdat_reply(&mut self, reply: Reply, last: bool) {
        if reply.is_positive() && !last {
            return;
        }
        self.events
            .push_back(ClientEvent::MessageReply(reply.clone()));
        if last {
            self.txn = Txn::Idle;
            return;
        }
        // RFC 3030 §2: after a failed chunk, send no more chunks of this message and reset.
        if let Txn::Bdat(enc) = &mut self.txn {
            enc.discard();
        }
        self.held
            .retain(|h| !matches!(h.what, Awaiting::Bdat { .. }));
        self.discard_message_replies();
        if matches!(self.phase, Phase::Open) {
            self.txn = Txn::Abandoned;
            self.send_command(vec![Bytes::from_static(b"RSET\r\n")], Awaiting::AutoRset);
        }
    }

    fn after_ehlo(&mut self) {
        let wants_tls = !self.tls && self.params.starttls != StartTlsPolicy::Never;
        if wants_tls && self.caps.starttls {
            self.send_command(
                vec![Bytes::from_static(b"STARTTLS\r\n")],
                Awaiting::StartTls,
            );
        } else if !self.tls && self.params.starttls == StartTlsPolicy::Required {
            self.fail("STARTTLS required but not offered".to_string());
        } else {
            self.open();
        }
    }

    fn open(&mut self) {
        self.phase = Phase::Open;
        self.txn = Txn::Idle;
        self.events.push_back(ClientEvent::Ready);
    }

    // ---- commands ----

    fn send_ehlo(&mut self) {
        let line = format!("EHLO {}\r\n", self.params.helo_name);
        self.send_command(vec![Bytes::from(line)], Awaiting::Ehlo);
    }

    fn send_chunk(&mut self, chunk: BdatChunk) {
        let what = Awaiting::Bdat { last: chunk.last };
        self.send_command(chunk.parts, what);
    }

    /// Queues a command now when nothing is in flight or the server pipelines; else holds it.
    fn send_command(&mut self, parts: Vec<Bytes>, what: Awaiting) {
        let pipelining =
            self.caps.pipelining && matches!(self.phase, Phase::Open | Phase::Quitting);
        if self.held.is_empty() && (pipelining || self.expects.is_empty()) {
            for part in parts {
                self.out.push(part);
            }
            self.expect(what);
        } else {
            self.held.push_back(Held { parts, what });
        }
    }

    /// Without PIPELINING: the next held command goes once every reply is in.
    fn release_held(&mut self) {
        while matches!(self.phase, Phase::Open | Phase::Quitting) && self.expects.is_empty() {
            let Some(held) = self.held.pop_front() else {
                return;
            };
            if held.what == Awaiting::Data && !self.envelope_ok() {
                self.txn = Txn::Refused;
                self.events
                    .push_back(ClientEvent::DataRefused(no_valid_recipients()));
                continue;
            }
            for part in held.parts {
                self.out.push(part);
            }
            self.expect(held.what);
        }
    }

    fn expect(&mut self, what: Awaiting) {
        self.expects.push_back(Expect {
            what,
            deadline: self.now + self.params.reply_timeout,
        });
    }

    /// Replies still due for the message being abandoned carry no news for the owner.
    fn discard_message_replies(&mut self) {
        for e in &mut self.expects {
            if matches!(e.what, Awaiting::Bdat { .. } | Awaiting::DataEnd) {
                e.what = Awaiting::Discard;
            }
        }
    }

    fn mail_params(&self, p: &MailParams) -> String {
        let mut s = String::new();
        if let (Some(_), Some(size)) = (self.caps.size, p.size) {
            s.push_str(&format!(" SIZE={size}"));
        }
        let body = match p.body {
            Body::Unspecified => None,
            Body::SevenBit => self.caps.eightbitmime.then_some("7BIT"),
            Body::EightBitMime => self.caps.eightbitmime.then_some("8BITMIME"),
            Body::BinaryMime => (self.caps.binarymime && self.uses_bdat()).then_some("BINARYMIME"),
        };
        if let Some(body) = body {
            s.push_str(&format!(" BODY={body}"));
        }
        if p.smtputf8 && self.caps.smtputf8 {
            s.push_str(" SMTPUTF8");
        }
        if self.caps.dsn {
            match p.ret {
                Some(Ret::Full) => s.push_str(" RET=FULL"),
                Some(Ret::Hdrs) => s.push_str(" RET=HDRS"),
                None => {}
            }
            if let Some(envid) = p.envid.as_deref().filter(|v| is_xtext(v)) {
                s.push_str(&format!(" ENVID={envid}"));
            }
        }
        s
    }

    // ---- state ----

    fn uses_bdat(&self) -> bool {
        self.params.use_bdat && self.caps.chunking
    }

    fn envelope_ok(&self) -> bool {
        self.mail_ok == Some(true) && self.rcpts_ok > 0
    }

    fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Failed | Phase::Closed)
    }

    fn misuse(&mut self, what: &str) {
        self.fail(format!("bug: {what}"));
    }

    /// Ends the connection with `Failed` (quietly after QUIT).
    fn fail(&mut self, why: String) {
        if self.is_over() {
            return;
        }
        let quiet = matches!(self.phase, Phase::Quitting);
        self.shut();
        if quiet {
            self.phase = Phase::Closed;
        } else {
            self.phase = Phase::Failed;
            self.events.push_back(ClientEvent::Failed(why));
        }
    }

    fn shut(&mut self) {
        self.out.clear();
        self.held.clear();
        self.expects.clear();
        self.txn = Txn::Idle;
    }
}

/// The local reply reported when DATA must not carry content: no accepted sender or
/// recipient. Same code as the server side's `NoValidRecipients`.
fn no_valid_recipients() -> Reply {
    Reply::new(
        554,
        Some(EnhancedCode::new(5, 5, 1)),
        "No valid recipients; message not sent",
    )
}

/// A path may not carry line ends or NUL into a command line (command injection).
fn is_safe_path(path: &str) -> bool {
    !path.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// RFC 3461 §4: xtext is printable ASCII without space; anything else would break the line.
fn is_xtext(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::smtp::command::Mailbox;

    /// The fake clock's origin. The only clock read in this module, and only in tests: every
    /// later time is this plus an explicit offset.
    fn epoch() -> Instant {
        Instant::now()
    }

    fn mbox(addr: &str) -> Mailbox {
        let (local, domain) = addr.split_once('@').unwrap_or((addr, ""));
        Mailbox {
            local: local.into(),
            domain: domain.into(),
        }
    }

    fn params(use_bdat: bool, starttls: StartTlsPolicy) -> ClientParams {
        ClientParams {
            helo_name: "relay.example".into(),
            starttls,
            reply_timeout: Duration::from_secs(300),
            use_bdat,
        }
    }

    /// One row of a server script: the command line the server expects (or `<connect>` for
    /// the greeting, `<end>` for the end of DATA content) and the reply it sends.
    type Row = (String, String);

    fn row(expect: &str, reply: &str) -> Row {
        let mut reply = reply.replace('\n', "\r\n");
        if !reply.ends_with("\r\n") {
            reply.push_str("\r\n");
        }
        (expect.to_string(), reply)
    }

    enum Mode {
        Commands,
        Data(Vec<u8>),
        Bdat {
            left: usize,
            last: bool,
            reply: String,
        },
    }

    /// A tiny scripted SMTP server: checks each command against the script, decodes DATA and
    /// BDAT content, answers from the script.
    struct MockServer {
        script: VecDeque<Row>,
        inbuf: Vec<u8>,
        mode: Mode,
        bdat_content: Vec<u8>,
        messages: Vec<Vec<u8>>,
        /// Command lines per feed, to check what was pipelined together.
        batches: Vec<Vec<String>>,
        closed: bool,
    }

    impl MockServer {
        fn new(script: Vec<Row>) -> MockServer {
            MockServer {
                script: script.into(),
                inbuf: Vec::new(),
                mode: Mode::Commands,
                bdat_content: Vec::new(),
                messages: Vec::new(),
                batches: Vec::new(),
                closed: false,
            }
        }

        fn next(&mut self, line: &str) -> String {
            let (want, reply) = self
                .script
                .pop_front()
                .unwrap_or_else(|| panic!("script ended; client sent {line:?}"));
            assert_eq!(line, want, "client sent the wrong command");
            reply
        }

        fn take_line(&mut self) -> Option<Vec<u8>> {
            let end = self.inbuf.windows(2).position(|w| w == b"\r\n")?;
            let line = self.inbuf[..end].to_vec();
            self.inbuf.drain(..end + 2);
            Some(line)
        }

        fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
            self.inbuf.extend_from_slice(bytes);
            let mut out = Vec::new();
            let mut batch = Vec::new();
            loop {
                match &mut self.mode {
                    Mode::Commands => {
                        let Some(line) = self.take_line() else { break };
                        let line = String::from_utf8(line).expect("command is UTF-8");
                        batch.push(line.clone());
                        if let Some(rest) = line.strip_prefix("BDAT ") {
                            let mut words = rest.split(' ');
                            let n = words.next().and_then(|n| n.parse().ok()).expect("size");
                            let last = words.next() == Some("LAST");
                            let reply = self.next(&line);
                            self.mode = Mode::Bdat {
                                left: n,
                                last,
                                reply,
                            };
                            continue;
                        }
                        let reply = self.next(&line);
                        out.extend_from_slice(reply.as_bytes());
                        match line.as_str() {
                            "DATA" if reply.starts_with("354") => {
                                self.mode = Mode::Data(Vec::new())
                            }
                            "RSET" => self.bdat_content.clear(),
                            "QUIT" => self.closed = true,
                            _ => {}
                        }
                    }
                    Mode::Data(_) => {
                        let Some(line) = self.take_line() else { break };
                        let Mode::Data(content) = &mut self.mode else {
                            unreachable!()
                        };
                        if line == b"." {
                            let content = std::mem::take(content);
                            self.messages.push(content);
                            self.mode = Mode::Commands;
                            let reply = self.next("<end>");
                            out.extend_from_slice(reply.as_bytes());
                        } else {
                            content.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
                            content.extend_from_slice(b"\r\n");
                        }
                    }
                    Mode::Bdat { left, last, reply } => {
                        let n = (*left).min(self.inbuf.len());
                        self.bdat_content.extend(self.inbuf.drain(..n));
                        *left -= n;
                        if *left > 0 {
                            break;
                        }
                        out.extend_from_slice(reply.as_bytes());
                        if !reply.starts_with('2') {
                            self.bdat_content.clear();
                        } else if *last {
                            self.messages.push(std::mem::take(&mut self.bdat_content));
                        }
                        self.mode = Mode::Commands;
                    }
                }
            }
            if !batch.is_empty() {
                self.batches.push(batch);
            }
            out
        }
    }

    /// One transaction the owner runs.
    #[derive(Clone)]
    struct Txn {
        from: &'static str,
        mail: MailParams,
        rcpts: Vec<&'static str>,
        rcpt: RcptParams,
        pieces: Vec<Bytes>,
    }

    fn txn(from: &'static str, rcpts: &[&'static str], pieces: &[&'static [u8]]) -> Txn {
        Txn {
            from,
            mail: MailParams::default(),
            rcpts: rcpts.to_vec(),
            rcpt: RcptParams::default(),
            pieces: pieces.iter().map(|p| Bytes::from_static(p)).collect(),
        }
    }

    /// The owner: runs its transactions one after the other, resets after a refusal, quits
    /// at the end, and runs the TLS "handshake" at once.
    struct Owner {
        txns: VecDeque<Txn>,
        current: Option<Txn>,
    }

    impl Owner {
        fn react(&mut self, c: &mut Client, ev: &ClientEvent) {
            match ev {
                ClientEvent::Ready | ClientEvent::ResetDone | ClientEvent::MessageReply(_) => {
                    if !c.is_idle() {
                        return;
                    }
                    match self.txns.pop_front() {
                        Some(t) => {
                            let from = if t.from.is_empty() {
                                ReversePath::Null
                            } else {
                                ReversePath::Mailbox(mbox(t.from))
                            };
                            c.mail(&from, &t.mail);
                            for r in &t.rcpts {
                                c.rcpt(&mbox(r), &t.rcpt);
                            }
                            c.data();
                            self.current = Some(t);
                        }
                        None => c.quit(),
                    }
                }
                ClientEvent::DataReady => {
                    for p in self
                        .current
                        .as_ref()
                        .map(|t| t.pieces.clone())
                        .unwrap_or_default()
                    {
                        c.send(p);
                    }
                    c.end();
                }
                ClientEvent::DataRefused(_) => c.rset(),
                ClientEvent::StartTls => c.tls_started(),
                _ => {}
            }
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Split {
        Whole,
        Bytes,
        At(usize),
    }

    #[derive(PartialEq, Eq, Debug)]
    struct Outcome {
        events: Vec<String>,
        wire: Vec<u8>,
        messages: Vec<Vec<u8>>,
        batches: Vec<Vec<String>>,
        script_left: usize,
        longest_reply_batch: usize,
    }

    fn show(ev: &ClientEvent) -> String {
        match ev {
            ClientEvent::Ready => "Ready".into(),
            ClientEvent::StartTls => "StartTls".into(),
            ClientEvent::MailReply(r) => format!("Mail {}", r.code()),
            ClientEvent::RcptReply(r) => format!("Rcpt {}", r.code()),
            ClientEvent::DataReady => "DataReady".into(),
            ClientEvent::DataRefused(r) => format!("DataRefused {}", r.code()),
            ClientEvent::MessageReply(r) => format!("Message {}", r.code()),
            ClientEvent::ResetDone => "ResetDone".into(),
            ClientEvent::Failed(why) => format!("Failed: {why}"),
        }
    }

    /// Runs the client against the scripted server until nothing moves.
    fn run(p: &ClientParams, script: &[Row], txns: &[Txn], split: Split) -> Outcome {
        let t0 = epoch();
        let mut server = MockServer::new(script.to_vec());
        let mut client = Client::new(p.clone(), t0);
        let mut owner = Owner {
            txns: txns.iter().cloned().collect(),
            current: None,
        };
        let mut events = Vec::new();
        let mut wire = Vec::new();
        let mut inbuf = BytesMut::new();
        let mut replies = server.next("<connect>").into_bytes();
        let mut longest = 0;
        for _round in 0..1000 {
            longest = longest.max(replies.len());
            let pieces: Vec<&[u8]> = match split {
                Split::Whole => vec![&replies],
                Split::Bytes => replies.chunks(1).collect(),
                Split::At(k) => {
                    let k = k.min(replies.len());
                    vec![&replies[..k], &replies[k..]]
                }
            };
            for piece in pieces {
                inbuf.extend_from_slice(piece);
                client.handle_input(t0, &mut inbuf);
                while let Some(ev) = client.poll_event() {
                    events.push(show(&ev));
                    owner.react(&mut client, &ev);
                }
            }
            let mut out = Outbound::new();
            client.poll_output(&mut out);
            let bytes = out.to_vec();
            wire.extend_from_slice(&bytes);
            replies = if server.closed {
                Vec::new()
            } else {
                server.feed(&bytes)
            };
            if replies.is_empty() {
                if server.closed {
                    client.handle_eof();
                    while let Some(ev) = client.poll_event() {
                        events.push(show(&ev));
                    }
                }
                break;
            }
        }
        Outcome {
            events,
            wire,
            messages: server.messages,
            batches: server.batches,
            script_left: server.script.len(),
            longest_reply_batch: longest,
        }
    }

    /// Runs whole, byte by byte and split at every point of every reply batch; all must agree.
    fn run_every_split(name: &str, p: &ClientParams, script: &[Row], txns: &[Txn]) -> Outcome {
        let whole = run(p, script, txns, Split::Whole);
        let bytes = run(p, script, txns, Split::Bytes);
        assert_eq!(bytes, whole, "{name}: byte by byte differs from whole");
        for k in 0..=whole.longest_reply_batch {
            let split = run(p, script, txns, Split::At(k));
            assert_eq!(split, whole, "{name}: split at {k} differs from whole");
        }
        whole
    }

    const EHLO_FULL: &str = "250-mx.example Hello\n250-PIPELINING\n250-SIZE 1000000\n250-8BITMIME\n250-ENHANCEDSTATUSCODES\n250-SMTPUTF8\n250-DSN\n250 CHUNKING";
    const EHLO_PLAIN: &str = "250-mx.example\n250 8BITMIME";

    fn open_rows(ehlo: &str) -> Vec<Row> {
        vec![
            row("<connect>", "220 mx.example ESMTP"),
            row("EHLO relay.example", ehlo),
        ]
    }

    struct Scenario {
        name: &'static str,
        params: ClientParams,
        script: Vec<Row>,
        txns: Vec<Txn>,
        events: Vec<&'static str>,
        messages: Vec<&'static [u8]>,
    }

    fn scenarios() -> Vec<Scenario> {
        let no_tls = StartTlsPolicy::Never;
        let one = || {
            vec![txn(
                "a@x.example",
                &["b@y.example"],
                &[b"Subject: t\r\n\r\nhi\r\n"],
            )]
        };
        let cat = |a: Vec<Row>, b: Vec<Row>| a.into_iter().chain(b).collect::<Vec<_>>();
        vec![
            Scenario {
                name: "pipelined_data",
                params: params(false, no_tls),
                script: cat(
                    open_rows(EHLO_FULL),
                    vec![
                        row("MAIL FROM:<a@x.example>", "250 2.1.0 ok"),
                        row("RCPT TO:<b@y.example>", "250 2.1.5 ok"),
                        row("RCPT TO:<c@y.example>", "250 2.1.5 ok"),
                        row("DATA", "354 go"),
                        row("<end>", "250 2.0.0 queued"),
                        row("QUIT", "221 bye"),
                    ],
                ),
                txns: vec![txn(
                    "a@x.example",
                    &["b@y.example", "c@y.example"],
                    &[b"Subject: t\r\n\r\n.dot\n", b"last line"],
                )],
                events: vec![
                    "Ready",
                    "Mail 250",
                    "Rcpt 250",
                    "Rcpt 250",
                    "DataReady",
                    "Message 250",
                ],
                messages: vec![b"Subject: t\r\n\r\n.dot\r\nlast line\r\n"],
            },
            Scenario {
                name: "one_command_at_a_time_without_pipelining",
                params: params(false, no_tls),
                script: cat(
                    open_rows(EHLO_PLAIN),
                    vec![
                        row("MAIL FROM:<a@x.example>", "250 ok"),
                        row("RCPT TO:<b@y.example>", "250 ok"),
                        row("DATA", "354 go"),
                        row("<end>", "250 queued"),
                        row("QUIT", "221 bye"),
                    ],
                ),
                txns: one(),
                events: vec!["Ready", "Mail 250", "Rcpt 250", "DataReady", "Message 250"],
                messages: vec![b"Subject: t\r\n\r\nhi\r\n"],
            },
            Scenario {
                name: "helo_fallback_after_ehlo_5xx",
                params: params(true, StartTlsPolicy::IfOffered),
                script: vec![
                    row("<connect>", "220 old.example"),
                    row("EHLO relay.example", "502 what?"),
                    row("HELO relay.example", "250 old.example"),
                    row("MAIL FROM:<a@x.example>", "250 ok"),
                    row("RCPT TO:<b@y.example>", "250 ok"),
                    row("DATA", "354 go"),
                    row("<end>", "250 queued"),
                    row("QUIT", "221 bye"),
                ],
                txns: one(),
                events: vec!["Ready", "Mail 250", "Rcpt 250", "DataReady", "Message 250"],
                messages: vec![b"Subject: t\r\n\r\nhi\r\n"],
            },
            Scenario {
                name: "starttls_then_ehlo_again",
                params: params(false, StartTlsPolicy::Required),
                script: vec![
                    row("<connect>", "220-mx.example\n220 ESMTP"),
                    row(
                        "EHLO relay.example",
                        "250-mx.example\n250-starttls\n250 PIPELINING",
                    ),
                    row("STARTTLS", "220 2.0.0 go ahead"),
                    row("EHLO relay.example", "250-mx.example\n250 PIPELINING"),
                    row("QUIT", "221 bye"),
                ],
                txns: vec![],
                events: vec!["StartTls", "Ready"],
                messages: vec![],
            },
            Scenario {
                name: "starttls_refused_if_offered_stays_plain",
                params: params(false, StartTlsPolicy::IfOffered),
                script: vec![
                    row("<connect>", "220 mx.example"),
                    row("EHLO relay.example", "250-mx.example\n250 STARTTLS"),
                    row("STARTTLS", "454 4.7.0 TLS not available"),
                    row("QUIT", "221 bye"),
                ],
                txns: vec![],
                events: vec!["Ready"],
                messages: vec![],
            },
            Scenario {
                name: "starttls_refused_when_required_fails",
                params: params(false, StartTlsPolicy::Required),
                script: vec![
                    row("<connect>", "220 mx.example"),
                    row("EHLO relay.example", "250-mx.example\n250 STARTTLS"),
                    row("STARTTLS", "454 4.7.0 TLS not available"),
                ],
                txns: vec![],
                events: vec!["Failed: STARTTLS refused: 454 4.7.0 TLS not available"],
                messages: vec![],
            },
            Scenario {
                name: "starttls_required_not_offered_fails",
                params: params(false, StartTlsPolicy::Required),
                script: open_rows(EHLO_PLAIN),
                txns: vec![],
                events: vec!["Failed: STARTTLS required but not offered"],
                messages: vec![],
            },
            Scenario {
                name: "greeting_554_fails",
                params: params(false, no_tls),
                script: vec![row("<connect>", "554 5.7.1 go away")],
                txns: vec![],
                events: vec!["Failed: greeting refused: 554 5.7.1 go away"],
                messages: vec![],
            },
            Scenario {
                name: "mail_refused_pipelined_data_refused_then_rset",
                params: params(false, no_tls),
                script: cat(
                    open_rows(EHLO_FULL),
                    vec![
                        row("MAIL FROM:<a@x.example>", "550 5.7.1 no"),
                        row("RCPT TO:<b@y.example>", "503 5.5.1 need MAIL"),
                        row("DATA", "503 5.5.1 need RCPT"),
                        row("RSET", "250 ok"),
                        row("QUIT", "221 bye"),
                    ],
                ),
                txns: one(),
                events: vec![
                    "Ready",
                    "Mail 550",
                    "Rcpt 503",
                    "DataRefused 503",
                    "ResetDone",
                ],
                messages: vec![],
            },
            Scenario {
                name: "all_rcpts_refused_but_354_sends_only_the_dot",
                params: params(false, no_tls),
                script: cat(
                    open_rows(EHLO_FULL),
                    vec![
                        row("MAIL FROM:<a@x.example>", "250 ok"),
                        row("RCPT TO:<b@y.example>", "550 5.1.1 unknown"),
                        row("DATA", "354 go"),
                        row("<end>", "554 no valid recipients"),
                        row("RSET", "250 ok"),
                        row("QUIT", "221 bye"),
                    ],
                ),
                txns: one(),
                events: vec![
                    "Ready",
                    "Mail 250",
                    "Rcpt 550",
                    "DataRefused 554",
                    "ResetDone",
                ],
                messages: vec![b""],
            },
            Scenario {
                name: "no_pipelining_all_rcpts_refused_data_not_sent",
                params: params(false, no_tls),
                script: cat(
                    open_rows(EHLO_PLAIN),
                    vec![
                        row("MAIL FROM:<a@x.example>", "250 ok"),
                        row("RCPT TO:<b@y.example>", "550 5.1.1 unknown"),
                        row("RSET", "250 ok"),
                        row("QUIT", "221 bye"),
                    ],
                ),
                txns: one(),
                events: vec![
                    "Ready",
                    "Mail 250",
                    "Rcpt 550",
                    "DataRefused 554",
                    "ResetDone",
                ],
                messages: vec![],
            },
            Scenario {
                name: "bdat_single_last_chunk",
                params: params(true, no_tls),
                script: cat(
                    open_rows(EHLO_FULL),
                    vec![
                        row("MAIL FROM:<a@x.example>", "250 ok"),
                        row("RCPT TO:<b@y.example>", "250 ok"),
                        row("BDAT 18 LAST", "250 2.0.0 queued"),
                        row("QUIT", "221 bye"),
                    ],
                ),
                txns: one(),
                events: vec!["Ready", "DataReady", "Mail 250", "Rcpt 250", "Message 250"],
                messages: vec![b"Subject: t\r\n\r\nhi\r\n"],
            },
            Scenario {
                name: "bdat_without_pipelining_waits_per_command",
                params: params(true, no_tls),
                script: cat(
                    open_rows("250-mx\n250 CHUNKING"),
                    vec![
                        row("MAIL FROM:<a@x.example>", "250 ok"),
                        row("RCPT TO:<b@y.example>", "250 ok"),
                        row("BDAT 18 LAST", "250 2.0.0 queued"),
                        row("QUIT", "221 bye"),
                    ],
                ),
                txns: one(),
                events: vec!["Ready", "DataReady", "Mail 250", "Rcpt 250", "Message 250"],
                messages: vec![b"Subject: t\r\n\r\nhi\r\n"],
            },
            Scenario {
                name: "bdat_refused_by_dead_envelope",
                params: params(true, no_tls),
                script: cat(
                    open_rows(EHLO_FULL),
                    vec![
                        row("MAIL FROM:<a@x.example>", "250 ok"),
                        row("RCPT TO:<b@y.example>", "550 unknown"),
                        row("BDAT 18 LAST", "554 5.5.1 no valid recipients"),
                        row("QUIT", "221 bye"),
                    ],
                ),
                txns: one(),
                events: vec!["Ready", "DataReady", "Mail 250", "Rcpt 550", "Message 554"],
                messages: vec![],
            },
            Scenario {
                name: "two_transactions_on_one_connection",
                params: params(false, no_tls),
                script: cat(
                    open_rows(EHLO_FULL),
                    vec![
                        row("MAIL FROM:<a@x.example>", "250 ok"),
                        row("RCPT TO:<b@y.example>", "250 ok"),
                        row("DATA", "354 go"),
                        row("<end>", "451 4.3.0 try later"),
                        row("MAIL FROM:<>", "250 ok"),
                        row("RCPT TO:<c@y.example>", "250 ok"),
                        row("DATA", "354 go"),
                        row("<end>", "250 queued"),
                        row("QUIT", "221 bye"),
                    ],
                ),
                txns: vec![
                    txn("a@x.example", &["b@y.example"], &[b"one\r\n"]),
                    txn("", &["c@y.example"], &[b"two"]),
                ],
                events: vec![
                    "Ready",
                    "Mail 250",
                    "Rcpt 250",
                    "DataReady",
                    "Message 451",
                    "Mail 250",
                    "Rcpt 250",
                    "DataReady",
                    "Message 250",
                ],
                messages: vec![b"one\r\n", b"two\r\n"],
            },
            Scenario {
                name: "421_mid_envelope_fails",
                params: params(false, no_tls),
                script: cat(
                    open_rows(EHLO_FULL),
                    vec![
                        row("MAIL FROM:<a@x.example>", "250 ok"),
                        row("RCPT TO:<b@y.example>", "421 4.3.2 shutting down"),
                        row("DATA", "421 4.3.2 shutting down"),
                    ],
                ),
                txns: one(),
                events: vec![
                    "Ready",
                    "Mail 250",
                    "Failed: next hop is closing: 421 4.3.2 shutting down",
                ],
                messages: vec![],
            },
        ]
    }

    #[test]
    fn scenarios_under_every_split() {
        for s in scenarios() {
            let got = run_every_split(s.name, &s.params, &s.script, &s.txns);
            assert_eq!(got.events, s.events, "{}: events", s.name);
            let want: Vec<Vec<u8>> = s.messages.iter().map(|m| m.to_vec()).collect();
            assert_eq!(got.messages, want, "{}: delivered messages", s.name);
            assert_eq!(got.script_left, 0, "{}: script not used up", s.name);
        }
    }

    #[test]
    fn pipelining_sends_the_envelope_in_one_group() {
        let s = &scenarios()[0];
        let got = run(&s.params, &s.script, &s.txns, Split::Whole);
        let group = got.batches.get(1).expect("envelope batch");
        let want = [
            "MAIL FROM:<a@x.example>",
            "RCPT TO:<b@y.example>",
            "RCPT TO:<c@y.example>",
            "DATA",
        ];
        assert_eq!(group, &want.map(String::from).to_vec());
    }

    // ---- content through the client: DATA and BDAT against a reference ----

    /// What a DATA server delivers for `content`: bare CR and LF as CRLF, a final CRLF.
    fn canonical(content: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < content.len() {
            match (content[i], content.get(i + 1)) {
                (b'\r', Some(b'\n')) => {
                    out.extend_from_slice(b"\r\n");
                    i += 1;
                }
                (b'\r' | b'\n', _) => out.extend_from_slice(b"\r\n"),
                (b, _) => out.push(b),
            }
            i += 1;
        }
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn shared_corpus() -> Option<std::path::PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
        if dir.is_dir() {
            Some(dir)
        } else {
            eprintln!("skipping: no corpus at {}", dir.display());
            None
        }
    }

    fn deliver(content: &[u8], bdat: bool, piece_len: usize) -> (Vec<String>, Vec<Vec<u8>>) {
        let tail = if bdat {
            row(&format!("BDAT {} LAST", content.len()), "250 queued")
        } else {
            row("<end>", "250 queued")
        };
        let mut script = open_rows(EHLO_FULL);
        script.push(row("MAIL FROM:<a@x.example>", "250 ok"));
        script.push(row("RCPT TO:<b@y.example>", "250 ok"));
        if !bdat {
            script.push(row("DATA", "354 go"));
        }
        script.push(tail);
        script.push(row("QUIT", "221 bye"));
        let mut t = txn("a@x.example", &["b@y.example"], &[]);
        t.pieces = content
            .chunks(piece_len.max(1))
            .map(Bytes::copy_from_slice)
            .collect();
        let got = run(
            &params(bdat, StartTlsPolicy::Never),
            &script,
            &[t],
            Split::Whole,
        );
        assert_eq!(got.script_left, 0, "script not used up");
        (got.events, got.messages)
    }

    #[test]
    fn smuggling_payloads_as_content_arrive_as_one_message() {
        let Some(dir) = shared_corpus() else { return };
        let dir = dir.join("smtp/smuggling/payloads");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("payloads")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no payloads in {}", dir.display());
        for path in files {
            let name = path.display().to_string();
            let content = std::fs::read(&path).expect("payload");
            let want = canonical(&content);
            for piece_len in [1, 7, 100, content.len()] {
                // The mock server is strict: a smuggled command would hit its script.
                let (events, via_data) = deliver(&content, false, piece_len);
                assert_eq!(
                    via_data,
                    vec![want.clone()],
                    "{name}, pieces of {piece_len}"
                );
                assert_eq!(events.last().map(String::as_str), Some("Message 250"));
                let (_, via_bdat) = deliver(&want, true, piece_len);
                assert_eq!(via_bdat, vec![want.clone()], "{name}: BDAT, {piece_len}");
            }
        }
    }

    #[test]
    fn bdat_failing_chunk_ends_the_message_then_resets() {
        let big: &'static [u8] = Box::leak(vec![b'x'; 300 * 1024].into_boxed_slice());
        let mut script = open_rows(EHLO_FULL);
        script.extend([
            row("MAIL FROM:<a@x.example>", "250 ok"),
            row("RCPT TO:<b@y.example>", "250 ok"),
            row("BDAT 307200", "552 5.3.4 too big"),
            row("BDAT 4 LAST", "503 5.5.1 no transaction"),
            row("RSET", "250 ok"),
            row("MAIL FROM:<a@x.example>", "250 ok"),
            row("RCPT TO:<b@y.example>", "250 ok"),
            row("BDAT 3 LAST", "250 queued"),
            row("QUIT", "221 bye"),
        ]);
        let txns = [
            txn("a@x.example", &["b@y.example"], &[big, b"tail"]),
            txn("a@x.example", &["b@y.example"], &[b"two"]),
        ];
        let got = run_every_split(
            "bdat_fail",
            &params(true, StartTlsPolicy::Never),
            &script,
            &txns,
        );
        assert_eq!(
            got.events,
            [
                "Ready",
                "DataReady",
                "Mail 250",
                "Rcpt 250",
                "Message 552",
                "DataReady",
                "Mail 250",
                "Rcpt 250",
                "Message 250",
            ]
        );
        assert_eq!(got.messages, vec![b"two".to_vec()]);
        assert_eq!(got.script_left, 0);
    }

    // ---- direct tests ----

    fn feed(c: &mut Client, now: Instant, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        c.handle_input(now, &mut buf);
    }

    fn events(c: &mut Client) -> Vec<String> {
        std::iter::from_fn(|| c.poll_event())
            .map(|e| show(&e))
            .collect()
    }

    fn output(c: &mut Client) -> String {
        let mut out = Outbound::new();
        c.poll_output(&mut out);
        String::from_utf8_lossy(&out.to_vec()).into_owned()
    }

    fn ready(t0: Instant, ehlo: &str, use_bdat: bool) -> Client {
        let mut c = Client::new(params(use_bdat, StartTlsPolicy::Never), t0);
        feed(&mut c, t0, b"220 mx\r\n");
        assert_eq!(output(&mut c), "EHLO relay.example\r\n");
        feed(&mut c, t0, row("", ehlo).1.as_bytes());
        assert_eq!(events(&mut c), ["Ready"]);
        assert!(c.is_idle());
        c
    }

    fn from() -> ReversePath {
        ReversePath::Mailbox(mbox("a@x.example"))
    }

    #[test]
    fn capabilities_table() {
        let caps = |text: &str| {
            Capabilities::from_ehlo(&Reply::multiline(
                250,
                None,
                text.split('|').map(String::from).collect(),
            ))
        };
        let rows: &[(&str, &str, Capabilities)] = &[
            ("name_only", "mx", Capabilities::default()),
            (
                "case_insensitive",
                "mx|pipelining|Chunking|8bitmime|StartTLS",
                Capabilities {
                    pipelining: true,
                    chunking: true,
                    eightbitmime: true,
                    starttls: true,
                    ..Capabilities::default()
                },
            ),
            (
                "size_with_value",
                "mx|SIZE 35882577",
                Capabilities {
                    size: Some(35882577),
                    ..Capabilities::default()
                },
            ),
            (
                "bare_size_is_no_limit",
                "mx|SIZE",
                Capabilities {
                    size: Some(0),
                    ..Capabilities::default()
                },
            ),
            (
                "the_rest",
                "mx|BINARYMIME|SMTPUTF8|DSN|ENHANCEDSTATUSCODES|AUTH PLAIN|X-FOO",
                Capabilities {
                    binarymime: true,
                    smtputf8: true,
                    dsn: true,
                    enhanced_status_codes: true,
                    ..Capabilities::default()
                },
            ),
            (
                "first_line_is_not_a_keyword",
                "PIPELINING",
                Capabilities::default(),
            ),
        ];
        for (name, text, want) in rows {
            assert_eq!(&caps(text), want, "{name}");
        }
    }

    #[test]
    fn params_go_out_only_when_offered() {
        let t0 = epoch();
        let mail = MailParams {
            size: Some(123),
            body: Body::EightBitMime,
            smtputf8: true,
            ret: Some(Ret::Hdrs),
            envid: Some("QQ314159".into()),
        };
        let rcpt = RcptParams {
            notify: Some("SUCCESS,FAILURE".into()),
            orcpt: Some("rfc822;b@y.example".into()),
        };
        let rows: &[(&str, &str, &str, &str)] = &[
            (
                "all_offered",
                "250-mx\n250-PIPELINING\n250-SIZE 1000\n250-8BITMIME\n250-SMTPUTF8\n250 DSN",
                "MAIL FROM:<a@x.example> SIZE=123 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159\r\n",
                "RCPT TO:<b@y.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@y.example\r\n",
            ),
            (
                "none_offered",
                "250-mx\n250 PIPELINING",
                "MAIL FROM:<a@x.example>\r\n",
                "RCPT TO:<b@y.example>\r\n",
            ),
        ];
        for (name, ehlo, want_mail, want_rcpt) in rows {
            let mut c = ready(t0, ehlo, false);
            c.mail(&from(), &mail);
            c.rcpt(&mbox("b@y.example"), &rcpt);
            assert_eq!(output(&mut c), format!("{want_mail}{want_rcpt}"), "{name}");
        }
    }

    #[test]
    fn params_that_would_break_the_line_are_dropped() {
        let t0 = epoch();
        let mut c = ready(t0, "250-mx\n250-PIPELINING\n250 DSN", false);
        let mail = MailParams {
            envid: Some("x\r\nRSET".into()),
            ..MailParams::default()
        };
        let rcpt = RcptParams {
            notify: Some("NEVER FOO".into()),
            orcpt: None,
        };
        c.mail(&from(), &mail);
        c.rcpt(&mbox("b@y.example"), &rcpt);
        assert_eq!(
            output(&mut c),
            "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n"
        );
        let mut c = ready(t0, "250 mx", false);
        c.mail(
            &ReversePath::Mailbox(mbox("a\r\nRSET@x")),
            &MailParams::default(),
        );
        assert_eq!(
            events(&mut c),
            ["Failed: bug: mail() with CR, LF or NUL in the address"]
        );
        assert_eq!(output(&mut c), "");
    }

    #[test]
    fn binarymime_only_with_bdat() {
        let t0 = epoch();
        let ehlo = "250-mx\n250-PIPELINING\n250-8BITMIME\n250-BINARYMIME\n250 CHUNKING";
        let mail = MailParams {
            body: Body::BinaryMime,
            ..MailParams::default()
        };
        for (use_bdat, want) in [
            (true, "MAIL FROM:<a@x.example> BODY=BINARYMIME\r\n"),
            (false, "MAIL FROM:<a@x.example>\r\n"),
        ] {
            let mut c = ready(t0, ehlo, use_bdat);
            c.mail(&from(), &mail);
            assert_eq!(output(&mut c), want, "use_bdat={use_bdat}");
        }
    }

    #[test]
    fn reply_timeout_fails_the_connection() {
        let t0 = epoch();
        let timeout = Duration::from_secs(300);
        let mut c = Client::new(params(false, StartTlsPolicy::Never), t0);
        assert_eq!(c.next_deadline(), Some(t0 + timeout), "greeting");
        c.handle_timeout(t0 + timeout - Duration::from_secs(1));
        assert_eq!(events(&mut c), Vec::<String>::new());
        c.handle_timeout(t0 + timeout);
        assert_eq!(events(&mut c), ["Failed: timeout"]);
        assert_eq!(c.next_deadline(), None);

        // Commands queued without a `now` count from the last time seen.
        let mut c = ready(t0, "250-mx\n250 PIPELINING", false);
        assert_eq!(c.next_deadline(), None, "idle");
        let t1 = t0 + Duration::from_secs(10);
        c.handle_timeout(t1);
        c.mail(&from(), &MailParams::default());
        assert_eq!(c.next_deadline(), Some(t1 + timeout));
        feed(&mut c, t1 + Duration::from_secs(5), b"250 ok\r\n");
        assert_eq!(c.next_deadline(), None, "all replies in");
    }

    #[test]
    fn tls_handshake_has_a_deadline() {
        let t0 = epoch();
        let mut c = Client::new(params(false, StartTlsPolicy::IfOffered), t0);
        feed(&mut c, t0, b"220 mx\r\n250-mx\r\n");
        feed(&mut c, t0, b"250 STARTTLS\r\n");
        assert_eq!(output(&mut c), "EHLO relay.example\r\nSTARTTLS\r\n");
        let t1 = t0 + Duration::from_secs(1);
        feed(&mut c, t1, b"220 go\r\n");
        assert_eq!(events(&mut c), ["StartTls"]);
        assert_eq!(c.next_deadline(), Some(t1 + Duration::from_secs(300)));
        c.handle_timeout(t1 + Duration::from_secs(300));
        assert_eq!(events(&mut c), ["Failed: timeout"]);
    }

    #[test]
    fn bytes_after_the_starttls_reply_fail() {
        let t0 = epoch();
        let mut c = Client::new(params(false, StartTlsPolicy::IfOffered), t0);
        feed(&mut c, t0, b"220 mx\r\n250-mx\r\n250 STARTTLS\r\n");
        feed(&mut c, t0, b"220 go\r\n250-mx\r\n250 PIPELINING\r\n");
        assert_eq!(
            events(&mut c),
            ["StartTls", "Failed: bytes after the STARTTLS reply"]
        );
        assert!(!c.is_tls());
    }

    #[test]
    fn tls_started_forgets_old_capabilities() {
        let t0 = epoch();
        let mut c = Client::new(params(true, StartTlsPolicy::IfOffered), t0);
        feed(
            &mut c,
            t0,
            b"220 mx\r\n250-mx\r\n250-CHUNKING\r\n250 STARTTLS\r\n",
        );
        feed(&mut c, t0, b"220 go\r\n");
        assert!(c.capabilities().chunking);
        c.tls_started();
        assert!(c.is_tls());
        assert_eq!(c.capabilities(), &Capabilities::default());
        assert_eq!(
            output(&mut c),
            "EHLO relay.example\r\nSTARTTLS\r\nEHLO relay.example\r\n"
        );
        feed(&mut c, t0, b"250-mx\r\n250 STARTTLS\r\n");
        assert_eq!(events(&mut c), ["StartTls", "Ready"], "no second STARTTLS");
        assert_eq!(output(&mut c), "");
    }

    #[test]
    fn eof_and_stray_replies() {
        let t0 = epoch();
        let rows: &[(&str, &[u8], bool, &[&str])] = &[
            (
                "eof_before_greeting",
                b"",
                true,
                &["Failed: connection closed"],
            ),
            (
                "eof_mid_reply",
                b"220-mx\r\n220 ok\r\n250-mx\r\n250",
                true,
                &["Failed: connection closed"],
            ),
            (
                "unsolicited_reply_when_idle",
                b"220 mx\r\n250 mx\r\n250 extra\r\n",
                false,
                &["Ready", "Failed: unexpected reply: 250 extra"],
            ),
            (
                "idle_421",
                b"220 mx\r\n250 mx\r\n421 4.4.2 idle timeout\r\n",
                false,
                &[
                    "Ready",
                    "Failed: next hop is closing: 421 4.4.2 idle timeout",
                ],
            ),
            (
                "garbage_reply",
                b"220 mx\r\nHTTP/1.1 400 Bad Request\r\n",
                false,
                &["Failed: next hop sent a malformed reply line"],
            ),
            (
                "mismatched_continuation",
                b"220-mx\r\n221 bye\r\n",
                false,
                &["Failed: next hop sent a reply lines with different codes"],
            ),
            (
                "greeting_421",
                b"421 busy\r\n",
                false,
                &["Failed: next hop is closing: 421 busy"],
            ),
        ];
        for (name, input, eof, want) in rows {
            let mut c = Client::new(params(false, StartTlsPolicy::Never), t0);
            let mut buf = BytesMut::new();
            for piece in input.chunks(1) {
                buf.extend_from_slice(piece);
                c.handle_input(t0, &mut buf);
            }
            if *eof {
                c.handle_eof();
            }
            assert_eq!(events(&mut c), *want, "{name}");
            assert!(!c.is_idle(), "{name}");
        }
    }

    #[test]
    fn quit_then_eof_is_quiet() {
        let t0 = epoch();
        let mut c = ready(t0, "250 mx", false);
        c.quit();
        assert_eq!(output(&mut c), "QUIT\r\n");
        feed(&mut c, t0, b"221 bye\r\n");
        c.handle_eof();
        assert_eq!(events(&mut c), Vec::<String>::new());
        assert!(!c.is_idle());
    }

    #[test]
    fn content_before_354_waits_for_it() {
        let t0 = epoch();
        let mut c = ready(t0, "250-mx\n250 PIPELINING", false);
        c.mail(&from(), &MailParams::default());
        c.rcpt(&mbox("b@y.example"), &RcptParams::default());
        c.data();
        c.send(Bytes::from_static(b".a\nb"));
        c.end();
        assert_eq!(
            output(&mut c),
            "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n"
        );
        assert_eq!(c.buffered_bytes(), 4);
        feed(&mut c, t0, b"250 ok\r\n250 ok\r\n354 go\r\n");
        assert_eq!(output(&mut c), "..a\r\nb\r\n.\r\n");
        feed(&mut c, t0, b"250 queued\r\n");
        assert_eq!(
            events(&mut c),
            ["Mail 250", "Rcpt 250", "DataReady", "Message 250"]
        );
        assert!(c.is_idle());
    }

    #[test]
    fn content_before_a_refused_data_is_dropped() {
        let t0 = epoch();
        let mut c = ready(t0, "250-mx\n250 PIPELINING", false);
        c.mail(&from(), &MailParams::default());
        c.rcpt(&mbox("b@y.example"), &RcptParams::default());
        c.data();
        c.send(Bytes::from_static(b"secret"));
        c.end();
        let _ = output(&mut c);
        feed(&mut c, t0, b"250 ok\r\n250 ok\r\n451 4.3.0 later\r\n");
        assert_eq!(output(&mut c), "");
        assert_eq!(events(&mut c), ["Mail 250", "Rcpt 250", "DataRefused 451"]);
        assert!(!c.is_idle(), "rset() first");
        c.send(Bytes::from_static(b"late"));
        c.rset();
        assert_eq!(output(&mut c), "RSET\r\n");
        feed(&mut c, t0, b"250 ok\r\n");
        assert_eq!(events(&mut c), ["ResetDone"]);
        assert!(c.is_idle());
    }

    #[test]
    fn rset_during_bdat_drops_the_pending_chunk() {
        let t0 = epoch();
        let mut c = ready(t0, "250-mx\n250-PIPELINING\n250 CHUNKING", true);
        c.mail(&from(), &MailParams::default());
        c.rcpt(&mbox("b@y.example"), &RcptParams::default());
        c.data();
        c.send(Bytes::from_static(b"partial"));
        assert_eq!(c.buffered_bytes() - c.out.len(), 7, "pending chunk");
        c.rset();
        assert_eq!(
            output(&mut c),
            "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nRSET\r\n"
        );
        assert_eq!(c.buffered_bytes(), 0);
        feed(&mut c, t0, b"250 ok\r\n250 ok\r\n250 ok\r\n");
        assert_eq!(
            events(&mut c),
            ["DataReady", "Mail 250", "Rcpt 250", "ResetDone"]
        );
        assert!(c.is_idle());
    }

    #[test]
    fn rset_during_data_content_fails() {
        let t0 = epoch();
        let mut c = ready(t0, "250-mx\n250 PIPELINING", false);
        c.mail(&from(), &MailParams::default());
        c.rcpt(&mbox("b@y.example"), &RcptParams::default());
        c.data();
        feed(&mut c, t0, b"250 ok\r\n250 ok\r\n354 go\r\n");
        c.send(Bytes::from_static(b"half a message"));
        c.rset();
        assert_eq!(
            events(&mut c),
            [
                "Mail 250",
                "Rcpt 250",
                "DataReady",
                "Failed: transaction abandoned during DATA content"
            ]
        );
        assert_eq!(output(&mut c), "", "nothing more goes out");
    }

    #[test]
    fn rset_before_a_held_data_replaces_it() {
        let t0 = epoch();
        let mut c = ready(t0, "250 mx", false);
        c.mail(&from(), &MailParams::default());
        c.rcpt(&mbox("b@y.example"), &RcptParams::default());
        c.data();
        c.rset();
        assert_eq!(output(&mut c), "MAIL FROM:<a@x.example>\r\n");
        feed(&mut c, t0, b"250 ok\r\n");
        assert_eq!(output(&mut c), "RCPT TO:<b@y.example>\r\n");
        feed(&mut c, t0, b"250 ok\r\n");
        assert_eq!(output(&mut c), "RSET\r\n");
        feed(&mut c, t0, b"250 ok\r\n");
        assert_eq!(events(&mut c), ["Mail 250", "Rcpt 250", "ResetDone"]);
    }

    #[test]
    fn misuse_fails_the_connection() {
        let t0 = epoch();
        let mut c = ready(t0, "250 mx", false);
        c.send(Bytes::from_static(b"x"));
        assert_eq!(events(&mut c), ["Failed: bug: send() outside a message"]);
        let mut c = ready(t0, "250 mx", false);
        c.rcpt(&mbox("b@y.example"), &RcptParams::default());
        assert_eq!(events(&mut c), ["Failed: bug: rcpt() outside an envelope"]);
        let mut c = Client::new(params(false, StartTlsPolicy::Never), t0);
        c.mail(&from(), &MailParams::default());
        assert_eq!(
            events(&mut c),
            ["Failed: bug: mail() outside an idle connection"]
        );
    }

    #[test]
    fn data_content_is_zero_copy() {
        let t0 = epoch();
        let mut c = ready(t0, "250-mx\n250 PIPELINING", false);
        c.mail(&from(), &MailParams::default());
        c.rcpt(&mbox("b@y.example"), &RcptParams::default());
        c.data();
        feed(&mut c, t0, b"250 ok\r\n250 ok\r\n354 go\r\n");
        let _ = output(&mut c);
        let piece = Bytes::from(vec![b'z'; 4096]);
        c.send(piece.clone());
        let mut out = Outbound::new();
        c.poll_output(&mut out);
        assert_eq!(out.front().map(|b| b.as_ptr()), Some(piece.as_ptr()));
    }
}
