//! `conbool demo`: the whole system in one process on ephemeral loopback ports. A sink plays
//! the tenant's Exchange, the relay runs on its embedded defaults, and the replayer sends the
//! bundled corpus twice: straight to the sink (the baseline) and through the relay. Every
//! message the relay accepted is then checked byte for byte against the corpus, apart from the
//! header fields the relay adds.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::replay::{self, Corpus, Limit, ReplayOptions, ReplayReport};
use crate::cli::sink::{ReceivedMessage, Sink, SinkOptions};
use crate::config::Config;
use crate::reactor::{self, RelayOptions};
use crate::relay::session::Snapshot;
use crate::relay::stamp::{FLAG_HEADER, SCORE_HEADER};
use crate::rules::CompiledRules;

/// Flags of `conbool demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Messages to send through the relay (the corpus repeats as needed); default: the corpus
    /// three times.
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// Concurrent client sessions.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub sessions: usize,
    /// Corpus directory; default: the bundled `corpus/`.
    #[arg(long, value_name = "DIR")]
    pub corpus: Option<PathBuf>,
    /// Relay workers (0 = one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub workers: usize,
}

/// What a demo run found.
#[derive(Debug)]
pub struct DemoReport {
    /// Replay straight to the sink.
    pub direct: ReplayReport,
    /// Replay through the relay.
    pub relayed: ReplayReport,
    /// Messages the sink received through the relay.
    pub delivered: u64,
    /// Of those, how many matched a corpus message byte for byte after our header fields.
    pub verified: u64,
    /// Content bytes so verified.
    pub bytes_verified: u64,
    /// Delivered messages flagged `X-Conbool-Flag: YES`.
    pub flagged: u64,
    /// Delivered messages the corpus manifest expects to be flagged.
    pub expected_spam: u64,
    /// Problems found (an empty list means the demo passed).
    pub problems: Vec<String>,
}

/// Runs the demo and returns its findings.
pub fn run_demo(args: &DemoArgs) -> io::Result<DemoReport> {
    let dir = args
        .corpus
        .clone()
        .unwrap_or_else(replay::corpus::default_corpus_dir);
    let corpus = Corpus::load(&dir)?;
    if corpus.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no messages in {}", dir.display()),
        ));
    }
    let messages = args.messages.unwrap_or(corpus.len() as u64 * 3);
    let expected_spam_files = manifest_spam(&dir);

    // The baseline: the same replay straight into a sink.
    let direct_sink = Sink::spawn(SinkOptions::default())?;
    let mut opts = ReplayOptions::new(direct_sink.addr);
    opts.sessions = args.sessions;
    opts.limit = Limit::Messages(messages);
    let direct = replay::run_replay_corpus(&opts, &corpus)?;
    direct_sink.stop()?;

    // The relay on its embedded defaults, in front of a sink that keeps what it gets.
    let sink = Sink::spawn(SinkOptions {
        keep_messages: true,
        ..SinkOptions::default()
    })?;
    let mut config = Config::embedded_defaults();
    config.server.listen = vec!["127.0.0.1:0".parse().expect("literal address")];
    config.server.workers = if args.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.workers
    };
    for t in &mut config.tenants {
        t.next_hop = sink.addr.to_string();
    }
    let rules = CompiledRules::builtin(config.spam.threshold);
    let relay = reactor::spawn(
        Snapshot {
            config: Arc::new(config),
            rules,
        },
        &RelayOptions {
            log_messages: false,
        },
    )?;
    let mut opts = ReplayOptions::new(relay.local_addrs[0]);
    opts.sessions = args.sessions;
    opts.limit = Limit::Messages(messages);
    let relayed = replay::run_replay_corpus(&opts, &corpus)?;
    relay.stop()?;
    let received = sink.take_messages();
    sink.stop()?;

    Ok(verify(
        &corpus,
        &expected_spam_files,
        direct,
        relayed,
        received,
    ))
}

/// `conbool demo`: prints the table; exit 0 when every accepted message arrived intact.
pub fn main(args: DemoArgs) -> ExitCode {
    match run_demo(&args) {
        Ok(report) => {
            print!("{}", render(&report));
            if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("conbool demo: {e}");
            ExitCode::from(1)
        }
    }
}

fn verify(
    corpus: &Corpus,
    expected_spam_files: &HashSet<String>,
    direct: ReplayReport,
    relayed: ReplayReport,
    received: Vec<ReceivedMessage>,
) -> DemoReport {
    // Corpus content → whether the manifest calls it spam.
    let mut originals: HashMap<&[u8], bool> = HashMap::new();
    for m in &corpus.messages {
        let name = m
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        originals.insert(&m.content[..], expected_spam_files.contains(&name));
    }
    let mut report = DemoReport {
        direct,
        relayed,
        delivered: received.len() as u64,
        verified: 0,
        bytes_verified: 0,
        flagged: 0,
        expected_spam: 0,
        problems: Vec::new(),
    };
    for (i, msg) in received.iter().enumerate() {
        let Some((stamp, rest)) = split_stamp(&msg.data) else {
            report.problems.push(format!(
                "message {i}: the relay's header fields are missing"
            ));
            continue;
        };
        let flagged = stamp.contains(&format!("{FLAG_HEADER}: YES"));
        report.flagged += u64::from(flagged);
        match originals.get(rest) {
            Some(&spam) => {
                report.verified += 1;
                report.bytes_verified += rest.len() as u64;
                report.expected_spam += u64::from(spam);
            }
            None => report.problems.push(format!(
                "message {i} ({} bytes) does not match any corpus message after the relay's fields",
                rest.len()
            )),
        }
    }
    if report.delivered != report.relayed.accepted {
        report.problems.push(format!(
            "the replayer had {} messages accepted but the sink received {}",
            report.relayed.accepted, report.delivered
        ));
    }
    if report.relayed.accepted != report.relayed.attempted {
        report.problems.push(format!(
            "only {} of {} messages were accepted through the relay",
            report.relayed.accepted, report.relayed.attempted
        ));
    }
    report
}

/// Splits a delivered message after the relay's last field (`X-Conbool-Score`), returning the
/// relay's fields as text and the original message.
fn split_stamp(data: &[u8]) -> Option<(String, &[u8])> {
    let marker = format!("\r\n{SCORE_HEADER}: ");
    let at = memchr::memmem::find(data, marker.as_bytes())?;
    let end = at + 2 + memchr::memmem::find(&data[at + 2..], b"\r\n")? + 2;
    Some((
        String::from_utf8_lossy(&data[..end]).into_owned(),
        &data[end..],
    ))
}

/// File names the corpus manifest marks `expected_spam = yes`.
fn manifest_spam(dir: &std::path::Path) -> HashSet<String> {
    let Ok(text) = std::fs::read_to_string(dir.join("MANIFEST.tsv")) else {
        return HashSet::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (cols.len() >= 4 && cols[3] == "yes").then(|| cols[0].to_string())
        })
        .collect()
}

/// The table `conbool demo` prints.
pub fn render(r: &DemoReport) -> String {
    let eod = |rep: &ReplayReport| rep.latencies.data.summary();
    let (d, x) = (eod(&r.direct), eod(&r.relayed));
    let ratio = if r.direct.msgs_per_sec() > 0.0 {
        r.relayed.msgs_per_sec() / r.direct.msgs_per_sec()
    } else {
        0.0
    };
    let mut s = String::new();
    s.push_str("conbool demo: replay → relay → sink on 127.0.0.1, against replay → sink\n\n");
    s.push_str(&format!(
        "{:<28}{:>14}{:>14}\n",
        "", "direct", "through relay"
    ));
    let row = |s: &mut String, name: &str, a: String, b: String| {
        s.push_str(&format!("{name:<28}{a:>14}{b:>14}\n"));
    };
    row(
        &mut s,
        "sessions",
        r.direct.sessions.to_string(),
        r.relayed.sessions.to_string(),
    );
    row(
        &mut s,
        "messages accepted",
        r.direct.accepted.to_string(),
        r.relayed.accepted.to_string(),
    );
    row(
        &mut s,
        "messages/s",
        format!("{:.0}", r.direct.msgs_per_sec()),
        format!("{:.0}", r.relayed.msgs_per_sec()),
    );
    row(
        &mut s,
        "MB/s",
        format!("{:.1}", r.direct.mb_per_sec()),
        format!("{:.1}", r.relayed.mb_per_sec()),
    );
    row(
        &mut s,
        "end of data→reply p50 µs",
        d.p50_us.to_string(),
        x.p50_us.to_string(),
    );
    row(
        &mut s,
        "end of data→reply p99 µs",
        d.p99_us.to_string(),
        x.p99_us.to_string(),
    );
    row(
        &mut s,
        "end of data→reply p99.9 µs",
        d.p999_us.to_string(),
        x.p999_us.to_string(),
    );
    row(
        &mut s,
        "end of data→reply max µs",
        d.max_us.to_string(),
        x.max_us.to_string(),
    );
    s.push_str(&format!(
        "\nthroughput through the relay: {ratio:.2}× direct\n"
    ));
    s.push_str(&format!(
        "delivered {} messages; {} verified byte-exact after the relay's header fields ({:.1} MB)\n",
        r.delivered,
        r.verified,
        r.bytes_verified as f64 / 1e6
    ));
    s.push_str(&format!(
        "flagged X-Conbool-Flag: YES: {} (the corpus manifest expects {} spam among them)\n",
        r.flagged, r.expected_spam
    ));
    if r.problems.is_empty() {
        s.push_str("result: ok\n");
    } else {
        for p in r.problems.iter().take(20) {
            s.push_str(&format!("problem: {p}\n"));
        }
        s.push_str(&format!("result: {} problems\n", r.problems.len()));
    }
    s
}
