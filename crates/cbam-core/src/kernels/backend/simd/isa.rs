//! What every instruction set provides ([`Isa`]) and the constants it works from, decoded
//! once per layer or op: [`ChannelBlock`] (per output channel) and [`TensorRequant`] (one
//! per tensor).

use super::depthwise::PairWeights;
use crate::kernels::{AddParams, ChannelQuant, PoolKind, PoolParams, Shape};
use crate::math::{multiply_by_quantized_multiplier, requantize_to_i8, Requant};

/// Output channels whose constants are decoded at a time.
pub(crate) const BLOCK: usize = 128;

/// Output zero points beyond this take the portable path: the backends clamp the scaled
/// value to `+-2^24` before adding the zero point, exact only while it cannot overflow.
pub(crate) const MAX_OUT_ZP: i32 = 1 << 16;

/// The output stage of up to [`BLOCK`] consecutive channels, as lanes: the encoding of
/// [`crate::kernels::requant::OutputRequant`] with the shift split into its two parts.
pub(crate) struct ChannelBlock {
    pub bias: [i32; BLOCK],
    pub mult: [i32; BLOCK],
    /// `max(shift, 0)` with the shift clamped to `-31..=30`.
    pub left: [i32; BLOCK],
    /// `max(-shift, 0)` with the shift clamped to `-31..=30`.
    pub right: [i32; BLOCK],
    pub zp: i32,
    pub min: i32,
    pub max: i32,
    /// The input zero point: with the window length, it bounds the accumulators (for
    /// the output stages that need a bound; NEON's does not).
    #[cfg_attr(cbam_backend = "neon", allow(dead_code))]
    pub in_zp: i32,
    /// Channels in the block: the lanes from `n` on are zero.
    #[cfg_attr(cbam_backend = "neon", allow(dead_code))]
    pub n: usize,
}

impl ChannelBlock {
    /// Channels `first..first + n` of `q` (lanes past `n` stay zero).
    pub(crate) fn new(q: &ChannelQuant, first: usize, n: usize) -> Self {
        let mut block = Self {
            bias: [0; BLOCK],
            mult: [0; BLOCK],
            left: [0; BLOCK],
            right: [0; BLOCK],
            zp: q.out_zp,
            min: i32::from(q.act.min),
            max: i32::from(q.act.max),
            in_zp: q.in_zp,
            n: n.min(BLOCK),
        };
        let lanes = block
            .bias
            .iter_mut()
            .zip(block.mult.iter_mut())
            .zip(block.left.iter_mut().zip(block.right.iter_mut()));
        // The words as slices (not `q.channels()`, whose skip decodes every channel before
        // `first` and whose adapters the compiler left uninlined: 2% of a model's time).
        let [bias, mult, shift] =
            [q.bias, q.mult, q.shift].map(|w| w.words().get(first..).unwrap_or_default());
        let channels = bias.iter().zip(mult.iter().zip(shift)).take(n);
        for (((bias, mult), (left, right)), (b, (m, s))) in lanes.zip(channels) {
            let shift = i32::from_le_bytes(*s).clamp(-31, 30);
            *bias = i32::from_le_bytes(*b);
            *mult = i32::from_le_bytes(*m);
            *left = shift.max(0);
            *right = (-shift).max(0);
        }
        block
    }

    /// An upper bound of `|sum_t (x_t - in_zp) * w_t|` over `taps` int8 inputs and
    /// weights: what the accumulators of the block's channels hold before the bias.
    #[cfg_attr(cbam_backend = "neon", allow(dead_code))]
    pub(crate) fn product_bound(&self, taps: usize) -> u64 {
        let x = u64::from(self.in_zp.unsigned_abs()) + 128;
        (taps as u64).saturating_mul(x * 128)
    }
}

/// Windows of up to `2 * SMALL_PAIRS` taps take [`Isa::row_small`].
pub(crate) const SMALL_PAIRS: usize = 16;

/// A block's weights transposed for [`Isa::row_small`]: word `j * lanes + o` holds
/// channel `o`'s taps `2j` (low half) and `2j + 1` (high half) as `i16`, so that one
/// vector load brings one tap pair of consecutive channels. Channels past the block's
/// (up to `lanes`, a multiple of 8) and taps past the window are zero.
pub(crate) struct SmallWeights {
    pub table: [i32; SMALL_PAIRS * BLOCK],
    pub pairs: usize,
    pub lanes: usize,
}

impl SmallWeights {
    /// `n <= BLOCK` rows of `per_out <= 2 * SMALL_PAIRS` weights each.
    pub(crate) fn new(weights: &[i8], per_out: usize, n: usize) -> Self {
        let lanes = n.next_multiple_of(8).min(BLOCK);
        let pairs = per_out.div_ceil(2).min(SMALL_PAIRS);
        let mut table = [0i32; SMALL_PAIRS * BLOCK];
        for (o, row) in weights.chunks_exact(per_out.max(1)).take(lanes).enumerate() {
            for (j, pair) in row.chunks(2).take(pairs).enumerate() {
                let lo = pair.first().copied().unwrap_or(0);
                let hi = pair.get(1).copied().unwrap_or(0);
                let word = u32::from(lo as u16) | (u32::from(hi as u16) << 16);
                if let Some(t) = table.get_mut(j * lanes + o) {
                    *t = word as i32;
                }
            }
        }
        Self {
            table,
            pairs,
            lanes,
        }
    }
}

/// A per-tensor requantization into the whole int8 range (the CBAM scalings), split like
/// [`ChannelBlock`]'s lanes; `rq` is kept for the scalar tails.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TensorRequant {
    pub rq: Requant,
    pub mult: i32,
    pub left: i32,
    pub right: i32,
    pub zp: i32,
}

impl TensorRequant {
    /// `None` for an output zero point the backends' clamp-then-add is not exact for.
    pub(crate) fn new(rq: Requant, zp: i32) -> Option<Self> {
        if !(-MAX_OUT_ZP..=MAX_OUT_ZP).contains(&zp) {
            return None;
        }
        let shift = rq.shift.clamp(-31, 30);
        Some(Self {
            rq,
            mult: rq.mult,
            left: shift.max(0),
            right: (-shift).max(0),
            zp,
        })
    }
}

/// The constants of a dense ADD (TFLite's int8 add): both inputs rescaled to a common
/// scale, summed, and requantized into the output.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AddLanes {
    /// `left_shift`, capped at 30 as the portable kernel caps it.
    pub shift: i32,
    pub zp1: i32,
    pub zp2: i32,
    pub in1: TensorRequant,
    pub in2: TensorRequant,
    pub out: TensorRequant,
    pub min: i32,
    pub max: i32,
}

impl AddLanes {
    /// `None` for an output zero point the backends are not exact for.
    pub(crate) fn new(p: &AddParams) -> Option<Self> {
        Some(Self {
            shift: p.left_shift.min(30) as i32,
            zp1: p.in1_zp,
            zp2: p.in2_zp,
            in1: TensorRequant::new(p.in1, 0)?,
            in2: TensorRequant::new(p.in2, 0)?,
            out: TensorRequant::new(p.out, p.out_zp)?,
            min: i32::from(p.act.min),
            max: i32::from(p.act.max),
        })
    }

    /// One element, in scalar code (the backends' tails): the portable kernel's formula.
    pub(crate) fn one(&self, a: i8, b: i8) -> i8 {
        let scaled = |x: i8, zp: i32, rq: Requant| {
            let shifted = i32::from(x)
                .wrapping_sub(zp)
                .saturating_mul(1 << self.shift);
            multiply_by_quantized_multiplier(shifted, rq.mult, rq.shift)
        };
        let sum = scaled(a, self.zp1, self.in1.rq).saturating_add(scaled(b, self.zp2, self.in2.rq));
        let act = crate::math::ActRange {
            min: self.min as i8,
            max: self.max as i8,
        };
        requantize_to_i8(sum, self.out.rq, self.out.zp, act)
    }
}

/// Four-byte dot-product instructions (x86 VNNI `vpdpbusd`, Arm `sdot`): four int8
/// products summed into each `i32` lane per instruction, twice the multiply-adds of the
/// `i16` pair products. A value of the type proves that the CPU has them.
///
/// Their matrix product (see [`super::gemm`]) takes the windows as bytes, each input byte
/// XORed with [`DotIsa::KEY`] (VNNI multiplies unsigned by signed bytes, so its key 0x80
/// turns `x` into `x + 128`; `sdot` is signed by signed, key 0) and the padding taps
/// holding the input zero point's byte; the accumulators start from
/// `bias - (in_zp + k) * sum(w)` (`k` is 128 for key 0x80, else 0), which cancels the key
/// and the zero point exactly in wrapping `i32` arithmetic.
pub(crate) trait DotIsa: Copy {
    /// The byte XORed into every input byte of a window.
    const KEY: u8;

    /// Longest window (taps, rows rounded up to whole quads, at most
    /// [`super::gemm::MAX_IN_PLACE_TAPS`]) whose quads [`DotIsa::gemm_in_place`] reads
    /// faster than gathered ones.
    const IN_PLACE_TAPS: usize;

    /// Several runs of `run` input bytes XORed with [`DotIsa::KEY`] for each of `count`
    /// pixels, laid out as [`Isa::widen_runs`] lays out its widened runs (and, like it,
    /// free to overwrite the bytes past each pixel's last run).
    fn taps_runs(
        self,
        dst: &mut [u8],
        src: &[i8],
        runs: (&[usize], usize),
        pixels: (usize, usize, usize),
    );

    /// Two output pixels by dot products of their byte windows with the weight rows as
    /// they are (the layers with few pixels per weight, where packing would cost more
    /// than it saves): for every channel `o < len` of the block (`len` the shorter of
    /// the two outputs), `outs[i][o] = clamp(requant(bias[o] + sum_t windows[i][t] *
    /// w_o[t] - k * sum_t w_o[t]) + zp)`, where `w_o` is `weights[o * per_out..][..per_out]`
    /// and `k` is the input zero point plus what the key adds (see [`DotIsa`]). Each window
    /// is a multiple of 32 bytes long, at least `per_out`, and zero past `per_out`;
    /// `weights` holds `len` rows.
    fn pixel2(
        self,
        windows: [&[u8]; 2],
        weights: (&[i8], usize),
        block: (&ChannelBlock, i32),
        outs: [&mut [i8]; 2],
    );

    /// [`super::gemm::pack_quads`], the same words and sums.
    fn pack(
        self,
        weights: &[i8],
        per_out: usize,
        quads: usize,
        packed: &mut [i32],
        sums: &mut [i32; BLOCK],
    );

    /// The micro-kernel over a run of pixels, a few at a time: for each pixel
    /// `p < pixels`, whose window is `windows[p * stride..][..stride]` (`stride` a multiple
    /// of 4), and each channel `o < len <= PANEL`, `out[p * out_c + o] =
    /// clamp(requant(start[at + o] + sum_t window[t] * w_o[t]) + zp)` with the block's
    /// channel `at + o`'s constants, where `w_o`'s taps `4j..4j + 4` are the bytes of
    /// `panel[j * PANEL + o]` (little-endian) and `panel` holds `stride / 4 * PANEL` words.
    fn gemm_quads(
        self,
        windows: (&[u8], usize),
        pixels: usize,
        panel: &[i32],
        block: (&ChannelBlock, &[i32; BLOCK], usize),
        out: (&mut [i8], usize, usize),
    );

    /// [`DotIsa::gemm_quads`] reading each window where it lies instead of from a
    /// gathered copy: pixel `p`'s quad `j` is the four bytes of `src` from
    /// `bases[p] + offs[j]` (already keyed), for `p < bases.len()` and
    /// `j < offs.len()`; `panel` holds `offs.len() * PANEL` words. A call whose reads
    /// would leave `src` writes nothing.
    fn gemm_in_place(
        self,
        src: &[u8],
        windows: (&[usize], &[usize]),
        panel: &[i32],
        block: (&ChannelBlock, &[i32; BLOCK], usize),
        out: (&mut [i8], usize, usize),
    );
}

/// The [`DotIsa`] of an instruction set with its dot-product instructions left out (the
/// tests of the pair products): no value exists.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(crate) enum NoDot {}

#[cfg(test)]
impl DotIsa for NoDot {
    const KEY: u8 = 0;
    const IN_PLACE_TAPS: usize = 0;

    fn taps_runs(self, _: &mut [u8], _: &[i8], _: (&[usize], usize), _: (usize, usize, usize)) {
        match self {}
    }

    fn pixel2(self, _: [&[u8]; 2], _: (&[i8], usize), _: (&ChannelBlock, i32), _: [&mut [i8]; 2]) {
        match self {}
    }

    fn pack(self, _: &[i8], _: usize, _: usize, _: &mut [i32], _: &mut [i32; BLOCK]) {
        match self {}
    }

    fn gemm_quads(
        self,
        _: (&[u8], usize),
        _: usize,
        _: &[i32],
        _: (&ChannelBlock, &[i32; BLOCK], usize),
        _: (&mut [i8], usize, usize),
    ) {
        match self {}
    }

    fn gemm_in_place(
        self,
        _: &[u8],
        _: (&[usize], &[usize]),
        _: &[i32],
        _: (&ChannelBlock, &[i32; BLOCK], usize),
        _: (&mut [i8], usize, usize),
    ) {
        match self {}
    }
}

/// The vector arithmetic of one instruction set (AVX2, NEON). A value of the type proves
/// that the CPU has the instructions.
pub(crate) trait Isa: Copy {
    /// The dot-product extension of the instruction set.
    type Dot: DotIsa;

    /// The instruction set, when this CPU has it.
    fn detect() -> Option<Self>;

    /// The dot-product extension, when this CPU has it.
    fn dot(self) -> Option<Self::Dot>;

    /// `dst[i] = src[i] + offset` over the shorter of the two (the sum fits `i16`).
    fn widen(self, dst: &mut [i16], src: &[i8], offset: i16);

    /// [`Isa::widen`] of several runs of `run` bytes for each of `count` pixels, `runs =
    /// (starts, run)` and `pixels = (count, src_step, dst_step)`: `dst[p * dst_step + k *
    /// run..][..run]` from `src[starts[k] + p * src_step..][..run]`. The elements of `dst`
    /// past each pixel's last run may be overwritten too (with anything; the next pixel's
    /// are written after), so that short runs can take whole vectors.
    fn widen_runs(
        self,
        dst: &mut [i16],
        src: &[i8],
        runs: (&[usize], usize),
        pixels: (usize, usize, usize),
        offset: i16,
    );

    /// One output pixel: for every channel `o < out.len()` of the block,
    /// `out[o] = clamp(requant(bias[o] + sum_k window[k] * w_o[k]) + zp)`, where `w_o` is
    /// `weights[o * per_out..]`. `window.len()` is a multiple of 16 and at least `per_out`,
    /// its elements past `per_out` are 0, and `weights` holds `out.len()` rows.
    fn pixel(
        self,
        window: &[i16],
        weights: &[i8],
        per_out: usize,
        block: &ChannelBlock,
        out: &mut [i8],
    );

    /// [`Isa::pixel`] for two output pixels at once, so that each weight load serves
    /// both: `windows` and `outs` are the two pixels' windows and outputs.
    fn pixel2(
        self,
        windows: [&[i16]; 2],
        weights: &[i8],
        per_out: usize,
        block: &ChannelBlock,
        outs: [&mut [i8]; 2],
    );

    /// [`super::gemm::pack`], the same words.
    fn pack_panels(self, weights: &[i8], per_out: usize, pairs: usize, packed: &mut [i32]);

    /// The matrix product's micro-kernel (see [`super::gemm`]) over a run of pixels, a
    /// few at a time: for each pixel `p < pixels`, whose window is `windows[p * stride..][..stride]` (`stride` even),
    /// and each channel `o < len <= PANEL`, `out[p * out_c + o] = clamp(requant(bias +
    /// sum_j window[2j] * w_o[2j] + window[2j + 1] * w_o[2j + 1]) + zp)` with the block's
    /// channel `at + o`'s constants, where `w_o`'s taps `2j` and `2j + 1` are the two
    /// halves of `panel[j * PANEL + o]` and `panel` holds `stride / 2 * PANEL` words.
    fn gemm_run(
        self,
        windows: (&[i16], usize),
        pixels: usize,
        panel: &[i32],
        block: (&ChannelBlock, usize),
        out: (&mut [i8], usize, usize),
    );

    /// [`Isa::gemm_run`] over windows read where they lie in a widened copy of the
    /// input rather than from a gathered one: pixel `p`'s tap pair `j` is the two `i16`
    /// of `src` from `bases[p] + offs[j]`, for `p < bases.len()` and `j < offs.len()`;
    /// `panel` holds `offs.len() * PANEL` words. A call whose reads would leave `src`
    /// writes nothing.
    fn gemm_in_place(
        self,
        src: &[i16],
        windows: (&[usize], &[usize]),
        panel: &[i32],
        block: (&ChannelBlock, usize),
        out: (&mut [i8], usize, usize),
    );

    /// One output row of a two-channel-to-one convolution (stride 1): `out[x]` is
    /// `clamp(requant(bias + sum_t pair(plane[2 * (ky * wp + x + kx)..]) . taps[t]) + zp)`
    /// with channel 0's constants, over taps `t = ky * kw + kx`, where `pair(..)` is the
    /// two `i16` there and `taps[t]` two `i16` weights. `plane` holds at least 16 elements
    /// past the last pair any `x < out.len()` (rounded up to a multiple of 8) reads.
    fn pair_row(
        self,
        plane: &[i16],
        wp: usize,
        taps: &[i32],
        kw: usize,
        block: &ChannelBlock,
        out: &mut [i8],
    );

    /// One output pixel of a depthwise convolution (depth multiplier 1) for the
    /// `out.len() <= LANES` channels from the block's channel `at`:
    /// `out[o] = clamp(requant(bias + sum_t (rows[t][o] + offset) * w_t[o]) + zp)`, where
    /// taps `2j` and `2j + 1` have the weights `weights[j]` (interleaved) and
    /// `rows.len() == 2 * weights.len()`. A row shorter than `LANES` bytes reads as
    /// zero-padded.
    fn depthwise_pixel(
        self,
        rows: &[&[i8]],
        weights: &[PairWeights],
        offset: i16,
        block: (&ChannelBlock, usize),
        out: &mut [i8],
    );

    /// [`Isa::depthwise_pixel`] for `count` output pixels of each of `n` rows whose
    /// windows lie inside the input: pixel `i` of row `r` has the tap `t` row
    /// `input[start + r * row_in + i * step + taps[t]..]` and its outputs are
    /// `out[r * row_out + i * out_step..][..len]` (`len <= LANES`). `false`, writing
    /// nothing, when some tap's sixteen bytes are not all inside `input` or
    /// `taps.len() != 2 * weights.len()`.
    #[allow(clippy::too_many_arguments)]
    fn depthwise_row(
        self,
        input: &[i8],
        pixels: (usize, usize, usize),
        rows: (usize, usize, usize),
        taps: &[usize],
        weights: &[PairWeights],
        offset: i16,
        block: (&ChannelBlock, usize),
        out: (&mut [i8], usize, usize),
    ) -> bool;

    /// Output pixels of a window of at most `2 * SMALL_PAIRS` taps, with the block's weights
    /// transposed (`n <= weights.lanes`), by broadcasting each tap pair against eight
    /// channels: pixel `i`'s window is
    /// `windows[i * stride..][..stride]` (`stride = 2 * weights.pairs`, zero past its taps)
    /// and its `n` outputs are `out[i * step..][..n]`.
    fn row_small(
        self,
        windows: (&[i16], usize),
        weights: &SmallWeights,
        block: &ChannelBlock,
        out: (&mut [i8], usize, usize),
    );

    /// `out[o] = clamp(requant(acc[o]) + zp)` with channel `o`'s constants (bias not added).
    #[cfg(test)]
    fn requant(self, acc: &[i32], block: &ChannelBlock, out: &mut [i8]);

    /// `v[i] = requant((v[i] - zp) * (att[i] + 128))` over the shorter of the two slices,
    /// into the whole int8 range; returns the sum and the maximum of the new values
    /// (`(0, i8::MIN)` for none).
    #[cfg(test)]
    fn scale_by_lanes(self, v: &mut [i8], att: &[i8], zp: i8, rq: &TensorRequant) -> (i32, i8);

    /// `v[i] = requant((v[i] - zp) * (att + 128))`, into the whole int8 range.
    #[cfg(test)]
    fn scale_by_one(self, v: &mut [i8], att: i8, zp: i8, rq: &TensorRequant);

    /// `v[i] = requant((v[i] - zp) * (att[i] + 128))` into the whole int8 range over each
    /// pixel `v` of `data` in turn (`att.len()` channels each), handing each pixel's
    /// wrapping sum and maximum of the new values to `pooled`.
    fn scale_pixels_by_lanes(
        self,
        data: &mut [i8],
        att: &[i8],
        zp: i8,
        rq: &TensorRequant,
        pooled: &mut dyn FnMut(i32, i8),
    );

    /// `v[j] = requant((v[j] - zp) * (att[i] + 128))` into the whole int8 range over each
    /// pixel `i` (`v`, `c` channels) of `data`.
    fn scale_pixels_by_one(self, data: &mut [i8], c: usize, att: &[i8], zp: i8, rq: &TensorRequant);

    /// Over the pixels of an NHWC map with `sums.len()` channels (`data.len()` a multiple
    /// of it): `sums[c]` = the wrapping sum, `maxs[c]` = the maximum of channel `c`.
    fn channel_sums(self, data: &[i8], sums: &mut [i32], maxs: &mut [i8]);

    /// Dense ADD: `out[i] = requant(in1(a[i]) + in2(b[i]))` over the shortest slice.
    fn add(self, a: &[i8], b: &[i8], out: &mut [i8], k: &AddLanes);

    /// [`super::pool::pool2d`] compiled for the instruction set.
    fn pool2d(
        self,
        kind: PoolKind,
        p: &PoolParams,
        in_shape: Shape,
        input: &[i8],
        out_shape: Shape,
        output: &mut [i8],
    ) -> bool;
}

/// `impl Isa for $arch`: `detect` is `$detect`, `Dot` and `dot` are `$dot_ty` and `$dot`,
/// every other
/// method forwards to the
/// same-named function of the invoking module's `conv`, `gemm`, `depthwise` and `elementwise`
/// submodules (`requant` goes to `conv::requant_all`). `$why` says why a value of `$arch`
/// proves the target features those `unsafe` functions enable are present.
macro_rules! forward_isa {
    (
        $arch:ty,
        detect: $detect:expr,
        dot: ($dot_ty:ty, $dot:expr),
        $why:literal
    ) => {
        #[doc = concat!("Sound because ", $why, ".")]
        impl Isa for $arch {
            type Dot = $dot_ty;

            #[inline]
            fn detect() -> Option<Self> {
                $detect
            }

            #[inline]
            fn dot(self) -> Option<$dot_ty> {
                $dot
            }

            #[inline]
            fn widen(self, dst: &mut [i16], src: &[i8], offset: i16) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { conv::widen(dst, src, offset) }
            }

            #[inline]
            fn widen_runs(
                self,
                dst: &mut [i16],
                src: &[i8],
                runs: (&[usize], usize),
                pixels: (usize, usize, usize),
                offset: i16,
            ) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { conv::widen_runs(dst, src, runs, pixels, offset) }
            }

            #[inline]
            fn pixel(
                self,
                window: &[i16],
                weights: &[i8],
                per_out: usize,
                block: &ChannelBlock,
                out: &mut [i8],
            ) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { conv::pixel(window, weights, per_out, block, out) }
            }

            #[inline]
            fn pixel2(
                self,
                windows: [&[i16]; 2],
                weights: &[i8],
                per_out: usize,
                block: &ChannelBlock,
                outs: [&mut [i8]; 2],
            ) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { conv::pixel2(windows, weights, per_out, block, outs) }
            }

            #[inline]
            fn pack_panels(self, weights: &[i8], per_out: usize, pairs: usize, packed: &mut [i32]) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { gemm::pack_panels(weights, per_out, pairs, packed) }
            }

            #[inline]
            fn gemm_run(
                self,
                windows: (&[i16], usize),
                pixels: usize,
                panel: &[i32],
                block: (&ChannelBlock, usize),
                out: (&mut [i8], usize, usize),
            ) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { gemm::gemm_run(windows, pixels, panel, block, out) }
            }

            #[inline]
            fn gemm_in_place(
                self,
                src: &[i16],
                windows: (&[usize], &[usize]),
                panel: &[i32],
                block: (&ChannelBlock, usize),
                out: (&mut [i8], usize, usize),
            ) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { gemm::gemm_in_place(src, windows, panel, block, out) }
            }

            #[inline]
            fn pair_row(
                self,
                plane: &[i16],
                wp: usize,
                taps: &[i32],
                kw: usize,
                block: &ChannelBlock,
                out: &mut [i8],
            ) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { conv::pair_row(plane, wp, taps, kw, block, out) }
            }

            #[inline]
            fn depthwise_pixel(
                self,
                rows: &[&[i8]],
                weights: &[$crate::kernels::backend::simd::depthwise::PairWeights],
                offset: i16,
                block: (&ChannelBlock, usize),
                out: &mut [i8],
            ) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { depthwise::depthwise_pixel(rows, weights, offset, block, out) }
            }

            #[inline]
            fn depthwise_row(
                self,
                input: &[i8],
                pixels: (usize, usize, usize),
                rows: (usize, usize, usize),
                taps: &[usize],
                weights: &[$crate::kernels::backend::simd::depthwise::PairWeights],
                offset: i16,
                block: (&ChannelBlock, usize),
                out: (&mut [i8], usize, usize),
            ) -> bool {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe {
                    depthwise::depthwise_row(input, pixels, rows, taps, weights, offset, block, out)
                }
            }

            #[inline]
            fn row_small(
                self,
                windows: (&[i16], usize),
                weights: &SmallWeights,
                block: &ChannelBlock,
                out: (&mut [i8], usize, usize),
            ) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { conv::row_small(windows, weights, block, out) }
            }

            #[cfg(test)]
            fn requant(self, acc: &[i32], block: &ChannelBlock, out: &mut [i8]) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { conv::requant_all(acc, block, out) }
            }

            #[cfg(test)]
            #[inline]
            fn scale_by_lanes(
                self,
                v: &mut [i8],
                att: &[i8],
                zp: i8,
                rq: &TensorRequant,
            ) -> (i32, i8) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { elementwise::scale_by_lanes(v, att, zp, rq) }
            }

            #[inline]
            fn scale_pixels_by_lanes(
                self,
                data: &mut [i8],
                att: &[i8],
                zp: i8,
                rq: &TensorRequant,
                pooled: &mut dyn FnMut(i32, i8),
            ) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { elementwise::scale_pixels_by_lanes(data, att, zp, rq, pooled) }
            }

            #[inline]
            fn scale_pixels_by_one(
                self,
                data: &mut [i8],
                c: usize,
                att: &[i8],
                zp: i8,
                rq: &TensorRequant,
            ) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { elementwise::scale_pixels_by_one(data, c, att, zp, rq) }
            }

            #[cfg(test)]
            #[inline]
            fn scale_by_one(self, v: &mut [i8], att: i8, zp: i8, rq: &TensorRequant) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { elementwise::scale_by_one(v, att, zp, rq) }
            }

            #[inline]
            fn channel_sums(self, data: &[i8], sums: &mut [i32], maxs: &mut [i8]) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { elementwise::channel_sums(data, sums, maxs) }
            }

            #[inline]
            fn add(self, a: &[i8], b: &[i8], out: &mut [i8], k: &AddLanes) {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { elementwise::add(a, b, out, k) }
            }

            #[inline]
            fn pool2d(
                self,
                kind: $crate::kernels::PoolKind,
                p: &$crate::kernels::PoolParams,
                in_shape: $crate::kernels::Shape,
                input: &[i8],
                out_shape: $crate::kernels::Shape,
                output: &mut [i8],
            ) -> bool {
                // SAFETY: a value of the type proves the target features (the impl's doc says why).
                unsafe { elementwise::pool2d(kind, p, in_shape, input, out_shape, output) }
            }
        }
    };
}
pub(crate) use forward_isa;
