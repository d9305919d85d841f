//! conbool: a filtering SMTP relay that streams each message through header parsing and rule
//! matching and hands it to the next hop while the sender is still connected.
//!
//! Layers, bottom up (an arrow means "may use"):
//!
//! ```text
//! reactor ──▶ relay ──▶ smtp, message, rules       cli ──▶ everything
//!    ├──▶ tls
//!    └──▶ config
//! ```
//!
//! `smtp`, `message` and `rules` are pure cores: bytes and time in, bytes, events and verdicts
//! out (`swar` holds the eight-bytes-at-a-time tricks their scanners share). `relay` glues them
//! into one session per connection without touching sockets or the clock. Only `reactor` (and the small loops of `cli::sink` and `cli::replay`) does I/O.
#![deny(missing_docs)]

pub mod classify;
pub mod cli;
pub mod config;
pub mod logging;
pub mod mbox;
pub mod message;
pub mod metrics;
pub mod reactor;
pub mod relay;
pub mod rules;
pub mod smtp;
mod swar;
pub mod tls;
