//! The base64, quoted-printable and RFC 2047 decoders on arbitrary input: no panics, output
//! sizes within bounds, and the streaming decoders give the same bytes however the input is
//! cut.
#![no_main]

use conbool::message::{decode_rfc2047, Base64Decoder, QpDecoder};
use libfuzzer_sys::fuzz_target;

fn b64(parts: &[&[u8]]) -> Vec<u8> {
    let mut d = Base64Decoder::new();
    let mut out = Vec::new();
    for p in parts {
        d.feed(p, &mut out);
    }
    d.finish(&mut out);
    out
}

fn qp(parts: &[&[u8]]) -> Vec<u8> {
    let mut d = QpDecoder::new();
    let mut out = Vec::new();
    for p in parts {
        d.feed(p, &mut out);
    }
    d.finish(&mut out);
    out
}

fuzz_target!(|input: (u16, u16, &[u8])| {
    let (a, b, data) = input;
    let n = data.len();
    let (mut x, mut y) = (usize::from(a) % (n + 1), usize::from(b) % (n + 1));
    if x > y {
        std::mem::swap(&mut x, &mut y);
    }
    let cuts: [&[u8]; 3] = [&data[..x], &data[x..y], &data[y..]];

    let whole = b64(&[data]);
    assert!(whole.len() <= n / 4 * 3 + 3);
    assert_eq!(b64(&cuts), whole, "base64 cut at {x} and {y}");
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(b64(&bytes), whole, "base64 byte by byte");

    let whole = qp(&[data]);
    // Decoding only shrinks, apart from a dangling "=", "=X" or "= \r" written back as it was.
    assert!(whole.len() <= n);
    assert_eq!(qp(&cuts), whole, "QP cut at {x} and {y}");
    assert_eq!(qp(&bytes), whole, "QP byte by byte");

    let mut out = Vec::new();
    decode_rfc2047(data, &mut out);
    // Latin-1 and windows-1252 at most triple a byte (to a 3-byte UTF-8 sequence).
    assert!(out.len() <= 3 * n);
});
