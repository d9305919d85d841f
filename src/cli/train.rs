//! `conbool train --labels FILE.tsv --out MODEL`: trains the statistical classifier on
//! labelled messages and writes the model file that `spam.model` names.
//!
//! The labels file has the columns `path label source` (tab-separated, a header line first,
//! `label` is `ham` or `spam`, paths relative to the file), as `../shared/corpus/labels.tsv`.
//! Each message goes through the relay's message pipeline into the classifier's tokenizer and
//! its features are taken where the relay takes its verdict (the header block plus
//! `limits.scan_window` body bytes), so the model learns from what it will see.
//!
//! Also the shared pieces of `conbool eval`: [`read_labels`], [`read_messages`],
//! [`features_with_rules`].

use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::classify::{train, Model, Tokenizer, TrainParams};
use crate::cli::scan::{compile_spam_rules, default_limits, strip_from_line, MAX_SCAN_FILE_BYTES};
use crate::message::{feed_whole, MessageLimits, ScanEvent, ScanSink};
use crate::rules::{CompiledRules, Scan};
use crate::smtp::encode::canonical_crlf;

/// The largest labels file read.
const MAX_LABELS_BYTES: u64 = 64 << 20;

/// Flags of `conbool train`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Labelled messages: `path label source` per line (tab-separated, header line first).
    #[arg(long, value_name = "FILE.tsv")]
    pub labels: PathBuf,
    /// Where to write the model.
    #[arg(long, value_name = "MODEL")]
    pub out: PathBuf,
    /// Hash bits of the model: 2^bits weights of 2 bytes each.
    #[arg(long, default_value_t = TrainParams::default().bits)]
    pub bits: u32,
}

/// One labelled message.
#[derive(Clone, Debug)]
pub struct Labelled {
    /// Its path (resolved against the labels file's folder).
    pub path: PathBuf,
    /// The path as written in the labels file.
    pub name: String,
    /// Labelled spam.
    pub spam: bool,
    /// Its source (the third column).
    pub source: String,
}

/// Reads a labels file.
pub fn read_labels(path: &Path) -> Result<Vec<Labelled>, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_LABELS_BYTES).read_to_string(&mut text))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        if i == 0 && cols.first() == Some(&"path") {
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let (name, label) = match (cols.first(), cols.get(1)) {
            (Some(n), Some(l)) => (*n, *l),
            _ => {
                return Err(format!(
                    "{}:{}: expected `path label source`",
                    path.display(),
                    i + 1
                ))
            }
        };
        let spam = match label {
            "spam" => true,
            "ham" => false,
            other => {
                return Err(format!(
                    "{}:{}: label {other:?} is neither ham nor spam",
                    path.display(),
                    i + 1
                ))
            }
        };
        out.push(Labelled {
            path: base.join(name),
            name: name.to_string(),
            spam,
            source: cols.get(2).unwrap_or(&"-").to_string(),
        });
    }
    if out.is_empty() {
        return Err(format!("{}: no labelled messages", path.display()));
    }
    Ok(out)
}

/// Reads every message file (as bytes).
pub fn read_messages(labels: &[Labelled]) -> Result<Vec<Vec<u8>>, String> {
    labels
        .iter()
        .map(|l| {
            let mut b = Vec::new();
            std::fs::File::open(&l.path)
                .and_then(|f| f.take(MAX_SCAN_FILE_BYTES).read_to_end(&mut b))
                .map(|_| b)
                .map_err(|e| format!("{}: {e}", l.path.display()))
        })
        .collect()
}

/// The classifier's features of a message file (mbox `From ` line dropped, line ends made
/// CRLF), as the relay gives them to the model when it takes the verdict: its tokens and
/// the hits of `rules` (rules without a model), as [`crate::classify::rule_feature`]s.
pub fn features_with_rules(
    rules: &Arc<CompiledRules>,
    limits: MessageLimits,
    msg: &[u8],
) -> Vec<u32> {
    let msg = Bytes::from(canonical_crlf(strip_from_line(msg)).into_owned());
    let mut both = Both {
        scan: Scan::new(Arc::clone(rules)),
        tokens: Tokenizer::new(None),
    };
    let with_rules = |both: &Both| {
        let mut f = both.tokens.features().as_slice().to_vec();
        f.extend(rules.rule_features_of(&both.scan.rule_hits()));
        f
    };
    // The features the relay scores: those at the scan window.
    if let Ok(ControlFlow::Break(())) =
        feed_whole(limits, &msg, &mut both, |_| ControlFlow::Break(()))
    {
        return with_rules(&both);
    }
    both.scan.finish(msg.len() as u64);
    both.tokens.finish();
    with_rules(&both)
}

/// Scan events to the rules and the tokenizer both.
struct Both {
    scan: Scan,
    tokens: Tokenizer,
}

impl ScanSink for Both {
    fn event(&mut self, ev: ScanEvent<'_>) {
        self.scan.event(ev);
        self.tokens.event(ev);
    }
}

/// The built-in rules without a model, whose hits `conbool train` gives the classifier.
pub fn training_rules() -> Result<Arc<CompiledRules>, String> {
    let spam = crate::config::Config::embedded_defaults().spam;
    compile_spam_rules(
        &crate::config::Spam {
            model: None,
            ..spam
        },
        None,
    )
}

/// Trains a model on the messages whose index `keep` accepts.
pub fn train_on(
    features: &[Vec<u32>],
    labels: &[Labelled],
    params: &TrainParams,
    keep: impl Fn(usize) -> bool,
) -> Result<Model, String> {
    let examples: Vec<(&[u32], bool)> = features
        .iter()
        .zip(labels)
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, (f, l))| (f.as_slice(), l.spam))
        .collect();
    train(&examples, params).map_err(|e| e.to_string())
}

/// Ham weights [`pick_params`] chooses from.
pub const HAM_WEIGHTS: &[f32] = &[1.0, 2.0, 4.0, 8.0];
/// Step sizes ([`TrainParams::learning_rate`]) [`pick_params`] chooses from: a larger step
/// gives larger weights, so the same band cut-offs flag more.
pub const STEPS: &[f32] = &[20.0, 30.0, 40.0];
/// Folds of [`pick_params`]' inner cross-validation.
const INNER_FOLDS: usize = 4;
/// What a false positive costs in [`pick_params`], in missed spam: the goals allow 0.3 % of
/// ham flagged against 3 % of spam missed.
const FALSE_POSITIVE_COST: usize = 10;
/// The probability at which the classifier flags a message on its own (`CLASSIFIER_99`).
const FLAG_PROBABILITY: f64 = 0.99;

/// `params` with the step size (one of `steps`, e.g. [`STEPS`]) and ham weight (one of
/// [`HAM_WEIGHTS`]) that do best in a [`INNER_FOLDS`]-fold cross-validation over the
/// messages `keep` accepts: fewest `FALSE_POSITIVE_COST · false positives + missed spam`
/// with the classifier flagging at `FLAG_PROBABILITY`. Ties go to the smaller step, then
/// the lighter weight. Only the accepted messages are looked at, so evaluating on the others
/// stays honest.
pub fn pick_params(
    features: &[Vec<u32>],
    labels: &[Labelled],
    params: &TrainParams,
    steps: &[f32],
    keep: impl Fn(usize) -> bool,
) -> TrainParams {
    let inside: Vec<usize> = (0..labels.len()).filter(|&i| keep(i)).collect();
    let sub: Vec<Labelled> = inside
        .iter()
        .filter_map(|&i| labels.get(i).cloned())
        .collect();
    let folds = crate::cli::eval::assign_folds(&sub, INNER_FOLDS);
    let grid: Vec<TrainParams> = steps
        .iter()
        .flat_map(|&step| HAM_WEIGHTS.iter().map(move |&hw| (step, hw)))
        .map(|(learning_rate, ham_weight)| TrainParams {
            learning_rate,
            ham_weight,
            ..*params
        })
        .collect();
    let cost_of = |p: &TrainParams| -> usize {
        let mut cost = 0;
        for fold in 0..INNER_FOLDS {
            let examples: Vec<(&[u32], bool)> = inside
                .iter()
                .zip(&folds)
                .filter(|(_, &f)| f != fold)
                .filter_map(|(&i, _)| Some((features.get(i)?.as_slice(), labels.get(i)?.spam)))
                .collect();
            let Ok(model) = train(&examples, p) else {
                return usize::MAX;
            };
            for (&i, _) in inside.iter().zip(&folds).filter(|(_, &f)| f == fold) {
                let (Some(f), Some(l)) = (features.get(i), labels.get(i)) else {
                    continue;
                };
                let flagged = model.probability(f) >= FLAG_PROBABILITY;
                cost += match (l.spam, flagged) {
                    (false, true) => FALSE_POSITIVE_COST,
                    (true, false) => 1,
                    _ => 0,
                };
            }
        }
        cost
    };
    // The candidates are independent: one thread per core takes every n-th of them.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, grid.len().max(1));
    let mut costs = vec![usize::MAX; grid.len()];
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (grid, cost_of) = (&grid, &cost_of);
                s.spawn(move || {
                    (t..grid.len())
                        .step_by(threads)
                        .map(|i| (i, cost_of(&grid[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for w in workers {
            for (i, c) in w.join().unwrap_or_default() {
                costs[i] = c;
            }
        }
    });
    // In grid order, so the choice does not depend on the threads.
    let mut best: Option<(usize, TrainParams)> = None;
    for (p, cost) in grid.into_iter().zip(costs) {
        if best.as_ref().map_or(true, |(c, _)| cost < *c) {
            best = Some((cost, p));
        }
    }
    best.map_or(*params, |(_, p)| p)
}

/// Runs `conbool train`.
pub fn main(args: TrainArgs) -> ExitCode {
    let started = Instant::now();
    let run = || -> Result<String, String> {
        let labels = read_labels(&args.labels)?;
        let messages = read_messages(&labels)?;
        let limits = default_limits();
        let rules = training_rules()?;
        let features: Vec<Vec<u32>> = messages
            .iter()
            .map(|m| features_with_rules(&rules, limits, m))
            .collect();
        let params = TrainParams {
            bits: args.bits,
            ..TrainParams::default()
        };
        if !(8..=24).contains(&args.bits) {
            return Err(format!("--bits {} is outside 8 to 24", args.bits));
        }
        let params = pick_params(&features, &labels, &params, STEPS, |_| true);
        let model = train_on(&features, &labels, &params, |_| true)?;
        let bytes = model.to_bytes();
        std::fs::write(&args.out, &bytes).map_err(|e| format!("{}: {e}", args.out.display()))?;
        let spam = labels.iter().filter(|l| l.spam).count();
        Ok(format!(
            "conbool train: {} messages ({} spam, {} ham), step {} and ham weight {} (inner cross-validation), {} bytes written to {} in {:.1} s",
            labels.len(),
            spam,
            labels.len() - spam,
            params.learning_rate,
            params.ham_weight,
            bytes.len(),
            args.out.display(),
            started.elapsed().as_secs_f64()
        ))
    };
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("conbool train: {e}");
            ExitCode::from(2)
        }
    }
}
