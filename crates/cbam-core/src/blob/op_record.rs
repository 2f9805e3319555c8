//! Op records: code, tensor wiring, parameter words and scratch claim.

use super::header::Header;
use super::read::{region, u16_at, usize_at};
use super::OP_RECORD_LEN;
use crate::error::Error;
use crate::le::I32Le;
use crate::op_code::{param_word_count, OpCode};

/// An op record whose code, input count and parameter length have been checked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpRecord<'a> {
    pub index: u16,
    pub code: OpCode,
    pub n_inputs: usize,
    pub inputs: [u16; 4],
    pub output: u16,
    pub params: I32Le<'a>,
    pub scratch_len: usize,
}

impl OpRecord<'_> {
    /// The used input slots.
    pub fn inputs(&self) -> &[u16] {
        self.inputs.get(..self.n_inputs).unwrap_or_default()
    }
}

/// Only the output tensor of op `index` (cheap; used to trace what earlier ops produced).
pub(crate) fn op_output(blob: &[u8], header: &Header, index: u16) -> Result<u16, Error> {
    u16_at(blob, "op output", record_base(header, index)? + 12)
}

fn record_base(header: &Header, index: u16) -> Result<usize, Error> {
    usize::from(index)
        .checked_mul(OP_RECORD_LEN)
        .and_then(|o| o.checked_add(header.ops_off))
        .ok_or(Error::ShapeOverflow { what: "op table" })
}

/// Decodes op record `index`.
pub(crate) fn op_record<'a>(
    blob: &'a [u8],
    header: &Header,
    index: u16,
) -> Result<OpRecord<'a>, Error> {
    let rec = region(
        blob,
        "op record",
        record_base(header, index)?,
        OP_RECORD_LEN,
    )?;
    let raw_code = u16_at(rec, "op code", 0)?;
    let code = OpCode::from_u16(raw_code).ok_or(Error::UnknownOp {
        op: index,
        code: raw_code,
    })?;
    let n_raw = u16_at(rec, "n_inputs", 2)?;
    let n_inputs = usize::from(n_raw);
    if n_inputs > 4 || !code.accepts_inputs(n_inputs) {
        return Err(Error::BadInputCount {
            op: index,
            found: n_raw,
        });
    }
    let mut inputs = [u16::MAX; 4];
    for (slot, input) in inputs.iter_mut().enumerate().take(n_inputs) {
        *input = u16_at(rec, "op input", 4 + 2 * slot)?;
    }
    let output = u16_at(rec, "op output", 12)?;
    let params_off = usize_at(rec, "params_off", 16)?;
    let params_len = usize_at(rec, "params_len", 20)?;
    let expected = 4 * param_word_count(code, n_inputs);
    if params_len != expected {
        return Err(Error::BadParamLen {
            op: index,
            expected,
            found: params_len,
        });
    }
    let params = I32Le::new(region(blob, "op params", params_off, params_len)?);
    let scratch_len = usize_at(rec, "scratch_len", 24)?;
    Ok(OpRecord {
        index,
        code,
        n_inputs,
        inputs,
        output,
        params,
        scratch_len,
    })
}
