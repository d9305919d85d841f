//! Test-only PKI: rcgen-made CAs, intermediates and leaves, PEM files in a per-test temp dir,
//! and an in-memory wire between two [`TlsPipe`]s.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;

use super::{TlsError, TlsPipe};

/// A CA (root or intermediate) that issues certificates.
pub(crate) struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// An issued end-entity certificate and its key.
pub(crate) struct Leaf {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Authority {
    /// A self-signed root.
    pub(crate) fn root(common_name: &str) -> Authority {
        let key = KeyPair::generate().expect("key");
        let cert = ca_params(common_name).self_signed(&key).expect("root");
        Authority { cert, key }
    }

    /// An intermediate CA signed by this one.
    pub(crate) fn intermediate(&self, common_name: &str) -> Authority {
        let key = KeyPair::generate().expect("key");
        let cert = ca_params(common_name)
            .signed_by(&key, &self.cert, &self.key)
            .expect("intermediate");
        Authority { cert, key }
    }

    /// A leaf for `names`, valid 1975..4096.
    pub(crate) fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(leaf_params(names))
    }

    /// A leaf for `names` that expired in 2001.
    pub(crate) fn expired_leaf(&self, names: &[&str]) -> Leaf {
        let mut params = leaf_params(names);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        self.leaf_with(params)
    }

    fn leaf_with(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf");
        Leaf { cert, key }
    }

    /// The CA certificate as PEM.
    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }
}

impl Leaf {
    /// A self-signed leaf (no CA).
    pub(crate) fn self_signed(names: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let cert = leaf_params(names).self_signed(&key).expect("self-signed");
        Leaf { cert, key }
    }

    /// The certificate alone as PEM.
    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }

    /// The certificate followed by `chain` (intermediates), as PEM.
    pub(crate) fn chain_pem(&self, chain: &[&Authority]) -> String {
        let mut pem = self.cert.pem();
        for ca in chain {
            pem.push_str(&ca.pem());
        }
        pem
    }

    /// The private key as PKCS#8 PEM.
    pub(crate) fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The private key as PKCS#8 DER.
    pub(crate) fn key_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }

    /// The certificate as DER.
    pub(crate) fn cert_der(&self) -> &CertificateDer<'static> {
        self.cert.der()
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).expect("params");
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params
}

/// The certificates most tests use: a server chain root → intermediate → `mail.conbool.com`,
/// and a separate client chain root → intermediate → a client leaf for `mail.conbool.com` (as
/// Exchange expects from the relay) that also carries `relay.tenant.example`.
pub(crate) struct World {
    pub(crate) root: Authority,
    pub(crate) intermediate: Authority,
    pub(crate) server: Leaf,
    pub(crate) client_root: Authority,
    pub(crate) client_intermediate: Authority,
    pub(crate) client: Leaf,
}

impl World {
    pub(crate) fn new() -> World {
        let root = Authority::root("Conbool Test Root");
        let intermediate = root.intermediate("Conbool Test Intermediate");
        let server = intermediate.leaf(&["mail.conbool.com"]);
        let client_root = Authority::root("Conbool Test Client Root");
        let client_intermediate = client_root.intermediate("Conbool Test Client Intermediate");
        let client = client_intermediate.leaf(&["mail.conbool.com", "relay.tenant.example"]);
        World {
            root,
            intermediate,
            server,
            client_root,
            client_intermediate,
            client,
        }
    }

    /// The server's full chain (leaf, intermediate) as PEM.
    pub(crate) fn server_chain_pem(&self) -> String {
        self.server.chain_pem(&[&self.intermediate])
    }

    /// The client's full chain (leaf, intermediate) as PEM.
    pub(crate) fn client_chain_pem(&self) -> String {
        self.client.chain_pem(&[&self.client_intermediate])
    }
}

/// A directory under the system temp dir, unique per test, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("conbool-tls-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    /// Writes `contents` to `name` in the directory and returns its path.
    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write PEM");
        path
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which end failed, and how.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) side: &'static str,
    pub(crate) error: TlsError,
}

/// Moves ciphertext both ways between `client` and `server` until neither has anything to
/// send and nothing is in flight. Plaintext is not read: use it for handshakes and small
/// exchanges (it panics if received plaintext backs up and ciphertext is left over; use
/// [`transfer_on`] then). Panics on livelock (a bounded number of rounds).
pub(crate) fn transfer(client: &mut TlsPipe, server: &mut TlsPipe) -> Result<(), Failure> {
    let mut to_server = Vec::new();
    let mut to_client = Vec::new();
    transfer_on(client, server, &mut to_server, &mut to_client, usize::MAX)?;
    assert!(
        to_server.is_empty() && to_client.is_empty(),
        "transfer: ciphertext left on the wire"
    );
    Ok(())
}

/// [`transfer`] over caller-owned wires (bytes a pipe did not take yet stay on them),
/// delivering at most `chunk` bytes per `read_tls` call.
pub(crate) fn transfer_on(
    client: &mut TlsPipe,
    server: &mut TlsPipe,
    to_server: &mut Vec<u8>,
    to_client: &mut Vec<u8>,
    chunk: usize,
) -> Result<(), Failure> {
    for _ in 0..1_000_000 {
        let moved_c = step(client, server, to_server, chunk).map_err(|error| Failure {
            side: "server",
            error,
        })?;
        let moved_s = step(server, client, to_client, chunk).map_err(|error| Failure {
            side: "client",
            error,
        })?;
        if !moved_c && !moved_s {
            return Ok(());
        }
    }
    panic!("transfer: livelock");
}

/// One hop `from` → `to`: flush `from`'s ciphertext onto the wire, deliver what `to` takes.
/// Whether anything moved.
fn step(
    from: &mut TlsPipe,
    to: &mut TlsPipe,
    wire: &mut Vec<u8>,
    chunk: usize,
) -> Result<bool, TlsError> {
    let written = from.write_tls(wire);
    let end = wire.len().min(chunk);
    if end == 0 {
        return Ok(written > 0);
    }
    let taken = to.read_tls(&wire[..end])?;
    wire.drain(..taken);
    Ok(written > 0 || taken > 0)
}
