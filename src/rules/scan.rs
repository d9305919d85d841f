//! Per-message scan state: consumes the message pipeline's [`ScanEvent`]s (and the envelope),
//! carries automaton and line state across chunks, and produces the [`Verdict`].

use std::sync::Arc;

use crate::classify::{registrable, Tokenizer};
use crate::message::{ScanEvent, ScanSink};
use crate::rules::compile::{CompiledRules, StreamMatcher};
use crate::rules::file::Action;
use crate::rules::line::{push_lower, LineBatch, LineStream, Scratch};
use crate::rules::phrase::PhraseStream;
use crate::rules::verdict::{HitSet, Verdict};
use crate::rules::RuleId;

/// What the SMTP transaction says about a message, for envelope rules. The relay hands it to
/// [`Scan::set_envelope`] before feeding events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The `HELO`/`EHLO` name.
    pub helo: String,
    /// The client's address (after PROXY protocol).
    pub client_ip: core::net::IpAddr,
    /// The reverse path without angle brackets (empty for the null sender).
    pub mail_from: String,
    /// The forward paths without angle brackets.
    pub rcpts: Vec<String>,
}

/// Per-message scan state.
#[derive(Debug)]
pub struct Scan {
    rules: Arc<CompiledRules>,
    hits: HitSet,
    body: StreamState,
    raw: StreamState,
    /// Per presence slot: the header was seen.
    seen: Vec<bool>,
    header_done: bool,
    /// The top-level `From` field was seen (only the first counts).
    from_seen: bool,
    /// Header and raw body bytes seen (an estimate of the size until `finish`).
    size_seen: u64,
    finished: bool,
    scratch: Scratch,
    line_buf: Vec<u8>,
    /// Top-level header lines waiting for the `any_header` literal search (at the header end).
    header_lines: LineBatch,
    /// The classifier's tokens, when the rules carry a model.
    tokens: Option<Box<Tokenizer>>,
}

/// Phrase and line state of one stream target.
#[derive(Debug, Default)]
struct StreamState {
    phrases: PhraseStream,
    lines: LineStream,
    open: bool,
}

impl StreamState {
    fn feed(&mut self, m: &StreamMatcher, chunk: &[u8], hits: &mut HitSet) {
        self.open = true;
        if let Some(p) = &m.phrases {
            self.phrases.feed(p, chunk, hits);
            // The regexes gated by the phrase scan run on the lines of the hits it found.
            self.phrases.take_gates(self.lines.gates_mut());
        }
        if let Some(l) = &m.lines {
            self.lines.feed(l, chunk, hits);
        }
    }

    fn end(&mut self, m: &StreamMatcher, hits: &mut HitSet) {
        if !self.open {
            return;
        }
        self.open = false;
        if let Some(p) = &m.phrases {
            self.phrases.finish(p, hits);
        }
        if let Some(l) = &m.lines {
            self.lines.finish(l, hits);
        }
    }

    /// What ending the stream now would add, without ending it.
    fn peek_end(&self, m: &StreamMatcher, hits: &mut HitSet) {
        if !self.open {
            return;
        }
        if let Some(p) = &m.phrases {
            self.phrases.peek_end(p, hits);
        }
        if let Some(l) = &m.lines {
            self.lines.peek_end(l, hits);
        }
    }
}

impl Scan {
    /// A scan for one message.
    pub fn new(rules: Arc<CompiledRules>) -> Scan {
        let tokens = rules.classifier.as_ref().map(|c| Box::new(c.tokenizer()));
        Scan {
            hits: HitSet::new(rules.len()),
            seen: vec![false; rules.presence_slots],
            rules,
            body: StreamState::default(),
            raw: StreamState::default(),
            header_done: false,
            from_seen: false,
            size_seen: 0,
            finished: false,
            scratch: Scratch::default(),
            line_buf: Vec::new(),
            header_lines: LineBatch::default(),
            tokens,
        }
    }

    /// Envelope facts: HELO name, client address, sender and recipients.
    pub fn set_envelope(&mut self, env: &Envelope) {
        let rules = &*self.rules;
        let helo = env.helo.as_bytes();
        rules
            .helo
            .match_value(helo, &mut self.scratch, &mut self.hits);
        let lower = helo.to_ascii_lowercase();
        rules.helo.match_domain(&lower, &mut self.hits);
        for &(net, id) in &rules.client_ip {
            if net.contains(env.client_ip) {
                self.hits.set(id);
            }
        }
        let from = strip_brackets(env.mail_from.as_bytes());
        rules
            .mail_from
            .match_value(from, &mut self.scratch, &mut self.hits);
        rules
            .mail_from
            .match_domain(&domain_of(from), &mut self.hits);
        for r in &env.rcpts {
            let r = strip_brackets(r.as_bytes());
            rules.rcpt.match_value(r, &mut self.scratch, &mut self.hits);
            rules.rcpt.match_domain(&domain_of(r), &mut self.hits);
        }
        if let Some(t) = &mut self.tokens {
            t.envelope_sender(from);
        }
    }

    /// The message ended and was `total_size` bytes: size rules are decided, streams end, and
    /// meta rules are evaluated. Events after this are ignored.
    pub fn finish(&mut self, total_size: u64) {
        if self.finished {
            return;
        }
        self.body.end(&self.rules.body, &mut self.hits);
        self.raw.end(&self.rules.raw, &mut self.hits);
        if let Some(t) = &mut self.tokens {
            t.finish();
        }
        if !self.header_done {
            self.header_end();
        }
        self.size_seen = total_size;
        let rules = Arc::clone(&self.rules);
        let mut hits = self.rule_hits();
        for &(id, min, max) in &rules.size {
            if min.map_or(true, |m| total_size >= m) && max.map_or(true, |m| total_size <= m) {
                hits.set(id);
            }
        }
        // Size rules may feed metas: evaluate them again with the final size.
        for (id, e) in &rules.metas {
            if e.eval(&hits) {
                hits.set(*id);
            }
        }
        self.hits = hits;
        self.finished = true;
    }

    /// The verdict so far. Before [`Scan::finish`] it evaluates what is known as if the message
    /// ended here (a phrase or line at the very end counts), except `max_bytes` size rules,
    /// which need the final size. Final once `finish` was called.
    pub fn verdict(&self) -> Verdict {
        let hits = self.final_hits();
        let mut v = Verdict::default();
        for id in hits.iter() {
            let Some(spec) = self.rules.specs.get(id.0 as usize) else {
                continue;
            };
            match &spec.action {
                Action::Reject(text) => {
                    if v.reject.is_none() {
                        v.reject = Some(text.clone());
                    }
                    if !spec.is_hidden() {
                        v.hits.push(id);
                    }
                }
                Action::Score(s) => {
                    if !spec.is_hidden() {
                        v.score += s;
                        v.hits.push(id);
                    }
                }
            }
        }
        // Ten-thousandths are all `X-Conbool-Score` shows; rounding keeps sums like
        // 0.1 + 0.2 from reading 0.30000000000000004 in logs and JSON.
        v.score = (v.score * 10_000.0).round() / 10_000.0;
        v.spam = v.score >= self.rules.threshold();
        v
    }

    /// The rules hit, by name, joined with commas (for `X-Conbool-Score` and logs).
    pub fn hit_names(&self) -> String {
        let v = self.verdict();
        let names: Vec<&str> = v.hits.iter().map(|&id| self.rules.name(id)).collect();
        names.join(",")
    }

    /// The classifier's spam probability from what the scan has seen so far (`None` without a
    /// model): what its band rule (`CLASSIFIER_*`) was picked by.
    pub fn probability(&self) -> Option<f64> {
        let (c, t) = (self.rules.classifier.as_ref()?, self.tokens.as_ref()?);
        Some(c.probability(t, &self.rule_hits()))
    }

    /// Every rule hit so far, sub-rules included (for rule self-tests).
    pub(crate) fn all_hits(&self) -> HitSet {
        self.final_hits()
    }

    /// Every rule hit so far with the classifier's band, which reads the others.
    fn final_hits(&self) -> HitSet {
        let mut hits = self.rule_hits();
        if let (Some(c), Some(t)) = (&self.rules.classifier, &self.tokens) {
            c.set_hit(t, &mut hits);
        }
        hits
    }

    /// Every rule hit so far but the classifier's band (for training: the rule hits the
    /// classifier gets as features).
    pub(crate) fn rule_hits(&self) -> HitSet {
        let mut hits = self.hits.clone();
        if self.finished {
            return hits;
        }
        let rules = &self.rules;
        self.body.peek_end(&rules.body, &mut hits);
        self.raw.peek_end(&rules.raw, &mut hits);
        if !self.header_lines.is_empty() {
            rules
                .any_header
                .peek_lines(&self.header_lines, &mut Scratch::default(), &mut hits);
        }
        for &(id, min, max) in &rules.size {
            if max.is_none() && min.is_some_and(|m| self.size_seen >= m) {
                hits.set(id);
            }
        }
        for (id, e) in &rules.metas {
            if e.eval(&hits) {
                hits.set(*id);
            }
        }
        hits
    }

    fn header(&mut self, depth: usize, name: &[u8], value: &[u8]) {
        if depth != 0 || self.finished {
            return;
        }
        self.size_seen += (name.len() + value.len() + 4) as u64;
        let rules = &*self.rules;
        if name.len() <= rules.max_header_name {
            if let Some(h) = rules.headers.get(name) {
                if let Some(s) = h.slot.and_then(|slot| self.seen.get_mut(slot)) {
                    *s = true;
                }
                for &id in &h.present {
                    self.hits.set(id);
                }
                if let Some(m) = &h.matcher {
                    m.match_value(value, &mut self.scratch, &mut self.hits);
                }
            }
        }
        rules.any_header.match_line_of(
            name,
            value,
            &mut self.header_lines,
            &mut self.scratch,
            &mut self.hits,
        );
        if let Some(brands) = &rules.from_name_brand {
            if !self.from_seen && name.eq_ignore_ascii_case(b"from") {
                self.from_seen = true;
                brands.match_from(value, &mut self.line_buf, &mut self.hits);
            }
        }
    }

    fn header_end(&mut self) {
        if self.header_done {
            return;
        }
        self.header_done = true;
        self.size_seen += 2;
        self.rules.any_header.match_lines(
            &mut self.header_lines,
            &mut self.scratch,
            &mut self.hits,
        );
        for &(slot, id) in &self.rules.absent_rules {
            if !self.seen.get(slot).copied().unwrap_or(true) {
                self.hits.set(id);
            }
        }
    }

    fn part_start(&mut self, content_type: &[u8], filename: Option<&[u8]>) {
        let rules = &*self.rules;
        // A new part's text is a new stream: phrases and lines do not run across parts.
        self.body.end(&rules.body, &mut self.hits);
        rules
            .content_type
            .match_value(content_type, &mut self.scratch, &mut self.hits);
        if let Some(name) = filename {
            // Windows drops trailing dots and spaces: `invoice.exe. ` runs as `invoice.exe`.
            let end = name
                .iter()
                .rposition(|&b| !matches!(b, b'.' | b' ' | b'\t' | b'"'))
                .map_or(0, |i| i + 1);
            rules
                .attachment_name
                .match_value(&name[..end], &mut self.scratch, &mut self.hits);
        }
    }

    fn url(&mut self, url: &[u8]) {
        let rules = &*self.rules;
        rules
            .url
            .match_value(url, &mut self.scratch, &mut self.hits);
        if rules.url_host.is_empty() {
            return;
        }
        let mut host = std::mem::take(&mut self.line_buf);
        host.clear();
        push_lower(&mut host, url_host(url));
        rules
            .url_host
            .match_value(&host, &mut self.scratch, &mut self.hits);
        rules.url_host.match_domain(&host, &mut self.hits);
        self.line_buf = host;
    }
}

impl Scan {
    /// An HTML link whose text reads like an address: `link_text_host` rules look at the host
    /// it shows when that is not where its web target goes.
    fn link(&mut self, href: &[u8], text: &[u8]) {
        let rules = &*self.rules;
        if rules.link_text_host.is_empty() {
            return;
        }
        let Some(shown) = shown_host(text) else {
            return;
        };
        let web = href.trim_ascii();
        let is_web = [&b"http://"[..], b"https://"].iter().any(|s| {
            web.get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s))
        });
        if !is_web {
            return;
        }
        let target = url_host(web).to_ascii_lowercase();
        if target.is_empty() || registrable(&shown) == registrable(&target) {
            return;
        }
        rules
            .link_text_host
            .match_value(&shown, &mut self.scratch, &mut self.hits);
        rules.link_text_host.match_domain(&shown, &mut self.hits);
    }
}

/// The phrases of every `from_name_brand` rule in one automaton, each with its rule and the
/// letters and digits the address's domain must hold one of for the brand to be its own.
#[derive(Debug)]
pub(crate) struct BrandMatcher {
    ac: aho_corasick::AhoCorasick,
    phrases: Vec<(RuleId, Vec<Vec<u8>>)>,
}

/// The most bytes of a `From` display name looked at for brands.
const MAX_DISPLAY_NAME: usize = 256;

/// A `from_name_brand` phrase as [`brand_entry`] reads it: the name to look for (lower-cased)
/// and the letters and digits the address's domain must hold one of.
pub(crate) type BrandEntry = (Vec<u8>, Vec<Vec<u8>>);

/// One `from_name_brand` phrase, lower-cased: `brand` (the domain must hold the brand's
/// letters and digits: `wells fargo` is in `wellsfargo.com`) or `brand = key key ...` (the
/// domain must hold the letters and digits of one of the keys: `apple id = apple`,
/// `amazon = amazon aws`). An error for an empty name or an `=` with no key.
pub(crate) fn brand_entry(phrase: &[u8]) -> Result<BrandEntry, String> {
    let (name, keys) = match memchr::memchr(b'=', phrase) {
        Some(eq) => {
            let keys: Vec<Vec<u8>> = phrase[eq + 1..]
                .split(u8::is_ascii_whitespace)
                .map(compact)
                .filter(|k| !k.is_empty())
                .collect();
            if keys.is_empty() {
                return Err(format!(
                    "{:?}: no domain key after `=`",
                    String::from_utf8_lossy(phrase)
                ));
            }
            (phrase[..eq].trim_ascii(), keys)
        }
        None => (phrase.trim_ascii(), vec![compact(phrase)]),
    };
    if name.is_empty() || compact(name).is_empty() {
        return Err(format!(
            "{:?}: no brand name",
            String::from_utf8_lossy(phrase)
        ));
    }
    Ok((name.to_vec(), keys))
}

impl BrandMatcher {
    /// `None` without phrases. Each phrase with its rule, as [`brand_entry`] read it.
    pub(crate) fn new(
        entries: Vec<(RuleId, BrandEntry)>,
    ) -> Result<Option<BrandMatcher>, aho_corasick::BuildError> {
        if entries.is_empty() {
            return Ok(None);
        }
        let mut patterns = Vec::with_capacity(entries.len());
        let mut phrases = Vec::with_capacity(entries.len());
        for (id, (name, keys)) in entries {
            patterns.push(name);
            phrases.push((id, keys));
        }
        let ac = aho_corasick::AhoCorasick::new(&patterns)?;
        Ok(Some(BrandMatcher { ac, phrases }))
    }

    /// Sets the rules whose brand the display name of `From` value `from` holds at word
    /// edges (ASCII case-insensitive, a capital `I` after a small letter read as `l`) while the
    /// address's domain holds none of its keys ([`brand_entry`]). A value without `<addr>` has no
    /// display name. `buf` is scratch space.
    fn match_from(&self, from: &[u8], buf: &mut Vec<u8>, hits: &mut HitSet) {
        let Some(open) = memchr::memrchr(b'<', from) else {
            return;
        };
        let shown = &from[..open.min(MAX_DISPLAY_NAME)];
        buf.clear();
        buf.extend(shown.iter().enumerate().map(|(i, &b)| {
            let after_small = i > 0 && shown[i - 1].is_ascii_lowercase();
            if b == b'I' && after_small {
                b'l'
            } else {
                b.to_ascii_lowercase()
            }
        }));
        let domain = || {
            let addr = &from[open + 1..];
            let addr = &addr[..memchr::memchr(b'>', addr).unwrap_or(addr.len())];
            let at = memchr::memrchr(b'@', addr).map_or(addr.len(), |at| at + 1);
            compact(&addr[at..])
        };
        let mut compact_domain: Option<Vec<u8>> = None;
        let word = |b: &u8| b.is_ascii_alphanumeric();
        for m in self.ac.find_overlapping_iter(buf.as_slice()) {
            let before = m.start().checked_sub(1).and_then(|i| buf.get(i));
            let after = buf.get(m.end());
            if before.is_some_and(word) || after.is_some_and(word) {
                continue;
            }
            let Some((id, keys)) = self.phrases.get(m.pattern().as_usize()) else {
                continue;
            };
            let domain = compact_domain.get_or_insert_with(domain);
            if !keys
                .iter()
                .any(|k| memchr::memmem::find(domain, k).is_some())
            {
                hits.set(*id);
            }
        }
    }
}

/// The letters and digits of `s`, lower-cased.
fn compact(s: &[u8]) -> Vec<u8> {
    s.iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .map(u8::to_ascii_lowercase)
        .collect()
}

/// The host a link's text shows (`https://www.bank.example/login`, `www.bank.example`,
/// `Bank.example`), lower-cased: a dotted name whose last label is letters (2 to 24), and with
/// neither a scheme nor `www.` not a file name (`invoice.pdf`, `index.html`).
fn shown_host(text: &[u8]) -> Option<Vec<u8>> {
    const FILE_TYPES: &[&[u8]] = &[
        b"pdf", b"htm", b"html", b"php", b"asp", b"aspx", b"jsp", b"doc", b"docx", b"xls", b"xlsx",
        b"ppt", b"pptx", b"txt", b"csv", b"zip", b"jpg", b"jpeg", b"png", b"gif", b"svg", b"exe",
        b"ics",
    ];
    let host = url_host(text).to_ascii_lowercase();
    let tld = &host[memchr::memrchr(b'.', &host)? + 1..];
    let labels_ok = host
        .split(|&b| b == b'.')
        .all(|l| !l.is_empty() && l.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-'));
    let tld_ok = (2..=24).contains(&tld.len()) && tld.iter().all(u8::is_ascii_alphabetic);
    let marked = text.windows(3).any(|w| w == b"://") || host.starts_with(b"www.");
    (labels_ok && tld_ok && (marked || !FILE_TYPES.contains(&tld))).then_some(host)
}

impl ScanSink for Scan {
    fn event(&mut self, ev: ScanEvent<'_>) {
        if self.finished {
            return;
        }
        if let Some(t) = &mut self.tokens {
            t.event(ev);
        }
        match ev {
            ScanEvent::Header { depth, name, value } => self.header(depth, name, value),
            ScanEvent::HeaderEnd => self.header_end(),
            ScanEvent::PartStart {
                content_type,
                filename,
                ..
            } => self.part_start(content_type, filename),
            ScanEvent::Text(chunk) => self.body.feed(&self.rules.body, chunk, &mut self.hits),
            ScanEvent::RawBody(chunk) => {
                self.size_seen += chunk.len() as u64;
                self.raw.feed(&self.rules.raw, chunk, &mut self.hits);
            }
            ScanEvent::Url(u) => self.url(u),
            ScanEvent::Link { href, text } => self.link(href, text),
        }
    }
}

impl Scan {
    /// Whether rule `id` is hit so far (sub-rules included).
    pub fn is_hit(&self, id: RuleId) -> bool {
        self.final_hits().get(id)
    }
}

fn strip_brackets(addr: &[u8]) -> &[u8] {
    let a = addr.trim_ascii();
    a.strip_prefix(b"<")
        .and_then(|a| a.strip_suffix(b">"))
        .unwrap_or(a)
}

/// The lower-cased domain of an address (after the last `@`; empty when there is none).
fn domain_of(addr: &[u8]) -> Vec<u8> {
    match memchr::memrchr(b'@', addr) {
        Some(at) => addr[at + 1..].to_ascii_lowercase(),
        None => Vec::new(),
    }
}

/// The host part of a URL: after `scheme://` (when there is one), before the path, without
/// user info, port, brackets' contents kept for IPv6 literals, trailing dot dropped.
pub(crate) fn url_host(url: &[u8]) -> &[u8] {
    let url = url.trim_ascii();
    // `://` within the first 32 bytes: a colon followed by two slashes (a `memmem` searcher
    // costs more to set up than these few bytes take to look at).
    let head = &url[..url.len().min(32)];
    let scheme = memchr::memchr_iter(b':', head).find(|&i| head.get(i + 1..i + 3) == Some(b"//"));
    let rest = match scheme {
        Some(i) => &url[i + 3..],
        None => match memchr::memchr(b':', url) {
            // `mailto:user@host`
            Some(i) if url[..i].eq_ignore_ascii_case(b"mailto") => &url[i + 1..],
            _ => url,
        },
    };
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#' | b'\\'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = match memchr::memrchr(b'@', authority) {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let host = if host.starts_with(b"[") {
        match memchr::memchr(b']', host) {
            Some(close) => &host[..close + 1],
            None => host,
        }
    } else {
        match memchr::memchr(b':', host) {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    host.strip_suffix(b".").unwrap_or(host)
}

/// A scan of the whole message `msg` (canonical CRLF) with `rules`, finished.
#[cfg(test)]
pub(crate) fn scanned(rules: &Arc<CompiledRules>, msg: &[u8]) -> Scan {
    let msg = bytes::Bytes::copy_from_slice(msg);
    let mut scan = Scan::new(Arc::clone(rules));
    let limits = crate::cli::scan::default_limits();
    let _ = crate::message::feed_whole(limits, &msg, &mut scan, |_| {
        std::ops::ControlFlow::Continue(())
    })
    .expect("fed");
    scan.finish(msg.len() as u64);
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_brand_rows() {
        let rows: &[(&str, &str, &str, bool)] = &[
            (
                "impersonated",
                "\"PayPal Service\" <service@pp-secure.example>",
                "paypal",
                true,
            ),
            (
                "own_domain",
                "\"PayPal\" <service@mail.paypal.com>",
                "paypal",
                false,
            ),
            (
                "words_compacted",
                "Wells Fargo <alerts@wellsfargo.com>",
                "wells fargo",
                false,
            ),
            (
                "words_elsewhere",
                "Wells Fargo <alerts@bank.example>",
                "wells fargo",
                true,
            ),
            (
                "capital_i_for_l",
                "Hello WaImart <a@shop.example>",
                "walmart",
                true,
            ),
            (
                "capital_i_at_word_start",
                "Walmart Inc <a@Walmart.com>",
                "walmart",
                false,
            ),
            ("not_at_word_edges", "Upsilon <a@b.example>", "ups", false),
            (
                "inside_a_longer_word",
                "Amazonia Tours <a@b.example>",
                "amazon",
                false,
            ),
            (
                "apostrophe",
                "Lowe's Update <u@myvgv.example>",
                "lowe's",
                true,
            ),
            ("no_display_name", "paypal@evil.example", "paypal", false),
            (
                "brand_only_in_address",
                "Support <paypal@evil.example>",
                "paypal",
                false,
            ),
            ("no_at", "PayPal <undisclosed>", "paypal", true),
            (
                "one_key_of_several",
                "Amazon Web Services <invoicing@aws.com>",
                "amazon = amazon aws",
                false,
            ),
            (
                "no_key",
                "Amazon Support <help@secure-login.example>",
                "amazon = amazon aws",
                true,
            ),
            (
                "name_longer_than_key",
                "Apple ID <no_reply@email.apple.com>",
                "apple id = apple",
                false,
            ),
            (
                "name_longer_than_domain_without_key",
                "Apple ID <no_reply@email.apple.com>",
                "apple id",
                true,
            ),
        ];
        for &(row, from, brand, want) in rows {
            let entry = brand_entry(brand.as_bytes()).expect("a brand");
            let m = BrandMatcher::new(vec![(RuleId(0), entry)])
                .expect("builds")
                .expect("a phrase");
            let mut hits = HitSet::new(1);
            m.match_from(from.as_bytes(), &mut Vec::new(), &mut hits);
            assert_eq!(hits.get(RuleId(0)), want, "{row}");
        }
    }

    #[test]
    fn brand_entries() {
        let keys = |v: &[&str]| v.iter().map(|k| k.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(
            brand_entry(b"wells fargo"),
            Ok((b"wells fargo".to_vec(), keys(&["wellsfargo"])))
        );
        assert_eq!(
            brand_entry(b" apple id =  apple icloud.com "),
            Ok((b"apple id".to_vec(), keys(&["apple", "icloudcom"])))
        );
        for bad in ["= apple", "apple =", "apple = - .", "'' = apple", ""] {
            assert!(brand_entry(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shown_host_rows() {
        let rows: &[(&str, &str, Option<&str>)] = &[
            ("bare", "Bank.Example", Some("bank.example")),
            ("www", "www.bank.example.", Some("www.bank.example")),
            (
                "with_scheme_and_path",
                "https://bank.example:443/login?x",
                Some("bank.example"),
            ),
            ("file_name", "invoice.pdf", None),
            (
                "file_name_with_www_is_a_host",
                "www.invoice.pdf",
                Some("www.invoice.pdf"),
            ),
            ("number", "1.5", None),
            ("version", "v2.0", None),
            ("no_dot", "localhost", None),
            ("empty_label", "bank..example", None),
            ("odd_bytes", "bank_x.example", None),
            ("long_tld", "a.abcdefghijklmnopqrstuvwxy", None),
            ("ip", "192.0.2.1", None),
        ];
        for &(row, text, want) in rows {
            let got = shown_host(text.as_bytes());
            assert_eq!(got.as_deref(), want.map(str::as_bytes), "{row}");
        }
    }

    /// `link_text_host` through the whole pipeline: an HTML part whose link shows one host and
    /// goes to another domain hits; the same domain, a link of words, and a mail link do not.
    #[test]
    fn link_text_host_through_a_message() {
        let rules = Arc::new(
            CompiledRules::compile(
                &[crate::rules::RuleSource {
                    origin: "test".into(),
                    text: "[[rule]]\nname = \"SHOWN\"\ndescription = \"d\"\nscore = 1.0\ntarget = \"link_text_host\"\ndomains = [\"bank.example\"]\n".into(),
                }],
                5.0,
            )
            .expect("compiles"),
        );
        let hits = |link: &str| {
            let msg = format!(
                "Subject: s\r\nContent-Type: text/html\r\n\r\n<p>Dear customer, <a href=\"{link}\">www.Bank.example</a></p>\r\n"
            );
            scanned(&rules, msg.as_bytes()).rule_hits().iter().count()
        };
        assert_eq!(hits("http://login.evil.example/x?a=1&amp;b=2"), 1);
        assert_eq!(hits("https://198.51.100.7/"), 1);
        assert_eq!(hits("https://secure.bank.example/login"), 0);
        assert_eq!(hits("mailto:help@evil.example"), 0);
        assert_eq!(hits("/relative"), 0);
    }

    #[test]
    fn url_hosts() {
        let rows: &[(&str, &str, &str)] = &[
            ("plain", "http://example.com/path", "example.com"),
            (
                "port_user",
                "https://user:pw@Example.COM:8443/x?y",
                "Example.COM",
            ),
            ("no_scheme", "www.example.com/a", "www.example.com"),
            ("ipv6", "http://[2001:db8::1]:80/", "[2001:db8::1]"),
            ("trailing_dot", "http://example.com./", "example.com"),
            (
                "at_trick",
                "http://paypal.com@evil.example/login",
                "evil.example",
            ),
            ("mailto", "mailto:someone@example.org", "example.org"),
            (
                "query_only",
                "http://example.com?x=http://a.b",
                "example.com",
            ),
            (
                "backslash",
                "http://evil.example\\@good.example/",
                "evil.example",
            ),
            ("empty", "", ""),
            (
                "scheme_past_32_bytes",
                "abcdefghijklmnopqrstuvwxyz01234://x.example/",
                "abcdefghijklmnopqrstuvwxyz01234",
            ),
            ("colon_then_one_slash", "x:/y.example", "x"),
        ];
        for (row, url, host) in rows {
            assert_eq!(url_host(url.as_bytes()), host.as_bytes(), "{row}");
        }
    }
}
