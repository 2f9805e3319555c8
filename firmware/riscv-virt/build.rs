//! Board memory map, model region and embedded test set: see cbam-firmware-build.

fn main() {
    if let Err(e) = cbam_firmware_build::generate(Some(cbam_firmware_build::Runtime::RiscvRt)) {
        eprintln!("cbam firmware build: {e}");
        std::process::exit(1);
    }
}
