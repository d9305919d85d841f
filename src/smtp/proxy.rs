//! The HAProxy PROXY protocol, versions 1 (text) and 2 (binary), as a load balancer sends it
//! before the first SMTP byte: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.
//!
//! Owns: recognising and parsing one header from bytes as they arrive (split anywhere), with a
//! bounded copy ([`V1_MAX_LEN`], [`V2_MAX_LEN`]). It never takes a byte past the header: what
//! follows in the same read belongs to the SMTP session.
//! Must not touch: sockets, the clock (the reactor owns the header timeout), who may send a
//! header (the reactor checks `server.proxy_from`).

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest v1 header, `\r\n` included (spec §2.1: 107 bytes for the worst case,
/// `PROXY UNKNOWN ffff:…:ffff ffff:…:ffff 65535 65535\r\n`).
pub const V1_MAX_LEN: usize = 107;
/// Longest v2 header taken: the 16 fixed bytes plus this many bytes of addresses and TLVs. The
/// format allows 65535; addresses take at most 216 (AF_UNIX), and the TLVs HAProxy sends
/// (ALPN, authority, unique id, SSL details) fit well within the rest. Longer is refused.
pub const V2_MAX_PAYLOAD: usize = 1536;
/// Longest v2 header taken, fixed part included.
pub const V2_MAX_LEN: usize = V2_FIXED + V2_MAX_PAYLOAD;

/// Fixed part of a v2 header: signature (12), version and command (1), family (1), length (2).
const V2_FIXED: usize = 16;
/// Spec §2.2: the v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Spec §2.1: every v1 header starts with this.
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// What the header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxied {
    /// The balancer's own connection (v2 `LOCAL`, health checks): use the connection's
    /// addresses.
    Local,
    /// Relayed, but the original addresses are unknown (v1 `UNKNOWN`, v2 `AF_UNSPEC`, `AF_UNIX`
    /// or a non-stream protocol): use the connection's addresses.
    Unknown,
    /// Relayed TCP connection with its original addresses.
    Tcp {
        /// The client's address.
        source: SocketAddr,
        /// The address the client connected to (the balancer's front).
        destination: SocketAddr,
    },
}

/// A parsed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// The addresses.
    pub proxied: Proxied,
}

impl ProxyHeader {
    /// The client's address: the header's source, or `connection_peer` when the header carries
    /// none (`LOCAL`, unknown family).
    pub fn client(&self, connection_peer: SocketAddr) -> SocketAddr {
        match self.proxied {
            Proxied::Tcp { source, .. } => source,
            Proxied::Local | Proxied::Unknown => connection_peer,
        }
    }
}

/// Where parsing stands after a [`ProxyParser::feed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The whole input was taken; the header is not complete yet.
    Incomplete,
    /// The header is complete; `used` bytes of this input belonged to it, the rest is SMTP.
    Done {
        /// The header.
        header: ProxyHeader,
        /// Bytes of the input taken.
        used: usize,
    },
}

/// Why a header can never become valid (the connection is closed without a greeting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// The first bytes are neither signature: the peer speaks something else (SMTP, TLS…).
    NotProxy,
    /// A v1 header without `\r\n` within [`V1_MAX_LEN`] bytes.
    V1TooLong,
    /// A v1 header that does not follow the grammar; says what is wrong.
    V1Syntax(&'static str),
    /// A v2 header longer than [`V2_MAX_LEN`].
    V2TooLong,
    /// A v2 header with a bad version, command or address block; says what is wrong.
    V2Invalid(&'static str),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotProxy => f.write_str("no PROXY protocol signature"),
            ProxyError::V1TooLong => write!(f, "PROXY v1 header longer than {V1_MAX_LEN} bytes"),
            ProxyError::V1Syntax(why) => write!(f, "PROXY v1 header: {why}"),
            ProxyError::V2TooLong => write!(f, "PROXY v2 header longer than {V2_MAX_LEN} bytes"),
            ProxyError::V2Invalid(why) => write!(f, "PROXY v2 header: {why}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Which version the first bytes announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Undecided,
    V1,
    V2,
}

/// Parses one PROXY header fed in pieces. Holds at most [`V2_MAX_LEN`] bytes; each byte is
/// looked at once (no re-scan after [`Progress::Incomplete`]).
#[derive(Clone, Debug)]
pub struct ProxyParser {
    kind: Kind,
    held: Vec<u8>,
    /// Set once a result (header or error) was returned: later feeds repeat nothing.
    finished: bool,
}

impl Default for ProxyParser {
    fn default() -> ProxyParser {
        ProxyParser::new()
    }
}

impl ProxyParser {
    /// A parser waiting for the first byte.
    pub fn new() -> ProxyParser {
        ProxyParser {
            kind: Kind::Undecided,
            held: Vec::with_capacity(V2_FIXED),
            finished: false,
        }
    }

    /// Takes the next bytes of the connection. After `Done` or `Err`, the parser is spent
    /// (further feeds return [`ProxyError::NotProxy`]).
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, ProxyError> {
        if self.finished {
            return Err(ProxyError::NotProxy);
        }
        let result = self.feed_inner(input);
        if !matches!(result, Ok(Progress::Incomplete)) {
            self.finished = true;
        }
        result
    }

    /// Bytes held so far (for logs).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn feed_inner(&mut self, input: &[u8]) -> Result<Progress, ProxyError> {
        let mut used = 0;
        // Take bytes one at a time until a whole signature matched: `PROXY ` (v1) or the 12
        // bytes of v2. A byte that fits neither ends it at once.
        while self.held.len() < self.signature_len() {
            let Some(&b) = input.get(used) else {
                return Ok(Progress::Incomplete);
            };
            used += 1;
            self.held.push(b);
            let n = self.held.len();
            let v1 = V1_PREFIX
                .get(..n)
                .is_some_and(|p| p == self.held.as_slice());
            let v2 = V2_SIGNATURE
                .get(..n)
                .is_some_and(|p| p == self.held.as_slice());
            self.kind = match (v1, v2) {
                (false, false) => return Err(ProxyError::NotProxy),
                (true, false) => Kind::V1,
                (false, true) => Kind::V2,
                (true, true) => Kind::Undecided,
            };
        }
        let rest = input.get(used..).unwrap_or_default();
        let progress = match self.kind {
            Kind::V1 => self.feed_v1(rest)?,
            _ => self.feed_v2(rest)?,
        };
        Ok(match progress {
            Progress::Done { header, used: n } => Progress::Done {
                header,
                used: used + n,
            },
            Progress::Incomplete => Progress::Incomplete,
        })
    }

    /// Bytes of signature to match before the rest of the header is parsed.
    fn signature_len(&self) -> usize {
        match self.kind {
            Kind::Undecided => 1,
            Kind::V1 => V1_PREFIX.len(),
            Kind::V2 => V2_SIGNATURE.len(),
        }
    }

    fn feed_v1(&mut self, input: &[u8]) -> Result<Progress, ProxyError> {
        let room = V1_MAX_LEN - self.held.len();
        // Only new bytes are searched: the held ones had no `\n`.
        let window = &input[..input.len().min(room)];
        match memchr::memchr(b'\n', window) {
            Some(i) => {
                self.held.extend_from_slice(&window[..=i]);
                let header = parse_v1(&self.held)?;
                Ok(Progress::Done {
                    header,
                    used: i + 1,
                })
            }
            None if input.len() >= room => Err(ProxyError::V1TooLong),
            None => {
                self.held.extend_from_slice(window);
                Ok(Progress::Incomplete)
            }
        }
    }

    fn feed_v2(&mut self, input: &[u8]) -> Result<Progress, ProxyError> {
        let mut used = 0;
        if self.held.len() < V2_FIXED {
            let take = (V2_FIXED - self.held.len()).min(input.len());
            self.held.extend_from_slice(&input[..take]);
            used = take;
            if self.held.len() < V2_FIXED {
                return Ok(Progress::Incomplete);
            }
            // Refuse early what can never be valid, before waiting for the payload.
            check_v2_fixed(&self.held)?;
        }
        let total = V2_FIXED + usize::from(u16::from_be_bytes([self.held[14], self.held[15]]));
        let take = (total - self.held.len()).min(input.len() - used);
        self.held.extend_from_slice(&input[used..used + take]);
        used += take;
        if self.held.len() < total {
            return Ok(Progress::Incomplete);
        }
        let header = parse_v2(&self.held)?;
        Ok(Progress::Done { header, used })
    }
}

/// Checks the 16 fixed bytes of a v2 header (signature already matched).
fn check_v2_fixed(fixed: &[u8]) -> Result<(), ProxyError> {
    let ver_cmd = fixed[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2Invalid("version is not 2"));
    }
    if ver_cmd & 0x0f > 1 {
        return Err(ProxyError::V2Invalid("command is neither LOCAL nor PROXY"));
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > V2_MAX_PAYLOAD {
        return Err(ProxyError::V2TooLong);
    }
    Ok(())
}

/// Parses a whole v2 header (fixed part checked).
fn parse_v2(header: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let local = header[12] & 0x0f == 0;
    let family = header[13];
    let payload = &header[V2_FIXED..];
    // Spec §2.2: address block sizes per family; TLVs follow.
    let (proxied, addr_len) = match family {
        // TCP over IPv4.
        0x11 => {
            let a = payload
                .get(..12)
                .ok_or(ProxyError::V2Invalid("IPv4 address block is short"))?;
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            let proxied = Proxied::Tcp {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            };
            (proxied, 12)
        }
        // TCP over IPv6.
        0x21 => {
            let a = payload
                .get(..36)
                .ok_or(ProxyError::V2Invalid("IPv6 address block is short"))?;
            let ip = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            let proxied = Proxied::Tcp {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            };
            (proxied, 36)
        }
        // UDP (0x12, 0x22) is not what we serve; AF_UNIX (0x31, 0x32) carries paths; AF_UNSPEC
        // (0x00) carries nothing. Spec §2.2: the receiver uses the connection's addresses
        // and skips the block.
        0x00 => (Proxied::Unknown, 0),
        0x12 => (Proxied::Unknown, 12.min(payload.len())),
        0x22 => (Proxied::Unknown, 36.min(payload.len())),
        0x31 | 0x32 => (Proxied::Unknown, 216.min(payload.len())),
        _ => return Err(ProxyError::V2Invalid("unknown address family or protocol")),
    };
    skip_tlvs(payload.get(addr_len..).unwrap_or_default())?;
    // Spec §2.2: with LOCAL, the receiver ignores the address block and uses its own.
    let proxied = if local { Proxied::Local } else { proxied };
    Ok(ProxyHeader {
        version: 2,
        proxied,
    })
}

/// Walks the TLVs (type, 16-bit length, value) after the addresses without using them: each
/// must fit in what is left.
fn skip_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let [_, hi, lo, ref rest @ ..] = *tlvs else {
            return Err(ProxyError::V2Invalid("truncated TLV"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = rest
            .get(len..)
            .ok_or(ProxyError::V2Invalid("TLV longer than the header"))?;
    }
    Ok(())
}

/// Parses a whole v1 line (`PROXY ` … `\r\n`).
fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let body = line
        .strip_suffix(b"\r\n")
        .ok_or(ProxyError::V1Syntax("line does not end with CRLF"))?;
    let body = body.get(V1_PREFIX.len()..).unwrap_or_default();
    let mut fields = body.split(|&b| b == b' ');
    let proto = fields.next().unwrap_or_default();
    let v1 = |proxied| ProxyHeader {
        version: 1,
        proxied,
    };
    // Spec §2.1: with UNKNOWN, the rest of the line up to CRLF is ignored.
    if proto == b"UNKNOWN" {
        return Ok(v1(Proxied::Unknown));
    }
    let v6 = match proto {
        b"TCP4" => false,
        b"TCP6" => true,
        _ => {
            return Err(ProxyError::V1Syntax(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let mut next = || fields.next().ok_or(ProxyError::V1Syntax("too few fields"));
    let src = v1_ip(next()?, v6)?;
    let dst = v1_ip(next()?, v6)?;
    let sport = v1_port(next()?)?;
    let dport = v1_port(next()?)?;
    if fields.next().is_some() {
        return Err(ProxyError::V1Syntax("too many fields"));
    }
    Ok(v1(Proxied::Tcp {
        source: SocketAddr::new(src, sport),
        destination: SocketAddr::new(dst, dport),
    }))
}

fn v1_ip(field: &[u8], v6: bool) -> Result<IpAddr, ProxyError> {
    let text = core::str::from_utf8(field).map_err(|_| ProxyError::V1Syntax("bad address"))?;
    let ip = if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    ip.map_err(|_| ProxyError::V1Syntax("bad address"))
}

/// Spec §2.1: a decimal port, 0 to 65535, without leading zeros.
fn v1_port(field: &[u8]) -> Result<u16, ProxyError> {
    let valid = !field.is_empty()
        && field.len() <= 5
        && field.iter().all(u8::is_ascii_digit)
        && (field[0] != b'0' || field.len() == 1);
    let port = valid
        .then(|| core::str::from_utf8(field).ok()?.parse::<u16>().ok())
        .flatten();
    port.ok_or(ProxyError::V1Syntax("bad port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` in order; returns the result and the bytes left over after the header.
    fn run(pieces: &[&[u8]]) -> Result<(ProxyHeader, Vec<u8>), ProxyError> {
        let mut p = ProxyParser::new();
        for (i, piece) in pieces.iter().enumerate() {
            match p.feed(piece)? {
                Progress::Incomplete => assert!(p.held() <= V2_MAX_LEN),
                Progress::Done { header, used } => {
                    let mut rest = piece[used..].to_vec();
                    for later in &pieces[i + 1..] {
                        rest.extend_from_slice(later);
                    }
                    return Ok((header, rest));
                }
            }
        }
        Err(ProxyError::V1Syntax("incomplete"))
    }

    fn for_each_split(input: &[u8], mut check: impl FnMut(&str, &[&[u8]])) {
        check("whole", &[input]);
        check("bytes", &input.chunks(1).collect::<Vec<_>>());
        for i in 0..=input.len() {
            check(&format!("split at {i}"), &[&input[..i], &input[i..]]);
        }
    }

    fn v2(cmd: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(family);
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    fn v2_ipv4_payload(tlvs: &[u8]) -> Vec<u8> {
        let mut p = vec![192, 0, 2, 7, 10, 0, 0, 1];
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&25u16.to_be_bytes());
        p.extend_from_slice(tlvs);
        p
    }

    fn v2_ipv6_payload() -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut p = src.octets().to_vec();
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&25u16.to_be_bytes());
        p
    }

    fn tcp(src: &str, dst: &str) -> Proxied {
        Proxied::Tcp {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        }
    }

    fn ok(version: u8, proxied: Proxied) -> Result<ProxyHeader, ProxyError> {
        Ok(ProxyHeader { version, proxied })
    }

    fn rows() -> Vec<(&'static str, Vec<u8>, Result<ProxyHeader, ProxyError>)> {
        let long_tlv = [&[0x04u8, 0x00, 0x05][..], b"hello"].concat();
        let max_v1 = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n".to_vec();
        assert_eq!(max_v1.len(), V1_MAX_LEN);
        vec![
            (
                "v1_tcp4",
                b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 25\r\n".to_vec(),
                ok(1, tcp("192.0.2.7:40000", "10.0.0.1:25")),
            ),
            (
                "v1_tcp6",
                b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n".to_vec(),
                ok(1, tcp("[2001:db8::7]:40000", "[2001:db8::1]:25")),
            ),
            (
                "v1_unknown_bare",
                b"PROXY UNKNOWN\r\n".to_vec(),
                ok(1, Proxied::Unknown),
            ),
            (
                "v1_unknown_longest",
                max_v1.clone(),
                ok(1, Proxied::Unknown),
            ),
            (
                "v1_one_byte_too_long",
                [&max_v1[..V1_MAX_LEN - 2], b" \r\n"].concat(),
                Err(ProxyError::V1TooLong),
            ),
            (
                "v1_no_crlf_ever",
                [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat(),
                Err(ProxyError::V1TooLong),
            ),
            (
                "v1_bare_lf",
                b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 25\n".to_vec(),
                Err(ProxyError::V1Syntax("line does not end with CRLF")),
            ),
            (
                "v1_tcp4_with_v6_address",
                b"PROXY TCP4 2001:db8::7 10.0.0.1 40000 25\r\n".to_vec(),
                Err(ProxyError::V1Syntax("bad address")),
            ),
            (
                "v1_port_leading_zero",
                b"PROXY TCP4 192.0.2.7 10.0.0.1 040000 25\r\n".to_vec(),
                Err(ProxyError::V1Syntax("bad port")),
            ),
            (
                "v1_port_too_big",
                b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 25\r\n".to_vec(),
                Err(ProxyError::V1Syntax("bad port")),
            ),
            (
                "v1_double_space",
                b"PROXY TCP4  192.0.2.7 10.0.0.1 40000 25\r\n".to_vec(),
                Err(ProxyError::V1Syntax("bad address")),
            ),
            (
                "v1_too_few_fields",
                b"PROXY TCP4 192.0.2.7 10.0.0.1 40000\r\n".to_vec(),
                Err(ProxyError::V1Syntax("too few fields")),
            ),
            (
                "v1_too_many_fields",
                b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 25 x\r\n".to_vec(),
                Err(ProxyError::V1Syntax("too many fields")),
            ),
            (
                "v1_udp",
                b"PROXY UDP4 192.0.2.7 10.0.0.1 40000 25\r\n".to_vec(),
                Err(ProxyError::V1Syntax(
                    "protocol is not TCP4, TCP6 or UNKNOWN",
                )),
            ),
            (
                "v1_lowercase",
                b"proxy TCP4 192.0.2.7 10.0.0.1 40000 25\r\n".to_vec(),
                Err(ProxyError::NotProxy),
            ),
            (
                "smtp_instead",
                b"EHLO client.example\r\n".to_vec(),
                Err(ProxyError::NotProxy),
            ),
            (
                "tls_instead",
                vec![0x16, 0x03, 0x01, 0x00, 0xa5],
                Err(ProxyError::NotProxy),
            ),
            (
                "v2_ipv4",
                v2(1, 0x11, &v2_ipv4_payload(&[])),
                ok(2, tcp("192.0.2.7:40000", "10.0.0.1:25")),
            ),
            (
                "v2_ipv4_with_tlvs",
                v2(
                    1,
                    0x11,
                    &v2_ipv4_payload(&[&long_tlv[..], &[0x03, 0, 0]].concat()),
                ),
                ok(2, tcp("192.0.2.7:40000", "10.0.0.1:25")),
            ),
            (
                "v2_ipv6",
                v2(1, 0x21, &v2_ipv6_payload()),
                ok(2, tcp("[2001:db8::7]:40000", "[2001:db8::1]:25")),
            ),
            ("v2_local_unspec", v2(0, 0x00, &[]), ok(2, Proxied::Local)),
            (
                "v2_local_with_addresses",
                v2(0, 0x11, &v2_ipv4_payload(&[])),
                ok(2, Proxied::Local),
            ),
            ("v2_proxy_unspec", v2(1, 0x00, &[]), ok(2, Proxied::Unknown)),
            ("v2_unix", v2(1, 0x31, &[0u8; 216]), ok(2, Proxied::Unknown)),
            (
                "v2_udp",
                v2(1, 0x12, &v2_ipv4_payload(&[])),
                ok(2, Proxied::Unknown),
            ),
            (
                "v2_truncated_tlv",
                v2(1, 0x11, &v2_ipv4_payload(&[0x04, 0x00])),
                Err(ProxyError::V2Invalid("truncated TLV")),
            ),
            (
                "v2_tlv_overruns",
                v2(1, 0x11, &v2_ipv4_payload(&[0x04, 0x00, 0x09, b'x'])),
                Err(ProxyError::V2Invalid("TLV longer than the header")),
            ),
            (
                "v2_ipv4_short_block",
                v2(1, 0x11, &[1, 2, 3, 4]),
                Err(ProxyError::V2Invalid("IPv4 address block is short")),
            ),
            (
                "v2_ipv6_short_block",
                v2(1, 0x21, &v2_ipv4_payload(&[])),
                Err(ProxyError::V2Invalid("IPv6 address block is short")),
            ),
            (
                "v2_bad_family",
                v2(1, 0x41, &[]),
                Err(ProxyError::V2Invalid("unknown address family or protocol")),
            ),
            (
                "v2_bad_command",
                v2(2, 0x11, &v2_ipv4_payload(&[])),
                Err(ProxyError::V2Invalid("command is neither LOCAL nor PROXY")),
            ),
            (
                "v2_version_1",
                [&V2_SIGNATURE[..], &[0x11, 0x11, 0, 0]].concat(),
                Err(ProxyError::V2Invalid("version is not 2")),
            ),
            (
                "v2_too_long",
                [&V2_SIGNATURE[..], &[0x21, 0x11, 0xff, 0xff]].concat(),
                Err(ProxyError::V2TooLong),
            ),
            (
                "v2_at_cap",
                v2(
                    1,
                    0x11,
                    &v2_ipv4_payload(&[&[0xea, 0x05, 0xf1], &[0u8; 1521][..]].concat()),
                ),
                ok(2, tcp("192.0.2.7:40000", "10.0.0.1:25")),
            ),
            (
                "v2_signature_broken_late",
                b"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x00".to_vec(),
                Err(ProxyError::NotProxy),
            ),
        ]
    }

    #[test]
    fn headers_parse_the_same_whole_byte_by_byte_and_split_anywhere() {
        for (name, input, want) in rows() {
            let mut with_smtp = input.clone();
            with_smtp.extend_from_slice(b"EHLO x\r\n");
            for_each_split(&with_smtp, |how, pieces| {
                let got = run(pieces);
                match (&got, &want) {
                    (Ok((header, rest)), Ok(w)) => {
                        assert_eq!(header, w, "{name} ({how})");
                        assert_eq!(rest, b"EHLO x\r\n", "{name} ({how}): SMTP bytes after it");
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w, "{name} ({how})"),
                    _ => panic!("{name} ({how}): got {got:?}, want {want:?}"),
                }
            });
        }
    }

    #[test]
    fn v2_at_cap_is_exactly_the_cap() {
        let row = rows().into_iter().find(|r| r.0 == "v2_at_cap").unwrap();
        assert_eq!(row.1.len(), V2_MAX_LEN);
    }

    #[test]
    fn incomplete_headers_wait_and_hold_at_most_the_cap() {
        for (name, input, _) in rows() {
            let mut p = ProxyParser::new();
            for b in input.chunks(1).take(input.len().saturating_sub(1)) {
                match p.feed(b) {
                    Ok(Progress::Incomplete) => assert!(p.held() <= V2_MAX_LEN, "{name}"),
                    _ => break,
                }
            }
        }
    }

    #[test]
    fn a_spent_parser_takes_nothing_more() {
        let mut p = ProxyParser::new();
        assert!(matches!(
            p.feed(b"PROXY UNKNOWN\r\n"),
            Ok(Progress::Done { used: 15, .. })
        ));
        assert_eq!(p.feed(b"PROXY UNKNOWN\r\n"), Err(ProxyError::NotProxy));
    }

    #[test]
    fn client_address_falls_back_to_the_connection() {
        let peer: SocketAddr = "10.1.1.1:5000".parse().unwrap();
        let local = ProxyHeader {
            version: 2,
            proxied: Proxied::Local,
        };
        assert_eq!(local.client(peer), peer);
        let real = ProxyHeader {
            version: 1,
            proxied: tcp("192.0.2.7:40000", "10.0.0.1:25"),
        };
        assert_eq!(real.client(peer), "192.0.2.7:40000".parse().unwrap());
    }
}
