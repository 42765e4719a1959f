//! Convolutional blocks: TCN and WaveNet (dilated causal 1-D convolutions) and TimesNet
//! (period folding into 2-D and 2-D convolutions).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{conv1d, conv2d, Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, VarBuilder};

use super::{pad_left, Block, BuildCtx, Dft};
use crate::zoo::registry::Params;

fn dilated(c_in: usize, c_out: usize, k: usize, dilation: usize, vb: VarBuilder) -> Result<Conv1d> {
    conv1d(
        c_in,
        c_out,
        k,
        Conv1dConfig {
            dilation,
            ..Default::default()
        },
        vb,
    )
}

/// Temporal Convolutional Network (Bai, Kolter & Koltun 2018, "An Empirical Evaluation of
/// Generic Convolutional and Recurrent Networks for Sequence Modeling"): residual blocks of two
/// dilated causal convolutions with ReLU, the dilation doubling per level (weight normalisation
/// and dropout left out).
pub struct TcnBlock {
    levels: Vec<(Conv1d, Conv1d, usize)>,
    k: usize,
}

impl TcnBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let k = p.usize("kernel_size");
        let levels = (0..p.usize("levels"))
            .map(|i| {
                let dil = 1usize << i;
                Ok((
                    dilated(c.d_model, c.d_model, k, dil, vb.pp(format!("l{i}a")))?,
                    dilated(c.d_model, c.d_model, k, dil, vb.pp(format!("l{i}b")))?,
                    dil,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TcnBlock { levels, k })
    }
}

impl Block for TcnBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.transpose(1, 2)?.contiguous()?; // (b, d, l)
        for (a, b, dil) in &self.levels {
            let pad = (self.k - 1) * dil;
            let y = a.forward(&pad_left(&h, pad)?)?.relu()?;
            let y = b.forward(&pad_left(&y, pad)?)?.relu()?;
            h = (h + y)?;
        }
        h.transpose(1, 2)
    }
}

/// WaveNet (van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio"): stacked
/// gated activation units `tanh(W_f * x) . sigmoid(W_g * x)` on dilated causal convolutions
/// (dilation doubling per layer), each with a 1x1 residual and a 1x1 skip output; the block
/// returns the residual stream plus the projected sum of skips.
pub struct WaveNetBlock {
    layers: Vec<(Conv1d, Conv1d, Conv1d, Conv1d, usize)>,
    k: usize,
    out: Conv1d,
}

impl WaveNetBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let k = p.usize("kernel_size");
        let d = c.d_model;
        let layers = (0..p.usize("layers"))
            .map(|i| {
                let dil = 1usize << i;
                let v = vb.pp(format!("l{i}"));
                Ok((
                    dilated(d, d, k, dil, v.pp("filter"))?,
                    dilated(d, d, k, dil, v.pp("gate"))?,
                    conv1d(d, d, 1, Default::default(), v.pp("res"))?,
                    conv1d(d, d, 1, Default::default(), v.pp("skip"))?,
                    dil,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WaveNetBlock {
            layers,
            k,
            out: conv1d(d, d, 1, Default::default(), vb.pp("out"))?,
        })
    }
}

impl Block for WaveNetBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.transpose(1, 2)?.contiguous()?;
        let mut skip: Option<Tensor> = None;
        for (f, g, res, sk, dil) in &self.layers {
            let hp = pad_left(&h, (self.k - 1) * dil)?;
            let z = (f.forward(&hp)?.tanh()? * candle_nn::ops::sigmoid(&g.forward(&hp)?)?)?;
            h = (h + res.forward(&z)?)?;
            let s = sk.forward(&z)?;
            skip = Some(match skip {
                None => s,
                Some(acc) => (acc + s)?,
            });
        }
        let out = match skip {
            Some(s) => (h + self.out.forward(&s.relu()?)?)?,
            None => h,
        };
        out.transpose(1, 2)
    }
}

/// An inception-style 2-D convolution: the mean of a 1x1 and a 3x3 kernel.
struct Inception {
    k1: Conv2d,
    k3: Conv2d,
}

impl Inception {
    fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Inception {
            k1: conv2d(c_in, c_out, 1, Default::default(), vb.pp("k1"))?,
            k3: conv2d(
                c_in,
                c_out,
                3,
                Conv2dConfig {
                    padding: 1,
                    ..Default::default()
                },
                vb.pp("k3"),
            )?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        (self.k1.forward(x)? + self.k3.forward(x)?)? * 0.5
    }
}

/// TimesNet (Wu et al. 2023, "TimesNet: Temporal 2D-Variation Modeling for General Time Series
/// Analysis"): the top-k frequencies of the batch's DFT amplitude give periods `p = seq / f`; the
/// series is zero-padded and folded into a `(cycles, p)` 2-D map per channel, processed by
/// inception 2-D convolutions (intra- and inter-period variation together), unfolded, and the k
/// results summed with softmax weights from each sample's amplitudes; residual.
pub struct TimesNetBlock {
    dft: Dft,
    top_k: usize,
    conv_a: Inception,
    conv_b: Inception,
}

impl TimesNetBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let dff = p.usize("d_ff");
        Ok(TimesNetBlock {
            dft: Dft::new(c.seq_len, vb.device())?,
            top_k: p.usize("top_k"),
            conv_a: Inception::new(c.d_model, dff, vb.pp("a"))?,
            conv_b: Inception::new(dff, c.d_model, vb.pp("b"))?,
        })
    }
}

impl Block for TimesNetBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        if l != self.dft.n {
            candle_core::bail!("TimesNetBlock built for {} bars, got {l}", self.dft.n);
        }
        let xt = x.transpose(1, 2)?.contiguous()?; // (b, d, l)
        let (re, im) = self.dft.forward(&xt)?;
        let amp = (re.sqr()? + im.sqr()?)?.sqrt()?.mean(1)?; // (b, f)
        let mean_amp: Vec<f32> = amp.mean(0)?.to_vec1()?;
        let mut freqs: Vec<usize> = (1..mean_amp.len()).collect();
        freqs.sort_by(|&a, &c| mean_amp[c].total_cmp(&mean_amp[a]).then(a.cmp(&c)));
        freqs.truncate(self.top_k.min(freqs.len()));
        if freqs.is_empty() {
            return Ok(x.clone());
        }
        let idx = Tensor::from_vec(
            freqs.iter().map(|&f| f as u32).collect::<Vec<_>>(),
            freqs.len(),
            x.device(),
        )?;
        let weights = crate::zoo::fused::softmax_last_dim(&amp.index_select(&idx, 1)?)?; // (b, k)
        let mut acc: Option<Tensor> = None;
        for (i, &f) in freqs.iter().enumerate() {
            let period = (l / f).max(1);
            let cycles = l.div_ceil(period);
            let total = cycles * period;
            let folded = xt
                .pad_with_zeros(D::Minus1, 0, total - l)?
                .reshape((b, d, cycles, period))?;
            let y = self
                .conv_b
                .forward(&crate::zoo::fused::gelu(&self.conv_a.forward(&folded)?)?)?;
            let y = y.reshape((b, d, total))?.narrow(D::Minus1, 0, l)?;
            let w = weights.narrow(1, i, 1)?.unsqueeze(2)?; // (b, 1, 1)
            let y = y.broadcast_mul(&w)?;
            acc = Some(match acc {
                None => y,
                Some(a) => (a + y)?,
            });
        }
        let acc = acc.expect("at least one period");
        x + acc.transpose(1, 2)?
    }
}
