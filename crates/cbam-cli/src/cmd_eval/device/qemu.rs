//! QEMU boards: the evaluation firmware under `qemu-system-*`, its semihosting stdin and
//! stdout as the link (the firmware's side is `firmware/app/src/transport/semihosting.rs`).
//!
//! `-icount shift=0,sleep=off` makes the counter an exact instruction count that does not
//! advance while the guest waits for the host. The model is placed at the board's model
//! region with QEMU's generic loader, so one firmware build serves every model.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::link::{Received, Transport};
use crate::flash::boards::Board;

pub struct Qemu {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<Vec<u8>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

/// The QEMU program and CPU for a board's core (as `firmware/run.sh` picks them).
fn emulator(board: &Board) -> Result<(&'static str, &'static [&'static str])> {
    Ok(match board.core.as_str() {
        "M4F" => ("qemu-system-arm", &["-cpu", "cortex-m4"]),
        "M3" => ("qemu-system-arm", &["-cpu", "cortex-m3"]),
        "M0" | "M0+" => ("qemu-system-arm", &["-cpu", "cortex-m0"]),
        "RV32IMC" => ("qemu-system-riscv32", &["-bios", "none"]),
        other => bail!("board {}: no QEMU CPU for core `{other}`", board.name),
    })
}

impl Qemu {
    /// Starts `elf` on the board's QEMU machine with `model` loaded at `model_origin`.
    pub fn launch(board: &Board, elf: &Path, model: Option<(u64, &Path)>) -> Result<Self> {
        let (program, cpu) = emulator(board)?;
        let mut command = Command::new(program);
        command
            .args(cpu)
            .args(["-machine", &board.qemu_machine])
            .args(["-display", "none", "-monitor", "none", "-serial", "none"])
            .args(["-icount", "shift=0,sleep=off"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .arg("-kernel")
            .arg(elf);
        if let Some((origin, path)) = model {
            let file = path.to_str().with_context(|| {
                format!("QEMU cannot load {}: not a UTF-8 path", path.display())
            })?;
            // QEMU's option syntax: a comma inside a value is written twice.
            let file = file.replace(',', ",,");
            command
                .arg("-device")
                .arg(format!("loader,file={file},addr={origin:#x},force-raw=on"));
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().with_context(|| {
            format!(
                "cannot start {program} for board {}; run scripts/setup.sh",
                board.name
            )
        })?;

        let mut stdout = child.stdout.take().context("QEMU's stdout")?;
        let (tx, rx) = mpsc::channel();
        let out_reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().context("QEMU's stderr")?;
        let collected = Arc::new(Mutex::new(Vec::new()));
        let err_reader = std::thread::spawn({
            let collected = Arc::clone(&collected);
            move || {
                let mut text = Vec::new();
                let _ = stderr.read_to_end(&mut text);
                if let Ok(mut c) = collected.lock() {
                    c.extend(text);
                }
            }
        });
        Ok(Qemu {
            stdin: child.stdin.take(),
            child,
            stdout: rx,
            stderr: collected,
            readers: vec![out_reader, err_reader],
        })
    }

    /// Why QEMU is gone: its exit status and what it printed.
    fn gone(&mut self) -> anyhow::Error {
        let status = wait_briefly(&mut self.child, Duration::from_secs(2));
        let text = self
            .stderr
            .lock()
            .map(|t| String::from_utf8_lossy(&t).trim().to_string())
            .unwrap_or_default();
        let status = status.map_or("is still running".to_string(), |s| format!("exited ({s})"));
        if text.is_empty() {
            anyhow::anyhow!("QEMU {status}")
        } else {
            anyhow::anyhow!("QEMU {status}:\n{text}")
        }
    }
}

impl Transport for Qemu {
    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            bail!("the link to QEMU is closed");
        };
        if stdin.write_all(bytes).and_then(|()| stdin.flush()).is_err() {
            return Err(self.gone());
        }
        Ok(())
    }

    fn receive(&mut self, deadline: Instant) -> Result<Received> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.stdout.recv_timeout(wait) {
            Ok(mut link) => {
                // Take whatever else is already there in the same call.
                while let Ok(more) = self.stdout.try_recv() {
                    link.extend(more);
                }
                Ok(Received {
                    link,
                    log: Vec::new(),
                })
            }
            Err(RecvTimeoutError::Timeout) => Ok(Received::default()),
            Err(RecvTimeoutError::Disconnected) => Err(self.gone()),
        }
    }
}

impl Drop for Qemu {
    /// Closing stdin is the firmware's signal to exit; QEMU is killed if it lingers.
    fn drop(&mut self) {
        drop(self.stdin.take());
        if wait_briefly(&mut self.child, Duration::from_secs(2)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// The exit status if the child ends within `limit`.
fn wait_briefly(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}
