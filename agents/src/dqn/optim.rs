//! Optimisers: Adam (candle-nn's `AdamW` update with zero weight decay, which is exactly PyTorch's `Adam`), RMSProp
//! (PyTorch's `torch.optim.RMSprop` formulas, plain and centered, plus DeepMind's variant with epsilon inside the
//! square root used by the Nature DQN), and PyTorch's `clip_grad_norm_`.
//!
//! Every optimiser's state (step count, moments, averages, momentum buffers) can be exported as named tensors with
//! PyTorch's `state_dict` names and imported again ([`Optim::export_state`], [`Optim::import_state`]), so a
//! resumed training run continues with the very same moments.
use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Storage, Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use super::network::terr;
use crate::error::{AgentError, Result};

/// Settings of [`RmsProp`], named as `torch.optim.RMSprop`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamsRmsProp {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average (PyTorch's `alpha`, Nature DQN's "squared gradient
    /// momentum" 0.95).
    pub alpha: f64,
    /// Added to the denominator (Nature DQN's "min squared gradient" 0.01, added inside the square root).
    pub eps: f64,
    /// Centered: divide by the estimated variance `E[g^2] - E[g]^2` instead of `E[g^2]` (Graves 2013).
    pub centered: bool,
    /// Momentum of the update (0: none).
    pub momentum: f64,
    /// `eps` inside the square root, `sqrt(v + eps)`, as DeepMind's DQN (dqn/NeuralQLearner.lua:
    /// `rmsprop` with `g2 - g^2 + 0.01`); PyTorch adds it outside, `sqrt(v) + eps`.
    pub eps_inside_sqrt: bool,
}

impl ParamsRmsProp {
    /// PyTorch's defaults: lr 0.01, alpha 0.99, eps 1e-8, not centered, no momentum.
    pub fn torch_default() -> Self {
        ParamsRmsProp { lr: 0.01, alpha: 0.99, eps: 1e-8, centered: false, momentum: 0.0, eps_inside_sqrt: false }
    }
    /// Mnih et al. 2015 (Nature), Extended Data Table 1: lr 0.00025, squared gradient momentum 0.95, min squared
    /// gradient 0.01, centered, epsilon inside the square root.
    pub fn nature_dqn() -> Self {
        ParamsRmsProp { lr: 0.00025, alpha: 0.95, eps: 0.01, centered: true, momentum: 0.0, eps_inside_sqrt: true }
    }
}

#[derive(Debug)]
struct RmsVar {
    var: Var,
    square_avg: Tensor,
    grad_avg: Option<Tensor>,
    momentum_buf: Option<Tensor>,
}

/// RMSProp as a candle-nn [`Optimizer`] (candle-nn has none).
///
/// Per parameter, with gradient `g` (torch/optim/rmsprop.py):
/// `v = alpha v + (1 - alpha) g^2`; centered: `m = alpha m + (1 - alpha) g`, `v~ = v - m^2`, else `v~ = v`;
/// `d = sqrt(v~) + eps` (or `sqrt(v~ + eps)`); with momentum `b = momentum b + g / d`, `p -= lr b`, else
/// `p -= lr g / d`.
///
/// ```
/// use bellman_agents::dqn::optim::{ParamsRmsProp, RmsProp};
/// use candle_core::{Device, Var};
/// use candle_nn::Optimizer;
/// let p = Var::new(&[1.0f32], &Device::Cpu).unwrap();
/// let mut opt = RmsProp::new(vec![p.clone()], ParamsRmsProp { lr: 0.1, ..ParamsRmsProp::torch_default() }).unwrap();
/// let loss = p.as_tensor().sqr().unwrap().sum_all().unwrap(); // grad 2
/// opt.backward_step(&loss).unwrap();
/// // v = 0.01 * 4 = 0.04, step = 0.1 * 2 / (0.2 + 1e-8)
/// assert!((p.to_vec1::<f32>().unwrap()[0] - 0.0).abs() < 1e-5);
/// ```
#[derive(Debug)]
pub struct RmsProp {
    vars: Vec<RmsVar>,
    params: ParamsRmsProp,
    /// Steps taken (PyTorch keeps it as `state["step"]`; the update does not use it).
    step_t: u64,
}

impl Optimizer for RmsProp {
    type Config = ParamsRmsProp;

    fn new(vars: Vec<Var>, params: ParamsRmsProp) -> candle_core::Result<Self> {
        let vars = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .map(|var| {
                let z = var.zeros_like()?;
                Ok(RmsVar {
                    square_avg: z.clone(),
                    grad_avg: params.centered.then(|| z.clone()),
                    momentum_buf: (params.momentum > 0.0).then(|| z.clone()),
                    var,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(RmsProp { vars, params, step_t: 0 })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let p = self.params;
        self.step_t += 1;
        for rv in &mut self.vars {
            let Some(g) = grads.get(&rv.var) else { continue };
            rv.square_avg = ((&rv.square_avg * p.alpha)? + (g.sqr()? * (1.0 - p.alpha))?)?;
            let mut v = rv.square_avg.clone();
            if let Some(m) = rv.grad_avg.as_mut() {
                *m = ((&*m * p.alpha)? + (g * (1.0 - p.alpha))?)?;
                v = (v - m.sqr()?)?;
            }
            let denom = if p.eps_inside_sqrt { (v + p.eps)?.sqrt()? } else { (v.sqrt()? + p.eps)? };
            let step = (g / denom)?;
            let step = match rv.momentum_buf.as_mut() {
                Some(b) => {
                    *b = ((&*b * p.momentum)? + step)?;
                    b.clone()
                }
                None => step,
            };
            rv.var.set(&(rv.var.as_tensor() - (step * p.lr)?)?)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }
}

/// Adam on tensors, on any device: candle-nn 0.11's `AdamW` update (candle-nn/src/optim.rs, the same tensor
/// operations in the same order, so the results are bit-identical to it) with its state readable and writable,
/// which candle-nn's `AdamW` keeps private.
///
/// ```
/// use bellman_agents::dqn::optim::Adam;
/// use candle_core::{Device, Var};
/// use candle_nn::{Optimizer, ParamsAdamW};
/// let p = Var::new(&[1.0f32], &Device::Cpu).unwrap();
/// let prm = ParamsAdamW { lr: 0.1, weight_decay: 0.0, ..Default::default() };
/// let mut opt = Adam::new(vec![p.clone()], prm).unwrap();
/// opt.backward_step(&p.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
/// // the first Adam step moves by lr * sign(g)
/// assert!((p.to_vec1::<f32>().unwrap()[0] - 0.9).abs() < 1e-6);
/// assert_eq!(opt.step_count(), 1);
/// ```
#[derive(Debug)]
pub struct Adam {
    vars: Vec<AdamVar>,
    step_t: usize,
    params: ParamsAdamW,
}

#[derive(Debug)]
struct AdamVar {
    var: Var,
    m: Tensor,
    v: Tensor,
}

impl Adam {
    /// Steps taken (PyTorch's `state["step"]`), which sets the bias correction.
    pub fn step_count(&self) -> u64 {
        self.step_t as u64
    }
    /// The settings.
    pub fn params(&self) -> &ParamsAdamW {
        &self.params
    }
}

impl Optimizer for Adam {
    type Config = ParamsAdamW;

    fn new(vars: Vec<Var>, params: ParamsAdamW) -> candle_core::Result<Self> {
        let vars = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .map(|var| {
                let z = var.zeros_like()?;
                Ok(AdamVar { m: z.clone(), v: z, var })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Adam { vars, step_t: 0, params })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        // candle-nn 0.11 AdamW::step, expression for expression.
        self.step_t += 1;
        let p = self.params.clone();
        let lr_lambda = p.lr * p.weight_decay;
        let scale_m = 1f64 / (1f64 - p.beta1.powi(self.step_t as i32));
        let scale_v = 1f64 / (1f64 - p.beta2.powi(self.step_t as i32));
        for av in &mut self.vars {
            let Some(g) = grads.get(&av.var) else { continue };
            let next_m = ((&av.m * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            let next_v = ((&av.v * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            let next_theta = (av.var.as_tensor() * (1f64 - lr_lambda))?;
            let adjusted_grad = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
            let next_theta = (next_theta - (adjusted_grad * p.lr)?)?;
            av.m = next_m;
            av.v = next_v;
            av.var.set(&next_theta)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }
}

/// Sum of squares with eight independent f32 lanes (vectorisable), added up in f64.
fn sum_sq(x: &[f32]) -> f64 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k] * c[k];
        }
    }
    acc.iter().map(|a| *a as f64).sum::<f64>() + rest.iter().map(|r| (*r as f64) * (*r as f64)).sum::<f64>()
}

/// Runs `f` on the contiguous `f32` data of a CPU tensor.
fn with_cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (st, layout) = t.storage_and_layout();
    match &*st {
        Storage::Cpu(c) => {
            let s = c.as_slice::<f32>()?;
            match layout.contiguous_offsets() {
                Some((a, b)) => Ok(f(&s[a..b])),
                None => Err(candle_core::Error::Msg("CpuAdam: non-contiguous tensor".into())),
            }
        }
        _ => Err(candle_core::Error::Msg("CpuAdam works on CPU f32 tensors only".into())),
    }
}

/// Adam fused into one pass per parameter on the CPU, with gradient-norm clipping folded in: the same update as
/// [`Adam`] (candle-nn's `AdamW`) with zero weight decay (and as `torch.optim.Adam`), without the dozen tensor
/// operations (and their allocations) per parameter that a tensor-level Adam costs. DQN uses it on the CPU, where
/// those per-op costs dominate a small MLP's update (see docs/BENCHMARKS.md); on other devices it uses [`Adam`].
///
/// Per element (Kingma and Ba 2015, Algorithm 1): `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
#[derive(Debug)]
pub struct CpuAdam {
    vars: Vec<Var>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
    /// Learning rate, betas and epsilon (weight decay must be 0).
    pub params: ParamsAdamW,
}

impl CpuAdam {
    /// Steps taken (PyTorch's `state["step"]`), which sets the bias correction.
    pub fn step_count(&self) -> u64 {
        self.t as u64
    }

    /// One step with the gradients scaled as `clip_grad_norm_(max_norm)` would (use `f64::INFINITY` for no
    /// clipping). Returns the gradient norm before clipping; a non-finite norm is [`AgentError::Diverged`] and
    /// changes nothing.
    pub fn step_clipped(&mut self, grads: &GradStore, max_norm: f64) -> Result<f64> {
        let mut sq = 0.0f64;
        for var in &self.vars {
            if let Some(g) = grads.get(var) {
                sq += with_cpu_f32(g, sum_sq).map_err(terr)?;
            }
        }
        let k = self.begin_step(sq, max_norm)?;
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let (m, v) = (&mut self.m[i], &mut self.v[i]);
            with_cpu_f32(g, |g| adam_in_place(var, &k, g, m, v)).map_err(terr)??;
        }
        Ok(k.norm)
    }

    /// [`CpuAdam::step_clipped`] with the gradients as slices, one per variable in the order the optimiser was
    /// built with (the fused MLP update's `grads`); an empty slice means no gradient.
    pub(crate) fn step_clipped_slices(&mut self, grads: &[Vec<f32>], max_norm: f64) -> Result<f64> {
        if grads.len() != self.vars.len() {
            return Err(AgentError::Tensor(format!("{} gradients for {} variables", grads.len(), self.vars.len())));
        }
        for (g, var) in grads.iter().zip(&self.vars) {
            if !g.is_empty() && g.len() != var.elem_count() {
                return Err(AgentError::Tensor(format!(
                    "a gradient of {} values for a variable of {}",
                    g.len(),
                    var.elem_count()
                )));
            }
        }
        let sq = grads.iter().map(|g| sum_sq(g)).sum();
        let k = self.begin_step(sq, max_norm)?;
        for (i, var) in self.vars.iter().enumerate() {
            if grads[i].is_empty() {
                continue;
            }
            adam_in_place(var, &k, &grads[i], &mut self.m[i], &mut self.v[i])?;
        }
        Ok(k.norm)
    }

    /// The norm check, clipping coefficient and bias corrections of the next step (which this counts).
    fn begin_step(&mut self, sq: f64, max_norm: f64) -> Result<AdamStep> {
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(AgentError::Diverged(format!("gradient norm is {norm}")));
        }
        // torch/nn/utils/clip_grad.py: clip_coef = max_norm / (total_norm + 1e-6), applied when < 1.
        let coef = (max_norm / (norm + 1e-6)).min(1.0) as f32;
        self.t += 1;
        let p = &self.params;
        Ok(AdamStep {
            norm,
            coef,
            b1: p.beta1 as f32,
            b2: p.beta2 as f32,
            scale_m: (1.0 / (1.0 - p.beta1.powi(self.t))) as f32,
            scale_v: (1.0 / (1.0 - p.beta2.powi(self.t))) as f32,
            lr: p.lr as f32,
            eps: p.eps as f32,
        })
    }
}

/// Adam's step of one variable, written into its storage in place (candle's in-place op: no copy of the
/// parameters out and back, no tensor allocated).
fn adam_in_place(var: &Var, k: &AdamStep, g: &[f32], m: &mut [f32], v: &mut [f32]) -> Result<()> {
    struct Op<'a> {
        k: &'a AdamStep,
        g: &'a [f32],
        mv: std::cell::RefCell<(&'a mut [f32], &'a mut [f32])>,
    }
    impl candle_core::InplaceOp1 for Op<'_> {
        fn name(&self) -> &'static str {
            "bellman-adam-step"
        }
        fn cpu_fwd(&self, s: &mut candle_core::CpuStorage, l: &candle_core::Layout) -> candle_core::Result<()> {
            let candle_core::CpuStorage::F32(data) = s else {
                candle_core::bail!("CpuAdam works on f32 variables only")
            };
            let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("CpuAdam: non-contiguous variable") };
            let mut mv = self.mv.borrow_mut();
            let (m, v) = &mut *mv;
            if self.g.len() != b - a || m.len() != b - a || v.len() != b - a {
                candle_core::bail!("CpuAdam: a gradient of {} values for a variable of {}", self.g.len(), b - a);
            }
            self.k.apply(&mut data[a..b], self.g, m, v);
            Ok(())
        }
    }
    let op = Op { k, g, mv: std::cell::RefCell::new((m, v)) };
    var.as_tensor().inplace_op1(&op).map_err(terr)
}

/// The constants of one Adam step.
struct AdamStep {
    norm: f64,
    coef: f32,
    b1: f32,
    b2: f32,
    scale_m: f32,
    scale_v: f32,
    lr: f32,
    eps: f32,
}

impl AdamStep {
    /// One variable's step: `theta`, its gradient `g` (scaled by the clipping coefficient) and moments `m`, `v`.
    fn apply(&self, theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let AdamStep { coef, b1, b2, scale_m, scale_v, lr, eps, .. } = *self;
        // Equal-length slices so that the loop vectorises.
        let n = theta.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        for j in 0..n {
            let gj = g[j] * coef;
            m[j] = m[j] * b1 + gj * (1.0 - b1);
            v[j] = v[j] * b2 + gj * gj * (1.0 - b2);
            theta[j] -= lr * (m[j] * scale_m) / ((v[j] * scale_v).sqrt() + eps);
        }
    }
}

impl Optimizer for CpuAdam {
    type Config = ParamsAdamW;

    fn new(vars: Vec<Var>, params: ParamsAdamW) -> candle_core::Result<Self> {
        if params.weight_decay != 0.0 {
            return Err(candle_core::Error::Msg("CpuAdam has no weight decay: use candle-nn's AdamW".into()));
        }
        let vars: Vec<Var> = vars.into_iter().filter(|v| v.dtype().is_float()).collect();
        for v in &vars {
            if !v.device().is_cpu() || v.dtype() != candle_core::DType::F32 {
                return Err(candle_core::Error::Msg("CpuAdam works on CPU f32 variables only".into()));
            }
        }
        let m = vars.iter().map(|v| vec![0.0; v.elem_count()]).collect::<Vec<_>>();
        let v = m.clone();
        Ok(CpuAdam { vars, m, v, t: 0, params })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.step_clipped(grads, f64::INFINITY).map(|_| ()).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }
}

/// Which optimiser DQN uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (Kingma and Ba 2015), SB3's and CleanRL's choice.
    #[default]
    Adam,
    /// RMSProp; `rmsprop_centered = true` with the Nature constants reproduces the Nature DQN.
    Rmsprop,
}

/// An optimiser of either kind behind one type.
#[derive(Debug)]
pub enum Optim {
    /// [`Adam`] on tensors (candle-nn's `AdamW` update with weight decay 0 = `torch.optim.Adam`).
    Adam(Adam),
    /// [`CpuAdam`]: the same update fused on the CPU.
    CpuAdam(CpuAdam),
    /// [`RmsProp`].
    RmsProp(RmsProp),
}

impl Optim {
    /// Adam with PyTorch's betas (0.9, 0.999) and the given `lr` and `eps`: [`CpuAdam`] when every variable is
    /// on the CPU, [`Adam`] (candle-nn's `AdamW` update on tensors) otherwise.
    pub fn adam(vars: Vec<Var>, lr: f64, eps: f64) -> Result<Self> {
        let p = ParamsAdamW { lr, beta1: 0.9, beta2: 0.999, eps, weight_decay: 0.0 };
        if vars.iter().all(|v| v.device().is_cpu() && v.dtype() == candle_core::DType::F32) {
            Ok(Optim::CpuAdam(CpuAdam::new(vars, p).map_err(terr)?))
        } else {
            Ok(Optim::Adam(Adam::new(vars, p).map_err(terr)?))
        }
    }

    /// [`Adam`] (candle-nn's `AdamW` update, weight decay 0) on any device.
    pub fn candle_adam(vars: Vec<Var>, lr: f64, eps: f64) -> Result<Self> {
        let p = ParamsAdamW { lr, beta1: 0.9, beta2: 0.999, eps, weight_decay: 0.0 };
        Ok(Optim::Adam(Adam::new(vars, p).map_err(terr)?))
    }

    /// Clips the gradients of `vars` to `max_norm` (PyTorch's `clip_grad_norm_`; `f64::INFINITY`: no clipping)
    /// and steps. Returns the norm before clipping; a non-finite norm is [`AgentError::Diverged`] and changes
    /// nothing.
    pub fn clip_and_step(&mut self, grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
        match self {
            Optim::CpuAdam(o) => o.step_clipped(grads, max_norm),
            _ => {
                let n = clip_grad_norm(grads, vars, max_norm)?;
                self.step(grads)?;
                Ok(n)
            }
        }
    }

    /// RMSProp with the given settings.
    pub fn rmsprop(vars: Vec<Var>, p: ParamsRmsProp) -> Result<Self> {
        Ok(Optim::RmsProp(RmsProp::new(vars, p).map_err(terr)?))
    }

    /// `"adam"` or `"rmsprop"`: which state [`Optim::export_state`] writes (both Adam variants write the same).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Optim::Adam(_) | Optim::CpuAdam(_) => "adam",
            Optim::RmsProp(_) => "rmsprop",
        }
    }

    /// The optimiser's state as named CPU tensors, named `<prefix><param>.<buffer>` with PyTorch's `state_dict`
    /// buffer names: Adam `exp_avg` and `exp_avg_sq`; RMSProp `square_avg`, `grad_avg` (centered) and
    /// `momentum_buffer` (momentum > 0). `names` are the parameter names in the order of the variables the
    /// optimiser was built with (`QNetwork::param_names`). The step count is [`OptimState::step`].
    pub fn export_state(&self, names: &[&str], prefix: &str) -> Result<OptimState> {
        let n = match self {
            Optim::Adam(o) => o.vars.len(),
            Optim::CpuAdam(o) => o.vars.len(),
            Optim::RmsProp(o) => o.vars.len(),
        };
        if names.len() != n {
            return Err(AgentError::Checkpoint(format!(
                "{} parameter names for an optimiser of {n} variables",
                names.len()
            )));
        }
        let cpu = |t: &Tensor| t.to_device(&Device::Cpu).map_err(terr);
        let key = |i: usize, b: &str| format!("{prefix}{}.{b}", names[i]);
        let mut tensors = Vec::new();
        let step = match self {
            Optim::Adam(o) => {
                for (i, av) in o.vars.iter().enumerate() {
                    tensors.push((key(i, "exp_avg"), cpu(&av.m)?));
                    tensors.push((key(i, "exp_avg_sq"), cpu(&av.v)?));
                }
                o.step_count()
            }
            Optim::CpuAdam(o) => {
                for (i, var) in o.vars.iter().enumerate() {
                    let shape = var.shape();
                    tensors.push((key(i, "exp_avg"), Tensor::from_slice(&o.m[i], shape, &Device::Cpu).map_err(terr)?));
                    tensors
                        .push((key(i, "exp_avg_sq"), Tensor::from_slice(&o.v[i], shape, &Device::Cpu).map_err(terr)?));
                }
                o.step_count()
            }
            Optim::RmsProp(o) => {
                for (i, rv) in o.vars.iter().enumerate() {
                    tensors.push((key(i, "square_avg"), cpu(&rv.square_avg)?));
                    if let Some(m) = &rv.grad_avg {
                        tensors.push((key(i, "grad_avg"), cpu(m)?));
                    }
                    if let Some(b) = &rv.momentum_buf {
                        tensors.push((key(i, "momentum_buffer"), cpu(b)?));
                    }
                }
                o.step_t
            }
        };
        Ok(OptimState { kind: self.kind_name().to_string(), step, tensors })
    }

    /// Loads a state written by [`Optim::export_state`] with the same `names` and `prefix` from `tensors` (any
    /// device; moved to each variable's). A missing tensor, a wrong shape or another optimiser kind is an error
    /// naming it, and leaves the optimiser unchanged.
    pub fn import_state(
        &mut self,
        kind: &str,
        step: u64,
        tensors: &HashMap<String, Tensor>,
        names: &[&str],
        prefix: &str,
    ) -> Result<()> {
        if kind != self.kind_name() {
            return Err(AgentError::Checkpoint(format!(
                "the checkpoint holds {kind} optimiser state, this run uses {}",
                self.kind_name()
            )));
        }
        let vars: Vec<Var> = match self {
            Optim::Adam(o) => o.vars.iter().map(|v| v.var.clone()).collect(),
            Optim::CpuAdam(o) => o.vars.clone(),
            Optim::RmsProp(o) => o.vars.iter().map(|v| v.var.clone()).collect(),
        };
        if names.len() != vars.len() {
            return Err(AgentError::Checkpoint(format!(
                "{} parameter names for an optimiser of {} variables",
                names.len(),
                vars.len()
            )));
        }
        // Fetch and check everything first: an error changes nothing.
        let get = |i: usize, b: &str| -> Result<Tensor> {
            let k = format!("{prefix}{}.{b}", names[i]);
            let t = tensors.get(&k).ok_or_else(|| AgentError::Checkpoint(format!("optimiser tensor '{k}' missing")))?;
            if t.dims() != vars[i].dims() {
                return Err(AgentError::Checkpoint(format!(
                    "optimiser tensor '{k}' has shape {:?}, the parameter has {:?}",
                    t.dims(),
                    vars[i].dims()
                )));
            }
            t.to_dtype(vars[i].dtype()).and_then(|t| t.to_device(vars[i].device())).map_err(terr)
        };
        let steps = usize::try_from(step)
            .ok()
            .filter(|&s| i32::try_from(s).is_ok())
            .ok_or_else(|| AgentError::Checkpoint(format!("optimiser step {step} is out of range")))?;
        match self {
            Optim::Adam(o) => {
                let st = (0..vars.len())
                    .map(|i| Ok((get(i, "exp_avg")?, get(i, "exp_avg_sq")?)))
                    .collect::<Result<Vec<_>>>()?;
                for (av, (m, v)) in o.vars.iter_mut().zip(st) {
                    av.m = m;
                    av.v = v;
                }
                o.step_t = steps;
            }
            Optim::CpuAdam(o) => {
                let flat = |t: Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(terr);
                let st = (0..vars.len())
                    .map(|i| Ok((flat(get(i, "exp_avg")?)?, flat(get(i, "exp_avg_sq")?)?)))
                    .collect::<Result<Vec<_>>>()?;
                for (i, (m, v)) in st.into_iter().enumerate() {
                    o.m[i] = m;
                    o.v[i] = v;
                }
                o.t = steps as i32;
            }
            Optim::RmsProp(o) => {
                let st = (0..vars.len())
                    .map(|i| {
                        let rv = &o.vars[i];
                        Ok((
                            get(i, "square_avg")?,
                            rv.grad_avg.as_ref().map(|_| get(i, "grad_avg")).transpose()?,
                            rv.momentum_buf.as_ref().map(|_| get(i, "momentum_buffer")).transpose()?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                for (rv, (sq, ga, mb)) in o.vars.iter_mut().zip(st) {
                    rv.square_avg = sq;
                    rv.grad_avg = ga;
                    rv.momentum_buf = mb;
                }
                o.step_t = step;
            }
        }
        Ok(())
    }

    /// One step from the gradients.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        match self {
            Optim::Adam(o) => o.step(grads),
            Optim::CpuAdam(o) => o.step(grads),
            Optim::RmsProp(o) => o.step(grads),
        }
        .map_err(terr)
    }
}

/// An optimiser's exported state ([`Optim::export_state`]).
#[derive(Debug, Clone)]
pub struct OptimState {
    /// `"adam"` or `"rmsprop"`.
    pub kind: String,
    /// Steps taken.
    pub step: u64,
    /// Named CPU tensors (moments, averages, buffers).
    pub tensors: Vec<(String, Tensor)>,
}

/// PyTorch's `clip_grad_norm_`: when the global L2 norm of the gradients of `vars` exceeds `max_norm`, scales
/// them all by `max_norm / (norm + 1e-6)`. Returns the norm before clipping. A non-finite norm is an error
/// ([`AgentError::Diverged`]) and leaves the gradients alone.
///
/// ```
/// use bellman_agents::dqn::optim::clip_grad_norm;
/// use candle_core::{Device, Var};
/// let p = Var::new(&[3.0f32, 4.0], &Device::Cpu).unwrap();
/// let mut g = p.as_tensor().sqr().unwrap().sum_all().unwrap().affine(0.5, 0.0).unwrap().backward().unwrap(); // grad = p
/// let n = clip_grad_norm(&mut g, &[p.clone()], 1.0).unwrap();
/// assert!((n - 5.0).abs() < 1e-6);
/// let c = g.get(&p).unwrap().to_vec1::<f32>().unwrap();
/// assert!((c[0] - 0.6).abs() < 1e-5 && (c[1] - 0.8).abs() < 1e-5);
/// ```
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let sq: Vec<Tensor> = vars
        .iter()
        .filter_map(|v| grads.get(v))
        .map(|g| g.sqr().and_then(|s| s.sum_all()))
        .collect::<candle_core::Result<_>>()
        .map_err(terr)?;
    if sq.is_empty() {
        return Ok(0.0);
    }
    let total = Tensor::stack(&sq, 0).and_then(|t| t.sum_all()).and_then(|t| t.to_scalar::<f32>()).map_err(terr)?;
    let norm = (total as f64).sqrt();
    if !norm.is_finite() {
        return Err(AgentError::Diverged(format!("gradient norm is {norm}")));
    }
    // torch/nn/utils/clip_grad.py: clip_coef = max_norm / (total_norm + 1e-6), applied when < 1.
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v) {
                let s = (g * coef).map_err(terr)?;
                grads.insert(v.as_tensor(), s);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn quad_grads(p: &Var, c: &[f32]) -> GradStore {
        // loss = sum(c * p), gradient = c.
        let c = Tensor::from_slice(c, p.dims(), &Device::Cpu).unwrap();
        (p.as_tensor() * c).unwrap().sum_all().unwrap().backward().unwrap()
    }

    fn close(a: &[f32], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn adam_two_steps_match_hand_computed() {
        // torch.optim.Adam(lr=0.1): step 1 moves every element by -lr*sign(g) (m_hat/sqrt(v_hat) = g/|g|).
        let p = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = Optim::adam(vec![p.clone()], 0.1, 1e-8).unwrap();
        opt.step(&quad_grads(&p, &[0.5, -3.0])).unwrap();
        close(&p.to_vec1::<f32>().unwrap(), &[0.9, -1.9]);
        // step 2 with g = (1.0, -3.0): m = 0.9 m + 0.1 g; v = 0.999 v + 0.001 g^2; bias-corrected.
        opt.step(&quad_grads(&p, &[1.0, -3.0])).unwrap();
        let step = |g1: f64, g2: f64| {
            let m = 0.9 * (0.1 * g1) + 0.1 * g2;
            let v = 0.999 * (0.001 * g1 * g1) + 0.001 * g2 * g2;
            let mh = m / (1.0 - 0.9f64.powi(2));
            let vh = v / (1.0 - 0.999f64.powi(2));
            0.1 * mh / (vh.sqrt() + 1e-8)
        };
        close(&p.to_vec1::<f32>().unwrap(), &[0.9 - step(0.5, 1.0), -1.9 - step(-3.0, -3.0)]);
    }

    #[test]
    fn cpu_adam_matches_candle_adamw_with_clipping() {
        let init = [0.5f32, -1.0, 2.0, 0.25];
        let a = Var::new(&init, &Device::Cpu).unwrap();
        let b = Var::new(&init, &Device::Cpu).unwrap();
        let mut fused = Optim::adam(vec![a.clone()], 0.01, 1e-8).unwrap();
        assert!(matches!(fused, Optim::CpuAdam(_)));
        let mut reference = Optim::candle_adam(vec![b.clone()], 0.01, 1e-8).unwrap();
        for k in 0..5 {
            let c = [3.0 - k as f32, -4.0, 0.5 * k as f32, 12.0];
            let mut ga = quad_grads(&a, &c);
            let mut gb = quad_grads(&b, &c);
            let na = fused.clip_and_step(&mut ga, std::slice::from_ref(&a), 10.0).unwrap();
            let nb = reference.clip_and_step(&mut gb, std::slice::from_ref(&b), 10.0).unwrap();
            assert!((na - nb).abs() < 1e-5, "{na} vs {nb}");
            let (va, vb) = (a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
            for (x, y) in va.iter().zip(&vb) {
                assert!((x - y).abs() < 1e-6, "step {k}: {va:?} vs {vb:?}");
            }
        }
        let mut g = quad_grads(&a, &[f32::INFINITY, 0.0, 0.0, 0.0]);
        let before = a.to_vec1::<f32>().unwrap();
        assert!(matches!(fused.clip_and_step(&mut g, std::slice::from_ref(&a), 10.0), Err(AgentError::Diverged(_))));
        assert_eq!(a.to_vec1::<f32>().unwrap(), before);
    }

    #[test]
    fn rmsprop_plain_centered_momentum_match_formulas() {
        let g1 = [2.0f32, -1.0];
        let g2 = [1.0f32, 0.5];
        for (centered, momentum, inside) in [(false, 0.0, false), (true, 0.0, false), (true, 0.9, true)] {
            let p = Var::new(&[0.0f32, 0.0], &Device::Cpu).unwrap();
            let prm = ParamsRmsProp { lr: 0.01, alpha: 0.95, eps: 0.01, centered, momentum, eps_inside_sqrt: inside };
            let mut opt = Optim::rmsprop(vec![p.clone()], prm).unwrap();
            opt.step(&quad_grads(&p, &g1)).unwrap();
            opt.step(&quad_grads(&p, &g2)).unwrap();
            let mut expect = [0.0f64; 2];
            for i in 0..2 {
                let (mut v, mut m, mut b, mut x) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
                for g in [g1[i] as f64, g2[i] as f64] {
                    v = 0.95 * v + 0.05 * g * g;
                    m = 0.95 * m + 0.05 * g;
                    let vt = if centered { v - m * m } else { v };
                    let d = if inside { (vt + 0.01).sqrt() } else { vt.sqrt() + 0.01 };
                    let s = g / d;
                    b = momentum * b + s;
                    x -= 0.01 * if momentum > 0.0 { b } else { s };
                }
                expect[i] = x;
            }
            close(&p.to_vec1::<f32>().unwrap(), &expect);
        }
        // First plain step by hand: v = 0.05 * 4 = 0.2, step = 0.01 * 2 / (sqrt(0.2) + 0.01) = 0.0437432.
        let p = Var::new(&[0.0f32], &Device::Cpu).unwrap();
        let prm = ParamsRmsProp { lr: 0.01, alpha: 0.95, eps: 0.01, ..ParamsRmsProp::torch_default() };
        let mut opt = Optim::rmsprop(vec![p.clone()], prm).unwrap();
        opt.step(&quad_grads(&p, &[2.0])).unwrap();
        close(&p.to_vec1::<f32>().unwrap(), &[-0.043_743_2]);
    }

    #[test]
    fn clipping_leaves_small_gradients_and_rejects_nan() {
        let p = Var::new(&[0.3f32, 0.4], &Device::Cpu).unwrap();
        let mut g = quad_grads(&p, &[0.3, 0.4]);
        let n = clip_grad_norm(&mut g, std::slice::from_ref(&p), 10.0).unwrap();
        assert!((n - 0.5).abs() < 1e-6);
        close(&g.get(&p).unwrap().to_vec1::<f32>().unwrap(), &[0.3, 0.4]);
        let mut g = quad_grads(&p, &[f32::NAN, 0.0]);
        assert!(matches!(clip_grad_norm(&mut g, &[p], 10.0), Err(AgentError::Diverged(_))));
    }

    #[test]
    fn tensor_adam_is_bit_identical_to_candle_adamw() {
        let init = [0.5f32, -1.0, 2.0, 0.25];
        let a = Var::new(&init, &Device::Cpu).unwrap();
        let b = Var::new(&init, &Device::Cpu).unwrap();
        let p = ParamsAdamW { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
        let mut ours = Adam::new(vec![a.clone()], p.clone()).unwrap();
        let mut theirs = candle_nn::AdamW::new(vec![b.clone()], p).unwrap();
        for k in 0..6 {
            let c = [3.0 - k as f32, -4.0, 0.5 * k as f32, 12.0];
            ours.step(&quad_grads(&a, &c)).unwrap();
            theirs.step(&quad_grads(&b, &c)).unwrap();
            assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap(), "step {k}");
        }
    }

    /// Steps `opt` on `p` with gradients `c(k)` for `k` in `ks` and returns the parameter values.
    fn run(opt: &mut Optim, p: &Var, ks: std::ops::Range<usize>) -> Vec<f32> {
        for k in ks {
            let c = [1.5 - k as f32, 0.25 * k as f32, -2.0, 0.75];
            opt.step(&quad_grads(p, &c)).unwrap();
        }
        p.to_vec1::<f32>().unwrap()
    }

    #[test]
    fn exported_state_resumes_every_optimiser_bit_exactly() {
        let init = [0.5f32, -1.0, 2.0, 0.25];
        let rms = |centered, momentum| ParamsRmsProp {
            lr: 0.01,
            alpha: 0.95,
            eps: 0.01,
            centered,
            momentum,
            eps_inside_sqrt: centered,
        };
        type Make = Box<dyn Fn(Var) -> Optim>;
        let makes: Vec<(&str, Make)> = vec![
            ("cpu adam", Box::new(|v| Optim::adam(vec![v], 0.01, 1e-8).unwrap())),
            ("tensor adam", Box::new(|v| Optim::candle_adam(vec![v], 0.01, 1e-8).unwrap())),
            ("rmsprop", Box::new(move |v| Optim::rmsprop(vec![v], rms(false, 0.0)).unwrap())),
            ("centered rmsprop + momentum", Box::new(move |v| Optim::rmsprop(vec![v], rms(true, 0.9)).unwrap())),
        ];
        for (what, make) in &makes {
            // uninterrupted: 7 steps
            let p = Var::new(&init, &Device::Cpu).unwrap();
            let full = run(&mut make(p.clone()), &p, 0..7);
            // 4 steps, export, import into a fresh optimiser (a new process), 3 more steps
            let q = Var::new(&init, &Device::Cpu).unwrap();
            let mut first = make(q.clone());
            run(&mut first, &q, 0..4);
            let st = first.export_state(&["w"], "optimizer.").unwrap();
            assert_eq!(st.step, 4, "{what}");
            let map: HashMap<String, Tensor> = st.tensors.iter().cloned().collect();
            let mid = q.to_vec1::<f32>().unwrap();
            let r = Var::new(mid.as_slice(), &Device::Cpu).unwrap();
            let mut second = make(r.clone());
            second.import_state(&st.kind, st.step, &map, &["w"], "optimizer.").unwrap();
            assert_eq!(run(&mut second, &r, 4..7), full, "{what}");
            // without the state the continuation differs (the test can fail)
            let s = Var::new(mid.as_slice(), &Device::Cpu).unwrap();
            assert_ne!(run(&mut make(s.clone()), &s, 4..7), full, "{what}");
        }
        // the tensor names are PyTorch's
        let p = Var::new(&init, &Device::Cpu).unwrap();
        let mut o = Optim::rmsprop(vec![p.clone()], rms(true, 0.9)).unwrap();
        run(&mut o, &p, 0..1);
        let names: Vec<String> =
            o.export_state(&["q.0.weight"], "").unwrap().tensors.into_iter().map(|t| t.0).collect();
        assert_eq!(names, ["q.0.weight.square_avg", "q.0.weight.grad_avg", "q.0.weight.momentum_buffer"]);
    }

    #[test]
    fn importing_bad_state_is_an_error_and_changes_nothing() {
        let p = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mut o = Optim::adam(vec![p.clone()], 0.1, 1e-8).unwrap();
        let st = o.export_state(&["w"], "").unwrap();
        let mut map: HashMap<String, Tensor> = st.tensors.into_iter().collect();
        let e = o.import_state("rmsprop", 3, &map, &["w"], "").unwrap_err().to_string();
        assert!(e.contains("rmsprop") && e.contains("adam"), "{e}");
        map.insert("w.exp_avg_sq".into(), Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap());
        let e = o.import_state("adam", 3, &map, &["w"], "").unwrap_err().to_string();
        assert!(e.contains("w.exp_avg_sq") && e.contains("[3]"), "{e}");
        map.remove("w.exp_avg");
        let e = o.import_state("adam", 3, &map, &["w"], "").unwrap_err().to_string();
        assert!(e.contains("'w.exp_avg' missing"), "{e}");
        let e = o.export_state(&["a", "b"], "").unwrap_err().to_string();
        assert!(e.contains("2 parameter names"), "{e}");
        let Optim::CpuAdam(c) = &o else { panic!("CPU variables give CpuAdam") };
        assert_eq!(c.step_count(), 0);
    }
}
