//! Compile-time constants: initializers, `Constant` nodes, and the values folded from
//! shape arithmetic (`Shape -> Gather -> Concat`), decoded from ONNX `TensorProto`s.

use std::path::Path;

use tract_onnx::pb::{tensor_proto::DataType, TensorProto};

use super::guard;

/// A constant tensor. Weights are `F32`; shapes, axes and indices are `I64`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Const {
    pub dims: Vec<usize>,
    pub data: ConstData,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Const {
    pub fn i64_vector(values: Vec<i64>) -> Self {
        Const {
            dims: vec![values.len()],
            data: ConstData::I64(values),
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            ConstData::F32(v) => v.len(),
            ConstData::I64(v) => v.len(),
        }
    }

    /// The values as floats (integer constants convert exactly for the small values used here).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            ConstData::F32(v) => v.clone(),
            ConstData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as integers; `None` for float data that is not integral.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match &self.data {
            ConstData::I64(v) => Some(v.clone()),
            ConstData::F32(v) => v
                .iter()
                .map(|&x| (x.fract() == 0.0 && x.is_finite()).then_some(x as i64))
                .collect(),
        }
    }

    /// Keeps the data type, takes the elements at `indices` (flat) under new dims.
    pub fn select(&self, dims: Vec<usize>, indices: &[usize]) -> Option<Self> {
        let data = match &self.data {
            ConstData::F32(v) => ConstData::F32(
                indices
                    .iter()
                    .map(|&i| v.get(i).copied())
                    .collect::<Option<_>>()?,
            ),
            ConstData::I64(v) => ConstData::I64(
                indices
                    .iter()
                    .map(|&i| v.get(i).copied())
                    .collect::<Option<_>>()?,
            ),
        };
        Some(Const { dims, data })
    }
}

/// Decodes `t` after [`guard::check_tensor`]. `model_dir` resolves external data files (the
/// exporters write them for models over 2 GB, or when asked).
pub(crate) fn decode_tensor(t: &TensorProto, model_dir: Option<&Path>) -> Result<Const, String> {
    let count = guard::check_tensor(t, model_dir)?;
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let external;
    let raw: &[u8] = if !t.external_data.is_empty() {
        external = guard::read_external(t, model_dir)?;
        &external
    } else {
        &t.raw_data
    };
    let data_type = DataType::try_from(t.data_type)
        .map_err(|_| format!("unknown data type code {}", t.data_type))?;
    let data = match data_type {
        DataType::Float if !raw.is_empty() => ConstData::F32(le_chunks(raw, f32::from_le_bytes)?),
        DataType::Float => ConstData::F32(t.float_data.clone()),
        DataType::Double if !raw.is_empty() => ConstData::F32(
            le_chunks(raw, f64::from_le_bytes)?
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        ),
        DataType::Double => ConstData::F32(t.double_data.iter().map(|&x| x as f32).collect()),
        DataType::Int64 if !raw.is_empty() => ConstData::I64(le_chunks(raw, i64::from_le_bytes)?),
        DataType::Int64 => ConstData::I64(t.int64_data.clone()),
        DataType::Int32 if !raw.is_empty() => ConstData::I64(
            le_chunks(raw, i32::from_le_bytes)?
                .into_iter()
                .map(i64::from)
                .collect(),
        ),
        DataType::Int32 => ConstData::I64(t.int32_data.iter().map(|&x| i64::from(x)).collect()),
        other => {
            return Err(format!(
                "data type {other:?} is not supported (float, double, int32, int64 are)"
            ))
        }
    };
    let c = Const { dims, data };
    if c.len() != count {
        return Err(format!(
            "holds {} values but its dims {:?} need {count}",
            c.len(),
            c.dims
        ));
    }
    Ok(c)
}

fn le_chunks<const N: usize, T>(raw: &[u8], from: fn([u8; N]) -> T) -> Result<Vec<T>, String> {
    if !raw.len().is_multiple_of(N) {
        return Err(format!(
            "raw data of {} bytes is not a whole number of {N}-byte values",
            raw.len()
        ));
    }
    Ok(raw
        .chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            from(b)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_and_typed_fields() {
        let raw = TensorProto {
            dims: vec![2],
            data_type: DataType::Float as i32,
            raw_data: [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat(),
            ..Default::default()
        };
        assert_eq!(
            decode_tensor(&raw, None).map(|c| c.to_f32()),
            Ok(vec![1.5, -2.0])
        );
        let ints = TensorProto {
            dims: vec![3],
            data_type: DataType::Int64 as i32,
            int64_data: vec![1, -1, 7],
            ..Default::default()
        };
        assert_eq!(
            decode_tensor(&ints, None).map(|c| c.to_i64()),
            Ok(Some(vec![1, -1, 7]))
        );
    }

    #[test]
    fn rejects_wrong_count_and_odd_bytes() {
        let short = TensorProto {
            dims: vec![3],
            data_type: DataType::Float as i32,
            float_data: vec![1.0],
            ..Default::default()
        };
        assert!(decode_tensor(&short, None).is_err());
        let odd = TensorProto {
            dims: vec![1],
            data_type: DataType::Float as i32,
            raw_data: vec![0, 1, 2],
            ..Default::default()
        };
        assert!(decode_tensor(&odd, None).is_err());
    }
}
