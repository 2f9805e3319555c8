//! One validating constructor per op code: parameter ranges and shape agreement.

use super::words::Words;
use super::Kernel;
use crate::blob::tensor::Tensor;
use crate::error::Error;
use crate::kernels::{
    AddParams, CbamMlp, CbamParams, ChannelQuant, Conv2dParams, DepthwiseParams,
    FullyConnectedParams, GlobalAvgPoolParams, In2Channels, MulBroadcast, MulParams, PoolKind,
    PoolOrder, PoolParams, Shape,
};
use crate::le::I32Le;
use crate::math::Requant;
use crate::op_code::OpCode;

fn mismatch(op: u16, reason: &'static str) -> Error {
    Error::ShapeMismatch { op, reason }
}

/// The op's inputs as decoded tensors; slot 0 is always present.
pub(super) struct Io<'t, 'a> {
    pub in0: &'t Tensor<'a>,
    pub inputs: &'t [Option<Tensor<'a>>; 4],
    pub out: &'t Tensor<'a>,
}

impl<'a> Io<'_, 'a> {
    fn second(&self, op: u16) -> Result<Tensor<'a>, Error> {
        self.inputs[1].ok_or(Error::BadInputCount { op, found: 1 })
    }
}

pub(super) fn kernel<'a>(
    w: &Words<'a>,
    code: OpCode,
    io: &Io<'_, 'a>,
) -> Result<Kernel<'a>, Error> {
    match code {
        OpCode::Conv2d | OpCode::DepthwiseConv2d => conv(w, code, io),
        OpCode::FullyConnected => fully_connected(w, io),
        OpCode::MaxPool2d => pool(w, PoolKind::Max, io),
        OpCode::AvgPool2d => pool(w, PoolKind::Average, io),
        OpCode::GlobalAvgPool | OpCode::GlobalMaxPool => global_pool(w, code, io),
        OpCode::Add => add(w, io),
        OpCode::Mul => mul(w, io),
        OpCode::Concat => concat(w, io),
        OpCode::Sigmoid => sigmoid(w, io),
        OpCode::Cbam => cbam(w, io).map(Kernel::Cbam),
    }
}

fn conv<'a>(w: &Words<'a>, code: OpCode, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    let (is, os) = (io.in0.shape, io.out.shape);
    let g = w.geometry(true)?;
    if g.output_size(is.h, is.w) != Some((os.h, os.w)) {
        return Err(mismatch(
            w.op,
            "conv output h/w do not follow from input and geometry",
        ));
    }
    let act = w.act(10)?;
    let (bias, mult, shift) = w.per_channel(13, os.c)?;
    let quant = ChannelQuant {
        in_zp: io.in0.zero_point,
        out_zp: io.out.zero_point,
        act,
        bias,
        mult,
        shift,
    };
    let taps = g.kh.checked_mul(g.kw);
    if code == OpCode::Conv2d {
        let len = taps
            .and_then(|t| t.checked_mul(is.c))
            .and_then(|t| t.checked_mul(os.c));
        let weights = w.i8s(12, len, "conv weights")?;
        return Ok(Kernel::Conv2d(Conv2dParams {
            geometry: g,
            weights,
            quant,
        }));
    }
    let depth_multiplier = w.count(16, 1, "depth_multiplier must be >= 1")?;
    if is.c.checked_mul(depth_multiplier) != Some(os.c) {
        return Err(mismatch(w.op, "depthwise out.c != in.c * depth_multiplier"));
    }
    let weights = w.i8s(
        12,
        taps.and_then(|t| t.checked_mul(os.c)),
        "depthwise weights",
    )?;
    Ok(Kernel::Depthwise(DepthwiseParams {
        geometry: g,
        depth_multiplier,
        weights,
        quant,
    }))
}

fn fully_connected<'a>(w: &Words<'a>, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    let os = io.out.shape;
    if os.h != 1 || os.w != 1 {
        return Err(mismatch(w.op, "fully connected output must be 1x1xN"));
    }
    let n_in = io.in0.shape.len().ok_or(Error::ShapeOverflow {
        what: "fully connected input",
    })?;
    let weights = w.i8s(0, n_in.checked_mul(os.c), "fully connected weights")?;
    let (bias, mult, shift) = w.per_channel(1, os.c)?;
    let act = w.act(4)?;
    let quant = ChannelQuant {
        in_zp: io.in0.zero_point,
        out_zp: io.out.zero_point,
        act,
        bias,
        mult,
        shift,
    };
    Ok(Kernel::FullyConnected(FullyConnectedParams {
        weights,
        quant,
    }))
}

fn pool<'a>(w: &Words<'a>, kind: PoolKind, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    let (is, os) = (io.in0.shape, io.out.shape);
    let g = w.geometry(false)?;
    if g.pad_top >= g.kh || g.pad_bottom >= g.kh || g.pad_left >= g.kw || g.pad_right >= g.kw {
        return Err(w.bad("pool padding must be smaller than the window"));
    }
    if g.output_size(is.h, is.w) != Some((os.h, os.w)) || is.c != os.c {
        return Err(mismatch(
            w.op,
            "pool output does not follow from input and geometry",
        ));
    }
    if io.in0.zero_point != io.out.zero_point {
        return Err(w.bad("pool input and output zero points differ"));
    }
    Ok(Kernel::Pool(
        kind,
        PoolParams {
            geometry: g,
            act: w.act(8)?,
        },
    ))
}

fn global_pool<'a>(w: &Words<'a>, code: OpCode, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    if io.out.shape != Shape::new(1, 1, io.in0.shape.c) {
        return Err(mismatch(w.op, "global pool output must be 1x1xC"));
    }
    if code == OpCode::GlobalMaxPool {
        if io.in0.zero_point != io.out.zero_point {
            return Err(w.bad("global max pool zero points differ"));
        }
        return Ok(Kernel::GlobalMaxPool);
    }
    let requant = w.requant(0)?;
    Ok(Kernel::GlobalAvgPool(GlobalAvgPoolParams {
        requant,
        in_zp: io.in0.zero_point,
        out_zp: io.out.zero_point,
    }))
}

fn mul<'a>(w: &Words<'a>, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    let in1 = io.second(w.op)?;
    let is = io.in0.shape;
    let broadcast = MulBroadcast::classify(is, in1.shape).ok_or(mismatch(
        w.op,
        "mul in2 is neither same-shape, 1x1xC nor HxWx1",
    ))?;
    if io.out.shape != is {
        return Err(mismatch(w.op, "mul output shape differs from input"));
    }
    let p = MulParams {
        in1_zp: io.in0.zero_point,
        in2_zp: in1.zero_point,
        out: w.requant(0)?,
        out_zp: io.out.zero_point,
        act: w.act(2)?,
    };
    Ok(Kernel::Mul(p, broadcast))
}

fn sigmoid<'a>(w: &Words<'a>, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    if io.out.shape != io.in0.shape {
        return Err(mismatch(w.op, "sigmoid output shape differs from input"));
    }
    Ok(Kernel::Sigmoid(w.lut(0)?))
}

fn add<'a>(w: &Words<'a>, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    let (in0, out) = (io.in0, io.out);
    let op = w.op;
    let in1 = io.second(op)?;
    if in0.shape != out.shape {
        return Err(mismatch(op, "add input 1 and output shapes differ"));
    }
    let channels = match in1.kept {
        Some(kept) => {
            if (in1.shape.h, in1.shape.w, in1.full_c) != (out.shape.h, out.shape.w, out.shape.c) {
                return Err(mismatch(
                    op,
                    "pruned add input 2 does not scatter onto the output",
                ));
            }
            In2Channels::Scatter(kept)
        }
        None if in1.shape == out.shape => In2Channels::Dense,
        None => return Err(mismatch(op, "add input 2 shape differs from output")),
    };
    let left_shift = u32::try_from(w.word(0))
        .ok()
        .filter(|&s| s <= 30)
        .ok_or(w.bad("add left_shift outside 0..=30"))?;
    let p = AddParams {
        left_shift,
        in1_zp: in0.zero_point,
        in1: w.requant(1)?,
        in2_zp: in1.zero_point,
        in2: w.requant(3)?,
        out: w.requant(5)?,
        out_zp: out.zero_point,
        act: w.act(7)?,
    };
    Ok(Kernel::Add(p, channels))
}

fn concat<'a>(w: &Words<'a>, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    let (inputs, out) = (io.inputs, io.out);
    let mut requants = [None; 4];
    let mut total_c = 0usize;
    for (i, (slot, t)) in requants.iter_mut().zip(inputs).enumerate() {
        let Some(t) = t else { continue };
        if (t.shape.h, t.shape.w) != (out.shape.h, out.shape.w) {
            return Err(mismatch(
                w.op,
                "concat inputs differ in h/w from the output",
            ));
        }
        total_c += t.shape.c;
        *slot = if w.word(2 * i) == 0 {
            None
        } else {
            Some(w.requant(2 * i)?)
        };
    }
    if total_c != out.shape.c {
        return Err(mismatch(
            w.op,
            "concat output channels != sum of input channels",
        ));
    }
    Ok(Kernel::Concat(requants))
}

fn cbam<'a>(w: &Words<'a>, io: &Io<'_, 'a>) -> Result<CbamParams<'a>, Error> {
    let (in0, out) = (io.in0, io.out);
    let c = w.count(0, 1, "CBAM C must be >= 1")?;
    let cr = w.count(1, 1, "CBAM Cr must be >= 1")?;
    let k = w.count(2, 1, "CBAM k must be >= 1")?;
    if c != in0.shape.c || in0.shape != out.shape {
        return Err(mismatch(
            w.op,
            "CBAM C != in.c or output shape differs from input",
        ));
    }
    if k.is_multiple_of(2) {
        return Err(w.bad("CBAM spatial kernel size must be odd"));
    }
    let order = match w.word(3) {
        0 => PoolOrder::MeanMax,
        1 => PoolOrder::MaxMean,
        _ => return Err(w.bad("CBAM order must be 0 or 1")),
    };
    let (b1, m1, s1) = per_channel_at(w, [5, 6, 7], cr)?;
    let (b2, m2, s2) = per_channel_at(w, [10, 11, 12], c)?;
    let mlp = CbamMlp {
        w1: w.i8s(4, cr.checked_mul(c), "CBAM w1")?,
        b1,
        m1,
        s1,
        zp_h: w.zero_point(8, "CBAM zp_h outside -128..=127")?,
        w2: w.i8s(9, c.checked_mul(cr), "CBAM w2")?,
        b2,
        m2,
        s2,
        zp_z: w.zero_point(13, "CBAM zp_z outside -128..=127")?,
    };
    Ok(CbamParams {
        c,
        cr,
        k,
        order,
        mlp,
        lut_c: w.lut(14)?,
        f1: w.requant(15)?,
        zp_f1: w.zero_point(17, "CBAM zp_f1 outside -128..=127")?,
        ws: w.i8s(
            18,
            k.checked_mul(k).and_then(|n| n.checked_mul(2)),
            "CBAM spatial weights",
        )?,
        bs: w.word(19),
        rs: w.requant(20)?,
        zp_s: w.zero_point(22, "CBAM zp_s outside -128..=127")?,
        lut_s: w.lut(23)?,
        out: w.requant(24)?,
        zp_in: in0.zero_point,
        zp_out: out.zero_point,
    })
}

/// CBAM's bias/mult/shift arrays are not adjacent words, unlike the conv ops'.
fn per_channel_at<'a>(
    w: &Words<'a>,
    at: [usize; 3],
    n: usize,
) -> Result<(I32Le<'a>, I32Le<'a>, I32Le<'a>), Error> {
    let bias = w.i32s(at[0], n, "CBAM bias array")?;
    let mult = w.i32s(at[1], n, "CBAM multiplier array")?;
    let shift = w.i32s(at[2], n, "CBAM shift array")?;
    if mult
        .iter()
        .zip(shift.iter())
        .any(|(m, s)| !Requant::new(m, s).is_valid())
    {
        return Err(w.bad("CBAM per-channel mult < 0 or shift outside -31..=30"));
    }
    Ok((bias, mult, shift))
}
