//! Empirical bias correction (Nagel et al., "Data-Free Quantization", 2019, §4.2; AIMET's
//! empirical variant): int8 weights and int8 inputs shift a layer's mean output away from
//! the float layer's, and a ReLU turns that shift into lost or spurious activations. For
//! each conv and fully connected layer, in execution order, the mean pre-activation output
//! over the calibration images is measured for the float layer (tract's float input) and
//! for the int8 layer as the core runs it (the core's int8 input, so the error of every
//! earlier layer is included); the difference is subtracted from the float bias.
//!
//! Optionally each layer's weights are first re-rounded against the same int8 inputs
//! ([`rounding`]), and its bias is then corrected for the new weights. With the attention
//! pass ([`attention_bias`]) each CBAM block's pre-sigmoid logit biases are corrected in
//! the same walk.
//!
//! Both land in the float graph (biases; weights placed exactly on their chosen int8
//! levels), so the lowering and the QDQ writer quantize the same numbers and keep agreeing.

mod attention_bias;
mod channel_means;
mod patches;
mod rounding;

use channel_means::{Geometry, TapSums};

use super::core_resume::Resumable;
use super::core_run::CoreRunError;
use crate::calib::Ranges;
use crate::float_run::{FloatModel, FloatRunError};
use crate::ir::{Graph, Op};
use crate::quant::{self, LowerOptions, QModel, QOpKind, QuantError};

#[derive(Debug, thiserror::Error)]
pub enum BiasCorrectionError {
    #[error(transparent)]
    Quant(#[from] QuantError),
    #[error(transparent)]
    FloatRun(#[from] FloatRunError),
    #[error("bias correction could not run the int8 model")]
    Run(#[from] CoreRunError),
    #[error("bias correction: layer `{node}` lost its shape or weights between lowerings ({detail}); a compiler bug")]
    Layer { node: String, detail: String },
}

/// What the correction did to one layer, for the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CorrectedLayer {
    pub node: String,
    /// Mean over channels of `|shift|`, in the layer's output units.
    pub mean_abs_shift: f64,
    /// Largest `|shift|` of any channel, in the layer's output units.
    pub max_abs_shift: f64,
    /// Weights whose int8 level the rounding optimisation moved off round-to-nearest.
    pub rounding_flips: usize,
    /// What the shifted bias feeds.
    #[serde(default)]
    pub target: CorrectionTarget,
}

/// The value whose mean a bias correction matched to float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionTarget {
    /// A conv or linear layer's pre-activation output.
    #[default]
    Layer,
    /// A CBAM block's channel attention logit (the second MLP layer's bias).
    ChannelLogit,
    /// A CBAM block's spatial attention logit (the spatial conv's bias).
    SpatialLogit,
}

/// Which corrections [`correct_biases`] runs besides the conv/linear biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CorrectionPasses {
    /// Re-round each conv/linear layer's weights by its output error first.
    pub rounding: bool,
    /// Also correct each CBAM block's channel and spatial pre-sigmoid logits.
    pub attention: bool,
}

/// Images whose patches the rounding optimisation reads, and patch rows it keeps per
/// layer: enough rows to pin down a 3x3x64 kernel many times over, few enough that the
/// `n x n` Gram matrix stays a fraction of a second.
const ROUNDING_IMAGES: usize = 128;
const ROUNDING_ROWS: usize = 8192;

/// Bytes of int8 core state kept for all images at once (each image's live tensors at the
/// layer being corrected, see [`Resumable`]). A ResNet-18 at 224x224 keeps under 1 MB per
/// image, so a few hundred images fit; past the budget the correction reads only the first
/// images that fit: a per-channel mean over hundreds of images, each with hundreds of
/// output positions, no longer moves by a bias step.
const STATE_BUDGET: usize = 256 << 20;

/// A conv or linear IR node that the lowering turned into a core op.
struct Target {
    /// Index into `graph.nodes`.
    node: usize,
    geometry: Geometry,
    out_c: usize,
    groups: usize,
    /// Mean pre-activation output of the float layer, with its original bias.
    float_means: Vec<f64>,
}

/// Returns `graph` with corrected conv/linear biases (and, with `rounding`, re-rounded
/// weights) and what changed per layer.
///
/// The layers are corrected in execution order and a correction changes only its own
/// layer's op, so the core's run of each image resumes at the next layer from where it
/// stopped ([`Resumable`]): one model run per image in all, not one per layer.
pub fn correct_biases(
    graph: &Graph,
    ranges: &Ranges,
    opts: &LowerOptions,
    float: &FloatModel,
    images: &[Vec<f32>],
    passes: CorrectionPasses,
) -> Result<(Graph, Vec<CorrectedLayer>), BiasCorrectionError> {
    let first = quant::lower(graph, ranges, opts)?;
    let mut targets = find_targets(graph, &first);
    let ops = targets
        .iter()
        .map(|t| target_op(&first, graph, t))
        .collect::<Result<Vec<_>, _>>()?;
    let state = Resumable::state_bytes(&first, ops.iter().copied())?.max(1);
    let images = &images[..images.len().min((STATE_BUDGET / state).max(1))];
    float_means(graph, float, images, &mut targets)?;
    let attention = if passes.attention {
        attention_bias::float_logits(graph, float, images)?
    } else {
        Vec::new()
    };
    let rounding_images = &images[..images.len().min(ROUNDING_IMAGES)];
    let mut float_rows = patches::FloatRows::new(if passes.rounding {
        targets
            .iter()
            .zip(&ops)
            .enumerate()
            .filter(|(_, (t, _))| roundable(graph, t))
            .map(|(k, (t, &op))| {
                let name = input_name(graph, t)?;
                patches::Layout::new(&first, op, t.geometry, name)
                    .map(|l| (k, l))
                    .ok_or_else(|| layer_error(graph, t, "no input tensor"))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    });
    let mut states = Resumable::new(&first, images)?;
    // Blocks are corrected in execution order with the layers, so every measurement
    // already sees the corrections upstream of it.
    let mut blocks = attention.iter().peekable();
    let mut corrected = graph.clone();
    let mut layers = Vec::with_capacity(targets.len() + 2 * attention.len());
    for (k, (target, &op)) in targets.iter().zip(&ops).enumerate() {
        while let Some(block) = blocks.next_if(|b| b.node() < target.node) {
            layers.extend(attention_bias::correct_block(
                &mut corrected,
                ranges,
                opts,
                &mut states,
                images,
                block,
            )?);
        }
        // The layer's input does not depend on the layer: one advance serves the rounding
        // and the bias, before and after the layer's own weights change.
        let mut model = quant::lower(&corrected, ranges, opts)?;
        states.advance(&model, images, op)?;
        let inputs = layer_inputs(&model, graph, target, op, &states, images.len())?;
        let flips = if passes.rounding && roundable(graph, target) {
            let rows = float_rows.take(k, float, rounding_images)?;
            let patches = gather_patches(&model, graph, target, op, &inputs, rows)?;
            let flips = round_weights(&mut corrected, target, &patches);
            model = quant::lower(&corrected, ranges, opts)?;
            flips
        } else {
            0
        };
        let quant_means = quant_means(&model, &corrected, target, &inputs)?;
        let shift: Vec<f64> = quant_means
            .iter()
            .zip(&target.float_means)
            .map(|(q, f)| q - f)
            .collect();
        apply_shift(&mut corrected, target, &shift)?;
        layers.push(CorrectedLayer {
            node: node_name(graph, target.node),
            mean_abs_shift: shift.iter().map(|s| s.abs()).sum::<f64>() / shift.len().max(1) as f64,
            max_abs_shift: shift.iter().fold(0.0, |m, s| m.max(s.abs())),
            rounding_flips: flips,
            target: CorrectionTarget::Layer,
        });
    }
    for block in blocks {
        layers.extend(attention_bias::correct_block(
            &mut corrected,
            ranges,
            opts,
            &mut states,
            images,
            block,
        )?);
    }
    Ok((corrected, layers))
}

fn layer_error(graph: &Graph, target: &Target, detail: &str) -> BiasCorrectionError {
    BiasCorrectionError::Layer {
        node: node_name(graph, target.node),
        detail: detail.into(),
    }
}

/// Index of the target's op in `model` (the first op lowered from its node).
fn target_op(model: &QModel, graph: &Graph, target: &Target) -> Result<usize, BiasCorrectionError> {
    let name = node_name(graph, target.node);
    model
        .ops
        .iter()
        .position(|o| o.node == name)
        .ok_or_else(|| layer_error(graph, target, "no op"))
}

/// The IR name of the target's input, as tract names it.
fn input_name(graph: &Graph, target: &Target) -> Result<String, BiasCorrectionError> {
    graph
        .nodes
        .get(target.node)
        .and_then(|n| n.inputs.first().copied())
        .and_then(|i| graph.tensors.get(i))
        .map(|t| t.name.clone())
        .ok_or_else(|| layer_error(graph, target, "no input"))
}

/// The target op's int8 input for each image, from the core's state at its boundary.
fn layer_inputs<'s>(
    model: &QModel,
    graph: &Graph,
    target: &Target,
    op: usize,
    states: &'s Resumable,
    images: usize,
) -> Result<Vec<&'s [i8]>, BiasCorrectionError> {
    let input = model
        .ops
        .get(op)
        .and_then(|o| o.inputs.first().copied())
        .ok_or_else(|| layer_error(graph, target, "no input"))?;
    (0..images)
        .map(|i| {
            states
                .tensor(i, input)
                .ok_or_else(|| layer_error(graph, target, "its input is not live before it"))
        })
        .collect()
}

fn node_name(graph: &Graph, index: usize) -> String {
    graph
        .nodes
        .get(index)
        .map(|n| n.name.clone())
        .unwrap_or_default()
}

/// Conv and linear nodes that became a CONV2D, DEPTHWISE or FULLY_CONNECTED op (a pruning
/// scatter folded into an ADD has no bias to correct).
fn find_targets(graph: &Graph, model: &QModel) -> Vec<Target> {
    let lowered = |name: &str| {
        model.ops.iter().any(|op| {
            op.node == name
                && matches!(
                    op.kind,
                    QOpKind::Conv(_) | QOpKind::Depthwise { .. } | QOpKind::FullyConnected(_)
                )
        })
    };
    graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| lowered(&n.name))
        .filter_map(|(i, n)| {
            let input = graph.tensors.get(*n.inputs.first()?)?;
            let (geometry, out_c, groups) = match &n.op {
                Op::Conv(c) => {
                    let [ch, h, w] = *input.shape.as_slice() else {
                        return None;
                    };
                    let g = Geometry {
                        input: [ch, h, w],
                        kernel: c.kernel,
                        stride: c.stride,
                        dilation: c.dilation,
                        pads: c.pads,
                    };
                    (g, c.out_c, c.groups)
                }
                Op::Linear(l) => (Geometry::dense(l.in_features), l.out_features, 1),
                _ => return None,
            };
            Some(Target {
                node: i,
                geometry,
                out_c,
                groups,
                float_means: Vec::new(),
            })
        })
        .collect()
}

/// One tract pass over the images: every target's float input, reduced to tap sums.
fn float_means(
    graph: &Graph,
    float: &FloatModel,
    images: &[Vec<f32>],
    targets: &mut [Target],
) -> Result<(), BiasCorrectionError> {
    let input_of = |t: &Target| {
        graph
            .nodes
            .get(t.node)
            .and_then(|n| n.inputs.first().copied())
    };
    let names: Vec<String> = targets
        .iter()
        .filter_map(|t| input_of(t).filter(|i| *i != graph.input))
        .filter_map(|i| graph.tensors.get(i).map(|d| d.name.clone()))
        .collect();
    // Two layers may read one tensor (a residual block's branch and its shortcut).
    let names: Vec<String> = names
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut sums: Vec<TapSums> = targets.iter().map(|t| TapSums::new(t.geometry)).collect();
    for image in images {
        let values = float.run_with_values(image, &names)?;
        for (t, s) in targets.iter().zip(sums.iter_mut()) {
            let input = input_of(t).filter(|i| *i != graph.input);
            let x = match input.and_then(|i| graph.tensors.get(i)) {
                Some(def) => values.get(&def.name).map(Vec::as_slice).unwrap_or(&[]),
                None => image.as_slice(),
            };
            let [_, h, w] = t.geometry.input;
            s.add(|c, y, xx| x.get((c * h + y) * w + xx).map_or(0.0, |v| f64::from(*v)));
        }
    }
    for (t, s) in targets.iter_mut().zip(&sums) {
        let (weight, bias, per_out) = match graph.nodes.get(t.node).map(|n| &n.op) {
            Some(Op::Conv(c)) => (&c.weight, &c.bias, c.weight.len() / c.out_c.max(1)),
            Some(Op::Linear(l)) => (&l.weight, &l.bias, l.in_features),
            _ => continue,
        };
        let taps = t.geometry.taps();
        t.float_means = s.output_means(
            t.out_c,
            t.groups,
            |o| bias.get(o).map_or(0.0, |b| f64::from(*b)),
            |o, j, tap| {
                weight
                    .get(o * per_out + j * taps + tap)
                    .map_or(0.0, |w| f64::from(*w))
            },
        );
    }
    Ok(())
}

/// Mean pre-activation output of the target's int8 op, with the core's int8 inputs (one
/// per image).
fn quant_means(
    model: &QModel,
    graph: &Graph,
    target: &Target,
    inputs: &[&[i8]],
) -> Result<Vec<f64>, BiasCorrectionError> {
    let name = node_name(graph, target.node);
    let layer_err = |detail: &str| BiasCorrectionError::Layer {
        node: name.clone(),
        detail: detail.into(),
    };
    let op = model
        .ops
        .iter()
        .find(|o| o.node == name)
        .ok_or_else(|| layer_err("no op"))?;
    let &input_id = op.inputs.first().ok_or_else(|| layer_err("no input"))?;
    let input_t = model
        .tensors
        .get(input_id)
        .ok_or_else(|| layer_err("no input tensor"))?;
    let [h, w, c] = input_t.shape;
    let (zp, s_in) = (f64::from(input_t.q.zero_point), f64::from(input_t.q.scale));
    let real = |q: Option<&i8>| q.map_or(0.0, |q| s_in * (f64::from(*q) - zp));
    let (out_c, taps) = (target.out_c, target.geometry.taps());
    let conv_sums = || {
        let mut sums = TapSums::new(Geometry {
            input: [c, h, w],
            ..target.geometry
        });
        for x in inputs {
            // The core's input is NHWC; the sums index it as (c, y, x).
            sums.add(|ch, y, xx| real(x.get((y * w + xx) * c + ch)));
        }
        sums
    };
    let weight = |weights: &[i8], scales: &[f32], index: usize, o: usize| {
        f64::from(weights.get(index).copied().unwrap_or(0)) * scale_of(scales, o)
    };
    Ok(match &op.kind {
        QOpKind::Conv(p) => conv_sums().output_means(
            out_c,
            1,
            |o| dequant_bias(&p.bias, &p.weight_scales, s_in, o),
            |o, i, t| weight(&p.weights, &p.weight_scales, (o * taps + t) * c + i, o),
        ),
        QOpKind::Depthwise { conv: p, .. } => conv_sums().output_means(
            out_c,
            target.groups,
            |o| dequant_bias(&p.bias, &p.weight_scales, s_in, o),
            |o, _, t| weight(&p.weights, &p.weight_scales, t * out_c + o, o),
        ),
        QOpKind::FullyConnected(p) => {
            // The core flattens NHWC and its weights are permuted to match: use the vector as is.
            let n_in = h * w * c;
            let mut flat = TapSums::new(Geometry::dense(n_in));
            for x in inputs {
                flat.add(|i, _, _| real(x.get(i)));
            }
            flat.output_means(
                out_c,
                1,
                |o| dequant_bias(&p.bias, &p.weight_scales, s_in, o),
                |o, i, _| weight(&p.weights, &p.weight_scales, o * n_in + i, o),
            )
        }
        _ => return Err(layer_err("is no longer a conv or linear op")),
    })
}

fn scale_of(scales: &[f32], o: usize) -> f64 {
    scales.get(o).map_or(0.0, |s| f64::from(*s))
}

fn dequant_bias(bias: &[i32], scales: &[f32], s_in: f64, o: usize) -> f64 {
    bias.get(o).map_or(0.0, |b| f64::from(*b)) * s_in * scale_of(scales, o)
}

/// Dense convs and linear layers; not the conv that absorbs the input normalisation (the
/// lowering rescales its weights, so levels chosen here would not survive).
fn roundable(graph: &Graph, target: &Target) -> bool {
    let Some(node) = graph.nodes.get(target.node) else {
        return false;
    };
    let reads_input = node.inputs.contains(&graph.input);
    match &node.op {
        Op::Conv(c) => c.groups == 1 && !reads_input,
        Op::Linear(_) => !reads_input,
        _ => false,
    }
}

/// The target's input patches over the rounding images: int8 from the core's `inputs`,
/// float from the rows tract gave for the same images and positions.
fn gather_patches(
    model: &QModel,
    graph: &Graph,
    target: &Target,
    op: usize,
    inputs: &[&[i8]],
    float_rows: Vec<f32>,
) -> Result<rounding::Patches, BiasCorrectionError> {
    let input_t = model
        .ops
        .get(op)
        .and_then(|o| o.inputs.first())
        .and_then(|&i| model.tensors.get(i))
        .ok_or_else(|| layer_error(graph, target, "no input tensor"))?;
    let layout = patches::Layout::new(model, op, target.geometry, String::new())
        .ok_or_else(|| layer_error(graph, target, "no input tensor"))?;
    let quant = &inputs[..inputs.len().min(ROUNDING_IMAGES)];
    let zp_scale = (f64::from(input_t.q.zero_point), f64::from(input_t.q.scale));
    Ok(layout.patches(quant, zp_scale, float_rows))
}

/// Re-rounds every output channel of the target and places its float weights exactly on
/// the chosen levels; returns how many weights left round-to-nearest.
fn round_weights(graph: &mut Graph, target: &Target, patches: &rounding::Patches) -> usize {
    let Some(node) = graph.nodes.get_mut(target.node) else {
        return 0;
    };
    let weight = match &mut node.op {
        Op::Conv(c) => &mut c.weight,
        Op::Linear(l) => &mut l.weight,
        _ => return 0,
    };
    let n = patches.n;
    if patches.rows() == 0 || weight.len() != n * target.out_c {
        return 0;
    }
    let h = patches.gram();
    // Output channels are rounded independently of each other, so they share out over the
    // cores with the same result as one by one.
    let mut rows: Vec<&mut [f32]> = weight.chunks_exact_mut(n).collect();
    let flips = crate::cores::map_mut(&mut rows, |_, row| {
        let scaled = quant::math::quantize_per_channel(row, 1);
        let scale = scaled.scales.first().copied().unwrap_or(1.0);
        let w: Vec<f64> = row.iter().map(|v| f64::from(*v)).collect();
        let q = rounding::round_channel(&w, f64::from(scale), &h, &patches.cross(&w));
        let mut flips = 0;
        for ((slot, level), nearest) in row.iter_mut().zip(&q).zip(&scaled.values) {
            flips += usize::from(*level != i32::from(*nearest));
            *slot = *level as f32 * scale;
        }
        flips
    });
    flips.iter().sum()
}

/// Subtracts `shift` (real output units) from the float bias of the target node.
fn apply_shift(
    graph: &mut Graph,
    target: &Target,
    shift: &[f64],
) -> Result<(), BiasCorrectionError> {
    let node = graph
        .nodes
        .get_mut(target.node)
        .ok_or_else(|| BiasCorrectionError::Layer {
            node: format!("#{}", target.node),
            detail: "vanished".into(),
        })?;
    let bias = match &mut node.op {
        Op::Conv(c) => &mut c.bias,
        Op::Linear(l) => &mut l.bias,
        _ => {
            return Err(BiasCorrectionError::Layer {
                node: node.name.clone(),
                detail: "is no longer a conv or linear node".into(),
            })
        }
    };
    bias.resize(target.out_c.max(bias.len()), 0.0);
    for (b, s) in bias.iter_mut().zip(shift) {
        *b -= *s as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::testing::{calibrate_synthetic, synthetic_classifier};
    use crate::tune::core_run::{device_input, run_each};

    /// Captures one op's int8 output during a core run.
    struct CaptureOne {
        op: usize,
        output: Vec<i8>,
    }

    impl cbam_core::Observer for CaptureOne {
        fn op_end(&mut self, index: usize, _code: cbam_core::OpCode, output: &[i8]) {
            if index == self.op {
                self.output = output.to_vec();
            }
        }
    }

    /// Op `op`'s int8 input per image, each from a run of the whole model from its input.
    fn full_run_inputs(model: &QModel, op: usize, images: &[Vec<f32>]) -> Vec<Vec<i8>> {
        let id = model.ops[op].inputs[0];
        if id == model.input {
            let t = &model.tensors[id];
            return images.iter().map(|i| device_input(t, i)).collect();
        }
        let producer = model.ops.iter().position(|o| o.output == id).unwrap();
        let mut capture = CaptureOne {
            op: producer,
            output: Vec::new(),
        };
        run_each(model, images, &mut capture, |c, _| {
            std::mem::take(&mut c.output)
        })
        .unwrap()
    }

    /// The correction as it reads without resuming: every layer's int8 input from runs of
    /// the whole model, its float patches from a tract pass of its own.
    fn correct_from_scratch(
        graph: &Graph,
        ranges: &Ranges,
        opts: &LowerOptions,
        float: &FloatModel,
        images: &[Vec<f32>],
        passes: CorrectionPasses,
    ) -> Graph {
        let mut targets = find_targets(graph, &quant::lower(graph, ranges, opts).unwrap());
        float_means(graph, float, images, &mut targets).unwrap();
        let attention = if passes.attention {
            attention_bias::float_logits(graph, float, images).unwrap()
        } else {
            Vec::new()
        };
        let mut blocks = attention.iter().peekable();
        let mut corrected = graph.clone();
        let block_from_scratch = |corrected: &mut Graph, block| {
            let model = quant::lower(corrected, ranges, opts).unwrap();
            let mut fresh = Resumable::new(&model, images).unwrap();
            attention_bias::correct_block(corrected, ranges, opts, &mut fresh, images, block)
                .unwrap();
        };
        for target in &targets {
            while let Some(block) = blocks.next_if(|b| b.node() < target.node) {
                block_from_scratch(&mut corrected, block);
            }
            let mut model = quant::lower(&corrected, ranges, opts).unwrap();
            let op = target_op(&model, graph, target).unwrap();
            let owned = full_run_inputs(&model, op, images);
            let inputs: Vec<&[i8]> = owned.iter().map(Vec::as_slice).collect();
            if passes.rounding && roundable(graph, target) {
                let name = input_name(graph, target).unwrap();
                let layout = patches::Layout::new(&model, op, target.geometry, name).unwrap();
                let subset = &images[..images.len().min(ROUNDING_IMAGES)];
                let rows = patches::FloatRows::new(vec![(0, layout)])
                    .take(0, float, subset)
                    .unwrap();
                let p = gather_patches(&model, graph, target, op, &inputs, rows).unwrap();
                round_weights(&mut corrected, target, &p);
                model = quant::lower(&corrected, ranges, opts).unwrap();
            }
            let means = quant_means(&model, &corrected, target, &inputs).unwrap();
            let shift: Vec<f64> = means
                .iter()
                .zip(&target.float_means)
                .map(|(q, f)| q - f)
                .collect();
            apply_shift(&mut corrected, target, &shift).unwrap();
        }
        for block in blocks {
            block_from_scratch(&mut corrected, block);
        }
        corrected
    }

    /// Resuming each image's core run layer after layer, with the float patches of several
    /// layers from one tract pass, corrects every bias and weight bit for bit as running
    /// the whole model per layer does.
    #[test]
    fn resumed_correction_equals_the_correction_from_scratch() {
        let (graph, float, images) = crate::quant::testing::synthetic_deep_classifier();
        let ranges =
            calibrate_synthetic(&graph, &float, &images).ranges(crate::calib::CalibMethod::MinMax);
        let opts = LowerOptions::default();
        for (rounding, attention) in [(false, false), (true, false), (true, true)] {
            let passes = CorrectionPasses {
                rounding,
                attention,
            };
            let (resumed, layers) =
                correct_biases(&graph, &ranges, &opts, &float, &images, passes).unwrap();
            assert!(layers.len() >= 5, "{layers:?}");
            assert_eq!(rounding, layers.iter().any(|l| l.rounding_flips > 0));
            let logits = layers
                .iter()
                .filter(|l| l.target != CorrectionTarget::Layer)
                .count();
            assert_eq!(logits, if attention { 2 } else { 0 }, "{layers:?}");
            let scratch = correct_from_scratch(&graph, &ranges, &opts, &float, &images, passes);
            assert!(scratch != graph, "the correction changed nothing");
            assert!(resumed == scratch, "{passes:?}: the graphs differ");
        }
    }

    /// After the correction every layer's int8 mean output equals the float mean up to
    /// the bias's own rounding, although the error it removed was larger.
    #[test]
    fn corrected_layers_match_the_float_mean_output() {
        let (graph, float, images) = synthetic_classifier();
        let ranges =
            calibrate_synthetic(&graph, &float, &images).ranges(crate::calib::CalibMethod::MinMax);
        let opts = LowerOptions::default();
        let (corrected, layers) = correct_biases(
            &graph,
            &ranges,
            &opts,
            &float,
            &images,
            CorrectionPasses::default(),
        )
        .unwrap();
        assert!(!layers.is_empty());
        assert!(layers.iter().any(|l| l.max_abs_shift > 0.0), "{layers:?}");

        let mut targets = find_targets(&graph, &quant::lower(&graph, &ranges, &opts).unwrap());
        float_means(&graph, &float, &images, &mut targets).unwrap();
        let model = quant::lower(&corrected, &ranges, &opts).unwrap();
        let mut beyond_rounding = false;
        for (target, layer) in targets.iter().zip(&layers) {
            let op_index = target_op(&model, &corrected, target).unwrap();
            let owned = full_run_inputs(&model, op_index, &images);
            let inputs: Vec<&[i8]> = owned.iter().map(Vec::as_slice).collect();
            let after = quant_means(&model, &corrected, target, &inputs).unwrap();
            let op = model.ops.iter().find(|o| o.node == layer.node).unwrap();
            let in_scale = f64::from(model.tensors[op.inputs[0]].q.scale);
            let w_scales = match &op.kind {
                QOpKind::Conv(p) | QOpKind::Depthwise { conv: p, .. } => p.weight_scales.clone(),
                QOpKind::FullyConnected(p) => p.weight_scales.clone(),
                _ => unreachable!(),
            };
            for (o, (q, f)) in after.iter().zip(&target.float_means).enumerate() {
                let bias_step = in_scale * f64::from(w_scales[o]);
                beyond_rounding |= layer.max_abs_shift > bias_step;
                assert!(
                    (q - f).abs() <= 0.5 * bias_step + 1e-6,
                    "{}: channel {o} int8 mean {q} vs float {f} (shift was {})",
                    layer.node,
                    layer.max_abs_shift
                );
            }
        }
        assert!(
            beyond_rounding,
            "no layer needed more than rounding: {layers:?}"
        );
    }

    /// Re-rounding moves some weights off nearest, keeps every weight on an int8 level
    /// of an unchanged per-channel scale, and lowers the layers' output error.
    #[test]
    fn rounding_keeps_levels_and_scales_and_lowers_the_error() {
        let (graph, float, images) = synthetic_classifier();
        let calib = calibrate_synthetic(&graph, &float, &images);
        let ranges = calib.ranges(crate::calib::CalibMethod::MinMax);
        // The CBAM block at its calibrated scales: on this random 64-input model the
        // power-of-two scales' coarser steps (up to 2x) outweigh what re-rounding the
        // conv weights gains, so the end-to-end error would not isolate the rounding.
        let opts = LowerOptions {
            cbam_pow2_scales: false,
            ..LowerOptions::default()
        };
        let (plain, _) = correct_biases(
            &graph,
            &ranges,
            &opts,
            &float,
            &images,
            CorrectionPasses::default(),
        )
        .unwrap();
        let (rounded, layers) = correct_biases(
            &graph,
            &ranges,
            &opts,
            &float,
            &images,
            CorrectionPasses {
                rounding: true,
                attention: false,
            },
        )
        .unwrap();
        assert!(layers.iter().any(|l| l.rounding_flips > 0), "{layers:?}");
        let (a, b) = (
            quant::lower(&plain, &ranges, &opts).unwrap(),
            quant::lower(&rounded, &ranges, &opts).unwrap(),
        );
        let mut moved = 0;
        for (pa, pb) in a.ops.iter().zip(&b.ops) {
            let levels = |k: &QOpKind| match k {
                QOpKind::Conv(p) => Some((p.weight_scales.clone(), p.weights.clone())),
                QOpKind::FullyConnected(p) => Some((p.weight_scales.clone(), p.weights.clone())),
                _ => None,
            };
            if let (Some((sx, wx)), Some((sy, wy))) = (levels(&pa.kind), levels(&pb.kind)) {
                assert_eq!(sx, sy, "{}", pa.node);
                for (u, v) in wx.iter().zip(&wy) {
                    assert!((i32::from(*u) - i32::from(*v)).abs() <= 1);
                    moved += usize::from(u != v);
                }
            }
        }
        assert!(moved > 0);
        let error = |g: &Graph| {
            let model = quant::lower(g, &ranges, &opts).unwrap();
            let out = crate::tune::range_search::run_core(&model, &images).unwrap();
            out.iter()
                .zip(&images)
                .map(|(q, x)| {
                    let f = float.run(x).unwrap();
                    q.iter()
                        .zip(&f)
                        .map(|(a, b)| f64::from(a - b).powi(2))
                        .sum::<f64>()
                })
                .sum::<f64>()
        };
        assert!(error(&rounded) < error(&plain));
    }
}
