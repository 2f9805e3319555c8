//! The IR computes what the ONNX model computes: for every model under `models/` (the
//! examples, their variants and the zoo of export styles), each Conv, Linear, Add (with
//! its folded input scales) and fused CBAM node is re-evaluated in plain float from its
//! input values (as tract computed them) and compared with tract's value of its output.
//! This checks weight layouts, BatchNorm folding, bias folding, activation fusion and the
//! CBAM parameters (MLP, spatial order, spatial conv) node by node.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cbam_compiler::float_run::FloatModel;
use cbam_compiler::import::load_onnx;
use cbam_compiler::ir::{Activation, Cbam, Conv, Graph, Linear, Op, SpatialOrder};
use cbam_compiler::passes;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn act(a: Activation, v: f32) -> f32 {
    match a {
        Activation::None => v,
        Activation::Relu => v.max(0.0),
        Activation::Clip(lo, hi) => v.clamp(lo, hi),
    }
}

/// `x` is `[c, h, w]`; returns `[out_c, oh, ow]`.
fn conv(x: &[f32], [h, w]: [usize; 2], c: &Conv) -> Vec<f32> {
    let [kh, kw] = c.kernel;
    let span = |i: usize| c.dilation[i] * (c.kernel[i] - 1) + 1;
    let oh = (h + c.pads[0] + c.pads[2] - span(0)) / c.stride[0] + 1;
    let ow = (w + c.pads[1] + c.pads[3] - span(1)) / c.stride[1] + 1;
    let (in_g, out_g) = (c.in_c / c.groups, c.out_c / c.groups);
    let mut out = vec![0.0; c.out_c * oh * ow];
    for o in 0..c.out_c {
        let g = o / out_g;
        for (y, x_) in (0..oh).flat_map(|y| (0..ow).map(move |x_| (y, x_))) {
            let mut acc = c.bias[o];
            for i in 0..in_g {
                for (ky, kx) in (0..kh).flat_map(|ky| (0..kw).map(move |kx| (ky, kx))) {
                    let iy = (y * c.stride[0] + ky * c.dilation[0]) as isize - c.pads[0] as isize;
                    let ix = (x_ * c.stride[1] + kx * c.dilation[1]) as isize - c.pads[1] as isize;
                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                        continue;
                    }
                    let xv = x[((g * in_g + i) * h + iy as usize) * w + ix as usize];
                    acc += xv * c.weight[((o * in_g + i) * kh + ky) * kw + kx];
                }
            }
            out[(o * oh + y) * ow + x_] = act(c.act, acc);
        }
    }
    out
}

fn linear(x: &[f32], l: &Linear) -> Vec<f32> {
    (0..l.out_features)
        .map(|o| {
            let row = &l.weight[o * l.in_features..(o + 1) * l.in_features];
            act(
                l.act,
                l.bias[o] + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>(),
            )
        })
        .collect()
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// The fused block from `F` (`[c, h, w]`), written from the paper's equations.
fn cbam(f: &[f32], [h, w]: [usize; 2], b: &Cbam) -> Vec<f32> {
    let hw = h * w;
    let avg: Vec<f32> = f
        .chunks(hw)
        .map(|ch| ch.iter().sum::<f32>() / hw as f32)
        .collect();
    let max: Vec<f32> = f
        .chunks(hw)
        .map(|ch| ch.iter().copied().fold(f32::MIN, f32::max))
        .collect();
    let mlp = |v: &[f32]| linear(&linear(v, &b.mlp1), &b.mlp2);
    let gate: Vec<f32> = mlp(&avg)
        .iter()
        .zip(mlp(&max))
        .map(|(a, m)| sigmoid(a + m))
        .collect();
    let fp: Vec<f32> = f
        .iter()
        .enumerate()
        .map(|(i, v)| v * gate[i / hw])
        .collect();
    let mean_c: Vec<f32> = (0..hw)
        .map(|p| (0..b.channels).map(|c| fp[c * hw + p]).sum::<f32>() / b.channels as f32)
        .collect();
    let max_c: Vec<f32> = (0..hw)
        .map(|p| {
            (0..b.channels)
                .map(|c| fp[c * hw + p])
                .fold(f32::MIN, f32::max)
        })
        .collect();
    let map = match b.order {
        SpatialOrder::MeanMax => [mean_c, max_c].concat(),
        SpatialOrder::MaxMean => [max_c, mean_c].concat(),
    };
    let s = conv(&map, [h, w], &b.spatial);
    fp.iter()
        .enumerate()
        .map(|(i, v)| v * sigmoid(s[i % hw]))
        .collect()
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs() / scale))
}

fn hw(shape: &[usize]) -> [usize; 2] {
    [
        shape.get(1).copied().unwrap_or(1),
        shape.get(2).copied().unwrap_or(1),
    ]
}

fn check(file: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let g: Graph = passes::optimize(load_onnx(file)?)?;
    let model = FloatModel::load(file)?;
    let names: Vec<String> = g.tensors.iter().map(|t| t.name.clone()).collect();
    let n: usize = model.input_shape().iter().product();
    let input: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let values: HashMap<String, Vec<f32>> = model.run_with_values(&input, &names)?;
    let value = |t: usize| &values[&g.tensors[t].name];
    let mut problems = Vec::new();
    for node in &g.nodes {
        let x = value(node.inputs[0]);
        let in_shape = &g.tensors[node.inputs[0]].shape;
        let got = match &node.op {
            Op::Conv(c) => conv(x, hw(in_shape), c),
            Op::Linear(l) => linear(x, l),
            Op::Cbam(b) => cbam(x, hw(in_shape), b),
            Op::Add {
                act: a,
                scales: [s, t],
            } => x
                .iter()
                .zip(value(node.inputs[1]))
                .map(|(p, q)| act(*a, s * p + t * q))
                .collect(),
            _ => continue,
        };
        let diff = max_rel_diff(&got, value(node.output));
        if diff > 1e-4 {
            problems.push(format!(
                "{}: node {} differs from tract by {diff:e} (relative)",
                file.display(),
                node.name
            ));
        }
    }
    Ok(problems)
}

#[test]
fn ir_nodes_match_tract_on_every_model() -> TestResult {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in [dir.clone(), dir.join("variants"), dir.join("zoo")] {
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        for e in entries {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "onnx") {
                files.push(p);
            }
        }
    }
    let mut problems = Vec::new();
    for f in &files {
        problems.extend(check(f)?);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}
