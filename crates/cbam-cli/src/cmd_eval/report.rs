//! The per-class part of `cbam eval`'s output: the precision/recall/F1 table (the model
//! and its reference side by side), the confusion matrices as text, and the PNG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::metrics::{Average, Metrics};
use super::{EvalArgs, Report};
use crate::outputs;
use crate::plots::{self, confusion};

/// Where `--plots` writes the matrix.
const CONFUSION_PNG: &str = "confusion.png";

/// Fails before any work when `dir` cannot take the chart.
pub fn check_plots_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("--plots {} is a file; give a directory", dir.display());
    }
    Ok(())
}

/// Writes `dir/confusion.png`: the model's matrix, and the reference's beside it.
pub fn write_confusion_png(
    args: &EvalArgs,
    dir: &Path,
    report: &Report,
    names: &[String],
) -> Result<PathBuf> {
    let Some(metrics) = &report.metrics else {
        bail!(
            "--plots needs labelled data for a confusion matrix; {} has no labels (pass --labels)",
            report.data
        );
    };
    let mut panels = vec![confusion::Panel {
        title: panel_title(&report.model, report.backend, report.accuracy),
        confusion: &metrics.confusion,
    }];
    if let Some(r) = &report.reference {
        if let Some(m) = &r.metrics {
            panels.push(confusion::Panel {
                title: panel_title(&r.model, r.backend, r.accuracy),
                confusion: &m.confusion,
            });
        }
    }
    let png = plots::encode_png(&confusion::chart(&panels, names)?)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create --plots {}: {e}", dir.display()))?;
    let path = dir.join(CONFUSION_PNG);
    let mut inputs = vec![
        ("the model", args.model.as_path()),
        ("--data", args.data.as_path()),
    ];
    inputs.extend(args.labels.as_deref().map(|l| ("--labels", l)));
    inputs.extend(args.reference.as_deref().map(|r| ("--reference", r)));
    outputs::check(&inputs, &[("the --plots chart", path.as_path())])?;
    outputs::write_one(&path, &png)?;
    Ok(path)
}

fn panel_title(model: &str, backend: &str, accuracy: Option<f64>) -> String {
    let file = Path::new(model)
        .file_name()
        .map_or(model.to_string(), |f| f.to_string_lossy().into_owned());
    match accuracy {
        Some(a) => format!("{file} ({backend}), accuracy {:.2}%", a * 100.0),
        None => format!("{file} ({backend})"),
    }
}

/// The per-class table and the confusion matrices; empty without labels.
pub fn per_class_table(report: &Report) -> String {
    let Some(model) = &report.metrics else {
        return String::new();
    };
    let reference = report.reference.as_ref().and_then(|r| r.metrics.as_ref());
    let mut columns = vec![(report.backend.to_string(), model)];
    if let (Some(r), Some(m)) = (&report.reference, reference) {
        columns.push((format!("{} (reference)", r.backend), m));
    }
    let names: Vec<String> = model
        .per_class
        .iter()
        .map(|s| format!("{} {}", s.class, s.name))
        .collect();
    let width = names
        .iter()
        .map(|n| n.chars().count())
        .chain([12])
        .max()
        .unwrap_or(12);
    let mut text = String::from("\nper class (precision, recall, F1 against the labels):\n");
    let _ = write!(text, "{:<width$}", "");
    for (title, _) in &columns {
        let _ = write!(text, "  {title:<26}");
    }
    let _ = writeln!(text, "  {:>7}", "support");
    let _ = write!(text, "{:<width$}", "class");
    for _ in &columns {
        let _ = write!(text, "  {:>8} {:>8} {:>8}", "precision", "recall", "f1");
    }
    text.push('\n');
    for (row, name) in names.iter().enumerate() {
        let _ = write!(text, "{name:<width$}");
        for (_, m) in &columns {
            let s = &m.per_class[row];
            let _ = write!(
                text,
                "  {:>9.3} {:>8.3} {:>8.3}",
                s.precision, s.recall, s.f1
            );
        }
        let _ = writeln!(text, "  {:>7}", model.per_class[row].support);
    }
    for (label, pick) in [
        (
            "macro avg",
            (|m: &Metrics| &m.macro_avg) as fn(&Metrics) -> &Average,
        ),
        ("weighted avg", |m: &Metrics| &m.weighted_avg),
    ] {
        let _ = write!(text, "{label:<width$}");
        for (_, m) in &columns {
            let a = pick(m);
            let _ = write!(
                text,
                "  {:>9.3} {:>8.3} {:>8.3}",
                a.precision, a.recall, a.f1
            );
        }
        let _ = writeln!(text, "  {:>7}", pick(model).support);
    }
    for (title, m) in &columns {
        text.push_str(&confusion_text(title, m, width));
    }
    let mut notes: Vec<&String> = Vec::new();
    for (_, m) in &columns {
        for note in &m.notes {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    for note in notes {
        let _ = writeln!(text, "note: {note}");
    }
    text
}

fn confusion_text(title: &str, metrics: &Metrics, width: usize) -> String {
    let rows = metrics.confusion.rows();
    let cell = rows
        .iter()
        .flatten()
        .map(|c| c.to_string().len())
        .chain([rows.len().saturating_sub(1).to_string().len()])
        .max()
        .unwrap_or(1);
    let mut text = format!("\nconfusion matrix, {title} (rows: true class, columns: predicted):\n");
    let _ = write!(text, "{:<width$}", "");
    for c in 0..rows.len() {
        let _ = write!(text, " {c:>cell$}");
    }
    text.push('\n');
    for (t, row) in rows.iter().enumerate() {
        let s = &metrics.per_class[t];
        let _ = write!(text, "{:<width$}", format!("{} {}", s.class, s.name));
        for count in row {
            let _ = write!(text, " {count:>cell$}");
        }
        text.push('\n');
    }
    text
}
