//! `DelayNs` by spinning the core: the app only needs it to blink the LED.

use embedded_hal::delay::DelayNs;

pub struct SpinDelay {
    cycles_per_us: u32,
}

impl SpinDelay {
    pub fn new(clock_hz: u32) -> Self {
        Self {
            cycles_per_us: (clock_hz / 1_000_000).max(1),
        }
    }
}

impl DelayNs for SpinDelay {
    fn delay_ns(&mut self, ns: u32) {
        cortex_m::asm::delay(ns.div_ceil(1000).saturating_mul(self.cycles_per_us));
    }
}
