//! TLS for both sides of the relay: the server side after a client's `STARTTLS`, the client
//! side after ours toward a next hop. TLS here is just another byte pipe (rustls 0.23 buffered
//! connections): ciphertext from the socket goes in, plaintext comes out into the session's
//! buffer; plaintext from the session goes in, ciphertext comes out for the socket.
//!
//! Owns: building rustls configurations from the PEM files of `[tls]` and `[[tenant]]`
//! ([`server_config`], [`client_config`]), the [`TlsPipe`] that wraps one connection with
//! bounded buffers, and matching a verified client certificate against `trusted_cert_names`
//! ([`TlsPipe::peer_cert_matches`]).
//!
//! Must not touch: sockets or the clock (rustls itself reads the system time to check
//! certificate validity and to rotate ticket keys), SMTP, the relay session.
//!
//! Use, per connection side:
//!
//! ```text
//! at config load:   server_config_with_sni(cert, key, client_ca, sni) / client_config(policy, ca, cert)  (once, shared)
//! after STARTTLS:   TlsPipe::new_server(cfg) / TlsPipe::new_client(cfg, next_hop_server_name(hop))
//! socket readable:  used = pipe.read_tls(&inbound)?     keep inbound[used..] for later
//!                   pipe.read_plaintext(&mut session_buf, room)
//! session output:   taken = pipe.write_plaintext(&pending)   keep pending[taken..] for later
//! every turn:       pipe.write_tls(&mut to_socket)           also after an Err, to flush the alert
//! ```

mod config;
pub mod inspect;
mod names;
mod pipe;
pub mod sni;
#[cfg(test)]
pub(crate) mod testpki;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use config::{
    client_config, server_config, server_config_from_pem, server_config_requiring_client_cert,
    server_config_with_sni,
};
pub use names::next_hop_server_name;
pub use pipe::{TlsPipe, PLAINTEXT_BUFFER_LIMIT};
/// The rustls configuration types the constructors return, re-exported so callers need not
/// name the `rustls` crate.
pub use rustls::{ClientConfig, ServerConfig};

/// A TLS failure: a certificate or key file that cannot be used (naming the file and the
/// problem), an invalid server name, or a handshake or record failure on a live connection.
#[derive(Debug)]
pub struct TlsError {
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    /// A file could not be read.
    Read { path: PathBuf, err: io::Error },
    /// A file is not valid PEM.
    Pem { path: PathBuf, err: io::Error },
    /// A certificate file holds no `CERTIFICATE` block.
    NoCertificates { path: PathBuf },
    /// A key file holds no private key block.
    NoKey { path: PathBuf },
    /// The private key could not be loaded (unsupported type or corrupt).
    Key { path: PathBuf, err: rustls::Error },
    /// The first certificate of a chain cannot be parsed.
    Certificate { path: PathBuf, err: rustls::Error },
    /// The private key is not the key of the chain's first certificate.
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// A certificate in a CA file cannot be a trust anchor.
    TrustAnchor {
        path: PathBuf,
        index: usize,
        err: rustls::Error,
    },
    /// The client-certificate verifier could not be built from a CA file.
    Verifier { path: PathBuf, err: String },
    /// A `[[tls.sni]]` entry without `names` whose certificate holds no DNS name.
    SniNoNames { path: PathBuf },
    /// Two `[[tls.sni]]` entries serve the same name.
    SniDuplicate {
        name: String,
        path: PathBuf,
        other: PathBuf,
    },
    /// rustls refused a configuration (versions, ticket keys).
    Config(rustls::Error),
    /// Not a DNS name or IP address to connect to.
    ServerName { name: String },
    /// The connection failed: the peer's fault, a certificate that did not verify, or an
    /// alert received.
    Protocol(rustls::Error),
}

impl TlsError {
    /// The file the problem is in, for load errors.
    pub fn path(&self) -> Option<&Path> {
        match &self.kind {
            ErrorKind::Read { path, .. }
            | ErrorKind::Pem { path, .. }
            | ErrorKind::NoCertificates { path }
            | ErrorKind::NoKey { path }
            | ErrorKind::Key { path, .. }
            | ErrorKind::Certificate { path, .. }
            | ErrorKind::TrustAnchor { path, .. }
            | ErrorKind::Verifier { path, .. }
            | ErrorKind::SniNoNames { path }
            | ErrorKind::SniDuplicate { path, .. } => Some(path),
            ErrorKind::KeyMismatch { key, .. } => Some(key),
            ErrorKind::Config(_) | ErrorKind::ServerName { .. } | ErrorKind::Protocol(_) => None,
        }
    }

    /// The rustls error of a failed connection (handshake, certificate, record or alert);
    /// `None` for load errors.
    pub fn protocol_error(&self) -> Option<&rustls::Error> {
        match &self.kind {
            ErrorKind::Protocol(err) => Some(err),
            _ => None,
        }
    }

    fn new(kind: ErrorKind) -> TlsError {
        TlsError { kind }
    }

    fn protocol(err: rustls::Error) -> TlsError {
        TlsError::new(ErrorKind::Protocol(err))
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Read { path, err } => write!(f, "{}: cannot read: {err}", path.display()),
            ErrorKind::Pem { path, err } => write!(f, "{}: not valid PEM: {err}", path.display()),
            ErrorKind::NoCertificates { path } => {
                write!(f, "{}: no CERTIFICATE block found", path.display())
            }
            ErrorKind::NoKey { path } => write!(
                f,
                "{}: no private key found (expected a PKCS#8 `PRIVATE KEY`, PKCS#1 \
                 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY` block)",
                path.display()
            ),
            ErrorKind::Key { path, err } => {
                write!(f, "{}: unusable private key: {err}", path.display())
            }
            ErrorKind::Certificate { path, err } => write!(
                f,
                "{}: the first certificate (the server's own) cannot be parsed: {err}",
                path.display()
            ),
            ErrorKind::KeyMismatch { cert, key } => write!(
                f,
                "{}: private key does not match the first certificate in {}",
                key.display(),
                cert.display()
            ),
            ErrorKind::TrustAnchor { path, index, err } => write!(
                f,
                "{}: certificate #{} cannot be used as a trust anchor: {err}",
                path.display(),
                index + 1
            ),
            ErrorKind::Verifier { path, err } => write!(
                f,
                "{}: cannot verify client certificates with these CAs: {err}",
                path.display()
            ),
            ErrorKind::SniNoNames { path } => write!(
                f,
                "{}: the certificate holds no DNS name to serve by SNI; list them in `names`",
                path.display()
            ),
            ErrorKind::SniDuplicate { name, path, other } => write!(
                f,
                "{}: SNI name {name:?} is already served by {}",
                path.display(),
                other.display()
            ),
            ErrorKind::Config(err) => write!(f, "TLS configuration refused: {err}"),
            ErrorKind::ServerName { name } => {
                write!(
                    f,
                    "{name:?} is not a valid TLS server name (DNS name or IP address)"
                )
            }
            ErrorKind::Protocol(err) => write!(f, "TLS failed: {err}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Read { err, .. } | ErrorKind::Pem { err, .. } => Some(err),
            ErrorKind::Key { err, .. }
            | ErrorKind::Certificate { err, .. }
            | ErrorKind::TrustAnchor { err, .. }
            | ErrorKind::Config(err)
            | ErrorKind::Protocol(err) => Some(err),
            _ => None,
        }
    }
}
