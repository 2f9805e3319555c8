//! Weight rounding chosen by the layer's output error instead of round-to-nearest
//! (the objective of AdaRound, Nagel et al. 2020, solved greedily).
//!
//! For one output channel with float weights `w`, int8 input patches `x_q` and float input
//! patches `x_f`, the layer's output error over the calibration rows is
//! `sum (q*s . x_q - w . x_f)^2 = d^T H d + 2 d^T g + const` with `d = q*s - w`,
//! `H = sum x_q x_q^T` and `g = sum x_q (w . (x_q - x_f))`. Each weight may round down or
//! up; starting from nearest, single flips that lower the error are taken until none does.
//! Because `x_q` is what the core really feeds the layer, the rounding also absorbs part
//! of the error every earlier layer left in its input.

/// Rows of `H` filled per pass over the patches: 16 rows of 4608 f64 are 590 KB, which
/// stays in a core's L2 cache while the patch rows stream past.
const GRAM_TILE_ROWS: usize = 16;

/// Rows of one layer's input patches: `rows x n` values, row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patches {
    pub n: usize,
    pub quant: Vec<f64>,
    /// Float rows as tract computes them (f32: exact in f64, half the memory).
    pub float: Vec<f32>,
}

impl Patches {
    pub fn rows(&self) -> usize {
        self.quant.len().checked_div(self.n).unwrap_or(0)
    }

    /// `H = sum x_q x_q^T` (symmetric, `n x n`), shared by every output channel.
    ///
    /// The upper triangle is filled a tile of rows at a time, every patch row streamed
    /// past the tile, so a large `H` (170 MB at `n` = 4608) is not streamed through memory
    /// once per patch row; each entry still sums the rows in their order. Tiles are
    /// independent and shared out over the cores.
    pub fn gram(&self) -> Vec<f64> {
        let n = self.n;
        let mut h = vec![0.0; n * n];
        let mut tiles: Vec<&mut [f64]> = h.chunks_mut(GRAM_TILE_ROWS * n.max(1)).collect();
        crate::cores::map_mut(&mut tiles, |index, tile| {
            let first = index * GRAM_TILE_ROWS;
            let last = (first + GRAM_TILE_ROWS).min(n);
            for row in self.quant.chunks_exact(n) {
                for (i, xi) in row.iter().enumerate().take(last).skip(first) {
                    if *xi == 0.0 {
                        continue;
                    }
                    let hi = &mut tile[(i - first) * n..(i - first + 1) * n];
                    for (hij, xj) in hi.iter_mut().zip(row).skip(i) {
                        *hij += xi * xj;
                    }
                }
            }
        });
        for i in 0..n {
            for j in 0..i {
                h[i * n + j] = h[j * n + i];
            }
        }
        h
    }

    /// `g = sum x_q (w . (x_q - x_f))` for one channel's float weights.
    pub fn cross(&self, w: &[f64]) -> Vec<f64> {
        let n = self.n;
        let mut g = vec![0.0; n];
        for (xq, xf) in self.quant.chunks_exact(n).zip(self.float.chunks_exact(n)) {
            let r: f64 = w
                .iter()
                .zip(xq.iter().zip(xf))
                .map(|(w, (q, f))| w * (q - f64::from(*f)))
                .sum();
            for (gi, q) in g.iter_mut().zip(xq) {
                *gi += q * r;
            }
        }
        g
    }
}

/// Sweeps over the weights before giving up on finding a lowering flip.
const MAX_SWEEPS: usize = 4;

/// The int8 levels for one channel's float weights `w` at symmetric `scale`, each the floor
/// or ceiling of `w / scale`, minimising the output error given `h` and `g` (see the module
/// doc). A weight at the full level ±127 keeps it, so the channel's scale is unchanged.
pub fn round_channel(w: &[f64], scale: f64, h: &[f64], g: &[f64]) -> Vec<i32> {
    let n = w.len();
    let nearest = |x: f64| (x / scale).round().clamp(-127.0, 127.0) as i32;
    let mut q: Vec<i32> = w.iter().map(|x| nearest(*x)).collect();
    if scale <= 0.0 || h.len() != n * n || g.len() != n {
        return q;
    }
    // v = H d + g, kept current as weights flip.
    let d: Vec<f64> = q
        .iter()
        .zip(w)
        .map(|(q, w)| f64::from(*q) * scale - w)
        .collect();
    let mut v: Vec<f64> = (0..n)
        .map(|i| g[i] + (0..n).map(|j| h[i * n + j] * d[j]).sum::<f64>())
        .collect();
    for _ in 0..MAX_SWEEPS {
        let mut flipped = false;
        for k in 0..n {
            if q[k].abs() >= 127 {
                continue;
            }
            let exact = w[k] / scale;
            let other = if f64::from(q[k]) > exact {
                exact.floor()
            } else {
                exact.ceil()
            };
            let other = other.clamp(-127.0, 127.0) as i32;
            if other == q[k] || other.abs() >= 127 {
                continue;
            }
            let delta = f64::from(other - q[k]) * scale;
            let change = 2.0 * delta * v[k] + delta * delta * h[k * n + k];
            if change < 0.0 {
                q[k] = other;
                for (i, vi) in v.iter_mut().enumerate() {
                    *vi += delta * h[i * n + k];
                }
                flipped = true;
            }
        }
        if !flipped {
            break;
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(q: &[i32], scale: f64, w: &[f64], p: &Patches) -> f64 {
        p.quant
            .chunks_exact(p.n)
            .zip(p.float.chunks_exact(p.n))
            .map(|(xq, xf)| {
                let yq: f64 = q
                    .iter()
                    .zip(xq)
                    .map(|(q, x)| f64::from(*q) * scale * x)
                    .sum();
                let yf: f64 = w.iter().zip(xf).map(|(w, x)| w * f64::from(*x)).sum();
                (yq - yf) * (yq - yf)
            })
            .sum()
    }

    fn patches(n: usize, rows: usize) -> Patches {
        let x = crate::quant::testing::weights(n * rows, 7, 1.0);
        // The "int8" input: the float input on a coarse grid.
        let quant = x
            .iter()
            .map(|v| (f64::from(*v) * 8.0).round() / 8.0)
            .collect();
        Patches { n, quant, float: x }
    }

    #[test]
    fn greedy_rounding_beats_nearest_and_stays_next_to_the_weight() {
        let n = 12;
        let p = patches(n, 200);
        let w: Vec<f64> = crate::quant::testing::weights(n, 3, 1.0)
            .iter()
            .map(|v| f64::from(*v))
            .collect();
        let scale = w.iter().fold(0f64, |m, v| m.max(v.abs())) / 127.0;
        let nearest: Vec<i32> = w.iter().map(|v| (v / scale).round() as i32).collect();
        let q = round_channel(&w, scale, &p.gram(), &p.cross(&w));
        assert!(error(&q, scale, &w, &p) < error(&nearest, scale, &w, &p));
        for (q, w) in q.iter().zip(&w) {
            let exact = w / scale;
            assert!(f64::from(*q) == exact.floor() || f64::from(*q) == exact.ceil());
        }
        // The largest weight keeps level ±127, so requantizing gives the same scale.
        assert_eq!(q.iter().map(|v| v.abs()).max(), Some(127));
    }

    /// The tiled Gram matrix sums each entry's rows in order: bit for bit the plain sum,
    /// for a size that is no multiple of the tile and rows with zeros.
    #[test]
    fn tiled_gram_equals_the_row_by_row_sum() {
        let n = 2 * GRAM_TILE_ROWS + 5;
        let mut p = patches(n, 37);
        for v in p.quant.iter_mut().step_by(3) {
            *v = 0.0;
        }
        let mut plain = vec![0.0; n * n];
        for row in p.quant.chunks_exact(n) {
            for (i, xi) in row.iter().enumerate() {
                if *xi == 0.0 {
                    continue;
                }
                for (j, xj) in row.iter().enumerate().skip(i) {
                    plain[i * n + j] += xi * xj;
                }
            }
        }
        for i in 0..n {
            for j in 0..i {
                plain[i * n + j] = plain[j * n + i];
            }
        }
        let tiled = p.gram();
        assert!(tiled
            .iter()
            .zip(&plain)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(tiled.iter().filter(|v| **v != 0.0).count() > n * n / 2);
    }

    #[test]
    fn gram_is_symmetric_sum_of_outer_products() {
        let p = Patches {
            n: 2,
            quant: vec![1.0, 2.0, 3.0, -1.0],
            float: vec![0.0; 4],
        };
        assert_eq!(p.gram(), vec![10.0, -1.0, -1.0, 5.0]);
        assert_eq!(p.rows(), 2);
    }
}
