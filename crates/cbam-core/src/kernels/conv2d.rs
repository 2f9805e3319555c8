//! CONV2D (op 1): any kernel size, stride, dilation and explicit padding, NHWC, OHWI weights.
//!
//! [`conv2d`] is the wrapper callers use: it picks the pointwise path for 1x1 stride-1
//! unpadded convolutions and the general path otherwise. An architecture-specific fast path
//! (e.g. Cortex-M4 SMLAD) belongs beside these two and is chosen here, in one place.

use super::{check_len, dot_with_offset, ChannelQuant, Shape};
use crate::error::Error;
use crate::math::requantize_to_i8;

/// Kernel window, stride, dilation and explicit padding (shared with depthwise and pools).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub kh: usize,
    pub kw: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dil_h: usize,
    pub dil_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
}

impl ConvGeometry {
    /// A `k x k` window, stride 1, no dilation, `pad` on every side.
    pub const fn square(k: usize, pad: usize) -> Self {
        Self {
            kh: k,
            kw: k,
            stride_h: 1,
            stride_w: 1,
            dil_h: 1,
            dil_w: 1,
            pad_top: pad,
            pad_left: pad,
            pad_bottom: pad,
            pad_right: pad,
        }
    }

    /// The output `(h, w)` for an input `(in_h, in_w)`, or `None` when it would be empty,
    /// a stride/dilation/kernel is zero, or the arithmetic overflows.
    pub fn output_size(&self, in_h: usize, in_w: usize) -> Option<(usize, usize)> {
        let h = axis_out(
            in_h,
            self.kh,
            self.stride_h,
            self.dil_h,
            self.pad_top,
            self.pad_bottom,
        )?;
        let w = axis_out(
            in_w,
            self.kw,
            self.stride_w,
            self.dil_w,
            self.pad_left,
            self.pad_right,
        )?;
        Some((h, w))
    }

    /// Whether [`conv2d`] takes the pointwise path for this geometry.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.pad_bottom == 0
            && self.pad_right == 0
    }
}

fn axis_out(
    size: usize,
    k: usize,
    stride: usize,
    dil: usize,
    pad_a: usize,
    pad_b: usize,
) -> Option<usize> {
    if k == 0 || stride == 0 || dil == 0 {
        return None;
    }
    let padded = size.checked_add(pad_a)?.checked_add(pad_b)?;
    let span = dil.checked_mul(k - 1)?.checked_add(1)?;
    let room = padded.checked_sub(span)?;
    Some(room / stride + 1)
}

/// Maps a padded-space coordinate to an input row/column, or `None` inside the padding.
#[inline]
pub(crate) fn unpad(padded: usize, pad: usize, size: usize) -> Option<usize> {
    padded.checked_sub(pad).filter(|&i| i < size)
}

/// Parameters of a CONV2D op.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dParams<'a> {
    pub geometry: ConvGeometry,
    /// `[out.c][kh][kw][in.c]`.
    pub weights: &'a [i8],
    pub quant: ChannelQuant<'a>,
}

/// Scratch bytes [`conv2d`] needs: none, for both the general and the pointwise path.
pub const fn conv2d_scratch_size() -> usize {
    0
}

/// Checks every slice against the shapes; afterwards all indexing is in bounds.
fn check(
    p: &Conv2dParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &[i8],
) -> Result<(), Error> {
    let g = &p.geometry;
    if g.output_size(in_shape.h, in_shape.w) != Some((out_shape.h, out_shape.w)) {
        return Err(Error::SliceLength {
            what: "conv2d output shape vs geometry",
        });
    }
    check_len(input.len(), in_shape.len(), "conv2d input")?;
    check_len(output.len(), out_shape.len(), "conv2d output")?;
    let per_out =
        g.kh.checked_mul(g.kw)
            .and_then(|k| k.checked_mul(in_shape.c));
    check_len(
        p.weights.len(),
        per_out.and_then(|n| n.checked_mul(out_shape.c)),
        "conv2d weights",
    )?;
    p.quant.check(out_shape.c)
}

/// Runs CONV2D, choosing the fastest bit-exact path for the geometry.
pub fn conv2d(
    p: &Conv2dParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> Result<(), Error> {
    check(p, in_shape, input, out_shape, output)?;
    if in_shape.c == 0 || out_shape.c == 0 {
        return Ok(());
    }
    if p.geometry.is_pointwise() {
        pointwise(p, in_shape.c, input, out_shape.c, output);
    } else {
        general(p, in_shape, input, out_shape, output);
    }
    Ok(())
}

/// 1x1, stride 1, unpadded: every output pixel is a matrix-vector product of one input pixel.
fn pointwise(p: &Conv2dParams, in_c: usize, input: &[i8], out_c: usize, output: &mut [i8]) {
    let q = &p.quant;
    for (in_px, out_px) in input.chunks_exact(in_c).zip(output.chunks_exact_mut(out_c)) {
        for ((out, w), (bias, rq)) in out_px
            .iter_mut()
            .zip(p.weights.chunks_exact(in_c))
            .zip(q.channels())
        {
            let acc = bias.wrapping_add(dot_with_offset(in_px, w, -q.in_zp));
            *out = requantize_to_i8(acc, rq, q.out_zp, q.act);
        }
    }
}

/// The taps `k` of one window axis whose input coordinate `start + k * dil - pad` lies in
/// `0..size`, as a half-open range (contiguous because the coordinate grows with `k`).
fn valid_taps(start: usize, k: usize, dil: usize, pad: usize, size: usize) -> (usize, usize) {
    // First tap at or past the padding: ceil((pad - start) / dil).
    let lo = pad.saturating_sub(start).div_ceil(dil).min(k);
    // Taps with start + k*dil < pad + size.
    let hi = (pad + size).saturating_sub(start).div_ceil(dil).min(k);
    (lo, hi.max(lo))
}

fn general(p: &Conv2dParams, in_shape: Shape, input: &[i8], out_shape: Shape, output: &mut [i8]) {
    let g = &p.geometry;
    let q = &p.quant;
    let in_c = in_shape.c;
    let per_out = g.kh * g.kw * in_c;
    let mut out_pixels = output.chunks_exact_mut(out_shape.c);
    for oy in 0..out_shape.h {
        let y0 = oy * g.stride_h;
        let (ky_lo, ky_hi) = valid_taps(y0, g.kh, g.dil_h, g.pad_top, in_shape.h);
        for ox in 0..out_shape.w {
            let x0 = ox * g.stride_w;
            let (kx_lo, kx_hi) = valid_taps(x0, g.kw, g.dil_w, g.pad_left, in_shape.w);
            let Some(out_px) = out_pixels.next() else {
                return;
            };
            // Without dilation the valid taps of a row are adjacent in both the input row
            // and the weights, so they form one dot product.
            let run = if g.dil_w == 1 {
                (kx_hi - kx_lo) * in_c
            } else {
                in_c
            };
            let step = if g.dil_w == 1 {
                kx_hi.max(kx_lo + 1) - kx_lo
            } else {
                1
            };
            for ((out, w_o), (bias, rq)) in out_px
                .iter_mut()
                .zip(p.weights.chunks_exact(per_out))
                .zip(q.channels())
            {
                let mut acc = bias;
                for ky in ky_lo..ky_hi {
                    let iy = y0 + ky * g.dil_h - g.pad_top;
                    for kx in (kx_lo..kx_hi).step_by(step) {
                        let ix = x0 + kx * g.dil_w - g.pad_left;
                        let x = &input[(iy * in_shape.w + ix) * in_c..][..run];
                        let w = &w_o[(ky * g.kw + kx) * in_c..][..run];
                        acc = acc.wrapping_add(dot_with_offset(x, w, -q.in_zp));
                    }
                }
                *out = requantize_to_i8(acc, rq, q.out_zp, q.act);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::*;

    /// Straightforward i64 reference with signed coordinates.
    fn reference(
        g: &ConvGeometry,
        qt: &QuantData,
        ins: Shape,
        input: &[i8],
        outs: Shape,
        weights: &[i8],
    ) -> Vec<i8> {
        let mut out = Vec::new();
        for oy in 0..outs.h as i64 {
            for ox in 0..outs.w as i64 {
                for o in 0..outs.c {
                    let mut acc = i64::from(qt.bias[o]);
                    for ky in 0..g.kh as i64 {
                        for kx in 0..g.kw as i64 {
                            let iy =
                                oy * g.stride_h as i64 + ky * g.dil_h as i64 - g.pad_top as i64;
                            let ix =
                                ox * g.stride_w as i64 + kx * g.dil_w as i64 - g.pad_left as i64;
                            if iy < 0 || ix < 0 || iy >= ins.h as i64 || ix >= ins.w as i64 {
                                continue;
                            }
                            for i in 0..ins.c {
                                let x = i64::from(
                                    input[((iy as usize * ins.w) + ix as usize) * ins.c + i],
                                );
                                let w = i64::from(
                                    weights[((o * g.kh + ky as usize) * g.kw + kx as usize)
                                        * ins.c
                                        + i],
                                );
                                acc += w * (x - i64::from(qt.in_zp));
                            }
                        }
                    }
                    out.push(qt.finish(o, acc));
                }
            }
        }
        out
    }

    fn run_case(rng: &mut Rng, pointwise: bool) {
        let g = if pointwise {
            ConvGeometry::square(1, 0)
        } else {
            ConvGeometry {
                kh: rng.range(1, 5),
                kw: rng.range(1, 5),
                stride_h: rng.range(1, 3),
                stride_w: rng.range(1, 3),
                dil_h: rng.range(1, 3),
                dil_w: rng.range(1, 3),
                pad_top: rng.range(0, 3),
                pad_left: rng.range(0, 3),
                pad_bottom: rng.range(0, 3),
                pad_right: rng.range(0, 3),
            }
        };
        let ins = Shape::new(rng.range(1, 10), rng.range(1, 10), rng.range(1, 9));
        let Some((oh, ow)) = g.output_size(ins.h, ins.w) else {
            return;
        };
        let outs = Shape::new(oh, ow, rng.range(1, 9));
        let input = rng.i8s(ins.len().unwrap());
        let weights = rng.i8s(outs.c * g.kh * g.kw * ins.c);
        let qt = QuantData::random(rng, outs.c);
        let bytes = qt.bytes();
        let p = Conv2dParams {
            geometry: g,
            weights: &weights,
            quant: qt.channel_quant(&bytes),
        };
        let mut output = vec![0i8; outs.len().unwrap()];
        conv2d(&p, ins, &input, outs, &mut output).unwrap();
        assert_eq!(
            output,
            reference(&g, &qt, ins, &input, outs, &weights),
            "{g:?} {ins:?} {outs:?}"
        );
    }

    #[test]
    fn general_matches_reference_on_random_shapes() {
        let mut rng = Rng::new(0xC0417);
        for _ in 0..300 {
            run_case(&mut rng, false);
        }
    }

    #[test]
    fn pointwise_matches_reference() {
        let mut rng = Rng::new(0x1A1);
        for _ in 0..100 {
            run_case(&mut rng, true);
        }
    }

    #[test]
    fn rejects_inconsistent_slices() {
        let qt = QuantData::random(&mut Rng::new(1), 2);
        let bytes = qt.bytes();
        let w = [0i8; 2 * 9];
        let p = Conv2dParams {
            geometry: ConvGeometry::square(3, 1),
            weights: &w,
            quant: qt.channel_quant(&bytes),
        };
        let mut out = [0i8; 16 * 2];
        assert!(conv2d(
            &p,
            Shape::new(4, 4, 1),
            &[0; 16],
            Shape::new(4, 4, 2),
            &mut out
        )
        .is_ok());
        assert!(conv2d(
            &p,
            Shape::new(4, 4, 1),
            &[0; 15],
            Shape::new(4, 4, 2),
            &mut out
        )
        .is_err());
        assert!(conv2d(
            &p,
            Shape::new(4, 4, 1),
            &[0; 16],
            Shape::new(3, 4, 2),
            &mut out
        )
        .is_err());
        assert!(conv2d(
            &p,
            Shape::new(4, 4, 2),
            &[0; 32],
            Shape::new(4, 4, 2),
            &mut out
        )
        .is_err());
    }
}
