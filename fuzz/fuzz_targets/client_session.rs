//! Arbitrary server bytes into a `Client` that drives one transaction (a simple owner reacting
//! to its events): it never panics, stops after `Failed`, and holds little besides what the
//! owner gave it.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use conbool::smtp::client::{Client, ClientEvent, ClientParams, StartTlsPolicy};
use conbool::smtp::command::{Body, MailParams, Mailbox, RcptParams, Ret, ReversePath};
use conbool::smtp::outbound::Outbound;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    use_bdat: bool,
    starttls: u8,
    rcpts: u8,
    content: Vec<Vec<u8>>,
    /// Server bytes, delivered one chunk per turn.
    server: Vec<Vec<u8>>,
    /// Seconds the fake clock moves before each turn.
    waits: Vec<u16>,
    rset_instead_of_end: bool,
    eof: bool,
}

fuzz_target!(|input: Input| {
    let t0 = Instant::now();
    let starttls = match input.starttls % 3 {
        0 => StartTlsPolicy::Never,
        1 => StartTlsPolicy::IfOffered,
        _ => StartTlsPolicy::Required,
    };
    let params = ClientParams {
        helo_name: "relay.example".into(),
        starttls,
        reply_timeout: Duration::from_secs(300),
        use_bdat: input.use_bdat,
    };
    let mut c = Client::new(params, t0);
    let from = ReversePath::Mailbox(Mailbox {
        local: "a".into(),
        domain: "x.example".into(),
    });
    let mail = MailParams {
        size: Some(1000),
        body: Body::EightBitMime,
        smtputf8: true,
        ret: Some(Ret::Full),
        envid: Some("id".into()),
    };
    let rcpt = RcptParams {
        notify: Some("NEVER".into()),
        orcpt: None,
    };
    let content_len: usize = input.content.iter().map(Vec::len).sum();
    let mut now = t0;
    // The input buffer's type (`bytes::BytesMut`) is inferred from `handle_input`, so the
    // fuzz crate needs no `bytes` dependency of its own.
    let mut buf = Default::default();
    c.handle_input(t0, &mut buf);
    let mut started = false;
    let mut failed = false;
    let mut out = Outbound::new();
    for (turn, chunk) in input.server.iter().enumerate() {
        let wait = input.waits.get(turn).copied().unwrap_or(0);
        now += Duration::from_secs(u64::from(wait));
        c.handle_timeout(now);
        buf.extend_from_slice(chunk.as_slice());
        c.handle_input(now, &mut buf);
        while let Some(ev) = c.poll_event() {
            assert!(!failed, "event after Failed: {ev:?}");
            match ev {
                ClientEvent::Ready | ClientEvent::ResetDone | ClientEvent::MessageReply(_) => {
                    if started || !c.is_idle() {
                        c.quit();
                        continue;
                    }
                    started = true;
                    c.mail(&from, &mail);
                    for i in 0..input.rcpts % 4 {
                        let to = Mailbox {
                            local: format!("r{i}"),
                            domain: "y.example".into(),
                        };
                        c.rcpt(&to, &rcpt);
                    }
                    c.data();
                }
                ClientEvent::DataReady => {
                    for p in &input.content {
                        c.send(p.clone().into());
                    }
                    if input.rset_instead_of_end {
                        c.rset();
                    } else {
                        c.end();
                    }
                }
                ClientEvent::DataRefused(_) => c.rset(),
                ClientEvent::StartTls => c.tls_started(),
                ClientEvent::Failed(_) => failed = true,
                ClientEvent::MailReply(_) | ClientEvent::RcptReply(_) => {}
            }
        }
        // Commands are small; content is bounded by what the owner gave.
        assert!(c.buffered_bytes() <= content_len + 4096 + 64 * 1024);
        c.poll_output(&mut out);
        out.clear();
        if c.next_deadline().is_some_and(|d| d < now) {
            panic!("deadline in the past after handle_timeout");
        }
    }
    if input.eof {
        c.handle_eof();
        while let Some(ev) = c.poll_event() {
            assert!(!failed, "event after Failed: {ev:?}");
            failed |= matches!(ev, ClientEvent::Failed(_));
        }
    }
});
