//! `cbam flash` finds, builds and measures a board's firmware itself: the dry run from a
//! repository checkout, the board list, a user's board file and the errors that say what
//! to install or pass. One real build (nucleo-f411re), into the firmware crate's own
//! `target/` that `firmware/test.sh` builds the same board into.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cbam(args: &[&str], cwd: &Path, envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cbam"));
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("CBAM_FIRMWARE_DIR");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("cbam runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The bytes in the fit table's row `resource` ("flash: firmware", "RAM"...).
fn used(table: &str, resource: &str) -> u64 {
    let line = table
        .lines()
        .find(|l| l.trim_start().starts_with(resource))
        .unwrap_or_else(|| panic!("no row {resource} in\n{table}"));
    let field = line.trim_start()[resource.len()..]
        .split_whitespace()
        .next()
        .expect("a number");
    field.replace(',', "").parse().expect("a byte count")
}

#[test]
fn a_dry_run_from_the_checkout_builds_the_boards_firmware_and_counts_its_code() {
    let out = cbam(
        &[
            "flash",
            "--board",
            "nucleo-f411re",
            "--model",
            "models/fmnist_cbam.cbam",
            "--dry-run",
        ],
        &repo(),
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("fits; --dry-run"), "{stdout}");
    // The ELF cargo wrote where `cargo build` in firmware/cortex-m (and firmware/test.sh)
    // write the same board's build.
    let elf_line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("firmware: "))
        .unwrap_or_else(|| panic!("no firmware line in\n{stderr}"));
    let elf = PathBuf::from(elf_line);
    let expected = repo()
        .join("firmware/cortex-m/target/thumbv7em-none-eabihf/release/cbam-firmware-cortex-m")
        .canonicalize()
        .expect("the firmware ELF is where cargo builds it");
    assert_eq!(elf, expected);
    // Real code: more than the vector table, less than the ELF with its debug sections,
    // and below the model region (256 KiB up) of the board.
    let code = used(&stdout, "flash: firmware ");
    let elf_len = std::fs::metadata(&elf).expect("the ELF").len();
    assert!(
        code > 4096 && code < elf_len && code < 256 * 1024,
        "{code} of {elf_len}\n{stdout}"
    );
    assert!(used(&stdout, "RAM") > 0, "{stdout}");

    // --no-build: the model alone, no firmware row counted.
    let out = cbam(
        &[
            "flash",
            "--board",
            "nucleo-f411re",
            "--model",
            "models/fmnist_cbam.cbam",
            "--dry-run",
            "--no-build",
        ],
        &repo(),
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("firmware: "), "{stderr}");
    assert!(!stdout.contains("flash: firmware"), "{stdout}");
}

#[test]
fn the_boards_are_listed_and_a_users_board_file_is_taken() {
    let out = cbam(&["flash", "--list-boards"], &repo(), &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let table = std::fs::read_to_string(repo().join("firmware/boards.toml")).unwrap();
    let names: Vec<&str> = table
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"'))
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    for name in &names {
        assert!(stdout.contains(name), "{name} missing from\n{stdout}");
    }

    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("my-boards.toml");
    let own = table.replace("name = \"nucleo-f411re\"", "name = \"my-f411\"");
    std::fs::write(&mine, own).unwrap();
    let out = cbam(
        &["flash", "--boards", mine.to_str().unwrap(), "--list-boards"],
        &repo(),
        &[],
    );
    let (stdout, _) = text(&out);
    assert!(
        stdout.lines().any(|l| l.starts_with("my-f411 "))
            && !stdout.lines().any(|l| l.starts_with("nucleo-f411re ")),
        "{stdout}"
    );
    let out = cbam(
        &[
            "flash",
            "--boards",
            mine.to_str().unwrap(),
            "--board",
            "my-f411",
            "--model",
            "models/fmnist_cbam.cbam",
            "--dry-run",
            "--no-build",
        ],
        &repo(),
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("STM32F411RETx"), "{stdout}");
}

#[test]
fn without_the_firmware_sources_the_error_says_what_to_pass() {
    let elsewhere = tempfile::tempdir().unwrap();
    let model = repo().join("models/fmnist_cbam.cbam");
    let out = cbam(
        &[
            "flash",
            "--board",
            "nucleo-f411re",
            "--model",
            model.to_str().unwrap(),
            "--dry-run",
        ],
        elsewhere.path(),
        &[("CBAM_FIRMWARE_DIR", elsewhere.path().to_str().unwrap())],
    );
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    for wanted in [
        "no firmware sources",
        "CBAM_FIRMWARE_DIR",
        "--firmware ELF",
        "--no-build",
    ] {
        assert!(stderr.contains(wanted), "{wanted} missing from\n{stderr}");
    }
}

#[test]
fn a_users_board_is_built_only_as_the_firmware_links_it() {
    let dir = tempfile::tempdir().unwrap();
    let table = std::fs::read_to_string(repo().join("firmware/boards.toml")).unwrap();
    let own = table.replace("feature = \"nucleo-f411re\"", "feature = \"my-own-board\"");
    let mine = dir.path().join("boards.toml");
    std::fs::write(&mine, own).unwrap();
    let out = cbam(
        &[
            "flash",
            "--boards",
            mine.to_str().unwrap(),
            "--board",
            "nucleo-f411re",
            "--model",
            "models/fmnist_cbam.cbam",
            "--dry-run",
        ],
        &repo(),
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("no board with feature `my-own-board`"),
        "{stderr}"
    );
    assert!(stderr.contains("Adding a board"), "{stderr}");

    // The same memory map under another name builds (the test above built it already).
    let own = table.replace("name = \"nucleo-f411re\"", "name = \"my-f411\"");
    std::fs::write(&mine, own).unwrap();
    // Still inside the flash (so the table itself is valid), but not where the firmware
    // looks for the model.
    let moved = table
        .replace("model_origin = 0x0804_0000", "model_origin = 0x0806_0000")
        .replace("model_size = 0x0004_0000", "model_size = 0x0002_0000");
    let out = cbam(
        &[
            "flash",
            "--boards",
            mine.to_str().unwrap(),
            "--board",
            "my-f411",
            "--model",
            "models/fmnist_cbam.cbam",
            "--dry-run",
        ],
        &repo(),
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // A different model region than the firmware links with is refused.
    std::fs::write(&mine, moved).unwrap();
    let out = cbam(
        &[
            "flash",
            "--boards",
            mine.to_str().unwrap(),
            "--board",
            "nucleo-f411re",
            "--model",
            "models/fmnist_cbam.cbam",
            "--dry-run",
        ],
        &repo(),
        &[],
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("memory"), "{stderr}");
}
