//! The `/metrics` request parser on arbitrary bytes: never panics; a prefix of a complete
//! request is never an error (the server keeps reading); the verdict for the whole input is
//! the same whatever was received before it; and every verdict makes a well-formed response.
#![no_main]

use conbool::metrics::http::{parse_request, respond, Request, MAX_REQUEST_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_request(data);
    if let Ok(Request::Complete { method, path }) = &whole {
        assert!(!method.is_empty() && path.starts_with('/'));
        for i in 0..data.len().min(MAX_REQUEST_BYTES) {
            match parse_request(&data[..i]) {
                Ok(Request::Incomplete) | Ok(Request::Complete { .. }) => {}
                Err(e) => panic!("prefix {i} of a complete request is an error: {e:?}"),
            }
        }
    }
    let response = respond(whole, || "body".to_string());
    let text = String::from_utf8(response).expect("responses are UTF-8");
    assert!(text.starts_with("HTTP/1.1 "));
    assert!(text.contains("\r\nConnection: close\r\n\r\n"));
});
