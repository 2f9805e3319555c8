//! The layouts pinned to FORMAT.md's tables: word positions, record offsets, op codes,
//! scratch sizes, and the encoder's alignment and header.

use super::*;
use crate::le::I32Le;
use crate::testblob::word;
use std::vec::Vec;

/// `n` distinct words.
fn counting(n: usize) -> Vec<u8> {
    (0..n as i32)
        .flat_map(|w| (w + 1000).to_le_bytes())
        .collect()
}

#[test]
fn every_op_decodes_and_encodes_its_word_count() {
    let counts = [
        (OpCode::Conv2d, 16),
        (OpCode::DepthwiseConv2d, 17),
        (OpCode::FullyConnected, 6),
        (OpCode::MaxPool2d, 10),
        (OpCode::AvgPool2d, 10),
        (OpCode::GlobalAvgPool, 2),
        (OpCode::GlobalMaxPool, 0),
        (OpCode::Add, 9),
        (OpCode::Mul, 4),
        (OpCode::Sigmoid, 1),
        (OpCode::Lut, 1),
        (OpCode::Cbam, 26),
    ];
    for (code, n) in counts {
        assert_eq!(code.param_words(1), n, "{code}");
        let bytes = counting(n);
        let words = I32Le::new(&bytes);
        let p = OpParams::decode(code, words, 1).unwrap();
        assert_eq!(p.code(), code);
        assert_eq!(*p.encode(), words.iter().collect::<Vec<_>>()[..], "{code}");
        assert!(OpParams::decode(code, I32Le::new(&counting(n + 1)), 1).is_none());
    }
    for n_inputs in 1..=MAX_INPUTS {
        let n = OpCode::Concat.param_words(n_inputs);
        assert_eq!(n, 2 * n_inputs);
        let bytes = counting(n);
        let p = OpParams::decode(OpCode::Concat, I32Le::new(&bytes), n_inputs).unwrap();
        assert_eq!(p.encode().len(), n);
    }
    assert!(OpCode::ALL
        .iter()
        .all(|c| c.param_words(MAX_INPUTS) <= MAX_WORDS));
}

#[test]
fn word_positions_are_format_md_s() {
    assert_eq!(word!(Conv2dWords, dil_h), 4);
    assert_eq!(word!(Conv2dWords, pad_top), 6);
    assert_eq!(word!(Conv2dWords, act.min), 10);
    assert_eq!(word!(Conv2dWords, weights_off), 12);
    assert_eq!(word!(Conv2dWords, channels.shift_off), 15);
    assert_eq!(word!(DepthwiseWords, depth_multiplier), 16);
    assert_eq!(word!(FullyConnectedWords, act.max), 5);
    assert_eq!(word!(PoolWords, pad_right), 7);
    assert_eq!(word!(AddWords, out.shift), 6);
    assert_eq!(word!(MulWords, act.min), 2);
    assert_eq!(word!(CbamWords, zp_h), 8);
    assert_eq!(word!(CbamWords, mlp2.bias_off), 10);
    assert_eq!(word!(CbamWords, lut_c_off), 14);
    assert_eq!(word!(CbamWords, zp_f1), 17);
    assert_eq!(word!(CbamWords, spatial.shift), 21);
    assert_eq!(word!(CbamWords, lut_s_off), 23);
    assert_eq!(word!(CbamWords, out.shift), 25);
    // The offset-derived index and the encoder agree.
    let p = CbamWords {
        zp_s: 77,
        ..CbamWords::default()
    };
    assert_eq!(p.encode()[word!(CbamWords, zp_s)], 77);
}

#[test]
fn concat_words_hold_at_most_four_inputs() {
    let r = RequantWords { mult: 5, shift: -3 };
    let p = ConcatWords::new(&[RequantWords::default(), r]).unwrap();
    assert_eq!(*p.encode(), [0, 0, 5, -3]);
    assert_eq!(p.requants(), [RequantWords::default(), r]);
    assert!(ConcatWords::new(&[r; 5]).is_none());
}

#[test]
fn codes_round_trip() {
    for code in 0..=20u16 {
        match OpCode::from_u16(code) {
            Some(op) => assert_eq!(op.code(), code),
            None => assert!(code == 0 || code > 13),
        }
    }
    assert_eq!(OpCode::ALL.len(), 13);
    assert_eq!(OpCode::DepthwiseConv2d.to_string(), "DEPTHWISE_CONV2D");
    assert!(OpCode::Concat.accepts_inputs(4) && !OpCode::Concat.accepts_inputs(5));
    assert!(OpCode::Add.accepts_inputs(2) && !OpCode::Add.accepts_inputs(1));
}

/// The `N` bytes of `bytes` from `at`.
fn at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes[at..at + N].try_into().unwrap()
}

#[test]
fn record_fields_sit_at_format_md_s_offsets() {
    let h = HeaderFields {
        magic: MAGIC,
        total_len: 0x1111_1111,
        crc32: 0x2222_2222,
        n_ops: 0x3333,
        input_tensor: 0x4444,
        meta_off: 0x5555_5555,
        macs: 0x6666_6666,
        ..HeaderFields::default()
    };
    let b = h.write();
    assert_eq!(b.len(), usize::from(HEADER_LEN));
    assert_eq!(at::<4>(&b, 0), *b"CBAM");
    assert_eq!(at(&b, 8), 0x1111_1111u32.to_le_bytes());
    assert_eq!(at(&b, 12), 0x2222_2222u32.to_le_bytes());
    assert_eq!(at(&b, 30), 0x3333u16.to_le_bytes());
    assert_eq!(at(&b, 40), 0x4444u16.to_le_bytes());
    assert_eq!(at(&b, 48), 0x5555_5555u32.to_le_bytes());
    assert_eq!(at(&b, 56), 0x6666_6666u32.to_le_bytes());
    assert_eq!(HeaderFields::read(&b), Some(h));
    assert_eq!(HeaderFields::read(&b[..63]), None);

    let t = TensorFields {
        full_c: 9,
        arena_off: 0x0102_0304,
        scale: 0.5,
        zero_point: -3,
        flags: TENSOR_FLAG_OUTPUT,
        ..TensorFields::default()
    };
    let b = t.write();
    assert_eq!(at(&b, 6), 9u16.to_le_bytes());
    assert_eq!(at(&b, 8), 0x0102_0304u32.to_le_bytes());
    assert_eq!(at(&b, 16), 0.5f32.to_le_bytes());
    assert_eq!(at(&b, 20), (-3i32).to_le_bytes());
    assert_eq!(at(&b, 24), 2u32.to_le_bytes());
    assert_eq!(TensorFields::read(&b), Some(t));

    let o = OpFields {
        code: 12,
        inputs: [1, 2, NO_INPUT, NO_INPUT],
        output: 7,
        params_len: 104,
        scratch_len: 0x0A0B,
        ..OpFields::default()
    };
    let b = o.write();
    assert_eq!(at(&b, 0), 12u16.to_le_bytes());
    assert_eq!(at(&b, 6), 2u16.to_le_bytes());
    assert_eq!(at(&b, 10), NO_INPUT.to_le_bytes());
    assert_eq!(at(&b, 12), 7u16.to_le_bytes());
    assert_eq!(at(&b, 20), 104u32.to_le_bytes());
    assert_eq!(at(&b, 24), 0x0A0Bu32.to_le_bytes());
    assert_eq!(OpFields::read(&b), Some(o));
}

#[test]
fn only_cbam_needs_scratch() {
    let cbam = OpParams::Cbam(CbamWords {
        c: 32,
        cr: 4,
        ..CbamWords::default()
    });
    assert_eq!(cbam.scratch_size((14, 14, 32)), Some(3 * 32 + 8 + 3 * 196));
    assert_eq!(cbam_scratch_size(32, 4, 14, 14), Some(3 * 32 + 8 + 3 * 196));
    let conv = OpParams::Conv2d(Conv2dWords::default());
    assert_eq!(conv.scratch_size((14, 14, 32)), Some(0));
    let negative = OpParams::Cbam(CbamWords {
        c: -1,
        cr: 4,
        ..CbamWords::default()
    });
    assert_eq!(negative.scratch_size((1, 1, 1)), None);
    assert_eq!(cbam_scratch_size(1, 1, usize::MAX, 2), None);
}

#[test]
fn the_writer_aligns_and_seals() {
    let mut w = BlobWriter::new();
    let a = w.array(&[1, 2, 3]);
    let words = w.words(&[-1, 2]);
    let b = ConstArrays::i32s(&mut w, &[7]);
    let t = w.text("k=v\n");
    assert_eq!((a, words, b), (64, 68, 80));
    assert_eq!(t, 84);
    let header = HeaderFields {
        magic: *b"XXXX",
        version: 9,
        macs: 5,
        ..HeaderFields::default()
    };
    let blob = w.finish(header).unwrap();
    let h = HeaderFields::read(&blob).unwrap();
    assert_eq!(
        (h.magic, h.version, h.header_len, h.macs),
        (MAGIC, VERSION, HEADER_LEN, 5)
    );
    assert_eq!(h.total_len as usize, blob.len());
    assert_eq!(h.crc32, crate::crc32(&blob[CRC_START..]));
    assert_eq!(
        &blob[words as usize..words as usize + 4],
        &(-1i32).to_le_bytes()
    );
    assert_eq!(Unplaced.i8s(&[1, 2]), 0);
}
