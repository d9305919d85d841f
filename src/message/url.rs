//! `http://` and `https://` URLs in decoded text, found as the text streams past.
//!
//! Text is cut into tokens at whitespace, `<`, `>`, `"`, `` ` `` and control bytes. Within the
//! first [`MAX_URL_LEN`] bytes of a token, the first `http://` or `https://` (any case, not
//! glued to a letter or digit before it) starts a URL that runs to the end of that view, minus
//! trailing punctuation. Only the partial token at the end of a chunk is carried, capped.

use std::sync::LazyLock;

use memchr::memmem;

/// Longest token (and so URL) looked at; the rest of a longer token is passed over.
pub(crate) const MAX_URL_LEN: usize = 2048;

/// The searcher for `"://"`, built once (building one per part costs more than a short part).
static SCHEME_SEP: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"://"));

/// Streaming URL finder.
#[derive(Clone, Debug)]
pub(crate) struct UrlFinder {
    /// The first bytes (up to [`MAX_URL_LEN`]) of a token not yet ended.
    carry: Vec<u8>,
    in_token: bool,
}

impl Default for UrlFinder {
    fn default() -> UrlFinder {
        UrlFinder::new()
    }
}

impl UrlFinder {
    pub(crate) fn new() -> UrlFinder {
        UrlFinder {
            carry: Vec::new(),
            in_token: false,
        }
    }

    /// Looks at the next piece of text; `url` is called for each URL completed.
    pub(crate) fn feed(&mut self, text: &[u8], url: &mut dyn FnMut(&[u8])) {
        let mut i = 0;
        if self.in_token {
            match text.iter().position(|&b| is_delim(b)) {
                Some(e) => {
                    self.extend_carry(&text[..e]);
                    let carry = std::mem::take(&mut self.carry);
                    find_in_token(&carry, url);
                    self.carry = carry;
                    self.carry.clear();
                    self.in_token = false;
                    i = e;
                }
                None => {
                    self.extend_carry(text);
                    return;
                }
            }
        }
        while i < text.len() {
            let Some(k) = SCHEME_SEP.find(&text[i..]).map(|k| i + k) else {
                // The last token may go on in the next piece.
                if let Some(&last) = text.last() {
                    if !is_delim(last) {
                        let start = text[i..]
                            .iter()
                            .rposition(|&b| is_delim(b))
                            .map_or(i, |d| i + d + 1);
                        self.carry.clear();
                        self.extend_carry(&text[start..]);
                        self.in_token = true;
                    }
                }
                return;
            };
            let start = text[i..k]
                .iter()
                .rposition(|&b| is_delim(b))
                .map_or(i, |d| i + d + 1);
            match text[k..].iter().position(|&b| is_delim(b)) {
                Some(e) => {
                    let end = k + e;
                    let view_end = end.min(start + MAX_URL_LEN);
                    find_in_token(&text[start..view_end], url);
                    i = end;
                }
                None => {
                    self.carry.clear();
                    self.extend_carry(&text[start..]);
                    self.in_token = true;
                    return;
                }
            }
        }
    }

    /// The text ended (end of a part): a carried token is looked at.
    pub(crate) fn finish(&mut self, url: &mut dyn FnMut(&[u8])) {
        if self.in_token {
            find_in_token(&self.carry, url);
        }
        self.carry.clear();
        self.in_token = false;
    }

    fn extend_carry(&mut self, b: &[u8]) {
        let room = MAX_URL_LEN.saturating_sub(self.carry.len());
        self.carry.extend_from_slice(&b[..b.len().min(room)]);
    }
}

/// Reports the URL in one token view, if any.
fn find_in_token(tok: &[u8], url: &mut dyn FnMut(&[u8])) {
    let mut from = 0;
    while let Some(k) = SCHEME_SEP.find(&tok[from..]).map(|k| from + k) {
        let scheme_start = if k >= 5 && tok[k - 5..k].eq_ignore_ascii_case(b"https") {
            Some(k - 5)
        } else if k >= 4 && tok[k - 4..k].eq_ignore_ascii_case(b"http") {
            Some(k - 4)
        } else {
            None
        };
        if let Some(s) = scheme_start {
            let glued = s > 0 && tok[s - 1].is_ascii_alphanumeric();
            if !glued {
                let mut end = tok.len();
                while end > k + 3 && TRAILING.contains(&tok[end - 1]) {
                    end -= 1;
                }
                if end > k + 3 {
                    url(&tok[s..end]);
                }
                return;
            }
        }
        from = k + 3;
    }
}

/// Punctuation that ends a sentence rather than a URL.
const TRAILING: &[u8] = b".,;:!?)]}'*";

/// Bytes that end a token.
fn is_delim(b: u8) -> bool {
    DELIM[usize::from(b)]
}

/// [`is_delim`] by byte: whitespace and controls up to SP, `<`, `>`, `"`, `` ` `` and DEL.
const DELIM: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b <= b' ' {
        t[b as usize] = true;
        b += 1;
    }
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'"' as usize] = true;
    t[b'`' as usize] = true;
    t[0x7F] = true;
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn find(chunks: &[&[u8]]) -> Vec<String> {
        let mut f = UrlFinder::new();
        let mut urls = Vec::new();
        let mut on = |u: &[u8]| urls.push(String::from_utf8_lossy(u).into_owned());
        for c in chunks {
            f.feed(c, &mut on);
        }
        f.finish(&mut on);
        urls
    }

    const ROWS: &[(&str, &str, &[&str])] = &[
        ("none", "no links here: just text", &[]),
        ("one", "see http://a.example/x now", &["http://a.example/x"]),
        ("https_upper", "HTTPS://B.example", &["HTTPS://B.example"]),
        (
            "trailing_dot",
            "go to http://c.example.",
            &["http://c.example"],
        ),
        ("in_parens", "(http://d.example/p)", &["http://d.example/p"]),
        (
            "angle_brackets",
            "<http://e.example>",
            &["http://e.example"],
        ),
        (
            "two",
            "http://f.example and https://g.example",
            &["http://f.example", "https://g.example"],
        ),
        ("ftp_ignored", "ftp://h.example", &[]),
        ("glued_scheme_ignored", "xhttp://i.example", &[]),
        (
            "redirect_one_url",
            "http://j.example/r?u=http://k.example",
            &["http://j.example/r?u=http://k.example"],
        ),
        (
            "ftp_then_http",
            "ftp://l/http://m.example",
            &["http://m.example"],
        ),
        ("scheme_only", "http:// nothing", &[]),
        (
            "line_end",
            "http://n.example\r\nnext",
            &["http://n.example"],
        ),
    ];

    #[test]
    fn rows_at_every_split() {
        for (name, input, want) in ROWS {
            let input = input.as_bytes();
            assert_eq!(find(&[input]), *want, "row {name}");
            for cut in 0..=input.len() {
                assert_eq!(
                    find(&[&input[..cut], &input[cut..]]),
                    *want,
                    "row {name} cut {cut}"
                );
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(find(&bytes), *want, "row {name} byte by byte");
        }
    }

    #[test]
    fn long_token_is_capped_the_same_way_whole_and_split() {
        let mut text = b"x http://o.example/".to_vec();
        text.extend(std::iter::repeat(b'a').take(MAX_URL_LEN * 2));
        text.extend_from_slice(b" tail http://p.example");
        let whole = find(&[&text]);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].len(), MAX_URL_LEN);
        for cut in [1, 5, 100, MAX_URL_LEN, MAX_URL_LEN + 3, text.len() - 2] {
            assert_eq!(find(&[&text[..cut], &text[cut..]]), whole, "cut {cut}");
        }
        // A "://" only beyond the first MAX_URL_LEN bytes of a token is not looked at.
        let mut far = vec![b'z'; MAX_URL_LEN + 10];
        far.extend_from_slice(b"http://q.example");
        assert!(find(&[&far]).is_empty());
        assert!(find(&[&far[..MAX_URL_LEN + 12], &far[MAX_URL_LEN + 12..]]).is_empty());
    }
}
