//! One module per board: clocks, the LED pin, the counter. Selected by the
//! board's cargo feature (firmware/boards.toml). Here too: the log transport and, for the
//! evaluation firmware, the debug link of each board family.

#[cfg(feature = "qemu")]
mod mps2;
#[cfg(feature = "qemu")]
pub use mps2::init;

#[cfg(feature = "nucleo-f411re")]
mod nucleo_f411re;
#[cfg(feature = "nucleo-f411re")]
pub use nucleo_f411re::init;

#[cfg(feature = "nrf52840dk")]
mod nrf52840dk;
#[cfg(feature = "nrf52840dk")]
pub use nrf52840dk::init;

#[cfg(feature = "rpi-pico")]
mod rpi_pico;
#[cfg(feature = "rpi-pico")]
pub use rpi_pico::init;

/// Starts the defmt log of the test firmware (semihosting needs no start).
#[cfg(not(feature = "eval"))]
pub fn init_log() {
    #[cfg(feature = "rtt")]
    cbam_firmware_app::transport::rtt::init_log();
}

/// The evaluation firmware's debug link on QEMU: semihosting stdin/stdout.
#[cfg(all(feature = "eval", feature = "qemu"))]
pub fn open_link() -> cbam_firmware_app::transport::semihosting::SemihostingPort {
    match cbam_firmware_app::transport::semihosting::SemihostingPort::open() {
        Ok(port) => port,
        Err(_) => defmt::panic!("no semihosting: run QEMU with -semihosting-config enable=on"),
    }
}

/// The evaluation firmware's debug link on a real board: RTT channels (and the log on RTT).
#[cfg(all(feature = "eval", feature = "rtt"))]
pub use cbam_firmware_app::transport::rtt::open as open_link;

#[cfg(not(any(
    feature = "qemu",
    feature = "nucleo-f411re",
    feature = "nrf52840dk",
    feature = "rpi-pico"
)))]
compile_error!(
    "enable one board feature: mps2-an386, mps2-an385, nucleo-f411re, nrf52840dk, rpi-pico"
);
