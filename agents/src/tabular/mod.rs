//! Tabular planning (policy evaluation, value iteration, policy iteration on any [`bellman_envs::Mdp`]) and
//! learning (Q-learning, SARSA, Expected SARSA on any env with discrete observations and actions).
//!
//! * [`planning`]: dynamic programming on a [`planning::CompiledMdp`] (flat CSR arrays, parallel sweeps).
//! * [`learning`]: TD control with epsilon-greedy exploration, per-episode seeding.
//! * [`TabularTrainer`]: a TD learner behind the [`crate::trainer::Trainer`] contract, for `bellman train`.
//!
//! ```
//! use bellman_agents::tabular::planning::{CompiledMdp, ViOptions, value_iteration};
//! let mut b = CompiledMdp::builder(1, 1).unwrap();
//! b.push(1.0, 0, 1.0, false).unwrap();
//! b.end_action().unwrap();
//! let sol = value_iteration(&b.build().unwrap(), &ViOptions::new(0.5)).unwrap();
//! assert!((sol.values[0] - 2.0).abs() < 1e-9); // 1 / (1 - 0.5)
//! ```
use std::collections::HashMap;
use std::time::Instant;

use bellman_envs::TabularEnv;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::trainer::{
    Checkpoint, EnvSetup, EpisodeRecord, EvalResult, Reporter, ResumeReport, TrainMetrics, Trainer, pcg_from_json,
    pcg_to_json,
};

pub mod learning;
pub mod planning;

use learning::{EpisodeInProgress, TdLearner};

/// Which TD control algorithm a tabular learner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TdAlgorithm {
    /// Off-policy: target `r + gamma * max_a Q(s', a)` (Watkins 1989).
    #[default]
    QLearning,
    /// On-policy: target `r + gamma * Q(s', a')` with `a'` the next action actually taken.
    Sarsa,
    /// Target `r + gamma * E[Q(s', A)]` under the epsilon-greedy policy (van Seijen et al. 2009).
    ExpectedSarsa,
}

impl TdAlgorithm {
    /// The name used in configs (`q_learning`, `sarsa`, `expected_sarsa`).
    pub fn name(self) -> &'static str {
        match self {
            TdAlgorithm::QLearning => "q_learning",
            TdAlgorithm::Sarsa => "sarsa",
            TdAlgorithm::ExpectedSarsa => "expected_sarsa",
        }
    }
}

/// Configuration of a tabular TD learner (the `[agent]` table of an experiment with `kind = "tabular"`).
///
/// ```
/// use bellman_agents::tabular::{TabularConfig, TdAlgorithm};
/// let cfg = TabularConfig { algorithm: TdAlgorithm::Sarsa, gamma: 1.0, alpha: 0.5, ..Default::default() };
/// assert!(cfg.validate().is_ok());
/// assert!(TabularConfig { gamma: 1.5, ..cfg }.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TabularConfig {
    /// `q_learning` (default), `sarsa` or `expected_sarsa`.
    pub algorithm: TdAlgorithm,
    /// Discount factor in `[0, 1]`. Default 0.99.
    pub gamma: f64,
    /// Step size in `(0, 1]` (at the first episode when decaying). Default 0.1.
    pub alpha: f64,
    /// Final step size in `(0, 1]`, reached linearly after `decay_episodes`; default none (constant `alpha`).
    pub alpha_final: Option<f64>,
    /// Exploration probability in `[0, 1]` (at the first episode when decaying). Default 0.1.
    pub epsilon: f64,
    /// Final exploration probability in `[0, 1]` after `decay_episodes`; default none (constant `epsilon`).
    pub epsilon_final: Option<f64>,
    /// Episodes of the linear decay of `alpha` and `epsilon` (0 = constant). Default 0.
    pub decay_episodes: u64,
    /// Initial value of every `Q(s, a)` (optimistic values explore more). Default 0.
    pub q_init: f64,
    /// Stop training after this many episodes even if the step budget is not spent; default none.
    pub max_episodes: Option<u64>,
    /// Greedy evaluation episodes are cut after this many steps (envs without a time limit, such as
    /// CliffWalking, would otherwise loop forever under a poor greedy policy). Default 10,000.
    pub eval_max_steps: u64,
}

impl Default for TabularConfig {
    fn default() -> Self {
        TabularConfig {
            algorithm: TdAlgorithm::QLearning,
            gamma: 0.99,
            alpha: 0.1,
            alpha_final: None,
            epsilon: 0.1,
            epsilon_final: None,
            decay_episodes: 0,
            q_init: 0.0,
            max_episodes: None,
            eval_max_steps: 10_000,
        }
    }
}

impl TabularConfig {
    /// Checks every field; the message names the bad value and the accepted range.
    pub fn validate(&self) -> Result<()> {
        let in_range = |name: &str, v: f64, lo_open: bool, lo: f64, hi: f64| -> Result<()> {
            let ok = v.is_finite() && (if lo_open { v > lo } else { v >= lo }) && v <= hi;
            if ok {
                Ok(())
            } else {
                let open = if lo_open { "(" } else { "[" };
                Err(AgentError::Config(format!("{name} = {v} is outside {open}{lo}, {hi}]")))
            }
        };
        in_range("gamma", self.gamma, false, 0.0, 1.0)?;
        in_range("alpha", self.alpha, true, 0.0, 1.0)?;
        if let Some(a) = self.alpha_final {
            in_range("alpha_final", a, true, 0.0, 1.0)?;
        }
        in_range("epsilon", self.epsilon, false, 0.0, 1.0)?;
        if let Some(e) = self.epsilon_final {
            in_range("epsilon_final", e, false, 0.0, 1.0)?;
        }
        if !self.q_init.is_finite() {
            return Err(AgentError::Config(format!("q_init = {} must be finite", self.q_init)));
        }
        if self.eval_max_steps == 0 {
            return Err(AgentError::Config("eval_max_steps = 0 must be at least 1".into()));
        }
        if self.max_episodes == Some(0) {
            return Err(AgentError::Config("max_episodes = 0 must be at least 1 (or left out)".into()));
        }
        Ok(())
    }
}

/// Name of the `Q` table in a tabular checkpoint's safetensors (shape `[n_states, n_actions]`, `F64`).
pub const Q_TENSOR: &str = "q";
/// `format` field of a tabular checkpoint's JSON meta.
pub const CHECKPOINT_FORMAT: &str = "bellman-tabular-v1";

/// A tabular TD learner the experiment runner drives through [`Trainer`].
///
/// Training plays episodes on an env built by [`bellman_envs::make_tabular`] (time limit included) and
/// reports each finished episode. Episode `k` reseeds the env and the learner from `(seed, k)`; a checkpoint
/// also holds the episode in progress (state, next action, return, the learner's generator and the episode's
/// actions, which replayed on the env reseeded for that episode rebuild it), so a restored run continues exactly
/// as the uninterrupted one, wherever the checkpoint was taken.
///
/// ```
/// use bellman_agents::tabular::{TabularConfig, TabularTrainer};
/// use bellman_agents::trainer::EnvSetup;
/// let err = TabularTrainer::new(&TabularConfig::default(), &EnvSetup::new("CartPole-v1"), 0).unwrap_err();
/// assert!(err.to_string().contains("CartPole-v1"), "{err}");
/// ```
pub struct TabularTrainer {
    cfg: TabularConfig,
    setup: EnvSetup,
    seed: u64,
    env: Box<dyn TabularEnv>,
    eval_env: Option<Box<dyn TabularEnv>>,
    learner: TdLearner,
    started: Instant,
}

impl std::fmt::Debug for TabularTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TabularTrainer")
            .field("cfg", &self.cfg)
            .field("setup", &self.setup)
            .field("seed", &self.seed)
            .field("episodes", &self.learner.episodes())
            .field("steps", &self.learner.steps())
            .finish()
    }
}

fn make_env(setup: &EnvSetup) -> Result<Box<dyn TabularEnv>> {
    Ok(bellman_envs::make_tabular(&setup.id, &setup.parsed_options()?)?)
}

impl TabularTrainer {
    /// Builds the learner for `env` seeded with `seed`; the env must have discrete observations and actions.
    pub fn new(cfg: &TabularConfig, env: &EnvSetup, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let e = make_env(env)?;
        let learner = TdLearner::for_env(cfg, &*e, seed)?;
        Ok(TabularTrainer {
            cfg: cfg.clone(),
            setup: env.clone(),
            seed,
            env: e,
            eval_env: None,
            learner,
            started: Instant::now(),
        })
    }

    /// The learner (its `Q` table and counters).
    pub fn learner(&self) -> &TdLearner {
        &self.learner
    }

    /// Episodes finished.
    pub fn episodes_done(&self) -> u64 {
        self.learner.episodes()
    }
}

impl Trainer for TabularTrainer {
    fn steps_done(&self) -> u64 {
        self.learner.steps()
    }

    /// Trains until `until` steps, the episode budget (`max_episodes`, checked between episodes), or a stop
    /// request; reports every finished episode and one metrics row per call.
    fn train(&mut self, until: u64, reporter: &mut dyn Reporter) -> Result<()> {
        let (t0, s0) = (Instant::now(), self.learner.steps());
        while self.learner.steps() < until && !reporter.stop_requested() {
            if !self.learner.in_episode() && self.cfg.max_episodes.is_some_and(|m| self.learner.episodes() >= m) {
                break;
            }
            let episode = self.learner.episodes();
            if let Some(e) = self.learner.step(&mut *self.env)? {
                reporter.episode(&EpisodeRecord {
                    step: self.learner.steps(),
                    episode,
                    ret: e.ret,
                    len: e.len,
                    wall_time: self.started.elapsed().as_secs_f64(),
                    actor: 0,
                });
            }
            reporter.progress(self.learner.steps());
        }
        if reporter.stop_requested() {
            // Stopped early (Ctrl-C): the row would sit at a step an uninterrupted run never reports at, and a
            // resumed run reports this chunk's row at its end as the uninterrupted one does.
            return Ok(());
        }
        let dt = t0.elapsed().as_secs_f64();
        let done = self.learner.steps() - s0;
        reporter.metrics(&TrainMetrics {
            step: self.learner.steps(),
            epsilon: Some(self.learner.epsilon()),
            steps_per_sec: (dt > 0.0).then(|| done as f64 / dt),
            extra: vec![("episodes".into(), self.learner.episodes() as f64)],
            ..Default::default()
        });
        Ok(())
    }

    fn evaluate(&mut self, episodes: usize, seed: u64) -> Result<EvalResult> {
        if self.eval_env.is_none() {
            self.eval_env = Some(make_env(&self.setup)?);
        }
        let env = self.eval_env.as_mut().expect("built above");
        let policy = self.learner.greedy_policy();
        let (returns, lengths) =
            learning::rollout_policy(&mut **env, &policy, episodes, seed, self.cfg.eval_max_steps)?;
        Ok(EvalResult { returns, lengths })
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        let bytes: Vec<u8> = self.learner.q().iter().flat_map(|x| x.to_le_bytes()).collect();
        let shape = vec![self.learner.num_states(), self.learner.num_actions()];
        let view = TensorView::new(Dtype::F64, shape, &bytes).map_err(|e| AgentError::Checkpoint(e.to_string()))?;
        let info = HashMap::from([("format".to_string(), CHECKPOINT_FORMAT.to_string())]);
        let weights = safetensors::serialize([(Q_TENSOR, view)], Some(info))
            .map_err(|e| AgentError::Checkpoint(e.to_string()))?;
        let meta = serde_json::json!({
            "format": CHECKPOINT_FORMAT,
            "algorithm": self.cfg.algorithm.name(),
            "env": self.setup.id,
            "n_states": self.learner.num_states(),
            "n_actions": self.learner.num_actions(),
            "seed": self.seed,
            "episodes": self.learner.episodes(),
            "steps": self.learner.steps(),
            "episode_in_progress": match self.learner.episode_in_progress() {
                None => serde_json::Value::Null,
                Some(e) => serde_json::json!({
                    "state": e.state,
                    "action": e.action,
                    // the bits: JSON floats need not round-trip exactly
                    "ret_bits": e.ret.to_bits(),
                    "len": e.len,
                    "actions": e.actions,
                    "rng": pcg_to_json(&e.rng)?,
                }),
            },
        });
        Ok(Checkpoint { weights, train_state: None, meta })
    }

    /// Restores the `Q` table, the counters and the episode in progress (see [`Trainer::resume`]).
    fn restore(&mut self, ckpt: &Checkpoint) -> Result<()> {
        self.resume(ckpt, None).map(|_| ())
    }

    /// Restores the `Q` table and, when the meta has them, the seed, the episode and step counters and the
    /// episode in progress: exact. A checkpoint without `episode_in_progress` (an older format) drops an episode
    /// in progress (training resumes at the next episode with that episode's seeds) and says so.
    fn resume(&mut self, ckpt: &Checkpoint, _replay: Option<&std::path::Path>) -> Result<ResumeReport> {
        let mut report = self.restore_table(ckpt)?;
        let bad = |m: String| AgentError::Checkpoint(m);
        match ckpt.meta.get("episode_in_progress") {
            None => report.not_exact(
                "the checkpoint does not say whether an episode was in progress (an older format): training \
                 resumes at the start of the next episode",
            ),
            Some(serde_json::Value::Null) => {}
            Some(e) => {
                let num = |k: &str| {
                    e.get(k).and_then(|v| v.as_u64()).ok_or_else(|| bad(format!("episode_in_progress.{k} in {e}")))
                };
                let actions = e
                    .get("actions")
                    .and_then(|a| a.as_array())
                    .and_then(|a| a.iter().map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok())).collect())
                    .ok_or_else(|| bad(format!("episode_in_progress.actions in {e}")))?;
                let ep = EpisodeInProgress {
                    state: num("state")? as usize,
                    action: num("action")? as usize,
                    ret: f64::from_bits(num("ret_bits")?),
                    len: num("len")?,
                    actions,
                    rng: pcg_from_json(e.get("rng").unwrap_or(&serde_json::Value::Null))?,
                };
                if !self.learner.resume_episode(&mut *self.env, ep)? {
                    report.not_exact(
                        "replaying the episode in progress did not bring the env back to its checkpointed state: \
                         training resumes at the start of the next episode",
                    );
                }
            }
        }
        Ok(report)
    }
}

impl TabularTrainer {
    /// Restores the `Q` table, the seed and the counters (no episode in progress).
    fn restore_table(&mut self, ckpt: &Checkpoint) -> Result<ResumeReport> {
        let bad = |m: String| AgentError::Checkpoint(m);
        let st = safetensors::SafeTensors::deserialize(&ckpt.weights)
            .map_err(|e| bad(format!("weights are not a safetensors file: {e}")))?;
        let t = st.tensor(Q_TENSOR).map_err(|e| bad(format!("no tensor '{Q_TENSOR}' in the weights: {e}")))?;
        let (ns, na) = (self.learner.num_states(), self.learner.num_actions());
        if t.dtype() != Dtype::F64 {
            return Err(bad(format!("tensor '{Q_TENSOR}' has dtype {:?}, expected F64", t.dtype())));
        }
        if t.shape() != [ns, na] {
            return Err(bad(format!(
                "tensor '{Q_TENSOR}' has shape {:?}, expected [{ns}, {na}] for env '{}'",
                t.shape(),
                self.setup.id
            )));
        }
        let q: Vec<f64> =
            t.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8"))).collect();
        let counter = |k: &str| -> Result<u64> {
            match ckpt.meta.get(k) {
                None => Ok(0),
                Some(v) => v.as_u64().ok_or_else(|| bad(format!("meta field '{k}' is {v}, expected an integer >= 0"))),
            }
        };
        if let Some(f) = ckpt.meta.get("format")
            && f.as_str() != Some(CHECKPOINT_FORMAT)
        {
            return Err(bad(format!("meta format is {f}, expected \"{CHECKPOINT_FORMAT}\"")));
        }
        let (episodes, steps) = (counter("episodes")?, counter("steps")?);
        let mut report = ResumeReport::exact();
        if ckpt.meta.get("seed").is_some() {
            self.seed = counter("seed")?;
            self.learner = TdLearner::for_env(&self.cfg, &*self.env, self.seed)?;
        } else {
            report.not_exact("the checkpoint does not name its seed: the episodes continue with this run's seed");
        }
        self.learner.set_state(q, episodes, steps)?;
        Ok(report)
    }
}
