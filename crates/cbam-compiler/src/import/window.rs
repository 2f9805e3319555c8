//! Sliding-window geometry shared by Conv and the pools: kernel, strides, dilations and
//! padding (explicit or `auto_pad`), and the output size they give.

use super::attrs;
use super::builder::NodeCtx;
use super::ImportError;
use crate::limits::MAX_WINDOW;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub out_hw: [usize; 2],
}

fn pair(n: &NodeCtx, name: &str, default: usize) -> Result<[usize; 2], ImportError> {
    match attrs::ints(n.proto, name) {
        None => Ok([default; 2]),
        Some(v) => match v.as_slice() {
            [a, b] if in_window(*a, 1) && in_window(*b, 1) => Ok([*a as usize, *b as usize]),
            _ => Err(n.unsupported(format!(
                "{name} {v:?}: only 2-D windows with sizes 1..={MAX_WINDOW} are supported"
            ))),
        },
    }
}

fn in_window(v: i64, lo: i64) -> bool {
    v >= lo && v as u64 <= MAX_WINDOW
}

/// Reads the window attributes of `n` applied to an input of spatial size `in_hw`.
/// `kernel` comes from the weights for Conv and from `kernel_shape` for pools.
pub(crate) fn read(
    n: &NodeCtx,
    in_hw: [usize; 2],
    kernel: [usize; 2],
) -> Result<Window, ImportError> {
    if kernel.iter().any(|&k| !in_window(k as i64, 1)) {
        return Err(n.unsupported(format!(
            "kernel {kernel:?}: only sizes 1..={MAX_WINDOW} are supported"
        )));
    }
    let stride = pair(n, "strides", 1)?;
    let dilation = pair(n, "dilations", 1)?;
    let ceil = attrs::int(n.proto, "ceil_mode").unwrap_or(0) != 0;
    let auto_pad = attrs::string(n.proto, "auto_pad").unwrap_or_else(|| "NOTSET".to_string());
    // Every factor is at most MAX_WINDOW (2^16) or a tensor size (2^28): no overflow.
    let span = |i: usize| dilation[i] * (kernel[i] - 1) + 1;
    let pads = match auto_pad.as_str() {
        "NOTSET" => match attrs::ints(n.proto, "pads") {
            None => [0; 4],
            Some(p) => match p.as_slice() {
                [t, l, b, r] if p.iter().all(|&x| in_window(x, 0)) => {
                    [*t as usize, *l as usize, *b as usize, *r as usize]
                }
                _ => {
                    return Err(
                        n.unsupported(format!("pads {p:?}: expected 4 values in 0..={MAX_WINDOW}"))
                    )
                }
            },
        },
        "VALID" => [0; 4],
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = [0; 4];
            for i in 0..2 {
                let out = in_hw[i].div_ceil(stride[i]);
                let total = ((out.max(1) - 1) * stride[i] + span(i)).saturating_sub(in_hw[i]);
                let (small, big) = (total / 2, total - total / 2);
                let (begin, end) = if auto_pad == "SAME_UPPER" {
                    (small, big)
                } else {
                    (big, small)
                };
                pads[i] = begin;
                pads[i + 2] = end;
            }
            pads
        }
        other => return Err(n.unsupported(format!("auto_pad {other:?} is not an ONNX value"))),
    };
    let mut out_hw = [0; 2];
    for i in 0..2 {
        let padded = in_hw[i] + pads[i] + pads[i + 2];
        if padded < span(i) {
            return Err(n.bad(format!(
                "kernel extent {} is larger than the padded input {padded}",
                span(i)
            )));
        }
        let steps = padded - span(i);
        let floor = steps / stride[i] + 1;
        let ceiled = steps.div_ceil(stride[i]) + 1;
        if ceil && ceiled != floor {
            return Err(n.unsupported(
                "ceil_mode=1 adds a partial window here; export with ceil_mode=False or pad the input",
            ));
        }
        out_hw[i] = floor;
    }
    Ok(Window {
        kernel,
        stride,
        dilation,
        pads,
        out_hw,
    })
}
