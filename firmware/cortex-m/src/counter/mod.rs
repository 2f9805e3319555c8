//! Latency counters: SysTick (QEMU, and Cortex-M0+ which has no DWT) and the
//! DWT cycle counter (Cortex-M3/M4 silicon).

#[cfg(feature = "dwt")]
mod dwt;
#[cfg(feature = "systick")]
mod systick;

#[cfg(feature = "dwt")]
pub use dwt::DwtCounter;
#[cfg(feature = "systick")]
pub use systick::SysTickCounter;
