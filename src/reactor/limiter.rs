//! Connections per client address, counted across all workers (`max_connections_per_ip` is
//! per process). Touched once per accept and once per close, never per message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Counts open connections per address.
#[derive(Debug)]
pub struct ConnLimiter {
    max: AtomicUsize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnLimiter {
    /// A limiter allowing `max` connections per address.
    pub fn new(max: usize) -> ConnLimiter {
        ConnLimiter {
            max: AtomicUsize::new(max),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection; false when the address is now over the limit (the connection
    /// is still counted and must be released).
    pub fn acquire(&self, ip: IpAddr) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        *n += 1;
        *n <= self.max.load(Ordering::Relaxed)
    }

    /// A new limit (reload); connections already open stay.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Forgets a closed connection.
    pub fn release(&self, ip: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_counts_and_releases() {
        let l = ConnLimiter::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.acquire(ip));
        assert!(l.acquire(ip));
        assert!(!l.acquire(ip), "third is over the limit");
        l.release(ip);
        l.release(ip);
        assert!(l.acquire(ip));
        l.set_max(1);
        assert!(!l.acquire(ip), "a lower limit counts at once");
    }
}
