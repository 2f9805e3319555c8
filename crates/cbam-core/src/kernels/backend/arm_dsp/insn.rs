//! One DSP instruction (or one `SSUB8`/`SEL` pair) per function, so the compiler still
//! allocates the registers.
//!
//! These instructions only read their register operands and write their destination (the
//! multiply-accumulates may also set the sticky Q flag, which nothing reads; `SSUB8` sets
//! the GE flags that its `SEL` reads), so they are `pure, nomem, nostack`.

use core::arch::asm;

macro_rules! unary {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        #[inline(always)]
        pub(super) fn $name(x: u32) -> u32 {
            let r: u32;
            // SAFETY: a register-only instruction of the Armv7E-M DSP extension, which
            // the build script enables only on targets that have it.
            unsafe {
                asm!($insn, r = out(reg) r, x = in(reg) x,
                    options(pure, nomem, nostack, preserves_flags));
            }
            r
        }
    };
}

macro_rules! binary {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        #[inline(always)]
        pub(super) fn $name(a: u32, x: u32) -> u32 {
            let r: u32;
            // SAFETY: as for `unary!`.
            unsafe {
                asm!($insn, r = out(reg) r, a = in(reg) a, x = in(reg) x,
                    options(pure, nomem, nostack, preserves_flags));
            }
            r
        }
    };
}

macro_rules! mac {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        #[inline(always)]
        pub(super) fn $name(a: u32, b: u32, acc: i32) -> i32 {
            let r: i32;
            // SAFETY: as for `unary!`; the Q flag it may set is not a condition flag.
            unsafe {
                asm!($insn, r = out(reg) r, a = in(reg) a, b = in(reg) b, acc = in(reg) acc,
                    options(pure, nomem, nostack));
            }
            r
        }
    };
}

unary!(
    /// Sign-extends bytes 0 and 2 into two 16-bit lanes.
    sxtb16, "sxtb16 {r}, {x}"
);
unary!(
    /// Sign-extends bytes 1 and 3 into two 16-bit lanes.
    sxtb16_ror8, "sxtb16 {r}, {x}, ror #8"
);
binary!(
    /// Lane-wise `a + sext(x bytes 0, 2)`, modulo 2^16.
    sxtab16, "sxtab16 {r}, {a}, {x}"
);
binary!(
    /// Lane-wise `a + sext(x bytes 1, 3)`, modulo 2^16.
    sxtab16_ror8, "sxtab16 {r}, {a}, {x}, ror #8"
);
mac!(
    /// `acc + a.lo * b.lo + a.hi * b.hi`, wrapping.
    smlad, "smlad {r}, {a}, {b}, {acc}"
);
mac!(
    /// `acc + a.lo * b.lo`, wrapping.
    smlabb, "smlabb {r}, {a}, {b}, {acc}"
);
mac!(
    /// `acc + a.hi * b.hi`, wrapping.
    smlatt, "smlatt {r}, {a}, {b}, {acc}"
);

/// `(a * b + 2^31) >> 32`: the rounded most significant word of the product.
#[inline(always)]
pub(super) fn smmulr(a: i32, b: i32) -> i32 {
    let r: i32;
    // SAFETY: as for `unary!`.
    unsafe {
        asm!("smmulr {r}, {a}, {b}", r = out(reg) r, a = in(reg) a, b = in(reg) b,
            options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// `(ra * 2^32 + a * b + 2^31) >> 32`: the rounded most significant word of the product
/// plus `ra`, wrapping.
#[inline(always)]
pub(super) fn smmlar(a: i32, b: i32, ra: i32) -> i32 {
    let r: i32;
    // SAFETY: as for `unary!`.
    unsafe {
        asm!("smmlar {r}, {a}, {b}, {ra}", r = out(reg) r, a = in(reg) a, b = in(reg) b,
            ra = in(reg) ra, options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// Byte-wise `min(max(v, lo), hi)` of four signed bytes (in that order, so an inverted
/// range gives `hi`, like [`crate::math::ActRange::apply`]).
#[inline(always)]
pub(super) fn clamp_bytes(v: u32, lo: u32, hi: u32) -> u32 {
    let r: u32;
    // SAFETY: register-only DSP instructions; `SSUB8` sets the GE flags that `SEL` reads
    // (the flags are declared clobbered by leaving out `preserves_flags`).
    unsafe {
        asm!(
            "ssub8 {t}, {v}, {lo}",
            "sel {v}, {v}, {lo}",
            "ssub8 {t}, {hi}, {v}",
            "sel {v}, {v}, {hi}",
            v = inout(reg) v => r,
            lo = in(reg) lo,
            hi = in(reg) hi,
            t = out(reg) _,
            options(pure, nomem, nostack),
        );
    }
    r
}

/// Byte-wise signed maximum of four int8 lanes.
#[inline(always)]
pub(super) fn max_bytes(a: u32, b: u32) -> u32 {
    let r: u32;
    // SAFETY: register-only DSP instructions; `SSUB8` sets the GE flags that `SEL` reads
    // (the flags are declared clobbered by leaving out `preserves_flags`).
    unsafe {
        asm!(
            "ssub8 {t}, {a}, {b}",
            "sel {r}, {a}, {b}",
            r = out(reg) r,
            a = in(reg) a,
            b = in(reg) b,
            t = out(reg) _,
            options(pure, nomem, nostack),
        );
    }
    r
}
