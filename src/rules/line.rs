//! Regexes of one target.
//!
//! Streams are matched line by line: a line is the bytes up to `\n` without the `\n` and one
//! `\r` before it. A line longer than [`MAX_LINE_BYTES`] is examined in consecutive segments of
//! that length (DESIGN.md: the scanner caps how much of one line it examines). Only a partial
//! line is copied between chunks, and it is bounded by [`MAX_LINE_BYTES`].
//!
//! Most rules need a literal (`literal`): `(?i)\bwire\s+transfer` can only match a line that
//! holds `wire` or `transfer` (in any case). Such a rule runs alone, and only on the lines (or
//! values) where a literal search found one of its literals, and only while its rule has not hit
//! yet. The search runs over the lower-cased text (over a stream's lines, the folded text:
//! below): Teddy (SIMD) when the target has at most 64 literals, up to eight Teddy searchers
//! over groups of them for up to 512 (their matches merged), an Aho-Corasick automaton beyond.
//! Each literal is searched as its suffix from its rarest four-byte gram ([`needle`]; Teddy
//! tells literals apart by their first bytes, so `here=` searched as `ere=` no longer stops the
//! search at every `here`), and the rest of the literal (its head) is compared in place before
//! the regex runs. The search reports the leftmost-longest
//! needle and is restarted one byte after each start, so every start of every needle is seen
//! (needles that start the same way at the same place are prefixes of the longest one, which
//! stands for them).
//!
//! A stream target's lines are not lower-cased for the search but folded ([`push_folded`]: bit
//! `0x20` set in every byte, which lower-cases letters and merges a few other pairs of bytes),
//! and its needles, heads and further required strings are folded alike. That is half the
//! instructions of lower-casing and still lets through every line lower-casing would (a folded
//! byte is the folded lower-cased byte); the rare line let through only by a merged pair is
//! refused by the regex.
//!
//! In a stream target that has phrases, a rule whose required literals are all at least as long
//! as the shortest phrase is gated by the phrase scan instead (`src/rules/phrase.rs`): its
//! literals join the target's phrase set as *gate* literals, the scan hands each occurrence over
//! with its stream offset ([`LineStream::gates_mut`]), and the rule runs on the line (or segment)
//! the occurrence lies in. The scan samples the text every few bytes whatever it looks for, so
//! those rules add no pass over the text; the literal search only runs for the others.
//!
//! Rules without a usable literal share one `RegexSet`. Complete lines inside a chunk are first
//! tested together with one `is_match` over the run of lines (the set is compiled in multi-line
//! CRLF mode, so a match inside a line is a match in the run); only when that says yes are the
//! lines of the run matched one at a time. That is exact because line rules may not use `\A`,
//! `\z` or `(?-m)` (the compiler refuses them), so every anchor is a line anchor.
//!
//! Each pattern is compiled twice: multi-line, and with multi-line off for text holding no `\r`
//! or `\n` (there `^` and `$` can only match at the ends either way, and the engine can anchor
//! its search).

use aho_corasick::{packed, AhoCorasick, Input, MatchKind, Span};
use memchr::memchr;
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::rules::literal::{anchored_prefix, required_sets, required_sets_of};
use crate::rules::phrase::{gram_cost, GateHit};
use crate::rules::verdict::HitSet;
use crate::rules::RuleId;
use crate::swar::{eq_bytes, load, lower};

/// The longest line (or value) a regex examines at once, in bytes.
pub const MAX_LINE_BYTES: usize = 4096;
/// Compiled size limit of one rule regex and of a target's set.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const SET_SIZE_LIMIT: usize = 64 << 20;
/// A value group gates its regexes by literals only when at least this many have them: for a
/// few, one set over the short value costs less than the literal search.
const MIN_GATED_FOR_VALUES: usize = 4;
/// Most bytes of lines a [`LineBatch`] holds before it is matched (per copy: raw and lower-cased).
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// What a [`LineBatch`] reserves at its first line.
const BATCH_START_BYTES: usize = 4 * 1024;
const BATCH_START_LINES: usize = 64;
/// Bytes of a literal that the literal search tells literals apart by (Teddy's fingerprint).
const FINGERPRINT: usize = 4;
/// Complete lines are lower-cased for the literal search this many bytes at a time (at most;
/// blocks end at a line end).
const LOWER_BLOCK: usize = 16 * 1024;

/// Regexes of one target.
#[derive(Debug)]
pub(crate) struct RegexGroup {
    /// Regexes without a usable literal.
    rest: Option<Sets>,
    /// Value groups: regexes that need some short literal (`@`, `$`, `://`), each run alone
    /// when its literals are in the value.
    solo: Vec<Solo>,
    /// Regexes with literals, each alone.
    gated: Vec<Gated>,
    finder: Option<Finder>,
    /// A stream group: the literal search, heads and further sets work on folded text
    /// ([`push_folded`]) instead of lower-cased text (its needles, heads and sets are folded).
    fold: bool,
    /// Per needle: the `gated` regexes that may match where it occurs (those of its literals
    /// and of the needles it starts with, which occur there too), each with the head of its
    /// literal (the bytes before the needle) that must end where the needle starts.
    by_literal: Vec<Vec<Candidate>>,
    /// Per gate literal (by gate id): the `gated` regexes that need it (heads empty: the phrase
    /// scan finds the whole literal).
    by_gate: Vec<Vec<Candidate>>,
    /// The gate literals (lower-cased), by gate id: they go into the target's phrase set.
    gate_literals: Vec<Vec<u8>>,
    /// Header lines ([`RegexGroup::build_anchored`]): `gated` regexes that begin with `^` and a
    /// literal prefix (lower-cased), tested against each line's start in place of the literal
    /// search.
    anchored: Vec<(Box<[u8]>, u32)>,
    /// The [`start_key`] of every `anchored` prefix, as bits of [`key_bit`].
    anchored_keys: [u64; KEY_WORDS],
    /// The [`start_key`] of each `anchored` prefix, in order (`anchored` is sorted by it): a line
    /// start is compared with the prefixes of its own key only.
    prefix_keys: Vec<u64>,
    /// Bytes of the keys: the shortest anchored prefix's length (at most [`KEY_BYTES`]).
    key_len: usize,
    /// The first bytes of the `anchored` prefixes, in both cases, as bits (byte `b` is bit
    /// `b % 64` of word `b / 64`).
    first_bytes: [u64; 4],
}

/// Most bytes of a line's start that [`start_key`] reads.
const KEY_BYTES: usize = 8;
/// Words of the bitmap of anchored prefixes' keys (64 bits each).
const KEY_WORDS: usize = 16;

/// The first `len` bytes of `text` (at most [`KEY_BYTES`]) lower-cased, as a number (`None`
/// when it is shorter).
#[inline]
fn start_key(text: &[u8], len: usize) -> Option<u64> {
    let len = len.min(KEY_BYTES);
    if text.len() < len {
        return None;
    }
    let v = match text.first_chunk::<KEY_BYTES>() {
        Some(first) => u64::from_le_bytes(*first),
        None => {
            let mut b = [0u8; KEY_BYTES];
            for (slot, &c) in b.iter_mut().zip(text) {
                *slot = c;
            }
            u64::from_le_bytes(b)
        }
    };
    let keep = if len == KEY_BYTES {
        u64::MAX
    } else {
        (1u64 << (8 * len)) - 1
    };
    Some(lower(v & keep))
}

/// Whether `bytes` holds a `\r` or a `\n`, eight bytes at a time (for short text, where a
/// `memchr2` call costs more than the scan).
#[inline]
fn has_break_short(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let v = load(w);
        if eq_bytes(v, b'\r') | eq_bytes(v, b'\n') != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b == b'\r' || b == b'\n')
}

/// Which bit of the bitmap stands for a [`start_key`]: (index of the word, bit in it).
#[inline]
fn key_bit(key: u64) -> (usize, u32) {
    let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54;
    ((h >> 6) as usize % KEY_WORDS, (h & 63) as u32)
}

/// A gated regex that a needle lets through when `head` is right before it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    gated: u32,
    head: Box<[u8]>,
}

/// Regexes in one set.
#[derive(Debug)]
struct Sets {
    /// Multi-line (`^`/`$` also at `\r` and `\n`).
    multi: RegexSet,
    /// Multi-line off: for text without `\r` or `\n`.
    single: RegexSet,
    owners: Vec<RuleId>,
}

#[derive(Debug)]
struct Gated {
    multi: Regex,
    single: Regex,
    rule: RuleId,
    /// Further required sets (beyond the one searched for): each must have a string in the
    /// lower-cased line before the regex runs.
    also: Vec<Vec<memchr::memmem::Finder<'static>>>,
}

/// A value regex with checks: each set must have a string in the lower-cased value.
#[derive(Debug)]
struct Solo {
    multi: Regex,
    single: Regex,
    rule: RuleId,
    checks: Vec<Vec<memchr::memmem::Finder<'static>>>,
}

/// Most strings a set may have to serve as a check before a value regex (more cost more than
/// the regex).
const MAX_CHECK_STRINGS: usize = 3;

/// Finds the leftmost-longest literal at or after a position in lower-cased text.
#[derive(Debug)]
enum Finder {
    Packed(packed::Searcher),
    /// More literals than one Teddy searcher takes: several searchers over groups of at most
    /// [`TEDDY_GROUP`] of them (alike literals together), each literal named by its index in the
    /// whole list. Each group costs a pass of Teddy, still a few times cheaper a byte than the
    /// automaton (whose prefilter looks for rare bytes, which a hundred words leave few of).
    Groups(Vec<(packed::Searcher, Vec<usize>)>),
    Automaton(AhoCorasick),
}

/// Most literals one Teddy searcher takes (fat Teddy: 16 buckets of up to four), and so the
/// most in one group of [`Finder::Groups`]: more literals are split into the fewest groups of
/// about equal size. (On the bench's generator at 10,000 phrase and 1,000 regex rules, 90 body
/// literals: two fat groups of 45 took fewer instructions and branch misses than three of 30,
/// fat or slim, or six of 15.)
const TEDDY_GROUP: usize = 64;
/// Most groups of [`Finder::Groups`]; more literals than they hold go to the automaton.
const MAX_TEDDY_GROUPS: usize = 8;

/// The match each group of a [`Finder::Groups`] found last in the current haystack (start, end,
/// literal): a group is searched again only once the search has moved past its match. Kept in
/// [`Scratch`] and reset per haystack by clearing two bitmaps, not the matches.
#[derive(Debug, Default)]
struct Cursor {
    last: [(usize, usize, usize); MAX_TEDDY_GROUPS],
    /// Groups whose entry in `last` belongs to this haystack.
    known: u8,
    /// Groups that found nothing from some earlier start on (so nothing later either).
    spent: u8,
}

impl Cursor {
    /// Forgets the previous haystack's matches.
    #[inline]
    fn reset(&mut self) {
        self.known = 0;
        self.spent = 0;
    }
}

/// Buffers reused between calls: lower-cased (or folded) text for the literal search (at most
/// [`MAX_BATCH_BYTES`]), the regexes already tried on the current line (at most one entry
/// per regex), and the literal search's [`Cursor`].
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub lower: Vec<u8>,
    tried: Vec<u32>,
    cursor: Cursor,
}

/// Builds a one-regex set with the engine's options, to check one rule's pattern.
pub(crate) fn check_one(pattern: &str, line_rule: bool) -> Result<(), String> {
    if line_rule {
        if let Some(what) = absolute_anchor(pattern) {
            return Err(format!(
                "{what} is not allowed in a line rule: lines are matched in runs; use ^ and $"
            ));
        }
    }
    builder(&[pattern])
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|e| {
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
}

fn builder(patterns: &[&str]) -> RegexSetBuilder {
    let mut b = RegexSetBuilder::new(patterns);
    // Rules see bytes in any charset: ASCII classes by default (`(?u)` turns Unicode on).
    b.unicode(false).multi_line(true).crlf(true);
    b
}

/// `\A`, `\z` or a flag group turning multi-line off: anchors that a run of lines would break.
fn absolute_anchor(pattern: &str) -> Option<&'static str> {
    let b = pattern.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                match b.get(i + 1) {
                    Some(b'A') => return Some("\\A"),
                    Some(b'z') => return Some("\\z"),
                    _ => {}
                }
                i += 2;
            }
            b'(' if b.get(i + 1) == Some(&b'?') => {
                let flags = &b[i + 2..];
                let end = flags
                    .iter()
                    .position(|&c| c == b':' || c == b')')
                    .unwrap_or(flags.len());
                let flags = &flags[..end];
                if let Some(neg) = flags.iter().position(|&c| c == b'-') {
                    if flags[neg..].contains(&b'm') {
                        return Some("(?-m)");
                    }
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

/// A Teddy searcher (leftmost-longest) over `literals`, when the machine and the count allow.
fn teddy<'a>(literals: impl IntoIterator<Item = &'a Vec<u8>>) -> Option<packed::Searcher> {
    packed::Config::new()
        .match_kind(packed::MatchKind::LeftmostLongest)
        .builder()
        .extend(literals)
        .build()
}

impl Finder {
    /// Teddy for up to [`TEDDY_GROUP`] literals, groups of Teddy searchers for up to
    /// [`MAX_TEDDY_GROUPS`] times as many, the automaton beyond (or where Teddy is unavailable).
    fn build(literals: &[Vec<u8>]) -> Result<Finder, String> {
        let teddy = if literals.len() <= TEDDY_GROUP {
            teddy(literals.iter()).map(Finder::Packed)
        } else if literals.len() <= TEDDY_GROUP * MAX_TEDDY_GROUPS {
            Finder::groups(literals, TEDDY_GROUP)
        } else {
            None
        };
        match teddy {
            Some(f) => Ok(f),
            None => Finder::automaton(literals),
        }
    }

    /// [`Finder::Groups`] of at most `most` literals each (at most [`MAX_TEDDY_GROUPS`] of
    /// them), in as few groups of about equal size as that allows; literals that sort together
    /// share a group.
    fn groups(literals: &[Vec<u8>], most: usize) -> Option<Finder> {
        let count = literals.len().div_ceil(most.max(1)).max(1);
        if count > MAX_TEDDY_GROUPS {
            return None;
        }
        let mut order: Vec<usize> = (0..literals.len()).collect();
        order.sort_by(|&a, &b| literals[a].cmp(&literals[b]));
        let size = literals.len().div_ceil(count).max(1);
        let groups: Option<Vec<_>> = order
            .chunks(size)
            .map(|ids| {
                teddy(ids.iter().filter_map(|&i| literals.get(i))).map(|s| (s, ids.to_vec()))
            })
            .collect();
        groups.map(Finder::Groups)
    }

    fn automaton(literals: &[Vec<u8>]) -> Result<Finder, String> {
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(literals)
            .map(Finder::Automaton)
            .map_err(|e| format!("literal automaton: {e}"))
    }

    /// Every start of every literal in `hay`, in order, as (start, end, literal): the
    /// leftmost-longest literal, then the search again from one byte after its start (literals
    /// that start where a longer one does are its prefixes, and it stands for them). `cursor`
    /// carries what the groups of [`Finder::Groups`] found between the steps.
    #[inline]
    fn starts<'a>(&'a self, cursor: &'a mut Cursor, hay: &'a [u8]) -> Starts<'a> {
        cursor.reset();
        Starts {
            finder: self,
            cursor,
            hay,
            from: 0,
        }
    }

    /// (start, end, literal) of the leftmost-longest literal starting at or after `from`.
    /// `cur` carries what the groups found between the calls of one search over `hay` (reset
    /// for each haystack, and `from` only grows within it: [`Finder::starts`]).
    #[inline(always)]
    fn find_at(&self, cur: &mut Cursor, hay: &[u8], from: usize) -> Option<(usize, usize, usize)> {
        if from > hay.len() {
            return None;
        }
        let m = match self {
            Finder::Packed(p) => p.find_in(hay, Span::from(from..hay.len()))?,
            Finder::Automaton(a) => a.find(Input::new(hay).span(from..hay.len()))?,
            Finder::Groups(groups) => return Finder::find_in_groups(groups, cur, hay, from),
        };
        Some((m.start(), m.end(), m.pattern().as_usize()))
    }

    /// [`Finder::find_at`] over [`Finder::Groups`]: the leftmost of the groups' next matches,
    /// the longest of those that start there (a literal that starts where a longer one does is
    /// its prefix, and the longer one stands for it, as in one searcher). Not inlined, so that
    /// the one-searcher path stays small enough to be.
    #[inline(never)]
    fn find_in_groups(
        groups: &[(packed::Searcher, Vec<usize>)],
        cur: &mut Cursor,
        hay: &[u8],
        from: usize,
    ) -> Option<(usize, usize, usize)> {
        let mut best: Option<(usize, usize, usize)> = None;
        for (g, ((searcher, ids), last)) in groups.iter().zip(cur.last.iter_mut()).enumerate() {
            let bit = 1u8 << g;
            if cur.spent & bit != 0 {
                continue;
            }
            if cur.known & bit == 0 || last.0 < from {
                let found = searcher
                    .find_in(hay, Span::from(from..hay.len()))
                    .and_then(|m| Some((m.start(), m.end(), *ids.get(m.pattern().as_usize())?)));
                match found {
                    Some(m) => {
                        *last = m;
                        cur.known |= bit;
                    }
                    None => {
                        cur.spent |= bit;
                        continue;
                    }
                }
            }
            let m = *last;
            if best.map_or(true, |b| m.0 < b.0 || (m.0 == b.0 && m.1 > b.1)) {
                best = Some(m);
            }
        }
        best
    }
}

/// The search of [`Finder::starts`].
struct Starts<'a> {
    finder: &'a Finder,
    cursor: &'a mut Cursor,
    hay: &'a [u8],
    from: usize,
}

impl Iterator for Starts<'_> {
    type Item = (usize, usize, usize);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let m = self.finder.find_at(self.cursor, self.hay, self.from)?;
        self.from = m.0 + 1;
        Some(m)
    }
}

/// Appends `bytes` to `out` lower-cased (ASCII), in one pass that the compiler vectorizes (a
/// copy and then a pass over 64-bit words ran at about a twentieth of its speed).
#[inline]
pub(crate) fn push_lower(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend(bytes.iter().map(u8::to_ascii_lowercase));
}

/// Appends `bytes` to `out` folded: bit `0x20` set in every byte. Folding maps each upper-case
/// letter to its lower-case one as lower-casing does, and also merges a few other pairs of bytes
/// (`@` and `` ` ``, `_` and DEL, a control byte and the one `0x20` above it, ...), so that
/// `fold(lower(b)) == fold(b)`: where the lower-cased text holds a lower-cased literal, the
/// folded text holds the folded literal. The literal search over it is a filter that lets
/// through every line lower-casing would (and rarely one more, which the regex then refuses).
/// It costs half as many instructions as [`push_lower`] (one OR a byte, no compare and add).
#[inline]
pub(crate) fn push_folded(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend(bytes.iter().map(|&b| fold(b)));
}

/// A byte folded ([`push_folded`]).
#[inline(always)]
fn fold(b: u8) -> u8 {
    b | 0x20
}

/// What the literal search looks for in place of required literal `lit`: its suffix from the
/// gram of [`FINGERPRINT`] bytes that looks rarest in mail text. Teddy tells literals apart by
/// their first bytes, so `here=` is searched as `ere=` and the common `here` does not stop it
/// at every occurrence; a suffix of a required string is required too, so the gate still lets
/// through every line the regex can match.
fn needle(lit: &[u8]) -> &[u8] {
    let last = lit.len().saturating_sub(FINGERPRINT);
    let start = (0..=last)
        .min_by_key(|&k| gram_cost(lit.get(k..(k + FINGERPRINT).min(lit.len())).unwrap_or(&[])))
        .unwrap_or(0);
    lit.get(start..).unwrap_or(lit)
}

/// Which of a regex's required sets (at least one) the literal search looks for: the one whose
/// needles look rarest in mail text (the sum of their fingerprints' [`gram_cost`], a needle
/// shorter than the fingerprint counted as if padded with the commonest byte), the first of equal
/// ones. The others are checked in the line ([`Gated::also`]). In `(?i)\bclick\s+\d+\s+money\b`
/// the search looks for `oney`, not for `lick` (a gram of the common word `click`).
fn searched_set(sets: &[Vec<Vec<u8>>]) -> usize {
    let cost = |set: &Vec<Vec<u8>>| -> u32 {
        set.iter()
            .map(|l| {
                let n = needle(l);
                let fp = n.get(..FINGERPRINT).unwrap_or(n);
                gram_cost(fp) + SHORT_NEEDLE_COST * (FINGERPRINT - fp.len()) as u32
            })
            .sum()
    };
    (0..sets.len()).min_by_key(|&i| cost(&sets[i])).unwrap_or(0)
}

/// Which of a regex's required sets the phrase scan can gate: the one [`searched_set`] would
/// pick among those whose strings are all at least `min` bytes (and [`FINGERPRINT`]) long and
/// within one line; `None` when there is none.
fn gate_set(sets: &[Vec<Vec<u8>>], min: usize) -> Option<usize> {
    let min = min.max(FINGERPRINT);
    let fits = |set: &Vec<Vec<u8>>| {
        set.iter()
            .all(|l| l.len() >= min && !l.contains(&b'\n') && !l.contains(&b'\r'))
    };
    let eligible: Vec<usize> = (0..sets.len()).filter(|&i| fits(&sets[i])).collect();
    let subset: Vec<Vec<Vec<u8>>> = eligible.iter().map(|&i| sets[i].clone()).collect();
    eligible.get(searched_set(&subset)).copied()
}

/// What a needle byte short of [`FINGERPRINT`] adds to its cost in [`searched_set`] (the cost
/// of the commonest byte).
const SHORT_NEEDLE_COST: u32 = 50;

/// Substring finders for the strings of a set.
fn finders(set: &[Vec<u8>]) -> Vec<memchr::memmem::Finder<'static>> {
    set.iter()
        .map(|l| memchr::memmem::Finder::new(l).into_owned())
        .collect()
}

/// `bytes` folded ([`push_folded`]) when `yes`, else as they are.
fn folded_if(yes: bool, bytes: &[u8]) -> Vec<u8> {
    if !yes {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len());
    push_folded(&mut out, bytes);
    out
}

/// Whether every set has a string in `lower`.
fn all_present(sets: &[Vec<memchr::memmem::Finder<'static>>], lower: &[u8]) -> bool {
    sets.iter()
        .all(|set| set.iter().any(|f| f.find(lower).is_some()))
}

/// Whether `text` needs the multi-line variant.
#[inline]
fn has_break(text: &[u8]) -> bool {
    memchr::memchr2(b'\r', b'\n', text).is_some()
}

impl Sets {
    fn build(patterns: &[(String, RuleId)]) -> Result<Sets, String> {
        let sources: Vec<&str> = patterns.iter().map(|(p, _)| p.as_str()).collect();
        let set = |multi: bool| {
            builder(&sources)
                .multi_line(multi)
                .size_limit(SET_SIZE_LIMIT)
                .build()
                .map_err(|e| e.to_string())
        };
        Ok(Sets {
            multi: set(true)?,
            single: set(false)?,
            owners: patterns.iter().map(|(_, r)| *r).collect(),
        })
    }

    fn match_text(&self, text: &[u8], hits: &mut HitSet) {
        let set = if has_break(text) {
            &self.multi
        } else {
            &self.single
        };
        if set.is_match(text) {
            for i in set.matches(text).iter() {
                if let Some(&r) = self.owners.get(i) {
                    hits.set(r);
                }
            }
        }
    }
}

impl RegexGroup {
    /// Builds the group of a stream target (`lines`) or of a value target.
    pub fn build(patterns: &[(String, RuleId)], lines: bool) -> Result<RegexGroup, String> {
        RegexGroup::build_with(patterns, lines, false, None)
    }

    /// Builds the group of a stream target whose phrase scan finds literals of at least
    /// `min_gate` bytes (`None`: the target has no phrases): a rule with a required set of such
    /// literals is gated by them ([`RegexGroup::gate_literals`], to be added to the phrases).
    pub fn build_stream(
        patterns: &[(String, RuleId)],
        min_gate: Option<usize>,
    ) -> Result<RegexGroup, String> {
        RegexGroup::build_with(patterns, true, false, min_gate)
    }

    /// The gate literals, by gate id ([`RegexGroup::build_stream`]).
    pub fn gate_literals(&self) -> &[Vec<u8>] {
        &self.gate_literals
    }

    /// Builds the group of the header lines (`any_header`): a value group whose regexes that
    /// begin with `^` and a literal are tested against each line's start
    /// ([`RegexGroup::match_header_line`]) instead of waiting for the literal search.
    pub fn build_anchored(patterns: &[(String, RuleId)]) -> Result<RegexGroup, String> {
        RegexGroup::build_with(patterns, false, true, None)
    }

    fn build_with(
        patterns: &[(String, RuleId)],
        lines: bool,
        anchor: bool,
        min_gate: Option<usize>,
    ) -> Result<RegexGroup, String> {
        let mut rest = Vec::new();
        let mut gated = Vec::new();
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut own: Vec<Vec<Candidate>> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let required: Vec<Vec<Vec<Vec<u8>>>> =
            patterns.iter().map(|(p, _)| required_sets(p)).collect();
        let gate =
            lines || required.iter().filter(|r| !r.is_empty()).count() >= MIN_GATED_FOR_VALUES;
        let mut solo = Vec::new();
        let mut anchored = Vec::new();
        let mut by_gate: Vec<Vec<Candidate>> = Vec::new();
        let mut gate_literals: Vec<Vec<u8>> = Vec::new();
        let mut gate_index = std::collections::HashMap::new();
        for ((p, rule), mut sets) in patterns.iter().zip(required) {
            let one = |multi: bool| {
                RegexBuilder::new(p)
                    .unicode(false)
                    .multi_line(multi)
                    .crlf(true)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| e.to_string())
            };
            if !gate || sets.is_empty() {
                let checks: Vec<Vec<memchr::memmem::Finder<'static>>> = if lines {
                    Vec::new()
                } else {
                    required_sets_of(p, 1)
                        .into_iter()
                        .filter(|set| set.len() <= MAX_CHECK_STRINGS)
                        .map(|set| finders(&set))
                        .collect()
                };
                if checks.is_empty() {
                    rest.push((p.clone(), *rule));
                } else {
                    solo.push(Solo {
                        multi: one(true)?,
                        single: one(false)?,
                        rule: *rule,
                        checks,
                    });
                }
                continue;
            }
            let by_scan = min_gate
                .filter(|_| lines)
                .and_then(|min| gate_set(&sets, min));
            let lits = sets.remove(by_scan.unwrap_or_else(|| searched_set(&sets)));
            let g = gated.len() as u32;
            gated.push(Gated {
                multi: one(true)?,
                single: one(false)?,
                rule: *rule,
                also: sets
                    .iter()
                    .map(|set| {
                        let set: Vec<Vec<u8>> = set.iter().map(|l| folded_if(lines, l)).collect();
                        finders(&set)
                    })
                    .collect(),
            });
            if anchor && !lines {
                if let Some(prefix) = anchored_prefix(p) {
                    anchored.push((prefix.into_boxed_slice(), g));
                    continue;
                }
            }
            if by_scan.is_some() {
                for l in lits {
                    let id = *gate_index.entry(l.clone()).or_insert_with(|| {
                        gate_literals.push(l);
                        by_gate.push(Vec::new());
                        gate_literals.len() - 1
                    });
                    by_gate[id].push(Candidate {
                        gated: g,
                        head: Box::default(),
                    });
                }
                continue;
            }
            for l in lits {
                // The needle is chosen on the lower-cased literal; a stream group's needle and
                // head are then folded.
                let split = l.len() - needle(&l).len();
                let l = folded_if(lines, &l);
                let (head, n) = l.split_at(split);
                let head: Box<[u8]> = head.into();
                let at = *index.entry(n.to_vec()).or_insert_with(|| {
                    literals.push(n.to_vec());
                    own.push(Vec::new());
                    literals.len() - 1
                });
                own[at].push(Candidate { gated: g, head });
            }
        }
        let mut by_literal = own.clone();
        for (i, long) in literals.iter().enumerate() {
            for (j, short) in literals.iter().enumerate() {
                if i != j && long.starts_with(short) {
                    let theirs = own[j].clone();
                    by_literal[i].extend(theirs);
                }
            }
            by_literal[i].sort_unstable();
            by_literal[i].dedup();
        }
        let key_len = anchored
            .iter()
            .map(|(p, _)| p.len())
            .min()
            .unwrap_or(0)
            .min(KEY_BYTES);
        let key_of = |p: &[u8]| start_key(p, key_len).unwrap_or(0);
        anchored.sort_by_key(|(p, _)| key_of(p));
        let prefix_keys: Vec<u64> = anchored.iter().map(|(p, _)| key_of(p)).collect();
        Ok(RegexGroup {
            rest: (!rest.is_empty()).then(|| Sets::build(&rest)).transpose()?,
            solo,
            finder: (!literals.is_empty())
                .then(|| Finder::build(&literals))
                .transpose()?,
            gated,
            fold: lines,
            by_literal,
            by_gate,
            gate_literals,
            key_len,
            anchored_keys: prefix_keys.iter().fold([0; KEY_WORDS], |mut bits, &k| {
                let (w, b) = key_bit(k);
                bits[w] |= 1 << b;
                bits
            }),
            first_bytes: anchored
                .iter()
                .filter_map(|(p, _)| p.first())
                .flat_map(|&b| [b, b.to_ascii_uppercase()])
                .fold([0; 4], |mut bits, b| {
                    bits[usize::from(b >> 6)] |= 1 << (b & 63);
                    bits
                }),
            prefix_keys,
            anchored,
        })
    }

    /// Appends `bytes` to `out` as the literal search and the checks read them: folded
    /// ([`push_folded`]) for a stream group, else lower-cased.
    #[inline]
    fn push_key(&self, out: &mut Vec<u8>, bytes: &[u8]) {
        if self.fold {
            push_folded(out, bytes);
        } else {
            push_lower(out, bytes);
        }
    }

    /// Whether values must be lower-cased for this group (for the literal search or checks).
    pub fn needs_lower(&self) -> bool {
        self.finder.is_some() || !self.solo.is_empty()
    }

    /// Whether [`RegexGroup::match_ungated`] reads the lower-cased value (for checks).
    pub fn ungated_need_lower(&self) -> bool {
        !self.solo.is_empty()
    }

    /// Whether some regexes wait for a literal search ([`RegexGroup::match_batch`]).
    pub fn is_gated(&self) -> bool {
        self.finder.is_some()
    }

    /// Matches one value (its first [`MAX_LINE_BYTES`]).
    pub fn match_value(&self, value: &[u8], scratch: &mut Scratch, hits: &mut HitSet) {
        let value = &value[..value.len().min(MAX_LINE_BYTES)];
        scratch.lower.clear();
        if self.needs_lower() {
            self.push_key(&mut scratch.lower, value);
        }
        self.match_lowered(value, scratch, hits);
    }

    /// Matches one value (at most [`MAX_LINE_BYTES`]) whose lower-cased copy (folded for a
    /// stream group: [`RegexGroup::push_key`]) is already in `scratch.lower` (it may be left
    /// empty when [`RegexGroup::needs_lower`] is false).
    pub fn match_lowered(&self, value: &[u8], scratch: &mut Scratch, hits: &mut HitSet) {
        self.match_ungated(value, &scratch.lower, hits);
        let Some(finder) = &self.finder else {
            return;
        };
        let Scratch {
            lower,
            tried,
            cursor,
        } = scratch;
        tried.clear();
        for (start, _, lit) in finder.starts(cursor, lower) {
            self.try_line(lit, start, value, lower, tried, hits);
        }
    }

    /// The ungated and anchored regexes against one value (at most [`MAX_LINE_BYTES`]); the
    /// others are left to [`RegexGroup::match_batch`].
    pub fn match_ungated(&self, value: &[u8], lower: &[u8], hits: &mut HitSet) {
        if let Some(rest) = &self.rest {
            rest.match_text(value, hits);
        }
        for s in &self.solo {
            if !hits.get(s.rule) && all_present(&s.checks, lower) {
                let r = if has_break(value) {
                    &s.multi
                } else {
                    &s.single
                };
                if r.is_match(value) {
                    hits.set(s.rule);
                }
            }
        }
        self.match_anchored(value, hits);
    }

    /// Whether some anchored prefix may start `text`: its first bytes have a key's bit.
    #[inline]
    fn key_hit(&self, text: &[u8]) -> bool {
        start_key(text, self.key_len).is_some_and(|k| self.key_bit(k))
    }

    /// Whether `key`'s bit is set in the bitmap of the anchored prefixes' keys.
    #[inline]
    fn key_bit(&self, key: u64) -> bool {
        let (w, b) = key_bit(key);
        self.anchored_keys
            .get(w)
            .is_some_and(|bits| bits >> b & 1 == 1)
    }

    /// Whether the group has regexes for [`RegexGroup::match_ungated`] or the literal search
    /// (beyond the anchored ones).
    pub fn needs_line(&self) -> bool {
        self.rest.is_some() || !self.solo.is_empty() || self.finder.is_some()
    }

    /// The anchored regexes against the header line `name: value` (its first
    /// [`MAX_LINE_BYTES`], as [`LineBatch::push`] keeps it), copied into `scratch` only when
    /// its first bytes, or those after a line break in it, have a key's bit.
    pub fn match_header_line(
        &self,
        name: &[u8],
        value: &[u8],
        scratch: &mut Scratch,
        hits: &mut HitSet,
    ) {
        if self.anchored.is_empty() {
            return;
        }
        // Most names start with a byte no prefix starts with: then the line's key (which for a
        // name shorter than the key is put together byte by byte) is not needed.
        let head_hit = || {
            let mut short = [0u8; KEY_BYTES];
            let head: &[u8] = match name.get(..KEY_BYTES) {
                Some(first) => first,
                None => {
                    let mut n = 0;
                    let joined = name.iter().chain(b": ").chain(value);
                    for (slot, &b) in short.iter_mut().zip(joined) {
                        *slot = b;
                        n += 1;
                    }
                    &short[..n]
                }
            };
            self.key_hit(head)
        };
        // A prefix may start the line, or follow a line break in it.
        let first = name.first().copied().unwrap_or(b':');
        let maybe = (self.first_bytes[usize::from(first >> 6)] >> (first & 63) & 1 == 1
            && head_hit())
            || has_break_short(name)
            || memchr::memchr2_iter(b'\r', b'\n', value)
                .any(|at| self.key_hit(value.get(at + 1..).unwrap_or(&[])));
        if !maybe {
            return;
        }
        self.match_anchored_line(&[name, b": ", value], scratch, hits);
    }

    /// [`RegexGroup::match_anchored`] of the line made of `parts`, copied into `scratch` (few
    /// header lines get here).
    #[cold]
    fn match_anchored_line(&self, parts: &[&[u8]; 3], scratch: &mut Scratch, hits: &mut HitSet) {
        let mut line = std::mem::take(&mut scratch.lower);
        line.clear();
        push_joined(&mut line, parts);
        self.match_anchored(&line, hits);
        scratch.lower = line;
    }

    /// The anchored regexes against one value: each only when its prefix starts the value or
    /// follows a line break in it (where a multi-line `^` matches too).
    fn match_anchored(&self, value: &[u8], hits: &mut HitSet) {
        if self.anchored.is_empty() {
            return;
        }
        let breaks = memchr::memchr2_iter(b'\r', b'\n', value);
        let multi = breaks.clone().next().is_some();
        for at in std::iter::once(0).chain(breaks.map(|at| at + 1)) {
            let text = value.get(at..).unwrap_or(&[]);
            let Some(key) = start_key(text, self.key_len) else {
                continue;
            };
            if !self.key_bit(key) {
                continue;
            }
            // Only the prefixes with this key (`anchored` is sorted by key) can start here.
            let first = self.prefix_keys.partition_point(|&k| k < key);
            let same_key = self.anchored.iter().zip(&self.prefix_keys).skip(first);
            for ((prefix, g), _) in same_key.take_while(|&(_, &k)| k == key) {
                let Some(re) = self.gated.get(*g as usize) else {
                    continue;
                };
                let starts_here = text
                    .get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(prefix));
                if hits.get(re.rule) || !starts_here {
                    continue;
                }
                let r = if multi { &re.multi } else { &re.single };
                if r.is_match(value) {
                    hits.set(re.rule);
                }
            }
        }
    }

    /// The gated regexes against every line of `batch`: one literal search over all of them
    /// (lower-cased into `scratch` first).
    pub fn match_batch(&self, batch: &LineBatch, scratch: &mut Scratch, hits: &mut HitSet) {
        let Some(finder) = &self.finder else {
            return;
        };
        if batch.is_empty() || self.all_gated_hit(hits) {
            return;
        }
        let Scratch {
            lower,
            tried,
            cursor,
        } = scratch;
        lower.clear();
        push_lower(lower, &batch.raw);
        tried.clear();
        let mut line = 0;
        for (start, end, lit) in finder.starts(cursor, lower) {
            let line_start = |i: usize| if i == 0 { 0 } else { batch.ends[i - 1] };
            if batch.ends.get(line).is_some_and(|&e| start >= e) {
                while batch.ends.get(line).is_some_and(|&e| start >= e) {
                    line += 1;
                }
                tried.clear();
            }
            let (Some(&line_end), ls) = (batch.ends.get(line), line_start(line)) else {
                break;
            };
            if end > line_end {
                continue;
            }
            let (raw, low) = (&batch.raw[ls..line_end], &lower[ls..line_end]);
            self.try_line(lit, start - ls, raw, low, tried, hits);
        }
        tried.clear();
    }

    /// One line of a stream (a trailing `\r` dropped) or one segment of a long line, which
    /// starts at stream offset `at` (`gates`: the gate hits so far, in order).
    fn match_one(
        &self,
        text: &[u8],
        strip_cr: bool,
        at: u64,
        gates: &[GateHit],
        scratch: &mut Scratch,
        hits: &mut HitSet,
    ) {
        let text = if strip_cr {
            text.strip_suffix(b"\r").unwrap_or(text)
        } else {
            text
        };
        self.match_value(text, scratch, hits);
        let from = gates.partition_point(|&(s, _)| s < at);
        let end = at + text.len() as u64;
        let here = &gates[from..from + gates[from..].partition_point(|&(s, _)| s < end)];
        if here.is_empty() {
            return;
        }
        if self.finder.is_none() {
            // `match_value` left the lines' regexes untried (and `lower` empty when it needed
            // no copy).
            scratch.tried.clear();
        }
        if !self.needs_lower() {
            // `match_value` copied nothing.
            self.push_key(&mut scratch.lower, text);
        }
        for &(s, g) in here {
            let start = (s - at) as usize;
            if start + self.gate_len(g) <= text.len() {
                let cands = self.by_gate.get(g as usize).map_or(&[][..], Vec::as_slice);
                self.try_cands(cands, start, text, &scratch.lower, &mut scratch.tried, hits);
            }
        }
    }

    /// The length of gate literal `g`.
    fn gate_len(&self, g: u32) -> usize {
        self.gate_literals
            .get(g as usize)
            .map_or(usize::MAX / 2, Vec::len)
    }

    /// `lines` is whole lines, each ending in `\n` and at most [`MAX_LINE_BYTES`] long
    /// before it, starting at stream offset `at` (`gates`: the gate hits so far, in order).
    fn match_run(
        &self,
        lines: &[u8],
        at: u64,
        gates: &[GateHit],
        scratch: &mut Scratch,
        hits: &mut HitSet,
    ) {
        if lines.is_empty() {
            return;
        }
        if let Some(rest) = &self.rest {
            if rest.multi.is_match(lines) {
                let mut start = 0;
                for nl in memchr::memchr_iter(b'\n', lines) {
                    let line = &lines[start..nl];
                    rest.match_text(line.strip_suffix(b"\r").unwrap_or(line), hits);
                    start = nl + 1;
                }
            }
        }
        if self.finder.is_none() && self.by_gate.is_empty() {
            return;
        }
        let mut rest = lines;
        let mut block_at = at;
        let mut gates = &gates[gates.partition_point(|&(s, _)| s < at)..];
        while !rest.is_empty() {
            if self.all_gated_hit(hits) {
                return;
            }
            let block = match rest.get(..LOWER_BLOCK) {
                Some(b) => match memchr::memrchr(b'\n', b) {
                    Some(nl) => &b[..nl + 1],
                    None => b,
                },
                None => rest,
            };
            rest = &rest[block.len()..];
            let (this_at, end_at) = (block_at, block_at + block.len() as u64);
            block_at = end_at;
            let (here, later) = gates.split_at(gates.partition_point(|&(s, _)| s < end_at));
            gates = later;
            if self.finder.is_none() && here.is_empty() {
                continue;
            }
            let Scratch {
                lower,
                tried,
                cursor,
            } = &mut *scratch;
            lower.clear();
            self.push_key(lower, block);
            let lower = &*lower;
            // The literal search's starts and the gate hits, merged in order of their starts.
            let mut found = self
                .finder
                .as_ref()
                .map(|f| f.starts(cursor, lower))
                .into_iter()
                .flatten()
                .peekable();
            let mut gated = here
                .iter()
                .map(|&(s, g)| {
                    let start = (s - this_at) as usize;
                    (start, start + self.gate_len(g), g)
                })
                .peekable();
            // The line of the last literal found: [line_start, line_end).
            let mut line_start = 0;
            let mut line_end = 0;
            loop {
                let gate_first = match (found.peek(), gated.peek()) {
                    (None, None) => break,
                    (Some(f), Some(g)) => g.0 < f.0,
                    (None, Some(_)) => true,
                    (Some(_), None) => false,
                };
                let next = if gate_first {
                    gated
                        .next()
                        .map(|(s, e, g)| (s, e, self.by_gate.get(g as usize)))
                } else {
                    found
                        .next()
                        .map(|(s, e, lit)| (s, e, self.by_literal.get(lit)))
                };
                let Some((start, end, cands)) = next else {
                    break;
                };
                if start >= line_end {
                    line_start = memchr::memrchr(b'\n', &block[line_end..start])
                        .map_or(line_end, |nl| line_end + nl + 1);
                    line_end = memchr(b'\n', &block[start..]).map_or(block.len(), |nl| start + nl);
                    tried.clear();
                }
                let Some(cands) = cands.filter(|_| end <= line_end) else {
                    continue;
                };
                let line = &block[line_start..line_end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let low = &lower[line_start..line_start + line.len()];
                self.try_cands(cands, start - line_start, line, low, tried, hits);
            }
        }
    }

    /// Runs the regexes that needle `lit`, found at `at` in `line`, lets through (`lower` is the
    /// line lower-cased, or folded for a stream group): each once per line, when its literal's
    /// head ends at `at` and its further required sets are in the line too.
    fn try_line(
        &self,
        lit: usize,
        at: usize,
        line: &[u8],
        lower: &[u8],
        tried: &mut Vec<u32>,
        hits: &mut HitSet,
    ) {
        if let Some(cands) = self.by_literal.get(lit) {
            self.try_cands(cands, at, line, lower, tried, hits);
        }
    }

    /// [`RegexGroup::try_line`] for the candidates `cands` of a literal found at `at`.
    fn try_cands(
        &self,
        cands: &[Candidate],
        at: usize,
        line: &[u8],
        lower: &[u8],
        tried: &mut Vec<u32>,
        hits: &mut HitSet,
    ) {
        let before = lower.get(..at).unwrap_or(&[]);
        // Whether the line holds a line break, looked at once a regex is about to run.
        let mut multi = None;
        for c in cands {
            let g = c.gated;
            let Some(re) = self.gated.get(g as usize) else {
                continue;
            };
            // Most heads are empty (a gate literal, a needle that is its whole literal): no
            // comparison call for those.
            let head_ok = c.head.is_empty() || before.ends_with(&c.head);
            if hits.get(re.rule) || tried.contains(&g) || !head_ok {
                continue;
            }
            tried.push(g);
            if !all_present(&re.also, lower) {
                continue;
            }
            let r = if *multi.get_or_insert_with(|| has_break(line)) {
                &re.multi
            } else {
                &re.single
            };
            if r.is_match(line) {
                hits.set(re.rule);
            }
        }
    }

    fn all_gated_hit(&self, hits: &HitSet) -> bool {
        self.gated.iter().all(|g| hits.get(g.rule))
    }
}

/// Appends the line made of `parts`, its first [`MAX_LINE_BYTES`], to `out`: one reservation,
/// and each part whole when the line fits (the loop over a fixed number of parts unrolls, so a
/// short constant part is stored in place).
#[inline]
fn push_joined<const N: usize>(out: &mut Vec<u8>, parts: &[&[u8]; N]) {
    let whole = parts.iter().map(|p| p.len()).sum::<usize>();
    let len = whole.min(MAX_LINE_BYTES);
    out.reserve(len);
    if whole == len {
        for p in parts {
            out.extend_from_slice(p);
        }
    } else {
        let mut left = len;
        for p in parts {
            let take = p.len().min(left);
            out.extend_from_slice(&p[..take]);
            left -= take;
        }
    }
}

/// Separate lines (header lines for `any_header`) collected so that one literal search covers
/// them all: each line's bytes back to back, with where each ends (the search lower-cases them
/// all at once). Bounded by [`MAX_BATCH_BYTES`]: [`LineBatch::push`] refuses a line that does
/// not fit, and the owner matches and clears the batch first.
#[derive(Debug, Default)]
pub(crate) struct LineBatch {
    raw: Vec<u8>,
    /// End of each line.
    ends: Vec<usize>,
}

impl LineBatch {
    /// Appends the line made of `parts` (its first [`MAX_LINE_BYTES`]) and returns it, or
    /// `None` when the batch has no room for it.
    pub fn push<const N: usize>(&mut self, parts: &[&[u8]; N]) -> Option<&[u8]> {
        let len = parts
            .iter()
            .map(|p| p.len())
            .sum::<usize>()
            .min(MAX_LINE_BYTES);
        if self.raw.len() + len > MAX_BATCH_BYTES {
            return None;
        }
        if self.ends.is_empty() {
            // A header block is a few KiB: one allocation each instead of a dozen doublings.
            self.raw.reserve(BATCH_START_BYTES.max(len));
            self.ends.reserve(BATCH_START_LINES);
        }
        let start = self.raw.len();
        push_joined(&mut self.raw, parts);
        self.ends.push(self.raw.len());
        Some(&self.raw[start..])
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn clear(&mut self) {
        self.raw.clear();
        self.ends.clear();
    }
}

/// Per-stream line state.
#[derive(Debug, Default)]
pub(crate) struct LineStream {
    partial: Vec<u8>,
    scratch: Scratch,
    /// Stream bytes fed so far (the offset of the next chunk's first byte).
    offset: u64,
    /// Gate hits from the phrase scan ([`LineStream::gates_mut`]) not yet behind a matched line:
    /// those of the current chunk and of the partial line (no gate literal holds a line break),
    /// so bounded by the chunk and [`MAX_LINE_BYTES`]. In order of their starts between chunks
    /// ([`LineStream::feed`] sorts what the scan added just before it).
    gates: Vec<GateHit>,
}

impl LineStream {
    /// Where the phrase scan puts its gate hits before each chunk is fed here.
    pub fn gates_mut(&mut self) -> &mut Vec<GateHit> {
        &mut self.gates
    }

    /// Feeds the next chunk of the stream.
    pub fn feed(&mut self, group: &RegexGroup, chunk: &[u8], hits: &mut HitSet) {
        // The scan reports a walk's hits after the sampled ones: put them in order.
        self.gates.sort_unstable();
        let mut rest = chunk;
        let mut at = self.offset;
        self.offset += chunk.len() as u64;
        if !self.partial.is_empty() {
            match memchr(b'\n', rest) {
                Some(nl) => {
                    self.extend_partial(group, &rest[..nl], at, hits);
                    let line_at = at + nl as u64 - self.partial.len() as u64;
                    group.match_one(
                        &self.partial,
                        true,
                        line_at,
                        &self.gates,
                        &mut self.scratch,
                        hits,
                    );
                    self.partial.clear();
                    rest = &rest[nl + 1..];
                    at += nl as u64 + 1;
                }
                None => {
                    self.extend_partial(group, rest, at, hits);
                    self.drop_matched_gates();
                    return;
                }
            }
        }
        let complete = match memchr::memrchr(b'\n', rest) {
            Some(nl) => nl + 1,
            None => 0,
        };
        let (lines, tail) = rest.split_at(complete);
        match_run_of_lines(group, lines, at, &self.gates, &mut self.scratch, hits);
        self.extend_partial(group, tail, at + complete as u64, hits);
        self.drop_matched_gates();
    }

    /// The stream ended: the partial line is the last line. The state is reset.
    pub fn finish(&mut self, group: &RegexGroup, hits: &mut HitSet) {
        if !self.partial.is_empty() {
            let at = self.offset - self.partial.len() as u64;
            group.match_one(
                &self.partial,
                true,
                at,
                &self.gates,
                &mut self.scratch,
                hits,
            );
            self.partial.clear();
        }
        self.gates.clear();
        self.offset = 0;
    }

    /// What [`LineStream::finish`] would add, without ending the stream.
    pub fn peek_end(&self, group: &RegexGroup, hits: &mut HitSet) {
        if !self.partial.is_empty() {
            let at = self.offset - self.partial.len() as u64;
            group.match_one(
                &self.partial,
                true,
                at,
                &self.gates,
                &mut Scratch::default(),
                hits,
            );
        }
    }

    /// Forgets the gate hits before the partial line: their lines have been matched.
    fn drop_matched_gates(&mut self) {
        let from = self.offset - self.partial.len() as u64;
        self.gates.retain(|&(s, _)| s >= from);
    }

    /// Appends bytes of the current line (no `\n` in `more`, whose first byte is at stream
    /// offset `at`), matching each full segment once the line grows past it.
    fn extend_partial(
        &mut self,
        group: &RegexGroup,
        mut more: &[u8],
        mut at: u64,
        hits: &mut HitSet,
    ) {
        while !more.is_empty() {
            if self.partial.len() == MAX_LINE_BYTES {
                let seg_at = at - MAX_LINE_BYTES as u64;
                group.match_one(
                    &self.partial,
                    false,
                    seg_at,
                    &self.gates,
                    &mut self.scratch,
                    hits,
                );
                self.partial.clear();
            }
            let room = MAX_LINE_BYTES - self.partial.len();
            let take = room.min(more.len());
            self.partial.extend_from_slice(&more[..take]);
            more = &more[take..];
            at += take as u64;
        }
    }
}

/// `lines` is whole lines, each ending in `\n`. Runs of lines no longer than
/// [`MAX_LINE_BYTES`] go to [`RegexGroup::match_run`] whole; longer lines go in segments. A
/// window of `MAX_LINE_BYTES + 1` bytes holding a `\n` ends only short lines, so the search
/// jumps to its last `\n`.
fn match_run_of_lines(
    group: &RegexGroup,
    lines: &[u8],
    at: u64,
    gates: &[GateHit],
    scratch: &mut Scratch,
    hits: &mut HitSet,
) {
    let mut run_start = 0;
    let mut line_start = 0;
    while line_start < lines.len() {
        let window_end = (line_start + MAX_LINE_BYTES + 1).min(lines.len());
        match memchr::memrchr(b'\n', &lines[line_start..window_end]) {
            Some(nl) => line_start += nl + 1,
            None => {
                // A line longer than MAX_LINE_BYTES starts here.
                let nl =
                    memchr(b'\n', &lines[window_end..]).map_or(lines.len(), |i| window_end + i);
                let (run, line) = (&lines[run_start..line_start], &lines[line_start..nl]);
                group.match_run(run, at + run_start as u64, gates, scratch, hits);
                match_long_line(group, line, at + line_start as u64, gates, scratch, hits);
                line_start = (nl + 1).min(lines.len());
                run_start = line_start;
            }
        }
    }
    let run = &lines[run_start..line_start];
    group.match_run(run, at + run_start as u64, gates, scratch, hits);
}

/// A line longer than [`MAX_LINE_BYTES`]: full segments as they are, the `\r` stripped from the
/// last one only (as the partial-line path does).
fn match_long_line(
    group: &RegexGroup,
    line: &[u8],
    at: u64,
    gates: &[GateHit],
    scratch: &mut Scratch,
    hits: &mut HitSet,
) {
    let mut segs = line.chunks(MAX_LINE_BYTES).peekable();
    let mut seg_at = at;
    while let Some(seg) = segs.next() {
        group.match_one(seg, segs.peek().is_none(), seg_at, gates, scratch, hits);
        seg_at += seg.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(patterns: &[&str]) -> RegexGroup {
        let p: Vec<(String, RuleId)> = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), RuleId(i as u32)))
            .collect();
        RegexGroup::build(&p, true).expect("builds")
    }

    fn run(g: &RegexGroup, chunks: &[&[u8]], n: usize) -> Vec<bool> {
        let mut hits = HitSet::new(n);
        let mut s = LineStream::default();
        for c in chunks {
            s.feed(g, c, &mut hits);
        }
        s.finish(g, &mut hits);
        (0..n).map(|i| hits.get(RuleId(i as u32))).collect()
    }

    /// A pattern compiled alone, under the engine's flags.
    fn oracle_regex(p: &str) -> regex::bytes::Regex {
        regex::bytes::RegexBuilder::new(p)
            .unicode(false)
            .multi_line(true)
            .crlf(true)
            .build()
            .expect("oracle regex")
    }

    /// The oracle: split into lines and segments the slow way, match each line alone.
    fn naive(patterns: &[&str], hay: &[u8]) -> Vec<bool> {
        let res: Vec<regex::bytes::Regex> = patterns.iter().map(|p| oracle_regex(p)).collect();
        let mut out = vec![false; patterns.len()];
        let mut lines: Vec<&[u8]> = hay.split(|&b| b == b'\n').collect();
        if hay.ends_with(b"\n") || hay.is_empty() {
            lines.pop();
        }
        for line in lines {
            let segs: Vec<&[u8]> = if line.is_empty() {
                vec![line]
            } else {
                line.chunks(MAX_LINE_BYTES).collect()
            };
            let last = segs.len() - 1;
            for (k, seg) in segs.into_iter().enumerate() {
                let seg = if k == last {
                    seg.strip_suffix(b"\r").unwrap_or(seg)
                } else {
                    seg
                };
                for (i, r) in res.iter().enumerate() {
                    out[i] |= r.is_match(seg);
                }
            }
        }
        out
    }

    const PATTERNS: &[&str] = &[
        r"(?i)^subject: free",
        r"money\s+back$",
        r"^$",
        r"\bwin\b",
        r"a[^x]+b",
        r"^x{3}$",
    ];

    #[test]
    fn lines_match_the_oracle_at_every_split() {
        let long_line = format!(
            "{}win{}\r\n",
            "y".repeat(MAX_LINE_BYTES - 2),
            "z".repeat(10)
        );
        let exact = format!("{}\n{}", "q".repeat(MAX_LINE_BYTES), "xxx");
        let hays: Vec<(&str, Vec<u8>)> = vec![
            ("empty", b"".to_vec()),
            ("one_line_no_nl", b"Subject: FREE stuff".to_vec()),
            ("crlf_lines", b"hello\r\nmoney back\r\n\r\nwin\r\n".to_vec()),
            ("not_across_lines", b"a\nb\nmoney\nback\n".to_vec()),
            ("anchor_inside_run", b"zz\nxxx\nyy\n".to_vec()),
            ("long_line", long_line.into_bytes()),
            ("exact_segment", exact.into_bytes()),
        ];
        let g = group(PATTERNS);
        let n = PATTERNS.len();
        for (row, hay) in &hays {
            let want = naive(PATTERNS, hay);
            assert_eq!(run(&g, &[hay], n), want, "{row}: whole");
            let cuts: Vec<usize> = if hay.len() > 200 {
                (0..=hay.len())
                    .step_by(97)
                    .chain([MAX_LINE_BYTES - 1, MAX_LINE_BYTES, MAX_LINE_BYTES + 1])
                    .filter(|&c| c <= hay.len())
                    .collect()
            } else {
                let bytes: Vec<&[u8]> = hay.chunks(1).collect();
                assert_eq!(run(&g, &bytes, n), want, "{row}: byte by byte");
                (0..=hay.len()).collect()
            };
            for i in cuts {
                assert_eq!(
                    run(&g, &[&hay[..i], &hay[i..]], n),
                    want,
                    "{row}: split at {i}"
                );
            }
        }
    }

    /// Gated and ungated patterns over random lines of literal-ish pieces, with `\r` inside
    /// and at the end of lines, checked whole, byte by byte and at two random cuts.
    #[test]
    fn random_lines_against_the_oracle() {
        const RANDOM_PATTERNS: &[&str] = &[
            r"(?i)\bfree\s+money\b",
            r"^Total:\s*\d+$",
            r"money$",
            r"(?i)^re:",
            r"(?i)(viagra|cialis)",
            r"fre+",
            r"^$",
            r"x\r?y",
            r"(?i)MoNeY=[0-9a-f]{2}",
        ];
        let pieces: &[&[u8]] = &[
            b"free", b" ", b"money", b"MONEY", b"\r\n", b"\n", b"\r", b"Total:", b"42", b"Re:",
            b"viagra", b"CIALIS", b"x", b"y", b"=ab", b"fre",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let g = group(RANDOM_PATTERNS);
        let n = RANDOM_PATTERNS.len();
        for round in 0..300 {
            let len = (next() % 24) as usize;
            let hay: Vec<u8> = (0..len)
                .flat_map(|_| pieces[(next() % pieces.len() as u64) as usize].to_vec())
                .collect();
            let want = naive(RANDOM_PATTERNS, &hay);
            let show = String::from_utf8_lossy(&hay);
            assert_eq!(run(&g, &[&hay], n), want, "round {round}: {show:?}");
            let bytes: Vec<&[u8]> = hay.chunks(1).collect();
            assert_eq!(run(&g, &bytes, n), want, "round {round} bytes: {show:?}");
            let a = (next() % (hay.len() as u64 + 1)) as usize;
            let b = a + (next() % ((hay.len() - a) as u64 + 1)) as usize;
            assert_eq!(
                run(&g, &[&hay[..a], &hay[a..b], &hay[b..]], n),
                want,
                "round {round} cuts {a} {b}: {show:?}"
            );
        }
    }

    #[test]
    fn value_groups_match_like_one_set() {
        // Enough literal-bearing regexes to gate, plus ungated ones; values with and without
        // line breaks (multi-line anchors).
        let patterns: Vec<(String, RuleId)> = [
            r"(?i)^win\b",
            r"(?i)prize$",
            r"(?i)\bfree money\b",
            r"^\d+$",
            r"lottery",
            r"(?i)claim.*now",
        ]
        .iter()
        .enumerate()
        .map(|(i, p)| (p.to_string(), RuleId(i as u32)))
        .collect();
        let values: &[&[u8]] = &[
            b"WIN a prize",
            b"you win\nPrize",
            b"x\rwin big",
            b"Free Money now",
            b"claim your lottery NOW",
            b"12345",
            b"12\n34",
            b"",
            b"nothing here",
        ];
        // Three regexes with literals stay in the set; five are gated.
        for (gate, patterns) in [(false, &patterns[..4]), (true, &patterns[..])] {
            let g = RegexGroup::build(patterns, false).expect("builds");
            assert_eq!(g.is_gated(), gate);
            for v in values {
                let mut hits = HitSet::new(patterns.len());
                g.match_value(v, &mut Scratch::default(), &mut hits);
                let got: Vec<bool> = (0..patterns.len())
                    .map(|i| hits.get(RuleId(i as u32)))
                    .collect();
                let want: Vec<bool> = patterns
                    .iter()
                    .map(|(p, _)| {
                        regex::bytes::RegexBuilder::new(p)
                            .unicode(false)
                            .multi_line(true)
                            .crlf(true)
                            .build()
                            .expect("oracle")
                            .is_match(v)
                    })
                    .collect();
                assert_eq!(got, want, "gate {gate}: {:?}", String::from_utf8_lossy(v));
            }
        }
    }

    /// A kept line is its parts joined, cut at [`MAX_LINE_BYTES`]; a line that does not fit
    /// in the batch is refused.
    #[test]
    fn batch_lines_are_joined_and_bounded() {
        let long = vec![b'v'; MAX_LINE_BYTES + 10];
        let rows: &[(&str, &[u8], usize)] = &[
            ("whole", b"value", 14),
            ("empty_value", b"", 9),
            ("cut", &long, MAX_LINE_BYTES),
        ];
        for (row, value, len) in rows {
            let mut b = LineBatch::default();
            let parts: [&[u8]; 3] = [b"Subject", b": ", value];
            let joined = parts.concat();
            let line = b.push(&parts).expect(row).to_vec();
            assert_eq!(line.len(), *len, "{row}");
            assert_eq!(line, joined[..*len], "{row}");
        }
        let mut b = LineBatch::default();
        let parts: [&[u8]; 1] = [&long[..MAX_LINE_BYTES]];
        for _ in 0..MAX_BATCH_BYTES / MAX_LINE_BYTES {
            assert!(b.push(&parts).is_some());
        }
        assert!(b.push(&parts).is_none(), "full");
        assert!(b.push(&[&b""[..]]).is_some(), "an empty line still fits");
    }

    #[test]
    fn lower_casing_matches_bytes() {
        let all: Vec<u8> = (0..=255u8)
            .chain(b"Hello, WORLD! @[`{".iter().copied())
            .collect();
        for start in 0..8 {
            let mut got = Vec::new();
            push_lower(&mut got, &all[start..]);
            assert_eq!(got, all[start..].to_ascii_lowercase(), "from {start}");
        }
    }

    #[test]
    fn folding_keeps_what_lower_casing_finds() {
        let all: Vec<u8> = (0..=255u8).collect();
        let mut folded = Vec::new();
        push_folded(&mut folded, &all);
        for b in 0..=255u8 {
            assert_eq!(
                folded[usize::from(b)],
                fold(b.to_ascii_lowercase()),
                "{b:#x}"
            );
            assert_eq!(fold(b), fold(b.to_ascii_lowercase()), "{b:#x}");
        }
    }

    #[test]
    fn folded_lookalikes_are_refused_by_the_regex() {
        // Literals with bytes that folding merges with others (`@` and `` ` ``, `_` and DEL,
        // `[` and `{`, tab and `)`, `^` and `~`): the look-alike lines pass the literal search
        // and the head and further-set checks, and the regex refuses them.
        const P: &[&str] = &[
            r"(?i)user@example",
            r"(?i)snake_case_name\d",
            r"(?i)\[tag\]\s+urgent",
            r"(?i)col\)value=\d+",
            r"(?i)caret\^hat",
            r"(?i)head_tail\s+\d+\s+other@word",
        ];
        let g = group(P);
        let lines: &[&[u8]] = &[
            b"mail USER@Example today",
            b"mail user`example today",
            b"SNAKE_CASE_NAME7",
            b"snake\x7fcase\x7fname7",
            b"[TAG]  Urgent",
            b"{tag}  urgent",
            b"COL)VALUE=42",
            b"col\tvalue=42",
            b"caret^hat CARET~HAT",
            b"caret~hat",
            b"Head_Tail 12 OTHER@word",
            b"head\x7ftail 12 other`word",
            b"head_tail 12 other`word",
        ];
        for l in lines {
            let l = l.to_vec();
            let want = naive(P, &l);
            let show = String::from_utf8_lossy(&l).into_owned();
            assert_eq!(run(&g, &[&l], P.len()), want, "{show:?}");
            let mut crlf = l.clone();
            crlf.extend_from_slice(b"\r\n");
            let (a, b) = crlf.split_at(crlf.len() / 2);
            assert_eq!(run(&g, &[a, b], P.len()), want, "{show:?} split");
        }
        let all: Vec<u8> = lines
            .iter()
            .flat_map(|l| {
                let mut l = l.to_vec();
                l.push(b'\n');
                l
            })
            .collect();
        assert_eq!(run(&g, &[&all], P.len()), naive(P, &all));
        // The look-alikes alone hit nothing.
        let fakes: Vec<u8> = lines
            .iter()
            .skip(1)
            .step_by(2)
            .take(5)
            .flat_map(|l| {
                let mut l = l.to_vec();
                l.push(b'\n');
                l
            })
            .collect();
        assert_eq!(run(&g, &[&fakes], P.len()), vec![false; P.len()]);
    }

    #[test]
    fn start_keys_and_break_scan_match_bytes() {
        // The eight-byte lower-casing itself is checked in `swar`.
        for len in 0..=KEY_BYTES {
            for text in [&b"X-Foo-Bar: v"[..], b"Subj", b"", b"ABCDEFGH"] {
                let want = text.get(..len).map(|h| {
                    let mut b = [0u8; KEY_BYTES];
                    b[..len].copy_from_slice(&h.to_ascii_lowercase());
                    u64::from_le_bytes(b)
                });
                assert_eq!(start_key(text, len), want, "{text:?} {len}");
            }
        }
        for len in 0..40 {
            for at in 0..len {
                for b in [b'\r', b'\n'] {
                    let mut text = vec![b'a'; len];
                    text[at] = b;
                    assert!(has_break_short(&text), "{len} {at} {b}");
                }
            }
            let clean: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37) | 0x10).collect();
            let want = clean.iter().any(|&b| b == b'\r' || b == b'\n');
            assert_eq!(has_break_short(&clean), want, "{len}");
        }
        assert!(!has_break_short(
            b"\x0b\x0c\x0e\x09\x8a\x8d no breaks here, 0123456789"
        ));
    }

    #[test]
    fn needles_are_rare_suffixes() {
        let rows: &[(&str, &str, &str)] = &[
            ("short_kept", "now", "now"),
            ("four_kept", "here", "here"),
            ("rare_byte_wins", "here=", "ere="),
            ("rare_start_kept", "x-free-money:", "x-free-money:"),
            ("common_word_avoided", "tion42", "on42"),
        ];
        for (row, lit, want) in rows {
            let got = needle(lit.as_bytes());
            assert_eq!(got, want.as_bytes(), "{row}");
            assert!(lit.as_bytes().ends_with(got), "{row}: a suffix");
        }
    }

    #[test]
    fn searched_set_is_the_rarest() {
        let rows: &[(&str, &[&[&str]], usize)] = &[
            ("one_set", &[&["delivery"]], 0),
            ("rarer_second", &[&["click"], &["money"]], 1),
            ("first_of_equal", &[&["bonus"], &["bonus"]], 0),
            ("short_needle_avoided", &[&["now"], &["invoice"]], 1),
            ("two_strings_cost_more", &[&["zap", "quiz"], &["jazz"]], 1),
        ];
        for (row, sets, want) in rows {
            let sets: Vec<Vec<Vec<u8>>> = sets
                .iter()
                .map(|s| s.iter().map(|l| l.as_bytes().to_vec()).collect())
                .collect();
            assert_eq!(searched_set(&sets), *want, "{row}");
        }
    }

    /// Many gated regexes whose literals crowd the same lines (more than the packed searcher
    /// takes, so the automaton runs too), against the oracle whole and at every split.
    #[test]
    fn many_candidates_per_line_match_the_oracle() {
        let words = [
            "free", "money", "here", "now", "click", "offer", "winner", "prize", "cash", "bonus",
            "credit", "loan", "deal", "save", "today", "urgent", "reply", "dear", "friend",
            "profit", "risk", "secure", "verify", "update", "login",
        ];
        let mut owned: Vec<String> = Vec::new();
        for (i, a) in words.iter().enumerate() {
            let b = words[(i * 7 + 3) % words.len()];
            owned.push(format!(r"(?i)\b{a}\s+\d+\s+{b}\b"));
            owned.push(format!(r"(?i){a}=[0-9a-f]{{4}}"));
            owned.push(format!(r"(?i)^{a}.*{b}$"));
            owned.push(format!(r"(?i)x-{a}-{b}:"));
            owned.push(format!(r"{a}{b}\d*\."));
        }
        let patterns: Vec<&str> = owned.iter().map(String::as_str).collect();
        let g = group(&patterns);
        assert!(
            matches!(g.finder, Some(Finder::Groups(ref groups)) if groups.len() == 2),
            "over 64 literals: two Teddy groups"
        );
        let n = patterns.len();
        let pair = |i: usize| (words[i], words[(i * 7 + 3) % words.len()]);
        let line = |f: &dyn Fn(&str, &str) -> String, at: &[usize], sep: &str| -> Vec<u8> {
            at.iter()
                .map(|&i| f(pair(i).0, pair(i).1))
                .collect::<Vec<_>>()
                .join(sep)
                .into_bytes()
        };
        let hays: Vec<(&str, Vec<u8>)> = vec![
            (
                "crowded",
                line(
                    &|a, b| format!("{} 12 {b} {a}=BEEF x {a} 3", a.to_uppercase()),
                    &[0, 3, 6],
                    " ",
                ),
            ),
            (
                "anchored",
                line(
                    &|a, b| format!("{a} and {b}\nX-{a}-{b}: 1\r\n{a}{b}7.com"),
                    &[1, 4],
                    "\n",
                ),
            ),
            (
                "needle_without_head",
                b"honey=beef Money=beef fhere=cafe HERE=CAFE xfree=0000\n".to_vec(),
            ),
            (
                "overlapping",
                line(&|a, b| format!("{a}{b}{a}{a}=cafe{b}"), &[2, 5, 8], ""),
            ),
        ];
        for (row, hay) in &hays {
            let want = naive(&patterns, hay);
            assert!(want.iter().filter(|&&w| w).count() >= 2, "{row}: some hit");
            assert_eq!(run(&g, &[hay], n), want, "{row}: whole");
            for i in 0..=hay.len() {
                assert_eq!(
                    run(&g, &[&hay[..i], &hay[i..]], n),
                    want,
                    "{row}: split at {i}"
                );
            }
        }
    }

    /// Every way of searching (one Teddy, groups of Teddy searchers of several sizes, the
    /// automaton) reports the same (start, end, literal) sequence when restarted one byte after
    /// each start, as the line search does: literals that are prefixes, suffixes and middles of
    /// one another, in text made of them.
    #[test]
    fn literal_searches_agree() {
        let words = [
            "free",
            "freedom",
            "money",
            "oney",
            "here",
            "there",
            "where",
            "click",
            "clicks",
            "offer",
            "winner",
            "prize",
            "cash",
            "cashier",
            "bonus",
            "credit",
            "loan",
            "deal",
            "dealer",
            "save",
            "today",
            "urgent",
            "reply",
            "dear",
            "friend",
            "profit",
            "risk",
            "secure",
            "verify",
            "update",
            "login",
            "account",
            "count",
            "transfer",
            "bank",
            "banking",
            "order",
            "price",
            "special",
            "claim",
            "invest",
            "investment",
            "report",
            "review",
            "please",
            "thanks",
            "regards",
            "details",
            "contact",
            "phone",
            "address",
            "website",
            "online",
            "internet",
            "email",
            "message",
            "list",
            "remove",
            "weight",
            "loss",
            "health",
            "doctor",
            "pharmacy",
            "pills",
            "discount",
            "lowest",
            "mortgage",
            "rate",
            "approved",
            "debt",
            "income",
            "home",
            "work",
            "opportunity",
            "ere=",
            "=3d",
            "://",
            "www.",
        ];
        let literals: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut hay = Vec::new();
        for _ in 0..3000 {
            let w = words[(next() % words.len() as u64) as usize];
            let cut = (next() % 3) as usize;
            hay.extend_from_slice(&w.as_bytes()[cut.min(w.len() - 1)..]);
            hay.push(b" \n=x"[(next() % 4) as usize]);
        }
        let all = |f: &Finder| -> Vec<(usize, usize, usize)> {
            f.starts(&mut Cursor::default(), &hay).collect()
        };
        for (row, n) in [("few", 30), ("many", literals.len())] {
            let lits = &literals[..n];
            let want = all(&Finder::automaton(lits).expect("automaton"));
            assert!(want.len() > 300, "{row}: text made of the literals");
            let mut tried = 0;
            for most in [1, 7, 16, 32, 64] {
                if let Some(f) = Finder::groups(lits, most) {
                    assert!(matches!(f, Finder::Groups(_)));
                    assert_eq!(all(&f), want, "{row}: groups of at most {most}");
                    tried += 1;
                }
            }
            assert!(tried >= 2, "{row}: Teddy groups were built ({tried})");
            if let Some(p) = (n <= TEDDY_GROUP).then(|| teddy(lits)).flatten() {
                assert_eq!(all(&Finder::Packed(p)), want, "{row}: one Teddy");
            }
            assert_eq!(
                all(&Finder::build(lits).expect("builds")),
                want,
                "{row}: build"
            );
        }
    }

    #[test]
    fn absolute_anchors_are_refused_in_line_rules() {
        let rows: &[(&str, &str, bool)] = &[
            ("start_anchor", r"\Afoo", false),
            ("end_anchor", r"foo\z", false),
            ("flag_off", r"(?-m)^foo", false),
            ("flag_group_off", r"(?i-m:^foo)", false),
            ("escaped_backslash", r"\\A", true),
            ("caret", r"^foo$", true),
            ("flags_on", r"(?im)foo", true),
        ];
        for (row, p, ok) in rows {
            assert_eq!(check_one(p, true).is_ok(), *ok, "{row}");
            assert!(check_one(p, false).is_ok(), "{row}: fine for values");
        }
    }

    /// Value regexes that begin with `^` and a literal run only on values starting with it
    /// (or holding a line break); against each regex on the whole value, at every cut of the
    /// value (each prefix is a value of its own).
    #[test]
    fn anchored_value_regexes_match_the_oracle() {
        let patterns: &[&str] = &[
            r"(?i)^x-spam-flag:\s*yes",
            r"(?i)^x-mailer:.*bulk",
            r"^Precedence: bulk$",
            r"(?i)^subject:.*free.*money$",
            // The same first eight bytes (key) as the first.
            r"(?i)^x-spam-flagged:\s*true",
            r"(?i)\bwire\s+transfer\b",
            r"(?i)^(www\.)?cheap\d*\.",
            r"(?i)^ab",
        ];
        let p: Vec<(String, RuleId)> = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), RuleId(i as u32)))
            .collect();
        let g = RegexGroup::build_anchored(&p).expect("builds");
        let mut prefixes: Vec<&[u8]> = g.anchored.iter().map(|(p, _)| &p[..]).collect();
        prefixes.sort();
        assert_eq!(
            prefixes,
            [
                &b"precedence: bulk"[..],
                b"subject:",
                b"x-mailer:",
                b"x-spam-flag:",
                b"x-spam-flagged:",
            ],
            "anchored prefixes"
        );
        let values: &[(&str, &[u8])] = &[
            ("flag_upper", b"X-SPAM-FLAG: YES"),
            ("flag_mixed", b"x-Spam-Flag:yes please"),
            ("flag_later", b"Received: x-spam-flag: yes"),
            ("flag_after_break", b"Received: a\r\nX-Spam-Flag: yes"),
            ("flag_after_lf", b"a\nx-spam-flag: yes"),
            ("mailer", b"X-Mailer: The Bulk Sender"),
            ("mailer_no_bulk", b"X-Mailer: Thunderbird"),
            ("precedence", b"Precedence: bulk"),
            ("precedence_case", b"precedence: BULK"),
            ("subject", b"Subject: FREE Money"),
            ("subject_break", b"Subject: free\r\n money"),
            ("wire", b"Note: Wire  Transfer now"),
            ("host", b"www.cheap42.example"),
            ("short", b"X-"),
            ("folded", b"Received: from a\r\n\tby b"),
            ("folded_flag", b"X-Note: a\r\nx-spam-flag: YES"),
            ("empty", b""),
            ("flagged", b"X-Spam-Flagged: TRUE"),
            (
                "flagged_after_flag",
                b"X-Spam-Flag: no\r\nx-spam-flagged: true",
            ),
        ];
        for (row, value) in values {
            for cut in 0..=value.len() {
                let v = &value[..cut];
                let want = naive(patterns, v);
                let mut hits = HitSet::new(patterns.len());
                g.match_value(v, &mut Scratch::default(), &mut hits);
                let got: Vec<bool> = (0..patterns.len())
                    .map(|i| hits.get(RuleId(i as u32)))
                    .collect();
                let want_value: Vec<bool> = patterns
                    .iter()
                    .map(|p| oracle_regex(p).is_match(v))
                    .collect();
                assert_eq!(got, want_value, "{row}: cut at {cut}");
                if !v.contains(&b'\n') && !v.ends_with(b"\r") {
                    assert_eq!(got, want, "{row}: cut at {cut}, as a line");
                }
                if let Some(colon) = v.windows(2).position(|w| w == b": ") {
                    let mut line_hits = HitSet::new(patterns.len());
                    let (name, rest) = (&v[..colon], &v[colon + 2..]);
                    g.match_header_line(name, rest, &mut Scratch::default(), &mut line_hits);
                    for (i, want) in want_value.iter().enumerate() {
                        // The first five are the anchored ones.
                        let got = line_hits.get(RuleId(i as u32));
                        assert_eq!(got, i < 5 && *want, "{row}: cut at {cut}: header line {i}");
                    }
                }
                let mut ungated = HitSet::new(patterns.len());
                let mut lower = Vec::new();
                push_lower(&mut lower, v);
                g.match_ungated(v, &lower, &mut ungated);
                for (i, &(ref _p, id)) in p.iter().enumerate() {
                    if ungated.get(id) {
                        assert!(want_value[i], "{row}: cut at {cut}: ungated {i} false hit");
                    }
                }
            }
        }
    }
}
