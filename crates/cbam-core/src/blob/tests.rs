//! One test per malformed-blob class, each expecting its own error variant, and a seeded
//! mutation fuzz that asserts parse + run never panic.

use super::*;
use crate::kernels::conv2d::ConvGeometry;
use crate::kernels::test_support::Rng;
use crate::op_code::OpCode;
use crate::testblob::{
    all_ops_blob, conv_params, patch_u16, patch_u32, refresh_crc, sigmoid_lut, tiny_cbam_blob,
    BlobBuilder,
};
use std::vec::Vec;

// tiny_cbam_blob: tensors 0 input, 1 feat, 2 attended (alias of 1), 3 pooled, 4 logits;
// ops 0 conv, 1 cbam, 2 global avg pool, 3 fully connected.

fn patched(f: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
    let mut blob = tiny_cbam_blob();
    f(&mut blob);
    refresh_crc(&mut blob);
    Model::parse(&blob).map(|_| ())
}

fn op_rec(blob: &[u8], op: usize) -> usize {
    BlobBuilder::op_record_offset(blob, op)
}

fn word(blob: &[u8], op: usize, w: usize) -> usize {
    BlobBuilder::param_word_offset(blob, op, w)
}

fn tensor_rec(blob: &[u8], t: usize) -> usize {
    BlobBuilder::tensor_record_offset(blob, t)
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
    assert_eq!(patched(|b| b[0] = b'X'), Err(Error::BadMagic));
}

#[test]
fn wrong_version() {
    assert_eq!(
        patched(|b| patch_u16(b, 4, 2)),
        Err(Error::UnsupportedVersion { found: 2 })
    );
}

#[test]
fn wrong_header_len() {
    assert_eq!(
        patched(|b| patch_u16(b, 6, 48)),
        Err(Error::BadHeaderLen { found: 48 })
    );
}

#[test]
fn total_len_below_header() {
    assert_eq!(
        patched(|b| patch_u32(b, 8, 10)),
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
        let len = b.len() as u32;
        {
            let at = word(b, 0, 12);
            patch_u32(b, at, len + 100)
        };
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
    let err = patched(|b| patch_u32(b, 32, u32::MAX - 8));
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
        {
            let at = op_rec(b, 3) + 16;
            patch_u32(b, at, len - 8)
        };
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
    b.op(OpCode::Conv2d, &[t0], t1, p);
    let mut blob = b.build();
    assert!(Model::parse(&blob).is_ok());
    for (w, v) in [
        (0, 1 << 30),
        (1, 1 << 30),
        (2, i32::MAX),
        (3, i32::MAX),
        (6, 1 << 30),
        (7, 1 << 30),
        (8, 1 << 30),
        (9, 1 << 30),
    ] {
        let off = word(&blob, 0, w);
        patch_u32(&mut blob, off, v as u32);
    }
    refresh_crc(&mut blob);
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
        patch_u32(b, 16, 100);
        patch_u32(b, 20, 0);
        patch_u32(b, 24, 0);
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
        patched(|b| patch_u32(b, 20, u32::MAX)),
        Err(Error::ScratchOutsideArena)
    );
}

#[test]
fn unknown_op() {
    assert_eq!(
        patched(|b| {
            let at = op_rec(b, 2);
            patch_u16(b, at, 99)
        }),
        Err(Error::UnknownOp { op: 2, code: 99 })
    );
}

#[test]
fn wrong_input_count() {
    assert_eq!(
        patched(|b| {
            let at = op_rec(b, 0) + 2;
            patch_u16(b, at, 2)
        }),
        Err(Error::BadInputCount { op: 0, found: 2 })
    );
}

#[test]
fn wrong_param_len() {
    assert_eq!(
        patched(|b| {
            let at = op_rec(b, 2) + 20;
            patch_u32(b, at, 12)
        }),
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
        {
            let at = word(b, 0, 10);
            patch_u32(b, at, 5)
        };
        {
            let at = word(b, 0, 11);
            patch_u32(b, at, (-5i32) as u32)
        };
    });
    assert!(matches!(inverted_act, Err(Error::BadParams { op: 0, .. })));
    assert!(matches!(
        patched(|b| {
            let at = word(b, 1, 3);
            patch_u32(b, at, 2)
        }),
        Err(Error::BadParams { op: 1, .. })
    ));
    assert!(matches!(
        patched(|b| {
            let at = word(b, 2, 1);
            patch_u32(b, at, 31)
        }),
        Err(Error::BadParams { op: 2, .. })
    ));
    assert!(matches!(
        patched(|b| {
            let at = word(b, 2, 0);
            patch_u32(b, at, (-7i32) as u32)
        }),
        Err(Error::BadParams { op: 2, .. })
    ));
    assert!(matches!(
        patched(|b| {
            let at = word(b, 1, 2);
            patch_u32(b, at, 4)
        }),
        Err(Error::BadParams { op: 1, .. })
    ));
}

#[test]
fn shape_mismatch() {
    // Stride 1 would make the conv output 28x28, not the stored 14x14.
    let err = patched(|b| {
        let at = word(b, 0, 2);
        patch_u32(b, at, 1)
    });
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
    let lut = b.i8s(&sigmoid_lut());
    b.op(OpCode::Sigmoid, &[t1], t2, vec![lut]);
    b.op(OpCode::Sigmoid, &[t0], t1, vec![lut]);
    assert_eq!(
        Model::parse(&b.build()).unwrap_err(),
        Error::TensorNotReady { op: 0, tensor: 1 }
    );
}

#[test]
fn overlapping_input_and_output() {
    let err = patched(|b| {
        let feat_off = u32::from_le_bytes(
            b[tensor_rec(b, 1) + 8..tensor_rec(b, 1) + 12]
                .try_into()
                .unwrap(),
        );
        {
            let at = tensor_rec(b, 3) + 8;
            patch_u32(b, at, feat_off)
        };
    });
    assert_eq!(err, Err(Error::ArenaOverlap { op: 2 }));
}

#[test]
fn wrong_scratch_len() {
    let mut expected = 0;
    let err = patched(|b| {
        let at = op_rec(b, 1) + 24;
        expected = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        patch_u32(b, at, expected as u32 + 1);
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
        patched(|b| patch_u16(b, 42, 0)),
        Err(Error::OutputNeverWritten)
    );
}

#[test]
fn metadata_not_utf8() {
    let err = patched(|b| {
        let meta_off = u32::from_le_bytes(b[48..52].try_into().unwrap()) as usize;
        b[meta_off + 2] = 0xFF;
    });
    assert_eq!(err, Err(Error::BadMetadata));
}

#[test]
fn bad_tensor_records() {
    assert!(matches!(
        patched(|b| {
            let at = tensor_rec(b, 3) + 20;
            patch_u32(b, at, 300)
        }),
        Err(Error::BadTensor {
            tensor: 3,
            reason: "zero_point outside -128..=127"
        })
    ));
    assert!(matches!(
        patched(|b| {
            let at = tensor_rec(b, 3) + 6;
            patch_u16(b, at, 9)
        }),
        Err(Error::BadTensor { tensor: 3, .. })
    ));
    assert!(matches!(
        patched(|b| {
            let at = tensor_rec(b, 3);
            patch_u16(b, at, 0)
        }),
        Err(Error::BadTensor { tensor: 3, .. })
    ));
    assert_eq!(
        patched(|b| {
            let at = op_rec(b, 0) + 12;
            patch_u16(b, at, 50)
        }),
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
    b.op(OpCode::Conv2d, &[t0], t1, p);
    b.op(
        OpCode::Add,
        &[t0, t1],
        t2,
        vec![20, 1 << 30, 0, 1 << 30, 0, 1 << 30, -20, -128, 127],
    );
    b.build()
}

#[test]
fn kept_list_must_increase_below_full_c() {
    let good = pruned_add_blob();
    assert!(Model::parse(&good).is_ok());
    let kept_at = |b: &[u8]| {
        u32::from_le_bytes(
            b[tensor_rec(b, 1) + 12..tensor_rec(b, 1) + 16]
                .try_into()
                .unwrap(),
        ) as usize
    };
    for list in [[2u16, 0], [0, 4], [1, 1]] {
        let mut blob = good.clone();
        let at = kept_at(&blob);
        patch_u16(&mut blob, at, list[0]);
        patch_u16(&mut blob, at + 2, list[1]);
        refresh_crc(&mut blob);
        assert!(
            matches!(Model::parse(&blob), Err(Error::BadTensor { tensor: 1, .. })),
            "{list:?}"
        );
    }
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
        refresh_crc(blob);
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
