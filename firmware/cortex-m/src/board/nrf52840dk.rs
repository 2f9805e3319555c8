//! Nordic nRF52840-DK: nRF52840 (Cortex-M4F), LED1 on P0.13 (active low),
//! defmt over RTT, DWT cycle counts at the 64 MHz core clock.

use cbam_firmware_app::Board;

use crate::counter::DwtCounter;
use crate::delay::SpinDelay;
use crate::exit::SemihostingExit;
use crate::pin::{write_reg, MmioPin};

const CLOCK_HZ: u32 = 64_000_000;
// nRF52840 Product Specification, GPIO P0 registers.
const P0_OUTSET: usize = 0x5000_0508;
const P0_OUTCLR: usize = 0x5000_050C;
const P0_DIRSET: usize = 0x5000_0518;
const LED1: u32 = 1 << 13;

pub fn init() -> Board<DwtCounter, MmioPin, SpinDelay, SemihostingExit> {
    let Some(cp) = cortex_m::Peripherals::take() else {
        defmt::panic!("core peripherals taken twice")
    };
    // SAFETY: P0 register strobes for pin 13 only. The LED is wired to VDD, so
    // "on" (set_high) drives the pin low.
    let led = unsafe {
        write_reg(P0_OUTSET, LED1);
        write_reg(P0_DIRSET, LED1);
        MmioPin::set_clear((P0_OUTCLR, LED1), (P0_OUTSET, LED1))
    };
    Board {
        counter: DwtCounter::start(cp.DCB, cp.DWT),
        led,
        delay: SpinDelay::new(CLOCK_HZ),
        exit: SemihostingExit,
    }
}
