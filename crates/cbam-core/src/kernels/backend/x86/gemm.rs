//! The matrix product's micro-kernel (see [`crate::kernels::backend::simd::gemm`]): one
//! broadcast pair of window taps `vpmaddwd` against the same pair of taps of eight
//! channels gives eight exact `i32` pair sums, added into that pixel's accumulators.

use super::load_lanes8;
use super::requant::{requant_lanes, Lanes};
use crate::kernels::backend::simd::gemm::PANEL;
use crate::kernels::backend::simd::isa::ChannelBlock;
use core::arch::x86_64::*;

#[target_feature(enable = "avx2")]
pub(super) fn gemm_tile(
    windows: (&[i16], usize),
    pixels: usize,
    panel: &[i32],
    block: (&ChannelBlock, usize),
    out: (&mut [i8], usize, usize),
) {
    match pixels {
        4 => tile::<4>(windows, panel, block, out),
        3 => tile::<3>(windows, panel, block, out),
        2 => tile::<2>(windows, panel, block, out),
        1 => tile::<1>(windows, panel, block, out),
        _ => {}
    }
}

/// [`gemm_tile`] of `P` pixels: `2 * P` accumulators, two weight vectors and a broadcast
/// tap pair stay in registers.
#[inline]
#[target_feature(enable = "avx2")]
fn tile<const P: usize>(
    (windows, stride): (&[i16], usize),
    panel: &[i32],
    (block, at): (&ChannelBlock, usize),
    (out, out_c, len): (&mut [i8], usize, usize),
) {
    let pairs = stride / 2;
    if P == 0
        || stride % 2 != 0
        || windows.len() < P * stride
        || panel.len() < pairs * PANEL
        || len > PANEL
    {
        return;
    }
    let mut acc = [[_mm256_setzero_si256(); 2]; P];
    let (x, w) = (windows.as_ptr(), panel.as_ptr());
    for j in 0..pairs {
        // SAFETY: `j < pairs`, so words `j * PANEL..(j + 1) * PANEL` lie inside `panel` and
        // taps `2j, 2j + 1` of every pixel `p < P` inside `windows` (both checked above);
        // the loads are unaligned ones.
        unsafe {
            let w0 = _mm256_loadu_si256(w.add(j * PANEL).cast());
            let w1 = _mm256_loadu_si256(w.add(j * PANEL + 8).cast());
            for (p, acc) in acc.iter_mut().enumerate() {
                let pair = x.add(p * stride + 2 * j).cast::<i32>().read_unaligned();
                let xv = _mm256_set1_epi32(pair);
                acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(xv, w0));
                acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(xv, w1));
            }
        }
    }
    let (zp, min, max) = (
        _mm256_set1_epi32(block.zp),
        _mm256_set1_epi32(block.min),
        _mm256_set1_epi32(block.max),
    );
    let lo = Lanes {
        mult: load_lanes8(&block.mult, at),
        left: load_lanes8(&block.left, at),
        right: load_lanes8(&block.right, at),
        zp,
        min,
        max,
    };
    let hi = Lanes {
        mult: load_lanes8(&block.mult, at + 8),
        left: load_lanes8(&block.left, at + 8),
        right: load_lanes8(&block.right, at + 8),
        zp,
        min,
        max,
    };
    let (bias_lo, bias_hi) = (
        load_lanes8(&block.bias, at),
        load_lanes8(&block.bias, at + 8),
    );
    for (p, acc) in acc.iter().enumerate() {
        let v0 = requant_lanes(_mm256_add_epi32(acc[0], bias_lo), &lo);
        let v1 = requant_lanes(_mm256_add_epi32(acc[1], bias_hi), &hi);
        let bytes = pack16(v0, v1);
        let dst = out.get_mut(p * out_c..).unwrap_or_default();
        if let (Some(dst), Some(src)) = (dst.get_mut(..len), bytes.get(..len)) {
            dst.copy_from_slice(src);
        }
    }
}

/// The sixteen int8-range lanes of `a` then `b` as bytes.
#[inline]
#[target_feature(enable = "avx2")]
fn pack16(a: __m256i, b: __m256i) -> [i8; 16] {
    // `packs` works within 128-bit halves: [a0-3, b0-3 | a4-7, b4-7], put back in order.
    let words = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi32(a, b));
    let bytes = _mm_packs_epi16(
        _mm256_castsi256_si128(words),
        _mm256_extracti128_si256::<1>(words),
    );
    let mut out = [0i8; 16];
    // SAFETY: writes exactly the 16 bytes of the local array.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), bytes) };
    out
}
