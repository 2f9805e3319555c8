//! ST Nucleo-F411RE: STM32F411RE (Cortex-M4F), user LED LD2 on PA5, defmt over
//! RTT, DWT cycle counts. Runs on the 16 MHz HSI the chip boots with: cycles
//! are cycles whatever the clock.

use cbam_firmware_app::Board;

use crate::counter::DwtCounter;
use crate::delay::SpinDelay;
use crate::exit::SemihostingExit;
use crate::pin::{read_reg, write_reg, MmioPin};

const HSI_HZ: u32 = 16_000_000;
// RM0383 memory map and register offsets.
const RCC_AHB1ENR: usize = 0x4002_3800 + 0x30;
const GPIOA_MODER: usize = 0x4002_0000;
const GPIOA_BSRR: usize = 0x4002_0000 + 0x18;
const LED_PIN: u32 = 5;

pub fn init() -> Board<DwtCounter, MmioPin, SpinDelay, SemihostingExit> {
    let Some(cp) = cortex_m::Peripherals::take() else {
        defmt::panic!("core peripherals taken twice")
    };
    // SAFETY: RM0383 registers: enable GPIOA's clock, make PA5 an output; BSRR
    // bit n sets pin n and bit n+16 resets it.
    let led = unsafe {
        write_reg(RCC_AHB1ENR, read_reg(RCC_AHB1ENR) | 1);
        let moder = read_reg(GPIOA_MODER) & !(0b11 << (2 * LED_PIN));
        write_reg(GPIOA_MODER, moder | (0b01 << (2 * LED_PIN)));
        MmioPin::set_clear(
            (GPIOA_BSRR, 1 << LED_PIN),
            (GPIOA_BSRR, 1 << (LED_PIN + 16)),
        )
    };
    Board {
        counter: DwtCounter::start(cp.DCB, cp.DWT),
        led,
        delay: SpinDelay::new(HSI_HZ),
        exit: SemihostingExit,
    }
}
