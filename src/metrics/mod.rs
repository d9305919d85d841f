//! Metrics: per-worker counters and fixed-bucket histograms, summed on scrape into the
//! Prometheus text exposition format 0.0.4 ([`Registry::render`]), served by [`http`].
//!
//! Owns: every metric name ([`names`]), one [`Shard`] per worker, the scrape-time sum. Must not
//! touch: control flow (recording never fails and never returns an error) or the data path's
//! buffers. Each worker writes only its own shard, with a relaxed load and store (no atomic
//! read-modify-write, no lock); shards are cache-line aligned so workers never share a line.
//! The scraper reads with relaxed loads: a scrape may see one counter of a message updated and
//! the next not yet, never a torn or decreasing value.

pub mod http;
pub mod names;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::metrics::names::{
    Outcome, RefuseReason, Side, Stage, CLASSES, CODE_SLOTS, LATENCY_BUCKETS_US, MAX_RULE_SERIES,
    REASONS,
};
use crate::rules::CompiledRules;

/// A monotonic counter with one writer (its worker's thread).
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the shard's own worker calls this: a plain load and store suffice.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    fn reset(&self) {
        self.0.store(0, Relaxed);
    }
}

/// A latency histogram with the fixed buckets of [`LATENCY_BUCKETS_US`] (one writer).
#[derive(Default, Debug)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [Counter; LATENCY_BUCKETS_US.len() + 1],
    sum_us: Counter,
}

impl Histogram {
    /// Records one observation of `us` microseconds.
    #[inline]
    pub fn observe_us(&self, us: u64) {
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        self.buckets[i].inc();
        self.sum_us.add(us);
    }
}

/// One worker's counters. Written by that worker only; read by the scraper.
#[repr(align(128))]
#[derive(Debug)]
pub struct Shard {
    /// Connections accepted (refused ones included).
    pub connections: Counter,
    /// Connections closed.
    pub connections_closed: Counter,
    /// Connections refused before the greeting, by [`RefuseReason`].
    pub refused: [Counter; RefuseReason::ALL.len()],
    /// Messages by outcome × reason ([`REASONS`]).
    pub messages: [[Counter; REASONS.len()]; 3],
    /// Messages by outcome × enhanced-code slot ([`names::code_slot`]).
    pub message_codes: [[Counter; CODE_SLOTS]; 3],
    /// Recipients by outcome (the reply to `RCPT`).
    pub recipients: [Counter; 3],
    /// Verdicts: spam, ham.
    pub verdicts: [Counter; 2],
    /// Bytes read from clients (on the wire, TLS included).
    pub client_bytes_in: Counter,
    /// Bytes written to clients.
    pub client_bytes_out: Counter,
    /// Next-hop replies by [`Stage`] × class (`2xx`, `5xx`, `4xx`).
    pub next_hop_replies: [[Counter; 3]; Stage::ALL.len()],
    /// New next-hop connections that completed.
    pub next_hop_connects: Counter,
    /// Next-hop connections that could not be made (refused, unreachable, timed out).
    pub next_hop_connect_failures: Counter,
    /// Next-hop connections taken from the idle pool instead of a new connect.
    pub next_hop_pool_reuses: Counter,
    /// TLS handshakes completed, by [`Side`].
    pub tls_handshakes: [Counter; 2],
    /// Of those, resumed.
    pub tls_resumed: [Counter; 2],
    /// TLS handshakes (or records) that failed, by [`Side`].
    pub tls_failures: [Counter; 2],
    /// End of data → final reply to the client.
    pub eod_latency: Histogram,
    /// Next-hop connect time (new connections).
    pub connect_latency: Histogram,
    rule_hits: Box<[Counter]>,
    /// The rule names `rule_hits` is indexed by (scrape and reload only, never the hot path).
    rule_names: Mutex<Arc<[String]>>,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard {
            connections: Counter::default(),
            connections_closed: Counter::default(),
            refused: Default::default(),
            messages: Default::default(),
            message_codes: std::array::from_fn(|_| std::array::from_fn(|_| Counter::default())),
            recipients: Default::default(),
            verdicts: Default::default(),
            client_bytes_in: Counter::default(),
            client_bytes_out: Counter::default(),
            next_hop_replies: Default::default(),
            next_hop_connects: Counter::default(),
            next_hop_connect_failures: Counter::default(),
            next_hop_pool_reuses: Counter::default(),
            tls_handshakes: Default::default(),
            tls_resumed: Default::default(),
            tls_failures: Default::default(),
            eod_latency: Histogram::default(),
            connect_latency: Histogram::default(),
            rule_hits: (0..MAX_RULE_SERIES).map(|_| Counter::default()).collect(),
            rule_names: Mutex::new(Arc::from(Vec::new())),
        }
    }
}

impl Shard {
    /// A connection was refused before its greeting.
    pub fn refused(&self, reason: RefuseReason) {
        self.refused[reason as usize].inc();
    }

    /// A finished message: the reply the client heard, why ([`REASONS`]), the verdict if one
    /// was reached, and the end-of-data → reply time when the end of data was seen.
    pub fn message(&self, reply: &str, reason: &str, spam: Option<bool>, eod_us: Option<u64>) {
        let outcome = Outcome::of_reply(reply).index();
        self.messages[outcome][names::reason_index(reason)].inc();
        self.message_codes[outcome][names::code_slot(reply)].inc();
        if let Some(spam) = spam {
            self.verdicts[usize::from(!spam)].inc();
        }
        if let Some(us) = eod_us {
            self.eod_latency.observe_us(us);
        }
    }

    /// A rule (by its position in the worker's current [`RuleTable`]) hit a message.
    pub fn rule_hit(&self, index: usize) {
        if let Some(c) = self.rule_hits.get(index) {
            c.inc();
        }
    }

    /// A TLS handshake finished on `side`.
    pub fn tls_handshake(&self, side: Side, resumed: bool) {
        self.tls_handshakes[side as usize].inc();
        if resumed {
            self.tls_resumed[side as usize].inc();
        }
    }

    /// TLS failed on `side`.
    pub fn tls_failure(&self, side: Side) {
        self.tls_failures[side as usize].inc();
    }

    /// The worker switched to rules named `names` (in id order). When the names differ from
    /// the previous set, the rule counters restart at zero under the new names (Prometheus
    /// sees a counter reset), so a series never counts another rule's hits.
    pub fn set_rules(&self, names: Arc<[String]>) {
        let mut current = self.rule_names.lock().unwrap_or_else(|p| p.into_inner());
        if current[..] != names[..] {
            for c in self.rule_hits.iter() {
                c.reset();
            }
            *current = names;
        }
    }
}

/// Rule names of one snapshot and a name → position index, built once per reload.
#[derive(Clone, Debug, Default)]
pub struct RuleTable {
    /// Rule names in id order (at most [`MAX_RULE_SERIES`]).
    pub names: Arc<[String]>,
    index: HashMap<String, usize>,
}

impl RuleTable {
    /// The table of `rules`.
    pub fn new(rules: &CompiledRules) -> RuleTable {
        let names: Vec<String> = rules
            .specs()
            .iter()
            .take(MAX_RULE_SERIES)
            .map(|s| s.name.clone())
            .collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        RuleTable {
            names: names.into(),
            index,
        }
    }

    /// The position of the rule named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// Every worker's shard plus the process-wide counters; what a scrape reads.
#[derive(Debug)]
pub struct Registry {
    shards: Vec<Arc<Shard>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    workers: usize,
}

impl Registry {
    /// A registry with `workers` fresh shards.
    pub fn new(workers: usize) -> Registry {
        Registry {
            shards: (0..workers).map(|_| Arc::new(Shard::default())).collect(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            workers,
        }
    }

    /// Worker `id`'s shard.
    pub fn shard(&self, id: usize) -> Arc<Shard> {
        self.shards
            .get(id)
            .cloned()
            .unwrap_or_else(|| Arc::new(Shard::default()))
    }

    /// A configuration reload finished (`ok`) or was refused.
    pub fn reload(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Relaxed);
    }

    /// Sums one counter over the shards.
    pub fn sum(&self, f: impl Fn(&Shard) -> &Counter) -> u64 {
        self.shards
            .iter()
            .map(|s| f(s).get())
            .fold(0, u64::wrapping_add)
    }

    /// Every metric, summed over the shards, in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let w = &mut out;
        let sum = |f: &dyn Fn(&Shard) -> &Counter| self.sum(f);

        header(
            w,
            "build_info",
            "gauge",
            "Build information; the value is always 1.",
        );
        let _ = writeln!(
            w,
            "{}build_info{{version=\"{}\"}} 1",
            names::PREFIX,
            env!("CARGO_PKG_VERSION")
        );
        header(w, "workers", "gauge", "Worker threads (event loops).");
        sample(w, "workers", &[], self.workers as u64);

        let total = sum(&|s| &s.connections);
        let closed = sum(&|s| &s.connections_closed);
        header(w, "connections", "gauge", "Client connections open now.");
        sample(w, "connections", &[], total.saturating_sub(closed));
        header(
            w,
            "connections_total",
            "counter",
            "Client connections accepted (refused ones included).",
        );
        sample(w, "connections_total", &[], total);
        header(
            w,
            "connections_refused_total",
            "counter",
            "Client connections refused before the greeting, by reason.",
        );
        for r in RefuseReason::ALL {
            let v = sum(&|s| &s.refused[r as usize]);
            sample(w, "connections_refused_total", &[("reason", r.label())], v);
        }

        header(
            w,
            "messages_total",
            "counter",
            "Messages that reached an end-of-data reply, by outcome and reason.",
        );
        for o in Outcome::ALL {
            for (i, reason) in REASONS.iter().enumerate() {
                let v = sum(&|s| &s.messages[o.index()][i]);
                if v > 0 || o == Outcome::Accepted && i == 0 {
                    let labels = [("outcome", o.label()), ("reason", *reason)];
                    sample(w, "messages_total", &labels, v);
                }
            }
        }
        header(
            w,
            "message_replies_total",
            "counter",
            "Messages by outcome and the enhanced status code of their final reply.",
        );
        for o in Outcome::ALL {
            for slot in 0..CODE_SLOTS {
                let v = sum(&|s| &s.message_codes[o.index()][slot]);
                if v > 0 {
                    let code = names::code_label(o, slot);
                    sample(
                        w,
                        "message_replies_total",
                        &[("outcome", o.label()), ("code", &code)],
                        v,
                    );
                }
            }
        }
        header(
            w,
            "recipients_total",
            "counter",
            "Recipients (RCPT replies to clients) by outcome.",
        );
        for o in Outcome::ALL {
            let v = sum(&|s| &s.recipients[o.index()]);
            sample(w, "recipients_total", &[("outcome", o.label())], v);
        }
        header(
            w,
            "verdicts_total",
            "counter",
            "Rule verdicts: spam (X-Conbool-Flag: YES) or ham.",
        );
        sample(
            w,
            "verdicts_total",
            &[("verdict", "spam")],
            sum(&|s| &s.verdicts[0]),
        );
        sample(
            w,
            "verdicts_total",
            &[("verdict", "ham")],
            sum(&|s| &s.verdicts[1]),
        );
        self.render_rule_hits(w);

        header(
            w,
            "client_received_bytes_total",
            "counter",
            "Bytes read from clients.",
        );
        sample(
            w,
            "client_received_bytes_total",
            &[],
            sum(&|s| &s.client_bytes_in),
        );
        header(
            w,
            "client_sent_bytes_total",
            "counter",
            "Bytes written to clients.",
        );
        sample(
            w,
            "client_sent_bytes_total",
            &[],
            sum(&|s| &s.client_bytes_out),
        );

        header(
            w,
            "next_hop_replies_total",
            "counter",
            "Next-hop replies by the command they answer and their class.",
        );
        for st in Stage::ALL {
            for (c, class) in CLASSES.iter().enumerate() {
                let v = sum(&|s| &s.next_hop_replies[st as usize][c]);
                sample(
                    w,
                    "next_hop_replies_total",
                    &[("stage", st.label()), ("class", class)],
                    v,
                );
            }
        }
        header(
            w,
            "next_hop_connects_total",
            "counter",
            "New next-hop connections made.",
        );
        sample(
            w,
            "next_hop_connects_total",
            &[],
            sum(&|s| &s.next_hop_connects),
        );
        header(
            w,
            "next_hop_connect_failures_total",
            "counter",
            "Next-hop connections that failed (refused, unreachable, timed out).",
        );
        sample(
            w,
            "next_hop_connect_failures_total",
            &[],
            sum(&|s| &s.next_hop_connect_failures),
        );
        header(
            w,
            "next_hop_pool_reuses_total",
            "counter",
            "Next-hop connections reused from the idle pool.",
        );
        sample(
            w,
            "next_hop_pool_reuses_total",
            &[],
            sum(&|s| &s.next_hop_pool_reuses),
        );

        for (name, help, arr) in [
            (
                "tls_handshakes_total",
                "TLS handshakes completed, by side.",
                0,
            ),
            (
                "tls_resumed_total",
                "TLS handshakes that resumed a session, by side.",
                1,
            ),
            (
                "tls_failures_total",
                "TLS handshakes or records that failed, by side.",
                2,
            ),
        ] {
            header(w, name, "counter", help);
            for side in Side::ALL {
                let v = sum(&|s| match arr {
                    0 => &s.tls_handshakes[side as usize],
                    1 => &s.tls_resumed[side as usize],
                    _ => &s.tls_failures[side as usize],
                });
                sample(w, name, &[("side", side.label())], v);
            }
        }

        self.render_histogram(
            w,
            "end_of_data_reply_seconds",
            "Time from a message's end of data to its final reply.",
            |s| &s.eod_latency,
        );
        self.render_histogram(
            w,
            "next_hop_connect_seconds",
            "Time to connect to a next hop (new connections).",
            |s| &s.connect_latency,
        );

        header(
            w,
            "config_reloads_total",
            "counter",
            "Configuration reloads (SIGHUP), by result.",
        );
        sample(
            w,
            "config_reloads_total",
            &[("result", "ok")],
            self.reloads_ok.load(Relaxed),
        );
        sample(
            w,
            "config_reloads_total",
            &[("result", "failed")],
            self.reloads_failed.load(Relaxed),
        );
        out
    }

    fn render_rule_hits(&self, w: &mut String) {
        header(
            w,
            "rule_hits_total",
            "counter",
            "Messages each rule of the running rule set hit.",
        );
        // Workers may briefly run different rule sets around a reload: sum by name.
        let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
        for shard in &self.shards {
            let names = shard
                .rule_names
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            for (i, name) in names.iter().enumerate() {
                let v = shard.rule_hits.get(i).map_or(0, Counter::get);
                *by_name.entry(name.clone()).or_default() += v;
            }
        }
        for (name, v) in by_name {
            sample(w, "rule_hits_total", &[("rule", &name)], v);
        }
    }

    fn render_histogram(
        &self,
        w: &mut String,
        name: &str,
        help: &str,
        f: impl Fn(&Shard) -> &Histogram,
    ) {
        header(w, name, "histogram", help);
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += self.sum(|s| &f(s).buckets[i]);
            let le = seconds(*bound);
            let _ = writeln!(
                w,
                "{}{name}_bucket{{le=\"{le}\"}} {cumulative}",
                names::PREFIX
            );
        }
        cumulative += self.sum(|s| &f(s).buckets[LATENCY_BUCKETS_US.len()]);
        let _ = writeln!(
            w,
            "{}{name}_bucket{{le=\"+Inf\"}} {cumulative}",
            names::PREFIX
        );
        let sum_us = self.sum(|s| &f(s).sum_us);
        let _ = writeln!(w, "{}{name}_sum {}", names::PREFIX, seconds(sum_us));
        let _ = writeln!(w, "{}{name}_count {cumulative}", names::PREFIX);
    }
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {}{name} {help}", names::PREFIX);
    let _ = writeln!(w, "# TYPE {}{name} {kind}", names::PREFIX);
}

fn sample(w: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    w.push_str(names::PREFIX);
    w.push_str(name);
    if !labels.is_empty() {
        w.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                w.push(',');
            }
            w.push_str(k);
            w.push_str("=\"");
            escape_label(w, v);
            w.push('"');
        }
        w.push('}');
    }
    let _ = writeln!(w, " {value}");
}

/// Exposition format 0.0.4: label values escape `\`, `"` and line feed.
fn escape_label(w: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => w.push_str("\\\\"),
            '"' => w.push_str("\\\""),
            '\n' => w.push_str("\\n"),
            c => w.push(c),
        }
    }
}

/// Microseconds as seconds, without float noise (`2500` → `0.0025`).
fn seconds(us: u64) -> String {
    let whole = us / 1_000_000;
    let frac = us % 1_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let s = format!("{whole}.{frac:06}");
    s.trim_end_matches('0').to_string()
}

/// Fields of a scrape, parsed strictly: `(name with labels, value)` per sample line. Comment
/// lines must be `# HELP` or `# TYPE`; anything else is an error naming the line. For tests and
/// for checking an endpoint by hand.
pub fn parse_exposition(text: &str) -> Result<Vec<(String, f64)>, String> {
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = || format!("line {}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            if !(rest.starts_with("HELP ") || rest.starts_with("TYPE ")) {
                return Err(bad());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(bad)?;
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
            && !name.as_bytes()[0].is_ascii_digit();
        if !name_ok {
            return Err(bad());
        }
        if name_end < series.len() && !series.ends_with('}') {
            return Err(bad());
        }
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad())?,
        };
        samples.push((series.to_string(), value));
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        parse_exposition(text)
            .unwrap()
            .into_iter()
            .find(|(s, _)| s == series)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .1
    }

    #[test]
    fn counters_are_summed_over_shards() {
        let reg = Registry::new(2);
        reg.shard(0).connections.add(3);
        reg.shard(1).connections.add(4);
        reg.shard(1).connections_closed.add(2);
        reg.shard(0).refused(RefuseReason::PerIpLimit);
        reg.shard(1)
            .message("250 2.0.0 queued", "delivered", Some(true), Some(1500));
        reg.shard(0)
            .message("550 5.7.1 no", "rule", Some(false), Some(10));
        reg.shard(0)
            .message("451 4.4.1 later", "next_hop_failure", None, None);
        reg.reload(true);
        let text = reg.render();
        let rows: &[(&str, f64)] = &[
            ("conbool_connections_total", 7.0),
            ("conbool_connections", 5.0),
            (
                "conbool_connections_refused_total{reason=\"per_ip_limit\"}",
                1.0,
            ),
            (
                "conbool_messages_total{outcome=\"accepted\",reason=\"delivered\"}",
                1.0,
            ),
            (
                "conbool_messages_total{outcome=\"rejected\",reason=\"rule\"}",
                1.0,
            ),
            (
                "conbool_messages_total{outcome=\"deferred\",reason=\"next_hop_failure\"}",
                1.0,
            ),
            (
                "conbool_message_replies_total{outcome=\"rejected\",code=\"5.7.1\"}",
                1.0,
            ),
            (
                "conbool_message_replies_total{outcome=\"deferred\",code=\"4.4.1\"}",
                1.0,
            ),
            ("conbool_verdicts_total{verdict=\"spam\"}", 1.0),
            ("conbool_verdicts_total{verdict=\"ham\"}", 1.0),
            (
                "conbool_end_of_data_reply_seconds_bucket{le=\"0.0005\"}",
                1.0,
            ),
            (
                "conbool_end_of_data_reply_seconds_bucket{le=\"0.001\"}",
                1.0,
            ),
            (
                "conbool_end_of_data_reply_seconds_bucket{le=\"0.0025\"}",
                2.0,
            ),
            ("conbool_end_of_data_reply_seconds_bucket{le=\"+Inf\"}", 2.0),
            ("conbool_end_of_data_reply_seconds_count", 2.0),
            ("conbool_end_of_data_reply_seconds_sum", 0.00151),
            ("conbool_config_reloads_total{result=\"ok\"}", 1.0),
        ];
        for (series, want) in rows {
            assert_eq!(value(&text, series), *want, "{series}");
        }
    }

    #[test]
    fn histogram_bucket_bounds_are_inclusive() {
        let h = Histogram::default();
        for us in [0, 500, 501, 60_000_000, 60_000_001] {
            h.observe_us(us);
        }
        let counts: Vec<u64> = h.buckets.iter().map(Counter::get).collect();
        assert_eq!(counts[0], 2);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[LATENCY_BUCKETS_US.len() - 1], 1);
        assert_eq!(counts[LATENCY_BUCKETS_US.len()], 1);
    }

    #[test]
    fn rule_series_follow_the_rule_set_and_restart_when_it_changes() {
        let reg = Registry::new(1);
        let shard = reg.shard(0);
        shard.set_rules(Arc::from(vec!["A".to_string(), "B \"q\"".to_string()]));
        shard.rule_hit(1);
        shard.rule_hit(1);
        shard.rule_hit(MAX_RULE_SERIES + 5);
        let text = reg.render();
        assert_eq!(value(&text, "conbool_rule_hits_total{rule=\"A\"}"), 0.0);
        assert_eq!(
            value(&text, "conbool_rule_hits_total{rule=\"B \\\"q\\\"\"}"),
            2.0
        );
        // Same names (a reload that recompiled the same rules): the counts stay.
        shard.set_rules(Arc::from(vec!["A".to_string(), "B \"q\"".to_string()]));
        assert_eq!(
            value(
                &reg.render(),
                "conbool_rule_hits_total{rule=\"B \\\"q\\\"\"}"
            ),
            2.0
        );
        shard.set_rules(Arc::from(vec!["C".to_string()]));
        let text = reg.render();
        assert_eq!(value(&text, "conbool_rule_hits_total{rule=\"C\"}"), 0.0);
        assert!(!text.contains("rule=\"A\""));
    }

    #[test]
    fn rendering_is_valid_exposition_text() {
        let text = Registry::new(3).render();
        let samples = parse_exposition(&text).unwrap();
        assert!(samples.len() > 40, "{text}");
        assert!(text.contains("# TYPE conbool_next_hop_connect_seconds histogram\n"));
        for (series, _) in samples {
            assert!(series.starts_with("conbool_"), "{series}");
        }
    }

    #[test]
    fn strict_parser_refuses_garbage() {
        let rows = [
            ("no_value", "conbool_x\n"),
            ("bad_value", "conbool_x abc\n"),
            ("bad_comment", "# what\n"),
            ("bad_name", "1x 3\n"),
            ("open_labels", "conbool_x{a=\"b\" 3\n"),
        ];
        for (row, text) in rows {
            assert!(parse_exposition(text).is_err(), "{row}");
        }
    }

    #[test]
    fn seconds_print_exactly() {
        for (us, s) in [
            (0, "0"),
            (500, "0.0005"),
            (2_500_000, "2.5"),
            (60_000_000, "60"),
        ] {
            assert_eq!(seconds(us), s);
        }
    }
}
