//! The fused CBAM op inside a stage of the schedule, where its input exists only as bands
//! of rows: the same steps as [`super::cbam`], split at the two points where the whole map
//! must have been seen (the channel statistics, then the spatial maps), with the scratch
//! region of [`super::cbam`] carrying everything between the passes. Each step reuses the
//! whole-map op's functions on the band's pixels, so both forms give the same bytes.
//!
//! A look-ahead stage merges the last two passes ([`lookahead_rows`]): each band of the
//! final pass pools its own rows and the `k/2` rows below them, so the spatial conv's window
//! is pooled by the time the band is scaled.
//!
//! During the first pass the spatial-map region (`2hw` bytes) holds the per-channel `i32`
//! sums (`4C` bytes; a stage holds a CBAM op only where `4C <= 2hw`).

use super::{
    channel_attention, mlp_hidden, scale_channels_and_pool, scale_pixels, spatial_attention,
    spatial_attention_rows, Scratch,
};
use crate::error::Error;
use crate::kernels::{CbamParams, Shape};
use crate::math::mean_level;

/// The scratch's parts; the spatial maps take what the vectors and the attention map leave
/// (every row, or a look-ahead stage's window of rows).
fn parts<'s>(p: &CbamParams, shape: Shape, scratch: &'s mut [i8]) -> Result<Scratch<'s>, Error> {
    let bad = Error::SliceLength {
        what: "cbam band scratch",
    };
    let hw = shape.pixels().ok_or(bad)?;
    let fixed =
        p.c.checked_mul(3)
            .and_then(|v| v.checked_add(p.cr.checked_mul(2)?)?.checked_add(hw))
            .ok_or(bad)?;
    let maps_len = scratch.len().checked_sub(fixed).ok_or(bad)?;
    let row = shape.w.saturating_mul(2);
    if maps_len > hw.saturating_mul(2)
        || row == 0
        || !maps_len.is_multiple_of(row)
        || p.c.checked_mul(4).is_none_or(|s| s > maps_len)
    {
        return Err(bad);
    }
    Scratch::split(scratch, p.c, p.cr, hw, maps_len).ok_or(bad)
}

/// Before the first band of the statistics pass: sums 0, maxima -128.
pub fn stats_begin(p: &CbamParams, shape: Shape, scratch: &mut [i8]) -> Result<(), Error> {
    let s = parts(p, shape, scratch)?;
    s.maps.fill(0);
    if let Some(pm) = s.pooled.get_mut(p.c..) {
        pm.fill(i8::MIN);
    }
    Ok(())
}

/// Adds a band's pixels (`data`, whole pixels of `C` channels) to the statistics.
pub fn stats_rows(
    p: &CbamParams,
    shape: Shape,
    scratch: &mut [i8],
    data: &[i8],
) -> Result<(), Error> {
    let s = parts(p, shape, scratch)?;
    let pm = s.pooled.get_mut(p.c..).unwrap_or_default();
    for ((ch, sum), max) in s.maps.chunks_exact_mut(4).enumerate().zip(pm) {
        let mut acc = read_i32(sum);
        let mut top = *max;
        for &v in data.iter().skip(ch).step_by(p.c) {
            acc = acc.wrapping_add(i32::from(v));
            top = top.max(v);
        }
        write_i32(sum, acc);
        *max = top;
    }
    Ok(())
}

/// After the last band of the statistics pass: the channel attention `a[c]`.
pub fn stats_end(p: &CbamParams, shape: Shape, scratch: &mut [i8]) -> Result<(), Error> {
    let s = parts(p, shape, scratch)?;
    let count = i32::try_from(shape.h * shape.w).unwrap_or(i32::MAX);
    let (pa, pm) = s.pooled.split_at_mut(p.c);
    for (a, sum) in pa.iter_mut().zip(s.maps.chunks_exact(4)) {
        *a = mean_level(read_i32(sum), count, p.zp_in);
    }
    mlp_hidden(p, pa, s.hid_a);
    mlp_hidden(p, pm, s.hid_m);
    channel_attention(p, s.hid_a, s.hid_m, s.att_c);
    Ok(())
}

/// The second pass over a band starting at pixel `first_px`: `F' = a[c] * F` in place and
/// the band's pixels of the two pooled spatial maps.
pub fn maps_rows(
    p: &CbamParams,
    shape: Shape,
    scratch: &mut [i8],
    data: &mut [i8],
    first_px: usize,
) -> Result<(), Error> {
    let s = parts(p, shape, scratch)?;
    let maps = s.maps.get_mut(first_px * 2..).unwrap_or_default();
    scale_channels_and_pool(p, data, s.att_c, maps, s.pooled);
    Ok(())
}

/// After the last band of the second pass: the spatial attention map.
pub fn maps_end(p: &CbamParams, shape: Shape, scratch: &mut [i8]) -> Result<(), Error> {
    let s = parts(p, shape, scratch)?;
    spatial_attention(p, shape, s.maps, s.att_s)
}

/// The final pass over a band starting at pixel `first_px`: `F'' = as * (a * F)` in place.
pub fn apply_rows(
    p: &CbamParams,
    shape: Shape,
    scratch: &mut [i8],
    data: &mut [i8],
    first_px: usize,
) -> Result<(), Error> {
    let s = parts(p, shape, scratch)?;
    let maps = s.maps.get_mut(first_px * 2..).unwrap_or_default();
    scale_channels_and_pool(p, data, s.att_c, maps, s.pooled);
    let att = s.att_s.get(first_px..).unwrap_or_default();
    scale_pixels(p, data, att);
    Ok(())
}

/// The input rows a look-ahead band for output rows `rows` finds already scaled and pooled
/// up to: the `k/2` rows the previous band read past its end.
pub fn lookahead_done(p: &CbamParams, shape: Shape, rows: core::ops::Range<usize>) -> usize {
    if rows.start == 0 {
        0
    } else {
        rows.start.saturating_add(p.k / 2).min(shape.h)
    }
}

/// The final pass of a look-ahead stage over output rows `rows`: `data` holds the input's
/// rows from `rows.start` to `k/2` rows past `rows.end` (or the map's end). The rows the
/// previous band left (up to `k/2` rows past its end, see [`lookahead_done`]) are already
/// scaled by the channel attention and pooled; the others are scaled in place and pooled.
/// Then the band's rows of the spatial attention are computed from the map rows above,
/// within and below them, and the band's rows of `data` scaled by it.
///
/// The maps are a window of rows: at the start of a band it holds the `2*(k/2)` rows up to
/// the first row not yet pooled, at its start (all the band's spatial conv reads above
/// that row); the band's new rows follow, and the window then moves down for the next band.
pub fn lookahead_rows(
    p: &CbamParams,
    shape: Shape,
    scratch: &mut [i8],
    data: &mut [i8],
    rows: core::ops::Range<usize>,
) -> Result<(), Error> {
    let bad = Error::SliceLength {
        what: "cbam look-ahead band",
    };
    let s = parts(p, shape, scratch)?;
    let row_bytes = shape.w.checked_mul(p.c).ok_or(bad)?;
    let pad = p.k / 2;
    let end = rows.end.saturating_add(pad).min(shape.h);
    if rows.start >= rows.end || rows.end > shape.h || data.len() != (end - rows.start) * row_bytes
    {
        return Err(bad);
    }
    let done = lookahead_done(p, shape, rows.clone());
    let low = done.saturating_sub(2 * pad);
    let map_row = shape.w * 2;
    let at = |row: usize| (row - low) * map_row;
    let maps = s.maps.get_mut(at(done)..at(end)).ok_or(bad)?;
    let fresh = data.get_mut((done - rows.start) * row_bytes..).ok_or(bad)?;
    scale_channels_and_pool(p, fresh, s.att_c, maps, s.pooled);
    let first = rows.start.saturating_sub(pad);
    let window = s.maps.get(at(first)..at(end)).ok_or(bad)?;
    let att = s
        .att_s
        .get_mut(rows.start * shape.w..rows.end * shape.w)
        .ok_or(bad)?;
    spatial_attention_rows(p, shape, window, first, rows.clone(), att)?;
    let band = data.get_mut(..rows.len() * row_bytes).ok_or(bad)?;
    scale_pixels(p, band, att);
    // The next band finds `end` rows pooled and keeps the 2*pad rows before it.
    let next_low = end.saturating_sub(2 * pad);
    s.maps
        .get_mut(..at(end))
        .ok_or(bad)?
        .copy_within(at(next_low).., 0);
    Ok(())
}

/// The attention maps once both are known (after [`maps_end`]).
pub fn attention<'s>(
    p: &CbamParams,
    shape: Shape,
    scratch: &'s mut [i8],
) -> Result<super::CbamAttention<'s>, Error> {
    let s = parts(p, shape, scratch)?;
    Ok(super::CbamAttention {
        channel: s.att_c,
        spatial: s.att_s,
    })
}

fn read_i32(bytes: &[i8]) -> i32 {
    let mut b = [0u8; 4];
    for (d, &s) in b.iter_mut().zip(bytes) {
        *d = s as u8;
    }
    i32::from_le_bytes(b)
}

fn write_i32(bytes: &mut [i8], v: i32) {
    for (d, s) in bytes.iter_mut().zip(v.to_le_bytes()) {
        *d = s as i8;
    }
}
