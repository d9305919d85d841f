//! The relay: one [`session::Session`] per client connection gluing the SMTP server core, the
//! message pipeline, the rule scan and the SMTP client core toward the next hop; route choice
//! and trust; the header fields the relay writes.
//!
//! Owns: route choice, cut-through sequencing, the edit plan's content.
//! Must not touch: mio, `std::net` sockets, the clock (time comes in as arguments), thread-locals.

pub mod route;
pub mod session;
pub mod stamp;

#[cfg(test)]
mod tests;
