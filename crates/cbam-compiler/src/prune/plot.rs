//! PNG bar chart of one block's channel attention: channels sorted by mean attention
//! (lowest left), bars in red for channels the selection removes and blue for kept ones,
//! the 10th percentile as a dark tick inside each bar, a vertical cut line between removed
//! and kept, light grid lines at attention 0.25 / 0.5 / 0.75, and the threshold (if any) as
//! a horizontal orange line. The y axis spans attention 0..1 (a sigmoid output). No text is
//! drawn: the table printed beside the charts carries the numbers.

use image::{Rgb, RgbImage};

const HEIGHT: u32 = 240;
const MARGIN: u32 = 10;
const KEPT: Rgb<u8> = Rgb([52, 101, 164]);
const REMOVED: Rgb<u8> = Rgb([204, 0, 0]);
const P10: Rgb<u8> = Rgb([20, 20, 20]);
const GRID: Rgb<u8> = Rgb([220, 220, 220]);
const CUT: Rgb<u8> = Rgb([0, 0, 0]);
const THRESHOLD: Rgb<u8> = Rgb([245, 121, 0]);

/// What to draw for one block.
pub struct ChartInput<'a> {
    pub mean: &'a [f32],
    pub p10: &'a [f32],
    pub removed: &'a [usize],
    pub threshold: Option<f32>,
}

fn fill(img: &mut RgbImage, x0: u32, x1: u32, y0: u32, y1: u32, color: Rgb<u8>) {
    for x in x0..x1.min(img.width()) {
        for y in y0..y1.min(img.height()) {
            img.put_pixel(x, y, color);
        }
    }
}

/// Pixel row of attention value `v` (clamped to 0..1).
fn row(v: f32) -> u32 {
    let plot = (HEIGHT - 2 * MARGIN) as f32;
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    HEIGHT - MARGIN - (v * plot).round() as u32
}

/// Draws the chart; encode it with [`encode_png`].
pub fn attention_chart(input: &ChartInput) -> RgbImage {
    let n = input.mean.len().max(1) as u32;
    let bar = (600 / n).clamp(2, 24);
    let width = 2 * MARGIN + n * bar;
    let mut img = RgbImage::from_pixel(width, HEIGHT, Rgb([255, 255, 255]));
    for level in [0.25f32, 0.5, 0.75, 1.0] {
        let y = row(level);
        fill(&mut img, MARGIN, width - MARGIN, y, y + 1, GRID);
    }
    let mut order: Vec<usize> = (0..input.mean.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (
            input.mean.get(a).copied().unwrap_or(0.0),
            input.mean.get(b).copied().unwrap_or(0.0),
        );
        x.total_cmp(&y).then(a.cmp(&b))
    });
    let mut cut_at = None;
    for (slot, &c) in order.iter().enumerate() {
        let x0 = MARGIN + slot as u32 * bar;
        let gap = u32::from(bar > 3);
        let removed = input.removed.contains(&c);
        let mean = input.mean.get(c).copied().unwrap_or(0.0);
        fill(
            &mut img,
            x0,
            x0 + bar - gap,
            row(mean),
            HEIGHT - MARGIN,
            if removed { REMOVED } else { KEPT },
        );
        let p = row(input.p10.get(c).copied().unwrap_or(0.0));
        fill(
            &mut img,
            x0,
            x0 + bar - gap,
            p.saturating_sub(1),
            p + 1,
            P10,
        );
        if !removed && cut_at.is_none() && !input.removed.is_empty() {
            cut_at = Some(x0);
        }
    }
    if let Some(x) = cut_at {
        fill(
            &mut img,
            x.saturating_sub(1),
            x + 1,
            MARGIN / 2,
            HEIGHT - MARGIN / 2,
            CUT,
        );
    }
    if let Some(t) = input.threshold {
        let y = row(t);
        fill(&mut img, MARGIN, width - MARGIN, y, y + 2, THRESHOLD);
    }
    fill(
        &mut img,
        MARGIN,
        width - MARGIN,
        HEIGHT - MARGIN,
        HEIGHT - MARGIN + 1,
        CUT,
    );
    img
}

/// PNG bytes of a chart.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)?;
    Ok(bytes.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_channels_are_red_and_on_the_left() {
        let mean = [0.9, 0.1, 0.5, 0.2];
        let p10 = [0.8, 0.05, 0.4, 0.1];
        let img = attention_chart(&ChartInput {
            mean: &mean,
            p10: &p10,
            removed: &[1, 3],
            threshold: None,
        });
        let bar = (600 / 4u32).clamp(2, 24);
        let bottom = HEIGHT - MARGIN - 1;
        assert_eq!(*img.get_pixel(MARGIN + 1, bottom), REMOVED);
        assert_eq!(*img.get_pixel(MARGIN + bar + 1, bottom), REMOVED);
        assert_eq!(*img.get_pixel(MARGIN + 2 * bar + 1, bottom), KEPT);
        assert_eq!(*img.get_pixel(MARGIN + 2 * bar, HEIGHT / 2), CUT);
        let png = encode_png(&img).map(|b| b.starts_with(&[0x89, b'P', b'N', b'G']));
        assert_eq!(png.ok(), Some(true));
    }
}
