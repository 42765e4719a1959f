//! GARCH(1,1) and GJR-GARCH(1,1) forecasters: classical anchors with volatility clustering and
//! volatility of volatility, fitted on each request's own history.
//!
//! For every request, [`Garch`] takes the consecutive log returns of the bars that closed before
//! the request (the last `lookback_days`), optionally divides out the UTC hour-of-day variance
//! profile, and fits `h[t+1] = ω + (α + γ·1[r[t] < 0])·r[t]² + β·h[t]` by Gaussian quasi maximum
//! likelihood with variance targeting (`ω = v̄·(1 − α − β − γ/2)`, `v̄` the sample variance),
//! minimising with a small Nelder–Mead over an unconstrained parametrisation that keeps the
//! process stationary (persistence below 0.999). Paths then run the fitted recursion forward, bar
//! by bar, each path with its own variance, so the simulated distribution has the fat tails and
//! clustering that a constant-width walk lacks; innovations are Gaussian or unit-variance
//! Student-t.
//!
//! Names (`--model` / `--reference`): `garch`, `garch-t`, `garch-tod`, `garch-tod-t`,
//! `gjr-tod-t` (the asymmetric, leverage-effect variant).
//!
//! It does not estimate a mean (paths have zero drift), does not fit the Student-t degrees of
//! freedom (5, as for [`super::classical::Ewma`]), and does not treat a market closure as
//! anything but a gap: returns across a gap are skipped, the recursion runs on through it.

use rand::RngCore;

use super::classical::{check_request, profile_if, returns_before, too_few, Innovations};
use super::crps::Paths;
use super::forecast::{ForecastError, ForecastRequest, Forecaster};

/// The names [`Garch::by_name`] knows.
pub const GARCH_MODELS: &[&str] = &["garch", "garch-t", "garch-tod", "garch-tod-t", "gjr-tod-t"];

/// The highest persistence (`α + β + γ/2`) a fit may reach.
const MAX_PERSISTENCE: f64 = 0.999;

/// A GARCH-family random walk (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Garch {
    name: String,
    /// How much history is fitted, in days.
    pub lookback_days: f64,
    /// GJR: a negative return raises the next variance by `γ·r²` more than a positive one.
    pub asymmetric: bool,
    /// Student-t innovations with these degrees of freedom (unit variance); Gaussian if None.
    pub student_t_df: Option<f64>,
    /// Divide out (and put back) the hour-of-day variance profile.
    pub time_of_day: bool,
    /// Multiplies every simulated return (1 = as fitted).
    pub width: f64,
    /// The fewest returns a fit may rest on.
    pub min_returns: usize,
}

/// A fitted GARCH(1,1) / GJR(1,1) on (possibly deseasonalised) returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GarchFit {
    pub omega: f64,
    pub alpha: f64,
    pub gamma: f64,
    pub beta: f64,
    /// The variance of the next bar after the last fitted return.
    pub next_variance: f64,
    /// The mean negative Gaussian log likelihood per return (up to a constant).
    pub nll: f64,
}

impl GarchFit {
    /// `α + β + γ/2`: how slowly a variance shock decays.
    pub fn persistence(&self) -> f64 {
        self.alpha + self.beta + self.gamma / 2.0
    }

    /// The variance the recursion reverts to.
    pub fn unconditional_variance(&self) -> f64 {
        self.omega / (1.0 - self.persistence())
    }

    /// The next variance after a return `r` at variance `h`.
    pub fn step(&self, h: f64, r: f64) -> f64 {
        let a = if r < 0.0 {
            self.alpha + self.gamma
        } else {
            self.alpha
        };
        self.omega + a * r * r + self.beta * h
    }
}

impl Garch {
    /// A named variant (see [`GARCH_MODELS`]).
    pub fn by_name(name: &str) -> Option<Garch> {
        if !GARCH_MODELS.contains(&name) {
            return None;
        }
        Some(Garch {
            name: name.to_string(),
            lookback_days: 30.0,
            asymmetric: name.starts_with("gjr"),
            student_t_df: name.ends_with("-t").then_some(5.0),
            time_of_day: name.contains("-tod"),
            width: 1.0,
            min_returns: 500,
        })
    }
}

/// The logistic function.
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `(α, β, γ)` from the unconstrained parameters: the persistence through a sigmoid, its split
/// between α, β and γ/2 through a softmax.
fn unpack(x: &[f64], asymmetric: bool) -> (f64, f64, f64) {
    let p = MAX_PERSISTENCE * sigmoid(x[0]);
    let e = [x[1].exp(), 1.0, if asymmetric { x[2].exp() } else { 0.0 }];
    let sum: f64 = e.iter().sum();
    (p * e[0] / sum, p * e[1] / sum, 2.0 * p * e[2] / sum)
}

/// Fit a GARCH(1,1) (or GJR with `asymmetric`) to returns by Gaussian QMLE with variance
/// targeting. Returns `None` when the returns carry no variance.
pub fn fit(returns: &[f64], asymmetric: bool) -> Option<GarchFit> {
    let n = returns.len();
    if n < 2 {
        return None;
    }
    let var = returns.iter().map(|r| r * r).sum::<f64>() / n as f64;
    if !(var.is_finite() && var > 0.0) {
        return None;
    }
    // work in units of the sample standard deviation: the likelihood is then well scaled
    let scale = var.sqrt();
    let z: Vec<f64> = returns.iter().map(|r| r / scale).collect();
    let nll_of = |x: &[f64]| -> f64 {
        let (alpha, beta, gamma) = unpack(x, asymmetric);
        let omega = 1.0 - alpha - beta - gamma / 2.0;
        let mut h = 1.0f64;
        let mut total = 0.0;
        for &r in &z {
            total += h.ln() + r * r / h;
            let a = if r < 0.0 { alpha + gamma } else { alpha };
            h = omega + a * r * r + beta * h;
        }
        let v = 0.5 * total / n as f64;
        if v.is_finite() {
            v
        } else {
            f64::MAX
        }
    };
    // start from α = 0.05, β = 0.90 (γ = 0.04 for GJR)
    let start = if asymmetric {
        vec![
            (0.97 / MAX_PERSISTENCE / (1.0 - 0.97 / MAX_PERSISTENCE)).ln(),
            (0.05f64 / 0.90).ln(),
            (0.02f64 / 0.90).ln(),
        ]
    } else {
        vec![
            (0.95 / MAX_PERSISTENCE / (1.0 - 0.95 / MAX_PERSISTENCE)).ln(),
            (0.05f64 / 0.90).ln(),
        ]
    };
    let (x, nll) = nelder_mead(&nll_of, &start, 0.5, 400);
    let (alpha, beta, gamma) = unpack(&x, asymmetric);
    let omega = 1.0 - alpha - beta - gamma / 2.0;
    let mut h = 1.0;
    for &r in &z {
        let a = if r < 0.0 { alpha + gamma } else { alpha };
        h = omega + a * r * r + beta * h;
    }
    Some(GarchFit {
        omega: omega * var,
        alpha,
        gamma,
        beta,
        next_variance: h * var,
        nll,
    })
}

/// Minimise `f` from `start` by Nelder–Mead (reflection, expansion, contraction, shrink), with
/// an initial simplex of `step` along each axis, for at most `max_evals` evaluations or until
/// the simplex's values agree to 1e-10.
pub fn nelder_mead(
    f: &dyn Fn(&[f64]) -> f64,
    start: &[f64],
    step: f64,
    max_evals: usize,
) -> (Vec<f64>, f64) {
    let d = start.len();
    let mut pts: Vec<Vec<f64>> = vec![start.to_vec()];
    for i in 0..d {
        let mut p = start.to_vec();
        p[i] += step;
        pts.push(p);
    }
    let mut vals: Vec<f64> = pts.iter().map(|p| f(p)).collect();
    let mut evals = d + 1;
    let along = |a: &[f64], b: &[f64], t: f64| -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x + t * (y - x)).collect()
    };
    while evals < max_evals {
        let mut order: Vec<usize> = (0..=d).collect();
        order.sort_by(|&a, &b| vals[a].total_cmp(&vals[b]));
        pts = order.iter().map(|&i| pts[i].clone()).collect();
        vals = order.iter().map(|&i| vals[i]).collect();
        if (vals[d] - vals[0]).abs() <= 1e-10 * (1.0 + vals[0].abs()) {
            break;
        }
        let centroid: Vec<f64> = (0..d)
            .map(|j| pts[..d].iter().map(|p| p[j]).sum::<f64>() / d as f64)
            .collect();
        let reflected = along(&centroid, &pts[d], -1.0);
        let fr = f(&reflected);
        evals += 1;
        if fr < vals[0] {
            let expanded = along(&centroid, &pts[d], -2.0);
            let fe = f(&expanded);
            evals += 1;
            if fe < fr {
                pts[d] = expanded;
                vals[d] = fe;
            } else {
                pts[d] = reflected;
                vals[d] = fr;
            }
        } else if fr < vals[d - 1] {
            pts[d] = reflected;
            vals[d] = fr;
        } else {
            let contracted = if fr < vals[d] {
                along(&centroid, &reflected, 0.5)
            } else {
                along(&centroid, &pts[d], 0.5)
            };
            let fc = f(&contracted);
            evals += 1;
            if fc < vals[d].min(fr) {
                pts[d] = contracted;
                vals[d] = fc;
            } else {
                for i in 1..=d {
                    pts[i] = along(&pts[0], &pts[i], 0.5);
                    vals[i] = f(&pts[i]);
                }
                evals += d;
            }
        }
    }
    let best = (0..=d)
        .min_by(|&a, &b| vals[a].total_cmp(&vals[b]))
        .unwrap_or(0);
    (pts[best].clone(), vals[best])
}

impl Forecaster for Garch {
    fn name(&self) -> &str {
        &self.name
    }

    fn forecast(
        &self,
        req: &ForecastRequest<'_>,
        rng: &mut dyn RngCore,
    ) -> Result<Paths, ForecastError> {
        let bars = check_request(&self.name, req)?;
        let rets = returns_before(bars, req.as_of, self.lookback_days);
        if rets.len() < self.min_returns {
            return Err(too_few(&self.name, req, rets.len(), self.min_returns));
        }
        let profile = profile_if(self.time_of_day, &rets, bars, req.as_of, self.lookback_days);
        let z: Vec<f64> = rets
            .iter()
            .map(|(t, r)| r / profile.at(*t).sqrt())
            .collect();
        let g = fit(&z, self.asymmetric).ok_or_else(|| {
            ForecastError::Model(format!(
                "{}: the returns of {} before the request carry no variance",
                self.name, req.asset
            ))
        })?;
        if !(g.next_variance.is_finite() && g.next_variance >= 0.0) {
            return Err(ForecastError::BadSigma(g.next_variance));
        }
        // simulate bar by bar when the grid is a whole number of bars, else step by the grid
        // with the variance scaled to its length
        let bar = bars.bar_seconds as u64;
        let (sub, scale) = if req.time_increment % bar == 0 {
            ((req.time_increment / bar) as usize, 1.0)
        } else {
            (1, req.time_increment as f64 / bar as f64)
        };
        let sub_seconds = req.time_increment as i64 / sub as i64;
        let steps = (req.time_length / req.time_increment) as usize;
        let sd_hour: Vec<f64> = (0..steps * sub)
            .map(|j| profile.at(req.start_time + j as i64 * sub_seconds).sqrt() * self.width)
            .collect();
        let innov = Innovations::new(self.student_t_df)?;
        let mut data = Vec::with_capacity(req.num_simulations * (steps + 1));
        for _ in 0..req.num_simulations {
            let mut h = g.next_variance;
            let mut log_p = req.spot.ln();
            data.push(req.spot);
            for k in 0..steps {
                for j in 0..sub {
                    let e = (h * scale).sqrt() * innov.sample(rng);
                    log_p += e * sd_hour[k * sub + j];
                    h = g.step(h, e / scale.sqrt());
                }
                data.push(log_p.exp());
            }
        }
        Paths::from_flat(data, req.num_simulations).map_err(|e| ForecastError::Model(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Bars;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    /// A simulated GJR-GARCH return series with known parameters.
    fn simulate(g: &GarchFit, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let z = Normal::new(0.0, 1.0).unwrap();
        let mut h = g.unconditional_variance();
        (0..n)
            .map(|_| {
                let r = h.sqrt() * z.sample(&mut rng);
                h = g.step(h, r);
                r
            })
            .collect()
    }

    #[test]
    fn the_fit_recovers_known_parameters() {
        let truth = GarchFit {
            omega: 1e-6 * (1.0 - 0.08 - 0.9),
            alpha: 0.08,
            gamma: 0.0,
            beta: 0.9,
            next_variance: 0.0,
            nll: 0.0,
        };
        let r = simulate(&truth, 20_000, 7);
        let g = fit(&r, false).unwrap();
        assert!((g.alpha - 0.08).abs() < 0.02, "{g:?}");
        assert!((g.beta - 0.9).abs() < 0.03, "{g:?}");
        assert_eq!(g.gamma, 0.0);
        assert!(g.persistence() < MAX_PERSISTENCE);
        let rel = g.unconditional_variance() / 1e-6;
        assert!(rel > 0.8 && rel < 1.25, "{rel}");
        // the leverage term is found where it is, and near zero where it is not
        let lev = GarchFit {
            alpha: 0.02,
            gamma: 0.12,
            omega: 1e-6 * (1.0 - 0.02 - 0.88 - 0.06),
            beta: 0.88,
            ..truth
        };
        let g = fit(&simulate(&lev, 20_000, 8), true).unwrap();
        assert!(g.gamma > 0.07 && g.alpha < 0.06, "{g:?}");
        let g = fit(&r, true).unwrap();
        assert!(g.gamma < 0.04, "{g:?}");
        assert!(fit(&[0.0; 100], false).is_none());
    }

    #[test]
    fn nelder_mead_finds_a_quadratic_minimum() {
        let f = |x: &[f64]| (x[0] - 1.0).powi(2) + 10.0 * (x[1] + 2.0).powi(2);
        let (x, v) = nelder_mead(&f, &[0.0, 0.0], 0.5, 500);
        assert!(
            (x[0] - 1.0).abs() < 1e-3 && (x[1] + 2.0).abs() < 1e-3,
            "{x:?}"
        );
        assert!(v < 1e-6);
    }

    fn bars_from(r: &[f64]) -> Bars {
        let mut s = String::from("timestamp,open,high,low,close,volume\n");
        let mut p = 100.0f64;
        s.push_str(&format!("0,{p},{p},{p},{p},1\n"));
        for (k, x) in r.iter().enumerate() {
            p *= x.exp();
            s.push_str(&format!("{},{p},{p},{p},{p},1\n", (k as i64 + 1) * 300));
        }
        Bars::parse_csv(&s, 300, "t").unwrap()
    }

    #[test]
    fn paths_follow_the_fitted_variance_and_only_the_past() {
        let truth = GarchFit {
            omega: 4e-6 * 0.05,
            alpha: 0.1,
            gamma: 0.0,
            beta: 0.85,
            next_variance: 0.0,
            nll: 0.0,
        };
        let r = simulate(&truth, 8000, 3);
        let b = bars_from(&r);
        let start = 8000 * 300 + 300;
        let req = ForecastRequest {
            asset: "BTC".into(),
            start_time: start,
            time_increment: 300,
            time_length: 86_400,
            num_simulations: 2000,
            spot: 50.0,
            history: Some(&b),
            as_of: start - 60,
        };
        let m = Garch::by_name("garch-t").unwrap();
        let p = m.forecast(&req, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!((p.n_paths(), p.n_points()), (2000, 289));
        assert_eq!(p.row(0)[0], 50.0);
        // over a day the variance reverts towards the unconditional 4e-6 per bar
        let last: Vec<f64> = (0..2000).map(|i| (p.row(i)[288] / 50.0).ln()).collect();
        let v = last.iter().map(|x| x * x).sum::<f64>() / 2000.0 / 288.0;
        assert!(v > 2.5e-6 && v < 6.5e-6, "{v}");
        // the same seed gives the same paths; bars after as_of change nothing
        let again = m.forecast(&req, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!(p, again);
        let longer = bars_from(&[r.clone(), vec![0.05; 50]].concat());
        let req2 = ForecastRequest {
            history: Some(&longer),
            ..req.clone()
        };
        assert_eq!(
            p,
            m.forecast(&req2, &mut ChaCha8Rng::seed_from_u64(1))
                .unwrap()
        );
        // too little history is an error that says how much is needed
        let short = bars_from(&r[..100]);
        let req3 = ForecastRequest {
            history: Some(&short),
            start_time: 101 * 300 + 300,
            as_of: 101 * 300 + 240,
            ..req.clone()
        };
        let e = m
            .forecast(&req3, &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap_err();
        assert!(e.to_string().contains("500 needed"), "{e}");
        assert!(Garch::by_name("garch-x").is_none());
        assert!(Garch::by_name("gjr-tod-t").unwrap().asymmetric);
    }
}
