//! `cbam attention`: one image through a model, every CBAM block's spatial attention drawn
//! side by side over it, with the top class; optionally a second model as a second row
//! (e.g. the int8 core under its float source, to see that they agree).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cbam_compiler::limits::Limits;
use cbam_compiler::prune::plot::encode_png;
use clap::Args;

use crate::cmd_run::backend::{ModelFile, Runner};
use crate::frames::{self, FileFrames, Next};
use crate::limits::LimitArgs;
use crate::norm::NormArgs;
use crate::{outputs, overlay};

#[derive(Debug, Clone, Args)]
#[command(
    about = "Draw every CBAM block's spatial attention for one image into a PNG",
    after_help = "\
Examples:
  cbam attention models/fmnist_cbam.onnx models/data/images/test_000.png -o attention.png
  # the int8 core's maps above the float model's, to compare them
  cbam attention model.cbam image.png --compare models/fmnist_cbam.onnx -o both.png

Each row: the model's input (after crop and resize), then one panel per CBAM block in graph
order with the block's spatial attention as a heatmap (blue = ignored, red = attended);
the last panel's caption names the top class and its score."
)]
pub struct AttentionArgs {
    /// A float or QDQ .onnx (tract) or a .cbam blob (int8 core)
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// The image (PNG or JPEG)
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// The PNG to write
    #[arg(short, long, value_name = "OUT.png")]
    pub output: PathBuf,
    /// A second model drawn as a second row
    #[arg(long, value_name = "MODEL2")]
    pub compare: Option<PathBuf>,
    #[command(flatten)]
    pub norm: NormArgs,
    #[command(flatten, next_help_heading = "Limits")]
    pub limits: LimitArgs,
}

pub fn run(args: &AttentionArgs) -> Result<()> {
    let mut inputs = vec![
        ("the model", args.model.as_path()),
        ("the image", args.image.as_path()),
    ];
    inputs.extend(args.compare.as_deref().map(|c| ("--compare", c)));
    outputs::check(&inputs, &[("-o", args.output.as_path())])?;
    let limits = args.limits.limits();
    let mut frames = FileFrames::open(&args.image, limits.max_data_bytes)?;
    let frame = match frames.next_frame()? {
        Next::Frame(f) => f,
        _ => bail!("{} holds no image", args.image.display()),
    };
    let mut rows = Vec::new();
    for model in std::iter::once(&args.model).chain(args.compare.iter()) {
        rows.push(row(model, &frame.image, &limits, &args.norm)?);
    }
    let png = encode_png(&overlay::stacked(&rows))?;
    outputs::write_one(&args.output, &png)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    outln!("wrote {}", args.output.display())?;
    Ok(())
}

fn row(
    model: &std::path::Path,
    image: &image::DynamicImage,
    limits: &Limits,
    norm: &NormArgs,
) -> Result<image::RgbImage> {
    let file = ModelFile::open(model, None)?;
    let mut notes = Vec::new();
    let mut runner = Runner::new(&file, true, &mut notes, limits, norm)?;
    for note in &notes {
        errln!("note: {note}");
    }
    let fitted = frames::fit(image, runner.input_spec()).map_err(anyhow::Error::msg)?;
    if let Some(note) = &fitted.note {
        errln!("note: {note}");
    }
    let inference = runner.infer(&fitted.pixels_chw, true)?;
    if inference.attention.is_empty() {
        bail!(
            "{}: no CBAM attention map came out of the model; `cbam inspect {}` lists the \
             blocks cbam recognises",
            model.display(),
            model.display()
        );
    }
    let top = cbam_top1(&inference.scores);
    let name = model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut panels = vec![overlay::panel(
        &fitted.preview,
        None,
        &format!("{name} ({:?})", file.backend),
    )];
    let last = inference.attention.len() - 1;
    for (i, map) in inference.attention.iter().enumerate() {
        let mut caption = format!("CBAM {i} {}x{}", map.h, map.w);
        if i == last {
            if let Some((class, score)) = top {
                caption = format!("{caption}: {} {score:.2}", runner.label(class));
            }
        }
        panels.push(overlay::panel(&fitted.preview, Some(map), &caption));
    }
    Ok(overlay::side_by_side(&panels))
}

/// The predicted class and its score, by the tie rule every backend shares.
fn cbam_top1(scores: &[f32]) -> Option<(usize, f32)> {
    let class = cbam_core::argmax(scores)?;
    Some((class, *scores.get(class)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top1_takes_the_first_maximum_and_skips_nan() {
        assert_eq!(cbam_top1(&[0.1, 0.7, 0.7, f32::NAN]), Some((1, 0.7)));
        assert_eq!(cbam_top1(&[]), None);
    }
}
