//! The whole per-message scan path (`conbool scan`'s `scan_message`: pipeline, rules, verdict)
//! over the labelled corpus (`../shared/corpus/labels.tsv`), with the default rules alone or
//! with a classifier model too, for instruction counts that do not drift with the machine's
//! load:
//!
//! ```text
//! cargo build --release --example classify_profile
//! conbool train --labels ../shared/corpus/labels.tsv --out spam.model
//! valgrind --tool=callgrind --toggle-collect='*scan_all*' ./target/release/examples/classify_profile rules
//! valgrind --tool=callgrind --toggle-collect='*scan_all*' ./target/release/examples/classify_profile spam.model
//! ```
//!
//! The ratio of the two totals is what the classifier adds. A list of internal hosts after the
//! model (`classify_profile spam.model hosts.txt`, the list as `spam.internal_hosts` takes it)
//! turns on the walk that drops the receiving side's `Received` fields, as at a relay
//! configured with one (the model should then be trained with the same hosts). With `digest`
//! as its argument it prints a hash of every message's classifier features instead (as
//! `conbool train` takes them, rule hits included): a speed-up that must not change the
//! features must not change it.
//!
//! `LABELS=FILE.tsv` reads another labels file instead, such as that of the copies `conbool
//! eval --copies-out DIR` writes: the messages as the relay would see them, without the
//! receiving side's hops and the collectors' fields (train the model on the same copies).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use conbool::cli::scan::{default_limits, load_model, scan_message};
use conbool::cli::train::{features_with_rules, read_labels, read_messages, training_rules};
use conbool::rules::{CompiledRules, RuleSource, DEFAULT_RULES};

/// The relay's allocator, so that per-message allocations cost what they cost there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Scans every message; how many were flagged.
#[inline(never)]
fn scan_all(rules: &Arc<CompiledRules>, messages: &[Vec<u8>]) -> usize {
    let limits = default_limits();
    messages
        .iter()
        .filter(|m| scan_message(rules, limits, m).spam)
        .count()
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let file = std::env::var_os("LABELS").map_or_else(|| dir.join("labels.tsv"), PathBuf::from);
    let labels = match read_labels(&file) {
        Ok(labels) => labels,
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    let messages = read_messages(&labels).expect("corpus files");
    let arg = std::env::args().nth(1).unwrap_or_else(|| "rules".into());
    if arg == "digest" {
        let mut all = DefaultHasher::new();
        let mut n = 0usize;
        let rules = training_rules().expect("rules");
        for m in &messages {
            let f = features_with_rules(&rules, default_limits(), m);
            n += f.len();
            f.hash(&mut all);
        }
        println!("features {n} digest {:016x}", all.finish());
        return;
    }
    let source = RuleSource {
        origin: "built-in".into(),
        text: DEFAULT_RULES.into(),
    };
    let rules = CompiledRules::compile(&[source], 5.0).expect("compiles");
    let rules = Arc::new(if arg == "rules" {
        rules
    } else {
        let model = load_model(Path::new(&arg)).expect("model file");
        let rules = rules.with_model(model).expect("attaches");
        match std::env::args().nth(2) {
            Some(hosts) => rules.with_internal_hosts(
                conbool::cli::scan::load_internal_hosts(Path::new(&hosts)).expect("hosts file"),
            ),
            None => rules,
        }
    });
    let spam = scan_all(&rules, &messages);
    println!("{} messages, {spam} flagged ({arg})", messages.len());
}
