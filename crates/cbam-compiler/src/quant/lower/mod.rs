//! Lowering the float IR to the core's int8 op list, one IR node at a time.

mod cbam;

use std::collections::HashMap;

use super::input::{fold_affine_into_conv, plan_input, InputPlan};
use super::math::{self, QParams};
use super::model::*;
use super::{LowerOptions, QuantError};
use crate::calib::{Range, Ranges};
use crate::ir::{self, Activation, Graph, Node, Op, TensorId};

/// Quantizes `graph` with the calibrated `ranges` (keyed by ONNX value name).
///
/// Flatten and Identity share their input's tensor; a trailing Softmax is dropped (argmax,
/// the device's answer, is unchanged) so the output is the int8 logits.
pub fn lower(graph: &Graph, ranges: &Ranges, opts: &LowerOptions) -> Result<QModel, QuantError> {
    let input_def = graph
        .tensors
        .get(graph.input)
        .ok_or_else(|| QuantError::NoOutput {
            tensor: format!("#{}", graph.input),
        })?;
    let input_plan =
        plan_input(graph, ranges, opts.pixel_input).ok_or_else(|| QuantError::MissingRange {
            node: "(model input)".into(),
            tensor: input_def.name.clone(),
        })?;
    let mut lowering = Lowering {
        graph,
        ranges,
        tensors: Vec::new(),
        ops: Vec::new(),
        map: vec![None; graph.tensors.len()],
        macs: 0,
        opts,
        input_affine: None,
        scatters: HashMap::new(),
    };
    let input = lowering.add_tensor("(model input)", graph.input, input_plan.q)?;
    lowering.input_affine = input_affine_target(graph, &input_plan)?;
    for node in &graph.nodes {
        lowering.lower_node(node)?;
    }
    let output_name = graph
        .tensors
        .get(graph.output)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let output = lowering
        .map
        .get(graph.output)
        .copied()
        .flatten()
        .ok_or(QuantError::NoOutput {
            tensor: output_name,
        })?;
    let count = lowering.tensors.len().max(lowering.ops.len());
    if count > usize::from(u16::MAX) {
        return Err(QuantError::TooLarge { count });
    }
    Ok(QModel {
        tensors: lowering.tensors,
        ops: lowering.ops,
        input,
        output,
        input_is_pixels: input_plan.pixels,
        tensor_map: lowering.map,
        macs: lowering.macs,
    })
}

/// A conv node name and the per-input-channel `(a, d)` it absorbs.
type AffineTarget = (String, Vec<(f32, f32)>);

/// The conv that absorbs the input affine, if there is an affine to absorb.
fn input_affine_target(
    graph: &Graph,
    plan: &InputPlan,
) -> Result<Option<AffineTarget>, QuantError> {
    let Some(affine) = &plan.affine else {
        return Ok(None);
    };
    let consumers: Vec<&Node> = graph
        .nodes
        .iter()
        .filter(|n| n.inputs.contains(&graph.input))
        .collect();
    let foldable = match consumers.as_slice() {
        [only] => matches!(&only.op, Op::Conv(c) if c.groups == 1),
        _ => false,
    };
    let exact_scale = affine.iter().all(|(a, _)| *a == 1.0);
    match (foldable, consumers.first()) {
        (true, Some(node)) => Ok(Some((node.name.clone(), affine.clone()))),
        // A uniform normalisation only leaves a sub-level offset: tolerable unfolded.
        _ if exact_scale => Ok(None),
        _ => Err(QuantError::InputNormalisation {
            detail: format!(
                "the input is read by {} node(s), the first being {}",
                consumers.len(),
                consumers
                    .first()
                    .map(|n| format!("`{}`", n.name))
                    .unwrap_or_else(|| "none".into())
            ),
        }),
    }
}

pub(super) struct Lowering<'a> {
    pub(super) graph: &'a Graph,
    ranges: &'a Ranges,
    pub(super) tensors: Vec<QTensor>,
    ops: Vec<QOp>,
    map: Vec<Option<QTensorId>>,
    pub(super) macs: u64,
    pub(super) opts: &'a LowerOptions,
    input_affine: Option<AffineTarget>,
    /// Scatter convs folded into their Add: output tensor -> (branch tensor, kept list).
    scatters: HashMap<TensorId, (TensorId, Vec<u16>)>,
}

impl Lowering<'_> {
    fn tensor_def(&self, node: &str, id: TensorId) -> Result<&ir::TensorDef, QuantError> {
        self.graph.tensors.get(id).ok_or_else(|| QuantError::Shape {
            node: node.into(),
            detail: format!("refers to tensor #{id}, which the graph does not have"),
        })
    }

    /// Adds a quantized tensor for IR tensor `id` and maps it.
    fn add_tensor(
        &mut self,
        node: &str,
        id: TensorId,
        q: QParams,
    ) -> Result<QTensorId, QuantError> {
        let def = self.tensor_def(node, id)?;
        let shape = nhwc(node, &def.shape)?;
        let t = QTensor {
            name: def.name.clone(),
            shape,
            full_c: shape[2],
            kept: None,
            q,
            source: id,
        };
        self.tensors.push(t);
        let qid = self.tensors.len() - 1;
        if let Some(slot) = self.map.get_mut(id) {
            *slot = Some(qid);
        }
        Ok(qid)
    }

    /// The quantized tensor holding IR tensor `id`.
    pub(super) fn input(&self, node: &Node, id: TensorId) -> Result<QTensorId, QuantError> {
        self.map
            .get(id)
            .copied()
            .flatten()
            .ok_or_else(|| QuantError::NotProduced {
                node: node.name.clone(),
                tensor: self
                    .graph
                    .tensors
                    .get(id)
                    .map(|t| t.name.clone())
                    .unwrap_or_else(|| format!("#{id}")),
            })
    }

    fn single_input(&self, node: &Node) -> Result<QTensorId, QuantError> {
        match node.inputs.as_slice() {
            [only] => self.input(node, *only),
            other => Err(QuantError::Shape {
                node: node.name.clone(),
                detail: format!("expects 1 input, has {}", other.len()),
            }),
        }
    }

    /// The calibrated range of an ONNX value.
    pub(super) fn range(&self, node: &str, name: &str) -> Result<Range, QuantError> {
        self.ranges
            .get(name)
            .copied()
            .ok_or_else(|| QuantError::MissingRange {
                node: node.into(),
                tensor: name.into(),
            })
    }

    /// The calibrated quantization of an ONNX value.
    pub(super) fn range_q(&self, node: &str, name: &str) -> Result<QParams, QuantError> {
        let r = self.range(node, name)?;
        Ok(QParams::from_range(r.min, r.max))
    }

    fn output_q(&self, node: &Node) -> Result<QParams, QuantError> {
        let name = self.tensor_def(&node.name, node.output)?.name.clone();
        self.range_q(&node.name, &name)
    }

    fn push(
        &mut self,
        node: &Node,
        inputs: Vec<QTensorId>,
        q: QParams,
        kind: QOpKind,
    ) -> Result<(), QuantError> {
        let output = self.add_tensor(&node.name, node.output, q)?;
        self.ops.push(QOp {
            node: node.name.clone(),
            inputs,
            output,
            kind,
        });
        Ok(())
    }

    fn alias(&mut self, node: &Node) -> Result<(), QuantError> {
        let input = self.single_input(node)?;
        if let Some(slot) = self.map.get_mut(node.output) {
            *slot = Some(input);
        }
        Ok(())
    }

    fn lower_node(&mut self, node: &Node) -> Result<(), QuantError> {
        match &node.op {
            Op::Conv(conv) => match self.foldable_scatter(node, conv) {
                Some(kept) => {
                    // Lowered with its Add; the branch's range is the scattered range.
                    let branch = node.inputs.first().copied().unwrap_or(usize::MAX);
                    self.scatters.insert(node.output, (branch, kept));
                    Ok(())
                }
                None => self.lower_conv(node, conv),
            },
            Op::Linear(linear) => self.lower_linear(node, linear),
            Op::MaxPool(pool) | Op::AvgPool(pool) => self.lower_pool(node, pool),
            Op::GlobalAvgPool => self.lower_global_avg(node),
            Op::GlobalMaxPool => {
                let input = self.single_input(node)?;
                let q = self.tensors[input].q;
                self.push(node, vec![input], q, QOpKind::GlobalMaxPool)
            }
            Op::Add { act } => self.lower_add(node, *act),
            Op::Mul => self.lower_mul(node),
            Op::Concat => self.lower_concat(node),
            Op::Sigmoid => {
                let input = self.single_input(node)?;
                let lut = Box::new(math::sigmoid_lut(self.tensors[input].q));
                self.push(
                    node,
                    vec![input],
                    QParams::SIGMOID_OUT,
                    QOpKind::Sigmoid(lut),
                )
            }
            Op::Pointwise(f) => {
                let input = self.single_input(node)?;
                let out_q = self.output_q(node)?;
                let f = *f;
                let table = math::lut(self.tensors[input].q, out_q, |x| {
                    f64::from(f.apply(x as f32))
                });
                self.push(node, vec![input], out_q, QOpKind::Lut(Box::new(table)))
            }
            Op::Flatten | Op::Identity => self.alias(node),
            Op::Softmax if node.output == self.graph.output => self.alias(node),
            Op::Cbam(cbam) => {
                let input = self.single_input(node)?;
                let calibrated = self.output_q(node)?;
                let (params, q) = cbam::lower_cbam(self, node, input, cbam, calibrated)?;
                self.push(node, vec![input], q, QOpKind::Cbam(Box::new(params)))
            }
            other => Err(unsupported(node, other)),
        }
    }

    fn lower_conv(&mut self, node: &Node, conv: &ir::Conv) -> Result<(), QuantError> {
        let input = self.single_input(node)?;
        let in_t = &self.tensors[input];
        let (in_q, in_shape) = (in_t.q, in_t.shape);
        if in_shape[2] != conv.in_c {
            return Err(shape_err(
                node,
                format!(
                    "weights expect {} input channels, tensor has {}",
                    conv.in_c, in_shape[2]
                ),
            ));
        }
        let out_q = self.output_q(node)?;
        let [kh, kw] = conv.kernel;
        let taps = kh * kw;
        let depthwise =
            conv.groups == conv.in_c && conv.groups > 1 && conv.out_c.is_multiple_of(conv.in_c);
        if conv.groups != 1 && !depthwise {
            return Err(QuantError::Unsupported {
                node: node.name.clone(),
                op: "Conv".into(),
                reason: format!(
                    "groups = {} is neither 1 nor the channel count {}",
                    conv.groups, conv.in_c
                ),
            });
        }
        let per_out = if depthwise { taps } else { conv.in_c * taps };
        if conv.weight.len() != conv.out_c * per_out {
            return Err(shape_err(
                node,
                format!(
                    "has {} weights, expected {}",
                    conv.weight.len(),
                    conv.out_c * per_out
                ),
            ));
        }
        let (weight, bias) = match &self.input_affine {
            Some((target, affine)) if *target == node.name => {
                fold_affine_into_conv(&conv.weight, &conv.bias, conv.out_c, conv.in_c, affine)
            }
            _ => (conv.weight.clone(), conv.bias.clone()),
        };
        let qw = math::quantize_per_channel(&weight, conv.out_c);
        let bias = math::quantize_bias(&bias, in_q.scale, &qw.scales);
        let (mult, shift) = math::channel_requantizers(in_q.scale, &qw.scales, out_q.scale);
        let weights = if depthwise {
            oihw_to_hwo(&qw.values, conv.out_c, taps)
        } else {
            oihw_to_ohwi(&qw.values, conv.out_c, conv.in_c, taps)
        };
        let out_shape = nhwc(&node.name, &self.tensor_def(&node.name, node.output)?.shape)?;
        let in_per_out = if depthwise { 1 } else { conv.in_c };
        self.macs += (out_shape.iter().product::<usize>() * taps * in_per_out) as u64;
        let params = ConvParams {
            kernel: conv.kernel,
            stride: conv.stride,
            dilation: conv.dilation,
            pads: conv.pads,
            clamp: clamp_for(conv.act, out_q),
            weights,
            weight_scales: qw.scales,
            bias,
            mult,
            shift,
        };
        let kind = if depthwise {
            QOpKind::Depthwise {
                conv: params,
                depth_multiplier: conv.out_c / conv.in_c,
            }
        } else {
            QOpKind::Conv(params)
        };
        self.push(node, vec![input], out_q, kind)
    }

    fn lower_linear(&mut self, node: &Node, linear: &ir::Linear) -> Result<(), QuantError> {
        let input = self.single_input(node)?;
        let in_t = &self.tensors[input];
        let (in_q, [h, w, c]) = (in_t.q, in_t.shape);
        if h * w * c != linear.in_features
            || linear.weight.len() != linear.in_features * linear.out_features
        {
            return Err(shape_err(
                node,
                format!(
                    "Linear {}x{} does not fit its input of {} values ({} weights)",
                    linear.out_features,
                    linear.in_features,
                    h * w * c,
                    linear.weight.len()
                ),
            ));
        }
        let out_q = self.output_q(node)?;
        let qw = math::quantize_per_channel(&linear.weight, linear.out_features);
        let weights = if h * w > 1 {
            nchw_columns_to_nhwc(&qw.values, linear.out_features, [c, h, w])
        } else {
            qw.values
        };
        let bias = math::quantize_bias(&linear.bias, in_q.scale, &qw.scales);
        let (mult, shift) = math::channel_requantizers(in_q.scale, &qw.scales, out_q.scale);
        self.macs += (linear.in_features * linear.out_features) as u64;
        let params = FcParams {
            weights,
            weight_scales: qw.scales,
            bias,
            mult,
            shift,
            clamp: clamp_for(linear.act, out_q),
        };
        self.push(node, vec![input], out_q, QOpKind::FullyConnected(params))
    }

    fn lower_pool(&mut self, node: &Node, pool: &ir::Pool) -> Result<(), QuantError> {
        let input = self.single_input(node)?;
        // Pools keep their input's quantization: max and average never leave its range.
        let q = self.tensors[input].q;
        let params = PoolParams {
            kernel: pool.kernel,
            stride: pool.stride,
            pads: pool.pads,
            clamp: Clamp::NONE,
        };
        let kind = if matches!(node.op, Op::MaxPool(_)) {
            QOpKind::MaxPool(params)
        } else {
            QOpKind::AvgPool(params)
        };
        self.push(node, vec![input], q, kind)
    }

    fn lower_global_avg(&mut self, node: &Node) -> Result<(), QuantError> {
        let input = self.single_input(node)?;
        let in_t = &self.tensors[input];
        let (in_q, area) = (in_t.q, in_t.shape[0] * in_t.shape[1]);
        let out_q = self.output_q(node)?;
        let real = f64::from(in_q.scale) / (f64::from(out_q.scale) * area.max(1) as f64);
        self.push(
            node,
            vec![input],
            out_q,
            QOpKind::GlobalAvgPool(Requant::from_real(real)),
        )
    }

    fn two_inputs(&self, node: &Node) -> Result<(QTensorId, QTensorId), QuantError> {
        match node.inputs.as_slice() {
            [a, b] => Ok((self.input(node, *a)?, self.input(node, *b)?)),
            other => Err(shape_err(
                node,
                format!("expects 2 inputs, has {}", other.len()),
            )),
        }
    }

    /// The kept list of a pruning scatter conv that the core's ADD can do instead: a 0/1
    /// selection whose output only one Add reads, widening a dense, unpruned tensor.
    fn foldable_scatter(&self, node: &Node, conv: &ir::Conv) -> Option<Vec<u16>> {
        let kept = super::scatter::selection_kept(conv)?;
        let [branch] = node.inputs.as_slice() else {
            return None;
        };
        let branch_q = self.map.get(*branch).copied().flatten()?;
        let t = self.tensors.get(branch_q)?;
        if t.kept.is_some() || *branch == self.graph.input || t.shape[2] != conv.in_c {
            return None;
        }
        if node.output == self.graph.output {
            return None;
        }
        let mut readers = self
            .graph
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter().map(move |i| (n, *i)))
            .filter(|(_, i)| *i == node.output);
        match (readers.next(), readers.next()) {
            // The core scatters one input of an ADD only, so a second scatter stays a conv.
            (Some((add, _)), None)
                if matches!(add.op, Op::Add { .. })
                    && !add.inputs.iter().any(|i| self.scatters.contains_key(i)) =>
            {
                Some(kept)
            }
            _ => None,
        }
    }

    fn lower_add(&mut self, node: &Node, act: Activation) -> Result<(), QuantError> {
        let scattered = node
            .inputs
            .iter()
            .position(|i| self.scatters.contains_key(i));
        let (a, b) = match (scattered, node.inputs.as_slice()) {
            (Some(slot), [x, y]) => {
                let (dense, scatter) = if slot == 0 { (*y, *x) } else { (*x, *y) };
                let (branch, kept) = self
                    .scatters
                    .get(&scatter)
                    .cloned()
                    .ok_or_else(|| shape_err(node, "lost its scatter".into()))?;
                let dense = self.input(node, dense)?;
                let branch = self.input(node, branch)?;
                self.mark_pruned(node, dense, branch, kept)?;
                // Addition commutes: the core takes the pruned tensor as its second input.
                (dense, branch)
            }
            _ => {
                let (a, b) = self.two_inputs(node)?;
                let (ta, tb) = (&self.tensors[a], &self.tensors[b]);
                if ta.shape != tb.shape {
                    return Err(shape_err(
                        node,
                        format!(
                            "Add of shapes {:?} and {:?} (broadcast Add is not supported)",
                            ta.shape, tb.shape
                        ),
                    ));
                }
                (a, b)
            }
        };
        let (qa, qb) = (self.tensors[a].q, self.tensors[b].q);
        let out_q = self.output_q(node)?;
        // TFLite's Add: both inputs are brought to twice the larger scale with 20 bits of
        // headroom, summed, then rescaled to the output.
        let left_shift = 20;
        let twice_max = 2.0 * f64::from(qa.scale.max(qb.scale));
        let params = AddParams {
            left_shift,
            in1: Requant::from_real(f64::from(qa.scale) / twice_max),
            in2: Requant::from_real(f64::from(qb.scale) / twice_max),
            out: Requant::from_real(
                twice_max / ((1u64 << left_shift) as f64 * f64::from(out_q.scale)),
            ),
            clamp: clamp_for(act, out_q),
        };
        self.push(node, vec![a, b], out_q, QOpKind::Add(params))
    }

    /// Gives the scatter's branch tensor its kept list, after checking it lands on `dense`.
    fn mark_pruned(
        &mut self,
        node: &Node,
        dense: QTensorId,
        branch: QTensorId,
        kept: Vec<u16>,
    ) -> Result<(), QuantError> {
        let [h, w, full_c] = self.tensors[dense].shape;
        let t = &mut self.tensors[branch];
        let fits = t.shape[..2] == [h, w]
            && t.shape[2] == kept.len()
            && kept.last().is_some_and(|last| usize::from(*last) < full_c);
        if !fits {
            return Err(shape_err(
                node,
                format!(
                    "scatters a {:?} branch with {} kept channels onto {:?}",
                    t.shape,
                    kept.len(),
                    [h, w, full_c]
                ),
            ));
        }
        t.full_c = full_c;
        t.kept = Some(kept);
        Ok(())
    }

    fn lower_mul(&mut self, node: &Node) -> Result<(), QuantError> {
        let (a, b) = self.two_inputs(node)?;
        // Mul commutes; the core broadcasts its second input (`scale * x` in torchvision's
        // SqueezeExcitation puts the gate first).
        let (a, b) = if self.tensors[a].shape.iter().product::<usize>()
            < self.tensors[b].shape.iter().product::<usize>()
        {
            (b, a)
        } else {
            (a, b)
        };
        let (ta, tb) = (&self.tensors[a], &self.tensors[b]);
        let [h, w, c] = ta.shape;
        if tb.shape != ta.shape && tb.shape != [1, 1, c] && tb.shape != [h, w, 1] {
            return Err(shape_err(node, format!("Mul of {:?} by {:?}: the second input must match or broadcast per channel or per pixel", ta.shape, tb.shape)));
        }
        let real = f64::from(ta.q.scale) * f64::from(tb.q.scale);
        let out_q = self.output_q(node)?;
        let params = MulParams {
            out: Requant::from_real(real / f64::from(out_q.scale)),
            clamp: Clamp::NONE,
        };
        self.push(node, vec![a, b], out_q, QOpKind::Mul(params))
    }

    fn lower_concat(&mut self, node: &Node) -> Result<(), QuantError> {
        if node.inputs.is_empty() || node.inputs.len() > 4 {
            return Err(QuantError::Unsupported {
                node: node.name.clone(),
                op: "Concat".into(),
                reason: format!("{} inputs; the core concatenates 1 to 4", node.inputs.len()),
            });
        }
        let inputs = node
            .inputs
            .iter()
            .map(|i| self.input(node, *i))
            .collect::<Result<Vec<_>, _>>()?;
        let first = &self.tensors[inputs[0]];
        let (h, w) = (first.shape[0], first.shape[1]);
        if inputs.iter().any(|i| self.tensors[*i].shape[..2] != [h, w]) {
            return Err(shape_err(
                node,
                "Concat inputs differ in height or width (only channel concat is supported)".into(),
            ));
        }
        let same_q = inputs.iter().all(|i| self.tensors[*i].q == first.q);
        let out_q = if same_q {
            first.q
        } else {
            self.output_q(node)?
        };
        let requants = inputs
            .iter()
            .map(|i| {
                let q = self.tensors[*i].q;
                if q == out_q {
                    Requant::COPY
                } else {
                    Requant::from_real(f64::from(q.scale) / f64::from(out_q.scale))
                }
            })
            .collect();
        self.push(node, inputs, out_q, QOpKind::Concat(requants))
    }
}

fn unsupported(node: &Node, op: &Op) -> QuantError {
    let (name, reason) = match op {
        Op::BatchNorm(_) => (
            "BatchNormalization",
            "it was not folded into a preceding Conv (run the optimisation passes first)",
        ),
        Op::Relu | Op::Clip(..) => (
            "Relu/Clip",
            "a standalone activation must be fused into the Conv, Linear or Add before it",
        ),
        Op::ChannelMean | Op::ChannelMax => (
            "ReduceMean/ReduceMax over channels",
            "only supported inside a recognised CBAM block",
        ),
        Op::Softmax => (
            "Softmax",
            "only a final Softmax is supported (it is dropped)",
        ),
        _ => ("op", "no int8 kernel for it"),
    };
    QuantError::Unsupported {
        node: node.name.clone(),
        op: name.into(),
        reason: reason.into(),
    }
}

fn shape_err(node: &Node, detail: String) -> QuantError {
    QuantError::Shape {
        node: node.name.clone(),
        detail,
    }
}

/// `[c, h, w]` -> `[h, w, c]`, `[n]` -> `[1, 1, n]`.
pub(super) fn nhwc(node: &str, shape: &[usize]) -> Result<[usize; 3], QuantError> {
    let nhwc = match shape {
        [c, h, w] => [*h, *w, *c],
        [n] => [1, 1, *n],
        other => {
            return Err(QuantError::Shape {
                node: node.into(),
                detail: format!("tensor shape {other:?} is neither [c, h, w] nor [n]"),
            })
        }
    };
    if nhwc.iter().any(|d| *d == 0 || *d > usize::from(u16::MAX)) {
        return Err(QuantError::Shape {
            node: node.into(),
            detail: format!("tensor shape {shape:?} has a dimension of 0 or above 65535"),
        });
    }
    Ok(nhwc)
}

/// The fused activation as an int8 clamp of the output.
pub(super) fn clamp_for(act: Activation, q: QParams) -> Clamp {
    let level = |real: f32| {
        (f64::from(q.zero_point) + (f64::from(real) / f64::from(q.scale)).round())
            .clamp(-128.0, 127.0) as i32
    };
    match act {
        Activation::None => Clamp::NONE,
        Activation::Relu => Clamp {
            min: level(0.0),
            max: 127,
        },
        Activation::Clip(lo, hi) => Clamp {
            min: level(lo),
            max: level(hi),
        },
    }
}

/// `[o][i][taps]` -> `[o][taps][i]`.
pub(super) fn oihw_to_ohwi(w: &[i8], out_c: usize, in_c: usize, taps: usize) -> Vec<i8> {
    let mut out = vec![0i8; w.len()];
    for o in 0..out_c {
        for i in 0..in_c {
            for t in 0..taps {
                out[(o * taps + t) * in_c + i] = w[(o * in_c + i) * taps + t];
            }
        }
    }
    out
}

/// `[o][1][taps]` -> `[taps][o]` (TFLite's depthwise 1HWO).
fn oihw_to_hwo(w: &[i8], out_c: usize, taps: usize) -> Vec<i8> {
    let mut out = vec![0i8; w.len()];
    for o in 0..out_c {
        for t in 0..taps {
            out[t * out_c + o] = w[o * taps + t];
        }
    }
    out
}

/// FC weight columns from ONNX's NCHW flattening to the core's NHWC flattening.
fn nchw_columns_to_nhwc(w: &[i8], rows: usize, [c, h, wd]: [usize; 3]) -> Vec<i8> {
    let n_in = c * h * wd;
    let mut out = vec![0i8; w.len()];
    for r in 0..rows {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..wd {
                    out[r * n_in + (y * wd + x) * c + ch] = w[r * n_in + (ch * h + y) * wd + x];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
