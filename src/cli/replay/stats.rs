//! What a replay measured: latency histograms (hdrhistogram, microseconds), reply-code tallies,
//! and the report as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::cli::toolkit::JsonWriter;

/// Highest latency a histogram holds (longer ones are recorded as this): one hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Distinct error keys kept in [`ReplayReport::errors`]; the rest are summed under `other`.
pub const MAX_ERROR_KINDS: usize = 64;

/// A latency distribution in microseconds.
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram: 1 µs to 1 h at three significant digits.
    pub fn new() -> Latency {
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .expect("constant histogram bounds are valid");
        Latency { hist }
    }

    /// Records one duration (clamped to the histogram's range).
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    /// Adds another histogram's samples (e.g. from another run or worker).
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so `add` cannot fail; a failure would only lose samples.
        let _ = self.hist.add(&other.hist);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Percentiles and extremes.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.hist;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Percentiles of one latency, in microseconds (all zero when nothing was recorded).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min_us: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// The four latencies a replay measures.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    /// TCP connect until the client is ready (greeting and EHLO answered).
    pub connect: Latency,
    /// `MAIL FROM` sent until the last `RCPT TO` reply.
    pub envelope: Latency,
    /// Last message byte handed to the kernel until the end-of-data reply.
    pub data: Latency,
    /// Whole message: its start until the end-of-data reply. Under `--rate` the start is the
    /// *intended* send time from the schedule, so a stalled server cannot hide its tail
    /// (coordinated omission); otherwise it is when `MAIL FROM` was sent.
    pub message: Latency,
}

/// The outcome of one replay run.
#[derive(Clone, Debug, Default)]
pub struct ReplayReport {
    /// Where the messages went.
    pub target: String,
    /// Concurrent sessions.
    pub sessions: usize,
    /// BDAT was allowed.
    pub bdat: bool,
    /// The open-loop rate in messages per second, if one was set.
    pub rate: Option<f64>,
    /// Wall time from the first session being ready to the last final reply.
    pub elapsed: Duration,
    /// Messages started (MAIL sent).
    pub attempted: u64,
    /// Messages answered `2xx` at end of data.
    pub accepted: u64,
    /// Messages refused with a `4xx` (at MAIL, RCPT, DATA or end of data).
    pub tempfailed: u64,
    /// Messages refused with a `5xx`.
    pub rejected: u64,
    /// Messages without a final answer (connection lost or timed out).
    pub failed: u64,
    /// Content bytes of accepted messages.
    pub bytes_accepted: u64,
    /// Connections that reached the ready state.
    pub connections: u64,
    /// Connection attempts that failed before the ready state.
    pub connect_failures: u64,
    /// STARTTLS was asked for.
    pub starttls: bool,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// Of those, resumed sessions (no certificate exchange).
    pub tls_resumed: u64,
    /// The protocol and cipher suite of the last handshake (`TLSv1.3:TLS13_AES_256_GCM_SHA384`).
    pub tls_cipher: Option<String>,
    /// The reply that decided each answered message, by code.
    pub final_codes: BTreeMap<u16, u64>,
    /// Refusals and failures by stage and reply (e.g. `end of data 451 4.3.0`,
    /// `connection: refused`).
    pub errors: BTreeMap<String, u64>,
    /// Latency histograms.
    pub latencies: Latencies,
}

impl ReplayReport {
    /// Accepted messages per second.
    pub fn msgs_per_sec(&self) -> f64 {
        per_sec(self.accepted as f64, self.elapsed)
    }

    /// Accepted content megabytes (10^6 bytes) per second.
    pub fn mb_per_sec(&self) -> f64 {
        per_sec(self.bytes_accepted as f64 / 1e6, self.elapsed)
    }

    /// Counts an error under `key`, folding rare kinds into `other` past [`MAX_ERROR_KINDS`].
    pub fn count_error(&mut self, key: String) {
        if self.errors.len() >= MAX_ERROR_KINDS && !self.errors.contains_key(&key) {
            *self.errors.entry("other".to_string()).or_default() += 1;
        } else {
            *self.errors.entry(key).or_default() += 1;
        }
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let mode = match (self.bdat, self.starttls) {
            (false, false) => "DATA",
            (true, false) => "BDAT allowed",
            (false, true) => "DATA, STARTTLS",
            (true, true) => "BDAT allowed, STARTTLS",
        };
        let _ = writeln!(
            s,
            "replay: {} messages to {} over {} sessions ({mode}) in {:.2} s",
            self.attempted,
            self.target,
            self.sessions,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "  accepted {}  tempfailed {}  rejected {}  failed {}",
            self.accepted, self.tempfailed, self.rejected, self.failed
        );
        let _ = writeln!(
            s,
            "  throughput {:.1} msg/s, {:.2} MB/s",
            self.msgs_per_sec(),
            self.mb_per_sec()
        );
        let _ = writeln!(
            s,
            "  connections {} ({} failed attempts)",
            self.connections, self.connect_failures
        );
        if self.starttls {
            let _ = writeln!(
                s,
                "  tls {} handshakes ({} resumed), {}",
                self.tls_handshakes,
                self.tls_resumed,
                self.tls_cipher.as_deref().unwrap_or("no cipher negotiated")
            );
        }
        let _ = writeln!(
            s,
            "  latency ms     {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "count", "p50", "p90", "p99", "p99.9", "max"
        );
        let rows = [
            ("connect", &self.latencies.connect),
            ("envelope", &self.latencies.envelope),
            ("end-of-data", &self.latencies.data),
            ("message", &self.latencies.message),
        ];
        for (name, lat) in rows {
            let m = lat.summary();
            let _ = writeln!(
                s,
                "    {name:<12} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
                m.count,
                ms(m.p50_us),
                ms(m.p90_us),
                ms(m.p99_us),
                ms(m.p999_us),
                ms(m.max_us)
            );
        }
        match self.rate {
            Some(r) => {
                let _ = writeln!(
                    s,
                    "  (open loop at {r} msg/s: message latency counts from each intended send time)"
                );
            }
            None => {
                let _ = writeln!(s, "  (closed loop: message latency counts from MAIL FROM)");
            }
        }
        if !self.final_codes.is_empty() {
            let codes: Vec<String> = self
                .final_codes
                .iter()
                .map(|(c, n)| format!("{c} x{n}"))
                .collect();
            let _ = writeln!(s, "  final replies: {}", codes.join(", "));
        }
        for (what, n) in &self.errors {
            let _ = writeln!(s, "  error x{n}: {what}");
        }
        s
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        let mut j = JsonWriter::object();
        j.field_str("target", &self.target);
        j.field_u64("sessions", self.sessions as u64);
        j.field_bool("bdat", self.bdat);
        match self.rate {
            Some(r) => j.field_f64("rate", r),
            None => j.field_null("rate"),
        }
        j.field_f64("elapsed_s", self.elapsed.as_secs_f64());
        j.field_u64("attempted", self.attempted);
        j.field_u64("accepted", self.accepted);
        j.field_u64("tempfailed", self.tempfailed);
        j.field_u64("rejected", self.rejected);
        j.field_u64("failed", self.failed);
        j.field_u64("bytes_accepted", self.bytes_accepted);
        j.field_f64("msgs_per_sec", self.msgs_per_sec());
        j.field_f64("mb_per_sec", self.mb_per_sec());
        j.field_u64("connections", self.connections);
        j.field_u64("connect_failures", self.connect_failures);
        j.field_bool("starttls", self.starttls);
        j.field_u64("tls_handshakes", self.tls_handshakes);
        j.field_u64("tls_resumed", self.tls_resumed);
        match &self.tls_cipher {
            Some(c) => j.field_str("tls_cipher", c),
            None => j.field_null("tls_cipher"),
        }
        j.begin_object("final_codes");
        for (code, n) in &self.final_codes {
            j.field_u64(&code.to_string(), *n);
        }
        j.end_object();
        j.begin_object("errors");
        for (what, n) in &self.errors {
            j.field_u64(what, *n);
        }
        j.end_object();
        j.begin_object("latency_us");
        let rows = [
            ("connect", &self.latencies.connect),
            ("envelope", &self.latencies.envelope),
            ("end_of_data", &self.latencies.data),
            ("message", &self.latencies.message),
        ];
        for (name, lat) in rows {
            let m = lat.summary();
            j.begin_object(name);
            j.field_u64("count", m.count);
            j.field_u64("min", m.min_us);
            j.field_f64("mean", m.mean_us);
            j.field_u64("p50", m.p50_us);
            j.field_u64("p90", m.p90_us);
            j.field_u64("p99", m.p99_us);
            j.field_u64("p99_9", m.p999_us);
            j.field_u64("max", m.max_us);
            j.end_object();
        }
        j.end_object();
        j.finish()
    }
}

fn per_sec(amount: f64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        amount / secs
    } else {
        0.0
    }
}

/// Microseconds as milliseconds with three decimals.
fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ReplayReport {
        let mut r = ReplayReport {
            target: "127.0.0.1:2525".to_string(),
            sessions: 4,
            elapsed: Duration::from_secs(2),
            attempted: 200,
            accepted: 195,
            tempfailed: 5,
            bytes_accepted: 4_000_000,
            connections: 4,
            ..ReplayReport::default()
        };
        r.final_codes.insert(250, 195);
        r.final_codes.insert(451, 5);
        r.count_error("end of data 451 4.3.0".to_string());
        for ms in 1..=1000u64 {
            r.latencies.message.record(Duration::from_millis(ms));
        }
        r.latencies.connect.record(Duration::from_micros(1500));
        r
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let m = report().latencies.message.summary();
        assert_eq!(m.count, 1000);
        // Three significant digits: within 0.1 % of the exact value.
        for (name, got, want) in [
            ("p50", m.p50_us, 500_000u64),
            ("p90", m.p90_us, 900_000),
            ("p99", m.p99_us, 990_000),
            ("p99.9", m.p999_us, 999_000),
            ("max", m.max_us, 1_000_000),
            ("min", m.min_us, 1_000),
        ] {
            let tolerance = want / 1000 + 1;
            assert!(got.abs_diff(want) <= tolerance, "{name}: {got} vs {want}");
        }
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let mut l = Latency::new();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(10 * 3600));
        let m = l.summary();
        assert_eq!(m.count, 2);
        assert_eq!(m.min_us, 1);
        assert!(m.max_us >= MAX_LATENCY_US, "{}", m.max_us);
    }

    #[test]
    fn merge_adds_samples() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        a.merge(&b);
        assert_eq!(a.count(), 2);
    }

    #[test]
    fn text_report_has_rates_percentiles_and_errors() {
        let text = report().to_text();
        for want in [
            "replay: 200 messages to 127.0.0.1:2525 over 4 sessions (DATA) in 2.00 s",
            "accepted 195  tempfailed 5  rejected 0  failed 0",
            "throughput 97.5 msg/s, 2.00 MB/s",
            "final replies: 250 x195, 451 x5",
            "error x1: end of data 451 4.3.0",
            "closed loop",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("message"))
            .expect("message row");
        assert!(line.contains("1000"), "{line}");
        assert!(line.contains("500."), "{line}");
    }

    #[test]
    fn json_report_is_one_object_with_every_section() {
        let mut r = report();
        r.rate = Some(100.0);
        let json = r.to_json();
        for want in [
            "\"target\":\"127.0.0.1:2525\"",
            "\"rate\":100",
            "\"accepted\":195",
            "\"msgs_per_sec\":97.5",
            "\"final_codes\":{\"250\":195,\"451\":5}",
            "\"errors\":{\"end of data 451 4.3.0\":1}",
            "\"connect\":{\"count\":1,",
            "\"p99_9\":",
        ] {
            assert!(json.contains(want), "missing {want:?} in {json}");
        }
        assert!(json.starts_with('{') && json.ends_with('}'));
        assert_eq!(json.matches('{').count(), json.matches('}').count());
    }

    #[test]
    fn error_kinds_are_bounded() {
        let mut r = ReplayReport::default();
        for i in 0..(MAX_ERROR_KINDS + 10) {
            r.count_error(format!("kind {i}"));
        }
        assert_eq!(r.errors.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(r.errors.get("other"), Some(&10));
    }
}
