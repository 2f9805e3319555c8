//! `defmt` global logger writing frames to the `virt` machine's NS16550A UART;
//! `run.sh` pipes QEMU's serial output into `defmt-print`.

use core::cell::UnsafeCell;

/// UART0 of QEMU `virt` (hw/riscv/virt.c `VIRT_UART0`).
const UART_THR: usize = 0x1000_0000;
const UART_LSR: usize = 0x1000_0005;
const LSR_THR_EMPTY: u8 = 1 << 5;

#[defmt::global_logger]
struct UartLogger;

/// Logger state, touched only between `acquire` and `release`, i.e. inside
/// the critical section `acquire` enters.
struct State {
    encoder: defmt::Encoder,
    restore: critical_section::RestoreState,
}

struct Shared(UnsafeCell<State>);

// SAFETY: accessed only inside the critical section held from acquire to release.
unsafe impl Sync for Shared {}

static STATE: Shared = Shared(UnsafeCell::new(State {
    encoder: defmt::Encoder::new(),
    restore: critical_section::RestoreState::invalid(),
}));

fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        // SAFETY: UART registers of the virt machine; only the logger writes them.
        unsafe {
            while core::ptr::read_volatile(UART_LSR as *const u8) & LSR_THR_EMPTY == 0 {}
            core::ptr::write_volatile(UART_THR as *mut u8, b);
        }
    }
}

// SAFETY: defmt's contract: acquire/release bracket every frame, and the
// critical section makes the frame exclusive on this single hart.
unsafe impl defmt::Logger for UartLogger {
    fn acquire() {
        // SAFETY: released in `release`, which defmt always calls after `acquire`.
        let restore = unsafe { critical_section::acquire() };
        // SAFETY: we are inside the critical section.
        let state = unsafe { &mut *STATE.0.get() };
        state.restore = restore;
        state.encoder.start_frame(write_bytes);
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: called after `acquire`, inside its critical section.
        let state = unsafe { &mut *STATE.0.get() };
        state.encoder.end_frame(write_bytes);
        let restore = state.restore;
        // SAFETY: pairs with the `acquire` above.
        unsafe { critical_section::release(restore) };
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: called between `acquire` and `release`.
        let state = unsafe { &mut *STATE.0.get() };
        state.encoder.write(bytes, write_bytes);
    }
}
