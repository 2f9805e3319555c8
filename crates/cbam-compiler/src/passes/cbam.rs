//! Recognises CBAM blocks and replaces each with one [`Op::Cbam`].
//!
//! Runs after the simplifying passes, so every export style has one form:
//! ```text
//! pa = GlobalAvgPool(F)  pm = GlobalMaxPool(F)          (any pooling spelling)
//! ha = Linear1+ReLU(pa)  hm = Linear1+ReLU(pm)          (1x1 convs already Linear)
//! F' = Mul(F, Sigmoid(Add(Linear2(ha), Linear2(hm))))   (operands in either order)
//! m  = Concat(ChannelMean(F'), ChannelMax(F'))           (either order)
//! F''= Mul(F', Sigmoid(Conv k x k, 2->1 (m)))            (BN already folded)
//! ```
//! Every value inside must have no reader outside the block; `F` may have others
//! (a residual connection).

use super::edit::{name, shape, validate, Index};
use super::PassError;
use crate::ir::{
    Activation, Cbam, CbamValues, Conv, Graph, Linear, Node, Op, SpatialOrder, TensorId,
};

struct Found {
    /// Indices of every node of the block, the final Mul last.
    nodes: Vec<usize>,
    input: TensorId,
    cbam: Cbam,
}

/// The graph and its index, as the matcher reads them.
#[derive(Clone, Copy)]
struct View<'g> {
    g: &'g Graph,
    ix: &'g Index,
}

/// The producer of `t` if `t` has exactly `readers` readers.
fn only_for<'g>(v: View<'g>, t: TensorId, readers: usize) -> Option<(usize, &'g Node)> {
    if v.ix.uses(t) != readers {
        return None;
    }
    let p = v.ix.producer(t)?;
    Some((p, v.g.nodes.get(p)?))
}

fn two_inputs(n: &Node) -> Option<(TensorId, TensorId)> {
    match n.inputs.as_slice() {
        [a, b] => Some((*a, *b)),
        _ => None,
    }
}

/// One MLP application `Linear2(Linear1+ReLU(pool(F)))`.
struct Branch<'g> {
    nodes: [usize; 3],
    pooled: TensorId,
    hidden: TensorId,
    is_max: bool,
    mlp1: &'g Linear,
    mlp2: &'g Linear,
}

fn branch(v: View<'_>, out: TensorId, f: TensorId) -> Option<Branch<'_>> {
    let (i2, n2) = only_for(v, out, 1)?;
    let Op::Linear(mlp2) = &n2.op else {
        return None;
    };
    let hidden = *n2.inputs.first()?;
    let (i1, n1) = only_for(v, hidden, 1)?;
    let Op::Linear(mlp1) = &n1.op else {
        return None;
    };
    let pooled = *n1.inputs.first()?;
    let (ip, np) = only_for(v, pooled, 1)?;
    let is_max = match np.op {
        Op::GlobalAvgPool => false,
        Op::GlobalMaxPool => true,
        _ => return None,
    };
    let plain = mlp1.act == Activation::Relu && mlp2.act == Activation::None;
    (np.inputs.first() == Some(&f) && plain).then_some(Branch {
        nodes: [ip, i1, i2],
        pooled,
        hidden,
        is_max,
        mlp1,
        mlp2,
    })
}

struct Channel<'g> {
    nodes: Vec<usize>,
    f: TensorId,
    avg: Branch<'g>,
    max: Branch<'g>,
    logit: TensorId,
    gate: TensorId,
}

/// `F' = Mul(F, Sigmoid(Add(mlp(avg), mlp(max))))` producing `fp`.
fn channel_gate(v: View<'_>, fp: TensorId) -> Option<Channel<'_>> {
    let im = v.ix.producer(fp)?;
    let mul = v.g.nodes.get(im)?;
    if mul.op != Op::Mul {
        return None;
    }
    let (a, b) = two_inputs(mul)?;
    [(a, b), (b, a)].into_iter().find_map(|(f, gate)| {
        let (is, sig) = only_for(v, gate, 1)?;
        if sig.op != Op::Sigmoid {
            return None;
        }
        let logit = *sig.inputs.first()?;
        let (ia, add) = only_for(v, logit, 1)?;
        if add.op
            != (Op::Add {
                act: Activation::None,
            })
        {
            return None;
        }
        let (x, y) = two_inputs(add)?;
        let (bx, by) = (branch(v, x, f)?, branch(v, y, f)?);
        let (avg, max) = match (bx.is_max, by.is_max) {
            (false, true) => (bx, by),
            (true, false) => (by, bx),
            _ => return None,
        };
        // One shared MLP: both applications must hold the same weights.
        if avg.mlp1 != max.mlp1 || avg.mlp2 != max.mlp2 {
            return None;
        }
        let mut nodes: Vec<usize> = avg.nodes.iter().chain(&max.nodes).copied().collect();
        nodes.extend([ia, is, im]);
        Some(Channel {
            nodes,
            f,
            avg,
            max,
            logit,
            gate,
        })
    })
}

fn spatial_conv(c: &Conv) -> bool {
    c.in_c == 2
        && c.out_c == 1
        && c.groups == 1
        && c.act == Activation::None
        && c.kernel[0] == c.kernel[1]
}

fn try_match(v: View<'_>, last: usize) -> Option<Found> {
    let g = v.g;
    let mul = g.nodes.get(last)?;
    if mul.op != Op::Mul {
        return None;
    }
    let (a, b) = two_inputs(mul)?;
    [(a, b), (b, a)].into_iter().find_map(|(fp, gate)| {
        let (is, sig) = only_for(v, gate, 1)?;
        if sig.op != Op::Sigmoid {
            return None;
        }
        let spatial_logit = *sig.inputs.first()?;
        let (ic, conv) = only_for(v, spatial_logit, 1)?;
        let Op::Conv(spatial) = &conv.op else {
            return None;
        };
        let pooled_map = *conv.inputs.first()?;
        let (icat, cat) = only_for(v, pooled_map, 1)?;
        if cat.op != Op::Concat || !spatial_conv(spatial) {
            return None;
        }
        let (p0, p1) = two_inputs(cat)?;
        let (i0, n0) = only_for(v, p0, 1)?;
        let (i1, n1) = only_for(v, p1, 1)?;
        let order = match (&n0.op, &n1.op) {
            (Op::ChannelMean, Op::ChannelMax) => SpatialOrder::MeanMax,
            (Op::ChannelMax, Op::ChannelMean) => SpatialOrder::MaxMean,
            _ => return None,
        };
        // F' feeds the channel mean, the channel max and this Mul, nothing else.
        if n0.inputs.first() != Some(&fp) || n1.inputs.first() != Some(&fp) || v.ix.uses(fp) != 3 {
            return None;
        }
        let ch = channel_gate(v, fp)?;
        let channels = *shape(g, ch.f).first()?;
        let (mlp1, mlp2) = (ch.avg.mlp1.clone(), ch.avg.mlp2.clone());
        if mlp1.in_features != channels
            || mlp2.out_features != channels
            || mlp2.in_features != mlp1.out_features
        {
            return None;
        }
        let values = CbamValues {
            avg_pooled: name(g, ch.avg.pooled),
            max_pooled: name(g, ch.max.pooled),
            hidden_avg: name(g, ch.avg.hidden),
            hidden_max: name(g, ch.max.hidden),
            channel_logit: name(g, ch.logit),
            channel_attention: name(g, ch.gate),
            channel_scaled: name(g, fp),
            pooled_map: name(g, pooled_map),
            spatial_logit: name(g, spatial_logit),
        };
        let cbam = Cbam {
            channels,
            hidden: mlp1.out_features,
            mlp1,
            mlp2,
            spatial: spatial.clone(),
            order,
            values,
        };
        let mut nodes = ch.nodes;
        nodes.extend([i0, i1, icat, ic, is, last]);
        Some(Found {
            nodes,
            input: ch.f,
            cbam,
        })
    })
}

/// Replaces every recognised CBAM block with one [`Op::Cbam`] node at the place of its
/// final Mul (after all its inputs, before all its readers). A graph without CBAM is
/// returned unchanged.
pub fn match_cbam(mut g: Graph) -> Result<Graph, PassError> {
    validate(&g)?;
    let mut ix = Index::new(&g);
    for i in 0..g.nodes.len() {
        if ix.is_dead(i) {
            continue;
        }
        let Some(found) = try_match(View { g: &g, ix: &ix }, i) else {
            continue;
        };
        let Some(last) = g.nodes.get(i) else { break };
        let fused = Node {
            name: format!("{}/cbam", last.name),
            op: Op::Cbam(Box::new(found.cbam)),
            inputs: vec![found.input],
            output: last.output,
        };
        let mut doomed = found.nodes;
        doomed.sort_unstable();
        doomed.dedup();
        ix.fuse(&mut g, i, &doomed, fused);
    }
    ix.sweep(&mut g);
    Ok(g)
}
