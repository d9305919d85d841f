//! The rule engine: rules compiled once per configuration snapshot, a small per-message
//! [`Scan`] that consumes the message pipeline's scan events with state carried across chunks,
//! and the [`Verdict`] it produces.
//!
//! Owns: compiling rules, scanning, scoring. Must not touch: reply text, I/O, editing messages.
//!
//! This first engine knows one built-in rule, GTUBE; the rule-file engine replaces its inside
//! without changing this interface.

use std::sync::Arc;

use memchr::memmem;

use crate::message::{ScanEvent, ScanSink};

/// The Generic Test for Unsolicited Bulk Email: a message containing it is always spam.
pub const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Names one rule within a [`CompiledRules`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RuleId(pub u32);

/// All rules of one configuration snapshot, compiled; shared by every worker.
#[derive(Debug)]
pub struct CompiledRules {
    threshold: f64,
    names: Vec<String>,
    scores: Vec<f64>,
}

impl CompiledRules {
    /// The built-in rule set with `threshold` (`spam.threshold`).
    pub fn builtin(threshold: f64) -> Arc<CompiledRules> {
        Arc::new(CompiledRules {
            threshold,
            names: vec!["GTUBE".to_string()],
            scores: vec![1000.0],
        })
    }

    /// A rule's name.
    pub fn name(&self, id: RuleId) -> &str {
        &self.names[id.0 as usize]
    }

    /// The score at or above which a message is spam.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
}

/// The outcome of scanning one message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Sum of the scores of the rules hit.
    pub score: f64,
    /// The rules hit, in the order first hit.
    pub hits: Vec<RuleId>,
    /// Whether the score reached the threshold.
    pub spam: bool,
    /// Set when a `reject` rule hit: the public text for the `550 5.7.1` reply.
    pub reject: Option<String>,
}

/// Per-message scan state.
#[derive(Debug)]
pub struct Scan {
    rules: Arc<CompiledRules>,
    gtube: memmem::Finder<'static>,
    // The last GTUBE.len()-1 bytes of the previous chunk of the same stream, so a pattern split
    // across two chunks still matches.
    tail: Vec<u8>,
    verdict: Verdict,
}

impl Scan {
    /// A scan for one message.
    pub fn new(rules: Arc<CompiledRules>) -> Scan {
        Scan {
            rules,
            gtube: memmem::Finder::new(GTUBE),
            tail: Vec::with_capacity(GTUBE.len() * 2),
            verdict: Verdict::default(),
        }
    }

    /// The verdict so far (final once the scanned part of the message has been fed).
    pub fn verdict(&self) -> Verdict {
        let mut v = self.verdict.clone();
        v.spam = v.score >= self.rules.threshold;
        v
    }

    /// The rules hit, by name, joined with commas (for `X-Conbool-Score` and logs).
    pub fn hit_names(&self) -> String {
        let names: Vec<&str> = self
            .verdict
            .hits
            .iter()
            .map(|&id| self.rules.name(id))
            .collect();
        names.join(",")
    }

    fn hit(&mut self, id: RuleId) {
        if !self.verdict.hits.contains(&id) {
            self.verdict.hits.push(id);
            self.verdict.score += self.rules.scores[id.0 as usize];
        }
    }

    fn body(&mut self, chunk: &[u8]) {
        if self.verdict.hits.contains(&RuleId(0)) {
            return;
        }
        // Check the seam: the previous tail joined with the head of this chunk.
        let keep = GTUBE.len() - 1;
        let head = &chunk[..chunk.len().min(keep)];
        self.tail.extend_from_slice(head);
        let found = self.gtube.find(&self.tail).is_some() || self.gtube.find(chunk).is_some();
        if found {
            self.hit(RuleId(0));
        }
        if chunk.len() >= keep {
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - keep..]);
        } else if self.tail.len() > keep {
            let cut = self.tail.len() - keep;
            self.tail.drain(..cut);
        }
    }
}

impl ScanSink for Scan {
    fn event(&mut self, ev: ScanEvent<'_>) {
        if let ScanEvent::RawBody(chunk) = ev {
            self.body(chunk)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Verdict {
        let mut s = Scan::new(CompiledRules::builtin(5.0));
        for c in chunks {
            s.event(ScanEvent::RawBody(c));
        }
        s.verdict()
    }

    #[test]
    fn gtube_found_at_every_split() {
        let msg = [b"hello\r\n".as_slice(), GTUBE, b"\r\nbye\r\n"].concat();
        assert!(scan(&[&msg]).spam);
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        assert!(scan(&bytes).spam, "byte by byte");
        for i in 0..=msg.len() {
            assert!(scan(&[&msg[..i], &msg[i..]]).spam, "split at {i}");
        }
    }

    #[test]
    fn no_gtube_is_ham() {
        let v = scan(&[b"XJS*C4JDBQADN1.NSBN3", b" not the rest"]);
        assert!(!v.spam);
        assert_eq!(v.score, 0.0);
    }
}
