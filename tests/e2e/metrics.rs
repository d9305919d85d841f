//! Metrics and logs over real sockets: mail through the relay (ham, spam, a refused recipient,
//! a next-hop `4xx`, a connection over the per-IP limit), then a scrape with a plain TCP
//! client whose exposition is parsed and checked value by value, and the log file read back.
//! Also the `/metrics` HTTP handler's edge cases.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use conbool::config::Config;
use conbool::logging::{parse_text_line, Level, LogFormat, Logger};
use conbool::metrics::http::{MetricsServer, MAX_REQUEST_BYTES};
use conbool::metrics::{parse_exposition, Registry};
use conbool::reactor::{self, RelayTls};
use conbool::relay::session::Snapshot;
use conbool::rules::{CompiledRules, GTUBE};

use crate::peer::{Client, Faults, Hop, FAILSAFE};

/// One HTTP exchange: sends `request`, reads until the server closes.
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(FAILSAFE)).unwrap();
    // The server may answer (and close) before taking all of an oversized request.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let response = http(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{head}"
    );
    parse_exposition(body)
        .unwrap_or_else(|e| panic!("{e}\n{body}"))
        .into_iter()
        .collect()
}

fn message(subject: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!("From: a@example.com\r\nTo: b@example.com\r\nSubject: {subject}\r\n\r\n")
        .into_bytes();
    m.extend_from_slice(body);
    m.extend_from_slice(b"\r\n");
    m
}

#[test]
fn scrape_counts_exactly_what_happened_and_logs_one_line_per_message() {
    let ok_hop = Hop::start(Faults::NONE);
    let tempfail_hop = Hop::start(Faults {
        tempfail_pct: 100,
        ..Faults::NONE
    });
    let mut config = Config::embedded_defaults();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.metrics = Some("127.0.0.1:0".parse().unwrap());
    config.server.workers = 2;
    config.limits.max_connections_per_ip = 2;
    // Untrusted clients: recipients choose the route, and an unknown domain is refused.
    config.tenants[0].trusted_networks.clear();
    config.tenants[0].next_hop = ok_hop.addr.to_string();
    let mut later = config.tenants[0].clone();
    later.name = "later.example".to_string();
    later.domains = vec!["later.example".to_string()];
    later.next_hop = tempfail_hop.addr.to_string();
    config.tenants.push(later);
    let rules = CompiledRules::builtin(config.spam.threshold);
    let log_path =
        std::env::temp_dir().join(format!("conbool-e2e-metrics-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log_path);
    let logger = Logger::new(LogFormat::Text, Level::Info, Some(log_path.clone())).unwrap();
    let tls = Arc::new(RelayTls::load(&config).unwrap());
    let relay = reactor::spawn_logged(
        Snapshot {
            config: Arc::new(config),
            rules,
        },
        tls,
        logger,
    )
    .expect("relay starts");
    let metrics = relay.metrics_addr().expect("metrics endpoint");
    let smtp = relay.local_addrs[0];

    let (mut one, greeting) = Client::connect(smtp);
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(one.cmd("EHLO one.test").starts_with("250"));
    assert!(one.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    assert!(one.cmd("RCPT TO:<b@example.com>").starts_with("250"));
    let r = one.data(&message("ham", b"Hello, lunch at noon?"));
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert!(one.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    assert!(one.cmd("RCPT TO:<b@example.com>").starts_with("250"));
    let r = one.cmd("RCPT TO:<x@nowhere.example>");
    assert!(r.starts_with("554 5.7.1"), "{r}");
    let r = one.data(&message("spam", GTUBE));
    assert!(r.starts_with("250 2.0.0"), "{r}");

    let (mut two, _) = Client::connect(smtp);
    assert!(two.cmd("EHLO two.test").starts_with("250"));
    // Two connections from 127.0.0.1 are open: a third is refused before the greeting.
    let (mut three, refusal) = Client::connect(smtp);
    assert!(refusal.starts_with("421 4.7.0"), "{refusal}");
    assert!(three.is_closed());
    assert!(two.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    assert!(two.cmd("RCPT TO:<c@later.example>").starts_with("250"));
    let r = two.data(&message("later", b"Try me later"));
    assert!(r.starts_with("451 4.3.0"), "{r}");

    let m = scrape(metrics);
    let rows: &[(&str, f64)] = &[
        ("conbool_connections_total", 3.0),
        (
            "conbool_connections_refused_total{reason=\"per_ip_limit\"}",
            1.0,
        ),
        (
            "conbool_connections_refused_total{reason=\"shutting_down\"}",
            0.0,
        ),
        (
            "conbool_messages_total{outcome=\"accepted\",reason=\"delivered\"}",
            2.0,
        ),
        (
            "conbool_messages_total{outcome=\"deferred\",reason=\"next_hop_reply\"}",
            1.0,
        ),
        (
            "conbool_message_replies_total{outcome=\"accepted\",code=\"2.0.0\"}",
            2.0,
        ),
        (
            "conbool_message_replies_total{outcome=\"deferred\",code=\"4.3.0\"}",
            1.0,
        ),
        ("conbool_recipients_total{outcome=\"accepted\"}", 3.0),
        ("conbool_recipients_total{outcome=\"rejected\"}", 1.0),
        ("conbool_recipients_total{outcome=\"deferred\"}", 0.0),
        ("conbool_verdicts_total{verdict=\"spam\"}", 1.0),
        ("conbool_verdicts_total{verdict=\"ham\"}", 2.0),
        ("conbool_rule_hits_total{rule=\"GTUBE\"}", 1.0),
        (
            "conbool_next_hop_replies_total{stage=\"mail\",class=\"2xx\"}",
            3.0,
        ),
        (
            "conbool_next_hop_replies_total{stage=\"rcpt\",class=\"2xx\"}",
            3.0,
        ),
        (
            "conbool_next_hop_replies_total{stage=\"message\",class=\"2xx\"}",
            2.0,
        ),
        (
            "conbool_next_hop_replies_total{stage=\"message\",class=\"4xx\"}",
            1.0,
        ),
        (
            "conbool_next_hop_replies_total{stage=\"message\",class=\"5xx\"}",
            0.0,
        ),
        ("conbool_next_hop_connects_total", 2.0),
        ("conbool_next_hop_connect_failures_total", 0.0),
        ("conbool_next_hop_pool_reuses_total", 0.0),
        ("conbool_next_hop_connect_seconds_count", 2.0),
        ("conbool_end_of_data_reply_seconds_count", 3.0),
        ("conbool_end_of_data_reply_seconds_bucket{le=\"+Inf\"}", 3.0),
        ("conbool_tls_handshakes_total{side=\"client\"}", 0.0),
        ("conbool_tls_failures_total{side=\"next_hop\"}", 0.0),
        ("conbool_config_reloads_total{result=\"ok\"}", 0.0),
        ("conbool_build_info{version=\"0.1.0\"}", 1.0),
        ("conbool_workers", 2.0),
    ];
    let mut wrong = Vec::new();
    for (series, want) in rows {
        match m.get(*series) {
            Some(got) if got == want => {}
            got => wrong.push(format!("{series}: want {want}, got {got:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(m["conbool_client_received_bytes_total"] > 100.0);
    assert!(m["conbool_client_sent_bytes_total"] > 100.0);
    // The third connection may still be closing; the other two are open.
    let open = m["conbool_connections"];
    assert!((2.0..=3.0).contains(&open), "{open}");

    assert!(one.cmd("QUIT").starts_with("221"));
    assert!(two.cmd("QUIT").starts_with("221"));
    relay.stop().unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let lines: Vec<Vec<(String, String)>> = log
        .lines()
        .map(|l| parse_text_line(l).unwrap_or_else(|| panic!("unparsable: {l}")))
        .collect();
    let field = |line: &[(String, String)], key: &str| -> String {
        line.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    let msgs: Vec<_> = lines
        .iter()
        .filter(|l| field(l, "event") == "msg")
        .collect();
    let refused: Vec<_> = lines
        .iter()
        .filter(|l| field(l, "event") == "refused")
        .collect();
    assert_eq!(msgs.len(), 3, "{log}");
    assert_eq!(refused.len(), 1, "{log}");
    assert_eq!(field(refused[0], "reason"), "per_ip_limit");
    assert_eq!(field(refused[0], "client"), "127.0.0.1");
    let keys: Vec<&str> = msgs[0].iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "time",
            "level",
            "event",
            "worker",
            "session",
            "id",
            "client",
            "helo",
            "tls",
            "from",
            "nrcpt",
            "to",
            "size",
            "tenant",
            "verdict",
            "score",
            "rules",
            "code",
            "dsn",
            "reply",
            "reason",
            "next_hop",
            "eod_us",
            "total_us",
            "disclaimer"
        ],
        "{log}"
    );
    let rows: &[(usize, &[(&str, &str)])] = &[
        (
            0,
            &[
                ("helo", "one.test"),
                ("from", "a@example.com"),
                ("verdict", "ham"),
                ("code", "250"),
                ("dsn", "2.0.0"),
                ("reason", "delivered"),
                ("tenant", "example.com"),
            ],
        ),
        (1, &[("verdict", "spam"), ("nrcpt", "1")]),
        (
            2,
            &[
                ("helo", "two.test"),
                ("code", "451"),
                ("dsn", "4.3.0"),
                ("reply", "451 4.3.0 try again later"),
                ("reason", "next_hop_reply"),
                ("tenant", "later.example"),
                ("to", "c@later.example"),
            ],
        ),
    ];
    // Lines of different workers may interleave: find each by its HELO and verdict.
    let mut sorted = msgs.clone();
    sorted.sort_by_key(|l| (field(l, "helo"), field(l, "verdict") == "spam"));
    for (i, checks) in rows {
        for (key, want) in *checks {
            assert_eq!(field(sorted[*i], key), *want, "line {i} {key}: {log}");
        }
    }
    assert_eq!(field(sorted[2], "next_hop"), tempfail_hop.addr.to_string());
    assert!(field(sorted[1], "rules").starts_with("GTUBE,"), "{log}");
}

#[test]
fn http_edge_cases() {
    let registry = Arc::new(Registry::new(1));
    // A short request timeout so the slow client's case ends quickly; nothing here waits on it
    // except that case.
    let server = MetricsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        registry,
        Duration::from_millis(200),
    )
    .unwrap();
    let addr = server.local_addr;

    // A slow client holds one connection open without finishing its request...
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(FAILSAFE)).unwrap();
    slow.write_all(b"GET /met").unwrap();

    let big = format!(
        "GET /metrics HTTP/1.1\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(MAX_REQUEST_BYTES * 2)
    );
    let rows: &[(&str, &[u8], &str)] = &[
        (
            "scrape",
            b"GET /metrics HTTP/1.1\r\n\r\n",
            "HTTP/1.1 200 OK\r\n",
        ),
        (
            "head",
            b"HEAD /metrics HTTP/1.0\r\n\r\n",
            "HTTP/1.1 200 OK\r\n",
        ),
        (
            "query",
            b"GET /metrics?x=y HTTP/1.1\r\n\r\n",
            "HTTP/1.1 200 OK\r\n",
        ),
        (
            "post",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405 ",
        ),
        (
            "delete",
            b"DELETE /metrics HTTP/1.1\r\n\r\n",
            "HTTP/1.1 405 ",
        ),
        ("root", b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "),
        ("other", b"GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00", "HTTP/1.1 400 "),
        (
            "http2",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
        ("oversized", big.as_bytes(), "HTTP/1.1 431 "),
    ];
    // ... and every other client is still served meanwhile.
    for (row, request, status) in rows {
        let response = http(addr, request);
        assert!(response.starts_with(status), "{row}: {response}");
        assert!(response.contains("Connection: close\r\n"), "{row}");
    }
    let head = http(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");

    let mut out = String::new();
    let _ = slow.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    server.stop();
}
