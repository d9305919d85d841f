//! One pass of the message pipeline over the labelled corpus (`../shared/corpus/labels.tsv`),
//! the same work as the `walk_decode` bench, for instruction counts that do not drift with the
//! machine's load:
//!
//! ```text
//! cargo build --release --example walk_profile
//! valgrind --tool=callgrind ./target/release/examples/walk_profile
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>
//! ```
//!
//! With `digest` as its argument it prints a hash of every scan event instead (run it before
//! and after a change: an optimisation must not change it). With `time N` it walks the corpus N
//! times and prints the fastest and the median pass (wall clock, corpus loading excluded): on a
//! shared machine the fastest pass is the least disturbed one.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

#[path = "../benches/common/corpus.rs"]
mod corpus;

/// The relay's allocator (`src/main.rs`), so that per-message allocations cost what they cost
/// there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use conbool::message::{MessageLimits, Pipeline, ScanEvent, ScanSink};

/// Counts text bytes, or hashes every event when `digest` is on.
struct Sink {
    digest: Option<DefaultHasher>,
    events: usize,
    bytes: usize,
}

impl ScanSink for Sink {
    fn event(&mut self, ev: ScanEvent<'_>) {
        self.events += 1;
        if let Some(h) = &mut self.digest {
            format!("{ev:?}").hash(h);
        }
        if let ScanEvent::Text(b) | ScanEvent::RawBody(b) | ScanEvent::Url(b) = ev {
            self.bytes += b.len();
        }
    }
}

fn main() {
    let corpus = corpus::load_labelled();
    if corpus.is_empty() {
        return;
    }
    let limits = MessageLimits {
        max_header_bytes: 262_144,
        scan_window: 65_536,
        max_mime_depth: 20,
        max_mime_parts: 500,
    };
    if std::env::args().nth(1).as_deref() == Some("time") {
        let n: usize = std::env::args()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(20);
        time_passes(&corpus, limits, n.max(1));
        return;
    }
    let digest = std::env::args().nth(1).as_deref() == Some("digest");
    let mut sink = Sink {
        digest: digest.then(DefaultHasher::new),
        events: 0,
        bytes: 0,
    };
    for m in &corpus {
        let mut p = Pipeline::new(limits);
        let _ = p.feed(m.clone(), &mut sink);
        let _ = p.finish(&mut sink);
    }
    print!("events {} bytes {}", sink.events, sink.bytes);
    match sink.digest {
        Some(h) => println!(" digest {:016x}", h.finish()),
        None => println!(),
    }
}

/// Walks the corpus `n` times; prints the fastest and the median pass and the rate they give.
fn time_passes(corpus: &[bytes::Bytes], limits: MessageLimits, n: usize) {
    let total: usize = corpus.iter().map(|m| m.len()).sum();
    let mut passes = Vec::with_capacity(n);
    for _ in 0..n {
        let mut sink = Sink {
            digest: None,
            events: 0,
            bytes: 0,
        };
        let t = std::time::Instant::now();
        for m in corpus {
            let mut p = Pipeline::new(limits);
            let _ = p.feed(m.clone(), &mut sink);
            let _ = p.finish(&mut sink);
        }
        passes.push(t.elapsed());
        std::hint::black_box(sink.events);
    }
    passes.sort();
    let rate = |d: std::time::Duration| total as f64 / d.as_secs_f64() / 1e9;
    let (min, median) = (passes[0], passes[n / 2]);
    println!(
        "{n} passes over {total} bytes: fastest {:.2} ms ({:.3} GB/s), median {:.2} ms ({:.3} GB/s)",
        min.as_secs_f64() * 1e3,
        rate(min),
        median.as_secs_f64() * 1e3,
        rate(median)
    );
}
