//! The outcome of a scan: which rules hit, their summed score against the threshold, and the
//! public text of a `reject` rule.

use crate::rules::RuleId;

/// The outcome of scanning one message.
///
/// A `reject` rule refuses the message whenever it hits. When it hits only after the scan window
/// (the relay has already released the held bytes with its `X-Conbool-*` headers), the message
/// is still refused at end of data (`550 5.7.1`, the downstream transaction abandoned), but the
/// headers that went out can no longer change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Sum of the scores of the rules hit.
    pub score: f64,
    /// The listed rules hit (sub-rules named `__…` left out), in rule order.
    pub hits: Vec<RuleId>,
    /// Whether the score reached the threshold.
    pub spam: bool,
    /// Set when a `reject` rule hit: the public text for the `550 5.7.1` reply.
    pub reject: Option<String>,
}

/// A set of rules, one bit each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HitSet {
    words: Vec<u64>,
}

impl HitSet {
    pub fn new(rules: usize) -> HitSet {
        HitSet {
            words: vec![0; rules.div_ceil(64)],
        }
    }

    #[inline]
    pub fn set(&mut self, id: RuleId) {
        if let Some(w) = self.words.get_mut(id.0 as usize / 64) {
            *w |= 1 << (id.0 % 64);
        }
    }

    #[inline]
    pub fn get(&self, id: RuleId) -> bool {
        self.words
            .get(id.0 as usize / 64)
            .is_some_and(|w| w & (1 << (id.0 % 64)) != 0)
    }

    /// The rules set, in id order.
    pub fn iter(&self) -> impl Iterator<Item = RuleId> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros();
                w &= w - 1;
                Some(RuleId(i as u32 * 64 + bit))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hitset_roundtrip() {
        let mut h = HitSet::new(130);
        for id in [0, 5, 63, 64, 129] {
            h.set(RuleId(id));
        }
        h.set(RuleId(500)); // out of range: ignored
        let got: Vec<u32> = h.iter().map(|r| r.0).collect();
        assert_eq!(got, vec![0, 5, 63, 64, 129]);
        assert!(h.get(RuleId(64)));
        assert!(!h.get(RuleId(65)));
        assert!(!h.get(RuleId(500)));
    }
}
