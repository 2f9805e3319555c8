//! Randomized bit-exactness test of cbam-core's conv2d / depthwise / fully connected on
//! Cortex-M4 (DSP path) against a naive i64 reference (fully connected also on blob-like
//! unaligned constants), and of the fused CBAM op's two
//! scalings over their whole input domain, under QEMU with semihosting.
#![no_std]
#![no_main]

use cbam_core::cbam::{pool_channels, scale_channels_and_pool, scale_pixels, spatial_attention};
use cbam_core::kernels::conv2d::conv2d;
use cbam_core::kernels::depthwise::depthwise_conv2d;
use cbam_core::kernels::fully_connected::fully_connected;
use cbam_core::kernels::{
    CbamMlp, CbamParams, ChannelQuant, Conv2dParams, ConvGeometry, DepthwiseParams,
    FullyConnectedParams, PoolOrder, Shape,
};
use cbam_core::le::I32Le;
use cbam_core::math::{
    div_round_half_away, multiply_by_quantized_multiplier, requantize_to_i8, saturate_i8, ActRange,
    Requant,
};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    // Semihosting exit does not return under QEMU; park the core if it ever does.
    loop {
        cortex_m::asm::wfi();
    }
}

struct Rng(u32);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() as usize) % (hi - lo)
    }
    fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % ((hi - lo + 1) as u32)) as i32
    }
    fn fill(&mut self, b: &mut [i8]) {
        for v in b {
            *v = self.next() as i8;
        }
    }
}

const MAXC: usize = 40;
struct Q {
    bias: [i32; MAXC],
    mult: [i32; MAXC],
    shift: [i32; MAXC],
    bb: [u8; 4 * MAXC],
    mb: [u8; 4 * MAXC],
    sb: [u8; 4 * MAXC],
    in_zp: i32,
    out_zp: i32,
    act: ActRange,
}
impl Q {
    fn new(r: &mut Rng, n: usize) -> Self {
        let mut q = Q {
            bias: [0; MAXC],
            mult: [0; MAXC],
            shift: [0; MAXC],
            bb: [0; 4 * MAXC],
            mb: [0; 4 * MAXC],
            sb: [0; 4 * MAXC],
            in_zp: r.int(-128, 127),
            out_zp: r.int(-128, 127),
            act: ActRange::FULL,
        };
        if r.next() & 1 == 1 {
            let lo = r.int(-128, 20);
            q.act = ActRange::from_words(lo, r.int(lo, 127));
        }
        for c in 0..n {
            q.bias[c] = r.int(-20000, 20000);
            q.mult[c] = if r.next().is_multiple_of(20) {
                0
            } else {
                r.int(1 << 30, i32::MAX)
            };
            q.shift[c] = r.int(-14, 1);
            q.bb[4 * c..4 * c + 4].copy_from_slice(&q.bias[c].to_le_bytes());
            q.mb[4 * c..4 * c + 4].copy_from_slice(&q.mult[c].to_le_bytes());
            q.sb[4 * c..4 * c + 4].copy_from_slice(&q.shift[c].to_le_bytes());
        }
        q
    }
    fn cq(&self, n: usize) -> ChannelQuant<'_> {
        ChannelQuant {
            in_zp: self.in_zp,
            out_zp: self.out_zp,
            act: self.act,
            bias: I32Le::new(&self.bb[..4 * n]),
            mult: I32Le::new(&self.mb[..4 * n]),
            shift: I32Le::new(&self.sb[..4 * n]),
        }
    }
    fn finish(&self, o: usize, acc: i64) -> i8 {
        let v = multiply_by_quantized_multiplier(acc as i32, self.mult[o], self.shift[o])
            .saturating_add(self.out_zp);
        v.max(i32::from(self.act.min)).min(i32::from(self.act.max)) as i8
    }
}

static mut INPUT: [i8; 4096] = [0; 4096];
static mut WEIGHTS: [i8; 16384] = [0; 16384];
static mut OUT: [i8; 8192] = [0; 8192];

#[entry]
fn main() -> ! {
    let (input, weights, out) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(INPUT),
            &mut *core::ptr::addr_of_mut!(WEIGHTS),
            &mut *core::ptr::addr_of_mut!(OUT),
        )
    };
    let mut r = Rng(0x1234_5679);
    let mut checked = 0u32;
    for case in 0..600 {
        let depthwise = case % 3 == 1;
        let fc = case % 3 == 2;
        if fc {
            let (n_in, n_out) = (r.range(1, 200), r.range(1, 20));
            r.fill(&mut input[..n_in]);
            r.fill(&mut weights[..n_in * n_out]);
            let q = Q::new(&mut r, n_out);
            let p = FullyConnectedParams {
                weights: &weights[..n_in * n_out],
                quant: q.cq(n_out),
            };
            fully_connected(&p, &input[..n_in], &mut out[..n_out]).unwrap();
            for o in 0..n_out {
                let mut acc = i64::from(q.bias[o]);
                for i in 0..n_in {
                    acc += i64::from(weights[o * n_in + i])
                        * (i64::from(input[i]) - i64::from(q.in_zp));
                }
                if out[o] != q.finish(o, acc) {
                    hprintln!("FC mismatch case {} o {}", case, o);
                    debug::exit(debug::EXIT_FAILURE);
                }
                checked += 1;
            }
            continue;
        }
        let g = ConvGeometry {
            kh: r.range(1, 5),
            kw: r.range(1, 5),
            stride_h: r.range(1, 3),
            stride_w: r.range(1, 3),
            dil_h: r.range(1, 3),
            dil_w: r.range(1, 3),
            pad_top: r.range(0, 3),
            pad_left: r.range(0, 3),
            pad_bottom: r.range(0, 3),
            pad_right: r.range(0, 3),
        };
        let g = if case % 5 == 0 {
            ConvGeometry::square(3, 1)
        } else {
            g
        };
        let ins = Shape::new(r.range(1, 10), r.range(1, 10), r.range(1, 33));
        let Some((oh, ow)) = g.output_size(ins.h, ins.w) else {
            continue;
        };
        let dm = if depthwise { 1 } else { 0 };
        let outs = Shape::new(oh, ow, if depthwise { ins.c } else { r.range(1, 17) });
        let n_in = ins.h * ins.w * ins.c;
        let n_out = oh * ow * outs.c;
        let n_w = if depthwise {
            g.kh * g.kw * outs.c
        } else {
            outs.c * g.kh * g.kw * ins.c
        };
        if n_in > input.len() || n_out > out.len() || n_w > weights.len() {
            continue;
        }
        r.fill(&mut input[..n_in]);
        r.fill(&mut weights[..n_w]);
        let q = Q::new(&mut r, outs.c);
        if depthwise {
            let p = DepthwiseParams {
                geometry: g,
                depth_multiplier: 1,
                weights: &weights[..n_w],
                quant: q.cq(outs.c),
            };
            depthwise_conv2d(&p, ins, &input[..n_in], outs, &mut out[..n_out]).unwrap();
        } else {
            let p = Conv2dParams {
                geometry: g,
                weights: &weights[..n_w],
                quant: q.cq(outs.c),
            };
            conv2d(&p, ins, &input[..n_in], outs, &mut out[..n_out]).unwrap();
        }
        let _ = dm;
        for oy in 0..oh as i64 {
            for ox in 0..ow as i64 {
                for o in 0..outs.c {
                    let mut acc = i64::from(q.bias[o]);
                    for ky in 0..g.kh as i64 {
                        for kx in 0..g.kw as i64 {
                            let iy =
                                oy * g.stride_h as i64 + ky * g.dil_h as i64 - g.pad_top as i64;
                            let ix =
                                ox * g.stride_w as i64 + kx * g.dil_w as i64 - g.pad_left as i64;
                            if iy < 0 || ix < 0 || iy >= ins.h as i64 || ix >= ins.w as i64 {
                                continue;
                            }
                            let px = (iy as usize * ins.w + ix as usize) * ins.c;
                            if depthwise {
                                let w = weights[(ky as usize * g.kw + kx as usize) * outs.c + o];
                                acc +=
                                    i64::from(w) * (i64::from(input[px + o]) - i64::from(q.in_zp));
                            } else {
                                for i in 0..ins.c {
                                    let w = weights[((o * g.kh + ky as usize) * g.kw
                                        + kx as usize)
                                        * ins.c
                                        + i];
                                    acc += i64::from(w)
                                        * (i64::from(input[px + i]) - i64::from(q.in_zp));
                                }
                            }
                        }
                    }
                    let idx = (oy as usize * ow + ox as usize) * outs.c + o;
                    if out[idx] != q.finish(o, acc) {
                        hprintln!(
                            "mismatch case {} dw {} {:?} {:?}",
                            case,
                            depthwise,
                            g.kh,
                            ins.c
                        );
                        debug::exit(debug::EXIT_FAILURE);
                    }
                    checked += 1;
                }
            }
        }
    }
    checked += fc_in_place(&mut r, input, weights, out);
    checked += cbam_scalings(&mut r);
    checked += cbam_spatial_attention(&mut r);
    checked += cbam_channel_pooling(&mut r);
    hprintln!(
        "PASS: {} outputs bit-exact (conv2d, depthwise, fully connected, CBAM pooling, scalings, spatial attention)",
        checked
    );
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}

/// Bytes of one per-channel constant array at any of the four alignments.
const CONST_BYTES: usize = 4 * MAXC + 3;
static mut FC_CONSTS: [u8; 3 * CONST_BYTES] = [0; 3 * CONST_BYTES];

/// FULLY_CONNECTED as the runtime calls it on a blob read in place: weights and the
/// three per-channel arrays at every byte alignment (the DSP path loads them as
/// unaligned words), output counts that mix the four-, two- and one-row passes, the
/// benchmark's 64->10 layer first, and constants on both the short and the general
/// output stage.
fn fc_in_place(r: &mut Rng, input: &mut [i8], weights: &mut [i8], out: &mut [i8]) -> u32 {
    let consts = unsafe { &mut *core::ptr::addr_of_mut!(FC_CONSTS) };
    let mut checked = 0;
    for case in 0..240 {
        let (n_in, n_out) = match case {
            0 => (64, 10),
            _ => (r.range(1, 131), r.range(1, MAXC + 1)),
        };
        let (w_at, c_at) = (case % 4, (case / 4) % 4);
        let mut q = Q::new(r, n_out);
        if case % 5 == 4 {
            // Biases near the short stage's bound and beyond it.
            for b in &mut q.bias[..n_out] {
                *b = r.int(-(1 << 30), 1 << 30);
            }
        }
        r.fill(&mut input[..n_in]);
        let w = &mut weights[w_at..w_at + n_in * n_out];
        r.fill(w);
        let (bias, rest) = consts.split_at_mut(CONST_BYTES);
        let (mult, shift) = rest.split_at_mut(CONST_BYTES);
        let words = c_at..c_at + 4 * n_out;
        for (o, ((b, m), s)) in bias[words.clone()]
            .chunks_exact_mut(4)
            .zip(mult[words.clone()].chunks_exact_mut(4))
            .zip(shift[words.clone()].chunks_exact_mut(4))
            .enumerate()
        {
            b.copy_from_slice(&q.bias[o].to_le_bytes());
            m.copy_from_slice(&q.mult[o].to_le_bytes());
            s.copy_from_slice(&q.shift[o].to_le_bytes());
        }
        let p = FullyConnectedParams {
            weights: w,
            quant: ChannelQuant {
                in_zp: q.in_zp,
                out_zp: q.out_zp,
                act: q.act,
                bias: I32Le::new(&bias[words.clone()]),
                mult: I32Le::new(&mult[words.clone()]),
                shift: I32Le::new(&shift[words]),
            },
        };
        fully_connected(&p, &input[..n_in], &mut out[..n_out]).unwrap();
        for o in 0..n_out {
            let mut acc = i64::from(q.bias[o]);
            for i in 0..n_in {
                acc += i64::from(w[o * n_in + i]) * (i64::from(input[i]) - i64::from(q.in_zp));
            }
            if out[o] != q.finish(o, acc) {
                hprintln!("FC in place mismatch case {} o {}", case, o);
                debug::exit(debug::EXIT_FAILURE);
            }
            checked += 1;
        }
    }
    checked
}

/// Channels of the scaling tests: every int8 attention value once, plus three channels
/// past a multiple of four (the packed loops' tail).
const SCALE_C: usize = 259;
/// Pixels: every int8 spatial attention value once.
const SCALE_HW: usize = 256;

static mut SCALE_DATA: [i8; SCALE_C * SCALE_HW] = [0; SCALE_C * SCALE_HW];

/// The two CBAM scalings over their whole domain (every int8 input against every
/// attention value) for many requantizer sets, including multipliers of exactly 2^30
/// and below it (the general path) and the compiler's power-of-two form, against
/// `requantize_to_i8`.
fn cbam_scalings(r: &mut Rng) -> u32 {
    let data = unsafe { &mut *core::ptr::addr_of_mut!(SCALE_DATA) };
    let mut checked = 0;
    let fixed = [1 << 30, (1 << 30) + 1, i32::MAX, (1 << 30) - 1];
    for set in 0..24 {
        let mult = match fixed.get(set) {
            Some(&m) => m,
            None => r.int(1 << 30, i32::MAX),
        };
        let shift = match set % 6 {
            0 => -1,
            1 => -22,
            _ => r.int(-14, -1),
        };
        let zp_a = r.int(-128, 127);
        let zp_b = r.int(-128, 127);
        let set = ScalingSet::new(Requant::new(mult, shift), zp_a, zp_b);
        checked += scaling_set(data, set, SCALE_C, PoolOrder::MaxMean);
    }
    // The compiler's power-of-two multipliers on a block after a ReLU (input zero point
    // -128): the packed loops of `arm_dsp::pow2`, every right shift they take, with 259
    // channels (a pixel at a time, a tail) and 256 (all pixels in one loop, both orders);
    // then on an input of either sign.
    for right in 1..=7 {
        for (c, order) in [
            (SCALE_C, PoolOrder::MaxMean),
            (256, PoolOrder::MeanMax),
            (256, PoolOrder::MaxMean),
        ] {
            let zp_b = if right % 2 == 0 {
                -128
            } else {
                r.int(-128, 127)
            };
            let set = ScalingSet::new(Requant::new(1 << 30, -right), -128, zp_b);
            checked += scaling_set(data, set, c, order);
        }
        // Input of either sign (no ReLU before the block), both orders.
        for order in [PoolOrder::MeanMax, PoolOrder::MaxMean] {
            let set = ScalingSet::new(
                Requant::new(1 << 30, -right),
                r.int(-127, 127),
                r.int(-128, 127),
            );
            checked += scaling_set(data, set, 256, order);
        }
    }
    checked
}

/// The constants of [`scaling_set`].
struct ScalingSet {
    rq: Requant,
    zp_a: i32,
    zp_b: i32,
}

impl ScalingSet {
    fn new(rq: Requant, zp_a: i32, zp_b: i32) -> Self {
        Self { rq, zp_a, zp_b }
    }
}

/// The factor table of the channel scaling, word-aligned like scratch in an arena.
#[repr(align(4))]
struct FactorTable([i8; 2 * SCALE_C]);

/// One requantizer: the channel scaling from zero point `zp_a` into `zp_b`, and the
/// spatial scaling from `zp_b` into `zp_a`, both with the requantizer `rq`.
fn scaling_set(data: &mut [i8], set: ScalingSet, c: usize, order: PoolOrder) -> u32 {
    let ScalingSet { rq, zp_a, zp_b } = set;
    let data = &mut data[..c * SCALE_HW];
    let lut = [0i8; 256];
    let p = CbamParams {
        cr: 0,
        order,
        f1: rq,
        zp_f1: zp_b,
        rs: rq,
        out: rq,
        zp_in: zp_a,
        zp_out: zp_a,
        ..block(&lut, c, 1, &[0, 0])
    };
    let value = |px: usize, ch: usize| (px * 7 + ch) as u8 as i8;
    let attention: [i8; SCALE_C] = core::array::from_fn(|i| i as u8 as i8);
    let expect = |v: i8, a: i8, zp_from: i32, zp_to: i32| {
        let x = (i32::from(v) - zp_from) * (i32::from(a) + 128);
        requantize_to_i8(x, rq, zp_to, ActRange::FULL)
    };
    let mut checked = 0;

    for (px, pixel) in data.chunks_exact_mut(c).enumerate() {
        for (ch, v) in pixel.iter_mut().enumerate() {
            *v = value(px, ch);
        }
    }
    let mut maps = [0i8; 2 * SCALE_HW];
    let mut table = FactorTable([0; 2 * SCALE_C]);
    scale_channels_and_pool(&p, data, &attention[..c], &mut maps, &mut table.0);
    for (px, pixel) in data.chunks_exact(c).enumerate() {
        let (mut sum, mut top) = (0i32, i8::MIN);
        for (ch, &out) in pixel.iter().enumerate() {
            let want = expect(value(px, ch), attention[ch], zp_a, zp_b);
            if out != want {
                hprintln!("CBAM channel scaling mismatch {:?} px {} ch {}", rq, px, ch);
                debug::exit(debug::EXIT_FAILURE);
            }
            sum += i32::from(want) - zp_b;
            top = top.max(want);
            checked += 1;
        }
        let mean = saturate_i8(div_round_half_away(sum, c as i32).saturating_add(zp_b));
        let pair = match order {
            PoolOrder::MaxMean => [top, mean],
            PoolOrder::MeanMax => [mean, top],
        };
        if maps[2 * px..2 * px + 2] != pair {
            hprintln!("CBAM channel pooling mismatch {:?} px {}", rq, px);
            debug::exit(debug::EXIT_FAILURE);
        }
    }

    for (px, pixel) in data.chunks_exact_mut(c).enumerate() {
        for (ch, v) in pixel.iter_mut().enumerate() {
            *v = value(px, ch);
        }
    }
    let spatial: [i8; SCALE_HW] = core::array::from_fn(|i| i as u8 as i8);
    let q = CbamParams {
        zp_f1: zp_a,
        zp_out: zp_b,
        ..p
    };
    scale_pixels(&q, data, &spatial);
    for (px, pixel) in data.chunks_exact(c).enumerate() {
        for (ch, &out) in pixel.iter().enumerate() {
            if out != expect(value(px, ch), spatial[px], zp_a, zp_b) {
                hprintln!("CBAM spatial scaling mismatch {:?} px {} ch {}", rq, px, ch);
                debug::exit(debug::EXIT_FAILURE);
            }
            checked += 1;
        }
    }
    checked
}

/// The fused op's spatial attention (its own convolution of the two pooled maps) against
/// the CONV2D kernel checked above plus the sigmoid table, on random maps, kernels of
/// 1 to 11 and sizes up to 30x30, with the zero-point padding at every border.
fn cbam_spatial_attention(r: &mut Rng) -> u32 {
    let data = unsafe { &mut *core::ptr::addr_of_mut!(SCALE_DATA) };
    let (maps, rest) = data.split_at_mut(2 * 30 * 30);
    let (att, rest) = rest.split_at_mut(30 * 30);
    let (want, rest) = rest.split_at_mut(30 * 30);
    let (ws, _) = rest.split_at_mut(11 * 11 * 2);
    let lut: [i8; 256] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) as i8);
    let mut checked = 0;
    for case in 0..120 {
        let k = [1, 3, 5, 7, 9, 11][case % 6];
        let (h, w) = (r.int(1, 30) as usize, r.int(1, 30) as usize);
        for v in maps.iter_mut().chain(ws.iter_mut()) {
            *v = r.int(-128, 127) as i8;
        }
        let p = CbamParams {
            zp_f1: r.int(-128, 127),
            bs: r.int(-5000, 5000),
            rs: Requant::new(r.int(1 << 30, i32::MAX), r.int(-12, -1)),
            zp_s: r.int(-128, 127),
            zp_in: -128,
            zp_out: -128,
            ..block(&lut, 4, k, &ws[..k * k * 2])
        };
        let (bias, mult, shift) = (
            p.bs.to_le_bytes(),
            p.rs.mult.to_le_bytes(),
            p.rs.shift.to_le_bytes(),
        );
        let conv = Conv2dParams {
            geometry: ConvGeometry::square(k, k / 2),
            weights: p.ws,
            quant: ChannelQuant {
                in_zp: p.zp_f1,
                out_zp: p.zp_s,
                act: ActRange::FULL,
                bias: I32Le::new(&bias),
                mult: I32Le::new(&mult),
                shift: I32Le::new(&shift),
            },
        };
        let (maps, att, want) = (&maps[..2 * h * w], &mut att[..h * w], &mut want[..h * w]);
        let ok = conv2d(&conv, Shape::new(h, w, 2), maps, Shape::new(h, w, 1), want).is_ok()
            && spatial_attention(&p, Shape::new(h, w, 4), maps, att).is_ok();
        for v in want.iter_mut() {
            *v = lut[usize::from((*v as u8) ^ 0x80)];
        }
        if !ok || att != want {
            hprintln!(
                "CBAM spatial attention mismatch case {} k {} {}x{}",
                case,
                k,
                h,
                w
            );
            debug::exit(debug::EXIT_FAILURE);
        }
        checked += (h * w) as u32;
    }
    checked
}

/// The fused op's per-channel mean and max over the pixels against a plain loop, with
/// channel counts that are and are not multiples of four and more than 256 pixels (where
/// the packed sums leave their 16-bit lanes).
fn cbam_channel_pooling(r: &mut Rng) -> u32 {
    let data = unsafe { &mut *core::ptr::addr_of_mut!(SCALE_DATA) };
    let lut = [0i8; 256];
    let mut checked = 0;
    for (case, (c, hw)) in [(4, 1), (32, 196), (35, 49), (8, 700), (64, 600), (6, 300)]
        .into_iter()
        .enumerate()
    {
        let zp_in = if case % 2 == 0 {
            -128
        } else {
            r.int(-128, 127)
        };
        let extreme = case == 4;
        for v in data[..c * hw].iter_mut() {
            // One case all at the top, so the 256-pixel blocks sum their largest.
            *v = if extreme { 127 } else { r.int(-128, 127) as i8 };
        }
        let p = CbamParams {
            zp_in,
            ..block(&lut, c, 1, &[0, 0])
        };
        let (mut pa, mut pm) = ([0i8; 64], [0i8; 64]);
        pool_channels(&p, &data[..c * hw], hw, &mut pa[..c], &mut pm[..c]);
        for ch in 0..c {
            let (mut sum, mut top) = (0i32, i8::MIN);
            for &v in data[..c * hw].iter().skip(ch).step_by(c) {
                sum += i32::from(v) - zp_in;
                top = top.max(v);
            }
            let mean = saturate_i8(div_round_half_away(sum, hw as i32).saturating_add(zp_in));
            if pa[ch] != mean || pm[ch] != top {
                hprintln!("CBAM channel pooling mismatch case {} channel {}", case, ch);
                debug::exit(debug::EXIT_FAILURE);
            }
            checked += 2;
        }
    }
    checked
}

/// A CBAM block with empty MLP and every requantizer a plain `2^30 >> 7`: each test sets
/// what its step reads.
fn block<'a>(lut: &'a [i8; 256], c: usize, k: usize, ws: &'a [i8]) -> CbamParams<'a> {
    let empty = I32Le::new(&[]);
    CbamParams {
        c,
        cr: 1,
        k,
        order: PoolOrder::MeanMax,
        mlp: CbamMlp {
            w1: &[],
            b1: empty,
            m1: empty,
            s1: empty,
            zp_h: 0,
            w2: &[],
            b2: empty,
            m2: empty,
            s2: empty,
            zp_z: 0,
        },
        lut_c: lut,
        f1: Requant::new(1 << 30, -7),
        zp_f1: 0,
        ws,
        bs: 0,
        rs: Requant::new(1 << 30, -7),
        zp_s: 0,
        lut_s: lut,
        out: Requant::new(1 << 30, -7),
        zp_in: 0,
        zp_out: 0,
    }
}
