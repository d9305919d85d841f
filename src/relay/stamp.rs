//! The header fields the relay writes at the top of each message (DESIGN.md §4), in order:
//! `Received`, the tenant's loop header, `X-Conbool-Flag`, `X-Conbool-Score`.

use core::net::IpAddr;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Field names the relay owns: incoming copies are removed before ours are added, so nobody
/// can pre-clear their own spam.
pub const FLAG_HEADER: &str = "X-Conbool-Flag";
/// See [`FLAG_HEADER`].
pub const SCORE_HEADER: &str = "X-Conbool-Score";

/// What the `Received` field says about the transaction.
#[derive(Debug)]
pub struct ReceivedInfo<'a> {
    /// The HELO/EHLO name.
    pub helo: &'a str,
    /// The client's address.
    pub ip: IpAddr,
    /// `server.hostname`.
    pub by: &'a str,
    /// EHLO rather than HELO.
    pub esmtp: bool,
    /// TLS active on the client connection.
    pub tls: bool,
    /// Its version and cipher, when known (`TLSv1.3:TLS13_AES_256_GCM_SHA384`).
    pub tls_description: Option<&'a str>,
    /// The message id (queue-less: connection and sequence).
    pub id: &'a str,
    /// The one recipient, when there is exactly one (RFC 5321 §4.4 `for`).
    pub single_rcpt: Option<&'a str>,
    /// Wall-clock time of receipt.
    pub when: SystemTime,
}

/// Appends `Received: ...` (RFC 5321 §4.4), folded before `by` and `with`, CRLF-terminated.
pub fn received(out: &mut Vec<u8>, r: &ReceivedInfo<'_>) {
    let proto = match (r.esmtp, r.tls) {
        (false, _) => "SMTP",
        (true, false) => "ESMTP",
        (true, true) => "ESMTPS",
    };
    let ip = match r.ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
    };
    let helo = sanitize(r.helo);
    let mut s = String::with_capacity(200);
    let _ = write!(s, "Received: from {helo} ({ip})\r\n");
    if let Some(desc) = r.tls_description {
        let (version, cipher) = desc.split_once(':').unwrap_or((desc, "unknown"));
        let (version, cipher) = (sanitize(version), sanitize(cipher));
        let _ = write!(s, "\t(using {version} with cipher {cipher})\r\n");
    }
    let _ = write!(s, "\tby {} (conbool) with {proto} id {}", r.by, r.id);
    if let Some(rcpt) = r.single_rcpt {
        let _ = write!(s, "\r\n\tfor <{}>", sanitize(rcpt));
    }
    let _ = write!(s, ";\r\n\t{}\r\n", rfc5322_date(r.when));
    out.extend_from_slice(s.as_bytes());
}

/// Appends the loop header for a tenant: `X-Conbool-<name with dots as hyphens>: true`.
pub fn loop_header(out: &mut Vec<u8>, field_name: &str) {
    out.extend_from_slice(field_name.as_bytes());
    out.extend_from_slice(b": true\r\n");
}

/// Appends `X-Conbool-Flag: YES|NO` and `X-Conbool-Score: <score> (<rules>)`.
pub fn verdict(out: &mut Vec<u8>, spam: bool, score: f64, rules: &str) {
    let flag = if spam { "YES" } else { "NO" };
    let s = format!("{FLAG_HEADER}: {flag}\r\n{SCORE_HEADER}: {score:.1} ({rules})\r\n");
    out.extend_from_slice(s.as_bytes());
}

/// An RFC 5322 date-time in UTC: `Sat, 28 Nov 2026 23:10:20 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        WD[(days.rem_euclid(7)) as usize],
        d,
        MON[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

// A client-supplied name goes into a header: keep printable ASCII without parentheses or
// semicolons that would change the field's structure; bound its length.
fn sanitize(s: &str) -> String {
    s.chars()
        .take(255)
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '(' | ')' | ';' | '<' | '>') {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let rows: &[(&str, u64, &str)] = &[
            ("epoch", 0, "Thu, 01 Jan 1970 00:00:00 +0000"),
            ("leap_day", 951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (
                "session_day",
                1_795_907_420,
                "Sat, 28 Nov 2026 23:10:20 +0000",
            ),
        ];
        for (name, secs, want) in rows {
            let t = UNIX_EPOCH + Duration::from_secs(*secs);
            assert_eq!(rfc5322_date(t), *want, "{name}");
        }
    }

    #[test]
    fn received_is_folded_and_sanitized() {
        let mut out = Vec::new();
        received(
            &mut out,
            &ReceivedInfo {
                helo: "evil (x);\r\nBcc: y",
                ip: "192.0.2.7".parse().unwrap(),
                by: "mail.conbool.com",
                esmtp: true,
                tls: true,
                tls_description: Some("TLSv1.3:TLS13_AES_256_GCM_SHA384"),
                id: "1A2B",
                single_rcpt: Some("a@example.com"),
                when: UNIX_EPOCH,
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Received: from evil??x????Bcc:?y ([192.0.2.7])\r\n\t(using TLSv1.3 with cipher \
             TLS13_AES_256_GCM_SHA384)\r\n\tby mail.conbool.com (conbool) with ESMTPS id 1A2B\r\n\tfor <a@example.com>;\r\n\tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn verdict_fields() {
        let mut out = Vec::new();
        verdict(&mut out, true, 1000.0, "GTUBE");
        assert_eq!(
            out,
            b"X-Conbool-Flag: YES\r\nX-Conbool-Score: 1000.0 (GTUBE)\r\n"
        );
    }
}
