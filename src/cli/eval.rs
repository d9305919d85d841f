//! `conbool eval --labels FILE.tsv [--folds K] [--model MODEL] [--config FILE]`: measures spam
//! detection quality on labelled messages, per source and pooled: ham flagged as spam (false
//! positives, count and %), spam caught (recall), F1, and the threshold used.
//!
//! Without `--model` it is K-fold cross-validation: messages are split into K folds (each
//! source's ham and spam spread evenly, by a hash of the path, so the split is the same on
//! every run), and each fold is judged by a model trained on the other K−1. With `--model` the
//! given model judges every message (held-out only if it was trained on other messages).
//!
//! The verdict is the product's: each message goes through [`scan_message`], the relay's
//! pipeline, rules and classifier, with `spam.rules`, `spam.threshold` and `[limits]` from
//! `--config` (built-in rules and defaults without it). A rules-only table is printed first,
//! for comparison.
//!
//! Messages are judged as [`crate::cli::train::prepared`] has them: without the collectors'
//! header fields and other filters' verdicts, which neither rules nor classifier should score
//! on (`../shared/corpus/README.md`), and with `--internal-hosts` without the `Received`
//! fields the receiving side wrote (the relay sees mail before those hops). `--copies-out`
//! writes the messages so prepared, but with the hop where each came in, for other filters
//! behind an MTA (`benches/quality.sh`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use crate::classify::TrainParams;
use crate::cli::scan::{
    compile_spam_rules, default_limits, load_model, scan_message, MAX_MIME_DEPTH, MAX_MIME_PARTS,
};
use crate::cli::train::{
    features_with_rules, pick_params, read_internal_hosts, read_labels, read_training_messages,
    train_on, EntryHop, Labelled, FINAL_RUNS, STEPS,
};
use crate::config::{Config, Spam};
use crate::message::MessageLimits;
use crate::rules::CompiledRules;

/// Flags of `conbool eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Labelled messages: `path label source` per line (tab-separated, header line first).
    #[arg(long, value_name = "FILE.tsv")]
    pub labels: PathBuf,
    /// Folds of the cross-validation (ignored with --model).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Judge every message with this model instead of cross-validating.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// Configuration file: `spam.rules`, `spam.threshold` and `[limits]` come from it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The receiving side's hosts, one per line: the `Received` fields they wrote at the top
    /// of each message are dropped before judging (as `conbool train --internal-hosts`).
    #[arg(long, value_name = "FILE")]
    pub internal_hosts: Option<PathBuf>,
    /// Write every message as it arrives at the relay's place, for other filters to judge:
    /// without the collectors' fields and, with `--internal-hosts`, the receiving side's
    /// hops above the one where the message came in (kept: a filter behind an MTA sees the
    /// field its MTA writes; `conbool eval --internal-hosts` on the copies drops it again, so
    /// it judges what it judges on the originals). Under this folder at each message's path in
    /// the labels file, with a `labels.tsv`; then stop without judging.
    #[arg(long, value_name = "DIR")]
    pub copies_out: Option<PathBuf>,
    /// Write `path label source fold` lines here (for other filters to use the same folds).
    #[arg(long, value_name = "FILE.tsv")]
    pub folds_out: Option<PathBuf>,
    /// Write `path label source fold probability score flagged` lines here (cross-validation:
    /// the held-out classifier probability and the product's score).
    #[arg(long, value_name = "FILE.tsv")]
    pub scores_out: Option<PathBuf>,
    /// Also print every misjudged message with its score and rules.
    #[arg(long)]
    pub verbose: bool,
    /// Also print the classifier alone at several probability cut-offs (cross-validation).
    #[arg(long)]
    pub sweep: bool,
    /// Hash bits of the models trained for cross-validation.
    #[arg(long, default_value_t = TrainParams::default().bits)]
    pub bits: u32,
    /// Training passes of the models trained for cross-validation.
    #[arg(long, default_value_t = TrainParams::default().epochs)]
    pub epochs: u32,
    /// Step size of the models trained for cross-validation; without it each model's is
    /// picked by the inner cross-validation from `conbool train`'s steps (with
    /// `--ham-weight` and without it, the default step).
    #[arg(long)]
    pub learning_rate: Option<f32>,
    /// L2 decay of the models trained for cross-validation.
    #[arg(long, default_value_t = TrainParams::default().l2)]
    pub l2: f32,
    /// Weight of ham examples relative to spam for the models trained for cross-validation;
    /// without it each model's is picked by an inner cross-validation on its training folds
    /// (as `conbool train` does).
    #[arg(long)]
    pub ham_weight: Option<f32>,
    /// Average the weights of the later passes (models trained for cross-validation).
    #[arg(long, default_value_t = TrainParams::default().average, action = clap::ArgAction::Set)]
    pub average: bool,
    /// Scale each feature by its naive-Bayes evidence in training (models trained for
    /// cross-validation; `false`: plain logistic regression).
    #[arg(long, default_value_t = TrainParams::default().evidence, action = clap::ArgAction::Set)]
    pub evidence: bool,
    /// Differently shuffled training runs averaged into each model of the inner
    /// cross-validation that picks the step and ham weight.
    #[arg(long, default_value_t = TrainParams::default().runs)]
    pub runs: u32,
    /// Differently shuffled training runs averaged into each fold's model (as `conbool
    /// train --final-runs`).
    #[arg(long, default_value_t = FINAL_RUNS)]
    pub final_runs: u32,
    /// Seed of the training runs' shuffles (as `conbool train --seed`): the figures move
    /// with it, so compare settings over several seeds.
    #[arg(long, default_value_t = TrainParams::default().seed)]
    pub seed: u64,
}

/// Counts for one source (or all).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Ham messages.
    pub ham: usize,
    /// Ham flagged as spam.
    pub false_positives: usize,
    /// Spam messages.
    pub spam: usize,
    /// Spam flagged.
    pub caught: usize,
}

impl Tally {
    /// Adds one judged message.
    pub fn add(&mut self, is_spam: bool, flagged: bool) {
        if is_spam {
            self.spam += 1;
            self.caught += usize::from(flagged);
        } else {
            self.ham += 1;
            self.false_positives += usize::from(flagged);
        }
    }

    /// False positives in % of ham.
    pub fn fp_pct(&self) -> f64 {
        pct(self.false_positives, self.ham)
    }

    /// Spam caught in % of spam.
    pub fn recall_pct(&self) -> f64 {
        pct(self.caught, self.spam)
    }

    /// F1 of the spam class.
    pub fn f1(&self) -> f64 {
        let flagged = self.caught + self.false_positives;
        if flagged == 0 || self.spam == 0 {
            return 0.0;
        }
        let p = self.caught as f64 / flagged as f64;
        let r = self.caught as f64 / self.spam as f64;
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn pct(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

/// The fold (0..k) of each message: per source and label, messages ordered by a hash of
/// their path and dealt round-robin.
pub fn assign_folds(labels: &[Labelled], k: usize) -> Vec<usize> {
    assign_folds_salted(labels, k, 0)
}

/// [`assign_folds`] with the path hashes mixed with `salt` (0: the same folds): another
/// split into folds as even per source and label.
pub fn assign_folds_salted(labels: &[Labelled], k: usize, salt: u64) -> Vec<usize> {
    let k = k.max(2);
    let hash = |name: &str| {
        let h = fnv(name.as_bytes());
        if salt == 0 {
            h
        } else {
            mix(h ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        }
    };
    let mut order: Vec<(&str, bool, u64, usize)> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.source.as_str(), l.spam, hash(&l.name), i))
        .collect();
    order.sort_unstable();
    let mut folds = vec![0; labels.len()];
    let mut group: Option<(&str, bool)> = None;
    let mut rank = 0;
    for (source, spam, _, i) in order {
        if group != Some((source, spam)) {
            group = Some((source, spam));
            rank = 0;
        }
        if let Some(f) = folds.get_mut(i) {
            *f = rank % k;
        }
        rank += 1;
    }
    folds
}

/// The finaliser of splitmix64: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The table: one row per source (in first-seen order) and a pooled row.
pub fn table(title: &str, labels: &[Labelled], flagged: &[bool], threshold: f64) -> String {
    let mut sources: Vec<(&str, Tally)> = Vec::new();
    let mut pooled = Tally::default();
    for (l, &f) in labels.iter().zip(flagged) {
        let at = match sources.iter().position(|(s, _)| *s == l.source) {
            Some(at) => at,
            None => {
                sources.push((&l.source, Tally::default()));
                sources.len() - 1
            }
        };
        if let Some((_, t)) = sources.get_mut(at) {
            t.add(l.spam, f);
        }
        pooled.add(l.spam, f);
    }
    let mut out = format!("{title} (threshold {threshold})\n");
    let _ = writeln!(
        out,
        "{:<14} {:>5} {:>10} {:>7} {:>5} {:>8} {:>8} {:>6}",
        "source", "ham", "FP", "FP %", "spam", "caught", "recall %", "F1"
    );
    for (name, t) in sources.iter().chain(std::iter::once(&("pooled", pooled))) {
        let _ = writeln!(
            out,
            "{:<14} {:>5} {:>10} {:>7.2} {:>5} {:>8} {:>8.2} {:>6.4}",
            name,
            t.ham,
            t.false_positives,
            t.fp_pct(),
            t.spam,
            t.caught,
            t.recall_pct(),
            t.f1()
        );
    }
    out
}

/// Per source: mean distinct features per message and the share of messages at the bound.
fn feature_counts(labels: &[Labelled], features: &[Vec<u32>]) -> String {
    let mut sources: Vec<(&str, usize, usize, usize)> = Vec::new();
    for (l, f) in labels.iter().zip(features) {
        let at = match sources.iter().position(|s| s.0 == l.source) {
            Some(at) => at,
            None => {
                sources.push((&l.source, 0, 0, 0));
                sources.len() - 1
            }
        };
        if let Some(s) = sources.get_mut(at) {
            s.1 += 1;
            s.2 += f.len();
            s.3 += usize::from(f.len() >= crate::classify::MAX_TOKENS);
        }
    }
    let mut out = String::from("features per message (mean, share at the bound)\n");
    for (name, n, sum, full) in sources {
        let _ = writeln!(
            out,
            "{name:<14} {:>7.1} {:>6.1} %",
            sum as f64 / n.max(1) as f64,
            pct(full, n)
        );
    }
    out
}

/// Runs `conbool eval`.
pub fn main(args: EvalArgs) -> ExitCode {
    match run(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("conbool eval: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--copies-out`: each message under `dir` at its path in the labels file, and the labels
/// file (`path label source`) beside them.
fn write_copies(
    dir: &Path,
    labels: &[Labelled],
    messages: &[Vec<u8>],
    hops: usize,
) -> Result<String, String> {
    let mut text = String::from("path\tlabel\tsource\n");
    for (l, m) in labels.iter().zip(messages) {
        let relative = Path::new(&l.name);
        if !relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "{}: a copy is written only for a path inside the labels file's folder",
                l.name
            ));
        }
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, m).map_err(|e| format!("{}: {e}", path.display()))?;
        let label = if l.spam { "spam" } else { "ham" };
        let _ = writeln!(text, "{}\t{label}\t{}", l.name, l.source);
    }
    let path = dir.join("labels.tsv");
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!(
        "{} messages written under {} with labels.tsv ({hops} Received fields above the entry hop dropped as the receiving side's)\n",
        labels.len(),
        dir.display()
    ))
}

/// Does the evaluation and returns what `conbool eval` prints.
pub fn run(args: &EvalArgs) -> Result<String, String> {
    let started = Instant::now();
    let (spam, limits) = match &args.config {
        Some(path) => {
            let c = Config::load(path).map_err(|e| e.to_string())?;
            let limits = MessageLimits {
                max_header_bytes: c.limits.max_header_bytes,
                scan_window: c.limits.scan_window,
                max_mime_depth: MAX_MIME_DEPTH,
                max_mime_parts: MAX_MIME_PARTS,
            };
            (c.spam, limits)
        }
        None => (Config::embedded_defaults().spam, default_limits()),
    };
    let spam = Spam {
        model: None,
        ..spam
    };
    let labels = read_labels(&args.labels)?;
    let internal = read_internal_hosts(args.internal_hosts.as_deref())?;
    if let Some(dir) = &args.copies_out {
        let (messages, hops) = read_training_messages(&labels, &internal, EntryHop::Keep)?;
        return write_copies(dir, &labels, &messages, hops);
    }
    let (messages, hops) = read_training_messages(&labels, &internal, EntryHop::Drop)?;
    let mut out = String::new();
    if let Some(path) = &args.internal_hosts {
        let _ = writeln!(
            out,
            "internal hosts from {}: {hops} Received fields dropped as the receiving side's ({:.2} a message)\n",
            path.display(),
            hops as f64 / labels.len() as f64
        );
    }
    let rules_only = compile_spam_rules(&spam, None)?;
    let flagged: Vec<bool> = messages
        .iter()
        .map(|m| scan_message(&rules_only, limits, m).spam)
        .collect();
    out.push_str(&table("rules only", &labels, &flagged, spam.threshold));
    out.push('\n');

    let mut flagged = vec![false; labels.len()];
    let mut judged: Vec<Option<crate::cli::scan::Outcome>> = vec![None; labels.len()];
    let title;
    if let Some(path) = &args.model {
        let rules = compile_spam_rules(&spam, Some(load_model(path)?))?;
        for (i, m) in messages.iter().enumerate() {
            judged[i] = Some(scan_message(&rules, limits, m));
        }
        title = format!("rules + classifier {}", path.display());
    } else {
        let k = args.folds.max(2);
        let folds = assign_folds(&labels, k);
        if let Some(path) = &args.folds_out {
            let mut text = String::from("path\tlabel\tsource\tfold\n");
            for (l, f) in labels.iter().zip(&folds) {
                let label = if l.spam { "spam" } else { "ham" };
                let _ = writeln!(text, "{}\t{label}\t{}\t{f}", l.name, l.source);
            }
            std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let features: Vec<Vec<u32>> = messages
            .iter()
            .map(|m| features_with_rules(&rules_only, limits, m))
            .collect();
        if args.sweep {
            out.push_str(&feature_counts(&labels, &features));
            out.push('\n');
        }
        let mut train_s = 0.0;
        let params = TrainParams {
            bits: args.bits.clamp(8, 24),
            epochs: args.epochs,
            learning_rate: args
                .learning_rate
                .unwrap_or(TrainParams::default().learning_rate),
            l2: args.l2,
            evidence: args.evidence,
            ham_weight: args.ham_weight.unwrap_or(TrainParams::default().ham_weight),
            average: args.average,
            runs: args.runs,
            seed: args.seed,
        };
        let mut picked = Vec::new();
        let mut probability = vec![0.0; labels.len()];
        for fold in 0..k {
            let t = Instant::now();
            let train_here = |i: usize| folds.get(i) != Some(&fold);
            let params = match args.ham_weight {
                Some(_) => params,
                None => {
                    let given = args.learning_rate.map(|s| [s]);
                    let steps = given.as_ref().map_or(STEPS, |s| s.as_slice());
                    let p = pick_params(&features, &labels, &params, steps, train_here);
                    picked.push(format!("{}/{}", p.learning_rate, p.ham_weight));
                    p
                }
            };
            let params = TrainParams {
                runs: args.final_runs,
                ..params
            };
            let model = train_on(&features, &labels, &params, train_here)?;
            train_s += t.elapsed().as_secs_f64();
            for (i, f) in features.iter().enumerate() {
                if folds.get(i) == Some(&fold) {
                    probability[i] = model.probability(f);
                }
            }
            let rules: Arc<CompiledRules> = compile_spam_rules(&spam, Some(Arc::new(model)))?;
            for (i, m) in messages.iter().enumerate() {
                if folds.get(i) == Some(&fold) {
                    judged[i] = Some(scan_message(&rules, limits, m));
                }
            }
        }
        if let Some(path) = &args.scores_out {
            let mut text = String::from("path\tlabel\tsource\tfold\tprobability\tscore\tflagged\n");
            for (i, l) in labels.iter().enumerate() {
                let label = if l.spam { "spam" } else { "ham" };
                let (score, flag) = judged[i]
                    .as_ref()
                    .map_or((0.0, false), |o| (o.score, o.spam));
                let _ = writeln!(
                    text,
                    "{}\t{label}\t{}\t{}\t{}\t{score}\t{flag}",
                    l.name, l.source, folds[i], probability[i]
                );
            }
            std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if args.sweep {
            // The cut-off that keeps pooled false positives at or below 0.3 % of ham.
            let mut ham: Vec<f64> = probability
                .iter()
                .zip(&labels)
                .filter(|(_, l)| !l.spam)
                .map(|(&p, _)| p)
                .collect();
            ham.sort_by(|a, b| b.total_cmp(a));
            let allowed = ham.len() * 3 / 1000;
            let best = ham.get(allowed).map_or(0.5, |&p| p + 1e-12);
            for cut in [best, 0.5, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999] {
                let flagged: Vec<bool> = probability.iter().map(|&p| p >= cut).collect();
                out.push_str(&table(
                    &format!("classifier alone, p >= {cut}"),
                    &labels,
                    &flagged,
                    spam.threshold,
                ));
                out.push('\n');
            }
        }
        let picked = if picked.is_empty() {
            String::new()
        } else {
            format!(
                ", step/ham weight {} by inner cross-validation",
                picked.join(" ")
            )
        };
        title = format!(
            "rules + classifier, {k}-fold cross-validation (seed {}, {} runs per model, {} inner; training {:.2} s per fold{picked})",
            args.seed,
            args.final_runs.max(1),
            args.runs.max(1),
            train_s / k as f64
        );
    }
    for (i, j) in judged.iter().enumerate() {
        flagged[i] = j.as_ref().is_some_and(|o| o.spam);
    }
    out.push_str(&table(&title, &labels, &flagged, spam.threshold));
    if args.verbose {
        out.push_str("\nmisjudged:\n");
        for (l, j) in labels.iter().zip(&judged) {
            let Some(o) = j else { continue };
            if o.spam != l.spam {
                let label = if l.spam { "spam" } else { "ham" };
                let _ = writeln!(
                    out,
                    "{label}\t{}\t{:.1}\t{}",
                    l.name,
                    o.score,
                    o.rules.join(",")
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{} messages in {:.1} s",
        labels.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn shared_corpus() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
        if dir.join("labels.tsv").is_file() {
            Some(dir)
        } else {
            eprintln!("skipping: no corpus at {}", dir.display());
            None
        }
    }

    /// Train on two thirds of a small slice of the corpus (every 12th message), judge the rest
    /// through the product path: the classifier must rank and flag far better than chance.
    #[test]
    fn train_then_eval_on_a_corpus_slice_separates_spam_from_ham() {
        let Some(dir) = shared_corpus() else { return };
        let all = read_labels(&dir.join("labels.tsv")).expect("labels");
        let labels: Vec<Labelled> = all.into_iter().step_by(12).collect();
        let (messages, _) = read_training_messages(&labels, "", EntryHop::Drop).expect("messages");
        let limits = default_limits();
        let rules_only = crate::cli::train::training_rules().expect("rules");
        let features: Vec<Vec<u32>> = messages
            .iter()
            .map(|m| features_with_rules(&rules_only, limits, m))
            .collect();
        let folds = assign_folds(&labels, 3);
        let model = train_on(&features, &labels, &TrainParams::default(), |i| {
            folds[i] != 0
        })
        .expect("trains");
        let model = Arc::new(model);
        // Ranking: the probability that a held-out spam outranks a held-out ham (AUC).
        let held: Vec<usize> = (0..labels.len()).filter(|&i| folds[i] == 0).collect();
        let p: Vec<f64> = held
            .iter()
            .map(|&i| model.probability(&features[i]))
            .collect();
        let (mut pairs, mut wins) = (0.0, 0.0);
        for (a, &i) in held.iter().enumerate() {
            for (b, &j) in held.iter().enumerate() {
                if labels[i].spam && !labels[j].spam {
                    pairs += 1.0;
                    wins += if p[a] > p[b] {
                        1.0
                    } else if p[a] == p[b] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        let auc = wins / pairs;
        assert!(
            auc > 0.9,
            "AUC {auc:.3} over {} held-out messages",
            held.len()
        );
        // The product path: pipeline, rules and the classifier's band rules.
        let spam = Config::embedded_defaults().spam;
        let rules = compile_spam_rules(&spam, Some(Arc::clone(&model))).expect("rules");
        let mut t = Tally::default();
        for &i in &held {
            let o = scan_message(&rules, limits, &messages[i]);
            assert!(
                o.rules.iter().any(|r| r.starts_with("CLASSIFIER_"))
                    || (0.2..0.8).contains(&model.probability(&features[i])),
                "{}: no band hit: {o:?}",
                labels[i].name
            );
            t.add(labels[i].spam, o.spam);
        }
        assert!(
            t.recall_pct() - t.fp_pct() > 50.0,
            "recall {:.1} %, false positives {:.1} %",
            t.recall_pct(),
            t.fp_pct()
        );
    }

    /// `--copies-out` writes each message as it arrives at the relay's place (the entry hop
    /// kept) at its path with a labels file, and `eval --internal-hosts` on the copies judges
    /// the bytes it judges on the originals; a path outside the folder is refused.
    #[test]
    fn copies_keep_the_entry_hop_and_judge_alike() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            eval: EvalArgs,
        }
        let parse = |args: &[&str]| {
            <Cli as clap::Parser>::try_parse_from(
                std::iter::once("eval").chain(args.iter().copied()),
            )
            .expect("flags")
            .eval
        };
        let dir = std::env::temp_dir().join(format!("conbool-copies-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("in/ham")).expect("dir");
        let message = "From x Mon\nReceived: by store.mx.example\nX-Spam-Flag: NO\nReceived: from a.example ([198.51.100.9]) by mx.example\nReceived: by a.example\nSubject: hi\n\nbody\n";
        std::fs::write(dir.join("in/ham/one.eml"), message).expect("message");
        std::fs::write(
            dir.join("in/labels.tsv"),
            "path\tlabel\tsource\nham/one.eml\tham\tsrc\n",
        )
        .expect("labels");
        std::fs::write(dir.join("hosts"), "mx.example src\n").expect("hosts");
        let (labels, copies, hosts) = (
            dir.join("in/labels.tsv"),
            dir.join("out"),
            dir.join("hosts"),
        );
        let path = |p: &Path| p.to_str().expect("utf-8").to_string();
        let said = run(&parse(&[
            "--labels",
            &path(&labels),
            "--internal-hosts",
            &path(&hosts),
            "--copies-out",
            &path(&copies),
        ]))
        .expect("copies");
        assert!(
            said.contains("1 messages written") && said.contains("(1 Received"),
            "{said}"
        );
        let copy = std::fs::read(copies.join("ham/one.eml")).expect("the copy");
        assert_eq!(
            String::from_utf8_lossy(&copy),
            "Received: from a.example ([198.51.100.9]) by mx.example\nReceived: by a.example\nSubject: hi\n\nbody\n"
        );
        assert_eq!(
            std::fs::read_to_string(copies.join("labels.tsv")).expect("labels"),
            "path\tlabel\tsource\nham/one.eml\tham\tsrc\n"
        );
        let text = read_internal_hosts(Some(&hosts)).expect("hosts");
        let originals = read_labels(&labels).expect("labels");
        let copied = read_labels(&copies.join("labels.tsv")).expect("labels");
        let (a, _) = read_training_messages(&originals, &text, EntryHop::Drop).expect("read");
        let (b, _) = read_training_messages(&copied, &text, EntryHop::Drop).expect("read");
        assert_eq!(a, b);
        std::fs::write(
            dir.join("in/labels.tsv"),
            "path\tlabel\tsource\n../one.eml\tham\tsrc\n",
        )
        .expect("labels");
        std::fs::write(dir.join("one.eml"), message).expect("message");
        let refused = run(&parse(&[
            "--labels",
            &path(&labels),
            "--copies-out",
            &path(&copies),
        ]))
        .expect_err("refused");
        assert!(
            refused.contains("inside the labels file's folder"),
            "{refused}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tally_rows() {
        let mut t = Tally::default();
        for (spam, flagged) in [(true, true), (true, false), (false, false), (false, true)] {
            t.add(spam, flagged);
        }
        assert_eq!(t.fp_pct(), 50.0);
        assert_eq!(t.recall_pct(), 50.0);
        assert_eq!(t.f1(), 0.5);
        assert_eq!(Tally::default().f1(), 0.0);
    }

    #[test]
    fn folds_are_even_per_source_and_label() {
        let labels: Vec<Labelled> = (0..40)
            .map(|i| Labelled {
                path: PathBuf::from(format!("m{i}")),
                name: format!("m{i}"),
                spam: i % 2 == 0,
                source: if i < 20 { "a" } else { "b" }.into(),
            })
            .collect();
        let folds = assign_folds(&labels, 5);
        for f in 0..5 {
            for (src, spam) in [("a", true), ("a", false), ("b", true), ("b", false)] {
                let n = labels
                    .iter()
                    .zip(&folds)
                    .filter(|(l, &g)| g == f && l.source == src && l.spam == spam)
                    .count();
                assert_eq!(n, 2, "fold {f} {src} {spam}");
            }
        }
        assert_eq!(assign_folds(&labels, 5), folds, "stable");
    }
}
