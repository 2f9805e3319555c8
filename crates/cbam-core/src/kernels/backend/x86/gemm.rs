//! The matrix product's micro-kernel (see [`crate::kernels::backend::simd::gemm`]): one
//! broadcast pair of window taps `vpmaddwd` against the same pair of taps of eight
//! channels gives eight exact `i32` pair sums, added into that pixel's accumulators.

use super::requant::Stage16;
use crate::kernels::backend::simd::gemm::PANEL;
use crate::kernels::backend::simd::isa::ChannelBlock;
use crate::kernels::backend::simd::words::{Gathered, InPlace, Words};
use core::arch::x86_64::*;

/// [`crate::kernels::backend::simd::gemm::pack`] by 8x8 transposes: sixteen bytes of a
/// weight row, sign-extended, are eight tap-pair words of one channel; eight such rows
/// transposed are eight panel rows of eight channels.
#[target_feature(enable = "avx2")]
pub(super) fn pack_panels(weights: &[i8], per_out: usize, pairs: usize, packed: &mut [i32]) {
    let panel_len = pairs * PANEL;
    if per_out == 0 || panel_len == 0 {
        return;
    }
    for (panel, rows) in packed
        .chunks_exact_mut(panel_len)
        .zip(weights.chunks(PANEL * per_out))
    {
        for half in 0..PANEL / 8 {
            let mut j0 = 0;
            while j0 < pairs {
                let mut r = [_mm256_setzero_si256(); 8];
                for (o, r) in r.iter_mut().enumerate() {
                    let row = rows.get((half * 8 + o) * per_out..).unwrap_or_default();
                    let row = row.get(..per_out).unwrap_or_default();
                    *r = widen_chunk(row.get(2 * j0..).unwrap_or_default());
                }
                let t = transpose8(r);
                for (j, t) in t.iter().enumerate() {
                    let at = (j0 + j) * PANEL + half * 8;
                    if let Some(dst) = panel.get_mut(at..).and_then(<[i32]>::first_chunk_mut::<8>) {
                        // SAFETY: writes exactly the 32 bytes of the chunk.
                        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), *t) };
                    }
                }
                j0 += 8;
            }
        }
    }
}

/// The first sixteen bytes of `bytes` (zero past its end) sign-extended to `i16`.
#[inline]
#[target_feature(enable = "avx2")]
fn widen_chunk(bytes: &[i8]) -> __m256i {
    let v = match bytes.first_chunk::<16>() {
        // SAFETY: reads exactly the 16 bytes of the chunk.
        Some(c) => unsafe { _mm_loadu_si128(c.as_ptr().cast()) },
        None => {
            let mut c = [0i8; 16];
            for (d, &s) in c.iter_mut().zip(bytes) {
                *d = s;
            }
            // SAFETY: reads exactly the 16 bytes of the local array.
            unsafe { _mm_loadu_si128(c.as_ptr().cast()) }
        }
    };
    _mm256_cvtepi8_epi16(v)
}

/// The 8x8 transpose of `i32` lanes: lane `i` of result `j` is lane `j` of `r[i]`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
    let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

#[target_feature(enable = "avx2")]
pub(super) fn gemm_run(
    (windows, stride): (&[i16], usize),
    pixels: usize,
    panel: &[i32],
    block: (&ChannelBlock, usize),
    out: (&mut [i8], usize, usize),
) {
    let x = Gathered { windows, stride };
    tiles(x, pixels, panel, block, out);
}

/// [`crate::kernels::backend::simd::Isa::gemm_in_place`]: [`gemm_run`] with each
/// pixel's pairs read at `bases[p] + offs[j]`.
#[target_feature(enable = "avx2")]
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
#[target_feature(enable = "avx2")]
fn tiles<S: Words<i16>>(
    x: S,
    pixels: usize,
    panel: &[i32],
    (block, at): (&ChannelBlock, usize),
    (out, out_c, len): (&mut [i8], usize, usize),
) {
    let stage = Stage16::new(block, at, 2 * x.words());
    let mut done = 0;
    while done < pixels {
        let x = x.from(done);
        let o = out.get_mut(done * out_c..).unwrap_or_default();
        let o = (o, out_c, len);
        done += match (len <= PANEL / 2, pixels - done) {
            (true, 1) => tile8::<1, S>(x, panel, &stage, o),
            (true, 2) => tile8::<2, S>(x, panel, &stage, o),
            (true, 3) => tile8::<3, S>(x, panel, &stage, o),
            (true, 4..=7) => tile8::<4, S>(x, panel, &stage, o),
            (true, _) => tile8::<8, S>(x, panel, &stage, o),
            (false, 1) => tile::<1, S>(x, panel, &stage, o),
            (false, 2) => tile::<2, S>(x, panel, &stage, o),
            (false, 3) => tile::<3, S>(x, panel, &stage, o),
            (false, _) => tile::<4, S>(x, panel, &stage, o),
        };
    }
}

/// `P` pixels of [`gemm_run`]: `2 * P` accumulators, two weight vectors and a broadcast
/// tap pair stay in registers. Returns `P`.
#[inline]
#[target_feature(enable = "avx2")]
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
    // From the bias: one add fewer per output than adding it at the end.
    let mut acc = [stage.bias; P];
    let w = panel.as_ptr();
    for j in 0..pairs {
        // SAFETY: `j < pairs`, so words `j * PANEL..(j + 1) * PANEL` lie inside `panel` and
        // pair `j` of every pixel `p < P` inside the source (both checked above); the
        // loads are unaligned ones.
        unsafe {
            let w0 = _mm256_loadu_si256(w.add(j * PANEL).cast());
            let w1 = _mm256_loadu_si256(w.add(j * PANEL + 8).cast());
            for (p, acc) in acc.iter_mut().enumerate() {
                let xv = _mm256_set1_epi32(x.word(p, j));
                acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(xv, w0));
                acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(xv, w1));
            }
        }
    }
    for (p, acc) in acc.iter().enumerate() {
        let bytes = stage.finish_sums(acc);
        let dst = out.get_mut(p * out_c..).unwrap_or_default();
        match dst.first_chunk_mut::<PANEL>() {
            // SAFETY: writes exactly the 16 bytes of the chunk.
            Some(d) if len == PANEL => unsafe { _mm_storeu_si128(d.as_mut_ptr().cast(), bytes) },
            _ => {
                let mut b = [0i8; PANEL];
                // SAFETY: writes exactly the 16 bytes of the local array.
                unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), bytes) };
                for (d, &v) in dst.iter_mut().zip(b.iter().take(len)) {
                    *d = v;
                }
            }
        }
    }
    P
}

/// [`tile`] for the first eight channels of the panel alone (`len <= 8`): `P`
/// accumulators, one weight vector and a broadcast tap pair stay in registers. Returns
/// `P`.
#[inline]
#[target_feature(enable = "avx2")]
fn tile8<const P: usize, S: Words<i16>>(
    x: S,
    panel: &[i32],
    stage: &Stage16,
    (out, out_c, len): (&mut [i8], usize, usize),
) -> usize {
    let pairs = x.words();
    if P == 0 || !x.covers(P) || panel.len() < pairs * PANEL {
        return P.max(1);
    }
    let mut acc = [stage.bias[0]; P];
    let w = panel.as_ptr();
    for j in 0..pairs {
        // SAFETY: as in `tile`, for the panel's first eight channels.
        unsafe {
            let w0 = _mm256_loadu_si256(w.add(j * PANEL).cast());
            for (p, acc) in acc.iter_mut().enumerate() {
                let xv = _mm256_set1_epi32(x.word(p, j));
                *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(xv, w0));
            }
        }
    }
    for (p, acc) in acc.iter().enumerate() {
        let bytes = stage.finish8_sums(*acc);
        let dst = out.get_mut(p * out_c..).unwrap_or_default();
        match dst.first_chunk_mut::<8>() {
            // SAFETY: writes exactly the 8 bytes of the chunk.
            Some(d) if len == 8 => unsafe { _mm_storel_epi64(d.as_mut_ptr().cast(), bytes) },
            _ => {
                let mut b = [0i8; PANEL];
                // SAFETY: writes exactly the 16 bytes of the local array.
                unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), bytes) };
                for (d, &v) in dst.iter_mut().zip(b.iter().take(len)) {
                    *d = v;
                }
            }
        }
    }
    P
}
