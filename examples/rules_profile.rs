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
//!
//! `rules_profile digest SET` prints how many rules hit over the bench's messages and a hash of
//! every message's hits: a change that must not change what the rules find must not change it.
//!
//! `rules_profile teddy 20 NEEDLE...` times what a target's regexes cost at least: the bench's
//! body text (its `Text` events, joined) lower-cased, and one Teddy searcher over the needles
//! (leftmost-longest, restarted one byte after each start, as `src/rules/line.rs` searches),
//! against a pass of the default set, 20 rounds, medians.

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
use conbool::message::Recorded;
use events::replay;

#[path = "../benches/common/rule_sets.rs"]
mod rule_sets;

/// One scan of every message; returns how many were spam (so nothing is optimised away).
#[inline(never)]
fn scan_all(rules: &Arc<CompiledRules>, evs: &[Vec<Recorded>], sizes: &[u64]) -> usize {
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
fn passes(rules: &Arc<CompiledRules>, evs: &[Vec<Recorded>], sizes: &[u64], n: usize) -> usize {
    (0..n).map(|_| scan_all(rules, evs, sizes)).sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let want = args.next().unwrap_or_else(|| "default".into());
    if want == "digest" {
        digest(args.next().as_deref().unwrap_or("default"));
        return;
    }
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    if want == "teddy" {
        teddy(n, args.collect());
        return;
    }
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
fn corpus() -> (Vec<Vec<u8>>, Vec<u64>, Vec<Vec<Recorded>>) {
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

/// `teddy ROUNDS NEEDLE...`: the body text lower-cased and searched for the needles, alone,
/// against a pass of the default rules (median of each over the rounds).
fn teddy(rounds: usize, needles: Vec<String>) {
    let mut builder = aho_corasick::packed::Config::new()
        .match_kind(aho_corasick::packed::MatchKind::LeftmostLongest)
        .builder();
    for n in &needles {
        builder.add(n.to_ascii_lowercase());
    }
    let Some(searcher) = builder.build() else {
        eprintln!(
            "no Teddy searcher for {} needles on this machine",
            needles.len()
        );
        std::process::exit(2);
    };
    let (_, sizes, evs) = corpus();
    let text: Vec<u8> = evs
        .iter()
        .flatten()
        .filter_map(|e| match e {
            Recorded::Text(t) => Some(t.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect();
    let default = CompiledRules::builtin(5.0);
    let mut lower = Vec::with_capacity(text.len());
    let (mut t_lower, mut t_search, mut t_default) = (Vec::new(), Vec::new(), Vec::new());
    let mut starts = 0;
    for _ in 0..rounds.max(1) {
        let t = std::time::Instant::now();
        lower.clear();
        lower.extend(text.iter().map(u8::to_ascii_lowercase));
        t_lower.push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        starts = 0;
        let mut at = 0;
        while let Some(m) = searcher.find_in(&lower, aho_corasick::Span::from(at..lower.len())) {
            starts += 1;
            at = m.start() + 1;
        }
        t_search.push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        std::hint::black_box(scan_all(&default, &evs, &sizes));
        t_default.push(t.elapsed().as_secs_f64());
    }
    let ms = |v: Vec<f64>| median(v) * 1e3;
    let (l, s, d) = (ms(t_lower), ms(t_search), ms(t_default));
    println!(
        "{} text bytes, {} needles, {starts} starts: lower-case {l:.3} ms, Teddy {s:.3} ms ({:.0} MiB/s), default pass {d:.3} ms; (lower-case + Teddy) / default = {:.2}",
        text.len(),
        needles.len(),
        text.len() as f64 / (s / 1e3) / (1 << 20) as f64,
        (l + s) / d
    );
}

/// `digest SET`: the count and a hash of every message's rule hits under the set, each message
/// fed in one piece and again in 1,000-byte pieces of its text and raw body (the hits must not
/// depend on the cut).
fn digest(want: &str) {
    use std::hash::{Hash, Hasher};
    let Some((_, rules)) = rule_sets::sets()
        .into_iter()
        .find(|(name, _)| *name == want)
    else {
        eprintln!("unknown set {want:?}");
        std::process::exit(2);
    };
    let (_, sizes, evs) = corpus();
    let mut all = std::collections::hash_map::DefaultHasher::new();
    let mut n = 0usize;
    for (ev, &size) in evs.iter().zip(&sizes) {
        let hits_of = |events: &[Recorded]| -> Vec<u32> {
            let mut scan = Scan::new(Arc::clone(&rules));
            replay(events, &mut scan);
            scan.finish(size);
            scan.verdict().hits.iter().map(|r| r.0).collect()
        };
        let hits = hits_of(ev);
        let cut: Vec<Recorded> = ev
            .iter()
            .flat_map(|e| match e {
                Recorded::Text(t) => t.chunks(1000).map(|c| Recorded::Text(c.to_vec())).collect(),
                Recorded::RawBody(r) => r
                    .chunks(1000)
                    .map(|c| Recorded::RawBody(c.to_vec()))
                    .collect(),
                other => vec![other.clone()],
            })
            .collect();
        let cut_hits = hits_of(&cut);
        if cut_hits != hits {
            eprintln!("hits differ when cut: {hits:?} whole, {cut_hits:?} cut");
            std::process::exit(1);
        }
        n += hits.len();
        hits.hash(&mut all);
    }
    println!("{want}: {n} hits, digest {:016x}", all.finish());
}

/// The median of `v` (its upper middle for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
