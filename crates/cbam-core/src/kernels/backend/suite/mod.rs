//! The suite every backend runs: each entry point of [`Backend`] and each kernel built on
//! them, on random shapes and parameters (tails, odd channel counts, padding, dilation,
//! several channel blocks, misaligned constants, extreme multipliers, shifts and zero
//! points), against the portable kernels ([`Portable`]) and the independent references of
//! [`crate::kernels::test_support`], bit for bit.
//!
//! No allocation: the checks work in memory the caller gives, so the same suite runs on the
//! host (`backend_suite!`, instantiated by each host backend) and on the device
//! (`firmware/kernel-tests` runs it against the Cortex-M4 backend under QEMU). A check
//! panics with the case at the first difference and returns how many outputs it compared.

mod cbam;
mod ops;
mod primitives;

use super::{Backend, Portable};
use crate::kernels::test_support::Rng;
use core::fmt::Debug;

/// Bytes of working memory [`run`] needs: the largest check's buffers.
pub(crate) const MEMORY: usize = max(cbam::MEMORY, max(ops::MEMORY, primitives::MEMORY));

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Runs every check against `B`, calling `report(check, outputs compared)` after each.
pub(crate) fn run<B: Backend>(
    rng: &mut Rng,
    memory: &mut [i8],
    mut report: impl FnMut(&'static str, u32),
) {
    macro_rules! checks {
        ($($module:ident::$check:ident),+ $(,)?) => {$(
            let checked = $module::$check::<B>(rng, Memory::new(&mut *memory));
            report(stringify!($check), checked);
        )+};
    }
    checks!(
        primitives::dot_products,
        primitives::lane_products,
        primitives::output_stages,
        ops::conv2d,
        ops::depthwise,
        ops::fully_connected,
        ops::add,
        ops::pools,
        ops::channel_pool,
        cbam::pool_channels,
        cbam::scalings,
        cbam::spatial_attention,
    );
}

/// `#[test]`: the whole suite against the backend `$backend`, which the machine must have
/// (`$present`), so that the test cannot pass by testing nothing.
#[cfg(test)]
macro_rules! backend_suite {
    ($backend:ty, $present:expr) => {
        #[test]
        fn matches_the_portable_kernels() {
            use $crate::kernels::backend::suite;
            assert!($present, "this machine lacks the backend under test");
            let mut memory = std::vec![0i8; suite::MEMORY];
            let mut rng = $crate::kernels::test_support::Rng::new(0x5017E);
            suite::run::<$backend>(&mut rng, &mut memory, |check, outputs| {
                assert!(outputs > 0, "{check} compared nothing");
            });
        }
    };
}
#[cfg(test)]
pub(crate) use backend_suite;

/// The caller's working memory, handed out to one check's buffers.
pub(super) struct Memory<'m>(&'m mut [i8]);

impl<'m> Memory<'m> {
    fn new(memory: &'m mut [i8]) -> Self {
        Self(memory)
    }

    /// The next `n` bytes, zeroed.
    fn take(&mut self, n: usize) -> &'m mut [i8] {
        let rest = core::mem::take(&mut self.0);
        let short = n.saturating_sub(rest.len());
        assert!(short == 0, "the suite's memory is {short} bytes short");
        let (taken, rest) = rest.split_at_mut(n);
        self.0 = rest;
        taken.fill(0);
        taken
    }

    /// The next `n` bytes from a multiple of four bytes, zeroed.
    fn take_aligned(&mut self, n: usize) -> &'m mut [i8] {
        let skip = self.0.as_ptr().align_offset(4);
        self.take(skip);
        self.take(n)
    }
}

/// Panics at the first element where `got` (the backend's) and `want` differ, with the
/// `case`; returns how many elements were compared.
fn same<T: PartialEq + Debug>(what: &str, got: &[T], want: &[T], case: impl Debug) -> u32 {
    assert_eq!(got.len(), want.len(), "{what}: lengths ({case:?})");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: element {i} is {:?}, expected {:?} ({case:?})",
            got[i], want[i]
        );
    }
    got.len() as u32
}

/// An input offset: mostly an int8 zero point's, else anywhere in the packed backends'
/// range, far outside it, or at its edges.
fn offset(rng: &mut Rng) -> i32 {
    match rng.range(0, 4) {
        0 => rng.int(-128, 127),
        1 => rng.int(-32_639, 32_639),
        2 => rng.int(i32::MIN / 2, i32::MAX / 2),
        _ => rng.pick(&[-32_639, 32_639, -32_640, 32_640, 128, -127]),
    }
}
