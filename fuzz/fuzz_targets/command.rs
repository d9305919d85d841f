//! Parses arbitrary command lines: never panics, and what parses prints without panicking.
#![no_main]

use conbool::smtp::command::{parse, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    match parse(line) {
        Ok(Command::Mail(from, params)) => {
            let _ = (from.to_string(), from.is_ascii(), params.size);
        }
        Ok(Command::Rcpt(to, _)) => {
            let _ = (to.to_string(), to.domain_lower(), to.is_ascii());
        }
        Ok(_) | Err(_) => {}
    }
});
