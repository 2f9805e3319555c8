//! The instruction sets' arithmetic ([`Isa`]) and the host CONV2D's choice of cases,
//! instantiated per instruction set by [`isa_tests!`]; the shared backend suite covers the
//! kernels built on them. Run on x86_64 natively and on aarch64 under qemu-user
//! (`cargo test -p cbam-core --target aarch64-unknown-linux-gnu`).

use super::isa::{ChannelBlock, DotIsa, Isa, TensorRequant, BLOCK};
use super::{conv, depthwise, gemm};
use crate::kernels::conv2d::{general, pointwise};
use crate::kernels::requant::OutputRequant;
use crate::kernels::test_support::{
    add_reference, depthwise_reference, random_conv_shapes, QuantData, Rng,
};
use crate::kernels::{AddParams, Conv2dParams, ConvGeometry, DepthwiseParams, Shape};
use crate::math::{ActRange, Requant};
use std::vec::Vec;

/// `#[test]`s of the instruction set `$isa`, which the machine must have (every x86_64
/// CPU they run on has AVX2, and NEON is aarch64's baseline), so that they cannot pass by
/// testing nothing.
macro_rules! isa_tests {
    ($isa:ty) => {
        fn isa() -> $isa {
            <$isa as $crate::kernels::backend::simd::Isa>::detect()
                .expect("this machine lacks the instruction set under test")
        }
        $crate::kernels::backend::simd::tests::isa_tests!(@each isa;
            conv2d_takes_the_cases_it_is_exact_for,
            conv2d_declines_windows_past_its_buffer,
            gemm_matches_portable_on_long_windows,
            first_layers_match_portable,
            prepacked_weights_give_the_same_bits,
            pack_panels_matches_portable,
            depthwise_takes_model_layers,
            depthwise_takes_extreme_bytes,
            requant_matches_output_requant_at_the_extremes,
            widen_adds_the_offset_over_any_length,
            cbam_scalings_match_requantize_to_i8,
            channel_sums_match_scalar_loops,
            two_channel_maps_to_one_channel_match_portable,
            output_stages_match_portable_at_the_short_form_bounds,
            depthwise_borders_match_reference_on_wide_and_dilated_maps,
            add_matches_reference_around_tflite_constants,
            cbam_map_scalings_match_requantize_to_i8,
        );
    };
    (@each $isa:ident; $($test:ident),+ $(,)?) => {$(
        #[test]
        fn $test() {
            $crate::kernels::backend::simd::tests::$test($isa());
        }
    )+};
}
pub(crate) use isa_tests;

/// The CONV2D kernel's own paths, which on the hosts run the portable inner products.
fn portable(p: &Conv2dParams, ins: Shape, input: &[i8], outs: Shape) -> Vec<i8> {
    let mut out = std::vec![0i8; outs.len().unwrap_or(0)];
    if p.geometry.is_pointwise() {
        pointwise(p, ins.c, input, outs.c, &mut out);
    } else {
        general(p, ins, input, outs, &mut out);
    }
    out
}

fn conv_case(rng: &mut Rng, b: impl Isa) {
    let Some((g, ins, outs)) = random_conv_shapes(rng) else {
        return;
    };
    let (in_c, out_c) = (ins.c, outs.c);
    let input = rng.i8s(ins.len().unwrap_or(0));
    let weights = rng.i8s(out_c * g.kh * g.kw * in_c);
    let qt = QuantData::extreme(rng, out_c);
    let bytes = qt.bytes();
    let p = Conv2dParams {
        packed: &[],
        geometry: g,
        weights: &weights,
        quant: qt.channel_quant(&bytes),
    };
    let mut fast = std::vec![0i8; outs.len().unwrap_or(0)];
    let taken = conv::conv2d(b, &p, ins, &input, outs, &mut fast);
    let in_range = (-32_639..=32_639).contains(&qt.in_zp) && qt.out_zp.abs() <= 1 << 16;
    assert_eq!(taken, in_range && g.kh * g.kw * in_c <= conv::MAX_WINDOW);
    if taken {
        assert_eq!(
            fast,
            portable(&p, ins, &input, outs),
            "{g:?} {ins:?} {outs:?} in_zp={} out_zp={}",
            qt.in_zp,
            qt.out_zp
        );
        let packed = prepacked(b, &p, (ins, outs));
        let p = Conv2dParams {
            packed: &packed,
            ..p
        };
        let mut again = std::vec![0i8; fast.len()];
        assert!(conv::conv2d(b, &p, ins, &input, outs, &mut again));
        assert_eq!(again, fast, "prepacked: {g:?} {ins:?} {outs:?}");
    }
}

/// The layer's weights packed ahead of time, as the kernel would on each call.
fn prepacked(b: impl Isa, p: &Conv2dParams, shapes: (Shape, Shape)) -> Vec<i32> {
    let mut packed = std::vec![0i32; conv::prepack(b, p, shapes, &mut [])];
    let len = packed.len();
    assert_eq!(conv::prepack(b, p, shapes, &mut packed), len);
    packed
}

/// Weights packed ahead of time give the bits of weights packed per call, on the paths
/// that pack (in place, padded copy, gathered, 1x1, several channel blocks); the kernel
/// reads them (spoiled ones change the output) and ignores a packing made for another
/// layer.
pub(crate) fn prepacked_weights_give_the_same_bits(b: impl Isa) {
    let mut rng = Rng::new(0x9ACC);
    // (h, w, in_c, out_c, k, stride, pad)
    let cases = [
        (28, 28, 1, 24, 3, 1, 1),
        (32, 32, 3, 16, 3, 2, 1),
        (14, 14, 24, 32, 3, 1, 1),
        (14, 14, 32, 150, 3, 1, 0),
        (12, 12, 40, 72, 1, 1, 0),
        (16, 16, 16, 20, 5, 2, 2),
    ];
    let mut other = Vec::new();
    for (h, w, in_c, out_c, k, stride, pad) in cases {
        let g = ConvGeometry {
            stride_h: stride,
            stride_w: stride,
            ..ConvGeometry::square(k, pad)
        };
        let ins = Shape::new(h, w, in_c);
        let (oh, ow) = g.output_size(h, w).expect("a valid case");
        let outs = Shape::new(oh, ow, out_c);
        let input = rng.i8s(ins.len().unwrap_or(0));
        let weights = rng.i8s(out_c * k * k * in_c);
        let mut qt = QuantData::random(&mut rng, out_c);
        qt.in_zp = rng.int(-128, 127);
        let bytes = qt.bytes();
        let p = Conv2dParams {
            packed: &[],
            geometry: g,
            weights: &weights,
            quant: qt.channel_quant(&bytes),
        };
        let run = |packed: &[i32]| {
            let p = Conv2dParams { packed, ..p };
            let mut out = std::vec![0i8; outs.len().unwrap_or(0)];
            assert!(conv::conv2d(b, &p, ins, &input, outs, &mut out));
            out
        };
        let per_call = run(&[]);
        assert_eq!(
            per_call,
            portable(&p, ins, &input, outs),
            "{ins:?} {outs:?}"
        );
        let mut packed = prepacked(b, &p, (ins, outs));
        assert!(!packed.is_empty(), "{ins:?} {outs:?} packs nothing");
        assert_eq!(run(&packed), per_call, "{ins:?} {outs:?}");
        assert_eq!(
            run(&other),
            per_call,
            "{ins:?} {outs:?}, another layer's packing"
        );
        for w in packed.iter_mut().skip(4) {
            *w = w.wrapping_add(0x0101_0101);
        }
        assert_ne!(run(&packed), per_call, "{ins:?} {outs:?}: packing not read");
        other = packed;
    }
}

/// The vector CONV2D takes every case its arithmetic is exact for and its buffer holds,
/// and no other; what it takes matches the portable kernel.
pub(crate) fn conv2d_takes_the_cases_it_is_exact_for(b: impl Isa) {
    let mut rng = Rng::new(0x51DC0);
    for _ in 0..600 {
        conv_case(&mut rng, b);
    }
}

/// The depthwise layers of a MobileNetV2-style network (3x3, stride 1 or 2, channel
/// counts around the 16-channel groups and the 128-channel blocks) take the SIMD path and
/// match the reference.
pub(crate) fn depthwise_takes_model_layers(b: impl Isa) {
    let mut rng = Rng::new(0xD3E9);
    for (c, stride) in [
        (16, 1),
        (64, 2),
        (96, 1),
        (24, 2),
        (160, 1),
        (150, 2),
        (7, 1),
    ] {
        let g = ConvGeometry {
            stride_h: stride,
            stride_w: stride,
            ..ConvGeometry::square(3, 1)
        };
        let ins = Shape::new(6, 5, c);
        let (oh, ow) = g.output_size(ins.h, ins.w).unwrap();
        let outs = Shape::new(oh, ow, c);
        let input = rng.i8s(ins.len().unwrap());
        let weights = rng.i8s(9 * c);
        let qt = QuantData::random(&mut rng, c);
        let bytes = qt.bytes();
        let p = DepthwiseParams {
            geometry: g,
            depth_multiplier: 1,
            weights: &weights,
            quant: qt.channel_quant(&bytes),
        };
        let mut got = std::vec![0i8; outs.len().unwrap()];
        let mut want = got.clone();
        assert!(
            depthwise::depthwise(b, &p, ins, &input, outs, &mut got),
            "c={c}"
        );
        depthwise_reference(&g, &qt, (ins, &input), &weights, (outs, &mut want));
        assert_eq!(got, want, "c={c} stride={stride}");
    }
}

/// Depthwise weights and inputs at -128, where the two products of a tap pair no longer
/// fit 16 bits (a backend that multiplies bytes must see them and take another path), and
/// at +-127 beside them: half the channels have the extreme weight on their first two
/// taps and zero on the others, and the extreme input everywhere, with an output stage
/// (x / 2048, no clamp) under which a wrapped pair sum shows.
pub(crate) fn depthwise_takes_extreme_bytes(b: impl Isa) {
    let mut rng = Rng::new(0xD3EA);
    for (w_fill, x_fill) in [(-128, -128), (-127, -128), (127, -128), (-128, 127)] {
        let c = 32;
        let g = ConvGeometry::square(3, 1);
        let ins = Shape::new(9, 9, c);
        let outs = Shape::new(9, 9, c);
        let mut input = rng.i8s(ins.len().unwrap());
        let mut weights = rng.i8s(9 * c);
        for (i, x) in input.iter_mut().enumerate() {
            if i % c < c / 2 {
                *x = x_fill;
            }
        }
        for (i, w) in weights.iter_mut().enumerate() {
            if i % c < c / 2 {
                *w = if i / c < 2 { w_fill } else { 0 };
            }
        }
        let mut qt = QuantData::random(&mut rng, c);
        qt.act = ActRange::FULL;
        qt.in_zp = 0;
        qt.out_zp = 0;
        qt.bias[..c].fill(0);
        qt.mult[..c].fill(1 << 30);
        qt.shift[..c].fill(-10);
        let bytes = qt.bytes();
        let p = DepthwiseParams {
            geometry: g,
            depth_multiplier: 1,
            weights: &weights,
            quant: qt.channel_quant(&bytes),
        };
        let mut got = std::vec![0i8; outs.len().unwrap()];
        let mut want = got.clone();
        assert!(depthwise::depthwise(b, &p, ins, &input, outs, &mut got));
        depthwise_reference(&g, &qt, (ins, &input), &weights, (outs, &mut want));
        assert_eq!(got, want, "weights {w_fill}, inputs {x_fill}");
    }
}

/// The matrix product over long windows (several blocks of packed weights, odd tap
/// counts, channel counts past whole panels, windows just inside and just past its
/// buffer) and with output zero points at the edges of its narrow output stage matches
/// the portable kernel.
pub(crate) fn gemm_matches_portable_on_long_windows(b: impl Isa) {
    let mut rng = Rng::new(0x6E33);
    let cases = [
        (1023, 37, 1, 32_640),
        (2048, 17, 1, -32_640),
        (2049, 5, 1, 3),
        (255, 150, 1, 32_641),
        (96, 24, 1, -32_641),
        (160, 40, 1, 0),
        (113, 33, 3, 5),
        (227, 19, 3, -3),
        (228, 3, 3, -128),
        (3, 16, 3, 127),
    ];
    for (in_c, out_c, k, out_zp) in cases {
        let g = ConvGeometry::square(k, k / 2);
        let ins = Shape::new(rng.range(1, 5), rng.range(1, 7), in_c);
        let (oh, ow) = g.output_size(ins.h, ins.w).unwrap_or((0, 0));
        let outs = Shape::new(oh, ow, out_c);
        let input = rng.i8s(ins.len().unwrap_or(0));
        let weights = rng.i8s(out_c * k * k * in_c);
        let mut qt = QuantData::extreme(&mut rng, out_c);
        qt.out_zp = out_zp;
        qt.in_zp = qt.in_zp.clamp(-32_639, 32_639);
        // The whole int8 range, and values far past it, so that a zero point at the
        // edge decides outputs.
        qt.act = ActRange::from_words(-128, 127);
        for (m, s) in qt.mult.iter_mut().zip(qt.shift.iter_mut()).take(out_c) {
            (*m, *s) = (i32::MAX - rng.int(0, 1 << 20), rng.int(-8, 4));
        }
        let bytes = qt.bytes();
        let p = Conv2dParams {
            packed: &[],
            geometry: g,
            weights: &weights,
            quant: qt.channel_quant(&bytes),
        };
        let mut fast = std::vec![0i8; outs.len().unwrap_or(0)];
        assert!(
            conv::conv2d(b, &p, ins, &input, outs, &mut fast),
            "{ins:?} {outs:?}"
        );
        assert_eq!(
            fast,
            portable(&p, ins, &input, outs),
            "{ins:?} {outs:?} k={k} out_zp={out_zp}"
        );
    }
}

/// The layers of few input channels (a network's first ones), whose windows the dot
/// products read where they lie: stems of 1, 3 and 6 channels, strides, a 7x7 window,
/// dilated rows, row runs of every length modulo 4, two channel blocks, one pixel, the
/// longest window and the largest input the in-place product takes and the ones just
/// past them (which gather), against the portable kernel.
pub(crate) fn first_layers_match_portable(b: impl Isa) {
    let mut rng = Rng::new(0x57E3);
    // (h, w, in_c, out_c, k, stride, pad, dil_h)
    let cases = [
        (33, 31, 3, 16, 3, 2, 1, 1),
        (32, 32, 3, 6, 3, 1, 1, 1),
        (16, 16, 6, 8, 3, 1, 1, 1),
        (28, 28, 1, 24, 3, 1, 1, 1),
        (12, 9, 3, 160, 3, 1, 1, 1),
        (20, 21, 3, 24, 7, 2, 3, 1),
        (15, 13, 5, 19, 3, 1, 0, 2),
        (9, 11, 7, 17, 5, 1, 2, 1),
        (10, 7, 2, 5, 1, 2, 0, 1),
        (1, 1, 3, 4, 3, 1, 1, 1),
        (8, 8, 28, 20, 3, 1, 1, 1),
        (8, 8, 29, 20, 3, 1, 1, 1),
        (12, 11, 128, 20, 3, 1, 1, 1),
        (12, 11, 129, 20, 3, 1, 1, 1),
        (96, 108, 3, 8, 3, 2, 1, 1),
        (96, 110, 3, 8, 3, 2, 1, 1),
    ];
    for (h, w, in_c, out_c, k, stride, pad, dil_h) in cases {
        let g = ConvGeometry {
            stride_h: stride,
            stride_w: stride,
            dil_h,
            ..ConvGeometry::square(k, pad)
        };
        let ins = Shape::new(h, w, in_c);
        let (oh, ow) = g.output_size(h, w).expect("a valid case");
        let outs = Shape::new(oh, ow, out_c);
        let input = rng.i8s(ins.len().unwrap_or(0));
        let weights = rng.i8s(out_c * k * k * in_c);
        let mut qt = QuantData::random(&mut rng, out_c);
        qt.in_zp = rng.int(-128, 127);
        let bytes = qt.bytes();
        let p = Conv2dParams {
            packed: &[],
            geometry: g,
            weights: &weights,
            quant: qt.channel_quant(&bytes),
        };
        let mut fast = std::vec![0i8; outs.len().unwrap_or(0)];
        assert!(
            conv::conv2d(b, &p, ins, &input, outs, &mut fast),
            "{ins:?} {outs:?} k={k}"
        );
        assert_eq!(
            fast,
            portable(&p, ins, &input, outs),
            "{ins:?} {outs:?} k={k}"
        );
    }
}

/// The instruction set's weight packing gives the portable packing's words, for any
/// window length and any number of channels (partial panels, partial 16-byte chunks).
pub(crate) fn pack_panels_matches_portable(b: impl Isa) {
    let mut rng = Rng::new(0x9AC4);
    for _ in 0..300 {
        let per_out = rng.range(1, 80);
        let n = rng.range(1, 50);
        let pairs = per_out.div_ceil(2);
        let panels = n.div_ceil(gemm::PANEL);
        let weights = rng.i8s(n * per_out);
        let len = panels * pairs * gemm::PANEL;
        let (mut got, mut want) = (std::vec![7i32; len], std::vec![-7i32; len]);
        b.pack_panels(&weights, per_out, pairs, &mut got);
        gemm::pack(&weights, per_out, pairs, &mut want);
        assert_eq!(got, want, "per_out={per_out} n={n}");
    }
}

/// A [`DotIsa`]'s packing against [`gemm::pack_quads`]: the panels and the weight sums.
pub(crate) fn dot_pack_matches_portable(d: impl DotIsa) {
    let mut rng = Rng::new(0x9AC5);
    for _ in 0..300 {
        let per_out = rng.range(1, 80);
        let n = rng.range(1, 50);
        let quads = per_out.div_ceil(4);
        let panels = n.div_ceil(gemm::PANEL);
        let weights = rng.i8s(n * per_out);
        let len = panels * quads * gemm::PANEL;
        let (mut got, mut want) = (std::vec![7i32; len], std::vec![-7i32; len]);
        let (mut got_sums, mut want_sums) = ([3i32; BLOCK], [-3i32; BLOCK]);
        d.pack(&weights, per_out, quads, &mut got, &mut got_sums);
        gemm::pack_quads(&weights, per_out, quads, &mut want, &mut want_sums);
        assert_eq!(got, want, "per_out={per_out} n={n}");
        assert_eq!(got_sums[..n], want_sums[..n], "per_out={per_out} n={n}");
    }
}

pub(crate) fn conv2d_declines_windows_past_its_buffer(b: impl Isa) {
    let g = ConvGeometry::square(3, 1);
    let ins = Shape::new(2, 2, conv::MAX_WINDOW / 9 + 1);
    let qt = QuantData::random(&mut Rng::new(5), 1);
    let bytes = qt.bytes();
    let weights = std::vec![1i8; 9 * ins.c];
    let p = Conv2dParams {
        packed: &[],
        geometry: g,
        weights: &weights,
        quant: qt.channel_quant(&bytes),
    };
    let mut out = [0i8; 4];
    assert!(!conv::conv2d(
        b,
        &p,
        ins,
        &std::vec![0; 4 * ins.c],
        Shape::new(2, 2, 1),
        &mut out
    ));
}

pub(crate) fn requant_matches_output_requant_at_the_extremes(b: impl Isa) {
    let mut rng = Rng::new(0x2E9);
    let edges = [
        i32::MIN,
        i32::MIN + 1,
        -65_536,
        -1,
        0,
        1,
        65_536,
        i32::MAX - 1,
        i32::MAX,
    ];
    for round in 0..4000 {
        let n = rng.range(1, 13);
        let acc: Vec<i32> = (0..n)
            .map(|_| match rng.range(0, 3) {
                0 => *edges.get(rng.range(0, edges.len())).unwrap_or(&0),
                1 => rng.int(-100_000, 100_000),
                _ => rng.next_u64() as i32,
            })
            .collect();
        let mult: Vec<i32> = (0..n)
            .map(|_| match rng.range(0, 3) {
                0 => *edges.get(rng.range(0, edges.len())).unwrap_or(&0),
                _ => rng.next_u64() as i32,
            })
            .collect();
        let shift: Vec<i32> = (0..n).map(|_| rng.int(-40, 40)).collect();
        let zp = if round % 2 == 0 {
            rng.int(-128, 127)
        } else {
            rng.int(-(1 << 16), 1 << 16)
        };
        let act = ActRange::from_words(rng.int(-130, 130), rng.int(-130, 130));
        let words = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let zeros = words(&std::vec![0; n]);
        let (m, s) = (words(&mult), words(&shift));
        let q = crate::kernels::ChannelQuant {
            in_zp: 0,
            out_zp: zp,
            act,
            bias: crate::le::I32Le::new(&zeros),
            mult: crate::le::I32Le::new(&m),
            shift: crate::le::I32Le::new(&s),
        };
        let block = ChannelBlock::new(&q, 0, n);
        let mut fast = std::vec![0i8; n];
        b.requant(&acc, &block, &mut fast);
        for i in 0..n {
            let rq = OutputRequant::new(Requant::new(mult[i], shift[i]), zp, act);
            assert_eq!(
                fast[i],
                rq.apply(acc[i]),
                "acc={} mult={} shift={} zp={zp} {act:?}",
                acc[i],
                mult[i],
                shift[i]
            );
        }
    }
}

pub(crate) fn widen_adds_the_offset_over_any_length(b: impl Isa) {
    let mut rng = Rng::new(0x1D);
    for _ in 0..500 {
        let n = rng.range(0, 80);
        let src = rng.i8s(n);
        let offset = rng.int(-32_639, 32_639) as i16;
        let extra = rng.range(0, 20);
        let mut dst = std::vec![7i16; n + extra];
        b.widen(&mut dst, &src, offset);
        for (i, &d) in dst.iter().enumerate() {
            let expected = src.get(i).map_or(7, |&s| i16::from(s) + offset);
            assert_eq!(d, expected, "n={n} i={i}");
        }
    }
}

/// A per-tensor requantizer anywhere in the encodable range, with the extremes mixed in.
fn tensor_requant(rng: &mut Rng) -> (Requant, i32) {
    let mult = match rng.range(0, 4) {
        0 => *[0, 1, 1 << 30, i32::MAX].get(rng.range(0, 4)).unwrap_or(&0),
        _ => rng.int(0, i32::MAX),
    };
    let shift = match rng.range(0, 3) {
        0 => rng.int(-31, 30),
        _ => rng.int(-22, 0),
    };
    let zp = match rng.range(0, 4) {
        0 => rng.int(-(1 << 16), 1 << 16),
        _ => rng.int(-128, 127),
    };
    (Requant::new(mult, shift), zp)
}

fn scaled(v: i8, zp: i8, a: i8, rq: Requant, out_zp: i32) -> i8 {
    let prod = (i32::from(v) - i32::from(zp)) * (i32::from(a) + 128);
    crate::math::requantize_to_i8(prod, rq, out_zp, ActRange::FULL)
}

pub(crate) fn cbam_scalings_match_requantize_to_i8(b: impl Isa) {
    let mut rng = Rng::new(0xCBA);
    for _ in 0..3000 {
        let n = rng.range(0, 90);
        let (rq, out_zp) = tensor_requant(&mut rng);
        let Some(t) = TensorRequant::new(rq, out_zp) else {
            panic!("zero point {out_zp} refused");
        };
        let (v, att, zp) = (rng.i8s(n), rng.i8s(n), rng.i8());
        let expected: Vec<i8> = v
            .iter()
            .zip(&att)
            .map(|(&x, &a)| scaled(x, zp, a, rq, out_zp))
            .collect();

        let mut lanes = v.clone();
        let (sum, top) = b.scale_by_lanes(&mut lanes, &att, zp, &t);
        assert_eq!(lanes, expected, "{rq:?} out_zp={out_zp} zp={zp}");
        let sum_ref = expected
            .iter()
            .fold(0i32, |s, &x| s.wrapping_add(i32::from(x)));
        assert_eq!(
            (sum, top),
            (sum_ref, expected.iter().copied().max().unwrap_or(i8::MIN))
        );

        let a = rng.i8();
        let mut one = v.clone();
        b.scale_by_one(&mut one, a, zp, &t);
        let expected: Vec<i8> = v.iter().map(|&x| scaled(x, zp, a, rq, out_zp)).collect();
        assert_eq!(one, expected, "{rq:?} out_zp={out_zp} zp={zp} a={a}");
    }
    assert!(TensorRequant::new(Requant::new(1 << 30, -3), (1 << 16) + 1).is_none());
}

/// The whole-map scalings (both CBAM steps over every pixel) with multipliers and shifts
/// of either sign (left shifts up to the short form's bound and past it), channel counts
/// on and off the 16-byte chunks, against the scalar formula pixel by pixel.
pub(crate) fn cbam_map_scalings_match_requantize_to_i8(b: impl Isa) {
    let mut rng = Rng::new(0xCB4D);
    for case in 0..600 {
        let c = rng.pick(&[1, 7, 15, 16, 17, 24, 32, 33, 64]);
        let pixels = rng.range(0, 6);
        let (mut rq, out_zp) = tensor_requant(&mut rng);
        if case % 3 == 0 {
            // Left shifts around the short form's bound (|product| < 2^16 shifted by
            // up to 13 stays under 2^30).
            rq = Requant::new(rng.int(0, i32::MAX), rng.int(0, 16));
        }
        let Some(t) = TensorRequant::new(rq, out_zp) else {
            continue;
        };
        let (v, att, zp) = (rng.i8s(c * pixels), rng.i8s(c), rng.i8());
        let mut got = v.clone();
        let mut pooled = Vec::new();
        b.scale_pixels_by_lanes(&mut got, &att, zp, &t, &mut |s, m| pooled.push((s, m)));
        let mut want_pooled = Vec::new();
        for (px, want) in v.chunks_exact(c).zip(got.chunks_exact(c)) {
            let expected: Vec<i8> = px
                .iter()
                .zip(&att)
                .map(|(&x, &a)| scaled(x, zp, a, rq, out_zp))
                .collect();
            assert_eq!(want, &expected[..], "{rq:?} out_zp={out_zp} zp={zp} c={c}");
            let sum = expected
                .iter()
                .fold(0i32, |s, &x| s.wrapping_add(i32::from(x)));
            want_pooled.push((sum, expected.iter().copied().max().unwrap_or(i8::MIN)));
        }
        assert_eq!(pooled, want_pooled, "{rq:?} c={c}");

        let per_pixel = rng.i8s(pixels);
        let mut one = v.clone();
        b.scale_pixels_by_one(&mut one, c, &per_pixel, zp, &t);
        for ((px, got), &a) in v.chunks_exact(c).zip(one.chunks_exact(c)).zip(&per_pixel) {
            let expected: Vec<i8> = px.iter().map(|&x| scaled(x, zp, a, rq, out_zp)).collect();
            assert_eq!(
                got,
                &expected[..],
                "{rq:?} out_zp={out_zp} zp={zp} a={a} c={c}"
            );
        }
    }
}

pub(crate) fn channel_sums_match_scalar_loops(b: impl Isa) {
    let mut rng = Rng::new(0x5C);
    for _ in 0..500 {
        let (c, hw) = (rng.range(1, 70), rng.range(0, 60));
        let data = rng.i8s(c * hw);
        let (mut sums, mut maxs) = (std::vec![7i32; c], std::vec![7i8; c]);
        b.channel_sums(&data, &mut sums, &mut maxs);
        for ch in 0..c {
            let column = data.iter().skip(ch).step_by(c);
            let sum = column
                .clone()
                .fold(0i32, |s, &v| s.wrapping_add(i32::from(v)));
            assert_eq!(sums[ch], sum, "c={c} hw={hw} ch={ch}");
            assert_eq!(
                maxs[ch],
                column.copied().max().unwrap_or(i8::MIN),
                "c={c} hw={hw}"
            );
        }
    }
}

pub(crate) fn two_channel_maps_to_one_channel_match_portable(b: impl Isa) {
    let mut rng = Rng::new(0x5A7);
    for _ in 0..300 {
        let k = 2 * rng.range(0, 5) + 1;
        let g = ConvGeometry {
            pad_top: rng.range(0, k),
            pad_left: rng.range(0, k),
            pad_bottom: rng.range(0, k),
            pad_right: rng.range(0, k),
            ..ConvGeometry::square(k, 0)
        };
        // Up to 60 x 60: larger than the stack copy holds, so both paths run.
        let side = if rng.range(0, 6) == 0 { 60 } else { 20 };
        let ins = Shape::new(rng.range(1, side), rng.range(1, side), 2);
        let Some((oh, ow)) = g.output_size(ins.h, ins.w) else {
            continue;
        };
        let outs = Shape::new(oh, ow, 1);
        let input = rng.i8s(ins.len().unwrap_or(0));
        let weights = rng.i8s(k * k * 2);
        let qt = QuantData::extreme(&mut rng, 1);
        let bytes = qt.bytes();
        let p = Conv2dParams {
            packed: &[],
            geometry: g,
            weights: &weights,
            quant: qt.channel_quant(&bytes),
        };
        let mut fast = std::vec![0i8; outs.len().unwrap_or(0)];
        if conv::conv2d(b, &p, ins, &input, outs, &mut fast) {
            assert_eq!(fast, portable(&p, ins, &input, outs), "{g:?} {ins:?}");
        }
    }
}

/// Constants at the edges of the backends' short output stage (no left shift, right
/// shifts of 1 and 31, multipliers 0 and `2^31 - 1`, biases just inside and just past the
/// `2^30` bound on the accumulators, input zero points at both ends of int8 and far past
/// it) on 1x1 convolutions of few input channels (the matrix product) and 3x3 ones.
pub(crate) fn output_stages_match_portable_at_the_short_form_bounds(b: impl Isa) {
    let mut rng = Rng::new(0x5407);
    for case in 0..120 {
        let in_c = rng.pick(&[1, 3, 8, 16, 17, 24, 40]);
        let out_c = rng.pick(&[1, 6, 8, 15, 16, 24, 33, 64]);
        let k = if case % 3 == 2 { 3 } else { 1 };
        let g = ConvGeometry::square(k, k / 2);
        let ins = Shape::new(rng.range(1, 9), rng.range(1, 11), in_c);
        let (oh, ow) = g.output_size(ins.h, ins.w).unwrap_or((0, 0));
        let outs = Shape::new(oh, ow, out_c);
        let input = rng.i8s(ins.len().unwrap_or(0));
        let weights = rng.i8s(out_c * k * k * in_c);
        let mut qt = QuantData::random(&mut rng, out_c);
        let (zp, out_zp) = (rng.int(-128, 127), rng.int(-200, 200));
        qt.in_zp = rng.pick(&[-128, 127, 0, zp, 5000, -32_639]);
        qt.out_zp = rng.pick(&[-128, 127, out_zp, 32_640, -32_641]);
        let products = i64::from(qt.in_zp.unsigned_abs() + 128) * 128 * (k * k * in_c) as i64;
        let edge = ((1i64 << 30) - products).max(0);
        // The short form is all or nothing per panel of channels: every channel inside it,
        // all but one, or each channel anywhere.
        let mode = rng.range(0, 3);
        let odd_one = rng.range(0, out_c);
        for o in 0..out_c {
            // Powers of two put many outputs inside int8, where the rounding decides them.
            let (mult, shift, pow) = (rng.mult(), rng.int(-20, -1), 1 << rng.range(8, 31));
            let inside = mode == 0 || (mode == 1 && o != odd_one);
            qt.mult[o] = rng.pick(&[0, 1, 1 << 30, i32::MAX, mult, pow, pow]);
            qt.shift[o] = if inside {
                rng.pick(&[-1, -1, -31, shift, shift])
            } else {
                rng.pick(&[-1, -31, -30, 0, 1, shift, shift])
            };
            let bias = match rng.range(0, 4) {
                0 => edge - 1 - i64::from(rng.int(0, 3)),
                1 if !inside => edge + i64::from(rng.int(0, 3)),
                _ => i64::from(rng.int(-20_000, 20_000)),
            };
            let sign = if rng.bool() { 1 } else { -1 };
            qt.bias[o] = (sign * bias).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        }
        // Outputs far past int8 on both sides too: the clamp decides them.
        qt.act = ActRange::from_words(-128, 127);
        let bytes = qt.bytes();
        let p = Conv2dParams {
            packed: &[],
            geometry: g,
            weights: &weights,
            quant: qt.channel_quant(&bytes),
        };
        let mut fast = std::vec![0i8; outs.len().unwrap_or(0)];
        if conv::conv2d(b, &p, ins, &input, outs, &mut fast) {
            let want = portable(&p, ins, &input, outs);
            assert_eq!(fast, want, "{ins:?} {outs:?} k={k} in_zp={}", qt.in_zp);
        }
        // The same constants on a depthwise layer (its row kernel folds the offset into the
        // bias).
        let c = out_c;
        let dins = Shape::new(rng.range(1, 9), rng.range(1, 11), c);
        let dg = ConvGeometry::square(3, 1);
        let (dh, dw) = dg.output_size(dins.h, dins.w).unwrap_or((0, 0));
        let douts = Shape::new(dh, dw, c);
        let dinput = rng.i8s(dins.len().unwrap_or(0));
        let dweights = rng.i8s(9 * c);
        qt.in_zp = qt.in_zp.clamp(-128, 127);
        let bytes = qt.bytes();
        let p = DepthwiseParams {
            geometry: dg,
            depth_multiplier: 1,
            weights: &dweights,
            quant: qt.channel_quant(&bytes),
        };
        let mut got = std::vec![0i8; douts.len().unwrap_or(0)];
        let mut want = got.clone();
        if depthwise::depthwise(b, &p, dins, &dinput, douts, &mut got) {
            depthwise_reference(&dg, &qt, (dins, &dinput), &dweights, (douts, &mut want));
            assert_eq!(got, want, "depthwise {dins:?} in_zp={}", qt.in_zp);
        }
    }
}

/// Depthwise layers whose border pixels run in several bands (rows wider and columns
/// taller than one band holds), with strides, dilations, uneven padding, windows up to 7x7, channel counts off
/// the 16-channel groups and input zero points at the ends of int8.
pub(crate) fn depthwise_borders_match_reference_on_wide_and_dilated_maps(b: impl Isa) {
    let mut rng = Rng::new(0xB0DE);
    for case in 0..60 {
        let k = rng.pick(&[1, 2, 3, 3, 5, 7]);
        let g = ConvGeometry {
            kh: k,
            kw: rng.pick(&[k, 3]),
            stride_h: rng.range(1, 3),
            stride_w: rng.range(1, 4),
            dil_h: rng.range(1, 3),
            dil_w: rng.range(1, 3),
            pad_top: rng.range(0, k + 1),
            pad_left: rng.range(0, k + 1),
            pad_bottom: rng.range(0, k + 1),
            pad_right: rng.range(0, k + 1),
        };
        // Rows and columns longer than one band holds.
        let w = if case % 4 == 0 {
            rng.range(90, 200)
        } else {
            rng.range(1, 30)
        };
        let h = if case % 4 == 1 {
            rng.range(90, 200)
        } else {
            rng.range(1, 12)
        };
        let c = rng.pick(&[1, 5, 16, 17, 31, 48]);
        let ins = Shape::new(h, w, c);
        let Some((oh, ow)) = g.output_size(ins.h, ins.w) else {
            continue;
        };
        let outs = Shape::new(oh, ow, c);
        let input = rng.i8s(ins.len().unwrap_or(0));
        let weights = rng.i8s(g.kh * g.kw * c);
        let mut qt = QuantData::extreme(&mut rng, c);
        qt.in_zp = [-128, 127, qt.in_zp.clamp(-128, 127)][rng.range(0, 3)];
        let bytes = qt.bytes();
        let p = DepthwiseParams {
            geometry: g,
            depth_multiplier: 1,
            weights: &weights,
            quant: qt.channel_quant(&bytes),
        };
        let mut got = std::vec![0i8; outs.len().unwrap_or(0)];
        let mut want = got.clone();
        if depthwise::depthwise(b, &p, ins, &input, outs, &mut got) {
            depthwise_reference(&g, &qt, (ins, &input), &weights, (outs, &mut want));
            assert_eq!(got, want, "{g:?} {ins:?} in_zp={}", qt.in_zp);
        }
    }
}

/// Dense ADD with TFLite's constants (a left shift of 20, multipliers below one) and
/// around them: shifts of 20 to 22 with zero points at the ends of int8 (the short
/// form's bound), right shifts of 0, 1 and 31, multipliers of 0 and `2^31 - 1`, output
/// zero points past int8, lengths off the 32-element chunks.
pub(crate) fn add_matches_reference_around_tflite_constants(b: impl Isa) {
    let mut rng = Rng::new(0xADD5);
    for _ in 0..600 {
        let rq = |rng: &mut Rng| {
            let (mult, shift) = (rng.mult(), rng.int(-25, -1));
            let mult = rng.pick(&[0, 1, i32::MAX, 1 << 30, mult, mult]);
            Requant::new(mult, rng.pick(&[0, -1, -31, 1, shift, shift]))
        };
        let zps = [rng.int(-128, 127), rng.int(-128, 127), rng.int(-128, 127)];
        let p = AddParams {
            left_shift: rng.pick(&[20, 20, 21, 22, 23]),
            in1_zp: rng.pick(&[-128, 127, zps[0]]),
            in1: rq(&mut rng),
            in2_zp: rng.pick(&[-128, 127, zps[1]]),
            in2: rq(&mut rng),
            out: rq(&mut rng),
            out_zp: rng.pick(&[-128, 127, zps[2], 40_000, -(1 << 16)]),
            act: ActRange::from_words(rng.int(-128, 0), rng.int(0, 127)),
        };
        let n = rng.range(0, 150);
        let (x, y) = (rng.i8s(n), rng.i8s(n));
        let mut got = std::vec![0i8; n];
        if super::add::add_dense(b, &p, &x, &y, &mut got) {
            let want: Vec<i8> = x
                .iter()
                .zip(&y)
                .map(|(&a, &c)| add_reference(&p, a, Some(c)))
                .collect();
            assert_eq!(got, want, "{p:?} n={n}");
        }
    }
}
