//! Arbitrary bytes as a message: the header parser never panics, every field it reports is a
//! well-formed name with a value, and nothing changes when the message is cut in two.
#![no_main]

use bytes::Bytes;
use conbool::message::{EditPlan, MessageLimits, Pipeline, ScanEvent, ScanSink};
use libfuzzer_sys::fuzz_target;

const LIMITS: MessageLimits = MessageLimits {
    max_header_bytes: 4096,
    scan_window: 64,
    max_mime_depth: 4,
    max_mime_parts: 16,
};

#[derive(Default)]
struct Headers(Vec<(usize, Vec<u8>, Vec<u8>)>);

impl ScanSink for Headers {
    fn event(&mut self, ev: ScanEvent<'_>) {
        if let ScanEvent::Header { depth, name, value } = ev {
            self.0.push((depth, name.to_vec(), value.to_vec()));
        }
    }
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn run(msg: &Bytes, cut: usize) -> (bool, Fields, Vec<(usize, Vec<u8>, Vec<u8>)>, Vec<u8>) {
    let mut p = Pipeline::new(LIMITS);
    let mut sink = Headers::default();
    let ok = p.feed(msg.slice(..cut), &mut sink).is_ok()
        && p.feed(msg.slice(cut..), &mut sink).is_ok()
        && p.finish(&mut sink).is_ok();
    let fields: Fields = p
        .header_fields()
        .into_iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    for (name, _) in &fields {
        assert!(!name.is_empty());
        assert!(name.iter().all(|&b| (33..=126).contains(&b) && b != b':'));
        let name = String::from_utf8_lossy(name);
        assert!(p.count_fields(&name) >= 1);
    }
    let mut out = Vec::new();
    if ok {
        p.release(&EditPlan::default());
        while let Some(b) = p.poll_output() {
            out.extend_from_slice(&b);
        }
        assert_eq!(out, msg.as_ref(), "an empty plan changes nothing");
    }
    (ok, fields, sink.0, out)
}

fuzz_target!(|input: (u16, &[u8])| {
    let (cut, data) = input;
    let msg = Bytes::copy_from_slice(data);
    let whole = run(&msg, msg.len());
    let split = run(&msg, usize::from(cut) % (msg.len() + 1));
    // A header block over the limit is refused whatever the cut; how many of its fields were
    // seen before the limit was hit depends on where the cut falls, and nothing is forwarded.
    if !whole.0 || !split.0 {
        assert_eq!(whole.0, split.0, "the header limit does not depend on the cut");
        return;
    }
    assert_eq!(whole, split);
});
