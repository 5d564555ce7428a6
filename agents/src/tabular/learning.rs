//! Learning from interaction: Q-learning, SARSA and Expected SARSA (Sutton and Barto, 2nd ed., sections 6.4-6.6)
//! on any [`Env`] with discrete observations and actions.
//!
//! * Behaviour: epsilon-greedy; the greedy action breaks ties between equal `Q` values uniformly at random (the
//!   book's convention, which matters early on when `Q` is all zeros).
//! * Targets: `terminated` ends the MDP (target `r`, no bootstrap); `truncated` (a time limit) bootstraps from the
//!   next state as usual and then ends the episode.
//! * Step size and epsilon: constant, or linear from a start to a final value over a number of episodes.
//! * Seeding: episode `k` reseeds both the env (`reset(Some(..))`) and the agent's generator from `(seed, k)`, so
//!   a run is reproducible and resumes exactly from a checkpoint taken between episodes; one taken mid-episode
//!   resumes exactly too with [`TdLearner::episode_in_progress`] and [`TdLearner::resume_episode`] (the
//!   episode's actions replayed on the env reseeded for it).
//!
//! ```
//! use bellman_agents::tabular::{TabularConfig, TdAlgorithm, learning::{MdpEnv, TableMdp, run_episodes}};
//! use bellman_envs::mdp::{Outcome, TransitionTable};
//! // A corridor 0 - 1 - 2: action 1 moves right (reaching 2 ends the episode with reward 1), action 0 stays.
//! let mut t = TransitionTable::builder(3, 2);
//! for s in 0..3 {
//!     t.push(Outcome { prob: 1.0, next_state: s, reward: 0.0, terminal: s == 2 });
//!     t.end_action();
//!     let n = (s + 1).min(2);
//!     t.push(Outcome { prob: 1.0, next_state: n, reward: if n == 2 { 1.0 } else { 0.0 }, terminal: n == 2 });
//!     t.end_action();
//! }
//! let mut env = MdpEnv::new(TableMdp::new(t.build().unwrap(), vec![1.0, 0.0, 0.0]).unwrap());
//! let cfg = TabularConfig { algorithm: TdAlgorithm::QLearning, alpha: 0.5, epsilon: 0.1, gamma: 0.9, ..Default::default() };
//! let run = run_episodes(&cfg, &mut env, 200, 7).unwrap();
//! assert_eq!(run.learner.greedy_action(0), Some(1));
//! assert_eq!(run.learner.greedy_action(3), None);
//! assert_eq!(run.returns.len(), 200);
//! ```
use bellman_envs::mdp::{sample_categorical, sample_outcome};
use bellman_envs::rng::EnvRng;
use bellman_envs::{Env, EnvError, Info, Mdp, Outcome, Space, Step, TransitionTable};
use rand::{Rng, SeedableRng};

use super::{TabularConfig, TdAlgorithm};
use crate::error::{AgentError, Result};

/// A linear schedule: `start` at episode 0, `end` from episode `episodes` on (constant when `episodes` is 0).
///
/// ```
/// use bellman_agents::tabular::learning::Schedule;
/// let s = Schedule { start: 1.0, end: 0.0, episodes: 10 };
/// assert_eq!(s.at(5), 0.5);
/// assert_eq!(s.at(20), 0.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Value at episode 0.
    pub start: f64,
    /// Value from episode `episodes` on.
    pub end: f64,
    /// Episodes of the linear ramp (0: constant `start`).
    pub episodes: u64,
}

impl Schedule {
    /// The value for episode `k`.
    pub fn at(&self, k: u64) -> f64 {
        if self.episodes == 0 {
            self.start
        } else if k >= self.episodes {
            self.end
        } else {
            self.start + (self.end - self.start) * (k as f64 / self.episodes as f64)
        }
    }
}

/// SplitMix64's finaliser (Steele, Lea and Flood, 2014): decorrelates the per-episode seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The env seed of episode `k` of a run seeded `seed`.
pub fn episode_env_seed(seed: u64, k: u64) -> u64 {
    mix(mix(seed) ^ k.wrapping_mul(2))
}

fn episode_agent_seed(seed: u64, k: u64) -> u64 {
    mix(mix(seed) ^ k.wrapping_mul(2).wrapping_add(1))
}

/// The episode in progress.
#[derive(Debug, Clone, Copy)]
struct Current {
    s: usize,
    /// The next action (chosen already, for SARSA).
    a: usize,
    ret: f64,
    len: u64,
}

/// A finished episode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeEnd {
    /// Undiscounted return.
    pub ret: f64,
    /// Steps.
    pub len: u64,
}

/// A tabular TD learner: the `Q` table, counters and the per-episode generator.
#[derive(Debug, Clone)]
pub struct TdLearner {
    cfg: TabularConfig,
    alpha: Schedule,
    epsilon: Schedule,
    n_states: usize,
    n_actions: usize,
    q: Vec<f64>,
    seed: u64,
    episodes: u64,
    steps: u64,
    rng: EnvRng,
    cur: Option<Current>,
    eps_now: f64,
    alpha_now: f64,
    /// Actions taken so far in the episode in progress.
    ep_actions: Vec<u32>,
}

/// An episode in progress as a checkpoint saves it ([`TdLearner::episode_in_progress`]); with the `Q` table and
/// the counters it is the learner's whole state.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeInProgress {
    /// The current state.
    pub state: usize,
    /// The next action, already chosen (SARSA's `a'`).
    pub action: usize,
    /// Return so far.
    pub ret: f64,
    /// Steps so far.
    pub len: u64,
    /// Every action taken so far in the episode: replayed on the env reseeded for the episode, they rebuild the
    /// env's state (including its generator) exactly.
    pub actions: Vec<u32>,
    /// The learner's generator.
    pub rng: EnvRng,
}

impl TdLearner {
    /// A learner for `n_states` x `n_actions` with `Q` filled with `cfg.q_init`.
    pub fn new(cfg: &TabularConfig, n_states: usize, n_actions: usize, seed: u64) -> Result<Self> {
        cfg.validate()?;
        if n_states == 0 || n_actions == 0 {
            return Err(AgentError::Unsupported(format!(
                "a Q table needs at least one state and one action, got {n_states} x {n_actions}"
            )));
        }
        Ok(TdLearner {
            cfg: cfg.clone(),
            alpha: Schedule {
                start: cfg.alpha,
                end: cfg.alpha_final.unwrap_or(cfg.alpha),
                episodes: cfg.decay_episodes,
            },
            epsilon: Schedule {
                start: cfg.epsilon,
                end: cfg.epsilon_final.unwrap_or(cfg.epsilon),
                episodes: cfg.decay_episodes,
            },
            n_states,
            n_actions,
            q: vec![cfg.q_init; n_states * n_actions],
            seed,
            episodes: 0,
            steps: 0,
            rng: EnvRng::seed_from_u64(episode_agent_seed(seed, 0)),
            cur: None,
            eps_now: cfg.epsilon,
            alpha_now: cfg.alpha,
            ep_actions: Vec::new(),
        })
    }

    /// A learner sized for `env`, whose spaces must both be discrete.
    pub fn for_env<E: Env<Obs = usize, Action = usize> + ?Sized>(
        cfg: &TabularConfig,
        env: &E,
        seed: u64,
    ) -> Result<Self> {
        let (ns, na) = discrete_sizes(env.observation_space(), env.action_space())?;
        Self::new(cfg, ns, na, seed)
    }

    /// The `Q` table, state-major (`q[s * n_actions + a]`).
    pub fn q(&self) -> &[f64] {
        &self.q
    }

    /// Replaces the `Q` table (same size) and the counters, and drops any episode in progress: the next step
    /// starts episode `episodes` with its own seeds, exactly as an uninterrupted run would.
    pub fn set_state(&mut self, q: Vec<f64>, episodes: u64, steps: u64) -> Result<()> {
        if q.len() != self.q.len() {
            return Err(AgentError::Checkpoint(format!(
                "Q table has {} entries, expected {} states x {} actions = {}",
                q.len(),
                self.n_states,
                self.n_actions,
                self.q.len()
            )));
        }
        if let Some(i) = q.iter().position(|x| !x.is_finite()) {
            return Err(AgentError::Checkpoint(format!("Q table entry {i} is {}, expected a finite number", q[i])));
        }
        self.q = q;
        self.episodes = episodes;
        self.steps = steps;
        self.cur = None;
        Ok(())
    }

    /// The episode in progress (None between episodes), for a checkpoint.
    pub fn episode_in_progress(&self) -> Option<EpisodeInProgress> {
        self.cur.map(|c| EpisodeInProgress {
            state: c.s,
            action: c.a,
            ret: c.ret,
            len: c.len,
            actions: self.ep_actions.clone(),
            rng: self.rng.clone(),
        })
    }

    /// Continues the episode in progress `ep` after [`TdLearner::set_state`] (whose `episodes` is the number of
    /// the episode in progress): resets `env` with that episode's seed and replays its actions without learning.
    /// Returns `Ok(false)`, with no episode in progress (the next step starts episode `episodes` afresh), when
    /// the replayed env does not end in `ep.state` (an env that is not deterministic given seed and actions).
    ///
    /// ```
    /// use bellman_agents::tabular::{TabularConfig, learning::TdLearner};
    /// let mut env = bellman_envs::make_tabular("FrozenLake-v1", &Default::default()).unwrap();
    /// let cfg = TabularConfig::default();
    /// let mut a = TdLearner::for_env(&cfg, &*env, 3).unwrap();
    /// while a.step(&mut *env).unwrap().is_some() || a.episode_in_progress().is_none_or(|e| e.len < 2) {}
    /// let ep = a.episode_in_progress().unwrap();
    /// // a new process: a fresh env and learner, the same state
    /// let mut env2 = bellman_envs::make_tabular("FrozenLake-v1", &Default::default()).unwrap();
    /// let mut b = TdLearner::for_env(&cfg, &*env2, 3).unwrap();
    /// b.set_state(a.q().to_vec(), a.episodes(), a.steps()).unwrap();
    /// assert!(b.resume_episode(&mut *env2, ep).unwrap());
    /// for _ in 0..200 {
    ///     assert_eq!(a.step(&mut *env).unwrap(), b.step(&mut *env2).unwrap());
    /// }
    /// assert_eq!(a.q(), b.q());
    /// ```
    pub fn resume_episode<E: Env<Obs = usize, Action = usize> + ?Sized>(
        &mut self,
        env: &mut E,
        ep: EpisodeInProgress,
    ) -> Result<bool> {
        let bad = |m: String| Err(AgentError::Checkpoint(m));
        if ep.state >= self.n_states || ep.action >= self.n_actions {
            return bad(format!(
                "episode in progress at state {} with action {}: outside the {} x {} Q table",
                ep.state, ep.action, self.n_states, self.n_actions
            ));
        }
        if ep.actions.len() as u64 != ep.len || ep.len == 0 {
            return bad(format!("episode in progress of length {} with {} logged actions", ep.len, ep.actions.len()));
        }
        if let Some(a) = ep.actions.iter().find(|&&a| a as usize >= self.n_actions) {
            return bad(format!("logged action {a} is outside the env's {} actions", self.n_actions));
        }
        self.cur = None;
        let k = self.episodes;
        let (mut s, _) = env.reset(Some(episode_env_seed(self.seed, k)))?;
        for &a in &ep.actions {
            let st = env.step(a as usize)?;
            if st.terminated || st.truncated {
                return Ok(false);
            }
            s = st.obs;
        }
        if s != ep.state {
            return Ok(false);
        }
        self.eps_now = self.epsilon.at(k);
        self.alpha_now = self.alpha.at(k);
        self.rng = ep.rng;
        self.ep_actions = ep.actions;
        self.cur = Some(Current { s: ep.state, a: ep.action, ret: ep.ret, len: ep.len });
        Ok(true)
    }

    /// Number of states.
    pub fn num_states(&self) -> usize {
        self.n_states
    }

    /// Number of actions.
    pub fn num_actions(&self) -> usize {
        self.n_actions
    }

    /// Episodes finished.
    pub fn episodes(&self) -> u64 {
        self.episodes
    }

    /// Env steps taken (including those of an episode in progress).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Epsilon of the current episode.
    pub fn epsilon(&self) -> f64 {
        self.eps_now
    }

    /// True while an episode is in progress.
    pub fn in_episode(&self) -> bool {
        self.cur.is_some()
    }

    /// The greedy action of `s`: the smallest index among the maximal `Q` values (deterministic, for evaluation);
    /// `None` when `s >= num_states()`.
    pub fn greedy_action(&self, s: usize) -> Option<usize> {
        let row = self.q.get(s * self.n_actions..(s + 1) * self.n_actions)?;
        Some(argmax_first(row))
    }

    /// The greedy policy of every state (see [`TdLearner::greedy_action`]).
    pub fn greedy_policy(&self) -> Vec<usize> {
        self.q.chunks_exact(self.n_actions.max(1)).map(argmax_first).collect()
    }

    /// Argmax with ties broken uniformly at random (reservoir sampling over the tied actions: no allocation).
    fn argmax_random(&mut self, s: usize) -> usize {
        let row = &self.q[s * self.n_actions..(s + 1) * self.n_actions];
        let mut best = row[0];
        let mut choice = 0;
        let mut ties = 1u32;
        for (a, &x) in row.iter().enumerate().skip(1) {
            if x > best {
                best = x;
                choice = a;
                ties = 1;
            } else if x == best {
                ties += 1;
                if self.rng.random_range(0..ties) == 0 {
                    choice = a;
                }
            }
        }
        choice
    }

    fn behaviour(&mut self, s: usize) -> usize {
        if self.eps_now > 0.0 && self.rng.random::<f64>() < self.eps_now {
            self.rng.random_range(0..self.n_actions)
        } else {
            self.argmax_random(s)
        }
    }

    /// `E[Q(s, A)]` under the epsilon-greedy policy (greedy mass shared by the tied maxima).
    fn expected_q(&self, s: usize) -> f64 {
        let row = &self.q[s * self.n_actions..(s + 1) * self.n_actions];
        let best = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = row.iter().sum::<f64>() / self.n_actions as f64;
        // The greedy mass 1 - eps is shared by the tied maxima, which all have the value `best`.
        self.eps_now * mean + (1.0 - self.eps_now) * best
    }

    fn max_q(&self, s: usize) -> f64 {
        self.q[s * self.n_actions..(s + 1) * self.n_actions].iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    fn check_obs(&self, s: usize) -> Result<usize> {
        if s < self.n_states {
            Ok(s)
        } else {
            Err(AgentError::Unsupported(format!("observation {s} is outside the Q table's 0..{}", self.n_states)))
        }
    }

    /// Takes one env step (resetting first when no episode is in progress) and learns from it; returns the
    /// episode's figures when it ended with this step.
    pub fn step<E: Env<Obs = usize, Action = usize> + ?Sized>(&mut self, env: &mut E) -> Result<Option<EpisodeEnd>> {
        let cur = match self.cur {
            Some(c) => c,
            None => {
                let k = self.episodes;
                self.rng = EnvRng::seed_from_u64(episode_agent_seed(self.seed, k));
                self.eps_now = self.epsilon.at(k);
                self.alpha_now = self.alpha.at(k);
                let (s, _) = env.reset(Some(episode_env_seed(self.seed, k)))?;
                self.ep_actions.clear();
                let s = self.check_obs(s)?;
                let a = self.behaviour(s);
                Current { s, a, ret: 0.0, len: 0 }
            }
        };
        let Step { obs, reward, terminated, truncated, .. } = env.step(cur.a)?;
        let s2 = self.check_obs(obs)?;
        self.steps += 1;
        // Amortised: the capacity stays across episodes (action counts fit u32: Q tables are far smaller).
        self.ep_actions.push(cur.a as u32);
        let gamma = self.cfg.gamma;
        // SARSA's next action is chosen before the update (Sutton and Barto, section 6.4) and then taken.
        let a2 = if terminated { 0 } else { self.behaviour(s2) };
        let target = if terminated {
            reward
        } else {
            reward
                + gamma
                    * match self.cfg.algorithm {
                        TdAlgorithm::QLearning => self.max_q(s2),
                        TdAlgorithm::Sarsa => self.q[s2 * self.n_actions + a2],
                        TdAlgorithm::ExpectedSarsa => self.expected_q(s2),
                    }
        };
        let i = cur.s * self.n_actions + cur.a;
        self.q[i] += self.alpha_now * (target - self.q[i]);
        let ret = cur.ret + reward;
        let len = cur.len + 1;
        if terminated || truncated {
            self.cur = None;
            self.episodes += 1;
            Ok(Some(EpisodeEnd { ret, len }))
        } else {
            self.cur = Some(Current { s: s2, a: a2, ret, len });
            Ok(None)
        }
    }

    /// Plays one whole episode (finishing the one in progress, if any).
    pub fn run_episode<E: Env<Obs = usize, Action = usize> + ?Sized>(&mut self, env: &mut E) -> Result<EpisodeEnd> {
        loop {
            if let Some(e) = self.step(env)? {
                return Ok(e);
            }
        }
    }
}

/// The sizes of two discrete spaces, or an error naming the space that is not discrete.
pub fn discrete_sizes(obs: &Space, act: &Space) -> Result<(usize, usize)> {
    let ns = obs.n().ok_or_else(|| {
        AgentError::Unsupported(format!("tabular learning needs a discrete observation space, got {obs}"))
    })?;
    let na = act
        .n()
        .ok_or_else(|| AgentError::Unsupported(format!("tabular learning needs a discrete action space, got {act}")))?;
    Ok((ns, na))
}

/// What [`run_episodes`] returns: the learner (with its `Q` table) and every episode's return and length.
#[derive(Debug, Clone)]
pub struct TdRun {
    /// The trained learner.
    pub learner: TdLearner,
    /// Undiscounted return of each episode.
    pub returns: Vec<f64>,
    /// Length of each episode.
    pub lengths: Vec<u64>,
}

/// Trains a fresh learner (algorithm from `cfg`) for `episodes` episodes on `env`, seeded `seed`.
pub fn run_episodes<E: Env<Obs = usize, Action = usize> + ?Sized>(
    cfg: &TabularConfig,
    env: &mut E,
    episodes: u64,
    seed: u64,
) -> Result<TdRun> {
    let mut learner = TdLearner::for_env(cfg, env, seed)?;
    let mut returns = Vec::with_capacity(episodes as usize);
    let mut lengths = Vec::with_capacity(episodes as usize);
    for _ in 0..episodes {
        let e = learner.run_episode(env)?;
        returns.push(e.ret);
        lengths.push(e.len);
    }
    Ok(TdRun { learner, returns, lengths })
}

/// Q-learning (Watkins 1989; Sutton and Barto section 6.5): `run_episodes` with the algorithm set.
pub fn q_learning<E: Env<Obs = usize, Action = usize> + ?Sized>(
    cfg: &TabularConfig,
    env: &mut E,
    episodes: u64,
    seed: u64,
) -> Result<TdRun> {
    run_episodes(&TabularConfig { algorithm: TdAlgorithm::QLearning, ..cfg.clone() }, env, episodes, seed)
}

/// SARSA (Rummery and Niranjan 1994; Sutton and Barto section 6.4).
pub fn sarsa<E: Env<Obs = usize, Action = usize> + ?Sized>(
    cfg: &TabularConfig,
    env: &mut E,
    episodes: u64,
    seed: u64,
) -> Result<TdRun> {
    run_episodes(&TabularConfig { algorithm: TdAlgorithm::Sarsa, ..cfg.clone() }, env, episodes, seed)
}

/// Expected SARSA (van Seijen et al. 2009; Sutton and Barto section 6.6).
pub fn expected_sarsa<E: Env<Obs = usize, Action = usize> + ?Sized>(
    cfg: &TabularConfig,
    env: &mut E,
    episodes: u64,
    seed: u64,
) -> Result<TdRun> {
    run_episodes(&TabularConfig { algorithm: TdAlgorithm::ExpectedSarsa, ..cfg.clone() }, env, episodes, seed)
}

/// Runs `episodes` greedy episodes of `policy` on `env`, seeded `seed, seed + 1, ...`, each cut after
/// `max_steps` steps (counted as the end of the episode) when the env itself has no time limit that ends it.
pub fn rollout_policy<E: Env<Obs = usize, Action = usize> + ?Sized>(
    env: &mut E,
    policy: &[usize],
    episodes: usize,
    seed: u64,
    max_steps: u64,
) -> Result<(Vec<f64>, Vec<u64>)> {
    let mut returns = Vec::with_capacity(episodes);
    let mut lengths = Vec::with_capacity(episodes);
    for i in 0..episodes {
        let (mut s, _) = env.reset(Some(seed.wrapping_add(i as u64)))?;
        let (mut ret, mut len) = (0.0, 0u64);
        loop {
            let a = *policy.get(s).ok_or_else(|| {
                AgentError::Unsupported(format!("observation {s} is outside the policy's 0..{}", policy.len()))
            })?;
            let st = env.step(a)?;
            ret += st.reward;
            len += 1;
            s = st.obs;
            if st.terminated || st.truncated || len >= max_steps {
                break;
            }
        }
        returns.push(ret);
        lengths.push(len);
    }
    Ok((returns, lengths))
}

/// The smallest index of the maximum of `row` (0 for an empty row).
fn argmax_first(row: &[f64]) -> usize {
    let mut best = 0;
    for a in 1..row.len() {
        if row[a] > row[best] {
            best = a;
        }
    }
    best
}

/// A [`TransitionTable`] with an initial distribution and an optional grid shape: the quickest way to write
/// your own [`Mdp`] (for planning, or for learning through [`MdpEnv`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TableMdp {
    table: TransitionTable,
    isd: Vec<f64>,
    grid: Option<(usize, usize)>,
}

impl TableMdp {
    /// Wraps `table`, with episodes starting from `isd` (`num_states()` probabilities summing to 1).
    pub fn new(table: TransitionTable, isd: Vec<f64>) -> Result<Self> {
        bellman_envs::mdp::check_initial_distribution(&isd, table.num_states())?;
        Ok(TableMdp { table, isd, grid: None })
    }

    /// Marks the states as a `rows x cols` grid (`row * cols + col`); `rows * cols` must be the state count.
    pub fn with_grid(mut self, rows: usize, cols: usize) -> Result<Self> {
        if rows * cols != self.table.num_states() {
            return Err(AgentError::Config(format!(
                "grid {rows} x {cols} has {} cells, the model has {} states",
                rows * cols,
                self.table.num_states()
            )));
        }
        self.grid = Some((rows, cols));
        Ok(self)
    }
}

impl Mdp for TableMdp {
    fn num_states(&self) -> usize {
        self.table.num_states()
    }
    fn num_actions(&self) -> usize {
        self.table.num_actions()
    }
    fn outcomes(&self, s: usize, a: usize) -> &[Outcome] {
        self.table.get(s, a)
    }
    fn initial_distribution(&self) -> &[f64] {
        &self.isd
    }
    fn grid_shape(&self) -> Option<(usize, usize)> {
        self.grid
    }
}

/// Any [`Mdp`] as an [`Env`]: samples outcomes as Gymnasium's toy text does (`categorical_sample`), starts from
/// the model's initial distribution, and has no time limit (wrap it in [`bellman_envs::wrappers::TimeLimit`]).
#[derive(Debug, Clone)]
pub struct MdpEnv<M> {
    mdp: M,
    obs_space: Space,
    act_space: Space,
    rng: EnvRng,
    s: usize,
    needs_reset: bool,
}

impl<M: Mdp> MdpEnv<M> {
    /// Wraps `mdp`.
    pub fn new(mdp: M) -> Self {
        let (obs_space, act_space) = (Space::Discrete(mdp.num_states()), Space::Discrete(mdp.num_actions()));
        MdpEnv { mdp, obs_space, act_space, rng: bellman_envs::rng::seeded(0), s: 0, needs_reset: true }
    }

    /// The wrapped model.
    pub fn mdp(&self) -> &M {
        &self.mdp
    }
}

impl<M: Mdp> Env for MdpEnv<M> {
    type Obs = usize;
    type Action = usize;
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset(&mut self, seed: Option<u64>) -> bellman_envs::Result<(usize, Info)> {
        if let Some(seed) = seed {
            self.rng = bellman_envs::rng::seeded(seed);
        }
        self.s = sample_categorical(self.mdp.initial_distribution(), &mut self.rng);
        self.needs_reset = false;
        Ok((self.s, Info { prob: Some(1.0), ..Default::default() }))
    }
    fn step(&mut self, action: usize) -> bellman_envs::Result<Step<usize>> {
        if self.needs_reset {
            return Err(EnvError::NeedsReset("before reset() or after the end of an episode"));
        }
        bellman_envs::env::check_discrete(action, &self.act_space)?;
        let s = self.s;
        let o = *sample_outcome(self.mdp.outcomes(s, action), &mut self.rng).ok_or_else(|| {
            EnvError::Unsupported(format!("the model lists no outcome for state {s}, action {action}"))
        })?;
        self.s = o.next_state;
        self.needs_reset = o.terminal;
        Ok(Step {
            obs: o.next_state,
            reward: o.reward,
            terminated: o.terminal,
            truncated: false,
            info: Info { prob: Some(o.prob), ..Default::default() },
        })
    }
}
