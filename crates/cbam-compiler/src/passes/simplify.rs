//! Removes ops that do not change data (Identity, Dropout, layout-free reshapes) and drops
//! tensors nothing uses.

use super::edit::{shape, validate, Index};
use super::PassError;
use crate::ir::{Graph, Op};

/// Same non-unit dimensions in the same order: the same bytes in NCHW and NHWC.
fn layout_free(a: &[usize], b: &[usize]) -> bool {
    let non_unit = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    non_unit(a) == non_unit(b)
}

/// Removes Identity (and Dropout, imported as Identity) and every Flatten/Reshape that
/// only adds or removes unit axes (e.g. `[c, 1, 1] -> [c]` around an attention MLP).
/// A Flatten of a real feature map stays: it changes the element order under NHWC.
pub fn remove_identities(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let mut ix = Index::new(&g);
    for i in 0..g.nodes.len() {
        ix.resolve_inputs(&mut g, i);
        let Some(node) = g.nodes.get(i) else { break };
        let removable = match node.op {
            Op::Identity => true,
            Op::Flatten => node
                .inputs
                .first()
                .is_some_and(|&x| layout_free(shape(&g, x), shape(&g, node.output))),
            _ => false,
        };
        if removable {
            ix.bypass(&mut g, i);
        }
    }
    ix.sweep(&mut g);
    Ok(g)
}

/// Drops tensors no node, input or output refers to, renumbering the rest in order.
pub fn compact(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let mut used = vec![false; g.tensors.len()];
    for id in g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().chain(std::iter::once(&n.output)))
    {
        used[*id] = true;
    }
    used[g.input] = true;
    used[g.output] = true;
    let mut new_id = vec![0; used.len()];
    let mut next = 0;
    for (id, keep) in used.iter().enumerate() {
        new_id[id] = next;
        next += usize::from(*keep);
    }
    let tensors = std::mem::take(&mut g.tensors);
    g.tensors = tensors
        .into_iter()
        .zip(&used)
        .filter(|(_, &k)| k)
        .map(|(t, _)| t)
        .collect();
    for node in &mut g.nodes {
        node.output = new_id[node.output];
        for i in &mut node.inputs {
            *i = new_id[*i];
        }
    }
    g.input = new_id[g.input];
    g.output = new_id[g.output];
    Ok(g)
}
