//! Optimisers: Adam (candle-nn's `AdamW` with zero weight decay, which is exactly PyTorch's `Adam`), RMSProp
//! (PyTorch's `torch.optim.RMSprop` formulas, plain and centered, plus DeepMind's variant with epsilon inside the
//! square root used by the Nature DQN), and PyTorch's `clip_grad_norm_`.
use candle_core::backprop::GradStore;
use candle_core::{Storage, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
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
        Ok(RmsProp { vars, params })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let p = self.params;
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
/// [`AdamW`] with zero weight decay (and as `torch.optim.Adam`), without the dozen tensor operations (and their
/// allocations) per parameter that a tensor-level Adam costs. DQN uses it on the CPU, where those per-op costs
/// dominate a small MLP's update (see docs/BENCHMARKS.md); on other devices it uses candle-nn's `AdamW`.
///
/// Per element (Kingma and Ba 2015, Algorithm 1): `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
#[derive(Debug)]
pub struct CpuAdam {
    vars: Vec<Var>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    theta: Vec<f32>,
    t: i32,
    /// Learning rate, betas and epsilon (weight decay must be 0).
    pub params: ParamsAdamW,
}

impl CpuAdam {
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
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(AgentError::Diverged(format!("gradient norm is {norm}")));
        }
        // torch/nn/utils/clip_grad.py: clip_coef = max_norm / (total_norm + 1e-6), applied when < 1.
        let coef = (max_norm / (norm + 1e-6)).min(1.0) as f32;
        self.t += 1;
        let p = &self.params;
        let (b1, b2) = (p.beta1 as f32, p.beta2 as f32);
        let scale_m = (1.0 / (1.0 - p.beta1.powi(self.t))) as f32;
        let scale_v = (1.0 / (1.0 - p.beta2.powi(self.t))) as f32;
        let (lr, eps) = (p.lr as f32, p.eps as f32);
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let (m, v) = (&mut self.m[i], &mut self.v[i]);
            let theta = &mut self.theta;
            theta.clear();
            with_cpu_f32(var.as_tensor(), |x| theta.extend_from_slice(x)).map_err(terr)?;
            with_cpu_f32(g, |g| {
                // Equal-length slices so that the loop vectorises.
                let n = theta.len();
                let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
                for j in 0..n {
                    let gj = g[j] * coef;
                    m[j] = m[j] * b1 + gj * (1.0 - b1);
                    v[j] = v[j] * b2 + gj * gj * (1.0 - b2);
                    theta[j] -= lr * (m[j] * scale_m) / ((v[j] * scale_v).sqrt() + eps);
                }
            })
            .map_err(terr)?;
            let t = Tensor::from_slice(theta.as_slice(), var.shape(), var.device()).map_err(terr)?;
            var.set(&t).map_err(terr)?;
        }
        Ok(norm)
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
        Ok(CpuAdam { vars, m, v, theta: Vec::new(), t: 0, params })
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
    /// candle-nn's AdamW with weight decay 0 (= `torch.optim.Adam`).
    Adam(AdamW),
    /// [`CpuAdam`]: the same update fused on the CPU.
    CpuAdam(CpuAdam),
    /// [`RmsProp`].
    RmsProp(RmsProp),
}

impl Optim {
    /// Adam with PyTorch's betas (0.9, 0.999) and the given `lr` and `eps`: [`CpuAdam`] when every variable is
    /// on the CPU, candle-nn's `AdamW` otherwise.
    pub fn adam(vars: Vec<Var>, lr: f64, eps: f64) -> Result<Self> {
        let p = ParamsAdamW { lr, beta1: 0.9, beta2: 0.999, eps, weight_decay: 0.0 };
        if vars.iter().all(|v| v.device().is_cpu() && v.dtype() == candle_core::DType::F32) {
            Ok(Optim::CpuAdam(CpuAdam::new(vars, p).map_err(terr)?))
        } else {
            Ok(Optim::Adam(AdamW::new(vars, p).map_err(terr)?))
        }
    }

    /// candle-nn's `AdamW` (weight decay 0) on any device.
    pub fn candle_adam(vars: Vec<Var>, lr: f64, eps: f64) -> Result<Self> {
        let p = ParamsAdamW { lr, beta1: 0.9, beta2: 0.999, eps, weight_decay: 0.0 };
        Ok(Optim::Adam(AdamW::new(vars, p).map_err(terr)?))
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
}
