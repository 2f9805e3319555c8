//! A test hook: a transport that damages, drops and duplicates what passes through it in
//! both directions, so the suite can show that retransmission leaves results unchanged.

use std::time::Instant;

use anyhow::Result;

use super::link::{Received, Transport};

pub struct Faulty {
    inner: Box<dyn Transport>,
    /// Probability that a send or a received chunk is tampered with.
    rate: f64,
    state: u64,
}

impl Faulty {
    pub fn new(inner: Box<dyn Transport>, rate: f64, seed: u64) -> Self {
        Faulty {
            inner,
            rate,
            state: seed | 1,
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn strikes(&mut self) -> bool {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        unit < self.rate
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// `bytes` as the faulty wire carries them: damaged, cut, lost or doubled.
    fn tamper(&mut self, bytes: &[u8]) -> Vec<u8> {
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
        let wire = self.tamper(bytes);
        self.inner.send(&wire)
    }

    fn receive(&mut self, deadline: Instant) -> Result<Received> {
        let mut received = self.inner.receive(deadline)?;
        received.link = self.tamper(&received.link);
        Ok(received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<u8>);
    impl Transport for Echo {
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

    #[test]
    fn a_rate_of_one_tampers_with_everything_and_zero_with_nothing() {
        let mut always = Faulty::new(Box::new(Echo(Vec::new())), 1.0, 7);
        let frame = [0u8, 5, 6, 7, 0];
        let mut changed = 0;
        for _ in 0..50 {
            always.send(&frame).unwrap();
            let got = always.inner.receive(Instant::now()).unwrap().link;
            changed += usize::from(got != frame);
        }
        assert_eq!(changed, 50);
        let mut never = Faulty::new(Box::new(Echo(Vec::new())), 0.0, 7);
        never.send(&frame).unwrap();
        assert_eq!(never.receive(Instant::now()).unwrap().link, frame);
    }
}
