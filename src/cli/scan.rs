//! `conbool scan [--config F] [--json] FILE...`: the relay's rule engine, offline, on message
//! files (a FILE may also be an mbox, a Maildir or a folder: each message in it is scanned,
//! named as [`crate::cli::mailboxes`] lists it). Each message goes through the same message
//! pipeline and rules as in the relay: the verdict (flag, score, rules) is the one taken when
//! the header block plus `scan_window` body bytes have been seen, as the relay stamps it; a
//! `reject` rule matching anywhere in the message is reported too. Each rule of the verdict is
//! listed with its score and where it hit (the target, and the text it matched with its
//! context; see `src/rules/explain.rs`). Exit status 0 whatever the verdicts (2 when the rules
//! or the configuration cannot be loaded).
//!
//! Also the shared helpers that read `spam.rules` files and the `spam.model` file:
//! [`load_rules`], [`load_model`], [`load_spam_rules`].

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;

use crate::classify::{InternalHosts, Model};
use crate::cli::mailboxes::{read_stored, stored_under};
use crate::config::{Config, Spam};
use crate::message::{feed_whole, MessageLimits, Recorded, Recorder, ScanEvent, ScanSink};
use crate::rules::{CompiledRules, RuleSource, Scan, Where};
use crate::smtp::encode::canonical_crlf;

/// Deepest MIME nesting walked (as the relay).
pub const MAX_MIME_DEPTH: usize = 32;
/// Most MIME parts walked (as the relay).
pub const MAX_MIME_PARTS: usize = 1000;
/// The largest rule file read.
pub const MAX_RULE_FILE_BYTES: u64 = 16 << 20;
/// The largest model file read (`2^24` weights).
pub const MAX_MODEL_FILE_BYTES: u64 = 40 << 20;
/// The largest list of internal hosts read (`spam.internal_hosts`, `--internal-hosts`).
pub const MAX_INTERNAL_HOSTS_FILE_BYTES: u64 = 1 << 20;
/// The largest message file scanned (`limits.max_message_size` is far below).
pub const MAX_SCAN_FILE_BYTES: u64 = 1 << 30;

/// Flags of `conbool scan`.
#[derive(clap::Args, Debug, Clone)]
pub struct ScanArgs {
    /// Configuration file: `spam.rules`, `spam.threshold` and `[limits]` come from it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// A rule file (repeatable); replaces `spam.rules`.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// Replaces `spam.threshold` (default 5.0).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// A classifier model file (`conbool train`); replaces `spam.model`.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// A list of the hosts that handed the messages over (`conbool train --internal-hosts`,
    /// without sources): their `Received` fields on top are not the classifier's; replaces
    /// `spam.internal_hosts`.
    #[arg(long, value_name = "FILE")]
    pub internal_hosts: Option<PathBuf>,
    /// One JSON object per file and line: file, spam, flag, score, rules, and hits (each rule
    /// with its score and where it hit).
    #[arg(long)]
    pub json: bool,
    /// Message files, mboxes (each message scanned), Maildirs and folders of them; `-` reads
    /// standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// What scanning one message found.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The flag the relay would write (`X-Conbool-Flag: YES`).
    pub spam: bool,
    /// The score it would write.
    pub score: f64,
    /// The rules hit, by name.
    pub rules: Vec<String>,
    /// The public text of a `reject` rule that hit (within or after the window).
    pub reject: Option<String>,
    /// Why the relay would refuse the message before any verdict (header block too big).
    pub error: Option<String>,
}

/// Reads and compiles rule files (the built-in set when `paths` is empty).
pub fn load_rules(paths: &[PathBuf], threshold: f64) -> Result<Arc<CompiledRules>, String> {
    if paths.is_empty() {
        return Ok(CompiledRules::builtin(threshold));
    }
    CompiledRules::compile(&read_rule_files(paths)?, threshold)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

fn read_rule_files(paths: &[PathBuf]) -> Result<Vec<RuleSource>, String> {
    let mut sources = Vec::with_capacity(paths.len());
    for p in paths {
        let mut text = String::new();
        std::fs::File::open(p)
            .and_then(|f| f.take(MAX_RULE_FILE_BYTES).read_to_string(&mut text))
            .map_err(|e| format!("{}: {e}", p.display()))?;
        sources.push(RuleSource {
            origin: p.display().to_string(),
            text,
        });
    }
    Ok(sources)
}

/// Reads and checks a model file (`spam.model`).
pub fn load_model(path: &Path) -> Result<Arc<Model>, String> {
    let bytes = read_capped(path, MAX_MODEL_FILE_BYTES)?;
    Model::from_bytes(&bytes)
        .map(Arc::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A file's bytes, refused (with its name) when it cannot be read or is longer than `max`.
fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!("{}: longer than {max} bytes", path.display()));
    }
    Ok(bytes)
}

/// Reads a list of internal hosts (`spam.internal_hosts`, `--internal-hosts`) as text.
pub fn read_internal_hosts_text(path: &Path) -> Result<String, String> {
    let bytes = read_capped(path, MAX_INTERNAL_HOSTS_FILE_BYTES)?;
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))
}

/// Reads and checks the list of internal hosts that `spam.internal_hosts` names.
pub fn load_internal_hosts(path: &Path) -> Result<Arc<InternalHosts>, String> {
    let text = read_internal_hosts_text(path)?;
    let shown = path.display();
    if let Some(line) = InternalHosts::limited_line(&text) {
        return Err(format!(
            "{shown}: line {line}: an entry limited to sources is for `conbool train` and `eval` only"
        ));
    }
    InternalHosts::parse(&text, None)
        .map(Arc::new)
        .map_err(|e| format!("{shown}: {e}"))
}

/// The rules and model that `[spam]` names: `spam.rules` (or the built-in set) with the
/// `spam.model` classifier attached when set.
pub fn load_spam_rules(spam: &Spam) -> Result<Arc<CompiledRules>, String> {
    match &spam.model {
        Some(path) => compile_spam_rules(spam, Some(load_model(path)?)),
        None => load_rules(&spam.rules, spam.threshold),
    }
}

/// `spam.rules` (or the built-in set) and `spam.threshold`, with `model` attached.
pub fn compile_spam_rules(
    spam: &Spam,
    model: Option<Arc<Model>>,
) -> Result<Arc<CompiledRules>, String> {
    let sources = if spam.rules.is_empty() {
        vec![RuleSource {
            origin: "built-in rules/default.toml".into(),
            text: crate::rules::DEFAULT_RULES.into(),
        }]
    } else {
        read_rule_files(&spam.rules)?
    };
    let rules = CompiledRules::compile(&sources, spam.threshold).map_err(|e| e.to_string())?;
    let Some(model) = model else {
        return Ok(Arc::new(rules));
    };
    let rules = rules.with_model(model).map_err(|e| e.to_string())?;
    Ok(Arc::new(match &spam.internal_hosts {
        Some(path) => rules.with_internal_hosts(load_internal_hosts(path)?),
        None => rules,
    }))
}

/// Scans one message (file bytes: an mbox `From ` line is dropped, bare CR and LF become CRLF
/// as under `bare_lf = "normalize"`).
pub fn scan_message(rules: &Arc<CompiledRules>, limits: MessageLimits, msg: &[u8]) -> Outcome {
    scan_recording(rules, limits, msg, false).0
}

/// A message's scan events as [`explain_message`] locates rules in them.
struct Recording {
    events: Vec<Recorded>,
    /// How many events came before the verdict (all of them when the window was never
    /// complete).
    window: usize,
    /// The classifier's probability when the verdict was taken.
    probability: Option<f64>,
    /// The verdict was taken at the message's end (it was shorter than the scan window).
    at_end: bool,
    /// The message's size as scanned.
    size: u64,
}

/// The scan, and a copy of every event it is given.
struct Tee {
    scan: Scan,
    rec: Option<Recorder>,
}

impl ScanSink for Tee {
    fn event(&mut self, ev: ScanEvent<'_>) {
        self.scan.event(ev);
        if let Some(rec) = &mut self.rec {
            rec.event(ev);
        }
    }
}

/// [`scan_message`], and with `record` the events it scanned (`None` for a refused message).
fn scan_recording(
    rules: &Arc<CompiledRules>,
    limits: MessageLimits,
    msg: &[u8],
    record: bool,
) -> (Outcome, Option<Recording>) {
    let msg = Bytes::from(canonical_crlf(strip_from_line(msg)).into_owned());
    let mut tee = Tee {
        scan: Scan::new(Arc::clone(rules)),
        rec: record.then(Recorder::default),
    };
    // The verdict, and with a recording how many events came before it and the probability.
    let taken = |tee: &Tee| {
        let recorded = tee
            .rec
            .as_ref()
            .map(|r| (r.events.len(), tee.scan.probability()));
        (tee.scan.verdict(), tee.scan.hit_names(), recorded)
    };
    let mut window = None;
    let fed = feed_whole(limits, &msg, &mut tee, |tee| {
        window = Some(taken(tee));
        ControlFlow::Continue(())
    });
    if fed.is_err() {
        return (refused("header block over limits.max_header_bytes"), None);
    }
    tee.scan.finish(msg.len() as u64);
    let last = tee.scan.verdict();
    let at_end = window.is_none();
    let (v, names, recorded) = window.unwrap_or_else(|| taken(&tee));
    let outcome = Outcome {
        spam: v.spam,
        score: v.score,
        rules: names
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        reject: last.reject,
        error: None,
    };
    let recording = tee
        .rec
        .zip(recorded)
        .map(|(r, (window, probability))| Recording {
            events: r.events,
            window,
            probability,
            at_end,
            size: msg.len() as u64,
        });
    (outcome, recording)
}

/// One rule hit of a verdict and where it hit.
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    /// The rule's name.
    pub rule: String,
    /// Its score (0 for a `reject` rule).
    pub score: f64,
    /// Where it hit.
    pub place: Where,
}

/// [`scan_message`], and where each rule of the verdict hit (see `src/rules/explain.rs`): the
/// scan's events are recorded as it goes and each rule is located in those before the verdict.
pub fn explain_message(
    rules: &Arc<CompiledRules>,
    limits: MessageLimits,
    msg: &[u8],
) -> (Outcome, Vec<Located>) {
    let (outcome, recording) = scan_recording(rules, limits, msg, true);
    let Some(r) = recording else {
        return (outcome, Vec::new());
    };
    // The verdict's rules hit within the window, so their first places are there.
    let before = r.events.get(..r.window).unwrap_or(&r.events);
    let located = outcome
        .rules
        .iter()
        .filter_map(|name| {
            let id = rules.find(name)?;
            let mut place = rules.locate(id, before, r.size, r.probability);
            if rules.is_classifier_band(id) {
                place.tokens = rules.classifier_tokens(before, r.at_end.then_some(r.size));
            }
            Some(Located {
                rule: name.clone(),
                score: rules.score(id),
                place,
            })
        })
        .collect();
    (outcome, located)
}

fn refused(why: &str) -> Outcome {
    Outcome {
        spam: false,
        score: 0.0,
        rules: Vec::new(),
        reject: None,
        error: Some(why.to_string()),
    }
}

/// Runs `conbool scan`.
pub fn main(args: ScanArgs) -> ExitCode {
    let (mut spam, limits) = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => (
                c.spam.clone(),
                MessageLimits {
                    max_header_bytes: c.limits.max_header_bytes,
                    scan_window: c.limits.scan_window,
                    max_mime_depth: MAX_MIME_DEPTH,
                    max_mime_parts: MAX_MIME_PARTS,
                },
            ),
            Err(e) => {
                eprintln!("conbool scan: {e}");
                return ExitCode::from(2);
            }
        },
        None => (Config::embedded_defaults().spam, default_limits()),
    };
    if !args.rules.is_empty() {
        spam.rules = args.rules.clone();
    }
    if let Some(t) = args.threshold {
        spam.threshold = t;
    }
    if let Some(h) = &args.internal_hosts {
        spam.internal_hosts = Some(h.clone());
    }
    if let Some(m) = &args.model {
        spam.model = Some(m.clone());
    }
    let rules = match load_spam_rules(&spam) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conbool scan: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for file in &args.files {
        let name = file.display().to_string();
        let stored = if name == "-" {
            vec![None]
        } else {
            match stored_under(file) {
                Ok(list) => list.into_iter().map(Some).collect(),
                Err(e) => {
                    eprintln!("conbool scan: {e}");
                    continue;
                }
            }
        };
        for m in stored {
            let (name, bytes) = match m {
                None => {
                    let mut b = Vec::new();
                    let read = std::io::stdin()
                        .take(MAX_SCAN_FILE_BYTES)
                        .read_to_end(&mut b);
                    (name.clone(), read.map(|_| b).map_err(|e| format!("-: {e}")))
                }
                Some(m) => (m.name, read_stored(&m.path, m.part)),
            };
            let line = match bytes {
                Ok(b) => {
                    let (outcome, located) = explain_message(&rules, limits, &b);
                    format_outcome(&name, &outcome, &located, args.json)
                }
                Err(e) => {
                    eprintln!("conbool scan: {e}");
                    continue;
                }
            };
            if writeln!(out, "{line}").is_err() {
                return ExitCode::SUCCESS;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The `[limits]` defaults of DESIGN.md §6.
pub fn default_limits() -> MessageLimits {
    MessageLimits {
        max_header_bytes: 262_144,
        scan_window: 65_536,
        max_mime_depth: MAX_MIME_DEPTH,
        max_mime_parts: MAX_MIME_PARTS,
    }
}

/// The output for one file. Text: a line with the flag, the score and the rules hit, then one
/// line per rule with its score and where it hit. JSON (one line): `file`, `spam`, `flag`,
/// `score`, `rules`, `hits` (per rule: `rule`, `score`, `target`, and `match` and `context`,
/// or `note`, or `located: false`), plus `reject` and `error` when set.
pub fn format_outcome(file: &str, o: &Outcome, located: &[Located], json: bool) -> String {
    let flag = if o.spam { "YES" } else { "NO" };
    if json {
        let rules: Vec<String> = o.rules.iter().map(|r| json_string(r)).collect();
        let hits: Vec<String> = located.iter().map(json_hit).collect();
        let mut s = format!(
            "{{\"file\":{},\"spam\":{},\"flag\":\"{flag}\",\"score\":{:.1},\"rules\":[{}],\"hits\":[{}]",
            json_string(file),
            o.spam,
            o.score,
            rules.join(","),
            hits.join(",")
        );
        if let Some(r) = &o.reject {
            s.push_str(&format!(",\"reject\":{}", json_string(r)));
        }
        if let Some(e) = &o.error {
            s.push_str(&format!(",\"error\":{}", json_string(e)));
        }
        s.push('}');
        s
    } else {
        let mut s = format!("{file}: {flag} {:.1} ({})", o.score, o.rules.join(","));
        if let Some(r) = &o.reject {
            s.push_str(&format!(" reject: {r}"));
        }
        if let Some(e) = &o.error {
            s.push_str(&format!(" error: {e}"));
        }
        for l in located {
            push_place(&mut s, 1, &format!("{} {:+.1}", l.rule, l.score), &l.place);
        }
        s
    }
}

/// A text line for rule `what` hit at `p` (indented `depth` steps), then its sub-rules'.
fn push_place(s: &mut String, depth: usize, what: &str, p: &Where) {
    s.push_str(&format!("\n{:w$}{what} {}: ", "", p.target, w = 2 * depth));
    // Quoted, with the quotes inside escaped (the rest is escaped already).
    let quoted = |t: &str| format!("\"{}\"", t.replace('"', "\\\""));
    match (&p.matched, &p.context, &p.note) {
        (Some(m), Some(c), _) => s.push_str(&format!("{} in {}", quoted(m), quoted(c))),
        (Some(m), None, _) => s.push_str(&quoted(m)),
        (None, _, Some(n)) => s.push_str(n),
        (None, _, None) => s.push_str("not located"),
    }
    for (name, part) in &p.parts {
        push_place(s, depth + 1, name, part);
    }
    let (raised, lowered): (Vec<_>, Vec<_>) = p.tokens.iter().partition(|(_, c)| *c > 0.0);
    for (label, list) in [("spam-like", raised), ("ham-like", lowered)] {
        if !list.is_empty() {
            let shown: Vec<String> = list
                .iter()
                .map(|(name, c)| format!("{} {c:+.2}", quoted(name)))
                .collect();
            s.push_str(&format!(
                "\n{:w$}{label}: {}",
                "",
                shown.join(", "),
                w = 2 * (depth + 1)
            ));
        }
    }
}

/// One rule hit of [`format_outcome`]'s JSON.
fn json_hit(l: &Located) -> String {
    json_place(&l.rule, Some(l.score), &l.place)
}

/// Rule `rule` hit at `p`, as a JSON object (sub-rules in `parts`, without a score).
fn json_place(rule: &str, score: Option<f64>, p: &Where) -> String {
    let mut s = format!("{{\"rule\":{}", json_string(rule));
    if let Some(score) = score {
        s.push_str(&format!(",\"score\":{score:.1}"));
    }
    s.push_str(&format!(",\"target\":{}", json_string(&p.target)));
    if let Some(m) = &p.matched {
        s.push_str(&format!(",\"match\":{}", json_string(m)));
    }
    if let Some(c) = &p.context {
        s.push_str(&format!(",\"context\":{}", json_string(c)));
    }
    if let Some(n) = &p.note {
        s.push_str(&format!(",\"note\":{}", json_string(n)));
    }
    if !p.is_located() {
        s.push_str(",\"located\":false");
    }
    if !p.parts.is_empty() {
        let parts: Vec<String> = p
            .parts
            .iter()
            .map(|(name, part)| json_place(name, None, part))
            .collect();
        s.push_str(&format!(",\"parts\":[{}]", parts.join(",")));
    }
    if !p.tokens.is_empty() {
        let tokens: Vec<String> = p
            .tokens
            .iter()
            .map(|(name, c)| format!("{{\"token\":{},\"weight\":{c:.3}}}", json_string(name)))
            .collect();
        s.push_str(&format!(",\"tokens\":[{}]", tokens.join(",")));
    }
    s.push('}');
    s
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::logging::push_json_string(&mut out, s);
    out
}

pub use crate::cli::replay::corpus::strip_from_line;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::GTUBE;

    fn outcome(msg: &[u8]) -> Outcome {
        scan_message(&CompiledRules::builtin(5.0), default_limits(), msg)
    }

    #[test]
    fn gtube_is_flagged_and_plain_mail_is_not() {
        let gtube = [b"From x@y Mon Jan 1 00:00:00 2024\nSubject: test\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <a@b>\n\n".as_slice(), GTUBE, b"\n"].concat();
        let o = outcome(&gtube);
        assert!(o.spam, "{o:?}");
        assert!(o.rules.contains(&"GTUBE".to_string()), "{o:?}");
        let ham = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: lunch\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nSee you at noon.\r\n";
        let o = outcome(ham);
        assert!(!o.spam, "{o:?}");
    }

    #[test]
    fn json_lines() {
        let o = Outcome {
            spam: true,
            score: 7.25,
            rules: vec!["A".into(), "B_C".into()],
            reject: None,
            error: None,
        };
        assert_eq!(
            format_outcome("dir/a \"b\".eml", &o, &[], true),
            r#"{"file":"dir/a \"b\".eml","spam":true,"flag":"YES","score":7.2,"rules":["A","B_C"],"hits":[]}"#
        );
        assert_eq!(
            format_outcome("m.eml", &o, &[], false),
            "m.eml: YES 7.2 (A,B_C)"
        );
        let located = [
            Located {
                rule: "A".into(),
                score: 2.0,
                place: Where {
                    target: "body".into(),
                    matched: Some("free".into()),
                    context: Some("all \"free\" now".into()),
                    ..Where::default()
                },
            },
            Located {
                rule: "B_C".into(),
                score: 5.25,
                place: Where {
                    target: "meta".into(),
                    note: Some("X && __Y".into()),
                    parts: vec![(
                        "__Y".into(),
                        Where {
                            target: "raw".into(),
                            ..Where::default()
                        },
                    )],
                    ..Where::default()
                },
            },
        ];
        assert_eq!(
            format_outcome("m.eml", &o, &located, false),
            "m.eml: YES 7.2 (A,B_C)\n  A +2.0 body: \"free\" in \"all \\\"free\\\" now\"\n  B_C +5.2 meta: X && __Y\n    __Y raw: not located"
        );
        assert_eq!(
            format_outcome("m.eml", &o, &located, true),
            concat!(
                r#"{"file":"m.eml","spam":true,"flag":"YES","score":7.2,"rules":["A","B_C"],"hits":["#,
                r#"{"rule":"A","score":2.0,"target":"body","match":"free","context":"all \"free\" now"},"#,
                r#"{"rule":"B_C","score":5.2,"target":"meta","note":"X && __Y","parts":["#,
                r#"{"rule":"__Y","target":"raw","located":false}]}]}"#
            )
        );
    }

    #[test]
    fn normalizes_line_ends_and_strips_from_line() {
        assert_eq!(&*canonical_crlf(b"a\nb\rc\r\nd"), b"a\r\nb\r\nc\r\nd");
        assert_eq!(strip_from_line(b"From a b\nX: y\n"), b"X: y\n");
        assert_eq!(strip_from_line(b"X: y\n"), b"X: y\n");
    }

    /// Header fields the corpus collectors added (see ../shared/corpus/README.md): dropped before
    /// measuring, so no rule can learn from them.
    const ARTEFACTS: &[&str] = &[
        "x-spam-",
        "x-bogosity",
        "x-virus-scanned",
        "x-keywords",
        "x-uidl",
        "x-mozilla-",
        "x-account-key",
        "status",
        "x-status",
    ];

    fn without_artefacts(msg: &[u8]) -> Vec<u8> {
        let msg = strip_from_line(msg);
        let end = memchr::memmem::find(msg, b"\n\r\n")
            .into_iter()
            .chain(memchr::memmem::find(msg, b"\n\n"))
            .min()
            .map_or(msg.len(), |i| i + 1);
        let mut out = Vec::with_capacity(msg.len());
        let mut dropping = false;
        for line in msg[..end].split_inclusive(|&b| b == b'\n') {
            if !matches!(line.first(), Some(b' ' | b'\t')) {
                let name = line.split(|&b| b == b':').next().unwrap_or(b"");
                let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                dropping = ARTEFACTS.iter().any(|a| {
                    if a.ends_with('-') {
                        name.starts_with(a)
                    } else {
                        name == *a
                    }
                });
            }
            if !dropping {
                out.extend_from_slice(line);
            }
        }
        out.extend_from_slice(&msg[end..]);
        out
    }

    #[test]
    fn artefacts_are_dropped() {
        let m =
            b"From: a\nX-Spam-Flag: YES\n  folded\nStatus: RO\nSubject: s\n\nX-Spam-Flag: body\n";
        assert_eq!(
            without_artefacts(m),
            b"From: a\nSubject: s\n\nX-Spam-Flag: body\n".to_vec()
        );
    }

    #[derive(Default, Clone, Copy)]
    struct Counts {
        tp: u32,
        fp: u32,
        fn_: u32,
        tn: u32,
    }

    impl Counts {
        fn row(&self, name: &str) -> String {
            let p = f64::from(self.tp) / f64::from((self.tp + self.fp).max(1));
            let r = f64::from(self.tp) / f64::from((self.tp + self.fn_).max(1));
            let fpr = f64::from(self.fp) / f64::from((self.fp + self.tn).max(1));
            format!(
                "{name:14} {:5} {:5} {:5} {:5}   {:6.1}% {:6.1}% {:6.2}%",
                self.tp,
                self.fp,
                self.fn_,
                self.tn,
                100.0 * p,
                100.0 * r,
                100.0 * fpr
            )
        }
    }

    /// Precision and recall of the built-in rules on the labelled corpus, per source and pooled,
    /// through the real message pipeline, with collection artefacts removed. Prints the table
    /// and the rules' hit counts; asserts only GTUBE and a pooled false-positive rate under 2%.
    /// Rules over every target with a text matcher (regexes and phrases), beside the
    /// built-in ones, for [`every_corpus_hit_is_located`].
    const EXTRA_RULES: &str = r#"
[[rule]]
name = "X_BODY_RE"
description = "body regex"
score = 0.1
target = "body"
regex = '(?i)\b(unsubscribe|click|free|money)\b'
[[rule]]
name = "X_BODY_PHRASE"
description = "body phrase"
score = 0.1
target = "body"
phrases = ["the", "mail", "http"]
word_bounded = true
[[rule]]
name = "X_RAW_RE"
description = "raw regex"
score = 0.1
target = "raw"
regex = '(?i)=[0-9a-f]{2}|charset='
[[rule]]
name = "X_SUBJECT"
description = "subject regex"
score = 0.1
target = "header"
header = "Subject"
regex = '(?i)re:|free|\d'
[[rule]]
name = "X_ANY"
description = "any header regex"
score = 0.1
target = "any_header"
regex = '(?i)^(x-mailer|received):'
[[rule]]
name = "X_URL"
description = "url regex"
score = 0.1
target = "url"
regex = '(?i)^https?://'
[[rule]]
name = "X_TYPE"
description = "content type"
score = 0.1
target = "content_type"
globs = ["text/*", "image/*"]
"#;

    /// The shared corpus's folder and its `labels.tsv` (`None`, said on stderr, when there is
    /// none: the tests that read it skip).
    fn corpus_labels() -> Option<(PathBuf, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
        match std::fs::read_to_string(dir.join("labels.tsv")) {
            Ok(labels) => Some((dir, labels)),
            Err(_) => {
                eprintln!("skipping: no corpus at {}", dir.display());
                None
            }
        }
    }

    /// Where a rule hit, located for every rule of every verdict over the whole corpus (the
    /// labelled messages, the malformed ones and the SMTP payloads): the explainer finds each
    /// hit where the engine alone finds it, so none is left "not located".
    #[test]
    fn every_corpus_hit_is_located() {
        let Some((dir, labels)) = corpus_labels() else {
            return;
        };
        let mut paths: Vec<PathBuf> = labels
            .lines()
            .skip(1)
            .filter_map(|l| l.split('\t').next())
            .map(|p| dir.join(p))
            .collect();
        for sub in ["malformed", "smtp"] {
            let mut todo = vec![dir.join(sub)];
            while let Some(d) = todo.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        todo.push(p);
                    } else if p.extension().is_some_and(|x| x != "md") {
                        paths.push(p);
                    }
                }
            }
        }
        let source = |origin: &str, text: &str| RuleSource {
            origin: origin.into(),
            text: text.into(),
        };
        let rules = Arc::new(
            CompiledRules::compile(
                &[
                    source("built-in", crate::rules::DEFAULT_RULES),
                    source("extra", EXTRA_RULES),
                ],
                5.0,
            )
            .expect("compiles"),
        );
        type Seen = std::collections::BTreeMap<String, usize>;
        fn check(file: &str, rule: &str, w: &Where, bad: &mut Vec<String>, seen: &mut Seen) {
            *seen.entry(rule.to_string()).or_default() += 1;
            if !w.is_located() {
                bad.push(format!("{file}: {rule} ({})", w.target));
            }
            for (name, part) in &w.parts {
                check(file, name, part, bad, seen);
            }
        }
        let (mut bad, mut seen) = (Vec::new(), Seen::new());
        for p in &paths {
            let Ok(bytes) = std::fs::read(p) else {
                continue;
            };
            let (_, located) = explain_message(&rules, default_limits(), &bytes);
            for l in &located {
                check(
                    &p.display().to_string(),
                    &l.rule,
                    &l.place,
                    &mut bad,
                    &mut seen,
                );
            }
        }
        let n: usize = seen.values().sum();
        assert!(
            bad.is_empty(),
            "{} of {n} not located: {:?}",
            bad.len(),
            &bad[..bad.len().min(10)]
        );
        // Every target of the extra rules, and meta rules' sub-rules, were exercised.
        for rule in [
            "X_BODY_RE",
            "X_BODY_PHRASE",
            "X_RAW_RE",
            "X_SUBJECT",
            "X_ANY",
            "X_URL",
        ] {
            assert!(
                seen.get(rule).is_some_and(|&k| k >= 100),
                "{rule}: {seen:?}"
            );
        }
        assert!(seen.keys().any(|r| r.starts_with("__")), "{seen:?}");
    }

    /// The classifier's explanation (`conbool scan`'s spam-like and ham-like features) adds up
    /// to the probability the scan took its verdict with, on every labelled message, and every
    /// feature has a name: the naming tokenizer makes the scan's features, and each feature's
    /// share is what the model gives it. The model's weights are pseudo-random (every feature
    /// weighs something).
    #[test]
    fn the_classifier_explanation_adds_up_to_the_scan_probability() {
        let Some((dir, labels)) = corpus_labels() else {
            return;
        };
        let weights: Vec<f32> = (0..1u32 << 16)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 16) as f32 / 65536.0 - 0.5)
            .collect();
        let model = Arc::new(Model::from_weights(&weights, 0.1, 1).expect("model"));
        let rules = Arc::new(
            CompiledRules::compile(
                &[RuleSource {
                    origin: "built-in".into(),
                    text: crate::rules::DEFAULT_RULES.into(),
                }],
                5.0,
            )
            .and_then(|r| r.with_model(model))
            .expect("compiles"),
        );
        let mut checked = 0;
        for path in labels.lines().skip(1).filter_map(|l| l.split('\t').next()) {
            let Ok(bytes) = std::fs::read(dir.join(path)) else {
                continue;
            };
            let (_, Some(r)) = scan_recording(&rules, default_limits(), &bytes, true) else {
                continue;
            };
            let before = r.events.get(..r.window).unwrap_or(&r.events);
            let (each, p) = rules
                .explain_classifier(before, r.at_end.then_some(r.size))
                .expect("a model");
            let want = r.probability.expect("a model");
            assert!((p - want).abs() < 1e-9, "{path}: {p} against {want}");
            assert!(
                each.windows(2).all(|w| w[0].1 >= w[1].1),
                "{path}: not in order"
            );
            let unnamed: Vec<&String> = each
                .iter()
                .map(|(name, _)| name)
                .filter(|n| n.starts_with("feature "))
                .collect();
            assert!(unnamed.is_empty(), "{path}: {unnamed:?}");
            checked += 1;
        }
        assert!(checked > 4000, "{checked}");
    }

    #[test]
    fn corpus_precision_and_recall() {
        let Some((dir, labels)) = corpus_labels() else {
            return;
        };
        let rules = CompiledRules::builtin(5.0);
        let mut by_source: std::collections::BTreeMap<String, Counts> = Default::default();
        let mut per_rule: std::collections::BTreeMap<String, (u32, u32)> = Default::default();
        for line in labels.lines().skip(1) {
            let mut f = line.split('\t');
            let (Some(path), Some(label), Some(source)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let Ok(bytes) = std::fs::read(dir.join(path)) else {
                continue;
            };
            let o = scan_message(&rules, default_limits(), &without_artefacts(&bytes));
            let spam = label == "spam";
            let c = by_source.entry(source.to_string()).or_default();
            if !spam && o.spam {
                println!(
                    "false positive: {path} {:.1} ({})",
                    o.score,
                    o.rules.join(",")
                );
            }
            match (spam, o.spam) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (true, false) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
            for r in &o.rules {
                let e = per_rule.entry(format!("{r} {source}")).or_default();
                if spam {
                    e.0 += 1
                } else {
                    e.1 += 1
                }
            }
        }
        let mut pooled = Counts::default();
        println!("source            TP    FP    FN    TN   precision recall  FP rate");
        for (s, c) in &by_source {
            println!("{}", c.row(s));
            pooled.tp += c.tp;
            pooled.fp += c.fp;
            pooled.fn_ += c.fn_;
            pooled.tn += c.tn;
        }
        println!("{}", pooled.row("pooled"));
        println!("rule hits (spam / ham):");
        for (r, (s, h)) in &per_rule {
            println!("  {r:28} {s:5} {h:5}");
        }
        for gtube in [
            "malformed/spamassassin-tdata/spam/gtube.eml",
            "malformed/rspamd/gtube.eml",
        ] {
            let Ok(bytes) = std::fs::read(dir.join(gtube)) else {
                continue;
            };
            let o = scan_message(&rules, default_limits(), &bytes);
            assert!(
                o.spam && o.rules.iter().any(|r| r == "GTUBE"),
                "{gtube}: {o:?}"
            );
        }
        let fpr = f64::from(pooled.fp) / f64::from((pooled.fp + pooled.tn).max(1));
        assert!(fpr < 0.02, "pooled false-positive rate {:.2}%", 100.0 * fpr);
    }
}
