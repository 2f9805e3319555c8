//! Charts as PNG: drawn with `plotters` into an RGB buffer, text in DejaVu Sans embedded in
//! the binary (a Pi or a container may have no fonts installed), colours from d3's schemes
//! (`colorous`). Every chart carries a title, labelled axes and a legend, so a PNG read
//! without the table beside it still says what it shows.

pub mod attention;
pub mod confusion;

use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use image::RgbImage;
use plotters::prelude::*;
use plotters::style::{FontStyle, RGBColor};

/// The font family every chart asks for; [`fonts`] registers it.
pub const FONT: &str = "sans-serif";

/// Registers the embedded font under [`FONT`] (once per process).
pub fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The fonts come from the `dejavu` crate; a parse failure would be a build defect
        // that every chart test catches (its text would be missing).
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// A `w` x `h` white canvas drawn by `draw`, as an image.
pub fn render(
    w: u32,
    h: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<RgbImage> {
    fonts();
    let mut buffer = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        draw(&root)?;
        root.present()
            .map_err(|e| anyhow!("drawing a chart: {e}"))?;
    }
    RgbImage::from_raw(w, h, buffer).context("a chart buffer of the wrong size")
}

/// PNG bytes of an image.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>> {
    Ok(cbam_compiler::prune::plot::encode_png(img)?)
}

/// A `plotters` drawing error as an `anyhow` one (its error type borrows the backend).
pub fn drawing<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T> {
    result.map_err(|e| anyhow!("drawing a chart: {e}"))
}

/// `t` in 0..1 on a d3 colour scheme.
pub fn scheme(gradient: colorous::Gradient, t: f64) -> RGBColor {
    let c = gradient.eval_continuous(if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    });
    RGBColor(c.r, c.g, c.b)
}

#[cfg(test)]
mod tests;
