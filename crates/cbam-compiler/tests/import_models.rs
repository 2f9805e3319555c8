//! Every ONNX model under `models/` imports, optimises with the CBAM block count the
//! manifest (`models/manifest.json`) states, and every value the IR names can be observed
//! through tract (what calibration relies on).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cbam_compiler::float_run::FloatModel;
use cbam_compiler::import::load_onnx;
use cbam_compiler::ir::Op;
use cbam_compiler::{inspect, passes};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn onnx_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            onnx_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "onnx") {
            out.push(path);
        }
    }
    Ok(())
}

/// `file` (relative to `models/`) -> expected CBAM blocks.
fn expected_blocks(dir: &Path) -> Result<HashMap<String, u64>, Box<dyn std::error::Error>> {
    let path = dir.join("manifest.json");
    if !path.exists() {
        return Ok(HashMap::new());
    }
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let entries = manifest.as_array().ok_or("manifest.json is not a list")?;
    Ok(entries
        .iter()
        .filter_map(|e| {
            Some((
                e.get("file")?.as_str()?.to_string(),
                e.get("cbam_blocks")?.as_u64()?,
            ))
        })
        .collect())
}

#[test]
fn every_model_imports_with_its_cbam_blocks() -> TestResult {
    let dir = models_dir();
    let mut files = Vec::new();
    if dir.exists() {
        onnx_files(&dir, &mut files)?;
    }
    files.sort();
    let expected = expected_blocks(&dir)?;
    let mut failures = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&dir)?
            .to_string_lossy()
            .replace('\\', "/");
        let graph = match load_onnx(file)
            .map_err(|e| e.to_string())
            .and_then(|g| passes::optimize(g).map_err(|e| e.to_string()))
        {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{rel}: {e}"));
                continue;
            }
        };
        let report = inspect::inspect(&graph);
        eprintln!(
            "{rel}: {} CBAM, {} params, {} MACs",
            report.cbam_blocks, report.params, report.macs
        );
        if let Some(&want) = expected.get(&rel) {
            if report.cbam_blocks as u64 != want {
                failures.push(format!(
                    "{rel}: {} CBAM blocks, manifest says {want}",
                    report.cbam_blocks
                ));
            }
        }
        let leftovers: Vec<&str> = graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Identity | Op::BatchNorm(_)))
            .map(|n| n.name.as_str())
            .collect();
        if !leftovers.is_empty() {
            failures.push(format!(
                "{rel}: Identity/BatchNorm left after optimize: {leftovers:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn tract_exposes_every_value_the_ir_names() -> TestResult {
    let dir = models_dir();
    let mut files = Vec::new();
    if dir.exists() {
        onnx_files(&dir, &mut files)?;
    }
    for file in files
        .iter()
        .filter(|f| !f.to_string_lossy().contains("/data/"))
    {
        let graph = passes::optimize(load_onnx(file)?)?;
        let mut names: Vec<String> = graph.tensors.iter().map(|t| t.name.clone()).collect();
        for node in &graph.nodes {
            if let Op::Cbam(c) = &node.op {
                names.extend(c.values.all().map(String::clone));
            }
        }
        let model = FloatModel::load(file)?;
        let n: usize = model.input_shape().iter().product();
        let input: Vec<f32> = (0..n).map(|i| ((i * 37) % 255) as f32 / 255.0).collect();
        let values = model.run_with_values(&input, &names)?;
        let out = model.run(&input)?;
        let output_name = &graph.tensors[graph.output].name;
        assert_eq!(values[output_name], out, "{}", file.display());
        for t in &graph.tensors {
            let got = values[&t.name].len();
            assert_eq!(
                got,
                t.shape.iter().product::<usize>(),
                "{} value {}",
                file.display(),
                t.name
            );
        }
    }
    Ok(())
}
