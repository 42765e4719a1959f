//! Custom candle ops. candle's `Tensor::cumsum` is a matrix product with a triangular matrix,
//! O(n^2) per row: for the loss's `(batch, paths, 288)` returns that is 42 M multiply-adds
//! forward and as many backward, the largest single cost of a training step. [`cumsum_last`] is
//! the O(n) prefix sum along the last axis on the CPU, with its gradient (the reversed prefix
//! sum); other devices fall back to candle's `cumsum`.
//!
//! [`lstm_scan`] is the LSTM recurrence over a whole window as one op with a hand-written
//! backward (back-propagation through time), in the way PyTorch's fused CPU LSTM kernel works:
//! built from candle ops the recurrence is ~14 small ops per time step forward and more
//! backward, each costing microseconds of overhead at these sizes.

use std::sync::{Arc, Mutex};

use super::fused::{axpy, cpu_f32, fast_exp, fast_tanh};
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor, D};

/// Prefix sum (`reverse: false`) or suffix sum (`reverse: true`) along the last axis.
struct Scan {
    reverse: bool,
}

fn scan<T: Copy + std::ops::Add<Output = T>>(src: &[T], row: usize, reverse: bool) -> Vec<T> {
    let mut out = src.to_vec();
    for r in out.chunks_mut(row.max(1)) {
        if reverse {
            for k in (0..r.len().saturating_sub(1)).rev() {
                r[k] = r[k] + r[k + 1];
            }
        } else {
            for k in 1..r.len() {
                r[k] = r[k] + r[k - 1];
            }
        }
    }
    out
}

impl CustomOp1 for Scan {
    fn name(&self) -> &'static str {
        if self.reverse {
            "zoo-suffix-sum"
        } else {
            "zoo-prefix-sum"
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let shape = layout.shape().clone();
        let row = shape.dims().last().copied().unwrap_or(1);
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("{}: the input must be contiguous", self.name())
        };
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(scan(&v[start..end], row, self.reverse)),
            CpuStorage::F64(v) => CpuStorage::F64(scan(&v[start..end], row, self.reverse)),
            _ => candle_core::bail!(
                "{}: only f32 and f64 are supported (input of shape {:?})",
                self.name(),
                layout.dims()
            ),
        };
        Ok((out, shape))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        // d/dx_j of sum_{k>=j} (prefix) is the suffix sum of the gradient, and vice versa
        let g = grad_res.contiguous()?.apply_op1(Scan {
            reverse: !self.reverse,
        })?;
        Ok(Some(g))
    }
}

/// The cumulative sum along the last axis, differentiable; O(n) on the CPU.
pub fn cumsum_last(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        x.contiguous()?.apply_op1(Scan { reverse: false })
    } else {
        x.cumsum(D::Minus1)
    }
}

/// The LSTM recurrence: `xp (s, b, 4h)` (input projections plus both biases, gates in the
/// order input, forget, cell, output), `w_hh (4h, h)`; output the hidden states `(s, b, h)` from
/// a zero initial state, plus the bias `(4h)`. The forward pass keeps its activations for the backward pass when an
/// input needs a gradient (as PyTorch's fused LSTM keeps its workspace).
struct LstmScan {
    want_grad: bool,
    trace: Arc<Mutex<Option<LstmTrace>>>,
}

/// `i, f, g, o` activations and cell states of every step, from the inputs.
struct LstmTrace {
    /// `(s, b, 4h)`: sigmoid(i), sigmoid(f), tanh(g), sigmoid(o).
    act: Vec<f32>,
    /// `(s, b, h)` cell states.
    c: Vec<f32>,
    /// `(s, b, h)` hidden states.
    h: Vec<f32>,
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-x))
}

// The two scans run compiled for AVX2 when the CPU has it (checked at run time), else for the
// baseline target: the same arithmetic (no fused multiply-add), so the same bits either way, on
// 8 lanes instead of 4.

avx2_dispatch! {
    fn lstm_forward(xp: &[f32], w: &[f32], bias: &[f32], s: usize, b: usize, hd: usize) -> LstmTrace
        => lstm_forward_impl
}

#[inline(always)]
fn lstm_forward_impl(
    xp: &[f32],
    w: &[f32],
    bias: &[f32],
    s: usize,
    b: usize,
    hd: usize,
) -> LstmTrace {
    let g4 = 4 * hd;
    // w_hh^T (h, 4h): row k holds the weights of h_{t-1}[k] into every gate
    let mut wt = vec![0f32; hd * g4];
    for j in 0..g4 {
        for k in 0..hd {
            wt[k * g4 + j] = w[j * hd + k];
        }
    }
    let mut act = xp.to_vec();
    for row in act.chunks_exact_mut(g4) {
        for (a, &bv) in row.iter_mut().zip(bias) {
            *a += bv;
        }
    }
    let mut c = vec![0f32; s * b * hd];
    let mut h = vec![0f32; s * b * hd];
    for t in 0..s {
        for r in 0..b {
            let row = (t * b + r) * g4;
            let a = &mut act[row..row + g4];
            if t > 0 {
                let hp = &h[((t - 1) * b + r) * hd..][..hd];
                for (k, &hk) in hp.iter().enumerate() {
                    axpy(a, hk, &wt[k * g4..(k + 1) * g4]);
                }
            }
            let (ifg, o) = a.split_at_mut(3 * hd);
            for v in ifg[..2 * hd].iter_mut() {
                *v = sigmoid(*v);
            }
            for v in o.iter_mut() {
                *v = sigmoid(*v);
            }
            for v in ifg[2 * hd..].iter_mut() {
                *v = fast_tanh(*v);
            }
            let o = (t * b + r) * hd;
            for k in 0..hd {
                let cp = if t > 0 { c[o - b * hd + k] } else { 0.0 };
                let ck = a[hd + k] * cp + a[k] * a[2 * hd + k];
                c[o + k] = ck;
                h[o + k] = a[3 * hd + k] * fast_tanh(ck);
            }
        }
    }
    LstmTrace { act, c, h }
}

avx2_dispatch! {
    /// Gradients of `sum(dh * h)` with respect to `xp` (= the bias's, summed over rows) and
    /// `w_hh`, from the forward trace.
    fn lstm_backward(
        tr: &LstmTrace,
        w: &[f32],
        dh_out: &[f32],
        s: usize,
        b: usize,
        hd: usize,
    ) -> (Vec<f32>, Vec<f32>) => lstm_backward_impl
}

#[inline(always)]
fn lstm_backward_impl(
    tr: &LstmTrace,
    w: &[f32],
    dh_out: &[f32],
    s: usize,
    b: usize,
    hd: usize,
) -> (Vec<f32>, Vec<f32>) {
    let g4 = 4 * hd;
    let mut dxp = vec![0f32; s * b * g4];
    let mut dw = vec![0f32; g4 * hd];
    let mut dh_next = vec![0f32; b * hd];
    let mut dc_next = vec![0f32; b * hd];
    for t in (0..s).rev() {
        for r in 0..b {
            let o = (t * b + r) * hd;
            let row = (t * b + r) * g4;
            let a = &tr.act[row..row + g4];
            let dg = &mut dxp[row..row + g4];
            let dhn = &mut dh_next[r * hd..(r + 1) * hd];
            let dcn = &mut dc_next[r * hd..(r + 1) * hd];
            for k in 0..hd {
                let (i, f, g, og) = (a[k], a[hd + k], a[2 * hd + k], a[3 * hd + k]);
                let tc = fast_tanh(tr.c[o + k]);
                let dh = dh_out[o + k] + dhn[k];
                let dc = dcn[k] + dh * og * (1.0 - tc * tc);
                let cp = if t > 0 { tr.c[o - b * hd + k] } else { 0.0 };
                dg[k] = dc * g * i * (1.0 - i);
                dg[hd + k] = dc * cp * f * (1.0 - f);
                dg[2 * hd + k] = dc * i * (1.0 - g * g);
                dg[3 * hd + k] = dh * tc * og * (1.0 - og);
                dcn[k] = dc * f;
            }
            dhn.iter_mut().for_each(|x| *x = 0.0);
            if t > 0 {
                let hp = &tr.h[o - b * hd..][..hd];
                for (j, &gj) in dg.iter().enumerate() {
                    axpy(dhn, gj, &w[j * hd..(j + 1) * hd]);
                    axpy(&mut dw[j * hd..(j + 1) * hd], gj, hp);
                }
            }
        }
    }
    (dxp, dw)
}

impl CustomOp3 for LstmScan {
    fn name(&self) -> &'static str {
        "zoo-lstm-scan"
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
        let (s, b, g4) = l1.shape().dims3()?;
        let (wr, hd) = l2.shape().dims2()?;
        if g4 != 4 * hd || wr != g4 || l3.dims() != [g4] {
            candle_core::bail!(
                "zoo-lstm-scan: inputs {:?}, w_hh {:?} and bias {:?} do not fit (need (s, b, 4h), (4h, h), (4h))",
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        let op = self.name();
        let xp = cpu_f32(s1, l1, op, "the input projections")?;
        let w = cpu_f32(s2, l2, op, "w_hh")?;
        let bias = cpu_f32(s3, l3, op, "the bias")?;
        let tr = lstm_forward(xp, w, bias, s, b, hd);
        let h = tr.h.clone();
        if self.want_grad {
            *self.trace.lock().expect("lstm trace lock") = Some(tr);
        }
        Ok((CpuStorage::F32(h), Shape::from((s, b, hd))))
    }

    fn bwd(
        &self,
        xp: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (s, b, g4) = xp.dims3()?;
        let hd = g4 / 4;
        let wv: Vec<f32> = w.flatten_all()?.to_vec1()?;
        let dh: Vec<f32> = grad.flatten_all()?.to_vec1()?;
        let kept = self.trace.lock().expect("lstm trace lock");
        let (dxp, dw) = match &*kept {
            Some(tr) => lstm_backward(tr, &wv, &dh, s, b, hd),
            None => {
                let x: Vec<f32> = xp.flatten_all()?.to_vec1()?;
                let bv: Vec<f32> = bias.flatten_all()?.to_vec1()?;
                let tr = lstm_forward(&x, &wv, &bv, s, b, hd);
                lstm_backward(&tr, &wv, &dh, s, b, hd)
            }
        };
        let mut db = vec![0f32; g4];
        for row in dxp.chunks_exact(g4) {
            axpy(&mut db, 1.0, row);
        }
        Ok((
            Some(Tensor::from_vec(dxp, (s, b, g4), xp.device())?),
            Some(Tensor::from_vec(dw, (g4, hd), w.device())?),
            Some(Tensor::from_vec(db, g4, bias.device())?),
        ))
    }
}

/// Hidden states `(s, b, h)` of an LSTM over time-major input projections `xp (s, b, 4h)`
/// (without bias) plus `bias (4h)` with recurrent weights `w_hh (4h, h)`, from a zero state;
/// CPU, f32.
pub fn lstm_scan(xp: &Tensor, w_hh: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let op = LstmScan {
        want_grad: xp.track_op() || w_hh.track_op() || bias.track_op(),
        trace: Arc::new(Mutex::new(None)),
    };
    xp.contiguous()?
        .apply_op3(&w_hh.contiguous()?, &bias.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn zoo_cumsum_last_matches_candle_cumsum_with_gradient() {
        let dev = Device::Cpu;
        let v: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3).collect();
        let x = Var::from_tensor(&Tensor::from_vec(v, (2, 3, 4), &dev).unwrap()).unwrap();
        let w = Tensor::from_vec(
            (0..24).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
            (2, 3, 4),
            &dev,
        )
        .unwrap();
        let ours = cumsum_last(x.as_tensor()).unwrap();
        let theirs = x.as_tensor().cumsum(2).unwrap();
        let diff = (&ours - &theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "forward differs by {diff}");
        assert_eq!(
            ours.get(0)
                .unwrap()
                .get(0)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[3],
            theirs
                .get(0)
                .unwrap()
                .get(0)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[3]
        );
        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let a = g1
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = g2
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-5),
            "{a:?} vs {b:?}"
        );
        // the gradient of element j is the sum of the weights from j to the end of its row
        assert!(
            (a[0]
                - w.flatten_all().unwrap().to_vec1::<f32>().unwrap()[..4]
                    .iter()
                    .sum::<f32>())
            .abs()
                < 1e-5
        );
        // a non-contiguous input is handled (made contiguous first)
        let t = x.as_tensor().transpose(1, 2).unwrap();
        let d = (cumsum_last(&t).unwrap() - t.cumsum(2).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-5);
    }
}
