//! Dense ADD (TFLite's int8 residual add) on SIMD lanes; the pruned-branch scatter stays
//! portable (one pruned model's adds, a small share of its time).

use super::isa::{AddLanes, Isa};
use crate::kernels::AddParams;

/// `out = in1 + in2` element-wise for equally long slices already checked against the
/// shape; `false` when the portable kernel must run.
pub(crate) fn add_dense<I: Isa>(
    isa: I,
    p: &AddParams,
    in1: &[i8],
    in2: &[i8],
    out: &mut [i8],
) -> bool {
    let Some(k) = AddLanes::new(p) else {
        return false;
    };
    if in1.len() != out.len() || in2.len() != out.len() {
        return false;
    }
    isa.add(in1, in2, out, &k);
    true
}
