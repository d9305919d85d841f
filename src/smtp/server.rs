//! The SMTP server phase machine (sans-IO). Bytes from the client go in through
//! [`Server::handle_input`]; replies come out through [`Server::poll_output`] and the things the
//! relay must act on through [`Server::poll_event`]. Questions the server cannot answer alone
//! (MAIL, RCPT, DATA, end of message) wait for [`Server::answer`]; meanwhile no further input is
//! consumed, so pipelined replies stay in order (RFC 2920).
//!
//! Owns: the session phases (await-EHLO, ready, transaction, DATA, BDAT chunk, TLS
//! handshake, closed), which command is allowed when, the command and data timeouts, and the
//! bounds on what a client can make it queue. Must not touch: sockets, the clock (time comes
//! in as `now`), routing or rules (the relay answers the questions).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Buf;
/// The buffer types of the server's API, re-exported for owners (and fuzz targets) that do not
/// depend on `bytes` themselves.
pub use bytes::{Bytes, BytesMut};

use crate::config::BareLf;
use crate::smtp::bdat::{ChunkReader, LineEnds};
use crate::smtp::command::{
    self, Body, Command, ForwardPath, MailParams, RcptParams, ReversePath, MAX_COMMAND_LINE,
};
use crate::smtp::data::{DataDecoder, Piece};
use crate::smtp::error::{reply_for, AfterReply, SessionError};
use crate::smtp::reply::Reply;

/// What the server offers and enforces; built by the relay from config.
#[derive(Clone, Debug)]
pub struct ServerParams {
    /// Our host name for the greeting and EHLO.
    pub hostname: String,
    /// `limits.max_message_size`, advertised as `SIZE`.
    pub max_message_size: u64,
    /// `limits.max_recipients`.
    pub max_recipients: usize,
    /// `limits.max_errors`.
    pub max_errors: u32,
    /// `limits.bare_lf`.
    pub bare_lf: BareLf,
    /// `limits.command_timeout_s`.
    pub command_timeout: Duration,
    /// `limits.data_timeout_s`.
    pub data_timeout: Duration,
    /// Advertise STARTTLS (TLS configured and not yet active).
    pub starttls: bool,
    /// `tls.require`: MAIL before TLS gets `530 5.7.0`.
    pub tls_required: bool,
    /// Advertise BINARYMIME (the route can carry it).
    pub binarymime: bool,
}

/// Something the relay must know or decide.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// EHLO/HELO was accepted (already answered). A new EHLO also resets any transaction.
    Helo {
        /// The name the client gave.
        name: String,
        /// EHLO rather than HELO.
        extended: bool,
    },
    /// `MAIL FROM` passed syntax, sequence and SIZE checks. Answer with [`Server::answer`].
    Mail {
        /// The reverse-path.
        from: ReversePath,
        /// Its parameters.
        params: MailParams,
    },
    /// `RCPT TO` passed syntax, sequence and count checks. Answer with [`Server::answer`].
    Rcpt {
        /// The forward-path.
        to: ForwardPath,
        /// Its parameters.
        params: RcptParams,
    },
    /// `DATA` (answer with 354 or a refusal) or the first `BDAT` of a message (no answer).
    DataStart {
        /// The message arrives in BDAT chunks.
        bdat: bool,
    },
    /// Message content, in order: unstuffed, line ends as `limits.bare_lf` leaves them.
    /// `Bytes` slices of the input wherever possible.
    Data(Bytes),
    /// The message is complete (end of DATA or `BDAT ... LAST`). Answer with the final reply.
    DataEnd,
    /// The transaction is gone (RSET, EHLO, a limit, a refusal, a close); drop anything
    /// started downstream. No answer.
    Abort,
    /// STARTTLS was accepted and its `220` queued; pipelined input after it was discarded.
    /// Flush output, run the handshake, then call [`Server::tls_started`].
    StartTls,
    /// The session is over (QUIT, `421`, too many errors): flush output and close.
    Close,
}

/// The server side of one SMTP session.
///
/// Call order: [`Server::new`] queues the greeting. Then, whenever input arrives or an answer
/// was given, call [`Server::handle_input`] (with whatever input is left, possibly none),
/// then drain [`Server::poll_event`] and [`Server::poll_output`]. `handle_input` stops
/// consuming when a question is pending (until [`Server::answer`]), during the STARTTLS
/// handshake, once the session is closing, and while more than [`MAX_REPLY_BACKLOG`] bytes
/// of replies wait for `poll_output` (so a client pipelining a million NOOPs cannot grow the
/// reply queue: the backlog stays under that bound plus one reply).
///
/// A message the server itself refuses (over `max_message_size`, or a bare CR/LF under
/// `bare_lf = "reject"`) gets `Abort` at once; the rest of its data is read and dropped and
/// the refusal answers the end of data. Under BDAT the refusal answers the chunk where the
/// problem was found and every later chunk up to `LAST` (RFC 3030 §2: later chunks are
/// accepted and discarded); a chunk refused for sequence reasons is still read, so its octets
/// never run as commands.
#[derive(Debug)]
pub struct Server {
    params: ServerParams,
    phase: Phase,
    helo: Option<Helo>,
    tls_active: bool,
    errors: u32,
    close_requested: bool,
    lines: LineReader,
    clock: Clock,
    out: Vec<u8>,
    events: VecDeque<Event>,
    pieces: Vec<Piece>,
    /// A message this core refused on its own (size, bare LF) since the relay last asked.
    own_refusal: Option<SessionError>,
}

/// While more reply bytes than this wait for [`Server::poll_output`], no further command is
/// read (the reply backlog rule; a reply adds at most a few hundred bytes beyond it).
pub const MAX_REPLY_BACKLOG: usize = 16 * 1024;

/// RCPTs over `max_recipients` in one transaction that get `452 4.5.3` without counting
/// toward `max_errors`.
pub const MAX_RECIPIENT_OVERSHOOT: u32 = 1000;

/// Message pieces shorter than this are copied into one owned buffer rather than each
/// becoming an event, so bare-LF normalisation cannot multiply events per input byte.
const SMALL_PIECE: usize = 256;

/// The owned buffer of small pieces is handed on when it reaches this size.
const MAX_OWNED_PIECE: usize = 8 * 1024;

impl Server {
    /// A new session; queues the `220` greeting.
    pub fn new(params: ServerParams, now: Instant) -> Server {
        let mut server = Server {
            phase: Phase::AwaitHelo,
            helo: None,
            tls_active: false,
            errors: 0,
            close_requested: false,
            lines: LineReader::default(),
            clock: Clock {
                since: now,
                restart_pending: false,
            },
            out: Vec::new(),
            events: VecDeque::new(),
            pieces: Vec::new(),
            params,
            own_refusal: None,
        };
        server.queue(&Reply::greeting(&server.params.hostname));
        server
    }

    /// Consumes a prefix of `input` (the rest stays for a later call, e.g. while an answer is
    /// pending). Message data is split off as `Bytes` without copying.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) {
        if self.clock.restart_pending {
            self.clock.restart(now);
        }
        let before = input.len();
        loop {
            let progressed = match &self.phase {
                Phase::AwaitHelo | Phase::Ready | Phase::Mail(_) => {
                    self.out.len() <= MAX_REPLY_BACKLOG && self.read_command(input)
                }
                Phase::Data(_) => !input.is_empty() && self.read_data(input),
                Phase::Chunk(_) => self.read_chunk(input),
                Phase::Asked(_) | Phase::TlsHandshake | Phase::Closed | Phase::Poisoned => false,
            };
            self.settle();
            if !progressed {
                break;
            }
        }
        if input.len() != before {
            self.clock.restart(now);
        }
    }

    /// The client closed its side: any transaction is aborted and the session ends. Input
    /// not yet consumed (e.g. pipelined behind a pending question) is not processed.
    pub fn handle_eof(&mut self) {
        self.close_requested = true;
        self.settle();
    }

    /// Appends queued replies to `out`.
    pub fn poll_output(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.out);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Answers the oldest pending question (MAIL, RCPT, DATA, end of message) with `reply`; the
    /// reply's class decides the new phase (2xx to MAIL opens the transaction, and so on).
    /// A `421` answer also ends the session. Without a pending question this does nothing.
    pub fn answer(&mut self, reply: Reply) {
        let question = match self.take_phase() {
            Phase::Asked(question) => question,
            other => {
                // No question pending: a bug in the caller; an unsolicited reply would
                // desynchronise a pipelining client, so it is dropped.
                self.phase = other;
                return;
            }
        };
        self.queue(&reply);
        self.phase = match question {
            Question::Mail(envelope) if reply.is_positive() => Phase::Mail(Txn::new(envelope)),
            Question::Mail(_) => Phase::Ready,
            Question::Rcpt(mut txn) => {
                if reply.is_positive() {
                    txn.accepted += 1;
                }
                Phase::Mail(txn)
            }
            Question::Data(_) if reply.code() == 354 => {
                Phase::Data(DataRead::new(self.params.bare_lf))
            }
            Question::Data(txn) => Phase::Mail(txn),
            Question::DataEnd => Phase::Ready,
        };
        if reply.code() == 421 {
            self.close_requested = true;
        }
        self.clock.restart_pending = true;
        self.settle();
    }

    /// Answers the pending question with `reply_for(err)` and counts it toward
    /// `limits.max_errors`, like the server's own refusals: for questions a well-behaved
    /// client does not keep asking (relay access denied), so probing ends with `421`.
    pub fn refuse_question(&mut self, err: &SessionError) {
        if !self.is_waiting() {
            return;
        }
        self.answer(reply_for(err).0);
        self.count_error();
        self.settle();
    }

    /// Why this core refused the message in progress on its own (`max_message_size`,
    /// `bare_lf = "reject"`), once: the `Abort` event that came with it is the relay's cue to
    /// ask. The reply is `reply_for` of it, given at the end of the message.
    pub fn take_own_refusal(&mut self) -> Option<SessionError> {
        self.own_refusal.take()
    }

    /// Refuses the current message because of `err` (downstream failure, rule reject, header
    /// too big): remaining message data is read and discarded, the end of message is answered
    /// with `reply_for(err)` without asking, and `AfterReply::Close` is honoured.
    ///
    /// Under BDAT the reply goes to the chunk being read (or the next one) and to every later
    /// chunk up to `LAST`. While a question is pending it is answered with `reply_for(err)`.
    /// Outside a message only a closing error has an effect (it ends the session).
    pub fn fail_message(&mut self, err: SessionError) {
        let (reply, after) = reply_for(&err);
        match &mut self.phase {
            Phase::Data(data) => data.msg.fail_quietly(err),
            Phase::Chunk(ChunkRead {
                dest: ChunkDest::Message { bdat, .. },
                ..
            }) => bdat.msg.fail_quietly(err),
            Phase::Mail(Txn {
                bdat: Some(bdat), ..
            }) => bdat.msg.fail_quietly(err),
            Phase::Asked(_) => {
                self.answer(reply);
                if after == AfterReply::Close {
                    self.close_requested = true;
                }
            }
            _ => {
                if after == AfterReply::Close {
                    self.queue(&reply);
                    self.close_requested = true;
                }
            }
        }
        self.settle();
    }

    /// Sends `reply_for(err)` now and ends the session (e.g. `421` at shutdown or too many
    /// connections).
    pub fn refuse_session(&mut self, err: SessionError) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.queue(&reply_for(&err).0);
        self.close_requested = true;
        self.settle();
    }

    /// The TLS handshake finished: the session restarts at await-EHLO (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.tls_active = true;
        self.helo = None;
        self.lines = LineReader::default();
        self.phase = Phase::AwaitHelo;
        self.clock.restart_pending = true;
    }

    /// When [`Server::handle_timeout`] must be called next (command or data timeout); `None`
    /// while an answer is pending (the relay times the next hop), during the TLS handshake
    /// (the relay times it) and once closing.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = match &self.phase {
            Phase::AwaitHelo | Phase::Ready | Phase::Mail(_) => self.params.command_timeout,
            Phase::Data(_) | Phase::Chunk(_) => self.params.data_timeout,
            Phase::Asked(_) | Phase::TlsHandshake | Phase::Closed | Phase::Poisoned => return None,
        };
        self.clock.since.checked_add(timeout)
    }

    /// Time passed: on a timeout queue `421 4.4.2`, emit `Abort` if needed, then `Close`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.next_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        if self.clock.restart_pending {
            // An answer was given since the last input: the client's time starts then.
            self.clock.restart(now);
            return;
        }
        let err = match self.phase {
            Phase::Data(_) | Phase::Chunk(_) => SessionError::DataTimeout,
            _ => SessionError::CommandTimeout,
        };
        self.refuse_session(err);
    }

    /// The HELO/EHLO name, once given.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_ref().map(|h| h.name.as_str())
    }

    /// Whether the client used EHLO (for `with ESMTP`).
    pub fn is_extended(&self) -> bool {
        self.helo.as_ref().is_some_and(|h| h.extended)
    }

    /// Whether an answer is awaited (no input is consumed meanwhile).
    pub fn is_waiting(&self) -> bool {
        matches!(self.phase, Phase::Asked(_))
    }

    /// Whether the session has ended and output should be flushed then closed.
    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether TLS is active on this session (after [`Server::tls_started`]).
    pub fn is_tls(&self) -> bool {
        self.tls_active
    }

    fn take_phase(&mut self) -> Phase {
        std::mem::replace(&mut self.phase, Phase::Poisoned)
    }

    fn queue(&mut self, reply: &Reply) {
        reply.write_to(&mut self.out);
    }

    /// Ends the session if something asked for it: `Abort` when a transaction is live, then
    /// `Close`.
    fn settle(&mut self) {
        if !self.close_requested || matches!(self.phase, Phase::Closed) {
            return;
        }
        if self.phase.transaction_live() {
            self.events.push_back(Event::Abort);
        }
        self.phase = Phase::Closed;
        self.events.push_back(Event::Close);
    }

    /// A refusal chosen by the server: its reply, and the error count (RFC 5321 §4.3.2 does
    /// not bound it; `limits.max_errors` does).
    fn error(&mut self, err: SessionError) {
        let (reply, after) = reply_for(&err);
        self.queue(&reply);
        if after == AfterReply::Close {
            self.close_requested = true;
        }
        self.count_error();
    }

    fn count_error(&mut self) {
        self.errors = self.errors.saturating_add(1);
        if self.errors >= self.params.max_errors && !self.close_requested {
            self.queue(&reply_for(&SessionError::TooManyErrors).0);
            self.close_requested = true;
        }
    }

    /// The reply that ends a failed message or chunk.
    fn message_failed(&mut self, err: &SessionError) {
        let (reply, after) = reply_for(err);
        self.queue(&reply);
        if after == AfterReply::Close {
            self.close_requested = true;
        }
    }

    // ---- commands ----

    /// Reads and executes one command line; false when no complete line is there yet.
    fn read_command(&mut self, input: &mut BytesMut) -> bool {
        match self.lines.next(input) {
            None => false,
            Some(Line::TooLong) => {
                self.error(SessionError::LineTooLong);
                true
            }
            Some(Line::Complete { text_len, line_len }) => {
                let parsed = command::parse(&input[..text_len]);
                input.advance(line_len);
                match parsed {
                    Ok(cmd) => self.command(cmd, input),
                    Err(err) => self.error(err),
                }
                true
            }
        }
    }

    fn command(&mut self, cmd: Command, input: &mut BytesMut) {
        let phase = self.take_phase();
        self.phase = match cmd {
            Command::Ehlo(name) => self.hello(phase, name, true),
            Command::Helo(name) => self.hello(phase, name, false),
            Command::Mail(from, params) => self.mail(phase, from, params),
            Command::Rcpt(to, params) => self.rcpt(phase, to, params),
            Command::Data => self.data(phase),
            Command::Bdat { size, last } => self.bdat(phase, size, last),
            Command::Rset => {
                if phase.transaction_live() {
                    self.events.push_back(Event::Abort);
                }
                self.queue(&Reply::ok());
                self.idle_phase()
            }
            Command::Noop => {
                self.queue(&Reply::ok());
                phase
            }
            Command::Quit => {
                self.queue(&Reply::bye());
                self.close_requested = true;
                phase
            }
            Command::Vrfy => {
                self.queue(&Reply::cannot_verify());
                phase
            }
            Command::Expn => {
                self.error(SessionError::NotImplemented);
                phase
            }
            Command::Help => {
                self.queue(&Reply::help());
                phase
            }
            Command::StartTls => self.starttls(phase, input),
        };
    }

    /// `Ready` once greeted, else `AwaitHelo`.
    fn idle_phase(&self) -> Phase {
        if self.helo.is_some() {
            Phase::Ready
        } else {
            Phase::AwaitHelo
        }
    }

    fn hello(&mut self, phase: Phase, name: String, extended: bool) -> Phase {
        if phase.transaction_live() {
            self.events.push_back(Event::Abort);
        }
        let host = &self.params.hostname;
        let reply = if extended {
            Reply::ehlo(host, self.capabilities())
        } else {
            Reply::helo(host)
        };
        self.queue(&reply);
        self.helo = Some(Helo {
            name: name.clone(),
            extended,
        });
        self.events.push_back(Event::Helo { name, extended });
        Phase::Ready
    }

    /// The EHLO keywords (DESIGN.md §3).
    fn capabilities(&self) -> Vec<String> {
        let mut caps = vec![
            "PIPELINING".to_string(),
            format!("SIZE {}", self.params.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "SMTPUTF8".to_string(),
            "CHUNKING".to_string(),
        ];
        if self.params.binarymime {
            caps.push("BINARYMIME".to_string());
        }
        caps.push("DSN".to_string());
        if self.params.starttls && !self.tls_active {
            caps.push("STARTTLS".to_string());
        }
        caps
    }

    fn mail(&mut self, phase: Phase, from: ReversePath, params: MailParams) -> Phase {
        let refusal = match &phase {
            Phase::AwaitHelo => Some(SessionError::BadSequence("send EHLO or HELO first")),
            Phase::Ready => self.mail_refusal(&from, &params),
            _ => Some(SessionError::BadSequence("nested MAIL command")),
        };
        if let Some(err) = refusal {
            self.error(err);
            return phase;
        }
        let envelope = Envelope {
            body: params.body,
            smtputf8: params.smtputf8,
        };
        self.events.push_back(Event::Mail { from, params });
        Phase::Asked(Question::Mail(envelope))
    }

    fn mail_refusal(&self, from: &ReversePath, params: &MailParams) -> Option<SessionError> {
        if self.params.tls_required && !self.tls_active {
            Some(SessionError::TlsRequired)
        } else if params
            .size
            .is_some_and(|s| s > self.params.max_message_size)
        {
            // RFC 1870 §6.2: refuse at MAIL when the declared size is over the limit.
            Some(SessionError::MessageTooBig)
        } else if params.body == Body::BinaryMime && !self.params.binarymime {
            Some(SessionError::UnsupportedParam)
        } else if !params.smtputf8 && !from.is_ascii() {
            Some(SessionError::NeedsSmtpUtf8)
        } else {
            None
        }
    }

    fn rcpt(&mut self, phase: Phase, to: ForwardPath, params: RcptParams) -> Phase {
        let mut txn = match phase {
            Phase::Mail(txn) if txn.bdat.is_none() => txn,
            Phase::Mail(txn) => {
                self.error(SessionError::BadSequence("RCPT after BDAT"));
                return Phase::Mail(txn);
            }
            other => {
                self.error(SessionError::BadSequence("need MAIL before RCPT"));
                return other;
            }
        };
        txn.rcpt_tried = true;
        if !txn.smtputf8 && !to.is_ascii() {
            self.error(SessionError::NeedsSmtpUtf8);
            return Phase::Mail(txn);
        }
        if txn.accepted >= self.params.max_recipients {
            // RFC 5321 §4.5.3.1.10: the client sends the rest in a later transaction. Its
            // excess recipients are not errors (or `max_errors` would end the session and
            // lose the recipients already accepted), up to a generous bound (as Postfix's
            // smtpd_recipient_overshoot_limit).
            txn.overshoot = txn.overshoot.saturating_add(1);
            if txn.overshoot > MAX_RECIPIENT_OVERSHOOT {
                self.error(SessionError::TooManyRecipients);
            } else {
                self.queue(&reply_for(&SessionError::TooManyRecipients).0);
            }
            return Phase::Mail(txn);
        }
        self.events.push_back(Event::Rcpt { to, params });
        Phase::Asked(Question::Rcpt(txn))
    }

    fn data(&mut self, phase: Phase) -> Phase {
        let txn = match phase {
            Phase::Mail(txn) => txn,
            other => {
                self.error(SessionError::BadSequence("need MAIL and RCPT before DATA"));
                return other;
            }
        };
        let refusal = if txn.bdat.is_some() {
            Some(SessionError::BadSequence("DATA after BDAT"))
        } else if txn.body == Body::BinaryMime {
            // RFC 3030 §3: BINARYMIME content can only come by BDAT.
            Some(SessionError::BinaryNeedsBdat)
        } else {
            txn.recipients_missing()
        };
        if let Some(err) = refusal {
            self.error(err);
            return Phase::Mail(txn);
        }
        self.events.push_back(Event::DataStart { bdat: false });
        Phase::Asked(Question::Data(txn))
    }

    fn bdat(&mut self, phase: Phase, size: u64, last: bool) -> Phase {
        let refusal = match &phase {
            Phase::Mail(txn) => txn.recipients_missing(),
            _ => Some(SessionError::BadSequence("need MAIL and RCPT before BDAT")),
        };
        let dest = match (phase, refusal) {
            (Phase::Mail(mut txn), None) => {
                let mut bdat = match txn.bdat.take() {
                    Some(bdat) => bdat,
                    None => {
                        self.events.push_back(Event::DataStart { bdat: true });
                        BdatMessage::new(self.params.bare_lf)
                    }
                };
                bdat.declared = bdat.declared.saturating_add(size);
                if bdat.declared > self.params.max_message_size {
                    bdat.msg.fail(SessionError::MessageTooBig, &mut self.events);
                    self.own_refusal = Some(SessionError::MessageTooBig);
                }
                ChunkDest::Message { txn, bdat }
            }
            (phase, refusal) => {
                // The chunk is still read (and dropped): its octets are never commands.
                self.count_error();
                ChunkDest::Discard {
                    err: refusal.unwrap_or(SessionError::Local("BDAT state")),
                    resume: Box::new(phase),
                }
            }
        };
        Phase::Chunk(ChunkRead {
            reader: ChunkReader::new(size),
            size,
            last,
            dest,
        })
    }

    fn starttls(&mut self, phase: Phase, input: &mut BytesMut) -> Phase {
        let refusal = if !self.params.starttls || self.tls_active {
            Some(SessionError::TlsUnavailable)
        } else {
            match phase {
                Phase::AwaitHelo => Some(SessionError::BadSequence("send EHLO first")),
                Phase::Ready => None,
                _ => Some(SessionError::BadSequence("STARTTLS inside a transaction")),
            }
        };
        if let Some(err) = refusal {
            self.error(err);
            return phase;
        }
        self.queue(&Reply::ready_for_tls());
        // RFC 3207 §4.2 / CVE-2011-0411: anything pipelined after STARTTLS is plaintext
        // injected before the handshake; it must not run as a command.
        input.clear();
        self.lines = LineReader::default();
        self.events.push_back(Event::StartTls);
        Phase::TlsHandshake
    }

    // ---- message content ----

    /// DATA content; true (the phase always moves on or consumes input).
    fn read_data(&mut self, input: &mut BytesMut) -> bool {
        let mut data = match self.take_phase() {
            Phase::Data(data) => data,
            other => {
                self.phase = other;
                return false;
            }
        };
        let mut pieces = self.take_pieces();
        let feed = data.decoder.feed(input, &mut pieces);
        let source = input.split_to(feed.consumed).freeze();
        self.deliver(&mut data.msg, pieces, &source);
        self.phase = if feed.done {
            self.message_complete(data.msg)
        } else {
            Phase::Data(data)
        };
        true
    }

    /// BDAT chunk octets; false when waiting for more input.
    fn read_chunk(&mut self, input: &mut BytesMut) -> bool {
        let mut chunk = match self.take_phase() {
            Phase::Chunk(chunk) => chunk,
            other => {
                self.phase = other;
                return false;
            }
        };
        let n = chunk.reader.take(input.len());
        if n > 0 {
            let source = input.split_to(n).freeze();
            if let ChunkDest::Message { bdat, .. } = &mut chunk.dest {
                let mut pieces = self.take_pieces();
                bdat.ends.feed(&source, &mut pieces);
                self.deliver(&mut bdat.msg, pieces, &source);
            }
        }
        if !chunk.reader.is_done() {
            self.phase = Phase::Chunk(chunk);
            return n > 0;
        }
        self.phase = match chunk.dest {
            ChunkDest::Discard { err, resume } => {
                self.message_failed(&err);
                *resume
            }
            ChunkDest::Message { txn: _, mut bdat } if chunk.last => {
                let mut pieces = self.take_pieces();
                bdat.ends.finish(&mut pieces);
                self.deliver(&mut bdat.msg, pieces, &Bytes::new());
                self.message_complete(bdat.msg)
            }
            ChunkDest::Message { mut txn, bdat } => {
                match &bdat.msg.failed {
                    Some(err) => self.message_failed(&err.clone()),
                    None => self.queue(&Reply::chunk_received(chunk.size)),
                }
                txn.bdat = Some(bdat);
                Phase::Mail(txn)
            }
        };
        true
    }

    /// The reusable piece list, empty.
    fn take_pieces(&mut self) -> Vec<Piece> {
        let mut pieces = std::mem::take(&mut self.pieces);
        pieces.clear();
        pieces
    }

    /// Hands decoded pieces (ranges of `source`) to the message, as events.
    fn deliver(&mut self, msg: &mut Message, mut pieces: Vec<Piece>, source: &Bytes) {
        let max = self.params.max_message_size;
        for piece in pieces.drain(..) {
            msg.piece(piece, source, max, &mut self.events);
        }
        msg.flush(&mut self.events);
        self.pieces = pieces;
        if std::mem::take(&mut msg.refused_here) {
            self.own_refusal = msg.failed.clone();
        }
    }

    /// The end of a message: ask for the final reply, or give the failure reply.
    fn message_complete(&mut self, msg: Message) -> Phase {
        match msg.failed {
            Some(err) => {
                self.message_failed(&err);
                Phase::Ready
            }
            None => {
                self.events.push_back(Event::DataEnd);
                Phase::Asked(Question::DataEnd)
            }
        }
    }
}

#[derive(Debug)]
struct Helo {
    name: String,
    extended: bool,
}

/// When the client last made progress, for the command and data timeouts.
#[derive(Debug)]
struct Clock {
    since: Instant,
    /// An answer was given after `since`: the client's time starts at the next call that
    /// knows the time.
    restart_pending: bool,
}

impl Clock {
    fn restart(&mut self, now: Instant) {
        self.since = now;
        self.restart_pending = false;
    }
}

/// Where the session is. Each phase holds only what is valid in it.
#[derive(Debug)]
enum Phase {
    /// No EHLO/HELO yet (a new session, or just after the TLS handshake).
    AwaitHelo,
    /// Greeted, no transaction.
    Ready,
    /// A question is with the relay; no input is consumed until [`Server::answer`].
    Asked(Question),
    /// MAIL accepted: reading RCPT, DATA, BDAT and other commands.
    Mail(Txn),
    /// Reading DATA content after `354`.
    Data(DataRead),
    /// Reading the octets of one BDAT chunk.
    Chunk(ChunkRead),
    /// `220` to STARTTLS sent; waiting for [`Server::tls_started`].
    TlsHandshake,
    /// The session is over.
    Closed,
    /// Only seen while a transition holds the real phase.
    Poisoned,
}

impl Phase {
    /// Whether the relay may hold downstream state for a transaction that has not ended (so
    /// dropping this phase owes it an `Abort`).
    fn transaction_live(&self) -> bool {
        match self {
            Phase::Asked(_) => true,
            Phase::Mail(txn) => txn.bdat.as_ref().map_or(true, |b| b.msg.failed.is_none()),
            Phase::Data(data) => data.msg.failed.is_none(),
            Phase::Chunk(chunk) => match &chunk.dest {
                ChunkDest::Message { bdat, .. } => bdat.msg.failed.is_none(),
                ChunkDest::Discard { resume, .. } => resume.transaction_live(),
            },
            Phase::AwaitHelo
            | Phase::Ready
            | Phase::TlsHandshake
            | Phase::Closed
            | Phase::Poisoned => false,
        }
    }
}

/// A question waiting for [`Server::answer`], with what the answer needs.
#[derive(Debug)]
enum Question {
    Mail(Envelope),
    Rcpt(Txn),
    Data(Txn),
    DataEnd,
}

/// What a transaction remembers of its MAIL command.
#[derive(Clone, Copy, Debug)]
struct Envelope {
    body: Body,
    smtputf8: bool,
}

/// An open transaction (MAIL accepted).
#[derive(Debug)]
struct Txn {
    body: Body,
    smtputf8: bool,
    /// Recipients the relay accepted.
    accepted: usize,
    /// Whether any RCPT was tried (DATA then gets `554` rather than `503`).
    rcpt_tried: bool,
    /// RCPTs refused for `max_recipients` so far.
    overshoot: u32,
    /// The message, once the first BDAT came.
    bdat: Option<BdatMessage>,
}

impl Txn {
    fn new(envelope: Envelope) -> Txn {
        Txn {
            body: envelope.body,
            smtputf8: envelope.smtputf8,
            accepted: 0,
            rcpt_tried: false,
            overshoot: 0,
            bdat: None,
        }
    }

    /// Why the message cannot start yet, if no recipient was accepted.
    fn recipients_missing(&self) -> Option<SessionError> {
        match (self.accepted, self.rcpt_tried) {
            (0, true) => Some(SessionError::NoValidRecipients),
            (0, false) => Some(SessionError::BadSequence("need RCPT before DATA or BDAT")),
            _ => None,
        }
    }
}

/// DATA content being read.
#[derive(Debug)]
struct DataRead {
    decoder: DataDecoder,
    msg: Message,
}

impl DataRead {
    fn new(policy: BareLf) -> DataRead {
        DataRead {
            decoder: DataDecoder::new(policy),
            msg: Message::default(),
        }
    }
}

/// A message arriving in BDAT chunks.
#[derive(Debug)]
struct BdatMessage {
    ends: LineEnds,
    /// Octets announced by the BDAT commands so far.
    declared: u64,
    msg: Message,
}

impl BdatMessage {
    fn new(policy: BareLf) -> BdatMessage {
        BdatMessage {
            ends: LineEnds::new(policy),
            declared: 0,
            msg: Message::default(),
        }
    }
}

/// One BDAT chunk being read.
#[derive(Debug)]
struct ChunkRead {
    reader: ChunkReader,
    size: u64,
    last: bool,
    dest: ChunkDest,
}

/// Where the octets of a chunk go.
#[derive(Debug)]
enum ChunkDest {
    /// Into the message of this transaction.
    Message { txn: Txn, bdat: BdatMessage },
    /// Nowhere: the BDAT command was refused with `err` (replied once the chunk is read);
    /// then the session goes back to `resume`.
    Discard {
        err: SessionError,
        resume: Box<Phase>,
    },
}

/// Message content on its way to the relay: size accounting, failure and small-piece
/// coalescing.
#[derive(Debug, Default)]
struct Message {
    /// Content octets emitted so far.
    octets: u64,
    /// Why the message is refused; its content is dropped from then on.
    failed: Option<SessionError>,
    /// Small pieces waiting to go out as one owned `Bytes`.
    small: BytesMut,
    /// `failed` was set by this core (not by the relay) and not yet reported.
    refused_here: bool,
}

impl Message {
    fn piece(&mut self, piece: Piece, source: &Bytes, max: u64, events: &mut VecDeque<Event>) {
        let bytes = match piece {
            Piece::Input(range) => source.slice(range),
            Piece::Static(s) => Bytes::from_static(s),
            Piece::BareLineEnd => return self.fail(SessionError::BareLineFeed, events),
        };
        if self.failed.is_some() {
            return;
        }
        self.octets = self.octets.saturating_add(bytes.len() as u64);
        if self.octets > max {
            // Enforced on the bytes actually received, whatever SIZE or BDAT declared.
            return self.fail(SessionError::MessageTooBig, events);
        }
        if bytes.len() < SMALL_PIECE {
            if self.small.len() + bytes.len() > MAX_OWNED_PIECE {
                self.flush(events);
            }
            self.small.extend_from_slice(&bytes);
        } else {
            self.flush(events);
            events.push_back(Event::Data(bytes));
        }
    }

    fn flush(&mut self, events: &mut VecDeque<Event>) {
        if !self.small.is_empty() {
            events.push_back(Event::Data(self.small.split().freeze()));
        }
    }

    /// The server refuses the message: the relay is told at once with `Abort`.
    fn fail(&mut self, err: SessionError, events: &mut VecDeque<Event>) {
        if self.failed.is_none() {
            self.fail_quietly(err);
            self.refused_here = true;
            events.push_back(Event::Abort);
        }
    }

    /// The relay refuses the message (it knows already).
    fn fail_quietly(&mut self, err: SessionError) {
        if self.failed.is_none() {
            self.failed = Some(err);
            self.small.clear();
        }
    }
}

/// Finds command lines in the input without copying them, remembering how far it looked.
#[derive(Debug, Default)]
struct LineReader {
    /// Bytes at the front of the input already known to hold no LF.
    scanned: usize,
    /// Inside an over-long line: drop everything through the next LF.
    discarding: bool,
}

/// A command line found at the front of the input.
enum Line {
    /// `text_len` bytes of command, `line_len` with the line end (CRLF or bare LF).
    Complete { text_len: usize, line_len: usize },
    /// A line over [`MAX_COMMAND_LINE`] was discarded through its LF.
    TooLong,
}

impl LineReader {
    fn next(&mut self, input: &mut BytesMut) -> Option<Line> {
        loop {
            if self.discarding {
                let Some(lf) = memchr::memchr(b'\n', input) else {
                    input.clear();
                    return None;
                };
                input.advance(lf + 1);
                self.discarding = false;
                return Some(Line::TooLong);
            }
            let window = input.len().min(MAX_COMMAND_LINE);
            let from = self.scanned.min(window);
            if let Some(k) = memchr::memchr(b'\n', &input[from..window]) {
                let lf = from + k;
                self.scanned = 0;
                let text_len = if lf > 0 && input[lf - 1] == b'\r' {
                    lf - 1
                } else {
                    lf
                };
                return Some(Line::Complete {
                    text_len,
                    line_len: lf + 1,
                });
            }
            if input.len() < MAX_COMMAND_LINE {
                self.scanned = input.len();
                return None;
            }
            // RFC 5321 §4.5.3.1.4: 512 octets with CRLF; never hold more than that.
            self.scanned = 0;
            self.discarding = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn params() -> ServerParams {
        ServerParams {
            hostname: "mx.test".into(),
            max_message_size: 1000,
            max_recipients: 3,
            max_errors: 5,
            bare_lf: BareLf::Normalize,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            starttls: true,
            tls_required: false,
            binarymime: true,
        }
    }

    /// What a session did: every reply (as its last line) and every event (as short text;
    /// consecutive `Data` pieces joined, so piece boundaries do not matter).
    #[derive(PartialEq, Default, Clone)]
    struct Transcript {
        out: Vec<u8>,
        events: Vec<String>,
    }

    impl std::fmt::Debug for Transcript {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Transcript")
                .field("out", &String::from_utf8_lossy(&self.out))
                .field("events", &self.events)
                .finish()
        }
    }

    impl Transcript {
        fn replies(&self) -> Vec<String> {
            let text = String::from_utf8_lossy(&self.out);
            text.split_terminator("\r\n")
                .filter(|line| line.as_bytes().get(3) != Some(&b'-'))
                .map(str::to_string)
                .collect()
        }

        fn record(&mut self, event: &Event) {
            let text = match event {
                Event::Helo { name, extended } => {
                    format!("{} {name}", if *extended { "ehlo" } else { "helo" })
                }
                Event::Mail { from, .. } => format!("mail <{from}>"),
                Event::Rcpt { to, .. } => format!("rcpt <{to}>"),
                Event::DataStart { bdat } => (if *bdat { "bdat" } else { "data" }).to_string(),
                Event::Data(bytes) => {
                    let piece = bytes.escape_ascii().to_string();
                    if let Some(last) = self.events.last_mut() {
                        if last.starts_with("content:") {
                            last.push_str(&piece);
                            return;
                        }
                    }
                    format!("content:{piece}")
                }
                Event::DataEnd => "end".to_string(),
                Event::Abort => {
                    // Content streamed before an abort depends on how input was split; the
                    // relay drops it either way.
                    if self
                        .events
                        .last()
                        .is_some_and(|e| e.starts_with("content:"))
                    {
                        self.events.pop();
                    }
                    "abort".to_string()
                }
                Event::StartTls => "starttls".to_string(),
                Event::Close => "close".to_string(),
            };
            self.events.push(text);
        }
    }

    /// The relay's stand-in: answers every question at once. MAIL from `refuse@...` gets
    /// 550, RCPT to `unknown@...` 550 and to `later@...` 451; DATA gets 354 and the end of a
    /// message 250. A STARTTLS "handshake" completes at once.
    fn auto_answer(server: &mut Server, event: &Event) {
        match event {
            Event::Mail { from, .. } => {
                let refuse = matches!(from, ReversePath::Mailbox(m) if m.local == "refuse");
                server.answer(if refuse {
                    Reply::new(550, Some(EnhancedCode::new(5, 7, 1)), "No")
                } else {
                    Reply::mail_ok()
                });
            }
            Event::Rcpt { to, .. } => server.answer(match to.local.as_str() {
                "unknown" => Reply::new(550, Some(EnhancedCode::new(5, 1, 1)), "No such user"),
                "later" => Reply::new(451, Some(EnhancedCode::new(4, 3, 0)), "Try later"),
                _ => Reply::rcpt_ok(),
            }),
            Event::DataStart { bdat: false } => server.answer(Reply::start_data()),
            Event::DataEnd => server.answer(Reply::message_ok()),
            Event::StartTls => server.tls_started(),
            _ => {}
        }
    }

    use crate::smtp::reply::EnhancedCode;

    /// Feeds what is buffered, answering questions, until nothing moves.
    fn drive(server: &mut Server, now: Instant, buf: &mut BytesMut, t: &mut Transcript) {
        loop {
            let before = buf.len();
            server.handle_input(now, buf);
            let mut answered = false;
            while let Some(event) = server.poll_event() {
                t.record(&event);
                answered = true;
                auto_answer(server, &event);
            }
            server.poll_output(&mut t.out);
            if !answered && buf.len() == before {
                break;
            }
        }
    }

    fn run(params: ServerParams, parts: &[&[u8]]) -> Transcript {
        let now = Instant::now();
        let mut server = Server::new(params, now);
        let mut t = Transcript::default();
        let mut buf = BytesMut::new();
        drive(&mut server, now, &mut buf, &mut t);
        for part in parts {
            buf.extend_from_slice(part);
            drive(&mut server, now, &mut buf, &mut t);
        }
        t
    }

    /// Runs `client` whole, byte by byte and split at every position; all must agree.
    fn run_all_splits(name: &str, params: &ServerParams, client: &[u8]) -> Transcript {
        let whole = run(params.clone(), &[client]);
        let bytewise = run(params.clone(), &client.chunks(1).collect::<Vec<_>>());
        assert_eq!(bytewise, whole, "{name}: byte by byte differs from whole");
        for i in 0..=client.len() {
            let split = run(params.clone(), &[&client[..i], &client[i..]]);
            assert_eq!(split, whole, "{name}: split at {i} differs from whole");
        }
        whole
    }

    struct Row {
        name: &'static str,
        setup: fn(&mut ServerParams),
        client: Vec<u8>,
        /// Prefixes of the last line of each reply, greeting included.
        replies: &'static [&'static str],
        events: &'static [&'static str],
        /// STARTTLS discards what is already buffered, so splits legitimately differ.
        whole_only: bool,
    }

    fn row(
        name: &'static str,
        client: impl AsRef<[u8]>,
        replies: &'static [&'static str],
        events: &'static [&'static str],
    ) -> Row {
        Row {
            name,
            setup: |_| {},
            client: client.as_ref().to_vec(),
            replies,
            events,
            whole_only: false,
        }
    }

    impl Row {
        fn with(mut self, setup: fn(&mut ServerParams)) -> Row {
            self.setup = setup;
            self
        }

        fn whole_only(mut self) -> Row {
            self.whole_only = true;
            self
        }
    }

    const ENVELOPE: &str = "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n";

    fn env(rest: &str) -> Vec<u8> {
        format!("{ENVELOPE}{rest}").into_bytes()
    }

    fn env_bytes(rest: &[u8]) -> Vec<u8> {
        let mut v = ENVELOPE.as_bytes().to_vec();
        v.extend_from_slice(rest);
        v
    }

    fn rows() -> Vec<Row> {
        let long_line = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(600));
        let max_line = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE - 7));
        let over_line = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(MAX_COMMAND_LINE - 6));
        let big_body = format!("DATA\r\n{}\r\n.\r\nNOOP\r\n", "y".repeat(1500));
        let big_chunk = format!("BDAT 2000 LAST\r\n{}NOOP\r\n", "z".repeat(2000));
        vec![
            row(
                "basic_data",
                env("DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"),
                &["220 mx.test ESMTP conbool", "250 STARTTLS", "250 2.1.0", "250 2.1.5", "354 ", "250 2.0.0", "221 2.0.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "data", "content:Subject: x\\r\\n\\r\\nhi\\r\\n", "end", "close"],
            ),
            row(
                "helo_lowercase_verbs",
                "helo c.example\r\nmail from:<a@b.example>\r\nrcpt to:<c@d.example>\r\ndata\r\nx\r\n.\r\n",
                &["220", "250 mx.test", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"],
                &["helo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "data", "content:x\\r\\n", "end"],
            ),
            row(
                "bare_lf_command_lines",
                "EHLO c.example\nNOOP\n",
                &["220", "250 STARTTLS", "250 2.0.0"],
                &["ehlo c.example"],
            ),
            row(
                "mail_before_helo",
                "MAIL FROM:<a@b.example>\r\n",
                &["220", "503 5.5.1"],
                &[],
            ),
            row("rcpt_before_mail", "EHLO c\r\nRCPT TO:<c@d.example>\r\n", &["220", "250 ", "503 5.5.1"], &["ehlo c"]),
            row(
                "data_before_rcpt",
                "EHLO c\r\nMAIL FROM:<a@b.example>\r\nDATA\r\n",
                &["220", "250 ", "250 2.1.0", "503 5.5.1"],
                &["ehlo c", "mail <a@b.example>"],
            ),
            row(
                "nested_mail",
                env("MAIL FROM:<x@b.example>\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "503 5.5.1"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>"],
            ),
            row(
                "all_recipients_refused_then_data",
                "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<unknown@d.example>\r\nRCPT TO:<later@d.example>\r\nDATA\r\n",
                &["220", "250 ", "250 2.1.0", "550 5.1.1", "451 4.3.0", "554 5.5.1"],
                &["ehlo c", "mail <a@b.example>", "rcpt <unknown@d.example>", "rcpt <later@d.example>"],
            ),
            row(
                "mail_refused_then_rcpt_is_out_of_sequence",
                "EHLO c\r\nMAIL FROM:<refuse@b.example>\r\nRCPT TO:<c@d.example>\r\n",
                &["220", "250 ", "550 5.7.1", "503 5.5.1"],
                &["ehlo c", "mail <refuse@b.example>"],
            ),
            row(
                "declared_size_over_max",
                "EHLO c\r\nMAIL FROM:<a@b.example> SIZE=1001\r\nMAIL FROM:<a@b.example> SIZE=1000\r\n",
                &["220", "250 ", "552 5.3.4", "250 2.1.0"],
                &["ehlo c", "mail <a@b.example>"],
            ),
            row(
                "unknown_parameter",
                "EHLO c\r\nMAIL FROM:<a@b.example> AUTH=<>\r\n",
                &["220", "250 ", "555 5.5.4"],
                &["ehlo c"],
            ),
            row(
                "non_ascii_needs_smtputf8",
                "EHLO c\r\nMAIL FROM:<j\u{f6}rg@b.example>\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<j\u{f6}rg@d.example>\r\n",
                &["220", "250 ", "553 5.6.7", "250 2.1.0", "553 5.6.7"],
                &["ehlo c", "mail <a@b.example>"],
            ),
            row(
                "non_ascii_with_smtputf8",
                "EHLO c\r\nMAIL FROM:<j\u{f6}rg@b.example> SMTPUTF8\r\nRCPT TO:<j\u{f6}rg@d.example>\r\n",
                &["220", "250 ", "250 2.1.0", "250 2.1.5"],
                &["ehlo c", "mail <j\u{f6}rg@b.example>", "rcpt <j\u{f6}rg@d.example>"],
            ),
            row(
                "postmaster_and_source_route",
                "EHLO c\r\nMAIL FROM:<@x.example:a@b.example>\r\nRCPT TO:<Postmaster>\r\n",
                &["220", "250 ", "250 2.1.0", "250 2.1.5"],
                &["ehlo c", "mail <a@b.example>", "rcpt <Postmaster>"],
            ),
            row(
                "informational_commands",
                "VRFY a\r\nEXPN b\r\nHELP\r\nNOOP\r\nRSET\r\n",
                &["220", "252 2.5.0", "502 5.5.1", "214 2.0.0", "250 2.0.0", "250 2.0.0"],
                &[],
            ),
            row(
                "rset_mid_transaction_aborts",
                env("RSET\r\nRCPT TO:<c@d.example>\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "250 2.0.0", "503 5.5.1"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "abort"],
            ),
            row(
                "ehlo_mid_transaction_aborts",
                env("EHLO again\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "250 STARTTLS"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "abort", "ehlo again"],
            ),
            row(
                "too_many_recipients",
                "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<r1@d.example>\r\nRCPT TO:<unknown@d.example>\r\nRCPT TO:<r2@d.example>\r\nRCPT TO:<r3@d.example>\r\nRCPT TO:<r4@d.example>\r\n",
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "250 2.1.5", "452 4.5.3"],
                &["ehlo c", "mail <a@b.example>", "rcpt <r1@d.example>", "rcpt <unknown@d.example>", "rcpt <r2@d.example>", "rcpt <r3@d.example>"],
            ),
            row(
                "too_many_errors_closes",
                env("BOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nNOOP\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1", "421 4.7.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "abort", "close"],
            ),
            row("overlong_line", long_line, &["220", "500 5.5.6", "250 2.0.0"], &[]),
            row("line_of_exactly_512_octets", max_line, &["220", "250 2.0.0"], &[]),
            row("line_of_513_octets", over_line, &["220", "500 5.5.6", "250 2.0.0"], &[]),
            row(
                "control_bytes_in_commands",
                b"NOOP\0\r\nNOOP\rMAIL FROM:<a@b>\r\nEHLO \xff\r\nNOOP \xff\r\n".as_slice(),
                &["220", "500 5.5.2", "500 5.5.2", "501 5.5.4", "250 2.0.0"],
                &[],
            ),
            row(
                "dot_stuffing_undone",
                env("DATA\r\nTest\r\n..\r\nmail\r\n.\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "data", "content:Test\\r\\n.\\r\\nmail\\r\\n", "end"],
            ),
            row(
                "message_over_max_size",
                env(&big_body),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "354", "552 5.3.4", "250 2.0.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "data", "abort"],
            ),
            row(
                "bare_lf_rejected",
                env("DATA\r\na\nb\r\n.\r\nMAIL FROM:<a@b.example>\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "354", "550 5.6.11", "250 2.1.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "data", "abort", "mail <a@b.example>"],
            )
            .with(|p| p.bare_lf = BareLf::Reject),
            row(
                "bare_lf_normalized",
                env("DATA\r\na\nb\rc\r\n.\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "data", "content:a\\r\\nb\\r\\nc\\r\\n", "end"],
            ),
            row(
                "bare_lf_accepted",
                env("DATA\r\na\nb\rc\r\n.\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "data", "content:a\\nb\\rc\\r\\n", "end"],
            )
            .with(|p| p.bare_lf = BareLf::Accept),
            row(
                "bdat_chunks",
                env("BDAT 5\r\nhelloBDAT 8 LAST\r\n world\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "250 2.0.0 5 octets received", "250 2.0.0 Message accepted"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "bdat", "content:hello world\\r\\n", "end"],
            ),
            row(
                "bdat_zero_last",
                env("BDAT 3\r\nabcBDAT 0 LAST\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "250 2.0.0 3 octets", "250 2.0.0 Message"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "bdat", "content:abc", "end"],
            ),
            row(
                "bdat_chunk_over_max_is_read_then_refused",
                env(&big_chunk),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "552 5.3.4", "250 2.0.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "bdat", "abort"],
            ),
            row(
                "bdat_after_failed_chunk_is_discarded",
                env(&format!("BDAT 1001\r\n{}BDAT 4 LAST\r\nQUITRSET\r\n", "q".repeat(1001))),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "552 5.3.4", "552 5.3.4", "250 2.0.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "bdat", "abort"],
            ),
            row(
                "data_after_bdat",
                env("BDAT 1\r\nxDATA\r\nRCPT TO:<e@d.example>\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "250 2.0.0 1 octets", "503 5.5.1", "503 5.5.1"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "bdat", "content:x"],
            ),
            row(
                "bdat_out_of_sequence_chunk_is_not_commands",
                "EHLO c\r\nBDAT 28 LAST\r\nMAIL FROM:<evil@x.example>\r\nNOOP\r\n",
                &["220", "250 ", "503 5.5.1", "250 2.0.0"],
                &["ehlo c"],
            ),
            row(
                "bdat_without_valid_recipient",
                "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<unknown@d.example>\r\nBDAT 4 LAST\r\nRSETNOOP\r\n",
                &["220", "250 ", "250 2.1.0", "550 5.1.1", "554 5.5.1", "250 2.0.0"],
                &["ehlo c", "mail <a@b.example>", "rcpt <unknown@d.example>"],
            ),
            row(
                "bad_bdat_size",
                env("BDAT x\r\nBDAT 18446744073709551616\r\nNOOP\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "501 5.5.4", "501 5.5.4", "250 2.0.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>"],
            ),
            row(
                "binarymime_needs_bdat",
                "EHLO c\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\nRCPT TO:<c@d.example>\r\nDATA\r\nBDAT 2 LAST\r\n\0\n",
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "503 5.5.1", "250 2.0.0"],
                &["ehlo c", "mail <a@b.example>", "rcpt <c@d.example>", "bdat", "content:\\x00\\r\\n", "end"],
            ),
            row(
                "binarymime_not_offered",
                "EHLO c\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\n",
                &["220", "250 ", "555 5.5.4"],
                &["ehlo c"],
            )
            .with(|p| p.binarymime = false),
            row(
                "bdat_bare_lf_rejected",
                env("BDAT 3 LAST\r\na\nbNOOP\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "550 5.6.11", "250 2.0.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "bdat", "abort"],
            )
            .with(|p| p.bare_lf = BareLf::Reject),
            row(
                "bdat_cr_lf_across_chunks_is_not_bare",
                env("BDAT 2\r\na\rBDAT 1 LAST\r\n\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "250 2.0.0 2 octets", "250 2.0.0 Message"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "bdat", "content:a\\r\\n", "end"],
            )
            .with(|p| p.bare_lf = BareLf::Reject),
            row(
                "bdat_trailing_cr_normalized",
                env("BDAT 2 LAST\r\na\r"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "250 2.0.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "bdat", "content:a\\r\\n", "end"],
            ),
            row(
                "starttls_discards_pipelined_commands",
                "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.example>\r\n",
                &["220", "250 STARTTLS", "220 2.0.0"],
                &["ehlo c", "starttls"],
            )
            .whole_only(),
            row(
                "starttls_in_transaction",
                env("STARTTLS\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "503 5.5.1"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>"],
            ),
            row("starttls_before_ehlo", "STARTTLS\r\n", &["220", "503 5.5.1"], &[]),
            row(
                "starttls_not_configured",
                "EHLO c\r\nSTARTTLS\r\n",
                &["220", "250 DSN", "454 4.7.0"],
                &["ehlo c"],
            )
            .with(|p| p.starttls = false),
            row(
                "tls_required",
                "EHLO c\r\nMAIL FROM:<a@b.example>\r\n",
                &["220", "250 ", "530 5.7.0"],
                &["ehlo c"],
            )
            .with(|p| p.tls_required = true),
            row(
                "quit_mid_transaction",
                env("QUIT\r\nNOOP\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "221 2.0.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "abort", "close"],
            ),
            row(
                "data_refused_keeps_transaction",
                "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<e@d.example>\r\nDATA\r\nx\r\n.\r\n",
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0"],
                &["ehlo c", "mail <a@b.example>", "rcpt <c@d.example>", "rcpt <e@d.example>", "data", "content:x\\r\\n", "end"],
            ),
            row(
                "eight_bit_body_and_nul",
                env_bytes(b"DATA\r\n\xff\xfe\0\r\n.\r\n"),
                &["220", "250 ", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"],
                &["ehlo c.example", "mail <a@b.example>", "rcpt <c@d.example>", "data", "content:\\xff\\xfe\\x00\\r\\n", "end"],
            ),
        ]
    }

    #[test]
    fn transcripts() {
        for row in rows() {
            let mut params = params();
            (row.setup)(&mut params);
            let t = if row.whole_only {
                run(params, &[&row.client])
            } else {
                run_all_splits(row.name, &params, &row.client)
            };
            let replies = t.replies();
            assert_eq!(
                replies.len(),
                row.replies.len(),
                "{}: replies {replies:#?}",
                row.name
            );
            for (got, want) in replies.iter().zip(row.replies) {
                assert!(
                    got.starts_with(want),
                    "{}: got {got:?}, want {want:?}",
                    row.name
                );
            }
            assert_eq!(t.events, row.events, "{}", row.name);
            for line in String::from_utf8_lossy(&t.out).split_terminator("\r\n") {
                assert!(
                    has_enhanced_code(line),
                    "{}: {line:?} lacks an enhanced code",
                    row.name
                );
            }
        }
    }

    /// RFC 2034: every reply but the greeting, EHLO/HELO and 354 carries `class.x.y`.
    fn has_enhanced_code(line: &str) -> bool {
        let exempt = [
            "220 mx.test ",
            "250-",
            "250 mx.test",
            "250 STARTTLS",
            "250 DSN",
            "354 ",
        ];
        if exempt.iter().any(|e| line.starts_with(e)) {
            return true;
        }
        let b = line.as_bytes();
        b.len() > 9 && b[4] == b[0] && b[5] == b'.' && b[6].is_ascii_digit()
    }

    fn session(params: ServerParams) -> (Server, Instant, Transcript) {
        let now = Instant::now();
        let mut server = Server::new(params, now);
        let mut t = Transcript::default();
        server.poll_output(&mut t.out);
        (server, now, t)
    }

    fn feed(server: &mut Server, now: Instant, t: &mut Transcript, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        drive(server, now, &mut buf, t);
        assert!(buf.is_empty(), "input left over: {buf:?}");
    }

    /// Events without answering anything.
    fn events(server: &mut Server) -> Vec<Event> {
        std::iter::from_fn(|| server.poll_event()).collect()
    }

    fn output(server: &mut Server) -> String {
        let mut out = Vec::new();
        server.poll_output(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn greeting_and_ehlo_wire_form() {
        let (mut server, now, _) = session(params());
        let mut buf = BytesMut::from(&b"EHLO c.example\r\nHELO d.example\r\n"[..]);
        server.handle_input(now, &mut buf);
        let mut p = params();
        p.starttls = false;
        p.binarymime = false;
        let mut plain = Server::new(p, now);
        let mut buf2 = BytesMut::from(&b"EHLO c.example\r\n"[..]);
        plain.handle_input(now, &mut buf2);
        assert!(output(&mut server).ends_with("250 STARTTLS\r\n250 mx.test\r\n"));
        assert_eq!(
            output(&mut plain),
            "220 mx.test ESMTP conbool\r\n250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n\
             250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n\
             250 DSN\r\n"
        );
        assert_eq!(server.helo(), Some("d.example"));
        assert!(!server.is_extended());
    }

    #[test]
    fn ehlo_offers_binarymime_and_starttls_when_configured() {
        let (mut server, now, mut t) = session(params());
        feed(&mut server, now, &mut t, b"EHLO c\r\n");
        let out = String::from_utf8_lossy(&t.out).into_owned();
        assert!(out.contains("250-BINARYMIME\r\n"), "{out}");
        assert!(out.ends_with("250-DSN\r\n250 STARTTLS\r\n"), "{out}");
        assert_eq!(server.helo(), Some("c"));
        assert!(server.is_extended());
    }

    #[test]
    fn questions_block_input_until_answered() {
        let (mut server, now, _) = session(params());
        let mut buf = BytesMut::from(
            &b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nNOOP\r\n"[..],
        );
        server.handle_input(now, &mut buf);
        assert!(server.is_waiting());
        assert_eq!(&buf[..], b"RCPT TO:<c@d.example>\r\nNOOP\r\n");
        assert_eq!(
            server.next_deadline(),
            None,
            "no timeout while the relay decides"
        );
        let evs = events(&mut server);
        assert!(matches!(evs.last(), Some(Event::Mail { .. })), "{evs:?}");
        server.handle_input(now, &mut buf);
        assert_eq!(buf.len(), 29, "still waiting");
        server.answer(Reply::mail_ok());
        assert!(!server.is_waiting());
        server.handle_input(now, &mut buf);
        assert_eq!(&buf[..], b"NOOP\r\n");
        server.answer(Reply::rcpt_ok());
        server.handle_input(now, &mut buf);
        assert!(buf.is_empty());
        let out = output(&mut server);
        assert!(out.ends_with("250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n250 2.0.0 OK\r\n"));
    }

    #[test]
    fn answer_without_question_is_ignored() {
        let (mut server, _, _) = session(params());
        server.answer(Reply::mail_ok());
        assert_eq!(output(&mut server), "");
        assert!(events(&mut server).is_empty());
    }

    #[test]
    fn data_refusal_keeps_the_transaction() {
        let (mut server, now, mut t) = session(params());
        feed(&mut server, now, &mut t, ENVELOPE.as_bytes());
        let mut buf = BytesMut::from(&b"DATA\r\n"[..]);
        server.handle_input(now, &mut buf);
        assert_eq!(events(&mut server), vec![Event::DataStart { bdat: false }]);
        server.answer(Reply::new(
            451,
            Some(EnhancedCode::new(4, 4, 1)),
            "Next hop down",
        ));
        feed(&mut server, now, &mut t, b"DATA\r\nx\r\n.\r\n");
        assert_eq!(t.events[3..], ["data", "content:x\\r\\n", "end"]);
        let out = String::from_utf8_lossy(&t.out).into_owned();
        assert!(out.contains("451 4.4.1 Next hop down\r\n354 "), "{out}");
    }

    #[test]
    fn answer_421_closes() {
        let (mut server, now, _) = session(params());
        let mut buf = BytesMut::from(&b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nNOOP\r\n"[..]);
        server.handle_input(now, &mut buf);
        events(&mut server);
        server.answer(Reply::new(
            421,
            Some(EnhancedCode::new(4, 3, 2)),
            "Shutting down",
        ));
        assert!(server.is_closing());
        assert_eq!(events(&mut server), vec![Event::Close]);
        server.handle_input(now, &mut buf);
        assert_eq!(&buf[..], b"NOOP\r\n", "nothing is read after closing");
    }

    #[test]
    fn eof_mid_transaction_aborts_then_closes() {
        let (mut server, now, mut t) = session(params());
        feed(&mut server, now, &mut t, &env("DATA\r\npartial"));
        server.handle_eof();
        assert_eq!(events(&mut server), vec![Event::Abort, Event::Close]);
        assert!(server.is_closing());
        let (mut idle, _, _) = session(params());
        idle.handle_eof();
        assert_eq!(events(&mut idle), vec![Event::Close]);
    }

    #[test]
    fn command_timeout() {
        let (mut server, now, mut t) = session(params());
        feed(&mut server, now, &mut t, b"EHLO c\r\n");
        let deadline = server.next_deadline().expect("deadline");
        assert_eq!(deadline, now + Duration::from_secs(300));
        server.handle_timeout(deadline - Duration::from_secs(1));
        assert!(!server.is_closing());
        server.handle_timeout(deadline);
        assert!(output(&mut server).starts_with("421 4.4.2"));
        assert_eq!(events(&mut server), vec![Event::Close]);
        assert_eq!(server.next_deadline(), None);
    }

    #[test]
    fn data_timeout_aborts() {
        let (mut server, now, mut t) = session(params());
        feed(&mut server, now, &mut t, &env("DATA\r\nsome"));
        let later = now + Duration::from_secs(100);
        feed(&mut server, later, &mut t, b" more");
        let deadline = server.next_deadline().expect("deadline");
        assert_eq!(deadline, later + Duration::from_secs(180));
        server.handle_timeout(deadline);
        let out = output(&mut server);
        assert!(
            out.contains("421 4.4.2 Timeout waiting for message data"),
            "{out}"
        );
        assert_eq!(events(&mut server), vec![Event::Abort, Event::Close]);
    }

    #[test]
    fn clock_restarts_after_an_answer() {
        let (mut server, now, _) = session(params());
        let mut buf = BytesMut::from(&b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n"[..]);
        server.handle_input(now, &mut buf);
        events(&mut server);
        assert_eq!(server.next_deadline(), None);
        // The relay took 400 s (longer than the command timeout) to answer.
        server.answer(Reply::mail_ok());
        let answered = now + Duration::from_secs(400);
        server.handle_timeout(answered);
        assert!(
            !server.is_closing(),
            "the client's time starts at the answer"
        );
        assert_eq!(
            server.next_deadline(),
            Some(answered + Duration::from_secs(300))
        );
        // Or, when the relay calls handle_input right after answering:
        let (mut other, now, _) = session(params());
        let mut buf = BytesMut::from(&b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n"[..]);
        other.handle_input(now, &mut buf);
        other.answer(Reply::mail_ok());
        other.handle_input(answered, &mut buf);
        assert_eq!(
            other.next_deadline(),
            Some(answered + Duration::from_secs(300))
        );
    }

    #[test]
    fn million_pipelined_noops_keep_the_reply_backlog_bounded() {
        const COUNT: usize = 1_000_000;
        const READ: usize = 4096;
        let (mut server, now, _) = session(params());
        let mut pending_client = COUNT * 6;
        let mut buf = BytesMut::with_capacity(READ);
        let mut replies = 0usize;
        let mut max_backlog = 0;
        let mut max_buf = 0;
        let mut out = Vec::new();
        while pending_client > 0 || !buf.is_empty() {
            // A reactor reads only while its buffer has room.
            while pending_client > 0 && buf.len() + 6 <= READ {
                buf.extend_from_slice(b"NOOP\r\n");
                pending_client -= 6;
            }
            max_buf = max_buf.max(buf.len());
            server.handle_input(now, &mut buf);
            max_backlog = max_backlog.max(server.out.len());
            out.clear();
            server.poll_output(&mut out);
            replies += out.len() / b"250 2.0.0 OK\r\n".len();
        }
        assert_eq!(replies, COUNT);
        assert!(
            max_backlog <= MAX_REPLY_BACKLOG + 64,
            "backlog grew to {max_backlog}"
        );
        assert!(max_buf <= READ);
        assert!(events(&mut server).is_empty());
    }

    #[test]
    fn unflushed_replies_stop_command_reading() {
        let (mut server, now, _) = session(params());
        let mut buf = BytesMut::new();
        for _ in 0..10_000 {
            buf.extend_from_slice(b"NOOP\r\n");
        }
        server.handle_input(now, &mut buf);
        assert!(server.out.len() <= MAX_REPLY_BACKLOG + 64);
        assert!(!buf.is_empty(), "reading stopped at the backlog bound");
        let left = buf.len();
        server.handle_input(now, &mut buf);
        assert_eq!(buf.len(), left, "nothing more until output is drained");
        output(&mut server);
        server.handle_input(now, &mut buf);
        assert!(buf.len() < left);
    }

    #[test]
    fn bdat_of_two_to_the_63_is_counted_not_buffered() {
        let (mut server, now, mut t) = session(params());
        feed(
            &mut server,
            now,
            &mut t,
            &env("BDAT 9223372036854775808 LAST\r\n"),
        );
        assert_eq!(t.events[3..], ["bdat", "abort"]);
        // A megabyte of it, including things that look like commands.
        let block = b"QUIT\r\nRSET\r\n.\r\n".repeat(1 << 16);
        let mut buf = BytesMut::from(&block[..]);
        server.handle_input(now, &mut buf);
        assert!(buf.is_empty(), "chunk octets are consumed as they come");
        assert!(events(&mut server).is_empty());
        assert_eq!(
            output(&mut server),
            "",
            "no reply before the chunk is complete"
        );
        assert!(!server.is_closing());
        let deadline = server.next_deadline().expect("data timeout runs");
        assert_eq!(deadline, now + Duration::from_secs(180));
        server.handle_timeout(deadline);
        assert!(output(&mut server).starts_with("421 4.4.2"));
        assert_eq!(events(&mut server), vec![Event::Close]);
    }

    #[test]
    fn fail_message_during_data_discards_and_answers_at_end() {
        let (mut server, now, mut t) = session(params());
        feed(&mut server, now, &mut t, &env("DATA\r\nSubject: x\r\n"));
        server.fail_message(SessionError::RejectedByRule("spam".into()));
        t.out.clear();
        feed(&mut server, now, &mut t, b"more\r\n.\r\nNOOP\r\n");
        assert_eq!(
            String::from_utf8_lossy(&t.out),
            "550 5.7.1 spam\r\n250 2.0.0 OK\r\n"
        );
        assert_eq!(
            t.events.last().map(String::as_str),
            Some("content:Subject: x\\r\\n")
        );
    }

    #[test]
    fn fail_message_header_too_big_closes_after_the_reply() {
        let (mut server, now, mut t) = session(params());
        feed(&mut server, now, &mut t, &env("DATA\r\nX: y\r\n"));
        server.fail_message(SessionError::HeaderTooBig);
        t.out.clear();
        t.events.clear();
        feed(&mut server, now, &mut t, b"z\r\n.\r\n");
        assert!(String::from_utf8_lossy(&t.out).starts_with("552 5.3.4"));
        assert_eq!(t.events, ["close"]);
    }

    #[test]
    fn fail_message_while_end_of_data_is_asked() {
        let (mut server, now, mut t) = session(params());
        feed(&mut server, now, &mut t, ENVELOPE.as_bytes());
        let mut buf = BytesMut::from(&b"DATA\r\n"[..]);
        server.handle_input(now, &mut buf);
        server.answer(Reply::start_data());
        buf.extend_from_slice(b"x\r\n.\r\n");
        server.handle_input(now, &mut buf);
        events(&mut server);
        output(&mut server);
        server.fail_message(SessionError::Downstream(
            crate::smtp::error::DownstreamFailure::Timeout,
        ));
        assert!(output(&mut server).starts_with("451 4.4.2"));
        assert!(!server.is_waiting());
        assert!(!server.is_closing());
    }

    #[test]
    fn fail_message_between_bdat_chunks() {
        let (mut server, now, mut t) = session(params());
        feed(&mut server, now, &mut t, &env("BDAT 2\r\nab"));
        server.fail_message(SessionError::RejectedByRule("no".into()));
        t.out.clear();
        t.events.clear();
        feed(
            &mut server,
            now,
            &mut t,
            b"BDAT 2\r\ncdBDAT 1 LAST\r\neNOOP\r\n",
        );
        assert_eq!(
            String::from_utf8_lossy(&t.out),
            "550 5.7.1 no\r\n550 5.7.1 no\r\n250 2.0.0 OK\r\n"
        );
        assert!(t.events.is_empty(), "{:?}", t.events);
    }

    #[test]
    fn refuse_session_sends_421_and_closes() {
        let (mut server, now, mut t) = session(params());
        feed(&mut server, now, &mut t, ENVELOPE.as_bytes());
        server.refuse_session(SessionError::ShuttingDown);
        assert!(output(&mut server).starts_with("421 4.3.2"));
        assert_eq!(events(&mut server), vec![Event::Abort, Event::Close]);
        assert!(server.is_closing());
    }

    #[test]
    fn starttls_then_fresh_session() {
        let (mut server, now, _) = session(params());
        let mut buf = BytesMut::from(&b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.example>\r\n"[..]);
        server.handle_input(now, &mut buf);
        assert!(
            buf.is_empty(),
            "pipelined plaintext after STARTTLS is dropped"
        );
        assert!(output(&mut server).ends_with("220 2.0.0 Ready to start TLS\r\n"));
        let evs = events(&mut server);
        assert_eq!(evs.last(), Some(&Event::StartTls));
        assert_eq!(server.next_deadline(), None);
        buf.extend_from_slice(b"NOOP\r\n");
        server.handle_input(now, &mut buf);
        assert_eq!(buf.len(), 6, "nothing is read during the handshake");
        server.tls_started();
        buf.clear();
        assert!(server.is_tls());
        assert_eq!(server.helo(), None, "the client must EHLO again");
        let mut t = Transcript::default();
        feed(
            &mut server,
            now,
            &mut t,
            b"MAIL FROM:<a@b.example>\r\nEHLO c\r\nSTARTTLS\r\n",
        );
        let out = String::from_utf8_lossy(&t.out).into_owned();
        assert!(out.starts_with("503 5.5.1"), "{out}");
        assert!(!out.contains("STARTTLS"), "{out}");
        assert!(
            out.ends_with("250 DSN\r\n454 4.7.0 TLS not available\r\n"),
            "{out}"
        );
    }

    #[test]
    fn tls_required_is_satisfied_after_starttls() {
        let mut p = params();
        p.tls_required = true;
        let (mut server, now, mut t) = session(p);
        feed(&mut server, now, &mut t, b"EHLO c\r\nSTARTTLS\r\n");
        feed(
            &mut server,
            now,
            &mut t,
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n",
        );
        assert!(String::from_utf8_lossy(&t.out).ends_with("250 2.1.0 Sender OK\r\n"));
    }

    #[test]
    fn data_pieces_are_zero_copy_slices_of_the_input() {
        let (mut server, now, mut t) = session(params());
        feed(&mut server, now, &mut t, ENVELOPE.as_bytes());
        let mut buf = BytesMut::from(&b"DATA\r\n"[..]);
        server.handle_input(now, &mut buf);
        server.answer(Reply::start_data());
        events(&mut server);
        let body = format!("{}\r\n.\r\n", "b".repeat(900));
        buf.extend_from_slice(body.as_bytes());
        let base = buf.as_ptr() as usize;
        server.handle_input(now, &mut buf);
        match events(&mut server).first() {
            Some(Event::Data(bytes)) => {
                assert_eq!(bytes.len(), 902);
                assert_eq!(
                    bytes.as_ptr() as usize,
                    base,
                    "piece points into the read buffer"
                );
            }
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[test]
    fn normalize_does_not_multiply_events() {
        let mut p = params();
        p.max_message_size = 1 << 20;
        let (mut server, now, mut t) = session(p);
        feed(&mut server, now, &mut t, &env("DATA\r\n"));
        let mut buf = BytesMut::from(&b"\n".repeat(100_000)[..]);
        server.handle_input(now, &mut buf);
        let evs = events(&mut server);
        assert!(
            evs.len() <= 100_000 / 1000,
            "{} events for 100 kB",
            evs.len()
        );
        let total: usize = evs
            .iter()
            .map(|e| match e {
                Event::Data(b) => b.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(total, 200_000);
    }

    fn shared_corpus() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
        if dir.is_dir() {
            Some(dir)
        } else {
            eprintln!("skipping: no corpus at {}", dir.display());
            None
        }
    }

    fn content_of(t: &Transcript) -> Vec<String> {
        t.events
            .iter()
            .filter_map(|e| e.strip_prefix("content:").map(str::to_string))
            .collect()
    }

    /// Every smuggling payload, under every policy, fed whole, byte by byte and split at
    /// every position: one message (or a 550 under reject), smuggled commands only as text.
    #[test]
    fn smuggling_payloads_through_the_server() {
        let Some(corpus) = shared_corpus() else {
            return;
        };
        let dir = corpus.join("smtp/smuggling");
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("payloads"))
            .expect("payloads")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "data"))
            .collect();
        files.push(dir.join("aiosmtpd-smuggling.data"));
        files.push(dir.join("aiosmtpd-dots-escaped.data"));
        files.sort();
        assert!(files.len() >= 15);
        let expected_dots = std::fs::read(dir.join("aiosmtpd-dots-escaped.expected")).expect("exp");
        for path in &files {
            let name = path.display().to_string();
            let payload = std::fs::read(path).expect("payload");
            let has_bare = payload.iter().enumerate().any(|(i, &b)| match b {
                b'\r' => payload.get(i + 1) != Some(&b'\n'),
                b'\n' => i == 0 || payload[i - 1] != b'\r',
                _ => false,
            });
            let mut client = env("DATA\r\n");
            client.extend_from_slice(&payload);
            client.extend_from_slice(b"QUIT\r\n");
            for policy in [BareLf::Normalize, BareLf::Reject, BareLf::Accept] {
                let mut p = params();
                p.bare_lf = policy;
                p.max_message_size = 1 << 20;
                let t = run_all_splits(&name, &p, &client);
                let mails = t.events.iter().filter(|e| e.starts_with("mail ")).count();
                assert_eq!(mails, 1, "{name} {policy:?}: {:?}", t.events);
                let replies = t.replies();
                let last_two: Vec<&str> = replies
                    .iter()
                    .rev()
                    .take(2)
                    .rev()
                    .map(String::as_str)
                    .collect();
                if policy == BareLf::Reject && has_bare {
                    assert!(last_two[0].starts_with("550 5.6.11"), "{name}: {replies:?}");
                    assert!(!t.events.contains(&"end".to_string()), "{name}");
                    assert!(t.events.contains(&"abort".to_string()), "{name}");
                    continue;
                }
                assert!(
                    last_two[0].starts_with("250 2.0.0"),
                    "{name} {policy:?}: {replies:?}"
                );
                assert!(last_two[1].starts_with("221"), "{name} {policy:?}");
                assert_eq!(t.events.iter().filter(|e| *e == "end").count(), 1, "{name}");
                let content = content_of(&t).concat();
                if name.contains("payloads/") && !name.contains("00-baseline") {
                    assert!(content.contains("mail FROM:<smuggled"), "{name} {policy:?}");
                }
                if name.contains("aiosmtpd-smuggling") {
                    assert!(content.contains("NO SMUGGLING"), "{name} {policy:?}");
                }
                if name.contains("dots-escaped") {
                    assert_eq!(content, expected_dots.escape_ascii().to_string(), "{name}");
                }
                if policy == BareLf::Normalize {
                    let raw = collect_raw_content(&p, &client);
                    assert!(
                        no_bare_line_ends(&raw),
                        "{name}: bare CR/LF after normalize"
                    );
                }
            }
        }
    }

    /// The message content as bytes (the transcript holds it escaped).
    fn collect_raw_content(params: &ServerParams, client: &[u8]) -> Vec<u8> {
        let now = Instant::now();
        let mut server = Server::new(params.clone(), now);
        let mut buf = BytesMut::from(client);
        let mut content = Vec::new();
        loop {
            let before = buf.len();
            server.handle_input(now, &mut buf);
            let mut any = false;
            while let Some(event) = server.poll_event() {
                any = true;
                if let Event::Data(b) = &event {
                    content.extend_from_slice(b);
                }
                auto_answer(&mut server, &event);
            }
            server.poll_output(&mut Vec::new());
            if !any && buf.len() == before {
                return content;
            }
        }
    }

    fn no_bare_line_ends(content: &[u8]) -> bool {
        content.iter().enumerate().all(|(i, &b)| match b {
            b'\r' => content.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && content[i - 1] == b'\r',
            _ => true,
        })
    }

    /// hannob's pipelining test: two messages pipelined after a proper end of data are two
    /// transactions, in order.
    #[test]
    fn smtpsmug_pipelining_gives_two_messages() {
        let Some(corpus) = shared_corpus() else {
            return;
        };
        let burst =
            std::fs::read(corpus.join("smtp/smuggling/smtpsmug-pipelining.client")).expect("file");
        let mut client = env("DATA\r\n");
        client.extend_from_slice(&burst);
        let t = run_all_splits("smtpsmug-pipelining", &params(), &client);
        let kinds: Vec<&str> = t
            .events
            .iter()
            .map(|e| e.split([' ', ':']).next().unwrap_or(""))
            .collect();
        assert_eq!(
            kinds,
            [
                "ehlo", "mail", "rcpt", "data", "content", "end", "mail", "rcpt", "data",
                "content", "end"
            ]
        );
        let content = content_of(&t);
        assert!(content[0].ends_with("mail 1/2 to test pipelining\\r\\n\\r\\n"));
        assert!(content[1].ends_with("mail 2/2 to test pipelining\\r\\n\\r\\n"));
        assert!(!content[0].contains("MAIL FROM"));
    }

    /// Pseudo-random streams of command and data fragments: whatever the server makes of
    /// them must not depend on how they are cut (STARTTLS is not offered here, since it
    /// legitimately drops what was buffered).
    #[test]
    fn random_streams_are_split_invariant() {
        const TOKENS: &[&[u8]] = &[
            b"EHLO c\r\n",
            b"MAIL FROM:<a@b.example>\r\n",
            b"MAIL FROM:<a@b.example> SIZE=5000\r\n",
            b"RCPT TO:<c@d.example>\r\n",
            b"RCPT TO:<unknown@d.example>\r\n",
            b"DATA\r\n",
            b"BDAT 3\r\n",
            b"BDAT 2 LAST\r\n",
            b"BDAT 0 LAST\r\n",
            b"RSET\r\n",
            b"NOOP\r\n",
            b"STARTTLS\r\n",
            b"BOGUS\r\n",
            b"\r\n.\r\n",
            b".",
            b"..",
            b"\n",
            b"\r",
            b"\0",
            b"text",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let mut p = params();
            p.starttls = false;
            p.max_message_size = 40;
            p.max_errors = 20;
            p.bare_lf = [BareLf::Normalize, BareLf::Reject, BareLf::Accept][round % 3];
            let count = 10 + (next() % 50) as usize;
            let mut client = Vec::new();
            for _ in 0..count {
                client.extend_from_slice(TOKENS[(next() % TOKENS.len() as u64) as usize]);
            }
            let whole = run(p.clone(), &[&client]);
            let bytewise = run(p.clone(), &client.chunks(1).collect::<Vec<_>>());
            assert_eq!(
                bytewise,
                whole,
                "round {round}: {:?}",
                client.escape_ascii()
            );
            for _ in 0..5 {
                let a = (next() % (client.len() as u64 + 1)) as usize;
                let b = a + (next() % ((client.len() - a) as u64 + 1)) as usize;
                let split = run(p.clone(), &[&client[..a], &client[a..b], &client[b..]]);
                assert_eq!(
                    split,
                    whole,
                    "round {round} cut {a},{b}: {:?}",
                    client.escape_ascii()
                );
            }
        }
    }

    #[test]
    fn recipients_over_the_limit_are_not_errors_until_the_overshoot_bound() {
        // max_recipients 3, max_errors 5: 20 more recipients must not end the session (the
        // three accepted ones would be lost), but a client that never stops is cut off.
        let envelope = |extra: usize| {
            let mut c = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n".to_vec();
            for i in 0..3 + extra {
                c.extend_from_slice(format!("RCPT TO:<r{i}@d.example>\r\n").as_bytes());
            }
            c.extend_from_slice(b"DATA\r\n");
            c
        };
        let t = run(params(), &[&envelope(20)]);
        let replies = t.replies();
        assert_eq!(
            replies
                .iter()
                .filter(|r| r.starts_with("452 4.5.3 "))
                .count(),
            20,
            "{t:?}"
        );
        assert!(
            replies.last().is_some_and(|r| r.starts_with("354")),
            "{t:?}"
        );
        let extra = MAX_RECIPIENT_OVERSHOOT as usize + 5;
        let t = run(params(), &[&envelope(extra)]);
        let replies = t.replies();
        assert!(
            replies.last().is_some_and(|r| r.starts_with("421 4.7.0")),
            "{:?}",
            replies.last()
        );
    }
}
