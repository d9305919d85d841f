//! TLS in the reactor: the rustls configurations one relay generation runs on ([`RelayTls`],
//! built once at load and shared by every worker), and [`TlsSocket`], the per-socket state
//! that sits between a socket and a [`TlsPipe`]: ciphertext read but not yet taken by the
//! pipe, and bytes waiting for the socket, both bounded.
//!
//! Deciding *when* to upgrade is the session's job (`Action::StartTlsClient`,
//! `Action::StartTlsDownstream`); this module only moves bytes.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;

use crate::config::{Config, NextHopTls};
use crate::relay::route::TenantId;
use crate::tls::{self, ClientConfig, ServerConfig, TlsError, TlsPipe};

/// Most ciphertext read from a socket and not yet taken by the pipe (the buffer is allocated
/// once, at the first read, and never zeroed again). The pipe stops taking when its received
/// plaintext is at its bound, so the socket stops being read here.
pub const CIPHERTEXT_IN_MAX: usize = 32 * 1024;
/// Bytes waiting for a socket above which no more plaintext is handed to the pipe
/// (backpressure toward the session). One `write_tls` adds at most the pipe's own bound
/// ([`tls::PLAINTEXT_BUFFER_LIMIT`]) plus record overhead on top.
pub const CIPHERTEXT_OUT_HIGH_WATER: usize = 64 * 1024;

/// The TLS configurations of one configuration generation: the server side of `[tls]` and
/// the client side toward each tenant's next hop. Built once per load (start and each
/// SIGHUP) and shared by every worker, so session tickets and the client session caches are
/// shared too.
#[derive(Debug, Default)]
pub struct RelayTls {
    server: Option<Arc<ServerConfig>>,
    next_hops: Vec<Option<Arc<ClientConfig>>>,
    /// Each tenant's `next_hop_tls_name`.
    next_hop_names: Vec<Option<String>>,
    trusted_cert_names: Vec<String>,
}

impl RelayTls {
    /// Builds every configuration `config` asks for: the server side when `[tls]` is there,
    /// and for each tenant whose `next_hop_tls` is not `none` a client side (its
    /// `next_hop_ca` or the system store for `verify`, its `client_cert`/`client_key` when
    /// set, else those of `[tls]` when set). The first file that cannot be used is the error (it names the file and the
    /// tenant).
    pub fn load(config: &Config) -> Result<RelayTls, String> {
        let server = match &config.tls {
            Some(t) => Some(
                tls::server_config_with_sni(&t.cert, &t.key, t.client_ca.as_deref(), &t.sni)
                    .map_err(|e| format!("tls: {e}"))?,
            ),
            None => None,
        };
        let mut next_hops = Vec::with_capacity(config.tenants.len());
        for (i, t) in config.tenants.iter().enumerate() {
            if t.next_hop_tls == NextHopTls::None {
                next_hops.push(None);
                continue;
            }
            let identity = match (&t.client_cert, &t.client_key) {
                (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
                _ => config.tls.as_ref().and_then(|tls| {
                    Some((tls.client_cert.as_deref()?, tls.client_key.as_deref()?))
                }),
            };
            let client = tls::client_config(t.next_hop_tls, t.next_hop_ca.as_deref(), identity)
                .map_err(|e| tenant_error(i, &t.name, &e))?;
            next_hops.push(Some(client));
        }
        let names: BTreeSet<String> = config
            .tenants
            .iter()
            .flat_map(|t| t.trusted_cert_names.iter())
            .map(|n| n.to_ascii_lowercase())
            .collect();
        Ok(RelayTls {
            server,
            next_hops,
            next_hop_names: config
                .tenants
                .iter()
                .map(|t| t.next_hop_tls_name.clone())
                .collect(),
            trusted_cert_names: names.into_iter().collect(),
        })
    }

    /// The server side, when `[tls]` is configured (STARTTLS is offered).
    pub fn server(&self) -> Option<&Arc<ServerConfig>> {
        self.server.as_ref()
    }

    /// The client side toward `tenant`'s next hop (`None` for `next_hop_tls = "none"` or an
    /// unknown tenant).
    pub fn next_hop(&self, tenant: TenantId) -> Option<&Arc<ClientConfig>> {
        self.next_hops.get(tenant.0).and_then(Option::as_ref)
    }

    /// The name TLS toward `tenant`'s next hop `next_hop` (`host:port`) is for: sent as SNI
    /// and, under `verify`, checked against its certificate. The tenant's
    /// `next_hop_tls_name`, else the host part of `next_hop`.
    pub fn next_hop_name<'a>(&'a self, tenant: TenantId, next_hop: &'a str) -> &'a str {
        match self.next_hop_names.get(tenant.0) {
            Some(Some(name)) => name,
            _ => tls::next_hop_server_name(next_hop),
        }
    }

    /// Every tenant's `trusted_cert_names`, lower-cased and without duplicates: what a
    /// client certificate is matched against.
    pub fn trusted_cert_names(&self) -> &[String] {
        &self.trusted_cert_names
    }
}

fn tenant_error(index: usize, name: &str, err: &TlsError) -> String {
    format!("tenant[{index}] ({name}): {err}")
}

/// What one read from the socket did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SocketRead {
    /// Bytes were read, and maybe more are waiting.
    Data(usize),
    /// Bytes were read and the socket had no more (a short read): under edge-triggered
    /// readiness the next event says when more arrive, so no read needs to find `WouldBlock`.
    Drained(usize),
    /// The buffer is full (or EOF was seen already): process it first.
    NoRoom,
    /// Nothing more until the next readiness event.
    WouldBlock,
    /// The peer closed its side, or the socket failed.
    Closed,
}

/// One socket's TLS state: the pipe and the bytes on their way in and out.
#[derive(Debug)]
pub struct TlsSocket {
    /// The TLS connection.
    pub pipe: TlsPipe,
    /// Ciphertext read: `cipher_in[in_start..in_end]` is not yet taken by the pipe.
    cipher_in: Vec<u8>,
    in_start: usize,
    in_end: usize,
    out: Vec<u8>,
    out_pos: usize,
    /// The handshake's end was reported to the session.
    pub started: bool,
    /// The socket reported EOF (or an error).
    pub eof: bool,
}

impl TlsSocket {
    /// Wraps `pipe`; `plaintext_first` goes out before any TLS byte (the `220` to STARTTLS).
    pub fn new(pipe: TlsPipe, plaintext_first: Vec<u8>) -> TlsSocket {
        TlsSocket {
            pipe,
            cipher_in: Vec::new(),
            in_start: 0,
            in_end: 0,
            out: plaintext_first,
            out_pos: 0,
            started: false,
            eof: false,
        }
    }

    /// Reads once from `stream` into the ciphertext buffer, if there is room.
    pub fn read_socket(&mut self, stream: &mut TcpStream) -> SocketRead {
        if self.eof {
            return SocketRead::NoRoom;
        }
        if self.cipher_in.is_empty() {
            self.cipher_in = vec![0; CIPHERTEXT_IN_MAX];
        }
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
        } else if self.in_end == self.cipher_in.len() && self.in_start > 0 {
            self.cipher_in.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
        if self.in_end == self.cipher_in.len() {
            return SocketRead::NoRoom;
        }
        let space = self.cipher_in.len() - self.in_end;
        let r = stream.read(&mut self.cipher_in[self.in_end..]);
        if let Ok(n) = r {
            self.in_end += n;
        }
        match r {
            Ok(0) => {
                self.eof = true;
                SocketRead::Closed
            }
            Ok(n) if n < space => SocketRead::Drained(n),
            Ok(n) => SocketRead::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => SocketRead::WouldBlock,
            // Retried by the caller's loop: progress is still possible.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => SocketRead::Data(0),
            Err(_) => {
                self.eof = true;
                SocketRead::Closed
            }
        }
    }

    /// Hands buffered ciphertext to the pipe; returns whether any was taken.
    pub fn process(&mut self) -> Result<bool, TlsError> {
        if self.in_start == self.in_end {
            return Ok(false);
        }
        let used = self
            .pipe
            .read_tls(&self.cipher_in[self.in_start..self.in_end])?;
        self.in_start += used;
        Ok(used > 0)
    }

    /// No more plaintext can come: the socket is closed (or the peer sent close_notify)
    /// and everything received was processed and read.
    pub fn input_finished(&self) -> bool {
        let drained = self.in_start == self.in_end || self.pipe.peer_closed();
        (self.eof || self.pipe.peer_closed()) && drained && self.pipe.plaintext_ready() == 0
    }

    /// Whether the pipe may take more plaintext now (the outgoing bytes are under their
    /// high-water mark).
    pub fn has_out_room(&self) -> bool {
        self.out.len() - self.out_pos < CIPHERTEXT_OUT_HIGH_WATER
    }

    /// Offers plaintext to the pipe (nothing while the outgoing bytes are over their
    /// high-water mark); returns how much it took.
    pub fn write_plaintext(&mut self, data: &[u8]) -> usize {
        if !self.has_out_room() {
            return 0;
        }
        self.pipe.write_plaintext(data)
    }

    /// Moves the pipe's pending ciphertext into the outgoing bytes (while under the
    /// high-water mark); returns how many bytes.
    pub fn seal(&mut self) -> usize {
        if !self.has_out_room() {
            return 0;
        }
        if self.out_pos > 0 && self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        self.pipe.write_tls(&mut self.out)
    }

    /// Bytes waiting for the socket.
    pub fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes outgoing bytes to `stream`; `Ok(n)` bytes written (0 when it would block).
    pub fn flush(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        let mut total = 0;
        while self.out_pos < self.out.len() {
            match stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        Ok(total)
    }

    /// Queues close_notify (or the alert after a failure) and tries once to send what is
    /// pending, without waiting.
    pub fn goodbye(&mut self, stream: &mut TcpStream, close_notify: bool) {
        if close_notify {
            self.pipe.send_close_notify();
        }
        self.pipe.write_tls(&mut self.out);
        let _ = self.flush(stream);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::Tls;
    use crate::tls::testpki::{TempDir, World};

    #[test]
    fn load_builds_what_the_config_asks_for() {
        let world = World::new();
        let dir = TempDir::new("reactor_relay_tls");
        let cert = dir.write("fullchain.pem", world.server_chain_pem());
        let key = dir.write("key.pem", world.server.key_pem());
        let ca = dir.write("ca.pem", world.root.pem());
        let client_cert = dir.write("client.pem", world.client_chain_pem());
        let client_key = dir.write("client-key.pem", world.client.key_pem());

        let mut config = Config::embedded_defaults();
        let plain = RelayTls::load(&config).expect("no tls");
        assert!(plain.server().is_none());
        assert!(
            plain.next_hop(TenantId(0)).is_some(),
            "opportunistic by default"
        );

        config.tls = Some(Tls {
            cert: cert.clone(),
            key: key.clone(),
            require: false,
            client_ca: None,
            client_cert: None,
            client_key: None,
            reload_check_s: 0,
            sni: Vec::new(),
        });
        let mut second = config.tenants[0].clone();
        second.name = "b.example".into();
        second.next_hop_tls = NextHopTls::None;
        second.trusted_cert_names = vec!["Relay.B.example".into(), "relay.b.example".into()];
        config.tenants[0].next_hop_tls = NextHopTls::Verify;
        config.tenants[0].next_hop_ca = Some(ca);
        config.tenants[0].client_cert = Some(client_cert);
        config.tenants[0].client_key = Some(client_key);
        config.tenants[0].trusted_cert_names = vec!["a.example".into()];
        config.tenants.push(second);
        let mut third = config.tenants[0].clone();
        third.name = "c.example".into();
        third.next_hop_tls = NextHopTls::Require;
        third.next_hop_ca = None;
        third.client_cert = None;
        third.client_key = None;
        third.trusted_cert_names = Vec::new();
        third.next_hop_tls_name = Some("mx.c.example".into());
        config.tenants.push(third);
        let loaded = RelayTls::load(&config).expect("tls");
        assert!(loaded.server().is_some());
        assert!(loaded.next_hop(TenantId(0)).is_some());
        let has_cert = |loaded: &RelayTls, t| {
            loaded
                .next_hop(TenantId(t))
                .is_some_and(|c| c.client_auth_cert_resolver.has_certs())
        };
        assert!(has_cert(&loaded, 0), "its own client certificate");
        assert!(!has_cert(&loaded, 2), "none of its own, no default");
        assert_eq!(
            loaded.next_hop_name(TenantId(0), "127.0.0.1:25"),
            "127.0.0.1"
        );
        assert_eq!(
            loaded.next_hop_name(TenantId(2), "10.0.0.3:25"),
            "mx.c.example"
        );
        // `tls.client_cert` is the default for tenants without their own.
        let mut with_default = config.clone();
        if let Some(tls) = with_default.tls.as_mut() {
            tls.client_cert = with_default.tenants[0].client_cert.clone();
            tls.client_key = with_default.tenants[0].client_key.clone();
        }
        assert!(has_cert(&RelayTls::load(&with_default).expect("tls"), 2));
        assert!(
            loaded.next_hop(TenantId(1)).is_none(),
            "next_hop_tls = none"
        );
        assert!(loaded.next_hop(TenantId(7)).is_none(), "unknown tenant");
        assert_eq!(
            loaded.trusted_cert_names(),
            ["a.example", "relay.b.example"]
        );

        // A broken file is an error naming the file (and the tenant for its files).
        let mut broken = config.clone();
        broken.tenants[0].client_key = Some(PathBuf::from("/nonexistent/key.pem"));
        let err = RelayTls::load(&broken).expect_err("missing key");
        assert!(
            err.starts_with("tenant[0] (example.com): /nonexistent/key.pem"),
            "{err}"
        );
        let mut broken = config;
        broken.tls = Some(Tls {
            cert: key,
            key: cert,
            require: false,
            client_ca: None,
            client_cert: None,
            client_key: None,
            reload_check_s: 0,
            sni: Vec::new(),
        });
        let err = RelayTls::load(&broken).expect_err("swapped");
        assert!(err.starts_with("tls: "), "{err}");
    }
}
