//! The rule engine: rule files compiled once per configuration snapshot into
//! [`CompiledRules`], a small per-message [`Scan`] that consumes the message pipeline's scan
//! events with state carried across chunks, and the [`Verdict`] it produces.
//!
//! Owns: parsing and compiling rule files (the caller reads them), scanning, scoring.
//! Must not touch: reply text, I/O, config files, editing the message.
//!
//! Per target, all literal phrases share one Aho-Corasick automaton and all regexes one
//! `RegexSet`, so the cost of a scan grows with the bytes scanned, not with the number of rules
//! (see `phrase` and `line` for how). Rules are listed in [`mod@file`]; the built-in set is
//! `rules/default.toml` ([`DEFAULT_RULES`]).
//!
//! Lifecycle of a [`Scan`]: [`Scan::new`], [`Scan::set_envelope`], the message's events through
//! [`ScanSink::event`](crate::message::ScanSink), then [`Scan::finish`] with the message size.
//! [`Scan::verdict`] may be called at any point (the relay calls it when the scan window is
//! complete) and evaluates what is known so far.
#![forbid(unsafe_code)]

mod classifier;
mod compile;
mod explain;
pub mod file;
mod line;
mod literal;
mod meta;
mod phrase;
mod scan;
mod selftest;
mod verdict;

pub use classifier::CLASSIFIER_BANDS;
pub use compile::{CompiledRules, DEFAULT_RULES};
pub use explain::Where;
pub use file::{RuleError, RuleSource, RuleSpec, Target};
pub use line::MAX_LINE_BYTES;
pub use scan::{Envelope, Scan};
pub use verdict::Verdict;

pub(crate) use scan::url_host as url_host_of;

/// The Generic Test for Unsolicited Bulk Email: a message containing it is always spam.
pub const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Names one rule within a [`CompiledRules`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct RuleId(pub u32);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::message::{ScanEvent, ScanSink};

    const RULES: &str = r#"
[[rule]]
name = "P_WORD"
description = "word-bounded phrase"
score = 1.0
target = "body"
phrases = ["next of kin", "free"]
word_bounded = true
[[rule]]
name = "P_ANY"
description = "phrase anywhere"
score = 1.0
target = "body"
phrases = ["abcdef"]
[[rule]]
name = "R_LINE"
description = "line regex"
score = 2.0
target = "body"
regex = '(?i)^total:\s*\$\d+$'
[[rule]]
name = "RAW"
description = "raw phrase"
score = 0.5
target = "raw"
phrases = ["=3D"]
[[rule]]
name = "SUBJ"
description = "subject regex"
score = 1.5
target = "header"
header = "Subject"
regex = 'WIN'
[[rule]]
name = "NO_DATE"
description = "absent"
score = 0.25
target = "header_absent"
header = "Date"
[[rule]]
name = "BIG"
description = "size"
score = 0.1
target = "size"
min_bytes = 100
[[rule]]
name = "HOST"
description = "host"
score = 1.0
target = "url_host"
domains = ["bit.ly"]
[[rule]]
name = "IP"
description = "client"
score = 1.0
target = "client_ip"
cidrs = ["192.0.2.0/24"]
[[rule]]
name = "BLOCK"
description = "reject"
action = "reject"
text = "Message refused by policy"
target = "attachment_name"
globs = ["*.exe"]
[[rule]]
name = "M"
description = "meta"
score = 3.0
target = "meta"
expr = "P_WORD && !NO_DATE"
"#;

    fn rules() -> Arc<CompiledRules> {
        compile(RULES.into())
    }

    /// Rule-file text compiled with the threshold 5.
    fn compile(text: String) -> Arc<CompiledRules> {
        let source = RuleSource {
            origin: "t".into(),
            text,
        };
        Arc::new(CompiledRules::compile(&[source], 5.0).expect("compiles"))
    }

    /// Feeds a message whose text and raw body arrive in the given pieces.
    fn run(rules: &Arc<CompiledRules>, text: &[&[u8]], raw: &[&[u8]], finish: bool) -> Verdict {
        let mut s = Scan::new(Arc::clone(rules));
        s.set_envelope(&Envelope {
            helo: "h".into(),
            client_ip: "192.0.2.9".parse().expect("ip"),
            mail_from: "<a@example.com>".into(),
            rcpts: vec!["b@example.org".into()],
        });
        s.event(ScanEvent::Header {
            depth: 0,
            name: b"subject",
            value: b"YOU WIN",
        });
        s.event(ScanEvent::Header {
            depth: 0,
            name: b"Date",
            value: b"Mon, 1 Jan 2024 00:00:00 +0000",
        });
        s.event(ScanEvent::HeaderEnd);
        s.event(ScanEvent::PartStart {
            depth: 0,
            content_type: b"text/plain",
            filename: None,
        });
        for t in text {
            s.event(ScanEvent::Text(t));
        }
        for r in raw {
            s.event(ScanEvent::RawBody(r));
        }
        s.event(ScanEvent::Url(b"https://BIT.LY/x"));
        if finish {
            s.finish(1000);
        }
        s.verdict()
    }

    const TEXT: &[u8] = b"Dear sir,\r\nmy next of kin is free.\r\nTotal: $100\r\nabcdef\r\nfreedom";
    const RAW: &[u8] = b"my next=3D of kin\r\n";

    #[test]
    fn same_verdict_whatever_the_chunking() {
        let rules = rules();
        let whole = run(&rules, &[TEXT], &[RAW], true);
        let names: Vec<&str> = whole.hits.iter().map(|&id| rules.name(id)).collect();
        assert_eq!(
            names,
            ["P_WORD", "P_ANY", "R_LINE", "RAW", "SUBJ", "BIG", "HOST", "IP", "M"]
        );
        assert_eq!(whole.score, 11.1);
        assert!(whole.spam);
        assert_eq!(whole.reject, None);
        let bytes: Vec<&[u8]> = TEXT.chunks(1).collect();
        let raw_bytes: Vec<&[u8]> = RAW.chunks(1).collect();
        assert_eq!(run(&rules, &bytes, &raw_bytes, true), whole, "byte by byte");
        for i in 0..=TEXT.len() {
            let j = i.min(RAW.len());
            let v = run(
                &rules,
                &[&TEXT[..i], &TEXT[i..]],
                &[&RAW[..j], &RAW[j..]],
                true,
            );
            assert_eq!(v, whole, "split at {i}");
        }
    }

    #[test]
    fn verdict_before_finish_counts_what_is_known() {
        let rules = rules();
        // The text ends with a word-bounded phrase and a line without its newline.
        let v = run(&rules, &[b"next of kin\r\nTotal: $5"], &[], false);
        let names: Vec<&str> = v.hits.iter().map(|&id| rules.name(id)).collect();
        assert_eq!(names, ["P_WORD", "R_LINE", "SUBJ", "HOST", "IP", "M"]);
    }

    #[test]
    fn reject_rule_sets_the_public_text() {
        let rules = rules();
        let mut s = Scan::new(Arc::clone(&rules));
        s.event(ScanEvent::PartStart {
            depth: 1,
            content_type: b"application/octet-stream",
            filename: Some(b"Invoice.EXE"),
        });
        let v = s.verdict();
        assert_eq!(v.reject.as_deref(), Some("Message refused by policy"));
        assert_eq!(s.hit_names(), "BLOCK");
    }

    #[test]
    fn header_absent_is_decided_at_the_header_end() {
        let rules = rules();
        let id = rules.find("NO_DATE").expect("rule");
        let mut s = Scan::new(Arc::clone(&rules));
        s.event(ScanEvent::Header {
            depth: 1,
            name: b"Date",
            value: b"part headers do not count",
        });
        assert!(!s.is_hit(id), "not before the header ends");
        s.event(ScanEvent::HeaderEnd);
        assert!(s.is_hit(id));
    }

    /// `any_header` rules see each top-level line `Name: value` alone: phrases, a regex without
    /// a literal, and enough literal regexes to be searched for together at the header end
    /// (and counted by a verdict taken before it).
    #[test]
    fn any_header_lines() {
        let mut text = String::new();
        let rows: &[(&str, &str, &str)] = &[
            ("H_PHRASE", "phrases", "[\"bulk mailer\"]"),
            ("H_NODIGITS", "regex", "'^X-Count: \\d+$'"),
            ("H_MAILER", "regex", "'(?i)^x-mailer:.*bulk'"),
            ("H_SPAM", "regex", "'(?i)^x-spam-flag: yes'"),
            ("H_CASE", "regex", "'^Precedence: BULK'"),
            ("H_SPAN", "regex", "'(?i)foo: barbaz'"),
            ("H_NONE", "regex", "'(?i)never-seen-header'"),
            ("H_REST", "regex", "'^\\w+-\\w+: \\d{2}$'"),
        ];
        for (name, key, value) in rows {
            text.push_str(&format!(
                "[[rule]]\nname = \"{name}\"\ndescription = \"d\"\nscore = 1.0\ntarget = \"any_header\"\n{key} = {value}\n"
            ));
        }
        let rules = compile(text);
        let headers: &[(&[u8], &[u8])] = &[
            (b"X-Mailer", b"Bulk Mailer 2.0"),
            (b"X-Count", b"42"),
            (b"X-Spam-Flag", b"YES"),
            (b"Precedence", b"bulk"),
            (b"Foo", b"bar"),
            (b"Baz", b"barbaz"),
        ];
        let mut s = Scan::new(Arc::clone(&rules));
        for (name, value) in headers {
            s.event(ScanEvent::Header {
                depth: 0,
                name,
                value,
            });
        }
        s.event(ScanEvent::Header {
            depth: 1,
            name: b"X-Spam-Flag",
            value: b"yes",
        });
        let want = "H_PHRASE,H_NODIGITS,H_MAILER,H_SPAM,H_REST";
        assert_eq!(s.hit_names(), want, "before the header end");
        s.event(ScanEvent::HeaderEnd);
        assert_eq!(s.hit_names(), want, "after it");
        s.finish(100);
        assert_eq!(s.hit_names(), want, "at the end");
    }

    /// The naive oracle: every rule of the body target checked on the whole text at once.
    fn naive_body_hits(text: &[u8]) -> Vec<&'static str> {
        let lower = text.to_ascii_lowercase();
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        let found = |p: &[u8], bounded: bool| {
            (0..lower.len().saturating_sub(p.len() - 1)).any(|s| {
                lower[s..].starts_with(p)
                    && (!bounded
                        || ((s == 0 || !word(lower[s - 1]))
                            && !matches!(lower.get(s + p.len()), Some(&b) if word(b))))
            })
        };
        let re = regex::bytes::Regex::new(r"(?i)^total:\s*\$\d+$").expect("regex");
        let mut out = Vec::new();
        if found(b"next of kin", true) || found(b"free", true) {
            out.push("P_WORD");
        }
        if found(b"abcdef", false) {
            out.push("P_ANY");
        }
        let line_hit = text
            .split(|&b| b == b'\n')
            .any(|l| re.is_match(l.strip_suffix(b"\r").unwrap_or(l)));
        if line_hit {
            out.push("R_LINE");
        }
        out
    }

    #[test]
    fn random_texts_against_the_naive_oracle() {
        let rules = rules();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pieces: &[&[u8]] = &[
            b"next",
            b" of ",
            b"kin",
            b"free",
            b"dom",
            b"abc",
            b"def",
            b"\r\n",
            b"Total: $",
            b"42",
            b" ",
            b"x",
        ];
        for round in 0..400 {
            let n = (next() % 14) as usize;
            let text: Vec<u8> = (0..n)
                .flat_map(|_| pieces[(next() % pieces.len() as u64) as usize].to_vec())
                .collect();
            let mut s = Scan::new(Arc::clone(&rules));
            let cut = (next() % (text.len() as u64 + 1)) as usize;
            s.event(ScanEvent::Text(&text[..cut]));
            s.event(ScanEvent::Text(&text[cut..]));
            s.finish(0);
            let got: Vec<&str> = ["P_WORD", "P_ANY", "R_LINE"]
                .into_iter()
                .filter(|n| s.is_hit(rules.find(n).expect("rule")))
                .collect();
            assert_eq!(
                got,
                naive_body_hits(&text),
                "round {round}: {:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }

    /// Body regexes gated by the phrase scan (literals at least as long as the shortest phrase)
    /// and by the literal search (shorter ones), on random texts with long lines, lines cut
    /// across pieces and a second part: each regex hits when it matches a line, or a segment of
    /// a line longer than the line limit, as the naive per-line oracle says.
    #[test]
    fn gated_regexes_against_the_naive_oracle() {
        const REGEXES: &[(&str, &str)] = &[
            ("G_PAIR", r"(?i)\bpayment\s+\d+\s+invoice\b"),
            ("G_ALSO", r"(?i)account.*\bclosed"),
            ("G_ALT", r"(?i)(refund|rebate)d? now"),
            ("G_START", r"(?i)^subject line \w+$"),
            ("T_SHORT", r"(?i)\bfee\s+\d+"),
            ("T_TINY", r"zq\d\dqz"),
        ];
        let mut text = String::from(
            "[[rule]]\nname = \"P\"\ndescription = \"d\"\nscore = 0.1\ntarget = \"body\"\nphrases = [\"winner\"]\n",
        );
        for (name, re) in REGEXES {
            text.push_str(&format!(
                "[[rule]]\nname = \"{name}\"\ndescription = \"d\"\nscore = 0.1\ntarget = \"body\"\nregex = '{re}'\n"
            ));
        }
        let rules = compile(text);
        let body = rules.body.lines.as_ref().expect("body regexes");
        // One required set of each `G_` rule, the short ones left to the literal search.
        let mut gates: Vec<String> = body
            .gate_literals()
            .iter()
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .collect();
        gates.sort();
        assert_eq!(
            gates,
            ["account", "payment", "rebate", "refund", "subject line "]
        );
        let oracle: Vec<(&str, regex::bytes::Regex)> = REGEXES
            .iter()
            .map(|(n, re)| {
                let r = regex::bytes::RegexBuilder::new(re)
                    .unicode(false)
                    .multi_line(true)
                    .crlf(true)
                    .build()
                    .expect("regex");
                (*n, r)
            })
            .collect();
        // What the oracle says for one part's text: each line (a trailing `\r` dropped), or each
        // segment of a long line (the `\r` dropped from the last one only).
        let naive = |text: &[u8], out: &mut Vec<&'static str>| {
            for line in text.split(|&b| b == b'\n') {
                let segs: Vec<&[u8]> = line.chunks(line::MAX_LINE_BYTES).collect();
                for (i, seg) in segs.iter().enumerate() {
                    let seg = if i + 1 == segs.len() {
                        seg.strip_suffix(b"\r").unwrap_or(seg)
                    } else {
                        seg
                    };
                    for (name, re) in &oracle {
                        if re.is_match(seg) && !out.contains(name) {
                            out.push(name);
                        }
                    }
                }
            }
        };
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pieces: &[&[u8]] = &[
            b"Payment ",
            b"12",
            b" invoice",
            b" ",
            b"ACCOUNT",
            b" was closed",
            b"closed",
            b"refund",
            b"Rebated now",
            b" now",
            b"subject line ",
            b"Word",
            b"fee ",
            b"zq42qz",
            b"zq4",
            b"2qz",
            b"winner",
            b"\r\n",
            b"\n",
            b"x",
        ];
        for round in 0..600 {
            let mut parts: Vec<Vec<u8>> = Vec::new();
            for _ in 0..1 + next() % 2 {
                let n = (next() % 24) as usize;
                let mut t: Vec<u8> = (0..n)
                    .flat_map(|_| pieces[(next() % pieces.len() as u64) as usize].to_vec())
                    .collect();
                if next() % 4 == 0 {
                    // A long line: a gate literal may straddle the line limit.
                    let at = (next() % (t.len() as u64 + 1)) as usize;
                    let pad = line::MAX_LINE_BYTES - 8 + (next() % 16) as usize;
                    let mut long = vec![b'x'; pad];
                    long.extend_from_slice(b" payment 7 invoice account closed");
                    t.splice(at..at, long);
                }
                parts.push(t);
            }
            let mut want = Vec::new();
            for t in &parts {
                naive(t, &mut want);
            }
            let mut s = Scan::new(Arc::clone(&rules));
            for t in &parts {
                s.event(ScanEvent::PartStart {
                    depth: 1,
                    content_type: b"text/plain",
                    filename: None,
                });
                let mut rest = &t[..];
                while !rest.is_empty() {
                    let cut = 1 + (next() % (rest.len() as u64)) as usize;
                    s.event(ScanEvent::Text(&rest[..cut]));
                    rest = &rest[cut..];
                }
            }
            s.finish(0);
            let got: Vec<&str> = REGEXES
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| s.is_hit(rules.find(n).expect("rule")))
                .collect();
            want.sort_by_key(|n| REGEXES.iter().position(|(m, _)| m == n));
            assert_eq!(
                got,
                want,
                "round {round}: {:?}",
                parts
                    .iter()
                    .map(|t| String::from_utf8_lossy(t))
                    .collect::<Vec<_>>()
            );
        }
    }
}
