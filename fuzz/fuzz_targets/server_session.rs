//! An arbitrary byte stream, cut into arbitrary reads, into a `Server` whose owner answers
//! every question positively (250, 354 for DATA). It must never panic, never livelock, and
//! what it queues (replies, events) must stay bounded by what it consumed.
#![no_main]

use std::time::{Duration, Instant};

use conbool::config::BareLf;
use conbool::smtp::reply::Reply;
use conbool::smtp::server::{BytesMut, Event, Server, ServerParams, MAX_REPLY_BACKLOG};
use libfuzzer_sys::fuzz_target;

/// A reply adds at most this much beyond the backlog bound (EHLO is the longest).
const LONGEST_REPLY: usize = 1024;

fuzz_target!(|input: (u8, Vec<u16>, &[u8])| {
    let (flags, cuts, stream) = input;
    let params = ServerParams {
        hostname: "mx.fuzz".into(),
        max_message_size: if flags & 1 == 0 { 4096 } else { 64 },
        max_recipients: 4,
        max_errors: if flags & 2 == 0 { 50 } else { 3 },
        bare_lf: match (flags >> 2) % 3 {
            0 => BareLf::Normalize,
            1 => BareLf::Reject,
            _ => BareLf::Accept,
        },
        command_timeout: Duration::from_secs(300),
        data_timeout: Duration::from_secs(180),
        starttls: flags & 16 == 0,
        tls_required: flags & 32 != 0,
        binarymime: flags & 64 == 0,
    };
    let start = Instant::now();
    let mut server = Server::new(params, start);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = stream;
    let mut cuts = cuts.into_iter();
    while !rest.is_empty() {
        let n = cuts
            .next()
            .map_or(rest.len(), |c| usize::from(c) % (rest.len() + 1))
            .max(1);
        let (read, tail) = rest.split_at(n);
        rest = tail;
        buf.extend_from_slice(read);
        pump(&mut server, start, &mut buf, &mut out);
    }
    server.handle_eof();
    pump(&mut server, start, &mut buf, &mut out);
    server.handle_timeout(start + Duration::from_secs(1000));
    assert!(server.is_closing());
});

fn pump(server: &mut Server, now: Instant, buf: &mut BytesMut, out: &mut Vec<u8>) {
    // Each round consumes input or answers a question; more rounds than that is a livelock.
    let mut rounds_left = buf.len() + 16;
    loop {
        let before = buf.len();
        server.handle_input(now, buf);
        let consumed = before - buf.len();
        let mut events = 0;
        let mut answered = false;
        while let Some(event) = server.poll_event() {
            events += 1;
            answered |= answer(server, &event);
        }
        assert!(
            events <= consumed + 4,
            "{events} events for {consumed} bytes"
        );
        out.clear();
        server.poll_output(out);
        assert!(
            out.len() <= MAX_REPLY_BACKLOG + LONGEST_REPLY,
            "{} reply bytes",
            out.len()
        );
        if consumed == 0 && !answered && out.is_empty() {
            return;
        }
        rounds_left = rounds_left.checked_sub(1).expect("server livelocks");
    }
}

/// Answers questions the way an accepting relay would; true when something was answered.
fn answer(server: &mut Server, event: &Event) -> bool {
    match event {
        Event::Mail { .. } => server.answer(Reply::mail_ok()),
        Event::Rcpt { .. } => server.answer(Reply::rcpt_ok()),
        Event::DataStart { bdat: false } => server.answer(Reply::start_data()),
        Event::DataEnd => server.answer(Reply::message_ok()),
        Event::StartTls => server.tls_started(),
        _ => return false,
    }
    true
}
