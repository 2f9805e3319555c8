//! The input patches the rounding optimisation reads, int8 (as the core feeds the layer)
//! and float (tract), sampled at the same output positions of the same images.
//!
//! Which positions are sampled depends only on the layer's geometry and the image count,
//! so the float rows of many layers are gathered in one tract pass (as many layers as fit
//! [`FLOAT_ROWS_BUDGET`]) and the int8 rows later, layer by layer, from the core's state.

use std::collections::HashMap;

use super::channel_means::Geometry;
use super::rounding::Patches;
use super::{BiasCorrectionError, ROUNDING_ROWS};
use crate::float_run::FloatModel;
use crate::quant::{QModel, QOpKind};

/// Float patch values (f32, 128 MiB) kept between tract passes: a pass gathers the next
/// layers' rows until this many values are held, so memory stays bounded however deep the
/// model is, and a deep model needs a pass per budget's worth of layers, not per layer (one
/// layer holds at most `ROUNDING_ROWS` rows of its patch size).
const FLOAT_ROWS_BUDGET: usize = 32 << 20;

/// Where one layer's patches come from in the core's and tract's tensors.
#[derive(Debug, Clone)]
pub struct Layout {
    /// IR name of the layer's input, as tract names it.
    pub input_name: String,
    g: Geometry,
    dense: bool,
    /// The core's NHWC input `[h, w, c]`.
    hwc: [usize; 3],
}

impl Layout {
    /// `op` is the layer's op in `model`; `geometry` the IR layer's.
    pub fn new(model: &QModel, op: usize, geometry: Geometry, input_name: String) -> Option<Self> {
        let op = model.ops.get(op)?;
        let hwc = model.tensors.get(*op.inputs.first()?)?.shape;
        let dense = matches!(op.kind, QOpKind::FullyConnected(_));
        let g = if dense {
            Geometry::dense(hwc.iter().product())
        } else {
            geometry
        };
        Some(Layout {
            input_name,
            g,
            dense,
            hwc,
        })
    }

    /// Values per patch row.
    pub fn n(&self) -> usize {
        self.g.input[0] * self.g.taps()
    }

    /// Patch values sampled from `images` images.
    fn values(&self, images: usize) -> usize {
        let (oh, ow) = self.g.output_hw();
        let positions = oh * ow;
        let stride = (positions * images).div_ceil(ROUNDING_ROWS).max(1);
        let rows = (0..images)
            .map(|i| {
                (0..positions)
                    .filter(|p| (i * positions + p).is_multiple_of(stride))
                    .count()
            })
            .sum::<usize>();
        rows * self.n()
    }

    /// Visits, for image `index` of `images`, every value of every sampled patch in the IR
    /// weights' order (`[i][ky][kx]`, or NCHW flattening for a linear layer): the index
    /// into the core's NHWC tensor and into tract's NCHW value, or `None` in the padding.
    fn visit(&self, index: usize, images: usize, mut at: impl FnMut(Option<(usize, usize)>)) {
        let g = &self.g;
        let [h, w, c] = self.hwc;
        let (oh, ow) = g.output_hw();
        let [kh, kw] = g.kernel;
        let positions = oh * ow;
        let stride = (positions * images).div_ceil(ROUNDING_ROWS).max(1);
        // IR coordinates (ch, y, x) -> index in the core's NHWC int8 tensor and in tract's
        // NCHW value; a linear layer's `ch` is its NCHW-flattened input index.
        let indices = |ch: usize, y: usize, x: usize| -> (usize, usize) {
            if self.dense {
                let (channel, pixel) = (ch / (h * w), ch % (h * w));
                (pixel * c + channel, ch)
            } else {
                ((y * w + x) * c + ch, (ch * h + y) * w + x)
            }
        };
        for pos in (0..positions).filter(|p| (index * positions + p).is_multiple_of(stride)) {
            let (oy, ox) = (pos / ow, pos % ow);
            for ch in 0..g.input[0] {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let y = (oy * g.stride[0] + ky * g.dilation[0]).checked_sub(g.pads[0]);
                        let x = (ox * g.stride[1] + kx * g.dilation[1]).checked_sub(g.pads[1]);
                        at(match (y, x) {
                            (Some(y), Some(x)) if y < g.input[1] && x < g.input[2] => {
                                Some(indices(ch, y, x))
                            }
                            _ => None,
                        });
                    }
                }
            }
        }
    }

    /// The sampled patches: int8 from `quant` (the core's input per image, dequantized
    /// with `zero_point` and `scale`) beside the float rows gathered for the same images.
    pub fn patches(
        &self,
        quant: &[&[i8]],
        (zero_point, scale): (f64, f64),
        float: Vec<f32>,
    ) -> Patches {
        let mut patches = Patches {
            n: self.n(),
            quant: Vec::with_capacity(float.len()),
            float,
        };
        for (index, xq) in quant.iter().enumerate() {
            self.visit(index, quant.len(), |at| {
                patches.quant.push(at.map_or(0.0, |(iq, _)| {
                    xq.get(iq)
                        .map_or(0.0, |v| scale * (f64::from(*v) - zero_point))
                }));
            });
        }
        patches
    }

    fn push_float(&self, index: usize, images: usize, xf: &[f32], rows: &mut Vec<f32>) {
        self.visit(index, images, |at| {
            rows.push(at.map_or(0.0, |(_, i_f)| xf.get(i_f).copied().unwrap_or(0.0)));
        });
    }
}

/// Float patch rows of the layers still to be rounded, keyed by the caller's layer key,
/// gathered by tract a budget's worth of layers at a time.
pub struct FloatRows {
    /// Layers in walk order: key and layout.
    layers: Vec<(usize, Layout)>,
    rows: HashMap<usize, Vec<f32>>,
}

impl FloatRows {
    pub fn new(layers: Vec<(usize, Layout)>) -> Self {
        FloatRows {
            layers,
            rows: HashMap::new(),
        }
    }

    /// The float rows of layer `key` over `images`, running tract over them for it and the
    /// layers after it that fit the budget if it has none yet; handed over, not kept.
    pub fn take(
        &mut self,
        key: usize,
        float: &FloatModel,
        images: &[Vec<f32>],
    ) -> Result<Vec<f32>, BiasCorrectionError> {
        if let Some(rows) = self.rows.remove(&key) {
            return Ok(rows);
        }
        let Some(at) = self.layers.iter().position(|(k, _)| *k == key) else {
            return Ok(Vec::new());
        };
        let mut end = at + 1;
        let mut held = self.layers[at].1.values(images.len());
        while let Some((_, next)) = self.layers.get(end) {
            let more = next.values(images.len());
            if held + more > FLOAT_ROWS_BUDGET {
                break;
            }
            held += more;
            end += 1;
        }
        let chunk = &self.layers[at..end];
        let mut names: Vec<String> = chunk.iter().map(|(_, l)| l.input_name.clone()).collect();
        names.sort();
        names.dedup();
        let mut rows: Vec<Vec<f32>> = chunk
            .iter()
            .map(|(_, l)| Vec::with_capacity(l.values(images.len())))
            .collect();
        for (index, image) in images.iter().enumerate() {
            let values = float.run_with_values(image, &names)?;
            for ((_, layout), rows) in chunk.iter().zip(&mut rows) {
                let xf = values
                    .get(&layout.input_name)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                layout.push_float(index, images.len(), xf, rows);
            }
        }
        let mut rows = rows.into_iter();
        let first = rows.next().unwrap_or_default();
        for ((k, _), r) in chunk.iter().skip(1).zip(rows) {
            self.rows.insert(*k, r);
        }
        Ok(first)
    }
}
