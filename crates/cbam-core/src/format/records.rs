//! The three fixed-size records (FORMAT.md "Header", "Tensor record", "Op record"), each
//! declared once, field by field in byte order: reading and writing both follow the
//! declaration, so a field's offset is stated nowhere else.
//!
//! The records hold the stored values as they are; what they must satisfy is the reader's
//! business ([`crate::blob`]).

/// A little-endian value of a record.
pub trait Field: Sized + Copy {
    /// Bytes the field takes.
    const LEN: usize;
    /// The value in the first `LEN` bytes, `None` if there are fewer.
    fn get(bytes: &[u8]) -> Option<Self>;
    /// Writes the value into the first `LEN` bytes (nothing if there are fewer).
    fn put(self, bytes: &mut [u8]);
}

macro_rules! le_field {
    ($($ty:ty),*) => {$(
        impl Field for $ty {
            const LEN: usize = core::mem::size_of::<$ty>();
            fn get(bytes: &[u8]) -> Option<Self> {
                bytes.first_chunk().map(|b| <$ty>::from_le_bytes(*b))
            }
            fn put(self, bytes: &mut [u8]) {
                if let Some(dst) = bytes.first_chunk_mut() {
                    *dst = self.to_le_bytes();
                }
            }
        }
    )*};
}

le_field!(u16, u32, i32, f32);

impl Field for [u8; 4] {
    const LEN: usize = 4;
    fn get(bytes: &[u8]) -> Option<Self> {
        bytes.first_chunk().copied()
    }
    fn put(self, bytes: &mut [u8]) {
        if let Some(dst) = bytes.first_chunk_mut() {
            *dst = self;
        }
    }
}

impl Field for [u16; super::MAX_INPUTS] {
    const LEN: usize = 2 * super::MAX_INPUTS;
    fn get(bytes: &[u8]) -> Option<Self> {
        let mut out = [0u16; super::MAX_INPUTS];
        for (i, v) in out.iter_mut().enumerate() {
            *v = u16::get(bytes.get(2 * i..)?)?;
        }
        Some(out)
    }
    fn put(self, bytes: &mut [u8]) {
        for (i, v) in self.into_iter().enumerate() {
            if let Some(dst) = bytes.get_mut(2 * i..) {
                v.put(dst);
            }
        }
    }
}

/// Declares a record: its fields in byte order, `LEN`, `read` and `write`.
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $name {
            /// Bytes of the record.
            pub const LEN: usize = 0 $(+ <$ty as Field>::LEN)*;

            /// The record in the first `LEN` bytes of `bytes`, `None` if there are fewer.
            pub fn read(bytes: &[u8]) -> Option<Self> {
                let mut at = 0;
                $(
                    let $field = <$ty as Field>::get(bytes.get(at..)?)?;
                    at += <$ty as Field>::LEN;
                )*
                let _ = at;
                Some(Self { $($field,)* })
            }

            /// The record's bytes.
            pub fn write(&self) -> [u8; Self::LEN] {
                let mut out = [0u8; Self::LEN];
                let mut at = 0;
                $(
                    if let Some(dst) = out.get_mut(at..) {
                        self.$field.put(dst);
                    }
                    at += <$ty as Field>::LEN;
                )*
                let _ = at;
                out
            }
        }
    };
}

record! {
    /// The 64-byte header at offset 0.
    pub struct HeaderFields {
        /// [`super::MAGIC`].
        pub magic: [u8; 4],
        pub version: u16,
        pub header_len: u16,
        /// Length of the whole blob; bytes after it are ignored (flash padding).
        pub total_len: u32,
        /// CRC-32 of bytes `[CRC_START, total_len)`.
        pub crc32: u32,
        /// Arena bytes the interpreter needs (activations and scratch).
        pub arena_size: u32,
        /// Offset of the shared scratch region within the arena.
        pub scratch_off: u32,
        pub scratch_size: u32,
        pub n_tensors: u16,
        pub n_ops: u16,
        pub tensors_off: u32,
        pub ops_off: u32,
        pub input_tensor: u16,
        pub output_tensor: u16,
        /// Bit 0: [`super::FLAG_RAW_PIXELS`].
        pub flags: u32,
        /// 0 if there is no metadata.
        pub meta_off: u32,
        pub meta_len: u32,
        /// Multiply-accumulates per inference (informational).
        pub macs: u32,
        /// Version 2: 0, or the blob offset of the schedule (a `u32` stage count, then
        /// that many [`StageFields`]). Version 1: reserved, read as 0.
        pub schedule_off: u32,
    }
}

record! {
    /// One 32-byte entry of the tensor table.
    pub struct TensorFields {
        pub h: u16,
        pub w: u16,
        /// Channels stored in the arena.
        pub c: u16,
        /// Logical channels (`> c` only for a pruned tensor with a kept list).
        pub full_c: u16,
        /// Offset of element (0, 0, 0) in the arena.
        pub arena_off: u32,
        /// 0, or the blob offset of `c` strictly increasing `u16` kept-channel indices.
        pub kept_off: u32,
        /// Quantization scale (host information; kernels never read it).
        pub scale: f32,
        pub zero_point: i32,
        /// [`super::TENSOR_FLAG_INPUT`], [`super::TENSOR_FLAG_OUTPUT`].
        pub flags: u32,
        /// Version 2: 0 for a whole tensor; otherwise the tensor lives only inside a stage,
        /// in a band buffer of this many rows at `arena_off`. Version 1: reserved, 0.
        pub band_rows: u32,
    }
}

record! {
    /// One 32-byte entry of the op table.
    pub struct OpFields {
        /// An [`super::OpCode`].
        pub code: u16,
        pub n_inputs: u16,
        /// Tensor indices; unused slots hold [`super::NO_INPUT`].
        pub inputs: [u16; super::MAX_INPUTS],
        pub output: u16,
        pub reserved_14: u16,
        /// Blob offset of the op's parameter words.
        pub params_off: u32,
        /// Bytes of parameter words: 4 x the op's word count.
        pub params_len: u32,
        /// Scratch bytes the op needs (the core's own number for it).
        pub scratch_len: u32,
        pub reserved_28: u32,
    }
}

/// The stage's CBAM op pools its spatial maps during the final pass, reading `k/2` rows
/// beyond each band, instead of in a pass of its own.
pub const STAGE_FLAG_LOOKAHEAD: u16 = 1;

record! {
    /// One 8-byte entry of the schedule: ops `first_op..end_op` run band by band.
    pub struct StageFields {
        pub first_op: u16,
        /// One past the stage's last op, whose output is a whole tensor.
        pub end_op: u16,
        /// Rows of the last op's output per band.
        pub band_rows: u16,
        /// Version 3: [`STAGE_FLAG_LOOKAHEAD`]; version 2: reserved, read as 0.
        pub flags: u16,
    }
}

/// Computes the CRC of `blob` (bytes `[CRC_START, total_len)`, cut to the slice) and
/// stores it in the header; returns it. `None`, changing nothing, if `blob` is shorter
/// than the header.
pub fn seal_crc(blob: &mut [u8]) -> Option<u32> {
    let mut header = HeaderFields::read(blob)?;
    let end = usize::try_from(header.total_len)
        .unwrap_or(usize::MAX)
        .clamp(super::CRC_START, blob.len());
    header.crc32 = crate::crc::crc32(blob.get(super::CRC_START..end).unwrap_or_default());
    blob.get_mut(..HeaderFields::LEN)?
        .copy_from_slice(&header.write());
    Some(header.crc32)
}
