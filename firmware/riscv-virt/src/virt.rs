//! QEMU `virt` wiring: the SiFive test device for the exit code, `minstret` for
//! instruction counts, and no LED (the machine has none).

use core::convert::Infallible;

use cbam_firmware_app::{Board, Counter, CounterKind, Exit};
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType, OutputPin};

/// SiFive test device (QEMU hw/riscv/virt.c `VIRT_TEST`).
const TEST_DEVICE: usize = 0x0010_0000;
const TEST_PASS: u32 = 0x5555;
const TEST_FAIL: u32 = 0x3333;

pub fn init() -> Board<Instret, NoLed, InstretDelay, TestDeviceExit> {
    Board {
        counter: Instret,
        led: NoLed,
        delay: InstretDelay,
        exit: TestDeviceExit,
    }
}

/// `minstret`: retired instructions. Under `-icount shift=0` QEMU derives it
/// from the instruction counter, so it is exact and repeatable.
pub struct Instret;

impl Counter for Instret {
    fn kind(&self) -> CounterKind {
        CounterKind::Instructions
    }

    fn now(&mut self) -> u64 {
        riscv::register::minstret::read64()
    }
}

/// Spins for `ns` virtual nanoseconds, one instruction each under `-icount shift=0`.
pub struct InstretDelay;

impl DelayNs for InstretDelay {
    fn delay_ns(&mut self, ns: u32) {
        let end = Instret.now() + u64::from(ns);
        while Instret.now() < end {}
    }
}

/// `virt` has no user LED: status is the exit code and the log.
pub struct NoLed;

impl ErrorType for NoLed {
    type Error = Infallible;
}

impl OutputPin for NoLed {
    fn set_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }

    fn set_low(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// QEMU exits with 0 on `0x5555`, and with `code` on `(code << 16) | 0x3333`.
pub struct TestDeviceExit;

impl Exit for TestDeviceExit {
    fn exit(&mut self, passed: bool) -> ! {
        let value = if passed {
            TEST_PASS
        } else {
            (1 << 16) | TEST_FAIL
        };
        // SAFETY: the test device register; writing it ends the emulation.
        unsafe { core::ptr::write_volatile(TEST_DEVICE as *mut u32, value) };
        loop {
            riscv::asm::wfi();
        }
    }
}
