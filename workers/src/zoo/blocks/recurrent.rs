//! Recurrent blocks: LSTM and Mamba's selective state-space scan.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::rnn::{LSTMConfig, LSTM, RNN};
use candle_nn::{
    conv1d, layer_norm, linear, linear_no_bias, Conv1d, Conv1dConfig, LayerNorm, Linear, VarBuilder,
};

use super::{pad_left, Block, BuildCtx};
use crate::zoo::params::softplus;
use crate::zoo::registry::Params;

/// Stacked LSTM (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory") over the window,
/// `LN(x + LSTM(x))`.
pub struct LstmBlock {
    layers: Vec<LSTM>,
    ln: LayerNorm,
}

impl LstmBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let layers = (0..p.usize("num_layers"))
            .map(|i| {
                candle_nn::rnn::lstm(
                    c.d_model,
                    c.d_model,
                    LSTMConfig::default(),
                    vb.pp(format!("lstm{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LstmBlock {
            layers,
            ln: layer_norm(c.d_model, 1e-5, vb.pp("ln"))?,
        })
    }
}

impl Block for LstmBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.layers {
            let states = l.seq(&h)?;
            h = l.states_to_tensor(&states)?;
        }
        self.ln.forward(&(x + h)?)
    }
}

/// Mamba (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"):
/// `in_proj` to a branch and a gate, a causal depthwise convolution and SiLU, then the selective
/// SSM whose step size `delta`, input matrix `B` and output matrix `C` depend on the input:
/// `h_t = exp(delta_t A) h_{t-1} + delta_t B_t x_t`, `y_t = C_t h_t + D x_t`, scanned
/// sequentially; `y * SiLU(gate)`, `out_proj`, residual around a pre-norm.
pub struct MambaBlock {
    ln: LayerNorm,
    in_proj: Linear,
    conv: Conv1d,
    d_conv: usize,
    x_proj: Linear,
    dt_proj: Linear,
    a_log: Tensor,
    a_base: Tensor,
    d_skip: Tensor,
    out_proj: Linear,
    inner: usize,
    d_state: usize,
    dt_rank: usize,
}

impl MambaBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let d = c.d_model;
        let inner = p.usize("expand") * d;
        let n = p.usize("d_state");
        let d_conv = p.usize("d_conv");
        let dt_rank = d.div_ceil(16);
        // A = -exp(base + learned): base = ln[1..n] per channel (S4D-real initialisation), the
        // learned offset starts at zero.
        let base: Vec<f32> = (0..inner)
            .flat_map(|_| (1..=n).map(|k| (k as f32).ln()))
            .collect();
        let a_base = Tensor::from_vec(base, (inner, n), vb.device())?;
        let a_log = vb.get_with_hints((inner, n), "a_log", candle_nn::Init::Const(0.0))?;
        Ok(MambaBlock {
            ln: layer_norm(d, 1e-5, vb.pp("ln"))?,
            in_proj: linear_no_bias(d, 2 * inner, vb.pp("in_proj"))?,
            conv: conv1d(
                inner,
                inner,
                d_conv,
                Conv1dConfig {
                    groups: inner,
                    ..Default::default()
                },
                vb.pp("conv"),
            )?,
            d_conv,
            x_proj: linear_no_bias(inner, dt_rank + 2 * n, vb.pp("x_proj"))?,
            dt_proj: linear(dt_rank, inner, vb.pp("dt_proj"))?,
            a_log,
            a_base,
            d_skip: vb.get_with_hints(inner, "d_skip", candle_nn::Init::Const(1.0))?,
            out_proj: linear_no_bias(inner, d, vb.pp("out_proj"))?,
            inner,
            d_state: n,
            dt_rank,
        })
    }
}

impl Block for MambaBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let (di, n) = (self.inner, self.d_state);
        let xz = self.in_proj.forward(&self.ln.forward(x)?)?;
        let u = xz.narrow(D::Minus1, 0, di)?;
        let z = xz.narrow(D::Minus1, di, di)?;
        let u = pad_left(&u.transpose(1, 2)?.contiguous()?, self.d_conv - 1)?;
        let u = candle_nn::ops::silu(&self.conv.forward(&u)?)?
            .transpose(1, 2)?
            .contiguous()?; // (b, l, di)
        let proj = self.x_proj.forward(&u)?;
        let dt = softplus(
            &self
                .dt_proj
                .forward(&proj.narrow(D::Minus1, 0, self.dt_rank)?)?,
        )?; // (b, l, di)
        let bm = proj.narrow(D::Minus1, self.dt_rank, n)?; // (b, l, n)
        let cm = proj.narrow(D::Minus1, self.dt_rank + n, n)?; // (b, l, n)
        let a = (&self.a_base + &self.a_log)?.exp()?.neg()?; // (di, n)
        let mut h = Tensor::zeros((b, di, n), x.dtype(), x.device())?;
        let mut ys = Vec::with_capacity(l);
        for t in 0..l {
            let dt_t = dt.narrow(1, t, 1)?.squeeze(1)?.unsqueeze(2)?; // (b, di, 1)
            let da = dt_t.broadcast_mul(&a.unsqueeze(0)?)?.exp()?; // (b, di, n)
            let b_t = bm.narrow(1, t, 1)?; // (b, 1, n)
            let u_t = u.narrow(1, t, 1)?.squeeze(1)?.unsqueeze(2)?; // (b, di, 1)
            h = ((&da * &h)? + dt_t.broadcast_mul(&u_t)?.broadcast_mul(&b_t)?)?;
            let c_t = cm.narrow(1, t, 1)?.transpose(1, 2)?; // (b, n, 1)
            ys.push(h.matmul(&c_t)?.squeeze(2)?); // (b, di)
        }
        let y = Tensor::stack(&ys, 1)?; // (b, l, di)
        let y = (y + u.broadcast_mul(&self.d_skip)?)?;
        let y = (y * candle_nn::ops::silu(&z)?)?;
        x + self.out_proj.forward(&y)?
    }
}
