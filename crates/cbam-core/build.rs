//! Picks the kernels' backend for the target and sets `cfg(cbam_backend = "...")`, which
//! only `src/kernels/backend/mod.rs` reads:
//! - `arm_dsp`: Armv7E-M (Cortex-M4/M7), and Armv8-M Mainline built with
//!   `-C target-feature=+dsp` (`cfg(target_feature = "dsp")` is not visible on stable
//!   Rust: Arm target features are unstable in `cfg`, so the triple decides);
//! - `x86_64`: AVX2, detected at run time (the portable kernels without it);
//! - `neon`: aarch64 with NEON (the baseline; `-C target-feature=-neon` turns it off);
//! - `portable`: everything else.

fn main() {
    println!(
        "cargo::rustc-check-cfg=cfg(cbam_backend, values(\"arm_dsp\", \"x86_64\", \"neon\", \"portable\"))"
    );
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let (target, flags) = (env("TARGET"), env("CARGO_ENCODED_RUSTFLAGS"));
    let arch = env("CARGO_CFG_TARGET_ARCH");
    let features = env("CARGO_CFG_TARGET_FEATURE");
    let v8m_with_dsp = target.starts_with("thumbv8m.main") && flags.contains("+dsp");
    let backend = if target.starts_with("thumbv7em") || v8m_with_dsp {
        "arm_dsp"
    } else if arch == "x86_64" {
        "x86_64"
    } else if arch == "aarch64" && features.split(',').any(|f| f == "neon") {
        "neon"
    } else {
        "portable"
    };
    println!("cargo::rustc-cfg=cbam_backend=\"{backend}\"");
    println!("cargo::rustc-env=CBAM_BACKEND={backend}");
}
