//! The streaming message pipeline: finds the header/body boundary, parses header fields
//! incrementally, walks MIME structure, decodes text for the scanner and applies the header
//! edit plan, while holding no more than the header block plus `scan_window` body bytes.
//!
//! Owns: header parsing, MIME walk, base64/QP/RFC 2047 decoding, the edit plan.
//! Must not touch: SMTP framing, rule logic.
//!
//! API CONTRACT (implemented by the message work; signatures are fixed, bodies are stubs).

use bytes::Bytes;

/// Bounds on what one message may make the pipeline hold or walk.
#[derive(Clone, Copy, Debug)]
pub struct MessageLimits {
    /// `limits.max_header_bytes`: the top-level header block.
    pub max_header_bytes: usize,
    /// `limits.scan_window`: body bytes held and scanned before the verdict.
    pub scan_window: usize,
    /// Deepest MIME nesting walked; deeper parts are passed over as raw body.
    pub max_mime_depth: usize,
    /// Most MIME parts walked; later parts are passed over as raw body.
    pub max_mime_parts: usize,
}

/// Why a message cannot go on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MessageError {
    /// The header block grew past `max_header_bytes`.
    HeaderTooBig,
}

/// What the scanner is told, in message order. Slices borrow from the call that emits them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ScanEvent<'a> {
    /// A header field of the message or of a MIME part: name as sent, value unfolded and
    /// RFC 2047-decoded (bytes; not necessarily UTF-8). `depth` 0 is the top-level header.
    Header {
        /// MIME depth (0 = message header).
        depth: usize,
        /// Field name.
        name: &'a [u8],
        /// Decoded value.
        value: &'a [u8],
    },
    /// The top-level header block ended.
    HeaderEnd,
    /// A MIME part (or the single body) starts, with its lower-cased media type and file name.
    PartStart {
        /// MIME depth.
        depth: usize,
        /// `type/subtype`, lower-cased (`text/plain` when absent).
        content_type: &'a [u8],
        /// `filename` / `name` parameter, if any.
        filename: Option<&'a [u8]>,
    },
    /// Decoded text of a text part (transfer encoding undone; HTML reduced to text).
    Text(&'a [u8]),
    /// Undecoded body bytes as they are in the message.
    RawBody(&'a [u8]),
    /// A URL found in text or HTML.
    Url(&'a [u8]),
}

/// A consumer of scan events (the rule engine).
pub trait ScanSink {
    /// One event.
    fn event(&mut self, ev: ScanEvent<'_>);
}

/// Header edits applied when held bytes are released.
#[derive(Clone, Debug, Default)]
pub struct EditPlan {
    /// Complete header lines (each ending in CRLF) to put at the top, in order.
    pub prepend: Vec<u8>,
    /// Field names to remove, compared case-insensitively (continuation lines go too).
    pub remove: Vec<String>,
}

/// One message passing through.
#[derive(Debug)]
pub struct Pipeline {
    _limits: MessageLimits,
}

impl Pipeline {
    /// A new message.
    pub fn new(limits: MessageLimits) -> Pipeline {
        Pipeline { _limits: limits }
    }

    /// Feeds the next piece of message content (unstuffed; CRLF line ends, or bare LF under
    /// `bare_lf = accept`). Scan events go to `sink`.
    pub fn feed(&mut self, piece: Bytes, sink: &mut dyn ScanSink) -> Result<(), MessageError> {
        let _ = (piece, sink);
        todo!()
    }

    /// The message ended.
    pub fn finish(&mut self, sink: &mut dyn ScanSink) -> Result<(), MessageError> {
        let _ = sink;
        todo!()
    }

    /// The header block is complete (its fields can be read).
    pub fn header_complete(&self) -> bool {
        todo!()
    }

    /// Header block plus `scan_window` body bytes seen, or the message ended: time for the
    /// verdict and [`Pipeline::release`].
    pub fn window_complete(&self) -> bool {
        todo!()
    }

    /// The top-level header fields seen so far, in order: (name, raw value without the CRLF).
    pub fn header_fields(&self) -> Vec<(&[u8], &[u8])> {
        todo!()
    }

    /// How many top-level fields have this name (case-insensitive).
    pub fn count_fields(&self, name: &str) -> usize {
        let _ = name;
        todo!()
    }

    /// Applies `plan` and releases everything held; from now on pieces pass straight to the
    /// output. May be called once.
    pub fn release(&mut self, plan: &EditPlan) {
        let _ = plan;
        todo!()
    }

    /// Whether `release` has happened.
    pub fn is_released(&self) -> bool {
        todo!()
    }

    /// The next output piece for the next hop (only after `release`).
    pub fn poll_output(&mut self) -> Option<Bytes> {
        todo!()
    }
}
