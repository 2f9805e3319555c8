//! The memory a model may use on one target: the board table's windows, clipped to what
//! probe-rs knows the chip really has.

use std::ops::Range;

use super::boards::{Board, ModelPlacement};
use super::budget::group;
use super::chip::ChipMap;
use super::error::FlashError;

/// Where the blob goes on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSlot {
    /// A dedicated flash region; the firmware code must stay below it.
    Region(Range<u64>),
    /// Linked into the firmware image.
    Embedded,
}

/// The flash and RAM the fit check measures against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `board (chip)`, `chip` or `board (emulated)`.
    pub label: String,
    pub flash: Range<u64>,
    pub ram: Range<u64>,
    pub model: ModelSlot,
    /// Where a board's figure was cut down to the chip's real memory map.
    pub notes: Vec<String>,
}

impl Plan {
    /// Combines a board (addresses, model region) with a chip (real memory map).
    pub fn new(board: Option<&Board>, chip: Option<&ChipMap>) -> Result<Plan, FlashError> {
        let label = match (board, chip) {
            (Some(b), Some(c)) => format!("{} ({})", b.name, c.name),
            (Some(b), None) => format!("{} (emulated)", b.name),
            (None, Some(c)) => c.name.clone(),
            (None, None) => return Err(FlashError::NoTarget),
        };
        let mut notes = Vec::new();
        let flash = window(
            "flash",
            board.map(|b| span(b.flash_origin, b.flash_size)),
            chip.map(|c| (c, c.flash_region(board.map(|b| b.flash_origin)))),
            &mut notes,
        )?;
        let ram = window(
            "RAM",
            board.map(|b| span(b.ram_origin, b.ram_size)),
            chip.map(|c| (c, c.ram_region(board.map(|b| b.ram_origin)))),
            &mut notes,
        )?;
        let model = match board {
            Some(b) if b.model_placement == ModelPlacement::Region => {
                match (b.model_origin, b.model_size) {
                    (Some(origin), Some(size)) => ModelSlot::Region(span(origin, size)),
                    _ => ModelSlot::Embedded,
                }
            }
            _ => ModelSlot::Embedded,
        };
        Ok(Plan {
            label,
            flash,
            ram,
            model,
            notes,
        })
    }

    /// Flash the firmware code may occupy: below the model region, or all of flash.
    pub fn code_window(&self) -> Range<u64> {
        match &self.model {
            ModelSlot::Region(r) => self.flash.start..r.start.max(self.flash.start),
            ModelSlot::Embedded => self.flash.clone(),
        }
    }
}

fn span(origin: u64, size: u64) -> Range<u64> {
    origin..origin.saturating_add(size)
}

/// The board's window clipped to the chip region it starts in; either alone when only one
/// is known.
fn window(
    what: &str,
    board: Option<Range<u64>>,
    chip: Option<(&ChipMap, Option<Range<u64>>)>,
    notes: &mut Vec<String>,
) -> Result<Range<u64>, FlashError> {
    match (board, chip) {
        (Some(b), Some((map, Some(c)))) => {
            let clipped = b.start.max(c.start)..b.end.min(c.end);
            if clipped != b {
                notes.push(format!(
                    "boards.toml gives {} {:#x}..{:#x}; probe-rs's {} map has {:#x}..{:#x}, so {} B are used",
                    what, b.start, b.end, map.name, c.start, c.end,
                    group(clipped.end - clipped.start)
                ));
            }
            Ok(clipped)
        }
        (Some(b), Some((map, None))) => Err(FlashError::BoardTable(format!(
            "{what} at {:#x} is not in any {what} region probe-rs knows for {}",
            b.start, map.name
        ))),
        (Some(b), None) => Ok(b),
        (None, Some((_, Some(c)))) => Ok(c),
        (None, Some((map, None))) => Err(FlashError::Registry(format!(
            "probe-rs lists no {what} region for {}",
            map.name
        ))),
        (None, None) => Err(FlashError::NoTarget),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Board {
        Board {
            name: "b".into(),
            chip: "C".into(),
            target: "thumbv7em-none-eabihf".into(),
            feature: "b".into(),
            firmware_dir: "cortex-m".into(),
            core: "M4F".into(),
            qemu_machine: String::new(),
            flash_origin: 0x0800_0000,
            flash_size: 0x8_0000,
            ram_origin: 0x2000_0000,
            ram_size: 0x6_4000,
            model_placement: ModelPlacement::Region,
            model_origin: Some(0x0804_0000),
            model_size: Some(0x4_0000),
        }
    }

    fn chip() -> ChipMap {
        let (flash, sram) = (0x0800_0000..0x0810_0000, 0x2000_0000..0x2006_0000);
        ChipMap {
            name: "C".into(),
            flash: vec![flash],
            ram: vec![sram],
        }
    }

    #[test]
    fn the_board_window_is_clipped_to_the_chip_and_noted() {
        let plan = Plan::new(Some(&board()), Some(&chip())).unwrap();
        assert_eq!(plan.flash, 0x0800_0000..0x0808_0000);
        assert_eq!(plan.ram, 0x2000_0000..0x2006_0000);
        assert_eq!(plan.notes.len(), 1, "{:?}", plan.notes);
        assert!(plan.notes[0].contains("RAM"));
        assert_eq!(plan.code_window(), 0x0800_0000..0x0804_0000);
        assert_eq!(plan.model, ModelSlot::Region(0x0804_0000..0x0808_0000));
    }

    #[test]
    fn a_chip_alone_embeds_the_model_in_its_largest_regions() {
        let plan = Plan::new(None, Some(&chip())).unwrap();
        assert_eq!(plan.model, ModelSlot::Embedded);
        assert_eq!(plan.code_window(), 0x0800_0000..0x0810_0000);
        assert_eq!(plan.label, "C");
    }

    #[test]
    fn a_board_outside_the_chip_map_is_an_error() {
        let mut b = board();
        b.ram_origin = 0x1000_0000;
        assert!(Plan::new(Some(&b), Some(&chip())).is_err());
    }

    #[test]
    fn nothing_to_plan_for_is_an_error() {
        assert!(matches!(Plan::new(None, None), Err(FlashError::NoTarget)));
    }
}
