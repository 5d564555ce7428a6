//! DQN on Atari pixels (cargo feature `atari`): `u8` frame stacks from an [`AtariVecEnv`], stored once per frame
//! in a [`FrameStackStorage`], learned by the Nature CNN with the same update as the flat path
//! (`learn::td_update_tensors`, shared with the flat path).
//!
//! * Observations stay bytes on the host, in the replay buffer and on the way to the device; the network scales
//!   them by 1/255 there (Mnih et al. 2015; SB3's `NatureCNN`). Minibatches are sampled as frame windows
//!   ([`WindowBatch`]): each frame a transition needs is copied and uploaded once, and `obs` / `next_obs` are
//!   `narrow` views of the uploaded window.
//! * Acting is epsilon-greedy over the vector env with one batched forward pass for the envs that act greedily.
//! * [`AtariVecEnv`] autoresets in Gymnasium's `NextStep` mode: the step after an episode's end only resets that
//!   env. That reset step stores no transition and is not counted in `steps_done` (which counts the actions the
//!   envs actually played, so `total_steps` means agent steps, 4 emulator frames each with `frame_skip = 4`).
//! * The learner sees the env's episodes and rewards: with `episodic_life = true` (SB3's `EpisodicLifeEnv`, the
//!   `AtariWrapper` default) a lost life is `terminated` (bootstrapping stops there) and the autoreset continues
//!   the same game; rewards are clipped with `clip_rewards = true`. The reporter (`episodes.csv`) gets whole
//!   *games* with their raw score, from the env's `info.episode` (what SB3's `Monitor` inside `AtariWrapper`
//!   logs): `len` counts the game's agent steps over all its lives. With Gymnasium's `terminal_on_life_loss`
//!   a lost life restarts the game, so there a game is one life.
//! * The trainer is built by the runner for every `ALE/<Game>-v5` id (see [`is_pixel_env`]); the env options
//!   must include `preprocess=true` (84x84 grayscale, frame skip) and `frame_stack` (4 for the Nature DQN).
//!
//! ```no_run
//! use bellman_agents::dqn::{DqnConfig, network::Arch, pixels::PixelDqnTrainer};
//! use bellman_agents::trainer::{EnvSetup, NullReporter, Trainer};
//! let cfg = DqnConfig { network: Arch::NatureCnn, hidden: vec![512], buffer_size: 10_000, ..DqnConfig::default() };
//! let env = EnvSetup { id: "ALE/Pong-v5".into(), options: vec!["preprocess=true".into(), "frame_stack=4".into()] };
//! let mut agent = PixelDqnTrainer::new(&cfg, &env, 0, "cpu").unwrap();
//! agent.train(1_000, &mut NullReporter).unwrap();
//! ```
use std::path::Path;
use std::time::Instant;

use bellman_envs::atari::{AtariConfig, AtariEnv, AtariVecEnv, config_from_options};
use bellman_envs::{EpisodeStats, Space};
use bellman_replay::{
    FrameReplay, FrameStackStorage, NStep, PrioritizedReplayBuffer, ReplayBuffer, Transition, TransitionSink,
    WindowBatch,
};
use candle_core::{D, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::learn::{Rows, UpdateOut, UpdateScratch, td_update_tensors};
use super::network::{Arch, QNetwork, terr};
use super::optim::Optim;
use super::{
    DqnConfig, EXPLORE_STREAM, INIT_STREAM, LOSS_SUM, OPT_PREFIX, Q_SUM, REPLAY_STREAM, Running, STATE_VERSION,
    derived_env_seed, device, replay_err,
};
use crate::error::{AgentError, Result};
use crate::trainer::{
    Checkpoint, EnvSetup, EpisodeRecord, EvalEpsilon, EvalResult, Reporter, ResumeReport, Trainer, pcg_from_json,
    pcg_to_json,
};

/// True for the env ids the pixel trainer handles: `ALE/<Game>-v5`.
///
/// ```
/// use bellman_agents::dqn::pixels::is_pixel_env;
/// assert!(is_pixel_env("ALE/Pong-v5"));
/// assert!(!is_pixel_env("CartPole-v1"));
/// ```
pub fn is_pixel_env(id: &str) -> bool {
    id.starts_with("ALE/")
}

/// The game of an `ALE/<Game>-v5` id.
fn game_of(id: &str) -> Result<&str> {
    id.strip_prefix("ALE/").and_then(|g| g.strip_suffix("-v5")).filter(|g| !g.is_empty()).ok_or_else(|| {
        AgentError::Unsupported(format!("env id {id:?}: the pixel DQN needs an id of the form ALE/<Game>-v5"))
    })
}

/// Uploads the frame windows of `w` once, as `[B, stack + shift, frame_shape..]` bytes, and returns the
/// observation and next-observation stacks as views of it (`narrow` on dim 1: frames `0..stack` and
/// `shift..shift + stack` of every row).
fn upload_window(w: &WindowBatch<i64>, frame_shape: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
    let mut shape = vec![w.len(), w.width];
    shape.extend_from_slice(frame_shape);
    let window = Tensor::from_slice(&w.frames, shape, device).map_err(terr)?;
    let obs = window.narrow(1, 0, w.stack).map_err(terr)?;
    let next_obs = window.narrow(1, w.shift, w.stack).map_err(terr)?;
    Ok((obs, next_obs))
}

/// The replay buffer of either kind, over frame-deduplicated storage.
#[derive(Debug)]
enum PixelReplay {
    Uniform(FrameReplay<i64>),
    Prioritized(PrioritizedReplayBuffer<FrameStackStorage<i64>>),
}

impl TransitionSink<u8, i64> for PixelReplay {
    fn push_transition(&mut self, env: usize, t: &Transition<'_, u8, i64>) -> bellman_replay::Result<()> {
        match self {
            PixelReplay::Uniform(b) => b.push_transition(env, t),
            PixelReplay::Prioritized(b) => b.push_transition(env, t),
        }
    }
}

/// DQN on stacked Atari frames; the runner builds it for `ALE/...` ids with `[agent] kind = "dqn"`.
pub struct PixelDqnTrainer {
    cfg: DqnConfig,
    seed: u64,
    device: Device,
    atari: AtariConfig,
    envs: AtariVecEnv,
    eval_env: Option<AtariEnv>,
    n_actions: usize,
    obs_len: usize,
    online: QNetwork,
    target: QNetwork,
    optim: Optim,
    vars: Vec<candle_core::Var>,
    replay: PixelReplay,
    nstep: Option<NStep<u8, i64>>,
    explore_rng: Pcg64,
    replay_rng: Pcg64,
    /// Sampled minibatch in frame-window layout (each frame a row needs once; see `gradient_step`).
    batch: WindowBatch<i64>,
    upd: UpdateScratch,
    td: Vec<f32>,
    /// Previous observation of every env (`n_envs * obs_len` bytes).
    last_obs: Vec<u8>,
    /// Which envs only reset at the current vector step (Gymnasium's `NextStep` autoreset).
    resetting: Vec<bool>,
    /// Which envs act greedily at the current step.
    greedy_mask: Vec<bool>,
    /// Greedy actions of every env (scratch of the batched forward pass).
    greedy_buf: Vec<usize>,
    actions: Vec<usize>,
    steps: u64,
    calls: u64,
    rollout: u64,
    episodes: u64,
    updates: u64,
    started: bool,
    start_time: Option<Instant>,
    running: Running,
    next_metrics: u64,
    learn_gate: u64,
    /// The seed the training envs were last reset with (env `i`: `env_seed + i`): the run's seed, or after a
    /// resume one derived from it and the step.
    env_seed: u64,
}

impl std::fmt::Debug for PixelDqnTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PixelDqnTrainer")
            .field("cfg", &self.cfg)
            .field("atari", &self.atari)
            .field("seed", &self.seed)
            .field("steps", &self.steps)
            .field("updates", &self.updates)
            .finish_non_exhaustive()
    }
}

impl PixelDqnTrainer {
    /// Builds pixel DQN for the registry env `env` (`ALE/<Game>-v5` with `preprocess=true`), seeded with `seed`,
    /// on `device` (`cpu`, `cuda`, `cuda:N`).
    pub fn new(cfg: &DqnConfig, env: &EnvSetup, seed: u64, device: &str) -> Result<Self> {
        let game = game_of(&env.id)?;
        let opts = env.parsed_options()?;
        let atari = config_from_options(&env.id, game, &opts)?;
        Self::with_atari_config(cfg, atari, seed, device)
    }

    /// Builds pixel DQN for envs made from `atari` (which must have preprocessing).
    pub fn with_atari_config(cfg: &DqnConfig, atari: AtariConfig, seed: u64, device: &str) -> Result<Self> {
        cfg.validate()?;
        if cfg.network != Arch::NatureCnn {
            return Err(AgentError::Config(format!(
                "network = {:?} on Atari frames: set network = \"nature_cnn\" in [agent]",
                cfg.network
            )));
        }
        let Some(pp) = atari.preprocessing else {
            return Err(AgentError::Unsupported(format!(
                "{}: the pixel DQN needs preprocessed frames; add env_options \"preprocess=true\" and \
                 \"frame_stack=4\"",
                atari.game
            )));
        };
        let device = device::parse_device(device)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, cfg.n_envs);
        let envs = AtariVecEnv::new(&atari, cfg.n_envs, threads)?;
        let n_actions = match envs.single_action_space() {
            Space::Discrete(n) => *n,
            other => return Err(AgentError::Unsupported(format!("DQN needs discrete actions, got {other}"))),
        };
        let obs_shape = envs.obs_shape().to_vec();
        let obs_len = envs.obs_len();
        let spec = cfg.net_spec(&obs_shape, n_actions);
        let mut init_rng = Pcg64::seed_from_u64(seed ^ INIT_STREAM);
        let online = QNetwork::new(&spec, &mut init_rng, &device)?;
        let target = QNetwork::new(&spec, &mut init_rng, &device)?;
        target.copy_from(&online)?;
        let optim = cfg.optimizer(online.vars())?;
        let frame_shape = [pp.screen_size, pp.screen_size];
        let storage =
            FrameStackStorage::<i64>::new(cfg.buffer_size, pp.frame_stack, &frame_shape, 1).map_err(replay_err)?;
        let replay = if cfg.prioritized {
            PixelReplay::Prioritized(
                PrioritizedReplayBuffer::new(storage, cfg.per_alpha, cfg.per_eps).map_err(replay_err)?,
            )
        } else {
            PixelReplay::Uniform(ReplayBuffer::from_storage(storage))
        };
        let nstep = if cfg.n_step > 1 {
            Some(NStep::new(cfg.n_step, cfg.gamma, cfg.n_envs, obs_len, 1).map_err(replay_err)?)
        } else {
            None
        };
        let n = cfg.n_envs;
        let vars = online.vars();
        Ok(PixelDqnTrainer {
            cfg: cfg.clone(),
            seed,
            device,
            atari,
            envs,
            eval_env: None,
            n_actions,
            obs_len,
            online,
            target,
            optim,
            vars,
            replay,
            nstep,
            explore_rng: Pcg64::seed_from_u64(seed ^ EXPLORE_STREAM),
            replay_rng: Pcg64::seed_from_u64(seed ^ REPLAY_STREAM),
            batch: WindowBatch::new(),
            upd: UpdateScratch::default(),
            td: Vec::new(),
            last_obs: vec![0; n * obs_len],
            resetting: vec![false; n],
            greedy_mask: vec![false; n],
            greedy_buf: vec![0; n],
            actions: vec![0; n],
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
            env_seed: seed,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DqnConfig {
        &self.cfg
    }

    /// The Atari env configuration.
    pub fn atari_config(&self) -> &AtariConfig {
        &self.atari
    }

    /// The online Q-network.
    pub fn online(&self) -> &QNetwork {
        &self.online
    }

    /// Gradient updates done so far.
    pub fn updates_done(&self) -> u64 {
        self.updates
    }

    /// Transitions in the replay buffer.
    pub fn replay_len(&self) -> usize {
        match &self.replay {
            PixelReplay::Uniform(b) => b.len(),
            PixelReplay::Prioritized(b) => b.len(),
        }
    }

    /// Bytes one observation takes (`frame_stack * 84 * 84` for the Nature setting).
    pub fn obs_len(&self) -> usize {
        self.obs_len
    }

    /// Q-values `[rows, n_actions]` (row-major) of `obs`, whole observations of [`Self::obs_len`] bytes each.
    pub fn q_values(&self, obs: &[u8]) -> Result<Vec<f32>> {
        if obs.is_empty() || !obs.len().is_multiple_of(self.obs_len) {
            return Err(AgentError::Config(format!(
                "observation batch has {} bytes: must be a positive multiple of {} (one frame stack)",
                obs.len(),
                self.obs_len
            )));
        }
        let mut shape = vec![obs.len() / self.obs_len];
        shape.extend_from_slice(&self.online.spec().obs_shape);
        let x = Tensor::from_slice(obs, shape, &self.device).map_err(terr)?;
        self.online.forward(&x).and_then(|q| q.flatten_all()).and_then(|q| q.to_vec1::<f32>()).map_err(terr)
    }

    /// Greedy actions of `obs` (one frame stack per row of `out`) from one batched forward pass.
    fn greedy_into(&self, obs: &[u8], out: &mut [usize]) -> Result<()> {
        let mut shape = vec![out.len()];
        shape.extend_from_slice(&self.online.spec().obs_shape);
        let x = Tensor::from_slice(obs, shape, &self.device).map_err(terr)?;
        let a = self.online.forward(&x).and_then(|q| q.argmax(D::Minus1)).and_then(|a| a.to_vec1::<u32>());
        for (o, a) in out.iter_mut().zip(a.map_err(terr)?) {
            *o = a as usize;
        }
        Ok(())
    }

    /// Epsilon-greedy actions for every env (uniform random before `learning_starts`, as SB3).
    fn select_actions(&mut self) -> Result<()> {
        let random_phase = self.steps < self.cfg.learning_starts;
        let eps = if random_phase { 1.0 } else { self.cfg.epsilon(self.steps) };
        let mut any_greedy = false;
        for (a, g) in self.actions.iter_mut().zip(self.greedy_mask.iter_mut()) {
            *g = !random_phase && self.explore_rng.random::<f64>() >= eps;
            if *g {
                any_greedy = true;
            } else {
                *a = self.explore_rng.random_range(0..self.n_actions);
            }
        }
        if any_greedy {
            // One forward pass over all envs (the exploring rows are ignored): the batch shape stays fixed.
            let mut greedy = std::mem::take(&mut self.greedy_buf);
            let res = self.greedy_into(&self.last_obs, &mut greedy);
            for ((a, g), q) in self.actions.iter_mut().zip(&self.greedy_mask).zip(&greedy) {
                if *g {
                    *a = *q;
                }
            }
            self.greedy_buf = greedy;
            res?;
        }
        Ok(())
    }

    /// One vector step: act, store the transitions, report finished episodes.
    fn env_step(&mut self, reporter: &mut dyn Reporter) -> Result<()> {
        self.select_actions()?;
        self.resetting.copy_from_slice(self.envs.autoreset_mask());
        let ol = self.obs_len;
        let elapsed = self.start_time.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let s = self.envs.step(&self.actions)?;
        for i in 0..self.cfg.n_envs {
            if self.resetting[i] {
                // NextStep autoreset: this step only reset env i; its observation starts a new episode (of a new
                // game, or with episodic_life of the same game after a lost life). A game that ended inside the
                // reset's own steps (AtariEnv's docs) is reported by that reset's info.
                if let Some(ep) = s.infos[i].episode {
                    report_game(reporter, &mut self.episodes, self.steps, &ep, elapsed, i);
                }
                continue;
            }
            let t = Transition {
                obs: &self.last_obs[i * ol..(i + 1) * ol],
                action: &[self.actions[i] as i64],
                reward: s.rewards[i] as f32,
                next_obs: &s.obs[i * ol..(i + 1) * ol],
                terminated: s.terminated[i],
                truncated: s.truncated[i],
                discount: self.cfg.gamma as f32,
            };
            match self.nstep.as_mut() {
                Some(n) => n.push(i, &t, &mut self.replay).map(|_| ()),
                None => self.replay.push_transition(i, &t),
            }
            .map_err(replay_err)?;
            self.steps += 1;
            // Whole games with their raw score (info.episode), not the clipped per-life episodes the learner sees.
            if let Some(ep) = s.infos[i].episode {
                report_game(reporter, &mut self.episodes, self.steps, &ep, elapsed, i);
            }
        }
        self.last_obs.copy_from_slice(s.obs);
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

    /// One gradient update on a minibatch from the replay buffer (public for benchmarks). The buffer must hold
    /// at least one transition.
    pub fn gradient_step(&mut self) -> Result<()> {
        let b = self.cfg.batch_size;
        match &mut self.replay {
            PixelReplay::Uniform(r) => r.sample_window(b, &mut self.replay_rng, &mut self.batch),
            PixelReplay::Prioritized(r) => {
                let beta = self.cfg.per_beta_at(self.steps);
                r.sample_window(b, beta, &mut self.replay_rng, &mut self.batch)
            }
        }
        .map_err(replay_err)?;
        let weighted = matches!(self.replay, PixelReplay::Prioritized(_));
        // One upload of the frame windows `[B, stack + shift, H, W]` (5 frames per row for one-step transitions
        // instead of 4 + 4); obs and next_obs are views of it on the device.
        let w = &self.batch;
        let (obs, next_obs) = upload_window(w, &self.online.spec().obs_shape[1..], &self.device)?;
        let rows = Rows {
            actions: &w.actions,
            rewards: &w.rewards,
            terminated: &w.terminated,
            discounts: &w.discounts,
            weights: weighted.then_some(w.weights.as_slice()),
        };
        let UpdateOut { loss, q_taken, targets } = td_update_tensors(
            &self.cfg,
            (&self.online, &self.target),
            &mut self.optim,
            &self.vars,
            (&obs, &next_obs),
            &rows,
            &mut self.upd,
            &self.device,
            (self.steps, self.updates),
        )?;
        self.updates += 1;
        if let PixelReplay::Prioritized(r) = &mut self.replay {
            // Schaul et al. 2016, Algorithm 1 line 12: new priorities from the TD errors of this batch.
            let td = (&q_taken - &targets).and_then(|d| d.to_vec1::<f32>()).map_err(terr)?;
            self.td.clear();
            self.td.extend_from_slice(&td);
            r.update_priorities(&self.batch.indices, &self.td).map_err(replay_err)?;
        }
        let qm = q_taken.detach().mean_all().map_err(terr)?;
        self.running.add(loss.detach(), qm)
    }

    fn report_metrics(&mut self, reporter: &mut dyn Reporter) -> Result<()> {
        let mut m = self.running.take_metrics(self.steps)?;
        m.epsilon = Some(self.cfg.epsilon(self.steps));
        m.extra = vec![("updates".into(), self.updates as f64), ("replay_len".into(), self.replay_len() as f64)];
        reporter.metrics(&m);
        Ok(())
    }
}

/// Checkpointing and resuming (see [`Trainer::resume`]).
impl PixelDqnTrainer {
    /// The train state: target network (its own tensor names), optimiser state and the metrics sums in progress
    /// as safetensors; counters, schedules and generators as JSON.
    fn train_state(&self) -> Result<(Vec<u8>, serde_json::Value)> {
        let ck = |e: candle_core::Error| AgentError::Checkpoint(e.to_string());
        let cpu = Device::Cpu;
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (n, v) in self.target.named_params() {
            tensors.push((n.clone(), v.as_tensor().to_device(&cpu).map_err(ck)?));
        }
        let opt = self.optim.export_state(&self.online.param_names(), OPT_PREFIX)?;
        tensors.extend(opt.tensors);
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
            "env_seed": self.env_seed,
            "replay_len": self.replay_len(),
            "replay_pushed": self.replay_pushed(),
        });
        Ok((bytes, meta))
    }

    /// Transitions ever pushed into the replay buffer: identifies the buffer of one checkpoint.
    fn replay_pushed(&self) -> u64 {
        use bellman_replay::Storage;
        match &self.replay {
            PixelReplay::Uniform(b) => b.storage().live().end,
            PixelReplay::Prioritized(b) => b.storage().live().end,
        }
    }

    /// Restores everything a checkpoint holds (all but the replay buffer) and restarts the training envs on new
    /// episodes; the report says so.
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
        if let Some(seed) = get("seed") {
            self.seed = seed;
        }
        self.steps = get("steps").unwrap_or(0);
        self.episodes = get("episodes").unwrap_or(0);
        self.updates = get("updates").unwrap_or(0);
        self.calls = get("vector_steps").unwrap_or(0);
        self.running = Running::default();
        match (&ckpt.train_state, get("state_version") == Some(STATE_VERSION)) {
            (Some(ts), true) => {
                let map = candle_core::safetensors::load_buffer(ts, &Device::Cpu)
                    .map_err(|e| bad(format!("cannot read the train state: {e}")))?;
                self.rollout = req("rollout")?;
                self.next_metrics = req("next_metrics")?;
                self.learn_gate = req("learn_gate")?;
                let opt = meta.get("optimizer").ok_or_else(|| bad("checkpoint meta lacks 'optimizer'".into()))?;
                let kind = opt.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
                let step =
                    opt.get("step").and_then(|k| k.as_u64()).ok_or_else(|| bad(format!("optimizer state {opt}")))?;
                let rng = meta.get("rng").ok_or_else(|| bad("checkpoint meta lacks 'rng'".into()))?;
                let (explore, replay) = (pcg_from_json(&rng["explore"])?, pcg_from_json(&rng["replay"])?);
                let names = self.online.param_names();
                self.optim.import_state(kind, step, &map, &names, OPT_PREFIX)?;
                (self.explore_rng, self.replay_rng) = (explore, replay);
                let dev = |t: &Tensor| t.to_device(&self.device).map_err(terr);
                self.running.loss = map.get(LOSS_SUM).map(dev).transpose()?;
                self.running.q = map.get(Q_SUM).map(dev).transpose()?;
                self.running.updates = req("running_updates")?;
            }
            _ => {
                report.not_exact(
                    "the checkpoint holds no optimiser or generator state (an older format): the optimiser \
                     restarts from zero moments",
                );
                self.rollout = 0;
                self.next_metrics = self.steps + self.cfg.metrics_every;
                self.learn_gate = self.steps + self.cfg.learning_starts.max(self.cfg.batch_size as u64);
            }
        }
        self.running.since_step = self.steps;
        let started = meta.get("started").and_then(|v| v.as_bool()).unwrap_or(self.steps > 0);
        if started {
            let seed = derived_env_seed(self.seed, self.steps);
            self.restart_envs(seed)?;
            report.not_exact(format!(
                "the Atari envs restart their episodes (rebuilding them would replay every ALE step of the run): \
                 training envs reseeded with {seed} (derived from the seed and step); the network, optimiser, \
                 generators, counters and replay buffer continue as in the uninterrupted run"
            ));
        } else {
            self.started = false;
        }
        Ok(report)
    }

    /// Resets every training env with `seed` (env `i`: `seed + i`) on a new episode, dropping the episodes and
    /// n-step windows in progress.
    fn restart_envs(&mut self, seed: u64) -> Result<()> {
        let obs = self.envs.reset(Some(seed))?;
        self.last_obs.copy_from_slice(obs);
        self.resetting.fill(false);
        if self.nstep.is_some() {
            let c = &self.cfg;
            self.nstep = Some(NStep::new(c.n_step, c.gamma, c.n_envs, self.obs_len, 1).map_err(replay_err)?);
        }
        self.env_seed = seed;
        self.started = true;
        self.start_time = Some(Instant::now());
        self.running.since_time = self.start_time;
        self.running.since_step = self.steps;
        Ok(())
    }

    /// Loads the replay buffer written by [`Trainer::save_replay`], checking it fits this config and, when
    /// `pushed` is given, that it is the buffer of that checkpoint.
    fn load_replay(&mut self, path: &Path, pushed: Option<u64>) -> Result<()> {
        use bellman_replay::Storage;
        let want = match &self.replay {
            PixelReplay::Uniform(b) => b.storage(),
            PixelReplay::Prioritized(b) => b.storage(),
        };
        let (cap, shape) = (want.capacity(), want.obs_shape().to_vec());
        let check = |s: &FrameStackStorage<i64>| -> Result<()> {
            if (s.capacity(), s.obs_shape(), s.action_dim()) != (cap, shape.as_slice(), 1) {
                return Err(AgentError::Checkpoint(format!(
                    "replay buffer {} holds capacity {}, frame stacks of shape {:?} and actions of {} values; this \
                     run needs buffer_size {cap}, {shape:?} and 1",
                    path.display(),
                    s.capacity(),
                    s.obs_shape(),
                    s.action_dim()
                )));
            }
            match pushed {
                Some(n) if n != s.live().end => Err(AgentError::Checkpoint(format!(
                    "replay buffer {} holds the first {} transitions of the run, the checkpoint was taken after \
                     {n}: it belongs to another checkpoint",
                    path.display(),
                    s.live().end
                ))),
                _ => Ok(()),
            }
        };
        let loaded = match &self.replay {
            PixelReplay::Uniform(_) => {
                let b = FrameReplay::<i64>::load(path).map_err(replay_err)?;
                check(b.storage())?;
                PixelReplay::Uniform(b)
            }
            PixelReplay::Prioritized(_) => {
                let b = PrioritizedReplayBuffer::<FrameStackStorage<i64>>::load(path).map_err(replay_err)?;
                check(b.storage())?;
                PixelReplay::Prioritized(b)
            }
        };
        self.replay = loaded;
        Ok(())
    }
}

/// Reports one finished game (`info.episode` of an [`AtariEnv`]) of env `env` as episode number `*count`.
fn report_game(reporter: &mut dyn Reporter, count: &mut u64, step: u64, ep: &EpisodeStats, wall_time: f64, env: usize) {
    reporter.episode(&EpisodeRecord { step, episode: *count, ret: ep.ret, len: ep.len, wall_time, actor: env });
    *count += 1;
}

/// Runs `episodes` evaluation episodes of an Atari env (seeded `seed, seed + 1, ...`), choosing each action with
/// `act` from the current `u8` frame stack: the evaluation loop of the pixel trainers (single-process and Ape-X).
///
/// Each evaluation episode is a whole *game* scored with its raw score, as SB3's `evaluate_policy` counts
/// episodes on a `Monitor`-wrapped `AtariWrapper` env: on the training env's configuration (so with
/// `episodic_life` a lost life ends an env episode, and the env's unseeded reset continues the game with the
/// same FIRE reset as in training), play on until the env reports the game's end in `info.episode`, and record
/// that game's raw score and agent steps, whatever `clip_rewards` is.
pub(crate) fn evaluate_atari(
    env: &mut AtariEnv,
    episodes: usize,
    seed: u64,
    mut act: impl FnMut(&[u8]) -> Result<usize>,
) -> Result<EvalResult> {
    let mut obs = vec![0u8; env.obs_len()];
    let mut res = EvalResult { returns: Vec::with_capacity(episodes), lengths: Vec::with_capacity(episodes) };
    for ep in 0..episodes {
        env.reset_into(Some(seed + ep as u64), &mut obs)?;
        let game = loop {
            let a = act(&obs)?;
            let out = env.step_into(a, &mut obs)?;
            if let Some(game) = out.info.episode {
                break game;
            }
            if out.terminated || out.truncated {
                // An env episode (a lost life), not the game: the unseeded reset continues the game (or, if the
                // game ended inside that reset, reports it).
                if let Some(game) = env.reset_into(None, &mut obs)?.episode {
                    break game;
                }
            }
        };
        res.returns.push(game.ret);
        res.lengths.push(game.len);
    }
    Ok(res)
}

impl Trainer for PixelDqnTrainer {
    fn steps_done(&self) -> u64 {
        self.steps
    }

    fn train(&mut self, until: u64, reporter: &mut dyn Reporter) -> Result<()> {
        if !self.started {
            let obs = self.envs.reset(Some(self.seed))?;
            self.last_obs.copy_from_slice(obs);
            self.started = true;
            self.start_time = Some(Instant::now());
            self.running.since_time = self.start_time;
            self.running.since_step = self.steps;
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
        if self.eval_env.is_none() {
            self.eval_env = Some(AtariEnv::new(self.atari.clone())?);
        }
        let mut env = self.eval_env.take().expect("just set");
        let mut explore = EvalEpsilon::new(self.cfg.eval_epsilon, self.n_actions, seed);
        let mut act = [0usize];
        // Taken out while `greedy_into` borrows the trainer; put back whatever the result.
        let res = evaluate_atari(&mut env, episodes, seed, |obs| match explore.explore() {
            Some(a) => Ok(a),
            None => self.greedy_into(obs, &mut act).map(|()| act[0]),
        });
        self.eval_env = Some(env);
        res
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        let cfg = serde_json::to_value(&self.cfg).map_err(|e| AgentError::Checkpoint(e.to_string()))?;
        let (train_state, state) = self.train_state()?;
        let mut meta = serde_json::json!({
            "algorithm": "dqn",
            "observations": "atari u8 frame stacks",
            "game": self.atari.game,
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
                            PyTorch's names) and the metrics sums in progress (resume.*); the replay buffer is saved \
                            separately; the Atari envs are not saved (a resume restarts their episodes)",
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

    /// Restores the networks, the optimiser's moments, the exploration and replay generators, the counters and
    /// the metrics sums in progress exactly, and the replay buffer from `replay` (written by
    /// [`Trainer::save_replay`]). Not exact once training has started: the Atari envs restart their episodes,
    /// seeded with a seed derived from the run's seed and step (recorded as `env_seed` in later checkpoints),
    /// since rebuilding them would mean replaying every ALE step of the run. Without `replay`, learning waits
    /// `max(learning_starts, batch_size)` steps for the buffer to refill.
    fn resume(&mut self, ckpt: &Checkpoint, replay: Option<&Path>) -> Result<ResumeReport> {
        let mut report = self.restore_state(ckpt)?;
        let saved = ckpt.meta.get("replay_len").and_then(|v| v.as_u64());
        match replay {
            Some(p) => self.load_replay(p, ckpt.meta.get("replay_pushed").and_then(|v| v.as_u64()))?,
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
            PixelReplay::Uniform(b) => b.memory_bytes(),
            PixelReplay::Prioritized(b) => b.memory_bytes(),
        } as u64)
    }

    fn save_replay(&self, path: &Path) -> Result<bool> {
        match &self.replay {
            PixelReplay::Uniform(b) => b.save(path),
            PixelReplay::Prioritized(b) => b.save(path),
        }
        .map_err(replay_err)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use bellman_replay::Batch;

    use super::*;
    use crate::dqn::learn::td_update;
    use crate::dqn::network::NetSpec;
    use crate::dqn::network::{Activation, Init};

    /// Breakout as SB3's `AtariWrapper` (episodic life, FIRE reset, 4 frames, no sticky actions), with clipped
    /// rewards or not; `None` (with a SKIPPED line, a panic under `BELLMAN_REQUIRE_ROMS=1`) without ROMs.
    fn breakout(test: &str, clip_rewards: bool) -> Option<AtariConfig> {
        if let Err(e) = bellman_envs::atari::rom_path("Breakout") {
            if std::env::var("BELLMAN_REQUIRE_ROMS").is_ok_and(|v| v == "1") {
                panic!("{test}: Atari ROMs are required (BELLMAN_REQUIRE_ROMS=1) but missing: {e}");
            }
            eprintln!("SKIPPED {test}: Atari ROMs not found ({e})");
            return None;
        }
        let p = bellman_envs::atari::Preprocessing { clip_rewards, ..bellman_envs::atari::Preprocessing::nature() };
        let mut cfg = AtariConfig::preprocessed("Breakout", p);
        cfg.repeat_action_probability = 0.0;
        Some(cfg)
    }

    /// Evaluation scores whole games with the raw score: on the clipped, episodic training config it returns,
    /// per seed, the sum of the *unclipped* rewards of all 5 lives and the game's agent steps, computed by hand
    /// on an unclipped env played through its episodic resets with the same actions.
    #[test]
    fn evaluation_scores_whole_games_with_the_raw_score() {
        let Some(clipped) = breakout("evaluation_scores_whole_games_with_the_raw_score", true) else { return };
        let unclipped = breakout("evaluation_scores_whole_games_with_the_raw_score", false).unwrap();
        // A fixed action cycle that moves the paddle (Breakout: NOOP, FIRE, RIGHT, LEFT).
        let policy = |t: usize| [1, 2, 2, 0, 3, 3, 3, 0, 2][t % 9];
        let mut env = AtariEnv::new(clipped).unwrap();
        let mut t = 0;
        let res = evaluate_atari(&mut env, 2, 40, |_| {
            t += 1;
            Ok(policy(t - 1))
        })
        .unwrap();
        let mut by_hand = AtariEnv::new(unclipped).unwrap();
        let mut obs = vec![0u8; by_hand.obs_len()];
        let mut t = 0;
        for (ep, (&ret, &len)) in res.returns.iter().zip(&res.lengths).enumerate() {
            by_hand.reset_into(Some(40 + ep as u64), &mut obs).unwrap();
            let (mut score, mut steps, mut lives_lost) = (0.0, 0u64, 0);
            loop {
                let s = by_hand.step_into(policy(t), &mut obs).unwrap();
                t += 1;
                score += s.reward;
                steps += 1;
                if s.info.lives == Some(0) {
                    break;
                }
                if s.terminated {
                    lives_lost += 1;
                    by_hand.reset_into(None, &mut obs).unwrap();
                }
            }
            assert_eq!(lives_lost, 4, "game {ep}");
            assert_eq!((ret, len), (score, steps), "game {ep}");
        }
        assert!(res.returns.iter().any(|&r| r > 1.0), "some bricks hit: {res:?}");
    }

    /// Online and target network (the same seed gives the same weights) with a fresh Adam.
    fn learner(spec: &NetSpec) -> (QNetwork, QNetwork, Optim, Vec<candle_core::Var>) {
        let mut rng = Pcg64::seed_from_u64(5);
        let online = QNetwork::new(spec, &mut rng, &Device::Cpu).unwrap();
        let target = QNetwork::new(spec, &mut rng, &Device::Cpu).unwrap();
        let vars = online.vars();
        let optim = Optim::adam(vars.clone(), 1e-3, 1e-8).unwrap();
        (online, target, optim, vars)
    }

    fn host(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// The window upload with `narrow` views gives the same TD update, bit for bit, as uploading both full stacks
    /// (the path it replaces): one-step rows (shift 1), a reset-padded first stack, and a batch mixing one- and
    /// two-step rows (which falls back to full stacks, shift 4). Double DQN and PER weights on.
    #[test]
    fn window_views_give_the_same_update_as_full_stacks() {
        let spec = NetSpec {
            arch: Arch::NatureCnn,
            obs_shape: vec![4, 84, 84],
            hidden: vec![16],
            activation: Activation::Relu,
            dueling: false,
            n_actions: 3,
            init: Init::Torch,
        };
        let cfg = DqnConfig { network: Arch::NatureCnn, double_dqn: true, ..DqnConfig::default() };
        let fl = 84 * 84;
        let mut rng = Pcg64::seed_from_u64(0);
        let frames: Vec<u8> = (0..40 * fl).map(|_| rng.random()).collect();
        let first: Vec<u8> = frames[..fl].repeat(4);
        let mut buf = ReplayBuffer::frame_stack::<i64>(64, 4, &[84, 84], 1).unwrap();
        for t in 0..30 {
            // slot 0: the reset-padded first stack [f0, f0, f0, f0] -> [f0, f0, f0, f1]; slot 6: a two-step row
            let (obs, next) = match t {
                0 => (first.clone(), [&first[..3 * fl], &frames[fl..2 * fl]].concat()),
                6 => (frames[t * fl..(t + 4) * fl].to_vec(), frames[(t + 2) * fl..(t + 6) * fl].to_vec()),
                _ => (frames[t * fl..(t + 4) * fl].to_vec(), frames[(t + 1) * fl..(t + 5) * fl].to_vec()),
            };
            let t = Transition {
                obs: &obs,
                action: &[(t % 3) as i64],
                reward: t as f32 * 0.1,
                next_obs: &next,
                terminated: t % 11 == 10,
                truncated: false,
                discount: 0.99,
            };
            buf.push(&t).unwrap();
        }
        for (slots, shift) in [(vec![0usize, 1, 2, 3, 9], 1), (vec![0, 6, 13], 4)] {
            let mut w = WindowBatch::new();
            buf.gather_window(&slots, &mut w).unwrap();
            assert_eq!(w.shift, shift, "slots {slots:?}");
            w.weights.iter_mut().enumerate().for_each(|(i, x)| *x = 1.0 - 0.1 * i as f32);
            let mut b = Batch::new();
            w.to_batch(&mut b);
            let mut full = Batch::new();
            buf.gather(&slots, &mut full).unwrap();
            assert_eq!((&b.obs, &b.next_obs), (&full.obs, &full.next_obs));

            let (on_a, tg_a, mut opt_a, vars_a) = learner(&spec);
            let mut scratch = UpdateScratch::default();
            let a = td_update(&cfg, &on_a, &tg_a, &mut opt_a, &vars_a, &b, true, &mut scratch, &Device::Cpu, (0, 0))
                .unwrap();

            let (on_b, tg_b, mut opt_b, vars_b) = learner(&spec);
            let (obs, next_obs) = upload_window(&w, &[84, 84], &Device::Cpu).unwrap();
            assert_eq!(obs.dims(), &[slots.len(), 4, 84, 84]);
            let rows = Rows {
                actions: &w.actions,
                rewards: &w.rewards,
                terminated: &w.terminated,
                discounts: &w.discounts,
                weights: Some(&w.weights),
            };
            let out = td_update_tensors(
                &cfg,
                (&on_b, &tg_b),
                &mut opt_b,
                &vars_b,
                (&obs, &next_obs),
                &rows,
                &mut scratch,
                &Device::Cpu,
                (0, 0),
            )
            .unwrap();
            assert_eq!(host(&a.loss), host(&out.loss), "slots {slots:?}");
            assert_eq!(host(&a.q_taken), host(&out.q_taken));
            assert_eq!(host(&a.targets), host(&out.targets));
            for (x, y) in vars_a.iter().zip(&vars_b) {
                assert_eq!(host(x.as_tensor()), host(y.as_tensor()), "weights after the step");
            }
        }
    }
}
