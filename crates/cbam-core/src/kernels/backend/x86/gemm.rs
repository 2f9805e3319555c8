//! The matrix product's micro-kernel (see [`crate::kernels::backend::simd::gemm`]): one
//! broadcast pair of window taps `vpmaddwd` against the same pair of taps of eight
//! channels gives eight exact `i32` pair sums, added into that pixel's accumulators.

use super::load_lanes8;
use super::requant::{doubling_high, requant_lanes, rounding_shr, saturating_shl, Lanes};
use crate::kernels::backend::simd::gemm::PANEL;
use crate::kernels::backend::simd::isa::ChannelBlock;
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
fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
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
    (block, at): (&ChannelBlock, usize),
    (out, out_c, len): (&mut [i8], usize, usize),
) {
    let stage = PanelStage::new(block, at);
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

/// `P` pixels of [`gemm_run`]: `2 * P` accumulators, two weight vectors and a broadcast
/// tap pair stay in registers. Returns `P`.
#[inline]
#[target_feature(enable = "avx2")]
fn tile<const P: usize>(
    (windows, stride): (&[i16], usize),
    panel: &[i32],
    stage: &PanelStage,
    (out, out_c, len): (&mut [i8], usize, usize),
) -> usize {
    let pairs = stride / 2;
    if P == 0 || stride % 2 != 0 || windows.len() < P * stride || panel.len() < pairs * PANEL {
        return P.max(1);
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
    for (p, acc) in acc.iter().enumerate() {
        let bytes = stage.finish(acc);
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

/// Output zero points for which [`PanelStage::finish`] may add the zero point with `i16`
/// saturation: a value saturated at `+-32767` plus such a zero point is still outside the
/// int8 range on the same side, so the final clamp gives what the exact sum would.
const NARROW_ZP: core::ops::RangeInclusive<i32> = -32_640..=32_640;

/// The output stage of a panel's sixteen channels, decoded once per tile.
struct PanelStage {
    bias: [__m256i; 2],
    mult: [__m256i; 2],
    left: [__m256i; 2],
    right: [__m256i; 2],
    mask: [__m256i; 2],
    half: [__m256i; 2],
    /// Whether any channel has a left shift (a multiplier above one: rare).
    shifts_left: bool,
    narrow: bool,
    zp16: __m256i,
    min8: __m128i,
    max8: __m128i,
    /// The general stage, for a zero point that is not narrow.
    lanes: [Lanes; 2],
}

impl PanelStage {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn new(block: &ChannelBlock, at: usize) -> Self {
        let (zp, min, max) = (
            _mm256_set1_epi32(block.zp),
            _mm256_set1_epi32(block.min),
            _mm256_set1_epi32(block.max),
        );
        let one = _mm256_set1_epi32(1);
        let mult = [
            load_lanes8(&block.mult, at),
            load_lanes8(&block.mult, at + 8),
        ];
        let left = [
            load_lanes8(&block.left, at),
            load_lanes8(&block.left, at + 8),
        ];
        let right = [
            load_lanes8(&block.right, at),
            load_lanes8(&block.right, at + 8),
        ];
        let mask = [
            _mm256_sub_epi32(_mm256_sllv_epi32(one, right[0]), one),
            _mm256_sub_epi32(_mm256_sllv_epi32(one, right[1]), one),
        ];
        let lanes = [
            Lanes {
                mult: mult[0],
                left: left[0],
                right: right[0],
                zp,
                min,
                max,
            },
            Lanes {
                mult: mult[1],
                left: left[1],
                right: right[1],
                zp,
                min,
                max,
            },
        ];
        Self {
            bias: [
                load_lanes8(&block.bias, at),
                load_lanes8(&block.bias, at + 8),
            ],
            mult,
            left,
            right,
            mask,
            half: [
                _mm256_srai_epi32::<1>(mask[0]),
                _mm256_srai_epi32::<1>(mask[1]),
            ],
            shifts_left: {
                let any = _mm256_or_si256(left[0], left[1]);
                _mm256_testz_si256(any, any) == 0
            },
            narrow: NARROW_ZP.contains(&block.zp),
            // Only read for a narrow zero point, which then fits.
            zp16: _mm256_set1_epi16(block.zp as i16),
            min8: _mm_set1_epi8(block.min as i8),
            max8: _mm_set1_epi8(block.max as i8),
            lanes,
        }
    }

    /// `clamp(requant(bias + acc) + zp)` of the sixteen channels, as bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn finish(&self, acc: &[__m256i; 2]) -> __m128i {
        let sums = [
            _mm256_add_epi32(acc[0], self.bias[0]),
            _mm256_add_epi32(acc[1], self.bias[1]),
        ];
        if !self.narrow {
            return pack16(
                requant_lanes(sums[0], &self.lanes[0]),
                requant_lanes(sums[1], &self.lanes[1]),
            );
        }
        let mut scaled = [_mm256_setzero_si256(); 2];
        for (h, s) in scaled.iter_mut().enumerate() {
            let x = if self.shifts_left {
                saturating_shl(sums[h], self.left[h])
            } else {
                sums[h]
            };
            let high = doubling_high(x, self.mult[h]);
            *s = rounding_shr(high, self.right[h], self.mask[h], self.half[h]);
        }
        // Saturated to i16 and back in channel order, plus the zero point (see NARROW_ZP),
        // saturated to i8 and clamped to the activation range.
        let words = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi32(scaled[0], scaled[1]));
        let words = _mm256_adds_epi16(words, self.zp16);
        let bytes = _mm_packs_epi16(
            _mm256_castsi256_si128(words),
            _mm256_extracti128_si256::<1>(words),
        );
        _mm_min_epi8(_mm_max_epi8(bytes, self.min8), self.max8)
    }
}

/// The sixteen int8-range lanes of `a` then `b` as bytes.
#[inline]
#[target_feature(enable = "avx2")]
fn pack16(a: __m256i, b: __m256i) -> __m128i {
    // `packs` works within 128-bit halves: [a0-3, b0-3 | a4-7, b4-7], put back in order.
    let words = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi32(a, b));
    _mm_packs_epi16(
        _mm256_castsi256_si128(words),
        _mm256_extracti128_si256::<1>(words),
    )
}
