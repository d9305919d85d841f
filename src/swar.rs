//! Eight bytes at a time in a `u64` ("SIMD within a register"): the bit tricks that the byte
//! scanners of the cores share. Each works on a little-endian load of eight bytes.
#![forbid(unsafe_code)]

/// `0x01` in every byte.
pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte.
pub(crate) const HIGH: u64 = 0x80 * ONES;

/// The eight bytes of `word` as a little-endian number (0 unless `word` is eight bytes long).
#[inline(always)]
pub(crate) fn load(word: &[u8]) -> u64 {
    word.first_chunk::<8>()
        .filter(|_| word.len() == 8)
        .map_or(0, |a| u64::from_le_bytes(*a))
}

/// The high bit of each byte of `x` that may equal `b`: the lowest flagged byte is a true one
/// (false positives only sit above one); zero when there is none.
#[inline(always)]
pub(crate) fn eq_bytes(x: u64, b: u8) -> u64 {
    let v = x ^ (u64::from(b) * ONES);
    v.wrapping_sub(ONES) & !v & HIGH
}

/// Per byte of `v`, the high bit set when the byte is ASCII and within `lo..=hi`.
#[inline(always)]
pub(crate) fn in_range(v: u64, lo: u8, hi: u8) -> u64 {
    let x = v & !HIGH;
    let ge_lo = x + ONES * u64::from(0x80 - lo);
    let gt_hi = x + ONES * u64::from(0x7f - hi);
    ge_lo & !gt_hi & !v & HIGH
}

/// Eight bytes lower-cased (ASCII), as [`u8::to_ascii_lowercase`] does each.
#[inline(always)]
pub(crate) fn lower(v: u64) -> u64 {
    v | (in_range(v, b'A', b'Z') >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_trick_agrees_with_the_bytes() {
        let all: Vec<u8> = (0..=255u8).collect();
        let words: Vec<&[u8]> = all
            .chunks(8)
            .chain([&b"Hello, W"[..], b"@[`{Z\r\n\xC1", b"==a=b=c="])
            .collect();
        for w in words {
            let v = load(w);
            assert_eq!(v.to_le_bytes(), w, "load {w:?}");
            assert_eq!(
                lower(v).to_le_bytes(),
                w.to_ascii_lowercase()[..],
                "lower {w:?}"
            );
            for (lo, hi) in [(b'A', b'Z'), (b'0', b'9'), (b'$', b'$'), (0, 0x7f)] {
                let want = w
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| (lo..=hi).contains(&c))
                    .fold(0u64, |m, (i, _)| m | 0x80 << (8 * i));
                assert_eq!(in_range(v, lo, hi), want, "in_range {lo}..={hi} {w:?}");
            }
            for b in [b'=', b'\n', b'\r', 0, 0xFF, b'a'] {
                let m = eq_bytes(v, b);
                let first = w.iter().position(|&c| c == b);
                assert_eq!(m != 0, first.is_some(), "eq_bytes {b} {w:?}");
                if let Some(k) = first {
                    assert_eq!(
                        m.trailing_zeros() / 8,
                        k as u32,
                        "eq_bytes {b} {w:?}: lowest"
                    );
                }
            }
        }
        assert_eq!(load(b"short"), 0);
        assert_eq!(load(b"nine bytes"), 0);
    }
}
