//! `conbool eval --labels FILE.tsv [--folds K] [--model MODEL] [--config FILE]` (or
//! `--spam PATH --ham PATH` instead of `--labels`, see [`crate::cli::mailboxes`]): measures spam
//! detection quality on labelled messages, per source and pooled: ham flagged as spam (false
//! positives, count and %), spam caught (recall), F1, and the threshold used.
//!
//! Without `--model` it is K-fold cross-validation: messages are split into K folds (each
//! source's ham and spam spread evenly, by a hash of the path, so the split is the same on
//! every run; `--split N` salts the hash for another), and each fold is judged by a model
//! trained on the other K−1. With `--model` the given model judges every message (held-out
//! only if it was trained on other messages).
//! The folds do not move with `--seed`, the training runs' shuffles do: `--seeds 0-6`
//! cross-validates once per seed on the same folds and features and adds the mean of a run and
//! the messages every seed misjudges. `--split 0-4 --seeds 0-2` does that on each of five
//! splits and adds the mean over all fifteen runs, the figures to compare settings by.
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
use crate::cli::mailboxes::LabelledInput;
use crate::cli::scan::{
    compile_spam_rules, default_limits, load_model, scan_message, Outcome, MAX_MIME_DEPTH,
    MAX_MIME_PARTS,
};
use crate::cli::train::{
    features_with_rules, message_id, pick_params, prepare_each, read_internal_hosts, sources_of,
    train_on, Copies, EntryHop, Labelled, FINAL_RUNS, STEPS,
};
use crate::config::{Config, Spam};
use crate::message::MessageLimits;
use crate::rules::CompiledRules;

/// Flags of `conbool eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The labelled messages: `--labels`, or `--spam` and `--ham`.
    #[command(flatten)]
    pub input: LabelledInput,
    /// Folds of the cross-validation (ignored with --model).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Which split into folds: 0 orders each source's ham and spam by a hash of their paths
    /// and deals them out in turn; another number salts that hash, for another split as even
    /// per source and label. The figures move with the split more than with the seed, so
    /// compare settings over several: a list (`0-4`, `0,2`) cross-validates on each split
    /// with each seed, then prints the mean of all those runs.
    #[arg(long, value_name = "LIST", default_value = "0", value_parser = parse_splits, conflicts_with = "model")]
    pub split: Numbers,
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
    /// Write `path label source fold probability score flagged seed split` lines here
    /// (cross-validation: the held-out classifier probability, the product's score and flag,
    /// the training seed and the split into folds; with `--seeds` or a `--split` list, every
    /// run's lines).
    #[arg(long, value_name = "FILE.tsv")]
    pub scores_out: Option<PathBuf>,
    /// Write `path label source fold features` lines here: each message's distinct feature
    /// hashes as cross-validation trains on them (decimal, space-separated; the rules' hits
    /// last), for other learners to be measured on the same features and folds.
    #[arg(long, value_name = "FILE.tsv", conflicts_with = "model")]
    pub features_out: Option<PathBuf>,
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
    /// With the evidence, limit a feature's evidence towards spam or ham to what each source
    /// (the labels file's third column) that holds ham and spam confirms (`false`: from all
    /// messages pooled).
    #[arg(long, default_value_t = TrainParams::default().consistent, action = clap::ArgAction::Set)]
    pub consistent_evidence: bool,
    /// Differently shuffled training runs averaged into each model of the inner
    /// cross-validation that picks the step and ham weight.
    #[arg(long, default_value_t = TrainParams::default().runs)]
    pub runs: u32,
    /// Differently shuffled training runs averaged into each fold's model (as `conbool
    /// train --final-runs`).
    #[arg(long, default_value_t = FINAL_RUNS)]
    pub final_runs: u32,
    /// Seed of the training runs' shuffles (as `conbool train --seed`): the figures move
    /// with it, so compare settings over several seeds (`--seeds`).
    #[arg(long, default_value_t = TrainParams::default().seed)]
    pub seed: u64,
    /// Cross-validate once per seed of a list (`0-6`, `0,2,5`), on the same folds and the
    /// same features (read once): each seed's table, then the mean of the seeds and the
    /// messages misjudged on every one (with `--verbose`, every message misjudged on some
    /// seed, with on how many).
    #[arg(long, value_name = "LIST", value_parser = parse_seeds, conflicts_with_all = ["seed", "model"])]
    pub seeds: Option<Numbers>,
}

/// The most numbers one `--seeds` or `--split` list may name.
pub const MAX_LISTED: usize = 64;

/// The numbers of a `--seeds` or `--split` list, ascending, each once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Numbers(pub Vec<u64>);

/// Reads a `--seeds` list: numbers and ranges `A-B`, separated by commas.
pub fn parse_seeds(list: &str) -> Result<Numbers, String> {
    parse_numbers(list, "seed")
}

/// Reads a `--split` list, as [`parse_seeds`].
pub fn parse_splits(list: &str) -> Result<Numbers, String> {
    parse_numbers(list, "split")
}

/// Numbers and ranges `A-B` separated by commas, at most [`MAX_LISTED`]; `what` names one
/// in the errors.
fn parse_numbers(list: &str, what: &str) -> Result<Numbers, String> {
    let mut numbers = Vec::new();
    for part in list.split(',').map(str::trim) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let number = |x: &str| {
            x.trim()
                .parse::<u64>()
                .map_err(|_| format!("{part:?}: a {what} is a number and a range is A-B"))
        };
        let (a, b) = (number(a)?, number(b)?);
        if a > b {
            return Err(format!("{part:?}: a range runs from the lower {what} up"));
        }
        if b - a >= MAX_LISTED as u64 || numbers.len() + (b - a) as usize >= MAX_LISTED {
            return Err(format!("at most {MAX_LISTED} {what}s"));
        }
        numbers.extend(a..=b);
    }
    numbers.sort_unstable();
    numbers.dedup();
    Ok(Numbers(numbers))
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
    table_of_runs(title, labels, &[flagged], threshold)
}

/// [`table`] over several runs on the same messages: with more than one, the counts of false
/// positives and spam caught are the means of a run, the rates those of all runs together.
pub fn table_of_runs(title: &str, labels: &[Labelled], runs: &[&[bool]], threshold: f64) -> String {
    let (names, at) = sources_of(labels);
    let mut sources: Vec<(&str, Tally)> =
        names.into_iter().map(|s| (s, Tally::default())).collect();
    let mut pooled = Tally::default();
    for flagged in runs {
        for ((l, &f), &i) in labels.iter().zip(flagged.iter()).zip(&at) {
            if let Some((_, t)) = sources.get_mut(i) {
                t.add(l.spam, f);
            }
            pooled.add(l.spam, f);
        }
    }
    let n = runs.len().max(1);
    let count = |c: usize| {
        if n == 1 {
            c.to_string()
        } else {
            format!("{:.2}", c as f64 / n as f64)
        }
    };
    let mut out = format!("{title} (threshold {threshold})\n");
    // Wide enough for a source named by a path (`--spam PATH`).
    let w = sources
        .iter()
        .map(|(s, _)| s.len())
        .max()
        .unwrap_or(0)
        .max(14);
    let _ = writeln!(
        out,
        "{:<w$} {:>5} {:>10} {:>7} {:>5} {:>8} {:>8} {:>6}",
        "source", "ham", "FP", "FP %", "spam", "caught", "recall %", "F1"
    );
    for (name, t) in sources.iter().chain(std::iter::once(&("pooled", pooled))) {
        let _ = writeln!(
            out,
            "{:<w$} {:>5} {:>10} {:>7.2} {:>5} {:>8} {:>8.2} {:>6.4}",
            name,
            t.ham / n,
            count(t.false_positives),
            t.fp_pct(),
            t.spam / n,
            count(t.caught),
            t.recall_pct(),
            t.f1()
        );
    }
    out
}

/// Per source: mean distinct features per message and the share of messages at the bound.
fn feature_counts(labels: &[Labelled], features: &[Vec<u32>]) -> String {
    let (names, at) = sources_of(labels);
    let mut sources: Vec<(&str, usize, usize, usize)> =
        names.into_iter().map(|s| (s, 0, 0, 0)).collect();
    for (f, &i) in features.iter().zip(&at) {
        if let Some(s) = sources.get_mut(i) {
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

/// `--copies-out`: each message under `dir` at its path in the labels file (or its name
/// under `--spam`/`--ham`), as [`prepared`](crate::cli::train::prepared) has it with its entry
/// hop, and the labels file (`path label source`) beside them.
fn write_copies(dir: &Path, labels: &[Labelled], internal: &str) -> Result<String, String> {
    for l in labels {
        let relative = Path::new(&l.name);
        if !relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "{}: a copy is written only for a path inside the labels file's folder (or a relative --spam or --ham PATH without `..`)",
                l.name
            ));
        }
    }
    let mut text = String::from("path\tlabel\tsource\n");
    let hops = prepare_each(labels, internal, EntryHop::Keep, |_, l, m| {
        let path = dir.join(&l.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, m).map_err(|e| format!("{}: {e}", path.display()))?;
        let _ = writeln!(text, "{}\t{}\t{}", l.name, l.label(), l.source);
        Ok(())
    })?;
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
    if args.split.0.len() > 1 && (args.folds_out.is_some() || args.features_out.is_some()) {
        return Err(
            "--folds-out and --features-out write the folds of one split: give --split one number"
                .into(),
        );
    }
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
    let labels = args.input.read()?;
    let internal = read_internal_hosts(args.internal_hosts.as_deref())?;
    if let Some(dir) = &args.copies_out {
        return write_copies(dir, &labels, &internal);
    }
    // One pass over the messages (read and prepared one at a time, as `conbool train` does, so
    // that a mailbox of any size fits): their Message-IDs, the rules' verdicts and, for the
    // cross-validation, their features, or the given model's verdicts.
    let rules_only = compile_spam_rules(&spam, None)?;
    let with_model = match &args.model {
        Some(path) => Some(compile_spam_rules(&spam, Some(load_model(path)?))?),
        None => None,
    };
    let n = labels.len();
    let (mut ids, mut flagged) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut features, mut judged) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let hops = prepare_each(&labels, &internal, EntryHop::Drop, |_, _, m| {
        ids.push(message_id(&m));
        flagged.push(scan_message(&rules_only, limits, &m).spam);
        match &with_model {
            Some(rules) => judged.push(Some(scan_message(rules, limits, &m))),
            None => features.push(features_with_rules(&rules_only, limits, &m)),
        }
        Ok(())
    })?;
    let mut out = String::new();
    if let Some(path) = &args.internal_hosts {
        let _ = writeln!(
            out,
            "internal hosts from {}: {hops} Received fields dropped as the receiving side's ({:.2} a message)\n",
            path.display(),
            hops as f64 / labels.len() as f64
        );
    }
    let copies = Copies::of(&labels, &ids);
    let count = copies.count();
    if count > 0 {
        let _ = writeln!(
            out,
            "{count} messages with the Message-ID of an earlier one ({} under both labels){}\n",
            copies.left_out(),
            if args.model.is_some() {
                ""
            } else {
                ": each is in the fold of the first, and those under both labels are judged but not trained on"
            }
        );
    }
    out.push_str(&table("rules only", &labels, &flagged, spam.threshold));
    out.push('\n');

    if let Some(path) = &args.model {
        let title = format!("rules + classifier {}", path.display());
        let (text, _) = judged_table(&title, &labels, &judged, spam.threshold, args.verbose);
        out.push_str(&text);
    } else {
        let k = args.folds.max(2);
        let splits = &args.split.0;
        if args.sweep {
            out.push_str(&feature_counts(&labels, &features));
            out.push('\n');
        }
        let seeds = args
            .seeds
            .as_ref()
            .map_or_else(|| vec![args.seed], |s| s.0.clone());
        let mut scores =
            String::from("path\tlabel\tsource\tfold\tprobability\tscore\tflagged\tseed\tsplit\n");
        let mut runs = Vec::new();
        let everyone: Vec<usize> = (0..labels.len()).collect();
        for &split in splits {
            let mut folds = assign_folds_salted(&labels, k, split);
            copies.fold_together(&everyone, &mut folds);
            if let Some(path) = &args.folds_out {
                let mut text = String::from("path\tlabel\tsource\tfold\n");
                for (l, f) in labels.iter().zip(&folds) {
                    let label = l.label();
                    let _ = writeln!(text, "{}\t{label}\t{}\t{f}", l.name, l.source);
                }
                std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if let Some(path) = &args.features_out {
                write_features(path, &labels, &folds, &features)?;
            }
            let data = Folded {
                labels: &labels,
                internal: &internal,
                features: &features,
                copies: &copies,
                folds: &folds,
                k,
            };
            for &seed in &seeds {
                let cv = cross_validate(args, seed, &spam, limits, &data)?;
                for (i, l) in labels.iter().enumerate() {
                    let label = l.label();
                    let (score, flag) = cv.judged[i]
                        .as_ref()
                        .map_or((0.0, false), |o| (o.score, o.spam));
                    let _ = writeln!(
                        scores,
                        "{}\t{label}\t{}\t{}\t{}\t{score}\t{flag}\t{seed}\t{split}",
                        l.name, l.source, folds[i], cv.probability[i]
                    );
                }
                if !runs.is_empty() {
                    out.push('\n');
                }
                if args.sweep {
                    out.push_str(&sweep(&labels, &cv.probability, spam.threshold));
                }
                let picked = if cv.picked.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", step/ham weight {} by inner cross-validation",
                        cv.picked.join(" ")
                    )
                };
                let split = match split {
                    0 => String::new(),
                    n => format!("split {n}, "),
                };
                let title = format!(
                    "rules + classifier, {k}-fold cross-validation ({split}seed {seed}, {} runs per model, {} inner; training {:.2} s per fold{picked})",
                    args.final_runs.max(1),
                    args.runs.max(1),
                    cv.train_s / k as f64
                );
                let verbose = args.verbose && seeds.len() == 1 && splits.len() == 1;
                let (text, flagged) =
                    judged_table(&title, &labels, &cv.judged, spam.threshold, verbose);
                out.push_str(&text);
                runs.push(flagged);
            }
        }
        if let Some(path) = &args.scores_out {
            std::fs::write(path, scores).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if runs.len() > 1 {
            out.push('\n');
            out.push_str(&over_runs(
                splits,
                &seeds,
                &labels,
                &runs,
                spam.threshold,
                args.verbose,
            ));
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

/// `--features-out`: a header line, then `path label source fold features` per message.
fn write_features(
    path: &Path,
    labels: &[Labelled],
    folds: &[usize],
    features: &[Vec<u32>],
) -> Result<(), String> {
    let mut text = String::from("path\tlabel\tsource\tfold\tfeatures\n");
    for ((l, fold), fs) in labels.iter().zip(folds).zip(features) {
        let _ = write!(text, "{}\t{}\t{}\t{fold}\t", l.name, l.label(), l.source);
        for (i, f) in fs.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            let _ = write!(text, "{sep}{f}");
        }
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// What every seed's cross-validation reads: the messages (read again for each seed's
/// verdicts, with `internal`, the text of the `--internal-hosts` list), their features (read
/// once), their copies and the folds.
struct Folded<'a> {
    labels: &'a [Labelled],
    internal: &'a str,
    features: &'a [Vec<u32>],
    copies: &'a Copies,
    folds: &'a [usize],
    k: usize,
}

/// One seed's cross-validation: each fold judged by a model trained on the other folds.
struct CrossValidated {
    /// The product's verdict on each message, by its fold's model.
    judged: Vec<Option<Outcome>>,
    /// The held-out classifier probability of each message.
    probability: Vec<f64>,
    /// Per fold, `step/ham weight` as the inner cross-validation picked them (empty with
    /// `--ham-weight`).
    picked: Vec<String>,
    /// Seconds spent training, all folds.
    train_s: f64,
}

/// Cross-validates with the training runs' shuffles seeded by `seed`.
fn cross_validate(
    args: &EvalArgs,
    seed: u64,
    spam: &Spam,
    limits: MessageLimits,
    data: &Folded<'_>,
) -> Result<CrossValidated, String> {
    let params = TrainParams {
        bits: args.bits.clamp(8, 24),
        epochs: args.epochs,
        learning_rate: args
            .learning_rate
            .unwrap_or(TrainParams::default().learning_rate),
        l2: args.l2,
        evidence: args.evidence,
        consistent: args.consistent_evidence,
        ham_weight: args.ham_weight.unwrap_or(TrainParams::default().ham_weight),
        average: args.average,
        runs: args.runs,
        seed,
    };
    let n = data.labels.len();
    let mut cv = CrossValidated {
        judged: vec![None; n],
        probability: vec![0.0; n],
        picked: Vec::new(),
        train_s: 0.0,
    };
    let mut models: Vec<Arc<CompiledRules>> = Vec::with_capacity(data.k);
    for fold in 0..data.k {
        let t = Instant::now();
        // As `conbool train` trains: without the copies under both labels.
        let train_here = |i: usize| data.folds.get(i) != Some(&fold) && data.copies.trained(i);
        let params = match args.ham_weight {
            Some(_) => params,
            None => {
                let given = args.learning_rate.map(|s| [s]);
                let steps = given.as_ref().map_or(STEPS, |s| s.as_slice());
                let p = pick_params(
                    data.features,
                    data.labels,
                    data.copies,
                    &params,
                    steps,
                    train_here,
                );
                cv.picked
                    .push(format!("{}/{}", p.learning_rate, p.ham_weight));
                p
            }
        };
        let params = TrainParams {
            runs: args.final_runs,
            ..params
        };
        let model = train_on(data.features, data.labels, &params, train_here)?;
        cv.train_s += t.elapsed().as_secs_f64();
        for (i, f) in data.features.iter().enumerate() {
            if data.folds.get(i) == Some(&fold) {
                cv.probability[i] = model.probability(f);
            }
        }
        models.push(compile_spam_rules(spam, Some(Arc::new(model)))?);
    }
    // Each message judged by its fold's model, in one pass.
    prepare_each(data.labels, data.internal, EntryHop::Drop, |i, _, m| {
        let rules: Option<&Arc<CompiledRules>> = data.folds.get(i).and_then(|&f| models.get(f));
        if let (Some(rules), Some(slot)) = (rules, cv.judged.get_mut(i)) {
            *slot = Some(scan_message(rules, limits, &m));
        }
        Ok(())
    })?;
    Ok(cv)
}

/// `--sweep`: the classifier alone at several probability cut-offs, the first the one that
/// keeps pooled false positives at or below 0.3 % of ham.
fn sweep(labels: &[Labelled], probability: &[f64], threshold: f64) -> String {
    let mut ham: Vec<f64> = probability
        .iter()
        .zip(labels)
        .filter(|(_, l)| !l.spam)
        .map(|(&p, _)| p)
        .collect();
    ham.sort_by(|a, b| b.total_cmp(a));
    let allowed = ham.len() * 3 / 1000;
    let best = ham.get(allowed).map_or(0.5, |&p| p + 1e-12);
    let mut out = String::new();
    for cut in [best, 0.5, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999] {
        let flagged: Vec<bool> = probability.iter().map(|&p| p >= cut).collect();
        out.push_str(&table(
            &format!("classifier alone, p >= {cut}"),
            labels,
            &flagged,
            threshold,
        ));
        out.push('\n');
    }
    out
}

/// The table of the product's verdicts and, with `verbose`, every misjudged message with its
/// score and rules; also each message's flag.
fn judged_table(
    title: &str,
    labels: &[Labelled],
    judged: &[Option<Outcome>],
    threshold: f64,
    verbose: bool,
) -> (String, Vec<bool>) {
    let flagged: Vec<bool> = judged
        .iter()
        .map(|j| j.as_ref().is_some_and(|o| o.spam))
        .collect();
    let mut out = table(title, labels, &flagged, threshold);
    if verbose {
        out.push_str("\nmisjudged:\n");
        for (l, j) in labels.iter().zip(judged) {
            let Some(o) = j else { continue };
            if o.spam != l.spam {
                let label = l.label();
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
    (out, flagged)
}

/// `--seeds` and a `--split` list: the mean over the runs (each split with each seed), each
/// run's pooled false positives and missed spam, and the messages misjudged on every run
/// (with `verbose`, every message misjudged on some run, most often first).
fn over_runs(
    splits: &[u64],
    seeds: &[u64],
    labels: &[Labelled],
    runs: &[Vec<bool>],
    threshold: f64,
    verbose: bool,
) -> String {
    let list = |numbers: &[u64]| {
        numbers
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let views: Vec<&[bool]> = runs.iter().map(Vec::as_slice).collect();
    let seeds = match seeds {
        [seed] => format!("seed {seed}"),
        _ => format!("{} seeds ({})", seeds.len(), list(seeds)),
    };
    // One split: its runs are its seeds'. Several: each split's seeds in turn.
    let (title, run) = match splits {
        [_] => (seeds, "seed"),
        _ => (
            format!(
                "{} splits ({}) × {seeds}: {} runs",
                splits.len(),
                list(splits),
                runs.len()
            ),
            "run",
        ),
    };
    let title = format!("rules + classifier, the mean of a run over {title}");
    let mut out = table_of_runs(&title, labels, &views, threshold);
    let mut wrong = vec![0usize; labels.len()];
    let (mut fps, mut missed) = (Vec::new(), Vec::new());
    for run in runs {
        let (mut fp, mut miss) = (0, 0);
        for ((l, &f), w) in labels.iter().zip(run).zip(wrong.iter_mut()) {
            if f != l.spam {
                *w += 1;
                fp += usize::from(f);
                miss += usize::from(l.spam);
            }
        }
        fps.push(fp.to_string());
        missed.push(miss.to_string());
    }
    let _ = writeln!(
        out,
        "false positives by {run}: {}; spam missed by {run}: {}",
        fps.join(" / "),
        missed.join(" / ")
    );
    let always = |spam: bool| {
        labels
            .iter()
            .zip(&wrong)
            .filter(|(l, &w)| l.spam == spam && w == runs.len())
            .count()
    };
    let _ = writeln!(
        out,
        "misjudged on all {} {run}s: {} ham, {} spam",
        runs.len(),
        always(false),
        always(true)
    );
    if verbose {
        let mut listed: Vec<(usize, &Labelled)> = wrong
            .iter()
            .zip(labels)
            .filter(|(&w, _)| w > 0)
            .map(|(&w, l)| (w, l))
            .collect();
        listed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.spam.cmp(&b.1.spam)));
        let _ = writeln!(
            out,
            "\nmisjudged (label, path, on how many of the {} {run}s):",
            runs.len()
        );
        for (w, l) in listed {
            let label = l.label();
            let _ = writeln!(out, "{label}\t{}\t{w}", l.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::cli::train::{read_labels, read_training_messages};

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

    /// `--seeds`: each seed's table is the one `--seed` prints alone, the mean is that of the
    /// runs, and the scores file holds every seed's verdicts; `--features-out` writes what
    /// training reads, in the same folds.
    #[test]
    fn several_seeds_print_each_seed_and_their_mean() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            eval: EvalArgs,
        }
        let Some(dir) = shared_corpus() else { return };
        let all = read_labels(&dir.join("labels.tsv")).expect("labels");
        let tmp = std::env::temp_dir().join(format!("conbool-seeds-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).expect("dir");
        let mut text = String::from("path\tlabel\tsource\n");
        for l in all.iter().step_by(20) {
            let label = l.label();
            let _ = writeln!(text, "{}\t{label}\t{}", l.path.display(), l.source);
        }
        let (labels, scores) = (tmp.join("labels.tsv"), tmp.join("scores.tsv"));
        let features = tmp.join("features.tsv");
        std::fs::write(&labels, text).expect("labels");
        let path = |p: &Path| p.to_str().expect("utf-8").to_string();
        let (labels, scores, features) = (path(&labels), path(&scores), path(&features));
        let eval = |extra: &[&str]| {
            let quick = [
                "--labels",
                &labels,
                "--folds",
                "3",
                "--runs",
                "1",
                "--final-runs",
                "2",
                "--ham-weight",
                "4",
                "--learning-rate",
                "30",
            ];
            let args = std::iter::once("eval")
                .chain(quick)
                .chain(extra.iter().copied());
            let args = <Cli as clap::Parser>::try_parse_from(args)
                .expect("flags")
                .eval;
            run(&args).expect("eval")
        };
        // The table whose title opens its brackets with `run` (`seed 1` on split 0, `split
        // 2, seed 0`).
        let table_of = |said: &str, run: &str| -> String {
            let at = said.find(&format!("({run},")).expect("the run's table");
            let start = said[..at].rfind("rules + classifier").expect("title");
            // The rows, without the title (it says how long training took).
            let table = said[start..].split("\n\n").next().expect("table");
            table.split_once('\n').expect("rows").1.to_string()
        };
        let pooled_fp = |table: &str| -> f64 {
            let row = table
                .lines()
                .find(|l| l.starts_with("pooled"))
                .expect("pooled");
            row.split_whitespace()
                .nth(2)
                .expect("FP")
                .parse()
                .expect("a number")
        };
        let both = eval(&[
            "--seeds",
            "0,1",
            "--scores-out",
            &scores,
            "--features-out",
            &features,
        ]);
        let one = eval(&["--seed", "1"]);
        assert_eq!(
            table_of(&both, "seed 1"),
            table_of(&one, "seed 1"),
            "{both}\n{one}"
        );
        let mean = both
            .split("\n\n")
            .find(|t| t.starts_with("rules + classifier, the mean of a run over 2 seeds (0,1)"))
            .expect("the mean");
        let runs = pooled_fp(&table_of(&both, "seed 0")) + pooled_fp(&table_of(&both, "seed 1"));
        assert_eq!(pooled_fp(mean), runs / 2.0, "{mean}");
        assert!(mean.contains("misjudged on all 2 seeds: "), "{mean}");
        let written = std::fs::read_to_string(&scores).expect("scores");
        let n = all.iter().step_by(20).count();
        assert_eq!(written.lines().count(), 1 + 2 * n);
        assert!(written
            .lines()
            .next()
            .expect("header")
            .ends_with("\tflagged\tseed\tsplit"));
        for seed in ["0", "1"] {
            let rows = written.lines().skip(1);
            assert_eq!(
                rows.filter(|l| l.ends_with(&format!("\t{seed}\t0")))
                    .count(),
                n
            );
        }
        // `--features-out`: every message's features as training reads them, in the folds
        // the scores file gives.
        let fold_of: HashMap<&str, &str> = written
            .lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split('\t').collect();
                Some((*cols.first()?, *cols.get(3)?))
            })
            .collect();
        let listed = read_labels(Path::new(&labels)).expect("labels");
        let (messages, _) = read_training_messages(&listed, "", EntryHop::Drop).expect("read");
        let rules_only = crate::cli::train::training_rules().expect("rules");
        let dumped = std::fs::read_to_string(&features).expect("features");
        let mut lines = dumped.lines();
        assert_eq!(lines.next(), Some("path\tlabel\tsource\tfold\tfeatures"));
        let mut n_lines = 0;
        for ((line, l), m) in lines.zip(&listed).zip(&messages) {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols[..3], [l.name.as_str(), l.label(), &l.source], "{line}");
            assert_eq!(Some(&cols[3]), fold_of.get(l.name.as_str()), "{line}");
            let read: Vec<u32> = cols[4]
                .split(' ')
                .map(|f| f.parse().expect("a feature"))
                .collect();
            assert_eq!(read, features_with_rules(&rules_only, default_limits(), m));
            n_lines += 1;
        }
        assert_eq!(n_lines, n);
        // A `--split` list: each split's table is the one it prints alone, and the mean is
        // over every split's runs.
        let splits = eval(&["--split", "0,2", "--scores-out", &scores]);
        let split_2 = eval(&["--split", "2"]);
        assert_eq!(
            table_of(&both, "seed 0"),
            table_of(&splits, "seed 0"),
            "{splits}"
        );
        let at = |said: &str| table_of(said, "split 2, seed 0");
        assert_eq!(at(&splits), at(&split_2), "{splits}\n{split_2}");
        let mean = splits
            .split("\n\n")
            .find(|t| {
                t.starts_with(
                    "rules + classifier, the mean of a run over 2 splits (0,2) × seed 0: 2 runs",
                )
            })
            .expect("the mean over splits");
        let runs = pooled_fp(&table_of(&both, "seed 0")) + pooled_fp(&at(&split_2));
        assert_eq!(pooled_fp(mean), runs / 2.0, "{mean}");
        assert!(mean.contains("misjudged on all 2 runs: "), "{mean}");
        let written = std::fs::read_to_string(&scores).expect("scores");
        for split in ["0", "2"] {
            let rows = written.lines().skip(1);
            let here = rows.filter(|l| l.ends_with(&format!("\t0\t{split}")));
            assert_eq!(here.count(), n, "split {split}");
        }
        let args = std::iter::once("eval").chain([
            "--labels",
            &labels,
            "--split",
            "0-1",
            "--folds-out",
            &scores,
        ]);
        let args = <Cli as clap::Parser>::try_parse_from(args)
            .expect("flags")
            .eval;
        let refused = run(&args).expect_err("one split's folds");
        assert!(refused.contains("--split"), "{refused}");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn seed_and_split_lists() {
        assert_eq!(parse_splits("0-4"), Ok(Numbers((0..=4).collect())));
        assert!(parse_splits("4-0")
            .expect_err("down")
            .contains("lower split"));
        assert_eq!(parse_seeds("0-6"), Ok(Numbers((0..=6).collect())));
        assert_eq!(
            parse_seeds(" 5, 1-3 ,2,9"),
            Ok(Numbers(vec![1, 2, 3, 5, 9]))
        );
        assert_eq!(parse_seeds("4"), Ok(Numbers(vec![4])));
        for bad in ["", "a", "3-1", "1-", "-1", "0-64", "0-40,100-130", "1--2"] {
            assert!(parse_seeds(bad).is_err(), "{bad:?}");
        }
        assert!(parse_seeds("0-63").is_ok());
    }

    /// Over several runs the counts are a run's mean and the rates those of all runs; one run
    /// is the plain table.
    #[test]
    fn tables_over_runs() {
        let labels: Vec<Labelled> = ["ham", "ham", "spam", "spam"]
            .iter()
            .enumerate()
            .map(|(i, l)| Labelled {
                path: PathBuf::from(format!("m{i}")),
                name: format!("m{i}"),
                spam: *l == "spam",
                source: "s".into(),
                part: None,
            })
            .collect();
        let (a, b) = ([true, false, true, true], [false, false, true, false]);
        let one = table_of_runs("t", &labels, &[&a], 5.0);
        assert_eq!(one, table("t", &labels, &a, 5.0));
        let pooled = |t: &str| -> Vec<String> {
            let row = t.lines().find(|l| l.starts_with("pooled")).expect("pooled");
            row.split_whitespace().map(str::to_string).collect()
        };
        assert_eq!(pooled(&one)[1..7], ["2", "1", "50.00", "2", "2", "100.00"]);
        let two = table_of_runs("t", &labels, &[&a, &b], 5.0);
        assert_eq!(
            pooled(&two)[1..7],
            ["2", "0.50", "25.00", "2", "1.50", "75.00"]
        );
        let said = over_runs(&[0], &[0, 1], &labels, &[a.to_vec(), b.to_vec()], 5.0, true);
        assert!(
            said.contains("false positives by seed: 1 / 0; spam missed by seed: 0 / 1"),
            "{said}"
        );
        assert!(
            said.contains("misjudged on all 2 seeds: 0 ham, 0 spam"),
            "{said}"
        );
        assert!(said.contains("ham\tm0\t1\nspam\tm3\t1\n"), "{said}");
        let runs = [a.to_vec(), b.to_vec()];
        let said = over_runs(&[1, 3], &[7], &labels, &runs, 5.0, true);
        assert!(
            said.starts_with("rules + classifier, the mean of a run over 2 splits (1,3) × seed 7: 2 runs (threshold 5)\n"),
            "{said}"
        );
        assert!(
            said.contains("false positives by run: 1 / 0; spam missed by run: 0 / 1"),
            "{said}"
        );
        assert!(said.contains("on how many of the 2 runs"), "{said}");
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
                part: None,
            })
            .collect();
        let folds = assign_folds(&labels, 5);
        // `--split`: every split is as even, and another split is other folds.
        for split in [0, 1, 2] {
            let folds = assign_folds_salted(&labels, 5, split);
            for f in 0..5 {
                for (src, spam) in [("a", true), ("a", false), ("b", true), ("b", false)] {
                    let n = labels
                        .iter()
                        .zip(&folds)
                        .filter(|(l, &g)| g == f && l.source == src && l.spam == spam)
                        .count();
                    assert_eq!(n, 2, "split {split} fold {f} {src} {spam}");
                }
            }
        }
        assert_eq!(assign_folds(&labels, 5), folds, "stable");
        assert_eq!(assign_folds_salted(&labels, 5, 0), folds, "split 0");
        assert_ne!(assign_folds_salted(&labels, 5, 1), folds, "split 1");
        assert_ne!(
            assign_folds_salted(&labels, 5, 1),
            assign_folds_salted(&labels, 5, 2)
        );
    }
}
