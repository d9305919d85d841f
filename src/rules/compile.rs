//! Compiling rule specs into [`CompiledRules`]: per target, one phrase automaton, one regex set
//! and (where it applies) one domain table, so that matching costs the bytes looked at, not the
//! number of rules.

use std::collections::HashMap;
use std::sync::Arc;

use aho_corasick::StartKind;

use crate::rules::file::{self, Action, Cidr, Matcher, RuleError, RuleSource, RuleSpec, Target};
use crate::rules::line::{self, push_lower, LineBatch, RegexGroup, Scratch, MAX_LINE_BYTES};
use crate::rules::meta::{self, Expr};
use crate::rules::phrase::{Owner, PhraseSet, PhraseSetBuilder, SAMPLED_VALUE_MIN_LEN};
use crate::rules::verdict::HitSet;
use crate::rules::RuleId;

/// The built-in rule set (`rules/default.toml`), used when `spam.rules` is empty.
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.toml");

/// All rules of one configuration snapshot, compiled; shared by every worker.
#[derive(Debug)]
pub struct CompiledRules {
    threshold: f64,
    pub(crate) specs: Vec<RuleSpec>,
    pub(crate) body: StreamMatcher,
    pub(crate) raw: StreamMatcher,
    /// What rules make of a top-level header field, by field name (case-insensitive).
    pub(crate) headers: NameMap<HeaderRules>,
    pub(crate) any_header: ValueMatcher,
    /// How many header names have presence rules (each has a slot below this).
    pub(crate) presence_slots: usize,
    pub(crate) absent_rules: Vec<(usize, RuleId)>,
    /// The longest header name any rule looks for (longer names are skipped unlooked).
    pub(crate) max_header_name: usize,
    pub(crate) mail_from: ValueMatcher,
    pub(crate) rcpt: ValueMatcher,
    pub(crate) helo: ValueMatcher,
    pub(crate) url: ValueMatcher,
    pub(crate) url_host: ValueMatcher,
    pub(crate) link_text_host: ValueMatcher,
    /// `from_name_brand` rules: every phrase in one automaton.
    pub(crate) from_name_brand: Option<crate::rules::scan::BrandMatcher>,
    pub(crate) attachment_name: ValueMatcher,
    pub(crate) content_type: ValueMatcher,
    pub(crate) client_ip: Vec<(Cidr, RuleId)>,
    pub(crate) size: Vec<(RuleId, Option<u64>, Option<u64>)>,
    /// Meta rules in an order where each comes after the metas it reads.
    pub(crate) metas: Vec<(RuleId, Expr)>,
    /// The statistical classifier and its band rules, when a model is attached.
    pub(crate) classifier: Option<crate::rules::classifier::ClassifierRules>,
}

/// The rules about one header field name.
#[derive(Debug, Default)]
pub(crate) struct HeaderRules {
    /// Its presence slot, when `header_present` or `header_absent` rules name it.
    pub slot: Option<usize>,
    /// `header_present` rules: hit when the field is there.
    pub present: Vec<RuleId>,
    /// `header` rules on its value.
    pub matcher: Option<ValueMatcher>,
}

/// A fixed map from names (field names, domains) to values, looked up ASCII case-insensitively
/// without copying or lower-casing the name: open addressing over an FNV-1a hash of the
/// lower-cased bytes.
#[derive(Debug)]
pub(crate) struct NameMap<T> {
    /// Bit `min(len, 63)` set for each name length: most names are turned away by their
    /// length alone, before their bytes are read.
    lengths: u64,
    /// Per slot: index + 1 into `entries`, 0 when empty. A power of two, at most half full.
    slots: Box<[u32]>,
    entries: Vec<(Box<[u8]>, T)>,
}

impl<T> Default for NameMap<T> {
    fn default() -> Self {
        NameMap {
            lengths: 0,
            slots: Box::new([]),
            entries: Vec::new(),
        }
    }
}

impl<T> NameMap<T> {
    /// Builds from entries whose names are distinct ignoring ASCII case.
    fn build(entries: Vec<(Vec<u8>, T)>) -> NameMap<T> {
        let n = (entries.len() * 2).next_power_of_two().max(4);
        let mut slots = vec![0u32; n].into_boxed_slice();
        let entries: Vec<(Box<[u8]>, T)> = entries
            .into_iter()
            .map(|(k, v)| (k.into_boxed_slice(), v))
            .collect();
        let mut lengths = 0u64;
        for (i, (k, _)) in entries.iter().enumerate() {
            lengths |= 1 << k.len().min(63);
            let mut at = name_hash(k) as usize & (n - 1);
            while slots[at] != 0 {
                at = (at + 1) & (n - 1);
            }
            slots[at] = i as u32 + 1;
        }
        NameMap {
            lengths,
            slots,
            entries,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value for `name`, compared ASCII case-insensitively.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<&T> {
        if self.lengths & (1 << name.len().min(63)) == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = name_hash(name) as usize & mask;
        loop {
            let i = *self.slots.get(at)? as usize;
            let (k, v) = self.entries.get(i.checked_sub(1)?)?;
            if k.eq_ignore_ascii_case(name) {
                return Some(v);
            }
            at = (at + 1) & mask;
        }
    }
}

/// A hash of a name that ignores ASCII case: its length and its first and last 8 bytes (4 when
/// shorter) with bit 0x20 set in each byte, so no loop over the name. Names that differ only in
/// the middle collide, which costs a probe, not a wrong answer.
#[inline]
fn name_hash(name: &[u8]) -> u64 {
    const FOLD64: u64 = 0x2020_2020_2020_2020;
    let n = name.len();
    let (a, b) = match (name.first_chunk::<8>(), name.last_chunk::<8>()) {
        (Some(a), Some(b)) => (u64::from_le_bytes(*a), u64::from_le_bytes(*b)),
        _ => match (name.first_chunk::<4>(), name.last_chunk::<4>()) {
            (Some(a), Some(b)) => (
                u64::from(u32::from_le_bytes(*a)),
                u64::from(u32::from_le_bytes(*b)),
            ),
            _ => (
                name.iter()
                    .enumerate()
                    .fold(0u64, |k, (i, &c)| k | u64::from(c) << (8 * i)),
                0,
            ),
        },
    };
    let h = ((a | FOLD64) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (b | FOLD64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^ (h >> 29)
}

/// Matchers of a stream target (body text or raw body).
#[derive(Debug, Default)]
pub(crate) struct StreamMatcher {
    pub phrases: Option<PhraseSet>,
    pub lines: Option<RegexGroup>,
}

/// Matchers of a value target (header value, envelope field, URL, file name, media type).
#[derive(Debug, Default)]
pub(crate) struct ValueMatcher {
    phrases: Option<PhraseSet>,
    regexes: Option<RegexGroup>,
    domains: NameMap<Vec<RuleId>>,
}

impl ValueMatcher {
    pub fn is_empty(&self) -> bool {
        self.phrases.is_none() && self.regexes.is_none() && self.domains.is_empty()
    }

    /// Phrases and regexes against `value` (its first [`MAX_LINE_BYTES`]).
    pub fn match_value(&self, value: &[u8], scratch: &mut Scratch, hits: &mut HitSet) {
        if self.phrases.is_none() && self.regexes.is_none() {
            return;
        }
        let value = &value[..value.len().min(MAX_LINE_BYTES)];
        scratch.lower.clear();
        if self.phrases.is_some() || self.regexes.as_ref().is_some_and(RegexGroup::needs_lower) {
            push_lower(&mut scratch.lower, value);
        }
        if let Some(p) = &self.phrases {
            p.match_value(&scratch.lower, hits);
        }
        if let Some(r) = &self.regexes {
            r.match_lowered(value, scratch, hits);
        }
    }

    /// Phrases and regexes against the header line `name: value` (its first
    /// [`MAX_LINE_BYTES`]). Phrases and ungated regexes match at once; the line is kept in
    /// `batch` for the gated regexes, which [`ValueMatcher::match_lines`] runs over all kept lines
    /// with one literal search (it runs here first when the batch is full).
    #[inline]
    pub fn match_line_of(
        &self,
        name: &[u8],
        value: &[u8],
        batch: &mut LineBatch,
        scratch: &mut Scratch,
        hits: &mut HitSet,
    ) {
        if self.phrases.is_some() || self.regexes.is_some() {
            self.match_line(name, value, batch, scratch, hits);
        }
    }

    /// [`ValueMatcher::match_line_of`] when there are rules.
    fn match_line(
        &self,
        name: &[u8],
        value: &[u8],
        batch: &mut LineBatch,
        scratch: &mut Scratch,
        hits: &mut HitSet,
    ) {
        if self.phrases.is_none() {
            if let Some(r) = self.regexes.as_ref().filter(|r| !r.needs_line()) {
                // Only anchored regexes: no batch, and no copy of most lines.
                r.match_header_line(name, value, scratch, hits);
                return;
            }
        }
        let parts: [&[u8]; 3] = [name, b": ", value];
        let raw = match batch.push(&parts) {
            Some(line) => line,
            None => {
                self.match_lines(batch, scratch, hits);
                match batch.push(&parts) {
                    Some(line) => line,
                    None => return,
                }
            }
        };
        let regexes = self.regexes.as_ref();
        if self.phrases.is_some() || regexes.is_some_and(RegexGroup::ungated_need_lower) {
            scratch.lower.clear();
            push_lower(&mut scratch.lower, raw);
        }
        if let Some(p) = &self.phrases {
            p.match_value(&scratch.lower, hits);
        }
        if let Some(r) = regexes {
            r.match_ungated(raw, &scratch.lower, hits);
        }
        if !regexes.is_some_and(RegexGroup::is_gated) {
            batch.clear();
        }
    }

    /// The gated regexes against the lines kept by [`ValueMatcher::match_line_of`], which are
    /// then dropped.
    pub fn match_lines(&self, batch: &mut LineBatch, scratch: &mut Scratch, hits: &mut HitSet) {
        self.peek_lines(batch, scratch, hits);
        batch.clear();
    }

    /// What [`ValueMatcher::match_lines`] would add, keeping the lines.
    pub fn peek_lines(&self, batch: &LineBatch, scratch: &mut Scratch, hits: &mut HitSet) {
        if let Some(r) = &self.regexes {
            r.match_batch(batch, scratch, hits);
        }
    }

    /// Domain rules against a lower-cased domain: it or any parent is listed.
    pub fn match_domain(&self, domain: &[u8], hits: &mut HitSet) {
        if self.domains.is_empty() {
            return;
        }
        let mut d = domain.strip_suffix(b".").unwrap_or(domain);
        loop {
            if let Some(rules) = self.domains.get(d) {
                rules.iter().for_each(|&r| hits.set(r));
            }
            match memchr::memchr(b'.', d) {
                Some(dot) => d = &d[dot + 1..],
                None => break,
            }
        }
    }
}

#[derive(Default)]
struct ValueBuilder {
    phrases: PhraseSetBuilder,
    regexes: Vec<(String, RuleId)>,
    domains: HashMap<Vec<u8>, Vec<RuleId>>,
}

impl ValueBuilder {
    fn build(self) -> Result<ValueMatcher, String> {
        self.build_with(|regexes| RegexGroup::build(regexes, false))
    }

    /// [`ValueBuilder::build`] for the header lines: regexes anchored with a literal are
    /// tested at each line's start ([`RegexGroup::build_anchored`]).
    fn build_any_header(self) -> Result<ValueMatcher, String> {
        self.build_with(RegexGroup::build_anchored)
    }

    /// The matcher, its regexes grouped by `group`.
    fn build_with(
        self,
        group: impl FnOnce(&[(String, RuleId)]) -> Result<RegexGroup, String>,
    ) -> Result<ValueMatcher, String> {
        let starts = match self.phrases.min_len() {
            Some(n) if n >= SAMPLED_VALUE_MIN_LEN => StartKind::Anchored,
            _ => StartKind::Unanchored,
        };
        Ok(ValueMatcher {
            phrases: (!self.phrases.is_empty())
                .then(|| self.phrases.build(starts))
                .transpose()?,
            regexes: (!self.regexes.is_empty())
                .then(|| group(&self.regexes))
                .transpose()?,
            domains: NameMap::build(self.domains.into_iter().collect()),
        })
    }

    /// The matcher of a stream target. When it has phrases, its regexes' literals that are no
    /// shorter than the shortest phrase join the phrase set as gate literals (the scan's stride
    /// stays the same; see `src/rules/line.rs`).
    fn build_stream(mut self) -> Result<StreamMatcher, String> {
        let lines = (!self.regexes.is_empty())
            .then(|| RegexGroup::build_stream(&self.regexes, self.phrases.min_len()))
            .transpose()?;
        for (id, literal) in lines.iter().flat_map(|g| g.gate_literals()).enumerate() {
            self.phrases.add_gate(literal, id as u32);
        }
        Ok(StreamMatcher {
            phrases: (!self.phrases.is_empty())
                .then(|| self.phrases.build(StartKind::Anchored))
                .transpose()?,
            lines,
        })
    }
}

impl CompiledRules {
    /// Whether some rule refuses the message when it hits (the scan then has to see the
    /// whole message, past the scan window).
    pub fn can_reject(&self) -> bool {
        self.specs
            .iter()
            .any(|s| matches!(s.action, Action::Reject(_)))
    }

    /// The built-in rule set with `threshold` (`spam.threshold`).
    pub fn builtin(threshold: f64) -> Arc<CompiledRules> {
        let source = RuleSource {
            origin: "built-in rules/default.toml".into(),
            text: DEFAULT_RULES.into(),
        };
        // The default set is ours and compiled by a test: failing here is a build mistake.
        Arc::new(CompiledRules::compile(&[source], threshold).expect("the built-in rules compile"))
    }

    /// Compiles rule files (in order; names unique across all of them) with `threshold`.
    pub fn compile(sources: &[RuleSource], threshold: f64) -> Result<CompiledRules, RuleError> {
        let mut specs = Vec::new();
        for s in sources {
            specs.extend(file::parse(s)?);
        }
        CompiledRules::from_specs(specs, threshold)
    }

    /// Compiles validated specs.
    pub fn from_specs(specs: Vec<RuleSpec>, threshold: f64) -> Result<CompiledRules, RuleError> {
        if specs.len() > u32::MAX as usize {
            return Err(RuleError::new("rules", None, None, "too many rules".into()));
        }
        let mut by_name: HashMap<&str, RuleId> = HashMap::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            if by_name.insert(&s.name, RuleId(i as u32)).is_some() {
                return Err(s.error("name", format!("{:?} is defined twice", s.name)));
            }
        }

        let mut body = ValueBuilder::default();
        let mut raw = ValueBuilder::default();
        let mut headers: HashMap<Vec<u8>, ValueBuilder> = HashMap::new();
        let mut any_header = ValueBuilder::default();
        let mut presence: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut present_rules: Vec<(usize, RuleId)> = Vec::new();
        let mut absent_rules = Vec::new();
        let mut mail_from = ValueBuilder::default();
        let mut rcpt = ValueBuilder::default();
        let mut helo = ValueBuilder::default();
        let mut url = ValueBuilder::default();
        let mut url_host = ValueBuilder::default();
        let mut link_text_host = ValueBuilder::default();
        let mut from_name_brand = Vec::new();
        let mut attachment_name = ValueBuilder::default();
        let mut content_type = ValueBuilder::default();
        let mut client_ip = Vec::new();
        let mut size = Vec::new();
        let mut metas = Vec::new();

        for (i, spec) in specs.iter().enumerate() {
            let id = RuleId(i as u32);
            let header_key = spec
                .header
                .as_deref()
                .unwrap_or("")
                .to_ascii_lowercase()
                .into_bytes();
            let builder: Option<&mut ValueBuilder> = match spec.target {
                Target::Body => Some(&mut body),
                Target::Raw => Some(&mut raw),
                Target::Header => Some(headers.entry(header_key.clone()).or_default()),
                Target::AnyHeader => Some(&mut any_header),
                Target::MailFrom => Some(&mut mail_from),
                Target::Rcpt => Some(&mut rcpt),
                Target::Helo => Some(&mut helo),
                Target::Url => Some(&mut url),
                Target::UrlHost => Some(&mut url_host),
                Target::LinkTextHost => Some(&mut link_text_host),
                Target::FromNameBrand => {
                    if let Matcher::Phrases { phrases, .. } = &spec.matcher {
                        for p in phrases {
                            let entry = crate::rules::scan::brand_entry(
                                &p.to_ascii_lowercase().into_bytes(),
                            )
                            .map_err(|e| spec.error("phrases", e))?;
                            from_name_brand.push((id, entry));
                        }
                    }
                    None
                }
                Target::AttachmentName => Some(&mut attachment_name),
                Target::ContentType => Some(&mut content_type),
                Target::HeaderPresent | Target::HeaderAbsent => {
                    let n = presence.len();
                    let slot = *presence.entry(header_key.clone()).or_insert(n);
                    if spec.target == Target::HeaderPresent {
                        present_rules.push((slot, id));
                    } else {
                        absent_rules.push((slot, id));
                    }
                    None
                }
                Target::ClientIp | Target::Size | Target::Meta | Target::Classifier => None,
            };
            let line_rule = spec.target.is_stream();
            match (&spec.matcher, builder) {
                (
                    Matcher::Phrases {
                        phrases,
                        word_bounded,
                    },
                    Some(b),
                ) => {
                    for p in phrases {
                        b.phrases.add(
                            p,
                            Owner {
                                rule: id,
                                word_bounded: *word_bounded,
                            },
                        );
                    }
                }
                (Matcher::Regex(r), Some(b)) => {
                    line::check_one(r, line_rule).map_err(|e| spec.error("regex", e))?;
                    b.regexes.push((r.clone(), id));
                }
                (Matcher::Globs(globs), Some(b)) => {
                    for g in globs {
                        let r = glob_regex(g);
                        line::check_one(&r, false).map_err(|e| spec.error("globs", e))?;
                        b.regexes.push((r, id));
                    }
                }
                (Matcher::Domains(domains), Some(b)) => {
                    for d in domains {
                        b.domains.entry(d.as_bytes().to_vec()).or_default().push(id);
                    }
                }
                (Matcher::Cidrs(nets), None) => client_ip.extend(nets.iter().map(|&n| (n, id))),
                (
                    Matcher::Size {
                        min_bytes,
                        max_bytes,
                    },
                    None,
                ) => size.push((id, *min_bytes, *max_bytes)),
                (Matcher::Expr(src), None) => {
                    let resolve = |n: &str| by_name.get(n).copied();
                    let e = meta::parse(src, &resolve).map_err(|e| spec.error("expr", e))?;
                    metas.push((id, e));
                }
                (Matcher::None, None) => {}
                // `from_name_brand` keeps its phrases itself (above).
                (Matcher::Phrases { .. }, None) if spec.target == Target::FromNameBrand => {}
                // file::validate only lets through matchers the target takes.
                _ => return Err(spec.error("target", "matcher does not fit the target")),
            }
        }

        let metas = order_metas(&specs, metas)?;
        let at = |what: &str| {
            let what = what.to_string();
            move |e: String| RuleError::new("rules", None, None, format!("{what}: {e}"))
        };
        let mut by_name: HashMap<Vec<u8>, HeaderRules> = HashMap::new();
        let mut max_header_name = presence.keys().map(Vec::len).max().unwrap_or(0);
        for (name, b) in headers {
            max_header_name = max_header_name.max(name.len());
            let label = format!("header {:?}", String::from_utf8_lossy(&name));
            by_name.entry(name).or_default().matcher = Some(b.build().map_err(at(&label))?);
        }
        let presence_slots = presence.len();
        for (name, slot) in presence {
            by_name.entry(name).or_default().slot = Some(slot);
        }
        for h in by_name.values_mut() {
            h.present = present_rules
                .iter()
                .filter(|&&(sl, _)| Some(sl) == h.slot)
                .map(|&(_, id)| id)
                .collect();
        }
        Ok(CompiledRules {
            threshold,
            body: body.build_stream().map_err(at("target body"))?,
            raw: raw.build_stream().map_err(at("target raw"))?,
            headers: NameMap::build(by_name.into_iter().collect()),
            any_header: any_header
                .build_any_header()
                .map_err(at("target any_header"))?,
            presence_slots,
            absent_rules,
            max_header_name,
            mail_from: mail_from.build().map_err(at("target mail_from"))?,
            rcpt: rcpt.build().map_err(at("target rcpt"))?,
            helo: helo.build().map_err(at("target helo"))?,
            url: url.build().map_err(at("target url"))?,
            url_host: url_host.build().map_err(at("target url_host"))?,
            link_text_host: link_text_host
                .build()
                .map_err(at("target link_text_host"))?,
            from_name_brand: crate::rules::scan::BrandMatcher::new(from_name_brand)
                .map_err(|e| at("target from_name_brand")(e.to_string()))?,
            attachment_name: attachment_name
                .build()
                .map_err(at("target attachment_name"))?,
            content_type: content_type.build().map_err(at("target content_type"))?,
            client_ip,
            size,
            metas,
            specs,
            classifier: None,
        })
    }

    /// A rule's name.
    pub fn name(&self, id: RuleId) -> &str {
        self.specs
            .get(id.0 as usize)
            .map_or("", |s| s.name.as_str())
    }

    /// A rule's description.
    pub fn description(&self, id: RuleId) -> &str {
        self.specs
            .get(id.0 as usize)
            .map_or("", |s| s.description.as_str())
    }

    /// A rule's score (0 for reject rules and sub-rules).
    pub fn score(&self, id: RuleId) -> f64 {
        match self.specs.get(id.0 as usize).map(|s| &s.action) {
            Some(Action::Score(s)) => *s,
            _ => 0.0,
        }
    }

    /// The rule named `name`.
    pub fn find(&self, name: &str) -> Option<RuleId> {
        self.specs
            .iter()
            .position(|s| s.name == name)
            .map(|i| RuleId(i as u32))
    }

    /// How many rules there are (ids run from 0).
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The validated rules, in id order.
    pub fn specs(&self) -> &[RuleSpec] {
        &self.specs
    }

    /// The score at or above which a message is spam.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
}

/// Orders metas so each follows the metas it reads; a cycle is an error naming a rule in it.
fn order_metas(
    specs: &[RuleSpec],
    metas: Vec<(RuleId, Expr)>,
) -> Result<Vec<(RuleId, Expr)>, RuleError> {
    let is_meta: HashMap<RuleId, usize> = metas
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    // 0 = unvisited, 1 = on the path, 2 = done.
    let mut mark = vec![0u8; metas.len()];
    let mut order = Vec::with_capacity(metas.len());
    for root in 0..metas.len() {
        if mark[root] != 0 {
            continue;
        }
        // Iterative depth-first search: (meta index, its dependencies, next dependency).
        let mut stack: Vec<(usize, Vec<RuleId>, usize)> = Vec::new();
        let mut deps = Vec::new();
        metas[root].1.rules(&mut deps);
        mark[root] = 1;
        stack.push((root, deps, 0));
        while let Some((m, deps, next)) = stack.last_mut() {
            if let Some(&dep) = deps.get(*next) {
                *next += 1;
                if let Some(&d) = is_meta.get(&dep) {
                    match mark[d] {
                        0 => {
                            let mut dd = Vec::new();
                            metas[d].1.rules(&mut dd);
                            mark[d] = 1;
                            stack.push((d, dd, 0));
                        }
                        1 => {
                            let spec = &specs[metas[d].0 .0 as usize];
                            return Err(
                                spec.error("expr", "meta rules refer to each other in a cycle")
                            );
                        }
                        _ => {}
                    }
                }
            } else {
                let m = *m;
                mark[m] = 2;
                order.push(m);
                stack.pop();
            }
        }
    }
    let mut slots: Vec<Option<(RuleId, Expr)>> = metas.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// `*.exe` → `(?is)^.*\.exe$`.
fn glob_regex(glob: &str) -> String {
    let mut r = String::from("(?is)^");
    for c in glob.chars() {
        match c {
            '*' => r.push_str(".*"),
            '?' => r.push('.'),
            c => r.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    r.push('$');
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<CompiledRules, RuleError> {
        CompiledRules::compile(
            &[RuleSource {
                origin: "t.toml".into(),
                text: text.into(),
            }],
            5.0,
        )
    }

    #[test]
    fn builtin_compiles() {
        let r = CompiledRules::builtin(5.0);
        assert!(r.find("GTUBE").is_some());
        assert_eq!(r.threshold(), 5.0);
    }

    /// (row, file text, rule label, key)
    const ERRORS: &[(&str, &str, &str, &str)] = &[
        (
            "duplicate_name",
            "[[rule]]\nname=\"A\"\ndescription=\"d\"\nscore=1\ntarget=\"body\"\nphrases=[\"aa\"]\n[[rule]]\nname=\"A\"\ndescription=\"d\"\nscore=1\ntarget=\"body\"\nphrases=[\"bb\"]\n",
            "\"A\" (#2)",
            "name",
        ),
        (
            "bad_regex",
            "[[rule]]\nname=\"A\"\ndescription=\"d\"\nscore=1\ntarget=\"body\"\nregex=\"(unclosed\"\n",
            "\"A\" (#1)",
            "regex",
        ),
        (
            "line_anchor",
            "[[rule]]\nname=\"A\"\ndescription=\"d\"\nscore=1\ntarget=\"raw\"\nregex='\\Afoo'\n",
            "\"A\" (#1)",
            "regex",
        ),
        (
            "unknown_meta_ref",
            "[[rule]]\nname=\"A\"\ndescription=\"d\"\nscore=1\ntarget=\"meta\"\nexpr=\"B && C\"\n",
            "\"A\" (#1)",
            "expr",
        ),
        (
            "meta_cycle",
            "[[rule]]\nname=\"A\"\ndescription=\"d\"\nscore=1\ntarget=\"meta\"\nexpr=\"B\"\n[[rule]]\nname=\"B\"\ndescription=\"d\"\nscore=1\ntarget=\"meta\"\nexpr=\"!A\"\n",
            "\"A\" (#1)",
            "expr",
        ),
    ];

    #[test]
    fn compile_errors_name_the_rule_and_the_key() {
        for (row, text, rule, key) in ERRORS {
            let err = compile(text).expect_err(row);
            assert_eq!(err.rule(), Some(*rule), "{row}: {err}");
            assert_eq!(err.key(), Some(*key), "{row}: {err}");
        }
    }

    #[test]
    fn metas_are_ordered_after_their_inputs() {
        let text = "[[rule]]\nname=\"M2\"\ndescription=\"d\"\nscore=1\ntarget=\"meta\"\nexpr=\"M1 && X\"\n\
                    [[rule]]\nname=\"M1\"\ndescription=\"d\"\nscore=1\ntarget=\"meta\"\nexpr=\"X\"\n\
                    [[rule]]\nname=\"X\"\ndescription=\"d\"\nscore=1\ntarget=\"body\"\nphrases=[\"xx\"]\n";
        let r = compile(text).expect("compiles");
        let order: Vec<&str> = r.metas.iter().map(|(id, _)| r.name(*id)).collect();
        assert_eq!(order, vec!["M1", "M2"]);
    }

    #[test]
    fn globs_become_anchored_case_insensitive_regexes() {
        let rows: &[(&str, &str, &str, bool)] = &[
            ("ext", "*.exe", "Setup.EXE", true),
            ("ext_not_suffix", "*.exe", "setup.exe.txt", false),
            ("question", "a?c", "abc", true),
            ("dot_literal", "*.js", "xjs", false),
            ("non_ascii", "*ü.zip", "grüße-ü.zip", true),
        ];
        for (row, glob, name, want) in rows {
            let re = regex::bytes::RegexBuilder::new(&glob_regex(glob))
                .unicode(false)
                .build()
                .expect(row);
            assert_eq!(re.is_match(name.as_bytes()), *want, "{row}");
        }
    }
}
