//! Folds an inference BatchNorm into the Conv or Linear that feeds it.

use super::edit::{validate, Index};
use super::PassError;
use crate::ir::{BatchNorm, Graph, Op};

/// Per-channel `(multiplier, offset)` such that `bn(x) = x * m + o`.
pub(crate) fn bn_coefficients(bn: &BatchNorm) -> Vec<(f32, f32)> {
    bn.scale
        .iter()
        .zip(&bn.bias)
        .zip(bn.mean.iter().zip(&bn.var))
        .map(|((&g, &b), (&m, &v))| {
            let k = g / (v + bn.epsilon).sqrt();
            (k, b - m * k)
        })
        .collect()
}

/// Scales each output channel's weights (contiguous blocks of `per_channel` values) and
/// maps the bias through the BatchNorm.
/// Whether the shapes allowed folding; an error when the folded weights are not finite
/// (a near-zero variance scales them past `f32`).
fn fold(
    weight: &mut [f32],
    bias: &mut [f32],
    per_channel: usize,
    bn: &BatchNorm,
) -> Result<bool, String> {
    let coeffs = bn_coefficients(bn);
    if coeffs.len() != bias.len() || weight.len() != per_channel * bias.len() {
        return Ok(false);
    }
    for ((block, b), (k, o)) in weight
        .chunks_mut(per_channel.max(1))
        .zip(bias.iter_mut())
        .zip(coeffs)
    {
        block.iter_mut().for_each(|w| *w *= k);
        *b = *b * k + o;
        if !(b.is_finite() && block.iter().all(|w| w.is_finite())) {
            return Err(format!(
                "folding the BatchNorm (scale {k}) makes the weights overflow; its variance is \
                 near zero: the model is damaged"
            ));
        }
    }
    Ok(true)
}

/// Every BatchNorm whose input comes from a Conv/Linear with no other reader and no fused
/// activation is folded into it (the spatial-attention conv of a CBAM block included).
pub fn fold_batchnorm(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let mut ix = Index::new(&g);
    for i in 0..g.nodes.len() {
        let Some(node) = g.nodes.get(i) else { break };
        let (Op::BatchNorm(bn), Some(&x)) = (&node.op, node.inputs.first()) else {
            continue;
        };
        let (bn, name) = (bn.clone(), node.name.clone());
        let p = ix.producer(x).filter(|_| ix.uses(x) == 1);
        let folded = match p.and_then(|p| g.nodes.get_mut(p)).map(|n| &mut n.op) {
            Some(Op::Conv(c)) if c.act == Default::default() => {
                let per = c.weight.len() / c.out_c.max(1);
                fold(&mut c.weight, &mut c.bias, per, &bn)
            }
            Some(Op::Linear(l)) if l.act == Default::default() => {
                fold(&mut l.weight, &mut l.bias, l.in_features, &bn)
            }
            _ => Ok(false),
        }
        .map_err(|why| PassError::BadNode { node: name, why })?;
        if let Some(p) = p.filter(|_| folded) {
            ix.absorb_into_producer(&mut g, p, i);
        }
    }
    ix.sweep(&mut g);
    Ok(g)
}
