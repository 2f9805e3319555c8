//! The interpreter end to end: blobs from the test assembler, run against the kernels
//! called directly on owned tensors.

use super::*;
use crate::cbam::tests::Owned as CbamData;
use crate::format::{
    AddWords, CbamWords, ConcatWords, DepthwiseWords, FullyConnectedWords, GlobalAvgPoolWords,
    LutWords, MulWords, NoWords, OpParams, PerChannelWords, RequantWords,
};
use crate::kernels::test_support::Rng;
use crate::kernels::{
    AddParams, ChannelQuant, ConcatInput, Conv2dParams, ConvGeometry, DepthwiseParams,
    FullyConnectedParams, GlobalAvgPoolParams, In2Channels, MulBroadcast, MulParams, PoolKind,
    PoolOrder, PoolParams, Shape,
};
use crate::le::{i32_bytes, u16_bytes, I32Le, U16Le};
use crate::math::{ActRange, Requant};
use crate::testblob::{act_words, conv_words, pool_words, requant_words, sigmoid_lut, BlobBuilder};
use std::vec::Vec;

/// Weights and per-channel quantization owned by a test, addable to a blob.
struct Layer {
    weights: Vec<i8>,
    bias: Vec<u8>,
    mult: Vec<u8>,
    shift: Vec<u8>,
}

impl Layer {
    fn random(rng: &mut Rng, n_weights: usize, n_out: usize) -> Self {
        Self {
            weights: rng.i8s(n_weights),
            bias: i32_bytes(&(0..n_out).map(|_| rng.int(-2000, 2000)).collect::<Vec<_>>()),
            mult: i32_bytes(
                &(0..n_out)
                    .map(|_| rng.int(1 << 30, i32::MAX))
                    .collect::<Vec<_>>(),
            ),
            shift: i32_bytes(&(0..n_out).map(|_| rng.int(-10, -7)).collect::<Vec<_>>()),
        }
    }

    /// `(weights_off, [bias_off, mult_off, shift_off])` in the blob.
    fn add_to(&self, b: &mut BlobBuilder) -> (i32, PerChannelWords) {
        let weights_off = b.i8s(&self.weights);
        (
            weights_off,
            arrays(b, [&self.bias, &self.mult, &self.shift]),
        )
    }

    fn quant(&self, in_zp: i32, out_zp: i32, act: ActRange) -> ChannelQuant<'_> {
        ChannelQuant {
            in_zp,
            out_zp,
            act,
            bias: I32Le::new(&self.bias),
            mult: I32Le::new(&self.mult),
            shift: I32Le::new(&self.shift),
        }
    }
}

/// Adds encoded bias, multiplier and shift arrays to the blob.
fn arrays(b: &mut BlobBuilder, [bias, mult, shift]: [&[u8]; 3]) -> PerChannelWords {
    PerChannelWords {
        bias_off: b.bytes(bias),
        mult_off: b.bytes(mult),
        shift_off: b.bytes(shift),
    }
}

fn cbam_words(b: &mut BlobBuilder, o: &CbamData) -> CbamWords {
    let order = match o.order {
        PoolOrder::MeanMax => 0,
        PoolOrder::MaxMean => 1,
    };
    CbamWords {
        c: o.c as i32,
        cr: o.cr as i32,
        k: o.k as i32,
        order,
        w1_off: b.i8s(&o.w1),
        mlp1: arrays(b, [&o.b1, &o.m1, &o.s1]),
        zp_h: o.zp_h,
        w2_off: b.i8s(&o.w2),
        mlp2: arrays(b, [&o.b2, &o.m2, &o.s2]),
        zp_z: o.zp_z,
        lut_c_off: b.i8s(&o.lut_c),
        f1: requant_words(o.f1),
        zp_f1: o.zp_f1,
        ws_off: b.i8s(&o.ws),
        bs: o.bs,
        spatial: requant_words(o.rs),
        zp_s: o.zp_s,
        lut_s_off: b.i8s(&o.lut_s),
        out: requant_words(o.out),
    }
}

/// `(op index, channel map, spatial map, h, w)` as `cbam_attention` reported it.
type Attention = (usize, Vec<i8>, Vec<i8>, usize, usize);

/// Records what the observer hooks saw.
#[derive(Default)]
struct Recorder {
    started: Vec<(usize, OpCode)>,
    ended: Vec<(usize, OpCode, Vec<i8>)>,
    attention: Vec<Attention>,
}

impl Observer for Recorder {
    fn op_start(&mut self, index: usize, code: OpCode) {
        self.started.push((index, code));
    }
    fn op_end(&mut self, index: usize, code: OpCode, output: &[i8]) {
        self.ended.push((index, code, output.to_vec()));
    }
    fn cbam_attention(&mut self, index: usize, channel: &[i8], spatial: &[i8], h: usize, w: usize) {
        self.attention
            .push((index, channel.to_vec(), spatial.to_vec(), h, w));
    }
}

fn run_blob(blob: &[u8], input: &[i8], observer: &mut Recorder) -> Vec<i8> {
    let model = Model::parse(blob).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut out = vec![0i8; model.output().len()];
    model
        .run_observed(&mut arena, input, &mut out, observer)
        .unwrap();
    out
}

/// conv -> CBAM (in place) -> pruned 1x1 conv -> residual add with scatter -> GAP -> FC.
#[test]
fn conv_cbam_residual_scatter_gap_fc_matches_kernels() {
    let mut rng = Rng::new(0xE2E);
    let mut b = BlobBuilder::new();
    let (h, w, c) = (8, 8, 8);
    let kept = [1u16, 4, 6];
    let zps: Vec<i32> = (0..7).map(|_| rng.int(-100, 100)).collect();
    let t0 = b.tensor((h, w, 3), 1.0 / 255.0, -128);
    let t1 = b.tensor((h, w, c), 0.05, zps[1]);
    let t2 = b.alias_tensor(t1, 0.04, zps[2]);
    let t3 = b.pruned_tensor((h, w), &kept, c, 0.03, zps[3]);
    let t4 = b.tensor((h, w, c), 0.06, zps[4]);
    let t5 = b.tensor((1, 1, c), 0.02, zps[5]);
    let t6 = b.tensor((1, 1, 5), 0.1, zps[6]);
    b.input = t0;
    b.output = t6;
    b.flags = crate::format::FLAG_RAW_PIXELS;
    b.meta = "name=e2e\nlabels=a,b,c,d,e\n".into();

    let g3 = ConvGeometry::square(3, 1);
    let conv1 = Layer::random(&mut rng, c * 9 * 3, c);
    let (wo, ch) = conv1.add_to(&mut b);
    let p = conv_words(&g3, (zps[1], 127), wo, ch);
    b.op(&[t0], t1, OpParams::Conv2d(p));

    let mut att = CbamData::random(&mut rng, c, 2, 3, PoolOrder::MaxMean);
    att.zp_in = zps[1];
    att.zp_out = zps[2];
    let p = cbam_words(&mut b, &att);
    b.op(&[t1], t2, OpParams::Cbam(p));

    let pw = Layer::random(&mut rng, kept.len() * c, kept.len());
    let (wo, ch) = pw.add_to(&mut b);
    let p = conv_words(&ConvGeometry::square(1, 0), (-128, 127), wo, ch);
    b.op(&[t2], t3, OpParams::Conv2d(p));

    let addp = AddParams {
        left_shift: 20,
        in1_zp: zps[2],
        in1: Requant::new(rng.int(1 << 30, i32::MAX), -1),
        in2_zp: zps[3],
        in2: Requant::new(rng.int(1 << 30, i32::MAX), -1),
        out: Requant::new(rng.int(1 << 30, i32::MAX), -19),
        out_zp: zps[4],
        act: ActRange::FULL,
    };
    let p = AddWords {
        left_shift: 20,
        in1: requant_words(addp.in1),
        in2: requant_words(addp.in2),
        out: requant_words(addp.out),
        act: act_words((-128, 127)),
    };
    b.op(&[t2, t3], t4, OpParams::Add(p));

    let gap = GlobalAvgPoolParams {
        requant: Requant::new(rng.int(1 << 30, i32::MAX), -6),
        in_zp: zps[4],
        out_zp: zps[5],
    };
    let p = GlobalAvgPoolWords {
        out: requant_words(gap.requant),
    };
    b.op(&[t4], t5, OpParams::GlobalAvgPool(p));

    let fc = Layer::random(&mut rng, c * 5, 5);
    let (weights_off, channels) = fc.add_to(&mut b);
    let p = FullyConnectedWords {
        weights_off,
        channels,
        act: act_words((-128, 127)),
    };
    b.op(&[t5], t6, OpParams::FullyConnected(p));
    let blob = b.build();

    let input = rng.i8s(h * w * 3);
    let mut rec = Recorder::default();
    let out = run_blob(&blob, &input, &mut rec);

    // The same chain through the kernels on owned tensors.
    let full = Shape::new(h, w, c);
    let mut x1 = vec![0i8; h * w * c];
    let cp = Conv2dParams {
        packed: &[],
        geometry: g3,
        weights: &conv1.weights,
        quant: conv1.quant(-128, zps[1], ActRange::from_words(zps[1], 127)),
    };
    conv2d(&cp, Shape::new(h, w, 3), &input, full, &mut x1).unwrap();
    let mut scratch = vec![0i8; crate::cbam::cbam_scratch_size(c, 2, h, w).unwrap()];
    let a = cbam(&att.params(), full, &mut x1, &mut scratch).unwrap();
    let (att_c, att_s) = (a.channel.to_vec(), a.spatial.to_vec());
    let mut x3 = vec![0i8; h * w * kept.len()];
    let pp = Conv2dParams {
        packed: &[],
        geometry: ConvGeometry::square(1, 0),
        weights: &pw.weights,
        quant: pw.quant(zps[2], zps[3], ActRange::FULL),
    };
    conv2d(&pp, full, &x1, Shape::new(h, w, kept.len()), &mut x3).unwrap();
    let mut x4 = vec![0i8; h * w * c];
    let kept_bytes = u16_bytes(&kept);
    add(
        &addp,
        full,
        &x1,
        &x3,
        In2Channels::Scatter(U16Le::new(&kept_bytes)),
        &mut x4,
    )
    .unwrap();
    let mut x5 = vec![0i8; c];
    global_avg_pool(&gap, full, &x4, &mut x5).unwrap();
    let mut x6 = vec![0i8; 5];
    fully_connected(
        &FullyConnectedParams {
            weights: &fc.weights,
            quant: fc.quant(zps[5], zps[6], ActRange::FULL),
        },
        &x5,
        &mut x6,
    )
    .unwrap();

    assert_eq!(out, x6);
    assert_eq!(rec.ended[3].2, x4, "residual add output");
    assert_eq!(rec.attention, vec![(1, att_c, att_s, h, w)]);
    let codes: Vec<OpCode> = rec.started.iter().map(|s| s.1).collect();
    assert_eq!(
        codes,
        [
            OpCode::Conv2d,
            OpCode::Cbam,
            OpCode::Conv2d,
            OpCode::Add,
            OpCode::GlobalAvgPool,
            OpCode::FullyConnected
        ]
    );
    assert!(out.iter().collect::<std::collections::BTreeSet<_>>().len() > 1);

    let model = Model::parse(&blob).unwrap();
    assert!(model.input_is_raw_pixels());
    assert_eq!(model.meta("name"), Some("e2e"));
    assert_eq!(model.meta("missing"), None);
    assert_eq!(
        model.labels().collect::<Vec<_>>(),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(model.n_ops(), 6);
    assert_eq!(
        model.op(0).map(|o| (o.code, o.macs)),
        Some((OpCode::Conv2d, (h * w * c * 9 * 3) as u64))
    );
    assert_eq!(model.op(6), None);
    assert_eq!(model.input().len(), h * w * 3);
    assert_eq!((model.output().c, model.output().zero_point), (5, zps[6]));
}

/// depthwise -> max pool -> avg pool -> concat -> sigmoid -> mul -> global max -> FC.
#[test]
fn depthwise_pools_concat_sigmoid_mul_match_kernels() {
    let mut rng = Rng::new(0xD00D);
    let mut b = BlobBuilder::new();
    let zps: Vec<i32> = (0..9).map(|_| rng.int(-60, 60)).collect();
    let t0 = b.tensor((9, 9, 4), 0.1, zps[0]);
    let t1 = b.tensor((5, 5, 8), 0.1, zps[1]);
    let t2 = b.tensor((4, 4, 8), 0.1, zps[1]);
    let t3 = b.tensor((4, 4, 8), 0.1, zps[1]);
    let t4 = b.tensor((4, 4, 16), 0.1, zps[4]);
    let t5 = b.tensor((4, 4, 16), 1.0 / 256.0, -128);
    let t6 = b.tensor((4, 4, 16), 0.1, zps[6]);
    let t7 = b.tensor((1, 1, 16), 0.1, zps[6]);
    let t8 = b.tensor((1, 1, 3), 0.1, zps[8]);
    b.input = t0;
    b.output = t8;

    let gd = ConvGeometry {
        stride_h: 2,
        stride_w: 2,
        ..ConvGeometry::square(3, 1)
    };
    let dw = Layer::random(&mut rng, 9 * 8, 8);
    let (wo, ch) = dw.add_to(&mut b);
    let p = DepthwiseWords {
        conv: conv_words(&gd, (-128, 127), wo, ch),
        depth_multiplier: 2,
    };
    b.op(&[t0], t1, OpParams::DepthwiseConv2d(p));
    let gmax = ConvGeometry::square(2, 0);
    let p = pool_words(&gmax, (-128, 127));
    b.op(&[t1], t2, OpParams::MaxPool2d(p));
    let gavg = ConvGeometry::square(3, 1);
    let p = pool_words(&gavg, (-128, 127));
    b.op(&[t2], t3, OpParams::AvgPool2d(p));
    let cat_rq = Requant::new(rng.int(1 << 30, i32::MAX), 0);
    let p = ConcatWords::new(&[RequantWords::default(), requant_words(cat_rq)]).unwrap();
    b.op(&[t2, t3], t4, OpParams::Concat(p));
    let lut = sigmoid_lut();
    let lut_off = b.i8s(&lut);
    b.op(&[t4], t5, OpParams::Sigmoid(LutWords { lut_off }));
    let mp = MulParams {
        in1_zp: zps[4],
        in2_zp: -128,
        out: Requant::new(rng.int(1 << 30, i32::MAX), -8),
        out_zp: zps[6],
        act: ActRange::FULL,
    };
    let p = MulWords {
        out: requant_words(mp.out),
        act: act_words((-128, 127)),
    };
    b.op(&[t4, t5], t6, OpParams::Mul(p));
    b.op(&[t6], t7, OpParams::GlobalMaxPool(NoWords {}));
    let fc = Layer::random(&mut rng, 16 * 3, 3);
    let (weights_off, channels) = fc.add_to(&mut b);
    let p = FullyConnectedWords {
        weights_off,
        channels,
        act: act_words((-128, 127)),
    };
    b.op(&[t7], t8, OpParams::FullyConnected(p));
    let blob = b.build();

    let input = rng.i8s(9 * 9 * 4);
    let mut rec = Recorder::default();
    let out = run_blob(&blob, &input, &mut rec);

    let mut x1 = vec![0i8; 5 * 5 * 8];
    let dp = DepthwiseParams {
        geometry: gd,
        depth_multiplier: 2,
        weights: &dw.weights,
        quant: dw.quant(zps[0], zps[1], ActRange::FULL),
    };
    depthwise_conv2d(
        &dp,
        Shape::new(9, 9, 4),
        &input,
        Shape::new(5, 5, 8),
        &mut x1,
    )
    .unwrap();
    let mut x2 = vec![0i8; 4 * 4 * 8];
    pool2d(
        PoolKind::Max,
        &PoolParams {
            geometry: gmax,
            act: ActRange::FULL,
        },
        Shape::new(5, 5, 8),
        &x1,
        Shape::new(4, 4, 8),
        &mut x2,
    )
    .unwrap();
    let mut x3 = vec![0i8; 4 * 4 * 8];
    pool2d(
        PoolKind::Average,
        &PoolParams {
            geometry: gavg,
            act: ActRange::FULL,
        },
        Shape::new(4, 4, 8),
        &x2,
        Shape::new(4, 4, 8),
        &mut x3,
    )
    .unwrap();
    let mut x4 = vec![0i8; 4 * 4 * 16];
    let parts = [
        ConcatInput {
            data: &x2,
            c: 8,
            zp: zps[1],
            requant: None,
        },
        ConcatInput {
            data: &x3,
            c: 8,
            zp: zps[1],
            requant: Some(cat_rq),
        },
    ];
    concat(&parts, 16, zps[4], &mut x4).unwrap();
    let mut x5 = vec![0i8; x4.len()];
    sigmoid(&lut, &x4, &mut x5).unwrap();
    let mut x6 = vec![0i8; x4.len()];
    mul(
        &mp,
        Shape::new(4, 4, 16),
        &x4,
        &x5,
        MulBroadcast::None,
        &mut x6,
    )
    .unwrap();
    let mut x7 = vec![0i8; 16];
    global_max_pool(Shape::new(4, 4, 16), &x6, &mut x7).unwrap();
    let mut x8 = vec![0i8; 3];
    fully_connected(
        &FullyConnectedParams {
            weights: &fc.weights,
            quant: fc.quant(zps[6], zps[8], ActRange::FULL),
        },
        &x7,
        &mut x8,
    )
    .unwrap();

    assert_eq!(rec.ended[3].2, x4);
    assert_eq!(rec.ended[5].2, x6);
    assert_eq!(out, x8);
    assert!(rec.attention.is_empty());
}

/// A CBAM whose output is a separate tensor copies its input there first.
#[test]
fn cbam_out_of_place_copies_input_first() {
    let mut rng = Rng::new(0x0C);
    let mut b = BlobBuilder::new();
    let t0 = b.tensor((5, 6, 7), 0.1, 3);
    let t1 = b.tensor((5, 6, 7), 0.1, -5);
    b.input = t0;
    b.output = t1;
    let mut att = CbamData::random(&mut rng, 7, 3, 5, PoolOrder::MeanMax);
    att.zp_in = 3;
    att.zp_out = -5;
    let p = cbam_words(&mut b, &att);
    b.op(&[t0], t1, OpParams::Cbam(p));
    let input = rng.i8s(5 * 6 * 7);
    let out = run_blob(&b.build(), &input, &mut Recorder::default());
    let mut expected = input.clone();
    let mut scratch = vec![0i8; crate::cbam::cbam_scratch_size(7, 3, 5, 6).unwrap()];
    cbam(
        &att.params(),
        Shape::new(5, 6, 7),
        &mut expected,
        &mut scratch,
    )
    .unwrap();
    assert_eq!(out, expected);
}

/// The sample model the firmware brings up before the compiler lands: 28x28x1 raw pixels ->
/// conv 3x3/2 -> CBAM -> global average pool -> FC(10). Written to
/// `target/sample-blobs/tiny_cbam.cbam` (write errors ignored: the file is a convenience).
#[test]
fn sample_blob_runs_and_is_written() {
    let blob = crate::testblob::tiny_cbam_blob();
    let model = Model::parse(&blob).unwrap();
    assert_eq!(
        (model.input().h, model.input().w, model.input().c),
        (28, 28, 1)
    );
    let input: Vec<i8> = (0..28 * 28).map(|i| (i * 7 % 256 - 128) as i8).collect();
    let mut rec = Recorder::default();
    let out = run_blob(&blob, &input, &mut rec);
    assert_eq!(out.len(), 10);
    assert_eq!(rec.attention.len(), 1);
    // Random weights must still give a model whose logits and attention vary, or the
    // firmware bring-up could not tell a broken run from a working one.
    let distinct = |v: &[i8]| v.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert!(distinct(&out) > 3, "logits {out:?}");
    assert!(distinct(&rec.attention[0].1) > 1 && distinct(&rec.attention[0].2) > 3);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/sample-blobs");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("tiny_cbam.cbam"), &blob);
    }
}

/// The blob is read in place from wherever it sits: an odd base address changes nothing.
#[test]
fn unaligned_blob_gives_identical_results() {
    let blob = crate::testblob::tiny_cbam_blob();
    let mut shifted = vec![0u8; 3];
    shifted.extend_from_slice(&blob);
    let input: Vec<i8> = (0..28 * 28).map(|i| (i % 251) as i8).collect();
    let aligned = run_blob(&blob, &input, &mut Recorder::default());
    let unaligned = run_blob(&shifted[3..], &input, &mut Recorder::default());
    assert_eq!(aligned, unaligned);
}

/// The every-op seed of the fuzzers parses, runs and gives varied logits; also written to
/// `target/sample-blobs/all_ops.cbam` (a seed for `cargo fuzz`).
#[test]
fn all_ops_blob_runs() {
    let blob = crate::testblob::all_ops_blob();
    let model = Model::parse(&blob).unwrap();
    let codes: std::collections::BTreeSet<u16> = (0..model.n_ops())
        .filter_map(|i| model.op(i))
        .map(|o| o.code.code())
        .collect();
    assert_eq!(codes.len(), 13, "every op code but LUT is used");
    let input: Vec<i8> = (0..8 * 8 * 4).map(|i| (i * 13 % 256) as u8 as i8).collect();
    let mut rec = Recorder::default();
    let out = run_blob(&blob, &input, &mut rec);
    assert_eq!(rec.ended.len(), model.n_ops());
    assert!(
        out.iter().collect::<std::collections::BTreeSet<_>>().len() > 2,
        "logits {out:?}"
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/sample-blobs");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("all_ops.cbam"), &blob);
    }
}

#[test]
fn run_rejects_wrong_buffers() {
    let blob = crate::testblob::tiny_cbam_blob();
    let model = Model::parse(&blob).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let input = vec![0i8; 28 * 28];
    let mut out = vec![0i8; 10];
    let mut small = vec![0u8; model.arena_size() - 1];
    assert_eq!(
        model.run(&mut small, &input, &mut out),
        Err(Error::ArenaBufferTooSmall {
            needed: model.arena_size(),
            found: model.arena_size() - 1
        })
    );
    assert_eq!(
        model.run(&mut arena, &input[1..], &mut out),
        Err(Error::InputLength {
            expected: 784,
            found: 783
        })
    );
    assert_eq!(
        model.run(&mut arena, &input, &mut out[1..]),
        Err(Error::OutputLength {
            expected: 10,
            found: 9
        })
    );
    // A larger arena than needed is fine.
    let mut big = vec![0u8; model.arena_size() + 100];
    assert!(model.run(&mut big, &input, &mut out).is_ok());
}

/// Writing the input straight into the arena and invoking is `run` without the copy: same
/// output, same ops observed, whatever the arena held before.
#[test]
fn input_mut_then_invoke_matches_run() {
    let blob = crate::testblob::tiny_cbam_blob();
    let model = Model::parse(&blob).unwrap();
    let mut rng = Rng::new(0x1A9);
    let input = rng.i8s(model.input().len());
    let mut run_out = vec![0i8; model.output().len()];
    let mut arena = vec![0u8; model.arena_size()];
    let mut by_run = Recorder::default();
    model
        .run_observed(&mut arena, &input, &mut run_out, &mut by_run)
        .unwrap();

    let mut dirty = vec![0xA5u8; model.arena_size() + 7];
    let slot = model.input_mut(&mut dirty).unwrap();
    assert_eq!(slot.len(), input.len());
    slot.copy_from_slice(&input);
    let mut by_invoke = Recorder::default();
    let mut invoke_out = vec![0i8; model.output().len()];
    model
        .invoke_observed(&mut dirty, &mut invoke_out, &mut by_invoke)
        .unwrap();
    assert_eq!(invoke_out, run_out);
    assert_eq!(by_invoke.ended, by_run.ended);
    assert!(run_out.iter().any(|&v| v != run_out[0]), "{run_out:?}");

    // The ops may overwrite the input slot: each inference writes its input again.
    model.input_mut(&mut dirty).unwrap().copy_from_slice(&input);
    model.invoke(&mut dirty, &mut invoke_out).unwrap();
    assert_eq!(invoke_out, run_out);
}

#[test]
fn input_mut_and_invoke_reject_wrong_buffers() {
    let blob = crate::testblob::tiny_cbam_blob();
    let model = Model::parse(&blob).unwrap();
    let needed = model.arena_size();
    let mut small = vec![0u8; needed - 1];
    let too_small = Error::ArenaBufferTooSmall {
        needed,
        found: needed - 1,
    };
    assert_eq!(model.input_mut(&mut small).err(), Some(too_small));
    let mut out = vec![0i8; 10];
    assert_eq!(model.invoke(&mut small, &mut out), Err(too_small));
    let mut arena = vec![0u8; needed];
    assert_eq!(
        model.invoke(&mut arena, &mut out[1..]),
        Err(Error::OutputLength {
            expected: 10,
            found: 9
        })
    );
}

#[test]
fn split_keeps_inputs_readable_around_output_and_scratch() {
    let mut arena: Vec<u8> = (0..20).collect();
    let view = split(
        &mut arena,
        Span { start: 10, len: 4 },
        Span { start: 2, len: 3 },
    )
    .unwrap();
    assert_eq!(view.out, &[10, 11, 12, 13]);
    assert_eq!(view.scratch, &[2, 3, 4]);
    assert_eq!(
        view.gaps.read(Span { start: 5, len: 5 }),
        Some(&[5, 6, 7, 8, 9][..])
    );
    assert_eq!(
        view.gaps.read(Span { start: 14, len: 6 }),
        Some(&[14, 15, 16, 17, 18, 19][..])
    );
    assert_eq!(view.gaps.read(Span { start: 0, len: 2 }), Some(&[0, 1][..]));
    assert_eq!(view.gaps.read(Span { start: 9, len: 2 }), None);
    assert_eq!(view.gaps.read(Span { start: 19, len: 2 }), None);
    assert!(split(
        &mut arena,
        Span { start: 10, len: 4 },
        Span { start: 12, len: 3 }
    )
    .is_none());
    assert!(split(
        &mut arena,
        Span { start: 18, len: 4 },
        Span { start: 0, len: 0 }
    )
    .is_none());
}

/// A run split at any op boundary, its arena carried over to another buffer (as a caller
/// that keeps the state and resumes later would), ends bit for bit where one invoke does.
#[test]
fn invoke_ops_resumed_at_every_boundary_matches_invoke() {
    let blob = crate::testblob::all_ops_blob();
    let model = Model::parse(&blob).unwrap();
    let input: Vec<i8> = (0..model.input().len())
        .map(|i| (i * 29 % 256) as u8 as i8)
        .collect();
    let mut arena = vec![0u8; model.arena_size()];
    let mut whole = vec![0i8; model.output().len()];
    model.run(&mut arena, &input, &mut whole).unwrap();
    let n = model.n_ops();
    for split in 0..=n {
        let mut first = vec![0x5Au8; model.arena_size()];
        model.input_mut(&mut first).unwrap().copy_from_slice(&input);
        model.invoke_ops(&mut first, 0..split).unwrap();
        let mut second = first.clone();
        first.fill(0xC3);
        let mut rec = Recorder::default();
        model
            .invoke_ops_observed(&mut second, split..n, &mut rec)
            .unwrap();
        assert_eq!(rec.ended.len(), n - split, "split at {split}");
        let out = crate::blob::tensor_span(model.blob, &model.header, model.header.output_tensor)
            .unwrap();
        let resumed: Vec<i8> = as_i8(&second[out.start..out.start + out.len]).to_vec();
        assert_eq!(resumed, whole, "split at {split}");
    }
}

#[test]
fn invoke_ops_rejects_ranges_past_the_op_table() {
    let blob = crate::testblob::tiny_cbam_blob();
    let model = Model::parse(&blob).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let n = model.n_ops();
    assert_eq!(
        model.invoke_ops(&mut arena, 0..n + 1),
        Err(Error::BadOpRange {
            start: 0,
            end: n + 1
        })
    );
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 2..1;
    assert_eq!(
        model.invoke_ops(&mut arena, backwards),
        Err(Error::BadOpRange { start: 2, end: 1 })
    );
    assert_eq!(model.invoke_ops(&mut arena, n..n), Ok(()));
}
