//! One test per malformed-blob class, each expecting its own error variant, and a seeded
//! mutation fuzz that asserts parse + run never panic.

use super::*;
use crate::format::{
    seal_crc, AddWords, CbamWords, ChannelPoolWords, Conv2dWords, GlobalAvgPoolWords, HeaderFields,
    LutWords, NoWords, OpParams,
};
use crate::kernels::test_support::Rng;
use crate::kernels::ConvGeometry;
use crate::testblob::{
    act_words, all_ops_blob, conv_params, patch_header, patch_op, patch_tensor, patch_u16,
    patch_u32, patch_word, read_op, read_tensor, sigmoid_lut, tiny_cbam_blob, word, BlobBuilder,
};
use std::vec::Vec;

// tiny_cbam_blob: tensors 0 input, 1 feat, 2 attended (alias of 1), 3 pooled, 4 logits;
// ops 0 conv, 1 cbam, 2 global avg pool, 3 fully connected.

fn patched(f: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
    let mut blob = tiny_cbam_blob();
    f(&mut blob);
    seal_crc(&mut blob);
    Model::parse(&blob).map(|_| ())
}

#[test]
fn valid_blob_parses_and_ignores_trailing_padding() {
    let mut blob = tiny_cbam_blob();
    assert!(Model::parse(&blob).is_ok());
    blob.extend_from_slice(&[0xFF; 37]);
    assert!(Model::parse(&blob).is_ok());
}

#[test]
fn the_crc_names_the_blob() {
    let blob = tiny_cbam_blob();
    let model = Model::parse(&blob).unwrap();
    assert_eq!(model.crc(), crate::crc32(&blob[16..]));
}

#[test]
fn truncated() {
    let blob = tiny_cbam_blob();
    assert_eq!(
        Model::parse(&blob[..40]).unwrap_err(),
        Error::Truncated {
            needed: 64,
            found: 40
        }
    );
    let n = blob.len();
    assert_eq!(
        Model::parse(&blob[..n - 1]).unwrap_err(),
        Error::Truncated {
            needed: n,
            found: n - 1
        }
    );
}

#[test]
fn bad_magic() {
    assert_eq!(
        patched(|b| patch_header(b, |h| h.magic[0] = b'X')),
        Err(Error::BadMagic)
    );
}

#[test]
fn wrong_version() {
    assert_eq!(
        patched(|b| patch_header(b, |h| h.version = crate::format::VERSION + 1)),
        Err(Error::UnsupportedVersion {
            found: crate::format::VERSION + 1
        })
    );
    assert_eq!(
        patched(|b| patch_header(b, |h| h.version = 0)),
        Err(Error::UnsupportedVersion { found: 0 })
    );
}

#[test]
fn version_1_blobs_still_run_and_their_reserved_words_mean_nothing() {
    let blob = tiny_cbam_blob();
    let run = |blob: &[u8]| {
        let model = Model::parse(blob).unwrap();
        let mut arena = std::vec![0u8; model.arena_size()];
        let input: Vec<i8> = (0..model.input().len())
            .map(|i| (i * 7 % 251) as i8)
            .collect();
        let mut out = std::vec![0i8; model.output().len()];
        model.run(&mut arena, &input, &mut out).unwrap();
        out
    };
    let mut old = blob.clone();
    // A version-1 writer may have left anything in what was reserved then.
    patch_header(&mut old, |h| {
        h.version = 1;
        h.schedule_off = 12345;
    });
    patch_tensor(&mut old, 1, |t| t.band_rows = 3);
    seal_crc(&mut old);
    assert_eq!(run(&old), run(&blob));
}

#[test]
fn wrong_header_len() {
    assert_eq!(
        patched(|b| patch_header(b, |h| h.header_len = 48)),
        Err(Error::BadHeaderLen { found: 48 })
    );
}

#[test]
fn total_len_below_header() {
    assert_eq!(
        patched(|b| patch_header(b, |h| h.total_len = 10)),
        Err(Error::BadTotalLen { found: 10 })
    );
}

#[test]
fn bad_crc() {
    let mut blob = tiny_cbam_blob();
    blob[100] ^= 0x10;
    assert!(matches!(Model::parse(&blob), Err(Error::BadCrc { .. })));
}

#[test]
fn offsets_past_the_end() {
    let err = patched(|b| {
        let len = b.len() as i32;
        patch_word(b, 0, word!(Conv2dWords, weights_off), len + 100);
    });
    assert!(
        matches!(
            err,
            Err(Error::OffsetOutOfBounds {
                what: "conv weights",
                ..
            })
        ),
        "{err:?}"
    );
    let err = patched(|b| patch_header(b, |h| h.tensors_off = u32::MAX - 8));
    assert!(
        matches!(
            err,
            Err(Error::OffsetOutOfBounds {
                what: "tensor table",
                ..
            })
        ),
        "{err:?}"
    );
    let err = patched(|b| {
        let len = b.len() as u32;
        patch_op(b, 3, |o| o.params_off = len - 8);
    });
    assert!(
        matches!(
            err,
            Err(Error::OffsetOutOfBounds {
                what: "op params",
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn shapes_that_overflow_usize() {
    // A conv whose window is 2^30 x 2^30 with 2^30 padding still yields a 1x1 output, but
    // its weight count 2^30 * 2^30 * 8 * 8 overflows a 64-bit usize.
    let mut rng = Rng::new(5);
    let mut b = BlobBuilder::new();
    let t0 = b.tensor((2, 2, 8), 0.1, 0);
    let t1 = b.tensor((1, 1, 8), 0.1, 0);
    b.input = t0;
    b.output = t1;
    let p = conv_params(
        &mut b,
        &mut rng,
        ConvGeometry::square(2, 0),
        8,
        8,
        (-128, 127),
    );
    b.op(&[t0], t1, OpParams::Conv2d(p));
    let mut blob = b.build();
    assert!(Model::parse(&blob).is_ok());
    for (w, v) in [
        (word!(Conv2dWords, kh), 1 << 30),
        (word!(Conv2dWords, kw), 1 << 30),
        (word!(Conv2dWords, stride_h), i32::MAX),
        (word!(Conv2dWords, stride_w), i32::MAX),
        (word!(Conv2dWords, pad_top), 1 << 30),
        (word!(Conv2dWords, pad_left), 1 << 30),
        (word!(Conv2dWords, pad_bottom), 1 << 30),
        (word!(Conv2dWords, pad_right), 1 << 30),
    ] {
        patch_word(&mut blob, 0, w, v);
    }
    seal_crc(&mut blob);
    assert_eq!(
        Model::parse(&blob).unwrap_err(),
        Error::ShapeOverflow {
            what: "conv weights"
        }
    );
}

#[test]
fn arena_too_small_for_a_tensor() {
    let err = patched(|b| {
        patch_header(b, |h| {
            h.arena_size = 100;
            h.scratch_off = 0;
            h.scratch_size = 0;
        })
    });
    assert_eq!(
        err,
        Err(Error::ArenaTooSmall {
            tensor: 0,
            needed: 784,
            arena_size: 100
        })
    );
}

#[test]
fn scratch_outside_arena() {
    assert_eq!(
        patched(|b| patch_header(b, |h| h.scratch_off = u32::MAX)),
        Err(Error::ScratchOutsideArena)
    );
}

#[test]
fn unknown_op() {
    assert_eq!(
        patched(|b| patch_op(b, 2, |o| o.code = 99)),
        Err(Error::UnknownOp { op: 2, code: 99 })
    );
}

#[test]
fn wrong_input_count() {
    assert_eq!(
        patched(|b| patch_op(b, 0, |o| o.n_inputs = 2)),
        Err(Error::BadInputCount { op: 0, found: 2 })
    );
}

#[test]
fn wrong_param_len() {
    assert_eq!(
        patched(|b| patch_op(b, 2, |o| o.params_len = 12)),
        Err(Error::BadParamLen {
            op: 2,
            expected: 8,
            found: 12
        })
    );
}

#[test]
fn bad_params() {
    let inverted_act = patched(|b| {
        patch_word(b, 0, word!(Conv2dWords, act.min), 5);
        patch_word(b, 0, word!(Conv2dWords, act.max), -5);
    });
    assert!(matches!(inverted_act, Err(Error::BadParams { op: 0, .. })));
    assert!(matches!(
        patched(|b| patch_word(b, 1, word!(CbamWords, order), 2)),
        Err(Error::BadParams { op: 1, .. })
    ));
    assert!(matches!(
        patched(|b| patch_word(b, 2, word!(GlobalAvgPoolWords, out.shift), 31)),
        Err(Error::BadParams { op: 2, .. })
    ));
    assert!(matches!(
        patched(|b| patch_word(b, 2, word!(GlobalAvgPoolWords, out.mult), -7)),
        Err(Error::BadParams { op: 2, .. })
    ));
    assert!(matches!(
        patched(|b| patch_word(b, 1, word!(CbamWords, k), 4)),
        Err(Error::BadParams { op: 1, .. })
    ));
}

#[test]
fn shape_mismatch() {
    // Stride 1 would make the conv output 28x28, not the stored 14x14.
    let err = patched(|b| patch_word(b, 0, word!(Conv2dWords, stride_h), 1));
    assert!(
        matches!(err, Err(Error::ShapeMismatch { op: 0, .. })),
        "{err:?}"
    );
}

#[test]
fn tensor_read_before_it_is_written() {
    let mut b = BlobBuilder::new();
    let t0 = b.tensor((2, 2, 3), 0.1, 0);
    let t1 = b.tensor((2, 2, 3), 0.1, 0);
    let t2 = b.tensor((2, 2, 3), 0.1, 0);
    b.input = t0;
    b.output = t2;
    let lut_off = b.i8s(&sigmoid_lut());
    b.op(&[t1], t2, OpParams::Sigmoid(LutWords { lut_off }));
    b.op(&[t0], t1, OpParams::Sigmoid(LutWords { lut_off }));
    assert_eq!(
        Model::parse(&b.build()).unwrap_err(),
        Error::TensorNotReady { op: 0, tensor: 1 }
    );
}

#[test]
fn overlapping_input_and_output() {
    let err = patched(|b| {
        let feat_off = read_tensor(b, 1).arena_off;
        patch_tensor(b, 3, |t| t.arena_off = feat_off);
    });
    assert_eq!(err, Err(Error::ArenaOverlap { op: 2 }));
}

#[test]
fn wrong_scratch_len() {
    let mut expected = 0;
    let err = patched(|b| {
        expected = read_op(b, 1).scratch_len as usize;
        patch_op(b, 1, |o| o.scratch_len += 1);
    });
    assert_eq!(
        err,
        Err(Error::BadScratch {
            op: 1,
            expected,
            found: expected + 1
        })
    );
}

#[test]
fn output_never_written() {
    assert_eq!(
        patched(|b| patch_header(b, |h| h.output_tensor = 0)),
        Err(Error::OutputNeverWritten)
    );
}

#[test]
fn metadata_not_utf8() {
    let err = patched(|b| {
        let meta_off = HeaderFields::read(b).unwrap().meta_off as usize;
        b[meta_off + 2] = 0xFF;
    });
    assert_eq!(err, Err(Error::BadMetadata));
}

#[test]
fn bad_tensor_records() {
    assert!(matches!(
        patched(|b| patch_tensor(b, 3, |t| t.zero_point = 300)),
        Err(Error::BadTensor {
            tensor: 3,
            reason: "zero_point outside -128..=127"
        })
    ));
    assert!(matches!(
        patched(|b| patch_tensor(b, 3, |t| t.full_c = 9)),
        Err(Error::BadTensor { tensor: 3, .. })
    ));
    assert!(matches!(
        patched(|b| patch_tensor(b, 3, |t| t.h = 0)),
        Err(Error::BadTensor { tensor: 3, .. })
    ));
    assert_eq!(
        patched(|b| patch_op(b, 0, |o| o.output = 50)),
        Err(Error::BadTensorIndex { tensor: 50 })
    );
}

/// input (2,2,4) -> 1x1 conv to the kept channels [0, 2] -> add scattering them back.
fn pruned_add_blob() -> Vec<u8> {
    let mut rng = Rng::new(9);
    let mut b = BlobBuilder::new();
    let t0 = b.tensor((2, 2, 4), 0.1, 1);
    let t1 = b.pruned_tensor((2, 2), &[0, 2], 4, 0.1, -3);
    let t2 = b.tensor((2, 2, 4), 0.1, 2);
    b.input = t0;
    b.output = t2;
    let p = conv_params(
        &mut b,
        &mut rng,
        ConvGeometry::square(1, 0),
        4,
        2,
        (-128, 127),
    );
    b.op(&[t0], t1, OpParams::Conv2d(p));
    let unit = |shift| crate::format::RequantWords {
        mult: 1 << 30,
        shift,
    };
    let p = AddWords {
        left_shift: 20,
        in1: unit(0),
        in2: unit(0),
        out: unit(-20),
        act: act_words((-128, 127)),
    };
    b.op(&[t0, t1], t2, OpParams::Add(p));
    b.build()
}

#[test]
fn kept_list_must_increase_below_full_c() {
    let good = pruned_add_blob();
    assert!(Model::parse(&good).is_ok());
    for list in [[2u16, 0], [0, 4], [1, 1]] {
        let mut blob = good.clone();
        let at = read_tensor(&blob, 1).kept_off as usize;
        patch_u16(&mut blob, at, list[0]);
        patch_u16(&mut blob, at + 2, list[1]);
        seal_crc(&mut blob);
        assert!(
            matches!(Model::parse(&blob), Err(Error::BadTensor { tensor: 1, .. })),
            "{list:?}"
        );
    }
}

/// input (3,3,5) -> CHANNEL_POOL `[max; mean]` -> (3,3,2), both of zero point 4.
fn channel_pool_blob() -> Vec<u8> {
    let mut b = BlobBuilder::new();
    let t0 = b.tensor((3, 3, 5), 0.1, 4);
    let t1 = b.tensor((3, 3, 2), 0.1, 4);
    b.input = t0;
    b.output = t1;
    let p = ChannelPoolWords {
        mean_channel: 1,
        max_channel: 0,
    };
    b.op(&[t0], t1, OpParams::ChannelPool(p));
    b.build()
}

#[test]
fn channel_pool_words_and_shapes_are_checked() {
    let good = channel_pool_blob();
    let model = Model::parse(&good).unwrap();
    let input: Vec<i8> = (0..45).map(|i| (i * 37 % 256) as u8 as i8).collect();
    let mut arena = vec![0u8; model.arena_size()];
    let mut out = [0i8; 18];
    model.run(&mut arena, &input, &mut out).unwrap();
    let p = crate::kernels::ChannelPoolParams {
        mean: Some(1),
        max: Some(0),
        zp: 4,
    };
    let mut want = [0i8; 18];
    let shape = crate::kernels::Shape::new(3, 3, 5);
    crate::kernels::test_support::channel_pool_reference(&p, (shape, &input), &mut want);
    assert_eq!(out, want);

    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut blob = good.clone();
        f(&mut blob);
        seal_crc(&mut blob);
        Model::parse(&blob).map(|_| ())
    };
    let mean = word!(ChannelPoolWords, mean_channel);
    let max = word!(ChannelPoolWords, max_channel);
    let reason = |r: Result<(), Error>| match r {
        Err(Error::BadParams { op: 0, reason }) => reason,
        other => panic!("expected bad parameters, got {other:?}"),
    };
    let reasons = [
        reason(with(&|b| patch_word(b, 0, mean, 2))),
        reason(with(&|b| {
            patch_word(b, 0, mean, -1);
            patch_word(b, 0, max, -1);
        })),
        reason(with(&|b| patch_word(b, 0, mean, 0))),
        reason(with(&|b| {
            patch_tensor(b, 1, |t| (t.c, t.full_c) = (1, 1));
            patch_word(b, 0, max, -1);
        })),
        reason(with(&|b| patch_tensor(b, 1, |t| t.zero_point = 5))),
    ];
    let distinct: std::collections::BTreeSet<_> = reasons.iter().collect();
    assert_eq!(distinct.len(), reasons.len(), "{reasons:?}");
    assert!(matches!(
        with(&|b| patch_tensor(b, 1, |t| (t.c, t.full_c) = (1, 1))),
        Err(Error::ShapeMismatch { op: 0, .. })
    ));
    assert!(matches!(
        with(&|b| patch_tensor(b, 1, |t| t.w = 2)),
        Err(Error::ShapeMismatch { op: 0, .. })
    ));
    // One statistic in output channel 0 is a valid op of its own.
    assert!(with(&|b| {
        patch_tensor(b, 1, |t| (t.c, t.full_c) = (1, 1));
        patch_word(b, 0, mean, -1);
    })
    .is_ok());
}

/// A chain of `n_ops` GLOBAL_MAX_POOL ops over 1x1x1 tensors, ping-ponging between two
/// arena bytes: the most ops (and tensors) a blob can hold, for the cost of validation.
fn long_chain_blob(n_ops: usize) -> Vec<u8> {
    let mut b = BlobBuilder::new();
    let mut prev = b.tensor((1, 1, 1), 0.1, 0);
    b.input = prev;
    for i in 0..n_ops {
        let t = if i == 0 {
            b.tensor((1, 1, 1), 0.1, 0)
        } else {
            b.alias_tensor(prev - 1, 0.1, 0)
        };
        b.op(&[prev], t, OpParams::GlobalMaxPool(NoWords {}));
        prev = t;
    }
    b.output = prev;
    b.build()
}

/// Validation is linear in ops: the largest op table a blob can hold (65,534 ops over
/// 65,535 tensors, the op order checked in 8 windows of tensors) parses and runs, and a
/// misordered last op is still caught. The parse time is printed (`--nocapture`).
#[test]
fn the_largest_op_table_parses_in_linear_time() {
    let n_ops = usize::from(u16::MAX) - 1;
    let blob = long_chain_blob(n_ops);
    let start = std::time::Instant::now();
    let model = Model::parse(&blob).unwrap();
    let took = start.elapsed();
    assert_eq!(model.n_ops(), n_ops);
    std::eprintln!("parsed {n_ops} ops in {took:?}");
    let mut arena = vec![0u8; model.arena_size()];
    let mut out = [0i8];
    model.run(&mut arena, &[42], &mut out).unwrap();
    assert_eq!(out, [42]);

    // The op order is still checked in the last window of tensors.
    let mut late = blob.clone();
    let last = n_ops - 1;
    patch_op(&mut late, last, |o| o.inputs[0] = o.output);
    seal_crc(&mut late);
    assert_eq!(
        Model::parse(&late).unwrap_err(),
        Error::TensorNotReady {
            op: last as u16,
            tensor: n_ops as u16
        }
    );
}

/// Interesting values for a corrupted 32-bit field.
fn corrupt_value(rng: &mut Rng, len: usize) -> u32 {
    match rng.range(0, 8) {
        0 => 0,
        1 => u32::MAX,
        2 => len as u32,
        3 => len as u32 - rng.range(1, 8) as u32,
        4 => 0x8000_0000,
        5 => rng.range(0, 64) as u32,
        6 => (rng.range(0, 64) as u32).wrapping_neg(),
        _ => rng.next_u64() as u32,
    }
}

fn mutate(rng: &mut Rng, blob: &mut Vec<u8>) {
    for _ in 0..rng.range(1, 4) {
        let len = blob.len();
        if len == 0 {
            return;
        }
        match rng.range(0, 4) {
            0 => {
                let i = rng.range(0, len);
                blob[i] ^= 1 << rng.range(0, 8);
            }
            1 => blob.truncate(rng.range(0, len)),
            _ if len >= 68 => {
                let at = rng.range(16, len - 4) & !3;
                let v = corrupt_value(rng, len);
                patch_u32(blob, at, v);
            }
            _ => {}
        }
    }
    // Mostly keep the CRC right so the mutation reaches the deeper checks.
    if blob.len() >= 16 && rng.range(0, 10) != 0 {
        seal_crc(blob);
    }
}

/// A short, stable stand-in for `cargo fuzz`: a few thousand mutated blobs must parse or be
/// rejected, and those that parse must run, all without a panic.
#[test]
fn mutated_blobs_never_panic() {
    let seeds = [tiny_cbam_blob(), pruned_add_blob(), all_ops_blob()];
    let mut rng = Rng::new(0xF022);
    let mut parsed = 0;
    for i in 0..3000 {
        let mut blob = seeds[i % seeds.len()].clone();
        mutate(&mut rng, &mut blob);
        let Ok(model) = Model::parse(&blob) else {
            continue;
        };
        parsed += 1;
        if model.arena_size() > 1 << 22 || model.input().len() > 1 << 20 {
            continue;
        }
        let mut arena = vec![0u8; model.arena_size()];
        let input = vec![0i8; model.input().len()];
        let mut out = vec![0i8; model.output().len()];
        let _ = model.run(&mut arena, &input, &mut out);
        for i in 0..model.n_ops() {
            let _ = model.op(i);
        }
    }
    // Some mutations (e.g. in weights) leave a valid blob; the run path must have been hit.
    assert!(parsed > 50, "only {parsed} mutated blobs parsed");
}

#[test]
fn lut_op_maps_every_value_through_its_table_into_any_quantization() {
    let mut b = BlobBuilder::new();
    let t0 = b.tensor((1, 2, 128), 0.1, 0);
    let t1 = b.tensor((1, 2, 128), 0.02, 5);
    b.input = t0;
    b.output = t1;
    // An arbitrary table: the op must not assume a sigmoid or any output quantization.
    let table: Vec<i8> = (0..256).map(|i| (255 - i) as u8 as i8).collect();
    let lut_off = b.i8s(&table);
    b.op(&[t0], t1, OpParams::Lut(LutWords { lut_off }));
    let blob = b.build();
    let model = Model::parse(&blob).expect("a valid LUT blob");
    let input: Vec<i8> = (-128..128).map(|v| v as i8).collect();
    let mut arena = vec![0u8; model.arena_size()];
    let mut out = vec![0i8; 256];
    model.run(&mut arena, &input, &mut out).expect("runs");
    for (x, y) in input.iter().zip(&out) {
        assert_eq!(*y, table[(i32::from(*x) + 128) as usize], "input {x}");
    }
}
