//! Where a command writes. Before any work, every output is checked against every input and
//! every other output: `./m.onnx`, `sub/../m.onnx`, an absolute path and a symlink all name
//! the same file, so paths are compared canonicalised and by inode. Each output's directory
//! must exist. At the end all outputs are staged and committed together
//! ([`cbam_compiler::fsio`]): an error or Ctrl-C leaves the old set, never a mix.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cbam_compiler::fsio::{self, Staged};

/// A file named on the command line, as the user wrote it and as the file system knows it.
#[derive(Debug)]
struct FileId {
    role: String,
    shown: PathBuf,
    canonical: PathBuf,
    /// `(device, inode)` when the file exists.
    inode: Option<(u64, u64)>,
}

impl FileId {
    fn same(&self, other: &FileId) -> bool {
        self.canonical == other.canonical || (self.inode.is_some() && self.inode == other.inode)
    }
}

fn inode(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// `path` with symlinks and `..` resolved; for a file that does not exist yet, its
/// directory resolved and its name appended, so an output and an input compare alike.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(existing) = path.canonicalize() {
        return existing;
    }
    match (dir_of(path).canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// The directory `path` is in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn file_id(role: &str, path: &Path) -> FileId {
    FileId {
        role: role.to_string(),
        shown: path.to_path_buf(),
        canonical: canonical(path),
        inode: inode(path),
    }
}

/// An output's identity; fails when it cannot be written there (no such directory, or a
/// directory in the way).
fn output_id(role: &str, path: &Path) -> Result<FileId> {
    if path.file_name().is_none() {
        bail!("{role} {} names no file; give a file name", path.display());
    }
    let dir = dir_of(path);
    if !dir.is_dir() {
        bail!(
            "cannot write {role} {}: directory {} does not exist; create it first",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!(
            "cannot write {role} {}: it is a directory; give a file name",
            path.display()
        );
    }
    Ok(file_id(role, path))
}

/// Fails, naming both paths, when an output is an input or two outputs are one file; and
/// when an output's directory does not exist. `inputs` and `outputs` are `(role, path)`,
/// e.g. `("the input model", m.onnx)`, `("--out", m.cbam)`.
pub fn check(inputs: &[(&str, &Path)], outputs: &[(&str, &Path)]) -> Result<()> {
    let inputs: Vec<FileId> = inputs.iter().map(|(r, p)| file_id(r, p)).collect();
    let mut seen: Vec<FileId> = Vec::with_capacity(outputs.len());
    for (role, path) in outputs {
        let out = output_id(role, path)?;
        if let Some(input) = inputs.iter().find(|i| out.same(i)) {
            bail!(
                "{} {} is {} {}: writing it would destroy the input; choose another file name",
                out.role,
                out.shown.display(),
                input.role,
                input.shown.display()
            );
        }
        if let Some(other) = seen.iter().find(|o| out.same(o)) {
            bail!(
                "{} {} and {} {} are the same file; give each output its own name",
                other.role,
                other.shown.display(),
                out.role,
                out.shown.display()
            );
        }
        seen.push(out);
    }
    Ok(())
}

/// Outputs written in full to temp files, renamed over their targets together by
/// [`commit`](Staging::commit). Dropped uncommitted, they leave nothing behind.
#[derive(Default)]
pub struct Staging {
    files: Vec<Staged>,
}

impl Staging {
    pub fn add(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let staged =
            fsio::stage(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        self.files.push(staged);
        Ok(())
    }

    /// Replaces every target; returns their paths in the order added.
    pub fn commit(self) -> Result<Vec<PathBuf>> {
        let paths = self
            .files
            .iter()
            .map(|f| f.target().to_path_buf())
            .collect();
        fsio::commit_all(self.files).context("cannot move the outputs into place")?;
        Ok(paths)
    }
}

/// Writes one file atomically (an overlay, a single PNG).
pub fn write_one(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut staging = Staging::default();
    staging.add(path, bytes)?;
    staging.commit().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_naming_an_input_in_any_spelling_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::write(&model, "model").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let link = dir.path().join("link.onnx");
        std::os::unix::fs::symlink(&model, &link).unwrap();
        let hard = dir.path().join("hard.onnx");
        std::fs::hard_link(&model, &hard).unwrap();
        let dotted = dir.path().join("sub/../m.onnx");
        let inputs = [("the input model", model.as_path())];
        for out in [&model, &dotted, &link, &hard] {
            let msg = check(&inputs, &[("--out", out)]).unwrap_err().to_string();
            assert!(msg.contains("the input model"), "{}: {msg}", out.display());
        }
        assert!(check(&inputs, &[("--out", &dir.path().join("new.cbam"))]).is_ok());
    }

    #[test]
    fn two_outputs_naming_one_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("r.json");
        let b = dir.path().join("sub/../r.json");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let msg = check(&[], &[("--out", &a), ("--report", &b)])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--out") && msg.contains("--report"), "{msg}");
    }

    #[test]
    fn a_missing_directory_or_a_directory_as_output_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nodir/x.onnx");
        let msg = check(&[], &[("--out", &missing)]).unwrap_err().to_string();
        assert!(msg.contains("does not exist"), "{msg}");
        let msg = check(&[], &[("--out", dir.path())])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("directory"), "{msg}");
    }
}
