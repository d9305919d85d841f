//! Rule engine throughput: scan events of real messages with the default rules, and with the
//! default rules plus 1,000 generated phrase rules and 100 generated regex rules.
//!
//! `cargo bench --bench rules -- --warm-up-time 1 --measurement-time 3`
//!
//! Input: every 8th labelled message of `../shared/corpus` (falls back to generated messages
//! when the corpus is absent), turned into scan events by the message pipeline once, outside
//! the timed loop. Throughput counts message bytes (what the relay receives), not event bytes.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use conbool::rules::Scan;

/// The relay's allocator (`src/main.rs`), so that per-message allocations cost what they cost
/// there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/corpus.rs"]
#[allow(dead_code)]
mod corpus;

#[path = "common/events.rs"]
mod events;
use conbool::message::Recorded;
use events::replay;

#[path = "common/rule_sets.rs"]
mod rule_sets;
use rule_sets::{events, messages, sets};

fn bench(c: &mut Criterion) {
    let msgs = messages();
    let bytes: u64 = msgs.iter().map(|m| m.len() as u64).sum();
    let evs: Vec<Vec<Recorded>> = msgs.iter().map(|m| events(m)).collect();
    let sets = sets();
    eprintln!(
        "{} messages, {} bytes; default {} rules, big {} rules",
        msgs.len(),
        bytes,
        sets[0].1.len(),
        sets[3].1.len()
    );
    let mut counts = [0usize; 7];
    let mut sizes = [0usize; 7];
    for ev in evs.iter().flatten() {
        let (k, n) = match ev {
            Recorded::Header { name, value, .. } => (0, name.len() + value.len()),
            Recorded::HeaderEnd => (1, 0),
            Recorded::PartStart { content_type, .. } => (2, content_type.len()),
            Recorded::Text(t) => (3, t.len()),
            Recorded::RawBody(r) => (4, r.len()),
            Recorded::Url(u) => (5, u.len()),
            Recorded::Link { href, text } => (6, href.len() + text.len()),
        };
        counts[k] += 1;
        sizes[k] += n;
    }
    eprintln!(
        "events (count/bytes): header {}/{}, part {}, text {}/{}, raw {}/{}, url {}/{}, link {}",
        counts[0],
        sizes[0],
        counts[2],
        counts[3],
        sizes[3],
        counts[4],
        sizes[4],
        counts[5],
        sizes[5],
        counts[6]
    );
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Bytes(bytes));
    for (name, rules) in &sets {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut spam = 0;
                for (ev, m) in evs.iter().zip(&msgs) {
                    let mut scan = Scan::new(Arc::clone(rules));
                    replay(ev, &mut scan);
                    scan.finish(m.len() as u64);
                    spam += usize::from(scan.verdict().spam);
                }
                spam
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
