//! The matrix product's micro-kernel (see [`crate::kernels::backend::simd::gemm`]): each
//! panel row (a pair of taps of sixteen channels) is de-interleaved by `vld2q` into the
//! even and the odd taps, and `smlal` by each pixel's two tap values (lanes of a vector
//! holding eight of its taps) adds the products into that pixel's sixteen `i32` lanes.

use super::requant::{store16, Stage16};
use crate::kernels::backend::simd::gemm::PANEL;
use crate::kernels::backend::simd::isa::ChannelBlock;
use crate::kernels::backend::simd::words::{Gathered, InPlace, Words};
use core::arch::aarch64::*;

/// [`crate::kernels::backend::simd::gemm::pack`] by 4x4 transposes of words: eight bytes of
/// a weight row, sign-extended, are four tap-pair words of one channel; four such rows
/// transposed are four panel rows of four channels.
#[target_feature(enable = "neon")]
pub(super) fn pack_panels(weights: &[i8], per_out: usize, pairs: usize, packed: &mut [i32]) {
    let panel_len = pairs * PANEL;
    if per_out == 0 || panel_len == 0 {
        return;
    }
    for (panel, rows) in packed
        .chunks_exact_mut(panel_len)
        .zip(weights.chunks(PANEL * per_out))
    {
        for group in 0..PANEL / 4 {
            let mut j0 = 0;
            while j0 < pairs {
                // A loop, not an array `map`: its closure would stay out of line.
                let mut r = [vdupq_n_s32(0); 4];
                for (o, r) in r.iter_mut().enumerate() {
                    let row = rows.get((group * 4 + o) * per_out..).unwrap_or_default();
                    let row = row.get(..per_out).unwrap_or_default();
                    *r = widen8(row.get(2 * j0..).unwrap_or_default());
                }
                for (k, t) in transpose4(r).iter().enumerate() {
                    let at = (j0 + k) * PANEL + group * 4;
                    if let Some(dst) = panel.get_mut(at..).and_then(<[i32]>::first_chunk_mut::<4>) {
                        // SAFETY: writes exactly the 16 bytes of the chunk.
                        unsafe { vst1q_s32(dst.as_mut_ptr(), *t) };
                    }
                }
                j0 += 4;
            }
        }
    }
}

/// The first eight bytes of `bytes` (zero past its end) sign-extended to `i16`, as four
/// words.
#[inline]
#[target_feature(enable = "neon")]
fn widen8(bytes: &[i8]) -> int32x4_t {
    let mut c = [0i8; 8];
    match bytes.first_chunk::<8>() {
        Some(chunk) => c = *chunk,
        None => {
            for (d, &s) in c.iter_mut().zip(bytes) {
                *d = s;
            }
        }
    }
    // SAFETY: reads exactly the 8 bytes of the local array.
    vreinterpretq_s32_s16(vmovl_s8(unsafe { vld1_s8(c.as_ptr()) }))
}

/// The 4x4 transpose of words: lane `i` of result `k` is lane `k` of `r[i]`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn transpose4(r: [int32x4_t; 4]) -> [int32x4_t; 4] {
    let (a, b) = (vtrn1q_s32(r[0], r[1]), vtrn2q_s32(r[0], r[1]));
    let (c, d) = (vtrn1q_s32(r[2], r[3]), vtrn2q_s32(r[2], r[3]));
    let (a, b, c, d) = (
        vreinterpretq_s64_s32(a),
        vreinterpretq_s64_s32(b),
        vreinterpretq_s64_s32(c),
        vreinterpretq_s64_s32(d),
    );
    [
        vreinterpretq_s32_s64(vtrn1q_s64(a, c)),
        vreinterpretq_s32_s64(vtrn1q_s64(b, d)),
        vreinterpretq_s32_s64(vtrn2q_s64(a, c)),
        vreinterpretq_s32_s64(vtrn2q_s64(b, d)),
    ]
}

#[target_feature(enable = "neon")]
pub(super) fn gemm_run(
    (windows, stride): (&[i16], usize),
    pixels: usize,
    panel: &[i32],
    block: (&ChannelBlock, usize),
    out: (&mut [i8], usize, usize),
) {
    tiles(Gathered { windows, stride }, pixels, panel, block, out);
}

/// [`crate::kernels::backend::simd::Isa::gemm_in_place`]: [`gemm_run`] with each
/// pixel's pairs read at `bases[p] + offs[j]`, eight taps at a time where four pairs lie
/// one after another.
#[target_feature(enable = "neon")]
pub(super) fn gemm_in_place(
    src: &[i16],
    (bases, offs): (&[usize], &[usize]),
    panel: &[i32],
    block: (&ChannelBlock, usize),
    out: (&mut [i8], usize, usize),
) {
    if let Some(x) = InPlace::new(src, bases, offs) {
        tiles(x, x.pixels(), panel, block, out);
    }
}

/// The micro-kernel over `pixels` pixels of `x`, the largest tile at a time.
#[inline]
#[target_feature(enable = "neon")]
fn tiles<S: Words<i16>>(
    x: S,
    pixels: usize,
    panel: &[i32],
    (block, at): (&ChannelBlock, usize),
    (out, out_c, len): (&mut [i8], usize, usize),
) {
    let stage = Stage16::new(block, at);
    let mut done = 0;
    while done < pixels {
        let x = x.from(done);
        let o = out.get_mut(done * out_c..).unwrap_or_default();
        let o = (o, out_c, len);
        done += match pixels - done {
            1 => tile::<1, S>(x, panel, &stage, o),
            2 => tile::<2, S>(x, panel, &stage, o),
            3 => tile::<3, S>(x, panel, &stage, o),
            _ => tile::<4, S>(x, panel, &stage, o),
        };
    }
}

/// One panel row (a tap pair of sixteen channels, at `w`) against the taps in lanes `A`
/// (even) and `B` (odd) of each pixel's window vector `xv`.
///
/// # Safety
/// `w` points at sixteen readable words.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn pair_step<const A: i32, const B: i32, const P: usize>(
    acc: &mut [[int32x4_t; 4]; P],
    w: *const i32,
    xv: &[int16x8_t; P],
) {
    // Channels 0-7 and 8-15, each split into (even taps, odd taps).
    // SAFETY: the caller's promise.
    let (lo, hi) = unsafe {
        (
            vld2q_s16(w.cast::<i16>()),
            vld2q_s16(w.add(8).cast::<i16>()),
        )
    };
    for (acc, &x) in acc.iter_mut().zip(xv) {
        acc[0] = vmlal_laneq_s16::<A>(acc[0], vget_low_s16(lo.0), x);
        acc[1] = vmlal_high_laneq_s16::<A>(acc[1], lo.0, x);
        acc[2] = vmlal_laneq_s16::<A>(acc[2], vget_low_s16(hi.0), x);
        acc[3] = vmlal_high_laneq_s16::<A>(acc[3], hi.0, x);
        acc[0] = vmlal_laneq_s16::<B>(acc[0], vget_low_s16(lo.1), x);
        acc[1] = vmlal_high_laneq_s16::<B>(acc[1], lo.1, x);
        acc[2] = vmlal_laneq_s16::<B>(acc[2], vget_low_s16(hi.1), x);
        acc[3] = vmlal_high_laneq_s16::<B>(acc[3], hi.1, x);
    }
}

/// `P` pixels of [`gemm_run`]: `4 * P` accumulators and four weight vectors stay in
/// registers. Returns `P`.
#[inline]
#[target_feature(enable = "neon")]
fn tile<const P: usize, S: Words<i16>>(
    x: S,
    panel: &[i32],
    stage: &Stage16,
    (out, out_c, len): (&mut [i8], usize, usize),
) -> usize {
    let pairs = x.words();
    if P == 0 || !x.covers(P) || panel.len() < pairs * PANEL {
        return P.max(1);
    }
    let mut acc = [stage.start; P];
    let w = panel.as_ptr();
    let mut j = 0;
    while j < pairs {
        // Four tap pairs (eight window taps) of each pixel per load while they lie one
        // after another, each tap taken by lane.
        while j + 4 <= pairs && x.contiguous(j, 4) {
            // SAFETY: `j + 4 <= pairs`, so words `j * PANEL..(j + 4) * PANEL` lie inside
            // `panel`, and pairs `j..j + 4` of every pixel `p < P` are the eight taps from
            // pair `j`'s start, inside the source (both checked above).
            unsafe {
                let mut xv = [vdupq_n_s16(0); P];
                for (p, xv) in xv.iter_mut().enumerate() {
                    *xv = vld1q_s16(x.at(p, j));
                }
                pair_step::<0, 1, P>(&mut acc, w.add(j * PANEL), &xv);
                pair_step::<2, 3, P>(&mut acc, w.add((j + 1) * PANEL), &xv);
                pair_step::<4, 5, P>(&mut acc, w.add((j + 2) * PANEL), &xv);
                pair_step::<6, 7, P>(&mut acc, w.add((j + 3) * PANEL), &xv);
            }
            j += 4;
        }
        if j >= pairs {
            break;
        }
        // SAFETY: `j < pairs`: as above for one pair, whose two taps are read into the
        // first two lanes.
        unsafe {
            let mut xv = [vdupq_n_s16(0); P];
            for (p, xv) in xv.iter_mut().enumerate() {
                let pair = x.at(p, j).cast::<i32>().read_unaligned();
                *xv = vreinterpretq_s16_s32(vdupq_n_s32(pair));
            }
            pair_step::<0, 1, P>(&mut acc, w.add(j * PANEL), &xv);
        }
        j += 1;
    }
    for (p, acc) in acc.iter().enumerate() {
        let dst = out.get_mut(p * out_c..).unwrap_or_default();
        store16(dst, stage.finish(acc), len);
    }
    P
}
