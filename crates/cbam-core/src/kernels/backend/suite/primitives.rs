//! The entry points under the kernels: inner products, depthwise lanes, output stages.

use super::{offset, same, Backend, Memory, Portable};
use crate::kernels::requant::{BoundedStage, SignedProductRequant};
use crate::kernels::test_support::{QuantData, Rng};
use crate::math::{ActRange, Requant};

/// The longest input run of the inner-product cases.
const MAX_RUN: usize = 70;

/// Bytes the checks here take: an input run and four weight rows with gaps, misaligned.
pub(super) const MEMORY: usize = 5 * (MAX_RUN + 8) + 4;

/// [`Backend::dot1`], `dot2`, `dot4`, `dot4_rows` and `dot4_short` on runs of every length
/// up to [`MAX_RUN`], at any alignment, with rows consecutive (a weight matrix) or not.
pub(super) fn dot_products<B: Backend>(rng: &mut Rng, mut mem: Memory) -> u32 {
    let buf = mem.take(MEMORY);
    let mut checked = 0;
    for _ in 0..2000 {
        let n = rng.range(0, MAX_RUN + 1);
        rng.fill(buf);
        let off = offset(rng);
        let skew = rng.range(0, 4);
        let (x, rest) = buf[skew..].split_at(n);
        // Four rows, each `gap` bytes after the last (0: a weight matrix).
        let gap = if rng.bool() { 0 } else { rng.range(1, 8) };
        let at = |j: usize| j * (n + gap);
        let w: [&[i8]; 4] = core::array::from_fn(|j| &rest[at(j)..at(j) + n]);
        let case = (n, off, skew, gap);
        for row in w {
            let got = B::dot1(x, row, off);
            checked += same("dot1", &[got], &[Portable::dot1(x, row, off)], case);
        }
        let pair = [w[0], w[1]];
        let got = B::dot2(x, pair, off);
        checked += same("dot2", &got, &Portable::dot2(x, pair, off), case);
        let got = B::dot4(x, w, off);
        checked += same("dot4", &got, &Portable::dot4(x, w, off), case);
        let got = B::dot4_short(x, w, off);
        checked += same("dot4_short", &got, &Portable::dot4_short(x, w, off), case);
        // Four rows of a weight matrix.
        let rows = &rest[..4 * n];
        let got = B::dot4_rows(x, rows, off);
        checked += same("dot4_rows", &got, &Portable::dot4_rows(x, rows, off), case);
    }
    checked
}

/// [`Backend::mac_lanes4`], `mac_lanes4_row` (two or three taps of equal or different
/// steps, slices too short for some taps) and `mac_lanes4_3x3` (windows that fit and
/// windows that do not).
pub(super) fn lane_products<B: Backend>(rng: &mut Rng, mut mem: Memory) -> u32 {
    let buf = mem.take(MEMORY);
    let mut checked = 0;
    for _ in 0..2000 {
        rng.fill(buf);
        let off = offset(rng);
        let start: [i32; 4] = core::array::from_fn(|_| rng.next_u64() as i32);
        let (x, w) = buf.split_at(buf.len() / 2);
        let (x4, w4) = (first4(x), first4(w));
        let (mut got, mut want) = (start, start);
        B::mac_lanes4(&mut got, x4, w4, off);
        Portable::mac_lanes4(&mut want, x4, w4, off);
        checked += same("mac_lanes4", &got, &want, (x4, w4, off));

        let n = rng.range(0, 5);
        let x_step = rng.range(1, 40);
        let w_step = if rng.bool() { x_step } else { rng.range(1, 40) };
        let x = &x[..rng.range(0, x.len())];
        let w = &w[..rng.range(0, w.len())];
        let (mut got, mut want) = (start, start);
        B::mac_lanes4_row(&mut got, (x, x_step), (w, w_step), n, off);
        Portable::mac_lanes4_row(&mut want, (x, x_step), (w, w_step), n, off);
        let case = (n, x_step, w_step, x.len(), w.len(), off);
        checked += same("mac_lanes4_row", &got, &want, case);

        let (row, step) = (rng.range(4, 60), rng.range(4, 12));
        let (mut got, mut want) = (start, start);
        let done = B::mac_lanes4_3x3(&mut got, x, row, w, step);
        let expected = Portable::mac_lanes4_3x3(&mut want, x, row, w, step);
        let case = (row, step, x.len(), w.len());
        checked += same("mac_lanes4_3x3 taken", &[done], &[expected], case);
        checked += same("mac_lanes4_3x3", &got, &want, case);
    }
    checked
}

fn first4(bytes: &[i8]) -> &[i8; 4] {
    bytes.first_chunk().expect("four bytes")
}

/// The output stages: [`Backend::mul_high_rounded`] at the edges and at random,
/// `signed_product_unshifted` over the CBAM scalings' domain, `finish4_bounded` of
/// random layers' short stages and `clamp` of any value into any activation range.
pub(super) fn output_stages<B: Backend>(rng: &mut Rng, _: Memory) -> u32 {
    let mul_high = |a, b| {
        let want = Portable::mul_high_rounded(a, b);
        same(
            "mul_high_rounded",
            &[B::mul_high_rounded(a, b)],
            &[want],
            (a, b),
        )
    };
    let mut checked = 0;
    let edges = [i32::MIN, i32::MIN + 1, -65_536, -1, 0, 1, 65_536, i32::MAX];
    for a in edges {
        for b in edges {
            checked += mul_high(a, b);
        }
    }
    for _ in 0..20_000 {
        checked += mul_high(rng.next_u64() as i32, rng.next_u64() as i32);

        let rq = Requant::new(rng.int(1 << 30, i32::MAX), rng.int(-22, -1));
        if let Some(p) = SignedProductRequant::new(rq, rng.int(-128, 127)) {
            // `x2 = 2 * x` for `|x| <= 2^16 + 2^8`, the scalings' products.
            let x2 = 2 * rng.int(-(1 << 16) - 256, (1 << 16) + 256);
            let got = B::signed_product_unshifted(&p, x2);
            let want = Portable::signed_product_unshifted(&p, x2);
            checked += same("signed_product_unshifted", &[got], &[want], (rq, x2));
        }

        let act = ActRange::from_words(rng.int(-130, 130), rng.int(-130, 130));
        let v: [i32; 4] = core::array::from_fn(|_| match rng.range(0, 3) {
            0 => rng.int(-300, 300),
            _ => rng.next_u64() as i32,
        });
        let got = B::clamp(v, act, B::act_bounds(act));
        let want = Portable::clamp(v, act, Portable::act_bounds(act));
        checked += same("clamp", &got, &want, (v, act));
        let got = B::clamp([v[0]], act, B::act_bounds(act));
        checked += same("clamp of one", &got, &[act.apply(v[0])], (v, act));
    }
    for _ in 0..5000 {
        checked += bounded_stages::<B>(rng);
    }
    checked
}

/// `finish4` of four channels' [`BoundedStage`]s, with accumulators anywhere in the range
/// the stages were built for.
fn bounded_stages<B: Backend>(rng: &mut Rng) -> u32 {
    let mut q = QuantData::random(rng, 4);
    q.out_zp = rng.int(-300, 300);
    let bytes = q.bytes();
    let cq = q.channel_quant(&bytes);
    let max_dot = (1u64 << rng.range(0, 30)) - 1;
    let Some(stages) = cq.bounded_stages(max_dot) else {
        return 0;
    };
    let mut four = [None::<BoundedStage>; 4];
    for (slot, stage) in four.iter_mut().zip(stages) {
        *slot = Some(stage);
    }
    let [Some(s0), Some(s1), Some(s2), Some(s3)] = four else {
        return 0;
    };
    let stages = [s0, s1, s2, s3];
    let dots: [i32; 4] = core::array::from_fn(|_| {
        let mag = (max_dot * rng.range(0, 1001) as u64 / 1000) as i32;
        if rng.bool() {
            mag
        } else {
            -mag
        }
    });
    let got = B::finish4_bounded(&stages, dots, B::act_bounds(q.act));
    let want = Portable::finish4_bounded(&stages, dots, Portable::act_bounds(q.act));
    same("finish4 of bounded stages", &got, &want, (dots, q.act))
}
