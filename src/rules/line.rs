//! Regexes of one target in one `regex::bytes::RegexSet`.
//!
//! Streams are matched line by line: a line is the bytes up to `\n` without the `\n` and one
//! `\r` before it. A line longer than [`MAX_LINE_BYTES`] is examined in consecutive segments of
//! that length (DESIGN.md: the scanner caps how much of one line it examines). Only a partial
//! line is copied between chunks, and it is bounded by [`MAX_LINE_BYTES`].
//!
//! Complete lines inside a chunk are first tested together with one `is_match` over the run of
//! lines (the set is compiled in multi-line CRLF mode, so a match inside a line is a match in the
//! run); only when that says yes are the lines of the run matched one at a time. So the regex
//! work per chunk is one pass over its bytes, not one call per line. That is exact because line
//! rules may not use `\A`, `\z` or `(?-m)` (the compiler refuses them), so every anchor is a line
//! anchor.

use memchr::memchr;
use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::rules::verdict::HitSet;
use crate::rules::RuleId;

/// The longest line (or value) a regex examines at once, in bytes.
pub const MAX_LINE_BYTES: usize = 4096;
/// Compiled size limit of one rule regex and of a target's set.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const SET_SIZE_LIMIT: usize = 64 << 20;

/// Regexes of one target.
#[derive(Debug)]
pub(crate) struct RegexGroup {
    set: RegexSet,
    owners: Vec<RuleId>,
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

impl RegexGroup {
    pub fn build(patterns: &[(String, RuleId)]) -> Result<RegexGroup, String> {
        let sources: Vec<&str> = patterns.iter().map(|(p, _)| p.as_str()).collect();
        let set = builder(&sources)
            .size_limit(SET_SIZE_LIMIT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(RegexGroup {
            set,
            owners: patterns.iter().map(|(_, r)| *r).collect(),
        })
    }

    /// Matches one line or value (the first [`MAX_LINE_BYTES`] of it).
    pub fn match_value(&self, value: &[u8], hits: &mut HitSet) {
        let value = &value[..value.len().min(MAX_LINE_BYTES)];
        if self.set.is_match(value) {
            for i in self.set.matches(value).iter() {
                if let Some(&r) = self.owners.get(i) {
                    hits.set(r);
                }
            }
        }
    }

    fn match_line(&self, line: &[u8], hits: &mut HitSet) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.match_value(line, hits)
    }
}

/// Per-stream line state.
#[derive(Debug, Default)]
pub(crate) struct LineStream {
    partial: Vec<u8>,
}

impl LineStream {
    /// Feeds the next chunk of the stream.
    pub fn feed(&mut self, group: &RegexGroup, chunk: &[u8], hits: &mut HitSet) {
        let mut rest = chunk;
        if !self.partial.is_empty() {
            match memchr(b'\n', rest) {
                Some(nl) => {
                    self.extend_partial(group, &rest[..nl], hits);
                    group.match_line(&self.partial, hits);
                    self.partial.clear();
                    rest = &rest[nl + 1..];
                }
                None => {
                    self.extend_partial(group, rest, hits);
                    return;
                }
            }
        }
        let complete = match memchr::memrchr(b'\n', rest) {
            Some(nl) => nl + 1,
            None => 0,
        };
        let (lines, tail) = rest.split_at(complete);
        match_run_of_lines(group, lines, hits);
        self.extend_partial(group, tail, hits);
    }

    /// The stream ended: the partial line is the last line. The state is reset.
    pub fn finish(&mut self, group: &RegexGroup, hits: &mut HitSet) {
        if !self.partial.is_empty() {
            group.match_line(&self.partial, hits);
            self.partial.clear();
        }
    }

    /// What [`LineStream::finish`] would add, without ending the stream.
    pub fn peek_end(&self, group: &RegexGroup, hits: &mut HitSet) {
        if !self.partial.is_empty() {
            group.match_line(&self.partial, hits);
        }
    }

    /// Appends bytes of the current line (no `\n` in `more`), matching each full segment once
    /// the line grows past it.
    fn extend_partial(&mut self, group: &RegexGroup, mut more: &[u8], hits: &mut HitSet) {
        while !more.is_empty() {
            if self.partial.len() == MAX_LINE_BYTES {
                group.match_value(&self.partial, hits);
                self.partial.clear();
            }
            let room = MAX_LINE_BYTES - self.partial.len();
            let take = room.min(more.len());
            self.partial.extend_from_slice(&more[..take]);
            more = &more[take..];
        }
    }
}

/// `lines` is whole lines, each ending in `\n`.
fn match_run_of_lines(group: &RegexGroup, lines: &[u8], hits: &mut HitSet) {
    let mut run_start = 0;
    let mut line_start = 0;
    for nl in memchr::memchr_iter(b'\n', lines) {
        if nl - line_start > MAX_LINE_BYTES {
            match_run(group, &lines[run_start..line_start], hits);
            match_long_line(group, &lines[line_start..nl], hits);
            run_start = nl + 1;
        }
        line_start = nl + 1;
    }
    match_run(group, &lines[run_start..line_start], hits);
}

fn match_run(group: &RegexGroup, run: &[u8], hits: &mut HitSet) {
    if run.is_empty() || !group.set.is_match(run) {
        return;
    }
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', run) {
        group.match_line(&run[start..nl], hits);
        start = nl + 1;
    }
}

/// A line longer than [`MAX_LINE_BYTES`]: full segments as they are, the `\r` stripped from the
/// last one only (as the partial-line path does).
fn match_long_line(group: &RegexGroup, line: &[u8], hits: &mut HitSet) {
    let mut segs = line.chunks(MAX_LINE_BYTES).peekable();
    while let Some(seg) = segs.next() {
        if segs.peek().is_some() {
            group.match_value(seg, hits);
        } else {
            group.match_line(seg, hits);
        }
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
        RegexGroup::build(&p).expect("builds")
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

    /// The oracle: split into lines and segments the slow way, match each line alone.
    fn naive(patterns: &[&str], hay: &[u8]) -> Vec<bool> {
        let res: Vec<regex::bytes::Regex> = patterns
            .iter()
            .map(|p| {
                regex::bytes::RegexBuilder::new(p)
                    .unicode(false)
                    .multi_line(true)
                    .crlf(true)
                    .build()
                    .expect("oracle regex")
            })
            .collect();
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
}
