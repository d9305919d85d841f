//! Disclaimers over real sockets: a trusted client's multipart/alternative message gets the
//! footer in both alternatives, through a DATA next hop and a BDAT one, and nothing else
//! changes; an untrusted client's message, a null sender and a signed message pass untouched.

use std::net::IpAddr;

use conbool::config::{Cidr, Disclaimer, DisclaimerScope};

use crate::peer::{dot_stuff, find, start_relay, strip_relay_fields, Client, Faults, Hop};

const TRUSTED: [u8; 4] = [127, 0, 0, 1];
const UNTRUSTED: [u8; 4] = [127, 0, 0, 2];

const ALTERNATIVE: &[u8] = b"From: a@example.com\r\nTo: x@elsewhere.org\r\nSubject: hi\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello there.\r\n\
--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hello there.</p></body></html>\r\n\
--b1--\r\nepilogue\r\n";

const SIGNED: &[u8] = b"From: a@example.com\r\nSubject: signed\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=\"s\"\r\n\r\n\
--s\r\nContent-Type: text/plain\r\n\r\nSigned words.\r\n--s\r\n\
Content-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--s--\r\n";

fn relay(hop: &Hop) -> conbool::reactor::RelayHandle {
    start_relay(hop.addr, |c| {
        c.tenants[0].trusted_networks = vec![Cidr {
            addr: IpAddr::from(TRUSTED),
            prefix: 32,
        }];
        c.tenants[0].disclaimer = Some(Disclaimer {
            // A line starting with a dot: it must travel dot-stuffed under DATA.
            text: "Example Ltd, registered in Nowhere\n.end of footer".into(),
            html: "<p>Example Ltd, registered in Nowhere</p>".into(),
            applies_to: DisclaimerScope::Outbound,
            skip_rules: Vec::new(),
        });
    })
}

/// Sends one message from `from_ip` with envelope sender `sender`; returns the final reply.
fn send(
    relay: &conbool::reactor::RelayHandle,
    from_ip: [u8; 4],
    sender: &str,
    rcpt: &str,
    msg: &[u8],
) -> String {
    let (mut c, _) = Client::connect_from(relay.local_addrs[0], IpAddr::from(from_ip));
    c.cmd("EHLO e2e.test");
    assert!(c.cmd(&format!("MAIL FROM:<{sender}>")).starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    assert!(r.starts_with("250"), "{r}");
    let r = c.data(&dot_stuff(msg));
    c.cmd("QUIT");
    r
}

/// `content` with every occurrence of `cut` removed once, in order.
fn without(content: &[u8], cuts: &[&[u8]]) -> Vec<u8> {
    let mut out = content.to_vec();
    for cut in cuts {
        let at = find(&out, cut).unwrap_or_else(|| {
            panic!(
                "{:?} not in {}",
                String::from_utf8_lossy(cut),
                String::from_utf8_lossy(&out)
            )
        });
        out.drain(at..at + cut.len());
    }
    out
}

#[test]
fn both_alternatives_are_footed_through_data_and_bdat_next_hops() {
    for chunking in [false, true] {
        let hop = Hop::start(Faults {
            chunking,
            ..Faults::NONE
        });
        let relay = relay(&hop);
        let r = send(
            &relay,
            TRUSTED,
            "a@example.com",
            "x@elsewhere.org",
            ALTERNATIVE,
        );
        assert!(r.starts_with("250"), "chunking={chunking}: {r}");
        let got = hop.wait_for(1).remove(0);
        assert_eq!(got.bdat, chunking);
        let body = strip_relay_fields(&got.content).expect("our fields on top");
        let text = String::from_utf8_lossy(body);
        assert!(
            body.starts_with(b"X-Conbool-Disclaimer: example.com\r\n"),
            "chunking={chunking}: {text}"
        );
        // Everything else is the message as sent, byte for byte.
        let rest = without(
            body,
            &[
                b"X-Conbool-Disclaimer: example.com\r\n",
                b"\r\nExample Ltd, registered in Nowhere\r\n.end of footer\r\n",
                b"\r\n<p>Example Ltd, registered in Nowhere</p>\r\n",
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&rest),
            String::from_utf8_lossy(ALTERNATIVE),
            "chunking={chunking}"
        );
        // The HTML footer sits before </body>.
        assert!(
            find(
                body,
                b"<p>Example Ltd, registered in Nowhere</p>\r\n</body>"
            )
            .is_some(),
            "{text}"
        );
        relay.stop().expect("stop");
    }
}

#[test]
fn inbound_null_sender_and_signed_messages_pass_untouched() {
    let hop = Hop::start(Faults::NONE);
    let relay = relay(&hop);
    // (row, client, sender, recipient, message)
    type Row<'a> = (&'a str, [u8; 4], &'a str, &'a str, &'a [u8]);
    let rows: [Row<'_>; 3] = [
        (
            "inbound",
            UNTRUSTED,
            "a@x.org",
            "v@example.com",
            ALTERNATIVE,
        ),
        ("null_sender", TRUSTED, "", "x@elsewhere.org", ALTERNATIVE),
        (
            "signed",
            TRUSTED,
            "a@example.com",
            "x@elsewhere.org",
            SIGNED,
        ),
    ];
    for (n, (row, ip, sender, rcpt, msg)) in rows.iter().enumerate() {
        let r = send(&relay, *ip, sender, rcpt, msg);
        assert!(r.starts_with("250"), "{row}: {r}");
        let got = hop.wait_for(n + 1).remove(n);
        let body = strip_relay_fields(&got.content).expect("our fields on top");
        assert_eq!(
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(msg),
            "{row}"
        );
    }
    relay.stop().expect("stop");
}
