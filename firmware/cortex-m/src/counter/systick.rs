//! SysTick extended to 64 bits: QEMU's instruction count, the M0+'s cycle count.

use core::sync::atomic::{AtomicU32, Ordering};

use cbam_firmware_app::{Counter, CounterKind};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;

/// SysTick's counter is 24 bits wide.
const SYST_RELOAD: u32 = 0x00FF_FFFF;

/// SysTick wraps since start; SysTick's exception is its only writer, so a
/// load/store pair is enough (thumbv6m has no atomic read-modify-write).
static SYST_WRAPS: AtomicU32 = AtomicU32::new(0);

#[cortex_m_rt::exception]
fn SysTick() {
    SYST_WRAPS.store(
        SYST_WRAPS.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// SysTick on the core clock, extended to 64 bits by counting wraps.
///
/// Under QEMU with `-icount shift=0` one instruction takes 1 ns of virtual
/// time and SysTick ticks at the 25 MHz MPS2 core clock, so one tick is 40
/// instructions: `units_per_tick = 40` with [`CounterKind::Instructions`].
pub struct SysTickCounter {
    kind: CounterKind,
    units_per_tick: u64,
}

impl SysTickCounter {
    pub fn start(mut syst: SYST, kind: CounterKind, units_per_tick: u64) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(SYST_RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        // The counter reads 0 until its first reload from RVR; a wrap count
        // taken before that would make the first reading look later than
        // the next one.
        while SYST::get_current() == 0 {}
        SYST_WRAPS.store(0, Ordering::Relaxed);
        Self {
            kind,
            units_per_tick,
        }
    }

    fn ticks() -> u64 {
        loop {
            let wraps = SYST_WRAPS.load(Ordering::Relaxed);
            let current = SYST::get_current();
            // A wrap between the two reads would pair an old wrap count with a
            // new counter value: read again.
            if SYST_WRAPS.load(Ordering::Relaxed) == wraps {
                return u64::from(wraps) * u64::from(SYST_RELOAD + 1)
                    + u64::from(SYST_RELOAD - current);
            }
        }
    }
}

impl Counter for SysTickCounter {
    fn kind(&self) -> CounterKind {
        self.kind
    }

    fn now(&mut self) -> u64 {
        Self::ticks() * self.units_per_tick
    }
}
