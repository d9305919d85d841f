//! What a worker tells operators: its metrics shard and its log lines. Kept apart from the
//! loop so the loop reads as moving bytes; each function here is called once per message,
//! refused session or failure, never per byte.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use super::Worker;
use crate::logging::Level;
use crate::metrics::names::{RefuseReason, Stage};
use crate::relay::session::{ConnInfo, MessageLog, SessionCounts};

impl Worker {
    /// Wall-clock time at `now` (one clock pair per worker, taken at start).
    fn wall_at(&self, now: Instant) -> SystemTime {
        self.wall.1 + now.saturating_duration_since(self.wall.0)
    }

    /// A connection refused before its greeting: counted, and one `event=refused` line.
    pub(super) fn log_refused(&mut self, now: Instant, info: &ConnInfo, reason: RefuseReason) {
        self.metrics.refused(reason);
        let time = self.wall_at(now);
        if !self.log_messages {
            return;
        }
        let Some(mut line) = self.log.line(Level::Info, time, "refused") else {
            return;
        };
        line.u64("worker", self.id as u64)
            .str("session", &format!("{:X}", info.conn_id))
            .str("client", &ip_of(info.peer))
            .str("reason", reason.label())
            .finish();
    }

    /// A rare event (TLS failure, accept error) with its own fields after `worker`.
    pub(super) fn log_event(
        &mut self,
        now: Instant,
        level: Level,
        event: &str,
        fields: &[(&str, &str)],
    ) {
        let time = self.wall_at(now);
        if !self.log_messages {
            return;
        }
        let Some(mut line) = self.log.line(level, time, event) else {
            return;
        };
        line.u64("worker", self.id as u64);
        for (k, v) in fields {
            line.str(k, v);
        }
        line.finish();
    }

    /// A finished message: counters, rule hits, latency, and one `event=msg` line.
    pub(super) fn log_message(&mut self, key: usize, now: Instant, log: &MessageLog) {
        let spam = log.flag.map(|f| f == "YES");
        let eod = log.ended.then_some(log.eod_us);
        self.metrics.message(&log.reply, log.reason, spam, eod);
        if !log.rules.is_empty() {
            for name in log.rules.split(',') {
                if let Some(i) = self.rule_table.position(name) {
                    self.metrics.rule_hit(i);
                }
            }
        }
        let time = self.wall_at(now);
        if !self.log_messages || !self.log.enabled(Level::Info) {
            return;
        }
        let next_hop = self
            .conns
            .get(key)
            .and_then(|c| c.down.as_ref())
            .map(|d| d.next_hop.clone())
            .or_else(|| {
                let tenants = &self.snapshot.config.tenants;
                tenants
                    .iter()
                    .find(|t| t.name == log.tenant)
                    .map(|t| t.next_hop.clone())
            })
            .unwrap_or_default();
        let session = log.id.split('.').next().unwrap_or("");
        let verdict = match spam {
            Some(true) => "spam",
            Some(false) => "ham",
            None => "-",
        };
        let (code, rest) = log.reply.split_at(log.reply.len().min(3));
        let rest = rest.trim_start();
        let dsn = rest
            .split(' ')
            .next()
            .filter(|c| {
                c.split('.').count() == 3 && c.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            })
            .unwrap_or("");
        let Some(mut line) = self.log.line(Level::Info, time, "msg") else {
            return;
        };
        line.u64("worker", self.id as u64)
            .str("session", session)
            .str("id", &log.id)
            .str("client", &ip_of(log.client))
            .str("helo", &log.helo)
            .bool("tls", log.tls)
            .str("from", &log.from)
            .u64("nrcpt", log.rcpts.len() as u64)
            .str("to", log.rcpts.first().map_or("", String::as_str))
            .u64("size", log.size)
            .str("tenant", &log.tenant)
            .str("verdict", verdict)
            .f64("score", log.score, 1)
            .str("rules", &log.rules)
            .str("code", code)
            .str("dsn", dsn)
            .str("reply", &log.reply)
            .str("reason", log.reason)
            .str("next_hop", &next_hop)
            .u64("eod_us", log.eod_us)
            .u64("total_us", log.total_us)
            .str("disclaimer", log.disclaimer_label())
            .finish();
    }

    /// A session's counts since it last reported them.
    pub(super) fn add_counts(&mut self, counts: &SessionCounts) {
        for (i, n) in counts.rcpts.iter().enumerate() {
            self.metrics.recipients[i].add(u64::from(*n));
        }
        for stage in Stage::ALL {
            let row = &counts.next_hop_replies[stage as usize];
            for (class, n) in row.iter().enumerate() {
                self.metrics.next_hop_replies[stage as usize][class].add(u64::from(*n));
            }
        }
    }
}

/// The client's IP address (the port says nothing to an operator).
fn ip_of(addr: SocketAddr) -> String {
    addr.ip().to_string()
}
