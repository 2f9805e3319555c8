//! Chip memory maps from probe-rs's built-in target registry (plus the Espressif plugin,
//! which probe-rs 0.32 ships as a separate crate).

use std::ops::Range;
use std::sync::Once;

use probe_rs::config::{MemoryRegion, Registry, RegistryError, Target};

use super::error::FlashError;

/// How many close names an unknown-chip error offers.
const SUGGESTIONS: usize = 6;

/// The parts of a probe-rs target the fit check reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipMap {
    /// The probe-rs name the registry resolved (`STM32F411RETx`, `esp32c3`, ...).
    pub name: String,
    /// Flash regions that are not aliases of another one.
    pub flash: Vec<Range<u64>>,
    /// Every RAM address window, aliases included: a firmware section placed in any of
    /// them (e.g. ESP32-C3 IRAM vs DRAM addresses of the same SRAM) uses RAM.
    pub ram: Vec<Range<u64>>,
}

impl ChipMap {
    fn from_target(target: &Target) -> Self {
        let mut flash = Vec::new();
        let mut ram = Vec::new();
        for region in &target.memory_map {
            match region {
                MemoryRegion::Nvm(nvm) if !nvm.is_alias => flash.push(nvm.range.clone()),
                MemoryRegion::Ram(r) => ram.push(r.range.clone()),
                _ => {}
            }
        }
        ChipMap {
            name: target.name.clone(),
            flash,
            ram,
        }
    }

    /// The flash region holding `address`, or the largest one when the board names none.
    pub fn flash_region(&self, address: Option<u64>) -> Option<Range<u64>> {
        pick_region(&self.flash, address)
    }

    /// The RAM window holding `address`, or the largest one when the board names none.
    pub fn ram_region(&self, address: Option<u64>) -> Option<Range<u64>> {
        pick_region(&self.ram, address)
    }
}

fn pick_region(regions: &[Range<u64>], address: Option<u64>) -> Option<Range<u64>> {
    match address {
        Some(a) => regions.iter().find(|r| r.contains(&a)).cloned(),
        None => regions.iter().max_by_key(|r| r.end - r.start).cloned(),
    }
}

/// The registry with the Espressif targets added (registered once per process).
pub fn registry() -> Registry {
    static ESPRESSIF: Once = Once::new();
    ESPRESSIF.call_once(probe_rs_espressif::register_plugin);
    Registry::from_builtin_families()
}

/// Resolves a chip name to its probe-rs target.
pub fn target(registry: &Registry, name: &str) -> Result<Target, FlashError> {
    registry.get_target_by_name(name).map_err(|e| match e {
        RegistryError::ChipNotFound(_) => FlashError::UnknownChip {
            name: name.to_string(),
            close: close_names(registry, name),
        },
        RegistryError::ChipNotUnique(_, matches) => FlashError::AmbiguousChip {
            name: name.to_string(),
            matches,
        },
        other => FlashError::Registry(other.to_string()),
    })
}

/// Resolves a chip name to the memory map the fit check needs.
pub fn memory_map(registry: &Registry, name: &str) -> Result<ChipMap, FlashError> {
    target(registry, name).map(|t| ChipMap::from_target(&t))
}

/// Chip names nearest to a mistyped one: names that contain it first, then by edit
/// similarity, so `stm32f411` and `nrf52840` both find what was meant.
fn close_names(registry: &Registry, wanted: &str) -> Vec<String> {
    let wanted = wanted.to_ascii_lowercase();
    let mut scored: Vec<(f64, &String)> = registry
        .families()
        .iter()
        .flat_map(|family| family.variants.iter())
        .flat_map(|chip| chip.package_variants())
        .map(|name| {
            let lower = name.to_ascii_lowercase();
            let contains = if lower.contains(&wanted) { 1.0 } else { 0.0 };
            (contains + strsim::jaro_winkler(&lower, &wanted), name)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut names: Vec<String> = Vec::with_capacity(SUGGESTIONS);
    for (_, name) in scored {
        if !names.contains(name) {
            names.push(name.clone());
        }
        if names.len() == SUGGESTIONS {
            break;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stm32f411re_has_512k_flash_and_128k_ram() {
        let map = memory_map(&registry(), "STM32F411RETx").unwrap();
        assert_eq!(
            map.flash_region(Some(0x0800_0000)),
            Some(0x0800_0000..0x0808_0000)
        );
        assert_eq!(
            map.ram_region(Some(0x2000_0000)),
            Some(0x2000_0000..0x2002_0000)
        );
    }

    #[test]
    fn esp32c3_comes_from_the_espressif_plugin() {
        let map = memory_map(&registry(), "esp32c3").unwrap();
        assert_eq!(map.name, "esp32c3");
        // The data-bus SRAM window and its instruction-bus alias are both RAM.
        assert!(map.ram_region(Some(0x3FC8_0000)).is_some());
        assert!(map.ram_region(Some(0x4038_0000)).is_some());
        assert!(map.flash_region(Some(0)).is_some());
    }

    #[test]
    fn an_unknown_chip_lists_close_names() {
        let err = memory_map(&registry(), "STM32F411XYZ").unwrap_err();
        let FlashError::UnknownChip { close, .. } = &err else {
            panic!("expected UnknownChip, got {err}");
        };
        assert!(
            close.iter().any(|n| n.starts_with("STM32F411")),
            "{close:?}"
        );
        assert!(err.to_string().contains("STM32F411XYZ"));
    }

    #[test]
    fn a_partial_name_matching_many_chips_is_ambiguous() {
        let err = memory_map(&registry(), "STM32F4").unwrap_err();
        assert!(matches!(err, FlashError::AmbiguousChip { .. }), "{err}");
    }
}
