//! Message output encoders toward a next hop.
//!
//! - [`DataEncoder`]: DATA transparency (RFC 5321 §4.5.2 dot-stuffing) over a stream of
//!   [`Bytes`] pieces, with bare CR and bare LF canonicalised to CRLF (RFC 5321 §2.3.8: they
//!   must not be sent; a bare LF before a dot is the SMTP smuggling vector), and the
//!   `CRLF . CRLF` terminator, also for content that does not end in CRLF.
//! - [`BdatEncoder`]: RFC 3030 framing, `BDAT <n>\r\n` followed by the chunk, with `LAST` on
//!   the final chunk (`BDAT 0 LAST` when nothing is pending at the end). Content is not
//!   changed.
//!
//! Both are zero-copy for unchanged runs of input: the output holds slices of the input
//! `Bytes`. Only the inserted bytes, and runs shorter than [`SMALL_RUN_BYTES`] next to them,
//! are copied, so content full of bare LFs does not explode into one chunk per byte.
//! State (line start, a CR at the end of a piece) carries across pieces, so the output does
//! not depend on how the content was cut.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

use crate::smtp::outbound::Outbound;

/// Runs of unchanged input shorter than this are copied next to inserted bytes instead of
/// being queued as their own slice.
pub const SMALL_RUN_BYTES: usize = 64;

/// Default BDAT chunk size: pieces are coalesced until at least this many bytes are pending,
/// then sent as one `BDAT <n>` chunk. Large enough that chunk replies are rare, small enough
/// that the held bytes stay modest per connection.
pub const BDAT_CHUNK_BYTES: usize = 256 * 1024;

/// A whole message (or text) with every bare LF and bare CR as CRLF, as [`DataEncoder`] sends
/// it: what a message looks like after a DATA hop. Borrowed when nothing changes. Line ends are
/// found with `memchr2` and the text between them is copied in runs.
pub fn canonical_crlf(raw: &[u8]) -> Cow<'_, [u8]> {
    let Some(first_bad) = first_bare_line_end(raw) else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    out.extend_from_slice(&raw[..first_bad]);
    let mut i = first_bad;
    while let Some(k) = memchr::memchr2(b'\r', b'\n', &raw[i..]) {
        let end = i + k;
        out.extend_from_slice(&raw[i..end]);
        out.extend_from_slice(b"\r\n");
        i = if raw[end] == b'\r' && raw.get(end + 1) == Some(&b'\n') {
            end + 2
        } else {
            end + 1
        };
    }
    out.extend_from_slice(&raw[i..]);
    Cow::Owned(out)
}

/// Where the first bare CR or bare LF of `raw` is, if any.
fn first_bare_line_end(raw: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let i = at + memchr::memchr2(b'\r', b'\n', &raw[at..])?;
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            at = i + 2;
        } else {
            // A LF found here has no CR before it: a CRLF pair is skipped whole.
            return Some(i);
        }
    }
}

/// Dot-stuffs and canonicalises message content for DATA, piece by piece.
///
/// Feed the content with [`DataEncoder::encode`], then call [`DataEncoder::finish`] once for
/// the terminator. The encoder is then ready for another message.
#[derive(Debug)]
pub struct DataEncoder {
    /// The next content byte starts a line (a dot there must be doubled).
    at_line_start: bool,
    /// The last byte of the previous piece was a CR whose LF has not been seen yet.
    pending_cr: bool,
    /// Small copied runs and inserted bytes waiting to be queued as one chunk.
    scratch: BytesMut,
}

impl Default for DataEncoder {
    fn default() -> DataEncoder {
        DataEncoder::new()
    }
}

impl DataEncoder {
    /// An encoder at the start of a message.
    pub fn new() -> DataEncoder {
        DataEncoder {
            at_line_start: true,
            pending_cr: false,
            scratch: BytesMut::new(),
        }
    }

    /// Queues one piece of content (unstuffed) in DATA form.
    pub fn encode(&mut self, piece: Bytes, out: &mut Outbound) {
        let p = &piece[..];
        let mut i = 0;
        let mut run = 0;
        if self.pending_cr && !p.is_empty() {
            self.pending_cr = false;
            if p[0] == b'\n' {
                i = 1;
            } else {
                // bare CR at the end of the previous piece: complete it
                self.scratch.extend_from_slice(b"\n");
            }
            self.at_line_start = true;
        }
        loop {
            if self.at_line_start {
                let Some(&first) = p.get(i) else { break };
                self.at_line_start = false;
                if first == b'.' {
                    // RFC 5321 §4.5.2: a line starting with a dot gets one more
                    self.run(&piece, run, i, out);
                    self.scratch.extend_from_slice(b".");
                    run = i;
                }
            }
            let Some(j) = memchr::memchr2(b'\r', b'\n', &p[i..]).map(|k| k + i) else {
                break;
            };
            if p[j] == b'\n' {
                // bare LF (SMTP smuggling): write CRLF
                self.run(&piece, run, j, out);
                self.scratch.extend_from_slice(b"\r");
                run = j;
                i = j + 1;
            } else if j + 1 == p.len() {
                self.pending_cr = true;
                i = p.len();
                break;
            } else if p[j + 1] == b'\n' {
                i = j + 2;
            } else {
                // bare CR: write CRLF
                self.run(&piece, run, j + 1, out);
                self.scratch.extend_from_slice(b"\n");
                run = j + 1;
                i = j + 1;
            }
            self.at_line_start = true;
        }
        debug_assert!(i <= p.len());
        self.run(&piece, run, p.len(), out);
        self.flush(out);
    }

    /// Queues the end of data: `.\r\n` after content ending in CRLF (or empty content), else
    /// the missing line end first, so the terminator is always `CRLF . CRLF`. Resets the
    /// encoder for the next message.
    pub fn finish(&mut self, out: &mut Outbound) {
        let tail: &'static [u8] = if self.pending_cr {
            b"\n.\r\n"
        } else if self.at_line_start {
            b".\r\n"
        } else {
            b"\r\n.\r\n"
        };
        self.flush(out);
        out.push(Bytes::from_static(tail));
        self.at_line_start = true;
        self.pending_cr = false;
    }

    /// Queues `piece[from..to]`: as a slice when long, copied next to insertions when short.
    fn run(&mut self, piece: &Bytes, from: usize, to: usize, out: &mut Outbound) {
        if from >= to {
            return;
        }
        if to - from < SMALL_RUN_BYTES {
            self.scratch.extend_from_slice(&piece[from..to]);
        } else {
            self.flush(out);
            out.push(piece.slice(from..to));
        }
    }

    fn flush(&mut self, out: &mut Outbound) {
        if !self.scratch.is_empty() {
            out.push(self.scratch.split().freeze());
        }
    }
}

/// One BDAT command and its chunk, ready to queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BdatChunk {
    /// The command line (`BDAT <n>[ LAST]\r\n`) then the content pieces.
    pub parts: Vec<Bytes>,
    /// Content octets in the chunk.
    pub size: usize,
    /// Whether this is the `LAST` chunk.
    pub last: bool,
}

impl BdatChunk {
    /// Bytes on the wire: command line plus content.
    pub fn wire_len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// Queues the command line and the content, in order.
    pub fn write_to(self, out: &mut Outbound) {
        for part in self.parts {
            out.push(part);
        }
    }
}

/// Frames message content into BDAT chunks (RFC 3030), coalescing pieces up to a chunk size.
#[derive(Debug)]
pub struct BdatEncoder {
    pending: Vec<Bytes>,
    pending_len: usize,
    chunk_bytes: usize,
}

impl Default for BdatEncoder {
    fn default() -> BdatEncoder {
        BdatEncoder::new()
    }
}

impl BdatEncoder {
    /// An encoder with chunks of [`BDAT_CHUNK_BYTES`].
    pub fn new() -> BdatEncoder {
        BdatEncoder::with_chunk_bytes(BDAT_CHUNK_BYTES)
    }

    /// An encoder that sends a chunk once `chunk_bytes` (at least 1) are pending.
    pub fn with_chunk_bytes(chunk_bytes: usize) -> BdatEncoder {
        BdatEncoder {
            pending: Vec::new(),
            pending_len: 0,
            chunk_bytes: chunk_bytes.max(1),
        }
    }

    /// Content bytes held, waiting for more to fill a chunk or for the end.
    pub fn pending_bytes(&self) -> usize {
        self.pending_len
    }

    /// Adds a piece of content; returns a full chunk when enough is pending. A piece larger
    /// than the chunk size is not cut: it goes whole in one chunk.
    pub fn push(&mut self, piece: Bytes) -> Option<BdatChunk> {
        if piece.is_empty() {
            return None;
        }
        self.pending_len += piece.len();
        self.pending.push(piece);
        if self.pending_len >= self.chunk_bytes {
            Some(self.take(false))
        } else {
            None
        }
    }

    /// The last chunk: everything pending with `LAST`, or `BDAT 0 LAST`. Resets the encoder.
    pub fn finish(&mut self) -> BdatChunk {
        self.take(true)
    }

    /// Drops everything pending (the transaction was abandoned).
    pub fn discard(&mut self) {
        self.pending.clear();
        self.pending_len = 0;
    }

    fn take(&mut self, last: bool) -> BdatChunk {
        let size = self.pending_len;
        let line = if last {
            format!("BDAT {size} LAST\r\n")
        } else {
            format!("BDAT {size}\r\n")
        };
        let mut parts = Vec::with_capacity(self.pending.len() + 1);
        parts.push(Bytes::from(line));
        parts.append(&mut self.pending);
        self.pending_len = 0;
        BdatChunk { parts, size, last }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// DATA-encodes `pieces` into one vector.
    fn data(pieces: &[&[u8]]) -> Vec<u8> {
        let mut enc = DataEncoder::new();
        let mut out = Outbound::new();
        for p in pieces {
            enc.encode(Bytes::copy_from_slice(p), &mut out);
        }
        enc.finish(&mut out);
        out.to_vec()
    }

    #[test]
    fn canonical_crlf_fixes_bare_line_ends() {
        const ROWS: &[(&str, &[u8], &[u8])] = &[
            ("already_crlf", b"a\r\nb\r\n", b"a\r\nb\r\n"),
            ("bare_lf", b"a\nb\n", b"a\r\nb\r\n"),
            ("bare_cr", b"a\rb", b"a\r\nb"),
            ("mixed", b"a\r\n\nb\r", b"a\r\n\r\nb\r\n"),
            ("leading_lf", b"\nx", b"\r\nx"),
            ("empty", b"", b""),
        ];
        for (name, input, want) in ROWS {
            assert_eq!(&*canonical_crlf(input), *want, "{name}");
        }
    }

    /// The reference line-end canonicalisation, byte by byte.
    fn naive_crlf(content: &[u8]) -> Vec<u8> {
        let mut canon = Vec::new();
        let mut i = 0;
        while i < content.len() {
            match (content[i], content.get(i + 1)) {
                (b'\r', Some(b'\n')) => {
                    canon.extend_from_slice(b"\r\n");
                    i += 2;
                    continue;
                }
                (b'\r', _) | (b'\n', _) => canon.extend_from_slice(b"\r\n"),
                (b, _) => canon.push(b),
            }
            i += 1;
        }
        canon
    }

    #[test]
    fn canonical_crlf_matches_the_reference_on_random_line_ends() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|k| b"a\r\n.x"[((seed >> (k % 60)) % 5) as usize])
                .collect();
            let got = canonical_crlf(&input);
            assert_eq!(
                &*got,
                naive_crlf(&input).as_slice(),
                "round {round}: {input:?}"
            );
            assert_eq!(
                matches!(got, Cow::Borrowed(_)),
                naive_crlf(&input) == input,
                "round {round}: borrowed only when unchanged"
            );
        }
    }

    /// The reference: canonicalise line ends, then stuff, then terminate, byte by byte.
    fn naive_data(content: &[u8]) -> Vec<u8> {
        let canon = naive_crlf(content);
        let mut out = Vec::new();
        let mut start = true;
        for &b in &canon {
            if start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            start = b == b'\n';
        }
        if !start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    /// The reference decoder: what a receiving server delivers from a DATA stream.
    fn unstuff(wire: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = wire;
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n")?;
            let line = &rest[..end];
            rest = &rest[end + 2..];
            if line == b"." {
                return rest.is_empty().then_some(out);
            }
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            out.extend_from_slice(b"\r\n");
        }
    }

    fn for_each_split(input: &[u8], mut check: impl FnMut(&str, &[&[u8]])) {
        check("whole", &[input]);
        check("bytes", &input.chunks(1).collect::<Vec<_>>());
        for i in 0..=input.len() {
            check(&format!("split at {i}"), &[&input[..i], &input[i..]]);
        }
    }

    fn assert_canonical(name: &str, wire: &[u8]) {
        for (i, &b) in wire.iter().enumerate() {
            if b == b'\r' {
                assert_eq!(wire.get(i + 1), Some(&b'\n'), "{name}: bare CR at {i}");
            }
            if b == b'\n' {
                assert_eq!(
                    i.checked_sub(1).map(|k| wire[k]),
                    Some(b'\r'),
                    "{name}: bare LF at {i}"
                );
            }
        }
        let ends = wire.windows(5).filter(|w| w == b"\r\n.\r\n").count();
        let at_end = wire.ends_with(b"\r\n.\r\n") || wire == b".\r\n";
        assert!(at_end, "{name}: no terminator at the end");
        assert!(ends <= 1, "{name}: {ends} end-of-data sequences");
    }

    const DATA_ROWS: &[(&str, &[u8], &[u8])] = &[
        ("empty_message", b"", b".\r\n"),
        ("plain_line", b"a\r\n", b"a\r\n.\r\n"),
        ("no_final_crlf", b"a", b"a\r\n.\r\n"),
        ("leading_dot_doubled", b".x\r\n", b"..x\r\n.\r\n"),
        (
            "dot_after_crlf_doubled",
            b"a\r\n.\r\nb\r\n",
            b"a\r\n..\r\nb\r\n.\r\n",
        ),
        ("dot_mid_line_kept", b"a.b\r\n", b"a.b\r\n.\r\n"),
        ("bare_lf_becomes_crlf", b"a\nb\n", b"a\r\nb\r\n.\r\n"),
        ("bare_cr_becomes_crlf", b"a\rb\r", b"a\r\nb\r\n.\r\n"),
        ("cr_cr_lf", b"a\r\r\n", b"a\r\n\r\n.\r\n"),
        ("lf_cr", b"a\n\r", b"a\r\n\r\n.\r\n"),
        ("lf_dot_lf_smuggling", b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        ("cr_dot_cr_smuggling", b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
        (
            "content_holds_terminator",
            b"a\r\n.\r\n",
            b"a\r\n..\r\n.\r\n",
        ),
        ("only_dot", b".", b"..\r\n.\r\n"),
        ("ends_with_cr", b"a\r", b"a\r\n.\r\n"),
    ];

    #[test]
    fn data_table_under_every_split() {
        for (name, input, want) in DATA_ROWS {
            assert_eq!(naive_data(input), *want, "{name}: reference");
            for_each_split(input, |how, pieces| {
                assert_eq!(data(pieces), *want, "{name}, {how}");
            });
        }
    }

    #[test]
    fn long_runs_pass_as_slices_of_the_input() {
        let piece = Bytes::from(vec![b'x'; 1000]);
        let mut enc = DataEncoder::new();
        let mut out = Outbound::new();
        enc.encode(piece.clone(), &mut out);
        let chunks: Vec<Bytes> = out.drain().collect();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].as_ptr(), piece.as_ptr(), "not copied");

        let mut content = vec![b'y'; 500];
        content.extend_from_slice(b"\r\n.dot\r\n");
        content.extend(vec![b'z'; 500]);
        let piece = Bytes::from(content);
        enc.encode(piece.clone(), &mut out);
        let chunks: Vec<Bytes> = out.drain().collect();
        assert_eq!(chunks.len(), 3, "slice, inserted dot, slice");
        assert_eq!(chunks[0].as_ptr(), piece.as_ptr());
        assert_eq!(&chunks[1][..], b".");
        assert_eq!(chunks[2].as_ptr(), piece[502..].as_ptr());
    }

    #[test]
    fn bare_lf_content_stays_few_chunks() {
        let content = b"line\n".repeat(1000);
        let mut enc = DataEncoder::new();
        let mut out = Outbound::new();
        enc.encode(Bytes::from(content), &mut out);
        assert_eq!(out.drain().count(), 1, "short runs are coalesced");
    }

    fn corpus() -> Option<std::path::PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
        if dir.is_dir() {
            Some(dir)
        } else {
            eprintln!("skipping: no corpus at {}", dir.display());
            None
        }
    }

    fn smuggling_payloads() -> Vec<(String, Vec<u8>)> {
        let Some(dir) = corpus() else { return vec![] };
        let dir = dir.join("smtp/smuggling/payloads");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("payload dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "data"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy().into();
                (name, std::fs::read(&p).expect("payload"))
            })
            .collect()
    }

    #[test]
    fn smuggling_payloads_as_content_have_one_terminator() {
        let payloads = smuggling_payloads();
        for (name, content) in &payloads {
            let want = naive_data(content);
            assert_canonical(name, &want);
            for_each_split(content, |how, pieces| {
                let got = data(pieces);
                assert!(got == want, "{name}, {how}: differs from the reference");
            });
            // the reference decoder only accepts one terminator, at the very end
            assert!(unstuff(&want).is_some(), "{name}: does not decode");
        }
    }

    #[test]
    fn unstuff_inverts_data_on_canonical_content() {
        let rows: &[&[u8]] = &[b"", b"a\r\n", b".\r\n..\r\n", b"x\r\n.\r\ny\r\n"];
        for content in rows {
            assert_eq!(unstuff(&data(&[content])).as_deref(), Some(*content));
        }
    }

    /// What a server receives from a BDAT stream: (content, number of chunks).
    fn unframe(wire: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let mut rest = wire;
        let mut chunks = 0;
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n")?;
            let line = std::str::from_utf8(&rest[..end]).ok()?;
            rest = &rest[end + 2..];
            let mut words = line.split(' ');
            (words.next()? == "BDAT").then_some(())?;
            let n: usize = words.next()?.parse().ok()?;
            let last = words.next() == Some("LAST");
            out.extend_from_slice(rest.get(..n)?);
            rest = &rest[n..];
            chunks += 1;
            if last {
                return rest.is_empty().then_some((out, chunks));
            }
        }
    }

    fn bdat(pieces: &[&[u8]], chunk_bytes: usize) -> Vec<u8> {
        let mut enc = BdatEncoder::with_chunk_bytes(chunk_bytes);
        let mut out = Outbound::new();
        for p in pieces {
            if let Some(c) = enc.push(Bytes::copy_from_slice(p)) {
                c.write_to(&mut out);
            }
        }
        enc.finish().write_to(&mut out);
        out.to_vec()
    }

    #[test]
    fn bdat_framing_table() {
        type Row = (&'static str, &'static [&'static [u8]], usize, &'static [u8]);
        let rows: &[Row] = &[
            ("empty_message", &[], 10, b"BDAT 0 LAST\r\n"),
            ("one_small_piece", &[b"abc"], 10, b"BDAT 3 LAST\r\nabc"),
            (
                "coalesced_then_last",
                &[b"abc", b"defgh", b"ij", b"k"],
                10,
                b"BDAT 10\r\nabcdefghijBDAT 1 LAST\r\nk",
            ),
            (
                "exact_fill_then_zero_last",
                &[b"abcd", b"ef"],
                6,
                b"BDAT 6\r\nabcdefBDAT 0 LAST\r\n",
            ),
            (
                "big_piece_not_cut",
                &[b"0123456789ab"],
                4,
                b"BDAT 12\r\n0123456789abBDAT 0 LAST\r\n",
            ),
            (
                "content_unchanged",
                &[b"a\n.\r\n"],
                100,
                b"BDAT 5 LAST\r\na\n.\r\n",
            ),
        ];
        for (name, pieces, size, want) in rows {
            assert_eq!(bdat(pieces, *size), *want, "{name}");
        }
    }

    #[test]
    fn bdat_is_zero_copy() {
        let piece = Bytes::from_static(b"hello world");
        let mut enc = BdatEncoder::with_chunk_bytes(4);
        let chunk = enc.push(piece.clone()).expect("full");
        assert_eq!(chunk.parts[1].as_ptr(), piece.as_ptr());
        assert_eq!(chunk.wire_len(), 9 + 11);
    }

    #[test]
    fn data_and_bdat_deliver_the_same_content() {
        let mut inputs: Vec<(String, Vec<u8>)> = DATA_ROWS
            .iter()
            .map(|(n, i, _)| (n.to_string(), i.to_vec()))
            .collect();
        inputs.extend(smuggling_payloads());
        for (name, content) in inputs {
            // BDAT carries bytes unchanged; compare with the canonical form DATA delivers.
            let canon = unstuff(&naive_data(&content)).expect("reference decodes");
            for_each_split(&canon, |how, pieces| {
                let via_data = unstuff(&data(pieces));
                let via_bdat = unframe(&bdat(pieces, 7)).map(|(c, _)| c);
                assert_eq!(via_data.as_ref(), Some(&canon), "{name}, {how}: DATA");
                assert_eq!(via_bdat.as_ref(), Some(&canon), "{name}, {how}: BDAT");
            });
        }
    }
}
