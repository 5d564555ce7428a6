//! DQN on Atari pixels (cargo feature `atari`): `u8` frame stacks from an [`AtariVecEnv`], stored once per frame
//! in a [`FrameStackStorage`], learned by the Nature CNN with the same update as the flat path
//! (`learn::td_update`, shared with the flat path).
//!
//! * Observations stay bytes on the host, in the replay buffer and on the way to the device; the network scales
//!   them by 1/255 there (Mnih et al. 2015; SB3's `NatureCNN`).
//! * Acting is epsilon-greedy over the vector env with one batched forward pass for the envs that act greedily.
//! * [`AtariVecEnv`] autoresets in Gymnasium's `NextStep` mode: the step after an episode's end only resets that
//!   env. That reset step stores no transition and is not counted in `steps_done` (which counts the actions the
//!   envs actually played, so `total_steps` means agent steps, 4 emulator frames each with `frame_skip = 4`).
//! * Episodes are the env's episodes: with `terminal_on_life_loss = true` (Gymnasium's `AtariPreprocessing`
//!   semantics) a lost life ends the episode *and the next reset restarts the game*; returns are those after
//!   reward clipping when `clip_rewards = true` (for Pong both are the game score).
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
use std::time::Instant;

use bellman_envs::Space;
use bellman_envs::atari::{AtariConfig, AtariEnv, AtariVecEnv, config_from_options};
use bellman_replay::{
    Batch, FrameReplay, FrameStackStorage, NStep, PrioritizedReplayBuffer, ReplayBuffer, Transition, TransitionSink,
};
use candle_core::{D, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::learn::{UpdateOut, UpdateScratch, td_update};
use super::network::{Arch, NetSpec, QNetwork, terr};
use super::optim::{Optim, OptimizerKind};
use super::{DqnConfig, EXPLORE_STREAM, INIT_STREAM, REPLAY_STREAM, Running, device, replay_err};
use crate::error::{AgentError, Result};
use crate::trainer::{Checkpoint, EnvSetup, EpisodeRecord, EvalResult, Reporter, Trainer};

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
    batch: Batch<u8, i64>,
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
    ep_ret: Vec<f64>,
    ep_len: Vec<u64>,
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
        let spec = NetSpec {
            arch: Arch::NatureCnn,
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
        let optim = match cfg.optimizer {
            OptimizerKind::Adam => Optim::adam(online.vars(), cfg.learning_rate, cfg.adam_eps)?,
            OptimizerKind::Rmsprop => Optim::rmsprop(online.vars(), cfg.rmsprop_params())?,
        };
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
            batch: Batch::new(),
            upd: UpdateScratch::default(),
            td: Vec::new(),
            last_obs: vec![0; n * obs_len],
            resetting: vec![false; n],
            greedy_mask: vec![false; n],
            greedy_buf: vec![0; n],
            actions: vec![0; n],
            ep_ret: vec![0.0; n],
            ep_len: vec![0; n],
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
                // NextStep autoreset: this step only reset env i; its observation starts a new episode.
                self.ep_ret[i] = 0.0;
                self.ep_len[i] = 0;
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
            self.ep_ret[i] += s.rewards[i];
            self.ep_len[i] += 1;
            if s.terminated[i] || s.truncated[i] {
                reporter.episode(&EpisodeRecord {
                    step: self.steps,
                    episode: self.episodes,
                    ret: self.ep_ret[i],
                    len: self.ep_len[i],
                    wall_time: elapsed,
                    actor: i,
                });
                self.episodes += 1;
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
            PixelReplay::Uniform(r) => r.sample(b, &mut self.replay_rng, &mut self.batch),
            PixelReplay::Prioritized(r) => {
                let beta = self.cfg.per_beta_at(self.steps);
                r.sample(b, beta, &mut self.replay_rng, &mut self.batch)
            }
        }
        .map_err(replay_err)?;
        let weighted = matches!(self.replay, PixelReplay::Prioritized(_));
        let UpdateOut { loss, q_taken, targets } = td_update(
            &self.cfg,
            &self.online,
            &self.target,
            &mut self.optim,
            &self.vars,
            &self.batch,
            weighted,
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
        let mut obs = vec![0u8; self.obs_len];
        let mut res = EvalResult { returns: Vec::with_capacity(episodes), lengths: Vec::with_capacity(episodes) };
        let mut act = [0usize];
        for ep in 0..episodes {
            let env = self.eval_env.as_mut().expect("just set");
            env.reset_into(Some(seed + ep as u64), &mut obs)?;
            let (mut ret, mut len) = (0.0, 0u64);
            loop {
                self.greedy_into(&obs, &mut act)?;
                let env = self.eval_env.as_mut().expect("just set");
                let out = env.step_into(act[0], &mut obs)?;
                ret += out.reward;
                len += 1;
                if out.terminated || out.truncated {
                    break;
                }
            }
            res.returns.push(ret);
            res.lengths.push(len);
        }
        Ok(res)
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        let cfg = serde_json::to_value(&self.cfg).map_err(|e| AgentError::Checkpoint(e.to_string()))?;
        Ok(Checkpoint {
            weights: self.online.to_safetensors()?,
            train_state: Some(self.target.to_safetensors()?),
            meta: serde_json::json!({
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
