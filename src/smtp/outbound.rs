//! A queue of byte chunks waiting to be written to a peer: replies, commands and message
//! pieces, kept as `Bytes` so message data is never copied on the way out.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Bytes;

/// Bytes queued for one peer, in order.
#[derive(Default, Debug)]
pub struct Outbound {
    chunks: VecDeque<Bytes>,
    len: usize,
    written: u64,
}

impl Outbound {
    /// An empty queue.
    pub fn new() -> Outbound {
        Outbound::default()
    }

    /// Queues a chunk (empty chunks are dropped).
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Queues a copy of `bytes`.
    pub fn push_copy(&mut self, bytes: &[u8]) {
        self.push(Bytes::copy_from_slice(bytes));
    }

    /// Bytes written so far (the sum of every [`Outbound::advance`]): lets an owner see
    /// whether the peer is still taking bytes.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Total bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `slices` with the queued chunks, front first; returns how many were filled.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    /// The first chunk, if any.
    pub fn front(&self) -> Option<&Bytes> {
        self.chunks.front()
    }

    /// Drops `n` bytes from the front (after they were written).
    pub fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.len);
        self.written += n.min(self.len) as u64;
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
    }

    /// Moves every chunk out, in order (for handing plaintext to a TLS writer).
    pub fn drain(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        self.len = 0;
        self.chunks.drain(..)
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// Copies everything queued into one vector (tests and small replies).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for c in &self.chunks {
            v.extend_from_slice(c);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_across_chunks() {
        let mut o = Outbound::new();
        o.push(Bytes::from_static(b"abc"));
        o.push(Bytes::from_static(b"defg"));
        o.advance(4);
        assert_eq!(o.len(), 3);
        assert_eq!(o.to_vec(), b"efg");
        o.advance(3);
        assert!(o.is_empty());
        assert!(o.front().is_none());
    }
}
