//! Turns a checked op record into the kernel call it stands for, validating every
//! parameter and shape against FORMAT.md on the way.
//!
//! - `checks`: the checks all ops' words share, and the constant arrays they point at;
//! - `params`: one validating constructor per op code.

mod checks;
mod params;

use super::header::Header;
use super::op_record::{op_record, OpRecord};
use super::tensor::{tensor, Tensor};
use crate::error::Error;
use crate::kernels::{
    AddParams, CbamParams, ChannelPoolParams, Conv2dParams, ConvGeometry, DepthwiseParams,
    FullyConnectedParams, GlobalAvgPoolParams, In2Channels, MulBroadcast, MulParams, PoolKind,
    PoolParams, SigmoidLut,
};
use crate::math::Requant;
use checks::Checks;

/// The kernel an op runs, with its parameters borrowed from the blob.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kernel<'a> {
    Conv2d(Conv2dParams<'a>),
    Depthwise(DepthwiseParams<'a>),
    FullyConnected(FullyConnectedParams<'a>),
    Pool(PoolKind, PoolParams),
    GlobalAvgPool(GlobalAvgPoolParams),
    GlobalMaxPool,
    Add(AddParams, In2Channels<'a>),
    Mul(MulParams, MulBroadcast),
    /// Per input: `None` copies, `Some` requantizes.
    Concat([Option<Requant>; 4]),
    /// SIGMOID and LUT.
    Lut(&'a SigmoidLut),
    Cbam(CbamParams<'a>),
    ChannelPool(ChannelPoolParams),
}

/// A fully validated op: its tensors and its kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Op<'a> {
    pub record: OpRecord,
    pub inputs: [Option<Tensor<'a>>; 4],
    pub output: Tensor<'a>,
    pub kernel: Kernel<'a>,
}

impl<'a> Op<'a> {
    /// The input slot whose buffer the output is written into (the op runs in place), if
    /// any: the fused CBAM op over its input, or a dense ADD over one of two different
    /// tensors. The output shares the input's bytes, or, between band buffers of a stage,
    /// the start of the input's buffer (which may hold more rows).
    pub fn in_place_slot(&self) -> Option<usize> {
        let out = self.output.span;
        let shares = |t: &Tensor| {
            t.span == out
                || (t.band_rows != 0
                    && self.output.band_rows != 0
                    && t.span.start == out.start
                    && t.span.len >= out.len)
        };
        let slots: &[usize] = match &self.kernel {
            Kernel::Cbam(_) => &[0],
            Kernel::Add(_, In2Channels::Dense)
                if self.record.inputs().first() != self.record.inputs().get(1) =>
            {
                &[0, 1]
            }
            _ => &[],
        };
        slots.iter().copied().find(|&slot| {
            self.inputs
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(shares)
        })
    }

    /// Input `slot`; slots below `n_inputs` are always present after decoding.
    pub fn input(&self, slot: usize) -> Result<&Tensor<'a>, Error> {
        self.inputs
            .get(slot)
            .and_then(Option::as_ref)
            .ok_or(Error::BadInputCount {
                op: self.record.index,
                found: self.record.n_inputs as u16,
            })
    }

    /// The scratch bytes the core needs for this op.
    pub fn required_scratch(&self) -> Result<usize, Error> {
        let s = self.input(0)?.shape;
        self.record
            .params
            .scratch_size((s.h, s.w, s.c))
            .ok_or(Error::ShapeOverflow { what: "op scratch" })
    }

    /// The most rows of its output this stage op holds per band: its band buffer's, or
    /// `stage_rows` when it writes the stage's whole output.
    pub fn rows_per_band(&self, stage_rows: usize) -> usize {
        match self.output.band_rows {
            0 => stage_rows,
            rows => rows,
        }
    }

    /// The scratch bytes the core needs for this op in a look-ahead stage whose last op
    /// yields `stage_rows` rows per band (the op's own rows per band: its band buffer's, or
    /// those when it writes the stage's whole output).
    pub fn required_lookahead_scratch(&self, stage_rows: usize) -> Result<usize, Error> {
        let s = self.input(0)?.shape;
        self.record
            .params
            .lookahead_scratch_size((s.h, s.w, s.c), self.rows_per_band(stage_rows))
            .ok_or(Error::ShapeOverflow { what: "op scratch" })
    }

    /// Multiply-accumulates per run (informational; saturates rather than overflowing).
    pub fn macs(&self) -> u64 {
        let n = |v: usize| v as u64;
        let out = self.output.shape;
        let out_len = n(out.len().unwrap_or(0));
        let taps = |g: &ConvGeometry| n(g.kh).saturating_mul(n(g.kw));
        match &self.kernel {
            Kernel::Conv2d(p) => {
                let in_c = n(self.inputs[0].map_or(0, |t| t.shape.c));
                out_len
                    .saturating_mul(taps(&p.geometry))
                    .saturating_mul(in_c)
            }
            Kernel::Depthwise(p) => out_len.saturating_mul(taps(&p.geometry)),
            Kernel::FullyConnected(p) => n(p.weights.len()),
            Kernel::Mul(..) => out_len,
            Kernel::Cbam(p) => {
                // Two first-layer passes and one second layer, the 2-channel k x k conv per
                // pixel, and the two scaling multiplies per element.
                let mlp = n(p.c).saturating_mul(n(p.cr)).saturating_mul(3);
                let spatial = n(out.pixels().unwrap_or(0)).saturating_mul(n(p.ws.len()));
                mlp.saturating_add(spatial)
                    .saturating_add(out_len.saturating_mul(2))
            }
            _ => 0,
        }
    }
}

/// Decodes and validates op `index` and the tensors it touches.
pub(crate) fn decode_op<'a>(blob: &'a [u8], header: &Header, index: u16) -> Result<Op<'a>, Error> {
    let record = op_record(blob, header, index)?;
    let mut inputs = [None; 4];
    for (slot, &t) in inputs.iter_mut().zip(record.inputs()) {
        *slot = Some(tensor(blob, header, t)?);
    }
    let output = tensor(blob, header, record.output)?;
    let checks = Checks { blob, op: index };
    let in0 = inputs[0].ok_or(Error::BadInputCount {
        op: index,
        found: 0,
    })?;
    let io = params::Io {
        in0: &in0,
        inputs: &inputs,
        out: &output,
    };
    let kernel = params::kernel(&checks, &record.params, &io)?;
    Ok(Op {
        record,
        inputs,
        output,
        kernel,
    })
}
