//! The rule engine: rule files compiled once per configuration snapshot into
//! [`CompiledRules`], a small per-message [`Scan`] that consumes the message pipeline's scan
//! events with state carried across chunks, and the [`Verdict`] it produces.
//!
//! Owns: parsing and compiling rule files (the caller reads them), scanning, scoring.
//! Must not touch: reply text, I/O, config files, editing the message.
//!
//! Per target, all literal phrases share one Aho-Corasick automaton and all regexes one
//! `RegexSet`, so the cost of a scan grows with the bytes scanned, not with the number of rules
//! (see `phrase` and `line` for how). Rules are listed in [`file`]; the built-in set is
//! `rules/default.toml` ([`DEFAULT_RULES`]).
//!
//! Lifecycle of a [`Scan`]: [`Scan::new`], [`Scan::set_envelope`], the message's events through
//! [`ScanSink::event`](crate::message::ScanSink), then [`Scan::finish`] with the message size.
//! [`Scan::verdict`] may be called at any point (the relay calls it when the scan window is
//! complete) and evaluates what is known so far.
#![forbid(unsafe_code)]

mod compile;
pub mod file;
mod line;
mod meta;
mod phrase;
mod scan;
mod selftest;
mod verdict;

pub use compile::{CompiledRules, DEFAULT_RULES};
pub use file::{RuleError, RuleSource, RuleSpec, Target};
pub use line::MAX_LINE_BYTES;
pub use scan::{Envelope, Scan};
pub use verdict::Verdict;

/// The Generic Test for Unsolicited Bulk Email: a message containing it is always spam.
pub const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Names one rule within a [`CompiledRules`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct RuleId(pub u32);
