//! CBAM (op 12): channel then spatial attention, fused and in place (FORMAT.md, op 12).
//!
//! `F' = Mc(F) * F`, `F'' = Ms(F') * F'`, computed over the feature map in place with
//! `3C + 2Cr + 3hw` bytes of scratch: pooled vectors, hidden vectors, channel attention, the
//! two pooled spatial maps (interleaved, so the spatial convolution is the CONV2D kernel)
//! and the spatial attention map. Never a second `h*w*C` tensor.

use crate::error::Error;
use crate::kernels::backend::{Active, Backend};
use crate::kernels::conv2d::conv2d;
use crate::kernels::requant::{OutputRequant, Pow2ProductRequant, SignedProductRequant};
use crate::kernels::sigmoid::lookup;
use crate::kernels::{
    check_len, CbamParams, ChannelQuant, Conv2dParams, ConvGeometry, PoolOrder, Shape,
};
use crate::le::I32Le;
use crate::math::{mean_level, requantize_to_i8, ActRange, Requant};

/// Scratch bytes the fused op needs (the format's count: the memory planner asks it too).
pub use crate::format::cbam_scratch_size;

/// The attention maps left in scratch after the op (int8, scale 1/256, zero point -128).
#[derive(Debug)]
pub struct CbamAttention<'s> {
    /// `a[c]`.
    pub channel: &'s [i8],
    /// `as[y, x]`, row-major.
    pub spatial: &'s [i8],
}

/// The scratch region cut into its named parts.
struct Scratch<'s> {
    /// The per-channel mean, then max (`2C` bytes); once the MLP has read them, the
    /// packed channel factors of the scaling.
    pooled: &'s mut [i8],
    hid_a: &'s mut [i8],
    hid_m: &'s mut [i8],
    att_c: &'s mut [i8],
    /// The pooled spatial maps interleaved as an `(h, w, 2)` tensor in the model's order
    /// (in a look-ahead stage, a window of its rows).
    maps: &'s mut [i8],
    att_s: &'s mut [i8],
}

impl<'s> Scratch<'s> {
    /// The parts of `scratch` with `maps_len` bytes of spatial maps.
    fn split(
        scratch: &'s mut [i8],
        c: usize,
        cr: usize,
        hw: usize,
        maps_len: usize,
    ) -> Option<Self> {
        let (pooled, rest) = scratch.split_at_mut_checked(c.checked_mul(2)?)?;
        let (hid_a, rest) = rest.split_at_mut_checked(cr)?;
        let (hid_m, rest) = rest.split_at_mut_checked(cr)?;
        let (att_c, rest) = rest.split_at_mut_checked(c)?;
        let (maps, rest) = rest.split_at_mut_checked(maps_len)?;
        let (att_s, _) = rest.split_at_mut_checked(hw)?;
        Some(Self {
            pooled,
            hid_a,
            hid_m,
            att_c,
            maps,
            att_s,
        })
    }
}

fn check(p: &CbamParams, shape: Shape, data: &[i8]) -> Result<usize, Error> {
    let bad = |what| Err(Error::SliceLength { what });
    if shape.c != p.c || p.c == 0 || p.k.is_multiple_of(2) {
        return bad("cbam channels or kernel size");
    }
    check_len(data.len(), shape.len(), "cbam feature map")?;
    let Some(hw) = shape.pixels().filter(|&n| n > 0) else {
        return bad("cbam empty map");
    };
    let m = &p.mlp;
    let (c, cr) = (p.c, p.cr);
    check_len(m.w1.len(), cr.checked_mul(c), "cbam w1")?;
    check_len(m.w2.len(), cr.checked_mul(c), "cbam w2")?;
    if [m.b1.len(), m.m1.len(), m.s1.len()] != [cr; 3]
        || [m.b2.len(), m.m2.len(), m.s2.len()] != [c; 3]
    {
        return bad("cbam MLP bias/mult/shift");
    }
    check_len(
        p.ws.len(),
        p.k.checked_mul(p.k).and_then(|n| n.checked_mul(2)),
        "cbam spatial weights",
    )?;
    Ok(hw)
}

/// Runs the fused CBAM block over `data` (`shape`, input quantization) in place, leaving the
/// output (`zp_out`) in `data` and the attention maps in `scratch`.
pub fn cbam<'s>(
    p: &CbamParams,
    shape: Shape,
    data: &mut [i8],
    scratch: &'s mut [i8],
) -> Result<CbamAttention<'s>, Error> {
    let s = channel_phase(p, shape, data, scratch)?;
    scale_channels_and_pool(p, data, s.att_c, s.maps, s.table);
    spatial_attention(p, shape, s.maps, s.att_s)?;
    scale_pixels(p, data, s.att_s);
    Ok(CbamAttention {
        channel: s.att_c,
        spatial: s.att_s,
    })
}

/// The scratch parts the steps after the channel attention work in.
pub(crate) struct Phases<'s> {
    /// Working memory of the channel scaling (see [`scale_channels_and_pool`]).
    pub table: &'s mut [i8],
    pub att_c: &'s mut [i8],
    /// The pooled spatial maps, `(h, w, 2)`.
    pub maps: &'s mut [i8],
    pub att_s: &'s mut [i8],
}

/// Steps 1 to 3 of [`cbam`] (pooling, MLP, sigmoid): the channel attention of `data`, into
/// `scratch`, which is returned cut into the parts the later steps use. The later steps
/// work pixel by pixel (the scaling and the pooled maps, the final scaling) and row by row
/// (the spatial convolution), so a caller may run them on parts of the map.
pub(crate) fn channel_phase<'s>(
    p: &CbamParams,
    shape: Shape,
    data: &[i8],
    scratch: &'s mut [i8],
) -> Result<Phases<'s>, Error> {
    let hw = check(p, shape, data)?;
    let needed = cbam_scratch_size(p.c, p.cr, shape.h, shape.w).ok_or(Error::SliceLength {
        what: "cbam scratch",
    })?;
    let scratch = scratch.get_mut(..needed).ok_or(Error::SliceLength {
        what: "cbam scratch",
    })?;
    let s = Scratch::split(scratch, p.c, p.cr, hw, hw * 2).ok_or(Error::SliceLength {
        what: "cbam scratch",
    })?;

    let (pa, pm) = s.pooled.split_at_mut(p.c);
    pool_channels(p, data, hw, pa, pm);
    mlp_hidden(p, pa, s.hid_a);
    mlp_hidden(p, pm, s.hid_m);
    channel_attention(p, s.hid_a, s.hid_m, s.att_c);
    Ok(Phases {
        table: s.pooled,
        att_c: s.att_c,
        maps: s.maps,
        att_s: s.att_s,
    })
}

/// Step 1: per-channel average (rounded, input quantization) and maximum over the `hw`
/// pixels of `data`, into `pa` and `pm` (`C` bytes each).
///
/// Public for the benchmarks, like [`scale_channels_and_pool`]; [`cbam`] is the entry
/// point.
// Out of line, like the other steps [`cbam`] calls: inlined into it (which happens once they
// are private to the crate, without the `kernels` feature, each having one caller), the
// steps' loops get a worse register allocation on every target.
#[inline(never)]
pub fn pool_channels(p: &CbamParams, data: &[i8], hw: usize, pa: &mut [i8], pm: &mut [i8]) {
    let count = i32::try_from(hw).unwrap_or(i32::MAX);
    // The backend's channels first (all of them, some groups, or none), the rest here.
    let done = Active::cbam_pool_channels(p, data, hw, pa, pm);
    for (ch, (a, m)) in pa.iter_mut().zip(pm.iter_mut()).enumerate().skip(done) {
        let mut sum = 0i32;
        let mut max = i8::MIN;
        for &v in data.iter().skip(ch).step_by(p.c) {
            sum = sum.wrapping_add(i32::from(v));
            max = max.max(v);
        }
        *a = mean_level(sum, count, p.zp_in);
        *m = max;
    }
}

/// Step 2: the first MLP layer with its ReLU (clamp at the hidden zero point).
fn mlp_hidden(p: &CbamParams, pooled: &[i8], hidden: &mut [i8]) {
    let m = &p.mlp;
    let relu = ActRange::from_words(m.zp_h, i32::from(i8::MAX));
    let rows = m.w1.chunks_exact(p.c);
    let quant = m.b1.iter().zip(m.m1.iter().zip(m.s1.iter()));
    for ((h, w), (b, (mult, shift))) in hidden.iter_mut().zip(rows).zip(quant) {
        let acc = b.wrapping_add(Active::dot1(pooled, w, -p.zp_in));
        *h = requantize_to_i8(acc, Requant::new(mult, shift), m.zp_h, relu);
    }
}

/// Step 3 and 4a: the shared second layer over both branches, then the sigmoid table.
fn channel_attention(p: &CbamParams, hid_a: &[i8], hid_m: &[i8], att: &mut [i8]) {
    let m = &p.mlp;
    let quant = m.b2.iter().zip(m.m2.iter().zip(m.s2.iter()));
    // `chunks_exact(0)` panics; with Cr = 0 every row is empty anyway.
    let row_len = p.cr.max(1);
    let rows =
        m.w2.chunks_exact(row_len)
            .chain(core::iter::repeat(&[][..]));
    for ((a, w), (b, (mult, shift))) in att.iter_mut().zip(rows).zip(quant) {
        let dot = hid_a
            .iter()
            .zip(hid_m)
            .zip(w)
            .fold(0i32, |acc, ((&ha, &hm), &wv)| {
                let both = i32::from(ha)
                    .wrapping_sub(m.zp_h)
                    .wrapping_add(i32::from(hm).wrapping_sub(m.zp_h));
                acc.wrapping_add(both.wrapping_mul(i32::from(wv)))
            });
        let z = requantize_to_i8(
            b.wrapping_add(dot),
            Requant::new(mult, shift),
            m.zp_z,
            ActRange::FULL,
        );
        *a = lookup(p.lut_c, z);
    }
}

/// Steps 4b and 5: `F' = F * a[c]` in place, and per pixel the channel mean and max of `F'`
/// written as the two channels of `maps` in the model's order.
///
/// Public so that the benchmarks can time the scaling apart from the rest of the op;
/// [`cbam`] is the entry point. `table` is working memory of `2 * p.c` bytes for a
/// backend's packed loops (shorter: the portable loop runs). Pixels past the shorter of
/// `data` (in `p.c`-byte pixels) and `maps` (2 bytes each) are left alone; channels past
/// `att` are not scaled.
// Out of line: see `pool_channels`.
#[inline(never)]
pub fn scale_channels_and_pool(
    p: &CbamParams,
    data: &mut [i8],
    att: &[i8],
    maps: &mut [i8],
    table: &mut [i8],
) {
    let zp_in = p.zp_in;
    if p.c == 0 {
        return;
    }
    if Active::cbam_scale_channels(p, data, att, maps, table) {
        return;
    }
    if i8::try_from(zp_in).is_ok() {
        if let Some(rq) = Pow2ProductRequant::new(p.f1, p.zp_f1) {
            return scale_and_pool_by(p, data, att, maps, |v, a| {
                rq.apply(i32::from(v) - zp_in, i32::from(a) + 128)
            });
        }
        if let Some(rq) = SignedProductRequant::new(p.f1, p.zp_f1) {
            return scale_and_pool_by(p, data, att, maps, |v, a| {
                let x = i32::from(v) - zp_in;
                rq.apply_doubled(x * (2 * (i32::from(a) + 128)))
            });
        }
    }
    // Any other constants (a multiplier below 2^30 is only the zero multiplier in blobs
    // from our compiler): the general requantizer.
    let rq = OutputRequant::new(p.f1, p.zp_f1, ActRange::FULL);
    scale_and_pool_by(p, data, att, maps, |v, a| {
        let x = i32::from(v).wrapping_sub(zp_in);
        rq.apply(x.wrapping_mul(i32::from(a) + 128))
    })
}

/// [`scale_channels_and_pool`] with `scale(F, a) = F'` (exact for any input).
#[inline(always)]
fn scale_and_pool_by(
    p: &CbamParams,
    data: &mut [i8],
    att: &[i8],
    maps: &mut [i8],
    scale: impl Fn(i8, i8) -> i8,
) {
    for (px, pair) in data.chunks_exact_mut(p.c).zip(maps.chunks_exact_mut(2)) {
        let mut sum = 0i32;
        let mut top = i8::MIN;
        for (v, &a) in px.iter_mut().zip(att) {
            let f1 = scale(*v, a);
            *v = f1;
            sum = sum.wrapping_add(i32::from(f1));
            top = top.max(f1);
        }
        store_pooled(p, sum, top, pair);
    }
}

/// Writes one pixel's channel mean and max of `F'` into `pair`, in the model's order, from
/// the sum and the maximum of its `C` values.
#[inline(always)]
pub(crate) fn store_pooled(p: &CbamParams, sum: i32, top: i8, pair: &mut [i8]) {
    let count = i32::try_from(p.c).unwrap_or(i32::MAX);
    let mean = mean_level(sum, count, p.zp_f1);
    let (first, second) = match p.order {
        PoolOrder::MeanMax => (mean, top),
        PoolOrder::MaxMean => (top, mean),
    };
    if let [a, b] = pair {
        *a = first;
        *b = second;
    }
}

/// Steps 6 and 7a: the `k x k` convolution of the two maps (`maps`, `(h, w, 2)`, padding
/// `k/2`) into one channel, then the sigmoid table, per pixel, into `att` (`h * w`).
///
/// Public for the benchmarks, like [`scale_channels_and_pool`]; [`cbam`] is the entry
/// point.
// Out of line: see `pool_channels`.
#[inline(never)]
pub fn spatial_attention(
    p: &CbamParams,
    shape: Shape,
    maps: &[i8],
    att: &mut [i8],
) -> Result<(), Error> {
    // The backend's ring of rows, or else the CONV2D kernel.
    if Active::cbam_spatial_conv(p, shape, maps, att) {
        return Ok(());
    }
    spatial_attention_by_conv2d(p, shape, maps, att)
}

/// [`spatial_attention`] through the CONV2D kernel (one output channel).
pub(crate) fn spatial_attention_by_conv2d(
    p: &CbamParams,
    shape: Shape,
    maps: &[i8],
    att: &mut [i8],
) -> Result<(), Error> {
    spatial_attention_rows(p, shape, maps, 0, 0..shape.h, att)
}

/// Rows `rows` of the spatial attention map into `att`, from the pooled maps' rows that
/// start at row `maps_first` (`maps`: every row the conv's window reaches, the ones past
/// the map's edge left out).
pub(crate) fn spatial_attention_rows(
    p: &CbamParams,
    shape: Shape,
    maps: &[i8],
    maps_first: usize,
    rows: core::ops::Range<usize>,
    att: &mut [i8],
) -> Result<(), Error> {
    let bad = Error::SliceLength {
        what: "cbam spatial rows",
    };
    let pad = p.k / 2;
    let maps_rows = maps.len() / shape.w.saturating_mul(2).max(1);
    // The window of output row y reaches rows y - pad ..= y + pad.
    let pad_top = (maps_first + pad).checked_sub(rows.start).ok_or(bad)?;
    let pad_bottom = (rows.end + pad).saturating_sub(maps_first + maps_rows);
    let (bias, mult, shift) = (
        p.bs.to_le_bytes(),
        p.rs.mult.to_le_bytes(),
        p.rs.shift.to_le_bytes(),
    );
    let conv = Conv2dParams {
        geometry: ConvGeometry {
            pad_top,
            pad_bottom,
            ..ConvGeometry::square(p.k, pad)
        },
        weights: p.ws,
        packed: &[],
        quant: ChannelQuant {
            in_zp: p.zp_f1,
            out_zp: p.zp_s,
            act: ActRange::FULL,
            bias: I32Le::new(&bias),
            mult: I32Le::new(&mult),
            shift: I32Le::new(&shift),
        },
    };
    conv2d(
        &conv,
        Shape::new(maps_rows, shape.w, 2),
        maps,
        Shape::new(rows.len(), shape.w, 1),
        att,
    )?;
    for v in att.iter_mut() {
        *v = lookup(p.lut_s, *v);
    }
    Ok(())
}

#[inline(never)]
pub fn scale_pixels(p: &CbamParams, data: &mut [i8], att: &[i8]) {
    let zp_f1 = p.zp_f1;
    if p.c == 0 {
        return;
    }
    if Active::cbam_scale_pixels(p, data, att) {
        return;
    }
    if let (Some(rq), Ok(_)) = (
        Pow2ProductRequant::new(p.out, p.zp_out),
        i8::try_from(zp_f1),
    ) {
        for (px, &a) in data.chunks_exact_mut(p.c).zip(att) {
            let k = i32::from(a) + 128;
            for v in px.iter_mut() {
                *v = rq.apply(i32::from(*v) - zp_f1, k);
            }
        }
        return;
    }
    if let (Some(rq), Ok(_)) = (
        SignedProductRequant::new(p.out, p.zp_out),
        i8::try_from(zp_f1),
    ) {
        for (px, &a) in data.chunks_exact_mut(p.c).zip(att) {
            let k2 = 2 * (i32::from(a) + 128);
            let base = -zp_f1 * k2;
            for v in px.iter_mut() {
                *v = rq.apply_doubled(i32::from(*v) * k2 + base);
            }
        }
        return;
    }
    // Any other constants: the general requantizer (see `scale_channels_and_pool`).
    let rq = OutputRequant::new(p.out, p.zp_out, ActRange::FULL);
    for (px, &a) in data.chunks_exact_mut(p.c).zip(att) {
        let factor = i32::from(a) + 128;
        for v in px.iter_mut() {
            let prod = i32::from(*v).wrapping_sub(zp_f1).wrapping_mul(factor);
            *v = rq.apply(prod);
        }
    }
}

pub(crate) mod banded;
pub(crate) mod spatial_conv;
#[cfg(test)]
pub(crate) mod tests;
