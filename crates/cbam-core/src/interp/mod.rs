//! The interpreter: runs a validated model's ops in table order over a caller-given arena.

use core::ops::Range;

use crate::blob::stages::stage_of;
use crate::blob::{decode_op, Kernel, Model, Op, Span};
use crate::cbam::cbam;
use crate::error::Error;
use crate::format::OpCode;
use crate::kernels::add::{add, add_in_place, AddInPlace};
use crate::kernels::channel_pool::channel_pool;
use crate::kernels::concat::concat;
use crate::kernels::conv2d::conv2d;
use crate::kernels::depthwise::depthwise_conv2d;
use crate::kernels::fully_connected::fully_connected;
use crate::kernels::global_pool::{global_avg_pool, global_max_pool};
use crate::kernels::mul::mul;
use crate::kernels::pool::pool2d;
use crate::kernels::sigmoid::sigmoid;
use crate::kernels::ConcatInput;
use crate::le::{as_i8, as_i8_mut};

/// Hooks into a run: per-op timing on firmware, attention heatmaps on the Pi.
pub trait Observer {
    fn op_start(&mut self, index: usize, code: OpCode) {
        let _ = (index, code);
    }

    /// `output` is the op's output tensor, NHWC int8.
    fn op_end(&mut self, index: usize, code: OpCode, output: &[i8]) {
        let _ = (index, code, output);
    }

    /// After a CBAM op: `channel` is `a[c]`, `spatial` is `as[y, x]` (`h * w`, row-major),
    /// both int8 with scale 1/256 and zero point -128.
    fn cbam_attention(&mut self, index: usize, channel: &[i8], spatial: &[i8], h: usize, w: usize) {
        let _ = (index, channel, spatial, h, w);
    }
}

/// An observer that observes nothing.
pub struct NoObserver;

impl Observer for NoObserver {}

impl Model<'_> {
    /// Runs one inference: copies `input` into the arena, runs every op, copies the output out.
    pub fn run(&self, arena: &mut [u8], input: &[i8], output: &mut [i8]) -> Result<(), Error> {
        self.run_observed(arena, input, output, &mut NoObserver)
    }

    /// [`Model::run`] with hooks before and after every op.
    pub fn run_observed(
        &self,
        arena: &mut [u8],
        input: &[i8],
        output: &mut [i8],
        observer: &mut impl Observer,
    ) -> Result<(), Error> {
        self.load_input(arena, input)?;
        self.invoke_observed(arena, output, observer)
    }

    /// Copies `input` into the arena's input tensor, if it has that tensor's length.
    fn load_input(&self, arena: &mut [u8], input: &[i8]) -> Result<(), Error> {
        let slot = self.input_mut(arena)?;
        if input.len() != slot.len() {
            return Err(Error::InputLength {
                expected: slot.len(),
                found: input.len(),
            });
        }
        slot.copy_from_slice(input);
        Ok(())
    }

    /// The arena's input tensor, for a caller that writes the input in place (a firmware
    /// whose RAM cannot hold a second copy of it) and then calls [`Model::invoke`].
    pub fn input_mut<'a>(&self, arena: &'a mut [u8]) -> Result<&'a mut [i8], Error> {
        let arena = self.fit_arena(arena)?;
        let span = span_of(self.input().len(), self.input_offset()?);
        slice_mut(arena, span).map(as_i8_mut)
    }

    /// Runs one inference on the input already in the arena (written through
    /// [`Model::input_mut`]) and copies the output out.
    pub fn invoke(&self, arena: &mut [u8], output: &mut [i8]) -> Result<(), Error> {
        self.invoke_observed(arena, output, &mut NoObserver)
    }

    /// [`Model::invoke`] with hooks before and after every op.
    pub fn invoke_observed(
        &self,
        arena: &mut [u8],
        output: &mut [i8],
        observer: &mut impl Observer,
    ) -> Result<(), Error> {
        let arena = self.fit_arena(arena)?;
        let out_span = self.output_span(output.len())?;
        self.invoke_ops_observed(arena, 0..usize::from(self.header.n_ops), observer)?;
        output.copy_from_slice(as_i8(slice_mut(arena, out_span)?));
        Ok(())
    }

    /// The arena span of the output tensor, if the caller's output buffer has its length.
    fn output_span(&self, found: usize) -> Result<Span, Error> {
        let out_span = span_of(self.output().len(), self.output_offset()?);
        if found != out_span.len {
            return Err(Error::OutputLength {
                expected: out_span.len,
                found,
            });
        }
        Ok(out_span)
    }

    /// Runs only ops `ops` (table indices) on the arena as it stands, copying nothing in or
    /// out. Between two ops the arena is the whole state of an inference (every live tensor
    /// sits at its planned offset; the scratch is rewritten by each op that uses it), so
    /// consecutive ranges from 0 to [`Model::n_ops`] compute exactly what
    /// [`Model::invoke`] does, and a caller may keep the arena (or its live tensors) at a
    /// boundary and resume from it later, for instance under a blob whose later ops carry
    /// other parameters but the same arena plan. A range may not start or end inside a
    /// band-by-band stage.
    pub fn invoke_ops(&self, arena: &mut [u8], ops: Range<usize>) -> Result<(), Error> {
        self.invoke_ops_observed(arena, ops, &mut NoObserver)
    }

    /// [`Model::invoke_ops`] with hooks before and after every op.
    pub fn invoke_ops_observed(
        &self,
        arena: &mut [u8],
        ops: Range<usize>,
        observer: &mut impl Observer,
    ) -> Result<(), Error> {
        let bad = Error::BadOpRange {
            start: ops.start,
            end: ops.end,
        };
        let n_ops = usize::from(self.header.n_ops);
        if ops.start > ops.end || ops.end > n_ops {
            return Err(bad);
        }
        let inside_stage = |boundary: usize| -> Result<bool, Error> {
            let Ok(at) = u16::try_from(boundary) else {
                return Ok(false);
            };
            Ok(stage_of(self.blob, &self.header, at)?.is_some_and(|s| s.first < at))
        };
        if inside_stage(ops.start)? || inside_stage(ops.end)? {
            return Err(bad);
        }
        let arena = self.fit_arena(arena)?;
        self.walk_ops(arena, ops, observer, |model, index, op, arena, observer| {
            model.execute(index, op, arena, observer)
        })
    }

    /// Runs ops `ops` (a checked range on a fitted arena): stages band by band, every other
    /// op through `single`, with the observer's hooks around each.
    fn walk_ops<O: Observer>(
        &self,
        arena: &mut [u8],
        ops: Range<usize>,
        observer: &mut O,
        mut single: impl FnMut(&Self, usize, &Op, &mut [u8], &mut O) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut index = ops.start;
        while index < ops.end {
            let at = u16::try_from(index).map_err(|_| Error::BadOpRange {
                start: ops.start,
                end: ops.end,
            })?;
            if let Some(stage) = stage_of(self.blob, &self.header, at)? {
                self.run_stage(&stage, arena, observer)?;
                index = usize::from(stage.end);
                continue;
            }
            let mut op = decode_op(self.blob, &self.header, at)?;
            self.attach_packing(at, &mut op);
            observer.op_start(index, op.record.code);
            single(self, index, &op, arena, observer)?;
            observer.op_end(
                index,
                op.record.code,
                as_i8(slice_mut(arena, op.output.span)?),
            );
            index += 1;
        }
        Ok(())
    }

    /// The first [`Model::arena_size`] bytes of `arena`.
    fn fit_arena<'a>(&self, arena: &'a mut [u8]) -> Result<&'a mut [u8], Error> {
        let needed = self.arena_size();
        let found = arena.len();
        arena
            .get_mut(..needed)
            .ok_or(Error::ArenaBufferTooSmall { needed, found })
    }

    fn input_offset(&self) -> Result<usize, Error> {
        crate::blob::tensor_span(self.blob, &self.header, self.header.input_tensor).map(|s| s.start)
    }

    fn output_offset(&self) -> Result<usize, Error> {
        crate::blob::tensor_span(self.blob, &self.header, self.header.output_tensor)
            .map(|s| s.start)
    }

    fn execute(
        &self,
        index: usize,
        op: &Op,
        arena: &mut [u8],
        observer: &mut impl Observer,
    ) -> Result<(), Error> {
        let scratch = Span {
            start: self.header.scratch_off,
            len: op.record.scratch_len,
        };
        let overlap = Error::ArenaOverlap {
            op: op.record.index,
        };
        let view = split(arena, op.output.span, scratch).ok_or(overlap)?;
        let out = as_i8_mut(view.out);
        let read = |slot: usize| -> Result<&[i8], Error> {
            let t = op.input(slot)?;
            view.gaps.read(t.span).map(as_i8).ok_or(overlap)
        };
        let in0 = op.input(0)?.shape;
        let out_shape = op.output.shape;
        match &op.kernel {
            Kernel::Conv2d(p) => conv2d(p, in0, read(0)?, out_shape, out),
            Kernel::Depthwise(p) => depthwise_conv2d(p, in0, read(0)?, out_shape, out),
            Kernel::FullyConnected(p) => fully_connected(p, read(0)?, out),
            Kernel::Pool(kind, p) => pool2d(*kind, p, in0, read(0)?, out_shape, out),
            Kernel::GlobalAvgPool(p) => global_avg_pool(p, in0, read(0)?, out),
            Kernel::GlobalMaxPool => global_max_pool(in0, read(0)?, out),
            Kernel::Add(p, channels) => match op.in_place_slot() {
                Some(0) => add_in_place(p, out, read(1)?, AddInPlace::First),
                Some(_) => add_in_place(p, out, read(0)?, AddInPlace::Second),
                None => add(p, out_shape, read(0)?, read(1)?, *channels, out),
            },
            Kernel::Mul(p, broadcast) => mul(p, in0, read(0)?, read(1)?, *broadcast, out),
            Kernel::Lut(lut) => sigmoid(lut, read(0)?, out),
            Kernel::ChannelPool(p) => channel_pool(p, in0, read(0)?, out),
            Kernel::Concat(requants) => {
                let mut parts = [None; 4];
                for (slot, (part, rq)) in parts
                    .iter_mut()
                    .zip(requants)
                    .enumerate()
                    .take(op.record.n_inputs)
                {
                    let t = op.input(slot)?;
                    *part = Some(ConcatInput {
                        data: read(slot)?,
                        c: t.shape.c,
                        zp: t.zero_point,
                        requant: *rq,
                    });
                }
                let pixels = out_shape.pixels().ok_or(Error::ShapeOverflow {
                    what: "concat pixels",
                })?;
                let inputs: concat_inputs::Inputs = concat_inputs::collect(parts);
                concat(inputs.as_slice(), pixels, op.output.zero_point, out)
            }
            Kernel::Cbam(p) => {
                let input = op.input(0)?;
                if input.span != op.output.span {
                    out.copy_from_slice(read(0)?);
                }
                let att = cbam(p, out_shape, out, as_i8_mut(view.scratch))?;
                observer.cbam_attention(index, att.channel, att.spatial, out_shape.h, out_shape.w);
                Ok(())
            }
        }
    }
}

/// Up to four concat inputs gathered without allocation.
mod concat_inputs {
    use crate::kernels::ConcatInput;

    pub struct Inputs<'a> {
        items: [ConcatInput<'a>; 4],
        len: usize,
    }

    impl<'a> Inputs<'a> {
        pub fn as_slice(&self) -> &[ConcatInput<'a>] {
            self.items.get(..self.len).unwrap_or_default()
        }
    }

    pub fn collect(parts: [Option<ConcatInput<'_>>; 4]) -> Inputs<'_> {
        let empty = ConcatInput {
            data: &[],
            c: 0,
            zp: 0,
            requant: None,
        };
        let mut items = [empty; 4];
        let mut len = 0;
        for (slot, part) in items.iter_mut().zip(parts.into_iter().flatten()) {
            *slot = part;
            len += 1;
        }
        Inputs { items, len }
    }
}

fn span_of(len: usize, start: usize) -> Span {
    Span { start, len }
}

fn slice_mut(arena: &mut [u8], span: Span) -> Result<&mut [u8], Error> {
    let end = span
        .start
        .checked_add(span.len)
        .ok_or(Error::ShapeOverflow {
            what: "arena range",
        })?;
    let found = arena.len();
    arena
        .get_mut(span.start..end)
        .ok_or(Error::ArenaBufferTooSmall { needed: end, found })
}

/// The arena around one op: its output and scratch borrowed mutably, the rest readable.
struct OpArena<'a> {
    out: &'a mut [u8],
    scratch: &'a mut [u8],
    gaps: Gaps<'a>,
}

/// The three read-only stretches of the arena between and around output and scratch.
struct Gaps<'a>([(usize, &'a [u8]); 3]);

impl<'a> Gaps<'a> {
    /// The bytes of `span`, if it lies entirely in one stretch.
    fn read(&self, span: Span) -> Option<&'a [u8]> {
        self.0.iter().find_map(|&(start, bytes)| {
            let rel = span.start.checked_sub(start)?;
            bytes.get(rel..rel.checked_add(span.len)?)
        })
    }
}

/// Splits the arena so that an op can write its output and scratch while reading inputs.
/// `None` if the two mutable spans overlap or leave the arena.
fn split(arena: &mut [u8], out: Span, scratch: Span) -> Option<OpArena<'_>> {
    // An empty scratch is placed right after the output so it can never overlap.
    let scratch = if scratch.len == 0 {
        Span {
            start: out.end(),
            len: 0,
        }
    } else {
        scratch
    };
    let out_first = out.start <= scratch.start;
    let (first, second) = if out_first {
        (out, scratch)
    } else {
        (scratch, out)
    };
    let between = second.start.checked_sub(first.end())?;
    let (g0, rest) = arena.split_at_mut_checked(first.start)?;
    let (a, rest) = rest.split_at_mut_checked(first.len)?;
    let (g1, rest) = rest.split_at_mut_checked(between)?;
    let (b, g2) = rest.split_at_mut_checked(second.len)?;
    let gaps = Gaps([(0, &*g0), (first.end(), &*g1), (second.end(), &*g2)]);
    let (out, scratch) = if out_first { (a, b) } else { (b, a) };
    Some(OpArena { out, scratch, gaps })
}

mod packed_weights;
mod row_local;
mod split;
mod stage;

pub use split::{RowShare, Split, MAX_SHARES};
#[cfg(test)]
mod tests;
