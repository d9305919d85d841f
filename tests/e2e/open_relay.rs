//! Open relay matrix (issue 9): client (trusted by IP, untrusted) × recipient form × sender.
//! Only the cells DESIGN.md §4 allows deliver, each to the right tenant's next hop with the
//! recipient as expected; every other cell gets the expected refusal. The trusted network is
//! 127.0.0.1/32 only, and the untrusted client connects from 127.0.0.2.

use std::collections::BTreeMap;
use std::net::IpAddr;

use conbool::config::{Cidr, Config};

use crate::peer::{message_id, start_relay, Client, Faults, Hop};

const TRUSTED: [u8; 4] = [127, 0, 0, 1];
const UNTRUSTED: [u8; 4] = [127, 0, 0, 2];

/// What a cell must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Delivered by tenant A's next hop (example.com), with this recipient.
    A(&'static str),
    /// Delivered by tenant B's next hop (other.test), with this recipient.
    B(&'static str),
    /// The RCPT reply starts with this (code and enhanced code); nothing is delivered.
    No(&'static str),
}

use Want::{No, A, B};

const DENIED: Want = No("554 5.7.1 ");
const NEEDS_UTF8: Want = No("553 5.6.7 ");

/// (row, recipient as written inside `<>`, MAIL carries SMTPUTF8, untrusted, trusted)
const RECIPIENTS: &[(&str, &str, bool, Want, Want)] = &[
    (
        "tenant",
        "v@example.com",
        false,
        A("v@example.com"),
        A("v@example.com"),
    ),
    (
        "tenant_upper",
        "V@EXAMPLE.COM",
        false,
        A("V@EXAMPLE.COM"),
        A("V@EXAMPLE.COM"),
    ),
    (
        "other_tenant",
        "w@other.test",
        false,
        B("w@other.test"),
        A("w@other.test"),
    ),
    (
        "other_tenant_sub",
        "w@mx.other.test",
        false,
        B("w@mx.other.test"),
        A("w@mx.other.test"),
    ),
    (
        "foreign",
        "f@foreign.org",
        false,
        DENIED,
        A("f@foreign.org"),
    ),
    (
        "tenant_subdomain_not_owned",
        "v@sub.example.com",
        false,
        DENIED,
        A("v@sub.example.com"),
    ),
    (
        "lookalike_prefix",
        "v@evilexample.com",
        false,
        DENIED,
        A("v@evilexample.com"),
    ),
    (
        "tenant_as_label",
        "v@example.com.foreign.org",
        false,
        DENIED,
        A("v@example.com.foreign.org"),
    ),
    (
        "other_wildcard_bare",
        "w@xother.test",
        false,
        DENIED,
        A("w@xother.test"),
    ),
    (
        "source_route_to_foreign",
        "@example.com:f@foreign.org",
        false,
        DENIED,
        A("f@foreign.org"),
    ),
    (
        "source_route_list_to_foreign",
        "@example.com,@other.test:f@foreign.org",
        false,
        DENIED,
        A("f@foreign.org"),
    ),
    (
        "source_route_to_tenant",
        "@foreign.org:v@example.com",
        false,
        A("v@example.com"),
        A("v@example.com"),
    ),
    (
        "percent_hack_in_tenant",
        "f%foreign.org@example.com",
        false,
        A("f%foreign.org@example.com"),
        A("f%foreign.org@example.com"),
    ),
    (
        "percent_hack_in_foreign",
        "v%example.com@foreign.org",
        false,
        DENIED,
        A("v%example.com@foreign.org"),
    ),
    (
        "bang_path_in_tenant",
        "foreign.org!f@example.com",
        false,
        A("foreign.org!f@example.com"),
        A("foreign.org!f@example.com"),
    ),
    (
        "quoted_at_in_tenant",
        "\"f@foreign.org\"@example.com",
        false,
        A("\"f@foreign.org\"@example.com"),
        A("\"f@foreign.org\"@example.com"),
    ),
    (
        "quoted_local_foreign",
        "\"v\"@foreign.org",
        false,
        DENIED,
        A("\"v\"@foreign.org"),
    ),
    (
        "quoted_local_space",
        "\"v w\"@example.com",
        false,
        A("\"v w\"@example.com"),
        A("\"v w\"@example.com"),
    ),
    (
        "ipv4_literal",
        "v@[127.0.0.1]",
        false,
        DENIED,
        A("v@[127.0.0.1]"),
    ),
    (
        "ipv6_literal",
        "v@[IPv6:::1]",
        false,
        DENIED,
        A("v@[IPv6:::1]"),
    ),
    (
        "postmaster_bare",
        "Postmaster",
        false,
        DENIED,
        A("Postmaster"),
    ),
    (
        "utf8_tenant_without_smtputf8",
        "jörg@example.com",
        false,
        NEEDS_UTF8,
        NEEDS_UTF8,
    ),
    (
        "utf8_tenant_with_smtputf8",
        "jörg@example.com",
        true,
        A("jörg@example.com"),
        A("jörg@example.com"),
    ),
    (
        "utf8_foreign_with_smtputf8",
        "jörg@bücher.example",
        true,
        DENIED,
        A("jörg@bücher.example"),
    ),
    (
        "utf8_lookalike_domain",
        "v@exämple.com",
        true,
        DENIED,
        A("v@exämple.com"),
    ),
    (
        "utf8_foreign_without_smtputf8",
        "jörg@bücher.example",
        false,
        NEEDS_UTF8,
        NEEDS_UTF8,
    ),
];

/// (row, reverse-path inside `<>`)
const SENDERS: &[(&str, &str)] = &[
    ("from_tenant", "a@example.com"),
    ("from_other_tenant", "s@other.test"),
    ("from_foreign", "x@foreign.org"),
    ("from_null", ""),
];

fn two_tenants(a: &Hop, b: &Hop) -> impl FnOnce(&mut Config) {
    let (a, b) = (a.addr, b.addr);
    move |c: &mut Config| {
        let mut other = c.tenants[0].clone();
        c.tenants[0].next_hop = a.to_string();
        c.tenants[0].trusted_networks = vec![Cidr {
            addr: IpAddr::from(TRUSTED),
            prefix: 32,
        }];
        other.name = "other.test".into();
        other.domains = vec!["other.test".into(), "*.other.test".into()];
        other.next_hop = b.to_string();
        other.trusted_networks.clear();
        c.tenants.push(other);
    }
}

#[test]
fn only_allowed_cells_of_the_open_relay_matrix_deliver() {
    let (a, b) = (Hop::start(Faults::NONE), Hop::start(Faults::NONE));
    let relay = start_relay(a.addr, two_tenants(&a, &b));
    let addr = relay.local_addrs[0];
    let mut expected = BTreeMap::new();
    let mut failures = Vec::new();
    for (client, ip) in [("trusted", TRUSTED), ("untrusted", UNTRUSTED)] {
        for (sender, from) in SENDERS {
            for (row, rcpt, utf8, untrusted, trusted) in RECIPIENTS {
                let want = if client == "trusted" {
                    *trusted
                } else {
                    *untrusted
                };
                let cell = format!("{client}.{sender}.{row}");
                let (mut c, greeting) = Client::connect_from(addr, IpAddr::from(ip));
                assert!(greeting.starts_with("220 "), "{cell}: {greeting}");
                c.cmd("EHLO matrix.test");
                let mail = c.cmd(&format!(
                    "MAIL FROM:<{from}>{}",
                    if *utf8 { " SMTPUTF8" } else { "" }
                ));
                assert!(mail.starts_with("250 2.1.0"), "{cell}: MAIL: {mail}");
                let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
                match want {
                    No(prefix) => {
                        if !r.starts_with(prefix) {
                            failures.push(format!("{cell}: RCPT: want {prefix:?}, got {r:?}"));
                        }
                        // DATA without a recipient must not open a way through either.
                        let d = c.cmd("DATA");
                        if !d.starts_with("5") || d.len() < 10 || &d[3..4] != " " {
                            failures.push(format!("{cell}: DATA after refusal: {d:?}"));
                        }
                    }
                    A(_) | B(_) => {
                        if !r.starts_with("250 ") {
                            failures.push(format!("{cell}: RCPT: want 250, got {r:?}"));
                            continue;
                        }
                        let msg = format!(
                            "Message-ID: <{cell}@matrix.test>\r\nSubject: {cell}\r\n\r\nbody\r\n"
                        );
                        let d = c.data(msg.as_bytes());
                        if !d.starts_with("250 ") {
                            failures.push(format!("{cell}: end of data: {d:?}"));
                        }
                        expected.insert(cell.clone(), want);
                    }
                }
                c.cmd("QUIT");
            }
        }
    }
    let mut got = BTreeMap::new();
    for (hop, msgs) in [("A", a.wait_for(0)), ("B", b.wait_for(0))] {
        for m in msgs {
            let id = message_id(&m.content).unwrap_or_else(|| "<no id>".into());
            let cell = id.trim_end_matches("@matrix.test").to_string();
            let rcpt = m.rcpts.join(",");
            let sender = SENDERS
                .iter()
                .find(|(name, _)| cell.contains(&format!(".{name}.")));
            if sender.is_some_and(|(_, from)| *from != m.from) {
                failures.push(format!("{cell}: MAIL FROM <{}> at the next hop", m.from));
            }
            if got.insert(cell.clone(), (hop, rcpt)).is_some() {
                failures.push(format!("{cell}: delivered twice"));
            }
        }
    }
    for (cell, want) in &expected {
        let (hop, rcpt) = match want {
            A(r) => ("A", *r),
            B(r) => ("B", *r),
            No(_) => unreachable!(),
        };
        match got.remove(cell) {
            Some((h, r)) if h == hop && r == rcpt => {}
            other => failures.push(format!("{cell}: want {hop} <{rcpt}>, delivered {other:?}")),
        }
    }
    for (cell, delivered) in got {
        failures.push(format!("{cell}: delivered {delivered:?} but must not be"));
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    relay.stop().unwrap();
}

#[test]
fn a_recipient_of_another_route_waits_for_a_new_transaction() {
    let (a, b) = (Hop::start(Faults::NONE), Hop::start(Faults::NONE));
    let relay = start_relay(a.addr, two_tenants(&a, &b));
    let (mut c, _) = Client::connect_from(relay.local_addrs[0], IpAddr::from(UNTRUSTED));
    c.cmd("EHLO matrix.test");
    assert!(c.cmd("MAIL FROM:<x@foreign.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<v@example.com>").starts_with("250"));
    let r = c.cmd("RCPT TO:<w@other.test>");
    assert!(r.starts_with("452 4.5.3 "), "{r}");
    let r = c.cmd("RCPT TO:<f@foreign.org>");
    assert!(r.starts_with("554 5.7.1 "), "{r}");
    let r = c.data(b"Message-ID: <route-1@matrix.test>\r\n\r\nbody\r\n");
    assert!(r.starts_with("250 "), "{r}");
    // The deferred recipient in a new transaction goes to its own tenant.
    assert!(c.cmd("MAIL FROM:<x@foreign.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<w@other.test>").starts_with("250"));
    let r = c.data(b"Message-ID: <route-2@matrix.test>\r\n\r\nbody\r\n");
    assert!(r.starts_with("250 "), "{r}");
    let (ma, mb) = (a.wait_for(1), b.wait_for(1));
    assert_eq!(ma.len(), 1);
    assert_eq!(ma[0].rcpts, vec!["v@example.com"]);
    assert_eq!(mb.len(), 1);
    assert_eq!(mb[0].rcpts, vec!["w@other.test"]);
    drop(c);
    relay.stop().unwrap();
}

#[test]
fn a_utf8_address_is_not_passed_to_a_next_hop_without_smtputf8() {
    // RFC 6531 §3.4: a message that needs SMTPUTF8 must not go to a server that lacks it.
    let a = Hop::start(Faults {
        smtputf8: false,
        ..Faults::NONE
    });
    let relay = start_relay(a.addr, |_| {});
    let (mut c, _) = Client::connect(relay.local_addrs[0]);
    c.cmd("EHLO matrix.test");
    let mail = c.cmd("MAIL FROM:<jörg@example.com> SMTPUTF8");
    let rcpt = c.cmd("RCPT TO:<v@example.com>");
    if rcpt.starts_with("250") {
        let r = c.data(b"Message-ID: <utf8-hop@matrix.test>\r\n\r\nbody\r\n");
        assert!(!r.starts_with("250"), "MAIL {mail} / RCPT {rcpt} / end {r}");
    }
    assert!(a.wait_for(0).is_empty(), "MAIL {mail} / RCPT {rcpt}");
    assert!(
        mail.starts_with("250") && rcpt.starts_with("553 5.6.7 "),
        "{rcpt}"
    );
    // An ASCII sender: only the non-ASCII recipient is refused.
    assert!(c.cmd("RSET").starts_with("250"));
    assert!(c
        .cmd("MAIL FROM:<a@example.com> SMTPUTF8")
        .starts_with("250"));
    let r = c.cmd("RCPT TO:<jörg@example.com>");
    assert!(r.starts_with("553 5.6.7 "), "{r}");
    assert!(c.cmd("RCPT TO:<v@example.com>").starts_with("250"));
    let r = c.data(b"Message-ID: <utf8-hop-2@matrix.test>\r\n\r\nbody\r\n");
    assert!(r.starts_with("250"), "{r}");
    let got = a.wait_for(1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, vec!["v@example.com"]);
    drop(c);
    relay.stop().unwrap();
}

#[test]
fn relay_probing_is_cut_off_after_max_errors() {
    let (a, b) = (Hop::start(Faults::NONE), Hop::start(Faults::NONE));
    let relay = start_relay(a.addr, two_tenants(&a, &b));
    let (mut c, _) = Client::connect_from(relay.local_addrs[0], IpAddr::from(UNTRUSTED));
    c.cmd("EHLO probe.test");
    c.cmd("MAIL FROM:<x@foreign.org>");
    let mut denied = 0;
    let mut last = String::new();
    for i in 0..100 {
        if !c.try_send(format!("RCPT TO:<victim{i}@foreign.org>\r\n").as_bytes()) {
            break;
        }
        last = c.reply();
        if !last.starts_with("554 5.7.1 ") {
            break;
        }
        denied += 1;
    }
    assert_eq!(denied, 10, "limits.max_errors defaults to 10");
    assert!(last.starts_with("421 4.7.0 "), "{last}");
    assert!(c.is_closed());
    relay.stop().unwrap();
}
