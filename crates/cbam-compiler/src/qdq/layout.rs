//! The core's weight layouts back to ONNX's, so the QDQ model carries the blob's very
//! int8 weights rather than a second quantization of the float ones.

/// `[o][taps][i]` (OHWI) -> `[o][i][taps]` (OIHW).
pub fn ohwi_to_oihw(w: &[i8], out_c: usize, in_c: usize, taps: usize) -> Vec<i8> {
    let mut out = vec![0i8; w.len()];
    for o in 0..out_c {
        for t in 0..taps {
            for i in 0..in_c {
                let (from, to) = ((o * taps + t) * in_c + i, (o * in_c + i) * taps + t);
                if let (Some(v), Some(slot)) = (w.get(from), out.get_mut(to)) {
                    *slot = *v;
                }
            }
        }
    }
    out
}

/// Depthwise `[taps][o]` (TFLite's 1HWO) -> `[o][1][taps]`.
pub fn hwo_to_oihw(w: &[i8], out_c: usize, taps: usize) -> Vec<i8> {
    let mut out = vec![0i8; w.len()];
    for t in 0..taps {
        for o in 0..out_c {
            if let (Some(v), Some(slot)) = (w.get(t * out_c + o), out.get_mut(o * taps + t)) {
                *slot = *v;
            }
        }
    }
    out
}

/// Fully-connected columns from the core's NHWC flattening back to ONNX's NCHW one.
pub fn nhwc_columns_to_nchw(w: &[i8], rows: usize, [h, wd, c]: [usize; 3]) -> Vec<i8> {
    let n_in = c * h * wd;
    let mut out = vec![0i8; w.len()];
    for r in 0..rows {
        for y in 0..h {
            for x in 0..wd {
                for ch in 0..c {
                    let from = r * n_in + (y * wd + x) * c + ch;
                    let to = r * n_in + (ch * h + y) * wd + x;
                    if let (Some(v), Some(slot)) = (w.get(from), out.get_mut(to)) {
                        *slot = *v;
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ohwi_goes_back_to_oihw() {
        // 2 outputs, 3 inputs, 2 taps: OIHW value = 100*o + 10*i + t.
        let oihw: Vec<i8> = (0..2)
            .flat_map(|o| (0..3).flat_map(move |i| (0..2).map(move |t| 100 * o + 10 * i + t)))
            .map(|v: i32| v as i8)
            .collect();
        let ohwi: Vec<i8> = (0..2)
            .flat_map(|o| (0..2).flat_map(move |t| (0..3).map(move |i| 100 * o + 10 * i + t)))
            .map(|v: i32| v as i8)
            .collect();
        assert_eq!(ohwi_to_oihw(&ohwi, 2, 3, 2), oihw);
    }

    #[test]
    fn depthwise_and_fc_layouts_invert() {
        // Depthwise, 3 channels x 2 taps stored [t][o].
        assert_eq!(
            hwo_to_oihw(&[1, 2, 3, 4, 5, 6], 3, 2),
            vec![1, 4, 2, 5, 3, 6]
        );
        // One row over h=1, w=2, c=2: NHWC (y,x,c) order [x0c0, x0c1, x1c0, x1c1].
        assert_eq!(
            nhwc_columns_to_nchw(&[1, 2, 3, 4], 1, [1, 2, 2]),
            vec![1, 3, 2, 4]
        );
    }
}
