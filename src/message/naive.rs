//! Test oracle: a deliberately naive whole-message walker with the same rules as the streaming
//! one, written the obvious way (all lines in memory, whole-part decoding, no carries), plus a
//! tiny JSON reader for the expected-parse files of the shared corpus.

use super::ctype::{Cte, PartInfo};
use super::decode::decode_rfc2047;
use super::header::{MAX_FIELD_BYTES, MAX_NAME_LEN};
use super::html::HtmlText;
use super::mime::DELIM_SCAN;
use super::url::UrlFinder;
use super::{MessageLimits, ScanEvent};

/// What the scanner should be told about one message.
#[derive(Debug, Default)]
pub(super) struct NaiveMessage {
    /// Structural events in order (as in the pipeline's normalised form).
    pub(super) events: Vec<NaiveEvent>,
    /// Top-level fields: (start, end, name, raw value).
    pub(super) fields: Vec<(usize, usize, Vec<u8>, Vec<u8>)>,
    pub(super) header_end: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum NaiveEvent {
    Header {
        depth: usize,
        name: Vec<u8>,
        value: Vec<u8>,
    },
    HeaderEnd,
    PartStart {
        depth: usize,
        content_type: Vec<u8>,
        filename: Option<Vec<u8>>,
        text: Vec<u8>,
        urls: Vec<Vec<u8>>,
    },
}

/// Lines of `msg`, each with its LF (the last may lack one): (start, end).
fn lines(msg: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in msg.iter().enumerate() {
        if b == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < msg.len() {
        out.push((start, msg.len()));
    }
    out
}

/// A line without its LF and the CR before it (or a CR at the very end).
fn content(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// (name length, colon index) when the line starts a header field.
fn field_start(c: &[u8]) -> Option<(usize, usize)> {
    let colon = c.iter().position(|&b| b == b':')?;
    let name_len = c[..colon]
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |p| p + 1);
    let name = &c[..name_len];
    let ok = name_len > 0
        && name_len <= MAX_NAME_LEN
        && colon <= MAX_NAME_LEN + 1
        && name.iter().all(|&b| (33..=126).contains(&b));
    ok.then_some((name_len, colon))
}

/// A field unfolded the way the scanner sees it (see `FieldAcc`), from its whole lines: the
/// first line, then each continuation's text after one space, whitespace before each fold
/// dropped; frozen once at `MAX_FIELD_BYTES`. Returns the value, trimmed.
fn unfold(lines: &[&[u8]], colon: usize) -> (Vec<u8>, Vec<u8>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut full = false;
    let push = |buf: &mut Vec<u8>, full: &mut bool, b: &[u8]| {
        if !*full {
            let room = MAX_FIELD_BYTES - buf.len();
            buf.extend_from_slice(&b[..b.len().min(room)]);
            *full = buf.len() >= MAX_FIELD_BYTES;
        }
    };
    push(&mut buf, &mut full, lines[0]);
    for line in &lines[1..] {
        if !full {
            while buf.last().is_some_and(|&b| b == b' ' || b == b'\t') {
                buf.pop();
            }
        }
        let t = &line[line
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count()..];
        if !t.is_empty() {
            push(&mut buf, &mut full, b" ");
            push(&mut buf, &mut full, t);
        }
    }
    let v = buf.get(colon + 1..).unwrap_or(b"");
    let s = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(s, |e| e + 1);
    (buf.clone(), v[s..e].to_vec())
}

/// Base64 the obvious way: gather sextets, flush at `=` and at the end.
pub(super) fn naive_base64(input: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut group: Vec<u32> = Vec::new();
    let flush = |group: &mut Vec<u32>, out: &mut Vec<u8>| {
        let acc = group.iter().fold(0u32, |a, &v| a << 6 | v);
        match group.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
            2 => out.push((acc >> 4) as u8),
            _ => {}
        }
        group.clear();
    };
    for &c in input {
        if let Some(v) = ALPHABET.iter().position(|&a| a == c) {
            group.push(v as u32);
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

/// Quoted-printable the obvious way, looking ahead in the whole input.
pub(super) fn naive_qp(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'=' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        // "=XX"
        if let (Some(h), Some(l)) = (
            s.get(i + 1).and_then(|&b| hex(b)),
            s.get(i + 2).and_then(|&b| hex(b)),
        ) {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        if s.get(i + 1).is_some_and(|&b| hex(b).is_some()) {
            // "=X" then not a hex digit (or the end): literal, the next byte looked at again.
            out.extend_from_slice(&s[i..i + 2]);
            i += 2;
            continue;
        }
        // "=" [WSP up to 64] then LF, CRLF, the end, or something else.
        let ws = s[i + 1..]
            .iter()
            .take(64)
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let after = i + 1 + ws;
        match (s.get(after), s.get(after + 1)) {
            (Some(b'\n'), _) => i = after + 1,
            (Some(b'\r'), Some(b'\n')) => i = after + 2,
            (Some(b'\r'), _) => {
                out.extend_from_slice(&s[i..after + 1]);
                i = after + 1;
            }
            (None, _) if ws > 0 => i = after,
            _ => {
                out.extend_from_slice(&s[i..after]);
                i = after;
            }
        }
    }
    out
}

/// How a text part is reduced.
struct TextSpec {
    info: PartInfo,
    html: bool,
}

/// A [`ScanEvent::Link`] among a part's URLs (sorted with them), as the split tests list it.
pub(super) fn link_entry(href: &[u8], text: &[u8]) -> Vec<u8> {
    [b"link: ", text, b" -> ", href].concat()
}

fn decode_text(raw: &[u8], spec: &TextSpec) -> (Vec<u8>, Vec<Vec<u8>>) {
    let decoded = match spec.info.cte {
        Cte::Identity => raw.to_vec(),
        Cte::Base64 => naive_base64(raw),
        Cte::QuotedPrintable => naive_qp(raw),
    };
    let mut utf8 = Vec::new();
    spec.info.charset.to_utf8(&decoded, &mut utf8);
    let mut urls = Vec::new();
    let text = if spec.html {
        let mut h = HtmlText::new();
        let mut out = Vec::new();
        let mut on = |e: ScanEvent<'_>| match e {
            ScanEvent::Url(u) => urls.push(u.to_vec()),
            ScanEvent::Link { href, text } => urls.push(link_entry(href, text)),
            _ => {}
        };
        h.feed(&utf8, &mut out, &mut on);
        h.finish(&mut out, &mut on);
        out
    } else {
        utf8
    };
    let mut f = UrlFinder::new();
    let mut on = |u: &[u8]| urls.push(u.to_vec());
    f.feed(&text, &mut on);
    f.finish(&mut on);
    urls.sort();
    (text, urls)
}

struct Level {
    boundary: Vec<u8>,
    child_depth: usize,
    digest: bool,
}

fn decide(stack: &[Level], line: &[u8]) -> Option<(usize, bool)> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let ended = body.len() < DELIM_SCAN;
    let view = &body[..body.len().min(DELIM_SCAN)];
    if ended {
        let v = view.strip_suffix(b"\r").unwrap_or(view);
        for k in (0..stack.len()).rev() {
            let b = &stack[k].boundary;
            let mut want = b"--".to_vec();
            want.extend_from_slice(b);
            if !v.starts_with(&want) {
                continue;
            }
            let rest = &v[want.len()..];
            let (close, rest) = if rest.starts_with(b"--") {
                (true, &rest[2..])
            } else {
                (false, rest)
            };
            if rest.iter().all(|&c| c == b' ' || c == b'\t') {
                return Some((k, close));
            }
        }
    }
    for k in (0..stack.len()).rev() {
        let mut want = b"--".to_vec();
        want.extend_from_slice(&stack[k].boundary);
        if view.starts_with(&want) {
            return Some((k, view[want.len()..].starts_with(b"--")));
        }
    }
    None
}

enum Next {
    Header {
        depth: usize,
        top: bool,
        digest_parent: bool,
    },
    Content {
        text: Option<TextSpec>,
    },
}

/// Walks `msg` (all of it in memory).
pub(super) fn walk(msg: &[u8], limits: MessageLimits) -> NaiveMessage {
    let lines = lines(msg);
    let mut out = NaiveMessage {
        header_end: msg.len(),
        ..NaiveMessage::default()
    };
    let mut li = 0;
    let mut stack: Vec<Level> = Vec::new();
    let mut parts = 0;
    let mut next = Next::Header {
        depth: 0,
        top: true,
        digest_parent: false,
    };
    loop {
        match next {
            Next::Header {
                depth,
                top,
                digest_parent,
            } => {
                // Collect the fields: (start, end, content of each line, name_len, colon).
                type Field<'m> = (usize, usize, Vec<&'m [u8]>, usize, usize);
                let mut fields: Vec<Field> = Vec::new();
                let mut header_end = msg.len();
                while let Some(&(s, e)) = lines.get(li) {
                    let line = &msg[s..e];
                    let c = content(line);
                    if c.is_empty() {
                        li += 1;
                        header_end = e;
                        break;
                    }
                    if c[0] == b' ' || c[0] == b'\t' {
                        if let Some(f) = fields.last_mut() {
                            f.2.push(c);
                            f.1 = e;
                            li += 1;
                            continue;
                        }
                        header_end = s;
                        break;
                    }
                    let dash = !stack.is_empty() && c.starts_with(b"--");
                    match field_start(c) {
                        Some((name_len, colon)) if !dash => {
                            fields.push((s, e, vec![c], name_len, colon));
                            li += 1;
                        }
                        _ => {
                            header_end = s;
                            break;
                        }
                    }
                }
                let mut info = PartInfo::default();
                for (s, e, field_lines, name_len, colon) in fields {
                    let (buf, unfolded) = unfold(&field_lines, colon);
                    let name = buf[..name_len.min(buf.len())].to_vec();
                    info.on_field(&name, &unfolded);
                    let mut value = Vec::new();
                    decode_rfc2047(&unfolded, &mut value);
                    out.events.push(NaiveEvent::Header {
                        depth,
                        name: name.clone(),
                        value,
                    });
                    if top {
                        let field = &msg[s..e];
                        let f = field.strip_suffix(b"\n").unwrap_or(field);
                        let f = if f.len() > colon + 1 {
                            f.strip_suffix(b"\r").unwrap_or(f)
                        } else {
                            f
                        };
                        let v = &f[colon + 1..];
                        let v = &v[v
                            .iter()
                            .position(|&b| b != b' ' && b != b'\t')
                            .unwrap_or(v.len())..];
                        out.fields.push((s, e, name, v.to_vec()));
                    }
                }
                if top {
                    out.header_end = header_end;
                    out.events.push(NaiveEvent::HeaderEnd);
                }
                if parts >= limits.max_mime_parts {
                    return out;
                }
                parts += 1;
                let media = if !info.media.is_empty() {
                    info.media.clone()
                } else if digest_parent {
                    b"message/rfc822".to_vec()
                } else {
                    b"text/plain".to_vec()
                };
                out.events.push(NaiveEvent::PartStart {
                    depth,
                    content_type: media.clone(),
                    filename: info.filename.clone(),
                    text: Vec::new(),
                    urls: Vec::new(),
                });
                let deeper_ok = depth < limits.max_mime_depth;
                next = Next::Content { text: None };
                if media.starts_with(b"multipart/") {
                    if let (Some(b), true) = (&info.boundary, deeper_ok) {
                        stack.push(Level {
                            boundary: b.clone(),
                            child_depth: depth + 1,
                            digest: media == b"multipart/digest",
                        });
                    }
                } else if (media == b"message/rfc822" || media == b"message/global")
                    && info.cte == Cte::Identity
                    && deeper_ok
                {
                    next = Next::Header {
                        depth: depth + 1,
                        top: false,
                        digest_parent: false,
                    };
                } else if media.starts_with(b"text/") {
                    let html = media == b"text/html";
                    next = Next::Content {
                        text: Some(TextSpec { info, html }),
                    };
                }
            }
            Next::Content { text } => {
                let start = lines.get(li).map_or(msg.len(), |l| l.0);
                let mut end = msg.len();
                let mut after: Option<Next> = None;
                while let Some(&(s, e)) = lines.get(li) {
                    li += 1;
                    if stack.is_empty() {
                        continue;
                    }
                    let Some((k, close)) = decide(&stack, &msg[s..e]) else {
                        continue;
                    };
                    end = s;
                    if end > start && msg[end - 1] == b'\n' {
                        end -= 1;
                        if end > start && msg[end - 1] == b'\r' {
                            end -= 1;
                        }
                    }
                    stack.truncate(k + 1);
                    after = Some(if close {
                        stack.pop();
                        Next::Content { text: None }
                    } else {
                        let l = &stack[k];
                        Next::Header {
                            depth: l.child_depth,
                            top: false,
                            digest_parent: l.digest,
                        }
                    });
                    break;
                }
                if let Some(spec) = text {
                    let (t, u) = decode_text(&msg[start..end], &spec);
                    if let Some(NaiveEvent::PartStart { text, urls, .. }) = out.events.last_mut() {
                        *text = t;
                        *urls = u;
                    }
                }
                match after {
                    Some(n) => next = n,
                    None => return out,
                }
            }
        }
    }
}

/// A JSON value (enough for the expected-parse files).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub(super) fn parse(s: &str) -> Option<Json> {
        let b = s.as_bytes();
        let mut i = 0;
        let v = parse_value(b, &mut i)?;
        skip_ws(b, &mut i);
        (i == b.len()).then_some(v)
    }

    pub(super) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn as_arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }

    /// The only key of a one-key object (how the files tag enum variants).
    pub(super) fn variant(&self) -> Option<(&str, &Json)> {
        match self {
            Json::Obj(m) if m.len() == 1 => Some((m[0].0.as_str(), &m[0].1)),
            _ => None,
        }
    }
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\r' | b'\n') {
        *i += 1;
    }
}

fn parse_value(b: &[u8], i: &mut usize) -> Option<Json> {
    skip_ws(b, i);
    match *b.get(*i)? {
        b'{' => {
            *i += 1;
            let mut m = Vec::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b'}') {
                *i += 1;
                return Some(Json::Obj(m));
            }
            loop {
                skip_ws(b, i);
                let Json::Str(k) = parse_value(b, i)? else {
                    return None;
                };
                skip_ws(b, i);
                if b.get(*i) != Some(&b':') {
                    return None;
                }
                *i += 1;
                let v = parse_value(b, i)?;
                m.push((k, v));
                skip_ws(b, i);
                match b.get(*i)? {
                    b',' => *i += 1,
                    b'}' => {
                        *i += 1;
                        return Some(Json::Obj(m));
                    }
                    _ => return None,
                }
            }
        }
        b'[' => {
            *i += 1;
            let mut a = Vec::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b']') {
                *i += 1;
                return Some(Json::Arr(a));
            }
            loop {
                a.push(parse_value(b, i)?);
                skip_ws(b, i);
                match b.get(*i)? {
                    b',' => *i += 1,
                    b']' => {
                        *i += 1;
                        return Some(Json::Arr(a));
                    }
                    _ => return None,
                }
            }
        }
        b'"' => {
            *i += 1;
            let mut s: Vec<u16> = Vec::new();
            let mut out = String::new();
            loop {
                let c = *b.get(*i)?;
                *i += 1;
                match c {
                    b'"' => break,
                    b'\\' => {
                        let e = *b.get(*i)?;
                        *i += 1;
                        let ch = match e {
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'u' => {
                                let hex = std::str::from_utf8(b.get(*i..*i + 4)?).ok()?;
                                *i += 4;
                                s.push(u16::from_str_radix(hex, 16).ok()?);
                                continue;
                            }
                            other => other as char,
                        };
                        out.push_str(&String::from_utf16_lossy(&s));
                        s.clear();
                        out.push(ch);
                    }
                    _ => {
                        out.push_str(&String::from_utf16_lossy(&s));
                        s.clear();
                        // Re-read the UTF-8 sequence starting here.
                        let start = *i - 1;
                        let len = match c {
                            0x00..=0x7F => 1,
                            0xC0..=0xDF => 2,
                            0xE0..=0xEF => 3,
                            _ => 4,
                        };
                        *i = start + len;
                        out.push_str(std::str::from_utf8(b.get(start..start + len)?).ok()?);
                    }
                }
            }
            out.push_str(&String::from_utf16_lossy(&s));
            Some(Json::Str(out))
        }
        b't' => {
            *i += 4;
            Some(Json::Bool(true))
        }
        b'f' => {
            *i += 5;
            Some(Json::Bool(false))
        }
        b'n' => {
            *i += 4;
            Some(Json::Null)
        }
        _ => {
            let start = *i;
            while *i < b.len() && matches!(b[*i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                *i += 1;
            }
            std::str::from_utf8(&b[start..*i])
                .ok()?
                .parse()
                .ok()
                .map(Json::Num)
        }
    }
}
