//! Stack buffers initialised only as far as a call uses them. The convolutions size their
//! buffers for the largest layer they take (tens of KiB), and a plain array would be
//! zeroed whole on every call: for a small layer, most of the call's time.

#![allow(unsafe_code)]

use core::mem::MaybeUninit;

/// Runs `f` on the first `len` elements (at most `N`) of a stack buffer of `N`, each set to
/// `T::default()`; the rest of the buffer is never written or read.
#[inline(always)]
pub(crate) fn with_prefix<T: Copy + Default, const N: usize, R>(
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    with_filled::<T, N, R>(len, T::default(), f)
}

/// [`with_prefix`] with each element set to `value`.
#[inline(always)]
pub(crate) fn with_filled<T: Copy, const N: usize, R>(
    len: usize,
    value: T,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let mut buffer = [const { MaybeUninit::<T>::uninit() }; N];
    let prefix = buffer.get_mut(..len.min(N)).unwrap_or_default();
    for slot in prefix.iter_mut() {
        slot.write(value);
    }
    // SAFETY: every element of `prefix` was just initialised, and `MaybeUninit<T>` has the
    // size and alignment of `T`.
    let init =
        unsafe { core::slice::from_raw_parts_mut(prefix.as_mut_ptr().cast::<T>(), prefix.len()) };
    f(init)
}

#[cfg(test)]
mod tests {
    use super::{with_filled, with_prefix};

    #[test]
    fn hands_out_the_prefix_zeroed() {
        let got = with_prefix::<i32, 64, _>(10, |b| {
            let zero = b.iter().all(|&x| x == 0);
            b.fill(7);
            (b.len(), zero)
        });
        assert_eq!(got, (10, true));
        assert_eq!(with_prefix::<u8, 8, _>(100, |b| b.len()), 8);
        assert!(with_filled::<i8, 16, _>(5, -3, |b| b == [-3; 5]));
    }
}
