//! cbam firmware for QEMU's riscv32 `virt` machine.
//!
//! No emulator here runs ESP32-C3 images; this firmware proves the core's
//! integer-only path on the same ISA (rv32imc, no FPU, no DSP) bit-exact with
//! the host core, with the same app and test images as every other firmware.
#![no_std]
#![no_main]

mod uart_logger;
mod virt;

use cbam_firmware_app::Exit as _;

cbam_firmware_app::firmware_app!();

#[riscv_rt::entry]
fn main() -> ! {
    run_firmware(virt::init())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    virt::TestDeviceExit.exit(false)
}
