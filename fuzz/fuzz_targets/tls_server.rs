//! Arbitrary bytes from a client into a server-side `TlsPipe`, as a ClientHello and records
//! cut at arbitrary points: the pipe never panics, never stalls (ciphertext it does not take
//! always leaves plaintext to drain), and once failed stays failed.
#![no_main]

use std::sync::{Arc, OnceLock};

use conbool::tls::{server_config_from_pem, ServerConfig, TlsPipe};
use libfuzzer_sys::fuzz_target;

/// A fixed test certificate (EC P-256, SEC1 key, `ec.conbool.test`); see
/// `src/tls/testdata/README.md`.
const CERT_PEM: &str = include_str!("../../src/tls/testdata/ec-cert.pem");
const KEY_PEM: &str = include_str!("../../src/tls/testdata/ec-sec1-key.pem");

fn config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            server_config_from_pem(
                CERT_PEM.as_bytes(),
                KEY_PEM.as_bytes(),
                Some(CERT_PEM.as_bytes()),
            )
            .expect("fuzz server config")
        })
        .clone()
}

fuzz_target!(|input: &[u8]| {
    let Some((&cut, data)) = input.split_first() else {
        return;
    };
    let chunk = usize::from(cut) * 61 + 1;
    let Ok(mut pipe) = TlsPipe::new_server(config()) else {
        return;
    };
    let mut out = Vec::new();
    let mut plain = [0u8; 4096];
    for piece in data.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            match pipe.read_tls(rest) {
                Ok(n) => rest = &rest[n..],
                Err(_) => {
                    out.clear();
                    pipe.write_tls(&mut out);
                    assert!(
                        pipe.read_tls(b"\x16\x03\x01").is_err(),
                        "failure must stick"
                    );
                    assert_eq!(pipe.write_plaintext(b"x"), 0);
                    return;
                }
            }
            let mut drained = 0;
            loop {
                let n = pipe.read_plaintext_into(&mut plain);
                if n == 0 {
                    break;
                }
                drained += n;
            }
            assert!(
                rest.is_empty() || drained > 0,
                "read_tls took nothing with no plaintext to drain"
            );
            pipe.write_plaintext(b"250 2.0.0 fuzz\r\n");
            out.clear();
            pipe.write_tls(&mut out);
        }
    }
    let _ = pipe.description();
    let _ = pipe.is_resumed();
    let _ = pipe.peer_cert_matches(&["ec.conbool.test".to_owned()]);
    pipe.send_close_notify();
    out.clear();
    pipe.write_tls(&mut out);
});
