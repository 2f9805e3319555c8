//! Per-output-channel means of a conv's or linear layer's output *before* its activation,
//! over many images, without computing the layer.
//!
//! The layer is linear, so its mean output is `b[o] + sum_{i,t} w[o][i][t] * S[i][t] / n`,
//! where `S[i][t]` sums input channel `i` under kernel tap `t` over every output position
//! (padding contributes nothing) and every image. Accumulating `S` costs one pass over the
//! input per tap; the weights are applied once at the end. Bias correction compares these
//! means for the float layer and for its int8 version.

/// Where a conv's kernel reads its input: everything but the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Input `[c, h, w]`.
    pub input: [usize; 3],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

impl Geometry {
    /// A fully connected layer over `n` inputs: a 1x1 "conv" over an `n x 1 x 1` map.
    pub fn dense(n: usize) -> Geometry {
        Geometry {
            input: [n, 1, 1],
            kernel: [1, 1],
            stride: [1, 1],
            dilation: [1, 1],
            pads: [0; 4],
        }
    }

    pub fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// Output `(height, width)`; zero when the kernel does not fit.
    pub fn output_hw(&self) -> (usize, usize) {
        let dim = |size: usize, pad: usize, k: usize, s: usize, d: usize| {
            let span = d * (k.max(1) - 1) + 1;
            (size + pad)
                .checked_sub(span)
                .map_or(0, |room| room / s.max(1) + 1)
        };
        let [_, h, w] = self.input;
        let [top, left, bottom, right] = self.pads;
        (
            dim(
                h,
                top + bottom,
                self.kernel[0],
                self.stride[0],
                self.dilation[0],
            ),
            dim(
                w,
                left + right,
                self.kernel[1],
                self.stride[1],
                self.dilation[1],
            ),
        )
    }
}

/// Running tap sums `S[i][t]` of one layer's input over several images.
#[derive(Debug, Clone, PartialEq)]
pub struct TapSums {
    geometry: Geometry,
    sums: Vec<f64>,
    /// Output positions summed so far (positions per image times images).
    positions: u64,
}

impl TapSums {
    pub fn new(geometry: Geometry) -> TapSums {
        TapSums {
            geometry,
            sums: vec![0.0; geometry.input[0] * geometry.taps()],
            positions: 0,
        }
    }

    /// Adds one image; `value(c, y, x)` reads the input's real value.
    pub fn add(&mut self, value: impl Fn(usize, usize, usize) -> f64) {
        let g = self.geometry;
        let (oh, ow) = g.output_hw();
        let [c, h, w] = g.input;
        let [kh, kw] = g.kernel;
        for ch in 0..c {
            for ky in 0..kh {
                for kx in 0..kw {
                    let mut sum = 0.0;
                    for oy in 0..oh {
                        let Some(y) =
                            (oy * g.stride[0] + ky * g.dilation[0]).checked_sub(g.pads[0])
                        else {
                            continue;
                        };
                        if y >= h {
                            continue;
                        }
                        for ox in 0..ow {
                            let Some(x) =
                                (ox * g.stride[1] + kx * g.dilation[1]).checked_sub(g.pads[1])
                            else {
                                continue;
                            };
                            if x < w {
                                sum += value(ch, y, x);
                            }
                        }
                    }
                    if let Some(s) = self.sums.get_mut((ch * kh + ky) * kw + kx) {
                        *s += sum;
                    }
                }
            }
        }
        self.positions += (oh * ow) as u64;
    }

    /// Mean output of `out_c` channels in `groups` groups; `weight(o, j, t)` is the real
    /// weight of output `o` on the `j`-th input channel of its group at tap `t`.
    pub fn output_means(
        &self,
        out_c: usize,
        groups: usize,
        bias: impl Fn(usize) -> f64,
        weight: impl Fn(usize, usize, usize) -> f64,
    ) -> Vec<f64> {
        let groups = groups.max(1);
        let in_per_group = self.geometry.input[0] / groups;
        let out_per_group = (out_c / groups).max(1);
        let taps = self.geometry.taps();
        let n = self.positions.max(1) as f64;
        (0..out_c)
            .map(|o| {
                let first_in = (o / out_per_group) * in_per_group;
                let mut acc = 0.0;
                for j in 0..in_per_group {
                    for t in 0..taps {
                        let s = self.sums.get((first_in + j) * taps + t).copied();
                        acc += weight(o, j, t) * s.unwrap_or(0.0);
                    }
                }
                bias(o) + acc / n
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A direct convolution, for checking the tap-sum shortcut against.
    fn direct_means(
        g: Geometry,
        images: &[Vec<f64>],
        w: &[f64],
        b: &[f64],
        out_c: usize,
    ) -> Vec<f64> {
        let (oh, ow) = g.output_hw();
        let [c, h, wd] = g.input;
        let [kh, kw] = g.kernel;
        let mut means = vec![0.0; out_c];
        for img in images {
            for (o, m) in means.iter_mut().enumerate() {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b[o];
                        for i in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let y = (oy * g.stride[0] + ky * g.dilation[0]) as isize
                                        - g.pads[0] as isize;
                                    let x = (ox * g.stride[1] + kx * g.dilation[1]) as isize
                                        - g.pads[1] as isize;
                                    if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < wd {
                                        acc += w[((o * c + i) * kh + ky) * kw + kx]
                                            * img[(i * h + y as usize) * wd + x as usize];
                                    }
                                }
                            }
                        }
                        *m += acc;
                    }
                }
            }
        }
        let n = (images.len() * oh * ow) as f64;
        means.iter().map(|m| m / n).collect()
    }

    fn values(n: usize, seed: u64) -> Vec<f64> {
        crate::quant::testing::weights(n, seed, 1.0)
            .into_iter()
            .map(f64::from)
            .collect()
    }

    #[test]
    fn tap_sums_match_a_direct_convolution() {
        let g = Geometry {
            input: [3, 7, 6],
            kernel: [3, 2],
            stride: [2, 1],
            dilation: [1, 2],
            pads: [1, 2, 1, 0],
        };
        let (out_c, taps) = (4, 6);
        let w = values(out_c * 3 * taps, 1);
        let b = values(out_c, 2);
        let images: Vec<Vec<f64>> = (0..3).map(|s| values(3 * 7 * 6, 10 + s)).collect();
        let mut sums = TapSums::new(g);
        for img in &images {
            sums.add(|c, y, x| img[(c * 7 + y) * 6 + x]);
        }
        let fast = sums.output_means(out_c, 1, |o| b[o], |o, j, t| w[(o * 3 + j) * taps + t]);
        let slow = direct_means(g, &images, &w, &b, out_c);
        for (f, s) in fast.iter().zip(&slow) {
            assert!((f - s).abs() < 1e-9, "{fast:?} vs {slow:?}");
        }
    }

    #[test]
    fn depthwise_groups_read_their_own_channel() {
        let g = Geometry {
            input: [2, 1, 1],
            ..Geometry::dense(2)
        };
        let mut sums = TapSums::new(g);
        sums.add(|c, _, _| if c == 0 { 1.0 } else { 10.0 });
        // Two outputs per input channel: outputs 0,1 read channel 0, outputs 2,3 channel 1.
        let means = sums.output_means(4, 2, |_| 0.5, |o, _, _| o as f64);
        assert_eq!(means, vec![0.5, 1.5, 20.5, 30.5]);
    }

    #[test]
    fn dense_layer_mean_is_weights_times_mean_input() {
        let mut sums = TapSums::new(Geometry::dense(2));
        sums.add(|c, _, _| [1.0, 2.0][c]);
        sums.add(|c, _, _| [3.0, 6.0][c]);
        let means = sums.output_means(1, 1, |_| 1.0, |_, j, _| [2.0, -1.0][j]);
        // mean input (2, 4): 1 + 2*2 - 4 = 1.
        assert_eq!(means, vec![1.0]);
    }
}
