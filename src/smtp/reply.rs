//! SMTP replies: the basic reply code, the RFC 3463 enhanced status code and the text, plus
//! the constructors for every reply the server side sends. Nothing else in the crate spells a
//! reply code; errors become replies in [`crate::smtp::error::reply_for`].

use std::fmt;

/// An RFC 3463 enhanced status code, `class.subject.detail` (e.g. `5.7.1`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject sub-code (0..=999).
    pub subject: u16,
    /// The detail sub-code (0..=999).
    pub detail: u16,
}

impl EnhancedCode {
    /// Builds a code from its three parts.
    pub const fn new(class: u8, subject: u16, detail: u16) -> EnhancedCode {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }
}

/// Appends `n` in decimal (the reply writer's allocation-free `to_string`).
fn push_decimal(out: &mut Vec<u8>, n: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply, possibly multi-line. Text lines hold neither the code nor CRLF.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    lines: Vec<String>,
}

impl Reply {
    /// A single-line reply. `code` must be 200..=599.
    pub fn new(code: u16, enhanced: Option<EnhancedCode>, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply; an empty `lines` is sent as one empty line.
    pub fn multiline(code: u16, enhanced: Option<EnhancedCode>, lines: Vec<String>) -> Reply {
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// The three-digit reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, when the reply carries one.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The text lines, without code, enhanced code or CRLF.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The text lines joined with a space: for logs.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// 2xx: the command succeeded.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: go on (354 after DATA).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not try again.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// Appends the wire form: `250-first`, ..., `250 last`, each line CRLF-terminated and
    /// prefixed by the enhanced code when there is one (RFC 2034 §4: on every line).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        let empty = [String::new()];
        let lines: &[String] = if self.lines.is_empty() {
            &empty
        } else {
            &self.lines
        };
        for (i, line) in lines.iter().enumerate() {
            push_decimal(out, self.code);
            out.push(if i == last { b' ' } else { b'-' });
            if let Some(e) = self.enhanced {
                push_decimal(out, u16::from(e.class));
                out.push(b'.');
                push_decimal(out, e.subject);
                out.push(b'.');
                push_decimal(out, e.detail);
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            // A reply line never carries CR or LF of its own: a mirrored downstream text
            // must not be able to inject a second reply.
            out.extend(
                line.bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

/// The replies the server side sends on its own (everything but refusals, which come from
/// [`crate::smtp::error::reply_for`]), plus the positive answers the relay gives to questions.
impl Reply {
    /// `220 <hostname> ESMTP conbool`: the greeting (no enhanced code, RFC 2034 §3).
    pub fn greeting(hostname: &str) -> Reply {
        Reply::new(220, None, format!("{hostname} ESMTP conbool"))
    }

    /// The EHLO reply: `250-<hostname>` then one line per keyword (no enhanced code).
    pub fn ehlo(hostname: &str, keywords: Vec<String>) -> Reply {
        let mut lines = Vec::with_capacity(keywords.len() + 1);
        lines.push(hostname.to_string());
        lines.extend(keywords);
        Reply::multiline(250, None, lines)
    }

    /// The HELO reply: `250 <hostname>` (no enhanced code).
    pub fn helo(hostname: &str) -> Reply {
        Reply::new(250, None, hostname.to_string())
    }

    /// `250 2.0.0 OK`: NOOP, RSET.
    pub fn ok() -> Reply {
        Reply::new(250, Some(EnhancedCode::new(2, 0, 0)), "OK")
    }

    /// `250 2.1.0 Sender OK`.
    pub fn mail_ok() -> Reply {
        Reply::new(250, Some(EnhancedCode::new(2, 1, 0)), "Sender OK")
    }

    /// `250 2.1.5 Recipient OK`.
    pub fn rcpt_ok() -> Reply {
        Reply::new(250, Some(EnhancedCode::new(2, 1, 5)), "Recipient OK")
    }

    /// `354 End data with <CR><LF>.<CR><LF>` (class 3 has no enhanced code, RFC 3463 §3.1).
    pub fn start_data() -> Reply {
        Reply::new(354, None, "End data with <CR><LF>.<CR><LF>")
    }

    /// `250 2.0.0 Message accepted`.
    pub fn message_ok() -> Reply {
        Reply::new(250, Some(EnhancedCode::new(2, 0, 0)), "Message accepted")
    }

    /// `250 2.0.0 <n> octets received`: a BDAT chunk that is not the last (RFC 3030 §2).
    pub fn chunk_received(octets: u64) -> Reply {
        Reply::new(
            250,
            Some(EnhancedCode::new(2, 0, 0)),
            format!("{octets} octets received"),
        )
    }

    /// `221 2.0.0 Bye`: QUIT.
    pub fn bye() -> Reply {
        Reply::new(221, Some(EnhancedCode::new(2, 0, 0)), "Bye")
    }

    /// `252 2.5.0`: VRFY is not answered (RFC 5321 §3.5.3), but mail will be tried.
    pub fn cannot_verify() -> Reply {
        Reply::new(
            252,
            Some(EnhancedCode::new(2, 5, 0)),
            "Cannot VRFY user, but will accept message and attempt delivery",
        )
    }

    /// `214 2.0.0`: HELP.
    pub fn help() -> Reply {
        Reply::new(
            214,
            Some(EnhancedCode::new(2, 0, 0)),
            "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS",
        )
    }

    /// `220 2.0.0 Ready to start TLS` (RFC 3207 §4).
    pub fn ready_for_tls() -> Reply {
        Reply::new(220, Some(EnhancedCode::new(2, 0, 0)), "Ready to start TLS")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.enhanced {
            Some(e) => write!(f, "{} {} {}", self.code, e, self.text()),
            None => write!(f, "{} {}", self.code, self.text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_enhanced_code() {
        let r = Reply::new(250, Some(EnhancedCode::new(2, 1, 0)), "Sender OK");
        assert_eq!(r.to_bytes(), b"250 2.1.0 Sender OK\r\n");
    }

    #[test]
    fn multiline_puts_dash_on_all_but_last() {
        let r = Reply::multiline(250, None, vec!["a.example".into(), "PIPELINING".into()]);
        assert_eq!(r.to_bytes(), b"250-a.example\r\n250 PIPELINING\r\n");
    }

    #[test]
    fn text_cannot_inject_a_line() {
        let r = Reply::new(550, None, "x\r\n250 ok");
        assert_eq!(r.to_bytes(), b"550 x  250 ok\r\n");
    }
}
