//! Where channel attention scales a feature map, on a graph after [`optimize`](super::optimize):
//! every fused CBAM block (recognised by [`match_cbam`](super::match_cbam), read here from its
//! [`CbamValues`](crate::ir::CbamValues)), and every loose channel gate the CBAM matcher
//! leaves: `F * g` with `F` a `[c, h, w]` map and `g` one value per channel from a sigmoid
//! or a hard sigmoid (squeeze-and-excitation, effective SE, timm's light CBAM, torchvision's
//! `SqueezeExcitation`). Pruning ranks channels by these gates through the ONNX value names
//! given here, so it sees exactly what the compiler recognises.

use super::edit::{name, shape, Index};
use crate::ir::{Activation, Graph, Node, Op, Pointwise};

/// How a site computes its per-channel gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateKind {
    /// A fused CBAM block's channel attention `Mc`.
    Cbam,
    /// `sigmoid(..)` scaling the map (SE).
    Sigmoid,
    /// A hard sigmoid scaling the map (effective SE, MobileNetV3): a `HardSigmoid` op, or
    /// one folded into the Linear before it (which then ends in `Clip(0, 1)`).
    HardSigmoid,
}

/// One place where a per-channel gate scales a feature map.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSite {
    /// The IR node: the fused CBAM op or the gate's Mul.
    pub name: String,
    /// ONNX value of `F`, the map the gate scales.
    pub feature: String,
    /// ONNX value of the gate, one value per channel of `F`.
    pub attention: String,
    pub channels: usize,
    pub kind: GateKind,
}

/// Every channel-attention site of `g`, in graph order.
pub fn channel_sites(g: &Graph) -> Vec<ChannelSite> {
    let ix = Index::new(g);
    g.nodes
        .iter()
        .filter_map(|node| match &node.op {
            Op::Cbam(c) => Some(ChannelSite {
                name: node.name.clone(),
                feature: name(g, *node.inputs.first()?),
                attention: c.values.channel_attention.clone(),
                channels: c.channels,
                kind: GateKind::Cbam,
            }),
            Op::Mul => gated_mul(g, &ix, node),
            _ => None,
        })
        .collect()
}

/// `F * g` (operands in either order) with `g` a per-channel gate of `F`.
fn gated_mul(g: &Graph, ix: &Index, mul: &Node) -> Option<ChannelSite> {
    let [a, b] = mul.inputs.as_slice() else {
        return None;
    };
    [(*a, *b), (*b, *a)].into_iter().find_map(|(f, gate)| {
        let channels = match shape(g, f) {
            [c, _, _] if *c > 1 => *c,
            _ => return None,
        };
        let per_channel = shape(g, gate).first() == Some(&channels)
            && shape(g, gate).iter().product::<usize>() == channels;
        let kind = gate_kind(&g.nodes.get(ix.producer(gate)?)?.op)?;
        per_channel.then(|| ChannelSite {
            name: mul.name.clone(),
            feature: name(g, f),
            attention: name(g, gate),
            channels,
            kind,
        })
    })
}

/// Whether `op` produces a gate in `[0, 1]`, and of which kind.
fn gate_kind(op: &Op) -> Option<GateKind> {
    let hard = Activation::Clip(0.0, 1.0);
    match op {
        Op::Sigmoid => Some(GateKind::Sigmoid),
        Op::Pointwise(Pointwise::HardSigmoid { .. }) => Some(GateKind::HardSigmoid),
        Op::Linear(l) if l.act == hard => Some(GateKind::HardSigmoid),
        Op::Conv(c) if c.act == hard => Some(GateKind::HardSigmoid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::import_model;
    use crate::import::testing::{float, int, CbamStyle, OnnxBuilder};
    use crate::ir::TensorId;
    use crate::passes::optimize;

    /// The tensor a site scales.
    fn feature_of(g: &Graph, site: &ChannelSite) -> Option<TensorId> {
        g.tensors.iter().position(|t| t.name == site.feature)
    }

    fn sites_of(b: &OnnxBuilder, out: &str) -> (Graph, Vec<ChannelSite>) {
        let g = optimize(import_model(&b.build(out), None).expect("imports")).expect("passes");
        let sites = channel_sites(&g);
        (g, sites)
    }

    /// Every name a site gives is an ONNX value of the model it came from.
    fn assert_onnx_values(b: &OnnxBuilder, sites: &[ChannelSite]) {
        let values: Vec<&String> = b.nodes.iter().flat_map(|n| &n.output).collect();
        for s in sites {
            for v in [&s.feature, &s.attention] {
                assert!(values.contains(&v), "{v} is not an ONNX value");
            }
        }
    }

    /// conv(1->8) relu, then `gate(x)` scaling it, then a classifier head.
    fn se_model(gate: &str, gate_first: bool) -> (OnnxBuilder, String, String) {
        let mut b = OnnxBuilder::new(&[1, 1, 6, 6], 13);
        let c = b.conv("x", 1, 8, 3, true);
        let f = b.node("Relu", &[&c], vec![]);
        let p = b.node("GlobalAveragePool", &[&f], vec![]);
        let h = b.conv(&p, 8, 2, 1, true);
        let h = b.node("Relu", &[&h], vec![]);
        let l = b.conv(&h, 2, 8, 1, true);
        let s = match gate {
            "HardSigmoid" => b.node("HardSigmoid", &[&l], vec![float("alpha", 1.0 / 6.0)]),
            op => b.node(op, &[&l], vec![]),
        };
        let m = if gate_first {
            b.node("Mul", &[&s, &f], vec![])
        } else {
            b.node("Mul", &[&f, &s], vec![])
        };
        let p = b.node("GlobalAveragePool", &[&m], vec![]);
        let fl = b.node("Flatten", &[&p], vec![int("axis", 1)]);
        let out = b.gemm(&fl, 8, 3, true);
        (b, out, f)
    }

    #[test]
    fn a_fused_cbam_block_is_one_site_named_by_its_values() {
        for style in [
            CbamStyle::default(),
            CbamStyle {
                conv_mlp: false,
                max_first: true,
                spatial_bn: true,
                squeeze_channel_pool: true,
                expand: true,
                ..CbamStyle::default()
            },
        ] {
            let (b, out) = OnnxBuilder::cbam_classifier(&style, 13);
            let (g, sites) = sites_of(&b, &out);
            assert_eq!(sites.len(), 1, "{style:?}");
            let site = &sites[0];
            assert_eq!((site.kind, site.channels), (GateKind::Cbam, 8));
            assert!(g.nodes.iter().any(|n| n.name == site.name
                && matches!(n.op, Op::Cbam(_))
                && n.inputs.first().copied() == feature_of(&g, site)));
            assert_onnx_values(&b, &sites);
        }
    }

    #[test]
    fn sigmoid_and_hard_sigmoid_gates_are_sites_in_either_operand_order() {
        for (op, kind) in [
            ("Sigmoid", GateKind::Sigmoid),
            ("HardSigmoid", GateKind::HardSigmoid),
        ] {
            for gate_first in [false, true] {
                let (b, out, f) = se_model(op, gate_first);
                let (_, sites) = sites_of(&b, &out);
                assert_eq!(sites.len(), 1, "{op} gate_first={gate_first}");
                assert_eq!((sites[0].kind, sites[0].channels), (kind, 8));
                assert_eq!(sites[0].feature, f);
                assert_onnx_values(&b, &sites);
            }
        }
    }

    #[test]
    fn a_spatial_gate_or_a_self_gate_is_no_channel_site() {
        // x * sigmoid(conv(x)) with one gate value per pixel: spatial attention.
        let mut b = OnnxBuilder::new(&[1, 1, 6, 6], 13);
        let f = b.conv("x", 1, 8, 3, true);
        let s = b.conv(&f, 8, 1, 3, true);
        let s = b.node("Sigmoid", &[&s], vec![]);
        let m = b.node("Mul", &[&f, &s], vec![]);
        // x * sigmoid(x): SiLU, fused into one element-wise op.
        let sig = b.node("Sigmoid", &[&m], vec![]);
        let silu = b.node("Mul", &[&m, &sig], vec![]);
        let p = b.node("GlobalAveragePool", &[&silu], vec![]);
        let out = b.node("Flatten", &[&p], vec![int("axis", 1)]);
        let (_, sites) = sites_of(&b, &out);
        assert!(sites.is_empty(), "{sites:?}");
    }
}
