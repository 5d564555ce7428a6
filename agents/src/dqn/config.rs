//! [`DqnConfig`]: every DQN hyperparameter, with Stable-Baselines3's defaults.
use serde::{Deserialize, Serialize};

use super::loss::LossKind;
use super::network::{Activation, Arch, Init, NetSpec};
use super::optim::{Optim, OptimizerKind, ParamsRmsProp};
use crate::error::{AgentError, Result};

/// Configuration of DQN: the `[agent]` table of an experiment (with `kind = "dqn"` read by the runner).
///
/// Defaults are Stable-Baselines3 2.x's `DQN` defaults (stable_baselines3/dqn/dqn.py) unless noted. Step counts
/// are env steps summed over all sub-envs, as SB3's `num_timesteps`, except `train_freq` (vector steps, as SB3).
///
/// ```
/// use bellman_agents::dqn::DqnConfig;
/// let cfg: DqnConfig = toml::from_str("learning_rate = 2.3e-3\nhidden = [256, 256]").unwrap();
/// assert_eq!(cfg.batch_size, 32);
/// assert!(cfg.validate().is_ok());
/// let bad: DqnConfig = toml::from_str("gamma = 1.5").unwrap();
/// assert!(bad.validate().unwrap_err().to_string().contains("gamma"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DqnConfig {
    /// Network body: `"mlp"` (default) or `"nature_cnn"`.
    pub network: Arch,
    /// Fully connected hidden layer sizes (default `[64, 64]`, SB3's `net_arch`; use `[512]` for the CNN).
    pub hidden: Vec<usize>,
    /// Hidden activation: `"relu"` (default) or `"tanh"`.
    pub activation: Activation,
    /// Weight init: `"torch"` (default, PyTorch's `nn.Linear` default) or `"he"`.
    pub init: Init,
    /// Dueling head (default false).
    pub dueling: bool,
    /// Double DQN targets (default false).
    pub double_dqn: bool,
    /// `"adam"` (default) or `"rmsprop"`.
    pub optimizer: OptimizerKind,
    /// Learning rate (default 1e-4); must be > 0.
    pub learning_rate: f64,
    /// Adam's epsilon (default 1e-8, PyTorch's).
    pub adam_eps: f64,
    /// RMSProp's alpha (default 0.95, Nature DQN).
    pub rmsprop_alpha: f64,
    /// RMSProp's epsilon (default 0.01, Nature DQN).
    pub rmsprop_eps: f64,
    /// Centered RMSProp (default true, Nature DQN).
    pub rmsprop_centered: bool,
    /// RMSProp momentum (default 0).
    pub rmsprop_momentum: f64,
    /// RMSProp epsilon inside the square root, as DeepMind's DQN (default true).
    pub rmsprop_eps_inside_sqrt: bool,
    /// Replay capacity in transitions (default 1,000,000).
    pub buffer_size: usize,
    /// Minibatch size (default 32); must be <= `buffer_size`.
    pub batch_size: usize,
    /// Env steps of uniform random actions before learning starts (default 100).
    pub learning_starts: u64,
    /// Discount factor in (0, 1] (default 0.99).
    pub gamma: f64,
    /// Polyak coefficient of the target update in (0, 1]; 1 = hard copy (default 1).
    pub tau: f64,
    /// Env steps between target updates (default 10,000).
    pub target_update_interval: u64,
    /// Vector-env steps between training phases (default 4).
    pub train_freq: u64,
    /// Gradient steps per training phase (default 1).
    pub gradient_steps: usize,
    /// Initial exploration epsilon (default 1.0).
    pub exploration_initial_eps: f64,
    /// Final exploration epsilon (default 0.05).
    pub exploration_final_eps: f64,
    /// Fraction of `total_steps` over which epsilon decays linearly (default 0.1).
    pub exploration_fraction: f64,
    /// Epsilon of the evaluation policy (default 0: greedy, as SB3's `deterministic=True`). Nature DQN evaluates
    /// with 0.05 (Mnih et al. 2015, Methods), which also ends Breakout games whose greedy policy never presses
    /// FIRE after a lost life. The random draws come from a generator seeded by the evaluation seed.
    pub eval_epsilon: f64,
    /// The training budget `exploration_fraction` refers to (SB3's `total_timesteps`). The runner sets it from
    /// the experiment's `total_steps` when absent; without it the schedule uses 1,000,000 steps.
    pub total_steps: Option<u64>,
    /// `"huber"` (default, SB3) or `"mse"`.
    pub loss: LossKind,
    /// Gradient-norm clipping threshold (default 10, SB3); 0 disables clipping.
    pub max_grad_norm: f64,
    /// n of n-step returns (default 1).
    pub n_step: usize,
    /// Prioritised replay (Schaul et al. 2016; default false).
    pub prioritized: bool,
    /// PER priority exponent alpha (default 0.6, Schaul et al. 2016 proportional variant).
    pub per_alpha: f64,
    /// PER importance-sampling exponent at the start, annealed linearly to 1 over the schedule (default 0.4).
    pub per_beta: f64,
    /// PER constant added to |TD error| (default 1e-6).
    pub per_eps: f64,
    /// Parallel envs per learner, stepped by a `SyncVectorEnv` (default 1).
    pub n_envs: usize,
    /// Env steps between two [`crate::trainer::TrainMetrics`] reports (default 1000).
    pub metrics_every: u64,
    /// Actor threads, Ape-X style ([`crate::actors::ApexDqnTrainer`], `--actors N`); 0 (default): the
    /// single-process trainer.
    pub actors: usize,
    /// Settings of the actors (the `[agent.apex]` table), used when `actors > 0`.
    pub apex: crate::actors::ApexConfig,
}

impl Default for DqnConfig {
    fn default() -> Self {
        let nature = ParamsRmsProp::nature_dqn();
        DqnConfig {
            network: Arch::Mlp,
            hidden: vec![64, 64],
            activation: Activation::Relu,
            init: Init::Torch,
            dueling: false,
            double_dqn: false,
            optimizer: OptimizerKind::Adam,
            learning_rate: 1e-4,
            adam_eps: 1e-8,
            rmsprop_alpha: nature.alpha,
            rmsprop_eps: nature.eps,
            rmsprop_centered: nature.centered,
            rmsprop_momentum: nature.momentum,
            rmsprop_eps_inside_sqrt: nature.eps_inside_sqrt,
            buffer_size: 1_000_000,
            batch_size: 32,
            learning_starts: 100,
            gamma: 0.99,
            tau: 1.0,
            target_update_interval: 10_000,
            train_freq: 4,
            gradient_steps: 1,
            exploration_initial_eps: 1.0,
            exploration_final_eps: 0.05,
            exploration_fraction: 0.1,
            eval_epsilon: 0.0,
            total_steps: None,
            loss: LossKind::Huber,
            max_grad_norm: 10.0,
            n_step: 1,
            prioritized: false,
            per_alpha: 0.6,
            per_beta: 0.4,
            per_eps: 1e-6,
            n_envs: 1,
            metrics_every: 1000,
            actors: 0,
            apex: crate::actors::ApexConfig::default(),
        }
    }
}

fn check(ok: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if ok { Ok(()) } else { Err(AgentError::Config(msg())) }
}

fn unit(name: &str, v: f64) -> Result<()> {
    check((0.0..=1.0).contains(&v), || format!("{name} = {v}: must be in [0, 1]"))
}

impl DqnConfig {
    /// Checks every value; the error names the field, the value and the accepted range.
    pub fn validate(&self) -> Result<()> {
        let g = self.gamma;
        check(g > 0.0 && g <= 1.0, || format!("gamma = {g}: must be in (0, 1]"))?;
        let lr = self.learning_rate;
        check(lr > 0.0 && lr.is_finite(), || format!("learning_rate = {lr}: must be a finite number > 0"))?;
        check(self.adam_eps > 0.0, || format!("adam_eps = {}: must be > 0", self.adam_eps))?;
        check(self.rmsprop_eps > 0.0, || format!("rmsprop_eps = {}: must be > 0", self.rmsprop_eps))?;
        check(self.rmsprop_alpha > 0.0 && self.rmsprop_alpha < 1.0, || {
            format!("rmsprop_alpha = {}: must be in (0, 1)", self.rmsprop_alpha)
        })?;
        check((0.0..1.0).contains(&self.rmsprop_momentum), || {
            format!("rmsprop_momentum = {}: must be in [0, 1)", self.rmsprop_momentum)
        })?;
        check(self.buffer_size >= 1, || "buffer_size = 0: must be >= 1".into())?;
        check(self.batch_size >= 1, || "batch_size = 0: must be >= 1".into())?;
        check(self.batch_size <= self.buffer_size, || {
            format!(
                "batch_size = {} is larger than buffer_size = {}: must be in 1..={}",
                self.batch_size, self.buffer_size, self.buffer_size
            )
        })?;
        check(self.tau > 0.0 && self.tau <= 1.0, || format!("tau = {}: must be in (0, 1]", self.tau))?;
        check(self.target_update_interval >= 1, || "target_update_interval = 0: must be >= 1".into())?;
        check(self.train_freq >= 1, || "train_freq = 0: must be >= 1".into())?;
        unit("exploration_initial_eps", self.exploration_initial_eps)?;
        unit("exploration_final_eps", self.exploration_final_eps)?;
        unit("exploration_fraction", self.exploration_fraction)?;
        unit("eval_epsilon", self.eval_epsilon)?;
        check(self.total_steps != Some(0), || "total_steps = 0: must be >= 1".into())?;
        check(self.max_grad_norm >= 0.0 && !self.max_grad_norm.is_nan(), || {
            format!("max_grad_norm = {}: must be >= 0 (0 disables clipping)", self.max_grad_norm)
        })?;
        check(self.n_step >= 1 && self.n_step <= 100, || format!("n_step = {}: must be in 1..=100", self.n_step))?;
        unit("per_alpha", self.per_alpha)?;
        unit("per_beta", self.per_beta)?;
        check(self.per_eps > 0.0, || format!("per_eps = {}: must be > 0", self.per_eps))?;
        check(self.n_envs >= 1 && self.n_envs <= 1024, || format!("n_envs = {}: must be in 1..=1024", self.n_envs))?;
        check(self.metrics_every >= 1, || "metrics_every = 0: must be >= 1".into())?;
        check(self.actors <= 1024, || format!("actors = {}: must be in 0..=1024", self.actors))?;
        if let Some(h) = self.hidden.iter().find(|h| **h == 0) {
            return Err(AgentError::Config(format!("hidden layer size {h}: every size must be >= 1")));
        }
        Ok(())
    }

    /// The Q-network this config describes for observations of `obs_shape` and `n_actions` actions.
    ///
    /// ```
    /// use bellman_agents::dqn::DqnConfig;
    /// let spec = DqnConfig::default().net_spec(&[4], 2);
    /// assert_eq!((spec.obs_dim(), spec.n_actions, spec.hidden.as_slice()), (4, 2, &[64, 64][..]));
    /// ```
    pub fn net_spec(&self, obs_shape: &[usize], n_actions: usize) -> NetSpec {
        NetSpec {
            arch: self.network,
            obs_shape: obs_shape.to_vec(),
            hidden: self.hidden.clone(),
            activation: self.activation,
            dueling: self.dueling,
            n_actions,
            init: self.init,
        }
    }

    /// The optimiser this config names (Adam or RMSProp with its settings) over `vars`.
    pub fn optimizer(&self, vars: Vec<candle_core::Var>) -> Result<Optim> {
        match self.optimizer {
            OptimizerKind::Adam => Optim::adam(vars, self.learning_rate, self.adam_eps),
            OptimizerKind::Rmsprop => Optim::rmsprop(vars, self.rmsprop_params()),
        }
    }

    /// The RMSProp settings of this config.
    pub fn rmsprop_params(&self) -> ParamsRmsProp {
        ParamsRmsProp {
            lr: self.learning_rate,
            alpha: self.rmsprop_alpha,
            eps: self.rmsprop_eps,
            centered: self.rmsprop_centered,
            momentum: self.rmsprop_momentum,
            eps_inside_sqrt: self.rmsprop_eps_inside_sqrt,
        }
    }

    /// Epsilon after `step` env steps: linear from `exploration_initial_eps` to `exploration_final_eps` over
    /// `exploration_fraction * total_steps`, then constant (SB3's `get_linear_fn`).
    ///
    /// ```
    /// use bellman_agents::dqn::DqnConfig;
    /// let cfg = DqnConfig { exploration_fraction: 0.5, exploration_final_eps: 0.1, total_steps: Some(100),
    ///     ..Default::default() };
    /// assert_eq!(cfg.epsilon(0), 1.0);
    /// assert!((cfg.epsilon(25) - 0.55).abs() < 1e-12);
    /// assert!((cfg.epsilon(80) - 0.1).abs() < 1e-12);
    /// ```
    pub fn epsilon(&self, step: u64) -> f64 {
        let progress = step as f64 / self.schedule_steps() as f64;
        let (a, b) = (self.exploration_initial_eps, self.exploration_final_eps);
        if self.exploration_fraction <= 0.0 || progress >= self.exploration_fraction {
            b
        } else {
            a + (b - a) * progress / self.exploration_fraction
        }
    }

    /// PER's beta after `step` env steps: linear from `per_beta` to 1 over `total_steps`.
    pub fn per_beta_at(&self, step: u64) -> f64 {
        let p = (step as f64 / self.schedule_steps() as f64).min(1.0);
        self.per_beta + (1.0 - self.per_beta) * p
    }

    /// The step count schedules refer to.
    pub fn schedule_steps(&self) -> u64 {
        self.total_steps.unwrap_or(1_000_000).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(c: DqnConfig) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn bad_values_name_field_and_range() {
        let d = DqnConfig::default;
        assert!(d().validate().is_ok());
        assert!(err(DqnConfig { gamma: 0.0, ..d() }).contains("gamma = 0: must be in (0, 1]"));
        assert!(err(DqnConfig { gamma: 1.01, ..d() }).contains("gamma = 1.01"));
        assert!(DqnConfig { gamma: 1.0, ..d() }.validate().is_ok());
        assert!(err(DqnConfig { learning_rate: -1e-3, ..d() }).contains("learning_rate = -0.001"));
        let e = err(DqnConfig { batch_size: 64, buffer_size: 32, ..d() });
        assert!(e.contains("batch_size = 64") && e.contains("buffer_size = 32"), "{e}");
        assert!(err(DqnConfig { tau: 0.0, ..d() }).contains("tau"));
        assert!(err(DqnConfig { exploration_final_eps: 1.5, ..d() }).contains("[0, 1]"));
        assert!(err(DqnConfig { eval_epsilon: -0.1, ..d() }).contains("eval_epsilon = -0.1"));
        assert!(err(DqnConfig { n_step: 0, ..d() }).contains("n_step"));
        assert!(err(DqnConfig { hidden: vec![64, 0], ..d() }).contains("hidden"));
        assert!(err(DqnConfig { max_grad_norm: f64::NAN, ..d() }).contains("max_grad_norm"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = toml::from_str::<DqnConfig>("learning_rat = 1e-3").unwrap_err().to_string();
        assert!(e.contains("learning_rat"), "{e}");
    }

    #[test]
    fn schedules() {
        let c = DqnConfig {
            exploration_fraction: 0.16,
            exploration_final_eps: 0.04,
            total_steps: Some(50_000),
            ..DqnConfig::default()
        };
        // 0.16 * 50000 = 8000 steps; halfway (4000) epsilon = (1 + 0.04) / 2.
        assert!((c.epsilon(4000) - 0.52).abs() < 1e-12);
        assert_eq!(c.epsilon(8000), 0.04);
        assert_eq!(c.epsilon(49_999), 0.04);
        assert!((c.per_beta_at(25_000) - 0.7).abs() < 1e-12);
        assert_eq!(c.per_beta_at(100_000), 1.0);
    }
}
