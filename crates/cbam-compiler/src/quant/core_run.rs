//! Running a lowered model on the int8 core, for the passes that measure it (bias
//! correction, attention bias correction, range search): the blob the device would get,
//! each image quantized as the device feeds it.

use super::model::QModel;
use crate::blob::{self, BlobError, BlobMeta};
use crate::plan::{self, PlanError};
use crate::report::nchw_to_nhwc;

#[derive(Debug, thiserror::Error)]
pub enum CoreRunError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(
        "the int8 core failed on the blob it was given: {0} (a compiler bug; please report it)"
    )]
    Core(String),
}

/// `model` on the core over every image (NCHW float, the model's input): after each run,
/// `take` gets the observer and the int8 output and returns what to keep.
pub(super) fn run_each<O: cbam_core::Observer, T>(
    model: &QModel,
    images: &[Vec<f32>],
    observer: &mut O,
    mut take: impl FnMut(&mut O, &[i8]) -> T,
) -> Result<Vec<T>, CoreRunError> {
    let core_err = |e: cbam_core::Error| CoreRunError::Core(e.to_string());
    let input_t = model
        .tensors
        .get(model.input)
        .ok_or_else(|| CoreRunError::Core("the model has no input tensor".into()))?;
    let plan = plan::plan(model)?;
    let blob = blob::write(model, &plan, &BlobMeta::default())?;
    let core = cbam_core::Model::parse(&blob).map_err(core_err)?;
    let mut arena = vec![0u8; core.arena_size()];
    let mut out = vec![0i8; core.output().len()];
    images
        .iter()
        .map(|image| {
            let x: Vec<i8> = nchw_to_nhwc(image, input_t.shape)
                .iter()
                .map(|v| input_t.q.quantize(*v))
                .collect();
            core.run_observed(&mut arena, &x, &mut out, observer)
                .map_err(core_err)?;
            Ok(take(observer, &out))
        })
        .collect()
}
