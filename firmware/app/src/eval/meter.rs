//! The counter spent on the link: between bytes arriving and the device waiting again,
//! less the inference. Idle waiting is not counted, so the figure is the link's cost per
//! image on the device, not the host's speed.

/// Accumulates counter spans while work on the link is going on.
#[derive(Debug, Default)]
pub struct LinkMeter {
    spent: u64,
    since: Option<u64>,
}

impl LinkMeter {
    /// Link work starts (or goes on) at counter value `now`.
    pub fn resume(&mut self, now: u64) {
        if self.since.is_none() {
            self.since = Some(now);
        }
    }

    /// Link work stops at `now` (the device waits, or the model runs).
    pub fn pause(&mut self, now: u64) {
        if let Some(start) = self.since.take() {
            self.spent += now.saturating_sub(start);
        }
    }

    /// The spent count, which starts again from zero.
    pub fn take(&mut self) -> u64 {
        core::mem::take(&mut self.spent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_spans_between_resume_and_pause_count() {
        let mut m = LinkMeter::default();
        m.resume(100);
        m.resume(150); // still going: the first start stands
        m.pause(160);
        m.pause(500); // already paused: nothing more
        m.resume(1000);
        m.pause(1005);
        assert_eq!(m.take(), 65);
        assert_eq!(m.take(), 0);
    }
}
