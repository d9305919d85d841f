//! Inline rule tests (`[[rule.test]]`): each input is turned into scan events for the rule's
//! target, fed to a fresh [`Scan`] of the whole rule set, and the rule's hit compared with the
//! expectation. `conbool check` reports the problems; `cargo test` runs them for the defaults.
//!
//! A `message` input is a small message: header lines (continuation lines start with a space or
//! tab), a blank line, then body text. It is turned into events naively (no MIME decoding): the
//! header fields, the header end, one part with the `Content-Type` media type (`text/plain` when
//! absent), the body as text (for `text/*`) and as raw bytes, and a URL event for each
//! `http://`, `https://` or `www.` word in the body.

use std::sync::Arc;

use crate::message::{ScanEvent, ScanSink};
use crate::rules::compile::CompiledRules;
use crate::rules::file::{Target, TestInput};
use crate::rules::scan::{Envelope, Scan};
use crate::rules::RuleId;

impl CompiledRules {
    /// Runs every rule's inline tests; one line per failure, empty when all pass.
    pub fn self_test(self: &Arc<Self>) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, spec) in self.specs.iter().enumerate() {
            let id = RuleId(i as u32);
            for (n, test) in spec.tests.iter().enumerate() {
                let got = match run_test(self, spec.target, spec.header.as_deref(), &test.input, id)
                {
                    Ok(got) => got,
                    Err(e) => {
                        problems.push(format!(
                            "{}: rule {}: test #{}: {e}",
                            spec.origin,
                            spec.label(),
                            n + 1
                        ));
                        continue;
                    }
                };
                if got != test.hit {
                    let input = match &test.input {
                        TestInput::Snippet(s) | TestInput::Message(s) => s,
                    };
                    let short: String = input.chars().take(60).collect();
                    problems.push(format!(
                        "{}: rule {}: test #{}: expected {}, got {} (input {short:?})",
                        spec.origin,
                        spec.label(),
                        n + 1,
                        if test.hit { "a hit" } else { "no hit" },
                        if got { "a hit" } else { "no hit" },
                    ));
                }
            }
        }
        problems
    }
}

fn run_test(
    rules: &Arc<CompiledRules>,
    target: Target,
    header: Option<&str>,
    input: &TestInput,
    id: RuleId,
) -> Result<bool, String> {
    let mut scan = Scan::new(Arc::clone(rules));
    let snippet = match input {
        TestInput::Message(m) => {
            feed_message(&mut scan, m.as_bytes());
            scan.finish(m.len() as u64);
            return Ok(scan.all_hits().get(id));
        }
        TestInput::Snippet(s) => s.as_str(),
    };
    let bytes = snippet.as_bytes();
    let mut env = Envelope {
        helo: "test.example".into(),
        client_ip: core::net::IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, 1)),
        mail_from: String::new(),
        rcpts: Vec::new(),
    };
    let mut size = bytes.len() as u64;
    match target {
        Target::Body => {
            scan.event(ScanEvent::PartStart {
                depth: 0,
                content_type: b"text/plain",
                filename: None,
            });
            scan.event(ScanEvent::Text(bytes));
        }
        Target::Raw => scan.event(ScanEvent::RawBody(bytes)),
        Target::Header => scan.event(ScanEvent::Header {
            depth: 0,
            name: header.unwrap_or("").as_bytes(),
            value: bytes,
        }),
        Target::AnyHeader => {
            let (name, value) = snippet
                .split_once(':')
                .ok_or("an any_header input is `Name: value`")?;
            scan.event(ScanEvent::Header {
                depth: 0,
                name: name.as_bytes(),
                value: value.trim_start().as_bytes(),
            });
        }
        Target::HeaderPresent | Target::HeaderAbsent => {
            feed_header_block(&mut scan, bytes);
            scan.event(ScanEvent::HeaderEnd);
        }
        Target::MailFrom => env.mail_from = snippet.into(),
        Target::Rcpt => env.rcpts = vec![snippet.into()],
        Target::Helo => env.helo = snippet.into(),
        Target::ClientIp => {
            env.client_ip = snippet
                .trim()
                .parse()
                .map_err(|_| format!("{snippet:?} is not an IP address"))?
        }
        Target::Url | Target::UrlHost => scan.event(ScanEvent::Url(bytes)),
        Target::FromNameBrand => scan.event(ScanEvent::Header {
            depth: 0,
            name: b"From",
            value: bytes,
        }),
        Target::LinkTextHost => {
            let mut words = snippet.split_whitespace();
            let (Some(text), Some(href), None) = (words.next(), words.next(), words.next()) else {
                return Err("a link_text_host input is `shown-text href`".into());
            };
            scan.event(ScanEvent::Link {
                href: href.as_bytes(),
                text: text.as_bytes(),
            });
        }
        Target::AttachmentName => scan.event(ScanEvent::PartStart {
            depth: 1,
            content_type: b"application/octet-stream",
            filename: Some(bytes),
        }),
        Target::ContentType => scan.event(ScanEvent::PartStart {
            depth: 1,
            content_type: bytes,
            filename: None,
        }),
        Target::Size => {
            size = snippet
                .trim()
                .parse()
                .map_err(|_| format!("a size input is a byte count, not {snippet:?}"))?
        }
        Target::Meta => return Err("a meta rule is tested with `message`".into()),
        Target::Classifier => return Err("classifier bands have no inline tests".into()),
    }
    if matches!(
        target,
        Target::MailFrom | Target::Rcpt | Target::Helo | Target::ClientIp
    ) {
        scan.set_envelope(&env);
    }
    scan.finish(size);
    Ok(scan.all_hits().get(id))
}

/// Feeds header lines (unfolded) as top-level header events.
fn feed_header_block(scan: &mut Scan, block: &[u8]) {
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some((_, v)) = fields.last_mut() {
                v.push(b' ');
                v.extend_from_slice(line.trim_ascii());
            }
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            fields.push((
                line[..colon].to_vec(),
                line[colon + 1..].trim_ascii().to_vec(),
            ));
        }
    }
    for (name, value) in &fields {
        scan.event(ScanEvent::Header {
            depth: 0,
            name,
            value,
        });
    }
}

/// Feeds a small message naively (see the module docs).
pub(crate) fn feed_message(scan: &mut Scan, msg: &[u8]) {
    let (head, body) = split_message(msg);
    feed_header_block(scan, head);
    scan.event(ScanEvent::HeaderEnd);
    let ct = header_value(head, b"content-type")
        .map(|v| {
            let end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
            v[..end].trim_ascii().to_ascii_lowercase()
        })
        .unwrap_or_else(|| b"text/plain".to_vec());
    scan.event(ScanEvent::PartStart {
        depth: 0,
        content_type: &ct,
        filename: None,
    });
    if ct.starts_with(b"text/") {
        scan.event(ScanEvent::Text(body));
    }
    scan.event(ScanEvent::RawBody(body));
    for word in body.split(|b| b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>')) {
        let lower = word.to_ascii_lowercase();
        for start in [&b"http://"[..], b"https://", b"www."] {
            if let Some(at) = memchr::memmem::find(&lower, start) {
                scan.event(ScanEvent::Url(&word[at..]));
                break;
            }
        }
    }
}

fn split_message(msg: &[u8]) -> (&[u8], &[u8]) {
    let crlf = memchr::memmem::find(msg, b"\r\n\r\n").map(|i| (i, 4));
    let lf = memchr::memmem::find(msg, b"\n\n").map(|i| (i, 2));
    match [crlf, lf].into_iter().flatten().min() {
        Some((i, n)) => (&msg[..i], &msg[i + n..]),
        None => (msg, &[]),
    }
}

fn header_value<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon]
            .eq_ignore_ascii_case(name)
            .then(|| &line[colon + 1..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::file::RuleSource;

    #[test]
    fn default_rules_pass_their_inline_tests() {
        let rules = CompiledRules::builtin(5.0);
        let problems = rules.self_test();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_default_rule_has_a_test() {
        let rules = CompiledRules::builtin(5.0);
        for spec in rules.specs() {
            assert!(
                !spec.tests.is_empty(),
                "rule {} has no inline test",
                spec.name
            );
        }
    }

    #[test]
    fn a_failing_test_is_reported() {
        let text = r#"
[[rule]]
name = "A"
description = "d"
score = 1
target = "body"
phrases = ["needle"]
[[rule.test]]
input = "haystack"
[[rule.test]]
input = "a needle"
hit = false
[[rule.test]]
input = "needle"
"#;
        let rules = Arc::new(
            CompiledRules::compile(
                &[RuleSource {
                    origin: "t.toml".into(),
                    text: text.into(),
                }],
                5.0,
            )
            .expect("compiles"),
        );
        let problems = rules.self_test();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("t.toml: rule \"A\" (#1): test #1: expected a hit"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].contains("test #2: expected no hit"),
            "{}",
            problems[1]
        );
    }
}
