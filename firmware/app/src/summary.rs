//! Accumulated results of a test run and the numbers derived from them.

/// What a run over the test set found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub images: u32,
    /// Images whose output equals the host core's bit for bit.
    pub bit_exact: u32,
    /// Images whose top class equals the label.
    pub correct: u32,
    /// Images that carry a label (a model whose input is not a whole
    /// Fashion-MNIST image is fed unlabeled bytes).
    pub labeled: u32,
    /// Whether outputs were compared (the blob is the one the build computed
    /// its expected outputs with).
    pub compared: bool,
    /// Multiply-accumulates per inference (blob header).
    pub macs: u64,
    /// Arena bytes the model uses.
    pub arena_size: usize,
    pub total_count: u64,
    pub min_count: u64,
    pub max_count: u64,
}

impl Summary {
    pub fn new(compared: bool, macs: u64, arena_size: usize) -> Self {
        Self {
            compared,
            macs,
            arena_size,
            min_count: u64::MAX,
            ..Self::default()
        }
    }

    /// `correct` is `None` for an unlabeled input.
    pub fn record(&mut self, count: u64, exact: bool, correct: Option<bool>) {
        self.images += 1;
        self.bit_exact += u32::from(exact);
        self.labeled += u32::from(correct.is_some());
        self.correct += u32::from(correct == Some(true));
        self.total_count += count;
        self.min_count = self.min_count.min(count);
        self.max_count = self.max_count.max(count);
    }

    /// Every image ran, and every compared output matched the host.
    pub fn passed(&self) -> bool {
        self.images > 0 && (!self.compared || self.bit_exact == self.images)
    }

    pub fn mean_count(&self) -> u64 {
        self.total_count
            .checked_div(u64::from(self.images))
            .unwrap_or(0)
    }

    /// Mean count per multiply-accumulate, in hundredths (fixed point: no
    /// float formatting on the device).
    pub fn per_mac_centi(&self) -> u64 {
        (self.mean_count() * 100)
            .checked_div(self.macs)
            .unwrap_or(0)
    }

    /// Accuracy over the labeled images, in tenths of a percent.
    pub fn accuracy_permille(&self) -> u32 {
        (self.correct * 1000).checked_div(self.labeled).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatch_fails_the_run() {
        let mut s = Summary::new(true, 100_000, 0);
        s.record(100, true, Some(true));
        s.record(300, false, Some(false));
        assert!(!s.passed());
        assert_eq!((s.mean_count(), s.min_count, s.max_count), (200, 100, 300));
        assert_eq!(s.accuracy_permille(), 500);
    }

    #[test]
    fn all_exact_passes_even_with_wrong_classes() {
        let mut s = Summary::new(true, 100_000, 0);
        s.record(10, true, Some(false));
        assert!(s.passed());
    }

    #[test]
    fn an_uncompared_run_passes_when_it_ran() {
        let mut s = Summary::new(false, 0, 0);
        assert!(!s.passed(), "no images ran");
        s.record(10, false, None);
        assert!(s.passed());
    }

    #[test]
    fn accuracy_counts_only_labeled_images() {
        let mut s = Summary::new(true, 0, 0);
        s.record(1, true, Some(true));
        s.record(1, true, None);
        assert_eq!((s.images, s.labeled, s.accuracy_permille()), (2, 1, 1000));
    }

    #[test]
    fn per_mac_is_in_hundredths() {
        let mut s = Summary::new(true, 100_000, 0);
        s.record(1_234_567, true, Some(true));
        assert_eq!(s.per_mac_centi(), 1234);
        let unknown_macs = Summary { macs: 0, ..s };
        assert_eq!(unknown_macs.per_mac_centi(), 0);
    }
}
