//! The N-BEATS block (fully-connected basis expansion).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::zoo::fused::{linear, Linear};

use super::{Block, BuildCtx};
use crate::zoo::registry::Params;

/// N-BEATS generic block (Oreshkin et al. 2020, "N-BEATS: Neural basis expansion analysis for
/// interpretable time series forecasting"), applied channel-independently along the time axis:
/// a ReLU fully-connected stack reads each channel's window and emits expansion coefficients for
/// a backcast and a forecast (generic, learned bases). Doubly residual in one tensor: the block
/// returns `x - backcast + forecast`, so what the block explains is removed from the stream the
/// next block sees and its forecast contribution is carried to the head.
pub struct NBeatsBlock {
    fc: Vec<Linear>,
    theta_b: Linear,
    theta_f: Linear,
    basis_b: Linear,
    basis_f: Linear,
}

impl NBeatsBlock {
    pub fn new(p: &Params, c: BuildCtx, vb: VarBuilder) -> Result<Self> {
        let h = p.usize("hidden");
        let l = c.seq_len;
        let theta = 8.min(l);
        let fc = (0..p.usize("layers"))
            .map(|i| linear(if i == 0 { l } else { h }, h, vb.pp(format!("fc{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(NBeatsBlock {
            fc,
            theta_b: linear(h, theta, vb.pp("theta_b"))?,
            theta_f: linear(h, theta, vb.pp("theta_f"))?,
            basis_b: crate::zoo::fused::linear_no_bias(theta, l, vb.pp("basis_b"))?,
            basis_f: crate::zoo::fused::linear_no_bias(theta, l, vb.pp("basis_f"))?,
        })
    }
}

impl Block for NBeatsBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let xt = x.transpose(1, 2)?.contiguous()?; // (b, d, l)
        let mut h = xt.clone();
        for f in &self.fc {
            h = f.forward(&h)?.relu()?;
        }
        let back = self.basis_b.forward(&self.theta_b.forward(&h)?)?;
        let fore = self.basis_f.forward(&self.theta_f.forward(&h)?)?;
        ((xt - back)? + fore)?.transpose(1, 2)
    }
}
