//! The ESP32-C3's machine performance counter: the C3 has no `mcycle`; its
//! custom CSRs `mpcer` (0x7E0, event select), `mpcmr` (0x7E1, mode) and
//! `mpccr` (0x7E2, count) count core clock cycles when event bit 0 is set
//! (ESP32-C3 Technical Reference Manual, "Performance Counter").

use cbam_firmware_app::{Counter, CounterKind};

/// `mpccr` extended to 64 bits in software: it wraps after 2^32 cycles
/// (27 s at 160 MHz), far longer than one inference.
pub struct CycleCounter {
    high: u64,
    last: u32,
}

impl CycleCounter {
    pub fn start() -> Self {
        // SAFETY: writes only the performance-counter CSRs: count cycles
        // (event bit 0), counting enabled (mode 1), counter cleared.
        unsafe {
            core::arch::asm!("csrw 0x7E0, {0}", "csrw 0x7E1, {1}", "csrw 0x7E2, zero", in(reg) 1u32, in(reg) 1u32);
        }
        Self { high: 0, last: 0 }
    }

    fn read() -> u32 {
        let count: u32;
        // SAFETY: reading the cycle count CSR has no side effects.
        unsafe { core::arch::asm!("csrr {0}, 0x7E2", out(reg) count) };
        count
    }
}

impl Counter for CycleCounter {
    fn kind(&self) -> CounterKind {
        CounterKind::Cycles
    }

    fn now(&mut self) -> u64 {
        let now = Self::read();
        if now < self.last {
            self.high += 1 << 32;
        }
        self.last = now;
        self.high | u64::from(now)
    }
}
