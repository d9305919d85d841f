//! SMTP command lines (RFC 5321 §4.1): the `Command` type, envelope paths and the ESMTP
//! parameters that travel with them (SIZE, BODY, SMTPUTF8, DSN's RET/ENVID/NOTIFY/ORCPT).
//! Parsing takes one line without its CRLF; it never allocates beyond the line.

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
