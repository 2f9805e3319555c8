//! Inference on every blob the reader accepts: the microcontroller's safety promise is that
//! after `Model::parse` says yes, `Model::run` with buffers sized from the model cannot
//! fail, panic or read out of bounds, whatever the blob's bytes.
//!
//! The CRC is always made right (so every mutation reaches the structural checks), and the
//! bytes after `total_len` are the input image.
#![no_main]

use cbam_core::{format, Model, Observer, OpCode};
use libfuzzer_sys::fuzz_target;

/// Arenas above this are skipped: a 64 MiB buffer per input tests the allocator, not the core.
const MAX_ARENA: usize = 1 << 26;

/// Counts the hooks a run calls, to check every op ran once and in order.
#[derive(Default)]
struct Count {
    started: usize,
    ended: usize,
}

impl Observer for Count {
    fn op_start(&mut self, index: usize, _: OpCode) {
        assert_eq!(index, self.started, "ops start in table order");
        self.started += 1;
    }

    fn op_end(&mut self, index: usize, _: OpCode, _: &[i8]) {
        assert_eq!(index, self.ended, "ops end in table order");
        self.ended += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut blob = data.to_vec();
    if format::seal_crc(&mut blob).is_none() {
        return;
    }
    let Ok(model) = Model::parse(&blob) else {
        return;
    };
    if model.arena_size() > MAX_ARENA {
        return;
    }
    let total = format::HeaderFields::read(&blob).map_or(0, |h| h.total_len as usize);
    let tail = blob.get(total..).unwrap_or_default();
    let input: Vec<i8> = (0..model.input().len())
        .map(|i| tail.get(i % tail.len().max(1)).map_or(i as i8, |&b| b as i8))
        .collect();
    let mut arena = vec![0u8; model.arena_size()];
    let mut output = vec![0i8; model.output().len()];
    let mut count = Count::default();
    model
        .run_observed(&mut arena, &input, &mut output, &mut count)
        .expect("a parsed model runs with buffers sized from it");
    assert_eq!((count.started, count.ended), (model.n_ops(), model.n_ops()));
    // The arena holds no state between runs: a dirty arena gives the same logits.
    arena.fill(0xA5);
    let mut again = vec![0i8; output.len()];
    model
        .run(&mut arena, &input, &mut again)
        .expect("a parsed model runs twice");
    assert_eq!(output, again, "a run depends only on the model and the input");
});
