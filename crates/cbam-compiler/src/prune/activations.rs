//! Intermediate float values of a model over the calibration set: the raw maps (for the
//! least-squares reconstruction) and per-channel mean magnitudes (for importance scores).

use tract_onnx::pb::ModelProto;

use super::PruneError;
use crate::float_run::FloatModel;

/// `values[v][s]`: value `names[v]` (flattened NCHW, batch 1) for calibration sample `s`.
pub fn capture(
    proto: &ModelProto,
    input_chw: &[usize],
    calib: &[Vec<f32>],
    names: &[String],
) -> Result<Vec<Vec<Vec<f32>>>, PruneError> {
    let runner = FloatModel::with_input_shape(proto, None, batch_of_one(input_chw))?;
    let mut values: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(calib.len()); names.len()];
    for x in calib {
        let mut outputs = runner.run_values(x, names)?.into_iter();
        for per_value in values.iter_mut() {
            let v = outputs.next().ok_or_else(|| {
                PruneError::Tract("tract returned fewer outputs than asked".into())
            })?;
            per_value.push(v);
        }
    }
    Ok(values)
}

/// `[1, c, h, w]` from `[c, h, w]`.
pub(crate) fn batch_of_one(input_chw: &[usize]) -> Vec<usize> {
    std::iter::once(1)
        .chain(input_chw.iter().copied())
        .collect()
}

/// Mean of `|x|` per channel over all pixels and samples of `[1, C, ...]` maps.
pub fn channel_mean_abs(samples: &[Vec<f32>], channels: usize) -> Vec<f32> {
    let mut sum = vec![0f64; channels];
    let mut count = 0usize;
    for s in samples {
        let per = s.len() / channels.max(1);
        if per == 0 {
            continue;
        }
        for (c, chunk) in s.chunks_exact(per).enumerate().take(channels) {
            sum[c] += chunk.iter().map(|v| f64::from(v.abs())).sum::<f64>();
        }
        count += per;
    }
    sum.iter()
        .map(|s| (s / count.max(1) as f64) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_means_average_pixels_and_samples() {
        // two samples of [1, 2, 2] (2 channels, 2 pixels)
        let samples = vec![vec![1.0, -3.0, 0.0, 2.0], vec![1.0, 1.0, 4.0, 2.0]];
        assert_eq!(channel_mean_abs(&samples, 2), vec![1.5, 2.0]);
    }
}
