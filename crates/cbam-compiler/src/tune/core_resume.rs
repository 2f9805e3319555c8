//! Running a lowered model on the core one stretch of ops at a time, keeping each image's
//! state at an op boundary, for a pass that changes one layer at a time in execution order
//! (bias correction): the ops before the changed layer compute what they computed before,
//! so every image resumes from its state at the last boundary instead of starting again
//! from the input. Walking all layers costs one run of the model per image, where a run
//! from the input per layer costs one per layer (quadratic in depth).
//!
//! Between two ops the core's arena is the whole state of an inference; of it, only the
//! tensors still to be read (live at the boundary) are kept, so the state is at most the
//! arena and usually a few activations. Each model handed to [`Resumable::advance`] must
//! plan its arena exactly as the first did (only parameter values may change), or the
//! kept bytes would land in the wrong places: that is checked.

use super::core_run::{device_input, CoreRunError};
use crate::blob::{self, BlobMeta};
use crate::plan::{self, Plan};
use crate::quant::{QModel, QTensorId};

/// Each image's live tensors at one op boundary of a model's layer-by-layer plan.
pub struct Resumable {
    plan: Plan,
    /// Ops run so far: the states are those before op `boundary`.
    boundary: usize,
    /// Tensors live at `boundary` with their arena offset and length, in storage order.
    live: Vec<(QTensorId, usize, usize)>,
    states: Vec<Vec<i8>>,
    arena: Vec<u8>,
}

impl Resumable {
    /// Every image at boundary 0 (its input quantized as the device feeds it).
    pub fn new(model: &QModel, images: &[Vec<f32>]) -> Result<Self, CoreRunError> {
        let plan = plan::plan(model)?;
        let mut run = Resumable {
            arena: vec![0u8; plan.arena_size as usize],
            plan,
            boundary: 0,
            live: Vec::new(),
            states: Vec::new(),
        };
        run.restart(model, images)?;
        Ok(run)
    }

    /// The largest state one image holds at any of `boundaries` (bytes), for sizing how
    /// many images can be kept.
    pub fn state_bytes(
        model: &QModel,
        boundaries: impl IntoIterator<Item = usize>,
    ) -> Result<usize, CoreRunError> {
        let lifetimes = plan::lifetimes(model)?;
        Ok(boundaries
            .into_iter()
            .map(|b| {
                live_at(model, &lifetimes, b)
                    .map(|t| model.tensors.get(t).map_or(0, |t| t.len()))
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0))
    }

    /// Runs every image on to the boundary before op `to` with `model`'s parameters for
    /// the ops in between (from the input again if `to` lies behind the current boundary).
    pub fn advance(
        &mut self,
        model: &QModel,
        images: &[Vec<f32>],
        to: usize,
    ) -> Result<(), CoreRunError> {
        if to < self.boundary {
            self.restart(model, images)?;
        }
        if to == self.boundary {
            return Ok(());
        }
        let blob = self.blob(model)?;
        let core = cbam_core::Model::parse(&blob)?;
        let lifetimes = plan::lifetimes(model)?;
        let next: Vec<(QTensorId, usize, usize)> = live_at(model, &lifetimes, to)
            .map(|t| self.placed(model, t))
            .collect::<Result<_, _>>()?;
        for state in &mut self.states {
            restore(&mut self.arena, &self.live, state);
            core.invoke_ops(&mut self.arena, self.boundary..to)?;
            *state = save(&self.arena, &next);
        }
        self.live = next;
        self.boundary = to;
        Ok(())
    }

    /// Runs every image from the current boundary through op `op` (at or after it) with
    /// `model`'s parameters and `observer`, and hands the observer to `take` after each
    /// image; the states stay at the boundary.
    pub fn peek<O: cbam_core::Observer, T>(
        &mut self,
        model: &QModel,
        op: usize,
        observer: &mut O,
        mut take: impl FnMut(&mut O) -> T,
    ) -> Result<Vec<T>, CoreRunError> {
        let blob = self.blob(model)?;
        let core = cbam_core::Model::parse(&blob)?;
        let mut taken = Vec::with_capacity(self.states.len());
        for state in &self.states {
            restore(&mut self.arena, &self.live, state);
            core.invoke_ops_observed(&mut self.arena, self.boundary..op + 1, observer)?;
            taken.push(take(observer));
        }
        Ok(taken)
    }

    /// `model`'s blob, refused if its arena plan is not the first lowering's.
    fn blob(&self, model: &QModel) -> Result<Vec<u8>, CoreRunError> {
        let plan = plan::plan(model)?;
        if plan != self.plan {
            return Err(CoreRunError::PlanMoved);
        }
        Ok(blob::write(model, &plan, &BlobMeta::default())?)
    }

    /// Tensor `id` of image `image` at the current boundary, if it is live there.
    pub fn tensor(&self, image: usize, id: QTensorId) -> Option<&[i8]> {
        let state = self.states.get(image)?;
        let mut at = 0;
        for &(t, _, len) in &self.live {
            if t == id {
                return state.get(at..at + len);
            }
            at += len;
        }
        None
    }

    fn restart(&mut self, model: &QModel, images: &[Vec<f32>]) -> Result<(), CoreRunError> {
        let input = model
            .tensors
            .get(model.input)
            .ok_or_else(|| CoreRunError::Missing("its input tensor".into()))?;
        self.live = vec![self.placed(model, model.input)?];
        self.states = images
            .iter()
            .map(|image| device_input(input, image))
            .collect();
        self.boundary = 0;
        Ok(())
    }

    fn placed(
        &self,
        model: &QModel,
        t: QTensorId,
    ) -> Result<(QTensorId, usize, usize), CoreRunError> {
        let missing = || CoreRunError::Missing(format!("an arena offset for tensor #{t}"));
        let len = model.tensors.get(t).ok_or_else(missing)?.len();
        let offset = *self.plan.offsets.get(t).ok_or_else(missing)? as usize;
        if offset + len > self.arena.len() {
            return Err(missing());
        }
        Ok((t, offset, len))
    }
}

/// Tensors written before op `boundary` and read at or after it (the input counts as
/// written before op 0; the output is read after the last op).
fn live_at<'a>(
    model: &'a QModel,
    (start, end): &'a (Vec<usize>, Vec<usize>),
    boundary: usize,
) -> impl Iterator<Item = QTensorId> + 'a {
    (0..model.tensors.len()).filter(move |&t| {
        let written = t == model.input || start.get(t).is_some_and(|s| *s < boundary);
        written && (t == model.output || end.get(t).is_some_and(|e| *e >= boundary))
    })
}

// The offsets were checked against the arena by `Resumable::placed`, and each state was
// saved from the same spans it is restored to.
fn restore(arena: &mut [u8], live: &[(QTensorId, usize, usize)], state: &[i8]) {
    let mut values = state.iter();
    for &(_, offset, len) in live {
        for (byte, v) in arena[offset..offset + len].iter_mut().zip(&mut values) {
            *byte = *v as u8;
        }
    }
}

fn save(arena: &[u8], live: &[(QTensorId, usize, usize)]) -> Vec<i8> {
    live.iter()
        .flat_map(|&(_, offset, len)| &arena[offset..offset + len])
        .map(|b| *b as i8)
        .collect()
}

#[cfg(test)]
mod tests;
