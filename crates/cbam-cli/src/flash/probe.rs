//! Choosing the debug probe to flash through.

use std::str::FromStr;

use probe_rs::probe::list::Lister;
use probe_rs::probe::{DebugProbeInfo, DebugProbeSelector};

use super::error::FlashError;

/// The one attached probe matching `selector` (or the only one attached).
pub fn select(lister: &Lister, selector: Option<&str>) -> Result<DebugProbeInfo, FlashError> {
    let wanted = selector
        .map(|s| {
            DebugProbeSelector::from_str(s).map_err(|e| FlashError::BadProbeSelector {
                selector: s.to_string(),
                reason: e.to_string(),
            })
        })
        .transpose()?;
    let all = lister.list_all();
    let found = || all.iter().map(ToString::to_string).collect::<Vec<_>>();
    let mut matching: Vec<&DebugProbeInfo> = match &wanted {
        Some(w) => all.iter().filter(|p| w.matches_probe(p)).collect(),
        None => all.iter().collect(),
    };
    match matching.len() {
        0 => Err(FlashError::NoProbe {
            selector: selector.map(str::to_string),
            found: found(),
        }),
        1 => Ok(matching.remove(0).clone()),
        _ => Err(FlashError::ManyProbes {
            found: matching.iter().map(ToString::to_string).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test machine (and CI) has no debug probe attached, which is exactly the
    /// situation whose error message matters most.
    #[test]
    fn no_probe_attached_is_a_clear_error() {
        let lister = Lister::new();
        if !lister.list_all().is_empty() {
            return; // a probe is plugged in here; the no-probe path cannot be exercised
        }
        let err = select(&lister, None).unwrap_err();
        assert!(matches!(err, FlashError::NoProbe { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("no debug probes were found"), "{text}");
        assert!(text.contains("plugged in"), "{text}");
    }

    #[test]
    fn a_selector_matching_nothing_names_the_selector() {
        let err = select(&Lister::new(), Some("1209:0001")).unwrap_err();
        assert!(err.to_string().contains("--probe 1209:0001"), "{err}");
    }

    #[test]
    fn a_malformed_selector_is_rejected_before_listing() {
        let err = select(&Lister::new(), Some("not-a-probe")).unwrap_err();
        assert!(matches!(err, FlashError::BadProbeSelector { .. }), "{err}");
    }
}
