//! The model blob as the fit check sees it: validated by the core's reader (the one
//! reader of the format), then its length and the arena its header asks for.

use std::path::Path;

use super::error::FlashError;

/// What a validated blob asks of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    /// Bytes to program: the whole file (trailing padding after `total_len` included).
    pub len: u64,
    /// Arena bytes the interpreter needs (header `arena_size`).
    pub arena: u64,
}

/// Validates `bytes` with `cbam_core::Model::parse` and reads its sizes.
pub fn inspect(path: &Path, bytes: &[u8]) -> Result<BlobInfo, FlashError> {
    let bad = |reason: String| FlashError::BadBlob {
        path: path.to_path_buf(),
        reason,
    };
    let model = cbam_core::Model::parse(bytes)
        .map_err(|e| bad(format!("{e}. Re-create it with `cbam quantize`")))?;
    Ok(BlobInfo {
        len: bytes.len() as u64,
        arena: model.arena_size() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_blob_is_rejected_with_the_path_and_the_fix() {
        let err = inspect(Path::new("m.cbam"), b"CBAM\x01\x00garbage").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("m.cbam"), "{text}");
        assert!(text.contains("cbam quantize"), "{text}");
    }
}
