//! Integer steps of the core that a float op followed by QuantizeLinear would not
//! reproduce, written so that tract and onnxruntime compute them exactly.
//!
//! All arithmetic is on int8 levels cast to float: sums of at most 2^16 levels stay
//! integers far below 2^24, so float32 adds them exactly; the quotient of such a sum by a
//! count is correctly rounded and cannot land on a `.5` it does not exactly equal; and
//! `sign(m) * floor(|m| + 0.5)` is then the core's round-half-away-from-zero.
//!
//! [`requantize`] is TFLite's `MultiplyByQuantizedMultiplier` in float64: an integer
//! accumulator times `mult * 2^(shift - 31)` is exact in float64 while `|acc| < 2^22`
//! (beyond that only a product within 2^-22 of a half level could round otherwise), and
//! its two roundings (`floor(x + 1/2)`, then half away from zero after the power-of-two
//! division) are the core's.

use tract_onnx::pb::tensor_proto::DataType;

use super::emit::Emitter;
use super::proto::{int, ints};
use crate::quant::QParams;

/// How the levels are summed before the division.
pub enum Sum<'s> {
    /// ReduceSum over these NCHW axes (keepdims), divided by `count`.
    Axes(&'s [usize], usize),
    /// Sum over pooling windows (a depthwise all-ones conv), divided by the number of
    /// in-bounds taps of each output position (`count_include_pad = 0`).
    Windows {
        channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: [usize; 4],
        /// `(h, w)` of the input and of the output.
        input: (usize, usize),
        output: (usize, usize),
    },
}

/// The core's rounded average of int8 levels in quantization `q`, as the dequantized
/// value `out` (same quantization): `round_half_away(sum(level - zp) / count) + zp`.
pub fn rounded_mean(e: &mut Emitter<'_>, levels: &str, q: QParams, sum: Sum<'_>, out: &str) {
    let n = |s: &str| format!("{out}__{s}");
    let c = centered(e, levels, q.zero_point, &n("centered"));
    let rounded = centered_mean(e, &c, sum, out);
    let zp = e.f32s(&n("zp_f"), &[], &[q.zero_point as f32]);
    e.node("Add", &[&rounded, &zp], &n("level_f"), vec![]);
    // Every value is an integer within the int8 range (a mean of levels), so Cast is exact.
    let cast = vec![int("to", DataType::Int8 as i64)];
    e.node("Cast", &[&n("level_f")], &n("level"), cast);
    e.dq(&n("level"), q, out);
}

/// `round_half_away(sum(centered) / count)` of centered levels, as exact float integers.
pub fn centered_mean(e: &mut Emitter<'_>, centered: &str, sum: Sum<'_>, out: &str) -> String {
    let n = |s: &str| format!("{out}__{s}");
    let summed = n("sum");
    let count = match sum {
        Sum::Axes(axes, count) => {
            let axes: Vec<i64> = axes.iter().map(|a| *a as i64).collect();
            let axes = e.i64s(&n("axes"), &[axes.len()], &axes);
            let attrs = vec![int("keepdims", 1)];
            e.node("ReduceSum", &[centered, &axes], &summed, attrs);
            e.f32s(&n("count"), &[], &[count as f32])
        }
        Sum::Windows {
            channels,
            kernel,
            stride,
            pads,
            input,
            output,
        } => {
            let ones = vec![1.0; channels * kernel[0] * kernel[1]];
            let w = e.f32s(&n("ones"), &[channels, 1, kernel[0], kernel[1]], &ones);
            let attrs = vec![
                ints("kernel_shape", &kernel),
                ints("strides", &stride),
                ints("pads", &pads),
                int("group", channels as i64),
            ];
            e.node("Conv", &[centered, &w], &summed, attrs);
            let counts = window_counts(kernel, stride, pads, input, output);
            e.f32s(&n("count"), &[1, 1, output.0, output.1], &counts)
        }
    };
    e.node("Div", &[&summed, &count], &n("mean"), vec![]);
    round_half_away(e, &n("mean"), out)
}

/// `sign(x) * floor(|x| + 0.5)`.
fn round_half_away(e: &mut Emitter<'_>, x: &str, base: &str) -> String {
    let n = |s: &str| format!("{base}__{s}");
    let half = e.f32s(&n("half"), &[], &[0.5]);
    e.node("Abs", &[x], &n("abs"), vec![]);
    e.node("Add", &[&n("abs"), &half], &n("abs_half"), vec![]);
    e.node("Floor", &[&n("abs_half")], &n("magnitude"), vec![]);
    e.node("Sign", &[x], &n("sign"), vec![]);
    e.node("Mul", &[&n("sign"), &n("magnitude")], &n("rounded"), vec![]);
    n("rounded")
}

/// In-bounds taps of each output position of a pooling window, row-major `oh x ow`.
fn window_counts(
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    let span = |o: usize, k: usize, s: usize, pad: usize, size: usize| {
        let start = o * s;
        (start..start + k)
            .filter(|p| *p >= pad && *p - pad < size)
            .count()
    };
    let mut counts = Vec::with_capacity(oh * ow);
    for y in 0..oh {
        let rows = span(y, kernel[0], stride[0], pads[0], h);
        for x in 0..ow {
            counts.push((rows * span(x, kernel[1], stride[1], pads[1], w)) as f32);
        }
    }
    counts
}

/// An integer accumulator (exact integers in a float32 or float64 tensor `acc`),
/// requantized per channel of axis 1 (`mult`/`shift` of length 1 or the channel count),
/// plus `zero_point`, clamped to `clamp` and cast to int8: the core's requantization.
/// Returns the int8 tensor's name.
pub fn requantize(
    e: &mut Emitter<'_>,
    acc: &str,
    (mult, shift): (&[i32], &[i32]),
    zero_point: i32,
    clamp: (i32, i32),
    out: &str,
) -> String {
    let n = |s: &str| format!("{out}__rq_{s}");
    let dims = [1, mult.len(), 1, 1];
    let to_double = vec![int("to", DataType::Double as i64)];
    e.node("Cast", &[acc], &n("acc_d"), to_double);
    // x * 2^left * mult / 2^31: one exact float64 product (powers of two scale exactly).
    let first: Vec<f64> = mult
        .iter()
        .zip(shift)
        .map(|(m, s)| f64::from(*m) * 2f64.powi((*s).clamp(-31, 30).max(0) - 31))
        .collect();
    let first = e.f64s(&n("mult"), &dims, &first);
    e.node("Mul", &[&n("acc_d"), &first], &n("scaled"), vec![]);
    // SaturatingRoundingDoublingHighMul rounds ties towards +infinity.
    let half = e.f64s(&n("half"), &[], &[0.5]);
    e.node("Add", &[&n("scaled"), &half], &n("nudged"), vec![]);
    e.node("Floor", &[&n("nudged")], &n("high"), vec![]);
    let right: Vec<f64> = shift
        .iter()
        .map(|s| 2f64.powi((*s).clamp(-31, 30).min(0)))
        .collect();
    let right = e.f64s(&n("pot"), &dims, &right);
    e.node("Mul", &[&n("high"), &right], &n("divided"), vec![]);
    // RoundingDivideByPOT rounds half away from zero.
    e.node("Abs", &[&n("divided")], &n("abs"), vec![]);
    e.node("Add", &[&n("abs"), &half], &n("abs_half"), vec![]);
    e.node("Floor", &[&n("abs_half")], &n("magnitude"), vec![]);
    e.node("Sign", &[&n("divided")], &n("sign"), vec![]);
    e.node("Mul", &[&n("sign"), &n("magnitude")], &n("rounded"), vec![]);
    let zp = e.f64s(&n("zp"), &[], &[f64::from(zero_point)]);
    e.node("Add", &[&n("rounded"), &zp], &n("shifted"), vec![]);
    let lo = e.f64s(&n("lo"), &[], &[f64::from(clamp.0.max(-128))]);
    let hi = e.f64s(&n("hi"), &[], &[f64::from(clamp.1.min(127))]);
    e.node("Clip", &[&n("shifted"), &lo, &hi], &n("clamped"), vec![]);
    let to_int8 = vec![int("to", DataType::Int8 as i64)];
    e.node("Cast", &[&n("clamped")], &n("level"), to_int8);
    n("level")
}

/// `levels - zero_point` as float32: exact small integers, the core's `x - zp`.
pub fn centered(e: &mut Emitter<'_>, levels: &str, zero_point: i32, out: &str) -> String {
    let as_float = e.levels_as_float(levels, &format!("{out}__levels"));
    let zp = e.f32s(&format!("{out}__zp_f32"), &[], &[zero_point as f32]);
    e.node("Sub", &[&as_float, &zp], out, vec![]);
    out.into()
}

/// A 256-entry int8 table indexed by the int8 levels of `levels` (entry `x + 128` for
/// level `x`), dequantized with `q` as `out`: the core's sigmoid, bit for bit. Returns the
/// int8 result's name.
pub fn table_lookup(
    e: &mut Emitter<'_>,
    levels: &str,
    table: &[i8; 256],
    q: QParams,
    out: &str,
) -> String {
    let n = |s: &str| format!("{out}__{s}");
    let cast = vec![int("to", DataType::Int32 as i64)];
    e.node("Cast", &[levels], &n("index_raw"), cast);
    let offset = e.i32s(&n("offset"), &[], &[128]);
    e.node("Add", &[&n("index_raw"), &offset], &n("index"), vec![]);
    let table = e.i8s(&n("table"), &[256], table);
    e.node(
        "Gather",
        &[&table, &n("index")],
        &n("level"),
        vec![int("axis", 0)],
    );
    e.dq(&n("level"), q, out);
    n("level")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_exclude_padding() {
        // 3x3 window, stride 1, pad 1 on a 3x3 input: corners see 4 taps, edges 6, centre 9.
        let c = window_counts([3, 3], [1, 1], [1, 1, 1, 1], (3, 3), (3, 3));
        assert_eq!(c, vec![4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0]);
        // 2x2 stride 2 without padding: every window is full.
        assert_eq!(
            window_counts([2, 2], [2, 2], [0; 4], (4, 4), (2, 2)),
            vec![4.0; 4]
        );
    }
}
