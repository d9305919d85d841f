//! Blocking SMTP peers for end-to-end tests: a line-oriented client and a scriptable next hop,
//! both on real sockets on 127.0.0.1. Read timeouts are only a failsafe.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Failsafe so a broken relay fails a test instead of hanging it.
pub const FAILSAFE: Duration = Duration::from_secs(20);

/// A blocking SMTP client.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> (Client, String) {
        let s = TcpStream::connect(addr).expect("connect to relay");
        s.set_read_timeout(Some(FAILSAFE)).unwrap();
        let mut c = Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        let greeting = c.reply();
        (c, greeting)
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to relay");
    }

    /// Sends one command line and returns the (possibly multi-line) reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Reads one reply (all lines joined with `\n`); empty on close.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return all,
                Ok(_) => {}
            }
            let done = line.as_bytes().get(3) != Some(&b'-');
            all.push_str(line.trim_end());
            if done {
                return all;
            }
            all.push('\n');
        }
    }

    /// Sends a whole message with DATA (content must be CRLF and dot-stuffed by the caller)
    /// and returns the end-of-data reply.
    pub fn data(&mut self, stuffed: &[u8]) -> String {
        let r = self.cmd("DATA");
        assert!(r.starts_with("354"), "DATA: {r}");
        self.send(stuffed);
        if !stuffed.ends_with(b"\r\n") {
            self.send(b"\r\n");
        }
        self.send(b".\r\n");
        self.reply()
    }

    /// Whether the relay closed the connection (reads EOF).
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }
}

/// What a scripted next hop does with the message content.
#[derive(Clone, Copy, Debug)]
pub enum HopScript {
    /// Accept everything (no CHUNKING offered: the relay must use DATA).
    AcceptData,
    /// Close the connection after this many content bytes.
    DropAfter(usize),
}

/// A single-threaded blocking next hop: one connection at a time, reports each message's
/// content over a channel.
pub fn scripted_next_hop(script: HopScript) -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            thread::spawn(move || serve(stream, script, tx));
        }
    });
    (addr, rx)
}

fn serve(stream: TcpStream, script: HopScript, tx: mpsc::Sender<Vec<u8>>) {
    stream.set_read_timeout(Some(FAILSAFE)).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let _ = w.write_all(b"220 hop.test ESMTP\r\n");
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-hop.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 ok\r\n",
            "QUIT" => {
                let _ = w.write_all(b"221 2.0.0 bye\r\n");
                return;
            }
            "DATA" => {
                let _ = w.write_all(b"354 go\r\n");
                let mut content = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
                        return;
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    let l = if l.starts_with(b"..") {
                        &l[1..]
                    } else {
                        &l[..]
                    };
                    content.extend_from_slice(l);
                    if let HopScript::DropAfter(n) = script {
                        if content.len() >= n {
                            return; // drop the connection mid-DATA
                        }
                    }
                }
                let _ = tx.send(content);
                b"250 2.0.0 queued\r\n"
            }
            _ => b"502 5.5.1 unknown\r\n",
        };
        if w.write_all(reply).is_err() {
            return;
        }
    }
}
