//! Which channels to remove, from per-channel scores (higher = more important). Pure
//! functions over scores so each rule can be tested without a model.

use super::PruneError;

/// The rule choosing how many channels go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selection {
    /// Remove this fraction of each block's channels, or of all blocks' channels together
    /// (`global`), lowest scores first.
    Ratio { ratio: f64, global: bool },
    /// Remove every channel whose score is below the threshold.
    Threshold(f32),
    /// Remove lowest-scoring channels (globally) until the model's MACs are at most this.
    MacsBudget(u64),
    /// The same, with the budget a fraction of the unpruned model's MACs.
    MacsFraction(f64),
}

/// Channels a block always keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinChannels {
    /// A fraction of the block's channels, rounded up.
    Fraction(f64),
    Count(usize),
}

impl Default for MinChannels {
    fn default() -> Self {
        MinChannels::Fraction(0.25)
    }
}

impl MinChannels {
    /// The number of channels kept at least, always in `1..=channels`.
    pub fn floor(&self, channels: usize) -> usize {
        let wanted = match *self {
            MinChannels::Fraction(f) => (f * channels as f64).ceil() as usize,
            MinChannels::Count(n) => n,
        };
        wanted.clamp(1, channels.max(1))
    }
}

/// Checks the parameters users type, before any model work.
pub fn validate(selection: &Selection) -> Result<(), PruneError> {
    match *selection {
        Selection::Ratio { ratio, .. } if !(ratio > 0.0 && ratio < 1.0) => {
            Err(PruneError::BadRatio(ratio))
        }
        Selection::Threshold(t) if !t.is_finite() => Err(PruneError::BadThreshold(t)),
        Selection::MacsBudget(0) => Err(PruneError::BudgetUnreachable {
            budget: 0,
            best: None,
        }),
        Selection::MacsFraction(f) if !(f > 0.0 && f < 1.0) => {
            Err(PruneError::BadBudgetFraction(f))
        }
        _ => Ok(()),
    }
}

/// Channel indices of `scores`, lowest score first (ties by index, so results are stable).
pub fn ascending(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        let (sa, sb) = (
            scores.get(a).copied().unwrap_or(0.0),
            scores.get(b).copied().unwrap_or(0.0),
        );
        sa.total_cmp(&sb).then(a.cmp(&b))
    });
    order
}

fn sorted(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v
}

/// The `count` lowest-scoring channels of one block, limited by its floor.
pub fn lowest(scores: &[f32], count: usize, floor: usize) -> Vec<usize> {
    let max_remove = scores.len().saturating_sub(floor);
    sorted(
        ascending(scores)
            .into_iter()
            .take(count.min(max_remove))
            .collect(),
    )
}

/// Removed channels per block for a per-block ratio.
pub fn by_ratio(blocks: &[Vec<f32>], ratio: f64, min: MinChannels) -> Vec<Vec<usize>> {
    blocks
        .iter()
        .map(|s| {
            lowest(
                s,
                (ratio * s.len() as f64).round() as usize,
                min.floor(s.len()),
            )
        })
        .collect()
}

/// All channels of all blocks, least important first. Scores are divided by their block's
/// mean so that blocks on different scales (L1 norms of different layers) compete fairly.
pub fn global_order(blocks: &[Vec<f32>]) -> Vec<(usize, usize)> {
    let mut all: Vec<(f32, usize, usize)> = Vec::new();
    for (b, s) in blocks.iter().enumerate() {
        let mean = s.iter().sum::<f32>() / s.len().max(1) as f32;
        let norm = if mean.abs() > f32::EPSILON { mean } else { 1.0 };
        all.extend(s.iter().enumerate().map(|(c, v)| (v / norm, b, c)));
    }
    all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    all.into_iter().map(|(_, b, c)| (b, c)).collect()
}

/// The first `count` channels of the global order that the floors allow.
pub fn take_global(
    blocks: &[Vec<f32>],
    order: &[(usize, usize)],
    count: usize,
    min: MinChannels,
) -> Vec<Vec<usize>> {
    let mut removed: Vec<Vec<usize>> = vec![Vec::new(); blocks.len()];
    let mut taken = 0;
    for &(b, c) in order {
        if taken == count {
            break;
        }
        let (Some(list), Some(s)) = (removed.get_mut(b), blocks.get(b)) else {
            continue;
        };
        if list.len() + min.floor(s.len()) < s.len() {
            list.push(c);
            taken += 1;
        }
    }
    removed.into_iter().map(sorted).collect()
}

/// The most channels the floors let go, over all blocks.
pub fn max_removable(blocks: &[Vec<f32>], min: MinChannels) -> usize {
    blocks.iter().map(|s| s.len() - min.floor(s.len())).sum()
}

/// Removed channels per block for a global ratio.
pub fn by_global_ratio(blocks: &[Vec<f32>], ratio: f64, min: MinChannels) -> Vec<Vec<usize>> {
    let total: usize = blocks.iter().map(Vec::len).sum();
    let count = (ratio * total as f64).round() as usize;
    take_global(blocks, &global_order(blocks), count, min)
}

/// Removed channels per block for a threshold; refuses a threshold that empties a block.
pub fn by_threshold(
    blocks: &[Vec<f32>],
    names: &[String],
    t: f32,
    min: MinChannels,
) -> Result<Vec<Vec<usize>>, PruneError> {
    let mut out = Vec::with_capacity(blocks.len());
    for (b, s) in blocks.iter().enumerate() {
        let below = s.iter().filter(|v| **v < t).count();
        if below == s.len() {
            let best = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            return Err(PruneError::ThresholdRemovesAll {
                threshold: t,
                block: names.get(b).cloned().unwrap_or_default(),
                best,
            });
        }
        out.push(lowest(s, below, min.floor(s.len())));
    }
    Ok(out)
}

/// The complement of `removed` in `0..channels`.
pub fn kept_from_removed(channels: usize, removed: &[usize]) -> Vec<usize> {
    (0..channels).filter(|c| !removed.contains(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_block_ratio_removes_lowest_and_respects_floor() {
        let blocks = vec![
            vec![0.9, 0.1, 0.5, 0.2],
            vec![0.3, 0.2, 0.1, 0.4, 0.5, 0.6, 0.7, 0.8],
        ];
        let removed = by_ratio(&blocks, 0.5, MinChannels::default());
        assert_eq!(removed, vec![vec![1, 3], vec![0, 1, 2, 3]]);
        let capped = by_ratio(&blocks, 0.9, MinChannels::Count(3));
        assert_eq!(capped, vec![vec![1], vec![0, 1, 2, 3, 4]]);
    }

    #[test]
    fn threshold_that_empties_a_block_is_refused() {
        let blocks = vec![vec![0.2, 0.3], vec![0.9, 0.1]];
        let names = vec!["a".to_string(), "b".to_string()];
        let err = by_threshold(&blocks, &names, 0.5, MinChannels::default());
        assert!(
            matches!(err, Err(PruneError::ThresholdRemovesAll { ref block, .. }) if block == "a")
        );
        let ok = by_threshold(&blocks, &names, 0.25, MinChannels::Count(1));
        assert_eq!(ok.ok(), Some(vec![vec![0], vec![1]]));
    }

    #[test]
    fn global_ratio_normalises_block_scales() {
        // Block 1 has ten times larger scores; normalised, its channel 0 is the weakest.
        let blocks = vec![vec![1.0, 1.2, 0.8, 1.0], vec![5.0, 12.0, 11.0, 12.0]];
        let removed = by_global_ratio(&blocks, 0.25, MinChannels::Count(1));
        assert_eq!(removed, vec![vec![2], vec![0]]);
    }

    #[test]
    fn ratio_outside_open_unit_interval_is_rejected() {
        for ratio in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
            let sel = Selection::Ratio {
                ratio,
                global: false,
            };
            assert!(
                matches!(validate(&sel), Err(PruneError::BadRatio(_))),
                "{ratio}"
            );
        }
        assert!(validate(&Selection::Ratio {
            ratio: 0.3,
            global: true
        })
        .is_ok());
    }

    #[test]
    fn floor_is_at_least_one_and_at_most_the_block() {
        assert_eq!(MinChannels::Fraction(0.25).floor(16), 4);
        assert_eq!(MinChannels::Fraction(0.25).floor(2), 1);
        assert_eq!(MinChannels::Count(0).floor(8), 1);
        assert_eq!(MinChannels::Count(100).floor(8), 8);
    }
}
