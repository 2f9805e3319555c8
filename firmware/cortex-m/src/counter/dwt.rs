//! The DWT cycle counter of Cortex-M3/M4 silicon.

use cbam_firmware_app::{Counter, CounterKind};

/// The DWT cycle counter, extended to 64 bits in software (it wraps after
/// 2^32 cycles, 43 s at 100 MHz: far longer than one inference).
pub struct DwtCounter {
    high: u64,
    last: u32,
}

impl DwtCounter {
    pub fn start(mut dcb: cortex_m::peripheral::DCB, mut dwt: cortex_m::peripheral::DWT) -> Self {
        dcb.enable_trace();
        cortex_m::peripheral::DWT::unlock();
        dwt.set_cycle_count(0);
        dwt.enable_cycle_counter();
        Self { high: 0, last: 0 }
    }
}

impl Counter for DwtCounter {
    fn kind(&self) -> CounterKind {
        CounterKind::Cycles
    }

    fn now(&mut self) -> u64 {
        let now = cortex_m::peripheral::DWT::cycle_count();
        if now < self.last {
            self.high += 1 << 32;
        }
        self.last = now;
        self.high | u64::from(now)
    }
}
