//! Ctrl-C, handled in one place for every command. By default it removes the temp files of
//! outputs not yet committed ([`cbam_compiler::fsio`]) and exits 130, so an interrupted
//! command leaves no stray temp file and no half-replaced set of outputs. A loop that can
//! stop cleanly on its own (a camera run, a device log) asks for [`stop_flag`] instead: the
//! first Ctrl-C raises it, a second one exits.

use std::sync::atomic::{AtomicBool, Ordering};

static GRACEFUL: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);

/// Installs the handler; a process without one (no signal support) keeps the default.
pub fn install() {
    if let Err(e) = ctrlc::set_handler(on_interrupt) {
        crate::errln!("note: cannot catch Ctrl-C ({e}); an interrupt may leave temp files");
    }
}

fn on_interrupt() {
    if GRACEFUL.load(Ordering::SeqCst) && !STOP.swap(true, Ordering::SeqCst) {
        return;
    }
    // Held until exit: no commit can start or finish half-way after this.
    let _staged = cbam_compiler::fsio::discard_staged();
    std::process::exit(130);
}

/// Makes the next Ctrl-C raise the returned flag instead of exiting.
pub fn stop_flag() -> &'static AtomicBool {
    GRACEFUL.store(true, Ordering::SeqCst);
    &STOP
}
