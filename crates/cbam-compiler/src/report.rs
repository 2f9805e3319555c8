//! The quantization report: what was chosen per layer and how close int8 stays to float.
//! Serialisable to JSON for `cbam quantize --report`.

use crate::calib::{Range, Ranges};
use crate::quant::QModel;
use crate::tune::bias_correction::CorrectedLayer;
use crate::tune::range_search::RangeChoice;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantReport {
    pub source: String,
    /// The calibration method, e.g. `minmax`, `percentile(99.99)`, `mse`, `entropy`.
    pub method: String,
    pub calibration_images: usize,
    /// Images the per-layer SQNR and the agreement below were measured on.
    pub sqnr_images: usize,
    /// Top-1 agreement int8 vs float on those images (0..1).
    pub top1_agreement: Option<f64>,
    pub arena_bytes: usize,
    /// The arena of each schedule and the one the blob was written with.
    #[serde(default)]
    pub schedules: crate::schedule::ArenaComparison,
    pub scratch_bytes: usize,
    pub blob_bytes: usize,
    pub weight_bytes: usize,
    pub macs: u64,
    pub input: InputReport,
    /// Every host-side choice beyond the plain calibration method, in the order applied.
    pub techniques: Vec<String>,
    /// Tensors whose range the per-tensor search moved off `method`.
    pub range_choices: Vec<RangeChoice>,
    /// The bias shift of every corrected layer (empty without bias correction).
    pub bias_correction: Vec<CorrectedLayer>,
    pub layers: Vec<LayerReport>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InputReport {
    pub scale: f32,
    pub zero_point: i32,
    /// The device feeds `q = pixel - 128`.
    pub raw_pixels: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerReport {
    pub index: usize,
    pub node: String,
    /// The core op name (`CONV2D`, `CBAM`, ...).
    pub op: String,
    /// The ONNX value the op's output holds.
    pub tensor: String,
    /// NHWC.
    pub shape: [usize; 3],
    /// The calibrated float range (absent when the op keeps its input's quantization).
    pub range: Option<Range>,
    pub scale: f32,
    pub zero_point: i32,
    /// Signal-to-quantization-noise ratio of the int8 output vs the float value, in dB.
    pub sqnr_db: Option<f64>,
    pub weight_bytes: usize,
}

/// Accumulates signal and noise energy per op over several images.
#[derive(Debug, Clone, Default)]
pub struct SqnrAccumulator {
    signal: Vec<f64>,
    noise: Vec<f64>,
}

impl SqnrAccumulator {
    pub fn new(ops: usize) -> Self {
        SqnrAccumulator {
            signal: vec![0.0; ops],
            noise: vec![0.0; ops],
        }
    }

    /// Adds one image's float value and the dequantized int8 value of op `op`'s output
    /// (same element order).
    pub fn add(&mut self, op: usize, float: &[f32], dequantized: &[f32]) {
        let (Some(s), Some(n)) = (self.signal.get_mut(op), self.noise.get_mut(op)) else {
            return;
        };
        for (f, d) in float.iter().zip(dequantized) {
            *s += f64::from(*f) * f64::from(*f);
            *n += f64::from(f - d) * f64::from(f - d);
        }
    }

    /// SQNR in dB; `None` without signal; infinite noise-free layers are capped at 200 dB.
    pub fn sqnr_db(&self, op: usize) -> Option<f64> {
        let (s, n) = (*self.signal.get(op)?, *self.noise.get(op)?);
        if s <= 0.0 {
            return None;
        }
        Some(if n <= 0.0 {
            200.0
        } else {
            10.0 * (s / n).log10()
        })
    }
}

/// Per-layer rows for `model`, SQNR from `sqnr` when measured.
pub fn layer_rows(
    model: &QModel,
    ranges: &Ranges,
    sqnr: Option<&SqnrAccumulator>,
) -> Vec<LayerReport> {
    model
        .ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| {
            let t = model.tensors.get(op.output)?;
            Some(LayerReport {
                index: i,
                node: op.node.clone(),
                op: op.kind.code().name().to_string(),
                tensor: t.name.clone(),
                shape: t.shape,
                range: ranges.get(&t.name).copied(),
                scale: t.q.scale,
                zero_point: t.q.zero_point,
                sqnr_db: sqnr.and_then(|s| s.sqnr_db(i)),
                weight_bytes: op.kind.weight_bytes(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqnr_of_known_noise() {
        let mut acc = SqnrAccumulator::new(1);
        // Signal energy 4 per element, noise 0.04: 20 dB.
        acc.add(0, &[2.0, -2.0], &[2.2, -1.8]);
        let db = acc.sqnr_db(0).unwrap();
        assert!((db - 20.0).abs() < 1e-4, "{db}");
        assert_eq!(acc.sqnr_db(1), None);
        let mut exact = SqnrAccumulator::new(1);
        exact.add(0, &[1.0], &[1.0]);
        assert_eq!(exact.sqnr_db(0), Some(200.0));
    }

    #[test]
    fn report_serialises_to_json() {
        let (g, r) = crate::quant::testing::small_cbam_graph();
        let m = crate::quant::lower(&g, &r, &Default::default()).unwrap();
        let rows = layer_rows(&m, &r, None);
        assert_eq!(rows.len(), m.ops.len());
        assert_eq!(rows[1].op, "CBAM");
        let json = serde_json::to_string(&rows).unwrap();
        assert!(json.contains(r#""tensor":"cbam1""#));
    }
}
