//! The `/metrics` endpoint: a minimal HTTP/1.x server on its own thread and `mio` loop (no
//! async runtime). One request per connection (`Connection: close`): `GET` or `HEAD /metrics`
//! answers the scrape, any other path `404`, any other method `405`. Requests are bounded
//! ([`MAX_REQUEST_BYTES`], then `431`), so are open connections ([`MAX_CONNECTIONS`]) and the
//! time a client has to send its request (then `408`); a slow client never holds up another.
//!
//! [`parse_request`] is sans-IO (bytes in, a verdict out) and fuzzed.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::metrics::Registry;

/// Most bytes of a request head (request line and headers).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Longest request method (letters only); a longer one is `400` whether the line is complete
/// or not, so a prefix of a request the parser accepts is never refused.
pub const MAX_METHOD_BYTES: usize = 16;
/// Most connections open at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client has to send its whole request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// More bytes are needed.
    Incomplete,
    /// A complete head: method and path (query string removed).
    Complete {
        /// The method, as sent.
        method: String,
        /// The path, without `?query`.
        path: String,
    },
}

/// Why a request cannot be answered normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Malformed request line or not HTTP/1.x (`400`).
    BadRequest,
    /// The head is over [`MAX_REQUEST_BYTES`] (`431`).
    TooLarge,
}

/// Parses the request head in `buf` (everything received so far).
pub fn parse_request(buf: &[u8]) -> Result<Request, RequestError> {
    let window = &buf[..buf.len().min(MAX_REQUEST_BYTES)];
    let Some(end) = head_end(window) else {
        return if buf.len() >= MAX_REQUEST_BYTES {
            Err(RequestError::TooLarge)
        } else {
            // A request line must look right from its first bytes on.
            check_prefix(window)?;
            Ok(Request::Incomplete)
        };
    };
    let head = std::str::from_utf8(&window[..end]).map_err(|_| RequestError::BadRequest)?;
    let line = head.split('\n').next().unwrap_or("").trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::BadRequest);
    };
    if !is_method(method.as_bytes())
        || !target.starts_with('/')
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return Err(RequestError::BadRequest);
    }
    if target.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(RequestError::BadRequest);
    }
    let path = target.split('?').next().unwrap_or("");
    Ok(Request::Complete {
        method: method.to_string(),
        path: path.to_string(),
    })
}

/// The full response to a parsed request (`body` renders the metrics when asked for them).
pub fn respond(parsed: Result<Request, RequestError>, body: impl FnOnce() -> String) -> Vec<u8> {
    let (status, extra, text, head_only) = match parsed {
        Ok(Request::Complete { method, path }) => match (method.as_str(), path.as_str()) {
            ("GET" | "HEAD", "/metrics") => ("200 OK", "", body(), method == "HEAD"),
            (_, "/metrics") => (
                "405 Method Not Allowed",
                "Allow: GET, HEAD\r\n",
                "method not allowed\n".to_string(),
                false,
            ),
            _ => ("404 Not Found", "", "not found\n".to_string(), false),
        },
        Ok(Request::Incomplete) => (
            "408 Request Timeout",
            "",
            "request timeout\n".to_string(),
            false,
        ),
        Err(RequestError::BadRequest) => {
            ("400 Bad Request", "", "bad request\n".to_string(), false)
        }
        Err(RequestError::TooLarge) => (
            "431 Request Header Fields Too Large",
            "",
            "request too large\n".to_string(),
            false,
        ),
    };
    let content_type = if status.starts_with("200") {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        text.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(text.as_bytes());
    }
    out
}

fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4);
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A request method: 1 to [`MAX_METHOD_BYTES`] ASCII letters.
fn is_method(m: &[u8]) -> bool {
    (1..=MAX_METHOD_BYTES).contains(&m.len()) && m.iter().all(u8::is_ascii_alphabetic)
}

/// An incomplete head must still be able to become a request: a method of letters, a space,
/// a `/`. Lets the server answer `400` to garbage without waiting for its end.
fn check_prefix(buf: &[u8]) -> Result<(), RequestError> {
    let Some(space) = buf.iter().position(|&b| b == b' ') else {
        // The method so far: letters, not yet too many.
        return if buf.iter().all(u8::is_ascii_alphabetic) && buf.len() <= MAX_METHOD_BYTES {
            Ok(())
        } else {
            Err(RequestError::BadRequest)
        };
    };
    let method_ok = is_method(&buf[..space]);
    let target_ok = buf.get(space + 1).map_or(true, |&b| b == b'/');
    if method_ok && target_ok {
        Ok(())
    } else {
        Err(RequestError::BadRequest)
    }
}

/// A running metrics endpoint.
pub struct MetricsServer {
    /// The address actually listened on (port 0 resolved).
    pub local_addr: SocketAddr,
    waker: Arc<Waker>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `registry` on a thread of its own.
    pub fn start(
        addr: SocketAddr,
        registry: Arc<Registry>,
        request_timeout: Duration,
    ) -> io::Result<MetricsServer> {
        let mut listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("conbool-metrics".to_string())
            .spawn(move || {
                let mut server = Loop {
                    poll,
                    listener,
                    conns: Slab::new(),
                    registry,
                    request_timeout,
                };
                server.run(&stop2);
            })?;
        Ok(MetricsServer {
            local_addr,
            waker,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops serving and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const CONN_BASE: usize = 2;

struct HttpConn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    deadline: Instant,
}

struct Loop {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<HttpConn>,
    registry: Arc<Registry>,
    request_timeout: Duration,
}

impl Loop {
    fn run(&mut self, stop: &std::sync::atomic::AtomicBool) {
        let mut events = Events::with_capacity(64);
        loop {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let now = Instant::now();
            let timeout = self
                .conns
                .iter()
                .map(|(_, c)| c.deadline.saturating_duration_since(now))
                .min();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(t) => self.drive(t - CONN_BASE),
                }
            }
            let now = Instant::now();
            let late: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, c)| c.deadline <= now)
                .map(|(k, _)| k)
                .collect();
            for key in late {
                let conn = &mut self.conns[key];
                if conn.output.is_empty() {
                    // The client did not finish its request in time.
                    conn.output = respond(Ok(Request::Incomplete), String::new);
                    conn.deadline = now + self.request_timeout;
                    self.drive(key);
                } else {
                    self.close(key);
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.conns.len() >= MAX_CONNECTIONS {
                        continue;
                    }
                    let entry = self.conns.vacant_entry();
                    let token = Token(CONN_BASE + entry.key());
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        let key = entry.key();
                        entry.insert(HttpConn {
                            stream,
                            input: Vec::with_capacity(512),
                            output: Vec::new(),
                            written: 0,
                            deadline: Instant::now() + self.request_timeout,
                        });
                        self.drive(key);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn drive(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.output.is_empty() {
            let mut chunk = [0u8; 2048];
            loop {
                let room = (MAX_REQUEST_BYTES + 1).saturating_sub(conn.input.len());
                if room == 0 {
                    break;
                }
                let want = room.min(chunk.len());
                match conn.stream.read(&mut chunk[..want]) {
                    Ok(0) => {
                        self.close(key);
                        return;
                    }
                    Ok(n) => conn.input.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.close(key);
                        return;
                    }
                }
            }
            match parse_request(&conn.input) {
                Ok(Request::Incomplete) => return,
                parsed => {
                    let registry = &self.registry;
                    conn.output = respond(parsed, || registry.render());
                }
            }
        }
        while conn.written < conn.output.len() {
            match conn.stream.write(&conn.output[conn.written..]) {
                Ok(0) => break,
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.close(key);
    }

    fn close(&mut self, key: usize) {
        if self.conns.contains(key) {
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let _ = conn.stream.shutdown(std::net::Shutdown::Write);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(method: &str, path: &str) -> Result<Request, RequestError> {
        Ok(Request::Complete {
            method: method.to_string(),
            path: path.to_string(),
        })
    }

    #[test]
    fn request_heads() {
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        let rows: &[(&str, &[u8], Result<Request, RequestError>)] = &[
            (
                "get",
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                complete("GET", "/metrics"),
            ),
            (
                "http10_lf_only",
                b"GET /metrics HTTP/1.0\n\n",
                complete("GET", "/metrics"),
            ),
            (
                "query_dropped",
                b"GET /metrics?x=1 HTTP/1.1\r\n\r\n",
                complete("GET", "/metrics"),
            ),
            (
                "post",
                b"POST /metrics HTTP/1.1\r\n\r\n",
                complete("POST", "/metrics"),
            ),
            ("partial", b"GET /metr", Ok(Request::Incomplete)),
            ("method_only", b"GE", Ok(Request::Incomplete)),
            ("empty", b"", Ok(Request::Incomplete)),
            (
                "http2_preface",
                b"PRI * HTTP/2.0\r\n\r\n",
                Err(RequestError::BadRequest),
            ),
            ("binary", b"\x16\x03\x01", Err(RequestError::BadRequest)),
            (
                "no_version",
                b"GET /metrics\r\n\r\n",
                Err(RequestError::BadRequest),
            ),
            ("too_large", big.as_bytes(), Err(RequestError::TooLarge)),
            (
                "method_at_the_limit",
                b"ABCDEFGHIJKLMNOP /metrics HTTP/1.1\r\n\r\n",
                complete("ABCDEFGHIJKLMNOP", "/metrics"),
            ),
            (
                // Found by the fuzzer: its 17-byte prefix was refused while the whole was accepted.
                "method_over_the_limit",
                b"ABCDEFGHIJKLMNOPQ /metrics HTTP/1.1\r\n\r\n",
                Err(RequestError::BadRequest),
            ),
            (
                "method_over_the_limit_incomplete",
                b"ABCDEFGHIJKLMNOPQ",
                Err(RequestError::BadRequest),
            ),
        ];
        for (row, input, want) in rows {
            assert_eq!(&parse_request(input), want, "{row}");
        }
    }

    #[test]
    fn parse_is_the_same_for_every_prefix() {
        // A prefix of a good request is never an error (the server must keep reading).
        let req = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        for i in 0..req.len() {
            assert_eq!(
                parse_request(&req[..i]),
                Ok(Request::Incomplete),
                "prefix {i}"
            );
        }
    }

    #[test]
    fn responses() {
        let rows: &[(&str, Result<Request, RequestError>, &str, bool)] = &[
            (
                "ok",
                complete("GET", "/metrics"),
                "HTTP/1.1 200 OK\r\n",
                true,
            ),
            (
                "head",
                complete("HEAD", "/metrics"),
                "HTTP/1.1 200 OK\r\n",
                false,
            ),
            (
                "post",
                complete("POST", "/metrics"),
                "HTTP/1.1 405 Method Not Allowed\r\n",
                false,
            ),
            (
                "other_path",
                complete("GET", "/"),
                "HTTP/1.1 404 Not Found\r\n",
                false,
            ),
            (
                "timeout",
                Ok(Request::Incomplete),
                "HTTP/1.1 408 Request Timeout\r\n",
                false,
            ),
            ("large", Err(RequestError::TooLarge), "HTTP/1.1 431 ", false),
        ];
        for (row, parsed, status, has_body) in rows {
            let out = String::from_utf8(respond(parsed.clone(), || "BODY".to_string())).unwrap();
            assert!(out.starts_with(status), "{row}: {out}");
            assert_eq!(out.ends_with("BODY"), *has_body, "{row}: {out}");
            assert!(out.contains("Connection: close\r\n"), "{row}");
        }
        let head =
            String::from_utf8(respond(complete("HEAD", "/metrics"), || "BODY".into())).unwrap();
        assert!(head.contains("Content-Length: 4\r\n"), "{head}");
        let post = String::from_utf8(respond(complete("PUT", "/metrics"), String::new)).unwrap();
        assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
    }
}
