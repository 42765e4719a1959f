//! Fused CPU ops with hand-written backward passes for the hot parts of a training step. At
//! these sizes (batch 16, 64 steps, width 32) every candle op costs microseconds of overhead
//! and its backward allocates and zero-fills gradient buffers, so a step is dominated by op
//! count, not arithmetic. Each op here is one pass forward and one pass back, with the same
//! parameters as the candle-nn layer it replaces, and is checked against candle's autograd
//! (and finite differences) in the tests below; other devices and dtypes use candle ops.
//!
//! - [`LayerNorm`] / [`layer_norm`] and [`softmax_last_dim`] are also correctness fixes:
//!   candle-nn's fused `LayerNorm` (on a contiguous input) and `softmax_last_dim` run custom
//!   ops *without* a backward (`apply_op*_no_bwd`), so nothing before them got a gradient:
//!   with the model's final norm the whole backbone stayed at its initial weights, and
//!   attention's queries and keys never trained.
//! - [`Linear`] / [`linear`]: one 2-D product and a bias op whose gradient is a row sum.
//! - [`gelu`] (tanh form, as candle's `gelu`), [`attention`] (scaled dot-product attention,
//!   no mask), [`affine_noise`] (the Gaussian heads' `mu + sigma * eps`).
//! - [`crps_loss`]: the training loss from per-step increments in one op: cumulative sum over
//!   the horizon, the `1/sqrt(k)` horizon scale, and the sample CRPS per (window, step) in its
//!   sorted form. Ranks come from branch-free counting for up to 64 paths (a sort's
//!   comparisons defeat the branch predictor), else from an insertion sort that keeps one
//!   step's order from the previous step's. The forward pass also computes the gradient with
//!   respect to the increments (rank weights and signs, then a suffix sum) when the input
//!   needs one; the backward scales it by the incoming gradient.
//! - [`crps_loss_affine`]: the same loss of Gaussian increments `mu + sigma * eps` as one op on
//!   `(mu, sigma)`, so the GBM head's 147k increments per batch never enter candle's graph.
//! - [`fast_exp`]: `e^x` without a libm call, so the loops above vectorise.

use std::ops::{Deref, Range};
use std::sync::{Arc, Mutex, RwLockReadGuard};

use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, DType, Layout, Module, Result, Shape, Storage, Tensor,
};
use candle_nn::VarBuilder;

use super::spec::LossKind;

/// The f32 values of a contiguous CPU storage, or an error naming the op and the argument.
pub(super) fn cpu_f32<'a>(
    st: &'a CpuStorage,
    l: &Layout,
    op: &str,
    what: &str,
) -> Result<&'a [f32]> {
    let Some((a, z)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: {what} must be contiguous")
    };
    match st {
        CpuStorage::F32(v) => Ok(&v[a..z]),
        _ => candle_core::bail!("{op}: {what} must be f32"),
    }
}

/// A tensor's f32 values: borrowed from its storage when it is a contiguous f32 CPU tensor
/// (the common case in a backward pass, which then copies nothing), else a copy.
enum Values<'a> {
    Borrowed(RwLockReadGuard<'a, Storage>, Range<usize>),
    Owned(Vec<f32>),
}

impl Deref for Values<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            Values::Borrowed(guard, range) => match &**guard {
                Storage::Cpu(CpuStorage::F32(v)) => &v[range.clone()],
                // `values` only borrows f32 CPU storage
                _ => unreachable!("a borrowed view is always of f32 CPU storage"),
            },
            Values::Owned(v) => v,
        }
    }
}

/// The f32 values of `t` (see [`Values`]).
fn values(t: &Tensor) -> Result<Values<'_>> {
    let (guard, layout) = t.storage_and_layout();
    if let (Storage::Cpu(CpuStorage::F32(_)), Some((a, z))) = (&*guard, layout.contiguous_offsets())
    {
        return Ok(Values::Borrowed(guard, a..z));
    }
    drop(guard);
    Ok(Values::Owned(
        t.contiguous()?.flatten_all()?.to_vec1::<f32>()?,
    ))
}

/// Layer norm over the last axis with an affine weight and bias (candle-nn's parameters).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

/// `LayerNorm` of `size` features from `vb` (`weight` = 1, `bias` = 0 initially).
pub fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm {
        weight: vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?,
        bias: vb.get_with_hints(size, "bias", candle_nn::Init::Const(0.0))?,
        eps,
    })
}

impl LayerNorm {
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        LayerNorm { weight, bias, eps }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 && self.weight.dtype() == DType::F32 {
            x.contiguous()?.apply_op3(
                &self.weight.contiguous()?,
                &self.bias.contiguous()?,
                LnOp { eps: self.eps },
            )
        } else {
            candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps as f32)
        }
    }
}

struct LnOp {
    eps: f64,
}

/// Mean and `1/sqrt(var + eps)` of one row (biased variance, as candle-nn and PyTorch); the
/// sums run in eight lanes so that they vectorise.
#[inline(always)]
fn row_stats(r: &[f32], eps: f64) -> (f32, f32) {
    let d = r.len() as f32;
    let mean = lanes(r, 0.0, |a, b| a + b) / d;
    let mut sq = [0f32; 8];
    let c = r.chunks_exact(8);
    let mut rest = 0f32;
    for &v in c.remainder() {
        rest += (v - mean) * (v - mean);
    }
    for chunk in c {
        for t in 0..8 {
            sq[t] += (chunk[t] - mean) * (chunk[t] - mean);
        }
    }
    let var = (sq.iter().sum::<f32>() + rest) / d;
    (mean, 1.0 / (var + eps as f32).sqrt())
}

avx2_dispatch! {
    /// Layer norm of the rows of `x` (`d` features each) into `y`.
    fn ln_fwd(x: &[f32], w: &[f32], b: &[f32], eps: f64, y: &mut [f32]) => ln_fwd_impl
}

#[inline(always)]
fn ln_fwd_impl(x: &[f32], w: &[f32], b: &[f32], eps: f64, y: &mut [f32]) {
    let d = w.len();
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let (mean, rstd) = row_stats(xr, eps);
        for (((o, &v), &wk), &bk) in yr.iter_mut().zip(xr).zip(w).zip(b) {
            *o = (v - mean) * rstd * wk + bk;
        }
    }
}

avx2_dispatch! {
    /// The layer norm's gradients `(dx, dw, db)` from the input rows and the output gradient.
    fn ln_bwd(x: &[f32], w: &[f32], g: &[f32], eps: f64) -> Grads3 => ln_bwd_impl
}

#[inline(always)]
fn ln_bwd_impl(x: &[f32], w: &[f32], g: &[f32], eps: f64) -> Grads3 {
    let d = w.len();
    let mut dx = vec![0f32; x.len()];
    let mut dw = vec![0f32; d];
    let mut db = vec![0f32; d];
    let mut xhat = vec![0f32; d];
    let mut dxhat = vec![0f32; d];
    let df = d as f32;
    for ((xr, gr), dxr) in x
        .chunks_exact(d)
        .zip(g.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
    {
        let (mean, rstd) = row_stats(xr, eps);
        for k in 0..d {
            xhat[k] = (xr[k] - mean) * rstd;
            dxhat[k] = gr[k] * w[k];
            dw[k] += gr[k] * xhat[k];
            db[k] += gr[k];
        }
        let (m1, m2) = (
            lanes(&dxhat, 0.0, |a, b| a + b) / df,
            lane_dot(&dxhat, &xhat) / df,
        );
        for k in 0..d {
            dxr[k] = rstd * (dxhat[k] - m1 - xhat[k] * m2);
        }
    }
    (dx, dw, db)
}

impl CustomOp3 for LnOp {
    fn name(&self) -> &'static str {
        "zoo-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let x = cpu_f32(s1, l1, op, "the input")?;
        let w = cpu_f32(s2, l2, op, "the weight")?;
        let b = cpu_f32(s3, l3, op, "the bias")?;
        let d = l1.dims().last().copied().unwrap_or(1);
        if w.len() != d || b.len() != d {
            candle_core::bail!(
                "{op}: input {:?}, weight {:?} and bias {:?} do not fit",
                l1.dims(),
                l2.dims(),
                l3.dims()
            )
        }
        let mut y = vec![0f32; x.len()];
        ln_fwd(x, w, b, self.eps, &mut y);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = w.elem_count();
        let (dx, dw, db) = ln_bwd(&values(x)?, &values(w)?, &values(grad)?, self.eps);
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, w.shape(), dev)?),
            Some(Tensor::from_vec(db, d, dev)?),
        ))
    }
}

/// `e^x` in f32 to about 2 ulp without a libm call, so loops over it vectorise (Cody-Waite
/// range reduction `x = n ln 2 + r`, a degree-7 polynomial for `e^r`, `2^n` from the exponent
/// bits). Inputs are clamped to [-87.3, 88.3] (results from about 1e-38 to 2e38, so `2^n` stays
/// a normal float); NaN stays NaN.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let xc = x.clamp(-87.3, 88.3);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = xc - n * C1 - n * C2;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = e * scale;
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// A linear layer `x W^T + b` with candle-nn's parameters and initialisation (it is built by
/// `candle_nn::linear`, so the same names give the same initial weights). On the CPU the input
/// is flattened to rows for one 2-D product (candle-nn's 3-D product broadcasts the weight and
/// sums its gradient over the batch afterwards) and the bias is added by one op whose
/// gradient is a row sum (candle's broadcast-add gradient is a strided reduction, slow here).
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

/// `Linear(in_dim, out_dim)` with a bias.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let l = candle_nn::linear(in_dim, out_dim, vb)?;
    Ok(Linear {
        weight: l.weight().clone(),
        bias: l.bias().cloned(),
    })
}

/// `Linear(in_dim, out_dim)` without a bias.
pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let l = candle_nn::linear_no_bias(in_dim, out_dim, vb)?;
    Ok(Linear {
        weight: l.weight().clone(),
        bias: None,
    })
}

impl Linear {
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let fused = x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() >= 2;
        if !fused {
            return candle_nn::Linear::new(self.weight.clone(), self.bias.clone()).forward(x);
        }
        let dims = x.dims().to_vec();
        let (rows, inner) = (
            dims[..dims.len() - 1].iter().product::<usize>(),
            dims[dims.len() - 1],
        );
        let y = x
            .contiguous()?
            .reshape((rows, inner))?
            .matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.apply_op2(&b.contiguous()?, BiasAdd)?,
            None => y,
        };
        let mut out = dims;
        let last = out.len() - 1;
        out[last] = self.weight.dim(0)?;
        y.reshape(out)
    }
}

/// `x (rows, d) + b (d)` with the bias gradient as one row sum.
struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "zoo-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s1, l1, self.name(), "the input")?;
        let b = cpu_f32(s2, l2, self.name(), "the bias")?;
        let d = b.len().max(1);
        if l1.dims().last() != Some(&b.len()) {
            candle_core::bail!(
                "{}: input {:?}, bias {:?}",
                self.name(),
                l1.dims(),
                l2.dims()
            )
        }
        let mut y = x.to_vec();
        for row in y.chunks_exact_mut(d) {
            for (v, &bv) in row.iter_mut().zip(b) {
                *v += bv;
            }
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = b.elem_count().max(1);
        let g = values(grad)?;
        let mut db = vec![0f32; d];
        for row in g.chunks_exact(d) {
            for (acc, &v) in db.iter_mut().zip(row) {
                *acc += v;
            }
        }
        Ok((
            Some(grad.clone()),
            Some(Tensor::from_vec(db, b.shape(), b.device())?),
        ))
    }
}

/// GELU, tanh approximation (candle's `gelu`), with its gradient; one op each way on the CPU.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(GeluOp)
    } else {
        x.gelu()
    }
}

struct GeluOp;

const GELU_C: f32 = 0.797_884_6; // sqrt(2 / pi)
const GELU_A: f32 = 0.044_715;

/// `tanh(x) = 2 sigmoid(2x) - 1` with [`fast_exp`] (libm's `tanhf` costs about five times as
/// much, and does not vectorise); absolute error within a few 1e-7.
#[inline(always)]
pub(super) fn fast_tanh(x: f32) -> f32 {
    2.0 / (1.0 + fast_exp(-2.0 * x)) - 1.0
}

impl candle_core::CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "zoo-gelu"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(st, l, self.name(), "the input")?;
        let y: Vec<f32> = x
            .iter()
            .map(|&v| 0.5 * v * (1.0 + fast_tanh(GELU_C * (v + GELU_A * v * v * v))))
            .collect();
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let xv = values(x)?;
        let gv = values(grad)?;
        let dx: Vec<f32> = xv
            .iter()
            .zip(gv.iter())
            .map(|(&v, &g)| {
                let t = fast_tanh(GELU_C * (v + GELU_A * v * v * v));
                let du = GELU_C * (1.0 + 3.0 * GELU_A * v * v);
                g * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du)
            })
            .collect();
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// Softmax over the last axis with its gradient. candle-nn's `softmax_last_dim` is a custom op
/// without a backward (`apply_op1_no_bwd`): attention scores, and everything that fed them
/// (queries, keys), got no gradient through it.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(SoftmaxOp)
    } else {
        candle_nn::ops::softmax(x, candle_core::D::Minus1)
    }
}

struct SoftmaxOp;

impl candle_core::CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "zoo-softmax"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(st, l, self.name(), "the input")?;
        let d = l.dims().last().copied().unwrap_or(1).max(1);
        let mut y = vec![0f32; x.len()];
        for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            yr.copy_from_slice(xr);
            softmax_row(yr);
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let d = res.dims().last().copied().unwrap_or(1).max(1);
        let y = values(res)?;
        let g = values(grad)?;
        let mut dx = vec![0f32; y.len()];
        for ((yr, gr), dr) in y
            .chunks_exact(d)
            .zip(g.chunks_exact(d))
            .zip(dx.chunks_exact_mut(d))
        {
            let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
            for ((o, &yv), &gv) in dr.iter_mut().zip(yr).zip(gr) {
                *o = yv * (gv - dot);
            }
        }
        Ok(Some(Tensor::from_vec(dx, res.shape(), res.device())?))
    }
}

/// Scaled dot-product attention `softmax(q k^T / sqrt(dh)) v` over `q`, `k`, `v` of shape
/// `(b, heads, l, dh)` (no mask), one op each way on the CPU: built from candle ops this is a
/// product, a scale, a softmax and a product, each with a `(b, heads, l, l)` intermediate and
/// its gradient buffers. The forward keeps the attention weights for the backward when an input
/// needs a gradient. Other devices use candle ops.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let cpu = q.device().is_cpu() && [q, k, v].iter().all(|t| t.dtype() == DType::F32);
    if !cpu || q.rank() != 4 || q.dims() != k.dims() || q.dims() != v.dims() {
        let dh = q.dim(candle_core::D::Minus1)? as f64;
        let s = (q.matmul(&k.t()?.contiguous()?)? / dh.sqrt())?;
        return softmax_last_dim(&s)?.matmul(v);
    }
    let op = AttentionOp {
        want_grad: q.track_op() || k.track_op() || v.track_op(),
        probs: Arc::new(Mutex::new(Vec::new())),
    };
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

struct AttentionOp {
    want_grad: bool,
    /// `(b * heads, l, l)` attention weights of the forward pass.
    probs: Arc<Mutex<Vec<f32>>>,
}

/// `acc += a * x` elementwise (vectorised).
#[inline(always)]
pub(super) fn axpy(acc: &mut [f32], a: f32, x: &[f32]) {
    for (y, &v) in acc.iter_mut().zip(x) {
        *y += a * v;
    }
}

/// `(l, dh)` -> `(dh, l)`.
#[inline(always)]
fn transpose_into(src: &[f32], l: usize, dh: usize, dst: &mut [f32]) {
    for i in 0..l {
        for d in 0..dh {
            dst[d * l + i] = src[i * dh + d];
        }
    }
}

/// `f(lanes, chunk)` over 8-wide chunks of `x` into 8 accumulators (vectorisable), then the
/// remainder; used for a row's max and sum.
#[inline(always)]
fn lanes(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let c = x.chunks_exact(8);
    let rest = c.remainder().iter().fold(init, |a, &v| f(a, v));
    for chunk in c {
        for t in 0..8 {
            acc[t] = f(acc[t], chunk[t]);
        }
    }
    acc.iter().fold(rest, |a, &v| f(a, v))
}

/// Softmax of one row in place: max, `exp(x - max)`, sum and scale, each a separate
/// vectorisable loop.
#[inline(always)]
fn softmax_row(row: &mut [f32]) {
    let mx = lanes(row, f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
    for p in row.iter_mut() {
        *p = fast_exp(*p - mx);
    }
    let inv = 1.0 / lanes(row, 0.0, |a, b| a + b);
    for p in row.iter_mut() {
        *p *= inv;
    }
}

/// `sum x * y` in 8 independent lanes (so the compiler vectorises it), then the lanes summed.
#[inline(always)]
fn lane_dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        for t in 0..8 {
            acc[t] += a[t] * b[t];
        }
    }
    acc.iter().sum::<f32>() + tail
}

// Every inner loop below runs over the sequence length (64 here), not the head width (8):
// `k` and `v` are transposed to `(dh, l)` per head first.

#[inline(always)]
fn attention_fwd_impl(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    l: usize,
    dh: usize,
) -> (Vec<f32>, Vec<f32>) {
    let bh = q.len() / (l * dh);
    let scale = 1.0 / (dh as f32).sqrt();
    let mut out = vec![0f32; q.len()];
    let mut probs = vec![0f32; bh * l * l];
    let mut kt = vec![0f32; dh * l];
    let mut vt = vec![0f32; dh * l];
    for m in 0..bh {
        let r = m * l * dh..(m + 1) * l * dh;
        let (qm, km, vm) = (&q[r.clone()], &k[r.clone()], &v[r.clone()]);
        transpose_into(km, l, dh, &mut kt);
        transpose_into(vm, l, dh, &mut vt);
        let pm = &mut probs[m * l * l..(m + 1) * l * l];
        let om = &mut out[r];
        for i in 0..l {
            let row = &mut pm[i * l..(i + 1) * l];
            for d in 0..dh {
                axpy(row, qm[i * dh + d] * scale, &kt[d * l..(d + 1) * l]);
            }
            softmax_row(row);
            for d in 0..dh {
                om[i * dh + d] = lane_dot(row, &vt[d * l..(d + 1) * l]);
            }
        }
    }
    (out, probs)
}

#[inline(always)]
fn attention_bwd_impl(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    dout: &[f32],
    l: usize,
    dh: usize,
) -> Grads3 {
    let bh = q.len() / (l * dh);
    let scale = 1.0 / (dh as f32).sqrt();
    let mut dq = vec![0f32; q.len()];
    let mut dk = vec![0f32; q.len()];
    let mut dv = vec![0f32; q.len()];
    let mut kt = vec![0f32; dh * l];
    let mut vt = vec![0f32; dh * l];
    let mut dkt = vec![0f32; dh * l];
    let mut dvt = vec![0f32; dh * l];
    let mut ds = vec![0f32; l];
    for m in 0..bh {
        let r = m * l * dh..(m + 1) * l * dh;
        let (qm, gm) = (&q[r.clone()], &dout[r.clone()]);
        transpose_into(&k[r.clone()], l, dh, &mut kt);
        transpose_into(&v[r.clone()], l, dh, &mut vt);
        dkt.iter_mut().for_each(|x| *x = 0.0);
        dvt.iter_mut().for_each(|x| *x = 0.0);
        let pm = &probs[m * l * l..(m + 1) * l * l];
        for i in 0..l {
            let p = &pm[i * l..(i + 1) * l];
            let g = &gm[i * dh..(i + 1) * dh];
            // dP_i = dO_i V^T; dV^T[d] += dO_i[d] P_i
            ds.iter_mut().for_each(|x| *x = 0.0);
            for d in 0..dh {
                axpy(&mut ds, g[d], &vt[d * l..(d + 1) * l]);
                axpy(&mut dvt[d * l..(d + 1) * l], g[d], p);
            }
            // dS = P * (dP - sum(dP * P)), times the scale
            let dot = lane_dot(p, &ds);
            for (x, &pij) in ds.iter_mut().zip(p) {
                *x = pij * (*x - dot) * scale;
            }
            // dQ_i = dS_i K; dK^T[d] += Q_i[d] dS_i
            for d in 0..dh {
                dq[m * l * dh + i * dh + d] = lane_dot(&ds, &kt[d * l..(d + 1) * l]);
                axpy(&mut dkt[d * l..(d + 1) * l], qm[i * dh + d], &ds);
            }
        }
        transpose_into(&dkt, dh, l, &mut dk[r.clone()]);
        transpose_into(&dvt, dh, l, &mut dv[r]);
    }
    (dq, dk, dv)
}

avx2_dispatch! {
    fn attention_fwd(q: &[f32], k: &[f32], v: &[f32], l: usize, dh: usize) -> (Vec<f32>, Vec<f32>)
        => attention_fwd_impl
}

type Grads3 = (Vec<f32>, Vec<f32>, Vec<f32>);

avx2_dispatch! {
    fn attention_bwd(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        probs: &[f32],
        dout: &[f32],
        l: usize,
        dh: usize,
    ) -> Grads3 => attention_bwd_impl
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "zoo-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (_, _, l, dh) = l1.shape().dims4()?;
        if l2.dims() != l1.dims() || l3.dims() != l1.dims() {
            candle_core::bail!(
                "{op}: q {:?}, k {:?}, v {:?} differ",
                l1.dims(),
                l2.dims(),
                l3.dims()
            )
        }
        let q = cpu_f32(s1, l1, op, "q")?;
        let k = cpu_f32(s2, l2, op, "k")?;
        let v = cpu_f32(s3, l3, op, "v")?;
        let (out, probs) = attention_fwd(q, k, v, l, dh);
        if self.want_grad {
            *self.probs.lock().expect("attention lock") = probs;
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, _, l, dh) = q.dims4()?;
        let (qv, kv, vv, gv) = (values(q)?, values(k)?, values(v)?, values(grad)?);
        let kept = self.probs.lock().expect("attention lock");
        let recomputed;
        let probs: &[f32] = if kept.len() == qv.len() / dh * l {
            &kept
        } else {
            recomputed = attention_fwd(&qv, &kv, &vv, l, dh).1;
            &recomputed
        };
        let (dq, dk, dv) = attention_bwd(&qv, &kv, &vv, probs, &gv, l, dh);
        let (shape, dev) = (q.shape(), q.device());
        Ok((
            Some(Tensor::from_vec(dq, shape, dev)?),
            Some(Tensor::from_vec(dk, shape, dev)?),
            Some(Tensor::from_vec(dv, shape, dev)?),
        ))
    }
}

/// Per-step horizon scale `1/sqrt(k)`, k = 1..=h (f32, as the loss has always used).
pub fn horizon_scale_values(h: usize) -> Vec<f32> {
    (1..=h).map(|k| 1.0 / (k as f32).sqrt()).collect()
}

/// The sample CRPS loss from increments: see [`crps_loss`].
struct CrpsLoss {
    factor: f32,
    want_grad: bool,
    /// d loss / d increments `(b, n, h)`, filled by the forward pass when `want_grad`.
    grad: Arc<Mutex<Vec<f32>>>,
}

/// Above this many paths the loss ranks by sorting; at or below it, by counting.
const RANK_BY_COUNT_MAX: usize = 64;

/// Re-sort `order` (a permutation of `0..x.len()`) so that `x[order[..]]` is non-decreasing,
/// and write each element's 0-based rank into `rank`. Insertion sort: from the previous step's
/// order the cumulative sums of one step are nearly sorted already (they move by one increment
/// against a spread that grows like `sqrt(k)`), so this is close to linear; a fresh window
/// starts from a full sort.
fn resort(x: &[f32], order: &mut [u32], rank: &mut [u32], fresh: bool) {
    if fresh {
        order.sort_by(|&a, &b| x[a as usize].total_cmp(&x[b as usize]));
    } else {
        for i in 1..order.len() {
            let cur = order[i];
            let v = x[cur as usize];
            let mut j = i;
            while j > 0 && x[order[j - 1] as usize] > v {
                order[j] = order[j - 1];
                j -= 1;
            }
            order[j] = cur;
        }
    }
    for (r, &i) in order.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
}

/// Each element's 0-based rank in `x`, ties broken by index: the elements before it that are
/// not above it plus the elements after it that are below it. Quadratic, but without a
/// data-dependent branch, so it vectorises; for the few dozen paths of a training batch it is
/// several times faster than a sort, whose comparisons the branch predictor cannot guess.
#[inline(always)]
fn rank_by_count(x: &[f32], rank: &mut [u32]) {
    for (j, r) in rank.iter_mut().enumerate() {
        let v = x[j];
        let before = x[..j].iter().map(|&u| (u <= v) as u32).sum::<u32>();
        let after = x[j + 1..].iter().map(|&u| (u < v) as u32).sum::<u32>();
        *r = before + after;
    }
}

/// `sum |x - t|`, in eight lanes so that it vectorises.
#[inline(always)]
fn abs_dev_sum(x: &[f32], t: f32) -> f32 {
    let mut acc = [0f32; 8];
    let c = x.chunks_exact(8);
    let rest: f32 = c.remainder().iter().map(|&v| (v - t).abs()).sum();
    for chunk in c {
        for l in 0..8 {
            acc[l] += (chunk[l] - t).abs();
        }
    }
    acc.iter().sum::<f32>() + rest
}

avx2_dispatch! {
    /// The loss's arithmetic on plain slices: `inc (b, n, h)` and `y (b, h)` give the summed
    /// per-step CRPS (before the mean) and, when `want_grad`, d(mean loss)/d inc.
    fn crps_loss_values(
        inc: &[f32],
        y: &[f32],
        dims: (usize, usize, usize),
        factor: f32,
        want_grad: bool,
    ) -> (f64, Vec<f32>) => crps_loss_values_impl
}

#[inline(always)]
fn crps_loss_values_impl(
    inc: &[f32],
    y: &[f32],
    (b, n, h): (usize, usize, usize),
    factor: f32,
    want_grad: bool,
) -> (f64, Vec<f32>) {
    let scale = horizon_scale_values(h);
    let nf = n as f32;
    let w: Vec<f32> = (0..n)
        .map(|i| ((2.0 * i as f64 - n as f64 + 1.0) / (n as f64 * n as f64)) as f32)
        .collect();
    let norm = 1.0 / (b * h).max(1) as f32;
    let mut grad = if want_grad {
        vec![0f32; b * n * h]
    } else {
        Vec::new()
    };
    // (h, n), step-major: one window's cumulative sums, then its gradient
    let mut cum = vec![0f32; h * n];
    let mut gstep = if want_grad {
        vec![0f32; h * n]
    } else {
        Vec::new()
    };
    let mut col = vec![0f32; n];
    let mut rank = vec![0u32; n];
    let mut wr = vec![0f32; n];
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut total = 0f64;
    for bi in 0..b {
        let block = &inc[bi * n * h..(bi + 1) * n * h];
        for (j, row) in block.chunks_exact(h).enumerate() {
            let mut acc = 0f32;
            for (k, &v) in row.iter().enumerate() {
                acc += v;
                cum[k * n + j] = acc;
            }
        }
        for k in 0..h {
            let s = scale[k];
            let t = y[bi * h + k] * s;
            for (c, &v) in col.iter_mut().zip(&cum[k * n..(k + 1) * n]) {
                *c = v * s;
            }
            if n <= RANK_BY_COUNT_MAX {
                rank_by_count(&col, &mut rank);
            } else {
                resort(&col, &mut order, &mut rank, k == 0);
            }
            for (wj, &r) in wr.iter_mut().zip(&rank) {
                *wj = w[r as usize];
            }
            let abs = abs_dev_sum(&col, t);
            let spread = lane_dot(&wr, &col);
            total += (abs / nf - spread * factor) as f64;
            if want_grad {
                let g = &mut gstep[k * n..(k + 1) * n];
                let sn = s * norm;
                for ((gj, &c), &wj) in g.iter_mut().zip(&col).zip(&wr) {
                    // candle's |x| gradient at 0 is +1; the same subgradient here
                    let sign = if c - t >= 0.0 { 1.0 } else { -1.0 };
                    *gj = (sign / nf - factor * wj) * sn;
                }
            }
        }
        if want_grad {
            // the gradient of a prefix sum is the suffix sum of the gradient: one step-major
            // pass over whole rows of paths, then into the (n, h) layout of the input
            for k in (0..h.saturating_sub(1)).rev() {
                let (head, tail) = gstep.split_at_mut((k + 1) * n);
                for (a, &c) in head[k * n..].iter_mut().zip(&tail[..n]) {
                    *a += c;
                }
            }
            transpose_into(&gstep, h, n, &mut grad[bi * n * h..(bi + 1) * n * h]);
        }
    }
    (total, grad)
}

impl CustomOp2 for CrpsLoss {
    fn name(&self) -> &'static str {
        "zoo-crps-loss"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (b, n, h) = l1.shape().dims3()?;
        if l2.dims() != [b, h] {
            candle_core::bail!(
                "{op}: increments {:?} and targets {:?} do not fit (need (b, n, h), (b, h))",
                l1.dims(),
                l2.dims()
            )
        }
        let inc = cpu_f32(s1, l1, op, "the increments")?;
        let y = cpu_f32(s2, l2, op, "the targets")?;
        let (total, grad) = crps_loss_values(inc, y, (b, n, h), self.factor, self.want_grad);
        let norm = 1.0 / (b * h).max(1) as f32;
        let loss = (total * norm as f64) as f32;
        if self.want_grad {
            *self.grad.lock().expect("crps gradient lock") = grad;
        }
        Ok((CpuStorage::F32(vec![loss]), Shape::from(())))
    }

    fn bwd(
        &self,
        inc: &Tensor,
        _target: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let up = grad_res.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let kept = self.grad.lock().expect("crps gradient lock");
        if kept.len() != inc.elem_count() {
            candle_core::bail!(
                "{}: no gradient was kept for this input (the forward ran without one)",
                self.name()
            )
        }
        let g: Vec<f32> = kept.iter().map(|v| v * up).collect();
        Ok((Some(Tensor::from_vec(g, inc.shape(), inc.device())?), None))
    }
}

/// The spread term's factor: 1 for CRPS, `(n - 1 + alpha) / (n - 1)` for the almost-fair
/// variant over `n` samples.
fn crps_factor(kind: LossKind, alpha: f64, n: usize) -> f32 {
    let factor = match kind {
        LossKind::Crps => 1.0,
        LossKind::Afcrps if n > 1 => (n as f64 - 1.0 + alpha) / (n as f64 - 1.0),
        LossKind::Afcrps => 1.0,
    };
    factor as f32
}

/// The training loss from per-step increments `inc (b, n, h)` and realised per-step targets'
/// cumulative sums `y (b, h)`: the sample CRPS of `cumsum(inc) / sqrt(k)` against `y / sqrt(k)`
/// at every step k, averaged over windows and steps (see [`super::train::sample_crps`], which
/// this equals to float rounding). CPU f32 only; differentiable in `inc`.
pub fn crps_loss(inc: &Tensor, y: &Tensor, kind: LossKind, alpha: f64) -> Result<Tensor> {
    let op = CrpsLoss {
        factor: crps_factor(kind, alpha, inc.dim(1)?),
        want_grad: inc.track_op(),
        grad: Arc::new(Mutex::new(Vec::new())),
    };
    inc.contiguous()?
        .apply_op2(&y.to_dtype(DType::F32)?.contiguous()?, op)
}

/// `eps * sigma + mu` row by row: `eps (b, n, h)`, `mu` and `sigma` one value per window
/// (`p` = 1) or per path (`p` = n).
fn affine_values(eps: &[f32], mu: &[f32], sigma: &[f32], n: usize, h: usize, p: usize) -> Vec<f32> {
    let mut out = vec![0f32; eps.len()];
    for (r, (o, e)) in out.chunks_exact_mut(h).zip(eps.chunks_exact(h)).enumerate() {
        let k = if p == 1 { r / n } else { r };
        let (m, sg) = (mu[k], sigma[k]);
        for (y, &z) in o.iter_mut().zip(e) {
            *y = z * sg + m;
        }
    }
    out
}

/// The gradients of [`affine_values`] in `mu` and `sigma` from the outputs' gradient `g`:
/// `sum g` and `sum g * eps` per parameter.
fn affine_grads(eps: &[f32], g: &[f32], n: usize, h: usize, p: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = eps.len() / h.max(1);
    let params = if p == 1 { rows / n.max(1) } else { rows };
    let mut dmu = vec![0f32; params];
    let mut dsigma = vec![0f32; params];
    for (r, (gr, e)) in g.chunks_exact(h).zip(eps.chunks_exact(h)).enumerate() {
        let k = if p == 1 { r / n } else { r };
        dmu[k] += lanes(gr, 0.0, |a, b| a + b);
        dsigma[k] += lane_dot(gr, e);
    }
    (dmu, dsigma)
}

/// `mu + sigma * eps` for noise `eps (b, n, h)` and per-window (or per-path) parameters
/// `mu`, `sigma` of shape `(b, p, 1)`, `p` = 1 or n: the Gaussian heads' reparameterised
/// increments in one pass, and their gradients (`sum g`, `sum g * eps`) in one pass back.
struct AffineNoise;

impl AffineNoise {
    fn check(eps: &Layout, mu: &Layout, sigma: &Layout) -> Result<(usize, usize, usize, usize)> {
        let (b, n, h) = eps.shape().dims3()?;
        let (bm, p, one) = mu.shape().dims3()?;
        if bm != b || one != 1 || (p != 1 && p != n) || sigma.dims() != mu.dims() {
            candle_core::bail!(
                "zoo-affine-noise: noise {:?}, mu {:?} and sigma {:?} do not fit (need (b, n, h), (b, 1 or n, 1) twice)",
                eps.dims(),
                mu.dims(),
                sigma.dims()
            )
        }
        Ok((b, n, h, p))
    }
}

impl CustomOp3 for AffineNoise {
    fn name(&self) -> &'static str {
        "zoo-affine-noise"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (b, n, h, p) = Self::check(l1, l2, l3)?;
        let eps = cpu_f32(s1, l1, op, "the noise")?;
        let mu = cpu_f32(s2, l2, op, "mu")?;
        let sigma = cpu_f32(s3, l3, op, "sigma")?;
        let out = affine_values(eps, mu, sigma, n, h, p);
        debug_assert_eq!(out.len(), b * n * h);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        eps: &Tensor,
        mu: &Tensor,
        _sigma: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, n, h) = eps.dims3()?;
        let p = mu.dim(1)?;
        let (dmu, dsigma) = affine_grads(&values(eps)?, &values(grad)?, n, h, p);
        Ok((
            None,
            Some(Tensor::from_vec(dmu, mu.shape(), mu.device())?),
            Some(Tensor::from_vec(dsigma, mu.shape(), mu.device())?),
        ))
    }
}

/// `eps * sigma + mu` with `eps (b, n, h)` and `mu`, `sigma` of shape `(b, 1, 1)` or
/// `(b, n, 1)`; one op on the CPU (f32), candle broadcasts elsewhere. Differentiable in `mu`
/// and `sigma` (the noise is a constant).
pub fn affine_noise(eps: &Tensor, mu: &Tensor, sigma: &Tensor) -> Result<Tensor> {
    let fused = eps.device().is_cpu()
        && [eps, mu, sigma].iter().all(|t| t.dtype() == DType::F32)
        && !eps.track_op();
    if fused {
        eps.contiguous()?
            .apply_op3(&mu.contiguous()?, &sigma.contiguous()?, AffineNoise)
    } else {
        eps.broadcast_mul(sigma)?.broadcast_add(mu)
    }
}

/// The sample CRPS loss of Gaussian increments `mu + sigma * eps` (see [`crps_loss`] and
/// [`affine_noise`]) as one op on `(mu, sigma)`: the noise and the targets are constants held
/// by the op, the increments never become a tensor of the graph (at batch 16 they are 147,456
/// values that candle's backward would zero-fill, add and copy), and the forward pass leaves
/// the gradients of `mu` and `sigma` for the backward to scale.
struct CrpsAffineLoss {
    eps: Tensor,
    y: Tensor,
    factor: f32,
    want_grad: bool,
    /// d loss / d (mu, sigma), filled by the forward pass when `want_grad`.
    grads: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

impl CustomOp2 for CrpsAffineLoss {
    fn name(&self) -> &'static str {
        "zoo-crps-affine-loss"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (b, n, h, p) = AffineNoise::check(self.eps.layout(), l1, l2)?;
        if self.y.dims() != [b, h] {
            candle_core::bail!(
                "{op}: noise {:?} and targets {:?} do not fit (need (b, n, h), (b, h))",
                self.eps.dims(),
                self.y.dims()
            )
        }
        let (mu, sigma) = (cpu_f32(s1, l1, op, "mu")?, cpu_f32(s2, l2, op, "sigma")?);
        let eps = values(&self.eps)?;
        let inc = affine_values(&eps, mu, sigma, n, h, p);
        let (total, ginc) = crps_loss_values(
            &inc,
            &values(&self.y)?,
            (b, n, h),
            self.factor,
            self.want_grad,
        );
        if self.want_grad {
            *self.grads.lock().expect("crps gradient lock") =
                Some(affine_grads(&eps, &ginc, n, h, p));
        }
        let norm = 1.0 / (b * h).max(1) as f32;
        Ok((
            CpuStorage::F32(vec![(total * norm as f64) as f32]),
            Shape::from(()),
        ))
    }

    fn bwd(
        &self,
        mu: &Tensor,
        _sigma: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let up = grad_res.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let kept = self.grads.lock().expect("crps gradient lock");
        let Some((dmu, dsigma)) = kept.as_ref() else {
            candle_core::bail!(
                "{}: no gradient was kept (the forward ran without one)",
                self.name()
            )
        };
        let scaled = |g: &[f32]| {
            Tensor::from_vec(g.iter().map(|v| v * up).collect(), mu.shape(), mu.device())
        };
        Ok((Some(scaled(dmu)?), Some(scaled(dsigma)?)))
    }
}

/// [`crps_loss`] of [`affine_noise`]`(eps, mu, sigma)` without the increments in between, as
/// one op (CPU f32 only, as [`crps_loss`]; with a tracked noise it is those two ops).
/// Differentiable in `mu` and `sigma`.
pub fn crps_loss_affine(
    eps: &Tensor,
    mu: &Tensor,
    sigma: &Tensor,
    y: &Tensor,
    kind: LossKind,
    alpha: f64,
) -> Result<Tensor> {
    let fused = eps.device().is_cpu()
        && [eps, mu, sigma].iter().all(|t| t.dtype() == DType::F32)
        && !eps.track_op();
    if !fused {
        return crps_loss(&affine_noise(eps, mu, sigma)?, y, kind, alpha);
    }
    let n = eps.dim(1)?;
    let op = CrpsAffineLoss {
        eps: eps.contiguous()?,
        y: y.to_dtype(DType::F32)?.contiguous()?,
        factor: crps_factor(kind, alpha, n),
        want_grad: mu.track_op() || sigma.track_op(),
        grads: Mutex::new(None),
    };
    mu.contiguous()?.apply_op2(&sigma.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gradients of `sum(out * r)`: a random linear probe of the backward pass.
    fn weighted_grads(out: &Tensor, r: &Tensor) -> candle_core::backprop::GradStore {
        (out * r).unwrap().sum_all().unwrap().backward().unwrap()
    }
    use candle_core::{Device, Var};

    fn wavy(n: usize, k: f32) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * k).sin() * 1.7 + (i as f32 * 0.31).cos() * 0.4)
            .collect()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn zoo_fused_layer_norm_matches_candle_ops_with_gradients() {
        let dev = Device::Cpu;
        let d = 8;
        let x = Var::from_vec(wavy(3 * 5 * d, 0.77), (3, 5, d), &dev).unwrap();
        let w = Var::from_vec(wavy(d, 1.3), d, &dev).unwrap();
        let b = Var::from_vec(wavy(d, 2.1), d, &dev).unwrap();
        let r = Tensor::from_vec(wavy(3 * 5 * d, 0.53), (3, 5, d), &dev).unwrap();
        let ln = LayerNorm::new(w.as_tensor().clone(), b.as_tensor().clone(), 1e-5);
        let ours = ln.forward(x.as_tensor()).unwrap();
        let theirs =
            candle_nn::ops::layer_norm_slow(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)
                .unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-5);
        let (g1, g2) = (weighted_grads(&ours, &r), weighted_grads(&theirs, &r));
        for (name, v) in [("x", &x), ("weight", &w), ("bias", &b)] {
            let a = g1
                .get(v)
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let e = g2.get(v).unwrap();
            let diff = max_diff(a, e);
            assert!(diff < 1e-4, "{name}: gradients differ by {diff}");
        }
        // a finite difference on one input element (f64 for the reference)
        let xv = values(x.as_tensor()).unwrap();
        let loss_at = |xs: &[f32]| -> f64 {
            let t = Tensor::from_vec(xs.to_vec(), (3, 5, d), &dev).unwrap();
            let y = ln.forward(&t).unwrap();
            (y * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let k = 13;
        let h = 1e-2;
        let (mut up, mut dn) = (xv.to_vec(), xv.to_vec());
        up[k] += h as f32;
        dn[k] -= h as f32;
        let fd = (loss_at(&up) - loss_at(&dn)) / (2.0 * h);
        let an = values(g1.get(&x).unwrap()).unwrap()[k] as f64;
        assert!((fd - an).abs() < 2e-2 * (1.0 + an.abs()), "fd {fd} vs {an}");
        // a non-contiguous input is made contiguous first
        let t = x.as_tensor().transpose(0, 1).unwrap();
        let d2 = max_diff(
            &ln.forward(&t).unwrap(),
            &candle_nn::ops::layer_norm_slow(&t, w.as_tensor(), b.as_tensor(), 1e-5).unwrap(),
        );
        assert!(d2 < 1e-5);
    }

    /// The loss built from candle ops, as `train::batch_loss` computed it before the fused op.
    fn reference(inc: &Tensor, y: &Tensor, kind: LossKind, alpha: f64) -> Tensor {
        let (_, _, h) = inc.dims3().unwrap();
        let scale = Tensor::from_vec(horizon_scale_values(h), (1, h), inc.device()).unwrap();
        let cum = crate::zoo::ops::cumsum_last(inc)
            .unwrap()
            .broadcast_mul(&scale.unsqueeze(0).unwrap())
            .unwrap();
        let samples = cum.transpose(1, 2).unwrap().contiguous().unwrap();
        let target = y.broadcast_mul(&scale).unwrap();
        crate::zoo::train::sample_crps(&samples, &target, kind, alpha).unwrap()
    }

    fn check_crps(b: usize, n: usize, h: usize, kind: LossKind, alpha: f64) {
        let dev = Device::Cpu;
        let inc = Var::from_vec(wavy(b * n * h, 0.911), (b, n, h), &dev).unwrap();
        let yv: Vec<f32> = wavy(b * h, 0.37).iter().map(|v| v + 0.05).collect();
        let y = Tensor::from_vec(yv, (b, h), &dev).unwrap();
        let ours = crps_loss(inc.as_tensor(), &y, kind, alpha).unwrap();
        let theirs = reference(inc.as_tensor(), &y, kind, alpha);
        let (o, t) = (
            ours.to_scalar::<f32>().unwrap(),
            theirs.to_scalar::<f32>().unwrap(),
        );
        assert!(
            (o - t).abs() < 1e-5 * (1.0 + t.abs()),
            "{kind:?} n={n}: {o} vs {t}"
        );
        // an incoming gradient other than 1 is applied
        let g1 = (ours * 3.0).unwrap().backward().unwrap();
        let g2 = (theirs * 3.0).unwrap().backward().unwrap();
        let (a, e) = (g1.get(&inc).unwrap(), g2.get(&inc).unwrap());
        let diff = max_diff(a, e);
        assert!(diff < 1e-5, "{kind:?} n={n}: gradients differ by {diff}");
        assert!(values(a).unwrap().iter().any(|v| v.abs() > 1e-4));
        // a central finite difference on a few increments, the loss in f32
        let base = values(inc.as_tensor()).unwrap();
        let an = values(a).unwrap();
        let loss_at = |v: &[f32]| -> f64 {
            let t = Tensor::from_vec(v.to_vec(), (b, n, h), &dev).unwrap();
            crps_loss(&t, &y, kind, alpha)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
                * 3.0
        };
        for k in [0, n * h / 2 + 1, b * n * h - 1] {
            let step = 1e-3;
            let (mut up, mut dn) = (base.to_vec(), base.to_vec());
            up[k] += step as f32;
            dn[k] -= step as f32;
            let fd = (loss_at(&up) - loss_at(&dn)) / (2.0 * step);
            assert!(
                (fd - an[k] as f64).abs() < 2e-3 + 2e-2 * fd.abs(),
                "{kind:?} n={n} element {k}: finite difference {fd} vs {}",
                an[k]
            );
        }
    }

    #[test]
    fn zoo_fused_crps_loss_matches_candle_ops_with_gradient() {
        check_crps(3, 7, 5, LossKind::Crps, 0.95);
        check_crps(2, 32, 6, LossKind::Afcrps, 0.95);
        check_crps(2, 70, 9, LossKind::Crps, 0.95);
        // without a tracked input no gradient is kept, and the loss is the same
        let dev = Device::Cpu;
        let inc = Tensor::from_vec(wavy(2 * 4 * 3, 0.5), (2, 4, 3), &dev).unwrap();
        let y = Tensor::from_vec(wavy(6, 0.2), (2, 3), &dev).unwrap();
        let a = crps_loss(&inc, &y, LossKind::Crps, 0.95).unwrap();
        let b = reference(&inc, &y, LossKind::Crps, 0.95);
        assert!(max_diff(&a, &b) < 1e-5);
        // tied samples (all paths equal) give the plain absolute error
        let flat = Tensor::ones((1, 4, 2), DType::F32, &dev).unwrap();
        let y0 = Tensor::zeros((1, 2), DType::F32, &dev).unwrap();
        let l = crps_loss(&flat, &y0, LossKind::Crps, 0.95)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = (1.0 + 2.0 / 2f32.sqrt()) / 2.0;
        assert!((l - want).abs() < 1e-6, "{l} vs {want}");
    }

    #[test]
    fn zoo_fused_ranks_by_count_and_by_sort_agree() {
        for n in [1, 2, 9, 32, 64] {
            let x = wavy(n, 0.737);
            let (mut by_count, mut by_sort) = (vec![0u32; n], vec![0u32; n]);
            let mut order: Vec<u32> = (0..n as u32).collect();
            rank_by_count(&x, &mut by_count);
            resort(&x, &mut order, &mut by_sort, true);
            assert_eq!(by_count, by_sort, "n={n}");
        }
        // ties get distinct ranks, the earlier index first: still a permutation
        let x = [0.5, -1.0, 0.5, 0.5, -1.0];
        let mut r = vec![0u32; x.len()];
        rank_by_count(&x, &mut r);
        assert_eq!(r, vec![2, 0, 3, 4, 1]);
    }

    #[test]
    fn zoo_fused_crps_affine_loss_matches_the_two_ops_with_gradients() {
        let dev = Device::Cpu;
        for (b, n, h, kind) in [(3, 7, 5, LossKind::Crps), (2, 32, 9, LossKind::Afcrps)] {
            let eps = Tensor::from_vec(wavy(b * n * h, 0.613), (b, n, h), &dev).unwrap();
            let y = Tensor::from_vec(wavy(b * h, 0.41), (b, h), &dev).unwrap();
            for p in [1, n] {
                let mu = Var::from_vec(wavy(b * p, 1.3), (b, p, 1), &dev).unwrap();
                let sv: Vec<f32> = wavy(b * p, 0.7).iter().map(|v| v.abs() + 0.2).collect();
                let sigma = Var::from_vec(sv, (b, p, 1), &dev).unwrap();
                let (m, sg) = (mu.as_tensor(), sigma.as_tensor());
                let ours = crps_loss_affine(&eps, m, sg, &y, kind, 0.95).unwrap();
                let theirs =
                    crps_loss(&affine_noise(&eps, m, sg).unwrap(), &y, kind, 0.95).unwrap();
                let (o, t) = (
                    ours.to_scalar::<f32>().unwrap(),
                    theirs.to_scalar::<f32>().unwrap(),
                );
                assert!((o - t).abs() < 1e-6 * (1.0 + t.abs()), "p={p}: {o} vs {t}");
                // an incoming gradient other than 1 is applied, to both parameters
                let g1 = (ours * 2.5).unwrap().backward().unwrap();
                let g2 = (theirs * 2.5).unwrap().backward().unwrap();
                for v in [&mu, &sigma] {
                    let (a, e) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                    assert!(max_diff(a, e) < 1e-5, "p={p}: gradients differ");
                    assert!(values(a).unwrap().iter().any(|x| x.abs() > 1e-4));
                }
            }
        }
        // a constant input keeps no gradient and gives the same loss
        let eps = Tensor::from_vec(wavy(2 * 4 * 3, 0.5), (2, 4, 3), &dev).unwrap();
        let mu = Tensor::zeros((2, 1, 1), DType::F32, &dev).unwrap();
        let sigma = Tensor::ones((2, 1, 1), DType::F32, &dev).unwrap();
        let y = Tensor::from_vec(wavy(6, 0.2), (2, 3), &dev).unwrap();
        let a = crps_loss_affine(&eps, &mu, &sigma, &y, LossKind::Crps, 0.95).unwrap();
        let b = crps_loss(&eps, &y, LossKind::Crps, 0.95).unwrap();
        assert!(max_diff(&a, &b) < 1e-6);
        // shapes that do not fit are an error naming them
        let bad = Tensor::zeros((2, 3, 1), DType::F32, &dev).unwrap();
        let e = crps_loss_affine(&eps, &bad, &bad, &y, LossKind::Crps, 0.95).unwrap_err();
        assert!(e.to_string().contains("do not fit"), "{e}");
    }

    #[test]
    fn zoo_fused_affine_noise_matches_candle_ops_with_gradients() {
        let dev = Device::Cpu;
        let (b, n, h) = (3, 4, 5);
        let eps = Tensor::from_vec(wavy(b * n * h, 0.61), (b, n, h), &dev).unwrap();
        let r = Tensor::from_vec(wavy(b * n * h, 0.29), (b, n, h), &dev).unwrap();
        for p in [1, n] {
            let mu = Var::from_vec(wavy(b * p, 1.1), (b, p, 1), &dev).unwrap();
            let sigma = Var::from_vec(wavy(b * p, 0.7), (b, p, 1), &dev).unwrap();
            let ours = affine_noise(&eps, mu.as_tensor(), sigma.as_tensor()).unwrap();
            let theirs = eps
                .broadcast_mul(sigma.as_tensor())
                .unwrap()
                .broadcast_add(mu.as_tensor())
                .unwrap();
            assert_eq!(max_diff(&ours, &theirs), 0.0, "p={p}: forward differs");
            let (g1, g2) = (weighted_grads(&ours, &r), weighted_grads(&theirs, &r));
            for (name, v) in [("mu", &mu), ("sigma", &sigma)] {
                let d = max_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(d < 1e-5, "p={p} {name}: gradients differ by {d}");
            }
            // d/dmu of sum(r * out) is the sum of r over the window's (or path's) block
            let rv = values(&r).unwrap();
            let want: f32 = rv[..if p == 1 { n * h } else { h }].iter().sum();
            let got = values(g1.get(&mu).unwrap()).unwrap()[0];
            assert!((got - want).abs() < 1e-5, "p={p}: {got} vs {want}");
        }
        // mismatched shapes are refused
        let bad = Tensor::zeros((b, 2, 1), DType::F32, &dev).unwrap();
        assert!(affine_noise(&eps, &bad, &bad).is_err());
    }

    #[test]
    fn zoo_fused_softmax_matches_candle_ops_with_gradient() {
        let dev = Device::Cpu;
        let x = Var::from_vec(wavy(4 * 6, 0.83), (2, 2, 6), &dev).unwrap();
        let r = Tensor::from_vec(wavy(4 * 6, 0.41), (2, 2, 6), &dev).unwrap();
        let ours = softmax_last_dim(x.as_tensor()).unwrap();
        let theirs = candle_nn::ops::softmax(x.as_tensor(), candle_core::D::Minus1).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-6);
        let sums = ours
            .sum(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6), "{sums:?}");
        let (g1, g2) = (weighted_grads(&ours, &r), weighted_grads(&theirs, &r));
        let a = g1.get(&x).expect("the input gets a gradient");
        let d = max_diff(a, g2.get(&x).unwrap());
        assert!(d < 1e-6, "gradients differ by {d}");
        assert!(values(a).unwrap().iter().any(|v| v.abs() > 1e-3));
    }

    #[test]
    fn zoo_fused_linear_and_gelu_match_candle_with_gradients() {
        let dev = Device::Cpu;
        let x = Var::from_vec(wavy(2 * 3 * 4, 0.67), (2, 3, 4), &dev).unwrap();
        let w = Var::from_vec(wavy(5 * 4, 1.9), (5, 4), &dev).unwrap();
        let b = Var::from_vec(wavy(5, 0.3), 5, &dev).unwrap();
        let r = Tensor::from_vec(wavy(2 * 3 * 5, 0.45), (2, 3, 5), &dev).unwrap();
        let ours = Linear {
            weight: w.as_tensor().clone(),
            bias: Some(b.as_tensor().clone()),
        };
        let theirs = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        // through GELU as the feed-forward layer uses it; a transposed input too
        for xin in [
            x.as_tensor().clone(),
            x.as_tensor().transpose(0, 1).unwrap(),
        ] {
            let y1 = gelu(&ours.forward(&xin).unwrap()).unwrap();
            let y2 = theirs.forward(&xin).unwrap().gelu().unwrap();
            assert_eq!(y1.dims(), y2.dims());
            assert!(max_diff(&y1, &y2) < 1e-5, "forward {}", max_diff(&y1, &y2));
            let r = if y1.dims() == r.dims() {
                r.clone()
            } else {
                r.transpose(0, 1).unwrap()
            };
            let g1 = (&y1 * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&y2 * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("weight", &w), ("bias", &b)] {
                let a = g1
                    .get(v)
                    .unwrap_or_else(|| panic!("no gradient for {name}"));
                let d = max_diff(a, g2.get(v).unwrap());
                assert!(d < 1e-4, "{name}: gradients differ by {d}");
            }
        }
        // GELU's gradient against a finite difference
        let z = Var::from_vec(vec![-2.0f32, -0.3, 0.0, 0.7, 2.5], 5, &dev).unwrap();
        let g = gelu(z.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let an = values(g.get(&z).unwrap()).unwrap();
        for (k, &v) in [-2.0f32, -0.3, 0.0, 0.7, 2.5].iter().enumerate() {
            let f = |u: f32| 0.5 * u * (1.0 + (GELU_C * (u + GELU_A * u * u * u)).tanh());
            let fd = (f(v + 1e-3) - f(v - 1e-3)) / 2e-3;
            assert!((fd - an[k]).abs() < 2e-3, "x={v}: {fd} vs {}", an[k]);
        }
    }

    #[test]
    fn zoo_fused_attention_matches_candle_ops_with_gradients() {
        let dev = Device::Cpu;
        let shape = (2, 3, 5, 4);
        let n = 2 * 3 * 5 * 4;
        let q = Var::from_vec(wavy(n, 0.71), shape, &dev).unwrap();
        let k = Var::from_vec(wavy(n, 1.37), shape, &dev).unwrap();
        let v = Var::from_vec(wavy(n, 0.23), shape, &dev).unwrap();
        let r = Tensor::from_vec(wavy(n, 0.59), shape, &dev).unwrap();
        let ours = attention(q.as_tensor(), k.as_tensor(), v.as_tensor()).unwrap();
        let s = (q.as_tensor().matmul(&k.as_tensor().t().unwrap()).unwrap() / 2.0).unwrap();
        let theirs = candle_nn::ops::softmax(&s, candle_core::D::Minus1)
            .unwrap()
            .matmul(v.as_tensor())
            .unwrap();
        assert!(
            max_diff(&ours, &theirs) < 1e-5,
            "forward {}",
            max_diff(&ours, &theirs)
        );
        let (g1, g2) = (weighted_grads(&ours, &r), weighted_grads(&theirs, &r));
        for (name, t) in [("q", &q), ("k", &k), ("v", &v)] {
            let a = g1
                .get(t)
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let d = max_diff(a, g2.get(t).unwrap());
            assert!(d < 1e-5, "{name}: gradients differ by {d}");
            assert!(
                values(a).unwrap().iter().any(|x| x.abs() > 1e-3),
                "{name} vanished"
            );
        }
    }

    #[test]
    fn zoo_fast_exp_is_close_to_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (fast_exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(fast_exp(0.0), 1.0);
        assert!(fast_exp(-1000.0) < 1e-37 && fast_exp(-1000.0) >= 0.0);
        assert!(fast_exp(1000.0) > 1e38 && fast_exp(1000.0).is_finite());
        assert!(fast_exp(f32::NAN).is_nan());
    }
}
