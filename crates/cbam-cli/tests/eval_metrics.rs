//! `cbam eval --json` per-class metrics of the committed Fashion-MNIST blob and its float
//! source, checked against a direct count of the labels file and against their own
//! confusion matrices; `--plots` writes the two matrices side by side.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn check_metrics(m: &Value, labels: &[u8], accuracy: f64) {
    let rows: Vec<Vec<u64>> = serde_json::from_value(m["confusion"].clone()).expect("matrix");
    assert_eq!(rows.len(), 10);
    let n = labels.len() as u64;
    assert_eq!(rows.iter().flatten().sum::<u64>(), n);
    let diagonal: u64 = (0..10).map(|c| rows[c][c]).sum();
    assert!(
        close(diagonal as f64 / n as f64, accuracy),
        "{diagonal} vs {accuracy}"
    );
    let names = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ];
    for (c, scores) in m["per_class"]
        .as_array()
        .expect("per_class")
        .iter()
        .enumerate()
    {
        // Support straight from the labels file's bytes.
        let support = labels.iter().filter(|&&l| usize::from(l) == c).count() as u64;
        assert_eq!(scores["support"].as_u64(), Some(support), "class {c}");
        assert_eq!(rows[c].iter().sum::<u64>(), support, "class {c}");
        let predicted: u64 = rows.iter().map(|r| r[c]).sum();
        assert_eq!(scores["predicted"].as_u64(), Some(predicted), "class {c}");
        assert_eq!(scores["name"], names[c]);
        let tp = rows[c][c] as f64;
        let p = if predicted == 0 {
            0.0
        } else {
            tp / predicted as f64
        };
        let r = if support == 0 {
            0.0
        } else {
            tp / support as f64
        };
        let f1 = if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        };
        for (key, want) in [("precision", p), ("recall", r), ("f1", f1)] {
            let got = scores[key].as_f64().expect(key);
            assert!(close(got, want), "class {c} {key}: {got} vs {want}");
        }
    }
    // Every class occurs in 64 test images: the weighted recall is the accuracy.
    assert_eq!(m["weighted_avg"]["support"].as_u64(), Some(n));
    assert!(close(
        m["weighted_avg"]["recall"].as_f64().unwrap(),
        accuracy
    ));
}

#[test]
fn json_metrics_match_a_direct_count_and_the_plot_is_written() {
    let repo = repo();
    let plots = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cbam"))
        .current_dir(&repo)
        .args([
            "eval",
            "models/fmnist_cbam.cbam",
            "--data",
            "models/data/test64_images.u8",
            "--labels",
            "models/data/test64_labels.u8",
            "--reference",
            "models/fmnist_cbam.onnx",
            "--json",
            "--plots",
        ])
        .arg(plots.path())
        .output()
        .expect("cbam runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let labels = std::fs::read(repo.join("models/data/test64_labels.u8")).unwrap();
    check_metrics(
        &report["metrics"],
        &labels,
        report["accuracy"].as_f64().unwrap(),
    );
    let reference = &report["reference"];
    check_metrics(
        &reference["metrics"],
        &labels,
        reference["accuracy"].as_f64().unwrap(),
    );

    let png = image::open(plots.path().join("confusion.png")).expect("a PNG");
    assert!(png.width() > png.height(), "two panels side by side");
}
