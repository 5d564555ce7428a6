//! Ape-X DQN: DQN's learner (the same networks, loss, optimiser and replay as [`crate::dqn`]) fed by
//! [`ActorPool`] actor threads, each with its own env, a [`CpuMlp`] copy of the online network and its own
//! exploration rate.
//!
//! * Actors apply n-step returns ([`bellman_replay::NStep`]) and compute each transition's initial priority
//!   `|r + discount * max_a Q(s', a) - Q(s, a)|` with their own copy of the network (Horgan et al. 2018,
//!   algorithm 1), then send batches of [`ApexConfig::send_batch`] transitions.
//! * The learner inserts them (with their priorities into a prioritised buffer when `prioritized = true`),
//!   updates under the [`RateLimiter`](super::RateLimiter), and publishes the online weights every
//!   [`ApexConfig::publish_every`] updates.
//! * Rate: by default the learner samples `batch_size * gradient_steps / train_freq` transitions per inserted
//!   one, the ratio of the single-process run with the same config, so `--actors N` changes who collects the
//!   data, not how hard it is replayed.
//!
//! ```no_run
//! use bellman_agents::actors::{ApexConfig, ApexDqnTrainer};
//! use bellman_agents::dqn::DqnConfig;
//! use bellman_agents::trainer::{EnvSetup, NullReporter, Trainer};
//! let cfg = DqnConfig { total_steps: Some(50_000), ..DqnConfig::default() };
//! let mut agent =
//!     ApexDqnTrainer::new(&cfg, &ApexConfig::default(), 2, &EnvSetup::new("CartPole-v1"), 0, "cpu").unwrap();
//! agent.train(50_000, &mut NullReporter).unwrap();
//! println!("{}", agent.evaluate(20, 1000).unwrap().mean());
//! ```
use std::time::Instant;

use bellman_envs::{ActionValue, DynEnv, Space};
use bellman_replay::{Batch, FlatReplay, FlatStorage, NStep, PrioritizedReplayBuffer, ReplayBuffer, Transition};
use candle_core::{DType, Device};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};

use super::{Actor, ActorBatch, ActorEpisode, ActorPool, Learner, Payload, PoolConfig, RateLimit, apex_epsilon};
use crate::dqn::learn::{UpdateOut, UpdateScratch, td_update};
use crate::dqn::network::{Arch, CpuMlp, NetSpec, QNetwork, argmax, terr};
use crate::dqn::optim::{Optim, OptimizerKind};
use crate::dqn::{DqnConfig, EnvFactory, device};
use crate::error::{AgentError, Result};
use crate::trainer::{Checkpoint, EnvSetup, EvalResult, Reporter, TrainMetrics, Trainer, evaluate_episodes};

// Stream constants that split one seed into independent generators (arbitrary odd numbers; the init stream is
// DQN's, so that the initial weights match the single-process run's).
const INIT_STREAM: u64 = 0x9E37_79B9_7F4A_7C15;
const ACTOR_STREAM: u64 = 0xA076_1D64_78BD_642F;
const REPLAY_STREAM: u64 = 0x8CB9_2BA7_2F3D_8DD7;

/// How actors explore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorEpsilon {
    /// Fixed per-actor rates `0.4^(1 + 7 i / (N - 1))` (Ape-X, Horgan et al. 2018, section 4.1).
    Apex,
    /// Every actor follows the config's linear schedule (evaluated at its estimate of the global step count:
    /// its own steps times the number of actors), with uniform random actions before `learning_starts`.
    Schedule,
}

/// Settings of the actor pool for DQN (the `[agent.apex]` table); `None` values are derived from the DQN config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApexConfig {
    /// Exploration of the actors (default `"apex"`; on CartPole it solved 5 of 5 seeds, `"schedule"` 3 of 5;
    /// docs/BENCHMARKS.md, "Parallel actors").
    pub epsilon: ActorEpsilon,
    /// Transitions per message (default 16). Ape-X uses 50 (its local buffer size), but when the learner is the
    /// bottleneck every transition buffered between actors and learner adds policy lag: with 50 x 16 buffered,
    /// CartPole's lag was about 450 updates and `--actors 2` did not solve seed 0 (docs/BENCHMARKS.md).
    pub send_batch: usize,
    /// Channel capacity in messages (default 1, for the same reason).
    pub channel_capacity: usize,
    /// Learner updates between weight publications (default 1: a 64x64 MLP copies in microseconds, and on
    /// CartPole 10 solved 2 of 5 seeds where 1 solved 5 of 5; docs/BENCHMARKS.md, "Parallel actors").
    pub publish_every: u64,
    /// Sampled transitions per inserted one; default `batch_size * gradient_steps / train_freq`.
    pub samples_per_insert: Option<f64>,
    /// Half-width of the rate band in samples; default `max(batch_size * gradient_steps, (batch_size +
    /// samples_per_insert) / 2)`: one single-process training phase of slack.
    pub error_buffer: Option<f64>,
    /// Actors wait when the learner falls behind (default true).
    pub block_actors: bool,
    /// The learner waits when it runs ahead of the data (default true).
    pub block_learner: bool,
}

impl Default for ApexConfig {
    fn default() -> Self {
        ApexConfig {
            epsilon: ActorEpsilon::Apex,
            send_batch: 16,
            channel_capacity: 1,
            publish_every: 1,
            samples_per_insert: None,
            error_buffer: None,
            block_actors: true,
            block_learner: true,
        }
    }
}

impl ApexConfig {
    /// The pool configuration for a DQN config.
    pub fn pool_config(&self, cfg: &DqnConfig) -> PoolConfig {
        let sampled_per_phase = (cfg.batch_size * cfg.gradient_steps) as f64;
        let spi = self.samples_per_insert.unwrap_or(sampled_per_phase / cfg.train_freq as f64);
        let eb = self.error_buffer.unwrap_or(sampled_per_phase.max((cfg.batch_size as f64 + spi) / 2.0));
        PoolConfig {
            send_batch: self.send_batch,
            channel_capacity: self.channel_capacity,
            publish_every: self.publish_every,
            rate: RateLimit {
                samples_per_insert: spi,
                min_size_to_sample: cfg.learning_starts.max(cfg.batch_size as u64),
                error_buffer: eb,
                block_actors: self.block_actors,
                block_learner: self.block_learner,
            },
            metrics_every: cfg.metrics_every,
            shutdown_timeout_ms: 5000,
        }
    }
}

/// A batch of flat transitions (the [`Payload`] of DQN's actors): filling it allocates nothing once its vectors
/// have grown to the batch size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlatTransitions {
    /// Observation size.
    pub obs_dim: usize,
    /// Observations, `len * obs_dim`.
    pub obs: Vec<f32>,
    /// Next observations (the final one when the episode ended there), `len * obs_dim`.
    pub next_obs: Vec<f32>,
    /// Actions.
    pub actions: Vec<i64>,
    /// Rewards (n-step discounted sums).
    pub rewards: Vec<f32>,
    /// Terminated flags.
    pub terminated: Vec<bool>,
    /// Truncated flags.
    pub truncated: Vec<bool>,
    /// Bootstrap discounts (`gamma^m`).
    pub discounts: Vec<f32>,
}

impl FlatTransitions {
    /// Row `i` as a replay [`Transition`].
    pub fn row(&self, i: usize) -> Transition<'_, f32, i64> {
        let d = self.obs_dim;
        Transition {
            obs: &self.obs[i * d..(i + 1) * d],
            action: &self.actions[i..i + 1],
            reward: self.rewards[i],
            next_obs: &self.next_obs[i * d..(i + 1) * d],
            terminated: self.terminated[i],
            truncated: self.truncated[i],
            discount: self.discounts[i],
        }
    }
    fn push(&mut self, t: &Transition<'_, f32, i64>) {
        self.obs.extend_from_slice(t.obs);
        self.next_obs.extend_from_slice(t.next_obs);
        self.actions.push(t.action[0]);
        self.rewards.push(t.reward);
        self.terminated.push(t.terminated);
        self.truncated.push(t.truncated);
        self.discounts.push(t.discount);
    }
}

impl Payload for FlatTransitions {
    fn len(&self) -> usize {
        self.actions.len()
    }
    fn clear(&mut self) {
        self.obs.clear();
        self.next_obs.clear();
        self.actions.clear();
        self.rewards.clear();
        self.terminated.clear();
        self.truncated.clear();
        self.discounts.clear();
    }
}

/// One actor: an env, a CPU copy of the online network, n-step accumulation and priorities.
pub struct DqnActor {
    id: usize,
    env: Box<dyn DynEnv>,
    net: CpuMlp,
    nstep: NStep<f32, i64>,
    rng: Pcg64,
    epsilon: ActorEpsilon,
    fixed_eps: f64,
    cfg: DqnConfig,
    n_actors: u64,
    n_actions: usize,
    seed: u64,
    obs: Vec<f32>,
    next_obs: Vec<f32>,
    next_q: Vec<f32>,
    q_obs: Vec<f32>,
    q_valid: bool,
    started: bool,
    steps: u64,
    ep_ret: f64,
    ep_len: u64,
    send_batch: usize,
    obs_dim: usize,
}

impl std::fmt::Debug for DqnActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DqnActor").field("id", &self.id).field("steps", &self.steps).finish_non_exhaustive()
    }
}

impl DqnActor {
    /// The exploration rate at this actor's current step.
    pub fn epsilon(&self) -> f64 {
        match self.epsilon {
            ActorEpsilon::Apex => self.fixed_eps,
            ActorEpsilon::Schedule => self.cfg.epsilon(self.steps * self.n_actors),
        }
    }
}

impl Actor for DqnActor {
    type Weights = CpuMlp;
    type Payload = FlatTransitions;

    fn new_payload(&self) -> FlatTransitions {
        let (n, d) = (self.send_batch + self.nstep.n(), self.obs_dim);
        FlatTransitions {
            obs_dim: d,
            obs: Vec::with_capacity(n * d),
            next_obs: Vec::with_capacity(n * d),
            actions: Vec::with_capacity(n),
            rewards: Vec::with_capacity(n),
            terminated: Vec::with_capacity(n),
            truncated: Vec::with_capacity(n),
            discounts: Vec::with_capacity(n),
        }
    }

    fn load_weights(&mut self, w: &CpuMlp, _version: u64) -> Result<()> {
        self.net.clone_from(w);
        self.q_valid = false;
        Ok(())
    }

    fn step(&mut self, b: &mut ActorBatch<FlatTransitions>) -> Result<()> {
        if !self.started {
            self.env.reset_into(Some(self.seed), &mut self.obs)?;
            self.started = true;
            self.q_valid = false;
        }
        let random =
            matches!(self.epsilon, ActorEpsilon::Schedule) && self.steps * self.n_actors < self.cfg.learning_starts;
        let eps = self.epsilon();
        // Q(s) is needed for the priority in any case; after a non-final step it is the previous step's Q(s').
        if !self.q_valid {
            self.q_obs.copy_from_slice(self.net.q_values(&self.obs));
        }
        let a = if random || self.rng.random::<f64>() < eps {
            self.rng.random_range(0..self.n_actions)
        } else {
            argmax(&self.q_obs)
        };
        let out = self.env.step_into(ActionValue::Discrete(a), &mut self.next_obs)?;
        self.steps += 1;
        b.env_steps += 1;
        self.ep_ret += out.reward;
        self.ep_len += 1;
        self.next_q.copy_from_slice(self.net.q_values(&self.next_obs));
        let t = Transition {
            obs: &self.obs,
            action: &[a as i64],
            reward: out.reward as f32,
            next_obs: &self.next_obs,
            terminated: out.terminated,
            truncated: out.truncated,
            discount: self.cfg.gamma as f32,
        };
        let one_step = self.nstep.n() == 1;
        let (net, q_obs, next_q) = (&mut self.net, &self.q_obs, &self.next_q);
        let max = |q: &[f32]| q.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sink = |_env: usize, t: &Transition<'_, f32, i64>| -> bellman_replay::Result<()> {
            // Ape-X initial priority: |n-step TD error| under the actor's own network (Horgan et al. 2018, alg. 1).
            // One-step transitions reuse the Q-values computed for acting; n-step ones start further back.
            let (q_sa, next_v) = if one_step {
                (q_obs[t.action[0] as usize], max(next_q))
            } else {
                let next_v = max(net.q_values(t.next_obs));
                (net.q_values(t.obs)[t.action[0] as usize], next_v)
            };
            let factor = if t.terminated { 0.0 } else { t.discount };
            let p = (t.reward + factor * next_v - q_sa).abs();
            b.payload.push(t);
            b.priorities.push(if p.is_finite() { p } else { 0.0 });
            Ok(())
        };
        self.nstep.push(0, &t, &mut sink).map_err(|e| AgentError::Replay(e.to_string()))?;
        if out.terminated || out.truncated {
            b.episodes.push(ActorEpisode { ret: self.ep_ret, len: self.ep_len });
            self.ep_ret = 0.0;
            self.ep_len = 0;
            self.env.reset_into(None, &mut self.obs)?;
            self.q_valid = false;
        } else {
            std::mem::swap(&mut self.obs, &mut self.next_obs);
            std::mem::swap(&mut self.q_obs, &mut self.next_q);
            self.q_valid = true;
        }
        Ok(())
    }
}

enum Replay {
    Uniform(FlatReplay<f32, i64>),
    Prioritized(PrioritizedReplayBuffer<FlatStorage<f32, i64>>),
}

impl Replay {
    fn len(&self) -> usize {
        match self {
            Replay::Uniform(r) => r.len(),
            Replay::Prioritized(r) => r.len(),
        }
    }
    fn capacity(&self) -> usize {
        match self {
            Replay::Uniform(r) => r.capacity(),
            Replay::Prioritized(r) => r.capacity(),
        }
    }
}

fn replay_err(e: bellman_replay::ReplayError) -> AgentError {
    AgentError::Replay(e.to_string())
}

/// DQN's learner side: replay, networks, optimiser.
struct DqnLearner {
    cfg: DqnConfig,
    device: Device,
    online: QNetwork,
    target: QNetwork,
    optim: Optim,
    replay: Replay,
    rng: Pcg64,
    batch: Batch<f32, i64>,
    scratch: UpdateScratch,
    td: Vec<f32>,
    cpu: CpuMlp,
    updates: u64,
    target_every: u64,
    loss_sum: f64,
    q_sum: f64,
    since: u64,
}

impl Learner for DqnLearner {
    type Weights = CpuMlp;
    type Payload = FlatTransitions;

    fn sample_batch(&self) -> usize {
        self.cfg.batch_size
    }

    fn insert(&mut self, b: &ActorBatch<FlatTransitions>, i: usize) -> Result<bool> {
        let full = self.replay.len() == self.replay.capacity();
        let t = b.payload.row(i);
        match &mut self.replay {
            Replay::Uniform(r) => r.push(&t).map_err(replay_err)?,
            Replay::Prioritized(r) => {
                // Raw priority |delta| + eps, as the buffer's push_with_priority expects (Schaul et al. 2016).
                r.push_with_priority(0, &t, b.priorities[i] as f64 + self.cfg.per_eps).map_err(replay_err)?
            }
        };
        Ok(full)
    }

    fn update(&mut self, env_steps: u64) -> Result<()> {
        let bs = self.cfg.batch_size;
        match &self.replay {
            Replay::Uniform(r) => r.sample(bs, &mut self.rng, &mut self.batch).map_err(replay_err)?,
            Replay::Prioritized(r) => {
                let beta = self.cfg.per_beta_at(env_steps);
                r.sample(bs, beta, &mut self.rng, &mut self.batch).map_err(replay_err)?
            }
        }
        let per = matches!(self.replay, Replay::Prioritized(_));
        let vars = self.online.vars();
        // The same TD update as the single-process trainer (crate::dqn::learn).
        let UpdateOut { loss, q_taken, targets } = td_update(
            &self.cfg,
            &self.online,
            &self.target,
            &mut self.optim,
            &vars,
            &self.batch,
            per,
            &mut self.scratch,
            &self.device,
            (env_steps, self.updates),
        )?;
        self.updates += 1;
        let l = loss.to_dtype(DType::F64).and_then(|t| t.to_scalar::<f64>()).map_err(terr)?;
        if !l.is_finite() {
            return Err(AgentError::Diverged(format!("loss is {l} at step {env_steps}")));
        }
        self.loss_sum += l;
        let q_taken = q_taken.detach();
        self.q_sum +=
            q_taken.mean_all().and_then(|t| t.to_dtype(DType::F64)).and_then(|t| t.to_scalar::<f64>()).map_err(terr)?;
        self.since += 1;
        if let Replay::Prioritized(r) = &mut self.replay {
            let td = (q_taken - &targets).and_then(|t| t.to_vec1::<f32>()).map_err(terr)?;
            self.td.clear();
            self.td.extend_from_slice(&td);
            r.update_priorities(&self.batch.indices, &self.td).map_err(replay_err)?;
        }
        if self.updates.is_multiple_of(self.target_every) {
            if self.cfg.tau >= 1.0 {
                self.target.copy_from(&self.online)?;
            } else {
                self.target.polyak_from(&self.online, self.cfg.tau)?;
            }
        }
        Ok(())
    }

    fn weights(&mut self) -> Result<CpuMlp> {
        self.cpu.sync_from(&self.online)?;
        Ok(self.cpu.clone())
    }

    fn metrics(&mut self, env_steps: u64) -> Result<TrainMetrics> {
        let n = self.since;
        let (loss, mean_q) =
            if n > 0 { (Some(self.loss_sum / n as f64), Some(self.q_sum / n as f64)) } else { (None, None) };
        self.loss_sum = 0.0;
        self.q_sum = 0.0;
        self.since = 0;
        Ok(TrainMetrics {
            step: env_steps,
            loss,
            mean_q,
            epsilon: None,
            steps_per_sec: None,
            extra: vec![("replay_size".into(), self.replay.len() as f64)],
        })
    }
}

/// DQN with `N` actor threads (Ape-X style), driven by the runner through [`Trainer`].
pub struct ApexDqnTrainer {
    cfg: DqnConfig,
    apex: ApexConfig,
    seed: u64,
    make_env: EnvFactory,
    learner: DqnLearner,
    actors: Option<Vec<DqnActor>>,
    pool: Option<ActorPool<CpuMlp, FlatTransitions>>,
    eval_env: Option<Box<dyn DynEnv>>,
    eval_net: CpuMlp,
    n_actions: usize,
    restored_steps: u64,
    restored_episodes: u64,
    start: Option<Instant>,
}

impl std::fmt::Debug for ApexDqnTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApexDqnTrainer")
            .field("cfg", &self.cfg)
            .field("apex", &self.apex)
            .field("seed", &self.seed)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl ApexDqnTrainer {
    /// Builds Ape-X DQN with `actors` actor threads for the registry env `env`, seeded with `seed`; the learner
    /// runs on `device` (`cpu`, `cuda`, `cuda:N`), the actors on the CPU.
    pub fn new(
        cfg: &DqnConfig,
        apex: &ApexConfig,
        actors: usize,
        env: &EnvSetup,
        seed: u64,
        device: &str,
    ) -> Result<Self> {
        let opts = env.parsed_options()?;
        let id = env.id.clone();
        bellman_envs::make_with(&id, &opts)?;
        let factory: EnvFactory = Box::new(move || Ok(bellman_envs::make_with(&id, &opts)?));
        Self::with_env_factory(cfg, apex, actors, factory, seed, device)
    }

    /// Builds Ape-X DQN for envs made by `make_env`.
    pub fn with_env_factory(
        cfg: &DqnConfig,
        apex: &ApexConfig,
        n_actors: usize,
        make_env: EnvFactory,
        seed: u64,
        device: &str,
    ) -> Result<Self> {
        cfg.validate()?;
        if !(1..=1024).contains(&n_actors) {
            return Err(AgentError::Config(format!("actors = {n_actors}: must be in 1..=1024")));
        }
        let pool_cfg = apex.pool_config(cfg);
        pool_cfg.validate(cfg.batch_size)?;
        if pool_cfg.rate.min_size_to_sample > cfg.buffer_size as u64 {
            return Err(AgentError::Config(format!(
                "learning_starts = {}: must be <= buffer_size = {} with actors (the learner samples only after \
                 that many inserts)",
                cfg.learning_starts, cfg.buffer_size
            )));
        }
        if cfg.n_envs != 1 {
            return Err(AgentError::Unsupported(format!(
                "n_envs = {} with actors: each actor steps one env; use actors = N instead",
                cfg.n_envs
            )));
        }
        let device = device::parse_device(device)?;
        let probe = make_env()?;
        let n_actions = match probe.action_space() {
            Space::Discrete(n) => *n,
            other => {
                return Err(AgentError::Unsupported(format!(
                    "DQN needs a discrete action space, got {other}; use an agent for continuous actions"
                )));
            }
        };
        let obs_shape = probe.observation_space().shape().to_vec();
        let obs_shape = if obs_shape.is_empty() { vec![1] } else { obs_shape };
        let obs_dim = probe.observation_space().flat_dim().max(1);
        if cfg.network != Arch::Mlp {
            return Err(AgentError::Unsupported(
                "actors act with a CPU copy of an MLP network; network = \"nature_cnn\" is not supported yet".into(),
            ));
        }
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
        let cpu = CpuMlp::from_network(&online)?;
        let optim = match cfg.optimizer {
            OptimizerKind::Adam => Optim::adam(online.vars(), cfg.learning_rate, cfg.adam_eps)?,
            OptimizerKind::Rmsprop => Optim::rmsprop(online.vars(), cfg.rmsprop_params())?,
        };
        let storage = FlatStorage::new(cfg.buffer_size, &obs_shape, 1).map_err(replay_err)?;
        let replay = if cfg.prioritized {
            Replay::Prioritized(PrioritizedReplayBuffer::new(storage, cfg.per_alpha, cfg.per_eps).map_err(replay_err)?)
        } else {
            Replay::Uniform(ReplayBuffer::from_storage(storage))
        };
        // SB3 updates the target every `target_update_interval` env steps while training in phases of
        // `gradient_steps` updates every `train_freq` steps: in updates, that is this many.
        let target_every = cfg.target_update_interval.div_ceil(cfg.train_freq).max(1) * cfg.gradient_steps as u64;
        let learner = DqnLearner {
            cfg: cfg.clone(),
            device,
            online,
            target,
            optim,
            replay,
            rng: Pcg64::seed_from_u64(seed ^ REPLAY_STREAM),
            batch: Batch::new(),
            scratch: UpdateScratch::default(),
            td: Vec::new(),
            cpu: cpu.clone(),
            updates: 0,
            target_every,
            loss_sum: 0.0,
            q_sum: 0.0,
            since: 0,
        };
        let mut actors = Vec::with_capacity(n_actors);
        for i in 0..n_actors {
            let env = make_env()?;
            actors.push(DqnActor {
                id: i,
                env,
                net: cpu.clone(),
                nstep: NStep::new(cfg.n_step, cfg.gamma, 1, obs_dim, 1).map_err(replay_err)?,
                rng: Pcg64::seed_from_u64((seed ^ ACTOR_STREAM).wrapping_add(i as u64)),
                epsilon: apex.epsilon,
                fixed_eps: apex_epsilon(i, n_actors),
                cfg: cfg.clone(),
                n_actors: n_actors as u64,
                n_actions,
                seed: seed + i as u64,
                obs: vec![0.0; obs_dim],
                next_obs: vec![0.0; obs_dim],
                next_q: vec![0.0; n_actions],
                q_obs: vec![0.0; n_actions],
                q_valid: false,
                started: false,
                steps: 0,
                ep_ret: 0.0,
                ep_len: 0,
                send_batch: apex.send_batch,
                obs_dim,
            });
        }
        let eval_net = cpu;
        Ok(ApexDqnTrainer {
            cfg: cfg.clone(),
            apex: apex.clone(),
            seed,
            make_env,
            learner,
            actors: Some(actors),
            pool: None,
            eval_env: Some(probe),
            eval_net,
            n_actions,
            restored_steps: 0,
            restored_episodes: 0,
            start: None,
        })
    }

    /// Number of actor threads.
    pub fn num_actors(&self) -> usize {
        match (&self.pool, &self.actors) {
            (Some(p), _) => p.num_actors(),
            (None, Some(a)) => a.len(),
            (None, None) => 0,
        }
    }

    /// The protocol counters (zero before training starts).
    pub fn counters(&self) -> super::CounterSnapshot {
        self.pool.as_ref().map(|p| p.snapshot()).unwrap_or_default()
    }

    /// Gradient updates done so far.
    pub fn updates_done(&self) -> u64 {
        self.learner.updates
    }

    /// Stops the actors and returns the final counters (training cannot continue afterwards).
    pub fn shutdown(&mut self) -> Result<super::CounterSnapshot> {
        match self.pool.as_mut() {
            Some(p) => p.shutdown(),
            None => Ok(super::CounterSnapshot::default()),
        }
    }

    fn eval_env(&mut self) -> Result<&mut Box<dyn DynEnv>> {
        if self.eval_env.is_none() {
            self.eval_env = Some((self.make_env)()?);
        }
        Ok(self.eval_env.as_mut().expect("just set"))
    }
}

impl Drop for ApexDqnTrainer {
    fn drop(&mut self) {
        if let Some(p) = self.pool.as_mut() {
            let _ = p.shutdown();
        }
    }
}

impl Trainer for ApexDqnTrainer {
    fn steps_done(&self) -> u64 {
        self.pool.as_ref().map_or(self.restored_steps, |p| p.env_steps())
    }

    fn train(&mut self, until: u64, reporter: &mut dyn Reporter) -> Result<()> {
        if self.pool.is_none() {
            let actors = self.actors.take().ok_or_else(|| {
                AgentError::Config("the actors of this trainer were lost after a failed start".into())
            })?;
            let initial = self.learner.weights()?;
            let pool_cfg = self.apex.pool_config(&self.cfg);
            let mut pool = ActorPool::spawn(actors, initial, &pool_cfg, self.cfg.batch_size)?;
            pool.resume_from(self.restored_steps, self.restored_episodes);
            self.pool = Some(pool);
            self.start = Some(Instant::now());
        }
        let pool = self.pool.as_mut().expect("just set");
        pool.run(&mut self.learner, until, reporter)
    }

    fn evaluate(&mut self, episodes: usize, seed: u64) -> Result<EvalResult> {
        self.eval_net.sync_from(&self.learner.online)?;
        self.eval_env()?;
        let net = &mut self.eval_net;
        let env = self.eval_env.as_mut().ok_or_else(|| AgentError::Unsupported("no evaluation env".into()))?;
        evaluate_episodes(env.as_mut(), episodes, seed, |obs| Ok(net.act(obs)))
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        let cfg = serde_json::to_value(&self.cfg).map_err(|e| AgentError::Checkpoint(e.to_string()))?;
        let c = self.counters();
        Ok(Checkpoint {
            weights: self.learner.online.to_safetensors()?,
            train_state: Some(self.learner.target.to_safetensors()?),
            meta: serde_json::json!({
                "algorithm": "dqn",
                "actors": self.num_actors(),
                "seed": self.seed,
                "steps": self.steps_done(),
                "episodes": self.pool.as_ref().map_or(self.restored_episodes, |p| p.episodes()),
                "updates": self.learner.updates,
                "n_actions": self.n_actions,
                "obs_shape": self.learner.online.spec().obs_shape,
                "config": cfg,
                "counters": {"sent": c.sent, "received": c.received, "inserted": c.inserted, "evicted": c.evicted},
                "train_state": "target network weights (same tensor names); optimiser moments and the replay \
                                buffer are not saved",
            }),
        })
    }

    fn restore(&mut self, ckpt: &Checkpoint) -> Result<()> {
        self.learner.online.load_safetensors(&ckpt.weights)?;
        match &ckpt.train_state {
            Some(t) => self.learner.target.load_safetensors(t)?,
            None => self.learner.target.copy_from(&self.learner.online)?,
        }
        let w = self.learner.weights()?;
        self.eval_net.clone_from(&w);
        if let Some(actors) = self.actors.as_mut() {
            for a in actors {
                a.net.clone_from(&w);
            }
        }
        if let Some(p) = self.pool.as_mut() {
            p.publish(w);
        }
        let get = |k: &str| ckpt.meta.get(k).and_then(|v| v.as_u64());
        if let Some(u) = get("updates") {
            self.learner.updates = u;
        }
        self.restored_steps = get("steps").unwrap_or(0);
        self.restored_episodes = get("episodes").unwrap_or(0);
        if let Some(p) = self.pool.as_mut() {
            p.resume_from(self.restored_steps, self.restored_episodes);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached Q-values give the same initial priorities as recomputing `|r + g max Q(s') - Q(s, a)|`.
    #[test]
    fn one_step_priorities_match_a_fresh_computation() {
        let cfg = DqnConfig { hidden: vec![8], learning_starts: 0, ..DqnConfig::default() };
        let mut t =
            ApexDqnTrainer::new(&cfg, &ApexConfig::default(), 2, &EnvSetup::new("CartPole-v1"), 5, "cpu").unwrap();
        let mut actor = t.actors.take().unwrap().remove(0);
        let mut b = ActorBatch::new(actor.new_payload());
        for _ in 0..300 {
            actor.step(&mut b).unwrap();
        }
        assert_eq!(b.env_steps, 300);
        assert_eq!(b.len(), 300);
        assert!(!b.episodes.is_empty(), "CartPole with epsilon 0.4 ends episodes within 300 steps");
        assert_eq!(b.episodes.iter().map(|e| e.len).sum::<u64>(), 300 - actor.ep_len);
        let mut net = actor.net.clone();
        for i in 0..b.len() {
            let r = b.payload.row(i);
            let next_v = net.q_values(r.next_obs).iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let q_sa = net.q_values(r.obs)[r.action[0] as usize];
            let f = if r.terminated { 0.0 } else { r.discount };
            let p = (r.reward + f * next_v - q_sa).abs();
            assert!((p - b.priorities[i]).abs() <= 1e-6 * p.max(1.0), "row {i}: {p} vs {}", b.priorities[i]);
            if i + 1 < b.len() && !(r.terminated || r.truncated) {
                assert_eq!(r.next_obs, b.payload.row(i + 1).obs, "row {i}: consecutive transitions chain");
            }
        }
    }
}
