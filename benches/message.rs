//! Message pipeline throughput over the labelled corpus (`../shared/corpus/labels.tsv`), next to
//! a plain `memchr` newline count over the same bytes in the same run (and, for the walk, a
//! line-by-line `memchr` pass: one call per line, the floor of any line-oriented parser).
//!
//! `cargo bench --bench message -- --warm-up-time 1 --measurement-time 3`
//!
//! Groups: `header` (each message's top-level header block alone), `walk` (whole messages:
//! header parse, MIME walk, transfer and charset decoding, HTML reduction, URL finding) and
//! `disclaimer` (whole messages held, released and drained as the relay does, with a footer
//! armed (`on`) and without (`off`); the goal is on ≥ 0.9× off). All
//! messages are loaded into memory first; the mbox `From ` line is stripped.
//!
//! Each group runs twice: `wall/...` measures wall-clock time, `cpu/...` the benchmark thread's
//! CPU time, which is what one core delivers even when other work shares the machine (on a busy
//! box the wall-clock figures mostly measure the scheduler).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

#[path = "common/corpus.rs"]
mod corpus;

/// The relay's allocator (`src/main.rs`), so that per-message allocations cost what they cost
/// there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use conbool::message::{EditPlan, Footer, MessageLimits, Pipeline, ScanEvent, ScanSink};

fn limits() -> MessageLimits {
    MessageLimits {
        max_header_bytes: 262_144,
        scan_window: 65_536,
        max_mime_depth: 20,
        max_mime_parts: 500,
    }
}

/// The benchmark thread's CPU time.
struct CpuTime {
    wall: WallTime,
}

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }

    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Durations in nanoseconds, like wall time.
        self.wall.formatter()
    }
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_THREAD_CPUTIME_ID exists on every platform this bench runs on (Linux).
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Counts what the scanner would look at, so nothing is optimised away.
#[derive(Default)]
struct CountSink {
    events: usize,
    bytes: usize,
}

impl ScanSink for CountSink {
    fn event(&mut self, ev: ScanEvent<'_>) {
        self.events += 1;
        if let ScanEvent::Text(b) | ScanEvent::RawBody(b) | ScanEvent::Url(b) = ev {
            self.bytes += b.len();
        }
    }
}

/// Runs one message through the pipeline; returns what the sink counted.
fn walk(msg: &Bytes, sink: &mut CountSink) {
    let mut p = Pipeline::new(limits());
    let _ = p.feed(msg.clone(), sink);
    let _ = p.finish(sink);
}

/// The top-level header block of each message (as the pipeline delimits it).
fn header_blocks(corpus: &[Bytes]) -> Vec<Bytes> {
    corpus
        .iter()
        .map(|m| {
            let mut p = Pipeline::new(limits());
            let mut sink = CountSink::default();
            let mut fed = 0;
            // Feed line by line until the header is complete.
            for line in m.split_inclusive(|&b| b == b'\n') {
                let _ = p.feed(m.slice(fed..fed + line.len()), &mut sink);
                fed += line.len();
                if p.header_complete() {
                    break;
                }
            }
            m.slice(..fed)
        })
        .collect()
}

fn newline_count(msgs: &[Bytes]) -> usize {
    msgs.iter()
        .map(|m| memchr::memchr_iter(b'\n', m).count())
        .sum()
}

/// Line by line, as any line-oriented parser must go: one `memchr` call per line (the
/// count above is a single vectorised pass that never stops at a line).
fn line_walk(msgs: &[Bytes]) -> usize {
    let mut lines = 0;
    for m in msgs {
        let mut rest: &[u8] = m;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            rest = &rest[i + 1..];
            lines += 1;
        }
    }
    lines
}

fn benches<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let corpus = corpus::load_labelled();
    if corpus.is_empty() {
        return;
    }
    let total: usize = corpus.iter().map(Bytes::len).sum();
    let headers = header_blocks(&corpus);
    let header_total: usize = headers.iter().map(Bytes::len).sum();
    eprintln!(
        "corpus: {} messages, {} bytes ({} in header blocks)",
        corpus.len(),
        total,
        header_total
    );

    let mut g = c.benchmark_group(format!("{clock}/header"));
    g.sample_size(20);
    g.throughput(Throughput::Bytes(header_total as u64));
    g.bench_function("memchr_newlines", |b| {
        b.iter(|| black_box(newline_count(&headers)))
    });
    g.bench_function("parse", |b| {
        b.iter(|| {
            let mut sink = CountSink::default();
            for h in &headers {
                walk(h, &mut sink);
            }
            black_box((sink.events, sink.bytes))
        })
    });
    g.finish();

    let mut g = c.benchmark_group(format!("{clock}/walk"));
    g.sample_size(20);
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("memchr_newlines", |b| {
        b.iter(|| black_box(newline_count(&corpus)))
    });
    g.bench_function("memchr_lines", |b| b.iter(|| black_box(line_walk(&corpus))));
    g.bench_function("walk_decode", |b| {
        b.iter(|| {
            let mut sink = CountSink::default();
            for m in &corpus {
                walk(m, &mut sink);
            }
            black_box((sink.events, sink.bytes))
        })
    });
    g.finish();
}

/// One message through the pipeline as the relay runs it (held, released, output drained),
/// with or without a disclaimer armed; returns the output bytes.
fn relay_through(msg: &Bytes, footer: Option<&Arc<Footer>>, sink: &mut CountSink) -> usize {
    let mut p = Pipeline::new(limits());
    if footer.is_some() {
        p.track_parts();
    }
    let _ = p.feed(msg.clone(), sink);
    let _ = p.finish(sink);
    let mut plan = EditPlan::default();
    if let Some(f) = footer {
        let _ = p.arm_disclaimer(f, "example.com", "=_conbool_disclaimer_1_=", &mut plan);
    }
    p.release(&plan);
    let mut n = 0;
    while let Some(b) = p.poll_output() {
        n += b.len();
    }
    n
}

fn disclaimer_benches<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let corpus = corpus::load_labelled();
    if corpus.is_empty() {
        return;
    }
    let total: usize = corpus.iter().map(Bytes::len).sum();
    let footer = Arc::new(Footer::new(
        "-- \nExample Ltd, registered in England and Wales, no. 0000000",
        "<p>Example Ltd, registered in England and Wales, no. 0000000</p>",
    ));
    let mut g = c.benchmark_group(format!("{clock}/disclaimer"));
    g.sample_size(20);
    g.throughput(Throughput::Bytes(total as u64));
    for (name, f) in [("off", None), ("on", Some(&footer))] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut sink = CountSink::default();
                let n: usize = corpus.iter().map(|m| relay_through(m, f, &mut sink)).sum();
                black_box((n, sink.events))
            })
        });
    }
    g.finish();
}

fn wall(c: &mut Criterion) {
    benches(c, "wall");
    disclaimer_benches(c, "wall");
}

fn cpu(c: &mut Criterion<CpuTime>) {
    benches(c, "cpu");
    disclaimer_benches(c, "cpu");
}

criterion_group!(wall_clock, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(CpuTime { wall: WallTime });
    targets = cpu
}
criterion_main!(wall_clock, cpu_time);
