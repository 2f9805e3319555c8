//! One validating constructor per op code: parameter ranges and shape agreement.

use super::checks::Checks;
use super::Kernel;
use crate::blob::tensor::Tensor;
use crate::error::Error;
use crate::format::{
    ActWords, AddWords, CbamWords, ChannelPoolWords, ConcatWords, Conv2dWords, FullyConnectedWords,
    GlobalAvgPoolWords, LutWords, MulWords, OpParams, PerChannelWords, PoolWords,
};
use crate::kernels::{
    AddParams, CbamMlp, CbamParams, ChannelPoolParams, ChannelQuant, Conv2dParams, ConvGeometry,
    DepthwiseParams, FullyConnectedParams, GlobalAvgPoolParams, In2Channels, MulBroadcast,
    MulParams, PoolKind, PoolOrder, PoolParams, Shape,
};

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
    w: &Checks<'a>,
    params: &OpParams,
    io: &Io<'_, 'a>,
) -> Result<Kernel<'a>, Error> {
    match params {
        OpParams::Conv2d(p) => conv(w, p, io),
        OpParams::DepthwiseConv2d(p) => depthwise(w, &p.conv, p.depth_multiplier, io),
        OpParams::FullyConnected(p) => fully_connected(w, p, io),
        OpParams::MaxPool2d(p) => pool(w, p, PoolKind::Max, io),
        OpParams::AvgPool2d(p) => pool(w, p, PoolKind::Average, io),
        OpParams::GlobalAvgPool(p) => global_avg_pool(w, p, io),
        OpParams::GlobalMaxPool(_) => global_max_pool(w, io),
        OpParams::Add(p) => add(w, p, io),
        OpParams::Mul(p) => mul(w, p, io),
        OpParams::Concat(p) => concat(w, p, io),
        OpParams::Sigmoid(p) | OpParams::Lut(p) => lut(w, p, io),
        OpParams::Cbam(p) => cbam(w, p, io).map(Kernel::Cbam),
        OpParams::ChannelPool(p) => channel_pool(w, p, io),
    }
}

/// Kernel, stride and (if `dilation` is given) dilation words >= 1, padding >= 0.
fn geometry(
    w: &Checks<'_>,
    [kh, kw, stride_h, stride_w]: [i32; 4],
    dilation: Option<[i32; 2]>,
    [top, left, bottom, right]: [i32; 4],
) -> Result<ConvGeometry, Error> {
    let pad = |v| w.count(v, 0, "negative geometry word");
    let pos = |v| w.count(v, 1, "kernel, stride and dilation must be >= 1");
    let (dil_h, dil_w) = match dilation {
        Some([h, w]) => (pos(h)?, pos(w)?),
        None => (1, 1),
    };
    Ok(ConvGeometry {
        kh: pos(kh)?,
        kw: pos(kw)?,
        stride_h: pos(stride_h)?,
        stride_w: pos(stride_w)?,
        dil_h,
        dil_w,
        pad_top: pad(top)?,
        pad_left: pad(left)?,
        pad_bottom: pad(bottom)?,
        pad_right: pad(right)?,
    })
}

/// The geometry, weights and per-channel quantization CONV2D and DEPTHWISE_CONV2D share;
/// the weights' length follows from the op (`conv` for CONV2D, `depthwise` otherwise).
fn conv_common<'a>(
    w: &Checks<'a>,
    p: &Conv2dWords,
    io: &Io<'_, 'a>,
    weights_len: impl FnOnce(&ConvGeometry) -> Option<usize>,
    weights_what: &'static str,
) -> Result<(ConvGeometry, &'a [i8], ChannelQuant<'a>), Error> {
    let (is, os) = (io.in0.shape, io.out.shape);
    let g = geometry(
        w,
        [p.kh, p.kw, p.stride_h, p.stride_w],
        Some([p.dil_h, p.dil_w]),
        [p.pad_top, p.pad_left, p.pad_bottom, p.pad_right],
    )?;
    if g.output_size(is.h, is.w) != Some((os.h, os.w)) {
        return Err(mismatch(
            w.op,
            "conv output h/w do not follow from input and geometry",
        ));
    }
    let quant = channel_quant(w, p.channels, p.act, io)?;
    let weights = w.i8s(p.weights_off, weights_len(&g), weights_what)?;
    Ok((g, weights, quant))
}

/// The clamp and per-output-channel arrays of the conv ops and FULLY_CONNECTED.
fn channel_quant<'a>(
    w: &Checks<'a>,
    channels: PerChannelWords,
    act: ActWords,
    io: &Io<'_, 'a>,
) -> Result<ChannelQuant<'a>, Error> {
    let act = w.act(act)?;
    let names = ["bias array", "multiplier array", "shift array"];
    let (bias, mult, shift) = w.per_channel(channels, io.out.shape.c, names)?;
    Ok(ChannelQuant {
        in_zp: io.in0.zero_point,
        out_zp: io.out.zero_point,
        act,
        bias,
        mult,
        shift,
    })
}

fn conv<'a>(w: &Checks<'a>, p: &Conv2dWords, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    let (in_c, out_c) = (io.in0.shape.c, io.out.shape.c);
    let len = |g: &ConvGeometry| {
        g.kh.checked_mul(g.kw)?
            .checked_mul(in_c)?
            .checked_mul(out_c)
    };
    let (geometry, weights, quant) = conv_common(w, p, io, len, "conv weights")?;
    Ok(Kernel::Conv2d(Conv2dParams {
        packed: &[],
        geometry,
        weights,
        quant,
    }))
}

fn depthwise<'a>(
    w: &Checks<'a>,
    p: &Conv2dWords,
    depth_multiplier: i32,
    io: &Io<'_, 'a>,
) -> Result<Kernel<'a>, Error> {
    let (is, os) = (io.in0.shape, io.out.shape);
    let len = |g: &ConvGeometry| g.kh.checked_mul(g.kw)?.checked_mul(os.c);
    let (geometry, weights, quant) = conv_common(w, p, io, len, "depthwise weights")?;
    let depth_multiplier = w.count(depth_multiplier, 1, "depth_multiplier must be >= 1")?;
    if is.c.checked_mul(depth_multiplier) != Some(os.c) {
        return Err(mismatch(w.op, "depthwise out.c != in.c * depth_multiplier"));
    }
    Ok(Kernel::Depthwise(DepthwiseParams {
        geometry,
        depth_multiplier,
        weights,
        quant,
    }))
}

fn fully_connected<'a>(
    w: &Checks<'a>,
    p: &FullyConnectedWords,
    io: &Io<'_, 'a>,
) -> Result<Kernel<'a>, Error> {
    let os = io.out.shape;
    if os.h != 1 || os.w != 1 {
        return Err(mismatch(w.op, "fully connected output must be 1x1xN"));
    }
    let n_in = io.in0.shape.len().ok_or(Error::ShapeOverflow {
        what: "fully connected input",
    })?;
    let weights = w.i8s(
        p.weights_off,
        n_in.checked_mul(os.c),
        "fully connected weights",
    )?;
    let quant = channel_quant(w, p.channels, p.act, io)?;
    Ok(Kernel::FullyConnected(FullyConnectedParams {
        weights,
        quant,
    }))
}

fn pool<'a>(
    w: &Checks<'a>,
    p: &PoolWords,
    kind: PoolKind,
    io: &Io<'_, 'a>,
) -> Result<Kernel<'a>, Error> {
    let (is, os) = (io.in0.shape, io.out.shape);
    let g = geometry(
        w,
        [p.kh, p.kw, p.stride_h, p.stride_w],
        None,
        [p.pad_top, p.pad_left, p.pad_bottom, p.pad_right],
    )?;
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
            act: w.act(p.act)?,
        },
    ))
}

fn channel_pool<'a>(
    w: &Checks<'a>,
    p: &ChannelPoolWords,
    io: &Io<'_, 'a>,
) -> Result<Kernel<'a>, Error> {
    let slot = |v: i32| match v {
        ChannelPoolWords::ABSENT => Ok(None),
        0 | 1 => Ok(Some(v as usize)),
        _ => Err(w.bad("channel pool output channel word not -1, 0 or 1")),
    };
    let params = ChannelPoolParams {
        mean: slot(p.mean_channel)?,
        max: slot(p.max_channel)?,
        zp: io.in0.zero_point,
    };
    match (params.mean, params.max) {
        (None, None) => return Err(w.bad("channel pool computes neither statistic")),
        (Some(a), Some(b)) if a == b => {
            return Err(w.bad("channel pool writes mean and max to one channel"))
        }
        _ if !params.is_consistent() => {
            return Err(w.bad("channel pool's single statistic is not output channel 0"))
        }
        _ => {}
    }
    let (is, os) = (io.in0.shape, io.out.shape);
    if os != Shape::new(is.h, is.w, params.out_channels()) {
        return Err(mismatch(
            w.op,
            "channel pool output is not (in.h, in.w, statistics computed)",
        ));
    }
    if io.in0.zero_point != io.out.zero_point {
        return Err(w.bad("channel pool input and output zero points differ"));
    }
    Ok(Kernel::ChannelPool(params))
}

fn global_pool_shape(w: &Checks<'_>, io: &Io<'_, '_>) -> Result<(), Error> {
    if io.out.shape != Shape::new(1, 1, io.in0.shape.c) {
        return Err(mismatch(w.op, "global pool output must be 1x1xC"));
    }
    Ok(())
}

fn global_max_pool<'a>(w: &Checks<'a>, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    global_pool_shape(w, io)?;
    if io.in0.zero_point != io.out.zero_point {
        return Err(w.bad("global max pool zero points differ"));
    }
    Ok(Kernel::GlobalMaxPool)
}

fn global_avg_pool<'a>(
    w: &Checks<'a>,
    p: &GlobalAvgPoolWords,
    io: &Io<'_, 'a>,
) -> Result<Kernel<'a>, Error> {
    global_pool_shape(w, io)?;
    Ok(Kernel::GlobalAvgPool(GlobalAvgPoolParams {
        requant: w.requant(p.out)?,
        in_zp: io.in0.zero_point,
        out_zp: io.out.zero_point,
    }))
}

fn mul<'a>(w: &Checks<'a>, p: &MulWords, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    let in1 = io.second(w.op)?;
    let is = io.in0.shape;
    let broadcast = MulBroadcast::classify(is, in1.shape).ok_or(mismatch(
        w.op,
        "mul in2 is neither same-shape, 1x1xC nor HxWx1",
    ))?;
    if io.out.shape != is {
        return Err(mismatch(w.op, "mul output shape differs from input"));
    }
    let params = MulParams {
        in1_zp: io.in0.zero_point,
        in2_zp: in1.zero_point,
        out: w.requant(p.out)?,
        out_zp: io.out.zero_point,
        act: w.act(p.act)?,
    };
    Ok(Kernel::Mul(params, broadcast))
}

/// SIGMOID and LUT: the same table lookup; only the host's table differs.
fn lut<'a>(w: &Checks<'a>, p: &LutWords, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    if io.out.shape != io.in0.shape {
        return Err(mismatch(
            w.op,
            "table lookup output shape differs from input",
        ));
    }
    Ok(Kernel::Lut(w.lut(p.lut_off)?))
}

fn add<'a>(w: &Checks<'a>, p: &AddWords, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
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
    let left_shift = u32::try_from(p.left_shift)
        .ok()
        .filter(|&s| s <= 30)
        .ok_or(w.bad("add left_shift outside 0..=30"))?;
    let params = AddParams {
        left_shift,
        in1_zp: in0.zero_point,
        in1: w.requant(p.in1)?,
        in2_zp: in1.zero_point,
        in2: w.requant(p.in2)?,
        out: w.requant(p.out)?,
        out_zp: out.zero_point,
        act: w.act(p.act)?,
    };
    Ok(Kernel::Add(params, channels))
}

fn concat<'a>(w: &Checks<'a>, p: &ConcatWords, io: &Io<'_, 'a>) -> Result<Kernel<'a>, Error> {
    let (inputs, out) = (io.inputs, io.out);
    let mut requants = [None; 4];
    let mut total_c = 0usize;
    for ((slot, t), words) in requants.iter_mut().zip(inputs).zip(p.requants()) {
        let Some(t) = t else { continue };
        if (t.shape.h, t.shape.w) != (out.shape.h, out.shape.w) {
            return Err(mismatch(
                w.op,
                "concat inputs differ in h/w from the output",
            ));
        }
        total_c += t.shape.c;
        *slot = if words.mult == 0 {
            None
        } else {
            Some(w.requant(*words)?)
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

fn cbam<'a>(w: &Checks<'a>, p: &CbamWords, io: &Io<'_, 'a>) -> Result<CbamParams<'a>, Error> {
    let (in0, out) = (io.in0, io.out);
    let c = w.count(p.c, 1, "CBAM C must be >= 1")?;
    let cr = w.count(p.cr, 1, "CBAM Cr must be >= 1")?;
    let k = w.count(p.k, 1, "CBAM k must be >= 1")?;
    if c != in0.shape.c || in0.shape != out.shape {
        return Err(mismatch(
            w.op,
            "CBAM C != in.c or output shape differs from input",
        ));
    }
    if k.is_multiple_of(2) {
        return Err(w.bad("CBAM spatial kernel size must be odd"));
    }
    let order = match p.order {
        0 => PoolOrder::MeanMax,
        1 => PoolOrder::MaxMean,
        _ => return Err(w.bad("CBAM order must be 0 or 1")),
    };
    let arrays = [
        "CBAM bias array",
        "CBAM multiplier array",
        "CBAM shift array",
    ];
    let (b1, m1, s1) = w.per_channel(p.mlp1, cr, arrays)?;
    let (b2, m2, s2) = w.per_channel(p.mlp2, c, arrays)?;
    let mlp = CbamMlp {
        w1: w.i8s(p.w1_off, cr.checked_mul(c), "CBAM w1")?,
        b1,
        m1,
        s1,
        zp_h: w.zero_point(p.zp_h, "CBAM zp_h outside -128..=127")?,
        w2: w.i8s(p.w2_off, c.checked_mul(cr), "CBAM w2")?,
        b2,
        m2,
        s2,
        zp_z: w.zero_point(p.zp_z, "CBAM zp_z outside -128..=127")?,
    };
    Ok(CbamParams {
        c,
        cr,
        k,
        order,
        mlp,
        lut_c: w.lut(p.lut_c_off)?,
        f1: w.requant(p.f1)?,
        zp_f1: w.zero_point(p.zp_f1, "CBAM zp_f1 outside -128..=127")?,
        ws: w.i8s(
            p.ws_off,
            k.checked_mul(k).and_then(|n| n.checked_mul(2)),
            "CBAM spatial weights",
        )?,
        bs: p.bs,
        rs: w.requant(p.spatial)?,
        zp_s: w.zero_point(p.zp_s, "CBAM zp_s outside -128..=127")?,
        lut_s: w.lut(p.lut_s_off)?,
        out: w.requant(p.out)?,
        zp_in: in0.zero_point,
        zp_out: out.zero_point,
    })
}
