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
//! and after a change: an optimisation must not change it).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

#[path = "../benches/common/corpus.rs"]
mod corpus;

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
