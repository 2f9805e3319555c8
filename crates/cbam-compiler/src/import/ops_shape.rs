//! Translation of the shape-only ops. On constants they are folded (so the
//! `Shape -> Gather -> Concat -> Reshape` chains of `x.view(x.size(0), -1)` become a static
//! shape); on feature maps they become [`Op::Flatten`] (a reshape) or [`Op::Identity`].

use super::attrs;
use super::builder::{Importer, NodeCtx, Value};
use super::constant::{decode_tensor, Const, ConstData};
use super::ImportError;
use crate::ir::Op;
use crate::limits;

pub(crate) fn constant(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let c = if let Some(t) = attrs::tensor(n.proto, "value") {
        decode_tensor(t, imp.model_dir).map_err(|why| n.bad(format!("value: {why}")))?
    } else if let Some(v) = attrs::float(n.proto, "value_float") {
        Const {
            dims: vec![],
            data: ConstData::F32(vec![v]),
        }
    } else if let Some(v) = attrs::int(n.proto, "value_int") {
        Const {
            dims: vec![],
            data: ConstData::I64(vec![v]),
        }
    } else if let Some(v) = attrs::ints(n.proto, "value_ints") {
        Const::i64_vector(v)
    } else if let Some(v) = n.proto.attribute.iter().find(|a| a.name == "value_floats") {
        Const {
            dims: vec![v.floats.len()],
            data: ConstData::F32(v.floats.clone()),
        }
    } else {
        return Err(n.unsupported("a Constant without a tensor, float(s) or int(s) value"));
    };
    imp.define(n.first_output()?, Value::Const(c));
    Ok(())
}

/// The shape of a feature map (batch fixed to 1) or of a constant, as an int64 vector.
pub(crate) fn shape(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let dims: Vec<i64> = match imp.required(n, 0)? {
        Value::Tensor(id) => imp.shape(*id).iter().map(|&d| d as i64).collect(),
        Value::Flat(id) => vec![imp.shape(*id).iter().product::<usize>() as i64],
        Value::Const(c) => c.dims.iter().map(|&d| d as i64).collect(),
    };
    let rank = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(attrs::int(n.proto, "start").unwrap_or(0));
    let end = clamp(attrs::int(n.proto, "end").unwrap_or(rank));
    let dims = dims.get(start..end.max(start)).unwrap_or(&[]).to_vec();
    imp.define(n.first_output()?, Value::Const(Const::i64_vector(dims)));
    Ok(())
}

/// A rank-0/1 constant input (shape vectors and their pieces).
fn small_const<'i>(imp: &'i Importer, n: &NodeCtx, i: usize) -> Result<&'i Const, ImportError> {
    let c = imp.const_input(n, i)?;
    if c.dims.len() > 1 {
        return Err(n.unsupported(format!(
            "folding a constant of dims {:?}; only vectors are folded",
            c.dims
        )));
    }
    Ok(c)
}

pub(crate) fn gather(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    if let Value::Flat(x) = imp.required(n, 0)? {
        return gather_flat(imp, n, *x);
    }
    let data = small_const(imp, n, 0)?;
    let indices = imp.const_input(n, 1)?;
    if attrs::int(n.proto, "axis").unwrap_or(0) != 0 {
        return Err(n.unsupported("gathering along an axis other than 0 of a vector"));
    }
    let len = data.len() as i64;
    let picks = indices
        .to_i64()
        .ok_or_else(|| n.bad("indices are not integers"))?
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + len } else { i };
            usize::try_from(j)
                .ok()
                .filter(|&j| (j as i64) < len)
                .ok_or_else(|| n.bad(format!("index {i} out of 0..{len}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = data
        .select(indices.dims.clone(), &picks)
        .ok_or_else(|| n.bad("index out of range"))?;
    imp.define(n.first_output()?, Value::Const(out));
    Ok(())
}

/// Slices a constant of any rank, with negative starts/ends and steps as ONNX defines them
/// (the legacy exporter reverses the pad matrix of `F.pad` with a step of -1).
/// `x.as_strided(x.size(), x.stride())`, as the dynamo exporter writes it after a keepdim
/// reduction: every element of the flattened map taken in order is the map itself,
/// reshaped to the indices' dims. Any other index pattern moves data and is refused.
fn gather_flat(imp: &mut Importer, n: &NodeCtx, x: usize) -> Result<(), ImportError> {
    let indices = imp.const_input(n, 1)?.clone();
    let total: usize = imp.shape(x).iter().product();
    let values = indices
        .to_i64()
        .ok_or_else(|| n.bad("indices are not integers"))?;
    let in_order = values.len() == total
        && values
            .iter()
            .enumerate()
            .all(|(i, &v)| v == i as i64 || v == i as i64 - total as i64);
    if !in_order || attrs::int(n.proto, "axis").unwrap_or(0) != 0 {
        return Err(n.unsupported(
            "gathering a flattened feature map out of order; only the identity view (as_strided of a contiguous tensor) is supported",
        ));
    }
    reshape_tensor(imp, n, x, indices.dims)
}

pub(crate) fn slice(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let data = imp.const_input(n, 0)?.clone();
    let read = |attr: &str, i: usize| -> Result<Option<Vec<i64>>, ImportError> {
        if let Some(v) = attrs::ints(n.proto, attr) {
            return Ok(Some(v));
        }
        imp.optional_const(n, i)?
            .map(|c| {
                c.to_i64()
                    .ok_or_else(|| n.bad(format!("{attr} are not integers")))
            })
            .transpose()
    };
    let starts = read("starts", 1)?.ok_or_else(|| n.bad("has no starts"))?;
    let ends = read("ends", 2)?.ok_or_else(|| n.bad("has no ends"))?;
    let rank = data.dims.len();
    let axes = match read("axes", 3)? {
        Some(a) => a,
        None => (0..starts.len() as i64).collect(),
    };
    let steps = read("steps", 4)?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(n.bad("starts, ends, axes and steps differ in length"));
    }
    let mut picks: Vec<Vec<usize>> = data.dims.iter().map(|&d| (0..d).collect()).collect();
    for i in 0..starts.len() {
        let axis = if axes[i] < 0 {
            axes[i] + rank as i64
        } else {
            axes[i]
        };
        let axis = usize::try_from(axis)
            .ok()
            .filter(|&a| a < rank)
            .ok_or_else(|| n.bad(format!("axis {} out of range for rank {rank}", axes[i])))?;
        picks[axis] = slice_axis(data.dims[axis], starts[i], ends[i], steps[i])
            .ok_or_else(|| n.bad("a step of 0"))?;
    }
    let out = gather_nd(&data, &picks).ok_or_else(|| n.bad("slice out of range"))?;
    imp.define(n.first_output()?, Value::Const(out));
    Ok(())
}

/// The indices one axis of size `dim` keeps under ONNX Slice's clamping rules.
fn slice_axis(dim: usize, start: i64, end: i64, step: i64) -> Option<Vec<usize>> {
    let dim = dim as i64;
    let wrap = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
    let (start, end) = (wrap(start), wrap(end));
    let mut out = Vec::new();
    if step > 0 {
        let mut i = start.clamp(0, dim);
        while i < end.clamp(0, dim) {
            out.push(i as usize);
            i = i.saturating_add(step);
        }
    } else if step < 0 {
        let mut i = start.clamp(0, dim - 1);
        let end = end.clamp(-1, dim - 1);
        while i > end {
            out.push(i as usize);
            i = i.saturating_add(step);
        }
    } else {
        return None;
    }
    Some(out)
}

/// The elements of `c` at the cartesian product of `picks` (one index list per axis).
fn gather_nd(c: &Const, picks: &[Vec<usize>]) -> Option<Const> {
    let mut strides = vec![1usize; c.dims.len()];
    for i in (0..c.dims.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * c.dims[i + 1];
    }
    let mut flat = vec![0usize];
    for (idx, &stride) in picks.iter().zip(&strides) {
        flat = flat
            .iter()
            .flat_map(|&base| idx.iter().map(move |&j| base + j * stride))
            .collect();
    }
    c.select(picks.iter().map(Vec::len).collect(), &flat)
}

pub(crate) fn cast(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let to = attrs::int(n.proto, "to").unwrap_or(0);
    let (float, int) = (matches!(to, 1 | 11), matches!(to, 6 | 7));
    match imp.required(n, 0)?.clone() {
        Value::Const(c) if float => {
            let out = Const {
                dims: c.dims.clone(),
                data: ConstData::F32(c.to_f32()),
            };
            imp.define(n.first_output()?, Value::Const(out));
        }
        Value::Const(c) if int => {
            let values = match &c.data {
                ConstData::I64(v) => v.clone(),
                ConstData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            };
            imp.define(
                n.first_output()?,
                Value::Const(Const {
                    dims: c.dims.clone(),
                    data: ConstData::I64(values),
                }),
            );
        }
        Value::Tensor(x) if to == 1 => {
            let shape = imp.shape(x).to_vec();
            imp.emit(n, Op::Identity, vec![x], shape)?;
        }
        _ => return Err(n.unsupported(format!("cast to ONNX data type {to}"))),
    }
    Ok(())
}

/// Transposes a constant matrix (a Linear weight exported as `Transpose(W) -> MatMul`).
pub(crate) fn transpose(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let c = imp.const_input(n, 0)?;
    let perm = attrs::ints(n.proto, "perm").unwrap_or_else(|| vec![1, 0]);
    let (rows, cols) = match (c.dims.as_slice(), perm.as_slice()) {
        ([r, c], [1, 0]) => (*r, *c),
        (d, p) => {
            return Err(n.unsupported(format!(
                "transposing dims {d:?} with perm {p:?}; only constant matrices are"
            )))
        }
    };
    let picks: Vec<usize> = (0..cols)
        .flat_map(|j| (0..rows).map(move |i| i * cols + j))
        .collect();
    let out = c
        .select(vec![cols, rows], &picks)
        .ok_or_else(|| n.bad("transpose out of range"))?;
    imp.define(n.first_output()?, Value::Const(out));
    Ok(())
}

pub(crate) fn concat(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let inputs: Vec<Value> = (0..n.proto.input.len())
        .map(|i| imp.required(n, i).cloned())
        .collect::<Result<_, _>>()?;
    let consts: Option<Vec<&Const>> = inputs
        .iter()
        .map(|v| {
            if let Value::Const(c) = v {
                Some(c)
            } else {
                None
            }
        })
        .collect();
    if let Some(consts) = consts {
        if consts.iter().any(|c| c.dims.len() > 1) {
            return Err(n.unsupported("concatenating constants that are not vectors"));
        }
        let out = if consts.iter().all(|c| matches!(c.data, ConstData::I64(_))) {
            Const::i64_vector(consts.iter().filter_map(|c| c.to_i64()).flatten().collect())
        } else {
            let v: Vec<f32> = consts.iter().flat_map(|c| c.to_f32()).collect();
            Const {
                dims: vec![v.len()],
                data: ConstData::F32(v),
            }
        };
        imp.define(n.first_output()?, Value::Const(out));
        return Ok(());
    }
    let ids: Vec<usize> = inputs
        .iter()
        .map(|v| {
            if let Value::Tensor(id) = v {
                Ok(*id)
            } else {
                Err(n.unsupported("concatenating a feature map with a constant"))
            }
        })
        .collect::<Result<_, _>>()?;
    let first = ids
        .first()
        .map(|&id| imp.shape(id).to_vec())
        .ok_or_else(|| n.bad("has no inputs"))?;
    let rank = first.len() as i64;
    let axis = attrs::int(n.proto, "axis").unwrap_or(1);
    if rank < 2 {
        return Err(n.unsupported(format!(
            "concatenating tensors of shape {first:?}; only feature maps with a channel axis are"
        )));
    }
    if (if axis < 0 { axis + rank } else { axis }) != 1 {
        return Err(n.unsupported(format!(
            "concatenation along axis {axis}; only the channel axis 1 is supported"
        )));
    }
    let mut shape = first.clone();
    shape[1] = 0;
    for &id in &ids {
        let s = imp.shape(id);
        let same_rest = s.len() == first.len()
            && s.iter()
                .zip(&first)
                .enumerate()
                .all(|(i, (a, b))| i == 1 || a == b);
        if !same_rest {
            return Err(n.bad(format!(
                "input shapes {s:?} and {first:?} differ outside the channel axis"
            )));
        }
        shape[1] += s.get(1).copied().unwrap_or(0);
    }
    imp.emit(n, Op::Concat, ids, shape)?;
    Ok(())
}

/// Axes from the attribute (old opsets) or the second input (opset 13+), made non-negative.
fn read_axes(imp: &Importer, n: &NodeCtx, rank: usize) -> Result<Option<Vec<usize>>, ImportError> {
    let raw = match attrs::ints(n.proto, "axes") {
        Some(a) => Some(a),
        None => imp
            .optional_const(n, 1)?
            .map(|c| c.to_i64().ok_or_else(|| n.bad("axes are not integers")))
            .transpose()?,
    };
    let Some(raw) = raw else { return Ok(None) };
    let mut axes = raw
        .into_iter()
        .map(|a| {
            let b = if a < 0 { a + rank as i64 } else { a };
            usize::try_from(b)
                .ok()
                .filter(|&b| b < rank)
                .ok_or_else(|| n.bad(format!("axis {a} out of range for rank {rank}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    axes.sort_unstable();
    Ok(Some(axes))
}

fn input_dims(imp: &Importer, n: &NodeCtx) -> Result<Vec<usize>, ImportError> {
    Ok(match imp.required(n, 0)? {
        Value::Tensor(id) => imp.shape(*id).to_vec(),
        Value::Flat(id) => vec![imp.shape(*id).iter().product()],
        Value::Const(c) => c.dims.clone(),
    })
}

pub(crate) fn unsqueeze(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let dims = input_dims(imp, n)?;
    let added = match attrs::ints(n.proto, "axes") {
        Some(a) => a.len(),
        None => imp.optional_const(n, 1)?.map(Const::len).unwrap_or(0),
    };
    let out_rank = dims.len() + added;
    let axes = read_axes(imp, n, out_rank)?.ok_or_else(|| n.bad("no axes"))?;
    let mut rest = dims.into_iter();
    let out: Vec<usize> = (0..out_rank)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                rest.next().unwrap_or(1)
            }
        })
        .collect();
    reshape_to(imp, n, out)
}

pub(crate) fn squeeze(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let dims = input_dims(imp, n)?;
    let axes = read_axes(imp, n, dims.len())?;
    let drop = |i: usize, d: usize| match &axes {
        Some(a) => a.contains(&i),
        None => d == 1,
    };
    if let Some(i) = dims
        .iter()
        .enumerate()
        .position(|(i, &d)| drop(i, d) && d != 1)
    {
        return Err(n.bad(format!("squeezes axis {i} of {dims:?}, which is not 1")));
    }
    let out = dims
        .iter()
        .enumerate()
        .filter(|&(i, &d)| !drop(i, d))
        .map(|(_, &d)| d)
        .collect();
    reshape_to(imp, n, out)
}

pub(crate) fn flatten(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let dims = input_dims(imp, n)?;
    let rank = dims.len() as i64;
    let axis = attrs::int(n.proto, "axis").unwrap_or(1);
    let axis = (if axis < 0 { axis + rank } else { axis }).clamp(0, rank) as usize;
    let (outer, inner) = dims.split_at(axis);
    reshape_to(imp, n, vec![outer.iter().product(), inner.iter().product()])
}

pub(crate) fn reshape(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let dims = input_dims(imp, n)?;
    let target = imp
        .const_input(n, 1)?
        .to_i64()
        .ok_or_else(|| n.bad("target shape is not integers"))?;
    let allow_zero = attrs::int(n.proto, "allowzero").unwrap_or(0) != 0;
    let total: usize = dims.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allow_zero => out.push(
                dims.get(i)
                    .copied()
                    .ok_or_else(|| n.bad("0 copies a dimension the input lacks"))?,
            ),
            t if t >= 0 => out.push(t as usize),
            _ => return Err(n.bad(format!("target shape {target:?} is not valid"))),
        }
    }
    let known = limits::product(out.iter().copied())
        .and_then(|k| usize::try_from(k).ok())
        .ok_or_else(|| n.bad(format!("target shape {target:?} overflows")))?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(n.bad(format!("cannot reshape {dims:?} to {target:?}")));
        }
        out[i] = total / known;
    }
    reshape_to(imp, n, out)
}

/// Non-unit dimensions, in order: two shapes that agree here have the same memory layout
/// in NCHW and NHWC alike.
fn non_unit(dims: &[usize]) -> Vec<usize> {
    dims.iter().copied().filter(|&d| d != 1).collect()
}

/// Reshapes the node's input to `out`: folded on constants; on feature maps only a
/// layout-free reshape or a flatten to `[1, n]` is accepted.
fn reshape_to(imp: &mut Importer, n: &NodeCtx, out: Vec<usize>) -> Result<(), ImportError> {
    let out_len = limits::product(out.iter().copied());
    match imp.required(n, 0)?.clone() {
        Value::Const(c) => {
            if out_len != Some(c.len() as u64) {
                return Err(n.bad(format!("cannot reshape {} values to {out:?}", c.len())));
            }
            imp.define(
                n.first_output()?,
                Value::Const(Const {
                    dims: out,
                    data: c.data,
                }),
            );
        }
        Value::Tensor(x) | Value::Flat(x) => {
            let dims = imp.shape(x).to_vec();
            if out_len != limits::product(dims.iter().copied()) {
                return Err(n.bad(format!("cannot reshape {dims:?} to {out:?}")));
            }
            if out.len() == 1 {
                // A flat view (`x.reshape(-1)` at batch 1): legal only as the input of
                // another reshape or of an identity gather, which see the map again.
                imp.define(n.first_output()?, Value::Flat(x));
                return Ok(());
            }
            reshape_tensor(imp, n, x, out)?;
        }
    }
    Ok(())
}

/// Reshapes feature map `x` to `out` (batch included): only a layout-free reshape or a
/// flatten to `[1, n]` is accepted.
fn reshape_tensor(
    imp: &mut Importer,
    n: &NodeCtx,
    x: usize,
    out: Vec<usize>,
) -> Result<(), ImportError> {
    let dims = imp.shape(x).to_vec();
    let total: usize = dims.iter().product();
    if out.iter().product::<usize>() != total {
        return Err(n.bad(format!("cannot reshape {dims:?} to {out:?}")));
    }
    if out.first() != Some(&1) {
        return Err(ImportError::BadTensor {
            name: n.first_output()?.to_string(),
            why: format!("reshape to {out:?} moves the batch dimension; only batch 1 is supported"),
        });
    }
    let flatten = out.len() == 2;
    if !flatten && non_unit(&dims) != non_unit(&out) {
        return Err(n.unsupported(format!(
            "reshape of {dims:?} to {out:?} reorders the feature map; only flattening to [1, n] and adding/removing unit axes are supported"
        )));
    }
    imp.emit(n, Op::Flatten, vec![x], out)?;
    Ok(())
}

/// Identity and Dropout (inference): an [`Op::Identity`] the passes remove; constants alias.
pub(crate) fn identity(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    if n.output(1)
        .is_some_and(|mask| !imp.consumers(mask).is_empty())
    {
        return Err(
            n.unsupported("the dropout mask output is used; export the model in eval() mode")
        );
    }
    match imp.required(n, 0)?.clone() {
        Value::Const(c) => imp.define(n.first_output()?, Value::Const(c)),
        Value::Flat(x) => imp.define(n.first_output()?, Value::Flat(x)),
        Value::Tensor(x) => {
            let shape = imp.shape(x).to_vec();
            imp.emit(n, Op::Identity, vec![x], shape)?;
        }
    }
    Ok(())
}

/// `expand_as` before a broadcasting Mul/Add adds nothing: the output aliases the input.
pub(crate) fn expand(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let x = imp.tensor_input(n, 0)?;
    let out = n.first_output()?;
    let consumers = imp.consumers(out);
    if consumers.is_empty()
        || !consumers
            .iter()
            .all(|c| c.op_type == "Mul" || c.op_type == "Add")
    {
        return Err(n.unsupported(
            "Expand is supported only when every consumer is a broadcasting Mul or Add",
        ));
    }
    imp.define(out, Value::Tensor(x));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::non_unit;

    #[test]
    fn unit_axes_do_not_change_layout() {
        assert_eq!(non_unit(&[1, 8, 1, 1]), non_unit(&[1, 8]));
        assert_ne!(non_unit(&[1, 8, 4, 4]), non_unit(&[1, 8, 16]));
    }
}
