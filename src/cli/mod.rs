//! Subcommand wiring. (Placeholder from the tools work; the integrator reconciles it with the
//! clap skeleton.)

pub mod replay;
pub mod sink;
pub mod toolkit;
