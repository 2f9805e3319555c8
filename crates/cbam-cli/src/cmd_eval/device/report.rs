//! The device run's numbers: what the table and `--json` show.

use cbam_link::LinkStats;
use serde::Serialize;

/// Order statistics of a counter over the images.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Spread {
    /// "cycles" or "instructions".
    pub unit: &'static str,
    pub min: u64,
    pub median: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

impl Spread {
    /// `None` for no values. Percentiles are nearest-rank.
    pub fn of(values: &[u64], unit: &'static str) -> Option<Self> {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let rank = |p: f64| {
            let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[i - 1]
        };
        Some(Spread {
            unit,
            min: *sorted.first()?,
            median: rank(0.5),
            p99: rank(0.99),
            max: *sorted.last()?,
            mean: sorted.iter().sum::<u64>() as f64 / sorted.len() as f64,
        })
    }
}

/// What the link did, from the host's side.
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    pub transport: String,
    pub requests: u64,
    pub resent: u64,
    pub damaged_frames: u64,
    pub naks: u64,
    pub timeouts: u64,
}

impl LinkReport {
    pub fn new(transport: String, stats: &LinkStats) -> Self {
        LinkReport {
            transport,
            requests: stats.requests,
            resent: stats.resent,
            damaged_frames: stats.corrupt,
            naks: stats.naks,
            timeouts: stats.timeouts,
        }
    }
}

/// The RAM the model takes on the device (arena, input and output) and what the firmware
/// set aside for it, in bytes.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRam {
    pub needed: u32,
    pub capacity: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Firmware {
    pub build: String,
    pub elf: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub model: String,
    pub accuracy: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    pub data: String,
    pub model: String,
    pub board: String,
    pub firmware: Firmware,
    pub n: usize,
    /// Top-1 accuracy of the device's outputs.
    pub accuracy: Option<f64>,
    /// Images whose largest output two or more classes share (the first one counts).
    pub ties: usize,
    /// Images whose output differs from the host core's in any byte.
    pub host_mismatches: usize,
    /// The first few of them, by index in the data.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mismatched_images: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// The model alone, per image, as the device's counter measured it.
    pub latency: Option<Spread>,
    /// Images per second through the link, host compare included.
    pub images_per_second: f64,
    /// The counter spent on the link per image on the device (reading, checking and
    /// answering frames; idle waiting excluded), after the first image.
    pub link_overhead: Option<Spread>,
    pub ram: DeviceRam,
    pub link: LinkReport,
    pub notes: Vec<String>,
}

impl DeviceReport {
    pub fn render(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", v * 100.0));
        let mut t = format!("data: {} ({} samples)\n", self.data, self.n);
        t.push_str(&format!("model: {}\n", self.model));
        t.push_str(&format!(
            "board: {} ({}; firmware {})\n",
            self.board, self.link.transport, self.firmware.build
        ));
        t.push_str(&format!(
            "accuracy on the device: {} ({} ties)\n",
            pct(self.accuracy),
            self.ties
        ));
        t.push_str(&format!(
            "outputs differing from the host core: {}",
            self.host_mismatches
        ));
        if !self.mismatched_images.is_empty() {
            t.push_str(&format!(" (images {:?})", self.mismatched_images));
        }
        t.push('\n');
        if let Some(a) = self.agreement {
            t.push_str(&format!(
                "top-1 agreement with the reference: {}\n",
                pct(Some(a))
            ));
        }
        for (what, spread) in [
            ("latency per inference", &self.latency),
            ("link overhead per image", &self.link_overhead),
        ] {
            if let Some(s) = spread {
                t.push_str(&format!(
                    "{what}: median {} {}, min {}, p99 {}, max {} (mean {:.0})\n",
                    s.median, s.unit, s.min, s.p99, s.max, s.mean
                ));
            }
        }
        t.push_str(&format!(
            "device RAM for the model: {} of {} bytes\n",
            self.ram.needed, self.ram.capacity
        ));
        t.push_str(&format!(
            "throughput: {:.1} images/s; link: {} requests, {} resent, {} damaged frames\n",
            self.images_per_second, self.link.requests, self.link.resent, self.link.damaged_frames
        ));
        for note in &self.notes {
            t.push_str(&format!("note: {note}\n"));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=200).rev().collect();
        let s = Spread::of(&values, "cycles").unwrap();
        assert_eq!((s.min, s.median, s.p99, s.max), (1, 100, 198, 200));
        assert_eq!(s.mean, 100.5);
        let one = Spread::of(&[7], "cycles").unwrap();
        assert_eq!((one.median, one.p99), (7, 7));
        assert!(Spread::of(&[], "cycles").is_none());
    }
}
