//! A 1x1 Conv on a pooled vector is a Linear: one MLP form for both export styles.

use super::edit::{shape, validate};
use super::PassError;
use crate::ir::{Graph, Linear, Op};

/// Converts each Conv with a 1x1 kernel, no padding and one group whose input holds
/// exactly `in_c` values (`[c, 1, 1]` or `[c]`). The weight layout `[out][in][1][1]` is
/// already `[out][in]`.
pub fn conv1x1_to_linear(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let input_sizes: Vec<usize> = g
        .nodes
        .iter()
        .map(|n| {
            n.inputs
                .first()
                .map(|&x| shape(&g, x).iter().product())
                .unwrap_or(0)
        })
        .collect();
    for (node, in_size) in g.nodes.iter_mut().zip(input_sizes) {
        let Op::Conv(c) = &node.op else { continue };
        let pointwise =
            c.kernel == [1, 1] && c.pads == [0; 4] && c.groups == 1 && in_size == c.in_c;
        if !pointwise {
            continue;
        }
        if c.weight.len() != c.out_c * c.in_c || c.bias.len() != c.out_c {
            return Err(PassError::BadNode {
                node: node.name.clone(),
                why: format!(
                    "1x1 conv {}->{} has {} weights and {} biases",
                    c.in_c,
                    c.out_c,
                    c.weight.len(),
                    c.bias.len()
                ),
            });
        }
        node.op = Op::Linear(Linear {
            weight: c.weight.clone(),
            bias: c.bias.clone(),
            out_features: c.out_c,
            in_features: c.in_c,
            act: c.act,
        });
    }
    Ok(g)
}
