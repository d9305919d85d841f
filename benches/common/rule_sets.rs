//! Input of the rule-engine benchmarks, shared by `benches/rules.rs` and
//! `examples/rules_profile.rs` (included with `#[path]`, beside `events.rs`): every 8th labelled
//! message as scan events, and the four rule sets (the default rules, plus 1,000 generated
//! phrase rules, plus 100 generated regex rules, plus both).

use std::sync::Arc;

use conbool::message::{Recorded, Recorder, ScanEvent, ScanSink};
use conbool::rules::{CompiledRules, RuleSource, DEFAULT_RULES};
use conbool::smtp::encode::canonical_crlf;

use crate::corpus::{corpus_dir, labelled_sample};
use crate::events::pipeline_events;

/// Messages as bytes: every 8th labelled message, or generated ones.
pub fn messages() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = labelled_sample(8).into_iter().map(|(m, _)| m).collect();
    if out.is_empty() {
        eprintln!(
            "no corpus at {}: using generated messages",
            corpus_dir().display()
        );
        let mut rng = Rng(7);
        for i in 0..400 {
            let mut m = format!("From: a{i}@example.com\r\nTo: b@example.org\r\nSubject: note {i}\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{i}@example.com>\r\n\r\n").into_bytes();
            for _ in 0..(20 + rng.next() % 200) {
                for _ in 0..12 {
                    m.extend_from_slice(
                        WORDS[(rng.next() % WORDS.len() as u64) as usize].as_bytes(),
                    );
                    m.push(b' ');
                }
                m.extend_from_slice(b"\r\n");
            }
            out.push(m);
        }
    }
    out
}

/// Events for one message, from the message pipeline (as the relay makes them), or made
/// without it when it refuses the message.
pub fn events(msg: &[u8]) -> Vec<Recorded> {
    pipeline_events(msg).unwrap_or_else(|| {
        let mut rec = Recorder::default();
        naive_events(&canonical_crlf(msg), &mut rec);
        rec.events
    })
}

/// Events made without the pipeline, for a message it refuses (a header block over its limit).
fn naive_events(msg: &[u8], sink: &mut dyn ScanSink) {
    let split = memchr::memmem::find(msg, b"\r\n\r\n")
        .map(|i| (i, 4))
        .into_iter()
        .chain(memchr::memmem::find(msg, b"\n\n").map(|i| (i, 2)))
        .min();
    let (head, body) = match split {
        Some((i, n)) => (&msg[..i], &msg[i + n..]),
        None => (msg, &msg[msg.len()..]),
    };
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if let Some((_, v)) = fields.last_mut() {
                v.extend_from_slice(line);
            }
        } else if let Some(c) = memchr::memchr(b':', line) {
            fields.push((line[..c].to_vec(), line[c + 1..].trim_ascii().to_vec()));
        }
    }
    for (n, v) in &fields {
        sink.event(ScanEvent::Header {
            depth: 0,
            name: n,
            value: v,
        });
    }
    sink.event(ScanEvent::HeaderEnd);
    sink.event(ScanEvent::PartStart {
        depth: 0,
        content_type: b"text/plain",
        filename: None,
    });
    for chunk in body.chunks(16 * 1024) {
        sink.event(ScanEvent::Text(chunk));
        sink.event(ScanEvent::RawBody(chunk));
    }
    for word in body.split(|b| b.is_ascii_whitespace() || b"\"'<>".contains(b)) {
        if word.starts_with(b"http://") || word.starts_with(b"https://") {
            sink.event(ScanEvent::Url(word));
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const WORDS: &[&str] = &[
    "account",
    "action",
    "offer",
    "free",
    "money",
    "click",
    "here",
    "now",
    "limited",
    "time",
    "bank",
    "transfer",
    "credit",
    "card",
    "order",
    "price",
    "special",
    "deal",
    "save",
    "today",
    "winner",
    "prize",
    "claim",
    "urgent",
    "reply",
    "dear",
    "friend",
    "business",
    "proposal",
    "investment",
    "profit",
    "guaranteed",
    "risk",
    "cash",
    "bonus",
    "secure",
    "verify",
    "update",
    "password",
    "login",
    "customer",
    "service",
    "delivery",
    "package",
    "invoice",
    "payment",
    "subscription",
    "newsletter",
    "meeting",
    "project",
    "report",
    "review",
    "schedule",
    "team",
    "office",
    "please",
    "thanks",
    "regards",
    "information",
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
    "unsubscribe",
    "weight",
    "loss",
    "health",
    "doctor",
    "pharmacy",
    "pills",
    "medication",
    "discount",
    "lowest",
    "mortgage",
    "rate",
    "loan",
    "approved",
    "debt",
    "income",
    "home",
    "work",
    "opportunity",
];

/// The default rules plus `phrases` phrase rules and `regexes` regex rules over the usual
/// targets, generated from a word list.
///
/// Phrases and regexes draw their words from separate generators, so the combined set holds
/// exactly the rules of the phrase-only and the regex-only sets.
pub fn big_rules(phrases: usize, regexes: usize) -> String {
    let mut rng = Rng(42);
    let mut w = || WORDS[(rng.next() % WORDS.len() as u64) as usize];
    let mut s = String::from(DEFAULT_RULES);
    for i in 0..phrases {
        let (target, header) = match i % 10 {
            0..=6 => ("body", ""),
            7 | 8 => ("header", "header = \"Subject\"\n"),
            _ => ("raw", ""),
        };
        let phrase = format!("{} {} {}", w(), w(), w());
        s.push_str(&format!(
            "\n[[rule]]\nname = \"GEN_P{i}\"\ndescription = \"generated\"\nscore = 0.1\ntarget = \"{target}\"\n{header}phrases = [\"{phrase}\"]\nword_bounded = {}\n",
            i % 2 == 0
        ));
    }
    let mut rng = Rng(4242);
    let mut w = || WORDS[(rng.next() % WORDS.len() as u64) as usize];
    for i in 0..regexes {
        let (target, header, re) = match i % 10 {
            0..=3 => ("body", "", format!(r"(?i)\b{}\s+\d+\s+{}\b", w(), w())),
            4 | 5 => (
                "header",
                "header = \"Subject\"\n",
                format!(r"(?i)^{}.*{}$", w(), w()),
            ),
            6 => ("any_header", "", format!(r"(?i)^x-{}-{}:", w(), w())),
            7 | 8 => ("raw", "", format!(r"(?i){}=[0-9a-f]{{8}}", w())),
            _ => ("url_host", "", format!(r"(?i)^(www\.)?{}{}\d*\.", w(), w())),
        };
        s.push_str(&format!(
            "\n[[rule]]\nname = \"GEN_R{i}\"\ndescription = \"generated\"\nscore = 0.1\ntarget = \"{target}\"\n{header}regex = '{re}'\n"
        ));
    }
    s
}

/// Rules generated as text (the default rules included), compiled with the threshold 5.
pub fn compile_generated(text: String) -> Arc<CompiledRules> {
    let source = RuleSource {
        origin: "generated".into(),
        text,
    };
    Arc::new(CompiledRules::compile(&[source], 5.0).expect("generated rules compile"))
}

/// The four rule sets, by bench name.
pub fn sets() -> Vec<(&'static str, Arc<CompiledRules>)> {
    let compile = |phrases, regexes| compile_generated(big_rules(phrases, regexes));
    vec![
        ("default", CompiledRules::builtin(5.0)),
        ("default+1000phrases", compile(1000, 0)),
        ("default+100regexes", compile(0, 100)),
        ("default+1000phrases+100regexes", compile(1000, 100)),
    ]
}
