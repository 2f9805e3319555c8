//! The inner products of [`crate::kernels::dot`] on the DSP extension's packed 16-bit
//! multiply-accumulates.
//!
//! Each 32-bit load brings four int8 values; `SXTAB16` sign-extends the even and the odd
//! bytes into two 16-bit lanes while adding the input offset, `SXTB16` does the same for
//! the weights, and one `SMLAD` then adds two products to an accumulator. Every lane value
//! fits 16 bits (an int8 plus an offset in `PACKED_OFFSET`, which the callers check), every
//! product fits 32 bits and the accumulation wraps modulo 2^32 exactly like the portable
//! `wrapping_add`, so results are bit-identical (SMLAD's sticky Q flag is never read).

use super::insn::{smlabb, smlad, smlatt, sxtab16, sxtab16_ror8, sxtb16, sxtb16_ror8};
use super::{splat_offset, word};
use crate::kernels::dot;
use core::arch::asm;

/// `sum (x + offset) * w` over equally long slices; `offset` must be in
/// `PACKED_OFFSET`.
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
    acc.wrapping_add(dot::dot1(xt, wt, offset))
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

/// Two dot products of one input run against two weight rows of the same length (the
/// rows [`dot4`] leaves over); `offset` must be in `PACKED_OFFSET`.
// Out of line for the same reason as `dot4_rows`.
#[inline(never)]
pub(crate) fn dot2_rows(x: &[i8], w: [&[i8]; 2], offset: i32) -> [i32; 2] {
    let [a0, a1] = dot2(x, w[0], w[1], splat_offset(offset));
    // `dot2` stops at the shortest slice's last whole word; the tail starts there too.
    let len = x.len().min(w[0].len()).min(w[1].len());
    if len.is_multiple_of(4) {
        return [a0, a1];
    }
    let whole = len & !3;
    let [x, w0, w1] = [x, w[0], w[1]].map(|s| s.get(whole..).unwrap_or(&[]));
    let [t0, t1] = dot::dot2(x, [w0, w1], offset);
    [a0.wrapping_add(t0), a1.wrapping_add(t1)]
}

/// The byte distance `d` with `w[i] = w[0] + i * d` (the rows of one weight tensor), when
/// the rows are evenly spaced like that.
#[inline(always)]
fn row_stride(w: &[&[i8]; 4]) -> Option<usize> {
    let at = w.map(|r| r.as_ptr() as usize);
    let d = at[1].checked_sub(at[0])?;
    (at[2].checked_sub(at[1]) == Some(d) && at[3].checked_sub(at[2]) == Some(d)).then_some(d)
}

/// The instructions of one weight row against the extended input in `{xe}` (even bytes)
/// and `r7` (odd bytes): load the row's word at `$at`, widen it, two `SMLAD`s into `$acc`.
macro_rules! row_word {
    ($at:literal, $acc:literal) => {
        concat!(
            "ldr {x}, ",
            $at,
            "\n",
            "sxtb16 {t}, {x}\n",
            "smlad {",
            $acc,
            "}, {xe}, {t}, {",
            $acc,
            "}\n",
            "sxtb16 {x}, {x}, ror #8\n",
            "smlad {",
            $acc,
            "}, r7, {x}, {",
            $acc,
            "}\n",
        )
    };
}

/// Four dot products of one input run against four evenly spaced weight rows (`stride`
/// bytes apart), over the first `4 * words` bytes, loading each input word once: 25
/// instructions per 16 MACs instead of two passes of [`dot2`] (30).
///
/// Fourteen live values: the thirteen registers the compiler may hand out, plus `r7`
/// (the frame pointer, so never an operand), which the block saves on the stack and
/// restores before it ends.
#[inline(always)]
fn dot4_strided(x: &[i8], w0: &[i8], stride: usize, words: usize, off2: u32) -> [i32; 4] {
    let [mut a0, mut a1, mut a2, mut a3] = [0i32; 4];
    if words == 0 {
        return [a0, a1, a2, a3];
    }
    // SAFETY: the loop runs `words` times and reads 4 bytes per pass from `x` and from
    // the four rows at `w0 + i * stride`, which the caller has checked hold `4 * words`
    // bytes each; unaligned word loads are allowed on Armv7E-M. `r7` is pushed before and
    // popped after its use, so the frame pointer survives; nothing else on the stack is
    // touched. Register operands only otherwise.
    unsafe {
        asm!(
            "push {{r7}}",
            "2:",
            "ldr {x}, [{px}], #4",
            "sxtab16 {xe}, {off}, {x}",
            "sxtab16 r7, {off}, {x}, ror #8",
            row_word!("[{pw}, {ws}]", "a1"),
            row_word!("[{pw}], #4", "a0"),
            row_word!("[{pw2}, {ws}]", "a3"),
            row_word!("[{pw2}], #4", "a2"),
            "cmp {px}, {end}",
            "bne 2b",
            "pop {{r7}}",
            px = inout(reg) x.as_ptr() => _,
            end = in(reg) x.as_ptr().wrapping_add(4 * words),
            pw = inout(reg) w0.as_ptr() => _,
            pw2 = inout(reg) w0.as_ptr().wrapping_add(2 * stride) => _,
            ws = in(reg) stride,
            off = in(reg) off2,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            a3 = inout(reg) a3,
            x = out(reg) _,
            t = out(reg) _,
            xe = out(reg) _,
            options(readonly),
        );
    }
    [a0, a1, a2, a3]
}

/// Four dot products of one input run against four weight rows of the same length;
/// `offset` must be in `PACKED_OFFSET`.
#[inline(always)]
pub(crate) fn dot4(x: &[i8], w: [&[i8]; 4], offset: i32) -> [i32; 4] {
    let off2 = splat_offset(offset);
    let words = x.len() / 4;
    let whole = 4 * words;
    let long_enough = w.iter().all(|r| r.len() >= whole);
    let acc = match row_stride(&w) {
        Some(stride) if long_enough => dot4_strided(x, w[0], stride, words, off2),
        _ => dot4_pairs(x, w, off2),
    };
    with_tail(x, w, offset, acc)
}

/// [`dot4`] of the four consecutive rows of `x.len()` bytes at the start of `rows`;
/// `offset` must be in `PACKED_OFFSET`.
// Out of line: the caller (one output vector) gains more from a small frame of its own
// than from sharing this one's set-up.
#[inline(never)]
pub(crate) fn dot4_rows(x: &[i8], rows: &[i8], offset: i32) -> [i32; 4] {
    let n = x.len();
    if n.checked_mul(4).is_none_or(|need| rows.len() < need) {
        return dot4(x, dot::split_rows(rows, n), offset);
    }
    let acc = dot4_strided(x, rows, n, n / 4, splat_offset(offset));
    if n.is_multiple_of(4) {
        return acc;
    }
    with_tail(x, dot::split_rows(rows, n), offset, acc)
}

/// [`dot4`] for short runs (a few words): two passes of [`dot2`], whose smaller set-up
/// and register use serve the callers of short windows better.
#[inline(always)]
pub(crate) fn dot4_short(x: &[i8], w: [&[i8]; 4], offset: i32) -> [i32; 4] {
    with_tail(x, w, offset, dot4_pairs(x, w, splat_offset(offset)))
}

#[inline(always)]
fn dot4_pairs(x: &[i8], w: [&[i8]; 4], off2: u32) -> [i32; 4] {
    // Two channels per pass: the rows' four pointers leave too few registers.
    let [a0, a1] = dot2(x, w[0], w[1], off2);
    let [a2, a3] = dot2(x, w[2], w[3], off2);
    [a0, a1, a2, a3]
}

/// `acc` plus the products of the last `x.len() % 4` bytes.
#[inline(always)]
fn with_tail(x: &[i8], w: [&[i8]; 4], offset: i32, acc: [i32; 4]) -> [i32; 4] {
    let [a0, a1, a2, a3] = acc;
    let whole = x.len() & !3;
    let tails = w.map(|r| r.get(whole..).unwrap_or(&[]));
    let tail = dot::dot4(x.get(whole..).unwrap_or(&[]), tails, offset);
    [
        a0.wrapping_add(tail[0]),
        a1.wrapping_add(tail[1]),
        a2.wrapping_add(tail[2]),
        a3.wrapping_add(tail[3]),
    ]
}

/// Lane-wise `acc[i] += (x[i] + offset) * w[i]` for four adjacent channels (depthwise);
/// `offset` must be in `PACKED_OFFSET`.
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
    match (window_3x3_bytes(row, step), step.checked_mul(8)) {
        (Some(xn), Some(wn)) if x.len() >= xn && w.len() >= wn + 4 => {
            // SAFETY: both lengths were just checked.
            unsafe { mac_lanes4_3x3_unchecked(acc, x.as_ptr(), row, w.as_ptr(), step) };
            true
        }
        _ => false,
    }
}

/// The input bytes a 3x3 window of four channels reads: `2 * row + 2 * step + 4`.
#[inline(always)]
pub(crate) fn window_3x3_bytes(row: usize, step: usize) -> Option<usize> {
    row.checked_mul(2)?
        .checked_add(step.checked_mul(2)?)?
        .checked_add(4)
}

/// [`mac_lanes4_3x3`] at `n` windows `x_step` bytes apart from the start of `x`, calling
/// `f(i, acc)` with window `i`'s accumulators (started from `init`). The bytes of all of
/// them are checked once, not per window. Returns `false`, calling nothing, when `x` or
/// `w` is too short for them.
#[inline(always)]
pub(crate) fn mac_lanes4_3x3_run(
    (x, n, x_step): (&[i8], usize, usize),
    row: usize,
    (w, step): (&[i8], usize),
    init: [i32; 4],
    mut f: impl FnMut(usize, [i32; 4]),
) -> bool {
    let x_need = n
        .checked_sub(1)
        .and_then(|last| last.checked_mul(x_step))
        .zip(window_3x3_bytes(row, step))
        .and_then(|(a, b)| a.checked_add(b));
    let w_need = step.checked_mul(8).and_then(|n| n.checked_add(4));
    match (x_need, w_need) {
        (Some(xn), Some(wn)) if x.len() >= xn && w.len() >= wn => {}
        _ => return n == 0,
    }
    let mut px = x.as_ptr();
    for i in 0..n {
        let mut acc = init;
        // SAFETY: window `i` reads `window_3x3_bytes(row, step)` bytes from
        // `i * x_step`, inside `x` by the check above, and `8 * step + 4` bytes of `w`.
        unsafe { mac_lanes4_3x3_unchecked(&mut acc, px, row, w.as_ptr(), step) };
        f(i, acc);
        px = px.wrapping_add(x_step);
    }
    true
}

/// [`mac_lanes4_3x3`] without its length checks, for callers that check a whole row of
/// windows at once.
///
/// # Safety
/// `x` must be valid for reads of `window_3x3_bytes(row, step)` bytes and `w` of
/// `8 * step + 4` bytes.
#[inline(always)]
pub(crate) unsafe fn mac_lanes4_3x3_unchecked(
    acc: &mut [i32; 4],
    x: *const i8,
    row: usize,
    w: *const i8,
    step: usize,
) {
    let [mut a0, mut a1, mut a2, mut a3] = *acc;
    // SAFETY: reads 4 bytes at `ky * row + kx * step` of `x` and at `(3 * ky + kx) * step`
    // of `w` for ky, kx in 0..3, inside the bytes the caller guarantees; unaligned word
    // loads are allowed on Armv7E-M. Writes only its register operands.
    unsafe {
        asm!(
            plain_lanes4_row3!(),
            plain_lanes4_row3!(),
            plain_lanes4_row3!(),
            px = inout(reg) x => _,
            pw = inout(reg) w => _,
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
}
