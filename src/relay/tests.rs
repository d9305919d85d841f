//! Session tests with in-memory peers: the test plays the client, a real `smtp::Server` core
//! plays the next hop, and the harness moves bytes between them on a fake clock (STYLE.md §3
//! habit 13). No sockets, no threads, no real time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;

use crate::config::Config;
use crate::relay::session::{Action, ConnInfo, MessageLog, Session, Snapshot};
use crate::rules::{CompiledRules, RuleSource, GTUBE};
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
    /// Answers DATA itself with `451 4.3.2` (no 354).
    RefuseData,
    RejectMail,
    /// Closes the connection after this many content bytes.
    DropAfter(usize),
    /// Takes the whole message and never answers its end.
    SilentAtEnd,
    /// Closes the connection after answering each message; the session learns of the close
    /// only after it has written the next command into the dead connection.
    CloseAfterMessage,
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
    /// Closed after a message (`Hop::CloseAfterMessage`).
    closed_after_message: bool,
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
    /// The next hop reads what the session writes (false: its socket is full).
    hop_reading: bool,
    /// The next hop leaves CHUNKING out of its EHLO reply (messages go with DATA).
    hop_data_only: bool,
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
        let rules = CompiledRules::builtin(config.spam.threshold);
        Harness::with_rules(peer, hop_mode, config, rules)
    }

    fn with_rules(peer: &str, hop_mode: Hop, config: Config, rules: Arc<CompiledRules>) -> Harness {
        let now = Instant::now();
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
            hop_reading: true,
            hop_data_only: false,
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
                            closed_after_message: false,
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

            let down = if self.hop_reading {
                self.session.downstream_output().to_vec()
            } else {
                Vec::new()
            };
            let n = down.len();
            self.session.downstream_output().advance(n);
            if let Some(hop) = self.hop.as_mut() {
                if hop.closed_after_message && n > 0 {
                    // Written into a connection the next hop already closed: the close shows.
                    self.hop = None;
                    self.session.handle_downstream_eof(self.now);
                    continue;
                }
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
                        Event::DataStart { bdat: false } if mode == Hop::RefuseData => {
                            hop.server.answer(Reply::new(
                                451,
                                Some(EnhancedCode::new(4, 3, 2)),
                                "not now",
                            ));
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
                        Event::DataEnd if mode == Hop::SilentAtEnd => {}
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
                                hop.closed_after_message |= mode == Hop::CloseAfterMessage;
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
                if self.hop_data_only {
                    back = strip(&back, b"250-CHUNKING\r\n");
                }
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

/// `bytes` without any occurrence of `cut`.
fn strip(bytes: &[u8], cut: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = memchr::memmem::find(rest, cut) {
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at + cut.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// A second transaction on the same session, to show the session goes on after a failure.
const NEXT_MESSAGE: &[u8] =
    b"MAIL FROM:<a@example.com>\r\nRCPT TO:<v@example.com>\r\nDATA\r\nSubject: 2\r\n\r\nx\r\n.\r\n";

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

/// A BDAT transaction from a@example.com to v@example.com: `msg` in two chunks, cut at `at`.
fn bdat_transaction(msg: &[u8], at: usize) -> Vec<u8> {
    let (a, b) = msg.split_at(at);
    let mut t = b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<v@example.com>\r\n".to_vec();
    t.extend_from_slice(format!("BDAT {}\r\n", a.len()).as_bytes());
    t.extend_from_slice(a);
    t.extend_from_slice(format!("BDAT {} LAST\r\n", b.len()).as_bytes());
    t.extend_from_slice(b);
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

/// Rules with a classifier trained on toy mail: spam talks about pills, ham about meetings.
fn rules_with_toy_model() -> Arc<CompiledRules> {
    let limits = crate::cli::scan::default_limits();
    let training = crate::cli::train::training_rules().expect("built-in rules compile");
    let features_of = |m: &[u8]| crate::cli::train::features_with_rules(&training, limits, m);
    let msg = |i: usize, words: &str| {
        format!("Subject: note {i}\r\nFrom: a{i}@x.org\r\n\r\n{words} {i}\r\n").into_bytes()
    };
    let mut features = Vec::new();
    for i in 0..40 {
        features.push((features_of(&msg(i, "cheap pills offer buy now")), true));
        features.push((
            features_of(&msg(i, "meeting agenda for the project review")),
            false,
        ));
    }
    let examples: Vec<(&[u32], bool)> = features.iter().map(|(f, s)| (f.as_slice(), *s)).collect();
    let model = crate::classify::train(&examples, &[], &crate::classify::TrainParams::default())
        .expect("trains");
    let rules = CompiledRules::compile(
        &[crate::rules::RuleSource {
            origin: "built-in".into(),
            text: crate::rules::DEFAULT_RULES.into(),
        }],
        5.0,
    )
    .expect("compiles");
    Arc::new(rules.with_model(Arc::new(model)).expect("model attaches"))
}

#[test]
fn classifier_bands_are_rule_hits_in_the_score_header() {
    let rules = rules_with_toy_model();
    let rows: &[(&str, &[u8], &str, &str)] = &[
        (
            "spam",
            b"Subject: note 99\r\nFrom: a99@x.org\r\n\r\ncheap pills offer buy now\r\n",
            "CLASSIFIER_99",
            "YES",
        ),
        (
            "ham",
            b"Subject: note 99\r\nFrom: a99@x.org\r\n\r\nmeeting agenda for the project review\r\n",
            "CLASSIFIER_01",
            "NO",
        ),
    ];
    for (row, body, band, flag) in rows {
        let mut h = Harness::with_rules(
            "192.0.2.10",
            Hop::Accept,
            Config::embedded_defaults(),
            Arc::clone(&rules),
        );
        h.send(&transaction("a@x.org", &["v@example.com"], body));
        assert_eq!(h.delivered.len(), 1, "{row}: {}", h.replies());
        let (stamp, _) = strip_stamp(&h.delivered[0].content);
        assert!(stamp.contains(band), "{row}: {stamp}");
        assert!(
            stamp.contains(&format!("X-Conbool-Flag: {flag}\r\n")),
            "{row}: {stamp}"
        );
    }
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
fn next_hop_refusing_data_refuses_the_message_at_its_end() {
    // The client hears 354 before the next hop answers DATA (one round trip fewer); the next
    // hop's refusal then becomes the end-of-data reply, and the session goes on.
    let mut h = Harness::new("127.0.0.1", Hop::RefuseData);
    h.hop_data_only = true;
    h.send(&transaction("a@example.com", &["v@example.com"], MSG));
    assert!(h.delivered.is_empty(), "{:?} {}", h.delivered, h.replies());
    let replies = h.replies();
    assert!(replies.contains("354 "), "{replies}");
    assert!(h.last_reply().starts_with("451 4.3.2"), "{replies}");
    h.hop_mode = Hop::Accept;
    h.send(NEXT_MESSAGE);
    assert_eq!(h.delivered.len(), 1, "{}", h.replies());
    assert!(h.last_reply().starts_with("250 "), "{}", h.replies());
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
    h.send(NEXT_MESSAGE);
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
    h.send(&bdat_transaction(MSG, 20));
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

// ----- hardening (issue 9) -----

/// Counts complete reply lines that start with `prefix`.
fn count_replies(text: &str, prefix: &str) -> usize {
    text.split("\r\n").filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn ten_thousand_pipelined_noops_in_one_read_are_all_answered() {
    let mut h = Harness::new("127.0.0.1", Hop::Accept);
    h.send(b"EHLO c\r\n");
    h.send(&b"NOOP\r\n".repeat(10_000));
    assert_eq!(count_replies(&h.replies(), "250 2.0.0"), 10_000);
}

#[test]
fn a_client_pipelining_without_reading_cannot_grow_the_reply_queue() {
    let mut h = Harness::new("127.0.0.1", Hop::Accept);
    h.send(b"EHLO c\r\n");
    let s = &mut h.session;
    // Feed NOOPs as long as the session takes them and never write replies to the client.
    let chunk = b"NOOP\r\n".repeat(1000);
    let mut fed = 0;
    while s.client_read_room() >= chunk.len() && fed < 10_000_000 {
        s.client_buffer().extend_from_slice(&chunk);
        s.handle_client_data(h.now);
        while s.poll_action().is_some() {}
        fed += chunk.len();
    }
    let queued = s.client_output().len();
    assert!(
        queued
            <= crate::relay::session::CLIENT_OUTPUT_MAX
                + crate::smtp::server::MAX_REPLY_BACKLOG
                + 512,
        "reply queue grew to {queued} bytes after {fed} bytes of NOOPs"
    );
    assert!(fed < 1_000_000, "reading did not stop: {fed} bytes taken");
    // Once the client reads its replies, every NOOP is answered without more input.
    let mut answered = 0;
    for _ in 0..100_000 {
        let out = std::mem::take(s.client_output());
        answered += count_replies(&String::from_utf8_lossy(&out), "250 ");
        let _ = s.poll_action();
        if s.client_output().is_empty() {
            break;
        }
    }
    assert_eq!(answered, fed / 6);
}

#[test]
fn a_next_hop_silent_at_end_of_data_times_out_after_next_hop_timeout_s() {
    let mut config = Config::embedded_defaults();
    config.limits.next_hop_timeout_s = 5;
    let mut h = Harness::with_config("127.0.0.1", Hop::SilentAtEnd, config);
    h.send(&transaction("a@example.com", &["v@example.com"], MSG));
    assert!(h.last_reply().starts_with("354"), "{}", h.replies());
    h.advance(Duration::from_secs(4));
    assert!(h.last_reply().starts_with("354"), "{}", h.replies());
    h.advance(Duration::from_secs(2));
    assert!(h.last_reply().starts_with("451 4.4.2"), "{}", h.replies());
    assert!(h.delivered.is_empty());
    assert!(
        h.hop.is_none(),
        "the silent connection is dropped, never pooled"
    );
    assert!(!h.closed, "the client session goes on");
}

#[test]
fn the_next_hop_timeout_defaults_to_120_s() {
    let mut h = Harness::new("127.0.0.1", Hop::SilentAtEnd);
    h.send(&transaction("a@example.com", &["v@example.com"], MSG));
    h.advance(Duration::from_secs(119));
    assert!(h.last_reply().starts_with("354"), "{}", h.replies());
    h.advance(Duration::from_secs(2));
    assert!(h.last_reply().starts_with("451 4.4.2"), "{}", h.replies());
}

/// xorshift64*, for reproducible random sessions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pieces a random client strings together: valid commands, refusals, message content,
/// BDAT chunks honest and lying, garbage and oversized lines.
const PIECES: &[&[u8]] = &[
    b"EHLO c.test\r\n",
    b"HELO c.test\r\n",
    b"MAIL FROM:<a@example.com>\r\n",
    b"MAIL FROM:<x@foreign.org> SIZE=999999999\r\n",
    b"MAIL FROM:<> BODY=8BITMIME\r\n",
    b"MAIL FROM:<j\xc3\xb6rg@example.com> SMTPUTF8\r\n",
    b"RCPT TO:<v@example.com>\r\n",
    b"RCPT TO:<bad@example.com>\r\n",
    b"RCPT TO:<f@foreign.org>\r\n",
    b"RCPT TO:<@example.com:f@foreign.org>\r\n",
    b"RCPT TO:<j\xc3\xb6rg@example.com>\r\n",
    b"RCPT TO:<v@[127.0.0.1]>\r\n",
    b"DATA\r\n",
    b"Subject: x\r\nX-Conbool-Flag: NO\r\n\r\nbody\r\n.\r\n",
    b"X-Conbool-example-com: true\r\n\r\nloop\r\n.\r\n",
    b"Received: a\r\nReceived: b\r\nReceived: c\r\n\r\n.\r\n",
    b"..stuffed\r\n",
    b".\r\n",
    b"\r\n",
    b"bare\nLF\r\n",
    b"BDAT 5\r\nabcde",
    b"BDAT 12 LAST\r\nSubject: b\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT 100000 LAST\r\nshort",
    b"BDAT x\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY v\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN AAAA\r\n",
    b"garbage\r\n",
    b"\x00\xff\xfe\r\n",
    b"QUIT\r\n",
];

/// Checks one reply line: three digits, a space or hyphen, and (outside 2xx/3xx, whose EHLO
/// and 354 lines may lack one) an enhanced code of the same class.
fn check_reply_line(line: &str) -> Result<(), String> {
    let b = line.as_bytes();
    if b.len() < 4 || !b[..3].iter().all(u8::is_ascii_digit) || !matches!(b[3], b' ' | b'-') {
        return Err(format!("malformed reply line {line:?}"));
    }
    if matches!(b[0], b'4' | b'5') {
        let enhanced = line[4..].split(' ').next().unwrap_or("");
        let parts: Vec<&str> = enhanced.split('.').collect();
        let ok = parts.len() == 3
            && parts[0].as_bytes() == [b[0]]
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
        if !ok {
            return Err(format!("no enhanced code in {line:?}"));
        }
    }
    Ok(())
}

/// A plausible session (transactions by DATA or BDAT) with random pieces inserted and
/// steps dropped.
fn random_script(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut script: Vec<Vec<u8>> = vec![b"EHLO c.test\r\n".to_vec()];
    for _ in 0..1 + rng.below(3) {
        script.push(PIECES[2 + rng.below(4)].to_vec());
        for _ in 0..1 + rng.below(3) {
            script.push(PIECES[6 + rng.below(6)].to_vec());
        }
        let content = PIECES[13 + rng.below(3)];
        if rng.below(3) == 0 {
            let body = &content[..content.len() - 3];
            let cut = rng.below(body.len() + 1);
            script.push(format!("BDAT {cut}\r\n").into_bytes());
            script.push(body[..cut].to_vec());
            script.push(format!("BDAT {} LAST\r\n", body.len() - cut).into_bytes());
            script.push(body[cut..].to_vec());
        } else {
            script.push(b"DATA\r\n".to_vec());
            script.push(content.to_vec());
        }
    }
    script.push(b"QUIT\r\n".to_vec());
    let mut out = Vec::new();
    for step in script {
        while rng.below(6) == 0 {
            out.push(if rng.below(20) == 0 {
                vec![b'L'; 600 + rng.below(2000)]
            } else {
                PIECES[rng.below(PIECES.len())].to_vec()
            });
        }
        if rng.below(12) != 0 {
            out.push(step);
        }
    }
    out
}

#[test]
fn random_sessions_get_well_formed_replies_and_never_hang() {
    let hops = [
        Hop::Accept,
        Hop::RejectRcpt,
        Hop::TempfailData,
        Hop::RejectMail,
        Hop::DropAfter(5),
        Hop::SilentAtEnd,
    ];
    let (mut delivered, mut replies) = (0, 0);
    for seed in 1..=2000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut config = Config::embedded_defaults();
        config.limits.max_recipients = 1 + rng.below(3);
        config.limits.max_errors = 3 + rng.below(8) as u32;
        config.limits.max_header_bytes = 1024;
        config.limits.max_hops = 2;
        let peer = if rng.below(2) == 0 {
            "127.0.0.1"
        } else {
            "192.0.2.7"
        };
        let mut h = Harness::with_config(peer, hops[rng.below(hops.len())], config);
        let mut sent = Vec::new();
        for piece in random_script(&mut rng) {
            if h.closed {
                break;
            }
            sent.extend_from_slice(&piece);
            if rng.below(2) == 0 {
                h.send(&piece);
            } else {
                let cut = rng.below(piece.len() + 1);
                h.send(&piece[..cut]);
                h.send(&piece[cut..]);
            }
            if rng.below(25) == 0 {
                h.advance(Duration::from_secs(1 + rng.below(400) as u64));
            }
        }
        // Whatever is left in flight resolves within the timeouts.
        h.advance(Duration::from_secs(400));
        let text = h.replies();
        let ctx = || {
            format!(
                "seed {seed}: sent {:?}\nreplies:\n{text}",
                sent.escape_ascii().to_string()
            )
        };
        assert!(text.ends_with("\r\n") || text.is_empty(), "{}", ctx());
        for line in text.split_terminator("\r\n") {
            if let Err(e) = check_reply_line(line) {
                panic!("{e}\n{}", ctx());
            }
        }
        for d in &h.delivered {
            let (stamp, _) = strip_stamp(&d.content);
            assert!(stamp.starts_with("Received: "), "{}", ctx());
        }
        delivered += h.delivered.len();
        replies += text.split_terminator("\r\n").count();
    }
    eprintln!("random sessions: {replies} reply lines, {delivered} messages delivered");
    assert!(delivered > 0);
}

#[test]
fn a_next_hop_that_takes_no_bytes_fails_the_message_after_next_hop_timeout_s() {
    // (Under BDAT the chunk reply times out too; the e2e test covers DATA, where no reply is
    // awaited while content streams.)
    let mut config = Config::embedded_defaults();
    config.limits.next_hop_timeout_s = 5;
    let mut h = Harness::with_config("127.0.0.1", Hop::Accept, config);
    h.send(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<v@example.com>\r\nDATA\r\n");
    assert!(h.last_reply().starts_with("354"), "{}", h.replies());
    h.hop_reading = false;
    let chunk =
        b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n".repeat(900);
    let mut fed = 0;
    while h.session.client_read_room() > 0 && fed < 64 << 20 {
        h.send(&chunk);
        fed += chunk.len();
    }
    assert!(
        fed < 4 << 20,
        "the client is not held back: {fed} bytes taken"
    );
    h.advance(Duration::from_secs(4));
    assert!(h.last_reply().starts_with("354"), "{}", h.replies());
    h.advance(Duration::from_secs(2));
    // The message is refused; the rest of it is read and dropped, and its end is answered.
    assert!(h.session.client_read_room() > 0);
    h.send(b"more\r\n.\r\n");
    assert!(h.last_reply().starts_with("451 4.4.2"), "{}", h.replies());
    assert!(h.delivered.is_empty());
    assert!(h.hop.is_none(), "the stuck connection is dropped");
    h.hop_reading = true;
    h.send(NEXT_MESSAGE);
    assert_eq!(h.delivered.len(), 1, "{}", h.replies());
}

#[test]
fn a_next_hop_closing_after_each_message_costs_the_client_nothing() {
    // Trusted (MAIL goes out at once) and untrusted (MAIL goes out with the first RCPT).
    for peer in ["127.0.0.1", "192.0.2.10"] {
        let mut h = Harness::new(peer, Hop::CloseAfterMessage);
        h.send(b"EHLO c\r\n");
        for i in 0..4 {
            let t = format!("MAIL FROM:<a@x.org>\r\nRCPT TO:<v{i}@example.com>\r\nDATA\r\nSubject: {i}\r\n\r\nx\r\n.\r\n");
            h.send(t.as_bytes());
            assert!(
                h.last_reply().starts_with("250 "),
                "{peer} message {i}: {}",
                h.replies()
            );
        }
        assert_eq!(h.delivered.len(), 4, "{peer}");
        assert_eq!(h.connects, 4, "{peer}: one fresh connection per message");
        assert!(!h.replies().contains("451"), "{peer}: {}", h.replies());
    }
}

#[test]
fn a_next_hop_failing_after_content_was_sent_is_never_retried() {
    // The second message moves to a fresh connection (the first one was closed), which then
    // breaks mid-content: that is the client's 451, never a second try.
    let mut h = Harness::new("127.0.0.1", Hop::CloseAfterMessage);
    h.send(b"EHLO c\r\n");
    h.send(&transaction("a@example.com", &["v@example.com"], MSG)[b"EHLO client.test\r\n".len()..]);
    assert_eq!(h.delivered.len(), 1, "{}", h.replies());
    h.hop_mode = Hop::DropAfter(0);
    h.send(NEXT_MESSAGE);
    assert!(h.replies().contains("451 4.4.2"), "{}", h.replies());
    assert_eq!(h.delivered.len(), 1);
}

#[test]
fn relay_probing_counts_toward_max_errors() {
    let mut config = Config::embedded_defaults();
    config.limits.max_errors = 5;
    let mut h = Harness::with_config("192.0.2.10", Hop::Accept, config);
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\n");
    for i in 0..4 {
        h.send(format!("RCPT TO:<v{i}@foreign.org>\r\n").as_bytes());
        assert!(h.last_reply().starts_with("554 5.7.1"), "{}", h.replies());
    }
    // A recipient of the tenant in between is fine and does not reset the count.
    h.send(b"RCPT TO:<v@example.com>\r\n");
    assert!(h.last_reply().starts_with("250"), "{}", h.replies());
    h.send(b"RCPT TO:<v5@foreign.org>\r\n");
    let text = h.replies();
    assert!(
        text.ends_with(
            "554 5.7.1 Relay access denied\r\n421 4.7.0 Too many errors, closing connection\r\n"
        ),
        "{text}"
    );
    assert!(h.closed);
    assert!(h.delivered.is_empty());
}

#[test]
fn a_client_idle_inside_an_envelope_does_not_hold_up_a_graceful_stop() {
    let mut h = Harness::new("127.0.0.1", Hop::SilentAtEnd);
    h.send(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<v@example.com>\r\n");
    assert!(h.last_reply().starts_with("250"), "{}", h.replies());
    assert!(!h.session.in_transaction(), "idle between RCPT and DATA");
    h.send(b"DATA\r\nSubject: s\r\n\r\n");
    assert!(h.session.in_transaction(), "content streaming");
    h.send(b"x\r\n.\r\n");
    assert!(
        h.session.in_transaction(),
        "end of data waits on the next hop"
    );
    // The refusal a stop sends to idle sessions reaches such a client as 421 4.3.2.
    let mut idle = Harness::new("127.0.0.1", Hop::Accept);
    idle.send(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\n");
    idle.session.refuse(SessionError::ShuttingDown);
    idle.run();
    assert!(
        idle.last_reply().starts_with("421 4.3.2"),
        "{}",
        idle.replies()
    );
    assert!(idle.closed);
    assert!(idle.delivered.is_empty());
}

/// A rule set of one body phrase rule: `score = 6` or `action = "reject"`.
fn one_phrase_rule(action: &str) -> Arc<CompiledRules> {
    let text = format!(
        "[[rule]]\nname = \"LATE_PHRASE\"\ndescription = \"d\"\n{action}\n\
         target = \"body\"\nphrases = [\"wire the money\"]\n"
    );
    let source = RuleSource {
        origin: "test".into(),
        text,
    };
    Arc::new(CompiledRules::compile(&[source], 5.0).expect("compiles"))
}

/// A message whose phrase comes after a 1 KiB scan window.
fn late_phrase_message() -> Vec<u8> {
    let mut body = b"Subject: late\r\n\r\n".to_vec();
    for i in 0..100 {
        body.extend_from_slice(format!("line {i} of an ordinary message\r\n").as_bytes());
    }
    body.extend_from_slice(b"please wire the money today\r\n");
    body
}

/// Sends [`late_phrase_message`] in two reads, cut just before the phrase: the scan window is
/// complete before the phrase arrives (one read would hold both).
fn send_late_phrase_in_two_reads(h: &mut Harness) {
    let t = transaction("a@example.com", &["v@example.com"], &late_phrase_message());
    let cut = memchr::memmem::find(&t, b"please").expect("phrase");
    h.send(&t[..cut]);
    h.send(&t[cut..]);
}

fn small_window() -> Config {
    let mut config = Config::embedded_defaults();
    config.limits.scan_window = 1024;
    config
}

#[test]
fn a_reject_rule_matching_after_the_scan_window_still_refuses_the_message() {
    let rules = one_phrase_rule("action = \"reject\"\ntext = \"No thanks\"");
    let mut h = Harness::with_rules("127.0.0.1", Hop::Accept, small_window(), rules);
    send_late_phrase_in_two_reads(&mut h);
    assert!(h.delivered.is_empty(), "{}", h.replies());
    assert!(
        h.last_reply().starts_with("550 5.7.1 No thanks"),
        "{}",
        h.replies()
    );
}

#[test]
fn without_reject_rules_content_past_the_window_is_not_scanned() {
    // The verdict in the headers is final at the window; the log agrees with the headers.
    let rules = one_phrase_rule("score = 6.0");
    let mut h = Harness::with_rules("127.0.0.1", Hop::Accept, small_window(), rules);
    send_late_phrase_in_two_reads(&mut h);
    assert_eq!(h.delivered.len(), 1, "{}", h.replies());
    let (stamp, rest) = strip_stamp(&h.delivered[0].content);
    assert!(stamp.contains("X-Conbool-Flag: NO"), "{stamp}");
    assert_eq!(rest, late_phrase_message());
    assert_eq!(h.logs.len(), 1);
    assert_eq!(h.logs[0].rules, "");
    // Inside the window the same rule hits.
    let rules = one_phrase_rule("score = 6.0");
    let mut h = Harness::with_rules("127.0.0.1", Hop::Accept, Config::embedded_defaults(), rules);
    h.send(&transaction(
        "a@example.com",
        &["v@example.com"],
        &late_phrase_message(),
    ));
    let (stamp, _) = strip_stamp(&h.delivered[0].content);
    assert!(stamp.contains("X-Conbool-Flag: YES"), "{stamp}");
    assert_eq!(h.logs[0].rules, "LATE_PHRASE");
}

#[test]
fn bytes_read_from_a_connection_already_let_go_never_reach_the_next_one() {
    // A message refused at the window (a routing loop) while the next hop's 354 is still on
    // its way: the session lets that connection go, and the 354 read from it afterwards (the
    // reactor closes it only after the turn) must not become the next connection's greeting.
    let mut h = Harness::new("127.0.0.1", Hop::Accept);
    h.hop_data_only = true;
    h.send(b"EHLO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<v@example.com>\r\n");
    h.hop_reading = false;
    h.send(b"DATA\r\nX-Conbool-example-com: true\r\nSubject: s\r\n\r\nbody\r\n.\r\n");
    assert!(h.last_reply().starts_with("554 5.4.6"), "{}", h.replies());
    h.session
        .downstream_buffer()
        .extend_from_slice(b"354 go ahead\r\n");
    h.session.handle_downstream_data(h.now);
    h.hop_reading = true;
    h.run();
    h.send(NEXT_MESSAGE);
    assert_eq!(h.delivered.len(), 1, "{}", h.replies());
    assert!(h.last_reply().starts_with("250 "), "{}", h.replies());
}
// ----- disclaimers (issue 13) -----

fn disclaimer_config(scope: crate::config::DisclaimerScope) -> Config {
    let mut c = Config::embedded_defaults();
    c.tenants[0].disclaimer = Some(crate::config::Disclaimer {
        // A line starting with a dot: it must be dot-stuffed on the way like any other.
        text: "Example Ltd\n.sig".into(),
        html: "<p>Example Ltd</p>".into(),
        applies_to: scope,
        skip_rules: vec!["GTUBE".into()],
    });
    c
}

const FOOTED: &[u8] = b"Subject: s\r\n\r\nbody\r\n\r\nExample Ltd\r\n.sig\r\n";

#[test]
fn disclaimer_rows_through_the_relay() {
    use crate::config::DisclaimerScope::{All, Outbound};
    use crate::message::{DisclaimerOutcome, SkipReason};
    let body: &[u8] = b"Subject: s\r\n\r\nbody\r\n";
    let gtube = [b"Subject: s\r\n\r\n".as_slice(), GTUBE, b"\r\n"].concat();
    let footed_already = b"X-Conbool-Disclaimer: example.com\r\nSubject: s\r\n\r\nbody\r\n";
    let footed_mark =
        |rest: &[u8]| [b"X-Conbool-Disclaimer: example.com\r\n".as_slice(), rest].concat();
    // (name, scope, client, from, rcpt, body, expected content after our stamp, outcome)
    type Row<'a> = (
        &'a str,
        crate::config::DisclaimerScope,
        &'a str,
        &'a str,
        &'a str,
        &'a [u8],
        Vec<u8>,
        DisclaimerOutcome,
    );
    let rows: Vec<Row<'_>> = vec![
        (
            "trusted_outbound",
            Outbound,
            "127.0.0.1",
            "a@example.com",
            "x@elsewhere.org",
            body,
            footed_mark(FOOTED),
            DisclaimerOutcome::Added,
        ),
        (
            "untrusted_inbound",
            Outbound,
            "192.0.2.10",
            "a@x.org",
            "v@example.com",
            body,
            body.to_vec(),
            DisclaimerOutcome::Skipped(SkipReason::NotCovered),
        ),
        (
            "inbound_with_all",
            All,
            "192.0.2.10",
            "a@x.org",
            "v@example.com",
            body,
            footed_mark(FOOTED),
            DisclaimerOutcome::Added,
        ),
        (
            "null_sender",
            Outbound,
            "127.0.0.1",
            "",
            "x@elsewhere.org",
            body,
            body.to_vec(),
            DisclaimerOutcome::Skipped(SkipReason::NullSender),
        ),
        (
            "already_footed",
            Outbound,
            "127.0.0.1",
            "a@example.com",
            "x@elsewhere.org",
            footed_already,
            footed_already.to_vec(),
            DisclaimerOutcome::Skipped(SkipReason::AlreadyFooted),
        ),
        (
            "skip_rule",
            Outbound,
            "127.0.0.1",
            "a@example.com",
            "x@elsewhere.org",
            &gtube,
            gtube.clone(),
            DisclaimerOutcome::Skipped(SkipReason::SkipRule),
        ),
    ];
    for (name, scope, client, from, rcpt, body, want, outcome) in rows {
        let mut whole = Harness::with_config(client, Hop::Accept, disclaimer_config(scope));
        whole.send(&transaction(from, &[rcpt], body));
        let mut bytewise = Harness::with_config(client, Hop::Accept, disclaimer_config(scope));
        bytewise.send_bytewise(&transaction(from, &[rcpt], body));
        for h in [&whole, &bytewise] {
            assert_eq!(h.delivered.len(), 1, "{name}: {}", h.replies());
            let (_, rest) = strip_stamp(&h.delivered[0].content);
            assert_eq!(
                String::from_utf8_lossy(&rest),
                String::from_utf8_lossy(&want),
                "{name}"
            );
            assert_eq!(h.logs[0].disclaimer, Some(outcome), "{name}");
        }
        let line = whole.logs[0].to_string();
        assert!(line.contains(" disclaimer="), "{name}: {line}");
    }
}

#[test]
fn disclaimer_over_bdat_is_the_same_as_over_data() {
    let mut h = Harness::with_config(
        "127.0.0.1",
        Hop::Accept,
        disclaimer_config(crate::config::DisclaimerScope::Outbound),
    );
    h.send(&bdat_transaction(b"Subject: s\r\n\r\nbody\r\n", 16));
    assert_eq!(h.delivered.len(), 1, "{}", h.replies());
    let (_, rest) = strip_stamp(&h.delivered[0].content);
    assert_eq!(
        rest,
        [b"X-Conbool-Disclaimer: example.com\r\n".as_slice(), FOOTED].concat()
    );
}

#[test]
fn messages_the_server_core_refuses_itself_are_logged_with_their_reason() {
    // (row, config change, content, reply prefix, reason)
    type Row = (
        &'static str,
        fn(&mut Config),
        &'static [u8],
        &'static str,
        &'static str,
    );
    let rows: [Row; 2] = [
        (
            "too_big",
            |c| c.limits.max_message_size = 64,
            b"Subject: s\r\n\r\nthis body is longer than sixty-four bytes, which is the limit\r\n",
            "552 5.3.4",
            "message_too_big",
        ),
        (
            "bare_lf",
            |c| c.limits.bare_lf = crate::config::BareLf::Reject,
            b"Subject: s\r\n\r\nbare\nline feed\r\n",
            "550 5.6.11",
            "bare_lf",
        ),
    ];
    for (row, change, content, reply, reason) in rows {
        let mut config = Config::embedded_defaults();
        change(&mut config);
        let mut h = Harness::with_config("127.0.0.1", Hop::Accept, config);
        h.send(&transaction("a@example.com", &["v@example.com"], content));
        assert!(h.delivered.is_empty(), "{row}");
        assert!(h.last_reply().starts_with(reply), "{row}: {}", h.replies());
        assert_eq!(h.logs.len(), 1, "{row}");
        assert_eq!(h.logs[0].reason, reason, "{row}");
        assert!(
            h.logs[0].reply.starts_with(reply),
            "{row}: {}",
            h.logs[0].reply
        );
        // The session goes on: the next message is delivered and logged once.
        h.send(NEXT_MESSAGE);
        assert_eq!(h.delivered.len(), 1, "{row}: {}", h.replies());
        assert_eq!(h.logs.len(), 2, "{row}");
    }
}
