//! Attention blocks: Transformer, Informer (ProbSparse), PatchTST, iTransformer, Crossformer
//! (two-stage attention) and TFT (gated residual networks + interpretable attention).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::zoo::fused::{layer_norm, linear, LayerNorm, Linear};

use super::{causal_mask, Block, BuildCtx, EncoderLayer, FeedForward, Mha};
use crate::zoo::registry::Params;

/// Transformer encoder layer (Vaswani et al. 2017, "Attention Is All You Need"), pre-norm.
pub struct TransformerBlock {
    layer: EncoderLayer,
}

impl TransformerBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        Ok(TransformerBlock {
            layer: EncoderLayer::new(c.d_model, p.usize("n_heads"), p.usize("ff_mult"), vb)?,
        })
    }
}

impl Block for TransformerBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layer.forward(x, None)
    }
}

/// Informer's ProbSparse self-attention (Zhou et al. 2021, "Informer: Beyond Efficient
/// Transformer for Long Sequence Time-Series Forecasting"). The query sparsity measurement
/// `M(q) = max_j q.k_j/sqrt(d) - mean_j q.k_j/sqrt(d)` is taken over `u` evenly spaced sampled
/// keys; the top-`u` queries attend to all keys, the lazy ones output the mean of the values.
/// This compact version computes the full score matrix and masks it (the selection semantics,
/// not the O(L log L) cost); the distilling layer is left out so the sequence length is kept.
pub struct InformerBlock {
    ln1: LayerNorm,
    attn: Mha,
    ln2: LayerNorm,
    ff: FeedForward,
    u: usize,
    seq_len: usize,
}

impl InformerBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let d = c.d_model;
        let u =
            (p.usize("factor") * (c.seq_len as f64).ln().ceil().max(1.0) as usize).min(c.seq_len);
        Ok(InformerBlock {
            ln1: layer_norm(d, 1e-5, vb.pp("ln1"))?,
            attn: Mha::new(d, p.usize("n_heads"), vb.pp("attn"))?,
            ln2: layer_norm(d, 1e-5, vb.pp("ln2"))?,
            ff: FeedForward::new(d, 2 * d, vb.pp("ff"))?,
            u: u.max(1),
            seq_len: c.seq_len,
        })
    }

    fn prob_attention(&self, h: &Tensor) -> Result<Tensor> {
        let (q, k, v) = self.attn.qkv(h, h)?;
        let (b, nh, l, _) = q.dims4()?;
        let scores = Mha::scores(&q, &k)?; // (b, nh, l, l)
                                           // Sparsity measurement on sampled keys.
        let step = (l / self.u).max(1);
        let idx: Vec<u32> = (0..l)
            .step_by(step)
            .take(self.u)
            .map(|i| i as u32)
            .collect();
        let idx_t = Tensor::from_vec(idx.clone(), idx.len(), h.device())?;
        let sampled = scores.index_select(&idx_t, 3)?;
        let m = (sampled.max(D::Minus1)? - sampled.mean(D::Minus1)?)?; // (b, nh, l)
        let mv: Vec<f32> = m.flatten_all()?.to_vec1()?;
        let mut mask = vec![0f32; b * nh * l];
        for r in 0..b * nh {
            let row = &mv[r * l..(r + 1) * l];
            let mut order: Vec<usize> = (0..l).collect();
            order.sort_by(|&a, &bb| row[bb].total_cmp(&row[a]).then(a.cmp(&bb)));
            for &qi in order.iter().take(self.u) {
                mask[r * l + qi] = 1.0;
            }
        }
        let mask = Tensor::from_vec(mask, (b, nh, l, 1), h.device())?;
        let active = crate::zoo::fused::softmax_last_dim(&scores)?.matmul(&v)?;
        let lazy = v.mean_keepdim(2)?.broadcast_as(active.shape())?;
        let mixed =
            (active.broadcast_mul(&mask)? + lazy.broadcast_mul(&mask.affine(-1.0, 1.0)?)?)?;
        self.attn.out(&mixed)
    }
}

impl Block for InformerBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        debug_assert!(x.dim(1)? <= self.seq_len || self.seq_len == 0);
        let h = self.ln1.forward(x)?;
        let x = (x + self.prob_attention(&h)?)?;
        let h = self.ln2.forward(&x)?;
        &x + self.ff.forward(&h)?
    }
}

/// PatchTST (Nie et al. 2023, "A Time Series is Worth 64 Words"): channel independence (each
/// of the d_model channels is a univariate series), the time axis cut into patches that become
/// tokens, a transformer over the patch tokens with a learned position embedding, and a linear
/// unpatching back to the bars; residual.
pub struct PatchTstBlock {
    patch: usize,
    n_patches: usize,
    embed: Linear,
    pos: Tensor,
    enc: EncoderLayer,
    unembed: Linear,
}

impl PatchTstBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let patch = p.usize("patch_len");
        let e = p.usize("d_patch");
        let n_patches = c.seq_len.div_ceil(patch);
        Ok(PatchTstBlock {
            patch,
            n_patches,
            embed: linear(patch, e, vb.pp("embed"))?,
            pos: vb.get_with_hints(
                (n_patches, e),
                "pos",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            enc: EncoderLayer::new(e, p.usize("n_heads"), 2, vb.pp("enc"))?,
            unembed: linear(e, patch, vb.pp("unembed"))?,
        })
    }
}

impl Block for PatchTstBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let total = self.n_patches * self.patch;
        if total < l {
            candle_core::bail!("PatchTSTBlock built for a window of at most {total} bars, got {l}");
        }
        let pad = total - l;
        // (b, d, l) -> left pad -> (b*d, n_patches, patch)
        let xc = super::pad_left(&x.transpose(1, 2)?.contiguous()?, pad)?;
        let tokens = xc.reshape((b * d, self.n_patches, self.patch))?;
        let t = self.embed.forward(&tokens)?.broadcast_add(&self.pos)?;
        let t = self.enc.forward(&t, None)?;
        let back = self.unembed.forward(&t)?.reshape((b, d, total))?;
        let back = back.narrow(2, pad, l)?.transpose(1, 2)?;
        x + back
    }
}

/// iTransformer (Liu et al. 2024, "iTransformer: Inverted Transformers Are Effective for Time
/// Series Forecasting"): every channel's whole window is embedded as one variate token and the
/// attention runs across variates; the tokens are projected back to the window; residual.
pub struct ITransformerBlock {
    embed: Linear,
    enc: EncoderLayer,
    unembed: Linear,
}

impl ITransformerBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let e = p.usize("d_token");
        Ok(ITransformerBlock {
            embed: linear(c.seq_len, e, vb.pp("embed"))?,
            enc: EncoderLayer::new(e, p.usize("n_heads"), 2, vb.pp("enc"))?,
            unembed: linear(e, c.seq_len, vb.pp("unembed"))?,
        })
    }
}

impl Block for ITransformerBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let v = x.transpose(1, 2)?.contiguous()?; // (b, d, l): variates as tokens
        let t = self.enc.forward(&self.embed.forward(&v)?, None)?;
        x + self.unembed.forward(&t)?.transpose(1, 2)?
    }
}

/// Crossformer (Zhang & Yan 2023): dimension-segment-wise embedding (each channel's window cut
/// into segments, each segment a token) and the two-stage attention layer: attention across
/// segments within each channel, then across channels through a small set of learned router
/// tokens per segment (routers gather from all channels, channels read back from routers).
pub struct CrossformerBlock {
    seg: usize,
    n_seg: usize,
    embed: Linear,
    pos: Tensor,
    time: EncoderLayer,
    routers: Tensor,
    gather: Mha,
    scatter: Mha,
    ln_a: LayerNorm,
    ln_b: LayerNorm,
    ff: FeedForward,
    unembed: Linear,
}

impl CrossformerBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let seg = p.usize("seg_len");
        let e = p.usize("d_seg");
        let h = p.usize("n_heads");
        let n_seg = c.seq_len.div_ceil(seg);
        let init = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        Ok(CrossformerBlock {
            seg,
            n_seg,
            embed: linear(seg, e, vb.pp("embed"))?,
            pos: vb.get_with_hints((c.d_model, n_seg, e), "pos", init)?,
            time: EncoderLayer::new(e, h, 2, vb.pp("time"))?,
            routers: vb.get_with_hints((n_seg, p.usize("routers"), e), "routers", init)?,
            gather: Mha::new(e, h, vb.pp("gather"))?,
            scatter: Mha::new(e, h, vb.pp("scatter"))?,
            ln_a: layer_norm(e, 1e-5, vb.pp("ln_a"))?,
            ln_b: layer_norm(e, 1e-5, vb.pp("ln_b"))?,
            ff: FeedForward::new(e, 2 * e, vb.pp("ff"))?,
            unembed: linear(e, seg, vb.pp("unembed"))?,
        })
    }
}

impl Block for CrossformerBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let total = self.n_seg * self.seg;
        if total < l {
            candle_core::bail!(
                "CrossformerBlock built for a window of at most {total} bars, got {l}"
            );
        }
        let pad = total - l;
        let xc = super::pad_left(&x.transpose(1, 2)?.contiguous()?, pad)?; // (b, d, total)
        let tok = self
            .embed
            .forward(&xc.reshape((b, d, self.n_seg, self.seg))?)?
            .broadcast_add(&self.pos)?; // (b, d, n_seg, e)
        let e = tok.dim(D::Minus1)?;
        // Stage 1: across time, per channel.
        let t = self
            .time
            .forward(&tok.reshape((b * d, self.n_seg, e))?, None)?;
        // Stage 2: across channels, per segment, through routers.
        let t = t
            .reshape((b, d, self.n_seg, e))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * self.n_seg, d, e))?;
        let r = self.routers.dims3()?.1;
        let routers = self
            .routers
            .unsqueeze(0)?
            .broadcast_as((b, self.n_seg, r, e))?
            .contiguous()?
            .reshape((b * self.n_seg, r, e))?;
        let tn = self.ln_a.forward(&t)?;
        let buffer = self.gather.forward(&routers, &tn, None)?;
        let t = (&t + self.scatter.forward(&tn, &buffer, None)?)?;
        let t = (&t + self.ff.forward(&self.ln_b.forward(&t)?)?)?;
        let t = t
            .reshape((b, self.n_seg, d, e))?
            .transpose(1, 2)?
            .contiguous()?;
        let back = self.unembed.forward(&t)?.reshape((b, d, total))?;
        x + back.narrow(2, pad, l)?.transpose(1, 2)?
    }
}

/// A gated residual network (TFT): `LN(x + GLU(W1 ELU(W2 x)))`.
pub struct Grn {
    w2: Linear,
    w1: Linear,
    gate: Linear,
    ln: LayerNorm,
}

impl Grn {
    pub fn new(d: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Grn {
            w2: linear(d, d, vb.pp("w2"))?,
            w1: linear(d, d, vb.pp("w1"))?,
            gate: linear(d, 2 * d, vb.pp("gate"))?,
            ln: layer_norm(d, 1e-5, vb.pp("ln"))?,
        })
    }

    /// `LN(skip + GLU(inner(x)))`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.w1.forward(&self.w2.forward(x)?.elu(1.0)?)?;
        self.ln.forward(&(x + glu(&self.gate.forward(&h)?)?)?)
    }
}

/// Gated linear unit over the last axis: `a * sigmoid(b)` for the two halves.
pub fn glu(x: &Tensor) -> Result<Tensor> {
    let n = x.dim(D::Minus1)? / 2;
    let a = x.narrow(D::Minus1, 0, n)?;
    let g = x.narrow(D::Minus1, n, n)?;
    a * candle_nn::ops::sigmoid(&g)?
}

/// Temporal Fusion Transformer core (Lim et al. 2021): a gated residual network, interpretable
/// multi-head attention (per-head query/key projections, one value projection shared by all
/// heads, attention weights averaged over heads) with a causal mask and a gated skip, then a
/// position-wise gated residual network. Variable selection and static covariate encoders are
/// left out (the input projection plays the first's role; there are no static covariates).
pub struct TftBlock {
    grn_in: Grn,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    gate: Linear,
    ln: LayerNorm,
    grn_out: Grn,
}

impl TftBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let d = c.d_model;
        let h = p.usize("n_heads");
        Ok(TftBlock {
            grn_in: Grn::new(d, vb.pp("grn_in"))?,
            q: linear(d, d, vb.pp("q"))?,
            k: linear(d, d, vb.pp("k"))?,
            v: linear(d, d / h, vb.pp("v"))?,
            o: linear(d / h, d, vb.pp("o"))?,
            heads: h,
            gate: linear(d, 2 * d, vb.pp("gate"))?,
            ln: layer_norm(d, 1e-5, vb.pp("ln"))?,
            grn_out: Grn::new(d, vb.pp("grn_out"))?,
        })
    }
}

impl Block for TftBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let dh = d / self.heads;
        let h = self.grn_in.forward(x)?;
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, l, self.heads, dh))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.q.forward(&h)?)?;
        let k = split(self.k.forward(&h)?)?;
        let s = Mha::scores(&q, &k)?.broadcast_add(&causal_mask(l, x.device())?)?;
        let a = crate::zoo::fused::softmax_last_dim(&s)?.mean(1)?; // (b, l, l), averaged over heads
        let attn = self.o.forward(&a.matmul(&self.v.forward(&h)?)?)?;
        let h = self.ln.forward(&(&h + glu(&self.gate.forward(&attn)?)?)?)?;
        let out = self.grn_out.forward(&h)?;
        x + out
    }
}
