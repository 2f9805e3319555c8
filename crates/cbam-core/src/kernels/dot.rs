//! The portable inner products every accumulating kernel is built from: the defaults of
//! the [`Backend`] entry points of the same names, and the reference their faster
//! versions are tested against.
//!
//! All of them compute `sum (x + offset) * w` with int32 wrap-around, so any summation order
//! gives the same bits.

use super::backend::Backend;

#[inline(always)]
fn mac(acc: i32, x: i8, w: i8, offset: i32) -> i32 {
    acc.wrapping_add(i32::from(x).wrapping_add(offset).wrapping_mul(i32::from(w)))
}

/// `sum (x + offset) * w` over two slices (extra elements of the longer one are ignored).
#[inline]
pub(crate) fn dot1(x: &[i8], w: &[i8], offset: i32) -> i32 {
    // Two independent accumulators let an in-order core overlap the multiplies.
    let (xc, xt) = x.as_chunks::<2>();
    let (wc, wt) = w.as_chunks::<2>();
    let (mut a, mut b) = (0i32, 0i32);
    for (xv, wv) in xc.iter().zip(wc) {
        a = mac(a, xv[0], wv[0], offset);
        b = mac(b, xv[1], wv[1], offset);
    }
    let tail = xt
        .iter()
        .zip(wt)
        .fold(0, |acc, (&x, &w)| mac(acc, x, w, offset));
    a.wrapping_add(b).wrapping_add(tail)
}

/// `[dot1(x, w[0]), .., dot1(x, w[3])]`, loading the input once per four weights.
#[inline]
pub(crate) fn dot4(x: &[i8], w: [&[i8]; 4], offset: i32) -> [i32; 4] {
    let [mut a0, mut a1, mut a2, mut a3] = [0i32; 4];
    let rows = w[0].iter().zip(w[1]).zip(w[2].iter().zip(w[3]));
    for (&xv, ((&v0, &v1), (&v2, &v3))) in x.iter().zip(rows) {
        // One load and one offset add of the input serve four output channels.
        let xo = i32::from(xv).wrapping_add(offset);
        a0 = a0.wrapping_add(xo.wrapping_mul(i32::from(v0)));
        a1 = a1.wrapping_add(xo.wrapping_mul(i32::from(v1)));
        a2 = a2.wrapping_add(xo.wrapping_mul(i32::from(v2)));
        a3 = a3.wrapping_add(xo.wrapping_mul(i32::from(v3)));
    }
    [a0, a1, a2, a3]
}

/// `[dot1(x, w[0]), dot1(x, w[1])]`, loading the input once per two weights.
#[inline]
pub(crate) fn dot2(x: &[i8], w: [&[i8]; 2], offset: i32) -> [i32; 2] {
    let (mut a0, mut a1) = (0i32, 0i32);
    for (&xv, (&v0, &v1)) in x.iter().zip(w[0].iter().zip(w[1])) {
        // One load and one offset add of the input serve both output channels.
        let xo = i32::from(xv).wrapping_add(offset);
        a0 = a0.wrapping_add(xo.wrapping_mul(i32::from(v0)));
        a1 = a1.wrapping_add(xo.wrapping_mul(i32::from(v1)));
    }
    [a0, a1]
}

/// Lane-wise `acc[i] += (x[i] + offset) * w[i]`.
#[inline(always)]
pub(crate) fn mac_lanes4(acc: &mut [i32; 4], x: &[i8; 4], w: &[i8; 4], offset: i32) {
    for ((a, &xv), &wv) in acc.iter_mut().zip(x).zip(w) {
        *a = mac(*a, xv, wv, offset);
    }
}

/// [`dot4`] of four consecutive rows of `x.len()` bytes each at the start of `rows` (a
/// row-major weight matrix), which spares the general version its checks that the rows
/// are evenly spaced. Rows past the end of `rows` count as empty.
// Out of line: on cores with few registers (Armv6-M) the loop then has all of them
// instead of spilling its accumulators around the caller's live values.
#[inline(never)]
pub(crate) fn dot4_rows(x: &[i8], rows: &[i8], offset: i32) -> [i32; 4] {
    // Two calls, so that the common one sees four rows exactly as long as `x` and
    // runs a single index over all five slices.
    match four_rows(rows, x.len()) {
        Some(w) => dot4(x, w, offset),
        None => dot4(x, split_rows(rows, x.len()), offset),
    }
}

/// The first four rows of `n` bytes of `rows`, when `rows` holds them all.
#[inline(always)]
fn four_rows(rows: &[i8], n: usize) -> Option<[&[i8]; 4]> {
    let block = rows.get(..n.checked_mul(4)?)?;
    let (r0, rest) = block.split_at(n);
    let (r1, rest) = rest.split_at(n);
    let (r2, r3) = rest.split_at(n);
    Some([r0, r1, r2, r3])
}

/// The first four rows of `n` bytes of `rows`, each empty where `rows` ends before it.
#[inline(always)]
pub(crate) fn split_rows(rows: &[i8], n: usize) -> [&[i8]; 4] {
    core::array::from_fn(|i| {
        let start = i.saturating_mul(n);
        rows.get(start..start.saturating_add(n)).unwrap_or(&[])
    })
}

/// `B::mac_lanes4` over the `n` taps of a kernel row whose input and weights advance by
/// `x_step` and `w_step` bytes per tap (depth multiplier 1). Taps whose four bytes are not
/// all inside both slices are skipped.
#[inline(always)]
pub(crate) fn mac_lanes4_taps<B: Backend>(
    acc: &mut [i32; 4],
    (x, x_step): (&[i8], usize),
    (w, w_step): (&[i8], usize),
    n: usize,
    offset: i32,
) {
    for t in 0..n {
        let xv = x.get(t * x_step..).and_then(<[i8]>::first_chunk::<4>);
        let wv = w.get(t * w_step..).and_then(<[i8]>::first_chunk::<4>);
        if let (Some(xv), Some(wv)) = (xv, wv) {
            B::mac_lanes4(acc, xv, wv, offset);
        }
    }
}

/// Lane-wise `acc[i] += sum x[i] * w[i]` (no input offset) over a whole 3x3 window of
/// four adjacent depthwise channels: input taps `step` bytes apart within a row and `row`
/// bytes apart between rows, weight taps `step` apart. Returns `false`, touching nothing,
/// when a slice is too short for the window.
#[inline(always)]
pub(crate) fn mac_lanes4_3x3(
    acc: &mut [i32; 4],
    x: &[i8],
    row: usize,
    w: &[i8],
    step: usize,
) -> bool {
    let x_need = row.checked_mul(2).zip(step.checked_mul(2));
    let x_need = x_need.and_then(|(r, s)| r.checked_add(s)?.checked_add(4));
    let w_need = step.checked_mul(8).and_then(|n| n.checked_add(4));
    match (x_need, w_need) {
        (Some(xn), Some(wn)) if x.len() >= xn && w.len() >= wn => {}
        _ => return false,
    }
    let (mut x_at, mut w_at) = (0, 0);
    for _ in 0..3 {
        for kx in 0..3 {
            let xv = x.get(x_at + kx * step..).and_then(<[i8]>::first_chunk);
            let wv = w.get(w_at + kx * step..).and_then(<[i8]>::first_chunk);
            if let (Some(xv), Some(wv)) = (xv, wv) {
                mac_lanes4(acc, xv, wv, 0);
            }
        }
        x_at += row;
        w_at += 3 * step;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::Rng;

    fn reference(x: &[i8], w: &[i8], offset: i32) -> i32 {
        let sum: i64 = x
            .iter()
            .zip(w)
            .map(|(&a, &b)| (i64::from(a) + i64::from(offset)) * i64::from(b))
            .sum();
        sum as i32 // wraps like the kernels
    }

    fn offsets(rng: &mut Rng) -> i32 {
        match rng.range(0, 4) {
            0 => rng.int(-128, 127),
            1 => rng.int(-32_639, 32_639),
            2 => rng.int(i32::MIN / 2, i32::MAX / 2),
            _ => *[-32_639, 32_639, -32_640, 32_640, 128, -127]
                .get(rng.range(0, 6))
                .unwrap_or(&0),
        }
    }

    #[test]
    fn dot1_and_dot4_match_reference() {
        let mut rng = Rng::new(0xD07);
        for _ in 0..2000 {
            let n = rng.range(0, 70);
            let x = rng.i8s(n);
            let w: Vec<Vec<i8>> = (0..4).map(|_| rng.i8s(n)).collect();
            let off = offsets(&mut rng);
            let four = dot4(&x, [&w[0], &w[1], &w[2], &w[3]], off);
            let block: Vec<i8> = w.concat();
            assert_eq!(
                dot4_rows(&x, &block, off),
                four,
                "dot4_rows n={n} off={off}"
            );
            let two = dot2(&x, [&w[0], &w[1]], off);
            for (j, row) in w.iter().enumerate() {
                let expected = reference(&x, row, off);
                assert_eq!(dot1(&x, row, off), expected, "n={n} off={off}");
                assert_eq!(four[j], expected, "n={n} off={off} row {j}");
                if let Some(&d) = two.get(j) {
                    assert_eq!(d, expected, "dot2 n={n} off={off} row {j}");
                }
            }
        }
    }

    #[test]
    fn mac_lanes4_matches_reference() {
        let mut rng = Rng::new(0x1A4E5);
        for _ in 0..2000 {
            let x: [i8; 4] = core::array::from_fn(|_| rng.i8());
            let w: [i8; 4] = core::array::from_fn(|_| rng.i8());
            let off = offsets(&mut rng);
            let start: [i32; 4] = core::array::from_fn(|_| rng.next_u64() as i32);
            let mut acc = start;
            mac_lanes4(&mut acc, &x, &w, off);
            for i in 0..4 {
                let prod = (i64::from(x[i]) + i64::from(off)) * i64::from(w[i]);
                assert_eq!(acc[i], (i64::from(start[i]) + prod) as i32);
            }
        }
    }
}
