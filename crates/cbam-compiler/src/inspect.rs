//! What is in a model: per-node op, shapes, parameters and MACs, and the CBAM blocks
//! found; as JSON (`serde`) and as text for `cbam inspect`.

use std::fmt;

use serde::Serialize;

use crate::ir::{Activation, Cbam, Conv, Graph, Linear, Node, Op, SpatialOrder};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Inspection {
    pub source: String,
    pub opset: i64,
    /// Input shape without batch, `[c, h, w]`.
    pub input: Vec<usize>,
    pub output: Vec<usize>,
    pub nodes: Vec<NodeInfo>,
    /// Multiply-accumulates of one inference (Conv, Linear and the CBAM MLP and spatial
    /// conv; element-wise ops, pools and sigmoids are not counted).
    pub macs: u64,
    /// Weights and biases (BatchNorm parameters count until folded).
    pub params: u64,
    pub cbam_blocks: usize,
    pub blocks: Vec<CbamInfo>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub op: String,
    pub inputs: Vec<Vec<usize>>,
    pub output: Vec<usize>,
    pub params: u64,
    pub macs: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CbamInfo {
    pub node: String,
    pub channels: usize,
    pub hidden: usize,
    /// Spatial conv kernel size (k x k).
    pub k: usize,
    /// `"mean_max"` (paper) or `"max_mean"` (official code).
    pub order: &'static str,
    pub params: u64,
    pub macs: u64,
}

fn act_name(act: Activation) -> String {
    match act {
        Activation::None => String::new(),
        Activation::Relu => "+Relu".into(),
        Activation::Clip(lo, hi) => format!("+Clip({lo},{hi})"),
    }
}

fn op_name(op: &Op) -> String {
    match op {
        Op::Conv(c) if c.groups > 1 => format!(
            "Conv{}x{}/g{}{}",
            c.kernel[0],
            c.kernel[1],
            c.groups,
            act_name(c.act)
        ),
        Op::Conv(c) => format!("Conv{}x{}{}", c.kernel[0], c.kernel[1], act_name(c.act)),
        Op::Linear(l) => format!("Linear{}", act_name(l.act)),
        Op::Add { act } => format!("Add{}", act_name(*act)),
        Op::MaxPool(p) => format!("MaxPool{}x{}", p.kernel[0], p.kernel[1]),
        Op::AvgPool(p) => format!("AvgPool{}x{}", p.kernel[0], p.kernel[1]),
        Op::Clip(lo, hi) => format!("Clip({lo},{hi})"),
        Op::Cbam(_) => "CBAM".into(),
        Op::Pointwise(f) => f.name().into(),
        Op::Pad(p) => format!("Pad{p:?}"),
        other => format!("{other:?}")
            .split([' ', '(', '{'])
            .next()
            .unwrap_or("?")
            .to_string(),
    }
}

fn count(n: usize) -> u64 {
    n as u64
}

fn conv_cost(c: &Conv, out: &[usize]) -> (u64, u64) {
    let positions: usize = out.iter().skip(1).product();
    let per_output = (c.in_c / c.groups.max(1)) * c.kernel[0] * c.kernel[1];
    (
        count(c.weight.len() + c.bias.len()),
        count(c.out_c * positions * per_output),
    )
}

fn linear_cost(l: &Linear) -> (u64, u64) {
    (
        count(l.weight.len() + l.bias.len()),
        count(l.out_features * l.in_features),
    )
}

/// The MLP runs twice (avg and max); the spatial conv once per pixel.
fn cbam_cost(c: &Cbam, out: &[usize]) -> (u64, u64) {
    let (p1, m1) = linear_cost(&c.mlp1);
    let (p2, m2) = linear_cost(&c.mlp2);
    let (ps, ms) = conv_cost(
        &c.spatial,
        &[
            1,
            out.get(1).copied().unwrap_or(1),
            out.get(2).copied().unwrap_or(1),
        ],
    );
    (p1 + p2 + ps, 2 * (m1 + m2) + ms)
}

fn cost(node: &Node, out: &[usize]) -> (u64, u64) {
    match &node.op {
        Op::Conv(c) => conv_cost(c, out),
        Op::Linear(l) => linear_cost(l),
        Op::BatchNorm(b) => (count(4 * b.scale.len()), 0),
        Op::Cbam(c) => cbam_cost(c, out),
        _ => (0, 0),
    }
}

pub fn inspect(g: &Graph) -> Inspection {
    let shape = |t: usize| {
        g.tensors
            .get(t)
            .map(|t| t.shape.clone())
            .unwrap_or_default()
    };
    let mut nodes = Vec::with_capacity(g.nodes.len());
    let mut blocks = Vec::new();
    for node in &g.nodes {
        let output = shape(node.output);
        let (params, macs) = cost(node, &output);
        if let Op::Cbam(c) = &node.op {
            blocks.push(CbamInfo {
                node: node.name.clone(),
                channels: c.channels,
                hidden: c.hidden,
                k: c.spatial.kernel[0],
                order: match c.order {
                    SpatialOrder::MeanMax => "mean_max",
                    SpatialOrder::MaxMean => "max_mean",
                },
                params,
                macs,
            });
        }
        nodes.push(NodeInfo {
            name: node.name.clone(),
            op: op_name(&node.op),
            inputs: node.inputs.iter().map(|&i| shape(i)).collect(),
            output,
            params,
            macs,
        });
    }
    Inspection {
        source: g.meta.source_name.clone(),
        opset: g.meta.opset,
        input: shape(g.input),
        output: shape(g.output),
        macs: nodes.iter().map(|n| n.macs).sum(),
        params: nodes.iter().map(|n| n.params).sum(),
        cbam_blocks: blocks.len(),
        blocks,
        nodes,
    }
}

fn dims(s: &[usize]) -> String {
    let parts: Vec<String> = s.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join("x"))
}

/// The text report of `cbam inspect`.
impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model {} (opset {}): input {} -> output {}",
            self.source,
            self.opset,
            dims(&self.input),
            dims(&self.output)
        )?;
        writeln!(
            f,
            "{:<4} {:<22} {:<16} {:>10} {:>12}  name",
            "#", "op", "output", "params", "MACs"
        )?;
        for (i, n) in self.nodes.iter().enumerate() {
            writeln!(
                f,
                "{:<4} {:<22} {:<16} {:>10} {:>12}  {}",
                i,
                n.op,
                dims(&n.output),
                n.params,
                n.macs,
                n.name
            )?;
        }
        writeln!(
            f,
            "total: {} params, {} MACs, {} CBAM block(s)",
            self.params, self.macs, self.cbam_blocks
        )?;
        for b in &self.blocks {
            writeln!(
                f,
                "  CBAM {}: channels {}, hidden {}, spatial {}x{}, order {}, {} params, {} MACs",
                b.node, b.channels, b.hidden, b.k, b.k, b.order, b.params, b.macs
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::import_model;
    use crate::import::testing::{CbamStyle, OnnxBuilder};
    use crate::passes::optimize;

    #[test]
    fn counts_macs_params_and_blocks() -> Result<(), Box<dyn std::error::Error>> {
        let style = CbamStyle {
            k: 3,
            max_first: true,
            ..CbamStyle::default()
        };
        let (b, out) = OnnxBuilder::cbam_classifier(&style, 13);
        let g = optimize(import_model(&b.build(&out), None)?)?;
        let report = inspect(&g);
        assert_eq!(report.cbam_blocks, 1);
        let block = &report.blocks[0];
        assert_eq!(
            (block.channels, block.hidden, block.k, block.order),
            (8, 2, 3, "max_mean")
        );
        // conv 1->8 3x3 on 8x8, MLP 8->2->8 twice, spatial 2->1 3x3 on 8x8, linear 8->4.
        let conv = 8 * 64 * 9;
        let mlp = 2 * (16 + 16);
        let spatial = 64 * 18;
        assert_eq!(block.macs, (mlp + spatial) as u64);
        assert_eq!(report.macs, (conv + mlp + spatial + 32) as u64);
        assert_eq!(
            report.params,
            (8 * 9 + 8 + (16 + 2) + (16 + 8) + 18 + 1 + 32 + 4) as u64
        );
        let json = serde_json::to_value(&report)?;
        assert_eq!(json["cbam_blocks"], 1);
        assert_eq!(json["macs"], report.macs);
        let text = report.to_string();
        assert!(
            text.contains("1 CBAM block(s)") && text.contains("order max_mean"),
            "{text}"
        );
        Ok(())
    }
}
