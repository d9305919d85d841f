//! BDAT chunks (RFC 3030): counting the octets of one chunk as they arrive in reads of any
//! size, and the `bare_lf` policy applied to the concatenated chunk content.
//!
//! Owns: how many input bytes belong to the current chunk, and what a bare CR or LF becomes.
//! Must not touch: command parsing or replies (the server decides those). BDAT content is not
//! dot-stuffed; it passes as [`Piece`]s that are ranges of the slice fed, so the caller can
//! forward it without copying.

use crate::config::BareLf;
use crate::smtp::data::Piece;

/// Counts the octets of one chunk (`BDAT <size>`): up to `u64::MAX`, using no memory for them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChunkReader {
    remaining: u64,
}

impl ChunkReader {
    /// A chunk of `size` octets.
    pub fn new(size: u64) -> ChunkReader {
        ChunkReader { remaining: size }
    }

    /// Of `available` input bytes, how many belong to this chunk; they count as taken.
    pub fn take(&mut self, available: usize) -> usize {
        let n = usize::try_from(self.remaining).map_or(available, |r| r.min(available));
        self.remaining -= n as u64;
        n
    }

    /// Octets still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The whole chunk has arrived.
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }
}

const CRLF: &[u8] = b"\r\n";

/// The `bare_lf` policy over the content of one BDAT message, across chunks and reads.
#[derive(Clone, Debug)]
pub struct LineEnds {
    policy: BareLf,
    /// The last byte fed was a CR (under `Normalize` it was held back, not emitted).
    after_cr: bool,
    reported_bare: bool,
}

impl LineEnds {
    /// The start of a message.
    pub fn new(policy: BareLf) -> LineEnds {
        LineEnds {
            policy,
            after_cr: false,
            reported_bare: false,
        }
    }

    /// Content bytes (all are consumed); appends the pieces to emit to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Piece>) {
        if input.is_empty() {
            return;
        }
        if self.policy == BareLf::Accept {
            out.push(Piece::Input(0..input.len()));
            return;
        }
        let normalize = self.policy == BareLf::Normalize;
        let mut run = 0;
        let mut i = 0;
        if self.after_cr {
            self.after_cr = false;
            if input[0] == b'\n' {
                if normalize {
                    out.push(Piece::Static(CRLF));
                    run = 1;
                }
                i = 1;
            } else {
                self.bare(out);
            }
        }
        while let Some(k) = memchr::memchr2(b'\r', b'\n', &input[i..]) {
            let at = i + k;
            if input[at] == b'\r' {
                match input.get(at + 1) {
                    Some(b'\n') => {
                        i = at + 2;
                        continue;
                    }
                    None => {
                        // A CR ending the slice: hold it until the next byte decides.
                        self.after_cr = true;
                        if normalize {
                            flush(run, at, out);
                            run = input.len();
                        }
                        break;
                    }
                    Some(_) => {}
                }
            }
            // A bare CR or LF.
            if normalize {
                flush(run, at, out);
                run = at + 1;
            }
            self.bare(out);
            i = at + 1;
        }
        flush(run, input.len(), out);
    }

    /// The message is complete (`BDAT ... LAST`): a CR held at the very end is bare.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        if self.after_cr {
            self.after_cr = false;
            self.bare(out);
        }
    }

    fn bare(&mut self, out: &mut Vec<Piece>) {
        match self.policy {
            BareLf::Normalize => out.push(Piece::Static(CRLF)),
            BareLf::Reject if !self.reported_bare => {
                self.reported_bare = true;
                out.push(Piece::BareLineEnd);
            }
            BareLf::Reject | BareLf::Accept => {}
        }
    }
}

fn flush(start: usize, end: usize, out: &mut Vec<Piece>) {
    if end > start {
        out.push(Piece::Input(start..end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICIES: [BareLf; 3] = [BareLf::Normalize, BareLf::Reject, BareLf::Accept];

    /// Feeds `parts` then finishes; returns the content and whether a bare line end was
    /// reported.
    fn run(policy: BareLf, parts: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut ends = LineEnds::new(policy);
        let mut content = Vec::new();
        let mut bare = false;
        let mut apply = |part: &[u8], out: Vec<Piece>| {
            for piece in out {
                match piece {
                    Piece::Input(r) => content.extend_from_slice(&part[r]),
                    Piece::Static(s) => content.extend_from_slice(s),
                    Piece::BareLineEnd => bare = true,
                }
            }
        };
        for part in parts {
            let mut out = Vec::new();
            ends.feed(part, &mut out);
            apply(part, out);
        }
        let mut out = Vec::new();
        ends.finish(&mut out);
        apply(b"", out);
        (content, bare)
    }

    /// The oracle: every CR not followed by LF and every LF not preceded by CR is bare.
    fn naive(policy: BareLf, input: &[u8]) -> (Vec<u8>, bool) {
        let mut content = Vec::new();
        let mut bare = false;
        for (i, &b) in input.iter().enumerate() {
            let lone = match b {
                b'\r' => input.get(i + 1) != Some(&b'\n'),
                b'\n' => i == 0 || input[i - 1] != b'\r',
                _ => false,
            };
            bare |= lone;
            if lone && policy == BareLf::Normalize {
                content.extend_from_slice(b"\r\n");
            } else {
                content.push(b);
            }
        }
        (content, bare && policy == BareLf::Reject)
    }

    const CASES: &[(&str, &[u8])] = &[
        ("plain_crlf", b"a\r\nb\r\n"),
        ("bare_lf", b"a\nb\r\n"),
        ("bare_cr", b"a\rb\r\n"),
        ("cr_at_end", b"a\r"),
        ("lf_at_start", b"\nb"),
        ("cr_cr_lf", b"a\r\r\n"),
        ("binary", b"\0\xff\r\n\x80"),
        ("dots_are_not_special", b"..\r\n.\r\n"),
        ("empty", b""),
    ];

    #[test]
    fn table_at_every_split() {
        for &(name, input) in CASES {
            for policy in POLICIES {
                let want = naive(policy, input);
                let check = |how: &str, parts: &[&[u8]]| {
                    assert_eq!(run(policy, parts), want, "{name} {policy:?} {how}");
                };
                check("whole", &[input]);
                check("bytewise", &input.chunks(1).collect::<Vec<_>>());
                for i in 0..=input.len() {
                    check(&format!("split at {i}"), &[&input[..i], &input[i..]]);
                }
            }
        }
    }

    #[test]
    fn accept_passes_each_slice_whole() {
        let mut ends = LineEnds::new(BareLf::Accept);
        let mut out = Vec::new();
        ends.feed(b"a\nb\rc", &mut out);
        assert_eq!(out, vec![Piece::Input(0..5)]);
    }

    #[test]
    fn chunk_reader_takes_exactly_its_size() {
        let mut chunk = ChunkReader::new(5);
        assert_eq!(chunk.take(3), 3);
        assert_eq!(chunk.take(10), 2);
        assert!(chunk.is_done());
        assert_eq!(chunk.take(10), 0);
        let mut huge = ChunkReader::new(1 << 63);
        assert_eq!(huge.take(1000), 1000);
        assert_eq!(huge.remaining(), (1u64 << 63) - 1000);
    }
}
