//! The SMTP client phase machine (sans-IO) used toward the next hop: greeting, EHLO and
//! capabilities, optional STARTTLS, a pipelined envelope, DATA with dot-stuffing or BDAT
//! chunks, RSET for reuse, QUIT. Replies go in through [`Client::handle_input`]; commands and
//! message bytes come out through [`Client::poll_output`].
//!
//! API CONTRACT (implemented by the smtp-client work; signatures are fixed, bodies are stubs).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::smtp::command::{ForwardPath, MailParams, RcptParams, ReversePath};
use crate::smtp::outbound::Outbound;
use crate::smtp::reply::Reply;

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
    /// SIZE, if given with a value (0 = no limit).
    pub size: Option<u64>,
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

/// The client side of one connection to a next hop.
#[derive(Debug)]
pub struct Client {
    _params: ClientParams,
}

impl Client {
    /// A new connection; waits for the greeting.
    pub fn new(params: ClientParams, now: Instant) -> Client {
        let _ = now;
        Client { _params: params }
    }

    /// Consumes replies from the front of `input`.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) {
        let _ = (now, input);
        todo!()
    }

    /// The server closed the connection.
    pub fn handle_eof(&mut self) {
        todo!()
    }

    /// Moves queued commands and message bytes into `out`.
    pub fn poll_output(&mut self, out: &mut Outbound) {
        let _ = out;
        todo!()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        todo!()
    }

    /// The server's capabilities (valid after `Ready`).
    pub fn capabilities(&self) -> &Capabilities {
        todo!()
    }

    /// Starts a transaction. Call after `Ready` or `ResetDone` or a `MessageReply`.
    pub fn mail(&mut self, from: &ReversePath, params: &MailParams) {
        let _ = (from, params);
        todo!()
    }

    /// Adds a recipient (pipelined when the server offers PIPELINING).
    pub fn rcpt(&mut self, to: &ForwardPath, params: &RcptParams) {
        let _ = (to, params);
        todo!()
    }

    /// Asks to send the message: DATA, or BDAT mode when offered and allowed.
    pub fn data(&mut self) {
        todo!()
    }

    /// Message content (unstuffed; the client stuffs for DATA and frames for BDAT). Under DATA,
    /// bare CR or LF is written as CRLF.
    pub fn send(&mut self, piece: Bytes) {
        let _ = piece;
        todo!()
    }

    /// Ends the message (`CRLF . CRLF`, or `BDAT n LAST` / `BDAT 0 LAST`).
    pub fn end(&mut self) {
        todo!()
    }

    /// Abandons the transaction with RSET (connection stays usable).
    pub fn rset(&mut self) {
        todo!()
    }

    /// Sends QUIT.
    pub fn quit(&mut self) {
        todo!()
    }

    /// The TLS handshake finished: EHLO again (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        todo!()
    }

    /// Whether a transaction may start now.
    pub fn is_idle(&self) -> bool {
        todo!()
    }

    /// Whether TLS was negotiated on this connection.
    pub fn is_tls(&self) -> bool {
        todo!()
    }

    /// When [`Client::handle_timeout`] must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        todo!()
    }

    /// Time passed: a reply overdue becomes `Failed`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }
}
