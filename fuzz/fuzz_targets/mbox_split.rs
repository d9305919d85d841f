//! The mbox framing `conbool train --spam PATH` and `eval` read mailboxes with, on arbitrary
//! bytes: `message_starts` never panics, gives increasing offsets inside the input that each
//! open a line, the same whether the reader hands over the bytes whole or one at a time; and
//! unquoting `>From ` lines never panics and only ever removes bytes.
#![no_main]

use conbool::mbox::{message_starts, unquote_from_lines};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let starts = message_starts(data).expect("reading memory");
    let slow = message_starts(std::io::BufReader::with_capacity(1, data)).expect("reading memory");
    assert_eq!(starts, slow, "the same a byte at a time");
    assert!(starts.is_empty() || starts[0] == 0);
    assert!(starts.windows(2).all(|w| w[0] < w[1]));
    for &s in &starts {
        let s = s as usize;
        assert!(s < data.len() && (s == 0 || data[s - 1] == b'\n'));
        assert!(data[s..].starts_with(b"From "));
    }
    let unquoted = unquote_from_lines(data);
    assert!(unquoted.len() <= data.len());
});
