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
}
