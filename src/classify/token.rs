//! The tokenizer: scan events in, a bounded set of distinct hashed features out (see the
//! module docs of [`crate::classify`] for what becomes a token).
//!
//! Streaming: a word cut between two `Text` events is carried in a fixed buffer, so the
//! feature set is the same however the text is cut. Features are a set; the order in which
//! distinct features first appear decides what the bounds drop. Header, part and text events
//! come in an order the cuts do not change, but where a `Url` event falls among the `Text`
//! events does depend on them, so URL features have a budget of their own
//! ([`MAX_URL_TOKENS`]) and their own dedup table: neither class can crowd out the other.

use std::cell::Cell;
use std::sync::Arc;

use crate::classify::hops::{Fate, InternalHosts, Walk};
use crate::classify::model::Model;
use crate::message::{ScanEvent, ScanSink};
use crate::swar::{in_range, HIGH, ONES};

/// Longest token, in bytes. Longer ASCII words become one `skip` token (their first byte and
/// length class), longer non-ASCII runs (scripts written without spaces) are cut into pieces.
pub const MAX_TOKEN_BYTES: usize = 24;
/// Most distinct features counted per message from header fields, parts and text; later ones
/// are ignored. 384 rather than 448 since tokenizer version 9: about half the corpus's
/// messages reach the cap, and with fewer of their body words the model missed 6.6 spam a
/// seed fewer for 0.4 false positives more (`conbool eval`, five seeds; of those, foff-milter
/// 5.2 spam caught more and 1.4 ham flagged more; docs/quality-notes.md), at less cost.
pub const MAX_TOKENS: usize = 384;
/// Most distinct features counted per message from URLs (on top of [`MAX_TOKENS`]: 448 in
/// all).
pub const MAX_URL_TOKENS: usize = 64;
/// Bytes of decoded body text tokenized per message; the rest is not looked at (the rules
/// still see it). Together with [`MAX_TOKENS`] this bounds the classifier's work per message.
pub const MAX_TEXT_BYTES: usize = 4 * 1024;
/// Bytes of one header value looked at, for the fields in [`FULL_VALUE`].
const MAX_HEADER_VALUE_BYTES: usize = 1024;
/// Top-level fields whose values are looked at (up to [`MAX_HEADER_VALUE_BYTES`]). Of any
/// other top-level field only the name and its place in the order count (tokenizer version
/// 13): their words (ids, tracking data, a sending platform's own fields) cost 5 % of the
/// classifier's time, and with the trainer's per-source evidence the model does better
/// without them (docs/quality-notes.md, session 30).
#[cfg_attr(not(test), allow(dead_code))] // encoded in field_flags
const FULL_VALUE: &[&[u8]] = &[
    b"subject",
    b"from",
    b"to",
    b"cc",
    b"reply-to",
    b"sender",
    b"return-path",
    b"received",
    b"content-type",
    b"x-mailer",
    b"user-agent",
    b"list-id",
    b"list-unsubscribe",
    b"organization",
    b"authentication-results",
    b"message-id",
    b"errors-to",
    b"thread-topic",
];
/// Bytes of one URL looked at.
const MAX_URL_BYTES: usize = 512;
/// Bytes of a field name, media type or host kept in a token.
const MAX_NAME_BYTES: usize = 64;
/// Slots of the dedup table: a power of two, at least twice [`MAX_TOKENS`] (at most half full).
const TABLE_SLOTS: usize = (2 * MAX_TOKENS).next_power_of_two();
/// Slots of the URL features' dedup table, likewise.
const URL_TABLE_SLOTS: usize = (2 * MAX_URL_TOKENS).next_power_of_two();
// The tables' slots hold an index into the feature list, plus one, as a `u16`.
const _: () = assert!(MAX_TOKENS + MAX_URL_TOKENS < u16::MAX as usize);

/// Header fields whose values are not tokenized: timestamps and signatures.
#[cfg_attr(not(test), allow(dead_code))] // encoded in field_flags
const NO_VALUE: &[&[u8]] = &[
    b"date",
    b"dkim-signature",
    b"domainkey-signature",
    b"x-google-dkim-signature",
    b"arc-seal",
    b"arc-message-signature",
    b"delivery-date",
];

/// Header fields holding addresses: their domain is a token too.
#[cfg_attr(not(test), allow(dead_code))] // encoded in field_flags
const ADDRESS: &[&[u8]] = &[
    b"from",
    b"reply-to",
    b"return-path",
    b"sender",
    b"to",
    b"cc",
    b"message-id",
    b"errors-to",
];

/// Top-level header fields whose absence is a token too (at most 16).
const PRESENCE: &[&[u8]] = &[
    b"date",
    b"message-id",
    b"to",
    b"mime-version",
    b"list-unsubscribe",
    b"received",
    b"dkim-signature",
    b"reply-to",
    b"return-path",
    b"subject",
    b"list-id",
    b"precedence",
    b"x-mailer",
    b"user-agent",
    b"cc",
    b"in-reply-to",
];

/// Fields whose registrable domain is compared with `From`'s (`dkim-signature` by its `d=`).
#[cfg_attr(not(test), allow(dead_code))] // encoded in field_flags
const DOMAIN_FIELDS: &[&[u8]] = &[
    b"from",
    b"reply-to",
    b"return-path",
    b"dkim-signature",
    b"message-id",
    b"sender",
];

/// Cumulative count buckets: a count's token is set when it reaches each of these.
const COUNT_BUCKETS: &[u32] = &[1, 2, 3, 5, 10, 20, 30, 50];

/// Part header fields tokenized (prefixed `p:`).
#[cfg_attr(not(test), allow(dead_code))] // encoded in field_flags
const PART_FIELDS: &[&[u8]] = &[
    b"content-type",
    b"content-transfer-encoding",
    b"content-disposition",
];

/// Fields whose value ends in `; date-time` (RFC 5321 section 4.4), cut off before tokens are
/// taken: the time a hop took the message is not a property of the message, and in an archive
/// it is the time of the collection.
#[cfg_attr(not(test), allow(dead_code))] // encoded in field_flags
const DATED: &[&[u8]] = &[b"received"];

/// The field final delivery writes from the envelope: once the relay has given the envelope
/// sender ([`Tokenizer::envelope_sender`]), the message's own are not read.
#[cfg_attr(not(test), allow(dead_code))] // encoded in field_flags
const ENVELOPE: &[&[u8]] = &[b"return-path"];

const F_FULL: u32 = 1;
const F_NO_VALUE: u32 = 2;
const F_ADDRESS: u32 = 4;
const F_PART: u32 = 8;
const F_PRESENCE: u32 = 16;
const F_DOMAIN: u32 = 32;
const F_DATED: u32 = 64;
const F_ENVELOPE: u32 = 128;

/// Flags for the [`PRESENCE`] field at `i`.
const fn presence(i: u32) -> u32 {
    F_PRESENCE | i << 8
}

/// Flags for the [`DOMAIN_FIELDS`] field at `i`.
const fn domain(i: u32) -> u32 {
    F_DOMAIN | i << 16
}

/// What the lists above say about a lower-cased field name, in one look-up: `F_*` bits, the
/// [`PRESENCE`] index in bits 8 to 15 and the [`DOMAIN_FIELDS`] index in bits 16 to 23
/// (a test checks it against the lists).
#[inline(always)]
const fn field_flags(lname: &[u8]) -> u32 {
    match lname {
        b"subject" => F_FULL | presence(9),
        b"from" => F_FULL | F_ADDRESS | domain(0),
        b"to" => F_FULL | F_ADDRESS | presence(2),
        b"cc" => F_FULL | F_ADDRESS | presence(14),
        b"reply-to" => F_FULL | F_ADDRESS | presence(7) | domain(1),
        b"sender" => F_FULL | F_ADDRESS | domain(5),
        b"return-path" => F_FULL | F_ADDRESS | F_ENVELOPE | presence(8) | domain(2),
        b"received" => F_FULL | F_DATED | presence(5),
        b"content-type" => F_FULL | F_PART,
        b"x-mailer" => F_FULL | presence(12),
        b"user-agent" => F_FULL | presence(13),
        b"list-id" => F_FULL | presence(10),
        b"list-unsubscribe" => F_FULL | presence(4),
        b"organization" => F_FULL,
        b"authentication-results" => F_FULL,
        b"message-id" => F_FULL | F_ADDRESS | presence(1) | domain(4),
        b"errors-to" => F_FULL | F_ADDRESS,
        b"thread-topic" => F_FULL,
        b"date" => F_NO_VALUE | presence(0),
        b"dkim-signature" => F_NO_VALUE | presence(6) | domain(3),
        b"domainkey-signature" => F_NO_VALUE,
        b"x-google-dkim-signature" => F_NO_VALUE,
        b"arc-seal" => F_NO_VALUE,
        b"arc-message-signature" => F_NO_VALUE,
        b"delivery-date" => F_NO_VALUE,
        b"mime-version" => presence(3),
        b"precedence" => presence(11),
        b"in-reply-to" => presence(15),
        b"content-transfer-encoding" => F_PART,
        b"content-disposition" => F_PART,
        _ => 0,
    }
}

/// Whether a header field was added by a collector's filter or mail client rather than by the
/// mail as a gateway receives it (see `../shared/corpus/README.md`): never a feature.
///
/// Besides the fields that README names (`X-Spam-*`, `X-Bogosity`, `X-Virus-Scanned`,
/// `X-Keywords`, `X-UIDL`, `X-Mozilla-*`, `X-Account-Key`, `Status`, `X-Status`), every
/// `X-` field that carries another filter's judgement of the message at a receiving site:
/// names with `spam`, `virus`, `scan` or `score` in them (`X-Barracuda-Spam-Status`,
/// `X-Amavis-Alert`, `X-Microsoft-Antispam`, `X-Scanned-By`, `X-CM-Score` ...), and the
/// stamps of a few filters named for themselves (`X-ASG-*` and `X-Barracuda-*` of the
/// Barracuda gateway, `X-Amavis*`, `X-Policyd-Weight`, `X-Greylist`, `X-IronPort-Anti*`,
/// `X-Cloudmark-*`, `X-Authority-Analysis`, the analysis fields `X-FOFF-*` of the milter
/// whose test mail is the corpus's foff-milter source, and `XStatus`, `XLevel`,
/// `XChecker-Version`).
/// In the labelled corpus such fields sit on one class of one source only (420 of the 560
/// csdmc2010 spam carry Barracuda's fields, 410 of its 480 ham `XChecker-Version`): a model
/// that learns them scores well on the archive and has nothing to go on in production.
/// Also the fields that final delivery into the collector's mailbox added (`Delivered-To`,
/// `X-Original-To`, `Envelope-To`, `X-Envelope-From`, `X-Envelope-To`, `X-Delivered-To`,
/// `X-Rcpt-To`, and Yahoo's `X-Apparently-To`), and by a mailbox that forwarded the message to
/// the collector (Gmail's `X-Forwarded-To`, `X-Forwarded-For`, `X-Forwarded-Encrypted`): the
/// relay sees mail before its final delivery, so they are never there, and
/// in the corpus they tell classes apart (`X-Original-To` on 425 of the 560 csdmc2010 spam and
/// on 479 of its 480 ham; `Delivered-To` on 60 % of the spamassassin spam and 93 % of its ham).
/// (`Return-Path`, which final delivery writes too, is the envelope sender: the relay has it,
/// see [`Tokenizer::envelope_sender`].)
/// And the fields written after the relay's scan, which mail collected from mailboxes behind
/// it carries: the relay's own (`X-Conbool-Flag`, `X-Conbool-Score`, the loop header
/// `X-Conbool-<tenant>`, `X-Conbool-Disclaimer`: a model trained on an export of them would
/// learn the relay's old verdicts) and Exchange's organization and forest fields
/// (`X-MS-Exchange-Organization-SCL` ...), which Exchange's header firewall strips from mail
/// arriving from outside and then stamps inside.
/// And the transport fields Exchange Online stamps on every message it routes
/// (`X-MS-Exchange-*`: `CrossTenant-*`, `Transport-*`, `AtpMessageProperties` ...;
/// `X-MS-TrafficTypeDiagnostic`, `X-MS-PublicTrafficType`, `X-MS-Office365-Filtering-*`,
/// `X-MS-Oob-TLC-*`, `X-EOPAttributedMessage`, `X-EOPTenantAttributedMessage`,
/// `X-Forefront-*`, `X-OriginatorOrg`, `X-IncomingHeaderCount`, `X-IncomingTopHeaderMarker`).
/// The relay sits behind the tenant's Exchange, which
/// stamps or re-stamps them on all mail it hands over, so there they tell nothing about the
/// sender; in the corpus they are on five foff-milter spam sent from Microsoft 365 tenants
/// and on no ham, and a model that learns them pushed every message a tenant's Exchange
/// routes towards spam (README: "At the relay"). `X-MS-Has-Attach` and
/// `X-MS-TNEF-Correlator`, which the sender's Outlook or Exchange writes, stay.
pub fn is_collection_artefact(name: &[u8]) -> bool {
    let mut low = [0u8; MAX_NAME_BYTES];
    name.len() <= MAX_NAME_BYTES && is_artefact_lower(lower_into(&mut low, name))
}

/// [`is_collection_artefact`] of a lower-cased name.
#[inline(always)]
fn is_artefact_lower(name: &[u8]) -> bool {
    const EXACT: &[&[u8]] = &[
        b"x-keywords",
        b"x-uidl",
        b"x-account-key",
        b"x-status",
        b"xstatus",
        b"xlevel",
        b"xchecker-version",
        b"x-original-to",
        b"x-envelope-from",
        b"x-envelope-to",
        b"x-delivered-to",
        b"x-rcpt-to",
        b"x-apparently-to",
        b"x-forwarded-to",
        b"x-forwarded-for",
        b"x-forwarded-encrypted",
    ];
    const PREFIX: &[&[u8]] = &[
        b"x-mozilla-",
        b"x-bogosity",
        b"x-asg-",
        b"x-barracuda",
        b"x-amavis",
        b"x-policyd",
        b"x-greylist",
        b"x-ironport-anti",
        b"x-cloudmark",
        b"x-authority-analysis",
        b"x-foff-",
        b"x-conbool-",
        b"x-ms-exchange-",
        b"x-ms-traffictypediagnostic",
        b"x-ms-publictraffictype",
        b"x-ms-office365-filtering-",
        b"x-ms-oob-tlc-",
        b"x-eopattributedmessage",
        b"x-eoptenantattributedmessage",
        b"x-forefront-",
        b"x-originatororg",
        b"x-incomingheadercount",
        b"x-incomingtopheadermarker",
    ];
    match name.first() {
        Some(b'x') => {
            EXACT.contains(&name)
                || PREFIX.iter().any(|p| name.starts_with(p))
                || has_verdict_word(name)
        }
        Some(b's') => name == b"status",
        Some(b'd') => name == b"delivered-to",
        Some(b'e') => name == b"envelope-to",
        _ => false,
    }
}

/// Whether a lower-cased name holds `spam`, `viru`(s), `scan` or `score`: four-byte windows
/// compared as numbers (names are short, and most are not `X-` fields at all).
fn has_verdict_word(name: &[u8]) -> bool {
    const SPAM: u32 = u32::from_le_bytes(*b"spam");
    const VIRU: u32 = u32::from_le_bytes(*b"viru");
    const SCAN: u32 = u32::from_le_bytes(*b"scan");
    const SCOR: u32 = u32::from_le_bytes(*b"scor");
    name.windows(4).any(|w| {
        let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        v == SPAM || v == VIRU || v == SCAN || v == SCOR
    })
}

/// The distinct features of one message (at most [`MAX_TOKENS`] plus `MAX_URL_TOKENS` from
/// URLs; a hash may be in both classes and then counts twice), and the model that scores
/// them when one is attached. The weights are looked up only when the probability is asked
/// for, in one tight pass (the loads overlap there, rather than stalling each insert).
#[derive(Clone, Debug)]
pub struct Features {
    /// Open addressing over the feature hashes, at most half full: each slot holds one more
    /// than the index of its feature in `list` (0 = empty). Two bytes a slot rather than the
    /// hash's four: the tables are zeroed for every message, and that costs by the byte.
    table: Box<[u16; TABLE_SLOTS]>,
    /// The same for URL features.
    url_table: Box<[u16; URL_TABLE_SLOTS]>,
    list: Vec<u32>,
    /// How many of `list` came from header fields, parts and text (kept apart from `urls`
    /// rather than worked out from the length: each insert checks it).
    others: usize,
    /// How many of `list` came from URLs.
    urls: usize,
    model: Option<Arc<Model>>,
    /// The last probability worked out, with the length of `list` then and a fingerprint of
    /// the extra features: features are only added, so the same length is the same set (the
    /// verdict is asked for more than once).
    memo: Cell<Option<((usize, u64), f64)>>,
    /// The model's weight sum of the first `.0` features of `list` (the features are only
    /// added: a later verdict sums only the new ones).
    summed: Cell<(usize, i64)>,
}

impl Default for Features {
    fn default() -> Features {
        Features::new(None)
    }
}

impl Features {
    /// An empty set; with a model, each new feature's weight is added as it comes.
    pub fn new(model: Option<Arc<Model>>) -> Features {
        Features {
            table: Box::new([0; TABLE_SLOTS]),
            url_table: Box::new([0; URL_TABLE_SLOTS]),
            list: Vec::with_capacity(MAX_TOKENS + MAX_URL_TOKENS),
            others: 0,
            urls: 0,
            model,
            memo: Cell::new(None),
            summed: Cell::new((0, 0)),
        }
    }

    /// The distinct features, in the order they first came.
    pub fn as_slice(&self) -> &[u32] {
        &self.list
    }

    /// The model's probability that the message is spam (0.5 without a model).
    pub fn probability(&self) -> f64 {
        self.probability_with(&[])
    }

    /// The model's probability with `extra` features besides these (the rules' hits, see
    /// [`rule_feature`]; 0.5 without a model).
    pub fn probability_with(&self, extra: &[u32]) -> f64 {
        self.probability_with_all(extra.iter().copied())
    }

    /// [`Features::probability_with`] of the features `extra` yields (no list to build).
    pub(crate) fn probability_with_all(&self, extra: impl Iterator<Item = u32>) -> f64 {
        let Some(m) = &self.model else {
            return 0.5;
        };
        let (n_extra, fingerprint, extra_sum) =
            extra.fold((0usize, 0u64, 0i64), |(n, h, sum), f| {
                (
                    n + 1,
                    (h ^ u64::from(f)).wrapping_mul(K_MUL),
                    sum + i64::from(m.weight(f)),
                )
            });
        let key = (self.list.len(), fingerprint ^ n_extra as u64);
        if let Some((k, p)) = self.memo.get() {
            if k == key {
                return p;
            }
        }
        let (done, sum) = self.summed.get();
        let sum = sum + m.sum(self.list.get(done..).unwrap_or_default());
        self.summed.set((self.list.len(), sum));
        let p = m.probability_of_sum(sum + extra_sum, self.list.len() + n_extra);
        self.memo.set(Some((key, p)));
        p
    }

    /// Whether no more header, part or text features are counted.
    #[inline]
    fn full(&self) -> bool {
        self.others >= MAX_TOKENS
    }

    /// Whether no more URL features are counted.
    #[inline]
    fn urls_full(&self) -> bool {
        self.urls >= MAX_URL_TOKENS
    }

    #[inline(always)]
    fn insert(&mut self, h: u32) {
        let h = h.max(1);
        if !self.full() && probe(&mut self.table, &self.list, h) {
            self.list.push(h);
            self.others += 1;
        }
    }

    #[inline(always)]
    fn insert_url(&mut self, h: u32) {
        let h = h.max(1);
        if !self.urls_full() && probe(&mut self.url_table, &self.list, h) {
            self.list.push(h);
            self.urls += 1;
        }
    }
}

/// The feature of a rule hit: the rule engine hands the names of the rules a message hits to
/// the classifier with its own features ([`Features::probability_with`]), so the model learns
/// a weight per rule (as SpamAssassin's perceptron learns rule scores).
pub fn rule_feature(name: &str) -> u32 {
    fold(hash_bytes(SEED_RULE, name.as_bytes())).max(1)
}

/// Looks `h` up in an open-addressing table of `N` slots (a power of two) no more than half
/// full, whose slots index `list` (plus one; 0 = empty); when it is not there, takes the slot
/// for `list`'s next entry, which the caller then pushes. Whether it was new. Linear probing
/// from the slot the top bits of `h` name (`h * N >> 32`): the low bits of [`fold`]'s product
/// depend only on the low bits of the word hash and cluster more, and the compiler sees the
/// index in range.
#[inline(always)]
fn probe<const N: usize>(table: &mut [u16; N], list: &[u32], h: u32) -> bool {
    let mut at = ((u64::from(h) * N as u64) >> 32) as usize;
    loop {
        let slot = &mut table[at];
        if *slot == 0 {
            *slot = (list.len() + 1) as u16;
            return true;
        }
        if list.get(usize::from(*slot) - 1) == Some(&h) {
            return false;
        }
        at = (at + 1) % N;
    }
}

/// Turns one message's scan events into [`Features`]. Feed it with [`ScanSink::event`], then
/// call [`Tokenizer::finish`] (a word still open at the end of the text counts only then).
///
/// `NAMES`: also keep a readable name for every feature ([`Tokenizer::naming`], for
/// `conbool scan` to say which tokens the probability came from). The scan's tokenizer is
/// `Tokenizer<false>`: the naming code is not compiled into it.
#[derive(Clone, Debug)]
pub struct Tokenizer<const NAMES: bool = false> {
    features: Features,
    word: WordState,
    /// The previous word of the current text part, for word pairs (0 = none).
    prev: u64,
    parts: u32,
    /// Body text bytes still to look at (counts down from [`MAX_TEXT_BYTES`]).
    text_left: usize,
    /// A `Url` event is being read: features go to the URL budget.
    in_url: bool,
    facts: Facts,
    /// The receiving side's hosts and the walk down the top-level fields
    /// ([`Tokenizer::internal_hosts`]).
    walk: Option<(Arc<InternalHosts>, Walk)>,
    /// With `NAMES`: the features' names.
    names: Names,
}

/// Readable names of features, the first one given to each (a [`Tokenizer`] with `NAMES`).
#[derive(Clone, Debug, Default)]
struct Names {
    by_feature: Vec<(u32, String)>,
    /// The previous text word, for the names of word pairs.
    prev_word: String,
    /// The previous top-level field's name, for the names of field-order pairs.
    prev_field: String,
}

impl Names {
    fn note(&mut self, h: u64, name: String) {
        let f = fold(h).max(1);
        if !self.by_feature.iter().any(|&(g, _)| g == f) {
            self.by_feature.push((f, name));
        }
    }
}

/// `bytes` as text for a feature's name (lossy UTF-8, control characters as `?`).
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// What the tokenizer counts and remembers across events for its structural tokens.
#[derive(Clone, Debug, Default)]
struct Facts {
    /// Bit per [`PRESENCE`] field seen in the top-level header.
    present: u16,
    /// Per [`DOMAIN_FIELDS`]: a hash of its registrable domain (0 = not seen).
    domains: [u64; 6],
    /// The top-level header block has ended (its tokens are out).
    header_done: bool,
    /// The envelope sender stood for `Return-Path` ([`Tokenizer::envelope_sender`]): the
    /// message's own `Return-Path` fields are not read.
    envelope_sender: bool,
    urls: u32,
    /// URLs whose registrable domain is not `From`'s.
    foreign_urls: u32,
    /// Text words written in capitals (at least two, no lower-case letter).
    caps_words: u32,
    /// Text words mixing digits and letters.
    mixed_words: u32,
    /// Text words with a `$`.
    money_words: u32,
    /// The previous top-level field's name hash ([`SEED_NAME`]; 0 before the first), for the
    /// field-order pairs.
    prev_field: u64,
}

/// A word being read, carried across `Text` events.
#[derive(Clone, Debug, Default)]
struct WordState {
    buf: [u8; MAX_TOKEN_BYTES],
    /// Bytes of the word so far (may exceed the buffer).
    len: usize,
    /// Every byte so far is non-ASCII.
    high: bool,
    /// Its shape so far.
    shape: Shape,
}

/// Letter case and digit counts of a word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Shape {
    upper: u32,
    lower: u32,
    digit: u32,
    money: u32,
}

impl Shape {
    #[inline]
    fn add(&mut self, b: u8) {
        self.upper += u32::from(b.is_ascii_uppercase());
        self.lower += u32::from(b.is_ascii_lowercase());
        self.digit += u32::from(b.is_ascii_digit());
        self.money += u32::from(b == b'$');
    }
}

impl Tokenizer {
    /// A tokenizer for one message; with a model, the probability is kept up to date.
    pub fn new(model: Option<Arc<Model>>) -> Tokenizer {
        Tokenizer::make(model)
    }
}

impl Tokenizer<true> {
    /// A tokenizer that also names every feature it makes ([`Tokenizer::named_features`]): the same
    /// features as [`Tokenizer::new`]'s, more slowly.
    pub fn naming(model: Option<Arc<Model>>) -> Tokenizer<true> {
        Tokenizer::make(model)
    }

    /// The message's features so far, each with its name, in the order they came.
    pub fn named_features(&self) -> Vec<(u32, String)> {
        self.features
            .as_slice()
            .iter()
            .map(|&f| {
                let name = self.names.by_feature.iter().find(|&&(g, _)| g == f);
                (
                    f,
                    name.map_or_else(|| format!("feature {f:08x}"), |(_, n)| n.clone()),
                )
            })
            .collect()
    }
}

impl<const NAMES: bool> Tokenizer<NAMES> {
    /// [`Tokenizer::new`], or with `NAMES` [`Tokenizer::naming`].
    pub fn with_model(model: Option<Arc<Model>>) -> Tokenizer<NAMES> {
        Tokenizer::make(model)
    }

    fn make(model: Option<Arc<Model>>) -> Tokenizer<NAMES> {
        Tokenizer {
            features: Features::new(model),
            word: WordState::default(),
            prev: 0,
            parts: 0,
            text_left: MAX_TEXT_BYTES,
            in_url: false,
            facts: Facts::default(),
            walk: None,
            names: Names::default(),
        }
    }

    /// The receiving side's own hosts (`spam.internal_hosts`), given before the message's
    /// events: its `Received` fields at the top and the checks it recorded above them are not
    /// read ([`Walk`]), as `conbool train --internal-hosts` leaves them out of what a model
    /// learns from. At the relay they are the hops of the servers that handed the message
    /// over (Exchange's, on mail a tenant's servers route through it).
    /// With none listed the tokenizer keeps no walk (and no reference).
    pub fn internal_hosts(&mut self, hosts: &Arc<InternalHosts>) {
        if !hosts.is_empty() {
            self.walk = Some((Arc::clone(hosts), Walk::new(hosts)));
        }
    }

    /// With `NAMES`, names the feature of hash `h` (`name` is not called otherwise).
    #[inline(always)]
    fn name(&mut self, h: u64, name: impl FnOnce() -> String) {
        if NAMES {
            self.names.note(h, name());
        }
    }

    /// The envelope sender (`MAIL FROM`, without angle brackets; empty for the null sender),
    /// given before the message's events: the tokens of the `Return-Path: <sender>` field that
    /// final delivery writes, and the message's own `Return-Path` fields are then not read (a
    /// delivering server drops them: Postfix's `message_drop_headers`). The labelled corpus
    /// was collected after final delivery, so its messages carry that field; the relay sees
    /// mail before it, with the envelope instead, and this keeps the two alike.
    pub fn envelope_sender(&mut self, sender: &[u8]) {
        let mut value = Vec::with_capacity(sender.len() + 2);
        value.push(b'<');
        value.extend_from_slice(sender);
        value.push(b'>');
        self.header(0, RETURN_PATH, &value);
        self.facts.envelope_sender = true;
    }

    /// The text ended: an open word counts.
    pub fn finish(&mut self) {
        self.end_word();
        self.header_end();
    }

    /// The features so far.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// Takes the features (for training).
    pub fn into_features(mut self) -> Features {
        self.finish();
        self.features
    }

    fn header(&mut self, depth: usize, name: &[u8], value: &[u8]) {
        if let (0, Some((hosts, walk))) = (depth, &mut self.walk) {
            if walk.field(hosts, name, value) != Fate::Kept {
                return;
            }
        }
        if self.features.full() {
            return;
        }
        let mut lname = [0u8; MAX_NAME_BYTES];
        let n = name.len().min(MAX_NAME_BYTES);
        for (d, s) in lname.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        let lname = &lname[..n];
        if is_artefact_lower(lname) {
            return;
        }
        let flags = field_flags(lname);
        if self.facts.envelope_sender && flags & F_ENVELOPE != 0 {
            return;
        }
        let mut value = &value[..value.len().min(MAX_HEADER_VALUE_BYTES)];
        if flags & F_DATED != 0 {
            if let Some(semi) = memchr::memrchr(b';', value) {
                value = &value[..semi];
            }
        }
        if depth > 0 {
            if flags & F_PART != 0 {
                let seed = hash_bytes(hash_bytes(SEED_PART, lname), b":");
                let mut named = [0u8; 5 + MAX_NAME_BYTES];
                let label = if NAMES {
                    named[..5].copy_from_slice(b"part ");
                    named[5..5 + lname.len()].copy_from_slice(lname);
                    &named[..5 + lname.len()]
                } else {
                    lname
                };
                self.words_of::<false>(seed, label, value, false, false);
            }
            return;
        }
        if flags & F_PRESENCE != 0 {
            self.facts.present |= 1 << ((flags >> 8) & 15);
        }
        if flags & F_DOMAIN != 0 {
            let i = ((flags >> 16) & 7) as usize;
            let dom = if i == 3 {
                tag_value(value, b"d").unwrap_or_default()
            } else {
                address_domain(value)
            };
            let mut low = [0u8; MAX_NAME_BYTES];
            let dom = lower_into(&mut low, dom);
            let base = registrable(dom);
            if let Some(slot) = self.facts.domains.get_mut(i) {
                if *slot == 0 && !base.is_empty() {
                    *slot = hash_bytes(SEED_RELATION, base).max(1);
                }
            }
            if i == 3 && !base.is_empty() {
                let h = hash_bytes(SEED_DKIM, base);
                self.name(h, || format!("DKIM d= domain {}", shown(base)));
                self.add(h);
            }
        }
        let h = hash_bytes(SEED_NAME, &name[..n]);
        self.name(h, || format!("field {}", shown(&name[..n])));
        self.add(h);
        if flags & F_ENVELOPE == 0 {
            self.field_order(h, &name[..n]);
        }
        // Of the fields outside `FULL_VALUE` only the name counts (and `DKIM-Signature`'s
        // `d=`, above).
        if flags & F_NO_VALUE != 0 || flags & F_FULL == 0 {
            return;
        }
        let seed = hash_bytes(hash_bytes(SEED_HEADER, lname), b":");
        let subject = lname == b"subject";
        self.words_of::<false>(seed, lname, value, subject, subject);
        if flags & F_ADDRESS != 0 {
            let dom = address_domain(value);
            if !dom.is_empty() {
                let mut low = [0u8; MAX_NAME_BYTES];
                let dom = lower_into(&mut low, dom);
                let h = hash_bytes(hash_bytes(seed, b"@"), dom);
                self.name(h, || format!("{} domain {}", shown(lname), shown(dom)));
                self.add(h);
            }
        }
    }

    /// The pair of the previous top-level field's name and this one's (`h`, its [`SEED_NAME`]
    /// hash), names as sent: the order in which a program writes its fields, and how it spells
    /// their names, is its fingerprint (`Message-ID` then `To`, `Cc` then `From`: on 112 and
    /// 101 spamassassin spam and no ham). Fields the tokenizer skips (collection artefacts, the
    /// receiving side's hops, Exchange's transport fields) are not in the chain, nor is
    /// `Return-Path`, which final delivery writes on top of the message in an archive and
    /// which comes from the envelope at the relay.
    fn field_order(&mut self, h: u64, name: &[u8]) {
        let prev = std::mem::replace(&mut self.facts.prev_field, h);
        let pair = (prev ^ SEED_ORDER).wrapping_mul(K_PAIR) ^ h;
        if NAMES {
            let before = std::mem::replace(&mut self.names.prev_field, shown(name));
            let before = if prev == 0 { "the top".into() } else { before };
            self.names
                .note(pair, format!("field {} after {before}", shown(name)));
        }
        self.add(pair);
    }

    /// The top-level header block ended: absent fields, and how the domains of `Reply-To`,
    /// `Return-Path`, the DKIM signature, `Message-ID` and `Sender` relate to `From`'s.
    fn header_end(&mut self) {
        if std::mem::replace(&mut self.facts.header_done, true) {
            return;
        }
        // A message read from a file without a `Return-Path` (no envelope given, none in the
        // file) is treated as the relay would see it, with some envelope sender whose address
        // is not known: the field is there, its domain relation is not counted.
        let return_path_bit = 1 << RETURN_PATH_PRESENCE;
        let no_sender = self.facts.present & return_path_bit == 0;
        if no_sender {
            self.facts.present |= return_path_bit;
            self.name(RETURN_PATH_NAME, || "field Return-Path".into());
            self.add(RETURN_PATH_NAME);
        }
        for (i, (&h, name)) in ABSENT.iter().zip(PRESENCE).enumerate() {
            if self.facts.present & (1 << i) == 0 {
                self.name(h, || format!("no {} field", shown(name)));
                self.add(h);
            }
        }
        let domains = self.facts.domains;
        let from = domains[0];
        for (i, other) in domains.iter().enumerate().skip(1) {
            if no_sender && i == RETURN_PATH_DOMAIN {
                continue;
            }
            let r = match (from, *other) {
                (0, 0) => 0,
                (0, _) => 1,
                (_, 0) => 2,
                (f, o) if f == o => 3,
                _ => 4,
            };
            let relation = RELATIONS[r];
            let h = RELATION[i][r];
            self.name(h, || {
                let field = DOMAIN_FIELDS.get(i).copied().unwrap_or(b"?");
                format!("{} domain vs From's: {}", shown(field), shown(relation))
            });
            self.add(h);
        }
    }

    /// Adds `seed`'s bucket token when `count` has just reached one of [`COUNT_BUCKETS`].
    fn count_token(&mut self, seed: u64, count: u32) {
        if let Some(bucket) = COUNT_BUCKETS.iter().position(|&b| b == count) {
            let h = hash_bytes(seed, &[bucket as u8]);
            self.name(h, || {
                let what = match seed {
                    SEED_URLS => "URLs",
                    SEED_FOREIGN => "URLs outside From's domain",
                    SEED_CAPS => "words in capitals",
                    SEED_MIXED => "words mixing digits and letters",
                    _ => "words with $",
                };
                format!("{what}: {count} or more")
            });
            self.add(h);
        }
    }

    fn part_start(&mut self, depth: usize, content_type: &[u8], filename: Option<&[u8]>) {
        self.header_end();
        self.end_word();
        self.prev = 0;
        let ct = &content_type[..content_type.len().min(MAX_NAME_BYTES)];
        let h = hash_bytes(SEED_TYPE, ct);
        self.name(h, || format!("a {} part", shown(ct)));
        self.add(h);
        if depth == 0 && self.parts == 0 {
            let h = hash_bytes(SEED_TOP_TYPE, ct);
            self.name(h, || format!("message type {}", shown(ct)));
            self.add(h);
        }
        self.parts += 1;
        if let Some(bucket) = [1u32, 2, 3, 5, 10, 30]
            .iter()
            .position(|&b| b == self.parts)
        {
            let h = hash_bytes(SEED_PARTS, &[bucket as u8]);
            let parts = self.parts;
            self.name(h, || format!("parts: {parts} or more"));
            self.add(h);
        }
        if let Some(name) = filename {
            let name = name.trim_ascii_end();
            let name = name.strip_suffix(b"\"").unwrap_or(name);
            let ext = match memchr::memrchr(b'.', name) {
                Some(dot) => &name[dot + 1..],
                None => b"",
            };
            let mut low = [0u8; 12];
            let n = ext.len().min(low.len());
            for (d, s) in low.iter_mut().zip(ext) {
                *d = s.to_ascii_lowercase();
            }
            let h = hash_bytes(SEED_EXT, &low[..n]);
            self.name(h, || format!("file name extension .{}", shown(&low[..n])));
            self.add(h);
        }
    }

    fn url(&mut self, url: &[u8]) {
        if self.features.urls_full() {
            return;
        }
        self.in_url = true;
        self.url_features(url);
        self.in_url = false;
    }

    fn url_features(&mut self, url: &[u8]) {
        let url = url.trim_ascii();
        let url = &url[..url.len().min(MAX_URL_BYTES)];
        let scheme_end = memchr::memmem::find(&url[..url.len().min(16)], b"://");
        if let Some(s) = scheme_end {
            let mut low = [0u8; 16];
            for (d, c) in low.iter_mut().zip(&url[..s]) {
                *d = c.to_ascii_lowercase();
            }
            let h = hash_bytes(SEED_SCHEME, &low[..s]);
            self.name(h, || format!("URL scheme {}", shown(&low[..s])));
            self.add(h);
        }
        let host = crate::rules::url_host_of(url);
        let host = &host[..host.len().min(MAX_NAME_BYTES)];
        let mut low = [0u8; MAX_NAME_BYTES];
        for (d, c) in low.iter_mut().zip(host) {
            *d = c.to_ascii_lowercase();
        }
        let host = &low[..host.len()];
        self.facts.urls += 1;
        self.count_token(SEED_URLS, self.facts.urls);
        let from = self.facts.domains[0];
        if !host.is_empty() && host.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
            let h = hash_bytes(SEED_HOST, b"<ip>");
            self.name(h, || "URL host an IP address".into());
            self.add(h);
            self.facts.foreign_urls += 1;
            self.count_token(SEED_FOREIGN, self.facts.foreign_urls);
        } else {
            let h = hash_bytes(SEED_HOST, host);
            self.name(h, || format!("URL host {}", shown(host)));
            self.add(h);
            let base = registrable(host);
            let h = hash_bytes(SEED_DOMAIN, base);
            self.name(h, || format!("URL domain {}", shown(base)));
            self.add(h);
            let tld = memchr::memrchr(b'.', host).map_or(&host[..0], |d| &host[d + 1..]);
            let h = hash_bytes(SEED_TLD, tld);
            self.name(h, || format!("URL top-level domain {}", shown(tld)));
            self.add(h);
            if from != 0 && hash_bytes(SEED_RELATION, base).max(1) == from {
                let h = hash_bytes(SEED_FOREIGN, b"from");
                self.name(h, || "a URL in From's domain".into());
                self.add(h);
            } else {
                self.facts.foreign_urls += 1;
                self.count_token(SEED_FOREIGN, self.facts.foreign_urls);
            }
        }
        let after = scheme_end.map_or(0, |s| s + 3);
        if let Some(slash) = url.get(after..).and_then(|r| memchr::memchr(b'/', r)) {
            self.words_of::<true>(SEED_PATH, b"URL path", &url[after + slash..], true, false);
        }
    }

    /// Words of a whole value (a header value or a URL path), each hashed from `seed`, and
    /// with `pairs` each pair of neighbouring words too; `label` names where they are from.
    /// `URL`: the features count against the URL budget (as [`Tokenizer::add`] does while
    /// `in_url`).
    fn words_of<const URL: bool>(
        &mut self,
        seed: u64,
        label: &[u8],
        value: &[u8],
        digits: bool,
        pairs: bool,
    ) {
        debug_assert_eq!(URL, self.in_url);
        let mut words = Words::new(value);
        let mut prev = 0u64;
        let mut prev_at = (0, 0);
        while !(if URL {
            self.features.urls_full()
        } else {
            self.features.full()
        }) {
            let Some(w) = words.next_span() else {
                return;
            };
            let len = w.end - w.start;
            if (2..=MAX_TOKEN_BYTES).contains(&len) {
                // Outside Subject and URL paths, words with digits are ids, timestamps and
                // addresses, and mixed-case runs are base64: one-off tokens that only crowd
                // out the rest. A long one with a digit is known for one without hashing it
                // or counting its shape.
                if !digits && len > 8 && !w.plain && has_digit(value, w) {
                    continue;
                }
                let (h, shape) = hash_word(seed, value, w);
                let one_off = shape.digit > 0 && (shape.digit as usize == len || len > 4)
                    || shape.upper >= 3 && shape.lower >= 3;
                if digits || !one_off {
                    let word = || shown(&value[w.start..w.end].to_ascii_lowercase());
                    self.name(h, || format!("{}: {}", shown(label), word()));
                    self.add_to::<URL>(h);
                    if pairs {
                        if prev != 0 {
                            let pair = prev.rotate_left(23) ^ h.wrapping_mul(K_PAIR);
                            self.name(pair, || {
                                let first = value.get(prev_at.0..prev_at.1).unwrap_or_default();
                                let first = shown(&first.to_ascii_lowercase());
                                format!("{}: {first} {}", shown(label), word())
                            });
                            self.add_to::<URL>(pair);
                        }
                        prev = h;
                        if NAMES {
                            prev_at = (w.start, w.end);
                        }
                    }
                }
            }
        }
    }

    /// Body text: whole words of the chunk are hashed straight from it; a word cut by the
    /// end of the chunk, or longer than [`MAX_TOKEN_BYTES`], goes through the carried
    /// [`WordState`] byte by byte (the same tokens either way).
    fn text(&mut self, chunk: &[u8]) {
        if self.features.full() {
            return;
        }
        let n = chunk.len().min(self.text_left);
        self.text_left -= n;
        let mut rest = &chunk[..n];
        if self.word.len != 0 {
            let end = word_end(rest);
            self.text_slow(&rest[..end]);
            if end == rest.len() {
                return;
            }
            self.end_word();
            rest = &rest[end + 1..];
        }
        let mut words = Words::new(rest);
        while !self.features.full() {
            let Some(w) = words.next_span() else {
                return;
            };
            let len = w.end - w.start;
            if w.end == rest.len() || len > MAX_TOKEN_BYTES {
                self.text_slow(&rest[w.start..w.end]);
                if w.end == rest.len() {
                    return;
                }
                self.end_word();
            } else if len >= 2 {
                let (h, shape) = hash_word(SEED_TEXT, rest, w);
                if NAMES {
                    self.name_word(h, &rest[w.start..w.end].to_ascii_lowercase());
                }
                self.word_hash(h);
                self.shape(shape);
            }
        }
    }

    /// Bytes of one word (no separators), carried in [`WordState`].
    fn text_slow(&mut self, word: &[u8]) {
        for &b in word {
            let c = WORD[b as usize];
            let w = &mut self.word;
            if w.len == 0 {
                w.high = true;
                w.shape = Shape::default();
            }
            w.shape.add(b);
            if let Some(slot) = w.buf.get_mut(w.len) {
                *slot = c;
            }
            w.len += 1;
            w.high &= c >= 0x80;
            if w.high && w.len == MAX_TOKEN_BYTES {
                // A run of non-ASCII without spaces (CJK, Thai ...): pieces of it.
                self.end_word();
            }
        }
    }

    fn end_word(&mut self) {
        let w = &mut self.word;
        let len = std::mem::take(&mut w.len);
        if len < 2 {
            return;
        }
        let shape = w.shape;
        let h = if len <= MAX_TOKEN_BYTES {
            hash_bytes(SEED_TEXT, &w.buf[..len])
        } else {
            let class = [w.buf[0], (len / 8).min(32) as u8];
            hash_bytes(SEED_SKIP, &class)
        };
        if NAMES {
            let word = if len <= MAX_TOKEN_BYTES {
                shown(&self.word.buf[..len])
            } else {
                let first = shown(&self.word.buf[..1]);
                format!("<a {}-byte word starting {first}>", len / 8 * 8)
            };
            self.name_word(h, word.as_bytes());
        }
        self.word_hash(h);
        self.shape(shape);
    }

    /// Counts a text word's shape: capitals, digits among letters, money.
    #[inline]
    fn shape(&mut self, s: Shape) {
        if s.upper >= 2 && s.lower == 0 {
            self.facts.caps_words += 1;
            self.count_token(SEED_CAPS, self.facts.caps_words);
        }
        if s.digit > 0 && s.upper + s.lower > 0 {
            self.facts.mixed_words += 1;
            self.count_token(SEED_MIXED, self.facts.mixed_words);
        }
        if s.money > 0 {
            self.facts.money_words += 1;
            self.count_token(SEED_MONEY, self.facts.money_words);
        }
    }

    /// Names a text word of hash `h` and its pair with the previous word (as
    /// [`Tokenizer::word_hash`] adds them; called just before it).
    fn name_word(&mut self, h: u64, word: &[u8]) {
        let word = shown(word);
        self.names.note(h, format!("text: {word}"));
        if self.prev != 0 {
            let pair = self.prev.rotate_left(23) ^ h.wrapping_mul(K_PAIR);
            let first = &self.names.prev_word;
            let name = format!("text: {first} {word}");
            self.names.note(pair, name);
        }
        self.names.prev_word = word;
    }

    /// A text word's hash: the word and the pair with the previous word.
    #[inline(always)]
    fn word_hash(&mut self, h: u64) {
        self.add_to::<false>(h);
        if self.prev != 0 {
            self.add_to::<false>(self.prev.rotate_left(23) ^ h.wrapping_mul(K_PAIR));
        }
        self.prev = h;
    }

    #[inline(always)]
    fn add(&mut self, h: u64) {
        if self.in_url {
            self.add_to::<true>(h);
        } else {
            self.add_to::<false>(h);
        }
    }

    /// [`Tokenizer::add`] when it is known whether a URL is being read.
    #[inline(always)]
    fn add_to<const URL: bool>(&mut self, h: u64) {
        if URL {
            self.features.insert_url(fold(h));
        } else {
            self.features.insert(fold(h));
        }
    }
}

impl<const NAMES: bool> ScanSink for Tokenizer<NAMES> {
    fn event(&mut self, ev: ScanEvent<'_>) {
        match ev {
            ScanEvent::Header { depth, name, value } => self.header(depth, name, value),
            ScanEvent::HeaderEnd => self.header_end(),
            ScanEvent::RawBody(_) => {}
            ScanEvent::PartStart {
                depth,
                content_type,
                filename,
            } => self.part_start(depth, content_type, filename),
            ScanEvent::Text(t) => self.text(t),
            ScanEvent::Url(u) => self.url(u),
            // The link's target came as a `Url`; its text as `Text`.
            ScanEvent::Link { .. } => {}
        }
    }
}

const K_MUL: u64 = 0x9E37_79B9_7F4A_7C15;
const K_PAIR: u64 = 0xC2B2_AE3D_27D4_EB4F;
const SEED_TEXT: u64 = 0x1000;
const SEED_SKIP: u64 = 0x2000;
const SEED_NAME: u64 = 0x3000;
const SEED_HEADER: u64 = 0x4000;
const SEED_PART: u64 = 0x5000;
const SEED_TYPE: u64 = 0x6000;
const SEED_TOP_TYPE: u64 = 0x7000;
const SEED_PARTS: u64 = 0x8000;
const SEED_EXT: u64 = 0x9000;
const SEED_SCHEME: u64 = 0xA000;
const SEED_HOST: u64 = 0xB000;
const SEED_DOMAIN: u64 = 0xC000;
const SEED_PATH: u64 = 0xD000;
const SEED_ABSENT: u64 = 0xE000;
/// The field [`Tokenizer::envelope_sender`] gives, as it names it.
const RETURN_PATH: &[u8] = b"Return-Path";
/// [`field_flags`] of [`RETURN_PATH`].
const RETURN_PATH_FLAGS: u32 = field_flags(b"return-path");
/// [`RETURN_PATH`]'s index in [`PRESENCE`].
const RETURN_PATH_PRESENCE: usize = ((RETURN_PATH_FLAGS >> 8) & 15) as usize;
/// [`RETURN_PATH`]'s index in [`DOMAIN_FIELDS`].
const RETURN_PATH_DOMAIN: usize = ((RETURN_PATH_FLAGS >> 16) & 7) as usize;
/// [`RETURN_PATH`]'s name token.
const RETURN_PATH_NAME: u64 = hash_const(SEED_NAME, RETURN_PATH);
const SEED_RELATION: u64 = 0xF000;
const SEED_DKIM: u64 = 0x1_0000;
const SEED_URLS: u64 = 0x1_1000;
const SEED_FOREIGN: u64 = 0x1_2000;
const SEED_TLD: u64 = 0x1_3000;
const SEED_CAPS: u64 = 0x1_4000;
const SEED_MIXED: u64 = 0x1_5000;
const SEED_MONEY: u64 = 0x1_6000;
const SEED_RULE: u64 = 0x1_7000;
const SEED_ORDER: u64 = 0x1_8000;

/// [`hash_bytes`] of each [`PRESENCE`] name from `SEED_ABSENT`: the tokens of absent fields,
/// worked out when compiling (every message has some).
const ABSENT: [u64; PRESENCE.len()] = {
    let mut t = [0; PRESENCE.len()];
    let mut i = 0;
    while i < t.len() {
        t[i] = hash_const(SEED_ABSENT, PRESENCE[i]);
        i += 1;
    }
    t
};

/// How a [`DOMAIN_FIELDS`] field's domain relates to `From`'s.
const RELATIONS: [&[u8]; 5] = [b"none", b"no-from", b"missing", b"same", b"differ"];

/// The token of each [`DOMAIN_FIELDS`] field (by index) and each of [`RELATIONS`]:
/// [`hash_bytes`] of the relation from that of the index, worked out when compiling.
const RELATION: [[u64; RELATIONS.len()]; DOMAIN_FIELDS.len()] = {
    let mut t = [[0; RELATIONS.len()]; DOMAIN_FIELDS.len()];
    let mut i = 0;
    while i < t.len() {
        let seed = hash_const(SEED_RELATION, &[i as u8]);
        let mut r = 0;
        while r < RELATIONS.len() {
            t[i][r] = hash_const(seed, RELATIONS[r]);
            r += 1;
        }
        i += 1;
    }
    t
};

/// The domain of the last address in a header value (`user@Host.example>` → `Host.example`).
fn address_domain(value: &[u8]) -> &[u8] {
    let Some(at) = memchr::memrchr(b'@', value) else {
        return b"";
    };
    let dom = &value[at + 1..];
    let end = dom
        .iter()
        .position(|&b| {
            matches!(
                b,
                b'>' | b' ' | b';' | b',' | b')' | b'"' | b'\t' | b'\r' | b'\n'
            )
        })
        .unwrap_or(dom.len());
    &dom[..end]
}

/// The value of tag `name` in a `tag=value; tag=value` list (a DKIM signature's `d=`,
/// `Received-SPF`'s `receiver=`), trimmed; `None` when the list has no such tag.
pub(super) fn tag_value<'a>(value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut rest = value;
    while let Some(eq) = memchr::memchr(b'=', rest) {
        let tag = rest[..eq].trim_ascii();
        let tag = tag
            .rsplit(|&b| b == b';')
            .next()
            .unwrap_or(tag)
            .trim_ascii();
        let after = &rest[eq + 1..];
        let end = memchr::memchr(b';', after).unwrap_or(after.len());
        if tag.eq_ignore_ascii_case(name) {
            return Some(after[..end].trim_ascii());
        }
        rest = after.get(end..).unwrap_or_default();
    }
    None
}

/// `src` (cut to `buf`'s length) lower-cased into `buf`.
fn lower_into<'a>(buf: &'a mut [u8; MAX_NAME_BYTES], src: &[u8]) -> &'a [u8] {
    let n = src.len().min(MAX_NAME_BYTES);
    for (d, s) in buf.iter_mut().zip(src) {
        *d = s.to_ascii_lowercase();
    }
    &buf[..n]
}

/// A cheap stand-in for the registrable domain of a lower-case host: its last two labels, or
/// three when the second-level label is short (`example.co.uk`, `example.com.br`).
pub fn registrable(host: &[u8]) -> &[u8] {
    let host = host.strip_suffix(b".").unwrap_or(host);
    let Some(last) = memchr::memrchr(b'.', host) else {
        return host;
    };
    let Some(second) = memchr::memrchr(b'.', &host[..last]) else {
        return host;
    };
    let sld_len = last - second - 1;
    if sld_len <= 3 && host.len() - last - 1 == 2 {
        if let Some(third) = memchr::memrchr(b'.', &host[..second]) {
            return &host[third + 1..];
        }
        return host;
    }
    &host[second + 1..]
}

/// A hash of `bytes` continuing from `seed`, eight bytes at a time (the last ones padded with
/// zeros). Part of the model format: changing it changes
/// [`crate::classify::TOKENIZER_VERSION`].
#[inline]
fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = (seed ^ bytes.len() as u64).wrapping_mul(K_MUL);
    let mut at = 0;
    while at < bytes.len() {
        h = (h ^ load(bytes, at, bytes.len() - at)).wrapping_mul(K_MUL);
        h ^= h >> 29;
        at += 8;
    }
    h
}

/// [`hash_bytes`] for constants, a byte at a time.
const fn hash_const(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = (seed ^ bytes.len() as u64).wrapping_mul(K_MUL);
    let mut at = 0;
    while at < bytes.len() {
        let mut v = 0u64;
        let mut i = 0;
        while i < 8 && at + i < bytes.len() {
            v |= (bytes[at + i] as u64) << (8 * i);
            i += 1;
        }
        h = (h ^ v).wrapping_mul(K_MUL);
        h ^= h >> 29;
        at += 8;
    }
    h
}

/// The bytes `src[at..at + len.min(8)]` (inside `src`) as a little-endian word, zero-padded:
/// one load when eight bytes are there to read from `at` (the surplus masked off), else the
/// eight that end where these do, shifted down, else (a slice shorter than eight) two
/// overlapping smaller loads.
#[inline(always)]
fn load(src: &[u8], at: usize, len: usize) -> u64 {
    let len = len.min(8);
    if let Some(Ok(w)) = src.get(at..at + 8).map(<[u8; 8]>::try_from) {
        let v = u64::from_le_bytes(w);
        return if len == 8 {
            v
        } else {
            v & ((1u64 << (8 * len)) - 1)
        };
    }
    let end = at + len;
    if len == 0 {
        return 0;
    }
    if let Some(Ok(w)) = end
        .checked_sub(8)
        .and_then(|from| src.get(from..end))
        .map(<[u8; 8]>::try_from)
    {
        return u64::from_le_bytes(w) >> (8 * (8 - len));
    }
    let b = src.get(at..end).unwrap_or_default();
    let n = b.len();
    let (lo, hi) = if n >= 4 {
        (le(b, 0, 4), le(b, n - 4, 4) << (8 * (n - 4)))
    } else if n >= 2 {
        (le(b, 0, 2), le(b, n - 2, 2) << (8 * (n - 2)))
    } else {
        (le(b, 0, n), 0)
    };
    lo | hi
}

/// The `n` (at most 4) bytes of `b` from `at` as a little-endian number (0 past the end).
#[inline(always)]
fn le(b: &[u8], at: usize, n: usize) -> u64 {
    match (n, b.get(at..at + n)) {
        (4, Some(&[x, y, z, w])) => u64::from(u32::from_le_bytes([x, y, z, w])),
        (2, Some(&[x, y])) => u64::from(u16::from_le_bytes([x, y])),
        (1, Some(&[x])) => u64::from(x),
        _ => 0,
    }
}

/// [`hash_bytes`] of `word` (bytes that are all in words, at most [`MAX_TOKEN_BYTES`])
/// lower-cased as [`WORD`] does, and the word's [`Shape`].
#[cfg(test)]
fn hash_lower(seed: u64, word: &[u8]) -> (u64, Shape) {
    hash_lower_at(seed, word, word.len())
}

/// [`hash_lower_at`] of the word `w` of `bytes`, from one load when it is at most eight
/// bytes long and the slice holds eight bytes around it (most words). The shape of a word
/// without capitals, digits or `$` is left empty: only those three make a word count in
/// [`Tokenizer::shape`] or a header word a one-off; a [`Span::plain`] word is not even looked
/// at for them.
#[inline(always)]
fn hash_word(seed: u64, bytes: &[u8], w: Span) -> (u64, Shape) {
    let (start, len) = (w.start, w.end - w.start);
    if (1..=8).contains(&len) && bytes.len() >= 8 {
        // The eight bytes from the word's start, or the slice's last eight shifted down to it.
        let from = start.min(bytes.len() - 8);
        if let Some(Ok(b)) = bytes.get(from..from + 8).map(<[u8; 8]>::try_from) {
            let keep = u64::MAX >> (64 - 8 * len);
            let v = (u64::from_le_bytes(b) >> (8 * (start - from))) & keep;
            let mut h = (seed ^ len as u64).wrapping_mul(K_MUL);
            if w.plain {
                h = (h ^ v).wrapping_mul(K_MUL);
                return (h ^ (h >> 29), Shape::default());
            }
            let upper = in_range(v, b'A', b'Z');
            h = (h ^ (v | (upper >> 2))).wrapping_mul(K_MUL);
            h ^= h >> 29;
            let digit = in_range(v, b'0', b'9');
            let money = in_range(v, b'$', b'$');
            let shape = if upper | digit | money == 0 {
                Shape::default()
            } else {
                Shape {
                    upper: count(upper),
                    lower: count(in_range(v, b'a', b'z')),
                    digit: count(digit),
                    money: count(money),
                }
            };
            return (h, shape);
        }
    }
    let src = bytes.get(start..).unwrap_or_default();
    if w.plain {
        return (hash_plain_at(seed, src, len), Shape::default());
    }
    hash_lower_at(seed, src, len)
}

/// Whether the word `w` of `bytes` holds a digit, eight bytes at a time.
#[inline(never)]
fn has_digit(bytes: &[u8], w: Span) -> bool {
    let mut at = w.start;
    while at < w.end {
        if in_range(load(bytes, at, w.end - at), b'0', b'9') != 0 {
            return true;
        }
        at += 8;
    }
    false
}

/// [`hash_bytes`] of the word `src[..len]` lower-cased as [`WORD`] does, and its [`Shape`]:
/// eight bytes at a time (case and classes by bit tricks on the word), reading past `len`
/// in `src` when there is more to read (masked off).
#[inline]
fn hash_lower_at(seed: u64, src: &[u8], len: usize) -> (u64, Shape) {
    let len = len.min(MAX_TOKEN_BYTES).min(src.len());
    let mut h = (seed ^ len as u64).wrapping_mul(K_MUL);
    let mut shape = Shape::default();
    let mut at = 0;
    while at < len {
        let v = load(src, at, len - at);
        let upper = in_range(v, b'A', b'Z');
        shape.upper += count(upper);
        shape.lower += count(in_range(v, b'a', b'z'));
        shape.digit += count(in_range(v, b'0', b'9'));
        shape.money += count(in_range(v, b'$', b'$'));
        h = (h ^ (v | (upper >> 2))).wrapping_mul(K_MUL);
        h ^= h >> 29;
        at += 8;
    }
    (h, shape)
}

/// [`hash_lower_at`] of a word known to hold no capital, digit or `$` (a [`Span::plain`]
/// one): nothing to lower-case and an empty shape, so only the hash (the same one).
#[inline]
fn hash_plain_at(seed: u64, src: &[u8], len: usize) -> u64 {
    let len = len.min(MAX_TOKEN_BYTES).min(src.len());
    let mut h = (seed ^ len as u64).wrapping_mul(K_MUL);
    let mut at = 0;
    while at < len {
        h = (h ^ load(src, at, len - at)).wrapping_mul(K_MUL);
        h ^= h >> 29;
        at += 8;
    }
    h
}

/// The words of a byte string (runs of [`WORD`] bytes), found 64 bytes at a time: one bit
/// per byte says whether it is in a word, so the separators between words cost nothing once
/// the block's bits are made, and a byte is classified once however short the words are.
struct Words<'a> {
    bytes: &'a [u8],
    /// Offset of the block `mask` describes.
    block: usize,
    /// Bit `i`: `bytes[block + i]` is a word byte not yet returned.
    mask: u64,
    /// Bit `i`: `bytes[block + i]` is a capital, a digit or `$` (see [`Span::plain`]).
    marked: u64,
}

/// A word found by [`Words`]: `bytes[start..end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    /// Known to hold no capital, digit or `$` (so it needs no lower-casing and has no shape
    /// anyone counts); `false` when unknown.
    plain: bool,
}

impl<'a> Words<'a> {
    fn new(bytes: &'a [u8]) -> Words<'a> {
        let (mask, marked) = block_masks(bytes, 0);
        Words {
            bytes,
            block: 0,
            mask,
            marked,
        }
    }

    /// The next word.
    #[inline(always)]
    fn next_span(&mut self) -> Option<Span> {
        while self.mask == 0 {
            self.block += 64;
            if self.block >= self.bytes.len() {
                return None;
            }
            (self.mask, self.marked) = block_masks(self.bytes, self.block);
        }
        let s = self.mask.trailing_zeros();
        let start = self.block + s as usize;
        let ends = !self.mask & (u64::MAX << s);
        if ends != 0 {
            let e = ends.trailing_zeros();
            let inside = (u64::MAX << s) & !(u64::MAX << e);
            self.mask &= u64::MAX << e;
            return Some(Span {
                start,
                end: self.block + e as usize,
                plain: self.marked & inside == 0,
            });
        }
        // A word that runs to the end of the block goes on in the next ones.
        loop {
            self.block += 64;
            if self.block >= self.bytes.len() {
                self.mask = 0;
                return Some(Span {
                    start,
                    end: self.bytes.len(),
                    plain: false,
                });
            }
            let (mask, marked) = block_masks(self.bytes, self.block);
            if mask != u64::MAX {
                let e = (!mask).trailing_zeros();
                self.mask = mask & (u64::MAX << e);
                self.marked = marked;
                return Some(Span {
                    start,
                    end: self.block + e as usize,
                    plain: false,
                });
            }
        }
    }
}

/// For the up to 64 bytes from `at`: bit `i` set when `bytes[at + i]` is a word byte
/// ([`WORD`]), and in the second mask when it is a capital, a digit or `$` (bits past the
/// end are clear).
#[inline(always)]
fn block_masks(bytes: &[u8], at: usize) -> (u64, u64) {
    let src = bytes.get(at..).unwrap_or_default();
    let mut short = [0u8; 64];
    let block: &[u8; 64] = match src.get(..64).map(<&[u8; 64]>::try_from) {
        Some(Ok(whole)) => whole,
        _ if src.len() <= SHORT_BLOCK => return short_block_masks(src),
        _ => {
            let n = src.len().min(64);
            short[..n].copy_from_slice(&src[..n]);
            &short
        }
    };
    // Two flag bits per byte (a loop the compiler turns into vector compares) ...
    let mut flags = [0u8; 64];
    for (f, &b) in flags.iter_mut().zip(block) {
        let marked = b.wrapping_sub(b'A') < 26 || b.wrapping_sub(b'0') < 10 || b == b'$';
        let word = marked || b.wrapping_sub(b'a') < 26 || b == b'\'' || b >= 0x80;
        *f = u8::from(word) | u8::from(marked) << 1;
    }
    // ... gathered eight at a time into bits, byte 0 lowest.
    let (mut words, mut marked) = (0u64, 0u64);
    for (k, chunk) in flags.chunks_exact(8).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let v = u64::from_le_bytes(w);
        words |= ((v & ONES).wrapping_mul(GATHER) >> 56) << (8 * k);
        marked |= (((v >> 1) & ONES).wrapping_mul(GATHER) >> 56) << (8 * k);
    }
    (words, marked)
}

/// Longest last block that [`block_masks`] reads eight bytes at a time rather than with its
/// 64-byte compare loop (which costs the same however few bytes are left).
const SHORT_BLOCK: usize = 32;

/// [`block_masks`] of the at most [`SHORT_BLOCK`] bytes of `src`, eight at a time.
#[inline(never)]
fn short_block_masks(src: &[u8]) -> (u64, u64) {
    let (mut words, mut marked) = (0u64, 0u64);
    let mut at = 0;
    while at < src.len() {
        let v = load(src, at, src.len() - at);
        let mark = in_range(v, b'A', b'Z') | in_range(v, b'0', b'9') | in_range(v, b'$', b'$');
        let word = mark | in_range(v, b'a', b'z') | in_range(v, b'\'', b'\'') | (v & HIGH);
        words |= ((word >> 7).wrapping_mul(GATHER) >> 56) << at;
        marked |= ((mark >> 7).wrapping_mul(GATHER) >> 56) << at;
        at += 8;
    }
    (words, marked)
}

/// Multiplying by it moves bit `8 i` of a word to bit `56 + i` (no two products collide).
const GATHER: u64 = 0x0102_0408_1020_4080;

/// How many high bits an [`in_range`] mask has.
#[inline(always)]
fn count(mask: u64) -> u32 {
    ((mask >> 7).wrapping_mul(ONES) >> 56) as u32
}

/// Per byte of `v`, the high bit set when [`WORD`] keeps the byte: ASCII letters and digits,
/// `$`, `'` and every non-ASCII byte.
#[inline(always)]
fn word_mask(v: u64) -> u64 {
    in_range(v | (ONES * 0x20), b'a', b'z')
        | in_range(v, b'0', b'9')
        | in_range(v, b'$', b'$')
        | in_range(v, b'\'', b'\'')
        | (v & HIGH)
}

/// Where the first word byte of `bytes` is, eight bytes at a time (the reference for
/// [`Words`]).
#[cfg(test)]
#[inline]
fn word_start(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < bytes.len() {
        let m = word_mask(load(bytes, at, bytes.len() - at));
        if m != 0 {
            return Some(at + (m.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    None
}

/// Length of the word at the start of `bytes` (up to the first separator), eight bytes at a
/// time (the zero padding of a short last load is a separator).
#[inline]
fn word_end(bytes: &[u8]) -> usize {
    let mut at = 0;
    while at < bytes.len() {
        let m = !word_mask(load(bytes, at, bytes.len() - at)) & HIGH;
        if m != 0 {
            return (at + (m.trailing_zeros() / 8) as usize).min(bytes.len());
        }
        at += 8;
    }
    bytes.len()
}

#[inline]
fn fold(h: u64) -> u32 {
    let h = h.wrapping_mul(K_PAIR);
    (h >> 32) as u32
}

/// Per byte: 0 for a separator, else the byte as it goes into a word (ASCII lower-cased).
/// Words are ASCII letters and digits, `$`, `'` and every non-ASCII byte.
static WORD: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_uppercase() {
            b.to_ascii_lowercase()
        } else if b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'$'
            || b == b'\''
            || b >= 0x80
        {
            b
        } else {
            0
        };
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(f: &Features) -> Vec<u32> {
        let mut v = f.as_slice().to_vec();
        v.sort_unstable();
        v
    }

    /// The features of a message of the header block `headers` ([`feed_header`]) alone.
    fn header_features(headers: &[(&[u8], &[u8])]) -> Vec<u32> {
        let mut t = Tokenizer::new(None);
        feed_header(&mut t, headers);
        sorted(&t.into_features())
    }

    /// A top-level header block of `headers`, then a text/plain part starts.
    fn feed_header<const NAMES: bool>(t: &mut Tokenizer<NAMES>, headers: &[(&[u8], &[u8])]) {
        for &(name, value) in headers {
            t.event(ScanEvent::Header {
                depth: 0,
                name,
                value,
            });
        }
        t.event(ScanEvent::HeaderEnd);
        t.event(ScanEvent::PartStart {
            depth: 0,
            content_type: b"text/plain",
            filename: None,
        });
    }

    fn header_events(t: &mut Tokenizer) {
        feed_header(
            t,
            &[
                (b"Subject", b"Win a FREE prize 100"),
                (b"From", b"\"Prize Desk\" <desk@Lucky.example>"),
                (b"X-Spam-Status", b"Yes, score=99"),
                (b"Date", b"Mon, 1 Jan 2024 00:00:00 +0000"),
            ],
        );
    }

    fn run(text: &[&[u8]]) -> Vec<u32> {
        let mut t = Tokenizer::new(None);
        header_events(&mut t);
        for c in text {
            t.event(ScanEvent::Text(c));
        }
        t.event(ScanEvent::Url(
            b"https://Click.Lucky.example/claim/now?id=5",
        ));
        t.event(ScanEvent::PartStart {
            depth: 1,
            content_type: b"application/pdf",
            filename: Some(b"Invoice.PDF"),
        });
        sorted(&t.into_features())
    }

    const TEXT: &[u8] = "Dear friend, you WON $1,000,000!\r\nClaim it now: \
        supercalifragilisticexpialidocious-and-more\r\n\u{4e2d}\u{6587}\u{6587}\u{5b57}\u{5b57}\u{5b57}\u{5b57}\u{5b57}\u{5b57}\u{5b57}\u{5b57}\u{5b57} don't wait"
        .as_bytes();

    #[test]
    fn same_features_whatever_the_cuts() {
        let whole = run(&[TEXT]);
        assert!(whole.len() > 20, "{}", whole.len());
        let bytes: Vec<&[u8]> = TEXT.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "byte by byte");
        for i in 0..=TEXT.len() {
            assert_eq!(run(&[&TEXT[..i], &TEXT[i..]]), whole, "split at {i}");
        }
    }

    #[test]
    fn urls_anywhere_among_the_text_give_the_same_features() {
        // More text words than the budget, so what comes first decides what is dropped; the
        // walker reports a URL when it has seen all of it, which depends on the cuts.
        let mut text = Vec::new();
        for i in 0..(MAX_TOKENS * 2) {
            text.extend_from_slice(format!("word{i} ").as_bytes());
        }
        let urls: Vec<String> = (0..40)
            .map(|i| format!("https://host{i}.example/path/p{i}/q{i}"))
            .collect();
        let run = |url_at: usize| {
            let mut t = Tokenizer::new(None);
            header_events(&mut t);
            t.event(ScanEvent::Text(&text[..url_at]));
            for u in &urls {
                t.event(ScanEvent::Url(u.as_bytes()));
            }
            t.event(ScanEvent::Text(&text[url_at..]));
            t.into_features()
        };
        let last = run(text.len());
        assert!(last.urls_full() && last.full(), "both budgets are spent");
        let want = sorted(&last);
        for at in (0..text.len()).step_by(97).chain([0, 1, 100]) {
            assert_eq!(sorted(&run(at)), want, "URLs after {at} text bytes");
        }
    }

    /// Field names and whether they are collection artefacts.
    const ARTEFACT_ROWS: &[(&str, &str, bool)] = &[
        ("spam_status", "X-Spam-Status", true),
        ("spam_flag_case", "x-SPAM-flag", true),
        ("spam_underscore", "X-Spam_score_int", true),
        ("bogosity", "X-Bogosity", true),
        ("mozilla", "X-Mozilla-Status2", true),
        ("status", "Status", true),
        ("x_status", "X-Status", true),
        ("virus_scanned", "X-Virus-Scanned", true),
        ("antivirus", "X-Antivirus-Status", true),
        ("barracuda", "X-Barracuda-Connect", true),
        ("barracuda_joined", "X-BarracudaScore", true),
        ("asg", "X-ASG-Debug-ID", true),
        ("amavis", "X-AmavisStatus", true),
        ("policyd", "X-Policyd-Weight", true),
        ("greylist", "X-Greylist", true),
        ("antispam", "X-Microsoft-Antispam-Message-Info", true),
        ("mailscanner", "X-Felk-MailScanner-Information", true),
        ("scanned_by", "X-Scanned-By", true),
        ("score", "X-CM-Score", true),
        ("xchecker", "XChecker-Version", true),
        ("xlevel", "XLevel", true),
        ("ironport", "X-IronPort-AntiResult", true),
        ("subject", "Subject", false),
        ("short", "X-Sp", false),
        ("mailer", "X-Mailer", false),
        ("originating_ip", "X-Originating-IP", false),
        ("received_spf", "Received-SPF", false),
        ("authentication_results", "Authentication-Results", false),
        ("list_unsubscribe", "List-Unsubscribe", false),
        ("dkim_filter", "DKIM-Filter", false),
        ("status_like", "X-Statuses", false),
        ("antispam_short", "X-Microsoft-Antispam", true),
        ("xstatus", "XStatus", true),
        ("cloudmark", "X-Cloudmark-Analysis", true),
        ("uidl", "X-UIDL", true),
        ("authority", "X-Authority-Analysis", true),
        ("keywords", "X-Keywords", true),
        ("account_key", "X-Account-Key", true),
        ("delivered_to", "Delivered-To", true),
        ("original_to", "X-Original-To", true),
        ("envelope_to", "Envelope-To", true),
        ("x_envelope_from", "X-Envelope-From", true),
        ("x_envelope_to", "X-Envelope-To", true),
        ("x_delivered_to", "X-Delivered-To", true),
        ("rcpt_to", "X-Rcpt-To", true),
        ("apparently_to", "X-Apparently-To", true),
        ("forwarded_to", "X-Forwarded-To", true),
        ("forwarded_for", "X-Forwarded-For", true),
        ("forwarded_encrypted", "X-Forwarded-Encrypted", true),
        ("foff_evidence", "X-FOFF-Feature-Evidence", true),
        ("foff_rule", "X-FOFF-Rule-Matched", true),
        ("forwarded_like", "X-Forwarded-Message-Id", false),
        ("conbool_flag", "X-Conbool-Flag", true),
        ("conbool_loop", "X-Conbool-example-com", true),
        ("conbool_disclaimer", "X-Conbool-Disclaimer", true),
        ("exchange_scl", "X-MS-Exchange-Organization-SCL", true),
        (
            "exchange_auth_as",
            "x-ms-exchange-organization-authas",
            true,
        ),
        (
            "exchange_forest",
            "X-MS-Exchange-Forest-RulesExecuted",
            true,
        ),
        (
            "exchange_cross_tenant",
            "X-MS-Exchange-CrossTenant-Id",
            true,
        ),
        (
            "exchange_transport",
            "X-MS-Exchange-Transport-EndToEndLatency",
            true,
        ),
        ("traffic_type", "X-MS-TrafficTypeDiagnostic", true),
        ("public_traffic", "X-MS-PublicTrafficType", true),
        (
            "filtering_id",
            "X-MS-Office365-Filtering-Correlation-Id",
            true,
        ),
        ("oob_classifiers", "X-MS-Oob-TLC-OOBClassifiers", true),
        ("eop_attributed", "X-EOPAttributedMessage", true),
        ("eop_tenant", "X-EOPTenantAttributedMessage", true),
        ("forefront_prvs", "X-Forefront-PRVS", true),
        ("originator_org", "X-OriginatorOrg", true),
        ("header_count", "X-IncomingHeaderCount", true),
        ("exchange_has_attach", "X-MS-Has-Attach", false),
        ("exchange_tnef", "X-MS-TNEF-Correlator", false),
        ("ms_like", "X-MS-Exchange", false),
        ("conbool_like", "X-Conbo", false),
        ("return_path", "Return-Path", false),
        ("delivered_like", "Delivered", false),
        ("envelope_like", "Envelope", false),
        ("x_and_one", "Xy", false),
        ("one_letter", "S", false),
        (
            "too_long_to_look_at",
            "X-A-Field-Name-That-Runs-On-Far-Too-Long-To-Be-Looked-At-For-Spam-At-All",
            false,
        ),
    ];

    /// The relay's envelope sender stands for the `Return-Path` field final delivery writes
    /// (the corpus's messages carry it, the relay's do not), and the message's own
    /// `Return-Path` is then not read.
    #[test]
    fn the_envelope_sender_stands_for_return_path() {
        let rest: &[(&[u8], &[u8])] = &[
            (b"From", b"\"Shop\" <news@shop.example>"),
            (b"Subject", b"Your order"),
        ];
        let features = |envelope: Option<&[u8]>, return_path: Option<&[u8]>| {
            let mut t = Tokenizer::new(None);
            if let Some(sender) = envelope {
                t.envelope_sender(sender);
            }
            let mut headers = Vec::new();
            headers.extend(return_path.map(|v| (&b"Return-Path"[..], v)));
            headers.extend_from_slice(rest);
            feed_header(&mut t, &headers);
            sorted(&t.into_features())
        };
        let delivered = features(None, Some(b"<bounce@mailer.example>"));
        assert_eq!(features(Some(b"bounce@mailer.example"), None), delivered);
        assert_eq!(
            features(
                Some(b"bounce@mailer.example"),
                Some(b"<forged@elsewhere.example>")
            ),
            delivered
        );
        assert_ne!(features(None, None), delivered);
        // The null sender is `Return-Path: <>`.
        let null = features(Some(b""), None);
        assert_eq!(null, features(None, Some(b"<>")));
        // A file without `Return-Path` reads as mail with an envelope sender not known: the
        // field is there (no `no Return-Path field` token, which the relay never sees), and
        // its domain is not compared with `From`'s. Only that comparison differs from the null
        // sender's.
        assert_eq!(PRESENCE[RETURN_PATH_PRESENCE], b"return-path");
        assert_eq!(DOMAIN_FIELDS[RETURN_PATH_DOMAIN], b"return-path");
        let unknown = features(None, None);
        assert!(!unknown.contains(&fold(ABSENT[RETURN_PATH_PRESENCE]).max(1)));
        assert!(unknown.contains(&fold(RETURN_PATH_NAME).max(1)));
        let extra: Vec<u32> = null
            .iter()
            .filter(|f| !unknown.contains(f))
            .copied()
            .collect();
        // Relation 2: `From` has a domain, the null sender none.
        assert_eq!(extra, [fold(RELATION[RETURN_PATH_DOMAIN][2]).max(1)]);
        assert!(unknown.iter().all(|f| null.contains(f)));
    }

    /// The order of the top-level fields is a feature; the fields the tokenizer skips and
    /// `Return-Path` are not in it.
    #[test]
    fn the_order_of_the_fields_is_a_feature() {
        let features = header_features;
        let from: (&[u8], &[u8]) = (b"From", b"<news@shop.example>");
        let to: (&[u8], &[u8]) = (b"To", b"<me@home.example>");
        let subject: (&[u8], &[u8]) = (b"Subject", b"hello");
        let return_path: (&[u8], &[u8]) = (b"Return-Path", b"<bounce@shop.example>");
        let verdict: (&[u8], &[u8]) = (b"X-Spam-Status", b"No, score=0.1");
        let exchange: (&[u8], &[u8]) = (b"X-MS-Exchange-Organization-SCL", b"1");
        let in_order = features(&[from, to, subject]);
        assert_ne!(features(&[to, from, subject]), in_order);
        assert_ne!(features(&[from, subject, to]), in_order);
        assert_eq!(features(&[from, verdict, to, exchange, subject]), in_order);
        assert_eq!(
            features(&[return_path, from, to, subject]),
            features(&[from, to, return_path, subject])
        );
        let mut t = Tokenizer::naming(None);
        feed_header(&mut t, &[from, verdict, to]);
        let names: Vec<String> = t.named_features().into_iter().map(|(_, n)| n).collect();
        for want in ["field From after the top", "field To after From"] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
    }

    /// A `Received` field's date-time (after its last `;`) gives no tokens: in an archive it
    /// is the time of the collection, at the relay today's.
    #[test]
    fn the_time_of_a_hop_is_not_a_token() {
        let features =
            |received: &[u8]| header_features(&[(b"Received", received), (b"Subject", b"hello")]);
        let hop = b"from mx.sender.example (mx.sender.example [192.0.2.7]) by mail.example.org";
        let dated = [&hop[..], b"; Tue, 1 Oct 2002 10:11:12 +0100"].concat();
        assert_eq!(features(&dated), features(hop));
        assert_ne!(features(hop), features(b"by mail.example.org"));
    }

    /// Of a field outside [`FULL_VALUE`] only the name (and its place in the order) is a
    /// token: its value gives none; a listed field's value does.
    #[test]
    fn only_listed_fields_values_are_read() {
        let named =
            |name: &[u8], value: &[u8]| header_features(&[(b"Subject", b"hello"), (name, value)]);
        assert_eq!(
            named(b"X-Campaign", b"spring sale newsletter"),
            named(b"X-Campaign", b"")
        );
        assert_ne!(
            named(b"X-Campaign", b""),
            named(b"X-Other", b""),
            "the name counts"
        );
        assert_ne!(
            named(b"X-Mailer", b"spring sale newsletter"),
            named(b"X-Mailer", b""),
            "X-Mailer is listed"
        );
    }

    #[test]
    fn artefact_headers_are_not_features() {
        for (row, name, want) in ARTEFACT_ROWS {
            assert_eq!(is_collection_artefact(name.as_bytes()), *want, "{row}");
        }
        let with = {
            let mut t = Tokenizer::new(None);
            header_events(&mut t);
            sorted(&t.into_features())
        };
        let without = {
            let mut t = Tokenizer::new(None);
            t.event(ScanEvent::Header {
                depth: 0,
                name: b"Subject",
                value: b"Win a FREE prize 100",
            });
            t.event(ScanEvent::Header {
                depth: 0,
                name: b"From",
                value: b"\"Prize Desk\" <desk@Lucky.example>",
            });
            t.event(ScanEvent::Header {
                depth: 0,
                name: b"Date",
                value: b"Mon, 1 Jan 2024 00:00:00 +0000",
            });
            t.event(ScanEvent::PartStart {
                depth: 0,
                content_type: b"text/plain",
                filename: None,
            });
            sorted(&t.into_features())
        };
        assert_eq!(with, without);
    }

    #[test]
    fn tokens_are_bounded() {
        let mut t = Tokenizer::new(None);
        let mut text = Vec::new();
        for i in 0..(MAX_TOKENS * 2) {
            text.extend_from_slice(format!("w{i} ").as_bytes());
        }
        t.event(ScanEvent::Text(&text));
        let f = t.into_features();
        assert_eq!(f.as_slice().len(), MAX_TOKENS);
        let mut d = f.as_slice().to_vec();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), MAX_TOKENS, "distinct");
    }

    #[test]
    fn field_flags_match_the_lists() {
        let lists = [
            FULL_VALUE,
            NO_VALUE,
            ADDRESS,
            PRESENCE,
            DOMAIN_FIELDS,
            PART_FIELDS,
            DATED,
            ENVELOPE,
        ];
        let mut names: Vec<&[u8]> = lists.concat();
        names.extend([&b"x-other"[..], b"", b"subjec", b"subjects"]);
        for name in names {
            let mut want = 0;
            for (list, bit) in [
                (FULL_VALUE, F_FULL),
                (NO_VALUE, F_NO_VALUE),
                (ADDRESS, F_ADDRESS),
                (PART_FIELDS, F_PART),
                (DATED, F_DATED),
                (ENVELOPE, F_ENVELOPE),
            ] {
                if list.contains(&name) {
                    want |= bit;
                }
            }
            if let Some(i) = PRESENCE.iter().position(|p| *p == name) {
                want |= presence(i as u32);
            }
            if let Some(i) = DOMAIN_FIELDS.iter().position(|p| *p == name) {
                want |= domain(i as u32);
            }
            assert_eq!(field_flags(name), want, "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn words_match_the_reference_scan() {
        let mut text = Vec::new();
        for i in 0..3000u32 {
            let b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
            // Mostly letters, some separators and odd bytes; runs longer than a block too.
            text.push(match (b % 9, i / 500 % 3) {
                (_, 2) if i % 500 < 150 => b'a' + b % 26,
                (0 | 1, _) => b' ',
                (2, _) => b,
                (3, _) => b'A' + b % 26,
                _ => b'a' + b % 26,
            });
        }
        for from in [0, 1, 5, 7, 63, 64, 65, 100, 1001, 2999, 3000] {
            for to in [
                text.len(),
                text.len() - 1,
                from + 64,
                from + 128,
                from + 130,
            ] {
                let bytes = &text[from..to.clamp(from, text.len())];
                let mut want = Vec::new();
                let mut at = 0;
                while let Some(s) = word_start(&bytes[at..]) {
                    let end = at + s + word_end(&bytes[at + s..]);
                    want.push((at + s, end));
                    at = (end + 1).min(bytes.len());
                }
                let mut words = Words::new(bytes);
                let got: Vec<_> = std::iter::from_fn(|| words.next_span()).collect();
                let spans: Vec<_> = got.iter().map(|w| (w.start, w.end)).collect();
                assert_eq!(spans, want, "from {from} to {to}");
                for w in got {
                    let word = &bytes[w.start..w.end];
                    let marked = word
                        .iter()
                        .any(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'$');
                    assert!(!(w.plain && marked), "from {from} to {to}: {w:?}");
                    let len = w.end - w.start;
                    if (2..=MAX_TOKEN_BYTES).contains(&len) {
                        let (h, shape) = hash_word(SEED_TEXT, bytes, w);
                        let (want_h, want) = hash_lower_at(SEED_TEXT, word, len);
                        assert_eq!(h, want_h, "from {from} to {to}: {w:?}");
                        // Only words with a capital, a digit or `$` have a shape that counts.
                        if want.upper + want.digit + want.money > 0 {
                            assert_eq!(shape, want, "from {from} to {to}: {w:?}");
                        } else {
                            assert_eq!(shape, Shape::default(), "from {from} to {to}: {w:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fast_lowering_matches_the_word_table() {
        for b in 0..=255u8 {
            let c = WORD[b as usize];
            if c != 0 {
                assert_eq!(
                    hash_lower(1, &[b, b'a', b]).0,
                    hash_bytes(1, &[c, b'a', c]),
                    "{b}"
                );
            }
        }
    }

    #[test]
    fn domains_of_header_values() {
        let rows: &[(&str, &[u8], &[u8])] = &[
            ("angle", b"\"Desk\" <desk@Lucky.example>", b"Lucky.example"),
            ("bare", b"desk@lucky.example", b"lucky.example"),
            ("none", b"undisclosed-recipients:;", b""),
            ("last_at", b"a@b.example, c@d.example", b"d.example"),
        ];
        for (row, value, want) in rows {
            assert_eq!(address_domain(value), *want, "{row}");
        }
        let rows: &[(&str, &[u8], &[u8])] = &[
            (
                "plain",
                b"v=1; a=rsa-sha256; d=mail.example.com; s=k1",
                b"mail.example.com",
            ),
            ("first", b"d=example.org; s=x", b"example.org"),
            (
                "folded",
                b"v=1;\r\n\td=example.net;\r\n s=k",
                b"example.net",
            ),
            ("not_bh", b"bh=abc=; b=zz", b""),
            ("missing", b"v=1; s=k", b""),
        ];
        for (row, value, want) in rows {
            assert_eq!(tag_value(value, b"d").unwrap_or_default(), *want, "{row}");
        }
        let rows: &[(&str, &[u8], &[u8])] = &[
            ("two", b"example.com", b"example.com"),
            ("sub", b"click.mail.example.com", b"example.com"),
            ("cc_sld", b"shop.example.co.uk", b"example.co.uk"),
            ("com_br", b"a.example.com.br", b"example.com.br"),
            ("short_sld_long_tld", b"x.abc.delivery", b"abc.delivery"),
            ("one_label", b"localhost", b"localhost"),
            ("trailing_dot", b"www.example.org.", b"example.org"),
        ];
        for (row, host, want) in rows {
            assert_eq!(registrable(host), *want, "{row}");
        }
    }

    /// The structural tokens: absent fields, `From` against the other domains, URLs against
    /// `From`, text shapes. Each row changes one thing and must change the feature set.
    #[test]
    fn structural_tokens() {
        let base: &[(&[u8], &[u8])] = &[
            (b"From", b"Shop <news@shop.example>"),
            (b"Reply-To", b"news@shop.example"),
            (b"DKIM-Signature", b"v=1; d=shop.example; s=k"),
            (b"Subject", b"Sale"),
        ];
        let features = |headers: &[(&[u8], &[u8])], url: &[u8], text: &[u8]| {
            let mut t = Tokenizer::new(None);
            feed_header(&mut t, headers);
            t.event(ScanEvent::Text(text));
            t.event(ScanEvent::Url(url));
            sorted(&t.into_features())
        };
        let url: &[u8] = b"https://www.shop.example/x";
        let text: &[u8] = b"sale today";
        let want = features(base, url, text);
        assert_eq!(features(base, url, text), want, "deterministic");
        let other_reply: Vec<(&[u8], &[u8])> = base
            .iter()
            .map(|&(n, v)| match n {
                b"Reply-To" => (n, &b"x@elsewhere.example"[..]),
                _ => (n, v),
            })
            .collect();
        let with_date: Vec<(&[u8], &[u8])> = base
            .iter()
            .copied()
            .chain([(&b"Date"[..], &b"Mon, 1 Jan 2024 00:00:00 +0000"[..])])
            .collect();
        let no_dkim: Vec<(&[u8], &[u8])> = base
            .iter()
            .copied()
            .filter(|&(n, _)| n != b"DKIM-Signature")
            .collect();
        let rows: Vec<(&str, Vec<u32>)> = vec![
            ("reply_to_elsewhere", features(&other_reply, url, text)),
            ("date_present", features(&with_date, url, text)),
            ("no_dkim", features(&no_dkim, url, text)),
            (
                "foreign_url",
                features(base, b"https://www.other.example/x", text),
            ),
            ("caps_word", features(base, url, b"SALE today")),
            ("mixed_word", features(base, url, b"sale today4u")),
        ];
        for (row, got) in rows {
            assert_ne!(got, want, "{row}");
        }
        // Shapes, not words: the word set is the same, the caps bucket differs.
        let lower = features(base, url, b"sale now");
        let caps = features(base, url, b"SALE now");
        assert_eq!(lower.len() + 1, caps.len(), "one caps-count token");
    }

    #[test]
    fn one_off_header_words_are_left_out() {
        let run = |value: &[u8]| {
            let mut t = Tokenizer::new(None);
            t.event(ScanEvent::Header {
                depth: 0,
                name: b"Received",
                value,
            });
            t.event(ScanEvent::HeaderEnd);
            sorted(&t.into_features())
        };
        let want = run(b"from mx by relay");
        for (row, value) in [
            ("queue_id", &b"from mx by relay 62QLjvuK041776"[..]),
            ("digits", b"from mx 2026 by relay"),
            ("base64", b"from mx by relay AbCdEfGhIjKl"),
        ] {
            assert_eq!(run(value), want, "{row}");
        }
        assert_ne!(
            run(b"from mx by relay colocrossing"),
            want,
            "a plain word counts"
        );
    }

    #[test]
    fn word_scan_matches_the_word_table() {
        let all: Vec<u8> = (0..=255u8).collect();
        for b in 0..=255u8 {
            for at in 0..12 {
                let mut v = vec![b'a'; 12];
                v[at] = b;
                let want = if WORD[b as usize] == 0 { at } else { 12 };
                assert_eq!(word_end(&v), want, "byte {b} at {at}");
                let mut v = vec![b' '; 12];
                v[at] = b;
                let want = (WORD[b as usize] != 0).then_some(at);
                assert_eq!(word_start(&v), want, "byte {b} at {at}");
            }
        }
        for n in 0..all.len() {
            let s = &all[n..];
            let want = s
                .iter()
                .position(|&b| WORD[b as usize] == 0)
                .unwrap_or(s.len());
            assert_eq!(word_end(s), want, "from {n}");
            let want = s.iter().position(|&b| WORD[b as usize] != 0);
            assert_eq!(word_start(s), want, "from {n}");
        }
    }

    #[test]
    fn constant_hashes_match_hash_bytes() {
        let bytes: Vec<u8> = (0..40u8).map(|b| b.wrapping_mul(37) ^ 0xA5).collect();
        for len in 0..bytes.len() {
            for seed in [0, SEED_ABSENT, u64::MAX] {
                let b = &bytes[..len];
                assert_eq!(hash_const(seed, b), hash_bytes(seed, b), "{len} bytes");
            }
        }
        for (i, name) in PRESENCE.iter().enumerate() {
            assert_eq!(ABSENT[i], hash_bytes(SEED_ABSENT, name), "no {name:?}");
        }
        for (i, row) in RELATION.iter().enumerate() {
            for (r, relation) in RELATIONS.iter().enumerate() {
                let want = hash_bytes(hash_bytes(SEED_RELATION, &[i as u8]), relation);
                assert_eq!(row[r], want, "field {i} relation {relation:?}");
            }
        }
    }

    #[test]
    fn long_words_become_one_skip_token() {
        let a = run(&[b"x aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa y"]);
        let b = run(&[b"x aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab y"]);
        assert_eq!(a, b, "same first byte and length class");
    }
}
