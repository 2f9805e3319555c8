//! DEPTHWISE_CONV2D: one output pixel of sixteen channels, two taps per multiply-add.

use super::requant::{requant_lanes, Lanes, Stage16};
use super::{load_lanes8, pack8};
use crate::kernels::backend::simd::depthwise::{PairWeights, LANES};
use crate::kernels::backend::simd::isa::ChannelBlock;
use core::arch::x86_64::*;

/// The first sixteen bytes of `row`, zero-padded.
#[inline]
#[target_feature(enable = "avx2")]
fn load_row(row: &[i8]) -> __m128i {
    match row.first_chunk::<16>() {
        // SAFETY: reads exactly the 16 bytes of the chunk.
        Some(bytes) => unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) },
        None => {
            let mut bytes = [0i8; 16];
            for (b, &x) in bytes.iter_mut().zip(row) {
                *b = x;
            }
            // SAFETY: reads exactly the 16 bytes of the local array.
            unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
        }
    }
}

/// Bit-exact: `x + offset` fits `i16` (the offset is minus an int8 zero point), so each
/// `vpmaddwd` pair sum `(xa + off) * wa + (xb + off) * wb` fits `i32`, and the adds wrap
/// like the portable kernel's.
#[target_feature(enable = "avx2")]
pub(super) fn depthwise_pixel(
    rows: &[&[i8]],
    weights: &[PairWeights],
    offset: i16,
    (block, at): (&ChannelBlock, usize),
    out: &mut [i8],
) {
    let off = _mm256_set1_epi16(offset);
    let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    for (pair, w) in rows.chunks_exact(2).zip(weights) {
        let [a, b] = pair else { continue };
        let (a, b) = (load_row(a), load_row(b));
        // Channel by channel (tap a, tap b): the layout of the weights.
        let xl = _mm256_add_epi16(_mm256_cvtepi8_epi16(_mm_unpacklo_epi8(a, b)), off);
        let xh = _mm256_add_epi16(_mm256_cvtepi8_epi16(_mm_unpackhi_epi8(a, b)), off);
        // SAFETY: each reads 32 of the 64 bytes of `w`.
        let (wl, wh) = unsafe {
            (
                _mm256_loadu_si256(w.as_ptr().cast()),
                _mm256_loadu_si256(w.as_ptr().add(LANES).cast()),
            )
        };
        lo = _mm256_add_epi32(lo, _mm256_madd_epi16(xl, wl));
        hi = _mm256_add_epi32(hi, _mm256_madd_epi16(xh, wh));
    }
    let mut bytes = [0i8; LANES];
    for (half, (acc, dst)) in [lo, hi]
        .into_iter()
        .zip(bytes.chunks_exact_mut(8))
        .enumerate()
    {
        let ch = at + 8 * half;
        let lanes = Lanes {
            mult: load_lanes8(&block.mult, ch),
            left: load_lanes8(&block.left, ch),
            right: load_lanes8(&block.right, ch),
            zp: _mm256_set1_epi32(block.zp),
            min: _mm256_set1_epi32(block.min),
            max: _mm256_set1_epi32(block.max),
        };
        let acc = _mm256_add_epi32(acc, load_lanes8(&block.bias, ch));
        dst.copy_from_slice(&pack8(requant_lanes(acc, &lanes)));
    }
    let n = out.len().min(LANES);
    if let (Some(o), Some(b)) = (out.get_mut(..n), bytes.get(..n)) {
        o.copy_from_slice(b);
    }
}

/// Rows of output pixels whose windows lie inside the input: the output stage decoded
/// once, and `offset * sum(w)` folded into its bias so that the taps need no offset add
/// (`sum (x + offset) * w = sum x * w + offset * sum w`, all wrapping).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
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
    let mut stage = Stage16::new(block, at, taps.len());
    let ones = _mm256_set1_epi16(1);
    let (mut sum_lo, mut sum_hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    for w in weights {
        // SAFETY: each reads 32 of the 64 bytes of `w`.
        let (wl, wh) = unsafe {
            (
                _mm256_loadu_si256(w.as_ptr().cast()),
                _mm256_loadu_si256(w.as_ptr().add(LANES).cast()),
            )
        };
        sum_lo = _mm256_add_epi32(sum_lo, _mm256_madd_epi16(wl, ones));
        sum_hi = _mm256_add_epi32(sum_hi, _mm256_madd_epi16(wh, ones));
    }
    let off = _mm256_set1_epi32(i32::from(offset));
    stage.bias[0] = _mm256_add_epi32(stage.bias[0], _mm256_mullo_epi32(sum_lo, off));
    stage.bias[1] = _mm256_add_epi32(stage.bias[1], _mm256_mullo_epi32(sum_hi, off));
    let (x, w) = (input.as_ptr(), weights.as_ptr());
    for y in 0..n {
        for i in 0..count {
            let base = start + y * row_in + i * step;
            let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for (j, pair) in taps.chunks_exact(2).enumerate() {
                let [ta, tb] = pair else { continue };
                // SAFETY: `base + tap + 16 <= input.len()` for every pixel and tap (checked
                // above), and `j < pairs` weight entries of 64 bytes.
                let (a, b, wl, wh) = unsafe {
                    let wj = w.add(j).cast::<i16>();
                    (
                        _mm_loadu_si128(x.add(base + ta).cast()),
                        _mm_loadu_si128(x.add(base + tb).cast()),
                        _mm256_loadu_si256(wj.cast()),
                        _mm256_loadu_si256(wj.add(LANES).cast()),
                    )
                };
                let xl = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(a, b));
                let xh = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(a, b));
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(xl, wl));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(xh, wh));
            }
            let bytes = stage.finish(&[lo, hi]);
            let dst = out
                .get_mut(y * row_out + i * out_step..)
                .unwrap_or_default();
            match dst.first_chunk_mut::<LANES>() {
                // SAFETY: writes exactly the 16 bytes of the chunk.
                Some(d) if len == LANES => unsafe {
                    _mm_storeu_si128(d.as_mut_ptr().cast(), bytes)
                },
                _ => {
                    let mut b = [0i8; LANES];
                    // SAFETY: writes exactly the 16 bytes of the local array.
                    unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), bytes) };
                    for (d, &v) in dst.iter_mut().zip(b.iter().take(len)) {
                        *d = v;
                    }
                }
            }
        }
    }
    true
}
