//! Everything that can go wrong in a session, who is to blame for it, and the one function
//! that turns it into an SMTP reply ([`reply_for`]). Every refusal the relay sends comes from
//! here, so a code can be checked against the RFC in one place.

use crate::smtp::reply::{EnhancedCode, Reply};

/// Who caused an error: decides logging and whether a retry can help.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Blame {
    /// The SMTP client sent something wrong or is not allowed to do it.
    Client,
    /// The next hop failed or refused; `transient` when a retry may succeed.
    Downstream {
        /// A retry later may succeed.
        transient: bool,
    },
    /// This relay (resources, configuration, shutdown).
    Local,
    /// An internal invariant broke: a bug in conbool.
    Bug(&'static str),
}

/// What the session does after sending the reply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AfterReply {
    /// Keep reading commands.
    Continue,
    /// Flush the reply, then close the connection.
    Close,
}

/// Why the next hop could not take a message (mapped to a `4xx` for the client unless the next
/// hop itself gave a permanent reply, which is mirrored as such).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DownstreamFailure {
    /// Could not connect (refused, unreachable, DNS).
    Connect(String),
    /// TLS to the next hop failed (handshake, verification, policy).
    Tls(String),
    /// The next hop closed the connection or broke the protocol mid-transaction.
    Dropped(String),
    /// The next hop did not answer within the timeout.
    Timeout,
    /// The next hop answered with this reply (mirrored to the client).
    Replied(Reply),
}

/// An error in one SMTP session, with enough detail to choose the reply and log the cause.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SessionError {
    /// Unrecognised command verb.
    UnknownCommand,
    /// The command line is syntactically wrong (the text says what).
    Syntax(&'static str),
    /// A parameter or argument is wrong (the text says what).
    ParamSyntax(&'static str),
    /// An ESMTP parameter we do not support (RFC 5321 §4.1.1.11 / RFC 1869 555).
    UnsupportedParam,
    /// A command line longer than the limit (RFC 5321 §4.5.3.1.4: 512 octets).
    LineTooLong,
    /// Command out of sequence (the text says what was expected).
    BadSequence(&'static str),
    /// Command not implemented (EXPN).
    NotImplemented,
    /// Too many errors in this session (`limits.max_errors`).
    TooManyErrors,
    /// Message larger than `limits.max_message_size` (declared or actual).
    MessageTooBig,
    /// More recipients than `limits.max_recipients`.
    TooManyRecipients,
    /// Header block larger than `limits.max_header_bytes`.
    HeaderTooBig,
    /// More Received headers than `limits.max_hops`.
    TooManyHops,
    /// A bare CR or LF in DATA under `limits.bare_lf = "reject"`.
    BareLineFeed,
    /// MAIL before STARTTLS while `tls.require = true`.
    TlsRequired,
    /// STARTTLS when TLS is already active or not configured.
    TlsUnavailable,
    /// No command within `limits.command_timeout_s`.
    CommandTimeout,
    /// No data within `limits.data_timeout_s`.
    DataTimeout,
    /// More than `limits.max_connections_per_ip` from one address.
    TooManyConnections,
    /// A recipient no tenant owns, from a client trusted by none.
    RelayDenied,
    /// A recipient for another route than the transaction's (retry it in a new transaction).
    OtherRoute,
    /// A trusted client sent a message that already carries its tenant's loop header.
    RoutingLoop,
    /// A `reject` rule matched; the text is the rule's public text.
    RejectedByRule(String),
    /// A non-ASCII address without `SMTPUTF8` (RFC 6531 §3.4).
    NeedsSmtpUtf8,
    /// A non-ASCII address for a next hop that does not offer `SMTPUTF8` (RFC 6531 §3.4: the
    /// message must not be passed on).
    NextHopLacksSmtpUtf8,
    /// `BODY=BINARYMIME` followed by DATA (RFC 3030 §3).
    BinaryNeedsBdat,
    /// DATA or BDAT with no accepted recipient.
    NoValidRecipients,
    /// The next hop failed or refused.
    Downstream(DownstreamFailure),
    /// The relay is shutting down.
    ShuttingDown,
    /// A local resource problem (the text says which).
    Local(&'static str),
}

impl SessionError {
    /// Who is to blame.
    pub fn blame(&self) -> Blame {
        use SessionError::*;
        match self {
            Downstream(DownstreamFailure::Replied(r)) => Blame::Downstream {
                transient: !r.is_permanent(),
            },
            Downstream(_) => Blame::Downstream { transient: true },
            ShuttingDown | Local(_) => Blame::Local,
            _ => Blame::Client,
        }
    }
}

const fn ec(class: u8, subject: u16, detail: u16) -> Option<EnhancedCode> {
    Some(EnhancedCode::new(class, subject, detail))
}

/// The reply for an error and what happens after it. The only place a refusal code is chosen.
pub fn reply_for(err: &SessionError) -> (Reply, AfterReply) {
    use AfterReply::{Close, Continue};
    use SessionError::*;
    let r = |code, e, text: &str| Reply::new(code, e, text.to_string());
    match err {
        UnknownCommand => (r(500, ec(5, 5, 1), "Command unrecognized"), Continue),
        Syntax(what) => (
            r(500, ec(5, 5, 2), &format!("Syntax error: {what}")),
            Continue,
        ),
        ParamSyntax(what) => (
            r(
                501,
                ec(5, 5, 4),
                &format!("Syntax error in parameters: {what}"),
            ),
            Continue,
        ),
        UnsupportedParam => (
            r(
                555,
                ec(5, 5, 4),
                "Unsupported MAIL FROM or RCPT TO parameter",
            ),
            Continue,
        ),
        LineTooLong => (r(500, ec(5, 5, 6), "Line too long"), Continue),
        BadSequence(what) => (
            r(
                503,
                ec(5, 5, 1),
                &format!("Bad sequence of commands: {what}"),
            ),
            Continue,
        ),
        NotImplemented => (r(502, ec(5, 5, 1), "Command not implemented"), Continue),
        TooManyErrors => (
            r(421, ec(4, 7, 0), "Too many errors, closing connection"),
            Close,
        ),
        MessageTooBig => (
            r(
                552,
                ec(5, 3, 4),
                "Message size exceeds fixed maximum message size",
            ),
            Continue,
        ),
        TooManyRecipients => (r(452, ec(4, 5, 3), "Too many recipients"), Continue),
        HeaderTooBig => (
            r(552, ec(5, 3, 4), "Message header size exceeds limit"),
            Close,
        ),
        TooManyHops => (
            r(554, ec(5, 4, 6), "Too many hops (Received headers)"),
            Continue,
        ),
        BareLineFeed => (
            r(
                550,
                ec(5, 6, 11),
                "Bare CR or LF in message data is not allowed; use CRLF",
            ),
            Continue,
        ),
        TlsRequired => (
            r(530, ec(5, 7, 0), "Must issue a STARTTLS command first"),
            Continue,
        ),
        TlsUnavailable => (r(454, ec(4, 7, 0), "TLS not available"), Continue),
        CommandTimeout => (
            r(
                421,
                ec(4, 4, 2),
                "Timeout waiting for a command, closing connection",
            ),
            Close,
        ),
        DataTimeout => (
            r(
                421,
                ec(4, 4, 2),
                "Timeout waiting for message data, closing connection",
            ),
            Close,
        ),
        TooManyConnections => (
            r(
                421,
                ec(4, 7, 0),
                "Too many connections from your address, try later",
            ),
            Close,
        ),
        RelayDenied => (r(554, ec(5, 7, 1), "Relay access denied"), Continue),
        OtherRoute => (
            r(
                452,
                ec(4, 5, 3),
                "Recipient belongs to another route; send it in a new transaction",
            ),
            Continue,
        ),
        RoutingLoop => (r(554, ec(5, 4, 6), "Routing loop detected"), Continue),
        RejectedByRule(text) => (r(550, ec(5, 7, 1), text), Continue),
        NeedsSmtpUtf8 => (
            r(553, ec(5, 6, 7), "Non-ASCII address requires SMTPUTF8"),
            Continue,
        ),
        NextHopLacksSmtpUtf8 => (
            r(
                553,
                ec(5, 6, 7),
                "Non-ASCII address, but the next hop does not support SMTPUTF8",
            ),
            Continue,
        ),
        BinaryNeedsBdat => (
            r(503, ec(5, 5, 1), "BODY=BINARYMIME requires BDAT"),
            Continue,
        ),
        NoValidRecipients => (r(554, ec(5, 5, 1), "No valid recipients"), Continue),
        Downstream(f) => (downstream_reply(f), Continue),
        ShuttingDown => (
            r(421, ec(4, 3, 2), "Service shutting down, try later"),
            Close,
        ),
        Local(what) => (
            r(451, ec(4, 3, 0), &format!("Local error: {what}")),
            Continue,
        ),
    }
}

fn downstream_reply(f: &DownstreamFailure) -> Reply {
    let r = |code, e, text: String| Reply::new(code, e, text);
    match f {
        DownstreamFailure::Connect(why) => {
            r(451, ec(4, 4, 1), format!("Next hop unreachable: {why}"))
        }
        DownstreamFailure::Tls(why) => {
            r(451, ec(4, 7, 5), format!("TLS to next hop failed: {why}"))
        }
        DownstreamFailure::Dropped(why) => r(
            451,
            ec(4, 4, 2),
            format!("Next hop dropped the connection: {why}"),
        ),
        DownstreamFailure::Timeout => r(451, ec(4, 4, 2), "Next hop timed out".to_string()),
        DownstreamFailure::Replied(reply) => mirror(reply),
    }
}

/// A next-hop reply as the client sees it: same class, code and enhanced code; the text kept
/// but bounded. A reply outside 4xx/5xx (a protocol violation) becomes `451 4.4.0`.
fn mirror(reply: &Reply) -> Reply {
    if !(reply.is_transient() || reply.is_permanent()) {
        return Reply::new(
            451,
            ec(4, 4, 0),
            format!("Next hop sent an unexpected reply {}", reply.code()),
        );
    }
    let default = if reply.is_permanent() {
        ec(5, 0, 0)
    } else {
        ec(4, 0, 0)
    };
    let mut text = reply.text();
    text.truncate(400);
    Reply::new(reply.code(), reply.enhanced().or(default), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reply_has_an_enhanced_code_matching_its_class() {
        let all = [
            SessionError::UnknownCommand,
            SessionError::LineTooLong,
            SessionError::TooManyErrors,
            SessionError::MessageTooBig,
            SessionError::TooManyRecipients,
            SessionError::HeaderTooBig,
            SessionError::BareLineFeed,
            SessionError::TlsRequired,
            SessionError::CommandTimeout,
            SessionError::RelayDenied,
            SessionError::RoutingLoop,
            SessionError::Downstream(DownstreamFailure::Timeout),
            SessionError::Downstream(DownstreamFailure::Replied(Reply::new(250, None, "odd"))),
            SessionError::Downstream(DownstreamFailure::Replied(Reply::new(550, None, "no"))),
        ];
        for e in all {
            let (reply, _) = reply_for(&e);
            let enh = reply
                .enhanced()
                .unwrap_or_else(|| panic!("{e:?}: no enhanced code"));
            assert_eq!(u16::from(enh.class), reply.code() / 100, "{e:?}");
        }
    }
}
