//! [`TlsPipe`]: one TLS connection (either side) as a byte pipe with bounded buffers. No
//! socket: the caller moves ciphertext between the pipe and its socket, and plaintext between
//! the pipe and its session.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::BytesMut;
use rustls::{ClientConfig, ClientConnection, Connection, HandshakeKind, ProtocolVersion};
use rustls::{ServerConfig, ServerConnection};

use super::names::{cert_matches, server_name};
use super::{ErrorKind, TlsError};

/// Most plaintext a pipe buffers for sending (before encryption while handshaking, and as
/// ciphertext not yet taken by [`TlsPipe::write_tls`]); [`TlsPipe::write_plaintext`] takes
/// no more. Received plaintext is bounded by rustls (16 KiB plus one record) and
/// [`TlsPipe::read_tls`] stops taking ciphertext until the caller reads it.
pub const PLAINTEXT_BUFFER_LIMIT: usize = 64 * 1024;

/// One TLS connection as a pipe: ciphertext in ([`read_tls`](Self::read_tls)), plaintext out
/// ([`read_plaintext`](Self::read_plaintext)); plaintext in
/// ([`write_plaintext`](Self::write_plaintext)), ciphertext out
/// ([`write_tls`](Self::write_tls)).
///
/// Call order each time the socket is readable or the session has output: `read_tls` with
/// what the socket gave (keep what it did not take), `read_plaintext` into the session's
/// buffer, `write_plaintext` with the session's output (keep what it did not take), then
/// `write_tls` into the socket's output buffer. After `read_tls` fails, call `write_tls` once
/// more to send the alert, then close.
pub struct TlsPipe {
    conn: Connection,
    /// The first failure; every later `read_tls` repeats it.
    error: Option<rustls::Error>,
    /// Decrypted bytes waiting in rustls.
    plaintext_ready: usize,
    /// The peer sent close_notify.
    peer_closed: bool,
    /// We sent close_notify: no more plaintext is taken.
    closing: bool,
}

impl TlsPipe {
    /// The server side of a connection, after the client's `STARTTLS`.
    pub fn new_server(config: Arc<ServerConfig>) -> Result<TlsPipe, TlsError> {
        let conn = ServerConnection::new(config).map_err(TlsError::protocol)?;
        Ok(TlsPipe::new(Connection::Server(conn)))
    }

    /// The client side toward `server_name` (a DNS name or IP address, the host part of
    /// `next_hop`; see [`next_hop_server_name`](super::next_hop_server_name)). The name is sent
    /// as SNI and, with a verifying config, checked against the certificate.
    pub fn new_client(config: Arc<ClientConfig>, server_name: &str) -> Result<TlsPipe, TlsError> {
        let name = self::server_name(server_name).ok_or_else(|| {
            TlsError::new(ErrorKind::ServerName {
                name: server_name.to_owned(),
            })
        })?;
        let conn = ClientConnection::new(config, name).map_err(TlsError::protocol)?;
        Ok(TlsPipe::new(Connection::Client(conn)))
    }

    fn new(mut conn: Connection) -> TlsPipe {
        conn.set_buffer_limit(Some(PLAINTEXT_BUFFER_LIMIT));
        TlsPipe {
            conn,
            error: None,
            plaintext_ready: 0,
            peer_closed: false,
            closing: false,
        }
    }

    /// Takes ciphertext from the peer and processes it; returns how many bytes were taken.
    /// Fewer than offered means received plaintext is at its bound: read it with
    /// [`read_plaintext`](Self::read_plaintext), then offer the rest again. After the peer's
    /// close_notify everything offered is taken and dropped.
    ///
    /// `Err` means the connection is dead (peer misbehaved, its certificate did not verify,
    /// or it sent an alert); [`write_tls`](Self::write_tls) still yields our alert, and
    /// every later call returns the same error.
    pub fn read_tls(&mut self, ciphertext: &[u8]) -> Result<usize, TlsError> {
        if let Some(err) = &self.error {
            return Err(TlsError::protocol(err.clone()));
        }
        let mut rest = ciphertext;
        while !rest.is_empty() {
            if self.peer_closed {
                return Ok(ciphertext.len());
            }
            // Never offer an empty slice: rustls takes a 0-byte read as EOF.
            match self.conn.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                // rustls' received-plaintext bound: backpressure, not a failure.
                Err(err) if err.kind() == io::ErrorKind::Other => break,
                Err(err) => return Err(self.fail(rustls::Error::General(err.to_string()))),
            }
            match self.conn.process_new_packets() {
                Ok(state) => {
                    self.plaintext_ready = state.plaintext_bytes_to_read();
                    self.peer_closed = state.peer_has_closed();
                }
                Err(err) => return Err(self.fail(err)),
            }
        }
        Ok(ciphertext.len() - rest.len())
    }

    /// Appends up to `max` bytes of received plaintext to `out`; returns how many.
    pub fn read_plaintext(&mut self, out: &mut BytesMut, max: usize) -> usize {
        let want = max.min(self.plaintext_ready);
        if want == 0 {
            return 0;
        }
        let start = out.len();
        out.resize(start + want, 0);
        let n = self.read_plaintext_into(&mut out[start..]);
        out.truncate(start + n);
        n
    }

    /// Fills `out` with received plaintext as far as there is some; returns how many bytes.
    pub fn read_plaintext_into(&mut self, out: &mut [u8]) -> usize {
        let want = out.len().min(self.plaintext_ready);
        if want == 0 {
            return 0;
        }
        let n = self.conn.reader().read(&mut out[..want]).unwrap_or(0);
        self.plaintext_ready -= n.min(self.plaintext_ready);
        n
    }

    /// Decrypted bytes ready for [`read_plaintext`](Self::read_plaintext).
    pub fn plaintext_ready(&self) -> usize {
        self.plaintext_ready
    }

    /// Offers plaintext to send; returns how much was taken (at most what fits under
    /// [`PLAINTEXT_BUFFER_LIMIT`]). Keep the rest and offer it again after
    /// [`write_tls`](Self::write_tls) drained the pipe. Plaintext given during the handshake
    /// is sent once it completes. Takes nothing after a failure or
    /// [`send_close_notify`](Self::send_close_notify).
    ///
    /// Bounding the caller's own ciphertext backlog is the caller's part: stop offering while
    /// the socket has not taken what `write_tls` gave it.
    pub fn write_plaintext(&mut self, data: &[u8]) -> usize {
        if self.error.is_some() || self.closing || data.is_empty() {
            return 0;
        }
        self.conn.writer().write(data).unwrap_or(0)
    }

    /// Appends all pending ciphertext (handshake, records, alerts) to `out`; returns how many
    /// bytes.
    pub fn write_tls(&mut self, out: &mut Vec<u8>) -> usize {
        let mut total = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        total
    }

    /// Ciphertext is waiting for [`write_tls`](Self::write_tls).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// The handshake has not finished yet.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The peer sent close_notify: no more plaintext will come.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Queues our close_notify (then call [`write_tls`](Self::write_tls)); no more plaintext
    /// is taken after it.
    pub fn send_close_notify(&mut self) {
        self.closing = true;
        self.conn.send_close_notify();
    }

    /// The failure [`read_tls`](Self::read_tls) reported, if any.
    pub fn error(&self) -> Option<&rustls::Error> {
        self.error.as_ref()
    }

    /// Version and cipher suite once the handshake is done, for `Received:` and logs:
    /// `TLSv1.3:TLS13_AES_256_GCM_SHA384`.
    pub fn description(&self) -> Option<String> {
        if self.conn.is_handshaking() {
            return None;
        }
        let version = match self.conn.protocol_version()? {
            ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
            ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
            other => format!("{other:?}"),
        };
        let suite = self.conn.negotiated_cipher_suite()?.suite();
        let suite = suite
            .as_str()
            .map_or_else(|| format!("{suite:?}"), str::to_owned);
        Some(format!("{version}:{suite}"))
    }

    /// The handshake resumed an earlier session (no certificate exchange).
    pub fn is_resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// Server side: which of `names` the client's verified certificate is valid for
    /// (`trusted_cert_names`). Empty while handshaking, after a failure, when the client sent
    /// no certificate, and always on the client side (where a `require` config does not
    /// verify the chain). On the server side a certificate is only there once the verifier
    /// of [`server_config`](super::server_config) accepted it (directly or in the resumed
    /// session).
    pub fn peer_cert_matches(&self, names: &[String]) -> Vec<String> {
        if !matches!(self.conn, Connection::Server(_))
            || self.conn.is_handshaking()
            || self.error.is_some()
        {
            return Vec::new();
        }
        match self
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
        {
            Some(leaf) => cert_matches(leaf, names),
            None => Vec::new(),
        }
    }

    /// Server side: the client presented a certificate that the verifier accepted (whatever
    /// names it carries). `false` while handshaking, after a failure and on the client side.
    pub fn peer_has_certificate(&self) -> bool {
        matches!(self.conn, Connection::Server(_))
            && !self.conn.is_handshaking()
            && self.error.is_none()
            && self
                .conn
                .peer_certificates()
                .is_some_and(|chain| !chain.is_empty())
    }

    fn fail(&mut self, err: rustls::Error) -> TlsError {
        self.error = Some(err.clone());
        TlsError::protocol(err)
    }
}

impl std::fmt::Debug for TlsPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPipe")
            .field(
                "side",
                &match self.conn {
                    Connection::Client(_) => "client",
                    Connection::Server(_) => "server",
                },
            )
            .field("handshaking", &self.conn.is_handshaking())
            .field("error", &self.error)
            .field("plaintext_ready", &self.plaintext_ready)
            .field("peer_closed", &self.peer_closed)
            .field("closing", &self.closing)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rustls::version::{TLS12, TLS13};
    use rustls::{CertificateError, SupportedProtocolVersion};

    use super::*;
    use crate::tls::config::{build_client, build_server_with, ClientAuth, Pem, Roots, VERSIONS};
    use crate::tls::testpki::{transfer, transfer_on, Authority, Failure, Leaf, World};

    const ONLY_TLS13: &[&SupportedProtocolVersion] = &[&TLS13];
    const ONLY_TLS12: &[&SupportedProtocolVersion] = &[&TLS12];

    fn pem<'a>(label: &'a str, text: &'a str) -> Pem<'a> {
        Pem::new(Path::new(label), text.as_bytes())
    }

    fn server_config(
        chain: &str,
        key: &str,
        auth: ClientAuth<'_>,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Arc<ServerConfig> {
        let config = build_server_with(pem("chain", chain), pem("key", key), auth, versions);
        Arc::new(config.expect("server config"))
    }

    /// The relay's server side for `world`: full chain, optional client certificates.
    fn relay_server(world: &World) -> Arc<ServerConfig> {
        let ca = world.client_root.pem();
        server_config(
            &world.server_chain_pem(),
            &world.server.key_pem(),
            ClientAuth::Optional(pem("client-ca", &ca)),
            VERSIONS,
        )
    }

    fn client_config(
        roots: Roots<'_>,
        identity: Option<(&str, &str)>,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let identity =
            identity.map(|(chain, key)| (pem("client-chain", chain), pem("client-key", key)));
        Arc::new(build_client(roots, identity, versions).expect("client config"))
    }

    fn verifying_client(ca: &str) -> Arc<ClientConfig> {
        client_config(Roots::Pem(pem("ca", ca)), None, VERSIONS)
    }

    fn pair(
        client: &Arc<ClientConfig>,
        name: &str,
        server: &Arc<ServerConfig>,
    ) -> (TlsPipe, TlsPipe) {
        (
            TlsPipe::new_client(client.clone(), name).expect("client pipe"),
            TlsPipe::new_server(server.clone()).expect("server pipe"),
        )
    }

    fn connect(
        client: &Arc<ClientConfig>,
        name: &str,
        server: &Arc<ServerConfig>,
    ) -> Result<(TlsPipe, TlsPipe), Failure> {
        let (mut c, mut s) = pair(client, name, server);
        transfer(&mut c, &mut s)?;
        assert!(
            !c.is_handshaking() && !s.is_handshaking(),
            "handshake stalled"
        );
        Ok((c, s))
    }

    fn cert_error(failure: &Failure) -> Option<&CertificateError> {
        match failure.error.protocol_error() {
            Some(rustls::Error::InvalidCertificate(err)) => Some(err),
            _ => None,
        }
    }

    /// Deterministic bytes that are not all alike (an LCG).
    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn handshake_negotiates_tls13_and_tls12() {
        let world = World::new();
        let server = relay_server(&world);
        let ca = world.root.pem();
        const ROWS: &[(&str, &[&SupportedProtocolVersion], &str)] = &[
            ("both_offered_gives_tls13", VERSIONS, "TLSv1.3:TLS13_"),
            ("only_tls13", ONLY_TLS13, "TLSv1.3:TLS13_"),
            ("only_tls12", ONLY_TLS12, "TLSv1.2:TLS_ECDHE_ECDSA_WITH_"),
        ];
        for (row, versions, prefix) in ROWS {
            let client = client_config(Roots::Pem(pem("ca", &ca)), None, versions);
            let (c, s) = pair(&client, "mail.conbool.com", &server);
            assert!(
                c.description().is_none(),
                "row {row}: no description while handshaking"
            );
            let (mut c, mut s) = (c, s);
            transfer(&mut c, &mut s).unwrap_or_else(|f| panic!("row {row}: {f:?}"));
            let desc = c.description().unwrap_or_default();
            assert!(desc.starts_with(prefix), "row {row}: {desc}");
            assert_eq!(s.description(), c.description(), "row {row}");
            assert!(
                !c.is_resumed() && !s.is_resumed(),
                "row {row}: first handshake is full"
            );
        }
    }

    #[test]
    fn server_limited_to_tls12_negotiates_tls12() {
        let world = World::new();
        let server = server_config(
            &world.server_chain_pem(),
            &world.server.key_pem(),
            ClientAuth::None,
            ONLY_TLS12,
        );
        let client = verifying_client(&world.root.pem());
        let (c, _) = connect(&client, "mail.conbool.com", &server).expect("handshake");
        assert!(c.description().unwrap_or_default().starts_with("TLSv1.2:"));
    }

    /// Sends `a_to_b` from `a` to `b` and `b_to_a` back at once, offering at most `offer`
    /// plaintext bytes per call, reading at most `read_max` per call, and checking that no
    /// buffer grows past its bound.
    fn exchange(
        a: &mut TlsPipe,
        b: &mut TlsPipe,
        a_to_b: &[u8],
        b_to_a: &[u8],
        offer: usize,
        read_max: usize,
        wire_chunk: usize,
    ) -> Exchanged {
        let (mut at_b, mut at_a) = (BytesMut::new(), BytesMut::new());
        let mut backpressure = false;
        let (mut sent_a, mut sent_b) = (0, 0);
        let (mut wire_ab, mut wire_ba) = (Vec::new(), Vec::new());
        // What a reactor does: offer plaintext only while the socket's backlog is low.
        const HIGH_WATER: usize = 32 * 1024;
        let mut rounds = 0;
        while at_b.len() < a_to_b.len() || at_a.len() < b_to_a.len() {
            rounds += 1;
            assert!(rounds < 1_000_000, "exchange: livelock");
            if wire_ab.len() < HIGH_WATER {
                let end = (sent_a + offer).min(a_to_b.len());
                let taken = a.write_plaintext(&a_to_b[sent_a..end]);
                assert!(taken <= PLAINTEXT_BUFFER_LIMIT);
                sent_a += taken;
            }
            if wire_ba.len() < HIGH_WATER {
                let end = (sent_b + offer).min(b_to_a.len());
                sent_b += b.write_plaintext(&b_to_a[sent_b..end]);
            }
            // One hop each way, then drain some plaintext: received plaintext backs up.
            a.write_tls(&mut wire_ab);
            b.write_tls(&mut wire_ba);
            // The backlog stays under the high-water mark plus one buffer of records.
            let bound = HIGH_WATER + PLAINTEXT_BUFFER_LIMIT + 4096;
            assert!(
                wire_ab.len() <= bound,
                "wire a→b unbounded: {}",
                wire_ab.len()
            );
            assert!(
                wire_ba.len() <= bound,
                "wire b→a unbounded: {}",
                wire_ba.len()
            );
            let n = wire_ab.len().min(wire_chunk);
            let used = b.read_tls(&wire_ab[..n]).expect("b reads");
            backpressure |= used < n;
            wire_ab.drain(..used);
            let n = wire_ba.len().min(wire_chunk);
            let used = a.read_tls(&wire_ba[..n]).expect("a reads");
            backpressure |= used < n;
            wire_ba.drain(..used);
            assert!(
                a.plaintext_ready() <= 2 * 16 * 1024 + 1024,
                "a's plaintext unbounded"
            );
            assert!(
                b.plaintext_ready() <= 2 * 16 * 1024 + 1024,
                "b's plaintext unbounded"
            );
            b.read_plaintext(&mut at_b, read_max);
            a.read_plaintext(&mut at_a, read_max);
        }
        Exchanged {
            at_b: at_b.to_vec(),
            at_a: at_a.to_vec(),
            backpressure,
        }
    }

    struct Exchanged {
        /// What `b` received.
        at_b: Vec<u8>,
        /// What `a` received.
        at_a: Vec<u8>,
        /// Some `read_tls` took less than offered (received plaintext was at its bound).
        backpressure: bool,
    }

    #[test]
    fn plaintext_both_ways_is_byte_exact_over_a_mebibyte() {
        let world = World::new();
        let server = relay_server(&world);
        let client = verifying_client(&world.root.pem());
        let up = pattern(1024 * 1024 + 12_345, 1);
        let down = pattern(1024 * 1024 + 777, 2);
        const ROWS: &[(&str, usize, usize, usize, bool)] = &[
            // name, plaintext offered per call, plaintext read per call, wire bytes per
            // read_tls, whether received plaintext must back up
            ("large_offers_small_reads", 1 << 20, 1000, 1 << 20, true),
            ("small_offers_large_reads", 3000, 1 << 20, 1 << 20, false),
            ("odd_wire_chunks", 70_000, 5000, 1111, false),
        ];
        for (row, offer, read_max, wire_chunk, backs_up) in ROWS {
            let (mut c, mut s) = connect(&client, "mail.conbool.com", &server).expect("handshake");
            let got = exchange(&mut c, &mut s, &up, &down, *offer, *read_max, *wire_chunk);
            assert!(got.at_b == up, "row {row}: client → server differs");
            assert!(got.at_a == down, "row {row}: server → client differs");
            if *backs_up {
                assert!(got.backpressure, "row {row}: read_tls never pushed back");
            }
        }
    }

    #[test]
    fn write_plaintext_takes_at_most_the_buffer_limit() {
        let world = World::new();
        let server = relay_server(&world);
        let client = verifying_client(&world.root.pem());
        let data = pattern(3 * PLAINTEXT_BUFFER_LIMIT, 3);
        // While handshaking, plaintext waits unencrypted under the limit.
        let (mut c, mut s) = pair(&client, "mail.conbool.com", &server);
        let taken = c.write_plaintext(&data);
        assert_eq!(taken, PLAINTEXT_BUFFER_LIMIT);
        assert_eq!(c.write_plaintext(&data[taken..]), 0, "full until drained");
        let (mut to_s, mut to_c) = (Vec::new(), Vec::new());
        let mut got = BytesMut::new();
        while got.len() < taken {
            transfer_on(&mut c, &mut s, &mut to_s, &mut to_c, usize::MAX).expect("transfer");
            assert!(
                s.read_plaintext(&mut got, usize::MAX) > 0,
                "stalled at {}",
                got.len()
            );
        }
        assert!(!c.is_handshaking() && to_s.is_empty());
        assert!(got[..] == data[..taken]);
        // After the handshake, ciphertext not yet taken by write_tls counts.
        let taken = c.write_plaintext(&data);
        assert!(taken <= PLAINTEXT_BUFFER_LIMIT && taken > 0, "took {taken}");
        assert_eq!(c.write_plaintext(&data[taken..]), 0, "full until write_tls");
        let mut wire = Vec::new();
        c.write_tls(&mut wire);
        assert!(
            c.write_plaintext(&data[taken..]) > 0,
            "room again after write_tls"
        );
    }

    /// The split gauntlet: the whole conversation delivered at once, a byte at a time, or in
    /// odd chunks gives the same plaintext.
    #[test]
    fn any_delivery_split_gives_the_same_plaintext() {
        let world = World::new();
        let server = relay_server(&world);
        let client = verifying_client(&world.root.pem());
        let up = pattern(40_000, 4);
        let down = pattern(25_000, 5);
        for chunk in [usize::MAX, 1, 2, 7, 4096, 16_389] {
            let (mut c, mut s) = pair(&client, "mail.conbool.com", &server);
            let (mut to_s, mut to_c) = (Vec::new(), Vec::new());
            transfer_on(&mut c, &mut s, &mut to_s, &mut to_c, chunk).expect("handshake");
            assert!(!c.is_handshaking(), "chunk {chunk}");
            let got = exchange(&mut c, &mut s, &up, &down, 10_000, usize::MAX, chunk);
            assert!(got.at_b == up && got.at_a == down, "chunk {chunk}");
        }
    }

    #[test]
    fn verification_failures_end_the_handshake() {
        let world = World::new();
        let server = relay_server(&world);
        let stranger = Authority::root("Stranger Root");
        let expired = world.intermediate.expired_leaf(&["mail.conbool.com"]);
        let expired_chain = expired.chain_pem(&[&world.intermediate]);
        let leaf_only = world.server.pem();
        let root = world.root.pem();
        let stranger_pem = stranger.pem();
        let ok_key = world.server.key_pem();
        let expired_key = expired.key_pem();
        struct Row<'a> {
            name: &'a str,
            server: Arc<ServerConfig>,
            trust: &'a str,
            connect_to: &'a str,
            expect: fn(&CertificateError) -> bool,
        }
        let rows = [
            Row {
                name: "wrong_name",
                server: server.clone(),
                trust: &root,
                connect_to: "other.conbool.com",
                expect: |e| {
                    matches!(
                        e,
                        CertificateError::NotValidForName
                            | CertificateError::NotValidForNameContext { .. }
                    )
                },
            },
            Row {
                name: "expired_leaf",
                server: server_config(&expired_chain, &expired_key, ClientAuth::None, VERSIONS),
                trust: &root,
                connect_to: "mail.conbool.com",
                expect: |e| {
                    matches!(
                        e,
                        CertificateError::Expired | CertificateError::ExpiredContext { .. }
                    )
                },
            },
            Row {
                name: "missing_intermediate",
                server: server_config(&leaf_only, &ok_key, ClientAuth::None, VERSIONS),
                trust: &root,
                connect_to: "mail.conbool.com",
                expect: |e| matches!(e, CertificateError::UnknownIssuer),
            },
            Row {
                name: "unknown_ca",
                server: server.clone(),
                trust: &stranger_pem,
                connect_to: "mail.conbool.com",
                expect: |e| matches!(e, CertificateError::UnknownIssuer),
            },
        ];
        for row in rows {
            let client = verifying_client(row.trust);
            let (mut c, mut s) = pair(&client, row.connect_to, &row.server);
            let failure = transfer(&mut c, &mut s).expect_err(row.name);
            assert_eq!(failure.side, "client", "row {}", row.name);
            let err = cert_error(&failure);
            assert!(
                err.is_some_and(row.expect),
                "row {}: {}",
                row.name,
                failure.error
            );
            assert!(
                c.description().is_none()
                    && c.peer_cert_matches(&["mail.conbool.com".into()]).is_empty()
            );
            // The client still flushes its alert, and the server learns why.
            let mut wire = Vec::new();
            assert!(c.write_tls(&mut wire) > 0, "row {}: alert", row.name);
            let server_err = s.read_tls(&wire).expect_err(row.name);
            assert!(
                matches!(
                    server_err.protocol_error(),
                    Some(rustls::Error::AlertReceived(_))
                ),
                "row {}: {server_err}",
                row.name
            );
            // The failure sticks.
            assert!(
                c.read_tls(b"more").is_err() && c.error().is_some(),
                "row {}",
                row.name
            );
            assert_eq!(c.write_plaintext(b"x"), 0, "row {}", row.name);
        }
    }

    #[test]
    fn required_client_certificate_is_checked() {
        let world = World::new();
        let client_ca = world.client_root.pem();
        let server = server_config(
            &world.server_chain_pem(),
            &world.server.key_pem(),
            ClientAuth::Required(pem("client-ca", &client_ca)),
            VERSIONS,
        );
        let root = world.root.pem();
        let chain = world.client_chain_pem();
        let key = world.client.key_pem();
        for versions in [ONLY_TLS13, ONLY_TLS12] {
            let with_cert =
                client_config(Roots::Pem(pem("ca", &root)), Some((&chain, &key)), versions);
            let (_, s) =
                connect(&with_cert, "mail.conbool.com", &server).expect("with a certificate");
            assert_eq!(
                s.peer_cert_matches(&["mail.conbool.com".into()]),
                ["mail.conbool.com"]
            );

            let without = client_config(Roots::Pem(pem("ca", &root)), None, versions);
            let (mut c, mut s) = pair(&without, "mail.conbool.com", &server);
            let failure = transfer(&mut c, &mut s).expect_err("without a certificate");
            assert_eq!(failure.side, "server", "{}", failure.error);
            assert!(
                matches!(
                    failure.error.protocol_error(),
                    Some(rustls::Error::NoCertificatesPresented)
                ),
                "{}",
                failure.error
            );
        }
    }

    #[test]
    fn optional_client_certificate_serves_clients_without_one() {
        let world = World::new();
        let server = relay_server(&world);
        let root = world.root.pem();
        let trusted_names: Vec<String> = vec![
            "relay.tenant.example".into(),
            "mail.conbool.com".into(),
            "other.example".into(),
        ];

        // No certificate: served, not trusted by certificate.
        let (c, s) =
            connect(&verifying_client(&root), "mail.conbool.com", &server).expect("anonymous");
        assert!(s.peer_cert_matches(&trusted_names).is_empty());
        assert!(!s.peer_has_certificate());
        assert!(
            c.peer_cert_matches(&trusted_names).is_empty(),
            "client side never matches"
        );

        // A certificate from the client CA, sent with its intermediate.
        let chain = world.client_chain_pem();
        let key = world.client.key_pem();
        let with_cert = client_config(Roots::Pem(pem("ca", &root)), Some((&chain, &key)), VERSIONS);
        let (c, s) = connect(&with_cert, "mail.conbool.com", &server).expect("with a certificate");
        assert_eq!(
            s.peer_cert_matches(&trusted_names),
            ["relay.tenant.example", "mail.conbool.com"]
        );
        assert!(s.peer_has_certificate());
        assert!(!c.peer_has_certificate(), "client side never has one");
        assert!(s.peer_cert_matches(&["other.example".into()]).is_empty());
        assert!(s.peer_cert_matches(&[]).is_empty());
        assert!(
            c.peer_cert_matches(&trusted_names).is_empty(),
            "client side never matches"
        );

        // The leaf without its intermediate does not chain to the client CA.
        let leaf_only = world.client.pem();
        let partial = client_config(
            Roots::Pem(pem("ca", &root)),
            Some((&leaf_only, &key)),
            VERSIONS,
        );
        let (mut c, mut s) = pair(&partial, "mail.conbool.com", &server);
        let failure = transfer(&mut c, &mut s).expect_err("leaf without intermediate");
        assert_eq!(failure.side, "server");
        assert!(
            cert_error(&failure).is_some_and(|e| matches!(e, CertificateError::UnknownIssuer)),
            "{}",
            failure.error
        );

        // A certificate from another CA fails the handshake.
        let stranger = Authority::root("Stranger Client Root").leaf(&["mail.conbool.com"]);
        let (spem, skey) = (stranger.pem(), stranger.key_pem());
        let bad = client_config(Roots::Pem(pem("ca", &root)), Some((&spem, &skey)), VERSIONS);
        let (mut c, mut s) = pair(&bad, "mail.conbool.com", &server);
        let failure = transfer(&mut c, &mut s).expect_err("foreign certificate");
        assert_eq!(failure.side, "server");
        assert!(
            cert_error(&failure).is_some_and(|e| matches!(e, CertificateError::UnknownIssuer)),
            "{}",
            failure.error
        );
        assert!(s.peer_cert_matches(&trusted_names).is_empty());
    }

    #[test]
    fn require_mode_encrypts_to_a_self_signed_server() {
        let leaf = Leaf::self_signed(&["next-hop.tenant.example"]);
        let server = server_config(&leaf.pem(), &leaf.key_pem(), ClientAuth::None, VERSIONS);
        let unverified = client_config(Roots::DangerAcceptAny, None, VERSIONS);
        for name in ["next-hop.tenant.example", "some.other.name", "192.0.2.25"] {
            let (mut c, mut s) =
                connect(&unverified, name, &server).unwrap_or_else(|f| panic!("{name}: {f:?}"));
            let got = exchange(
                &mut c,
                &mut s,
                b"EHLO x\r\n",
                b"250 ok\r\n",
                100,
                100,
                usize::MAX,
            );
            assert_eq!(got.at_b, b"EHLO x\r\n", "{name}");
            assert_eq!(got.at_a, b"250 ok\r\n", "{name}");
        }
        // The same server fails verification.
        let verifying = verifying_client(&leaf.pem());
        assert!(connect(&verifying, "other.example", &server).is_err());
    }

    #[test]
    fn danger_verifier_still_checks_handshake_signatures() {
        // A server that presents one certificate but signs with another key: an impostor
        // replaying someone's certificate. `require` does not verify the chain, but it must
        // still refuse a handshake signature that the certificate's key did not make.
        let shown = Leaf::self_signed(&["a.example"]);
        let signer = Leaf::self_signed(&["b.example"]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::try_from(signer.key_der()).expect("key");
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .expect("signing key");
        let certified =
            rustls::sign::CertifiedKey::new(vec![shown.cert_der().clone()], signing_key);
        for versions in [ONLY_TLS13, ONLY_TLS12] {
            let impostor = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .expect("versions")
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                    certified.clone(),
                )));
            let unverified = client_config(Roots::DangerAcceptAny, None, versions);
            let (mut c, mut s) = pair(&unverified, "a.example", &Arc::new(impostor));
            let failure = transfer(&mut c, &mut s).expect_err("impostor");
            assert_eq!(failure.side, "client", "{}", failure.error);
            assert!(
                matches!(
                    failure.error.protocol_error(),
                    Some(rustls::Error::InvalidCertificate(
                        CertificateError::BadSignature
                    ))
                ),
                "{}",
                failure.error
            );
        }
    }

    #[test]
    fn session_resumption_with_the_same_client_config() {
        let world = World::new();
        let server = relay_server(&world);
        let root = world.root.pem();
        let chain = world.client_chain_pem();
        let key = world.client.key_pem();
        for (row, versions) in [("tls13", ONLY_TLS13), ("tls12", ONLY_TLS12)] {
            let client =
                client_config(Roots::Pem(pem("ca", &root)), Some((&chain, &key)), versions);
            let (c1, s1) = connect(&client, "mail.conbool.com", &server).expect("first");
            assert!(!c1.is_resumed() && !s1.is_resumed(), "row {row}");
            let (c2, s2) = connect(&client, "mail.conbool.com", &server).expect("second");
            assert!(
                c2.is_resumed() && s2.is_resumed(),
                "row {row}: second handshake resumes"
            );
            assert_eq!(c2.description(), c1.description(), "row {row}");
            // The client certificate survives resumption.
            assert_eq!(
                s2.peer_cert_matches(&["mail.conbool.com".into()]),
                ["mail.conbool.com"],
                "row {row}"
            );
            // Another config has no session to resume.
            let fresh = client_config(Roots::Pem(pem("ca", &root)), None, versions);
            let (c3, _) = connect(&fresh, "mail.conbool.com", &server).expect("fresh");
            assert!(!c3.is_resumed(), "row {row}");
        }
    }

    #[test]
    fn close_notify_is_seen_and_later_bytes_dropped() {
        let world = World::new();
        let server = relay_server(&world);
        let client = verifying_client(&world.root.pem());
        let (mut c, mut s) = connect(&client, "mail.conbool.com", &server).expect("handshake");
        assert_eq!(c.write_plaintext(b"QUIT\r\n"), 6);
        c.send_close_notify();
        assert_eq!(c.write_plaintext(b"more"), 0, "nothing after close_notify");
        let mut wire = Vec::new();
        c.write_tls(&mut wire);
        wire.extend_from_slice(b"garbage after close");
        assert_eq!(s.read_tls(&wire).expect("close"), wire.len());
        assert!(s.peer_closed());
        let mut got = BytesMut::new();
        assert_eq!(s.read_plaintext(&mut got, 100), 6);
        assert_eq!(&got[..], b"QUIT\r\n");
        assert_eq!(s.read_tls(b"still more").expect("dropped"), 10);
    }

    #[test]
    fn garbage_from_a_client_fails_with_an_alert() {
        let world = World::new();
        let mut s = TlsPipe::new_server(relay_server(&world)).expect("pipe");
        let err = s.read_tls(b"EHLO not.tls\r\n").expect_err("not TLS");
        assert!(err.protocol_error().is_some(), "{err}");
        let mut wire = Vec::new();
        assert!(s.write_tls(&mut wire) > 0, "alert queued");
        assert!(s.read_tls(b"x").is_err());
        assert_eq!(
            s.read_tls(b"").map_err(|e| e.to_string()).err(),
            Some(err.to_string())
        );
    }

    #[test]
    fn invalid_server_names_are_refused() {
        let client = client_config(Roots::DangerAcceptAny, None, VERSIONS);
        for name in ["", "has space", "mx.example.com:25", "[::1"] {
            let err = TlsPipe::new_client(client.clone(), name).expect_err(name);
            assert!(
                err.to_string().contains("not a valid TLS server name"),
                "{name}: {err}"
            );
        }
        for name in [
            "mx.example.com",
            "192.0.2.1",
            "[2001:db8::1]",
            "2001:db8::1",
        ] {
            assert!(TlsPipe::new_client(client.clone(), name).is_ok(), "{name}");
        }
    }
}
