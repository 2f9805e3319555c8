//! The fit check: what the firmware and model need against what the target has, as a
//! table a user reads before anything touches hardware.

use std::fmt::Write as _;

use super::error::FlashError;
use super::plan::{ModelSlot, Plan};

/// What is going onto the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    pub blob_bytes: u64,
    /// The blob header's `arena_size`.
    pub arena_bytes: u64,
    pub stack_bytes: u64,
    /// The firmware's sizes, when its ELF was given.
    pub firmware: Option<FirmwareSizes>,
}

/// The firmware ELF figures the budget needs (see `image::FirmwareImage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareSizes {
    pub code_bytes: u64,
    pub static_ram_bytes: u64,
    /// The arena buffer the firmware was built with; a new model must fit inside it.
    pub arena_buffer: Option<u64>,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub resource: String,
    pub used: u64,
    pub available: u64,
    pub detail: String,
}

impl Row {
    pub fn fits(&self) -> bool {
        self.used <= self.available
    }

    fn percent(&self) -> String {
        if self.available == 0 {
            return "-".into();
        }
        // Exact enough for a table; u64 -> f64 only loses precision above 2^53 bytes.
        format!("{:.1}%", self.used as f64 * 100.0 / self.available as f64)
    }
}

/// The whole fit check for one model on one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub title: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Budget {
    pub fn check(plan: &Plan, demand: &Demand) -> Budget {
        let mut rows = flash_rows(plan, demand);
        rows.extend(ram_rows(plan, demand));
        let mut notes = plan.notes.clone();
        if demand.firmware.is_none() {
            notes.push(
                "firmware code and static RAM not counted: pass --firmware ELF to include them"
                    .into(),
            );
        }
        Budget {
            title: format!(
                "fit check on {}: model {} B, arena {} B, stack {} B",
                plan.label,
                group(demand.blob_bytes),
                group(demand.arena_bytes),
                group(demand.stack_bytes)
            ),
            rows,
            notes,
        }
    }

    pub fn fits(&self) -> bool {
        self.rows.iter().all(Row::fits)
    }

    /// The table as printed by `cbam flash`.
    pub fn render(&self) -> String {
        let mut out = format!("{}\n", self.title);
        let _ = writeln!(
            out,
            "  {:<22} {:>12} {:>12} {:>7}  detail",
            "resource", "used B", "available B", "use"
        );
        for row in &self.rows {
            let flag = if row.fits() { "" } else { "  <-- does not fit" };
            let _ = writeln!(
                out,
                "  {:<22} {:>12} {:>12} {:>7}  {}{}",
                row.resource,
                group(row.used),
                group(row.available),
                row.percent(),
                row.detail,
                flag
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }

    /// `Ok` when everything fits, else the error naming each overflow.
    pub fn into_result(self, suggestion: String) -> Result<Budget, FlashError> {
        if self.fits() {
            return Ok(self);
        }
        let over = self
            .rows
            .iter()
            .filter(|r| !r.fits())
            .map(|r| {
                format!(
                    "{} needs {} B but {} B are available ({} B over)",
                    r.resource,
                    group(r.used),
                    group(r.available),
                    group(r.used - r.available)
                )
            })
            .collect();
        Err(FlashError::DoesNotFit {
            target: self.title,
            over,
            suggestion,
        })
    }
}

fn flash_rows(plan: &Plan, demand: &Demand) -> Vec<Row> {
    let code_window = plan.code_window();
    let code_available = code_window.end - code_window.start;
    let code = demand.firmware.map(|f| f.code_bytes);
    match &plan.model {
        ModelSlot::Region(region) => {
            let mut rows = Vec::new();
            if let Some(code) = code {
                rows.push(Row {
                    resource: "flash: firmware".into(),
                    used: code,
                    available: code_available,
                    detail: format!("{:#010x}..{:#010x}", code_window.start, code_window.end),
                });
            }
            rows.push(Row {
                resource: "flash: model region".into(),
                used: demand.blob_bytes,
                available: region.end - region.start,
                detail: format!("{:#010x}..{:#010x}", region.start, region.end),
            });
            rows
        }
        ModelSlot::Embedded => vec![Row {
            resource: "flash: firmware+model".into(),
            used: code.unwrap_or(0).saturating_add(demand.blob_bytes),
            available: code_available,
            detail: match code {
                Some(code) => format!(
                    "code {} B + model {} B (embedded)",
                    group(code),
                    group(demand.blob_bytes)
                ),
                None => "model only (embedded; code not counted)".into(),
            },
        }],
    }
}

fn ram_rows(plan: &Plan, demand: &Demand) -> Vec<Row> {
    let buffer = demand.firmware.and_then(|f| f.arena_buffer);
    let static_ram = demand.firmware.map_or(0, |f| f.static_ram_bytes);
    // A firmware that is not rebuilt keeps its buffer even when the new arena is smaller.
    let arena_charge = demand.arena_bytes.max(buffer.unwrap_or(0));
    let mut rows = vec![Row {
        resource: "RAM".into(),
        used: total(&[static_ram, arena_charge, demand.stack_bytes]),
        available: plan.ram.end - plan.ram.start,
        detail: format!(
            "arena {} + stack {} + static {}",
            group(arena_charge),
            group(demand.stack_bytes),
            group(static_ram)
        ),
    }];
    if let Some(buffer) = buffer {
        rows.push(Row {
            resource: "RAM: firmware arena".into(),
            used: demand.arena_bytes,
            available: buffer,
            detail: "the buffer the firmware was built with".into(),
        });
    }
    rows
}

/// The sum of byte counts; one that does not fit 64 bits (`--stack 18446744073709551615`)
/// stays at the maximum, which no chip holds, instead of wrapping round to a small number
/// that would "fit".
pub fn total(parts: &[u64]) -> u64 {
    parts.iter().fold(0u64, |sum, &p| sum.saturating_add(p))
}

/// `1234567` -> `1,234,567`: byte counts people can read at a glance.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(model: ModelSlot) -> Plan {
        Plan {
            label: "nucleo (STM32)".into(),
            flash: 0x0800_0000..0x0808_0000,
            ram: 0x2000_0000..0x2002_0000,
            model,
            notes: vec![],
        }
    }

    fn region() -> ModelSlot {
        ModelSlot::Region(0x0804_0000..0x0808_0000)
    }

    fn demand(blob: u64, arena: u64) -> Demand {
        Demand {
            blob_bytes: blob,
            arena_bytes: arena,
            stack_bytes: 16 * 1024,
            firmware: Some(FirmwareSizes {
                code_bytes: 40_000,
                static_ram_bytes: 2_000,
                arena_buffer: None,
            }),
        }
    }

    #[test]
    fn a_demand_past_64_bits_does_not_wrap_into_fitting() {
        let mut d = demand(1_000, 1_000);
        d.stack_bytes = u64::MAX;
        let budget = Budget::check(&plan(region()), &d);
        assert!(!budget.fits());
        let ram = budget.rows.iter().find(|r| r.resource == "RAM").unwrap();
        assert_eq!(ram.used, u64::MAX);
        assert!(budget.into_result(String::new()).is_err());
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(262_144), "262,144");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn a_region_board_budgets_code_model_and_ram_separately() {
        let budget = Budget::check(&plan(region()), &demand(100_000, 50_000));
        let rows: Vec<(&str, u64, u64)> = budget
            .rows
            .iter()
            .map(|r| (r.resource.as_str(), r.used, r.available))
            .collect();
        assert_eq!(
            rows,
            [
                ("flash: firmware", 40_000, 0x4_0000),
                ("flash: model region", 100_000, 0x4_0000),
                ("RAM", 2_000 + 50_000 + 16_384, 0x2_0000),
            ]
        );
        assert!(budget.fits());
    }

    #[test]
    fn an_embedded_model_shares_flash_with_the_code() {
        let budget = Budget::check(&plan(ModelSlot::Embedded), &demand(500_000, 10_000));
        assert_eq!(budget.rows[0].used, 540_000);
        assert_eq!(budget.rows[0].available, 0x8_0000);
        assert!(!budget.fits());
    }

    #[test]
    fn the_firmware_arena_buffer_bounds_a_new_model() {
        let mut d = demand(10_000, 70_000);
        if let Some(f) = d.firmware.as_mut() {
            f.arena_buffer = Some(60_000);
        }
        let budget = Budget::check(&plan(region()), &d);
        let arena = budget.rows.last().unwrap();
        assert_eq!((arena.used, arena.available), (70_000, 60_000));
        assert!(!budget.fits());
    }

    #[test]
    fn the_table_shows_bytes_percent_and_flags_overflows() {
        let budget = Budget::check(&plan(region()), &demand(300_000, 50_000));
        let table = budget.render();
        let expected_model = format!(
            "  {:<22} {:>12} {:>12} {:>7}  {}",
            "flash: model region", "300,000", "262,144", "114.4%", "0x08040000..0x08080000"
        );
        assert!(table.contains(&expected_model), "{table}");
        assert!(table.contains("<-- does not fit"), "{table}");
        assert!(table.contains("15.3%"), "{table}"); // 40,000 of 262,144 code bytes
        assert!(table.starts_with("fit check on nucleo (STM32): model 300,000 B"));
    }

    #[test]
    fn without_firmware_the_table_says_code_was_not_counted() {
        let mut d = demand(1_000, 1_000);
        d.firmware = None;
        let budget = Budget::check(&plan(region()), &d);
        assert_eq!(budget.rows.len(), 2);
        assert!(budget.render().contains("pass --firmware"));
    }

    #[test]
    fn a_model_that_does_not_fit_names_the_numbers_and_the_way_out() {
        let budget = Budget::check(&plan(region()), &demand(300_000, 50_000));
        let err = budget.into_result("try `cbam prune`".into()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "flash: model region needs 300,000 B but 262,144 B are available (37,856 B over)"
            ),
            "{text}"
        );
        assert!(text.contains("cbam prune"), "{text}");
    }
}
