//! A test hook: a transport that damages, drops and duplicates what passes through it in
//! both directions, or goes dead after a number of requests, so the suite can show that
//! retransmission leaves results unchanged and that a dead link ends the run.

use std::fmt;
use std::time::Instant;

use anyhow::Result;

use super::link::{Received, Transport};

/// What the hook does to the link.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Probability that a send or a received chunk is tampered with.
    pub rate: f64,
    /// After this many sends nothing passes any more, either way.
    pub cut_after: Option<u64>,
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.0}% of transfers tampered with", self.rate * 100.0)?;
        if let Some(n) = self.cut_after {
            write!(f, ", cut after {n} sends")?;
        }
        Ok(())
    }
}

pub struct Faulty {
    inner: Box<dyn Transport>,
    faults: Faults,
    sends: u64,
    state: u64,
}

impl Faulty {
    pub fn new(inner: Box<dyn Transport>, faults: Faults, seed: u64) -> Self {
        Faulty {
            inner,
            faults,
            sends: 0,
            state: seed | 1,
        }
    }

    /// xorshift64: reproducible, and no dependency for a test hook.
    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn strikes(&mut self) -> bool {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        unit < self.faults.rate
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn cut(&self) -> bool {
        self.faults.cut_after.is_some_and(|n| self.sends > n)
    }

    /// `bytes` as the faulty wire carries them: damaged, cut, lost or doubled.
    fn tamper(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.cut() {
            return Vec::new();
        }
        if bytes.is_empty() || !self.strikes() {
            return bytes.to_vec();
        }
        let mut out = bytes.to_vec();
        match self.below(4) {
            0 => out.clear(),
            1 => {
                let i = self.below(out.len());
                out[i] ^= 1 << self.below(8);
            }
            2 => out.truncate(self.below(out.len())),
            _ => out.extend_from_slice(bytes),
        }
        out
    }
}

impl Transport for Faulty {
    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.sends += 1;
        let wire = self.tamper(bytes);
        self.inner.send(&wire)
    }

    fn receive(&mut self, deadline: Instant) -> Result<Received> {
        let mut received = self.inner.receive(deadline)?;
        received.link = self.tamper(&received.link);
        if self.cut() {
            received.log.clear();
        }
        Ok(received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wire that hands back what was sent on it.
    struct Loopback(Vec<u8>);
    impl Transport for Loopback {
        fn send(&mut self, bytes: &[u8]) -> Result<()> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
        fn receive(&mut self, _: Instant) -> Result<Received> {
            Ok(Received {
                link: std::mem::take(&mut self.0),
                log: Vec::new(),
            })
        }
    }

    fn faulty(rate: f64, cut_after: Option<u64>) -> Faulty {
        let faults = Faults { rate, cut_after };
        Faulty::new(Box::new(Loopback(Vec::new())), faults, 7)
    }

    #[test]
    fn a_rate_of_one_tampers_with_every_send_and_zero_with_none() {
        let mut always = faulty(1.0, None);
        let frame = [0u8, 5, 6, 7, 0];
        let mut changed = 0;
        for _ in 0..50 {
            always.send(&frame).unwrap();
            let got = always.inner.receive(Instant::now()).unwrap().link;
            changed += usize::from(got != frame);
        }
        assert_eq!(changed, 50);
        let mut never = faulty(0.0, None);
        never.send(&frame).unwrap();
        assert_eq!(never.receive(Instant::now()).unwrap().link, frame);
    }

    #[test]
    fn after_the_cut_nothing_passes() {
        let mut link = faulty(0.0, Some(2));
        for expected in [true, true, false, false] {
            link.send(&[1, 2, 3]).unwrap();
            let got = link.inner.receive(Instant::now()).unwrap().link;
            assert_eq!(!got.is_empty(), expected);
        }
    }
}
