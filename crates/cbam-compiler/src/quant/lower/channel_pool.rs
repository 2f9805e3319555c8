//! Channel means and maxima outside a fused CBAM block (spatial attention run from its
//! pieces) as CHANNEL_POOL (FORMAT.md op 14), in their input's quantization: the mean and
//! the maximum of int8 levels are levels of the same scale and zero point.
//!
//! A Concat of the mean and the max of one tensor (either order, nothing else reading
//! either) becomes one op writing both in one pass over the tensor. Both keep the input's
//! quantization, so that concat is a plain copy and fusing it loses nothing. Every other
//! statistic is an op of its own.

use std::collections::{HashMap, HashSet};

use super::{shape_err, Lowering};
use crate::ir::{Graph, Node, Op, TensorId};
use crate::quant::model::{ChannelPoolParams, QOpKind, QTensorId};
use crate::quant::QuantError;

/// The concats of a graph that become one CHANNEL_POOL, found in one pass.
#[derive(Debug, Default)]
pub(super) struct Fusions {
    /// Concat output -> the pooled tensor and where each statistic goes.
    by_concat: HashMap<TensorId, (TensorId, ChannelPoolParams)>,
    /// Outputs of the statistics whose value the concat's op writes.
    absorbed: HashSet<TensorId>,
}

impl Fusions {
    pub(super) fn find(graph: &Graph) -> Self {
        let mut producer = vec![None; graph.tensors.len()];
        let mut uses = vec![0usize; graph.tensors.len()];
        for node in &graph.nodes {
            if let Some(slot) = producer.get_mut(node.output) {
                *slot = Some(node);
            }
            for &t in &node.inputs {
                if let Some(n) = uses.get_mut(t) {
                    *n += 1;
                }
            }
        }
        if let Some(n) = uses.get_mut(graph.output) {
            *n += 1;
        }
        let mut fusions = Fusions::default();
        for node in graph.nodes.iter().filter(|n| n.op == Op::Concat) {
            let [a, b] = node.inputs[..] else { continue };
            let stat = |t: TensorId| {
                let p: &Node = producer.get(t).copied().flatten()?;
                let [x] = p.inputs[..] else { return None };
                let only_here = uses.get(t) == Some(&1);
                only_here.then_some((p.op.clone(), x))
            };
            let params = match (stat(a), stat(b)) {
                (Some((Op::ChannelMean, x)), Some((Op::ChannelMax, y))) if x == y => (
                    x,
                    ChannelPoolParams {
                        mean: Some(0),
                        max: Some(1),
                    },
                ),
                (Some((Op::ChannelMax, x)), Some((Op::ChannelMean, y))) if x == y => (
                    x,
                    ChannelPoolParams {
                        mean: Some(1),
                        max: Some(0),
                    },
                ),
                _ => continue,
            };
            fusions.by_concat.insert(node.output, params);
            fusions.absorbed.extend([a, b]);
        }
        fusions
    }
}

impl Lowering<'_> {
    /// A ChannelMean or ChannelMax node: nothing if a fused concat writes its value, else
    /// a CHANNEL_POOL of its one statistic.
    pub(super) fn lower_channel_stat(&mut self, node: &Node) -> Result<(), QuantError> {
        if self.channel_pools.absorbed.contains(&node.output) {
            return Ok(());
        }
        let input = self.single_input(node)?;
        let params = if node.op == Op::ChannelMean {
            ChannelPoolParams {
                mean: Some(0),
                max: None,
            }
        } else {
            ChannelPoolParams {
                mean: None,
                max: Some(0),
            }
        };
        self.push_channel_pool(node, input, params)
    }

    /// The CHANNEL_POOL a Concat of both statistics of one tensor became, if it did; the
    /// op is the concat's (its output, its node name).
    pub(super) fn lower_fused_concat(&mut self, node: &Node) -> Option<Result<(), QuantError>> {
        let (x, params) = *self.channel_pools.by_concat.get(&node.output)?;
        Some(
            self.input(node, x)
                .and_then(|input| self.push_channel_pool(node, input, params)),
        )
    }

    fn push_channel_pool(
        &mut self,
        node: &Node,
        input: QTensorId,
        params: ChannelPoolParams,
    ) -> Result<(), QuantError> {
        let in_t = &self.tensors[input];
        let (q, [h, w, _]) = (in_t.q, in_t.shape);
        let n = usize::from(params.mean.is_some()) + usize::from(params.max.is_some());
        let out = super::nhwc(&node.name, &self.tensor_def(&node.name, node.output)?.shape)?;
        if out != [h, w, n] {
            return Err(shape_err(
                node,
                format!(
                    "pools an [{h}, {w}] map over channels into {out:?}, expected [{h}, {w}, {n}]"
                ),
            ));
        }
        self.push(node, vec![input], q, QOpKind::ChannelPool(params))
    }
}
