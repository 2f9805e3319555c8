//! Folds a zero [`Op::Pad`] into the Conv or average pool it feeds: both pad with zeros
//! themselves (an IR average pool counts its padding, as ONNX `count_include_pad=1`).

use super::edit::{validate, Index};
use super::PassError;
use crate::ir::{Graph, Op};

/// Every Pad whose output is read only by one Conv or AvgPool is removed and its pads added
/// to that op's, which then reads the Pad's input. Pads that cannot fold stay; the
/// quantizer names them.
pub fn fold_pad(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let mut ix = Index::new(&g);
    for j in 0..g.nodes.len() {
        let Some(&y) = g.nodes.get(j).and_then(|n| n.inputs.first()) else {
            continue;
        };
        let Some(pad_node) = ix.producer(y).filter(|_| ix.uses(y) == 1) else {
            continue;
        };
        let (pad, x) = match g.nodes.get(pad_node) {
            Some(n) => match (&n.op, n.inputs.first()) {
                (Op::Pad(p), Some(&x)) => (*p, x),
                _ => continue,
            },
            None => continue,
        };
        let Some(reader) = g.nodes.get_mut(j) else {
            continue;
        };
        let pads = match &mut reader.op {
            Op::Conv(c) => &mut c.pads,
            Op::AvgPool(p) => &mut p.pads,
            _ => continue,
        };
        for (p, extra) in pads.iter_mut().zip(pad) {
            *p += extra;
        }
        // The Pad's input, not its (larger) output, is what the op now reads.
        reader.inputs[0] = x;
        ix.remove(&g, pad_node);
    }
    ix.sweep(&mut g);
    Ok(g)
}
