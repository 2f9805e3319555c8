//! One block's channel scores as a bar chart (`cbam prune --plots`): channels sorted by
//! score (lowest left), bars red for the channels the selection removes and blue for kept
//! ones, the 10th percentile of each channel's attention as a dark tick, the threshold (if
//! any) as an orange line, with a title, labelled axes and a legend.

use anyhow::Result;
use image::RgbImage;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::{drawing, render, FONT};

const KEPT: RGBColor = RGBColor(52, 101, 164);
const REMOVED: RGBColor = RGBColor(204, 0, 0);
const P10: RGBColor = RGBColor(20, 20, 20);
const THRESHOLD: RGBColor = RGBColor(245, 121, 0);
const HEIGHT: u32 = 440;

/// What to draw for one block.
pub struct ChartInput<'a> {
    /// The block, e.g. `/layer1/cbam` (the chart's title).
    pub block: &'a str,
    /// Per-channel score (mean attention, or the filters' L1 norm).
    pub scores: &'a [f32],
    /// Per-channel 10th percentile of the attention; `None` for scores without one.
    pub p10: Option<&'a [f32]>,
    pub removed: &'a [usize],
    pub threshold: Option<f32>,
    /// The scores are attention values (0..1); else filter L1 norms.
    pub attention: bool,
}

/// The channels in drawing order: lowest score first, ties by index.
pub fn order(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    order
}

/// Draws the chart; encode it with [`super::encode_png`].
pub fn chart(input: &ChartInput) -> Result<RgbImage> {
    let n = input.scores.len();
    let bar = (720 / n.max(1) as u32).clamp(2, 28);
    let width = (n as u32 * bar + 140).max(680);
    let top = if input.attention {
        1.0
    } else {
        let max = input
            .scores
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0, f32::max);
        f64::from(max).max(1e-6) * 1.08
    };
    let value = |v: f32| {
        if v.is_finite() {
            f64::from(v).clamp(0.0, top)
        } else {
            0.0
        }
    };
    let order = order(input.scores);
    render(width, HEIGHT, |root| {
        let title = format!(
            "{}: {} of {n} channels removed",
            input.block,
            input.removed.len()
        );
        let mut chart = drawing(
            ChartBuilder::on(root)
                .caption(title, (FONT, 20).into_font().style(FontStyle::Bold))
                .margin(14)
                .x_label_area_size(44)
                .y_label_area_size(64)
                .build_cartesian_2d(0.0..n.max(1) as f64, 0.0..top),
        )?;
        let y_desc = if input.attention {
            "mean channel attention (sigmoid, 0 to 1)"
        } else {
            "L1 norm of the channel's filter"
        };
        let x_desc = if input.attention {
            "channels, sorted by mean attention (lowest left)"
        } else {
            "channels, sorted by filter L1 norm (lowest left)"
        };
        drawing(
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n.min(12))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_labels(5)
                .y_label_formatter(&|y| format!("{y:.2}"))
                .x_desc(x_desc)
                .y_desc(y_desc)
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 15))
                .light_line_style(WHITE)
                .bold_line_style(RGBColor(225, 225, 225))
                .draw(),
        )?;
        let bars = |removed: bool| {
            order
                .iter()
                .enumerate()
                .filter(move |&(_, c)| input.removed.contains(c) == removed)
                .map(move |(slot, &c)| {
                    let x = slot as f64;
                    let colour = if removed { REMOVED } else { KEPT };
                    Rectangle::new(
                        [(x + 0.1, 0.0), (x + 0.9, value(input.scores[c]))],
                        colour.filled(),
                    )
                })
        };
        let swatch = |colour: RGBColor| {
            move |(x, y): (i32, i32)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled())
        };
        drawing(chart.draw_series(bars(false)))?
            .label("kept channel")
            .legend(swatch(KEPT));
        if !input.removed.is_empty() {
            drawing(chart.draw_series(bars(true)))?
                .label("removed channel")
                .legend(swatch(REMOVED));
        }
        if let Some(p10) = input.p10 {
            let ticks = order.iter().enumerate().map(|(slot, &c)| {
                let (x, y) = (slot as f64, value(p10.get(c).copied().unwrap_or(0.0)));
                PathElement::new(vec![(x + 0.1, y), (x + 0.9, y)], P10.stroke_width(2))
            });
            drawing(chart.draw_series(ticks))?
                .label("10th percentile over the images")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], P10.stroke_width(2)));
        }
        if let Some(t) = input.threshold {
            let t = f64::from(t);
            drawing(chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, t), (n as f64, t)],
                THRESHOLD.stroke_width(2),
            ))))?
            .label(format!("threshold {t:.2}"))
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], THRESHOLD.stroke_width(2))
            });
        }
        drawing(
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(160, 160, 160))
                .label_font((FONT, 14))
                .draw(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_ordered_lowest_first_and_ties_by_index() {
        assert_eq!(order(&[0.9, 0.1, 0.5, 0.1]), vec![1, 3, 2, 0]);
    }

    #[test]
    fn removed_channels_are_red_on_the_left_and_kept_ones_blue() {
        let scores = [0.9, 0.1, 0.5, 0.2];
        let p10 = [0.8, 0.05, 0.4, 0.1];
        let img = chart(&ChartInput {
            block: "/cbam1",
            scores: &scores,
            p10: Some(&p10),
            removed: &[1, 3],
            threshold: Some(0.3),
            attention: true,
        })
        .expect("draws");
        let count = |c: RGBColor| img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
        assert!(count(REMOVED) > 500 && count(KEPT) > 500 && count(THRESHOLD) > 100);
        // The leftmost red pixel lies left of the leftmost blue one (bars only: the legend
        // swatches sit in the upper-left corner, so look at the bottom row of the plot).
        let row = (0..img.height())
            .rev()
            .find(|&y| (0..img.width()).any(|x| img.get_pixel(x, y).0 == [KEPT.0, KEPT.1, KEPT.2]))
            .expect("a blue bar");
        let first =
            |c: RGBColor| (0..img.width()).find(|&x| img.get_pixel(x, row).0 == [c.0, c.1, c.2]);
        assert!(
            matches!((first(REMOVED), first(KEPT)), (Some(r), Some(k)) if r < k),
            "{:?} {:?}",
            first(REMOVED),
            first(KEPT)
        );
        let png = crate::plots::encode_png(&img).expect("encodes");
        assert!(png.starts_with(&[0x89, b'P', b'N', b'G']));
    }

    #[test]
    fn l1_scores_get_their_own_scale() {
        let img = chart(&ChartInput {
            block: "conv1",
            scores: &[3.0, 12.0],
            p10: None,
            removed: &[],
            threshold: None,
            attention: false,
        })
        .expect("draws");
        assert!(img.pixels().any(|p| p.0 == [KEPT.0, KEPT.1, KEPT.2]));
    }
}
