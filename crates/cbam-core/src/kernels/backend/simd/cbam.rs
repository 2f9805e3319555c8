//! The element-wise steps of the fused CBAM op ([`crate::cbam`]) on SIMD lanes: the
//! per-channel pooling, `F' = F * a[c]` with the per-pixel pooling of `F'`, and
//! `F'' = F' * as[y, x]`. Each entry point answers `false`, touching nothing, when the
//! buffers are not the op's (the portable code then decides what to do) or a zero point
//! is outside what the backends are exact for.
//!
//! Every value is exactly what the portable steps compute: `requantize_to_i8` of the
//! product `(v - zp) * (a + 128)`, which is below `2^17` in magnitude for int8 `v`, `zp`
//! and `a`, so the backends' 32-bit lanes hold it exactly.

use super::isa::{Isa, TensorRequant};
use crate::cbam::store_pooled;
use crate::kernels::CbamParams;
use crate::math::mean_level;

/// Channel counts up to this keep their per-channel sums on the stack.
const MAX_CHANNELS: usize = 1024;

/// Step 1 (`pool_channels`): per channel, the rounded mean (input quantization) into `pa`
/// and the maximum into `pm`.
pub(crate) fn pool_channels<I: Isa>(
    isa: I,
    p: &CbamParams,
    data: &[i8],
    pa: &mut [i8],
    pm: &mut [i8],
) -> bool {
    let c = p.c;
    if pa.len() != c || pm.len() != c {
        return false;
    }
    let count = i32::try_from(data.len() / c.max(1)).unwrap_or(i32::MAX);
    channel_totals(isa, data, c, |ch, sum, max| {
        if let (Some(a), Some(m)) = (pa.get_mut(ch), pm.get_mut(ch)) {
            *a = mean_level(sum, count, p.zp_in);
            *m = max;
        }
    })
}

/// Each channel's wrapping sum and maximum over the pixels of an NHWC map of `c`
/// channels, as `each(channel, sum, max)`; `false`, visiting none, for a map that is not
/// whole pixels or has more than [`MAX_CHANNELS`] channels.
pub(crate) fn channel_totals<I: Isa>(
    isa: I,
    data: &[i8],
    c: usize,
    mut each: impl FnMut(usize, i32, i8),
) -> bool {
    if c == 0 || c > MAX_CHANNELS || !data.len().is_multiple_of(c) {
        return false;
    }
    let (mut sums, mut maxs) = ([0i32; MAX_CHANNELS], [i8::MIN; MAX_CHANNELS]);
    let (Some(sums), Some(maxs)) = (sums.get_mut(..c), maxs.get_mut(..c)) else {
        return false;
    };
    isa.channel_sums(data, sums, maxs);
    for (ch, (&sum, &max)) in sums.iter().zip(&*maxs).enumerate() {
        each(ch, sum, max);
    }
    true
}

/// Steps 4b and 5 (`scale_channels_and_pool`) over the op's whole map: `att` holds `p.c`
/// channel attentions and `maps` two bytes per pixel.
pub(crate) fn scale_channels_and_pool<I: Isa>(
    isa: I,
    p: &CbamParams,
    data: &mut [i8],
    att: &[i8],
    maps: &mut [i8],
) -> bool {
    let c = p.c;
    let (Ok(zp_in), Some(rq)) = (i8::try_from(p.zp_in), TensorRequant::new(p.f1, p.zp_f1)) else {
        return false;
    };
    if c == 0 || att.len() != c || data.len() != maps.len() / 2 * c || !maps.len().is_multiple_of(2)
    {
        return false;
    }
    let mut pairs = maps.chunks_exact_mut(2);
    isa.scale_pixels_by_lanes(data, att, zp_in, &rq, &mut |sum, top| {
        if let Some(pair) = pairs.next() {
            store_pooled(p, sum, top, pair);
        }
    });
    true
}

/// Step 7b (`scale_pixels`) over the op's whole map: `att` holds one spatial attention per
/// pixel.
pub(crate) fn scale_pixels<I: Isa>(isa: I, p: &CbamParams, data: &mut [i8], att: &[i8]) -> bool {
    let c = p.c;
    let (Ok(zp_f1), Some(rq)) = (i8::try_from(p.zp_f1), TensorRequant::new(p.out, p.zp_out)) else {
        return false;
    };
    if c == 0 || data.len() != att.len() * c {
        return false;
    }
    isa.scale_pixels_by_one(data, c, att, zp_f1, &rq);
    true
}
