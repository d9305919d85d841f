//! Header spoofing (issue 9, DESIGN.md §4): incoming `X-Conbool-Flag` / `X-Conbool-Score` are
//! removed in every spelling a header parser downstream could read as the same field; the
//! tenant's loop header from an untrusted client is removed; from a trusted client it is a
//! routing loop (`554 5.4.6`). The trusted network is 127.0.0.1/32; 127.0.0.2 is untrusted.

use std::net::IpAddr;

use conbool::config::Cidr;

use crate::peer::{find, start_relay, strip_relay_fields, Client, Faults, Hop};

const TRUSTED: [u8; 4] = [127, 0, 0, 1];
const UNTRUSTED: [u8; 4] = [127, 0, 0, 2];

fn relay_for(hop: &Hop) -> conbool::reactor::RelayHandle {
    start_relay(hop.addr, |c| {
        c.tenants[0].trusted_networks = vec![Cidr {
            addr: IpAddr::from(TRUSTED),
            prefix: 32,
        }];
    })
}

/// (row, header block sent (CRLF, without the blank line), header block expected after the
/// relay's own fields)
const FORGED: &[(&str, &str, &str)] = &[
    (
        "flag_plain",
        "X-Conbool-Flag: NO\r\nSubject: s\r\n",
        "Subject: s\r\n",
    ),
    (
        "score_plain",
        "Subject: s\r\nX-Conbool-Score: -100 ()\r\n",
        "Subject: s\r\n",
    ),
    (
        "flag_no_space",
        "X-Conbool-Flag:NO\r\nSubject: s\r\n",
        "Subject: s\r\n",
    ),
    (
        "flag_mixed_case",
        "x-CONBOOL-flag: NO\r\nSubject: s\r\n",
        "Subject: s\r\n",
    ),
    (
        "score_lower_case",
        "x-conbool-score: -5\r\nSubject: s\r\n",
        "Subject: s\r\n",
    ),
    (
        "score_folded",
        "X-Conbool-Score: -100\r\n (folded)\r\n\tmore\r\nSubject: s\r\n",
        "Subject: s\r\n",
    ),
    (
        "flag_folded_value_on_next_line",
        "X-Conbool-Flag:\r\n NO\r\nSubject: s\r\n",
        "Subject: s\r\n",
    ),
    (
        "flag_duplicated",
        "X-Conbool-Flag: NO\r\nSubject: s\r\nX-Conbool-Flag: NO\r\nx-conbool-flag: no\r\n",
        "Subject: s\r\n",
    ),
    (
        "flag_space_before_colon",
        "X-Conbool-Flag : NO\r\nSubject: s\r\n",
        "Subject: s\r\n",
    ),
    (
        "flag_tab_before_colon",
        "X-Conbool-Flag\t: NO\r\nSubject: s\r\n",
        "Subject: s\r\n",
    ),
    (
        "flag_last_field",
        "Subject: s\r\nX-Conbool-Flag: NO\r\n",
        "Subject: s\r\n",
    ),
    (
        "loop_header_untrusted",
        "X-Conbool-example-com: true\r\nSubject: s\r\n",
        "Subject: s\r\n",
    ),
    (
        "loop_header_untrusted_mixed_case",
        "x-conbool-EXAMPLE-COM: true\r\nSubject: s\r\n",
        "Subject: s\r\n",
    ),
    (
        "loop_header_untrusted_folded",
        "X-Conbool-example-com:\r\n true\r\nSubject: s\r\n",
        "Subject: s\r\n",
    ),
    (
        "similar_names_stay",
        "X-Conbool-Flagged: x\r\nX-Conbool-Flag-Note: y\r\nSubject: s\r\n",
        "X-Conbool-Flagged: x\r\nX-Conbool-Flag-Note: y\r\nSubject: s\r\n",
    ),
];

/// Field names (lower case) of a header block, unfolded.
fn field_names(block: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(block);
    text.split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with([' ', '\t']))
        .map(|l| {
            l.split(':')
                .next()
                .unwrap_or("")
                .trim_end()
                .to_ascii_lowercase()
        })
        .collect()
}

#[test]
fn forged_verdict_and_loop_fields_are_removed_from_untrusted_mail() {
    let hop = Hop::start(Faults::NONE);
    let relay = relay_for(&hop);
    let mut failures = Vec::new();
    for (n, (row, sent, want)) in FORGED.iter().enumerate() {
        let (mut c, _) = Client::connect_from(relay.local_addrs[0], IpAddr::from(UNTRUSTED));
        c.cmd("EHLO spoof.test");
        c.cmd("MAIL FROM:<x@foreign.org>");
        assert!(c.cmd("RCPT TO:<v@example.com>").starts_with("250"), "{row}");
        let body = "body line\r\nX-Conbool-Flag: NO in the body stays\r\n";
        let r = c.data(format!("{sent}\r\n{body}").as_bytes());
        if !r.starts_with("250 ") {
            failures.push(format!("{row}: end of data {r:?}"));
            continue;
        }
        c.cmd("QUIT");
        let got = hop.wait_for(n + 1);
        let Some(m) = got.get(n) else {
            failures.push(format!("{row}: not delivered"));
            continue;
        };
        let ours = &m.content[..m.content.len() - strip_relay_fields(&m.content).unwrap().len()];
        let rest = strip_relay_fields(&m.content).unwrap();
        let expected = format!("{want}\r\n{body}");
        if rest != expected.as_bytes() {
            failures.push(format!(
                "{row}: delivered after our fields:\n{}",
                String::from_utf8_lossy(rest)
            ));
        }
        let names = field_names(ours);
        for name in ["x-conbool-flag", "x-conbool-score", "x-conbool-example-com"] {
            let count = names.iter().filter(|f| *f == name).count();
            if count != 1 {
                failures.push(format!("{row}: {count} {name} fields in ours"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    relay.stop().unwrap();
}

#[test]
fn forged_verdict_fields_are_removed_from_trusted_mail_too() {
    let hop = Hop::start(Faults::NONE);
    let relay = relay_for(&hop);
    let (mut c, _) = Client::connect_from(relay.local_addrs[0], IpAddr::from(TRUSTED));
    c.cmd("EHLO spoof.test");
    c.cmd("MAIL FROM:<a@example.com>");
    assert!(c.cmd("RCPT TO:<f@foreign.org>").starts_with("250"));
    let r = c.data(b"X-Conbool-Flag: NO\r\nX-Conbool-Score: -9\r\nSubject: s\r\n\r\nb\r\n");
    assert!(r.starts_with("250 "), "{r}");
    let m = &hop.wait_for(1)[0];
    assert_eq!(
        strip_relay_fields(&m.content).unwrap(),
        b"Subject: s\r\n\r\nb\r\n"
    );
    drop(c);
    relay.stop().unwrap();
}

#[test]
fn a_forged_no_does_not_clear_spam() {
    let hop = Hop::start(Faults::NONE);
    let relay = relay_for(&hop);
    let (mut c, _) = Client::connect_from(relay.local_addrs[0], IpAddr::from(UNTRUSTED));
    c.cmd("EHLO spoof.test");
    c.cmd("MAIL FROM:<x@foreign.org>");
    c.cmd("RCPT TO:<v@example.com>");
    let mut msg = b"X-Conbool-Flag: NO\r\nX-Conbool-Score: -1000 (WHITELIST)\r\n\r\n".to_vec();
    msg.extend_from_slice(conbool::rules::GTUBE);
    msg.extend_from_slice(b"\r\n");
    let r = c.data(&msg);
    assert!(r.starts_with("250 "), "{r}");
    let m = &hop.wait_for(1)[0];
    let text = String::from_utf8_lossy(&m.content);
    assert!(text.contains("\r\nX-Conbool-Flag: YES\r\n"), "{text}");
    assert!(!text.contains("X-Conbool-Flag: NO"), "{text}");
    assert!(!text.contains("WHITELIST"), "{text}");
    drop(c);
    relay.stop().unwrap();
}

/// (row, header block) — each carries the tenant's own loop header in some spelling.
const LOOPS: &[(&str, &str)] = &[
    ("plain", "X-Conbool-example-com: true\r\nSubject: s\r\n"),
    (
        "mixed_case",
        "x-CONBOOL-Example-Com: true\r\nSubject: s\r\n",
    ),
    (
        "folded",
        "Subject: s\r\nX-Conbool-example-com:\r\n true\r\n",
    ),
    (
        "any_value",
        "X-Conbool-example-com: false\r\nSubject: s\r\n",
    ),
    (
        "space_before_colon",
        "X-Conbool-example-com : true\r\nSubject: s\r\n",
    ),
];

#[test]
fn the_loop_header_from_a_trusted_client_is_a_routing_loop() {
    let hop = Hop::start(Faults::NONE);
    let relay = relay_for(&hop);
    let mut failures = Vec::new();
    let (mut c, _) = Client::connect_from(relay.local_addrs[0], IpAddr::from(TRUSTED));
    c.cmd("EHLO spoof.test");
    for (row, header) in LOOPS {
        c.cmd("MAIL FROM:<a@example.com>");
        let rr = c.cmd("RCPT TO:<f@foreign.org>");
        assert!(rr.starts_with("250"), "{row}: {rr}");
        let r = c.data(format!("{header}\r\nbody\r\n").as_bytes());
        if !r.starts_with("554 5.4.6 ") {
            failures.push(format!("{row}: {r:?}"));
        }
    }
    // The session goes on and a clean message still passes.
    c.cmd("MAIL FROM:<a@example.com>");
    c.cmd("RCPT TO:<f@foreign.org>");
    let r = c.data(b"Subject: clean\r\n\r\nbody\r\n");
    assert!(r.starts_with("250 "), "{r}");
    let got = hop.wait_for(1);
    assert_eq!(got.len(), 1, "only the clean message is delivered");
    assert!(find(&got[0].content, b"Subject: clean").is_some());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    drop(c);
    relay.stop().unwrap();
}
