//! Literal phrases of one target: one Aho-Corasick DFA over all of them (lower-cased), driven
//! byte by byte with [`Automaton::next_state`] so that state carries across chunks.
//!
//! Streams (body text, raw body) are not walked from every byte. All phrases of a target are at
//! least `min_len` bytes long, so every occurrence covers a `q`-byte gram that starts at a stream
//! offset divisible by `stride`, at one of `stride` consecutive offsets inside the phrase, when
//! `q + stride - 1 <= min_len` (`q = 4` while the stride is below 8, then up to 8 bytes). Each
//! phrase picks the window of `stride` offsets whose grams look rarest in mail text (so
//! `mailbox is full` is found through `lbox`, not `mail`). A bitmap keyed by a hash of those
//! grams says whether a gram may belong to a phrase, and a rank table gives the in-phrase offsets
//! seen there. The scanner tests one gram every `stride` bytes, four to a round, and notes the
//! rounds with a bit set without leaving its loop (the hits of common grams are too many for a
//! branch per hit); then, for each noted sample in stream order, a second bitmap
//! keyed by a hash of each candidate phrase start's first bytes (up to 8) must agree, then the
//! phrases listed there are compared in place. A phrase that runs past the chunk end gets an
//! anchored automaton walk, kept (with its `StateID`) to go on with the next chunk. So the work
//! per byte is a table probe every `stride` bytes, the same for 5 rules or 5,000; the
//! comparisons only run where a phrase really may start.
//!
//! Values (header values, URLs, file names) are short and whole: they get a plain unanchored
//! walk, unless all of the target's phrases are at least [`SAMPLED_VALUE_MIN_LEN`] bytes: then
//! each value is scanned as a one-chunk stream (hundreds of phrases make a DFA far bigger than
//! the cache, which a walk visits at every byte).
//!
//! A stream's set may also hold *gate* literals of the target's regexes (`src/rules/line.rs`):
//! an occurrence of one is not a hit but is handed, with its stream offset, to the line stream,
//! which runs the regexes that need that literal on the line the occurrence is in. Those regexes
//! then cost no literal search of their own over the text: the sampled scan finds their literals
//! along with the phrases.

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

use crate::rules::file::MAX_PHRASE_BYTES;
use crate::rules::verdict::HitSet;
use crate::rules::RuleId;

const MAX_GRAM: usize = 8;
/// Gram length while the stride is below its cap.
const SHORT_GRAM: usize = 4;
const MAX_STRIDE: usize = 8;
/// The furthest into a phrase its sampled window may start.
const MAX_WINDOW_START: usize = 16;
/// Bytes of the stream kept from the previous chunk: enough for a gram that started there, the
/// candidate phrase start up to `MAX_WINDOW_START + MAX_STRIDE - 1` before it, and one byte
/// before that (word edges).
const HIST_BYTES: usize = MAX_GRAM + MAX_WINDOW_START + MAX_STRIDE;
/// Filter slots: the gram filter always has 2^16 (an 8 KiB bitmap: the body's and the raw body's
/// stay in L1 together; 2^17 measured more cache misses than the extra filter hits cost, and a
/// constant size lets the scan loop shift by a constant); the other bitmaps between 2^10 and
/// 2^16.
const MIN_FILTER_BITS: u32 = 10;
const MAX_FILTER_BITS: u32 = 16;
/// Words of the gram bitmap.
const FILTER_WORDS: usize = (1 << MAX_FILTER_BITS) / 64;
/// What the gram hash is shifted right by.
const FILTER_SHIFT: u32 = 64 - MAX_FILTER_BITS;
/// Second-filter slots: about 64 per phrase, between 2^10 and 2^16.
const PRE_SLOTS_PER_PHRASE: usize = 64;
/// ASCII letters differ from their capitals by 0x20: or-ing it in folds case (and merges a few
/// punctuation pairs, which only costs a false candidate).
const FOLD64: u64 = 0x2020_2020_2020_2020;

/// A value target's phrases all at least this long are matched by the sampled scan (the value as
/// a one-chunk stream: a probe every 5 bytes or more), not by an unanchored DFA walk, which
/// visits every byte and, with hundreds of phrases, a transition table far bigger than the
/// cache (200 generated `Subject` phrases: 0.4 MB, walked at about 3 ns a byte).
pub(crate) const SAMPLED_VALUE_MIN_LEN: usize = 8;

/// No gate literal ([`PhraseSet`]'s `gate_of`).
const NO_GATE: u32 = u32::MAX;

/// A gate literal's occurrence in a stream: its start's stream offset and its gate id (the
/// index the line stream's [`crate::rules::line::RegexGroup`] gave it).
pub(crate) type GateHit = (u64, u32);

/// One rule that owns a phrase.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owner {
    pub rule: RuleId,
    pub word_bounded: bool,
}

/// The filter over grams of one length (at most 8 bytes): a bitmap keyed by a hash of the folded
/// gram, and per set slot the in-phrase offsets of the grams seen there.
///
/// Grams shorter than 8 bytes whose phrase goes on for 8 bytes from the gram's start are also
/// entered as 8-byte grams in a second bitmap (`long_bits`), and their offsets kept apart
/// (`long`): where the sample's 8 bytes are at hand, a short gram's hit counts for them only when
/// the 8 bytes hash to a set bit too. A gram inside a common word (`ayme` of `payment`) hits all
/// over mail text, but the 8 bytes that run on into the phrase's next word rarely do.
#[derive(Debug)]
struct GramTable {
    mask: u64,
    /// One bit per slot: some phrase has a gram hashing there.
    bits: Box<[u64]>,
    /// Per word of `bits`: how many bits are set in the words before it.
    rank: Box<[u32]>,
    /// Per set slot, by rank: bit `o` set when some phrase has such a gram at offset `o`; `short`
    /// for grams checked by their own bytes only, `long` for those with 8 bytes in `long_bits`.
    offsets: Box<[Offsets]>,
    /// One bit per slot, as `bits`: some gram there is checked by its own bytes only (a `short`
    /// offset). Where it is clear, a hit with 8 bytes at hand is first checked in `long_bits`,
    /// before the rank and the offsets are looked up: with many phrases those tables are far
    /// bigger than the two bitmaps, and most hits of common grams end there.
    short_bits: Box<[u64]>,
    long_bits: Box<[u64]>,
    long_shift: u32,
}

/// Bits of slot index for a filter of about `slots` slots: the next power of two, between
/// 2^[`MIN_FILTER_BITS`] and 2^[`MAX_FILTER_BITS`].
fn filter_bits(slots: usize) -> u32 {
    slots
        .next_power_of_two()
        .trailing_zeros()
        .clamp(MIN_FILTER_BITS, MAX_FILTER_BITS)
}

/// A sampled gram of a phrase: its bytes, its in-phrase offset, and the 8 phrase bytes from its
/// start when the gram is shorter and they are there.
type Gram<'a> = (&'a [u8], usize, Option<&'a [u8]>);

/// In-phrase offsets of the grams hashing to one slot (bit `o` for offset `o`).
#[derive(Clone, Copy, Debug, Default)]
struct Offsets {
    short: u32,
    long: u32,
}

impl GramTable {
    /// `grams`: (gram bytes, in-phrase offset, the 8 phrase bytes from the gram's start when
    /// the gram is shorter and they are there), each gram `len` bytes.
    fn build(len: usize, grams: &[Gram<'_>]) -> GramTable {
        let mask = if len >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * len)) - 1
        };
        let shift = FILTER_SHIFT;
        // One size for all: the scan loop indexes it without a bounds check ([`skip_rounds`]).
        let mut bits = vec![0u64; FILTER_WORDS].into_boxed_slice();
        let slots: Vec<(usize, u32, bool)> = grams
            .iter()
            .map(|&(g, o, long)| {
                (
                    hash64((key_of(g) | FOLD64) & mask, shift),
                    1u32 << o,
                    long.is_some(),
                )
            })
            .collect();
        let longs: Vec<&[u8]> = grams.iter().filter_map(|&(_, _, l)| l).collect();
        let long_n = filter_bits(longs.len() * PRE_SLOTS_PER_PHRASE);
        let long_shift = 64 - long_n;
        let mut long_bits = vec![
            0u64;
            if longs.is_empty() {
                0
            } else {
                (1usize << long_n) / 64
            }
        ]
        .into_boxed_slice();
        for l in longs {
            let slot = hash64(key_of(l) | FOLD64, long_shift);
            if let Some(w) = long_bits.get_mut(slot / 64) {
                *w |= 1 << (slot % 64);
            }
        }
        let mut short_bits = vec![0u64; FILTER_WORDS].into_boxed_slice();
        for &(slot, _, long) in &slots {
            bits[slot / 64] |= 1 << (slot % 64);
            if !long {
                short_bits[slot / 64] |= 1 << (slot % 64);
            }
        }
        let mut rank = vec![0u32; bits.len()].into_boxed_slice();
        let mut seen = 0u32;
        for (r, w) in rank.iter_mut().zip(bits.iter()) {
            *r = seen;
            seen += w.count_ones();
        }
        let mut offsets = vec![Offsets::default(); seen as usize].into_boxed_slice();
        for (slot, bit, long) in slots {
            if let Some(m) = offsets.get_mut(slot_rank(&bits, &rank, slot)) {
                if long {
                    m.long |= bit;
                } else {
                    m.short |= bit;
                }
            }
        }
        GramTable {
            mask,
            bits,
            rank,
            offsets,
            short_bits,
            long_bits,
            long_shift,
        }
    }

    /// Rounds of four samples from `i` on (every `stride` bytes, while a round's
    /// [`ROUND_BYTES`] are in `chunk`) with a set bit, noted in `out` as (position, which
    /// samples: bit `k` for sample `k`) until it is full: where the next round starts and how
    /// many were noted (fewer than [`HIT_ROUNDS`]: the rounds ran out).
    #[inline(always)]
    fn hit_rounds(
        &self,
        chunk: &[u8],
        i: usize,
        stride: usize,
        out: &mut [(usize, u32); HIT_ROUNDS],
    ) -> (usize, usize) {
        let (bits, mask) = (&*self.bits, self.mask);
        match stride {
            1 => skip_rounds::<1>(bits, chunk, i, mask, out),
            2 => skip_rounds::<2>(bits, chunk, i, mask, out),
            3 => skip_rounds::<3>(bits, chunk, i, mask, out),
            4 => skip_rounds::<4>(bits, chunk, i, mask, out),
            5 => skip_rounds::<5>(bits, chunk, i, mask, out),
            6 => skip_rounds::<6>(bits, chunk, i, mask, out),
            7 => skip_rounds::<7>(bits, chunk, i, mask, out),
            _ => skip_rounds::<8>(bits, chunk, i, mask, out),
        }
    }

    /// The filter slot of a sample's 8 bytes.
    #[inline(always)]
    fn slot_of(&self, key: u64) -> usize {
        hash64((key | FOLD64) & self.mask, FILTER_SHIFT)
    }

    /// The first sample from `i` on (every `stride` bytes) whose 8 bytes are in `chunk` and
    /// whose gram's bit is set: its position, slot and key; else the first sample position
    /// without 8 bytes left. One sample at a time: for the last samples of a chunk, after
    /// [`GramTable::hit_rounds`].
    #[inline(always)]
    fn next_hit(
        &self,
        chunk: &[u8],
        mut i: usize,
        stride: usize,
    ) -> Result<(usize, usize, u64), usize> {
        let (bits, mask, shift) = (&*self.bits, self.mask, FILTER_SHIFT);
        // Samples below `limit` have their 8 bytes in the chunk.
        let limit = chunk.len().saturating_sub(7);
        while i < limit {
            let Some(eight) = chunk.get(i..).and_then(<[u8]>::first_chunk::<8>) else {
                break;
            };
            let key = u64::from_le_bytes(*eight);
            let slot = hash64((key | FOLD64) & mask, shift);
            if bits
                .get(slot / 64)
                .is_some_and(|w| w & (1 << (slot % 64)) != 0)
            {
                return Ok((i, slot, key));
            }
            i += stride;
        }
        Err(i)
    }

    /// The in-phrase offsets of the gram whose key is `key` (0 when none); `full` when `key`
    /// holds the 8 stream bytes from the sample (else the long grams are not checked).
    #[inline(always)]
    fn lookup(&self, key: u64, full: bool) -> u32 {
        let slot = hash64((key | FOLD64) & self.mask, FILTER_SHIFT);
        match self.bits.get(slot / 64) {
            Some(w) if w & (1 << (slot % 64)) != 0 => self.offsets_at(slot, key, full),
            _ => 0,
        }
    }

    #[cold]
    fn offsets_at(&self, slot: usize, key: u64, full: bool) -> u32 {
        let long_hit = || {
            let long = hash64(key | FOLD64, self.long_shift);
            self.long_bits
                .get(long / 64)
                .is_some_and(|w| w & (1 << (long % 64)) != 0)
        };
        let short_here = self
            .short_bits
            .get(slot / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0);
        if full && !short_here && !long_hit() {
            return 0;
        }
        let Some(m) = self.offsets.get(slot_rank(&self.bits, &self.rank, slot)) else {
            return 0;
        };
        if m.long == 0 || !full {
            return m.short | m.long;
        }
        if short_here && !long_hit() {
            return m.short;
        }
        m.short | m.long
    }
}

/// Bytes a round of [`skip_rounds`] reads: four samples `S <= MAX_STRIDE` apart, 8 bytes each.
const ROUND_BYTES: usize = 3 * MAX_STRIDE + 8;

/// Rounds [`GramTable::hit_rounds`] notes before their samples are checked: enough that the
/// probe loop rarely stops, few enough that the notes (512 bytes on the stack) stay in L1; a
/// power of two, so that indexing them needs no bounds check. 16 and 64 measured the same.
const HIT_ROUNDS: usize = 32;

/// [`GramTable::hit_rounds`] for stride `S`: rounds of four samples `S` bytes apart from `i`
/// on, each round's hits noted in `out` without a branch on them (a round without one is
/// written and then overwritten); it stops when `out` is full or the next round has no
/// [`ROUND_BYTES`] in `chunk` (the caller goes on one sample at a time from there). `S` a
/// constant so that the four loads come from one bounds-checked window.
#[inline(never)]
fn skip_rounds<const S: usize>(
    bits: &[u64],
    chunk: &[u8],
    mut i: usize,
    mask: u64,
    out: &mut [(usize, u32); HIT_ROUNDS],
) -> (usize, usize) {
    let Some(bits) = bits.first_chunk::<FILTER_WORDS>() else {
        return (i, 0);
    };
    let bit = |w: &[u8; ROUND_BYTES], at: usize| -> u64 {
        let key = w
            .get(at..)
            .and_then(<[u8]>::first_chunk::<8>)
            .map_or(0, |e| u64::from_le_bytes(*e));
        let slot = hash64((key | FOLD64) & mask, FILTER_SHIFT);
        bits[(slot / 64) % FILTER_WORDS] >> (slot % 64)
    };
    let mut n = 0;
    while let Some(w) = chunk.get(i..).and_then(<[u8]>::first_chunk::<ROUND_BYTES>) {
        let (a, b, c, d) = (bit(w, 0), bit(w, S), bit(w, 2 * S), bit(w, 3 * S));
        let found = (a & 1 | (b & 1) << 1 | (c & 1) << 2 | (d & 1) << 3) as u32;
        out[n % HIT_ROUNDS] = (i, found);
        n += usize::from(found != 0);
        i += 4 * S;
        if n == HIT_ROUNDS {
            break;
        }
    }
    (i, n)
}

/// Whether `here` is `phrase` (lower-cased, as long as `here`) in any ASCII case. Eight bytes at
/// a time folded first: a byte equal to a lower-cased one in any case is equal to it once both
/// have 0x20 or-ed in, so a folded word that differs rules the phrase out (phrases listed
/// together share their first bytes and mostly differ further on). The last word overlaps the
/// one before it (a phrase under 8 bytes is one short word), so a phrase is ruled out without a
/// byte loop; the exact comparison runs only when every folded word agrees.
#[inline]
fn eq_lower(here: &[u8], phrase: &[u8]) -> bool {
    if here.len() != phrase.len() {
        return false;
    }
    let folded_differ = |h: u64, p: u64| h | FOLD64 != p | FOLD64;
    let (mut h, mut p) = (here, phrase);
    while let (Some((hw, hr)), Some((pw, pr))) =
        (h.split_first_chunk::<8>(), p.split_first_chunk::<8>())
    {
        if folded_differ(u64::from_le_bytes(*hw), u64::from_le_bytes(*pw)) {
            return false;
        }
        (h, p) = (hr, pr);
    }
    if !h.is_empty() {
        let last = match (here.last_chunk::<8>(), phrase.last_chunk::<8>()) {
            (Some(hw), Some(pw)) => (u64::from_le_bytes(*hw), u64::from_le_bytes(*pw)),
            _ => (key_of(h), key_of(p)),
        };
        if folded_differ(last.0, last.1) {
            return false;
        }
    }
    here.eq_ignore_ascii_case(phrase)
}

/// The first (up to) 8 bytes of `b` as a little-endian key.
#[inline(always)]
fn key_of(b: &[u8]) -> u64 {
    match b.first_chunk::<8>() {
        Some(eight) => u64::from_le_bytes(*eight),
        None => b
            .iter()
            .enumerate()
            .fold(0u64, |k, (i, &c)| k | u64::from(c) << (8 * i)),
    }
}

/// All phrases of one target, compiled.
#[derive(Debug)]
pub(crate) struct PhraseSet {
    dfa: DFA,
    /// Per pattern: its length and the rules that own it.
    patterns: Vec<(usize, Vec<Owner>)>,
    /// Per pattern: the gate id when it is a gate literal too, else [`NO_GATE`].
    gate_of: Box<[u32]>,
    /// The automaton's start for anchored walks (a stream's candidates), when built with one.
    anchored_start: Option<aho_corasick::automaton::StateID>,
    /// Its start for unanchored walks (values not scanned sampled), when built with one.
    unanchored_start: Option<aho_corasick::automaton::StateID>,
    /// Gram length (at most 8) and sampling stride.
    pub gram: usize,
    pub stride: usize,
    table: GramTable,
    /// Second filter: one bit per hash of a phrase's first `pre_len` bytes (folded).
    pre_len: usize,
    pre_mask: u64,
    pre_bits: Box<[u64]>,
    pre_shift: u32,
    /// Per word of `pre_bits`: how many bits are set in the words before it.
    pre_rank: Box<[u32]>,
    /// Per set second-filter slot, by rank: the range of `pre_ids` listing its phrases.
    pre_lists: Box<[(u32, u32)]>,
    pre_ids: Box<[Listed]>,
    /// The phrases, lower-cased, back to back in `pre_ids` order (the phrases of one list are
    /// next to each other).
    text: Box<[u8]>,
}

/// A phrase in a second-filter list: its pattern id and where its lower-cased bytes are in
/// [`PhraseSet::text`].
#[derive(Clone, Copy, Debug)]
struct Listed {
    pid: u32,
    at: u32,
    len: u32,
}

/// Builds [`PhraseSet`]s.
#[derive(Default)]
pub(crate) struct PhraseSetBuilder {
    patterns: Vec<Vec<u8>>,
    owners: Vec<Vec<Owner>>,
    gates: Vec<u32>,
    index: std::collections::HashMap<Vec<u8>, usize>,
}

impl PhraseSetBuilder {
    pub fn add(&mut self, phrase: &str, owner: Owner) {
        let at = self.pattern(phrase.as_bytes());
        self.owners[at].push(owner);
    }

    /// Adds gate literal `gate` (a regex's required literal; see the module docs).
    pub fn add_gate(&mut self, literal: &[u8], gate: u32) {
        let at = self.pattern(literal);
        self.gates[at] = gate;
    }

    /// The index of `phrase` (lower-cased), added when new.
    fn pattern(&mut self, phrase: &[u8]) -> usize {
        let lower = phrase.to_ascii_lowercase();
        if let Some(&at) = self.index.get(&lower) {
            return at;
        }
        self.patterns.push(lower.clone());
        self.owners.push(Vec::new());
        self.gates.push(NO_GATE);
        self.index.insert(lower, self.patterns.len() - 1);
        self.patterns.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The length of the shortest phrase (`None` when there are none): it sets the scan's
    /// stride, so a gate literal shorter than that would make the scan slower.
    pub fn min_len(&self) -> Option<usize> {
        self.patterns.iter().map(Vec::len).min()
    }

    /// The set, its automaton with the starts `starts` asks for: a stream's set walks only
    /// anchored (from candidate starts), as does a value's that is scanned sampled
    /// ([`SAMPLED_VALUE_MIN_LEN`]); another value's only unanchored. A DFA with both starts has
    /// two transition tables (twice the memory, which the walks then miss in the cache).
    pub fn build(self, starts: StartKind) -> Result<PhraseSet, String> {
        let dfa = DFA::builder()
            .match_kind(MatchKind::Standard)
            .start_kind(starts)
            .prefilter(false)
            .build(&self.patterns)
            .map_err(|e| format!("phrase automaton: {e}"))?;
        let anchored_start = dfa.start_state(Anchored::Yes).ok();
        let unanchored_start = dfa.start_state(Anchored::No).ok();
        let min_len = self.patterns.iter().map(Vec::len).min().unwrap_or(1).max(1);
        let (gram, stride) = gram_and_stride(min_len);
        let mut grams = Vec::with_capacity(self.patterns.len() * stride);
        for p in &self.patterns {
            let a = best_window(p, gram, stride);
            for o in a..a + stride {
                let long = if gram < MAX_GRAM {
                    p.get(o..o + MAX_GRAM)
                } else {
                    None
                };
                grams.push((&p[o..o + gram], o, long));
            }
        }
        let table = GramTable::build(gram, &grams);
        let pre_len = min_len.min(8);
        let pre_mask = if pre_len >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * pre_len)) - 1
        };
        let pre_n = filter_bits(self.patterns.len() * PRE_SLOTS_PER_PHRASE);
        let pre_shift = 64 - pre_n;
        let mut pre_bits = vec![0u64; (1usize << pre_n) / 64].into_boxed_slice();
        let pre_slots: Vec<usize> = self
            .patterns
            .iter()
            .map(|p| hash64(prefix_key(p, pre_mask), pre_shift))
            .collect();
        for &slot in &pre_slots {
            pre_bits[slot / 64] |= 1 << (slot % 64);
        }
        let mut pre_rank = vec![0u32; pre_bits.len()].into_boxed_slice();
        let mut seen = 0u32;
        for (r, w) in pre_rank.iter_mut().zip(pre_bits.iter()) {
            *r = seen;
            seen += w.count_ones();
        }
        let mut by_rank: Vec<Vec<u32>> = vec![Vec::new(); seen as usize];
        for (pid, &slot) in pre_slots.iter().enumerate() {
            if let Some(list) = by_rank.get_mut(slot_rank(&pre_bits, &pre_rank, slot)) {
                list.push(pid as u32);
            }
        }
        let mut pre_lists = Vec::with_capacity(by_rank.len());
        let mut pre_ids = Vec::with_capacity(pre_slots.len());
        let mut text = Vec::new();
        for list in by_rank {
            pre_lists.push((pre_ids.len() as u32, list.len() as u32));
            for pid in list {
                let p = self
                    .patterns
                    .get(pid as usize)
                    .map_or(&[][..], Vec::as_slice);
                pre_ids.push(Listed {
                    pid,
                    at: text.len() as u32,
                    len: p.len() as u32,
                });
                text.extend_from_slice(p);
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
            gate_of: self.gates.into_boxed_slice(),
            anchored_start,
            unanchored_start,
            gram,
            stride,
            table,
            pre_len,
            pre_mask,
            pre_bits,
            pre_shift,
            pre_rank,
            pre_lists: pre_lists.into_boxed_slice(),
            pre_ids: pre_ids.into_boxed_slice(),
            text: text.into_boxed_slice(),
        })
    }
}

impl PhraseSet {
    /// Matches a whole, already lower-cased value: an unanchored walk, or, for a set built for
    /// the sampled scan ([`SAMPLED_VALUE_MIN_LEN`]), the value as a one-chunk stream.
    pub fn match_value(&self, lower: &[u8], hits: &mut HitSet) {
        let Some(mut sid) = self.unanchored_start else {
            let mut stream = PhraseStream::default();
            stream.feed(self, lower, hits);
            stream.finish(self, hits);
            return;
        };
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
    /// Gate literals found and not yet taken by the line stream ([`PhraseStream::take_gates`]):
    /// one or two per gate literal occurrence that ends in the chunk just fed (two when a
    /// phrase of the same start runs past the chunk and its walk finds the literal again; the
    /// line stream tries each regex once a line), so bounded by the chunk.
    gates: Vec<GateHit>,
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
        self.walks.retain_mut(|w| {
            walk(
                set,
                w,
                &[],
                chunk,
                offset,
                hits,
                &mut pending,
                &mut self.gates,
            )
        });

        let end = offset + chunk.len() as u64;
        let gram = set.gram as u64;
        let stride = set.stride as u64;
        let mut p = self.next_sample;
        // Samples whose gram starts in the kept history: at most a few, byte by byte.
        while p < offset && p + gram <= end {
            let mut key = 0u64;
            for j in 0..gram {
                let at = p + j;
                let b = if at < offset {
                    hist.get((at - base) as usize)
                } else {
                    chunk.get((at - offset) as usize)
                };
                key |= u64::from(b.copied().unwrap_or(0)) << (8 * j);
            }
            let m = set.table.lookup(key, false);
            if m != 0 {
                self.candidates(set, m, p, hist, base, chunk, hits, &mut pending);
            }
            p += stride;
        }
        // Samples inside the chunk: the hot loop, one probe per `stride` bytes, eight bytes read
        // whole while they are there (the table's mask keeps the gram); the last few samples
        // read what is left.
        if p >= offset {
            let mut i = (p - offset) as usize;
            let table = &set.table;
            // Whole rounds first: the probe loop notes the rounds with a set bit and goes on,
            // then their samples are checked in stream order. The loop has no branch that
            // depends on the text, and the checks' loads of different hits can overlap.
            let mut rounds = [(0usize, 0u32); HIT_ROUNDS];
            loop {
                let (next, n) = table.hit_rounds(chunk, i, set.stride, &mut rounds);
                for &(round, found) in rounds.iter().take(n) {
                    let mut found = found;
                    while found != 0 {
                        let at = round + found.trailing_zeros() as usize * set.stride;
                        found &= found - 1;
                        let Some(eight) = chunk.get(at..).and_then(<[u8]>::first_chunk::<8>) else {
                            continue;
                        };
                        let key = u64::from_le_bytes(*eight);
                        let m = table.offsets_at(table.slot_of(key), key, true);
                        if m != 0 {
                            self.candidates(
                                set,
                                m,
                                offset + at as u64,
                                hist,
                                base,
                                chunk,
                                hits,
                                &mut pending,
                            );
                        }
                    }
                }
                i = next;
                if n < HIT_ROUNDS {
                    break;
                }
            }
            loop {
                // The last samples with 8 bytes in the chunk, one at a time.
                let (at, slot, key) = match table.next_hit(chunk, i, set.stride) {
                    Ok(hit) => hit,
                    Err(end) => {
                        i = end;
                        break;
                    }
                };
                i = at;
                let m = table.offsets_at(slot, key, true);
                if m != 0 {
                    self.candidates(
                        set,
                        m,
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
            while let Some(rest) = chunk.get(i..i + set.gram) {
                let m = table.lookup(key_of(rest), false);
                if m != 0 {
                    self.candidates(
                        set,
                        m,
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
        self.gates.clear();
        self.hist_len = 0;
        self.offset = 0;
        self.next_sample = 0;
    }

    /// Moves the gate literals found so far to the end of `to` (see the module docs).
    pub fn take_gates(&mut self, to: &mut Vec<GateHit>) {
        to.append(&mut self.gates);
    }

    /// What [`PhraseStream::finish`] would add, without ending the stream.
    pub fn peek_end(&self, set: &PhraseSet, hits: &mut HitSet) {
        for &pid in &self.pending {
            hit_owners(set, pid, hits);
        }
    }

    /// A filter hit at stream offset `p` with in-phrase offsets `m`: check the phrase starts it
    /// implies.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn candidates(
        &mut self,
        set: &PhraseSet,
        mut m: u32,
        p: u64,
        hist: &[u8],
        base: u64,
        chunk: &[u8],
        hits: &mut HitSet,
        pending: &mut Vec<usize>,
    ) {
        let offset = self.offset;
        while m != 0 {
            let o = u64::from(m.trailing_zeros());
            m &= m - 1;
            let Some(start) = p.checked_sub(o) else {
                continue;
            };
            // The usual case: the phrase's first 8 bytes and the byte before it are in the chunk.
            // The second filter, then the phrases listed there compared in place; only those
            // running past the chunk need a walk.
            if let Some(s) = start.checked_sub(offset + 1).map(|s| s as usize + 1) {
                if let Some(head) = chunk.get(s..s + 8) {
                    let k = u64::from_le_bytes(head.try_into().unwrap_or([0; 8]));
                    let Some(ids) = set.pre_list(k) else {
                        continue;
                    };
                    let before_ok = !chunk.get(s - 1).copied().is_some_and(is_word);
                    let mut cut = false;
                    for l in ids {
                        let pid = l.pid as usize;
                        let Some(phrase) = set.text.get(l.at as usize..(l.at + l.len) as usize)
                        else {
                            continue;
                        };
                        match chunk.get(s..s + phrase.len()) {
                            Some(here) if eq_lower(here, phrase) => {
                                let next = chunk.get(s + phrase.len()).copied();
                                found(
                                    set,
                                    pid,
                                    start,
                                    before_ok,
                                    next,
                                    hits,
                                    pending,
                                    &mut self.gates,
                                );
                            }
                            Some(_) => {}
                            None => cut = true,
                        }
                    }
                    if !cut {
                        continue;
                    }
                }
            }
            // HIST_BYTES covers the gram, the window and one more byte, so `start - 1` is in the
            // history or the chunk.
            let byte_at = |at: u64| -> Option<u8> {
                if at >= offset {
                    chunk.get((at - offset) as usize).copied()
                } else {
                    at.checked_sub(base)
                        .and_then(|i| hist.get(i as usize).copied())
                }
            };
            // Second filter: the phrase's first bytes, when they are all here.
            let key = match (start.checked_sub(offset), start.checked_sub(base)) {
                (Some(s), _) if chunk.len() >= s as usize + 8 => {
                    let s = s as usize;
                    Some(u64::from_le_bytes(
                        chunk[s..s + 8].try_into().unwrap_or([0; 8]),
                    ))
                }
                (_, Some(_)) if start + set.pre_len as u64 <= offset + chunk.len() as u64 => {
                    let mut k = 0u64;
                    for j in 0..set.pre_len as u64 {
                        k |= u64::from(byte_at(start + j).unwrap_or(0)) << (8 * j);
                    }
                    Some(k)
                }
                _ => None,
            };
            if let Some(k) = key {
                if !set.pre_probe(k) {
                    continue;
                }
            }
            let before_ok = start == 0 || !byte_at(start - 1).is_some_and(is_word);
            let Some(state) = set.anchored_start else {
                continue;
            };
            let mut w = Walk {
                state,
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
            if walk(
                set,
                &mut w,
                first,
                second,
                start,
                hits,
                pending,
                &mut self.gates,
            ) {
                self.walks.push(w);
            }
        }
    }
}

impl PhraseSet {
    /// The phrases whose first bytes hash like those of `key` (None when there are none).
    #[inline(always)]
    fn pre_list(&self, key: u64) -> Option<&[Listed]> {
        let slot = hash64((key | FOLD64) & self.pre_mask, self.pre_shift);
        if self.pre_bits.get(slot / 64)? & (1 << (slot % 64)) == 0 {
            return None;
        }
        let &(from, n) = self
            .pre_lists
            .get(slot_rank(&self.pre_bits, &self.pre_rank, slot))?;
        self.pre_ids.get(from as usize..(from + n) as usize)
    }

    #[inline(always)]
    fn pre_probe(&self, key: u64) -> bool {
        let slot = hash64((key | FOLD64) & self.pre_mask, self.pre_shift);
        self.pre_bits[slot / 64] & (1 << (slot % 64)) != 0
    }
}

/// Walks `w` over `first` then `second`, whose first byte is at stream offset `pos`; false
/// when it died.
#[allow(clippy::too_many_arguments)]
fn walk(
    set: &PhraseSet,
    w: &mut Walk,
    first: &[u8],
    second: &[u8],
    pos: u64,
    hits: &mut HitSet,
    pending: &mut Vec<usize>,
    gates: &mut Vec<GateHit>,
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
                    push_gate(set, pid, w.start, gates);
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

/// Phrase `pid` occurred at stream offset `start`; `before_ok` says the byte before it is not
/// a word byte (or there is none), `next` is the byte after it when known.
#[allow(clippy::too_many_arguments)]
fn found(
    set: &PhraseSet,
    pid: usize,
    start: u64,
    before_ok: bool,
    next: Option<u8>,
    hits: &mut HitSet,
    pending: &mut Vec<usize>,
    gates: &mut Vec<GateHit>,
) {
    let Some((_, owners)) = set.patterns.get(pid) else {
        return;
    };
    push_gate(set, pid, start, gates);
    let mut word = false;
    for o in owners {
        if o.word_bounded {
            word = true;
        } else {
            hits.set(o.rule);
        }
    }
    if word && before_ok {
        match next {
            Some(b) if !is_word(b) => hit_word_owners(owners, hits),
            Some(_) => {}
            None if pending.len() < MAX_PHRASE_BYTES && !pending.contains(&pid) => {
                pending.push(pid)
            }
            None => {}
        }
    }
}

/// Pattern `pid` occurred at stream offset `start`: a gate hit when it is a gate literal.
#[inline]
fn push_gate(set: &PhraseSet, pid: usize, start: u64, gates: &mut Vec<GateHit>) {
    if let Some(&gate) = set.gate_of.get(pid) {
        if gate != NO_GATE {
            gates.push((start, gate));
        }
    }
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

/// Gram length and sampling stride for phrases of at least `min_len` bytes: every occurrence
/// must cover `stride` consecutive gram positions, so `gram + stride - 1 <= min_len`. Longer
/// grams are rarer in text (fewer false hits), a longer stride means fewer probes: short sets
/// use 4-byte grams, and once the stride is at its cap the rest of the length goes to the gram.
fn gram_and_stride(min_len: usize) -> (usize, usize) {
    if min_len >= SHORT_GRAM + MAX_STRIDE - 1 {
        return ((min_len + 1 - MAX_STRIDE).min(MAX_GRAM), MAX_STRIDE);
    }
    let gram = min_len.min(SHORT_GRAM);
    (gram, min_len - gram + 1)
}

/// The index of set filter slot `slot` among the set ones.
#[inline(always)]
fn slot_rank(bits: &[u64], rank: &[u32], slot: usize) -> usize {
    let w = slot / 64;
    let below = bits
        .get(w)
        .map_or(0, |b| (b & ((1u64 << (slot % 64)) - 1)).count_ones());
    rank.get(w).map_or(0, |r| *r as usize) + below as usize
}

/// Bytes by how common they are in mail text, most common first (a rough unigram model).
const COMMON_BYTES: &[u8] = b" etaoinsrhldcumfpgwyb.,vk-'\r\n0123456789:/=\"x>jq<z";
/// Words whose grams are everywhere in mail: a gram inside one is a poor filter.
const COMMON_WORDS: &str = " the and you your for that this with have not are will from our all \
can one more here now time mail email list please click information online line order \
would there their what about which when make like just know take people into year good some \
them see other than then look only come its over think also back after use two how work first \
well way even new want because any these give day most us is it in be to of on at by or as if \
http www com net html font size width height style color table nbsp align center border ";

/// How common a gram looks in mail text (lower is rarer).
pub(crate) fn gram_cost(g: &[u8]) -> u32 {
    let unigram: u32 = g
        .iter()
        .map(|&b| {
            let b = b.to_ascii_lowercase();
            let at = COMMON_BYTES
                .iter()
                .position(|&c| c == b)
                .unwrap_or(COMMON_BYTES.len());
            (COMMON_BYTES.len() - at) as u32
        })
        .sum();
    let in_word = memchr::memmem::find(COMMON_WORDS.as_bytes(), g).is_some();
    unigram + if in_word { 1000 } else { 0 }
}

/// What each byte of a window's start into its phrase adds to the window's cost. A filter hit
/// checks one phrase start per in-phrase offset seen at that gram: phrases that begin with the
/// same word share its grams at the same offsets, while a word further in sits at a different
/// offset in each phrase (after words of other lengths), so a hit there fans out to many starts.
/// (Measured on the bench's 1,000 generated three-word phrases over its messages: candidate
/// starts per pass about halved, with as many filter hits; fewer for the default rules too.)
const WINDOW_START_COST: u32 = 10;

/// The start of the `stride` consecutive gram offsets of `p` that look rarest, preferring
/// windows near the phrase start ([`WINDOW_START_COST`]).
fn best_window(p: &[u8], gram: usize, stride: usize) -> usize {
    let last = p
        .len()
        .saturating_sub(gram + stride - 1)
        .min(MAX_WINDOW_START);
    (0..=last)
        .min_by_key(|&a| {
            (a..a + stride)
                .map(|o| gram_cost(p.get(o..o + gram).unwrap_or(&[])))
                .sum::<u32>()
                + WINDOW_START_COST * a as u32
        })
        .unwrap_or(0)
}

fn prefix_key(p: &[u8], mask: u64) -> u64 {
    let k = p
        .iter()
        .take(8)
        .enumerate()
        .fold(0u64, |k, (i, &b)| k | u64::from(b) << (8 * i));
    (k | FOLD64) & mask
}

#[inline(always)]
fn hash64(key: u64, shift: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
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

    /// The folded eight-byte pre-test never rules out a real match, against the byte-wise
    /// comparison.
    #[test]
    fn eq_lower_matches_eq_ignore_ascii_case() {
        let rows: &[(&str, &[u8], &[u8])] = &[
            ("short_same", b"Viagra", b"viagra"),
            ("short_differs", b"viagrb", b"viagra"),
            ("eight_upper", b"PAYMENT ", b"payment "),
            (
                "long_mixed",
                b"Payment NOW free Money",
                b"payment now free money",
            ),
            (
                "differs_in_tail",
                b"payment now free monex",
                b"payment now free money",
            ),
            (
                "differs_in_second_word",
                b"payment nix free money",
                b"payment now free money",
            ),
            ("punct_folds_alike", b"pay@ent now", b"pay`ent now"),
            (
                "punct_folds_alike_long",
                b"payment now fre\x0b money",
                b"payment now fre+ money",
            ),
            ("length_differs", b"payment now", b"payment no"),
            ("under_eight_same", b"ViAgRa!", b"viagra!"),
            ("under_eight_differs_last", b"viagrx", b"viagra"),
            ("under_eight_differs_first", b"xiagra", b"viagra"),
            ("eight_and_one_differs_last", b"payment x", b"payment y"),
            ("tail_word_same", b"Payment Now Free", b"payment now free"),
            (
                "tail_differs_in_overlap_only",
                b"payment now frex",
                b"payment now free",
            ),
            (
                "tail_differs_before_overlap",
                b"payment Xow free",
                b"payment now free",
            ),
            (
                "tail_punct_folds_alike",
                b"payment now fre@",
                b"payment now fre`",
            ),
            (
                "high_bytes",
                b"caf\xc3\xa9 au lait!",
                b"caf\xc3\xa9 au lait!",
            ),
        ];
        for (row, here, phrase) in rows {
            let phrase = phrase.to_ascii_lowercase();
            assert_eq!(
                eq_lower(here, &phrase),
                here.eq_ignore_ascii_case(&phrase),
                "{row}"
            );
        }
    }

    /// The long-gram check before the rank look-up gives what the offsets alone give: for every
    /// set slot and many keys, [`GramTable::offsets_at`] against the offsets read the plain way.
    #[test]
    fn offsets_at_checks_long_grams_first_alike() {
        let phrases: &[&[u8]] = &[
            b"payment now free money",
            b"pay",
            b"payments",
            b"click here today",
            b"here",
            b"mailbox is full",
        ];
        let grams: Vec<Gram<'_>> = phrases
            .iter()
            .flat_map(|p| {
                (0..p.len().saturating_sub(3).min(4)).map(move |o| {
                    let long = p.get(o..o + MAX_GRAM);
                    (&p[o..o + 4], o, long)
                })
            })
            .collect();
        let table = GramTable::build(4, &grams);
        let plain = |slot: usize, key: u64, full: bool| -> u32 {
            let m = table.offsets[slot_rank(&table.bits, &table.rank, slot)];
            let long = hash64(key | FOLD64, table.long_shift);
            let long_set = table.long_bits[long / 64] >> (long % 64) & 1 == 1;
            if m.long == 0 || !full || long_set {
                m.short | m.long
            } else {
                m.short
            }
        };
        let mut keys: Vec<u64> = phrases
            .iter()
            .flat_map(|p| (0..p.len()).map(move |o| key_of(&p[o..])))
            .collect();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            keys.push(x);
        }
        let mut seen = 0;
        for key in keys {
            let slot = hash64((key | FOLD64) & table.mask, FILTER_SHIFT);
            if table.bits[slot / 64] >> (slot % 64) & 1 == 0 {
                continue;
            }
            seen += 1;
            for full in [false, true] {
                assert_eq!(
                    table.offsets_at(slot, key, full),
                    plain(slot, key, full),
                    "{key:016x} {full}"
                );
            }
        }
        assert!(seen >= phrases.len(), "{seen}");
    }

    fn build(phrases: &[(&str, bool)]) -> PhraseSet {
        build_with(phrases, StartKind::Both)
    }

    /// The set built with `starts` only: [`StartKind::Anchored`] makes `match_value` scan the
    /// value as a stream.
    fn build_with(phrases: &[(&str, bool)], starts: StartKind) -> PhraseSet {
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
        b.build(starts).expect("builds")
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

    /// `set` over `hay` finds `want`, fed whole, byte by byte, and cut in two at each position
    /// `split` accepts.
    fn assert_cuts(
        set: &PhraseSet,
        hay: &[u8],
        want: &[bool],
        row: &str,
        split: impl Fn(usize) -> bool,
    ) {
        let n = want.len();
        assert_eq!(stream(set, &[hay], n), want, "{row}: whole");
        let bytes: Vec<&[u8]> = hay.chunks(1).collect();
        assert_eq!(stream(set, &bytes, n), want, "{row}: byte by byte");
        for i in (0..=hay.len()).filter(|&i| split(i)) {
            assert_eq!(
                stream(set, &[&hay[..i], &hay[i..]], n),
                want,
                "{row}: split at {i}"
            );
        }
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
            assert_eq!(value(&set, hay, n), want, "{row}: value");
            let sampled = build_with(PHRASES, StartKind::Anchored);
            assert_eq!(value(&sampled, hay, n), want, "{row}: sampled value");
            assert_cuts(&set, hay, &want, row, |_| true);
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

    /// Short grams of long phrases are checked by 8 bytes too (a short phrase keeps the gram at
    /// 4 bytes): the phrase's first word alone, at every alignment, in any case, does not hit;
    /// the phrase does, whole, split anywhere and byte by byte.
    #[test]
    fn long_grams_gate_short_gram_hits() {
        let phrases: &[(&str, bool)] = &[
            ("viagra", false),
            ("payment now free", true),
            ("subscription money", false),
        ];
        let set = build(phrases);
        assert_eq!((set.gram, set.stride), (4, 3));
        assert!(!set.table.long_bits.is_empty());
        let rows: &[(&str, &[u8])] = &[
            (
                "words_alone",
                b"payment now, Payment NOW fre subscription, money",
            ),
            ("phrase_upper", b"xx PAYMENT NOW FREE yy"),
            ("phrase_in_word", b"xpayment now free"),
            ("second", b"a Subscription Money b"),
            ("both_at_end", b"viagra subscription moneypayment now free"),
        ];
        for (row, hay) in rows {
            for lead in 0..4 {
                let mut h = b"....".get(..lead).unwrap_or(&[]).to_vec();
                h.extend_from_slice(hay);
                let want: Vec<bool> = phrases
                    .iter()
                    .map(|(p, w)| naive(&h, p.as_bytes(), *w))
                    .collect();
                assert_cuts(&set, &h, &want, &format!("{row} lead {lead}"), |_| true);
            }
        }
    }

    /// The four-sample rounds of the probe loop, at every stride: a phrase at each offset of a
    /// long text (so at each sample of a round, and in the one-sample tail), found whole, byte
    /// by byte and split anywhere, and the text without it finds nothing.
    #[test]
    fn rounds_at_every_stride() {
        let source = "Quick brown foxes jump over lazy dogs";
        for len in [4, 5, 6, 7, 8, 9, 10, 11, 20] {
            let phrase = &source[6..6 + len];
            let set = build(&[(phrase, false), ("zzzz-decoy", false)]);
            let (_, stride) = gram_and_stride(len);
            let filler: Vec<u8> = b"the lazy river runs by; "
                .iter()
                .copied()
                .cycle()
                .take(3 * ROUND_BYTES)
                .collect();
            for at in (0..filler.len())
                .step_by(5)
                .chain([ROUND_BYTES - 1, ROUND_BYTES])
            {
                let mut hay = filler.clone();
                hay.splice(at..at, phrase.to_ascii_uppercase().bytes());
                let row = format!("len {len} stride {stride} at {at}");
                assert_cuts(&set, &hay, &[true, false], &row, |i| {
                    at % 15 == 0 || i % 7 == 0
                });
            }
            assert_eq!(stream(&set, &[&filler], 2), vec![false, false], "len {len}");
        }
    }

    /// More rounds with a set bit in one chunk than the probe loop notes at once (decoys that
    /// share the phrases' grams all along it): a phrase is found wherever it stands among
    /// them, whole, byte by byte and split, and the decoys alone find nothing.
    #[test]
    fn more_noted_rounds_than_fit() {
        let phrases = [("invoice attached", false), ("pay now", true)];
        let set = build(&phrases);
        let decoy: Vec<u8> = b"invoice attache, pay nowhere; invoices attach "
            .iter()
            .copied()
            .cycle()
            .take(40 * ROUND_BYTES)
            .collect();
        let mut rounds = [(0, 0); HIT_ROUNDS];
        let (_, noted) = set.table.hit_rounds(&decoy, 0, set.stride, &mut rounds);
        assert_eq!(noted, HIT_ROUNDS, "the decoys fill the notes");
        assert_eq!(stream(&set, &[&decoy], 2), vec![false, false]);
        for (i, (p, _)) in phrases.iter().enumerate() {
            for at in (0..decoy.len()).step_by(37) {
                let mut hay = decoy.clone();
                hay.splice(at..at, format!(" {} ", p.to_ascii_uppercase()).bytes());
                // Cutting a decoy word may make the other phrase too (`pay now| ...`).
                let want: Vec<bool> = phrases
                    .iter()
                    .map(|(q, w)| naive(&hay, q.as_bytes(), *w))
                    .collect();
                assert!(want[i], "{p} at {at}");
                let row = format!("{p} at {at}");
                assert_cuts(&set, &hay, &want, &row, |c| c % 101 == 0);
            }
        }
    }

    /// Long phrases sample a window deep inside them, so a candidate start can lie in the kept
    /// history: every split, and byte by byte.
    #[test]
    fn long_phrases_across_chunks() {
        let mut x: u64 = 0x1234_5678_9ABC_DEF1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let words: &[&str] = &["mail", "box", " ", "is", "full", "Zq", "-", "x9", "the"];
        for round in 0..60 {
            let phrases: Vec<(String, bool)> = (0..1 + next() % 4)
                .map(|_| {
                    let mut p = String::new();
                    while p.len() < 6 + (next() % 30) as usize {
                        p.push_str(words[(next() % words.len() as u64) as usize]);
                    }
                    (p, next() % 2 == 0)
                })
                .collect();
            let refs: Vec<(&str, bool)> = phrases.iter().map(|(p, w)| (p.as_str(), *w)).collect();
            let set = build(&refs);
            let n = refs.len();
            let mut hay = Vec::new();
            while hay.len() < 80 {
                if next() % 5 == 0 {
                    let (p, _) = &phrases[(next() % n as u64) as usize];
                    hay.extend(p.bytes().map(|b| {
                        if next() % 2 == 0 {
                            b.to_ascii_uppercase()
                        } else {
                            b
                        }
                    }));
                } else {
                    hay.extend_from_slice(words[(next() % words.len() as u64) as usize].as_bytes());
                }
            }
            let want: Vec<bool> = refs
                .iter()
                .map(|(p, w)| naive(&hay, p.as_bytes(), *w))
                .collect();
            let show = String::from_utf8_lossy(&hay);
            let row = format!("round {round}: {refs:?} {show:?}");
            assert_cuts(&set, &hay, &want, &row, |_| true);
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
            let sampled = build_with(&refs, StartKind::Anchored);
            assert_eq!(value(&sampled, &hay, nphr), want, "round {round}: sampled");
        }
    }
}
