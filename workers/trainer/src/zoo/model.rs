//! A model: input projection, the stacked blocks, a final layer norm and a head.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::fused::{layer_norm, linear, LayerNorm, Linear};

use super::blocks::{build_block, Block, BuildCtx};
use super::heads::{build_head, Affine, Head};
use super::params::Noise;
use super::spec::{ExperimentSpec, Resolved};

/// Backbone plus head, as built from a validated spec.
pub struct ZooModel {
    input: Linear,
    blocks: Vec<Box<dyn Block>>,
    norm: LayerNorm,
    head: Box<dyn Head>,
    pub horizon: usize,
    pub d_model: usize,
}

impl ZooModel {
    /// Build from a spec and its [`Resolved`] components; parameters come from `vb`.
    pub fn build(spec: &ExperimentSpec, r: &Resolved, vb: VarBuilder) -> Result<Self> {
        let bb = &spec.model.backbone;
        let ctx = BuildCtx {
            d_model: bb.d_model,
            seq_len: bb.seq_len,
        };
        let blocks =
            r.blocks
                .iter()
                .enumerate()
                .map(|(i, (name, p))| {
                    let vb = vb.pp(format!("blocks.{i}"));
                    match r.graphs.get(&i) {
                        Some(g) => Ok(Box::new(super::graph::compile::GraphBlock::new(g, vb)?)
                            as Box<dyn Block>),
                        None => build_block(name, p, ctx, vb),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
        Ok(ZooModel {
            input: linear(bb.features.len(), bb.d_model, vb.pp("input"))?,
            blocks,
            norm: layer_norm(bb.d_model, 1e-5, vb.pp("norm"))?,
            head: match &r.head_graph {
                Some(g) => Box::new(super::graph::compile::GraphHead::new(g, vb.pp("head"))?),
                None => build_head(
                    r.head.0,
                    &r.head.1,
                    bb.d_model,
                    spec.training.horizon,
                    vb.pp("head"),
                )?,
            },
            horizon: spec.training.horizon,
            d_model: bb.d_model,
        })
    }

    /// Give a freshly built model's head its own starting values ([`Head::reinit`]); `named`
    /// are the model's variables by full name (the head's start with `head.`).
    pub fn init_head(&self, named: &[(String, candle_core::Var)]) -> Result<()> {
        for (name, var) in named {
            if let Some(rest) = name.strip_prefix("head.") {
                if let Some(t) = self.head.reinit(rest, var.as_tensor())? {
                    var.set(&t)?;
                }
            }
        }
        Ok(())
    }

    /// `(b, seq, features)` -> `(b, seq, d_model)`.
    pub fn backbone(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.input.forward(x)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        self.norm.forward(&h)
    }

    /// `(b, seq, features)` -> `(b, n, horizon)` sampled per-step standardised log returns.
    pub fn sample(&self, x: &Tensor, n: usize, noise: &mut Noise) -> Result<Tensor> {
        let h = self.backbone(x)?;
        self.head.sample(&h, n, self.horizon, noise)
    }

    /// The head's draw from a backbone output `h`, in Gaussian form where the head has one
    /// (see [`Head::sample_affine`]), else as increments `(b, n, horizon)`.
    pub fn head_sample(&self, h: &Tensor, n: usize, noise: &mut Noise) -> Result<HeadSample> {
        Ok(match self.head.sample_affine(h, n, self.horizon, noise)? {
            Some(a) => HeadSample::Affine(a),
            None => HeadSample::Increments(self.head.sample(h, n, self.horizon, noise)?),
        })
    }
}

/// What [`ZooModel::head_sample`] drew.
pub enum HeadSample {
    Affine(Affine),
    Increments(Tensor),
}
