//! Building a board's firmware from the repository's `firmware/` sources, the way
//! `cargo run` would: the crate, feature and target come from `firmware/boards.toml`.
//! Cargo's own up-to-date check makes every call after the first cheap.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::flash::boards::Board;

/// Which firmware to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The board's application, the one `cbam flash` writes (the board's feature alone).
    App,
    /// The firmware `cbam eval --device` talks to (the crate's `eval` feature).
    Eval,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::App => "application",
            Purpose::Eval => "eval",
        }
    }

    /// The cargo features that select this firmware for `board`.
    fn features(self, board: &Board) -> String {
        match self {
            Purpose::App => board.feature.clone(),
            Purpose::Eval => format!("{},eval", board.feature),
        }
    }

    /// The application shares the crate's own `target/` with `cargo build` there and
    /// `firmware/test.sh` (same features and target: one build serves all); the evaluation
    /// firmware has its own, so building it never replaces the application's ELF.
    fn target_dir(self, crate_dir: &Path) -> PathBuf {
        match self {
            Purpose::App => crate_dir.join("target"),
            Purpose::Eval => crate_dir.join("target").join("cbam-eval"),
        }
    }
}

/// The `firmware/` directory: `CBAM_FIRMWARE_DIR`, else that of the repository checkout
/// the current directory is in, else the one beside the sources this binary was built from.
pub fn firmware_root() -> Result<PathBuf> {
    let root = match std::env::var_os("CBAM_FIRMWARE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_dir()
            .ok()
            .and_then(|cwd| {
                cwd.ancestors()
                    .map(|dir| dir.join("firmware"))
                    .find(|dir| dir.join("boards.toml").is_file())
            })
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../firmware")),
    };
    if !root.join("boards.toml").is_file() {
        bail!(
            "no firmware sources at {}: run cbam inside a cbam-edge repository checkout, \
             point CBAM_FIRMWARE_DIR at a checkout's firmware/ directory, or pass \
             --firmware ELF (a firmware you built)",
            root.display()
        );
    }
    // Paths in messages and reports without the `crates/cbam-cli/../..` detour.
    Ok(std::fs::canonicalize(&root).unwrap_or(root))
}

/// Builds `purpose`'s firmware for `board` and returns its ELF. `blob` is linked in as the
/// model (boards whose model is embedded); without it the build uses its default blob.
pub fn build(board: &Board, purpose: Purpose, blob: Option<&Path>) -> Result<PathBuf> {
    let root = firmware_root()?;
    let crate_dir = root.join(&board.firmware_dir);
    ensure!(
        crate_dir.join("Cargo.toml").is_file(),
        "board {} names firmware_dir `{}` but {} has no Cargo.toml; firmware_dir is a crate \
         under firmware/ (cortex-m, esp32c3, riscv-virt)",
        board.name,
        board.firmware_dir,
        crate_dir.display()
    );
    let target_dir = purpose.target_dir(&crate_dir);
    let features = purpose.features(board);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&crate_dir)
        .args(["build", "--release", "--no-default-features", "--features"])
        .arg(&features)
        .args(["--target", &board.target, "--target-dir"])
        .arg(&target_dir)
        .args(["--message-format", "json-render-diagnostics"])
        // Flags meant for the host would replace the firmware's own (its linker scripts).
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        // The test run's embedded images: the evaluation firmware gets its inputs over
        // the link, so the defaults keep its build the same whatever the caller's shell set.
        .env_remove("CBAM_TEST_IMAGES")
        .env_remove("CBAM_TEST_DATA")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match blob {
        Some(path) => {
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("cannot find model {}", path.display()))?;
            command.env("CBAM_BLOB", path);
        }
        None => {
            command.env_remove("CBAM_BLOB");
        }
    }

    let what = format!(
        "the {} firmware for {} (firmware/{}, {}, --features {features})",
        purpose.label(),
        board.name,
        board.firmware_dir,
        board.target
    );
    let progress = Progress::start(&what);
    let mut child = command.spawn().with_context(|| {
        format!(
            "cannot run cargo to build {what}: install Rust with rustup (https://rustup.rs), \
             then `rustup target add {}` (scripts/setup.sh does both), or pass --firmware ELF",
            board.target
        )
    })?;
    let stderr = child.stderr.take().context("cargo's stderr")?;
    let log = std::thread::spawn({
        let progress = progress.clone();
        move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                progress.cargo_said(&line);
                lines.push(line);
            }
            lines
        }
    });
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut elf = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(path) = executable(&line) {
            elf = Some(path);
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    let lines = log.join().unwrap_or_default();
    progress.finish();
    if !status.success() {
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        bail!(
            "cargo could not build {what}:\n{tail}{}",
            hint(&lines, board)
        );
    }
    elf.with_context(|| format!("cargo built {what} but named no executable"))
}

/// What to do about the failures whose cause is known: a target or a feature missing.
fn hint(lines: &[String], board: &Board) -> String {
    let said = |text: &str| lines.iter().any(|l| l.contains(text));
    if said("target may not be installed") || said("can't find crate for `core`") {
        format!(
            "\nThe Rust target {0} is not installed: run `rustup target add {0}` \
             (scripts/setup.sh installs every firmware target).",
            board.target
        )
    } else if said("does not have") && said("feature") {
        format!(
            "\nfirmware/{} has no cargo feature `{}`: a new board needs its feature and board \
             module in that crate (README: \"Adding a board\").",
            board.firmware_dir, board.feature
        )
    } else {
        String::new()
    }
}

/// The `executable` of a cargo `compiler-artifact` message.
fn executable(line: &str) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    message.get("executable")?.as_str().map(PathBuf::from)
}

/// One line on stderr while cargo compiles: a spinner with cargo's latest step on a
/// terminal, a plain line otherwise. Nothing when the firmware is up to date.
#[derive(Clone)]
struct Progress {
    bar: ProgressBar,
    what: Arc<str>,
    announced: Arc<AtomicBool>,
}

impl Progress {
    fn start(what: &str) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_draw_target(ProgressDrawTarget::hidden());
        if std::io::stderr().is_terminal() {
            if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} {wide_msg}") {
                bar.set_style(style);
            }
            bar.set_prefix(format!("building {what}:"));
        }
        Progress {
            bar,
            what: what.into(),
            announced: Arc::new(AtomicBool::new(false)),
        }
    }

    fn cargo_said(&self, line: &str) {
        let line = line.trim();
        if !line.starts_with("Compiling") {
            return;
        }
        if !self.announced.swap(true, Ordering::SeqCst) {
            if std::io::stderr().is_terminal() {
                self.bar.set_draw_target(ProgressDrawTarget::stderr());
                self.bar.enable_steady_tick(Duration::from_millis(120));
            } else {
                crate::errln!(
                    "building {} (the first build takes a few minutes)",
                    self.what
                );
            }
        }
        self.bar.set_message(line.to_string());
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_comes_from_the_artifact_message() {
        let line = r#"{"reason":"compiler-artifact","executable":"/t/fw","target":{}}"#;
        assert_eq!(executable(line), Some(PathBuf::from("/t/fw")));
        let lib = r#"{"reason":"compiler-artifact","executable":null}"#;
        assert_eq!(executable(lib), None);
        assert_eq!(executable(r#"{"reason":"build-finished"}"#), None);
        assert_eq!(executable("Compiling x"), None);
    }

    #[test]
    fn the_firmware_sources_are_found_beside_the_cli() {
        let root = firmware_root().expect("the repository's firmware/");
        assert!(root.join("cortex-m").is_dir());
    }
}
