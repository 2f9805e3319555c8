//! A GPIO output driven through memory-mapped registers: enough for a status
//! LED without pulling a whole HAL into the firmware.

use core::convert::Infallible;

use embedded_hal::digital::{ErrorType, OutputPin};

/// How the pin's level is written.
// The QEMU boards need only the FPGAIO register, the real boards only strobes.
enum Registers {
    /// Write-1-to-set / write-1-to-clear strobes (STM32 BSRR, nRF OUTSET/OUTCLR,
    /// RP2040 SIO); STM32 has both in one register with different bits.
    #[cfg(feature = "gpio-strobes")]
    SetClear {
        set: (usize, u32),
        clear: (usize, u32),
    },
    /// A plain read/write register (the MPS2 FPGAIO LED register).
    #[cfg(feature = "qemu")]
    ReadModifyWrite { reg: usize, mask: u32 },
}

pub struct MmioPin {
    regs: Registers,
}

impl MmioPin {
    /// # Safety
    /// `set` and `clear` must be (register address, bit mask) strobes that drive
    /// this pin high and low, with the pin already configured as an output.
    #[cfg(feature = "gpio-strobes")]
    pub const unsafe fn set_clear(set: (usize, u32), clear: (usize, u32)) -> Self {
        Self {
            regs: Registers::SetClear { set, clear },
        }
    }

    /// # Safety
    /// `reg` must be the address of a read/write output register that no one
    /// else writes.
    #[cfg(feature = "qemu")]
    pub const unsafe fn read_modify_write(reg: usize, mask: u32) -> Self {
        Self {
            regs: Registers::ReadModifyWrite { reg, mask },
        }
    }

    fn drive(&mut self, high: bool) {
        // SAFETY: the constructors' contracts make these valid device registers.
        unsafe {
            match self.regs {
                #[cfg(feature = "gpio-strobes")]
                Registers::SetClear { set, clear } => {
                    let (reg, mask) = if high { set } else { clear };
                    core::ptr::write_volatile(reg as *mut u32, mask);
                }
                #[cfg(feature = "qemu")]
                Registers::ReadModifyWrite { reg, mask } => {
                    let old = core::ptr::read_volatile(reg as *const u32);
                    let new = if high { old | mask } else { old & !mask };
                    core::ptr::write_volatile(reg as *mut u32, new);
                }
            }
        }
    }
}

impl ErrorType for MmioPin {
    type Error = Infallible;
}

impl OutputPin for MmioPin {
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.drive(true);
        Ok(())
    }

    fn set_low(&mut self) -> Result<(), Infallible> {
        self.drive(false);
        Ok(())
    }
}

/// Writes `value` to a device register.
#[cfg(feature = "gpio-strobes")]
///
/// # Safety
/// `addr` must be a writable device register whose new value has no effect
/// beyond the pin being configured.
pub unsafe fn write_reg(addr: usize, value: u32) {
    core::ptr::write_volatile(addr as *mut u32, value);
}

/// Reads a device register.
#[cfg(any(feature = "nucleo-f411re", feature = "rpi-pico"))]
///
/// # Safety
/// `addr` must be a readable device register without read side effects.
pub unsafe fn read_reg(addr: usize) -> u32 {
    core::ptr::read_volatile(addr as *const u32)
}
