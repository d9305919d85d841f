//! TLS end to end: STARTTLS from a client to the relay (full chain verified), STARTTLS from the
//! relay to a next hop that requires a client certificate, failures that must give the client
//! a `4xx`, command injection after STARTTLS, trust by certificate name, certificate reload,
//! and next-hop connections that keep their TLS session in the pool. Certificates are made
//! with rcgen when each test starts.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use conbool::cli::sink::{Sink, SinkHandle, SinkOptions};
use conbool::config::{Cidr, Config, NextHopTls, SniCert, Tls};
use conbool::reactor::certwatch::{self, CertWatch, WatchOutcome};
use conbool::reactor::{self, RelayHandle};
use conbool::relay::session::Snapshot;
use conbool::rules::CompiledRules;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::peer::FAILSAFE;
use crate::temp::TempDir;

// ------------------------------------------------------------------------------ PKI

/// A CA that issues certificates.
struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// An issued certificate, its key, and its chain up to (not including) the root.
struct Leaf {
    cert: rcgen::Certificate,
    key: KeyPair,
    chain_pem: String,
}

impl Authority {
    fn root(name: &str) -> Authority {
        let key = KeyPair::generate().expect("key");
        let cert = ca_params(name).self_signed(&key).expect("root");
        Authority { cert, key }
    }

    fn intermediate(&self, name: &str) -> Authority {
        let key = KeyPair::generate().expect("key");
        let cert = ca_params(name)
            .signed_by(&key, &self.cert, &self.key)
            .expect("intermediate");
        Authority { cert, key }
    }

    /// A leaf for `names` (DNS names or IP addresses), sent with this CA's certificate as
    /// its chain.
    fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf");
        let chain_pem = cert.pem() + &self.cert.pem();
        Leaf {
            cert,
            key,
            chain_pem,
        }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// The certificates of one test: the relay's chain root → intermediate → `mail.conbool.com`,
/// a next hop's certificate from the same root (valid for 127.0.0.1, where the sink listens),
/// and client certificates from a separate client root → intermediate.
struct Pki {
    root: Authority,
    intermediate: Authority,
    relay: Leaf,
    client_root: Authority,
    client_intermediate: Authority,
    dir: TempDir,
}

impl Pki {
    fn new(test: &str) -> Pki {
        let root = Authority::root("E2E Root");
        let intermediate = root.intermediate("E2E Intermediate");
        let relay = intermediate.leaf(&["mail.conbool.com"]);
        let client_root = Authority::root("E2E Client Root");
        let client_intermediate = client_root.intermediate("E2E Client Intermediate");
        let dir = TempDir::new(test);
        Pki {
            root,
            intermediate,
            relay,
            client_root,
            client_intermediate,
            dir,
        }
    }

    /// Writes `leaf`'s chain and key as `<name>.pem` and `<name>-key.pem`.
    fn write_leaf(&self, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        (
            self.dir.write(&format!("{name}.pem"), &leaf.chain_pem),
            self.dir
                .write(&format!("{name}-key.pem"), &leaf.key.serialize_pem()),
        )
    }

    /// `[tls]` for the relay: its full chain, and the client root for client certificates.
    fn relay_tls(&self) -> Tls {
        let (cert, key) = self.write_leaf("relay", &self.relay);
        Tls {
            cert,
            key,
            require: false,
            client_ca: Some(self.dir.write("client-ca.pem", &self.client_root.pem())),
            client_cert: None,
            client_key: None,
            reload_check_s: 0,
            sni: Vec::new(),
        }
    }

    fn root_file(&self) -> PathBuf {
        self.dir.write("root.pem", &self.root.pem())
    }

    /// A client certificate for `names`, from the client intermediate.
    fn client_leaf(&self, names: &[&str]) -> Leaf {
        self.client_intermediate.leaf(names)
    }

    /// A sink that offers STARTTLS with a certificate for `names` (from the server
    /// intermediate) and requires a client certificate from the client root.
    fn tls_sink(&self, names: &[&str], keep_messages: bool) -> SinkHandle {
        let leaf = self.intermediate.leaf(names);
        let (cert, key) = self.write_leaf("sink", &leaf);
        let client_ca = self
            .dir
            .write("sink-client-ca.pem", &self.client_root.pem());
        let tls = conbool::tls::server_config_requiring_client_cert(&cert, &key, &client_ca)
            .expect("sink tls");
        Sink::spawn(SinkOptions {
            keep_messages,
            tls: Some(tls),
            ..SinkOptions::default()
        })
        .expect("sink")
    }
}

// ------------------------------------------------------------------------------ relay

fn snapshot(config: Config) -> Snapshot {
    let rules = CompiledRules::builtin(config.spam.threshold);
    Snapshot {
        config: Arc::new(config),
        rules,
    }
}

fn base_config(next_hop: SocketAddr) -> Config {
    let mut config = Config::embedded_defaults();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 1;
    for t in &mut config.tenants {
        t.next_hop = next_hop.to_string();
        t.next_hop_tls = NextHopTls::None;
    }
    config
}

/// Relay options without one log line per message.
const QUIET: reactor::RelayOptions = reactor::RelayOptions {
    log_messages: false,
};

fn start(config: Config) -> RelayHandle {
    let options = reactor::RelayOptions {
        log_messages: false,
    };
    reactor::spawn(snapshot(config), &options).expect("relay starts")
}

/// A plain sink that keeps what it gets.
fn plain_sink() -> SinkHandle {
    Sink::spawn(SinkOptions {
        keep_messages: true,
        ..SinkOptions::default()
    })
    .expect("sink")
}

// ------------------------------------------------------------------------------ client

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Gone,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Gone => Ok(0),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Gone => Ok(()),
        }
    }
}

/// A blocking SMTP client that can upgrade with STARTTLS.
struct SmtpClient {
    stream: Stream,
    buf: Vec<u8>,
}

impl SmtpClient {
    fn connect(addr: SocketAddr) -> (SmtpClient, String) {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(FAILSAFE)).unwrap();
        let mut c = SmtpClient {
            stream: Stream::Plain(s),
            buf: Vec::new(),
        };
        let greeting = c.reply();
        (c, greeting)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
        self.stream.flush().expect("flush");
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// One reply, lines joined with `\n`; empty on close or error.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let Some(line) = self.line() else {
                return all;
            };
            let done = line.as_bytes().get(3) != Some(&b'-');
            all.push_str(line.trim_end());
            if done {
                return all;
            }
            all.push('\n');
        }
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// After a `220` to STARTTLS: runs the handshake (with `config`, verifying `name`).
    /// Bytes the server sent in plain text after the `220` are an error.
    fn upgrade(&mut self, config: Arc<ClientConfig>, name: &str) -> Result<(), String> {
        assert!(
            self.buf.is_empty(),
            "plain text after the 220: {:?}",
            self.buf
        );
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            panic!("already TLS");
        };
        let server_name = ServerName::try_from(name.to_string()).expect("name");
        let conn = ClientConnection::new(config, server_name).map_err(|e| e.to_string())?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| e.to_string())?;
        }
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// The certificates the server presented (after [`SmtpClient::upgrade`]).
    fn server_chain(&self) -> Vec<CertificateDer<'static>> {
        match &self.stream {
            Stream::Tls(s) => s
                .conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// EHLO, STARTTLS, handshake, EHLO again; returns the second EHLO reply.
    fn starttls(&mut self, config: Arc<ClientConfig>, name: &str) -> Result<String, String> {
        let ehlo = self.cmd("EHLO client.e2e.test");
        assert!(ehlo.contains("STARTTLS"), "STARTTLS offered: {ehlo}");
        let r = self.cmd("STARTTLS");
        assert!(r.starts_with("220 "), "{r}");
        self.upgrade(config, name)?;
        Ok(self.cmd("EHLO client.e2e.test"))
    }

    /// Sends a message with DATA; returns the end-of-data reply.
    fn data(&mut self, content: &[u8]) -> String {
        let r = self.cmd("DATA");
        assert!(r.starts_with("354"), "DATA: {r}");
        self.send(content);
        self.send(b".\r\n");
        self.reply()
    }
}

/// A client configuration that trusts `root` (PEM), optionally with a client certificate.
fn client_config(root_pem: &str, identity: Option<&Leaf>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut root_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(leaf) => {
            let chain: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut leaf.chain_pem.as_bytes())
                    .map(|c| c.expect("pem"))
                    .collect();
            let key = PrivateKeyDer::try_from(leaf.key.serialize_der()).expect("key");
            builder.with_client_auth_cert(chain, key).expect("identity")
        }
    };
    Arc::new(config)
}

const MSG: &[u8] = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: tls e2e\r\n\r\nHello\r\n";

/// Waits (bounded) until the sink has `n` messages, then takes them.
fn messages(sink: &SinkHandle, n: usize) -> Vec<conbool::cli::sink::ReceivedMessage> {
    // The sink counts a message before it answers, and the relay answers the client only
    // after the sink's reply: by the time a test reads its 250, the message is there.
    let got = sink.take_messages();
    assert_eq!(got.len(), n, "messages at the sink");
    got
}

// ------------------------------------------------------------------------------ tests

#[test]
fn client_starttls_verifies_the_full_chain_and_received_says_esmtps() {
    let pki = Pki::new("client_starttls");
    let sink = plain_sink();
    let mut config = base_config(sink.addr);
    config.tls = Some(pki.relay_tls());
    let relay = start(config);

    // Trusting only the root works because the relay sends leaf + intermediate.
    let (mut c, greeting) = SmtpClient::connect(relay.local_addrs[0]);
    assert!(greeting.starts_with("220 "), "{greeting}");
    let ehlo = c
        .starttls(client_config(&pki.root.pem(), None), "mail.conbool.com")
        .expect("handshake");
    assert!(ehlo.starts_with("250-"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "not offered twice: {ehlo}");
    let chain = c.server_chain();
    assert_eq!(chain.len(), 2, "leaf and intermediate");
    assert_eq!(chain[0], *pki.relay.cert.der());
    assert_eq!(chain[1], *pki.intermediate.cert.der());

    assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@example.com>").starts_with("250"));
    let r = c.data(MSG);
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("QUIT").starts_with("221"));

    let got = messages(&sink, 1);
    let text = String::from_utf8_lossy(&got[0].data);
    assert!(text.starts_with("Received: from client.e2e.test"), "{text}");
    assert!(text.contains(" with ESMTPS id "), "{text}");
    let stats = relay.stop().expect("stop");
    assert_eq!(stats.client_tls_handshakes, 1);
    assert_eq!(stats.client_tls_failures, 0);
}

#[test]
fn a_client_that_does_not_trust_the_relay_fails_and_the_relay_logs_it() {
    let pki = Pki::new("client_untrusting");
    let sink = plain_sink();
    let mut config = base_config(sink.addr);
    config.tls = Some(pki.relay_tls());
    let relay = start(config);
    let stranger = Authority::root("Stranger");
    let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
    let err = c
        .starttls(client_config(&stranger.pem(), None), "mail.conbool.com")
        .expect_err("unknown issuer");
    assert!(err.contains("UnknownIssuer"), "{err}");
    // A plain-text client after STARTTLS: its bytes are not TLS, the relay hangs up.
    let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
    c.cmd("EHLO e2e.test");
    assert!(c.cmd("STARTTLS").starts_with("220"));
    c.send(b"EHLO not.tls\r\n");
    assert!(c.reply().is_empty(), "closed");
    let stats = relay.stop().expect("stop");
    assert_eq!(stats.client_tls_handshakes, 0);
    assert_eq!(stats.client_tls_failures, 2);
}

#[test]
fn starttls_with_a_pipelined_command_does_not_answer_it() {
    let pki = Pki::new("injection");
    let sink = plain_sink();
    let mut config = base_config(sink.addr);
    config.tls = Some(pki.relay_tls());
    let relay = start(config);
    let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
    c.cmd("EHLO e2e.test");
    // CVE-2011-0411: the RSET arrives in the same write as STARTTLS, in plain text.
    c.send(b"STARTTLS\r\nRSET\r\n");
    let r = c.reply();
    assert!(r.starts_with("220 "), "{r}");
    c.upgrade(client_config(&pki.root.pem(), None), "mail.conbool.com")
        .expect("handshake");
    // The first reply over TLS must be the one to this NOOP, not one to the injected RSET.
    c.send(b"NOOP injected-check\r\n");
    let first = c.reply();
    assert!(first.starts_with("250"), "{first}");
    // After TLS the session restarts: MAIL before EHLO is a bad sequence, which proves the
    // state was reset and nothing pipelined ran.
    let mail = c.cmd("MAIL FROM:<a@example.com>");
    assert!(mail.starts_with("503"), "{mail}");
    // Only one reply per command: a stray RSET answer would now be waiting.
    let ehlo = c.cmd("EHLO e2e.test");
    assert!(ehlo.starts_with("250-"), "{ehlo}");
    relay.stop().expect("stop");
}

#[test]
fn relay_delivers_over_tls_with_the_tenants_client_certificate() {
    let pki = Pki::new("next_hop_tls");
    let sink = pki.tls_sink(&["mail.tenant.example", "127.0.0.1"], true);
    let relay_identity = pki.client_leaf(&["mail.conbool.com"]);
    let (client_cert, client_key) = pki.write_leaf("relay-client", &relay_identity);
    let mut config = base_config(sink.addr);
    config.tenants[0].next_hop_tls = NextHopTls::Verify;
    config.tenants[0].next_hop_ca = Some(pki.root_file());
    config.tenants[0].client_cert = Some(client_cert);
    config.tenants[0].client_key = Some(client_key);
    let relay = start(config);

    let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
    c.cmd("EHLO e2e.test");
    assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@example.com>").starts_with("250"));
    let r = c.data(MSG);
    assert!(r.starts_with("250"), "{r}");
    c.cmd("QUIT");
    let got = messages(&sink, 1);
    assert!(got[0].tls, "arrived over TLS");
    assert!(got[0].data.ends_with(b"Subject: tls e2e\r\n\r\nHello\r\n"));
    let sink_stats = sink.stats();
    assert_eq!(sink_stats.tls_handshakes, 1);
    assert_eq!(
        sink_stats.tls_client_certs, 1,
        "the relay showed its certificate"
    );
    let stats = relay.stop().expect("stop");
    assert_eq!(stats.next_hop_tls_handshakes, 1);
    assert_eq!(stats.next_hop_tls_failures, 0);
}

/// One client transaction toward a broken next hop: MAIL from a trusted client opens the
/// next hop, so its reply carries the failure.
fn mail_reply_through(config: Config) -> (String, reactor::WorkerStats) {
    let relay = start(config);
    let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
    c.cmd("EHLO e2e.test");
    let mut r = c.cmd("MAIL FROM:<a@example.com>");
    if r.starts_with("250") {
        // Under TLS 1.3 a refused client certificate shows after the client's handshake.
        r = c.cmd("RCPT TO:<b@example.com>");
    }
    c.cmd("QUIT");
    (r, relay.stop().expect("stop"))
}

#[test]
fn wrong_next_hop_name_under_verify_gives_a_4xx_and_delivers_nothing() {
    let pki = Pki::new("wrong_name");
    // The sink's certificate does not name 127.0.0.1, where the relay connects.
    let sink = pki.tls_sink(&["mail.tenant.example"], true);
    let identity = pki.client_leaf(&["mail.conbool.com"]);
    let (cert, key) = pki.write_leaf("relay-client", &identity);
    let mut config = base_config(sink.addr);
    config.tenants[0].next_hop_tls = NextHopTls::Verify;
    config.tenants[0].next_hop_ca = Some(pki.root_file());
    config.tenants[0].client_cert = Some(cert.clone());
    config.tenants[0].client_key = Some(key.clone());
    let (r, stats) = mail_reply_through(config.clone());
    assert!(r.starts_with("451 4.4."), "{r}");
    assert_eq!(stats.next_hop_tls_failures, 1);
    assert_eq!(sink.stats().accepted, 0);

    // `require` encrypts without checking the name: the same next hop works.
    config.tenants[0].next_hop_tls = NextHopTls::Require;
    let relay = start(config);
    let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
    c.cmd("EHLO e2e.test");
    c.cmd("MAIL FROM:<a@example.com>");
    c.cmd("RCPT TO:<b@example.com>");
    assert!(c.data(MSG).starts_with("250"));
    relay.stop().expect("stop");
    assert_eq!(messages(&sink, 1).len(), 1);
}

#[test]
fn missing_client_certificate_at_a_next_hop_that_requires_one_gives_a_4xx() {
    let pki = Pki::new("no_client_cert");
    let sink = pki.tls_sink(&["127.0.0.1"], true);
    let mut config = base_config(sink.addr);
    config.tenants[0].next_hop_tls = NextHopTls::Verify;
    config.tenants[0].next_hop_ca = Some(pki.root_file());
    let (r, stats) = mail_reply_through(config);
    assert!(r.starts_with("451 4.4."), "{r}");
    assert_eq!(stats.next_hop_tls_failures, 1);
    assert_eq!(sink.stats().accepted, 0);
    // The relay gave up on its side; the sink counts its side of the failed handshake on its
    // own thread, so it is waited for (bounded), not assumed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sink.stats().tls_failures == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(sink.stats().tls_failures >= 1);
}

#[test]
fn a_client_with_a_trusted_certificate_name_is_routed_as_trusted() {
    let pki = Pki::new("trusted_by_cert");
    let sink = plain_sink();
    let mut config = base_config(sink.addr);
    config.tls = Some(pki.relay_tls());
    // Loopback is no longer trusted by address: only the certificate can make it trusted.
    config.tenants[0].trusted_networks = vec![Cidr {
        addr: "192.0.2.0".parse().unwrap(),
        prefix: 24,
    }];
    config.tenants[0].trusted_cert_names = vec!["exchange.tenant.example".into()];
    let relay = start(config);
    let root = pki.root.pem();

    // With the certificate: outbound mail to any domain goes to the tenant's next hop.
    let exchange = pki.client_leaf(&["exchange.tenant.example"]);
    let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
    c.starttls(client_config(&root, Some(&exchange)), "mail.conbool.com")
        .expect("handshake");
    assert!(c.cmd("MAIL FROM:<ceo@example.com>").starts_with("250"));
    let r = c.cmd("RCPT TO:<partner@elsewhere.example>");
    assert!(r.starts_with("250"), "trusted: {r}");
    assert!(c.data(MSG).starts_with("250"));
    c.cmd("QUIT");

    // A certificate from the client CA with another name, or none at all: untrusted.
    for (row, identity) in [
        (
            "other_name",
            Some(pki.client_leaf(&["someone.else.example"])),
        ),
        ("no_certificate", None),
    ] {
        let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
        c.starttls(client_config(&root, identity.as_ref()), "mail.conbool.com")
            .expect("handshake");
        assert!(c.cmd("MAIL FROM:<ceo@example.com>").starts_with("250"));
        let r = c.cmd("RCPT TO:<partner@elsewhere.example>");
        assert!(r.starts_with("554 5.7.1"), "row {row}: {r}");
        c.cmd("QUIT");
    }
    relay.stop().expect("stop");
    assert_eq!(messages(&sink, 1).len(), 1);
}

#[test]
fn reload_with_a_new_certificate_serves_it_to_new_handshakes() {
    let pki = Pki::new("reload");
    let sink = plain_sink();
    let mut config = base_config(sink.addr);
    let tls = pki.relay_tls();
    config.tls = Some(tls.clone());
    let snap = snapshot(config);
    let relay = reactor::spawn(
        snap.clone(),
        &reactor::RelayOptions {
            log_messages: false,
        },
    )
    .unwrap();
    let root = pki.root.pem();
    let presented = |relay: &RelayHandle| {
        let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
        c.starttls(client_config(&root, None), "mail.conbool.com")
            .expect("handshake");
        let chain = c.server_chain();
        c.cmd("QUIT");
        chain[0].clone()
    };
    assert_eq!(presented(&relay), *pki.relay.cert.der());

    // A renewal: same paths, new certificate and key.
    let renewed = pki.intermediate.leaf(&["mail.conbool.com"]);
    std::fs::write(&tls.cert, &renewed.chain_pem).unwrap();
    std::fs::write(&tls.key, renewed.key.serialize_pem()).unwrap();
    relay.reload(&snap).expect("reload");
    assert_eq!(presented(&relay), *renewed.cert.der());

    // A broken renewal (key of another certificate): refused, the running one stays.
    let other = pki.intermediate.leaf(&["mail.conbool.com"]);
    std::fs::write(&tls.key, other.key.serialize_pem()).unwrap();
    let err = relay.reload(&snap).expect_err("mismatch");
    assert!(err.contains("does not match"), "{err}");
    assert_eq!(presented(&relay), *renewed.cert.der());
    relay.stop().expect("stop");
}

#[test]
fn pooled_next_hop_connections_make_one_handshake_not_one_per_message() {
    let pki = Pki::new("pool");
    let sink = pki.tls_sink(&["127.0.0.1"], false);
    let identity = pki.client_leaf(&["mail.conbool.com"]);
    let (cert, key) = pki.write_leaf("relay-client", &identity);
    let mut config = base_config(sink.addr);
    config.tenants[0].next_hop_tls = NextHopTls::Verify;
    config.tenants[0].next_hop_ca = Some(pki.root_file());
    config.tenants[0].client_cert = Some(cert);
    config.tenants[0].client_key = Some(key);
    let relay = start(config);
    const CONNECTIONS: usize = 4;
    const PER_CONNECTION: usize = 3;
    for _ in 0..CONNECTIONS {
        let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
        c.cmd("EHLO e2e.test");
        for _ in 0..PER_CONNECTION {
            assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
            assert!(c.cmd("RCPT TO:<b@example.com>").starts_with("250"));
            assert!(c.data(MSG).starts_with("250"));
        }
        assert!(c.cmd("QUIT").starts_with("221"));
        // Wait for the relay's close: its next-hop connection is back in the pool by then.
        assert!(c.reply().is_empty());
    }
    let sink_stats = sink.stats();
    assert_eq!(sink_stats.accepted, (CONNECTIONS * PER_CONNECTION) as u64);
    assert_eq!(sink_stats.connections, 1, "one pooled connection");
    assert_eq!(sink_stats.tls_handshakes, 1);
    let stats = relay.stop().expect("stop");
    assert_eq!(stats.delivered, (CONNECTIONS * PER_CONNECTION) as u64);
    assert_eq!(stats.next_hop_tls_handshakes, 1);
}

#[test]
fn tls_require_refuses_mail_before_starttls() {
    let pki = Pki::new("require");
    let sink = plain_sink();
    let mut config = base_config(sink.addr);
    let mut tls = pki.relay_tls();
    tls.require = true;
    config.tls = Some(tls);
    let relay = start(config);
    let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
    c.cmd("EHLO e2e.test");
    let r = c.cmd("MAIL FROM:<a@example.com>");
    assert!(r.starts_with("530 5.7.0"), "{r}");
    c.starttls(client_config(&pki.root.pem(), None), "mail.conbool.com")
        .expect("handshake");
    let r = c.cmd("MAIL FROM:<a@example.com>");
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("QUIT").starts_with("221"));
    relay.stop().expect("stop");
}

#[test]
fn a_broken_certificate_stops_the_relay_from_starting() {
    let pki = Pki::new("broken_start");
    let mut config = base_config("127.0.0.1:9".parse().unwrap());
    let mut tls = pki.relay_tls();
    tls.key = Path::new("/nonexistent/key.pem").to_path_buf();
    config.tls = Some(tls);
    let err = reactor::spawn(snapshot(config), &reactor::RelayOptions::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("/nonexistent/key.pem"), "{err}");
}

#[test]
fn a_large_message_over_tls_on_both_sides_arrives_intact() {
    let pki = Pki::new("large");
    let sink = pki.tls_sink(&["127.0.0.1"], true);
    let identity = pki.client_leaf(&["mail.conbool.com"]);
    let (cert, key) = pki.write_leaf("relay-client", &identity);
    let mut config = base_config(sink.addr);
    config.tls = Some(pki.relay_tls());
    config.tenants[0].next_hop_tls = NextHopTls::Verify;
    config.tenants[0].next_hop_ca = Some(pki.root_file());
    config.tenants[0].client_cert = Some(cert);
    config.tenants[0].client_key = Some(key);
    let relay = start(config);

    // Several MB in lines that are not all alike, so a lost or repeated TLS record shows.
    const HEAD: &[u8] = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: big\r\n\r\n";
    let mut body = HEAD.to_vec();
    let mut n = 0u64;
    while body.len() < 6 * 1024 * 1024 {
        body.extend_from_slice(format!("line {n:08} of the large message over TLS\r\n").as_bytes());
        n += 1;
    }
    let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
    c.starttls(client_config(&pki.root.pem(), None), "mail.conbool.com")
        .expect("handshake");
    assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@example.com>").starts_with("250"));
    let r = c.data(&body);
    assert!(r.starts_with("250"), "{r}");
    c.cmd("QUIT");
    let got = messages(&sink, 1);
    assert!(got[0].tls);
    // Our header fields come first; from the original header on it is byte for byte.
    assert!(got[0].data.ends_with(&body), "the content arrived intact");
    relay.stop().expect("stop");
}

// ------------------------------------------------------------------------------ reload on change

/// Replaces `path` the way certbot and deployment tools do: the new contents go to a temporary
/// file beside it, which is then renamed over it (readers see the old file or the new one).
fn rename_into_place(path: &Path, contents: &str) {
    let tmp = path.with_extension("pem.new");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The leaf certificate the relay presents to a new STARTTLS client.
fn presented(relay: &RelayHandle, root_pem: &str) -> CertificateDer<'static> {
    let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
    c.starttls(client_config(root_pem, None), "mail.conbool.com")
        .expect("handshake");
    let chain = c.server_chain();
    c.cmd("QUIT");
    chain[0].clone()
}

#[test]
fn certificates_renamed_into_place_are_reloaded_and_a_broken_one_is_refused() {
    let pki = Pki::new("reload_on_change");
    let sink = plain_sink();
    let mut config = base_config(sink.addr);
    let tls = pki.relay_tls();
    config.tls = Some(tls.clone());
    let snap = snapshot(config);
    let relay = reactor::spawn(snap.clone(), &QUIET).unwrap();
    let root = pki.root.pem();
    let mut watch = CertWatch::new(&snap.config);
    assert_eq!(
        certwatch::reload_if_changed(&mut watch, &relay, &snap),
        WatchOutcome::Unchanged
    );
    assert_eq!(presented(&relay, &root), *pki.relay.cert.der());

    // A session established before the renewal keeps working after it.
    let (mut old, _) = SmtpClient::connect(relay.local_addrs[0]);
    old.starttls(client_config(&root, None), "mail.conbool.com")
        .expect("handshake");

    // Renewal: key first, then the certificate, each renamed into place. Caught between the
    // two, the pair does not match: refused, the running certificate stays.
    let renewed = pki.intermediate.leaf(&["mail.conbool.com"]);
    rename_into_place(&tls.key, &renewed.key.serialize_pem());
    match certwatch::reload_if_changed(&mut watch, &relay, &snap) {
        WatchOutcome::Refused { changed, error } => {
            assert_eq!(changed.len(), 1, "{changed:?}");
            assert!(changed[0].starts_with("tls.key ("), "{changed:?}");
            assert!(error.contains("does not match"), "{error}");
        }
        other => panic!("half a renewal: {other:?}"),
    }
    assert_eq!(presented(&relay, &root), *pki.relay.cert.der());
    // Not tried again until a file changes again.
    assert_eq!(
        certwatch::reload_if_changed(&mut watch, &relay, &snap),
        WatchOutcome::Unchanged
    );
    rename_into_place(&tls.cert, &renewed.chain_pem);
    match certwatch::reload_if_changed(&mut watch, &relay, &snap) {
        WatchOutcome::Reloaded(changed) => {
            assert_eq!(changed.len(), 1, "{changed:?}");
            assert!(changed[0].starts_with("tls.cert ("), "{changed:?}");
        }
        other => panic!("completed renewal: {other:?}"),
    }
    assert_eq!(presented(&relay, &root), *renewed.cert.der());

    // The old session is untouched: it still sends over its TLS session.
    assert_eq!(old.server_chain()[0], *pki.relay.cert.der());
    assert!(old.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    assert!(old.cmd("RCPT TO:<b@example.com>").starts_with("250"));
    assert!(old.data(MSG).starts_with("250"));
    old.cmd("QUIT");

    // Broken files: half-written PEM, garbage. Each refused, the renewed one stays.
    let half = &renewed.chain_pem[..renewed.chain_pem.len() / 2];
    for (row, contents) in [
        ("half_written", half),
        ("not_pem", "this is not a certificate\n"),
    ] {
        rename_into_place(&tls.cert, contents);
        match certwatch::reload_if_changed(&mut watch, &relay, &snap) {
            WatchOutcome::Refused { error, .. } => {
                assert!(error.starts_with("tls: "), "row {row}: {error}");
                assert!(
                    error.contains(&*tls.cert.to_string_lossy()),
                    "row {row}: {error}"
                );
            }
            other => panic!("row {row}: {other:?}"),
        }
        assert_eq!(presented(&relay, &root), *renewed.cert.der(), "row {row}");
    }
    // Fixed: taken at the next look.
    rename_into_place(&tls.cert, &renewed.chain_pem);
    assert!(matches!(
        certwatch::reload_if_changed(&mut watch, &relay, &snap),
        WatchOutcome::Reloaded(_)
    ));
    relay.stop().expect("stop");
    assert_eq!(messages(&sink, 1).len(), 1);
}

#[test]
fn reload_under_load_loses_no_message() {
    let pki = Pki::new("reload_under_load");
    let sink = pki.tls_sink(&["127.0.0.1"], false);
    let identity = pki.client_leaf(&["mail.conbool.com"]);
    let (client_cert, client_key) = pki.write_leaf("relay-client", &identity);
    let mut config = base_config(sink.addr);
    let tls = pki.relay_tls();
    config.tls = Some(tls.clone());
    config.server.workers = 2;
    config.tenants[0].next_hop_tls = NextHopTls::Verify;
    config.tenants[0].next_hop_ca = Some(pki.root_file());
    config.tenants[0].client_cert = Some(client_cert.clone());
    config.tenants[0].client_key = Some(client_key.clone());
    let snap = snapshot(config);
    let relay = reactor::spawn(snap.clone(), &QUIET).unwrap();
    let addr = relay.local_addrs[0];
    let mut watch = CertWatch::new(&snap.config);

    const CLIENTS: usize = 3;
    const PER_CONNECTION: usize = 3;
    const ROUNDS: usize = 4;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (progress_tx, progress) = std::sync::mpsc::channel::<()>();
    let root = pki.root.pem();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let stop = stop.clone();
            let progress_tx = progress_tx.clone();
            let trust = client_config(&root, None);
            std::thread::spawn(move || {
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    // A new connection and handshake each time: some meet a reload midway.
                    let (mut c, _) = SmtpClient::connect(addr);
                    c.starttls(trust.clone(), "mail.conbool.com")
                        .expect("handshake");
                    for _ in 0..PER_CONNECTION {
                        let r = c.cmd("MAIL FROM:<a@example.com>");
                        assert!(r.starts_with("250"), "MAIL: {r}");
                        let r = c.cmd("RCPT TO:<b@example.com>");
                        assert!(r.starts_with("250"), "RCPT: {r}");
                        let r = c.data(MSG);
                        assert!(r.starts_with("250"), "DATA: {r}");
                        sent += 1;
                        let _ = progress_tx.send(());
                    }
                    c.cmd("QUIT");
                }
                sent
            })
        })
        .collect();
    drop(progress_tx);

    for round in 0..ROUNDS {
        // Messages are flowing before each change.
        for _ in 0..CLIENTS {
            progress
                .recv_timeout(FAILSAFE)
                .unwrap_or_else(|e| panic!("round {round}: no progress: {e}"));
        }
        let server = pki.intermediate.leaf(&["mail.conbool.com"]);
        let client = pki.client_leaf(&["mail.conbool.com"]);
        rename_into_place(&tls.cert, &server.chain_pem);
        rename_into_place(&tls.key, &server.key.serialize_pem());
        rename_into_place(&client_cert, &client.chain_pem);
        rename_into_place(&client_key, &client.key.serialize_pem());
        match certwatch::reload_if_changed(&mut watch, &relay, &snap) {
            WatchOutcome::Reloaded(changed) => assert_eq!(changed.len(), 4, "{changed:?}"),
            other => panic!("round {round}: {other:?}"),
        }
    }
    for _ in 0..CLIENTS {
        progress.recv_timeout(FAILSAFE).expect("progress after");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent: u64 = clients
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .sum();
    let stats = relay.stop().expect("stop");
    assert!(sent >= ((ROUNDS + 1) * CLIENTS) as u64, "sent {sent}");
    assert_eq!(stats.delivered, sent, "every accepted message delivered");
    assert_eq!(sink.stats().accepted, sent, "and arrived");
    assert_eq!(stats.client_tls_failures, 0);
    assert_eq!(stats.next_hop_tls_failures, 0);
    assert!(
        stats.next_hop_tls_handshakes >= 2,
        "new next-hop connections after a reload use the new client certificate"
    );
}

#[test]
fn next_hop_tls_name_is_the_name_verified_at_an_ip_literal_next_hop() {
    let pki = Pki::new("next_hop_tls_name");
    // The next hop listens on 127.0.0.1, but its certificate names only mx.tenant.example.
    let sink = pki.tls_sink(&["mx.tenant.example"], true);
    let identity = pki.client_leaf(&["mail.conbool.com"]);
    let (cert, key) = pki.write_leaf("relay-client", &identity);
    let mut config = base_config(sink.addr);
    config.tenants[0].next_hop_tls = NextHopTls::Verify;
    config.tenants[0].next_hop_ca = Some(pki.root_file());
    config.tenants[0].client_cert = Some(cert);
    config.tenants[0].client_key = Some(key);

    let rows = [
        ("host_part_of_next_hop", None, false),
        ("the_certificates_name", Some("mx.tenant.example"), true),
        ("another_name", Some("mx.other.example"), false),
    ];
    for (row, name, delivers) in rows {
        let mut config = config.clone();
        config.tenants[0].next_hop_tls_name = name.map(str::to_string);
        let relay = start(config);
        let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
        c.cmd("EHLO e2e.test");
        let mut r = c.cmd("MAIL FROM:<a@example.com>");
        if r.starts_with("250") {
            r = c.cmd("RCPT TO:<b@example.com>");
        }
        if delivers {
            assert!(r.starts_with("250"), "row {row}: {r}");
            assert!(c.data(MSG).starts_with("250"), "row {row}");
        } else {
            assert!(r.starts_with("451 4.4."), "row {row}: {r}");
        }
        c.cmd("QUIT");
        let stats = relay.stop().expect("stop");
        assert_eq!(
            stats.next_hop_tls_failures,
            u64::from(!delivers),
            "row {row}"
        );
    }
    assert_eq!(messages(&sink, 1).len(), 1);
}

#[test]
fn conbool_run_reloads_a_renewed_certificate_without_sighup() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let pki = Pki::new("run_watch");
    let tls = pki.relay_tls();
    let config = pki.dir.write(
        "conbool.toml",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
             [tls]\ncert = {:?}\nkey = {:?}\nreload_check_s = 1\n\n\
             [[tenant]]\nname = \"example.com\"\nnext_hop = \"127.0.0.1:9\"\n\
             next_hop_tls = \"none\"\ntrusted_networks = [\"127.0.0.0/8\"]\n",
            tls.cert, tls.key
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_conbool"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("conbool run");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |what: &str| -> String {
        loop {
            let line = lines
                .recv_timeout(FAILSAFE)
                .unwrap_or_else(|e| panic!("no line with {what:?}: {e}"));
            if line.contains(what) {
                return line;
            }
        }
    };
    let listening = wait_for("listening on ");
    let addr: SocketAddr = listening
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{listening}"));
    let relay_at = |addr| {
        let (mut c, _) = SmtpClient::connect(addr);
        c.starttls(client_config(&pki.root.pem(), None), "mail.conbool.com")
            .expect("handshake");
        let chain = c.server_chain();
        c.cmd("QUIT");
        chain[0].clone()
    };
    assert_eq!(relay_at(addr), *pki.relay.cert.der());

    // A renewal renamed into place; no signal: the next look finds it.
    let renewed = pki.intermediate.leaf(&["mail.conbool.com"]);
    rename_into_place(&tls.key, &renewed.key.serialize_pem());
    rename_into_place(&tls.cert, &renewed.chain_pem);
    wait_for("conbool: certificates reloaded: changed: ");
    assert_eq!(relay_at(addr), *renewed.cert.der());

    // SIGTERM still stops it cleanly.
    // SAFETY: `kill` on the pid of a child this test started and has not waited for yet.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
}

/// The leaf the relay presents to a STARTTLS client that verifies `name` (against the
/// e2e root) and sends it as SNI, or sends no SNI when `sni` is false.
fn presented_for(
    relay: &RelayHandle,
    root_pem: &str,
    name: &str,
    sni: bool,
) -> CertificateDer<'static> {
    let mut config = (*client_config(root_pem, None)).clone();
    config.enable_sni = sni;
    let (mut c, _) = SmtpClient::connect(relay.local_addrs[0]);
    c.starttls(Arc::new(config), name)
        .unwrap_or_else(|e| panic!("{name} (sni {sni}): {e}"));
    let chain = c.server_chain();
    c.cmd("QUIT");
    chain[0].clone()
}

#[test]
fn sni_chooses_the_certificate_and_a_reload_swaps_one() {
    let pki = Pki::new("sni");
    let sink = plain_sink();
    let mut config = base_config(sink.addr);
    let mut tls = pki.relay_tls();
    let a = pki.intermediate.leaf(&["mail.example.net"]);
    let b = pki.intermediate.leaf(&["*.example.org"]);
    let (a_cert, a_key) = pki.write_leaf("sni-a", &a);
    let (b_cert, b_key) = pki.write_leaf("sni-b", &b);
    tls.sni = vec![
        SniCert {
            names: Vec::new(),
            cert: a_cert.clone(),
            key: a_key.clone(),
        },
        SniCert {
            names: vec!["*.example.org".into()],
            cert: b_cert,
            key: b_key,
        },
    ];
    config.tls = Some(tls);
    let snap = snapshot(config);
    let relay = reactor::spawn(snap.clone(), &QUIET).unwrap();
    let root = pki.root.pem();
    let rows: [(&str, &str, bool, &CertificateDer<'static>); 5] = [
        ("sni_a", "mail.example.net", true, a.cert.der()),
        ("sni_a_upper_case", "MAIL.EXAMPLE.NET", true, a.cert.der()),
        ("sni_b_wildcard", "smtp.example.org", true, b.cert.der()),
        (
            "sni_default_name",
            "mail.conbool.com",
            true,
            pki.relay.cert.der(),
        ),
        ("no_sni", "mail.conbool.com", false, pki.relay.cert.der()),
    ];
    for (row, name, sni, want) in rows {
        assert_eq!(presented_for(&relay, &root, name, sni), *want, "row {row}");
    }

    // A renewal of a's certificate, renamed into place: the watch sees it, new handshakes
    // asking for a get the new one, the others are unchanged.
    let mut watch = CertWatch::new(&snap.config);
    let renewed = pki.intermediate.leaf(&["mail.example.net"]);
    rename_into_place(&a_key, &renewed.key.serialize_pem());
    rename_into_place(&a_cert, &renewed.chain_pem);
    match certwatch::reload_if_changed(&mut watch, &relay, &snap) {
        WatchOutcome::Reloaded(changed) => {
            assert_eq!(changed.len(), 2, "{changed:?}");
            assert!(changed[0].starts_with("tls.sni[0].cert ("), "{changed:?}");
            assert!(changed[1].starts_with("tls.sni[0].key ("), "{changed:?}");
        }
        other => panic!("renewal of sni[0]: {other:?}"),
    }
    let name = "mail.example.net";
    assert_eq!(
        presented_for(&relay, &root, name, true),
        *renewed.cert.der()
    );
    let name = "smtp.example.org";
    assert_eq!(presented_for(&relay, &root, name, true), *b.cert.der());
    let default = presented_for(&relay, &root, "mail.conbool.com", false);
    assert_eq!(default, *pki.relay.cert.der());

    // A broken renewal (key of another certificate) is refused; the renewed one stays.
    let other = pki.intermediate.leaf(&["mail.example.net"]);
    rename_into_place(&a_key, &other.key.serialize_pem());
    match certwatch::reload_if_changed(&mut watch, &relay, &snap) {
        WatchOutcome::Refused { error, .. } => {
            assert!(error.contains("does not match"), "{error}");
        }
        other => panic!("broken sni renewal: {other:?}"),
    }
    let name = "mail.example.net";
    assert_eq!(
        presented_for(&relay, &root, name, true),
        *renewed.cert.der()
    );
    relay.stop().expect("stop");
}
