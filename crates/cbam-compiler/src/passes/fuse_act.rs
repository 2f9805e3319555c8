//! Fuses ReLU/Clip into the Conv, Linear or Add that produces their input.

use super::edit::{validate, Index};
use super::PassError;
use crate::ir::{Activation, Graph, Op};

/// A ReLU or Clip whose input has no other reader becomes the producer's activation when
/// the producer can apply one (Conv, Linear, Add) and has none yet.
pub fn fuse_activations(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let mut ix = Index::new(&g);
    for i in 0..g.nodes.len() {
        let Some(node) = g.nodes.get(i) else { break };
        let act = match node.op {
            Op::Relu => Activation::Relu,
            Op::Clip(lo, hi) => Activation::Clip(lo, hi),
            _ => continue,
        };
        let p = node
            .inputs
            .first()
            .and_then(|&x| ix.producer(x).filter(|_| ix.uses(x) == 1));
        let slot = match p.and_then(|p| g.nodes.get_mut(p)).map(|n| &mut n.op) {
            Some(Op::Conv(c)) => Some(&mut c.act),
            Some(Op::Linear(l)) => Some(&mut l.act),
            Some(Op::Add { act }) => Some(act),
            _ => None,
        };
        if let (Some(slot), Some(p)) = (slot, p) {
            if *slot == Activation::None {
                *slot = act;
                ix.absorb_into_producer(&mut g, p, i);
            }
        }
    }
    ix.sweep(&mut g);
    Ok(g)
}
