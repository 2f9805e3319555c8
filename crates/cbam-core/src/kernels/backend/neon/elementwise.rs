//! The element-wise kernels: CBAM's scalings and pooling, and the dense ADD.

use super::requant::{requant_lanes, scale_lanes, Lanes};
use super::{load8, pack8};
use crate::kernels::backend::simd::isa::{AddLanes, TensorRequant};
use crate::math::{requantize_to_i8, ActRange};
use core::arch::aarch64::*;

/// The three multipliers of a dense ADD, as lanes.
#[derive(Clone, Copy)]
pub(super) struct AddVectors {
    pub(super) shift: int32x4_t,
    pub(super) zp1: int32x4_t,
    pub(super) zp2: int32x4_t,
    pub(super) in1: (int32x4_t, int32x4_t, int32x4_t),
    pub(super) in2: (int32x4_t, int32x4_t, int32x4_t),
    pub(super) out: Lanes,
}

#[inline]
#[target_feature(enable = "neon")]
pub(super) fn split(t: &TensorRequant) -> (int32x4_t, int32x4_t, int32x4_t) {
    (
        vdupq_n_s32(t.mult),
        vdupq_n_s32(t.left),
        vdupq_n_s32(t.right),
    )
}

#[inline]
#[target_feature(enable = "neon")]
pub(super) fn add4(x: int32x4_t, y: int32x4_t, v: &AddVectors) -> int32x4_t {
    let x = vqshlq_s32(vsubq_s32(x, v.zp1), v.shift);
    let y = vqshlq_s32(vsubq_s32(y, v.zp2), v.shift);
    let sx = scale_lanes(x, v.in1.0, v.in1.1, v.in1.2);
    let sy = scale_lanes(y, v.in2.0, v.in2.1, v.in2.2);
    requant_lanes(vqaddq_s32(sx, sy), &v.out)
}

#[target_feature(enable = "neon")]
pub(super) fn add(a: &[i8], b: &[i8], out: &mut [i8], k: &AddLanes) {
    let v = AddVectors {
        shift: vdupq_n_s32(k.shift),
        zp1: vdupq_n_s32(k.zp1),
        zp2: vdupq_n_s32(k.zp2),
        in1: split(&k.in1),
        in2: split(&k.in2),
        out: Lanes {
            mult: vdupq_n_s32(k.out.mult),
            left: vdupq_n_s32(k.out.left),
            right: vdupq_n_s32(k.out.right),
            zp: vdupq_n_s32(k.out.zp),
            min: vdupq_n_s32(k.min),
            max: vdupq_n_s32(k.max),
        },
    };
    let (oc, _) = out.as_chunks_mut::<8>();
    let (ac, _) = a.as_chunks::<8>();
    let (bc, _) = b.as_chunks::<8>();
    let mut done = 0;
    for ((o, x), y) in oc.iter_mut().zip(ac).zip(bc) {
        let ((x0, x1), (y0, y1)) = (load8(x), load8(y));
        *o = pack8(add4(x0, y0, &v), add4(x1, y1, &v));
        done += 8;
    }
    let tails = a
        .get(done..)
        .unwrap_or_default()
        .iter()
        .zip(b.get(done..).unwrap_or_default());
    for (o, (&x, &y)) in out
        .get_mut(done..)
        .unwrap_or_default()
        .iter_mut()
        .zip(tails)
    {
        *o = k.one(x, y);
    }
}

#[target_feature(enable = "neon")]
pub(super) fn scale_by_lanes(v: &mut [i8], att: &[i8], zp: i8, rq: &TensorRequant) -> (i32, i8) {
    let k = Lanes::tensor(rq);
    let (zp_v, bias) = (vdupq_n_s32(i32::from(zp)), vdupq_n_s32(128));
    let (mut sum, mut max) = (vdupq_n_s32(0), vdupq_n_s32(i32::from(i8::MIN)));
    let (vc, _) = v.as_chunks_mut::<8>();
    let (ac, _) = att.as_chunks::<8>();
    let mut done = 0;
    for (x, a) in vc.iter_mut().zip(ac) {
        let (x0, x1) = load8(x);
        let (a0, a1) = load8(a);
        let r0 = requant_lanes(vmulq_s32(vsubq_s32(x0, zp_v), vaddq_s32(a0, bias)), &k);
        let r1 = requant_lanes(vmulq_s32(vsubq_s32(x1, zp_v), vaddq_s32(a1, bias)), &k);
        sum = vaddq_s32(sum, vaddq_s32(r0, r1));
        max = vmaxq_s32(max, vmaxq_s32(r0, r1));
        *x = pack8(r0, r1);
        done += 8;
    }
    let mut s = vaddvq_s32(sum);
    let mut top = vmaxvq_s32(max) as i8;
    let tail = v.get_mut(done..).unwrap_or_default();
    for (x, &a) in tail.iter_mut().zip(att.get(done..).unwrap_or_default()) {
        let prod = (i32::from(*x) - i32::from(zp)) * (i32::from(a) + 128);
        *x = requantize_to_i8(prod, rq.rq, rq.zp, ActRange::FULL);
        s = s.wrapping_add(i32::from(*x));
        top = top.max(*x);
    }
    (s, top)
}

#[target_feature(enable = "neon")]
pub(super) fn scale_by_one(v: &mut [i8], att: i8, zp: i8, rq: &TensorRequant) {
    let k = Lanes::tensor(rq);
    let factor = i32::from(att) + 128;
    // (v - zp) * f = v * f - zp * f: one multiply-accumulate per lane.
    let (f, base) = (vdupq_n_s32(factor), vdupq_n_s32(-i32::from(zp) * factor));
    let (vc, _) = v.as_chunks_mut::<8>();
    let mut done = 0;
    for x in vc.iter_mut() {
        let (x0, x1) = load8(x);
        let r0 = requant_lanes(vmlaq_s32(base, x0, f), &k);
        let r1 = requant_lanes(vmlaq_s32(base, x1, f), &k);
        *x = pack8(r0, r1);
        done += 8;
    }
    for x in v.get_mut(done..).unwrap_or_default() {
        let prod = (i32::from(*x) - i32::from(zp)) * factor;
        *x = requantize_to_i8(prod, rq.rq, rq.zp, ActRange::FULL);
    }
}

#[target_feature(enable = "neon")]
pub(super) fn channel_sums(data: &[i8], sums: &mut [i32], maxs: &mut [i8]) {
    let c = sums.len();
    if c == 0 {
        return;
    }
    // Eight channels at a time down the whole map: the accumulators stay in registers.
    let mut first = 0;
    while first + 8 <= c {
        let (mut s0, mut s1) = (vdupq_n_s32(0), vdupq_n_s32(0));
        let mut max = vdup_n_s8(i8::MIN);
        for px in data.chunks_exact(c) {
            if let Some(x) = px.get(first..).and_then(<[i8]>::first_chunk::<8>) {
                // SAFETY: reads exactly the 8 bytes of the array.
                let bytes = unsafe { vld1_s8(x.as_ptr()) };
                let wide = vmovl_s8(bytes);
                s0 = vaddw_s16(s0, vget_low_s16(wide));
                s1 = vaddw_high_s16(s1, wide);
                max = vmax_s8(max, bytes);
            }
        }
        let mut lanes = [0i32; 8];
        let mut top = [0i8; 8];
        // SAFETY: write exactly the local arrays' 32 and 8 bytes.
        unsafe {
            vst1q_s32(lanes.as_mut_ptr(), s0);
            vst1q_s32(lanes.as_mut_ptr().add(4), s1);
            vst1_s8(top.as_mut_ptr(), max);
        }
        for (s, &l) in sums.iter_mut().skip(first).zip(&lanes) {
            *s = l;
        }
        for (m, &l) in maxs.iter_mut().skip(first).zip(&top) {
            *m = l;
        }
        first += 8;
    }
    for ch in first..c {
        let (mut sum, mut max) = (0i32, i8::MIN);
        for &v in data.iter().skip(ch).step_by(c) {
            sum = sum.wrapping_add(i32::from(v));
            max = max.max(v);
        }
        if let (Some(s), Some(m)) = (sums.get_mut(ch), maxs.get_mut(ch)) {
            *s = sum;
            *m = max;
        }
    }
}

/// [`scale_by_lanes`] of each pixel of `data` in turn (`att.len()` channels each), handing
/// each pixel's sum and maximum to `pooled`.
#[target_feature(enable = "neon")]
pub(super) fn scale_pixels_by_lanes(
    data: &mut [i8],
    att: &[i8],
    zp: i8,
    rq: &TensorRequant,
    pooled: &mut dyn FnMut(i32, i8),
) {
    for px in data.chunks_exact_mut(att.len().max(1)) {
        let (sum, top) = scale_by_lanes(px, att, zp, rq);
        pooled(sum, top);
    }
}

/// [`scale_by_one`] of each pixel `i` of `data` (`c` channels each) by `att[i]`.
#[target_feature(enable = "neon")]
pub(super) fn scale_pixels_by_one(
    data: &mut [i8],
    c: usize,
    att: &[i8],
    zp: i8,
    rq: &TensorRequant,
) {
    for (px, &a) in data.chunks_exact_mut(c.max(1)).zip(att) {
        scale_by_one(px, a, zp, rq);
    }
}

/// The pools' plain-Rust loops compiled with the instruction set (NEON is baseline here: the same code as elsewhere).
#[target_feature(enable = "neon")]
pub(super) fn pool2d(
    kind: crate::kernels::PoolKind,
    p: &crate::kernels::PoolParams,
    in_shape: crate::kernels::Shape,
    input: &[i8],
    out_shape: crate::kernels::Shape,
    output: &mut [i8],
) -> bool {
    crate::kernels::backend::simd::pool::pool2d(kind, p, in_shape, input, out_shape, output)
}
