//! Attention overlays: the model's view of a frame, its spatial attention as a heatmap over
//! it, and a caption, as PNG-ready RGB images.
//!
//! Model inputs are tiny (28x28 for Fashion-MNIST), so panels are upscaled to at least
//! [`MIN_PANEL`] pixels; captions use a built-in 5x7 bitmap font so no font file is needed.
//! Deep blocks often attend almost uniformly (every value near 1), so each map is stretched
//! to its own min..max for display and the panel caption states the real range.

use image::{imageops, Rgb, RgbImage};

use crate::cmd_run::backend::AttentionMap;

/// Smallest panel side in pixels.
pub const MIN_PANEL: u32 = 224;
const CAPTION_SCALE: u32 = 2;
const LINE_HEIGHT: u32 = (GLYPH_H + 3) * CAPTION_SCALE;
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
    ((width.saturating_sub(4 * CAPTION_SCALE)) / ((GLYPH_W + 1) * CAPTION_SCALE)).max(1) as usize
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

/// Blue (ignored) through green and yellow to red (attended), for `a` in 0..1.
pub fn colormap(a: f32) -> [u8; 3] {
    let a = a.clamp(0.0, 1.0);
    let channel = |centre: f32| {
        let v = 1.5 - (4.0 * a - centre).abs();
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    };
    // The classic "jet" ramp: each channel is a tent around its own centre.
    [channel(3.0), channel(2.0), channel(1.0)]
}

/// Every panel gets room for [`MAX_CAPTION_LINES`] so panels in a row line up.
fn with_caption(image: &RgbImage, lines: &[String]) -> RgbImage {
    let strip = LINE_HEIGHT * MAX_CAPTION_LINES as u32 + 2 * CAPTION_SCALE;
    let mut out = RgbImage::from_pixel(image.width(), image.height() + strip, BACKGROUND);
    imageops::replace(&mut out, image, 0, 0);
    for (i, line) in lines.iter().enumerate() {
        let y = image.height() + 2 * CAPTION_SCALE + i as u32 * LINE_HEIGHT;
        draw_text(&mut out, line, 2 * CAPTION_SCALE, y);
    }
    out
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

const GLYPH_W: u32 = 5;
const GLYPH_H: u32 = 7;

fn draw_text(image: &mut RgbImage, text: &str, x0: u32, y0: u32) {
    let mut x = x0;
    for ch in text.chars() {
        let rows = glyph(ch);
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (1 << (GLYPH_W - 1 - col)) == 0 {
                    continue;
                }
                for dy in 0..CAPTION_SCALE {
                    for dx in 0..CAPTION_SCALE {
                        let (px, py) = (
                            x + col * CAPTION_SCALE + dx,
                            y0 + row as u32 * CAPTION_SCALE + dy,
                        );
                        if px < image.width() && py < image.height() {
                            image.put_pixel(px, py, TEXT);
                        }
                    }
                }
            }
        }
        x += (GLYPH_W + 1) * CAPTION_SCALE;
    }
}

/// 5x7 glyphs, one byte per row, bit 4 = leftmost column. Lower case is drawn as upper
/// case; anything without a glyph is a small box so it is visibly not a space.
fn glyph(ch: char) -> [u8; 7] {
    match ch.to_ascii_uppercase() {
        ' ' => [0; 7],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '\'' => [0x04, 0x04, 0x08, 0, 0, 0, 0],
        _ => [0, 0x1F, 0x11, 0x11, 0x11, 0x1F, 0],
    }
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
        assert!(b > 100 && r == 0);
        let [r, _, b] = colormap(1.0);
        assert!(r > 100 && b == 0);
    }

    #[test]
    fn small_inputs_are_upscaled_with_a_caption_strip() {
        let img = RgbImage::from_pixel(28, 28, Rgb([0, 0, 0]));
        let p = panel(&img, None, "Trouser 0.99");
        assert_eq!(p.width(), 28 * 8);
        assert!(p.height() > 28 * 8);
        // Some caption pixels are lit.
        let lit = (28 * 8..p.height()).any(|y| (0..p.width()).any(|x| *p.get_pixel(x, y) == TEXT));
        assert!(lit);
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
