//! Small graph-editing helpers shared by the passes.

use super::PassError;
use crate::ir::{Graph, TensorId};

/// Every tensor id a node or the graph names must exist; the passes rely on it.
pub(crate) fn validate(g: &Graph) -> Result<(), PassError> {
    let n = g.tensors.len();
    let bad = |what: String| Err(PassError::Malformed { why: what });
    if g.input >= n || g.output >= n {
        return bad(format!(
            "input {} or output {} is not one of the {n} tensors",
            g.input, g.output
        ));
    }
    for node in &g.nodes {
        if node.output >= n || node.inputs.iter().any(|&i| i >= n) {
            return bad(format!(
                "node {:?} names a tensor outside the {n} tensors",
                node.name
            ));
        }
    }
    Ok(())
}

pub(crate) fn shape(g: &Graph, t: TensorId) -> &[usize] {
    g.tensors.get(t).map(|t| t.shape.as_slice()).unwrap_or(&[])
}

pub(crate) fn name(g: &Graph, t: TensorId) -> String {
    g.tensors.get(t).map(|t| t.name.clone()).unwrap_or_default()
}

/// Indices of the nodes reading `t`.
pub(crate) fn consumers(g: &Graph, t: TensorId) -> Vec<usize> {
    g.nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.inputs.contains(&t))
        .map(|(i, _)| i)
        .collect()
}

/// How many places read `t` (each reading node once, plus the graph output).
pub(crate) fn uses(g: &Graph, t: TensorId) -> usize {
    consumers(g, t).len() + usize::from(g.output == t)
}

pub(crate) fn producer(g: &Graph, t: TensorId) -> Option<usize> {
    g.nodes.iter().position(|n| n.output == t)
}

/// Makes every reader of `from` (and the graph output) read `to` instead.
pub(crate) fn replace_uses(g: &mut Graph, from: TensorId, to: TensorId) {
    for node in &mut g.nodes {
        for i in &mut node.inputs {
            if *i == from {
                *i = to;
            }
        }
    }
    if g.output == from {
        g.output = to;
    }
}

/// Removes node `i` whose op is a no-op on data from `x` to `y`: when `x` has no other
/// reader its producer writes `y` directly (so `y` keeps its ONNX name and shape), otherwise
/// readers of `y` read `x`.
pub(crate) fn bypass(g: &mut Graph, i: usize) {
    let Some(node) = g.nodes.get(i) else { return };
    let (Some(&x), y) = (node.inputs.first(), node.output) else {
        return;
    };
    let sole = uses(g, x) == 1 && x != g.input;
    match producer(g, x).filter(|_| sole) {
        Some(p) => {
            if let Some(prod) = g.nodes.get_mut(p) {
                prod.output = y;
            }
        }
        None => replace_uses(g, y, x),
    }
    g.nodes.remove(i);
}

/// Folds node `i` (BatchNorm, activation) into its producer `p` by letting `p` write
/// the node's output tensor, then removes node `i`.
pub(crate) fn absorb_into_producer(g: &mut Graph, p: usize, i: usize) {
    let Some(out) = g.nodes.get(i).map(|n| n.output) else {
        return;
    };
    if let Some(prod) = g.nodes.get_mut(p) {
        prod.output = out;
    }
    g.nodes.remove(i);
}
