//! The board table in `firmware/boards.toml`: memory maps and target facts.

use std::path::Path;

use serde::Deserialize;

use crate::Error;

/// Where a board keeps its model blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelPlacement {
    /// A dedicated flash region at a fixed address, re-flashable on its own.
    Region,
    /// Linked into the firmware image.
    Embedded,
}

/// One `[[board]]` entry of `boards.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct Board {
    pub name: String,
    pub chip: String,
    pub target: String,
    pub feature: String,
    pub firmware_dir: String,
    pub core: String,
    pub clock_hz: u64,
    pub counter: String,
    pub flash_origin: u64,
    pub flash_size: u64,
    pub ram_origin: u64,
    pub ram_size: u64,
    pub model_placement: ModelPlacement,
    #[serde(default)]
    pub model_origin: Option<u64>,
    #[serde(default)]
    pub model_size: Option<u64>,
    pub qemu_machine: String,
    #[serde(default)]
    pub boot2_size: Option<u64>,
}

/// A flash region `[origin, origin + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub origin: u64,
    pub size: u64,
}

impl Board {
    /// The model region, checked to be the tail of flash (the code region ends
    /// where it starts), or `None` for an embedded model.
    pub fn model_region(&self) -> Result<Option<Region>, Error> {
        if self.model_placement == ModelPlacement::Embedded {
            return Ok(None);
        }
        let (Some(origin), Some(size)) = (self.model_origin, self.model_size) else {
            return Err(
                self.invalid("model_placement = \"region\" needs model_origin and model_size")
            );
        };
        if origin + size != self.flash_origin + self.flash_size || origin <= self.flash_origin {
            return Err(self.invalid("the model region must be the tail of flash, after the code"));
        }
        Ok(Some(Region { origin, size }))
    }

    /// The flash left for the firmware's own code and constants.
    pub fn code_region(&self) -> Result<Region, Error> {
        let boot2 = self.boot2_size.unwrap_or(0);
        let end = match self.model_region()? {
            Some(model) => model.origin,
            None => self.flash_origin + self.flash_size,
        };
        let origin = self.flash_origin + boot2;
        if origin >= end {
            return Err(self.invalid("no flash left for code after boot2 and the model region"));
        }
        Ok(Region {
            origin,
            size: end - origin,
        })
    }

    fn invalid(&self, why: &str) -> Error {
        Error::BoardInvalid {
            board: self.name.clone(),
            why: why.to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct BoardsFile {
    board: Vec<Board>,
}

/// Parses a `boards.toml` text.
pub fn parse(text: &str) -> Result<Vec<Board>, Error> {
    let file: BoardsFile = toml::from_str(text).map_err(|e| Error::BoardsToml(e.to_string()))?;
    Ok(file.board)
}

/// Reads `boards.toml` and returns the board called `name`.
pub fn load(path: &Path, name: &str) -> Result<Board, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let boards = parse(&text)?;
    let known: Vec<String> = boards.iter().map(|b| b.name.clone()).collect();
    boards
        .into_iter()
        .find(|b| b.name == name)
        .ok_or_else(|| Error::UnknownBoard {
            name: name.to_owned(),
            known: known.join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_boards() -> Vec<Board> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards.toml");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        parse(&text).unwrap_or_default()
    }

    #[test]
    fn every_real_board_has_a_consistent_memory_map() {
        let boards = real_boards();
        assert!(
            boards.len() >= 6,
            "boards.toml lists {} boards",
            boards.len()
        );
        for board in &boards {
            let code = board.code_region().map_err(|e| e.to_string());
            assert!(code.is_ok(), "{}: {:?}", board.name, code);
        }
    }

    #[test]
    fn the_supported_real_boards_are_present_with_their_probe_rs_chips() {
        let boards = real_boards();
        let chip = |name: &str| {
            boards
                .iter()
                .find(|b| b.name == name)
                .map(|b| b.chip.as_str())
        };
        assert_eq!(chip("nucleo-f411re"), Some("STM32F411RETx"));
        assert_eq!(chip("nrf52840dk"), Some("nRF52840_xxAA"));
        assert_eq!(chip("rpi-pico"), Some("RP2040"));
        assert_eq!(chip("esp32c3-devkit"), Some("esp32c3"));
        assert_eq!(chip("mps2-an386"), Some(""));
        assert_eq!(chip("riscv-virt"), Some(""));
    }

    const ONE: &str = r#"
        [[board]]
        name = "b"
        chip = "X"
        target = "t"
        feature = "b"
        firmware_dir = "cortex-m"
        core = "M4F"
        clock_hz = 1
        counter = "cycles"
        flash_origin = 0x1000
        flash_size = 0x1000
        ram_origin = 0x2000_0000
        ram_size = 0x100
        model_placement = "region"
        model_origin = 0x1800
        model_size = 0x800
        qemu_machine = ""
    "#;

    #[test]
    fn code_region_stops_below_the_model_region() {
        let boards = parse(ONE).unwrap_or_default();
        let code = boards
            .first()
            .map(|b| b.code_region().map_err(|e| e.to_string()));
        assert_eq!(
            code,
            Some(Ok(Region {
                origin: 0x1000,
                size: 0x800
            }))
        );
    }

    #[test]
    fn a_model_region_inside_the_code_is_rejected() {
        let text = ONE.replace("model_origin = 0x1800", "model_origin = 0x1400");
        let boards = parse(&text).unwrap_or_default();
        let region = boards.first().map(|b| b.model_region().is_err());
        assert_eq!(region, Some(true));
    }

    #[test]
    fn an_unknown_board_lists_the_known_ones() {
        let dir = tempfile::tempdir().ok();
        let path = dir.as_ref().map(|d| d.path().join("boards.toml"));
        if let Some(path) = &path {
            let _ = std::fs::write(path, ONE);
            let err = load(path, "nope").map(|b| b.name).unwrap_err().to_string();
            assert!(err.contains("nope") && err.contains('b'), "{err}");
        } else {
            panic!("no temp dir");
        }
    }
}
