//! Runs one kernel N times on fixed data, for instruction counting under callgrind
//! (`bench.sh` runs it with N and N + 10 and takes the difference, so set-up cancels out).
//!
//! Usage: `kernel_bench conv|depthwise|cbam|chanpool|maxpool ITERATIONS`
//! - conv: CONV2D 3x3, stride 1, pad 1, 16 -> 32 channels on a 14x14 map (903,168 MACs);
//! - depthwise: DEPTHWISE_CONV2D 3x3, stride 1, pad 1, 96 channels on a 24x24 map (a
//!   MobileNetV2 block of a 96x96 input; 497,664 MACs);
//! - cbam: the fused CBAM op on a 14x14x32 map, Cr = 4, k = 7 (6,272 elements);
//! - chanpool: CHANNEL_POOL `[mean; max]` of a 14x14x32 map (6,272 elements);
//! - maxpool: MAX_POOL2D 2x2, stride 2 of a 28x28x24 map, then 3x3, stride 2, pad 1 of a
//!   32x32x16 map (the example models' pools).

use cbam_core::cbam::{cbam, cbam_scratch_size};
use cbam_core::kernels::channel_pool::channel_pool;
use cbam_core::kernels::conv2d::conv2d;
use cbam_core::kernels::depthwise::depthwise_conv2d;
use cbam_core::kernels::pool::pool2d;
use cbam_core::kernels::{
    CbamMlp, CbamParams, ChannelPoolParams, ChannelQuant, Conv2dParams, ConvGeometry,
    DepthwiseParams, PoolKind, PoolOrder, PoolParams, Shape,
};
use cbam_core::le::I32Le;
use cbam_core::math::{ActRange, Requant};
use std::hint::black_box;
use std::process::ExitCode;

/// Deterministic pseudo-random bytes (no dependency, identical on every run).
fn bytes(n: usize, seed: u32) -> Vec<i8> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 24) as i8
        })
        .collect()
}

fn words(values: impl Iterator<Item = i32>) -> Vec<u8> {
    values.flat_map(i32::to_le_bytes).collect()
}

fn bench_conv(iterations: usize) -> Result<(), cbam_core::Error> {
    let (h, w, ci, co) = (14, 14, 16, 32);
    let input = bytes(h * w * ci, 1);
    let weights = bytes(co * 9 * ci, 2);
    let bias = words((0..co as i32).map(|i| i * 37 - 500));
    let mult = words((0..co).map(|_| 1_518_500_250));
    let shift = words((0..co).map(|_| -9));
    let p = Conv2dParams {
        packed: &[],
        geometry: ConvGeometry::square(3, 1),
        weights: &weights,
        quant: ChannelQuant {
            in_zp: -3,
            out_zp: 5,
            act: ActRange::FULL,
            bias: I32Le::new(&bias),
            mult: I32Le::new(&mult),
            shift: I32Le::new(&shift),
        },
    };
    let mut out = vec![0i8; h * w * co];
    for _ in 0..iterations {
        conv2d(
            &p,
            Shape::new(h, w, ci),
            black_box(&input),
            Shape::new(h, w, co),
            &mut out,
        )?;
        black_box(&out);
    }
    Ok(())
}

fn bench_depthwise(iterations: usize) -> Result<(), cbam_core::Error> {
    let (h, w, c) = (24, 24, 96);
    let input = bytes(h * w * c, 6);
    let weights = bytes(9 * c, 7);
    let bias = words((0..c as i32).map(|i| i * 29 - 900));
    let mult = words((0..c).map(|_| 1_518_500_250));
    let shift = words((0..c).map(|_| -8));
    let p = DepthwiseParams {
        geometry: ConvGeometry::square(3, 1),
        depth_multiplier: 1,
        weights: &weights,
        quant: ChannelQuant {
            in_zp: -128,
            out_zp: -128,
            act: ActRange::FULL,
            bias: I32Le::new(&bias),
            mult: I32Le::new(&mult),
            shift: I32Le::new(&shift),
        },
    };
    let mut out = vec![0i8; h * w * c];
    for _ in 0..iterations {
        let shape = Shape::new(h, w, c);
        depthwise_conv2d(&p, shape, black_box(&input), shape, &mut out)?;
        black_box(&out);
    }
    Ok(())
}

fn bench_cbam(iterations: usize) -> Result<(), cbam_core::Error> {
    let (h, w, c, cr, k) = (14, 14, 32, 4, 7);
    let lut: [i8; 256] = std::array::from_fn(|i| (i as i32 - 128) as i8);
    let w1 = bytes(cr * c, 3);
    let w2 = bytes(c * cr, 4);
    let ws = bytes(k * k * 2, 5);
    let b1 = words((0..cr as i32).map(|i| i * 100));
    let b2 = words((0..c as i32).map(|i| i * 10 - 150));
    let m = |n: usize| words((0..n).map(|_| 1_288_490_189));
    let s = |n: usize| words((0..n).map(|_| -10));
    let (m1, s1, m2, s2) = (m(cr), s(cr), m(c), s(c));
    let p = CbamParams {
        c,
        cr,
        k,
        order: PoolOrder::MeanMax,
        mlp: CbamMlp {
            w1: &w1,
            b1: I32Le::new(&b1),
            m1: I32Le::new(&m1),
            s1: I32Le::new(&s1),
            zp_h: -128,
            w2: &w2,
            b2: I32Le::new(&b2),
            m2: I32Le::new(&m2),
            s2: I32Le::new(&s2),
            zp_z: 0,
        },
        lut_c: &lut,
        f1: Requant::new(1 << 30, -7),
        zp_f1: -10,
        ws: &ws,
        bs: 120,
        rs: Requant::new(1 << 30, -9),
        zp_s: 0,
        lut_s: &lut,
        out: Requant::new(1 << 30, -7),
        zp_in: -20,
        zp_out: -15,
    };
    let original = bytes(h * w * c, 6);
    let mut data = original.clone();
    let mut scratch = vec![0i8; cbam_scratch_size(c, cr, h, w).unwrap_or(0)];
    for _ in 0..iterations {
        // In place: restore the input so every iteration does the same work.
        data.copy_from_slice(&original);
        cbam(&p, Shape::new(h, w, c), black_box(&mut data), &mut scratch)?;
        black_box(&data);
    }
    Ok(())
}

fn bench_channel_pool(iterations: usize) -> Result<(), cbam_core::Error> {
    let (h, w, c) = (14, 14, 32);
    let input = bytes(h * w * c, 4);
    let p = ChannelPoolParams {
        mean: Some(0),
        max: Some(1),
        zp: -128,
    };
    let mut out = vec![0i8; h * w * 2];
    for _ in 0..iterations {
        channel_pool(&p, Shape::new(h, w, c), black_box(&input), &mut out)?;
        black_box(&out);
    }
    Ok(())
}

fn bench_max_pool(iterations: usize) -> Result<(), cbam_core::Error> {
    let cases = [
        (
            Shape::new(28, 28, 24),
            ConvGeometry {
                stride_h: 2,
                stride_w: 2,
                ..ConvGeometry::square(2, 0)
            },
        ),
        (
            Shape::new(32, 32, 16),
            ConvGeometry {
                stride_h: 2,
                stride_w: 2,
                ..ConvGeometry::square(3, 1)
            },
        ),
    ];
    for (ins, geometry) in cases {
        let input = bytes(ins.len().unwrap_or(0), 5);
        let p = PoolParams {
            geometry,
            act: ActRange::FULL,
        };
        let (oh, ow) = geometry.output_size(ins.h, ins.w).unwrap_or((0, 0));
        let outs = Shape::new(oh, ow, ins.c);
        let mut out = vec![0i8; outs.len().unwrap_or(0)];
        for _ in 0..iterations {
            pool2d(PoolKind::Max, &p, ins, black_box(&input), outs, &mut out)?;
            black_box(&out);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let iterations = args.get(2).and_then(|n| n.parse().ok());
    let result = match (args.get(1).map(String::as_str), iterations) {
        (Some("conv"), Some(n)) => bench_conv(n),
        (Some("depthwise"), Some(n)) => bench_depthwise(n),
        (Some("cbam"), Some(n)) => bench_cbam(n),
        (Some("chanpool"), Some(n)) => bench_channel_pool(n),
        (Some("maxpool"), Some(n)) => bench_max_pool(n),
        _ => {
            eprintln!("usage: kernel_bench conv|depthwise|cbam|chanpool|maxpool ITERATIONS");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kernel_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
