//! Literal phrases of one target: one Aho-Corasick DFA over all of them (lower-cased), driven
//! byte by byte with [`Automaton::next_state`] so that state carries across chunks.
//!
//! Streams (body text, raw body) are not walked from every byte. All phrases of a target are at
//! least `min_len` bytes long, so every occurrence covers a `q`-byte gram (`q = min(4,
//! min_len)`) that starts at a stream offset divisible by `stride = min_len - q + 1`, at one of
//! `stride` offsets inside the phrase. A 64 Ki-entry table keyed by a hash of those grams holds,
//! per slot, the set of in-phrase offsets seen there. The scanner tests one gram every `stride`
//! bytes, and only on a table hit starts anchored automaton walks at the candidate phrase starts.
//! Walks still alive at the end of a chunk are kept (with their `StateID`) and continue on the next
//! chunk. So the work per byte is a lower-casing copy plus a table probe every `stride` bytes, the
//! same for 5 rules or 5,000; the walks only run where a phrase really may start.
//!
//! Values (header values, URLs, file names) are short and whole: they get a plain unanchored walk.

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

use crate::rules::file::MAX_PHRASE_BYTES;
use crate::rules::verdict::HitSet;
use crate::rules::RuleId;

/// Bytes of the stream kept from the previous chunk: enough for a gram that started there, the
/// walk starts `stride - 1` before it and one byte before those (word edges).
const HIST_BYTES: usize = 16;
const MAX_GRAM: usize = 4;
const MAX_STRIDE: usize = 8;
/// Filter slots: about 32 per gram, between 2^10 and 2^17 (a 16 KiB bitmap stays in L1).
const MIN_FILTER_BITS: u32 = 10;
const MAX_FILTER_BITS: u32 = 17;
/// ASCII letters differ from their capitals by 0x20: or-ing it in folds case (and merges a few
/// punctuation pairs, which only costs a false candidate).
const FOLD: u32 = 0x2020_2020;

/// One rule that owns a phrase.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owner {
    pub rule: RuleId,
    pub word_bounded: bool,
}

/// All phrases of one target, compiled.
#[derive(Debug)]
pub(crate) struct PhraseSet {
    dfa: DFA,
    /// Per pattern: its length and the rules that own it.
    patterns: Vec<(usize, Vec<Owner>)>,
    anchored_start: aho_corasick::automaton::StateID,
    unanchored_start: aho_corasick::automaton::StateID,
    gram: usize,
    gram_mask: u32,
    stride: usize,
    /// One bit per filter slot: some phrase has a gram hashing there.
    bits: Box<[u64]>,
    /// Per filter slot: bit `o` set when some phrase has such a gram at offset `o`.
    offsets: Box<[u8]>,
    shift: u32,
}

/// Builds [`PhraseSet`]s.
#[derive(Default)]
pub(crate) struct PhraseSetBuilder {
    patterns: Vec<Vec<u8>>,
    owners: Vec<Vec<Owner>>,
    index: std::collections::HashMap<Vec<u8>, usize>,
}

impl PhraseSetBuilder {
    pub fn add(&mut self, phrase: &str, owner: Owner) {
        let lower = phrase.as_bytes().to_ascii_lowercase();
        let at = match self.index.get(&lower) {
            Some(&at) => at,
            None => {
                self.patterns.push(lower.clone());
                self.owners.push(Vec::new());
                self.index.insert(lower, self.patterns.len() - 1);
                self.patterns.len() - 1
            }
        };
        self.owners[at].push(owner);
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn build(self) -> Result<PhraseSet, String> {
        let dfa = DFA::builder()
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Both)
            .prefilter(false)
            .build(&self.patterns)
            .map_err(|e| format!("phrase automaton: {e}"))?;
        let anchored_start = dfa
            .start_state(Anchored::Yes)
            .map_err(|e| format!("phrase automaton: {e}"))?;
        let unanchored_start = dfa
            .start_state(Anchored::No)
            .map_err(|e| format!("phrase automaton: {e}"))?;
        let min_len = self.patterns.iter().map(Vec::len).min().unwrap_or(1).max(1);
        let gram = min_len.min(MAX_GRAM);
        let stride = (min_len - gram + 1).min(MAX_STRIDE);
        let grams = self.patterns.len() * stride;
        let filter_bits = (grams * 32)
            .next_power_of_two()
            .trailing_zeros()
            .clamp(MIN_FILTER_BITS, MAX_FILTER_BITS);
        let shift = 32 - filter_bits;
        let gram_mask = if gram >= 4 {
            u32::MAX
        } else {
            (1u32 << (8 * gram)) - 1
        };
        let mut bits = vec![0u64; (1usize << filter_bits) / 64].into_boxed_slice();
        let mut offsets = vec![0u8; 1usize << filter_bits].into_boxed_slice();
        for p in &self.patterns {
            for o in 0..stride {
                let slot = hash((gram_key(&p[o..], gram_mask) | FOLD) & gram_mask, shift);
                bits[slot / 64] |= 1 << (slot % 64);
                offsets[slot] |= 1 << o;
            }
        }
        let patterns = self
            .patterns
            .iter()
            .map(Vec::len)
            .zip(self.owners)
            .collect();
        Ok(PhraseSet {
            dfa,
            patterns,
            anchored_start,
            unanchored_start,
            gram,
            gram_mask,
            stride,
            bits,
            offsets,
            shift,
        })
    }
}

impl PhraseSet {
    /// Matches a whole, already lower-cased value (unanchored walk).
    pub fn match_value(&self, lower: &[u8], hits: &mut HitSet) {
        let mut sid = self.unanchored_start;
        for (i, &b) in lower.iter().enumerate() {
            sid = self.dfa.next_state(Anchored::No, sid, b);
            if self.dfa.is_special(sid) && self.dfa.is_match(sid) {
                for m in 0..self.dfa.match_len(sid) {
                    let pid = self.dfa.match_pattern(sid, m).as_usize();
                    let Some((len, owners)) = self.patterns.get(pid) else {
                        continue;
                    };
                    let start = i + 1 - len;
                    let before_ok =
                        start == 0 || !lower.get(start - 1).copied().is_some_and(is_word);
                    let after_ok = !lower.get(i + 1).copied().is_some_and(is_word);
                    for o in owners {
                        if !o.word_bounded || (before_ok && after_ok) {
                            hits.set(o.rule);
                        }
                    }
                }
            }
        }
    }
}

/// One in-flight anchored walk.
#[derive(Clone, Copy, Debug)]
struct Walk {
    state: aho_corasick::automaton::StateID,
    /// Stream offset of the candidate phrase start.
    start: u64,
    /// The byte before the start was not a word byte (or there was none).
    before_ok: bool,
}

/// Per-stream state for one [`PhraseSet`]: carried between chunks of the same stream.
#[derive(Debug, Default)]
pub(crate) struct PhraseStream {
    hist: [u8; HIST_BYTES],
    hist_len: usize,
    /// Stream bytes consumed so far.
    offset: u64,
    /// The next sampled gram position not yet tested.
    next_sample: u64,
    walks: Vec<Walk>,
    /// Word-bounded matches that ended at the end of the last chunk: their owners hit if the
    /// next byte is not a word byte (or the stream ends).
    pending: Vec<usize>,
}

impl PhraseStream {
    /// Feeds the next chunk of the stream.
    pub fn feed(&mut self, set: &PhraseSet, chunk: &[u8], hits: &mut HitSet) {
        if chunk.is_empty() {
            return;
        }
        let hist_arr = self.hist;
        let hist = &hist_arr[..self.hist_len];
        let base = self.offset - hist.len() as u64;
        let mut pending = std::mem::take(&mut self.pending);

        if !pending.is_empty() {
            let next_is_word = is_word(chunk[0]);
            for pid in pending.drain(..) {
                if !next_is_word {
                    hit_owners(set, pid, hits);
                }
            }
        }
        // Walks alive at the end of the last chunk go on from this chunk's first byte.
        let offset = self.offset;
        self.walks
            .retain_mut(|w| walk(set, w, &[], chunk, offset, hits, &mut pending));

        let end = offset + chunk.len() as u64;
        let gram = set.gram as u64;
        let stride = set.stride as u64;
        let mut p = self.next_sample;
        // Samples whose gram starts in the kept history: at most a few, byte by byte.
        while p < offset && p + gram <= end {
            let key = (0..set.gram).fold(0u32, |k, j| {
                let at = p + j as u64;
                let b = if at < offset {
                    hist.get((at - base) as usize)
                } else {
                    chunk.get((at - offset) as usize)
                };
                let b = b.copied().unwrap_or(0);
                k | u32::from(b) << (8 * j)
            });
            if set.probe(key) {
                self.candidates(set, key, p, hist, base, chunk, hits, &mut pending);
            }
            p += stride;
        }
        // Samples inside the chunk: the hot loop, one probe per `stride` bytes.
        if p >= offset {
            let mut i = (p - offset) as usize;
            while i + set.gram <= chunk.len() {
                let key = gram_key(&chunk[i..], set.gram_mask);
                if set.probe(key) {
                    self.candidates(
                        set,
                        key,
                        offset + i as u64,
                        hist,
                        base,
                        chunk,
                        hits,
                        &mut pending,
                    );
                }
                i += set.stride;
            }
            p = offset + i as u64;
        }
        self.next_sample = p;
        self.pending = pending;

        let keep = (hist.len() + chunk.len()).min(HIST_BYTES);
        let from_chunk = keep.min(chunk.len());
        let from_hist = keep - from_chunk;
        let mut next = [0u8; HIST_BYTES];
        next[..from_hist].copy_from_slice(&hist[hist.len() - from_hist..]);
        next[from_hist..keep].copy_from_slice(&chunk[chunk.len() - from_chunk..]);
        self.hist = next;
        self.hist_len = keep;
        self.offset = end;
    }

    /// The stream ended: pending word-bounded matches end at a word edge. The state is reset for
    /// a new stream.
    pub fn finish(&mut self, set: &PhraseSet, hits: &mut HitSet) {
        for pid in self.pending.drain(..) {
            hit_owners(set, pid, hits);
        }
        self.walks.clear();
        self.hist_len = 0;
        self.offset = 0;
        self.next_sample = 0;
    }

    /// What [`PhraseStream::finish`] would add, without ending the stream.
    pub fn peek_end(&self, set: &PhraseSet, hits: &mut HitSet) {
        for &pid in &self.pending {
            hit_owners(set, pid, hits);
        }
    }

    /// A filter hit at stream offset `p`: start walks at the phrase starts it implies.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn candidates(
        &mut self,
        set: &PhraseSet,
        key: u32,
        p: u64,
        hist: &[u8],
        base: u64,
        chunk: &[u8],
        hits: &mut HitSet,
        pending: &mut Vec<usize>,
    ) {
        let offset = self.offset;
        let mut m = set.offsets[hash((key | FOLD) & set.gram_mask, set.shift)];
        while m != 0 {
            let o = u64::from(m.trailing_zeros());
            m &= m - 1;
            let Some(start) = p.checked_sub(o) else {
                continue;
            };
            // HIST_BYTES covers gram + stride, so `start - 1` is in the history or the chunk.
            let byte_at = |at: u64| -> Option<u8> {
                if at >= offset {
                    chunk.get((at - offset) as usize).copied()
                } else {
                    at.checked_sub(base)
                        .and_then(|i| hist.get(i as usize).copied())
                }
            };
            let before_ok = start == 0 || !byte_at(start - 1).is_some_and(is_word);
            let mut w = Walk {
                state: set.anchored_start,
                start,
                before_ok,
            };
            let (first, second) = if start < offset {
                let from = start.saturating_sub(base) as usize;
                (hist.get(from..).unwrap_or(&[]), chunk)
            } else {
                (
                    &[][..],
                    chunk.get((start - offset) as usize..).unwrap_or(&[]),
                )
            };
            if walk(set, &mut w, first, second, start, hits, pending) {
                self.walks.push(w);
            }
        }
    }
}

impl PhraseSet {
    #[inline(always)]
    fn probe(&self, key: u32) -> bool {
        let slot = hash((key | FOLD) & self.gram_mask, self.shift);
        self.bits[slot / 64] & (1 << (slot % 64)) != 0
    }
}

/// Walks `w` over `first` then `second`, whose first byte is at stream offset `pos`; false
/// when it died.
fn walk(
    set: &PhraseSet,
    w: &mut Walk,
    first: &[u8],
    second: &[u8],
    pos: u64,
    hits: &mut HitSet,
    pending: &mut Vec<usize>,
) -> bool {
    let dfa = &set.dfa;
    let mut sid = w.state;
    let total = first.len() + second.len();
    let byte = |k: usize| -> Option<u8> {
        if k < first.len() {
            first.get(k).copied()
        } else {
            second.get(k - first.len()).copied()
        }
    };
    for k in 0..total {
        let Some(b) = byte(k) else { break };
        sid = dfa.next_state(Anchored::Yes, sid, b.to_ascii_lowercase());
        if dfa.is_special(sid) {
            if dfa.is_dead(sid) {
                return false;
            }
            if dfa.is_match(sid) {
                let walked = pos + k as u64 + 1 - w.start;
                for m in 0..dfa.match_len(sid) {
                    let pid = dfa.match_pattern(sid, m).as_usize();
                    let Some((len, owners)) = set.patterns.get(pid) else {
                        continue;
                    };
                    // Matches inherited from suffixes start later: their own walk reports them.
                    if *len as u64 != walked {
                        continue;
                    }
                    let mut word = false;
                    for o in owners {
                        if o.word_bounded {
                            word = true;
                        } else {
                            hits.set(o.rule);
                        }
                    }
                    if word && w.before_ok {
                        match byte(k + 1) {
                            Some(next) if !is_word(next) => hit_word_owners(owners, hits),
                            Some(_) => {}
                            None if pending.len() < MAX_PHRASE_BYTES && !pending.contains(&pid) => {
                                pending.push(pid)
                            }
                            None => {}
                        }
                    }
                }
            }
        }
    }
    w.state = sid;
    true
}

fn hit_owners(set: &PhraseSet, pid: usize, hits: &mut HitSet) {
    if let Some((_, owners)) = set.patterns.get(pid) {
        hit_word_owners(owners, hits);
    }
}

fn hit_word_owners(owners: &[Owner], hits: &mut HitSet) {
    for o in owners {
        if o.word_bounded {
            hits.set(o.rule);
        }
    }
}

/// Letters, digits, `_` and every non-ASCII byte (parts of UTF-8 letters) are word bytes.
pub(crate) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The first bytes of `at` as a little-endian key, masked to the gram length.
#[inline(always)]
fn gram_key(at: &[u8], gram_mask: u32) -> u32 {
    match at.get(..4) {
        Some(four) => u32::from_le_bytes([four[0], four[1], four[2], four[3]]) & gram_mask,
        None => {
            at.iter()
                .take(4)
                .enumerate()
                .fold(0u32, |k, (i, &b)| k | u32::from(b) << (8 * i))
                & gram_mask
        }
    }
}

#[inline(always)]
fn hash(key: u32, shift: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B1) >> shift) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle: does `phrase` occur in `hay`, ASCII case-insensitively, with word edges
    /// when asked?
    fn naive(hay: &[u8], phrase: &[u8], word: bool) -> bool {
        let hay = hay.to_ascii_lowercase();
        let phrase = phrase.to_ascii_lowercase();
        (0..hay.len().saturating_sub(phrase.len() - 1)).any(|s| {
            hay[s..].starts_with(&phrase)
                && (!word
                    || ((s == 0 || !is_word(hay[s - 1]))
                        && !matches!(hay.get(s + phrase.len()), Some(&b) if is_word(b))))
        })
    }

    fn build(phrases: &[(&str, bool)]) -> PhraseSet {
        let mut b = PhraseSetBuilder::default();
        for (i, (p, w)) in phrases.iter().enumerate() {
            b.add(
                p,
                Owner {
                    rule: RuleId(i as u32),
                    word_bounded: *w,
                },
            );
        }
        b.build().expect("builds")
    }

    fn stream(set: &PhraseSet, chunks: &[&[u8]], n: usize) -> Vec<bool> {
        let mut hits = HitSet::new(n);
        let mut s = PhraseStream::default();
        for c in chunks {
            s.feed(set, c, &mut hits);
        }
        s.finish(set, &mut hits);
        (0..n).map(|i| hits.get(RuleId(i as u32))).collect()
    }

    fn value(set: &PhraseSet, hay: &[u8], n: usize) -> Vec<bool> {
        let mut hits = HitSet::new(n);
        set.match_value(&hay.to_ascii_lowercase(), &mut hits);
        (0..n).map(|i| hits.get(RuleId(i as u32))).collect()
    }

    const PHRASES: &[(&str, bool)] = &[
        ("next of kin", true),
        ("western union", false),
        ("abcd", false),
        ("bc", false),
        ("free", true),
        ("aaaa", false),
        ("x", true),
        ("click here", false),
    ];

    const HAYS: &[(&str, &[u8])] = &[
        ("empty", b""),
        ("plain", b"Please send your NEXT OF KIN via Western Union."),
        ("word_edge_miss", b"freedom and next of kinship"),
        ("word_edge_hit", b"(free) x"),
        ("suffix_inside", b"zabcdz"),
        ("overlaps", b"aaaaaaa abc"),
        ("at_end", b"click here"),
        ("utf8_edge", "free\u{e9}".as_bytes()),
        ("crlf", b"line one\r\nnext of kin\r\nFREE\r\n"),
    ];

    #[test]
    fn matches_the_oracle_whole_and_split() {
        let set = build(PHRASES);
        let n = PHRASES.len();
        for (row, hay) in HAYS {
            let want: Vec<bool> = PHRASES
                .iter()
                .map(|(p, w)| naive(hay, p.as_bytes(), *w))
                .collect();
            assert_eq!(stream(&set, &[hay], n), want, "{row}: whole");
            assert_eq!(value(&set, hay, n), want, "{row}: value");
            let bytes: Vec<&[u8]> = hay.chunks(1).collect();
            assert_eq!(stream(&set, &bytes, n), want, "{row}: byte by byte");
            for i in 0..=hay.len() {
                assert_eq!(
                    stream(&set, &[&hay[..i], &hay[i..]], n),
                    want,
                    "{row}: split at {i}"
                );
            }
        }
    }

    #[test]
    fn long_phrases_use_a_stride() {
        let set = build(&[("western union", false), ("next of kin", true)]);
        assert_eq!(set.gram, 4);
        assert_eq!(set.stride, 8);
        let hay = b"xx western union yy Next of Kin";
        for lead in 0..12 {
            let mut h = vec![b'.'; lead];
            h.extend_from_slice(hay);
            for i in 0..=h.len() {
                assert_eq!(
                    stream(&set, &[&h[..i], &h[i..]], 2),
                    vec![true, true],
                    "lead {lead} split {i}"
                );
            }
        }
    }

    #[test]
    fn random_text_against_the_oracle() {
        // A small xorshift keeps the test deterministic without a dependency.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"abAB .c";
        for round in 0..300 {
            let nphr = 1 + (next() % 6) as usize;
            let phrases: Vec<(String, bool)> = (0..nphr)
                .map(|_| {
                    let len = 1 + (next() % 7) as usize;
                    let p: String = (0..len)
                        .map(|_| alphabet[(next() % 5) as usize] as char)
                        .collect();
                    (p, next() % 2 == 0)
                })
                .collect();
            let refs: Vec<(&str, bool)> = phrases.iter().map(|(p, w)| (p.as_str(), *w)).collect();
            let set = build(&refs);
            let len = (next() % 60) as usize;
            let hay: Vec<u8> = (0..len).map(|_| alphabet[(next() % 7) as usize]).collect();
            let want: Vec<bool> = refs
                .iter()
                .map(|(p, w)| naive(&hay, p.as_bytes(), *w))
                .collect();
            // Duplicate phrases share a pattern but keep their own owners.
            let got = stream(&set, &[&hay], nphr);
            assert_eq!(
                got,
                want,
                "round {round}: {refs:?} in {:?}",
                String::from_utf8_lossy(&hay)
            );
            let cut = (next() % (len as u64 + 1)) as usize;
            let cut2 = cut + (next() % ((len - cut) as u64 + 1)) as usize;
            assert_eq!(
                stream(&set, &[&hay[..cut], &hay[cut..cut2], &hay[cut2..]], nphr),
                want,
                "round {round} cuts {cut} {cut2}"
            );
            assert_eq!(value(&set, &hay, nphr), want, "round {round}: value");
        }
    }
}
