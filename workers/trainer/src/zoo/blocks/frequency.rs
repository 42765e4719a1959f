//! Frequency-domain blocks: FreTS (frequency MLPs), FEDformer (frequency-enhanced block with
//! decomposition) and Autoformer (auto-correlation with decomposition). The DFT is the matrix
//! form in [`super::Dft`] (candle has no FFT).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::zoo::fused::{layer_norm, linear, LayerNorm, Linear};

use super::{moving_average, Block, BuildCtx, Dft, FeedForward};
use crate::zoo::registry::Params;

const SMALL: candle_nn::Init = candle_nn::Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// A complex linear map `(re, im) @ (wr + i wi) + (br + i bi)` over the last axis.
struct ComplexLinear {
    wr: Tensor,
    wi: Tensor,
    br: Tensor,
    bi: Tensor,
}

impl ComplexLinear {
    fn new(n: usize, vb: VarBuilder) -> Result<Self> {
        Ok(ComplexLinear {
            wr: vb.get_with_hints((n, n), "wr", SMALL)?,
            wi: vb.get_with_hints((n, n), "wi", SMALL)?,
            br: vb.get_with_hints(n, "br", SMALL)?,
            bi: vb.get_with_hints(n, "bi", SMALL)?,
        })
    }

    fn forward(&self, re: &Tensor, im: &Tensor) -> Result<(Tensor, Tensor)> {
        let r = (re.broadcast_matmul(&self.wr)? - im.broadcast_matmul(&self.wi)?)?
            .broadcast_add(&self.br)?;
        let i = (re.broadcast_matmul(&self.wi)? + im.broadcast_matmul(&self.wr)?)?
            .broadcast_add(&self.bi)?;
        Ok((r, i))
    }
}

/// `sign(x) * max(|x| - lambda, 0)`.
fn soft_shrink(x: &Tensor, lambda: f64) -> Result<Tensor> {
    if lambda == 0.0 {
        return Ok(x.clone());
    }
    x.affine(1.0, -lambda)?.relu()? - x.affine(-1.0, -lambda)?.relu()?
}

/// FreTS (Yi et al. 2023, "Frequency-domain MLPs are More Effective Learners in Time Series
/// Forecasting"): the real DFT of each channel's window; a complex-valued MLP across channels
/// (frequency channel learner) then across frequencies (frequency temporal learner), each with
/// ReLU and soft-shrinkage sparsity; the inverse DFT; residual.
pub struct FreTsBlock {
    dft: Dft,
    channel: ComplexLinear,
    temporal: ComplexLinear,
    lambda: f64,
}

impl FreTsBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let dft = Dft::new(c.seq_len, vb.device())?;
        let f = dft.f;
        Ok(FreTsBlock {
            dft,
            channel: ComplexLinear::new(c.d_model, vb.pp("channel"))?,
            temporal: ComplexLinear::new(f, vb.pp("temporal"))?,
            lambda: p.f64("sparsity"),
        })
    }
}

impl Block for FreTsBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let xt = x.transpose(1, 2)?.contiguous()?; // (b, d, l)
        let (re, im) = self.dft.forward(&xt)?; // (b, d, f)
                                               // across channels: (b, f, d)
        let (r, i) = self.channel.forward(
            &re.transpose(1, 2)?.contiguous()?,
            &im.transpose(1, 2)?.contiguous()?,
        )?;
        let r = soft_shrink(&r.relu()?, self.lambda)?;
        let i = soft_shrink(&i.relu()?, self.lambda)?;
        // across frequencies: (b, d, f)
        let (r, i) = self.temporal.forward(
            &r.transpose(1, 2)?.contiguous()?,
            &i.transpose(1, 2)?.contiguous()?,
        )?;
        let r = soft_shrink(&r.relu()?, self.lambda)?;
        let i = soft_shrink(&i.relu()?, self.lambda)?;
        let y = self.dft.inverse(&r, &i)?; // (b, d, l)
        x + y.transpose(1, 2)?
    }
}

/// FEDformer (Zhou et al. 2022, "FEDformer: Frequency Enhanced Decomposed Transformer"): series
/// decomposition (moving-average trend, seasonal remainder); the frequency enhanced block on the
/// seasonal part keeps a fixed subset of Fourier modes (evenly spread over the spectrum, as a
/// deterministic stand-in for the paper's random selection) and mixes channels with one learned
/// complex matrix per mode, then the inverse DFT; a feed-forward on the seasonal part; the trend
/// is passed through.
pub struct FedformerBlock {
    dft: Dft,
    modes: Vec<usize>,
    select: Tensor,
    wr: Tensor,
    wi: Tensor,
    kernel: usize,
    ln: LayerNorm,
    ff: FeedForward,
}

impl FedformerBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let dft = Dft::new(c.seq_len, vb.device())?;
        let m = p.usize("modes").min(dft.f);
        let modes: Vec<usize> = (0..m).map(|i| i * dft.f / m).collect();
        let mut sel = vec![0f32; m * dft.f];
        for (i, &k) in modes.iter().enumerate() {
            sel[i * dft.f + k] = 1.0;
        }
        let d = c.d_model;
        Ok(FedformerBlock {
            select: Tensor::from_vec(sel, (m, dft.f), vb.device())?,
            dft,
            modes,
            wr: vb.get_with_hints((m, d, d), "wr", SMALL)?,
            wi: vb.get_with_hints((m, d, d), "wi", SMALL)?,
            kernel: p.usize("moving_avg").min(c.seq_len.max(2)),
            ln: layer_norm(d, 1e-5, vb.pp("ln"))?,
            ff: FeedForward::new(d, 2 * d, vb.pp("ff"))?,
        })
    }

    fn feb(&self, s: &Tensor) -> Result<Tensor> {
        let st = s.transpose(1, 2)?.contiguous()?; // (b, d, l)
        let (re, im) = self.dft.forward(&st)?; // (b, d, f)
                                               // keep the selected modes: (b, d, m) -> (m, b, d)
        let re = re
            .broadcast_matmul(&self.select.t()?)?
            .permute((2, 0, 1))?
            .contiguous()?;
        let im = im
            .broadcast_matmul(&self.select.t()?)?
            .permute((2, 0, 1))?
            .contiguous()?;
        let r = (re.matmul(&self.wr)? - im.matmul(&self.wi)?)?;
        let i = (re.matmul(&self.wi)? + im.matmul(&self.wr)?)?;
        // back to (b, d, m), scattered into the full spectrum
        let r = r
            .permute((1, 2, 0))?
            .contiguous()?
            .broadcast_matmul(&self.select)?;
        let i = i
            .permute((1, 2, 0))?
            .contiguous()?
            .broadcast_matmul(&self.select)?;
        self.dft.inverse(&r, &i)?.transpose(1, 2)
    }
}

impl Block for FedformerBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        debug_assert!(!self.modes.is_empty());
        let trend = moving_average(x, self.kernel)?;
        let s = (x - &trend)?;
        let s = (&s + self.feb(&s)?)?;
        let s = (&s + self.ff.forward(&self.ln.forward(&s)?)?)?;
        s + trend
    }
}

/// Autoformer (Wu et al. 2021, "Autoformer: Decomposition Transformers with Auto-Correlation for
/// Long-Term Series Forecasting"): series decomposition, and the auto-correlation mechanism on
/// the seasonal part: `R(tau) = IDFT(DFT(q) * conj(DFT(k)))` averaged over channels, the top-k
/// lags (chosen on the batch mean, as the paper's training path does) and time-delay
/// aggregation `sum_i softmax(R(tau_i)) roll(v, -tau_i)`; a feed-forward; the trend passes.
pub struct AutoformerBlock {
    dft: Dft,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    top_k: usize,
    kernel: usize,
    ln: LayerNorm,
    ff: FeedForward,
}

impl AutoformerBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let d = c.d_model;
        Ok(AutoformerBlock {
            dft: Dft::new(c.seq_len, vb.device())?,
            q: linear(d, d, vb.pp("q"))?,
            k: linear(d, d, vb.pp("k"))?,
            v: linear(d, d, vb.pp("v"))?,
            o: linear(d, d, vb.pp("o"))?,
            top_k: p.usize("top_k").min(c.seq_len),
            kernel: p.usize("moving_avg").min(c.seq_len.max(2)),
            ln: layer_norm(d, 1e-5, vb.pp("ln"))?,
            ff: FeedForward::new(d, 2 * d, vb.pp("ff"))?,
        })
    }

    fn auto_correlation(&self, s: &Tensor) -> Result<Tensor> {
        let (_, l, _) = s.dims3()?;
        let tr = |t: Tensor| -> Result<Tensor> { t.transpose(1, 2)?.contiguous() };
        let q = tr(self.q.forward(s)?)?; // (b, d, l)
        let k = tr(self.k.forward(s)?)?;
        let v = self.v.forward(s)?; // (b, l, d)
        let (qr, qi) = self.dft.forward(&q)?;
        let (kr, ki) = self.dft.forward(&k)?;
        let pr = ((&qr * &kr)? + (&qi * &ki)?)?;
        let pi = ((&qi * &kr)? - (&qr * &ki)?)?;
        let corr = self.dft.inverse(&pr, &pi)?.mean(1)?; // (b, l) per lag
        let batch_mean: Vec<f32> = corr.mean(0)?.to_vec1()?;
        let mut lags: Vec<usize> = (0..l).collect();
        lags.sort_by(|&a, &b| batch_mean[b].total_cmp(&batch_mean[a]).then(a.cmp(&b)));
        lags.truncate(self.top_k.max(1));
        let idx = Tensor::from_vec(
            lags.iter().map(|&t| t as u32).collect::<Vec<_>>(),
            lags.len(),
            s.device(),
        )?;
        let w = crate::zoo::fused::softmax_last_dim(&(corr.index_select(&idx, 1)? / l as f64)?)?; // (b, k)
        let mut acc: Option<Tensor> = None;
        for (i, &tau) in lags.iter().enumerate() {
            let rolled = v.roll(-(tau as i32), 1)?;
            let y = rolled.broadcast_mul(&w.narrow(1, i, 1)?.unsqueeze(2)?)?;
            acc = Some(match acc {
                None => y,
                Some(a) => (a + y)?,
            });
        }
        self.o.forward(&acc.expect("at least one lag"))
    }
}

impl Block for AutoformerBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.dim(1)? != self.dft.n {
            candle_core::bail!(
                "AutoformerBlock built for {} bars, got {}",
                self.dft.n,
                x.dim(1)?
            );
        }
        let trend = moving_average(x, self.kernel)?;
        let s = (x - &trend)?;
        let s = (&s + self.auto_correlation(&s)?)?;
        let s = (&s + self.ff.forward(&self.ln.forward(&s)?)?)?;
        s + trend
    }
}
