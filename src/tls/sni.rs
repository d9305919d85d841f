//! Several server certificates chosen by the name a client asks for (SNI, RFC 6066 §3): the
//! `[[tls.sni]]` entries, with the `[tls]` certificate for clients that ask for no name or
//! for one no entry has.
//!
//! Owns: the name syntax an entry may list ([`sni_name`]), the names an entry serves when it
//! lists none (the DNS names of its certificate, [`certificate_sni_names`]), the lookup
//! ([`SniTable`]: exact name first, then a one-label wildcard, case-insensitive) and the
//! rustls resolver built on it ([`SniResolver`]).
//!
//! Must not touch: files (the caller reads them), sockets, the clock.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, DnsName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::inspect::CertInfo;

/// The longest name a client may ask for (RFC 1035 §2.3.4); longer ones get the default
/// certificate without a lookup.
pub const MAX_SNI_NAME_BYTES: usize = 253;

/// A name an `[[tls.sni]]` entry serves, checked and lower-cased: a DNS name
/// (`mail.example.net`), or `*.` and a DNS name of two labels or more (`*.example.org`: any
/// one label in front of `example.org`, not `example.org` itself, not `a.b.example.org`).
/// IP addresses are refused: clients never send them as SNI (RFC 6066 §3).
pub fn sni_name(name: &str) -> Result<String, &'static str> {
    let lower = name.to_ascii_lowercase();
    let (wildcard, base) = match lower.strip_prefix("*.") {
        Some(base) => (true, base),
        None => (false, lower.as_str()),
    };
    if base.is_empty() {
        return Err("empty name");
    }
    if base.len() > MAX_SNI_NAME_BYTES {
        return Err("longer than 253 bytes");
    }
    if base.contains('*') {
        return Err("a wildcard may only be the whole first label (`*.example.org`)");
    }
    if base.ends_with('.') {
        return Err("ends with a dot; clients send names without it");
    }
    if base.parse::<IpAddr>().is_ok() {
        return Err("an IP address; clients only send DNS names as SNI");
    }
    if DnsName::try_from(base).is_err() {
        return Err("not a valid DNS name");
    }
    if wildcard && !base.contains('.') {
        return Err("a wildcard needs at least two labels after `*.`");
    }
    Ok(lower)
}

/// The names an entry without `names` serves: the DNS names in its certificate's subject
/// alternative names that [`sni_name`] accepts, lower-cased, without duplicates, in order.
pub fn certificate_sni_names(leaf: &CertificateDer<'_>) -> Vec<String> {
    let Ok(info) = CertInfo::parse(leaf) else {
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    for name in info.dns_names.iter().filter_map(|n| sni_name(n).ok()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Whether `leaf` is valid for `name` (of [`sni_name`]'s syntax): for `*.example.org`,
/// whether it is valid for any one label in front of `example.org`.
pub fn certificate_covers(leaf: &CertificateDer<'_>, name: &str) -> bool {
    let probe = match name.strip_prefix("*.") {
        Some(base) => format!("sni-probe.{base}"),
        None => name.to_string(),
    };
    !super::names::cert_matches(leaf, &[probe]).is_empty()
}

/// Names to entries: each name of [`sni_name`]'s syntax maps to one `T`.
#[derive(Clone, Debug)]
pub struct SniTable<T> {
    exact: HashMap<String, T>,
    /// `*.example.org` is kept as `example.org`.
    wildcard: HashMap<String, T>,
}

impl<T> Default for SniTable<T> {
    fn default() -> Self {
        SniTable {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T> SniTable<T> {
    /// An empty table.
    pub fn new() -> SniTable<T> {
        SniTable::default()
    }

    /// Adds `name` (already checked by [`sni_name`], so lower-case) for `value`; gives
    /// `value` back when the name is taken.
    pub fn insert(&mut self, name: &str, value: T) -> Result<(), T> {
        let (map, key) = match name.strip_prefix("*.") {
            Some(base) => (&mut self.wildcard, base),
            None => (&mut self.exact, name),
        };
        if map.contains_key(key) {
            return Err(value);
        }
        map.insert(key.to_string(), value);
        Ok(())
    }

    /// The entry for the name a client asked for: the exact name, else the wildcard of its
    /// parent (`a.example.org` → `*.example.org`), else none. Case does not matter.
    pub fn lookup(&self, asked: &str) -> Option<&T> {
        if asked.is_empty() || asked.len() > MAX_SNI_NAME_BYTES {
            return None;
        }
        let lower;
        let asked = if asked.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = asked.to_ascii_lowercase();
            lower.as_str()
        } else {
            asked
        };
        if let Some(found) = self.exact.get(asked) {
            return Some(found);
        }
        let (first, parent) = asked.split_once('.')?;
        if first.is_empty() {
            return None;
        }
        self.wildcard.get(parent)
    }

    /// Whether no name is in the table.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }
}

/// A rustls certificate resolver: the certificate of the `[[tls.sni]]` entry naming what the
/// client asked for, else the default one.
pub struct SniResolver {
    table: SniTable<Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// A resolver serving `default` unless `table` has the name asked for.
    pub fn new(table: SniTable<Arc<CertifiedKey>>, default: Arc<CertifiedKey>) -> SniResolver {
        SniResolver { table, default }
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<String> = self.table.exact.keys().cloned().collect();
        names.extend(self.table.wildcard.keys().map(|k| format!("*.{k}")));
        names.sort();
        f.debug_struct("SniResolver")
            .field("names", &names)
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = client_hello
            .server_name()
            .and_then(|name| self.table.lookup(name))
            .unwrap_or(&self.default);
        Some(chosen.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testpki::Authority;

    #[test]
    fn lookup_prefers_exact_then_one_label_wildcard_ignoring_case() {
        let mut table = SniTable::new();
        for (name, entry) in [
            ("mail.example.net", "A"),
            ("*.example.org", "B"),
            ("mx.example.org", "C"),
            ("*.deep.example.org", "D"),
        ] {
            table.insert(name, entry).expect(name);
        }
        const ROWS: &[(&str, &str, Option<&str>)] = &[
            ("exact", "mail.example.net", Some("A")),
            ("exact_upper_case", "MAIL.Example.NET", Some("A")),
            ("exact_not_wildcard_parent", "example.net", None),
            ("exact_no_subdomain", "x.mail.example.net", None),
            ("wildcard_one_label", "www.example.org", Some("B")),
            ("wildcard_upper_case", "WWW.EXAMPLE.ORG", Some("B")),
            ("exact_beats_wildcard", "mx.example.org", Some("C")),
            ("exact_beats_wildcard_any_case", "Mx.Example.Org", Some("C")),
            ("wildcard_not_bare_parent", "example.org", None),
            ("wildcard_not_two_labels", "a.b.example.org", None),
            ("deeper_wildcard", "a.deep.example.org", Some("D")),
            (
                "deeper_wildcard_is_own_entry",
                "deep.example.org",
                Some("B"),
            ),
            ("empty_first_label", ".example.org", None),
            ("empty", "", None),
            ("unknown", "other.example", None),
            ("single_label", "localhost", None),
        ];
        for (row, asked, want) in ROWS {
            assert_eq!(table.lookup(asked).copied(), *want, "row {row}");
        }
        let long = format!("{}.example.org", "a".repeat(250));
        assert_eq!(table.lookup(&long), None, "too long");
    }

    #[test]
    fn a_taken_name_is_refused() {
        let mut table = SniTable::new();
        assert!(table.insert("mail.example.net", 1).is_ok());
        assert!(table.insert("*.example.net", 2).is_ok());
        assert_eq!(table.insert("mail.example.net", 3), Err(3));
        assert_eq!(table.insert("*.example.net", 4), Err(4));
        assert!(!table.is_empty());
        assert!(SniTable::<u8>::new().is_empty());
    }

    #[test]
    fn names_are_checked_and_lower_cased() {
        const ROWS: &[(&str, &str, Result<&str, &str>)] = &[
            ("dns", "mail.example.net", Ok("mail.example.net")),
            ("upper", "Mail.Example.NET", Ok("mail.example.net")),
            ("single_label", "localhost", Ok("localhost")),
            ("wildcard", "*.Example.org", Ok("*.example.org")),
            ("empty", "", Err("empty")),
            ("wildcard_alone", "*.", Err("empty")),
            ("wildcard_tld", "*.org", Err("two labels")),
            ("partial_wildcard", "w*.example.org", Err("wildcard")),
            ("inner_wildcard", "*.*.example.org", Err("wildcard")),
            ("trailing_dot", "mail.example.net.", Err("dot")),
            ("ipv4", "192.0.2.1", Err("IP address")),
            ("ipv6", "2001:db8::1", Err("IP address")),
            ("space", "mail example.net", Err("DNS name")),
            ("underscore_ok", "_srv.example.net", Ok("_srv.example.net")),
        ];
        for (row, input, want) in ROWS {
            match (sni_name(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "row {row}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "row {row}: {got}"),
                (got, want) => panic!("row {row}: got {got:?}, want {want:?}"),
            }
        }
        assert!(sni_name(&format!("{}.net", "a.".repeat(130))).is_err());
    }

    #[test]
    fn certificate_names_are_its_dns_names() {
        let root = Authority::root("SNI Root");
        let leaf = root.leaf(&[
            "Mail.Example.net",
            "*.example.org",
            "192.0.2.1",
            "mail.example.net",
        ]);
        assert_eq!(
            certificate_sni_names(leaf.cert_der()),
            ["mail.example.net", "*.example.org"]
        );
        assert!(certificate_sni_names(&CertificateDer::from(&b"junk"[..])).is_empty());
        const COVERS: &[(&str, &str, bool)] = &[
            ("exact", "mail.example.net", true),
            ("wildcard_in_cert", "*.example.org", true),
            ("name_under_wildcard", "www.example.org", true),
            ("other", "other.example.net", false),
            ("wildcard_not_in_cert", "*.example.net", false),
        ];
        for (row, name, want) in COVERS {
            assert_eq!(
                certificate_covers(leaf.cert_der(), name),
                *want,
                "row {row}"
            );
        }
    }
}
