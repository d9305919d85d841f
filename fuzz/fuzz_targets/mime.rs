//! Arbitrary bytes as the body of a multipart message with small limits: the MIME walker never
//! panics, stays within the depth and part limits, hands every body byte to `RawBody` once and
//! in order, and the message goes out unchanged.
#![no_main]

use bytes::Bytes;
use conbool::message::{EditPlan, MessageLimits, Pipeline, ScanEvent, ScanSink};
use libfuzzer_sys::fuzz_target;

const LIMITS: MessageLimits = MessageLimits {
    max_header_bytes: 4096,
    scan_window: 256,
    max_mime_depth: 4,
    max_mime_parts: 16,
};

const HEAD: &[u8] = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n";

#[derive(Default)]
struct Check {
    raw: Vec<u8>,
    parts: usize,
    max_depth: usize,
}

impl ScanSink for Check {
    fn event(&mut self, ev: ScanEvent<'_>) {
        match ev {
            ScanEvent::RawBody(b) => self.raw.extend_from_slice(b),
            ScanEvent::PartStart { depth, content_type, .. } => {
                self.parts += 1;
                self.max_depth = self.max_depth.max(depth);
                assert!(content_type.contains(&b'/'));
                assert!(!content_type.iter().any(u8::is_ascii_uppercase));
            }
            _ => {}
        }
    }
}

fuzz_target!(|body: &[u8]| {
    let mut msg = HEAD.to_vec();
    msg.extend_from_slice(body);
    let msg = Bytes::from(msg);
    let mut p = Pipeline::new(LIMITS);
    let mut check = Check::default();
    p.feed(msg.clone(), &mut check).expect("header fits");
    p.finish(&mut check).expect("finish");
    assert_eq!(check.raw, body, "RawBody is the body");
    assert!(check.parts <= LIMITS.max_mime_parts);
    assert!(check.max_depth <= LIMITS.max_mime_depth);
    p.release(&EditPlan::default());
    let mut out = Vec::new();
    while let Some(b) = p.poll_output() {
        out.extend_from_slice(&b);
    }
    assert_eq!(out, msg.as_ref());
});
