//! DEPTHWISE_CONV2D (op 2): each output channel `o` filters input channel `o / multiplier`.

use super::conv2d::{unpad, ConvGeometry};
use super::{check_len, ChannelQuant, Shape};
use crate::error::Error;
use crate::math::requantize_to_i8;

/// Parameters of a DEPTHWISE_CONV2D op.
#[derive(Clone, Copy, Debug)]
pub struct DepthwiseParams<'a> {
    pub geometry: ConvGeometry,
    pub depth_multiplier: usize,
    /// `[kh][kw][out.c]` (TFLite's 1HWO).
    pub weights: &'a [i8],
    pub quant: ChannelQuant<'a>,
}

fn check(
    p: &DepthwiseParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &[i8],
) -> Result<(), Error> {
    let g = &p.geometry;
    if g.output_size(in_shape.h, in_shape.w) != Some((out_shape.h, out_shape.w))
        || in_shape.c.checked_mul(p.depth_multiplier) != Some(out_shape.c)
    {
        return Err(Error::SliceLength {
            what: "depthwise output shape vs geometry",
        });
    }
    check_len(input.len(), in_shape.len(), "depthwise input")?;
    check_len(output.len(), out_shape.len(), "depthwise output")?;
    let wlen =
        g.kh.checked_mul(g.kw)
            .and_then(|k| k.checked_mul(out_shape.c));
    check_len(p.weights.len(), wlen, "depthwise weights")?;
    p.quant.check(out_shape.c)
}

/// Runs DEPTHWISE_CONV2D (no scratch).
pub fn depthwise_conv2d(
    p: &DepthwiseParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> Result<(), Error> {
    check(p, in_shape, input, out_shape, output)?;
    if out_shape.c == 0 {
        return Ok(());
    }
    let g = &p.geometry;
    let q = &p.quant;
    let (in_c, out_c, dm) = (in_shape.c, out_shape.c, p.depth_multiplier);
    let mut out_pixels = output.chunks_exact_mut(out_c);
    for oy in 0..out_shape.h {
        for ox in 0..out_shape.w {
            let Some(out_px) = out_pixels.next() else {
                return Ok(());
            };
            for (o, (out, (bias, rq))) in out_px.iter_mut().zip(q.channels()).enumerate() {
                let ic = o / dm;
                let mut acc = bias;
                for ky in 0..g.kh {
                    let Some(iy) = unpad(oy * g.stride_h + ky * g.dil_h, g.pad_top, in_shape.h)
                    else {
                        continue;
                    };
                    for kx in 0..g.kw {
                        let Some(ix) =
                            unpad(ox * g.stride_w + kx * g.dil_w, g.pad_left, in_shape.w)
                        else {
                            continue;
                        };
                        let x = i32::from(input[(iy * in_shape.w + ix) * in_c + ic]);
                        let w = i32::from(p.weights[(ky * g.kw + kx) * out_c + o]);
                        acc = acc.wrapping_add(x.wrapping_sub(q.in_zp).wrapping_mul(w));
                    }
                }
                *out = requantize_to_i8(acc, rq, q.out_zp, q.act);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::*;

    #[test]
    fn matches_reference_on_random_shapes() {
        let mut rng = Rng::new(0xDE9);
        for _ in 0..300 {
            let g = ConvGeometry {
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
            };
            let ins = Shape::new(rng.range(1, 10), rng.range(1, 10), rng.range(1, 7));
            let dm = rng.range(1, 4);
            let Some((oh, ow)) = g.output_size(ins.h, ins.w) else {
                continue;
            };
            let outs = Shape::new(oh, ow, ins.c * dm);
            let input = rng.i8s(ins.len().unwrap());
            let weights = rng.i8s(g.kh * g.kw * outs.c);
            let qt = QuantData::random(&mut rng, outs.c);
            let bytes = qt.bytes();
            let p = DepthwiseParams {
                geometry: g,
                depth_multiplier: dm,
                weights: &weights,
                quant: qt.channel_quant(&bytes),
            };
            let mut output = vec![0i8; outs.len().unwrap()];
            depthwise_conv2d(&p, ins, &input, outs, &mut output).unwrap();

            let mut expected = Vec::new();
            for oy in 0..oh as i64 {
                for ox in 0..ow as i64 {
                    for o in 0..outs.c {
                        let mut acc = i64::from(qt.bias[o]);
                        for ky in 0..g.kh as i64 {
                            for kx in 0..g.kw as i64 {
                                let iy =
                                    oy * g.stride_h as i64 + ky * g.dil_h as i64 - g.pad_top as i64;
                                let ix = ox * g.stride_w as i64 + kx * g.dil_w as i64
                                    - g.pad_left as i64;
                                if iy < 0 || ix < 0 || iy >= ins.h as i64 || ix >= ins.w as i64 {
                                    continue;
                                }
                                let x = i64::from(
                                    input[(iy as usize * ins.w + ix as usize) * ins.c + o / dm],
                                );
                                let w = i64::from(
                                    weights[(ky as usize * g.kw + kx as usize) * outs.c + o],
                                );
                                acc += w * (x - i64::from(qt.in_zp));
                            }
                        }
                        expected.push(qt.finish(o, acc));
                    }
                }
            }
            assert_eq!(output, expected, "{g:?} {ins:?} dm={dm}");
        }
    }
}
