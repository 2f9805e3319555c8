//! Armv8.2 dot products (`sdot`, the Pi 5's Cortex-A76; the Pi 4's A72 has none): the
//! matrix product's micro-kernel and the per-pixel products over byte windows (see
//! [`crate::kernels::backend::simd::gemm::Quads`]). One `sdot` multiplies four signed
//! bytes by four signed bytes in each of four lanes and adds the four products into the
//! lane: sixteen multiply-adds where `smlal` does four.
//!
//! Both operands are signed, so the windows hold the input bytes as they are (key 0) and
//! the accumulators start from `bias - in_zp * sum(w)`. The sums wrap in `i32` like the
//! portable `wrapping_add`, so the accumulators end equal to the portable ones.
//!
//! Rust has no stable intrinsic for `sdot` yet, so it is written as inline assembly in
//! functions that enable the `dotprod` target feature; the CPU is asked once, through the
//! `ID_AA64ISAR0_EL1` register, which Linux lets user code read (it traps the read and
//! answers with the features every core has).

use super::gemm::transpose4;
use super::requant::{requant_lanes, store16, Lanes, Stage16};
use super::{load_lanes, pack8};
use crate::kernels::backend::simd::conv::{row_from, run_bounds};
use crate::kernels::backend::simd::gemm::PANEL;
use crate::kernels::backend::simd::isa::{ChannelBlock, DotIsa, BLOCK};
use crate::kernels::backend::simd::words::{InPlace, Words};
use crate::kernels::backend::simd::Probed;
use core::arch::aarch64::*;
use core::arch::asm;

/// Proof that the CPU has the dot-product instructions: only [`Sdot::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sdot(());

static SDOT: Probed = Probed::new();

impl Sdot {
    /// `Some` on a CPU with `sdot`; probed on the first call only.
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        SDOT.get(probe).then_some(Self(()))
    }
}

/// `ID_AA64ISAR0_EL1.DP` (bits 44-47) is 1 where `sdot`/`udot` exist.
#[cfg(target_os = "linux")]
fn probe() -> bool {
    let isar0: u64;
    // SAFETY: reads a system register; Linux emulates the read for user code (HWCAP_CPUID,
    // every kernel since 4.11), and QEMU's user mode does too.
    unsafe { asm!("mrs {}, ID_AA64ISAR0_EL1", out(reg) isar0, options(nomem, nostack)) };
    (isar0 >> 44) & 0xf >= 1
}

/// Elsewhere the read may trap: no dot products.
#[cfg(not(target_os = "linux"))]
fn probe() -> bool {
    false
}

/// `acc[i] += sum_k w[4i + k] * x[4L + k]`: the indexed `sdot`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot_lane<const L: i32>(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` reads and writes only these registers; the target feature is on.
    unsafe {
        asm!(
            "sdot {a:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
            a = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            l = const L,
            options(pure, nomem, nostack),
        );
    }
    acc
}

/// `acc[i] += sum_k a[4i + k] * b[4i + k]`: the vector `sdot`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: as in `sdot_lane`.
    unsafe {
        asm!(
            "sdot {a:v}.4s, {x:v}.16b, {y:v}.16b",
            a = inout(vreg) acc,
            x = in(vreg) a,
            y = in(vreg) b,
            options(pure, nomem, nostack),
        );
    }
    acc
}

/// Sound because a value of [`Sdot`] exists only on a CPU whose ID register reported the
/// dot-product instructions the functions below enable.
impl DotIsa for Sdot {
    const KEY: u8 = 0;
    // Gathered windows are read sixteen bytes (four quads) per load, in place one quad per
    // load: past a first layer's few channels, more instructions (under qemu, 16% more on
    // `fmnist_cbam_res` at 1,152 taps).
    const IN_PLACE_TAPS: usize = 256;

    #[inline]
    fn taps_runs(
        self,
        dst: &mut [u8],
        src: &[i8],
        runs: (&[usize], usize),
        pixels: (usize, usize, usize),
    ) {
        // SAFETY: NEON is part of every aarch64 target.
        unsafe { taps_runs(dst, src, runs, pixels) }
    }

    #[inline]
    fn pixel2(
        self,
        windows: [&[u8]; 2],
        weights: (&[i8], usize),
        block: (&ChannelBlock, i32),
        outs: [&mut [i8]; 2],
    ) {
        // SAFETY: a value of the type proves the target features.
        unsafe { pixel2(windows, weights, block, outs) }
    }

    #[inline]
    fn pack(
        self,
        weights: &[i8],
        per_out: usize,
        quads: usize,
        packed: &mut [i32],
        sums: &mut [i32; BLOCK],
    ) {
        // SAFETY: a value of the type proves the target features.
        unsafe { pack(weights, per_out, quads, packed, sums) }
    }

    #[inline]
    fn gemm_quads(
        self,
        windows: (&[u8], usize),
        pixels: usize,
        panel: &[i32],
        block: (&ChannelBlock, &[i32; BLOCK], usize),
        out: (&mut [i8], usize, usize),
    ) {
        // SAFETY: a value of the type proves the target features.
        unsafe { gemm_quads(windows, pixels, panel, block, out) }
    }

    #[inline]
    fn gemm_in_place(
        self,
        src: &[u8],
        windows: (&[usize], &[usize]),
        panel: &[i32],
        block: (&ChannelBlock, &[i32; BLOCK], usize),
        out: (&mut [i8], usize, usize),
    ) {
        // SAFETY: a value of the type proves the target features.
        unsafe { gemm_in_place(src, windows, panel, block, out) }
    }
}

/// [`crate::kernels::backend::simd::gemm::pack_quads`] by 4x4 transposes of words: sixteen
/// bytes of a weight row are four tap quads of one channel, four such rows transposed are
/// four panel rows of four channels; `sdot` by ones sums each channel's taps on the way.
#[target_feature(enable = "neon,dotprod")]
fn pack(weights: &[i8], per_out: usize, quads: usize, packed: &mut [i32], sums: &mut [i32; BLOCK]) {
    let panel_len = quads * PANEL;
    if per_out == 0 || panel_len == 0 {
        return;
    }
    let ones = vdupq_n_s8(1);
    for (s, (panel, rows)) in packed
        .chunks_exact_mut(panel_len)
        .zip(weights.chunks(PANEL * per_out))
        .enumerate()
    {
        for group in 0..PANEL / 4 {
            let mut sum = vdupq_n_s32(0);
            let mut j0 = 0;
            while j0 < quads {
                // A loop, not an array `map`: its closure would stay out of line.
                let mut r = [vdupq_n_s32(0); 4];
                for (o, r) in r.iter_mut().enumerate() {
                    let row = rows.get((group * 4 + o) * per_out..).unwrap_or_default();
                    let row = row.get(..per_out).unwrap_or_default();
                    *r = load16(row.get(4 * j0..).unwrap_or_default());
                }
                for (k, &t) in transpose4(r).iter().enumerate() {
                    sum = sdot(sum, vreinterpretq_s8_s32(t), ones);
                    let at = (j0 + k) * PANEL + group * 4;
                    if let Some(dst) = panel.get_mut(at..).and_then(<[i32]>::first_chunk_mut::<4>) {
                        // SAFETY: writes exactly the 16 bytes of the chunk.
                        unsafe { vst1q_s32(dst.as_mut_ptr(), t) };
                    }
                }
                j0 += 4;
            }
            let at = s * PANEL + group * 4;
            if let Some(dst) = sums.get_mut(at..).and_then(<[i32]>::first_chunk_mut::<4>) {
                // SAFETY: writes exactly the 16 bytes of the chunk.
                unsafe { vst1q_s32(dst.as_mut_ptr(), sum) };
            }
        }
    }
}

/// The first sixteen bytes of `bytes` as four words, zero past its end.
#[inline]
#[target_feature(enable = "neon")]
fn load16(bytes: &[i8]) -> int32x4_t {
    match bytes.first_chunk::<16>() {
        // SAFETY: reads exactly the 16 bytes of the chunk.
        Some(c) => vreinterpretq_s32_s8(unsafe { vld1q_s8(c.as_ptr()) }),
        None => {
            let mut c = [0i8; 16];
            for (d, &s) in c.iter_mut().zip(bytes) {
                *d = s;
            }
            // SAFETY: reads exactly the 16 bytes of the local array.
            vreinterpretq_s32_s8(unsafe { vld1q_s8(c.as_ptr()) })
        }
    }
}

/// [`DotIsa::taps_runs`] with key 0: the runs copied sixteen bytes at a time, with the
/// bounds checked once per pixel.
#[target_feature(enable = "neon")]
fn taps_runs(
    dst: &mut [u8],
    src: &[i8],
    (starts, run): (&[usize], usize),
    (count, src_step, dst_step): (usize, usize, usize),
) {
    let (reach, written) = run_bounds(starts, run);
    for p in 0..count {
        let (d0, s0) = (p * dst_step, p * src_step);
        if s0 + reach > src.len() || d0 + written > dst.len() {
            // Near an end: each run exactly.
            for (k, &start) in starts.iter().enumerate() {
                let to = dst.get_mut(d0 + k * run..).unwrap_or_default();
                let from = src.get(s0 + start..).unwrap_or_default();
                for (d, &x) in to.iter_mut().zip(from).take(run) {
                    *d = x as u8;
                }
            }
            continue;
        }
        for (k, &start) in starts.iter().enumerate() {
            let (from, to) = (s0 + start, d0 + k * run);
            for at in (0..run).step_by(16) {
                // SAFETY: `from + at + 16 <= s0 + reach <= src.len()` and
                // `to + at + 16 <= d0 + written <= dst.len()` (checked above).
                unsafe {
                    let x = vld1q_u8(src.as_ptr().add(from + at).cast());
                    vst1q_u8(dst.as_mut_ptr().add(to + at), x);
                }
            }
        }
    }
}

#[target_feature(enable = "neon,dotprod")]
fn gemm_quads(
    (windows, stride): (&[u8], usize),
    pixels: usize,
    panel: &[i32],
    (block, start, at): (&ChannelBlock, &[i32; BLOCK], usize),
    (out, out_c, len): (&mut [i8], usize, usize),
) {
    let mut stage = Stage16::new(block, at);
    stage.start = [0, 1, 2, 3].map(|q| load_lanes(start, at + 4 * q));
    let mut done = 0;
    while done < pixels {
        let x = windows.get(done * stride..).unwrap_or_default();
        let o = out.get_mut(done * out_c..).unwrap_or_default();
        let (x, o) = ((x, stride), (o, out_c, len));
        done += match pixels - done {
            1 => tile::<1>(x, panel, &stage, o),
            2 => tile::<2>(x, panel, &stage, o),
            3 => tile::<3>(x, panel, &stage, o),
            _ => tile::<4>(x, panel, &stage, o),
        };
    }
}

#[target_feature(enable = "neon,dotprod")]
fn gemm_in_place(
    src: &[u8],
    (bases, offs): (&[usize], &[usize]),
    panel: &[i32],
    (block, start, at): (&ChannelBlock, &[i32; BLOCK], usize),
    (out, out_c, len): (&mut [i8], usize, usize),
) {
    let Some(x) = InPlace::new(src, bases, offs) else {
        return;
    };
    if panel.len() < offs.len() * PANEL {
        return;
    }
    let mut stage = Stage16::new(block, at);
    stage.start = [0, 1, 2, 3].map(|q| load_lanes(start, at + 4 * q));
    let mut done = 0;
    while done < x.pixels() {
        let o = out.get_mut(done * out_c..).unwrap_or_default();
        let (y, o) = (x.from(done), (o, out_c, len));
        done += match x.pixels() - done {
            1 => tile_in_place::<1>(y, panel, &stage, o),
            2 => tile_in_place::<2>(y, panel, &stage, o),
            3 => tile_in_place::<3>(y, panel, &stage, o),
            _ => tile_in_place::<4>(y, panel, &stage, o),
        };
    }
}

/// [`tile`] over windows read where they lie, one quad at a time (the quads of a window
/// are not one run). [`gemm_in_place`] checked the panel's length. Returns `P`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn tile_in_place<const P: usize>(
    x: InPlace<u8>,
    panel: &[i32],
    stage: &Stage16,
    (out, out_c, len): (&mut [i8], usize, usize),
) -> usize {
    if P == 0 || !x.covers(P) {
        return P.max(1);
    }
    let mut acc = [stage.start; P];
    let w = panel.as_ptr();
    for j in 0..x.words() {
        // SAFETY: `j < words`, pixels `p < P` are covered (checked above), and `panel`
        // holds `words * PANEL` words (checked by the caller).
        unsafe {
            let mut xv = [vdupq_n_s8(0); P];
            for (p, xv) in xv.iter_mut().enumerate() {
                *xv = vreinterpretq_s8_s32(vdupq_n_s32(x.word(p, j)));
            }
            quad_step::<0, P>(&mut acc, w.add(j * PANEL), &xv);
        }
    }
    for (p, acc) in acc.iter().enumerate() {
        let dst = out.get_mut(p * out_c..).unwrap_or_default();
        store16(dst, stage.finish(acc), len);
    }
    P
}

/// `P` pixels by the panel's sixteen channels: `4 * P` accumulators, four weight vectors
/// and the pixels' sixteen window bytes stay in registers. Returns `P`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn tile<const P: usize>(
    (windows, stride): (&[u8], usize),
    panel: &[i32],
    stage: &Stage16,
    (out, out_c, len): (&mut [i8], usize, usize),
) -> usize {
    let quads = stride / 4;
    if P == 0 || stride % 4 != 0 || windows.len() < P * stride || panel.len() < quads * PANEL {
        return P.max(1);
    }
    let mut acc = [stage.start; P];
    let (x, w) = (windows.as_ptr(), panel.as_ptr());
    let mut j = 0;
    // Four quads (sixteen window bytes) of each pixel per load.
    while j + 4 <= quads {
        // SAFETY: `j + 4 <= quads`, so words `j * PANEL..(j + 4) * PANEL` lie inside
        // `panel` and bytes `4j..4j + 16` of every pixel `p < P` inside `windows` (both
        // checked above).
        unsafe {
            let mut xv = [vdupq_n_s8(0); P];
            for (p, xv) in xv.iter_mut().enumerate() {
                *xv = vld1q_s8(x.add(p * stride + 4 * j).cast());
            }
            quad_step::<0, P>(&mut acc, w.add(j * PANEL), &xv);
            quad_step::<1, P>(&mut acc, w.add((j + 1) * PANEL), &xv);
            quad_step::<2, P>(&mut acc, w.add((j + 2) * PANEL), &xv);
            quad_step::<3, P>(&mut acc, w.add((j + 3) * PANEL), &xv);
        }
        j += 4;
    }
    while j < quads {
        // SAFETY: `j < quads`: as above for one quad.
        unsafe {
            let mut xv = [vdupq_n_s8(0); P];
            for (p, xv) in xv.iter_mut().enumerate() {
                let quad = x.add(p * stride + 4 * j).cast::<i32>().read_unaligned();
                *xv = vreinterpretq_s8_s32(vdupq_n_s32(quad));
            }
            quad_step::<0, P>(&mut acc, w.add(j * PANEL), &xv);
        }
        j += 1;
    }
    for (p, acc) in acc.iter().enumerate() {
        let dst = out.get_mut(p * out_c..).unwrap_or_default();
        store16(dst, stage.finish(acc), len);
    }
    P
}

/// One quad of sixteen channels (the panel row at `w`) against quad `L` of each pixel's
/// window bytes `xv`.
///
/// # Safety
/// `w` points at sixteen readable words.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn quad_step<const L: i32, const P: usize>(
    acc: &mut [[int32x4_t; 4]; P],
    w: *const i32,
    xv: &[int8x16_t; P],
) {
    // SAFETY: the caller's promise.
    let wv = unsafe {
        [
            vld1q_s8(w.cast()),
            vld1q_s8(w.add(4).cast()),
            vld1q_s8(w.add(8).cast()),
            vld1q_s8(w.add(12).cast()),
        ]
    };
    for (acc, &x) in acc.iter_mut().zip(xv) {
        for (a, &w) in acc.iter_mut().zip(&wv) {
            *a = sdot_lane::<L>(*a, w, x);
        }
    }
}

/// [`DotIsa::pixel2`] four channels at a time: each sixteen bytes of a weight row are
/// loaded once for both windows and for a vector of ones, which sums the row's weights
/// on the way.
#[target_feature(enable = "neon,dotprod")]
fn pixel2(
    windows: [&[u8]; 2],
    (weights, per_out): (&[i8], usize),
    (block, k): (&ChannelBlock, i32),
    outs: [&mut [i8]; 2],
) {
    let [oa, ob] = outs;
    let n = oa.len().min(ob.len()).min(BLOCK);
    let (xa, xb) = (
        windows[0].as_chunks::<16>().0,
        windows[1].as_chunks::<16>().0,
    );
    let chunks = per_out.div_ceil(16).min(xa.len()).min(xb.len());
    let whole = (per_out / 16).min(chunks);
    let ones = vdupq_n_s8(1);
    let mut ch = 0;
    while ch < n {
        // A last short group repeats its last row.
        let mut rows: [&[i8]; 4] = [&[]; 4];
        for (i, row) in rows.iter_mut().enumerate() {
            let from = row_from(weights, per_out, (ch + i).min(n - 1));
            *row = from.get(..per_out).unwrap_or_default();
        }
        let zero = vdupq_n_s32(0);
        let (mut a, mut b, mut w_sum) = ([zero; 4], [zero; 4], [zero; 4]);
        let full = rows.iter().all(|r| r.len() == per_out);
        if full {
            let pw = rows.map(<[i8]>::as_ptr);
            for c in 0..whole {
                // SAFETY: `c < whole <= per_out / 16`, so bytes `16c..16c + 16` lie inside
                // every row (each `per_out` long, checked above) and both windows.
                unsafe {
                    let x0 = vld1q_s8(xa.as_ptr().add(c).cast());
                    let x1 = vld1q_s8(xb.as_ptr().add(c).cast());
                    for (((aa, ab), s), pw) in a.iter_mut().zip(&mut b).zip(&mut w_sum).zip(pw) {
                        let w = vld1q_s8(pw.add(16 * c));
                        *aa = sdot(*aa, x0, w);
                        *ab = sdot(*ab, x1, w);
                        *s = sdot(*s, ones, w);
                    }
                }
            }
        }
        // The rows' last part-chunk, zero-padded.
        let from = if full { whole } else { 0 };
        for (c, (x0, x1)) in xa.iter().zip(xb).enumerate().take(chunks).skip(from) {
            // SAFETY: each reads exactly the 16 bytes of a window chunk.
            let (x0, x1) = unsafe { (vld1q_s8(x0.as_ptr().cast()), vld1q_s8(x1.as_ptr().cast())) };
            for (((aa, ab), s), row) in a.iter_mut().zip(&mut b).zip(&mut w_sum).zip(rows) {
                let mut tail = [0i8; 16];
                for (t, &v) in tail.iter_mut().zip(row.get(c * 16..).unwrap_or_default()) {
                    *t = v;
                }
                // SAFETY: reads exactly the 16 bytes of the local array.
                let w = unsafe { vld1q_s8(tail.as_ptr()) };
                *aa = sdot(*aa, x0, w);
                *ab = sdot(*ab, x1, w);
                *s = sdot(*s, ones, w);
            }
        }
        let bias = load_lanes(&block.bias, ch);
        let correction = vmulq_s32(vdupq_n_s32(k), reduce4(w_sum));
        let start = vsubq_s32(bias, correction);
        let lanes = Lanes {
            mult: load_lanes(&block.mult, ch),
            left: load_lanes(&block.left, ch),
            right: load_lanes(&block.right, ch),
            zp: vdupq_n_s32(block.zp),
            min: vdupq_n_s32(block.min),
            max: vdupq_n_s32(block.max),
        };
        let va = requant_lanes(vaddq_s32(reduce4(a), start), &lanes);
        let vb = requant_lanes(vaddq_s32(reduce4(b), start), &lanes);
        let bytes = pack8(va, vb);
        let (ba, bb) = bytes.split_at(4);
        if let (Some(da), Some(db)) = (oa.get_mut(ch..n), ob.get_mut(ch..n)) {
            for (o, &v) in da.iter_mut().zip(ba) {
                *o = v;
            }
            for (o, &v) in db.iter_mut().zip(bb) {
                *o = v;
            }
        }
        ch += 4;
    }
}

/// `[sum a0, sum a1, sum a2, sum a3]` (wrapping).
#[inline]
#[target_feature(enable = "neon")]
fn reduce4(a: [int32x4_t; 4]) -> int32x4_t {
    vpaddq_s32(vpaddq_s32(a[0], a[1]), vpaddq_s32(a[2], a[3]))
}
