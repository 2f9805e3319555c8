//! Where a micro-kernel finds each output pixel's window, a word at a time (a word is four
//! bytes of taps: a pair of `i16`, or a quad of bytes): windows gathered one after another,
//! or windows read where they lie in a copy of the input. Each instruction set's tiles take
//! either through [`Words`], so one tile serves both.

#![allow(unsafe_code)]

use core::mem::size_of;

/// The windows of a run of pixels, word by word.
pub(crate) trait Words<T: Copy>: Copy {
    /// Words per window.
    fn words(&self) -> usize;

    /// The windows from pixel `p` on.
    fn from(self, p: usize) -> Self;

    /// Whether pixels `0..pixels` have every word inside the taps.
    fn covers(&self, pixels: usize) -> bool;

    /// Whether words `j..j + n` of each window lie one after another (`j + n <= words()`),
    /// so that one load reads them all.
    // Only the NEON pair tile loads several words at once.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    fn contiguous(&self, j: usize, n: usize) -> bool;

    /// Where word `j` of pixel `p` starts.
    ///
    /// # Safety
    /// [`Words::covers`] holds for more than `p` pixels, and `j < words()`.
    unsafe fn at(&self, p: usize, j: usize) -> *const T;

    /// Word `j` of pixel `p` as an `i32`, whatever its taps are.
    ///
    /// # Safety
    /// As [`Words::at`].
    #[inline(always)]
    unsafe fn word(&self, p: usize, j: usize) -> i32 {
        // SAFETY: the caller's promise: the word's four bytes lie inside the taps; an
        // unaligned read.
        unsafe { self.at(p, j).cast::<i32>().read_unaligned() }
    }
}

/// Taps of `T` in a four-byte word.
const fn taps<T>() -> usize {
    4 / size_of::<T>()
}

/// Gathered windows, `stride` taps apart.
#[derive(Clone, Copy)]
pub(crate) struct Gathered<'a, T> {
    pub windows: &'a [T],
    pub stride: usize,
}

impl<T: Copy> Words<T> for Gathered<'_, T> {
    #[inline(always)]
    fn words(&self) -> usize {
        self.stride / taps::<T>()
    }

    #[inline(always)]
    fn from(self, p: usize) -> Self {
        let windows = self.windows.get(p * self.stride..).unwrap_or_default();
        Self { windows, ..self }
    }

    #[inline(always)]
    fn covers(&self, pixels: usize) -> bool {
        self.stride.is_multiple_of(taps::<T>()) && self.windows.len() >= pixels * self.stride
    }

    #[inline(always)]
    fn contiguous(&self, _: usize, _: usize) -> bool {
        true
    }

    #[inline(always)]
    unsafe fn at(&self, p: usize, j: usize) -> *const T {
        // SAFETY: `(j + 1) * taps <= stride` and `(p + 1) * stride <= windows.len()` (the
        // caller's promise).
        unsafe { self.windows.as_ptr().add(p * self.stride + taps::<T>() * j) }
    }
}

/// Windows read where they lie: word `j` of pixel `p` at `bases[p] + offs[j]`.
#[derive(Clone, Copy)]
pub(crate) struct InPlace<'a, T> {
    src: &'a [T],
    bases: &'a [usize],
    offs: &'a [usize],
}

impl<'a, T> InPlace<'a, T> {
    /// The windows of `bases.len()` pixels, or `None` if a word of one would leave `src`.
    #[inline]
    pub(crate) fn new(src: &'a [T], bases: &'a [usize], offs: &'a [usize]) -> Option<Self> {
        let reach = offs.iter().max().map_or(0, |&o| o + taps::<T>());
        let inside = |&b: &usize| b.checked_add(reach).is_some_and(|r| r <= src.len());
        bases
            .iter()
            .all(inside)
            .then_some(Self { src, bases, offs })
    }

    /// Pixels in the run.
    pub(crate) fn pixels(&self) -> usize {
        self.bases.len()
    }
}

impl<T: Copy> Words<T> for InPlace<'_, T> {
    #[inline(always)]
    fn words(&self) -> usize {
        self.offs.len()
    }

    #[inline(always)]
    fn from(self, p: usize) -> Self {
        let bases = self.bases.get(p..).unwrap_or_default();
        Self { bases, ..self }
    }

    /// [`InPlace::new`] checked every base against the farthest offset.
    #[inline(always)]
    fn covers(&self, pixels: usize) -> bool {
        self.bases.len() >= pixels
    }

    #[inline(always)]
    fn contiguous(&self, j: usize, n: usize) -> bool {
        match (
            self.offs.get(j),
            n.checked_sub(1).and_then(|k| self.offs.get(j + k)),
        ) {
            (Some(&a), Some(&b)) => b == a + (n - 1) * taps::<T>(),
            _ => false,
        }
    }

    #[inline(always)]
    unsafe fn at(&self, p: usize, j: usize) -> *const T {
        // SAFETY: `p < bases.len()` and `j < offs.len()` (the caller's promise), and every
        // base plus every offset plus a word is at most `src.len()` (`InPlace::new`).
        unsafe {
            let at = *self.bases.get_unchecked(p) + *self.offs.get_unchecked(j);
            self.src.as_ptr().add(at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Gathered, InPlace, Words};

    #[test]
    fn words_are_where_their_sources_say() {
        let src: [i16; 12] = core::array::from_fn(|i| i as i16);
        let g = Gathered {
            windows: &src[..],
            stride: 4,
        };
        assert_eq!((g.words(), g.covers(3), g.covers(4)), (2, true, false));
        // SAFETY: pixel 2 of 3 covered, word 1 of 2.
        assert_eq!(unsafe { *g.from(1).at(1, 1) }, 10);
        let (bases, offs) = ([0, 4], [0, 2, 6]);
        let p = InPlace::new(&src[..], &bases, &offs).unwrap();
        assert!(p.contiguous(0, 2) && !p.contiguous(1, 2) && !p.contiguous(2, 2));
        // SAFETY: pixel 1 of 2, word 2 of 3, inside (checked by `new`).
        assert_eq!(unsafe { *p.at(1, 2) }, 10);
        assert!(InPlace::new(&src[..], &[0, 4], &[0, 6]).is_some());
        assert!(InPlace::new(&src[..], &[0, 5], &[0, 6]).is_none());
        assert!(InPlace::new(&src[..], &[usize::MAX], &[0]).is_none());
    }
}
