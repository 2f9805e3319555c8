//! Fixed-point helpers shared by every lowered op: requantizer encoding, per-tensor
//! activation quantization, per-channel weight quantization, bias and sigmoid tables.
//! Numbers follow TensorFlow Lite's int8 scheme so kernels can be compared bit for bit.

/// Encodes a non-negative real multiplier as `mult * 2^(shift - 31)` with `mult` in
/// `[2^30, 2^31)` (or `(0, 0)` for zero), the way TFLite's `QuantizeMultiplier` does.
///
/// Reals too small for `shift >= -31` become `(0, 0)`; reals too large saturate at
/// `(i32::MAX, 30)`. Negative or non-finite inputs are not multipliers and yield `(0, 0)`;
/// callers only pass ratios of positive scales.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if !real.is_finite() || real <= 0.0 {
        return (0, 0);
    }
    let (fraction, mut shift) = frexp(real);
    let mut q = (fraction * (1u64 << 31) as f64).round() as i64;
    if q == 1i64 << 31 {
        q /= 2;
        shift += 1;
    }
    if shift < -31 {
        return (0, 0);
    }
    if shift > 30 {
        return (i32::MAX, 30);
    }
    (q as i32, shift)
}

/// Splits a positive finite `x` into `fraction * 2^exp` with `fraction` in `[0.5, 1)`.
fn frexp(x: f64) -> (f64, i32) {
    let mut exp = x.log2().floor() as i32 + 1;
    let mut fraction = x / 2f64.powi(exp);
    // log2 can be off by one ulp at exact powers of two; settle it.
    while fraction >= 1.0 {
        fraction /= 2.0;
        exp += 1;
    }
    while fraction < 0.5 {
        fraction *= 2.0;
        exp -= 1;
    }
    (fraction, exp)
}

/// The real value a requantizer encodes, for tests and reports.
pub fn multiplier_value(mult: i32, shift: i32) -> f64 {
    f64::from(mult) * 2f64.powi(shift - 31)
}

/// Per-tensor asymmetric int8 quantization: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
}

impl QParams {
    /// The fixed quantization of every sigmoid output (TFLite's convention).
    pub const SIGMOID_OUT: QParams = QParams {
        scale: 1.0 / 256.0,
        zero_point: -128,
    };

    /// Chooses `(scale, zero_point)` so that `[min, max]` (widened to include 0) maps onto
    /// -128..=127 and real 0 is represented exactly (TFLite's `ChooseQuantizationParams`).
    /// A degenerate range (both ends 0, or non-finite) gets scale 1 and zero point 0,
    /// which still represents 0 exactly.
    pub fn from_range(min: f32, max: f32) -> QParams {
        let (min, max) = (f64::from(min.min(0.0)), f64::from(max.max(0.0)));
        if !min.is_finite() || !max.is_finite() || max - min <= 0.0 {
            return QParams {
                scale: 1.0,
                zero_point: 0,
            };
        }
        let scale = ((max - min) / 255.0) as f32;
        let s = f64::from(scale);
        let zp_from_min = -128.0 - min / s;
        let zp_from_max = 127.0 - max / s;
        let err_min = 128.0_f64.abs() + (min / s).abs();
        let err_max = 127.0_f64.abs() + (max / s).abs();
        let zp = if err_min < err_max {
            zp_from_min
        } else {
            zp_from_max
        };
        QParams {
            scale,
            zero_point: (zp.round() as i32).clamp(-128, 127),
        }
    }

    pub fn quantize(&self, real: f32) -> i8 {
        let q = (f64::from(real) / f64::from(self.scale)).round() + f64::from(self.zero_point);
        q.clamp(-128.0, 127.0) as i8
    }

    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (i32::from(q) - self.zero_point) as f32
    }

    /// The real range this quantization can represent.
    pub fn real_range(&self) -> (f32, f32) {
        (self.dequantize(-128), self.dequantize(127))
    }
}

/// Symmetric per-output-channel int8 weights (zero point 0, values in -127..=127).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelWeights {
    /// Same element order as the float input.
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
}

/// Quantizes `weights`, laid out as `channels` consecutive blocks of equal length, with one
/// symmetric scale per block. An all-zero channel gets scale 1 (any scale represents it).
pub fn quantize_per_channel(weights: &[f32], channels: usize) -> ChannelWeights {
    let per = weights.len().checked_div(channels).unwrap_or(0);
    let mut values = Vec::with_capacity(weights.len());
    let mut scales = Vec::with_capacity(channels);
    for block in weights.chunks(per.max(1)).take(channels) {
        let max_abs = block.iter().fold(0f32, |m, w| m.max(w.abs()));
        let scale = if max_abs > 0.0 && max_abs.is_finite() {
            max_abs / 127.0
        } else {
            1.0
        };
        scales.push(scale);
        values.extend(block.iter().map(|w| quantize_weight(*w, scale)));
    }
    ChannelWeights { values, scales }
}

/// One weight at a given symmetric scale, clamped to -127..=127.
pub fn quantize_weight(w: f32, scale: f32) -> i8 {
    (f64::from(w) / f64::from(scale))
        .round()
        .clamp(-127.0, 127.0) as i8
}

/// int32 bias at scale `input_scale * weight_scales[c]` (saturating: a bias that does not
/// fit is clamped, which only happens with absurd scales).
pub fn quantize_bias(bias: &[f32], input_scale: f32, weight_scales: &[f32]) -> Vec<i32> {
    weight_scales
        .iter()
        .enumerate()
        .map(|(c, ws)| {
            let b = bias.get(c).copied().unwrap_or(0.0);
            let s = f64::from(input_scale) * f64::from(*ws);
            (f64::from(b) / s)
                .round()
                .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        })
        .collect()
}

/// Requantizers `s_in * s_w[c] / s_out` for every output channel, as `(mults, shifts)`.
pub fn channel_requantizers(
    input_scale: f32,
    weight_scales: &[f32],
    output_scale: f32,
) -> (Vec<i32>, Vec<i32>) {
    weight_scales
        .iter()
        .map(|ws| {
            quantize_multiplier(f64::from(input_scale) * f64::from(*ws) / f64::from(output_scale))
        })
        .unzip()
}

/// The 256-entry sigmoid table for an input quantization: entry `x + 128` holds
/// `sigmoid(real(x))` in [`QParams::SIGMOID_OUT`].
pub fn sigmoid_lut(input: QParams) -> [i8; 256] {
    lut(input, QParams::SIGMOID_OUT, |x| 1.0 / (1.0 + (-x).exp()))
}

/// The 256-entry table of `f` from `input`'s quantization to `output`'s: entry `q + 128` is
/// `f` of the value `q` stands for, rounded half away from zero and saturated.
pub fn lut(input: QParams, output: QParams, f: impl Fn(f64) -> f64) -> [i8; 256] {
    let mut table = [0i8; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let q = i as i32 - 128;
        let x = f64::from(input.scale) * f64::from(q - input.zero_point);
        let y = (f(x) / f64::from(output.scale)).round() + f64::from(output.zero_point);
        *slot = y.clamp(-128.0, 127.0) as i8;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lut_rounds_the_function_into_the_output_quantization() {
        let input = QParams {
            scale: 0.1,
            zero_point: -10,
        };
        let output = QParams {
            scale: 0.05,
            zero_point: 3,
        };
        let table = lut(input, output, |x| x.max(0.0));
        for (i, &y) in table.iter().enumerate() {
            let x = 0.1 * f64::from(i as i32 - 128 + 10);
            let want = ((x.max(0.0) / 0.05).round() + 3.0).clamp(-128.0, 127.0);
            assert_eq!(f64::from(y), want, "entry {i}");
        }
        // The sigmoid table is this table with the fixed sigmoid output quantization.
        assert_eq!(
            sigmoid_lut(input),
            lut(input, QParams::SIGMOID_OUT, |x| 1.0 / (1.0 + (-x).exp()))
        );
    }

    #[test]
    fn multiplier_matches_tflite_examples() {
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.75), (3 << 29, 0));
        // 2^-40 needs shift -39, below the representable -31.
        assert_eq!(quantize_multiplier(2f64.powi(-40)), (0, 0));
        assert_eq!(quantize_multiplier(2f64.powi(40)), (i32::MAX, 30));
    }

    #[test]
    fn multiplier_round_trips_within_q31_precision() {
        for real in [1e-9, 3.3e-7, 0.0123, 0.999_999_999_9, 1.5, 1234.5, 7.0e8] {
            let (m, s) = quantize_multiplier(real);
            assert!((1 << 30..=i32::MAX).contains(&m), "{real}: mult {m}");
            assert!((-31..=30).contains(&s), "{real}: shift {s}");
            let back = multiplier_value(m, s);
            assert!((back - real).abs() <= real * 1e-9, "{real} -> {back}");
        }
    }

    #[test]
    fn multiplier_rounding_up_to_two_pow_31_bumps_the_shift() {
        let just_below_one = 1.0 - 2f64.powi(-40);
        assert_eq!(quantize_multiplier(just_below_one), (1 << 30, 1));
    }

    #[test]
    fn range_quantization_represents_zero_exactly() {
        for (lo, hi) in [
            (-1.0, 1.0),
            (0.0, 6.0),
            (-3.7, 0.2),
            (0.3, 2.0),
            (-5.0, -1.0),
        ] {
            let q = QParams::from_range(lo, hi);
            assert!((-128..=127).contains(&q.zero_point));
            assert_eq!(q.dequantize(q.quantize(0.0)), 0.0);
            let (rlo, rhi) = q.real_range();
            assert!(rlo <= lo.min(0.0) + q.scale && rhi >= hi.max(0.0) - q.scale);
        }
        let relu = QParams::from_range(0.0, 6.0);
        assert_eq!(relu.zero_point, -128);
        assert_eq!(QParams::from_range(0.0, 0.0).scale, 1.0);
    }

    #[test]
    fn per_channel_weights_use_full_symmetric_range() {
        let w = [0.5, -1.0, 0.25, 0.0, 2.0, -0.5, 0.0, 0.0];
        let q = quantize_per_channel(&w, 2);
        assert_eq!(q.values, vec![64, -127, 32, 0, 127, -32, 0, 0]);
        assert!((q.scales[0] - 1.0 / 127.0).abs() < 1e-9);
        assert!((q.scales[1] - 2.0 / 127.0).abs() < 1e-9);
        let zeros = quantize_per_channel(&[0.0; 4], 1);
        assert_eq!(zeros.scales, vec![1.0]);
    }

    #[test]
    fn bias_uses_product_of_scales() {
        assert_eq!(
            quantize_bias(&[1.0, -0.5], 0.1, &[0.01, 0.05]),
            vec![1000, -100]
        );
    }

    #[test]
    fn sigmoid_lut_is_monotone_and_centred() {
        let input = QParams {
            scale: 0.05,
            zero_point: 10,
        };
        let lut = sigmoid_lut(input);
        assert!(lut.windows(2).all(|p| p[0] <= p[1]));
        // Real 0 sits at q = 10 -> sigmoid 0.5 -> 128/256 -> stored 0.
        assert_eq!(lut[(10 + 128) as usize], 0);
        assert_eq!(
            lut[0],
            -128 + (256.0 / (1.0 + (6.9f64).exp())).round() as i8
        );
        assert_eq!(lut[255], 127);
    }
}
