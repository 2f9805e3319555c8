//! Folds a zero [`Op::Pad`] into the Conv or average pool it feeds: both pad with zeros
//! themselves (an IR average pool counts its padding, as ONNX `count_include_pad=1`).

use super::edit::{consumers, replace_uses, uses, validate};
use super::PassError;
use crate::ir::{Graph, Op};

/// Every Pad whose output is read only by one Conv or AvgPool is removed and its pads added
/// to that op's. Pads that cannot fold stay; the quantizer names them.
pub fn fold_pad(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let mut i = 0;
    while let Some(node) = g.nodes.get(i) {
        let Op::Pad(pad) = node.op else {
            i += 1;
            continue;
        };
        let y = node.output;
        let readers = consumers(&g, y);
        let target = match readers.as_slice() {
            [c] if uses(&g, y) == 1 => *c,
            _ => {
                i += 1;
                continue;
            }
        };
        let slot = match g.nodes.get_mut(target).map(|n| &mut n.op) {
            Some(Op::Conv(c)) => Some(&mut c.pads),
            Some(Op::AvgPool(p)) => Some(&mut p.pads),
            _ => None,
        };
        match slot {
            Some(pads) => {
                for (p, extra) in pads.iter_mut().zip(pad) {
                    *p += extra;
                }
                // The Pad's input, not its (larger) output, is what the op now reads.
                if let Some(&x) = g.nodes.get(i).and_then(|n| n.inputs.first()) {
                    replace_uses(&mut g, y, x);
                }
                g.nodes.remove(i);
            }
            None => i += 1,
        }
    }
    Ok(g)
}
