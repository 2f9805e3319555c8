//! Structural channel removal on the ONNX graph.
//!
//! Starting from one value whose channels are cut (the CBAM block's feature map `F`), the
//! cut is propagated through every node that carries those channels, in both directions:
//! the producer conv loses output channels (and its BatchNorm entries), pooling and
//! activations pass the cut through, the CBAM MLP loses input columns and output rows, the
//! consumer conv / depthwise conv / FC loses input channels. Where a residual `Add` joins
//! the cut branch to a full-width tensor computed before the block, the branch is scattered
//! back to full width just before the Add (see [`SCATTER_SUFFIX`]).
//!
//! Only constants, a few attributes (`group`) and reshape targets change, and at most one
//! node per coupled Add is inserted, so the result stays an ordinary ONNX model.

use std::collections::{HashMap, HashSet, VecDeque};

use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, TensorProto};

use super::proto_edit::{
    self, const_tensor, const_tensor_mut, dims_usize, new_tensor_f32, reduce_axes, set_attr_i,
    set_tensor_f32, set_tensor_i64, tensor_f32, tensor_i64, GraphIndex,
};
use super::shapes::ShapeMap;
use super::PruneError;
use crate::import::attrs;

/// Name suffix of the node inserted before a residual `Add` whose branch was pruned.
///
/// The exact pattern, for the quantizer to lower to the core's ADD with a kept-channel list
/// (FORMAT.md, ADD "Scatter"):
///
/// ```text
/// branch [1,K,H,W] --Conv(name = "<add node name>/cbam_prune_scatter",
///                         W = "<add node name>.cbam_prune_scatter.weight" [N,K,1,1],
///                         no bias, kernel 1x1, stride 1, no pads, group 1)--> [1,N,H,W] --> Add
/// ```
///
/// `W[n][k] = 1` exactly when `n == kept[k]` (kept strictly increasing), every other entry 0,
/// so each column holds one 1 and the scattered channels not kept are exact zeros. The kept
/// list is recovered as `kept[k] = argmax_n W[n][k]`. The model metadata also carries
/// `cbam.prune.scatter.<add node name>` = comma-separated kept indices.
pub const SCATTER_SUFFIX: &str = "/cbam_prune_scatter";

/// How channel-reducing means inside the cut are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurgeryOptions {
    /// Scale the spatial-attention conv's weights on the channel-mean input by `K/N`, so
    /// the mean over the `K` kept channels equals the original mean with the removed
    /// channels set to zero.
    pub compensate_spatial_mean: bool,
}

/// What one cut did to the graph.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CutOutcome {
    /// Residual Adds that now receive the branch through a scatter conv.
    pub scattered_adds: Vec<String>,
    /// Channel-mean nodes whose consumer conv was rescaled by `K/N`.
    pub compensated_means: Vec<String>,
    /// Channel-mean nodes that could not be compensated (unexpected consumers).
    pub uncompensated_means: Vec<String>,
    /// Values whose channel count changed.
    pub cut_values: Vec<String>,
    /// Plain convs that lost input channels but kept all their outputs: where the cut ends
    /// and a least-squares refit can compensate (see [`super::reconstruct`](mod@super::reconstruct)).
    pub consumer_convs: Vec<String>,
}

/// Unary ops that act per channel (or per element) and keep the channel axis.
const PASS_THROUGH: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Clip",
    "Dropout",
    "Identity",
    "HardSigmoid",
    "HardSwish",
    "Elu",
    "Selu",
    "Softplus",
    "Neg",
    "Abs",
    "Exp",
    "Sqrt",
    "Cast",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LpPool",
];
const RESHAPES: &[&str] = &["Flatten", "Reshape", "Squeeze", "Unsqueeze", "Expand"];
const ELEMENTWISE: &[&str] = &["Add", "Sub", "Mul", "Div", "Max", "Min", "Sum"];
const REDUCES: &[&str] = &[
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceL1",
    "ReduceL2",
];

struct Engine<'a> {
    g: &'a mut GraphProto,
    idx: GraphIndex,
    shapes: &'a ShapeMap,
    full: usize,
    kept: &'a [usize],
    cut: HashSet<String>,
    /// Values that must keep their full channel count (the far side of a boundary).
    keep_full: HashSet<String>,
    visited: HashSet<usize>,
    /// Nodes visited again whenever a value they touch is cut.
    revisit: HashSet<usize>,
    /// Constants a node stopped reading for a private copy.
    replaced: HashSet<String>,
    queue: VecDeque<usize>,
    sliced: HashMap<String, Vec<(usize, usize)>>,
    reachable: HashSet<String>,
    graph_outputs: HashSet<String>,
    graph_inputs: HashSet<String>,
    scatters: Vec<(usize, usize)>,
    means: Vec<usize>,
    consumers: Vec<String>,
}

fn unsupported(node: &NodeProto, why: &str) -> PruneError {
    PruneError::Unsupported(format!("node `{}` ({}): {why}", node.name, node.op_type))
}

impl Engine<'_> {
    fn node(&self, i: usize) -> Result<NodeProto, PruneError> {
        self.g
            .node
            .get(i)
            .cloned()
            .ok_or_else(|| PruneError::Unsupported(format!("node index {i} out of range")))
    }

    fn shape(&self, v: &str) -> Result<&[usize], PruneError> {
        self.shapes
            .get(v)
            .map(Vec::as_slice)
            .ok_or_else(|| PruneError::Unsupported(format!("no known shape for value `{v}`")))
    }

    /// Marks `v` as carrying only the kept channels and schedules its producer and users.
    fn cut_value(&mut self, v: &str) -> Result<(), PruneError> {
        if self.cut.contains(v) {
            return Ok(());
        }
        if self.keep_full.contains(v) || self.graph_outputs.contains(v) {
            return Err(PruneError::Coupled(format!(
                "value `{v}` would lose channels but must keep all {} (model output or a boundary)",
                self.full
            )));
        }
        let shape = self.shape(v)?;
        // `[1, C, ..]`, or `[C * ..]`: a batch-1 map flattened whole (dynamo's views).
        let channel_major = match shape {
            [n] => n % self.full == 0,
            _ => shape.first() == Some(&1) && shape.get(1).is_some_and(|c| c % self.full == 0),
        };
        if !channel_major {
            return Err(PruneError::Unsupported(format!(
                "value `{v}` of shape {shape:?} does not carry the {} cut channels on axis 1",
                self.full
            )));
        }
        self.cut.insert(v.to_string());
        if let Some(&p) = self.idx.producer.get(v) {
            self.queue.push_back(p);
        }
        let users = self.idx.consumers_of(v).to_vec();
        self.queue.extend(users);
        Ok(())
    }

    fn keep_value_full(&mut self, v: &str) -> Result<(), PruneError> {
        if self.cut.contains(v) {
            return Err(PruneError::Coupled(format!(
                "value `{v}` is both cut and needed at full width"
            )));
        }
        self.keep_full.insert(v.to_string());
        Ok(())
    }

    /// Slices constant `name` along `axis`, keeping blocks of `block` elements per channel.
    fn slice_const(&mut self, name: &str, axis: usize, block: usize) -> Result<(), PruneError> {
        let before = self.sliced.get(name).map(Vec::as_slice).unwrap_or_default();
        if before.contains(&(axis, block)) {
            return Ok(());
        }
        // One node's square weight loses rows and columns (SE's `C -> C` layer); a weight two
        // nodes read along different axes cannot serve both once cut.
        let one_reader = self.idx.consumers_of(name).len() <= 1;
        if before.iter().any(|&(a, _)| a == axis) || (!before.is_empty() && !one_reader) {
            return Err(PruneError::Coupled(format!(
                "constant `{name}` is shared by nodes cut along different axes"
            )));
        }
        let slot = *self.idx.consts.get(name).ok_or_else(|| {
            PruneError::Unsupported(format!(
                "`{name}` is not a constant (weights computed at run time)"
            ))
        })?;
        let t = const_tensor(self.g, slot)
            .ok_or_else(|| PruneError::Unsupported(format!("constant `{name}` unreadable")))?;
        let dims = dims_usize(t);
        let values = tensor_f32(t)?;
        let axis_len = dims.get(axis).copied().unwrap_or(0);
        if axis_len != self.full * block || values.len() != dims.iter().product::<usize>() {
            return Err(PruneError::Unsupported(format!(
                "constant `{name}` has dims {dims:?}; expected {} x {block} along axis {axis}",
                self.full
            )));
        }
        let outer: usize = dims.iter().take(axis).product();
        let inner: usize = dims.iter().skip(axis + 1).product();
        let mut out = Vec::with_capacity(outer * self.kept.len() * block * inner);
        for o in 0..outer {
            for &k in self.kept {
                let start = (o * axis_len + k * block) * inner;
                let chunk = values.get(start..start + block * inner).ok_or_else(|| {
                    PruneError::Unsupported(format!("constant `{name}` shorter than its dims"))
                })?;
                out.extend_from_slice(chunk);
            }
        }
        let mut new_dims = dims;
        new_dims[axis] = self.kept.len() * block;
        if let Some(t) = const_tensor_mut(self.g, slot) {
            set_tensor_f32(t, &new_dims, &out);
        }
        self.sliced
            .entry(name.to_string())
            .or_default()
            .push((axis, block));
        Ok(())
    }

    /// Elements per channel of a cut-carrying value (`H*W` for a map, 1 for a vector).
    fn block_of(&self, v: &str) -> Result<usize, PruneError> {
        let n: usize = self.shape(v)?.iter().product();
        Ok(n / self.full)
    }

    fn run(&mut self) -> Result<(), PruneError> {
        while let Some(i) = self.queue.pop_front() {
            if !self.visited.insert(i) && !self.revisit.contains(&i) {
                continue;
            }
            let node = self.node(i)?;
            self.visit(i, &node)?;
        }
        Ok(())
    }

    fn visit(&mut self, i: usize, node: &NodeProto) -> Result<(), PruneError> {
        let op = node.op_type.as_str();
        let input0 = node.input.first().cloned().unwrap_or_default();
        let output0 = node.output.first().cloned().unwrap_or_default();
        match op {
            "Conv" => self.visit_conv(i, node),
            "Gemm" | "MatMul" => self.visit_matmul(node),
            "Gather" => self.visit_gather(i, node),
            // Its output is metadata: the reshapes and expands it feeds follow the cut at
            // run time (the official CBAM code's `view` and `expand_as`).
            "Shape" => Ok(()),
            "BatchNormalization" | "InstanceNormalization" => {
                let params = if op == "BatchNormalization" {
                    1..5
                } else {
                    1..3
                };
                for p in params {
                    if let Some(name) = node.input.get(p) {
                        self.slice_const(name, 0, 1)?;
                    }
                }
                self.cut_value(&input0)?;
                self.cut_value(&output0)
            }
            _ if PASS_THROUGH.contains(&op) => {
                self.cut_value(&input0)?;
                self.cut_value(&output0)
            }
            _ if RESHAPES.contains(&op) => self.visit_reshape(i, node),
            _ if REDUCES.contains(&op) => self.visit_reduce(i, node),
            _ if ELEMENTWISE.contains(&op) => self.visit_elementwise(i, node),
            _ => Err(unsupported(
                node,
                "cannot carry a channel cut through this op",
            )),
        }
    }

    fn visit_conv(&mut self, i: usize, node: &NodeProto) -> Result<(), PruneError> {
        let x = node.input.first().cloned().unwrap_or_default();
        let w = node.input.get(1).cloned().unwrap_or_default();
        let b = node.input.get(2).filter(|b| !b.is_empty()).cloned();
        let y = node.output.first().cloned().unwrap_or_default();
        // The first conv sees raw pixels and every later feature depends on it; like most
        // structured pruning, this leaves it whole (it is also among the cheapest layers).
        if self.graph_inputs.contains(&x) {
            return Err(unsupported(
                node,
                "the model's first conv keeps all its output channels",
            ));
        }
        let group = attrs::int(node, "group").unwrap_or(1).max(1) as usize;
        let x_channels = self.shape(&x)?.get(1).copied().unwrap_or(0);
        let y_channels = self.shape(&y)?.get(1).copied().unwrap_or(0);
        if group > 1 {
            let depthwise = group == x_channels && x_channels == y_channels && group == self.full;
            if !depthwise {
                return Err(unsupported(
                    node,
                    "grouped convolution other than depthwise (multiplier 1)",
                ));
            }
            self.slice_const(&w, 0, 1)?;
            if let Some(b) = &b {
                self.slice_const(b, 0, 1)?;
            }
            let k = self.kept.len() as i64;
            if let Some(n) = self.g.node.get_mut(i) {
                set_attr_i(n, "group", k);
            }
            self.cut_value(&x)?;
            return self.cut_value(&y);
        }
        let one_pixel = |s: &[usize]| s.iter().skip(2).product::<usize>() == 1;
        if one_pixel(self.shape(&x)?) && one_pixel(self.shape(&y)?) {
            return self.visit_vector_conv(i, node);
        }
        if self.cut.contains(&y) {
            self.slice_const(&w, 0, 1)?;
            if let Some(b) = &b {
                self.slice_const(b, 0, 1)?;
            }
        } else {
            self.keep_value_full(&y)?;
        }
        if self.cut.contains(&x) {
            self.slice_const(&w, 1, 1)?;
            if !self.cut.contains(&y) {
                self.consumers.push(node.name.clone());
            }
        } else {
            self.keep_value_full(&x)?;
        }
        Ok(())
    }

    /// A conv on a pooled vector, inside an attention gate: it may carry the cut through,
    /// as SE's single `C -> C` layer does from the cut average to the gate of the cut map,
    /// or end it, as a CBAM MLP's first layer does. Either side may be cut after the first
    /// visit, so it is visited again whenever one is (see [`Engine::run`]).
    fn visit_vector_conv(&mut self, i: usize, node: &NodeProto) -> Result<(), PruneError> {
        self.revisit.insert(i);
        let w = node.input.get(1).cloned().unwrap_or_default();
        if node.output.first().is_some_and(|y| self.cut.contains(y)) {
            self.slice_const(&w, 0, 1)?;
            if let Some(b) = node.input.get(2).filter(|b| !b.is_empty()) {
                self.slice_const(b, 0, 1)?;
            }
        }
        if node.input.first().is_some_and(|x| self.cut.contains(x)) {
            self.slice_const(&w, 1, 1)?;
        }
        Ok(())
    }

    /// `Gemm` (transA = 0) and `MatMul` with a constant right-hand side.
    fn visit_matmul(&mut self, node: &NodeProto) -> Result<(), PruneError> {
        let a = node.input.first().cloned().unwrap_or_default();
        let w = node.input.get(1).cloned().unwrap_or_default();
        let y = node.output.first().cloned().unwrap_or_default();
        if attrs::int(node, "transA").unwrap_or(0) != 0 {
            return Err(unsupported(node, "transA = 1"));
        }
        if !self.idx.is_const(&w) {
            return Err(unsupported(node, "right-hand side is not a constant"));
        }
        let trans_b = node.op_type == "Gemm" && attrs::int(node, "transB").unwrap_or(0) != 0;
        let (in_axis, out_axis) = if trans_b { (1, 0) } else { (0, 1) };
        if self.cut.contains(&a) {
            let block = self.block_of(&a)?;
            self.slice_const(&w, in_axis, block)?;
            self.keep_value_full(&y)?;
        } else if self.cut.contains(&y) {
            self.slice_const(&w, out_axis, 1)?;
            if let Some(c) = node.input.get(2).filter(|c| !c.is_empty()) {
                let c_len: usize = self.shape(c)?.iter().product();
                if c_len == self.full {
                    let axis = self.shape(c)?.len().saturating_sub(1);
                    self.slice_const(c, axis, 1)?;
                }
            }
            self.keep_value_full(&a)?;
        }
        Ok(())
    }

    /// Dynamo's `as_strided` view: a `Gather` on axis 0 of a map flattened whole, with the
    /// constant indices `0..n` shaped like the map. The cut passes through and the indices
    /// become `0..k`, shaped like the cut map.
    fn visit_gather(&mut self, i: usize, node: &NodeProto) -> Result<(), PruneError> {
        let x = node.input.first().cloned().unwrap_or_default();
        let y = node.output.first().cloned().unwrap_or_default();
        let indices = node.input.get(1).cloned().unwrap_or_default();
        let n = match self.shape(&x)? {
            [n] => *n,
            _ => {
                return Err(unsupported(
                    node,
                    "gathers from a map that is not flattened",
                ))
            }
        };
        let t = self
            .idx
            .consts
            .get(&indices)
            .and_then(|&slot| const_tensor(self.g, slot))
            .ok_or_else(|| unsupported(node, "indices computed at run time"))?;
        let in_order = tensor_i64(t).is_some_and(|v| v.into_iter().eq(0..n as i64));
        if attrs::int(node, "axis").unwrap_or(0) != 0 || !in_order {
            return Err(unsupported(node, "not an in-order view of the whole map"));
        }
        let mut dims = t.dims.clone();
        self.cut_value(&x)?;
        self.cut_value(&y)?;
        let axis = usize::from(dims.len() > 1);
        if let Some(d) = dims.get_mut(axis) {
            *d = *d / self.full as i64 * self.kept.len() as i64;
        }
        let kept = (n / self.full * self.kept.len()) as i64;
        self.set_i64_operand(i, 1, dims, &(0..kept).collect::<Vec<_>>());
        Ok(())
    }

    /// Gives input `slot` of node `i` a constant of its own with `values`: other nodes may
    /// share the original (exporters deduplicate equal shapes and index lists).
    fn set_i64_operand(&mut self, i: usize, slot: usize, dims: Vec<i64>, values: &[i64]) {
        let Some(node) = self.g.node.get_mut(i) else {
            return;
        };
        let Some(input) = node.input.get_mut(slot) else {
            return;
        };
        let name = format!("{input}.cbam_prune.{}", node.name);
        self.replaced.insert(std::mem::replace(input, name.clone()));
        let mut t = TensorProto {
            name,
            dims,
            data_type: tract_onnx::pb::tensor_proto::DataType::Int64 as i32,
            ..Default::default()
        };
        set_tensor_i64(&mut t, values);
        self.g.initializer.push(t);
    }

    fn visit_reshape(&mut self, i: usize, node: &NodeProto) -> Result<(), PruneError> {
        let x = node.input.first().cloned().unwrap_or_default();
        let y = node.output.first().cloned().unwrap_or_default();
        if node.op_type == "Flatten" && attrs::int(node, "axis").unwrap_or(1) != 1 {
            return Err(unsupported(node, "Flatten with axis != 1"));
        }
        self.cut_value(&x)?;
        self.cut_value(&y)?;
        if matches!(node.op_type.as_str(), "Reshape" | "Expand") {
            self.fix_shape_operand(i, node, &y)?;
        }
        Ok(())
    }

    /// A constant target shape names the channel count literally: scale it to the kept count.
    fn fix_shape_operand(&mut self, i: usize, node: &NodeProto, y: &str) -> Result<(), PruneError> {
        let Some(shape_name) = node.input.get(1) else {
            return Ok(());
        };
        let Some(&slot) = self.idx.consts.get(shape_name) else {
            return Ok(()); // computed from the input's shape at run time: follows the cut
        };
        let out_c = self.shape(y)?.get(1).copied().unwrap_or(0);
        let t = const_tensor(self.g, slot);
        let dims = t.map(|t| t.dims.clone()).unwrap_or_default();
        let Some(mut target) = t.and_then(tensor_i64) else {
            return Err(unsupported(node, "shape operand is not INT64"));
        };
        if target.get(1).is_some_and(|&c| c > 0 && c as usize == out_c) {
            target[1] = (out_c / self.full * self.kept.len()) as i64;
            self.set_i64_operand(i, 1, dims, &target);
        }
        Ok(())
    }

    fn visit_reduce(&mut self, i: usize, node: &NodeProto) -> Result<(), PruneError> {
        let x = node.input.first().cloned().unwrap_or_default();
        let y = node.output.first().cloned().unwrap_or_default();
        let rank = self.shape(&x)?.len();
        let axes = reduce_axes(self.g, &self.idx, node, rank)
            .ok_or_else(|| unsupported(node, "reduces over all axes"))?;
        if axes.contains(&1) {
            if !self.cut.contains(&x) {
                return Err(unsupported(
                    node,
                    "channel reduction reached from its output",
                ));
            }
            self.keep_value_full(&y)?;
            if node.op_type == "ReduceMean" {
                self.means.push(i);
            }
            return Ok(());
        }
        self.cut_value(&x)?;
        self.cut_value(&y)
    }

    /// Whether input `v` of a node with output shape `out` has the cut channels on the
    /// output's axis 1 (after right-aligned broadcasting); returns that input axis.
    fn carries_channels(&self, v: &str, out_rank: usize) -> Result<Option<usize>, PruneError> {
        let s = self.shape(v)?;
        let offset = out_rank.checked_sub(s.len());
        Ok(match offset {
            Some(off) if off <= 1 => {
                let axis = 1 - off;
                (s.get(axis) == Some(&self.full) && self.full > 1).then_some(axis)
            }
            _ => None,
        })
    }

    fn visit_elementwise(&mut self, i: usize, node: &NodeProto) -> Result<(), PruneError> {
        let y = node.output.first().cloned().unwrap_or_default();
        let out_rank = self.shape(&y)?.len();
        let mut pending = Vec::new();
        let mut foreign = Vec::new();
        for (slot, v) in node.input.iter().enumerate() {
            let Some(axis) = self.carries_channels(v, out_rank)? else {
                continue;
            };
            if self.cut.contains(v) {
                continue;
            }
            if self.idx.is_const(v) {
                self.slice_const(v, axis, 1)?;
            } else if self.reachable.contains(v) {
                pending.push(v.clone());
            } else {
                foreign.push((slot, v.clone()));
            }
        }
        if foreign.is_empty() {
            for v in pending {
                self.cut_value(&v)?;
            }
            return self.cut_value(&y);
        }
        let reached_forward = !self.cut.contains(&y) && pending.is_empty();
        if node.op_type != "Add" || !reached_forward {
            return Err(PruneError::Coupled(format!(
                "node `{}` ({}) joins the cut channels with `{}`, computed outside the block",
                node.name, node.op_type, foreign[0].1
            )));
        }
        for (_, v) in &foreign {
            self.keep_value_full(v)?;
        }
        self.keep_value_full(&y)?;
        for (slot, v) in node.input.iter().enumerate() {
            if self.cut.contains(v) {
                self.scatters.push((i, slot));
            }
        }
        Ok(())
    }
}

/// Values reachable forward from `seed` (the block's inside and everything after it).
fn forward_closure(g: &GraphProto, idx: &GraphIndex, seed: &str) -> HashSet<String> {
    let mut seen: HashSet<String> = HashSet::from([seed.to_string()]);
    let mut stack = vec![seed.to_string()];
    while let Some(v) = stack.pop() {
        for &ci in idx.consumers_of(&v) {
            for o in g.node.get(ci).map(|n| n.output.as_slice()).unwrap_or(&[]) {
                if seen.insert(o.clone()) {
                    stack.push(o.clone());
                }
            }
        }
    }
    seen
}

/// Removes every channel of `seed` not in `kept` (strictly increasing indices into the
/// `full` channels), with all the consequences described in the module docs.
pub fn cut_channels(
    model: &mut ModelProto,
    shapes: &ShapeMap,
    seed: &str,
    full: usize,
    kept: &[usize],
    options: SurgeryOptions,
) -> Result<CutOutcome, PruneError> {
    let increasing = kept.windows(2).all(|w| w[0] < w[1]);
    if kept.is_empty() || !increasing || kept.last().is_some_and(|&k| k >= full) {
        return Err(PruneError::Unsupported(format!(
            "invalid kept list for {full} channels"
        )));
    }
    let g = model
        .graph
        .as_mut()
        .ok_or_else(|| PruneError::Unsupported("the ONNX model has no graph".into()))?;
    let idx = GraphIndex::new(g);
    let reachable = forward_closure(g, &idx, seed);
    let graph_outputs = g.output.iter().map(|o| o.name.clone()).collect();
    let graph_inputs = g.input.iter().map(|i| i.name.clone()).collect();
    let mut engine = Engine {
        g,
        idx,
        shapes,
        full,
        kept,
        cut: HashSet::new(),
        keep_full: HashSet::new(),
        visited: HashSet::new(),
        revisit: HashSet::new(),
        replaced: HashSet::new(),
        queue: VecDeque::new(),
        sliced: HashMap::new(),
        reachable,
        graph_outputs,
        graph_inputs,
        scatters: Vec::new(),
        means: Vec::new(),
        consumers: Vec::new(),
    };
    engine.cut_value(seed)?;
    engine.run()?;
    check_shared_constants(&engine)?;
    let mut outcome = CutOutcome {
        cut_values: engine.cut.iter().cloned().collect(),
        consumer_convs: engine.consumers.clone(),
        ..Default::default()
    };
    outcome.cut_values.sort();
    if options.compensate_spatial_mean {
        compensate_means(&mut engine, &mut outcome)?;
    } else {
        outcome.uncompensated_means = engine
            .means
            .iter()
            .filter_map(|&i| engine.g.node.get(i))
            .map(|n| n.name.clone())
            .collect();
    }
    insert_scatters(&mut engine, &mut outcome)?;
    drop_unread(engine.g, &engine.replaced);
    let mut stale = engine.cut;
    stale.extend(engine.sliced.into_keys());
    forget_stale_shapes(model, &stale);
    Ok(outcome)
}

/// A sliced constant used by a node the cut never reached would now have the wrong shape.
fn check_shared_constants(e: &Engine) -> Result<(), PruneError> {
    for name in e.sliced.keys() {
        for &user in e.idx.consumers_of(name) {
            if !e.visited.contains(&user) {
                let who =
                    e.g.node
                        .get(user)
                        .map(|n| n.name.clone())
                        .unwrap_or_default();
                return Err(PruneError::Coupled(format!(
                    "constant `{name}` is also used by `{who}`, outside the pruned channels"
                )));
            }
        }
    }
    Ok(())
}

/// Scales the conv weights that read a channel mean, by `K/N` (see [`SurgeryOptions`]).
fn compensate_means(e: &mut Engine, outcome: &mut CutOutcome) -> Result<(), PruneError> {
    let factor = e.kept.len() as f32 / e.full as f32;
    for &mi in &e.means.clone() {
        let Some(mean_node) = e.g.node.get(mi).cloned() else {
            continue;
        };
        let mean_out = mean_node.output.first().cloned().unwrap_or_default();
        match mean_consumer_conv(e, &mean_out)? {
            Some((conv_w, channel)) => {
                scale_input_channel(e, &conv_w, channel, factor)?;
                outcome.compensated_means.push(mean_node.name.clone());
            }
            None => outcome.uncompensated_means.push(mean_node.name.clone()),
        }
    }
    Ok(())
}

/// Finds `mean -> [Concat(axis 1)] -> Conv` and returns the conv weight and the input
/// channel the mean lands on.
fn mean_consumer_conv(e: &Engine, mean_out: &str) -> Result<Option<(String, usize)>, PruneError> {
    let users = e.idx.consumers_of(mean_out);
    let [user] = users else { return Ok(None) };
    let Some(node) = e.g.node.get(*user) else {
        return Ok(None);
    };
    let (conv_input, channel) = if node.op_type == "Concat" {
        let axis = attrs::int(node, "axis").unwrap_or(0);
        if axis != 1 && axis != -3 {
            return Ok(None);
        }
        let mut offset = 0usize;
        let mut found = None;
        for v in &node.input {
            if v == mean_out {
                found = Some(offset);
                break;
            }
            offset += e.shape(v)?.get(1).copied().unwrap_or(1);
        }
        let Some(channel) = found else {
            return Ok(None);
        };
        (node.output.first().cloned().unwrap_or_default(), channel)
    } else {
        (mean_out.to_string(), 0)
    };
    let conv_users = if conv_input == mean_out {
        vec![*user]
    } else {
        e.idx.consumers_of(&conv_input).to_vec()
    };
    let [conv_idx] = conv_users.as_slice() else {
        return Ok(None);
    };
    let Some(conv) = e.g.node.get(*conv_idx) else {
        return Ok(None);
    };
    if conv.op_type != "Conv" || attrs::int(conv, "group").unwrap_or(1) != 1 {
        return Ok(None);
    }
    let Some(w) = conv.input.get(1) else {
        return Ok(None);
    };
    if e.idx.consumers_of(w).len() != 1 || !e.idx.is_const(w) {
        return Ok(None);
    }
    Ok(Some((w.clone(), channel)))
}

fn scale_input_channel(
    e: &mut Engine,
    w: &str,
    channel: usize,
    factor: f32,
) -> Result<(), PruneError> {
    let Some(&slot) = e.idx.consts.get(w) else {
        return Ok(());
    };
    let Some(t) = const_tensor(e.g, slot) else {
        return Ok(());
    };
    let dims = dims_usize(t);
    let mut values = tensor_f32(t)?;
    let (Some(&in_c), Some(&out_c)) = (dims.get(1), dims.first()) else {
        return Ok(());
    };
    let inner: usize = dims.iter().skip(2).product();
    for o in 0..out_c {
        let start = (o * in_c + channel) * inner;
        for v in values.iter_mut().skip(start).take(inner) {
            *v *= factor;
        }
    }
    if let Some(t) = const_tensor_mut(e.g, slot) {
        set_tensor_f32(t, &dims, &values);
    }
    Ok(())
}

/// Inserts the scatter conv before each coupled Add (in reverse order so indices hold).
fn insert_scatters(e: &mut Engine, outcome: &mut CutOutcome) -> Result<(), PruneError> {
    let mut scatters = e.scatters.clone();
    scatters.sort_unstable_by(|a, b| b.cmp(a));
    for (node_idx, slot) in scatters {
        let add = e.node(node_idx)?;
        let branch = add.input.get(slot).cloned().unwrap_or_default();
        let k = e.kept.len();
        let mut weight = vec![0f32; e.full * k];
        for (col, &n) in e.kept.iter().enumerate() {
            if let Some(w) = weight.get_mut(n * k + col) {
                *w = 1.0;
            }
        }
        let w_name = format!("{}.cbam_prune_scatter.weight", add.name);
        let out_name = format!("{branch}.cbam_scattered");
        e.g.initializer
            .push(new_tensor_f32(&w_name, &[e.full, k, 1, 1], &weight));
        let mut scatter = NodeProto {
            name: format!("{}{SCATTER_SUFFIX}", add.name),
            op_type: "Conv".into(),
            input: vec![branch, w_name],
            output: vec![out_name.clone()],
            ..Default::default()
        };
        proto_edit::set_attr_ints(&mut scatter, "kernel_shape", &[1, 1]);
        if let Some(n) = e.g.node.get_mut(node_idx) {
            if let Some(inp) = n.input.get_mut(slot) {
                *inp = out_name;
            }
        }
        e.g.node.insert(node_idx, scatter);
        outcome.scattered_adds.push(add.name.clone());
    }
    Ok(())
}

/// Removes the initializers among `names` that no node reads any more.
fn drop_unread(g: &mut GraphProto, names: &HashSet<String>) {
    let read: HashSet<&String> = g.node.iter().flat_map(|n| &n.input).collect();
    let unread: HashSet<String> = names
        .iter()
        .filter(|n| !read.contains(n))
        .cloned()
        .collect();
    g.initializer.retain(|t| !unread.contains(&t.name));
}

/// Shapes declared for cut values and sliced constants are stale: `value_info` entries
/// (dynamo declares every weight's) are dropped so tract and onnxruntime infer the new ones,
/// and a constant also listed as a graph input (older exporters) gets its new dims.
fn forget_stale_shapes(model: &mut ModelProto, stale: &HashSet<String>) {
    use tract_onnx::pb::{tensor_shape_proto::dimension::Value as Dim, type_proto::Value};
    let Some(g) = model.graph.as_mut() else {
        return;
    };
    g.value_info.retain(|vi| !stale.contains(&vi.name));
    for input in g.input.iter_mut().filter(|i| stale.contains(&i.name)) {
        let Some(t) = g.initializer.iter().find(|t| t.name == input.name) else {
            continue;
        };
        let shape = input
            .r#type
            .as_mut()
            .and_then(|ty| match ty.value.as_mut() {
                Some(Value::TensorType(tt)) => tt.shape.as_mut(),
                _ => None,
            });
        if let Some(shape) = shape {
            shape.dim.truncate(t.dims.len());
            for (d, &n) in shape.dim.iter_mut().zip(&t.dims) {
                d.value = Some(Dim::DimValue(n));
            }
        }
    }
}

/// The kept-channel list of a scatter conv (see [`SCATTER_SUFFIX`]), for tests and the
/// quantizer: `None` unless the weight has the exact 0/1 one-per-column form.
pub fn scatter_kept_list(g: &GraphProto, weight_name: &str) -> Option<Vec<usize>> {
    let t = g.initializer.iter().find(|t| t.name == weight_name)?;
    let dims = dims_usize(t);
    let (&n, &k) = (dims.first()?, dims.get(1)?);
    let w = tensor_f32(t).ok()?;
    let mut kept = Vec::with_capacity(k);
    for col in 0..k {
        let ones: Vec<usize> = (0..n)
            .filter(|&row| w.get(row * k + col) == Some(&1.0))
            .collect();
        let zeros = (0..n)
            .filter(|&row| w.get(row * k + col) == Some(&0.0))
            .count();
        match ones.as_slice() {
            [row] if zeros == n - 1 => kept.push(*row),
            _ => return None,
        }
    }
    kept.windows(2).all(|p| p[0] < p[1]).then_some(kept)
}
