//! The contract between agents and the experiment runner (crate `bellman-experiments`).
//!
//! The runner drives training in chunks: `train(until)` runs env steps and reports every finished episode and
//! periodic learner metrics to a [`Reporter`]; between chunks the runner evaluates (`evaluate`), writes
//! checkpoints (`checkpoint`) and logs. Agents never touch the file system or print: the runner does.
//!
//! ```
//! use bellman_agents::trainer::{EvalResult};
//! let e = EvalResult { returns: vec![1.0, 3.0], lengths: vec![1, 3] };
//! assert_eq!(e.mean(), 2.0);
//! assert_eq!(e.std(), 1.0);
//! ```
use std::path::Path;

use crate::error::{AgentError, Result};

/// One finished training episode.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EpisodeRecord {
    /// Total env steps (all envs, all actors) when the episode finished.
    pub step: u64,
    /// Index of the episode (0-based, counting all envs and actors).
    pub episode: u64,
    /// Undiscounted return.
    pub ret: f64,
    /// Length in steps.
    pub len: u64,
    /// Seconds since training started.
    pub wall_time: f64,
    /// Which actor (or sub-env) played it; 0 for single-actor runs.
    pub actor: usize,
}

/// Periodic learner metrics (one row of `metrics.csv`; evaluation columns are filled by the runner).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainMetrics {
    /// Total env steps.
    pub step: u64,
    /// Mean loss since the last report.
    pub loss: Option<f64>,
    /// Mean Q-value of the taken actions in the sampled batches since the last report.
    pub mean_q: Option<f64>,
    /// Current exploration epsilon.
    pub epsilon: Option<f64>,
    /// Env steps per second since the last report.
    pub steps_per_sec: Option<f64>,
    /// Further named figures (e.g. Ape-X counters, policy lag), in a stable order.
    pub extra: Vec<(String, f64)>,
}

/// Receives what an agent reports while training.
pub trait Reporter {
    /// A training episode finished.
    fn episode(&mut self, e: &EpisodeRecord);
    /// Periodic metrics.
    fn metrics(&mut self, m: &TrainMetrics);
    /// Total env steps so far (for progress bars); called often, keep it cheap.
    fn progress(&mut self, _step: u64) {}
    /// True when the user asked to stop (Ctrl-C): `train` returns early at the next safe point.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// A reporter that drops everything (for tests and benchmarks).
#[derive(Debug, Default, Clone)]
pub struct NullReporter;

impl Reporter for NullReporter {
    fn episode(&mut self, _e: &EpisodeRecord) {}
    fn metrics(&mut self, _m: &TrainMetrics) {}
}

/// A reporter that keeps everything in memory.
#[derive(Debug, Default, Clone)]
pub struct VecReporter {
    /// Every episode reported.
    pub episodes: Vec<EpisodeRecord>,
    /// Every metrics row reported.
    pub metrics: Vec<TrainMetrics>,
}

impl Reporter for VecReporter {
    fn episode(&mut self, e: &EpisodeRecord) {
        self.episodes.push(*e);
    }
    fn metrics(&mut self, m: &TrainMetrics) {
        self.metrics.push(m.clone());
    }
}

/// Returns of greedy evaluation episodes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EvalResult {
    /// Undiscounted return of each episode.
    pub returns: Vec<f64>,
    /// Length of each episode.
    pub lengths: Vec<u64>,
}

impl EvalResult {
    /// Mean return (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.returns.is_empty() { 0.0 } else { self.returns.iter().sum::<f64>() / self.returns.len() as f64 }
    }
    /// Population standard deviation of the returns (as SB3's `evaluate_policy` reports, numpy's default).
    pub fn std(&self) -> f64 {
        if self.returns.is_empty() {
            return 0.0;
        }
        let m = self.mean();
        (self.returns.iter().map(|r| (r - m) * (r - m)).sum::<f64>() / self.returns.len() as f64).sqrt()
    }
}

/// What a checkpoint holds. The runner writes `weights` as `<name>.safetensors` and `meta` as `<name>.json`,
/// atomically, and hands the same bytes back to [`Trainer::restore`].
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The policy's parameters as a safetensors file (for DQN: PyTorch-compatible tensor names).
    pub weights: Vec<u8>,
    /// Everything else needed to resume training exactly (target network, optimizer moments), as safetensors;
    /// `None` when the weights are the whole state.
    pub train_state: Option<Vec<u8>>,
    /// Counters, schedules, rng state and the like, as JSON.
    pub meta: serde_json::Value,
}

/// An agent the runner can train, evaluate and checkpoint.
pub trait Trainer: Send {
    /// Env steps taken so far (all envs, all actors).
    fn steps_done(&self) -> u64;
    /// Trains until `steps_done() >= until` or `reporter.stop_requested()`.
    fn train(&mut self, until: u64, reporter: &mut dyn Reporter) -> Result<()>;
    /// Runs `episodes` greedy episodes on a separate env instance seeded `seed, seed + 1, ...`.
    fn evaluate(&mut self, episodes: usize, seed: u64) -> Result<EvalResult>;
    /// The current state as a checkpoint.
    fn checkpoint(&self) -> Result<Checkpoint>;
    /// Restores a state written by [`Trainer::checkpoint`] (weights only, or everything when `train_state` is
    /// present). Corrupt or mismatched data is an error, never a panic.
    fn restore(&mut self, ckpt: &Checkpoint) -> Result<()>;

    /// Restores `ckpt` to continue training (`bellman train --resume`), with the replay buffer from `replay`
    /// (a file written by [`Trainer::save_replay`]) when given, and says whether the continuation is exact:
    /// bit-identical to the run that was never interrupted.
    ///
    /// The default restores with [`Trainer::restore`] and reports an approximate resume (weights and counters
    /// only); agents that save their whole training state override it.
    fn resume(&mut self, ckpt: &Checkpoint, replay: Option<&Path>) -> Result<ResumeReport> {
        self.restore(ckpt)?;
        let mut r = ResumeReport::approximate(
            "this agent restores its weights and step counters only: optimiser state, random generators, episodes \
             in progress and the replay buffer start afresh",
        );
        if replay.is_some() {
            r.notes.push("this agent cannot load a saved replay buffer; it refills its buffer".into());
        }
        Ok(r)
    }

    /// Bytes the replay buffer that [`Trainer::save_replay`] would write occupies in memory; `None` when the
    /// agent has no buffer it can save (the default).
    fn replay_bytes(&self) -> Option<u64> {
        None
    }

    /// Writes the replay buffer to `path` (atomically, in `bellman_replay`'s versioned format) for
    /// [`Trainer::resume`]; `Ok(false)` when the agent has no buffer it can save (the default).
    fn save_replay(&self, _path: &Path) -> Result<bool> {
        Ok(false)
    }
}

/// How a [`Trainer::resume`] went: exact (the resumed run is bit-identical to the uninterrupted one) or not, and
/// why not.
///
/// ```
/// use bellman_agents::trainer::ResumeReport;
/// let mut r = ResumeReport::exact();
/// assert!(r.exact && r.notes.is_empty());
/// r.not_exact("the replay buffer was not saved");
/// assert!(!r.exact);
/// assert_eq!(r.to_string(), "not exact: the replay buffer was not saved");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResumeReport {
    /// True when the continuation is bit-identical to an uninterrupted run.
    pub exact: bool,
    /// What was not restored (empty when exact).
    pub notes: Vec<String>,
}

impl ResumeReport {
    /// An exact resume with no notes.
    pub fn exact() -> Self {
        ResumeReport { exact: true, notes: Vec::new() }
    }
    /// An approximate resume, with the reason.
    pub fn approximate(why: impl Into<String>) -> Self {
        ResumeReport { exact: false, notes: vec![why.into()] }
    }
    /// Marks the resume approximate and adds the reason.
    pub fn not_exact(&mut self, why: impl Into<String>) {
        self.exact = false;
        self.notes.push(why.into());
    }
}

impl std::fmt::Display for ResumeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.exact { f.write_str("exact") } else { write!(f, "not exact: {}", self.notes.join("; ")) }
    }
}

/// The state of a PCG-64 generator (`rand_pcg::Pcg64`, also `bellman_envs::rng::EnvRng`) as JSON: its two
/// 128-bit words as hex strings (`{"state": "0x...", "increment": "0x..."}`), since JSON numbers stop at 64 bits.
/// [`pcg_from_json`] gives back the generator in exactly that state.
///
/// ```
/// use rand::{Rng, SeedableRng};
/// use bellman_agents::trainer::{pcg_from_json, pcg_to_json};
/// let mut a = rand_pcg::Pcg64::seed_from_u64(7);
/// a.random::<u64>();
/// let mut b = pcg_from_json(&pcg_to_json(&a).unwrap()).unwrap();
/// assert_eq!(a.random::<u64>(), b.random::<u64>());
/// ```
pub fn pcg_to_json(rng: &rand_pcg::Pcg64) -> Result<serde_json::Value> {
    // rand_pcg's serde derive names the fields `state` and `increment`; serde_json writes u128 as digits.
    let text = serde_json::to_string(rng).map_err(|e| AgentError::Checkpoint(format!("cannot save an rng: {e}")))?;
    let w: PcgWords =
        serde_json::from_str(&text).map_err(|e| AgentError::Checkpoint(format!("cannot save an rng: {e}")))?;
    Ok(serde_json::json!({ "state": format!("{:#x}", w.state), "increment": format!("{:#x}", w.increment) }))
}

/// Reads a generator written by [`pcg_to_json`]; anything else is an error naming the bad value.
pub fn pcg_from_json(v: &serde_json::Value) -> Result<rand_pcg::Pcg64> {
    let word = |k: &str| -> Result<u128> {
        let s = v
            .get(k)
            .and_then(|x| x.as_str())
            .ok_or_else(|| AgentError::Checkpoint(format!("rng state {v}: expected a hex string field '{k}'")))?;
        u128::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| {
            AgentError::Checkpoint(format!("rng state field '{k}' = {s:?} is not a 128-bit hex number: {e}"))
        })
    };
    let w = PcgWords { state: word("state")?, increment: word("increment")? };
    if w.increment & 1 == 0 {
        return Err(AgentError::Checkpoint(format!("rng increment {:#x} is even: not a PCG state", w.increment)));
    }
    let text = serde_json::to_string(&w).map_err(|e| AgentError::Checkpoint(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| AgentError::Checkpoint(format!("cannot restore an rng: {e}")))
}

/// The fields of `rand_pcg::Pcg64` as its serde derive names them.
#[derive(serde::Serialize, serde::Deserialize)]
struct PcgWords {
    state: u128,
    increment: u128,
}

/// Which env an agent trains on: a registry id and its options (`key=value`, as `bellman_envs::Options`).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct EnvSetup {
    /// Registry id, e.g. `CartPole-v1`.
    pub id: String,
    /// Options as `key=value` strings.
    pub options: Vec<String>,
}

impl EnvSetup {
    /// An env with default options.
    pub fn new(id: impl Into<String>) -> Self {
        EnvSetup { id: id.into(), options: Vec::new() }
    }
    /// Parses the options.
    pub fn parsed_options(&self) -> Result<bellman_envs::Options> {
        Ok(bellman_envs::Options::parse(&self.options)?)
    }
}

/// Epsilon-greedy exploration of an evaluation policy: with probability `epsilon` a uniformly random action.
/// Nature DQN evaluates with epsilon 0.05 (Mnih et al. 2015, Methods); 0 is greedy and draws nothing. The
/// generator is seeded from the evaluation seed, so an evaluation is reproducible.
///
/// ```
/// use bellman_agents::trainer::EvalEpsilon;
/// let mut greedy = EvalEpsilon::new(0.0, 4, 7);
/// assert!((0..100).all(|_| greedy.explore().is_none()));
/// let mut random = EvalEpsilon::new(1.0, 4, 7);
/// assert!((0..100).all(|_| random.explore().is_some_and(|a| a < 4)));
/// ```
#[derive(Debug, Clone)]
pub struct EvalEpsilon {
    epsilon: f64,
    n_actions: usize,
    rng: rand_pcg::Pcg64,
}

impl EvalEpsilon {
    /// Exploration with `epsilon` over `n_actions` actions, seeded from the evaluation `seed`.
    pub fn new(epsilon: f64, n_actions: usize, seed: u64) -> Self {
        use rand::SeedableRng;
        // A stream apart from the env seeds (`seed + episode`): the golden-ratio constant of splitmix64.
        let rng = rand_pcg::Pcg64::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15);
        EvalEpsilon { epsilon, n_actions: n_actions.max(1), rng }
    }

    /// `Some(random action)` with probability epsilon, `None` (act greedily) otherwise.
    pub fn explore(&mut self) -> Option<usize> {
        use rand::Rng;
        if self.epsilon <= 0.0 {
            return None;
        }
        (self.rng.random::<f64>() < self.epsilon).then(|| self.rng.random_range(0..self.n_actions))
    }
}

/// Runs `episodes` episodes of `env` (seeded `seed, seed + 1, ...`) choosing each action with `act` from the
/// current flat observation, and returns their returns and lengths: the greedy-evaluation loop every agent with
/// flat observations shares.
///
/// ```
/// use bellman_agents::trainer::evaluate_episodes;
/// let mut env = bellman_envs::make("CartPole-v1").unwrap();
/// let r = evaluate_episodes(env.as_mut(), 2, 0, |_obs| Ok(0)).unwrap();
/// assert_eq!(r.returns.len(), 2);
/// assert!(r.lengths.iter().all(|&l| l < 500));
/// ```
pub fn evaluate_episodes(
    env: &mut dyn bellman_envs::DynEnv,
    episodes: usize,
    seed: u64,
    mut act: impl FnMut(&[f32]) -> Result<usize>,
) -> Result<EvalResult> {
    let mut obs = vec![0.0f32; env.observation_space().flat_dim()];
    let mut res = EvalResult { returns: Vec::with_capacity(episodes), lengths: Vec::with_capacity(episodes) };
    for ep in 0..episodes {
        env.reset_into(Some(seed + ep as u64), &mut obs)?;
        let (mut ret, mut len) = (0.0, 0u64);
        loop {
            let a = act(&obs)?;
            let out = env.step_into(bellman_envs::ActionValue::Discrete(a), &mut obs)?;
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
