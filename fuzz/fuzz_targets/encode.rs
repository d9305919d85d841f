//! The DATA encoder on arbitrary content pieces: the wire form decodes, with a simple
//! reference unstuffer, to the content with bare CR and LF as CRLF; it holds no bare CR or LF
//! and no `CRLF . CRLF` before its end; and it does not depend on how the content was cut.
//! The BDAT encoder carries the same pieces unchanged.
//!
//! Needs only `conbool`, `libfuzzer-sys` and `arbitrary`: `Bytes` comes in through `.into()`.
#![no_main]

use conbool::smtp::encode::{BdatEncoder, DataEncoder};
use conbool::smtp::outbound::Outbound;
use libfuzzer_sys::fuzz_target;

fn data(pieces: &[Vec<u8>]) -> Vec<u8> {
    let mut enc = DataEncoder::new();
    let mut out = Outbound::new();
    for p in pieces {
        enc.encode(p.clone().into(), &mut out);
    }
    enc.finish(&mut out);
    out.to_vec()
}

/// The content a DATA receiver should deliver: each CRLF, bare CR or bare LF as CRLF, and a
/// final CRLF when the content does not end with one.
fn canonical(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < content.len() {
        match (content[i], content.get(i + 1)) {
            (b'\r', Some(b'\n')) => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            (b'\r' | b'\n', _) => out.extend_from_slice(b"\r\n"),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A receiving server, line by line: a line `.` ends the data, a leading dot is dropped.
/// `None` unless the terminator is the very end of the wire bytes.
fn unstuff(wire: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = wire;
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = &rest[..end];
        rest = &rest[end + 2..];
        if line == b"." {
            return rest.is_empty().then_some(out);
        }
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
}

fuzz_target!(|pieces: Vec<Vec<u8>>| {
    let content: Vec<u8> = pieces.concat();
    let wire = data(&pieces);
    assert_eq!(wire, data(&[content.clone()]), "depends on the cut");
    for (i, &b) in wire.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(wire.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
        if b == b'\n' {
            assert!(i > 0 && wire[i - 1] == b'\r', "bare LF at {i}");
        }
    }
    let ends = wire.windows(5).filter(|w| w == b"\r\n.\r\n").count();
    assert!(ends <= 1, "{ends} terminators");
    assert_eq!(unstuff(&wire), Some(canonical(&content)));

    let mut enc = BdatEncoder::with_chunk_bytes(64);
    let mut carried = Vec::new();
    for p in &pieces {
        if let Some(chunk) = enc.push(p.clone().into()) {
            assert!(!chunk.last);
            carried.extend(chunk.parts[1..].iter().flat_map(|b| b.iter().copied()));
        }
    }
    let last = enc.finish();
    assert!(last.last);
    carried.extend(last.parts[1..].iter().flat_map(|b| b.iter().copied()));
    assert_eq!(carried, content);
});
