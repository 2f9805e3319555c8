//! cbam firmware for the ESP32-C3 DevKit, on esp-hal: the shared app with the
//! C3's cycle counter, a status pin, esp-hal's delay and defmt over the
//! built-in USB-Serial-JTAG (esp-println). With `eval` it serves `cbam eval --device`
//! over RTT through the same USB-JTAG (probe-rs), its log on RTT too.
#![no_std]
#![no_main]

mod cycles;

use cbam_firmware_app::Exit;
use esp_hal::delay::Delay;
use esp_hal::gpio::{Level, Output, OutputConfig};
// The test firmware's log; the evaluation firmware logs on RTT beside its link.
#[cfg(not(feature = "eval"))]
use esp_println as _;

cbam_firmware_app::firmware_app!();

// The second-stage bootloader refuses an image without an app descriptor.
esp_bootloader_esp_idf::esp_app_desc!();

/// No host to report to: the log carries the verdict, then the core parks.
struct Park;

impl Exit for Park {
    fn exit(&mut self, _passed: bool) -> ! {
        loop {
            core::hint::spin_loop();
        }
    }
}

#[esp_hal::main]
fn main() -> ! {
    // RTT's control block before anything can log.
    #[cfg(feature = "eval")]
    let link = cbam_firmware_app::transport::rtt::open();
    let peripherals = esp_hal::init(esp_hal::Config::default());
    // GPIO7 is free on the DevKitM-1/DevKitC-02 headers (their on-board LED on
    // GPIO8 is a WS2812 that needs a serial protocol): wire an LED to it.
    let led = Output::new(peripherals.GPIO7, Level::Low, OutputConfig::default());
    let board = cbam_firmware_app::Board {
        counter: cycles::CycleCounter::start(),
        led,
        delay: Delay::new(),
        exit: Park,
    };
    #[cfg(feature = "eval")]
    run_eval(board, link);
    #[cfg(not(feature = "eval"))]
    run_firmware(board)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    Park.exit(false)
}
