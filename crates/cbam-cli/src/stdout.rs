//! Printing that survives a closed pipe. `cbam inspect M | head -1` closes stdout after the
//! first line, where `println!` would panic. [`outln!`] returns the `BrokenPipe` error
//! instead, which `main` turns into a quiet exit, as Unix tools do; [`errln!`] drops what a
//! closed stderr cannot take.

use std::fmt;
use std::io::{self, Write};

/// Writes `text` to stdout and flushes it.
pub fn write(text: fmt::Arguments) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(text)?;
    out.flush()
}

/// Whether `error` comes from a reader of our stdout that stopped reading.
pub fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// `println!` that returns an `io::Result` instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that returns an `io::Result` instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: a message that cannot be shown is dropped.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
