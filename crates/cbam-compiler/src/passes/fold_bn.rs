//! Folds an inference BatchNorm into the Conv or Linear that feeds it.

use super::edit::{absorb_into_producer, producer, uses, validate};
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
fn fold(weight: &mut [f32], bias: &mut [f32], per_channel: usize, bn: &BatchNorm) -> bool {
    let coeffs = bn_coefficients(bn);
    if coeffs.len() != bias.len() || weight.len() != per_channel * bias.len() {
        return false;
    }
    for ((block, b), (k, o)) in weight
        .chunks_mut(per_channel.max(1))
        .zip(bias.iter_mut())
        .zip(coeffs)
    {
        block.iter_mut().for_each(|w| *w *= k);
        *b = *b * k + o;
    }
    true
}

/// Every BatchNorm whose input comes from a Conv/Linear with no other reader and no fused
/// activation is folded into it (the spatial-attention conv of a CBAM block included).
pub fn fold_batchnorm(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let mut i = 0;
    while let Some(node) = g.nodes.get(i) {
        let (Op::BatchNorm(bn), Some(&x)) = (&node.op, node.inputs.first()) else {
            i += 1;
            continue;
        };
        let bn = bn.clone();
        let p = producer(&g, x).filter(|_| uses(&g, x) == 1);
        let folded = match p.and_then(|p| g.nodes.get_mut(p)).map(|n| &mut n.op) {
            Some(Op::Conv(c)) if c.act == Default::default() => {
                let per = c.weight.len() / c.out_c.max(1);
                fold(&mut c.weight, &mut c.bias, per, &bn)
            }
            Some(Op::Linear(l)) if l.act == Default::default() => {
                fold(&mut l.weight, &mut l.bias, l.in_features, &bn)
            }
            _ => false,
        };
        match p {
            Some(p) if folded => absorb_into_producer(&mut g, p, i),
            _ => i += 1,
        }
    }
    Ok(g)
}
