//! One frame's layers over several threads, for latency: the core cuts each row-local op
//! into row shares ([`cbam_core::Model::run_split`]) and a spinning pool of this process
//! runs them. The core stays single-threaded; the output is the same bits as a one-thread
//! run.

use std::sync::Mutex;

use anyhow::{Context, Result};
use cbam_core::{Model, Observer, RowShare, Split, MAX_SHARES};

use crate::spin_pool::SpinPool;

/// The least work, in multiply-accumulates, worth handing to another thread: a few
/// microseconds of kernel time, well above a join between spinning threads.
const MIN_SHARE_WORK: u64 = 16 * 1024;

/// The fewest output pixels per share: each share of a convolution rearranges all of its
/// weights, which costs about as much as 1/pixels of its multiply-accumulates.
const MIN_SHARE_PIXELS: usize = 32;

/// Threads that run each op of one inference together (one thread: plain runs).
pub struct LayerThreads {
    pool: SpinPool,
    threads: usize,
}

impl LayerThreads {
    /// `threads` threads in all, the caller's included; no more than an op has shares.
    pub fn new(threads: usize) -> Result<Self> {
        let threads = threads.clamp(1, MAX_SHARES);
        let pool = SpinPool::new(threads).context("starting the threads that split each layer")?;
        Ok(Self { pool, threads })
    }

    /// [`Model::run`] with each layer's rows split over the threads.
    pub fn run(
        &self,
        model: &Model,
        arena: &mut [u8],
        input: &[i8],
        output: &mut [i8],
    ) -> Result<(), cbam_core::Error> {
        self.run_observed(model, arena, input, output, &mut cbam_core::NoObserver)
    }

    /// [`Model::run_observed`] with each layer's rows split over the threads; the observer
    /// is called on the calling thread.
    pub fn run_observed(
        &self,
        model: &Model,
        arena: &mut [u8],
        input: &[i8],
        output: &mut [i8],
        observer: &mut impl Observer,
    ) -> Result<(), cbam_core::Error> {
        if self.threads == 1 {
            return model.run_observed(arena, input, output, observer);
        }
        let split = Split {
            shares: self.threads,
            min_share_work: MIN_SHARE_WORK,
            min_share_pixels: MIN_SHARE_PIXELS,
        };
        let mut exec = |shares: &mut [RowShare<'_>]| {
            // A lock per share hands each one to the thread that claims it; the core
            // reports any share that did not run (a panicking task's).
            let n = shares.len();
            let mut each = shares.iter_mut();
            let cells: [Mutex<Option<&mut RowShare<'_>>>; MAX_SHARES] =
                std::array::from_fn(|_| Mutex::new(each.next()));
            self.pool.run(n, &|i| {
                if let Some(mut cell) = cells.get(i).and_then(|c| c.lock().ok()) {
                    if let Some(share) = cell.as_deref_mut() {
                        share.run();
                    }
                }
            });
        };
        model.run_split_observed(arena, input, output, split, &mut exec, observer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob() -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fmnist_cbam.cbam");
        std::fs::read(path).expect("the committed example blob")
    }

    #[test]
    fn split_runs_match_one_thread_bit_for_bit() {
        let bytes = blob();
        let model = Model::parse(&bytes).unwrap();
        let one = LayerThreads::new(1).unwrap();
        let mut arena = vec![0u8; model.arena_size()];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for threads in [2, 3, 4] {
            let many = LayerThreads::new(threads).unwrap();
            let mut split_arena = vec![0u8; model.arena_size()];
            for _ in 0..4 {
                let input: Vec<i8> = (0..model.input().len())
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as i8
                    })
                    .collect();
                let mut want = vec![0i8; model.output().len()];
                let mut got = vec![0i8; model.output().len()];
                one.run(&model, &mut arena, &input, &mut want).unwrap();
                many.run(&model, &mut split_arena, &input, &mut got)
                    .unwrap();
                assert_eq!(got, want, "{threads} threads");
            }
        }
    }
}
