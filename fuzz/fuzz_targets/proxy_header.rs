//! The PROXY protocol header parser: arbitrary bytes cut at an arbitrary point (and byte by
//! byte) never panic, give the same header or error as the whole input, never take more than
//! the bounds allow, and leave the bytes after the header to the SMTP session.
#![no_main]

use conbool::smtp::proxy::{
    Progress, ProxyError, ProxyHeader, ProxyParser, V1_MAX_LEN, V2_MAX_LEN,
};
use libfuzzer_sys::fuzz_target;

/// The header (or error) and how many bytes of the whole input it took.
fn parse(parts: &[&[u8]]) -> Option<Result<(ProxyHeader, usize), ProxyError>> {
    let mut p = ProxyParser::new();
    let mut before = 0;
    for part in parts {
        match p.feed(part) {
            Ok(Progress::Incomplete) => {
                assert!(p.held() <= V2_MAX_LEN);
                before += part.len();
            }
            Ok(Progress::Done { header, used }) => {
                assert!(used <= part.len());
                let taken = before + used;
                let bound = if header.version == 1 {
                    V1_MAX_LEN
                } else {
                    V2_MAX_LEN
                };
                assert!(taken <= bound, "{taken} > {bound}");
                return Some(Ok((header, taken)));
            }
            Err(e) => return Some(Err(e)),
        }
    }
    None
}

fuzz_target!(|input: (u16, &[u8])| {
    let (cut, bytes) = input;
    let at = usize::from(cut) % (bytes.len() + 1);
    let (a, b) = bytes.split_at(at);
    let whole = parse(&[bytes]);
    assert_eq!(whole, parse(&[a, b]));
    assert_eq!(whole, parse(&bytes.chunks(1).collect::<Vec<_>>()));
});
