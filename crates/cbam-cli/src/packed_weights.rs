//! A blob's convolution weights packed once per loaded file: a host runs many frames, and
//! each would otherwise pack them again (on every thread of a split frame, too).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Result;

/// `model` reading its convolution weights packed for this CPU, into `packing` on first
/// use. The outputs are the same bits as without.
pub fn with_packed_weights<'b>(
    path: &Path,
    model: cbam_core::Model<'b>,
    packing: &'b OnceLock<Vec<i32>>,
) -> Result<cbam_core::Model<'b>> {
    let fail = |e| anyhow::anyhow!("{}: cannot pack its weights: {e}", path.display());
    let words = match packing.get() {
        Some(words) => words,
        None => {
            let mut words = vec![0; model.packed_weights_len().map_err(fail)?];
            model.pack_weights(&mut words).map_err(fail)?;
            packing.get_or_init(|| words)
        }
    };
    model.with_packed_weights(words).map_err(fail)
}
