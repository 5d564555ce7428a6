//! DQN (Mnih et al. 2015) on candle, with Double DQN, dueling networks, n-step returns, prioritised replay,
//! several envs per learner, Adam or RMSProp, Huber or MSE loss, hard or Polyak target updates.
//!
//! The training loop follows Stable-Baselines3's `DQN.learn` step for step (stable_baselines3/dqn/dqn.py and
//! common/off_policy_algorithm.py): random actions until `learning_starts`, then epsilon-greedy; every
//! `train_freq` vector steps, `gradient_steps` updates on minibatches from the replay buffer; target update every
//! `target_update_interval` env steps; epsilon decays linearly. Targets bootstrap on `truncated` and never on
//! `terminated` (see [`loss`]).
//!
//! Runs are reproducible: weights are drawn from a seeded generator, the envs are seeded `seed + i`, and
//! exploration and replay sampling use their own seeded generators, so the same config and seed give the same
//! episodes, whether `train` is called once or in chunks.
//!
//! Atari frames (`ALE/<Game>-v5`, cargo feature `atari`): `pixels::PixelDqnTrainer`, the same update (module
//! `learn`) on `u8` frame stacks in frame-deduplicated replay.
//!
//! ```no_run
//! use bellman_agents::dqn::{DqnConfig, DqnTrainer};
//! use bellman_agents::trainer::{EnvSetup, NullReporter, Trainer};
//! let cfg = DqnConfig { total_steps: Some(50_000), ..DqnConfig::default() };
//! let mut agent = DqnTrainer::new(&cfg, &EnvSetup::new("CartPole-v1"), 0, "cpu").unwrap();
//! agent.train(50_000, &mut NullReporter).unwrap();
//! println!("{}", agent.evaluate(20, 1000).unwrap().mean());
//! ```
pub mod config;
pub mod device;
pub(crate) mod learn;
pub mod loss;
pub mod network;
pub mod optim;
pub mod speed;
#[cfg(feature = "atari")]
pub mod pixels;

use std::time::Instant;

use bellman_envs::vector::{AutoresetMode, SyncVectorEnv};
use bellman_envs::{DynEnv, Space};
use bellman_replay::{
    Batch, FlatReplay, FlatStorage, NStep, PrioritizedReplayBuffer, ReplayBuffer, Transition, TransitionSink,
};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

pub use config::DqnConfig;
use network::{Arch, CpuMlp, NetSpec, QNetwork, argmax, terr};
use optim::{Optim, OptimizerKind};

use crate::error::{AgentError, Result};
use crate::trainer::{
    Checkpoint, EnvSetup, EpisodeRecord, EvalResult, Reporter, TrainMetrics, Trainer, evaluate_episodes,
};

/// Builds one env instance (for the training vector env and the evaluation env).
pub type EnvFactory = Box<dyn Fn() -> Result<Box<dyn DynEnv>> + Send>;

// Stream constants that split one seed into independent generators (arbitrary odd numbers).
const INIT_STREAM: u64 = 0x9E37_79B9_7F4A_7C15;
const EXPLORE_STREAM: u64 = 0xD1B5_4A32_D192_ED03;
const REPLAY_STREAM: u64 = 0x8CB9_2BA7_2F3D_8DD7;

fn replay_err(e: bellman_replay::error::ReplayError) -> AgentError {
    AgentError::Replay(e.to_string())
}

/// The replay buffer of either kind.
#[derive(Debug)]
enum Replay {
    Uniform(FlatReplay<f32, i64>),
    Prioritized(PrioritizedReplayBuffer<FlatStorage<f32, i64>>),
}

impl TransitionSink<f32, i64> for Replay {
    fn push_transition(&mut self, env: usize, t: &Transition<'_, f32, i64>) -> bellman_replay::Result<()> {
        match self {
            Replay::Uniform(b) => b.push_transition(env, t),
            Replay::Prioritized(b) => b.push_transition(env, t),
        }
    }
}

/// Reusable host-side buffers of one update (no allocation after the first update).
#[derive(Debug, Default)]
struct Scratch {
    batch: Batch<f32, i64>,
    upd: learn::UpdateScratch,
    td: Vec<f32>,
}

/// Running sums between two metrics reports.
#[derive(Debug, Default)]
struct Running {
    loss: Option<Tensor>,
    q: Option<Tensor>,
    updates: u64,
    since_step: u64,
    since_time: Option<Instant>,
}

impl Running {
    /// Adds one update's loss and mean Q (device scalars, summed on the device: no host sync per update).
    fn add(&mut self, loss: Tensor, q: Tensor) -> Result<()> {
        self.loss = Some(match self.loss.take() {
            Some(acc) => (acc + loss).map_err(terr)?,
            None => loss,
        });
        self.q = Some(match self.q.take() {
            Some(acc) => (acc + q).map_err(terr)?,
            None => q,
        });
        self.updates += 1;
        Ok(())
    }

    /// Mean loss and mean Q since the last call and env steps per second (epsilon and `extra` left for the
    /// caller); restarts the sums. A non-finite loss is a [`AgentError::Diverged`] error.
    fn take_metrics(&mut self, steps: u64) -> Result<TrainMetrics> {
        let r = std::mem::take(self);
        let scalar = |t: Option<Tensor>| -> Result<Option<f64>> {
            match t {
                Some(t) => Ok(Some(t.to_dtype(DType::F64).and_then(|t| t.to_scalar::<f64>()).map_err(terr)?)),
                None => Ok(None),
            }
        };
        let n = r.updates.max(1) as f64;
        let loss = scalar(r.loss)?.map(|v| v / n);
        let mean_q = scalar(r.q)?.map(|v| v / n);
        if let Some(l) = loss
            && !l.is_finite()
        {
            return Err(AgentError::Diverged(format!("loss is {l} at step {steps}")));
        }
        let now = Instant::now();
        let sps = r.since_time.map(|t| (steps - r.since_step) as f64 / now.duration_since(t).as_secs_f64());
        self.since_step = steps;
        self.since_time = Some(now);
        Ok(TrainMetrics { step: steps, loss, mean_q, epsilon: None, steps_per_sec: sps, extra: Vec::new() })
    }
}

/// The DQN agent the runner drives through [`Trainer`].
pub struct DqnTrainer {
    cfg: DqnConfig,
    seed: u64,
    device: Device,
    make_env: EnvFactory,
    envs: SyncVectorEnv<Box<dyn DynEnv>>,
    eval_env: Option<Box<dyn DynEnv>>,
    n_actions: usize,
    obs_dim: usize,
    online: QNetwork,
    target: QNetwork,
    cpu_policy: Option<CpuMlp>,
    policy_stale: bool,
    optim: Optim,
    vars: Vec<candle_core::Var>,
    replay: Replay,
    nstep: Option<NStep<f32, i64>>,
    explore_rng: Pcg64,
    replay_rng: Pcg64,
    scratch: Scratch,
    /// Previous observations of every sub-env (`n_envs * obs_dim`).
    last_obs: Vec<f32>,
    actions: Vec<usize>,
    steps: u64,
    /// Vector steps taken (SB3's `_n_calls`).
    calls: u64,
    rollout: u64,
    episodes: u64,
    updates: u64,
    started: bool,
    start_time: Option<Instant>,
    running: Running,
    next_metrics: u64,
    /// No update before this step: `learning_starts`, or after a restore (the replay buffer is not part of a
    /// checkpoint) the restored step plus `max(learning_starts, batch_size)` to refill it.
    learn_gate: u64,
}

impl std::fmt::Debug for DqnTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DqnTrainer")
            .field("cfg", &self.cfg)
            .field("seed", &self.seed)
            .field("steps", &self.steps)
            .field("updates", &self.updates)
            .finish_non_exhaustive()
    }
}

impl DqnTrainer {
    /// Builds DQN for the registry env `env`, seeded with `seed`, on `device` (`cpu`, `cuda`, `cuda:N`).
    pub fn new(cfg: &DqnConfig, env: &EnvSetup, seed: u64, device: &str) -> Result<Self> {
        let opts = env.parsed_options()?;
        let id = env.id.clone();
        // Fail early on a bad id or bad options (with the registry's message).
        bellman_envs::make_with(&id, &opts)?;
        let factory: EnvFactory = Box::new(move || Ok(bellman_envs::make_with(&id, &opts)?));
        Self::with_env_factory(cfg, factory, seed, device)
    }

    /// Builds DQN for envs made by `make_env` (any [`DynEnv`]: custom envs, wrapped envs).
    pub fn with_env_factory(cfg: &DqnConfig, make_env: EnvFactory, seed: u64, device: &str) -> Result<Self> {
        cfg.validate()?;
        let device = device::parse_device(device)?;
        let envs = (0..cfg.n_envs).map(|_| make_env()).collect::<Result<Vec<_>>>()?;
        let envs = SyncVectorEnv::new(envs, AutoresetMode::SameStep)?;
        let n_actions = match envs.single_action_space() {
            Space::Discrete(n) => *n,
            other => {
                return Err(AgentError::Unsupported(format!(
                    "DQN needs a discrete action space, got {other}; use an agent for continuous actions"
                )));
            }
        };
        let obs_shape = envs.single_observation_space().shape().to_vec();
        let obs_shape = if obs_shape.is_empty() { vec![1] } else { obs_shape };
        let obs_dim = envs.obs_dim();
        let spec = NetSpec {
            arch: cfg.network,
            obs_shape: obs_shape.clone(),
            hidden: cfg.hidden.clone(),
            activation: cfg.activation,
            dueling: cfg.dueling,
            n_actions,
            init: cfg.init,
        };
        let mut init_rng = Pcg64::seed_from_u64(seed ^ INIT_STREAM);
        let online = QNetwork::new(&spec, &mut init_rng, &device)?;
        let target = QNetwork::new(&spec, &mut init_rng, &device)?;
        target.copy_from(&online)?;
        let cpu_policy = if spec.arch == Arch::Mlp { Some(CpuMlp::from_network(&online)?) } else { None };
        let optim = match cfg.optimizer {
            OptimizerKind::Adam => Optim::adam(online.vars(), cfg.learning_rate, cfg.adam_eps)?,
            OptimizerKind::Rmsprop => Optim::rmsprop(online.vars(), cfg.rmsprop_params())?,
        };
        let replay = if cfg.prioritized {
            let storage = FlatStorage::<f32, i64>::new(cfg.buffer_size, &obs_shape, 1).map_err(replay_err)?;
            Replay::Prioritized(PrioritizedReplayBuffer::new(storage, cfg.per_alpha, cfg.per_eps).map_err(replay_err)?)
        } else {
            Replay::Uniform(ReplayBuffer::flat::<f32, i64>(cfg.buffer_size, &obs_shape, 1).map_err(replay_err)?)
        };
        let nstep = if cfg.n_step > 1 {
            Some(NStep::new(cfg.n_step, cfg.gamma, cfg.n_envs, obs_dim, 1).map_err(replay_err)?)
        } else {
            None
        };
        let n_envs = cfg.n_envs;
        let vars = online.vars();
        Ok(DqnTrainer {
            cfg: cfg.clone(),
            seed,
            device,
            make_env,
            envs,
            eval_env: None,
            n_actions,
            obs_dim,
            online,
            target,
            cpu_policy,
            policy_stale: false,
            optim,
            vars,
            replay,
            nstep,
            explore_rng: Pcg64::seed_from_u64(seed ^ EXPLORE_STREAM),
            replay_rng: Pcg64::seed_from_u64(seed ^ REPLAY_STREAM),
            scratch: Scratch::default(),
            last_obs: vec![0.0; n_envs * obs_dim],
            actions: vec![0; n_envs],
            steps: 0,
            calls: 0,
            rollout: 0,
            episodes: 0,
            updates: 0,
            started: false,
            start_time: None,
            running: Running::default(),
            next_metrics: cfg.metrics_every,
            learn_gate: cfg.learning_starts,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DqnConfig {
        &self.cfg
    }

    /// The online Q-network.
    pub fn online(&self) -> &QNetwork {
        &self.online
    }

    /// The target Q-network.
    pub fn target(&self) -> &QNetwork {
        &self.target
    }

    /// Gradient updates done so far.
    pub fn updates_done(&self) -> u64 {
        self.updates
    }

    /// The current exploration epsilon.
    pub fn epsilon(&self) -> f64 {
        self.cfg.epsilon(self.steps)
    }

    /// The greedy action for one observation (the CPU copy of the MLP, or the network on its device for the CNN).
    pub fn act_greedy(&mut self, obs: &[f32]) -> Result<usize> {
        let mut a = [0usize];
        self.greedy(obs, &mut a)?;
        Ok(a[0])
    }

    /// Q-values of one observation under the online network.
    pub fn q_values(&mut self, obs: &[f32]) -> Result<Vec<f32>> {
        if obs.len() != self.obs_dim {
            return Err(AgentError::Config(format!(
                "observation has {} values, the network expects {}",
                obs.len(),
                self.obs_dim
            )));
        }
        let mut shape = vec![1];
        shape.extend_from_slice(&self.online.spec().obs_shape);
        let x = Tensor::from_slice(obs, shape, &self.device).map_err(terr)?;
        self.online.forward(&x).and_then(|q| q.flatten_all()).and_then(|q| q.to_vec1::<f32>()).map_err(terr)
    }

    fn refresh_policy(&mut self) -> Result<()> {
        if self.policy_stale {
            if let Some(p) = self.cpu_policy.as_mut() {
                p.sync_from(&self.online)?;
            }
            self.policy_stale = false;
        }
        Ok(())
    }

    /// Greedy actions for `n` observations in `obs` (row-major) into `out`.
    fn greedy(&mut self, obs: &[f32], out: &mut [usize]) -> Result<()> {
        self.refresh_policy()?;
        if let Some(p) = self.cpu_policy.as_mut() {
            for (o, row) in out.iter_mut().zip(obs.chunks_exact(self.obs_dim)) {
                *o = p.act(row);
            }
            return Ok(());
        }
        let mut shape = vec![out.len()];
        shape.extend_from_slice(&self.online.spec().obs_shape);
        let x = Tensor::from_slice(obs, shape, &self.device).map_err(terr)?;
        let q = self.online.forward(&x).map_err(terr)?.to_device(&Device::Cpu).map_err(terr)?;
        let q = q.to_vec2::<f32>().map_err(terr)?;
        for (o, row) in out.iter_mut().zip(&q) {
            *o = argmax(row);
        }
        Ok(())
    }

    fn select_actions(&mut self) -> Result<()> {
        let n = self.cfg.n_envs;
        if self.steps < self.cfg.learning_starts {
            // SB3: uniform random actions before learning_starts.
            for a in self.actions.iter_mut() {
                *a = self.explore_rng.random_range(0..self.n_actions);
            }
            return Ok(());
        }
        let eps = self.cfg.epsilon(self.steps);
        let mut actions = std::mem::take(&mut self.actions);
        let obs = std::mem::take(&mut self.last_obs);
        let res = self.greedy(&obs, &mut actions[..n]);
        self.last_obs = obs;
        for a in actions.iter_mut() {
            if self.explore_rng.random::<f64>() < eps {
                *a = self.explore_rng.random_range(0..self.n_actions);
            }
        }
        self.actions = actions;
        res
    }

    /// One vector-env step: act, store the transitions, report finished episodes.
    fn env_step(&mut self, reporter: &mut dyn Reporter) -> Result<()> {
        self.select_actions()?;
        self.envs.step_discrete(&self.actions)?;
        let d = self.obs_dim;
        let elapsed = self.start_time.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
        for i in 0..self.cfg.n_envs {
            let next = match self.envs.final_obs_row(i) {
                Some(f) if self.envs.final_obs_mask()[i] => f,
                _ => &self.envs.obs()[i * d..(i + 1) * d],
            };
            let t = Transition {
                obs: &self.last_obs[i * d..(i + 1) * d],
                action: &[self.actions[i] as i64],
                reward: self.envs.rewards()[i] as f32,
                next_obs: next,
                terminated: self.envs.terminated()[i],
                truncated: self.envs.truncated()[i],
                discount: self.cfg.gamma as f32,
            };
            match self.nstep.as_mut() {
                Some(n) => n.push(i, &t, &mut self.replay).map(|_| ()),
                None => self.replay.push_transition(i, &t),
            }
            .map_err(replay_err)?;
        }
        self.steps += self.cfg.n_envs as u64;
        for (i, st) in self.envs.finished_episodes() {
            reporter.episode(&EpisodeRecord {
                step: self.steps,
                episode: self.episodes,
                ret: st.ret,
                len: st.len,
                wall_time: elapsed,
                actor: i,
            });
            self.episodes += 1;
        }
        self.last_obs.copy_from_slice(self.envs.obs());
        Ok(())
    }

    /// SB3's `_on_step`: target update every `target_update_interval` env steps.
    fn on_step(&mut self) -> Result<()> {
        self.calls += 1;
        let every = (self.cfg.target_update_interval / self.cfg.n_envs as u64).max(1);
        if self.calls.is_multiple_of(every) {
            if self.cfg.tau >= 1.0 {
                self.target.copy_from(&self.online)?;
            } else {
                self.target.polyak_from(&self.online, self.cfg.tau)?;
            }
        }
        Ok(())
    }

    /// One gradient update on a minibatch sampled from the replay buffer (what `train` runs `gradient_steps`
    /// times per phase; public for benchmarks). The buffer must hold at least one transition.
    pub fn gradient_step(&mut self) -> Result<()> {
        let b = self.cfg.batch_size;
        match &mut self.replay {
            Replay::Uniform(r) => r.sample(b, &mut self.replay_rng, &mut self.scratch.batch),
            Replay::Prioritized(r) => {
                let beta = self.cfg.per_beta_at(self.steps);
                r.sample(b, beta, &mut self.replay_rng, &mut self.scratch.batch)
            }
        }
        .map_err(replay_err)?;
        let weighted = matches!(self.replay, Replay::Prioritized(_));
        let out = learn::td_update(
            &self.cfg,
            &self.online,
            &self.target,
            &mut self.optim,
            &self.vars,
            &self.scratch.batch,
            weighted,
            &mut self.scratch.upd,
            &self.device,
            (self.steps, self.updates),
        )?;
        let learn::UpdateOut { loss, q_taken, targets } = out;
        self.updates += 1;
        self.policy_stale = true;
        if let Replay::Prioritized(r) = &mut self.replay {
            // Schaul et al. 2016, Algorithm 1 line 12: new priorities from the TD errors of this batch.
            let td = (&q_taken - &targets).and_then(|d| d.to_vec1::<f32>()).map_err(terr)?;
            self.scratch.td.clear();
            self.scratch.td.extend_from_slice(&td);
            r.update_priorities(&self.scratch.batch.indices, &self.scratch.td).map_err(replay_err)?;
        }
        let qm = q_taken.detach().mean_all().map_err(terr)?;
        self.running.add(loss.detach(), qm)
    }

    fn report_metrics(&mut self, reporter: &mut dyn Reporter) -> Result<()> {
        let mut m = self.running.take_metrics(self.steps)?;
        m.epsilon = Some(self.cfg.epsilon(self.steps));
        m.extra = vec![("updates".into(), self.updates as f64)];
        reporter.metrics(&m);
        Ok(())
    }

    fn eval_env(&mut self) -> Result<&mut Box<dyn DynEnv>> {
        if self.eval_env.is_none() {
            self.eval_env = Some((self.make_env)()?);
        }
        Ok(self.eval_env.as_mut().expect("just set"))
    }
}

impl Trainer for DqnTrainer {
    fn steps_done(&self) -> u64 {
        self.steps
    }

    fn train(&mut self, until: u64, reporter: &mut dyn Reporter) -> Result<()> {
        if !self.started {
            self.envs.reset(Some(self.seed))?;
            self.last_obs.copy_from_slice(self.envs.obs());
            self.started = true;
            self.start_time = Some(Instant::now());
            self.running.since_time = self.start_time;
        }
        while self.steps < until {
            if reporter.stop_requested() {
                break;
            }
            self.env_step(reporter)?;
            self.on_step()?;
            self.rollout += 1;
            if self.rollout >= self.cfg.train_freq {
                self.rollout = 0;
                if self.steps > self.learn_gate {
                    for _ in 0..self.cfg.gradient_steps {
                        self.gradient_step()?;
                    }
                }
            }
            if self.steps >= self.next_metrics {
                self.next_metrics = self.steps + self.cfg.metrics_every;
                self.report_metrics(reporter)?;
            }
            reporter.progress(self.steps);
        }
        Ok(())
    }

    fn evaluate(&mut self, episodes: usize, seed: u64) -> Result<EvalResult> {
        self.refresh_policy()?;
        self.eval_env()?;
        // Taken out while `greedy` borrows the trainer; put back whatever the result.
        let mut env = self.eval_env.take().ok_or_else(|| AgentError::Unsupported("no evaluation env".into()))?;
        let mut act = [0usize];
        let res = evaluate_episodes(env.as_mut(), episodes, seed, |obs| {
            self.greedy(obs, &mut act)?;
            Ok(act[0])
        });
        self.eval_env = Some(env);
        res
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        let cfg = serde_json::to_value(&self.cfg).map_err(|e| AgentError::Checkpoint(e.to_string()))?;
        Ok(Checkpoint {
            weights: self.online.to_safetensors()?,
            train_state: Some(self.target.to_safetensors()?),
            meta: serde_json::json!({
                "algorithm": "dqn",
                "seed": self.seed,
                "steps": self.steps,
                "episodes": self.episodes,
                "updates": self.updates,
                "vector_steps": self.calls,
                "epsilon": self.cfg.epsilon(self.steps),
                "n_actions": self.n_actions,
                "obs_shape": self.online.spec().obs_shape,
                "config": cfg,
                "train_state": "target network weights (same tensor names); optimiser moments and the replay \
                                buffer are not saved",
            }),
        })
    }

    fn restore(&mut self, ckpt: &Checkpoint) -> Result<()> {
        self.online.load_safetensors(&ckpt.weights)?;
        match &ckpt.train_state {
            Some(t) => self.target.load_safetensors(t)?,
            None => self.target.copy_from(&self.online)?,
        }
        self.policy_stale = true;
        self.refresh_policy()?;
        let get = |k: &str| ckpt.meta.get(k).and_then(|v| v.as_u64());
        if let Some(s) = get("steps") {
            self.steps = s;
            self.next_metrics = s + self.cfg.metrics_every;
            self.learn_gate = s + self.cfg.learning_starts.max(self.cfg.batch_size as u64);
        }
        if let Some(e) = get("episodes") {
            self.episodes = e;
        }
        if let Some(u) = get("updates") {
            self.updates = u;
        }
        if let Some(c) = get("vector_steps") {
            self.calls = c;
        }
        Ok(())
    }
}
