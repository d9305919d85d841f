//! The relay over real sockets: delivery, refusals, next-hop faults, limits, graceful stop.

use std::sync::Arc;

use conbool::config::Config;
use conbool::reactor::{self, RelayHandle};
use conbool::relay::session::Snapshot;
use conbool::rules::CompiledRules;

use crate::peer::{refusing_port, scripted_next_hop, Client, HopScript, FAILSAFE};

fn start(next_hop: &str, edit: impl FnOnce(&mut Config)) -> RelayHandle {
    let mut config = Config::embedded_defaults();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 2;
    for t in &mut config.tenants {
        t.next_hop = next_hop.to_string();
    }
    edit(&mut config);
    let rules = CompiledRules::builtin(config.spam.threshold);
    let options = reactor::RelayOptions {
        log_messages: false,
    };
    reactor::spawn(
        Snapshot {
            config: Arc::new(config),
            rules,
        },
        &options,
    )
    .expect("relay starts")
}

const MSG: &[u8] =
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: e2e\r\n\r\nHello\r\n..leading dot\r\n";

#[test]
fn message_goes_through_to_a_data_only_next_hop_with_headers_added() {
    let (hop, delivered) = scripted_next_hop(HopScript::AcceptData);
    let relay = start(&hop.to_string(), |_| {});
    let (mut c, greeting) = Client::connect(relay.local_addrs[0]);
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(c.cmd("EHLO e2e.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@example.com>").starts_with("250"));
    let r = c.data(MSG);
    assert!(r.starts_with("250 2.0.0 queued"), "{r}");
    let content = delivered.recv_timeout(FAILSAFE).expect("delivered");
    let text = String::from_utf8_lossy(&content);
    assert!(
        text.starts_with("Received: from e2e.test ([127.0.0.1])"),
        "{text}"
    );
    assert!(
        text.contains("X-Conbool-example-com: true\r\nX-Conbool-Flag: NO\r\n"),
        "{text}"
    );
    // The client's stuffed `..leading dot` arrives unstuffed at the next hop's content.
    assert!(
        content.ends_with(b"Subject: e2e\r\n\r\nHello\r\n.leading dot\r\n"),
        "{text}"
    );
    assert!(c.cmd("QUIT").starts_with("221"));
    relay.stop().unwrap();
}

#[test]
fn unreachable_next_hop_gives_a_4xx_not_a_250() {
    // A port nobody listens on, held so that no other test's listener takes it.
    let (_held, hop) = refusing_port();
    let relay = start(&hop.to_string(), |_| {});
    let (mut c, _) = Client::connect(relay.local_addrs[0]);
    c.cmd("EHLO e2e.test");
    // MAIL is answered at once; the failed connection is reported at RCPT.
    assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    let r = c.cmd("RCPT TO:<b@example.com>");
    assert!(r.starts_with("451 4.4.1"), "{r}");
    relay.stop().unwrap();
}

#[test]
fn next_hop_dropping_mid_data_gives_451_and_the_session_survives() {
    let (hop, delivered) = scripted_next_hop(HopScript::DropAfter(10_000));
    let relay = start(&hop.to_string(), |_| {});
    let (mut c, _) = Client::connect(relay.local_addrs[0]);
    c.cmd("EHLO e2e.test");
    c.cmd("MAIL FROM:<a@example.com>");
    c.cmd("RCPT TO:<b@example.com>");
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    while big.len() < 200_000 {
        big.extend_from_slice(b"0123456789 0123456789 0123456789 0123456789\r\n");
    }
    let r = c.data(&big);
    assert!(r.starts_with("451 4.4.2"), "{r}");
    assert!(delivered.try_recv().is_err(), "nothing delivered");
    assert!(c.cmd("NOOP").starts_with("250"), "session still usable");
    relay.stop().unwrap();
}

#[test]
fn connections_over_the_per_ip_limit_get_421() {
    let (hop, _) = scripted_next_hop(HopScript::AcceptData);
    let relay = start(&hop.to_string(), |c| c.limits.max_connections_per_ip = 2);
    let (_a, g1) = Client::connect(relay.local_addrs[0]);
    let (_b, g2) = Client::connect(relay.local_addrs[0]);
    let (mut third, g3) = Client::connect(relay.local_addrs[0]);
    assert!(g1.starts_with("220") && g2.starts_with("220"));
    assert!(g3.starts_with("421 4.7.0"), "{g3}");
    assert!(third.is_closed());
    relay.stop().unwrap();
}

#[test]
fn graceful_stop_lets_a_transaction_in_flight_finish() {
    let (hop, delivered) = scripted_next_hop(HopScript::AcceptData);
    let relay = start(&hop.to_string(), |_| {});
    let (mut c, _) = Client::connect(relay.local_addrs[0]);
    c.cmd("EHLO e2e.test");
    c.cmd("MAIL FROM:<a@example.com>");
    c.cmd("RCPT TO:<b@example.com>");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: in flight\r\n\r\nfirst half\r\n");
    relay.drain();
    // New connections are no longer accepted once the listener is gone; the open transaction
    // still completes.
    c.send(b"second half\r\n.\r\n");
    let r = c.reply();
    assert!(r.starts_with("250"), "{r}");
    assert!(delivered.recv_timeout(FAILSAFE).is_ok());
    let after = c.reply();
    assert!(
        after.starts_with("421 4.3.2") || after.is_empty(),
        "{after}"
    );
    let stats = relay.join().unwrap();
    assert_eq!(stats.delivered, 1);
}
