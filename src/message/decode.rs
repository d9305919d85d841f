//! Decoders for the scanner's side stream: base64 and quoted-printable with state carried across
//! chunks, RFC 2047 encoded-words in header values, RFC 2231 percent-encoded parameter values,
//! and conversion of the few charsets we know (US-ASCII, UTF-8, ISO-8859-1, windows-1252) to
//! UTF-8. Other charsets pass through as raw bytes.
//!
//! Every decoder is lenient: bytes it cannot make sense of pass through (QP) or are skipped
//! (base64), never an error, because the scanner must see what a mail client would show.

use memchr::memchr;

use crate::swar::{eq_bytes, load};

/// Longest charset name looked at in an encoded-word or a `charset` parameter.
const MAX_CHARSET_LEN: usize = 64;

/// Longest encoded-word accepted (RFC 2047 §2 says 75; real mail is sloppier).
const MAX_ENCODED_WORD_LEN: usize = 1024;

const B64_INVALID: u8 = 0xFF;

/// Maps a byte to its base64 value, or [`B64_INVALID`].
const B64_TABLE: [u8; 256] = {
    let mut t = [B64_INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// A streaming base64 decoder (RFC 2045 §6.8): bytes outside the alphabet (line ends, spaces,
/// garbage) are skipped, `=` ends a quantum, and decoding goes on after it (some senders glue
/// several encoded blocks together).
#[derive(Clone, Debug, Default)]
pub struct Base64Decoder {
    acc: u32,
    n: u8,
}

impl Base64Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Base64Decoder {
        Base64Decoder::default()
    }

    /// Decodes `input`, appending the bytes to `out`. A quantum split across calls is carried.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + input.len() / 4 * 3 + 3, 0);
        let mut w = start;
        let mut i = 0;
        while i < input.len() {
            if self.n == 0 {
                // Whole quanta of valid characters: the common case, four at a time.
                while let Some(q) = input.get(i..i + 4) {
                    let (a, b, c, d) = (
                        B64_TABLE[q[0] as usize],
                        B64_TABLE[q[1] as usize],
                        B64_TABLE[q[2] as usize],
                        B64_TABLE[q[3] as usize],
                    );
                    if (a | b | c | d) & 0xC0 != 0 {
                        break;
                    }
                    let v = (u32::from(a) << 18)
                        | (u32::from(b) << 12)
                        | (u32::from(c) << 6)
                        | u32::from(d);
                    if let Some(dst) = out.get_mut(w..w + 3) {
                        dst.copy_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
                    }
                    w += 3;
                    i += 4;
                }
                if i >= input.len() {
                    break;
                }
            }
            let c = input[i];
            i += 1;
            let v = B64_TABLE[c as usize];
            if v != B64_INVALID {
                self.acc = (self.acc << 6) | u32::from(v);
                self.n += 1;
                if self.n == 4 {
                    let v = self.acc;
                    if let Some(dst) = out.get_mut(w..w + 3) {
                        dst.copy_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
                    }
                    w += 3;
                    self.acc = 0;
                    self.n = 0;
                }
            } else if c == b'=' {
                w += self.flush_into(out, w);
            }
        }
        out.truncate(w);
    }

    /// Ends the stream: a trailing partial quantum (missing padding) gives its whole bytes.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let w = out.len();
        out.resize(w + 3, 0);
        let n = self.flush_into(out, w);
        out.truncate(w + n);
    }

    /// Writes the bytes of a partial quantum at `out[w..]` and resets; returns how many.
    fn flush_into(&mut self, out: &mut [u8], w: usize) -> usize {
        let (acc, n) = (self.acc, self.n);
        self.acc = 0;
        self.n = 0;
        let bytes: &[u8] = match n {
            2 => &[(acc >> 4) as u8],
            3 => &[(acc >> 10) as u8, (acc >> 2) as u8],
            _ => &[],
        };
        if let Some(dst) = out.get_mut(w..w + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        bytes.len()
    }
}

/// A streaming quoted-printable decoder (RFC 2045 §6.7): `=XX` becomes a byte, `=` before a
/// line end (optionally after spaces) is a soft line break, anything malformed passes through
/// as it was written. Hard line ends are kept as they are.
#[derive(Clone, Debug, Default)]
pub struct QpDecoder {
    state: QpState,
    /// Whitespace seen after an `=`, kept until we know whether a line end follows.
    ws: Vec<u8>,
}

/// Longest run of whitespace after `=` still taken as part of a soft line break.
const QP_MAX_SOFT_WS: usize = 64;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum QpState {
    #[default]
    Text,
    /// After `=`.
    Eq,
    /// After `=` and one hex digit.
    EqHex(u8),
    /// After `=` and whitespace (kept in `ws`).
    EqWs,
    /// After `=`, maybe whitespace, and CR.
    EqCr,
}

impl QpDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> QpDecoder {
        QpDecoder::default()
    }

    /// Decodes `input`, appending to `out`; a `=` sequence split across calls is carried.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        // One zero-fill per call: the output is at most the input plus what a pending `=`
        // sequence holds back (`=`, its whitespace, a hex digit or CR). Growing `out` again at
        // each `=` the fast path leaves to the state machine would fill the rest of the piece
        // over and over.
        let base = out.len();
        out.resize(base + input.len() + 2 + self.ws.len(), 0);
        let buf = &mut out[base..];
        let mut w = 0;
        let mut i = 0;
        while i < input.len() {
            if self.state == QpState::Text {
                let (used, wrote, at_eq) =
                    qp_text(&input[i..], buf.get_mut(w..).unwrap_or(&mut []));
                i += used;
                w += wrote;
                if at_eq {
                    // An `=` that is not followed here by two hex digits: the state machine.
                    i += 1;
                    self.state = QpState::Eq;
                }
                continue;
            }
            let c = input[i];
            match self.state {
                QpState::Text => {}
                QpState::Eq => {
                    if hex_value(c).is_some() {
                        self.state = QpState::EqHex(c);
                        i += 1;
                    } else if c == b'\n' {
                        self.state = QpState::Text;
                        i += 1;
                    } else if c == b'\r' {
                        self.state = QpState::EqCr;
                        i += 1;
                    } else if c == b' ' || c == b'\t' {
                        self.ws.clear();
                        self.ws.push(c);
                        self.state = QpState::EqWs;
                        i += 1;
                    } else {
                        // Not an escape: the `=` stands for itself, `c` is looked at again.
                        put(buf, &mut w, b"=");
                        self.state = QpState::Text;
                    }
                }
                QpState::EqHex(h) => {
                    match (hex_value(h), hex_value(c)) {
                        (Some(hi), Some(lo)) => {
                            put(buf, &mut w, &[hi << 4 | lo]);
                            i += 1;
                        }
                        _ => put(buf, &mut w, &[b'=', h]),
                    }
                    self.state = QpState::Text;
                }
                QpState::EqWs => {
                    if (c == b' ' || c == b'\t') && self.ws.len() < QP_MAX_SOFT_WS {
                        self.ws.push(c);
                        i += 1;
                    } else if c == b'\n' {
                        self.state = QpState::Text;
                        i += 1;
                    } else if c == b'\r' {
                        self.state = QpState::EqCr;
                        i += 1;
                    } else {
                        put(buf, &mut w, b"=");
                        put(buf, &mut w, &self.ws);
                        self.state = QpState::Text;
                    }
                }
                QpState::EqCr => {
                    if c == b'\n' {
                        i += 1;
                    } else {
                        // `=` then a bare CR: keep what was written.
                        put(buf, &mut w, b"=");
                        put(buf, &mut w, &self.ws);
                        put(buf, &mut w, b"\r");
                    }
                    self.state = QpState::Text;
                }
            }
            if self.state != QpState::EqWs && self.state != QpState::EqCr {
                self.ws.clear();
            }
        }
        out.truncate(base + w);
    }

    /// Ends the stream: a dangling `=` sequence is written as it was.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.state {
            QpState::Text => {}
            QpState::Eq => out.push(b'='),
            QpState::EqHex(h) => out.extend_from_slice(&[b'=', h]),
            // A soft line break at the very end ("=" + whitespace): nothing follows it.
            QpState::EqWs => {}
            QpState::EqCr => {
                out.push(b'=');
                out.extend_from_slice(&self.ws);
                out.push(b'\r');
            }
        }
        self.state = QpState::Text;
        self.ws.clear();
    }
}

/// Copies QP text to `dst` (at least `src.len()` bytes: decoding only shrinks), decoding `=XX`
/// escapes on the way, up to the end or to an `=` that is not followed by two hex digits here.
/// Returns the bytes used, the bytes written and whether it stopped at such an `=` (not
/// consumed).
fn qp_text(src: &[u8], dst: &mut [u8]) -> (usize, usize, bool) {
    let (mut r, mut w) = (0, 0);
    let at_eq = loop {
        // Two words at a time, then one: copy everything before the first `=`. All the bytes
        // are stored (output never runs ahead of input, so they fit); only those before the
        // `=` are kept.
        let mut found = false;
        while let (Some(word), Some(d)) = (src.get(r..r + 16), dst.get_mut(w..w + 16)) {
            d.copy_from_slice(word);
            let (lo, hi) = (
                eq_bytes(load(&word[..8]), b'='),
                eq_bytes(load(&word[8..]), b'='),
            );
            if lo | hi != 0 {
                // The lowest flagged byte is a true `=` (false positives only sit above one).
                let k = if lo != 0 {
                    lo.trailing_zeros() / 8
                } else {
                    8 + hi.trailing_zeros() / 8
                } as usize;
                r += k;
                w += k;
                found = true;
                break;
            }
            r += 16;
            w += 16;
        }
        while let (false, Some(word), Some(d)) = (found, src.get(r..r + 8), dst.get_mut(w..w + 8)) {
            d.copy_from_slice(word);
            let eq = eq_bytes(load(word), b'=');
            if eq != 0 {
                // The lowest flagged byte is a true `=` (false positives only sit above one).
                let k = (eq.trailing_zeros() / 8) as usize;
                r += k;
                w += k;
                break;
            }
            r += 8;
            w += 8;
        }
        match src.get(r) {
            None => break false,
            Some(&b'=') => match (src.get(r + 1), src.get(r + 2)) {
                // Soft line breaks, the other common case.
                (Some(b'\n'), _) => r += 2,
                (Some(b'\r'), Some(b'\n')) => r += 3,
                (Some(&h), Some(&l)) => {
                    let (Some(h), Some(l)) = (hex_value(h), hex_value(l)) else {
                        break true;
                    };
                    if let Some(d) = dst.get_mut(w) {
                        *d = h << 4 | l;
                    }
                    r += 3;
                    w += 1;
                }
                _ => break true,
            },
            Some(&b) => {
                if let Some(d) = dst.get_mut(w) {
                    *d = b;
                }
                r += 1;
                w += 1;
            }
        }
    };
    (r, w, at_eq)
}

/// Writes `bytes` at `buf[*w..]` and moves `w` past them (sized by the caller; never panics).
fn put(buf: &mut [u8], w: &mut usize, bytes: &[u8]) {
    if let Some(d) = buf.get_mut(*w..*w + bytes.len()) {
        d.copy_from_slice(bytes);
    }
    *w += bytes.len();
}

/// The value of one hex digit, either case.
pub(crate) fn hex_value(c: u8) -> Option<u8> {
    let v = HEX[usize::from(c)];
    (v != NOT_HEX).then_some(v)
}

/// Marks a byte that is not a hex digit in [`HEX`].
const NOT_HEX: u8 = 0xFF;

/// Hex digit values by byte, [`NOT_HEX`] for the rest.
const HEX: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut k = 0;
    while k < 10 {
        t[b'0' as usize + k] = k as u8;
        k += 1;
    }
    let mut k = 0;
    while k < 6 {
        t[b'a' as usize + k] = 10 + k as u8;
        t[b'A' as usize + k] = 10 + k as u8;
        k += 1;
    }
    t
};

/// The charsets converted to UTF-8; everything else passes as raw bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Charset {
    /// UTF-8, US-ASCII, or a charset we do not convert: bytes pass as they are.
    #[default]
    Raw,
    /// ISO-8859-1: each byte is the code point.
    Latin1,
    /// windows-1252: ISO-8859-1 with printable characters at 0x80-0x9F.
    Cp1252,
}

impl Charset {
    /// The charset a `charset` label names (case-insensitive, RFC 2231 `*lang` suffix ignored).
    pub(crate) fn from_label(label: &[u8]) -> Charset {
        let label = match memchr(b'*', label) {
            Some(star) => &label[..star],
            None => label,
        };
        let label = trim_ws(label);
        if label.len() > MAX_CHARSET_LEN {
            return Charset::Raw;
        }
        let mut lower = [0u8; MAX_CHARSET_LEN];
        let lower = &mut lower[..label.len()];
        lower.copy_from_slice(label);
        lower.make_ascii_lowercase();
        match &*lower {
            b"iso-8859-1" | b"iso8859-1" | b"iso_8859-1" | b"latin1" | b"latin-1" | b"l1"
            | b"iso-ir-100" | b"cp819" | b"ibm819" | b"iso_8859-1:1987" | b"8859-1" => {
                Charset::Latin1
            }
            b"windows-1252" | b"cp1252" | b"x-cp1252" | b"win-1252" => Charset::Cp1252,
            _ => Charset::Raw,
        }
    }

    /// Whether [`Charset::to_utf8`] changes anything.
    pub(crate) fn converts(self) -> bool {
        self != Charset::Raw
    }

    /// Appends `src` converted to UTF-8 to `out`.
    pub(crate) fn to_utf8(self, src: &[u8], out: &mut Vec<u8>) {
        if self == Charset::Raw {
            out.extend_from_slice(src);
            return;
        }
        out.reserve(src.len() + src.len() / 4);
        let mut rest = src;
        while !rest.is_empty() {
            let ascii = ascii_prefix_len(rest);
            out.extend_from_slice(&rest[..ascii]);
            rest = &rest[ascii..];
            let Some((&b, tail)) = rest.split_first() else {
                break;
            };
            let cp = if self == Charset::Cp1252 && (0x80..0xA0).contains(&b) {
                CP1252_HIGH[usize::from(b - 0x80)]
            } else {
                char::from(b)
            };
            let mut enc = [0u8; 4];
            out.extend_from_slice(cp.encode_utf8(&mut enc).as_bytes());
            rest = tail;
        }
    }
}

/// How many bytes at the start of `s` are US-ASCII (eight at a time while it can).
fn ascii_prefix_len(s: &[u8]) -> usize {
    let mut i = 0;
    while let Some(word) = s.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        if u64::from_le_bytes(w) & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        i += 8;
    }
    while i < s.len() && s[i] < 0x80 {
        i += 1;
    }
    i
}

/// windows-1252 0x80-0x9F (undefined positions map to the C1 control of the same value).
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{81}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{8D}', '\u{017D}', '\u{8F}',
    '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{9D}', '\u{017E}', '\u{0178}',
];

/// Decodes RFC 2047 encoded-words in an (unfolded) header value, appending to `out`. Words in
/// UTF-8, US-ASCII, ISO-8859-1 and windows-1252 come out as UTF-8, others as their raw decoded
/// bytes. Whitespace between two adjacent encoded-words is dropped (RFC 2047 §6.2); text that
/// only looks like an encoded-word is copied as it is.
pub fn decode_rfc2047(src: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    // Where the plain text after the last encoded-word starts, if the last thing was one.
    let mut after_word: Option<usize> = None;
    let mut scratch = Vec::new();
    while i < src.len() {
        let Some(k) = memchr::memmem::find(&src[i..], b"=?") else {
            break;
        };
        let at = i + k;
        match parse_encoded_word(&src[at..]) {
            Some(word) => {
                let gap = &src[i..at];
                let gap_is_ws = gap.iter().all(|&b| is_wsp(b) || b == b'\r' || b == b'\n');
                if !(after_word.is_some() && gap_is_ws) {
                    out.extend_from_slice(gap);
                }
                scratch.clear();
                word.decode(&mut scratch);
                word.charset.to_utf8(&scratch, out);
                i = at + word.len;
                after_word = Some(i);
            }
            None => {
                out.extend_from_slice(&src[i..at + 2]);
                i = at + 2;
                after_word = None;
            }
        }
    }
    if i < src.len() {
        out.extend_from_slice(&src[i..]);
    }
}

/// One parsed `=?charset?enc?text?=`.
struct EncodedWord<'a> {
    charset: Charset,
    base64: bool,
    text: &'a [u8],
    /// Bytes of the whole word in the source.
    len: usize,
}

impl EncodedWord<'_> {
    fn decode(&self, out: &mut Vec<u8>) {
        if self.base64 {
            let mut d = Base64Decoder::new();
            d.feed(self.text, out);
            d.finish(out);
        } else {
            // RFC 2047 §4.2: "_" is a space, "=XX" a byte, the rest literal.
            let t = self.text;
            let mut i = 0;
            while i < t.len() {
                match t[i] {
                    b'_' => out.push(b' '),
                    b'=' => match (t.get(i + 1).copied(), t.get(i + 2).copied()) {
                        (Some(h), Some(l)) if hex_value(h).is_some() && hex_value(l).is_some() => {
                            out.push(hex_value(h).unwrap_or(0) << 4 | hex_value(l).unwrap_or(0));
                            i += 2;
                        }
                        _ => out.push(b'='),
                    },
                    c => out.push(c),
                }
                i += 1;
            }
        }
    }
}

/// Parses an encoded-word at the start of `s` (which starts with `=?`).
fn parse_encoded_word(s: &[u8]) -> Option<EncodedWord<'_>> {
    let s = &s[..s.len().min(MAX_ENCODED_WORD_LEN)];
    let rest = s.get(2..)?;
    let q1 = memchr(b'?', rest)?;
    let charset = &rest[..q1];
    if charset.is_empty()
        || charset.len() > MAX_CHARSET_LEN
        || charset.iter().any(|&b| b <= b' ' || b >= 0x7F)
    {
        return None;
    }
    let enc = *rest.get(q1 + 1)?;
    if *rest.get(q1 + 2)? != b'?' {
        return None;
    }
    let base64 = match enc {
        b'B' | b'b' => true,
        b'Q' | b'q' => false,
        _ => return None,
    };
    let text_start = q1 + 3;
    let end = memchr::memmem::find(rest.get(text_start..)?, b"?=")?;
    let text = &rest[text_start..text_start + end];
    // Lenient: spaces inside the text are allowed (seen in the wild), line breaks are not.
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        return None;
    }
    Some(EncodedWord {
        charset: Charset::from_label(charset),
        base64,
        text,
        len: 2 + text_start + end + 2,
    })
}

/// Decodes an RFC 2231 extended parameter value (`charset'lang'%XX...`) when `extended`, or
/// copies it; appends UTF-8 (for the known charsets) to `out`.
pub(crate) fn decode_rfc2231(value: &[u8], charset: Charset, out: &mut Vec<u8>) {
    let mut raw = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let c = value[i];
        if c == b'%' {
            if let (Some(h), Some(l)) = (
                value.get(i + 1).and_then(|&h| hex_value(h)),
                value.get(i + 2).and_then(|&l| hex_value(l)),
            ) {
                raw.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        raw.push(c);
        i += 1;
    }
    charset.to_utf8(&raw, out);
}

/// SP or HTAB.
pub(crate) fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `s` without leading and trailing SP, HTAB, CR and LF.
pub(crate) fn trim_ws(s: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = s.iter().position(|b| !is_ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ws(b)).map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(input: &[u8]) -> Vec<u8> {
        let mut d = Base64Decoder::new();
        let mut out = Vec::new();
        d.feed(input, &mut out);
        d.finish(&mut out);
        out
    }

    fn b64_split(input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut d = Base64Decoder::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts {
            d.feed(&input[last..c], &mut out);
            last = c;
        }
        d.feed(&input[last..], &mut out);
        d.finish(&mut out);
        out
    }

    /// The obvious decoder: collect valid sextets, flush at `=` and at the end.
    fn naive_b64(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut group = Vec::new();
        let flush = |group: &mut Vec<u8>, out: &mut Vec<u8>| {
            let bits: Vec<u8> = group.clone();
            let mut acc: u32 = 0;
            for &v in &bits {
                acc = acc << 6 | u32::from(v);
            }
            match bits.len() {
                4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
                3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
                2 => out.push((acc >> 4) as u8),
                _ => {}
            }
            group.clear();
        };
        for &c in input {
            let v = B64_TABLE[c as usize];
            if v != B64_INVALID {
                group.push(v);
                if group.len() == 4 {
                    flush(&mut group, &mut out);
                }
            } else if c == b'=' {
                flush(&mut group, &mut out);
            }
        }
        flush(&mut group, &mut out);
        out
    }

    const B64_ROWS: &[(&str, &[u8], &[u8])] = &[
        ("empty", b"", b""),
        ("padded_two", b"aGk=", b"hi"),
        ("padded_one", b"aGV5", b"hey"),
        ("double_pad", b"aA==", b"h"),
        ("unpadded_tail", b"aGk", b"hi"),
        (
            "line_breaks",
            b"aGVs\r\nbG8g\r\nd29y\r\nbGQ=\r\n",
            b"hello world",
        ),
        ("garbage_skipped", b"aG*V!s bG8", b"hello"),
        ("glued_blocks", b"aGk=aGk=", b"hihi"),
        ("lone_sextet_dropped", b"a", b""),
    ];

    #[test]
    fn base64_rows() {
        for (name, input, want) in B64_ROWS {
            assert_eq!(b64(input), *want, "row {name}");
            assert_eq!(naive_b64(input), *want, "row {name} (naive)");
            for cut in 0..=input.len() {
                assert_eq!(b64_split(input, &[cut]), *want, "row {name} cut {cut}");
            }
            let all: Vec<usize> = (1..input.len()).collect();
            assert_eq!(b64_split(input, &all), *want, "row {name} byte by byte");
        }
    }

    #[test]
    fn base64_matches_naive_on_pseudo_random_input() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..200 {
            let len = (round * 7) % 300;
            let mut input = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pick = b"ABCXYZabcxyz0189+/=\r\n -*";
                input.push(pick[(x % pick.len() as u64) as usize]);
            }
            let want = naive_b64(&input);
            assert_eq!(b64(&input), want, "round {round}");
            let cut = (x as usize) % (input.len() + 1);
            assert_eq!(b64_split(&input, &[cut]), want, "round {round} cut {cut}");
        }
    }

    fn qp(input: &[u8]) -> Vec<u8> {
        let mut d = QpDecoder::new();
        let mut out = Vec::new();
        d.feed(input, &mut out);
        d.finish(&mut out);
        out
    }

    const QP_ROWS: &[(&str, &[u8], &[u8])] = &[
        ("plain", b"hello", b"hello"),
        ("hex", b"caf=C3=A9", "café".as_bytes()),
        ("lower_hex", b"caf=c3=a9", "café".as_bytes()),
        ("soft_break_crlf", b"abc=\r\ndef", b"abcdef"),
        ("soft_break_lf", b"abc=\ndef", b"abcdef"),
        ("soft_break_trailing_ws", b"abc= \t\r\ndef", b"abcdef"),
        ("hard_break_kept", b"a\r\nb", b"a\r\nb"),
        ("bad_escape_literal", b"a=ZZb", b"a=ZZb"),
        ("half_escape_literal", b"a=4Zb", b"a=4Zb"),
        ("eq_space_text", b"a= b", b"a= b"),
        ("eq_bare_cr", b"a=\rb", b"a=\rb"),
        ("dangling_eq", b"a=", b"a="),
        ("dangling_hex", b"a=4", b"a=4"),
        ("eq_eq", b"==41", b"=A"),
    ];

    #[test]
    fn qp_rows_at_every_split() {
        for (name, input, want) in QP_ROWS {
            assert_eq!(qp(input), *want, "row {name}");
            for cut in 0..=input.len() {
                let mut d = QpDecoder::new();
                let mut out = Vec::new();
                d.feed(&input[..cut], &mut out);
                d.feed(&input[cut..], &mut out);
                d.finish(&mut out);
                assert_eq!(out, *want, "row {name} cut {cut}");
            }
            let mut d = QpDecoder::new();
            let mut out = Vec::new();
            for b in input.chunks(1) {
                d.feed(b, &mut out);
            }
            d.finish(&mut out);
            assert_eq!(out, *want, "row {name} byte by byte");
        }
    }

    /// Feeds `input` in pieces cut at `cuts` (ascending), onto an `out` that already holds
    /// bytes (the decoder appends).
    fn qp_split(input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut d = QpDecoder::new();
        let mut out = b"prefix".to_vec();
        let mut from = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            d.feed(&input[from..c], &mut out);
            from = c;
        }
        d.finish(&mut out);
        out.split_off(6)
    }

    #[test]
    fn qp_matches_naive_on_pseudo_random_input() {
        // Dense in `=`, whitespace and line ends, so that the state machine runs often and
        // pending sequences (long whitespace runs too) straddle the cuts.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..400 {
            let mut input = Vec::new();
            let len = 1 + round % 90;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pick = b"=== \t\t\r\n4aFzZ0x";
                let b = pick[(x % pick.len() as u64) as usize];
                if b == b'\t' && x & 0x100 != 0 {
                    input.extend(std::iter::repeat_n(b' ', 70));
                }
                input.push(b);
            }
            let want = super::super::naive::naive_qp(&input);
            assert_eq!(qp(&input), want, "round {round}");
            assert_eq!(qp_split(&input, &[]), want, "round {round} whole");
            let every: Vec<usize> = (1..input.len()).collect();
            assert_eq!(qp_split(&input, &every), want, "round {round} byte by byte");
            for cut in 0..=input.len() {
                assert_eq!(qp_split(&input, &[cut]), want, "round {round} cut {cut}");
            }
        }
    }

    fn rfc2047(s: &str) -> String {
        let mut out = Vec::new();
        decode_rfc2047(s.as_bytes(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    const RFC2047_ROWS: &[(&str, &str, &str)] = &[
        ("plain", "Hello there", "Hello there"),
        ("q_latin1", "=?iso-8859-1?q?caf=E9?=", "café"),
        ("q_underscore", "=?ISO-8859-1?Q?a_b?=", "a b"),
        ("b_utf8", "=?UTF-8?B?Y2Fmw6k=?=", "café"),
        (
            "adjacent_words_join",
            "=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=",
            "ab",
        ),
        (
            "adjacent_words_tabs",
            "=?ISO-8859-1?Q?a?= \t =?ISO-8859-1?Q?b?=",
            "ab",
        ),
        (
            "text_between_kept",
            "=?utf-8?q?a?= x =?utf-8?q?b?=",
            "a x b",
        ),
        (
            "spaces_inside_q",
            "=?iso-8859-1?q?this is some text?=",
            "this is some text",
        ),
        ("unknown_charset_raw", "=?x-unknown?q?abc?=", "abc"),
        ("lang_suffix", "=?utf-8*en?q?hi?=", "hi"),
        ("not_a_word", "=?broken", "=?broken"),
        ("bad_encoding", "=?utf-8?x?abc?=", "=?utf-8?x?abc?="),
        (
            "cp1252_quote",
            "=?windows-1252?q?=93hi=94?=",
            "\u{201C}hi\u{201D}",
        ),
        ("word_then_text", "=?utf-8?q?Re:?= hello", "Re: hello"),
    ];

    #[test]
    fn rfc2047_rows() {
        for (name, input, want) in RFC2047_ROWS {
            assert_eq!(rfc2047(input), *want, "row {name}");
        }
    }

    #[test]
    fn charset_conversion() {
        let mut out = Vec::new();
        Charset::from_label(b"ISO-8859-1").to_utf8(b"caf\xe9", &mut out);
        assert_eq!(out, "café".as_bytes());
        out.clear();
        Charset::from_label(b"utf-8").to_utf8(b"caf\xe9", &mut out);
        assert_eq!(out, b"caf\xe9", "unknown bytes pass raw");
        out.clear();
        Charset::from_label(b"windows-1252").to_utf8(b"\x80", &mut out);
        assert_eq!(out, "€".as_bytes());
    }

    #[test]
    fn rfc2231_percent_decoding() {
        let mut out = Vec::new();
        decode_rfc2231(b"na%C3%AFve%2", Charset::Raw, &mut out);
        assert_eq!(out, "naïve%2".as_bytes());
    }
}
