//! The SMTP server phase machine (sans-IO). Bytes from the client go in through
//! [`Server::handle_input`]; replies come out through [`Server::poll_output`] and the things the
//! relay must act on through [`Server::poll_event`]. Questions the server cannot answer alone
//! (MAIL, RCPT, DATA, end of message) wait for [`Server::answer`]; meanwhile no further input is
//! consumed, so pipelined replies stay in order (RFC 2920).
//!
//! API CONTRACT (implemented by the smtp-server work; signatures are fixed, bodies are stubs).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::config::BareLf;
use crate::smtp::command::{ForwardPath, MailParams, RcptParams, ReversePath};
use crate::smtp::error::SessionError;
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
#[derive(Debug)]
pub struct Server {
    _params: ServerParams,
}

impl Server {
    /// A new session; queues the `220` greeting.
    pub fn new(params: ServerParams, now: Instant) -> Server {
        let _ = now;
        Server { _params: params }
    }

    /// Consumes a prefix of `input` (the rest stays for a later call, e.g. while an answer is
    /// pending). Message data is split off as `Bytes` without copying.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) {
        let _ = (now, input);
        todo!()
    }

    /// The client closed its side: any transaction is aborted.
    pub fn handle_eof(&mut self) {
        todo!()
    }

    /// Appends queued replies to `out`.
    pub fn poll_output(&mut self, out: &mut Vec<u8>) {
        let _ = out;
        todo!()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }

    /// Answers the oldest pending question (MAIL, RCPT, DATA, end of message) with `reply`; the
    /// reply's class decides the new phase (2xx to MAIL opens the transaction, and so on).
    pub fn answer(&mut self, reply: Reply) {
        let _ = reply;
        todo!()
    }

    /// Refuses the current message because of `err` (downstream failure, rule reject, header
    /// too big): remaining message data is read and discarded, the end of message is answered
    /// with `reply_for(err)` without asking, and `AfterReply::Close` is honoured.
    pub fn fail_message(&mut self, err: SessionError) {
        let _ = err;
        todo!()
    }

    /// Sends `reply_for(err)` now and ends the session (e.g. `421` at shutdown or too many
    /// connections).
    pub fn refuse_session(&mut self, err: SessionError) {
        let _ = err;
        todo!()
    }

    /// The TLS handshake finished: the session restarts at await-EHLO (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        todo!()
    }

    /// When [`Server::handle_timeout`] must be called next (command or data timeout); `None`
    /// while an answer is pending (the relay times the next hop).
    pub fn next_deadline(&self) -> Option<Instant> {
        todo!()
    }

    /// Time passed: on a timeout queue `421 4.4.2`, emit `Abort` if needed, then `Close`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// The HELO/EHLO name, once given.
    pub fn helo(&self) -> Option<&str> {
        todo!()
    }

    /// Whether the client used EHLO (for `with ESMTP`).
    pub fn is_extended(&self) -> bool {
        todo!()
    }

    /// Whether an answer is awaited (no input is consumed meanwhile).
    pub fn is_waiting(&self) -> bool {
        todo!()
    }

    /// Whether the session has ended and output should be flushed then closed.
    pub fn is_closing(&self) -> bool {
        todo!()
    }
}
