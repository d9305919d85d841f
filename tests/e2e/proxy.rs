//! PROXY protocol v1 and v2 in front of the relay (`server.proxy_protocol`): the header's
//! client address drives trust, `max_connections_per_ip` and `Received`; no greeting before
//! the header; peers outside `server.proxy_from`, garbage and slow headers are closed without
//! one.

use std::io::Write;
use std::net::{Ipv6Addr, SocketAddr, TcpStream};

use conbool::config::{Cidr, Config};
use conbool::reactor::RelayHandle;

use crate::peer::{scripted_next_hop, start_relay, Client, HopScript, FAILSAFE};

/// A relay behind a balancer on 127.0.0.0/8 whose one tenant trusts 192.0.2.0/24 only.
fn relay(next_hop: SocketAddr, edit: impl FnOnce(&mut Config)) -> RelayHandle {
    start_relay(next_hop, |c| {
        c.server.proxy_protocol = true;
        c.server.proxy_from = vec!["127.0.0.0/8".parse::<Cidr>().unwrap()];
        c.tenants[0].trusted_networks = vec!["192.0.2.0/24".parse::<Cidr>().unwrap()];
        edit(c);
    })
}

fn v1(src: &str) -> Vec<u8> {
    format!("PROXY TCP4 {src} 127.0.0.1 40000 25\r\n").into_bytes()
}

fn v2(cmd: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | cmd);
    h.push(family);
    // A TLV (PP2_TYPE_UNIQUE_ID) after the addresses, which the relay skips.
    let tlv = [0x05, 0x00, 0x03, b'a', b'b', b'c'];
    h.extend_from_slice(&((addresses.len() + tlv.len()) as u16).to_be_bytes());
    h.extend_from_slice(addresses);
    h.extend_from_slice(&tlv);
    h
}

fn v2_ipv6(src: Ipv6Addr) -> Vec<u8> {
    let mut a = src.octets().to_vec();
    a.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    a.extend_from_slice(&40000u16.to_be_bytes());
    a.extend_from_slice(&25u16.to_be_bytes());
    v2(1, 0x21, &a)
}

fn v2_ipv4(src: [u8; 4]) -> Vec<u8> {
    let mut a = src.to_vec();
    a.extend_from_slice(&[127, 0, 0, 1]);
    a.extend_from_slice(&40000u16.to_be_bytes());
    a.extend_from_slice(&25u16.to_be_bytes());
    v2(1, 0x11, &a)
}

/// Connects, sends `header` in pieces of `piece` bytes (each its own segment), reads the
/// greeting.
fn connect_with(relay: &RelayHandle, header: &[u8], piece: usize) -> (Client, String) {
    let mut s = TcpStream::connect(relay.local_addrs[0]).expect("connect");
    s.set_nodelay(true).unwrap();
    for chunk in header.chunks(piece.max(1)) {
        s.write_all(chunk).unwrap();
    }
    Client::over(s)
}

/// Sends one message from a sender outside every tenant to `rcpt`; returns the RCPT reply and,
/// when it was accepted, the content the next hop got.
fn send_one(
    c: &mut Client,
    rcpt: &str,
    delivered: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> (String, Option<String>) {
    assert!(c.cmd("EHLO lb.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@elsewhere.test>").starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    if !r.starts_with("250") {
        return (r, None);
    }
    let end = c.data(b"Subject: proxied\r\n\r\nhello\r\n");
    assert!(end.starts_with("250"), "{end}");
    let content = delivered.recv_timeout(FAILSAFE).expect("delivered");
    (r, Some(String::from_utf8_lossy(&content).into_owned()))
}

/// Whether the relay closed the connection without sending a byte.
fn closed_silently(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(FAILSAFE)).unwrap();
    let mut buf = [0u8; 64];
    matches!(std::io::Read::read(&mut s, &mut buf), Ok(0) | Err(_))
}

#[test]
fn headers_of_each_kind_split_any_way_give_the_real_client_to_received_and_trust() {
    let (hop, delivered) = scripted_next_hop(HopScript::AcceptData);
    let relay = relay(hop, |_| {});
    let v6: Ipv6Addr = "2001:db8::7".parse().unwrap();
    // (name, header, piece size, trusted, the address in Received)
    let rows: Vec<(&str, Vec<u8>, usize, bool, String)> = vec![
        (
            "v1_tcp4_whole",
            v1("192.0.2.7"),
            1000,
            true,
            "[192.0.2.7]".into(),
        ),
        (
            "v1_tcp4_bytewise",
            v1("192.0.2.8"),
            1,
            true,
            "[192.0.2.8]".into(),
        ),
        (
            "v1_untrusted",
            v1("198.51.100.9"),
            1000,
            false,
            "[198.51.100.9]".into(),
        ),
        (
            "v1_tcp6",
            b"PROXY TCP6 2001:db8::7 ::1 40000 25\r\n".to_vec(),
            7,
            false,
            format!("[IPv6:{v6}]"),
        ),
        (
            "v1_unknown",
            b"PROXY UNKNOWN\r\n".to_vec(),
            3,
            false,
            "[127.0.0.1]".into(),
        ),
        (
            "v2_ipv4_whole",
            v2_ipv4([192, 0, 2, 9]),
            1000,
            true,
            "[192.0.2.9]".into(),
        ),
        (
            "v2_ipv4_bytewise",
            v2_ipv4([192, 0, 2, 10]),
            1,
            true,
            "[192.0.2.10]".into(),
        ),
        (
            "v2_ipv6_bytewise",
            v2_ipv6(v6),
            1,
            false,
            format!("[IPv6:{v6}]"),
        ),
        // Health checks: the balancer's own connection, its own address.
        ("v2_local", v2(0, 0x00, &[]), 5, false, "[127.0.0.1]".into()),
    ];
    for (name, header, piece, trusted, in_received) in rows {
        let (mut c, greeting) = connect_with(&relay, &header, piece);
        assert!(greeting.starts_with("220 "), "{name}: {greeting}");
        // Only a trusted client may send to a domain no tenant owns.
        let (r, content) = send_one(&mut c, "x@not-a-tenant.test", &delivered);
        assert_eq!(r.starts_with("250"), trusted, "{name}: {r}");
        let content = match content {
            Some(content) => content,
            None => {
                assert!(r.starts_with("554 5.7.1"), "{name}: {r}");
                c.cmd("RSET");
                let (r, content) = send_one(&mut c, "b@example.com", &delivered);
                assert!(r.starts_with("250"), "{name}: {r}");
                content.expect("delivered")
            }
        };
        let want = format!("Received: from lb.test ({in_received})");
        assert!(content.starts_with(&want), "{name}: {content}");
        assert!(c.cmd("QUIT").starts_with("221"), "{name}");
    }
    relay.stop().unwrap();
}

#[test]
fn smtp_bytes_in_the_same_segment_as_the_header_reach_the_session() {
    let (hop, _) = scripted_next_hop(HopScript::AcceptData);
    let relay = relay(hop, |_| {});
    let mut first = v2_ipv4([192, 0, 2, 7]);
    first.extend_from_slice(b"NOOP\r\n");
    let (mut c, greeting) = connect_with(&relay, &first, first.len());
    assert!(greeting.starts_with("220 "), "{greeting}");
    let r = c.reply();
    assert!(r.starts_with("250"), "the NOOP after the header: {r}");
    relay.stop().unwrap();
}

#[test]
fn connections_are_counted_per_real_client_not_per_balancer() {
    let (hop, _) = scripted_next_hop(HopScript::AcceptData);
    let relay = relay(hop, |c| c.limits.max_connections_per_ip = 1);
    let (_a, g1) = connect_with(&relay, &v1("192.0.2.7"), 1000);
    let (_b, g2) = connect_with(&relay, &v1("192.0.2.8"), 1000);
    let (mut c, g3) = connect_with(&relay, &v2_ipv4([192, 0, 2, 7]), 1000);
    assert!(
        g1.starts_with("220") && g2.starts_with("220"),
        "{g1} / {g2}"
    );
    assert!(g3.starts_with("421 4.7.0"), "second from 192.0.2.7: {g3}");
    assert!(c.is_closed());
    relay.stop().unwrap();
}

#[test]
fn peers_outside_proxy_from_garbage_and_slow_headers_get_no_greeting() {
    let (hop, _) = scripted_next_hop(HopScript::AcceptData);
    let elsewhere = relay(hop, |c| {
        c.server.proxy_from = vec!["10.0.0.0/8".parse::<Cidr>().unwrap()];
    });
    let mut s = TcpStream::connect(elsewhere.local_addrs[0]).unwrap();
    s.write_all(&v1("192.0.2.7")).unwrap();
    assert!(closed_silently(s), "from a peer outside proxy_from");
    elsewhere.stop().unwrap();

    let relay = relay(hop, |c| c.server.proxy_timeout_s = 1);
    let rows: &[(&str, &[u8])] = &[
        ("smtp_first", b"EHLO client.test\r\n"),
        (
            "v1_bad_address",
            b"PROXY TCP4 192.0.2.300 127.0.0.1 1 25\r\n",
        ),
        ("v1_bare_lf", b"PROXY UNKNOWN\n"),
        ("v2_bad_version", b"\r\n\r\n\0\r\nQUIT\n\x11\x11\x00\x00"),
        ("tls_hello", b"\x16\x03\x01\x00\xa5\x01\x00"),
        // Slow: never completed; closed after proxy_timeout_s.
        ("v1_incomplete", b"PROXY TCP4 192.0.2.7 "),
        ("v2_incomplete", b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0"),
        ("nothing", b""),
    ];
    for (name, bytes) in rows {
        let mut s = TcpStream::connect(relay.local_addrs[0]).unwrap();
        s.write_all(bytes).unwrap();
        assert!(closed_silently(s), "{name}");
    }
    // A header over the v1 bound is refused as soon as the bound is passed.
    let mut s = TcpStream::connect(relay.local_addrs[0]).unwrap();
    s.write_all(&[b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat())
        .unwrap();
    assert!(closed_silently(s), "v1 too long");
    relay.stop().unwrap();
}

#[test]
fn without_proxy_protocol_a_header_is_just_a_bad_command() {
    let (hop, _) = scripted_next_hop(HopScript::AcceptData);
    let relay = start_relay(hop, |_| {});
    let (mut c, greeting) = Client::connect(relay.local_addrs[0]);
    assert!(greeting.starts_with("220 "), "{greeting}");
    let r = c.cmd("PROXY TCP4 192.0.2.7 127.0.0.1 40000 25");
    assert!(r.starts_with("500"), "{r}");
    relay.stop().unwrap();
}
