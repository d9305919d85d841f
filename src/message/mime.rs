//! The streaming MIME walker: one pass over the whole message, top-level header included,
//! telling the scanner about header fields, part starts, decoded text and URLs, and handing it
//! every body byte as it is.
//!
//! The walker is a small machine with three modes. *Header* reads a header block line by line
//! (the top-level one, a MIME part's, or a message/rfc822 part's embedded message). *Content*
//! passes a body through, looking for boundary lines of the open multiparts with one `memmem`
//! for `"\n--"` and feeding text parts through the decoders in bulk. *Raw* passes the rest of
//! the message over once [`MessageLimits::max_mime_parts`] is reached.
//!
//! Order of events, which does not depend on how the input is cut: a header line's events (the
//! field it completes; header end and part start at the blank line) come before the line's own
//! `RawBody`; `Text` and `Url` of a part come before the next structural event. Only how `Text`
//! and `RawBody` are cut into events, and where `Url` falls among them, depends on the cuts.
//!
//! Boundary lines: a line is a delimiter of an open multipart when it is `--boundary` followed
//! only by optional `--` and whitespace (innermost multipart first), or failing that when it
//! starts with `--boundary` (Postfix compares prefixes too). A delimiter closes any multiparts
//! opened inside it that are still open. Only the first [`DELIM_SCAN`] bytes of a line that
//! starts with `--` are looked at; the CRLF before a delimiter belongs to it (RFC 2046 §5.1.1).
//!
//! Memory: a partial header line (at most [`MAX_NAME_LEN`] + 2 bytes until its kind is known),
//! one field ([`MAX_FIELD_BYTES`]), a partial boundary line ([`DELIM_SCAN`] + 2), the decoders'
//! carries, and scratch buffers sized by [`TEXT_CHUNK`].

use std::sync::LazyLock;

use memchr::{memchr, memmem};

use super::ctype::{Cte, PartInfo};
use super::decode::{decode_rfc2047, Base64Decoder, Charset, QpDecoder};
use super::header::{
    classify, find_lf, trim_wsp, FieldAcc, LineClass, MAX_FIELD_BYTES, MAX_NAME_LEN,
};
use super::html::HtmlText;
use super::url::UrlFinder;
use super::{MessageLimits, ScanEvent, ScanSink};

/// Bytes of a line starting with `--` examined when deciding whether it is a boundary line
/// (room for `--`, a 200-byte boundary, `--` and trailing whitespace).
pub(crate) const DELIM_SCAN: usize = 512;

/// Most raw bytes decoded in one go; bounds the decoders' scratch buffers.
pub(crate) const TEXT_CHUNK: usize = 16 * 1024;

/// The searcher for `"\n--"` (where a boundary line may start), built once: building one costs
/// more than walking a short message.
static NL_DASHES: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\n--"));

/// A top-level header field's place in the message (absolute byte offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FieldSpan {
    /// First byte of the field name.
    pub(crate) start: usize,
    /// Just past the line end of the field's last line.
    pub(crate) end: usize,
    /// Length of the name (without whitespace before the colon).
    pub(crate) name_len: usize,
    /// Offset of the colon from `start`.
    pub(crate) colon: usize,
}

/// What the walk tells the disclaimer inserter (`super::disclaimer`), in message order, once
/// [`Walker::track_parts`] is on. Offsets are absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    /// An entity's header block ended; its content (for a multipart, the preamble) starts at
    /// `at`.
    Start {
        /// Offset of the first content byte.
        at: usize,
        /// MIME depth (0: the message itself).
        depth: usize,
        /// Lower-cased `type/subtype` (empty when absent).
        media: Vec<u8>,
        /// Content-Transfer-Encoding.
        cte: Cte,
        /// `8bit` or `binary`.
        eight_bit: bool,
        /// `charset=utf-8`.
        utf8: bool,
        /// A body text part a footer may go on: the message itself, or a part reached only
        /// through multipart/mixed, alternative or related, and not an attachment.
        footable: bool,
    },
    /// The content open since the last `Start` ends at `at` (the line break before a
    /// delimiter, which belongs to it, or the end of the message).
    End {
        /// Offset just past the last content byte.
        at: usize,
    },
}

/// One open multipart.
#[derive(Clone, Debug)]
struct Level {
    boundary: Vec<u8>,
    /// Its parts are body parts a footer may go on.
    footable: bool,
    /// Depth of its parts.
    child_depth: usize,
    /// multipart/digest: parts default to message/rfc822.
    digest: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Header,
    Content,
    Raw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HLine {
    /// At a line start; `carry` holds the first bytes of a line not yet classified.
    Start,
    /// Inside a field or continuation line, waiting for its LF.
    Rest,
}

/// State of the header block being read.
#[derive(Debug)]
struct HeaderState {
    depth: usize,
    /// The message's own header: spans recorded, no `RawBody`.
    top: bool,
    /// Inside multipart/digest: the default type is message/rfc822.
    digest_parent: bool,
    line: HLine,
    carry: Vec<u8>,
    /// Absolute offset where the current line starts.
    line_start: usize,
    field: FieldAcc,
    field_start: usize,
    field_end: usize,
    /// The entity is reached through footable multiparts only (see [`Mark::Start`]).
    footable: bool,
}

/// Undelivered content bytes that may be the line break before a boundary line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    None,
    /// `hold` is a CR that may be followed by LF.
    Cr,
    /// `hold` is a line break (or empty at a part start): a boundary line may begin next.
    LineStart,
    /// `hold` is a line break and the first bytes of a line starting with `-`.
    Cand,
}

/// The text side of the current part: transfer decoding, charset, HTML, URLs.
#[derive(Debug, Default)]
struct TextPipe {
    active: bool,
    cte: Cte,
    b64: Base64Decoder,
    qp: QpDecoder,
    charset: Charset,
    html_on: bool,
    html: HtmlText,
    urls: UrlFinder,
    dec: Vec<u8>,
    conv: Vec<u8>,
    out: Vec<u8>,
}

/// The walker; see the module docs.
#[derive(Debug)]
pub(crate) struct Walker {
    limits: MessageLimits,
    mode: Mode,
    /// Absolute offset of the first byte of the slice being walked.
    pos: usize,
    h: HeaderState,
    part: PartInfo,
    stack: Vec<Level>,
    parts: usize,
    hold: Vec<u8>,
    hold_state: Hold,
    /// Bytes of line break at the start of `hold`.
    hold_lb: usize,
    /// Pass over the rest of a boundary line longer than [`DELIM_SCAN`].
    skip_line: bool,
    text: TextPipe,
    decoded: Vec<u8>,
    /// Top-level fields, in order.
    pub(crate) fields: Vec<FieldSpan>,
    /// Where the top-level header block ends (the body starts), once known.
    pub(crate) header_end: Option<usize>,
    /// Part marks for the disclaimer inserter, when tracked (drained by the pipeline).
    pub(crate) marks: Option<Vec<Mark>>,
    finished: bool,
}

impl Walker {
    pub(crate) fn new(limits: MessageLimits) -> Walker {
        Walker {
            limits,
            mode: Mode::Header,
            pos: 0,
            h: HeaderState {
                depth: 0,
                top: true,
                digest_parent: false,
                line: HLine::Start,
                carry: Vec::new(),
                line_start: 0,
                field: FieldAcc::default(),
                field_start: 0,
                field_end: 0,
                footable: true,
            },
            part: PartInfo::default(),
            stack: Vec::new(),
            parts: 0,
            hold: Vec::new(),
            hold_state: Hold::None,
            hold_lb: 0,
            skip_line: false,
            text: TextPipe::default(),
            decoded: Vec::new(),
            fields: Vec::with_capacity(32),
            header_end: None,
            marks: None,
            finished: false,
        }
    }

    /// Records [`Mark`]s from now on (call before the first byte).
    pub(crate) fn track_parts(&mut self) {
        self.marks = Some(Vec::new());
    }

    /// Bytes before this offset can no longer turn out to be the line break before a
    /// delimiter, nor the content of a part whose header block has not ended yet: a content
    /// end or start not yet marked is at or after it. In a header block, a line not yet
    /// classified (at most `MAX_NAME_LEN + 2` bytes) may turn out not to be a field, and then
    /// the content starts with it; a line taken as a field cannot.
    pub(crate) fn settled(&self) -> usize {
        match self.mode {
            Mode::Content if self.hold_state != Hold::None => {
                self.pos.saturating_sub(self.hold.len())
            }
            Mode::Header if self.h.line == HLine::Start => self.pos.min(self.h.line_start),
            _ => self.pos,
        }
    }

    fn mark_end(&mut self, at: usize) {
        if let Some(marks) = self.marks.as_mut() {
            marks.push(Mark::End { at });
        }
    }

    /// Walks the next bytes of the message.
    pub(crate) fn feed(&mut self, data: &[u8], sink: &mut dyn ScanSink) {
        if self.finished {
            return;
        }
        self.run(data, sink);
    }

    /// The message ended: partial lines are taken as complete and everything is flushed.
    pub(crate) fn finish(&mut self, sink: &mut dyn ScanSink) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.skip_line = false;
        // Each round either ends the walk or moves into a deeper entity (bounded by the depth
        // and part limits) or from header to content.
        loop {
            match self.mode {
                Mode::Raw => break,
                Mode::Content => {
                    self.content_eof(sink);
                    if self.mode == Mode::Content || self.mode == Mode::Raw {
                        self.mark_end(self.pos);
                        self.text_finish(sink);
                        break;
                    }
                }
                Mode::Header => self.header_eof(sink),
            }
        }
    }

    fn run(&mut self, mut data: &[u8], sink: &mut dyn ScanSink) {
        while !data.is_empty() {
            let n = if self.skip_line {
                let n = memchr(b'\n', data).map_or(data.len(), |k| k + 1);
                if n <= data.len() && data.get(n - 1) == Some(&b'\n') {
                    self.skip_line = false;
                }
                sink.event(ScanEvent::RawBody(&data[..n]));
                n
            } else {
                match self.mode {
                    Mode::Header => self.step_header(data, sink),
                    Mode::Content => self.step_content(data, sink),
                    Mode::Raw => {
                        sink.event(ScanEvent::RawBody(data));
                        data.len()
                    }
                }
            };
            data = &data[n..];
            self.pos += n;
        }
    }

    // ---- header mode ----

    /// Reads at most one line (or what is there of it); returns the bytes consumed (0 only
    /// when the mode changed).
    fn step_header(&mut self, data: &[u8], sink: &mut dyn ScanSink) -> usize {
        if self.h.line == HLine::Rest {
            return self.line_rest(data, 0, find_lf(data), sink);
        }

        let dash_ends = !self.stack.is_empty();
        let nl = find_lf(data);
        let line_len = nl.unwrap_or(data.len());
        let from_carry = !self.h.carry.is_empty();
        let (class, taken) = if from_carry {
            let need = (MAX_NAME_LEN + 2).saturating_sub(self.h.carry.len());
            let take = line_len.min(need);
            self.h.carry.extend_from_slice(&data[..take]);
            let ends = nl.is_some() && take == line_len;
            (classify(&self.h.carry, ends, dash_ends), take)
        } else {
            let view = &data[..line_len.min(MAX_NAME_LEN + 2)];
            let ends = nl.is_some() && view.len() == line_len;
            (classify(view, ends, dash_ends), 0)
        };
        let Some(class) = class else {
            // Undecided needs fewer than MAX_NAME_LEN + 2 bytes and no LF: all of it is here.
            if !from_carry {
                self.h.carry.extend_from_slice(data);
            }
            return data.len();
        };
        let carry = std::mem::take(&mut self.h.carry);
        let n = match class {
            LineClass::Field { name_len, colon } => {
                self.finish_field(sink);
                if let Some(n) = self.single_line_field(data, &carry, nl, name_len, colon, sink) {
                    return n;
                }
                self.h.field.start(name_len, colon);
                self.h.field_start = self.h.line_start;
                self.line_bytes_classified(&carry, sink);
                taken + self.line_rest(&data[taken..], taken, nl.map(|k| k - taken), sink)
            }
            LineClass::Continuation if self.h.field.active => {
                self.h.field.fold();
                self.line_bytes_classified(&carry, sink);
                taken + self.line_rest(&data[taken..], taken, nl.map(|k| k - taken), sink)
            }
            LineClass::Blank => {
                let end = nl.map_or(data.len(), |k| k + 1);
                self.finish_field(sink);
                let top = self.h.top;
                if top {
                    self.header_end = Some(self.pos + end);
                }
                self.end_header(sink, self.pos + end);
                if !top {
                    if !carry.is_empty() {
                        sink.event(ScanEvent::RawBody(&carry));
                    }
                    sink.event(ScanEvent::RawBody(&data[taken..end]));
                }
                end
            }
            LineClass::NotHeader | LineClass::Continuation => {
                self.finish_field(sink);
                if self.h.top {
                    self.header_end = Some(self.h.line_start);
                }
                self.end_header(sink, self.h.line_start);
                if !carry.is_empty() {
                    // The line's first bytes were carried: walk them as the body they are.
                    let pos = self.pos;
                    self.run(&carry, sink);
                    self.pos = pos;
                }
                taken
            }
        };
        let mut carry = carry;
        carry.clear();
        if self.h.carry.capacity() == 0 {
            self.h.carry = carry;
        }
        n
    }

    /// The rest of a field or continuation line: `data` starts `offset` bytes into the slice
    /// being walked, `nl` is where its LF is, if there. Returns the bytes consumed.
    fn line_rest(
        &mut self,
        data: &[u8],
        offset: usize,
        nl: Option<usize>,
        sink: &mut dyn ScanSink,
    ) -> usize {
        let (part, ends, n) = match nl {
            Some(k) => (&data[..k], true, k + 1),
            None => (data, false, data.len()),
        };
        self.h.field.line_part(part, ends);
        if !self.h.top {
            sink.event(ScanEvent::RawBody(&data[..n]));
        }
        if ends {
            self.h.line = HLine::Start;
            self.h.line_start = self.pos + offset + n;
            self.h.field_end = self.h.line_start;
        } else {
            self.h.line = HLine::Rest;
        }
        n
    }

    /// The first bytes of a field or continuation line, carried until its kind was known.
    fn line_bytes_classified(&mut self, carry: &[u8], sink: &mut dyn ScanSink) {
        if carry.is_empty() {
            return;
        }
        self.h.field.line_part(carry, false);
        if !self.h.top {
            sink.event(ScanEvent::RawBody(carry));
        }
    }

    /// The message ended inside a header block.
    fn header_eof(&mut self, sink: &mut dyn ScanSink) {
        let end = self.pos;
        match self.h.line {
            HLine::Rest => {
                self.h.field.line_part(b"", true);
                self.h.field_end = end;
            }
            HLine::Start if !self.h.carry.is_empty() => {
                let dash_ends = !self.stack.is_empty();
                match classify(&self.h.carry, true, dash_ends) {
                    Some(LineClass::Field { name_len, colon }) => {
                        self.finish_field(sink);
                        let carry = std::mem::take(&mut self.h.carry);
                        self.h.field.start(name_len, colon);
                        self.h.field_start = self.h.line_start;
                        self.line_bytes_classified(&carry, sink);
                        self.h.field.line_part(b"", true);
                        self.h.field_end = end;
                    }
                    Some(LineClass::Continuation) if self.h.field.active => {
                        let carry = std::mem::take(&mut self.h.carry);
                        self.h.field.fold();
                        self.line_bytes_classified(&carry, sink);
                        self.h.field.line_part(b"", true);
                        self.h.field_end = end;
                    }
                    Some(LineClass::Blank) => {
                        let carry = std::mem::take(&mut self.h.carry);
                        self.finish_field(sink);
                        let top = self.h.top;
                        if top {
                            self.header_end = Some(end);
                        }
                        self.end_header(sink, end);
                        if !top {
                            sink.event(ScanEvent::RawBody(&carry));
                        }
                        return;
                    }
                    _ => {
                        let carry = std::mem::take(&mut self.h.carry);
                        self.finish_field(sink);
                        if self.h.top {
                            self.header_end = Some(self.h.line_start);
                        }
                        self.end_header(sink, self.h.line_start);
                        let pos = self.pos;
                        self.run(&carry, sink);
                        self.pos = pos;
                        return;
                    }
                }
            }
            HLine::Start => {}
        }
        self.finish_field(sink);
        if self.h.top {
            self.header_end = Some(end);
        }
        self.end_header(sink, end);
    }

    /// A field line that is all in `data` (not carried) and whose next line visibly does not
    /// continue it: emitted straight from `data`, as [`FieldAcc`] would have kept it, without
    /// copying. Returns the bytes consumed, or `None` for the general path.
    fn single_line_field(
        &mut self,
        data: &[u8],
        carry: &[u8],
        nl: Option<usize>,
        name_len: usize,
        colon: usize,
        sink: &mut dyn ScanSink,
    ) -> Option<usize> {
        let k = nl?;
        let next = *data.get(k + 1)?;
        if !carry.is_empty() || next == b' ' || next == b'\t' {
            return None;
        }
        let line = &data[..k];
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        let content = &content[..content.len().min(MAX_FIELD_BYTES)];
        if !self.h.top {
            sink.event(ScanEvent::RawBody(&data[..=k]));
        }
        let name = &content[..name_len.min(content.len())];
        let value = trim_wsp(content.get(colon + 1..).unwrap_or(b""));
        emit_field(
            &mut self.part,
            &mut self.decoded,
            self.h.depth,
            name,
            value,
            sink,
        );
        let end = self.pos + k + 1;
        if self.h.top {
            self.fields.push(FieldSpan {
                start: self.h.line_start,
                end,
                name_len,
                colon,
            });
        }
        self.h.line = HLine::Start;
        self.h.line_start = end;
        Some(k + 1)
    }

    /// Emits the field being read, if any, and takes note of it.
    fn finish_field(&mut self, sink: &mut dyn ScanSink) {
        if !self.h.field.active {
            return;
        }
        self.h.field.end();
        let f = &self.h.field;
        emit_field(
            &mut self.part,
            &mut self.decoded,
            self.h.depth,
            f.name(),
            f.value(),
            sink,
        );
        if self.h.top {
            self.fields.push(FieldSpan {
                start: self.h.field_start,
                end: self.h.field_end,
                name_len: f.name_len,
                colon: f.colon,
            });
        }
    }

    /// The header block ended: tells the scanner and decides how to walk the entity's body.
    fn end_header(&mut self, sink: &mut dyn ScanSink, content_at: usize) {
        let depth = self.h.depth;
        if self.h.top {
            sink.event(ScanEvent::HeaderEnd);
            self.h.top = false;
        }
        self.h.line = HLine::Start;
        self.h.carry.clear();
        if self.parts >= self.limits.max_mime_parts {
            self.mode = Mode::Raw;
            return;
        }
        self.parts += 1;
        let media: &[u8] = if !self.part.media.is_empty() {
            &self.part.media
        } else if self.h.digest_parent {
            b"message/rfc822"
        } else {
            b"text/plain"
        };
        sink.event(ScanEvent::PartStart {
            depth,
            content_type: media,
            filename: self.part.filename.as_deref(),
        });
        if let Some(marks) = self.marks.as_mut() {
            marks.push(Mark::Start {
                at: content_at,
                depth,
                media: media.to_vec(),
                cte: self.part.cte,
                eight_bit: self.part.eight_bit,
                utf8: self.part.utf8,
                footable: self.h.footable && !self.part.attachment,
            });
        }
        let deeper_ok = depth < self.limits.max_mime_depth;
        // As `enter_content`, field by field: `media` borrows `self.part`.
        self.mode = Mode::Content;
        self.hold.clear();
        self.hold_state = Hold::LineStart;
        self.hold_lb = 0;
        if media.starts_with(b"multipart/") {
            if let (Some(boundary), true) = (&self.part.boundary, deeper_ok) {
                let footable = self.h.footable
                    && matches!(
                        media,
                        b"multipart/mixed" | b"multipart/alternative" | b"multipart/related"
                    );
                self.stack.push(Level {
                    footable,
                    boundary: boundary.clone(),
                    child_depth: depth + 1,
                    digest: media == b"multipart/digest",
                });
            }
        } else if (media == b"message/rfc822" || media == b"message/global")
            && self.part.cte == Cte::Identity
            && deeper_ok
        {
            self.enter_header(depth + 1, false);
            // An attached message's text is not the body a footer goes on.
            self.h.footable = false;
        } else if media.starts_with(b"text/") {
            let html = media == b"text/html";
            let t = &mut self.text;
            t.active = true;
            t.cte = self.part.cte;
            t.b64 = Base64Decoder::new();
            t.qp = QpDecoder::new();
            t.charset = self.part.charset;
            t.html_on = html;
            if html {
                t.html = HtmlText::new();
            }
        }
    }

    fn enter_header(&mut self, depth: usize, digest_parent: bool) {
        self.mode = Mode::Header;
        self.part.clear();
        let h = &mut self.h;
        h.depth = depth;
        h.top = false;
        h.digest_parent = digest_parent;
        h.line = HLine::Start;
        h.carry.clear();
        h.field.active = false;
        h.footable = self.stack.last().is_some_and(|l| l.footable);
    }

    fn enter_content(&mut self) {
        self.mode = Mode::Content;
        self.hold.clear();
        self.hold_state = Hold::LineStart;
        self.hold_lb = 0;
    }

    // ---- content mode ----

    /// Passes body bytes through, stopping after a boundary line; returns the bytes consumed.
    fn step_content(&mut self, data: &[u8], sink: &mut dyn ScanSink) -> usize {
        if self.stack.is_empty() {
            self.hold_state = Hold::None;
            self.deliver(data, sink);
            sink.event(ScanEvent::RawBody(data));
            return data.len();
        }
        let mut i = 0;
        // Settle what was held back at the end of the last piece.
        while self.hold_state != Hold::None && i < data.len() {
            match self.hold_state {
                Hold::None => {}
                Hold::Cr => {
                    if data[i] == b'\n' {
                        self.hold.push(b'\n');
                        self.hold_lb = self.hold.len();
                        self.hold_state = Hold::LineStart;
                        i += 1;
                    } else {
                        self.release_hold(sink);
                    }
                }
                Hold::LineStart => {
                    if data[i] == b'-' {
                        self.hold_lb = self.hold.len();
                        self.hold.push(b'-');
                        self.hold_state = Hold::Cand;
                        i += 1;
                    } else {
                        self.release_hold(sink);
                    }
                }
                Hold::Cand => {
                    let cand_len = self.hold.len() - self.hold_lb;
                    if cand_len == 1 {
                        if data[i] == b'-' {
                            self.hold.push(b'-');
                            i += 1;
                        } else {
                            self.release_hold(sink);
                        }
                        continue;
                    }
                    let room = DELIM_SCAN.saturating_sub(cand_len);
                    let seg = &data[i..];
                    let look = &seg[..seg.len().min(room)];
                    let ended = match memchr(b'\n', look) {
                        Some(k) => {
                            self.hold.extend_from_slice(&seg[..k]);
                            i += k;
                            true
                        }
                        None if seg.len() >= room => {
                            self.hold.extend_from_slice(look);
                            i += room;
                            false
                        }
                        None => {
                            self.hold.extend_from_slice(seg);
                            i = data.len();
                            break;
                        }
                    };
                    match self.decide(&self.hold[self.hold_lb..], ended) {
                        Some((level, close)) => {
                            let at = (self.pos + i).saturating_sub(self.hold.len());
                            self.mark_end(at);
                            self.hold.clear();
                            self.hold_state = Hold::None;
                            if ended {
                                i += 1;
                            } else {
                                self.skip_line = true;
                            }
                            sink.event(ScanEvent::RawBody(&data[..i]));
                            self.on_delimiter(level, close, sink);
                            return i;
                        }
                        None if ended && self.hold.last() == Some(&b'\r') => {
                            // The CR may belong to the line break before the next line.
                            self.hold.pop();
                            self.release_hold(sink);
                            self.hold.push(b'\r');
                            self.hold_state = Hold::Cr;
                        }
                        None => self.release_hold(sink),
                    }
                }
            }
        }
        if self.hold_state != Hold::None {
            sink.event(ScanEvent::RawBody(data));
            return data.len();
        }

        let start = i;
        let mut search = i;
        loop {
            let Some(j) = NL_DASHES.find(&data[search..]).map(|k| search + k) else {
                let tail = self.hold_tail(data, start);
                self.deliver(&data[start..tail], sink);
                sink.event(ScanEvent::RawBody(data));
                return data.len();
            };
            let brk = if j > start && data[j - 1] == b'\r' {
                j - 1
            } else {
                j
            };
            let line = j + 1;
            let scan_end = data.len().min(line + DELIM_SCAN);
            let (view, ended, after) = match memchr(b'\n', &data[line..scan_end]) {
                Some(k) => (&data[line..line + k], true, line + k + 1),
                None if scan_end - line == DELIM_SCAN => (&data[line..scan_end], false, scan_end),
                None => {
                    self.deliver(&data[start..brk], sink);
                    self.hold.clear();
                    self.hold.extend_from_slice(&data[brk..]);
                    self.hold_lb = line - brk;
                    self.hold_state = Hold::Cand;
                    sink.event(ScanEvent::RawBody(data));
                    return data.len();
                }
            };
            if let Some((level, close)) = self.decide(view, ended) {
                self.mark_end(self.pos + brk);
                self.deliver(&data[start..brk], sink);
                if !ended {
                    self.skip_line = true;
                }
                sink.event(ScanEvent::RawBody(&data[..after]));
                self.on_delimiter(level, close, sink);
                return after;
            }
            search = line;
        }
    }

    /// Delivers `hold` as content and forgets it.
    fn release_hold(&mut self, sink: &mut dyn ScanSink) {
        let hold = std::mem::take(&mut self.hold);
        self.deliver(&hold, sink);
        self.hold = hold;
        self.hold.clear();
        self.hold_state = Hold::None;
    }

    /// Holds back a line break (and a `-` after it) at the end of `data[start..]`, which may
    /// begin a boundary line; returns where the held bytes start.
    fn hold_tail(&mut self, data: &[u8], start: usize) -> usize {
        let d = &data[start..];
        let n = d.len();
        let (len, lb, state) = if d.ends_with(b"\r\n-") {
            (3, 2, Hold::Cand)
        } else if d.ends_with(b"\n-") {
            (2, 1, Hold::Cand)
        } else if d.ends_with(b"\r\n") {
            (2, 2, Hold::LineStart)
        } else if d.ends_with(b"\n") {
            (1, 1, Hold::LineStart)
        } else if d.ends_with(b"\r") {
            (1, 0, Hold::Cr)
        } else {
            return data.len();
        };
        self.hold.clear();
        self.hold.extend_from_slice(&d[n - len..]);
        self.hold_lb = lb;
        self.hold_state = state;
        start + n - len
    }

    /// Whether a line starting with `--` is a delimiter: which open multipart, and whether it
    /// closes it. `view` is the line without its LF (at most [`DELIM_SCAN`] bytes), `ended`
    /// whether it ended there.
    fn decide(&self, view: &[u8], ended: bool) -> Option<(usize, bool)> {
        let rest_of = |b: &[u8]| -> Option<&[u8]> { view.strip_prefix(b"--")?.strip_prefix(b) };
        if ended {
            let v = view.strip_suffix(b"\r").unwrap_or(view);
            for (k, level) in self.stack.iter().enumerate().rev() {
                let Some(rest) = v
                    .strip_prefix(b"--")
                    .and_then(|r| r.strip_prefix(level.boundary.as_slice()))
                else {
                    continue;
                };
                let (close, rest) = match rest.strip_prefix(b"--") {
                    Some(r) => (true, r),
                    None => (false, rest),
                };
                if rest.iter().all(|&b| b == b' ' || b == b'\t') {
                    return Some((k, close));
                }
            }
        }
        for (k, level) in self.stack.iter().enumerate().rev() {
            if let Some(rest) = rest_of(&level.boundary) {
                return Some((k, rest.starts_with(b"--")));
            }
        }
        None
    }

    /// A delimiter of `self.stack[level]` was read.
    fn on_delimiter(&mut self, level: usize, close: bool, sink: &mut dyn ScanSink) {
        self.text_finish(sink);
        self.stack.truncate(level + 1);
        if close {
            // The epilogue: content of the entity around the multipart.
            self.stack.pop();
            self.enter_content();
        } else {
            let (depth, digest) = match self.stack.last() {
                Some(l) => (l.child_depth, l.digest),
                None => (0, false),
            };
            self.enter_header(depth, digest);
        }
    }

    /// The message ended in content mode: a held boundary line is decided as a whole line.
    fn content_eof(&mut self, sink: &mut dyn ScanSink) {
        if self.hold_state == Hold::Cand {
            let view = &self.hold[self.hold_lb..];
            if let Some((level, close)) = self.decide(view, true) {
                self.mark_end(self.pos.saturating_sub(self.hold.len()));
                self.hold.clear();
                self.hold_state = Hold::None;
                self.on_delimiter(level, close, sink);
                return;
            }
        }
        if self.hold_state != Hold::None {
            self.release_hold(sink);
        }
    }

    // ---- text ----

    /// Content bytes of the current entity (boundary lines already taken out).
    fn deliver(&mut self, raw: &[u8], sink: &mut dyn ScanSink) {
        if !self.text.active || raw.is_empty() {
            return;
        }
        for piece in raw.chunks(TEXT_CHUNK) {
            self.text.feed(piece, sink);
        }
    }

    fn text_finish(&mut self, sink: &mut dyn ScanSink) {
        if self.text.active {
            self.text.finish(sink);
            self.text.active = false;
        }
    }
}

impl TextPipe {
    fn feed(&mut self, piece: &[u8], sink: &mut dyn ScanSink) {
        let TextPipe {
            cte, b64, qp, dec, ..
        } = self;
        let decoded: &[u8] = match cte {
            Cte::Identity => piece,
            Cte::Base64 => {
                dec.clear();
                b64.feed(piece, dec);
                dec
            }
            Cte::QuotedPrintable => {
                dec.clear();
                qp.feed(piece, dec);
                dec
            }
        };
        emit_text(
            decoded,
            self.charset,
            self.html_on.then_some(&mut self.html),
            &mut self.conv,
            &mut self.out,
            &mut self.urls,
            sink,
        );
    }

    fn finish(&mut self, sink: &mut dyn ScanSink) {
        self.dec.clear();
        match self.cte {
            Cte::Identity => {}
            Cte::Base64 => self.b64.finish(&mut self.dec),
            Cte::QuotedPrintable => self.qp.finish(&mut self.dec),
        }
        let dec = std::mem::take(&mut self.dec);
        emit_text(
            &dec,
            self.charset,
            self.html_on.then_some(&mut self.html),
            &mut self.conv,
            &mut self.out,
            &mut self.urls,
            sink,
        );
        self.dec = dec;
        if self.html_on {
            self.out.clear();
            let mut on_ref = |e: ScanEvent<'_>| sink.event(e);
            self.html.finish(&mut self.out, &mut on_ref);
            if !self.out.is_empty() {
                sink.event(ScanEvent::Text(&self.out));
                let mut on_url = |u: &[u8]| sink.event(ScanEvent::Url(u));
                self.urls.feed(&self.out, &mut on_url);
            }
        }
        let mut on_url = |u: &[u8]| sink.event(ScanEvent::Url(u));
        self.urls.finish(&mut on_url);
    }
}

/// Decoded bytes → UTF-8 (known charsets) → text (HTML reduced) → `Text` and `Url` events.
fn emit_text(
    decoded: &[u8],
    charset: Charset,
    html: Option<&mut HtmlText>,
    conv: &mut Vec<u8>,
    out: &mut Vec<u8>,
    urls: &mut UrlFinder,
    sink: &mut dyn ScanSink,
) {
    if decoded.is_empty() {
        return;
    }
    // All-ASCII text reads the same in every charset we convert: no copy.
    let utf8: &[u8] = if charset.converts() && !decoded.is_ascii() {
        conv.clear();
        charset.to_utf8(decoded, conv);
        conv
    } else {
        decoded
    };
    let text: &[u8] = match html {
        Some(h) => {
            out.clear();
            // Reduced text is mostly shorter than its HTML: one allocation up front.
            out.reserve(utf8.len());
            let mut on_ref = |e: ScanEvent<'_>| sink.event(e);
            h.feed(utf8, out, &mut on_ref);
            out
        }
        None => utf8,
    };
    if text.is_empty() {
        return;
    }
    sink.event(ScanEvent::Text(text));
    let mut on_url = |u: &[u8]| sink.event(ScanEvent::Url(u));
    urls.feed(text, &mut on_url);
}

/// One complete field (its value unfolded and trimmed): noted for the part, then told to the
/// scanner with encoded-words decoded.
fn emit_field(
    part: &mut PartInfo,
    decoded: &mut Vec<u8>,
    depth: usize,
    name: &[u8],
    unfolded: &[u8],
    sink: &mut dyn ScanSink,
) {
    part.on_field(name, unfolded);
    let value: &[u8] = if has_encoded_word(unfolded) {
        decoded.clear();
        decode_rfc2047(unfolded, decoded);
        decoded
    } else {
        unfolded
    };
    sink.event(ScanEvent::Header { depth, name, value });
}

/// The value of one whole header field as the scan gives it in [`ScanEvent::Header`]:
/// unfolded, trimmed, capped and RFC 2047-decoded as the walk does it. `field` is the field's
/// lines (line ends included), the first starting with the name; `name_len` and `colon` are
/// what [`classify`] found on that first line.
pub(crate) fn field_value(field: &[u8], name_len: usize, colon: usize) -> Vec<u8> {
    let mut acc = FieldAcc::default();
    acc.start(name_len, colon);
    for (i, line) in field.split_inclusive(|&b| b == b'\n').enumerate() {
        if i > 0 {
            acc.fold();
        }
        let (part, ends) = match line.strip_suffix(b"\n") {
            Some(part) => (part, true),
            None => (line, false),
        };
        acc.line_part(part, ends);
    }
    acc.end();
    let unfolded = acc.value();
    if has_encoded_word(unfolded) {
        let mut decoded = Vec::new();
        decode_rfc2047(unfolded, &mut decoded);
        decoded
    } else {
        unfolded.to_vec()
    }
}

/// Whether `s` has `=?` (where an RFC 2047 encoded-word could start). Looks for the `?`: header
/// values are often full of `=` (DKIM tags, base64 padding) but seldom hold a `?`.
fn has_encoded_word(s: &[u8]) -> bool {
    let mut from = 0;
    while let Some(k) = memchr(b'?', &s[from..]) {
        let at = from + k;
        if at > 0 && s[at - 1] == b'=' {
            return true;
        }
        from = at + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_encoded_word_agrees_with_naive() {
        let naive = |s: &[u8]| s.windows(2).any(|w| w == b"=?");
        for len in 0..40usize {
            let base: Vec<u8> = (0..len)
                .map(|k| if k % 3 == 0 { b'=' } else { b'?' + 1 })
                .collect();
            assert_eq!(has_encoded_word(&base), naive(&base), "len {len}");
            for at in 0..len.saturating_sub(1) {
                for (a, b) in [(b'=', b'?'), (b'?', b'='), (0xBD, b'?'), (b'=', 0xBF)] {
                    let mut s = base.clone();
                    s[at] = a;
                    s[at + 1] = b;
                    assert_eq!(has_encoded_word(&s), naive(&s), "len {len}, at {at}");
                }
            }
        }
    }
}
