//! The labelled corpus (`../shared/corpus/labels.tsv`) as the relay would receive it: its
//! files without their mbox `From ` line. Shared by the benches and the profiling examples
//! (included with `#[path]`).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use conbool::mbox::strip_from_line;

/// Every labelled message; empty (with a note on stderr) when the corpus is not there.
pub fn load_labelled() -> Vec<Bytes> {
    let all = labelled_sample(1);
    if all.is_empty() {
        eprintln!("skipping: no corpus at {}", corpus_dir().display());
    }
    all.into_iter().map(|(m, _)| Bytes::from(m)).collect()
}

/// Every `step`-th labelled message with whether it is spam; empty when the corpus is not
/// there.
pub fn labelled_sample(step: usize) -> Vec<(Vec<u8>, bool)> {
    let dir = corpus_dir();
    let Ok(labels) = std::fs::read_to_string(dir.join("labels.tsv")) else {
        return Vec::new();
    };
    labels
        .lines()
        .skip(1)
        .step_by(step)
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let path = cols.next()?;
            let spam = cols.next()? == "spam";
            let bytes = std::fs::read(dir.join(path)).ok()?;
            // The mbox `From ` line is not part of the message.
            Some((strip_from_line(&bytes).to_vec(), spam))
        })
        .collect()
}

/// `../shared/corpus` beside the crate.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}
