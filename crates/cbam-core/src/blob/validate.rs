//! Whole-model checks that need more than one record: op order, arena aliasing, scratch.
//! Linear in tensors and ops, without allocation: a device validates a blob in one pass
//! over its tables (plus a few cheap passes for the op order, see [`first_unready`]).

use super::decode_op;
use super::header::Header;
use super::op_record::op_fields;
use super::tensor::{tensor, Span};
use crate::error::Error;

/// Every check of FORMAT.md that [`super::Model::parse`] promises, before the first run.
pub(crate) fn model(blob: &[u8], header: &Header) -> Result<(), Error> {
    for t in 0..header.n_tensors {
        tensor(blob, header, t)?;
    }
    let not_ready = first_unready(blob, header)?;
    super::stages::validate(blob, header)?;
    if tensor(blob, header, header.output_tensor)?.band_rows != 0 {
        return Err(Error::BadTensor {
            tensor: header.output_tensor,
            reason: "the model output cannot be a band buffer",
        });
    }
    let mut output_written = false;
    for index in 0..header.n_ops {
        let op = decode_op(blob, header, index)?;
        let banded =
            op.inputs.iter().flatten().any(|t| t.band_rows != 0) || op.output.band_rows != 0;
        let stage = super::stages::stage_of(blob, header, index)?;
        if banded && stage.is_none() {
            return Err(Error::BadSchedule {
                stage: u16::MAX,
                reason: "an op outside every stage touches a band buffer",
            });
        }
        let needed = match stage.filter(|s| s.lookahead) {
            Some(s) => op.required_lookahead_scratch(s.band_rows)?,
            None => op.required_scratch()?,
        };
        if op.record.scratch_len != needed || needed > header.scratch_size {
            return Err(Error::BadScratch {
                op: index,
                expected: needed,
                found: op.record.scratch_len,
            });
        }
        if let Some((_, tensor)) = not_ready.filter(|&(op, _)| op == index) {
            return Err(Error::TensorNotReady { op: index, tensor });
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

/// Tensors one pass of [`first_unready`] tracks: a 1 KiB bitset on the stack. Tensor
/// indices are `u16`, so whatever the blob there are at most 8 passes over the op table.
const WINDOW: usize = 8192;

/// Which tensors of `base..base + WINDOW` hold a value yet.
struct Ready {
    base: usize,
    bits: [u32; WINDOW / 32],
}

impl Ready {
    /// The bit of tensor `t`, if this window covers it.
    fn bit(&self, t: u16) -> Option<(usize, u32)> {
        let i = usize::from(t)
            .checked_sub(self.base)
            .filter(|&i| i < WINDOW)?;
        Some((i / 32, 1 << (i % 32)))
    }

    fn mark(&mut self, t: u16) {
        if let Some((word, bit)) = self.bit(t) {
            if let Some(w) = self.bits.get_mut(word) {
                *w |= bit;
            }
        }
    }

    /// Whether `t` is in this window and holds no value yet.
    fn missing(&self, t: u16) -> bool {
        self.bit(t)
            .is_some_and(|(word, bit)| self.bits.get(word).is_some_and(|w| w & bit == 0))
    }
}

/// The first op (in table order, then input slot order) that reads a tensor which is
/// neither the model input nor the output of an earlier op, with that tensor.
///
/// Reads the op records unchecked: `model` decodes every op before the one reported here
/// and reports this op only after its own checks, so the answer is the one a scan that
/// asked "was it produced before?" op by op would give, without rescanning earlier ops.
fn first_unready(blob: &[u8], header: &Header) -> Result<Option<(u16, u16)>, Error> {
    let mut first: Option<(u16, usize, u16)> = None;
    for base in (0..usize::from(header.n_tensors)).step_by(WINDOW) {
        let mut ready = Ready {
            base,
            bits: [0; WINDOW / 32],
        };
        ready.mark(header.input_tensor);
        'ops: for index in 0..header.n_ops {
            if first.is_some_and(|(op, ..)| op < index) {
                break;
            }
            let f = op_fields(blob, header, index)?;
            for (slot, &t) in f.inputs.iter().enumerate().take(usize::from(f.n_inputs)) {
                if ready.missing(t) {
                    if first.is_none_or(|(op, s, _)| (index, slot) < (op, s)) {
                        first = Some((index, slot, t));
                    }
                    break 'ops;
                }
            }
            ready.mark(f.output);
        }
    }
    Ok(first.map(|(op, _, t)| (op, t)))
}

/// Inputs never overlap the output (but for the one an op may run in place over:
/// [`super::Op::in_place_slot`]), and the op's scratch overlaps neither.
fn check_aliasing(op: &super::Op, header: &Header, index: u16) -> Result<(), Error> {
    let out = op.output.span;
    let scratch = Span {
        start: header.scratch_off,
        len: op.record.scratch_len,
    };
    let in_place = op.in_place_slot();
    if scratch.overlaps(&out) {
        return Err(Error::ArenaOverlap { op: index });
    }
    for (slot, t) in op.inputs.iter().enumerate() {
        let Some(t) = t else { continue };
        let aliased = in_place == Some(slot);
        if (t.span.overlaps(&out) && !aliased) || t.span.overlaps(&scratch) {
            return Err(Error::ArenaOverlap { op: index });
        }
    }
    Ok(())
}
