//! Required literals of a regex: a set of strings such that every match of the regex contains
//! at least one of them (compared ASCII case-insensitively). Line regexes with such a set run
//! only on lines that hold one of its strings (see `line`).
//!
//! The analysis walks the regex's `Hir` (parsed with the engine's own flags) and keeps, per
//! sub-expression, the small set of strings it always matches exactly (when there is one) and
//! the required sets found inside it. A concatenation joins neighbouring exact parts into longer
//! strings (`(?i)free\s` gives `free` and the whitespace ends it); an alternation requires one of
//! its branches' sets; a repetition that may match zero times requires nothing. Everything is
//! lower-cased: the filter is a superset of what the regex can match, never a subset.

use regex_syntax::hir::{Class, Hir, HirKind, Look};
use regex_syntax::ParserBuilder;

/// Most strings an exact set may hold (cross products past this end the run).
const MAX_EXACT: usize = 16;
/// Longest string an exact set may hold (longer runs end and a new one starts).
const MAX_EXACT_LEN: usize = 64;
/// Most strings a required set may hold.
const MAX_REQUIRED: usize = 32;
/// Most distinct bytes a class may have and still count as a literal (`[- ]`, `(?i)a`).
const MAX_CLASS_BYTES: usize = 4;
/// Most required sets kept per regex.
const MAX_SETS: usize = 8;
/// Shortest string worth filtering on: shorter ones are too common to gate lines.
pub(crate) const MIN_LITERAL_LEN: usize = 3;

/// What a sub-expression tells about literals.
#[derive(Clone, Debug, Default)]
struct Info {
    /// Every match is one of these strings (lower-cased), when known.
    exact: Option<Vec<Vec<u8>>>,
    /// Every match contains one string of each set.
    required: Vec<Vec<Vec<u8>>>,
}

/// Every usable required set of `pattern` under the engine's flags (Unicode off, multi-line,
/// CRLF): strings of [`MIN_LITERAL_LEN`] bytes or more, lower-cased and deduplicated, best first
/// (longest shortest string, then fewest strings), at most [`MAX_SETS`]. Empty when there is
/// none or the pattern does not parse.
pub(crate) fn required_sets(pattern: &str) -> Vec<Vec<Vec<u8>>> {
    required_sets_of(pattern, MIN_LITERAL_LEN)
}

/// `pattern` parsed under the engine's flags (bytes, multi-line, CRLF-aware).
fn parse(pattern: &str) -> Option<Hir> {
    ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .multi_line(true)
        .crlf(true)
        .build()
        .parse(pattern)
        .ok()
}

/// Like [`required_sets`], with strings of `min_len` bytes or more.
pub(crate) fn required_sets_of(pattern: &str, min_len: usize) -> Vec<Vec<Vec<u8>>> {
    let Some(hir) = parse(pattern) else {
        return Vec::new();
    };
    let info = analyze(&hir);
    let mut sets = info.required;
    if let Some(e) = info.exact {
        sets.push(e);
    }
    let mut sets: Vec<Vec<Vec<u8>>> = sets
        .into_iter()
        .filter(|s| !s.is_empty() && s.iter().all(|l| l.len() >= min_len.max(1)))
        .map(|mut s| {
            s.sort();
            s.dedup();
            s
        })
        .collect();
    sets.sort_by_key(|s| {
        (
            usize::MAX - s.iter().map(Vec::len).min().unwrap_or(0),
            s.len(),
        )
    });
    sets.dedup();
    sets.truncate(MAX_SETS);
    sets
}

/// The string (lower-cased, at least [`MIN_LITERAL_LEN`] bytes) that every match of `pattern`
/// (under the engine's flags) starts with when the pattern begins with `^` or `\A`: a text
/// without `\r` or `\n` can then only match when it starts with it (compared ASCII
/// case-insensitively), since such an anchor matches only at its start. `None` otherwise.
pub(crate) fn anchored_prefix(pattern: &str) -> Option<Vec<u8>> {
    let hir = parse(pattern)?;
    let HirKind::Concat(items) = hir.kind() else {
        return None;
    };
    let (first, rest) = items.split_first()?;
    if !matches!(
        first.kind(),
        HirKind::Look(Look::Start | Look::StartLF | Look::StartCRLF)
    ) {
        return None;
    }
    let mut out = Vec::new();
    for h in rest {
        match h.kind() {
            HirKind::Literal(l) => out.extend(l.0.iter().map(u8::to_ascii_lowercase)),
            HirKind::Class(c) => match class_bytes(c).as_deref() {
                // Every byte of the class lower-cases to this one.
                Some(&[b]) => out.push(b),
                _ => break,
            },
            _ => break,
        }
    }
    (out.len() >= MIN_LITERAL_LEN).then_some(out)
}

fn analyze(hir: &Hir) -> Info {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => exact(vec![Vec::new()]),
        HirKind::Literal(lit) => exact(vec![lit.0.to_ascii_lowercase()]),
        HirKind::Class(class) => match class_bytes(class) {
            Some(bytes) => exact(bytes.into_iter().map(|b| vec![b]).collect()),
            None => Info::default(),
        },
        HirKind::Capture(c) => analyze(&c.sub),
        HirKind::Repetition(r) => {
            let sub = analyze(&r.sub);
            if r.min == 0 {
                // May match nothing at all: nothing is required (`a{0}` matches only "").
                return if r.max == Some(0) {
                    exact(vec![Vec::new()])
                } else {
                    Info::default()
                };
            }
            if r.max == Some(r.min) && r.min <= 8 {
                if let Some(e) = &sub.exact {
                    let mut acc = vec![Vec::new()];
                    let mut ok = true;
                    for _ in 0..r.min {
                        match cross(&acc, e) {
                            Some(next) => acc = next,
                            None => {
                                ok = false;
                                break;
                            }
                        }
                    }
                    if ok {
                        return Info {
                            exact: Some(acc),
                            required: sub.required,
                        };
                    }
                }
            }
            let mut required = sub.required;
            if let Some(e) = sub.exact {
                push_required(&mut required, e);
            }
            Info {
                exact: None,
                required,
            }
        }
        HirKind::Concat(subs) => {
            let mut required = Vec::new();
            let mut run: Option<Vec<Vec<u8>>> = Some(vec![Vec::new()]);
            let mut all_exact = true;
            for sub in subs {
                let info = analyze(sub);
                required.extend(info.required);
                match info.exact {
                    Some(e) => {
                        let joined = run.as_ref().and_then(|r| cross(r, &e));
                        match joined {
                            Some(j) => run = Some(j),
                            None => {
                                // Too many or too long: the run so far is required, and a new
                                // run starts here.
                                all_exact = false;
                                if let Some(r) = run.take() {
                                    push_required(&mut required, r);
                                }
                                run = Some(e);
                            }
                        }
                    }
                    None => {
                        all_exact = false;
                        if let Some(r) = run.take() {
                            push_required(&mut required, r);
                        }
                        run = Some(vec![Vec::new()]);
                    }
                }
            }
            if all_exact {
                Info {
                    exact: run,
                    required,
                }
            } else {
                if let Some(r) = run {
                    push_required(&mut required, r);
                }
                Info {
                    exact: None,
                    required,
                }
            }
        }
        HirKind::Alternation(subs) => {
            let infos: Vec<Info> = subs.iter().map(analyze).collect();
            let exact = infos
                .iter()
                .map(|i| i.exact.clone())
                .collect::<Option<Vec<_>>>()
                .map(|sets| sets.concat())
                .filter(|u| u.len() <= MAX_EXACT);
            // One required set: each branch's best set, together.
            let mut union = Vec::new();
            for info in &infos {
                let mut sets: Vec<&Vec<Vec<u8>>> = info.required.iter().collect();
                if let Some(e) = &info.exact {
                    sets.push(e);
                }
                let best = sets
                    .into_iter()
                    .filter(|s| !s.is_empty() && s.iter().all(|l| !l.is_empty()))
                    .max_by_key(|s| {
                        (
                            s.iter().map(Vec::len).min().unwrap_or(0),
                            usize::MAX - s.len(),
                        )
                    });
                match best {
                    Some(b) => union.extend(b.iter().cloned()),
                    None => {
                        union.clear();
                        break;
                    }
                }
            }
            let mut required = Vec::new();
            if !union.is_empty() && union.len() <= MAX_REQUIRED {
                required.push(union);
            }
            Info { exact, required }
        }
    }
}

fn exact(set: Vec<Vec<u8>>) -> Info {
    Info {
        exact: Some(set),
        required: Vec::new(),
    }
}

/// A required set is only worth keeping when every string in it is non-empty.
fn push_required(required: &mut Vec<Vec<Vec<u8>>>, set: Vec<Vec<u8>>) {
    if !set.is_empty() && set.iter().all(|s| !s.is_empty()) && set.len() <= MAX_REQUIRED {
        required.push(set);
    }
}

/// Every string of `a` followed by every string of `b`, unless that makes too many or too long.
fn cross(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len().checked_mul(b.len())? > MAX_EXACT {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            if x.len() + y.len() > MAX_EXACT_LEN {
                return None;
            }
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.push(s);
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// The bytes a class matches, lower-cased, when they are few and all ASCII (a Unicode class
/// that also matches non-ASCII characters, like `(?iu)k` with the Kelvin sign, is not a
/// literal).
fn class_bytes(class: &Class) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    let mut add = |lo: u32, hi: u32| -> Option<()> {
        if hi < lo || hi - lo >= 64 {
            return None;
        }
        for c in lo..=hi {
            let b = u8::try_from(c).ok().filter(u8::is_ascii)?;
            let b = b.to_ascii_lowercase();
            if !out.contains(&b) {
                out.push(b);
            }
            if out.len() > MAX_CLASS_BYTES {
                return None;
            }
        }
        Some(())
    };
    match class {
        Class::Unicode(u) => {
            for r in u.ranges() {
                add(u32::from(r.start()), u32::from(r.end()))?;
            }
        }
        Class::Bytes(b) => {
            for r in b.ranges() {
                add(u32::from(r.start()), u32::from(r.end()))?;
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The best required set.
    fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
        required_sets(pattern).into_iter().next()
    }

    /// (row, pattern, the required set chosen, as strings; empty = none)
    const ROWS: &[(&str, &str, &[&str])] = &[
        ("plain", "free money", &["free money"]),
        ("case_insensitive", "(?i)Free", &["free"]),
        ("classes_end_runs", r"(?i)\bhere\s+\d+\s+now\b", &["here"]),
        ("longest_wins", r"ab\d+cdefg", &["cdefg"]),
        ("hex_tail", r"(?i)word=[0-9a-f]{8}", &["word="]),
        (
            "small_class_joins",
            "undisclosed[- ]recipients",
            &["undisclosed recipients", "undisclosed-recipients"],
        ),
        (
            "star_breaks",
            "undisclosed[- ]*recipients",
            &["undisclosed"],
        ),
        ("alternation", "(?i)(viagra|cialis)", &["cialis", "viagra"]),
        ("alternation_partial", "viagra|\\d+", &[]),
        ("optional_is_not_required", "(?:foobar)?baz", &["baz"]),
        ("repeat_exact", "(?:ab){3}", &["ababab"]),
        ("plus_keeps_one", "(?:abc)+x", &["abc"]),
        ("too_short", r"\$\d+", &[]),
        ("anchors_ignored", "^total:$", &["total:"]),
        ("unicode_fold_not_literal", "(?iu)kkk", &[]),
        ("dot", "a.b.c", &[]),
        ("empty", "", &[]),
        (
            "alternation_in_concat",
            "(?i)(re|fwd?):\\s*money",
            &["money"],
        ),
        ("bad_regex", "(", &[]),
    ];

    #[test]
    fn picks_the_required_set() {
        for (row, pattern, want) in ROWS {
            let got: Vec<String> = required_literals(pattern)
                .unwrap_or_default()
                .into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect();
            assert_eq!(got, *want, "{row}");
        }
    }

    #[test]
    fn short_sets_for_prechecks() {
        let sets = required_sets_of(r"(?i)^[a-z][a-z0-9+.-]*://[^/?#\s]*@", 1);
        let got: Vec<Vec<String>> = sets
            .iter()
            .map(|s| {
                s.iter()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect()
            })
            .collect();
        assert_eq!(got, [vec!["://"], vec!["@"]]);
        assert!(
            required_sets(r"\$\$|\$\s?\d{4,}").is_empty(),
            "too short to search for"
        );
        assert_eq!(
            required_sets_of(r"\$\$|\$\s?\d{4,}", 1),
            [vec![b"$".to_vec(), b"$$".to_vec()]]
        );
    }

    #[test]
    fn all_sets_best_first() {
        let sets = required_sets(r"(?i)\bhere\s+\d+\s+now\b and more");
        let got: Vec<Vec<String>> = sets
            .iter()
            .map(|s| {
                s.iter()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect()
            })
            .collect();
        assert_eq!(got, [vec!["now and more"], vec!["here"]]);
    }

    /// Every match of the regex contains one of the chosen strings, case-insensitively.
    #[test]
    fn chosen_strings_are_in_every_match() {
        let rows: &[(&str, &[&str])] = &[
            (
                r"(?i)\bhere\s+\d+\s+now\b",
                &["HERE 12 now", "xx here\t7 NOW yy"],
            ),
            (
                "undisclosed[- ]recipients",
                &["undisclosed-recipients", "undisclosed recipients"],
            ),
            ("(?i)(viagra|cialis) now", &["VIAGRA now", "Cialis now"]),
            (r"(?i)word=[0-9a-f]{8}", &["WORD=deadBEEF"]),
        ];
        for (pattern, hays) in rows {
            let lits = required_literals(pattern).expect(pattern);
            let re = regex::bytes::RegexBuilder::new(pattern)
                .unicode(false)
                .build()
                .expect(pattern);
            for hay in *hays {
                let m = re.find(hay.as_bytes()).expect(hay);
                let text = m.as_bytes().to_ascii_lowercase();
                assert!(
                    lits.iter()
                        .any(|l| memchr::memmem::find(&text, l).is_some()),
                    "{pattern} on {hay}"
                );
            }
        }
    }

    #[test]
    fn anchored_prefixes() {
        let rows: &[(&str, &str, Option<&str>)] = &[
            ("caseless", r"(?i)^x-foo-bar:", Some("x-foo-bar:")),
            ("case_kept", r"^Precedence: Bulk$", Some("precedence: bulk")),
            ("stops_at_class", r"(?i)^subject:\s*free", Some("subject:")),
            ("stops_at_repetition", r"(?i)^abcd?e", Some("abc")),
            ("absolute", r"\Afoo", Some("foo")),
            ("too_short", r"(?i)^ab\d", None),
            ("group_first", r"(?i)^(www\.)?cheap", None),
            ("alternation", r"^foo|bar", None),
            ("unanchored", r"(?i)x-foo-bar:", None),
            ("unicode_kelvin", r"(?iu)^kelvin", None),
            ("two_letter_class", r"^[ab]cde", None),
        ];
        for (row, pattern, want) in rows {
            let got = anchored_prefix(pattern);
            assert_eq!(got.as_deref(), want.map(str::as_bytes), "{row}");
        }
    }
}
