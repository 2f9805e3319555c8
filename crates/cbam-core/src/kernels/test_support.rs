//! Shared scaffolding of the kernel tests: a seeded PRNG, random quantization and an
//! independent (i128) requantization reference.

use crate::kernels::ChannelQuant;
use crate::le::{i32_bytes, I32Le};
use crate::math::ActRange;
use std::vec::Vec;

/// SplitMix64: small, seedable, good enough to draw test shapes and values.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next_u64() % (i64::from(hi) - i64::from(lo) + 1) as u64) as i32
    }

    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }

    pub fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.i8()).collect()
    }

    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// A multiplier in the blob's normalised range, or occasionally zero.
    pub fn mult(&mut self) -> i32 {
        if self.range(0, 20) == 0 {
            0
        } else {
            self.int(1 << 30, i32::MAX)
        }
    }
}

/// `x * mult * 2^(shift-31)` computed independently of `crate::math` with i128.
pub fn requant_reference(x: i64, mult: i32, shift: i32) -> i64 {
    let x = i128::from(x.clamp(i64::from(i32::MIN), i64::from(i32::MAX)));
    let left = shift.max(0) as u32;
    let right = (-shift).max(0) as u32;
    let shifted = (x << left).clamp(i128::from(i32::MIN), i128::from(i32::MAX));
    let high = ((shifted * i128::from(mult) + (1 << 30)).div_euclid(1 << 31))
        .clamp(i128::from(i32::MIN), i128::from(i32::MAX));
    let d = 1i128 << right;
    let mag = (high.abs() * 2 + d) / (2 * d);
    (if high < 0 { -mag } else { mag }) as i64
}

/// `clamp(requant(acc) + zp, lo, hi)` as an int8.
pub fn finish_reference(acc: i64, mult: i32, shift: i32, zp: i32, lo: i32, hi: i32) -> i8 {
    (requant_reference(acc, mult, shift) + i64::from(zp)).clamp(i64::from(lo), i64::from(hi)) as i8
}

/// Random per-channel quantization, owned, for building a [`ChannelQuant`].
#[derive(Clone, Debug)]
pub struct QuantData {
    pub bias: Vec<i32>,
    pub mult: Vec<i32>,
    pub shift: Vec<i32>,
    pub in_zp: i32,
    pub out_zp: i32,
    pub act: ActRange,
}

pub struct QuantBytes {
    bias: Vec<u8>,
    mult: Vec<u8>,
    shift: Vec<u8>,
}

impl QuantData {
    pub fn random(rng: &mut Rng, channels: usize) -> Self {
        let act = if rng.bool() {
            ActRange::FULL
        } else {
            let lo = rng.int(-128, 20);
            ActRange::from_words(lo, rng.int(lo, 127))
        };
        Self {
            bias: (0..channels).map(|_| rng.int(-20_000, 20_000)).collect(),
            mult: (0..channels).map(|_| rng.mult()).collect(),
            shift: (0..channels).map(|_| rng.int(-14, 1)).collect(),
            in_zp: rng.int(-128, 127),
            out_zp: rng.int(-128, 127),
            act,
        }
    }

    pub fn bytes(&self) -> QuantBytes {
        QuantBytes {
            bias: i32_bytes(&self.bias),
            mult: i32_bytes(&self.mult),
            shift: i32_bytes(&self.shift),
        }
    }

    pub fn channel_quant<'a>(&self, b: &'a QuantBytes) -> ChannelQuant<'a> {
        ChannelQuant {
            in_zp: self.in_zp,
            out_zp: self.out_zp,
            act: self.act,
            bias: I32Le::new(&b.bias),
            mult: I32Le::new(&b.mult),
            shift: I32Le::new(&b.shift),
        }
    }

    /// The reference tail for output channel `o`; `acc` already includes the bias.
    pub fn finish(&self, o: usize, acc: i64) -> i8 {
        finish_reference(
            acc,
            self.mult[o],
            self.shift[o],
            self.out_zp,
            self.act.min.into(),
            self.act.max.into(),
        )
    }
}
