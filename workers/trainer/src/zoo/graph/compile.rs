//! A checked component graph as candle ops: [`GraphBlock`] implements the same
//! [`Block`] trait as the built-in blocks and [`GraphHead`] the same [`Head`] trait as the
//! built-in heads, its parameters registered through the model's
//! `VarBuilder` under `<node id>.<name>` (so the same ids give the same names, the same seeded
//! initial values and the same checkpoint keys as a built-in block with those names), with
//! autograd through every op.
//!
//! Does NOT: check anything (that is [`super::check`]'s job; a plan is trusted to be valid), or
//! hold any op outside the vocabulary.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Conv1d, Conv1dConfig, Init, VarBuilder};

use super::{Checked, Op};
use crate::zoo::blocks::{causal_mask, moving_average, Block, Mha};
use crate::zoo::fused::{self, LayerNorm, Linear};
use crate::zoo::heads::{Affine, Head};
use crate::zoo::params::Noise;

enum Built {
    Linear(Linear),
    Conv1d {
        conv: Conv1d,
        left: usize,
        right: usize,
    },
    LayerNorm(LayerNorm),
    RmsNorm {
        weight: Tensor,
        eps: f64,
    },
    Attention {
        mha: Mha,
        mask: Option<Tensor>,
    },
    Ema {
        decay: Tensor,
        lag: Tensor,
        keep: Tensor,
    },
    Plain(Op),
}

struct Step {
    built: Built,
    inputs: Vec<usize>,
}

/// A component graph compiled to candle ops: `(batch, seq, d_model) -> (batch, seq, d_model)`.
pub struct GraphBlock {
    steps: Vec<Step>,
    output: usize,
}

impl GraphBlock {
    /// Build the graph's modules, registering parameters under `vb` by node id.
    pub fn new(c: &Checked, vb: VarBuilder) -> Result<Self> {
        let ctx = c.ctx;
        let steps = c
            .plan
            .iter()
            .map(|p| {
                let vb = vb.pp(&p.id);
                let x = p.in_shapes[0];
                let width = x.at(2, ctx);
                let rows = x.at(1, ctx);
                let built = match &p.op {
                    Op::Linear { out, bias } => {
                        let o = super::Shape::size(*out, ctx);
                        Built::Linear(if *bias {
                            fused::linear(width, o, vb)?
                        } else {
                            fused::linear_no_bias(width, o, vb)?
                        })
                    }
                    Op::Conv1d {
                        out,
                        kernel,
                        dilation,
                        causal,
                        bias,
                    } => {
                        let cfg = Conv1dConfig {
                            dilation: *dilation,
                            ..Default::default()
                        };
                        let conv = if *bias {
                            candle_nn::conv1d(width, *out, *kernel, cfg, vb)?
                        } else {
                            candle_nn::conv1d_no_bias(width, *out, *kernel, cfg, vb)?
                        };
                        let pad = (kernel - 1) * dilation;
                        let (left, right) = if *causal {
                            (pad, 0)
                        } else {
                            (pad / 2, pad - pad / 2)
                        };
                        Built::Conv1d { conv, left, right }
                    }
                    Op::LayerNorm { eps } => Built::LayerNorm(fused::layer_norm(width, *eps, vb)?),
                    Op::RmsNorm { eps } => Built::RmsNorm {
                        weight: vb.get_with_hints(width, "weight", Init::Const(1.0))?,
                        eps: *eps,
                    },
                    Op::Attention { heads, causal } => Built::Attention {
                        mask: if *causal {
                            Some(causal_mask(rows, vb.device())?)
                        } else {
                            None
                        },
                        mha: Mha::new(width, *heads, vb)?,
                    },
                    Op::Ema => {
                        // lag[t][u] = t - u below the diagonal; keep masks the rest
                        let mut lag = vec![0f32; rows * rows];
                        let mut keep = vec![0f32; rows * rows];
                        for t in 0..rows {
                            for u in 0..=t {
                                lag[t * rows + u] = (t - u) as f32;
                                keep[t * rows + u] = 1.0;
                            }
                        }
                        Built::Ema {
                            decay: vb.get_with_hints(width, "decay", Init::Const(2.0))?,
                            lag: Tensor::from_vec(lag, (1, rows, rows), vb.device())?,
                            keep: Tensor::from_vec(keep, (1, rows, rows), vb.device())?,
                        }
                    }
                    other => Built::Plain(other.clone()),
                };
                Ok(Step {
                    built,
                    inputs: p.inputs.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GraphBlock {
            steps,
            output: c.output,
        })
    }
}

fn elementwise(op: &Op, xs: &[&Tensor]) -> Result<Tensor> {
    let mut acc = xs[0].clone();
    for y in &xs[1..] {
        let same = acc.shape() == y.shape();
        acc = match (op, same) {
            (Op::Add, true) => (&acc + *y)?,
            (Op::Add, false) => acc.broadcast_add(y)?,
            (Op::Sub, true) => (&acc - *y)?,
            (Op::Sub, false) => acc.broadcast_sub(y)?,
            (Op::Mul, true) => (&acc * *y)?,
            _ => acc.broadcast_mul(y)?,
        };
    }
    Ok(acc)
}

impl Block for GraphBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut vals = self.values(x, self.steps.len())?;
        Ok(vals.swap_remove(self.output))
    }
}

/// A head graph compiled to candle ops: the nodes before the distribution give one drift and
/// one scale per window, `(b, 1, 1)` each; the increments are `mu + sigma * eps`, `eps` standard
/// normal (`gaussian`) or Student-t (`student_t`), drawn from the seeded noise.
pub struct GraphHead {
    body: GraphBlock,
    mu: usize,
    sigma: usize,
    df: Option<f64>,
}

impl GraphHead {
    /// Build a checked head graph, registering parameters under `vb` by node id.
    pub fn new(c: &Checked, vb: VarBuilder) -> Result<Self> {
        let body = GraphBlock::new(c, vb)?;
        let Some(last) = c.plan.last().filter(|p| p.op.is_distribution()) else {
            candle_core::bail!("head graph {} does not end in a distribution", c.doc.name)
        };
        Ok(GraphHead {
            mu: last.inputs[0],
            sigma: last.inputs[1],
            df: match last.op {
                Op::StudentT { df } => Some(df),
                _ => None,
            },
            body,
        })
    }
}

impl Head for GraphHead {
    fn sample(&self, h: &Tensor, n: usize, horizon: usize, noise: &mut Noise) -> Result<Tensor> {
        let Some(a) = self.sample_affine(h, n, horizon, noise)? else {
            unreachable!("a graph head always has the affine form")
        };
        fused::affine_noise(&a.eps, &a.mu, &a.sigma)
    }

    fn sample_affine(
        &self,
        h: &Tensor,
        n: usize,
        horizon: usize,
        noise: &mut Noise,
    ) -> Result<Option<Affine>> {
        let vals = self.body.values(h, self.body.steps.len() - 1)?;
        let (mu, sigma) = (vals[self.mu].clone(), vals[self.sigma].clone());
        let b = mu.dim(0)?;
        let eps = match self.df {
            None => noise.normal((b, n, horizon))?,
            Some(df) => noise.student_t((b, n, horizon), df)?,
        };
        Ok(Some(Affine { eps, mu, sigma }))
    }
}

/// A value as computed: rows-first `(b, m, c)` and/or channels-first `(b, c, m)`, the other
/// layout made (once) when asked for. Ops along the middle axis (`conv1d`, `cumsum`, `ema`) run
/// channels-first, elementwise ops in whichever layout their inputs already have, so a chain of
/// time-axis ops (a TCN's convolutions, ReLUs and residual sums) transposes once on the way in
/// and once on the way out, as a built-in block does.
struct Val {
    rows: Option<Tensor>,
    cf: Option<Tensor>,
}

impl Val {
    fn rows(t: Tensor) -> Self {
        Val {
            rows: Some(t),
            cf: None,
        }
    }

    fn cf(t: Tensor) -> Self {
        Val {
            rows: None,
            cf: Some(t),
        }
    }

    fn get_rows(&mut self) -> Result<Tensor> {
        if let Some(t) = &self.rows {
            return Ok(t.clone());
        }
        let t = self.cf.as_ref().expect("a value has a layout");
        let t = t.transpose(1, 2)?.contiguous()?;
        self.rows = Some(t.clone());
        Ok(t)
    }

    fn get_cf(&mut self) -> Result<Tensor> {
        if let Some(t) = &self.cf {
            return Ok(t.clone());
        }
        let t = self.rows.as_ref().expect("a value has a layout");
        let t = t.transpose(1, 2)?.contiguous()?;
        self.cf = Some(t.clone());
        Ok(t)
    }
}

impl GraphBlock {
    /// The input and the values of the first `upto` steps, by slot, rows-first.
    fn values(&self, x: &Tensor, upto: usize) -> Result<Vec<Tensor>> {
        let mut vals: Vec<Val> = Vec::with_capacity(upto + 1);
        vals.push(Val::rows(x.clone()));
        for s in &self.steps[..upto] {
            let y = self.step(s, &mut vals)?;
            vals.push(y);
        }
        vals.iter_mut().map(Val::get_rows).collect()
    }

    /// One step's value from the values so far.
    fn step(&self, s: &Step, vals: &mut [Val]) -> Result<Val> {
        let first = s.inputs[0];
        // the layout-free ops run channels-first when every input has that layout and one has
        // no other
        let all_cf = s.inputs.iter().all(|&i| vals[i].cf.is_some())
            && s.inputs.iter().any(|&i| vals[i].rows.is_none());
        let shapes_equal = s.inputs.windows(2).all(|w| {
            vals[w[0]].cf.as_ref().map(|t| t.dims().to_vec())
                == vals[w[1]].cf.as_ref().map(|t| t.dims().to_vec())
        });
        let ins_cf = |vals: &mut [Val]| -> Result<Vec<Tensor>> {
            s.inputs.iter().map(|&i| vals[i].get_cf()).collect()
        };
        let ins_rows = |vals: &mut [Val]| -> Result<Vec<Tensor>> {
            s.inputs.iter().map(|&i| vals[i].get_rows()).collect()
        };
        let unary = |vals: &mut [Val], f: &dyn Fn(&Tensor) -> Result<Tensor>| -> Result<Val> {
            Ok(if all_cf {
                Val::cf(f(&vals[first].get_cf()?)?)
            } else {
                Val::rows(f(&vals[first].get_rows()?)?)
            })
        };
        Ok(match &s.built {
            Built::Conv1d { conv, left, right } => {
                let t = vals[first].get_cf()?;
                let t = if left + right > 0 {
                    t.pad_with_zeros(D::Minus1, *left, *right)?
                } else {
                    t
                };
                Val::cf(conv.forward(&t)?)
            }
            Built::Ema { decay, lag, keep } => {
                let c = decay.dim(0)?;
                let a_coef = candle_nn::ops::sigmoid(decay)?;
                let log_a = crate::zoo::params::softplus(&decay.neg()?)?.neg()?;
                // w[c][t][u] = (1 - a_c) a_c^(t-u) for u <= t
                let w = lag
                    .broadcast_mul(&log_a.reshape((c, 1, 1))?)?
                    .exp()?
                    .broadcast_mul(keep)?
                    .broadcast_mul(&a_coef.affine(-1.0, 1.0)?.reshape((c, 1, 1))?)?;
                // (1, c, m, m) @ (b, c, m, 1)
                let t = vals[first].get_cf()?;
                Val::cf(
                    w.unsqueeze(0)?
                        .broadcast_matmul(&t.unsqueeze(3)?)?
                        .squeeze(3)?,
                )
            }
            Built::Plain(Op::Cumsum) => {
                Val::cf(crate::zoo::ops::cumsum_last(&vals[first].get_cf()?)?)
            }
            // the transposed value is the channels-first layout of the input
            Built::Plain(Op::Transpose) => Val {
                rows: Some(vals[first].get_cf()?),
                cf: vals[first].rows.clone(),
            },
            Built::Plain(Op::Relu) => unary(vals, &|a| a.relu())?,
            Built::Plain(Op::Gelu) => unary(vals, &fused::gelu)?,
            Built::Plain(Op::Silu) => unary(vals, &|a| a.silu())?,
            Built::Plain(Op::Tanh) => unary(vals, &|a| a.tanh())?,
            Built::Plain(Op::Sigmoid) => unary(vals, &candle_nn::ops::sigmoid)?,
            Built::Plain(Op::Softplus) => unary(vals, &crate::zoo::params::softplus)?,
            Built::Plain(Op::Scale { factor, offset }) => {
                unary(vals, &|a| a.affine(*factor, *offset))?
            }
            Built::Plain(op @ (Op::Add | Op::Sub | Op::Mul)) => {
                if all_cf && shapes_equal {
                    let ins = ins_cf(vals)?;
                    Val::cf(elementwise(op, &ins.iter().collect::<Vec<_>>())?)
                } else {
                    let ins = ins_rows(vals)?;
                    Val::rows(elementwise(op, &ins.iter().collect::<Vec<_>>())?)
                }
            }
            built => {
                let ins = ins_rows(vals)?;
                let a = &ins[0];
                Val::rows(match built {
                    Built::Linear(l) => l.forward(a)?,
                    Built::LayerNorm(n) => n.forward(a)?,
                    Built::RmsNorm { weight, eps } => {
                        let ms = a.sqr()?.mean_keepdim(D::Minus1)?;
                        a.broadcast_div(&(ms + *eps)?.sqrt()?)?
                            .broadcast_mul(weight)?
                    }
                    Built::Attention { mha, mask } => mha.forward(a, a, mask.as_ref())?,
                    Built::Plain(op) => match op {
                        Op::Glu => {
                            let h = a.dim(D::Minus1)? / 2;
                            (a.narrow(D::Minus1, 0, h)?
                                * candle_nn::ops::sigmoid(&a.narrow(D::Minus1, h, h)?)?)?
                        }
                        Op::LastTime => a.narrow(1, a.dim(1)? - 1, 1)?,
                        Op::Concat => Tensor::cat(&ins, D::Minus1)?,
                        Op::Slice { start, len } => {
                            a.narrow(D::Minus1, *start, *len)?.contiguous()?
                        }
                        Op::MeanTime => a.mean_keepdim(1)?,
                        Op::MovingAverage { kernel } => moving_average(a, *kernel)?,
                        other => candle_core::bail!("op {other:?} was not built"),
                    },
                    _ => candle_core::bail!("a built op was not matched"),
                })
            }
        })
    }
}
