//! Names: the server name to verify a next hop against, and which configured names a verified
//! certificate is valid for (`trusted_cert_names`).

use rustls::client::verify_server_name;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::ParsedCertificate;

/// The host part of a `next_hop` (`host:port`, `[v6]:port`, or a bare host): the name to give
/// [`TlsPipe::new_client`](super::TlsPipe::new_client) and to verify the certificate against.
pub fn next_hop_server_name(next_hop: &str) -> &str {
    if let Some(rest) = next_hop.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match next_hop.rsplit_once(':') {
        // Two colons or more without brackets: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => next_hop,
    }
}

/// Parses a server name: a DNS name or an IP address, `[v6]` brackets allowed.
pub(crate) fn server_name(name: &str) -> Option<ServerName<'static>> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(bare.to_owned()).ok()
}

/// The names in `names` that the certificate `leaf` is valid for, in the given order (subject
/// alternative names only, wildcards as RFC 6125 allows; case does not matter). The caller
/// must know the certificate was verified; this checks names, not trust.
pub(crate) fn cert_matches(leaf: &CertificateDer<'_>, names: &[String]) -> Vec<String> {
    let Ok(cert) = ParsedCertificate::try_from(leaf) else {
        return Vec::new();
    };
    names
        .iter()
        .filter(|name| {
            ServerName::try_from(name.as_str())
                .is_ok_and(|server_name| verify_server_name(&cert, &server_name).is_ok())
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testpki::Authority;

    #[test]
    fn next_hop_host_is_split_from_port() {
        const ROWS: &[(&str, &str, &str)] = &[
            ("dns_with_port", "mx.example.com:25", "mx.example.com"),
            ("dns_bare", "mx.example.com", "mx.example.com"),
            ("v4_with_port", "192.0.2.1:2525", "192.0.2.1"),
            ("v6_bracketed", "[2001:db8::1]:25", "2001:db8::1"),
            ("v6_bracketed_no_port", "[2001:db8::1]", "2001:db8::1"),
            ("v6_bare", "2001:db8::1", "2001:db8::1"),
            ("empty", "", ""),
        ];
        for (row, input, want) in ROWS {
            assert_eq!(next_hop_server_name(input), *want, "row {row}");
        }
    }

    #[test]
    fn server_names_parse_dns_and_ip() {
        const ROWS: &[(&str, &str, bool)] = &[
            ("dns", "mail.conbool.com", true),
            ("v4", "192.0.2.1", true),
            ("v6", "2001:db8::1", true),
            ("v6_bracketed", "[2001:db8::1]", true),
            ("empty", "", false),
            ("space", "mail conbool.com", false),
            ("port", "mail.conbool.com:25", false),
        ];
        for (row, input, ok) in ROWS {
            assert_eq!(server_name(input).is_some(), *ok, "row {row}");
        }
    }

    #[test]
    fn cert_names_match_sans_and_wildcards() {
        let root = Authority::root("Names Root");
        let leaf = root.leaf(&["mail.conbool.com", "*.relay.conbool.com"]);
        let names: Vec<String> = [
            "mail.conbool.com",
            "MAIL.Conbool.COM",
            "a.relay.conbool.com",
            "relay.conbool.com",
            "a.b.relay.conbool.com",
            "other.example",
            "not a name",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            cert_matches(leaf.cert_der(), &names),
            [
                "mail.conbool.com",
                "MAIL.Conbool.COM",
                "a.relay.conbool.com"
            ]
        );
        assert!(cert_matches(&CertificateDer::from(&b"junk"[..]), &names).is_empty());
    }
}
