//! Passes of the rule engine over the scan events of the `rules` bench (every 8th labelled
//! message, `benches/common/rule_sets.rs`), for instruction counts that do not drift with the
//! machine's load. One rule set per run, named as in the bench:
//!
//! ```text
//! cargo build --release --example rules_profile
//! for set in default default+1000phrases default+100regexes default+1000phrases+100regexes; do
//!   valgrind --tool=callgrind --toggle-collect=rules_profile::passes \
//!     --callgrind-out-file=cg.$set ./target/release/examples/rules_profile $set 5
//! done
//! callgrind_annotate --inclusive=yes cg.default+1000phrases+100regexes | head -40
//! ```
//!
//! `--toggle-collect` counts only the timed part (the passes), not the rule compilation or the
//! pipeline that makes the events; the ratio of two sets' totals is the bench's ratio. Without
//! valgrind it also prints the passes' throughput (a rough figure: the bench is the timed one).

use std::sync::Arc;

use conbool::rules::{CompiledRules, Scan};

/// The relay's allocator, so that per-message allocations cost what they cost there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../benches/common/corpus.rs"]
#[allow(dead_code)]
mod corpus;

#[path = "../benches/common/events.rs"]
#[allow(dead_code)]
mod events;
use events::{replay, Ev};

#[path = "../benches/common/rule_sets.rs"]
mod rule_sets;

/// One scan of every message; returns how many were spam (so nothing is optimised away).
#[inline(never)]
fn scan_all(rules: &Arc<CompiledRules>, evs: &[Vec<Ev>], sizes: &[u64]) -> usize {
    let mut spam = 0;
    for (ev, &size) in evs.iter().zip(sizes) {
        let mut scan = Scan::new(Arc::clone(rules));
        replay(ev, &mut scan);
        scan.finish(size);
        spam += usize::from(scan.verdict().spam);
    }
    spam
}

/// `n` scans of every message (the part callgrind counts).
#[inline(never)]
fn passes(rules: &Arc<CompiledRules>, evs: &[Vec<Ev>], sizes: &[u64], n: usize) -> usize {
    (0..n).map(|_| scan_all(rules, evs, sizes)).sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let want = args.next().unwrap_or_else(|| "default".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let Some((name, rules)) = rule_sets::sets()
        .into_iter()
        .find(|(name, _)| *name == want)
    else {
        eprintln!("unknown set {want:?}: default, default+1000phrases, default+100regexes, default+1000phrases+100regexes");
        std::process::exit(2);
    };
    let msgs = rule_sets::messages();
    let sizes: Vec<u64> = msgs.iter().map(|m| m.len() as u64).collect();
    let evs: Vec<Vec<Ev>> = msgs.iter().map(|m| rule_sets::events(m)).collect();
    // A first pass outside the count, as criterion warms up: the regexes' lazy DFAs fill their
    // caches here.
    scan_all(&rules, &evs, &sizes);
    let started = std::time::Instant::now();
    let spam = passes(&rules, &evs, &sizes, n);
    let secs = started.elapsed().as_secs_f64();
    let bytes = sizes.iter().sum::<u64>();
    println!(
        "{name}: {} messages, {bytes} bytes, {n} passes, {spam} spam verdicts, {:.1} MiB/s",
        msgs.len(),
        (bytes * n as u64) as f64 / secs / (1 << 20) as f64
    );
}
