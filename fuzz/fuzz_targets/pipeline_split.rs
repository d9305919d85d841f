//! The whole pipeline fed whole versus cut at arbitrary points: identical scan events (as
//! the scanner sees them: structural events in order, and between two of them the same raw
//! body bytes, the same text and the same URLs) and identical output under an edit plan; a
//! message refused (header block over its limit) is refused either way, with the same output.
#![no_main]

use bytes::Bytes;
use conbool::message::{EditPlan, MessageLimits, Pipeline, ScanEvent, ScanSink};
use libfuzzer_sys::fuzz_target;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Segment {
    event: Vec<u8>,
    raw: Vec<u8>,
    text: Vec<u8>,
    urls: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Recorder(Vec<Segment>);

impl Recorder {
    fn open(&mut self, event: Vec<u8>) {
        self.0.push(Segment {
            event,
            ..Segment::default()
        });
    }

    fn cur(&mut self) -> &mut Segment {
        if self.0.is_empty() {
            self.0.push(Segment::default());
        }
        let n = self.0.len();
        &mut self.0[n - 1]
    }
}

impl ScanSink for Recorder {
    fn event(&mut self, ev: ScanEvent<'_>) {
        match ev {
            ScanEvent::Header { depth, name, value } => {
                self.open(format!("H{depth} {name:?} {value:?}").into_bytes())
            }
            ScanEvent::HeaderEnd => self.open(b"END".to_vec()),
            ScanEvent::PartStart { depth, content_type, filename } => {
                self.open(format!("P{depth} {content_type:?} {filename:?}").into_bytes())
            }
            ScanEvent::RawBody(b) => self.cur().raw.extend_from_slice(b),
            ScanEvent::Text(t) => self.cur().text.extend_from_slice(t),
            ScanEvent::Url(u) => self.cur().urls.push(u.to_vec()),
            ScanEvent::Link { href, text } => {
                self.cur().urls.push([b"link: ", text, b" -> ", href].concat())
            }
        }
    }
}

fn run(msg: &Bytes, cuts: &[usize], limits: MessageLimits) -> (Vec<Segment>, Vec<u8>, bool) {
    let plan = EditPlan {
        prepend: b"X-Conbool-Flag: NO\r\n".to_vec(),
        remove: vec!["X-Conbool-Flag".into(), "Received".into()],
    };
    let mut p = Pipeline::new(limits);
    let mut rec = Recorder::default();
    let mut out = Vec::new();
    let mut last = 0;
    let mut ok = true;
    for &cut in cuts.iter().chain(std::iter::once(&msg.len())) {
        let cut = cut.clamp(last, msg.len());
        if p.feed(msg.slice(last..cut), &mut rec).is_err() {
            ok = false;
            break;
        }
        last = cut;
        if !p.is_released() && p.window_complete() {
            p.release(&plan);
        }
        while let Some(b) = p.poll_output() {
            out.extend_from_slice(&b);
        }
    }
    if ok {
        ok = p.finish(&mut rec).is_ok();
        p.release(&plan);
        while let Some(b) = p.poll_output() {
            out.extend_from_slice(&b);
        }
    }
    for s in &mut rec.0 {
        s.urls.sort();
    }
    (rec.0, out, ok)
}

fuzz_target!(|input: (Vec<u16>, u8, &[u8])| {
    let (raw_cuts, window, data) = input;
    let limits = MessageLimits {
        max_header_bytes: 2048,
        scan_window: usize::from(window),
        max_mime_depth: 6,
        max_mime_parts: 32,
    };
    let msg = Bytes::copy_from_slice(data);
    let mut cuts: Vec<usize> = raw_cuts
        .iter()
        .take(64)
        .map(|&c| usize::from(c) % (msg.len() + 1))
        .collect();
    cuts.sort_unstable();
    let whole = run(&msg, &[], limits);
    let split = run(&msg, &cuts, limits);
    if whole.2 && split.2 {
        assert_eq!(whole, split, "cuts {cuts:?}");
    } else {
        // A refused message (header block over its limit) is refused however it is cut, with
        // the same output; the events given before the refusal may differ by the one a piece
        // end left pending, and nothing reads them (the message gets no verdict).
        assert_eq!((&whole.1, whole.2), (&split.1, split.2), "cuts {cuts:?}");
    }
});
