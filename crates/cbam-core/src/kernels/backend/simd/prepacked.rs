//! A layer's weights packed ahead of time, once per model rather than once per call: the
//! panels and accumulator starts of each channel block, as the matrix product packs them
//! on the stack ([`super::gemm`]). A call reads them only when their header matches the
//! packing it would do itself, so a stale or foreign buffer costs speed, never bits.
//!
//! Layout (`i32` words): `[format, words, block_c, out_c]`, then each channel block of `n`
//! channels in order: its `n` starts, then its `n.div_ceil(PANEL)` panels of
//! `words * PANEL` words.

use super::gemm::PANEL;
use super::isa::BLOCK;

/// Words before a layer's blocks.
const HEADER: usize = 4;

/// How a layer's weights are packed: the product's form, words per channel and channels
/// per block, for `out_c` channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub format: Format,
    pub words: usize,
    pub block_c: usize,
    pub out_c: usize,
}

/// The packings that differ in their words: tap pairs and tap quads, each of whole
/// windows or of window rows padded to whole words (read in place).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Pairs = 1,
    Quads = 2,
    InPlacePairs = 3,
    InPlaceQuads = 4,
}

impl Layout {
    fn header(self) -> Option<[i32; HEADER]> {
        let word = |x: usize| i32::try_from(x).ok();
        Some([
            self.format as i32,
            word(self.words)?,
            word(self.block_c)?,
            word(self.out_c)?,
        ])
    }

    /// Words of one block of `n` channels.
    fn block_len(self, n: usize) -> usize {
        n + n.div_ceil(PANEL) * self.words * PANEL
    }

    /// Words of the whole layer.
    pub(crate) fn len(self) -> usize {
        let full = self.out_c / self.block_c.max(1);
        let rest = self.out_c % self.block_c.max(1);
        HEADER + full * self.block_len(self.block_c) + self.block_len(rest)
    }

    /// Whether `pre` holds a layer packed in this layout.
    pub(crate) fn holds(self, pre: &[i32]) -> bool {
        self.block_c != 0
            && pre.len() == self.len()
            && self
                .header()
                .is_some_and(|h| pre.get(..HEADER) == Some(&h[..]))
    }

    /// The starts and panels of the block of channels `first..first + n` in `pre`, which
    /// [`Layout::holds`].
    pub(crate) fn block(self, pre: &[i32], first: usize, n: usize) -> Option<(&[i32], &[i32])> {
        if self.block_c == 0 || !first.is_multiple_of(self.block_c) || n > BLOCK {
            return None;
        }
        let at = HEADER + first / self.block_c * self.block_len(self.block_c);
        let block = pre.get(at..at + self.block_len(n))?;
        Some(block.split_at(n))
    }

    /// Packs every block into `out` (at least [`Layout::len`] words) by
    /// `pack(first, n, panels, start)`, which writes the block's panels and starts. `false`,
    /// writing nothing, for a buffer too short or a layout without blocks.
    pub(crate) fn pack(
        self,
        out: &mut [i32],
        mut pack: impl FnMut(usize, usize, &mut [i32], &mut [i32; BLOCK]),
    ) -> bool {
        let (Some(header), Some(out)) = (self.header(), out.get_mut(..self.len())) else {
            return false;
        };
        if self.block_c == 0 || self.block_c > BLOCK {
            return false;
        }
        let (head, mut rest) = out.split_at_mut(HEADER);
        head.copy_from_slice(&header);
        let mut first = 0;
        while first < self.out_c {
            let n = (self.out_c - first).min(self.block_c);
            let (block, tail) = rest.split_at_mut(self.block_len(n).min(rest.len()));
            let (starts, panels) = block.split_at_mut(n.min(block.len()));
            let mut start = [0i32; BLOCK];
            pack(first, n, panels, &mut start);
            starts.copy_from_slice(start.get(..starts.len()).unwrap_or_default());
            rest = tail;
            first += n;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{Format, Layout};
    use crate::kernels::backend::simd::gemm::PANEL;

    #[test]
    fn blocks_are_found_where_they_were_packed() {
        let layout = Layout {
            format: Format::Quads,
            words: 3,
            block_c: 32,
            out_c: 80,
        };
        let mut out = vec![0i32; layout.len()];
        assert!(layout.pack(&mut out, |first, n, panels, start| {
            assert_eq!(panels.len(), n.div_ceil(PANEL) * 3 * PANEL);
            panels.fill(first as i32);
            for (i, s) in start.iter_mut().take(n).enumerate() {
                *s = -((first + i) as i32);
            }
        }));
        assert!(layout.holds(&out));
        for (first, n) in [(0, 32), (32, 32), (64, 16)] {
            let (starts, panels) = layout.block(&out, first, n).unwrap();
            assert_eq!(starts.len(), n);
            assert_eq!(starts[n - 1], -((first + n - 1) as i32));
            assert!(panels.iter().all(|&w| w == first as i32));
        }
        assert!(layout.block(&out, 16, 16).is_none());
        let other = Layout {
            format: Format::Pairs,
            ..layout
        };
        assert!(!other.holds(&out));
        assert!(!layout.holds(&out[..out.len() - 1]));
        assert!(!layout.pack(&mut out[..10], |_, _, _, _| unreachable!()));
    }
}
