//! Hostile input through the real `cbam` binary, one test per class: every case is answered
//! with a clear error (exit 1, never a panic's 101), in bounded time and memory, and leaves
//! the user's files as they were. Big inputs are generated here, never committed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cbam_compiler::import::testing::{int, ints, OnnxBuilder};
use cbam_e2e::onnx;
use cbam_e2e::scratch::Scratch;
use cbam_e2e::{files, paths};
use tract_onnx::pb::{ModelProto, StringStringEntryProto, TensorProto};

fn cbam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cbam"))
        .args(args)
        .output()
        .expect("the cbam binary runs")
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Exit 1 with every word of `words` in stderr, and no panic.
fn refused(out: &Output, words: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected exit 1:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for w in words {
        assert!(stderr.contains(w), "stderr lacks {w:?}:\n{stderr}");
    }
    stderr
}

/// Runs `f`, asserting it took less than `seconds`: a refusal must not hang first.
fn within<T>(seconds: u64, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let result = f();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(seconds), "took {took:?}");
    result
}

/// The scratch directory of [`cbam_e2e::scratch`], with the commands these tests run and
/// the blob quantized from its model.
struct Fixture(Scratch);

impl std::ops::Deref for Fixture {
    type Target = Scratch;

    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl Fixture {
    fn new() -> Self {
        Fixture(Scratch::new("m.onnx", 3))
    }

    fn write_model(&self, name: &str, model: &ModelProto) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, onnx::encode(model)).unwrap();
        path
    }

    fn eval(&self, model: &Path) -> Output {
        cbam(&[
            "eval",
            s(model),
            "--data",
            s(&self.images),
            "--labels",
            s(&self.labels),
        ])
    }

    fn quantize(&self, model: &Path, out: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "quantize",
            s(model),
            "--calib",
            s(&self.images),
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        cbam(&args)
    }

    /// A blob quantized from the fixture model.
    fn blob(&self) -> Vec<u8> {
        let out = self.path("fixture.cbam");
        let result = self.quantize(&self.model, &out, &["--no-bias-correction"]);
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        std::fs::read(out).unwrap()
    }
}

/// The fixture model with `edit` applied to its graph.
fn edited(edit: impl FnOnce(&mut tract_onnx::pb::GraphProto)) -> ModelProto {
    let mut model = onnx::cbam_classifier(3);
    if let Some(g) = model.graph.as_mut() {
        edit(g);
    }
    model
}

// 1. Panics.

#[test]
fn a_weight_whose_element_count_overflows_is_refused_by_every_command() {
    let f = Fixture::new();
    // No data and no bias: the count of a bias of zeros would be 2^62.
    let mut b = GraphBuilder::new(&[1, 1, 28, 28], 13, 1);
    let w = b.constant(&[1 << 62, 1, 2, 2], vec![]);
    let x = b.node("Conv", &[b.input(), &w], vec![]);
    let logits = b.head(&x, 4, 10);
    let path = f.write_model("overflow.onnx", &b.build(&logits, &[1, 10]));
    refused(&cbam(&["inspect", s(&path)]), &["2^64"]);
    refused(&f.eval(&path), &["2^64"]);
    refused(&f.quantize(&path, &f.path("o.cbam"), &[]), &["2^64"]);
}

#[test]
fn a_concat_of_vectors_after_global_pool_and_reshape_is_refused() {
    let f = Fixture::new();
    let mut b = GraphBuilder::new(&[1, 1, 28, 28], 13, 1);
    let x = b.conv_relu(b.input(), 1, 1, 3, 2);
    let gap = b.node("GlobalAveragePool", &[&x], vec![]);
    let shape = b.constant_i64(&[1], vec![-1]);
    let v = b.node("Reshape", &[&gap, &shape], vec![]);
    let out = b.node("Concat", &[&v, &v], vec![int("axis", 1)]);
    let path = f.write_model("concat.onnx", &b.build(&out, &[2]));
    refused(&cbam(&["inspect", s(&path)]), &["Concat"]);
}

/// A classifier with `op` (given `attrs`) on its 28x28 input; `erf` puts an op the importer
/// does not take in front, so only tract and its guards stand between it and the model.
fn windowed(op: &str, attrs: Vec<tract_onnx::pb::AttributeProto>, erf: bool) -> ModelProto {
    let mut b = GraphBuilder::new(&[1, 1, 28, 28], 13, 1);
    let mut x = b.conv_relu(b.input(), 1, 2, 3, 1);
    if erf {
        x = b.node("Erf", &[&x], vec![]);
    }
    let x = match op {
        "Conv" => {
            let w = b.random(&[4, 2, 3, 3], 18);
            b.node("Conv", &[&x, &w], attrs)
        }
        _ => b.node(op, &[&x], attrs),
    };
    let logits = b.head(&x, if op == "Conv" { 4 } else { 2 }, 10);
    b.build(&logits, &[1, 10])
}

#[test]
fn absurd_pooling_kernels_are_refused_by_eval_and_prune_without_a_panic() {
    let f = Fixture::new();
    for erf in [false, true] {
        let kernel = vec![ints("kernel_shape", &[65_536, 65_536])];
        let path = f.write_model("pool.onnx", &windowed("MaxPool", kernel, erf));
        refused(&f.eval(&path), &["pool.onnx"]);
        let prune = cbam(&[
            "prune",
            s(&path),
            "--calib",
            s(&f.images),
            "--ratio",
            "0.5",
            "--criterion",
            "l1",
            "--out",
            s(&f.path("p.onnx")),
        ]);
        refused(&prune, &[]);
        let huge = vec![ints("kernel_shape", &[1 << 40, 1 << 40])];
        let path = f.write_model("pool2.onnx", &windowed("MaxPool", huge, erf));
        refused(&f.eval(&path), &["kernel_shape"]);
    }
}

/// Spawns cbam with its stdout a pipe that is closed before cbam writes to it.
fn into_closed_pipe(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cbam"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    Output {
        status,
        stdout: Vec::new(),
        stderr: stderr.into_bytes(),
    }
}

#[test]
fn a_closed_stdout_ends_inspect_and_run_quietly() {
    let f = Fixture::new();
    let image = f.path("img.png");
    image::GrayImage::from_pixel(28, 28, image::Luma([90]))
        .save(&image)
        .unwrap();
    for args in [
        vec!["inspect", s(&f.model)],
        vec!["run", s(&f.model), "--input", s(&image)],
    ] {
        let out = into_closed_pipe(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

// 2. Unbounded memory.

#[test]
fn absurd_thread_counts_are_refused_before_any_thread_starts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let blob = root.join("models/fmnist_cbam.cbam");
    let images = root.join("models/data/images");
    for threads in ["100000", "18446744073709551615", "-1", "many"] {
        let flag = format!("--threads={threads}");
        for split in [false, true] {
            let mut args = vec!["run", s(&blob), "--input", s(&images), &flag];
            if split {
                args.push("--split-layers");
            }
            let out = within(10, || cbam(&args));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}:\n{stderr}");
            assert!(stderr.contains("--threads"), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

/// `blob` with the header field at `offset` set to `value` and the CRC recomputed.
fn patched(blob: &[u8], offset: usize, value: &[u8]) -> Vec<u8> {
    let mut b = blob.to_vec();
    b[offset..offset + value.len()].copy_from_slice(value);
    let total = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
    let crc = cbam_core::crc32(&b[16..total]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn a_blob_asking_for_a_4_gb_arena_or_a_huge_input_is_refused() {
    let f = Fixture::new();
    let blob = f.blob();
    let huge_arena = f.path("arena.cbam");
    std::fs::write(&huge_arena, patched(&blob, 16, &u32::MAX.to_le_bytes())).unwrap();
    for args in [
        vec![
            "eval",
            s(&huge_arena),
            "--data",
            s(&f.images),
            "--labels",
            s(&f.labels),
        ],
        vec!["run", s(&huge_arena), "--input", s(&f.images)],
    ] {
        refused(&cbam(&args), &["--max-arena"]);
    }
    // The input tensor's record: h and w at its first bytes.
    let tensors = u32::from_le_bytes(blob[32..36].try_into().unwrap()) as usize;
    let input = u16::from_le_bytes(blob[40..42].try_into().unwrap()) as usize;
    let record = tensors + 32 * input;
    let side = 65_535u16.to_le_bytes();
    let wide = patched(&patched(&blob, record, &side), record + 2, &side);
    let huge_input = f.path("input.cbam");
    std::fs::write(&huge_input, patched(&wide, 16, &u32::MAX.to_le_bytes())).unwrap();
    let out = cbam(&[
        "eval",
        s(&huge_input),
        "--data",
        s(&f.images),
        "--labels",
        s(&f.labels),
    ]);
    // The core's reader refuses it: its conv no longer follows from the input.
    refused(&out, &["input.cbam", "not a valid .cbam"]);
    // A blob the core accepts is held to the caps, which name the flag that raises them.
    let ok = f.path("ok.cbam");
    std::fs::write(&ok, &blob).unwrap();
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            s(&ok),
            "--data",
            s(&f.images),
            "--labels",
            s(&f.labels),
        ];
        args.extend_from_slice(extra);
        cbam(&args)
    };
    refused(
        &eval(&["--max-input-pixels", "783"]),
        &["784", "--max-input-pixels"],
    );
    refused(&eval(&["--max-arena", "1000"]), &["--max-arena"]);
    let out = eval(&["--max-input-pixels", "784"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn devices_as_model_data_or_labels_are_refused() {
    let f = Fixture::new();
    let zero_model = f.path("zero.onnx");
    std::os::unix::fs::symlink("/dev/zero", &zero_model).unwrap();
    let zero_data = f.path("zero-idx3-ubyte");
    std::os::unix::fs::symlink("/dev/zero", &zero_data).unwrap();
    for model in [Path::new("/dev/zero"), zero_model.as_path()] {
        refused(&cbam(&["inspect", s(model)]), &["not a regular file"]);
        refused(&f.eval(model), &["not a regular file"]);
    }
    for data in [Path::new("/dev/zero"), zero_data.as_path()] {
        let out = cbam(&[
            "eval",
            s(&f.model),
            "--data",
            s(data),
            "--labels",
            s(&f.labels),
        ]);
        refused(&out, &["not a regular file"]);
        let out = cbam(&[
            "eval",
            s(&f.model),
            "--data",
            s(&f.images),
            "--labels",
            s(data),
        ]);
        refused(&out, &["not a regular file"]);
    }
}

#[test]
fn external_data_outside_the_model_directory_is_refused() {
    let f = Fixture::new();
    std::fs::write(f.path("secret.bin"), [0u8; 4096]).unwrap();
    let sub = f.path("model");
    std::fs::create_dir(&sub).unwrap();
    for location in ["/dev/zero", "/etc/passwd", "../secret.bin"] {
        let model = edited(|g| {
            let w: &mut TensorProto = &mut g.initializer[0];
            let len = w.raw_data.len() + w.float_data.len() * 4;
            w.raw_data.clear();
            w.float_data.clear();
            w.data_location = Some(1);
            let entry = |k: &str, v: String| StringStringEntryProto {
                key: k.into(),
                value: v,
            };
            w.external_data = vec![
                entry("location", location.into()),
                entry("length", len.to_string()),
            ];
        });
        let path = sub.join("ext.onnx");
        std::fs::write(&path, onnx::encode(&model)).unwrap();
        refused(&cbam(&["inspect", s(&path)]), &["model's directory"]);
        refused(&f.eval(&path), &["model's directory"]);
    }
}

#[test]
fn a_model_input_past_the_cap_is_refused_before_any_image_is_resized() {
    let f = Fixture::new();
    // 100k x 100k is past any tensor cbam can run; 4096 x 4096 only past the default cap.
    let cases: [(i64, &[&str]); 2] = [
        (100_000, &["10000000000", "does not handle"]),
        (4096, &["16777216", "--max-input-pixels"]),
    ];
    for (side, words) in cases {
        let mut b = GraphBuilder::new(&[1, 1, side, side], 13, 1);
        let logits = b.head(b.input(), 1, 10);
        let path = f.write_model("huge.onnx", &b.build(&logits, &[1, 10]));
        within(30, || {
            refused(&f.quantize(&path, &f.path("h.cbam"), &[]), words);
            refused(&f.eval(&path), words);
        });
    }
}

#[test]
fn an_idx_file_declaring_more_than_the_data_cap_is_refused() {
    let f = Fixture::new();
    let bomb = f.path("bomb-idx3-ubyte.gz");
    let mut header = vec![0, 0, 0x08, 3];
    for d in [60_000u32, 65_535, 65_535] {
        header.extend_from_slice(&d.to_be_bytes());
    }
    header.resize(header.len() + (1 << 20), 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &header).unwrap();
    std::fs::write(&bomb, gz.finish().unwrap()).unwrap();
    let out = cbam(&[
        "eval",
        s(&f.model),
        "--data",
        s(&bomb),
        "--labels",
        s(&f.labels),
    ]);
    refused(&out, &["--max-data-bytes"]);
}

// 3. Hangs.

#[test]
fn overflowing_pads_are_refused_quickly() {
    let f = Fixture::new();
    for erf in [false, true] {
        let pads = vec![ints("pads", &[i64::MAX / 2, 0, i64::MAX / 2, 0])];
        let path = f.write_model("pads.onnx", &windowed("Conv", pads, erf));
        within(30, || refused(&f.eval(&path), &["pads"]));
    }
}

// 4. Silent garbage.

/// Sets a float tensor's first value, stored raw or as `float_data`.
fn set_first(t: &mut TensorProto, v: f32) {
    if let Some(first) = t.float_data.first_mut() {
        *first = v;
    } else if let Some(bytes) = t.raw_data.get_mut(..4) {
        bytes.copy_from_slice(&v.to_le_bytes());
    }
}

#[test]
fn nan_weights_are_refused() {
    let f = Fixture::new();
    let model = edited(|g| set_first(&mut g.initializer[0], f32::NAN));
    let path = f.write_model("nan.onnx", &model);
    refused(&cbam(&["inspect", s(&path)]), &["damaged"]);
    refused(&f.eval(&path), &["damaged"]);
    // With an op the importer does not translate, tract runs the model: the guard still
    // refuses a NaN, and an infinite bias (a legal constant) makes infinite logits, which
    // are refused instead of read as a class.
    let erf_model = |edit: fn(&mut TensorProto)| {
        let mut model = onnx::unsupported_op_model();
        if let Some(g) = model.graph.as_mut() {
            edit(&mut g.initializer[0]);
            edit(g.initializer.last_mut().unwrap());
        }
        model
    };
    let nan = f.write_model("nan_erf.onnx", &erf_model(|t| set_first(t, f32::NAN)));
    refused(&f.eval(&nan), &["is NaN", "damaged"]);
    let inf = f.write_model("inf_erf.onnx", &erf_model(|t| set_first(t, f32::INFINITY)));
    refused(&f.eval(&inf), &["sample 0", "class score is", "damaged"]);
    let image = f.path("img.png");
    image::GrayImage::from_pixel(28, 28, image::Luma([90]))
        .save(&image)
        .unwrap();
    let out = cbam(&["run", s(&inf), "--input", s(&image)]);
    refused(&out, &["class score is", "damaged"]);
}

#[test]
fn an_output_that_is_not_class_scores_is_refused() {
    let f = Fixture::new();
    let mut b = GraphBuilder::new(&[1, 1, 28, 28], 13, 1);
    let same = b.node("Identity", &[b.input()], vec![]);
    let identity = f.write_model("identity.onnx", &b.build(&same, &[1, 1, 28, 28]));
    let mut b = GraphBuilder::new(&[1, 1, 28, 28], 13, 1);
    let map = b.conv_relu(b.input(), 1, 4, 3, 1);
    let feature_map = f.write_model("map.onnx", &b.build(&map, &[1, 4, 28, 28]));
    for path in [&identity, &feature_map] {
        refused(&f.eval(path), &["not a vector of class scores"]);
        refused(
            &f.quantize(path, &f.path("x.cbam"), &[]),
            &["not a vector of class scores"],
        );
    }
}

#[test]
fn a_nan_mean_or_a_denormal_std_is_refused() {
    let f = Fixture::new();
    for (key, value) in [
        ("cbam.mean", "NaN"),
        ("cbam.std", "1e-40"),
        ("cbam.std", "0"),
    ] {
        let mut model = onnx::cbam_classifier(3);
        model.metadata_props.retain(|p| p.key != key);
        model.metadata_props.push(StringStringEntryProto {
            key: key.into(),
            value: value.into(),
        });
        let path = f.write_model("meta.onnx", &model);
        refused(&f.eval(&path), &["meta.onnx"]);
        refused(&f.quantize(&path, &f.path("x.cbam"), &[]), &["meta.onnx"]);
    }
}

#[test]
fn nan_or_infinite_calibration_data_is_refused() {
    let f = Fixture::new();
    for bad in [f32::NAN, f32::INFINITY] {
        let calib = f.path("calib.npy");
        files::write_npy_f32(&calib, &[2, 1, 28, 28], &vec![bad; 2 * 28 * 28]).unwrap();
        let out = cbam(&[
            "quantize",
            s(&f.model),
            "--calib",
            s(&calib),
            "--out",
            s(&f.path("x.cbam")),
        ]);
        refused(&out, &["calib.npy", "finite"]);
    }
}

#[test]
fn a_label_past_the_models_classes_is_refused() {
    let f = Fixture::new();
    let labels = f.path("bad-labels-idx1-ubyte");
    files::write_idx(&labels, &[4], &[0, 1, 200, 3]).unwrap();
    let out = cbam(&[
        "eval",
        s(&f.model),
        "--data",
        s(&f.images),
        "--labels",
        s(&labels),
    ]);
    refused(&out, &["label 200", "10 classes"]);
}

// 5. Clobbering.

#[test]
fn an_output_naming_an_input_in_any_spelling_is_refused_and_the_input_kept() {
    let f = Fixture::new();
    let before = std::fs::read(&f.model).unwrap();
    std::fs::create_dir(f.path("sub")).unwrap();
    let link = f.path("link.onnx");
    std::os::unix::fs::symlink(&f.model, &link).unwrap();
    let dir = f.dir.path();
    let spellings = [
        f.model.clone(),
        dir.join(".").join("m.onnx"),
        dir.join("sub/../m.onnx"),
        link.clone(),
    ];
    for spelling in &spellings {
        for flag in ["--qdq", "--report"] {
            let out = f.quantize(&f.model, &f.path("ok.cbam"), &[flag, s(spelling)]);
            refused(&out, &["the input model"]);
        }
        refused(&f.quantize(&f.model, spelling, &[]), &["the input model"]);
    }
    let out = f.quantize(&f.model, &f.path("ok.cbam"), &["--qdq", s(&f.images)]);
    refused(&out, &["the calibration data"]);
    let same = f.path("r.json");
    let out = f.quantize(&f.model, &same, &["--report", s(&same)]);
    refused(&out, &["same file"]);
    assert_eq!(std::fs::read(&f.model).unwrap(), before);
}

#[test]
fn prune_and_attention_refuse_to_overwrite_their_inputs() {
    let f = Fixture::new();
    let before = std::fs::read(&f.model).unwrap();
    let prune = |out: &Path| {
        cbam(&[
            "prune",
            s(&f.model),
            "--calib",
            s(&f.images),
            "--ratio",
            "0.5",
            "--out",
            s(out),
        ])
    };
    refused(&prune(&f.model), &["the input model"]);
    let image = f.path("img.png");
    image::GrayImage::from_pixel(28, 28, image::Luma([90]))
        .save(&image)
        .unwrap();
    let png = std::fs::read(&image).unwrap();
    let out = cbam(&["attention", s(&f.model), s(&image), "-o", s(&image)]);
    refused(&out, &["the image"]);
    assert_eq!(std::fs::read(&f.model).unwrap(), before);
    assert_eq!(std::fs::read(&image).unwrap(), png);
}

#[test]
fn an_output_in_a_missing_directory_fails_before_any_work() {
    let f = Fixture::new();
    // The refusal comes before the model is even read: well under the analysis's time.
    let out = within(5, || {
        cbam(&[
            "prune",
            s(&f.model),
            "--calib",
            s(&f.images),
            "--ratio",
            "0.5",
            "--out",
            s(&f.path("nodir/x.onnx")),
        ])
    });
    refused(&out, &["does not exist"]);
}

#[test]
fn a_249_character_output_name_is_written() {
    let f = Fixture::new();
    let long = f.path(&format!("{}.cbam", "m".repeat(244)));
    assert_eq!(long.file_name().unwrap().len(), 249);
    let out = f.quantize(&f.model, &long, &["--no-bias-correction", "--limit", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(long.is_file());
}

#[test]
fn overlays_never_replace_an_input_image() {
    let f = Fixture::new();
    let dir = f.path("frames");
    std::fs::create_dir(&dir).unwrap();
    let input = dir.join("frame_00001.png");
    image::GrayImage::from_pixel(28, 28, image::Luma([90]))
        .save(&input)
        .unwrap();
    image::GrayImage::from_pixel(28, 28, image::Luma([9]))
        .save(dir.join("a.png"))
        .unwrap();
    let before = std::fs::read(&input).unwrap();
    let out = cbam(&["run", s(&f.model), "--input", s(&dir), "--overlay", s(&dir)]);
    refused(&out, &["frame_00001.png"]);
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

// 6. Partial sets of outputs.

#[test]
fn ctrl_c_leaves_the_old_outputs_and_no_temp_file() {
    let f = Fixture::new();
    let Some(calib) = paths::calibration_images() else {
        eprintln!("skipped: no calibration images");
        return;
    };
    let (out, report) = (f.path("m.cbam"), f.path("r.json"));
    std::fs::write(&out, "old blob").unwrap();
    std::fs::write(&report, "old report").unwrap();
    let before = f.listing();
    let child = Command::new(env!("CARGO_BIN_EXE_cbam"))
        .args([
            "quantize",
            s(&f.model),
            "--calib",
            s(&calib),
            "--out",
            s(&out),
            "--report",
            s(&report),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait_with_output().unwrap().status;
    let after = f.listing();
    assert_eq!(after, before, "stray files after Ctrl-C");
    if status.code() == Some(130) {
        assert_eq!(std::fs::read(&out).unwrap(), b"old blob");
        assert_eq!(std::fs::read(&report).unwrap(), b"old report");
    } else {
        // It finished before the signal: the whole new set is there.
        assert!(status.success(), "{status:?}");
        assert_ne!(std::fs::read(&out).unwrap(), b"old blob");
        assert_ne!(std::fs::read(&report).unwrap(), b"old report");
    }
}

// 7. Budgets.

#[test]
fn a_stack_past_64_bits_does_not_fit_and_a_mistyped_board_gets_a_suggestion() {
    let f = Fixture::new();
    let blob = f.path("m.cbam");
    std::fs::write(&blob, f.blob()).unwrap();
    let out = cbam(&[
        "flash",
        "--board",
        "nucleo-f411re",
        "--model",
        s(&blob),
        "--stack",
        "18446744073709551615",
        "--dry-run",
        "--no-build",
    ]);
    let stderr = refused(&out, &["does not fit"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("fits;"),
        "{stderr}"
    );
    let out = cbam(&[
        "flash",
        "--board",
        "nucleo-f411",
        "--model",
        s(&blob),
        "--dry-run",
        "--no-build",
    ]);
    refused(&out, &["did you mean `nucleo-f411re`"]);
}

/// The test models here, on the compiler's one in-code ONNX builder.
struct GraphBuilder(OnnxBuilder);

impl GraphBuilder {
    fn new(input_dims: &[i64], opset: i64, seed: u32) -> Self {
        GraphBuilder(OnnxBuilder::new(input_dims, opset).seeded(seed))
    }

    fn input(&self) -> &'static str {
        "x"
    }

    fn constant(&mut self, dims: &[i64], values: Vec<f32>) -> String {
        self.0.init(dims, values)
    }

    fn constant_i64(&mut self, dims: &[i64], values: Vec<i64>) -> String {
        self.0.init_i64_dims(dims, &values)
    }

    fn random(&mut self, dims: &[i64], _fan_in: usize) -> String {
        self.0.rand(dims)
    }

    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<tract_onnx::pb::AttributeProto>,
    ) -> String {
        self.0.node(op, inputs, attrs)
    }

    fn conv_relu(&mut self, x: &str, in_c: i64, out_c: i64, k: i64, stride: i64) -> String {
        let conv = self.0.conv_strided(x, in_c, out_c, k, stride, true);
        self.0.node("Relu", &[&conv], vec![])
    }

    fn head(&mut self, x: &str, c: i64, classes: i64) -> String {
        let gap = self.0.node("GlobalAveragePool", &[x], vec![]);
        let flat = self.0.node("Flatten", &[&gap], vec![int("axis", 1)]);
        self.0.gemm(&flat, c, classes, true)
    }

    fn build(mut self, output: &str, output_dims: &[i64]) -> ModelProto {
        self.0.output_dims = Some(output_dims.to_vec());
        self.0.build(output)
    }
}
