//! AVX-512 VNNI on 256-bit vectors (`vpdpbusd ymm`, EVEX-encoded): the matrix product's
//! micro-kernel over byte windows (see [`crate::kernels::backend::simd::gemm::Quads`]).
//! One instruction multiplies four unsigned window bytes, broadcast, by the same four
//! taps of eight channels and adds the four products into each channel's accumulator:
//! 32 multiply-adds where AVX2's `vpmaddwd` + `vpaddd` do 16 in two.
//!
//! Bit-exactness: each product of an unsigned and a signed byte is exact, and the sums
//! wrap in `i32` like the portable `wrapping_add` (the instruction does not saturate), so
//! the accumulators end equal to the portable ones.
//!
//! The 256-bit form keeps the CPU out of the lower clock some chips run wide vectors at;
//! the EVEX encoding gives it 32 vector registers, so a tile holds eight pixels by sixteen
//! channels. CPUs with only the VEX-encoded AVX-VNNI (no AVX-512) run the AVX2 pairs.

use super::conv::{load_lanes_twice, reduce4x2};
use super::requant::{requant_lanes, Lanes, Stage16};
use super::{pack8, read_xcr0};
use crate::kernels::backend::simd::conv::row_from;
use crate::kernels::backend::simd::conv::run_bounds;
use crate::kernels::backend::simd::gemm::PANEL;
use crate::kernels::backend::simd::isa::{ChannelBlock, DotIsa, BLOCK};
use crate::kernels::backend::simd::words::{Gathered, InPlace, Words};
use crate::kernels::backend::simd::Probed;
use core::arch::x86_64::*;

/// Proof that the CPU has AVX2, AVX-512 VL and AVX-512 VNNI: only [`Vnni::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vnni(());

static VNNI: Probed = Probed::new();

impl Vnni {
    /// `Some` on a CPU (and OS) with the instructions; probed on the first call only.
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        VNNI.get(probe).then_some(Self(()))
    }
}

/// AVX2 (see [`super::probe`]), CPUID's AVX-512 F, VL and VNNI, and the OS saving the
/// opmask and upper vector registers (XCR0 bits 5-7) besides the YMM ones.
fn probe() -> bool {
    const AVX512F: u32 = 1 << 16;
    const AVX512VL: u32 = 1 << 31;
    const AVX512_VNNI: u32 = 1 << 11;
    const STATE: u64 = 0b1110_0110;
    if !super::probe() {
        return false;
    }
    let leaf7 = __cpuid_count(7, 0);
    // SAFETY: `super::probe` found OSXSAVE set, so XGETBV is available.
    let xcr0 = unsafe { read_xcr0() };
    leaf7.ebx & (AVX512F | AVX512VL) == AVX512F | AVX512VL
        && leaf7.ecx & AVX512_VNNI != 0
        && xcr0 & STATE == STATE
}

/// Sound because a value of [`Vnni`] exists only on a CPU whose CPUID reported the
/// target features `gemm_quads` enables.
impl DotIsa for Vnni {
    const KEY: u8 = 0x80;
    // Both kinds of window broadcast one quad per load; in place saves the gathering
    // (`fmnist_cbam_res` 8-10% faster at 1,152 taps than at 256, on Zen 4).
    const IN_PLACE_TAPS: usize = super::super::simd::gemm::MAX_IN_PLACE_TAPS;

    #[inline]
    fn taps_runs(
        self,
        dst: &mut [u8],
        src: &[i8],
        runs: (&[usize], usize),
        pixels: (usize, usize, usize),
    ) {
        // SAFETY: a value of the type proves the target features.
        unsafe { taps_runs(dst, src, runs, pixels) }
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

/// [`DotIsa::taps_runs`] sixteen bytes at a time, with the bounds checked once per pixel.
#[target_feature(enable = "avx2")]
fn taps_runs(
    dst: &mut [u8],
    src: &[i8],
    (starts, run): (&[usize], usize),
    (count, src_step, dst_step): (usize, usize, usize),
) {
    let key = _mm_set1_epi8(Vnni::KEY as i8);
    let (reach, written) = run_bounds(starts, run);
    for p in 0..count {
        let (d0, s0) = (p * dst_step, p * src_step);
        if s0 + reach > src.len() || d0 + written > dst.len() {
            // Near an end: each run exactly.
            for (k, &start) in starts.iter().enumerate() {
                let to = dst.get_mut(d0 + k * run..).unwrap_or_default();
                let from = src.get(s0 + start..).unwrap_or_default();
                for (d, &x) in to.iter_mut().zip(from).take(run) {
                    *d = x as u8 ^ Vnni::KEY;
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
                    let x = _mm_loadu_si128(src.as_ptr().add(from + at).cast());
                    let v = _mm_xor_si128(x, key);
                    _mm_storeu_si128(dst.as_mut_ptr().add(to + at).cast(), v);
                }
            }
        }
    }
}

/// [`crate::kernels::backend::simd::gemm::pack_quads`] by 8x8 transposes of words: eight
/// words of a weight row are eight tap quads of one channel, eight such rows transposed
/// are eight panel rows of eight channels; `vpdpbusd` of ones sums each channel's taps
/// on the way.
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn pack(weights: &[i8], per_out: usize, quads: usize, packed: &mut [i32], sums: &mut [i32; BLOCK]) {
    let panel_len = quads * PANEL;
    if per_out == 0 || panel_len == 0 {
        return;
    }
    let ones = _mm256_set1_epi8(1);
    for (s, (panel, rows)) in packed
        .chunks_exact_mut(panel_len)
        .zip(weights.chunks(PANEL * per_out))
        .enumerate()
    {
        for half in 0..PANEL / 8 {
            let mut sum = _mm256_setzero_si256();
            let mut j0 = 0;
            while j0 < quads {
                let mut r = [_mm256_setzero_si256(); 8];
                for (o, r) in r.iter_mut().enumerate() {
                    let row = rows.get((half * 8 + o) * per_out..).unwrap_or_default();
                    let row = row.get(..per_out).unwrap_or_default();
                    *r = load32(row.get(4 * j0..).unwrap_or_default());
                }
                let t = super::gemm::transpose8(r);
                for (j, t) in t.iter().enumerate() {
                    sum = _mm256_dpbusd_epi32(sum, ones, *t);
                    let at = (j0 + j) * PANEL + half * 8;
                    if let Some(dst) = panel.get_mut(at..).and_then(<[i32]>::first_chunk_mut::<8>) {
                        // SAFETY: writes exactly the 32 bytes of the chunk.
                        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), *t) };
                    }
                }
                j0 += 8;
            }
            let at = s * PANEL + half * 8;
            if let Some(dst) = sums.get_mut(at..).and_then(<[i32]>::first_chunk_mut::<8>) {
                // SAFETY: writes exactly the 32 bytes of the chunk.
                unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), sum) };
            }
        }
    }
}

/// The first 32 bytes of `bytes`, zero past its end.
#[inline]
#[target_feature(enable = "avx2")]
fn load32(bytes: &[i8]) -> __m256i {
    match bytes.first_chunk::<32>() {
        // SAFETY: reads exactly the 32 bytes of the chunk.
        Some(c) => unsafe { _mm256_loadu_si256(c.as_ptr().cast()) },
        None => {
            let mut c = [0i8; 32];
            for (d, &s) in c.iter_mut().zip(bytes) {
                *d = s;
            }
            // SAFETY: reads exactly the 32 bytes of the local array.
            unsafe { _mm256_loadu_si256(c.as_ptr().cast()) }
        }
    }
}

#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn gemm_quads(
    (windows, stride): (&[u8], usize),
    pixels: usize,
    panel: &[i32],
    (block, start, at): (&ChannelBlock, &[i32; BLOCK], usize),
    (out, out_c, len): (&mut [i8], usize, usize),
) {
    let mut stage = Stage16::new(block, at, stride);
    stage.bias = [load8(start, at), load8(start, at + 8)];
    let x = Gathered { windows, stride };
    let mut done = 0;
    while done < pixels {
        let o = out.get_mut(done * out_c..).unwrap_or_default();
        done += tiles(x.from(done), pixels - done, panel, &stage, (o, out_c, len));
    }
}

#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
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
    let mut stage = Stage16::new(block, at, 4 * offs.len());
    stage.bias = [load8(start, at), load8(start, at + 8)];
    let mut done = 0;
    while done < x.pixels() {
        let o = out.get_mut(done * out_c..).unwrap_or_default();
        done += tiles(
            x.from(done),
            x.pixels() - done,
            panel,
            &stage,
            (o, out_c, len),
        );
    }
}

/// The largest tile for `left` pixels of `x`; returns the pixels done.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn tiles<S: Words<u8>>(
    x: S,
    left: usize,
    panel: &[i32],
    stage: &Stage16,
    o: (&mut [i8], usize, usize),
) -> usize {
    match (o.2 <= PANEL / 2, left) {
        (true, 1) => tile::<1, 1, S>(x, panel, stage, o),
        (true, 2) => tile::<2, 1, S>(x, panel, stage, o),
        (true, 3) => tile::<3, 1, S>(x, panel, stage, o),
        (true, 4..=7) => tile::<4, 1, S>(x, panel, stage, o),
        (true, _) => tile::<8, 1, S>(x, panel, stage, o),
        (false, 1) => tile::<1, 2, S>(x, panel, stage, o),
        (false, 2) => tile::<2, 2, S>(x, panel, stage, o),
        (false, 3) => tile::<3, 2, S>(x, panel, stage, o),
        (false, 4..=7) => tile::<4, 2, S>(x, panel, stage, o),
        (false, _) => tile::<8, 2, S>(x, panel, stage, o),
    }
}

/// Eight words of `words` from `at`, zero past its end.
#[inline]
#[target_feature(enable = "avx2")]
fn load8(words: &[i32; BLOCK], at: usize) -> __m256i {
    super::load_lanes8(words, at)
}

/// `P` pixels by `8 * H` channels (`H` of 1 or 2 halves of the panel): `P * H`
/// accumulators, `H` weight vectors and a broadcast quad stay in registers. Returns `P`.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn tile<const P: usize, const H: usize, S: Words<u8>>(
    x: S,
    panel: &[i32],
    stage: &Stage16,
    (out, out_c, len): (&mut [i8], usize, usize),
) -> usize {
    let quads = x.words();
    if P == 0 || H == 0 || H > 2 || !x.covers(P) || panel.len() < quads * PANEL {
        return P.max(1);
    }
    let mut acc = [[_mm256_setzero_si256(); H]; P];
    for a in &mut acc {
        for (h, a) in a.iter_mut().enumerate() {
            *a = stage.bias[h];
        }
    }
    let w = panel.as_ptr();
    for j in 0..quads {
        // SAFETY: `j < quads`, so words `j * PANEL..(j + 1) * PANEL` lie inside `panel`
        // and quad `j` of every pixel `p < P` inside the source (both checked above); the
        // loads are unaligned ones.
        unsafe {
            let mut wv = [_mm256_setzero_si256(); H];
            for (h, wv) in wv.iter_mut().enumerate() {
                *wv = _mm256_loadu_si256(w.add(j * PANEL + 8 * h).cast());
            }
            for (p, acc) in acc.iter_mut().enumerate() {
                let xv = _mm256_set1_epi32(x.word(p, j));
                for (a, &wv) in acc.iter_mut().zip(&wv) {
                    *a = _mm256_dpbusd_epi32(*a, xv, wv);
                }
            }
        }
    }
    let short = stage.short_narrow();
    for (p, acc) in acc.iter().enumerate() {
        let bytes = match (H == 2, short) {
            (true, true) => stage.finish_short(&[acc[0], acc[H - 1]]),
            (true, false) => stage.finish_sums(&[acc[0], acc[H - 1]]),
            (false, true) => stage.finish8_short(acc[0]),
            (false, false) => stage.finish8_sums(acc[0]),
        };
        let dst = out.get_mut(p * out_c..).unwrap_or_default();
        let width = 8 * H;
        match dst.first_chunk_mut::<PANEL>() {
            // SAFETY: writes exactly the 16 bytes of the chunk.
            Some(d) if len == PANEL => unsafe { _mm_storeu_si128(d.as_mut_ptr().cast(), bytes) },
            _ => match dst.first_chunk_mut::<8>() {
                // SAFETY: writes exactly the 8 bytes of the chunk.
                Some(d) if len == 8 && width == 8 => unsafe {
                    _mm_storel_epi64(d.as_mut_ptr().cast(), bytes)
                },
                _ => {
                    let mut b = [0i8; PANEL];
                    // SAFETY: writes exactly the 16 bytes of the local array.
                    unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), bytes) };
                    for (d, &v) in dst.iter_mut().zip(b.iter().take(len.min(width))) {
                        *d = v;
                    }
                }
            },
        }
    }
    P
}

/// [`DotIsa::pixel2`] four channels at a time: each 32-byte chunk of a weight row is
/// loaded once for both windows and for a window of ones, which sums the row's weights
/// on the way; the twelve accumulators are summed across their lanes at the end.
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn pixel2(
    windows: [&[u8]; 2],
    (weights, per_out): (&[i8], usize),
    (block, k): (&ChannelBlock, i32),
    outs: [&mut [i8]; 2],
) {
    let [oa, ob] = outs;
    let n = oa.len().min(ob.len()).min(BLOCK);
    let (xa, xb) = (
        windows[0].as_chunks::<32>().0,
        windows[1].as_chunks::<32>().0,
    );
    let chunks = per_out.div_ceil(32).min(xa.len()).min(xb.len());
    let ones = _mm256_set1_epi8(1);
    let k = _mm256_set1_epi32(k);
    let mut ch = 0;
    while ch < n {
        // A last short group repeats its last row.
        // A loop, not an array `map`: its closure would not get this function's features.
        let mut rows: [&[i8]; 4] = [&[]; 4];
        for (i, row) in rows.iter_mut().enumerate() {
            let from = row_from(weights, per_out, (ch + i).min(n - 1));
            *row = from.get(..per_out).unwrap_or_default();
        }
        let mut a = [_mm256_setzero_si256(); 4];
        let mut b = [_mm256_setzero_si256(); 4];
        let mut w_sum = [_mm256_setzero_si256(); 4];
        let whole = (per_out / 32).min(chunks);
        if rows.iter().all(|r| r.len() == per_out) {
            let (pa, pb) = (xa.as_ptr(), xb.as_ptr());
            let pw = rows.map(<[i8]>::as_ptr);
            for c in 0..whole {
                // SAFETY: `c < whole <= per_out / 32`, so bytes `32c..32c + 32` lie inside
                // every row (each `per_out` long, checked above) and inside both windows
                // (`chunks` chunks each).
                unsafe {
                    let xa = _mm256_loadu_si256(pa.add(c).cast());
                    let xb = _mm256_loadu_si256(pb.add(c).cast());
                    for (((aa, ab), s), pw) in a.iter_mut().zip(&mut b).zip(&mut w_sum).zip(pw) {
                        let w = _mm256_loadu_si256(pw.add(32 * c).cast());
                        *aa = _mm256_dpbusd_epi32(*aa, xa, w);
                        *ab = _mm256_dpbusd_epi32(*ab, xb, w);
                        *s = _mm256_dpbusd_epi32(*s, ones, w);
                    }
                }
            }
        }
        // The last part-chunk of the rows, zero-padded (and every chunk of rows shorter
        // than the window, which a caller should not pass).
        let from = if rows.iter().all(|r| r.len() == per_out) {
            whole
        } else {
            0
        };
        for (c, (xa, xb)) in xa.iter().zip(xb).enumerate().take(chunks).skip(from) {
            // SAFETY: each reads exactly the 32 bytes of a window chunk.
            let (xa, xb) = unsafe {
                (
                    _mm256_loadu_si256(xa.as_ptr().cast()),
                    _mm256_loadu_si256(xb.as_ptr().cast()),
                )
            };
            for (((aa, ab), s), row) in a.iter_mut().zip(&mut b).zip(&mut w_sum).zip(rows) {
                let w = load32(row.get(c * 32..).unwrap_or_default());
                *aa = _mm256_dpbusd_epi32(*aa, xa, w);
                *ab = _mm256_dpbusd_epi32(*ab, xb, w);
                *s = _mm256_dpbusd_epi32(*s, ones, w);
            }
        }
        let sums = _mm256_add_epi32(reduce4x2(a, b), load_lanes_twice(&block.bias, ch));
        let w_sum = reduce4x2(w_sum, w_sum);
        let sums = _mm256_sub_epi32(sums, _mm256_mullo_epi32(k, w_sum));
        let lanes = Lanes {
            mult: load_lanes_twice(&block.mult, ch),
            left: load_lanes_twice(&block.left, ch),
            right: load_lanes_twice(&block.right, ch),
            zp: _mm256_set1_epi32(block.zp),
            min: _mm256_set1_epi32(block.min),
            max: _mm256_set1_epi32(block.max),
        };
        let bytes = pack8(requant_lanes(sums, &lanes));
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
