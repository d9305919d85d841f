//! Helpers shared by the `sink` and `replay` tools: a poll that retries `EINTR`, bounded reads
//! into a `BytesMut`, vectored writes out of an [`Outbound`] queue, and a small hand-written
//! JSON object writer for their `--json` output.
//!
//! Deliberately separate from `reactor`: a bug shared with the relay would hide itself.

use std::io::{self, IoSlice, Read, Write};
use std::time::Duration;

use bytes::BytesMut;
use mio::{Events, Poll};

use crate::smtp::outbound::Outbound;

/// Most bytes asked of the kernel per `read` call.
pub const READ_CHUNK: usize = 64 * 1024;

/// Most `IoSlice`s handed to one `writev`.
const MAX_IOV: usize = 64;

/// `poll.poll`, retried on `Interrupted` (a signal arriving mid-wait is not an error).
pub fn poll_retrying_eintr(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Option<Duration>,
) -> io::Result<()> {
    loop {
        match poll.poll(events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// What one [`ReadSizer::read`] call saw.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReadStatus {
    /// `n` bytes were appended; more may be waiting.
    Data(usize),
    /// Nothing more for now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
}

/// Smallest room offered to one `read` call.
pub const MIN_READ: usize = 4 * 1024;

/// Reads into a `BytesMut` without `unsafe`: the room offered to `read` must be zeroed first,
/// so its size adapts to what reads actually return (doubling while reads fill it, halving
/// when they come back small). A command-sized read then costs a 4 KiB memset, not 64 KiB.
#[derive(Clone, Copy, Debug)]
pub struct ReadSizer {
    room: usize,
}

impl Default for ReadSizer {
    fn default() -> ReadSizer {
        ReadSizer { room: MIN_READ }
    }
}

impl ReadSizer {
    /// One `read` appended to `buf`, never growing it past `max_len` bytes in all (`Data(0)`
    /// when `buf` is already full: the caller must consume first).
    pub fn read<R: Read>(
        &mut self,
        src: &mut R,
        buf: &mut BytesMut,
        max_len: usize,
    ) -> io::Result<ReadStatus> {
        let start = buf.len();
        let room = self.room.min(max_len.saturating_sub(start));
        if room == 0 {
            return Ok(ReadStatus::Data(0));
        }
        buf.resize(start + room, 0);
        let result = loop {
            match src.read(&mut buf[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(0) => {
                buf.truncate(start);
                Ok(ReadStatus::Eof)
            }
            Ok(n) => {
                buf.truncate(start + n);
                if n == room {
                    self.room = (self.room * 2).min(READ_CHUNK);
                } else if n < room / 4 {
                    self.room = (self.room / 2).max(MIN_READ);
                }
                Ok(ReadStatus::Data(n))
            }
            Err(e) => {
                buf.truncate(start);
                if e.kind() == io::ErrorKind::WouldBlock {
                    Ok(ReadStatus::WouldBlock)
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// Writes as much of `out` as the socket takes. `Ok(true)` when `out` is now empty.
pub fn write_outbound<W: Write>(dst: &mut W, out: &mut Outbound) -> io::Result<bool> {
    while !out.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = out.io_slices(&mut slices);
        match dst.write_vectored(&slices[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => out.advance(written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Builds one JSON object by hand (serde_json is not a dependency). Fields appear in call
/// order; nested objects open with [`JsonWriter::begin_object`] and close with
/// [`JsonWriter::end_object`].
#[derive(Debug)]
pub struct JsonWriter {
    out: String,
    /// Per open object: whether it already has a field.
    has_field: Vec<bool>,
}

impl JsonWriter {
    /// Starts the top-level object.
    pub fn object() -> JsonWriter {
        JsonWriter {
            out: String::from("{"),
            has_field: vec![false],
        }
    }

    /// A string field.
    pub fn field_str(&mut self, name: &str, value: &str) {
        self.key(name);
        push_json_string(&mut self.out, value);
    }

    /// An unsigned integer field.
    pub fn field_u64(&mut self, name: &str, value: u64) {
        self.key(name);
        self.out.push_str(&value.to_string());
    }

    /// A number field; non-finite values become `null` (JSON has no NaN).
    pub fn field_f64(&mut self, name: &str, value: f64) {
        self.key(name);
        if value.is_finite() {
            let s = format!("{value:.3}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            self.out
                .push_str(if s.is_empty() || s == "-" { "0" } else { s });
        } else {
            self.out.push_str("null");
        }
    }

    /// A boolean field.
    pub fn field_bool(&mut self, name: &str, value: bool) {
        self.key(name);
        self.out.push_str(if value { "true" } else { "false" });
    }

    /// A `null` field.
    pub fn field_null(&mut self, name: &str) {
        self.key(name);
        self.out.push_str("null");
    }

    /// Opens a nested object field.
    pub fn begin_object(&mut self, name: &str) {
        self.key(name);
        self.out.push('{');
        self.has_field.push(false);
    }

    /// Closes the innermost nested object.
    pub fn end_object(&mut self) {
        if self.has_field.len() > 1 {
            self.has_field.pop();
            self.out.push('}');
        }
    }

    /// Closes every open object and returns the text.
    pub fn finish(mut self) -> String {
        while self.has_field.len() > 1 {
            self.end_object();
        }
        self.out.push('}');
        self.out
    }

    fn key(&mut self, name: &str) {
        if let Some(has) = self.has_field.last_mut() {
            if *has {
                self.out.push(',');
            }
            *has = true;
        }
        push_json_string(&mut self.out, name);
        self.out.push(':');
    }
}

pub use crate::logging::push_json_string;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A writer that takes at most `step` bytes per call and then blocks once.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
        block_next: bool,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.block_next {
                self.block_next = false;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.block_next = true;
            let n = buf.len().min(self.step);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_outbound_resumes_after_would_block() {
        let mut out = Outbound::new();
        out.push(Bytes::from_static(b"hello "));
        out.push(Bytes::from_static(b"world"));
        let mut w = Trickle {
            got: Vec::new(),
            step: 4,
            block_next: false,
        };
        let mut rounds = 0;
        while !write_outbound(&mut w, &mut out).expect("no error") {
            rounds += 1;
            assert!(rounds < 100, "no progress");
        }
        assert_eq!(w.got, b"hello world");
    }

    #[test]
    fn reads_respect_max_len_and_report_eof() {
        let mut src: &[u8] = b"0123456789";
        let mut buf = BytesMut::new();
        let mut r = ReadSizer::default();
        assert_eq!(
            r.read(&mut src, &mut buf, 4).expect("read"),
            ReadStatus::Data(4)
        );
        assert_eq!(
            r.read(&mut src, &mut buf, 4).expect("read"),
            ReadStatus::Data(0)
        );
        let _ = buf.split_to(4);
        assert_eq!(
            r.read(&mut src, &mut buf, 100).expect("read"),
            ReadStatus::Data(6)
        );
        assert_eq!(
            r.read(&mut src, &mut buf, 100).expect("read"),
            ReadStatus::Eof
        );
        assert_eq!(&buf[..], b"456789");
    }

    #[test]
    fn read_room_grows_with_full_reads_and_shrinks_with_small_ones() {
        let big = vec![7u8; 1 << 20];
        let mut src: &[u8] = &big;
        let mut buf = BytesMut::new();
        let mut r = ReadSizer::default();
        let mut sizes = Vec::new();
        for _ in 0..6 {
            match r.read(&mut src, &mut buf, usize::MAX).expect("read") {
                ReadStatus::Data(n) => sizes.push(n),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(sizes, [4096, 8192, 16384, 32768, 65536, 65536]);
        let mut small: &[u8] = b"NOOP\r\n";
        r.read(&mut small, &mut buf, usize::MAX).expect("read");
        assert_eq!(r.room, READ_CHUNK / 2);
    }

    #[test]
    fn json_writer_nests_and_escapes() {
        let mut j = JsonWriter::object();
        j.field_str("name", "a\"b\\c\n\u{1}");
        j.field_u64("n", 42);
        j.field_f64("x", 1.5);
        j.field_f64("whole", 2.0);
        j.field_f64("nan", f64::NAN);
        j.begin_object("inner");
        j.field_bool("ok", true);
        j.field_null("none");
        j.end_object();
        j.begin_object("empty");
        assert_eq!(
            j.finish(),
            r#"{"name":"a\"b\\c\n\u0001","n":42,"x":1.5,"whole":2,"nan":null,"inner":{"ok":true,"none":null},"empty":{}}"#
        );
    }
}
