//! Deadlines per connection: an ordered set keyed by (instant, slab key), so the next
//! timeout and everything due are found in O(log n).

use std::collections::BTreeSet;
use std::time::Instant;

/// Timers of one worker.
#[derive(Debug, Default)]
pub struct Timers {
    set: BTreeSet<(Instant, usize)>,
}

impl Timers {
    /// Replaces `key`'s deadline (`old` as last set) with `new`.
    pub fn update(&mut self, key: usize, old: Option<Instant>, new: Option<Instant>) {
        if old == new {
            return;
        }
        if let Some(o) = old {
            self.set.remove(&(o, key));
        }
        if let Some(n) = new {
            self.set.insert((n, key));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.set.first().map(|&(t, _)| t)
    }

    /// Removes and returns the keys due at `now`.
    pub fn expired(&mut self, now: Instant) -> Vec<usize> {
        let mut due = Vec::new();
        while let Some(&(t, key)) = self.set.first() {
            if t > now {
                break;
            }
            self.set.remove(&(t, key));
            due.push(key);
        }
        due
    }
}
