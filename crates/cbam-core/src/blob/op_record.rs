//! Op records: code, tensor wiring, parameter words and scratch claim.

use super::header::Header;
use super::read::{record, region, size};
use crate::error::Error;
use crate::format::{OpCode, OpFields, OpParams, MAX_INPUTS, OP_RECORD_LEN};
use crate::le::I32Le;

/// An op record whose code, input count and parameter words have been checked against the
/// op table (the words' values are checked by `decode`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpRecord {
    pub index: u16,
    pub code: OpCode,
    pub n_inputs: usize,
    pub inputs: [u16; MAX_INPUTS],
    pub output: u16,
    pub params: OpParams,
    pub scratch_len: usize,
}

impl OpRecord {
    /// The used input slots.
    pub fn inputs(&self) -> &[u16] {
        self.inputs.get(..self.n_inputs).unwrap_or_default()
    }
}

/// The stored fields of op record `index`, unchecked.
pub(crate) fn op_fields(blob: &[u8], header: &Header, index: u16) -> Result<OpFields, Error> {
    let base = usize::from(index)
        .checked_mul(OP_RECORD_LEN)
        .and_then(|o| o.checked_add(header.ops_off))
        .ok_or(Error::ShapeOverflow { what: "op table" })?;
    record(blob, "op record", base, OP_RECORD_LEN, OpFields::read)
}

/// Decodes op record `index`.
pub(crate) fn op_record(blob: &[u8], header: &Header, index: u16) -> Result<OpRecord, Error> {
    let f = op_fields(blob, header, index)?;
    let code = OpCode::from_u16(f.code).ok_or(Error::UnknownOp {
        op: index,
        code: f.code,
    })?;
    let n_inputs = usize::from(f.n_inputs);
    if n_inputs > MAX_INPUTS || !code.accepts_inputs(n_inputs) {
        return Err(Error::BadInputCount {
            op: index,
            found: f.n_inputs,
        });
    }
    let mut inputs = [u16::MAX; MAX_INPUTS];
    inputs
        .iter_mut()
        .zip(f.inputs)
        .take(n_inputs)
        .for_each(|(slot, t)| *slot = t);
    let params_off = size(f.params_off, "params_off")?;
    let params_len = size(f.params_len, "params_len")?;
    let expected = 4 * code.param_words(n_inputs);
    let bad_len = Error::BadParamLen {
        op: index,
        expected,
        found: params_len,
    };
    if params_len != expected {
        return Err(bad_len);
    }
    let words = I32Le::new(region(blob, "op params", params_off, params_len)?);
    let params = OpParams::decode(code, words, n_inputs).ok_or(bad_len)?;
    Ok(OpRecord {
        index,
        code,
        n_inputs,
        inputs,
        output: f.output,
        params,
        scratch_len: size(f.scratch_len, "scratch_len")?,
    })
}
