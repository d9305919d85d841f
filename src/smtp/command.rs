//! SMTP command lines (RFC 5321 §4.1): the `Command` type, envelope paths and the ESMTP
//! parameters that travel with them (SIZE, BODY, SMTPUTF8, DSN's RET/ENVID/NOTIFY/ORCPT).
//! Parsing ([`parse`]) takes one line without its CRLF; it never allocates beyond the line.

use crate::smtp::error::SessionError;

/// The longest command line, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;

/// The longest `ENVID` value (RFC 3461 §4.4).
const MAX_ENVID: usize = 100;

/// The longest `ORCPT` value (RFC 3461 §4.2).
const MAX_ORCPT: usize = 500;

/// A parsed command line.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Command {
    /// `EHLO <domain or address literal>`
    Ehlo(String),
    /// `HELO <domain>`
    Helo(String),
    /// `MAIL FROM:<reverse-path> [params]`
    Mail(ReversePath, MailParams),
    /// `RCPT TO:<forward-path> [params]`
    Rcpt(ForwardPath, RcptParams),
    /// `DATA`
    Data,
    /// `BDAT <size> [LAST]` (RFC 3030)
    Bdat {
        /// Octets in the chunk that follows the command line.
        size: u64,
        /// The chunk is the last of the message.
        last: bool,
    },
    /// `RSET`
    Rset,
    /// `NOOP [string]`
    Noop,
    /// `QUIT`
    Quit,
    /// `VRFY <string>`
    Vrfy,
    /// `EXPN <string>`
    Expn,
    /// `HELP [string]`
    Help,
    /// `STARTTLS` (RFC 3207)
    StartTls,
}

/// The reverse-path of `MAIL FROM`: the null path `<>` or a mailbox.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ReversePath {
    /// `<>`: bounces and other notifications.
    Null,
    /// A mailbox.
    Mailbox(Mailbox),
}

/// The forward-path of `RCPT TO`: a mailbox (or `<Postmaster>`, kept as a mailbox with an empty
/// domain).
pub type ForwardPath = Mailbox;

/// `local-part@domain` as sent (the local part may be a quoted string; the domain may be an
/// address literal `[192.0.2.1]`). Any source route (`@a,@b:`) has been dropped, as RFC 5321
/// §4.1.1.3 allows.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Mailbox {
    /// The local part exactly as sent (quotes kept).
    pub local: String,
    /// The domain or address literal exactly as sent; empty for `<Postmaster>`.
    pub domain: String,
}

impl Mailbox {
    /// The domain lower-cased, for routing.
    pub fn domain_lower(&self) -> String {
        self.domain.to_ascii_lowercase()
    }

    /// Whether the address is all ASCII (otherwise it needs `SMTPUTF8`, RFC 6531 §3.4).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
}

impl ReversePath {
    /// Whether the path is all ASCII (the null path is).
    pub fn is_ascii(&self) -> bool {
        match self {
            ReversePath::Null => true,
            ReversePath::Mailbox(m) => m.is_ascii(),
        }
    }
}

impl std::fmt::Display for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.domain.is_empty() {
            write!(f, "{}", self.local)
        } else {
            write!(f, "{}@{}", self.local, self.domain)
        }
    }
}

impl std::fmt::Display for ReversePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReversePath::Null => Ok(()),
            ReversePath::Mailbox(m) => m.fmt(f),
        }
    }
}

/// `BODY=` (RFC 6152, RFC 3030).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Body {
    /// Not given (7bit assumed).
    #[default]
    Unspecified,
    /// `BODY=7BIT`
    SevenBit,
    /// `BODY=8BITMIME`
    EightBitMime,
    /// `BODY=BINARYMIME` (needs BDAT)
    BinaryMime,
}

/// `RET=` (RFC 3461).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ret {
    /// `RET=FULL`
    Full,
    /// `RET=HDRS`
    Hdrs,
}

/// Parameters of `MAIL FROM`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct MailParams {
    /// `SIZE=` (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Body,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET=` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=` as sent, xtext-encoded (RFC 3461).
    pub envid: Option<String>,
}

/// Parameters of `RCPT TO`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct RcptParams {
    /// `NOTIFY=` as sent (`NEVER` or a comma list of `SUCCESS`, `FAILURE`, `DELAY`).
    pub notify: Option<String>,
    /// `ORCPT=` as sent (`addr-type;xtext`).
    pub orcpt: Option<String>,
}

/// Parses one command line, given without its line end (CRLF or bare LF).
///
/// Verbs are case-insensitive. Errors are [`SessionError::UnknownCommand`] (unknown verb),
/// [`SessionError::Syntax`] (control bytes, `500`), [`SessionError::ParamSyntax`] (bad
/// arguments, `501`) and [`SessionError::UnsupportedParam`] (unknown ESMTP parameter, `555`).
/// Non-ASCII addresses parse; whether they are allowed (`SMTPUTF8`) is the server's call.
pub fn parse(line: &[u8]) -> Result<Command, SessionError> {
    // NUL, bare CR, ESC and friends never belong in a command (RFC 5321 §2.3.8, §4.1.1).
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(SessionError::Syntax("control character in command"));
    }
    let line = trim_spaces_end(line);
    let (verb, rest) = match memchr::memchr(b' ', line) {
        Some(i) => (&line[..i], trim_spaces_start(&line[i + 1..])),
        None => (line, &b""[..]),
    };
    let is = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());
    if is("EHLO") {
        Ok(Command::Ehlo(helo_name(rest)?))
    } else if is("HELO") {
        Ok(Command::Helo(helo_name(rest)?))
    } else if is("MAIL") {
        let rest = strip_keyword(rest, b"FROM:")
            .ok_or(SessionError::ParamSyntax("expected MAIL FROM:<address>"))?;
        let (path, params) = path(rest, false)?;
        let from = match path {
            None => ReversePath::Null,
            Some(mailbox) => ReversePath::Mailbox(mailbox),
        };
        Ok(Command::Mail(from, mail_params(params)?))
    } else if is("RCPT") {
        let rest = strip_keyword(rest, b"TO:")
            .ok_or(SessionError::ParamSyntax("expected RCPT TO:<address>"))?;
        let (path, params) = path(rest, true)?;
        let to = path.ok_or(SessionError::ParamSyntax("empty recipient address"))?;
        Ok(Command::Rcpt(to, rcpt_params(params)?))
    } else if is("DATA") {
        no_argument(rest, Command::Data)
    } else if is("BDAT") {
        bdat(rest)
    } else if is("RSET") {
        no_argument(rest, Command::Rset)
    } else if is("NOOP") {
        Ok(Command::Noop)
    } else if is("QUIT") {
        no_argument(rest, Command::Quit)
    } else if is("VRFY") {
        some_argument(rest, Command::Vrfy)
    } else if is("EXPN") {
        some_argument(rest, Command::Expn)
    } else if is("HELP") {
        Ok(Command::Help)
    } else if is("STARTTLS") {
        no_argument(rest, Command::StartTls)
    } else {
        Err(SessionError::UnknownCommand)
    }
}

fn trim_spaces_start(mut s: &[u8]) -> &[u8] {
    while let [b' ', tail @ ..] = s {
        s = tail;
    }
    s
}

fn trim_spaces_end(mut s: &[u8]) -> &[u8] {
    while let [head @ .., b' '] = s {
        s = head;
    }
    s
}

fn no_argument(rest: &[u8], cmd: Command) -> Result<Command, SessionError> {
    if rest.is_empty() {
        Ok(cmd)
    } else {
        Err(SessionError::ParamSyntax("this command takes no argument"))
    }
}

fn some_argument(rest: &[u8], cmd: Command) -> Result<Command, SessionError> {
    if rest.is_empty() {
        Err(SessionError::ParamSyntax("argument required"))
    } else {
        Ok(cmd)
    }
}

/// The EHLO/HELO argument: one word, UTF-8 (RFC 6531 §3.7.1 allows U-labels).
fn helo_name(rest: &[u8]) -> Result<String, SessionError> {
    if rest.is_empty() {
        return Err(SessionError::ParamSyntax("a domain name is required"));
    }
    if rest.contains(&b' ') {
        return Err(SessionError::ParamSyntax("one domain name expected"));
    }
    utf8(rest, "domain is not valid UTF-8")
}

fn utf8(bytes: &[u8], what: &'static str) -> Result<String, SessionError> {
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|_| SessionError::ParamSyntax(what))
}

/// Strips a case-insensitive keyword such as `FROM:` and any spaces after it.
fn strip_keyword<'a>(rest: &'a [u8], keyword: &[u8]) -> Option<&'a [u8]> {
    let head = rest.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| trim_spaces_start(&rest[keyword.len()..]))
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// Whether `local@domain` (without brackets) is a mailbox that `MAIL FROM:<...>` and `RCPT
/// TO:<...>` accept: for clients that take addresses from elsewhere (a message's header) and
/// must not offer what a server refuses.
pub fn is_mailbox(local: &str, domain: &str) -> bool {
    let s = format!("<{local}@{domain}>");
    !s.bytes().any(|b| b < 0x20 || b == 0x7f)
        && matches!(path(s.as_bytes(), false), Ok((Some(_), rest)) if rest.is_empty())
}

/// `<[source-route:]local@domain>` or `<>` (`None`), then the parameter text after it.
/// `postmaster_ok` allows `<Postmaster>` without a domain (RCPT only, RFC 5321 §4.1.1.3).
fn path(s: &[u8], postmaster_ok: bool) -> Result<(Option<Mailbox>, &[u8]), SessionError> {
    let bad = SessionError::ParamSyntax;
    let Some(mut s) = s.strip_prefix(b"<") else {
        return Err(bad("address must be enclosed in <>"));
    };
    if let Some(rest) = s.strip_prefix(b">") {
        return Ok((None, params_text(rest)?));
    }
    // A source route `@a,@b:` is accepted and dropped (RFC 5321 §4.1.1.3, Appendix C).
    if s.first() == Some(&b'@') {
        let colon = s
            .iter()
            .position(|&b| b == b':' || b == b'>')
            .filter(|&i| s[i] == b':')
            .ok_or(bad("bad source route"))?;
        s = &s[colon + 1..];
    }
    let local_len = local_part_len(s)?;
    let (local, rest) = s.split_at(local_len);
    let local = utf8(local, "address is not valid UTF-8")?;
    match rest.first() {
        Some(b'>') if postmaster_ok && local.eq_ignore_ascii_case("postmaster") => {
            let mailbox = Mailbox {
                local,
                domain: String::new(),
            };
            Ok((Some(mailbox), params_text(&rest[1..])?))
        }
        Some(b'@') => {
            let rest = &rest[1..];
            let domain_len = domain_len(rest)?;
            let (domain, rest) = rest.split_at(domain_len);
            let rest = rest
                .strip_prefix(b">")
                .ok_or(bad("address must end with >"))?;
            let mailbox = Mailbox {
                local,
                domain: utf8(domain, "address is not valid UTF-8")?,
            };
            Ok((Some(mailbox), params_text(rest)?))
        }
        _ => Err(bad("address must be local-part@domain")),
    }
}

/// Length of a dot-string or quoted-string local part at the start of `s`.
fn local_part_len(s: &[u8]) -> Result<usize, SessionError> {
    let bad = SessionError::ParamSyntax;
    if s.first() == Some(&b'"') {
        let mut i = 1;
        loop {
            match s.get(i) {
                None => return Err(bad("unterminated quoted local part")),
                Some(b'"') => return Ok(i + 1),
                Some(b'\\') => {
                    if s.get(i + 1).is_none() {
                        return Err(bad("unterminated quoted local part"));
                    }
                    i += 2;
                }
                Some(_) => i += 1,
            }
        }
    }
    let len = s
        .iter()
        .position(|&b| !(is_atext(b) || b == b'.'))
        .unwrap_or(s.len());
    if len == 0 {
        return Err(bad("empty local part"));
    }
    Ok(len)
}

/// Length of a domain or an address literal `[...]` at the start of `s`.
fn domain_len(s: &[u8]) -> Result<usize, SessionError> {
    let bad = SessionError::ParamSyntax;
    if s.first() == Some(&b'[') {
        let close = s
            .iter()
            .position(|&b| b == b']')
            .ok_or(bad("unterminated address literal"))?;
        let inner = &s[1..close];
        if inner.is_empty() || inner.iter().any(|&b| b == b'[' || b == b'\\' || b == b' ') {
            return Err(bad("bad address literal"));
        }
        return Ok(close + 1);
    }
    let len = s
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b >= 0x80))
        .unwrap_or(s.len());
    let domain = &s[..len];
    if domain.is_empty() || domain.starts_with(b".") || domain.windows(2).any(|w| w == b"..") {
        return Err(bad("bad domain"));
    }
    Ok(len)
}

/// What follows `>`: nothing, or a space and parameters.
fn params_text(rest: &[u8]) -> Result<&[u8], SessionError> {
    match rest {
        [] => Ok(rest),
        [b' ', tail @ ..] => Ok(trim_spaces_start(tail)),
        _ => Err(SessionError::ParamSyntax("unexpected text after address")),
    }
}

/// `keyword[=value]` pairs separated by spaces (RFC 5321 §4.1.2 `esmtp-param`).
fn esmtp_params(text: &[u8]) -> impl Iterator<Item = Result<(&[u8], Option<&[u8]>), SessionError>> {
    text.split(|&b| b == b' ')
        .filter(|p| !p.is_empty())
        .map(|param| {
            let (key, value) = match memchr::memchr(b'=', param) {
                Some(i) => (&param[..i], Some(&param[i + 1..])),
                None => (param, None),
            };
            let key_ok = key.first().is_some_and(u8::is_ascii_alphanumeric)
                && key.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
            let value_ok = value.map_or(true, |v| {
                !v.is_empty() && v.iter().all(|&b| (33..=126).contains(&b) && b != b'=')
            });
            if key_ok && value_ok {
                Ok((key, value))
            } else {
                Err(SessionError::ParamSyntax("bad ESMTP parameter"))
            }
        })
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), SessionError> {
    if slot.is_some() {
        return Err(SessionError::ParamSyntax("duplicate parameter"));
    }
    *slot = Some(value);
    Ok(())
}

fn mail_params(text: &[u8]) -> Result<MailParams, SessionError> {
    let bad = SessionError::ParamSyntax;
    let mut size = None;
    let mut body = None;
    let mut smtputf8 = None;
    let mut ret = None;
    let mut envid = None;
    for param in esmtp_params(text) {
        let (key, value) = param?;
        let is = |name: &str| key.eq_ignore_ascii_case(name.as_bytes());
        if is("SIZE") {
            // RFC 1870: a size beyond u64 is simply too big.
            let v = value.filter(|v| v.iter().all(u8::is_ascii_digit));
            let v = v.ok_or(bad("SIZE needs a number"))?;
            let n = v.iter().fold(0u64, |n, &d| {
                n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
            });
            set_once(&mut size, n)?;
        } else if is("BODY") {
            let v = value.ok_or(bad("BODY needs a value"))?;
            let b = if v.eq_ignore_ascii_case(b"7BIT") {
                Body::SevenBit
            } else if v.eq_ignore_ascii_case(b"8BITMIME") {
                Body::EightBitMime
            } else if v.eq_ignore_ascii_case(b"BINARYMIME") {
                Body::BinaryMime
            } else {
                return Err(bad("BODY must be 7BIT, 8BITMIME or BINARYMIME"));
            };
            set_once(&mut body, b)?;
        } else if is("SMTPUTF8") {
            if value.is_some() {
                return Err(bad("SMTPUTF8 takes no value"));
            }
            set_once(&mut smtputf8, true)?;
        } else if is("RET") {
            let v = value.ok_or(bad("RET needs a value"))?;
            let r = if v.eq_ignore_ascii_case(b"FULL") {
                Ret::Full
            } else if v.eq_ignore_ascii_case(b"HDRS") {
                Ret::Hdrs
            } else {
                return Err(bad("RET must be FULL or HDRS"));
            };
            set_once(&mut ret, r)?;
        } else if is("ENVID") {
            let v = value.filter(|v| v.len() <= MAX_ENVID);
            let v = v.ok_or(bad("ENVID needs a value of at most 100 characters"))?;
            set_once(&mut envid, ascii(v))?;
        } else {
            return Err(SessionError::UnsupportedParam);
        }
    }
    Ok(MailParams {
        size,
        body: body.unwrap_or_default(),
        smtputf8: smtputf8.unwrap_or(false),
        ret,
        envid,
    })
}

fn rcpt_params(text: &[u8]) -> Result<RcptParams, SessionError> {
    let bad = SessionError::ParamSyntax;
    let mut notify = None;
    let mut orcpt = None;
    for param in esmtp_params(text) {
        let (key, value) = param?;
        if key.eq_ignore_ascii_case(b"NOTIFY") {
            let v = value.ok_or(bad("NOTIFY needs a value"))?;
            // RFC 3461 §4.1: NEVER alone, or a list of SUCCESS, FAILURE, DELAY.
            let never = v.eq_ignore_ascii_case(b"NEVER");
            let list_ok = v.split(|&b| b == b',').all(|item| {
                [&b"SUCCESS"[..], b"FAILURE", b"DELAY"]
                    .iter()
                    .any(|k| item.eq_ignore_ascii_case(k))
            });
            if !(never || list_ok) {
                return Err(bad("NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY"));
            }
            set_once(&mut notify, ascii(v))?;
        } else if key.eq_ignore_ascii_case(b"ORCPT") {
            let v = value.filter(|v| v.len() <= MAX_ORCPT);
            let v = v.ok_or(bad("ORCPT needs a value of at most 500 characters"))?;
            // RFC 3461 §4.2: addr-type ";" xtext.
            let semi = memchr::memchr(b';', v).ok_or(bad("ORCPT must be type;address"))?;
            if semi == 0 || semi + 1 == v.len() {
                return Err(bad("ORCPT must be type;address"));
            }
            set_once(&mut orcpt, ascii(v))?;
        } else {
            return Err(SessionError::UnsupportedParam);
        }
    }
    Ok(RcptParams { notify, orcpt })
}

/// A string from bytes already checked to be printable ASCII.
fn ascii(v: &[u8]) -> String {
    v.iter().map(|&b| char::from(b)).collect()
}

/// `BDAT <size> [LAST]` (RFC 3030 §2).
fn bdat(rest: &[u8]) -> Result<Command, SessionError> {
    let bad = SessionError::ParamSyntax("expected BDAT <size> [LAST]");
    let mut words = rest.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or(bad.clone())?;
    if size.is_empty() || !size.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    let size = size.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    let size = size.ok_or(bad.clone())?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return Err(bad),
    };
    if words.next().is_some() {
        return Err(bad);
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(local: &str, domain: &str) -> Mailbox {
        Mailbox {
            local: local.into(),
            domain: domain.into(),
        }
    }

    fn mail(local: &str, domain: &str) -> Command {
        Command::Mail(
            ReversePath::Mailbox(mailbox(local, domain)),
            MailParams::default(),
        )
    }

    fn rcpt(local: &str, domain: &str) -> Command {
        Command::Rcpt(mailbox(local, domain), RcptParams::default())
    }

    const BAD_PARAM: SessionError = SessionError::ParamSyntax("");

    /// Rows: name, line, expected result. For `ParamSyntax` only the variant is compared.
    fn rows() -> Vec<(&'static str, &'static [u8], Result<Command, SessionError>)> {
        let full_mail = Command::Mail(
            ReversePath::Mailbox(mailbox("a", "b.example")),
            MailParams {
                size: Some(1000),
                body: Body::EightBitMime,
                smtputf8: true,
                ret: Some(Ret::Hdrs),
                envid: Some("QQ+2B1".into()),
            },
        );
        let full_rcpt = Command::Rcpt(
            mailbox("c", "d.example"),
            RcptParams {
                notify: Some("SUCCESS,delay".into()),
                orcpt: Some("rfc822;c@d.example".into()),
            },
        );
        vec![
            (
                "ehlo",
                b"EHLO a.example",
                Ok(Command::Ehlo("a.example".into())),
            ),
            (
                "ehlo_lowercase",
                b"ehlo a.example",
                Ok(Command::Ehlo("a.example".into())),
            ),
            (
                "ehlo_literal",
                b"EHLO [192.0.2.1]",
                Ok(Command::Ehlo("[192.0.2.1]".into())),
            ),
            (
                "ehlo_trailing_space",
                b"EHLO a ",
                Ok(Command::Ehlo("a".into())),
            ),
            ("ehlo_missing_name", b"EHLO", Err(BAD_PARAM)),
            ("ehlo_two_words", b"EHLO a b", Err(BAD_PARAM)),
            ("ehlo_bad_utf8", b"EHLO \xff", Err(BAD_PARAM)),
            ("helo", b"HeLo a", Ok(Command::Helo("a".into()))),
            (
                "mail_null",
                b"MAIL FROM:<>",
                Ok(Command::Mail(ReversePath::Null, MailParams::default())),
            ),
            (
                "mail_plain",
                b"mail from:<a@b.example>",
                Ok(mail("a", "b.example")),
            ),
            (
                "mail_space_after_colon",
                b"MAIL FROM: <a@b.example>",
                Ok(mail("a", "b.example")),
            ),
            (
                "mail_quoted_local",
                b"MAIL FROM:<\"a b\\\"c\"@b.example>",
                Ok(mail("\"a b\\\"c\"", "b.example")),
            ),
            (
                "mail_literal",
                b"MAIL FROM:<a@[IPv6:2001:db8::1]>",
                Ok(mail("a", "[IPv6:2001:db8::1]")),
            ),
            (
                "mail_source_route_dropped",
                b"MAIL FROM:<@x.example,@y.example:a@b.example>",
                Ok(mail("a", "b.example")),
            ),
            (
                "mail_utf8",
                "MAIL FROM:<jörg@bücher.example> SMTPUTF8".as_bytes(),
                Ok(Command::Mail(
                    ReversePath::Mailbox(mailbox("jörg", "bücher.example")),
                    MailParams {
                        smtputf8: true,
                        ..MailParams::default()
                    },
                )),
            ),
            (
                "mail_all_params",
                b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=QQ+2B1",
                Ok(full_mail),
            ),
            (
                "mail_size_beyond_u64",
                b"MAIL FROM:<a@b.example> SIZE=99999999999999999999999",
                Ok(Command::Mail(
                    ReversePath::Mailbox(mailbox("a", "b.example")),
                    MailParams {
                        size: Some(u64::MAX),
                        ..MailParams::default()
                    },
                )),
            ),
            ("mail_no_brackets", b"MAIL FROM:a@b.example", Err(BAD_PARAM)),
            ("mail_no_domain", b"MAIL FROM:<a>", Err(BAD_PARAM)),
            (
                "mail_postmaster_only_for_rcpt",
                b"MAIL FROM:<postmaster>",
                Err(BAD_PARAM),
            ),
            (
                "mail_unterminated",
                b"MAIL FROM:<a@b.example",
                Err(BAD_PARAM),
            ),
            ("mail_no_from", b"MAIL <a@b.example>", Err(BAD_PARAM)),
            (
                "mail_unknown_param",
                b"MAIL FROM:<a@b.example> AUTH=<>",
                Err(SessionError::UnsupportedParam),
            ),
            (
                "mail_bad_body",
                b"MAIL FROM:<a@b.example> BODY=9BIT",
                Err(BAD_PARAM),
            ),
            (
                "mail_size_not_number",
                b"MAIL FROM:<a@b.example> SIZE=x",
                Err(BAD_PARAM),
            ),
            (
                "mail_duplicate_param",
                b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2",
                Err(BAD_PARAM),
            ),
            (
                "mail_smtputf8_value",
                b"MAIL FROM:<a@b.example> SMTPUTF8=yes",
                Err(BAD_PARAM),
            ),
            (
                "mail_junk_after_path",
                b"MAIL FROM:<a@b.example>x",
                Err(BAD_PARAM),
            ),
            (
                "mail_double_dot_domain",
                b"MAIL FROM:<a@b..example>",
                Err(BAD_PARAM),
            ),
            (
                "mail_8bit_param",
                b"MAIL FROM:<a@b.example> ENVID=\xc3\xa9",
                Err(BAD_PARAM),
            ),
            (
                "rcpt_plain",
                b"RCPT TO:<c@d.example>",
                Ok(rcpt("c", "d.example")),
            ),
            (
                "rcpt_postmaster",
                b"RCPT TO:<Postmaster>",
                Ok(rcpt("Postmaster", "")),
            ),
            (
                "rcpt_dsn",
                b"RCPT TO:<c@d.example> NOTIFY=SUCCESS,delay ORCPT=rfc822;c@d.example",
                Ok(full_rcpt),
            ),
            (
                "rcpt_notify_bad",
                b"RCPT TO:<c@d.example> NOTIFY=NEVER,SUCCESS",
                Err(BAD_PARAM),
            ),
            (
                "rcpt_orcpt_bad",
                b"RCPT TO:<c@d.example> ORCPT=rfc822",
                Err(BAD_PARAM),
            ),
            ("rcpt_null", b"RCPT TO:<>", Err(BAD_PARAM)),
            (
                "rcpt_unknown_param",
                b"RCPT TO:<c@d.example> FOO",
                Err(SessionError::UnsupportedParam),
            ),
            ("data", b"DATA", Ok(Command::Data)),
            ("data_argument", b"DATA x", Err(BAD_PARAM)),
            (
                "bdat",
                b"BDAT 10",
                Ok(Command::Bdat {
                    size: 10,
                    last: false,
                }),
            ),
            (
                "bdat_last",
                b"bdat 0 last",
                Ok(Command::Bdat {
                    size: 0,
                    last: true,
                }),
            ),
            (
                "bdat_u64_max",
                b"BDAT 18446744073709551615 LAST",
                Ok(Command::Bdat {
                    size: u64::MAX,
                    last: true,
                }),
            ),
            (
                "bdat_beyond_u64",
                b"BDAT 18446744073709551616",
                Err(BAD_PARAM),
            ),
            ("bdat_no_size", b"BDAT", Err(BAD_PARAM)),
            ("bdat_negative", b"BDAT -1", Err(BAD_PARAM)),
            ("bdat_junk", b"BDAT 1 LAST x", Err(BAD_PARAM)),
            ("rset", b"RSET", Ok(Command::Rset)),
            ("noop_with_text", b"NOOP hello", Ok(Command::Noop)),
            ("quit", b"QUIT", Ok(Command::Quit)),
            ("vrfy", b"VRFY a", Ok(Command::Vrfy)),
            ("vrfy_empty", b"VRFY", Err(BAD_PARAM)),
            ("expn", b"EXPN list", Ok(Command::Expn)),
            ("help", b"HELP", Ok(Command::Help)),
            ("starttls", b"StartTLS", Ok(Command::StartTls)),
            ("starttls_argument", b"STARTTLS now", Err(BAD_PARAM)),
            (
                "unknown",
                b"GET / HTTP/1.1",
                Err(SessionError::UnknownCommand),
            ),
            ("empty", b"", Err(SessionError::UnknownCommand)),
            ("nul", b"NOOP\0", Err(SessionError::Syntax(""))),
            (
                "bare_cr_inside",
                b"NOOP\rMAIL FROM:<a@b>",
                Err(SessionError::Syntax("")),
            ),
            (
                "eight_bit_verb",
                b"\xffHLO a",
                Err(SessionError::UnknownCommand),
            ),
        ]
    }

    #[test]
    fn table() {
        for (name, line, want) in rows() {
            let got = parse(line);
            match (&got, &want) {
                (Err(SessionError::ParamSyntax(_)), Err(SessionError::ParamSyntax(_)))
                | (Err(SessionError::Syntax(_)), Err(SessionError::Syntax(_))) => {}
                _ => assert_eq!(got, want, "{name}"),
            }
        }
    }

    #[test]
    fn ascii_checks() {
        assert!(mailbox("a", "b").is_ascii());
        assert!(!mailbox("jörg", "b").is_ascii());
        assert!(ReversePath::Null.is_ascii());
    }

    #[test]
    fn mailboxes_a_path_takes() {
        for (local, domain, ok) in [
            ("a", "example.com", true),
            ("\"a b\"", "example.com", true),
            ("jörg", "example.com", true),
            ("bounces+1-a=<domain>", "sendgrid.example", false),
            ("a", "b@example.com", false),
            ("a b", "example.com", false),
            ("a\r", "example.com", false),
            ("a", "", false),
            ("", "example.com", false),
        ] {
            assert_eq!(is_mailbox(local, domain), ok, "{local}@{domain}");
        }
    }
}
