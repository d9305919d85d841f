//! The subcommands of the `conbool` binary (DESIGN.md §5), one module each. `src/main.rs`
//! parses the command line with clap and calls `cli::<name>::main(args)`, which returns the
//! process exit code; the work itself is a library function tests call directly.
//!
//! Owns: subcommand wiring and what they print. Must not touch: `reactor` internals (the small
//! programs here reuse the cores, so a bug shared with the relay cannot hide itself).

pub mod check;
pub mod demo;
pub mod eval;
pub mod exchange;
pub mod mailboxes;
pub mod replay;
pub mod run;
pub mod scan;
pub mod sink;
pub mod toolkit;
pub mod train;
