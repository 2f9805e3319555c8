//! Internal channel groups: conv outputs that no residual Add and no CBAM block couple, such
//! as `conv1`'s outputs inside a residual block (= `conv2`'s inputs). They carry about half
//! of a block's MACs and can be removed outright, then compensated by refitting the single
//! conv that consumes them ([`super::reconstruct`](mod@super::reconstruct)).
//!
//! Attention does not scale these channels directly, so their attention score is
//! propagated through the consumer: for internal channel `j` feeding conv `W2` whose output
//! channels `c` the CBAM block scales by mean attention `a_c`,
//!
//! `score_j = mean|x_j| * Σ_c a_c * Σ_taps |W2[c, j, :, :]|`
//!
//! with `mean|x_j|` the channel's mean magnitude at the consumer's input on the calibration
//! set: how much attended signal the channel contributes. Without a CBAM block after the
//! consumer, `a_c = 1`. Scores are divided by their group's largest, so they read as
//! "relative importance" in `0..1` (threshold and charts use that scale).

use tract_onnx::pb::{GraphProto, ModelProto};

use super::activations::{capture, channel_mean_abs};
use super::criteria::AttentionStats;
use super::proto_edit::{const_tensor, dims_usize, tensor_f32, GraphIndex};
use super::shapes::ShapeMap;
use super::surgery::{cut_channels, SurgeryOptions};
use super::PruneError;
use crate::passes::ChannelSite;

/// One internal group as found in the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct InternalSite {
    /// The producing conv's node name.
    pub name: String,
    /// Its output value, whose channels are cut.
    pub feature: String,
    pub channels: usize,
    /// The one conv whose inputs the cut removes (`None` if there are several or none).
    pub consumer: Option<String>,
}

/// Ops that pass a map through unchanged in layout (walking from a conv to a CBAM block).
const TRANSPARENT: &[&str] = &["BatchNormalization", "Identity", "Dropout"];

/// Conv outputs whose cut stays inside one block: no scatter before an Add, no CBAM
/// feature map among the values it narrows. A conv whose channels another site already
/// narrows (a depthwise conv after the expansion conv of an inverted residual) is the same
/// group and not listed again.
pub fn find_internal_sites(
    proto: &ModelProto,
    shapes: &ShapeMap,
    sites: &[ChannelSite],
) -> Result<Vec<InternalSite>, PruneError> {
    let g = proto
        .graph
        .as_ref()
        .ok_or_else(|| PruneError::Unsupported("the ONNX model has no graph".into()))?;
    let mut found = Vec::new();
    let mut claimed: std::collections::HashSet<String> = std::collections::HashSet::new();
    for node in g.node.iter().filter(|n| n.op_type == "Conv") {
        let Some(out) = node.output.first() else {
            continue;
        };
        let Some(&[1, channels, h, w]) = shapes.get(out).map(Vec::as_slice) else {
            continue;
        };
        // A one-pixel output is an attention MLP's hidden layer: it costs next to nothing,
        // and cutting it would change the gate where no refit can repair it.
        if channels < 2 || h * w < 2 {
            continue;
        }
        let mut copy = proto.clone();
        let kept: Vec<usize> = (1..channels).collect();
        let plain = SurgeryOptions {
            compensate_spatial_mean: false,
        };
        let Ok(outcome) = cut_channels(&mut copy, shapes, out, channels, &kept, plain) else {
            continue;
        };
        let touches_cbam = sites
            .iter()
            .any(|s| outcome.cut_values.contains(&s.feature));
        let same_group = outcome.cut_values.iter().any(|v| claimed.contains(v));
        if !outcome.scattered_adds.is_empty() || touches_cbam || same_group {
            continue;
        }
        claimed.extend(outcome.cut_values.iter().cloned());
        let consumer = match outcome.consumer_convs.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        found.push(InternalSite {
            name: node.name.clone(),
            feature: out.clone(),
            channels,
            consumer,
        });
    }
    Ok(found)
}

/// The CBAM block whose feature map conv `conv` produces (directly or through
/// per-channel ops), if any.
fn attended_by<'a>(
    g: &GraphProto,
    idx: &GraphIndex,
    conv: &str,
    sites: &'a [ChannelSite],
    stats: &'a [AttentionStats],
) -> Option<&'a AttentionStats> {
    let node = g.node.iter().find(|n| n.name == conv)?;
    let mut value = node.output.first()?.clone();
    for _ in 0..4 {
        if let Some(i) = sites.iter().position(|s| s.feature == value) {
            return stats.get(i);
        }
        let [user] = idx.consumers_of(&value) else {
            return None;
        };
        let next = g.node.get(*user)?;
        if !TRANSPARENT.contains(&next.op_type.as_str()) {
            return None;
        }
        value = next.output.first()?.clone();
    }
    None
}

/// `Σ_c a_c Σ_taps |W[c, j, ..]|` per input channel `j` of conv `conv`.
fn attended_column_l1(
    g: &GraphProto,
    idx: &GraphIndex,
    conv: &str,
    attention: Option<&AttentionStats>,
) -> Result<Vec<f32>, PruneError> {
    let node = g
        .node
        .iter()
        .find(|n| n.name == conv)
        .ok_or_else(|| PruneError::Unsupported(format!("no conv named `{conv}`")))?;
    let w_name = node.input.get(1).cloned().unwrap_or_default();
    let t = idx
        .consts
        .get(&w_name)
        .and_then(|&slot| const_tensor(g, slot))
        .ok_or_else(|| PruneError::Unsupported(format!("weight `{w_name}` is not a constant")))?;
    let [out_c, in_c, kh, kw] = dims_usize(t)[..] else {
        return Err(PruneError::Unsupported(format!(
            "weight `{w_name}` is not 4-D"
        )));
    };
    let w = tensor_f32(t)?;
    let taps = kh * kw;
    let mut column = vec![0f32; in_c];
    for c in 0..out_c {
        let a = attention
            .and_then(|s| s.mean.get(c))
            .copied()
            .unwrap_or(1.0);
        for (j, col) in column.iter_mut().enumerate() {
            let start = (c * in_c + j) * taps;
            let l1: f32 = w
                .get(start..start + taps)
                .unwrap_or(&[])
                .iter()
                .map(|v| v.abs())
                .sum();
            *col += a * l1;
        }
    }
    Ok(column)
}

/// Propagated attention scores (see the module docs) for each internal site with a
/// consumer; `None` where there is no single consumer conv.
pub fn propagated_scores(
    proto: &ModelProto,
    input_chw: &[usize],
    calib: &[Vec<f32>],
    internal: &[InternalSite],
    sites: &[ChannelSite],
    stats: &[AttentionStats],
) -> Result<Vec<Option<Vec<f32>>>, PruneError> {
    let g = proto
        .graph
        .as_ref()
        .ok_or_else(|| PruneError::Unsupported("the ONNX model has no graph".into()))?;
    let idx = GraphIndex::new(g);
    let consumer_inputs: Vec<String> = internal
        .iter()
        .filter_map(|s| s.consumer.as_ref())
        .filter_map(|c| g.node.iter().find(|n| &n.name == c))
        .filter_map(|n| n.input.first().cloned())
        .collect();
    let maps = capture(proto, input_chw, calib, &consumer_inputs)?;
    let mut maps = maps.into_iter();
    let mut out = Vec::with_capacity(internal.len());
    for site in internal {
        let Some(consumer) = &site.consumer else {
            out.push(None);
            continue;
        };
        let samples = maps.next().unwrap_or_default();
        let activity = channel_mean_abs(&samples, site.channels);
        let attention = attended_by(g, &idx, consumer, sites, stats);
        let column = attended_column_l1(g, &idx, consumer, attention)?;
        if column.len() != site.channels {
            return Err(PruneError::Unsupported(format!(
                "consumer `{consumer}` of `{}` reads {} channels, expected {}",
                site.feature,
                column.len(),
                site.channels
            )));
        }
        let raw: Vec<f32> = activity.iter().zip(&column).map(|(x, w)| x * w).collect();
        let best = raw.iter().copied().fold(0f32, f32::max);
        let scale = if best > 0.0 { 1.0 / best } else { 1.0 };
        out.push(Some(raw.iter().map(|v| v * scale).collect()));
    }
    Ok(out)
}
