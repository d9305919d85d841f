//! Session tests with in-memory peers: the test plays the client, a real `smtp::Server` core
//! plays the next hop, and the harness moves bytes between them on a fake clock (STYLE.md §3
//! habit 13). No sockets, no threads, no real time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;

use crate::config::Config;
use crate::relay::session::{Action, ConnInfo, MessageLog, Session, Snapshot};
use crate::rules::{CompiledRules, GTUBE};
use crate::smtp::error::reply_for;
use crate::smtp::error::SessionError;
use crate::smtp::reply::{EnhancedCode, Reply};
use crate::smtp::server::{Event, Server, ServerParams};

/// How the in-memory next hop answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hop {
    Accept,
    RejectRcpt,
    TempfailData,
    RejectMail,
    /// Closes the connection after this many content bytes.
    DropAfter(usize),
}

#[derive(Debug, Default, Clone)]
struct Delivered {
    from: String,
    rcpts: Vec<String>,
    content: Vec<u8>,
}

struct NextHop {
    server: Server,
    input: BytesMut,
    current: Delivered,
    received: usize,
    dropped: bool,
}

struct Harness {
    session: Session,
    now: Instant,
    hop_mode: Hop,
    hop: Option<NextHop>,
    connects: usize,
    to_client: Vec<u8>,
    delivered: Vec<Delivered>,
    logs: Vec<MessageLog>,
    closed: bool,
}

fn hop_params() -> ServerParams {
    let c = Config::embedded_defaults();
    ServerParams {
        hostname: "next-hop.test".into(),
        max_message_size: c.limits.max_message_size,
        max_recipients: 1000,
        max_errors: 100,
        bare_lf: crate::config::BareLf::Accept,
        command_timeout: Duration::from_secs(300),
        data_timeout: Duration::from_secs(300),
        starttls: false,
        tls_required: false,
        binarymime: false,
    }
}

fn ok(code: u16, text: &str) -> Reply {
    Reply::new(code, Some(EnhancedCode::new(2, 0, 0)), text)
}

impl Harness {
    fn new(peer: &str, hop_mode: Hop) -> Harness {
        Harness::with_config(peer, hop_mode, Config::embedded_defaults())
    }

    fn with_config(peer: &str, hop_mode: Hop, config: Config) -> Harness {
        let now = Instant::now();
        let rules = CompiledRules::builtin(config.spam.threshold);
        let snap = Snapshot {
            config: Arc::new(config),
            rules,
        };
        let info = ConnInfo {
            peer: format!("{peer}:40000").parse().unwrap(),
            local: "127.0.0.1:2525".parse().unwrap(),
            conn_id: 7,
            wall_start: SystemTime::UNIX_EPOCH,
            tls_available: false,
        };
        let mut h = Harness {
            session: Session::new(snap, info, now),
            now,
            hop_mode,
            hop: None,
            connects: 0,
            to_client: Vec::new(),
            delivered: Vec::new(),
            logs: Vec::new(),
            closed: false,
        };
        h.run();
        h
    }

    fn send(&mut self, bytes: &[u8]) {
        self.session.client_buffer().extend_from_slice(bytes);
        self.session.handle_client_data(self.now);
        self.run();
    }

    /// Sends `bytes` one at a time.
    fn send_bytewise(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.send(std::slice::from_ref(b));
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.session.handle_timeout(self.now);
        self.run();
    }

    fn replies(&self) -> String {
        String::from_utf8_lossy(&self.to_client).into_owned()
    }

    fn last_reply(&self) -> String {
        let text = self.replies();
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        lines.last().map(|s| s.to_string()).unwrap_or_default()
    }

    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            while let Some(action) = self.session.poll_action() {
                progress = true;
                match action {
                    Action::ConnectDownstream { .. } => {
                        self.connects += 1;
                        self.hop = Some(NextHop {
                            server: Server::new(hop_params(), self.now),
                            input: BytesMut::new(),
                            current: Delivered::default(),
                            received: 0,
                            dropped: false,
                        });
                        self.session.downstream_attached(self.now, None);
                    }
                    Action::CloseDownstream => self.hop = None,
                    Action::Log(log) => self.logs.push(*log),
                    Action::Close => self.closed = true,
                    Action::StartTlsClient | Action::StartTlsDownstream => {
                        panic!("no TLS in these tests")
                    }
                }
            }
            let out = std::mem::take(self.session.client_output());
            progress |= !out.is_empty();
            self.to_client.extend_from_slice(&out);

            let down = self.session.downstream_output().to_vec();
            let n = down.len();
            self.session.downstream_output().advance(n);
            if let Some(hop) = self.hop.as_mut() {
                if n > 0 {
                    progress = true;
                    hop.input.extend_from_slice(&down);
                }
                hop.server.handle_input(self.now, &mut hop.input);
                let mode = self.hop_mode;
                while let Some(ev) = hop.server.poll_event() {
                    progress = true;
                    if hop.dropped {
                        // The connection is gone: nothing after the drop reaches the hop.
                        break;
                    }
                    match ev {
                        Event::Mail { from, .. } => {
                            hop.current = Delivered {
                                from: from.to_string(),
                                ..Default::default()
                            };
                            if mode == Hop::RejectMail {
                                hop.server.answer(Reply::new(
                                    550,
                                    Some(EnhancedCode::new(5, 1, 8)),
                                    "sender refused",
                                ));
                            } else {
                                hop.server.answer(ok(250, "sender ok"));
                            }
                        }
                        Event::Rcpt { to, .. } => {
                            if mode == Hop::RejectRcpt && to.local.starts_with("bad") {
                                hop.server.answer(Reply::new(
                                    550,
                                    Some(EnhancedCode::new(5, 1, 1)),
                                    "no such user",
                                ));
                            } else {
                                hop.current.rcpts.push(to.to_string());
                                hop.server.answer(ok(250, "rcpt ok"));
                            }
                        }
                        Event::DataStart { bdat: false } => {
                            hop.server.answer(Reply::new(354, None, "go ahead"));
                        }
                        Event::Data(piece) => {
                            hop.received += piece.len();
                            hop.current.content.extend_from_slice(&piece);
                            if let Hop::DropAfter(limit) = mode {
                                if hop.received >= limit {
                                    hop.dropped = true;
                                }
                            }
                        }
                        Event::DataEnd => {
                            if mode == Hop::TempfailData {
                                hop.server.answer(Reply::new(
                                    451,
                                    Some(EnhancedCode::new(4, 3, 0)),
                                    "try later",
                                ));
                            } else {
                                self.delivered.push(std::mem::take(&mut hop.current));
                                hop.server.answer(ok(250, "queued as HOP1"));
                            }
                        }
                        Event::Abort => hop.current = Delivered::default(),
                        _ => {}
                    }
                }
                if hop.dropped {
                    self.hop = None;
                    self.session.handle_downstream_eof(self.now);
                    continue;
                }
                let mut back = Vec::new();
                hop.server.poll_output(&mut back);
                if !back.is_empty() {
                    progress = true;
                    self.session.downstream_buffer().extend_from_slice(&back);
                    self.session.handle_downstream_data(self.now);
                }
            }
            if !progress {
                return;
            }
        }
        panic!("harness did not settle (livelock)");
    }
}

const MSG: &[u8] = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\
Date: Sat, 28 Nov 2026 23:10:20 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nHello\r\n";

fn transaction(from: &str, rcpts: &[&str], body: &[u8]) -> Vec<u8> {
    let mut t = format!("EHLO client.test\r\nMAIL FROM:<{from}>\r\n").into_bytes();
    for r in rcpts {
        t.extend_from_slice(format!("RCPT TO:<{r}>\r\n").as_bytes());
    }
    t.extend_from_slice(b"DATA\r\n");
    t.extend_from_slice(body);
    t.extend_from_slice(b".\r\n");
    t
}

/// The delivered content with our four prepended fields checked and cut off.
fn strip_stamp(content: &[u8]) -> (String, Vec<u8>) {
    let text = String::from_utf8_lossy(content).into_owned();
    let score_at = text.find("X-Conbool-Score: ").expect("score header");
    let end = score_at + text[score_at..].find("\r\n").unwrap() + 2;
    (text[..end].to_string(), content[end..].to_vec())
}

#[test]
fn trusted_client_message_is_delivered_once_with_headers_and_mirrored_reply() {
    let mut h = Harness::new("127.0.0.1", Hop::Accept);
    h.send(&transaction("a@example.com", &["x@elsewhere.org"], MSG));
    assert_eq!(h.delivered.len(), 1, "{}", h.replies());
    let d = &h.delivered[0];
    assert_eq!(d.from, "a@example.com");
    assert_eq!(d.rcpts, vec!["x@elsewhere.org"]);
    let (stamp, rest) = strip_stamp(&d.content);
    assert!(
        stamp.starts_with("Received: from client.test ([127.0.0.1])"),
        "{stamp}"
    );
    assert!(
        stamp.contains(
            "\r\nX-Conbool-example-com: true\r\nX-Conbool-Flag: NO\r\nX-Conbool-Score: 0.0 ()\r\n"
        ),
        "{stamp}"
    );
    assert_eq!(
        rest, MSG,
        "every byte of the message follows our fields unchanged"
    );
    assert!(
        h.last_reply().starts_with("250 2.0.0 queued as HOP1"),
        "{}",
        h.replies()
    );
    assert_eq!(h.logs.len(), 1);
}

#[test]
fn same_result_when_client_bytes_arrive_one_at_a_time() {
    let mut whole = Harness::new("127.0.0.1", Hop::Accept);
    whole.send(&transaction("a@example.com", &["x@example.com"], MSG));
    let mut bytewise = Harness::new("127.0.0.1", Hop::Accept);
    bytewise.send_bytewise(&transaction("a@example.com", &["x@example.com"], MSG));
    assert_eq!(whole.delivered.len(), 1);
    assert_eq!(bytewise.delivered.len(), 1);
    assert_eq!(whole.delivered[0].content, bytewise.delivered[0].content);
    assert_eq!(whole.replies(), bytewise.replies());
}

#[test]
fn untrusted_client_relaying_to_a_foreign_domain_is_denied() {
    let mut h = Harness::new("192.0.2.10", Hop::Accept);
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<v@foreign.org>\r\n");
    assert!(h.last_reply().starts_with("554 5.7.1"), "{}", h.replies());
    assert_eq!(h.connects, 0, "no next hop for a denied recipient");
}

#[test]
fn untrusted_client_to_tenant_domain_is_delivered_with_forged_headers_removed() {
    let body = b"X-Conbool-Flag: NO\r\nx-conbool-score: -100\r\n (folded)\r\nX-Conbool-example-com: true\r\nSubject: s\r\n\r\nbody\r\n";
    let mut h = Harness::new("192.0.2.10", Hop::Accept);
    h.send(&transaction("a@x.org", &["v@example.com"], body));
    assert_eq!(h.delivered.len(), 1, "{}", h.replies());
    let (_, rest) = strip_stamp(&h.delivered[0].content);
    assert_eq!(rest, b"Subject: s\r\n\r\nbody\r\n");
}

#[test]
fn gtube_is_flagged_yes() {
    let body = [b"Subject: t\r\n\r\n".as_slice(), GTUBE, b"\r\n"].concat();
    let mut h = Harness::new("192.0.2.10", Hop::Accept);
    h.send(&transaction("a@x.org", &["v@example.com"], &body));
    assert_eq!(h.delivered.len(), 1, "{}", h.replies());
    let (stamp, _) = strip_stamp(&h.delivered[0].content);
    assert!(stamp.contains("X-Conbool-Flag: YES\r\n"), "{stamp}");
    assert!(
        stamp.contains("(GTUBE") || stamp.contains(",GTUBE"),
        "{stamp}"
    );
}

#[test]
fn loop_header_from_trusted_client_is_a_routing_loop() {
    let body = b"X-Conbool-example-com: true\r\nSubject: s\r\n\r\nbody\r\n";
    let mut h = Harness::new("127.0.0.1", Hop::Accept);
    h.send(&transaction("a@example.com", &["v@elsewhere.org"], body));
    assert!(h.delivered.is_empty());
    assert!(h.last_reply().starts_with("554 5.4.6"), "{}", h.replies());
}

#[test]
fn too_many_received_headers_is_refused() {
    let mut config = Config::embedded_defaults();
    config.limits.max_hops = 2;
    let body = b"Received: a\r\nReceived: b\r\nReceived: c\r\n\r\nbody\r\n";
    let mut h = Harness::with_config("127.0.0.1", Hop::Accept, config);
    h.send(&transaction("a@example.com", &["v@example.com"], body));
    assert!(h.delivered.is_empty());
    assert!(h.last_reply().starts_with("554 5.4.6"), "{}", h.replies());
}

#[test]
fn next_hop_rcpt_rejection_is_mirrored() {
    let mut h = Harness::new("127.0.0.1", Hop::RejectRcpt);
    h.send(&transaction(
        "a@example.com",
        &["bad@example.com", "good@example.com"],
        MSG,
    ));
    let text = h.replies();
    assert!(text.contains("550 5.1.1 no such user"), "{text}");
    assert_eq!(h.delivered.len(), 1);
    assert_eq!(h.delivered[0].rcpts, vec!["good@example.com"]);
}

#[test]
fn next_hop_sender_rejection_is_mirrored_at_rcpt_for_trusted_clients() {
    // MAIL goes to the next hop at once but the client is not kept waiting for its reply.
    let mut h = Harness::new("127.0.0.1", Hop::RejectMail);
    h.send(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\n");
    assert!(h.last_reply().starts_with("250 2.1.0"), "{}", h.replies());
    assert_eq!(h.connects, 1, "the next hop is opened at MAIL");
    h.send(b"RCPT TO:<v@example.com>\r\n");
    assert!(h.last_reply().starts_with("550 5.1.8"), "{}", h.replies());
}

#[test]
fn next_hop_tempfail_at_end_of_data_reaches_the_client() {
    let mut h = Harness::new("127.0.0.1", Hop::TempfailData);
    h.send(&transaction("a@example.com", &["v@example.com"], MSG));
    assert!(h.delivered.is_empty());
    assert!(
        h.last_reply().starts_with("451 4.3.0 try later"),
        "{}",
        h.replies()
    );
}

#[test]
fn next_hop_dropping_mid_message_gives_a_4xx_and_nothing_is_delivered() {
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for i in 0..20_000 {
        big.extend_from_slice(format!("line {i} of a long message body\r\n").as_bytes());
    }
    let mut h = Harness::new("127.0.0.1", Hop::DropAfter(70_000));
    h.send(&transaction("a@example.com", &["v@example.com"], &big));
    assert!(h.delivered.is_empty());
    let last = h.last_reply();
    assert!(last.starts_with("451 4.4.2"), "{last}");
    // The session goes on: a new transaction connects again.
    h.hop_mode = Hop::Accept;
    h.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<v@example.com>\r\nDATA\r\nSubject: 2\r\n\r\nx\r\n.\r\n");
    assert_eq!(h.delivered.len(), 1, "{}", h.replies());
}

#[test]
fn many_transactions_reuse_one_next_hop_connection() {
    let mut h = Harness::new("127.0.0.1", Hop::Accept);
    h.send(b"EHLO c\r\n");
    for i in 0..5 {
        let t = format!("MAIL FROM:<a@example.com>\r\nRCPT TO:<v{i}@example.com>\r\nDATA\r\nSubject: {i}\r\n\r\nx\r\n.\r\n");
        h.send(t.as_bytes());
    }
    assert_eq!(h.delivered.len(), 5, "{}", h.replies());
    assert_eq!(h.connects, 1);
}

#[test]
fn bdat_from_the_client_is_relayed() {
    let mut h = Harness::new("127.0.0.1", Hop::Accept);
    let msg = MSG;
    let (a, b) = msg.split_at(20);
    let mut t = b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<v@example.com>\r\n".to_vec();
    t.extend_from_slice(format!("BDAT {}\r\n", a.len()).as_bytes());
    t.extend_from_slice(a);
    t.extend_from_slice(format!("BDAT {} LAST\r\n", b.len()).as_bytes());
    t.extend_from_slice(b);
    h.send(&t);
    assert_eq!(h.delivered.len(), 1, "{}", h.replies());
    assert_eq!(strip_stamp(&h.delivered[0].content).1, MSG);
    assert!(h.last_reply().starts_with("250 "), "{}", h.replies());
}

#[test]
fn command_timeout_closes_with_421() {
    let mut h = Harness::new("127.0.0.1", Hop::Accept);
    h.send(b"EHLO c\r\n");
    h.advance(Duration::from_secs(301));
    assert!(h.last_reply().starts_with("421 4.4.2"), "{}", h.replies());
    assert!(h.closed);
}

#[test]
fn other_route_recipient_gets_452() {
    let mut config = Config::embedded_defaults();
    let mut second = config.tenants[0].clone();
    second.name = "other.test".into();
    second.domains = vec!["other.test".into()];
    second.trusted_networks.clear();
    config.tenants.push(second);
    let mut h = Harness::with_config("192.0.2.10", Hop::Accept, config);
    h.send(
        b"EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<v@example.com>\r\nRCPT TO:<w@other.test>\r\n",
    );
    assert!(h.last_reply().starts_with("452 4.5.3"), "{}", h.replies());
}

#[test]
fn refusal_reply_comes_from_the_table() {
    let (reply, _) = reply_for(&SessionError::RelayDenied);
    assert_eq!(reply.code(), 554);
}

#[test]
fn a_refused_connection_hears_421_instead_of_the_greeting() {
    let config = Config::embedded_defaults();
    let rules = CompiledRules::builtin(config.spam.threshold);
    let snap = Snapshot {
        config: Arc::new(config),
        rules,
    };
    let info = ConnInfo {
        peer: "192.0.2.1:1".parse().unwrap(),
        local: "127.0.0.1:2525".parse().unwrap(),
        conn_id: 1,
        wall_start: SystemTime::UNIX_EPOCH,
        tls_available: false,
    };
    let mut s = Session::new_refused(snap, info, Instant::now(), SessionError::TooManyConnections);
    let out = String::from_utf8(std::mem::take(s.client_output())).unwrap();
    assert!(out.starts_with("421 4.7.0 "), "{out}");
    assert!(!out.contains("220"), "{out}");
    assert!(s.is_closing());
}
