//! The Cortex-M4 path of the two scalings: the packed loops of `kernels::arm_dsp::pow2`
//! (a power-of-two multiplier on a block whose input never goes below its zero point, what
//! the compiler emits for a block after a ReLU) or else `kernels::arm_dsp::scale` over each
//! pixel's whole words, the portable arithmetic over the last `C % 4` channels.

use super::store_pooled;
use crate::kernels::arm_dsp::pow2::{self, ChannelLayer, Pow2Scale};
use crate::kernels::arm_dsp::scale::{
    channel_factor_words, scale_by_channel, scale_by_factor, PackedScale,
};
use crate::kernels::requant::{Pow2ProductRequant, SignedProductRequant};
use crate::kernels::{CbamParams, PoolOrder};

/// The block's input is never below its zero point: `x = v - zp_in >= 0` for every int8
/// `v`, and so `F'` never goes below its own zero point either (`x * k >= 0`).
fn input_never_below_zero_point(p: &CbamParams) -> bool {
    p.zp_in == i32::from(i8::MIN)
}

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
/// do not apply (constants outside both packed forms, more than 512 channels, `att` or
/// `table` too short).
pub(super) fn channels_and_pool_packed(
    p: &CbamParams,
    data: &mut [i8],
    att: &[i8],
    maps: &mut [i8],
    table: &mut [i8],
) -> bool {
    if i8::try_from(p.zp_in).is_err() {
        return false;
    }
    if let Some(rq) = Pow2ProductRequant::new(p.f1, p.zp_f1) {
        if pow2_channels(p, data, att, maps, table, rq) {
            return true;
        }
    }
    match SignedProductRequant::new(p.f1, p.zp_f1) {
        Some(rq) => signed_channels(p, data, att, maps, table, rq),
        None => false,
    }
}

/// The channel scaling of [`pow2::scale_channel_pixels`], or pixel by pixel through
/// [`pow2::scale_by_channel`] for an input never below its zero point; `false`, touching
/// nothing, when neither applies (`att` or `table` too short; a signed input whose
/// channels are not a multiple of eight).
fn pow2_channels(
    p: &CbamParams,
    data: &mut [i8],
    att: &[i8],
    maps: &mut [i8],
    table: &mut [i8],
    rq: Pow2ProductRequant,
) -> bool {
    let c = p.c;
    let unsigned = input_never_below_zero_point(p);
    let Some(att) = att.get(..c).filter(|_| unsigned || c.is_multiple_of(8)) else {
        return false;
    };
    if !pow2::channel_factor_words(att, rq.steps(), table) {
        return false;
    }
    let table = table.get(..c / 4 * 8).unwrap_or_default();
    let layer = ChannelLayer {
        c,
        zp_in: p.zp_in,
        zp_out: p.zp_f1,
        steps: rq.steps(),
        max_first: p.order == PoolOrder::MaxMean,
        signed: !unsigned,
    };
    if pow2::scale_channel_pixels(data, table, maps, layer) {
        return true;
    }
    if !unsigned {
        return false;
    }
    let scale = Pow2Scale::new(p.zp_in, p.zp_f1, rq.steps());
    let whole = c / 4 * 4;
    let att_tail = att.get(whole..).unwrap_or_default();
    // The unsigned bytes `v + 128` of the whole words sum to the int8 sum plus this.
    let offset = 128 * whole as i32;
    for (px, pair) in data.chunks_exact_mut(c).zip(maps.chunks_exact_mut(2)) {
        let (head, tail) = px.split_at_mut(whole);
        // `channel_factor_words` has checked the table against the channel count.
        let Some((sum_u, top4)) = pow2::scale_by_channel(head, table, scale, p.zp_f1) else {
            return true;
        };
        let mut sum = sum_u as i32 - offset;
        let mut top = top4
            .to_le_bytes()
            .map(|b| i32::from(b as i8))
            .into_iter()
            .max()
            .unwrap_or(-128);
        for (v, &a) in tail.iter_mut().zip(att_tail) {
            *v = rq.apply(i32::from(*v) - p.zp_in, i32::from(a) + 128);
            sum += i32::from(*v);
            top = top.max(i32::from(*v));
        }
        store_pooled(p, sum, top as i8, pair);
    }
    true
}

/// The channel scaling of [`scale_by_channel`] for a [`SignedProductRequant`].
fn signed_channels(
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

/// `scale_pixels` with the packed loops; `false`, touching nothing, when they do not
/// apply (constants outside both packed forms).
pub(super) fn pixels_packed(p: &CbamParams, data: &mut [i8], att: &[i8]) -> bool {
    if i8::try_from(p.zp_f1).is_err() {
        return false;
    }
    if let Some(rq) = Pow2ProductRequant::new(p.out, p.zp_out) {
        pow2_pixels(p, data, att, rq);
        return true;
    }
    let Some(rq) = SignedProductRequant::new(p.out, p.zp_out) else {
        return false;
    };
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

/// The spatial scaling of [`pow2::scale_by_factor`], or of
/// [`pow2::scale_by_factor_signed`] when `F'` can be below its zero point.
fn pow2_pixels(p: &CbamParams, data: &mut [i8], att: &[i8], rq: Pow2ProductRequant) {
    // Two loops rather than a test per pixel: the packed loop's registers stay put.
    if input_never_below_zero_point(p) {
        let scale = Pow2Scale::new(p.zp_f1, p.zp_out, rq.steps());
        pow2_pixels_with(p, data, att, rq, |px, k| {
            pow2::scale_by_factor(px, k, scale)
        });
    } else {
        let (zp, bias, steps) = (p.zp_f1, rq.bias(), rq.steps());
        pow2_pixels_with(p, data, att, rq, |px, k| {
            pow2::scale_by_factor_signed(px, k, zp, bias, steps)
        });
    }
}

/// Every pixel through `whole_words`, which scales a pixel's whole words and returns how
/// many bytes it did; the rest of each pixel portably.
#[inline(always)]
fn pow2_pixels_with(
    p: &CbamParams,
    data: &mut [i8],
    att: &[i8],
    rq: Pow2ProductRequant,
    whole_words: impl Fn(&mut [i8], u32) -> usize,
) {
    for (px, &a) in data.chunks_exact_mut(p.c).zip(att) {
        let k = i32::from(a) + 128;
        let done = whole_words(px, k as u32);
        for v in px.iter_mut().skip(done) {
            *v = rq.apply(i32::from(*v) - p.zp_f1, k);
        }
    }
}
