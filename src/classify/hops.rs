//! The receiving side's own `Received` hops: which of a message's top `Received` fields a
//! collecting site (or the operator's own servers) added after the message reached it.
//!
//! The relay scans mail as it arrives from the sender's side: the only `Received` fields then
//! are the hops before it. Mail collected from mailboxes (the labelled corpus, or an
//! operator's own export) carries more: the hop where the collector's mail exchanger took the
//! message (at the relay, that is the field the relay itself writes after the scan), and every
//! hop inside the collector's site after it. A model that learns those learns the collector:
//! in the labelled corpus the `by` host of the first fields is `csmining.org` on 425 of
//! csdmc2010's 560 spam and on none of its ham. [`InternalHosts`] names the receiving side's
//! hosts, and [`InternalHosts::hop`] walks the fields from the top as SpamAssassin's trust path
//! does (`internal_networks`): a hop whose `by` host is internal was written by the receiving
//! side; the walk stops after the first such hop whose `from` host is not internal (where the
//! message came in) or at the first hop whose `by` host is not internal.
//!
//! Internal are the names listed (each with its subdomains), the addresses and networks
//! listed, `localhost`, and private, loopback and link-local addresses. An archive's list may
//! limit an entry to some of its sources (csdmc2010 collected part of its mail through Gmail,
//! whose hosts are the senders' in the other archives). A `from` clause with an address
//! literal (`[192.0.2.1]`, as MTAs record the peer, or a bare address in a comment, as Exchange
//! does) is judged by that address, and a public one by the reverse name recorded with it,
//! never by the name the peer announced (`HELO`): a sender can announce any name.
//!
//! [`Walk`] takes the fields one at a time, so the same walk serves `conbool train` and `eval`
//! (which drop the fields from the message files) and the tokenizer at the relay, which skips
//! them as the scan gives them (`spam.internal_hosts`: the hops and checks of the servers that
//! hand mail to the relay, such as a tenant's Exchange).

use std::net::IpAddr;

use crate::classify::token::tag_value;
use crate::rules::file::Cidr;

/// Whether a field (by name) is one the receiving side writes as a message comes in or passes
/// through its hosts: above its `Received` fields, such a field is the receiving side's too, as
/// the relay would not have it (it checks neither DKIM nor SPF). The checks:
/// `Authentication-Results` (RFC 8601: written by the verifier for its own site),
/// `ARC-Authentication-Results`, `Received-SPF`, sendmail's `X-Authentication-Warning`,
/// OpenDKIM's `DKIM-Filter`, Exim's `Delivery-Date`; an intermediary's `ARC-Seal` and
/// `ARC-Message-Signature` (RFC 8617); Gmail's `X-Gmail-Received` and `X-Received` (its hops
/// inside) and the stamps it puts on mail it sends on (`X-Gm-Message-State`,
/// `X-Google-DKIM-Signature`, `X-Google-Smtp-Source`: above the entry hop, a forwarding
/// mailbox's); Yahoo's `X-YMailISG` and the `X-Originating-IP` its mail exchangers record
/// (webmail writes one for its sender too, but below its own side's hops). In the labelled
/// corpus `Delivery-Date` sits above the entry hop on 353 spamassassin spam and 12 of its
/// ham, `Authentication-Results` on 272 foff-milter messages.
pub fn is_receiving_trace(name: &[u8]) -> bool {
    const TRACE: &[&[u8]] = &[
        b"authentication-results",
        b"arc-authentication-results",
        b"received-spf",
        b"x-authentication-warning",
        b"dkim-filter",
        b"delivery-date",
        b"x-gmail-received",
        b"x-received",
        b"x-gm-message-state",
        b"x-google-dkim-signature",
        b"x-google-smtp-source",
        b"arc-seal",
        b"arc-message-signature",
        b"x-ymailisg",
        b"x-originating-ip",
    ];
    TRACE.iter().any(|t| name.eq_ignore_ascii_case(t))
}

/// Host names of the receiving side (lower case), loaded from a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InternalHosts {
    names: Vec<Vec<u8>>,
    /// Listed addresses and networks.
    networks: Vec<Cidr>,
}

/// What one `Received` field is, walking down from the top of the header block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// Its `by` host is not internal (or it names none): the sender's side starts here.
    External,
    /// Written by the receiving side and handed over by it (or by no one named): more
    /// internal hops may follow.
    Internal,
    /// Written by the receiving side as the message came in from outside: the last one.
    Boundary,
}

impl InternalHosts {
    /// A list: one host name (each also stands for its subdomains), address or network
    /// (`192.0.2.0/24`) per line, optionally followed by the sources (the labels file's third
    /// column) it is limited to; `#` starts a comment, blank lines are skipped. The hosts of
    /// `source` are those listed without sources and those listed for it.
    pub fn parse(text: &str, source: Option<&str>) -> Result<InternalHosts, String> {
        let mut names = Vec::new();
        let mut networks = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let mut words = line
                .split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace();
            let Some(entry) = words.next() else {
                continue;
            };
            let mut sources = words.peekable();
            let applies = sources.peek().is_none() || sources.any(|s| Some(s) == source);
            let addr = entry.split('/').next().unwrap_or_default();
            if let Ok(ip) = addr.parse::<IpAddr>() {
                let Some(net) = Cidr::parse(entry) else {
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    return Err(format!(
                        "line {}: {entry:?}: the prefix length is 0 to {max}",
                        i + 1
                    ));
                };
                if applies {
                    networks.push(net);
                }
                continue;
            }
            let name = entry.trim_start_matches("*.").trim_start_matches('.');
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                return Err(format!(
                    "line {}: {entry:?} is neither a host name nor an address or network (one per line, `#` for comments)",
                    i + 1
                ));
            }
            if applies {
                names.push(name.to_ascii_lowercase().into_bytes());
            }
        }
        Ok(InternalHosts { names, networks })
    }

    /// The first line (from 1) of `text` whose entry is limited to sources, if any: only
    /// `conbool train` and `conbool eval` know a message's source.
    pub fn limited_line(text: &str) -> Option<usize> {
        text.lines()
            .position(|line| {
                let line = line.split('#').next().unwrap_or_default();
                line.split_whitespace().nth(1).is_some()
            })
            .map(|i| i + 1)
    }

    /// Nothing listed: [`InternalHosts::hop`] is not asked (no field is dropped).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.networks.is_empty()
    }

    /// How many names, addresses and networks are listed.
    pub fn len(&self) -> usize {
        self.names.len() + self.networks.len()
    }

    /// What the `Received` field with this value (folded or not) is, walking from the top.
    pub fn hop(&self, value: &[u8]) -> Hop {
        let clauses = Clauses::of(value);
        match clauses.by {
            Some(by) if self.is_internal_host(by) => {}
            _ => return Hop::External,
        }
        match clauses.from {
            Some(from) if !self.is_internal_peer(&from) => Hop::Boundary,
            _ => Hop::Internal,
        }
    }

    /// A host as a `by` clause or a `HELO` name gives it: a name (internal when listed, or
    /// `localhost`), or an address literal, bracketed or not.
    fn is_internal_host(&self, host: &[u8]) -> bool {
        match address(host) {
            Some(ip) => self.is_internal_address(ip),
            None => self.is_internal_name(host),
        }
    }

    /// Private, loopback and link-local addresses, and the listed networks (as a rule's
    /// `client_ip` matches: an IPv4-mapped IPv6 address is in an IPv4 network).
    fn is_internal_address(&self, ip: IpAddr) -> bool {
        is_private(ip) || self.networks.iter().any(|net| net.contains(ip))
    }

    fn is_internal_name(&self, host: &[u8]) -> bool {
        let host = host.strip_suffix(b".").unwrap_or(host);
        if host.eq_ignore_ascii_case(b"localhost")
            || host.eq_ignore_ascii_case(b"localhost.localdomain")
        {
            return true;
        }
        self.names.iter().any(|n| {
            host.len() >= n.len()
                && host[host.len() - n.len()..].eq_ignore_ascii_case(n)
                && (host.len() == n.len() || host[host.len() - n.len() - 1] == b'.')
        })
    }

    /// A `from` clause: by its address literal when it has one (a public address by the
    /// reverse name recorded with it), else by its name.
    fn is_internal_peer(&self, from: &Peer<'_>) -> bool {
        match from.address {
            Some(ip) if self.is_internal_address(ip) => true,
            Some(_) => from.reverse.is_some_and(|r| self.is_internal_name(r)),
            None => self.is_internal_host(from.helo),
        }
    }
}

/// What the walk makes of one top-level header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Not the receiving side's (or the walk has ended): the field stays.
    Kept,
    /// A `Received` field the receiving side wrote ([`Hop::Internal`] or [`Hop::Boundary`]).
    Hop(Hop),
    /// A check the receiving side recorded ([`is_receiving_trace`]) above the end of the walk.
    Trace,
}

/// The walk down a message's top-level header fields, one field at a time in their order (as
/// the scan gives them to the tokenizer, and as `conbool train` reads a file): `Received`
/// fields go while their `by` host is internal, up to and including the one where the message
/// came in; a receiving trace ([`is_receiving_trace`]) goes while the walk is on. Deciding a
/// trace when it is seen, without waiting for the `Received` field below it, means a trace
/// between the last internal hop and a first `Received` field that is not (or at the top of
/// a message whose first `Received` field is not) goes too. Such a field is no sender's hop
/// record, and the relay trusts no check it did not make itself. It also keeps the walk a
/// one-pass filter the streaming tokenizer can run ([`crate::classify::Tokenizer`]).
///
/// Below the end of the walk a trace still goes when the host it names as its writer is
/// internal (`trace_writer`): MTAs and their milters write their checks below their own
/// `Received` field (Gmail's `Received-SPF` and `Authentication-Results`, OpenDKIM's
/// `DKIM-Filter`), so the receiving side's checks of the hop where a message came in sit
/// under that hop.
#[derive(Clone, Copy, Debug)]
pub struct Walk {
    /// Still among the receiving side's `Received` fields.
    on: bool,
}

impl Walk {
    /// A walk with `hosts` (none when nothing is listed).
    pub fn new(hosts: &InternalHosts) -> Walk {
        Walk {
            on: !hosts.is_empty(),
        }
    }

    /// The next top-level field, by name and value (folded or not).
    pub fn field(&mut self, hosts: &InternalHosts, name: &[u8], value: &[u8]) -> Fate {
        if hosts.is_empty() {
            return Fate::Kept;
        }
        if self.on && name.eq_ignore_ascii_case(b"received") {
            let hop = hosts.hop(value);
            self.on = hop == Hop::Internal;
            return match hop {
                Hop::External => Fate::Kept,
                hop => Fate::Hop(hop),
            };
        }
        if !is_receiving_trace(name) {
            return Fate::Kept;
        }
        if self.on || trace_writer(name, value).is_some_and(|w| hosts.is_internal_host(w)) {
            Fate::Trace
        } else {
            Fate::Kept
        }
    }
}

/// The host a receiving trace ([`is_receiving_trace`]) names as the one that made its check,
/// where its format names one: `Authentication-Results`' authserv-id (RFC 8601 section 2.2:
/// the verifier's own name), the same after `i=N;` in `ARC-Authentication-Results` (RFC
/// 8617), the first name of `Received-SPF`'s comment (`pass (mx.example: domain of ...`,
/// RFC 7208 section 9.1) or its `receiver=` key, the name before the colon of
/// `X-Authentication-Warning` (sendmail), and the host after the version of `DKIM-Filter`
/// (OpenDKIM: `OpenDKIM Filter v2.11.0 mx.example 613FXt05104988`).
pub fn trace_writer<'a>(name: &[u8], value: &'a [u8]) -> Option<&'a [u8]> {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    let host = |w: &'a [u8]| Some(w).filter(|w| is_host_name(w));
    let authserv_id = |value: &'a [u8]| {
        let (word, _) = Words::new(value).find(|&(_, depth)| depth == 0)?;
        host(word.split(|&b| b == b';').next()?)
    };
    if is(b"authentication-results") {
        authserv_id(value)
    } else if is(b"arc-authentication-results") {
        authserv_id(&value[memchr::memchr(b';', value)? + 1..])
    } else if is(b"received-spf") {
        if let Some(receiver) = tag_value(value, b"receiver") {
            return host(receiver.split(|b| b.is_ascii_whitespace()).next()?);
        }
        let (first, _) = Words::new(value).find(|&(_, depth)| depth == 1)?;
        host(first.strip_suffix(b":")?)
    } else if is(b"x-authentication-warning") {
        let (first, _) = Words::new(value).next()?;
        host(first.strip_suffix(b":")?)
    } else if is(b"dkim-filter") {
        let mut words = Words::new(value).map(|(w, _)| w);
        words.find(|w| w.len() > 1 && w[0] == b'v' && w[1].is_ascii_digit())?;
        host(words.next()?)
    } else {
        None
    }
}

/// The `from` clause of a `Received` field: `from helo (reverse [address])`.
#[derive(Debug, PartialEq, Eq)]
struct Peer<'a> {
    /// The name (or literal) after `from`.
    helo: &'a [u8],
    /// The first address literal in the clause.
    address: Option<IpAddr>,
    /// The name recorded beside that address in a comment (`(host [addr])`,
    /// `(user@host [addr])`), when there is one.
    reverse: Option<&'a [u8]>,
}

/// The clauses of a `Received` value the walk needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Clauses<'a> {
    from: Option<Peer<'a>>,
    by: Option<&'a [u8]>,
}

/// Keywords that start a clause of a `Received` value (RFC 5321 section 4.4).
const KEYWORDS: &[&[u8]] = &[b"from", b"by", b"via", b"with", b"id", b"for"];

impl<'a> Clauses<'a> {
    /// Reads the `from` and `by` clauses; comments (nested parentheses) belong to the clause
    /// they are in, and the value ends at its last `;` (the date). Reading stops at the first
    /// clause that starts once both are read (`with`, `id`, `for` ... are not needed, and a
    /// second `from` clause is not the peer's).
    fn of(value: &'a [u8]) -> Clauses<'a> {
        let value = match memchr::memrchr(b';', value) {
            Some(semi) => &value[..semi],
            None => value,
        };
        let mut out = Clauses::default();
        let mut clause: &[u8] = b"";
        let mut first_in_clause = false;
        let mut after_helo = false;
        for (word, depth) in Words::new(value) {
            if depth == 0 && (2..=4).contains(&word.len()) {
                if let Some(k) = KEYWORDS.iter().find(|k| word.eq_ignore_ascii_case(k)) {
                    if out.from.is_some() && out.by.is_some() {
                        break;
                    }
                    clause = k;
                    first_in_clause = true;
                    continue;
                }
            }
            let first = std::mem::replace(&mut first_in_clause, false);
            match clause {
                b"from" if first && depth == 0 => {
                    out.from.get_or_insert(Peer {
                        helo: word,
                        address: address(word),
                        reverse: None,
                    });
                }
                b"from" => {
                    let Some(from) = out.from.as_mut() else {
                        continue;
                    };
                    if word.starts_with(b"[") || depth > 0 && is_bare_address(word) {
                        from.address = from.address.or(address(word));
                    } else if depth > 0 && from.reverse.is_none() && !after_helo {
                        let host = word.rsplit(|&b| b == b'@').next().unwrap_or(word);
                        if is_host_name(host) {
                            from.reverse = Some(host);
                        }
                    }
                    after_helo =
                        word.eq_ignore_ascii_case(b"helo") || word.eq_ignore_ascii_case(b"ehlo");
                }
                b"by" if first && depth == 0 => {
                    out.by.get_or_insert(word);
                }
                _ => {}
            }
        }
        out
    }
}

/// An address written without brackets in a comment, as Exchange records the peer
/// (`from mail.example (192.0.2.1)`, `(2001:db8::1)`).
fn is_bare_address(word: &[u8]) -> bool {
    std::str::from_utf8(word).is_ok_and(|w| w.parse::<IpAddr>().is_ok())
}

/// A dotted host name, or `localhost` (not `HELO`, `helo=name`, `unknown` ...).
fn is_host_name(word: &[u8]) -> bool {
    let word = word.strip_suffix(b".").unwrap_or(word);
    (word.contains(&b'.') || word.eq_ignore_ascii_case(b"localhost"))
        && word
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The words of a `Received` value with their comment depth: runs of bytes between
/// whitespace and parentheses.
struct Words<'a> {
    rest: &'a [u8],
    depth: u32,
}

impl<'a> Words<'a> {
    fn new(value: &'a [u8]) -> Words<'a> {
        Words {
            rest: value,
            depth: 0,
        }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = (&'a [u8], u32);

    fn next(&mut self) -> Option<(&'a [u8], u32)> {
        loop {
            let (&b, rest) = self.rest.split_first()?;
            match b {
                b'(' => self.depth = self.depth.saturating_add(1),
                b')' => self.depth = self.depth.saturating_sub(1),
                b if b.is_ascii_whitespace() => {}
                _ => {
                    let end = self
                        .rest
                        .iter()
                        .position(|&c| c.is_ascii_whitespace() || c == b'(' || c == b')')
                        .unwrap_or(self.rest.len());
                    let (word, rest) = self.rest.split_at(end);
                    self.rest = rest;
                    return Some((word, self.depth));
                }
            }
            self.rest = rest;
        }
    }
}

/// An address literal: `[192.0.2.1]`, `[IPv6:2001:db8::1]` or a bare address (as some MTAs
/// write `by 10.1.2.3`).
fn address(word: &[u8]) -> Option<IpAddr> {
    let inner = word
        .strip_prefix(b"[")
        .map(|w| w.strip_suffix(b"]").unwrap_or(w))
        .unwrap_or(word);
    let inner = match inner.get(..5) {
        Some(p) if p.eq_ignore_ascii_case(b"ipv6:") => &inner[5..],
        _ => inner,
    };
    // Host names have letters past `f`, `-` or `_`: only hex digits, `.` and `:` are parsed.
    if inner.is_empty()
        || !inner
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
    {
        return None;
    }
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// Private, loopback, link-local or unspecified: an address inside someone's own network.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> InternalHosts {
        InternalHosts::parse(
            "# the collectors\ncsmining.org\n*.slashnull.org  # with subdomains\n\njmason.org\n",
            None,
        )
        .expect("parses")
    }

    /// `Received` values from the labelled corpus's archives (and a few made up), and what
    /// each is to a walk with [`hosts`].
    #[test]
    fn hop_rows() {
        let rows: &[(&str, &str, Hop)] = &[
            (
                "collector_internal_by_loopback",
                "from mail3.csmining.org (localhost [127.0.0.1])\r\n\tby mail3.csmining.org (csminingorg Mail) with ESMTP id C7C9B16B91\r\n\tfor <m@mail.csmining.org>; Thu, 15 Apr 2010 21:14:12 +0900 (JST)",
                Hop::Internal,
            ),
            (
                "collector_internal_private_peer",
                "from spamgw.csmining.org (spamgw.csmining.org [192.168.18.120]) by mail3.csmining.org with ESMTP id C3",
                Hop::Internal,
            ),
            (
                "collector_boundary",
                "from linux.org ([210.204.162.254]) by dogma.slashnull.org (8.11.6/8.11.6) with SMTP id g5233XO09773 for <webmaster@efi.ie>; Sun, 2 Jun 2002 04:03:35 +0100",
                Hop::Boundary,
            ),
            (
                "helo_claims_internal_but_address_is_public",
                "from mail.csmining.org (unknown [203.0.113.9]) by mx.csmining.org with ESMTP",
                Hop::Boundary,
            ),
            (
                "public_peer_with_internal_reverse_name",
                "from list.example (listman.jmason.org [66.187.233.211]) by dogma.slashnull.org with ESMTP",
                Hop::Internal,
            ),
            (
                "sendmail_user_at_reverse",
                "from lugh (root@dogma.slashnull.org [194.125.145.45]) by jmason.org (8.9.3) with ESMTP id LAA31610",
                Hop::Internal,
            ),
            (
                "qmail_helo_comment_is_not_the_reverse",
                "from unknown (HELO jmason.org) ([198.51.100.7]) by jmason.org with SMTP",
                Hop::Boundary,
            ),
            (
                "fetchmail_local",
                "from phobos [127.0.0.1]\n\tby localhost with IMAP (fetchmail-5.9.0)\n\tfor zzzz@localhost (single-drop); Thu, 22 Aug 2002 12:36:16 +0100 (IST)",
                Hop::Internal,
            ),
            (
                "by_private_literal_without_from",
                "by 10.142.81.20 with SMTP id e20cs586699wfb;\r\n        Sun, 9 May 2010 23:34:54 -0700 (PDT)",
                Hop::Internal,
            ),
            (
                "sender_side",
                "from liszt.debian.org (liszt.debian.org [82.195.75.100])\n        by mx.google.com with ESMTP id 21si7616834faw.71",
                Hop::External,
            ),
            (
                "listed_name_is_a_suffix_not_a_substring",
                "from a.example ([192.0.2.1]) by notcsmining.org with SMTP",
                Hop::External,
            ),
            (
                "by_public_literal",
                "from a.example ([192.0.2.1]) by [198.51.100.1] with SMTP",
                Hop::External,
            ),
            (
                "ipv6_private_peer",
                "from relay.csmining.org ([IPv6:fd00::25]) by mx.csmining.org with ESMTPS",
                Hop::Internal,
            ),
            (
                "ipv6_public_peer",
                "from relay.example ([IPv6:2001:db8::25]) by mx.csmining.org with ESMTPS",
                Hop::Boundary,
            ),
            (
                "keywords_in_comments_do_not_count",
                "from a.example (by mx.csmining.org) ([192.0.2.1]) by b.example with SMTP",
                Hop::External,
            ),
            (
                "exim_reverse_as_from_word",
                "from mail.jmason.org ([192.0.2.1] helo=x.example) by mx.jmason.org with esmtp (Exim 4.96)",
                Hop::Boundary,
            ),
            (
                "exchange_bare_address_is_the_peer",
                "from mail.csmining.org (203.0.113.9) by mx.csmining.org (10.1.2.3) with Microsoft SMTP Server id 15.20.8207.12",
                Hop::Boundary,
            ),
            (
                "exchange_bare_private_address",
                "from relay.example (10.1.2.4) by mx.csmining.org (10.1.2.3) with Microsoft SMTP Server id 15.20.8207.12",
                Hop::Internal,
            ),
            (
                "exchange_bare_ipv6_address",
                "from SN7PR11MB6798.csmining.org (2001:db8:806:262::8) by DM4PR11MB5971.csmining.org with HTTPS",
                Hop::Boundary,
            ),
            (
                "by_clause_before_from",
                "by mx.csmining.org with SMTP from a.example ([192.0.2.1])",
                Hop::Boundary,
            ),
            (
                "a_second_from_clause_is_not_the_peer",
                "from relay.csmining.org by mx.csmining.org with SMTP from x.example ([192.0.2.1])",
                Hop::Internal,
            ),
            (
                "host_name_of_hex_letters_is_no_address",
                "from bad.cafe by mx.csmining.org with SMTP",
                Hop::Boundary,
            ),
            (
                "bare_ipv4_mapped_peer",
                "from relay.example (::ffff:10.1.2.4) by mx.csmining.org with SMTP",
                Hop::Internal,
            ),
            ("no_by_clause", "from a.example ([192.0.2.1])", Hop::External),
            ("empty", "", Hop::External),
            (
                "date_only_keyword_after_semicolon",
                "from a.example ([192.0.2.1]); by mx.csmining.org",
                Hop::External,
            ),
        ];
        let h = hosts();
        for &(name, value, want) in rows {
            assert_eq!(h.hop(value.as_bytes()), want, "{name}");
        }
    }

    /// The walk over whole header blocks: field names and values, and what becomes of each.
    #[test]
    fn walk_rows() {
        let internal = "from gw.csmining.org ([10.0.0.2]) by mx.csmining.org with SMTP";
        let boundary = "from a.example ([192.0.2.1]) by mx.csmining.org with SMTP";
        let sender = "from b.example ([192.0.2.9]) by a.example with SMTP";
        let kept = Fate::Kept;
        let trace = Fate::Trace;
        type Field = (&'static str, &'static str, Fate);
        let rows: &[(&str, &[Field])] = &[
            (
                "traces_above_and_between_hops_go_below_the_boundary_stay",
                &[
                    ("Delivery-Date", "Thu, 1 Jan 2026", trace),
                    ("Received", internal, Fate::Hop(Hop::Internal)),
                    ("Subject", "not a trace", kept),
                    ("Authentication-Results", "mx.csmining.org; spf=pass", trace),
                    ("Received", boundary, Fate::Hop(Hop::Boundary)),
                    ("Authentication-Results", "a.example; spf=pass", kept),
                    ("Received", sender, kept),
                    ("Received", internal, kept),
                ],
            ),
            (
                "below_the_boundary_the_traces_an_internal_host_wrote_go",
                &[
                    ("Received", boundary, Fate::Hop(Hop::Boundary)),
                    (
                        "Received-SPF",
                        "pass (mx.csmining.org: domain of a@b.example)",
                        trace,
                    ),
                    (
                        "Authentication-Results",
                        "mx.csmining.org; dkim=pass",
                        trace,
                    ),
                    (
                        "DKIM-Filter",
                        "OpenDKIM Filter v2.11.0 mx.csmining.org 6130",
                        trace,
                    ),
                    ("Authentication-Results", "a.example; spf=pass", kept),
                    ("Received", sender, kept),
                    (
                        "X-Authentication-Warning",
                        "gw.jmason.org: set sender",
                        trace,
                    ),
                    (
                        "ARC-Authentication-Results",
                        "i=1; mx.google.com; dkim=pass",
                        kept,
                    ),
                    ("Received", internal, kept),
                    ("Subject", "mx.csmining.org; dkim=pass", kept),
                ],
            ),
            (
                "a_forwarding_mailboxs_stamps_go_above_the_entry_hop_only",
                &[
                    ("Received", internal, Fate::Hop(Hop::Internal)),
                    ("ARC-Seal", "i=2; a=rsa-sha256; cv=pass", trace),
                    ("X-Gm-Message-State", "AOJu0Yy", trace),
                    ("X-Received", "by 10.0.0.3 with SMTP id x", trace),
                    ("X-Originating-IP", "[192.0.2.1]", trace),
                    ("Received", boundary, Fate::Hop(Hop::Boundary)),
                    ("X-Gm-Message-State", "AOJu0Yy", kept),
                    ("ARC-Seal", "i=1; a=rsa-sha256; cv=none", kept),
                    ("X-Originating-IP", "[192.0.2.1]", kept),
                ],
            ),
            (
                "a_first_hop_that_is_not_internal_ends_the_walk",
                &[
                    ("received-spf", "pass", trace),
                    ("Received", sender, kept),
                    ("Received", boundary, kept),
                    ("X-Authentication-Warning", "a.example: claimed", kept),
                ],
            ),
        ];
        let h = hosts();
        for (row, fields) in rows {
            let mut walk = Walk::new(&h);
            for &(name, value, want) in *fields {
                let got = walk.field(&h, name.as_bytes(), value.as_bytes());
                assert_eq!(got, want, "{row}: {name}: {value}");
            }
            let none = InternalHosts::default();
            let mut walk = Walk::new(&none);
            for &(name, value, _) in *fields {
                assert_eq!(walk.field(&none, name.as_bytes(), value.as_bytes()), kept);
            }
        }
    }

    /// The host each receiving trace names as its writer, as its format gives it.
    #[test]
    fn trace_writer_rows() {
        let rows: &[(&str, &str, Option<&str>)] = &[
            (
                "Authentication-Results",
                "mx.example; spf=pass",
                Some("mx.example"),
            ),
            (
                "authentication-results",
                " (comment) mx.example 1; dkim=pass",
                Some("mx.example"),
            ),
            (
                "Authentication-Results",
                "spf=pass (sender IP is 192.0.2.1)",
                None,
            ),
            ("Authentication-Results", "mx.example;", Some("mx.example")),
            (
                "Authentication-Results",
                "mx.example;dkim=pass",
                Some("mx.example"),
            ),
            (
                "ARC-Authentication-Results",
                "i=2; mx.example; arc=pass",
                Some("mx.example"),
            ),
            ("ARC-Authentication-Results", "mx.example", None),
            (
                "Received-SPF",
                "pass (google.com: domain of a@b.example designates 192.0.2.1)",
                Some("google.com"),
            ),
            (
                "Received-SPF",
                "Pass (mailfrom) identity=mailfrom; client-ip=192.0.2.1; receiver=mx.example;",
                Some("mx.example"),
            ),
            ("Received-SPF", "none (no SPF record)", None),
            (
                "X-Authentication-Warning",
                "host.example: user set sender",
                Some("host.example"),
            ),
            ("X-Authentication-Warning", "Host claimed to be x", None),
            (
                "DKIM-Filter",
                "OpenDKIM Filter v2.11.0 hotel.example 613FXt05104988",
                Some("hotel.example"),
            ),
            ("DKIM-Filter", "OpenDKIM Filter", None),
            ("Delivery-Date", "Thu, 1 Jan 2026 00:00:00 +0000", None),
            ("Subject", "mx.example; spf=pass", None),
        ];
        for &(name, value, want) in rows {
            let got = trace_writer(name.as_bytes(), value.as_bytes());
            assert_eq!(got, want.map(str::as_bytes), "{name}: {value}");
        }
    }

    #[test]
    fn list_rows() {
        let h = hosts();
        assert_eq!(h.len(), 3);
        assert!(h.is_internal_name(b"gw1.csmining.org"));
        assert!(h.is_internal_name(b"CSMINING.ORG."));
        assert!(h.is_internal_name(b"slashnull.org"));
        assert!(!h.is_internal_name(b"xcsmining.org"));
        assert!(!h.is_internal_name(b"csmining.org.example"));
        assert!(InternalHosts::parse("", None).expect("empty").is_empty());
        let bad = InternalHosts::parse("ok.example\nnot_a_host\n", None).expect_err("refused");
        assert!(bad.contains("line 2"), "{bad}");
        assert!(InternalHosts::parse("exa_mple.org", None).is_err());
        assert!(InternalHosts::parse("192.0.2.0/33", None).is_err());
        // An entry limited to another source is checked all the same.
        assert!(InternalHosts::parse("exa_mple.org other", None).is_err());
        let limited = "# a list\nmx.example  # comment words\n\n192.0.2.0/24 archive\n";
        assert_eq!(InternalHosts::limited_line(limited), Some(4));
        assert_eq!(InternalHosts::limited_line("mx.example # archive\n"), None);
    }

    /// Entries limited to sources, and networks.
    #[test]
    fn sources_and_networks() {
        let text = "mx.example\ngoogle.com archive-a archive-b\n192.0.2.0/24 archive-b\n";
        let hop = "from a.example ([198.51.100.1]) by mx.google.com with SMTP";
        let inner = "from gw.example ([192.0.2.77]) by mx.example with SMTP";
        let list = |source| InternalHosts::parse(text, source).expect("parses");
        assert_eq!(list(None).len(), 1);
        assert_eq!(list(None).hop(hop.as_bytes()), Hop::External);
        assert_eq!(list(Some("archive-a")).hop(hop.as_bytes()), Hop::Boundary);
        assert_eq!(list(Some("archive-c")).hop(hop.as_bytes()), Hop::External);
        assert_eq!(list(Some("archive-a")).hop(inner.as_bytes()), Hop::Boundary);
        assert_eq!(list(Some("archive-b")).hop(inner.as_bytes()), Hop::Internal);
        let v6 = InternalHosts::parse("2001:db8::/32", None).expect("parses");
        let hop6 = "from a.example ([IPv6:2001:db8:5::1]) by [IPv6:2001:db8::25] with SMTP";
        assert_eq!(v6.hop(hop6.as_bytes()), Hop::Internal);
    }
}
