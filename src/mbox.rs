//! Mbox framing of stored messages: the corpus, `conbool scan` and `conbool train` read files
//! that may start with an mbox `From ` line, which is not part of the message. The message
//! pipeline never sees one (mbox lines are the caller's concern, not the parser's), so the helper
//! lives here, outside the protocol and message cores.

use crate::message::header::{classify, LineClass};

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

#[cfg(test)]
mod tests {
    use super::*;

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
