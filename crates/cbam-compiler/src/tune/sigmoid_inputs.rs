//! Ranges of the values that feed a sigmoid table, narrowed to where the table can still
//! tell inputs apart.
//!
//! The core's sigmoid output is fixed at scale 1/256, zero point -128, so every input above
//! `ln(254.5 / 1.5)` reads 127 and every input below `-ln(511)` reads -128. A calibrated
//! logit range wider than that spends int8 levels on inputs the table maps to one entry;
//! narrowing it loses nothing (the requantizer saturates exactly where the table would) and
//! makes every step of the logit finer. The attention logits of a trained CBAM routinely
//! reach ±20, so this is a 2-4x finer logit at no cost.

use crate::calib::{Range, Ranges};
use crate::ir::{Graph, Op};

/// The logit above which the table's entry is its largest, 127: `round(256 y) >= 255`.
pub const SATURATES_HIGH: f32 = 5.134;
/// The logit below which the table's entry is its smallest, -128: `round(256 y) < 1`.
pub const SATURATES_LOW: f32 = -6.236;

/// Names of every value the lowering feeds to a sigmoid table: the CBAM attention logits
/// and the input of a standalone Sigmoid whose producer no other node reads.
pub fn sigmoid_input_names(graph: &Graph) -> Vec<String> {
    let mut names = Vec::new();
    for node in &graph.nodes {
        match &node.op {
            Op::Cbam(c) => names.extend(
                [&c.values.channel_logit, &c.values.spatial_logit]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .cloned(),
            ),
            Op::Sigmoid => {
                let Some(&input) = node.inputs.first() else {
                    continue;
                };
                let readers = graph
                    .nodes
                    .iter()
                    .filter(|n| n.inputs.contains(&input))
                    .count();
                if readers == 1 && input != graph.input && input != graph.output {
                    names.extend(graph.tensors.get(input).map(|t| t.name.clone()));
                }
            }
            _ => {}
        }
    }
    names
}

/// Narrows the ranges of `names` to the sigmoid table's unsaturated span; returns how many
/// ranges changed.
pub fn clip_to_sigmoid_span(ranges: &mut Ranges, names: &[String]) -> usize {
    let mut changed = 0;
    for name in names {
        if let Some(r) = ranges.get_mut(name) {
            let clipped = Range {
                min: r.min.max(SATURATES_LOW),
                max: r.max.min(SATURATES_HIGH),
            };
            if clipped != *r {
                *r = clipped;
                changed += 1;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::math::{sigmoid_lut, QParams};

    #[test]
    fn the_bounds_are_where_the_table_saturates() {
        // A fine input quantization spanning both bounds shows the table flat beyond them.
        let q = QParams {
            scale: 0.05,
            zero_point: 0,
        };
        let lut = sigmoid_lut(q);
        for (i, entry) in lut.iter().enumerate() {
            let x = q.scale * (i as f32 - 128.0);
            if x >= SATURATES_HIGH {
                assert_eq!(*entry, 127, "x = {x}");
            }
            if x <= SATURATES_LOW {
                assert_eq!(*entry, -128, "x = {x}");
            }
        }
        let just_inside = |x: f64| ((256.0 / (1.0 + (-x).exp())).round() - 128.0) as i32;
        assert!(just_inside(f64::from(SATURATES_HIGH) - 0.01) < 127);
        assert!(just_inside(f64::from(SATURATES_LOW) + 0.01) > -128);
    }

    #[test]
    fn only_named_ranges_wider_than_the_span_change() {
        let mut ranges = Ranges::new();
        ranges.insert(
            "z".into(),
            Range {
                min: -21.0,
                max: 22.0,
            },
        );
        ranges.insert(
            "s".into(),
            Range {
                min: -2.0,
                max: 0.5,
            },
        );
        ranges.insert(
            "other".into(),
            Range {
                min: -30.0,
                max: 30.0,
            },
        );
        let n = clip_to_sigmoid_span(&mut ranges, &["z".into(), "s".into(), "absent".into()]);
        assert_eq!(n, 1);
        assert_eq!(
            ranges["z"],
            Range {
                min: SATURATES_LOW,
                max: SATURATES_HIGH
            }
        );
        assert_eq!(
            ranges["s"],
            Range {
                min: -2.0,
                max: 0.5
            }
        );
        assert_eq!(ranges["other"].max, 30.0);
    }

    #[test]
    fn cbam_logits_are_sigmoid_inputs() {
        let (g, _) = crate::quant::testing::small_cbam_graph();
        let names = sigmoid_input_names(&g);
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
