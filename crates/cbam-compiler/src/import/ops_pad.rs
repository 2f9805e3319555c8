//! `Pad` on feature maps (what `nn.ZeroPad2d` and `F.pad` export to) and `ConstantOfShape`,
//! which the legacy exporter uses to build the pad vector at run time from constants.

use super::attrs;
use super::builder::{Importer, NodeCtx};
use super::constant::{decode_tensor, Const, ConstData};
use super::ImportError;
use crate::ir::Op;

/// The largest constant `ConstantOfShape` is folded into: pad and shape vectors are a few
/// values; anything bigger is data the int8 core has no use for, and a hostile shape must
/// not allocate without bound.
const MAX_FOLDED_VALUES: usize = 1 << 16;

pub(crate) fn constant_of_shape(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let dims = imp
        .const_input(n, 0)?
        .to_i64()
        .ok_or_else(|| n.bad("the shape is not integers"))?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| n.bad(format!("negative dimension {d}"))))
        .collect::<Result<Vec<usize>, _>>()?;
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&c| c <= MAX_FOLDED_VALUES)
        .ok_or_else(|| {
            n.unsupported(format!(
                "a constant of shape {dims:?}; only up to {MAX_FOLDED_VALUES} values are folded"
            ))
        })?;
    let fill = match attrs::tensor(n.proto, "value") {
        None => Const {
            dims: vec![],
            data: ConstData::F32(vec![0.0]),
        },
        Some(t) => decode_tensor(t, imp.model_dir).map_err(|why| n.bad(format!("value: {why}")))?,
    };
    if fill.len() != 1 {
        return Err(n.bad(format!("value holds {} elements, not one", fill.len())));
    }
    let data = match fill.data {
        ConstData::F32(v) => ConstData::F32(vec![v[0]; count]),
        ConstData::I64(v) => ConstData::I64(vec![v[0]; count]),
    };
    imp.define(
        n.first_output()?,
        super::builder::Value::Const(Const { dims, data }),
    );
    Ok(())
}

/// Zero padding of the two spatial axes only, as [`Op::Pad`].
pub(crate) fn pad(imp: &mut Importer, n: &NodeCtx) -> Result<(), ImportError> {
    let x = imp.tensor_input(n, 0)?;
    let shape = imp.shape(x).to_vec();
    let [b, c, h, w] = shape[..] else {
        return Err(n.unsupported(format!(
            "padding a tensor of shape {shape:?}; only NCHW feature maps are padded"
        )));
    };
    let mode = attrs::string(n.proto, "mode").unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(n.unsupported(format!(
            "{mode} padding; only constant zero padding (nn.ZeroPad2d, F.pad) is supported"
        )));
    }
    let (pads, value, axes) = if imp.opset < 11 {
        let pads = attrs::ints(n.proto, "pads").ok_or_else(|| n.bad("has no pads"))?;
        (pads, attrs::float(n.proto, "value").unwrap_or(0.0), None)
    } else {
        let pads = imp
            .const_input(n, 1)?
            .to_i64()
            .ok_or_else(|| n.bad("pads are not integers"))?;
        let value = match imp.optional_const(n, 2)? {
            None => 0.0,
            Some(v) => *v
                .to_f32()
                .first()
                .ok_or_else(|| n.bad("empty constant_value"))?,
        };
        let axes = imp
            .optional_const(n, 3)?
            .map(|a| a.to_i64().ok_or_else(|| n.bad("axes are not integers")))
            .transpose()?;
        (pads, value, axes)
    };
    if value != 0.0 {
        return Err(n.unsupported(format!(
            "padding with {value}; only zero padding is supported"
        )));
    }
    let per_axis = spatial_pads(&pads, axes.as_deref()).map_err(|why| n.bad(why))?;
    let [nb, cb, top, left, ne, ce, bottom, right] = per_axis;
    if [nb, cb, ne, ce] != [0; 4] {
        return Err(n.unsupported(
            "padding the batch or channel axis; only the two spatial axes are padded",
        ));
    }
    let to_usize = |p: i64| {
        usize::try_from(p).map_err(|_| {
            n.unsupported(format!(
                "negative pads {pads:?} (cropping); only padding is supported"
            ))
        })
    };
    let [top, left, bottom, right] = [
        to_usize(top)?,
        to_usize(left)?,
        to_usize(bottom)?,
        to_usize(right)?,
    ];
    let grow = |size: usize, a: usize, b: usize| {
        size.checked_add(a)
            .and_then(|s| s.checked_add(b))
            .ok_or_else(|| n.bad(format!("pads {pads:?} overflow")))
    };
    let out = vec![b, c, grow(h, top, bottom)?, grow(w, left, right)?];
    let op = if [top, left, bottom, right] == [0; 4] {
        Op::Identity
    } else {
        Op::Pad([top, left, bottom, right])
    };
    imp.emit(n, op, vec![x], out)?;
    Ok(())
}

/// ONNX pads (`[begin per axis..., end per axis...]`, over `axes` or all four axes) as
/// `[n, c, h, w begins, n, c, h, w ends]`.
fn spatial_pads(pads: &[i64], axes: Option<&[i64]>) -> Result<[i64; 8], String> {
    let axes: Vec<usize> = match axes {
        None => (0..4).collect(),
        Some(a) => a
            .iter()
            .map(|&x| {
                let y = if x < 0 { x + 4 } else { x };
                usize::try_from(y)
                    .ok()
                    .filter(|&y| y < 4)
                    .ok_or_else(|| format!("axis {x} out of range for rank 4"))
            })
            .collect::<Result<_, _>>()?,
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!(
            "{} pads for {} axes; expected two per axis",
            pads.len(),
            axes.len()
        ));
    }
    let mut out = [0i64; 8];
    for (i, &axis) in axes.iter().enumerate() {
        out[axis] = pads[i];
        out[4 + axis] = pads[axes.len() + i];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::spatial_pads;

    #[test]
    fn pads_map_to_their_axes() {
        assert_eq!(
            spatial_pads(&[0, 0, 1, 2, 0, 0, 3, 4], None),
            Ok([0, 0, 1, 2, 0, 0, 3, 4])
        );
        assert_eq!(
            spatial_pads(&[1, 2, 3, 4], Some(&[2, -1])),
            Ok([0, 0, 1, 2, 0, 0, 3, 4])
        );
        assert!(spatial_pads(&[1, 2, 3], None).is_err());
        assert!(spatial_pads(&[1, 2], Some(&[7])).is_err());
    }
}
