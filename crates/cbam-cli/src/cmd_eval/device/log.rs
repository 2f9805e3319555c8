//! The device's defmt log, decoded with the firmware ELF's table: warnings and errors are
//! shown as they come, the last lines are kept for error messages.

use std::collections::VecDeque;

use defmt_decoder::{DecodeError, StreamDecoder, Table};
use indicatif::ProgressBar;

/// Lines kept for an error message.
const KEPT: usize = 30;

/// The firmware's defmt table; `None` when the ELF has none (its log is then dropped).
pub fn table(elf: &[u8]) -> Option<Table> {
    Table::parse(elf).ok().flatten()
}

pub struct DeviceLog<'t> {
    decoder: Option<Box<dyn StreamDecoder + Send + Sync + 't>>,
    /// rzcobs frames resynchronise after lost bytes; raw ones cannot.
    can_recover: bool,
    recent: VecDeque<String>,
    /// Where live lines go: above the progress bar while one is drawn.
    out: Option<ProgressBar>,
}

impl<'t> DeviceLog<'t> {
    pub fn new(table: Option<&'t Table>) -> Self {
        DeviceLog {
            decoder: table.map(Table::new_stream_decoder),
            can_recover: table.is_some_and(|t| t.encoding().can_recover()),
            recent: VecDeque::new(),
            out: None,
        }
    }

    pub fn show_above(&mut self, bar: &ProgressBar) {
        self.out = Some(bar.clone());
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return;
        };
        decoder.received(bytes);
        let mut lines = Vec::new();
        loop {
            match decoder.decode() {
                Ok(frame) => {
                    let loud = frame
                        .level()
                        .is_some_and(|l| matches!(l.as_str(), "warn" | "error"));
                    lines.push((frame.display_message().to_string(), loud));
                }
                Err(DecodeError::UnexpectedEof) => break,
                Err(DecodeError::Malformed) => {
                    lines.push(("(device log bytes were lost)".to_string(), false));
                    if !self.can_recover {
                        break;
                    }
                }
            }
        }
        for (line, loud) in lines {
            if loud {
                self.print(&format!("device: {line}"));
            }
            if self.recent.len() == KEPT {
                self.recent.pop_front();
            }
            self.recent.push_back(line);
        }
    }

    fn print(&self, line: &str) {
        match &self.out {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => crate::errln!("{line}"),
        }
    }

    /// The last lines, as a paragraph for an error message ("" when there are none).
    pub fn tail(&self) -> String {
        if self.recent.is_empty() {
            return String::new();
        }
        let lines: Vec<&str> = self.recent.iter().map(String::as_str).collect();
        format!("\nthe device's last log lines:\n  {}", lines.join("\n  "))
    }
}
