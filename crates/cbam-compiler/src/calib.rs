//! Activation range estimation from observed float values.
//!
//! Values stream in one tensor and one image at a time; each tensor keeps only its exact
//! min/max and a fixed-size histogram whose range doubles (merging bin pairs) whenever a
//! value falls outside it, so memory is O(bins) per tensor whatever the number of images.

use std::collections::BTreeMap;

use crate::quant::math::QParams;

/// How a tensor's float range is chosen from its observed values.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibMethod {
    /// The observed minimum and maximum.
    MinMax,
    /// Clip both tails at this percentile of the observed values (e.g. 99.99).
    Percentile(f64),
    /// The clip range minimising the int8 quantization mean squared error.
    Mse,
    /// The clip threshold minimising the KL divergence between the float and the
    /// quantized distribution (TensorRT's entropy calibration).
    Entropy,
}

impl std::fmt::Display for CalibMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalibMethod::MinMax => write!(f, "minmax"),
            CalibMethod::Percentile(p) => write!(f, "percentile({p})"),
            CalibMethod::Mse => write!(f, "mse"),
            CalibMethod::Entropy => write!(f, "entropy"),
        }
    }
}

/// A float range to quantize over.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    pub min: f32,
    pub max: f32,
}

/// Chosen ranges by ONNX value name.
pub type Ranges = BTreeMap<String, Range>;

/// Bins on each side of zero.
const HALF_BINS: usize = 1024;

/// A histogram over `[-half_width, half_width]` with the exact extremes beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bins: Vec<u64>,
    half_width: f32,
    min: f32,
    max: f32,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bins: vec![0; 2 * HALF_BINS],
            half_width: 0.0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            count: 0,
        }
    }
}

impl Histogram {
    /// Adds values; non-finite values are skipped (they carry no range information).
    pub fn observe(&mut self, values: &[f32]) {
        let peak = values
            .iter()
            .filter(|v| v.is_finite())
            .fold(0f32, |m, v| m.max(v.abs()));
        self.grow_to(peak);
        let width = self.bin_width();
        for &v in values.iter().filter(|v| v.is_finite()) {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            self.count += 1;
            let i = if width > 0.0 {
                ((v + self.half_width) / width) as usize
            } else {
                HALF_BINS
            };
            if let Some(b) = self.bins.get_mut(i.min(2 * HALF_BINS - 1)) {
                *b += 1;
            }
        }
    }

    fn bin_width(&self) -> f32 {
        self.half_width / HALF_BINS as f32
    }

    /// Widens the histogram until it covers `[-peak, peak]`, keeping every count.
    fn grow_to(&mut self, peak: f32) {
        if peak <= self.half_width {
            return;
        }
        if self.count == 0 || self.half_width == 0.0 {
            // Nothing (or only zeros) binned yet: zeros sit in the bin starting at 0.
            let zeros: u64 = self.bins.iter().sum();
            self.bins.iter_mut().for_each(|b| *b = 0);
            self.half_width = peak;
            self.bins[HALF_BINS] = zeros;
            return;
        }
        while peak > self.half_width {
            let mut merged = vec![0u64; 2 * HALF_BINS];
            for (i, count) in self.bins.iter().enumerate() {
                merged[(HALF_BINS + i) / 2] += count;
            }
            self.bins = merged;
            self.half_width *= 2.0;
        }
    }

    pub fn min(&self) -> f32 {
        self.min
    }

    pub fn max(&self) -> f32 {
        self.max
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    fn centre(&self, i: usize) -> f32 {
        -self.half_width + (i as f32 + 0.5) * self.bin_width()
    }

    /// The range `method` picks, always inside the observed `[min, max]` widened to 0.
    pub fn range(&self, method: CalibMethod) -> Range {
        if self.count == 0 {
            return Range { min: 0.0, max: 0.0 };
        }
        let observed = Range {
            min: self.min.min(0.0),
            max: self.max.max(0.0),
        };
        let chosen = match method {
            CalibMethod::MinMax => observed,
            CalibMethod::Percentile(p) => self.percentile_range(p),
            CalibMethod::Mse => self.mse_range(),
            CalibMethod::Entropy => self.entropy_range(),
        };
        Range {
            min: chosen.min.clamp(observed.min, 0.0),
            max: chosen.max.clamp(0.0, observed.max),
        }
    }

    fn percentile_range(&self, percent: f64) -> Range {
        let tail = ((100.0 - percent.clamp(50.0, 100.0)) / 100.0 * self.count as f64) as u64;
        let mut seen = 0;
        let mut lo = self.min;
        for (i, c) in self.bins.iter().enumerate() {
            seen += c;
            if seen > tail {
                lo = self.centre(i) - 0.5 * self.bin_width();
                break;
            }
        }
        seen = 0;
        let mut hi = self.max;
        for (i, c) in self.bins.iter().enumerate().rev() {
            seen += c;
            if seen > tail {
                hi = self.centre(i) + 0.5 * self.bin_width();
                break;
            }
        }
        Range {
            min: lo.max(self.min),
            max: hi.min(self.max),
        }
    }

    /// Non-empty bins as `(centre, count)`.
    fn occupied(&self) -> Vec<(f32, f64)> {
        self.bins
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (self.centre(i), *c as f64))
            .collect()
    }

    /// Squared quantization error of every binned value for one candidate range.
    fn quantization_error(occupied: &[(f32, f64)], range: Range) -> f64 {
        let q = QParams::from_range(range.min, range.max);
        occupied
            .iter()
            .map(|(x, c)| {
                let e = f64::from(x - q.dequantize(q.quantize(*x)));
                e * e * c
            })
            .sum()
    }

    /// Grid search over the clip fractions of both ends independently.
    fn mse_range(&self) -> Range {
        const STEPS: usize = 48;
        let occupied = self.occupied();
        let full = Range {
            min: self.min.min(0.0),
            max: self.max.max(0.0),
        };
        let fractions = |end: f32| -> Vec<f32> {
            if end == 0.0 {
                vec![0.0]
            } else {
                (1..=STEPS).map(|s| end * s as f32 / STEPS as f32).collect()
            }
        };
        let mut best = (Self::quantization_error(&occupied, full), full);
        for &min in &fractions(full.min) {
            for &max in &fractions(full.max) {
                let candidate = Range { min, max };
                let err = Self::quantization_error(&occupied, candidate);
                if err < best.0 {
                    best = (err, candidate);
                }
            }
        }
        best.1
    }

    fn entropy_range(&self) -> Range {
        let one_sided = self.min >= 0.0;
        // Magnitudes: a one-sided tensor uses all 256 levels on [0, T], a signed one
        // spends 128 per side of a symmetric threshold.
        let (magnitudes, levels): (Vec<u64>, usize) = if one_sided {
            (self.bins[HALF_BINS..].to_vec(), 256)
        } else {
            let mut folded = self.bins[HALF_BINS..].to_vec();
            for (i, c) in self.bins[..HALF_BINS].iter().rev().enumerate() {
                folded[i] += c;
            }
            (folded, 128)
        };
        let threshold = kl_threshold_bins(&magnitudes, levels) as f32 * self.bin_width();
        Range {
            min: if one_sided { 0.0 } else { -threshold },
            max: threshold,
        }
    }
}

/// TensorRT-style search: the number of leading magnitude bins whose quantization into
/// `levels` levels loses the least information (KL divergence), outliers clipped into the
/// last kept bin.
fn kl_threshold_bins(hist: &[u64], levels: usize) -> usize {
    let n = hist.len();
    if n <= levels {
        return n;
    }
    let mut best = (f64::INFINITY, n);
    for kept in levels..=n {
        let mut p: Vec<f64> = hist[..kept].iter().map(|c| *c as f64).collect();
        let outliers: u64 = hist[kept..].iter().sum();
        if let Some(last) = p.last_mut() {
            *last += outliers as f64;
        }
        let mut q = vec![0f64; kept];
        for level in 0..levels {
            let start = level * kept / levels;
            let end = ((level + 1) * kept / levels).max(start + 1).min(kept);
            let total: f64 = hist[start..end].iter().map(|c| *c as f64).sum();
            let nonzero = hist[start..end].iter().filter(|c| **c > 0).count();
            if nonzero == 0 {
                continue;
            }
            for (qi, count) in q[start..end].iter_mut().zip(&hist[start..end]) {
                if *count > 0 {
                    *qi = total / nonzero as f64;
                }
            }
        }
        let divergence = kl_divergence(&p, &q);
        if divergence < best.0 {
            best = (divergence, kept);
        }
    }
    best.1
}

/// KL(p || q) of two unnormalised histograms; bins where `p > 0` but `q == 0` are given a
/// tiny mass instead of infinity, as TensorRT does.
fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp == 0.0 || sq == 0.0 {
        return f64::INFINITY;
    }
    p.iter()
        .zip(q)
        .filter(|(pi, _)| **pi > 0.0)
        .map(|(pi, qi)| {
            let (pn, qn) = (pi / sp, (qi / sq).max(1e-12));
            pn * (pn / qn).ln()
        })
        .sum()
}

/// Streaming range collection for many named tensors.
#[derive(Debug, Clone, Default)]
pub struct Calibrator {
    histograms: BTreeMap<String, Histogram>,
}

impl Calibrator {
    pub fn observe(&mut self, name: &str, values: &[f32]) {
        self.histograms
            .entry(name.to_string())
            .or_default()
            .observe(values);
    }

    pub fn histogram(&self, name: &str) -> Option<&Histogram> {
        self.histograms.get(name)
    }

    /// Ranges of every observed tensor with `method`.
    pub fn ranges(&self, method: CalibMethod) -> Ranges {
        self.histograms
            .iter()
            .map(|(name, h)| (name.clone(), h.range(method)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-normal samples (sum of uniforms) without a rand dependency.
    fn gaussian_like(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        (0..n)
            .map(|_| (0..12).map(|_| uniform()).sum::<f32>() - 6.0)
            .collect()
    }

    #[test]
    fn minmax_is_exact_and_streaming_keeps_counts() {
        let mut h = Histogram::default();
        h.observe(&[0.1, -0.2, 0.05]);
        h.observe(&[3.0, -7.5]);
        h.observe(&[100.0]);
        assert_eq!(h.count(), 6);
        assert_eq!(h.bins.iter().sum::<u64>(), 6);
        assert_eq!(
            h.range(CalibMethod::MinMax),
            Range {
                min: -7.5,
                max: 100.0
            }
        );
    }

    #[test]
    fn range_always_contains_zero() {
        let mut h = Histogram::default();
        h.observe(&[2.0, 3.0, 4.0]);
        for m in [
            CalibMethod::MinMax,
            CalibMethod::Percentile(99.0),
            CalibMethod::Mse,
            CalibMethod::Entropy,
        ] {
            let r = h.range(m);
            assert!(r.min <= 0.0 && r.max >= 0.0 && r.max <= 4.0, "{m}: {r:?}");
        }
    }

    #[test]
    fn clipping_methods_ignore_a_lone_outlier() {
        let mut h = Histogram::default();
        let mut values = gaussian_like(100_000, 7);
        values.push(60.0);
        h.observe(&values);
        let full = h.range(CalibMethod::MinMax);
        assert_eq!(full.max, 60.0);
        // (MSE keeps a lone far outlier: its clipping error outweighs the finer step.)
        for m in [CalibMethod::Percentile(99.99), CalibMethod::Entropy] {
            let r = h.range(m);
            assert!(r.max < 10.0 && r.max > 2.0, "{m}: {r:?}");
            assert!(r.min < -2.0, "{m}: {r:?}");
        }
    }

    #[test]
    fn mse_range_beats_minmax_on_its_own_objective() {
        let mut h = Histogram::default();
        let mut values = gaussian_like(20_000, 3);
        values.extend([12.0, -11.0]);
        h.observe(&values);
        let mse = h.range(CalibMethod::Mse);
        let full = h.range(CalibMethod::MinMax);
        let occupied = h.occupied();
        let err = |r| Histogram::quantization_error(&occupied, r);
        assert!(err(mse) < err(full), "{mse:?}");
        assert!(mse.max < 12.0 && mse.min > -11.0, "{mse:?}");
    }

    #[test]
    fn entropy_on_relu_output_is_one_sided() {
        let mut h = Histogram::default();
        let values: Vec<f32> = gaussian_like(50_000, 11)
            .into_iter()
            .map(|v| v.max(0.0))
            .collect();
        h.observe(&values);
        let r = h.range(CalibMethod::Entropy);
        assert_eq!(r.min, 0.0);
        assert!(r.max > 1.5 && r.max <= h.max(), "{r:?}");
    }

    #[test]
    fn calibrator_keys_by_name() {
        let mut c = Calibrator::default();
        c.observe("a", &[1.0, -1.0]);
        c.observe("b", &[2.0]);
        c.observe("a", &[3.0]);
        let r = c.ranges(CalibMethod::MinMax);
        assert_eq!(
            r["a"],
            Range {
                min: -1.0,
                max: 3.0
            }
        );
        assert_eq!(r["b"], Range { min: 0.0, max: 2.0 });
    }
}
