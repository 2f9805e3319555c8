//! cbam firmware for QEMU's riscv32 `virt` machine.
//!
//! No emulator here runs ESP32-C3 images; this firmware proves the core's
//! integer-only path on the same ISA (rv32imc, no FPU, no DSP) bit-exact with
//! the host core, with the same app and test images as every other firmware.
//! With `eval` it serves `cbam eval --device` over semihosting instead.
#![no_std]
#![no_main]

#[cfg(not(feature = "eval"))]
mod uart_logger;
mod virt;

use cbam_firmware_app::Exit as _;

cbam_firmware_app::firmware_app!();

#[riscv_rt::entry]
fn main() -> ! {
    #[cfg(feature = "eval")]
    {
        use cbam_firmware_app::transport::semihosting::SemihostingPort;
        let Ok(link) = SemihostingPort::open() else {
            defmt::panic!("no semihosting: run QEMU with -semihosting-config enable=on")
        };
        run_eval(virt::init(), link);
    }
    #[cfg(not(feature = "eval"))]
    run_firmware(virt::init())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    virt::TestDeviceExit.exit(false)
}
