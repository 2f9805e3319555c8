//! Raspberry Pi Pico: RP2040 (Cortex-M0+), LED on GPIO25, defmt over RTT.
//! The M0+ has no DWT cycle counter, so SysTick on the core clock counts
//! cycles. No clock setup: the core runs on the ring oscillator it boots with,
//! which changes the wall time, not the cycle count.

use cbam_firmware_app::{Board, CounterKind};

use crate::counter::SysTickCounter;
use crate::delay::SpinDelay;
use crate::exit::SemihostingExit;
use crate::pin::{read_reg, write_reg, MmioPin};

/// The second-stage bootloader the boot ROM loads from the first 256 bytes of
/// flash (memory.x's BOOT2 region): sets up XIP for the Pico's W25Q080.
#[link_section = ".boot2"]
#[used]
pub static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// Nominal ring-oscillator frequency after reset (RP2040 datasheet 2.17).
const ROSC_HZ: u32 = 6_500_000;
// RP2040 datasheet register map.
const RESETS_RESET_CLR: usize = 0x4000_C000 + 0x3000;
const RESETS_RESET_DONE: usize = 0x4000_C000 + 0x8;
const IO_BANK0_GPIO25_CTRL: usize = 0x4001_4000 + 0xCC;
const SIO_GPIO_OUT_SET: usize = 0xD000_0014;
const SIO_GPIO_OUT_CLR: usize = 0xD000_0018;
const SIO_GPIO_OE_SET: usize = 0xD000_0024;
const RESET_IO_BANK0: u32 = 1 << 5;
const RESET_PADS_BANK0: u32 = 1 << 8;
const FUNCSEL_SIO: u32 = 5;
const LED: u32 = 1 << 25;

pub fn init() -> Board<SysTickCounter, MmioPin, SpinDelay, SemihostingExit> {
    let Some(cp) = cortex_m::Peripherals::take() else {
        defmt::panic!("core peripherals taken twice")
    };
    // SAFETY: RP2040 registers: take IO_BANK0/PADS_BANK0 out of reset (atomic
    // clear alias), route GPIO25 to SIO and enable its output.
    let led = unsafe {
        write_reg(RESETS_RESET_CLR, RESET_IO_BANK0 | RESET_PADS_BANK0);
        while read_reg(RESETS_RESET_DONE) & (RESET_IO_BANK0 | RESET_PADS_BANK0)
            != (RESET_IO_BANK0 | RESET_PADS_BANK0)
        {}
        write_reg(IO_BANK0_GPIO25_CTRL, FUNCSEL_SIO);
        write_reg(SIO_GPIO_OE_SET, LED);
        MmioPin::set_clear((SIO_GPIO_OUT_SET, LED), (SIO_GPIO_OUT_CLR, LED))
    };
    Board {
        counter: SysTickCounter::start(cp.SYST, CounterKind::Cycles, 1),
        led,
        delay: SpinDelay::new(ROSC_HZ),
        exit: SemihostingExit,
    }
}
