//! Host SIMD kernels (x86_64 AVX2, aarch64 NEON) for the Raspberry Pi and the PC: the
//! same bits as the portable kernels, several times faster.
//!
//! The hot kernels call in here first (one `if` at their top) and fall back to the
//! portable code when the entry point answers `false`: on an x86_64 CPU without AVX2, or
//! for parameters outside what the fast path is exact for.
//!
//! - [`mod@backend`]: the [`backend::Backend`] trait every architecture implements and the
//!   constants it works from; [`x86`] (AVX2, detected at run time) and `neon` implement it.
//! - [`conv`], [`cbam`], [`add`]: the loops and checks around the arithmetic, written once.
//! - [`pool`]: MAX_POOL2D in plain Rust with the channels innermost, which the compiler
//!   vectorises by itself.
//!
//! The randomized tests in `tests.rs` compare every entry point with the portable kernel
//! on both architectures (aarch64 under qemu-user).

// An aarch64 build with NEON switched off (`-C target-feature=-neon`) has no backend: the
// entry points then answer `false` and the portable kernels run.
#[cfg(any(target_arch = "x86_64", target_feature = "neon"))]
mod add;
#[cfg(any(target_arch = "x86_64", target_feature = "neon"))]
mod backend;
#[cfg(any(target_arch = "x86_64", target_feature = "neon"))]
mod cbam;
#[cfg(any(target_arch = "x86_64", target_feature = "neon"))]
mod conv;
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon;
mod pool;
#[cfg(all(test, any(target_arch = "x86_64", target_feature = "neon")))]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

use super::{AddParams, CbamParams, Conv2dParams, PoolParams, Shape};

/// The backend of this machine, if it has one.
#[cfg(target_arch = "x86_64")]
fn backend() -> Option<x86::Avx2> {
    x86::Avx2::detect()
}

/// The backend of this machine (NEON is part of the aarch64 baseline).
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
fn backend() -> Option<neon::Neon> {
    Some(neon::Neon)
}

/// CONV2D (any geometry) over slices already checked against the shapes; `false` when the
/// portable kernel must run instead.
#[inline]
pub(crate) fn conv2d(
    p: &Conv2dParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> bool {
    #[cfg(any(target_arch = "x86_64", target_feature = "neon"))]
    if let Some(b) = backend() {
        return conv::conv2d(b, p, in_shape, input, out_shape, output);
    }
    #[cfg(not(any(target_arch = "x86_64", target_feature = "neon")))]
    let _ = (p, in_shape, input, out_shape, output);
    false
}

/// Step 1 of the fused CBAM op: per-channel mean and maximum; `false` when the portable
/// code must run.
#[inline]
pub(crate) fn cbam_pool_channels(
    p: &CbamParams,
    data: &[i8],
    pa: &mut [i8],
    pm: &mut [i8],
) -> bool {
    #[cfg(any(target_arch = "x86_64", target_feature = "neon"))]
    if let Some(b) = backend() {
        return cbam::pool_channels(b, p, data, pa, pm);
    }
    #[cfg(not(any(target_arch = "x86_64", target_feature = "neon")))]
    let _ = (p, data, pa, pm);
    false
}

/// Steps 4b and 5 of the fused CBAM op: `F' = F * a[c]` and its per-pixel mean and
/// maximum; `false` when the portable code must run.
#[inline]
pub(crate) fn cbam_scale_channels(
    p: &CbamParams,
    data: &mut [i8],
    att: &[i8],
    maps: &mut [i8],
) -> bool {
    #[cfg(any(target_arch = "x86_64", target_feature = "neon"))]
    if let Some(b) = backend() {
        return cbam::scale_channels_and_pool(b, p, data, att, maps);
    }
    #[cfg(not(any(target_arch = "x86_64", target_feature = "neon")))]
    let _ = (p, data, att, maps);
    false
}

/// Step 7b of the fused CBAM op: `F'' = F' * as[y, x]`; `false` when the portable code
/// must run.
#[inline]
pub(crate) fn cbam_scale_pixels(p: &CbamParams, data: &mut [i8], att: &[i8]) -> bool {
    #[cfg(any(target_arch = "x86_64", target_feature = "neon"))]
    if let Some(b) = backend() {
        return cbam::scale_pixels(b, p, data, att);
    }
    #[cfg(not(any(target_arch = "x86_64", target_feature = "neon")))]
    let _ = (p, data, att);
    false
}

/// Dense ADD over slices already checked against the shape; `false` when the portable
/// kernel must run.
#[inline]
pub(crate) fn add_dense(p: &AddParams, in1: &[i8], in2: &[i8], out: &mut [i8]) -> bool {
    #[cfg(any(target_arch = "x86_64", target_feature = "neon"))]
    if let Some(b) = backend() {
        return add::add_dense(b, p, in1, in2, out);
    }
    #[cfg(not(any(target_arch = "x86_64", target_feature = "neon")))]
    let _ = (p, in1, in2, out);
    false
}

/// MAX_POOL2D over slices already checked against the shapes; `false` when the portable
/// kernel must run. Plain Rust that the compiler vectorises, so on every host.
#[inline]
pub(crate) fn max_pool(
    p: &PoolParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> bool {
    pool::max_pool(p, in_shape, input, out_shape, output)
}
