//! What the live page shows besides the frame: frames/s over the last frames, a latency
//! histogram and, for labelled input, the running accuracy. Updated once per frame on the
//! inference thread, so every update is O(bins).

use std::collections::VecDeque;
use std::time::Instant;

use serde::Serialize;

/// Upper bin edges in ms; the last bin takes everything slower. Log-spaced so a 0.3 ms MCU
/// model and a 300 ms Pi model both spread over several bins.
pub const LATENCY_EDGES_MS: [f64; 12] = [
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0,
];

/// Frames/s is measured over this many most recent frames.
const FPS_WINDOW: usize = 30;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Histogram {
    /// Upper edges in ms of all bins but the last (which is open-ended).
    pub edges_ms: Vec<f64>,
    /// `edges_ms.len() + 1` counts.
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Accuracy {
    pub correct: u64,
    pub labelled: u64,
}

/// The running figures, as sent to the page with each frame.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatsView {
    pub frames: u64,
    pub fps: f64,
    pub histogram: Histogram,
    /// Present once a labelled frame has run.
    pub accuracy: Option<Accuracy>,
}

pub struct LiveStats {
    frames: u64,
    recent: VecDeque<Instant>,
    counts: [u64; LATENCY_EDGES_MS.len() + 1],
    accuracy: Option<Accuracy>,
}

impl Default for LiveStats {
    fn default() -> Self {
        LiveStats {
            frames: 0,
            recent: VecDeque::with_capacity(FPS_WINDOW),
            counts: [0; LATENCY_EDGES_MS.len() + 1],
            accuracy: None,
        }
    }
}

impl LiveStats {
    /// One frame finished at `at`; `correct` is whether its top class was its label, when
    /// it has one.
    pub fn record(&mut self, at: Instant, latency_ms: f64, correct: Option<bool>) -> StatsView {
        self.frames += 1;
        if self.recent.len() == FPS_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(at);
        let bin = LATENCY_EDGES_MS
            .iter()
            .position(|&edge| latency_ms <= edge)
            .unwrap_or(LATENCY_EDGES_MS.len());
        self.counts[bin] += 1;
        if let Some(correct) = correct {
            let acc = self.accuracy.get_or_insert(Accuracy {
                correct: 0,
                labelled: 0,
            });
            acc.labelled += 1;
            acc.correct += u64::from(correct);
        }
        self.view()
    }

    fn view(&self) -> StatsView {
        let fps = match (self.recent.front(), self.recent.back()) {
            (Some(first), Some(last)) if self.recent.len() > 1 => {
                let secs = last.duration_since(*first).as_secs_f64();
                if secs > 0.0 {
                    (self.recent.len() - 1) as f64 / secs
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        StatsView {
            frames: self.frames,
            fps,
            histogram: Histogram {
                edges_ms: LATENCY_EDGES_MS.to_vec(),
                counts: self.counts.to_vec(),
            },
            accuracy: self.accuracy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn latencies_fall_in_their_bins_and_fps_follows_the_frame_times() {
        let mut stats = LiveStats::default();
        let t0 = Instant::now();
        stats.record(t0, 0.05, None);
        stats.record(t0 + Duration::from_millis(100), 3.0, None);
        let view = stats.record(t0 + Duration::from_millis(200), 9000.0, None);
        assert_eq!(view.frames, 3);
        assert_eq!(view.histogram.counts.iter().sum::<u64>(), 3);
        assert_eq!(view.histogram.counts[0], 1, "0.05 ms is in the first bin");
        assert_eq!(view.histogram.counts[5], 1, "3 ms is in the 2..5 ms bin");
        assert_eq!(
            *view.histogram.counts.last().unwrap(),
            1,
            "9 s is in the open bin"
        );
        assert!((view.fps - 10.0).abs() < 1e-6, "{}", view.fps);
        assert!(view.accuracy.is_none());
    }

    #[test]
    fn accuracy_counts_only_labelled_frames() {
        let mut stats = LiveStats::default();
        let t = Instant::now();
        stats.record(t, 1.0, Some(true));
        stats.record(t, 1.0, None);
        let view = stats.record(t, 1.0, Some(false));
        assert_eq!(
            view.accuracy,
            Some(Accuracy {
                correct: 1,
                labelled: 2
            })
        );
    }
}
