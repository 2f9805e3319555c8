//! Choosing an execution schedule: the three arena plans a report compares and the search
//! for the stages that run band by band.
//!
//! - layer by layer: every op on whole tensors, nothing in place (what TensorFlow Lite
//!   Micro's greedy planner does with the same graph);
//! - in place: the same with the fused CBAM op and ADD writing over an input;
//! - patch: in place, plus stages of ops around the peak that run band by band, keeping
//!   the rows where bands overlap (a CBAM op in a stage costs its input ops one or two more
//!   passes: the multiply-accumulates the plan adds).
//!
//! The search is greedy: it tiles the op where the most bytes are alive by the stage (ops
//! around it, band height, CBAM look-ahead or not) that gives the smallest arena, and
//! repeats while the arena shrinks (or until it fits a budget, taking then the stage that
//! fits with the fewest extra multiply-accumulates).

use crate::plan::{plan_with, Plan, PlanError, Stage};
use crate::quant::QModel;

/// Band heights the search tries.
const BAND_ROWS: [usize; 9] = [1, 2, 3, 4, 6, 8, 12, 16, 24];
/// Ops on either side of the largest layer a stage may reach.
const REACH: usize = 24;
/// Rounds of the search (each adds or widens one stage).
const ROUNDS: usize = 8;
/// Without a budget, stages may add at most this fraction of the model's MACs.
pub const MAX_EXTRA_MACS: f64 = 0.15;

/// Which schedule a blob is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScheduleChoice {
    /// Whole tensors, CBAM in place (the default).
    #[default]
    InPlace,
    /// Whole tensors, nothing in place.
    LayerByLayer,
    /// The smallest patch plan within [`MAX_EXTRA_MACS`].
    Patch,
    /// The cheapest of the three that fits this many arena bytes.
    Budget(usize),
}

/// The three plans' arenas, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArenaComparison {
    pub layer_by_layer: u32,
    pub in_place: u32,
    pub patch: u32,
    /// Multiply-accumulates the patch plan recomputes.
    pub patch_extra_macs: u64,
    /// The patch plan's stages.
    pub patch_stages: Vec<StageSummary>,
    /// The schedule the blob was written with: `layer-by-layer`, `in-place` or `patch`.
    pub chosen: String,
}

/// A stage of the patch plan, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageSummary {
    pub first_op: usize,
    pub end_op: usize,
    pub band_rows: usize,
    /// The CBAM op pools its spatial maps in the final pass (no spatial-map pass).
    pub lookahead: bool,
}

impl std::fmt::Display for StageSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ops {}..{} by {}{}",
            self.first_op,
            self.end_op,
            self.band_rows,
            if self.lookahead { " (look-ahead)" } else { "" }
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(
        "no schedule fits an arena of {budget} bytes: the smallest (patch-based, {best} bytes, \
         {extra_macs} extra MACs) misses it by {} bytes; raise the budget or make the \
         high-resolution layers narrower",
        best - budget
    )]
    OverBudget {
        budget: usize,
        best: usize,
        extra_macs: u64,
    },
}

/// The plan for `choice` and the three-way comparison.
pub fn choose(
    model: &QModel,
    choice: ScheduleChoice,
) -> Result<(Plan, ArenaComparison), ScheduleError> {
    let layer = plan_with(model, false, &[])?;
    let in_place = plan_with(model, true, &[])?;
    let patch = search(model, None, in_place.clone())?;
    let comparison = ArenaComparison {
        layer_by_layer: layer.arena_size,
        in_place: in_place.arena_size,
        patch: patch.arena_size,
        patch_extra_macs: patch.extra_macs,
        patch_stages: patch
            .stages
            .iter()
            .map(|s| StageSummary {
                first_op: s.first,
                end_op: s.end,
                band_rows: s.band_rows,
                lookahead: s.lookahead,
            })
            .collect(),
        chosen: String::new(),
    };
    let plan = match choice {
        ScheduleChoice::InPlace => in_place,
        ScheduleChoice::LayerByLayer => layer,
        ScheduleChoice::Patch => patch.clone(),
        ScheduleChoice::Budget(budget) => {
            let fits = |p: &Plan| p.arena_size as usize <= budget;
            if fits(&in_place) {
                in_place
            } else {
                // The greedy search can stall where it started: search from whole tensors
                // (cheapest stages first) and on from the patch plan (smallest arena).
                let from_whole = search(model, Some(budget), in_place)?;
                let from_patch = search(model, Some(budget), patch)?;
                let candidates = [from_whole, from_patch];
                let cheapest = candidates
                    .iter()
                    .filter(|p| fits(p))
                    .min_by_key(|p| (p.extra_macs, p.arena_size));
                match cheapest {
                    Some(plan) => plan.clone(),
                    None => {
                        let best = candidates
                            .iter()
                            .min_by_key(|p| (p.arena_size, p.extra_macs))
                            .unwrap_or(&candidates[0]);
                        return Err(ScheduleError::OverBudget {
                            budget,
                            best: best.arena_size as usize,
                            extra_macs: best.extra_macs,
                        });
                    }
                }
            }
        }
    };
    let chosen = match choice {
        ScheduleChoice::LayerByLayer => "layer-by-layer",
        _ if !plan.stages.is_empty() => "patch",
        _ => "in-place",
    };
    Ok((
        plan,
        ArenaComparison {
            chosen: chosen.into(),
            ..comparison
        },
    ))
}

/// The greedy search from `start` (the in-place plan): each round tries every stage around
/// the op where the most bytes are alive (replacing the stages it overlaps) and keeps the
/// best plan, while the arena shrinks.
fn search(model: &QModel, budget: Option<usize>, start: Plan) -> Result<Plan, PlanError> {
    let max_extra = (model.macs as f64 * MAX_EXTRA_MACS) as u64;
    let mut best = start;
    for _ in 0..ROUNDS {
        if budget.is_some_and(|b| best.arena_size as usize <= b) {
            break;
        }
        let peak = best.peak_op;
        let mut round: Option<Plan> = None;
        for first in peak.saturating_sub(REACH)..=peak {
            for end in peak + 1..=(peak + 1 + REACH).min(model.ops.len()) {
                for (band_rows, lookahead) in BAND_ROWS
                    .into_iter()
                    .flat_map(|rows| [(rows, false), (rows, true)])
                {
                    let stage = Stage {
                        first,
                        end,
                        band_rows,
                        lookahead,
                    };
                    let mut stages: Vec<Stage> = best
                        .stages
                        .iter()
                        .copied()
                        .filter(|s| s.end <= first || s.first >= end)
                        .collect();
                    stages.push(stage);
                    stages.sort_by_key(|s| s.first);
                    let Ok(plan) = plan_with(model, true, &stages) else {
                        continue;
                    };
                    if budget.is_none() && plan.extra_macs > max_extra {
                        continue;
                    }
                    if better(&plan, round.as_ref(), budget) {
                        round = Some(plan);
                    }
                }
            }
        }
        match round {
            Some(plan) if plan.arena_size < best.arena_size => best = plan,
            _ => break,
        }
    }
    Ok(best)
}

/// Whether `plan` beats `other`: within the budget, fewer extra MACs; otherwise a smaller
/// arena, then fewer extra MACs.
fn better(plan: &Plan, other: Option<&Plan>, budget: Option<usize>) -> bool {
    let Some(other) = other else { return true };
    let fits = |p: &Plan| budget.is_some_and(|b| p.arena_size as usize <= b);
    match (fits(plan), fits(other)) {
        (true, false) => true,
        (false, true) => false,
        (true, true) => (plan.extra_macs, plan.arena_size) < (other.extra_macs, other.arena_size),
        (false, false) => (plan.arena_size, plan.extra_macs) < (other.arena_size, other.extra_macs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{lower, testing::small_cbam_graph, LowerOptions};

    fn small() -> QModel {
        let (g, r) = small_cbam_graph();
        lower(&g, &r, &LowerOptions::default()).unwrap()
    }

    /// The smallest arena any schedule reaches, from the refusal of a 1-byte budget.
    fn smallest(m: &QModel) -> usize {
        match choose(m, ScheduleChoice::Budget(1)) {
            Err(ScheduleError::OverBudget { best, .. }) => best,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_three_arenas_shrink_in_order_and_patch_stages_stay_within_the_extra_macs() {
        let m = small();
        let (plan, a) = choose(&m, ScheduleChoice::Patch).unwrap();
        assert!(
            a.patch <= a.in_place && a.in_place < a.layer_by_layer,
            "{a:?}"
        );
        assert_eq!(plan.arena_size, a.patch);
        assert!(plan.extra_macs as f64 <= m.macs as f64 * MAX_EXTRA_MACS);
        let (plan, a) = choose(&m, ScheduleChoice::LayerByLayer).unwrap();
        assert_eq!(
            (plan.arena_size, a.chosen.as_str()),
            (a.layer_by_layer, "layer-by-layer")
        );
    }

    #[test]
    fn a_budget_takes_whole_tensors_when_they_fit_and_stages_only_when_needed() {
        let m = small();
        let (_, a) = choose(&m, ScheduleChoice::InPlace).unwrap();
        let (plan, b) = choose(&m, ScheduleChoice::Budget(a.in_place as usize)).unwrap();
        assert!(plan.stages.is_empty() && plan.extra_macs == 0);
        assert_eq!(b.chosen, "in-place");
        let best = smallest(&m);
        assert!(best < a.in_place as usize, "{best} {a:?}");
        let (plan, b) = choose(&m, ScheduleChoice::Budget(best)).unwrap();
        assert!(plan.arena_size as usize <= best && !plan.stages.is_empty());
        assert!(
            plan.extra_macs > 0,
            "the small model's stages recompute its conv"
        );
        assert_eq!(b.chosen, "patch");
    }

    #[test]
    fn a_budget_below_every_plan_is_refused_with_the_shortfall() {
        let m = small();
        let best = smallest(&m);
        let budget = best / 2;
        let text = choose(&m, ScheduleChoice::Budget(budget))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains(&format!("misses it by {} bytes", best - budget)),
            "{text}"
        );
    }
}
