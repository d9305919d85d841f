//! Arbitrary message bytes through the disclaimer inserter, cut at an arbitrary point and
//! released after an arbitrary held prefix: the output is the same however the input is cut,
//! the input survives in it byte for byte (outside insertions; base64 tails are re-encoded, so
//! messages naming base64 are exempt), and the output walks again without trouble.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use conbool::message::{
    DisclaimerOutcome, EditPlan, Footer, MessageLimits, Pipeline, ScanEvent, ScanSink,
};
use libfuzzer_sys::fuzz_target;

struct Null;
impl ScanSink for Null {
    fn event(&mut self, _: ScanEvent<'_>) {}
}

const LIMITS: MessageLimits = MessageLimits {
    max_header_bytes: 8192,
    scan_window: usize::MAX / 2,
    max_mime_depth: 8,
    max_mime_parts: 64,
};

fn run(msg: &Bytes, cut: usize, hold: usize, footer: &Arc<Footer>) -> Option<(Vec<u8>, Option<DisclaimerOutcome>)> {
    let mut p = Pipeline::new(LIMITS);
    p.track_parts();
    let mut points = vec![cut, hold, msg.len()];
    points.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for c in points {
        if c > at {
            p.feed(msg.slice(at..c), &mut Null).ok()?;
            at = c;
        }
        // Released at `hold` or at the end, never at a cut: what is held decides.
        if !p.is_released() && at == hold && p.header_complete() {
            let mut plan = EditPlan::default();
            let _ = p.arm_disclaimer(footer, "t", "=_conbool_disclaimer_1_=", &mut plan);
            p.release(&plan);
        }
        while let Some(b) = p.poll_output() {
            out.extend_from_slice(&b);
        }
    }
    p.finish(&mut Null).ok()?;
    if !p.is_released() {
        let mut plan = EditPlan::default();
        let _ = p.arm_disclaimer(footer, "t", "=_conbool_disclaimer_1_=", &mut plan);
        p.release(&plan);
    }
    while let Some(b) = p.poll_output() {
        out.extend_from_slice(&b);
    }
    Some((out, p.disclaimer_outcome()))
}

fuzz_target!(|input: (u16, u16, bool, &[u8])| {
    let (cut, hold, ascii, data) = input;
    let msg = Bytes::copy_from_slice(data);
    let cut = cut as usize % (msg.len() + 1);
    let hold = hold as usize % (msg.len() + 1);
    let footer = Arc::new(if ascii {
        Footer::new("-- \n.Example Ltd", "<p>Example</p>")
    } else {
        Footer::new("Grüße", "<p>Grüße</p>")
    });
    let Some((whole, outcome)) = run(&msg, msg.len(), hold, &footer) else {
        return;
    };
    let (split, _) = run(&msg, cut, hold, &footer).expect("split refused");
    assert_eq!(whole, split, "cut at {cut}");
    let wrapped = whole
        .windows(28)
        .take(200)
        .any(|w| w == b"boundary=\"=_conbool_disclaim");
    let base64 = data.windows(6).any(|w| w.eq_ignore_ascii_case(b"base64"));
    if outcome == Some(DisclaimerOutcome::Added) && !wrapped && !base64 {
        let mut it = whole.iter();
        assert!(data.iter().all(|b| it.any(|c| c == b)), "input not kept");
    }
    if outcome != Some(DisclaimerOutcome::Added) {
        assert!(whole.ends_with(data), "skipped but changed");
    }
    let mut again = Pipeline::new(LIMITS);
    let _ = again.feed(Bytes::from(whole), &mut Null);
    let _ = again.finish(&mut Null);
});
