//! Q-networks on candle: an MLP, the Nature-DQN CNN and a dueling head for either, plus a plain-Rust copy of
//! the MLP for fast batch-1 action selection on the CPU.
//!
//! # Parameter names (PyTorch mapping)
//!
//! Parameters are named as the `state_dict` of this PyTorch module (`scripts/torch_qnet.py` builds it), so a
//! checkpoint loads with `safetensors.torch.load_file` + `load_state_dict`:
//!
//! ```text
//! class QNet(nn.Module):
//!     features = nn.Sequential(...)   # MLP: Linear, act, Linear, act ...       -> features.0, features.2, ...
//!                                     # CNN: Conv(c,32,8,s4), ReLU, Conv(32,64,4,s2), ReLU, Conv(64,64,3,s1),
//!                                     #      ReLU, Flatten, Linear(3136,512), ReLU -> features.0,2,4,7
//!     q = nn.Linear(h, n_actions)                            # plain head
//!     value = nn.Linear(h, 1); advantage = nn.Linear(h, n)   # dueling head: Q = V + A - mean(A)
//! ```
//!
//! Weights are `[out, in]` (linear) and `[out, in, kh, kw]` (conv), as PyTorch stores them, in `f32`.
//!
//! # Initialisation
//!
//! [`Init::Torch`] (default) reproduces PyTorch's `nn.Linear` / `nn.Conv2d` default, `kaiming_uniform_(a=sqrt(5))`:
//! weights and biases `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` (torch/nn/modules/linear.py `reset_parameters`). This is
//! what SB3's and CleanRL's DQN use, so it is the reference users compare against. [`Init::He`] is He-uniform
//! `U(±sqrt(6/fan_in))` for layers followed by ReLU (He et al. 2015) and Glorot-uniform `U(±sqrt(6/(fan_in+fan_out)))`
//! for the others (output heads, tanh layers; Glorot and Bengio 2010), biases zero. candle's CPU generator cannot
//! be seeded, so every value is drawn from the caller's seeded `rand` generator.
use candle_core::{D, DType, Device, Module, Tensor, Var};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};

mod conv;
pub(crate) mod mlp_td;
use conv::{ConvGeom, ConvInput, ConvOp, LinearOp};

pub(crate) fn terr(e: candle_core::Error) -> AgentError {
    AgentError::Tensor(e.to_string())
}

/// Activation of the hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `max(x, 0)` (SB3's and CleanRL's default).
    #[default]
    Relu,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Tanh => x.tanh(),
        }
    }
    #[inline]
    fn apply_f32(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// Weight initialisation (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// PyTorch's default for `nn.Linear`/`nn.Conv2d`: `U(±1/sqrt(fan_in))` for weights and biases.
    #[default]
    Torch,
    /// He-uniform before ReLU, Glorot-uniform otherwise, zero biases.
    He,
}

/// The network body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// Fully connected layers on the flat observation.
    #[default]
    Mlp,
    /// Mnih et al. 2015 (Nature) CNN on `[C, H, W]` frames in 0..=255, scaled by 1/255 on the device.
    NatureCnn,
}

/// Everything that determines a network's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct NetSpec {
    /// Body type.
    pub arch: Arch,
    /// Observation shape (`[4]` for CartPole, `[4, 84, 84]` for stacked Atari frames).
    pub obs_shape: Vec<usize>,
    /// Sizes of the fully connected hidden layers (after the convolutions for the CNN).
    pub hidden: Vec<usize>,
    /// Activation of the fully connected hidden layers (the CNN's convolutions always use ReLU).
    pub activation: Activation,
    /// Dueling head (Wang et al. 2016): `Q = V + A - mean_a A`.
    pub dueling: bool,
    /// Number of discrete actions.
    pub n_actions: usize,
    /// Weight initialisation.
    pub init: Init,
}

impl NetSpec {
    /// Flat size of one observation.
    pub fn obs_dim(&self) -> usize {
        self.obs_shape.iter().product()
    }

    fn validate(&self) -> Result<()> {
        if self.n_actions == 0 {
            return Err(AgentError::Unsupported("the action space has 0 actions; DQN needs at least 1".into()));
        }
        if let Some(h) = self.hidden.iter().find(|h| **h == 0) {
            return Err(AgentError::Config(format!("hidden layer size {h}: every size must be >= 1")));
        }
        match self.arch {
            Arch::Mlp if self.obs_dim() == 0 => {
                Err(AgentError::Unsupported("observation has 0 elements; the MLP needs at least 1".into()))
            }
            Arch::NatureCnn => {
                if self.obs_shape.len() != 3 || self.obs_shape[1] < 36 || self.obs_shape[2] < 36 {
                    return Err(AgentError::Unsupported(format!(
                        "the Nature CNN needs [channels, height, width] observations with height and width >= 36 \
                         (e.g. [4, 84, 84]), got {:?}",
                        self.obs_shape
                    )));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone)]
enum LayerKind {
    Conv { geom: ConvGeom },
    Linear,
}

#[derive(Debug, Clone)]
struct Layer {
    kind: LayerKind,
    w: Var,
    b: Var,
}

/// A Q-network: observations `[B, ...]` to Q-values `[B, n_actions]`.
#[derive(Debug)]
pub struct QNetwork {
    spec: NetSpec,
    device: Device,
    /// Body layers in order (convs then linears).
    body: Vec<Layer>,
    /// `q`, or `value` and `advantage` for the dueling head.
    heads: Vec<Layer>,
    /// All parameters with their PyTorch names, in a fixed order.
    named: Vec<(String, Var)>,
    /// Run the layers through the fused CPU kernels of [`conv`] (on the CPU) rather than candle's `conv2d`,
    /// `matmul` and `broadcast_add`.
    cpu_kernels: bool,
}

fn uniform_var<R: Rng + ?Sized>(rng: &mut R, shape: &[usize], bound: f32, device: &Device) -> Result<Var> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> =
        if bound == 0.0 { vec![0.0; n] } else { (0..n).map(|_| rng.random_range(-bound..=bound)).collect() };
    Var::from_vec(data, shape, device).map_err(terr)
}

impl QNetwork {
    /// Builds the network with weights drawn from `rng` (same seed, same weights) on `device`.
    ///
    /// ```
    /// use bellman_agents::dqn::network::{Activation, Arch, Init, NetSpec, QNetwork};
    /// use candle_core::{Device, Tensor};
    /// use rand::SeedableRng;
    /// let spec = NetSpec { arch: Arch::Mlp, obs_shape: vec![4], hidden: vec![64, 64], activation: Activation::Relu,
    ///     dueling: false, n_actions: 2, init: Init::Torch };
    /// let net = QNetwork::new(&spec, &mut rand_pcg::Pcg64::seed_from_u64(0), &Device::Cpu).unwrap();
    /// let q = net.forward(&Tensor::zeros((3, 4), candle_core::DType::F32, &Device::Cpu).unwrap()).unwrap();
    /// assert_eq!(q.dims(), &[3, 2]);
    /// assert_eq!(net.param_names()[0], "features.0.weight");
    /// ```
    pub fn new<R: Rng + ?Sized>(spec: &NetSpec, rng: &mut R, device: &Device) -> Result<Self> {
        spec.validate()?;
        let mut body = Vec::new();
        let mut named = Vec::new();
        let mut idx = 0usize;
        let relu_like = spec.activation == Activation::Relu;
        let make = |rng: &mut R,
                    name: String,
                    wshape: Vec<usize>,
                    fan_in: usize,
                    fan_out: usize,
                    kind: LayerKind,
                    he: bool,
                    named: &mut Vec<(String, Var)>|
         -> Result<Layer> {
            let (wb, bb) = match spec.init {
                // torch/nn/modules/linear.py reset_parameters: kaiming_uniform_(a=sqrt(5)) => 1/sqrt(fan_in).
                Init::Torch => {
                    let b = 1.0 / (fan_in as f32).sqrt();
                    (b, b)
                }
                // He et al. 2015 (uniform form sqrt(6/fan_in)); Glorot & Bengio 2010 sqrt(6/(fan_in+fan_out)).
                Init::He if he => ((6.0 / fan_in as f32).sqrt(), 0.0),
                Init::He => ((6.0 / (fan_in + fan_out) as f32).sqrt(), 0.0),
            };
            let w = uniform_var(rng, &wshape, wb, device)?;
            let b = uniform_var(rng, &[wshape[0]], bb, device)?;
            named.push((format!("{name}.weight"), w.clone()));
            named.push((format!("{name}.bias"), b.clone()));
            Ok(Layer { kind, w, b })
        };
        let mut width = spec.obs_dim();
        if spec.arch == Arch::NatureCnn {
            // Mnih et al. 2015, Methods "Model architecture": 32 8x8 s4, 64 4x4 s2, 64 3x3 s1, then 512 units.
            let (mut c, mut h, mut w) = (spec.obs_shape[0], spec.obs_shape[1], spec.obs_shape[2]);
            for (out, k, s) in [(32usize, 8usize, 4usize), (64, 4, 2), (64, 3, 1)] {
                let fan_in = c * k * k;
                let geom = ConvGeom { c, h, w, k, s, out };
                let l = make(
                    rng,
                    format!("features.{idx}"),
                    vec![out, c, k, k],
                    fan_in,
                    out * k * k,
                    LayerKind::Conv { geom },
                    true,
                    &mut named,
                )?;
                body.push(l);
                idx += 2;
                c = out;
                h = (h - k) / s + 1;
                w = (w - k) / s + 1;
            }
            idx += 1; // nn.Flatten
            width = c * h * w;
        }
        for &hsz in &spec.hidden {
            let l = make(
                rng,
                format!("features.{idx}"),
                vec![hsz, width],
                width,
                hsz,
                LayerKind::Linear,
                relu_like || spec.arch == Arch::NatureCnn,
                &mut named,
            )?;
            body.push(l);
            idx += 2;
            width = hsz;
        }
        let mut heads = Vec::new();
        let head_list: Vec<(&str, usize)> =
            if spec.dueling { vec![("value", 1), ("advantage", spec.n_actions)] } else { vec![("q", spec.n_actions)] };
        for (name, out) in head_list {
            let l = make(rng, name.to_string(), vec![out, width], width, out, LayerKind::Linear, false, &mut named)?;
            heads.push(l);
        }
        // On the CPU both networks run on the fused kernels of `conv` (candle's CPU conv2d backward is far slower,
        // GPU.md; and its bias gradient, a sum over the batch dimension, is a strided scalar reduction that took a
        // fifth of a CartPole update, measured with perf); elsewhere on candle's conv2d and matmul.
        let cpu_kernels = device.is_cpu();
        Ok(QNetwork { spec: spec.clone(), device: device.clone(), body, heads, named, cpu_kernels })
    }

    /// Whether the network runs on the fused CPU kernels (the default on the CPU) or on candle's `conv2d`, matmul
    /// and broadcast add (the path used on other devices). Both compute the same function and gradients (tested),
    /// to float rounding; switching is for comparisons such as the `dqn` benchmark. Turning the kernels on for a
    /// network off the CPU is an error.
    ///
    /// ```
    /// use bellman_agents::dqn::network::{Activation, Arch, Init, NetSpec, QNetwork};
    /// use candle_core::Device;
    /// use rand::SeedableRng;
    /// let spec = NetSpec { arch: Arch::NatureCnn, obs_shape: vec![4, 84, 84], hidden: vec![512],
    ///     activation: Activation::Relu, dueling: false, n_actions: 6, init: Init::Torch };
    /// let mut net = QNetwork::new(&spec, &mut rand_pcg::Pcg64::seed_from_u64(0), &Device::Cpu).unwrap();
    /// assert!(net.cpu_kernels());
    /// net.set_cpu_kernels(false).unwrap();
    /// assert!(!net.cpu_kernels());
    /// ```
    pub fn set_cpu_kernels(&mut self, on: bool) -> Result<()> {
        if on && !self.device.is_cpu() {
            return Err(AgentError::Unsupported(format!(
                "the fused CPU kernels run on the CPU only (this network: {:?} on {:?})",
                self.spec.arch, self.device
            )));
        }
        self.cpu_kernels = on;
        Ok(())
    }

    /// Whether the fused CPU kernels are in use (see [`QNetwork::set_cpu_kernels`]).
    pub fn cpu_kernels(&self) -> bool {
        self.cpu_kernels
    }

    /// The network's shape.
    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// The device its parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Q-values `[B, n_actions]` of observations `[B, obs...]` (`f32`, or `u8` for the CNN).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.cpu_kernels {
            return self.forward_cpu_cnn(x);
        }
        let mut h = if x.dtype() == DType::F32 { x.clone() } else { x.to_dtype(DType::F32)? };
        if self.spec.arch == Arch::NatureCnn {
            // Frames are 0..=255 bytes; the Nature DQN (and SB3's NatureCNN) divide by 255.
            h = h.affine(1.0 / 255.0, 0.0)?;
        }
        let mut flattened = self.spec.arch == Arch::Mlp;
        for l in &self.body {
            h = match &l.kind {
                LayerKind::Conv { geom } => {
                    let y = h.conv2d(l.w.as_tensor(), 0, geom.s, 1, 1)?;
                    let y = y.broadcast_add(&l.b.as_tensor().reshape((1, (), 1, 1))?)?;
                    y.relu()?
                }
                LayerKind::Linear => {
                    if !flattened {
                        // PyTorch's nn.Flatten of NCHW: (c, h, w) order, which the first linear layer expects.
                        h = h.flatten_from(1)?;
                        flattened = true;
                    }
                    let y =
                        candle_nn::Linear::new(l.w.as_tensor().clone(), Some(l.b.as_tensor().clone())).forward(&h)?;
                    if self.spec.arch == Arch::NatureCnn { y.relu()? } else { self.spec.activation.apply(&y)? }
                }
            };
        }
        if !flattened {
            h = h.flatten_from(1)?;
        }
        let lin = |l: &Layer, h: &Tensor| {
            candle_nn::Linear::new(l.w.as_tensor().clone(), Some(l.b.as_tensor().clone())).forward(h)
        };
        self.head(&h, lin)
    }

    /// The network on the CPU kernels of [`conv`]: each layer one custom op (forward and backward).
    fn forward_cpu_cnn(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = match x.dtype() {
            DType::U8 | DType::F32 => x.contiguous()?,
            _ => x.to_dtype(DType::F32)?,
        };
        // MLP hidden layers: the activation fused when it is ReLU, applied after the layer otherwise. (The CNN's
        // linear layers are always ReLU.)
        let act = if self.spec.arch == Arch::Mlp { self.spec.activation } else { Activation::Relu };
        let fused = act == Activation::Relu;
        let n_conv = self.body.iter().filter(|l| matches!(l.kind, LayerKind::Conv { .. })).count();
        let mut i = 0;
        for l in &self.body {
            h = match &l.kind {
                LayerKind::Conv { geom } => {
                    let input = if i == 0 { ConvInput::Frames } else { ConvInput::Nhwc };
                    i += 1;
                    // The last convolution writes NCHW, the order the first linear layer's weights expect.
                    let op = ConvOp { geom: *geom, input, nchw_out: i == n_conv };
                    h.apply_op3(l.w.as_tensor(), l.b.as_tensor(), op)?
                }
                LayerKind::Linear => {
                    let y = h.apply_op3(l.w.as_tensor(), l.b.as_tensor(), LinearOp { relu: fused })?;
                    if fused { y } else { act.apply(&y)? }
                }
            };
        }
        let lin = |l: &Layer, h: &Tensor| h.apply_op3(l.w.as_tensor(), l.b.as_tensor(), LinearOp { relu: false });
        self.head(&h, lin)
    }

    /// The output head on the body's features `h`: `q`, or the dueling combination.
    fn head(
        &self,
        h: &Tensor,
        lin: impl Fn(&Layer, &Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        if self.spec.dueling {
            let v = lin(&self.heads[0], h)?;
            let a = lin(&self.heads[1], h)?;
            let mean = a.mean_keepdim(D::Minus1)?;
            a.broadcast_sub(&mean)?.broadcast_add(&v)
        } else {
            lin(&self.heads[0], h)
        }
    }

    /// Every parameter, for the optimiser.
    pub fn vars(&self) -> Vec<Var> {
        self.named.iter().map(|(_, v)| v.clone()).collect()
    }

    /// Parameter names in their fixed order (PyTorch `state_dict` keys).
    pub fn param_names(&self) -> Vec<&str> {
        self.named.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Named parameters.
    pub fn named_params(&self) -> &[(String, Var)] {
        &self.named
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.named.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Hard update: `self <- other` (the target-network sync). Shapes must match.
    pub fn copy_from(&self, other: &QNetwork) -> Result<()> {
        self.check_same(other)?;
        for ((_, a), (_, b)) in self.named.iter().zip(&other.named) {
            a.set(&b.as_tensor().copy().map_err(terr)?).map_err(terr)?;
        }
        Ok(())
    }

    /// Polyak update: `self <- tau * other + (1 - tau) * self` (SB3's `polyak_update`).
    pub fn polyak_from(&self, other: &QNetwork, tau: f64) -> Result<()> {
        self.check_same(other)?;
        for ((_, a), (_, b)) in self.named.iter().zip(&other.named) {
            let t =
                ((a.as_tensor() * (1.0 - tau)).map_err(terr)? + (b.as_tensor() * tau).map_err(terr)?).map_err(terr)?;
            a.set(&t).map_err(terr)?;
        }
        Ok(())
    }

    fn check_same(&self, other: &QNetwork) -> Result<()> {
        if self.spec != other.spec {
            return Err(AgentError::Config(format!("networks differ: {:?} vs {:?}", self.spec, other.spec)));
        }
        Ok(())
    }

    /// The parameters as a safetensors file (PyTorch names, `f32`, CPU layout).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let cpu: Vec<(String, Tensor)> = self
            .named
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().to_device(&Device::Cpu).map_err(terr)?)))
            .collect::<Result<_>>()?;
        safetensors::serialize(cpu.iter().map(|(n, t)| (n.as_str(), t)), None)
            .map_err(|e| AgentError::Checkpoint(e.to_string()))
    }

    /// Loads parameters written by [`QNetwork::to_safetensors`] (or by PyTorch with the same names). A missing
    /// name or a wrong shape is an error and leaves the network unchanged.
    pub fn load_safetensors(&self, bytes: &[u8]) -> Result<()> {
        let map = candle_core::safetensors::load_buffer(bytes, &self.device)
            .map_err(|e| AgentError::Checkpoint(format!("cannot read safetensors: {e}")))?;
        let mut vals = Vec::with_capacity(self.named.len());
        for (n, v) in &self.named {
            let t = map.get(n).ok_or_else(|| AgentError::Checkpoint(format!("tensor '{n}' missing")))?;
            if t.dims() != v.dims() {
                return Err(AgentError::Checkpoint(format!(
                    "tensor '{n}' has shape {:?}, the network expects {:?}",
                    t.dims(),
                    v.dims()
                )));
            }
            vals.push(t.to_dtype(DType::F32).map_err(terr)?);
        }
        for ((_, v), t) in self.named.iter().zip(vals) {
            v.set(&t).map_err(terr)?;
        }
        Ok(())
    }
}

/// Runs `f` on the `f32` values of a CPU tensor (made contiguous first only when it is not).
fn with_contiguous_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = if t.is_contiguous() { t.clone() } else { t.contiguous().map_err(terr)? };
    let (st, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(c) = &*st else {
        return Err(AgentError::Tensor("a CPU tensor was expected".into()));
    };
    let data = c.as_slice::<f32>().map_err(terr)?;
    let (a, b) = layout.contiguous_offsets().ok_or_else(|| AgentError::Tensor("not contiguous".into()))?;
    Ok(f(&data[a..b]))
}

#[derive(Debug, Clone)]
struct CpuLinear {
    /// Transposed weight `[in][out]`, so the forward is a sequence of vectorisable axpys.
    wt: Vec<f32>,
    b: Vec<f32>,
    n_in: usize,
    n_out: usize,
}

impl CpuLinear {
    #[inline]
    fn forward(&self, x: &[f32], y: &mut [f32]) {
        y[..self.n_out].copy_from_slice(&self.b);
        let y = &mut y[..self.n_out];
        for (xi, row) in x[..self.n_in].iter().zip(self.wt.chunks_exact(self.n_out)) {
            for (yj, wj) in y.iter_mut().zip(row) {
                *yj += xi * wj;
            }
        }
    }
    fn load(&mut self, w: &Tensor, b: &Tensor) -> Result<()> {
        let (n_in, n_out) = (self.n_in, self.n_out);
        if w.elem_count() != n_in * n_out || b.elem_count() != n_out {
            return Err(AgentError::Tensor(format!(
                "layer of {n_in} -> {n_out}: weight {:?} and bias {:?} do not fit",
                w.dims(),
                b.dims()
            )));
        }
        // CPU tensors are read in place (the Ape-X learner publishes after every update: no candle transpose
        // copy, no allocation); others are brought to the host first.
        let (w_host, b_host);
        let (w, b) = if w.device().is_cpu() && b.device().is_cpu() {
            (w, b)
        } else {
            w_host = w.to_device(&Device::Cpu).map_err(terr)?;
            b_host = b.to_device(&Device::Cpu).map_err(terr)?;
            (&w_host, &b_host)
        };
        let wt = &mut self.wt;
        with_contiguous_f32(w, |w| {
            // w is [out][in]; wt is [in][out].
            for (o, row) in w.chunks_exact(n_in).take(n_out).enumerate() {
                for (i, &v) in row.iter().enumerate() {
                    wt[i * n_out + o] = v;
                }
            }
        })?;
        let bias = &mut self.b;
        with_contiguous_f32(b, |b| bias.copy_from_slice(&b[..n_out]))
    }
}

/// A plain-Rust copy of an MLP [`QNetwork`] for batch-1 action selection on the CPU: no allocation per call, no
/// tensor dispatch (candle's per-op overhead dominates at batch 1; see docs/BENCHMARKS.md). Refresh it with
/// [`CpuMlp::sync_from`] after the network changes.
#[derive(Debug, Clone)]
pub struct CpuMlp {
    body: Vec<CpuLinear>,
    heads: Vec<CpuLinear>,
    activation: Activation,
    dueling: bool,
    buf_a: Vec<f32>,
    buf_b: Vec<f32>,
    q: Vec<f32>,
    obs_dim: usize,
}

impl CpuMlp {
    /// A copy of `net` (which must be an MLP).
    pub fn from_network(net: &QNetwork) -> Result<Self> {
        if net.spec.arch != Arch::Mlp {
            return Err(AgentError::Unsupported("CpuMlp copies MLP networks only".into()));
        }
        let shape = |l: &Layer| {
            let d = l.w.dims();
            CpuLinear { wt: vec![0.0; d[0] * d[1]], b: vec![0.0; d[0]], n_in: d[1], n_out: d[0] }
        };
        let body: Vec<CpuLinear> = net.body.iter().map(shape).collect();
        let heads: Vec<CpuLinear> = net.heads.iter().map(shape).collect();
        let widest = body.iter().chain(&heads).map(|l| l.n_out.max(l.n_in)).max().unwrap_or(1);
        let mut m = CpuMlp {
            body,
            heads,
            activation: net.spec.activation,
            dueling: net.spec.dueling,
            buf_a: vec![0.0; widest],
            buf_b: vec![0.0; widest],
            q: vec![0.0; net.spec.n_actions],
            obs_dim: net.spec.obs_dim(),
        };
        m.sync_from(net)?;
        Ok(m)
    }

    /// Copies the current weights of `net` (same shape as at construction).
    pub fn sync_from(&mut self, net: &QNetwork) -> Result<()> {
        for (c, l) in self.body.iter_mut().chain(self.heads.iter_mut()).zip(net.body.iter().chain(&net.heads)) {
            c.load(l.w.as_tensor(), l.b.as_tensor())?;
        }
        Ok(())
    }

    /// Q-values of one observation (`obs.len()` must be the observation size); the slice lives until the next
    /// call.
    pub fn q_values(&mut self, obs: &[f32]) -> &[f32] {
        let n = self.obs_dim.min(obs.len());
        self.buf_a[..n].copy_from_slice(&obs[..n]);
        for l in &self.body {
            l.forward(&self.buf_a, &mut self.buf_b);
            for v in &mut self.buf_b[..l.n_out] {
                *v = self.activation.apply_f32(*v);
            }
            std::mem::swap(&mut self.buf_a, &mut self.buf_b);
        }
        if self.dueling {
            let mut v = [0.0f32; 1];
            self.heads[0].forward(&self.buf_a, &mut v);
            self.heads[1].forward(&self.buf_a, &mut self.q);
            let mean = self.q.iter().sum::<f32>() / self.q.len() as f32;
            for q in &mut self.q {
                *q += v[0] - mean;
            }
        } else {
            self.heads[0].forward(&self.buf_a, &mut self.q);
        }
        &self.q
    }

    /// The greedy action (the first of equal maxima, as `torch.argmax`).
    pub fn act(&mut self, obs: &[f32]) -> usize {
        argmax(self.q_values(obs))
    }
}

/// Index of the largest value (the first of equal maxima; NaN never wins).
pub fn argmax(q: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in q.iter().enumerate() {
        if v > q[best] || q[best].is_nan() {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn spec(dueling: bool) -> NetSpec {
        NetSpec {
            arch: Arch::Mlp,
            obs_shape: vec![4],
            hidden: vec![8, 8],
            activation: Activation::Relu,
            dueling,
            n_actions: 3,
            init: Init::Torch,
        }
    }

    #[test]
    fn same_seed_same_weights_and_torch_bounds() {
        let a = QNetwork::new(&spec(false), &mut rand_pcg::Pcg64::seed_from_u64(1), &Device::Cpu).unwrap();
        let b = QNetwork::new(&spec(false), &mut rand_pcg::Pcg64::seed_from_u64(1), &Device::Cpu).unwrap();
        assert_eq!(a.to_safetensors().unwrap(), b.to_safetensors().unwrap());
        assert_eq!(
            a.param_names(),
            ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias", "q.weight", "q.bias"]
        );
        // fan_in 4 -> bound 0.5; fan_in 8 -> 0.3536 (PyTorch's nn.Linear default).
        let w0 = a.named[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(w0.iter().all(|v| v.abs() <= 0.5) && w0.iter().any(|v| v.abs() > 0.4), "{w0:?}");
        let wq = a.named[4].1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(wq.iter().all(|v| v.abs() <= 1.0 / 8f32.sqrt()));
    }

    #[test]
    fn he_init_zero_bias_and_bounds() {
        let mut s = spec(false);
        s.init = Init::He;
        let a = QNetwork::new(&s, &mut rand_pcg::Pcg64::seed_from_u64(1), &Device::Cpu).unwrap();
        let b0 = a.named[1].1.to_vec1::<f32>().unwrap();
        assert!(b0.iter().all(|v| *v == 0.0));
        let w0 = a.named[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let he = (6.0f32 / 4.0).sqrt();
        assert!(w0.iter().all(|v| v.abs() <= he) && w0.iter().any(|v| v.abs() > 0.5));
        let wq = a.named[4].1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(wq.iter().all(|v| v.abs() <= (6.0f32 / 11.0).sqrt()));
    }

    #[test]
    fn cpu_copy_matches_candle_forward() {
        for dueling in [false, true] {
            let net = QNetwork::new(&spec(dueling), &mut rand_pcg::Pcg64::seed_from_u64(2), &Device::Cpu).unwrap();
            let mut cpu = CpuMlp::from_network(&net).unwrap();
            let obs = [0.3f32, -1.2, 0.05, 2.0];
            let q = net.forward(&Tensor::from_slice(&obs, (1, 4), &Device::Cpu).unwrap()).unwrap();
            let q = q.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let c = cpu.q_values(&obs).to_vec();
            for (a, b) in q.iter().zip(&c) {
                assert!((a - b).abs() < 1e-5, "{q:?} vs {c:?}");
            }
            if dueling {
                // Mean-centred advantages: mean Q equals V.
                let v = net.heads[0].w.as_tensor().clone();
                assert_eq!(v.dims(), &[1, 8]);
            }
        }
    }

    #[test]
    fn safetensors_round_trip_and_mismatch_errors() {
        let a = QNetwork::new(&spec(true), &mut rand_pcg::Pcg64::seed_from_u64(3), &Device::Cpu).unwrap();
        let b = QNetwork::new(&spec(true), &mut rand_pcg::Pcg64::seed_from_u64(4), &Device::Cpu).unwrap();
        let bytes = a.to_safetensors().unwrap();
        b.load_safetensors(&bytes).unwrap();
        assert_eq!(b.to_safetensors().unwrap(), bytes);
        let c = QNetwork::new(&spec(false), &mut rand_pcg::Pcg64::seed_from_u64(4), &Device::Cpu).unwrap();
        let e = c.load_safetensors(&bytes).unwrap_err().to_string();
        assert!(e.contains("'q.weight' missing"), "{e}");
        assert!(c.load_safetensors(b"garbage").is_err());
    }

    #[test]
    fn target_sync_hard_and_polyak() {
        let a = QNetwork::new(&spec(false), &mut rand_pcg::Pcg64::seed_from_u64(5), &Device::Cpu).unwrap();
        let b = QNetwork::new(&spec(false), &mut rand_pcg::Pcg64::seed_from_u64(6), &Device::Cpu).unwrap();
        let wa = a.named[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let wb = b.named[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        b.polyak_from(&a, 0.25).unwrap();
        let wp = b.named[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for i in 0..wa.len() {
            assert!((wp[i] - (0.25 * wa[i] + 0.75 * wb[i])).abs() < 1e-6);
        }
        b.copy_from(&a).unwrap();
        assert_eq!(a.to_safetensors().unwrap(), b.to_safetensors().unwrap());
        // The copy is independent: changing a afterwards leaves b alone.
        a.named[0].1.set(&a.named[0].1.as_tensor().affine(2.0, 1.0).unwrap()).unwrap();
        assert_ne!(a.to_safetensors().unwrap(), b.to_safetensors().unwrap());
    }

    #[test]
    fn nature_cnn_shapes() {
        let s = NetSpec {
            arch: Arch::NatureCnn,
            obs_shape: vec![4, 84, 84],
            hidden: vec![512],
            activation: Activation::Relu,
            dueling: false,
            n_actions: 6,
            init: Init::Torch,
        };
        let net = QNetwork::new(&s, &mut rand_pcg::Pcg64::seed_from_u64(0), &Device::Cpu).unwrap();
        assert_eq!(net.named[6].0, "features.7.weight");
        assert_eq!(net.named[6].1.dims(), &[512, 3136]);
        let x = Tensor::zeros((2, 4, 84, 84), DType::U8, &Device::Cpu).unwrap();
        assert_eq!(net.forward(&x).unwrap().dims(), &[2, 6]);
        // 8224 + 32832 + 36928 + 1606144 + 3078, as torch's sum(p.numel()) for the same module.
        assert_eq!(net.num_params(), 1_687_206);
    }

    /// The CPU kernels (`conv`) equal candle's `conv2d` + linear path (NCHW semantics, PyTorch's): Q-values and
    /// every parameter gradient, for `u8` and `f32` frames, batch 1 and more, the Nature shapes, dueling heads and
    /// two hidden layers.
    #[test]
    fn cpu_kernels_match_candle_conv2d_network() {
        // Square frames: candle's own conv2d backward mishandles non-square inputs (conv.rs tests those against a
        // direct convolution).
        let cases: [(usize, usize, Vec<usize>, bool, usize, bool); 4] = [
            (2, 44, vec![8], false, 2, false),
            (2, 44, vec![8, 5], true, 3, true),
            (4, 84, vec![512], false, 1, false),
            (4, 84, vec![16], true, 2, true),
        ];
        for (case, (c, hw, hidden, dueling, batch, f32_frames)) in cases.into_iter().enumerate() {
            let s = NetSpec {
                arch: Arch::NatureCnn,
                obs_shape: vec![c, hw, hw],
                hidden,
                activation: Activation::Relu,
                dueling,
                n_actions: 3,
                init: Init::Torch,
            };
            let net = QNetwork::new(&s, &mut rand_pcg::Pcg64::seed_from_u64(9), &Device::Cpu).unwrap();
            let mut direct = QNetwork::new(&s, &mut rand_pcg::Pcg64::seed_from_u64(9), &Device::Cpu).unwrap();
            assert!(net.cpu_kernels);
            direct.set_cpu_kernels(false).unwrap();
            let n = batch * c * hw * hw;
            let data: Vec<u8> = (0..n).map(|i| ((i * 37 + i / 7 + case) % 256) as u8).collect();
            let mut x = Tensor::from_vec(data, (batch, c, hw, hw), &Device::Cpu).unwrap();
            if f32_frames {
                x = x.to_dtype(DType::F32).unwrap();
            }
            assert_same_q_and_gradients(&net, &direct, &x, batch, 1e-4, case);
        }
    }

    /// `net` and `direct` (same weights) give the same Q-values (relative 1e-5) and the same gradient of every
    /// parameter (relative `grad_tol`) for a loss with distinct weights per output, so that every gradient entry
    /// is exercised; no gradient may be all zero.
    fn assert_same_q_and_gradients(
        net: &QNetwork,
        direct: &QNetwork,
        x: &Tensor,
        batch: usize,
        grad_tol: f32,
        case: usize,
    ) {
        let (qa, qb) = (net.forward(x).unwrap(), direct.forward(x).unwrap());
        assert_eq!(qa.dims(), &[batch, 3]);
        let scale = qb.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let diff = (&qa - &qb).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= 1e-5 * scale.max(1.0), "case {case}: Q max diff {diff}");
        let r: Vec<f32> = (0..batch * 3).map(|i| 1.0 - 0.37 * i as f32).collect();
        let r = Tensor::from_vec(r, (batch, 3), &Device::Cpu).unwrap();
        let ga = (&qa * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&qb * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for ((name, a), (_, b)) in net.named.iter().zip(&direct.named) {
            let (a, b) = (ga.get(a).unwrap(), gb.get(b).unwrap());
            assert_eq!(a.dims(), b.dims());
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let m = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(m > 0.0, "case {case}: {name} has a zero gradient");
            assert!(d <= grad_tol * m.max(1e-3), "case {case}: {name}: max diff {d} (max {m})");
        }
    }

    /// MLPs on the CPU kernels equal candle's matmul + broadcast-add path: Q-values and every parameter
    /// gradient, for ReLU (fused) and tanh (applied after the kernel), one and two hidden layers, plain and dueling
    /// heads, batch 1 and more.
    #[test]
    fn cpu_kernels_match_candle_mlp() {
        // (obs shape, hidden, activation, dueling, batch)
        type Case = (Vec<usize>, Vec<usize>, Activation, bool, usize);
        let cases: [Case; 4] = [
            (vec![4], vec![64, 64], Activation::Relu, false, 64),
            (vec![6], vec![32], Activation::Tanh, true, 5),
            (vec![15], vec![16, 8], Activation::Relu, true, 1),
            (vec![8], vec![256, 256], Activation::Tanh, false, 7),
        ];
        for (case, (obs_shape, hidden, activation, dueling, batch)) in cases.into_iter().enumerate() {
            let n_in: usize = obs_shape.iter().product();
            let s = NetSpec {
                arch: Arch::Mlp,
                obs_shape: obs_shape.clone(),
                hidden,
                activation,
                dueling,
                n_actions: 3,
                init: Init::Torch,
            };
            let net = QNetwork::new(&s, &mut rand_pcg::Pcg64::seed_from_u64(5), &Device::Cpu).unwrap();
            let mut direct = QNetwork::new(&s, &mut rand_pcg::Pcg64::seed_from_u64(5), &Device::Cpu).unwrap();
            assert!(net.cpu_kernels());
            direct.set_cpu_kernels(false).unwrap();
            let data: Vec<f32> = (0..batch * n_in).map(|i| ((i * 29 + case) % 17) as f32 / 8.0 - 1.0).collect();
            let mut dims = vec![batch];
            dims.extend_from_slice(&obs_shape);
            let x = Tensor::from_vec(data, dims.as_slice(), &Device::Cpu).unwrap();
            assert_same_q_and_gradients(&net, &direct, &x, batch, 1e-5, case);
        }
    }

    #[test]
    fn argmax_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.0]), 1);
    }
}
