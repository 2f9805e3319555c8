//! The scratch bytes each op needs, from its parameter words and input shape alone: the
//! compiler's memory planner asks here, writes the answer into the op record's
//! `scratch_len`, and the reader checks the record against the same answer.

use super::ops::OpParams;

/// Scratch bytes of the fused CBAM op: `3C + 2Cr + 3hw` (pooled and hidden vectors, channel
/// attention, the two pooled spatial maps and the spatial attention map); `None` on overflow.
pub fn cbam_scratch_size(c: usize, cr: usize, h: usize, w: usize) -> Option<usize> {
    let vectors = c.checked_mul(3)?.checked_add(cr.checked_mul(2)?)?;
    vectors.checked_add(h.checked_mul(w)?.checked_mul(3)?)
}

/// Scratch bytes of a fused CBAM op in a look-ahead stage whose bands hold at most
/// `band_rows` rows of its output: as [`cbam_scratch_size`], but the pooled spatial maps
/// are a window of `band_rows + 2*(k/2)` rows (at most `h`) that moves down with the bands.
pub fn cbam_lookahead_scratch_size(
    c: usize,
    cr: usize,
    (h, w): (usize, usize),
    k: usize,
    band_rows: usize,
) -> Option<usize> {
    let rows = band_rows.checked_add((k / 2).checked_mul(2)?)?.min(h);
    let vectors = c.checked_mul(3)?.checked_add(cr.checked_mul(2)?)?;
    vectors
        .checked_add(rows.checked_mul(w)?.checked_mul(2)?)?
        .checked_add(h.checked_mul(w)?)
}

/// Whether a look-ahead CBAM op's window of spatial-map rows (`2w` bytes each, see
/// [`cbam_lookahead_scratch_size`]) has room for the statistics pass's `4C` bytes of
/// channel sums.
pub fn lookahead_maps_hold_sums(c: usize, h: usize, w: usize, k: usize, rows: usize) -> bool {
    let window = rows.saturating_add(2 * (k / 2)).min(h);
    c.saturating_mul(4) <= window.saturating_mul(w).saturating_mul(2)
}

impl OpParams {
    /// Scratch bytes the core needs to run this op on an input of `(h, w, c)`; `None` if
    /// the words cannot describe a runnable op (a negative count) or the size overflows.
    /// Every op but CBAM needs none.
    pub fn scratch_size(&self, input: (usize, usize, usize)) -> Option<usize> {
        let (h, w, _) = input;
        match self {
            OpParams::Cbam(p) => cbam_scratch_size(
                usize::try_from(p.c).ok()?,
                usize::try_from(p.cr).ok()?,
                h,
                w,
            ),
            _ => Some(0),
        }
    }

    /// [`OpParams::scratch_size`] for an op in a look-ahead stage whose bands hold at most
    /// `band_rows` rows of its output: the CBAM op's look-ahead scratch.
    pub fn lookahead_scratch_size(
        &self,
        input: (usize, usize, usize),
        band_rows: usize,
    ) -> Option<usize> {
        let (h, w, _) = input;
        match self {
            OpParams::Cbam(p) => cbam_lookahead_scratch_size(
                usize::try_from(p.c).ok()?,
                usize::try_from(p.cr).ok()?,
                (h, w),
                usize::try_from(p.k).ok()?,
                band_rows,
            ),
            _ => self.scratch_size(input),
        }
    }
}
