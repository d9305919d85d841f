//! Every metric name and every label value the relay exports, in one place: the names are part
//! of the operator contract (README "Operations"), so they change only on purpose. Label sets
//! are closed enums or bounded tables, never free text from a peer.

use crate::smtp::error::{DownstreamFailure, SessionError};

/// Prefix of every metric.
pub const PREFIX: &str = "conbool_";

/// Why a connection was refused before the greeting (`conbool_connections_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// More than `limits.max_connections_per_ip` from one address.
    PerIpLimit,
    /// The relay is stopping.
    ShuttingDown,
    /// A PROXY protocol header that was missing, malformed, late or from a peer outside
    /// `server.proxy_from` (closed without a greeting).
    ProxyProtocol,
}

impl RefuseReason {
    /// Every reason, in label order.
    pub const ALL: [RefuseReason; 3] = [
        RefuseReason::PerIpLimit,
        RefuseReason::ShuttingDown,
        RefuseReason::ProxyProtocol,
    ];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            RefuseReason::PerIpLimit => "per_ip_limit",
            RefuseReason::ShuttingDown => "shutting_down",
            RefuseReason::ProxyProtocol => "proxy_protocol",
        }
    }
}

/// What became of a message or a recipient: the class of the reply the client heard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `2xx`.
    Accepted,
    /// `5xx`.
    Rejected,
    /// `4xx` (the sender retries).
    Deferred,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 3] = [Outcome::Accepted, Outcome::Rejected, Outcome::Deferred];

    /// From a reply code's first digit (anything but `2` and `4` counts as rejected).
    pub fn of_code(code: u16) -> Outcome {
        match code / 100 {
            2 => Outcome::Accepted,
            4 => Outcome::Deferred,
            _ => Outcome::Rejected,
        }
    }

    /// From a reply's text (`250 2.0.0 ...`): its first digit.
    pub fn of_reply(reply: &str) -> Outcome {
        match reply.as_bytes().first() {
            Some(b'2') => Outcome::Accepted,
            Some(b'4') => Outcome::Deferred,
            _ => Outcome::Rejected,
        }
    }

    /// The `outcome` label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Rejected => "rejected",
            Outcome::Deferred => "deferred",
        }
    }

    /// Position in [`Outcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The `reason` label of `conbool_messages_total`: who or what decided the message's fate.
/// `delivered` for a message the next hop took; [`reason_of`] names the rest.
pub const REASONS: [&str; 13] = [
    "delivered",
    "next_hop_reply",
    "next_hop_failure",
    "rule",
    "routing_loop",
    "too_many_hops",
    "header_too_big",
    "message_too_big",
    "bare_lf",
    "timeout",
    "shutting_down",
    "local",
    "other",
];

/// The [`REASONS`] entry for an error that refused or deferred a message.
pub fn reason_of(err: &SessionError) -> &'static str {
    match err {
        SessionError::Downstream(DownstreamFailure::Replied(_)) => "next_hop_reply",
        SessionError::Downstream(_) | SessionError::NextHopLacksSmtpUtf8 => "next_hop_failure",
        SessionError::RejectedByRule(_) => "rule",
        SessionError::RoutingLoop => "routing_loop",
        SessionError::TooManyHops => "too_many_hops",
        SessionError::HeaderTooBig => "header_too_big",
        SessionError::MessageTooBig => "message_too_big",
        SessionError::BareLineFeed => "bare_lf",
        SessionError::CommandTimeout | SessionError::DataTimeout => "timeout",
        SessionError::ShuttingDown => "shutting_down",
        SessionError::Local(_) => "local",
        _ => "other",
    }
}

/// Position of a reason in [`REASONS`] (`other` when unknown).
pub fn reason_index(reason: &str) -> usize {
    REASONS
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(REASONS.len() - 1)
}

/// Which side of the relay a TLS counter is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Toward clients (our STARTTLS server side).
    Client,
    /// Toward next hops (our STARTTLS client side).
    NextHop,
}

impl Side {
    /// Every side, in label order.
    pub const ALL: [Side; 2] = [Side::Client, Side::NextHop];

    /// The `side` label value.
    pub fn label(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::NextHop => "next_hop",
        }
    }
}

/// The command a next-hop reply answered (`conbool_next_hop_replies_total{stage}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `MAIL FROM`.
    Mail,
    /// `RCPT TO`.
    Rcpt,
    /// `DATA` (its refusal; a `354` is not counted).
    Data,
    /// The end of the message (`.` or the last `BDAT`).
    Message,
}

impl Stage {
    /// Every stage, in label order.
    pub const ALL: [Stage; 4] = [Stage::Mail, Stage::Rcpt, Stage::Data, Stage::Message];

    /// The `stage` label value.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::Message => "message",
        }
    }
}

/// The `class` label values of reply classes, indexed by [`Outcome::index`].
pub const CLASSES: [&str; 3] = ["2xx", "5xx", "4xx"];

/// Enhanced status codes `c.s.d` (RFC 3463) get a series each when `s` is below this...
pub const CODE_SUBJECTS: usize = 8;
/// ... and `d` below this; any other code (or none) counts under `code="other"`.
pub const CODE_DETAILS: usize = 16;
/// Code slots per reply class: every `s.d` in range, then `other`.
pub const CODE_SLOTS: usize = CODE_SUBJECTS * CODE_DETAILS + 1;

/// The slot of the enhanced code at the start of `text` after the reply code
/// (`250 2.0.0 queued` → slot of `0.0`); [`CODE_SLOTS`]` - 1` for none or out of range.
pub fn code_slot(reply: &str) -> usize {
    let other = CODE_SLOTS - 1;
    let Some(rest) = reply.get(4..) else {
        return other;
    };
    let code = rest.split(' ').next().unwrap_or("");
    let mut parts = code.split('.');
    let (Some(_class), Some(s), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return other;
    };
    let canonical = |t: &str| !t.is_empty() && t.len() <= 3 && (t == "0" || !t.starts_with('0'));
    if !canonical(s) || !canonical(d) {
        return other;
    }
    match (s.parse::<usize>(), d.parse::<usize>()) {
        (Ok(s), Ok(d)) if s < CODE_SUBJECTS && d < CODE_DETAILS => s * CODE_DETAILS + d,
        _ => other,
    }
}

/// The `code` label of a slot in class `outcome` (`5.7.1`, or `other`).
pub fn code_label(outcome: Outcome, slot: usize) -> String {
    if slot >= CODE_SLOTS - 1 {
        return "other".to_string();
    }
    let class = match outcome {
        Outcome::Accepted => 2,
        Outcome::Deferred => 4,
        Outcome::Rejected => 5,
    };
    format!("{class}.{}.{}", slot / CODE_DETAILS, slot % CODE_DETAILS)
}

/// Upper bounds (inclusive, microseconds) of the latency histograms' buckets:
/// `conbool_end_of_data_reply_seconds` and `conbool_next_hop_connect_seconds`.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Most rules that get a `conbool_rule_hits_total` series each (rules past it are not counted).
pub const MAX_RULE_SERIES: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_slots_round_trip_and_bound_the_label_set() {
        let rows: &[(&str, &str, Outcome, &str)] = &[
            ("queued", "250 2.0.0 queued", Outcome::Accepted, "2.0.0"),
            ("policy", "550 5.7.1 no", Outcome::Rejected, "5.7.1"),
            ("hops", "554 5.4.6 loop", Outcome::Rejected, "5.4.6"),
            (
                "smuggling",
                "550 5.6.11 bare LF",
                Outcome::Rejected,
                "5.6.11",
            ),
            ("temp", "451 4.4.1 later", Outcome::Deferred, "4.4.1"),
            ("no_code", "451 later", Outcome::Deferred, "other"),
            ("big_detail", "550 5.1.999 x", Outcome::Rejected, "other"),
            ("big_subject", "550 5.9.1 x", Outcome::Rejected, "other"),
            ("leading_zero", "550 5.07.1 x", Outcome::Rejected, "other"),
            ("short", "55", Outcome::Rejected, "other"),
            ("empty", "", Outcome::Rejected, "other"),
        ];
        for (row, reply, outcome, label) in rows {
            assert_eq!(Outcome::of_reply(reply), *outcome, "{row}");
            assert_eq!(code_label(*outcome, code_slot(reply)), *label, "{row}");
        }
    }

    #[test]
    fn every_error_reason_is_a_label() {
        let errs = [
            SessionError::RoutingLoop,
            SessionError::RejectedByRule("x".into()),
            SessionError::ShuttingDown,
            SessionError::UnknownCommand,
        ];
        for e in errs {
            assert!(REASONS.contains(&reason_of(&e)), "{e:?}");
        }
        assert_eq!(REASONS[reason_index("nonsense")], "other");
    }
}
