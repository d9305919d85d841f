//! What `conbool check` (and a log line at load) needs to know about a certificate, read
//! straight from its DER: subject and issuer (raw, for chaining, and their common names, for
//! people), validity, whether it is a CA, its extended key usages, and whether another
//! certificate's key signed it. A small DER walker, no new dependency; anything it cannot
//! read is an error naming what, never a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One certificate, as far as chain checks need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject `Name`, DER contents (without its outer SEQUENCE tag).
    pub subject: Vec<u8>,
    /// The issuer `Name`, DER contents.
    pub issuer: Vec<u8>,
    /// The subject's common name, or the whole name in hex when it has none.
    pub subject_cn: String,
    /// The issuer's common name (same fallback).
    pub issuer_cn: String,
    /// `notBefore`.
    pub not_before: SystemTime,
    /// `notAfter`.
    pub not_after: SystemTime,
    /// basicConstraints says `cA = TRUE`.
    pub is_ca: bool,
    /// The extended key usage extension is present.
    pub has_eku: bool,
    /// It lists serverAuth (or anyExtendedKeyUsage).
    pub eku_server: bool,
    /// It lists clientAuth (or anyExtendedKeyUsage).
    pub eku_client: bool,
    /// The DNS names of its subject alternative names, as written (wildcards included).
    pub dns_names: Vec<String>,
    /// The signed part (`tbsCertificate`, with its tag), the signature algorithm and the
    /// signature, for [`CertInfo::is_signed_by`].
    tbs: Vec<u8>,
    signature: Vec<u8>,
    /// The subject public key (BIT STRING contents without the unused-bits byte).
    public_key: Vec<u8>,
}

impl CertInfo {
    /// Reads the fields above from a DER certificate.
    pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
        let (cert, _) = expect(der, SEQUENCE, "certificate")?;
        let (tbs_contents, rest) = expect(cert, SEQUENCE, "tbsCertificate")?;
        let tbs = cert[..cert.len() - rest.len()].to_vec();
        let (_sig_alg, rest) = expect(rest, SEQUENCE, "signatureAlgorithm")?;
        let (sig_bits, _) = expect(rest, BIT_STRING, "signature")?;
        let signature = sig_bits.get(1..).unwrap_or_default().to_vec();

        let mut r = tbs_contents;
        if r.first() == Some(&VERSION) {
            r = tlv(r).ok_or("version")?.2;
        }
        let (_, r) = expect(r, INTEGER, "serialNumber")?;
        let (_, r) = expect(r, SEQUENCE, "signature")?;
        let (issuer, r) = expect(r, SEQUENCE, "issuer")?;
        let (validity, r) = expect(r, SEQUENCE, "validity")?;
        let (subject, r) = expect(r, SEQUENCE, "subject")?;
        let (spki, mut r) = expect(r, SEQUENCE, "subjectPublicKeyInfo")?;
        let (_, spki_rest) = expect(spki, SEQUENCE, "algorithm")?;
        let (key_bits, _) = expect(spki_rest, BIT_STRING, "subjectPublicKey")?;

        let (nb_tag, nb, after) = tlv(validity).ok_or("notBefore")?;
        let (na_tag, na, _) = tlv(after).ok_or("notAfter")?;
        let not_before = time(nb_tag, nb).ok_or("notBefore: not a valid time")?;
        let not_after = time(na_tag, na).ok_or("notAfter: not a valid time")?;

        let mut info = CertInfo {
            subject: subject.to_vec(),
            issuer: issuer.to_vec(),
            subject_cn: common_name(subject),
            issuer_cn: common_name(issuer),
            not_before,
            not_after,
            is_ca: false,
            has_eku: false,
            eku_server: false,
            eku_client: false,
            dns_names: Vec::new(),
            tbs,
            signature,
            public_key: key_bits.get(1..).unwrap_or_default().to_vec(),
        };
        while let Some((tag, contents, rest)) = tlv(r) {
            if tag == EXTENSIONS {
                let (list, _) = expect(contents, SEQUENCE, "extensions")?;
                info.read_extensions(list)?;
            }
            r = rest;
        }
        Ok(info)
    }

    /// Whether `issuer`'s key made this certificate's signature (with any algorithm the ring
    /// provider verifies).
    pub fn is_signed_by(&self, issuer: &CertInfo) -> bool {
        let provider = rustls::crypto::ring::default_provider();
        provider
            .signature_verification_algorithms
            .all
            .iter()
            .any(|alg| {
                alg.verify_signature(&issuer.public_key, &self.tbs, &self.signature)
                    .is_ok()
            })
    }

    /// Issuer and subject are the same name (a root, or a self-signed leaf).
    pub fn is_self_issued(&self) -> bool {
        self.subject == self.issuer
    }

    /// Whole days from `now` until `notAfter` (negative once expired).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        match self.not_after.duration_since(now) {
            Ok(d) => (d.as_secs() / 86_400) as i64,
            Err(e) => -(e.duration().as_secs().div_ceil(86_400) as i64),
        }
    }

    fn read_extensions(&mut self, mut list: &[u8]) -> Result<(), String> {
        while !list.is_empty() {
            let (ext, rest) = expect(list, SEQUENCE, "extension")?;
            list = rest;
            let (oid, mut body) = expect(ext, OID, "extnID")?;
            if body.first() == Some(&BOOLEAN) {
                body = tlv(body).ok_or("critical")?.2;
            }
            let (value, _) = expect(body, OCTET_STRING, "extnValue")?;
            match oid {
                OID_BASIC_CONSTRAINTS => {
                    let (bc, _) = expect(value, SEQUENCE, "basicConstraints")?;
                    if let Some((BOOLEAN, flag, _)) = tlv(bc) {
                        self.is_ca = flag.first().is_some_and(|b| *b != 0);
                    }
                }
                OID_EXT_KEY_USAGE => {
                    self.has_eku = true;
                    let (mut usages, _) = expect(value, SEQUENCE, "extKeyUsage")?;
                    while let Some((_, usage, rest)) = tlv(usages) {
                        match usage {
                            OID_SERVER_AUTH => self.eku_server = true,
                            OID_CLIENT_AUTH => self.eku_client = true,
                            OID_ANY_EKU => {
                                self.eku_server = true;
                                self.eku_client = true;
                            }
                            _ => {}
                        }
                        usages = rest;
                    }
                }
                OID_SUBJECT_ALT_NAME => {
                    let (mut names, _) = expect(value, SEQUENCE, "subjectAltName")?;
                    while let Some((tag, name, rest)) = tlv(names) {
                        if tag == DNS_NAME {
                            self.dns_names
                                .push(String::from_utf8_lossy(name).into_owned());
                        }
                        names = rest;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The subjects (DER `Name` contents, as in [`CertInfo::subject`]) of the trust anchors the
/// relay verifies next hops against without `next_hop_ca`: the system store, else the
/// bundled Mozilla roots.
pub fn system_root_subjects() -> Vec<Vec<u8>> {
    super::config::system_roots()
        .roots
        .iter()
        .map(|anchor| anchor.subject.as_ref().to_vec())
        .collect()
}

/// A UTC date for people: `2026-03-01`.
pub fn date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xA0;
const EXTENSIONS: u8 = 0xA3;
/// 2.5.4.3 commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// 2.5.29.19 basicConstraints.
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1D, 0x13];
/// 2.5.29.17 subjectAltName.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1D, 0x11];
/// GeneralName `dNSName [2] IA5String` (implicit, primitive).
const DNS_NAME: u8 = 0x82;
/// 2.5.29.37 extKeyUsage.
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1D, 0x25];
/// 1.3.6.1.5.5.7.3.1 id-kp-serverAuth.
const OID_SERVER_AUTH: &[u8] = &[0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// 1.3.6.1.5.5.7.3.2 id-kp-clientAuth.
const OID_CLIENT_AUTH: &[u8] = &[0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
/// 2.5.29.37.0 anyExtendedKeyUsage.
const OID_ANY_EKU: &[u8] = &[0x55, 0x1D, 0x25, 0x00];

/// One DER element: tag, contents, what follows. Single-byte tags, definite lengths up to
/// four length bytes (certificates need no more).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7F) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The next element, which must have `tag`; `what` names it in the error.
fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    match tlv(input) {
        Some((t, contents, rest)) if t == tag => Ok((contents, rest)),
        Some((t, _, _)) => Err(format!("{what}: unexpected DER tag 0x{t:02x}")),
        None => Err(format!("{what}: truncated DER")),
    }
}

/// UTCTime `YYMMDDHHMMSSZ` (RFC 5280: 50..99 are 19xx) or GeneralizedTime `YYYYMMDDHHMMSSZ`.
fn time(tag: u8, text: &[u8]) -> Option<SystemTime> {
    let digits = |s: &[u8]| -> Option<i64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0')))
    };
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 13 => {
            let yy = digits(text.get(..2)?)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 15 => (digits(text.get(..4)?)?, &text[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let month = digits(rest.get(0..2)?)?;
    let day = digits(rest.get(2..4)?)?;
    let hour = digits(rest.get(4..6)?)?;
    let min = digits(rest.get(6..8)?)?;
    let sec = digits(rest.get(8..10)?)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// The first commonName in a `Name` (SEQUENCE OF SET OF AttributeTypeAndValue), else the
/// name as hex.
fn common_name(name: &[u8]) -> String {
    let mut rdns = name;
    while let Some((_, set, rest)) = tlv(rdns) {
        let mut atvs = set;
        while let Some((_, atv, more)) = tlv(atvs) {
            if let Some((OID, oid, value)) = tlv(atv) {
                if oid == OID_COMMON_NAME {
                    if let Some((_, text, _)) = tlv(value) {
                        return String::from_utf8_lossy(text).into_owned();
                    }
                }
            }
            atvs = more;
        }
        rdns = rest;
    }
    name.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testpki::{Authority, Leaf, World};

    fn der_of(pem: &str) -> Vec<Vec<u8>> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .map(|c| c.expect("pem").to_vec())
            .collect()
    }

    #[test]
    fn chain_links_names_and_signatures() {
        let world = World::new();
        let chain = der_of(&world.server_chain_pem());
        let leaf = CertInfo::parse(&chain[0]).expect("leaf");
        let inter = CertInfo::parse(&chain[1]).expect("intermediate");
        let root = CertInfo::parse(&der_of(&world.root.pem())[0]).expect("root");
        assert_eq!(leaf.subject_cn, "mail.conbool.com");
        assert_eq!(leaf.issuer_cn, "Conbool Test Intermediate");
        assert_eq!(inter.issuer_cn, "Conbool Test Root");
        assert_eq!(leaf.issuer, inter.subject);
        assert_eq!(inter.issuer, root.subject);
        assert!(!leaf.is_ca && inter.is_ca && root.is_ca);
        assert!(root.is_self_issued() && !leaf.is_self_issued());
        assert!(leaf.is_signed_by(&inter));
        assert!(inter.is_signed_by(&root));
        assert!(root.is_signed_by(&root));
        assert!(!leaf.is_signed_by(&root), "skips a link");
        assert!(!inter.is_signed_by(&leaf));
        // A look-alike intermediate with the same name but another key.
        let impostor = Authority::root("Conbool Test Intermediate");
        let fake = CertInfo::parse(&der_of(&impostor.pem())[0]).expect("fake");
        assert_eq!(fake.subject, inter.subject);
        assert!(!leaf.is_signed_by(&fake));
    }

    #[test]
    fn validity_and_days_left() {
        let world = World::new();
        let expired = world.intermediate.expired_leaf(&["old.example"]);
        let info = CertInfo::parse(&der_of(&expired.pem())[0]).expect("expired");
        assert_eq!(date(info.not_before), "2000-01-01");
        assert_eq!(date(info.not_after), "2001-01-01");
        let now = UNIX_EPOCH + Duration::from_secs(days_from_civil(2001, 1, 11) as u64 * 86_400);
        assert_eq!(info.days_left(now), -10);
        let then = UNIX_EPOCH + Duration::from_secs(days_from_civil(2000, 12, 1) as u64 * 86_400);
        assert_eq!(info.days_left(then), 31);
    }

    #[test]
    fn dates_round_trip() {
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2024, 12, 31), (4096, 1, 1)] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        assert_eq!(
            time(UTC_TIME, b"490101000000Z"),
            time(GENERALIZED_TIME, b"20490101000000Z")
        );
        assert_eq!(
            time(UTC_TIME, b"500101000000Z"),
            time(GENERALIZED_TIME, b"19500101000000Z")
        );
        for bad in [&b"2401010000Z"[..], b"241301000000Z", b"240101000000+", b""] {
            assert!(time(UTC_TIME, bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn extended_key_usage_is_read() {
        let mut params = rcgen::CertificateParams::new(vec!["c.example".to_string()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let info = CertInfo::parse(cert.der()).expect("parse");
        assert!(info.has_eku && info.eku_client && !info.eku_server);
        let plain = Leaf::self_signed(&["p.example"]);
        let info = CertInfo::parse(plain.cert_der()).expect("parse");
        assert!(!info.has_eku);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let world = World::new();
        let der = der_of(&world.server.pem()).remove(0);
        for cut in 0..der.len() {
            let _ = CertInfo::parse(&der[..cut]);
        }
        for i in 0..der.len() {
            let mut bent = der.clone();
            bent[i] ^= 0xFF;
            let _ = CertInfo::parse(&bent);
        }
        assert!(CertInfo::parse(b"").is_err());
        assert!(CertInfo::parse(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
    }
}
