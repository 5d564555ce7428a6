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
//! Resuming is exact: a checkpoint ([`Trainer::checkpoint`]) holds the target network, the optimiser's moments,
//! the exact states of the exploration and replay generators, the counters and the metrics sums in progress, and
//! the actions taken since the training envs were seeded (one byte per env step). [`Trainer::resume`] loads them,
//! replays those actions on freshly seeded envs (so every sub-env continues its episode where it was, whatever
//! the env: an env is deterministic given its seed and actions), rebuilds the n-step accumulator on the way and
//! loads the replay buffer when it was saved ([`Trainer::save_replay`]). The run then continues bit-identically
//! to one that was never interrupted. Without a saved replay buffer it refills the buffer for
//! `max(learning_starts, batch_size)` steps before learning again, and the [`ResumeReport`] says the resume is
//! not exact; so it does if the replayed envs do not end where the checkpoint says (a nondeterministic custom
//! env), and the envs are then reseeded with a derived seed that the next checkpoints record.
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
mod denormals;
pub mod device;
pub(crate) mod learn;
pub mod loss;
pub mod network;
pub mod optim;
#[cfg(feature = "atari")]
pub mod pixels;
pub mod speed;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use bellman_envs::vector::{AutoresetMode, SyncVectorEnv};
use bellman_envs::{DynEnv, Space};
use bellman_replay::{
    Batch, FlatReplay, FlatStorage, NStep, PrioritizedReplayBuffer, ReplayBuffer, Storage, Transition, TransitionSink,
};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

pub use config::DqnConfig;
use network::{Arch, CpuMlp, QNetwork, argmax, terr};
use optim::Optim;

use crate::error::{AgentError, Result};
use crate::trainer::{
    Checkpoint, EnvSetup, EpisodeRecord, EvalEpsilon, EvalResult, Reporter, ResumeReport, TrainMetrics, Trainer,
    evaluate_episodes, pcg_from_json, pcg_to_json,
};

/// Builds one env instance (for the training vector env and the evaluation env).
pub type EnvFactory = Box<dyn Fn() -> Result<Box<dyn DynEnv>> + Send>;

// Stream constants that split one seed into independent generators (arbitrary odd numbers).
const INIT_STREAM: u64 = 0x9E37_79B9_7F4A_7C15;
const EXPLORE_STREAM: u64 = 0xD1B5_4A32_D192_ED03;
const REPLAY_STREAM: u64 = 0x8CB9_2BA7_2F3D_8DD7;

/// `state_version` in the meta of checkpoints that hold the whole training state (optimiser, generators, env
/// actions, counters); checkpoints without it restore weights, target and counters only.
const STATE_VERSION: u64 = 2;
/// Prefix of the optimiser's tensors in the train state (`optimizer.<param>.exp_avg`, ...).
const OPT_PREFIX: &str = "optimizer.";
/// The actions since the envs were seeded (`U8`, `[vector steps * n_envs]`).
const ENV_ACTIONS: &str = "resume.env_actions";
/// The envs' current observations, returns and lengths: a replay of the actions must end on them.
const ENV_OBS: &str = "resume.env_obs";
const ENV_RETURNS: &str = "resume.env_returns";
const ENV_LENGTHS: &str = "resume.env_lengths";
/// Sums of loss and mean Q since the last metrics report (device scalars).
const LOSS_SUM: &str = "resume.loss_sum";
const Q_SUM: &str = "resume.q_sum";

fn replay_err(e: bellman_replay::error::ReplayError) -> AgentError {
    AgentError::Replay(e.to_string())
}

/// The seed training envs get when a resume cannot rebuild them exactly: SplitMix64's finaliser (Steele, Lea and
/// Flood 2014) of the run's seed and step, so that it differs from the run's own seeds.
pub(crate) fn derived_env_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    // sub-env i is seeded `seed + i`: keep room for them
    (z ^ (z >> 31)) >> 1
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
    /// No update before this step: `learning_starts`, or after a resume without a saved replay buffer the
    /// restored step plus `max(learning_starts, batch_size)` to refill it.
    learn_gate: u64,
    /// Actions of every vector step since the training envs were last seeded with `env_log_seed`, one byte per
    /// sub-env: a resume replays them to rebuild the envs exactly. `None` when actions do not fit a byte.
    env_log: Option<Vec<u8>>,
    env_log_seed: u64,
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
        let spec = cfg.net_spec(&obs_shape, n_actions);
        let mut init_rng = Pcg64::seed_from_u64(seed ^ INIT_STREAM);
        let online = QNetwork::new(&spec, &mut init_rng, &device)?;
        let target = QNetwork::new(&spec, &mut init_rng, &device)?;
        target.copy_from(&online)?;
        let cpu_policy = if spec.arch == Arch::Mlp { Some(CpuMlp::from_network(&online)?) } else { None };
        let optim = cfg.optimizer(online.vars())?;
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
        // Reserved for the whole budget when known (up to 64 MiB; longer runs grow it, amortised): logging an
        // action does not allocate in the loop.
        let reserve = cfg.total_steps.unwrap_or(0).min(1 << 26) as usize;
        let env_log = (n_actions <= 256).then(|| Vec::with_capacity(reserve));
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
            env_log,
            env_log_seed: seed,
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
        if let Some(log) = self.env_log.as_mut() {
            // n_actions <= 256 when the log exists
            log.extend(self.actions.iter().map(|&a| a as u8));
        }
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

    /// Seeds the training envs with `seed` (sub-env `i`: `seed + i`) and starts a new action log from there.
    fn reseed_envs(&mut self, seed: u64) -> Result<()> {
        self.envs.reset(Some(seed))?;
        self.last_obs.copy_from_slice(self.envs.obs());
        self.env_log_seed = seed;
        if let Some(log) = self.env_log.as_mut() {
            log.clear();
        }
        self.started = true;
        self.start_time = Some(Instant::now());
        self.running.since_time = self.start_time;
        self.running.since_step = self.steps;
        Ok(())
    }

    /// Seeds the envs with `seed` and replays `actions` (vector steps of `n_envs` bytes), feeding the n-step
    /// accumulator as training did (its output is dropped: the replay buffer is saved or refilled separately).
    fn replay_envs(&mut self, seed: u64, actions: &[u8]) -> Result<()> {
        self.reseed_envs(seed)?;
        let (n, d) = (self.cfg.n_envs, self.obs_dim);
        let gamma = self.cfg.gamma as f32;
        let mut discard = |_env: usize, _t: &Transition<'_, f32, i64>| -> bellman_replay::Result<()> { Ok(()) };
        for step in actions.chunks_exact(n) {
            for (a, &b) in self.actions.iter_mut().zip(step) {
                if b as usize >= self.n_actions {
                    return Err(AgentError::Checkpoint(format!(
                        "logged action {b} is outside the env's {} actions",
                        self.n_actions
                    )));
                }
                *a = b as usize;
            }
            self.envs.step_discrete(&self.actions)?;
            if let Some(ns) = self.nstep.as_mut() {
                for i in 0..n {
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
                        discount: gamma,
                    };
                    ns.push(i, &t, &mut discard).map_err(replay_err)?;
                }
            }
            self.last_obs.copy_from_slice(self.envs.obs());
            if let Some(log) = self.env_log.as_mut() {
                log.extend_from_slice(step);
            }
        }
        Ok(())
    }

    /// The train state: target network (its own tensor names), optimiser state, the env action log, the envs'
    /// current observations, returns and lengths, and the metrics sums in progress.
    fn train_state(&self) -> Result<(Vec<u8>, serde_json::Value)> {
        let ck = |e: candle_core::Error| AgentError::Checkpoint(e.to_string());
        let cpu = Device::Cpu;
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (n, v) in self.target.named_params() {
            tensors.push((n.clone(), v.as_tensor().to_device(&cpu).map_err(ck)?));
        }
        let names = self.online.param_names();
        let opt = self.optim.export_state(&names, OPT_PREFIX)?;
        tensors.extend(opt.tensors);
        if let Some(log) = self.env_log.as_ref().filter(|l| !l.is_empty()) {
            tensors.push((ENV_ACTIONS.into(), Tensor::from_slice(log, log.len(), &cpu).map_err(ck)?));
        }
        let n = self.cfg.n_envs;
        tensors.push((ENV_OBS.into(), Tensor::from_slice(&self.last_obs, self.last_obs.len(), &cpu).map_err(ck)?));
        tensors.push((ENV_RETURNS.into(), Tensor::from_slice(self.envs.current_returns(), n, &cpu).map_err(ck)?));
        let lens: Vec<i64> = self.envs.current_lengths().iter().map(|&l| l as i64).collect();
        tensors.push((ENV_LENGTHS.into(), Tensor::from_vec(lens, n, &cpu).map_err(ck)?));
        for (name, t) in [(LOSS_SUM, &self.running.loss), (Q_SUM, &self.running.q)] {
            if let Some(t) = t {
                tensors.push((name.into(), t.to_device(&cpu).map_err(ck)?));
            }
        }
        let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)
            .map_err(|e| AgentError::Checkpoint(e.to_string()))?;
        let meta = serde_json::json!({
            "state_version": STATE_VERSION,
            "rollout": self.rollout,
            "next_metrics": self.next_metrics,
            "learn_gate": self.learn_gate,
            "started": self.started,
            "running_updates": self.running.updates,
            "optimizer": { "kind": opt.kind, "step": opt.step },
            "rng": { "explore": pcg_to_json(&self.explore_rng)?, "replay": pcg_to_json(&self.replay_rng)? },
            "env_log": self.env_log.as_ref().map(|l| serde_json::json!({
                "seed": self.env_log_seed,
                "vector_steps": l.len() / n,
            })),
            "env_seed": self.env_log_seed,
            "replay_len": self.replay_len(),
            "replay_pushed": self.replay_pushed(),
        });
        Ok((bytes, meta))
    }

    /// Transitions in the replay buffer.
    fn replay_len(&self) -> usize {
        match &self.replay {
            Replay::Uniform(b) => b.len(),
            Replay::Prioritized(b) => b.len(),
        }
    }

    /// Transitions ever pushed into the replay buffer: identifies the buffer of one checkpoint.
    fn replay_pushed(&self) -> u64 {
        match &self.replay {
            Replay::Uniform(b) => b.storage().live().end,
            Replay::Prioritized(b) => b.storage().live().end,
        }
    }

    /// Restores everything a checkpoint holds (all but the replay buffer); the report says what is not exact.
    fn restore_state(&mut self, ckpt: &Checkpoint) -> Result<ResumeReport> {
        let bad = |m: String| AgentError::Checkpoint(m);
        let meta = &ckpt.meta;
        let get = |k: &str| meta.get(k).and_then(|v| v.as_u64());
        let req = |k: &str| get(k).ok_or_else(|| bad(format!("checkpoint meta lacks the integer '{k}'")));
        let mut report = ResumeReport::exact();
        self.online.load_safetensors(&ckpt.weights)?;
        match &ckpt.train_state {
            Some(t) => self.target.load_safetensors(t)?,
            None => self.target.copy_from(&self.online)?,
        }
        self.policy_stale = true;
        self.refresh_policy()?;
        if let Some(seed) = get("seed") {
            self.seed = seed;
        }
        self.steps = get("steps").unwrap_or(0);
        self.episodes = get("episodes").unwrap_or(0);
        self.updates = get("updates").unwrap_or(0);
        self.calls = get("vector_steps").unwrap_or(0);
        self.running = Running::default();
        let full = get("state_version") == Some(STATE_VERSION);
        let (Some(ts), true) = (&ckpt.train_state, full) else {
            // A checkpoint of an older version: weights, target and counters.
            report.not_exact(
                "the checkpoint holds no optimiser, generator or env state (an older format): the optimiser \
                 restarts from zero moments and the envs from new episodes",
            );
            self.rollout = 0;
            self.next_metrics = self.steps + self.cfg.metrics_every;
            self.learn_gate = self.steps + self.cfg.learning_starts.max(self.cfg.batch_size as u64);
            if self.steps > 0 {
                let seed = derived_env_seed(self.seed, self.steps);
                self.reseed_envs(seed)?;
                report.notes.push(format!("training envs reseeded with {seed} (derived from the seed and step)"));
            }
            return Ok(report);
        };
        let map = candle_core::safetensors::load_buffer(ts, &Device::Cpu)
            .map_err(|e| bad(format!("cannot read the train state: {e}")))?;
        self.rollout = req("rollout")?;
        self.next_metrics = req("next_metrics")?;
        self.learn_gate = req("learn_gate")?;
        let opt = meta.get("optimizer").ok_or_else(|| bad("checkpoint meta lacks 'optimizer'".into()))?;
        let kind = opt.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        let step = opt.get("step").and_then(|k| k.as_u64()).ok_or_else(|| bad(format!("optimizer state {opt}")))?;
        let names = self.online.param_names();
        self.optim.import_state(kind, step, &map, &names, OPT_PREFIX)?;
        let rng = meta.get("rng").ok_or_else(|| bad("checkpoint meta lacks 'rng'".into()))?;
        self.explore_rng = pcg_from_json(&rng["explore"])?;
        self.replay_rng = pcg_from_json(&rng["replay"])?;
        let dev = |t: &Tensor| t.to_device(&self.device).map_err(terr);
        self.running.loss = map.get(LOSS_SUM).map(dev).transpose()?;
        self.running.q = map.get(Q_SUM).map(dev).transpose()?;
        self.running.updates = req("running_updates")?;
        self.running.since_step = self.steps;
        if meta.get("started").and_then(|v| v.as_bool()) == Some(true) {
            self.restore_envs(&map, meta, &mut report)?;
        } else {
            self.started = false;
        }
        Ok(report)
    }

    /// Rebuilds the training envs from the logged actions and checks that they end where the checkpoint says;
    /// otherwise reseeds them (not exact, said in `report`).
    fn restore_envs(
        &mut self,
        map: &HashMap<String, Tensor>,
        meta: &serde_json::Value,
        report: &mut ResumeReport,
    ) -> Result<()> {
        let bad = |m: String| AgentError::Checkpoint(m);
        let n = self.cfg.n_envs;
        let log = meta.get("env_log").filter(|l| !l.is_null());
        let replayed = match (log, self.env_log.is_some()) {
            (Some(l), true) => {
                let seed = l.get("seed").and_then(|v| v.as_u64()).ok_or_else(|| bad(format!("env_log {l}")))?;
                let steps =
                    l.get("vector_steps").and_then(|v| v.as_u64()).ok_or_else(|| bad(format!("env_log {l}")))?;
                let actions: Vec<u8> = match map.get(ENV_ACTIONS) {
                    Some(t) => t.flatten_all().and_then(|t| t.to_vec1::<u8>()).map_err(terr)?,
                    None => Vec::new(),
                };
                if actions.len() as u64 != steps * n as u64 {
                    return Err(bad(format!(
                        "the env action log holds {} actions, the meta says {steps} vector steps of {n} envs",
                        actions.len()
                    )));
                }
                self.replay_envs(seed, &actions)?;
                true
            }
            _ => false,
        };
        let same = replayed && {
            let f32s = |k: &str| map.get(k).and_then(|t| t.to_vec1::<f32>().ok());
            let obs = f32s(ENV_OBS);
            let rets = map.get(ENV_RETURNS).and_then(|t| t.to_vec1::<f64>().ok());
            let lens = map.get(ENV_LENGTHS).and_then(|t| t.to_vec1::<i64>().ok());
            let bits =
                |a: &[f32], b: &[f32]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            obs.is_some_and(|o| bits(&o, &self.last_obs))
                && rets.is_some_and(|r| {
                    r.len() == n && r.iter().zip(self.envs.current_returns()).all(|(x, y)| x.to_bits() == y.to_bits())
                })
                && lens.is_some_and(|l| l.iter().map(|&x| x as u64).eq(self.envs.current_lengths().iter().copied()))
        };
        if !same {
            let seed = derived_env_seed(self.seed, self.steps);
            report.not_exact(if replayed {
                format!(
                    "replaying the logged actions did not bring the envs back to their checkpointed state (an env \
                     that is not deterministic given its seed and actions?): training envs reseeded with {seed}"
                )
            } else {
                format!(
                    "the env state was not saved (more than 256 actions): the episodes in progress are lost and the \
                     training envs reseeded with {seed} (derived from the seed and step)"
                )
            });
            self.reseed_envs(seed)?;
        }
        Ok(())
    }

    /// Loads the replay buffer written by [`Trainer::save_replay`], checking it fits this config.
    fn load_replay(&mut self, path: &Path) -> Result<()> {
        let err = |e: bellman_replay::ReplayError| AgentError::Replay(e.to_string());
        let (cap, obs_len) = (self.cfg.buffer_size, self.obs_dim);
        let check = |c: usize, o: usize, a: usize| -> Result<()> {
            if (c, o, a) != (cap, obs_len, 1) {
                return Err(AgentError::Checkpoint(format!(
                    "replay buffer {} holds capacity {c}, observations of {o} and actions of {a} values; this run \
                     needs buffer_size {cap}, {obs_len} and 1",
                    path.display()
                )));
            }
            Ok(())
        };
        self.replay = match &self.replay {
            Replay::Uniform(_) => {
                let b = FlatReplay::<f32, i64>::load(path).map_err(err)?;
                check(b.capacity(), b.storage().obs_len(), b.storage().action_dim())?;
                Replay::Uniform(b)
            }
            Replay::Prioritized(_) => {
                let b = PrioritizedReplayBuffer::<FlatStorage<f32, i64>>::load(path).map_err(err)?;
                check(b.capacity(), b.storage().obs_len(), b.storage().action_dim())?;
                Replay::Prioritized(b)
            }
        };
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
            self.reseed_envs(self.seed)?;
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
        let mut explore = EvalEpsilon::new(self.cfg.eval_epsilon, self.n_actions, seed);
        let res = evaluate_episodes(env.as_mut(), episodes, seed, |obs| {
            if let Some(a) = explore.explore() {
                return Ok(a);
            }
            self.greedy(obs, &mut act)?;
            Ok(act[0])
        });
        self.eval_env = Some(env);
        res
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        let cfg = serde_json::to_value(&self.cfg).map_err(|e| AgentError::Checkpoint(e.to_string()))?;
        let (train_state, state) = self.train_state()?;
        let mut meta = serde_json::json!({
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
            "train_state": "target network weights (same tensor names), optimizer state (optimizer.<param>.<buffer>, \
                            PyTorch's names), the actions since the envs were seeded and the envs' current state \
                            (resume.*); the replay buffer is saved separately",
        });
        if let (Some(m), serde_json::Value::Object(st)) = (meta.as_object_mut(), state) {
            m.extend(st);
        }
        Ok(Checkpoint { weights: self.online.to_safetensors()?, train_state: Some(train_state), meta })
    }

    /// Restores everything but the replay buffer (see [`Trainer::resume`]): learning waits
    /// `max(learning_starts, batch_size)` steps for the buffer to refill.
    fn restore(&mut self, ckpt: &Checkpoint) -> Result<()> {
        self.resume(ckpt, None).map(|_| ())
    }

    fn resume(&mut self, ckpt: &Checkpoint, replay: Option<&Path>) -> Result<ResumeReport> {
        let mut report = self.restore_state(ckpt)?;
        let saved = ckpt.meta.get("replay_len").and_then(|v| v.as_u64());
        match replay {
            Some(p) => {
                self.load_replay(p)?;
                // A buffer written for another checkpoint (a crash between writing it and the checkpoint's JSON)
                // has another push count.
                if let Some(n) = ckpt.meta.get("replay_pushed").and_then(|v| v.as_u64())
                    && n != self.replay_pushed()
                {
                    return Err(AgentError::Checkpoint(format!(
                        "replay buffer {} holds the first {} transitions of the run, the checkpoint was taken after \
                         {n}: it belongs to another checkpoint",
                        p.display(),
                        self.replay_pushed()
                    )));
                }
            }
            None if saved == Some(0) => {}
            None => {
                let refill = self.cfg.learning_starts.max(self.cfg.batch_size as u64);
                self.learn_gate = self.learn_gate.max(self.steps + refill);
                report.not_exact(format!(
                    "the replay buffer was not saved (checkpoint.save_replay): learning waits {refill} steps \
                     (max(learning_starts, batch_size)) for it to refill"
                ));
            }
        }
        Ok(report)
    }

    fn replay_bytes(&self) -> Option<u64> {
        Some(match &self.replay {
            Replay::Uniform(b) => b.memory_bytes(),
            Replay::Prioritized(b) => b.memory_bytes(),
        } as u64)
    }

    fn save_replay(&self, path: &Path) -> Result<bool> {
        match &self.replay {
            Replay::Uniform(b) => b.save(path),
            Replay::Prioritized(b) => b.save(path),
        }
        .map_err(replay_err)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dqn::optim::OptimizerKind;
    use crate::trainer::VecReporter;

    /// Episodes and metrics without their wall-clock parts.
    fn strip(r: &VecReporter) -> (Vec<EpisodeRecord>, Vec<TrainMetrics>) {
        let e = r.episodes.iter().map(|e| EpisodeRecord { wall_time: 0.0, ..*e }).collect();
        let m = r.metrics.iter().map(|m| TrainMetrics { steps_per_sec: None, ..m.clone() }).collect();
        (e, m)
    }

    fn tmp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("bellman-dqn-{name}-{}.replay", std::process::id()))
    }

    const TOTAL: u64 = 1200;

    fn configs() -> Vec<(&'static str, DqnConfig)> {
        let base = DqnConfig {
            n_envs: 2,
            hidden: vec![16],
            learning_starts: 100,
            batch_size: 16,
            buffer_size: 500,
            train_freq: 4,
            gradient_steps: 2,
            target_update_interval: 50,
            metrics_every: 64,
            total_steps: Some(TOTAL),
            ..DqnConfig::default()
        };
        let per = DqnConfig {
            prioritized: true,
            n_step: 3,
            double_dqn: true,
            optimizer: OptimizerKind::Rmsprop,
            rmsprop_momentum: 0.5,
            learning_rate: 1e-3,
            tau: 0.5,
            ..base.clone()
        };
        vec![("uniform-adam", base), ("per-nstep-rmsprop", per)]
    }

    /// Train to `k` (mid-episode), checkpoint with the replay buffer, resume in a fresh trainer built with
    /// another seed, train on: the episodes, metrics and final weights are those of the uninterrupted run.
    #[test]
    fn resume_mid_episode_is_bit_identical_to_the_uninterrupted_run() {
        let env = EnvSetup::new("CartPole-v1");
        for (name, cfg) in configs() {
            let mut full = DqnTrainer::new(&cfg, &env, 3, "cpu").unwrap();
            let mut rf = VecReporter::default();
            full.train(TOTAL, &mut rf).unwrap();

            let mut part = DqnTrainer::new(&cfg, &env, 3, "cpu").unwrap();
            let mut rp = VecReporter::default();
            part.train(300, &mut rp).unwrap();
            part.train(557, &mut rp).unwrap();
            assert!(part.envs.current_lengths().iter().all(|&l| l > 0), "{name}: the checkpoint is mid-episode");
            assert!(part.running.updates > 0, "{name}: a metrics period is in progress");
            let ck = part.checkpoint().unwrap();
            let path = tmp_path(name);
            assert!(part.save_replay(&path).unwrap());
            drop(part);

            let mut resumed = DqnTrainer::new(&cfg, &env, 99, "cpu").unwrap();
            let report = resumed.resume(&ck, Some(&path)).unwrap();
            assert!(report.exact, "{name}: {report}");
            resumed.train(TOTAL, &mut rp).unwrap();
            assert_eq!(strip(&rp), strip(&rf), "{name}");
            assert_eq!(resumed.checkpoint().unwrap().weights, full.checkpoint().unwrap().weights, "{name}");
            assert_eq!(resumed.updates_done(), full.updates_done());

            // Without the replay buffer the resume says it is not exact, and it is not: learning pauses.
            let mut approx = DqnTrainer::new(&cfg, &env, 3, "cpu").unwrap();
            let report = approx.resume(&ck, None).unwrap();
            assert!(!report.exact && report.to_string().contains("replay buffer was not saved"), "{report}");
            let mut ra = VecReporter::default();
            approx.train(TOTAL, &mut ra).unwrap();
            assert_eq!(approx.steps_done(), TOTAL);
            assert_ne!(approx.checkpoint().unwrap().weights, full.checkpoint().unwrap().weights, "{name}");
            std::fs::remove_file(&path).unwrap();
        }
    }

    /// `eval_epsilon`: 0 is greedy, 1 is the uniform random policy (CartPole's random returns, about 22 on
    /// average), and the same seed gives the same evaluation.
    #[test]
    fn eval_epsilon_mixes_random_actions_reproducibly() {
        let env = EnvSetup::new("CartPole-v1");
        let with = |eps: f64| {
            let cfg = DqnConfig { eval_epsilon: eps, learning_starts: 1_000_000, ..configs().remove(0).1 };
            let mut t = DqnTrainer::new(&cfg, &env, 5, "cpu").unwrap();
            t.train(200, &mut crate::trainer::NullReporter).unwrap();
            t
        };
        let (mut greedy, mut random) = (with(0.0), with(1.0));
        let g = greedy.evaluate(20, 1000).unwrap();
        let r1 = random.evaluate(20, 1000).unwrap();
        let r2 = random.evaluate(20, 1000).unwrap();
        assert_eq!(r1.returns, r2.returns, "same seed, same evaluation");
        assert_ne!(r1.returns, g.returns);
        // Random play on CartPole-v1 lasts 22 steps on average (std about 12): 20 episodes average well
        // within [12, 40] (a bound more than 5 standard errors wide on each side).
        let mean = r1.mean();
        assert!((12.0..40.0).contains(&mean), "random-policy mean {mean}");
    }

    #[test]
    fn bad_resume_data_is_an_error_naming_it() {
        let env = EnvSetup::new("CartPole-v1");
        let cfg = configs().remove(0).1;
        let mut a = DqnTrainer::new(&cfg, &env, 3, "cpu").unwrap();
        a.train(301, &mut crate::trainer::NullReporter).unwrap();
        let ck = a.checkpoint().unwrap();
        let mut b = DqnTrainer::new(&cfg, &env, 3, "cpu").unwrap();
        let mut bad = ck.clone();
        bad.meta["rng"]["explore"]["state"] = serde_json::json!("0xnothex");
        let e = b.resume(&bad, None).unwrap_err().to_string();
        assert!(e.contains("0xnothex"), "{e}");
        let mut bad = ck.clone();
        bad.meta["env_log"]["vector_steps"] = serde_json::json!(3);
        let e = b.resume(&bad, None).unwrap_err().to_string();
        assert!(e.contains("action log") && e.contains("3 vector steps"), "{e}");
        let mut bad = ck.clone();
        bad.meta["optimizer"]["kind"] = serde_json::json!("rmsprop");
        let e = b.resume(&bad, None).unwrap_err().to_string();
        assert!(e.contains("rmsprop optimiser state"), "{e}");
        // a replay file of another capacity
        let path = tmp_path("other-capacity");
        let small = DqnConfig { buffer_size: 64, ..cfg.clone() };
        let mut c = DqnTrainer::new(&small, &env, 3, "cpu").unwrap();
        c.train(100, &mut crate::trainer::NullReporter).unwrap();
        c.save_replay(&path).unwrap();
        let e = b.resume(&ck, Some(&path)).unwrap_err().to_string();
        assert!(e.contains("capacity 64") && e.contains("buffer_size 500"), "{e}");
        // the buffer of another checkpoint of the same run
        a.train(401, &mut crate::trainer::NullReporter).unwrap();
        a.save_replay(&path).unwrap();
        let e = b.resume(&ck, Some(&path)).unwrap_err().to_string();
        assert!(e.contains("first 402 transitions") && e.contains("after 302"), "{e}");
        std::fs::remove_file(&path).unwrap();
        // an older checkpoint (weights, target, counters): restores, says what it lacks, trains on
        let mut old = ck.clone();
        old.meta.as_object_mut().unwrap().remove("state_version");
        let r = b.resume(&old, None).unwrap();
        assert!(!r.exact && r.to_string().contains("older format"), "{r}");
        b.train(400, &mut crate::trainer::NullReporter).unwrap();
    }
}
