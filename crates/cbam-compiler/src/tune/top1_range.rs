//! The classifier output's range, narrowed to where the top-1 logit lives.
//!
//! The core's answer is the argmax of the int8 output, first index on ties. A min-max
//! output range spends most of its 256 levels on the strongly negative logits of classes
//! that never win, so near-tied classes round to one level and the tie goes to the lower
//! index: on Fashion-MNIST that alone costs 0.2-0.3% top-1 agreement with float. Clipping
//! the output below the lowest winning logit seen in calibration (less a margin) halves
//! the step without touching any logit that can win.

use crate::calib::{Range, Ranges};
use crate::ir::{Activation, Graph, Op};

/// Room below the lowest calibrated top-1 logit, as a fraction of the span from it to
/// the output's maximum: unseen images may win with a somewhat lower logit.
const MARGIN: f32 = 0.1;

/// The lowest per-image maximum of the graph output over the images observed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LowestTop1(Option<f32>);

impl LowestTop1 {
    pub fn observe(&mut self, output: &[f32]) {
        let top = output
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(None, |m: Option<f32>, v| Some(m.map_or(v, |m| m.max(v))));
        if let Some(top) = top {
            self.0 = Some(self.0.map_or(top, |low| low.min(top)));
        }
    }

    pub fn value(&self) -> Option<f32> {
        self.0
    }
}

/// True when the graph's output is a class-score vector: several values straight out of
/// a conv or linear layer without activation (anything after it, e.g. a softmax, is not
/// a logit the argmax can be clipped for).
pub fn output_is_logits(graph: &Graph) -> bool {
    let Some(out) = graph.tensors.get(graph.output) else {
        return false;
    };
    let producer = graph.nodes.iter().find(|n| n.output == graph.output);
    let raw = match producer.map(|n| &n.op) {
        Some(Op::Linear(l)) => l.act == Activation::None,
        Some(Op::Conv(c)) => c.act == Activation::None,
        _ => false,
    };
    raw && out.shape.iter().product::<usize>() > 1
}

/// Raises the output range's minimum to below `lowest_top1`; returns the new range when
/// it changed.
pub fn narrow_output_range(
    ranges: &mut Ranges,
    graph: &Graph,
    lowest_top1: LowestTop1,
) -> Option<Range> {
    let low = lowest_top1.value()?;
    if !output_is_logits(graph) {
        return None;
    }
    let name = &graph.tensors.get(graph.output)?.name;
    let r = ranges.get_mut(name)?;
    let min = low - MARGIN * (r.max - low).max(0.0);
    if !min.is_finite() || min <= r.min || min >= r.max {
        return None;
    }
    r.min = min;
    Some(*r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::testing::synthetic_classifier;

    #[test]
    fn lowest_top1_is_the_smallest_per_image_maximum() {
        let mut low = LowestTop1::default();
        assert_eq!(low.value(), None);
        low.observe(&[-9.0, 3.0, 1.0]);
        low.observe(&[-2.0, 0.5, f32::NAN]);
        low.observe(&[4.0, -7.0]);
        assert_eq!(low.value(), Some(0.5));
    }

    #[test]
    fn only_the_minimum_of_a_logit_output_moves() {
        let (graph, _, _) = synthetic_classifier();
        assert!(output_is_logits(&graph));
        let name = graph.tensors[graph.output].name.clone();
        let mut ranges = Ranges::new();
        ranges.insert(
            name.clone(),
            Range {
                min: -12.0,
                max: 10.0,
            },
        );
        let mut low = LowestTop1::default();
        low.observe(&[-11.0, 0.0, -5.0]);
        let changed = narrow_output_range(&mut ranges, &graph, low).unwrap();
        assert_eq!(
            changed,
            Range {
                min: -1.0,
                max: 10.0
            }
        );
        assert_eq!(ranges[&name], changed);
        // Already narrower than the rule asks: left alone.
        assert_eq!(narrow_output_range(&mut ranges, &graph, low), None);
        assert_eq!(ranges[&name], changed);
    }
}
