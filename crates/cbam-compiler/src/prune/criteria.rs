//! Per-channel importance scores: CBAM channel attention statistics gathered on the
//! calibration set, or the L1 norm of the producer conv's filters (the classic baseline).

use tract_onnx::pb::{GraphProto, ModelProto};

use super::activations::batch_of_one;
use super::proto_edit::{const_tensor, tensor_f32, GraphIndex};
use super::PruneError;
use crate::float_run::FloatModel;
use crate::import::attrs;
use crate::passes::ChannelSite;

/// Attention statistics of one block over the calibration set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttentionStats {
    pub mean: Vec<f32>,
    /// 10th percentile (nearest rank) per channel.
    pub p10: Vec<f32>,
    pub samples: usize,
}

/// Runs the float model on every calibration sample and summarises each site's gate
/// (a CBAM block's `Mc`, an SE gate).
pub fn attention_stats(
    proto: &ModelProto,
    sites: &[ChannelSite],
    input_chw: &[usize],
    calib: &[Vec<f32>],
) -> Result<Vec<AttentionStats>, PruneError> {
    if calib.is_empty() {
        return Err(PruneError::EmptyData("calibration"));
    }
    let names: Vec<String> = sites.iter().map(|s| s.attention.clone()).collect();
    let runner = FloatModel::with_input_shape(proto, None, batch_of_one(input_chw))?;
    // per block, per channel, one value per sample
    let mut seen: Vec<Vec<Vec<f32>>> = sites
        .iter()
        .map(|s| vec![Vec::with_capacity(calib.len()); s.channels])
        .collect();
    for x in calib {
        let outputs = runner.run_values(x, &names)?;
        for (b, per_channel) in seen.iter_mut().enumerate() {
            let mc = outputs.get(b).map(Vec::as_slice).unwrap_or(&[]);
            if mc.len() != per_channel.len() {
                return Err(PruneError::Tract(format!(
                    "attention `{}` has {} values, expected {}",
                    names.get(b).map(String::as_str).unwrap_or("?"),
                    mc.len(),
                    per_channel.len()
                )));
            }
            for (c, v) in mc.iter().enumerate() {
                if let Some(list) = per_channel.get_mut(c) {
                    list.push(*v);
                }
            }
        }
    }
    Ok(seen
        .into_iter()
        .map(|per_channel| summarise(per_channel, calib.len()))
        .collect())
}

fn summarise(per_channel: Vec<Vec<f32>>, samples: usize) -> AttentionStats {
    let mut mean = Vec::with_capacity(per_channel.len());
    let mut p10 = Vec::with_capacity(per_channel.len());
    for mut values in per_channel {
        let n = values.len().max(1);
        mean.push(values.iter().sum::<f32>() / n as f32);
        values.sort_by(f32::total_cmp);
        let rank = ((0.1 * n as f64).ceil() as usize).clamp(1, n) - 1;
        p10.push(values.get(rank).copied().unwrap_or(0.0));
    }
    AttentionStats { mean, p10, samples }
}

const TRANSPARENT: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "Clip",
    "Identity",
    "Dropout",
    "BatchNormalization",
];

/// L1 norm of each output filter of the conv producing `feature`, times the magnitude of
/// the per-channel BatchNorm scale met on the way (a folded model has none).
pub fn producer_l1(g: &GraphProto, feature: &str, channels: usize) -> Result<Vec<f32>, PruneError> {
    let idx = GraphIndex::new(g);
    let mut scale = vec![1f32; channels];
    let mut value = feature.to_string();
    for _ in 0..16 {
        let node = idx
            .producer
            .get(&value)
            .and_then(|&i| g.node.get(i))
            .ok_or_else(|| PruneError::Unsupported(format!("`{feature}` has no producing conv")))?;
        let read = |slot_name: Option<&String>| -> Result<Vec<f32>, PruneError> {
            let name = slot_name.ok_or_else(|| {
                PruneError::Unsupported(format!("node `{}` lacks a weight", node.name))
            })?;
            let slot = *idx.consts.get(name).ok_or_else(|| {
                PruneError::Unsupported(format!("weight `{name}` is not a constant"))
            })?;
            let t = const_tensor(g, slot)
                .ok_or_else(|| PruneError::Unsupported(format!("weight `{name}` unreadable")))?;
            tensor_f32(t)
        };
        if node.op_type == "Conv" {
            let w = read(node.input.get(1))?;
            let per = w.len() / channels.max(1);
            if per == 0 || w.len() != per * channels {
                return Err(PruneError::Unsupported(format!(
                    "conv `{}` does not produce {channels} channels",
                    node.name
                )));
            }
            return Ok(w
                .chunks_exact(per)
                .zip(&scale)
                .map(|(f, s)| f.iter().map(|v| v.abs()).sum::<f32>() * s)
                .collect());
        }
        if !TRANSPARENT.contains(&node.op_type.as_str()) {
            return Err(PruneError::Unsupported(format!(
                "`{feature}` is produced through `{}` ({}), not a conv: no filters to rank by L1",
                node.name, node.op_type
            )));
        }
        if node.op_type == "BatchNormalization" {
            let gamma = read(node.input.get(1))?;
            let var = read(node.input.get(4))?;
            let eps = attrs::float(node, "epsilon").unwrap_or(1e-5);
            for ((s, gm), v) in scale.iter_mut().zip(&gamma).zip(&var) {
                *s *= (gm / (v + eps).sqrt()).abs();
            }
        }
        value = node.input.first().cloned().unwrap_or_default();
    }
    Err(PruneError::Unsupported(format!(
        "no conv found within 16 nodes above `{feature}`"
    )))
}
