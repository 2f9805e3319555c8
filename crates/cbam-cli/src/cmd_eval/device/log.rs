//! The device's defmt log, decoded with the firmware ELF's table: warnings and errors are
//! shown as they come, the last lines are kept for error messages.

use std::collections::VecDeque;

use defmt_decoder::{DecodeError, Level, StreamDecoder, Table};
use indicatif::ProgressBar;

/// Lines kept for an error message.
const KEPT: usize = 30;

pub struct DeviceLog {
    decoder: Option<Box<dyn StreamDecoder + Send + Sync>>,
    recent: VecDeque<String>,
    /// Where live lines go: above the progress bar while one is drawn.
    out: Option<ProgressBar>,
}

impl DeviceLog {
    /// A log decoded with `elf`'s defmt table (none: the log bytes are dropped).
    pub fn new(elf: &[u8]) -> Self {
        let decoder = match Table::parse(elf) {
            Ok(Some(table)) => {
                // The decoder borrows its table for as long as the run lasts.
                let table: &'static Table = Box::leak(Box::new(table));
                Some(table.new_stream_decoder())
            }
            _ => None,
        };
        DeviceLog {
            decoder,
            recent: VecDeque::new(),
            out: None,
        }
    }

    pub fn show_above(&mut self, bar: &ProgressBar) {
        self.out = Some(bar.clone());
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        let Some(decoder) = self.decoder.as_mut() else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        decoder.received(bytes);
        loop {
            let (line, loud) = match decoder.decode() {
                Ok(frame) => (
                    frame.display_message().to_string(),
                    matches!(frame.level(), Some(Level::Warn | Level::Error)),
                ),
                Err(DecodeError::UnexpectedEof) => break,
                // A lost Log frame: the decoder resynchronises at the next defmt frame.
                Err(DecodeError::Malformed) => ("(log bytes lost)".to_string(), false),
            };
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
            _ => eprintln!("{line}"),
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
