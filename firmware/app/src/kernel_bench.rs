//! Per-kernel benchmark on the layer shapes of a small CNN with CBAM (conv 3x3
//! on a 28x28 grey image, 16->32 and 32->64 convolutions, a pointwise and a
//! depthwise layer, a 64->10 head, the fused CBAM op and its steps), printed
//! beside CMSIS-NN's instruction counts for the same shapes (QEMU 7.2
//! mps2-an386, Cortex-M4 DSP path). Needs cbam-core's `kernels` feature.
//!
//! Weights and activations are pseudo-random: the count depends on the shape,
//! not the values, except for the clamping branches, which random data
//! exercises as a real layer does.

use cbam_core::cbam::{
    cbam, cbam_scratch_size, scale_channels_and_pool, scale_pixels, spatial_attention,
};
use cbam_core::kernels::conv2d::conv2d;
use cbam_core::kernels::depthwise::depthwise_conv2d;
use cbam_core::kernels::fully_connected::fully_connected;
use cbam_core::kernels::mul::mul;
use cbam_core::kernels::{
    CbamMlp, CbamParams, ChannelQuant, Conv2dParams, ConvGeometry, DepthwiseParams,
    FullyConnectedParams, MulBroadcast, MulParams, PoolOrder, Shape,
};
use cbam_core::le::{as_i8_mut, I32Le};
use cbam_core::math::{ActRange, Requant};

use crate::counter::Counter;
use crate::runner::{AppError, Board, Exit, Identity};

/// Bytes of working memory [`run`] needs: the largest layer's weights,
/// input, output and scratch.
pub const BENCH_BUFFER_BYTES: usize = 48 * 1024;

/// Largest channel count among the shapes (per-channel quantization arrays).
const MAX_CHANNELS: usize = 64;

/// CMSIS-NN anchors, instructions per MAC (per element for MUL) x 100.
const CMSIS_CONV_1_16: u64 = 1040;
const CMSIS_CONV_16_32: u64 = 214;
const CMSIS_CONV_32_64: u64 = 188;
const CMSIS_CONV1X1_32_64: u64 = 271;
const CMSIS_DEPTHWISE_32: u64 = 803;
const CMSIS_FC_64_10: u64 = 286;
const CMSIS_MUL_PER_ELEMENT: u64 = 3590;

/// xorshift32: deterministic filler, no allocation, no float.
struct Fill(u32);

impl Fill {
    fn bytes(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            *b = (self.0 >> 24) as u8;
        }
    }
}

/// Per-channel requantization arrays as little-endian bytes.
struct QuantWords {
    bias: [u8; 4 * MAX_CHANNELS],
    mult: [u8; 4 * MAX_CHANNELS],
    shift: [u8; 4 * MAX_CHANNELS],
}

impl QuantWords {
    fn new(fill: &mut Fill) -> Self {
        let mut q = Self {
            bias: [0; 4 * MAX_CHANNELS],
            mult: [0; 4 * MAX_CHANNELS],
            shift: [0; 4 * MAX_CHANNELS],
        };
        let mut noise = [0u8; MAX_CHANNELS];
        fill.bytes(&mut noise);
        for (c, &n) in noise.iter().enumerate() {
            let word = c * 4..c * 4 + 4;
            q.bias[word.clone()].copy_from_slice(&(i32::from(n as i8) * 16).to_le_bytes());
            q.mult[word.clone()]
                .copy_from_slice(&((1i32 << 30) + (i32::from(n) << 20)).to_le_bytes());
            q.shift[word].copy_from_slice(&(-8i32).to_le_bytes());
        }
        q
    }

    fn channel_quant(&self, channels: usize) -> ChannelQuant<'_> {
        let n = 4 * channels.min(MAX_CHANNELS);
        ChannelQuant {
            in_zp: -3,
            out_zp: 5,
            act: ActRange::FULL,
            bias: I32Le::new(&self.bias[..n]),
            mult: I32Le::new(&self.mult[..n]),
            shift: I32Le::new(&self.shift[..n]),
        }
    }
}

/// Carves int8 slices off one buffer, filled with noise.
struct Carver<'b> {
    rest: &'b mut [u8],
    fill: Fill,
}

impl<'b> Carver<'b> {
    /// `len` bytes of noise starting at a 16-byte boundary, as the compiler's arena
    /// planner places every tensor and scratch region.
    fn take(&mut self, len: usize) -> Result<&'b mut [i8], AppError> {
        let rest = core::mem::take(&mut self.rest);
        let pad = rest.as_ptr().align_offset(16).min(rest.len());
        let (_, rest) = rest.split_at_mut(pad);
        if rest.len() < len {
            return Err(AppError::BenchBufferTooSmall {
                needed: len,
                available: rest.len(),
            });
        }
        let (head, tail) = rest.split_at_mut(len);
        self.rest = tail;
        self.fill.bytes(head);
        Ok(as_i8_mut(head))
    }
}

/// One result line; `anchor` is CMSIS-NN's count x 100, 0 when it has no
/// counterpart.
fn report(name: &str, count: u64, work: u64, per: &str, anchor: u64, unit: &str) {
    let ours = (count * 100).checked_div(work).unwrap_or(0);
    if anchor == 0 {
        info!(
            "bench {=str}: {=u64} {=str}, {=u64} {=str}s, {=u64}.{=u64:02} per {=str}",
            name,
            count,
            unit,
            work,
            per,
            ours / 100,
            ours % 100,
            per
        );
        return;
    }
    info!(
        "bench {=str}: {=u64} {=str}, {=u64} {=str}s, {=u64}.{=u64:02} per {=str} (CMSIS-NN M4 {=u64}.{=u64:02})",
        name,
        count,
        unit,
        work,
        per,
        ours / 100,
        ours % 100,
        per,
        anchor / 100,
        anchor % 100
    );
}

fn bench_conv<C: Counter>(
    buf: &mut [u8],
    counter: &mut C,
    name: &str,
    (h, w, in_c, out_c, k): (usize, usize, usize, usize, usize),
    anchor: u64,
) -> Result<(), AppError> {
    let mut fill = Fill(0x1234_5678 ^ (in_c * 131 + out_c) as u32);
    let quant = QuantWords::new(&mut fill);
    let mut carve = Carver { rest: buf, fill };
    let weights = carve.take(out_c * k * k * in_c)?;
    let input = carve.take(h * w * in_c)?;
    let output = carve.take(h * w * out_c)?;
    let p = Conv2dParams {
        packed: &[],
        geometry: ConvGeometry::square(k, k / 2),
        weights,
        quant: quant.channel_quant(out_c),
    };
    let (result, count) = counter.measure(|| {
        conv2d(
            &p,
            Shape::new(h, w, in_c),
            input,
            Shape::new(h, w, out_c),
            output,
        )
    });
    result?;
    report(
        name,
        count,
        (h * w * out_c * k * k * in_c) as u64,
        "MAC",
        anchor,
        counter.kind().label(),
    );
    Ok(())
}

fn bench_depthwise<C: Counter>(buf: &mut [u8], counter: &mut C) -> Result<(), AppError> {
    let (h, w, c, k) = (14, 14, 32, 3);
    let mut fill = Fill(0x0dd_ba11);
    let quant = QuantWords::new(&mut fill);
    let mut carve = Carver { rest: buf, fill };
    let weights = carve.take(k * k * c)?;
    let input = carve.take(h * w * c)?;
    let output = carve.take(h * w * c)?;
    let p = DepthwiseParams {
        geometry: ConvGeometry::square(k, 1),
        depth_multiplier: 1,
        weights,
        quant: quant.channel_quant(c),
    };
    let shape = Shape::new(h, w, c);
    let (result, count) = counter.measure(|| depthwise_conv2d(&p, shape, input, shape, output));
    result?;
    let label = counter.kind().label();
    report(
        "depthwise 3x3 32ch 14x14",
        count,
        (h * w * c * k * k) as u64,
        "MAC",
        CMSIS_DEPTHWISE_32,
        label,
    );
    Ok(())
}

fn bench_fully_connected<C: Counter>(buf: &mut [u8], counter: &mut C) -> Result<(), AppError> {
    let (n_in, n_out) = (64, 10);
    let mut fill = Fill(0xfc64_0010);
    let quant = QuantWords::new(&mut fill);
    let mut carve = Carver { rest: buf, fill };
    let weights = carve.take(n_in * n_out)?;
    let input = carve.take(n_in)?;
    let output = carve.take(n_out)?;
    let p = FullyConnectedParams {
        weights,
        quant: quant.channel_quant(n_out),
    };
    let (result, count) = counter.measure(|| fully_connected(&p, input, output));
    result?;
    report(
        "fully connected 64->10",
        count,
        (n_in * n_out) as u64,
        "MAC",
        CMSIS_FC_64_10,
        counter.kind().label(),
    );
    Ok(())
}

/// MUL with a per-channel factor: what one CBAM scaling costs in TFLite Micro.
fn bench_mul<C: Counter>(buf: &mut [u8], counter: &mut C) -> Result<(), AppError> {
    let shape = Shape::new(14, 14, 32);
    let n = 14 * 14 * 32;
    let mut carve = Carver {
        rest: buf,
        fill: Fill(0x6d75_6c21),
    };
    let in1 = carve.take(n)?;
    let in2 = carve.take(32)?;
    let out = carve.take(n)?;
    let p = MulParams {
        in1_zp: -3,
        in2_zp: -128,
        out: Requant::new(1 << 30, -6),
        out_zp: 2,
        act: ActRange::FULL,
    };
    let (result, count) =
        counter.measure(|| mul(&p, shape, in1, in2, MulBroadcast::PerChannel, out));
    result?;
    report(
        "mul broadcast 14x14x32",
        count,
        n as u64,
        "element",
        CMSIS_MUL_PER_ELEMENT,
        counter.kind().label(),
    );
    Ok(())
}

/// The fused CBAM op on 14x14x32 (reduction 4, 7x7 spatial kernel): the whole
/// block per element, MLP and spatial convolution included.
fn bench_cbam<C: Counter>(buf: &mut [u8], counter: &mut C) -> Result<(), AppError> {
    let (h, w, c, cr, k) = (14, 14, 32, 8, 7);
    let mut fill = Fill(0xcba3_0001);
    let quant_hidden = QuantWords::new(&mut fill);
    let quant_out = QuantWords::new(&mut fill);
    let mut carve = Carver { rest: buf, fill };
    // Any monotone table has a sigmoid's cost.
    let lut = carve.take(256)?;
    lut.sort_unstable();
    let lut: &[i8; 256] = (&*lut)
        .try_into()
        .map_err(|_| AppError::BenchBufferTooSmall {
            needed: 256,
            available: 0,
        })?;
    let w1 = carve.take(cr * c)?;
    let w2 = carve.take(c * cr)?;
    let ws = carve.take(k * k * 2)?;
    let data = carve.take(h * w * c)?;
    let scratch_len = cbam_scratch_size(c, cr, h, w).unwrap_or(usize::MAX);
    let scratch = carve.take(scratch_len)?;
    let hidden = quant_hidden.channel_quant(cr);
    let outer = quant_out.channel_quant(c);
    let p = CbamParams {
        c,
        cr,
        k,
        order: PoolOrder::MeanMax,
        mlp: CbamMlp {
            w1,
            b1: hidden.bias,
            m1: hidden.mult,
            s1: hidden.shift,
            zp_h: -128,
            w2,
            b2: outer.bias,
            m2: outer.mult,
            s2: outer.shift,
            zp_z: 0,
        },
        lut_c: lut,
        // The compiler's power-of-two scalings (`--calibrated-cbam-scales` off): `F'` at
        // the input's scale, the output at half of it.
        f1: Requant::new(1 << 30, -7),
        zp_f1: -100,
        ws,
        bs: 10,
        rs: Requant::new(1 << 30, -10),
        zp_s: 0,
        lut_s: lut,
        out: Requant::new(1 << 30, -6),
        zp_in: -128,
        zp_out: -100,
    };
    let (result, count) =
        counter.measure(|| cbam(&p, Shape::new(h, w, c), data, scratch).map(|_| ()));
    result?;
    let elements = (h * w * c) as u64;
    let label = counter.kind().label();
    report(
        "fused CBAM 14x14x32 (whole op)",
        count,
        elements,
        "element",
        0,
        label,
    );
    // The two scalings alone (the channel and the spatial scaling), on fresh noise: the
    // channel one includes the per-pixel channel mean/max it is fused with.
    let att_c = carve.take(c)?;
    let att_s = carve.take(h * w)?;
    let maps = carve.take(2 * h * w)?;
    let table = carve.take(2 * c)?;
    let ((), count) = counter.measure(|| scale_channels_and_pool(&p, data, att_c, maps, table));
    report(
        "CBAM channel scaling + channel mean/max",
        count,
        elements,
        "element",
        0,
        label,
    );
    let ((), count) = counter.measure(|| scale_pixels(&p, data, att_s));
    report("CBAM spatial scaling", count, elements, "element", 0, label);
    // The spatial attention between them: the 7x7 convolution of the two pooled maps
    // into one channel, and the sigmoid table.
    let (result, count) =
        counter.measure(|| spatial_attention(&p, Shape::new(h, w, c), maps, att_s));
    result?;
    report(
        "CBAM spatial attention conv 7x7 2->1",
        count,
        (h * w * k * k * 2) as u64,
        "MAC",
        0,
        label,
    );
    // A block whose input can go below its zero point (no ReLU before it, e.g. on a
    // residual branch): the scalings take the signed packed loops.
    let signed = CbamParams { zp_in: -3, ..p };
    let ((), count) =
        counter.measure(|| scale_channels_and_pool(&signed, data, att_c, maps, table));
    report(
        "CBAM channel scaling + mean/max, signed input",
        count,
        elements,
        "element",
        0,
        label,
    );
    let ((), count) = counter.measure(|| scale_pixels(&signed, data, att_s));
    report(
        "CBAM spatial scaling, signed input",
        count,
        elements,
        "element",
        0,
        label,
    );
    Ok(())
}

/// Runs every shape once, logging one line each. `buf` needs
/// [`BENCH_BUFFER_BYTES`].
pub fn run<C: Counter>(buf: &mut [u8], counter: &mut C) -> Result<(), AppError> {
    info!(
        "kernel benchmark: {=str} per MAC (per element for MUL/CBAM) beside CMSIS-NN's",
        counter.kind().label()
    );
    bench_conv(
        buf,
        counter,
        "conv 3x3 1->16 28x28",
        (28, 28, 1, 16, 3),
        CMSIS_CONV_1_16,
    )?;
    bench_conv(
        buf,
        counter,
        "conv 3x3 16->32 14x14",
        (14, 14, 16, 32, 3),
        CMSIS_CONV_16_32,
    )?;
    bench_conv(
        buf,
        counter,
        "conv 3x3 32->64 7x7",
        (7, 7, 32, 64, 3),
        CMSIS_CONV_32_64,
    )?;
    bench_conv(
        buf,
        counter,
        "conv 1x1 32->64 14x14",
        (14, 14, 32, 64, 1),
        CMSIS_CONV1X1_32_64,
    )?;
    bench_depthwise(buf, counter)?;
    bench_fully_connected(buf, counter)?;
    bench_mul(buf, counter)?;
    bench_cbam(buf, counter)
}

/// The benchmark firmware's whole job: run every shape, exit pass unless a
/// kernel rejected its arguments.
pub fn run_and_exit<C: Counter, L, D, X: Exit>(
    mut board: Board<C, L, D, X>,
    buf: &mut [u8],
    id: Identity<'_>,
) -> ! {
    info!("{=str}", id.run_tag);
    info!("cbam kernel benchmark on {=str}", id.board);
    let passed = match run(buf, &mut board.counter) {
        Ok(()) => true,
        Err(e) => {
            error!("kernel benchmark stopped: {}", e);
            false
        }
    };
    board.exit.exit(passed)
}
