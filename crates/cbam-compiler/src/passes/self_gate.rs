//! `x * sigmoid(x)` (SiLU/Swish) and `x * hardsigmoid(x)` (HardSwish), as exporters write
//! them without the fused op, become one element-wise [`Op::Pointwise`]: one table in
//! int8 instead of a table, a requantized product and an extra live tensor.

use super::edit::{validate, Index};
use super::PassError;
use crate::ir::{Graph, Node, Op, Pointwise};

/// Every Mul of a tensor by a gate computed from that same tensor alone, where the gate has
/// no other reader.
pub fn fuse_self_gates(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let mut ix = Index::new(&g);
    for i in 0..g.nodes.len() {
        let Some(node) = g.nodes.get(i) else { break };
        let (Op::Mul, [a, b]) = (&node.op, node.inputs.as_slice()) else {
            continue;
        };
        let (a, b) = (*a, *b);
        let gate_of = |x: usize, gate: usize| -> Option<(usize, Pointwise)> {
            let p = ix.producer(gate)?;
            let pn = g.nodes.get(p)?;
            if pn.inputs.as_slice() != [x] || ix.uses(gate) != 1 {
                return None;
            }
            match pn.op {
                Op::Sigmoid => Some((p, Pointwise::Silu)),
                Op::Pointwise(Pointwise::HardSigmoid { alpha, beta })
                    if (alpha - 1.0 / 6.0).abs() < 1e-6 && (beta - 0.5).abs() < 1e-6 =>
                {
                    Some((p, Pointwise::HardSwish))
                }
                _ => None,
            }
        };
        let Some((x, (gate_node, f))) = gate_of(a, b)
            .map(|r| (a, r))
            .or_else(|| gate_of(b, a).map(|r| (b, r)))
        else {
            continue;
        };
        let fused = Node {
            name: node.name.clone(),
            op: Op::Pointwise(f),
            inputs: vec![x],
            output: node.output,
        };
        ix.fuse(&mut g, i, &[gate_node], fused);
    }
    ix.sweep(&mut g);
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::TensorDef;

    fn graph(gate: Op, swap: bool) -> Graph {
        let t = |i: usize| TensorDef {
            name: format!("t{i}"),
            shape: vec![2, 3, 3],
        };
        let mul_inputs = if swap { vec![1, 0] } else { vec![0, 1] };
        Graph {
            tensors: (0..3).map(t).collect(),
            nodes: vec![
                Node {
                    name: "gate".into(),
                    op: gate,
                    inputs: vec![0],
                    output: 1,
                },
                Node {
                    name: "mul".into(),
                    op: Op::Mul,
                    inputs: mul_inputs,
                    output: 2,
                },
            ],
            input: 0,
            output: 2,
            meta: Default::default(),
        }
    }

    #[test]
    fn sigmoid_and_hard_sigmoid_self_gates_fuse_in_either_order() -> Result<(), PassError> {
        for swap in [false, true] {
            let g = fuse_self_gates(graph(Op::Sigmoid, swap))?;
            assert_eq!(g.nodes.len(), 1);
            assert_eq!(g.nodes[0].op, Op::Pointwise(Pointwise::Silu));
            assert_eq!(
                (g.nodes[0].inputs.as_slice(), g.nodes[0].output),
                (&[0][..], 2)
            );
        }
        let hs = Op::Pointwise(Pointwise::HardSigmoid {
            alpha: 1.0 / 6.0,
            beta: 0.5,
        });
        let g = fuse_self_gates(graph(hs, false))?;
        assert_eq!(g.nodes[0].op, Op::Pointwise(Pointwise::HardSwish));
        Ok(())
    }

    #[test]
    fn a_gate_with_other_parameters_or_readers_stays() -> Result<(), PassError> {
        let hs = Op::Pointwise(Pointwise::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        });
        assert_eq!(fuse_self_gates(graph(hs, false))?.nodes.len(), 2);
        let mut g = graph(Op::Sigmoid, false);
        g.output = 1;
        assert_eq!(fuse_self_gates(g)?.nodes.len(), 2);
        Ok(())
    }
}
