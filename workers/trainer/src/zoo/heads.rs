//! Distribution heads. A [`Head`] reads the backbone output `(batch, seq, d_model)` and samples
//! `n` paths of `horizon` per-step log returns, in units of the training split's per-bar return
//! standard deviation, as `(batch, n, horizon)`. Sampling is reparameterised: the noise comes
//! from [`Noise`] and the sample is a differentiable function of the head's outputs, so the
//! sample CRPS of the cumulated paths trains every head the same way.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::zoo::fused::{affine_noise, layer_norm, linear, LayerNorm, Linear};

use super::params::{softplus, Noise};
use super::registry::Params;

/// Smallest per-step volatility (in training-return standard deviations).
pub const MIN_SIGMA: f64 = 1e-3;

/// Drift outputs are multiplied by this: a per-bar drift is a few hundredths of a per-bar
/// standard deviation, and over a 288-step horizon an unscaled initial drift of order one would
/// dominate the loss.
pub const DRIFT_SCALE: f64 = 0.02;

/// The per-step standard deviation the distribution heads start from: the increments are
/// standardised log returns, so about one.
const START_SCALE: f64 = 1.0;

/// The standard normal quantile function (Acklam's rational approximation, relative error
/// below 1.2e-9 on (0, 1)).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The inverse of `softplus`: the `x` with `ln(1 + e^x) = y`, for `y > 0`.
fn inverse_softplus(y: f64) -> f64 {
    y + (-(-y).exp_m1()).ln()
}

/// The output layer's weight at a tenth of its generic initialisation, so that at the start
/// the head's outputs are close to the bias the head chooses.
fn quiet_weight(current: &Tensor) -> Result<Option<Tensor>> {
    Ok(Some((current * 0.1)?))
}

/// A bias of `horizon` identical groups of `values`.
fn repeated_bias(current: &Tensor, horizon: usize, values: &[f64]) -> Result<Option<Tensor>> {
    let v: Vec<f32> = (0..horizon)
        .flat_map(|_| values.iter().map(|&x| x as f32))
        .collect();
    if v.len() != current.elem_count() {
        candle_core::bail!(
            "a head bias of {} values cannot start from {} per step over {horizon} steps",
            current.elem_count(),
            values.len()
        )
    }
    Ok(Some(Tensor::from_vec(
        v,
        current.shape(),
        current.device(),
    )?))
}

/// A distribution over future log-return paths.
pub trait Head: Send + Sync {
    /// `(b, s, d)` -> `(b, n, horizon)` per-step log returns (standardised units).
    fn sample(&self, h: &Tensor, n: usize, horizon: usize, noise: &mut Noise) -> Result<Tensor>;

    /// A freshly built head's starting value for its parameter `name` (relative to the head,
    /// e.g. `out.bias`) from the generic initialisation `current`, or `None` to keep it.
    /// Training applies it once before the first step; a loaded checkpoint or a resumed run
    /// overwrites every value, so this changes where training starts, never what a trained
    /// head computes.
    fn reinit(&self, _name: &str, _current: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// The same draw in Gaussian form, for heads whose increments are `mu + sigma * eps`:
    /// the training loss then fuses sampling and scoring ([`crate::zoo::fused::crps_loss_affine`]).
    /// It takes the same noise as [`Head::sample`], so both give the same increments; heads
    /// without that form return `None` and take no noise.
    fn sample_affine(
        &self,
        _h: &Tensor,
        _n: usize,
        _horizon: usize,
        _noise: &mut Noise,
    ) -> Result<Option<Affine>> {
        Ok(None)
    }
}

/// Increments `mu + sigma * eps`: noise `eps (b, n, h)`, `mu` and `sigma` of shape `(b, 1, 1)`
/// or `(b, n, 1)`.
pub struct Affine {
    pub eps: Tensor,
    pub mu: Tensor,
    pub sigma: Tensor,
}

/// Build the head named `name` (a canonical registry name) for `horizon` steps.
pub fn build_head(
    name: &str,
    p: &Params,
    d: usize,
    horizon: usize,
    vb: VarBuilder,
) -> Result<Box<dyn Head>> {
    Ok(match name {
        "GBMHead" => Box::new(GbmHead::new(d, vb)?),
        "StudentTHead" => Box::new(GbmHead::student_t(d, p.f64("df"), vb)?),
        "SDEHead" => Box::new(SdeHead::new(d, p.usize("hidden"), vb)?),
        "MixtureHead" => Box::new(MixtureHead::new(d, p.usize("components"), vb)?),
        "QuantileHead" => Box::new(QuantileHead::new(d, p.usize("quantiles"), horizon, vb)?),
        "CopulaHead" => Box::new(CopulaHead::new(d, p.usize("rank"), horizon, vb)?),
        "FlowHead" => Box::new(FlowHead::new(
            d,
            p.usize("layers"),
            p.usize("hidden"),
            horizon,
            vb,
        )?),
        other => candle_core::bail!("head {other} is not available"),
    })
}

/// The last time step of `(b, s, d)`: `(b, d)`.
fn last_step(h: &Tensor) -> Result<Tensor> {
    let s = h.dim(1)?;
    h.narrow(1, s - 1, 1)?.squeeze(1)
}

fn check_horizon(name: &str, built: usize, asked: usize) -> Result<()> {
    if built != asked {
        candle_core::bail!("{name} was built for a horizon of {built} steps, asked for {asked}");
    }
    Ok(())
}

/// Geometric Brownian motion: one drift `mu` and one volatility `sigma` per sample from the
/// last step (layer norm, linear; `sigma = softplus + 1e-3`); log returns `mu + sigma * eps`
/// i.i.d. over steps (the Ito correction is absorbed in the learned drift); `eps` standard
/// normal, or for the `StudentTHead` unit-variance Student-t.
pub struct GbmHead {
    ln: LayerNorm,
    out: Linear,
    /// `StudentTHead`: the steps are Student-t with these degrees of freedom, scaled to unit
    /// variance (so the width is each step's standard deviation, as the classical anchor
    /// `ewma-tod-t` draws its steps); on the `classical-tod` scale with the anchor's 5 it
    /// starts at exactly the anchor's distribution.
    student_t_df: Option<f64>,
}

impl GbmHead {
    pub fn new(d: usize, vb: VarBuilder) -> Result<Self> {
        Ok(GbmHead {
            ln: layer_norm(d, 1e-5, vb.pp("ln"))?,
            out: linear(d, 2, vb.pp("out"))?,
            student_t_df: None,
        })
    }

    /// The `StudentTHead`: the GBM head with Student-t steps of `df` degrees of freedom.
    pub fn student_t(d: usize, df: f64, vb: VarBuilder) -> Result<Self> {
        if !(df > 2.0 && df.is_finite()) {
            candle_core::bail!("StudentTHead: df must be above 2 (a finite variance), not {df}")
        }
        Ok(GbmHead {
            student_t_df: Some(df),
            ..GbmHead::new(d, vb)?
        })
    }

    /// The window's drift and width, each `(b, 1, 1)`, from the last step.
    fn drift_and_width(&self, h: &Tensor) -> Result<(Tensor, Tensor)> {
        let o = self.out.forward(&self.ln.forward(&last_step(h)?)?)?; // (b, 2)
        let mu = (o.narrow(1, 0, 1)? * DRIFT_SCALE)?.unsqueeze(2)?;
        let sigma = (softplus(&o.narrow(1, 1, 1)?)? + MIN_SIGMA)?.unsqueeze(2)?;
        Ok((mu, sigma))
    }
}

impl Head for GbmHead {
    /// The head starts as the scale's own Gaussian: width [`START_SCALE`], no drift. On the
    /// `classical` scales that is the anchor, so training starts from it and learns the
    /// corrections (a generic start is about 0.69 of the width with a random drift).
    fn reinit(&self, name: &str, current: &Tensor) -> Result<Option<Tensor>> {
        match name {
            "out.weight" => quiet_weight(current),
            "out.bias" => repeated_bias(
                current,
                1,
                &[0.0, inverse_softplus(START_SCALE - MIN_SIGMA)],
            ),
            _ => Ok(None),
        }
    }

    fn sample(&self, h: &Tensor, n: usize, horizon: usize, noise: &mut Noise) -> Result<Tensor> {
        let Some(a) = self.sample_affine(h, n, horizon, noise)? else {
            unreachable!("the GBM head always has an affine form")
        };
        affine_noise(&a.eps, &a.mu, &a.sigma)
    }

    fn sample_affine(
        &self,
        h: &Tensor,
        n: usize,
        horizon: usize,
        noise: &mut Noise,
    ) -> Result<Option<Affine>> {
        let (mu, sigma) = self.drift_and_width(h)?;
        let b = mu.dim(0)?;
        let eps = match self.student_t_df {
            None => noise.normal((b, n, horizon))?,
            Some(df) => (noise.student_t((b, n, horizon), df)? * ((df - 2.0) / df).sqrt())?,
        };
        Ok(Some(Affine { eps, mu, sigma }))
    }
}

/// Neural SDE in log price, `dy = f(c, y, t) dt + g(c, y, t) dW`, integrated by Euler-Maruyama
/// with unit steps; `f` and `g` share one SiLU network of the context (projected once), the
/// state (scaled by `1/sqrt(t+1)`) and the time fraction; `g = softplus + 1e-3`.
pub struct SdeHead {
    ln: LayerNorm,
    ctx: Linear,
    w_state: Tensor,
    w_time: Tensor,
    out: Linear,
}

impl SdeHead {
    pub fn new(d: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let init = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 0.1,
        };
        Ok(SdeHead {
            ln: layer_norm(d, 1e-5, vb.pp("ln"))?,
            ctx: linear(d, hidden, vb.pp("ctx"))?,
            w_state: vb.get_with_hints(hidden, "w_state", init)?,
            w_time: vb.get_with_hints(hidden, "w_time", init)?,
            out: linear(hidden, 2, vb.pp("out"))?,
        })
    }
}

impl Head for SdeHead {
    fn sample(&self, h: &Tensor, n: usize, horizon: usize, noise: &mut Noise) -> Result<Tensor> {
        let c = self
            .ctx
            .forward(&self.ln.forward(&last_step(h)?)?)?
            .unsqueeze(1)?; // (b, 1, hid)
        let b = c.dim(0)?;
        let eps = noise.normal((b, n, horizon))?;
        let mut y = Tensor::zeros((b, n, 1), DType::F32, h.device())?;
        let mut steps = Vec::with_capacity(horizon);
        for t in 0..horizon {
            let frac = t as f64 / horizon.max(1) as f64;
            let state = (&y / ((t + 1) as f64).sqrt())?;
            let z = c
                .broadcast_add(&state.broadcast_mul(&self.w_state)?)?
                .broadcast_add(&(&self.w_time * frac)?)?;
            let fg = self.out.forward(&candle_nn::ops::silu(&z)?)?; // (b, n, 2)
            let drift = (fg.narrow(2, 0, 1)? * DRIFT_SCALE)?;
            let diff = (softplus(&fg.narrow(2, 1, 1)?)? + MIN_SIGMA)?;
            let dy = (drift + (diff * eps.narrow(2, t, 1)?)?)?;
            y = (y + &dy)?;
            steps.push(dy);
        }
        Tensor::cat(&steps, 2)
    }
}

/// Mixture density head: `K` Gaussian regimes (drift, volatility) with mixture weights from the
/// last step; every path draws one regime for the whole horizon. The draw uses the
/// straight-through Gumbel-softmax, so the weights get gradients too.
pub struct MixtureHead {
    ln: LayerNorm,
    out: Linear,
    k: usize,
}

impl MixtureHead {
    pub fn new(d: usize, k: usize, vb: VarBuilder) -> Result<Self> {
        Ok(MixtureHead {
            ln: layer_norm(d, 1e-5, vb.pp("ln"))?,
            out: linear(d, 3 * k, vb.pp("out"))?,
            k,
        })
    }
}

impl Head for MixtureHead {
    fn sample(&self, h: &Tensor, n: usize, horizon: usize, noise: &mut Noise) -> Result<Tensor> {
        let k = self.k;
        let o = self.out.forward(&self.ln.forward(&last_step(h)?)?)?; // (b, 3k)
        let b = o.dim(0)?;
        let mu = (o.narrow(1, 0, k)? * DRIFT_SCALE)?.unsqueeze(1)?; // (b, 1, k)
        let sigma = (softplus(&o.narrow(1, k, k)?)? + MIN_SIGMA)?.unsqueeze(1)?;
        let logits = o.narrow(1, 2 * k, k)?.unsqueeze(1)?;
        let g = noise.gumbel((b, n, k))?;
        let soft = crate::zoo::fused::softmax_last_dim(&g.broadcast_add(&logits)?)?; // (b, n, k)
        let arg = soft.argmax_keepdim(D::Minus1)?; // (b, n, 1)
        let range = Tensor::arange(0u32, k as u32, h.device())?.reshape((1, 1, k))?;
        let hard = range.broadcast_eq(&arg)?.to_dtype(DType::F32)?;
        let onehot = ((hard - soft.detach())? + &soft)?;
        let m = onehot.broadcast_mul(&mu)?.sum_keepdim(2)?; // (b, n, 1)
        let s = onehot.broadcast_mul(&sigma)?.sum_keepdim(2)?;
        let eps = noise.normal((b, n, horizon))?;
        eps.broadcast_mul(&s)?.broadcast_add(&m)
    }
}

/// Quantile head: `Q` monotone quantile knots of each step's log return at levels evenly spaced
/// from 0.5% to 99.5% (first knot plus cumulative softplus increments); a path draws one uniform
/// level per step and reads the piecewise-linear quantile function there (tent-weight
/// interpolation, differentiable in the knots). Tails beyond the outer knots are cut.
pub struct QuantileHead {
    ln: LayerNorm,
    out: Linear,
    q: usize,
    horizon: usize,
}

/// The outer quantile levels of [`QuantileHead`].
pub const QUANTILE_RANGE: (f32, f32) = (0.005, 0.995);

impl QuantileHead {
    pub fn new(d: usize, q: usize, horizon: usize, vb: VarBuilder) -> Result<Self> {
        Ok(QuantileHead {
            ln: layer_norm(d, 1e-5, vb.pp("ln"))?,
            out: linear(d, horizon * q, vb.pp("out"))?,
            q,
            horizon,
        })
    }

    /// The knots `(b, horizon, q)`, non-decreasing along the last axis.
    pub fn knots(&self, h: &Tensor) -> Result<Tensor> {
        let o = self.out.forward(&self.ln.forward(&last_step(h)?)?)?;
        let b = o.dim(0)?;
        let o = o.reshape((b, self.horizon, self.q))?;
        // centre the first knot near the 0.5% normal quantile
        let first = (o.narrow(2, 0, 1)? - 2.5)?;
        let inc = (softplus(&o.narrow(2, 1, self.q - 1)?)? + 1e-4)?;
        Tensor::cat(&[first, inc], 2)?.cumsum(2)
    }
}

impl Head for QuantileHead {
    /// The knots start at a normal distribution's quantiles ([`START_SCALE`]) at every step.
    fn reinit(&self, name: &str, current: &Tensor) -> Result<Option<Tensor>> {
        match name {
            "out.weight" => quiet_weight(current),
            "out.bias" => {
                let (lo, hi) = QUANTILE_RANGE;
                let knot = |j: usize| {
                    let level = lo as f64 + j as f64 * (hi - lo) as f64 / (self.q - 1) as f64;
                    START_SCALE * normal_quantile(level)
                };
                // knots(o) = cumsum(o_0 - 2.5, softplus(o_j) + 1e-4): solve for o
                let values: Vec<f64> = (0..self.q)
                    .map(|j| match j {
                        0 => knot(0) + 2.5,
                        _ => inverse_softplus(knot(j) - knot(j - 1) - 1e-4),
                    })
                    .collect();
                repeated_bias(current, self.horizon, &values)
            }
            _ => Ok(None),
        }
    }

    fn sample(&self, h: &Tensor, n: usize, horizon: usize, noise: &mut Noise) -> Result<Tensor> {
        check_horizon("QuantileHead", self.horizon, horizon)?;
        let knots = self.knots(h)?.unsqueeze(1)?; // (b, 1, H, Q)
        let b = knots.dim(0)?;
        let (lo, hi) = QUANTILE_RANGE;
        let u = noise.uniform((b, n, horizon), lo, hi)?;
        let pos = u.affine(
            (self.q - 1) as f64 / (hi - lo) as f64,
            -(lo as f64) * (self.q - 1) as f64 / (hi - lo) as f64,
        )?;
        let j = Tensor::arange(0u32, self.q as u32, h.device())?
            .to_dtype(DType::F32)?
            .reshape((1, 1, 1, self.q))?;
        let w = pos
            .unsqueeze(3)?
            .broadcast_sub(&j)?
            .abs()?
            .affine(-1.0, 1.0)?
            .relu()?; // (b, n, H, Q)
        w.broadcast_mul(&knots)?.sum(3)
    }
}

/// Gaussian-copula head: per-step sinh-arcsinh marginals (location, scale, skew, tail weight;
/// Jones & Pewsey 2009) joined across the horizon by a Gaussian copula whose correlation is
/// low rank plus diagonal, `z = (F f + e) / sqrt(diag(F F^T) + 1)`, all from the last step. The
/// marginal transform `x = mu + sigma * sinh((asinh(z) + skew) / tail)` maps each standard
/// normal coordinate to its marginal (Phi then the marginal's inverse CDF, in one step).
pub struct CopulaHead {
    ln: LayerNorm,
    out: Linear,
    rank: usize,
    horizon: usize,
}

impl CopulaHead {
    pub fn new(d: usize, rank: usize, horizon: usize, vb: VarBuilder) -> Result<Self> {
        Ok(CopulaHead {
            ln: layer_norm(d, 1e-5, vb.pp("ln"))?,
            out: linear(d, horizon * (4 + rank), vb.pp("out"))?,
            rank,
            horizon,
        })
    }
}

impl Head for CopulaHead {
    /// Every step starts Gaussian ([`START_SCALE`], no skew, tail weight 1) and the steps
    /// start independent (zero copula factors).
    fn reinit(&self, name: &str, current: &Tensor) -> Result<Option<Tensor>> {
        match name {
            "out.weight" => quiet_weight(current),
            "out.bias" => {
                let mut values = vec![
                    0.0,
                    inverse_softplus(START_SCALE - MIN_SIGMA),
                    0.0,
                    inverse_softplus(1.0 - 0.3),
                ];
                values.resize(4 + self.rank, 0.0);
                repeated_bias(current, self.horizon, &values)
            }
            _ => Ok(None),
        }
    }

    fn sample(&self, h: &Tensor, n: usize, horizon: usize, noise: &mut Noise) -> Result<Tensor> {
        check_horizon("CopulaHead", self.horizon, horizon)?;
        let (hz, r) = (self.horizon, self.rank);
        let o = self.out.forward(&self.ln.forward(&last_step(h)?)?)?;
        let b = o.dim(0)?;
        let o = o.reshape((b, hz, 4 + r))?;
        let mu = (o.narrow(2, 0, 1)? * DRIFT_SCALE)?
            .squeeze(2)?
            .unsqueeze(1)?; // (b, 1, H)
        let sigma = (softplus(&o.narrow(2, 1, 1)?)? + MIN_SIGMA)?
            .squeeze(2)?
            .unsqueeze(1)?;
        let skew = (o.narrow(2, 2, 1)?.tanh()? * 2.0)?
            .squeeze(2)?
            .unsqueeze(1)?;
        let tail = (softplus(&o.narrow(2, 3, 1)?)? + 0.3)?
            .squeeze(2)?
            .unsqueeze(1)?;
        let f = (o.narrow(2, 4, r)? / (r as f64).sqrt())?; // (b, H, r)
        let common = noise.normal((b, n, r))?.matmul(&f.t()?.contiguous()?)?; // (b, n, H)
        let norm = (f.sqr()?.sum(2)? + 1.0)?.sqrt()?.unsqueeze(1)?; // (b, 1, H)
        let z = (common + noise.normal((b, n, hz))?)?.broadcast_div(&norm)?;
        let asinh = (&z + (z.sqr()? + 1.0)?.sqrt()?)?.log()?;
        let y = asinh
            .broadcast_add(&skew)?
            .broadcast_div(&tail)?
            .clamp(-20f32, 20f32)?;
        let sinh = ((y.exp()? - y.neg()?.exp()?)? * 0.5)?;
        sinh.broadcast_mul(&sigma)?.broadcast_add(&mu)
    }
}

/// RealNVP-style conditional normalising flow over the horizon's return vector: Gaussian noise
/// passes through affine coupling layers with alternating even/odd masks; each layer's scale
/// (`tanh`-bounded) and shift are computed from the masked coordinates and the context.
pub struct FlowHead {
    ln: LayerNorm,
    layers: Vec<(Linear, Linear, Linear)>,
    masks: Vec<Tensor>,
    horizon: usize,
}

impl FlowHead {
    pub fn new(
        d: usize,
        n_layers: usize,
        hidden: usize,
        horizon: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut layers = Vec::new();
        let mut masks = Vec::new();
        for i in 0..n_layers {
            let v = vb.pp(format!("coupling{i}"));
            layers.push((
                linear(horizon, hidden, v.pp("x"))?,
                linear(d, hidden, v.pp("c"))?,
                linear(hidden, 2 * horizon, v.pp("out"))?,
            ));
            let m: Vec<f32> = (0..horizon).map(|t| ((t + i) % 2) as f32).collect();
            masks.push(Tensor::from_vec(m, horizon, vb.device())?);
        }
        Ok(FlowHead {
            ln: layer_norm(d, 1e-5, vb.pp("ln"))?,
            layers,
            masks,
            horizon,
        })
    }
}

impl Head for FlowHead {
    fn sample(&self, h: &Tensor, n: usize, horizon: usize, noise: &mut Noise) -> Result<Tensor> {
        check_horizon("FlowHead", self.horizon, horizon)?;
        let c = self.ln.forward(&last_step(h)?)?.unsqueeze(1)?; // (b, 1, d)
        let b = c.dim(0)?;
        let mut x = noise.normal((b, n, horizon))?;
        for ((wx, wc, out), m) in self.layers.iter().zip(&self.masks) {
            let keep = x.broadcast_mul(m)?;
            let hid = wx.forward(&keep)?.broadcast_add(&wc.forward(&c)?)?.tanh()?;
            let st = out.forward(&hid)?;
            let s = st.narrow(2, 0, horizon)?.tanh()?;
            let t = (st.narrow(2, horizon, horizon)? * DRIFT_SCALE)?;
            let inv = m.affine(-1.0, 1.0)?;
            let moved = ((&x * s.exp()?)? + t)?.broadcast_mul(&inv)?;
            x = (keep + moved)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoo_normal_quantile_and_inverse_softplus() {
        // scipy.stats.norm.ppf
        for (p, want) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.005, -2.575_829_303_548_901),
            (0.995, 2.575_829_303_548_901),
            (0.1, -1.281_551_565_544_601),
            (1e-6, -4.753_424_308_822_899),
        ] {
            let got = normal_quantile(p);
            assert!(
                (got - want).abs() < 1e-8 * (1.0 + want.abs()),
                "{p}: {got} vs {want}"
            );
        }
        for x in [-3.0, -0.5, 0.0, 0.7, 4.0] {
            let y = (1.0 + f64::exp(x)).ln();
            assert!((inverse_softplus(y) - x).abs() < 1e-9, "{x}");
        }
    }
}
