//! Running a lowered model on the int8 core, for the passes that measure it (bias
//! correction, attention bias correction, range search): the blob the device would get,
//! each image quantized as the device feeds it.

use crate::blob::{self, BlobError, BlobMeta};
use crate::plan::{self, PlanError};
use crate::quant::QModel;

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

/// NCHW float values (as tract gives them) in NHWC order (as the core stores them).
pub fn nchw_to_nhwc(values: &[f32], [h, w, c]: [usize; 3]) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                if let (Some(dst), Some(src)) = (
                    out.get_mut((y * w + x) * c + ch),
                    values.get((ch * h + y) * w + x),
                ) {
                    *dst = *src;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nchw_to_nhwc_moves_channels_last() {
        // c=2, h=1, w=3: NCHW [a0 a1 a2 | b0 b1 b2] -> NHWC [a0 b0 a1 b1 a2 b2].
        let v = nchw_to_nhwc(&[1.0, 2.0, 3.0, 10.0, 20.0, 30.0], [1, 3, 2]);
        assert_eq!(v, vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0]);
    }
}
