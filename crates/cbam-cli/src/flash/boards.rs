//! The board table `firmware/boards.toml`, embedded at build time so that an installed
//! `cbam` binary knows the same memory maps the firmware was linked with.

use std::path::Path;

use serde::Deserialize;

use super::error::FlashError;

/// The firmware's own board table; the single source of flash/RAM/model-region addresses.
const BOARDS_TOML: &str = include_str!("../../../../firmware/boards.toml");

/// Where a board keeps the model blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelPlacement {
    /// A dedicated flash region: a new model is written without touching the firmware.
    Region,
    /// Linked into the firmware image: a new model means rebuilding the firmware.
    Embedded,
}

/// One `[[board]]` entry (the fields `cbam flash` and `cbam eval --device` need; the rest
/// is for the firmware).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Board {
    pub name: String,
    /// probe-rs chip name; empty for boards that only exist under QEMU.
    pub chip: String,
    /// Rust target triple of the firmware.
    pub target: String,
    /// Cargo feature of the firmware crate that selects this board.
    pub feature: String,
    pub firmware_dir: String,
    /// `M4F`, `M3`, `M0+`, `M0` or `RV32IMC`.
    pub core: String,
    /// QEMU `-machine` of an emulated board, empty for real ones.
    pub qemu_machine: String,
    pub flash_origin: u64,
    pub flash_size: u64,
    pub ram_origin: u64,
    pub ram_size: u64,
    pub model_placement: ModelPlacement,
    pub model_origin: Option<u64>,
    pub model_size: Option<u64>,
}

impl Board {
    /// QEMU-only boards have no probe-rs chip: nothing to flash.
    pub fn is_emulated(&self) -> bool {
        self.chip.is_empty()
    }
}

#[derive(Debug, Deserialize)]
struct BoardTable {
    board: Vec<Board>,
}

/// The boards compiled into this binary.
pub fn builtin() -> Result<Vec<Board>, FlashError> {
    parse(BOARDS_TOML).map_err(|e| within("firmware/boards.toml (built into cbam)", e))
}

/// A user's own board table (`--boards FILE`), in the format of `firmware/boards.toml`.
pub fn from_file(path: &Path) -> Result<Vec<Board>, FlashError> {
    let text = std::fs::read_to_string(path).map_err(|source| FlashError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let boards = parse(&text).map_err(|e| within(&path.display().to_string(), e))?;
    if boards.is_empty() {
        return Err(FlashError::BoardTable(format!(
            "{} has no [[board]] entries (see README, \"Adding a board\")",
            path.display()
        )));
    }
    Ok(boards)
}

/// Names the table a table error is in.
fn within(origin: &str, e: FlashError) -> FlashError {
    match e {
        FlashError::BoardTable(reason) => FlashError::BoardTable(format!("{origin}: {reason}")),
        other => other,
    }
}

/// The table as `cbam flash --list-boards` prints it.
pub fn render(boards: &[Board]) -> String {
    let mut text = format!(
        "{:<16} {:<14} {:<28} {:<18} {:>9} {:>9}  {}\n",
        "board", "chip", "target", "firmware", "flash", "RAM", "model"
    );
    for b in boards {
        let chip = if b.is_emulated() { "(QEMU)" } else { &b.chip };
        let model = match (b.model_placement, b.model_origin, b.model_size) {
            (ModelPlacement::Region, Some(origin), Some(size)) => {
                format!("region {origin:#010x}, {} KiB", size / 1024)
            }
            _ => "linked into the firmware".to_string(),
        };
        text.push_str(&format!(
            "{:<16} {:<14} {:<28} {:<18} {:>5} KiB {:>5} KiB  {model}\n",
            b.name,
            chip,
            b.target,
            format!("{} +{}", b.firmware_dir, b.feature),
            b.flash_size / 1024,
            b.ram_size / 1024,
        ));
    }
    text
}

fn parse(text: &str) -> Result<Vec<Board>, FlashError> {
    let table: BoardTable =
        toml::from_str(text).map_err(|e| FlashError::BoardTable(e.to_string()))?;
    for board in &table.board {
        check_consistent(board)?;
    }
    Ok(table.board)
}

/// Rejects a table entry whose model region is missing or sticks out of its flash, so the
/// fit check never reasons about an impossible layout.
fn check_consistent(board: &Board) -> Result<(), FlashError> {
    let bad = |why: &str| FlashError::BoardTable(format!("board `{}`: {why}", board.name));
    if board.model_placement == ModelPlacement::Region {
        let (Some(origin), Some(size)) = (board.model_origin, board.model_size) else {
            return Err(bad(
                "model_placement = \"region\" needs model_origin and model_size",
            ));
        };
        let flash_end = board.flash_origin.saturating_add(board.flash_size);
        if origin < board.flash_origin || origin.saturating_add(size) > flash_end {
            return Err(bad("the model region lies outside the board's flash"));
        }
    }
    Ok(())
}

/// Finds a board by its `--board` name (case-insensitive); an unknown name gets the
/// nearest known one as a suggestion.
pub fn by_name<'b>(boards: &'b [Board], name: &str) -> Result<&'b Board, FlashError> {
    boards
        .iter()
        .find(|b| b.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| FlashError::UnknownBoard {
            name: name.to_string(),
            nearest: nearest(boards, name),
            known: boards.iter().map(|b| b.name.clone()).collect(),
        })
}

/// The board name most like `name`, if any is close enough to be what was meant.
fn nearest(boards: &[Board], name: &str) -> Option<String> {
    let wanted = name.to_ascii_lowercase();
    boards
        .iter()
        .map(|b| {
            (
                strsim::jaro_winkler(&b.name.to_ascii_lowercase(), &wanted),
                &b.name,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n.clone())
}

/// The first board built around `chip` (probe-rs names compare case-insensitively).
pub fn by_chip<'b>(boards: &'b [Board], chip: &str) -> Option<&'b Board> {
    boards
        .iter()
        .find(|b| !b.is_emulated() && b.chip.eq_ignore_ascii_case(chip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_table_parses_and_has_real_and_emulated_boards() {
        let boards = builtin().unwrap();
        assert!(boards.iter().any(Board::is_emulated));
        assert!(boards.iter().any(|b| !b.is_emulated()));
        assert!(boards
            .iter()
            .any(|b| b.model_placement == ModelPlacement::Region));
    }

    #[test]
    fn a_users_board_file_is_read_and_its_errors_name_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my-boards.toml");
        let mine = BOARDS_TOML.replace("name = \"nucleo-f411re\"", "name = \"my-f411\"");
        std::fs::write(&path, &mine).unwrap();
        let boards = from_file(&path).unwrap();
        assert!(by_name(&boards, "my-f411").is_ok());
        let listed = render(&boards);
        assert!(
            listed.contains("my-f411") && listed.contains("STM32F411RETx"),
            "{listed}"
        );
        assert!(listed.contains("region 0x08040000, 256 KiB"), "{listed}");

        std::fs::write(&path, "[[board]]\nname = \"half\"\n").unwrap();
        let err = from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("my-boards.toml") && err.contains("chip"),
            "{err}"
        );
        std::fs::write(&path, "").unwrap();
        let err = from_file(&path).unwrap_err().to_string();
        assert!(err.contains("my-boards.toml"), "{err}");
        let missing = from_file(&dir.path().join("none.toml")).unwrap_err();
        assert!(matches!(missing, FlashError::Read { .. }), "{missing}");
    }

    #[test]
    fn lookup_by_name_and_chip_ignores_case() {
        let boards = builtin().unwrap();
        let first_real = boards.iter().find(|b| !b.is_emulated()).unwrap();
        let by_n = by_name(&boards, &first_real.name.to_uppercase()).unwrap();
        assert_eq!(by_n, first_real);
        let by_c = by_chip(&boards, &first_real.chip.to_lowercase()).unwrap();
        assert_eq!(by_c, first_real);
    }

    #[test]
    fn unknown_board_lists_the_known_ones() {
        let boards = builtin().unwrap();
        let err = by_name(&boards, "no-such-board").unwrap_err().to_string();
        assert!(err.contains("no-such-board"), "{err}");
        assert!(err.contains(&boards[0].name), "{err}");
    }

    #[test]
    fn a_mistyped_board_gets_the_nearest_name() {
        let boards = builtin().unwrap();
        let real = boards.iter().find(|b| !b.is_emulated()).unwrap();
        let typo = &real.name[..real.name.len() - 1];
        let err = by_name(&boards, typo).unwrap_err().to_string();
        assert!(
            err.contains(&format!("did you mean `{}`", real.name)),
            "{err}"
        );
        let err = by_name(&boards, "zzzzzzzz").unwrap_err().to_string();
        assert!(!err.contains("did you mean"), "{err}");
    }

    #[test]
    fn a_region_outside_flash_is_rejected() {
        let text = r#"
            [[board]]
            name = "bad"
            chip = "X"
            target = "thumbv7em-none-eabihf"
            feature = "bad"
            firmware_dir = "cortex-m"
            core = "M4F"
            qemu_machine = ""
            flash_origin = 0
            flash_size = 0x1000
            ram_origin = 0x2000_0000
            ram_size = 0x1000
            model_placement = "region"
            model_origin = 0x0800
            model_size = 0x1000
        "#;
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
    }

    #[test]
    fn a_region_board_without_an_origin_is_rejected() {
        let text = r#"
            [[board]]
            name = "bad"
            chip = "X"
            target = "thumbv7em-none-eabihf"
            feature = "bad"
            firmware_dir = "cortex-m"
            core = "M4F"
            qemu_machine = ""
            flash_origin = 0
            flash_size = 0x1000
            ram_origin = 0x2000_0000
            ram_size = 0x1000
            model_placement = "region"
        "#;
        assert!(parse(text).is_err());
    }
}
