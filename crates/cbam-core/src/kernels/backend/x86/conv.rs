//! CONV2D: widening windows, the dot products over them and each pixel's output stage.

use super::requant::{requant4, requant_lanes, Lanes};
use super::{load16, load_lanes, load_lanes8, pack8};
use crate::kernels::backend::simd::conv::{row_from, run_bounds};
use crate::kernels::backend::simd::isa::{ChannelBlock, SmallWeights, SMALL_PAIRS};
use core::arch::x86_64::*;

#[target_feature(enable = "avx2")]
pub(super) fn widen(dst: &mut [i16], src: &[i8], offset: i16) {
    let off = _mm256_set1_epi16(offset);
    let (dc, _) = dst.as_chunks_mut::<16>();
    let (sc, _) = src.as_chunks::<16>();
    let mut done = 0;
    for (d, s) in dc.iter_mut().zip(sc) {
        let v = _mm256_add_epi16(_mm256_cvtepi8_epi16(load16(s)), off);
        // SAFETY: writes exactly the 32 bytes of the destination array.
        unsafe { _mm256_storeu_si256(d.as_mut_ptr().cast(), v) };
        done += 16;
    }
    // An eight-byte step before the scalar tail: runs are often 8 * k bytes long.
    let d8 = dst.get_mut(done..).and_then(<[i16]>::first_chunk_mut::<8>);
    let s8 = src.get(done..).and_then(<[i8]>::first_chunk::<8>);
    if let (Some(d), Some(s)) = (d8, s8) {
        // SAFETY: reads exactly the 8 bytes of `s`, writes exactly the 16 bytes of `d`.
        unsafe {
            let v = _mm_cvtepi8_epi16(_mm_loadl_epi64(s.as_ptr().cast()));
            _mm_storeu_si128(
                d.as_mut_ptr().cast(),
                _mm_add_epi16(v, _mm256_castsi256_si128(off)),
            );
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

/// [`widen`] of each run of each pixel in turn, sixteen bytes at a time where both slices
/// hold all of a pixel's whole vectors (the last vector of a run may spill into the next
/// run or pixel, which is written after it, or past the last one, which the caller
/// allows); exactly, one run at a time, elsewhere.
#[target_feature(enable = "avx2")]
pub(super) fn widen_runs(
    dst: &mut [i16],
    src: &[i8],
    (starts, run): (&[usize], usize),
    (count, src_step, dst_step): (usize, usize, usize),
    offset: i16,
) {
    let off = _mm256_set1_epi16(offset);
    let (reach, written) = run_bounds(starts, run);
    for p in 0..count {
        let (d0, s0) = (p * dst_step, p * src_step);
        if s0 + reach > src.len() || d0 + written > dst.len() {
            // Near an end: each run exactly.
            for (k, &start) in starts.iter().enumerate() {
                let d = dst
                    .get_mut(d0 + k * run..d0 + (k + 1) * run)
                    .unwrap_or_default();
                widen(
                    d,
                    src.get(s0 + start..s0 + start + run).unwrap_or_default(),
                    offset,
                );
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
                    let v = _mm256_add_epi16(_mm256_cvtepi8_epi16(x), off);
                    _mm256_storeu_si256(dst.as_mut_ptr().add(to + at).cast(), v);
                }
            }
        }
    }
}

/// `[sum a0, sum a1, sum a2, sum a3]` of four 8-lane accumulators (wrapping).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn reduce4(a: [__m256i; 4]) -> __m128i {
    let s01 = _mm256_hadd_epi32(a[0], a[1]);
    let s23 = _mm256_hadd_epi32(a[2], a[3]);
    let s = _mm256_hadd_epi32(s01, s23);
    _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s))
}

/// The dot products of `window` with four weight rows, each running to the end of the
/// block's weights (so that only the last rows can be shorter than the window).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn dot4(window: &[[i16; 16]], rows: [&[i8]; 4]) -> __m128i {
    let mut acc = [_mm256_setzero_si256(); 4];
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
        // SAFETY: reads exactly the 32 bytes of the window chunk.
        let x = unsafe { _mm256_loadu_si256(x.as_ptr().cast()) };
        for (a, w) in acc.iter_mut().zip([w0, w1, w2, w3]) {
            let w = _mm256_cvtepi8_epi16(load16(w));
            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(x, w));
        }
        done += 1;
    }
    // The last rows end before the window does: copy what is left of them, zero-padded
    // (the window is zero past the real taps, so any padding value would do).
    for (k, x) in window.iter().enumerate().skip(done) {
        // SAFETY: as above.
        let x = unsafe { _mm256_loadu_si256(x.as_ptr().cast()) };
        for (a, row) in acc.iter_mut().zip(rows) {
            let mut tail = [0i8; 16];
            let part = row.get(k * 16..).unwrap_or_default();
            for (t, &v) in tail.iter_mut().zip(part) {
                *t = v;
            }
            let w = _mm256_cvtepi8_epi16(load16(&tail));
            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(x, w));
        }
    }
    reduce4(acc)
}

/// `[sum a0, .., sum a3 | sum b0, .., sum b3]` of two pixels' four 8-lane accumulators
/// (wrapping): one reduction for both halves.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn reduce4x2(a: [__m256i; 4], b: [__m256i; 4]) -> __m256i {
    let sa = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
    let sb = _mm256_hadd_epi32(_mm256_hadd_epi32(b[0], b[1]), _mm256_hadd_epi32(b[2], b[3]));
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(sa, sb),
        _mm256_permute2x128_si256::<0x31>(sa, sb),
    )
}

/// [`dot4`] for two windows: each weight chunk is loaded and widened once for both. The
/// first window's four sums are the low half of the result, the second's the high half.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn dot4x2(windows: [&[[i16; 16]]; 2], rows: [&[i8]; 4]) -> __m256i {
    let mut a = [_mm256_setzero_si256(); 4];
    let mut b = [_mm256_setzero_si256(); 4];
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
        // SAFETY: each reads exactly the 32 bytes of a window chunk.
        let (xa, xb) = unsafe {
            (
                _mm256_loadu_si256(xa.as_ptr().cast()),
                _mm256_loadu_si256(xb.as_ptr().cast()),
            )
        };
        for ((aa, ab), w) in a.iter_mut().zip(b.iter_mut()).zip([w0, w1, w2, w3]) {
            let w = _mm256_cvtepi8_epi16(load16(w));
            *aa = _mm256_add_epi32(*aa, _mm256_madd_epi16(xa, w));
            *ab = _mm256_add_epi32(*ab, _mm256_madd_epi16(xb, w));
        }
        done += 1;
    }
    // The last rows end before the windows do: what is left of them, zero-padded.
    for (k, (xa, xb)) in windows[0].iter().zip(windows[1]).enumerate().skip(done) {
        // SAFETY: as above.
        let (xa, xb) = unsafe {
            (
                _mm256_loadu_si256(xa.as_ptr().cast()),
                _mm256_loadu_si256(xb.as_ptr().cast()),
            )
        };
        for ((aa, ab), row) in a.iter_mut().zip(b.iter_mut()).zip(rows) {
            let mut tail = [0i8; 16];
            let part = row.get(k * 16..).unwrap_or_default();
            for (t, &v) in tail.iter_mut().zip(part) {
                *t = v;
            }
            let w = _mm256_cvtepi8_epi16(load16(&tail));
            *aa = _mm256_add_epi32(*aa, _mm256_madd_epi16(xa, w));
            *ab = _mm256_add_epi32(*ab, _mm256_madd_epi16(xb, w));
        }
    }
    reduce4x2(a, b)
}

/// Four lanes of `words` from `at` (zero past its end), in both halves.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load_lanes_twice(words: &[i32], at: usize) -> __m256i {
    let v = load_lanes(words, at);
    _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(v), v)
}

#[target_feature(enable = "avx2")]
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
        let sums = dot4x2(windows, rows);
        // Both pixels' four channels in one pass: the constants repeat in each half.
        let lanes = Lanes {
            mult: load_lanes_twice(&block.mult, ch),
            left: load_lanes_twice(&block.left, ch),
            right: load_lanes_twice(&block.right, ch),
            zp: _mm256_set1_epi32(block.zp),
            min: _mm256_set1_epi32(block.min),
            max: _mm256_set1_epi32(block.max),
        };
        let bytes = pack8(requant_lanes(
            _mm256_add_epi32(sums, load_lanes_twice(&block.bias, ch)),
            &lanes,
        ));
        let (ba, bb) = bytes.split_at(4);
        if let (Some(da), Some(db)) = (oa.get_mut(ch..), ob.get_mut(ch..)) {
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

#[target_feature(enable = "avx2")]
pub(super) fn pair_row(
    plane: &[i16],
    wp: usize,
    taps: &[i32],
    kw: usize,
    block: &ChannelBlock,
    out: &mut [i8],
) {
    let lanes = Lanes {
        mult: _mm256_set1_epi32(block.mult[0]),
        left: _mm256_set1_epi32(block.left[0]),
        right: _mm256_set1_epi32(block.right[0]),
        zp: _mm256_set1_epi32(block.zp),
        min: _mm256_set1_epi32(block.min),
        max: _mm256_set1_epi32(block.max),
    };
    let kh = taps.len() / kw.max(1);
    // The plane's `i16` index just past what group `g`'s taps read.
    let reach = |g: usize| 2 * ((kh.max(1) - 1) * wp + g * 8 + kw.max(1) - 1) + 16;
    let bias = _mm256_set1_epi32(block.bias[0]);
    let mut groups = out.chunks_mut(8).enumerate().peekable();
    while let Some((g, out)) = groups.next() {
        if kh * kw.max(1) == taps.len() && reach(g) <= plane.len() {
            // SAFETY: `16 * g < reach(g) <= plane.len()`.
            let from = unsafe { plane.as_ptr().add(16 * g) };
            // SAFETY (both calls): the taps of the groups computed read no further into
            // `plane` than `reach` of the last of them, checked here and in `next_if`.
            match groups.next_if(|&(g2, _)| reach(g2) <= plane.len()) {
                Some((_, next)) => {
                    let acc = unsafe { pixel_groups::<2>(from, wp, taps, kw, bias) };
                    store_groups(&lanes, [out, next], acc);
                }
                None => {
                    let acc = unsafe { pixel_groups::<1>(from, wp, taps, kw, bias) };
                    store_groups(&lanes, [out], acc);
                }
            }
            continue;
        }
        let mut acc = bias;
        for (ky, row) in taps.chunks(kw.max(1)).enumerate() {
            let mut at = 2 * (ky * wp + g * 8);
            for &pair in row {
                // Eight output pixels' (channel 0, channel 1) pairs at this tap.
                if let Some(x) = plane.get(at..).and_then(<[i16]>::first_chunk::<16>) {
                    // SAFETY: reads exactly the 32 bytes of the chunk.
                    let x = unsafe { _mm256_loadu_si256(x.as_ptr().cast()) };
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, _mm256_set1_epi32(pair)));
                }
                at += 2;
            }
        }
        store_groups(&lanes, [out], [acc]);
    }
}

/// `N` groups of eight output pixels of [`pair_row`] from `from`: each tap's pair
/// broadcast once for all of them, no bounds checks in the loop.
///
/// # Safety
/// For every tap `(ky, kx)`, the `16 * N` `i16`s at `from + 2 * (ky * wp + kx)` are
/// readable, as the caller checks with its `reach`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn pixel_groups<const N: usize>(
    from: *const i16,
    wp: usize,
    taps: &[i32],
    kw: usize,
    bias: __m256i,
) -> [__m256i; N] {
    let mut acc = [bias; N];
    for (ky, row) in taps.chunks(kw.max(1)).enumerate() {
        // SAFETY: the caller's promise, for each tap of the row.
        unsafe {
            let line = from.add(2 * ky * wp);
            for (kx, &pair) in row.iter().enumerate() {
                let w = _mm256_set1_epi32(pair);
                let x = line.add(2 * kx);
                for (n, a) in acc.iter_mut().enumerate() {
                    let v = _mm256_loadu_si256(x.add(16 * n).cast());
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(v, w));
                }
            }
        }
    }
    acc
}

/// The requantized bytes of `N` groups' accumulators into their outputs (a group may be
/// shorter than eight at the end of a row).
#[inline]
#[target_feature(enable = "avx2")]
fn store_groups<const N: usize>(lanes: &Lanes, outs: [&mut [i8]; N], acc: [__m256i; N]) {
    for (out, acc) in outs.into_iter().zip(acc) {
        let bytes = pack8(requant_lanes(acc, lanes));
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = b;
        }
    }
}

/// The dot product of `window` with one weight row, in lane 0 (the rest zero).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn dot1(window: &[[i16; 16]], row: &[i8]) -> __m128i {
    let mut acc = _mm256_setzero_si256();
    let (chunks, rest) = row.as_chunks::<16>();
    for (x, w) in window.iter().zip(chunks) {
        // SAFETY: reads exactly the 32 bytes of the window chunk.
        let x = unsafe { _mm256_loadu_si256(x.as_ptr().cast()) };
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, _mm256_cvtepi8_epi16(load16(w))));
    }
    if let Some(x) = window.get(chunks.len()) {
        // The row's last partial chunk, zero-padded (the window is zero past its taps).
        let mut tail = [0i8; 16];
        for (t, &v) in tail.iter_mut().zip(rest) {
            *t = v;
        }
        // SAFETY: as above.
        let x = unsafe { _mm256_loadu_si256(x.as_ptr().cast()) };
        acc = _mm256_add_epi32(
            acc,
            _mm256_madd_epi16(x, _mm256_cvtepi8_epi16(load16(&tail))),
        );
    }
    let zero = _mm256_setzero_si256();
    let s = _mm256_hadd_epi32(_mm256_hadd_epi32(acc, zero), zero);
    _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s))
}

#[target_feature(enable = "avx2")]
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
        let acc = _mm_add_epi32(dot1(window, weights), load_lanes(&block.bias, 0));
        if let (Some(o), [b, ..]) = (out.first_mut(), requant4(acc, block, 0)) {
            *o = b;
        }
        return;
    }
    let mut ch = 0;
    while ch < n {
        // A last group of fewer than four channels repeats its last row; the extra lanes
        // are computed and dropped.
        let rows = [
            row_from(weights, per_out, ch.min(n - 1)),
            row_from(weights, per_out, (ch + 1).min(n - 1)),
            row_from(weights, per_out, (ch + 2).min(n - 1)),
            row_from(weights, per_out, (ch + 3).min(n - 1)),
        ];
        let acc = _mm_add_epi32(dot4(window, rows), load_lanes(&block.bias, ch));
        let bytes = requant4(acc, block, ch);
        for (o, b) in out.iter_mut().skip(ch).zip(bytes) {
            *o = b;
        }
        ch += 4;
    }
}

/// Each group of eight channels keeps its weights and output constants in registers over
/// the whole row of pixels.
#[target_feature(enable = "avx2")]
pub(super) fn row_small(
    (windows, stride): (&[i16], usize),
    weights: &SmallWeights,
    block: &ChannelBlock,
    (out, step, n): (&mut [i8], usize, usize),
) {
    let pairs = weights.pairs.min(SMALL_PAIRS);
    let (zp, min, max) = (
        _mm256_set1_epi32(block.zp),
        _mm256_set1_epi32(block.min),
        _mm256_set1_epi32(block.max),
    );
    for ch in (0..n).step_by(8) {
        let len = (n - ch).min(8);
        let mut w = [_mm256_setzero_si256(); SMALL_PAIRS];
        for (j, w) in w.iter_mut().enumerate().take(pairs) {
            *w = load_lanes8(&weights.table, j * weights.lanes + ch);
        }
        let w = w.get(..pairs).unwrap_or_default();
        let bias = load_lanes8(&block.bias, ch);
        let lanes = Lanes {
            mult: load_lanes8(&block.mult, ch),
            left: load_lanes8(&block.left, ch),
            right: load_lanes8(&block.right, ch),
            zp,
            min,
            max,
        };
        for (i, window) in windows.chunks_exact(stride.max(1)).enumerate() {
            let mut acc = bias;
            for (taps, &w) in window.as_chunks::<2>().0.iter().zip(w) {
                let pair = u32::from(taps[0] as u16) | (u32::from(taps[1] as u16) << 16);
                let x = _mm256_set1_epi32(pair as i32);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
            }
            let bytes = pack8(requant_lanes(acc, &lanes));
            let at = i * step + ch;
            if let (Some(o), Some(b)) = (out.get_mut(at..at + len), bytes.get(..len)) {
                o.copy_from_slice(b);
            }
        }
    }
}

#[cfg(test)]
#[target_feature(enable = "avx2")]
pub(super) fn requant_all(acc: &[i32], block: &ChannelBlock, out: &mut [i8]) {
    for (ch, (acc, out)) in acc.chunks(4).zip(out.chunks_mut(4)).enumerate() {
        let lanes: [i32; 4] = core::array::from_fn(|i| acc.get(i).copied().unwrap_or(0));
        let bytes = requant4(load_lanes(&lanes, 0), block, ch * 4);
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = b;
        }
    }
}
