//! Backbone blocks. Every block maps `(batch, seq, d_model)` to `(batch, seq, d_model)` (see
//! [`Block`]); [`build_block`] makes one from its registry name and resolved parameters.
//! Shared pieces live here: multi-head attention, the feed-forward layer, causal convolution
//! and the real DFT built from matrix products (candle has no FFT).

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::zoo::fused::{layer_norm, linear, LayerNorm, Linear};

use super::registry::Params;

pub mod attention;
pub mod frequency;
pub mod mlp;
pub mod recurrent;
pub mod temporal_conv;

/// A backbone block: `(batch, seq, d_model) -> (batch, seq, d_model)`.
pub trait Block: Send + Sync {
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// What every block is built with besides its own parameters.
#[derive(Debug, Clone, Copy)]
pub struct BuildCtx {
    pub d_model: usize,
    pub seq_len: usize,
}

/// Build the block named `name` (a canonical registry name).
pub fn build_block(
    name: &str,
    p: &Params,
    ctx: BuildCtx,
    vb: VarBuilder,
) -> Result<Box<dyn Block>> {
    Ok(match name {
        "TransformerBlock" => Box::new(attention::TransformerBlock::new(p, ctx, vb)?),
        "InformerBlock" => Box::new(attention::InformerBlock::new(p, ctx, vb)?),
        "PatchTSTBlock" => Box::new(attention::PatchTstBlock::new(p, ctx, vb)?),
        "iTransformerBlock" => Box::new(attention::ITransformerBlock::new(p, ctx, vb)?),
        "CrossformerBlock" => Box::new(attention::CrossformerBlock::new(p, ctx, vb)?),
        "TFTBlock" => Box::new(attention::TftBlock::new(p, ctx, vb)?),
        "LSTMBlock" => Box::new(recurrent::LstmBlock::new(p, ctx, vb)?),
        "MambaBlock" => Box::new(recurrent::MambaBlock::new(p, ctx, vb)?),
        "TCNBlock" => Box::new(temporal_conv::TcnBlock::new(p, ctx, vb)?),
        "WaveNetBlock" => Box::new(temporal_conv::WaveNetBlock::new(p, ctx, vb)?),
        "TimesNetBlock" => Box::new(temporal_conv::TimesNetBlock::new(p, ctx, vb)?),
        "NBeatsBlock" => Box::new(mlp::NBeatsBlock::new(p, ctx, vb)?),
        "FreTSBlock" => Box::new(frequency::FreTsBlock::new(p, ctx, vb)?),
        "FEDformerBlock" => Box::new(frequency::FedformerBlock::new(p, ctx, vb)?),
        "AutoformerBlock" => Box::new(frequency::AutoformerBlock::new(p, ctx, vb)?),
        other => candle_core::bail!("block {other} is not available"),
    })
}

/// Multi-head scaled dot-product attention (Vaswani et al., 2017) with separate query and
/// key/value inputs.
pub struct Mha {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
}

impl Mha {
    pub fn new(d: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Mha {
            q: linear(d, d, vb.pp("q"))?,
            k: linear(d, d, vb.pp("k"))?,
            v: linear(d, d, vb.pp("v"))?,
            o: linear(d, d, vb.pp("o"))?,
            heads,
        })
    }

    /// `(b, l, d)` -> `(b, heads, l, d/heads)`.
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        x.reshape((b, l, self.heads, d / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `(b, heads, l, dh)` -> `(b, l, d)`.
    fn merge(x: &Tensor) -> Result<Tensor> {
        let (b, h, l, dh) = x.dims4()?;
        x.transpose(1, 2)?.contiguous()?.reshape((b, l, h * dh))
    }

    /// Projected, split queries, keys and values.
    pub fn qkv(&self, xq: &Tensor, xkv: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        Ok((
            self.split(&self.q.forward(xq)?)?,
            self.split(&self.k.forward(xkv)?)?,
            self.split(&self.v.forward(xkv)?)?,
        ))
    }

    /// Scaled scores `q k^T / sqrt(dh)`: `(b, heads, lq, lk)`.
    pub fn scores(q: &Tensor, k: &Tensor) -> Result<Tensor> {
        let dh = q.dim(D::Minus1)? as f64;
        q.matmul(&k.t()?.contiguous()?)? / dh.sqrt()
    }

    /// Output projection of merged heads.
    pub fn out(&self, heads_out: &Tensor) -> Result<Tensor> {
        self.o.forward(&Self::merge(heads_out)?)
    }

    /// Full attention; `mask` (added to the scores) broadcasts to `(b, heads, lq, lk)`.
    pub fn forward(&self, xq: &Tensor, xkv: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (q, k, v) = self.qkv(xq, xkv)?;
        if mask.is_none() {
            return self.out(&crate::zoo::fused::attention(&q, &k, &v)?);
        }
        let mut s = Self::scores(&q, &k)?;
        if let Some(m) = mask {
            s = s.broadcast_add(m)?;
        }
        let a = crate::zoo::fused::softmax_last_dim(&s)?;
        self.out(&a.matmul(&v)?)
    }
}

/// `-1e9` above the diagonal: a causal mask of shape `(l, l)`.
pub fn causal_mask(l: usize, device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..l * l)
        .map(|i| if i % l > i / l { -1e9 } else { 0.0 })
        .collect();
    Tensor::from_vec(v, (l, l), device)
}

/// Position-wise feed-forward: `Linear(d, hidden) -> GELU -> Linear(hidden, d)`.
pub struct FeedForward {
    a: Linear,
    b: Linear,
}

impl FeedForward {
    pub fn new(d: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(FeedForward {
            a: linear(d, hidden, vb.pp("a"))?,
            b: linear(hidden, d, vb.pp("b"))?,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.b
            .forward(&crate::zoo::fused::gelu(&self.a.forward(x)?)?)
    }
}

/// A pre-norm transformer encoder layer over `(b, l, d)`: `x + MHA(LN x)`, `x + FF(LN x)`.
pub struct EncoderLayer {
    ln1: LayerNorm,
    attn: Mha,
    ln2: LayerNorm,
    ff: FeedForward,
}

impl EncoderLayer {
    pub fn new(d: usize, heads: usize, ff_mult: usize, vb: VarBuilder) -> Result<Self> {
        Ok(EncoderLayer {
            ln1: layer_norm(d, 1e-5, vb.pp("ln1"))?,
            attn: Mha::new(d, heads, vb.pp("attn"))?,
            ln2: layer_norm(d, 1e-5, vb.pp("ln2"))?,
            ff: FeedForward::new(d, d * ff_mult, vb.pp("ff"))?,
        })
    }

    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let h = self.ln1.forward(x)?;
        let x = (x + self.attn.forward(&h, &h, mask)?)?;
        let h = self.ln2.forward(&x)?;
        &x + self.ff.forward(&h)?
    }
}

/// Left-pad the last (time) axis of `(b, c, l)` with `n` zeros: causal convolution padding.
pub fn pad_left(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 0 {
        Ok(x.clone())
    } else {
        x.pad_with_zeros(D::Minus1, n, 0)
    }
}

/// The real DFT of length `n` as matrices: `x (.., n) @ cos (n, f)` is the real part and
/// `-(x @ sin)` the imaginary part of the first `f = n/2 + 1` frequencies; [`Dft::inverse`]
/// rebuilds the signal from (possibly modified) real and imaginary parts.
pub struct Dft {
    pub n: usize,
    pub f: usize,
    cos: Tensor,
    sin: Tensor,
    icos: Tensor,
    isin: Tensor,
}

impl Dft {
    pub fn new(n: usize, device: &Device) -> Result<Self> {
        let f = n / 2 + 1;
        let mut c = vec![0f32; n * f];
        let mut s = vec![0f32; n * f];
        let mut ic = vec![0f32; f * n];
        let mut is = vec![0f32; f * n];
        for t in 0..n {
            for k in 0..f {
                let ang = 2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64;
                c[t * f + k] = ang.cos() as f32;
                s[t * f + k] = ang.sin() as f32;
                // Hermitian symmetry: interior frequencies count twice.
                let w = if k == 0 || (n % 2 == 0 && k == n / 2) {
                    1.0
                } else {
                    2.0
                } / n as f64;
                ic[k * n + t] = (w * ang.cos()) as f32;
                is[k * n + t] = (w * ang.sin()) as f32;
            }
        }
        Ok(Dft {
            n,
            f,
            cos: Tensor::from_vec(c, (n, f), device)?,
            sin: Tensor::from_vec(s, (n, f), device)?,
            icos: Tensor::from_vec(ic, (f, n), device)?,
            isin: Tensor::from_vec(is, (f, n), device)?,
        })
    }

    /// `(.., n)` -> (re, im), each `(.., f)`.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let re = x.broadcast_matmul(&self.cos)?;
        let im = x.broadcast_matmul(&self.sin)?.neg()?;
        Ok((re, im))
    }

    /// (re, im) `(.., f)` -> `(.., n)`.
    pub fn inverse(&self, re: &Tensor, im: &Tensor) -> Result<Tensor> {
        re.broadcast_matmul(&self.icos)? - im.broadcast_matmul(&self.isin)?
    }
}

/// A moving average over time of `(b, l, d)` with replicate padding (Autoformer's trend).
pub fn moving_average(x: &Tensor, kernel: usize) -> Result<Tensor> {
    let (_, l, _) = x.dims3()?;
    let left = (kernel - 1) / 2;
    let right = kernel - 1 - left;
    let first = x.narrow(1, 0, 1)?;
    let last = x.narrow(1, l - 1, 1)?;
    let mut parts = Vec::new();
    for _ in 0..left {
        parts.push(first.clone());
    }
    parts.push(x.clone());
    for _ in 0..right {
        parts.push(last.clone());
    }
    let padded = Tensor::cat(&parts, 1)?;
    // cumulative-sum differences give every window sum at once
    let cs = padded.cumsum(1)?;
    let cs = cs.pad_with_zeros(1, 1, 0)?;
    let upper = cs.narrow(1, kernel, l)?;
    let lower = cs.narrow(1, 0, l)?;
    (upper - lower)? / kernel as f64
}

/// Zero tensor helper.
pub fn zeros(shape: &[usize], device: &Device) -> Result<Tensor> {
    Tensor::zeros(shape, DType::F32, device)
}
