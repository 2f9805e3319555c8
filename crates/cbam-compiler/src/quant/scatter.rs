//! Recognising the channel scatter `cbam prune` inserts before a residual Add.
//!
//! A pruned branch computes `K` of a block's `N` channels; before the Add it is widened back
//! to `N` by a 1x1 Conv whose weight is a 0/1 selection matrix. The core's ADD does the same
//! widening for free from a kept-channel list (FORMAT.md, ADD "Scatter"), so the lowering
//! folds such a conv into the Add instead of running a `K*N*H*W` conv on the device. The
//! conv is recognised from its weights, not its name, so any exporter's equivalent works.

use crate::ir::{Activation, Conv};

/// The kept-channel list of `conv` when it only copies each of its `K` input channels to a
/// distinct output channel, in increasing order, and leaves the other outputs zero.
///
/// `kept[k]` is the output channel input `k` lands in. `None` for any other conv, including
/// a selection that reorders channels (the core's kept list must be strictly increasing).
pub fn selection_kept(conv: &Conv) -> Option<Vec<u16>> {
    let pointwise = conv.kernel == [1, 1]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.pads == [0; 4]
        && conv.groups == 1
        && conv.act == Activation::None;
    let (n, k) = (conv.out_c, conv.in_c);
    if !pointwise
        || k == 0
        || k > n
        || n > usize::from(u16::MAX)
        || conv.weight.len() != n * k
        || conv.bias.iter().any(|b| *b != 0.0)
    {
        return None;
    }
    let mut kept = Vec::with_capacity(k);
    for input in 0..k {
        let mut target = None;
        for output in 0..n {
            match conv.weight.get(output * k + input).copied() {
                Some(0.0) => {}
                Some(1.0) if target.is_none() => target = Some(output),
                _ => return None,
            }
        }
        let output = u16::try_from(target?).ok()?;
        // Strictly increasing also means no output channel receives two inputs.
        if kept.last().is_some_and(|last| *last >= output) {
            return None;
        }
        kept.push(output);
    }
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointwise(out_c: usize, in_c: usize, weight: Vec<f32>) -> Conv {
        Conv {
            weight,
            bias: Vec::new(),
            out_c,
            in_c,
            kernel: [1, 1],
            stride: [1, 1],
            dilation: [1, 1],
            pads: [0; 4],
            groups: 1,
            act: Activation::None,
        }
    }

    /// `[n][k]` selection weights putting input `k` in output `kept[k]`.
    fn selection(n: usize, kept: &[usize]) -> Vec<f32> {
        let k = kept.len();
        let mut w = vec![0.0; n * k];
        for (input, output) in kept.iter().enumerate() {
            w[output * k + input] = 1.0;
        }
        w
    }

    #[test]
    fn a_zero_one_selection_yields_its_kept_list() {
        let conv = pointwise(5, 3, selection(5, &[0, 2, 4]));
        assert_eq!(selection_kept(&conv), Some(vec![0, 2, 4]));
        let mut with_zero_bias = conv;
        with_zero_bias.bias = vec![0.0; 5];
        assert_eq!(selection_kept(&with_zero_bias), Some(vec![0, 2, 4]));
    }

    #[test]
    fn anything_but_an_increasing_pure_selection_is_not_a_scatter() {
        let good = pointwise(4, 2, selection(4, &[1, 3]));
        let reordered = pointwise(4, 2, selection(4, &[3, 1]));
        let mut scaled = good.clone();
        scaled.weight[2] = 0.5;
        let mut two_targets = good.clone();
        two_targets.weight[0] = 1.0;
        let mut biased = good.clone();
        biased.bias = vec![0.0, 0.1, 0.0, 0.0];
        let mut activated = good.clone();
        activated.act = Activation::Relu;
        let mut wide = good.clone();
        wide.kernel = [3, 3];
        let mut strided = good.clone();
        strided.stride = [2, 2];
        let dropped_input = pointwise(4, 2, vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        let narrowing = pointwise(2, 4, selection(2, &[0, 1]).repeat(2));
        for (what, conv) in [
            ("reordered", reordered),
            ("scaled", scaled),
            ("two targets", two_targets),
            ("biased", biased),
            ("activated", activated),
            ("3x3", wide),
            ("strided", strided),
            ("dropped input", dropped_input),
            ("narrowing", narrowing),
        ] {
            assert_eq!(selection_kept(&conv), None, "{what}");
        }
        assert_eq!(selection_kept(&good), Some(vec![1, 3]));
    }
}
