//! Structural checks of a whole ONNX model before anything reads its sizes: the importer
//! runs them first, and so does every tract run ([`crate::float_run`]), because tract trusts
//! what it is given: a weight declared `[2^62, 1, 2, 2]` with no data, pads near `2^63` or
//! external data at `/dev/zero` make it panic, loop or allocate without end.
//!
//! Checked here: node and tensor counts against [`crate::limits`]; every constant tensor
//! (initializers, `Constant` values, nested graphs) holds exactly the values its dims
//! declare, and none of them NaN; window attributes (`kernel_shape`, `strides`,
//! `dilations`, `pads`, `group`) are in range; external data stays inside the model's
//! directory in a regular file.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use tract_onnx::pb::{
    tensor_proto::DataType, tensor_shape_proto::dimension::Value as Dim, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto,
};

use super::ImportError;
use crate::fsio;
use crate::limits::{self, MAX_NODES, MAX_WINDOW, MAX_WINDOW_AREA};

/// Checks `proto` as described in the module documentation. `model_dir` is where external
/// data may live.
pub fn check_model(proto: &ModelProto, model_dir: Option<&Path>) -> Result<(), ImportError> {
    let graph = proto.graph.as_ref().ok_or_else(|| ImportError::BadGraph {
        why: "is missing".into(),
    })?;
    check_graph(graph, model_dir)
}

fn check_graph(graph: &GraphProto, model_dir: Option<&Path>) -> Result<(), ImportError> {
    if graph.node.len() > MAX_NODES {
        return Err(ImportError::BadGraph {
            why: format!(
                "has {} nodes, over the limit of {MAX_NODES}",
                graph.node.len()
            ),
        });
    }
    for t in &graph.initializer {
        check_tensor(t, model_dir).map_err(|why| ImportError::BadTensor {
            name: t.name.clone(),
            why,
        })?;
    }
    for input in &graph.input {
        check_value_info(input)?;
    }
    for (i, node) in graph.node.iter().enumerate() {
        check_node(node, model_dir).map_err(|why| ImportError::BadNode {
            node: node_name(node, i),
            why,
        })?;
    }
    Ok(())
}

/// The name errors give node `i`: its own, or `<op>_<i>` when it has none.
pub(crate) fn node_name(node: &NodeProto, i: usize) -> String {
    if node.name.is_empty() {
        format!("{}_{i}", node.op_type)
    } else {
        node.name.clone()
    }
}

fn check_value_info(input: &ValueInfoProto) -> Result<(), ImportError> {
    let bad = |why: String| ImportError::BadInput {
        input: input.name.clone(),
        why,
    };
    let Some(type_proto::Value::TensorType(t)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Ok(());
    };
    let dims = t.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or(&[]);
    let mut fixed = Vec::with_capacity(dims.len());
    for d in dims {
        match d.value {
            Some(Dim::DimValue(v)) if v < 0 => {
                return Err(bad(format!("has a negative dimension {v}")))
            }
            Some(Dim::DimValue(v)) => fixed.push(v as u64),
            _ => {}
        }
    }
    limits::check(
        || format!("input {:?}", input.name),
        limits::product(fixed),
        limits::MAX_TENSOR_VALUES,
        "values",
        None,
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok(())
}

/// Ops whose `kernel_shape`, `strides`, `dilations` and `pads` describe a sliding window.
const WINDOWED: [&str; 8] = [
    "Conv",
    "ConvTranspose",
    "ConvInteger",
    "QLinearConv",
    "MaxPool",
    "AveragePool",
    "LpPool",
    "MaxUnpool",
];

fn check_node(node: &NodeProto, model_dir: Option<&Path>) -> Result<(), String> {
    let windowed = WINDOWED.contains(&node.op_type.as_str());
    for attr in &node.attribute {
        if windowed {
            check_window(attr)?;
        } else if node.op_type == "Pad" && attr.name == "pads" {
            // Pad (before opset 11) takes negative pads too: they crop.
            in_range(attr, -(MAX_WINDOW as i64))?;
        }
        for t in attr.t.iter().chain(&attr.tensors) {
            check_tensor(t, model_dir).map_err(|why| format!("attribute {}: {why}", attr.name))?;
        }
        for g in attr.g.iter().chain(&attr.graphs) {
            check_graph(g, model_dir).map_err(|e| format!("attribute {}: {e}", attr.name))?;
        }
    }
    Ok(())
}

fn check_window(attr: &AttributeProto) -> Result<(), String> {
    match attr.name.as_str() {
        "kernel_shape" => {
            in_range(attr, 1)?;
            limits::check(
                || format!("kernel_shape {:?}", attr.ints),
                limits::product(attr.ints.iter().map(|&k| k as u64)),
                MAX_WINDOW_AREA,
                "positions",
                None,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        }
        "strides" | "dilations" => in_range(attr, 1),
        "pads" | "output_padding" => in_range(attr, 0),
        "group" if attr.i < 1 || attr.i as u64 > limits::MAX_TENSOR_VALUES => {
            Err(format!("group {} is not a positive channel count", attr.i))
        }
        _ => Ok(()),
    }
}

fn in_range(attr: &AttributeProto, lo: i64) -> Result<(), String> {
    match attr.ints.iter().find(|&&v| v < lo || v > MAX_WINDOW as i64) {
        Some(v) => Err(format!(
            "{} {:?}: {v} is outside {lo}..={MAX_WINDOW}",
            attr.name, attr.ints
        )),
        None => Ok(()),
    }
}

/// Bytes per element of ONNX data types with a fixed width.
fn element_size(data_type: i32) -> Option<u64> {
    use DataType as T;
    Some(match DataType::try_from(data_type).ok()? {
        T::Float | T::Int32 | T::Uint32 => 4,
        T::Double | T::Int64 | T::Uint64 | T::Complex64 => 8,
        T::Complex128 => 16,
        T::Int8 | T::Uint8 | T::Bool => 1,
        T::Int16 | T::Uint16 | T::Float16 | T::Bfloat16 => 2,
        _ => return None,
    })
}

/// A constant holds exactly the values its dims declare, within [`limits::MAX_TENSOR_VALUES`].
pub(crate) fn check_tensor(t: &TensorProto, model_dir: Option<&Path>) -> Result<usize, String> {
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d} in {:?}", t.dims)))
        .collect::<Result<Vec<_>, _>>()?;
    let count =
        limits::tensor_values(|| format!("dims {dims:?}"), &dims).map_err(|e| e.to_string())?;
    let size = element_size(t.data_type);
    let expected_bytes = size.map(|s| s * count as u64);
    if !t.external_data.is_empty() {
        let (_, range) = external_range(t, model_dir)?;
        let len = range.end - range.start;
        if expected_bytes.is_some_and(|b| b != len) {
            return Err(format!(
                "external data holds {len} bytes but dims {dims:?} need {}",
                expected_bytes.unwrap_or(0)
            ));
        }
        return Ok(count);
    }
    if !t.raw_data.is_empty() {
        let len = t.raw_data.len() as u64;
        if expected_bytes.is_some_and(|b| b != len) {
            return Err(format!(
                "raw data holds {len} bytes but dims {dims:?} need {}",
                expected_bytes.unwrap_or(0)
            ));
        }
        no_nan(t)?;
        return Ok(count);
    }
    let stored = t.float_data.len()
        + t.int32_data.len()
        + t.int64_data.len()
        + t.double_data.len()
        + t.uint64_data.len()
        + t.string_data.len();
    let per_value = match DataType::try_from(t.data_type) {
        Ok(DataType::Complex64 | DataType::Complex128) => 2,
        _ => 1,
    };
    if stored != count * per_value {
        return Err(format!(
            "holds {stored} values but its dims {dims:?} need {count}"
        ));
    }
    no_nan(t)?;
    Ok(count)
}

/// NaN is no weight: it turns every output it reaches into garbage, or, behind a ReLU that
/// maps it to 0, into confident wrong answers. (Infinity may be meant: a Clip's bound.)
fn no_nan(t: &TensorProto) -> Result<(), String> {
    fn nan_at<const N: usize>(raw: &[u8], is_nan: fn([u8; N]) -> bool) -> Option<usize> {
        raw.chunks_exact(N)
            .position(|b| <[u8; N]>::try_from(b).is_ok_and(is_nan))
    }
    let position = match DataType::try_from(t.data_type) {
        Ok(DataType::Float) if !t.raw_data.is_empty() => {
            nan_at(&t.raw_data, |b| f32::from_le_bytes(b).is_nan())
        }
        Ok(DataType::Float) => t.float_data.iter().position(|v| v.is_nan()),
        Ok(DataType::Double) if !t.raw_data.is_empty() => {
            nan_at(&t.raw_data, |b| f64::from_le_bytes(b).is_nan())
        }
        Ok(DataType::Double) => t.double_data.iter().position(|v| v.is_nan()),
        _ => None,
    };
    match position {
        Some(i) => Err(format!(
            "value {i} is NaN; the model's weights are damaged: re-export or retrain it"
        )),
        None => Ok(()),
    }
}

/// The file and byte range of `t`'s external data, refusing a location that leaves the
/// model's directory (`..`, an absolute path, a symlink out) or is not a regular file.
pub(crate) fn external_range(
    t: &TensorProto,
    model_dir: Option<&Path>,
) -> Result<(PathBuf, std::ops::Range<u64>), String> {
    let entry = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let location = entry("location").ok_or("external data without a location")?;
    let dir =
        model_dir.ok_or("external data needs the model's directory; load the model from a path")?;
    let path = inside(dir, location)?;
    let (_, file_len) =
        fsio::open_regular(&path).map_err(|e| format!("external data {location:?}: {e}"))?;
    let parse = |key: &str| -> Result<Option<u64>, String> {
        entry(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|e| format!("external data {key} {v:?}: {e}"))
            })
            .transpose()
    };
    let offset = parse("offset")?.unwrap_or(0);
    let end = match parse("length")? {
        Some(len) => offset
            .checked_add(len)
            .ok_or("external data offset + length overflows")?,
        None => file_len,
    };
    if offset > end || end > file_len {
        return Err(format!(
            "external data {offset}..{end} is past the end of {location:?} ({file_len} bytes)"
        ));
    }
    Ok((path, offset..end))
}

/// `dir/location` when `location` is a relative path that stays inside `dir`, symlinks
/// resolved (ONNX external data must sit beside the model).
fn inside(dir: &Path, location: &str) -> Result<PathBuf, String> {
    let refuse = |why: &str| {
        Err(format!(
            "external data location {location:?} {why}; external data must sit in the model's directory"
        ))
    };
    let rel = Path::new(location);
    if location.is_empty()
        || !rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return refuse("is absolute or leaves the directory");
    }
    let base = dir_or_cwd(dir)
        .canonicalize()
        .map_err(|e| format!("the model directory {}: {e}", dir.display()))?;
    let real = base
        .join(rel)
        .canonicalize()
        .map_err(|e| format!("external data {location:?}: {e}"))?;
    if !real.starts_with(&base) {
        return refuse(&format!("resolves to {}, outside", real.display()));
    }
    Ok(real)
}

fn dir_or_cwd(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

/// Reads every initializer's external data into the model, after [`check_model`], so the
/// model can be edited and written out whole.
pub fn inline_external_data(
    proto: &mut ModelProto,
    model_dir: Option<&Path>,
) -> Result<(), ImportError> {
    check_model(proto, model_dir)?;
    for t in proto
        .graph
        .iter_mut()
        .flat_map(|g| g.initializer.iter_mut())
        .filter(|t| !t.external_data.is_empty())
    {
        t.raw_data = read_external(t, model_dir).map_err(|why| ImportError::BadTensor {
            name: t.name.clone(),
            why,
        })?;
        t.external_data.clear();
        t.data_location = None;
    }
    Ok(())
}

/// The bytes of `t`'s external data, after the same checks as [`check_tensor`].
pub(crate) fn read_external(t: &TensorProto, model_dir: Option<&Path>) -> Result<Vec<u8>, String> {
    let (path, range) = external_range(t, model_dir)?;
    let io = |e: std::io::Error| format!("reading external data {}: {e}", path.display());
    let (mut file, _) = fsio::open_regular(&path).map_err(io)?;
    file.seek(SeekFrom::Start(range.start)).map_err(io)?;
    let len = range.end - range.start;
    let cap = limits::MAX_TENSOR_VALUES * 16;
    if len > cap {
        return Err(format!(
            "external data of {len} bytes is over the limit of {cap} bytes for one tensor"
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 != len {
        return Err(format!(
            "external data {}: the file ended early",
            path.display()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::StringStringEntryProto;

    fn external(location: &str, length: Option<u64>) -> TensorProto {
        let mut entries = vec![StringStringEntryProto {
            key: "location".into(),
            value: location.into(),
        }];
        if let Some(len) = length {
            entries.push(StringStringEntryProto {
                key: "length".into(),
                value: len.to_string(),
            });
        }
        TensorProto {
            name: "w".into(),
            dims: vec![2],
            data_type: DataType::Float as i32,
            external_data: entries,
            data_location: Some(1),
            ..Default::default()
        }
    }

    #[test]
    fn external_data_outside_the_model_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("model");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(root.path().join("secret.bin"), [0u8; 8]).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.bin")).unwrap();
        std::os::unix::fs::symlink("../secret.bin", dir.join("link.bin")).unwrap();
        for location in [
            "/etc/passwd",
            "../secret.bin",
            "sub/../../secret.bin",
            "link.bin",
        ] {
            let err = check_tensor(&external(location, Some(8)), Some(&dir)).unwrap_err();
            assert!(err.contains("model's directory"), "{location}: {err}");
        }
        let err = check_tensor(&external("zero.bin", Some(8)), Some(&dir)).unwrap_err();
        assert!(
            err.contains("not a regular file") || err.contains("outside"),
            "{err}"
        );
    }

    #[test]
    fn external_data_beside_the_model_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(dir.path().join("w.bin"), &bytes).unwrap();
        let t = external("w.bin", Some(8));
        assert_eq!(check_tensor(&t, Some(dir.path())), Ok(2));
        assert_eq!(read_external(&t, Some(dir.path())), Ok(bytes));
        let long = external("w.bin", Some(16));
        assert!(check_tensor(&long, Some(dir.path())).is_err());
    }

    #[test]
    fn dims_whose_product_overflows_or_lack_data_are_refused() {
        let huge = TensorProto {
            dims: vec![1 << 62, 1, 2, 2],
            data_type: DataType::Float as i32,
            ..Default::default()
        };
        let err = check_tensor(&huge, None).unwrap_err();
        assert!(err.contains("2^64"), "{err}");
        let empty = TensorProto {
            dims: vec![4],
            data_type: DataType::Float as i32,
            ..Default::default()
        };
        assert!(check_tensor(&empty, None).is_err());
    }

    #[test]
    fn a_nan_in_any_float_constant_is_refused_and_infinity_is_not() {
        let float = |raw: Vec<u8>| TensorProto {
            dims: vec![2],
            data_type: DataType::Float as i32,
            raw_data: raw,
            ..Default::default()
        };
        let bytes = |v: [f32; 2]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>();
        let err = check_tensor(&float(bytes([1.0, f32::NAN])), None).unwrap_err();
        assert!(err.contains("value 1 is NaN"), "{err}");
        assert_eq!(
            check_tensor(&float(bytes([0.0, f32::INFINITY])), None),
            Ok(2)
        );
        let double = TensorProto {
            dims: vec![1],
            data_type: DataType::Double as i32,
            double_data: vec![f64::NAN],
            ..Default::default()
        };
        assert!(check_tensor(&double, None).is_err());
    }

    #[test]
    fn window_attributes_out_of_range_are_refused() {
        let attr = |name: &str, ints: Vec<i64>| AttributeProto {
            name: name.into(),
            ints,
            ..Default::default()
        };
        assert!(check_window(&attr("pads", vec![0, 0, 1, 1])).is_ok());
        assert!(check_window(&attr("pads", vec![i64::MAX, 0, 0, 0])).is_err());
        assert!(check_window(&attr("pads", vec![-1, 0, 0, 0])).is_err());
        assert!(check_window(&attr("strides", vec![0, 1])).is_err());
        assert!(check_window(&attr("kernel_shape", vec![1 << 40, 1])).is_err());
        assert!(check_window(&attr("kernel_shape", vec![1024, 1024])).is_ok());
        assert!(check_window(&attr("kernel_shape", vec![65_536, 65_536])).is_err());
    }
}
