//! Per-channel affine maps (`x * s + b`: a Mul/Add/Sub/Div by a constant, a BatchNorm with
//! no Conv before it, the `alpha * x + beta` inside HardSigmoid) fold into the Conv or Linear
//! that produces `x`; what is left becomes a depthwise 1x1 Conv, which the int8 core runs.

use super::edit::{shape, validate, Index};
use super::fold_bn::bn_coefficients;
use super::PassError;
use crate::ir::{Activation, Conv, Graph, Linear, Op, Pointwise};

/// `scale`/`bias` as one value per channel (a single value applies to all `channels`).
fn per_channel(v: &[f32], channels: usize) -> Option<Vec<f32>> {
    match v.len() {
        1 => Some(vec![v[0]; channels]),
        n if n == channels => Some(v.to_vec()),
        _ => None,
    }
}

/// Applies `y = act(z) * s + b` to the producer's weights when that is again `act'(z')`:
/// with no activation always, after a ReLU when every `s > 0` and `b == 0`.
fn scale_producer(op: &mut Op, scale: &[f32], bias: &[f32]) -> bool {
    let (weight, b, out, act) = match op {
        Op::Conv(c) => (&mut c.weight, &mut c.bias, c.out_c, c.act),
        Op::Linear(l) => (&mut l.weight, &mut l.bias, l.out_features, l.act),
        _ => return false,
    };
    let (Some(s), Some(o)) = (per_channel(scale, out), per_channel(bias, out)) else {
        return false;
    };
    let ok = match act {
        Activation::None => true,
        Activation::Relu => s.iter().all(|&k| k > 0.0) && o.iter().all(|&k| k == 0.0),
        Activation::Clip(..) => false,
    };
    if !ok || out == 0 || weight.len() % out != 0 || b.len() != out {
        return false;
    }
    let per = weight.len() / out;
    for ((block, bb), (k, off)) in weight
        .chunks_mut(per.max(1))
        .zip(b.iter_mut())
        .zip(s.iter().zip(&o))
    {
        block.iter_mut().for_each(|w| *w *= k);
        *bb = *bb * k + off;
    }
    true
}

/// Folds every [`Op::Affine`] into its producer where [`scale_producer`] allows it, merges
/// chains of two affine maps, and folds a HardSigmoid after a Conv/Linear into it as
/// `Clip(0, 1)` (`hardsigmoid(z) = clip(alpha * z + beta, 0, 1)`).
pub fn fold_affine(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let mut ix = Index::new(&g);
    for i in 0..g.nodes.len() {
        let Some(node) = g.nodes.get(i) else { break };
        let (scale, bias, act) = match &node.op {
            Op::Affine { scale, bias } => (scale.clone(), bias.clone(), None),
            Op::Pointwise(Pointwise::HardSigmoid { alpha, beta }) => {
                (vec![*alpha], vec![*beta], Some(Activation::Clip(0.0, 1.0)))
            }
            _ => continue,
        };
        let Some(&x) = node.inputs.first() else {
            continue;
        };
        let p = ix.producer(x).filter(|_| ix.uses(x) == 1);
        let folded = match p.and_then(|p| g.nodes.get_mut(p)).map(|n| &mut n.op) {
            Some(Op::Affine {
                scale: s0,
                bias: b0,
            }) if act.is_none() => merge_affine(s0, b0, &scale, &bias),
            Some(op) => {
                let free = match op {
                    Op::Conv(c) => c.act == Activation::None || act.is_none(),
                    Op::Linear(l) => l.act == Activation::None || act.is_none(),
                    _ => false,
                };
                let ok = free && scale_producer(op, &scale, &bias);
                if let (true, Some(a)) = (ok, act) {
                    match op {
                        Op::Conv(c) => c.act = a,
                        Op::Linear(l) => l.act = a,
                        _ => {}
                    }
                }
                ok
            }
            None => false,
        };
        if let (Some(p), true) = (p, folded) {
            ix.absorb_into_producer(&mut g, p, i);
        }
    }
    ix.sweep(&mut g);
    Ok(g)
}

/// `(x * s0 + b0) * s + b` as one map into `s0`, `b0`; `false` when the lengths disagree.
fn merge_affine(s0: &mut Vec<f32>, b0: &mut Vec<f32>, scale: &[f32], bias: &[f32]) -> bool {
    let n = s0.len().max(b0.len()).max(scale.len()).max(bias.len());
    match (
        per_channel(s0, n),
        per_channel(b0, n),
        per_channel(scale, n),
        per_channel(bias, n),
    ) {
        (Some(s0v), Some(b0v), Some(s), Some(b)) => {
            *s0 = s0v.iter().zip(&s).map(|(a, k)| a * k).collect();
            *b0 = b0v
                .iter()
                .zip(&s)
                .zip(&b)
                .map(|((o, k), c)| o * k + c)
                .collect();
            true
        }
        _ => false,
    }
}

/// A BatchNorm that did not fold into a Conv/Linear (one after an Add or on the input) is
/// the affine map it computes.
pub fn batchnorm_to_affine(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    for node in &mut g.nodes {
        if let Op::BatchNorm(bn) = &node.op {
            let (scale, bias) = bn_coefficients(bn).into_iter().unzip();
            node.op = Op::Affine { scale, bias };
        }
    }
    Ok(g)
}

/// Every remaining [`Op::Affine`] becomes a depthwise 1x1 Conv (on `[c, h, w]`) or a
/// diagonal Linear (on a vector `[n]`).
pub fn affine_to_conv(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let shapes: Vec<Vec<usize>> = g
        .nodes
        .iter()
        .map(|n| {
            n.inputs
                .first()
                .map(|&x| shape(&g, x).to_vec())
                .unwrap_or_default()
        })
        .collect();
    for (node, in_shape) in g.nodes.iter_mut().zip(shapes) {
        let Op::Affine { scale, bias } = &node.op else {
            continue;
        };
        let channels = in_shape.first().copied().unwrap_or(0);
        let bad = |why: String| PassError::BadNode {
            node: node.name.clone(),
            why,
        };
        let (Some(s), Some(b)) = (per_channel(scale, channels), per_channel(bias, channels)) else {
            return Err(bad(format!(
                "{} scales and {} offsets for {channels} channels",
                scale.len(),
                bias.len()
            )));
        };
        node.op = match in_shape.len() {
            3 => Op::Conv(Conv {
                weight: s,
                bias: b,
                out_c: channels,
                in_c: channels,
                kernel: [1, 1],
                stride: [1, 1],
                dilation: [1, 1],
                pads: [0; 4],
                groups: channels,
                act: Activation::None,
            }),
            1 => {
                let mut weight = vec![0.0; channels * channels];
                for (i, k) in s.iter().enumerate() {
                    weight[i * channels + i] = *k;
                }
                Op::Linear(Linear {
                    weight,
                    bias: b,
                    out_features: channels,
                    in_features: channels,
                    act: Activation::None,
                })
            }
            _ => {
                return Err(bad(format!(
                    "an affine map on a tensor of shape {in_shape:?}"
                )))
            }
        };
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Node, TensorDef};

    fn graph(shapes: &[&[usize]], nodes: Vec<(Op, usize, usize)>) -> Graph {
        Graph {
            tensors: shapes
                .iter()
                .enumerate()
                .map(|(i, s)| TensorDef {
                    name: format!("t{i}"),
                    shape: s.to_vec(),
                })
                .collect(),
            nodes: nodes
                .into_iter()
                .enumerate()
                .map(|(i, (op, x, y))| Node {
                    name: format!("n{i}"),
                    op,
                    inputs: vec![x],
                    output: y,
                })
                .collect(),
            input: 0,
            output: shapes.len() - 1,
            meta: Default::default(),
        }
    }

    fn conv(act: Activation) -> Op {
        Op::Conv(Conv {
            weight: vec![1.0, 2.0, 3.0, 4.0],
            bias: vec![0.5, -0.5],
            out_c: 2,
            in_c: 2,
            kernel: [1, 1],
            stride: [1, 1],
            dilation: [1, 1],
            pads: [0; 4],
            groups: 1,
            act,
        })
    }

    #[test]
    fn mul_and_add_fold_into_the_conv_before() -> Result<(), PassError> {
        let affine = Op::Affine {
            scale: vec![2.0, 3.0],
            bias: vec![1.0],
        };
        let g = graph(
            &[&[2, 4, 4], &[2, 4, 4], &[2, 4, 4]],
            vec![(conv(Activation::None), 0, 1), (affine, 1, 2)],
        );
        let g = fold_affine(g)?;
        assert_eq!(g.nodes.len(), 1);
        let Op::Conv(c) = &g.nodes[0].op else {
            panic!("a conv")
        };
        assert_eq!(c.weight, [2.0, 4.0, 9.0, 12.0]);
        assert_eq!(c.bias, [2.0, -0.5]);
        assert_eq!(g.nodes[0].output, 2);
        Ok(())
    }

    #[test]
    fn a_shift_after_relu_does_not_fold_and_becomes_a_depthwise_conv() -> Result<(), PassError> {
        let affine = Op::Affine {
            scale: vec![0.5],
            bias: vec![1.0],
        };
        let g = graph(
            &[&[2, 4, 4], &[2, 4, 4], &[2, 4, 4]],
            vec![(conv(Activation::Relu), 0, 1), (affine, 1, 2)],
        );
        let g = affine_to_conv(fold_affine(g)?)?;
        assert_eq!(g.nodes.len(), 2);
        let Op::Conv(dw) = &g.nodes[1].op else {
            panic!("a conv")
        };
        assert_eq!(
            (dw.groups, dw.weight.as_slice(), dw.bias.as_slice()),
            (2, &[0.5, 0.5][..], &[1.0, 1.0][..])
        );
        Ok(())
    }

    #[test]
    fn hard_sigmoid_after_a_conv_is_its_clip() -> Result<(), PassError> {
        let hs = Op::Pointwise(Pointwise::HardSigmoid {
            alpha: 0.25,
            beta: 0.5,
        });
        let g = graph(
            &[&[2, 1, 1], &[2, 1, 1], &[2, 1, 1]],
            vec![(conv(Activation::None), 0, 1), (hs, 1, 2)],
        );
        let g = fold_affine(g)?;
        let Op::Conv(c) = &g.nodes[0].op else {
            panic!("a conv")
        };
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(c.act, Activation::Clip(0.0, 1.0));
        assert_eq!(c.weight, [0.25, 0.5, 0.75, 1.0]);
        assert_eq!(c.bias, [0.625, 0.375]);
        Ok(())
    }

    #[test]
    fn an_affine_on_a_vector_is_a_diagonal_linear() -> Result<(), PassError> {
        let affine = Op::Affine {
            scale: vec![2.0, 3.0],
            bias: vec![0.0],
        };
        let g = affine_to_conv(graph(&[&[2], &[2]], vec![(affine, 0, 1)]))?;
        let Op::Linear(l) = &g.nodes[0].op else {
            panic!("a linear")
        };
        assert_eq!(l.weight, [2.0, 0.0, 0.0, 3.0]);
        Ok(())
    }
}
