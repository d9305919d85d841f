//! The labelled corpus (`../shared/corpus/labels.tsv`) as the relay would receive it: every
//! file, without its mbox `From ` line. Shared by `benches/message.rs` and
//! `examples/walk_profile.rs` (included with `#[path]`).

use std::path::Path;

use bytes::Bytes;
use conbool::cli::replay::corpus::strip_from_line;

/// Every labelled message; empty (with a note on stderr) when the corpus is not there.
pub fn load_labelled() -> Vec<Bytes> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let Ok(labels) = std::fs::read_to_string(dir.join("labels.tsv")) else {
        eprintln!("skipping: no corpus at {}", dir.display());
        return Vec::new();
    };
    labels
        .lines()
        .skip(1)
        .filter_map(|line| line.split('\t').next())
        .filter_map(|p| std::fs::read(dir.join(p)).ok())
        .map(|m| {
            // The mbox `From ` line is not part of the message.
            let start = m.len() - strip_from_line(&m).len();
            Bytes::from(m).slice(start..)
        })
        .collect()
}
