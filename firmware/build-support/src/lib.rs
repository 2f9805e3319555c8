//! Build-script side of the cbam firmwares.
//!
//! A firmware's `build.rs` calls [`generate`]: it picks the board from the
//! crate's cargo features and `firmware/boards.toml`, writes `memory.x` with the
//! model region, runs the host `cbam-core` on the embedded test images to get
//! the outputs the device must reproduce bit for bit, and emits everything into
//! `OUT_DIR` (`cbam_testset.rs` is `include!`d by the firmware).
//!
//! The images are the first `CBAM_TEST_IMAGES` (default [`DEFAULT_TEST_IMAGES`]) of
//! Fashion-MNIST's test set, or of the ImageFolder `CBAM_TEST_DATA` names (the model's own
//! images, e.g. a colour model's; they must have its input size).
//!
//! `CBAM_RAM_LIMIT` (bytes, or with a `K` suffix: `128K`) links the firmware into at most
//! that much of the board's RAM, to prove on a large QEMU board that a model runs on a
//! smaller chip.

pub mod boards;
pub mod emit;
pub mod expected;
pub mod folder;
pub mod images;
pub mod linker;

use std::path::{Path, PathBuf};

pub use linker::Runtime;

/// Everything that can stop a firmware build before compilation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("firmware/boards.toml is malformed: {0}")]
    BoardsToml(String),
    #[error("board `{name}` is not in firmware/boards.toml (known: {known})")]
    UnknownBoard { name: String, known: String },
    #[error("board `{board}` in firmware/boards.toml: {why}")]
    BoardInvalid { board: String, why: String },
    #[error("no board feature enabled; enable exactly one of: {0}")]
    NoBoardFeature(String),
    #[error("several board features enabled ({0}); enable exactly one")]
    SeveralBoardFeatures(String),
    #[error(
        "model blob {0} not found: build one with `cbam quantize` (models/README) or point CBAM_BLOB at a .cbam file"
    )]
    NoBlob(PathBuf),
    #[error("the model blob is invalid for the host core: {0}")]
    Core(String),
    #[error("the model blob's metadata {0}; re-create the blob with `cbam quantize`")]
    BlobMeta(String),
    #[error(
        "the model's input is {model} (HxWxC) but the images in {dir} are {images}; the firmware embeds images as they are: point CBAM_TEST_DATA at images of the model's input size"
    )]
    InputShape {
        model: String,
        images: String,
        dir: PathBuf,
    },
    #[error("test image folder: {path} {why}")]
    Folder { path: PathBuf, why: String },
    #[error("no test images: neither {repo} nor {system} exists (run scripts/setup.sh for dataset-fashion-mnist)")]
    NoTestImages { repo: PathBuf, system: PathBuf },
    #[error("CBAM_TEST_IMAGES={wanted} but {file} holds {available} images (use 1..={available})")]
    ImageCount {
        wanted: usize,
        available: usize,
        file: PathBuf,
    },
    #[error("CBAM_RAM_LIMIT must be a byte count of at least 1024 and a multiple of 4, or KiB with a K suffix (128K), got `{0}`")]
    RamLimitSyntax(String),
    #[error("CBAM_TEST_IMAGES must be a positive integer, got `{0}`")]
    ImageCountSyntax(String),
    #[error("{path}: not a Fashion-MNIST IDX file ({why})")]
    Idx { path: PathBuf, why: String },
    #[error(
        "the blob ({blob} bytes) does not fit the model region of board `{board}` ({region} bytes)"
    )]
    BlobTooLarge {
        board: String,
        blob: usize,
        region: u64,
    },
    #[error("environment variable {0} is not set; run from a cargo build script")]
    NotInBuildScript(&'static str),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Default number of embedded test images: enough to exercise every class,
/// few enough for a quick QEMU run.
pub const DEFAULT_TEST_IMAGES: usize = 16;

/// Does a firmware build script's whole job for the crate being built.
/// `runtime` is `None` for targets whose HAL brings its own linker scripts.
pub fn generate(runtime: Option<Runtime>) -> Result<(), Error> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let firmware_dir = manifest_dir.join("..");
    let repo_root = firmware_dir.join("..");

    let boards_toml = firmware_dir.join("boards.toml");
    let mut board = boards::load(
        &boards_toml,
        &board_from_features(&boards_toml, &manifest_dir)?,
    )?;
    println!("cargo:rerun-if-env-changed=CBAM_RAM_LIMIT");
    if let Some(limit) = ram_limit()? {
        board.ram_size = board.ram_size.min(limit);
    }

    println!("cargo:rerun-if-env-changed=CBAM_BLOB");
    println!("cargo:rerun-if-env-changed=CBAM_TEST_IMAGES");
    println!("cargo:rerun-if-env-changed=CBAM_TEST_DATA");
    println!("cargo:rerun-if-changed={}", boards_toml.display());
    let blob_path = match std::env::var_os("CBAM_BLOB") {
        Some(path) => manifest_dir.join(path),
        None => repo_root.join("models/fmnist_cbam.cbam"),
    };
    if !blob_path.is_file() {
        return Err(Error::NoBlob(blob_path));
    }
    println!("cargo:rerun-if-changed={}", blob_path.display());
    let blob = std::fs::read(&blob_path).map_err(|e| Error::io(&blob_path, e))?;
    if let Some(region) = board.model_region()? {
        if blob.len() as u64 > region.size {
            return Err(Error::BlobTooLarge {
                board: board.name.clone(),
                blob: blob.len(),
                region: region.size,
            });
        }
    }

    let n = image_count()?;
    let test_images = match std::env::var_os("CBAM_TEST_DATA") {
        Some(dir) => {
            let dir = manifest_dir.join(dir);
            println!("cargo:rerun-if-changed={}", dir.display());
            folder::load(&dir, n)?
        }
        None => images::load(
            &repo_root.join("models/data"),
            Path::new(images::SYSTEM_DATASET_DIR),
            n,
        )?,
    };
    for source in &test_images.sources {
        println!("cargo:rerun-if-changed={}", source.display());
    }
    let expected = expected::compute(&blob, &test_images)?;

    let build = emit::Build {
        eval: std::env::var_os("CARGO_FEATURE_EVAL").is_some(),
        name: format!(
            "{} {} {}",
            env("CARGO_PKG_NAME")?,
            env("CARGO_PKG_VERSION")?,
            env("TARGET")?
        ),
    };
    emit::write_all(&out_dir, &board, &blob, &expected, &build)?;
    if let Some(runtime) = runtime {
        let memory = linker::memory_x(&board, runtime)?;
        let path = out_dir.join("memory.x");
        std::fs::write(&path, memory).map_err(|e| Error::io(&path, e))?;
        println!("cargo:rustc-link-search={}", out_dir.display());
    }
    Ok(())
}

fn env(name: &'static str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| Error::NotInBuildScript(name))
}

fn ram_limit() -> Result<Option<u64>, Error> {
    match std::env::var("CBAM_RAM_LIMIT") {
        Err(_) => Ok(None),
        Ok(text) => parse_ram_limit(&text)
            .map(Some)
            .ok_or(Error::RamLimitSyntax(text)),
    }
}

/// `131072` or `128K` (KiB); at least 1 KiB, a multiple of 4 like every RAM region.
fn parse_ram_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.strip_suffix(['K', 'k']) {
        Some(digits) => (digits, 1024),
        None => (text, 1),
    };
    let bytes = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    (bytes >= 1024 && bytes % 4 == 0).then_some(bytes)
}

fn image_count() -> Result<usize, Error> {
    match std::env::var("CBAM_TEST_IMAGES") {
        Err(_) => Ok(DEFAULT_TEST_IMAGES),
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::ImageCountSyntax(text)),
        },
    }
}

/// The one board of this firmware crate whose cargo feature is enabled.
fn board_from_features(boards_toml: &Path, manifest_dir: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(boards_toml).map_err(|e| Error::io(boards_toml, e))?;
    let crate_dir = manifest_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let candidates: Vec<boards::Board> = boards::parse(&text)?
        .into_iter()
        .filter(|b| b.firmware_dir == crate_dir)
        .collect();
    let enabled: Vec<&boards::Board> = candidates
        .iter()
        .filter(|b| {
            std::env::var_os(format!(
                "CARGO_FEATURE_{}",
                b.feature.to_uppercase().replace('-', "_")
            ))
            .is_some()
        })
        .collect();
    match enabled.as_slice() {
        [one] => Ok(one.name.clone()),
        [] => Err(Error::NoBoardFeature(
            candidates
                .iter()
                .map(|b| b.feature.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
        many => Err(Error::SeveralBoardFeatures(
            many.iter()
                .map(|b| b.feature.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ram_limit;

    #[test]
    fn ram_limits_are_bytes_or_kib() {
        assert_eq!(parse_ram_limit("131072"), Some(131_072));
        assert_eq!(parse_ram_limit(" 128K"), Some(131_072));
        assert_eq!(parse_ram_limit("64k"), Some(65_536));
        for bad in [
            "",
            "K",
            "0",
            "1023",
            "1026",
            "-1K",
            "12.5K",
            "99999999999999999999K",
        ] {
            assert_eq!(parse_ram_limit(bad), None, "{bad}");
        }
    }
}
