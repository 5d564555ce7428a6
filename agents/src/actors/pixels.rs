//! Ape-X DQN on Atari pixels (cargo feature `atari`): `--actors N` for `ALE/<Game>-v5` experiments.
//!
//! * Each actor thread owns one preprocessed [`AtariEnv`] and a CPU copy of the Nature CNN, and runs candle's CPU
//!   kernels on a rayon pool of one thread, itself (`use_current_thread`): N actors use N cores, not N full
//!   rayon pools fighting over them. The learner keeps the process-wide pool.
//! * Frames travel once. An actor gives every distinct frame an id, keeps the recent ones in a small ring, and
//!   turns transitions (n-step returns applied by [`NStep`] over stacks of frame *ids*) into a
//!   [`FrameTransitions`] message: the distinct frames the message's transitions use, each once, plus `2 * stack`
//!   frame indices per transition. With 4-frame stacks a 16-transition message holds about 16 + 7 frames instead
//!   of 128. The learner rebuilds each stack and pushes it into its frame-deduplicated [`FrameStackStorage`]
//!   (which matches frames by content, so the rebuild is lossless), on stream = actor id.
//! * Initial priorities are Ape-X's `|n-step TD error|` under the actor's own network, from the Q-values it
//!   computed for acting (kept for the last `n + 2` observations), so prioritising costs no extra forward pass.
//! * The learner (networks on its device, optimiser, replay, update) is the flat path's
//!   (`actors::learner`, which calls `crate::dqn::learn::td_update`); it publishes the online parameters as host
//!   tensors ([`CnnWeights`]).
//! * Episodes: the learner gets the env's (with `episodic_life`, SB3's `EpisodicLifeEnv`, a lost life is
//!   `terminated` and the actor's next reset continues the game) with clipped rewards if `clip_rewards`; the
//!   episodes reported to `episodes.csv` are whole games with their raw score, from the env's `info.episode`.
//! * With actors, `n_envs` does not set a number of envs (each actor steps one); it still sets the default replay
//!   ratio, `batch_size * gradient_steps / (train_freq * n_envs)` samples per inserted transition, the ratio of
//!   the single-process run with that config, and the target-update period in updates.
//!
//! ```no_run
//! use bellman_agents::actors::{ApexConfig, pixels::ApexPixelTrainer};
//! use bellman_agents::dqn::{DqnConfig, network::Arch};
//! use bellman_agents::trainer::{EnvSetup, NullReporter, Trainer};
//! let cfg = DqnConfig { network: Arch::NatureCnn, hidden: vec![512], buffer_size: 10_000, ..DqnConfig::default() };
//! let env = EnvSetup { id: "ALE/Pong-v5".into(), options: vec!["preprocess=true".into(), "frame_stack=4".into()] };
//! let mut agent = ApexPixelTrainer::new(&cfg, &ApexConfig::default(), 4, &env, 0, "cpu").unwrap();
//! agent.train(20_000, &mut NullReporter).unwrap();
//! ```
use std::path::Path;

use bellman_envs::Info;
use bellman_envs::atari::{AtariConfig, AtariEnv, config_from_options};
use bellman_replay::{FrameStackStorage, NStep, Transition};
use candle_core::{D, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::learner::{ACTOR_STREAM, INIT_STREAM, LearnerCore, ReseedActor, replay_err};
use super::run::ApexRun;
use super::{
    Actor, ActorBatch, ActorEpisode, ActorEpsilon, ApexConfig, CounterSnapshot, Learner, Payload, apex_epsilon,
};
use crate::dqn::network::{Arch, QNetwork, argmax, terr};
use crate::dqn::pixels::evaluate_atari;
use crate::dqn::{DqnConfig, device};
use crate::error::{AgentError, Result};
use crate::trainer::{Checkpoint, EnvSetup, EvalEpsilon, EvalResult, Reporter, ResumeReport, TrainMetrics, Trainer};

/// The Q-network's parameters in host memory, in [`QNetwork::named_params`] order: what the learner publishes
/// and actors load.
#[derive(Debug, Clone)]
pub struct CnnWeights(
    /// One host tensor per parameter.
    pub Vec<Tensor>,
);

/// A host copy of `net`'s parameters (a fresh copy: later optimiser steps do not change it).
fn cnn_weights(net: &QNetwork) -> Result<CnnWeights> {
    let ts = net
        .named_params()
        .iter()
        .map(|(_, v)| v.as_tensor().to_device(&Device::Cpu).and_then(|t| t.copy()))
        .collect::<candle_core::Result<Vec<_>>>()
        .map_err(terr)?;
    Ok(CnnWeights(ts))
}

/// Loads `w` into `net` (same architecture).
fn load_cnn_weights(net: &QNetwork, w: &CnnWeights) -> Result<()> {
    let params = net.named_params();
    if params.len() != w.0.len() {
        return Err(AgentError::Config(format!(
            "weights hold {} tensors but the network has {} parameters",
            w.0.len(),
            params.len()
        )));
    }
    for ((name, var), t) in params.iter().zip(&w.0) {
        if var.dims() != t.dims() {
            return Err(AgentError::Config(format!(
                "weights for '{name}' have shape {:?}, the network expects {:?}",
                t.dims(),
                var.dims()
            )));
        }
        var.set(t).map_err(terr)?;
    }
    Ok(())
}

/// The game of an `ALE/<Game>-v5` id.
fn game_of(id: &str) -> Result<&str> {
    id.strip_prefix("ALE/").and_then(|g| g.strip_suffix("-v5")).filter(|g| !g.is_empty()).ok_or_else(|| {
        AgentError::Unsupported(format!("env id {id:?}: pixel actors need an id of the form ALE/<Game>-v5"))
    })
}

/// A message of pixel transitions: each distinct frame once, and per transition the indices of the frames of its
/// observation and next observation stacks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameTransitions {
    /// Frames per observation.
    pub stack: usize,
    /// Bytes per frame.
    pub frame_len: usize,
    /// The distinct frames, `num_frames * frame_len` bytes.
    pub frames: Vec<u8>,
    /// The sending actor's id of each frame (parallel to the frames), to find one already in the message.
    pub frame_ids: Vec<u64>,
    /// Per transition, `2 * stack` indices into the frames: the observation's, then the next observation's.
    pub stacks: Vec<u32>,
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

impl FrameTransitions {
    /// An empty message for stacks of `stack` frames of `frame_len` bytes, with room for `transitions`
    /// transitions and `frames` frames.
    pub fn with_capacity(stack: usize, frame_len: usize, transitions: usize, frames: usize) -> Self {
        FrameTransitions {
            stack,
            frame_len,
            frames: Vec::with_capacity(frames * frame_len),
            frame_ids: Vec::with_capacity(frames),
            stacks: Vec::with_capacity(transitions * 2 * stack),
            actions: Vec::with_capacity(transitions),
            rewards: Vec::with_capacity(transitions),
            terminated: Vec::with_capacity(transitions),
            truncated: Vec::with_capacity(transitions),
            discounts: Vec::with_capacity(transitions),
        }
    }

    /// Number of distinct frames in the message.
    pub fn num_frames(&self) -> usize {
        self.frame_ids.len()
    }

    /// Writes transition `i`'s observation and next observation (`stack * frame_len` bytes each).
    ///
    /// ```
    /// use bellman_agents::actors::pixels::FrameTransitions;
    /// // Two 1-byte frames, one transition whose stacks are [a, a] -> [a, b].
    /// let m = FrameTransitions { stack: 2, frame_len: 1, frames: vec![7, 9], frame_ids: vec![0, 1],
    ///     stacks: vec![0, 0, 0, 1], actions: vec![0], rewards: vec![1.0], terminated: vec![false],
    ///     truncated: vec![false], discounts: vec![0.99] };
    /// let (mut o, mut n) = ([0u8; 2], [0u8; 2]);
    /// m.write_stacks(0, &mut o, &mut n).unwrap();
    /// assert_eq!((o, n), ([7, 7], [7, 9]));
    /// assert!(m.write_stacks(1, &mut o, &mut n).is_err());
    /// ```
    pub fn write_stacks(&self, i: usize, obs: &mut [u8], next: &mut [u8]) -> Result<()> {
        let (k, fl) = (self.stack, self.frame_len);
        let ol = k * fl;
        if i >= self.actions.len() || obs.len() != ol || next.len() != ol || self.stacks.len() < (i + 1) * 2 * k {
            return Err(AgentError::Config(format!(
                "transition {i} of a message of {} with {} and {} output bytes (want {ol} each)",
                self.actions.len(),
                obs.len(),
                next.len()
            )));
        }
        let ids = &self.stacks[i * 2 * k..(i + 1) * 2 * k];
        for (j, &f) in ids.iter().enumerate() {
            let f = f as usize;
            let src = self.frames.get(f * fl..(f + 1) * fl).ok_or_else(|| {
                AgentError::Config(format!("transition {i} uses frame {f} of a message of {}", self.num_frames()))
            })?;
            let dst = if j < k { &mut obs[j * fl..(j + 1) * fl] } else { &mut next[(j - k) * fl..(j - k + 1) * fl] };
            dst.copy_from_slice(src);
        }
        Ok(())
    }

    /// Appends a transition whose stacks are given as frame ids of `ring`.
    fn push_ids(&mut self, t: &Transition<'_, i64, i64>, ring: &FrameRing) -> std::result::Result<(), String> {
        for &id in t.obs.iter().chain(t.next_obs) {
            let id = id as u64;
            let idx = match self.frame_ids.iter().rposition(|&f| f == id) {
                Some(p) => p,
                None => {
                    let f = ring.get(id).ok_or_else(|| format!("frame {id} already left the actor's frame ring"))?;
                    self.frames.extend_from_slice(f);
                    self.frame_ids.push(id);
                    self.frame_ids.len() - 1
                }
            };
            self.stacks.push(idx as u32);
        }
        self.actions.push(t.action[0]);
        self.rewards.push(t.reward);
        self.terminated.push(t.terminated);
        self.truncated.push(t.truncated);
        self.discounts.push(t.discount);
        Ok(())
    }
}

impl Payload for FrameTransitions {
    fn len(&self) -> usize {
        self.actions.len()
    }
    fn clear(&mut self) {
        self.frames.clear();
        self.frame_ids.clear();
        self.stacks.clear();
        self.actions.clear();
        self.rewards.clear();
        self.terminated.clear();
        self.truncated.clear();
        self.discounts.clear();
    }
}

/// The actor's recent frames by id (frame `id` at slot `id % cap`).
#[derive(Debug, Clone)]
struct FrameRing {
    frame_len: usize,
    cap: u64,
    data: Vec<u8>,
    next_id: u64,
}

impl FrameRing {
    fn new(frame_len: usize, cap: usize) -> Self {
        FrameRing { frame_len, cap: cap as u64, data: vec![0; frame_len * cap], next_id: 0 }
    }
    fn push(&mut self, frame: &[u8]) -> u64 {
        let id = self.next_id;
        let s = (id % self.cap) as usize * self.frame_len;
        self.data[s..s + self.frame_len].copy_from_slice(frame);
        self.next_id += 1;
        id
    }
    fn get(&self, id: u64) -> Option<&[u8]> {
        if id < self.next_id && id + self.cap >= self.next_id {
            let s = (id % self.cap) as usize * self.frame_len;
            Some(&self.data[s..s + self.frame_len])
        } else {
            None
        }
    }
    /// Ids of the frames of `stack` (bytes), reusing the previous stack's frames where it is that stack shifted
    /// by one (Gymnasium's `FrameStackObservation`) and a repeated frame's id (reset padding); new frames are
    /// stored. Frames are compared by content, so the ids always describe `stack` exactly.
    fn assign(&mut self, stack: &[u8], prev: Option<&[i64]>, out: &mut [i64]) {
        let (k, fl) = (out.len(), self.frame_len);
        for j in 0..k {
            let f = &stack[j * fl..(j + 1) * fl];
            if let Some(p) = prev.filter(|_| j + 1 < k).map(|p| p[j + 1])
                && self.get(p as u64) == Some(f)
            {
                out[j] = p;
                continue;
            }
            if j > 0 && self.get(out[j - 1] as u64) == Some(f) {
                out[j] = out[j - 1];
                continue;
            }
            out[j] = self.push(f) as i64;
        }
    }
}

/// Q-values of the last few observations, keyed by their stacks of frame ids (equal ids mean equal frames, so
/// equal keys mean equal observations).
#[derive(Debug, Clone)]
struct QCache {
    keys: Vec<i64>,
    q: Vec<f32>,
    stack: usize,
    n_actions: usize,
    next: usize,
}

impl QCache {
    fn new(entries: usize, stack: usize, n_actions: usize) -> Self {
        QCache { keys: vec![-1; entries * stack], q: vec![0.0; entries * n_actions], stack, n_actions, next: 0 }
    }
    fn put(&mut self, key: &[i64], q: &[f32]) {
        let (i, k) = (self.next, self.stack);
        self.keys[i * k..(i + 1) * k].copy_from_slice(key);
        self.q[i * self.n_actions..(i + 1) * self.n_actions].copy_from_slice(q);
        self.next = (i + 1) % (self.keys.len() / k);
    }
    fn get(&self, key: &[i64]) -> Option<&[f32]> {
        let i = self.keys.chunks_exact(self.stack).position(|c| c == key)?;
        Some(&self.q[i * self.n_actions..(i + 1) * self.n_actions])
    }
}

/// One pixel actor: an Atari env, a CPU copy of the Nature CNN on a one-thread rayon pool, n-step accumulation
/// over frame ids, and priorities.
pub struct PixelActor {
    id: usize,
    env: AtariEnv,
    net: QNetwork,
    pool: Option<rayon::ThreadPool>,
    nstep: NStep<i64, i64>,
    rng: Pcg64,
    epsilon: ActorEpsilon,
    fixed_eps: f64,
    cfg: DqnConfig,
    n_actors: u64,
    n_actions: usize,
    seed: u64,
    stack: usize,
    frame_len: usize,
    obs: Vec<u8>,
    next_obs: Vec<u8>,
    ids: Vec<i64>,
    next_ids: Vec<i64>,
    ring: FrameRing,
    qcache: QCache,
    q_obs: Vec<f32>,
    q_next: Vec<f32>,
    started: bool,
    steps: u64,
    send_batch: usize,
}

impl ReseedActor for PixelActor {
    fn reseed(&mut self, env_seed: u64, rng: Pcg64, steps: u64) {
        (self.seed, self.rng, self.steps) = (env_seed, rng, steps);
    }
}

impl std::fmt::Debug for PixelActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PixelActor").field("id", &self.id).field("steps", &self.steps).finish_non_exhaustive()
    }
}

impl PixelActor {
    /// The exploration rate at this actor's current step.
    pub fn epsilon(&self) -> f64 {
        match self.epsilon {
            ActorEpsilon::Apex => self.fixed_eps,
            ActorEpsilon::Schedule => self.cfg.epsilon(self.steps * self.n_actors),
        }
    }

    /// Makes the calling thread (the actor's) the only worker of its own rayon pool, so that candle's CPU
    /// kernels (gemm's and candle's `par_iter`s) run on this thread alone. The pool's registry is leaked when the
    /// thread ends (rayon's `use_current_thread` documentation): one small allocation per actor per run.
    fn ensure_pool(&mut self) -> Result<()> {
        if self.pool.is_none() {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .use_current_thread()
                .build()
                .map_err(|e| AgentError::Config(format!("actor {}: cannot build its rayon pool: {e}", self.id)))?;
            self.pool = Some(pool);
        }
        Ok(())
    }

    fn q_into(net: &QNetwork, obs: &[u8], out: &mut [f32]) -> Result<()> {
        let mut shape = Vec::with_capacity(4);
        shape.push(1);
        shape.extend_from_slice(&net.spec().obs_shape);
        let x = Tensor::from_slice(obs, shape, &Device::Cpu).map_err(terr)?;
        let q = net.forward(&x).and_then(|q| q.flatten_all()).and_then(|q| q.to_vec1::<f32>()).map_err(terr)?;
        out.copy_from_slice(&q);
        Ok(())
    }

    /// Starts an episode (of a new game, or with `episodic_life` of the same game after a lost life): new
    /// observation, its frame ids and Q-values. Returns the reset's info, whose `episode` is set when a game
    /// ended inside the reset's own steps (see `AtariEnv`).
    fn begin_episode(&mut self, seed: Option<u64>) -> Result<Info> {
        let info = self.env.reset_into(seed, &mut self.obs)?;
        self.ring.assign(&self.obs, None, &mut self.ids);
        Self::q_into(&self.net, &self.obs, &mut self.q_obs)?;
        self.qcache.put(&self.ids, &self.q_obs);
        Ok(info)
    }
}

impl Actor for PixelActor {
    type Weights = CnnWeights;
    type Payload = FrameTransitions;

    fn new_payload(&self) -> FrameTransitions {
        let n = self.send_batch + self.nstep.n();
        FrameTransitions::with_capacity(self.stack, self.frame_len, n, n + 2 * self.stack)
    }

    fn load_weights(&mut self, w: &CnnWeights, _version: u64) -> Result<()> {
        load_cnn_weights(&self.net, w)
    }

    fn step(&mut self, b: &mut ActorBatch<FrameTransitions>) -> Result<()> {
        if !self.started {
            self.ensure_pool()?;
            // A seeded reset restarts the game: no game can have ended inside it.
            self.begin_episode(Some(self.seed))?;
            self.started = true;
        }
        let random =
            matches!(self.epsilon, ActorEpsilon::Schedule) && self.steps * self.n_actors < self.cfg.learning_starts;
        let eps = self.epsilon();
        let a = if random || self.rng.random::<f64>() < eps {
            self.rng.random_range(0..self.n_actions)
        } else {
            argmax(&self.q_obs)
        };
        let out = self.env.step_into(a, &mut self.next_obs)?;
        self.steps += 1;
        b.env_steps += 1;
        self.ring.assign(&self.next_obs, Some(&self.ids), &mut self.next_ids);
        Self::q_into(&self.net, &self.next_obs, &mut self.q_next)?;
        self.qcache.put(&self.next_ids, &self.q_next);
        let t = Transition {
            obs: &self.ids,
            action: &[a as i64],
            reward: out.reward as f32,
            next_obs: &self.next_ids,
            terminated: out.terminated,
            truncated: out.truncated,
            discount: self.cfg.gamma as f32,
        };
        let (qcache, ring) = (&self.qcache, &self.ring);
        let mut failure = None;
        let mut sink = |_env: usize, t: &Transition<'_, i64, i64>| -> bellman_replay::Result<()> {
            // Ape-X initial priority: |n-step TD error| under the actor's own network (Horgan et al. 2018, alg. 1),
            // from the Q-values computed when the actor saw each observation.
            let (Some(q), Some(next_q)) = (qcache.get(t.obs), qcache.get(t.next_obs)) else {
                failure.get_or_insert_with(|| "the Q-values of an n-step transition's observation were dropped".into());
                return Ok(());
            };
            let next_v = next_q.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let factor = if t.terminated { 0.0 } else { t.discount };
            let p = (t.reward + factor * next_v - q[t.action[0] as usize]).abs();
            match b.payload.push_ids(t, ring) {
                Ok(()) => b.priorities.push(if p.is_finite() { p } else { 0.0 }),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
            Ok(())
        };
        self.nstep.push(0, &t, &mut sink).map_err(replay_err)?;
        if let Some(cause) = failure {
            return Err(super::actor_error(self.id, cause));
        }
        // Episodes for episodes.csv are whole games with their raw score (info.episode, what SB3's Monitor logs),
        // not the clipped per-life episodes the learner sees.
        if let Some(game) = out.info.episode {
            b.episodes.push(ActorEpisode { ret: game.ret, len: game.len });
        }
        if out.terminated || out.truncated {
            if let Some(game) = self.begin_episode(None)?.episode {
                b.episodes.push(ActorEpisode { ret: game.ret, len: game.len });
            }
        } else {
            std::mem::swap(&mut self.obs, &mut self.next_obs);
            std::mem::swap(&mut self.ids, &mut self.next_ids);
            std::mem::swap(&mut self.q_obs, &mut self.q_next);
        }
        Ok(())
    }
}

/// The learner for pixel messages: rebuilds each stack and hands it to the shared [`LearnerCore`].
struct PixelLearner {
    core: LearnerCore<FrameStackStorage<i64>>,
    obs: Vec<u8>,
    next: Vec<u8>,
}

impl Learner for PixelLearner {
    type Weights = CnnWeights;
    type Payload = FrameTransitions;

    fn sample_batch(&self) -> usize {
        self.core.cfg.batch_size
    }

    fn insert(&mut self, b: &ActorBatch<FrameTransitions>, i: usize) -> Result<bool> {
        let p = &b.payload;
        p.write_stacks(i, &mut self.obs, &mut self.next)?;
        let t = Transition {
            obs: &self.obs,
            action: &p.actions[i..i + 1],
            reward: p.rewards[i],
            next_obs: &self.next,
            terminated: p.terminated[i],
            truncated: p.truncated[i],
            discount: p.discounts[i],
        };
        self.core.insert(b.actor, &t, b.priorities[i])
    }

    fn update(&mut self, env_steps: u64) -> Result<()> {
        self.core.update(env_steps)
    }

    fn weights(&mut self) -> Result<CnnWeights> {
        cnn_weights(&self.core.online)
    }

    fn metrics(&mut self, env_steps: u64) -> Result<TrainMetrics> {
        Ok(self.core.metrics(env_steps))
    }
}

/// Pixel DQN with `N` actor threads (Ape-X style); the runner builds it for `ALE/<Game>-v5` with `--actors N`.
pub struct ApexPixelTrainer {
    cfg: DqnConfig,
    apex: ApexConfig,
    atari: AtariConfig,
    learner: PixelLearner,
    run: ApexRun<PixelActor>,
    eval_env: Option<AtariEnv>,
    n_actions: usize,
    obs_len: usize,
}

impl std::fmt::Debug for ApexPixelTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApexPixelTrainer")
            .field("cfg", &self.cfg)
            .field("apex", &self.apex)
            .field("atari", &self.atari)
            .field("seed", &self.run.seed())
            .field("pool", &self.run.pool())
            .finish_non_exhaustive()
    }
}

impl ApexPixelTrainer {
    /// Builds pixel Ape-X DQN with `actors` actor threads for the registry env `env` (`ALE/<Game>-v5` with
    /// `preprocess=true`), seeded with `seed`; the learner runs on `device` (`cpu`, `cuda`, `cuda:N`).
    pub fn new(
        cfg: &DqnConfig,
        apex: &ApexConfig,
        actors: usize,
        env: &EnvSetup,
        seed: u64,
        device: &str,
    ) -> Result<Self> {
        let game = game_of(&env.id)?;
        let opts = env.parsed_options()?;
        let atari = config_from_options(&env.id, game, &opts)?;
        Self::with_atari_config(cfg, apex, actors, atari, seed, device)
    }

    /// Builds pixel Ape-X DQN for envs made from `atari` (which must have preprocessing).
    pub fn with_atari_config(
        cfg: &DqnConfig,
        apex: &ApexConfig,
        n_actors: usize,
        atari: AtariConfig,
        seed: u64,
        device: &str,
    ) -> Result<Self> {
        cfg.validate()?;
        if !(1..=1024).contains(&n_actors) {
            return Err(AgentError::Config(format!("actors = {n_actors}: must be in 1..=1024")));
        }
        if cfg.network != Arch::NatureCnn {
            return Err(AgentError::Config(format!(
                "network = {:?} on Atari frames: set network = \"nature_cnn\" in [agent]",
                cfg.network
            )));
        }
        let Some(pp) = atari.preprocessing else {
            return Err(AgentError::Unsupported(format!(
                "{}: pixel actors need preprocessed frames; add env_options \"preprocess=true\" and \
                 \"frame_stack=4\"",
                atari.game
            )));
        };
        let pool_cfg = apex.pool_config(cfg);
        pool_cfg.validate(cfg.batch_size)?;
        if pool_cfg.rate.min_size_to_sample > cfg.buffer_size as u64 {
            return Err(AgentError::Config(format!(
                "learning_starts = {}: must be <= buffer_size = {} with actors (the learner samples only after \
                 that many inserts)",
                cfg.learning_starts, cfg.buffer_size
            )));
        }
        let device = device::parse_device(device)?;
        let probe = AtariEnv::new(atari.clone())?;
        let n_actions = probe.action_set().len();
        let obs_shape = probe.obs_shape().to_vec();
        let obs_len = probe.obs_len();
        let stack = pp.frame_stack;
        if obs_shape.len() != 3 || obs_shape[0] != stack || obs_len % stack != 0 {
            return Err(AgentError::Unsupported(format!(
                "observation shape {obs_shape:?}: pixel actors need [frame_stack, height, width] grayscale stacks"
            )));
        }
        let frame_len = obs_len / stack;
        let spec = cfg.net_spec(&obs_shape, n_actions);
        let storage = FrameStackStorage::<i64>::new(cfg.buffer_size, stack, &obs_shape[1..], 1).map_err(replay_err)?;
        let core = LearnerCore::new(cfg, &spec, storage, seed, device)?;
        let initial = cnn_weights(&core.online)?;
        let learner = PixelLearner { core, obs: vec![0; obs_len], next: vec![0; obs_len] };
        // Frames an actor must still hold: the stacks of the n-step window behind it and of a reset, even if no
        // frame were shared between consecutive stacks (each step can add up to `stack` new frames).
        let ring_cap = 2 * (cfg.n_step + 2) * stack + 8;
        let mut actors = Vec::with_capacity(n_actors);
        for i in 0..n_actors {
            // The actors' copies start from the learner's weights; this draw only builds the layers.
            let mut rng = Pcg64::seed_from_u64(seed ^ INIT_STREAM);
            let net = QNetwork::new(&spec, &mut rng, &Device::Cpu)?;
            load_cnn_weights(&net, &initial)?;
            actors.push(PixelActor {
                id: i,
                env: AtariEnv::new(atari.clone())?,
                net,
                pool: None,
                nstep: NStep::new(cfg.n_step, cfg.gamma, 1, stack, 1).map_err(replay_err)?,
                rng: Pcg64::seed_from_u64((seed ^ ACTOR_STREAM).wrapping_add(i as u64)),
                epsilon: apex.epsilon,
                fixed_eps: apex_epsilon(i, n_actors),
                cfg: cfg.clone(),
                n_actors: n_actors as u64,
                n_actions,
                seed: seed + i as u64,
                stack,
                frame_len,
                obs: vec![0; obs_len],
                next_obs: vec![0; obs_len],
                ids: vec![0; stack],
                next_ids: vec![0; stack],
                ring: FrameRing::new(frame_len, ring_cap),
                qcache: QCache::new(cfg.n_step + 2, stack, n_actions),
                q_obs: vec![0.0; n_actions],
                q_next: vec![0.0; n_actions],
                started: false,
                steps: 0,
                send_batch: apex.send_batch,
            });
        }
        Ok(ApexPixelTrainer {
            cfg: cfg.clone(),
            apex: apex.clone(),
            atari,
            learner,
            run: ApexRun::new(actors, seed),
            eval_env: Some(probe),
            n_actions,
            obs_len,
        })
    }

    /// Number of actor threads.
    pub fn num_actors(&self) -> usize {
        self.run.num_actors()
    }

    /// The protocol counters (zero before training starts).
    pub fn counters(&self) -> CounterSnapshot {
        self.run.counters()
    }

    /// Gradient updates done so far.
    pub fn updates_done(&self) -> u64 {
        self.learner.core.updates
    }

    /// Transitions in the replay buffer.
    pub fn replay_len(&self) -> usize {
        self.learner.core.replay.len()
    }

    /// Bytes of one observation (`frame_stack * 84 * 84` for the Nature setting).
    pub fn obs_len(&self) -> usize {
        self.obs_len
    }

    /// Q-values `[rows, n_actions]` (row-major) of `obs`, whole observations of [`Self::obs_len`] bytes each,
    /// under the learner's online network.
    pub fn q_values(&self, obs: &[u8]) -> Result<Vec<f32>> {
        if obs.is_empty() || !obs.len().is_multiple_of(self.obs_len) {
            return Err(AgentError::Config(format!(
                "observation batch has {} bytes: must be a positive multiple of {} (one frame stack)",
                obs.len(),
                self.obs_len
            )));
        }
        let net = &self.learner.core.online;
        let mut shape = vec![obs.len() / self.obs_len];
        shape.extend_from_slice(&net.spec().obs_shape);
        let x = Tensor::from_slice(obs, shape, &self.learner.core.device).map_err(terr)?;
        net.forward(&x).and_then(|q| q.flatten_all()).and_then(|q| q.to_vec1::<f32>()).map_err(terr)
    }

    /// Stops the actors and returns the final counters (training cannot continue afterwards).
    pub fn shutdown(&mut self) -> Result<CounterSnapshot> {
        self.run.shutdown()
    }

    fn greedy(&self, obs: &[u8]) -> Result<usize> {
        let net = &self.learner.core.online;
        let mut shape = vec![1];
        shape.extend_from_slice(&net.spec().obs_shape);
        let x = Tensor::from_slice(obs, shape, &self.learner.core.device).map_err(terr)?;
        let a = net.forward(&x).and_then(|q| q.argmax(D::Minus1)).and_then(|a| a.to_vec1::<u32>()).map_err(terr)?;
        Ok(a[0] as usize)
    }
}

impl Trainer for ApexPixelTrainer {
    fn steps_done(&self) -> u64 {
        self.run.steps_done()
    }

    fn train(&mut self, until: u64, reporter: &mut dyn Reporter) -> Result<()> {
        let pool_cfg = self.apex.pool_config(&self.cfg);
        self.run.train(&mut self.learner, &pool_cfg, until, reporter)
    }

    fn evaluate(&mut self, episodes: usize, seed: u64) -> Result<EvalResult> {
        if self.eval_env.is_none() {
            self.eval_env = Some(AtariEnv::new(self.atari.clone())?);
        }
        let mut env = self.eval_env.take().expect("just set");
        let mut explore = EvalEpsilon::new(self.cfg.eval_epsilon, self.n_actions, seed);
        // Taken out while `greedy` borrows the trainer; put back whatever the result.
        let res = evaluate_atari(&mut env, episodes, seed, |obs| match explore.explore() {
            Some(a) => Ok(a),
            None => self.greedy(obs),
        });
        self.eval_env = Some(env);
        res
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        let mut meta = self.run.meta();
        meta.insert("observations".into(), serde_json::json!("atari u8 frame stacks"));
        meta.insert("game".into(), serde_json::json!(self.atari.game));
        self.learner.core.checkpoint(meta)
    }

    /// Restores everything but the replay buffer (see [`Trainer::resume`]).
    fn restore(&mut self, ckpt: &Checkpoint) -> Result<()> {
        self.resume(ckpt, None).map(|_| ())
    }

    /// Restores the learner (weights, target network, optimiser moments, replay generator, update count, and the
    /// replay buffer from `replay`) and the step and episode counters. Never exact: the actors' Atari envs
    /// restart new episodes (seeded from a seed derived from the run's seed and step, recorded in the next
    /// checkpoints as `env_seed`), the rate limiter starts counting afresh, and actor threads interleave
    /// nondeterministically in any case.
    fn resume(&mut self, ckpt: &Checkpoint, replay: Option<&Path>) -> Result<ResumeReport> {
        let mut report = ResumeReport::approximate(
            "Ape-X actors restart: each actor's Atari env starts a new episode and its exploration generator is \
             reseeded, and the rate limiter counts inserts afresh (actor threads interleave nondeterministically, \
             so an Ape-X run never repeats step for step anyway)",
        );
        self.learner.core.resume(ckpt, replay, &mut report)?;
        let w = cnn_weights(&self.learner.core.online)?;
        if let Some(actors) = self.run.actors_mut() {
            for a in actors.iter() {
                load_cnn_weights(&a.net, &w)?;
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

    /// Pong, truncated at 400 frames (100 agent steps), or `None` (with a SKIPPED line) without ROMs.
    fn pong(test: &str) -> Option<EnvSetup> {
        if let Err(e) = bellman_envs::atari::rom_path("Pong") {
            if std::env::var("BELLMAN_REQUIRE_ROMS").is_ok_and(|v| v == "1") {
                panic!("{test}: Atari ROMs are required (BELLMAN_REQUIRE_ROMS=1) but missing: {e}");
            }
            eprintln!("SKIPPED {test}: Atari ROMs not found ({e})");
            return None;
        }
        let options = ["preprocess=true", "frame_stack=4", "fire_reset=true", "max_num_frames_per_episode=400"];
        Some(EnvSetup { id: "ALE/Pong-v5".into(), options: options.map(String::from).to_vec() })
    }

    fn small(n_step: usize) -> DqnConfig {
        DqnConfig {
            network: Arch::NatureCnn,
            hidden: vec![16],
            n_step,
            buffer_size: 500,
            batch_size: 8,
            learning_starts: 100,
            ..DqnConfig::default()
        }
    }

    /// One actor of a fresh trainer, stepped `steps` times into one message.
    fn run_actor(
        cfg: &DqnConfig,
        env: &EnvSetup,
        steps: usize,
    ) -> (ApexPixelTrainer, PixelActor, ActorBatch<FrameTransitions>) {
        let mut t = ApexPixelTrainer::new(cfg, &ApexConfig::default(), 1, env, 5, "cpu").unwrap();
        let mut actor = t.run.take_actors().unwrap().remove(0);
        let mut b = ActorBatch::new(actor.new_payload());
        for _ in 0..steps {
            actor.step(&mut b).unwrap();
        }
        assert_eq!(b.env_steps, steps as u64);
        assert_eq!(b.priorities.len(), b.len());
        (t, actor, b)
    }

    /// Frames travel once per message, and the stacks the learner rebuilds are, byte for byte, the observations
    /// an independent env yields for the same seed and actions (across an episode boundary).
    #[test]
    fn messages_rebuild_the_exact_observations_with_each_frame_once() {
        let Some(env) = pong("messages_rebuild_the_exact_observations_with_each_frame_once") else { return };
        let (t, _actor, b) = run_actor(&small(1), &env, 150);
        let p = &b.payload;
        assert_eq!(b.len(), 150, "one-step transitions: one per step");
        assert_eq!(b.episodes.len(), 1, "100-step truncation: one episode ends within 150 steps");
        // One new frame per step plus a reset stack's frames per episode start (2 starts here).
        assert!(p.num_frames() <= 150 + 2 * 4, "{} frames for 150 transitions", p.num_frames());
        assert!(p.frames.len() * 6 < 150 * 2 * t.obs_len, "frames are sent once, not twice per stack");
        let ol = t.obs_len;
        let mut replay = AtariEnv::new(t.atari.clone()).unwrap();
        let (mut obs, mut next, mut ro, mut rn) = (vec![0u8; ol], vec![0u8; ol], vec![0u8; ol], vec![0u8; ol]);
        replay.reset_into(Some(5), &mut obs).unwrap();
        for i in 0..b.len() {
            p.write_stacks(i, &mut ro, &mut rn).unwrap();
            assert!(ro == obs, "transition {i}: observation differs");
            let out = replay.step_into(p.actions[i] as usize, &mut next).unwrap();
            assert!(rn == next, "transition {i}: next observation differs");
            assert_eq!(
                (p.rewards[i], p.terminated[i], p.truncated[i]),
                (out.reward as f32, out.terminated, out.truncated)
            );
            if out.terminated || out.truncated {
                replay.reset_into(None, &mut obs).unwrap();
            } else {
                obs.copy_from_slice(&next);
            }
        }
    }

    /// With `episodic_life` (Breakout, 5 lives) the actor sends a terminated transition at every lost life and
    /// continues the game, while its reported episodes are whole games with the raw score: replayed on an
    /// independent env with the message's actions (reset(None) after each end), every transition and rebuilt
    /// stack matches, the reported episodes are exactly the env's `info.episode`s, and there are 5 terminations
    /// per finished game.
    #[test]
    fn episodic_life_reports_whole_games_and_terminates_every_life() {
        let test = "episodic_life_reports_whole_games_and_terminates_every_life";
        if pong(test).is_none() {
            return;
        }
        let options =
            ["preprocess=true", "frame_stack=4", "fire_reset=true", "clip_rewards=true", "episodic_life=true"];
        let env = EnvSetup { id: "ALE/Breakout-v5".into(), options: options.map(String::from).to_vec() };
        let (t, _actor, b) = run_actor(&small(1), &env, 600);
        let p = &b.payload;
        let ol = t.obs_len;
        let mut replay = AtariEnv::new(t.atari.clone()).unwrap();
        let (mut obs, mut next, mut ro, mut rn) = (vec![0u8; ol], vec![0u8; ol], vec![0u8; ol], vec![0u8; ol]);
        replay.reset_into(Some(5), &mut obs).unwrap();
        let (mut games, mut terminated) = (Vec::new(), 0);
        for i in 0..b.len() {
            p.write_stacks(i, &mut ro, &mut rn).unwrap();
            assert!(ro == obs, "transition {i}: observation differs");
            let out = replay.step_into(p.actions[i] as usize, &mut next).unwrap();
            assert!(rn == next, "transition {i}: next observation differs");
            assert_eq!((p.rewards[i], p.terminated[i]), (out.reward as f32, out.terminated), "transition {i}");
            terminated += out.terminated as usize;
            games.extend(out.info.episode.map(|g| (g.ret, g.len)));
            if out.terminated || out.truncated {
                games.extend(replay.reset_into(None, &mut obs).unwrap().episode.map(|g| (g.ret, g.len)));
            } else {
                obs.copy_from_slice(&next);
            }
        }
        let sent: Vec<(f64, u64)> = b.episodes.iter().map(|e| (e.ret, e.len)).collect();
        assert_eq!(sent, games);
        assert!(!games.is_empty(), "no game over in 600 steps");
        assert!(terminated >= 5 * games.len() && terminated < 5 * games.len() + 5, "{terminated}, {games:?}");
    }

    /// Ape-X initial priorities of 3-step transitions: `|R + gamma^m max Q(s_m) - Q(s, a)|` under the actor's
    /// network, recomputed from the rebuilt stacks (so the cached Q-values were those of the right observations).
    #[test]
    fn n_step_priorities_match_a_fresh_computation() {
        let Some(env) = pong("n_step_priorities_match_a_fresh_computation") else { return };
        let (t, actor, b) = run_actor(&small(3), &env, 120);
        let p = &b.payload;
        assert_eq!(b.len(), 120 - 2, "3-step returns: the last 2 steps are still pending");
        assert!(p.discounts.iter().any(|&d| d < 0.99 * 0.99 * 0.99 + 1e-6 && d > 0.97), "some full 3-step returns");
        let ol = t.obs_len;
        let (mut ro, mut rn) = (vec![0u8; ol], vec![0u8; ol]);
        let (mut q, mut qn) = (vec![0f32; 6], vec![0f32; 6]);
        for i in 0..b.len() {
            p.write_stacks(i, &mut ro, &mut rn).unwrap();
            PixelActor::q_into(&actor.net, &ro, &mut q).unwrap();
            PixelActor::q_into(&actor.net, &rn, &mut qn).unwrap();
            let f = if p.terminated[i] { 0.0 } else { p.discounts[i] };
            let next_v = qn.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let want = (p.rewards[i] + f * next_v - q[p.actions[i] as usize]).abs();
            assert!((want - b.priorities[i]).abs() <= 1e-5 * want.max(1.0), "row {i}: {want} vs {}", b.priorities[i]);
        }
    }

    /// An actor thread runs candle's CPU kernels on a rayon pool of one thread: itself.
    #[test]
    fn an_actor_uses_a_one_thread_rayon_pool_of_its_own() {
        let Some(env) = pong("an_actor_uses_a_one_thread_rayon_pool_of_its_own") else { return };
        let mut t = ApexPixelTrainer::new(&small(1), &ApexConfig::default(), 1, &env, 0, "cpu").unwrap();
        let mut actor = t.run.take_actors().unwrap().remove(0);
        let (threads, index) = std::thread::spawn(move || {
            let mut b = ActorBatch::new(actor.new_payload());
            actor.step(&mut b).unwrap();
            (rayon::current_num_threads(), rayon::current_thread_index())
        })
        .join()
        .unwrap();
        assert_eq!((threads, index), (1, Some(0)));
    }

    #[test]
    fn frame_ids_follow_the_stack_shift_and_reset_padding() {
        let mut ring = FrameRing::new(2, 16);
        let mut ids = [0i64; 3];
        // Reset padding [a, a, a], then [a, a, b], then [a, b, c]: frames a, b, c stored once each.
        ring.assign(&[1, 1, 1, 1, 1, 1], None, &mut ids);
        assert_eq!(ids, [0, 0, 0]);
        let prev = ids;
        ring.assign(&[1, 1, 1, 1, 2, 2], Some(&prev), &mut ids);
        assert_eq!(ids, [0, 0, 1]);
        let prev = ids;
        ring.assign(&[1, 1, 2, 2, 3, 3], Some(&prev), &mut ids);
        assert_eq!(ids, [0, 1, 2]);
        // A stack that is not the shift of the previous one gets new ids for its changed frames.
        let prev = ids;
        ring.assign(&[9, 9, 2, 2, 3, 3], Some(&prev), &mut ids);
        assert_eq!(ids, [3, 4, 5]);
        assert_eq!(ring.get(3), Some(&[9u8, 9][..]));
        // Old frames leave the ring.
        for _ in 0..16 {
            ring.push(&[0, 0]);
        }
        assert_eq!(ring.get(3), None);
    }
}
