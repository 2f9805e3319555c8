//! Data files written by the tests: `.npy` arrays and IDX images/labels.

use std::io;
use std::path::Path;

fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let tuple = match dims.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    // NumPy pads the header so the data starts 64-byte aligned, ending in a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

pub fn write_npy_f32(path: &Path, shape: &[usize], values: &[f32]) -> io::Result<()> {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, npy("<f4", shape, &data))
}

pub fn write_npy_i64(path: &Path, values: &[i64]) -> io::Result<()> {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, npy("<i8", &[values.len()], &data))
}

/// Uncompressed IDX: `idx3-ubyte` when `dims` has three entries, `idx1-ubyte` for one.
pub fn write_idx(path: &Path, dims: &[u32], data: &[u8]) -> io::Result<()> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    std::fs::write(path, out)
}
