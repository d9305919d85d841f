//! The MIME header fields the walker acts on: `Content-Type` (media type, `boundary`,
//! `charset`, `name`), `Content-Transfer-Encoding` and `Content-Disposition` (`filename`), with
//! RFC 2045 parameter syntax, comments, quoted strings and RFC 2231 extended and continued
//! parameters. Parsing is lenient and bounded: odd syntax gives the RFC 2045 defaults.

use std::borrow::Cow;

use memchr::{memchr, memchr2};

use super::decode::{decode_rfc2047, decode_rfc2231, trim_ws, Charset};

/// Longest `type/subtype` kept.
pub(crate) const MAX_MEDIA_LEN: usize = 127;
/// Longest boundary accepted (RFC 2046 allows 70); a longer one makes the multipart opaque.
pub(crate) const MAX_BOUNDARY_LEN: usize = 200;
/// Longest file name kept.
pub(crate) const MAX_FILENAME_LEN: usize = 255;
/// Most parameters looked at in one field.
const MAX_PARAMS: usize = 32;
/// Longest parameter value (or continuation section) kept.
const MAX_PARAM_VALUE: usize = 1024;

/// A Content-Transfer-Encoding the scanner undoes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Cte {
    /// 7bit, 8bit, binary, absent or unknown.
    #[default]
    Identity,
    Base64,
    QuotedPrintable,
}

/// What one entity's header said about its body.
#[derive(Clone, Debug, Default)]
pub(crate) struct PartInfo {
    /// Lower-cased `type/subtype`, empty when absent or invalid.
    pub(crate) media: Vec<u8>,
    pub(crate) boundary: Option<Vec<u8>>,
    pub(crate) charset: Charset,
    pub(crate) cte: Cte,
    /// From Content-Disposition `filename`, else Content-Type `name`.
    pub(crate) filename: Option<Vec<u8>>,
    /// The `charset` parameter names UTF-8 (for the disclaimer inserter).
    pub(crate) utf8: bool,
    /// Content-Transfer-Encoding is `8bit` or `binary` (8-bit bytes may be added).
    pub(crate) eight_bit: bool,
    /// Content-Disposition is `attachment`.
    pub(crate) attachment: bool,
    content_type_seen: bool,
    cte_seen: bool,
    disposition_seen: bool,
}

impl PartInfo {
    pub(crate) fn clear(&mut self) {
        self.media.clear();
        self.boundary = None;
        self.charset = Charset::Raw;
        self.cte = Cte::Identity;
        self.filename = None;
        self.utf8 = false;
        self.eight_bit = false;
        self.attachment = false;
        self.content_type_seen = false;
        self.cte_seen = false;
        self.disposition_seen = false;
    }

    /// Takes note of one field (`value` unfolded, not RFC 2047-decoded). The first of each
    /// field wins, as in most clients.
    pub(crate) fn on_field(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"content-type") {
            if self.content_type_seen {
                return;
            }
            self.content_type_seen = true;
            let (media, params) = split_media(value);
            let media = strip_comments(media);
            let (media, extra) = parse_media(&media);
            self.media.clear();
            if let Some(m) = media {
                self.media.extend_from_slice(&m);
            }
            // A parameter written after the subtype without its `;` still counts.
            let mut all = Params::parse(extra);
            all.list.extend(Params::parse(params).list);
            let params = all;
            self.boundary = params
                .get(b"boundary")
                .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY_LEN);
            if let Some(cs) = params.get(b"charset") {
                self.charset = Charset::from_label(&cs);
                let cs = trim_ws(&cs);
                self.utf8 = cs.eq_ignore_ascii_case(b"utf-8") || cs.eq_ignore_ascii_case(b"utf8");
            }
            if self.filename.is_none() {
                self.filename = params.get(b"name").map(|n| clean_filename(&n));
            }
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            if self.cte_seen {
                return;
            }
            self.cte_seen = true;
            let v = strip_comments(value);
            let v = trim_ws(&v);
            self.cte = if v.eq_ignore_ascii_case(b"base64") {
                Cte::Base64
            } else if v.eq_ignore_ascii_case(b"quoted-printable") {
                Cte::QuotedPrintable
            } else {
                Cte::Identity
            };
            self.eight_bit = v.eq_ignore_ascii_case(b"8bit") || v.eq_ignore_ascii_case(b"binary");
        } else if name.eq_ignore_ascii_case(b"content-disposition") {
            if self.disposition_seen {
                return;
            }
            self.disposition_seen = true;
            let (kind, params) = split_media(value);
            self.attachment = trim_ws(&strip_comments(kind)).eq_ignore_ascii_case(b"attachment");
            if let Some(f) = Params::parse(params).get(b"filename") {
                self.filename = Some(clean_filename(&f));
            }
        }
    }
}

/// Splits `type/subtype; params` at the first `;` outside quotes and comments.
fn split_media(value: &[u8]) -> (&[u8], &[u8]) {
    let mut depth = 0u32;
    let mut quoted = false;
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\\' if quoted || depth > 0 => i += 1,
            b'"' if depth == 0 => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth = depth.saturating_sub(1),
            b';' if !quoted && depth == 0 => return (&value[..i], &value[i + 1..]),
            _ => {}
        }
        i += 1;
    }
    (value, b"")
}

/// `type/subtype` (comments already removed; whitespace around the `/` allowed) lower-cased,
/// if both are tokens, and whatever follows the subtype.
fn parse_media(s: &[u8]) -> (Option<Vec<u8>>, &[u8]) {
    let s = trim_ws(s);
    let token_end = |from: usize| from + s[from..].iter().take_while(|&&b| is_token(b)).count();
    let skip_ws = |from: usize| {
        from + s[from..]
            .iter()
            .take_while(|&&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .count()
    };
    let type_end = token_end(0);
    let slash = skip_ws(type_end);
    if type_end == 0 || s.get(slash) != Some(&b'/') {
        return (None, b"");
    }
    let sub_start = skip_ws(slash + 1);
    let sub_end = token_end(sub_start);
    if sub_end == sub_start || type_end + 1 + (sub_end - sub_start) > MAX_MEDIA_LEN {
        return (None, b"");
    }
    let mut m = Vec::with_capacity(type_end + 1 + sub_end - sub_start);
    m.extend_from_slice(&s[..type_end]);
    m.push(b'/');
    m.extend_from_slice(&s[sub_start..sub_end]);
    m.make_ascii_lowercase();
    (Some(m), trim_ws(&s[sub_end..]))
}

/// RFC 2045 token characters.
fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// [`is_token`] by byte: printable ASCII but `tspecials` (a table, not a search of the
/// `tspecials` per byte).
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = b'!';
    while b < 0x7F {
        t[b as usize] = true;
        b += 1;
    }
    let specials = b"()<>@,;:\\\"/[]?=";
    let mut k = 0;
    while k < specials.len() {
        t[specials[k] as usize] = false;
        k += 1;
    }
    t
};

/// `s` with `(comments)` (nested, outside quoted strings) removed; borrowed when it has none.
fn strip_comments(s: &[u8]) -> Cow<'_, [u8]> {
    if memchr(b'(', s).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut depth = 0u32;
    let mut quoted = false;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if depth > 0 {
            match c {
                b'\\' => i += 1,
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
        } else {
            match c {
                b'\\' if quoted => {
                    out.push(c);
                    if let Some(&n) = s.get(i + 1) {
                        out.push(n);
                    }
                    i += 2;
                    continue;
                }
                b'"' => quoted = !quoted,
                b'(' if !quoted => {
                    depth = 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
            out.push(c);
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// A file name for the scanner: RFC 2047 words decoded, control bytes dropped, capped.
fn clean_filename(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    decode_rfc2047(raw, &mut out);
    out.retain(|&b| b >= b' ' && b != 0x7F);
    out.truncate(MAX_FILENAME_LEN);
    out
}

/// One parameter as written.
#[derive(Debug)]
struct Param {
    /// Lower-cased name without any `*N` / `*` suffix.
    name: Vec<u8>,
    /// RFC 2231 continuation index.
    section: Option<u32>,
    /// RFC 2231 `*`: percent-encoded, first section led by `charset'lang'`.
    extended: bool,
    value: Vec<u8>,
}

/// The parameters of one field.
#[derive(Debug, Default)]
struct Params {
    list: Vec<Param>,
}

impl Params {
    fn parse(s: &[u8]) -> Params {
        let mut list = Vec::new();
        let s = strip_comments(s);
        let mut i = 0;
        while i < s.len() && list.len() < MAX_PARAMS {
            // name
            while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\r' | b'\n' | b';') {
                i += 1;
            }
            let name_start = i;
            while i < s.len() && s[i] != b'=' && s[i] != b';' {
                i += 1;
            }
            let raw_name = trim_ws(&s[name_start..i]);
            if i >= s.len() || s[i] == b';' {
                continue;
            }
            i += 1; // '='
            while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\r' | b'\n') {
                i += 1;
            }
            let mut value = Vec::new();
            if s.get(i) == Some(&b'"') {
                i += 1;
                // Up to the closing quote, a quoted pair at a time.
                let mut keep = |b: &[u8]| {
                    let room = MAX_PARAM_VALUE.saturating_sub(value.len());
                    value.extend_from_slice(&b[..b.len().min(room)]);
                };
                while let Some(rest) = s.get(i..).filter(|r| !r.is_empty()) {
                    let Some(k) = memchr2(b'"', b'\\', rest) else {
                        keep(rest);
                        i = s.len();
                        break;
                    };
                    keep(&rest[..k]);
                    i += k;
                    if s[i] == b'"' {
                        break;
                    }
                    // A backslash: the next byte is taken as it is (a last one stands for itself).
                    match s.get(i + 1) {
                        Some(&b) => {
                            keep(&[b]);
                            i += 2;
                        }
                        None => {
                            keep(b"\\");
                            i += 1;
                        }
                    }
                }
                i += 1;
                while i < s.len() && s[i] != b';' {
                    i += 1;
                }
            } else {
                let start = i;
                while i < s.len() && s[i] != b';' {
                    i += 1;
                }
                let v = trim_ws(&s[start..i]);
                value.extend_from_slice(&v[..v.len().min(MAX_PARAM_VALUE)]);
            }
            if raw_name.is_empty() {
                continue;
            }
            let mut name = raw_name.to_ascii_lowercase();
            let mut extended = false;
            if name.last() == Some(&b'*') {
                extended = true;
                name.pop();
            }
            let mut section = None;
            if let Some(star) = name.iter().rposition(|&b| b == b'*') {
                if let Some(n) = std::str::from_utf8(&name[star + 1..])
                    .ok()
                    .and_then(|d| d.parse::<u32>().ok())
                {
                    section = Some(n);
                    name.truncate(star);
                }
            }
            list.push(Param {
                name,
                section,
                extended,
                value,
            });
        }
        Params { list }
    }

    /// A parameter's value: the plain form if present, else the RFC 2231 sections joined and
    /// decoded.
    fn get(&self, name: &[u8]) -> Option<Vec<u8>> {
        if let Some(p) = self
            .list
            .iter()
            .find(|p| p.name == name && p.section.is_none() && !p.extended)
        {
            return Some(p.value.clone());
        }
        let mut sections: Vec<&Param> = self.list.iter().filter(|p| p.name == name).collect();
        if sections.is_empty() {
            return None;
        }
        sections.sort_by_key(|p| p.section.unwrap_or(0));
        let mut charset = Charset::Raw;
        let mut out = Vec::new();
        for (k, p) in sections.iter().enumerate() {
            if p.extended {
                let mut v: &[u8] = &p.value;
                if k == 0 {
                    // charset'language'value
                    let mut it = v.splitn(3, |&b| b == b'\'');
                    if let (Some(cs), Some(_lang), Some(rest)) = (it.next(), it.next(), it.next()) {
                        charset = Charset::from_label(cs);
                        v = rest;
                    }
                }
                decode_rfc2231(v, charset, &mut out);
            } else {
                out.extend_from_slice(&p.value);
            }
            if out.len() > MAX_PARAM_VALUE {
                out.truncate(MAX_PARAM_VALUE);
                break;
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(fields: &[(&str, &str)]) -> PartInfo {
        let mut p = PartInfo::default();
        for (n, v) in fields {
            p.on_field(n.as_bytes(), v.as_bytes());
        }
        p
    }

    #[test]
    fn content_type_rows() {
        let rows: &[(&str, &str, &str, Option<&str>, Charset)] = &[
            ("simple", "text/plain", "text/plain", None, Charset::Raw),
            (
                "upper",
                "TEXT/HTML; CHARSET=ISO-8859-1",
                "text/html",
                None,
                Charset::Latin1,
            ),
            (
                "space_in_type",
                "image/ jpeg",
                "image/jpeg",
                None,
                Charset::Raw,
            ),
            (
                "comment",
                " text/plain; charset =us-ascii (Plain text)",
                "text/plain",
                None,
                Charset::Raw,
            ),
            (
                "quoted_boundary",
                "multipart/mixed; boundary=\"a b;c\"",
                "multipart/mixed",
                Some("a b;c"),
                Charset::Raw,
            ),
            (
                "bare_boundary",
                "multipart/mixed;boundary=42",
                "multipart/mixed",
                Some("42"),
                Charset::Raw,
            ),
            (
                "escaped_quote",
                "multipart/mixed; boundary=\"x\\\"y\"",
                "multipart/mixed",
                Some("x\"y"),
                Charset::Raw,
            ),
            ("no_slash_invalid", "inline", "", None, Charset::Raw),
            (
                "missing_semicolon",
                "multipart/mixed\n\tboundary=\"b\"",
                "multipart/mixed",
                Some("b"),
                Charset::Raw,
            ),
            (
                "spaces_around_slash",
                " message / rfc822",
                "message/rfc822",
                None,
                Charset::Raw,
            ),
            (
                "junk_after_subtype",
                "text/plain garbage",
                "text/plain",
                None,
                Charset::Raw,
            ),
            (
                "comment_in_type",
                "text/(odd)plain",
                "text/plain",
                None,
                Charset::Raw,
            ),
        ];
        for (name, value, media, boundary, charset) in rows {
            let p = info(&[("Content-Type", value)]);
            assert_eq!(p.media, media.as_bytes(), "row {name}");
            assert_eq!(
                p.boundary.as_deref(),
                boundary.map(str::as_bytes),
                "row {name}"
            );
            assert_eq!(p.charset, *charset, "row {name}");
        }
    }

    /// Quoted values against the byte-at-a-time rule (a backslash takes the next byte as it
    /// is, a last one stands for itself), with escapes, unclosed quotes and the length cap.
    #[test]
    fn quoted_values_match_byte_rule() {
        fn by_byte(s: &[u8]) -> Vec<u8> {
            let mut value = Vec::new();
            let mut i = 0;
            while i < s.len() && s[i] != b'"' {
                if s[i] == b'\\' && i + 1 < s.len() {
                    i += 1;
                }
                if value.len() < MAX_PARAM_VALUE {
                    value.push(s[i]);
                }
                i += 1;
            }
            value
        }
        let long = "x".repeat(MAX_PARAM_VALUE + 10);
        let rows: &[&str] = &[
            "",
            "plain",
            "a\\\"b",
            "a\\\\b",
            "a\\",
            "a\\xb\\",
            "ends\"; q=1",
            "\\\"\\\"",
            &long,
        ];
        for row in rows {
            let field = format!("x=\"{row}");
            let got = Params::parse(field.as_bytes());
            let want = by_byte(row.as_bytes());
            assert_eq!(
                got.list.first().map(|p| p.value.clone()),
                Some(want),
                "{row:?}"
            );
        }
    }

    #[test]
    fn first_content_type_wins() {
        let p = info(&[
            ("content-type", "text/html"),
            ("Content-Type", "text/plain"),
        ]);
        assert_eq!(p.media, b"text/html");
    }

    #[test]
    fn transfer_encodings() {
        let rows = [
            ("base64", " Base64 ", Cte::Base64),
            ("qp", "quoted-printable", Cte::QuotedPrintable),
            ("7bit", "7bit", Cte::Identity),
            ("comment", "base64 (yes)", Cte::Base64),
            ("junk", "x-uue", Cte::Identity),
        ];
        for (name, v, want) in rows {
            assert_eq!(
                info(&[("Content-Transfer-Encoding", v)]).cte,
                want,
                "row {name}"
            );
        }
    }

    #[test]
    fn filenames() {
        type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let rows: &[Row] = &[
            (
                "disposition",
                &[("Content-Disposition", "attachment; filename=\"a.pdf\"")],
                "a.pdf",
            ),
            (
                "ct_name",
                &[("Content-Type", "application/pdf; name=b.pdf")],
                "b.pdf",
            ),
            (
                "disposition_beats_name",
                &[
                    ("Content-Type", "application/pdf; name=b.pdf"),
                    ("Content-Disposition", "attachment; filename=c.pdf"),
                ],
                "c.pdf",
            ),
            (
                "rfc2231_extended",
                &[(
                    "Content-Disposition",
                    "attachment; filename*=utf-8''na%C3%AFve.txt",
                )],
                "naïve.txt",
            ),
            (
                "rfc2231_continuations",
                &[(
                    "Content-Disposition",
                    "attachment; filename*1*=%20part.txt; filename*0*=iso-8859-1'en'caf%E9",
                )],
                "café part.txt",
            ),
            (
                "rfc2231_plain_sections",
                &[(
                    "Content-Type",
                    "text/plain; name*0=\"long\"; name*1=\"name.txt\"",
                )],
                "longname.txt",
            ),
            (
                "rfc2047_in_quotes",
                &[(
                    "Content-Disposition",
                    "attachment; filename=\"=?UTF-8?B?w6kudHh0?=\"",
                )],
                "é.txt",
            ),
        ];
        for (name, fields, want) in rows {
            let p = info(fields);
            assert_eq!(
                String::from_utf8_lossy(p.filename.as_deref().unwrap_or(b"<none>")),
                *want,
                "row {name}"
            );
        }
    }
}
