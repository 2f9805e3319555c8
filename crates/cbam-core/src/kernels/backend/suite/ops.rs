//! The kernels built on the backend against the i64 references, and the backend's
//! whole-op entry points against the portable kernels under them.

use super::{same, Backend, Memory};
use crate::kernels::channel_pool::channel_pool as channel_pool_kernel;
use crate::kernels::depthwise::depthwise_conv2d;
use crate::kernels::pool::pool2d;
use crate::kernels::test_support::{
    add_reference, channel_pool_reference, conv2d_reference, depthwise_reference,
    fully_connected_reference, pool_reference, random_conv_shapes, random_geometry, QuantData, Rng,
    MAX_CHANNELS,
};
use crate::kernels::{add, conv2d, fully_connected};
use crate::kernels::{
    AddParams, ChannelPoolParams, Conv2dParams, ConvGeometry, DepthwiseParams,
    FullyConnectedParams, In2Channels, PoolKind, PoolParams, Shape,
};
use crate::math::{ActRange, Requant};

const INPUT: usize = 4096;
const WEIGHTS: usize = 16 * 1024;
const OUTPUT: usize = 8192;

/// Bytes the checks here take: an input, weights (with room to misalign them) and three
/// outputs (the backend's, the portable kernel's, the reference's).
pub(super) const MEMORY: usize = INPUT + WEIGHTS + 4 + 3 * OUTPUT;

/// One case's buffers.
struct Buffers<'m> {
    input: &'m mut [i8],
    weights: &'m mut [i8],
    outs: [&'m mut [i8]; 3],
}

impl<'m> Buffers<'m> {
    fn new(mem: &mut Memory<'m>) -> Self {
        Self {
            input: mem.take(INPUT),
            weights: mem.take(WEIGHTS + 4),
            outs: [mem.take(OUTPUT), mem.take(OUTPUT), mem.take(OUTPUT)],
        }
    }

    /// Random `n_in` inputs and `n_w` weights from `skew` bytes, and three outputs of
    /// `n_out`; `None` when the case does not fit.
    #[allow(clippy::type_complexity)]
    fn case(
        &mut self,
        rng: &mut Rng,
        (n_in, n_w, n_out): (usize, usize, usize),
        skew: usize,
    ) -> Option<(&[i8], &[i8], [&mut [i8]; 3])> {
        if n_in > INPUT || n_w > WEIGHTS || n_out > OUTPUT {
            return None;
        }
        let input = &mut self.input[..n_in];
        let weights = &mut self.weights[skew..skew + n_w];
        rng.fill(input);
        rng.fill(weights);
        let [a, b, c] = &mut self.outs;
        Some((
            input,
            weights,
            [&mut a[..n_out], &mut b[..n_out], &mut c[..n_out]],
        ))
    }
}

/// CONV2D: any window, stride, dilation and padding; few, odd, many (more than a
/// 128-channel block) input and output channels; extreme constants. The kernel against
/// the reference, and the backend's whole CONV2D (where it takes the case) against the
/// kernel's pointwise or general path.
pub(super) fn conv2d<B: Backend>(rng: &mut Rng, mut mem: Memory) -> u32 {
    let mut buf = Buffers::new(&mut mem);
    let mut checked = 0;
    for _ in 0..400 {
        let Some((g, ins, outs)) = random_conv_shapes(rng) else {
            continue;
        };
        let (in_c, out_c) = (ins.c, outs.c);
        let q = QuantData::extreme(rng, out_c);
        let bytes = q.bytes();
        let n_w = out_c * g.kh * g.kw * in_c;
        let sizes = (ins.len().unwrap_or(0), n_w, outs.len().unwrap_or(0));
        let Some((input, weights, [got, want, reference])) = buf.case(rng, sizes, 0) else {
            continue;
        };
        let p = Conv2dParams {
            packed: &[],
            geometry: g,
            weights,
            quant: q.channel_quant(&bytes),
        };
        let case = (g, ins, outs, q.in_zp, q.out_zp);
        conv2d::conv2d(&p, ins, input, outs, got).expect("consistent shapes");
        conv2d_reference(&g, &q, (ins, input), weights, (outs, reference));
        checked += same("conv2d", got, reference, case);
        if B::conv2d(&p, ins, input, outs, got) {
            if g.is_pointwise() {
                conv2d::pointwise(&p, ins.c, input, outs.c, want);
            } else {
                conv2d::general(&p, ins, input, outs, want);
            }
            checked += same("the backend's conv2d", got, want, case);
        }
    }
    checked
}

/// DEPTHWISE_CONV2D against the reference: any window and depth multiplier, whole 3x3
/// windows over maps large enough for an interior, with several groups of four channels
/// (the backend's lane products and 3x3 interior), and small maps of more channels than
/// one 128-channel block; the backend's whole DEPTHWISE_CONV2D (where it takes the case)
/// against the reference too.
pub(super) fn depthwise<B: Backend>(rng: &mut Rng, mut mem: Memory) -> u32 {
    let mut buf = Buffers::new(&mut mem);
    let mut checked = 0;
    for case in 0..400 {
        let (g, ins, dm) = if case % 8 == 7 {
            let g = ConvGeometry {
                stride_h: rng.range(1, 3),
                stride_w: rng.range(1, 3),
                ..ConvGeometry::square(rng.pick(&[3, 5]), rng.range(0, 3))
            };
            let ins = Shape::new(
                rng.range(1, 5),
                rng.range(1, 5),
                rng.range(100, MAX_CHANNELS + 1),
            );
            (g, ins, 1)
        } else if case % 2 == 0 {
            let g = ConvGeometry {
                stride_h: rng.range(1, 3),
                stride_w: rng.range(1, 3),
                ..ConvGeometry::square(3, rng.range(0, 3))
            };
            let ins = Shape::new(rng.range(1, 14), rng.range(1, 14), rng.range(1, 34));
            (g, ins, 1)
        } else {
            let ins = Shape::new(rng.range(1, 10), rng.range(1, 10), rng.range(1, 12));
            (random_geometry(rng, 4), ins, rng.range(1, 4))
        };
        let Some((oh, ow)) = g.output_size(ins.h, ins.w) else {
            continue;
        };
        let outs = Shape::new(oh, ow, ins.c * dm);
        let q = QuantData::extreme(rng, outs.c);
        let bytes = q.bytes();
        let n_w = g.kh * g.kw * outs.c;
        let sizes = (ins.len().unwrap_or(0), n_w, outs.len().unwrap_or(0));
        let Some((input, weights, [got, want, reference])) = buf.case(rng, sizes, 0) else {
            continue;
        };
        let p = DepthwiseParams {
            geometry: g,
            depth_multiplier: dm,
            weights,
            quant: q.channel_quant(&bytes),
        };
        let case = (g, ins, dm, q.in_zp, q.out_zp);
        depthwise_conv2d(&p, ins, input, outs, got).expect("consistent shapes");
        depthwise_reference(&g, &q, (ins, input), weights, (outs, reference));
        checked += same("depthwise", got, reference, case);
        if B::depthwise(&p, ins, input, outs, want) {
            checked += same("the backend's depthwise", want, reference, case);
        }
    }
    checked
}

/// FULLY_CONNECTED against the reference, as the runtime calls it on a blob read in
/// place: weights and the three per-channel arrays at every byte alignment, output counts
/// that mix the four-, two- and one-row passes (a 64->10 head first), constants on both
/// the short and the general output stage.
pub(super) fn fully_connected<B: Backend>(rng: &mut Rng, mut mem: Memory) -> u32 {
    let mut buf = Buffers::new(&mut mem);
    let mut checked = 0;
    for case in 0..400 {
        let (n_in, n_out) = match case {
            0 => (64, 10),
            _ => (rng.range(0, 200), rng.range(1, 41)),
        };
        let mut q = QuantData::extreme(rng, n_out);
        if case % 5 == 4 {
            // Biases near the short stage's bound and beyond it.
            for b in &mut q.bias[..n_out] {
                *b = rng.int(-(1 << 30), 1 << 30);
            }
        }
        let bytes = q.bytes_at(case / 4 % 4);
        let sizes = (n_in, n_in * n_out, n_out);
        let Some((input, weights, [got, _, reference])) = buf.case(rng, sizes, case % 4) else {
            continue;
        };
        let p = FullyConnectedParams {
            weights,
            quant: q.channel_quant(&bytes),
        };
        let case = (n_in, n_out, q.in_zp, q.out_zp);
        fully_connected::fully_connected(&p, input, got).expect("consistent shapes");
        fully_connected_reference(&q, input, weights, reference);
        checked += same("fully_connected", got, reference, case);
    }
    checked
}

/// Dense ADD with shifts past TFLite's cap, any multipliers and zero points (inputs'
/// anywhere, the output's up to `2^16` and past it): the kernel, and the backend's whole
/// ADD where it takes the case, against the reference.
pub(super) fn add<B: Backend>(rng: &mut Rng, mut mem: Memory) -> u32 {
    let mut buf = Buffers::new(&mut mem);
    let mut checked = 0;
    for _ in 0..2000 {
        let rq = |rng: &mut Rng| {
            let mult = match rng.range(0, 3) {
                0 => rng.pick(&[0, 1 << 30, i32::MAX]),
                _ => rng.int(0, i32::MAX),
            };
            Requant::new(mult, rng.int(-31, 30))
        };
        let zp = |rng: &mut Rng| match rng.range(0, 4) {
            0 => rng.next_u64() as i32,
            _ => rng.int(-128, 127),
        };
        let p = AddParams {
            left_shift: rng.pick(&[0, 20, 30, 31, 40]),
            in1_zp: zp(rng),
            in1: rq(rng),
            in2_zp: zp(rng),
            in2: rq(rng),
            out: rq(rng),
            out_zp: match rng.range(0, 4) {
                0 => rng.int(-(1 << 17), 1 << 17),
                _ => rng.int(-128, 127),
            },
            act: ActRange::from_words(rng.int(-130, 130), rng.int(-130, 130)),
        };
        let shape = Shape::new(1, rng.range(1, 5), rng.range(0, 40));
        let n = shape.len().unwrap_or(0);
        let Some((ab, _, [got, _, reference])) = buf.case(rng, (2 * n, 0, n), 0) else {
            continue;
        };
        let (a, b) = ab.split_at(n);
        add::add(&p, shape, a, b, In2Channels::Dense, got).expect("consistent shapes");
        for ((r, &x), &y) in reference.iter_mut().zip(a).zip(b) {
            *r = add_reference(&p, x, Some(y));
        }
        checked += same("add", got, reference, (p, shape));
        if B::add_dense(&p, a, b, got) {
            checked += same("the backend's add", got, reference, (p, shape));
        }
    }
    checked
}

/// MAX_POOL2D and AVG_POOL2D: any window (up to 7x7, and past the backends' longest
/// average), stride and padding (windows wholly in the padding among them), any
/// activation range; the kernel, and the backend's where it takes the case, against the
/// reference.
pub(super) fn pools<B: Backend>(rng: &mut Rng, mut mem: Memory) -> u32 {
    let mut buf = Buffers::new(&mut mem);
    let mut checked = 0;
    for _ in 0..400 {
        let g = ConvGeometry {
            dil_h: 1,
            dil_w: 1,
            ..random_geometry(rng, 7)
        };
        let (g, ins) = match rng.range(0, 40) {
            // The whole of a 64x64 map, and a 65x65 window (taps past the backends'
            // longest average) over a 61x61 one.
            0 => (ConvGeometry::square(64, 0), Shape::new(64, 64, 1)),
            1 => (ConvGeometry::square(65, 2), Shape::new(61, 61, 1)),
            _ => (
                g,
                Shape::new(rng.range(1, 9), rng.range(1, 9), rng.range(1, 40)),
            ),
        };
        let Some((oh, ow)) = g.output_size(ins.h, ins.w) else {
            continue;
        };
        let outs = Shape::new(oh, ow, ins.c);
        let act = ActRange::from_words(rng.int(-130, 130), rng.int(-130, 130));
        let p = PoolParams { geometry: g, act };
        let sizes = (ins.len().unwrap_or(0), 0, outs.len().unwrap_or(0));
        let Some((input, _, [got, _, reference])) = buf.case(rng, sizes, 0) else {
            continue;
        };
        let kind = rng.pick(&[PoolKind::Max, PoolKind::Average]);
        let case = (kind, g, ins, act);
        pool2d(kind, &p, ins, input, outs, got).expect("consistent shapes");
        pool_reference(kind, &p, (ins, input), (outs, reference));
        checked += same("pool2d", got, reference, case);
        if B::pool2d(kind, &p, ins, input, outs, got) {
            checked += same("the backend's pool2d", got, reference, case);
        }
    }
    checked
}

/// CHANNEL_POOL: every layout of its statistics, one to a few hundred channels (sums past
/// 16 bits), zero points at both ends, maps all at the top or the bottom; the kernel of
/// this build against the reference.
pub(super) fn channel_pool<B: Backend>(rng: &mut Rng, mut mem: Memory) -> u32 {
    let (input, got, reference) = (mem.take(INPUT), mem.take(OUTPUT), mem.take(OUTPUT));
    let layouts = [
        (Some(0), Some(1)),
        (Some(1), Some(0)),
        (Some(0), None),
        (None, Some(0)),
    ];
    let mut checked = 0;
    for case in 0..200 {
        let (mean, max) = layouts[case % layouts.len()];
        let zp = match case % 3 {
            0 => -128,
            1 => 127,
            _ => rng.int(-128, 127),
        };
        let p = ChannelPoolParams { mean, max, zp };
        let ins = match case {
            0..=7 => Shape::new(2, 3, 600),
            _ => Shape::new(rng.range(1, 6), rng.range(1, 6), rng.range(1, 130)),
        };
        let (n_in, n_out) = (
            ins.len().unwrap_or(0),
            ins.pixels().unwrap_or(0) * p.out_channels(),
        );
        let (input, got, reference) = (
            &mut input[..n_in],
            &mut got[..n_out],
            &mut reference[..n_out],
        );
        match case % 8 {
            0 => input.fill(i8::MAX),
            1 => input.fill(i8::MIN),
            _ => rng.fill(input),
        }
        let case = (p, ins);
        channel_pool_kernel(&p, ins, input, got).expect("consistent shapes");
        channel_pool_reference(&p, (ins, input), reference);
        checked += same("channel_pool", got, reference, case);
        if B::channel_pool(&p, ins, input, got) {
            checked += same("the backend's channel_pool", got, reference, case);
        }
    }
    checked
}
