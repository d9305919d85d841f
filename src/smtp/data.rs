//! The DATA decoder: finds the end of data, undoes dot-stuffing and applies the `bare_lf`
//! policy, with its state carried across reads so any split of the input gives the same result.
//!
//! Owns: end-of-data detection (only `<CRLF>.<CRLF>`, RFC 5321 §4.1.1.4), dot-unstuffing
//! (RFC 5321 §4.5.2) and what happens to a bare CR or LF. Must not touch: buffers it does not
//! own; it reports [`Piece`]s as ranges of the slice it was given, so the caller can hand them
//! on as zero-copy `Bytes`.
//!
//! A bare LF or bare CR never ends the message and never starts a line: `\n.\n`, `\r.\r`,
//! `\n.\r\n`, `\r\n.\n`, `\r\n.\r` and the NUL variants are message text (SMTP smuggling).

use std::ops::Range;

use crate::config::BareLf;

/// A piece of message content, in order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Piece {
    /// These bytes of the slice just fed, unchanged.
    Input(Range<usize>),
    /// Bytes the decoder writes itself: `CRLF` for a normalised bare line end, or a bare `CR`
    /// that was held back while deciding what it was.
    Static(&'static [u8]),
    /// A bare CR or LF under [`BareLf::Reject`] (reported once per message): the message must
    /// be refused with `550 5.6.11`.
    BareLineEnd,
}

/// What one [`DataDecoder::feed`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Feed {
    /// Bytes of the slice consumed (all of it unless the end of data was found).
    pub consumed: usize,
    /// The end-of-data line was found; it is included in `consumed`.
    pub done: bool,
}

/// Where the decoder is within the line structure of the raw input.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Just after CRLF (or the CRLF of the DATA command line).
    LineStart,
    /// A `.` at the start of a line: dropped whatever follows.
    Dot,
    /// `.` then CR at the start of a line: LF next ends the data.
    DotCr,
    /// Inside a line.
    Mid,
    /// Inside a line, just after a CR. `held` under [`BareLf::Normalize`]: that CR was not
    /// emitted yet (it was the last byte of an earlier feed).
    Cr {
        /// The CR has not been emitted and is not part of the current slice.
        held: bool,
    },
}

/// The DATA decoder for one message. Feed it raw bytes after the `354` reply.
#[derive(Clone, Debug)]
pub struct DataDecoder {
    state: State,
    policy: BareLf,
    reported_bare: bool,
}

const CRLF: &[u8] = b"\r\n";
const CR: &[u8] = b"\r";

impl DataDecoder {
    /// A decoder at the start of the message (a line start: the DATA line ended with CRLF).
    pub fn new(policy: BareLf) -> DataDecoder {
        DataDecoder {
            state: State::LineStart,
            policy,
            reported_bare: false,
        }
    }

    /// Decodes `input`, appending the content pieces to `out`. Stops right after the
    /// end-of-data line; the rest of `input` is not consumed.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Piece>) -> Feed {
        let mut run = Run { start: 0 };
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::LineStart => {
                    if b == b'.' {
                        run.flush(i, out);
                        run.start = i + 1;
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Dot => {
                    if b == b'\r' {
                        self.state = State::DotCr;
                        i += 1;
                        run.start = i;
                    } else {
                        // RFC 5321 §4.5.2: a line starting with a dot loses that dot.
                        self.state = State::Mid;
                    }
                }
                State::DotCr => {
                    if b == b'\n' {
                        self.state = State::LineStart;
                        return Feed {
                            consumed: i + 1,
                            done: true,
                        };
                    }
                    // `.` CR then not LF: the dot was stuffing, the CR is bare.
                    self.bare(out, true);
                    run.start = i;
                    self.state = State::Mid;
                }
                State::Mid => match memchr::memchr2(b'\r', b'\n', &input[i..]) {
                    None => i = input.len(),
                    Some(k) => {
                        let at = i + k;
                        if input[at] == b'\n' {
                            // LF without CR: never a line end (SMTP smuggling).
                            if self.policy == BareLf::Normalize {
                                run.flush(at, out);
                                run.start = at + 1;
                            }
                            self.bare(out, false);
                        } else {
                            self.state = State::Cr { held: false };
                        }
                        i = at + 1;
                    }
                },
                State::Cr { held } => {
                    if b == b'\n' {
                        if held {
                            out.push(Piece::Static(CRLF));
                            run.start = i + 1;
                        }
                        self.state = State::LineStart;
                        i += 1;
                    } else {
                        // CR without LF: never a line end.
                        if self.policy == BareLf::Normalize && !held {
                            run.flush(i - 1, out);
                        }
                        if self.policy == BareLf::Normalize {
                            run.start = i;
                        }
                        self.bare(out, false);
                        self.state = State::Mid;
                    }
                }
            }
        }
        match self.state {
            State::Cr { held: false } if self.policy == BareLf::Normalize => {
                // The CR is the last byte: hold it until we know whether LF follows.
                run.flush(input.len().saturating_sub(1), out);
                self.state = State::Cr { held: true };
            }
            _ => run.flush(input.len(), out),
        }
        Feed {
            consumed: input.len(),
            done: false,
        }
    }

    /// A bare CR or LF was met (`held_cr`: a CR the decoder took out of the input). Under
    /// `Normalize` it becomes CRLF; under `Accept` it passes unchanged; under `Reject` the
    /// message is reported once and content passes as under `Accept`.
    fn bare(&mut self, out: &mut Vec<Piece>, held_cr: bool) {
        if self.policy == BareLf::Normalize {
            out.push(Piece::Static(CRLF));
            return;
        }
        if self.policy == BareLf::Reject && !self.reported_bare {
            self.reported_bare = true;
            out.push(Piece::BareLineEnd);
        }
        if held_cr {
            out.push(Piece::Static(CR));
        }
    }
}

/// The run of unchanged input bytes being collected.
struct Run {
    start: usize,
}

impl Run {
    fn flush(&mut self, end: usize, out: &mut Vec<Piece>) {
        if end > self.start {
            out.push(Piece::Input(self.start..end));
        }
        self.start = end;
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// Decodes `parts` in order; returns the content, the bytes consumed in total and whether
    /// the end was found and whether a bare line end was reported.
    fn decode(policy: BareLf, parts: &[&[u8]]) -> (Vec<u8>, usize, bool, bool) {
        let mut dec = DataDecoder::new(policy);
        let mut content = Vec::new();
        let mut consumed = 0;
        let mut bare = false;
        for part in parts {
            let mut out = Vec::new();
            let feed = dec.feed(part, &mut out);
            for piece in out {
                match piece {
                    Piece::Input(r) => content.extend_from_slice(&part[r]),
                    Piece::Static(s) => content.extend_from_slice(s),
                    Piece::BareLineEnd => bare = true,
                }
            }
            consumed += feed.consumed;
            if feed.done {
                return (content, consumed, true, bare);
            }
        }
        (content, consumed, false, bare)
    }

    /// The naive oracle: find the first `CRLF . CRLF` (the DATA line's CRLF counts), split the
    /// text before it into CRLF lines, drop one leading dot per line, then treat lone CR/LF.
    fn naive(policy: BareLf, input: &[u8]) -> (Vec<u8>, usize, bool, bool) {
        let mut framed = b"\r\n".to_vec();
        framed.extend_from_slice(input);
        let end = framed.windows(5).position(|w| w == b"\r\n.\r\n");
        let (body, consumed, done) = match end {
            Some(p) => (&framed[2..p + 2], p + 3, true),
            None => (&framed[2..], input.len(), false),
        };
        let mut content = Vec::new();
        let mut bare = false;
        let mut lines: Vec<&[u8]> = Vec::new();
        let mut rest = body;
        while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
            lines.push(&rest[..p + 2]);
            rest = &rest[p + 2..];
        }
        lines.push(rest);
        for line in lines {
            let line = line.strip_prefix(b".").unwrap_or(line);
            let (text, eol) = match line.strip_suffix(b"\r\n") {
                Some(t) => (t, &b"\r\n"[..]),
                None => (line, &b""[..]),
            };
            for &b in text {
                if b == b'\r' || b == b'\n' {
                    bare = true;
                    if policy == BareLf::Normalize {
                        content.extend_from_slice(b"\r\n");
                        continue;
                    }
                }
                content.push(b);
            }
            content.extend_from_slice(eol);
        }
        (content, consumed, done, bare && policy == BareLf::Reject)
    }

    fn for_each_split(input: &[u8], mut check: impl FnMut(&str, &[&[u8]])) {
        check("whole", &[input]);
        check("bytewise", &input.chunks(1).collect::<Vec<_>>());
        for i in 0..=input.len() {
            check(&format!("split at {i}"), &[&input[..i], &input[i..]]);
        }
    }

    const POLICIES: [BareLf; 3] = [BareLf::Normalize, BareLf::Reject, BareLf::Accept];

    /// (name, wire bytes after 354, content under Normalize, content under Accept/Reject,
    /// bare line end seen)
    type Row = (
        &'static str,
        &'static [u8],
        &'static [u8],
        &'static [u8],
        bool,
    );

    const CASES: &[Row] = &[
        ("empty_message", b".\r\n", b"", b"", false),
        ("one_line", b"a\r\n.\r\n", b"a\r\n", b"a\r\n", false),
        (
            "leading_dot_doubled",
            b"..x\r\n.\r\n",
            b".x\r\n",
            b".x\r\n",
            false,
        ),
        (
            "dot_line_escaped",
            b"Test\r\n..\r\nmail\r\n.\r\n",
            b"Test\r\n.\r\nmail\r\n",
            b"Test\r\n.\r\nmail\r\n",
            false,
        ),
        (
            "single_leading_dot_dropped",
            b".x\r\n.\r\n",
            b"x\r\n",
            b"x\r\n",
            false,
        ),
        (
            "dot_inside_line_kept",
            b"a.b\r\n.\r\n",
            b"a.b\r\n",
            b"a.b\r\n",
            false,
        ),
        (
            "lf_dot_lf_is_text",
            b"a\n.\nb\r\n.\r\n",
            b"a\r\n.\r\nb\r\n",
            b"a\n.\nb\r\n",
            true,
        ),
        (
            "cr_dot_cr_is_text",
            b"a\r.\rb\r\n.\r\n",
            b"a\r\n.\r\nb\r\n",
            b"a\r.\rb\r\n",
            true,
        ),
        (
            "lf_dot_crlf_is_text",
            b"a\n.\r\nb\r\n.\r\n",
            b"a\r\n.\r\nb\r\n",
            b"a\n.\r\nb\r\n",
            true,
        ),
        (
            "crlf_dot_lf_is_text",
            b"a\r\n.\nb\r\n.\r\n",
            b"a\r\n\r\nb\r\n",
            b"a\r\n\nb\r\n",
            true,
        ),
        (
            "crlf_dot_cr_is_text",
            b"a\r\n.\rb\r\n.\r\n",
            b"a\r\n\r\nb\r\n",
            b"a\r\n\rb\r\n",
            true,
        ),
        (
            "nul_before_dot",
            b"a\r\n\0.\r\nb\r\n.\r\n",
            b"a\r\n\0.\r\nb\r\n",
            b"a\r\n\0.\r\nb\r\n",
            false,
        ),
        (
            "nul_after_dot",
            b"a\r\n.\0\r\nb\r\n.\r\n",
            b"a\r\n\0\r\nb\r\n",
            b"a\r\n\0\r\nb\r\n",
            false,
        ),
        (
            "dot_cr_cr_lf",
            b"a\r\n.\r\r\nb\r\n.\r\n",
            b"a\r\n\r\n\r\nb\r\n",
            b"a\r\n\r\r\nb\r\n",
            true,
        ),
        (
            "trailing_bare_cr_before_crlf",
            b"x\r\r\n.\r\n",
            b"x\r\n\r\n",
            b"x\r\r\n",
            true,
        ),
        (
            "rest_not_consumed",
            b"a\r\n.\r\nQUIT\r\n",
            b"a\r\n",
            b"a\r\n",
            false,
        ),
        (
            "eight_bit_and_nul_pass",
            b"\xff\0\x80\r\n.\r\n",
            b"\xff\0\x80\r\n",
            b"\xff\0\x80\r\n",
            false,
        ),
    ];

    #[test]
    fn table_at_every_split() {
        for &(name, wire, normalized, raw, bare) in CASES {
            for policy in POLICIES {
                let want = if policy == BareLf::Normalize {
                    normalized
                } else {
                    raw
                };
                let end = wire
                    .windows(5)
                    .position(|w| w == b"\r\n.\r\n")
                    .map(|p| p + 5);
                let end = if wire.starts_with(b".\r\n") {
                    Some(3)
                } else {
                    end
                };
                for_each_split(wire, |how, parts| {
                    let (content, consumed, done, seen) = decode(policy, parts);
                    assert!(done, "{name} {policy:?} {how}: end not found");
                    assert_eq!(Some(consumed), end, "{name} {policy:?} {how}: consumed");
                    assert_eq!(content, want, "{name} {policy:?} {how}: content");
                    assert_eq!(seen, bare && policy == BareLf::Reject, "{name} {how}");
                });
            }
        }
    }

    #[test]
    fn unfinished_input_is_all_consumed() {
        for wire in [&b"a\r\n.\r"[..], b"a\r\n.", b"a\r\n", b"a\r", b"\n.\n"] {
            for policy in POLICIES {
                let (_, consumed, done, _) = decode(policy, &[wire]);
                assert!(!done, "{wire:?}");
                assert_eq!(consumed, wire.len(), "{wire:?}");
            }
        }
    }

    #[test]
    fn normal_text_is_one_zero_copy_piece() {
        let mut dec = DataDecoder::new(BareLf::Normalize);
        let mut out = Vec::new();
        let wire = b"Subject: x\r\n\r\nbody\r\n.\r\n";
        let feed = dec.feed(wire, &mut out);
        assert_eq!(feed.consumed, wire.len());
        assert_eq!(out, vec![Piece::Input(0..wire.len() - 3)]);
    }

    /// Deterministic pseudo-random inputs over a small alphabet, checked against the oracle.
    #[test]
    fn matches_naive_oracle() {
        let alphabet = [b'\r', b'\n', b'.', b'a', b'\0', b'\r', b'\n', b'.'];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut ended = 0;
        for round in 0..3000 {
            let len = (next() % 24) as usize;
            let mut input: Vec<u8> = (0..len).map(|_| alphabet[(next() % 8) as usize]).collect();
            if round % 2 == 0 {
                input.extend_from_slice(b"\r\n.\r\nX");
            }
            for policy in POLICIES {
                let want = naive(policy, &input);
                ended += usize::from(want.2);
                for_each_split(&input, |how, parts| {
                    let got = decode(policy, parts);
                    if want.2 {
                        assert_eq!(got, want, "{input:?} {policy:?} {how}");
                    } else {
                        assert_eq!(got.1, want.1, "{input:?} {policy:?} {how}");
                        assert!(!got.2, "{input:?} {policy:?} {how}");
                    }
                });
            }
        }
        assert!(
            ended > 500,
            "too few inputs reached the end of data: {ended}"
        );
    }

    fn shared_corpus() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
        if dir.is_dir() {
            Some(dir)
        } else {
            eprintln!("skipping: no corpus at {}", dir.display());
            None
        }
    }

    #[test]
    fn smuggling_payloads_end_only_at_the_real_terminator() {
        let Some(corpus) = shared_corpus() else {
            return;
        };
        let dir = corpus.join("smtp/smuggling/payloads");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("payload dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "data"))
            .collect();
        files.sort();
        assert!(files.len() >= 13, "payloads missing in {}", dir.display());
        for path in files {
            let wire = std::fs::read(&path).expect("payload");
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let name = name.unwrap_or_default();
            for policy in POLICIES {
                let want = naive(policy, &wire);
                for_each_split(&wire, |how, parts| {
                    let got = decode(policy, parts);
                    assert!(got.2, "{name} {policy:?} {how}: no end");
                    assert_eq!(got.1, wire.len(), "{name} {policy:?} {how}: ended early");
                    assert_eq!(got, want, "{name} {policy:?} {how}");
                    let text = String::from_utf8_lossy(&got.0);
                    assert!(text.contains("mail FROM:<smuggled") || name.starts_with("00"));
                    if policy == BareLf::Normalize {
                        assert!(no_bare_line_ends(&got.0), "{name} {how}: bare CR/LF left");
                    }
                });
            }
        }
    }

    fn no_bare_line_ends(content: &[u8]) -> bool {
        content.iter().enumerate().all(|(i, &b)| match b {
            b'\r' => content.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && content[i - 1] == b'\r',
            _ => true,
        })
    }

    #[test]
    fn aiosmtpd_vectors() {
        let Some(corpus) = shared_corpus() else {
            return;
        };
        let dir = corpus.join("smtp/smuggling");
        let wire = std::fs::read(dir.join("aiosmtpd-dots-escaped.data")).expect("data");
        let expected = std::fs::read(dir.join("aiosmtpd-dots-escaped.expected")).expect("exp");
        let smuggling = std::fs::read(dir.join("aiosmtpd-smuggling.data")).expect("data");
        for policy in POLICIES {
            for_each_split(&wire, |how, parts| {
                let (content, consumed, done, _) = decode(policy, parts);
                assert!(done && consumed == wire.len(), "dots {policy:?} {how}");
                assert_eq!(content, expected, "dots {policy:?} {how}");
            });
            for_each_split(&smuggling, |how, parts| {
                let (content, consumed, done, bare) = decode(policy, parts);
                assert!(
                    done && consumed == smuggling.len(),
                    "smuggling {policy:?} {how}"
                );
                let text = String::from_utf8_lossy(&content);
                assert!(text.contains("NO SMUGGLING"), "smuggling {policy:?} {how}");
                assert_eq!(bare, policy == BareLf::Reject, "smuggling {policy:?} {how}");
            });
        }
    }
}
