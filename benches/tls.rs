//! What TLS costs the relay, in memory (no sockets): rustls client ↔ server connections whose
//! server side is built by `conbool::tls::server_config_from_pem`, as `[tls]` builds it.
//!
//! `cargo bench --bench tls -- --warm-up-time 1 --measurement-time 3`
//!
//! Groups:
//! - `tls_handshake`: one complete handshake per iteration (client and server, on one core),
//!   so elements/s is handshakes per second per core. TLS 1.3 and 1.2, ECDSA P-256 and RSA
//!   2048 server keys, the client verifying the chain against the test CA; `full` has client
//!   resumption off, `resumed` resumes a session (TLS 1.3 tickets, TLS 1.2 tickets).
//! - `tls_record`: 64 KiB of plaintext written by the client, sealed into records, read and
//!   opened by the server, next to `memcpy_baseline` (copying the same 64 KiB once) in the
//!   same run.
//!
//! Certificates are made with rcgen at start: a P-256 CA issues both server leaves; the RSA
//! leaf carries the 2048-bit key of `src/tls/testdata/rsa-pkcs1-key.pem` (rcgen with ring
//! cannot generate RSA keys).

use std::io::{Read, Write};
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256,
};
use rustls::client::Resumption;
use rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, RootCertStore, ServerConfig, ServerConnection,
    SupportedProtocolVersion,
};

/// The relay's allocator (`src/main.rs`), so that per-message allocations cost what they cost
/// there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAME: &str = "mail.conbool.com";
const RECORD_WRITE: usize = 64 * 1024;
const RSA_PKCS1_KEY: &str = include_str!("../src/tls/testdata/rsa-pkcs1-key.pem");

struct Pki {
    ca_pem: String,
    ecdsa: Arc<ServerConfig>,
    rsa: Arc<ServerConfig>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.distinguished_name.push(DnType::CommonName, "Bench Root");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let server = |key: KeyPair| {
            let mut params = CertificateParams::new(vec![NAME.to_string()]).expect("params");
            params.distinguished_name.push(DnType::CommonName, NAME);
            let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("leaf");
            conbool::tls::server_config_from_pem(
                cert.pem().as_bytes(),
                key.serialize_pem().as_bytes(),
                None,
            )
            .expect("server config")
        };
        let ecdsa = server(KeyPair::generate().expect("P-256 key"));
        let rsa_der = pkcs1_to_pkcs8(&pem_contents(RSA_PKCS1_KEY));
        let rsa_key = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(rsa_der),
            &PKCS_RSA_SHA256,
        )
        .expect("RSA key");
        let rsa = server(rsa_key);
        Pki {
            ca_pem: ca_cert.pem(),
            ecdsa,
            rsa,
        }
    }

    fn client(
        &self,
        version: &'static SupportedProtocolVersion,
        resume: bool,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.ca_pem.as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .expect("version")
            .with_root_certificates(roots)
            .with_no_client_auth();
        if !resume {
            config.resumption = Resumption::disabled();
        }
        Arc::new(config)
    }
}

/// The base64 contents of a one-block PEM file, decoded.
fn pem_contents(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in body.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A PKCS#1 `RSAPrivateKey` wrapped as PKCS#8 (RFC 5208), which ring wants.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = contents.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(contents);
        out
    }
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const RSA_ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(RSA_ALG);
    body.extend(der(0x04, pkcs1));
    der(0x30, &body)
}

/// Moves bytes both ways until neither side has anything to send.
fn transfer(client: &mut ClientConnection, server: &mut ServerConnection) {
    let mut buf = Vec::with_capacity(32 * 1024);
    loop {
        let mut moved = false;
        while client.wants_write() {
            buf.clear();
            client.write_tls(&mut buf).expect("client write");
            feed_server(server, &buf);
            moved = true;
        }
        while server.wants_write() {
            buf.clear();
            server.write_tls(&mut buf).expect("server write");
            let mut rest = &buf[..];
            while !rest.is_empty() {
                client.read_tls(&mut rest).expect("client read");
                client.process_new_packets().expect("client process");
            }
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn feed_server(server: &mut ServerConnection, ciphertext: &[u8]) -> usize {
    let mut plain = 0;
    let mut rest = ciphertext;
    let mut sink = [0u8; 16 * 1024];
    while !rest.is_empty() {
        server.read_tls(&mut rest).expect("server read");
        server.process_new_packets().expect("server process");
        loop {
            match server.reader().read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => plain += n,
            }
        }
    }
    plain
}

fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> HandshakeKind {
    let name = ServerName::try_from(NAME).expect("name");
    let mut c = ClientConnection::new(client.clone(), name).expect("client");
    let mut s = ServerConnection::new(server.clone()).expect("server");
    transfer(&mut c, &mut s);
    assert!(!c.is_handshaking() && !s.is_handshaking(), "handshake done");
    s.handshake_kind().expect("kind")
}

fn handshakes(c: &mut Criterion) {
    let pki = Pki::new();
    let mut group = c.benchmark_group("tls_handshake");
    group.throughput(Throughput::Elements(1));
    let versions: [(&str, &'static SupportedProtocolVersion); 2] = [
        ("tls13", &rustls::version::TLS13),
        ("tls12", &rustls::version::TLS12),
    ];
    for (version_name, version) in versions {
        for (key_name, server) in [("ecdsa_p256", &pki.ecdsa), ("rsa2048", &pki.rsa)] {
            let full = pki.client(version, false);
            assert_eq!(handshake(&full, server), HandshakeKind::Full);
            group.bench_function(
                BenchmarkId::new(format!("{version_name}_{key_name}"), "full"),
                |b| b.iter(|| black_box(handshake(&full, server))),
            );
            let resuming = pki.client(version, true);
            handshake(&resuming, server);
            assert_eq!(handshake(&resuming, server), HandshakeKind::Resumed);
            group.bench_function(
                BenchmarkId::new(format!("{version_name}_{key_name}"), "resumed"),
                |b| {
                    b.iter(|| {
                        let kind = handshake(&resuming, server);
                        debug_assert_eq!(kind, HandshakeKind::Resumed);
                        black_box(kind)
                    })
                },
            );
        }
    }
    group.finish();
}

fn records(c: &mut Criterion) {
    let pki = Pki::new();
    let payload: Vec<u8> = (0..RECORD_WRITE).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut group = c.benchmark_group("tls_record");
    group.throughput(Throughput::Bytes(RECORD_WRITE as u64));
    let mut copy = vec![0u8; RECORD_WRITE];
    group.bench_function("memcpy_baseline", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&payload));
            black_box(&copy);
        })
    });
    let versions: [(&str, &'static SupportedProtocolVersion); 2] = [
        ("tls13", &rustls::version::TLS13),
        ("tls12", &rustls::version::TLS12),
    ];
    for (version_name, version) in versions {
        let client_config = pki.client(version, false);
        let name = ServerName::try_from(NAME).expect("name");
        let mut client = ClientConnection::new(client_config, name).expect("client");
        let mut server = ServerConnection::new(pki.ecdsa.clone()).expect("server");
        transfer(&mut client, &mut server);
        // One 64 KiB write is sealed whole, not cut at the default 64 KiB send buffer.
        client.set_buffer_limit(None);
        let suite = client
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        eprintln!("tls_record/{version_name}: {suite}");
        let mut ciphertext = Vec::with_capacity(RECORD_WRITE + 4096);
        group.bench_function(format!("{version_name}_seal_open_64k"), |b| {
            b.iter(|| {
                client.writer().write_all(&payload).expect("write");
                ciphertext.clear();
                while client.wants_write() {
                    client.write_tls(&mut ciphertext).expect("seal");
                }
                let got = feed_server(&mut server, &ciphertext);
                assert_eq!(got, RECORD_WRITE);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, handshakes, records);
criterion_main!(benches);
