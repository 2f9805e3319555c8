//! Embedded test set and blob (no model region: see boards.toml); esp-hal
//! brings the linker scripts.

fn main() {
    if let Err(e) = cbam_firmware_build::generate(None) {
        eprintln!("cbam firmware build: {e}");
        std::process::exit(1);
    }
}
