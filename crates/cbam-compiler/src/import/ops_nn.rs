//! Translation of the compute ops: Conv, Gemm/MatMul, BatchNormalization, pooling and
//! reductions, element-wise activations and arithmetic.

use super::attrs;
use super::builder::{Importer, NodeCtx, Value};
use super::ops_act::{self, Arith};
use super::window;
use super::ImportError;
use crate::ir::{Activation, BatchNorm, Conv, Linear, Op, Pool};

/// `[1, c, h, w]` of a feature-map input.
fn nchw(imp: &Importer, n: &NodeCtx, i: usize) -> Result<(usize, [usize; 4]), ImportError> {
    let id = imp.tensor_input(n, i)?;
    match *imp.shape(id) {
        [b, c, h, w] => Ok((id, [b, c, h, w])),
        ref s => Err(n.unsupported(format!(
            "input shape {s:?}: only NCHW (2-D image) tensors are supported"
        ))),
    }
}

pub(crate) fn conv(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let (x, [_, c, h, w]) = nchw(imp, n, 0)?;
    let weight = imp.const_input(n, 1)?;
    let [out_c, in_per_group, kh, kw] = match *weight.dims.as_slice() {
        [o, i, kh, kw] => [o, i, kh, kw],
        ref d => {
            return Err(n.unsupported(format!(
                "weight dims {d:?}: only 2-D convolutions are supported"
            )))
        }
    };
    let groups = usize::try_from(attrs::int(n.proto, "group").unwrap_or(1)).unwrap_or(0);
    if groups == 0 || in_per_group * groups != c || !out_c.is_multiple_of(groups) {
        return Err(n.bad(format!(
            "{c} input channels do not match weight dims {:?} with group={groups}",
            weight.dims
        )));
    }
    let weight = finite(n, "weight", weight.to_f32())?;
    let bias = finite(n, "bias", bias_or_zeros(imp, n, 2, out_c)?)?;
    let win = window::read(n, [h, w], [kh, kw])?;
    let op = Op::Conv(Conv {
        weight,
        bias,
        out_c,
        in_c: c,
        kernel: win.kernel,
        stride: win.stride,
        dilation: win.dilation,
        pads: win.pads,
        groups,
        act: Activation::None,
    });
    imp.emit(n, op, vec![x], vec![1, out_c, win.out_hw[0], win.out_hw[1]])?;
    Ok(())
}

/// Weights must be numbers: one NaN or Inf turns every output it reaches into garbage.
fn finite(n: &NodeCtx, what: &str, values: Vec<f32>) -> Result<Vec<f32>, ImportError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(n.bad(format!(
            "{what} value {i} is {}; the model's weights are damaged: re-export or retrain it",
            values[i]
        ))),
        None => Ok(values),
    }
}

fn bias_or_zeros(
    imp: &Importer,
    n: &NodeCtx,
    i: usize,
    len: usize,
) -> Result<Vec<f32>, ImportError> {
    match imp.optional_const(n, i)? {
        None => Ok(vec![0.0; len]),
        Some(b) if b.len() == len => Ok(b.to_f32()),
        Some(b) if b.len() == 1 => Ok(vec![b.to_f32().first().copied().unwrap_or(0.0); len]),
        Some(b) => Err(n.bad(format!("bias has {} values, expected {len}", b.len()))),
    }
}

/// `[1, k]` of a vector input.
fn row_vector(imp: &Importer, n: &NodeCtx) -> Result<(usize, usize), ImportError> {
    let id = imp.tensor_input(n, 0)?;
    match *imp.shape(id) {
        [1, k] => Ok((id, k)),
        ref s => Err(n.unsupported(format!(
            "input shape {s:?}: only a [1, features] vector is supported (flatten the feature map first)"
        ))),
    }
}

/// Transposes a row-major `[rows][cols]` matrix.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| m[r * cols + c]))
        .collect()
}

pub(crate) fn gemm(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    if attrs::int(n.proto, "transA").unwrap_or(0) != 0 {
        return Err(n.unsupported("transA=1: the activation must be the [1, K] left operand"));
    }
    let (x, k) = row_vector(imp, n)?;
    let b = imp.const_input(n, 1)?;
    let trans_b = attrs::int(n.proto, "transB").unwrap_or(0) != 0;
    let (rows, cols) = match *b.dims.as_slice() {
        [r, c] => (r, c),
        ref d => return Err(n.bad(format!("B has dims {d:?}, expected a matrix"))),
    };
    let (out, inner) = if trans_b { (rows, cols) } else { (cols, rows) };
    if inner != k {
        return Err(n.bad(format!("input has {k} features but B expects {inner}")));
    }
    let alpha = attrs::float(n.proto, "alpha").unwrap_or(1.0);
    let beta = attrs::float(n.proto, "beta").unwrap_or(1.0);
    let b = b.to_f32();
    let weight = if trans_b {
        b
    } else {
        transpose(&b, rows, cols)
    };
    let weight = finite(
        n,
        "alpha * B",
        weight.into_iter().map(|v| v * alpha).collect(),
    )?;
    let bias = bias_or_zeros(imp, n, 2, out)?
        .into_iter()
        .map(|v| v * beta)
        .collect();
    let bias = finite(n, "beta * C", bias)?;
    let op = Op::Linear(Linear {
        weight,
        bias,
        out_features: out,
        in_features: k,
        act: Activation::None,
    });
    imp.emit(n, op, vec![x], vec![1, out])?;
    Ok(())
}

/// `MatMul(x, W)` is a Linear without bias; a following `Add(·, b)` folds into it (see [`add`]).
pub(crate) fn matmul(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let (x, k) = row_vector(imp, n)?;
    let b = imp.const_input(n, 1)?;
    let out = match *b.dims.as_slice() {
        [r, c] if r == k => c,
        ref d => {
            return Err(n.unsupported(format!("right operand dims {d:?} for {k} input features")))
        }
    };
    let weight = finite(n, "weight", transpose(&b.to_f32(), k, out))?;
    let op = Op::Linear(Linear {
        weight,
        bias: vec![0.0; out],
        out_features: out,
        in_features: k,
        act: Activation::None,
    });
    imp.emit(n, op, vec![x], vec![1, out])?;
    Ok(())
}

pub(crate) fn batch_norm(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    if attrs::int(n.proto, "training_mode").unwrap_or(0) != 0 || n.output(1).is_some() {
        return Err(
            n.unsupported("training-mode BatchNormalization; export the model in eval() mode")
        );
    }
    let x = imp.tensor_input(n, 0)?;
    let shape = imp.shape(x).to_vec();
    let c = shape.get(1).copied().unwrap_or(0);
    let mut params = Vec::with_capacity(4);
    for i in 1..=4 {
        let p = imp.const_input(n, i)?;
        if p.len() != c {
            return Err(n.bad(format!(
                "parameter {i} has {} values for {c} channels",
                p.len()
            )));
        }
        params.push(finite(n, &format!("parameter {i}"), p.to_f32())?);
    }
    let [scale, bias, mean, var] =
        <[Vec<f32>; 4]>::try_from(params).map_err(|_| n.bad("needs 4 parameters"))?;
    let epsilon = attrs::float(n.proto, "epsilon").unwrap_or(1e-5);
    if let Some(v) = var
        .iter()
        .find(|&&v| !(v + epsilon > 0.0 && (v + epsilon).is_finite()))
    {
        return Err(n.bad(format!(
            "variance {v} + epsilon {epsilon} is not a positive number; the model is damaged"
        )));
    }
    imp.emit(
        n,
        Op::BatchNorm(BatchNorm {
            scale,
            bias,
            mean,
            var,
            epsilon,
        }),
        vec![x],
        shape,
    )?;
    Ok(())
}

/// MaxPool/AveragePool; a window covering the whole map is a global pool.
pub(crate) fn pool(imp: &mut Importer, n: &NodeCtx, is_max: bool) -> Result<(), ImportError> {
    let (x, [_, c, h, w]) = nchw(imp, n, 0)?;
    let kernel = match attrs::ints(n.proto, "kernel_shape").as_deref() {
        Some([kh, kw]) if *kh >= 1 && *kw >= 1 => [*kh as usize, *kw as usize],
        other => {
            return Err(n.unsupported(format!(
                "kernel_shape {other:?}: only 2-D pools are supported"
            )))
        }
    };
    let win = window::read(n, [h, w], kernel)?;
    if win.dilation != [1, 1] {
        return Err(n.unsupported("dilated pooling"));
    }
    if win.out_hw == [1, 1] && win.kernel == [h, w] && win.pads == [0; 4] {
        let op = if is_max {
            Op::GlobalMaxPool
        } else {
            Op::GlobalAvgPool
        };
        imp.emit(n, op, vec![x], vec![1, c, 1, 1])?;
        return Ok(());
    }
    if !is_max && win.pads != [0; 4] && attrs::int(n.proto, "count_include_pad").unwrap_or(0) == 0 {
        return Err(n.unsupported(
            "padded AveragePool that excludes the padding from the count; use count_include_pad=True or no padding",
        ));
    }
    let pool = Pool {
        kernel: win.kernel,
        stride: win.stride,
        pads: win.pads,
    };
    let op = if is_max {
        Op::MaxPool(pool)
    } else {
        Op::AvgPool(pool)
    };
    imp.emit(n, op, vec![x], vec![1, c, win.out_hw[0], win.out_hw[1]])?;
    Ok(())
}

pub(crate) fn global_pool(
    imp: &mut Importer,
    n: &NodeCtx,
    is_max: bool,
) -> Result<(), ImportError> {
    let (x, [_, c, _, _]) = nchw(imp, n, 0)?;
    let op = if is_max {
        Op::GlobalMaxPool
    } else {
        Op::GlobalAvgPool
    };
    imp.emit(n, op, vec![x], vec![1, c, 1, 1])?;
    Ok(())
}

/// ReduceMean/ReduceMax over the spatial axes (a global pool) or the channel axis.
pub(crate) fn reduce(imp: &mut Importer, n: &NodeCtx, is_max: bool) -> Result<(), ImportError> {
    let (x, [_, c, h, w]) = nchw(imp, n, 0)?;
    // Axes moved from an attribute to an input at opset 18 (ReduceMean/ReduceMax).
    let axes = match attrs::ints(n.proto, "axes") {
        Some(a) => a,
        None => match imp.optional_const(n, 1)? {
            Some(a) => a.to_i64().ok_or_else(|| n.bad("axes are not integers"))?,
            None => Vec::new(),
        },
    };
    let mut axes: Vec<i64> = axes
        .into_iter()
        .map(|a| if a < 0 { a + 4 } else { a })
        .collect();
    axes.sort_unstable();
    axes.dedup();
    let keep = attrs::int(n.proto, "keepdims").unwrap_or(1) != 0;
    let (op, shape) = match (axes.as_slice(), is_max) {
        ([2, 3], false) => (Op::GlobalAvgPool, if keep { vec![1, c, 1, 1] } else { vec![1, c] }),
        ([2, 3], true) => (Op::GlobalMaxPool, if keep { vec![1, c, 1, 1] } else { vec![1, c] }),
        ([1], false) => (Op::ChannelMean, if keep { vec![1, 1, h, w] } else { vec![1, h, w] }),
        ([1], true) => (Op::ChannelMax, if keep { vec![1, 1, h, w] } else { vec![1, h, w] }),
        _ => {
            return Err(n.unsupported(format!(
                "reduction over axes {axes:?}: only [2, 3] (global pool) and [1] (channel pool) are supported"
            )))
        }
    };
    imp.emit(n, op, vec![x], shape)?;
    Ok(())
}

/// Relu, Sigmoid, Softmax: same shape in and out.
pub(crate) fn unary(imp: &mut Importer, n: &NodeCtx, op: Op) -> Result<(), ImportError> {
    let x = imp.tensor_input(n, 0)?;
    let shape = imp.shape(x).to_vec();
    if op == Op::Softmax {
        let axis = attrs::int(n.proto, "axis").unwrap_or(if imp.opset >= 13 { -1 } else { 1 });
        let last = shape.len() as i64 - 1;
        if shape.len() != 2 || !(axis == 1 || axis == -1 || axis == last) {
            return Err(n.unsupported(format!(
                "softmax over axis {axis} of {shape:?}: only over the classes of a [1, n] vector"
            )));
        }
    }
    imp.emit(n, op, vec![x], shape)?;
    Ok(())
}

/// Clip's bounds are attributes before opset 11 and optional inputs from then on.
pub(crate) fn clip(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let bound = |i: usize, attr: &str, default: f32| -> Result<f32, ImportError> {
        if let Some(v) = attrs::float(n.proto, attr) {
            return Ok(v);
        }
        match imp.optional_const(n, i)? {
            None => Ok(default),
            Some(c) => c
                .to_f32()
                .first()
                .copied()
                .ok_or_else(|| n.bad(format!("{attr} bound is empty"))),
        }
    };
    let lo = bound(1, "min", f32::NEG_INFINITY)?;
    let hi = bound(2, "max", f32::INFINITY)?;
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(n.bad(format!("clip bounds [{lo}, {hi}] are not an interval")));
    }
    unary(imp, n, Op::Clip(lo, hi))
}

/// Numpy-style broadcast of two shapes of equal rank.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    if a.len() != b.len() {
        return None;
    }
    a.iter()
        .zip(b)
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Add/Sub/Mul/Div: of two run-time tensors (Add and Mul only), or of a feature map and a
/// constant (see [`ops_act::with_constant`]).
pub(crate) fn binary(imp: &mut Importer, n: &NodeCtx, arith: Arith) -> Result<(), ImportError> {
    let (a, b) = (imp.required(n, 0)?.clone(), imp.required(n, 1)?.clone());
    let (x, y) = match (a, b) {
        (Value::Tensor(x), Value::Tensor(y)) => (x, y),
        (Value::Tensor(x), Value::Const(c)) => {
            return ops_act::with_constant(imp, n, x, &c, arith, false)
        }
        (Value::Const(c), Value::Tensor(x)) => {
            return ops_act::with_constant(imp, n, x, &c, arith, true)
        }
        (Value::Const(_), Value::Const(_)) => {
            return Err(
                n.unsupported("arithmetic on two constants (only shape arithmetic is folded)")
            )
        }
        (Value::Flat(_), _) | (_, Value::Flat(_)) => return Err(n.unsupported(
            "arithmetic on a feature map flattened with its batch axis; only batch 1 is supported",
        )),
    };
    let op = match arith {
        Arith::Add => Op::Add {
            act: Activation::None,
        },
        Arith::Mul => Op::Mul,
        Arith::Sub | Arith::Div => {
            return Err(n.unsupported(format!(
                "{arith:?} of two feature maps; only Add and Mul of feature maps are supported"
            )))
        }
    };
    let (sx, sy) = (imp.shape(x).to_vec(), imp.shape(y).to_vec());
    let shape = broadcast(&sx, &sy)
        .ok_or_else(|| n.bad(format!("shapes {sx:?} and {sy:?} do not broadcast")))?;
    imp.emit(n, op, vec![x, y], shape)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        assert_eq!(
            broadcast(&[1, 8, 4, 4], &[1, 8, 1, 1]),
            Some(vec![1, 8, 4, 4])
        );
        assert_eq!(
            broadcast(&[1, 1, 4, 4], &[1, 8, 4, 4]),
            Some(vec![1, 8, 4, 4])
        );
        assert_eq!(broadcast(&[1, 3, 4, 4], &[1, 8, 4, 4]), None);
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
