//! CONV2D: widening windows, the dot products over them and each pixel's output stage.

use super::requant::{requant4, requant_lanes, Lanes};
use super::{load_lanes, load_window, pack8};
use crate::kernels::backend::simd::conv::{row_from, run_bounds};
use crate::kernels::backend::simd::isa::{ChannelBlock, SmallWeights};
use core::arch::aarch64::*;

#[target_feature(enable = "neon")]
pub(super) fn widen(dst: &mut [i16], src: &[i8], offset: i16) {
    let off = vdupq_n_s16(offset);
    let (dc, _) = dst.as_chunks_mut::<8>();
    let (sc, _) = src.as_chunks::<8>();
    let mut done = 0;
    for (d, s) in dc.iter_mut().zip(sc) {
        // SAFETY: reads the 8 bytes of `s`, writes the 16 bytes of `d`.
        unsafe {
            let v = vaddq_s16(vmovl_s8(vld1_s8(s.as_ptr())), off);
            vst1q_s16(d.as_mut_ptr(), v);
        }
        done += 8;
    }
    let (dst, src) = (
        dst.get_mut(done..).unwrap_or_default(),
        src.get(done..).unwrap_or_default(),
    );
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = i16::from(s).wrapping_add(offset);
    }
}

/// [`widen`] of each run of each pixel in turn, sixteen taps at a time with the bounds
/// checked once per pixel (a run's last vector may write past it, as the contract allows).
#[target_feature(enable = "neon")]
pub(super) fn widen_runs(
    dst: &mut [i16],
    src: &[i8],
    (starts, run): (&[usize], usize),
    (count, src_step, dst_step): (usize, usize, usize),
    offset: i16,
) {
    let off = vdupq_n_s16(offset);
    let (reach, written) = run_bounds(starts, run);
    for p in 0..count {
        let (d0, s0) = (p * dst_step, p * src_step);
        if s0 + reach > src.len() || d0 + written > dst.len() {
            // Near an end: each run exactly.
            for (k, &start) in starts.iter().enumerate() {
                let d = dst.get_mut(d0 + k * run..).unwrap_or_default();
                let d = d.get_mut(..run.min(d.len())).unwrap_or_default();
                let s = src.get(s0 + start..).unwrap_or_default();
                widen(d, s.get(..run.min(s.len())).unwrap_or_default(), offset);
            }
            continue;
        }
        for (k, &start) in starts.iter().enumerate() {
            let (from, to) = (s0 + start, d0 + k * run);
            for at in (0..run).step_by(16) {
                // SAFETY: `from + at + 16 <= s0 + reach <= src.len()` and
                // `to + at + 16 <= d0 + written <= dst.len()` (checked above).
                unsafe {
                    let x = vld1q_s8(src.as_ptr().add(from + at));
                    let d = dst.as_mut_ptr().add(to + at);
                    vst1q_s16(d, vaddq_s16(vmovl_s8(vget_low_s8(x)), off));
                    vst1q_s16(d.add(8), vaddq_s16(vmovl_high_s8(x), off));
                }
            }
        }
    }
}

#[target_feature(enable = "neon")]
pub(super) fn pixel(
    window: &[i16],
    weights: &[i8],
    per_out: usize,
    block: &ChannelBlock,
    out: &mut [i8],
) {
    let (window, _) = window.as_chunks::<16>();
    let n = out.len();
    if n == 1 {
        // A single channel (CBAM's spatial attention): one row, not four copies of it.
        let acc = vaddq_s32(dot1(window, weights), load_lanes(&block.bias, 0));
        if let (Some(o), [b, ..]) = (out.first_mut(), requant4(acc, block, 0)) {
            *o = b;
        }
        return;
    }
    let mut ch = 0;
    while ch < n {
        // A last group of fewer than four channels repeats its last row.
        let rows = [
            row_from(weights, per_out, ch.min(n - 1)),
            row_from(weights, per_out, (ch + 1).min(n - 1)),
            row_from(weights, per_out, (ch + 2).min(n - 1)),
            row_from(weights, per_out, (ch + 3).min(n - 1)),
        ];
        let acc = vaddq_s32(dot4(window, rows), load_lanes(&block.bias, ch));
        let bytes = requant4(acc, block, ch);
        for (o, b) in out.iter_mut().skip(ch).zip(bytes) {
            *o = b;
        }
        ch += 4;
    }
}

#[target_feature(enable = "neon")]
fn pixel_small(window: &[i16], weights: &SmallWeights, block: &ChannelBlock, out: &mut [i8]) {
    let taps = window.chunks_exact(2).take(weights.pairs);
    for (g, out) in out.chunks_mut(8).enumerate() {
        let ch = g * 8;
        let (mut lo, mut hi) = (load_lanes(&block.bias, ch), load_lanes(&block.bias, ch + 4));
        let mut at = ch;
        for pair in taps.clone() {
            let (Some(w), [x0, x1]) = (
                weights.table.get(at..).and_then(<[i32]>::first_chunk::<8>),
                pair,
            ) else {
                break;
            };
            // SAFETY: reads exactly the 32 bytes of the chunk: eight (even, odd) tap pairs,
            // de-interleaved into the even taps and the odd taps of eight channels.
            let w = unsafe { vld2q_s16(w.as_ptr().cast()) };
            lo = vmlal_n_s16(lo, vget_low_s16(w.0), *x0);
            hi = vmlal_high_n_s16(hi, w.0, *x0);
            lo = vmlal_n_s16(lo, vget_low_s16(w.1), *x1);
            hi = vmlal_high_n_s16(hi, w.1, *x1);
            at += weights.lanes;
        }
        let (a, b) = (requant4(lo, block, ch), requant4(hi, block, ch + 4));
        for (o, v) in out.iter_mut().zip(a.into_iter().chain(b)) {
            *o = v;
        }
    }
}

#[target_feature(enable = "neon")]
pub(super) fn row_small(
    (windows, stride): (&[i16], usize),
    weights: &SmallWeights,
    block: &ChannelBlock,
    (out, step, n): (&mut [i8], usize, usize),
) {
    for (i, window) in windows.chunks_exact(stride.max(1)).enumerate() {
        if let Some(o) = out.get_mut(i * step..i * step + n) {
            pixel_small(window, weights, block, o);
        }
    }
}

#[cfg(test)]
#[target_feature(enable = "neon")]
pub(super) fn requant_all(acc: &[i32], block: &ChannelBlock, out: &mut [i8]) {
    for (ch, (acc, out)) in acc.chunks(4).zip(out.chunks_mut(4)).enumerate() {
        let mut lanes = [0i32; 4];
        for (l, &a) in lanes.iter_mut().zip(acc) {
            *l = a;
        }
        let bytes = requant4(load_lanes(&lanes, 0), block, ch * 4);
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = b;
        }
    }
}

/// `acc += x * w` over 16 taps: `x` is two `i16x8`, `w` 16 bytes sign-extended here.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn mac16(acc: int32x4_t, x: (int16x8_t, int16x8_t), w: &[i8; 16]) -> int32x4_t {
    // SAFETY: reads exactly the 16 bytes of `w`.
    let w = unsafe { vld1q_s8(w.as_ptr()) };
    let (lo, hi) = (vmovl_s8(vget_low_s8(w)), vmovl_high_s8(w));
    let acc = vmlal_s16(acc, vget_low_s16(x.0), vget_low_s16(lo));
    let acc = vmlal_high_s16(acc, x.0, lo);
    let acc = vmlal_s16(acc, vget_low_s16(x.1), vget_low_s16(hi));
    vmlal_high_s16(acc, x.1, hi)
}

/// 16 weights sign-extended to two `i16x8`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn widen16(w: &[i8; 16]) -> (int16x8_t, int16x8_t) {
    // SAFETY: reads exactly the 16 bytes of `w`.
    let w = unsafe { vld1q_s8(w.as_ptr()) };
    (vmovl_s8(vget_low_s8(w)), vmovl_high_s8(w))
}

/// `acc += x * w` over 16 taps already widened.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn mac16_wide(
    acc: int32x4_t,
    x: (int16x8_t, int16x8_t),
    w: (int16x8_t, int16x8_t),
) -> int32x4_t {
    let acc = vmlal_s16(acc, vget_low_s16(x.0), vget_low_s16(w.0));
    let acc = vmlal_high_s16(acc, x.0, w.0);
    let acc = vmlal_s16(acc, vget_low_s16(x.1), vget_low_s16(w.1));
    vmlal_high_s16(acc, x.1, w.1)
}

/// [`dot4`] for two windows: each weight chunk is loaded and widened once for both.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn dot4x2(windows: [&[[i16; 16]]; 2], rows: [&[i8]; 4]) -> [int32x4_t; 2] {
    let mut a = [vdupq_n_s32(0); 4];
    let mut b = [vdupq_n_s32(0); 4];
    let chunks = [
        rows[0].as_chunks::<16>().0,
        rows[1].as_chunks::<16>().0,
        rows[2].as_chunks::<16>().0,
        rows[3].as_chunks::<16>().0,
    ];
    let body = windows[0]
        .iter()
        .zip(windows[1])
        .zip(chunks[0].iter().zip(chunks[1]))
        .zip(chunks[2].iter().zip(chunks[3]));
    let mut done = 0;
    for (((xa, xb), (w0, w1)), (w2, w3)) in body {
        let (xa, xb) = (load_window(xa), load_window(xb));
        for ((aa, ab), w) in a.iter_mut().zip(b.iter_mut()).zip([w0, w1, w2, w3]) {
            let w = widen16(w);
            *aa = mac16_wide(*aa, xa, w);
            *ab = mac16_wide(*ab, xb, w);
        }
        done += 1;
    }
    // What is left of the last rows, zero-padded (the windows are zero there anyway).
    for (k, (xa, xb)) in windows[0].iter().zip(windows[1]).enumerate().skip(done) {
        let (xa, xb) = (load_window(xa), load_window(xb));
        for ((aa, ab), row) in a.iter_mut().zip(b.iter_mut()).zip(rows) {
            let mut tail = [0i8; 16];
            let part = row.get(k * 16..).unwrap_or_default();
            for (t, &v) in tail.iter_mut().zip(part) {
                *t = v;
            }
            let w = widen16(&tail);
            *aa = mac16_wide(*aa, xa, w);
            *ab = mac16_wide(*ab, xb, w);
        }
    }
    let sum =
        |acc: [int32x4_t; 4]| vpaddq_s32(vpaddq_s32(acc[0], acc[1]), vpaddq_s32(acc[2], acc[3]));
    [sum(a), sum(b)]
}

#[target_feature(enable = "neon")]
pub(super) fn pixel2(
    windows: [&[i16]; 2],
    weights: &[i8],
    per_out: usize,
    block: &ChannelBlock,
    outs: [&mut [i8]; 2],
) {
    let [oa, ob] = outs;
    let n = oa.len().min(ob.len());
    if n == 1 {
        pixel(windows[0], weights, per_out, block, oa);
        pixel(windows[1], weights, per_out, block, ob);
        return;
    }
    let windows = [
        windows[0].as_chunks::<16>().0,
        windows[1].as_chunks::<16>().0,
    ];
    let mut ch = 0;
    while ch < n {
        // As in `pixel`: a last short group repeats its last row.
        let rows = [
            row_from(weights, per_out, ch.min(n - 1)),
            row_from(weights, per_out, (ch + 1).min(n - 1)),
            row_from(weights, per_out, (ch + 2).min(n - 1)),
            row_from(weights, per_out, (ch + 3).min(n - 1)),
        ];
        let [sa, sb] = dot4x2(windows, rows);
        let bias = load_lanes(&block.bias, ch);
        let ba = requant4(vaddq_s32(sa, bias), block, ch);
        let bb = requant4(vaddq_s32(sb, bias), block, ch);
        for (o, v) in oa.iter_mut().skip(ch).zip(ba) {
            *o = v;
        }
        for (o, v) in ob.iter_mut().skip(ch).zip(bb) {
            *o = v;
        }
        ch += 4;
    }
}

#[target_feature(enable = "neon")]
pub(super) fn pair_row(
    plane: &[i16],
    wp: usize,
    taps: &[i32],
    kw: usize,
    block: &ChannelBlock,
    out: &mut [i8],
) {
    let lanes = Lanes {
        mult: vdupq_n_s32(block.mult[0]),
        left: vdupq_n_s32(block.left[0]),
        right: vdupq_n_s32(block.right[0]),
        zp: vdupq_n_s32(block.zp),
        min: vdupq_n_s32(block.min),
        max: vdupq_n_s32(block.max),
    };
    let kh = taps.len() / kw.max(1);
    // The plane's `i16` index just past what group `g`'s taps read.
    let reach = |g: usize| 2 * ((kh.max(1) - 1) * wp + g * 8 + kw.max(1) - 1) + 16;
    let whole_rows = kh * kw.max(1) == taps.len();
    for (g, out) in out.chunks_mut(8).enumerate() {
        let (mut lo, mut hi) = (vdupq_n_s32(block.bias[0]), vdupq_n_s32(block.bias[0]));
        // The reach checked once for the group rather than at every tap.
        let checked = whole_rows && reach(g) <= plane.len();
        for (ky, row) in taps.chunks(kw.max(1)).enumerate() {
            let mut at = 2 * (ky * wp + g * 8);
            for &pair in row {
                let x = if checked {
                    // SAFETY: `at + 16 <= reach(g) <= plane.len()`; reads the 32 bytes
                    // there: eight output pixels' (channel 0, channel 1) pairs,
                    // de-interleaved by channel.
                    unsafe { vld2q_s16(plane.as_ptr().add(at)) }
                } else {
                    match plane.get(at..).and_then(<[i16]>::first_chunk::<16>) {
                        // SAFETY: reads exactly the 32 bytes of the chunk.
                        Some(x) => unsafe { vld2q_s16(x.as_ptr()) },
                        None => {
                            at += 2;
                            continue;
                        }
                    }
                };
                let (w0, w1) = (pair as i16, (pair >> 16) as i16);
                lo = vmlal_n_s16(lo, vget_low_s16(x.0), w0);
                hi = vmlal_high_n_s16(hi, x.0, w0);
                lo = vmlal_n_s16(lo, vget_low_s16(x.1), w1);
                hi = vmlal_high_n_s16(hi, x.1, w1);
                at += 2;
            }
        }
        let bytes = pack8(requant_lanes(lo, &lanes), requant_lanes(hi, &lanes));
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = b;
        }
    }
}

/// The dot product of `window` with one weight row, in lane 0 (the rest zero).
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn dot1(window: &[[i16; 16]], row: &[i8]) -> int32x4_t {
    let mut acc = vdupq_n_s32(0);
    let (chunks, rest) = row.as_chunks::<16>();
    for (x, w) in window.iter().zip(chunks) {
        acc = mac16(acc, load_window(x), w);
    }
    if let Some(x) = window.get(chunks.len()) {
        // The row's last partial chunk, zero-padded (the window is zero past its taps).
        let mut tail = [0i8; 16];
        for (t, &v) in tail.iter_mut().zip(rest) {
            *t = v;
        }
        acc = mac16(acc, load_window(x), &tail);
    }
    vsetq_lane_s32::<0>(vaddvq_s32(acc), vdupq_n_s32(0))
}

/// The dot products of `window` with four weight rows, each running to the end of the
/// block's weights (only the last rows can be shorter than the window).
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn dot4(window: &[[i16; 16]], rows: [&[i8]; 4]) -> int32x4_t {
    let mut acc = [vdupq_n_s32(0); 4];
    // No closures here: on x86 they would not inherit this function's target features
    // and would stay out of line.
    let chunks = [
        rows[0].as_chunks::<16>().0,
        rows[1].as_chunks::<16>().0,
        rows[2].as_chunks::<16>().0,
        rows[3].as_chunks::<16>().0,
    ];
    let body = window
        .iter()
        .zip(chunks[0])
        .zip(chunks[1])
        .zip(chunks[2].iter().zip(chunks[3]));
    let mut done = 0;
    for (((x, w0), w1), (w2, w3)) in body {
        let x = load_window(x);
        for (a, w) in acc.iter_mut().zip([w0, w1, w2, w3]) {
            *a = mac16(*a, x, w);
        }
        done += 1;
    }
    // What is left of the last rows, zero-padded (the window is zero there anyway).
    for (k, x) in window.iter().enumerate().skip(done) {
        let x = load_window(x);
        for (a, row) in acc.iter_mut().zip(rows) {
            let mut tail = [0i8; 16];
            let part = row.get(k * 16..).unwrap_or_default();
            for (t, &v) in tail.iter_mut().zip(part) {
                *t = v;
            }
            *a = mac16(*a, x, &tail);
        }
    }
    let s01 = vpaddq_s32(acc[0], acc[1]);
    let s23 = vpaddq_s32(acc[2], acc[3]);
    vpaddq_s32(s01, s23)
}
