use std::vec;
use std::vec::Vec;

use super::{RowShare, Split, MAX_SHARES};
use crate::error::Error;
use crate::format::{AddWords, DepthwiseWords, LutWords, OpParams};
use crate::kernels::test_support::Rng;
use crate::kernels::ConvGeometry;
use crate::testblob::{
    act_words, all_ops_blob, channel_quant, conv_params, conv_words, pool_words, rq, sigmoid_lut,
    tiny_cbam_blob, BlobBuilder,
};
use crate::Model;

fn whole(model: &Model, input: &[i8]) -> Vec<i8> {
    let mut arena = vec![0u8; model.arena_size()];
    let mut out = vec![0i8; model.output().len()];
    model.run(&mut arena, input, &mut out).unwrap();
    out
}

/// Runs `model` split with `exec`; the arena starts dirty, as a reused one does.
fn split_run(
    model: &Model,
    input: &[i8],
    shares: usize,
    exec: &mut impl FnMut(&mut [RowShare<'_>]),
) -> Result<Vec<i8>, Error> {
    let mut arena = vec![0x5Au8; model.arena_size()];
    let mut out = vec![0i8; model.output().len()];
    let split = Split {
        shares,
        min_share_work: 1,
        min_share_pixels: 1,
    };
    model.run_split(&mut arena, input, &mut out, split, exec)?;
    Ok(out)
}

/// Shares run last to first, so no share can lean on an earlier one's rows.
fn backwards(shares: &mut [RowShare<'_>]) {
    shares.iter_mut().rev().for_each(RowShare::run);
}

fn threaded(shares: &mut [RowShare<'_>]) {
    std::thread::scope(|s| {
        for share in shares.iter_mut() {
            s.spawn(move || share.run());
        }
    });
}

/// Convolutions with padding, stride, dilation and odd heights, a depthwise conv, a
/// residual ADD in place and out of place, a pool and a LUT: every row-local kind.
fn row_local_blob(seed: u64, h: usize, w: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut b = BlobBuilder::new();
    let input = b.tensor((h, w, 3), 1.0 / 255.0, -128);
    b.input = input;
    let g1 = ConvGeometry::square(3, 1);
    let (h1, w1) = g1.output_size(h, w).unwrap();
    let c1 = b.tensor((h1, w1, 8), 0.05, -3);
    let p = conv_params(&mut b, &mut rng, g1, 3, 8, (-128, 127));
    b.op(&[input], c1, OpParams::Conv2d(p));
    let g2 = ConvGeometry {
        stride_h: 2,
        stride_w: 2,
        ..ConvGeometry::square(5, 2)
    };
    let (h2, w2) = g2.output_size(h1, w1).unwrap();
    let c2 = b.tensor((h2, w2, 16), 0.05, 4);
    let p = conv_params(&mut b, &mut rng, g2, 8, 16, (-100, 127));
    b.op(&[c1], c2, OpParams::Conv2d(p));
    let g3 = ConvGeometry {
        dil_h: 2,
        dil_w: 2,
        ..ConvGeometry::square(3, 2)
    };
    let dw = b.tensor((h2, w2, 16), 0.05, 1);
    let weights = b.i8s(&rng.i8s(9 * 16));
    let channels = channel_quant(&mut b, &mut rng, 16, (-10, -7));
    let p = DepthwiseWords {
        conv: conv_words(&g3, (-128, 127), weights, channels),
        depth_multiplier: 1,
    };
    b.op(&[c2], dw, OpParams::DepthwiseConv2d(p));
    let add_words = |rng: &mut Rng| AddWords {
        left_shift: 20,
        in1: rq(rng, -1),
        in2: rq(rng, -1),
        out: rq(rng, -19),
        act: act_words((-128, 127)),
    };
    let sum = b.tensor((h2, w2, 16), 0.06, 0);
    let p = add_words(&mut rng);
    b.op(&[c2, dw], sum, OpParams::Add(p));
    let sum2 = b.alias_tensor(sum, 0.07, 2);
    let p = add_words(&mut rng);
    b.op(&[sum, c2], sum2, OpParams::Add(p));
    let gp = ConvGeometry {
        stride_h: 2,
        stride_w: 2,
        ..ConvGeometry::square(3, 1)
    };
    let (h3, w3) = gp.output_size(h2, w2).unwrap();
    let pooled = b.tensor((h3, w3, 16), 0.07, 2);
    b.op(
        &[sum2],
        pooled,
        OpParams::MaxPool2d(pool_words(&gp, (-128, 127))),
    );
    let sig = b.tensor((h3, w3, 16), 1.0 / 256.0, -128);
    let lut_off = b.i8s(&sigmoid_lut());
    b.op(&[pooled], sig, OpParams::Sigmoid(LutWords { lut_off }));
    b.output = sig;
    b.build()
}

#[test]
fn any_share_count_gives_the_whole_run_bit_for_bit() {
    let mut rng = Rng::new(7);
    let blobs = [
        row_local_blob(1, 13, 11),
        row_local_blob(2, 9, 6),
        row_local_blob(3, 32, 5),
        all_ops_blob(),
        tiny_cbam_blob(),
    ];
    for blob in &blobs {
        let model = Model::parse(blob).unwrap();
        let mut input = vec![0i8; model.input().len()];
        rng.fill(&mut input);
        let expected = whole(&model, &input);
        for shares in [1, 2, 3, 4, 5, 7, MAX_SHARES, 64] {
            let got = split_run(&model, &input, shares, &mut backwards).unwrap();
            assert_eq!(got, expected, "{shares} shares, run backwards");
        }
        let got = split_run(&model, &input, 3, &mut threaded).unwrap();
        assert_eq!(got, expected, "3 shares on threads");
    }
}

#[test]
fn row_local_ops_are_cut_and_others_run_whole() {
    let blob = row_local_blob(4, 16, 8);
    let model = Model::parse(&blob).unwrap();
    let input = vec![3i8; model.input().len()];
    let mut cuts: Vec<Vec<core::ops::Range<usize>>> = Vec::new();
    split_run(&model, &input, 3, &mut |shares: &mut [RowShare<'_>]| {
        cuts.push(shares.iter().map(RowShare::rows).collect());
        shares.iter_mut().for_each(RowShare::run);
    })
    .unwrap();
    // Seven ops, all row-local; the first conv's 16 rows in three shares.
    assert_eq!(cuts.len(), 7);
    assert_eq!(cuts[0], vec![0..5, 5..10, 10..16]);

    let blob = all_ops_blob();
    let model = Model::parse(&blob).unwrap();
    let input = vec![3i8; model.input().len()];
    let mut calls = 0;
    split_run(&model, &input, 2, &mut |shares: &mut [RowShare<'_>]| {
        calls += 1;
        shares.iter_mut().for_each(RowShare::run);
    })
    .unwrap();
    // conv, depthwise, two pools, two sigmoids, the spatial conv, the 1x1 conv, the add and
    // CBAM's three later steps; not concat, mul, channel pool, the global pools or FC.
    assert_eq!(calls, 12);
}

#[test]
fn small_ops_run_whole() {
    let blob = row_local_blob(5, 16, 8);
    let model = Model::parse(&blob).unwrap();
    let input = vec![3i8; model.input().len()];
    let expected = whole(&model, &input);
    // (least work, fewest pixels per share) -> the shares of each op that is cut.
    let cases: [((u64, usize), &[usize]); 4] = [
        ((u64::MAX, 1), &[]),
        ((1, usize::MAX), &[]),
        // The first conv has 16x8 pixels, the rest 8x4 or 4x2.
        ((1, 40), &[3]),
        ((1, 16), &[4, 2, 2, 2, 2]),
    ];
    for ((min_share_work, min_share_pixels), want) in cases {
        let mut arena = vec![0u8; model.arena_size()];
        let mut out = vec![0i8; model.output().len()];
        let mut cuts = Vec::new();
        let split = Split {
            shares: 4,
            min_share_work,
            min_share_pixels,
        };
        let mut exec = |shares: &mut [RowShare<'_>]| {
            cuts.push(shares.len());
            shares.iter_mut().for_each(RowShare::run);
        };
        model
            .run_split(&mut arena, &input, &mut out, split, &mut exec)
            .unwrap();
        assert_eq!(cuts, want, "{min_share_work} {min_share_pixels}");
        assert_eq!(out, expected);
    }
}

#[test]
fn an_executor_that_skips_a_share_is_an_error() {
    let blob = row_local_blob(6, 12, 7);
    let model = Model::parse(&blob).unwrap();
    let input = vec![0i8; model.input().len()];
    let err = split_run(&model, &input, 2, &mut |shares: &mut [RowShare<'_>]| {
        if let Some(first) = shares.first_mut() {
            first.run();
        }
    })
    .unwrap_err();
    assert_eq!(err, Error::ShareNotRun { op: 0 });
}

#[test]
fn wrong_buffers_are_errors() {
    let blob = row_local_blob(7, 12, 7);
    let model = Model::parse(&blob).unwrap();
    let input = vec![0i8; model.input().len()];
    let split = Split {
        shares: 2,
        min_share_work: 1,
        min_share_pixels: 1,
    };
    let mut arena = vec![0u8; model.arena_size()];
    let mut out = vec![0i8; model.output().len() + 1];
    let err = model
        .run_split(&mut arena, &input, &mut out, split, &mut backwards)
        .unwrap_err();
    assert!(matches!(err, Error::OutputLength { .. }));
    let mut out = vec![0i8; model.output().len()];
    let err = model
        .run_split(&mut arena, &input[1..], &mut out, split, &mut backwards)
        .unwrap_err();
    assert!(matches!(err, Error::InputLength { .. }));
    let mut small = vec![0u8; model.arena_size() - 1];
    let err = model
        .run_split(&mut small, &input, &mut out, split, &mut backwards)
        .unwrap_err();
    assert!(matches!(err, Error::ArenaBufferTooSmall { .. }));
}

/// Every op's output and every attention map, as an observer sees them.
#[derive(Default, PartialEq, Debug)]
struct Seen {
    outputs: Vec<(usize, Vec<i8>)>,
    attention: Vec<(usize, Vec<i8>, Vec<i8>)>,
}

impl crate::Observer for Seen {
    fn op_end(&mut self, index: usize, _: crate::OpCode, output: &[i8]) {
        self.outputs.push((index, output.to_vec()));
    }

    fn cbam_attention(&mut self, index: usize, channel: &[i8], spatial: &[i8], _: usize, _: usize) {
        self.attention
            .push((index, channel.to_vec(), spatial.to_vec()));
    }
}

#[test]
fn an_observer_sees_what_it_sees_in_a_whole_run() {
    let blob = all_ops_blob();
    let model = Model::parse(&blob).unwrap();
    let mut input = vec![0i8; model.input().len()];
    Rng::new(9).fill(&mut input);
    let mut arena = vec![0u8; model.arena_size()];
    let mut out = vec![0i8; model.output().len()];
    let mut whole = Seen::default();
    model
        .run_observed(&mut arena, &input, &mut out, &mut whole)
        .unwrap();
    let mut split = Seen::default();
    let cut = Split {
        shares: 3,
        min_share_work: 1,
        min_share_pixels: 1,
    };
    model
        .run_split_observed(&mut arena, &input, &mut out, cut, &mut threaded, &mut split)
        .unwrap();
    assert_eq!(split, whole);
    assert_eq!(whole.outputs.len(), 18);
    assert_eq!(whole.attention.len(), 1);
}
