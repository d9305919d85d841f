//! HTML reduced to text for the scanner, streaming: tags, comments and `<script>`/`<style>`
//! content dropped, common entities decoded, whitespace runs collapsed to one space, block-level
//! tags turned into a space so words on either side stay apart, and `href` targets reported as
//! URLs. A link whose text reads like an address (`<a href="https://x.example/">www.bank.example</a>`)
//! is reported with its target and that text ([`ScanEvent::Link`]). This is enough for phrase
//! matching, not a browser: no DOM, no error recovery beyond "treat it as text".

use memchr::{memchr, memchr2};

use super::ScanEvent;
use crate::swar::{eq_bytes, load};

/// Where the reducer reports what it finds besides text: [`ScanEvent::Url`] for each `href`
/// and [`ScanEvent::Link`] for each link whose text reads like an address.
pub(crate) type OnRef<'a> = &'a mut dyn for<'x> FnMut(ScanEvent<'x>);

/// Longest `href` value kept; longer ones are reported cut at this length.
pub(crate) const MAX_HREF_LEN: usize = 2048;

/// Longest tag or attribute name looked at (longer names are cut, which only matters for
/// telling block tags from inline ones).
const MAX_NAME: usize = 16;

/// Longest entity name (`&...;`) recognised.
const MAX_ENTITY: usize = 10;

/// Most bytes of a link's text kept to compare with its target: a displayed address is short,
/// and a longer text is no address.
pub(crate) const MAX_LINK_TEXT: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Text,
    /// After `<`.
    TagOpen,
    /// After `<!`.
    Bang,
    /// After `<!-`.
    BangDash,
    /// Inside `<!-- ... -->`; `dashes` counts the `-` just before.
    Comment {
        dashes: u8,
    },
    /// Inside `<!...>` or `<?...>`.
    Decl,
    TagName,
    /// Between attributes.
    InTag,
    AttrName,
    AfterAttrName,
    BeforeValue,
    /// Attribute value; `quote` is `"`, `'` or 0 for unquoted.
    Value {
        quote: u8,
    },
    /// After `&`.
    Entity,
    /// Inside `<script>` or `<style>`: `matched` bytes of the closing tag seen.
    RawText {
        matched: u8,
    },
}

/// Streaming HTML-to-text state.
#[derive(Clone, Debug)]
pub(crate) struct HtmlText {
    state: State,
    /// Last byte written was a space (or nothing was written yet): collapse the next ones.
    last_space: bool,
    name: [u8; MAX_NAME],
    name_len: usize,
    closing: bool,
    attr: [u8; MAX_NAME],
    attr_len: usize,
    capture: bool,
    href: Vec<u8>,
    entity: [u8; MAX_ENTITY],
    entity_len: usize,
    /// `script` or `style` while in [`State::RawText`].
    raw_tag: &'static [u8],
    /// The tag being read had an `href` (its value, cleaned, in `tag_href`).
    tag_has_href: bool,
    tag_href: Vec<u8>,
    /// An `<a href>` is open: its target and its text so far (at most [`MAX_LINK_TEXT`]).
    link_open: bool,
    link_href: Vec<u8>,
    link_text: Vec<u8>,
    /// Where the open link's text not yet in `link_text` starts in the caller's `out`.
    link_mark: usize,
}

impl Default for HtmlText {
    fn default() -> HtmlText {
        HtmlText::new()
    }
}

impl HtmlText {
    pub(crate) fn new() -> HtmlText {
        HtmlText {
            state: State::Text,
            last_space: true,
            name: [0; MAX_NAME],
            name_len: 0,
            closing: false,
            attr: [0; MAX_NAME],
            attr_len: 0,
            capture: false,
            href: Vec::new(),
            entity: [0; MAX_ENTITY],
            entity_len: 0,
            raw_tag: b"",
            tag_has_href: false,
            tag_href: Vec::new(),
            link_open: false,
            link_href: Vec::new(),
            link_text: Vec::new(),
            link_mark: 0,
        }
    }

    /// Reduces `input`, appending text to `out` and telling `url` each `href` target and each
    /// link whose text reads like an address (the caller may clear `out` between calls).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>, url: OnRef<'_>) {
        self.link_mark = out.len();
        self.feed_bytes(input, out, url);
        self.keep_link_text(out);
    }

    fn feed_bytes(&mut self, input: &[u8], out: &mut Vec<u8>, url: OnRef<'_>) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Text => match find_markup(&input[i..]) {
                    Some(k) => {
                        if k > 0 {
                            // Tags next to each other are common, and so is only whitespace
                            // between them (line ends, indentation): skip the call for both.
                            let seg = &input[i..i + k];
                            if seg.iter().all(|&c| is_space(c)) {
                                self.space(out);
                            } else {
                                self.push_text(out, seg);
                            }
                        }
                        i += k + 1;
                        if input[i - 1] == b'<' {
                            match self.whole_tag(input, i, out, url) {
                                Some(next) => i = next,
                                None => self.state = State::TagOpen,
                            }
                        } else {
                            match self.whole_entity(input, i, out) {
                                Some(next) => i = next,
                                None => {
                                    self.entity_len = 0;
                                    self.state = State::Entity;
                                }
                            }
                        }
                    }
                    None => {
                        self.push_text(out, &input[i..]);
                        i = input.len();
                    }
                },
                State::Comment { dashes } => match memchr(b'>', &input[i..]) {
                    Some(k) => {
                        let before = &input[i..i + k];
                        let trailing = before.iter().rev().take_while(|&&b| b == b'-').count();
                        let total = if trailing == before.len() {
                            trailing + usize::from(dashes)
                        } else {
                            trailing
                        };
                        i += k + 1;
                        if total >= 2 {
                            self.state = State::Text;
                            self.space(out);
                        } else {
                            self.state = State::Comment { dashes: 0 };
                        }
                    }
                    None => {
                        let seg = &input[i..];
                        let trailing = seg.iter().rev().take_while(|&&b| b == b'-').count();
                        let total = if trailing == seg.len() {
                            trailing + usize::from(dashes)
                        } else {
                            trailing
                        };
                        self.state = State::Comment {
                            dashes: total.min(2) as u8,
                        };
                        i = input.len();
                    }
                },
                State::Decl => match memchr(b'>', &input[i..]) {
                    Some(k) => {
                        i += k + 1;
                        self.state = State::Text;
                        self.space(out);
                    }
                    None => i = input.len(),
                },
                State::Value { quote } if quote != 0 => match memchr(quote, &input[i..]) {
                    Some(k) => {
                        self.capture_bytes(&input[i..i + k]);
                        i += k + 1;
                        self.end_value(url);
                        self.state = State::InTag;
                    }
                    None => {
                        self.capture_bytes(&input[i..]);
                        i = input.len();
                    }
                },
                State::TagName => {
                    let rest = &input[i..];
                    let n = rest
                        .iter()
                        .position(|&c| c == b'>' || c == b'/' || is_space(c))
                        .unwrap_or(rest.len());
                    for &c in &rest[..n] {
                        self.push_name(c);
                    }
                    i += n;
                    if i < input.len() && self.byte(input[i], out, url) {
                        i += 1;
                    }
                }
                State::AttrName => {
                    let rest = &input[i..];
                    let n = rest
                        .iter()
                        .position(|&c| matches!(c, b'=' | b'>' | b'/') || is_space(c))
                        .unwrap_or(rest.len());
                    for &c in &rest[..n] {
                        if self.attr_len < MAX_NAME {
                            self.attr[self.attr_len] = c.to_ascii_lowercase();
                            self.attr_len += 1;
                        }
                    }
                    i += n;
                    if i < input.len() && self.byte(input[i], out, url) {
                        i += 1;
                    }
                }
                State::InTag | State::AfterAttrName | State::BeforeValue => {
                    let rest = &input[i..];
                    i += rest.iter().take_while(|&&c| is_space(c)).count();
                    if i < input.len() && self.byte(input[i], out, url) {
                        i += 1;
                    }
                }
                State::Value { quote: 0 } => {
                    let rest = &input[i..];
                    let n = rest
                        .iter()
                        .position(|&c| c == b'>' || is_space(c))
                        .unwrap_or(rest.len());
                    self.capture_bytes(&rest[..n]);
                    i += n;
                    if i < input.len() && self.byte(input[i], out, url) {
                        i += 1;
                    }
                }
                State::RawText { matched: 0 } => match memchr(b'<', &input[i..]) {
                    Some(k) => {
                        i += k + 1;
                        self.state = State::RawText { matched: 1 };
                    }
                    None => i = input.len(),
                },
                _ => {
                    let c = input[i];
                    if self.byte(c, out, url) {
                        i += 1;
                    }
                }
            }
        }
    }

    /// A tag that is all in `input` (from `start`, just after its `<`), read in one go: the
    /// same steps as the byte machine (see [`HtmlText::byte`]) with the state kept in locals.
    /// `None`, with nothing done, when the tag is not all here or is a comment or declaration
    /// (the byte machine takes it from [`State::TagOpen`] then).
    fn whole_tag(
        &mut self,
        input: &[u8],
        start: usize,
        out: &mut Vec<u8>,
        url: OnRef<'_>,
    ) -> Option<usize> {
        /// Most `href` values in one tag handled here; more go to the byte machine.
        const MAX_HREFS: usize = 4;
        let s = &input[start..];
        let first = *s.first()?;
        let (closing, mut j) = match first {
            b'/' => (true, 1),
            c if c.is_ascii_alphabetic() => (false, 0),
            _ => return None,
        };
        let name_start = j;
        while CLASS[usize::from(*s.get(j)?)] & ENDS_NAME == 0 {
            j += 1;
        }
        let name_end = j;
        let mut hrefs: [(usize, usize); MAX_HREFS] = [(0, 0); MAX_HREFS];
        let mut n_hrefs = 0;
        // After the name: attributes. Outside values only `=` (a value follows) and `>` (the
        // end) matter; the attribute a value belongs to is the last name before its `=`, which
        // is all the byte machine keeps of the valueless names and separators before it.
        loop {
            let seg = j;
            j = find_eq_gt(s, j)?;
            if s[j] == b'>' {
                break;
            }
            let is_href = last_attr_is_href(&s[seg..j]);
            j += 1;
            while is_space(*s.get(j)?) {
                j += 1;
            }
            let (v_start, v_end) = match s[j] {
                b'>' => break,
                q @ (b'"' | b'\'') => {
                    let k = find_byte(s, j + 1, q)?;
                    let v = (j + 1, k);
                    j = k + 1;
                    v
                }
                _ => {
                    let v_start = j;
                    while s[j] != b'>' && !is_space(s[j]) {
                        j += 1;
                        s.get(j)?;
                    }
                    (v_start, j)
                }
            };
            if is_href {
                if n_hrefs == MAX_HREFS {
                    return None;
                }
                hrefs[n_hrefs] = (v_start, v_end.min(v_start + MAX_HREF_LEN));
                n_hrefs += 1;
            }
        }
        // The whole tag is here: now do what the byte machine would have done.
        self.closing = closing;
        let name = &s[name_start..name_end];
        // Sixteen bytes at once when there are (only the first `name_len` count).
        match s.get(name_start..name_start + MAX_NAME) {
            Some(sixteen) => self.name.copy_from_slice(sixteen),
            None => {
                for (d, &c) in self.name.iter_mut().zip(name) {
                    *d = c;
                }
            }
        }
        self.name.make_ascii_lowercase();
        self.name_len = name.len().min(MAX_NAME);
        self.tag_has_href = false;
        for &(a, b) in &hrefs[..n_hrefs] {
            self.capture = true;
            self.href.clear();
            self.href.extend_from_slice(&s[a..b]);
            self.end_value(url);
        }
        self.end_tag(out, url);
        Some(start + j + 1)
    }

    /// An entity that is decided within `input` (from `start`, just after its `&`): the same
    /// steps as [`State::Entity`] in [`HtmlText::byte`], in one go. `None`, with nothing done,
    /// when `input` ends first.
    fn whole_entity(&mut self, input: &[u8], start: usize, out: &mut Vec<u8>) -> Option<usize> {
        let s = input.get(start..)?;
        let mut n = 0;
        loop {
            let c = *s.get(n)?;
            if c == b';' {
                self.entity[..n].copy_from_slice(&s[..n]);
                self.entity_len = n;
                self.end_entity(out);
                return Some(start + n + 1);
            }
            if (c.is_ascii_alphanumeric() || (c == b'#' && n == 0)) && n < MAX_ENTITY {
                n += 1;
                continue;
            }
            // Not an entity: written as it was, `c` is looked at again as text.
            self.entity[..n].copy_from_slice(&s[..n]);
            self.entity_len = n;
            self.literal_entity(out);
            return Some(start + n);
        }
    }

    /// Ends the document: a dangling entity is written as it was.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>, url: OnRef<'_>) {
        match self.state {
            State::Entity => self.literal_entity(out),
            State::TagOpen => self.push_text(out, b"<"),
            State::Value { .. } => self.end_value(url),
            _ => {}
        }
        self.state = State::Text;
        self.link_open = false; // a link never closed is not reported
    }

    /// One byte in a state without a fast path; returns whether `c` was consumed (false: look
    /// at it again in the new state).
    fn byte(&mut self, c: u8, out: &mut Vec<u8>, url: OnRef<'_>) -> bool {
        match self.state {
            State::TagOpen => {
                self.name_len = 0;
                self.closing = false;
                self.tag_has_href = false;
                if c == b'!' {
                    self.state = State::Bang;
                } else if c == b'?' {
                    self.state = State::Decl;
                } else if c == b'/' {
                    self.closing = true;
                    self.state = State::TagName;
                } else if c.is_ascii_alphabetic() {
                    self.push_name(c);
                    self.state = State::TagName;
                } else {
                    // "a < b": not a tag.
                    self.state = State::Text;
                    self.push_text(out, b"<");
                    return false;
                }
            }
            State::Bang => {
                self.state = if c == b'-' {
                    State::BangDash
                } else {
                    State::Decl
                };
                return c == b'-';
            }
            State::BangDash => {
                self.state = if c == b'-' {
                    State::Comment { dashes: 0 }
                } else {
                    State::Decl
                };
                return c == b'-';
            }
            State::TagName => {
                if c == b'>' {
                    self.end_tag(out, url);
                } else if is_space(c) || c == b'/' {
                    self.state = State::InTag;
                } else {
                    self.push_name(c);
                }
            }
            State::InTag => {
                if c == b'>' {
                    self.end_tag(out, url);
                } else if !(is_space(c) || c == b'/') {
                    self.attr_len = 0;
                    self.state = State::AttrName;
                    return false;
                }
            }
            State::AttrName => {
                if c == b'=' {
                    self.state = State::BeforeValue;
                } else if c == b'>' {
                    self.end_tag(out, url);
                } else if is_space(c) {
                    self.state = State::AfterAttrName;
                } else if c == b'/' {
                    self.state = State::InTag;
                } else if self.attr_len < MAX_NAME {
                    self.attr[self.attr_len] = c.to_ascii_lowercase();
                    self.attr_len += 1;
                }
            }
            State::AfterAttrName => {
                if c == b'=' {
                    self.state = State::BeforeValue;
                } else if c == b'>' {
                    self.end_tag(out, url);
                } else if !is_space(c) {
                    self.attr_len = 0;
                    self.state = State::AttrName;
                    return false;
                }
            }
            State::BeforeValue => {
                if is_space(c) {
                    return true;
                }
                self.capture = &self.attr[..self.attr_len] == b"href";
                self.href.clear();
                if c == b'"' || c == b'\'' {
                    self.state = State::Value { quote: c };
                } else if c == b'>' {
                    self.end_tag(out, url);
                } else {
                    self.state = State::Value { quote: 0 };
                    return false;
                }
            }
            State::Value { .. } => {
                // Unquoted (quoted values take the fast path in `feed`).
                if is_space(c) {
                    self.end_value(url);
                    self.state = State::InTag;
                } else if c == b'>' {
                    self.end_value(url);
                    self.end_tag(out, url);
                } else {
                    self.capture_bytes(&[c]);
                }
            }
            State::Entity => {
                if c == b';' {
                    self.end_entity(out);
                    self.state = State::Text;
                } else if (c.is_ascii_alphanumeric() || (c == b'#' && self.entity_len == 0))
                    && self.entity_len < MAX_ENTITY
                {
                    self.entity[self.entity_len] = c;
                    self.entity_len += 1;
                } else {
                    self.literal_entity(out);
                    self.state = State::Text;
                    return false;
                }
            }
            State::RawText { matched } => {
                // `matched` counts bytes of "</" + tag seen so far (1 = the '<').
                let want: &[u8] = if matched == 1 {
                    b"/"
                } else {
                    let at = usize::from(matched) - 2;
                    &self.raw_tag[at..at + 1]
                };
                if c.to_ascii_lowercase() == want[0] {
                    let matched = matched + 1;
                    if usize::from(matched) == 2 + self.raw_tag.len() {
                        self.closing = true;
                        self.name_len = 0;
                        for &b in self.raw_tag {
                            self.push_name(b);
                        }
                        self.state = State::TagName;
                    } else {
                        self.state = State::RawText { matched };
                    }
                } else {
                    self.state = State::RawText { matched: 0 };
                    return c != b'<';
                }
            }
            State::Text | State::Comment { .. } | State::Decl => {}
        }
        true
    }

    fn push_name(&mut self, c: u8) {
        if self.name_len < MAX_NAME {
            self.name[self.name_len] = c.to_ascii_lowercase();
            self.name_len += 1;
        }
    }

    #[inline(always)]
    fn end_tag(&mut self, out: &mut Vec<u8>, url: OnRef<'_>) {
        if self.is_a_tag() {
            self.a_tag(out, url);
        }
        let name = &self.name[..self.name_len];
        self.state = State::Text;
        if !self.closing && (name == b"script" || name == b"style") {
            self.raw_tag = if name == b"script" {
                b"script"
            } else {
                b"style"
            };
            self.state = State::RawText { matched: 0 };
        }
        if !is_inline(name) {
            self.space(out);
        }
    }

    /// The tag just read is `<a ...>` or `</a>`.
    #[inline]
    fn is_a_tag(&self) -> bool {
        self.name_len == 1 && self.name[0] == b'a'
    }

    /// `<a ...>` or `</a>` ends: an open link ends, and an `<a href>` opens one.
    #[inline(never)]
    fn a_tag(&mut self, out: &[u8], url: OnRef<'_>) {
        if self.link_open {
            self.end_link(out, url);
        }
        if !self.closing && self.tag_has_href {
            std::mem::swap(&mut self.link_href, &mut self.tag_href);
            self.link_text.clear();
            self.link_mark = out.len();
            self.link_open = true;
        }
        self.tag_has_href = false;
    }

    /// Moves the open link's text written to `out` since the mark into `link_text`.
    fn keep_link_text(&mut self, out: &[u8]) {
        if self.link_open {
            let new = out.get(self.link_mark..).unwrap_or_default();
            let room = MAX_LINK_TEXT.saturating_sub(self.link_text.len());
            self.link_text
                .extend_from_slice(&new[..new.len().min(room)]);
            self.link_mark = out.len();
        }
    }

    /// The open link ends (`</a>`, or another `<a>`): reported when its text reads like an
    /// address (one word, with a dot, no `@`), which the rules compare with its target.
    fn end_link(&mut self, out: &[u8], url: OnRef<'_>) {
        self.keep_link_text(out);
        self.link_open = false;
        let text = super::decode::trim_ws(&self.link_text);
        let addressy = text.len() < MAX_LINK_TEXT
            && text.contains(&b'.')
            && !text.iter().any(|&b| b == b' ' || b == b'@');
        if addressy {
            url(ScanEvent::Link {
                href: &self.link_href,
                text,
            });
        }
    }

    fn capture_bytes(&mut self, b: &[u8]) {
        if self.capture {
            let room = MAX_HREF_LEN.saturating_sub(self.href.len());
            self.href.extend_from_slice(&b[..b.len().min(room)]);
        }
    }

    fn end_value(&mut self, url: OnRef<'_>) {
        if !self.capture {
            return;
        }
        self.capture = false;
        let v = super::decode::trim_ws(&self.href);
        if v.is_empty() {
            return;
        }
        // An `<a>`'s target is kept for its text to be compared with (`end_link`).
        let link = !self.closing && self.is_a_tag();
        if !link && find_amp(v).is_none() {
            url(ScanEvent::Url(v));
            return;
        }
        self.tag_href.clear();
        let mut rest = v;
        while let Some(k) = find_amp(rest) {
            self.tag_href.extend_from_slice(&rest[..k + 1]);
            rest = &rest[k + 5..];
        }
        self.tag_href.extend_from_slice(rest);
        self.tag_has_href = link;
        url(ScanEvent::Url(&self.tag_href));
    }

    fn end_entity(&mut self, out: &mut Vec<u8>) {
        let name = &self.entity[..self.entity_len];
        let cp = if let Some(num) = name.strip_prefix(b"#") {
            let (digits, radix) = match num.first() {
                Some(b'x' | b'X') => (&num[1..], 16),
                _ => (num, 10),
            };
            std::str::from_utf8(digits)
                .ok()
                .and_then(|d| u32::from_str_radix(d, radix).ok())
                .map(|n| char::from_u32(n).unwrap_or('\u{FFFD}'))
        } else {
            named_entity(name)
        };
        match cp {
            // Invisible characters spammers put inside words to break phrase matching.
            Some('\u{AD}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}') => {}
            Some('\u{A0}') => self.space(out),
            Some(c) => {
                let mut enc = [0u8; 4];
                self.push_text(out, c.encode_utf8(&mut enc).as_bytes());
            }
            None => {
                self.literal_entity(out);
                self.push_text(out, b";");
            }
        }
    }

    fn literal_entity(&mut self, out: &mut Vec<u8>) {
        let name = self.entity;
        let len = self.entity_len;
        self.push_text(out, b"&");
        self.push_text(out, &name[..len]);
    }

    fn space(&mut self, out: &mut Vec<u8>) {
        if !self.last_space {
            out.push(b' ');
            self.last_space = true;
        }
    }

    /// Appends text, collapsing each run of whitespace to one space. Runs of words with single
    /// spaces between them (most text) are copied whole.
    fn push_text(&mut self, out: &mut Vec<u8>, text: &[u8]) {
        let mut last_space = self.last_space;
        let mut r = 0;
        while let Some(&b) = text.get(r) {
            if is_space(b) {
                r += 1;
                while text.get(r).is_some_and(|&c| is_space(c)) {
                    r += 1;
                }
                if !last_space {
                    out.push(b' ');
                    last_space = true;
                }
                continue;
            }
            // A run that starts and ends with a byte that is not whitespace, with at most single
            // spaces inside (control bytes are kept as they are): copied whole.
            let start = r;
            r = run_end(text, r);
            out.extend_from_slice(&text[start..r]);
            last_space = false;
        }
        self.last_space = last_space;
    }
}

/// Where the first `&amp;` in `s` is (a `memchr` for `&`, cheaper than a substring searcher
/// built per call for the short `href` values this sees).
fn find_amp(s: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(k) = memchr(b'&', &s[from..]) {
        let at = from + k;
        if s[at..].starts_with(b"&amp;") {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Whether the last attribute name in `seg` (the bytes between a tag's name or last value
/// and an `=`, so without `=` or `>`) is `href`, as the byte machine would have collected it:
/// trailing whitespace skipped, then the run back to whitespace, `/` or the start.
fn last_attr_is_href(seg: &[u8]) -> bool {
    let mut end = seg.len();
    while end > 0 && is_space(seg[end - 1]) {
        end -= 1;
    }
    let Some(start) = end.checked_sub(4) else {
        return false;
    };
    seg[start..end].eq_ignore_ascii_case(b"href")
        && (start == 0 || CLASS[usize::from(seg[start - 1])] & ENDS_ATTR != 0)
}

/// Where the first `=` or `>` in `s[from..]` is, as an index into `s`. The stretches between
/// attributes are short: a word at a time, then `memchr2` for long ones.
fn find_eq_gt(s: &[u8], from: usize) -> Option<usize> {
    const INLINE: usize = 32;
    let mut i = from;
    while let Some(word) = s.get(i..i + 8) {
        if i - from >= INLINE {
            return memchr2(b'=', b'>', &s[i..]).map(|k| i + k);
        }
        let x = load(word);
        let hit = eq_bytes(x, b'=') | eq_bytes(x, b'>');
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s.get(i..)?
        .iter()
        .position(|&b| b == b'=' || b == b'>')
        .map(|k| i + k)
}

/// Where the first `b` in `s[from..]` is, as an index into `s`: a word at a time for short
/// attribute values, then `memchr` for long ones.
fn find_byte(s: &[u8], from: usize, b: u8) -> Option<usize> {
    const INLINE: usize = 32;
    let mut i = from;
    while let Some(word) = s.get(i..i + 8) {
        if i - from >= INLINE {
            return memchr(b, &s[i..]).map(|k| i + k);
        }
        let hit = eq_bytes(load(word), b);
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s.get(i..)?.iter().position(|&c| c == b).map(|k| i + k)
}

/// Where the first `<` or `&` in `s` is. Text between tags is mostly short, so look a word at a
/// time before paying for a `memchr2` call (whose set-up costs more than a short run).
fn find_markup(s: &[u8]) -> Option<usize> {
    const INLINE: usize = 64;
    let mut i = 0;
    while let Some(word) = s.get(i..i + 8) {
        if i >= INLINE {
            return memchr2(b'<', b'&', &s[i..]).map(|k| i + k);
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(word);
        let v = u64::from_le_bytes(a);
        let (lt, amp) = (v ^ 0x3C3C_3C3C_3C3C_3C3C, v ^ 0x2626_2626_2626_2626);
        let hit = (lt.wrapping_sub(0x0101_0101_0101_0101) & !lt)
            | (amp.wrapping_sub(0x0101_0101_0101_0101) & !amp);
        let hit = hit & 0x8080_8080_8080_8080;
        if hit != 0 {
            // The lowest flagged byte is a true one (false positives only sit above one).
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'<' || b == b'&')
        .map(|k| i + k)
}

/// Where the run of text that starts at `text[r]` (not whitespace) ends: at the first
/// whitespace byte that is not a single `' '` followed by a byte that is not whitespace. Eight
/// bytes at a time: a word with no byte below 0x21 other than spaces followed by bytes of 0x21
/// or more is all in the run.
fn run_end(text: &[u8], mut r: usize) -> usize {
    let load = |w: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        u64::from_le_bytes(a)
    };
    loop {
        let k = match (text.get(r..r + 8), text.get(r + 1..r + 9)) {
            (Some(w), Some(next)) => {
                let (x, x1) = (load(w), load(next));
                let sp = zero_bytes(x ^ 0x2020_2020_2020_2020);
                let bad = (low_bytes(x) & !sp) | (sp & low_bytes(x1));
                if bad == 0 {
                    r += 8;
                    continue;
                }
                r + (bad.trailing_zeros() / 8) as usize
            }
            _ => match find_low(text, r) {
                Some(k) => k,
                None => return text.len(),
            },
        };
        // A byte below 0x21 (or a space before one): look at it exactly.
        let c = text[k];
        if !is_space(c) {
            r = k + 1;
        } else if c == b' ' && text.get(k + 1).is_some_and(|&d| !is_space(d)) {
            r = k + 2;
        } else {
            return k;
        }
    }
}

/// The high bit of each byte of `x` below 0x21, exactly (no borrow between bytes).
fn low_bytes(x: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    !(((x & LOW7).wrapping_add(0x5F5F_5F5F_5F5F_5F5F)) | x) & 0x8080_8080_8080_8080
}

/// The high bit of each zero byte of `x`, exactly (no borrow between bytes).
fn zero_bytes(x: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// Where the first byte below 0x21 (all whitespace is) is in `s[from..]`, as an index into `s`;
/// a word at a time.
fn find_low(s: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(word) = s.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(word);
        let v = u64::from_le_bytes(a);
        let low = v.wrapping_sub(0x2121_2121_2121_2121) & !v & 0x8080_8080_8080_8080;
        if low != 0 {
            // The lowest flagged byte is a true one (false positives only sit above one).
            return Some(i + (low.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s.get(i..)?.iter().position(|&b| b < 0x21).map(|k| i + k)
}

fn is_space(c: u8) -> bool {
    CLASS[usize::from(c)] & SPACE != 0
}

const SPACE: u8 = 1;
/// Ends a tag name: whitespace, `>` or `/`.
const ENDS_NAME: u8 = 2;
/// Ends an attribute name: whitespace, `>`, `/` or `=`.
const ENDS_ATTR: u8 = 4;

/// Byte classes for the tag scanners.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let spaces = [b' ', b'\t', b'\r', b'\n', 0x0C];
    let mut k = 0;
    while k < spaces.len() {
        t[spaces[k] as usize] = SPACE | ENDS_NAME | ENDS_ATTR;
        k += 1;
    }
    t[b'>' as usize] = ENDS_NAME | ENDS_ATTR;
    t[b'/' as usize] = ENDS_NAME | ENDS_ATTR;
    t[b'=' as usize] = ENDS_ATTR;
    t
};

/// Tags that do not separate words when rendered ("V<b></b>iagra" reads as one word).
fn is_inline(name: &[u8]) -> bool {
    matches!(
        name,
        b"a" | b"abbr"
            | b"b"
            | b"bdi"
            | b"bdo"
            | b"big"
            | b"cite"
            | b"code"
            | b"del"
            | b"dfn"
            | b"em"
            | b"font"
            | b"i"
            | b"ins"
            | b"kbd"
            | b"mark"
            | b"o:p"
            | b"q"
            | b"s"
            | b"samp"
            | b"small"
            | b"span"
            | b"strike"
            | b"strong"
            | b"sub"
            | b"sup"
            | b"time"
            | b"tt"
            | b"u"
            | b"var"
            | b"wbr"
    )
}

/// Named entities decoded (the rest of HTML's list is rare in mail).
fn named_entity(name: &[u8]) -> Option<char> {
    Some(match name {
        b"amp" => '&',
        b"lt" => '<',
        b"gt" => '>',
        b"quot" => '"',
        b"apos" => '\'',
        b"nbsp" => '\u{A0}',
        b"shy" => '\u{AD}',
        b"zwnj" => '\u{200C}',
        b"zwj" => '\u{200D}',
        b"copy" => '©',
        b"reg" => '®',
        b"trade" => '™',
        b"euro" => '€',
        b"pound" => '£',
        b"yen" => '¥',
        b"cent" => '¢',
        b"sect" => '§',
        b"deg" => '°',
        b"middot" => '·',
        b"bull" => '•',
        b"hellip" => '…',
        b"ndash" => '–',
        b"mdash" => '—',
        b"lsquo" => '\u{2018}',
        b"rsquo" => '\u{2019}',
        b"ldquo" => '\u{201C}',
        b"rdquo" => '\u{201D}',
        b"laquo" => '«',
        b"raquo" => '»',
        b"times" => '×',
        b"eacute" => 'é',
        b"egrave" => 'è',
        b"agrave" => 'à',
        b"aacute" => 'á',
        b"ccedil" => 'ç',
        b"uuml" => 'ü',
        b"ouml" => 'ö',
        b"auml" => 'ä',
        b"szlig" => 'ß',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_text_collapses_like_naive() {
        let alphabet = [b'a', b' ', b' ', b'\t', b'\n', 0x01, 0xA0, b'z'];
        let naive = |text: &[u8], mut last_space: bool| {
            let mut out = Vec::new();
            for &b in text {
                if is_space(b) {
                    if !last_space {
                        out.push(b' ');
                    }
                    last_space = true;
                } else {
                    out.push(b);
                    last_space = false;
                }
            }
            out
        };
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..60 {
            for _ in 0..40 {
                let text: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        alphabet[(seed % alphabet.len() as u64) as usize]
                    })
                    .collect();
                for start_space in [false, true] {
                    let mut h = HtmlText::new();
                    h.last_space = start_space;
                    let mut out = Vec::new();
                    h.push_text(&mut out, &text);
                    assert_eq!(out, naive(&text, start_space), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn find_amp_agrees_with_memmem() {
        for s in [
            &b""[..],
            b"&",
            b"&amp",
            b"&amp;",
            b"a&b&amp;c",
            b"&&amp;&amp;",
            b"x&am;p;&amp",
        ] {
            assert_eq!(find_amp(s), memchr::memmem::find(s, b"&amp;"), "{s:?}");
        }
    }

    fn reduce_chunks(chunks: &[&[u8]]) -> (String, Vec<String>) {
        reduce(chunks, false)
    }

    /// The text and the URLs (links as `link: text -> href`) of `chunks` fed in turn; with
    /// `take_each`, the output is taken (and cleared) after each chunk, as the walker does.
    fn reduce(chunks: &[&[u8]], take_each: bool) -> (String, Vec<String>) {
        let mut h = HtmlText::new();
        let mut out = Vec::new();
        let mut all = Vec::new();
        let mut urls = Vec::new();
        let mut on_url = |e: ScanEvent<'_>| match e {
            ScanEvent::Url(u) => urls.push(String::from_utf8_lossy(u).into_owned()),
            ScanEvent::Link { href, text } => urls.push(
                String::from_utf8_lossy(&super::super::naive::link_entry(href, text)).into_owned(),
            ),
            _ => {}
        };
        for c in chunks {
            h.feed(c, &mut out, &mut on_url);
            if take_each {
                all.append(&mut out);
            }
        }
        h.finish(&mut out, &mut on_url);
        all.append(&mut out);
        (String::from_utf8_lossy(&all).into_owned(), urls)
    }

    /// Whitespace collapsing against the byte-at-a-time rule, for runs of every shape.
    #[test]
    fn push_text_matches_byte_rule() {
        fn by_byte(last_space: bool, text: &[u8]) -> (Vec<u8>, bool) {
            let mut out = Vec::new();
            let mut last = last_space;
            for &b in text {
                let space = is_space(b);
                if !(space && last) {
                    out.push(if space { b' ' } else { b });
                }
                last = space;
            }
            (out, last)
        }
        let rows: &[(&str, &[u8])] = &[
            ("empty", b""),
            ("word", b"word"),
            ("words", b"one two three four five six seven"),
            ("leading_space", b" lead"),
            ("trailing_space", b"trail "),
            ("double_space", b"a  b"),
            ("tab_between", b"a\tb"),
            ("crlf_indent", b"\r\n\t\t  x\r\n"),
            ("only_space", b"     \r\n     "),
            ("control_bytes", b"a\x01b \x00 c\x1f"),
            ("form_feed", b"a\x0cb"),
            ("space_then_control", b"a \x01b"),
            (
                "long",
                b"Lorem ipsum dolor sit amet,  consectetur\tadipiscing elit sed do eiusmod x",
            ),
            ("eight_bit", b"caf\xc3\xa9 na\xc3\xafve  \xe2\x80\x94 end"),
        ];
        for (name, text) in rows {
            for last_space in [false, true] {
                let mut h = HtmlText::new();
                h.last_space = last_space;
                let mut out = b"x".to_vec();
                h.push_text(&mut out, text);
                let (want, want_last) = by_byte(last_space, text);
                assert_eq!(&out[1..], &want[..], "{name} after space {last_space}");
                assert_eq!(h.last_space, want_last, "{name} after space {last_space}");
            }
        }
    }

    const ROWS: &[(&str, &str, &str, &[&str])] = &[
        ("plain", "hello world", "hello world", &[]),
        (
            "tags_dropped",
            "<p>Hello <b>big</b> world</p>",
            "Hello big world ",
            &[],
        ),
        ("inline_tag_joins", "V<b></b>iagra", "Viagra", &[]),
        ("block_tag_separates", "one<br>two", "one two", &[]),
        ("whitespace_collapsed", "a \r\n\t  b", "a b", &[]),
        (
            "entities",
            "a &amp; b &lt;c&gt; &quot;d&quot;",
            "a & b <c> \"d\"",
            &[],
        ),
        ("numeric_entities", "&#65;&#x42;&#X43;", "ABC", &[]),
        ("nbsp_is_space", "a&nbsp;&nbsp;b", "a b", &[]),
        ("soft_hyphen_dropped", "Vi&shy;agra", "Viagra", &[]),
        ("zero_width_dropped", "Vi&#8203;agra", "Viagra", &[]),
        ("unknown_entity_literal", "&bogus; &x", "&bogus; &x", &[]),
        (
            "comment_dropped",
            "a<!-- hidden -- > still -->b",
            "a b",
            &[],
        ),
        (
            "script_dropped",
            "a<script>if (x<y) {}</script>b",
            "a b",
            &[],
        ),
        ("style_dropped", "a<STYLE>p{}</Style >b", "a b", &[]),
        ("lt_not_tag", "a < b", "a < b", &[]),
        (
            "href_reported",
            "<a href=\"http://x.example/?a=1&amp;b=2\">click</a>",
            "click",
            &["http://x.example/?a=1&b=2"],
        ),
        (
            "href_unquoted",
            "<a class=x href=https://y.example/p>y</a>",
            "y",
            &["https://y.example/p"],
        ),
        (
            "gt_in_quoted_value",
            "<a title=\"a>b\" href='http://q.example'>z</a>",
            "z",
            &["http://q.example"],
        ),
        ("doctype", "<!DOCTYPE html><html>t</html>", "t ", &[]),
        (
            "five_hrefs_in_one_tag",
            "<a href=1 HREF='2' href = \"3\" href=4 href=5>x</a>",
            "x",
            &["1", "2", "3", "4", "5"],
        ),
        (
            "attribute_oddities",
            "<p/><a/href=h1 x= href=h2><td a b=c/ d='>'>t</td><a href>u</a><a href=>v</a>",
            "t uv",
            &["h1"],
        ),
        ("closing_tag_spaces", "a</ p >b</>c", "a b c", &[]),
        (
            "link_text_shows_an_address",
            "<a href=\"http://evil.example/l?a&amp;b\">www.bank.example</a>",
            "www.bank.example",
            &[
                "http://evil.example/l?a&b",
                "link: www.bank.example -> http://evil.example/l?a&b",
            ],
        ),
        (
            "link_text_across_inline_tags_trimmed",
            "<a href=h> <b>bank</b>.example\n</a>.",
            "bank.example .",
            &["h", "link: bank.example -> h"],
        ),
        (
            "link_text_of_words_not_reported",
            "<a href=h>Sign in at bank.example</a>",
            "Sign in at bank.example",
            &["h"],
        ),
        (
            "link_text_with_at",
            "<a href=h>me@bank.example</a>",
            "me@bank.example",
            &["h"],
        ),
        (
            "link_never_closed",
            "<a href=h>bank.example",
            "bank.example",
            &["h"],
        ),
        (
            "link_ended_by_the_next",
            "<a href=h1>a.example<a href=h2>b</a>",
            "a.exampleb",
            &["h1", "h2", "link: a.example -> h1"],
        ),
        (
            "anchor_without_href",
            "<a name=x>a.example</a>",
            "a.example",
            &[],
        ),
        (
            "href_of_another_tag",
            "<link href=h3><a>a.example</a>",
            "a.example",
            &["h3"],
        ),
    ];

    /// Tags with every attribute shape (valueless names, `/`, spaces around `=`, quoted and
    /// unquoted values holding `>`, `=` and quotes, `href` in any case or cut into longer
    /// names), read whole by the tag fast path and byte by byte by the byte machine.
    #[test]
    fn whole_tags_match_byte_machine() {
        let pieces: &[&[u8]] = &[
            b"<a",
            b"<td",
            b"</p",
            b"<IMG",
            b" ",
            b"  ",
            b"\t",
            b"\r\n",
            b"/",
            b"=",
            b" = ",
            b">",
            b"href",
            b"HREF",
            b"xhref",
            b"href2",
            b"style",
            b"a",
            b"\"",
            b"'",
            b"\"u>v\"",
            b"'x=y'",
            b"http://h.example/?a=1&amp;b",
            b"text ",
            b"&amp;",
            b"<br>",
            b"</a>",
            b"www.bank.example",
            b".example",
            b"<!-- c -->",
            b"<b>",
            b"x",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for round in 0..600 {
            let mut input = Vec::new();
            for _ in 0..(1 + round % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                input.extend_from_slice(pieces[(x % pieces.len() as u64) as usize]);
            }
            let whole = reduce_chunks(&[&input]);
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(
                reduce_chunks(&bytes),
                whole,
                "round {round} byte by byte: {:?}",
                String::from_utf8_lossy(&input)
            );
            let cut = (x >> 32) as usize % (input.len() + 1);
            assert_eq!(
                reduce_chunks(&[&input[..cut], &input[cut..]]),
                whole,
                "round {round} cut {cut}"
            );
        }
    }

    #[test]
    fn rows_at_every_split() {
        for (name, input, want_text, want_urls) in ROWS {
            let input = input.as_bytes();
            let (text, urls) = reduce_chunks(&[input]);
            assert_eq!(text, *want_text, "row {name}");
            assert_eq!(urls, *want_urls, "row {name} urls");
            for cut in 0..=input.len() {
                let got = reduce_chunks(&[&input[..cut], &input[cut..]]);
                assert_eq!(got, (text.clone(), urls.clone()), "row {name} cut {cut}");
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(
                reduce_chunks(&bytes),
                (text.clone(), urls.clone()),
                "row {name} byte by byte"
            );
            assert_eq!(
                reduce(&bytes, true),
                (text, urls),
                "row {name} byte by byte, the output taken after each"
            );
        }
    }
}
