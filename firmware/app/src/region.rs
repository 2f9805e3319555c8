//! The dedicated flash region that holds the model blob.

/// The whole model region, as defined by the generated `memory.x`
/// (`__cbam_model_start`, `__cbam_model_end`). The blob starts at its first
/// byte; bytes after the blob's `total_len` (erased flash) are ignored by the
/// core's parser.
pub fn model_region() -> &'static [u8] {
    extern "C" {
        static __cbam_model_start: u8;
        static __cbam_model_end: u8;
    }
    // SAFETY: the linker script defines both symbols as the bounds of the MODEL
    // memory region, which is flash (read-only, mapped for the program's whole
    // life) and never written by the firmware.
    unsafe {
        let start = core::ptr::addr_of!(__cbam_model_start);
        let end = core::ptr::addr_of!(__cbam_model_end);
        let len = (end as usize).saturating_sub(start as usize);
        core::slice::from_raw_parts(start, len)
    }
}
