//! Mbox framing of stored messages: the corpus, `conbool scan` and `conbool train` read files
//! that may start with an mbox `From ` line, which is not part of the message. The message
//! pipeline never sees one (mbox lines are the caller's concern, not the parser's), so the helper
//! lives here, outside the protocol and message cores.
//!
//! Also where the messages of a whole mbox file start ([`message_starts`]) and the unquoting of
//! the `>From ` lines in one taken out of it ([`unquote_from_lines`]), for `conbool train` and
//! `conbool eval` reading an operator's mailboxes.

use std::io::{self, BufRead, Read};

use crate::message::header::{classify, LineClass};

/// Most bytes of a line [`message_starts`] holds to look at: a `From ` line is short, and the
/// rest of a longer line is skipped unread.
const LINE_PREFIX: u64 = 1024;

/// Whether `raw` starts with an mbox `From ` line: `From ` where the message parser reads no
/// field. `From : a@example.com` is the `From` field in RFC 5322's obsolete syntax (space
/// before the colon), not a line to drop.
pub fn starts_with_from_line(raw: &[u8]) -> bool {
    from_line_len(raw).is_some()
}

/// Drops a leading mbox `From ` line (through its LF), if any ([`starts_with_from_line`]).
pub fn strip_from_line(raw: &[u8]) -> &[u8] {
    from_line_len(raw).map_or(raw, |n| &raw[n..])
}

/// The length of the mbox `From ` line `raw` starts with, its LF included, if it starts with
/// one ([`starts_with_from_line`]).
fn from_line_len(raw: &[u8]) -> Option<usize> {
    if !raw.starts_with(b"From ") {
        return None;
    }
    let lf = memchr::memchr(b'\n', raw);
    let line = &raw[..lf.unwrap_or(raw.len())];
    if matches!(classify(line, true, false), Some(LineClass::Field { .. })) {
        return None;
    }
    Some(lf.map_or(raw.len(), |i| i + 1))
}

/// Where the messages of an mbox start: the offset of every `From ` line with a time in it
/// (`From sender Mon Jan  1 00:00:00 2024`, see [`starts_with_from_line`]) that opens the file
/// or follows an empty line. Empty when the file does not open with one: a single message
/// file, not an mbox. A body line that starts with `From ` is not one when it follows text or
/// has no time (mboxo writers leave such lines unquoted; mutt reads them the same way).
/// Reads `r` a line at a time, holding at most `LINE_PREFIX` (1 KiB) of one, so a mailbox of
/// any size is listed in bounded memory.
pub fn message_starts(mut r: impl BufRead) -> io::Result<Vec<u64>> {
    let mut starts = Vec::new();
    let mut line = Vec::with_capacity(128);
    let mut at = 0u64;
    let mut after_empty = true;
    loop {
        line.clear();
        let n = r.by_ref().take(LINE_PREFIX).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if after_empty && starts_with_from_line(&line) && has_time(&line) {
            starts.push(at);
        } else if at == 0 {
            break;
        }
        at += n as u64;
        after_empty = line == b"\n" || line == b"\r\n";
        if line.last() != Some(&b'\n') {
            at += skip_line(&mut r)?;
        }
    }
    Ok(starts)
}

/// Whether `line` holds a time of day (`dd:dd`), as the date of an mbox `From ` line does.
fn has_time(line: &[u8]) -> bool {
    line.windows(5)
        .any(|w| w[2] == b':' && [w[0], w[1], w[3], w[4]].iter().all(|b| b.is_ascii_digit()))
}

/// Consumes the rest of a line (through its LF); how many bytes that was.
fn skip_line(r: &mut impl BufRead) -> io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(skipped);
        }
        let (n, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        r.consume(n);
        skipped += n as u64;
        if done {
            return Ok(skipped);
        }
    }
}

/// A message taken out of an mbox with its `>From ` lines unquoted: an mboxrd writer gives a
/// line that starts with `From `, after any number of `>`, one more `>`, and one comes off
/// here (an mboxo writer quotes only `From ` itself, which reads back the same).
pub fn unquote_from_lines(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len());
    for line in msg.split_inclusive(|&b| b == b'\n') {
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        if quotes > 0 && line[quotes..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_starts_rows() {
        const ROWS: &[(&str, &[u8], &[u64])] = &[
            ("empty", b"", &[]),
            ("one_message", b"Subject: x\n\nFrom me\n", &[]),
            ("mbox_of_one", b"From a@b 00:00\nSubject: x\n\nbody\n", &[0]),
            ("no_time_no_mbox", b"From a@b Mon\nSubject: x\n\nbody\n", &[]),
            (
                "mbox_of_three_crlf",
                b"From a 10:00\r\nX: 1\r\n\r\nb\r\n\r\nFrom b 10:01\r\nX: 2\r\n\r\nFrom c 10:02\r\nX: 3\r\n",
                &[0, 27, 49],
            ),
            (
                "from_after_text_is_body",
                b"From a 10:00\nX: 1\n\nhello\nFrom 10:30 on\n\nFrom b 10:01\nX: 2\n",
                &[0, 40],
            ),
            (
                "from_without_time_is_body",
                b"From a 10:00\nX: 1\n\nFrom here on\n\nFrom b 10:01\nX: 2\n",
                &[0, 33],
            ),
            ("obsolete_from_field", b"From : a@b 10:00\n\nFrom x 10:00\n", &[]),
            ("quoted_is_body", b"From a 10:00\nX: 1\n\n>From b 10:00\n", &[0]),
            ("no_final_newline", b"From a 10:00\nX: 1\n\nFrom b 10:01", &[0, 19]),
        ];
        for (name, input, want) in ROWS {
            let got = message_starts(*input).expect("in memory");
            assert_eq!(got, *want, "{name}");
            // The same through a one-byte buffer: lines cut anywhere.
            let slow = message_starts(io::BufReader::with_capacity(1, *input)).expect("in memory");
            assert_eq!(slow, *want, "{name}, a byte at a time");
        }
    }

    #[test]
    fn message_starts_skips_long_lines() {
        let mut mbox = b"From a 10:00\nX: ".to_vec();
        mbox.extend(std::iter::repeat(b'y').take(5000));
        mbox.extend_from_slice(b"\n\nFrom b 10:01\nX: 2\n");
        let second = mbox.len() as u64 - 18;
        assert_eq!(message_starts(&mbox[..]).expect("in memory"), [0, second]);
    }

    #[test]
    fn unquote_rows() {
        const ROWS: &[(&str, &[u8], &[u8])] = &[
            ("plain", b"a\nb\n", b"a\nb\n"),
            ("one", b"x\n>From here\n", b"x\nFrom here\n"),
            ("two", b">>From here\r\n", b">From here\r\n"),
            ("not_from", b">Fromage\n> From\n", b">Fromage\n> From\n"),
            ("last_line_without_lf", b"a\n>From", b"a\n>From"),
            ("last_line_from", b"a\n>From x", b"a\nFrom x"),
        ];
        for (name, input, want) in ROWS {
            assert_eq!(unquote_from_lines(input), *want, "{name}");
        }
    }

    #[test]
    fn from_line_is_stripped() {
        const ROWS: &[(&str, &[u8], &[u8])] = &[
            (
                "mbox_line",
                b"From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody\n",
                b"Subject: x\n\nbody\n",
            ),
            (
                "mbox_line_crlf",
                b"From a@b Mon\r\nSubject: x\r\n",
                b"Subject: x\r\n",
            ),
            (
                "no_mbox_line",
                b"From: a@b\r\n\r\nx\r\n",
                b"From: a@b\r\n\r\nx\r\n",
            ),
            ("only_the_line", b"From a@b", b""),
            ("bare_from_line", b"From \nX: y\n", b"X: y\n"),
            (
                "obsolete_from_field_is_kept",
                b"From : a@b\r\nSubject: x\r\n",
                b"From : a@b\r\nSubject: x\r\n",
            ),
            (
                "obsolete_from_field_with_tab_is_kept",
                b"From \t: a@b\n",
                b"From \t: a@b\n",
            ),
            ("empty", b"", b""),
        ];
        for (name, input, want) in ROWS {
            assert_eq!(strip_from_line(input), *want, "{name}");
        }
    }
}
