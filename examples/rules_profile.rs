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
//! `rules_profile interleaved 40` times the four sets in turn, a pass of each per round, and
//! prints medians: on a machine whose load comes and goes, the ratios drift less than between
//! criterion's benchmarks, which run one after the other.

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
    if want == "interleaved" {
        let sets = if args.next().is_some_and(|a| a == "targets") {
            target_sets()
        } else {
            rule_sets::sets()
        };
        interleaved(&sets, n);
        return;
    }
    let found = |sets: Vec<(&'static str, Arc<CompiledRules>)>| {
        sets.into_iter().find(|(name, _)| *name == want)
    };
    let Some((name, rules)) = found(rule_sets::sets())
        .or_else(|| found(target_sets()))
        .or_else(|| scaled_set(&want))
    else {
        eprintln!("unknown set {want:?}: default, default+1000phrases, default+100regexes, default+1000phrases+100regexes, default+TARGET (body, header, any_header, raw, url_host), default+Pp+Rr (P generated phrases, R generated regexes)");
        std::process::exit(2);
    };
    let (msgs, sizes, evs) = corpus();
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

/// The bench's messages, their sizes and their scan events.
fn corpus() -> (Vec<Vec<u8>>, Vec<u64>, Vec<Vec<Ev>>) {
    let msgs = rule_sets::messages();
    let sizes = msgs.iter().map(|m| m.len() as u64).collect();
    let evs = msgs.iter().map(|m| rule_sets::events(m)).collect();
    (msgs, sizes, evs)
}

/// `interleaved ROUNDS [targets]`: every set timed in turn, one pass each per round (the order
/// rotates), so that load that comes and goes weighs on every set alike; prints each set's
/// median pass time and the median of its per-round ratio to the default set's pass. A rough
/// figure beside the bench on a busy machine, not instead of it.
fn interleaved(sets: &[(&'static str, Arc<CompiledRules>)], rounds: usize) {
    let (_, sizes, evs) = corpus();
    for (_, rules) in sets {
        scan_all(rules, &evs, &sizes);
    }
    let mut times = vec![Vec::with_capacity(rounds); sets.len()];
    for round in 0..rounds.max(1) {
        for k in 0..sets.len() {
            let i = (round + k) % sets.len();
            let started = std::time::Instant::now();
            std::hint::black_box(scan_all(&sets[i].1, &evs, &sizes));
            times[i].push(started.elapsed().as_secs_f64());
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let bytes = sizes.iter().sum::<u64>() as f64;
    for (i, (name, _)) in sets.iter().enumerate() {
        let ratios: Vec<f64> = times[i].iter().zip(&times[0]).map(|(t, d)| t / d).collect();
        let t = median(times[i].clone());
        println!(
            "{name:32} median {:7.3} ms ({:6.1} MiB/s), median ratio to default {:.2}x",
            t * 1e3,
            bytes / t / (1 << 20) as f64,
            median(ratios)
        );
    }
}

/// `default+Pp+Rr`: the default rules plus `P` generated phrase rules and `R` generated regex
/// rules (the bench's generator), to see how the time grows with the number of rules.
fn scaled_set(want: &str) -> Option<(&'static str, Arc<CompiledRules>)> {
    let (p, r) = want.strip_prefix("default+")?.split_once('+')?;
    let phrases: usize = p.strip_suffix('p')?.parse().ok()?;
    let regexes: usize = r.strip_suffix('r')?.parse().ok()?;
    let rules = rule_sets::compile_generated(rule_sets::big_rules(phrases, regexes));
    let name: &'static str = Box::leak(want.to_owned().into_boxed_str());
    Some((name, rules))
}

/// The default rules plus the generated regex rules of one target at a time (`interleaved N
/// targets`): which target's regexes cost more time than their instruction count says.
fn target_sets() -> Vec<(&'static str, Arc<CompiledRules>)> {
    let text = rule_sets::big_rules(0, 100);
    let mut sets = vec![("default", CompiledRules::builtin(5.0))];
    for target in ["body", "header", "any_header", "raw", "url_host"] {
        let mut rules: Vec<&str> = text.split("\n[[rule]]").collect();
        rules.retain(|r| {
            !r.contains("name = \"GEN_R") || r.contains(&format!("target = \"{target}\"\n"))
        });
        let name: &'static str = Box::leak(format!("default+{target}").into_boxed_str());
        sets.push((name, rule_sets::compile_generated(rules.join("\n[[rule]]"))));
    }
    sets
}
