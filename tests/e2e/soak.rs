//! Fault soak (issue 9): a few thousand messages over many sessions while the next hop
//! (seeded) tempfails, rejects, drops the connection mid-message and stalls, and clients
//! vanish mid-message. Then every message is accounted for by its Message-ID: each one the
//! client heard `250` for was delivered exactly once and byte-exact after the relay's own
//! fields; none that heard `4xx`/`5xx`, lost its connection or was abandoned was delivered.

use std::collections::HashMap;
use std::net::IpAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::peer::{
    dot_stuff, message_id, start_relay, strip_relay_fields, Client, Faults, Hop, Rng,
};

use conbool::config::Cidr;

const TRUSTED: [u8; 4] = [127, 0, 0, 1];
const MESSAGES: usize = 3000;
const THREADS: usize = 16;
/// The fault schedule's seed; `CONBOOL_SOAK_SEED=<n>` explores others.
fn seed() -> u64 {
    std::env::var("CONBOOL_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0009)
}
/// Percent of messages the client abandons halfway (closes the connection).
const CLIENT_VANISH_PCT: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Outcome {
    /// The relay said `250` at the end of the message.
    Accepted,
    /// A `4xx` reply (at RCPT, DATA, a chunk or the end).
    Tempfailed,
    /// A `5xx` reply.
    Rejected,
    /// The relay closed the connection before a final reply.
    Dropped,
    /// The client vanished mid-message.
    Disconnected,
}

struct Sent {
    id: String,
    content: Vec<u8>,
    outcome: Outcome,
    /// From MAIL to the final reply (or the vanishing).
    took: Duration,
}

/// A message with a unique Message-ID: CRLF throughout, some lines starting with a dot,
/// some longer than 1000 bytes, sizes from a few hundred bytes to a few hundred kB.
fn build_message(rng: &mut Rng, n: usize) -> (String, Vec<u8>) {
    let id = format!("soak-{n}@e2e.test");
    let size = match rng.below(100) {
        0 => 32_000 + rng.below(200_000),
        1..=14 => 3_000 + rng.below(29_000),
        _ => 100 + rng.below(2_900),
    } as usize;
    let mut m = format!(
        "Message-ID: <{id}>\r\nFrom: Soak <soak@example.com>\r\nTo: v@example.com\r\n\
         Subject: soak {n}\r\n\r\n"
    )
    .into_bytes();
    while m.len() < size {
        match rng.below(20) {
            0 => m.extend_from_slice(b".a line that starts with a dot\r\n"),
            1 => m.extend_from_slice(b".\r\n"),
            2 => {
                m.extend(std::iter::repeat(b'L').take(1000 + rng.below(1000) as usize));
                m.extend_from_slice(b"\r\n");
            }
            _ => m.extend_from_slice(format!("line {} of message {n}\r\n", m.len()).as_bytes()),
        }
    }
    (id, m)
}

fn class(reply: &str) -> Outcome {
    match reply.as_bytes().first() {
        Some(b'2') => Outcome::Accepted,
        Some(b'4') => Outcome::Tempfailed,
        Some(b'5') => Outcome::Rejected,
        _ => Outcome::Dropped,
    }
}

/// Sends one message on an open session; `None` when the session is over afterwards.
fn send_one(
    c: &mut Client,
    rng: &mut Rng,
    pipelining: bool,
    id: String,
    content: Vec<u8>,
) -> (Sent, bool) {
    let vanish = rng.chance(CLIENT_VANISH_PCT);
    let bdat = rng.chance(30);
    let started = Instant::now();
    let done = |outcome, alive| {
        (
            Sent {
                id: id.clone(),
                content: content.clone(),
                outcome,
                took: started.elapsed(),
            },
            alive,
        )
    };
    let envelope = "MAIL FROM:<soak@example.com>\r\nRCPT TO:<v@example.com>\r\n";
    let (mail, rcpt) = if pipelining {
        // RFC 2920: the envelope in one write, replies read afterwards.
        if !c.try_send(envelope.as_bytes()) {
            return done(Outcome::Dropped, false);
        }
        (c.reply(), c.reply())
    } else {
        let mail = c.cmd("MAIL FROM:<soak@example.com>");
        let rcpt = if mail.starts_with("250") {
            c.cmd("RCPT TO:<v@example.com>")
        } else {
            String::new()
        };
        (mail, rcpt)
    };
    if !mail.starts_with("250") {
        return done(class(&mail), false);
    }
    let r = rcpt;
    if !r.starts_with("250") {
        let outcome = class(&r);
        let alive = outcome != Outcome::Dropped && c.cmd("RSET").starts_with("250");
        return done(outcome, alive);
    }
    if bdat {
        let cuts = 1 + rng.below(3) as usize;
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut rest = &content[..];
        for _ in 1..cuts {
            let at = rng.below(rest.len() as u64 + 1) as usize;
            chunks.push(&rest[..at]);
            rest = &rest[at..];
        }
        chunks.push(rest);
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            if vanish && last {
                // Promise the rest, send half of it, disappear.
                c.send(format!("BDAT {} LAST\r\n", chunk.len()).as_bytes());
                let _ = c.try_send(&chunk[..chunk.len() / 2]);
                return done(Outcome::Disconnected, false);
            }
            let r = c.bdat(chunk, last);
            if !r.starts_with("250") {
                let outcome = class(&r);
                let alive = outcome != Outcome::Dropped && c.cmd("RSET").starts_with("250");
                return done(outcome, alive);
            }
            if last {
                return done(Outcome::Accepted, true);
            }
        }
        unreachable!("the last chunk returns");
    }
    let r = c.cmd("DATA");
    if !r.starts_with("354") {
        let outcome = class(&r);
        return done(outcome, outcome != Outcome::Dropped);
    }
    let stuffed = dot_stuff(&content);
    if vanish {
        let _ = c.try_send(&stuffed[..stuffed.len() / 2]);
        return done(Outcome::Disconnected, false);
    }
    if !c.try_send(&stuffed) || !c.try_send(b".\r\n") {
        return done(Outcome::Dropped, false);
    }
    let r = c.reply();
    let outcome = class(&r);
    done(outcome, outcome != Outcome::Dropped)
}

/// Even threads connect from the trusted 127.0.0.1 (route known at MAIL), odd ones from an
/// untrusted address (route chosen at the first RCPT); half of each pipeline the envelope.
fn client_thread(addr: std::net::SocketAddr, t: usize) -> Vec<Sent> {
    let mut rng = Rng::new(seed() ^ ((t as u64 + 1) << 32));
    let from = if t % 2 == 0 {
        IpAddr::from(TRUSTED)
    } else {
        IpAddr::from([127, 0, 3, t as u8])
    };
    let pipelining = t % 4 >= 2;
    let mut sent = Vec::new();
    let mut numbers = (t..MESSAGES).step_by(THREADS).peekable();
    while numbers.peek().is_some() {
        let (mut c, greeting) = Client::connect_from(addr, from);
        assert!(greeting.starts_with("220 "), "thread {t}: {greeting}");
        assert!(c.cmd("EHLO soak.test").starts_with("250"));
        let per_session = 1 + rng.below(10);
        let mut alive = true;
        for _ in 0..per_session {
            let Some(n) = numbers.next() else { break };
            let (id, content) = build_message(&mut rng, n);
            let (s, still) = send_one(&mut c, &mut rng, pipelining, id, content);
            sent.push(s);
            alive = still;
            if !alive {
                break;
            }
        }
        if alive {
            c.cmd("QUIT");
        } else {
            c.vanish();
        }
    }
    sent
}

#[test]
fn every_message_is_accounted_for_under_faults() {
    let hop = Hop::start(Faults {
        seed: seed(),
        tempfail_pct: 5,
        reject_pct: 3,
        drop_pct: 3,
        stall_pct: 3,
        stall_ms: 150,
        mixed_chunking: true,
        ..Faults::NONE
    });
    let relay = start_relay(hop.addr, |c| {
        c.limits.max_connections_per_ip = 1000;
        c.tenants[0].trusted_networks = vec![Cidr {
            addr: IpAddr::from(TRUSTED),
            prefix: 32,
        }];
    });
    let addr = relay.local_addrs[0];
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| thread::spawn(move || client_thread(addr, t)))
        .collect();
    let sent: Vec<Sent> = threads
        .into_iter()
        .flat_map(|h| h.join().expect("client thread"))
        .collect();
    let elapsed = started.elapsed();
    assert_eq!(sent.len(), MESSAGES);

    let mut delivered: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut without_id = 0;
    let hop_messages = hop.messages();
    for m in &hop_messages {
        match message_id(&m.content) {
            Some(id) => delivered.entry(id).or_default().push(m.content.clone()),
            None => without_id += 1,
        }
    }
    let mut counts: HashMap<Outcome, usize> = HashMap::new();
    let mut failures = Vec::new();
    for s in &sent {
        *counts.entry(s.outcome).or_default() += 1;
        let copies = delivered.remove(&s.id).unwrap_or_default();
        match (s.outcome, copies.len()) {
            (Outcome::Accepted, 1) => {
                if strip_relay_fields(&copies[0]) != Some(&s.content[..]) {
                    failures.push(format!("{}: delivered bytes differ", s.id));
                }
            }
            (Outcome::Accepted, n) => failures.push(format!("{}: accepted, delivered {n}×", s.id)),
            (other, 0) => {
                let _ = other;
            }
            (other, n) => failures.push(format!("{}: {other:?} but delivered {n}×", s.id)),
        }
    }
    for id in delivered.keys() {
        failures.push(format!("{id}: delivered but never sent"));
    }
    let get = |o| counts.get(&o).copied().unwrap_or(0);
    let h = hop.counts();
    eprintln!(
        "soak: seed {}, {MESSAGES} messages, {THREADS} threads, {elapsed:.2?}: accepted {}, tempfailed {}, \
         rejected {}, dropped {}, disconnected {}; delivered {} ({} without id); next hop: \
         {} connections, {} tempfailed, {} rejected, {} dropped mid-message, {} stalled, {} cut \
         short by the relay",
        seed(),
        get(Outcome::Accepted),
        get(Outcome::Tempfailed),
        get(Outcome::Rejected),
        get(Outcome::Dropped),
        get(Outcome::Disconnected),
        hop_messages.len(),
        without_id,
        h.connections,
        h.tempfailed,
        h.rejected,
        h.dropped,
        h.stalled,
        h.cut_short,
    );
    let mut took: Vec<Duration> = sent.iter().map(|s| s.took).collect();
    took.sort();
    let pct = |p: usize| took[(took.len() * p / 100).min(took.len() - 1)];
    eprintln!(
        "soak latency per message: p50 {:?}, p99 {:?}, max {:?}; {} over 500 ms",
        pct(50),
        pct(99),
        took[took.len() - 1],
        took.iter()
            .filter(|t| **t > Duration::from_millis(500))
            .count()
    );
    assert_eq!(without_id, 0);
    assert!(
        failures.is_empty(),
        "{} messages unaccounted:\n{}",
        failures.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Each fault happened, so the schedule tested what it claims.
    assert!(get(Outcome::Accepted) > MESSAGES / 2);
    assert!(get(Outcome::Tempfailed) > 0 && get(Outcome::Rejected) > 0);
    assert!(get(Outcome::Disconnected) > 0 && h.dropped > 0 && h.stalled > 0);
    relay.stop().unwrap();
}
