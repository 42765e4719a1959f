//! Deterministic parameters and noise. candle's CPU RNG cannot be seeded, so parameters are
//! initialised here, each from a ChaCha8 stream keyed by (seed, parameter name): the same spec
//! and seed give bit-identical initial weights whatever order the layers are built in. [`Noise`]
//! draws the reparameterisation noise from a seeded ChaCha8 RNG on the host.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// FNV-1a, stable across runs and platforms.
pub fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// A [`VarMap`] whose new variables are initialised deterministically from a seed.
#[derive(Clone)]
pub struct SeededVarMap {
    pub map: VarMap,
    seed: u64,
}

impl SeededVarMap {
    pub fn new(seed: u64) -> Self {
        SeededVarMap {
            map: VarMap::new(),
            seed,
        }
    }

    /// A var builder over this map (f32).
    pub fn builder(&self, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, device.clone())
    }

    /// All trainable variables, sorted by name (a stable order for the optimiser).
    pub fn vars(&self) -> Vec<Var> {
        let data = self.map.data().lock().expect("var map lock");
        let mut named: Vec<(&String, &Var)> = data.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        named.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// All trainable variables with their names, sorted by name.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = self.map.data().lock().expect("var map lock");
        let mut named: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// Total number of scalar parameters.
    pub fn param_count(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
    }

    fn init_values(&self, shape: &Shape, name: &str, init: Init) -> Vec<f32> {
        let n = shape.elem_count();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ hash_str(name).rotate_left(13));
        let normal = |rng: &mut ChaCha8Rng, mean: f64, sd: f64| {
            let z: f64 = StandardNormal.sample(rng);
            (mean + sd * z) as f32
        };
        match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => (0..n).map(|_| normal(&mut rng, mean, stdev)).collect(),
            Init::Uniform { lo, up } => (0..n).map(|_| rng.random_range(lo..up) as f32).collect(),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let fan = match fan {
                    FanInOut::FanIn => FanInOut::FanIn.for_shape(shape),
                    FanInOut::FanOut => FanInOut::FanOut.for_shape(shape),
                };
                let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
                match dist {
                    NormalOrUniform::Normal => (0..n).map(|_| normal(&mut rng, 0.0, std)).collect(),
                    NormalOrUniform::Uniform => {
                        let b = 3f64.sqrt() * std;
                        (0..n).map(|_| rng.random_range(-b..b) as f32).collect()
                    }
                }
            }
        }
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.map.data().lock().expect("var map lock");
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!(
                    "parameter {name}: shape {:?} does not match the requested {:?}",
                    v.shape(),
                    s
                );
            }
            return Ok(v.as_tensor().clone());
        }
        let values = self.init_values(&s, name, h);
        let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("parameter {name} must be requested with a shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .expect("var map lock")
            .contains_key(name)
    }
}

/// Host-side seeded noise for reparameterised sampling.
pub struct Noise {
    rng: ChaCha8Rng,
    device: Device,
}

impl Noise {
    pub fn new(seed: u64, device: &Device) -> Self {
        Noise {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Standard normal noise of this shape (f32).
    pub fn normal<S: Into<Shape>>(&mut self, shape: S) -> Result<Tensor> {
        let s: Shape = shape.into();
        let v: Vec<f32> = (0..s.elem_count())
            .map(|_| {
                let z: f32 = StandardNormal.sample(&mut self.rng);
                z
            })
            .collect();
        Tensor::from_vec(v, s, &self.device)
    }

    /// Student-t noise with `df` degrees of freedom (f32); `df` must be positive and finite.
    pub fn student_t<S: Into<Shape>>(&mut self, shape: S, df: f64) -> Result<Tensor> {
        let s: Shape = shape.into();
        let t = rand_distr::StudentT::new(df)
            .map_err(|e| candle_core::Error::Msg(format!("student-t with df {df}: {e}")))?;
        let v: Vec<f32> = (0..s.elem_count())
            .map(|_| t.sample(&mut self.rng) as f32)
            .collect();
        Tensor::from_vec(v, s, &self.device)
    }

    /// Uniform noise in `[lo, hi)`.
    pub fn uniform<S: Into<Shape>>(&mut self, shape: S, lo: f32, hi: f32) -> Result<Tensor> {
        let s: Shape = shape.into();
        let v: Vec<f32> = (0..s.elem_count())
            .map(|_| self.rng.random_range(lo..hi))
            .collect();
        Tensor::from_vec(v, s, &self.device)
    }

    /// Standard Gumbel noise (`-ln(-ln u)`).
    pub fn gumbel<S: Into<Shape>>(&mut self, shape: S) -> Result<Tensor> {
        let s: Shape = shape.into();
        let v: Vec<f32> = (0..s.elem_count())
            .map(|_| {
                let u: f64 = self.rng.random_range(1e-12..1.0);
                (-(-u.ln()).ln()) as f32
            })
            .collect();
        Tensor::from_vec(v, s, &self.device)
    }

    /// A permutation of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.rng.random_range(0..=i);
            p.swap(i, j);
        }
        p
    }
}

/// `softplus(x) = ln(1 + e^x)`, computed stably as `relu(x) + ln(1 + e^-|x|)`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let pos = x.relu()?;
    let tail = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    pos + tail
}

/// The seeded RNG the zoo uses for simulation requests.
pub fn seeded_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
