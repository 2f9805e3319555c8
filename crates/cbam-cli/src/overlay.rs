//! Attention overlays: the model's view of a frame, its spatial attention as a heatmap over
//! it, and a caption, as PNG-ready RGB images.
//!
//! Model inputs are tiny (28x28 for Fashion-MNIST), so panels are upscaled to at least
//! [`MIN_PANEL`] pixels; captions are set in the charts' embedded font ([`crate::plots`]),
//! so no font file is needed on the machine.
//! Deep blocks often attend almost uniformly (every value near 1), so each map is stretched
//! to its own min..max for display and the panel caption states the real range.

use image::{imageops, Rgb, RgbImage};
use plotters::prelude::*;

use crate::plots::{self, FONT};

use crate::cmd_run::backend::AttentionMap;

/// Smallest panel side in pixels.
pub const MIN_PANEL: u32 = 224;
/// Caption text size and line pitch in pixels; `CHAR_WIDTH` is the font's mean advance at
/// that size, for wrapping.
const CAPTION_SIZE: f64 = 16.0;
const LINE_HEIGHT: u32 = 20;
const CHAR_WIDTH: u32 = 9;
const PAD: u32 = 4;
const MAX_CAPTION_LINES: usize = 3;
const GAP: u32 = 8;
const BACKGROUND: Rgb<u8> = Rgb([24, 24, 24]);
const TEXT: Rgb<u8> = Rgb([240, 240, 240]);
/// Heatmap opacity over the frame.
const ALPHA: f32 = 0.5;

/// `preview` upscaled to a panel with `map` blended over it (or plain, without a map) and
/// `caption` underneath (word-wrapped; the map's value range is added as a last line).
pub fn panel(preview: &RgbImage, map: Option<&AttentionMap>, caption: &str) -> RgbImage {
    let scale = MIN_PANEL
        .div_ceil(preview.width().min(preview.height()).max(1))
        .max(1);
    let (w, h) = (preview.width() * scale, preview.height() * scale);
    // Nearest keeps the pixels of tiny inputs crisp; the heatmap is smooth on its own.
    let mut out = imageops::resize(preview, w, h, imageops::FilterType::Nearest);
    let mut lines = wrap(caption, chars_per_line(w));
    if let Some(map) = map {
        let (lo, hi) = range(&map.values);
        blend_heatmap(&mut out, &stretched(map, lo, hi));
        lines.truncate(MAX_CAPTION_LINES - 1);
        lines.push(format!("attn {lo:.2}-{hi:.2}"));
    }
    with_caption(&out, &lines)
}

fn range(values: &[f32]) -> (f32, f32) {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let lo = finite.clone().fold(f32::INFINITY, f32::min);
    let hi = finite.fold(f32::NEG_INFINITY, f32::max);
    if lo <= hi {
        (lo, hi)
    } else {
        (0.0, 0.0)
    }
}

/// `map` rescaled so `lo..hi` spans the whole colour ramp; a flat map stays as it is.
fn stretched(map: &AttentionMap, lo: f32, hi: f32) -> AttentionMap {
    let span = hi - lo;
    let values = if span > 1e-6 {
        map.values.iter().map(|v| (v - lo) / span).collect()
    } else {
        map.values.clone()
    };
    AttentionMap {
        h: map.h,
        w: map.w,
        values,
    }
}

fn chars_per_line(width: u32) -> usize {
    (width.saturating_sub(2 * PAD) / CHAR_WIDTH).max(1) as usize
}

/// Greedy word wrap; a word longer than a line is cut. At most [`MAX_CAPTION_LINES`].
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let word: String = word.chars().take(width).collect();
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(&word);
            }
            _ => lines.push(word),
        }
    }
    lines.truncate(MAX_CAPTION_LINES);
    lines
}

fn blend_heatmap(image: &mut RgbImage, map: &AttentionMap) {
    let (w, h) = image.dimensions();
    for (x, y, px) in image.enumerate_pixels_mut() {
        let a = sample_bilinear(
            map,
            (x as f32 + 0.5) / w as f32,
            (y as f32 + 0.5) / h as f32,
        );
        let heat = colormap(a);
        for (c, v) in px.0.iter_mut().enumerate() {
            let mixed = f32::from(*v) * (1.0 - ALPHA) + f32::from(heat[c]) * ALPHA;
            *v = mixed.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// The map at relative position `(u, v)` in 0..1, interpolated between cell centres.
fn sample_bilinear(map: &AttentionMap, u: f32, v: f32) -> f32 {
    let at = |x: usize, y: usize| map.values.get(y * map.w + x).copied().unwrap_or(0.0);
    let fx = (u * map.w as f32 - 0.5).clamp(0.0, (map.w.max(1) - 1) as f32);
    let fy = (v * map.h as f32 - 0.5).clamp(0.0, (map.h.max(1) - 1) as f32);
    let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
    let (x1, y1) = (
        (x0 + 1).min(map.w.saturating_sub(1)),
        (y0 + 1).min(map.h.saturating_sub(1)),
    );
    let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
    let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
    let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
    top * (1.0 - ty) + bottom * ty
}

/// Dark blue (ignored) through green and yellow to dark red (attended), for `a` in 0..1:
/// the "turbo" scheme, jet's perceptually smoother successor.
pub fn colormap(a: f32) -> [u8; 3] {
    // Turbo's polynomial form begins in near-black; starting at its blue keeps "ignored"
    // distinguishable from a dark image.
    const START: f64 = 0.1;
    let c = plots::scheme(colorous::TURBO, START + (1.0 - START) * f64::from(a));
    [c.0, c.1, c.2]
}

/// Every panel gets room for [`MAX_CAPTION_LINES`] so panels in a row line up.
fn with_caption(image: &RgbImage, lines: &[String]) -> RgbImage {
    let strip = LINE_HEIGHT * MAX_CAPTION_LINES as u32 + 2 * PAD;
    let mut out = RgbImage::from_pixel(image.width(), image.height() + strip, BACKGROUND);
    imageops::replace(&mut out, image, 0, 0);
    // Drawing text into a buffer of the right size cannot fail short of a font defect,
    // which the tests catch; the panel is still worth having without its caption then.
    if let Ok(caption) = caption_strip(image.width(), strip, lines) {
        imageops::replace(&mut out, &caption, 0, i64::from(image.height()));
    }
    out
}

fn caption_strip(width: u32, height: u32, lines: &[String]) -> anyhow::Result<RgbImage> {
    let [r, g, b] = BACKGROUND.0;
    let [tr, tg, tb] = TEXT.0;
    plots::render(width, height, |root| {
        plots::drawing(root.fill(&RGBColor(r, g, b)))?;
        let style = (FONT, CAPTION_SIZE)
            .into_font()
            .color(&RGBColor(tr, tg, tb));
        for (i, line) in lines.iter().enumerate() {
            let y = (PAD + i as u32 * LINE_HEIGHT) as i32;
            plots::drawing(root.draw(&Text::new(line.as_str(), (PAD as i32, y), style.clone())))?;
        }
        Ok(())
    })
}

/// Panels left to right with a gap, top-aligned.
pub fn side_by_side(panels: &[RgbImage]) -> RgbImage {
    let width = panels.iter().map(RgbImage::width).sum::<u32>()
        + GAP * panels.len().saturating_sub(1) as u32;
    let height = panels.iter().map(RgbImage::height).max().unwrap_or(1);
    let mut out = RgbImage::from_pixel(width.max(1), height, BACKGROUND);
    let mut x = 0i64;
    for p in panels {
        imageops::replace(&mut out, p, x, 0);
        x += i64::from(p.width() + GAP);
    }
    out
}

/// Panels stacked top to bottom, left-aligned (one row per backend in `cbam attention`).
pub fn stacked(rows: &[RgbImage]) -> RgbImage {
    let width = rows.iter().map(RgbImage::width).max().unwrap_or(1);
    let height =
        rows.iter().map(RgbImage::height).sum::<u32>() + GAP * rows.len().saturating_sub(1) as u32;
    let mut out = RgbImage::from_pixel(width, height.max(1), BACKGROUND);
    let mut y = 0i64;
    for r in rows {
        imageops::replace(&mut out, r, 0, y);
        y += i64::from(r.height() + GAP);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(values: Vec<f32>, h: usize, w: usize) -> AttentionMap {
        AttentionMap { h, w, values }
    }

    #[test]
    fn colormap_runs_from_blue_to_red() {
        let [r, _, b] = colormap(0.0);
        assert!(b > r, "{r} {b}");
        let [r, g, b] = colormap(1.0);
        assert!(r > 100 && r > 10 * b.max(g), "{r} {g} {b}");
    }

    #[test]
    fn small_inputs_are_upscaled_with_a_caption_strip() {
        let img = RgbImage::from_pixel(28, 28, Rgb([0, 0, 0]));
        let p = panel(&img, None, "Trouser 0.99");
        assert_eq!(p.width(), 28 * 8);
        assert!(p.height() > 28 * 8);
        // The caption's letters are drawn: a good number of bright pixels in the strip.
        let lit = (28 * 8..p.height())
            .flat_map(|y| (0..p.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| p.get_pixel(x, y).0.iter().all(|&c| c > 180))
            .count();
        assert!(lit > 60, "{lit} bright caption pixels");
    }

    #[test]
    fn the_heatmap_is_hot_where_attention_is_high() {
        let img = RgbImage::from_pixel(28, 28, Rgb([128, 128, 128]));
        let p = panel(&img, Some(&map(vec![0.0, 1.0], 1, 2)), "");
        let left = p.get_pixel(2, 100).0;
        let right = p.get_pixel(p.width() - 3, 100).0;
        assert!(
            left[2] > left[0] && right[0] > right[2],
            "{left:?} {right:?}"
        );
    }

    #[test]
    fn captions_wrap_at_words_and_maps_are_stretched() {
        assert_eq!(
            wrap("CBAM 2 7x7: Ankle boot 0.98", 12),
            vec!["CBAM 2 7x7:", "Ankle boot", "0.98"]
        );
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd"]);
        let m = stretched(&map(vec![0.9, 0.95, 1.0], 1, 3), 0.9, 1.0);
        assert!((m.values[1] - 0.5).abs() < 1e-5);
        assert_eq!(range(&[0.3, f32::NAN, 0.7]), (0.3, 0.7));
    }

    #[test]
    fn panels_are_laid_out_with_gaps() {
        let a = RgbImage::new(10, 20);
        let b = RgbImage::new(30, 5);
        assert_eq!(
            side_by_side(&[a.clone(), b.clone()]).dimensions(),
            (10 + GAP + 30, 20)
        );
        assert_eq!(stacked(&[a, b]).dimensions(), (30, 20 + GAP + 5));
    }
}
