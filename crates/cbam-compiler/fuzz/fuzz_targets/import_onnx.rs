//! Structure-aware fuzzing of the ONNX importer: each input picks one of the example models
//! (`models/*.onnx`, `models/variants/*.onnx`, decoded once) and applies a list of
//! mutations to its protobuf fields (initializer dims, data and types, node attributes,
//! wiring and op types, the input shape, the metadata), then imports it, runs the passes
//! and inspects the result. Any panic, hang or runaway allocation is a finding; an error is
//! the expected answer to a broken model.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use cbam_compiler::{import, inspect, passes};
use libfuzzer_sys::fuzz_target;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
use tract_onnx::pb::{type_proto, ModelProto, StringStringEntryProto};

static SEEDS: LazyLock<Vec<ModelProto>> = LazyLock::new(|| {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../models");
    let mut paths: Vec<PathBuf> = [models.clone(), models.join("variants")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    paths.sort();
    let seeds: Vec<ModelProto> = paths
        .iter()
        .filter_map(|p| {
            let bytes = std::fs::read(p).ok()?;
            import::decode_model(&bytes, p).ok()
        })
        .collect();
    assert!(
        !seeds.is_empty(),
        "no seed models under {}",
        models.display()
    );
    seeds
});

/// Ops swapped in for a node's own: those the importer translates, and a few it does not.
const OPS: [&str; 16] = [
    "Conv",
    "Gemm",
    "MatMul",
    "Relu",
    "Sigmoid",
    "Add",
    "Mul",
    "Concat",
    "Reshape",
    "Flatten",
    "GlobalAveragePool",
    "MaxPool",
    "ReduceMean",
    "BatchNormalization",
    "Identity",
    "Erf",
];

const META_KEYS: [&str; 3] = ["cbam.mean", "cbam.std", "cbam.labels"];

#[derive(Arbitrary, Debug)]
enum Mutation {
    InitDim {
        init: u16,
        dim: u8,
        value: i64,
    },
    InitDims {
        init: u16,
        dims: Vec<i64>,
    },
    InitTruncate {
        init: u16,
        keep: u32,
    },
    InitFloat {
        init: u16,
        index: u32,
        value: f32,
    },
    InitDataType {
        init: u16,
        data_type: i32,
    },
    InitExternal {
        init: u16,
        location: String,
        offset: u32,
        length: u32,
    },
    AttrInts {
        node: u16,
        attr: u8,
        values: Vec<i64>,
    },
    AttrInt {
        node: u16,
        attr: u8,
        value: i64,
    },
    AttrFloat {
        node: u16,
        attr: u8,
        value: f32,
    },
    NodeInput {
        node: u16,
        slot: u8,
        from_node: u16,
        from_init: bool,
    },
    NodeOutput {
        node: u16,
        to_node: u16,
    },
    NodeOpType {
        node: u16,
        op: u8,
    },
    RemoveNode {
        node: u16,
    },
    DuplicateNode {
        node: u16,
    },
    SwapNodes {
        a: u16,
        b: u16,
    },
    InputDim {
        dim: u8,
        value: i64,
    },
    Metadata {
        key: u8,
        value: String,
    },
}

#[derive(Arbitrary, Debug)]
struct Case {
    seed: u8,
    mutations: Vec<Mutation>,
}

fn pick(len: usize, i: impl Into<usize>) -> Option<usize> {
    (len > 0).then(|| i.into() % len)
}

fn apply(model: &mut ModelProto, m: &Mutation) {
    let Some(g) = model.graph.as_mut() else {
        return;
    };
    let (n_nodes, n_inits) = (g.node.len(), g.initializer.len());
    match m {
        Mutation::InitDim { init, dim, value } => {
            if let Some(t) = pick(n_inits, *init).map(|i| &mut g.initializer[i]) {
                if let Some(d) = pick(t.dims.len(), *dim) {
                    t.dims[d] = *value;
                }
            }
        }
        Mutation::InitDims { init, dims } => {
            if let Some(i) = pick(n_inits, *init) {
                g.initializer[i].dims = dims.iter().take(8).copied().collect();
            }
        }
        Mutation::InitTruncate { init, keep } => {
            if let Some(i) = pick(n_inits, *init) {
                let t = &mut g.initializer[i];
                let keep = *keep as usize;
                t.raw_data.truncate(keep);
                t.float_data.truncate(keep);
                t.int64_data.truncate(keep);
            }
        }
        Mutation::InitFloat { init, index, value } => {
            if let Some(t) = pick(n_inits, *init).map(|i| &mut g.initializer[i]) {
                let at = *index as usize * 4;
                if let Some(bytes) = t.raw_data.get_mut(at..at + 4) {
                    bytes.copy_from_slice(&value.to_le_bytes());
                }
            }
        }
        Mutation::InitDataType { init, data_type } => {
            if let Some(i) = pick(n_inits, *init) {
                g.initializer[i].data_type = *data_type;
            }
        }
        Mutation::InitExternal {
            init,
            location,
            offset,
            length,
        } => {
            if let Some(i) = pick(n_inits, *init) {
                let entry = |k: &str, v: String| StringStringEntryProto {
                    key: k.into(),
                    value: v,
                };
                let t = &mut g.initializer[i];
                t.external_data = vec![
                    entry("location", location.clone()),
                    entry("offset", offset.to_string()),
                    entry("length", length.to_string()),
                ];
                t.data_location = Some(1);
            }
        }
        Mutation::AttrInts { node, attr, values } => {
            if let Some(n) = pick(n_nodes, *node).map(|i| &mut g.node[i]) {
                if let Some(a) = pick(n.attribute.len(), *attr) {
                    n.attribute[a].ints = values.iter().take(8).copied().collect();
                }
            }
        }
        Mutation::AttrInt { node, attr, value } => {
            if let Some(n) = pick(n_nodes, *node).map(|i| &mut g.node[i]) {
                if let Some(a) = pick(n.attribute.len(), *attr) {
                    n.attribute[a].i = *value;
                }
            }
        }
        Mutation::AttrFloat { node, attr, value } => {
            if let Some(n) = pick(n_nodes, *node).map(|i| &mut g.node[i]) {
                if let Some(a) = pick(n.attribute.len(), *attr) {
                    n.attribute[a].f = *value;
                }
            }
        }
        Mutation::NodeInput {
            node,
            slot,
            from_node,
            from_init,
        } => {
            let source = if *from_init {
                pick(n_inits, *from_node).map(|i| g.initializer[i].name.clone())
            } else {
                pick(n_nodes, *from_node).and_then(|i| g.node[i].output.first().cloned())
            };
            if let (Some(n), Some(source)) = (pick(n_nodes, *node), source) {
                let inputs = &mut g.node[n].input;
                match pick(inputs.len(), *slot) {
                    Some(s) => inputs[s] = source,
                    None => inputs.push(source),
                }
            }
        }
        Mutation::NodeOutput { node, to_node } => {
            let target = pick(n_nodes, *to_node).and_then(|i| g.node[i].output.first().cloned());
            if let (Some(n), Some(target)) = (pick(n_nodes, *node), target) {
                if let Some(o) = g.node[n].output.first_mut() {
                    *o = target;
                }
            }
        }
        Mutation::NodeOpType { node, op } => {
            if let Some(n) = pick(n_nodes, *node) {
                g.node[n].op_type = OPS[*op as usize % OPS.len()].into();
            }
        }
        Mutation::RemoveNode { node } => {
            if let Some(n) = pick(n_nodes, *node) {
                g.node.remove(n);
            }
        }
        Mutation::DuplicateNode { node } => {
            if let Some(n) = pick(n_nodes, *node) {
                let copy = g.node[n].clone();
                g.node.insert(n, copy);
            }
        }
        Mutation::SwapNodes { a, b } => {
            if let (Some(a), Some(b)) = (pick(n_nodes, *a), pick(n_nodes, *b)) {
                g.node.swap(a, b);
            }
        }
        Mutation::InputDim { dim, value } => {
            let input = g.input.first_mut().and_then(|i| i.r#type.as_mut());
            if let Some(type_proto::Value::TensorType(t)) = input.and_then(|t| t.value.as_mut()) {
                if let Some(shape) = t.shape.as_mut() {
                    if let Some(d) = pick(shape.dim.len(), *dim) {
                        shape.dim[d].value = Some(Dim::DimValue(*value));
                    }
                }
            }
        }
        Mutation::Metadata { key, value } => {
            model.metadata_props.push(StringStringEntryProto {
                key: META_KEYS[*key as usize % META_KEYS.len()].into(),
                value: value.clone(),
            });
        }
    }
}

fuzz_target!(|case: Case| {
    let Some(seed) = pick(SEEDS.len(), case.seed) else {
        return;
    };
    let mut model = SEEDS[seed].clone();
    for m in case.mutations.iter().take(16) {
        apply(&mut model, m);
    }
    // External data resolves against the models' own directory (the seeds have none).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../models");
    if let Ok(graph) = import::import_model(&model, Some(&dir)) {
        if let Ok(graph) = passes::optimize(graph) {
            let _ = inspect::inspect(&graph);
        }
    }
});
