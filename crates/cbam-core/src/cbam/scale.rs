//! The Cortex-M4 path of the two scalings: the packed loops of
//! `kernels::arm_dsp::scale` over each pixel's whole words, the portable arithmetic of
//! [`SignedProductRequant`] over the last `C % 4` channels.

use super::{store_pooled, CbamParams};
use crate::kernels::arm_dsp::scale::{
    channel_factor_words, scale_by_channel, scale_by_factor, PackedScale,
};
use crate::kernels::requant::SignedProductRequant;

/// The packed form of `rq` for values with input zero point `zp_in`.
fn packed(rq: &SignedProductRequant, zp_in: i32) -> PackedScale {
    let (mult, bias, right, sign_offset) = rq.parts();
    let neg_zp = (zp_in.wrapping_neg() as u32) & 0xFFFF;
    let pow2 = sign_offset != 0;
    PackedScale {
        neg_zp2: neg_zp.wrapping_mul(0x0001_0001),
        bias,
        mult: if pow2 { sign_offset } else { mult },
        pow2,
        right,
    }
}

/// `scale_channels_and_pool` with the packed loops; `false`, touching nothing, when they
/// do not apply (more than 512 channels, `att` or `table` too short). The caller has
/// checked that `p.zp_in` is an int8.
pub(super) fn channels_and_pool_packed(
    p: &CbamParams,
    data: &mut [i8],
    att: &[i8],
    maps: &mut [i8],
    table: &mut [i8],
    rq: SignedProductRequant,
) -> bool {
    let c = p.c;
    let scale = packed(&rq, p.zp_in);
    let Some(att) = att.get(..c).filter(|_| c <= 512) else {
        return false;
    };
    if !channel_factor_words(att.iter().map(|&a| factor(a)), table) {
        return false;
    }
    let table = table.get(..c / 4 * 8).unwrap_or_default();
    let layer = Layer { p, scale, rq };
    channel_pixels(&layer, data, att, maps, table);
    true
}

/// What every pixel's loop needs.
struct Layer<'p> {
    p: &'p CbamParams<'p>,
    scale: PackedScale,
    rq: SignedProductRequant,
}

/// `2 * k` for the attention value `a` (`k = a + 128`, the sigmoid's output scale 1/256).
#[inline(always)]
fn factor(a: i8) -> i32 {
    2 * (i32::from(a) + 128)
}

/// Every pixel of the channel scaling.
fn channel_pixels(layer: &Layer, data: &mut [i8], att: &[i8], maps: &mut [i8], table: &[i8]) {
    let (p, rq) = (layer.p, &layer.rq);
    let whole = p.c / 4 * 4;
    let att_tail = att.get(whole..).unwrap_or_default();
    for (px, pair) in data.chunks_exact_mut(p.c).zip(maps.chunks_exact_mut(2)) {
        let (head, tail) = px.split_at_mut(whole);
        // `channels_and_pool_packed` has checked the table and the channel count.
        let Some((mut sum, mut top)) = scale_by_channel(head, table, layer.scale) else {
            return;
        };
        for (v, &a) in tail.iter_mut().zip(att_tail) {
            *v = rq.apply_doubled((i32::from(*v) - p.zp_in) * factor(a));
            sum += i32::from(*v);
            top = top.max(*v);
        }
        store_pooled(p, sum, top, pair);
    }
}

/// `scale_pixels` with the packed loop; `false`, touching nothing, when it does not apply.
/// The caller has checked that `p.zp_f1` is an int8.
pub(super) fn pixels_packed(
    p: &CbamParams,
    data: &mut [i8],
    att: &[i8],
    rq: SignedProductRequant,
) -> bool {
    let scale = packed(&rq, p.zp_f1);
    let layer = Layer { p, scale, rq };
    spatial_pixels(&layer, data, att);
    true
}

/// Every pixel of the spatial scaling.
fn spatial_pixels(layer: &Layer, data: &mut [i8], att: &[i8]) {
    let (p, rq) = (layer.p, &layer.rq);
    for (px, &a) in data.chunks_exact_mut(p.c).zip(att) {
        let k2 = factor(a);
        let done = scale_by_factor(px, k2, layer.scale);
        let base = -p.zp_f1 * k2;
        for v in px.iter_mut().skip(done) {
            *v = rq.apply_doubled(i32::from(*v) * k2 + base);
        }
    }
}
