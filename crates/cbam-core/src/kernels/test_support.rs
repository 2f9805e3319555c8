//! What the kernel tests share, on the host and on the device (no allocation): a seeded
//! PRNG, random quantization and layer shapes, parameter builders, and straightforward
//! i64/i128 reference kernels written independently of the kernels and of `crate::math`.
//!
//! With the `test-support` feature this is public, with [`check_backend`]: the shared
//! backend suite against the backend of the build (`firmware/kernel-tests` runs it on the
//! Cortex-M4).

use crate::kernels::{
    AddParams, CbamMlp, CbamParams, ChannelPoolParams, ChannelQuant, ConvGeometry, PoolKind,
    PoolOrder, PoolParams, Shape,
};
use crate::le::I32Le;
use crate::math::{ActRange, Requant};

/// Bytes of working memory [`check_backend`] needs.
#[cfg(feature = "test-support")]
pub const SUITE_MEMORY: usize = super::backend::suite::MEMORY;

/// The backend of this build, as `build.rs` chose it: `arm_dsp`, `x86_64`, `neon` or
/// `portable`.
#[cfg(feature = "test-support")]
pub const BACKEND: &str = env!("CBAM_BACKEND");

/// Runs every check of the shared backend suite against the backend of this build, each
/// comparing it with the portable kernels (and the references below) on random shapes
/// and parameters; `report(check, outputs)` after each. Panics, with the case, on the
/// first difference. `memory` holds at least [`SUITE_MEMORY`] bytes.
#[cfg(feature = "test-support")]
pub fn check_backend(rng: &mut Rng, memory: &mut [i8], report: impl FnMut(&'static str, u32)) {
    super::backend::suite::run::<super::backend::Active>(rng, memory, report);
}

/// SplitMix64: small, seedable, good enough to draw test shapes and values.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next_u64() % (i64::from(hi) - i64::from(lo) + 1) as u64) as i32
    }

    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }

    /// Fills `out` with random values.
    pub fn fill(&mut self, out: &mut [i8]) {
        for v in out {
            *v = self.i8();
        }
    }

    #[cfg(test)]
    pub fn i8s(&mut self, n: usize) -> std::vec::Vec<i8> {
        (0..n).map(|_| self.i8()).collect()
    }

    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// A multiplier in the blob's normalised range, or occasionally zero.
    pub fn mult(&mut self) -> i32 {
        if self.range(0, 20) == 0 {
            0
        } else {
            self.int(1 << 30, i32::MAX)
        }
    }

    /// One of `values`.
    pub fn pick<T: Copy>(&mut self, values: &[T]) -> T {
        values[self.range(0, values.len())]
    }
}

/// `x * mult * 2^(shift-31)` computed independently of `crate::math` with i128: `x`
/// saturated to i32, the shift clamped to `-31..=30` as TFLite's, the high multiply
/// rounded and saturated, the right shift rounded half away from zero.
pub fn requant_reference(x: i64, mult: i32, shift: i32) -> i64 {
    let x = i128::from(x.clamp(i64::from(i32::MIN), i64::from(i32::MAX)));
    let shift = shift.clamp(-31, 30);
    let left = shift.max(0) as u32;
    let right = (-shift).max(0) as u32;
    let shifted = (x << left).clamp(i128::from(i32::MIN), i128::from(i32::MAX));
    // Shifts, not divisions: floor division by a power of two (no i128 division routine
    // on the microcontrollers that run these references).
    let high = ((shifted * i128::from(mult) + (1 << 30)) >> 31)
        .clamp(i128::from(i32::MIN), i128::from(i32::MAX));
    let mag = (high.abs() * 2 + (1 << right)) >> (right + 1);
    (if high < 0 { -mag } else { mag }) as i64
}

/// `requant(acc) + zp` limited to `lo..=hi` as an int8 (`hi` when the range is inverted,
/// as TFLite's max-then-min).
pub fn finish_reference(acc: i64, mult: i32, shift: i32, zp: i32, lo: i32, hi: i32) -> i8 {
    let v = requant_reference(acc, mult, shift) + i64::from(zp);
    v.max(i64::from(lo)).min(i64::from(hi)) as i8
}

/// The most output channels a [`QuantData`] holds.
pub const MAX_CHANNELS: usize = 160;

/// Random per-channel quantization, owned, for building a [`ChannelQuant`] of its first
/// `n` channels.
#[derive(Clone, Debug)]
pub struct QuantData {
    pub n: usize,
    pub bias: [i32; MAX_CHANNELS],
    pub mult: [i32; MAX_CHANNELS],
    pub shift: [i32; MAX_CHANNELS],
    pub in_zp: i32,
    pub out_zp: i32,
    pub act: ActRange,
}

/// The words of a [`QuantData`] as a blob holds them, starting `skew` bytes into each
/// array (so that they can sit at any alignment, as constants read in place do).
pub struct QuantBytes {
    bias: [u8; 4 * MAX_CHANNELS + 3],
    mult: [u8; 4 * MAX_CHANNELS + 3],
    shift: [u8; 4 * MAX_CHANNELS + 3],
    skew: usize,
    n: usize,
}

impl QuantData {
    /// Ordinary constants of `channels <= MAX_CHANNELS` channels.
    pub fn random(rng: &mut Rng, channels: usize) -> Self {
        assert!(channels <= MAX_CHANNELS, "{channels} channels");
        let act = if rng.bool() {
            ActRange::FULL
        } else {
            let lo = rng.int(-128, 20);
            ActRange::from_words(lo, rng.int(lo, 127))
        };
        let mut q = Self {
            n: channels,
            bias: [0; MAX_CHANNELS],
            mult: [0; MAX_CHANNELS],
            shift: [0; MAX_CHANNELS],
            in_zp: 0,
            out_zp: 0,
            act,
        };
        for b in &mut q.bias[..channels] {
            *b = rng.int(-20_000, 20_000);
        }
        for m in &mut q.mult[..channels] {
            *m = rng.mult();
        }
        for s in &mut q.shift[..channels] {
            *s = rng.int(-14, 1);
        }
        q.in_zp = rng.int(-128, 127);
        q.out_zp = rng.int(-128, 127);
        q
    }

    /// [`QuantData::random`] with, now and then, the extremes mixed in: multipliers of 0,
    /// 2^31 - 1 and any sign, shifts past TFLite's range, any bias, input zero points up
    /// to the packed backends' limit and past it, output zero points past int8.
    pub fn extreme(rng: &mut Rng, channels: usize) -> Self {
        let mut q = Self::random(rng, channels);
        if rng.range(0, 3) == 0 {
            for o in 0..channels {
                q.mult[o] = match rng.range(0, 5) {
                    0 => i32::MAX,
                    1 => 0,
                    2 => rng.next_u64() as i32,
                    _ => q.mult[o],
                };
                q.shift[o] = match rng.range(0, 4) {
                    0 => rng.int(-31, 30),
                    1 => rng.pick(&[-31, 30, -40, 40, 0]),
                    _ => q.shift[o],
                };
                if rng.range(0, 6) == 0 {
                    q.bias[o] = rng.next_u64() as i32;
                }
            }
        }
        q.in_zp = match rng.range(0, 8) {
            0 => rng.int(-32_639, 32_639),
            1 => rng.pick(&[-128, 127, 32_639, -32_639, 32_640]),
            _ => q.in_zp,
        };
        q.out_zp = match rng.range(0, 8) {
            0 => rng.int(-(1 << 16), 1 << 16),
            1 => rng.pick(&[-(1 << 16), 1 << 16, (1 << 16) + 1]),
            _ => q.out_zp,
        };
        q
    }

    /// The words, word-aligned.
    pub fn bytes(&self) -> QuantBytes {
        self.bytes_at(0)
    }

    /// The words, starting `skew` (0 to 3) bytes past a word boundary of their arrays.
    pub fn bytes_at(&self, skew: usize) -> QuantBytes {
        let mut b = QuantBytes {
            bias: [0; 4 * MAX_CHANNELS + 3],
            mult: [0; 4 * MAX_CHANNELS + 3],
            shift: [0; 4 * MAX_CHANNELS + 3],
            skew: skew.min(3),
            n: self.n,
        };
        let arrays = [
            (&mut b.bias, &self.bias),
            (&mut b.mult, &self.mult),
            (&mut b.shift, &self.shift),
        ];
        for (bytes, values) in arrays {
            let words = bytes[b.skew..].chunks_exact_mut(4);
            for (w, v) in words.zip(&values[..self.n]) {
                w.copy_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    pub fn channel_quant<'a>(&self, b: &'a QuantBytes) -> ChannelQuant<'a> {
        let words = |bytes: &'a [u8]| I32Le::new(&bytes[b.skew..b.skew + 4 * b.n]);
        ChannelQuant {
            in_zp: self.in_zp,
            out_zp: self.out_zp,
            act: self.act,
            bias: words(&b.bias),
            mult: words(&b.mult),
            shift: words(&b.shift),
        }
    }

    /// The reference tail for output channel `o`; `acc` already includes the bias, and
    /// wraps to int32 as the kernels' accumulators do.
    pub fn finish(&self, o: usize, acc: i64) -> i8 {
        finish_reference(
            i64::from(acc as i32),
            self.mult[o],
            self.shift[o],
            self.out_zp,
            self.act.min.into(),
            self.act.max.into(),
        )
    }
}

/// A random window: now and then 1x1 or 3x3 padded by 1, else any kernel, stride,
/// dilation and padding up to `max_k`, 2, 2 and 3.
pub fn random_geometry(rng: &mut Rng, max_k: usize) -> ConvGeometry {
    match rng.range(0, 4) {
        0 => ConvGeometry::square(1, 0),
        1 => ConvGeometry::square(3, 1),
        _ => ConvGeometry {
            kh: rng.range(1, max_k + 1),
            kw: rng.range(1, max_k + 1),
            stride_h: rng.range(1, 3),
            stride_w: rng.range(1, 3),
            dil_h: rng.range(1, 3),
            dil_w: rng.range(1, 3),
            pad_top: rng.range(0, 4),
            pad_left: rng.range(0, 4),
            pad_bottom: rng.range(0, 4),
            pad_right: rng.range(0, 4),
        },
    }
}

/// A random CONV2D case: a [`random_geometry`] with windows up to 7x7, few, odd or many
/// input channels, and now and then more output channels than a 128-channel block holds;
/// `None` when the window does not fit the input.
pub fn random_conv_shapes(rng: &mut Rng) -> Option<(ConvGeometry, Shape, Shape)> {
    let g = random_geometry(rng, 7);
    let in_c = match rng.range(0, 4) {
        0 => rng.range(1, 4),
        1 => rng.range(1, 70),
        _ => 8 * rng.range(1, 9),
    };
    let ins = Shape::new(rng.range(1, 10), rng.range(1, 10), in_c);
    let (oh, ow) = g.output_size(ins.h, ins.w)?;
    let out_c = if rng.range(0, 10) == 0 {
        rng.range(125, 138)
    } else {
        rng.range(1, 40)
    };
    Some((g, ins, Shape::new(oh, ow, out_c)))
}

/// The input coordinate of tap `k` of output `o` along one axis, or `None` in the padding.
fn tap(o: usize, stride: usize, k: usize, dil: usize, pad: usize, size: usize) -> Option<usize> {
    (o * stride + k * dil)
        .checked_sub(pad)
        .filter(|&i| i < size)
}

/// For every output pixel (row-major), its accumulators `acc[..outs.c]` started from the
/// biases, `tap(acc, input pixel, kernel tap)` for every tap of its window inside the
/// input, then its outputs finished by `q`.
fn each_window(
    g: &ConvGeometry,
    q: &QuantData,
    ins: Shape,
    (outs, out): (Shape, &mut [i8]),
    mut tap_in: impl FnMut(&mut [i64], usize, usize),
) {
    let mut acc = [0i64; MAX_CHANNELS];
    let acc = &mut acc[..outs.c];
    for (px, out_px) in out.chunks_exact_mut(outs.c.max(1)).enumerate() {
        let (oy, ox) = (px / outs.w, px % outs.w);
        for (a, &b) in acc.iter_mut().zip(&q.bias) {
            *a = i64::from(b);
        }
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let iy = tap(oy, g.stride_h, ky, g.dil_h, g.pad_top, ins.h);
                let ix = tap(ox, g.stride_w, kx, g.dil_w, g.pad_left, ins.w);
                if let (Some(iy), Some(ix)) = (iy, ix) {
                    tap_in(acc, iy * ins.w + ix, ky * g.kw + kx);
                }
            }
        }
        for (o, (y, &a)) in out_px.iter_mut().zip(acc.iter()).enumerate() {
            *y = q.finish(o, a);
        }
    }
}

/// CONV2D in i64, OHWI weights, into `out` (`outs` long).
pub fn conv2d_reference(
    g: &ConvGeometry,
    q: &QuantData,
    (ins, input): (Shape, &[i8]),
    weights: &[i8],
    (outs, out): (Shape, &mut [i8]),
) {
    each_window(g, q, ins, (outs, out), |acc, i_px, t| {
        let x = &input[i_px * ins.c..][..ins.c];
        for (o, a) in acc.iter_mut().enumerate() {
            let w = &weights[(o * g.kh * g.kw + t) * ins.c..][..ins.c];
            for (&x, &w) in x.iter().zip(w) {
                *a += i64::from(w) * (i64::from(x) - i64::from(q.in_zp));
            }
        }
    });
}

/// DEPTHWISE_CONV2D in i64, 1HWO weights, depth multiplier `outs.c / ins.c`.
pub fn depthwise_reference(
    g: &ConvGeometry,
    q: &QuantData,
    (ins, input): (Shape, &[i8]),
    weights: &[i8],
    (outs, out): (Shape, &mut [i8]),
) {
    let dm = outs.c / ins.c.max(1);
    each_window(g, q, ins, (outs, out), |acc, i_px, t| {
        for (o, a) in acc.iter_mut().enumerate() {
            let x = i64::from(input[i_px * ins.c + o / dm]);
            let w = i64::from(weights[t * outs.c + o]);
            *a += w * (x - i64::from(q.in_zp));
        }
    });
}

/// FULLY_CONNECTED in i64, weights `[out.len()][input.len()]`.
pub fn fully_connected_reference(q: &QuantData, input: &[i8], weights: &[i8], out: &mut [i8]) {
    let n_in = input.len();
    for (o, y) in out.iter_mut().enumerate() {
        let row = &weights[o * n_in..][..n_in];
        let dot: i64 = row
            .iter()
            .zip(input)
            .map(|(&w, &x)| i64::from(w) * (i64::from(x) - i64::from(q.in_zp)))
            .sum();
        *y = q.finish(o, i64::from(q.bias[o]) + dot);
    }
}

/// ADD of one element pair (`b` is `None` for a pruned channel, real zero), with TFLite's
/// int32 arithmetic: `x - zp` wraps, the left shift is at most 30 and saturates.
pub fn add_reference(p: &AddParams, a: i8, b: Option<i8>) -> i8 {
    let scaled = |x: i8, zp: i32, rq: Requant| {
        let shifted = i64::from(i32::from(x).wrapping_sub(zp)) << p.left_shift.min(30);
        requant_reference(shifted, rq.mult, rq.shift)
    };
    let sa = scaled(a, p.in1_zp, p.in1);
    let sb = b.map_or(0, |b| scaled(b, p.in2_zp, p.in2));
    let sum = (sa + sb).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    finish_reference(
        sum,
        p.out.mult,
        p.out.shift,
        p.out_zp,
        p.act.min.into(),
        p.act.max.into(),
    )
}

/// MAX_POOL2D and AVG_POOL2D: per output pixel and channel the largest value of the
/// window inside the input (`-128` for none), or the mean of those values rounded half
/// away from zero (0 for none), clamped to the activation range.
pub fn pool_reference(
    kind: PoolKind,
    p: &PoolParams,
    (ins, input): (Shape, &[i8]),
    (outs, out): (Shape, &mut [i8]),
) {
    let g = &p.geometry;
    for (px, out_px) in out.chunks_exact_mut(outs.c.max(1)).enumerate() {
        let (oy, ox) = (px / outs.w, px % outs.w);
        for (ch, o) in out_px.iter_mut().enumerate() {
            let (mut top, mut sum, mut n) = (-128i64, 0i64, 0i64);
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let iy = tap(oy, g.stride_h, ky, 1, g.pad_top, ins.h);
                    let ix = tap(ox, g.stride_w, kx, 1, g.pad_left, ins.w);
                    if let (Some(iy), Some(ix)) = (iy, ix) {
                        let v = i64::from(input[(iy * ins.w + ix) * ins.c + ch]);
                        (top, sum, n) = (top.max(v), sum + v, n + 1);
                    }
                }
            }
            let reduced = match kind {
                PoolKind::Max => top,
                PoolKind::Average if n == 0 => 0,
                PoolKind::Average => (2 * sum.abs() + n) / (2 * n) * sum.signum(),
            };
            *o = reduced.max(i64::from(p.act.min)).min(i64::from(p.act.max)) as i8;
        }
    }
}

/// CHANNEL_POOL: per pixel of `input` (`ins`), the channel mean `round_half_away(sum(x -
/// zp) / c) + zp` (saturated) and the channel maximum, each at its output channel.
pub fn channel_pool_reference(p: &ChannelPoolParams, (ins, input): (Shape, &[i8]), out: &mut [i8]) {
    let (c, zp) = (ins.c as i64, i64::from(p.zp));
    let out_c = p.out_channels().max(1);
    for (px, out_px) in input.chunks_exact(ins.c).zip(out.chunks_exact_mut(out_c)) {
        let sum: i64 = px.iter().map(|&v| i64::from(v) - zp).sum();
        // |sum| / c rounded half up, with the sign put back.
        let magnitude = (2 * sum.abs() + c) / (2 * c);
        let mean = (sum.signum() * magnitude + zp).clamp(-128, 127) as i8;
        let top = px.iter().copied().max().unwrap_or(i8::MIN);
        if let Some(i) = p.mean {
            out_px[i] = mean;
        }
        if let Some(i) = p.max {
            out_px[i] = top;
        }
    }
}

/// A 4-channel CBAM block for the spatial attention alone (steps 6 and 7a): kernel `k`
/// (weights `ws`), random zero points, bias and requantizer, an input of zero point -128.
pub fn spatial_block<'a>(
    rng: &mut Rng,
    lut: &'a [i8; 256],
    k: usize,
    ws: &'a [i8],
) -> CbamParams<'a> {
    CbamParams {
        zp_f1: rng.int(-128, 127),
        bs: rng.int(-5000, 5000),
        rs: Requant::new(rng.int(1 << 30, i32::MAX), rng.int(-12, -1)),
        zp_s: rng.int(-128, 127),
        zp_in: -128,
        zp_out: -128,
        ..cbam_block(lut, 4, k, ws)
    }
}

/// A CBAM block of `c` channels with spatial kernel `k` (weights `ws`), an empty MLP and
/// every requantizer a plain `2^30 >> 7`: each test sets what its step reads.
pub fn cbam_block<'a>(lut: &'a [i8; 256], c: usize, k: usize, ws: &'a [i8]) -> CbamParams<'a> {
    let empty = I32Le::new(&[]);
    CbamParams {
        c,
        cr: 1,
        k,
        order: PoolOrder::MeanMax,
        mlp: CbamMlp {
            w1: &[],
            b1: empty,
            m1: empty,
            s1: empty,
            zp_h: 0,
            w2: &[],
            b2: empty,
            m2: empty,
            s2: empty,
            zp_z: 0,
        },
        lut_c: lut,
        f1: Requant::new(1 << 30, -7),
        zp_f1: 0,
        ws,
        bs: 0,
        rs: Requant::new(1 << 30, -7),
        zp_s: 0,
        lut_s: lut,
        out: Requant::new(1 << 30, -7),
        zp_in: 0,
        zp_out: 0,
    }
}
