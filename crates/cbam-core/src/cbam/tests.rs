//! The fused op against the same block composed from the separate kernels, each step
//! materialised as a full tensor.

use super::*;
use crate::kernels::conv2d::conv2d;
use crate::kernels::fully_connected::fully_connected;
use crate::kernels::global_pool::global_max_pool;
use crate::kernels::mul::mul;
use crate::kernels::sigmoid::sigmoid;
use crate::kernels::test_support::Rng;
use crate::kernels::{
    CbamMlp, ChannelQuant, FullyConnectedParams, MulBroadcast, MulParams, SigmoidLut,
};
use crate::le::i32_bytes;
use std::vec::Vec;

/// Owned random parameters of one CBAM block.
pub(crate) struct Owned {
    pub(crate) c: usize,
    pub(crate) cr: usize,
    pub(crate) k: usize,
    pub(crate) order: PoolOrder,
    pub(crate) w1: Vec<i8>,
    pub(crate) b1: Vec<u8>,
    pub(crate) m1: Vec<u8>,
    pub(crate) s1: Vec<u8>,
    pub(crate) zp_h: i32,
    pub(crate) w2: Vec<i8>,
    pub(crate) b2: Vec<u8>,
    pub(crate) m2: Vec<u8>,
    pub(crate) s2: Vec<u8>,
    pub(crate) zp_z: i32,
    pub(crate) lut_c: SigmoidLut,
    pub(crate) f1: Requant,
    pub(crate) zp_f1: i32,
    pub(crate) ws: Vec<i8>,
    pub(crate) bs: i32,
    pub(crate) rs: Requant,
    pub(crate) zp_s: i32,
    pub(crate) lut_s: SigmoidLut,
    pub(crate) out: Requant,
    pub(crate) zp_in: i32,
    pub(crate) zp_out: i32,
}

fn rq(rng: &mut Rng, lo: i32, hi: i32) -> Requant {
    Requant::new(rng.int(1 << 30, i32::MAX), rng.int(lo, hi))
}

fn words(rng: &mut Rng, n: usize, f: impl Fn(&mut Rng) -> i32) -> Vec<u8> {
    i32_bytes(&(0..n).map(|_| f(rng)).collect::<Vec<_>>())
}

/// A monotone table like the host's sigmoid, with noise so a wrong index shows.
fn lut(rng: &mut Rng) -> SigmoidLut {
    core::array::from_fn(|i| (i as i32 - 128 + rng.int(-3, 3)).clamp(-128, 127) as i8)
}

impl Owned {
    pub(crate) fn random(rng: &mut Rng, c: usize, cr: usize, k: usize, order: PoolOrder) -> Self {
        Self {
            c,
            cr,
            k,
            order,
            w1: rng.i8s(cr * c),
            b1: words(rng, cr, |r| r.int(-3000, 3000)),
            m1: words(rng, cr, |r| r.int(1 << 30, i32::MAX)),
            s1: words(rng, cr, |r| r.int(-12, -7)),
            zp_h: rng.int(-128, 0),
            w2: rng.i8s(c * cr),
            b2: words(rng, c, |r| r.int(-3000, 3000)),
            m2: words(rng, c, |r| r.int(1 << 30, i32::MAX)),
            s2: words(rng, c, |r| r.int(-12, -7)),
            zp_z: rng.int(-20, 20),
            lut_c: lut(rng),
            f1: rq(rng, -9, -7),
            zp_f1: rng.int(-128, 127),
            ws: rng.i8s(k * k * 2),
            bs: rng.int(-2000, 2000),
            rs: rq(rng, -12, -8),
            zp_s: rng.int(-20, 20),
            lut_s: lut(rng),
            out: rq(rng, -9, -7),
            zp_in: rng.int(-128, 127),
            zp_out: rng.int(-128, 127),
        }
    }

    pub(crate) fn params(&self) -> CbamParams<'_> {
        CbamParams {
            c: self.c,
            cr: self.cr,
            k: self.k,
            order: self.order,
            mlp: CbamMlp {
                w1: &self.w1,
                b1: I32Le::new(&self.b1),
                m1: I32Le::new(&self.m1),
                s1: I32Le::new(&self.s1),
                zp_h: self.zp_h,
                w2: &self.w2,
                b2: I32Le::new(&self.b2),
                m2: I32Le::new(&self.m2),
                s2: I32Le::new(&self.s2),
                zp_z: self.zp_z,
            },
            lut_c: &self.lut_c,
            f1: self.f1,
            zp_f1: self.zp_f1,
            ws: &self.ws,
            bs: self.bs,
            rs: self.rs,
            zp_s: self.zp_s,
            lut_s: &self.lut_s,
            out: self.out,
            zp_in: self.zp_in,
            zp_out: self.zp_out,
        }
    }
}

fn round_half_away(num: i64, den: i64) -> i64 {
    let q = num as f64 / den as f64;
    (q.signum() * (q.abs() + 0.5).floor()) as i64
}

/// The block composed from the separate kernels; returns `(F'', a, as)`.
fn composed(o: &Owned, s: Shape, f: &[i8]) -> (Vec<i8>, Vec<i8>, Vec<i8>) {
    let (c, hw) = (o.c, s.h * s.w);
    // 1. Global pools: the max through its kernel, the rounded mean as FORMAT.md defines it.
    let mut pm = vec![0i8; c];
    global_max_pool(s, f, &mut pm).unwrap();
    let pa: Vec<i8> = (0..c)
        .map(|ch| {
            let sum: i64 = (0..hw)
                .map(|px| i64::from(f[px * c + ch]) - i64::from(o.zp_in))
                .sum();
            (round_half_away(sum, hw as i64) + i64::from(o.zp_in)).clamp(-128, 127) as i8
        })
        .collect();
    // 2. First layer + ReLU: a fully connected op clamped at the hidden zero point.
    let fc1 = FullyConnectedParams {
        weights: &o.w1,
        quant: ChannelQuant {
            in_zp: o.zp_in,
            out_zp: o.zp_h,
            act: ActRange::from_words(o.zp_h, 127),
            bias: I32Le::new(&o.b1),
            mult: I32Le::new(&o.m1),
            shift: I32Le::new(&o.s1),
        },
    };
    let (mut ha, mut hm) = (vec![0i8; o.cr], vec![0i8; o.cr]);
    fully_connected(&fc1, &pa, &mut ha).unwrap();
    fully_connected(&fc1, &pm, &mut hm).unwrap();
    // 3. Shared second layer: one fully connected op over [ha; hm] with [w2 | w2].
    let hidden: Vec<i8> = ha.iter().chain(&hm).copied().collect();
    let w2x2: Vec<i8> =
        o.w2.chunks(o.cr)
            .flat_map(|row| row.iter().chain(row).copied())
            .collect();
    let fc2 = FullyConnectedParams {
        weights: &w2x2,
        quant: ChannelQuant {
            in_zp: o.zp_h,
            out_zp: o.zp_z,
            act: ActRange::FULL,
            bias: I32Le::new(&o.b2),
            mult: I32Le::new(&o.m2),
            shift: I32Le::new(&o.s2),
        },
    };
    let mut z = vec![0i8; c];
    fully_connected(&fc2, &hidden, &mut z).unwrap();
    // 4. Sigmoid table and the per-channel broadcast multiply.
    let mut a = vec![0i8; c];
    sigmoid(&o.lut_c, &z, &mut a).unwrap();
    let mul1 = MulParams {
        in1_zp: o.zp_in,
        in2_zp: -128,
        out: o.f1,
        out_zp: o.zp_f1,
        act: ActRange::FULL,
    };
    let mut f1 = vec![0i8; f.len()];
    mul(&mul1, s, f, &a, MulBroadcast::PerChannel, &mut f1).unwrap();
    // 5. Channel mean and max per pixel, stacked in the model's order.
    let mut maps = Vec::with_capacity(2 * hw);
    for px in f1.chunks(c) {
        let sum: i64 = px.iter().map(|&v| i64::from(v) - i64::from(o.zp_f1)).sum();
        let mean = (round_half_away(sum, c as i64) + i64::from(o.zp_f1)).clamp(-128, 127) as i8;
        let max = *px.iter().max().unwrap();
        match o.order {
            PoolOrder::MeanMax => maps.extend([mean, max]),
            PoolOrder::MaxMean => maps.extend([max, mean]),
        }
    }
    // 6. The spatial convolution 2 -> 1 through the conv kernel.
    let (bs, ms, ss) = (
        i32_bytes(&[o.bs]),
        i32_bytes(&[o.rs.mult]),
        i32_bytes(&[o.rs.shift]),
    );
    let conv = Conv2dParams {
        packed: &[],
        geometry: ConvGeometry::square(o.k, o.k / 2),
        weights: &o.ws,
        quant: ChannelQuant {
            in_zp: o.zp_f1,
            out_zp: o.zp_s,
            act: ActRange::FULL,
            bias: I32Le::new(&bs),
            mult: I32Le::new(&ms),
            shift: I32Le::new(&ss),
        },
    };
    let mut sl = vec![0i8; hw];
    conv2d(
        &conv,
        Shape::new(s.h, s.w, 2),
        &maps,
        Shape::new(s.h, s.w, 1),
        &mut sl,
    )
    .unwrap();
    // 7. Sigmoid table and the per-pixel broadcast multiply.
    let mut att_s = vec![0i8; hw];
    sigmoid(&o.lut_s, &sl, &mut att_s).unwrap();
    let mul2 = MulParams {
        in1_zp: o.zp_f1,
        in2_zp: -128,
        out: o.out,
        out_zp: o.zp_out,
        act: ActRange::FULL,
    };
    let mut out = vec![0i8; f.len()];
    mul(&mul2, s, &f1, &att_s, MulBroadcast::PerPixel, &mut out).unwrap();
    (out, a, att_s)
}

fn check_case(rng: &mut Rng, h: usize, w: usize, c: usize, cr: usize, k: usize, order: PoolOrder) {
    let o = Owned::random(rng, c, cr, k, order);
    let s = Shape::new(h, w, c);
    let f = rng.i8s(h * w * c);
    let (expected, a, att_s) = composed(&o, s, &f);
    let mut data = f.clone();
    let mut scratch = vec![0i8; cbam_scratch_size(c, cr, h, w).unwrap()];
    let att = cbam(&o.params(), s, &mut data, &mut scratch).unwrap();
    assert_eq!(
        att.channel,
        &a[..],
        "channel attention, c={c} cr={cr} k={k} {order:?}"
    );
    assert_eq!(
        att.spatial,
        &att_s[..],
        "spatial attention, c={c} cr={cr} k={k} {order:?}"
    );
    assert_eq!(data, expected, "output, c={c} cr={cr} k={k} {order:?}");
    // The test must exercise real attention, not a saturated map.
    let distinct = expected
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(distinct > 1 || h * w * c < 4, "degenerate output");
}

#[test]
fn both_orders_and_kernel_sizes() {
    let mut rng = Rng::new(0xCBA3);
    for order in [PoolOrder::MeanMax, PoolOrder::MaxMean] {
        for k in [3, 7] {
            check_case(&mut rng, 14, 14, 32, 4, k, order);
            check_case(&mut rng, 5, 9, 12, 3, k, order);
        }
    }
}

#[test]
fn single_hidden_unit_single_channel_and_pruned_widths() {
    let mut rng = Rng::new(0x1C);
    check_case(&mut rng, 6, 6, 8, 1, 3, PoolOrder::MeanMax);
    check_case(&mut rng, 6, 7, 1, 1, 7, PoolOrder::MaxMean);
    // A pruned block runs with C = the kept count, which need not be a round number.
    check_case(&mut rng, 7, 5, 13, 2, 3, PoolOrder::MaxMean);
    check_case(&mut rng, 1, 1, 3, 1, 7, PoolOrder::MeanMax);
}

#[test]
fn random_shapes() {
    let mut rng = Rng::new(0x7A11);
    for _ in 0..60 {
        let k = [1, 3, 5, 7][rng.range(0, 4)];
        let order = if rng.bool() {
            PoolOrder::MeanMax
        } else {
            PoolOrder::MaxMean
        };
        let (h, w, c) = (rng.range(1, 12), rng.range(1, 12), rng.range(1, 24));
        let cr = rng.range(1, c.max(2));
        check_case(&mut rng, h, w, c, cr, k, order);
    }
}

#[test]
fn rejects_short_scratch_and_wrong_shapes() {
    let mut rng = Rng::new(2);
    let o = Owned::random(&mut rng, 4, 2, 3, PoolOrder::MeanMax);
    let mut data = vec![0i8; 3 * 3 * 4];
    let need = cbam_scratch_size(4, 2, 3, 3).unwrap();
    assert_eq!(need, 3 * 4 + 2 * 2 + 3 * 9);
    let mut short = vec![0i8; need - 1];
    assert!(cbam(&o.params(), Shape::new(3, 3, 4), &mut data, &mut short).is_err());
    let mut scratch = vec![0i8; need];
    assert!(cbam(&o.params(), Shape::new(3, 3, 5), &mut data, &mut scratch).is_err());
    assert!(cbam(&o.params(), Shape::new(3, 3, 4), &mut data, &mut scratch).is_ok());
}
