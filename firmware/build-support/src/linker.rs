//! `memory.x` for a board: the runtime crate's regions plus the model region.
//!
//! Both `cortex-m-rt` and `riscv-rt` `INCLUDE memory.x` from their `link.x`, so
//! one generated file carries the memory map and the `.cbam_model` section.

use std::fmt::Write as _;

use crate::boards::{Board, Region};
use crate::Error;

/// Which runtime crate's `link.x` will include the generated `memory.x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    CortexMRt,
    RiscvRt,
}

/// Renders `memory.x` for `board`.
pub fn memory_x(board: &Board, runtime: Runtime) -> Result<String, Error> {
    let code = board.code_region()?;
    let model = board.model_region()?;
    let mut out = format!(
        "/* Generated from firmware/boards.toml, board `{}`. */\nMEMORY\n{{\n",
        board.name
    );
    if let Some(size) = board.boot2_size {
        region_line(
            &mut out,
            "BOOT2",
            Region {
                origin: board.flash_origin,
                size,
            },
        );
    }
    region_line(&mut out, "FLASH", code);
    if let Some(model) = model {
        region_line(&mut out, "MODEL", model);
    }
    region_line(
        &mut out,
        "RAM",
        Region {
            origin: board.ram_origin,
            size: board.ram_size,
        },
    );
    out.push_str("}\n\n");

    if runtime == Runtime::RiscvRt {
        for (alias, region) in [
            ("REGION_TEXT", "FLASH"),
            ("REGION_RODATA", "FLASH"),
            ("REGION_DATA", "RAM"),
            ("REGION_BSS", "RAM"),
            ("REGION_HEAP", "RAM"),
            ("REGION_STACK", "RAM"),
        ] {
            let _ = writeln!(out, "REGION_ALIAS(\"{alias}\", {region});");
        }
        out.push('\n');
    }
    if board.boot2_size.is_some() {
        // The RP2040 boot ROM loads and checks these 256 bytes before anything else.
        out.push_str("SECTIONS\n{\n  .boot2 ORIGIN(BOOT2) :\n  {\n    KEEP(*(.boot2));\n  } > BOOT2\n}\nINSERT BEFORE .text;\n\n");
    }
    if model.is_some() {
        // The firmware reads the whole region through these symbols, not through
        // the blob's Rust static, so a blob flashed alone later is picked up.
        out.push_str(
            "SECTIONS\n{\n  .cbam_model ORIGIN(MODEL) :\n  {\n    KEEP(*(.cbam_model .cbam_model.*));\n  } > MODEL\n}\nINSERT AFTER .rodata;\n\n\
             __cbam_model_start = ORIGIN(MODEL);\n__cbam_model_end = ORIGIN(MODEL) + LENGTH(MODEL);\n",
        );
    }
    Ok(out)
}

fn region_line(out: &mut String, name: &str, region: Region) {
    let _ = writeln!(
        out,
        "  {name:<6}: ORIGIN = {:#010x}, LENGTH = {:#x}",
        region.origin, region.size
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boards;

    fn board(name: &str) -> Board {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards.toml");
        boards::load(&path, name).expect("board in boards.toml")
    }

    #[test]
    fn mps2_memory_x_puts_the_model_after_the_code() {
        let text = memory_x(&board("mps2-an386"), Runtime::CortexMRt).expect("memory.x");
        assert!(
            text.contains("FLASH : ORIGIN = 0x00000000, LENGTH = 0x300000"),
            "{text}"
        );
        assert!(
            text.contains("MODEL : ORIGIN = 0x00300000, LENGTH = 0x100000"),
            "{text}"
        );
        assert!(
            text.contains("__cbam_model_end = ORIGIN(MODEL) + LENGTH(MODEL)"),
            "{text}"
        );
        assert!(!text.contains("REGION_ALIAS"), "{text}");
    }

    #[test]
    fn pico_reserves_boot2_before_the_code() {
        let text = memory_x(&board("rpi-pico"), Runtime::CortexMRt).expect("memory.x");
        assert!(
            text.contains("BOOT2 : ORIGIN = 0x10000000, LENGTH = 0x100"),
            "{text}"
        );
        assert!(
            text.contains("FLASH : ORIGIN = 0x10000100, LENGTH = 0xfff00"),
            "{text}"
        );
        assert!(text.contains("INSERT BEFORE .text"), "{text}");
    }

    #[test]
    fn riscv_rt_gets_its_region_aliases() {
        let text = memory_x(&board("riscv-virt"), Runtime::RiscvRt).expect("memory.x");
        assert!(
            text.contains("REGION_ALIAS(\"REGION_STACK\", RAM);"),
            "{text}"
        );
        assert!(text.contains("MODEL : ORIGIN = 0x80300000"), "{text}");
    }
}
