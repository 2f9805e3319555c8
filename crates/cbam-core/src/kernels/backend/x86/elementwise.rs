//! The element-wise kernels: CBAM's scalings and pooling, and the dense ADD.

use super::requant::{
    doubling_high_short, pack16, requant_lanes, rounding_constant, saturating_add, saturating_shl,
    scale_lanes, scale_short, Lanes,
};
use super::{load8, pack8, store8};
use crate::kernels::backend::simd::isa::{AddLanes, TensorRequant};
use crate::math::{requantize_to_i8, ActRange};
use core::arch::x86_64::*;

#[target_feature(enable = "avx2")]
pub(super) fn add(a: &[i8], b: &[i8], out: &mut [i8], k: &AddLanes) {
    let short = match ShortAdd::new(k) {
        Some(short) => add_short(a, b, out, &short),
        None => 0,
    };
    let (a, b) = (
        a.get(short..).unwrap_or_default(),
        b.get(short..).unwrap_or_default(),
    );
    let out = out.get_mut(short..).unwrap_or_default();
    let shift = _mm256_set1_epi32(k.shift);
    let (zp1, zp2) = (_mm256_set1_epi32(k.zp1), _mm256_set1_epi32(k.zp2));
    let split = |t: &TensorRequant| {
        (
            _mm256_set1_epi32(t.mult),
            _mm256_set1_epi32(t.left),
            _mm256_set1_epi32(t.right),
        )
    };
    let (m1, l1, r1) = split(&k.in1);
    let (m2, l2, r2) = split(&k.in2);
    let last = Lanes {
        mult: _mm256_set1_epi32(k.out.mult),
        left: _mm256_set1_epi32(k.out.left),
        right: _mm256_set1_epi32(k.out.right),
        zp: _mm256_set1_epi32(k.out.zp),
        min: _mm256_set1_epi32(k.min),
        max: _mm256_set1_epi32(k.max),
    };
    let (oc, _) = out.as_chunks_mut::<8>();
    let (ac, _) = a.as_chunks::<8>();
    let (bc, _) = b.as_chunks::<8>();
    let mut done = 0;
    for ((o, x), y) in oc.iter_mut().zip(ac).zip(bc) {
        let x = saturating_shl(_mm256_sub_epi32(load8(x), zp1), shift);
        let y = saturating_shl(_mm256_sub_epi32(load8(y), zp2), shift);
        let sum = saturating_add(scale_lanes(x, m1, l1, r1), scale_lanes(y, m2, l2, r2));
        store8(o, pack8(requant_lanes(sum, &last)));
        done += 8;
    }
    let tails = a
        .get(done..)
        .unwrap_or_default()
        .iter()
        .zip(b.get(done..).unwrap_or_default());
    for (o, (&x, &y)) in out
        .get_mut(done..)
        .unwrap_or_default()
        .iter_mut()
        .zip(tails)
    {
        *o = k.one(x, y);
    }
}

/// One requantization's constants for [`scale_short`], the same in every lane.
#[derive(Clone, Copy)]
struct ShortScale {
    mult: __m256i,
    round: __m256i,
    right: __m256i,
    left: __m128i,
    /// Whether there is a right shift: without one (TFLite's ADD scales its larger input
    /// by exactly one half, `2^30` with shift 0), the stage is the doubling high multiply
    /// alone.
    shifts: bool,
}

impl ShortScale {
    /// The stage of `rq` for values `|x| <= bound`; `None` where [`scale_short`] is not
    /// exact: a negative multiplier, or a left shift that could take a value past `2^30`
    /// (below it, shifting first is the same as the saturating shift).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn new(rq: &TensorRequant, bound: u64) -> Option<Self> {
        let left = u32::try_from(rq.left).ok().filter(|&l| l <= 30)?;
        let exact = (bound << left) < 1 << 30 && rq.mult >= 0 && (0..=31).contains(&rq.right);
        exact.then(|| Self {
            mult: _mm256_set1_epi32(rq.mult),
            round: _mm256_set1_epi64x(rounding_constant(rq.right)),
            right: _mm256_set1_epi32(rq.right),
            left: _mm_cvtsi32_si128(rq.left),
            shifts: rq.right > 0,
        })
    }

    /// [`scale_lanes`] of `x` (every lane within the bound it was made for).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn apply(&self, x: __m256i) -> __m256i {
        // A broadcast multiplier sits in the low half of every 64-bit lane already.
        if self.shifts {
            scale_short(x, self.mult, self.mult, [self.round; 2], self.right)
        } else {
            // A left shift, if any (a shift is left or right, never both).
            let x = _mm256_sll_epi32(x, self.left);
            doubling_high_short(x, self.mult, self.mult)
        }
    }
}

/// The constants of an ADD whose every step [`scale_short`] does exactly and whose sums
/// cannot saturate: the common case of TFLite's scheme (a left shift of 20, multipliers
/// below one).
struct ShortAdd {
    shift: __m128i,
    zp1: __m256i,
    zp2: __m256i,
    in1: ShortScale,
    in2: ShortScale,
    out: ShortScale,
    zp: __m256i,
    min: __m256i,
    max: __m256i,
}

impl ShortAdd {
    /// `None` unless both shifted inputs are bounded so that neither the shift nor the sum
    /// saturates and the sum stays inside `+-2^30` (each scaled input is at most its
    /// shifted value: the multipliers are below one), and every requantization is one
    /// [`ShortScale`] takes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn new(k: &AddLanes) -> Option<Self> {
        let bound = |zp: i32| (u64::from(zp.unsigned_abs()) + 128) << k.shift.clamp(0, 30);
        let (b1, b2) = (bound(k.zp1), bound(k.zp2));
        // Without left shifts each scaled input is at most its shifted value.
        if b1 + b2 >= 1 << 30 || k.in1.left != 0 || k.in2.left != 0 {
            return None;
        }
        Some(Self {
            shift: _mm_cvtsi32_si128(k.shift),
            zp1: _mm256_set1_epi32(k.zp1),
            zp2: _mm256_set1_epi32(k.zp2),
            in1: ShortScale::new(&k.in1, b1)?,
            in2: ShortScale::new(&k.in2, b2)?,
            out: ShortScale::new(&k.out, b1 + b2)?,
            zp: _mm256_set1_epi32(k.out.zp),
            min: _mm256_set1_epi8(k.min.clamp(-128, 127) as i8),
            max: _mm256_set1_epi8(k.max.clamp(-128, 127) as i8),
        })
    }

    /// Eight elements, sign-extended, to their outputs before the activation clamp.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn eight(&self, a: __m256i, b: __m256i) -> __m256i {
        let x = _mm256_sll_epi32(_mm256_sub_epi32(a, self.zp1), self.shift);
        let y = _mm256_sll_epi32(_mm256_sub_epi32(b, self.zp2), self.shift);
        let sum = _mm256_add_epi32(self.in1.apply(x), self.in2.apply(y));
        _mm256_add_epi32(self.out.apply(sum), self.zp)
    }
}

/// The whole chunks of 32 elements of [`add`] in the short form; returns how many
/// elements it did.
#[target_feature(enable = "avx2")]
fn add_short(a: &[i8], b: &[i8], out: &mut [i8], k: &ShortAdd) -> usize {
    let (oc, _) = out.as_chunks_mut::<32>();
    let (ac, _) = a.as_chunks::<32>();
    let (bc, _) = b.as_chunks::<32>();
    // `packs` works within 128-bit halves: put the four groups of each half back in order.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let mut done = 0;
    for ((o, x), y) in oc.iter_mut().zip(ac).zip(bc) {
        // SAFETY: each reads exactly the 32 bytes of its chunk.
        let (x, y) = unsafe {
            (
                _mm256_loadu_si256(x.as_ptr().cast()),
                _mm256_loadu_si256(y.as_ptr().cast()),
            )
        };
        let (xq, yq) = (quarters(x), quarters(y));
        let v = [
            k.eight(xq[0], yq[0]),
            k.eight(xq[1], yq[1]),
            k.eight(xq[2], yq[2]),
            k.eight(xq[3], yq[3]),
        ];
        // Saturating to i16 then i8 is the clamp to the int8 range; the activation's
        // range lies inside it.
        let words = [
            _mm256_packs_epi32(v[0], v[1]),
            _mm256_packs_epi32(v[2], v[3]),
        ];
        let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(words[0], words[1]), order);
        let bytes = _mm256_min_epi8(_mm256_max_epi8(bytes, k.min), k.max);
        // SAFETY: writes exactly the 32 bytes of the chunk.
        unsafe { _mm256_storeu_si256(o.as_mut_ptr().cast(), bytes) };
        done += 32;
    }
    done
}

/// `|(v - zp) * (att + 128)|` at most, for int8 `v`, `zp` and `att`.
const PRODUCT_BOUND: u64 = 256 * 255;

/// [`scale_by_lanes`] of each pixel of `data` in turn (`att.len()` channels each), handing
/// each pixel's sum and maximum to `pooled`: the constants are decoded once for the map.
#[target_feature(enable = "avx2")]
pub(super) fn scale_pixels_by_lanes(
    data: &mut [i8],
    att: &[i8],
    zp: i8,
    rq: &TensorRequant,
    pooled: &mut dyn FnMut(i32, i8),
) {
    let c = att.len();
    if c == 0 {
        return;
    }
    let Some(k) = ShortScale::new(rq, PRODUCT_BOUND) else {
        for px in data.chunks_exact_mut(c) {
            let (sum, top) = scale_by_lanes(px, att, zp, rq);
            pooled(sum, top);
        }
        return;
    };
    let (zp_v, out_zp) = (_mm256_set1_epi32(i32::from(zp)), _mm256_set1_epi32(rq.zp));
    let (bias, flip) = (_mm256_set1_epi32(128), _mm_set1_epi8(i8::MIN));
    let (ac, _) = att.as_chunks::<16>();
    let whole = ac.len() * 16;
    for px in data.chunks_exact_mut(c) {
        let (pc, _) = px.as_chunks_mut::<16>();
        let (mut sums, mut top) = (_mm_setzero_si128(), _mm_set1_epi8(i8::MIN));
        for (x, a) in pc.iter_mut().zip(ac) {
            // SAFETY: each reads exactly the 16 bytes of its chunk.
            let (xv, av) = unsafe {
                (
                    _mm_loadu_si128(x.as_ptr().cast()),
                    _mm_loadu_si128(a.as_ptr().cast()),
                )
            };
            let r = [
                _mm256_cvtepi8_epi32(xv),
                _mm256_cvtepi8_epi32(_mm_srli_si128::<8>(xv)),
            ];
            let f = [
                _mm256_cvtepi8_epi32(av),
                _mm256_cvtepi8_epi32(_mm_srli_si128::<8>(av)),
            ];
            let v0 = _mm256_mullo_epi32(_mm256_sub_epi32(r[0], zp_v), _mm256_add_epi32(f[0], bias));
            let v1 = _mm256_mullo_epi32(_mm256_sub_epi32(r[1], zp_v), _mm256_add_epi32(f[1], bias));
            let bytes = pack16(
                _mm256_add_epi32(k.apply(v0), out_zp),
                _mm256_add_epi32(k.apply(v1), out_zp),
            );
            // SAFETY: writes exactly the 16 bytes of the chunk.
            unsafe { _mm_storeu_si128(x.as_mut_ptr().cast(), bytes) };
            // Each byte plus 128, as unsigned, summed in two 64-bit lanes.
            sums = _mm_add_epi64(
                sums,
                _mm_sad_epu8(_mm_xor_si128(bytes, flip), _mm_setzero_si128()),
            );
            top = _mm_max_epi8(top, bytes);
        }
        // Eight channels more where they are (24 channels: a pixel of 16 and 8).
        let x8 = px.get_mut(whole..).and_then(<[i8]>::first_chunk_mut::<8>);
        let a8 = att.get(whole..).and_then(<[i8]>::first_chunk::<8>);
        let mut done = whole;
        if let (Some(x), Some(a)) = (x8, a8) {
            let prod = _mm256_mullo_epi32(
                _mm256_sub_epi32(load8(x), zp_v),
                _mm256_add_epi32(load8(a), bias),
            );
            let r = _mm256_add_epi32(k.apply(prod), out_zp);
            // Both halves are the eight bytes: the sum takes the low one alone.
            let bytes = pack16(r, r);
            store8(x, pack8_low(bytes));
            let low = _mm_move_epi64(_mm_xor_si128(bytes, flip));
            sums = _mm_add_epi64(sums, _mm_sad_epu8(low, _mm_setzero_si128()));
            top = _mm_max_epi8(top, bytes);
            done += 8;
        }
        let sum = _mm_cvtsi128_si64(_mm_add_epi64(sums, _mm_unpackhi_epi64(sums, sums)));
        let sum = (sum - 128 * done as i64) as i32;
        let top = max_byte(top);
        let (rest_sum, rest_top) = match (px.get_mut(done..), att.get(done..)) {
            (Some(x), Some(a)) if !x.is_empty() => scale_by_lanes(x, a, zp, rq),
            _ => (0, i8::MIN),
        };
        pooled(sum.wrapping_add(rest_sum), top.max(rest_top));
    }
}

/// [`scale_by_one`] of each pixel `i` of `data` (`c` channels each) by `att[i]`: the
/// constants are decoded once for the map.
#[target_feature(enable = "avx2")]
pub(super) fn scale_pixels_by_one(
    data: &mut [i8],
    c: usize,
    att: &[i8],
    zp: i8,
    rq: &TensorRequant,
) {
    if c == 0 {
        return;
    }
    let Some(k) = ShortScale::new(rq, PRODUCT_BOUND) else {
        for (px, &a) in data.chunks_exact_mut(c).zip(att) {
            scale_by_one(px, a, zp, rq);
        }
        return;
    };
    let out_zp = _mm256_set1_epi32(rq.zp);
    let whole = c / 16 * 16;
    for (px, &a) in data.chunks_exact_mut(c).zip(att) {
        let factor = i32::from(a) + 128;
        // (v - zp) * f = v * f - zp * f: one multiply and one add per lane.
        let (f, base) = (
            _mm256_set1_epi32(factor),
            _mm256_set1_epi32(-i32::from(zp) * factor),
        );
        let (pc, _) = px.as_chunks_mut::<16>();
        for x in pc.iter_mut() {
            // SAFETY: reads exactly the 16 bytes of the chunk.
            let xv = unsafe { _mm_loadu_si128(x.as_ptr().cast()) };
            let r = [
                _mm256_cvtepi8_epi32(xv),
                _mm256_cvtepi8_epi32(_mm_srli_si128::<8>(xv)),
            ];
            let v0 = _mm256_add_epi32(_mm256_mullo_epi32(r[0], f), base);
            let v1 = _mm256_add_epi32(_mm256_mullo_epi32(r[1], f), base);
            let bytes = pack16(
                _mm256_add_epi32(k.apply(v0), out_zp),
                _mm256_add_epi32(k.apply(v1), out_zp),
            );
            // SAFETY: writes exactly the 16 bytes of the chunk.
            unsafe { _mm_storeu_si128(x.as_mut_ptr().cast(), bytes) };
        }
        let mut done = whole;
        if let Some(x) = px.get_mut(whole..).and_then(<[i8]>::first_chunk_mut::<8>) {
            let v = _mm256_add_epi32(_mm256_mullo_epi32(load8(x), f), base);
            let r = _mm256_add_epi32(k.apply(v), out_zp);
            store8(x, pack8_low(pack16(r, r)));
            done += 8;
        }
        if let Some(rest) = px.get_mut(done..).filter(|r| !r.is_empty()) {
            scale_by_one(rest, a, zp, rq);
        }
    }
}

/// The low eight bytes of `v`.
#[inline]
#[target_feature(enable = "avx2")]
fn pack8_low(v: __m128i) -> [i8; 8] {
    _mm_cvtsi128_si64(v).to_le_bytes().map(|b| b as i8)
}

/// The largest of the sixteen bytes of `v`.
#[inline]
#[target_feature(enable = "avx2")]
fn max_byte(v: __m128i) -> i8 {
    let v = _mm_max_epi8(v, _mm_srli_si128::<8>(v));
    let v = _mm_max_epi8(v, _mm_srli_si128::<4>(v));
    let v = _mm_max_epi8(v, _mm_srli_si128::<2>(v));
    let v = _mm_max_epi8(v, _mm_srli_si128::<1>(v));
    _mm_cvtsi128_si32(v) as i8
}

/// The 32 bytes of `v` sign-extended to four vectors of eight `i32` lanes, in order.
#[inline]
#[target_feature(enable = "avx2")]
fn quarters(v: __m256i) -> [__m256i; 4] {
    let (lo, hi) = (_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    [
        _mm256_cvtepi8_epi32(lo),
        _mm256_cvtepi8_epi32(_mm_srli_si128::<8>(lo)),
        _mm256_cvtepi8_epi32(hi),
        _mm256_cvtepi8_epi32(_mm_srli_si128::<8>(hi)),
    ]
}

/// `(sum, max)` of the lanes of two accumulators, wrapping.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn horizontal(sum: __m256i, max: __m256i) -> (i32, i32) {
    let s = _mm_add_epi32(
        _mm256_castsi256_si128(sum),
        _mm256_extracti128_si256::<1>(sum),
    );
    let m = _mm_max_epi32(
        _mm256_castsi256_si128(max),
        _mm256_extracti128_si256::<1>(max),
    );
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let m = _mm_max_epi32(m, _mm_shuffle_epi32::<0b01_00_11_10>(m));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    let m = _mm_max_epi32(m, _mm_shuffle_epi32::<0b10_11_00_01>(m));
    (_mm_cvtsi128_si32(s), _mm_cvtsi128_si32(m))
}

#[target_feature(enable = "avx2")]
pub(super) fn scale_by_lanes(v: &mut [i8], att: &[i8], zp: i8, rq: &TensorRequant) -> (i32, i8) {
    let k = Lanes::tensor(rq);
    let (zp_v, bias) = (_mm256_set1_epi32(i32::from(zp)), _mm256_set1_epi32(128));
    let (mut sum, mut max) = (
        _mm256_setzero_si256(),
        _mm256_set1_epi32(i32::from(i8::MIN)),
    );
    let (vc, _) = v.as_chunks_mut::<8>();
    let (ac, _) = att.as_chunks::<8>();
    let mut done = 0;
    for (x, a) in vc.iter_mut().zip(ac) {
        let prod = _mm256_mullo_epi32(
            _mm256_sub_epi32(load8(x), zp_v),
            _mm256_add_epi32(load8(a), bias),
        );
        let r = requant_lanes(prod, &k);
        sum = _mm256_add_epi32(sum, r);
        max = _mm256_max_epi32(max, r);
        store8(x, pack8(r));
        done += 8;
    }
    let (mut s, m) = horizontal(sum, max);
    let mut top = m as i8;
    let tail = v.get_mut(done..).unwrap_or_default();
    for (x, &a) in tail.iter_mut().zip(att.get(done..).unwrap_or_default()) {
        let prod = (i32::from(*x) - i32::from(zp)) * (i32::from(a) + 128);
        *x = requantize_to_i8(prod, rq.rq, rq.zp, ActRange::FULL);
        s = s.wrapping_add(i32::from(*x));
        top = top.max(*x);
    }
    (s, top)
}

#[target_feature(enable = "avx2")]
pub(super) fn scale_by_one(v: &mut [i8], att: i8, zp: i8, rq: &TensorRequant) {
    let k = Lanes::tensor(rq);
    let factor = i32::from(att) + 128;
    // (v - zp) * f = v * f - zp * f: one multiply and one add per lane.
    let (f, base) = (
        _mm256_set1_epi32(factor),
        _mm256_set1_epi32(-i32::from(zp) * factor),
    );
    let (vc, _) = v.as_chunks_mut::<8>();
    let mut done = 0;
    for x in vc.iter_mut() {
        let prod = _mm256_add_epi32(_mm256_mullo_epi32(load8(x), f), base);
        store8(x, pack8(requant_lanes(prod, &k)));
        done += 8;
    }
    for x in v.get_mut(done..).unwrap_or_default() {
        let prod = (i32::from(*x) - i32::from(zp)) * factor;
        *x = requantize_to_i8(prod, rq.rq, rq.zp, ActRange::FULL);
    }
}

#[target_feature(enable = "avx2")]
pub(super) fn channel_sums(data: &[i8], sums: &mut [i32], maxs: &mut [i8]) {
    let c = sums.len();
    if c == 0 {
        return;
    }
    // Eight channels at a time down the whole map: the accumulators stay in registers.
    let mut first = 0;
    while first + 8 <= c {
        let (mut sum, mut max) = (
            _mm256_setzero_si256(),
            _mm256_set1_epi32(i32::from(i8::MIN)),
        );
        for px in data.chunks_exact(c) {
            if let Some(x) = px.get(first..).and_then(<[i8]>::first_chunk::<8>) {
                let x = load8(x);
                sum = _mm256_add_epi32(sum, x);
                max = _mm256_max_epi32(max, x);
            }
        }
        let mut lanes = [0i32; 8];
        // SAFETY: writes exactly the 32 bytes of the local array.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sum) };
        for (s, &l) in sums.iter_mut().skip(first).zip(&lanes) {
            *s = l;
        }
        let maxes = pack8(max);
        for (m, &l) in maxs.iter_mut().skip(first).zip(&maxes) {
            *m = l;
        }
        first += 8;
    }
    for ch in first..c {
        let (mut sum, mut max) = (0i32, i8::MIN);
        for &v in data.iter().skip(ch).step_by(c) {
            sum = sum.wrapping_add(i32::from(v));
            max = max.max(v);
        }
        if let (Some(s), Some(m)) = (sums.get_mut(ch), maxs.get_mut(ch)) {
            *s = sum;
            *m = max;
        }
    }
}

/// The pools' plain-Rust loops compiled with the instruction set (`vpmaxsb`: baseline
/// x86_64 has no signed byte maximum, and emulates it with compares and selects).
#[target_feature(enable = "avx2")]
pub(super) fn pool2d(
    kind: crate::kernels::PoolKind,
    p: &crate::kernels::PoolParams,
    in_shape: crate::kernels::Shape,
    input: &[i8],
    out_shape: crate::kernels::Shape,
    output: &mut [i8],
) -> bool {
    crate::kernels::backend::simd::pool::pool2d(kind, p, in_shape, input, out_shape, output)
}
