//! MAX_POOL2D (op 4) and AVG_POOL2D (op 5): same quantization in and out, padding never
//! counted (ONNX `count_include_pad=0`), averages rounded half away from zero as TFLite.

use super::backend::{Active, Backend};
use super::{check_len, PoolKind, PoolParams, Shape};
use crate::error::Error;
use crate::math::div_round_half_away;

/// The rows (or columns) of the input a window starting at padded coordinate `start` covers.
pub(crate) fn window(start: usize, k: usize, pad: usize, size: usize) -> (usize, usize) {
    let lo = start.max(pad) - pad;
    let hi = (start + k).min(pad + size).saturating_sub(pad);
    (lo.min(size), hi.max(lo).min(size))
}

/// Runs MAX_POOL2D or AVG_POOL2D over NHWC int8 (no scratch).
pub fn pool2d(
    kind: PoolKind,
    p: &PoolParams,
    in_shape: Shape,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) -> Result<(), Error> {
    let g = &p.geometry;
    if g.dil_h != 1
        || g.dil_w != 1
        || g.output_size(in_shape.h, in_shape.w) != Some((out_shape.h, out_shape.w))
        || in_shape.c != out_shape.c
    {
        return Err(Error::SliceLength {
            what: "pool output shape vs geometry",
        });
    }
    check_len(input.len(), in_shape.len(), "pool input")?;
    check_len(output.len(), out_shape.len(), "pool output")?;
    let c = in_shape.c;
    if c == 0 {
        return Ok(());
    }
    if Active::pool2d(kind, p, in_shape, input, out_shape, output) {
        return Ok(());
    }
    let mut out_pixels = output.chunks_exact_mut(c);
    for oy in 0..out_shape.h {
        let (y0, y1) = window(oy * g.stride_h, g.kh, g.pad_top, in_shape.h);
        for ox in 0..out_shape.w {
            let (x0, x1) = window(ox * g.stride_w, g.kw, g.pad_left, in_shape.w);
            let Some(out_px) = out_pixels.next() else {
                return Ok(());
            };
            let count = (y1 - y0) * (x1 - x0);
            for (ch, out) in out_px.iter_mut().enumerate() {
                let values =
                    (y0..y1).flat_map(|y| (x0..x1).map(move |x| (y * in_shape.w + x) * c + ch));
                let reduced = match kind {
                    PoolKind::Max => values
                        .map(|i| i32::from(input[i]))
                        .max()
                        .unwrap_or(i32::from(i8::MIN)),
                    PoolKind::Average => {
                        let sum = values.fold(0i32, |s, i| s.wrapping_add(i32::from(input[i])));
                        div_round_half_away(sum, i32::try_from(count).unwrap_or(i32::MAX))
                    }
                };
                *out = p.act.apply(reduced);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::*;
    use crate::kernels::ConvGeometry;
    use crate::math::ActRange;

    #[test]
    fn matches_reference_on_random_shapes() {
        let mut rng = Rng::new(0x9001);
        for case in 0..400 {
            let kind = if case % 2 == 0 {
                PoolKind::Max
            } else {
                PoolKind::Average
            };
            let (kh, kw) = (rng.range(1, 5), rng.range(1, 5));
            let g = ConvGeometry {
                kh,
                kw,
                stride_h: rng.range(1, 4),
                stride_w: rng.range(1, 4),
                dil_h: 1,
                dil_w: 1,
                pad_top: rng.range(0, kh),
                pad_left: rng.range(0, kw),
                pad_bottom: rng.range(0, kh),
                pad_right: rng.range(0, kw),
            };
            let ins = Shape::new(rng.range(1, 12), rng.range(1, 12), rng.range(1, 6));
            let Some((oh, ow)) = g.output_size(ins.h, ins.w) else {
                continue;
            };
            let outs = Shape::new(oh, ow, ins.c);
            let act = if rng.bool() {
                ActRange::FULL
            } else {
                ActRange::from_words(rng.int(-128, 0), rng.int(0, 127))
            };
            let input = rng.i8s(ins.len().unwrap());
            let mut output = vec![0i8; outs.len().unwrap()];
            pool2d(
                kind,
                &PoolParams { geometry: g, act },
                ins,
                &input,
                outs,
                &mut output,
            )
            .unwrap();

            let mut expected = Vec::new();
            for oy in 0..oh as i64 {
                for ox in 0..ow as i64 {
                    for ch in 0..ins.c {
                        let mut vals = Vec::new();
                        for ky in 0..kh as i64 {
                            for kx in 0..kw as i64 {
                                let iy = oy * g.stride_h as i64 + ky - g.pad_top as i64;
                                let ix = ox * g.stride_w as i64 + kx - g.pad_left as i64;
                                if iy >= 0 && ix >= 0 && iy < ins.h as i64 && ix < ins.w as i64 {
                                    vals.push(f64::from(
                                        input[(iy as usize * ins.w + ix as usize) * ins.c + ch],
                                    ));
                                }
                            }
                        }
                        let v = match kind {
                            PoolKind::Max => vals.iter().cloned().fold(-128.0, f64::max),
                            PoolKind::Average => {
                                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                                mean.signum() * (mean.abs() + 0.5).floor()
                            }
                        };
                        expected.push((v as i32).clamp(act.min.into(), act.max.into()) as i8);
                    }
                }
            }
            assert_eq!(output, expected, "{kind:?} {g:?} {ins:?}");
        }
    }
}
