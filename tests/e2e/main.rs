//! End-to-end tests: the real relay (`reactor::spawn`) on 127.0.0.1 between a blocking client
//! and a real next hop (the project's sink, or a scripted peer for faults).

mod corpus;
mod disclaimer;
mod exchange;
mod floods;
mod metrics;
mod open_relay;
mod peer;
mod proxy;
mod relay;
mod reload;
mod scan_cli;
mod soak;
mod spoofing;
mod temp;
mod tls;
