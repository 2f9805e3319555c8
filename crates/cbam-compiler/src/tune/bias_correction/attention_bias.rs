//! Empirical bias correction of a CBAM block's two pre-sigmoid logits: the channel logit
//! (the second MLP layer's bias, per channel) and the spatial logit (the spatial conv's
//! bias). Int8 pooling, the hidden layer's requantization and the input's own error shift
//! the logits' mean; through the sigmoid that becomes a gain error on every activation the
//! block passes on.
//!
//! The core keeps only the attention maps (after the table), so the int8 logit is read
//! back through the table: each attention level stands for the mean of the table entries
//! that produce it. Levels at either end of the table cover the clipped, flat tails where
//! the logit is unknown; those samples are left out.

use super::{BiasCorrectionError, CorrectedLayer, CorrectionTarget};
use crate::calib::Ranges;
use crate::float_run::FloatModel;
use crate::ir::{Graph, Op};
use crate::quant::{self, LowerOptions, QModel, QOpKind, QParams};
use crate::tune::core_resume::Resumable;

/// Fewer unsaturated samples than this leave a channel's bias alone: the mean of a handful
/// of table-quantized logits is noise, not a shift.
const MIN_SAMPLES: usize = 16;

/// Which logit of the block a pass corrects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Logit {
    Channel,
    Spatial,
}

/// The float logits of one CBAM block, one vector per image (channel: `C`, spatial: `H*W`).
pub(super) struct FloatLogits {
    node: usize,
    channel: Vec<Vec<f32>>,
    spatial: Vec<Vec<f32>>,
}

impl FloatLogits {
    pub(super) fn node(&self) -> usize {
        self.node
    }
}

/// One tract pass over the images: both logits of every CBAM block in the graph.
pub(super) fn float_logits(
    graph: &Graph,
    float: &FloatModel,
    images: &[Vec<f32>],
) -> Result<Vec<FloatLogits>, BiasCorrectionError> {
    let mut blocks: Vec<(FloatLogits, String, String)> = graph
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match &n.op {
            Op::Cbam(c) => Some((
                FloatLogits {
                    node: i,
                    channel: Vec::with_capacity(images.len()),
                    spatial: Vec::with_capacity(images.len()),
                },
                c.values.channel_logit.clone(),
                c.values.spatial_logit.clone(),
            )),
            _ => None,
        })
        .collect();
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = blocks
        .iter()
        .flat_map(|(_, c, s)| [c.clone(), s.clone()])
        .collect();
    for image in images {
        let mut values = float.run_with_values(image, &names)?;
        for (block, c, s) in &mut blocks {
            block
                .channel
                .push(values.remove(c.as_str()).unwrap_or_default());
            block
                .spatial
                .push(values.remove(s.as_str()).unwrap_or_default());
        }
    }
    Ok(blocks.into_iter().map(|(b, _, _)| b).collect())
}

/// Corrects the channel logit, then (measured with the corrected channel attention) the
/// spatial logit of one block in `graph`; returns what changed, one entry per logit.
pub(super) fn correct_block(
    graph: &mut Graph,
    ranges: &Ranges,
    opts: &LowerOptions,
    states: &mut Resumable,
    images: &[Vec<f32>],
    float: &FloatLogits,
) -> Result<Vec<CorrectedLayer>, BiasCorrectionError> {
    let mut layers = Vec::with_capacity(2);
    for logit in [Logit::Channel, Logit::Spatial] {
        let model = quant::lower(graph, ranges, opts)?;
        let name = graph
            .nodes
            .get(float.node)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        let (index, lut, q) = table_of(&model, &name, logit)?;
        // The block's logits do not feed anything before it: resume there, run only it.
        states.advance(&model, images, index)?;
        let mut capture = CaptureAttention {
            op: index,
            logit,
            map: Vec::new(),
        };
        let maps = states.peek(&model, index, &mut capture, |c| std::mem::take(&mut c.map))?;
        let reference = match logit {
            Logit::Channel => &float.channel,
            Logit::Spatial => &float.spatial,
        };
        let slots = match logit {
            Logit::Channel => reference.first().map_or(0, Vec::len),
            Logit::Spatial => 1,
        };
        let shift = mean_logit_error(&lut, q, reference, &maps, slots);
        apply_shift(graph, float.node, logit, &shift)?;
        layers.push(CorrectedLayer {
            node: name,
            mean_abs_shift: shift.iter().map(|s| s.abs()).sum::<f64>() / shift.len().max(1) as f64,
            max_abs_shift: shift.iter().fold(0.0, |m, s| m.max(s.abs())),
            rounding_flips: 0,
            target: match logit {
                Logit::Channel => CorrectionTarget::ChannelLogit,
                Logit::Spatial => CorrectionTarget::SpatialLogit,
            },
        });
    }
    Ok(layers)
}

/// The fused op's index in the core and the table (and its input quantization) that
/// turns `logit` into attention.
fn table_of(
    model: &QModel,
    name: &str,
    logit: Logit,
) -> Result<(usize, [i8; 256], QParams), BiasCorrectionError> {
    model
        .ops
        .iter()
        .enumerate()
        .find_map(|(i, op)| match &op.kind {
            QOpKind::Cbam(p) if op.node == name => Some(match logit {
                Logit::Channel => (i, *p.lut_c, p.logit_q),
                Logit::Spatial => (i, *p.lut_s, p.spatial_q),
            }),
            _ => None,
        })
        .ok_or_else(|| BiasCorrectionError::Layer {
            node: name.to_string(),
            detail: "no fused CBAM op after lowering".into(),
        })
}

/// Captures one CBAM op's channel or spatial attention map during a core run.
struct CaptureAttention {
    op: usize,
    logit: Logit,
    map: Vec<i8>,
}

impl cbam_core::Observer for CaptureAttention {
    fn cbam_attention(
        &mut self,
        index: usize,
        channel: &[i8],
        spatial: &[i8],
        _h: usize,
        _w: usize,
    ) {
        if index == self.op {
            self.map.clear();
            self.map.extend_from_slice(match self.logit {
                Logit::Channel => channel,
                Logit::Spatial => spatial,
            });
        }
    }
}

/// For each attention level the table produces, the mean real logit of the entries that
/// produce it; `None` for levels that cannot pin the logit down (the table's two ends,
/// which also hold every clipped logit).
fn inverse_table(lut: &[i8; 256], q: QParams) -> [Option<f64>; 256] {
    let mut sums = [(0.0f64, 0usize); 256];
    for (k, level) in lut.iter().enumerate() {
        let logit = f64::from(q.scale) * f64::from(k as i32 - 128 - q.zero_point);
        let slot = &mut sums[usize::from(level.cast_unsigned() ^ 0x80)];
        slot.0 += logit;
        slot.1 += 1;
    }
    let (lowest, highest) = (lut[0], lut[255]);
    let mut inverse = [None; 256];
    for (level, (slot, (sum, count))) in inverse.iter_mut().zip(sums).enumerate() {
        let value = level as i32 - 128;
        if count > 0 && value != i32::from(lowest) && value != i32::from(highest) {
            *slot = Some(sum / count as f64);
        }
    }
    inverse
}

/// Mean of (int8 logit read back through the table - float logit) per slot; a map of
/// `slots` values per image is per channel, a single slot pools every pixel. Slots with
/// too few unsaturated samples get no shift.
fn mean_logit_error(
    lut: &[i8; 256],
    q: QParams,
    float: &[Vec<f32>],
    int8: &[Vec<i8>],
    slots: usize,
) -> Vec<f64> {
    let inverse = inverse_table(lut, q);
    let mut sums = vec![(0.0f64, 0usize); slots.max(1)];
    for (f, a) in float.iter().zip(int8) {
        for (i, (fv, av)) in f.iter().zip(a).enumerate() {
            let Some(logit) = inverse[usize::from(av.cast_unsigned() ^ 0x80)] else {
                continue;
            };
            if let Some(slot) = sums.get_mut(if slots > 1 { i } else { 0 }) {
                slot.0 += logit - f64::from(*fv);
                slot.1 += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(sum, n)| {
            if n >= MIN_SAMPLES {
                sum / n as f64
            } else {
                0.0
            }
        })
        .collect()
}

/// Subtracts the measured logit error from the float bias that produces it.
fn apply_shift(
    graph: &mut Graph,
    node: usize,
    logit: Logit,
    shift: &[f64],
) -> Result<(), BiasCorrectionError> {
    let Some(Op::Cbam(cbam)) = graph.nodes.get_mut(node).map(|n| &mut n.op) else {
        return Err(BiasCorrectionError::Layer {
            node: format!("#{node}"),
            detail: "is no longer a CBAM block".into(),
        });
    };
    // The channel logit is MLP(avg) + MLP(max): the second layer's bias counts twice.
    let (bias, len, per_unit) = match logit {
        Logit::Channel => (&mut cbam.mlp2.bias, cbam.channels, 0.5),
        Logit::Spatial => (&mut cbam.spatial.bias, 1, 1.0),
    };
    if bias.len() < len {
        bias.resize(len, 0.0);
    }
    for (b, s) in bias.iter_mut().zip(shift) {
        *b -= (s * per_unit) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::CalibMethod;
    use crate::quant::testing::{calibrate_synthetic, synthetic_classifier};

    /// The attention map of op `index` as the core computes it, one per image.
    fn core_attention(
        model: &QModel,
        index: usize,
        logit: Logit,
        images: &[Vec<f32>],
    ) -> Result<Vec<Vec<i8>>, BiasCorrectionError> {
        let mut capture = CaptureAttention {
            op: index,
            logit,
            map: Vec::new(),
        };
        Ok(crate::tune::core_run::run_each(
            model,
            images,
            &mut capture,
            |c, _| std::mem::take(&mut c.map),
        )?)
    }

    #[test]
    fn the_table_inverse_skips_both_ends_and_averages_shared_levels() {
        let q = QParams {
            scale: 0.1,
            zero_point: 0,
        };
        let lut = quant::math::sigmoid_lut(q);
        let inverse = inverse_table(&lut, q);
        let at = |level: i8| inverse[usize::from(level.cast_unsigned() ^ 0x80)];
        assert_eq!(at(lut[0]), None);
        assert_eq!(at(lut[255]), None);
        // sigmoid(0) = 0.5 is level 0; the entries that round to it straddle logit 0.
        let zero = at(0).unwrap();
        assert!(zero.abs() < 0.06, "{zero}");
        // Levels rise with the logit.
        let live: Vec<f64> = inverse.iter().flatten().copied().collect();
        assert!(live.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn samples_at_the_tables_ends_carry_no_shift() {
        let q = QParams {
            scale: 0.05,
            zero_point: 0,
        };
        let lut = quant::math::sigmoid_lut(q);
        let n = MIN_SAMPLES;
        // Channel 0 sits mid-table, its int8 logit 0.5 above float; channel 1 only at
        // the table's top end.
        let float: Vec<Vec<f32>> = vec![vec![0.0, 9.0]; n];
        let level = lut[128 + 10];
        let int8: Vec<Vec<i8>> = vec![vec![level, lut[255]]; n];
        let shift = mean_logit_error(&lut, q, &float, &int8, 2);
        let expected = inverse_table(&lut, q)[usize::from(level.cast_unsigned() ^ 0x80)].unwrap();
        assert!((shift[0] - expected).abs() < 1e-9, "{shift:?}");
        assert!(expected > 0.3, "{expected}");
        assert_eq!(shift[1], 0.0);
    }

    /// After correcting a block, its int8 logits (read back through the table) sit closer
    /// to float on average than before.
    #[test]
    fn correction_shrinks_the_mean_logit_error() {
        let (graph, float, images) = synthetic_classifier();
        let ranges = calibrate_synthetic(&graph, &float, &images).ranges(CalibMethod::MinMax);
        let opts = LowerOptions::default();
        let logits = float_logits(&graph, &float, &images).unwrap();
        assert!(!logits.is_empty());
        let error = |g: &Graph, block: &FloatLogits, logit: Logit| {
            let model = quant::lower(g, &ranges, &opts).unwrap();
            let name = &g.nodes[block.node].name;
            let (index, lut, q) = table_of(&model, name, logit).unwrap();
            let maps = core_attention(&model, index, logit, &images).unwrap();
            let (reference, slots) = match logit {
                Logit::Channel => (&block.channel, block.channel[0].len()),
                Logit::Spatial => (&block.spatial, 1),
            };
            let e = mean_logit_error(&lut, q, reference, &maps, slots);
            e.iter().map(|v| v.abs()).sum::<f64>()
        };
        let mut corrected = graph.clone();
        for block in &logits {
            let before = error(&corrected, block, Logit::Channel);
            let model = quant::lower(&corrected, &ranges, &opts).unwrap();
            let mut states = Resumable::new(&model, &images).unwrap();
            let layers =
                correct_block(&mut corrected, &ranges, &opts, &mut states, &images, block).unwrap();
            assert_eq!(layers.len(), 2);
            let after = error(&corrected, block, Logit::Channel);
            assert!(before > 0.0, "nothing to correct");
            assert!(after < before, "channel logit error {before} -> {after}");
        }
    }
}
