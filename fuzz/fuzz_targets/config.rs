//! Any text as a configuration file: `Config::from_toml_str` returns a config or errors, and
//! never panics; what it returns can be displayed and linted.
#![no_main]

use std::path::Path;

use conbool::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text, Path::new("fuzz/conbool.toml")) {
        Ok(config) => {
            for warning in config.warnings() {
                let _ = warning.to_string();
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            let _ = errors.to_string();
        }
    }
});
