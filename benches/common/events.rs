//! Scan events recorded once and replayed into a sink inside the timed loop (shared by the
//! `rules` and `classify` benches and `examples/rules_profile.rs`).

use conbool::cli::scan::default_limits;
use std::ops::ControlFlow;

use conbool::message::{feed_whole, ScanEvent, ScanSink};
use conbool::smtp::encode::canonical_crlf;

/// An owned scan event.
#[derive(Clone)]
pub enum Ev {
    Header(usize, Vec<u8>, Vec<u8>),
    HeaderEnd,
    PartStart(usize, Vec<u8>, Option<Vec<u8>>),
    Text(Vec<u8>),
    RawBody(Vec<u8>),
    Url(Vec<u8>),
}

pub struct Recorder(pub Vec<Ev>);

impl ScanSink for Recorder {
    fn event(&mut self, ev: ScanEvent<'_>) {
        self.0.push(match ev {
            ScanEvent::Header { depth, name, value } => {
                Ev::Header(depth, name.to_vec(), value.to_vec())
            }
            ScanEvent::HeaderEnd => Ev::HeaderEnd,
            ScanEvent::PartStart {
                depth,
                content_type,
                filename,
            } => Ev::PartStart(depth, content_type.to_vec(), filename.map(<[u8]>::to_vec)),
            ScanEvent::Text(t) => Ev::Text(t.to_vec()),
            ScanEvent::RawBody(r) => Ev::RawBody(r.to_vec()),
            ScanEvent::Url(u) => Ev::Url(u.to_vec()),
        });
    }
}

/// The events the message pipeline makes of one message (line ends made CRLF, fed in 64 KiB
/// pieces, the scan window released as the relay does), up to its end; `None` when the pipeline
/// refuses it (a header block over its limit).
pub fn pipeline_events(msg: &[u8]) -> Option<Vec<Ev>> {
    let mut rec = Recorder(Vec::new());
    let msg = bytes::Bytes::from(canonical_crlf(msg).into_owned());
    feed_whole(default_limits(), &msg, &mut rec, |_| {
        ControlFlow::Continue(())
    })
    .ok()
    .map(|_| rec.0)
}

pub fn replay(events: &[Ev], sink: &mut dyn ScanSink) {
    for ev in events {
        sink.event(match ev {
            Ev::Header(depth, n, v) => ScanEvent::Header {
                depth: *depth,
                name: n,
                value: v,
            },
            Ev::HeaderEnd => ScanEvent::HeaderEnd,
            Ev::PartStart(depth, c, f) => ScanEvent::PartStart {
                depth: *depth,
                content_type: c,
                filename: f.as_deref(),
            },
            Ev::Text(t) => ScanEvent::Text(t),
            Ev::RawBody(r) => ScanEvent::RawBody(r),
            Ev::Url(u) => ScanEvent::Url(u),
        });
    }
}
