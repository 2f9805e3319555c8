//! Files in and out. Reads refuse anything that is not a regular file (`/dev/zero`, a FIFO,
//! a symlink to either never ends) and cap the bytes they take. Writes are staged: the bytes
//! go to a temp file beside the target and are renamed over it only when every output of a
//! command is ready, so an error or Ctrl-C never leaves a half-written or mixed set.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Reads the regular file at `path` if it holds at most `max_bytes`; `raise` tells the user
/// what to do about a larger one (e.g. "raise it with --max-data-bytes N").
pub fn read_regular(path: &Path, max_bytes: u64, raise: &str) -> io::Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    if len > max_bytes {
        return Err(too_large(len, max_bytes, raise));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // The file may grow while it is read: take no more than the cap.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64, max_bytes, raise));
    }
    Ok(bytes)
}

/// Opens `path` (following symlinks) if it is a regular file, with its length. The type is
/// checked before opening: opening a FIFO would block until someone writes to it.
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

fn not_regular(meta: &std::fs::Metadata) -> io::Error {
    let kind = if meta.is_dir() {
        "a directory"
    } else {
        "a device, pipe or socket"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {kind}, not a regular file; pass a file"),
    )
}

fn too_large(len: u64, max: u64, raise: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("it holds {len} bytes, over the limit of {max} bytes; {raise}"),
    )
}

/// Temp files written and not yet renamed or removed, for [`discard_staged`].
static STAGED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

fn staged() -> MutexGuard<'static, Vec<PathBuf>> {
    STAGED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Bytes written in full to a temp file beside `target`, waiting to replace it.
#[derive(Debug)]
pub struct Staged {
    temp: PathBuf,
    target: PathBuf,
}

/// Writes `bytes` to a new temp file in `target`'s directory. The temp name is short
/// (`.cbam-<pid>-<n>.tmp`), so any target name the file system allows can be staged.
pub fn stage(target: &Path, bytes: &[u8]) -> io::Result<Staged> {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Created and registered under the lock, so an interrupt's discard never misses it.
    let mut registry = staged();
    let (temp, mut file) = loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".cbam-{}-{n}.tmp", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(file) => break (temp, file),
            // A temp left by a killed process with the same pid: take the next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    registry.push(temp.clone());
    drop(registry);
    let staged = Staged {
        temp,
        target: target.to_path_buf(),
    };
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(staged)
}

impl Staged {
    pub fn target(&self) -> &Path {
        &self.target
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.temp);
        staged().retain(|t| t != &self.temp);
    }
}

/// Renames every staged file over its target, back to back, with [`discard_staged`] held
/// off until all are done, so an interrupt leaves either the old set or the new one.
pub fn commit_all(files: Vec<Staged>) -> io::Result<()> {
    let mut registry = staged();
    let mut result = Ok(());
    for file in &files {
        if result.is_ok() {
            result = std::fs::rename(&file.temp, &file.target);
        }
        registry.retain(|t| t != &file.temp);
    }
    drop(registry);
    // Committed temps no longer exist; the rest are removed by `Drop`.
    drop(files);
    result
}

/// Removes every temp file still staged; for an interrupt handler, before the process exits.
/// Waits for a [`commit_all`] in progress to finish first.
pub fn discard_staged() -> MutexGuard<'static, Vec<PathBuf>> {
    let mut registry = staged();
    for temp in registry.drain(..) {
        let _ = std::fs::remove_file(temp);
    }
    registry
}

/// Writes `bytes` to `path` atomically: staged, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    commit_all(vec![stage(path, bytes)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests that stage files, one at a time: the registry of staged temps is global,
    /// and one test discards all of it.
    fn serial() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn devices_and_directories_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_regular(Path::new("/dev/zero"), 1 << 20, "").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let link = dir.path().join("zero.onnx");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read_regular(&link, 1 << 20, "").is_err());
        let err = read_regular(dir.path(), 1 << 20, "").unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn a_file_over_the_cap_is_refused_with_the_way_to_raise_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, [0u8; 100]).unwrap();
        assert_eq!(read_regular(&path, 100, "").unwrap().len(), 100);
        let err = read_regular(&path, 99, "raise it with --max-x").unwrap_err();
        assert!(err.to_string().contains("--max-x"), "{err}");
    }

    #[test]
    fn staged_files_replace_their_targets_together_and_leave_no_temp() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "old a").unwrap();
        let files = vec![stage(&a, b"new a").unwrap(), stage(&b, b"new b").unwrap()];
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        commit_all(files).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        assert_eq!(listing(dir.path()), ["a", "b"]);
    }

    #[test]
    fn a_dropped_stage_leaves_nothing() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        drop(stage(&dir.path().join("x"), b"x").unwrap());
        assert!(listing(dir.path()).is_empty());
    }

    #[test]
    fn discarding_what_is_staged_keeps_the_old_targets_and_leaves_no_temp() {
        let _serial = serial();
        // What the Ctrl-C handler does when the signal lands between staging and commit.
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "old a").unwrap();
        std::fs::write(&b, "old b").unwrap();
        let files = vec![stage(&a, b"new a").unwrap(), stage(&b, b"new b").unwrap()];
        assert_eq!(listing(dir.path()).len(), 4);
        drop(discard_staged());
        assert_eq!(listing(dir.path()), ["a", "b"]);
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        assert!(
            commit_all(files).is_err(),
            "a discarded stage cannot be committed"
        );
        assert_eq!(std::fs::read(&b).unwrap(), b"old b");
    }

    #[test]
    fn a_long_target_name_is_staged_under_a_short_temp_name() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join(format!("{}.cbam", "m".repeat(245)));
        write_atomic(&long, b"ok").unwrap();
        assert_eq!(std::fs::read(&long).unwrap(), b"ok");
    }
}
