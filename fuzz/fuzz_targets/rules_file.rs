//! Arbitrary text into the rule-file compiler: never panics; what compiles runs its own
//! inline tests and scans a small message without panicking.
#![no_main]

use std::sync::Arc;

use conbool::message::{ScanEvent, ScanSink};
use conbool::rules::{CompiledRules, RuleSource, Scan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let source = RuleSource {
        origin: "fuzz".into(),
        text: text.into(),
    };
    match CompiledRules::compile(&[source], 5.0) {
        Ok(rules) => {
            let rules = Arc::new(rules);
            let _ = rules.self_test();
            let mut scan = Scan::new(Arc::clone(&rules));
            scan.event(ScanEvent::Header {
                depth: 0,
                name: b"Subject",
                value: text.as_bytes(),
            });
            scan.event(ScanEvent::HeaderEnd);
            scan.event(ScanEvent::Text(text.as_bytes()));
            scan.event(ScanEvent::RawBody(text.as_bytes()));
            scan.event(ScanEvent::Url(text.as_bytes()));
            scan.event(ScanEvent::Link {
                href: text.as_bytes(),
                text: text.as_bytes(),
            });
            scan.finish(text.len() as u64);
            let _ = (scan.verdict(), scan.hit_names());
        }
        Err(e) => {
            let _ = (e.to_string(), e.rule(), e.key());
        }
    }
});
