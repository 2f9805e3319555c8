//! Cortex-M4/M7 (Armv7E-M) fast path: the dot-product primitives of [`super::dot`] on the
//! DSP extension's packed 16-bit multiply-accumulates.
//!
//! Each 32-bit load brings four int8 values; `SXTAB16` sign-extends the even and the odd
//! bytes into two 16-bit lanes while adding the input offset, `SXTB16` does the same for
//! the weights, and one `SMLAD` then adds two products to an accumulator. Every lane value
//! fits 16 bits (an int8 plus an offset the caller has range-checked), every product fits
//! 32 bits and the accumulation wraps modulo 2^32 exactly like the portable path's
//! `wrapping_add`, so results are bit-identical (SMLAD's sticky Q flag is never read).

#![allow(unsafe_code)]

mod insn;

use core::arch::asm;
pub(crate) use insn::smmulr;
use insn::{smlabb, smlad, smlatt, sxtab16, sxtab16_ror8, sxtb16, sxtb16_ror8};

/// The offset in both 16-bit lanes, for `SXTAB16`.
#[inline(always)]
fn splat_offset(offset: i32) -> u32 {
    (offset as u32 & 0xFFFF).wrapping_mul(0x0001_0001)
}

#[inline(always)]
fn word(bytes: &[i8; 4]) -> u32 {
    u32::from_le_bytes(bytes.map(|b| b as u8))
}

/// `sum (x + offset) * w` over equally long slices; `offset` must be in
/// [`super::dot::PACKED_OFFSET`].
#[inline]
pub(crate) fn dot1(x: &[i8], w: &[i8], offset: i32) -> i32 {
    let off2 = splat_offset(offset);
    let (xc, xt) = x.as_chunks::<4>();
    let (wc, wt) = w.as_chunks::<4>();
    let mut acc = 0i32;
    for (xv, wv) in xc.iter().zip(wc) {
        let (xw, ww) = (word(xv), word(wv));
        acc = smlad(sxtab16(off2, xw), sxtb16(ww), acc);
        acc = smlad(sxtab16_ror8(off2, xw), sxtb16_ror8(ww), acc);
    }
    acc.wrapping_add(super::dot::portable_dot1(xt, wt, offset))
}

/// Two dot products of one input run against two weight rows, over the first
/// `4 * (shortest length / 4)` bytes.
///
/// Hand-scheduled: eleven live values fit the core's registers only when the compiler
/// is not also holding the surrounding loop state, so the loop is written out (15
/// instructions per 8 MACs).
#[inline]
fn dot2(x: &[i8], w0: &[i8], w1: &[i8], off2: u32) -> [i32; 2] {
    let words = x.len().min(w0.len()).min(w1.len()) / 4;
    let (mut a0, mut a1) = (0i32, 0i32);
    if words == 0 {
        return [a0, a1];
    }
    // SAFETY: the loop runs `words` times and reads 4 * words bytes from each of the three
    // slices, which all hold at least that many; unaligned word loads are allowed on
    // Armv7E-M (the blob's weights are read in place at any alignment). It writes only
    // its register operands.
    unsafe {
        asm!(
            "2:",
            "ldr {xw}, [{px}], #4",
            "sxtab16 {xe}, {off}, {xw}",
            "sxtab16 {xo}, {off}, {xw}, ror #8",
            "ldr {xw}, [{pw0}], #4",
            "sxtb16 {t}, {xw}",
            "smlad {a0}, {xe}, {t}, {a0}",
            "sxtb16 {t}, {xw}, ror #8",
            "smlad {a0}, {xo}, {t}, {a0}",
            "ldr {xw}, [{pw1}], #4",
            "sxtb16 {t}, {xw}",
            "smlad {a1}, {xe}, {t}, {a1}",
            "sxtb16 {t}, {xw}, ror #8",
            "smlad {a1}, {xo}, {t}, {a1}",
            "subs {n}, {n}, #1",
            "bne 2b",
            px = inout(reg) x.as_ptr() => _,
            pw0 = inout(reg) w0.as_ptr() => _,
            pw1 = inout(reg) w1.as_ptr() => _,
            n = inout(reg) words => _,
            off = in(reg) off2,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            xw = out(reg) _,
            xe = out(reg) _,
            xo = out(reg) _,
            t = out(reg) _,
            options(nostack, readonly),
        );
    }
    [a0, a1]
}

/// Four dot products of one input run against four weight rows of the same length;
/// `offset` must be in [`super::dot::PACKED_OFFSET`].
#[inline]
pub(crate) fn dot4(x: &[i8], w: [&[i8]; 4], offset: i32) -> [i32; 4] {
    let off2 = splat_offset(offset);
    // Two channels per pass: four would need more registers than the core has and spill.
    let [a0, a1] = dot2(x, w[0], w[1], off2);
    let [a2, a3] = dot2(x, w[2], w[3], off2);
    let whole = x.len() & !3;
    let tails = w.map(|r| r.get(whole..).unwrap_or(&[]));
    let tail = super::dot::portable_dot4(x.get(whole..).unwrap_or(&[]), tails, offset);
    [
        a0.wrapping_add(tail[0]),
        a1.wrapping_add(tail[1]),
        a2.wrapping_add(tail[2]),
        a3.wrapping_add(tail[3]),
    ]
}

/// Lane-wise `acc[i] += (x[i] + offset) * w[i]` for four adjacent channels (depthwise);
/// `offset` must be in [`super::dot::PACKED_OFFSET`].
#[inline(always)]
pub(crate) fn mac_lanes4(acc: &mut [i32; 4], x: &[i8; 4], w: &[i8; 4], offset: i32) {
    let off2 = splat_offset(offset);
    let (xw, ww) = (word(x), word(w));
    let (xe, xo) = (sxtab16(off2, xw), sxtab16_ror8(off2, xw));
    let (we, wo) = (sxtb16(ww), sxtb16_ror8(ww));
    acc[0] = smlabb(xe, we, acc[0]);
    acc[1] = smlabb(xo, wo, acc[1]);
    acc[2] = smlatt(xe, we, acc[2]);
    acc[3] = smlatt(xo, wo, acc[3]);
}

/// The instructions of one depthwise tap: four input bytes at `[{px}{at}]` and four weights
/// at `[{pw}{at}]` widened to 16-bit lanes and multiply-accumulated lane by lane.
macro_rules! lanes4_tap {
    ($at:literal) => {
        concat!(
            "ldr {xw}, [{px}",
            $at,
            "]\n",
            "ldr {ww}, [{pw}",
            $at,
            "]\n",
            "sxtab16 {xe}, {off}, {xw}\n",
            "sxtab16 {xw}, {off}, {xw}, ror #8\n",
            "sxtb16 {we}, {ww}\n",
            "sxtb16 {ww}, {ww}, ror #8\n",
            "smlabb {a0}, {xe}, {we}, {a0}\n",
            "smlatt {a2}, {xe}, {we}, {a2}\n",
            "smlabb {a1}, {xw}, {ww}, {a1}\n",
            "smlatt {a3}, {xw}, {ww}, {a3}\n",
        )
    };
}

/// `mac_lanes4` over the `TAPS` (2 or 3) horizontally adjacent taps of a kernel row: tap
/// `t` reads the four input bytes at `x[t * step..]` and the four weights at
/// `w[t * step..]` (depth multiplier 1 without dilation, so both move by one pixel of
/// `step` channels). Returns `false`, touching nothing, when a slice is too short or
/// `TAPS` is not 2 or 3.
#[inline(always)]
pub(crate) fn mac_lanes4_row<const TAPS: usize>(
    acc: &mut [i32; 4],
    x: &[i8],
    w: &[i8],
    step: usize,
    offset: i32,
) -> bool {
    let need = step.checked_mul(TAPS - 1).and_then(|n| n.checked_add(4));
    if !(2..=3).contains(&TAPS) || need.is_none_or(|n| x.len() < n || w.len() < n) {
        return false;
    }
    let off2 = splat_offset(offset);
    let [mut a0, mut a1, mut a2, mut a3] = *acc;
    macro_rules! run {
        ($($tap:expr),+) => {
            // SAFETY: reads 4 bytes at offsets 0, step (and 2 * step for three taps) of
            // both slices, all checked above to lie inside them; unaligned word loads are
            // allowed on Armv7E-M. Writes only its register operands.
            unsafe {
                asm!(
                    $($tap),+,
                    px = in(reg) x.as_ptr(),
                    pw = in(reg) w.as_ptr(),
                    step = in(reg) step,
                    off = in(reg) off2,
                    a0 = inout(reg) a0,
                    a1 = inout(reg) a1,
                    a2 = inout(reg) a2,
                    a3 = inout(reg) a3,
                    xw = out(reg) _,
                    ww = out(reg) _,
                    xe = out(reg) _,
                    we = out(reg) _,
                    options(nostack, readonly, preserves_flags),
                )
            }
        };
    }
    if TAPS == 3 {
        run!(
            lanes4_tap!(""),
            lanes4_tap!(", {step}"),
            lanes4_tap!(", {step}, lsl #1")
        );
    } else {
        run!(lanes4_tap!(""), lanes4_tap!(", {step}"));
    }
    *acc = [a0, a1, a2, a3];
    true
}

/// The instructions of one offset-free depthwise tap: four input bytes at `[{px}{at}]` and
/// four weights at `[{pw}{at}]`, widened to 16-bit lanes and multiplied lane by lane.
macro_rules! plain_lanes4_tap {
    ($at:literal) => {
        concat!(
            "ldr {xw}, [{px}",
            $at,
            "]\n",
            "ldr {ww}, [{pw}",
            $at,
            "]\n",
            "sxtb16 {xe}, {xw}\n",
            "sxtb16 {xw}, {xw}, ror #8\n",
            "sxtb16 {we}, {ww}\n",
            "sxtb16 {ww}, {ww}, ror #8\n",
            "smlabb {a0}, {xe}, {we}, {a0}\n",
            "smlatt {a2}, {xe}, {we}, {a2}\n",
            "smlabb {a1}, {xw}, {ww}, {a1}\n",
            "smlatt {a3}, {xw}, {ww}, {a3}\n",
        )
    };
}

/// One kernel row of three taps, then both pointers move to the next row.
macro_rules! plain_lanes4_row3 {
    () => {
        concat!(
            plain_lanes4_tap!(""),
            plain_lanes4_tap!(", {step}"),
            plain_lanes4_tap!(", {step}, lsl #1"),
            "add {px}, {px}, {row}\n",
            "add {pw}, {pw}, {step}, lsl #1\n",
            "add {pw}, {pw}, {step}\n",
        )
    };
}

/// Lane-wise `acc[i] += sum x[i] * w[i]` over a whole 3x3 window of four adjacent channels
/// without the input offset (the caller folds `offset * sum w` into the bias): the input
/// taps are `step` bytes apart within a row and `row` bytes apart between rows, the
/// weights `step` and `3 * step`. Returns `false`, touching nothing, when a slice is too
/// short for the window.
#[inline(always)]
pub(crate) fn mac_lanes4_3x3(
    acc: &mut [i32; 4],
    x: &[i8],
    row: usize,
    w: &[i8],
    step: usize,
) -> bool {
    let x_need = row
        .checked_mul(2)
        .zip(step.checked_mul(2))
        .and_then(|(r, s)| r.checked_add(s)?.checked_add(4));
    let w_need = step.checked_mul(8).and_then(|n| n.checked_add(4));
    match (x_need, w_need) {
        (Some(xn), Some(wn)) if x.len() >= xn && w.len() >= wn => {}
        _ => return false,
    }
    let [mut a0, mut a1, mut a2, mut a3] = *acc;
    // SAFETY: reads 4 bytes at `ky * row + kx * step` of `x` and at `(3 * ky + kx) * step`
    // of `w` for ky, kx in 0..3, all checked above to lie inside the slices; unaligned
    // word loads are allowed on Armv7E-M. Writes only its register operands.
    unsafe {
        asm!(
            plain_lanes4_row3!(),
            plain_lanes4_row3!(),
            plain_lanes4_row3!(),
            px = inout(reg) x.as_ptr() => _,
            pw = inout(reg) w.as_ptr() => _,
            step = in(reg) step,
            row = in(reg) row,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            a3 = inout(reg) a3,
            xw = out(reg) _,
            ww = out(reg) _,
            xe = out(reg) _,
            we = out(reg) _,
            options(nostack, readonly, preserves_flags),
        );
    }
    *acc = [a0, a1, a2, a3];
    true
}
