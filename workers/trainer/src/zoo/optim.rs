//! AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") over named candle
//! [`Var`]s, with its moments saved to and restored from safetensors so that a resumed run
//! continues exactly where it stopped. candle-nn's `AdamW` keeps its moments private, so this is
//! the same update written out:
//!
//! ```text
//! m = b1 m + (1 - b1) g            v = b2 v + (1 - b2) g^2
//! theta = theta (1 - lr wd) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//! ```

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor, Var};

/// AdamW's hyper-parameters (the defaults are candle's and PyTorch's, weight decay 0.01).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        AdamWParams {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

/// AdamW with inspectable, persistable state.
pub struct AdamW {
    slots: Vec<Slot>,
    step_t: usize,
    pub params: AdamWParams,
}

/// A contiguous f32 CPU tensor's values, borrowed.
fn host_f32(t: &Tensor) -> Option<(std::sync::RwLockReadGuard<'_, Storage>, usize, usize)> {
    let (st, l) = t.storage_and_layout();
    let (a, z) = l.contiguous_offsets()?;
    match &*st {
        Storage::Cpu(CpuStorage::F32(_)) => Some((st, a, z)),
        _ => None,
    }
}

fn slice_of<'a>(g: &'a std::sync::RwLockReadGuard<'_, Storage>, a: usize, z: usize) -> &'a [f32] {
    match &**g {
        Storage::Cpu(CpuStorage::F32(v)) => &v[a..z],
        _ => unreachable!("checked by host_f32"),
    }
}

/// The AdamW update of one slot in one pass over its values on the CPU (f32, contiguous), the
/// same arithmetic as the tensor-op version below, element by element (so the same bits: each
/// `tensor * f64` is candle's affine `x * mul + 0`, done here in f32 the same way). Returns
/// the new moments and parameter values, or `None` when the tensors are not host f32.
fn fused_update(
    s: &Slot,
    g: &Tensor,
    p: &AdamWParams,
    scale_m: f64,
    scale_v: f64,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let n = s.var.elem_count();
    let (new_m, new_v, new_t) = {
        let (Some(gg), Some(mg), Some(vg), Some(tg)) = (
            host_f32(g),
            host_f32(&s.m),
            host_f32(&s.v),
            host_f32(s.var.as_tensor()),
        ) else {
            return Ok(None);
        };
        let (gs, ms, vs, ts) = (
            slice_of(&gg.0, gg.1, gg.2),
            slice_of(&mg.0, mg.1, mg.2),
            slice_of(&vg.0, vg.1, vg.2),
            slice_of(&tg.0, tg.1, tg.2),
        );
        if gs.len() != n || ms.len() != n || vs.len() != n || ts.len() != n {
            return Ok(None);
        }
        let (b1, c1) = (p.beta1 as f32, (1.0 - p.beta1) as f32);
        let (b2, c2) = (p.beta2 as f32, (1.0 - p.beta2) as f32);
        let (sm, sv, eps) = (scale_m as f32, scale_v as f32, p.eps as f32);
        let (decay, lr) = ((1.0 - p.lr * p.weight_decay) as f32, p.lr as f32);
        let mut new_m = Vec::with_capacity(n);
        let mut new_v = Vec::with_capacity(n);
        let mut new_t = Vec::with_capacity(n);
        for i in 0..n {
            let gi = gs[i];
            let m = (ms[i] * b1 + 0.0) + (gi * c1 + 0.0);
            let v = (vs[i] * b2 + 0.0) + ((gi * gi) * c2 + 0.0);
            let update = (m * sm + 0.0) / ((v * sv + 0.0).sqrt() * 1.0 + eps);
            new_t.push((ts[i] * decay + 0.0) - (update * lr + 0.0));
            new_m.push(m);
            new_v.push(v);
        }
        (new_m, new_v, new_t)
    };
    let (shape, dev) = (s.var.shape(), s.var.device());
    Ok(Some((
        Tensor::from_vec(new_m, shape, dev)?,
        Tensor::from_vec(new_v, shape, dev)?,
        Tensor::from_vec(new_t, shape, dev)?,
    )))
}

/// The key under which the step counter is saved.
const STEP_KEY: &str = "__step";

impl AdamW {
    /// One slot (zero moments) per named float variable.
    pub fn new(vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        let slots = vars
            .into_iter()
            .filter(|(_, v)| v.dtype().is_float())
            .map(|(name, var)| {
                let m = var.as_tensor().zeros_like()?;
                let v = var.as_tensor().zeros_like()?;
                Ok(Slot { name, var, m, v })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            slots,
            step_t: 0,
            params,
        })
    }

    /// Optimiser steps taken so far.
    pub fn steps(&self) -> usize {
        self.step_t
    }

    pub fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// One update from `grads`; variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_t += 1;
        let p = self.params;
        let t = self.step_t as i32;
        let scale_m = 1.0 / (1.0 - p.beta1.powi(t));
        let scale_v = 1.0 / (1.0 - p.beta2.powi(t));
        for s in &mut self.slots {
            let Some(g) = grads.get(&s.var) else { continue };
            if let Some((m, v, theta)) = fused_update(s, g, &p, scale_m, scale_v)? {
                s.var.set(&theta)?;
                s.m = m;
                s.v = v;
                continue;
            }
            let m = ((&s.m * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            let v = ((&s.v * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let update = ((&m * scale_m)? / ((&v * scale_v)?.sqrt()? + p.eps)?)?;
            let theta = ((s.var.as_tensor() * (1.0 - p.lr * p.weight_decay))? - (update * p.lr)?)?;
            s.var.set(&theta)?;
            s.m = m;
            s.v = v;
        }
        Ok(())
    }

    /// `loss.backward()` then [`AdamW::step`].
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }

    /// The moments as `m.<name>` / `v.<name>` plus the step counter.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for s in &self.slots {
            out.insert(format!("m.{}", s.name), s.m.clone());
            out.insert(format!("v.{}", s.name), s.v.clone());
        }
        let dev = self.slots.first().map(|s| s.var.device().clone());
        out.insert(
            STEP_KEY.to_string(),
            Tensor::new(&[self.step_t as u32], &dev.unwrap_or(Device::Cpu))?,
        );
        Ok(out)
    }

    /// Save the state as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.state_tensors()?, path)
    }

    /// Restore the state saved by [`AdamW::save`]; every variable's moments must be present
    /// with its shape, or the error names the first that is not.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let dev = self
            .slots
            .first()
            .map(|s| s.var.device().clone())
            .unwrap_or(Device::Cpu);
        let mut saved = candle_core::safetensors::load(path, &dev)?;
        let mut take = |key: &str, like: &Tensor| -> Result<Tensor> {
            let t = saved.remove(key).ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "{}: no optimizer state {key:?} (saved for another model?)",
                    path.display()
                ))
            })?;
            if t.shape() != like.shape() {
                candle_core::bail!(
                    "{}: optimizer state {key:?} has shape {:?}, the parameter has {:?}",
                    path.display(),
                    t.shape(),
                    like.shape()
                );
            }
            t.to_dtype(like.dtype())
        };
        let mut restored = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let m = take(&format!("m.{}", s.name), s.var.as_tensor())?;
            let v = take(&format!("v.{}", s.name), s.var.as_tensor())?;
            restored.push((m, v));
        }
        let step = saved.remove(STEP_KEY).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{}: no optimizer step counter {STEP_KEY:?}",
                path.display()
            ))
        })?;
        let step = step.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        for (s, (m, v)) in self.slots.iter_mut().zip(restored) {
            s.m = m;
            s.v = v;
        }
        self.step_t = step.first().copied().unwrap_or(0) as usize;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::optim::{Optimizer, ParamsAdamW};

    fn vars() -> Vec<(String, Var)> {
        let dev = Device::Cpu;
        vec![
            (
                "a".into(),
                Var::from_tensor(&Tensor::new(&[[0.5f32, -1.0], [2.0, 0.1]], &dev).unwrap())
                    .unwrap(),
            ),
            (
                "b".into(),
                Var::from_tensor(&Tensor::new(&[0.3f32, -0.7, 1.5], &dev).unwrap()).unwrap(),
            ),
        ]
    }

    fn loss(vs: &[(String, Var)]) -> Tensor {
        let a = vs[0].1.as_tensor();
        let b = vs[1].1.as_tensor();
        (a.sqr().unwrap().sum_all().unwrap() + (b.exp().unwrap().sum_all().unwrap() * 0.5)).unwrap()
    }

    fn values(vs: &[(String, Var)]) -> Vec<f32> {
        vs.iter()
            .flat_map(|(_, v)| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn zoo_adamw_matches_candle_adamw() {
        let p = AdamWParams {
            lr: 0.05,
            ..Default::default()
        };
        let ours = vars();
        let theirs = vars();
        let mut o = AdamW::new(ours.clone(), p).unwrap();
        let mut c = candle_nn::optim::AdamW::new(
            theirs.iter().map(|(_, v)| v.clone()).collect(),
            ParamsAdamW {
                lr: p.lr,
                weight_decay: p.weight_decay,
                ..Default::default()
            },
        )
        .unwrap();
        let start = values(&ours);
        for _ in 0..5 {
            o.backward_step(&loss(&ours)).unwrap();
            c.backward_step(&loss(&theirs)).unwrap();
        }
        assert_ne!(values(&ours), start, "the update moved nothing");
        assert_eq!(values(&ours), values(&theirs));
        assert_eq!(o.steps(), 5);
    }

    #[test]
    fn zoo_adamw_state_round_trips_and_resumes_exactly() {
        let p = AdamWParams {
            lr: 0.05,
            ..Default::default()
        };
        let straight = vars();
        let mut o = AdamW::new(straight.clone(), p).unwrap();
        for _ in 0..6 {
            o.backward_step(&loss(&straight)).unwrap();
        }
        let tmp = std::env::temp_dir().join(format!("zoo-adamw-{}.st", std::process::id()));
        let split = vars();
        let mut first = AdamW::new(split.clone(), p).unwrap();
        for _ in 0..3 {
            first.backward_step(&loss(&split)).unwrap();
        }
        first.save(&tmp).unwrap();
        // a fresh optimiser over the same variables, restored: the last 3 steps match
        let mut second = AdamW::new(split.clone(), p).unwrap();
        second.load(&tmp).unwrap();
        assert_eq!(second.steps(), 3);
        for _ in 0..3 {
            second.backward_step(&loss(&split)).unwrap();
        }
        assert_eq!(values(&split), values(&straight));
        // without the moments the run differs
        let cold = vars();
        let mut c1 = AdamW::new(cold.clone(), p).unwrap();
        for _ in 0..3 {
            c1.backward_step(&loss(&cold)).unwrap();
        }
        let mut c2 = AdamW::new(cold.clone(), p).unwrap();
        for _ in 0..3 {
            c2.backward_step(&loss(&cold)).unwrap();
        }
        assert_ne!(values(&cold), values(&straight));
        // state for another model is refused by name
        let mut other = AdamW::new(
            vec![(
                "zzz".into(),
                Var::from_tensor(&Tensor::new(&[1f32], &Device::Cpu).unwrap()).unwrap(),
            )],
            p,
        )
        .unwrap();
        let e = other.load(&tmp).unwrap_err().to_string();
        assert!(e.contains("m.zzz"), "{e}");
        let _ = std::fs::remove_file(&tmp);
    }
}
