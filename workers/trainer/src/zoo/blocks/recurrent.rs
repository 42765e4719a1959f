//! Recurrent blocks: LSTM and Mamba's selective state-space scan.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::rnn::LSTMConfig;
use candle_nn::{conv1d, Conv1d, Conv1dConfig, VarBuilder};

use crate::zoo::fused::{layer_norm, linear, linear_no_bias, LayerNorm, Linear};

use super::{pad_left, Block, BuildCtx};
use crate::zoo::params::softplus;
use crate::zoo::registry::Params;

/// Stacked LSTM (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory") over the window,
/// `LN(x + LSTM(x))`. The cell is [`FastLstm`]: candle-nn's parameters and gate order, fewer
/// ops per time step.
pub struct LstmBlock {
    layers: Vec<FastLstm>,
    ln: LayerNorm,
}

impl LstmBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let layers = (0..p.usize("num_layers"))
            .map(|i| FastLstm::new(c.d_model, c.d_model, vb.pp(format!("lstm{i}"))))
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
            h = l.seq(&h)?;
        }
        self.ln.forward(&(x + h)?)
    }
}

/// One LSTM layer with candle-nn's parameters (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`,
/// `bias_hh_l0`, gates in the order input, forget, cell, output, Kaiming-uniform weights and
/// zero biases), so checkpoints and initial weights are the same as with
/// `candle_nn::rnn::lstm`. It projects the inputs of all time steps in one matrix product; on
/// the CPU the recurrence is then one fused op with a hand-written backward
/// ([`crate::zoo::ops::lstm_scan`]); elsewhere it is built from candle ops with one sigmoid over
/// all four gates per step (about 14 ops per step where candle-nn's cell takes 22). Op count
/// matters here: at these sizes each candle op (and its backward) costs microseconds whatever
/// its size.
pub struct FastLstm {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    hidden: usize,
}

impl FastLstm {
    pub fn new(in_dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = LSTMConfig::default();
        let zero = candle_nn::Init::Const(0.0);
        Ok(FastLstm {
            w_ih: vb.get_with_hints((4 * hidden, in_dim), "weight_ih_l0", cfg.w_ih_init)?,
            w_hh: vb.get_with_hints((4 * hidden, hidden), "weight_hh_l0", cfg.w_hh_init)?,
            b_ih: vb.get_with_hints(4 * hidden, "bias_ih_l0", cfg.b_ih_init.unwrap_or(zero))?,
            b_hh: vb.get_with_hints(4 * hidden, "bias_hh_l0", cfg.b_hh_init.unwrap_or(zero))?,
            hidden,
        })
    }

    /// Time-major input projections `(s, b, 4h)`, both biases folded in.
    fn projections(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, d) = x.dims3()?;
        let bias = (&self.b_ih + &self.b_hh)?;
        x.transpose(0, 1)?
            .contiguous()?
            .reshape((s * b, d))?
            .matmul(&self.w_ih.t()?)?
            .broadcast_add(&bias)?
            .reshape((s, b, 4 * self.hidden))
    }

    /// `(b, s, in)` -> hidden states `(b, s, hidden)` from zero initial state.
    pub fn seq(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            let (b, s, d) = x.dims3()?;
            let xp = x
                .transpose(0, 1)?
                .contiguous()?
                .reshape((s * b, d))?
                .matmul(&self.w_ih.t()?)?
                .reshape((s, b, 4 * self.hidden))?;
            let bias = (&self.b_ih + &self.b_hh)?;
            let hs = crate::zoo::ops::lstm_scan(&xp, &self.w_hh, &bias)?;
            return hs.transpose(0, 1)?.contiguous();
        }
        self.seq_ops(x)
    }

    /// [`FastLstm::seq`] from candle ops (any device; the reference for the fused op).
    pub fn seq_ops(&self, x: &Tensor) -> Result<Tensor> {
        let (_, s, _) = x.dims3()?;
        let hd = self.hidden;
        let xp = self.projections(x)?;
        let w_hh_t = self.w_hh.t()?;
        let mut outs = Vec::with_capacity(s);
        let mut state: Option<(Tensor, Tensor)> = None;
        for t in 0..s {
            let g = match &state {
                None => xp.get(t)?,
                Some((h, _)) => (xp.get(t)? + h.matmul(&w_hh_t)?)?,
            };
            let sg = candle_nn::ops::sigmoid(&g)?;
            let i = sg.narrow(1, 0, hd)?;
            let cell = g.narrow(1, 2 * hd, hd)?.tanh()?;
            let c = match &state {
                None => (i * cell)?,
                Some((_, c)) => ((sg.narrow(1, hd, hd)? * c)? + (i * cell)?)?,
            };
            let h = (sg.narrow(1, 3 * hd, hd)? * c.tanh()?)?;
            outs.push(h.clone());
            state = Some((h, c));
        }
        Tensor::stack(&outs, 1)
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::rnn::RNN;
    use candle_nn::VarMap;

    #[test]
    fn zoo_fast_lstm_equals_candle_lstm() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
        let fast = FastLstm::new(5, 6, vb.pp("l")).unwrap();
        // random biases too, so both bias paths are checked
        for (name, v) in map.data().lock().unwrap().iter() {
            if name.contains("bias") {
                v.set(&Tensor::randn(0f32, 0.5, 24, &dev).unwrap()).unwrap();
            }
        }
        let reference = candle_nn::rnn::lstm(5, 6, LSTMConfig::default(), vb.pp("l")).unwrap();
        assert_eq!(map.all_vars().len(), 4, "the same four parameters");
        let x = Tensor::randn(0f32, 1.0, (3, 7, 5), &dev).unwrap();
        let a = fast.seq(&x).unwrap();
        let ops = fast.seq_ops(&x).unwrap();
        let b = reference
            .states_to_tensor(&reference.seq(&x).unwrap())
            .unwrap();
        assert_eq!(a.dims(), &[3, 7, 6]);
        let max_diff = |p: &Tensor, q: &Tensor| {
            (p - q)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(
            max_diff(&a, &b) < 1e-5,
            "fused vs candle-nn {}",
            max_diff(&a, &b)
        );
        assert!(
            max_diff(&ops, &b) < 1e-5,
            "ops vs candle-nn {}",
            max_diff(&ops, &b)
        );
        // the fused op's hand-written backward equals candle's autograd through the ops
        let w = Tensor::randn(0f32, 1.0, (3, 7, 6), &dev).unwrap();
        let g_fused = (fast.seq(&x).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_ops = (fast.seq_ops(&x).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in map.data().lock().unwrap().iter() {
            let p = g_fused
                .get(v)
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let q = g_ops.get(v).unwrap();
            let scale = q
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(scale > 1e-3, "{name}: gradient vanished");
            let d = max_diff(p, q);
            assert!(d < 1e-4 * scale.max(1.0), "{name}: gradients differ by {d}");
        }
    }
}
