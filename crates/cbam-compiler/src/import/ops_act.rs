//! Element-wise activations without int8 arithmetic of their own (HardSigmoid, HardSwish,
//! LeakyRelu, Tanh, Elu) and arithmetic between a feature map and a constant (`x * 0.5`,
//! `x / 6`, `x + b`, `3 - x`), which becomes an [`Op::Affine`] unless it folds into the
//! bias of the Conv or Linear that produced `x`.

use super::attrs;
use super::builder::{Importer, NodeCtx};
use super::constant::Const;
use super::ImportError;
use crate::ir::{Op, Pointwise, TensorId};

/// The ONNX ops translated to [`Op::Pointwise`].
pub(crate) fn pointwise(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let alpha = |default: f32| attrs::float(n.proto, "alpha").unwrap_or(default);
    let f = match n.op_type() {
        "HardSigmoid" => Pointwise::HardSigmoid {
            alpha: alpha(0.2),
            beta: attrs::float(n.proto, "beta").unwrap_or(0.5),
        },
        "HardSwish" => Pointwise::HardSwish,
        "LeakyRelu" => Pointwise::LeakyRelu { alpha: alpha(0.01) },
        "Tanh" => Pointwise::Tanh,
        "Elu" => Pointwise::Elu { alpha: alpha(1.0) },
        other => return Err(n.unsupported(format!("{other} is not an element-wise activation"))),
    };
    let params = match f {
        Pointwise::HardSigmoid { alpha, beta } => vec![alpha, beta],
        Pointwise::LeakyRelu { alpha } | Pointwise::Elu { alpha } => vec![alpha],
        _ => vec![],
    };
    if params.iter().any(|p| !p.is_finite()) {
        return Err(n.bad(format!("parameters {params:?} are not finite numbers")));
    }
    let x = imp.tensor_input(n, 0)?;
    let shape = imp.shape(x).to_vec();
    imp.emit(n, Op::Pointwise(f), vec![x], shape)?;
    Ok(())
}

/// Which arithmetic op combines the feature map with the constant, and on which side the
/// constant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// `x op c` or `c op x` for a feature map `x` and a constant `c` that is one value or one
/// value per channel.
pub(crate) fn with_constant(
    imp: &mut Importer,
    n: &NodeCtx,
    x: TensorId,
    c: &Const,
    arith: Arith,
    const_first: bool,
) -> Result<(), ImportError> {
    let rank = imp.shape(x).len();
    let values = per_channel(c, rank).ok_or_else(|| {
        n.unsupported(format!(
            "{arith:?} of a feature map and a constant of dims {:?}: only one value or one per channel is supported",
            c.dims
        ))
    })?;
    let channels = imp.shape(x).get(1).copied().unwrap_or(1);
    if values.len() != 1 && values.len() != channels {
        return Err(n.bad(format!(
            "a constant of {} values for {channels} channels",
            values.len()
        )));
    }
    let (scale, bias) = match (arith, const_first) {
        (Arith::Add, _) => (vec![1.0], values),
        (Arith::Mul, _) => (values, vec![0.0]),
        (Arith::Sub, false) => (vec![1.0], values.iter().map(|v| -v).collect()),
        (Arith::Sub, true) => (vec![-1.0; values.len()], values),
        (Arith::Div, false) => {
            if values.contains(&0.0) {
                return Err(n.bad("divides by a constant that holds zero"));
            }
            (values.iter().map(|v| 1.0 / v).collect(), vec![0.0])
        }
        (Arith::Div, true) => {
            return Err(n.unsupported("dividing a constant by a feature map"));
        }
    };
    if scale.iter().chain(&bias).any(|v| !v.is_finite()) {
        return Err(n.bad(format!(
            "{arith:?} by {:?} is not finite",
            c.to_f32().first()
        )));
    }
    let adds_only = arith == Arith::Add || (arith == Arith::Sub && !const_first);
    if adds_only && fold_into_producer(imp, n, x, &bias)? {
        return Ok(());
    }
    let shape = imp.shape(x).to_vec();
    imp.emit(n, Op::Affine { scale, bias }, vec![x], shape)?;
    Ok(())
}

/// The constant's values when it varies along the channel axis only (axis 1 once its dims
/// are right-aligned with the feature map's rank `rank`), or is one value.
pub(crate) fn per_channel(c: &Const, rank: usize) -> Option<Vec<f32>> {
    let varying: Vec<usize> = c
        .dims
        .iter()
        .enumerate()
        .filter(|(_, &d)| d != 1)
        .map(|(i, _)| i)
        .collect();
    let ok = c.dims.len() <= rank
        && match varying.as_slice() {
            [] => true,
            [i] => rank - c.dims.len() + i == 1,
            _ => false,
        };
    ok.then(|| c.to_f32())
}

/// Adds `bias` to the bias of the Conv or Linear that produced `x`, when `x` has no other
/// use: exporters split `Linear` into `MatMul` + `Add`. `false` when there is no such producer.
fn fold_into_producer(
    imp: &mut Importer,
    n: &NodeCtx,
    x: TensorId,
    bias: &[f32],
) -> Result<bool, ImportError> {
    let name = imp
        .tensors
        .get(x)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let sole_use = imp.consumers(&name).len() == 1;
    let Some(node) = imp.producer_if_last(x).filter(|_| sole_use) else {
        return Ok(false);
    };
    let target = match &mut node.op {
        Op::Linear(l) if l.act == crate::ir::Activation::None => &mut l.bias,
        Op::Conv(c) if c.act == crate::ir::Activation::None => &mut c.bias,
        _ => return Ok(false),
    };
    let len = target.len();
    if bias.len() != len && bias.len() != 1 {
        return Err(n.bad(format!("adds {} values to {len} channels", bias.len())));
    }
    for (i, t) in target.iter_mut().enumerate() {
        *t += bias.get(i).or(bias.first()).copied().unwrap_or(0.0);
        if !t.is_finite() {
            return Err(n.bad(format!("bias {i} overflows to {t}")));
        }
    }
    imp.rename(x, n.first_output()?);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::constant::ConstData;

    fn c(dims: &[usize], v: Vec<f32>) -> Const {
        Const {
            dims: dims.to_vec(),
            data: ConstData::F32(v),
        }
    }

    #[test]
    fn per_channel_accepts_scalars_and_channel_vectors_only() {
        assert_eq!(per_channel(&c(&[], vec![2.0]), 4), Some(vec![2.0]));
        assert_eq!(per_channel(&c(&[1], vec![2.0]), 4), Some(vec![2.0]));
        assert_eq!(
            per_channel(&c(&[3, 1, 1], vec![1.0, 2.0, 3.0]), 4),
            Some(vec![1.0, 2.0, 3.0])
        );
        assert_eq!(
            per_channel(&c(&[1, 3], vec![1.0, 2.0, 3.0]), 2).map(|v| v.len()),
            Some(3)
        );
        // Varies along the width: not per channel.
        assert_eq!(per_channel(&c(&[3], vec![1.0, 2.0, 3.0]), 4), None);
        assert_eq!(per_channel(&c(&[1, 2, 2, 1], vec![0.0; 4]), 4), None);
    }
}
