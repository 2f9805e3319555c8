//! How much RAM the run really used. The linker checks that the statics (the arena among
//! them) fit; nothing checks the stack, which grows down from the top of RAM towards them.
//! So the gap between the statics and the stack pointer is painted at start-up and, at the
//! end, the words still painted are counted: the deepest the stack went, and the margin left
//! above the statics. A run in a RAM-limited link that ends with a margin proves that
//! arena, statics and stack fit together.

use core::ptr;

/// A word a zeroed buffer or a stored address is unlikely to hold.
const PAINT: u32 = 0xC0FF_EE5A;

/// Bytes below the stack pointer at painting time that stay unpainted: `paint`'s own frame.
const GUARD: usize = 64;

extern "C" {
    // cortex-m-rt's link.x: the first byte of RAM's .data, the end of the statics (where
    // the stack may grow to) and the initial stack pointer (the top of RAM).
    static __sdata: u32;
    static _stack_end: u32;
    static _stack_start: u32;
}

fn bounds() -> (usize, usize, usize) {
    // Only the linker symbols' addresses are taken, never their values.
    (
        ptr::addr_of!(__sdata) as usize,
        ptr::addr_of!(_stack_end) as usize,
        ptr::addr_of!(_stack_start) as usize,
    )
}

/// Paints the free RAM between the statics and the current stack frame. Call it first in
/// `main`, before anything deep runs.
pub fn paint() {
    let (_, bottom, _) = bounds();
    let top = (cortex_m::register::msp::read() as usize).saturating_sub(GUARD) & !3;
    let mut at = bottom;
    while at < top {
        // SAFETY: [bottom, top) lies between the end of the statics and the live stack
        // frames, RAM that nothing else owns at this point.
        unsafe { ptr::with_exposed_provenance_mut::<u32>(at).write_volatile(PAINT) };
        at += 4;
    }
}

/// RAM use at the end of a run, in bytes.
pub struct Usage {
    /// .data, .bss and .uninit: the arena, the log buffers, every static.
    pub statics: usize,
    /// The deepest the stack went.
    pub stack_peak: usize,
    /// Never touched between the statics and that deepest point.
    pub margin: usize,
}

/// What [`paint`] left untouched, counted from the statics upwards.
pub fn usage() -> Usage {
    let (ram, bottom, top) = bounds();
    let mut at = bottom;
    // SAFETY: reads of the RAM `paint` wrote, all inside [bottom, top).
    while at < top && unsafe { ptr::with_exposed_provenance::<u32>(at).read_volatile() } == PAINT {
        at += 4;
    }
    Usage {
        statics: bottom - ram,
        stack_peak: top - at,
        margin: at - bottom,
    }
}
