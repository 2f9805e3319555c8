//! Any byte string: `Model::parse` must accept or reject it, and an accepted model must run,
//! without a panic or an out-of-bounds access.
#![no_main]

use cbam_core::{format, Model};
use libfuzzer_sys::fuzz_target;

/// Bigger arenas than this are skipped: they test the allocator, not the core.
const MAX_ARENA: usize = 1 << 22;

fn exercise(bytes: &[u8]) {
    let Ok(model) = Model::parse(bytes) else {
        return;
    };
    for i in 0..model.n_ops() {
        let _ = model.op(i);
    }
    let _ = model.labels().count();
    if model.arena_size() > MAX_ARENA || model.input().len() > MAX_ARENA {
        return;
    }
    let mut arena = vec![0u8; model.arena_size()];
    let input: Vec<i8> = (0..model.input().len()).map(|i| i as i8).collect();
    let mut output = vec![0i8; model.output().len()];
    let _ = model.run(&mut arena, &input, &mut output);
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    // Also with the CRC made right, so mutations reach the checks behind it.
    let mut fixed = data.to_vec();
    if format::seal_crc(&mut fixed).is_some() {
        exercise(&fixed);
    }
});
