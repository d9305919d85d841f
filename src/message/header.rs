//! Header lines: telling a field from a continuation, the blank line and a non-header line,
//! accumulating one field across lines (bounded) and unfolding it for the scanner.
//!
//! How odd lines are taken (the way Postfix's `cleanup`/`mime_state` and Exim do it):
//!
//! - A field is `name:` where the name is one or more printable US-ASCII characters other than
//!   `:` (RFC 5322 §2.2), optionally followed by spaces or tabs before the colon (the obsolete
//!   form of §4.5). Bytes after the colon are kept as they are: 8-bit, non-UTF-8, NUL.
//! - A line starting with a space or tab continues the field before it (folding, §2.2.3,
//!   including obsolete all-whitespace lines).
//! - An empty line (CRLF, or LF under `bare_lf = accept`) ends the header block.
//! - Any other line — no colon, an empty or invalid name (a NUL, an 8-bit byte, a space inside
//!   it), a name longer than [`MAX_NAME_LEN`], or leading whitespace on the first line — is not
//!   a header field: like Postfix, we end the header block there and the line is the first line
//!   of the body. Nothing is inserted or removed; the bytes go out as they came.
//! - Inside a multipart body, a line starting with `--` ends a part header the same way, so
//!   a part without its blank line still lets the boundary be seen.
//! - Mbox `From ` lines are the caller's business (one here would be a non-header line).

use super::decode::is_wsp;
use crate::swar::{eq_bytes, load};

/// Longest field name (plus whitespace before the colon) accepted; a longer run of name
/// characters without a colon makes the line a non-header line.
pub(crate) const MAX_NAME_LEN: usize = 998;

/// Most bytes of one field kept for the scanner (the whole field still passes through).
pub(crate) const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Room a field buffer starts with (longer fields grow it, up to [`MAX_FIELD_BYTES`]).
const FIELD_CAPACITY: usize = 1024;

/// What a header-block line is, decided from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineClass {
    /// Starts a field; the name is `line[..name_len]`, the colon at `colon`.
    Field { name_len: usize, colon: usize },
    /// Starts with SP or HTAB.
    Continuation,
    /// CRLF or LF alone.
    Blank,
    /// Anything else: the header block ends before this line.
    NotHeader,
}

/// Classifies a header line from its first bytes (`line` stops at or before the LF; `line_ends`
/// says the line ends right after `line`). `None`: more bytes are needed (at most
/// [`MAX_NAME_LEN`] + 2 are ever needed). `dash_ends` makes a line starting with `--` a
/// non-header line (in a multipart body, where it may be a boundary).
pub(crate) fn classify(line: &[u8], line_ends: bool, dash_ends: bool) -> Option<LineClass> {
    let Some(&first) = line.first() else {
        return line_ends.then_some(LineClass::Blank);
    };
    match first {
        b'\r' => {
            if line.len() == 1 {
                return line_ends.then_some(LineClass::Blank);
            }
            return Some(LineClass::NotHeader);
        }
        b' ' | b'\t' => return Some(LineClass::Continuation),
        _ => {}
    }
    if dash_ends && first == b'-' {
        match line.get(1) {
            Some(b'-') => return Some(LineClass::NotHeader),
            None if !line_ends => return None,
            _ => {}
        }
    }
    let limit = line.len().min(MAX_NAME_LEN + 1);
    let mut name_len = 0;
    while name_len < limit && NAME_CHAR[usize::from(line[name_len])] {
        name_len += 1;
    }
    if name_len > MAX_NAME_LEN {
        return Some(LineClass::NotHeader);
    }
    if name_len == line.len() {
        return if line_ends {
            Some(LineClass::NotHeader)
        } else {
            None
        };
    }
    if name_len == 0 {
        return Some(LineClass::NotHeader);
    }
    let mut colon = name_len;
    while colon < line.len() && is_wsp(line[colon]) {
        colon += 1;
        if colon > MAX_NAME_LEN + 1 {
            return Some(LineClass::NotHeader);
        }
    }
    match line.get(colon) {
        Some(b':') => Some(LineClass::Field { name_len, colon }),
        Some(_) => Some(LineClass::NotHeader),
        None if line_ends => Some(LineClass::NotHeader),
        None => None,
    }
}

/// RFC 5322 `ftext`: printable US-ASCII except the colon.
const NAME_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 33;
    while b <= 126 {
        t[b] = b != b':' as usize;
        b += 1;
    }
    t
};

/// Where the first LF in `s` is. Header lines are short, so look a word at a time before
/// paying for a `memchr` call (whose set-up costs more than a short line).
pub(crate) fn find_lf(s: &[u8]) -> Option<usize> {
    const INLINE: usize = 128;
    let lf = |word: &[u8]| eq_bytes(load(word), b'\n');
    let mut i = 0;
    // Two words per round, one test for both.
    while let Some(pair) = s.get(i..i + 16) {
        if i >= INLINE {
            return memchr::memchr(b'\n', &s[i..]).map(|k| i + k);
        }
        let (lo, hi) = (lf(&pair[..8]), lf(&pair[8..]));
        if lo | hi != 0 {
            // The lowest flagged byte is a true LF (false positives only sit above one).
            let k = if lo != 0 {
                lo.trailing_zeros() / 8
            } else {
                8 + hi.trailing_zeros() / 8
            };
            return Some(i + k as usize);
        }
        i += 16;
    }
    if let Some(word) = s.get(i..i + 8) {
        let zero = lf(word);
        if zero != 0 {
            return Some(i + (zero.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..].iter().position(|&b| b == b'\n').map(|k| i + k)
}

/// One field's bytes as the scanner sees them, unfolded as its lines arrive: the first line
/// without its line end; then, for each continuation line with anything but whitespace on it,
/// one space and the line without its leading whitespace (whitespace before a fold is dropped).
/// Capped at [`MAX_FIELD_BYTES`]: once full it stops changing. Filled piecewise; the result does
/// not depend on how the lines were cut.
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldAcc {
    buf: Vec<u8>,
    /// A CR ended the last piece: dropped if the line ends next, kept otherwise.
    pending_cr: bool,
    /// In a continuation line, before its first byte that is not SP or HTAB.
    skipping_ws: bool,
    full: bool,
    /// Where the name ends and where the colon is (from the field's first line).
    pub(crate) name_len: usize,
    pub(crate) colon: usize,
    pub(crate) active: bool,
}

impl FieldAcc {
    /// Starts a field.
    pub(crate) fn start(&mut self, name_len: usize, colon: usize) {
        self.buf.clear();
        // One allocation that most fields fit, instead of growing 8, 16, 32... per message.
        self.buf.reserve(FIELD_CAPACITY);
        self.pending_cr = false;
        self.skipping_ws = false;
        self.full = false;
        self.name_len = name_len;
        self.colon = colon;
        self.active = true;
    }

    /// A continuation line follows (RFC 5322 §2.2.3 unfolding).
    pub(crate) fn fold(&mut self) {
        if !self.full {
            while self.buf.last().is_some_and(|&b| is_wsp(b)) {
                self.buf.pop();
            }
        }
        self.skipping_ws = true;
    }

    /// Adds bytes of the current line (`part` holds no LF); `line_ends` when the LF follows.
    pub(crate) fn line_part(&mut self, part: &[u8], line_ends: bool) {
        if part.is_empty() && !line_ends {
            return;
        }
        if self.pending_cr {
            self.pending_cr = false;
            if !(part.is_empty() && line_ends) {
                self.text(b"\r");
            }
        }
        let (body, cr) = match part.split_last() {
            Some((b'\r', body)) => (body, true),
            _ => (part, false),
        };
        self.text(body);
        if cr && !line_ends {
            self.pending_cr = true;
        }
    }

    /// Ends the field; the bytes stay readable until the next [`FieldAcc::start`].
    pub(crate) fn end(&mut self) {
        if self.pending_cr {
            self.pending_cr = false;
            self.text(b"\r");
        }
        self.active = false;
    }

    /// The field name (capped like the rest).
    pub(crate) fn name(&self) -> &[u8] {
        &self.buf[..self.name_len.min(self.buf.len())]
    }

    /// The unfolded value, without leading and trailing whitespace.
    pub(crate) fn value(&self) -> &[u8] {
        trim_wsp(self.buf.get(self.colon + 1..).unwrap_or(b""))
    }

    fn text(&mut self, mut b: &[u8]) {
        if self.skipping_ws {
            let ws = b.iter().take_while(|&&c| is_wsp(c)).count();
            b = &b[ws..];
            if b.is_empty() {
                return;
            }
            self.skipping_ws = false;
            self.push(b" ");
        }
        self.push(b);
    }

    fn push(&mut self, b: &[u8]) {
        if self.full {
            return;
        }
        let room = MAX_FIELD_BYTES - self.buf.len();
        self.buf.extend_from_slice(&b[..b.len().min(room)]);
        self.full = self.buf.len() >= MAX_FIELD_BYTES;
    }
}

/// `s` without leading and trailing SP and HTAB.
pub(crate) fn trim_wsp(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_wsp(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_wsp(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIFY: &[(&str, &[u8], bool, Option<LineClass>)] = &[
        (
            "field",
            b"Subject: hi",
            true,
            Some(LineClass::Field {
                name_len: 7,
                colon: 7,
            }),
        ),
        (
            "field_partial",
            b"Subject: ",
            false,
            Some(LineClass::Field {
                name_len: 7,
                colon: 7,
            }),
        ),
        (
            "obs_space_before_colon",
            b"Subject \t: hi",
            true,
            Some(LineClass::Field {
                name_len: 7,
                colon: 9,
            }),
        ),
        ("name_undecided", b"Subj", false, None),
        ("name_no_colon", b"Subj", true, Some(LineClass::NotHeader)),
        ("space_then_more", b"Subj ", false, None),
        (
            "space_in_name",
            b"Sub ject: x",
            true,
            Some(LineClass::NotHeader),
        ),
        (
            "continuation_space",
            b" folded",
            true,
            Some(LineClass::Continuation),
        ),
        (
            "continuation_tab",
            b"\tfolded",
            false,
            Some(LineClass::Continuation),
        ),
        ("blank_lf", b"", true, Some(LineClass::Blank)),
        ("blank_crlf", b"\r", true, Some(LineClass::Blank)),
        ("cr_undecided", b"\r", false, None),
        ("bare_cr_line", b"\rx", false, Some(LineClass::NotHeader)),
        (
            "nul_in_name",
            b"Sub\0ject: x",
            true,
            Some(LineClass::NotHeader),
        ),
        (
            "eight_bit_name",
            b"Sub\xe9: x",
            true,
            Some(LineClass::NotHeader),
        ),
        ("empty_name", b": x", true, Some(LineClass::NotHeader)),
        (
            "nul_in_value_kept",
            b"X: a\0b",
            true,
            Some(LineClass::Field {
                name_len: 1,
                colon: 1,
            }),
        ),
        (
            "mbox_from",
            b"From a@b Sat Jan  3 01:05:34 1996",
            true,
            Some(LineClass::NotHeader),
        ),
    ];

    #[test]
    fn classify_rows() {
        for (name, line, ends, want) in CLASSIFY {
            assert_eq!(classify(line, *ends, false), *want, "row {name}");
        }
    }

    #[test]
    fn dash_lines_end_part_headers() {
        assert_eq!(classify(b"--b", true, true), Some(LineClass::NotHeader));
        assert_eq!(classify(b"-", false, true), None);
        assert_eq!(
            classify(b"--:x", true, false),
            Some(LineClass::Field {
                name_len: 2,
                colon: 2
            })
        );
        assert_eq!(
            classify(b"-x: y", true, true),
            Some(LineClass::Field {
                name_len: 2,
                colon: 2
            })
        );
    }

    #[test]
    fn find_lf_agrees_with_memchr() {
        let mut buf = vec![b'a'; 300];
        assert_eq!(find_lf(&buf), None);
        for at in 0..buf.len() {
            buf[at] = b'\n';
            for start in [0, 1, 7, 8, 9] {
                let s = &buf[start.min(at)..];
                assert_eq!(
                    find_lf(s),
                    memchr::memchr(b'\n', s),
                    "LF at {at}, from {start}"
                );
                // Every length around the LF: the pair, word and byte steps at the end.
                for end in at.saturating_sub(17)..(at + 18).min(buf.len()) {
                    let s = &buf[start.min(end)..end];
                    assert_eq!(
                        find_lf(s),
                        memchr::memchr(b'\n', s),
                        "LF at {at}, from {start} to {end}"
                    );
                }
            }
            buf[at] = 0x8A; // LF with the high bit set is not an LF
            assert_eq!(find_lf(&buf), None, "0x8A at {at}");
            buf[at] = b'a';
        }
    }

    #[test]
    fn long_name_is_not_a_header() {
        let long = vec![b'x'; MAX_NAME_LEN + 1];
        assert_eq!(classify(&long, false, false), Some(LineClass::NotHeader));
        let ok = vec![b'x'; MAX_NAME_LEN];
        assert_eq!(classify(&ok, false, false), None);
    }

    fn acc_lines(lines: &[&[(&[u8], bool)]]) -> Vec<u8> {
        let mut a = FieldAcc::default();
        a.start(1, 1);
        for (k, pieces) in lines.iter().enumerate() {
            if k > 0 {
                a.fold();
            }
            for (p, ends) in pieces.iter() {
                a.line_part(p, *ends);
            }
        }
        a.end();
        a.buf.clone()
    }

    #[test]
    fn field_acc_drops_only_the_line_end_cr() {
        assert_eq!(acc_lines(&[&[(b"X: a\r", true)]]), b"X: a");
        assert_eq!(acc_lines(&[&[(b"X: a\r", false), (b"", true)]]), b"X: a");
        assert_eq!(
            acc_lines(&[&[(b"X: a\r", false), (b"b", true)]]),
            b"X: a\rb"
        );
        assert_eq!(acc_lines(&[&[(b"X: a\rb\r", true)]]), b"X: a\rb");
        assert_eq!(
            acc_lines(&[&[(b"X: a\r", false)]]),
            b"X: a\r",
            "CR at the end stays"
        );
        assert_eq!(
            acc_lines(&[&[(b"X: a\r", false), (b"", false), (b"", true)]]),
            b"X: a"
        );
    }

    #[test]
    fn field_acc_unfolds() {
        type Lines<'a> = &'a [&'a [(&'a [u8], bool)]];
        let rows: &[(&str, Lines, &[u8])] = &[
            ("single", &[&[(b"X: hello ", true)]], b"hello"),
            (
                "fold",
                &[
                    &[(b"X: Fwd: ", true)],
                    &[(b"\tSaying ", true)],
                    &[(b" Hello", true)],
                ],
                b"Fwd: Saying Hello",
            ),
            (
                "blank_continuation",
                &[&[(b"X: a", true)], &[(b" ", true)], &[(b" b", true)]],
                b"a b",
            ),
            (
                "empty_first_line",
                &[&[(b"X:", true)], &[(b" value", true)]],
                b"value",
            ),
            ("inner_spaces_kept", &[&[(b"X: a  b", true)]], b"a  b"),
            (
                "continuation_in_pieces",
                &[
                    &[(b"X: a", true)],
                    &[(b"  ", false), (b" ", false), (b" b\r", false), (b"", true)],
                ],
                b"a b",
            ),
        ];
        for (name, lines, want) in rows {
            let mut a = FieldAcc::default();
            a.start(1, 1);
            for (k, pieces) in lines.iter().enumerate() {
                if k > 0 {
                    a.fold();
                }
                for (p, ends) in pieces.iter() {
                    a.line_part(p, *ends);
                }
            }
            a.end();
            assert_eq!(a.value(), *want, "row {name}");
        }
    }

    #[test]
    fn field_acc_freezes_at_the_cap() {
        let mut a = FieldAcc::default();
        a.start(1, 1);
        let long = vec![b'x'; MAX_FIELD_BYTES];
        a.line_part(b"X: ", false);
        a.line_part(&long, true);
        a.fold();
        a.line_part(b" more", true);
        a.end();
        assert_eq!(a.buf.len(), MAX_FIELD_BYTES);
        assert!(!a.value().ends_with(b"more"));
    }
}
