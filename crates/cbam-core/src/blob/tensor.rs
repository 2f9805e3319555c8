//! Tensor records: shape, arena placement, kept-channel list and quantization.

use super::header::Header;
use super::read::{record, region, size};
use crate::error::Error;
use crate::format::{TensorFields, TENSOR_RECORD_LEN};
use crate::kernels::Shape;
use crate::le::U16Le;

/// A byte range of the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub len: usize,
}

impl Span {
    pub fn end(&self) -> usize {
        self.start.saturating_add(self.len)
    }

    /// Whether the two spans share a byte (empty spans share nothing).
    pub fn overlaps(&self, other: &Span) -> bool {
        self.len > 0 && other.len > 0 && self.start < other.end() && other.start < self.end()
    }
}

/// A validated tensor record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tensor<'a> {
    pub shape: Shape,
    pub full_c: usize,
    pub span: Span,
    pub kept: Option<U16Le<'a>>,
    pub scale: f32,
    pub zero_point: i32,
    /// 0: the whole tensor is in the arena; otherwise only a band of this many rows, inside
    /// a stage of the schedule, and `span` is that band's buffer.
    pub band_rows: usize,
}

/// Decodes and validates tensor `index`.
pub(crate) fn tensor<'a>(blob: &'a [u8], header: &Header, index: u16) -> Result<Tensor<'a>, Error> {
    if index >= header.n_tensors {
        return Err(Error::BadTensorIndex { tensor: index });
    }
    let base = usize::from(index)
        .checked_mul(TENSOR_RECORD_LEN)
        .and_then(|o| o.checked_add(header.tensors_off))
        .ok_or(Error::ShapeOverflow {
            what: "tensor table",
        })?;
    let f = record(
        blob,
        "tensor record",
        base,
        TENSOR_RECORD_LEN,
        TensorFields::read,
    )?;
    let bad = |reason| Error::BadTensor {
        tensor: index,
        reason,
    };
    let shape = Shape::new(usize::from(f.h), usize::from(f.w), usize::from(f.c));
    let full_c = usize::from(f.full_c);
    let arena_off = size(f.arena_off, "arena_off")?;
    let kept_off = size(f.kept_off, "kept_off")?;
    let (scale, zero_point) = (f.scale, f.zero_point);

    if shape.h == 0 || shape.w == 0 || shape.c == 0 {
        return Err(bad("h, w and c must be at least 1"));
    }
    if !(-128..=127).contains(&zero_point) {
        return Err(bad("zero_point outside -128..=127"));
    }
    let kept = if kept_off == 0 {
        if shape.c != full_c {
            return Err(bad("c != full_c without a kept-channel list"));
        }
        None
    } else {
        if shape.c > full_c {
            return Err(bad("c > full_c"));
        }
        let bytes = region(blob, "kept-channel list", kept_off, shape.c * 2)?;
        let list = U16Le::new(bytes);
        check_kept(list, full_c)
            .map_err(|_| bad("kept list not strictly increasing below full_c"))?;
        Some(list)
    };
    // Version 1 had a reserved word where version 2 keeps the band rows.
    let band_rows = if header.version >= 2 {
        size(f.band_rows, "band_rows")?
    } else {
        0
    };
    if band_rows > shape.h {
        return Err(bad("band_rows exceeds h"));
    }
    let stored = if band_rows == 0 {
        shape
    } else {
        Shape::new(band_rows, shape.w, shape.c)
    };
    let len = stored.len().ok_or(Error::ShapeOverflow {
        what: "tensor h*w*c",
    })?;
    let span = Span {
        start: arena_off,
        len,
    };
    let end = arena_off.checked_add(len).ok_or(Error::ShapeOverflow {
        what: "tensor arena range",
    })?;
    if end > header.arena_size {
        return Err(Error::ArenaTooSmall {
            tensor: index,
            needed: end,
            arena_size: header.arena_size,
        });
    }
    Ok(Tensor {
        shape,
        full_c,
        span,
        kept,
        scale,
        zero_point,
        band_rows,
    })
}

fn check_kept(list: U16Le, full_c: usize) -> Result<(), ()> {
    let mut prev: Option<u16> = None;
    for k in list.iter() {
        if usize::from(k) >= full_c || prev.is_some_and(|p| k <= p) {
            return Err(());
        }
        prev = Some(k);
    }
    Ok(())
}
