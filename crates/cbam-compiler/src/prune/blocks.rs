//! Locates CBAM blocks in the ONNX graph itself (not the compiler IR), because pruning
//! edits the ONNX protobuf and needs the exact value names of the block's inside.
//!
//! A block is recognised from its channel-attention multiply `F' = F * Mc`, where `Mc`
//! comes from a `Sigmoid` (possibly through Reshape/Unsqueeze/Flatten) and has one value
//! per channel of the feature map `F`. If `F'` then goes through the spatial attention
//! `F'' = F' * Ms` (`Ms` one value per pixel from a `Sigmoid`), `F''` is the block output.

use tract_onnx::pb::GraphProto;

use super::onnx_util::GraphIndex;
use super::shapes::ShapeMap;

/// One CBAM block as it appears in the ONNX graph.
#[derive(Debug, Clone, PartialEq)]
pub struct CbamSite {
    /// Readable name: the common ONNX name prefix of the block's multiplies.
    pub name: String,
    /// `F`: the feature map the channel attention scales.
    pub feature: String,
    /// `Mc`: the channel-attention sigmoid output, one value per channel.
    pub attention: String,
    /// `F''` (or `F'` when the block has no spatial attention).
    pub output: String,
    pub channels: usize,
    /// Whether the spatial-attention half was found.
    pub has_spatial: bool,
}

/// Ops that only reshape or forward a tensor between the sigmoid and the multiply.
const LAYOUT_OPS: &[&str] = &[
    "Reshape",
    "Unsqueeze",
    "Flatten",
    "Identity",
    "Expand",
    "Squeeze",
];

/// Follows layout-only producers back from `value`; returns the output of the `Sigmoid`
/// reached, if any.
fn sigmoid_source(g: &GraphProto, idx: &GraphIndex, value: &str) -> Option<String> {
    let mut current = value.to_string();
    for _ in 0..8 {
        let node = g.node.get(*idx.producer.get(&current)?)?;
        if node.op_type == "Sigmoid" {
            return Some(current);
        }
        if !LAYOUT_OPS.contains(&node.op_type.as_str()) {
            return None;
        }
        current = node.input.first()?.clone();
    }
    None
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// `[1, C, H, W]` feature map with more than one channel.
fn feature_channels(shapes: &ShapeMap, value: &str) -> Option<usize> {
    match shapes.get(value)?.as_slice() {
        [1, c, _, _] if *c > 1 => Some(*c),
        _ => None,
    }
}

/// The spatial multiply consuming `f_prime`: `F' * Ms` with `Ms` `[1, 1, H, W]` from a sigmoid.
fn spatial_output(
    g: &GraphProto,
    idx: &GraphIndex,
    shapes: &ShapeMap,
    f_prime: &str,
) -> Option<(String, String)> {
    for &ci in idx.consumers_of(f_prime) {
        let node = g.node.get(ci)?;
        if node.op_type != "Mul" || node.input.len() != 2 {
            continue;
        }
        let other = node.input.iter().find(|v| v.as_str() != f_prime)?;
        let is_map = matches!(shapes.get(other).map(Vec::as_slice), Some([1, 1, _, _]));
        if is_map && sigmoid_source(g, idx, other).is_some() {
            return Some((node.output.first()?.clone(), node.name.clone()));
        }
    }
    None
}

fn common_prefix(a: &str, b: &str) -> String {
    let n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let prefix = a.get(..n).unwrap_or("");
    match prefix.rfind('/') {
        Some(cut) if cut > 0 => prefix[..=cut].to_string(),
        _ => a.to_string(),
    }
}

/// All CBAM blocks, in graph order.
pub fn find_cbam_sites(g: &GraphProto, shapes: &ShapeMap) -> Vec<CbamSite> {
    let idx = GraphIndex::new(g);
    let mut sites = Vec::new();
    for node in &g.node {
        if node.op_type != "Mul" || node.input.len() != 2 {
            continue;
        }
        let Some(out) = node.output.first() else {
            continue;
        };
        for (f, m) in [(0usize, 1usize), (1, 0)] {
            let (Some(feature), Some(mc)) = (node.input.get(f), node.input.get(m)) else {
                continue;
            };
            let Some(channels) = feature_channels(shapes, feature) else {
                continue;
            };
            let Some(attention) = sigmoid_source(g, &idx, mc) else {
                continue;
            };
            let per_channel = shapes
                .get(mc)
                .is_some_and(|s| numel(s) == channels && s.get(1) == Some(&channels));
            if !per_channel || shapes.get(&attention).map(|s| numel(s)) != Some(channels) {
                continue;
            }
            let spatial = spatial_output(g, &idx, shapes, out);
            let name = match &spatial {
                Some((_, spatial_node)) => common_prefix(&node.name, spatial_node),
                None => node.name.clone(),
            };
            sites.push(CbamSite {
                name,
                feature: feature.clone(),
                attention,
                output: spatial
                    .as_ref()
                    .map(|(o, _)| o.clone())
                    .unwrap_or_else(|| out.clone()),
                channels,
                has_spatial: spatial.is_some(),
            });
            break;
        }
    }
    sites
}
