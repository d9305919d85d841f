//! The DATA decoder (and the BDAT line-end policy) must give the same content, the same end
//! and the same verdict whether the input comes whole or cut at an arbitrary point.
#![no_main]

use conbool::config::BareLf;
use conbool::smtp::bdat::LineEnds;
use conbool::smtp::data::{DataDecoder, Piece};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Decoded {
    content: Vec<u8>,
    consumed: usize,
    done: bool,
    bare: bool,
}

fn apply(part: &[u8], pieces: Vec<Piece>, out: &mut Decoded) {
    for piece in pieces {
        match piece {
            Piece::Input(r) => out.content.extend_from_slice(&part[r]),
            Piece::Static(s) => out.content.extend_from_slice(s),
            Piece::BareLineEnd => out.bare = true,
        }
    }
}

fn data(policy: BareLf, parts: &[&[u8]]) -> Decoded {
    let mut dec = DataDecoder::new(policy);
    let mut out = Decoded {
        content: Vec::new(),
        consumed: 0,
        done: false,
        bare: false,
    };
    for part in parts {
        let mut pieces = Vec::new();
        let feed = dec.feed(part, &mut pieces);
        assert!(feed.consumed <= part.len());
        apply(part, pieces, &mut out);
        out.consumed += feed.consumed;
        if feed.done {
            out.done = true;
            break;
        }
        assert_eq!(feed.consumed, part.len());
    }
    out
}

fn bdat(policy: BareLf, parts: &[&[u8]]) -> Decoded {
    let mut ends = LineEnds::new(policy);
    let mut out = Decoded {
        content: Vec::new(),
        consumed: 0,
        done: true,
        bare: false,
    };
    for part in parts {
        let mut pieces = Vec::new();
        ends.feed(part, &mut pieces);
        apply(part, pieces, &mut out);
        out.consumed += part.len();
    }
    let mut pieces = Vec::new();
    ends.finish(&mut pieces);
    apply(b"", pieces, &mut out);
    out
}

fuzz_target!(|input: (u16, u8, &[u8])| {
    let (cut, policy, bytes) = input;
    let policy = match policy % 3 {
        0 => BareLf::Normalize,
        1 => BareLf::Reject,
        _ => BareLf::Accept,
    };
    let at = usize::from(cut) % (bytes.len() + 1);
    let (a, b) = bytes.split_at(at);
    let whole = data(policy, &[bytes]);
    assert_eq!(whole, data(policy, &[a, b]));
    if policy == BareLf::Normalize && whole.done {
        let c = &whole.content;
        for (i, &byte) in c.iter().enumerate() {
            match byte {
                b'\r' => assert_eq!(c.get(i + 1), Some(&b'\n')),
                b'\n' => assert!(i > 0 && c[i - 1] == b'\r'),
                _ => {}
            }
        }
    }
    assert_eq!(bdat(policy, &[bytes]), bdat(policy, &[a, b]));
});
