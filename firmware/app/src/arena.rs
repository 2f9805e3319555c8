//! The static inference arena, sized at build time from the blob header.

use core::cell::UnsafeCell;

/// Arena storage aligned for the kernels' word loads.
#[repr(C, align(16))]
struct Aligned<const N: usize>([u8; N]);

/// A `static` byte buffer handed out once as `&'static mut [u8]`.
///
/// Nothing but the bytes lives in it, so the symbol's size in the ELF is the
/// buffer's size (rounded up to 16; the build rounds `ARENA_SIZE` to match),
/// which is what `cbam flash` reads as the firmware's arena.
pub struct StaticArena<const N: usize>(UnsafeCell<Aligned<N>>);

// SAFETY: the bytes are reachable only through `take`, whose contract allows
// one reference for the program's lifetime.
unsafe impl<const N: usize> Sync for StaticArena<N> {}

impl<const N: usize> StaticArena<N> {
    pub const fn new() -> Self {
        Self(UnsafeCell::new(Aligned([0; N])))
    }

    /// The arena.
    ///
    /// # Safety
    /// Call once for the program's lifetime (from the firmware's entry point,
    /// which runs once): a second call would alias the first reference.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn take(&'static self) -> &'static mut [u8] {
        // SAFETY: the caller guarantees this is the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.0.get().cast::<u8>(), N) }
    }
}

impl<const N: usize> Default for StaticArena<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ARENA: StaticArena<64> = StaticArena::new();

    #[test]
    fn the_arena_is_aligned_and_as_large_as_its_symbol() {
        // SAFETY: the only call for ARENA in this test binary.
        let arena = unsafe { ARENA.take() };
        assert_eq!((arena.len(), arena.as_ptr() as usize % 16), (64, 0));
        assert_eq!(core::mem::size_of::<StaticArena<64>>(), 64);
    }
}
