//! Sets `cbam_arm_dsp` on targets with the Armv7E-M DSP extension (SMLAD, SXTB16).
//!
//! `cfg(target_feature = "dsp")` is not visible on stable Rust (Arm target features are
//! unstable in `cfg`), so the choice is made here from the target triple, plus an explicit
//! `-C target-feature=+dsp` for Armv8-M Mainline cores that have the extension.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(cbam_arm_dsp)");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let v8m_with_dsp = target.starts_with("thumbv8m.main") && flags.contains("+dsp");
    if target.starts_with("thumbv7em") || v8m_with_dsp {
        println!("cargo::rustc-cfg=cbam_arm_dsp");
    }
}
