//! Lowering a recognised CBAM block to the core's fused op (FORMAT.md op 12).
//!
//! Each intermediate value of the block gets the quantization calibrated for its ONNX
//! name (see `ir::CbamValues`): the MLP hidden layer, the channel logit, `F'` and the
//! spatial logit. The pooled vectors and maps stay in their source's quantization.

use super::Lowering;
use crate::ir::{Activation, Cbam, Node, SpatialOrder};
use crate::quant::math::{self, QParams};
use crate::quant::model::{CbamParams, QTensorId, Requant};
use crate::quant::QuantError;

pub(super) fn lower_cbam(
    l: &mut Lowering<'_>,
    node: &Node,
    input: QTensorId,
    cbam: &Cbam,
    out_calibrated: QParams,
) -> Result<(CbamParams, QParams), QuantError> {
    check_block(node, cbam)?;
    let in_t = &l.tensors[input];
    let (in_q, [h, w, c]) = (in_t.q, in_t.shape);
    if c != cbam.channels {
        return Err(shape_err(
            node,
            format!("block has {} channels, its input {}", cbam.channels, c),
        ));
    }
    let (channels, hidden, k) = (cbam.channels, cbam.hidden, cbam.spatial.kernel[0]);
    let v = &cbam.values;
    let hidden_q = union_q(l, node, &v.hidden_avg, &v.hidden_max)?;
    let logit_q = l.range_q(&node.name, &v.channel_logit)?;
    let f1_calibrated = l.range_q(&node.name, &v.channel_scaled)?;
    let (f1_q, out_q) = if l.opts.cbam_pow2_scales {
        let f1_q = pow2_scaled(in_q, f1_calibrated);
        (f1_q, pow2_scaled(f1_q, out_calibrated))
    } else {
        (f1_calibrated, out_calibrated)
    };
    let spatial_q = l.range_q(&node.name, &v.spatial_logit)?;

    let w1 = math::quantize_per_channel(&cbam.mlp1.weight, hidden);
    let b1 = math::quantize_bias(&cbam.mlp1.bias, in_q.scale, &w1.scales);
    let (m1, s1) = math::channel_requantizers(in_q.scale, &w1.scales, hidden_q.scale);

    let w2 = math::quantize_per_channel(&cbam.mlp2.weight, channels);
    // Each pooled branch adds the bias once; the fused op runs the layer once on the sum.
    let b2 = math::quantize_bias(&cbam.mlp2.bias, hidden_q.scale, &w2.scales)
        .into_iter()
        .map(|b| b.saturating_mul(2))
        .collect();
    let (m2, s2) = math::channel_requantizers(hidden_q.scale, &w2.scales, logit_q.scale);

    // The spatial conv has one output channel: per-channel is per-tensor here.
    let ws_q = math::quantize_per_channel(&cbam.spatial.weight, 1);
    let ws_scale = ws_q.scales.first().copied().unwrap_or(1.0);
    let ws = super::oihw_to_ohwi(&ws_q.values, 1, 2, k * k);
    let bs = math::quantize_bias(&cbam.spatial.bias, f1_q.scale, &[ws_scale])
        .first()
        .copied()
        .unwrap_or(0);

    let attention = 1.0 / 256.0;
    l.macs += (2 * 2 * channels * hidden + h * w * (k * k * 2 + 3 * channels)) as u64;
    let params = CbamParams {
        channels,
        hidden,
        kernel: k,
        order: match cbam.order {
            SpatialOrder::MeanMax => 0,
            SpatialOrder::MaxMean => 1,
        },
        w1: w1.values,
        w1_scales: w1.scales,
        b1,
        m1,
        s1,
        hidden_q,
        w2: w2.values,
        w2_scales: w2.scales,
        b2,
        m2,
        s2,
        logit_q,
        lut_c: Box::new(math::sigmoid_lut(logit_q)),
        f1: Requant::from_real(f64::from(in_q.scale) * attention / f64::from(f1_q.scale)),
        f1_q,
        ws,
        ws_scale,
        bs,
        ms: Requant::from_real(
            f64::from(f1_q.scale) * f64::from(ws_scale) / f64::from(spatial_q.scale),
        ),
        spatial_q,
        lut_s: Box::new(math::sigmoid_lut(spatial_q)),
        out: Requant::from_real(f64::from(f1_q.scale) * attention / f64::from(out_q.scale)),
    };
    Ok((params, out_q))
}

/// The deepest right shift a pinned scaling keeps (`2^30 * 2^-7`, factor `k/256`): the
/// Cortex-M4 kernels take shifts `1..=7`, i.e. `j` in `0..=6`.
const MAX_POW2_STEPS: i32 = 6;

/// Quantization of a scaling's output whose scale is `input.scale * 2^-j` for the largest
/// `j` in `0..=6` that still covers the `calibrated` range (attention is at most one, so
/// `j = 0`, the input's own scale, always does), with the zero point that puts the
/// calibrated minimum at -128 (a ReLU input keeps -128).
///
/// With it the scaling's multiplier `input.scale / 256 / scale` is exactly `2^(j-8)`.
fn pow2_scaled(input: QParams, calibrated: QParams) -> QParams {
    let ratio = f64::from(input.scale) / f64::from(calibrated.scale);
    let j = if ratio.is_finite() && ratio >= 1.0 {
        (ratio.log2().floor() as i32).clamp(0, MAX_POW2_STEPS)
    } else {
        0
    };
    let scale = input.scale / (1u32 << j) as f32;
    let min_real = f64::from(-128 - calibrated.zero_point) * f64::from(calibrated.scale);
    let max_real = f64::from(127 - calibrated.zero_point) * f64::from(calibrated.scale);
    let s = f64::from(scale);
    // The calibrated minimum at -128, unless the maximum would then not fit.
    let highest = (127.0 - max_real / s).floor();
    let zp = (-128.0 - min_real / s).ceil().min(highest);
    QParams {
        scale,
        zero_point: (zp as i32).clamp(-128, 127),
    }
}

/// The fused op assumes a ReLU MLP and a stride-1, same-padded odd square spatial conv.
fn check_block(node: &Node, cbam: &Cbam) -> Result<(), QuantError> {
    let sp = &cbam.spatial;
    let k = sp.kernel[0];
    let reason = if cbam.mlp1.act != Activation::Relu {
        Some("the first MLP layer is not followed by ReLU".to_string())
    } else if cbam.mlp2.act != Activation::None {
        Some("the second MLP layer has a fused activation before the sum".to_string())
    } else if sp.kernel[1] != k
        || k.is_multiple_of(2)
        || sp.stride != [1, 1]
        || sp.dilation != [1, 1]
        || sp.pads != [k / 2; 4]
    {
        Some(format!(
            "spatial conv {:?} stride {:?} pads {:?} is not an odd square kernel with stride 1 and same padding",
            sp.kernel, sp.stride, sp.pads
        ))
    } else if sp.in_c != 2
        || sp.out_c != 1
        || sp.weight.len() != 2 * k * k
        || sp.act != Activation::None
    {
        Some("spatial conv is not 2 -> 1 channels without activation".to_string())
    } else if cbam.mlp1.weight.len() != cbam.hidden * cbam.channels
        || cbam.mlp2.weight.len() != cbam.hidden * cbam.channels
    {
        Some("MLP weight sizes do not match channels x hidden".to_string())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(QuantError::Unsupported {
            node: node.name.clone(),
            op: "CBAM".into(),
            reason,
        }),
        None => Ok(()),
    }
}

/// One quantization for both hidden vectors: the shared second layer reads their sum.
fn union_q(l: &Lowering<'_>, node: &Node, a: &str, b: &str) -> Result<QParams, QuantError> {
    let (ra, rb) = (l.range(&node.name, a)?, l.range(&node.name, b)?);
    Ok(QParams::from_range(ra.min.min(rb.min), ra.max.max(rb.max)))
}

fn shape_err(node: &Node, detail: String) -> QuantError {
    QuantError::Shape {
        node: node.name.clone(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multiplier(input: QParams, output: QParams) -> Requant {
        Requant::from_real(f64::from(input.scale) / 256.0 / f64::from(output.scale))
    }

    #[test]
    fn pow2_scale_is_the_finest_that_covers_the_calibrated_range() {
        let input = QParams::from_range(0.0, 8.0);
        // Attention at most 0.3: two halvings (0.25 < 0.3 <= 0.5) still cover it, not three.
        let out = pow2_scaled(input, QParams::from_range(0.0, 8.0 * 0.3));
        assert_eq!(out.scale, input.scale / 2.0);
        assert_eq!(out.zero_point, -128);
        let out = pow2_scaled(input, QParams::from_range(0.0, 8.0 * 0.2));
        assert_eq!(out.scale, input.scale / 4.0);
        let rq = multiplier(input, out);
        assert_eq!((rq.mult, rq.shift), (1 << 30, -5));
    }

    #[test]
    fn pow2_scale_keeps_a_signed_range_inside_int8() {
        let input = QParams::from_range(-3.0, 5.0);
        let calibrated = QParams::from_range(-1.0, 1.5);
        let out = pow2_scaled(input, calibrated);
        assert!(out.scale >= calibrated.scale && out.scale < 2.0 * calibrated.scale);
        let s = f64::from(out.scale);
        assert!(f64::from(out.zero_point) + -1.0 / s >= -128.0 - 1e-9);
        assert!(f64::from(out.zero_point) + 1.5 / s <= 127.0 + 1e-9);
        let rq = multiplier(input, out);
        assert_eq!(rq.mult, 1 << 30);
    }

    #[test]
    fn pow2_scale_stops_at_six_halvings_and_never_grows() {
        let input = QParams::from_range(0.0, 8.0);
        let tiny = pow2_scaled(input, QParams::from_range(0.0, 1e-6));
        assert_eq!(tiny.scale, input.scale / 64.0);
        // A calibrated range wider than the input's (not reachable by attention <= 1).
        let wide = pow2_scaled(input, QParams::from_range(0.0, 20.0));
        assert_eq!(wide.scale, input.scale);
    }
}
