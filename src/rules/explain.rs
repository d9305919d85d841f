//! Where each rule hit, for `conbool scan`: the target it looked at and the text it matched.
//!
//! The scan itself keeps only which rules hit (a bit each), so that its cost does not grow with
//! what it finds. Explaining a hit is done after the fact, offline, from the message's scan
//! events ([`crate::message::Recorder`]) and with the engine itself: each candidate place (one
//! line of a part's text or of the raw body, one header field, one URL, one part) is fed alone
//! to a fresh [`Scan`] of the same rules, and the first place where the rule hits on its own is
//! where it hit. Only then is the rule's own matcher asked for the span inside that line or
//! value (the leftmost phrase occurrence that satisfies the word edges, or the regex's leftmost
//! match), so the place always agrees with the engine's decision. A hit that only happens
//! across places (a phrase with a line break in it) is reported as not located.

use std::borrow::Cow;
use std::sync::Arc;

use regex::bytes::RegexBuilder;

use crate::message::{Recorded, ScanEvent, ScanSink};
use crate::rules::compile::CompiledRules;
use crate::rules::file::{Matcher, Target};
use crate::rules::phrase::is_word;
use crate::rules::scan::Scan;
use crate::rules::{url_host_of, RuleId};

/// Bytes of context shown on each side of a match.
const CONTEXT_BYTES: usize = 30;
/// Most bytes of a match shown (longer ones are cut, with `…`).
const MAX_MATCH_BYTES: usize = 120;
/// How deep meta rules' sub-rules are located.
const MAX_META_DEPTH: usize = 4;

/// Where one rule hit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Where {
    /// What the rule looked at: `body`, `raw`, `header Subject`, `any_header`, `url`,
    /// `attachment_name`, `size`, `meta`, `classifier`, ...
    pub target: String,
    /// The bytes of the message it matched (escaped: UTF-8 as it is, other bytes and control
    /// characters as `\xNN`, `\r`, `\n`, `\t`, a backslash doubled; at most 120 bytes,
    /// `MAX_MATCH_BYTES`).
    pub matched: Option<String>,
    /// The match with up to 30 bytes (`CONTEXT_BYTES`) of its line or value on each side
    /// (escaped), when there is more to show than the match.
    pub context: Option<String>,
    /// What a rule that matches no text found: `absent`, a size, its expression, the
    /// classifier's probability.
    pub note: Option<String>,
    /// For a meta rule: its sub-rules (named `__…`, never listed themselves) that hit, by name,
    /// and where.
    pub parts: Vec<(String, Where)>,
    /// For the classifier's band rule: the message's features that moved the probability
    /// most, by name, with what each added to the log-odds: up to `SPAM_LIKE` (8) that raised
    /// it, largest first, then up to `HAM_LIKE` (5) that lowered it, lowest last.
    pub tokens: Vec<(String, f64)>,
}

/// Most features listed that raised the classifier's probability.
pub const SPAM_LIKE: usize = 8;
/// Most features listed that lowered it.
pub const HAM_LIKE: usize = 5;

impl Where {
    /// Whether a place was found (a hit made only across places is not located).
    pub fn is_located(&self) -> bool {
        self.matched.is_some() || self.note.is_some()
    }

    fn noted(target: String, note: String) -> Where {
        Where {
            target,
            note: Some(note),
            ..Where::default()
        }
    }
}

impl CompiledRules {
    /// Where rule `id` hit in the message whose scan events are `events` (of `size` bytes);
    /// `probability` is the classifier's, for its band rules. See the module docs.
    pub fn locate(
        self: &Arc<Self>,
        id: RuleId,
        events: &[Recorded],
        size: u64,
        probability: Option<f64>,
    ) -> Where {
        self.locate_at(id, events, size, probability, 0)
    }

    /// [`CompiledRules::locate`], `depth` meta rules down.
    fn locate_at(
        self: &Arc<Self>,
        id: RuleId,
        events: &[Recorded],
        size: u64,
        probability: Option<f64>,
        depth: usize,
    ) -> Where {
        let Some(spec) = self.specs.get(id.0 as usize) else {
            return Where::default();
        };
        let header = spec.header.as_deref().unwrap_or("");
        let target = match spec.target {
            Target::Header | Target::HeaderPresent | Target::HeaderAbsent => {
                format!("header {header}")
            }
            t => target_name(t).to_string(),
        };
        match (spec.target, &spec.matcher) {
            (Target::HeaderAbsent, _) => return Where::noted(target, "absent".into()),
            (Target::Size, _) => return Where::noted(target, format!("{size} bytes")),
            (Target::Meta, Matcher::Expr(e)) => {
                let mut w = Where::noted(target, e.clone());
                if depth < MAX_META_DEPTH {
                    w.parts = self.hidden_parts(id, events, size, probability, depth);
                }
                return w;
            }
            (Target::Classifier, _) => {
                let p = probability.map_or_else(|| "no model".into(), |p| format!("p = {p:.4}"));
                return Where::noted(target, p);
            }
            (Target::MailFrom | Target::Rcpt | Target::Helo | Target::ClientIp, _) => {
                return Where::noted(target, "the envelope".into());
            }
            _ => {}
        }
        let hits_alone =
            |before: &[ScanEvent<'_>], what: ScanEvent<'_>, after: &[ScanEvent<'_>]| {
                let mut scan = Scan::new(Arc::clone(self));
                for &ev in before.iter().chain([&what]).chain(after) {
                    scan.event(ev);
                }
                scan.finish(size);
                scan.all_hits().get(id)
            };
        let Some(text) = first_place(spec.target, header, events, hits_alone) else {
            return Where {
                target,
                ..Where::default()
            };
        };
        let text = content(&text);
        let found = match spec.target {
            // The host is what the rule matched; the URL is its context.
            Target::UrlHost | Target::LinkTextHost => host_span(text),
            _ => span(&spec.matcher, text),
        };
        let (matched, context) = match found {
            Some((s, e)) => excerpt(text, s, e),
            None => (escape(cut(text, MAX_MATCH_BYTES)), None),
        };
        Where {
            target,
            matched: Some(matched),
            context,
            ..Where::default()
        }
    }

    /// The features that moved the classifier's probability most (see [`Where::tokens`]) in
    /// the message whose scan events are `events`, as [`CompiledRules::explain_classifier`]
    /// takes them.
    pub fn classifier_tokens(
        self: &Arc<Self>,
        events: &[Recorded],
        finished: Option<u64>,
    ) -> Vec<(String, f64)> {
        let Some((mut each, _)) = self.explain_classifier(events, finished) else {
            return Vec::new();
        };
        let ham_like = each.iter().rev().take_while(|(_, c)| *c < 0.0).count();
        let lowest = each.split_off(each.len() - ham_like.min(HAM_LIKE));
        each.truncate(SPAM_LIKE);
        each.retain(|(_, c)| *c > 0.0);
        each.extend(lowest);
        each
    }

    /// Every classifier feature of the message whose scan events are `events` with what it
    /// adds to the log-odds (largest first), and the probability they give: the scan's own
    /// after those events, and after its end when `finished` gives the message's size (a
    /// verdict taken at the end of a message shorter than the scan window). `None` without a
    /// model.
    pub fn explain_classifier(
        self: &Arc<Self>,
        events: &[Recorded],
        finished: Option<u64>,
    ) -> Option<(Vec<(String, f64)>, f64)> {
        let c = self.classifier.as_ref()?;
        let mut scan = Scan::new(Arc::clone(self));
        let mut tokens = c.tokenizer::<true>();
        for ev in events {
            scan.event(ev.event());
            tokens.event(ev.event());
        }
        if let Some(size) = finished {
            scan.finish(size);
            tokens.finish();
        }
        Some(c.explain(&tokens, &scan.rule_hits(), |id| self.name(id)))
    }

    /// The sub-rules of meta rule `id` that hit in `events`, located.
    fn hidden_parts(
        self: &Arc<Self>,
        id: RuleId,
        events: &[Recorded],
        size: u64,
        probability: Option<f64>,
        depth: usize,
    ) -> Vec<(String, Where)> {
        let Some((_, expr)) = self.metas.iter().find(|(m, _)| *m == id) else {
            return Vec::new();
        };
        let mut scan = Scan::new(Arc::clone(self));
        for ev in events {
            scan.event(ev.event());
        }
        let hits = scan.all_hits();
        let mut subs = Vec::new();
        expr.rules(&mut subs);
        subs.sort_unstable();
        subs.dedup();
        subs.into_iter()
            .filter(|&r| hits.get(r) && self.specs.get(r.0 as usize).is_some_and(|s| s.is_hidden()))
            .map(|r| {
                let place = self.locate_at(r, events, size, probability, depth + 1);
                (self.name(r).to_string(), place)
            })
            .collect()
    }
}

/// The name a rule file gives `target`.
fn target_name(target: Target) -> &'static str {
    match target {
        Target::Body => "body",
        Target::Raw => "raw",
        Target::Header => "header",
        Target::AnyHeader => "any_header",
        Target::HeaderPresent => "header_present",
        Target::HeaderAbsent => "header_absent",
        Target::MailFrom => "mail_from",
        Target::Rcpt => "rcpt",
        Target::Helo => "helo",
        Target::ClientIp => "client_ip",
        Target::Url => "url",
        Target::UrlHost => "url_host",
        Target::LinkTextHost => "link_text_host",
        Target::FromNameBrand => "from_name_brand",
        Target::AttachmentName => "attachment_name",
        Target::ContentType => "content_type",
        Target::Size => "size",
        Target::Meta => "meta",
        Target::Classifier => "classifier",
    }
}

/// The text of the first place, in message order, where a rule of `target` hits on its own:
/// `hits_alone(before, event, after)` scans one place's event with the events that set it up
/// and those that follow it. The places: each line of a part's text (a part's text is one
/// stream: its pieces joined, then cut into lines that keep their line ends), each line of the
/// raw body, each top-level header field (its value; `Name: value` for `any_header`), URL and
/// part (its file name or media type).
fn first_place<'a>(
    target: Target,
    header: &str,
    events: &'a [Recorded],
    hits_alone: impl Fn(&[ScanEvent<'_>], ScanEvent<'_>, &[ScanEvent<'_>]) -> bool,
) -> Option<Cow<'a, [u8]>> {
    let after_header = [ScanEvent::HeaderEnd];
    match target {
        Target::Body => {
            let mut part: Option<&Recorded> = None;
            let mut text = Vec::new();
            for ev in events.iter().chain(std::iter::once(&Recorded::HeaderEnd)) {
                match ev {
                    Recorded::Text(t) => text.extend_from_slice(t),
                    Recorded::PartStart { .. } | Recorded::HeaderEnd => {
                        if let Some(p) = part {
                            let before = [ScanEvent::HeaderEnd, p.event()];
                            if let Some(line) =
                                lines(&text).find(|l| hits_alone(&before, ScanEvent::Text(l), &[]))
                            {
                                return Some(Cow::Owned(line.to_vec()));
                            }
                        }
                        text.clear();
                        part = matches!(ev, Recorded::PartStart { .. }).then_some(ev);
                    }
                    _ => {}
                }
            }
            None
        }
        Target::Raw => {
            let raw: Vec<u8> = events
                .iter()
                .filter_map(|e| match e {
                    Recorded::RawBody(r) => Some(r.as_slice()),
                    _ => None,
                })
                .flatten()
                .copied()
                .collect();
            let line = lines(&raw).find(|l| hits_alone(&after_header, ScanEvent::RawBody(l), &[]));
            line.map(|l| Cow::Owned(l.to_vec()))
        }
        Target::Header | Target::HeaderPresent | Target::AnyHeader => {
            events.iter().find_map(|ev| {
                let Recorded::Header {
                    depth: 0,
                    name,
                    value,
                } = ev
                else {
                    return None;
                };
                let any = target == Target::AnyHeader;
                if !any && !name.eq_ignore_ascii_case(header.as_bytes()) {
                    return None;
                }
                // Header lines are matched when the header block ends.
                if !hits_alone(&[], ev.event(), &after_header) {
                    return None;
                }
                Some(if any {
                    Cow::Owned([name.as_slice(), b": ", value].concat())
                } else {
                    Cow::Borrowed(value.as_slice())
                })
            })
        }
        Target::Url | Target::UrlHost => events.iter().find_map(|ev| match ev {
            Recorded::Url(u) if hits_alone(&after_header, ev.event(), &[]) => {
                Some(Cow::Borrowed(u.as_slice()))
            }
            _ => None,
        }),
        Target::FromNameBrand => events.iter().find_map(|ev| match ev {
            Recorded::Header {
                depth: 0,
                name,
                value,
            } if name.eq_ignore_ascii_case(b"from")
                && hits_alone(&[], ev.event(), &after_header) =>
            {
                Some(Cow::Borrowed(value.as_slice()))
            }
            _ => None,
        }),
        Target::LinkTextHost => events.iter().find_map(|ev| match ev {
            Recorded::Link { text, .. } if hits_alone(&after_header, ev.event(), &[]) => {
                Some(Cow::Borrowed(text.as_slice()))
            }
            _ => None,
        }),
        Target::AttachmentName | Target::ContentType => events.iter().find_map(|ev| {
            let Recorded::PartStart {
                content_type,
                filename,
                ..
            } = ev
            else {
                return None;
            };
            let text = match (target, filename) {
                (Target::ContentType, _) => content_type,
                (_, Some(name)) => name,
                (_, None) => return None,
            };
            hits_alone(&after_header, ev.event(), &[]).then_some(Cow::Borrowed(text.as_slice()))
        }),
        _ => None,
    }
}

/// The lines of `text`, each with its line end.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split_inclusive(|&b| b == b'\n')
}

/// Where in `text` (a line without its line end, or a value) the matcher matches: the leftmost
/// phrase occurrence that satisfies the word edges, or the regex's leftmost match; `None` for
/// other matchers or when neither is found (the whole text is shown then).
fn span(matcher: &Matcher, text: &[u8]) -> Option<(usize, usize)> {
    match matcher {
        Matcher::Phrases {
            phrases,
            word_bounded,
        } => {
            let lower = text.to_ascii_lowercase();
            phrases
                .iter()
                .filter_map(|p| {
                    let p = p.to_ascii_lowercase();
                    memchr::memmem::find_iter(&lower, p.as_bytes())
                        .find(|&s| {
                            let e = s + p.len();
                            !word_bounded
                                || (!s
                                    .checked_sub(1)
                                    .and_then(|b| lower.get(b))
                                    .is_some_and(|&b| is_word(b))
                                    && !lower.get(e).is_some_and(|&b| is_word(b)))
                        })
                        .map(|s| (s, s + p.len()))
                })
                .min()
        }
        Matcher::Regex(p) => RegexBuilder::new(p)
            .unicode(false)
            .multi_line(true)
            .crlf(true)
            .build()
            .ok()?
            .find(text)
            .map(|m| (m.start(), m.end())),
        _ => None,
    }
}

/// Where in URL `url` its host is (as `url_host` takes it, before lower-casing).
fn host_span(url: &[u8]) -> Option<(usize, usize)> {
    let host = url_host_of(url);
    let s = (host.as_ptr() as usize).checked_sub(url.as_ptr() as usize)?;
    (s + host.len() <= url.len() && !host.is_empty()).then_some((s, s + host.len()))
}

/// The match `text[s..e]` (escaped), and the match with its context when there is some.
fn excerpt(text: &[u8], s: usize, e: usize) -> (String, Option<String>) {
    let from = s.saturating_sub(CONTEXT_BYTES);
    let to = (e + CONTEXT_BYTES).min(text.len());
    let matched = cut(text.get(s..e).unwrap_or(&[]), MAX_MATCH_BYTES);
    let before = text.get(from..s).unwrap_or(&[]);
    let after = text.get(e..to).unwrap_or(&[]);
    if before.is_empty() && after.is_empty() {
        return (escape(matched), None);
    }
    let mut context = String::new();
    if from > 0 {
        context.push('…');
    }
    context.push_str(&escape(before));
    context.push_str(&escape(matched));
    if matched.len() < e - s {
        context.push('…');
    }
    context.push_str(&escape(after));
    if to < text.len() {
        context.push('…');
    }
    (escape(matched), Some(context))
}

/// A line without its line end (`\n`, and a `\r` before it).
fn content(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// At most `max` bytes of `b`.
fn cut(b: &[u8], max: usize) -> &[u8] {
    b.get(..max).unwrap_or(b)
}

/// `b` as text: UTF-8 where it is, control characters and other bytes as `\xNN` (line ends as
/// `\r` and `\n`, a backslash doubled).
fn escape(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSource;

    const RULES: &str = r#"
[[rule]]
name = "FREE"
description = "word-bounded phrase"
score = 1.0
target = "body"
phrases = ["free"]
word_bounded = true
[[rule]]
name = "TOTAL"
description = "line regex"
score = 2.0
target = "body"
regex = '(?i)total:\s*\$\d+'
[[rule]]
name = "QP"
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
regex = 'WIN+'
[[rule]]
name = "MAILER"
description = "any header"
score = 0.5
target = "any_header"
regex = '(?i)^x-mailer:\s*bulk'
[[rule]]
name = "NO_DATE"
description = "absent"
score = 0.25
target = "header_absent"
header = "Date"
[[rule]]
name = "HAS_LIST"
description = "present"
score = 0.1
target = "header_present"
header = "List-Id"
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
name = "EXE"
description = "attachment"
score = 4.0
target = "attachment_name"
globs = ["*.exe"]
[[rule]]
name = "__HTML"
description = "an HTML part"
score = 0.0
target = "content_type"
globs = ["text/html"]
[[rule]]
name = "M"
description = "meta"
score = 3.0
target = "meta"
expr = "FREE && __HTML"
"#;

    fn header(name: &str, value: &str) -> Recorded {
        Recorded::Header {
            depth: 0,
            name: name.into(),
            value: value.into(),
        }
    }

    fn part(content_type: &str, filename: Option<&str>) -> Recorded {
        Recorded::PartStart {
            depth: 1,
            content_type: content_type.into(),
            filename: filename.map(Into::into),
        }
    }

    /// A message's events: the text and the raw body arrive cut in the middle of lines.
    fn events() -> Vec<Recorded> {
        vec![
            header("Subject", "you WINNN today"),
            header("X-Mailer", "Bulk Sender 2.0"),
            header("List-Id", "<news.example.com>"),
            Recorded::HeaderEnd,
            part("text/plain", None),
            Recorded::Text(b"Hello,\r\nthe carefree days are here: ".to_vec()),
            Recorded::Text(b"all FREE for you.\r\nTotal: $12".to_vec()),
            Recorded::Text(b"0\r\nBye\r\n".to_vec()),
            Recorded::RawBody(b"Hello,\r\nsee <a href=3D\"x\">\r\n".to_vec()),
            part("text/html", None),
            Recorded::Text(b"html text\r\n".to_vec()),
            Recorded::Url(b"https://bit.ly/abc".to_vec()),
            part("application/octet-stream", Some("invoice.pdf.exe")),
        ]
    }

    fn locate_all() -> Vec<(String, Where)> {
        let source = RuleSource {
            origin: "t".into(),
            text: RULES.into(),
        };
        let rules = Arc::new(CompiledRules::compile(&[source], 5.0).expect("compiles"));
        let events = events();
        let mut scan = Scan::new(Arc::clone(&rules));
        for ev in &events {
            scan.event(ev.event());
        }
        scan.finish(4321);
        scan.verdict()
            .hits
            .iter()
            .map(|&id| {
                let w = rules.locate(id, &events, 4321, None);
                (rules.name(id).to_string(), w)
            })
            .collect()
    }

    /// What [`Where`] says: the match and its context.
    type Said = (Option<String>, Option<String>);

    fn text(m: &str, c: Option<&str>) -> Said {
        (Some(m.to_string()), c.map(str::to_string))
    }

    #[test]
    fn every_hit_has_its_place() {
        let all = locate_all();
        let got = |name: &str| {
            all.iter()
                .find(|(n, _)| n == name)
                .map(|(_, w)| w.clone())
                .unwrap_or_else(|| panic!("{name} did not hit: {all:?}"))
        };
        let rows: &[(&str, &str, Said, Option<&str>)] = &[
            // `carefree` is not the word: the match is the next `FREE`, as written.
            (
                "FREE",
                "body",
                text("FREE", Some("…e carefree days are here: all FREE for you.")),
                None,
            ),
            // The line arrived in two events; the regex's match is found in the line.
            ("TOTAL", "body", text("Total: $120", None), None),
            ("QP", "raw", text("=3D", Some("see <a href=3D\"x\">")), None),
            (
                "SUBJ",
                "header Subject",
                text("WINNN", Some("you WINNN today")),
                None,
            ),
            (
                "MAILER",
                "any_header",
                text("X-Mailer: Bulk", Some("X-Mailer: Bulk Sender 2.0")),
                None,
            ),
            ("NO_DATE", "header Date", (None, None), Some("absent")),
            (
                "HAS_LIST",
                "header List-Id",
                text("<news.example.com>", None),
                None,
            ),
            ("BIG", "size", (None, None), Some("4321 bytes")),
            (
                "HOST",
                "url_host",
                text("bit.ly", Some("https://bit.ly/abc")),
                None,
            ),
            (
                "EXE",
                "attachment_name",
                text("invoice.pdf.exe", None),
                None,
            ),
            ("M", "meta", (None, None), Some("FREE && __HTML")),
        ];
        for (name, target, (matched, context), note) in rows {
            let w = got(name);
            assert_eq!(w.target, *target, "{name}");
            assert_eq!((&w.matched, &w.context), (matched, context), "{name}");
            assert_eq!(w.note.as_deref(), *note, "{name}");
            assert!(w.is_located(), "{name}");
        }
        assert_eq!(all.len(), rows.len(), "{all:?}");
        // The meta rule's hidden sub-rule, with its place.
        let m = got("M");
        assert_eq!(m.parts.len(), 1, "{m:?}");
        assert_eq!(m.parts[0].0, "__HTML");
        assert_eq!(m.parts[0].1.matched.as_deref(), Some("text/html"));
    }

    #[test]
    fn a_hit_made_across_places_is_not_located() {
        // A phrase holding a line break hits the stream, never one line alone.
        let source = RuleSource {
            origin: "t".into(),
            text: "[[rule]]\nname = \"SPLIT\"\ndescription = \"d\"\nscore = 1.0\ntarget = \"raw\"\nphrases = [\"end\\r\\nstart\"]\n".into(),
        };
        let rules = Arc::new(CompiledRules::compile(&[source], 5.0).expect("compiles"));
        let events = vec![
            Recorded::HeaderEnd,
            Recorded::RawBody(b"the end\r\nstart again\r\n".to_vec()),
        ];
        let mut scan = Scan::new(Arc::clone(&rules));
        for ev in &events {
            scan.event(ev.event());
        }
        scan.finish(100);
        let id = rules.find("SPLIT").expect("rule");
        assert!(scan.verdict().hits.contains(&id), "the stream has it");
        let w = rules.locate(id, &events, 100, None);
        assert!(!w.is_located(), "{w:?}");
        assert_eq!(w.target, "raw");
    }

    #[test]
    fn escapes_what_is_not_text() {
        assert_eq!(
            escape(b"a\tb\r\n\x01\xff\xc3\xa9 \\x41"),
            "a\\tb\\r\\n\\x01\\xffé \\\\x41"
        );
        let (m, c) = excerpt(&[b'x'; 100], 40, 45);
        assert_eq!(m, "xxxxx");
        assert_eq!(c.as_deref(), Some(format!("…{}…", "x".repeat(65)).as_str()));
    }
}
