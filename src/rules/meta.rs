//! Meta rules: boolean expressions over other rules' hits.
//!
//! Grammar (`!` binds tightest, then `&&`, then `||`; the words `not`, `and`, `or` also work):
//!
//! ```text
//! expr := and ( ("||" | "or") and )*
//! and  := not ( ("&&" | "and") not )*
//! not  := ("!" | "not") not | "(" expr ")" | RULE_NAME
//! ```

use crate::rules::file::MAX_EXPR_DEPTH;
use crate::rules::verdict::HitSet;
use crate::rules::RuleId;

/// A parsed expression with rule names resolved.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Rule(RuleId),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    pub fn eval(&self, hits: &HitSet) -> bool {
        match self {
            Expr::Rule(id) => hits.get(*id),
            Expr::Not(e) => !e.eval(hits),
            Expr::And(es) => es.iter().all(|e| e.eval(hits)),
            Expr::Or(es) => es.iter().any(|e| e.eval(hits)),
        }
    }

    /// The rules this expression reads.
    pub fn rules(&self, out: &mut Vec<RuleId>) {
        match self {
            Expr::Rule(id) => out.push(*id),
            Expr::Not(e) => e.rules(out),
            Expr::And(es) | Expr::Or(es) => es.iter().for_each(|e| e.rules(out)),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok<'a> {
    Name(&'a str),
    Not,
    And,
    Or,
    Open,
    Close,
}

fn lex(src: &str) -> Result<Vec<Tok<'_>>, String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                out.push(Tok::Open);
                i += 1
            }
            b')' => {
                out.push(Tok::Close);
                i += 1
            }
            b'!' => {
                out.push(Tok::Not);
                i += 1
            }
            b'&' if b.get(i + 1) == Some(&b'&') => {
                out.push(Tok::And);
                i += 2
            }
            b'|' if b.get(i + 1) == Some(&b'|') => {
                out.push(Tok::Or);
                i += 2
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &src[start..i];
                out.push(match word {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    _ => Tok::Name(word),
                });
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(format!("unexpected {ch:?} at byte {i}"));
            }
        }
    }
    Ok(out)
}

/// Parses `src`, resolving names with `resolve`.
pub(crate) fn parse(src: &str, resolve: &dyn Fn(&str) -> Option<RuleId>) -> Result<Expr, String> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks: &toks,
        at: 0,
        resolve,
    };
    let e = p.or(0)?;
    if p.at != toks.len() {
        return Err(format!("unexpected {:?} after the expression", toks[p.at]));
    }
    Ok(e)
}

struct Parser<'t, 'a> {
    toks: &'t [Tok<'a>],
    at: usize,
    resolve: &'t dyn Fn(&str) -> Option<RuleId>,
}

impl Parser<'_, '_> {
    fn or(&mut self, depth: usize) -> Result<Expr, String> {
        let mut terms = vec![self.and(depth)?];
        while self.toks.get(self.at) == Some(&Tok::Or) {
            self.at += 1;
            terms.push(self.and(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, String> {
        let mut terms = vec![self.not(depth)?];
        while self.toks.get(self.at) == Some(&Tok::And) {
            self.at += 1;
            terms.push(self.not(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn not(&mut self, depth: usize) -> Result<Expr, String> {
        if depth > MAX_EXPR_DEPTH {
            return Err(format!("nested deeper than {MAX_EXPR_DEPTH}"));
        }
        let tok = self.toks.get(self.at).cloned();
        self.at += 1;
        match tok {
            Some(Tok::Not) => Ok(Expr::Not(Box::new(self.not(depth + 1)?))),
            Some(Tok::Open) => {
                let e = self.or(depth + 1)?;
                if self.toks.get(self.at) != Some(&Tok::Close) {
                    return Err("missing )".into());
                }
                self.at += 1;
                Ok(e)
            }
            Some(Tok::Name(n)) => (self.resolve)(n)
                .map(Expr::Rule)
                .ok_or_else(|| format!("unknown rule {n:?}")),
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("unexpected end of expression".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(n: &str) -> Option<RuleId> {
        match n {
            "A" => Some(RuleId(0)),
            "B" => Some(RuleId(1)),
            "C" => Some(RuleId(2)),
            _ => None,
        }
    }

    /// (row, expression, hits A B C, expected)
    const EVAL: &[(&str, &str, [bool; 3], bool)] = &[
        ("single", "A", [true, false, false], true),
        ("not", "!A", [true, false, false], false),
        (
            "and_binds_tighter",
            "A || B && C",
            [true, false, false],
            true,
        ),
        ("parens", "(A || B) && C", [true, false, false], false),
        ("words", "A and not B", [true, false, false], true),
        ("double_not", "!!C", [false, false, true], true),
        ("or_chain", "A or B or C", [false, false, true], true),
    ];

    #[test]
    fn evaluates() {
        for (row, src, bits, want) in EVAL {
            let e = parse(src, &resolve).expect(row);
            let mut h = HitSet::new(3);
            for (i, b) in bits.iter().enumerate() {
                if *b {
                    h.set(RuleId(i as u32));
                }
            }
            assert_eq!(e.eval(&h), *want, "{row}");
        }
    }

    #[test]
    fn errors() {
        let rows: &[(&str, &str)] = &[
            ("unknown", "A && D"),
            ("dangling", "A &&"),
            ("unclosed", "(A || B"),
            ("extra", "A B"),
            ("bad_char", "A + B"),
            ("empty", ""),
        ];
        for (row, src) in rows {
            assert!(parse(src, &resolve).is_err(), "{row}");
        }
        let deep = format!("{}A{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep, &resolve).is_err(), "too deep");
        let nots = format!("{}A", "!".repeat(100));
        assert!(parse(&nots, &resolve).is_err(), "too many nots");
    }
}
