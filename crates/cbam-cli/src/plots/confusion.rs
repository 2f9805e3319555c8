//! The confusion matrix as a heatmap: one panel per model (side by side when a reference
//! is compared), each cell's count written in it and coloured by its share of the true
//! class (so a class with few samples is as readable as a large one), and one colour bar.

use anyhow::Result;
use image::RgbImage;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use super::{drawing, render, scheme, FONT};
use crate::cmd_eval::metrics::Confusion;

const GRADIENT: colorous::Gradient = colorous::BLUES;
const LEGEND_WIDTH: u32 = 120;
const TITLE_HEIGHT: u32 = 70;
/// Room under a matrix for its class numbers and the axis title.
const X_LABELS: u32 = 64;

/// One model's matrix and its title.
pub struct Panel<'a> {
    pub title: String,
    pub confusion: &'a Confusion,
}

/// The panels left to right with a shared colour bar; `names[c]` labels class `c`.
pub fn chart(panels: &[Panel], names: &[String]) -> Result<RgbImage> {
    let n = panels.first().map_or(0, |p| p.confusion.classes()).max(1);
    let cell = (480 / n as u32).clamp(4, 64);
    let longest = names.iter().map(|s| s.chars().count()).max().unwrap_or(2) as u32;
    let labels = if cell >= 12 {
        60 + 8 * longest.min(24)
    } else {
        30
    };
    let panel_w = labels + n as u32 * cell + 50;
    let panel_h = TITLE_HEIGHT + n as u32 * cell + X_LABELS + 30;
    let width = panel_w * panels.len().max(1) as u32 + LEGEND_WIDTH;
    render(width, panel_h, |root| {
        let (matrices, legend) = root.split_horizontally(width - LEGEND_WIDTH);
        let areas = matrices.split_evenly((1, panels.len().max(1)));
        for (panel, area) in panels.iter().zip(&areas) {
            draw_panel(area, panel, names, labels, cell)?;
        }
        draw_legend(&legend, X_LABELS)
    })
}

fn name(names: &[String], c: usize) -> String {
    names.get(c).cloned().unwrap_or_else(|| c.to_string())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    names: &[String],
    labels: u32,
    cell: u32,
) -> Result<()> {
    let confusion = panel.confusion;
    let n = confusion.classes();
    let top = |v: &SegmentValue<i32>| match v {
        // Row 0 is drawn at the top: the chart's y runs upwards.
        SegmentValue::CenterOf(y) if *y >= 0 => {
            let c = n.saturating_sub(1 + *y as usize);
            format!("{c} {}", name(names, c))
        }
        _ => String::new(),
    };
    let across = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(x) if *x >= 0 => x.to_string(),
        _ => String::new(),
    };
    let mut chart = drawing(
        ChartBuilder::on(area)
            .caption(&panel.title, (FONT, 20).into_font().style(FontStyle::Bold))
            .margin(12)
            .x_label_area_size(X_LABELS)
            .y_label_area_size(labels)
            // A segmented 0..k has k + 1 cells.
            .build_cartesian_2d(
                (0..n as i32 - 1).into_segmented(),
                (0..n as i32 - 1).into_segmented(),
            ),
    )?;
    let tick_labels = if cell >= 12 { n } else { 0 };
    drawing(
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(tick_labels)
            .y_labels(tick_labels)
            .x_label_formatter(&across)
            .y_label_formatter(&top)
            .x_label_style((FONT, 14))
            .y_label_style((FONT, 14))
            .x_desc("predicted class (numbered as the rows)")
            .y_desc("true class")
            .axis_desc_style((FONT, 16))
            .draw(),
    )?;
    let cells = (0..n).flat_map(|t| (0..n).map(move |p| (t, p)));
    drawing(chart.draw_series(cells.clone().map(|(t, p)| {
        let (x, y) = (p as i32, (n - 1 - t) as i32);
        Rectangle::new(
            [
                (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
            ],
            scheme(GRADIENT, share(confusion, t, p)).filled(),
        )
    })))?;
    if cell >= 24 {
        let size = (cell as f64 * 0.32).clamp(10.0, 18.0);
        drawing(chart.draw_series(cells.map(|(t, p)| {
            let (x, y) = (p as i32, (n - 1 - t) as i32);
            let ink = if share(confusion, t, p) > 0.55 {
                WHITE
            } else {
                BLACK
            };
            Text::new(
                confusion.get(t, p).to_string(),
                (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                (FONT, size)
                    .into_font()
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            )
        })))?;
    }
    Ok(())
}

/// The cell's count over its true class's samples, 0 for a class without samples.
fn share(confusion: &Confusion, truth: usize, predicted: usize) -> f64 {
    let support: u64 = confusion.rows()[truth].iter().sum();
    if support == 0 {
        0.0
    } else {
        confusion.get(truth, predicted) as f64 / support as f64
    }
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    bottom: u32,
) -> Result<()> {
    let mut bar = drawing(
        ChartBuilder::on(area)
            .margin_top(TITLE_HEIGHT as i32 - 10)
            .margin_bottom(bottom as i32 + 12)
            .margin_right(48)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..1.0, 0.0..100.0),
    )?;
    drawing(
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(5)
            .y_label_formatter(&|v| format!("{v:.0}%"))
            .y_label_style((FONT, 13))
            .y_desc("share of the true class")
            .axis_desc_style((FONT, 14))
            .draw(),
    )?;
    drawing(bar.draw_series((0..100).map(|i| {
        let v = f64::from(i);
        Rectangle::new(
            [(0.0, v), (1.0, v + 1.0)],
            scheme(GRADIENT, v / 100.0).filled(),
        )
    })))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_shaded_by_their_share_of_the_true_class() {
        let confusion = Confusion::count(2, &[0, 0, 0, 1], &[0, 0, 1, 1]);
        assert!((share(&confusion, 0, 0) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(share(&confusion, 1, 1), 1.0);
        let empty = Confusion::count(2, &[], &[]);
        assert_eq!(share(&empty, 0, 1), 0.0);
    }

    #[test]
    fn side_by_side_panels_share_one_legend() {
        let confusion = Confusion::count(3, &[0, 1, 2, 2], &[0, 1, 2, 1]);
        let names: Vec<String> = ["cat", "dog", "bird"].map(String::from).to_vec();
        let panel = |title: &str| Panel {
            title: title.into(),
            confusion: &confusion,
        };
        let one = chart(&[panel("a")], &names).expect("draws");
        let two = chart(&[panel("a"), panel("b")], &names).expect("draws");
        assert_eq!(two.width() - LEGEND_WIDTH, 2 * (one.width() - LEGEND_WIDTH));
        assert_eq!(one.height(), two.height());
        // The fully-confused cell (bird predicted as dog: 1 of 2) and a right one (1 of 1)
        // differ in colour, and text was drawn (some pixels are near black).
        let dark = one.pixels().filter(|p| p.0.iter().all(|&c| c < 60)).count();
        assert!(dark > 200, "{dark} dark pixels: no text or axes drawn");
    }
}
