//! The steps of the fused CBAM op ([`crate::cbam`]) on the DSP extension:
//! - the per-channel pooling, four channels per word down the pixels;
//! - the two scalings: the packed loops of [`pow2`] (a power-of-two multiplier on a block
//!   whose input never goes below its zero point, what the compiler emits for a block
//!   after a ReLU) or else [`super::scale`] over each pixel's whole words, the portable
//!   arithmetic over the last `C % 4` channels;
//! - the spatial convolution's ring of rows with `SMLAD` over tap pairs, unrolled for the
//!   common kernel sizes.

use super::insn::{max_bytes, smlad, sxtab16, sxtab16_ror8};
use super::pow2::{self, ChannelLayer, Pow2Scale};
use super::scale::{channel_factor_words, scale_by_channel, scale_by_factor, PackedScale};
use super::{splat_offset, word};
use crate::cbam::spatial_conv::{self, row_taps};
use crate::cbam::store_pooled;
use crate::kernels::requant::{Pow2ProductRequant, SignedProductRequant};
use crate::kernels::{CbamParams, PoolOrder, Shape};
use crate::math::{div_round_half_away, saturate_i8};

/// Step 1 (`pool_channels`) for the whole groups of four channels; returns how many
/// channels it did.
#[inline(always)]
pub(super) fn pool_channels(
    p: &CbamParams,
    data: &[i8],
    hw: usize,
    pa: &mut [i8],
    pm: &mut [i8],
) -> usize {
    let count = i32::try_from(hw).unwrap_or(i32::MAX);
    // Four channels per word, down the pixels.
    let groups = p.c / 4;
    let data = data.get(..hw * p.c).unwrap_or_default();
    let offset = p.zp_in.wrapping_mul(count);
    let outs = pa.chunks_exact_mut(4).zip(pm.chunks_exact_mut(4));
    for (g, (a4, m4)) in outs.take(groups).enumerate() {
        let (sums, tops) = pool_channel_group(data, p.c, g);
        for ((a, m), (sum, top)) in a4.iter_mut().zip(m4).zip(sums.into_iter().zip(tops)) {
            let sum = sum.wrapping_sub(offset);
            *a = saturate_i8(div_round_half_away(sum, count).saturating_add(p.zp_in));
            *m = top;
        }
    }
    groups * 4
}

/// The block's input is never below its zero point: `x = v - zp_in >= 0` for every int8
/// `v`, and so `F'` never goes below its own zero point either (`x * k >= 0`).
fn input_never_below_zero_point(p: &CbamParams) -> bool {
    p.zp_in == i32::from(i8::MIN)
}

/// The packed form of `rq` for values with input zero point `zp_in`.
fn packed(rq: &SignedProductRequant, zp_in: i32) -> PackedScale {
    let (mult, bias, right, sign_offset) = (rq.mult, rq.bias, rq.right, rq.sign_offset);
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
#[inline]
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
#[inline]
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
    if !pow2::channel_factor_words(att, rq.steps, table) {
        return false;
    }
    let table = table.get(..c / 4 * 8).unwrap_or_default();
    let layer = ChannelLayer {
        c,
        zp_in: p.zp_in,
        zp_out: p.zp_f1,
        steps: rq.steps,
        max_first: p.order == PoolOrder::MaxMean,
        signed: !unsigned,
    };
    if pow2::scale_channel_pixels(data, table, maps, layer) {
        return true;
    }
    if !unsigned {
        return false;
    }
    let scale = Pow2Scale::new(p.zp_in, p.zp_f1, rq.steps);
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
#[inline]
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
#[inline]
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
#[inline]
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
#[inline]
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
#[inline]
fn pow2_pixels(p: &CbamParams, data: &mut [i8], att: &[i8], rq: Pow2ProductRequant) {
    // Two loops rather than a test per pixel: the packed loop's registers stay put.
    if input_never_below_zero_point(p) {
        let scale = Pow2Scale::new(p.zp_f1, p.zp_out, rq.steps);
        pow2_pixels_with(p, data, att, rq, |px, k| {
            pow2::scale_by_factor(px, k, scale)
        });
    } else {
        let (zp, bias, steps) = (p.zp_f1, rq.bias, rq.steps);
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

/// The CBAM channel pooling of channels `4g .. 4g + 4` over the pixels of `data` (`c`
/// bytes each): their sums of int8 values and their maxima. The sums run in 16-bit lanes
/// for at most 256 pixels at a time (`256 * 128` fits), then move to 32 bits.
#[inline(always)]
fn pool_channel_group(data: &[i8], c: usize, g: usize) -> ([i32; 4], [i8; 4]) {
    let mut sums = [0i32; 4];
    let mut top = 0x8080_8080u32;
    for block in data.chunks(256 * c) {
        let (mut even, mut odd) = (0u32, 0u32);
        for px in block.chunks_exact(c) {
            let Some(bytes) = px.get(4 * g..4 * g + 4).and_then(|b| b.first_chunk::<4>()) else {
                continue;
            };
            let w = word(bytes);
            even = sxtab16(even, w);
            odd = sxtab16_ror8(odd, w);
            top = max_bytes(top, w);
        }
        let lane = |x: u32, high: bool| i32::from((x >> (16 * u32::from(high))) as u16 as i16);
        for (s, v) in sums.iter_mut().zip([
            lane(even, false),
            lane(odd, false),
            lane(even, true),
            lane(odd, true),
        ]) {
            *s += v;
        }
    }
    (sums, top.to_le_bytes().map(|b| b as i8))
}

/// `sum w * (v - zp)` over pairs of two-byte pixels (the CBAM spatial convolution's
/// taps): per four bytes `(a0, a1, b0, b1)`, the weight words `(w0(a), w0(b))` and
/// `(w1(a), w1(b))`; one `SMLAD` per map.
#[inline(always)]
fn dot_tap_pairs(taps: &[i8], weights: &[u32], zp: i32) -> i32 {
    let off2 = splat_offset(zp.wrapping_neg());
    let (quads, _) = taps.as_chunks::<4>();
    let (pairs, _) = weights.as_chunks::<2>();
    let mut acc = 0;
    for (q, w) in quads.iter().zip(pairs) {
        let d = word(q);
        acc = smlad(sxtab16(off2, d), w[0], acc);
        acc = smlad(sxtab16_ror8(off2, d), w[1], acc);
    }
    acc
}

/// Steps 6 and 7a (`spatial_attention`) by the ring of rows of [`spatial_conv`](mod@spatial_conv), with
/// [`dot_tap_pairs`] over each kernel row.
#[inline]
pub(super) fn spatial_conv(p: &CbamParams, shape: Shape, maps: &[i8], att: &mut [i8]) -> bool {
    let (h, w) = (shape.h, shape.w);
    let taps = row_taps(p.k);
    // The common kernel sizes as constants, so that each kernel row's taps unroll; every
    // other size through one loop, which keeps the code small.
    match taps {
        8 => spatial_conv::rows(p, h, w, maps, att, taps, unrolled::<8, 4>),
        12 => spatial_conv::rows(p, h, w, maps, att, taps, unrolled::<12, 6>),
        16 => spatial_conv::rows(p, h, w, maps, att, taps, unrolled::<16, 8>),
        _ => spatial_conv::rows(p, h, w, maps, att, taps, dot_tap_pairs),
    }
}

/// [`dot_tap_pairs`] with the row's length a constant (`TAPS` bytes, `WORDS` weight words).
#[inline(always)]
fn unrolled<const TAPS: usize, const WORDS: usize>(taps: &[i8], weights: &[u32], zp: i32) -> i32 {
    match (taps.first_chunk::<TAPS>(), weights.first_chunk::<WORDS>()) {
        (Some(t), Some(w)) => dot_tap_pairs(t, w, zp),
        _ => dot_tap_pairs(taps, weights, zp),
    }
}
