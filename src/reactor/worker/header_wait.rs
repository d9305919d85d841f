//! Connections waiting for their PROXY protocol header (`server.proxy_protocol = true`): held
//! apart from the SMTP sessions until [`crate::smtp::proxy::ProxyParser`] has the whole header,
//! so no greeting goes out before it and nothing but the header is read. The real client
//! address then starts the session (trust, `max_connections_per_ip`, `Received`, logs); the
//! bytes after the header in the same read are its first input.
//!
//! Refused without a greeting, with a log line saying why (as Postfix's smtpd and postscreen
//! do): a peer outside `server.proxy_from`, a header that is malformed, too long, or not
//! complete within `server.proxy_timeout_s`, and a connection closed before it.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::{Worker, WAIT_BASE};
use crate::logging::Level;
use crate::metrics::names::RefuseReason;
use crate::smtp::proxy::{Progress, ProxyParser};

/// One connection waiting for its header.
pub(super) struct Waiting {
    stream: TcpStream,
    /// The load balancer's address (the connection's peer).
    peer: SocketAddr,
    local: SocketAddr,
    parser: ProxyParser,
    deadline: Instant,
}

/// What one read brought.
enum Outcome {
    /// Nothing more to read now.
    Wait,
    /// The header is complete: the client and the bytes after the header.
    Done(SocketAddr, Vec<u8>),
    /// Refused, for this reason.
    Refuse(String),
}

impl Worker {
    /// An accepted connection under `server.proxy_protocol`: refused at once unless it comes
    /// from `server.proxy_from`; otherwise it waits for its header.
    pub(super) fn await_proxy_header(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) {
        let server = &self.snapshot.config.server;
        let ip = peer.ip().to_canonical();
        if !server.proxy_from.iter().any(|c| c.contains(ip)) {
            self.refuse_unproxied(peer, "peer not in server.proxy_from");
            return;
        }
        let deadline = now + Duration::from_secs(server.proxy_timeout_s);
        let entry = self.waiting.vacant_entry();
        let key = entry.key();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, Token(WAIT_BASE + key), Interest::READABLE)
        {
            eprintln!("worker={} register error: {e}", self.id);
            return;
        }
        entry.insert(Waiting {
            stream,
            peer,
            local,
            parser: ProxyParser::new(),
            deadline,
        });
        self.timers.update(WAIT_BASE + key, None, Some(deadline));
        // The header often arrives with the connection: read it now.
        self.header_event(key, now);
    }

    /// The waiting connection `key` is readable: feed the parser until the header is complete,
    /// refused, or nothing more is there.
    pub(super) fn header_event(&mut self, key: usize, now: Instant) {
        let Some(w) = self.waiting.get_mut(key) else {
            return;
        };
        let outcome = loop {
            let n = match w.stream.read(&mut self.scratch) {
                Ok(0) => break Outcome::Refuse("connection closed before the header".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Outcome::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Outcome::Refuse(e.to_string()),
            };
            self.stats.bytes_in += n as u64;
            let input = &self.scratch[..n];
            match w.parser.feed(input) {
                Ok(Progress::Incomplete) => {}
                Ok(Progress::Done { header, used }) => {
                    break Outcome::Done(header.client(w.peer), input[used..].to_vec())
                }
                Err(e) => break Outcome::Refuse(e.to_string()),
            }
        };
        match outcome {
            Outcome::Wait => {}
            Outcome::Done(client, early) => {
                let w = self.stop_waiting(key);
                self.start_session(w.stream, client, w.local, now, &early);
            }
            Outcome::Refuse(why) => {
                let w = self.stop_waiting(key);
                self.refuse_unproxied(w.peer, &why);
            }
        }
    }

    /// The header of connection `key` was not complete in time.
    pub(super) fn header_timed_out(&mut self, key: usize) {
        if self.waiting.contains(key) {
            let w = self.stop_waiting(key);
            let why = format!(
                "no complete PROXY header within {}s ({} bytes)",
                self.snapshot.config.server.proxy_timeout_s,
                w.parser.held()
            );
            self.refuse_unproxied(w.peer, &why);
        }
    }

    /// Closes every waiting connection (graceful stop: nobody was greeted yet).
    pub(super) fn drop_waiting(&mut self) {
        let keys: Vec<usize> = self.waiting.iter().map(|(k, _)| k).collect();
        for key in keys {
            drop(self.stop_waiting(key));
        }
    }

    fn stop_waiting(&mut self, key: usize) -> Waiting {
        let mut w = self.waiting.remove(key);
        let _ = self.poll.registry().deregister(&mut w.stream);
        self.timers.update(WAIT_BASE + key, Some(w.deadline), None);
        w
    }

    /// Counts and logs a connection closed before any greeting (the stream is dropped by the
    /// caller).
    fn refuse_unproxied(&mut self, peer: SocketAddr, why: &str) {
        self.stats.connections += 1;
        self.stats.refused_connections += 1;
        self.metrics.refused(RefuseReason::ProxyProtocol);
        let now = Instant::now();
        self.log_event(
            now,
            Level::Info,
            "refused",
            &[
                ("client", &peer.ip().to_string()),
                ("reason", RefuseReason::ProxyProtocol.label()),
                ("detail", why),
            ],
        );
    }
}
