//! Step 6 without a vectorised CONV2D (the microcontrollers): the spatial attention's
//! `k x k` convolution of the two pooled maps into one channel, over a ring of `k` input
//! rows padded with the zero point on the stack. Every output pixel then reads whole kernel
//! rows of `2 * ceil(k / 2)` taps (the extra tap has weight zero) without a test per tap,
//! and a row outside the map is simply skipped. Same sums as the CONV2D kernel, in another
//! order (integer, so the same bits). The default of [`Backend::cbam_spatial_conv`].
//!
//! [`Backend::cbam_spatial_conv`]: crate::kernels::backend::Backend::cbam_spatial_conv

use crate::kernels::requant::OutputRequant;
use crate::kernels::sigmoid::lookup;
use crate::kernels::CbamParams;
use crate::math::ActRange;

/// The ring's stack bytes: `k` rows of `w + k` two-byte pixels (for `k = 7`, maps up to
/// 102 pixels wide). Wider maps take the CONV2D kernel.
const RING_BYTES: usize = 1536;
/// The largest kernel the weight table holds (CBAM uses 7, sometimes 3 or 5).
const MAX_K: usize = 11;
/// Tap pairs per kernel row.
const MAX_PAIRS: usize = MAX_K.div_ceil(2);

/// The weights as 16-bit lane pairs: per kernel row, per pair of taps `(2j, 2j + 1)`, the
/// word of map 0's two weights, then map 1's (low halfword: tap `2j`).
struct TapWeights {
    words: [[u32; 2 * MAX_PAIRS]; MAX_K],
}

impl TapWeights {
    // `inline`: see `row_taps`.
    #[inline]
    fn new(ws: &[i8], k: usize) -> Self {
        let mut words = [[0u32; 2 * MAX_PAIRS]; MAX_K];
        let weight = |dy: usize, dx: usize, map: usize| {
            let w = if dx < k {
                ws.get((dy * k + dx) * 2 + map).copied().unwrap_or(0)
            } else {
                0
            };
            u32::from(i16::from(w) as u16)
        };
        for (dy, row) in words.iter_mut().enumerate().take(k) {
            for (j, pair) in row.chunks_exact_mut(2).enumerate() {
                for (map, word) in pair.iter_mut().enumerate() {
                    *word = weight(dy, 2 * j, map) | weight(dy, 2 * j + 1, map) << 16;
                }
            }
        }
        Self { words }
    }
}

/// The widest map the row of accumulators holds.
const MAX_W: usize = 128;

/// The bytes of one kernel row as the ring reads it: `2 * ceil(k / 2)` two-byte taps.
// `inline` here and on `TapWeights::new`: the backends' entry points reach them, which
// would otherwise export them from the crate and keep them out of their callers.
#[inline]
pub(crate) fn row_taps(k: usize) -> usize {
    4 * k.div_ceil(2)
}

/// The convolution of `maps` (`(h, w, 2)`, quantization of `F'`) with the sigmoid table
/// applied, into `att` (`h * w`), for kernels rows of `taps` bytes (`taps / 2` weight words) read by
/// `dot` (`sum w * (v - zp)` over one kernel row, as [`dot_row`]): per output row, each
/// kernel row inside the map adds its dot products to a row of accumulators, then the row
/// is requantized and looked up.
pub(crate) fn rows(
    p: &CbamParams,
    h: usize,
    w: usize,
    maps: &[i8],
    att: &mut [i8],
    taps: usize,
    dot: impl Fn(&[i8], &[u32], i32) -> i32,
) -> bool {
    let k = p.k;
    let pad = k / 2;
    let stride = 2 * (w + k);
    let Some(ring_len) = stride.checked_mul(k).filter(|&n| n <= RING_BYTES) else {
        return false;
    };
    let pixels = h * w;
    if k == 0 || k > MAX_K || w > MAX_W || maps.len() < 2 * pixels || att.len() < pixels {
        return false;
    }
    let Ok(zp) = i8::try_from(p.zp_f1) else {
        return false;
    };
    let weights = TapWeights::new(p.ws, k);
    let rq = OutputRequant::new(p.rs, p.zp_s, ActRange::FULL);
    let mut ring_bytes = [zp; RING_BYTES];
    let ring = &mut ring_bytes[..ring_len];
    let load_row = |ring: &mut [i8], y: usize| {
        let start = (y % k) * stride + 2 * pad;
        if let (Some(dst), Some(src)) = (
            ring.get_mut(start..start + 2 * w),
            maps.get(2 * y * w..2 * (y + 1) * w),
        ) {
            dst.copy_from_slice(src);
        }
    };
    for y in 0..pad.min(h) {
        load_row(ring, y);
    }
    let mut acc = [0i32; MAX_W];
    let acc = &mut acc[..w];
    for (y, out_row) in att.chunks_exact_mut(w).take(h).enumerate() {
        if y + pad < h {
            load_row(ring, y + pad);
        }
        acc.fill(p.bs);
        // Kernel rows whose input row is inside the map.
        let (first, last) = (pad.saturating_sub(y), (h + pad - y).min(k));
        for (dy, row_weights) in weights.words.iter().enumerate().take(last).skip(first) {
            let start = ((y + dy - pad) % k) * stride;
            let (Some(row), Some(wts)) =
                (ring.get(start..start + stride), row_weights.get(..taps / 2))
            else {
                continue;
            };
            // Pixel `x` reads bytes `2x .. 2x + taps`, inside the row by its padding.
            for (a, t) in acc.iter_mut().zip(row.windows(taps).step_by(2)) {
                *a = a.wrapping_add(dot(t, wts, p.zp_f1));
            }
        }
        for (out, &a) in out_row.iter_mut().zip(acc.iter()) {
            *out = lookup(p.lut_s, rq.apply(a));
        }
    }
    true
}

/// `sum w * (v - zp)` over one kernel row: `taps` holds pairs of pixels (4 bytes),
/// `weights` their two words each (see [`TapWeights`]).
#[inline(always)]
pub(crate) fn dot_row(taps: &[i8], weights: &[u32], zp: i32) -> i32 {
    let mut acc = 0i32;
    let (quads, _) = taps.as_chunks::<4>();
    let (pairs, _) = weights.as_chunks::<2>();
    let lane = |word: u32, high: bool| i32::from((word >> (16 * u32::from(high))) as u16 as i16);
    for (q, [w0, w1]) in quads.iter().zip(pairs) {
        let v = q.map(|b| i32::from(b) - zp);
        acc += v[0] * lane(*w0, false) + v[2] * lane(*w0, true);
        acc += v[1] * lane(*w1, false) + v[3] * lane(*w1, true);
    }
    acc
}

#[cfg(test)]
mod tests {
    use crate::cbam::spatial_attention_by_conv2d;
    use crate::kernels::backend::{Backend, Portable};
    use crate::kernels::test_support::{spatial_block, Rng};
    use crate::kernels::Shape;

    #[test]
    fn matches_the_conv_kernel_on_random_maps() {
        let mut rng = Rng::new(0x5ca7);
        let lut: [i8; 256] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) as i8);
        for case in 0..200 {
            let k = [1, 3, 5, 7, 9, 11][case % 6];
            let (h, w) = (rng.int(1, 20) as usize, rng.int(1, 30) as usize);
            let ws: Vec<i8> = (0..k * k * 2).map(|_| rng.i8()).collect();
            let maps: Vec<i8> = (0..h * w * 2).map(|_| rng.i8()).collect();
            let p = spatial_block(&mut rng, &lut, k, &ws);
            let shape = Shape::new(h, w, 4);
            let mut att = vec![0i8; h * w];
            assert!(
                Portable::cbam_spatial_conv(&p, shape, &maps, &mut att),
                "k {k} {h}x{w}"
            );
            let mut want = vec![0i8; h * w];
            spatial_attention_by_conv2d(&p, shape, &maps, &mut want).unwrap();
            assert_eq!(att, want, "k {k} {h}x{w}");
        }
    }

    #[test]
    fn too_wide_or_too_large_a_kernel_is_left_to_the_conv_kernel() {
        let mut rng = Rng::new(1);
        let lut = [0i8; 256];
        let ws = [1i8; 13 * 13 * 2];
        let wide = Shape::new(2, 200, 4);
        let maps = vec![0i8; 2 * 200 * 2];
        let mut att = vec![5i8; 2 * 200];
        assert!(!Portable::cbam_spatial_conv(
            &spatial_block(&mut rng, &lut, 7, &ws),
            wide,
            &maps,
            &mut att
        ));
        assert!(att.iter().all(|&v| v == 5));
        let small = Shape::new(2, 2, 4);
        assert!(!Portable::cbam_spatial_conv(
            &spatial_block(&mut rng, &lut, 13, &ws),
            small,
            &maps,
            &mut att
        ));
    }
}
