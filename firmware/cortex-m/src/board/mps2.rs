//! QEMU `mps2-an386` (Cortex-M4F) and `mps2-an385` (Cortex-M3): defmt over
//! semihosting, instruction counts from SysTick under `-icount shift=0`.

use cbam_firmware_app::{Board, Counter, CounterKind};
// The test firmware's log; the evaluation firmware's goes over the link instead.
#[cfg(not(feature = "eval"))]
use defmt_semihosting as _;

use crate::counter::SysTickCounter;
use crate::delay::SpinDelay;
use crate::exit::SemihostingExit;
use crate::pin::MmioPin;

/// AN385/AN386 core clock.
const CLOCK_HZ: u32 = 25_000_000;
/// `-icount shift=0`: 1 instruction per virtual ns, i.e. 1e9 / CLOCK_HZ per tick.
const INSTRUCTIONS_PER_TICK: u64 = 1_000_000_000 / CLOCK_HZ as u64;
/// FPGAIO LED register (AN386 application note, "FPGA system control"); LED0 is bit 0.
const FPGAIO_LED: usize = 0x4002_8000;

pub fn init() -> Board<SysTickCounter, MmioPin, SpinDelay, SemihostingExit> {
    let Some(cp) = cortex_m::Peripherals::take() else {
        defmt::panic!("core peripherals taken twice")
    };
    let mut counter =
        SysTickCounter::start(cp.SYST, CounterKind::Instructions, INSTRUCTIONS_PER_TICK);
    check_counter(&mut counter);
    Board {
        counter,
        // SAFETY: FPGAIO_LED is the LED register and only this pin writes it.
        led: unsafe { MmioPin::read_modify_write(FPGAIO_LED, 1) },
        delay: SpinDelay::new(CLOCK_HZ),
        exit: SemihostingExit,
    }
}

/// Logs what the counter reads for a loop of a known instruction count, so
/// every run shows that "instructions" are instructions (to one 40-instruction
/// SysTick tick).
fn check_counter(counter: &mut SysTickCounter) {
    const ITERATIONS: u32 = 500_000;
    let (_, measured) = counter.measure(|| {
        // SAFETY: a register-only countdown loop, two instructions per iteration.
        unsafe {
            core::arch::asm!(
                "2:",
                "subs {n}, #1",
                "bne 2b",
                n = inout(reg) ITERATIONS => _,
                options(nostack),
            );
        }
    });
    defmt::info!(
        "counter check: a {=u32}-instruction loop measured {=u64} instructions",
        2 * ITERATIONS,
        measured
    );
}
