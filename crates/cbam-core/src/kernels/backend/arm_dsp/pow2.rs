//! The CBAM scalings of [`crate::kernels::requant::Pow2ProductRequant`] (multiplier
//! `2^(j-8)`) on inputs that are never below their zero point (a ReLU before the block):
//! then `x = v - zp_in` is in `0..=255`, every product `x * k` is below `2^16`, and the
//! rounding is `floor((x * k + 2^r + 1) / 2^(r+1))`, `r = 7 - j`, with no sign to look at.
//! The results are produced as unsigned bytes `u`, saturated with `UQADD8` against
//! `zp_out + 128` and turned into int8 with one `EOR`.
//!
//! Spatial scaling, one factor per pixel: one `MLA` multiplies two 16-bit lanes at once
//! (neither lane can carry into the other), so four values cost about thirteen
//! instructions. Channel scaling, one factor per channel: an `SMLAxy` per value, packed
//! back into lanes, plus the pixel's channel sum (`USADA8`) and byte maximum
//! (`USUB8`/`SEL`) on the unsigned bytes.

use core::arch::asm;

/// The constants of both loops for one scaling.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pow2Scale {
    /// `-zp_in` in both 16-bit lanes (for `SXTAB16`).
    pub(crate) neg_zp2: u32,
    /// `zp_out + 128` in all four bytes (for `UQADD8`).
    pub(crate) zp_bytes: u32,
    /// `j` in `0..=6`.
    pub(crate) steps: u32,
}

impl Pow2Scale {
    #[inline]
    pub(crate) fn new(zp_in: i32, zp_out: i32, steps: u32) -> Self {
        let neg_zp = (zp_in.wrapping_neg() as u32) & 0xFFFF;
        let zp_byte = (zp_out.wrapping_add(128) as u32) & 0xFF;
        Self {
            neg_zp2: neg_zp.wrapping_mul(0x0001_0001),
            zp_bytes: zp_byte.wrapping_mul(0x0101_0101),
            steps,
        }
    }

    /// `2^r + 1` (`r = 7 - j`), the rounding constant at a shift of `r + 1`.
    fn lane_round(&self) -> u32 {
        (1 << (7 - self.steps)) + 1
    }
}

/// The shared head and tail of the spatial loop around `$extract`, which turns the two
/// words of 16-bit lanes `x * k + 2^r + 1` in `{w}` and `{o}` into bytes `u` in their
/// lanes' low halves.
macro_rules! spatial_loop {
    ($px:expr, $words:expr, $k:expr, $c:expr, $round:expr, [$($extract:literal),+] $($operands:tt)*) => {
        // SAFETY: reads and writes `4 * words` bytes of `px` (unaligned word access is
        // allowed on Armv7E-M), nothing else but its register operands.
        unsafe {
            asm!(
                "2:",
                "ldr {w}, [{p}]",
                "sxtab16 {o}, {nz}, {w}, ror #8",
                "sxtab16 {w}, {nz}, {w}",
                "mla {w}, {w}, {k}, {rnd}",
                "mla {o}, {o}, {k}, {rnd}",
                $($extract,)+
                "orr {w}, {w}, {o}, lsl #8",
                "uqadd8 {w}, {w}, {z}",
                "eor {w}, {w}, #0x80808080",
                "str {w}, [{p}], #4",
                "subs {n}, {n}, #1",
                "bne 2b",
                p = inout(reg) $px.as_mut_ptr() => _,
                n = inout(reg) $words => _,
                nz = in(reg) $c.neg_zp2,
                k = in(reg) $k,
                rnd = in(reg) $round,
                z = in(reg) $c.zp_bytes,
                w = out(reg) _,
                o = out(reg) _,
                $($operands)*
                options(nostack),
            )
        }
    };
}

/// Scales the whole words of one pixel in place by the factor `k` (`0..=255`); returns
/// how many bytes it did. Every byte must be at least the input zero point.
#[inline(always)]
pub(crate) fn scale_by_factor(px: &mut [i8], k: u32, c: Pow2Scale) -> usize {
    let words = px.len() / 4;
    if words == 0 {
        return 0;
    }
    let round = c.lane_round().wrapping_mul(0x0001_0001);
    if c.steps == 0 {
        // A shift of 8: the high byte of each lane, which is at most 254.
        spatial_loop!(
            px,
            words,
            k,
            c,
            round,
            ["uxtb16 {w}, {w}, ror #8", "uxtb16 {o}, {o}, ror #8"]
        );
    } else {
        let shift = 8 - c.steps;
        // The low lane gets the high lane's lowest bits on top: masked off, then both
        // lanes (below 2^15 after a shift of at least 2) saturate to a byte.
        let mask = (0xFFFFu32 >> shift).wrapping_mul(0x0001_0001);
        spatial_loop!(
            px,
            words,
            k,
            c,
            round,
            [
                "lsr {w}, {w}, {sh}",
                "lsr {o}, {o}, {sh}",
                "and {w}, {w}, {mask}",
                "and {o}, {o}, {mask}",
                "usat16 {w}, #8, {w}",
                "usat16 {o}, #8, {o}"
            ]
            sh = in(reg) shift,
            mask = in(reg) mask,
        );
    }
    4 * words
}

/// [`scale_by_factor`] for inputs of either sign: per value `SXTAB` (`x = v - zp_in`,
/// sign-extended to 32 bits, so its high halfword is `-[x < 0]`), one `SMLAD` with the
/// factor word `(k << j, 2^(j+1))` for `x * (k << j) - [x < 0] * 2^(j+1) + bias`, and
/// `SSAT` of that shifted by 8: the arithmetic of [`Pow2ProductRequant::apply`].
///
/// [`Pow2ProductRequant::apply`]: crate::kernels::requant::Pow2ProductRequant
#[inline(always)]
pub(crate) fn scale_by_factor_signed(
    px: &mut [i8],
    k: u32,
    zp_in: i32,
    bias: i32,
    steps: u32,
) -> usize {
    let words = px.len() / 4;
    if words == 0 {
        return 0;
    }
    let factor = (k << steps) | (2 << (steps + 16));
    // SAFETY: reads and writes `4 * words` bytes of `px` (unaligned word access is
    // allowed on Armv7E-M), nothing else but its register operands.
    unsafe {
        asm!(
            "2:",
            "ldr {w}, [{p}]",
            "sxtab {x}, {nz}, {w}",
            "smlad {x}, {x}, {k}, {b}",
            "ssat {out}, #8, {x}, asr #8",
            "sxtab {x}, {nz}, {w}, ror #8",
            "smlad {x}, {x}, {k}, {b}",
            "ssat {x}, #8, {x}, asr #8",
            "bfi {out}, {x}, #8, #8",
            "sxtab {x}, {nz}, {w}, ror #16",
            "smlad {x}, {x}, {k}, {b}",
            "ssat {x}, #8, {x}, asr #8",
            "bfi {out}, {x}, #16, #8",
            "sxtab {x}, {nz}, {w}, ror #24",
            "smlad {x}, {x}, {k}, {b}",
            "ssat {x}, #8, {x}, asr #8",
            "bfi {out}, {x}, #24, #8",
            "str {out}, [{p}], #4",
            "subs {n}, {n}, #1",
            "bne 2b",
            p = inout(reg) px.as_mut_ptr() => _,
            n = inout(reg) words => _,
            nz = in(reg) zp_in.wrapping_neg(),
            k = in(reg) factor,
            b = in(reg) bias,
            w = out(reg) _,
            x = out(reg) _,
            out = out(reg) _,
            options(nostack),
        );
    }
    4 * words
}

/// The four products of a word as unsigned bytes `v + 128` in `{a}`, from the lanes `x`
/// in `{w}` (channels 0, 2) and `{o}` (1, 3) and the factor words `{k0}` and `{k1}`:
/// without saturation (`j = 0`, output zero point -128) the second byte of each
/// `x * k + 129`, packed by lanes.
macro_rules! packed_products {
    () => {
        concat!(
            "smlabb {a}, {w}, {k0}, {rnd}\n",
            "smlatt {w}, {w}, {k0}, {rnd}\n",
            "pkhbt {a}, {a}, {w}, lsl #16\n",
            "smlabb {k0}, {o}, {k1}, {rnd}\n",
            "smlatt {o}, {o}, {k1}, {rnd}\n",
            "pkhbt {o}, {k0}, {o}, lsl #16\n",
            "uxtb16 {a}, {a}, ror #8\n",
            "uxtb16 {o}, {o}, ror #8\n",
            "orr {a}, {a}, {o}, lsl #8\n",
        )
    };
}

/// As [`packed_products!`] for every other form: `USAT` of
/// `(x * (k << j) + 2^7 + 2^j + (zp + 128) * 2^8) >> 8` per value.
macro_rules! saturating_products {
    () => {
        concat!(
            "smlabb {a}, {w}, {k0}, {rnd}\n",
            "usat {a}, #8, {a}, asr #8\n",
            "smlatt {w}, {w}, {k0}, {rnd}\n",
            "usat {w}, #8, {w}, asr #8\n",
            "orr {a}, {a}, {w}, lsl #16\n",
            "smlabb {k0}, {o}, {k1}, {rnd}\n",
            "usat {k0}, #8, {k0}, asr #8\n",
            "smlatt {o}, {o}, {k1}, {rnd}\n",
            "usat {o}, #8, {o}, asr #8\n",
            "orr {o}, {k0}, {o}, lsl #16\n",
            "orr {a}, {a}, {o}, lsl #8\n",
        )
    };
}

/// The factor words of a word with one `LDRD` (the table word-aligned).
macro_rules! load_factors_aligned {
    () => {
        "ldrd {k0}, {k1}, [{pk}], #8\n"
    };
}

/// The factor words of a word with two loads (any alignment).
macro_rules! load_factors {
    () => {
        concat!("ldr {k0}, [{pk}], #4\n", "ldr {k1}, [{pk}], #4\n")
    };
}

/// One word of the channel loops: four values scaled by `$products` (see
/// [`packed_products!`]), summed by `USADA8`, stored as int8 and kept in the running
/// signed byte maximum in `r7`.
macro_rules! channel_word {
    ($load:expr, $products:expr) => {
        concat!(
            "ldr {w}, [{p}]\n",
            "sxtab16 {o}, {nz}, {w}, ror #8\n",
            "sxtab16 {w}, {nz}, {w}\n",
            $load,
            $products,
            "usada8 {s}, {a}, {zero}, {s}\n",
            "eor {a}, {a}, #0x80808080\n",
            "ssub8 {w}, {a}, r7\n",
            "sel r7, {a}, r7\n",
            "str {a}, [{p}], #4\n",
        )
    };
}

/// The rounding constant of the channel loops and whether the packed products apply.
#[inline]
fn channel_form(steps: u32, zp_out: i32) -> (u32, bool) {
    let round = ((1i32 << 7) + (1 << steps) + ((zp_out + 128) << 8)) as u32;
    (round, steps == 0 && zp_out == i32::from(i8::MIN))
}

/// The word loop of one pixel around `$products`. Thirteen live values: the running
/// maximum lives in `r7` (the frame pointer, never an operand), saved on the stack.
macro_rules! channel_loop {
    ($px:expr, $words:expr, $factors:expr, $c:expr, $round:expr, $products:expr) => {{
        let (sum, top): (u32, u32);
        // SAFETY: reads and writes `4 * words` bytes of `px` and reads `8 * words` bytes
        // of `factors`, both checked by the caller (unaligned word access is allowed);
        // writes nothing else but its register operands and the stack slot of `r7`,
        // restored before the end.
        unsafe {
            asm!(
                "push {{r7}}",
                "mov r7, #0x80808080",
                "2:",
                channel_word!(load_factors!(), $products),
                "cmp {p}, {end}",
                "bne 2b",
                "mov {a}, r7",
                "pop {{r7}}",
                p = inout(reg) $px.as_mut_ptr() => _,
                end = in(reg) $px.as_mut_ptr().wrapping_add(4 * $words),
                pk = inout(reg) $factors.as_ptr() => _,
                nz = in(reg) $c.neg_zp2,
                rnd = in(reg) $round,
                zero = in(reg) 0u32,
                s = inout(reg) 0u32 => sum,
                a = out(reg) top,
                w = out(reg) _,
                o = out(reg) _,
                k0 = out(reg) _,
                k1 = out(reg) _,
            );
        }
        (sum, top)
    }};
}

/// Scales the whole words of one pixel in place into the output zero point `zp_out`,
/// channel `i` by its own factor, with the factor words of [`channel_factor_words`] in
/// `factors`. Returns the sum of the results as unsigned bytes `v + 128` and their
/// byte-wise int8 maximum (four lanes), or `None`, touching nothing, when `factors` is
/// shorter than `8 * (px.len() / 4)` bytes. Every byte must be at least the input zero
/// point.
#[inline(always)]
pub(crate) fn scale_by_channel(
    px: &mut [i8],
    factors: &[i8],
    c: Pow2Scale,
    zp_out: i32,
) -> Option<(u32, u32)> {
    let words = px.len() / 4;
    if words == 0 {
        return Some((0, 0x8080_8080));
    }
    if factors.len() < 8 * words {
        return None;
    }
    let (round, packed) = channel_form(c.steps, zp_out);
    Some(if packed {
        channel_loop!(px, words, factors, c, round, packed_products!())
    } else {
        channel_loop!(px, words, factors, c, round, saturating_products!())
    })
}

/// What [`scale_channel_pixels`] needs once per pixel, read from memory so that the loop
/// keeps its registers.
#[repr(C)]
struct PixelEnd {
    /// `C`: the mean's divisor, the pixel's length, half the factor table's.
    c: u32,
    /// The next pixel's pooled pair.
    maps: *mut i8,
    /// One past the last pixel.
    end: *const i8,
    /// `C * (zp + 128)`: the unsigned bytes' sum minus this is `sum(v - zp)` (the signed
    /// loop's mean).
    offset: i32,
    /// The output zero point (the signed loop's mean).
    zp: i32,
}

/// `pixels_loop!`'s stores of one pixel's mean (`{o}`) and max (`{w}`) in the
/// model's order, `{a}` pointing at the pair.
macro_rules! mean_then_max {
    () => {
        concat!("strb {o}, [{a}], #1\n", "strb {w}, [{a}], #1\n")
    };
}

/// See [`mean_then_max!`].
macro_rules! max_then_mean {
    () => {
        concat!("strb {w}, [{a}], #1\n", "strb {o}, [{a}], #1\n")
    };
}

/// The mean of a pixel whose values are never below the zero point: `(sum(v + 128) +
/// C / 2) / C` is the mean of `v - zp` rounded half up, plus `zp + 128`; an int8 in the
/// low byte after the `EOR`. Leaves the [`PixelEnd`] pointer in `{k1}`, `C` in `{k0}`.
macro_rules! unsigned_mean {
    () => {
        concat!(
            "ldr {k1}, [sp]\n",
            "ldr {k0}, [{k1}]\n",
            "add {o}, {s}, {k0}, lsr #1\n",
            "udiv {o}, {o}, {k0}\n",
            "eor {o}, {o}, #0x80\n",
        )
    };
}

/// As [`unsigned_mean!`] for values of either sign: `n = sum(v - zp)`, the mean
/// `sign(n) * ((|n| + C / 2) / C) + zp`, rounded half away from zero.
macro_rules! signed_mean {
    () => {
        concat!(
            "ldr {k1}, [sp]\n",
            "ldr {k0}, [{k1}]\n",
            "ldr {a}, [{k1}, #12]\n",
            "subs {o}, {s}, {a}\n",
            "it mi\n",
            "rsbmi {o}, {o}, #0\n",
            "add {o}, {o}, {k0}, lsr #1\n",
            "udiv {o}, {o}, {k0}\n",
            "it mi\n",
            "rsbmi {o}, {o}, #0\n",
            "ldr {a}, [{k1}, #16]\n",
            "add {o}, {o}, {a}\n",
        )
    };
}

/// Every pixel of the channel scaling with its pooling in one loop, two words (`$word`)
/// per pass; per pixel then the largest byte, the mean (`$mean`, one `UDIV`) and the
/// pair's two stores (`$store`). Thirteen live values: the running maximum lives in `r7`
/// and the [`PixelEnd`] pointer on the stack.
macro_rules! pixels_loop {
    ($data:expr, $c:expr, $factors:expr, $nz:expr, $round:expr, $epilogue:expr, $word:expr, $mean:expr, $store:ident, [$($operands:tt)*]) => {{
        // SAFETY: the caller has checked that `data` holds whole pixels of `c` bytes
        // (`c` a non-zero multiple of eight) up to `epilogue.end`, that `maps` has two
        // bytes for each, and that `factors` is word-aligned with `2 * c` bytes. The loop
        // reads and writes those bytes, reads and writes `epilogue`, and writes its
        // registers and two stack slots, which it pops before the end.
        unsafe {
            asm!(
                "push {{r7}}",
                "str {k1}, [sp, #-4]!",
                "mov r7, #0x80808080",
                "2:",
                $word,
                $word,
                "cmp {p}, {pend}",
                "bne 2b",
                // The largest of the four byte maxima, in the low byte.
                "ror {w}, r7, #16",
                "ssub8 {o}, r7, {w}",
                "sel {w}, r7, {w}",
                "ror {o}, {w}, #8",
                "ssub8 {a}, {w}, {o}",
                "sel {w}, {w}, {o}",
                $mean,
                "ldr {a}, [{k1}, #4]",
                $store!(),
                "str {a}, [{k1}, #4]",
                // The next pixel: the table from its start, a fresh sum and maximum.
                "sub {pk}, {pk}, {k0}, lsl #1",
                "add {pend}, {pend}, {k0}",
                "mov {s}, #0",
                "mov r7, #0x80808080",
                "ldr {a}, [{k1}, #8]",
                "cmp {p}, {a}",
                "bne 2b",
                "add sp, sp, #4",
                "pop {{r7}}",
                p = inout(reg) $data.as_mut_ptr() => _,
                pend = inout(reg) $data.as_mut_ptr().wrapping_add($c) => _,
                pk = inout(reg) $factors.as_ptr() => _,
                nz = in(reg) $nz,
                rnd = in(reg) $round,
                zero = in(reg) 0u32,
                s = inout(reg) 0u32 => _,
                k1 = inout(reg) core::ptr::addr_of_mut!($epilogue) => _,
                w = out(reg) _,
                o = out(reg) _,
                k0 = out(reg) _,
                a = out(reg) _,
                $($operands)*
            );
        }
    }};
}

/// The whole pixels of `data` the one-loop channel scalings take, and what their loop
/// reads per pixel; `None` when they do not apply (`c` not a non-zero multiple of eight,
/// `factors` unaligned or shorter than `2 * c` bytes).
#[inline]
fn whole_pixels<'d>(
    data: &'d mut [i8],
    c: usize,
    factors: &[i8],
    maps: &mut [i8],
    zp_out: i32,
) -> Option<(&'d mut [i8], PixelEnd)> {
    let pixels = (data.len() / c.max(1)).min(maps.len() / 2);
    let aligned = (factors.as_ptr() as usize).is_multiple_of(4);
    if c == 0 || !c.is_multiple_of(8) || c > 1 << 20 || factors.len() < 2 * c || !aligned {
        return None;
    }
    let data = data.get_mut(..pixels * c)?;
    let end = PixelEnd {
        c: c as u32,
        maps: maps.as_mut_ptr(),
        end: data.as_ptr_range().end,
        offset: c as i32 * (zp_out + 128),
        zp: zp_out,
    };
    Some((data, end))
}

/// One word of `pixels_loop!` for inputs of either sign: per value `SXTAB` (`x`
/// sign-extended, so its high halfword is `-[x < 0]`), the factor word
/// `(k << j, 2^(j+1))` packed from the table and `{sc}`, one `SMLAD` for
/// `x * (k << j) - [x < 0] * 2^(j+1) + 2^7 + 2^j + (zp + 128) * 2^8` and `USAT` of that
/// shifted by 8 into the byte `v + 128`; then as in [`channel_word!`].
macro_rules! signed_channel_word {
    () => {
        concat!(
            "ldr {w}, [{p}]\n",
            "ldr {k1}, [{pk}], #4\n",
            "sxtab {o}, {nz}, {w}\n",
            "pkhbt {k0}, {k1}, {sc}\n",
            "smlad {o}, {o}, {k0}, {rnd}\n",
            "usat {a}, #8, {o}, asr #8\n",
            "sxtab {o}, {nz}, {w}, ror #16\n",
            "pkhtb {k0}, {sc}, {k1}, asr #16\n",
            "smlad {o}, {o}, {k0}, {rnd}\n",
            "usat {o}, #8, {o}, asr #8\n",
            "orr {a}, {a}, {o}, lsl #16\n",
            "ldr {k1}, [{pk}], #4\n",
            "sxtab {o}, {nz}, {w}, ror #8\n",
            "pkhbt {k0}, {k1}, {sc}\n",
            "smlad {o}, {o}, {k0}, {rnd}\n",
            "usat {o}, #8, {o}, asr #8\n",
            "orr {a}, {a}, {o}, lsl #8\n",
            "sxtab {o}, {nz}, {w}, ror #24\n",
            "pkhtb {k0}, {sc}, {k1}, asr #16\n",
            "smlad {o}, {o}, {k0}, {rnd}\n",
            "usat {o}, #8, {o}, asr #8\n",
            "orr {a}, {a}, {o}, lsl #24\n",
            "usada8 {s}, {a}, {zero}, {s}\n",
            "eor {a}, {a}, #0x80808080\n",
            "ssub8 {w}, {a}, r7\n",
            "sel r7, {a}, r7\n",
            "str {a}, [{p}], #4\n",
        )
    };
}

/// One block's constants for [`scale_channel_pixels`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelLayer {
    /// Channels: a non-zero multiple of eight.
    pub(crate) c: usize,
    pub(crate) zp_in: i32,
    /// The zero point of `F'`.
    pub(crate) zp_out: i32,
    /// `j` in `0..=6`.
    pub(crate) steps: u32,
    /// `maps` gets `[max, mean]` per pixel rather than `[mean, max]`.
    pub(crate) max_first: bool,
    /// The input can be below its zero point (no ReLU before the block).
    pub(crate) signed: bool,
}

/// The channel scaling of whole pixels with their channel mean and max, as
/// [`scale_by_channel`] plus the pooled pair per pixel, in one loop; for an input that
/// can be below its zero point, with the words of [`signed_channel_word!`] and a mean
/// rounded half away from zero. Applies to a word-aligned `factors` table of `2 * c`
/// bytes (see [`ChannelLayer`] for `c`); returns `false`, touching nothing, otherwise.
#[inline]
pub(crate) fn scale_channel_pixels(
    data: &mut [i8],
    factors: &[i8],
    maps: &mut [i8],
    layer: ChannelLayer,
) -> bool {
    let ChannelLayer {
        c,
        zp_in,
        zp_out,
        steps,
        max_first,
        signed,
    } = layer;
    let Some((data, mut epilogue)) = whole_pixels(data, c, factors, maps, zp_out) else {
        return false;
    };
    if data.is_empty() {
        return true;
    }
    let (round, packed) = channel_form(steps, zp_out);
    if signed {
        let nz = zp_in.wrapping_neg() as u32;
        let sc = 2u32 << (steps + 16);
        macro_rules! run {
            ($store:ident) => {
                pixels_loop!(
                    data,
                    c,
                    factors,
                    nz,
                    round,
                    epilogue,
                    signed_channel_word!(),
                    signed_mean!(),
                    $store,
                    [sc = in(reg) sc,]
                )
            };
        }
        if max_first {
            run!(max_then_mean);
        } else {
            run!(mean_then_max);
        }
        return true;
    }
    let nz = Pow2Scale::new(zp_in, zp_out, steps).neg_zp2;
    macro_rules! run {
        ($store:ident, $products:ident) => {
            pixels_loop!(
                data,
                c,
                factors,
                nz,
                round,
                epilogue,
                channel_word!(load_factors_aligned!(), $products!()),
                unsigned_mean!(),
                $store,
                []
            )
        };
    }
    match (max_first, packed) {
        (true, true) => run!(max_then_mean, packed_products),
        (true, false) => run!(max_then_mean, saturating_products),
        (false, true) => run!(mean_then_max, packed_products),
        (false, false) => run!(mean_then_max, saturating_products),
    }
    true
}

/// Writes the factor words of [`scale_by_channel`] for the attention bytes `att` into
/// `table`: per group of four channels the halfwords `(k0, k2)` and `(k1, k3)`, each
/// `k = (a + 128) << j`. Returns `false`, writing nothing, when `table` is shorter than
/// `2 * (att.len() / 4 * 4)` bytes.
#[inline]
pub(crate) fn channel_factor_words(att: &[i8], steps: u32, table: &mut [i8]) -> bool {
    let groups = att.len() / 4;
    let Some(table) = table.get_mut(..8 * groups) else {
        return false;
    };
    let (att, _) = att.as_chunks::<4>();
    for (dst, a) in table.as_chunks_mut::<8>().0.iter_mut().zip(att) {
        let k = a.map(|a| ((i32::from(a) + 128) << steps) as u16);
        let halves = [k[0], k[2], k[1], k[3]].map(u16::to_le_bytes);
        for (d, b) in dst.iter_mut().zip(halves.as_flattened()) {
            *d = *b as i8;
        }
    }
    true
}
