//! Loading a corpus for replay: every `*.eml` / `*.msg` file under a directory (recursively, in
//! path order) or one named file, read as bytes, a leading mbox `From ` line stripped, and an
//! envelope taken from the header (`Return-Path`, else `From`; `To` and `Cc`).
//!
//! Content is sent as-is: the SMTP client core dot-stuffs and frames it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::smtp::command::{is_mailbox, ForwardPath, Mailbox, ReversePath};

/// Files larger than this are skipped (counted in [`Corpus::skipped`]).
pub const MAX_MESSAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Total corpus bytes held in memory; loading more is an error.
pub const MAX_CORPUS_BYTES: u64 = 1024 * 1024 * 1024;

/// Header bytes examined for the envelope.
const MAX_HEADER_SCAN: usize = 256 * 1024;

/// Recipients taken from one message's `To` and `Cc`.
pub const MAX_RCPTS_PER_MESSAGE: usize = 100;

/// Files visited while walking a directory (bounds a walk of a huge tree).
const MAX_FILES: usize = 1_000_000;

/// One message ready to send.
#[derive(Clone, Debug)]
pub struct CorpusMessage {
    /// Where it came from.
    pub path: PathBuf,
    /// The content to send: the file minus any leading mbox `From ` line.
    pub content: Bytes,
    /// The reverse-path from `Return-Path` or `From` (fallback `sender@example.com`).
    pub from: ReversePath,
    /// The forward-paths from `To` and `Cc` (fallback `rcpt@example.com`).
    pub rcpts: Vec<ForwardPath>,
    /// The content has bytes above 0x7f (sent with `BODY=8BITMIME` when offered).
    pub eight_bit: bool,
}

impl CorpusMessage {
    /// Builds a message from file bytes (the `From ` line is stripped here).
    pub fn from_bytes(path: PathBuf, raw: &[u8]) -> CorpusMessage {
        let content = strip_from_line(raw);
        let (from, rcpts) = envelope_from_header(content);
        CorpusMessage {
            path,
            eight_bit: content.iter().any(|b| *b >= 0x80),
            content: Bytes::copy_from_slice(content),
            from: from.unwrap_or_else(|| ReversePath::Mailbox(mailbox("sender", "example.com"))),
            rcpts: if rcpts.is_empty() {
                vec![mailbox("rcpt", "example.com")]
            } else {
                rcpts
            },
        }
    }
}

/// The messages of a corpus, in path order.
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    /// The messages.
    pub messages: Vec<CorpusMessage>,
    /// Content bytes in all.
    pub bytes: u64,
    /// Files skipped for being larger than [`MAX_MESSAGE_BYTES`].
    pub skipped: usize,
}

impl Corpus {
    /// Loads `path`: a directory (every `*.eml` and `*.msg` below it, hidden entries skipped)
    /// or a single file of any name.
    pub fn load(path: &Path) -> io::Result<Corpus> {
        let mut files = Vec::new();
        if path.is_dir() {
            walk(path, &mut files)?;
            files.sort();
        } else {
            files.push(path.to_path_buf());
        }
        let mut corpus = Corpus::default();
        for file in files {
            let len = fs::metadata(&file)?.len();
            if len > MAX_MESSAGE_BYTES {
                corpus.skipped += 1;
                continue;
            }
            if corpus.bytes + len > MAX_CORPUS_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "corpus {} exceeds {} MiB",
                        path.display(),
                        MAX_CORPUS_BYTES >> 20
                    ),
                ));
            }
            let raw = fs::read(&file)?;
            let msg = CorpusMessage::from_bytes(file, &raw);
            corpus.bytes += msg.content.len() as u64;
            corpus.messages.push(msg);
        }
        Ok(corpus)
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// No messages.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// The corpus used when `--corpus` is not given: `./corpus` if the working directory has one,
/// else the bundled `corpus/` next to the crate's `Cargo.toml`.
pub fn default_corpus_dir() -> PathBuf {
    let here = PathBuf::from("corpus");
    if here.is_dir() {
        here
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
    }
}

pub use crate::mbox::strip_from_line;

pub use crate::smtp::encode::canonical_crlf;

/// The envelope a message's header implies: the reverse-path from `Return-Path` (so `<>`
/// bounces stay null-sender) or else the first `From` address, and the forward-paths of `To`
/// and `Cc` (duplicates dropped, at most [`MAX_RCPTS_PER_MESSAGE`]).
pub fn envelope_from_header(content: &[u8]) -> (Option<ReversePath>, Vec<ForwardPath>) {
    let mut return_path = None;
    let mut from = None;
    let mut rcpts: Vec<ForwardPath> = Vec::new();
    for (name, value) in header_fields(content) {
        let value = String::from_utf8_lossy(&value);
        if name.eq_ignore_ascii_case(b"return-path") && return_path.is_none() {
            let v = value.trim();
            if v == "<>" {
                return_path = Some(ReversePath::Null);
            } else if let Some(m) = addresses(v).into_iter().next() {
                return_path = Some(ReversePath::Mailbox(m));
            }
        } else if name.eq_ignore_ascii_case(b"from") && from.is_none() {
            from = addresses(&value)
                .into_iter()
                .next()
                .map(ReversePath::Mailbox);
        } else if name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"cc") {
            for m in addresses(&value) {
                if rcpts.len() < MAX_RCPTS_PER_MESSAGE && !rcpts.contains(&m) {
                    rcpts.push(m);
                }
            }
        }
    }
    (return_path.or(from), rcpts)
}

/// Parses an address given on the command line: `<>` or an empty string is the null path.
pub fn parse_reverse_path(s: &str) -> Option<ReversePath> {
    let t = s.trim();
    if t.is_empty() || t == "<>" {
        return Some(ReversePath::Null);
    }
    addresses(t).into_iter().next().map(ReversePath::Mailbox)
}

/// Parses one forward-path given on the command line (`user@domain` or `<user@domain>`).
pub fn parse_forward_path(s: &str) -> Option<ForwardPath> {
    addresses(s.trim()).into_iter().next()
}

fn mailbox(local: &str, domain: &str) -> Mailbox {
    Mailbox {
        local: local.to_string(),
        domain: domain.to_string(),
    }
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&path, files)?;
        } else if kind.is_file() && is_message_file(&path) {
            if files.len() >= MAX_FILES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "more than {MAX_FILES} message files under {}",
                        dir.display()
                    ),
                ));
            }
            files.push(path);
        }
    }
    Ok(())
}

fn is_message_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("eml") || e.eq_ignore_ascii_case("msg"))
}

/// The unfolded header fields (name, value) of the top-level header block.
fn header_fields(content: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let head = &content[..content.len().min(MAX_HEADER_SCAN)];
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = fields.last_mut() {
                value.push(b' ');
                value.extend_from_slice(line.trim_ascii_start());
            }
            continue;
        }
        if let Some(colon) = memchr::memchr(b':', line) {
            let name = line[..colon].trim_ascii_end();
            fields.push((name.to_vec(), line[colon + 1..].trim_ascii().to_vec()));
        }
    }
    fields
}

/// The addresses in an RFC 5322 address list, leniently: `Name <a@b>`, bare `a@b`, groups,
/// comments and quoted display names; items without a usable `local@domain` are skipped.
fn addresses(list: &str) -> Vec<Mailbox> {
    let mut out = Vec::new();
    for item in split_list(list) {
        let spec = match (item.find('<'), item.rfind('>')) {
            (Some(open), Some(close)) if open < close => item[open + 1..close].to_string(),
            _ => {
                let bare = strip_comments(&item);
                // `group: a@b` keeps what follows the colon; a trailing `;` closes the group.
                let bare = match bare.split_once(':') {
                    Some((label, rest)) if !label.contains('@') => rest.to_string(),
                    _ => bare,
                };
                bare.trim().trim_end_matches(';').trim().to_string()
            }
        };
        // A source route `@a,@b:user@d` is dropped (RFC 5321 §4.1.1.3 allows it).
        let spec = match spec.strip_prefix('@').and_then(|s| s.split_once(':')) {
            Some((_, rest)) => rest.to_string(),
            None => spec,
        };
        if let Some((local, domain)) = spec.trim().rsplit_once('@') {
            // Anonymised or broken headers hold things like `a=<domain>@b.example`, which a
            // server refuses (`501 5.5.4`): such an address is skipped, not sent.
            if is_mailbox(local, domain) {
                out.push(mailbox(local, domain));
            }
        }
    }
    out
}

/// Splits at commas outside quotes, angle brackets and comments; a `;` ends a group.
fn split_list(list: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut angle, mut comment, mut escaped) = (false, false, 0u32, false);
    for c in list.chars() {
        if escaped {
            escaped = false;
            cur.push(c);
            continue;
        }
        match c {
            '\\' if quoted || comment > 0 => escaped = true,
            '"' if comment == 0 => quoted = !quoted,
            '(' if !quoted => comment += 1,
            ')' if !quoted && comment > 0 => comment -= 1,
            '<' if !quoted && comment == 0 => angle = true,
            '>' if !quoted && comment == 0 => angle = false,
            ',' | ';' if !quoted && !angle && comment == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items.retain(|s| !s.trim().is_empty());
    items
}

fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0u32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(s: &str) -> Mailbox {
        let (l, d) = s.rsplit_once('@').expect("test address has @");
        mailbox(l, d)
    }

    #[test]
    fn envelope_comes_from_the_header() {
        type Row = (
            &'static str,
            &'static [u8],
            Option<&'static str>,
            &'static [&'static str],
        );
        const ROWS: &[Row] = &[
            (
                "plain",
                b"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\n\r\nx",
                Some("alice@example.com"),
                &["bob@example.com"],
            ),
            (
                "return_path_wins",
                b"Return-Path: <bounce@example.com>\r\nFrom: a@example.com\r\nTo: b@example.com\r\n\r\n",
                Some("bounce@example.com"),
                &["b@example.com"],
            ),
            (
                "null_return_path",
                b"Return-Path: <>\r\nFrom: MAILER-DAEMON@example.com\r\nTo: b@example.com\r\n\r\n",
                None,
                &["b@example.com"],
            ),
            (
                "folded_to_and_cc_dedup",
                b"To: \"Doe, John\" <john@example.com>,\r\n  =?UTF-8?Q?Zo=C3=AB?= <zoe@example.com>\r\nCc: john@example.com, (comment) carl@example.com\r\n\r\n",
                None,
                &["john@example.com", "zoe@example.com", "carl@example.com"],
            ),
            (
                "group_and_undisclosed",
                b"To: team: a@example.com, b@example.com;, undisclosed-recipients:;\r\n\r\n",
                None,
                &["a@example.com", "b@example.com"],
            ),
            (
                "body_is_not_header",
                b"Subject: x\r\n\r\nTo: body@example.com\r\n",
                None,
                &[],
            ),
            (
                "lf_only_and_source_route",
                b"From: <@relay.example,@b.example:u@example.com>\nTo: v@example.com\n\n",
                Some("u@example.com"),
                &["v@example.com"],
            ),
            (
                "unsendable_return_path_falls_back_to_from",
                b"Return-Path: <bounces+1-a=<domain>@sendgrid.example>\r\nFrom: citi <c@example.com>\r\nTo: <user@>, b@example.com, x y@example.com\r\n\r\n",
                Some("c@example.com"),
                &["b@example.com"],
            ),
            (
                "no_sendable_address",
                b"Return-Path: <MAILER-DAEMON>\r\nFrom: invalid-email-format\r\nCc: <a@b@example.com>\r\n\r\n",
                None,
                &[],
            ),
        ];
        for (name, input, from, rcpts) in ROWS {
            let (got_from, got_rcpts) = envelope_from_header(input);
            match (from, &got_from) {
                (Some(f), Some(ReversePath::Mailbox(m))) => assert_eq!(*m, mb(f), "{name}"),
                (None, None) => {}
                (None, Some(ReversePath::Null)) => assert_eq!(*name, "null_return_path"),
                _ => panic!("{name}: from {got_from:?}"),
            }
            let want: Vec<Mailbox> = rcpts.iter().map(|s| mb(s)).collect();
            assert_eq!(got_rcpts, want, "{name}");
        }
    }

    #[test]
    fn fallback_envelope_when_header_has_none() {
        let m = CorpusMessage::from_bytes(PathBuf::from("x"), b"Subject: hi\r\n\r\nbody\r\n");
        assert_eq!(
            m.from,
            ReversePath::Mailbox(mailbox("sender", "example.com"))
        );
        assert_eq!(m.rcpts, vec![mailbox("rcpt", "example.com")]);
        assert!(!m.eight_bit);
    }

    #[test]
    fn command_line_addresses() {
        assert_eq!(parse_reverse_path("<>"), Some(ReversePath::Null));
        assert_eq!(parse_reverse_path(""), Some(ReversePath::Null));
        assert_eq!(
            parse_reverse_path("a@example.com"),
            Some(ReversePath::Mailbox(mb("a@example.com")))
        );
        assert_eq!(
            parse_forward_path("<b@example.com>"),
            Some(mb("b@example.com"))
        );
        assert_eq!(parse_forward_path("nonsense"), None);
    }

    #[test]
    fn bundled_corpus_loads_with_example_com_envelopes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let corpus = Corpus::load(&dir).expect("bundled corpus loads");
        assert!(corpus.len() >= 250, "only {} messages", corpus.len());
        assert_eq!(corpus.skipped, 0);
        let mut null_senders = 0;
        for m in &corpus.messages {
            let name = m.path.display();
            assert!(m.content.ends_with(b"\r\n"), "{name}: ends without CRLF");
            assert_eq!(
                &*canonical_crlf(&m.content),
                &m.content[..],
                "{name}: bare line end"
            );
            match &m.from {
                ReversePath::Null => null_senders += 1,
                ReversePath::Mailbox(mb) => assert_eq!(mb.domain, "example.com", "{name}"),
            }
            assert!(!m.rcpts.is_empty(), "{name}");
            assert!(m.rcpts.iter().all(|r| r.domain == "example.com"), "{name}");
        }
        assert!(
            null_senders > 0,
            "the DSNs should replay with a null sender"
        );
    }

    #[test]
    fn shared_corpus_mbox_lines_are_stripped() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/spamassassin");
        if !dir.is_dir() {
            eprintln!("skipping: no corpus at {}", dir.display());
            return;
        }
        let corpus = Corpus::load(&dir).expect("loads");
        assert!(!corpus.is_empty());
        for m in &corpus.messages {
            assert!(!m.content.starts_with(b"From "), "{}", m.path.display());
        }
    }
}
