//! The reply parser on arbitrary bytes: never panics, gives the same replies (and the same
//! error) whether the input comes whole, cut at one point or byte by byte, and every reply it
//! returns writes back to bytes that parse to the same reply.
#![no_main]

use conbool::smtp::reply::Reply;
use conbool::smtp::response::{ReplyError, ReplyParser};
use libfuzzer_sys::fuzz_target;

/// Replies parsed from `pieces` fed in order, and how it ended.
fn parse(pieces: &[&[u8]]) -> (Vec<Reply>, Result<(), ReplyError>) {
    let mut p = ReplyParser::new();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match p.feed(&buf) {
                Err(e) => return (out, Err(e)),
                Ok(parsed) => {
                    buf.drain(..parsed.used);
                    match parsed.reply {
                        Some(r) => out.push(r),
                        None => break,
                    }
                }
            }
        }
    }
    (out, Ok(()))
}

fuzz_target!(|input: (u16, &[u8])| {
    let (cut, data) = input;
    let at = usize::from(cut) % (data.len() + 1);
    let whole = parse(&[data]);
    assert_eq!(whole, parse(&[&data[..at], &data[at..]]), "split at {at}");
    if data.len() <= 4096 {
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(whole, parse(&bytes), "byte by byte");
    }
    for reply in &whole.0 {
        assert!((200..600).contains(&reply.code()));
        if let Some(e) = reply.enhanced() {
            assert_eq!(u16::from(e.class), reply.code() / 100);
        }
        // `write_to` blanks CR, and lossy UTF-8 may grow a line: round trip the rest.
        let plain = reply
            .lines()
            .iter()
            .all(|l| !l.contains('\r') && !l.contains('\u{fffd}'));
        if plain {
            let (again, end) = parse(&[&reply.to_bytes()]);
            assert_eq!(end, Ok(()));
            assert_eq!(again, vec![reply.clone()], "round trip");
        }
    }
});
