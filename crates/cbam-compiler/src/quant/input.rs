//! Input quantization that absorbs the model's pixel normalisation
//! `x = (pixel / 255 - mean[c]) / std[c]`, so the device feeds `q = pixel - 128`.

use super::math::QParams;
use crate::calib::Ranges;
use crate::ir::{Graph, Op};

/// How the device's input relates to the float model's input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputPlan {
    pub q: QParams,
    pub pixels: bool,
    /// Per input channel `(a, d)`: the float model's input is `a * u + d` where `u` is the
    /// real value the device's input tensor represents. `None` when `u` is the input.
    pub affine: Option<Vec<(f32, f32)>>,
}

/// Chooses the input quantization.
///
/// Uniform mean/std: scale `1/(255*std)` and zero point `round(255*mean) - 128`; the
/// half-level rounding of that zero point becomes a constant offset `d` folded into the
/// first conv's bias when possible. Per-channel mean/std: the input tensor represents
/// `pixel/255` (scale 1/255, zero point -128) and the whole affine is folded into the
/// first conv, which must then be the input's only reader and unpadded: its padding would
/// read pixel 0 where the float model reads `x = 0` (`pixel = 255 * mean[c]`, per channel,
/// which no zero point can stand for). Otherwise the device feeds the normalised input,
/// quantized by its calibrated range.
pub fn plan_input(graph: &Graph, ranges: &Ranges, pixel_input: bool) -> Option<InputPlan> {
    let meta = &graph.meta;
    let channels = graph.tensors.get(graph.input)?.shape.first().copied()?;
    let uniform =
        meta.mean.windows(2).all(|p| p[0] == p[1]) && meta.std.windows(2).all(|p| p[0] == p[1]);
    let stats_usable = pixel_input
        && (uniform || folds_exactly(graph))
        && !meta.mean.is_empty()
        && meta.mean.len() == meta.std.len()
        && meta.std.iter().all(|s| s.is_finite() && *s > 0.0)
        && (meta.mean.len() == 1 || meta.mean.len() == channels);
    if !stats_usable {
        let name = &graph.tensors.get(graph.input)?.name;
        let r = ranges.get(name)?;
        return Some(InputPlan {
            q: QParams::from_range(r.min, r.max),
            pixels: false,
            affine: None,
        });
    }
    if uniform {
        let (mean, std) = (f64::from(meta.mean[0]), f64::from(meta.std[0]));
        let scale = (1.0 / (255.0 * std)) as f32;
        let exact_zp = 255.0 * mean - 128.0;
        let zp = exact_zp.round().clamp(-128.0, 127.0);
        let offset = ((zp - exact_zp) * f64::from(scale)) as f32;
        return Some(InputPlan {
            q: QParams {
                scale,
                zero_point: zp as i32,
            },
            pixels: true,
            affine: (offset != 0.0).then(|| vec![(1.0, offset); channels]),
        });
    }
    let affine = (0..channels)
        .map(|c| {
            let (m, s) = (meta.mean[c], meta.std[c]);
            (1.0 / s, -m / s)
        })
        .collect();
    Some(InputPlan {
        q: QParams {
            scale: 1.0 / 255.0,
            zero_point: -128,
        },
        pixels: true,
        affine: Some(affine),
    })
}

/// Whether a per-channel affine on the input folds into its reader without changing any
/// output: one unpadded, ungrouped Conv reads it.
fn folds_exactly(graph: &Graph) -> bool {
    let readers: Vec<&Op> = graph
        .nodes
        .iter()
        .filter(|n| n.inputs.contains(&graph.input))
        .map(|n| &n.op)
        .collect();
    matches!(readers.as_slice(), [Op::Conv(c)] if c.groups == 1 && c.pads == [0; 4])
}

/// Folds `x_c = a_c * u_c + d_c` into a conv reading `x`: weights `[o][c][kh][kw]`
/// (groups 1) are scaled per input channel and `d` moves into the bias. Exact only for an
/// unpadded conv (see [`plan_input`]); with a uniform normalisation `d` is the sub-level
/// rounding offset of the zero point, which padding may miss by that much.
pub fn fold_affine_into_conv(
    weight: &[f32],
    bias: &[f32],
    out_c: usize,
    in_c: usize,
    affine: &[(f32, f32)],
) -> (Vec<f32>, Vec<f32>) {
    let per_out = weight.len() / out_c.max(1);
    let taps = per_out / in_c.max(1);
    let mut w = weight.to_vec();
    let mut b: Vec<f32> = (0..out_c)
        .map(|o| bias.get(o).copied().unwrap_or(0.0))
        .collect();
    for (o, bo) in b.iter_mut().enumerate() {
        for (c, (a, d)) in affine.iter().enumerate().take(in_c) {
            let start = o * per_out + c * taps;
            if let Some(block) = w.get_mut(start..start + taps) {
                *bo += d * block.iter().sum::<f32>();
                block.iter_mut().for_each(|v| *v *= a);
            }
        }
    }
    (w, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{ModelMeta, TensorDef};

    fn graph(mean: Vec<f32>, std: Vec<f32>) -> Graph {
        Graph {
            tensors: vec![TensorDef {
                name: "x".into(),
                shape: vec![3, 4, 4],
            }],
            nodes: vec![],
            input: 0,
            output: 0,
            meta: ModelMeta {
                mean,
                std,
                ..Default::default()
            },
        }
    }

    #[test]
    fn uniform_normalisation_becomes_the_input_scale() {
        let g = graph(vec![0.5; 3], vec![0.25; 3]);
        let plan = plan_input(&g, &Ranges::new(), true).unwrap();
        assert!(plan.pixels);
        assert!((plan.q.scale - 1.0 / 63.75).abs() < 1e-7);
        // 255 * 0.5 - 128 = -0.5 rounds to -1 (away from zero): offset of half a level.
        assert_eq!(plan.q.zero_point, -1);
        // Every pixel maps to the model input within the folded offset.
        let (a, d) = plan.affine.unwrap()[0];
        for pixel in [0u8, 17, 128, 255] {
            let q = i32::from(pixel) - 128;
            let u = plan.q.scale * (q - plan.q.zero_point) as f32;
            let x = (f32::from(pixel) / 255.0 - 0.5) / 0.25;
            assert!((a * u + d - x).abs() < 1e-5, "{pixel}");
        }
    }

    #[test]
    fn per_channel_affine_folds_into_conv() {
        // 1 output channel, 2 input channels, 1x1 kernel.
        let (w, b) = fold_affine_into_conv(&[2.0, 3.0], &[1.0], 1, 2, &[(2.0, 0.5), (4.0, -1.0)]);
        assert_eq!(w, vec![4.0, 12.0]);
        assert_eq!(b, vec![1.0 + 0.5 * 2.0 - 3.0]);
        // conv(a*u + d) == conv'(u) for u = (0.3, 0.7).
        let direct = 2.0 * (2.0 * 0.3 + 0.5) + 3.0 * (4.0 * 0.7 - 1.0) + 1.0;
        let folded = w[0] * 0.3 + w[1] * 0.7 + b[0];
        assert!((direct - folded).abs() < 1e-6);
    }

    #[test]
    fn per_channel_normalisation_before_a_padded_conv_is_not_folded() {
        use crate::ir::{Activation, Conv, Node};
        let mut g = graph(vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225]);
        g.tensors.push(TensorDef {
            name: "y".into(),
            shape: vec![1, 4, 4],
        });
        let conv = |pads| {
            Op::Conv(Conv {
                weight: vec![0.1; 27],
                bias: vec![0.0],
                out_c: 1,
                in_c: 3,
                kernel: [3, 3],
                stride: [1, 1],
                dilation: [1, 1],
                pads,
                groups: 1,
                act: Activation::None,
            })
        };
        g.nodes.push(Node {
            name: "conv".into(),
            op: conv([1; 4]),
            inputs: vec![0],
            output: 1,
        });
        let mut r = Ranges::new();
        r.insert(
            "x".into(),
            crate::calib::Range {
                min: -2.0,
                max: 2.5,
            },
        );
        let padded = plan_input(&g, &r, true).unwrap();
        assert!(!padded.pixels && padded.affine.is_none());
        g.nodes[0].op = conv([0; 4]);
        let unpadded = plan_input(&g, &r, true).unwrap();
        assert!(unpadded.pixels && unpadded.affine.is_some());
    }

    #[test]
    fn without_statistics_the_calibrated_range_is_used() {
        let g = graph(vec![], vec![]);
        let mut r = Ranges::new();
        r.insert(
            "x".into(),
            crate::calib::Range {
                min: -1.0,
                max: 1.0,
            },
        );
        let plan = plan_input(&g, &r, true).unwrap();
        assert!(!plan.pixels && plan.affine.is_none());
        assert_eq!(plan.q, QParams::from_range(-1.0, 1.0));
    }
}
