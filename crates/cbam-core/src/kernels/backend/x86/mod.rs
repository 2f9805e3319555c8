//! x86_64: AVX2, chosen at run time.
//!
//! The `cbam` binary is built for plain x86_64 (SSE2 only), so a compile-time
//! `cfg(target_feature = "avx2")` would never be set in the binary users run, and building
//! with `-C target-cpu=native` would make one that fails on older machines. So the
//! feature is probed once with CPUID/XGETBV (both usable without `std`) and the answer
//! cached in an atomic; a machine without AVX2 runs the portable kernels, which LLVM
//! already vectorises with SSE2.
//!
//! Bit-exactness: the dot products are `vpmaddwd` of `x + offset` (fits `i16`, never
//! `-32768`) by sign-extended weights, so each pair sum fits `i32` and every add wraps
//! like the portable `wrapping_add`; the requantization reproduces
//! [`crate::kernels::requant::OutputRequant::scale`] lane by lane
//! (see [`requant::requant_lanes`]).

#![allow(unsafe_code)]

mod conv;
mod depthwise;
mod dot;
mod elementwise;
mod gemm;
mod requant;
use super::simd::isa::{AddLanes, ChannelBlock, Isa, SmallWeights, TensorRequant};
use super::simd::Probed;
use core::arch::x86_64::*;
use dot::Vnni;

/// Proof that the CPU has AVX2 (and so SSE4.1): only [`Avx2::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

static AVX2: Probed = Probed::new();

impl Avx2 {
    /// `Some` on a CPU (and OS) with AVX2; probed on the first call only.
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        AVX2.get(probe).then_some(Self(()))
    }
}

/// CPUID says AVX2 and SSE4.1, and the OS saves the YMM registers (XCR0 bits 1 and 2).
fn probe() -> bool {
    const SSE41: u32 = 1 << 19;
    const OSXSAVE: u32 = 1 << 27;
    const AVX: u32 = 1 << 28;
    const AVX2_BIT: u32 = 1 << 5;
    if __cpuid(0).eax < 7 {
        return false;
    }
    let leaf1 = __cpuid(1).ecx;
    if leaf1 & (SSE41 | OSXSAVE | AVX) != SSE41 | OSXSAVE | AVX {
        return false;
    }
    // SAFETY: OSXSAVE is set, so XGETBV is available and XCR0 readable.
    let xcr0 = unsafe { read_xcr0() };
    xcr0 & 0b110 == 0b110 && __cpuid_count(7, 0).ebx & AVX2_BIT != 0
}

#[target_feature(enable = "xsave")]
unsafe fn read_xcr0() -> u64 {
    _xgetbv(0)
}

super::simd::isa::forward_isa!(
    Avx2,
    detect: Avx2::detect(),
    dot: (Vnni, Vnni::detect()),
    "a value of Avx2 exists only on a CPU whose CPUID reported AVX2"
);

#[inline]
#[target_feature(enable = "avx2")]
fn load16(bytes: &[i8; 16]) -> __m128i {
    // SAFETY: reads exactly the 16 bytes of the array (unaligned loads are allowed).
    unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn load_lanes(words: &[i32], at: usize) -> __m128i {
    let lanes = words
        .get(at..)
        .and_then(<[i32]>::first_chunk::<4>)
        .copied()
        .unwrap_or_default();
    // SAFETY: reads exactly the 16 bytes of the local array.
    unsafe { _mm_loadu_si128(lanes.as_ptr().cast()) }
}

/// Eight lanes of `words` from `at`, zero past its end.
#[inline]
#[target_feature(enable = "avx2")]
fn load_lanes8(words: &[i32], at: usize) -> __m256i {
    match words.get(at..).and_then(<[i32]>::first_chunk::<8>) {
        // SAFETY: reads exactly the 32 bytes of the chunk.
        Some(lanes) => unsafe { _mm256_loadu_si256(lanes.as_ptr().cast()) },
        None => {
            let mut lanes = [0i32; 8];
            for (l, &w) in lanes.iter_mut().zip(words.get(at..).unwrap_or_default()) {
                *l = w;
            }
            // SAFETY: reads exactly the 32 bytes of the local array.
            unsafe { _mm256_loadu_si256(lanes.as_ptr().cast()) }
        }
    }
}

/// The eight int8-range lanes of `v` as bytes.
#[inline]
#[target_feature(enable = "avx2")]
fn pack8(v: __m256i) -> [i8; 8] {
    // Packing works within each 128-bit half: lanes 0-3 end in the low half's first four
    // bytes, lanes 4-7 in the high half's.
    let packed = _mm256_packs_epi16(_mm256_packs_epi32(v, v), _mm256_setzero_si256());
    let lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(packed)).to_le_bytes();
    let hi = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(packed)).to_le_bytes();
    [
        lo[0] as i8,
        lo[1] as i8,
        lo[2] as i8,
        lo[3] as i8,
        hi[0] as i8,
        hi[1] as i8,
        hi[2] as i8,
        hi[3] as i8,
    ]
}

/// Eight int8 values sign-extended to `i32` lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn load8(bytes: &[i8; 8]) -> __m256i {
    // SAFETY: reads exactly the 8 bytes of the array.
    _mm256_cvtepi8_epi32(unsafe { _mm_loadl_epi64(bytes.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx2")]
fn store8(dst: &mut [i8; 8], v: [i8; 8]) {
    *dst = v;
}

/// AVX2 with its dot-product extension left out, so that the pair products are tested
/// on a CPU that has VNNI too.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2Pairs(());

#[cfg(test)]
super::simd::isa::forward_isa!(
    Avx2Pairs,
    detect: Avx2::detect().map(|_| Avx2Pairs(())),
    dot: (super::simd::isa::NoDot, None),
    "a value of Avx2Pairs exists only on a CPU whose CPUID reported AVX2"
);

#[cfg(test)]
mod tests {
    use super::super::simd::Simd;
    use super::{Avx2, Vnni};

    crate::kernels::backend::suite::backend_suite!(Simd<Avx2>, Avx2::detect().is_some());
    crate::kernels::backend::simd::tests::isa_tests!(Avx2);

    /// The suite above tests the VNNI matrix product only where the CPU has it.
    #[test]
    fn vnni_packs_like_portable() {
        match Vnni::detect() {
            Some(vnni) => crate::kernels::backend::simd::tests::dot_pack_matches_portable(vnni),
            None => std::eprintln!("AVX-512 VNNI absent: its kernels are not tested here"),
        }
    }
}

#[cfg(test)]
mod pair_tests {
    use super::super::simd::Simd;
    use super::Avx2Pairs;
    use crate::kernels::backend::simd::Isa;

    crate::kernels::backend::suite::backend_suite!(Simd<Avx2Pairs>, Avx2Pairs::detect().is_some());
    crate::kernels::backend::simd::tests::isa_tests!(Avx2Pairs);
}
