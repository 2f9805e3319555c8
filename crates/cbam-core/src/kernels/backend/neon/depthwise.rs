//! DEPTHWISE_CONV2D: one output pixel of sixteen channels, `smlal` per tap.

use super::load_lanes;
use super::requant::{requant_lanes, store16, Lanes, Stage16};
use crate::kernels::backend::simd::depthwise::{PairWeights, LANES};
use crate::kernels::backend::simd::isa::ChannelBlock;
use core::arch::aarch64::*;

/// The first sixteen bytes of `row`, zero-padded.
#[inline]
#[target_feature(enable = "neon")]
fn load_row(row: &[i8]) -> int8x16_t {
    match row.first_chunk::<16>() {
        // SAFETY: reads exactly the 16 bytes of the chunk.
        Some(bytes) => unsafe { vld1q_s8(bytes.as_ptr()) },
        None => {
            let mut bytes = [0i8; 16];
            for (b, &x) in bytes.iter_mut().zip(row) {
                *b = x;
            }
            // SAFETY: reads exactly the 16 bytes of the local array.
            unsafe { vld1q_s8(bytes.as_ptr()) }
        }
    }
}

/// `acc[0..4] += x * w` over sixteen `i16` lanes (`x` and `w` as low and high halves).
#[inline]
#[target_feature(enable = "neon")]
fn mac16(acc: &mut [int32x4_t; 4], x: [int16x8_t; 2], w: [int16x8_t; 2]) {
    acc[0] = vmlal_s16(acc[0], vget_low_s16(x[0]), vget_low_s16(w[0]));
    acc[1] = vmlal_high_s16(acc[1], x[0], w[0]);
    acc[2] = vmlal_s16(acc[2], vget_low_s16(x[1]), vget_low_s16(w[1]));
    acc[3] = vmlal_high_s16(acc[3], x[1], w[1]);
}

/// Bit-exact: `x + offset` fits `i16` (the offset is minus an int8 zero point) and `smlal`
/// adds each exact `i32` product with wrap-around, like the portable kernel.
#[target_feature(enable = "neon")]
pub(super) fn depthwise_pixel(
    rows: &[&[i8]],
    weights: &[PairWeights],
    offset: i16,
    (block, at): (&ChannelBlock, usize),
    out: &mut [i8],
) {
    let off = vdupq_n_s16(offset);
    let mut acc = [vdupq_n_s32(0); 4];
    for (pair, w) in rows.chunks_exact(2).zip(weights) {
        let [a, b] = pair else { continue };
        let (a, b) = (load_row(a), load_row(b));
        let xa = [vaddw_s8(off, vget_low_s8(a)), vaddw_high_s8(off, a)];
        let xb = [vaddw_s8(off, vget_low_s8(b)), vaddw_high_s8(off, b)];
        // SAFETY: each reads 32 of the 64 bytes of `w`; `vld2q` splits the interleaved
        // (tap a, tap b) weights of eight channels into the two taps.
        let (w0, w1) = unsafe { (vld2q_s16(w.as_ptr()), vld2q_s16(w.as_ptr().add(LANES))) };
        mac16(&mut acc, xa, [w0.0, w1.0]);
        mac16(&mut acc, xb, [w0.1, w1.1]);
    }
    let mut words = [vdupq_n_s32(0); 4];
    for (i, (word, acc)) in words.iter_mut().zip(acc).enumerate() {
        let ch = at + 4 * i;
        let lanes = Lanes {
            mult: load_lanes(&block.mult, ch),
            left: load_lanes(&block.left, ch),
            right: load_lanes(&block.right, ch),
            zp: vdupq_n_s32(block.zp),
            min: vdupq_n_s32(block.min),
            max: vdupq_n_s32(block.max),
        };
        *word = requant_lanes(vaddq_s32(acc, load_lanes(&block.bias, ch)), &lanes);
    }
    let halves = [
        vcombine_s16(vqmovn_s32(words[0]), vqmovn_s32(words[1])),
        vcombine_s16(vqmovn_s32(words[2]), vqmovn_s32(words[3])),
    ];
    let packed = vcombine_s8(vqmovn_s16(halves[0]), vqmovn_s16(halves[1]));
    let mut bytes = [0i8; LANES];
    // SAFETY: writes exactly the 16 bytes of the local array.
    unsafe { vst1q_s8(bytes.as_mut_ptr(), packed) };
    let n = out.len().min(LANES);
    if let (Some(o), Some(b)) = (out.get_mut(..n), bytes.get(..n)) {
        o.copy_from_slice(b);
    }
}

/// Rows of output pixels whose windows lie inside the input: the output stage decoded
/// once, and `offset * sum(w)` folded into its bias so that the taps need no offset add
/// (`sum (x + offset) * w = sum x * w + offset * sum w`, all wrapping), then per pixel
/// sixteen channels of every tap loaded straight from the input.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
pub(super) fn depthwise_row(
    input: &[i8],
    (start, step, count): (usize, usize, usize),
    (n, row_in, row_out): (usize, usize, usize),
    taps: &[usize],
    weights: &[PairWeights],
    offset: i16,
    (block, at): (&ChannelBlock, usize),
    (out, out_step, len): (&mut [i8], usize, usize),
) -> bool {
    let pairs = weights.len();
    let reach = taps.iter().max().copied().unwrap_or(0);
    let last_row = n.checked_sub(1).and_then(|r| r.checked_mul(row_in));
    let last = count
        .checked_sub(1)
        .and_then(|c| c.checked_mul(step))
        .and_then(|s| {
            s.checked_add(last_row?)?
                .checked_add(start)?
                .checked_add(reach)?
                .checked_add(LANES)
        });
    if taps.len() != 2 * pairs || len > LANES || last.is_none_or(|l| l > input.len()) {
        return false;
    }
    let mut stage = Stage16::new(block, at);
    let mut sums = [vdupq_n_s32(0); 4];
    for w in weights {
        // SAFETY: each reads 32 of the 64 bytes of `w`, split into its two taps.
        let (w0, w1) = unsafe { (vld2q_s16(w.as_ptr()), vld2q_s16(w.as_ptr().add(LANES))) };
        sums[0] = vaddq_s32(sums[0], vaddl_s16(vget_low_s16(w0.0), vget_low_s16(w0.1)));
        sums[1] = vaddq_s32(sums[1], vaddl_high_s16(w0.0, w0.1));
        sums[2] = vaddq_s32(sums[2], vaddl_s16(vget_low_s16(w1.0), vget_low_s16(w1.1)));
        sums[3] = vaddq_s32(sums[3], vaddl_high_s16(w1.0, w1.1));
    }
    let off = i32::from(offset);
    for (start, sum) in stage.start.iter_mut().zip(sums) {
        *start = vmlaq_n_s32(*start, sum, off);
    }
    if let Some(bytes) = byte_weights(weights) {
        let rows = (start, step, count, n, row_in, row_out);
        byte_products(input, rows, taps, &bytes, &stage, (out, out_step, len));
        return true;
    }
    let (x, w) = (input.as_ptr(), weights.as_ptr());
    for y in 0..n {
        for i in 0..count {
            let base = start + y * row_in + i * step;
            let mut acc = stage.start;
            for (j, pair) in taps.chunks_exact(2).enumerate() {
                let [ta, tb] = pair else { continue };
                // SAFETY: `base + tap + 16 <= input.len()` for every pixel and tap (checked
                // above), and `j < pairs` weight entries of 64 bytes.
                let (a, b, w0, w1) = unsafe {
                    let wj = w.add(j).cast::<i16>();
                    (
                        vld1q_s8(x.add(base + ta)),
                        vld1q_s8(x.add(base + tb)),
                        vld2q_s16(wj),
                        vld2q_s16(wj.add(LANES)),
                    )
                };
                let xa = [vmovl_s8(vget_low_s8(a)), vmovl_high_s8(a)];
                let xb = [vmovl_s8(vget_low_s8(b)), vmovl_high_s8(b)];
                mac16(&mut acc, xa, [w0.0, w1.0]);
                mac16(&mut acc, xb, [w0.1, w1.1]);
            }
            let dst = out
                .get_mut(y * row_out + i * out_step..)
                .unwrap_or_default();
            store16(dst, stage.finish(&acc), len);
        }
    }
    true
}

/// Tap pairs [`byte_products`] takes: a 7x7 window.
const MAX_PAIRS: usize = 25;

/// Each tap pair's weights of the sixteen channels as bytes (tap `a`, tap `b`), where no
/// weight is -128 and the window has at most [`MAX_PAIRS`] pairs.
#[inline]
#[target_feature(enable = "neon")]
fn byte_weights(weights: &[PairWeights]) -> Option<[[int8x16_t; 2]; MAX_PAIRS]> {
    if weights.len() > MAX_PAIRS {
        return None;
    }
    let mut bytes = [[vdupq_n_s8(0); 2]; MAX_PAIRS];
    let mut any_min = vdupq_n_u8(0);
    for (b, w) in bytes.iter_mut().zip(weights) {
        // SAFETY: each reads 32 of the 64 bytes of `w`, split into its two taps.
        let (lo, hi) = unsafe { (vld2q_s16(w.as_ptr()), vld2q_s16(w.as_ptr().add(LANES))) };
        // The weights are int8 values, so the narrowing is exact.
        *b = [
            vcombine_s8(vmovn_s16(lo.0), vmovn_s16(hi.0)),
            vcombine_s8(vmovn_s16(lo.1), vmovn_s16(hi.1)),
        ];
        let min = vdupq_n_s8(i8::MIN);
        any_min = vorrq_u8(any_min, vorrq_u8(vceqq_s8(b[0], min), vceqq_s8(b[1], min)));
    }
    (vmaxvq_u8(any_min) == 0).then_some(bytes)
}

/// [`depthwise_row`]'s pixels with the products in 16 bits: `x * w` with `w` above -128 is
/// at most `128 * 127` in size, so two of them (`smull` then `smlal` of a tap pair) fit
/// `i16` exactly, and `saddw` widens the pair sums into the `i32` accumulators. The taps
/// are the input bytes as they are; `stage.start` holds `offset * sum(w)`.
#[allow(clippy::type_complexity)]
#[inline]
#[target_feature(enable = "neon")]
fn byte_products(
    input: &[i8],
    (start, step, count, n, row_in, row_out): (usize, usize, usize, usize, usize, usize),
    taps: &[usize],
    weights: &[[int8x16_t; 2]; MAX_PAIRS],
    stage: &Stage16,
    (out, out_step, len): (&mut [i8], usize, usize),
) {
    let x = input.as_ptr();
    for y in 0..n {
        for i in 0..count {
            let base = start + y * row_in + i * step;
            let mut acc = stage.start;
            for (pair, w) in taps.chunks_exact(2).zip(weights) {
                let [ta, tb] = pair else { continue };
                // SAFETY: `base + tap + 16 <= input.len()` for every pixel and tap (checked
                // by `depthwise_row` before it calls this).
                let (a, b) = unsafe { (vld1q_s8(x.add(base + ta)), vld1q_s8(x.add(base + tb))) };
                let lo = vmlal_s8(
                    vmull_s8(vget_low_s8(a), vget_low_s8(w[0])),
                    vget_low_s8(b),
                    vget_low_s8(w[1]),
                );
                let hi = vmlal_high_s8(vmull_high_s8(a, w[0]), b, w[1]);
                acc[0] = vaddw_s16(acc[0], vget_low_s16(lo));
                acc[1] = vaddw_high_s16(acc[1], lo);
                acc[2] = vaddw_s16(acc[2], vget_low_s16(hi));
                acc[3] = vaddw_high_s16(acc[3], hi);
            }
            let dst = out
                .get_mut(y * row_out + i * out_step..)
                .unwrap_or_default();
            store16(dst, stage.finish(&acc), len);
        }
    }
}
