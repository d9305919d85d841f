//! What the statistical classifier adds to scan time: the same messages scanned with the
//! default rules, and with the default rules plus a classifier model, in the same run.
//!
//! `cargo bench --bench classify -- --warm-up-time 1 --measurement-time 3`
//!
//! Two groups: `classify/events` replays each message's scan events (made once, outside the
//! timed loop) into a `Scan`, as `benches/rules.rs` does; `classify/message` runs the whole
//! per-message path of `conbool scan` (pipeline, rules, verdict at the scan window). Input:
//! every 8th labelled message of `../shared/corpus` (generated messages when it is absent);
//! the model is trained on all of them. Throughput counts message bytes.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use conbool::classify::{train, TrainParams};
use conbool::cli::scan::{default_limits, scan_message};
use conbool::cli::train::features_with_rules;
use conbool::rules::{CompiledRules, RuleSource, Scan, DEFAULT_RULES};

#[path = "common/corpus.rs"]
#[allow(dead_code)]
mod corpus;
use corpus::{corpus_dir, labelled_sample};

#[path = "common/events.rs"]
mod events;
use conbool::message::Recorded;
use events::{pipeline_events, replay};

/// Labelled messages (bytes, spam): every 8th of the shared corpus, or generated ones.
fn messages() -> Vec<(Vec<u8>, bool)> {
    let out = labelled_sample(8);
    if !out.is_empty() {
        return out;
    }
    eprintln!(
        "no corpus at {}: using generated messages",
        corpus_dir().display()
    );
    (0..400)
        .map(|i| {
            let spam = i % 2 == 0;
            let words = if spam {
                "cheap pills offer click here now limited "
            } else {
                "meeting notes for the project review attached "
            };
            let m = format!(
                "From: a{i}@example.com\r\nTo: b@example.org\r\nSubject: note {i}\r\n\r\n{}\r\n",
                words.repeat(20 + i % 50)
            );
            (m.into_bytes(), spam)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let msgs = messages();
    let bytes: u64 = msgs.iter().map(|(m, _)| m.len() as u64).sum();
    let limits = default_limits();
    let source = RuleSource {
        origin: "built-in".into(),
        text: DEFAULT_RULES.into(),
    };
    let rules =
        Arc::new(CompiledRules::compile(std::slice::from_ref(&source), 5.0).expect("compiles"));
    let features: Vec<(Vec<u32>, bool)> = msgs
        .iter()
        .map(|(m, s)| (features_with_rules(&rules, limits, m), *s))
        .collect();
    let examples: Vec<(&[u32], bool)> = features.iter().map(|(f, s)| (f.as_slice(), *s)).collect();
    let model = Arc::new(train(&examples, &[], &TrainParams::default()).expect("trains"));
    let with_model = Arc::new(
        CompiledRules::compile(&[source], 5.0)
            .expect("compiles")
            .with_model(model)
            .expect("attaches"),
    );
    let evs: Vec<Vec<Recorded>> = msgs
        .iter()
        .map(|(m, _)| pipeline_events(m).unwrap_or_default())
        .collect();
    eprintln!("{} messages, {} bytes", msgs.len(), bytes);

    let mut g = c.benchmark_group("classify/events");
    g.throughput(Throughput::Bytes(bytes));
    for (name, r) in [("rules", &rules), ("rules+classifier", &with_model)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut spam = 0;
                for (ev, (m, _)) in evs.iter().zip(&msgs) {
                    let mut scan = Scan::new(Arc::clone(r));
                    replay(ev, &mut scan);
                    scan.finish(m.len() as u64);
                    spam += usize::from(scan.verdict().spam);
                }
                spam
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("classify/message");
    g.throughput(Throughput::Bytes(bytes));
    for (name, r) in [("rules", &rules), ("rules+classifier", &with_model)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                msgs.iter()
                    .filter(|(m, _)| scan_message(r, limits, m).spam)
                    .count()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
