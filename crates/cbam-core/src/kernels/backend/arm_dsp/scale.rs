//! The CBAM scalings on packed bytes: `clamp(requant((v - zp) * k) + zp_out)` for four
//! int8 values per 32-bit load, with [`crate::kernels::requant::SignedProductRequant`]'s
//! arithmetic (every step below is that type's, so the bits are the same).
//!
//! Per four values: one `LDR`, two `SXTAB16` (the values minus the input zero point in
//! 16-bit lanes), then per value `SMULxy` (times twice the factor), `ADD` (rounding
//! constant minus the sign), `SMMLAR`, `ASR` and `SSAT`; three `BFI` to pack the bytes
//! and one `STR` (a multiplier of exactly `2^30` needs no multiply: `ADD` instead). The
//! shift comes from a register (`ASR` then `SSAT`): as an immediate of `SSAT` it would
//! save one instruction per value but need an instance of every loop per shift (about
//! 1 KB each; measured: 7.14 against 8.36 instructions per element for the spatial
//! scaling, for 21 KB more code).

use core::arch::asm;

/// The per-layer constants, in the form the loops take them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedScale {
    /// `-zp_in` in both 16-bit lanes.
    pub(crate) neg_zp2: u32,
    /// `2^(r-1) + zp_out * 2^r`.
    pub(crate) bias: i32,
    /// The multiplier, or for a multiplier of exactly `2^30` the sign offset 2 (there
    /// `h = (x2 + 2) >> 2` needs no multiply, see [`PackedScale::pow2`]).
    pub(crate) mult: i32,
    /// Whether the multiplier is exactly `2^30`.
    pub(crate) pow2: bool,
    /// The right shift `r`.
    pub(crate) right: u32,
}

/// The instructions that turn `x2` in `$x` (with `x2 + 2` for a multiplier of exactly
/// `2^30`) into the saturated output in `$dst`, using `{ra}` and `$x` as temporaries:
/// `h + bias - [h < 0]`, shifted right by `{rs}` and saturated to 8 bits.
macro_rules! finish_mul {
    ($x:literal, $dst:literal) => {
        concat!(
            "add {ra}, {bias}, {",
            $x,
            "}, asr #31\n",
            "smmlar {",
            $x,
            "}, {",
            $x,
            "}, {m}, {ra}\n",
            "asr {",
            $x,
            "}, {",
            $x,
            "}, {rs}\n",
            "ssat {",
            $dst,
            "}, #8, {",
            $x,
            "}\n",
        )
    };
}

/// As [`finish_mul!`] for a multiplier of exactly `2^30`, where `$x` holds `x2 + 2`:
/// `h = (x2 + 2) >> 2`, negative exactly when `x2 + 2` is.
macro_rules! finish_pow2 {
    ($x:literal, $dst:literal) => {
        concat!(
            "add {ra}, {bias}, {",
            $x,
            "}, asr #31\n",
            "add {ra}, {ra}, {",
            $x,
            "}, asr #2\n",
            "asr {ra}, {ra}, {rs}\n",
            "ssat {",
            $dst,
            "}, #8, {ra}\n",
        )
    };
}

/// `x2` (plus 2 for a multiplier of `2^30`, `{m}` holding 2) of lane `$lane` of `$x`
/// times lane `$klane` of `$k`, into `$dst`.
macro_rules! product_mul {
    ($dst:literal, $x:literal, $lane:literal, $k:literal, $klane:literal) => {
        concat!("smul", $lane, $klane, " {", $dst, "}, {", $x, "}, {", $k, "}\n")
    };
}

/// See [`product_mul!`].
macro_rules! product_pow2 {
    ($dst:literal, $x:literal, $lane:literal, $k:literal, $klane:literal) => {
        concat!("smla", $lane, $klane, " {", $dst, "}, {", $x, "}, {", $k, "}, {m}\n")
    };
}

/// The loop of [`scale_by_factor`], with the product and finish macros of one multiplier
/// kind.
macro_rules! factor_loop {
    ($product:ident, $finish:ident, $px:expr, $words:expr, $k:expr, $c:expr) => {
        // SAFETY: the loop reads and writes `4 * words` bytes from `px`, which has at
        // least that many (unaligned word access is allowed on Armv7E-M); it writes only
        // those bytes and its register operands.
        unsafe {
            asm!(
                "2:",
                "ldr {w}, [{p}]",
                "sxtab16 {o}, {off}, {w}, ror #8",
                "sxtab16 {w}, {off}, {w}",
                $product!("x", "w", "b", "k", "b"),
                $finish!("x", "out"),
                $product!("x", "o", "b", "k", "b"),
                $finish!("x", "x"),
                "bfi {out}, {x}, #8, #8",
                $product!("x", "w", "t", "k", "b"),
                $finish!("x", "x"),
                "bfi {out}, {x}, #16, #8",
                $product!("x", "o", "t", "k", "b"),
                $finish!("x", "x"),
                "bfi {out}, {x}, #24, #8",
                "str {out}, [{p}], #4",
                "subs {n}, {n}, #1",
                "bne 2b",
                p = inout(reg) $px.as_mut_ptr() => _,
                n = inout(reg) $words => _,
                off = in(reg) $c.neg_zp2,
                k = in(reg) $k,
                bias = in(reg) $c.bias,
                m = in(reg) $c.mult,
                rs = in(reg) $c.right,
                w = out(reg) _,
                o = out(reg) _,
                x = out(reg) _,
                ra = out(reg) _,
                out = out(reg) _,
                options(nostack),
            )
        }
    };
}

/// Scales `4 * (px.len() / 4)` bytes of one pixel in place by the factor `k2 = 2 * k`
/// (`k` in `0..=256`), returning how many bytes it did (the caller does the rest).
#[inline(always)]
pub(crate) fn scale_by_factor(px: &mut [i8], k2: i32, c: PackedScale) -> usize {
    let words = px.len() / 4;
    if words == 0 {
        return 0;
    }
    let k = (k2 as u32 & 0xFFFF).wrapping_mul(0x0001_0001);
    if c.pow2 {
        factor_loop!(product_pow2, finish_pow2, px, words, k, c);
    } else {
        factor_loop!(product_mul, finish_mul, px, words, k, c);
    }
    4 * words
}

/// The loop of [`scale_by_channel`]. Fourteen live values: the factor words are loaded
/// into `{out}` and `{w}` while those are free, both products of a factor word are taken
/// before either is finished, and the running byte maximum lives in `r7` (the frame
/// pointer, never an operand), saved on the stack around the loop.
macro_rules! channel_loop {
    ($product:ident, $finish:ident, $px:expr, $words:expr, $factors:expr, $c:expr) => {{
        let (lanes, top): (u32, u32);
        // SAFETY: the loop reads and writes `4 * words` bytes of `px` and reads
        // `8 * words` bytes of `factors`, both checked by the caller (unaligned word
        // access is allowed); it writes only those bytes, its register operands and the
        // stack slot of `r7`, which it restores before the end.
        unsafe {
            asm!(
                "push {{r7}}",
                "mov r7, {x}",
                "2:",
                "ldr {w}, [{p}]",
                "sxtab16 {o}, {off}, {w}, ror #8",
                "sxtab16 {w}, {off}, {w}",
                "ldr {out}, [{pk}], #4",
                $product!("x", "w", "b", "out", "b"),
                $product!("w", "w", "t", "out", "t"),
                $finish!("x", "out"),
                $finish!("w", "x"),
                "bfi {out}, {x}, #16, #8",
                "ldr {w}, [{pk}], #4",
                $product!("x", "o", "b", "w", "b"),
                $product!("o", "o", "t", "w", "t"),
                $finish!("x", "x"),
                "bfi {out}, {x}, #8, #8",
                $finish!("o", "x"),
                "bfi {out}, {x}, #24, #8",
                "str {out}, [{p}], #4",
                // The pixel's channel sum (16-bit lanes) and byte-wise maximum.
                "sxtab16 {s}, {s}, {out}",
                "sxtab16 {s}, {s}, {out}, ror #8",
                "ssub8 {x}, {out}, r7",
                "sel r7, {out}, r7",
                "cmp {p}, {end}",
                "bne 2b",
                "mov {x}, r7",
                "pop {{r7}}",
                p = inout(reg) $px.as_mut_ptr() => _,
                end = in(reg) $px.as_mut_ptr().wrapping_add(4 * $words),
                pk = inout(reg) $factors.as_ptr() => _,
                off = in(reg) $c.neg_zp2,
                bias = in(reg) $c.bias,
                m = in(reg) $c.mult,
                rs = in(reg) $c.right,
                s = inout(reg) 0u32 => lanes,
                x = inout(reg) 0x8080_8080u32 => top,
                w = out(reg) _,
                o = out(reg) _,
                ra = out(reg) _,
                out = out(reg) _,
            );
        }
        (lanes, top)
    }};
}

/// Scales `4 * (px.len() / 4)` bytes of one pixel in place, channel `i` by its own factor:
/// `factors` holds per group of four channels the little-endian words `(k2[0], k2[2])`
/// and `(k2[1], k2[3])` (low, high halfword; see [`channel_factor_words`]). Returns the
/// sum and the maximum of the scaled bytes, or `None`, touching nothing, when `factors`
/// is shorter than `8 * (px.len() / 4)` bytes or `px` longer than 512 bytes (the sums run
/// in 16-bit lanes).
#[inline(always)]
pub(crate) fn scale_by_channel(px: &mut [i8], factors: &[i8], c: PackedScale) -> Option<(i32, i8)> {
    let words = px.len() / 4;
    if words == 0 {
        return Some((0, i8::MIN));
    }
    if factors.len() < 8 * words || words > 128 {
        return None;
    }
    let (lanes, top) = if c.pow2 {
        channel_loop!(product_pow2, finish_pow2, px, words, factors, c)
    } else {
        channel_loop!(product_mul, finish_mul, px, words, factors, c)
    };
    // Each 16-bit lane holds at most 256 values of magnitude <= 128: no wrap.
    let sum = i32::from(lanes as u16 as i16) + i32::from((lanes >> 16) as u16 as i16);
    let max = top.to_le_bytes().into_iter().map(|b| b as i8).max()?;
    Some((sum, max))
}

/// Writes the factor table of [`scale_by_channel`] for the factors `k2` into `table`
/// (`2 * k2.len()` bytes for a multiple of four channels; extra channels are left out).
/// Returns `false`, writing nothing, when `table` is too short.
#[inline]
pub(crate) fn channel_factor_words(
    k2: impl Iterator<Item = i32> + Clone,
    table: &mut [i8],
) -> bool {
    let n = k2.clone().count() / 4 * 4;
    let Some(table) = table.get_mut(..2 * n) else {
        return false;
    };
    let mut k = k2.take(n);
    for group in table.chunks_exact_mut(8) {
        let (Some(k0), Some(k1), Some(k2), Some(k3)) = (k.next(), k.next(), k.next(), k.next())
        else {
            return false;
        };
        for (dst, v) in group.chunks_exact_mut(2).zip([k0, k2, k1, k3]) {
            for (d, b) in dst.iter_mut().zip((v as u16).to_le_bytes()) {
                *d = b as i8;
            }
        }
    }
    true
}
