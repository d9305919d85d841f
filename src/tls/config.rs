//! rustls configurations built from PEM files, once per load and shared by every connection
//! (session resumption lives in them): the server side of `[tls]` and the client side of one
//! `[[tenant]]`'s next hop.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, InconsistentKeys, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};

use super::sni::{certificate_sni_names, SniResolver, SniTable};
use super::{ErrorKind, TlsError};
use crate::config::{NextHopTls, SniCert};

/// The protocol versions both sides speak: TLS 1.3 first, TLS 1.2 for older peers.
pub(crate) const VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The server side of `[tls]`: `cert` is the PEM full chain (our certificate first), `key` its
/// private key (PKCS#8, PKCS#1 or SEC1). With `client_ca`, clients are asked for a certificate
/// and one they present must chain to these CAs, or the handshake fails; a client that
/// presents none is still served (it just is not trusted by certificate). TLS 1.2 and 1.3,
/// session tickets and a session cache for resumption.
///
/// A key that does not match the certificate is refused here, naming both files.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let ca_pem = client_ca
        .map(|path| read(path).map(|bytes| (path, bytes)))
        .transpose()?;
    build_server(
        Pem::new(cert, &cert_pem),
        Pem::new(key, &key_pem),
        ca_pem.as_ref().map(|(path, bytes)| Pem::new(path, bytes)),
        VERSIONS,
    )
    .map(Arc::new)
}

/// [`server_config`] with `[[tls.sni]]`: a client asking (by SNI) for a name of one of
/// `sni` gets that entry's chain, one asking for no name or another name gets `cert`. An
/// entry without `names` serves the DNS names of its certificate. Each key must match its
/// certificate, each entry serve a name, and no name be served by two entries.
pub fn server_config_with_sni(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    sni: &[SniCert],
) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let ca_pem = client_ca
        .map(|path| read(path).map(|bytes| (path, bytes)))
        .transpose()?;
    let mut files = Vec::with_capacity(sni.len());
    for entry in sni {
        files.push((read(&entry.cert)?, read(&entry.key)?));
    }
    let entries: Vec<SniPem<'_>> = sni
        .iter()
        .zip(&files)
        .map(|(entry, (cert_bytes, key_bytes))| SniPem {
            names: &entry.names,
            cert: Pem::new(&entry.cert, cert_bytes),
            key: Pem::new(&entry.key, key_bytes),
        })
        .collect();
    let auth = match &ca_pem {
        Some((path, bytes)) => ClientAuth::Optional(Pem::new(path, bytes)),
        None => ClientAuth::None,
    };
    build_server_sni(
        Pem::new(cert, &cert_pem),
        Pem::new(key, &key_pem),
        auth,
        &entries,
        VERSIONS,
    )
    .map(Arc::new)
}

/// [`server_config`] for a server that refuses clients without a certificate chaining to
/// `client_ca` (a next hop such as Exchange's inbound connector; `conbool sink
/// --require-client-cert`). The relay itself never requires one.
pub fn server_config_requiring_client_cert(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let ca_pem = read(client_ca)?;
    build_server_with(
        Pem::new(cert, &cert_pem),
        Pem::new(key, &key_pem),
        ClientAuth::Required(Pem::new(client_ca, &ca_pem)),
        VERSIONS,
    )
    .map(Arc::new)
}

/// [`server_config`] from PEM bytes already in memory; errors name the blocks as
/// `(certificate PEM)`, `(key PEM)` and `(client CA PEM)`.
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, TlsError> {
    build_server(
        Pem::new(Path::new("(certificate PEM)"), cert_pem),
        Pem::new(Path::new("(key PEM)"), key_pem),
        client_ca_pem.map(|bytes| Pem::new(Path::new("(client CA PEM)"), bytes)),
        VERSIONS,
    )
    .map(Arc::new)
}

/// The client side toward one tenant's next hop. Build it once per tenant and reuse it for
/// every connection: it holds the session cache that makes resumption work.
///
/// - [`NextHopTls::Verify`]: the next hop's chain must verify against `ca_file`, or without it
///   the system trust store (`rustls-native-certs`, which honours `SSL_CERT_FILE` and
///   `SSL_CERT_DIR`), or the bundled Mozilla roots when the system store is empty; the name
///   is checked against the one given to [`TlsPipe::new_client`](super::TlsPipe::new_client).
/// - [`NextHopTls::Require`], [`NextHopTls::Opportunistic`] (and [`NextHopTls::None`], which
///   never starts TLS): encrypt without verifying the certificate; handshake signatures are
///   still checked.
///
/// `client_cert` is `(chain, key)`: the chain is sent in full (Exchange's inbound connector
/// identifies us by it).
pub fn client_config(
    policy: NextHopTls,
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let ca_pem = match (policy, ca_file) {
        (NextHopTls::Verify, Some(path)) => Some((path, read(path)?)),
        _ => None,
    };
    let roots = match (policy, &ca_pem) {
        (NextHopTls::Verify, Some((path, bytes))) => Roots::Pem(Pem::new(path, bytes)),
        (NextHopTls::Verify, None) => Roots::System,
        _ => Roots::DangerAcceptAny,
    };
    let cert_pem = client_cert
        .map(|(cert, key)| Ok::<_, TlsError>(((cert, read(cert)?), (key, read(key)?))))
        .transpose()?;
    let identity = cert_pem
        .as_ref()
        .map(|((cert, cert_bytes), (key, key_bytes))| {
            (Pem::new(cert, cert_bytes), Pem::new(key, key_bytes))
        });
    build_client(roots, identity, VERSIONS).map(Arc::new)
}

/// PEM bytes and the file they came from (for error messages).
#[derive(Clone, Copy)]
pub(crate) struct Pem<'a> {
    path: &'a Path,
    bytes: &'a [u8],
}

impl<'a> Pem<'a> {
    pub(crate) fn new(path: &'a Path, bytes: &'a [u8]) -> Pem<'a> {
        Pem { path, bytes }
    }
}

/// Where a client's trust comes from.
pub(crate) enum Roots<'a> {
    /// CA certificates from a PEM file.
    Pem(Pem<'a>),
    /// The system store, else the bundled Mozilla roots.
    System,
    /// Accept any certificate (encryption without authentication).
    DangerAcceptAny,
}

/// How a server treats client certificates.
pub(crate) enum ClientAuth<'a> {
    /// Never ask.
    None,
    /// Ask; verify against these CAs when presented; serve clients without one.
    Optional(Pem<'a>),
    /// Ask and refuse clients without a valid one (`conbool sink --require-client-cert`;
    /// the relay never requires).
    Required(Pem<'a>),
}

pub(crate) fn build_server(
    cert: Pem<'_>,
    key: Pem<'_>,
    client_ca: Option<Pem<'_>>,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<ServerConfig, TlsError> {
    let auth = match client_ca {
        Some(ca) => ClientAuth::Optional(ca),
        None => ClientAuth::None,
    };
    build_server_with(cert, key, auth, versions)
}

pub(crate) fn build_server_with(
    cert: Pem<'_>,
    key: Pem<'_>,
    auth: ClientAuth<'_>,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<ServerConfig, TlsError> {
    build_server_sni(cert, key, auth, &[], versions)
}

/// One `[[tls.sni]]` entry's files in memory: its `names` (empty: the certificate's) and
/// its chain and key.
pub(crate) struct SniPem<'a> {
    pub(crate) names: &'a [String],
    pub(crate) cert: Pem<'a>,
    pub(crate) key: Pem<'a>,
}

/// [`build_server_with`] plus certificates chosen by SNI; `cert`/`key` serve the rest.
pub(crate) fn build_server_sni(
    cert: Pem<'_>,
    key: Pem<'_>,
    auth: ClientAuth<'_>,
    sni: &[SniPem<'_>],
    versions: &[&'static SupportedProtocolVersion],
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let certified = certified_key(cert, key, &provider)?;
    let resolver: Arc<dyn ResolvesServerCert> = if sni.is_empty() {
        Arc::new(SingleCertAndKey::from(certified))
    } else {
        Arc::new(sni_resolver(certified, sni, &provider)?)
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|err| TlsError::new(ErrorKind::Config(err)))?;
    let builder = match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional(ca) => {
            let roots = Arc::new(root_store(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|err| verifier_error(ca, err))?;
            builder.with_client_cert_verifier(verifier)
        }
        ClientAuth::Required(ca) => {
            let roots = Arc::new(root_store(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|err| verifier_error(ca, err))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    // Stateless tickets for TLS 1.2 and 1.3 resumption; the default session cache stays for
    // clients that only resume by session id.
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|err| TlsError::new(ErrorKind::Config(err)))?;
    Ok(config)
}

pub(crate) fn build_client(
    roots: Roots<'_>,
    identity: Option<(Pem<'_>, Pem<'_>)>,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let certified = identity
        .map(|(cert, key)| certified_key(cert, key, &provider))
        .transpose()?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|err| TlsError::new(ErrorKind::Config(err)))?;
    let builder = match roots {
        Roots::Pem(ca) => builder.with_root_certificates(root_store(ca)?),
        Roots::System => builder.with_root_certificates(system_roots()),
        Roots::DangerAcceptAny => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DangerAcceptAnyServerCert {
                algorithms: provider.signature_verification_algorithms,
            })),
    };
    // The default `Resumption` (an in-memory session cache, TLS 1.2 tickets) stays on.
    Ok(match certified {
        Some(certified) => {
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
        None => builder.with_no_client_auth(),
    })
}

/// The system trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), or the bundled
/// Mozilla roots when it yields nothing usable.
pub(crate) fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    store
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|err| {
        TlsError::new(ErrorKind::Read {
            path: path.to_path_buf(),
            err,
        })
    })
}

fn certificates(pem: Pem<'_>) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut &pem.bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            TlsError::new(ErrorKind::Pem {
                path: pem.path.to_path_buf(),
                err,
            })
        })?;
    if certs.is_empty() {
        return Err(TlsError::new(ErrorKind::NoCertificates {
            path: pem.path.to_path_buf(),
        }));
    }
    Ok(certs)
}

fn private_key(pem: Pem<'_>) -> Result<PrivateKeyDer<'static>, TlsError> {
    match rustls_pemfile::private_key(&mut &pem.bytes[..]) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(TlsError::new(ErrorKind::NoKey {
            path: pem.path.to_path_buf(),
        })),
        Err(err) => Err(TlsError::new(ErrorKind::Pem {
            path: pem.path.to_path_buf(),
            err,
        })),
    }
}

/// A chain and its key, checked to belong together.
fn certified_key(
    cert: Pem<'_>,
    key: Pem<'_>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert)?;
    let key_der = private_key(key)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|err| {
            TlsError::new(ErrorKind::Key {
                path: key.path.to_path_buf(),
                err,
            })
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key type cannot report its public half; the handshake will tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::new(ErrorKind::KeyMismatch {
            cert: cert.path.to_path_buf(),
            key: key.path.to_path_buf(),
        })),
        Err(err) => Err(TlsError::new(ErrorKind::Certificate {
            path: cert.path.to_path_buf(),
            err,
        })),
    }
}

/// The resolver of `[[tls.sni]]`: each entry's chain and key must match, each must serve at
/// least one name, and no name may be served twice.
fn sni_resolver(
    default: CertifiedKey,
    sni: &[SniPem<'_>],
    provider: &CryptoProvider,
) -> Result<SniResolver, TlsError> {
    let mut table = SniTable::new();
    let mut owners: Vec<(String, PathBuf)> = Vec::new();
    for entry in sni {
        let certified = Arc::new(certified_key(entry.cert, entry.key, provider)?);
        let names = if entry.names.is_empty() {
            certified
                .end_entity_cert()
                .map(certificate_sni_names)
                .unwrap_or_default()
        } else {
            entry.names.to_vec()
        };
        if names.is_empty() {
            return Err(TlsError::new(ErrorKind::SniNoNames {
                path: entry.cert.path.to_path_buf(),
            }));
        }
        for name in names {
            if table.insert(&name, certified.clone()).is_err() {
                let other = owners
                    .iter()
                    .find(|(taken, _)| *taken == name)
                    .map(|(_, path)| path.clone())
                    .unwrap_or_default();
                return Err(TlsError::new(ErrorKind::SniDuplicate {
                    name,
                    path: entry.cert.path.to_path_buf(),
                    other,
                }));
            }
            owners.push((name, entry.cert.path.to_path_buf()));
        }
    }
    Ok(SniResolver::new(table, Arc::new(default)))
}

/// Every certificate of a CA file as a trust anchor; one that cannot be is an error (a CA
/// file is configuration, so it should be exactly right).
fn root_store(pem: Pem<'_>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for (index, cert) in certificates(pem)?.into_iter().enumerate() {
        store.add(cert).map_err(|err| {
            TlsError::new(ErrorKind::TrustAnchor {
                path: pem.path.to_path_buf(),
                index,
                err,
            })
        })?;
    }
    Ok(store)
}

fn verifier_error(ca: Pem<'_>, err: rustls::server::VerifierBuilderError) -> TlsError {
    TlsError::new(ErrorKind::Verifier {
        path: PathBuf::from(ca.path),
        err: err.to_string(),
    })
}

/// `danger_`: accepts any server certificate (for `require` and `opportunistic`, where the
/// point is encryption, not authentication), but still checks that the handshake was signed
/// by the key in the certificate presented, with the provider's algorithms.
#[derive(Debug)]
struct DangerAcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for DangerAcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testpki::{transfer, Leaf, TempDir, World};
    use crate::tls::TlsPipe;

    const RSA_CERT: &str = include_str!("testdata/rsa-cert.pem");
    const RSA_PKCS1_KEY: &str = include_str!("testdata/rsa-pkcs1-key.pem");
    const EC_CERT: &str = include_str!("testdata/ec-cert.pem");
    const EC_SEC1_KEY: &str = include_str!("testdata/ec-sec1-key.pem");

    fn handshake(
        client: Arc<ClientConfig>,
        name: &str,
        server: Arc<ServerConfig>,
    ) -> Result<(TlsPipe, TlsPipe), String> {
        let mut c = TlsPipe::new_client(client, name).map_err(|e| e.to_string())?;
        let mut s = TlsPipe::new_server(server).map_err(|e| e.to_string())?;
        transfer(&mut c, &mut s).map_err(|f| format!("{}: {}", f.side, f.error))?;
        Ok((c, s))
    }

    #[test]
    fn files_load_into_working_configs_both_ways() {
        let world = World::new();
        let dir = TempDir::new("files_load");
        let cert = dir.write("fullchain.pem", world.server_chain_pem());
        let key = dir.write("key.pem", world.server.key_pem());
        let client_ca = dir.write("clients-ca.pem", world.client_root.pem());
        let ca = dir.write("next-hop-ca.pem", world.root.pem());
        let client_cert = dir.write("client-fullchain.pem", world.client_chain_pem());
        let client_key = dir.write("client-key.pem", world.client.key_pem());

        let server = server_config(&cert, &key, Some(&client_ca)).expect("server config");
        let client = client_config(
            NextHopTls::Verify,
            Some(&ca),
            Some((&client_cert, &client_key)),
        )
        .expect("client config");
        let (c, s) = handshake(client, "mail.conbool.com", server.clone()).expect("handshake");
        assert!(c.description().is_some_and(|d| d.starts_with("TLSv1.3:")));
        assert_eq!(
            s.peer_cert_matches(&["relay.tenant.example".into()]),
            ["relay.tenant.example"]
        );

        // Without a client certificate the same server still serves.
        let anonymous = client_config(NextHopTls::Verify, Some(&ca), None).expect("anonymous");
        let (_, s) = handshake(anonymous, "mail.conbool.com", server.clone()).expect("anonymous");
        assert!(s.peer_cert_matches(&["mail.conbool.com".into()]).is_empty());

        // Without client_ca no certificate is asked for, so none is matched.
        let plain = server_config(&cert, &key, None).expect("no client auth");
        let client = client_config(
            NextHopTls::Verify,
            Some(&ca),
            Some((&client_cert, &client_key)),
        )
        .expect("client config");
        let (_, s) = handshake(client, "mail.conbool.com", plain).expect("handshake");
        assert!(s.peer_cert_matches(&["mail.conbool.com".into()]).is_empty());
    }

    #[test]
    fn sni_picks_the_certificate_by_name_and_falls_back_to_the_default() {
        let world = World::new();
        let dir = TempDir::new("sni_pick");
        let write = |name: &str, leaf: &Leaf| {
            (
                dir.write(
                    &format!("{name}.pem"),
                    leaf.chain_pem(&[&world.intermediate]),
                ),
                dir.write(&format!("{name}-key.pem"), leaf.key_pem()),
            )
        };
        let (cert, key) = write(
            "default",
            &world.intermediate.leaf(&["mail.conbool.com", "127.0.0.1"]),
        );
        let (a_cert, a_key) = write("a", &world.intermediate.leaf(&["mail.example.net"]));
        let (b_cert, b_key) = write("b", &world.intermediate.leaf(&["*.example.org"]));
        let ca = dir.write("ca.pem", world.root.pem());
        let sni = [
            SniCert {
                names: Vec::new(),
                cert: a_cert.clone(),
                key: a_key.clone(),
            },
            SniCert {
                names: vec!["*.example.org".into()],
                cert: b_cert.clone(),
                key: b_key.clone(),
            },
        ];
        let server = server_config_with_sni(&cert, &key, None, &sni).expect("sni config");
        // The client verifies the name it asks for, so a handshake that verifies says which
        // certificate came: only one of the three covers each name.
        const ROWS: &[(&str, &str, bool)] = &[
            ("sni_a", "mail.example.net", true),
            ("sni_a_upper_case", "MAIL.Example.NET", true),
            ("sni_b_wildcard", "www.example.org", true),
            ("sni_default_name", "mail.conbool.com", true),
            ("no_sni_ip_literal", "127.0.0.1", true),
            ("unknown_name_gets_default", "other.example", false),
            ("wildcard_is_one_label", "a.b.example.org", false),
        ];
        for (row, name, verifies) in ROWS {
            let client = client_config(NextHopTls::Verify, Some(&ca), None).expect("client");
            let got = handshake(client, name, server.clone());
            assert_eq!(got.is_ok(), *verifies, "row {row}: {:?}", got.err());
        }

        // Refused at load: a name served twice, an entry without a name, a key mismatch.
        let (ip_cert, ip_key) = write("ip", &world.intermediate.leaf(&["192.0.2.1"]));
        let entry = |names: &[&str], cert: &Path, key: &Path| SniCert {
            names: names.iter().map(|n| n.to_string()).collect(),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        };
        let rows = [
            (
                "duplicate_from_certificate",
                vec![
                    entry(&[], &a_cert, &a_key),
                    entry(&["mail.example.net"], &b_cert, &b_key),
                ],
                b_cert.clone(),
                "SNI name \"mail.example.net\" is already served by",
            ),
            (
                "no_dns_name",
                vec![entry(&[], &ip_cert, &ip_key)],
                ip_cert.clone(),
                "holds no DNS name",
            ),
            (
                "key_mismatch",
                vec![entry(&[], &a_cert, &b_key)],
                b_key.clone(),
                "does not match",
            ),
        ];
        for (row, sni, bad_file, says) in rows {
            let err = server_config_with_sni(&cert, &key, None, &sni).expect_err(row);
            assert!(err.to_string().contains(says), "row {row}: {err}");
            assert_eq!(err.path(), Some(bad_file.as_path()), "row {row}");
        }
    }

    #[test]
    fn key_formats_pkcs8_pkcs1_and_sec1_load() {
        let rcgen_leaf = Leaf::self_signed(&["pkcs8.conbool.test"]);
        let (pkcs8_cert, pkcs8_key) = (rcgen_leaf.pem(), rcgen_leaf.key_pem());
        let rows: &[(&str, &str, &str, &str)] = &[
            ("pkcs8_ecdsa", &pkcs8_cert, &pkcs8_key, "pkcs8.conbool.test"),
            ("pkcs1_rsa", RSA_CERT, RSA_PKCS1_KEY, "rsa.conbool.test"),
            ("sec1_ec", EC_CERT, EC_SEC1_KEY, "ec.conbool.test"),
        ];
        for (row, cert, key, name) in rows {
            let dir = TempDir::new(&format!("key_formats_{row}"));
            let cert_path = dir.write("cert.pem", cert);
            let key_path = dir.write("key.pem", key);
            let server = server_config(&cert_path, &key_path, None)
                .unwrap_or_else(|e| panic!("row {row}: {e}"));
            // As a client identity too.
            client_config(NextHopTls::Require, None, Some((&cert_path, &key_path)))
                .unwrap_or_else(|e| panic!("row {row}: {e}"));
            let client = client_config(NextHopTls::Require, None, None).expect("client");
            handshake(client, name, server).unwrap_or_else(|e| panic!("row {row}: {e}"));
        }
    }

    #[test]
    fn key_cert_mismatch_is_refused_at_load_naming_the_files() {
        let world = World::new();
        let dir = TempDir::new("key_mismatch");
        let cert = dir.write("fullchain.pem", world.server_chain_pem());
        let wrong_key = dir.write("client-key.pem", world.client.key_pem());
        let rsa_key = dir.write("rsa-key.pem", RSA_PKCS1_KEY);
        for key in [&wrong_key, &rsa_key] {
            let err = server_config(&cert, key, None).expect_err("mismatch");
            let text = err.to_string();
            assert!(text.contains("does not match"), "{text}");
            assert!(text.contains(&*key.to_string_lossy()), "{text}");
            assert!(text.contains(&*cert.to_string_lossy()), "{text}");
            assert_eq!(err.path(), Some(key.as_path()));

            let err = client_config(NextHopTls::Verify, None, Some((&cert, key)))
                .expect_err("client mismatch");
            assert!(err.to_string().contains("does not match"), "{err}");
        }
    }

    #[test]
    fn load_errors_name_the_file_and_the_problem() {
        let world = World::new();
        let dir = TempDir::new("load_errors");
        let chain = dir.write("fullchain.pem", world.server_chain_pem());
        let key = dir.write("key.pem", world.server.key_pem());
        let missing = dir.path().join("missing.pem");
        let empty = dir.write("empty.pem", "");
        let key_only = dir.write("key-only.pem", world.server.key_pem());
        let junk_cert = dir.write(
            "junk-cert.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let broken_pem = dir.write(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
        );
        let junk_key = dir.write(
            "junk-key.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        struct Row<'a> {
            name: &'a str,
            cert: &'a Path,
            key: &'a Path,
            ca: Option<&'a Path>,
            bad_file: &'a Path,
            says: &'a str,
        }
        let rows = [
            Row {
                name: "missing_cert",
                cert: &missing,
                key: &key,
                ca: None,
                bad_file: &missing,
                says: "cannot read",
            },
            Row {
                name: "missing_key",
                cert: &chain,
                key: &missing,
                ca: None,
                bad_file: &missing,
                says: "cannot read",
            },
            Row {
                name: "missing_ca",
                cert: &chain,
                key: &key,
                ca: Some(&missing),
                bad_file: &missing,
                says: "cannot read",
            },
            Row {
                name: "empty_cert",
                cert: &empty,
                key: &key,
                ca: None,
                bad_file: &empty,
                says: "no CERTIFICATE block",
            },
            Row {
                name: "key_as_cert",
                cert: &key_only,
                key: &key,
                ca: None,
                bad_file: &key_only,
                says: "no CERTIFICATE block",
            },
            Row {
                name: "empty_key",
                cert: &chain,
                key: &empty,
                ca: None,
                bad_file: &empty,
                says: "no private key",
            },
            Row {
                name: "cert_as_key",
                cert: &chain,
                key: &chain,
                ca: None,
                bad_file: &chain,
                says: "no private key",
            },
            Row {
                name: "junk_cert",
                cert: &junk_cert,
                key: &key,
                ca: None,
                bad_file: &junk_cert,
                says: "cannot be parsed",
            },
            Row {
                name: "broken_pem",
                cert: &broken_pem,
                key: &key,
                ca: None,
                bad_file: &broken_pem,
                says: "not valid PEM",
            },
            Row {
                name: "junk_key",
                cert: &chain,
                key: &junk_key,
                ca: None,
                bad_file: &junk_key,
                says: "unusable private key",
            },
            Row {
                name: "empty_ca",
                cert: &chain,
                key: &key,
                ca: Some(&empty),
                bad_file: &empty,
                says: "no CERTIFICATE block",
            },
            Row {
                name: "junk_ca",
                cert: &chain,
                key: &key,
                ca: Some(&junk_cert),
                bad_file: &junk_cert,
                says: "certificate #1 cannot be used as a trust anchor",
            },
        ];
        for row in rows {
            let err = server_config(row.cert, row.key, row.ca).expect_err(row.name);
            let text = err.to_string();
            assert!(text.contains(row.says), "row {}: {text}", row.name);
            assert!(
                text.starts_with(&*row.bad_file.to_string_lossy()),
                "row {}: {text}",
                row.name
            );
            assert_eq!(err.path(), Some(row.bad_file), "row {}", row.name);
        }
        let err = client_config(NextHopTls::Verify, Some(&missing), None).expect_err("ca");
        assert_eq!(err.path(), Some(missing.as_path()));
        let err = client_config(NextHopTls::Verify, Some(&key_only), None).expect_err("ca");
        assert!(err.to_string().contains("no CERTIFICATE block"), "{err}");
        // The CA file only matters for `verify`.
        assert!(client_config(NextHopTls::Require, Some(&missing), None).is_ok());
    }

    #[test]
    fn pem_in_memory_errors_use_labels() {
        let err = server_config_from_pem(b"", b"", None).expect_err("empty");
        assert_eq!(
            err.to_string(),
            "(certificate PEM): no CERTIFICATE block found"
        );
        let world = World::new();
        let chain = world.server_chain_pem();
        let key = world.server.key_pem();
        let ca = world.client_root.pem();
        assert!(
            server_config_from_pem(chain.as_bytes(), key.as_bytes(), Some(ca.as_bytes())).is_ok()
        );
        let err =
            server_config_from_pem(chain.as_bytes(), key.as_bytes(), Some(b"")).expect_err("ca");
        assert!(err.to_string().starts_with("(client CA PEM): "), "{err}");
    }

    #[test]
    fn every_policy_builds_a_client_config() {
        for policy in [
            NextHopTls::None,
            NextHopTls::Opportunistic,
            NextHopTls::Require,
            NextHopTls::Verify,
        ] {
            client_config(policy, None, None).unwrap_or_else(|e| panic!("{policy:?}: {e}"));
        }
        assert!(!system_roots().is_empty(), "system store or bundled roots");
    }

    #[test]
    fn verify_with_system_roots_refuses_a_private_ca() {
        let world = World::new();
        let dir = TempDir::new("system_roots");
        let cert = dir.write("fullchain.pem", world.server_chain_pem());
        let key = dir.write("key.pem", world.server.key_pem());
        let server = server_config(&cert, &key, None).expect("server");
        let client = client_config(NextHopTls::Verify, None, None).expect("client");
        let err = handshake(client, "mail.conbool.com", server).expect_err("private CA");
        assert!(err.starts_with("client: "), "{err}");
    }
}
