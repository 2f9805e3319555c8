//! Ending the run with a verdict the host sees.

use cortex_m_semihosting::debug;

/// Semihosting `SYS_EXIT`: QEMU exits with 0 (pass) or 1 (fail); `probe-rs run`
/// ends with the same code. Only meaningful with a debugger or QEMU attached.
pub struct SemihostingExit;

impl cbam_firmware_app::Exit for SemihostingExit {
    fn exit(&mut self, passed: bool) -> ! {
        let ram = crate::stack::usage();
        defmt::info!(
            "CBAM-RAM statics={=usize} stack_peak={=usize} margin={=usize}",
            ram.statics,
            ram.stack_peak,
            ram.margin
        );
        debug::exit(if passed {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
        // Without a host to stop us, park the core.
        loop {
            cortex_m::asm::wfi();
        }
    }
}
