//! One module per board: clocks, the LED pin, the counter. Selected by the
//! board's cargo feature (firmware/boards.toml).

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

#[cfg(not(any(
    feature = "qemu",
    feature = "nucleo-f411re",
    feature = "nrf52840dk",
    feature = "rpi-pico"
)))]
compile_error!(
    "enable one board feature: mps2-an386, mps2-an385, nucleo-f411re, nrf52840dk, rpi-pico"
);
