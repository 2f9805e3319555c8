//! Fuses ReLU/Clip into the Conv, Linear or Add that produces their input.

use super::edit::{absorb_into_producer, producer, uses, validate};
use super::PassError;
use crate::ir::{Activation, Graph, Op};

/// A ReLU or Clip whose input has no other reader becomes the producer's activation when
/// the producer can apply one (Conv, Linear, Add) and has none yet.
pub fn fuse_activations(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let mut i = 0;
    while let Some(node) = g.nodes.get(i) {
        let act = match node.op {
            Op::Relu => Activation::Relu,
            Op::Clip(lo, hi) => Activation::Clip(lo, hi),
            _ => {
                i += 1;
                continue;
            }
        };
        let p = node
            .inputs
            .first()
            .and_then(|&x| producer(&g, x).filter(|_| uses(&g, x) == 1));
        let slot = match p.and_then(|p| g.nodes.get_mut(p)).map(|n| &mut n.op) {
            Some(Op::Conv(c)) => Some(&mut c.act),
            Some(Op::Linear(l)) => Some(&mut l.act),
            Some(Op::Add { act }) => Some(act),
            _ => None,
        };
        match (slot, p) {
            (Some(slot), Some(p)) if *slot == Activation::None => {
                *slot = act;
                absorb_into_producer(&mut g, p, i);
            }
            _ => i += 1,
        }
    }
    Ok(g)
}
