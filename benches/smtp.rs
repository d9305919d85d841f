//! SMTP layer throughput over the labelled corpus (`../shared/corpus/labels.tsv`), next to a
//! plain `memchr` newline count over the same bytes in the same run.
//!
//! `cargo bench --bench smtp -- --warm-up-time 1 --measurement-time 3`
//!
//! Groups: `data_decode` (the server's DATA decoder: end-of-data search and dot-unstuffing of
//! each message as a client sends it, canonical CRLF and dot-stuffed), `data_encode` (the
//! client's DATA encoder: dot-stuffing and CRLF canonicalisation into an output queue) and
//! `command` (parsing a typical pipelined envelope).

use std::path::Path;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use conbool::cli::replay::corpus::{canonical_crlf, strip_from_line};
use conbool::config::BareLf;
use conbool::smtp::command;
use conbool::smtp::data::DataDecoder;
use conbool::smtp::encode::DataEncoder;
use conbool::smtp::outbound::Outbound;

/// The relay's allocator (`src/main.rs`), so that per-message allocations cost what they cost
/// there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The labelled corpus as a client would send it after `354`: CRLF, dot-stuffed, terminated.
fn stuffed_corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let Ok(labels) = std::fs::read_to_string(root.join("labels.tsv")) else {
        eprintln!("skipping: no corpus at {}", root.display());
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in labels.lines().skip(1) {
        let Some(path) = line.split('\t').next() else {
            continue;
        };
        let Ok(raw) = std::fs::read(root.join(path)) else {
            continue;
        };
        let crlf = canonical_crlf(strip_from_line(&raw)).into_owned();
        let mut stuffed = Vec::with_capacity(crlf.len() + 64);
        for l in crlf.split_inclusive(|&b| b == b'\n') {
            if l.first() == Some(&b'.') {
                stuffed.push(b'.');
            }
            stuffed.extend_from_slice(l);
        }
        if !stuffed.ends_with(b"\r\n") {
            stuffed.extend_from_slice(b"\r\n");
        }
        stuffed.extend_from_slice(b".\r\n");
        out.push(stuffed);
    }
    out
}

fn bench(c: &mut Criterion) {
    let corpus = stuffed_corpus();
    if corpus.is_empty() {
        return;
    }
    let bytes: u64 = corpus.iter().map(|m| m.len() as u64).sum();
    let pieces: Vec<Bytes> = corpus.iter().map(|m| Bytes::copy_from_slice(m)).collect();

    let mut g = c.benchmark_group("data_decode");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("memchr_baseline", |b| {
        b.iter(|| {
            corpus
                .iter()
                .map(|m| memchr::memchr_iter(b'\n', m).count())
                .sum::<usize>()
        })
    });
    g.bench_function("decoder", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            let mut n = 0;
            for m in &corpus {
                out.clear();
                let mut d = DataDecoder::new(BareLf::Normalize);
                n += d.feed(black_box(m), &mut out).consumed;
            }
            n
        })
    });
    g.finish();

    let mut g = c.benchmark_group("data_encode");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("memcpy_baseline", |b| {
        let mut sink = Vec::with_capacity(bytes as usize);
        b.iter(|| {
            sink.clear();
            for m in &corpus {
                sink.extend_from_slice(m);
            }
            sink.len()
        })
    });
    g.bench_function("encoder", |b| {
        b.iter(|| {
            let mut total = 0;
            for p in &pieces {
                let mut out = Outbound::new();
                let mut e = DataEncoder::new();
                e.encode(p.clone(), &mut out);
                total += out.len();
            }
            total
        })
    });
    g.finish();

    let envelope: &[&[u8]] = &[
        b"EHLO client.example.com",
        b"MAIL FROM:<sender@example.com> SIZE=20480 BODY=8BITMIME",
        b"RCPT TO:<rcpt@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;rcpt@example.com",
        b"DATA",
    ];
    let mut g = c.benchmark_group("command");
    g.throughput(Throughput::Elements(envelope.len() as u64));
    g.bench_function("parse_envelope", |b| {
        b.iter(|| {
            envelope
                .iter()
                .filter(|l| command::parse(black_box(l)).is_ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
