//! Graph editing shared by the passes. A pass builds one [`Index`] (who produces each
//! tensor, how many read it), keeps it current through its edits and removes nodes only by
//! marking them; [`Index::sweep`] drops them in one go at the end. So every pass is linear in
//! the number of nodes: a scan per lookup or a `Vec::remove` per edit would make a graph of
//! 200k nodes take minutes.

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

/// Producers and use counts of a graph's tensors, and the nodes removed so far.
pub(crate) struct Index {
    producer: Vec<Option<usize>>,
    /// Reading nodes (each once) plus one for the graph output.
    uses: Vec<usize>,
    dead: Vec<bool>,
    /// Tensors replaced by another: readers of the key read the value instead.
    alias: Vec<Option<TensorId>>,
}

impl Index {
    /// Indexes a graph that passed [`validate`].
    pub fn new(g: &Graph) -> Self {
        let n = g.tensors.len();
        let mut producer = vec![None; n];
        let mut uses = vec![0; n];
        let mut seen_by: Vec<Option<usize>> = vec![None; n];
        for (i, node) in g.nodes.iter().enumerate() {
            if let Some(slot) = producer.get_mut(node.output) {
                slot.get_or_insert(i);
            }
            for &t in &node.inputs {
                if let (Some(seen), Some(count)) = (seen_by.get_mut(t), uses.get_mut(t)) {
                    if *seen != Some(i) {
                        *seen = Some(i);
                        *count += 1;
                    }
                }
            }
        }
        if let Some(count) = uses.get_mut(g.output) {
            *count += 1;
        }
        Index {
            producer,
            uses,
            dead: vec![false; g.nodes.len()],
            alias: vec![None; n],
        }
    }

    pub fn producer(&self, t: TensorId) -> Option<usize> {
        self.producer.get(t).copied().flatten()
    }

    /// How many places read `t` (each reading node once, plus the graph output).
    pub fn uses(&self, t: TensorId) -> usize {
        self.uses.get(t).copied().unwrap_or(0)
    }

    pub fn is_dead(&self, i: usize) -> bool {
        self.dead.get(i).copied().unwrap_or(true)
    }

    fn resolve(&self, mut t: TensorId) -> TensorId {
        while let Some(Some(to)) = self.alias.get(t) {
            t = *to;
        }
        t
    }

    /// Rewrites node `i`'s inputs through the replacements made so far; a pass that bypasses
    /// nodes calls it on each node before looking at it.
    pub fn resolve_inputs(&self, g: &mut Graph, i: usize) {
        if let Some(node) = g.nodes.get_mut(i) {
            for t in &mut node.inputs {
                *t = self.resolve(*t);
            }
        }
    }

    /// Marks node `i` removed.
    pub fn remove(&mut self, g: &Graph, i: usize) {
        if let Some(node) = g.nodes.get(i) {
            if self.producer(node.output) == Some(i) {
                self.producer[node.output] = None;
            }
        }
        if let Some(d) = self.dead.get_mut(i) {
            *d = true;
        }
    }

    /// One reader of `t` is gone.
    fn drop_use(&mut self, t: TensorId) {
        if let Some(u) = self.uses.get_mut(t) {
            *u = u.saturating_sub(1);
        }
    }

    /// Node `i` reads nothing any more (it is removed or replaced).
    fn drop_reader(&mut self, g: &Graph, i: usize) {
        let mut inputs = g.nodes.get(i).map(|n| n.inputs.clone()).unwrap_or_default();
        inputs.sort_unstable();
        inputs.dedup();
        for t in inputs {
            self.drop_use(t);
        }
    }

    /// Folds node `i` (BatchNorm, activation) into its producer `p`: `p` writes the node's
    /// output tensor, and node `i` is removed.
    pub fn absorb_into_producer(&mut self, g: &mut Graph, p: usize, i: usize) {
        let Some(out) = g.nodes.get(i).map(|n| n.output) else {
            return;
        };
        self.drop_reader(g, i);
        self.remove(g, i);
        if let Some(prod) = g.nodes.get_mut(p) {
            if self.producer(prod.output) == Some(p) {
                self.producer[prod.output] = None;
            }
            prod.output = out;
            self.producer[out] = Some(p);
        }
    }

    /// Removes node `i`, a no-op on data from its input `x` to its output `y`: when `x` has
    /// no other reader its producer writes `y` directly (so `y` keeps its ONNX name and
    /// shape), otherwise readers of `y` read `x`. Returns whether the node was removed.
    pub fn bypass(&mut self, g: &mut Graph, i: usize) -> bool {
        let Some(node) = g.nodes.get(i) else {
            return false;
        };
        let (Some(&x), y) = (node.inputs.first(), node.output) else {
            return false;
        };
        let sole = self.uses(x) == 1 && x != g.input;
        self.remove(g, i);
        match self.producer(x).filter(|_| sole) {
            Some(p) => {
                if let Some(prod) = g.nodes.get_mut(p) {
                    prod.output = y;
                }
                self.producer[x] = None;
                self.producer[y] = Some(p);
                self.drop_use(x);
            }
            None => {
                self.alias[y] = Some(x);
                // Counting the readers of `y` as readers of `x` may count a node reading
                // both twice: an overcount only makes later folds more cautious.
                self.uses[x] = (self.uses[x] + self.uses[y]).saturating_sub(1);
            }
        }
        true
    }

    /// Replaces node `slot` and removes `doomed`: the nodes a match fused into it.
    pub fn fuse(&mut self, g: &mut Graph, slot: usize, doomed: &[usize], node: crate::ir::Node) {
        for &d in doomed.iter().filter(|&&d| d != slot) {
            self.drop_reader(g, d);
            self.remove(g, d);
        }
        self.drop_reader(g, slot);
        let mut inputs = node.inputs.clone();
        inputs.sort_unstable();
        inputs.dedup();
        for t in inputs {
            if let Some(u) = self.uses.get_mut(t) {
                *u += 1;
            }
        }
        if let Some(s) = g.nodes.get_mut(slot) {
            *s = node;
        }
    }

    /// Drops the removed nodes and applies every replacement, in one pass over the graph.
    pub fn sweep(self, g: &mut Graph) {
        let mut i = 0;
        g.nodes.retain(|_| {
            let keep = !self.is_dead(i);
            i += 1;
            keep
        });
        for node in &mut g.nodes {
            for t in &mut node.inputs {
                *t = self.resolve(*t);
            }
        }
        g.output = self.resolve(g.output);
    }
}
