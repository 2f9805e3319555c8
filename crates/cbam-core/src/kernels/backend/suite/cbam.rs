//! The steps of the fused CBAM op on the backend: the channel pooling against the
//! reference, both scalings over their whole input domain against `requantize_to_i8`, and
//! the spatial attention (the backend's ring of rows and the portable one) against the
//! CONV2D kernel.

use super::{same, Backend, Memory, Portable};
use crate::cbam::{self, spatial_attention_by_conv2d};
use crate::kernels::test_support::{cbam_block, spatial_block, Rng};
use crate::kernels::{PoolOrder, Shape};
use crate::math::{requantize_to_i8, ActRange, Requant};

/// Channels of the scaling cases: every int8 attention value once, plus three channels
/// past a multiple of four (the packed loops' tail).
const SCALE_C: usize = 259;
/// Pixels of the scaling cases: every int8 spatial attention value once.
const SCALE_HW: usize = 256;
/// The largest map of the pooling cases (channels x pixels).
const POOL_MAP: usize = 64 * 600;
/// The largest spatial attention map (pixels).
const SPATIAL_MAP: usize = 30 * 30;
/// The largest spatial kernel.
const SPATIAL_K: usize = 11;

/// Bytes the checks here take: the scaling cases' map, pooled pairs and factor table, each
/// aligned to a word, and the expected map (the largest).
pub(super) const MEMORY: usize = 2 * SCALE_C * SCALE_HW + 2 * SCALE_HW + 2 * SCALE_C + 3 * 3;

/// Step 1: per-channel mean and max against the reference, channel counts that are and
/// are not multiples of four, more than 256 pixels (where 16-bit sums would overflow),
/// all values at the top.
pub(super) fn pool_channels<B: Backend>(rng: &mut Rng, mut mem: Memory) -> u32 {
    let data = mem.take(POOL_MAP);
    let lut = [0i8; 256];
    let fixed = [(4, 1), (32, 196), (35, 49), (8, 700), (64, 600), (6, 300)];
    let mut checked = 0;
    for case in 0..40 {
        let (c, hw) = match fixed.get(case) {
            Some(&shape) => shape,
            None => (rng.range(1, 65), rng.range(1, 600)),
        };
        let zp_in = if case % 2 == 0 {
            -128
        } else {
            rng.int(-128, 127)
        };
        let data = &mut data[..c * hw];
        if case == 4 {
            data.fill(127);
        } else {
            rng.fill(data);
        }
        let p = crate::kernels::CbamParams {
            zp_in,
            ..cbam_block(&lut, c, 1, &[0, 0])
        };
        let (mut means, mut maxima) = ([0i8; 64], [0i8; 64]);
        cbam::pool_channels(&p, data, hw, &mut means[..c], &mut maxima[..c]);
        for ch in 0..c {
            let column = data.iter().skip(ch).step_by(c).map(|&v| i64::from(v));
            let sum: i64 = column.clone().map(|v| v - i64::from(zp_in)).sum();
            let top = column.max().unwrap_or(-128) as i8;
            let mean = mean_reference(sum, hw, zp_in);
            let case = (c, hw, zp_in, ch);
            checked += same("cbam channel means", &means[ch..=ch], &[mean], case);
            checked += same("cbam channel maxima", &maxima[ch..=ch], &[top], case);
        }
    }
    checked
}

/// `sum / n` rounded half away from zero, plus `zp`, saturated to int8.
fn mean_reference(sum: i64, n: usize, zp: i32) -> i8 {
    let n = n as i64;
    let magnitude = (2 * sum.abs() + n) / (2 * n);
    let mean = if sum < 0 { -magnitude } else { magnitude };
    (mean + i64::from(zp)).clamp(-128, 127) as i8
}

/// Steps 4b/5 and 7b: the two scalings (the backend's packed or vector loops where they
/// take the case) over their whole domain, every int8 input against every attention
/// value, against `requantize_to_i8`; for many requantizers, including multipliers of
/// exactly 2^30 and below it (the general path) and the compiler's power-of-two form on
/// inputs after a ReLU and of either sign.
pub(super) fn scalings<B: Backend>(rng: &mut Rng, mut mem: Memory) -> u32 {
    let mut scratch = ScalingMemory::new(&mut mem);
    let mut checked = 0;
    let fixed = [1 << 30, (1 << 30) + 1, i32::MAX, (1 << 30) - 1];
    for set in 0..24 {
        let mult = match fixed.get(set) {
            Some(&m) => m,
            None => rng.int(1 << 30, i32::MAX),
        };
        let shift = match set % 6 {
            0 => -1,
            1 => -22,
            _ => rng.int(-14, -1),
        };
        let (zp_a, zp_b) = (rng.int(-128, 127), rng.int(-128, 127));
        let set = ScalingSet {
            rq: Requant::new(mult, shift),
            zp_a,
            zp_b,
            c: SCALE_C,
            order: PoolOrder::MaxMean,
        };
        checked += scaling_set(&mut scratch, set);
    }
    for right in 1..=7 {
        let rq = Requant::new(1 << 30, -right);
        let mut check = |zp_a, zp_b, c, order| {
            let set = ScalingSet {
                rq,
                zp_a,
                zp_b,
                c,
                order,
            };
            checked += scaling_set(&mut scratch, set);
        };
        // After a ReLU (input zero point -128): a pixel at a time with a tail, and all
        // pixels in one loop, in both orders.
        for (c, order) in [
            (SCALE_C, PoolOrder::MaxMean),
            (256, PoolOrder::MeanMax),
            (256, PoolOrder::MaxMean),
        ] {
            let zp_b = if right % 2 == 0 {
                -128
            } else {
                rng.int(-128, 127)
            };
            check(-128, zp_b, c, order);
        }
        // An input of either sign (no ReLU before the block).
        for order in [PoolOrder::MeanMax, PoolOrder::MaxMean] {
            check(rng.int(-127, 127), rng.int(-128, 127), 256, order);
        }
    }
    checked
}

/// One requantizer `rq` of [`scalings`] over `c` channels: both scalings from zero point
/// `zp_a` into `zp_b`.
#[derive(Clone, Copy, Debug)]
struct ScalingSet {
    rq: Requant,
    zp_a: i32,
    zp_b: i32,
    c: usize,
    order: PoolOrder,
}

/// The map, its pooled pairs and the factor table (word aligned, like scratch in an
/// arena), and the expected map.
struct ScalingMemory<'m> {
    data: &'m mut [i8],
    maps: &'m mut [i8],
    table: &'m mut [i8],
    want: &'m mut [i8],
}

impl<'m> ScalingMemory<'m> {
    fn new(mem: &mut Memory<'m>) -> Self {
        Self {
            data: mem.take_aligned(SCALE_C * SCALE_HW),
            maps: mem.take_aligned(2 * SCALE_HW),
            table: mem.take_aligned(2 * SCALE_C),
            want: mem.take(SCALE_C * SCALE_HW),
        }
    }
}

fn scaling_set(m: &mut ScalingMemory, set: ScalingSet) -> u32 {
    let ScalingSet {
        rq,
        zp_a,
        zp_b,
        c,
        order,
    } = set;
    let lut = [0i8; 256];
    let p = crate::kernels::CbamParams {
        cr: 0,
        order,
        f1: rq,
        zp_f1: zp_b,
        rs: rq,
        out: rq,
        zp_in: zp_a,
        zp_out: zp_a,
        ..cbam_block(&lut, c, 1, &[0, 0])
    };
    let value = |i: usize| (i / c * 7 + i % c) as u8 as i8;
    let scaled = |v: i8, a: i8, zp_from: i32, zp_to: i32| {
        let x = (i32::from(v) - zp_from) * (i32::from(a) + 128);
        requantize_to_i8(x, rq, zp_to, ActRange::FULL)
    };
    let (data, want) = (&mut m.data[..c * SCALE_HW], &mut m.want[..c * SCALE_HW]);
    let mut checked = 0;

    for (i, v) in data.iter_mut().enumerate() {
        *v = value(i);
    }
    let channel_att: [i8; SCALE_C] = core::array::from_fn(|i| i as u8 as i8);
    cbam::scale_channels_and_pool(&p, data, &channel_att[..c], m.maps, m.table);
    for (i, w) in want.iter_mut().enumerate() {
        *w = scaled(value(i), channel_att[i % c], zp_a, zp_b);
    }
    checked += same("cbam channel scaling", data, want, set);
    for (px, (pixel, pair)) in want.chunks_exact(c).zip(m.maps.chunks_exact(2)).enumerate() {
        let sum = pixel.iter().map(|&v| i64::from(v) - i64::from(zp_b)).sum();
        let (mean, top) = (
            mean_reference(sum, c, zp_b),
            *pixel.iter().max().unwrap_or(&-128),
        );
        let expected = match order {
            PoolOrder::MeanMax => [mean, top],
            PoolOrder::MaxMean => [top, mean],
        };
        checked += same("cbam channel mean and max", pair, &expected, (set, px));
    }

    for (i, v) in data.iter_mut().enumerate() {
        *v = value(i);
    }
    let spatial_att: [i8; SCALE_HW] = core::array::from_fn(|i| i as u8 as i8);
    let q = crate::kernels::CbamParams {
        zp_f1: zp_a,
        zp_out: zp_b,
        ..p
    };
    cbam::scale_pixels(&q, data, &spatial_att);
    for (i, w) in want.iter_mut().enumerate() {
        *w = scaled(value(i), spatial_att[i / c], zp_a, zp_b);
    }
    checked += same("cbam spatial scaling", data, want, set);
    checked
}

/// Steps 6 and 7a: the spatial attention (the backend's ring of rows where it takes the
/// case, the portable ring, and the kernel's own choice) against the CONV2D route, on
/// random maps, kernels of 1 to 11, maps up to 30x30 and maps wider than the ring holds
/// (past 102 pixels for `k = 7`), with the zero-point padding at every border.
pub(super) fn spatial_attention<B: Backend>(rng: &mut Rng, mut mem: Memory) -> u32 {
    let maps = mem.take(2 * SPATIAL_MAP);
    let mut atts = [[0i8; SPATIAL_MAP]; 3];
    let mut ws = [0i8; SPATIAL_K * SPATIAL_K * 2];
    let lut: [i8; 256] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) as i8);
    let mut checked = 0;
    for case in 0..150 {
        let k = [1, 3, 5, 7, 9, 11][case % 6];
        let (h, w) = if case % 10 == 9 {
            (rng.range(1, 7), rng.range(100, 151))
        } else {
            (rng.range(1, 31), rng.range(1, 31))
        };
        let (maps, ws) = (&mut maps[..2 * h * w], &mut ws[..k * k * 2]);
        rng.fill(maps);
        rng.fill(ws);
        let p = spatial_block(rng, &lut, k, ws);
        let shape = Shape::new(h, w, 4);
        let [got, by_conv, ring] = &mut atts;
        let (got, by_conv, ring) = (&mut got[..h * w], &mut by_conv[..h * w], &mut ring[..h * w]);
        let case = (k, h, w, p.zp_f1);
        spatial_attention_by_conv2d(&p, shape, maps, by_conv).expect("consistent shapes");
        cbam::spatial_attention(&p, shape, maps, got).expect("consistent shapes");
        checked += same("cbam spatial attention", got, by_conv, case);
        if B::cbam_spatial_conv(&p, shape, maps, got) {
            checked += same("the backend's ring of rows", got, by_conv, case);
        }
        if Portable::cbam_spatial_conv(&p, shape, maps, ring) {
            checked += same("the portable ring of rows", ring, by_conv, case);
        }
    }
    checked
}
