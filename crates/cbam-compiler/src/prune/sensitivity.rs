//! Measured sensitivity, for allocating a MAC budget across groups: how much the model's
//! output moves when one group alone loses its lowest-ranked channels, per MAC saved.
//!
//! Scores rank channels *within* a group, but they do not say whether a channel of layer 1
//! matters more than one of layer 3, nor that one costs 113 k MACs and the other 42 k. So
//! each group is cut alone at a few depths (a quarter, half and three quarters of what its
//! floor allows, refitted like the final cut), and the damage — mean KL divergence of the
//! pruned model's class probabilities from the original's on calibration images — is
//! interpolated between those points. A greedy pass then always removes the channel whose
//! marginal damage per MAC saved is smallest.

use tract_onnx::pb::ModelProto;

use super::activations::batch_of_one;
use super::PruneError;
use crate::float_run::FloatModel;

/// Measured damage of one group cut alone.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SensitivityCurve {
    pub group: String,
    /// `(channels removed, damage)`, increasing in channels, starting after `(0, 0)`.
    pub points: Vec<(usize, f64)>,
    /// MACs one removed channel saves.
    pub macs_per_channel: f64,
}

impl SensitivityCurve {
    /// Damage at `n` removed channels, linear between measured points (and beyond the
    /// last one, along the last segment).
    pub fn damage(&self, n: usize) -> f64 {
        let mut prev = (0usize, 0f64);
        for &(k, d) in &self.points {
            if n <= k {
                let span = (k - prev.0).max(1) as f64;
                return prev.1 + (d - prev.1) * (n - prev.0) as f64 / span;
            }
            prev = (k, d);
        }
        let before_last = self
            .points
            .len()
            .checked_sub(2)
            .and_then(|i| self.points.get(i))
            .copied()
            .unwrap_or((0, 0.0));
        let slope = (prev.1 - before_last.1) / (prev.0 - before_last.0).max(1) as f64;
        prev.1 + slope * (n - prev.0) as f64
    }
}

/// Depths a curve is measured at, for a group that may lose at most `max` channels.
pub fn probe_depths(max: usize) -> Vec<usize> {
    let mut depths: Vec<usize> = [1, 2, 3]
        .iter()
        .map(|q| (max * q).div_ceil(4))
        .filter(|&n| n > 0)
        .collect();
    depths.dedup();
    depths
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|v| f64::from(v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum.max(f64::MIN_POSITIVE)).collect()
}

/// The original model's class probabilities on the images damage is measured on.
pub struct Reference {
    probs: Vec<Vec<f64>>,
    samples: Vec<Vec<f32>>,
    input_chw: Vec<usize>,
}

impl Reference {
    pub fn new(
        original: &ModelProto,
        input_chw: &[usize],
        samples: &[Vec<f32>],
    ) -> Result<Self, PruneError> {
        let runner = FloatModel::with_input_shape(original, None, batch_of_one(input_chw))?;
        let probs = samples
            .iter()
            .map(|x| Ok(softmax(&runner.run(x)?)))
            .collect::<Result<_, PruneError>>()?;
        Ok(Reference {
            probs,
            samples: samples.to_vec(),
            input_chw: input_chw.to_vec(),
        })
    }

    /// Mean `KL(original || candidate)` over the reference images.
    pub fn damage(&self, candidate: &ModelProto) -> Result<f64, PruneError> {
        let runner = FloatModel::with_input_shape(candidate, None, batch_of_one(&self.input_chw))?;
        let mut total = 0.0;
        for (x, p) in self.samples.iter().zip(&self.probs) {
            let q = softmax(&runner.run(x)?);
            total += p
                .iter()
                .zip(&q)
                .filter(|(pi, _)| **pi > 0.0)
                .map(|(pi, qi)| pi * (pi / qi.max(1e-12)).ln())
                .sum::<f64>();
        }
        Ok(total / self.samples.len().max(1) as f64)
    }
}

/// Global removal order `(group, channel)`: each group's channels in `ascending` order
/// (lowest score first), interleaved so that the next channel taken is always the one
/// with the least marginal damage per MAC saved.
pub fn allocation_order(
    curves: &[SensitivityCurve],
    ascending: &[Vec<usize>],
) -> Vec<(usize, usize)> {
    let mut taken = vec![0usize; curves.len()];
    let total: usize = ascending.iter().map(Vec::len).sum();
    let mut order = Vec::with_capacity(total);
    while order.len() < total {
        let next = curves
            .iter()
            .enumerate()
            .filter(|(g, _)| ascending.get(*g).is_some_and(|a| taken[*g] < a.len()))
            .map(|(g, c)| {
                let n = taken[g];
                let marginal = (c.damage(n + 1) - c.damage(n)).max(0.0);
                (g, marginal / c.macs_per_channel.max(1.0))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let Some((g, _)) = next else { break };
        if let Some(&c) = ascending.get(g).and_then(|a| a.get(taken[g])) {
            order.push((g, c));
        }
        taken[g] += 1;
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(points: Vec<(usize, f64)>, macs: f64) -> SensitivityCurve {
        SensitivityCurve {
            group: String::new(),
            points,
            macs_per_channel: macs,
        }
    }

    #[test]
    fn damage_interpolates_and_extends_the_last_segment() {
        let c = curve(vec![(2, 1.0), (4, 3.0)], 1.0);
        assert_eq!(c.damage(0), 0.0);
        assert_eq!(c.damage(1), 0.5);
        assert_eq!(c.damage(3), 2.0);
        assert_eq!(c.damage(6), 5.0);
    }

    #[test]
    fn allocation_prefers_cheap_damage_per_mac() {
        // Group 0 hurts twice as much per channel but saves four times the MACs.
        let curves = vec![curve(vec![(4, 2.0)], 4.0), curve(vec![(4, 1.0)], 1.0)];
        let ascending = vec![vec![3, 1, 0, 2], vec![0, 1, 2, 3]];
        let order = allocation_order(&curves, &ascending);
        assert_eq!(&order[..4], &[(0, 3), (0, 1), (0, 0), (0, 2)]);
        assert_eq!(order.len(), 8);
    }

    #[test]
    fn probe_depths_are_distinct_and_within_the_limit() {
        assert_eq!(probe_depths(24), vec![6, 12, 18]);
        assert_eq!(probe_depths(2), vec![1, 2]);
        assert!(probe_depths(0).is_empty());
    }
}
