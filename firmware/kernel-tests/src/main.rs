//! cbam-core's shared kernel suite on the Cortex-M4 (mps2-an386 under QEMU, semihosting):
//! every entry point of the Arm DSP backend and every kernel built on them, on random
//! shapes and parameters, against the portable kernels and the i64 references, bit for
//! bit. The suite, its references and its parameter builders are the core's own
//! (feature `test-support`); this binary gives it memory and reports.
#![no_std]
#![no_main]

use cbam_core::kernels::test_support::{check_backend, Rng, BACKEND, SUITE_MEMORY};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};

/// A failed check panics with its case; say which, then fail the run.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("FAIL: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    // Semihosting exit does not return under QEMU; park the core if it ever does.
    loop {
        cortex_m::asm::wfi();
    }
}

/// The suite's working memory (its largest case's buffers), too large for the stack.
static mut MEMORY: [i8; SUITE_MEMORY] = [0; SUITE_MEMORY];

#[entry]
fn main() -> ! {
    if BACKEND != "arm_dsp" {
        hprintln!(
            "FAIL: this build's backend is {}, not the Arm DSP one",
            BACKEND
        );
        debug::exit(debug::EXIT_FAILURE);
    }
    // SAFETY: the only reference to MEMORY ever made, taken once before anything else
    // runs; the core is single and no interrupt handler touches MEMORY.
    let memory = unsafe { &mut *core::ptr::addr_of_mut!(MEMORY) };
    let mut rng = Rng::new(0x1234_5679);
    let mut total = 0u32;
    check_backend(&mut rng, memory, |check, outputs| {
        hprintln!("{}: {} outputs bit-exact", check, outputs);
        total += outputs;
    });
    hprintln!(
        "PASS: {} outputs of the {} backend's kernels bit-exact",
        total,
        BACKEND
    );
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}
