//! Scan events recorded once and replayed into a sink inside the timed loop (shared by the
//! `rules` and `classify` benches and `examples/rules_profile.rs`).

use conbool::cli::scan::default_limits;
use std::ops::ControlFlow;

use conbool::message::{feed_whole, Recorded, Recorder, ScanSink};
use conbool::smtp::encode::canonical_crlf;

/// The events the message pipeline makes of one message (line ends made CRLF, fed in 64 KiB
/// pieces, the scan window released as the relay does), up to its end; `None` when the pipeline
/// refuses it (a header block over its limit).
pub fn pipeline_events(msg: &[u8]) -> Option<Vec<Recorded>> {
    let mut rec = Recorder::default();
    let msg = bytes::Bytes::from(canonical_crlf(msg).into_owned());
    feed_whole(default_limits(), &msg, &mut rec, |_| {
        ControlFlow::Continue(())
    })
    .ok()
    .map(|_| rec.events)
}

pub fn replay(events: &[Recorded], sink: &mut dyn ScanSink) {
    for ev in events {
        sink.event(ev.event());
    }
}
