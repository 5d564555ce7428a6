//! Ape-X DQN: DQN's learner (the same networks, loss, optimiser and replay as [`crate::dqn`]) fed by
//! [`ActorPool`](super::ActorPool) actor threads, each with its own env, a [`CpuMlp`] copy of the online network and its own
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
use std::path::Path;

use bellman_envs::{ActionValue, DynEnv, Space};
use bellman_replay::{FlatStorage, NStep, Transition};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};

use super::learner::{ACTOR_STREAM, LearnerCore, ReseedActor, replay_err};
use super::run::ApexRun;
use super::{Actor, ActorBatch, ActorEpisode, Learner, Payload, PoolConfig, RateLimit, apex_epsilon};
use crate::dqn::network::{Arch, CpuMlp, argmax};
use crate::dqn::{DqnConfig, EnvFactory, device};
use crate::error::{AgentError, Result};
use crate::trainer::{
    Checkpoint, EnvSetup, EvalEpsilon, EvalResult, Reporter, ResumeReport, TrainMetrics, Trainer, evaluate_episodes,
};

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
    /// Transitions per message (default 64; Ape-X uses 50, its local buffer size). Actors claim room in the rate
    /// limiter's band before they act (`actors::admission`), so a learner that falls behind holds them back
    /// before they collect data and larger messages add little policy lag. On CartPole a message costs the actor
    /// about 1-2 us of channel work (most of it cache misses on the shared channel state), 1.3-4% of its busy time
    /// with 64 transitions, 2.3-6% with 32 (docs/BENCHMARKS.md, "Parallel actors").
    pub send_batch: usize,
    /// Channel capacity in messages (default 64: the learner polls instead of blocking while it waits for data,
    /// so the channel must hold what arrives during one of its short sleeps; with `block_actors` the band, not
    /// the channel, bounds what is in flight).
    pub channel_capacity: usize,
    /// Learner updates between weight publications (default 1: a 64x64 MLP copies in microseconds, and on
    /// CartPole 10 solved 2 of 5 seeds where 1 solved 5 of 5; docs/BENCHMARKS.md, "Parallel actors").
    pub publish_every: u64,
    /// Sampled transitions per inserted one; default `batch_size * gradient_steps / (train_freq * n_envs)`, the
    /// single-process ratio (`train_freq` counts vector steps of `n_envs` env steps).
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
            send_batch: 64,
            channel_capacity: 64,
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
        let env_steps_per_phase = (cfg.train_freq * cfg.n_envs.max(1) as u64) as f64;
        let spi = self.samples_per_insert.unwrap_or(sampled_per_phase / env_steps_per_phase);
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

impl ReseedActor for DqnActor {
    fn reseed(&mut self, env_seed: u64, rng: Pcg64, steps: u64) {
        (self.seed, self.rng, self.steps) = (env_seed, rng, steps);
    }
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

/// DQN's learner side for flat observations: the shared [`LearnerCore`] and the CPU copy it publishes.
struct DqnLearner {
    core: LearnerCore<FlatStorage<f32, i64>>,
    cpu: CpuMlp,
}

impl Learner for DqnLearner {
    type Weights = CpuMlp;
    type Payload = FlatTransitions;

    fn sample_batch(&self) -> usize {
        self.core.cfg.batch_size
    }

    fn insert(&mut self, b: &ActorBatch<FlatTransitions>, i: usize) -> Result<bool> {
        self.core.insert(b.actor, &b.payload.row(i), b.priorities[i])
    }

    fn update(&mut self, env_steps: u64) -> Result<()> {
        self.core.update(env_steps)
    }

    fn weights(&mut self) -> Result<CpuMlp> {
        self.cpu.sync_from(&self.core.online)?;
        Ok(self.cpu.clone())
    }

    fn refresh_weights(&mut self, w: &mut CpuMlp) -> Result<()> {
        // In place: the copy of every parameter, no allocation.
        w.sync_from(&self.core.online)
    }

    fn metrics(&mut self, env_steps: u64) -> Result<TrainMetrics> {
        Ok(self.core.metrics(env_steps))
    }
}

/// DQN with `N` actor threads (Ape-X style), driven by the runner through [`Trainer`].
pub struct ApexDqnTrainer {
    cfg: DqnConfig,
    apex: ApexConfig,
    make_env: EnvFactory,
    learner: DqnLearner,
    run: ApexRun<DqnActor>,
    eval_env: Option<Box<dyn DynEnv>>,
    eval_net: CpuMlp,
    n_actions: usize,
}

impl std::fmt::Debug for ApexDqnTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApexDqnTrainer")
            .field("cfg", &self.cfg)
            .field("apex", &self.apex)
            .field("seed", &self.run.seed())
            .field("pool", &self.run.pool())
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
                "actors on flat observations act with a CPU copy of an MLP network; network = \"nature_cnn\" with \
                 actors needs an Atari env (ALE/<Game>-v5, cargo feature `atari`)"
                    .into(),
            ));
        }
        let spec = cfg.net_spec(&obs_shape, n_actions);
        let storage = FlatStorage::new(cfg.buffer_size, &obs_shape, 1).map_err(replay_err)?;
        let core = LearnerCore::new(cfg, &spec, storage, seed, device)?;
        let cpu = CpuMlp::from_network(&core.online)?;
        let learner = DqnLearner { core, cpu: cpu.clone() };
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
            make_env,
            learner,
            run: ApexRun::new(actors, seed),
            eval_env: Some(probe),
            eval_net,
            n_actions,
        })
    }

    /// Number of actor threads.
    pub fn num_actors(&self) -> usize {
        self.run.num_actors()
    }

    /// The protocol counters (zero before training starts).
    pub fn counters(&self) -> super::CounterSnapshot {
        self.run.counters()
    }

    /// Gradient updates done so far.
    pub fn updates_done(&self) -> u64 {
        self.learner.core.updates
    }

    /// Stops the actors and returns the final counters (training cannot continue afterwards).
    pub fn shutdown(&mut self) -> Result<super::CounterSnapshot> {
        self.run.shutdown()
    }

    fn eval_env(&mut self) -> Result<&mut Box<dyn DynEnv>> {
        if self.eval_env.is_none() {
            self.eval_env = Some((self.make_env)()?);
        }
        Ok(self.eval_env.as_mut().expect("just set"))
    }
}

impl Trainer for ApexDqnTrainer {
    fn steps_done(&self) -> u64 {
        self.run.steps_done()
    }

    fn train(&mut self, until: u64, reporter: &mut dyn Reporter) -> Result<()> {
        let pool_cfg = self.apex.pool_config(&self.cfg);
        self.run.train(&mut self.learner, &pool_cfg, until, reporter)
    }

    fn evaluate(&mut self, episodes: usize, seed: u64) -> Result<EvalResult> {
        self.eval_net.sync_from(&self.learner.core.online)?;
        self.eval_env()?;
        let net = &mut self.eval_net;
        let mut explore = EvalEpsilon::new(self.cfg.eval_epsilon, self.n_actions, seed);
        let env = self.eval_env.as_mut().ok_or_else(|| AgentError::Unsupported("no evaluation env".into()))?;
        evaluate_episodes(env.as_mut(), episodes, seed, |obs| Ok(explore.explore().unwrap_or_else(|| net.act(obs))))
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        self.learner.core.checkpoint(self.run.meta())
    }

    /// Restores everything but the replay buffer (see [`Trainer::resume`]).
    fn restore(&mut self, ckpt: &Checkpoint) -> Result<()> {
        self.resume(ckpt, None).map(|_| ())
    }

    /// Restores the learner (weights, target network, optimiser moments, replay generator, update count, and the
    /// replay buffer from `replay`) and the step and episode counters. Never exact: the actors restart new
    /// episodes (their envs seeded from a seed derived from the run's seed and step, recorded in the next
    /// checkpoints as `env_seed`), the rate limiter starts counting afresh, and actor threads interleave
    /// nondeterministically in any case.
    fn resume(&mut self, ckpt: &Checkpoint, replay: Option<&Path>) -> Result<ResumeReport> {
        let mut report = ResumeReport::approximate(
            "Ape-X actors restart: each actor's env starts a new episode and its exploration generator is reseeded, \
             and the rate limiter counts inserts afresh (actor threads interleave nondeterministically, so an Ape-X \
             run never repeats step for step anyway)",
        );
        self.learner.core.resume(ckpt, replay, &mut report)?;
        let w = self.learner.weights()?;
        self.eval_net.clone_from(&w);
        if let Some(actors) = self.run.actors_mut() {
            for a in actors.iter_mut() {
                a.net.clone_from(&w);
            }
        }
        self.run.resume(&ckpt.meta, w, &mut report);
        Ok(report)
    }

    fn replay_bytes(&self) -> Option<u64> {
        Some(self.learner.core.replay_bytes())
    }

    fn save_replay(&self, path: &Path) -> Result<bool> {
        self.learner.core.save_replay(path)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::learner::Replay;
    use crate::trainer::NullReporter;
    use bellman_envs::{BoxSpace, EnvError, Info, StepOutcome};
    use bellman_replay::{Batch, Storage};

    /// A deterministic fake env: a 3-number observation driven by the step count and the last action, reward 1
    /// for action 1 and -0.5 for action 0, episodes of 12 steps.
    struct Walk {
        obs_space: Space,
        act_space: Space,
        t: u64,
    }

    impl DynEnv for Walk {
        fn observation_space(&self) -> &Space {
            &self.obs_space
        }
        fn action_space(&self) -> &Space {
            &self.act_space
        }
        fn reset_into(&mut self, _seed: Option<u64>, obs: &mut [f32]) -> std::result::Result<Info, EnvError> {
            self.t = 0;
            obs.copy_from_slice(&[0.0, 1.0, 0.5]);
            Ok(Info::default())
        }
        fn step_into(&mut self, a: ActionValue<'_>, obs: &mut [f32]) -> std::result::Result<StepOutcome, EnvError> {
            let a = match a {
                ActionValue::Discrete(a) => a,
                _ => 0,
            };
            self.t += 1;
            obs.copy_from_slice(&[self.t as f32 * 0.1, a as f32, ((self.t * 7) % 5) as f32 * 0.2]);
            let reward = if a == 1 { 1.0 } else { -0.5 };
            Ok(StepOutcome { reward, terminated: self.t.is_multiple_of(12), ..StepOutcome::default() })
        }
    }

    fn walk_factory() -> EnvFactory {
        Box::new(|| -> Result<Box<dyn DynEnv>> {
            Ok(Box::new(Walk {
                obs_space: Space::Box(BoxSpace::new(vec![-10.0; 3], vec![10.0; 3]).unwrap()),
                act_space: Space::Discrete(2),
                t: 0,
            }))
        })
    }

    fn per_cfg() -> DqnConfig {
        DqnConfig {
            hidden: vec![8],
            prioritized: true,
            per_alpha: 0.6,
            per_beta: 0.4,
            batch_size: 16,
            buffer_size: 2_000,
            learning_starts: 2_000,
            ..DqnConfig::default()
        }
    }

    /// `|r + f max Q(s') - Q(s, a)|` of every stored transition under `net`, and the stored transitions' slots.
    fn recomputed_priorities(per: &PrioritizedReplayBufferFlat, net: &mut CpuMlp) -> Vec<(usize, f32)> {
        let n = per.len();
        let mut batch = Batch::new();
        batch.resize(n, per.storage().obs_len(), 1);
        for (k, i) in batch.indices.iter_mut().enumerate() {
            *i = k;
        }
        per.storage().gather(&mut batch);
        (0..n)
            .map(|k| {
                let next_v = net.q_values(batch.next_obs_row(k)).iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let q_sa = net.q_values(batch.obs_row(k))[batch.actions[k] as usize];
                let f = if batch.terminated[k] { 0.0 } else { batch.discounts[k] };
                (k, (batch.rewards[k] + f * next_v - q_sa).abs())
            })
            .collect()
    }

    type PrioritizedReplayBufferFlat = bellman_replay::PrioritizedReplayBuffer<FlatStorage<f32, i64>>;

    /// Ape-X through the real pool: 2 actors with n-step returns send their initial priorities, and the learner's
    /// prioritised buffer stores exactly `(|delta| + eps)^alpha` for each transition (no update runs, so the
    /// weights the actors used are the initial ones and every priority can be recomputed).
    #[test]
    fn actor_priorities_arrive_in_the_prioritized_buffer() {
        let cfg = DqnConfig { n_step: 3, ..per_cfg() };
        let apex = ApexConfig { send_batch: 10, ..ApexConfig::default() };
        let mut t = ApexDqnTrainer::with_env_factory(&cfg, &apex, 2, walk_factory(), 1, "cpu").unwrap();
        let mut net = t.eval_net.clone();
        t.train(600, &mut NullReporter).unwrap();
        let c = t.shutdown().unwrap();
        assert_eq!(c.updates, 0, "learning_starts 2000 > 600 steps: no update, weights stay at version 0");
        assert!(c.inserted >= 500, "{c:?}");
        let Replay::Prioritized(per) = &t.learner.core.replay else { panic!("prioritized = true") };
        assert_eq!(per.len() as u64, c.inserted);
        let expected = recomputed_priorities(per, &mut net);
        let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
        for (slot, delta) in expected {
            let want = (delta as f64 + cfg.per_eps).powf(cfg.per_alpha);
            let got = per.priority(slot);
            assert!((got - want).abs() <= 1e-5 * want.max(1e-3), "slot {slot}: stored {got}, actor's {want}");
            (lo, hi) = (lo.min(got), hi.max(got));
        }
        // The priorities differ, so a learner that ignored them (new transitions at the max priority) would fail.
        assert!(hi > 2.0 * lo, "priorities in [{lo}, {hi}]");
    }

    /// The learner samples by the actors' priorities, weights by them, and replaces them by its TD errors.
    #[test]
    fn prioritized_learner_samples_by_actor_priorities_then_updates_them() {
        let cfg = DqnConfig { buffer_size: 100, learning_starts: 0, ..per_cfg() };
        let mut t =
            ApexDqnTrainer::with_env_factory(&cfg, &ApexConfig::default(), 1, walk_factory(), 2, "cpu").unwrap();
        let mut actor = t.run.take_actors().unwrap().remove(0);
        let mut b = ActorBatch::new(actor.new_payload());
        while b.len() < 64 {
            actor.step(&mut b).unwrap();
        }
        // One transition stands out: P(5) = 1000^0.6 / (1000^0.6 + 63 * 0.01^0.6) = 0.94.
        for (i, p) in b.priorities.iter_mut().enumerate() {
            *p = if i == 5 { 1000.0 } else { 0.01 };
        }
        for i in 0..64 {
            assert!(!t.learner.insert(&b, i).unwrap(), "no eviction below capacity");
        }
        let Replay::Prioritized(per) = &t.learner.core.replay else { panic!("prioritized = true") };
        let p5 = per.priority(5);
        let p_low = per.priority(0);
        assert!((p5 - (1000.0 + cfg.per_eps).powf(0.6)).abs() < 1e-9 * p5);
        assert!((p_low - (0.01f32 as f64 + cfg.per_eps).powf(0.6)).abs() < 1e-12);
        t.learner.update(0).unwrap();
        let batch = &t.learner.core.batch;
        // Stratified sampling over 16 segments: slot 5 fills at least the 14 segments inside its mass.
        let hits = batch.indices.iter().filter(|&&i| i == 5).count();
        assert!(hits >= 14, "slot 5 sampled {hits} of 16 times: {:?}", batch.indices);
        // Importance weights (p_i / p_min)^-beta with beta = per_beta at step 0.
        for (&i, &w) in batch.indices.iter().zip(&batch.weights) {
            let want = if i == 5 { (p5 / p_low).powf(-0.4) } else { 1.0 };
            assert!((w as f64 - want).abs() < 1e-5 * want.max(1e-3), "slot {i}: weight {w}, want {want}");
        }
        // The update replaced the sampled priorities with its TD errors (rewards are +-1, far below 1000).
        let Replay::Prioritized(per) = &t.learner.core.replay else { unreachable!() };
        assert!(per.priority(5) < 0.1 * p5, "slot 5 still at {} after the update", per.priority(5));
        let unsampled = (0..64).find(|i| !batch.indices.contains(i)).expect("16 samples leave most slots");
        assert_eq!(per.priority(unsampled), p_low, "unsampled slot {unsampled} keeps the actor's priority");
    }

    /// The default replay ratio is the single-process one: sampled transitions per env step.
    #[test]
    fn default_samples_per_insert_is_the_single_process_ratio() {
        let rate = |cfg: &DqnConfig| ApexConfig::default().pool_config(cfg).rate.samples_per_insert;
        // cartpole-dqn: 64 x 128 sampled per 256 env steps.
        let cfg = DqnConfig { batch_size: 64, gradient_steps: 128, train_freq: 256, ..DqnConfig::default() };
        assert_eq!(rate(&cfg), 32.0);
        // pong-dqn-fast: 32 x 2 sampled per vector step of 8 envs.
        let cfg = DqnConfig { batch_size: 32, gradient_steps: 2, train_freq: 1, n_envs: 8, ..DqnConfig::default() };
        assert_eq!(rate(&cfg), 8.0);
        let apex = ApexConfig { samples_per_insert: Some(3.0), ..ApexConfig::default() };
        assert_eq!(apex.pool_config(&cfg).rate.samples_per_insert, 3.0);
    }

    /// The cached Q-values give the same initial priorities as recomputing `|r + g max Q(s') - Q(s, a)|`.
    #[test]
    fn one_step_priorities_match_a_fresh_computation() {
        let cfg = DqnConfig { hidden: vec![8], learning_starts: 0, ..DqnConfig::default() };
        let mut t =
            ApexDqnTrainer::new(&cfg, &ApexConfig::default(), 2, &EnvSetup::new("CartPole-v1"), 5, "cpu").unwrap();
        let mut actor = t.run.take_actors().unwrap().remove(0);
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

    /// An Ape-X checkpoint resumed with its replay buffer restores the learner exactly (weights, target, Adam's
    /// moments and step, replay generator, buffer), so its next update equals the original learner's, bit for
    /// bit; the actors restart on derived seeds, and the report says not exact. Without the buffer, or from a
    /// checkpoint of the older format, the report says what is missing; another checkpoint's buffer is refused.
    #[test]
    fn resume_restores_the_learner_exactly_and_reseeds_the_actors() {
        let cfg = DqnConfig { buffer_size: 500, learning_starts: 50, prioritized: false, ..per_cfg() };
        for prioritized in [false, true] {
            let cfg = DqnConfig { prioritized, ..cfg.clone() };
            let apex = ApexConfig { send_batch: 10, ..ApexConfig::default() };
            let mut t = ApexDqnTrainer::with_env_factory(&cfg, &apex, 2, walk_factory(), 4, "cpu").unwrap();
            t.train(300, &mut NullReporter).unwrap();
            t.shutdown().unwrap();
            assert!(t.updates_done() > 10, "{} updates", t.updates_done());
            let ck = t.checkpoint().unwrap();
            let dir = std::env::temp_dir().join(format!("bellman-apex-resume-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("per-{prioritized}.replay"));
            assert!(t.save_replay(&path).unwrap());

            let mut r = ApexDqnTrainer::with_env_factory(&cfg, &apex, 2, walk_factory(), 4, "cpu").unwrap();
            let report = r.resume(&ck, Some(&path)).unwrap();
            assert!(!report.exact && report.notes[0].contains("Ape-X actors restart"), "{report}");
            assert!(!report.to_string().contains("replay buffer was not saved"), "{report}");
            let rc = r.checkpoint().unwrap();
            assert_eq!(rc.weights, ck.weights);
            assert_eq!(rc.train_state, ck.train_state, "target network and optimiser state");
            assert_eq!(rc.meta["learner"], ck.meta["learner"], "optimiser step, generator, sums, replay counts");
            assert_eq!(
                (rc.meta["steps"].clone(), rc.meta["updates"].clone()),
                (ck.meta["steps"].clone(), ck.meta["updates"].clone())
            );
            assert_eq!(r.learner.core.replay.len(), t.learner.core.replay.len());
            // Actors restart on a derived seed (recorded), with fresh generators from it.
            let base = crate::dqn::derived_env_seed(4, ck.meta["steps"].as_u64().unwrap());
            assert_eq!(rc.meta["env_seed"], base);
            assert!(report.to_string().contains(&base.to_string()), "{report}");
            let actors = r.run.actors().unwrap();
            assert_eq!((actors[0].seed, actors[1].seed), (base, base + 1));
            // The next learner update: the same batch and the same weights after it.
            let steps = t.steps_done();
            t.learner.update(steps).unwrap();
            r.learner.update(steps).unwrap();
            assert_eq!(r.learner.core.batch.indices, t.learner.core.batch.indices);
            assert_eq!(
                r.learner.core.online.to_safetensors().unwrap(),
                t.learner.core.online.to_safetensors().unwrap()
            );
            assert_eq!(r.checkpoint().unwrap().train_state, t.checkpoint().unwrap().train_state);

            // No buffer: said so. Older checkpoints (target only): said so, the target still restored.
            let mut r = ApexDqnTrainer::with_env_factory(&cfg, &apex, 1, walk_factory(), 4, "cpu").unwrap();
            let report = r.resume(&ck, None).unwrap();
            assert!(report.to_string().contains("replay buffer was not saved"), "{report}");
            let mut old = ck.clone();
            old.meta.as_object_mut().unwrap().remove("learner");
            old.train_state = Some(t.learner.core.target.to_safetensors().unwrap());
            let report = r.resume(&old, None).unwrap();
            assert!(report.to_string().contains("older format"), "{report}");
            assert_eq!(
                r.learner.core.target.to_safetensors().unwrap(),
                t.learner.core.target.to_safetensors().unwrap()
            );
            // Another checkpoint's buffer, or a buffer of another capacity, is an error naming it.
            let mut other = ck.clone();
            other.meta["learner"]["replay_pushed"] = serde_json::json!(3);
            let e = r.resume(&other, Some(&path)).unwrap_err().to_string();
            assert!(e.contains("belongs to another checkpoint"), "{e}");
            let small = DqnConfig { buffer_size: 400, ..cfg.clone() };
            let mut r = ApexDqnTrainer::with_env_factory(&small, &apex, 1, walk_factory(), 4, "cpu").unwrap();
            let e = r.resume(&ck, Some(&path)).unwrap_err().to_string();
            assert!(e.contains("capacity 500") && e.contains("buffer_size 400"), "{e}");
            std::fs::remove_file(&path).unwrap();
        }
    }
}
