//! Arbitrary event sequences into a scan with the default rules, a few body and raw-body regexes
//! (some gated by the phrase scan, some by the literal search) and header phrases (scanned
//! sampled or walked): never panics, cutting every text and raw-body chunk in two gives the same
//! verdict (split invariance), and locating each rule of the verdict in the events (`conbool
//! scan`'s explanation) never panics.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use conbool::message::{Recorder, ScanEvent, ScanSink};
use conbool::rules::{CompiledRules, Envelope, RuleSource, Scan, Verdict, DEFAULT_RULES};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Header {
        depth: u8,
        name: Vec<u8>,
        value: Vec<u8>,
    },
    HeaderEnd,
    PartStart {
        depth: u8,
        content_type: Vec<u8>,
        filename: Option<Vec<u8>>,
    },
    Text(Vec<u8>),
    RawBody(Vec<u8>),
    Url(Vec<u8>),
    Link {
        href: Vec<u8>,
        text: Vec<u8>,
    },
    Envelope {
        helo: String,
        ip: [u8; 16],
        v4: bool,
        mail_from: String,
        rcpts: Vec<String>,
    },
    Verdict,
    Finish(u64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
    /// Where each chunk is cut (modulo its length + 1) in the split run.
    cut: u16,
}

static RULES: OnceLock<Arc<CompiledRules>> = OnceLock::new();

/// Stream regexes beside the default rules: literals at least as long as the target's shortest
/// phrase (6 bytes in the body, 12 in the raw body) are gated by the phrase scan, shorter ones
/// by the literal search.
const STREAM_REGEXES: &str = r#"
[[rule]]
name = "FUZZ_GATED_PAIR"
description = "gated by the phrase scan"
score = 0.1
target = "body"
regex = '(?i)\bpayment\s+\d+\s+invoice\b'

[[rule]]
name = "FUZZ_GATED_ALSO"
description = "gated by the phrase scan, with a second literal"
score = 0.1
target = "body"
regex = '(?i)account.*\bclosed'

[[rule]]
name = "FUZZ_SEARCHED"
description = "gated by the literal search"
score = 0.1
target = "body"
regex = '(?i)\bfee\s+\d+'

[[rule]]
name = "FUZZ_RAW_GATED"
description = "gated by the raw body's phrase scan"
score = 0.1
target = "raw"
regex = '(?i)visibility:hidden.{0,20}opacity'

[[rule]]
name = "FUZZ_SUBJECT_SAMPLED"
description = "value phrases of 8 bytes or more: the sampled scan"
score = 0.1
target = "header"
header = "Subject"
phrases = ["limited offer", "act now today"]
word_bounded = true

[[rule]]
name = "FUZZ_FROM_WALKED"
description = "short value phrases: the automaton walk"
score = 0.1
target = "header"
header = "From"
phrases = ["win", "prize"]

[[rule]]
name = "FUZZ_RAW_SEARCHED"
description = "gated by the literal search"
score = 0.1
target = "raw"
regex = '(?i)=3d[0-9a-f]{2}'
"#;

fn run(
    rules: &Arc<CompiledRules>,
    input: &Input,
    split: bool,
    rec: &mut Recorder,
) -> (Verdict, String) {
    let mut scan = Scan::new(Arc::clone(rules));
    let mut scan_and_record = |scan: &mut Scan, ev: ScanEvent<'_>| {
        scan.event(ev);
        rec.event(ev);
    };
    let chunks = |data: &[u8], f: &mut dyn FnMut(&[u8])| {
        if split {
            let at = usize::from(input.cut) % (data.len() + 1);
            f(&data[..at]);
            f(&data[at..]);
        } else {
            f(data);
        }
    };
    for op in &input.ops {
        match op {
            Op::Header { depth, name, value } => scan_and_record(
                &mut scan,
                ScanEvent::Header {
                    depth: usize::from(*depth),
                    name,
                    value,
                },
            ),
            Op::HeaderEnd => scan_and_record(&mut scan, ScanEvent::HeaderEnd),
            Op::PartStart {
                depth,
                content_type,
                filename,
            } => scan_and_record(
                &mut scan,
                ScanEvent::PartStart {
                    depth: usize::from(*depth),
                    content_type,
                    filename: filename.as_deref(),
                },
            ),
            Op::Text(t) => chunks(t, &mut |c| scan_and_record(&mut scan, ScanEvent::Text(c))),
            Op::RawBody(r) => chunks(r, &mut |c| {
                scan_and_record(&mut scan, ScanEvent::RawBody(c))
            }),
            Op::Url(u) => scan_and_record(&mut scan, ScanEvent::Url(u)),
            Op::Link { href, text } => {
                scan_and_record(&mut scan, ScanEvent::Link { href, text })
            }
            Op::Envelope {
                helo,
                ip,
                v4,
                mail_from,
                rcpts,
            } => {
                let client_ip = if *v4 {
                    core::net::IpAddr::from([ip[0], ip[1], ip[2], ip[3]])
                } else {
                    core::net::IpAddr::from(*ip)
                };
                scan.set_envelope(&Envelope {
                    helo: helo.clone(),
                    client_ip,
                    mail_from: mail_from.clone(),
                    rcpts: rcpts.clone(),
                });
            }
            Op::Verdict => {
                let _ = scan.verdict();
            }
            Op::Finish(size) => scan.finish(*size),
        }
    }
    (scan.verdict(), scan.hit_names())
}

fuzz_target!(|input: Input| {
    let rules = RULES.get_or_init(|| {
        let source = RuleSource {
            origin: "fuzz".into(),
            text: format!("{DEFAULT_RULES}\n{STREAM_REGEXES}"),
        };
        Arc::new(CompiledRules::compile(&[source], 5.0).expect("the fuzz rules compile"))
    });
    let mut rec = Recorder::default();
    let whole = run(rules, &input, false, &mut rec);
    let split = run(rules, &input, true, &mut Recorder::default());
    assert_eq!(whole, split, "{input:?}");
    for &id in &whole.0.hits {
        let _ = rules.locate(id, &rec.events, 1 << 20, Some(0.5));
    }
});
