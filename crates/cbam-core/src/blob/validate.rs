//! Whole-model checks that need more than one record: op order, arena aliasing, scratch.

use super::header::Header;
use super::op_record::op_output;
use super::tensor::{tensor, Span};
use super::{decode_op, Kernel};
use crate::error::Error;

/// Every check of FORMAT.md that [`super::Model::parse`] promises, before the first run.
pub(crate) fn model(blob: &[u8], header: &Header) -> Result<(), Error> {
    for t in 0..header.n_tensors {
        tensor(blob, header, t)?;
    }
    let mut output_written = false;
    for index in 0..header.n_ops {
        let op = decode_op(blob, header, index)?;
        let needed = op.required_scratch()?;
        if op.record.scratch_len != needed || needed > header.scratch_size {
            return Err(Error::BadScratch {
                op: index,
                expected: needed,
                found: op.record.scratch_len,
            });
        }
        for &t in op.record.inputs() {
            if !produced_before(blob, header, t, index)? {
                return Err(Error::TensorNotReady {
                    op: index,
                    tensor: t,
                });
            }
        }
        check_aliasing(&op, header, index)?;
        output_written |= op.record.output == header.output_tensor;
    }
    if output_written {
        Ok(())
    } else {
        Err(Error::OutputNeverWritten)
    }
}

/// Whether tensor `t` is the model input or the output of an op before `index`.
fn produced_before(blob: &[u8], header: &Header, t: u16, index: u16) -> Result<bool, Error> {
    if t == header.input_tensor {
        return Ok(true);
    }
    for earlier in 0..index {
        if op_output(blob, header, earlier)? == t {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Inputs never overlap the output (CBAM may alias its input exactly), and the op's
/// scratch overlaps neither.
fn check_aliasing(op: &super::Op, header: &Header, index: u16) -> Result<(), Error> {
    let out = op.output.span;
    let scratch = Span {
        start: header.scratch_off,
        len: op.record.scratch_len,
    };
    let in_place_ok = matches!(op.kernel, Kernel::Cbam(_));
    if scratch.overlaps(&out) {
        return Err(Error::ArenaOverlap { op: index });
    }
    for t in op.inputs.iter().flatten() {
        let aliased = t.span == out && in_place_ok;
        if (t.span.overlaps(&out) && !aliased) || t.span.overlaps(&scratch) {
            return Err(Error::ArenaOverlap { op: index });
        }
    }
    Ok(())
}
