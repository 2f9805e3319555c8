//! cbam firmware for Cortex-M: board wiring around the shared `cbam-firmware-app`.
#![no_std]
#![no_main]

mod board;
mod counter;
mod delay;
mod exit;
mod pin;
mod stack;

use cbam_firmware_app::Exit as _;

cbam_firmware_app::firmware_app!();

#[cortex_m_rt::entry]
fn main() -> ! {
    stack::paint();
    #[cfg(feature = "eval")]
    {
        // The link first: on RTT boards it also carries the log, which must exist before
        // the first log line.
        let link = board::open_link();
        run_eval(board::init(), link);
    }
    #[cfg(not(feature = "eval"))]
    {
        board::init_log();
        run_firmware(board::init())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    exit::SemihostingExit.exit(false)
}

#[cortex_m_rt::exception]
unsafe fn HardFault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
    defmt::error!("hard fault at pc {=u32:#010x}", frame.pc());
    exit::SemihostingExit.exit(false)
}
