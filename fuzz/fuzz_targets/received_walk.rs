//! `conbool train`/`eval`'s preparation of a collected message (`prepared`: artefact fields,
//! the receiving side's `Received` hops and its checks above them) on arbitrary bytes: never
//! panics, never adds a byte, and the copies `eval --copies-out` writes (the entry hop kept)
//! prepare to exactly what the message itself prepares to, as `benches/quality.sh` relies on.
#![no_main]

use conbool::classify::InternalHosts;
use conbool::cli::train::{prepared, EntryHop};
use libfuzzer_sys::fuzz_target;

const LIST: &str = "mx.example\ncsmining.org\nslashnull.org\njmason.org\n192.0.2.0/24\n2001:db8::/32\n";

fuzz_target!(|data: &[u8]| {
    let list = InternalHosts::parse(LIST, None).expect("the list parses");
    let (dropped, hops) = prepared(data, &list, EntryHop::Drop);
    assert!(dropped.len() <= data.len());
    let (copy, copy_hops) = prepared(data, &list, EntryHop::Keep);
    assert!(dropped.len() <= copy.len() && copy_hops <= hops);
    let (again, entry) = prepared(&copy, &list, EntryHop::Drop);
    assert_eq!(again, dropped, "the copy prepares to what the message does");
    assert_eq!(copy_hops + entry, hops);
    let _ = list.hop(data);
});
