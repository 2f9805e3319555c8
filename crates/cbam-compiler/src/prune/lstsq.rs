//! Ridge-regularised least squares through the normal equations and a Cholesky
//! factorisation, in `f64`.
//!
//! The systems here are small (a few hundred unknowns: one per kept input channel and
//! kernel tap of one conv, plus a bias) and symmetric positive definite once the ridge term
//! is added, so a dense Cholesky is both the simplest and the most stable choice; a general
//! linear-algebra crate would add build time for one factorisation.

/// The normal equations `G x = H` accumulated row by row: `G = Σ pᵀp`, `H = Σ pᵀy`,
/// plus `Σ |y|²` so the residual of any candidate solution can be read off without
/// revisiting the rows.
#[derive(Debug, Clone)]
pub struct NormalEquations {
    /// Unknowns per output (features of a row).
    pub n: usize,
    /// Outputs solved for at once (right-hand sides).
    pub m: usize,
    /// `n x n`, row-major; only the upper triangle is accumulated until [`Self::symmetrize`].
    gram: Vec<f64>,
    /// `n x m`, row-major.
    cross: Vec<f64>,
    /// `Σ y_j²` per output.
    target_energy: Vec<f64>,
    pub rows: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the normal equations are not positive definite (pivot {pivot}); raise the ridge term")]
pub struct NotPositiveDefinite {
    pub pivot: usize,
}

impl NormalEquations {
    pub fn new(n: usize, m: usize) -> Self {
        NormalEquations {
            n,
            m,
            gram: vec![0.0; n * n],
            cross: vec![0.0; n * m],
            target_energy: vec![0.0; m],
            rows: 0,
        }
    }

    /// Adds one observation: features `p` (length `n`) and targets `y` (length `m`).
    pub fn add_row(&mut self, p: &[f64], y: &[f64]) {
        let (n, m) = (self.n, self.m);
        for (i, &pi) in p.iter().enumerate().take(n) {
            if pi == 0.0 {
                continue; // zero padding and ReLU zeros are common: skip their products
            }
            let row = &mut self.gram[i * n..(i + 1) * n];
            for (g, &pj) in row.iter_mut().zip(p).skip(i) {
                *g += pi * pj;
            }
            let out = &mut self.cross[i * m..(i + 1) * m];
            for (h, &yj) in out.iter_mut().zip(y) {
                *h += pi * yj;
            }
        }
        for (e, &yj) in self.target_energy.iter_mut().zip(y) {
            *e += yj * yj;
        }
        self.rows += 1;
    }

    /// Mirrors the accumulated upper triangle into the lower one.
    fn symmetrize(&mut self) {
        let n = self.n;
        for i in 0..n {
            for j in 0..i {
                self.gram[i * n + j] = self.gram[j * n + i];
            }
        }
    }

    /// Squared residual `Σ |y - x p|²` of solution `x` (`n x m`, row-major), summed over
    /// outputs, together with `Σ |y|²` for a relative figure.
    pub fn residual(&mut self, x: &[f64]) -> (f64, f64) {
        self.symmetrize();
        let (n, m) = (self.n, self.m);
        let mut err = 0.0;
        for j in 0..m {
            let col = |i: usize| x.get(i * m + j).copied().unwrap_or(0.0);
            let mut quad = 0.0;
            let mut lin = 0.0;
            for i in 0..n {
                let xi = col(i);
                if xi == 0.0 {
                    continue;
                }
                lin += xi * self.cross[i * m + j];
                let gx: f64 = (0..n).map(|k| self.gram[i * n + k] * col(k)).sum();
                quad += xi * gx;
            }
            err += self.target_energy[j] - 2.0 * lin + quad;
        }
        (err.max(0.0), self.target_energy.iter().sum())
    }

    /// Solves `min Σ|y - x p|² + λ |x - prior|²` with `λ = ridge * mean(diag G)`: the ridge
    /// pulls the solution toward `prior` (the weights before reconstruction), so directions
    /// the data does not determine keep their original values.
    pub fn solve_toward(
        &mut self,
        prior: &[f64],
        ridge: f64,
    ) -> Result<Vec<f64>, NotPositiveDefinite> {
        self.symmetrize();
        let (n, m) = (self.n, self.m);
        let mean_diag = (0..n).map(|i| self.gram[i * n + i]).sum::<f64>() / n.max(1) as f64;
        let lambda = ridge * mean_diag.max(f64::MIN_POSITIVE);
        let mut a = self.gram.clone();
        let mut b = self.cross.clone();
        for i in 0..n {
            a[i * n + i] += lambda;
            for j in 0..m {
                b[i * m + j] += lambda * prior.get(i * m + j).copied().unwrap_or(0.0);
            }
        }
        cholesky_solve(&mut a, n, &mut b, m)?;
        Ok(b)
    }
}

/// Solves `A X = B` in place for symmetric positive definite `A` (`n x n`); `B` (`n x m`)
/// becomes `X`, `A` its Cholesky factor.
pub fn cholesky_solve(
    a: &mut [f64],
    n: usize,
    b: &mut [f64],
    m: usize,
) -> Result<(), NotPositiveDefinite> {
    // A = L Lᵀ, L stored in the lower triangle of `a`.
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if !(d > 0.0 && d.is_finite()) {
            return Err(NotPositiveDefinite { pivot: j });
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    // L Z = B, then Lᵀ X = Z, all right-hand sides together.
    for i in 0..n {
        for k in 0..i {
            let l = a[i * n + k];
            for c in 0..m {
                b[i * m + c] -= l * b[k * m + c];
            }
        }
        let d = a[i * n + i];
        for c in 0..m {
            b[i * m + c] /= d;
        }
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            let l = a[k * n + i];
            for c in 0..m {
                b[i * m + c] -= l * b[k * m + c];
            }
        }
        let d = a[i * n + i];
        for c in 0..m {
            b[i * m + c] /= d;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_known_system() {
        // A = [[4,2],[2,3]], x = [[1, -1],[2, 0.5]] -> B = A x = [[8, -3],[8, -0.5]]
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let mut b = vec![8.0, -3.0, 8.0, -0.5];
        cholesky_solve(&mut a, 2, &mut b, 2).expect("SPD");
        for (got, want) in b.iter().zip([1.0, -1.0, 2.0, 0.5]) {
            assert!((got - want).abs() < 1e-12, "{b:?}");
        }
    }

    #[test]
    fn indefinite_matrix_is_reported() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        let mut b = vec![1.0, 1.0];
        assert_eq!(
            cholesky_solve(&mut a, 2, &mut b, 1),
            Err(NotPositiveDefinite { pivot: 1 })
        );
    }

    #[test]
    fn least_squares_recovers_a_linear_map_and_its_residual_is_zero() {
        // y = 2 p0 - p1 + 0.5 (third feature is the constant 1)
        let mut ne = NormalEquations::new(3, 1);
        for k in 0..20 {
            let (p0, p1) = ((k as f64 * 0.37).sin(), (k as f64 * 0.11).cos());
            ne.add_row(&[p0, p1, 1.0], &[2.0 * p0 - p1 + 0.5]);
        }
        let x = ne.solve_toward(&[0.0; 3], 1e-12).expect("solvable");
        for (got, want) in x.iter().zip([2.0, -1.0, 0.5]) {
            assert!((got - want).abs() < 1e-6, "{x:?}");
        }
        let (err, energy) = ne.residual(&x);
        assert!(err < 1e-9 * energy, "{err} of {energy}");
        let (err_zero, _) = ne.residual(&[0.0; 3]);
        assert!((err_zero - energy).abs() < 1e-9);
    }

    #[test]
    fn a_large_ridge_keeps_the_prior() {
        let mut ne = NormalEquations::new(2, 1);
        for k in 0..10 {
            let p = k as f64;
            ne.add_row(&[p, 1.0], &[3.0 * p]);
        }
        let x = ne.solve_toward(&[1.0, 0.0], 1e9).expect("solvable");
        assert!((x[0] - 1.0).abs() < 1e-3 && x[1].abs() < 1e-3, "{x:?}");
    }
}
