//! Running a lowered model on the int8 core, for the passes that measure it (bias
//! correction, attention bias correction, range search) and for the report's fidelity:
//! the blob the device would get, each image quantized as the device feeds it.

use crate::blob::{self, BlobError, BlobMeta};
use crate::plan::{self, PlanError};
use crate::quant::{QModel, QTensor};

#[derive(Debug, thiserror::Error)]
pub enum CoreRunError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("the int8 core failed on the blob the compiler wrote for it (a compiler bug; please report it)")]
    Core(#[from] cbam_core::Error),
    #[error("the lowered model lacks {0} (a compiler bug; please report it)")]
    Missing(String),
    #[error("a re-lowered model moved tensors in the arena, so a run kept at an op boundary cannot resume under it (a compiler bug; please report it)")]
    PlanMoved,
}

/// A blob parsed by the core, with its arena and output buffer.
pub struct CoreRunner<'b> {
    core: cbam_core::Model<'b>,
    input: QTensor,
    arena: Vec<u8>,
    output: Vec<i8>,
}

impl<'b> CoreRunner<'b> {
    /// `blob` is `model` written by [`blob::write`]; `model` says how to quantize inputs.
    pub fn new(blob: &'b [u8], model: &QModel) -> Result<Self, CoreRunError> {
        let input = model
            .tensors
            .get(model.input)
            .cloned()
            .ok_or_else(|| CoreRunError::Missing("its input tensor".into()))?;
        let core = cbam_core::Model::parse(blob)?;
        Ok(CoreRunner {
            arena: vec![0u8; core.arena_size()],
            output: vec![0i8; core.output().len()],
            core,
            input,
        })
    }

    /// Runs one image (NCHW float, the model's input) with `observer`; the int8 output.
    pub fn run<O: cbam_core::Observer>(
        &mut self,
        image: &[f32],
        observer: &mut O,
    ) -> Result<&[i8], CoreRunError> {
        let x = device_input(&self.input, image);
        self.core
            .run_observed(&mut self.arena, &x, &mut self.output, observer)?;
        Ok(&self.output)
    }
}

/// The blob the device would get for `model`, without metadata.
pub fn device_blob(model: &QModel) -> Result<Vec<u8>, CoreRunError> {
    let plan = plan::plan(model)?;
    Ok(blob::write(model, &plan, &BlobMeta::default())?)
}

/// `model` on the core over every image (NCHW float, the model's input): after each run,
/// `take` gets the observer and the int8 output and returns what to keep.
pub fn run_each<O: cbam_core::Observer, T>(
    model: &QModel,
    images: &[Vec<f32>],
    observer: &mut O,
    mut take: impl FnMut(&mut O, &[i8]) -> T,
) -> Result<Vec<T>, CoreRunError> {
    let blob = device_blob(model)?;
    let mut runner = CoreRunner::new(&blob, model)?;
    images
        .iter()
        .map(|image| {
            let out = runner.run(image, observer)?;
            Ok(take(observer, out))
        })
        .collect()
}

/// One NCHW float image as the device feeds `input`: NHWC, quantized.
pub fn device_input(input: &QTensor, image: &[f32]) -> Vec<i8> {
    nchw_to_nhwc(image, input.shape)
        .iter()
        .map(|v| input.q.quantize(*v))
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
    use crate::quant::{lower, testing::small_cbam_graph};

    #[test]
    fn nchw_to_nhwc_moves_channels_last() {
        // c=2, h=1, w=3: NCHW [a0 a1 a2 | b0 b1 b2] -> NHWC [a0 b0 a1 b1 a2 b2].
        let v = nchw_to_nhwc(&[1.0, 2.0, 3.0, 10.0, 20.0, 30.0], [1, 3, 2]);
        assert_eq!(v, vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0]);
    }

    #[test]
    fn run_each_runs_every_image_as_the_device_would() {
        let (g, r) = small_cbam_graph();
        let m = lower(&g, &r, &Default::default()).unwrap();
        let n = m.tensors[m.input].len();
        let images: Vec<Vec<f32>> = (0..3)
            .map(|s| crate::quant::testing::weights(n, s + 1, 1.0))
            .collect();
        let outs = run_each(&m, &images, &mut cbam_core::NoObserver, |_, out| {
            out.to_vec()
        })
        .unwrap();
        assert_eq!(outs.len(), 3);
        let blob = device_blob(&m).unwrap();
        let core = cbam_core::Model::parse(&blob).unwrap();
        let mut arena = vec![0u8; core.arena_size()];
        let mut out = vec![0i8; core.output().len()];
        for (image, got) in images.iter().zip(&outs) {
            let x = device_input(&m.tensors[m.input], image);
            core.run(&mut arena, &x, &mut out).unwrap();
            assert_eq!(&out, got);
        }
    }
}
