//! The SMTP protocol cores: command parsing, replies, the server and client phase machines,
//! DATA end-of-data detection and dot-unstuffing, BDAT framing, and the `bare_lf` policy.
//!
//! Owns: bytes in, bytes and events out, time passed in by the caller.
//! Must not touch: sockets, the clock, rustls types, rules.

pub mod bdat;
pub mod client;
pub mod command;
pub mod data;
pub mod encode;
pub mod error;
pub mod outbound;
pub mod proxy;
pub mod reply;
pub mod response;
pub mod server;
