//! The tokenizer: scan events in, a bounded set of distinct hashed features out (see the
//! module docs of [`crate::classify`] for what becomes a token).
//!
//! Streaming: a word cut between two `Text` events is carried in a fixed buffer, so the
//! feature set is the same however the text is cut. Features are a set; only the order in
//! which distinct features first appear (which decides what the [`MAX_TOKENS`] bound drops)
//! follows the events, and that order does not depend on the cuts.

use std::sync::Arc;

use crate::classify::model::Model;
use crate::message::{ScanEvent, ScanSink};

/// Longest token, in bytes. Longer ASCII words become one `skip` token (their first byte and
/// length class), longer non-ASCII runs (scripts written without spaces) are cut into pieces.
pub const MAX_TOKEN_BYTES: usize = 24;
/// Most distinct features counted per message; later ones are ignored.
pub const MAX_TOKENS: usize = 512;
/// Bytes of decoded body text tokenized per message; the rest is not looked at (the rules
/// still see it). Together with [`MAX_TOKENS`] this bounds the classifier's work per message.
pub const MAX_TEXT_BYTES: usize = 4 * 1024;
/// Bytes of one header value looked at.
const MAX_HEADER_VALUE_BYTES: usize = 1024;
/// Bytes of one URL looked at.
const MAX_URL_BYTES: usize = 512;
/// Bytes of a field name, media type or host kept in a token.
const MAX_NAME_BYTES: usize = 64;
/// Slots of the dedup table: a power of two, at least twice [`MAX_TOKENS`] (at most half full).
const TABLE_SLOTS: usize = 2 * MAX_TOKENS;

/// Header fields whose values are not tokenized: timestamps and signatures.
const NO_VALUE: &[&[u8]] = &[
    b"date",
    b"dkim-signature",
    b"domainkey-signature",
    b"x-google-dkim-signature",
    b"arc-seal",
    b"arc-message-signature",
    b"delivery-date",
];

/// Header fields holding addresses: their domain is a token too.
const ADDRESS: &[&[u8]] = &[
    b"from",
    b"reply-to",
    b"return-path",
    b"sender",
    b"to",
    b"cc",
    b"message-id",
    b"errors-to",
];

/// Part header fields tokenized (prefixed `p:`).
const PART_FIELDS: &[&[u8]] = &[
    b"content-type",
    b"content-transfer-encoding",
    b"content-disposition",
];

/// Whether a header field was added by a collector's filter or mail client rather than by the
/// mail as a gateway receives it (see `../shared/corpus/README.md`): never a feature.
pub fn is_collection_artefact(name: &[u8]) -> bool {
    const EXACT: &[&[u8]] = &[
        b"x-bogosity",
        b"x-virus-scanned",
        b"x-keywords",
        b"x-uidl",
        b"x-account-key",
        b"status",
        b"x-status",
    ];
    const PREFIX: &[&[u8]] = &[b"x-spam-", b"x-mozilla-"];
    EXACT.iter().any(|e| name.eq_ignore_ascii_case(e))
        || PREFIX.iter().any(|p| {
            name.len() >= p.len()
                && name
                    .get(..p.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(p))
        })
}

/// The distinct features of one message (at most [`MAX_TOKENS`]), with the model's running
/// weight sum when a model is attached.
#[derive(Clone, Debug, Default)]
pub struct Features {
    /// Open addressing over the feature hashes (0 = empty): [`TABLE_SLOTS`], at most half full.
    table: Vec<u32>,
    list: Vec<u32>,
    model: Option<Arc<Model>>,
    /// Sum of the quantised weights of `list`.
    sum: i64,
}

impl Features {
    /// An empty set; with a model, each new feature's weight is added as it comes.
    pub fn new(model: Option<Arc<Model>>) -> Features {
        Features {
            table: vec![0; TABLE_SLOTS],
            list: Vec::with_capacity(MAX_TOKENS),
            model,
            sum: 0,
        }
    }

    /// The distinct features, in the order they first came.
    pub fn as_slice(&self) -> &[u32] {
        &self.list
    }

    /// The model's probability that the message is spam (0.5 without a model).
    pub fn probability(&self) -> f64 {
        match &self.model {
            Some(m) => m.probability_of_sum(self.sum, self.list.len()),
            None => 0.5,
        }
    }

    /// Whether no more features are counted.
    #[inline]
    fn full(&self) -> bool {
        self.list.len() >= MAX_TOKENS
    }

    #[inline]
    fn insert(&mut self, h: u32) {
        let h = h.max(1);
        if self.full() {
            return;
        }
        let mask = self.table.len().wrapping_sub(1);
        let mut at = h as usize & mask;
        loop {
            match self.table.get_mut(at) {
                Some(slot) if *slot == 0 => {
                    *slot = h;
                    break;
                }
                Some(slot) if *slot == h => return,
                Some(_) => at = (at + 1) & mask,
                None => return,
            }
        }
        self.list.push(h);
        if let Some(m) = &self.model {
            self.sum += i64::from(m.weight(h));
        }
    }
}

/// Turns one message's scan events into [`Features`]. Feed it with [`ScanSink::event`], then
/// call [`Tokenizer::finish`] (a word still open at the end of the text counts only then).
#[derive(Clone, Debug)]
pub struct Tokenizer {
    features: Features,
    word: WordState,
    /// The previous word of the current text part, for word pairs (0 = none).
    prev: u64,
    parts: u32,
    /// Body text bytes still to look at (counts down from [`MAX_TEXT_BYTES`]).
    text_left: usize,
}

/// A word being read, carried across `Text` events.
#[derive(Clone, Debug, Default)]
struct WordState {
    buf: [u8; MAX_TOKEN_BYTES],
    /// Bytes of the word so far (may exceed the buffer).
    len: usize,
    /// Every byte so far is non-ASCII.
    high: bool,
}

impl Tokenizer {
    /// A tokenizer for one message; with a model, the probability is kept up to date.
    pub fn new(model: Option<Arc<Model>>) -> Tokenizer {
        Tokenizer {
            features: Features::new(model),
            word: WordState::default(),
            prev: 0,
            parts: 0,
            text_left: MAX_TEXT_BYTES,
        }
    }

    /// The text ended: an open word counts.
    pub fn finish(&mut self) {
        self.end_word();
    }

    /// The features so far.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// Takes the features (for training).
    pub fn into_features(mut self) -> Features {
        self.finish();
        self.features
    }

    fn header(&mut self, depth: usize, name: &[u8], value: &[u8]) {
        if self.features.full() || is_collection_artefact(name) {
            return;
        }
        let value = &value[..value.len().min(MAX_HEADER_VALUE_BYTES)];
        let mut lname = [0u8; MAX_NAME_BYTES];
        let n = name.len().min(MAX_NAME_BYTES);
        for (d, s) in lname.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        let lname = &lname[..n];
        if depth > 0 {
            if PART_FIELDS.contains(&lname) {
                let seed = hash_bytes(hash_bytes(SEED_PART, lname), b":");
                self.words_of(seed, value, false);
            }
            return;
        }
        self.add(hash_bytes(SEED_NAME, &name[..n]));
        if NO_VALUE.contains(&lname) {
            return;
        }
        let seed = hash_bytes(hash_bytes(SEED_HEADER, lname), b":");
        self.words_of(seed, value, lname == b"subject");
        if ADDRESS.contains(&lname) {
            if let Some(at) = memchr::memrchr(b'@', value) {
                let dom = &value[at + 1..];
                let end = dom
                    .iter()
                    .position(|&b| matches!(b, b'>' | b' ' | b';' | b',' | b')' | b'"' | b'\t'))
                    .unwrap_or(dom.len());
                let dom = &dom[..end.min(MAX_NAME_BYTES)];
                let mut low = [0u8; MAX_NAME_BYTES];
                for (d, s) in low.iter_mut().zip(dom) {
                    *d = s.to_ascii_lowercase();
                }
                self.add(hash_bytes(hash_bytes(seed, b"@"), &low[..dom.len()]));
            }
        }
    }

    fn part_start(&mut self, depth: usize, content_type: &[u8], filename: Option<&[u8]>) {
        self.end_word();
        self.prev = 0;
        let ct = &content_type[..content_type.len().min(MAX_NAME_BYTES)];
        self.add(hash_bytes(SEED_TYPE, ct));
        if depth == 0 && self.parts == 0 {
            self.add(hash_bytes(SEED_TOP_TYPE, ct));
        }
        self.parts += 1;
        if let Some(bucket) = [1u32, 2, 3, 5, 10, 30]
            .iter()
            .position(|&b| b == self.parts)
        {
            self.add(hash_bytes(SEED_PARTS, &[bucket as u8]));
        }
        if let Some(name) = filename {
            let name = name.trim_ascii_end();
            let name = name.strip_suffix(b"\"").unwrap_or(name);
            let ext = match memchr::memrchr(b'.', name) {
                Some(dot) => &name[dot + 1..],
                None => b"",
            };
            let mut low = [0u8; 12];
            let n = ext.len().min(low.len());
            for (d, s) in low.iter_mut().zip(ext) {
                *d = s.to_ascii_lowercase();
            }
            self.add(hash_bytes(SEED_EXT, &low[..n]));
        }
    }

    fn url(&mut self, url: &[u8]) {
        if self.features.full() {
            return;
        }
        let url = url.trim_ascii();
        let url = &url[..url.len().min(MAX_URL_BYTES)];
        let scheme_end = memchr::memmem::find(&url[..url.len().min(16)], b"://");
        if let Some(s) = scheme_end {
            let mut low = [0u8; 16];
            for (d, c) in low.iter_mut().zip(&url[..s]) {
                *d = c.to_ascii_lowercase();
            }
            self.add(hash_bytes(SEED_SCHEME, &low[..s]));
        }
        let host = crate::rules::url_host_of(url);
        let host = &host[..host.len().min(MAX_NAME_BYTES)];
        let mut low = [0u8; MAX_NAME_BYTES];
        for (d, c) in low.iter_mut().zip(host) {
            *d = c.to_ascii_lowercase();
        }
        let host = &low[..host.len()];
        if !host.is_empty() && host.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
            self.add(hash_bytes(SEED_HOST, b"<ip>"));
        } else {
            self.add(hash_bytes(SEED_HOST, host));
            // The last two labels: a cheap stand-in for the registrable domain.
            let mut dots = host.iter().rposition(|&b| b == b'.');
            if let Some(d) = dots {
                dots = host[..d].iter().rposition(|&b| b == b'.');
            }
            let base = dots.map_or(host, |d| &host[d + 1..]);
            self.add(hash_bytes(SEED_DOMAIN, base));
        }
        let after = scheme_end.map_or(0, |s| s + 3);
        if let Some(slash) = url.get(after..).and_then(|r| memchr::memchr(b'/', r)) {
            self.words_of(SEED_PATH, &url[after + slash..], true);
        }
    }

    /// Words of a whole value (a header value or a URL path), each hashed from `seed`.
    fn words_of(&mut self, seed: u64, value: &[u8], digits: bool) {
        let mut rest = value;
        while !self.features.full() {
            let Some(start) = rest.iter().position(|&b| WORD[b as usize] != 0) else {
                return;
            };
            rest = &rest[start..];
            let end = word_end(rest);
            let word = &rest[..end];
            if (2..=MAX_TOKEN_BYTES).contains(&end)
                && (digits || !word.iter().all(u8::is_ascii_digit))
            {
                self.add(hash_lower(seed, word));
            }
            rest = rest.get(end + 1..).unwrap_or_default();
        }
    }

    /// Body text: whole words of the chunk are hashed straight from it; a word cut by the
    /// end of the chunk, or longer than [`MAX_TOKEN_BYTES`], goes through the carried
    /// [`WordState`] byte by byte (the same tokens either way).
    fn text(&mut self, chunk: &[u8]) {
        if self.features.full() {
            return;
        }
        let n = chunk.len().min(self.text_left);
        self.text_left -= n;
        let mut rest = &chunk[..n];
        if self.word.len != 0 {
            let end = word_end(rest);
            self.text_slow(&rest[..end]);
            if end == rest.len() {
                return;
            }
            self.end_word();
            rest = &rest[end + 1..];
        }
        while !self.features.full() {
            let Some(start) = rest.iter().position(|&b| WORD[b as usize] != 0) else {
                return;
            };
            rest = &rest[start..];
            let end = word_end(rest);
            if end == rest.len() || end > MAX_TOKEN_BYTES {
                self.text_slow(&rest[..end]);
                if end == rest.len() {
                    return;
                }
                self.end_word();
            } else if end >= 2 {
                self.word_hash(hash_lower(SEED_TEXT, &rest[..end]));
            }
            rest = &rest[end + 1..];
        }
    }

    /// Bytes of one word (no separators), carried in [`WordState`].
    fn text_slow(&mut self, word: &[u8]) {
        for &b in word {
            let c = WORD[b as usize];
            let w = &mut self.word;
            if w.len == 0 {
                w.high = true;
            }
            if let Some(slot) = w.buf.get_mut(w.len) {
                *slot = c;
            }
            w.len += 1;
            w.high &= c >= 0x80;
            if w.high && w.len == MAX_TOKEN_BYTES {
                // A run of non-ASCII without spaces (CJK, Thai ...): pieces of it.
                self.end_word();
            }
        }
    }

    fn end_word(&mut self) {
        let w = &mut self.word;
        let len = std::mem::take(&mut w.len);
        if len < 2 {
            return;
        }
        let h = if len <= MAX_TOKEN_BYTES {
            hash_bytes(SEED_TEXT, &w.buf[..len])
        } else {
            let class = [w.buf[0], (len / 8).min(32) as u8];
            hash_bytes(SEED_SKIP, &class)
        };
        self.word_hash(h);
    }

    /// A text word's hash: the word and the pair with the previous word.
    #[inline]
    fn word_hash(&mut self, h: u64) {
        self.add(h);
        if self.prev != 0 {
            self.add(self.prev.rotate_left(23) ^ h.wrapping_mul(K_PAIR));
        }
        self.prev = h;
    }

    #[inline]
    fn add(&mut self, h: u64) {
        self.features.insert(fold(h));
    }
}

impl ScanSink for Tokenizer {
    fn event(&mut self, ev: ScanEvent<'_>) {
        match ev {
            ScanEvent::Header { depth, name, value } => self.header(depth, name, value),
            ScanEvent::HeaderEnd | ScanEvent::RawBody(_) => {}
            ScanEvent::PartStart {
                depth,
                content_type,
                filename,
            } => self.part_start(depth, content_type, filename),
            ScanEvent::Text(t) => self.text(t),
            ScanEvent::Url(u) => self.url(u),
        }
    }
}

const K_MUL: u64 = 0x9E37_79B9_7F4A_7C15;
const K_PAIR: u64 = 0xC2B2_AE3D_27D4_EB4F;
const SEED_TEXT: u64 = 0x1000;
const SEED_SKIP: u64 = 0x2000;
const SEED_NAME: u64 = 0x3000;
const SEED_HEADER: u64 = 0x4000;
const SEED_PART: u64 = 0x5000;
const SEED_TYPE: u64 = 0x6000;
const SEED_TOP_TYPE: u64 = 0x7000;
const SEED_PARTS: u64 = 0x8000;
const SEED_EXT: u64 = 0x9000;
const SEED_SCHEME: u64 = 0xA000;
const SEED_HOST: u64 = 0xB000;
const SEED_DOMAIN: u64 = 0xC000;
const SEED_PATH: u64 = 0xD000;

/// A hash of `bytes` continuing from `seed`, eight bytes at a time. Part of the model format:
/// changing it changes [`crate::classify::TOKENIZER_VERSION`].
#[inline]
fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = (seed ^ bytes.len() as u64).wrapping_mul(K_MUL);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K_MUL);
        h ^= h >> 29;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K_MUL);
        h ^= h >> 29;
    }
    h
}

/// [`hash_bytes`] of `word` (bytes that are all in words) lower-cased as [`WORD`] does.
#[inline]
fn hash_lower(seed: u64, word: &[u8]) -> u64 {
    let mut buf = [0u8; MAX_TOKEN_BYTES];
    let n = word.len().min(MAX_TOKEN_BYTES);
    for (d, &s) in buf.iter_mut().zip(word) {
        *d = s | (u8::from(s.wrapping_sub(b'A') < 26) << 5);
    }
    hash_bytes(seed, &buf[..n])
}

/// Length of the word at the start of `bytes` (up to the first separator).
#[inline]
fn word_end(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| WORD[b as usize] == 0)
        .unwrap_or(bytes.len())
}

#[inline]
fn fold(h: u64) -> u32 {
    let h = h.wrapping_mul(K_PAIR);
    (h >> 32) as u32
}

/// Per byte: 0 for a separator, else the byte as it goes into a word (ASCII lower-cased).
/// Words are ASCII letters and digits, `$`, `'` and every non-ASCII byte.
static WORD: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_uppercase() {
            b.to_ascii_lowercase()
        } else if b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'$'
            || b == b'\''
            || b >= 0x80
        {
            b
        } else {
            0
        };
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(f: &Features) -> Vec<u32> {
        let mut v = f.as_slice().to_vec();
        v.sort_unstable();
        v
    }

    fn header_events(t: &mut Tokenizer) {
        for (name, value) in [
            (&b"Subject"[..], &b"Win a FREE prize 100"[..]),
            (b"From", b"\"Prize Desk\" <desk@Lucky.example>"),
            (b"X-Spam-Status", b"Yes, score=99"),
            (b"Date", b"Mon, 1 Jan 2024 00:00:00 +0000"),
        ] {
            t.event(ScanEvent::Header {
                depth: 0,
                name,
                value,
            });
        }
        t.event(ScanEvent::HeaderEnd);
        t.event(ScanEvent::PartStart {
            depth: 0,
            content_type: b"text/plain",
            filename: None,
        });
    }

    fn run(text: &[&[u8]]) -> Vec<u32> {
        let mut t = Tokenizer::new(None);
        header_events(&mut t);
        for c in text {
            t.event(ScanEvent::Text(c));
        }
        t.event(ScanEvent::Url(
            b"https://Click.Lucky.example/claim/now?id=5",
        ));
        t.event(ScanEvent::PartStart {
            depth: 1,
            content_type: b"application/pdf",
            filename: Some(b"Invoice.PDF"),
        });
        sorted(&t.into_features())
    }

    const TEXT: &[u8] = "Dear friend, you WON $1,000,000!\r\nClaim it now: \
        supercalifragilisticexpialidocious-and-more\r\n\u{4e2d}\u{6587}\u{6587}\u{5b57}\u{5b57}\u{5b57}\u{5b57}\u{5b57}\u{5b57}\u{5b57}\u{5b57}\u{5b57} don't wait"
        .as_bytes();

    #[test]
    fn same_features_whatever_the_cuts() {
        let whole = run(&[TEXT]);
        assert!(whole.len() > 20, "{}", whole.len());
        let bytes: Vec<&[u8]> = TEXT.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "byte by byte");
        for i in 0..=TEXT.len() {
            assert_eq!(run(&[&TEXT[..i], &TEXT[i..]]), whole, "split at {i}");
        }
    }

    #[test]
    fn artefact_headers_are_not_features() {
        let rows: &[(&str, &[u8], bool)] = &[
            ("spam_status", b"X-Spam-Status", true),
            ("spam_flag_case", b"x-SPAM-flag", true),
            ("bogosity", b"X-Bogosity", true),
            ("mozilla", b"X-Mozilla-Status2", true),
            ("status", b"Status", true),
            ("subject", b"Subject", false),
            ("short", b"X-Sp", false),
        ];
        for (row, name, want) in rows {
            assert_eq!(is_collection_artefact(name), *want, "{row}");
        }
        let with = {
            let mut t = Tokenizer::new(None);
            header_events(&mut t);
            sorted(&t.into_features())
        };
        let without = {
            let mut t = Tokenizer::new(None);
            t.event(ScanEvent::Header {
                depth: 0,
                name: b"Subject",
                value: b"Win a FREE prize 100",
            });
            t.event(ScanEvent::Header {
                depth: 0,
                name: b"From",
                value: b"\"Prize Desk\" <desk@Lucky.example>",
            });
            t.event(ScanEvent::Header {
                depth: 0,
                name: b"Date",
                value: b"Mon, 1 Jan 2024 00:00:00 +0000",
            });
            t.event(ScanEvent::PartStart {
                depth: 0,
                content_type: b"text/plain",
                filename: None,
            });
            sorted(&t.into_features())
        };
        assert_eq!(with, without);
    }

    #[test]
    fn tokens_are_bounded() {
        let mut t = Tokenizer::new(None);
        let mut text = Vec::new();
        for i in 0..(MAX_TOKENS * 2) {
            text.extend_from_slice(format!("w{i} ").as_bytes());
        }
        t.event(ScanEvent::Text(&text));
        let f = t.into_features();
        assert_eq!(f.as_slice().len(), MAX_TOKENS);
        let mut d = f.as_slice().to_vec();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), MAX_TOKENS, "distinct");
    }

    #[test]
    fn fast_lowering_matches_the_word_table() {
        for b in 0..=255u8 {
            let c = WORD[b as usize];
            if c != 0 {
                assert_eq!(
                    hash_lower(1, &[b, b'a', b]),
                    hash_bytes(1, &[c, b'a', c]),
                    "{b}"
                );
            }
        }
    }

    #[test]
    fn long_words_become_one_skip_token() {
        let a = run(&[b"x aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa y"]);
        let b = run(&[b"x aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab y"]);
        assert_eq!(a, b, "same first byte and length class");
    }
}
