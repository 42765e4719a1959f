//! The Crypto 1 h competition's volatility term as a differentiable training loss.
//!
//! [`vol_crps`] is `sn50::vol::calculate_vol_crps_for_miner` in candle tensor ops, batched:
//! per block size, step returns in basis points `(p[k+1] - p[k]) / p[k] * 10000` (the simple
//! form, as `vol.rs` and the validator compute them, not log returns), each block's sample
//! standard deviation (ddof = 1) per simulated path and for the realised path, the ensemble CRPS
//! of the paths' block volatilities against the realised one (the sorted form
//! `mean|x - y| - (1/n^2) sum_i (2i - n + 1) x_(i)`, equal to properscoring's
//! `mean|x - y| - 0.5 mean|x - x'|`), summed over the blocks of a size and weighted per size
//! (λ/3, λ/12, λ/36 for 60, 15 and 5 minutes): the validator's own units, so it is added to
//! the price CRPS unnormalised, as `calculate_total_score_for_miner` adds it. Equal to
//! `vol.rs` to float rounding on complete paths (tested in f64), gradient checked against
//! finite differences.
//!
//! [`VolLoss`] puts that term on the scale of the trainer's price loss (see
//! [`VolLoss::price_scale`]) so that `price loss + weight * vol loss` weighs the two parts as the
//! validator's total does.
//!
//! It does not handle missing prices (the validator's `nanstd` skips NaN returns and blocks
//! whose realised volatility is NaN; training windows come from complete bars, so every block
//! is observed), does not clamp log moves as `train::simulate` does, and does not score: the
//! exact evaluation stays with `sn50::vol::miner_total_score`.

use candle_core::{DType, Result, Tensor, D};
use sn50::competition::Competition;
use sn50::constants::ScoringInterval;
use sn50::vol::VolBlock;

/// Added to a block's variance before the square root, in bps²: keeps the gradient finite (zero)
/// for a constant block (variance 0, volatility 1e-12 instead of 0) and changes a volatility of
/// 1 bp by about 5e-25.
const VAR_EPS: f64 = 1e-24;

/// Step returns in basis points along the last axis: `(p[k+1] - p[k]) / p[k] * 10000`.
pub fn bps_returns(p: &Tensor) -> Result<Tensor> {
    let t = p.dim(D::Minus1)?;
    if t < 2 {
        candle_core::bail!("bps_returns: need at least 2 prices along the last axis, got {t}");
    }
    let a = p.narrow(D::Minus1, 0, t - 1)?;
    let b = p.narrow(D::Minus1, 1, t - 1)?;
    ((b - &a)? / a)? * 10_000.0
}

/// Sample standard deviation (ddof = 1) of `n_blocks` consecutive blocks of `steps` values along
/// the last axis (leftovers dropped): `(..., m)` -> `(..., n_blocks)`.
pub fn block_std(r: &Tensor, steps: usize, n_blocks: usize) -> Result<Tensor> {
    if steps < 2 || n_blocks == 0 || steps * n_blocks > r.dim(D::Minus1)? {
        candle_core::bail!(
            "block_std: {n_blocks} blocks of {steps} values do not fit {:?} (steps >= 2)",
            r.dims()
        );
    }
    let last = r.rank() - 1;
    let mut shape = r.dims()[..last].to_vec();
    shape.extend([n_blocks, steps]);
    let r = r.narrow(last, 0, n_blocks * steps)?.reshape(shape)?;
    let dev = r.broadcast_sub(&r.mean_keepdim(D::Minus1)?)?;
    let var = (dev.sqr()?.sum(D::Minus1)? / (steps - 1) as f64)?;
    (var + VAR_EPS)?.sqrt()
}

/// The ensemble CRPS of `x (..., n)` against `y (...)`, sorted form; differentiable in both (the
/// sort only picks indices). `(..., n), (...) -> (...)`.
pub fn ensemble_crps(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let n = x.dim(D::Minus1)?;
    let last = x.rank() - 1;
    let abs = x
        .broadcast_sub(&y.unsqueeze(last)?)?
        .abs()?
        .mean(D::Minus1)?;
    let x = x.contiguous()?;
    let sorted = x.gather(&x.arg_sort_last_dim(true)?, last)?;
    let nf = n as f64;
    let w: Vec<f64> = (0..n)
        .map(|i| (2.0 * i as f64 - nf + 1.0) / (nf * nf))
        .collect();
    let mut wshape = vec![1; last];
    wshape.push(n);
    let w = Tensor::from_vec(w, wshape, x.device())?.to_dtype(x.dtype())?;
    abs - sorted.broadcast_mul(&w)?.sum(D::Minus1)?
}

/// A block size in steps and its weight, from a [`VolBlock`] at `time_increment` seconds per
/// step; `None` where `vol.rs` would never score it (fewer than 2 steps: the validator's
/// `nanstd` of one return is NaN, so every block of that size is skipped).
fn block_steps(b: &VolBlock, time_increment: u64) -> Option<(usize, f64)> {
    let steps = (b.seconds / time_increment.max(1)) as usize;
    (steps >= 2).then_some((steps, b.weight))
}

/// The volatility term per window, in the validator's units: `sims (b, n, T)` simulated prices,
/// `real (b, T)` realised prices, `blocks` as `(steps, weight)`. Returns `(b)`:
/// `sum over sizes of weight * sum over blocks of CRPS(path vols, realised vol)`. A size with no
/// whole block in the `T - 1` returns is left out, as `vol.rs` leaves it out.
pub fn vol_crps(sims: &Tensor, real: &Tensor, blocks: &[(usize, f64)]) -> Result<Tensor> {
    let (b, _n, t) = sims.dims3()?;
    if real.dims() != [b, t] {
        candle_core::bail!(
            "vol_crps: realised paths {:?} do not match simulated paths {:?} (want [{b}, {t}])",
            real.dims(),
            sims.dims()
        );
    }
    let sim_r = bps_returns(sims)?; // (b, n, T-1)
    let real_r = bps_returns(real)?; // (b, T-1)
    let mut total = Tensor::zeros(b, sims.dtype(), sims.device())?;
    for &(steps, weight) in blocks {
        let n_blocks = (t - 1) / steps;
        if steps < 2 || n_blocks == 0 {
            continue;
        }
        let sv = block_std(&sim_r, steps, n_blocks)?.transpose(1, 2)?; // (b, nb, n)
        let rv = block_std(&real_r, steps, n_blocks)?; // (b, nb)
        let c = ensemble_crps(&sv, &rv)?.sum(1)?; // (b)
        total = (total + (c * weight)?)?;
    }
    Ok(total)
}

/// `sum over the price CRPS's terms of sqrt(k)`, k the steps each term's change spans (from the
/// start for `_abs` intervals, whose CRPS the validator divides by the last price, so also in
/// bps): for a forecast that matches a random walk of per-step standard deviation `s` bps, every
/// term's CRPS is about `s * sqrt(k) / sqrt(pi)`, so the price CRPS is about
/// `s * price_terms_sqrt / sqrt(pi)`. The walk of [`sn50::crps::calculate_crps_detailed`]'s term
/// list (strides, `_gaps` cut to one change, `_abs` shortening) on complete paths of `points`
/// prices. 1 h at 1 min: about 228.9.
pub fn price_terms_sqrt(intervals: &[ScoringInterval], time_increment: u64, points: usize) -> f64 {
    let mut s = 0.0;
    for iv in intervals {
        let mut steps = (iv.seconds as f64 / time_increment.max(1) as f64) as usize;
        if steps == 0 {
            continue;
        }
        if iv.is_abs() {
            while points.div_ceil(steps) == 1 && steps > 1 {
                steps -= 1;
            }
        }
        let mut idx: Vec<usize> = (0..points).step_by(steps).collect();
        if iv.is_gap() {
            idx.truncate(2);
        }
        for w in idx.windows(2) {
            let k = if iv.is_abs() { w[1] } else { w[1] - w[0] };
            s += (k as f64).sqrt();
        }
    }
    s
}

/// The volatility term as a training loss, for one competition and horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct VolLoss {
    /// The factor on the term in the training loss (`training.vol_loss_weight`).
    pub weight: f64,
    /// `(steps, weight)` per block size the validator would score on this horizon.
    pub blocks: Vec<(usize, f64)>,
    /// [`price_terms_sqrt`] of the competition's intervals on this horizon.
    pub price_terms_sqrt: f64,
}

impl VolLoss {
    /// The competition's blocks and intervals at its time increment, on paths of `horizon`
    /// steps.
    pub fn new(weight: f64, competition: &Competition, horizon: usize) -> Self {
        let inc = competition.time_increment;
        let blocks = competition
            .vol_blocks
            .iter()
            .filter_map(|b| block_steps(b, inc))
            .filter(|(steps, _)| horizon / steps > 0)
            .collect();
        VolLoss {
            weight,
            blocks,
            price_terms_sqrt: price_terms_sqrt(&competition.scoring_intervals, inc, horizon + 1),
        }
    }

    /// Whether the term changes the loss at all (a weight above 0 and a block to score).
    pub fn is_active(&self) -> bool {
        self.weight > 0.0 && !self.blocks.is_empty() && self.price_terms_sqrt > 0.0
    }

    /// The factor that takes a window's validator-scale term (bps) to the trainer's price-loss
    /// scale: `1 / (10000 * ret_std * price_terms_sqrt)`. The price loss is a mean over horizon
    /// steps of CRPS of cumulative standardised log returns scaled by `1/sqrt(k)`, each about
    /// `sigma / sqrt(pi)` for a matching forecast, while the validator's price CRPS is about
    /// `10000 * ret_std * sigma * price_terms_sqrt / sqrt(pi)` on the same window: dividing the
    /// volatility term by the same factor keeps the validator's ratio of the two parts.
    pub fn price_scale(&self, ret_std: f64) -> f64 {
        1.0 / (10_000.0 * ret_std * self.price_terms_sqrt)
    }

    /// `weight * mean over windows of vol_crps * price_scale(ret_std)`, a scalar of `inc`'s
    /// dtype. `inc (b, n, h)`: standardised per-step log returns from the head; `y (b, h)`:
    /// standardised cumulative realised log returns (`features::AssetWindows::target`);
    /// `ret_std (b)`: each window's asset's `ret_std`. Prices relative to the spot are
    /// `exp(ret_std * cumsum)`, computed in f64 (bps returns of prices near 1 lose digits in
    /// f32).
    pub fn loss(&self, inc: &Tensor, y: &Tensor, ret_std: &Tensor) -> Result<Tensor> {
        let dtype = inc.dtype();
        let (b, n, h) = inc.dims3()?;
        let dev = inc.device();
        let rs = ret_std.to_dtype(DType::F64)?;
        let log_sims = Tensor::cat(
            &[
                Tensor::zeros((b, n, 1), DType::F64, dev)?,
                inc.to_dtype(DType::F64)?.cumsum(D::Minus1)?,
            ],
            2,
        )?
        .broadcast_mul(&rs.reshape((b, 1, 1))?)?;
        let log_real = Tensor::cat(
            &[
                Tensor::zeros((b, 1), DType::F64, dev)?,
                y.to_dtype(DType::F64)?,
            ],
            1,
        )?
        .broadcast_mul(&rs.reshape((b, 1))?)?;
        if log_real.dim(1)? != h + 1 {
            candle_core::bail!(
                "VolLoss: targets {:?} for increments {:?}",
                y.dims(),
                inc.dims()
            );
        }
        let v = vol_crps(&log_sims.exp()?, &log_real.exp()?, &self.blocks)?;
        let scale = ((rs * (10_000.0 * self.price_terms_sqrt))?.recip()? * self.weight)?;
        (v * scale)?.mean_all()?.to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use sn50::constants::{PromptKind, Sn50Config};
    use sn50::crps::Paths;
    use sn50::vol::calculate_vol_crps_for_miner;

    fn crypto_1h() -> Competition {
        Sn50Config::default()
            .scoring(PromptKind::High, "BTC")
            .expect("crypto 1h")
            .clone()
    }

    /// Random-walk prices: `(b, n, t)` simulated and `(b, t)` realised, with per-path scales
    /// (so path volatilities differ) and, when `ties`, a constant path and a repeated path.
    fn random_paths(b: usize, n: usize, t: usize, seed: u64, ties: bool) -> (Vec<f64>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let walk = |sigma: f64, rng: &mut ChaCha8Rng| {
            let mut p = 100.0 * rng.random_range(0.5..2.0);
            let mut out = vec![p];
            for _ in 1..t {
                let z: f64 = rng.random_range(-1.0..1.0) + rng.random_range(-1.0..1.0);
                p *= (sigma * z).exp();
                out.push(p);
            }
            out
        };
        let mut sims = Vec::new();
        let mut real = Vec::new();
        for _ in 0..b {
            for i in 0..n {
                let row = if ties && i == 0 {
                    vec![100.0; t]
                } else if ties && i == 2 {
                    sims[sims.len() - t..].to_vec()
                } else {
                    let s = rng.random_range(0.0002..0.003);
                    walk(s, &mut rng)
                };
                sims.extend(row);
            }
            real.extend(walk(0.001, &mut rng));
        }
        (sims, real)
    }

    fn blocks_of(c: &Competition) -> Vec<(usize, f64)> {
        VolLoss::new(1.0, c, 60).blocks
    }

    /// f64 tensors against `sn50::vol` on the 1 h blocks: relative 1e-10 (the sums run in a
    /// different order from numpy's pairwise sums, so not bit for bit).
    #[test]
    fn vol_crps_equals_sn50_vol_in_f64() {
        let c = crypto_1h();
        let blocks = blocks_of(&c);
        assert_eq!(
            blocks,
            vec![(60, 5.25 / 3.0), (15, 5.25 / 12.0), (5, 5.25 / 36.0)]
        );
        let dev = Device::Cpu;
        for (seed, n, ties) in [(1, 7, false), (2, 32, true), (3, 2, false), (4, 100, true)] {
            let (b, t) = (3, 61);
            let (sims, real) = random_paths(b, n, t, seed, ties);
            let st = Tensor::from_vec(sims.clone(), (b, n, t), &dev).unwrap();
            let rt = Tensor::from_vec(real.clone(), (b, t), &dev).unwrap();
            let got: Vec<f64> = vol_crps(&st, &rt, &blocks).unwrap().to_vec1().unwrap();
            for w in 0..b {
                let p = Paths::from_flat(sims[w * n * t..(w + 1) * n * t].to_vec(), n).unwrap();
                let want =
                    calculate_vol_crps_for_miner(&p, &real[w * t..(w + 1) * t], 60, &c.vol_blocks)
                        .total;
                assert!(want > 0.0);
                let rel = (got[w] - want).abs() / want;
                assert!(rel < 1e-10, "seed {seed} window {w}: {} vs {want}", got[w]);
            }
        }
    }

    /// f32 tensors: relative 1e-3 of the f64 reference (bps returns of prices near 100 keep
    /// about 3 significant digits in f32).
    #[test]
    fn vol_crps_in_f32_is_close() {
        let c = crypto_1h();
        let blocks = blocks_of(&c);
        let (b, n, t) = (2, 16, 61);
        let (sims, real) = random_paths(b, n, t, 9, false);
        let dev = Device::Cpu;
        let st = Tensor::from_vec(sims.clone(), (b, n, t), &dev).unwrap();
        let rt = Tensor::from_vec(real.clone(), (b, t), &dev).unwrap();
        let got: Vec<f32> = vol_crps(
            &st.to_dtype(DType::F32).unwrap(),
            &rt.to_dtype(DType::F32).unwrap(),
            &blocks,
        )
        .unwrap()
        .to_vec1()
        .unwrap();
        for w in 0..b {
            let p = Paths::from_flat(sims[w * n * t..(w + 1) * n * t].to_vec(), n).unwrap();
            let want =
                calculate_vol_crps_for_miner(&p, &real[w * t..(w + 1) * t], 60, &c.vol_blocks)
                    .total;
            assert!(
                (got[w] as f64 - want).abs() / want < 1e-3,
                "{} vs {want}",
                got[w]
            );
        }
    }

    /// The spec's worked example (blocks of 2 steps, weight 1.75; its NaN tail cut off, which
    /// leaves the one observed block).
    #[test]
    fn the_worked_example() {
        let dev = Device::Cpu;
        let sims = Tensor::from_vec(
            vec![100.0, 100.5, 101.0, 100.0, 102.0, 100.0],
            (1, 2, 3),
            &dev,
        )
        .unwrap();
        let real = Tensor::from_vec(vec![100.0f64, 101.0, 102.0], (1, 3), &dev).unwrap();
        let v: Vec<f64> = vol_crps(&sims, &real, &[(2, 1.75)])
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!((v[0] - 122.45355827950422).abs() < 1e-9, "{v:?}");
    }

    #[test]
    fn price_terms_of_the_1h_competition() {
        let c = crypto_1h();
        let s = price_terms_sqrt(&c.scoring_intervals, 60, 61);
        // 60·1 + 30·√2 + 12·√5 + 4·√15 + 2·√30 + √60 (abs) + Σ_{j=1..12} √(5j) (gaps)
        let want = 60.0
            + 30.0 * 2f64.sqrt()
            + 12.0 * 5f64.sqrt()
            + 4.0 * 15f64.sqrt()
            + 2.0 * 30f64.sqrt()
            + 60f64.sqrt()
            + (1..=12).map(|j| (5.0 * j as f64).sqrt()).sum::<f64>();
        assert!((s - want).abs() < 1e-9, "{s} vs {want}");
        let l = VolLoss::new(1.0, &c, 60);
        assert!(l.is_active());
        assert!(!VolLoss::new(0.0, &c, 60).is_active());
        // the 24 h competitions have no volatility term
        let c24 = Sn50Config::default()
            .scoring(PromptKind::Low, "BTC")
            .unwrap()
            .clone();
        assert!(!VolLoss::new(1.0, &c24, 288).is_active());
    }

    /// The loss from increments equals `vol_crps` on the prices they make, times the scale.
    #[test]
    fn loss_from_increments_matches_prices() {
        let c = crypto_1h();
        let l = VolLoss::new(0.5, &c, 60);
        let dev = Device::Cpu;
        let (b, n, h) = (2, 8, 60);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let inc: Vec<f64> = (0..b * n * h)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let yinc: Vec<f64> = (0..b * h).map(|_| rng.random_range(-2.0..2.0)).collect();
        let rs = [0.0008, 0.0015];
        let mut y = Vec::new();
        let mut real = Vec::new();
        let mut sims = Vec::new();
        for w in 0..b {
            let mut c = 0.0;
            real.push(1.0);
            for k in 0..h {
                c += yinc[w * h + k];
                y.push(c);
                real.push((c * rs[w]).exp());
            }
            for p in 0..n {
                let mut c = 0.0;
                sims.push(1.0);
                for k in 0..h {
                    c += inc[(w * n + p) * h + k];
                    sims.push((c * rs[w]).exp());
                }
            }
        }
        let it = Tensor::from_vec(inc, (b, n, h), &dev).unwrap();
        let yt = Tensor::from_vec(y, (b, h), &dev).unwrap();
        let rt = Tensor::from_vec(rs.to_vec(), b, &dev).unwrap();
        let got = l.loss(&it, &yt, &rt).unwrap().to_scalar::<f64>().unwrap();
        let v: Vec<f64> = vol_crps(
            &Tensor::from_vec(sims, (b, n, h + 1), &dev).unwrap(),
            &Tensor::from_vec(real, (b, h + 1), &dev).unwrap(),
            &l.blocks,
        )
        .unwrap()
        .to_vec1()
        .unwrap();
        let want = 0.5 * (v[0] * l.price_scale(rs[0]) + v[1] * l.price_scale(rs[1])) / 2.0;
        assert!(want > 0.0);
        assert!((got - want).abs() / want < 1e-10, "{got} vs {want}");
    }

    /// The gradient of the loss with respect to the increments against central differences, in
    /// f64, on several coordinates.
    #[test]
    fn gradient_matches_finite_differences() {
        let c = crypto_1h();
        let l = VolLoss::new(1.0, &c, 60);
        let dev = Device::Cpu;
        let (b, n, h) = (2, 6, 60);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let inc: Vec<f64> = (0..b * n * h)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let y: Vec<f64> = {
            let mut out = Vec::new();
            for _ in 0..b {
                let mut c = 0.0;
                for _ in 0..h {
                    c += rng.random_range(-2.0..2.0);
                    out.push(c);
                }
            }
            out
        };
        let yt = Tensor::from_vec(y, (b, h), &dev).unwrap();
        let rt = Tensor::from_vec(vec![0.001f64, 0.002], b, &dev).unwrap();
        let var =
            Var::from_tensor(&Tensor::from_vec(inc.clone(), (b, n, h), &dev).unwrap()).unwrap();
        let loss = l.loss(var.as_tensor(), &yt, &rt).unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<f64> = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let f = |x: &[f64]| {
            let t = Tensor::from_vec(x.to_vec(), (b, n, h), &dev).unwrap();
            l.loss(&t, &yt, &rt).unwrap().to_scalar::<f64>().unwrap()
        };
        let eps = 1e-6;
        let mut nonzero = 0;
        for k in [0, 1, 7, 59, 60, 123, 250, 359, 400, 719] {
            let mut up = inc.clone();
            let mut dn = inc.clone();
            up[k] += eps;
            dn[k] -= eps;
            let fd = (f(&up) - f(&dn)) / (2.0 * eps);
            let tol = 1e-6 * (fd.abs() + g[k].abs()) + 1e-9;
            assert!(
                (fd - g[k]).abs() < tol,
                "coordinate {k}: fd {fd} vs autograd {}",
                g[k]
            );
            nonzero += usize::from(g[k].abs() > 1e-8);
        }
        assert!(nonzero >= 8, "gradients mostly zero: {nonzero}");
    }
}
