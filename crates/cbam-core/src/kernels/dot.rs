//! The inner products every accumulating kernel is built from, in one place so that the
//! architecture-specific versions ([`super::arm_dsp`]) are chosen here and nowhere else.
//!
//! All of them compute `sum (x + offset) * w` with int32 wrap-around, so any summation order
//! gives the same bits.

/// Offsets for which `x + offset` fits a signed 16-bit lane for every int8 `x`: the packed
/// (SIMD) versions require it; any other offset takes the portable path.
#[cfg_attr(not(cbam_arm_dsp), allow(dead_code))]
pub(crate) const PACKED_OFFSET: core::ops::RangeInclusive<i32> = -32_639..=32_639;

#[inline(always)]
fn mac(acc: i32, x: i8, w: i8, offset: i32) -> i32 {
    acc.wrapping_add(i32::from(x).wrapping_add(offset).wrapping_mul(i32::from(w)))
}

/// Portable `sum (x + offset) * w` over two equally long slices.
#[inline]
pub(crate) fn portable_dot1(x: &[i8], w: &[i8], offset: i32) -> i32 {
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

/// Portable version of [`dot4`].
#[inline]
pub(crate) fn portable_dot4(x: &[i8], w: [&[i8]; 4], offset: i32) -> [i32; 4] {
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

/// Portable version of [`dot2`].
#[inline]
pub(crate) fn portable_dot2(x: &[i8], w: [&[i8]; 2], offset: i32) -> [i32; 2] {
    let (mut a0, mut a1) = (0i32, 0i32);
    for (&xv, (&v0, &v1)) in x.iter().zip(w[0].iter().zip(w[1])) {
        // One load and one offset add of the input serve both output channels.
        let xo = i32::from(xv).wrapping_add(offset);
        a0 = a0.wrapping_add(xo.wrapping_mul(i32::from(v0)));
        a1 = a1.wrapping_add(xo.wrapping_mul(i32::from(v1)));
    }
    [a0, a1]
}

/// Portable version of [`mac_lanes4`].
#[inline(always)]
pub(crate) fn portable_mac_lanes4(acc: &mut [i32; 4], x: &[i8; 4], w: &[i8; 4], offset: i32) {
    for ((a, &xv), &wv) in acc.iter_mut().zip(x).zip(w) {
        *a = mac(*a, xv, wv, offset);
    }
}

/// `sum (x + offset) * w` over two equally long slices (extra elements of the longer one
/// are ignored).
#[inline]
pub(crate) fn dot1(x: &[i8], w: &[i8], offset: i32) -> i32 {
    #[cfg(cbam_arm_dsp)]
    if PACKED_OFFSET.contains(&offset) {
        return super::arm_dsp::dot1(x, w, offset);
    }
    portable_dot1(x, w, offset)
}

/// `[dot1(x, w[0]), .., dot1(x, w[3])]`: four output channels over one input run, so the
/// input is loaded once per four weights.
#[inline(always)]
pub(crate) fn dot4(x: &[i8], w: [&[i8]; 4], offset: i32) -> [i32; 4] {
    #[cfg(cbam_arm_dsp)]
    if PACKED_OFFSET.contains(&offset) {
        return super::arm_dsp::dot4(x, w, offset);
    }
    portable_dot4(x, w, offset)
}

/// [`dot4`] of four consecutive rows of `x.len()` bytes each at the start of `rows` (a
/// row-major weight matrix), which spares the general version its checks that the rows
/// are evenly spaced. Rows past the end of `rows` count as empty.
#[inline(always)]
pub(crate) fn dot4_rows(x: &[i8], rows: &[i8], offset: i32) -> [i32; 4] {
    #[cfg(cbam_arm_dsp)]
    if PACKED_OFFSET.contains(&offset) {
        return super::arm_dsp::dot4_rows(x, rows, offset);
    }
    portable_dot4_rows(x, rows, offset)
}

/// Portable version of [`dot4_rows`].
// Out of line: on cores with few registers (Armv6-M) the loop then has all of them
// instead of spilling its accumulators around the caller's live values.
#[cfg_attr(cbam_arm_dsp, allow(dead_code))]
#[inline(never)]
fn portable_dot4_rows(x: &[i8], rows: &[i8], offset: i32) -> [i32; 4] {
    // Two calls, so that the common one sees four rows exactly as long as `x` and
    // runs a single index over all five slices.
    match four_rows(rows, x.len()) {
        Some(w) => portable_dot4(x, w, offset),
        None => portable_dot4(x, split_rows(rows, x.len()), offset),
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

/// `[dot1(x, w[0]), dot1(x, w[1])]`: two output channels over one input run (the rows
/// left over after [`dot4`]), so the input is loaded once per two weights.
#[inline(always)]
pub(crate) fn dot2(x: &[i8], w: [&[i8]; 2], offset: i32) -> [i32; 2] {
    #[cfg(cbam_arm_dsp)]
    if PACKED_OFFSET.contains(&offset) {
        return super::arm_dsp::dot2_rows(x, w, offset);
    }
    portable_dot2(x, w, offset)
}

/// [`dot4`] for runs of a few words (small gathered windows), where the DSP version's
/// two-pass form is cheaper than its single-pass one.
#[inline(always)]
pub(crate) fn dot4_short(x: &[i8], w: [&[i8]; 4], offset: i32) -> [i32; 4] {
    #[cfg(cbam_arm_dsp)]
    if PACKED_OFFSET.contains(&offset) {
        return super::arm_dsp::dot4_short(x, w, offset);
    }
    portable_dot4(x, w, offset)
}

/// Lane-wise `acc[i] += (x[i] + offset) * w[i]`: four adjacent depthwise channels.
#[inline(always)]
pub(crate) fn mac_lanes4(acc: &mut [i32; 4], x: &[i8; 4], w: &[i8; 4], offset: i32) {
    #[cfg(cbam_arm_dsp)]
    if PACKED_OFFSET.contains(&offset) {
        return super::arm_dsp::mac_lanes4(acc, x, w, offset);
    }
    portable_mac_lanes4(acc, x, w, offset)
}

/// [`mac_lanes4`] over the `n` taps of a kernel row whose input and weights advance by
/// `x_step` and `w_step` bytes per tap (depth multiplier 1). Taps whose four bytes are not
/// all inside both slices are skipped.
#[inline(always)]
pub(crate) fn mac_lanes4_row(
    acc: &mut [i32; 4],
    (x, x_step): (&[i8], usize),
    (w, w_step): (&[i8], usize),
    n: usize,
    offset: i32,
) {
    #[cfg(cbam_arm_dsp)]
    if x_step == w_step && PACKED_OFFSET.contains(&offset) {
        let done = match n {
            3 => super::arm_dsp::mac_lanes4_row::<3>(acc, x, w, x_step, offset),
            2 => super::arm_dsp::mac_lanes4_row::<2>(acc, x, w, x_step, offset),
            _ => false,
        };
        if done {
            return;
        }
    }
    for t in 0..n {
        let xv = x.get(t * x_step..).and_then(<[i8]>::first_chunk::<4>);
        let wv = w.get(t * w_step..).and_then(<[i8]>::first_chunk::<4>);
        if let (Some(xv), Some(wv)) = (xv, wv) {
            mac_lanes4(acc, xv, wv, offset);
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
    #[cfg(cbam_arm_dsp)]
    {
        super::arm_dsp::mac_lanes4_3x3(acc, x, row, w, step)
    }
    #[cfg(not(cbam_arm_dsp))]
    {
        portable_mac_lanes4_3x3(acc, x, row, w, step)
    }
}

/// Portable version of [`mac_lanes4_3x3`].
#[cfg_attr(cbam_arm_dsp, allow(dead_code))]
#[inline(always)]
pub(crate) fn portable_mac_lanes4_3x3(
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
                portable_mac_lanes4(acc, xv, wv, 0);
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
            let portable_two = portable_dot2(&x, [&w[0], &w[1]], off);
            for (j, row) in w.iter().enumerate() {
                let expected = reference(&x, row, off);
                assert_eq!(dot1(&x, row, off), expected, "n={n} off={off}");
                assert_eq!(four[j], expected, "n={n} off={off} row {j}");
                assert_eq!(portable_dot1(&x, row, off), expected);
                if let (Some(&d), Some(&p)) = (two.get(j), portable_two.get(j)) {
                    assert_eq!(d, expected, "dot2 n={n} off={off} row {j}");
                    assert_eq!(p, expected, "portable_dot2 n={n} off={off} row {j}");
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
