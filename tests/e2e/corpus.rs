//! The labelled real-world corpus (`../shared/corpus`) through the relay to the project's sink:
//! every message the replayer had accepted arrives exactly once, byte for byte, apart from the
//! relay's prepended header fields (DATA canonicalises line ends to CRLF on the way in).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use conbool::cli::replay::{self, Corpus, Limit, ReplayOptions};
use conbool::cli::sink::{Sink, SinkOptions};
use conbool::config::Config;
use conbool::reactor::{self, RelayOptions};
use conbool::relay::session::Snapshot;
use conbool::relay::stamp::SCORE_HEADER;
use conbool::rules::CompiledRules;

fn shared_corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: no corpus at {}", dir.display());
        None
    }
}

/// The content after the relay's last field.
fn after_stamp(data: &[u8]) -> &[u8] {
    let marker = format!("\r\n{SCORE_HEADER}: ");
    let at = memchr::memmem::find(data, marker.as_bytes()).expect("relay fields present");
    let end = at + 2 + memchr::memmem::find(&data[at + 2..], b"\r\n").unwrap() + 2;
    &data[end..]
}

/// What the next hop must see for a corpus message sent with DATA: CRLF line ends, ending in
/// CRLF.
fn expected(content: &[u8]) -> Vec<u8> {
    let mut v = replay::corpus::canonical_crlf(content).into_owned();
    if !v.ends_with(b"\r\n") {
        v.extend_from_slice(b"\r\n");
    }
    v
}

#[test]
fn labelled_corpus_arrives_byte_exact_through_the_relay() {
    let Some(dir) = shared_corpus() else { return };
    let mut corpus = Corpus::default();
    for source in ["spamassassin", "csdmc2010", "foff-milter"] {
        let part = Corpus::load(&dir.join(source)).expect("corpus loads");
        corpus.bytes += part.bytes;
        corpus.messages.extend(part.messages);
    }
    assert!(
        corpus.len() >= 4000,
        "labelled corpus has {} messages",
        corpus.len()
    );

    let sink = Sink::spawn(SinkOptions {
        keep_messages: true,
        ..SinkOptions::default()
    })
    .unwrap();
    let mut config = Config::embedded_defaults();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 2;
    config.tenants[0].next_hop = sink.addr.to_string();
    let rules = CompiledRules::builtin(config.spam.threshold);
    let relay = reactor::spawn(
        Snapshot {
            config: Arc::new(config),
            rules,
        },
        &RelayOptions {
            log_messages: false,
        },
    )
    .unwrap();
    let mut opts = ReplayOptions::new(relay.local_addrs[0]);
    opts.sessions = 8;
    opts.limit = Limit::CorpusOnce;
    // One envelope for all: the corpus's own headers name recipients nobody owns here.
    opts.mail_from = replay::corpus::parse_reverse_path("sender@example.com");
    opts.rcpt_to = vec![replay::corpus::parse_forward_path("rcpt@example.com").unwrap()];
    let report = replay::run_replay_corpus(&opts, &corpus).unwrap();
    relay.stop().unwrap();
    let received = sink.take_messages();
    sink.stop().unwrap();

    let mut want: HashMap<Vec<u8>, usize> = HashMap::new();
    for m in &corpus.messages {
        *want.entry(expected(&m.content)).or_default() += 1;
    }
    let mut unmatched = 0;
    for msg in &received {
        match want.get_mut(after_stamp(&msg.data)) {
            Some(n) if *n > 0 => *n -= 1,
            _ => unmatched += 1,
        }
    }
    println!(
        "corpus: {} messages sent, {} accepted, {} delivered, {} unmatched",
        report.attempted,
        report.accepted,
        received.len(),
        unmatched
    );
    assert_eq!(
        report.accepted,
        corpus.len() as u64,
        "every message accepted: {report:?}"
    );
    assert_eq!(
        received.len() as u64,
        report.accepted,
        "each accepted message delivered once"
    );
    assert_eq!(
        unmatched, 0,
        "every delivered message byte-exact after the relay's fields"
    );
}
