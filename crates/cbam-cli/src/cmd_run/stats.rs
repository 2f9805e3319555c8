//! The end-of-run numbers: throughput and latency percentiles.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub frames: usize,
    /// Frames per wall-clock second of the whole run (decode, inference, output).
    pub fps: f64,
    /// Frames per second of inference alone (1000 / mean latency).
    pub inference_fps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
}

impl Summary {
    pub fn new(latencies_ms: &[f64], wall_seconds: f64) -> Self {
        let mut sorted = latencies_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = sorted.iter().sum::<f64>() / n.max(1) as f64;
        let per_second = |v: f64| if v > 0.0 { 1.0 / v } else { 0.0 };
        Summary {
            frames: n,
            fps: n as f64 * per_second(wall_seconds),
            inference_fps: 1e3 * per_second(mean),
            p50_ms: percentile(&sorted, 50),
            p90_ms: percentile(&sorted, 90),
            p99_ms: percentile(&sorted, 99),
        }
    }

    pub fn render(&self) -> String {
        format!(
            "{} frames  {:.1} frames/s ({:.1} frames/s inference only)  latency p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms",
            self.frames, self.fps, self.inference_fps, self.p50_ms, self.p90_ms, self.p99_ms
        )
    }
}

/// Nearest-rank percentile of sorted values (0 for none): the smallest value with at least
/// `p`% of the values at or below it.
pub fn percentile(sorted: &[f64], p: usize) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let rank = (p * n).div_ceil(100).clamp(1, n);
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50), 50.0);
        assert_eq!(percentile(&v, 90), 90.0);
        assert_eq!(percentile(&v, 99), 99.0);
        assert_eq!(percentile(&[7.0], 99), 7.0);
        assert_eq!(percentile(&[], 50), 0.0);
    }

    #[test]
    fn summary_counts_throughput_from_wall_time_and_latency() {
        let s = Summary::new(&[10.0, 30.0, 20.0], 0.1);
        assert_eq!(s.frames, 3);
        assert!((s.fps - 30.0).abs() < 1e-9);
        assert!((s.inference_fps - 50.0).abs() < 1e-9);
        assert_eq!((s.p50_ms, s.p99_ms), (20.0, 30.0));
    }
}
