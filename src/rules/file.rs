//! Rule files: the TOML text of `spam.rules` parsed and validated into [`RuleSpec`]s, with
//! errors that name the file, the rule and the key.
//!
//! A file is an array of `[[rule]]` tables:
//!
//! ```toml
//! [[rule]]
//! name = "ADVANCE_FEE"                 # A-Z a-z 0-9 _, at most 64; `__` prefix = sub-rule
//! description = "Advance-fee fraud wording"
//! score = 2.5                          # or: action = "reject" and text = "public reply text"
//! target = "body"                      # what is matched, see Target
//! phrases = ["next of kin", "western union"]   # literal, ASCII case-insensitive
//! word_bounded = true                  # phrases must start and end at word edges
//! # or: regex = "(?i)100% (free|guaranteed)"   # one regex per rule
//! [[rule.test]]
//! input = "Please reply with your next of kin details"
//! hit = true
//! ```
//!
//! Matching semantics:
//! - `phrases`: literal, ASCII case-insensitive; with `word_bounded`, the bytes before and after
//!   must not be word bytes (letters, digits, `_`, any non-ASCII byte). Each 1 to 256 bytes; the
//!   shortest phrase of a target sets how sparsely that target's stream is probed, so keep body
//!   phrases at 6 bytes or more.
//! - `regex`: `regex` crate syntax over bytes, Unicode off by default (`(?u)` turns it on),
//!   multi-line and CRLF-aware. On `body` and `raw` it runs per line (lines over
//!   [`MAX_LINE_BYTES`](crate::rules::MAX_LINE_BYTES) in segments), so `\A`, `\z` and `(?-m)`
//!   are refused there; on values it runs on the value's first `MAX_LINE_BYTES`.
//! - `globs`: `*` and `?` over the whole value, case-insensitive (`attachment_name`,
//!   `content_type`; file names lose trailing dots and spaces first, as Windows does).
//! - `domains`: the value's domain (the URL host, the HELO name, the part after `@` of
//!   `mail_from`/`rcpt`, the host a link's text shows) equals a listed domain or is below it.
//! - `from_name_brand`: `phrases` (brands) in the display name of the top-level `From` field
//!   that its address's domain does not hold (`"PayPal" <service@other.example>`); a phrase
//!   `brand = key key ...` names what the domain may hold instead (`"apple id = apple"`,
//!   `"amazon = amazon aws"`); see [`Target::FromNameBrand`].
//! - `link_text_host`: the host an HTML link's text shows (`<a href="https://x.example/">
//!   www.bank.example</a>`: its text one word with a dot and no `@`, a host name with a
//!   letters-only top-level label, not a file name like `invoice.pdf` unless it has a scheme or
//!   `www.`), looked at only when the registrable domain of the link's web target (`http`,
//!   `https`) is another.
//! - `header`, `any_header`, `header_present`, `header_absent` look at the top-level header only.
//! - `meta`: `expr` over rule names with `&&`/`and`, `||`/`or`, `!`/`not`, parentheses.
//! - A name starting with `__` makes a sub-rule: no score, not listed, only read by metas.
//! - `size`: `min_bytes` alone is decided as soon as that many bytes were seen; `max_bytes` only
//!   at `Scan::finish`.
//!
//! Inline tests: `[[rule.test]]` with `input` (a snippet in the rule's target: body text, raw
//! bytes, a header value, `Name: value` for `any_header`, header lines for presence rules, a
//! URL, `shown-text href` for `link_text_host`, a file name, a media type, an envelope value,
//! an IP address, a byte count) or `message`
//! (header lines, blank line, body), and `hit` (default true). See `CompiledRules::self_test`.
//!
//! Must not touch: files on disk (the caller reads them), scanning.

use serde::Deserialize;

/// The longest phrase accepted (bytes); bounds the automaton walks of the stream scanner.
pub const MAX_PHRASE_BYTES: usize = 256;
/// The longest reject text accepted (bytes); it goes into a `550 5.7.1` reply line.
pub const MAX_REJECT_TEXT_BYTES: usize = 200;
/// The longest rule name accepted.
pub const MAX_NAME_BYTES: usize = 64;
/// The longest regex source accepted (bytes).
pub const MAX_REGEX_BYTES: usize = 4096;
/// How deeply a meta expression may nest.
pub const MAX_EXPR_DEPTH: usize = 32;

/// One rule file's text, with the name errors should use for it.
#[derive(Clone, Debug)]
pub struct RuleSource {
    /// Where the text came from (a path, or `built-in`).
    pub origin: String,
    /// The TOML text.
    pub text: String,
}

/// Why a rule file cannot be used. The message names the file, the rule (by name and position)
/// and the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    origin: String,
    rule: Option<String>,
    key: Option<String>,
    problem: String,
}

impl RuleError {
    pub(crate) fn new(
        origin: &str,
        rule: Option<String>,
        key: Option<&str>,
        problem: String,
    ) -> Self {
        RuleError {
            origin: origin.to_string(),
            rule,
            key: key.map(str::to_string),
            problem,
        }
    }

    /// The file (or `built-in`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The rule, as `"NAME" (#N)` or `#N` when it has no usable name.
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// The key at fault, if one is.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(rule) = &self.rule {
            write!(f, ": rule {rule}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for RuleError {}

/// What a rule looks at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    /// Decoded text of text parts (`ScanEvent::Text`), matched as a stream; regexes per line.
    Body,
    /// Undecoded body bytes (`ScanEvent::RawBody`), as a stream; regexes per line.
    Raw,
    /// The decoded value of the top-level header field named by `header`.
    Header,
    /// Every top-level header field, as `Name: value`.
    AnyHeader,
    /// A top-level header field named `header` is present.
    HeaderPresent,
    /// No top-level header field named `header` (decided when the header block ends).
    HeaderAbsent,
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    MailFrom,
    /// Each envelope recipient.
    Rcpt,
    /// The `HELO`/`EHLO` name.
    Helo,
    /// The client's IP address (`cidrs`).
    ClientIp,
    /// Each URL found in text and HTML, as found.
    Url,
    /// The host of each URL, lower-cased, without user, port or trailing dot.
    UrlHost,
    /// The host an HTML link's text shows (`<a href="http://x.example/">www.bank.example</a>`:
    /// `www.bank.example`, lower-cased) when its registrable domain is not that of the link's
    /// web target (the `href`): what the reader is shown is not where the link goes.
    LinkTextHost,
    /// The display name of the top-level `From` field, for `phrases` that name a brand: a
    /// phrase hits when the name holds it (at word edges, ASCII case-insensitive; a capital
    /// `I` after a small letter read as `l`, as in `WaImart`) and the address's domain does not
    /// (letters and digits compared: `Wells Fargo` is in `wellsfargo.com`). A phrase
    /// `brand = key key ...` looks for `brand` and hits when the domain holds none of the keys
    /// (`apple id = apple`: `Apple ID` mails from `apple.com`).
    FromNameBrand,
    /// The file name of each MIME part that has one.
    AttachmentName,
    /// The media type of each MIME part (lower-cased `type/subtype`).
    ContentType,
    /// The message size in bytes (`min_bytes`, `max_bytes`).
    Size,
    /// A boolean combination of other rules (`expr`).
    Meta,
    /// A probability band of the statistical classifier (`CLASSIFIER_*`): added with a model
    /// (`spam.model`), never written in rule files.
    Classifier,
}

impl Target {
    fn parse(s: &str) -> Option<Target> {
        Some(match s {
            "body" => Target::Body,
            "raw" => Target::Raw,
            "header" => Target::Header,
            "any_header" => Target::AnyHeader,
            "header_present" => Target::HeaderPresent,
            "header_absent" => Target::HeaderAbsent,
            "mail_from" => Target::MailFrom,
            "rcpt" => Target::Rcpt,
            "helo" => Target::Helo,
            "client_ip" => Target::ClientIp,
            "url" => Target::Url,
            "url_host" => Target::UrlHost,
            "link_text_host" => Target::LinkTextHost,
            "from_name_brand" => Target::FromNameBrand,
            "attachment_name" => Target::AttachmentName,
            "content_type" => Target::ContentType,
            "size" => Target::Size,
            "meta" => Target::Meta,
            _ => return None,
        })
    }

    const NAMES: &'static str = "body, raw, header, any_header, header_present, header_absent, \
        mail_from, rcpt, helo, client_ip, url, url_host, link_text_host, from_name_brand, \
        attachment_name, content_type, size, meta";

    /// Whether values of this target are matched line by line as a stream.
    pub(crate) fn is_stream(self) -> bool {
        matches!(self, Target::Body | Target::Raw)
    }
}

/// What a rule matches with.
#[derive(Clone, Debug, PartialEq)]
pub enum Matcher {
    /// Literal phrases, ASCII case-insensitive.
    Phrases {
        /// The phrases as written.
        phrases: Vec<String>,
        /// Whether each must start and end at a word edge.
        word_bounded: bool,
    },
    /// One regex.
    Regex(String),
    /// Shell-style patterns (`*`, `?`), whole value, case-insensitive.
    Globs(Vec<String>),
    /// Domains: the value's domain equals one or is below one.
    Domains(Vec<String>),
    /// IP networks.
    Cidrs(Vec<Cidr>),
    /// Size bounds, inclusive.
    Size {
        /// At least this many bytes.
        min_bytes: Option<u64>,
        /// At most this many bytes.
        max_bytes: Option<u64>,
    },
    /// A meta expression.
    Expr(String),
    /// No matcher (header presence).
    None,
}

/// What hitting a rule does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Adds this score.
    Score(f64),
    /// Refuses the message with this public text.
    Reject(String),
}

/// One inline test of a rule.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleTest {
    /// What is fed.
    pub input: TestInput,
    /// Whether the rule must hit.
    pub hit: bool,
}

/// The input of a rule test.
#[derive(Clone, Debug, PartialEq)]
pub enum TestInput {
    /// A snippet in the rule's own target (body text, a header value, a URL, a file name...).
    Snippet(String),
    /// A small message: header lines, a blank line, body text.
    Message(String),
}

/// A validated rule, before compilation.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSpec {
    /// Unique name.
    pub name: String,
    /// What it means.
    pub description: String,
    /// What it does when hit.
    pub action: Action,
    /// What it looks at.
    pub target: Target,
    /// The header name for `header`, `header_present`, `header_absent`.
    pub header: Option<String>,
    /// How it matches.
    pub matcher: Matcher,
    /// Inline tests.
    pub tests: Vec<RuleTest>,
    /// Where it was defined (for errors from later stages).
    pub origin: String,
    /// Its position in its file, from 1.
    pub index: usize,
}

impl RuleSpec {
    /// Sub-rules (`__` prefix) feed meta rules only: not listed, not scored.
    pub fn is_hidden(&self) -> bool {
        self.name.starts_with("__")
    }

    pub(crate) fn label(&self) -> String {
        format!("\"{}\" (#{})", self.name, self.index)
    }

    pub(crate) fn error(&self, key: &str, problem: impl Into<String>) -> RuleError {
        RuleError::new(&self.origin, Some(self.label()), Some(key), problem.into())
    }
}

/// An IPv4 or IPv6 network, `addr/prefix` (a bare address is a /32 or /128).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cidr {
    addr: core::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: core::net::IpAddr = addr.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|&p| p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses match IPv4 networks).
    pub fn contains(&self, ip: core::net::IpAddr) -> bool {
        use core::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    description: String,
    score: Option<f64>,
    action: Option<String>,
    text: Option<String>,
    target: String,
    header: Option<String>,
    phrases: Option<Vec<String>>,
    word_bounded: Option<bool>,
    regex: Option<String>,
    globs: Option<Vec<String>>,
    domains: Option<Vec<String>>,
    cidrs: Option<Vec<String>>,
    min_bytes: Option<u64>,
    max_bytes: Option<u64>,
    expr: Option<String>,
    #[serde(default)]
    test: Vec<RawTest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    input: Option<String>,
    message: Option<String>,
    #[serde(default = "yes")]
    hit: bool,
}

fn yes() -> bool {
    true
}

/// Parses one rule file into specs (names are checked for uniqueness across files by the
/// compiler).
pub fn parse(source: &RuleSource) -> Result<Vec<RuleSpec>, RuleError> {
    let origin = source.origin.as_str();
    let file: RawFile = toml::from_str(&source.text)
        .map_err(|e| RuleError::new(origin, None, None, one_line(&e.to_string())))?;
    let mut specs = Vec::with_capacity(file.rule.len());
    for (i, value) in file.rule.into_iter().enumerate() {
        let index = i + 1;
        let name_hint = value
            .get("name")
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty())
            .map(|n| {
                format!(
                    "\"{}\" (#{index})",
                    n.chars().take(MAX_NAME_BYTES).collect::<String>()
                )
            })
            .unwrap_or_else(|| format!("#{index}"));
        if let Some((key, problem)) = type_problem(&value) {
            return Err(RuleError::new(origin, Some(name_hint), Some(key), problem));
        }
        let raw: RawRule = value.try_into().map_err(|e: toml::de::Error| {
            let msg = one_line(e.message());
            let key = serde_key(&msg);
            RuleError::new(origin, Some(name_hint.clone()), key.as_deref(), msg)
        })?;
        specs.push(validate(raw, origin, index)?);
    }
    Ok(specs)
}

/// A key of a rule whose value has the wrong type (serde's message would not name it).
fn type_problem(value: &toml::Value) -> Option<(&str, String)> {
    use toml::Value as V;
    let table = match value {
        V::Table(t) => t,
        _ => return Some(("rule", "each [[rule]] is a table".into())),
    };
    for (key, v) in table {
        let want = match key.as_str() {
            "name" | "description" | "action" | "text" | "target" | "header" | "regex" | "expr" => {
                "a string"
            }
            "score" => "a number",
            "word_bounded" => "true or false",
            "min_bytes" | "max_bytes" => "a byte count",
            "phrases" | "globs" | "domains" | "cidrs" => "an array of strings",
            "test" => "an array of [[rule.test]] tables",
            _ => continue,
        };
        let ok = match key.as_str() {
            "score" => matches!(v, V::Float(_) | V::Integer(_)),
            "word_bounded" => v.is_bool(),
            "min_bytes" | "max_bytes" => matches!(v, V::Integer(n) if *n >= 0),
            "phrases" | "globs" | "domains" | "cidrs" => {
                v.as_array().is_some_and(|a| a.iter().all(V::is_str))
            }
            "test" => v.as_array().is_some_and(|a| a.iter().all(V::is_table)),
            _ => v.is_str(),
        };
        if !ok {
            return Some((
                key.as_str(),
                format!("must be {want}, not {}", v.type_str()),
            ));
        }
    }
    None
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The key a serde message is about (`unknown field `x``, `missing field `x``, `invalid type ... for key `x``).
fn serde_key(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

fn validate(raw: RawRule, origin: &str, index: usize) -> Result<RuleSpec, RuleError> {
    let label = format!("\"{}\" (#{index})", raw.name);
    let err = |key: &str, problem: String| {
        RuleError::new(origin, Some(label.clone()), Some(key), problem)
    };
    if raw.name.is_empty()
        || raw.name.len() > MAX_NAME_BYTES
        || !raw
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(err(
            "name",
            format!("must be 1 to {MAX_NAME_BYTES} of A-Z a-z 0-9 _"),
        ));
    }
    let hidden = raw.name.starts_with("__");
    let action = match (raw.action.as_deref(), raw.score, raw.text) {
        (Some("reject"), None, Some(text)) => {
            if text.is_empty()
                || text.len() > MAX_REJECT_TEXT_BYTES
                || !text.bytes().all(|b| (0x20..0x7f).contains(&b))
            {
                return Err(err(
                    "text",
                    format!("must be 1 to {MAX_REJECT_TEXT_BYTES} printable ASCII characters"),
                ));
            }
            Action::Reject(text)
        }
        (Some("reject"), Some(_), _) => {
            return Err(err("score", "a reject rule has no score".into()))
        }
        (Some("reject"), None, None) => {
            return Err(err(
                "text",
                "a reject rule needs the public `text` of its reply".into(),
            ))
        }
        (Some(other), _, _) => {
            return Err(err(
                "action",
                format!("unknown action {other:?} (only \"reject\")"),
            ))
        }
        (None, _, Some(_)) => {
            return Err(err(
                "text",
                "only a rule with action = \"reject\" has a text".into(),
            ))
        }
        (None, Some(score), None) if score.is_finite() => Action::Score(score),
        (None, Some(_), None) => return Err(err("score", "must be a finite number".into())),
        (None, None, None) if hidden => Action::Score(0.0),
        (None, None, None) => {
            return Err(err(
                "score",
                "missing (or action = \"reject\" with a text)".into(),
            ))
        }
    };
    if hidden && action != Action::Score(0.0) {
        return Err(err(
            "score",
            "a `__` sub-rule only feeds meta rules: give it no score and no action".into(),
        ));
    }
    let Some(target) = Target::parse(&raw.target) else {
        return Err(err(
            "target",
            format!("unknown target {:?} (one of {})", raw.target, Target::NAMES),
        ));
    };
    let needs_header = matches!(
        target,
        Target::Header | Target::HeaderPresent | Target::HeaderAbsent
    );
    let header = match (needs_header, raw.header) {
        (true, Some(h)) => {
            if h.is_empty() || !h.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(err("header", "must be a header field name".into()));
            }
            Some(h)
        }
        (true, None) => {
            return Err(err(
                "header",
                format!("missing (target {:?} needs it)", raw.target),
            ))
        }
        (false, Some(_)) => {
            return Err(err(
                "header",
                format!("not used by target {:?}", raw.target),
            ))
        }
        (false, None) => None,
    };

    // Exactly one matcher, and one the target understands.
    let mut given: Vec<(&str, Matcher)> = Vec::new();
    if let Some(phrases) = raw.phrases {
        for p in &phrases {
            if p.is_empty() || p.len() > MAX_PHRASE_BYTES {
                return Err(err(
                    "phrases",
                    format!("each phrase must be 1 to {MAX_PHRASE_BYTES} bytes: {p:?}"),
                ));
            }
        }
        if phrases.is_empty() {
            return Err(err("phrases", "is empty".into()));
        }
        given.push((
            "phrases",
            Matcher::Phrases {
                phrases,
                word_bounded: raw.word_bounded.unwrap_or(false),
            },
        ));
    } else if raw.word_bounded.is_some() {
        return Err(err("word_bounded", "only applies to `phrases`".into()));
    }
    if let Some(regex) = raw.regex {
        if regex.len() > MAX_REGEX_BYTES {
            return Err(err("regex", format!("longer than {MAX_REGEX_BYTES} bytes")));
        }
        given.push(("regex", Matcher::Regex(regex)));
    }
    if let Some(globs) = raw.globs {
        if globs.is_empty()
            || globs
                .iter()
                .any(|g| g.is_empty() || g.len() > MAX_PHRASE_BYTES)
        {
            return Err(err(
                "globs",
                format!("need 1 or more patterns of 1 to {MAX_PHRASE_BYTES} bytes"),
            ));
        }
        given.push(("globs", Matcher::Globs(globs)));
    }
    if let Some(domains) = raw.domains {
        let mut clean = Vec::with_capacity(domains.len());
        for d in &domains {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if d.is_empty()
                || d.len() > 253
                || d.starts_with('.')
                || d.contains(|c: char| c.is_whitespace() || c == '/' || c == '@')
            {
                return Err(err("domains", format!("not a domain: {d:?}")));
            }
            clean.push(d);
        }
        if clean.is_empty() {
            return Err(err("domains", "is empty".into()));
        }
        given.push(("domains", Matcher::Domains(clean)));
    }
    if let Some(cidrs) = raw.cidrs {
        let mut nets = Vec::with_capacity(cidrs.len());
        for c in &cidrs {
            nets.push(
                Cidr::parse(c)
                    .ok_or_else(|| err("cidrs", format!("not an address or network: {c:?}")))?,
            );
        }
        if nets.is_empty() {
            return Err(err("cidrs", "is empty".into()));
        }
        given.push(("cidrs", Matcher::Cidrs(nets)));
    }
    if raw.min_bytes.is_some() || raw.max_bytes.is_some() {
        if let (Some(lo), Some(hi)) = (raw.min_bytes, raw.max_bytes) {
            if lo > hi {
                return Err(err("min_bytes", format!("{lo} is above max_bytes {hi}")));
            }
        }
        let key = if raw.min_bytes.is_some() {
            "min_bytes"
        } else {
            "max_bytes"
        };
        given.push((
            key,
            Matcher::Size {
                min_bytes: raw.min_bytes,
                max_bytes: raw.max_bytes,
            },
        ));
    }
    if let Some(expr) = raw.expr {
        given.push(("expr", Matcher::Expr(expr)));
    }
    if given.len() > 1 {
        let keys: Vec<&str> = given.iter().map(|(k, _)| *k).collect();
        return Err(err(
            keys[1],
            format!("one matcher per rule, found {}", keys.join(", ")),
        ));
    }
    let (key, matcher) = given.pop().unwrap_or(("", Matcher::None));
    let allowed: &[&str] = match target {
        Target::Body | Target::Raw | Target::Header | Target::AnyHeader | Target::Url => {
            &["phrases", "regex"]
        }
        Target::MailFrom | Target::Rcpt | Target::Helo | Target::UrlHost | Target::LinkTextHost => {
            &["phrases", "regex", "domains"]
        }
        Target::AttachmentName | Target::ContentType => &["phrases", "regex", "globs"],
        Target::FromNameBrand => &["phrases"],
        Target::HeaderPresent | Target::HeaderAbsent => &[""],
        Target::ClientIp => &["cidrs"],
        Target::Size => &["min_bytes", "max_bytes"],
        Target::Meta => &["expr"],
        // Target::parse never yields it: band rules come with a model, not from files.
        Target::Classifier => &[],
    };
    if !allowed.contains(&key) {
        let want = allowed
            .iter()
            .filter(|k| !k.is_empty())
            .copied()
            .collect::<Vec<_>>();
        return Err(if key.is_empty() {
            err(
                "target",
                format!("target {:?} needs one of: {}", raw.target, want.join(", ")),
            )
        } else if want.is_empty() {
            err(key, format!("target {:?} takes no matcher", raw.target))
        } else {
            err(
                key,
                format!("target {:?} takes one of: {}", raw.target, want.join(", ")),
            )
        });
    }

    let mut tests = Vec::with_capacity(raw.test.len());
    for (n, t) in raw.test.into_iter().enumerate() {
        let input = match (t.input, t.message) {
            (Some(s), None) => TestInput::Snippet(s),
            (None, Some(m)) => TestInput::Message(m),
            _ => {
                return Err(err(
                    "test",
                    format!("test #{} needs exactly one of `input` and `message`", n + 1),
                ))
            }
        };
        if target == Target::Meta && matches!(input, TestInput::Snippet(_)) {
            return Err(err(
                "test",
                format!("test #{}: a meta rule is tested with `message`", n + 1),
            ));
        }
        tests.push(RuleTest { input, hit: t.hit });
    }

    Ok(RuleSpec {
        name: raw.name,
        description: raw.description,
        action,
        target,
        header,
        matcher,
        tests,
        origin: origin.to_string(),
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> RuleSource {
        RuleSource {
            origin: "t.toml".into(),
            text: text.into(),
        }
    }

    const GOOD: &str = r#"
[[rule]]
name = "A"
description = "a"
score = 1.5
target = "body"
phrases = ["x y z"]
word_bounded = true
[[rule.test]]
input = "x y z"
"#;

    #[test]
    fn parses_a_phrase_rule() {
        let specs = parse(&src(GOOD)).expect("parses");
        assert_eq!(specs.len(), 1);
        let r = &specs[0];
        assert_eq!(r.name, "A");
        assert_eq!(r.action, Action::Score(1.5));
        assert_eq!(r.target, Target::Body);
        assert_eq!(
            r.matcher,
            Matcher::Phrases {
                phrases: vec!["x y z".into()],
                word_bounded: true
            }
        );
        assert_eq!(r.tests.len(), 1);
        assert!(r.tests[0].hit);
    }

    /// (row name, rule body after `[[rule]]`, expected rule label, expected key)
    const ERRORS: &[(&str, &str, &str, &str)] = &[
        ("unknown_key", "name = \"R\"\ndescription = \"d\"\nscore = 1\ntarget = \"body\"\nphrase = [\"a\"]", "\"R\" (#1)", "phrase"),
        ("missing_description", "name = \"R\"\nscore = 1\ntarget = \"body\"\nphrases = [\"a\"]", "\"R\" (#1)", "description"),
        ("bad_target", "name = \"R\"\ndescription = \"d\"\nscore = 1\ntarget = \"bodyy\"\nphrases = [\"a\"]", "\"R\" (#1)", "target"),
        ("bad_name", "name = \"R R\"\ndescription = \"d\"\nscore = 1\ntarget = \"body\"\nphrases = [\"a\"]", "\"R R\" (#1)", "name"),
        ("no_score", "name = \"R\"\ndescription = \"d\"\ntarget = \"body\"\nphrases = [\"a\"]", "\"R\" (#1)", "score"),
        ("reject_without_text", "name = \"R\"\ndescription = \"d\"\naction = \"reject\"\ntarget = \"body\"\nphrases = [\"a\"]", "\"R\" (#1)", "text"),
        ("two_matchers", "name = \"R\"\ndescription = \"d\"\nscore = 1\ntarget = \"body\"\nphrases = [\"a\"]\nregex = \"b\"", "\"R\" (#1)", "regex"),
        ("header_missing", "name = \"R\"\ndescription = \"d\"\nscore = 1\ntarget = \"header\"\nregex = \"b\"", "\"R\" (#1)", "header"),
        ("cidr_bad", "name = \"R\"\ndescription = \"d\"\nscore = 1\ntarget = \"client_ip\"\ncidrs = [\"10.0.0.0/33\"]", "\"R\" (#1)", "cidrs"),
        ("globs_on_body", "name = \"R\"\ndescription = \"d\"\nscore = 1\ntarget = \"body\"\nglobs = [\"*.exe\"]", "\"R\" (#1)", "globs"),
        ("no_matcher", "name = \"R\"\ndescription = \"d\"\nscore = 1\ntarget = \"body\"", "\"R\" (#1)", "target"),
        ("empty_phrase", "name = \"R\"\ndescription = \"d\"\nscore = 1\ntarget = \"body\"\nphrases = [\"\"]", "\"R\" (#1)", "phrases"),
        ("wrong_type", "name = \"R\"\ndescription = \"d\"\nscore = \"high\"\ntarget = \"body\"\nphrases = [\"a\"]", "\"R\" (#1)", "score"),
        ("hidden_with_score", "name = \"__R\"\ndescription = \"d\"\nscore = 2\ntarget = \"body\"\nphrases = [\"a\"]", "\"__R\" (#1)", "score"),
        ("meta_snippet_test", "name = \"R\"\ndescription = \"d\"\nscore = 2\ntarget = \"meta\"\nexpr = \"A\"\n[[rule.test]]\ninput = \"x\"", "\"R\" (#1)", "test"),
    ];

    #[test]
    fn errors_name_the_rule_and_the_key() {
        for (row, body, rule, key) in ERRORS {
            let err = parse(&src(&format!("[[rule]]\n{body}\n"))).expect_err(row);
            assert_eq!(err.rule(), Some(*rule), "{row}: {err}");
            assert_eq!(err.key(), Some(*key), "{row}: {err}");
            let text = err.to_string();
            assert!(text.starts_with("t.toml: rule "), "{row}: {text}");
        }
    }

    #[test]
    fn the_second_rule_is_named_by_position() {
        let text = format!("{GOOD}\n[[rule]]\ndescription = \"d\"\nscore = 1\ntarget = \"body\"\nphrases = [\"a\"]\n");
        let err = parse(&src(&text)).expect_err("missing name");
        assert_eq!(err.rule(), Some("#2"));
        assert_eq!(err.key(), Some("name"));
    }

    #[test]
    fn cidr_contains() {
        let rows: &[(&str, &str, &str, bool)] = &[
            ("v4_in", "10.0.0.0/8", "10.1.2.3", true),
            ("v4_out", "10.0.0.0/8", "11.1.2.3", false),
            ("v4_all", "0.0.0.0/0", "1.2.3.4", true),
            ("v4_host", "192.0.2.1", "192.0.2.1", true),
            ("v4_mapped", "192.0.2.0/24", "::ffff:192.0.2.7", true),
            ("v6_in", "2001:db8::/32", "2001:db8::1", true),
            ("v6_out", "2001:db8::/32", "2001:db9::1", false),
            ("family_mismatch", "2001:db8::/32", "10.0.0.1", false),
        ];
        for (row, net, ip, want) in rows {
            let c = Cidr::parse(net).expect(row);
            let ip: core::net::IpAddr = ip.parse().expect(row);
            assert_eq!(c.contains(ip), *want, "{row}");
        }
    }
}
