//! Incremental parser of server replies (RFC 5321 §4.2) into [`Reply`]: single and multi-line
//! replies (`250-…` continuation lines, `250 …` last line), and the RFC 2034 enhanced status
//! code when the text starts with a valid `class.subject.detail` whose class matches the
//! reply code's first digit.
//!
//! Bounded: a line longer than [`MAX_REPLY_LINE_BYTES`] or a reply of more than
//! [`MAX_REPLY_LINES`] lines is an error, so a hostile next hop cannot grow our memory.
//! Incomplete input is not an error: the parser keeps the lines it has and remembers how far it
//! scanned the partial last line, so byte-at-a-time input costs linear time.

use std::fmt;

use memchr::memchr;

use crate::smtp::reply::{EnhancedCode, Reply};

/// Longest reply line accepted, CRLF included. RFC 5321 §4.5.3.1.5 sets the floor at 512;
/// real servers stay well below 2048.
pub const MAX_REPLY_LINE_BYTES: usize = 2048;

/// Most lines in one reply. A large EHLO reply has about 20.
pub const MAX_REPLY_LINES: usize = 128;

/// Why the server's bytes can never become a valid reply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReplyError {
    /// A line longer than [`MAX_REPLY_LINE_BYTES`].
    LineTooLong,
    /// A reply of more than [`MAX_REPLY_LINES`] lines.
    TooManyLines,
    /// A line that does not start with a three-digit code 200..=599 followed by ` `, `-` or
    /// the end of the line.
    Malformed,
    /// A line of a multi-line reply whose code differs from the first line's.
    CodeMismatch,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            ReplyError::LineTooLong => "reply line too long",
            ReplyError::TooManyLines => "too many reply lines",
            ReplyError::Malformed => "malformed reply line",
            ReplyError::CodeMismatch => "reply lines with different codes",
        };
        f.write_str(what)
    }
}

impl std::error::Error for ReplyError {}

/// What one call to [`ReplyParser::feed`] did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Parsed {
    /// Bytes consumed from the front of the input (whole lines only); the caller drops them
    /// and passes the rest again, followed by new bytes, on the next call.
    pub used: usize,
    /// The reply completed by this call, if any. At most one per call.
    pub reply: Option<Reply>,
}

/// Parses one reply after another out of a byte stream.
///
/// Call [`ReplyParser::feed`] with everything not yet consumed; drop `used` bytes from the
/// front; call again while a reply came out. After an `Err` the stream is broken and the
/// parser must not be fed again.
#[derive(Default, Debug)]
pub struct ReplyParser {
    /// Code of the first line of the reply in progress.
    code: Option<u16>,
    enhanced: Option<EnhancedCode>,
    lines: Vec<String>,
    /// Bytes of the partial line at the front of the input already searched for LF.
    scanned: usize,
}

impl ReplyParser {
    /// A parser waiting for the first line of a reply.
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Whether a multi-line reply has started but not finished, or a partial line was seen.
    pub fn is_mid_reply(&self) -> bool {
        self.code.is_some() || self.scanned > 0
    }

    /// Consumes whole lines from the front of `input` until one reply is complete or the input
    /// ends in a partial line. The partial line is not consumed: pass it again, unchanged,
    /// with more bytes after it.
    pub fn feed(&mut self, input: &[u8]) -> Result<Parsed, ReplyError> {
        let mut used = 0;
        loop {
            let rest = input.get(used..).unwrap_or_default();
            let from = self.scanned.min(rest.len());
            let Some(lf) = memchr(b'\n', &rest[from..]).map(|i| i + from) else {
                self.scanned = rest.len();
                if self.scanned >= MAX_REPLY_LINE_BYTES {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok(Parsed { used, reply: None });
            };
            self.scanned = 0;
            if lf + 1 > MAX_REPLY_LINE_BYTES {
                return Err(ReplyError::LineTooLong);
            }
            let line = &rest[..lf];
            // RFC 5321 wants CRLF; a bare LF is tolerated as most clients do.
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            used += lf + 1;
            if let Some(reply) = self.line(line)? {
                return Ok(Parsed {
                    used,
                    reply: Some(reply),
                });
            }
        }
    }

    /// Takes one line without its line end; returns the reply when it was the last line.
    fn line(&mut self, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let (code, last, text) = split_line(line)?;
        let text = String::from_utf8_lossy(text);
        match self.code {
            None => {
                self.code = Some(code);
                let (enhanced, rest) = match enhanced_prefix(&text, code) {
                    Some((e, rest)) => (Some(e), rest),
                    None => (None, &text[..]),
                };
                self.enhanced = enhanced;
                self.lines.push(rest.to_string());
            }
            Some(first) if first != code => return Err(ReplyError::CodeMismatch),
            Some(_) => {
                if self.lines.len() >= MAX_REPLY_LINES {
                    return Err(ReplyError::TooManyLines);
                }
                // RFC 2034 §4: the code repeats on every line; strip it when it does.
                let rest = match (self.enhanced, enhanced_prefix(&text, code)) {
                    (Some(e), Some((f, rest))) if e == f => rest,
                    _ => &text[..],
                };
                self.lines.push(rest.to_string());
            }
        }
        if !last {
            return Ok(None);
        }
        let lines = std::mem::take(&mut self.lines);
        let enhanced = self.enhanced.take();
        let code = self.code.take().unwrap_or(code);
        Ok(Some(Reply::multiline(code, enhanced, lines)))
    }
}

/// Splits `250-text` into (250, false, "text"); `250 text` and `250` are last lines.
fn split_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let (digits, rest) = match line {
        [a, b, c, rest @ ..] => ([*a, *b, *c], rest),
        _ => return Err(ReplyError::Malformed),
    };
    // RFC 5321 §4.2: first digit 2..=5, second 0..=5, third 0..=9.
    let ok = (b'2'..=b'5').contains(&digits[0])
        && (b'0'..=b'5').contains(&digits[1])
        && digits[2].is_ascii_digit();
    if !ok {
        return Err(ReplyError::Malformed);
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match rest {
        [] => Ok((code, true, rest)),
        [b' ', text @ ..] => Ok((code, true, text)),
        [b'-', text @ ..] => Ok((code, false, text)),
        _ => Err(ReplyError::Malformed),
    }
}

/// `2.1.0 Sender OK` → (2.1.0, "Sender OK") when the class matches `code`'s first digit
/// (RFC 2034 §4). The code ends at a space or the end of the text.
fn enhanced_prefix(text: &str, code: u16) -> Option<(EnhancedCode, &str)> {
    let end = text.find(' ').unwrap_or(text.len());
    let word = &text[..end];
    let rest = text.get(end + 1..).unwrap_or("");
    let mut parts = word.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let class = match class {
        "2" => 2,
        "4" => 4,
        "5" => 5,
        _ => return None,
    };
    if u16::from(class) != code / 100 {
        return None;
    }
    let subject = sub_code(subject)?;
    let detail = sub_code(detail)?;
    Some((EnhancedCode::new(class, subject, detail), rest))
}

/// RFC 3463 §2: `1*3digit`.
fn sub_code(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` in order, keeping unconsumed bytes as a caller would.
    fn parse_pieces(pieces: &[&[u8]]) -> Result<Vec<Reply>, ReplyError> {
        let mut p = ReplyParser::new();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                let parsed = p.feed(&buf)?;
                buf.drain(..parsed.used);
                match parsed.reply {
                    Some(r) => out.push(r),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    fn for_each_split(input: &[u8], mut check: impl FnMut(&str, &[&[u8]])) {
        check("whole", &[input]);
        check("bytes", &input.chunks(1).collect::<Vec<_>>());
        for i in 0..=input.len() {
            check(&format!("split at {i}"), &[&input[..i], &input[i..]]);
        }
    }

    fn e(class: u8, subject: u16, detail: u16) -> Option<EnhancedCode> {
        Some(EnhancedCode::new(class, subject, detail))
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    type Row = (&'static str, &'static [u8], Result<Vec<Reply>, ReplyError>);

    fn table() -> Vec<Row> {
        vec![
            (
                "single_line_with_enhanced_code",
                b"250 2.1.0 Sender OK\r\n",
                Ok(vec![Reply::new(250, e(2, 1, 0), "Sender OK")]),
            ),
            (
                "greeting_without_enhanced_code",
                b"220 mx.example ESMTP ready\r\n",
                Ok(vec![Reply::new(220, None, "mx.example ESMTP ready")]),
            ),
            (
                "multiline_ehlo",
                b"250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 CHUNKING\r\n",
                Ok(vec![Reply::multiline(
                    250,
                    None,
                    lines(&["mx.example Hello", "PIPELINING", "SIZE 1000", "CHUNKING"]),
                )]),
            ),
            (
                "multiline_enhanced_code_stripped_on_every_line",
                b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n",
                Ok(vec![Reply::multiline(
                    550,
                    e(5, 7, 1),
                    lines(&["first", "second", "third"]),
                )]),
            ),
            (
                "class_mismatch_is_text",
                b"250 5.1.0 odd\r\n",
                Ok(vec![Reply::new(250, None, "5.1.0 odd")]),
            ),
            (
                "four_part_version_is_text",
                b"250 1.2.3.4 ok\r\n",
                Ok(vec![Reply::new(250, None, "1.2.3.4 ok")]),
            ),
            (
                "four_digit_subcode_is_text",
                b"451 4.1000.1 x\r\n",
                Ok(vec![Reply::new(451, None, "4.1000.1 x")]),
            ),
            (
                "code_without_text",
                b"250\r\n",
                Ok(vec![Reply::new(250, None, "")]),
            ),
            (
                "enhanced_code_only",
                b"250 2.0.0\r\n",
                Ok(vec![Reply::new(250, e(2, 0, 0), "")]),
            ),
            (
                "bare_lf_tolerated",
                b"354 go ahead\n",
                Ok(vec![Reply::new(354, None, "go ahead")]),
            ),
            (
                "two_replies_back_to_back",
                b"250 2.1.0 ok\r\n550 5.1.1 no such user\r\n",
                Ok(vec![
                    Reply::new(250, e(2, 1, 0), "ok"),
                    Reply::new(550, e(5, 1, 1), "no such user"),
                ]),
            ),
            (
                "non_utf8_text_kept_lossy",
                b"250 caf\xe9\r\n",
                Ok(vec![Reply::new(250, None, "caf\u{fffd}")]),
            ),
            (
                "incomplete_line_is_not_an_error",
                b"250-a\r\n250 b",
                Ok(vec![]),
            ),
            ("garbage_line", b"hello\r\n", Err(ReplyError::Malformed)),
            ("empty_line", b"\r\n", Err(ReplyError::Malformed)),
            (
                "code_out_of_range",
                b"199 x\r\n",
                Err(ReplyError::Malformed),
            ),
            (
                "second_digit_out_of_range",
                b"260 x\r\n",
                Err(ReplyError::Malformed),
            ),
            ("bad_separator", b"250_x\r\n", Err(ReplyError::Malformed)),
            (
                "continuation_code_mismatch",
                b"250-a\r\n251 b\r\n",
                Err(ReplyError::CodeMismatch),
            ),
            (
                "garbage_continuation",
                b"250-a\r\nxyz\r\n",
                Err(ReplyError::Malformed),
            ),
        ]
    }

    #[test]
    fn table_under_every_split() {
        for (name, input, want) in table() {
            for_each_split(input, |how, pieces| {
                assert_eq!(parse_pieces(pieces), want, "{name}, {how}");
            });
        }
    }

    #[test]
    fn line_too_long_even_without_lf() {
        let mut long = b"250 ".to_vec();
        long.resize(MAX_REPLY_LINE_BYTES, b'x');
        assert_eq!(
            parse_pieces(&[&long]),
            Err(ReplyError::LineTooLong),
            "unterminated"
        );
        let mut ok = b"250 ".to_vec();
        ok.resize(MAX_REPLY_LINE_BYTES - 2, b'x');
        ok.extend_from_slice(b"\r\n");
        assert_eq!(parse_pieces(&[&ok]).map(|v| v.len()), Ok(1), "at limit");
        long.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_pieces(&[&long]),
            Err(ReplyError::LineTooLong),
            "over limit"
        );
    }

    #[test]
    fn too_many_lines() {
        let mut at = Vec::new();
        for _ in 0..MAX_REPLY_LINES - 1 {
            at.extend_from_slice(b"250-x\r\n");
        }
        let mut over = at.clone();
        at.extend_from_slice(b"250 x\r\n");
        assert_eq!(parse_pieces(&[&at]).map(|v| v.len()), Ok(1), "at limit");
        over.extend_from_slice(b"250-x\r\n250 x\r\n");
        assert_eq!(parse_pieces(&[&over]), Err(ReplyError::TooManyLines));
    }

    #[test]
    fn round_trips_what_reply_writes() {
        let replies = [
            Reply::new(250, e(2, 1, 5), "Recipient OK"),
            Reply::multiline(250, None, lines(&["mx", "PIPELINING", "8BITMIME"])),
            Reply::multiline(451, e(4, 3, 0), lines(&["a", "b"])),
            Reply::new(221, e(2, 0, 0), "bye"),
        ];
        for r in replies {
            assert_eq!(parse_pieces(&[&r.to_bytes()]), Ok(vec![r.clone()]), "{r}");
        }
    }

    #[test]
    fn byte_at_a_time_scans_linearly() {
        // A partial line is scanned once: `scanned` moves forward, never restarts.
        let mut p = ReplyParser::new();
        let line = b"250 abcdefgh\r\n";
        for i in 1..line.len() {
            let parsed = p.feed(&line[..i]).expect("partial");
            assert_eq!(
                parsed,
                Parsed {
                    used: 0,
                    reply: None
                }
            );
            assert_eq!(p.scanned, i);
        }
        let parsed = p.feed(line).expect("whole");
        assert_eq!(parsed.used, line.len());
        assert!(parsed.reply.is_some());
        assert!(!p.is_mid_reply());
    }
}
