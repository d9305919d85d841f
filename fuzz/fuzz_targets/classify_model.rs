//! The model-file loader on arbitrary bytes: never panics, and whatever it accepts writes
//! back to the same bytes and scores any feature set to a probability in [0, 1].
#![no_main]

use conbool::classify::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Model::from_bytes(data) {
        assert_eq!(m.to_bytes(), data);
        let p = m.probability(&[1, 0x8000_0000, u32::MAX]);
        assert!((0.0..=1.0).contains(&p));
    }
});
