//! Vector environments: N copies of an env stepped as one, as Gymnasium 1.x's `gymnasium.vector.SyncVectorEnv`.
//!
//! [`SyncVectorEnv`] steps its sub-envs one after the other on the calling thread and writes their observations
//! into **one** preallocated `f32` batch buffer (row `i` = sub-env `i`), rewards and flags into preallocated
//! arrays. After construction, `step` allocates nothing (except to build an error message).
//!
//! It is generic over `E: DynEnv`, so it works with a concrete env type (`SyncVectorEnv<TimeLimit<CartPole>>`:
//! monomorphised, no virtual calls) and with the registry's `Box<dyn DynEnv>` ([`make_vec`]).
//!
//! # Autoreset modes
//!
//! What happens when a sub-env's episode ends is set by [`AutoresetMode`], named and behaving exactly as
//! Gymnasium 1.x's `gymnasium.vector.AutoresetMode` (see `gymnasium/vector/sync_vector_env.py` and
//! <https://farama.org/Vector-Autoreset-Mode>):
//!
//! * [`AutoresetMode::NextStep`] (Gymnasium's default): the step that ends an episode returns the episode's
//!   final observation with `terminated`/`truncated` set. On the **next** `step`, that sub-env ignores its
//!   action and is reset instead: its row holds the first observation of the new episode, its reward is `0`
//!   and both flags are `false`. A transition `(obs_t, a_t, r_t, obs_t+1)` recorded from a sub-env whose
//!   previous step was done is therefore not a real transition and must be skipped (see
//!   [`SyncVectorEnv::autoreset_mask`] before stepping).
//! * [`AutoresetMode::SameStep`]: a sub-env whose episode ends is reset within the same `step`. Its row of
//!   [`SyncVectorEnv::obs`] is the first observation of the new episode, the final observation is copied into
//!   the preallocated [`SyncVectorEnv::final_obs`] buffer and flagged in [`SyncVectorEnv::final_obs_mask`]
//!   (Gymnasium's `info["final_obs"]` and `info["_final_obs"]`), with its info in
//!   [`SyncVectorEnv::final_infos`] (`info["final_info"]`).
//! * [`AutoresetMode::Disabled`]: nothing is reset automatically; stepping a sub-env whose episode ended is an
//!   [`EnvError::NeedsReset`]. Reset finished sub-envs with [`SyncVectorEnv::reset_done`],
//!   [`SyncVectorEnv::reset_masked`] (Gymnasium's `reset(options={"reset_mask": mask})`) or
//!   [`SyncVectorEnv::reset_env`].
//!
//! In every mode the final observation of an episode is never lost: in `NextStep` and `Disabled` it is the row
//! of `obs` returned by the step that ended the episode, in `SameStep` it is the row of `final_obs`.
//!
//! # Episode statistics
//!
//! The vector env records each sub-env's return and length, as Gymnasium's vector `RecordEpisodeStatistics`
//! (`gymnasium/wrappers/vector/common.py`) does: after each `step`, [`SyncVectorEnv::episode_mask`] flags the
//! sub-envs whose episode ended in that step and [`SyncVectorEnv::episode_stats`] holds their statistics. The
//! `NextStep` reset step does not count towards the next episode, so lengths are the true episode lengths in
//! every mode.
//!
//! # Seeds
//!
//! `reset(Some(seed))` resets sub-env `i` with `seed + i`, as Gymnasium's vector envs do; [`SyncVectorEnv::seeds`]
//! records the seed each sub-env was last seeded with. Automatic resets pass no seed: each sub-env continues its
//! own random stream.
//!
//! ```
//! use bellman_envs::vector::{AutoresetMode, SyncVectorEnv};
//! use bellman_envs::{Env, Info, Result, Space, Step};
//!
//! /// Counts up from 0; the episode terminates when the count reaches 3.
//! struct Count { n: usize, obs_space: Space, act_space: Space }
//! impl Env for Count {
//!     type Obs = usize;
//!     type Action = usize;
//!     fn observation_space(&self) -> &Space { &self.obs_space }
//!     fn action_space(&self) -> &Space { &self.act_space }
//!     fn reset(&mut self, _seed: Option<u64>) -> Result<(usize, Info)> { self.n = 0; Ok((0, Info::default())) }
//!     fn step(&mut self, _a: usize) -> Result<Step<usize>> {
//!         self.n += 1;
//!         Ok(Step { obs: self.n, reward: 1.0, terminated: self.n == 3, truncated: false, info: Info::default() })
//!     }
//! }
//!
//! let make = |_| Count { n: 0, obs_space: Space::Discrete(4), act_space: Space::Discrete(2) };
//! let mut envs = SyncVectorEnv::from_fn(2, make, AutoresetMode::NextStep).unwrap();
//! envs.reset(Some(7)).unwrap();
//! assert_eq!(envs.seeds(), &[Some(7), Some(8)]);
//! for _ in 0..3 {
//!     envs.step_discrete(&[0, 1]).unwrap();
//! }
//! // The third step ended both episodes: the final observations are in `obs`, the statistics are recorded.
//! assert_eq!(envs.obs(), &[3.0, 3.0]);
//! assert_eq!(envs.terminated(), &[true, true]);
//! assert_eq!(envs.episode_stats()[0].len, 3);
//! // The next step resets both sub-envs (NextStep): reward 0, flags cleared, first observations.
//! let s = envs.step_discrete(&[0, 0]).unwrap();
//! assert_eq!((s.obs, s.rewards, s.terminated), (&[0.0, 0.0][..], &[0.0, 0.0][..], &[false, false][..]));
//! ```
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use crate::env::{ActionValue, DynEnv, EpisodeStats, Info};
use crate::error::{EnvError, Result};
use crate::options::Options;
use crate::space::Space;

/// When a vector env resets a sub-env whose episode ended; Gymnasium 1.x's `gymnasium.vector.AutoresetMode`
/// (names and string values as there). See the [module documentation](self) for the exact semantics.
///
/// ```
/// use bellman_envs::vector::AutoresetMode;
/// assert_eq!(AutoresetMode::default(), AutoresetMode::NextStep);
/// assert_eq!("SameStep".parse::<AutoresetMode>().unwrap(), AutoresetMode::SameStep);
/// assert_eq!(AutoresetMode::Disabled.to_string(), "Disabled");
/// assert!("same_step".parse::<AutoresetMode>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum AutoresetMode {
    /// Reset on the step after the one that ended the episode (Gymnasium's default, `"NextStep"`).
    #[default]
    NextStep,
    /// Reset within the step that ended the episode; the final observation goes to a separate buffer
    /// (`"SameStep"`).
    SameStep,
    /// Never reset automatically; the caller resets finished sub-envs (`"Disabled"`).
    Disabled,
}

impl AutoresetMode {
    /// Gymnasium's string value of the mode (`AutoresetMode.NEXT_STEP.value == "NextStep"`).
    pub fn as_str(self) -> &'static str {
        match self {
            AutoresetMode::NextStep => "NextStep",
            AutoresetMode::SameStep => "SameStep",
            AutoresetMode::Disabled => "Disabled",
        }
    }
}

impl fmt::Display for AutoresetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AutoresetMode {
    type Err = EnvError;
    /// Parses Gymnasium's string values `NextStep`, `SameStep`, `Disabled`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "NextStep" => Ok(AutoresetMode::NextStep),
            "SameStep" => Ok(AutoresetMode::SameStep),
            "Disabled" => Ok(AutoresetMode::Disabled),
            other => Err(EnvError::BadOption {
                env: "SyncVectorEnv".into(),
                key: "autoreset_mode".into(),
                value: other.into(),
                reason: "expected NextStep, SameStep or Disabled".into(),
            }),
        }
    }
}

/// A borrowed view of a vector env's batch after a `step`: Gymnasium's `(obs, rewards, terminations,
/// truncations)` without copies. Infos, final observations and episode statistics are read from the
/// [`SyncVectorEnv`] itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VecStep<'a> {
    /// Observations, `num_envs * obs_dim` values, row `i` = sub-env `i`.
    pub obs: &'a [f32],
    /// Reward of each sub-env.
    pub rewards: &'a [f64],
    /// `terminated` of each sub-env.
    pub terminated: &'a [bool],
    /// `truncated` of each sub-env.
    pub truncated: &'a [bool],
}

/// The action batch of one step, in any of its three forms (internal, for validation).
#[derive(Clone, Copy)]
enum Actions<'a> {
    Discrete(&'a [usize]),
    Continuous(&'a [f32]),
    Values(&'a [ActionValue<'a>]),
}

/// `num_envs` copies of an env stepped as one on the calling thread (Gymnasium's `SyncVectorEnv`); see the
/// [module documentation](self) for the batch layout, autoreset modes, seeding and episode statistics.
///
/// Actions are given as a batch, one per sub-env, in whichever form fits the action space:
/// * [`step_discrete`](Self::step_discrete): `&[usize]`, one index per sub-env (discrete action spaces);
/// * [`step_continuous`](Self::step_continuous): one flat `&[f32]` of `num_envs * action_dim` values, row `i` =
///   the action of sub-env `i` (box action spaces);
/// * [`step`](Self::step): `&[ActionValue]`, one per sub-env (either kind).
///
/// The whole batch is validated before any sub-env is stepped: a batch of the wrong length, a discrete action
/// out of range, a NaN in a continuous action, or (in `Disabled` mode) a finished sub-env is an error that
/// leaves every sub-env untouched.
pub struct SyncVectorEnv<E> {
    envs: Vec<E>,
    mode: AutoresetMode,
    observation_space: Space,
    action_space: Space,
    obs_dim: usize,
    act_dim: usize,
    /// `Some(n)` for a discrete action space.
    num_actions: Option<usize>,
    started: bool,
    obs: Vec<f32>,
    rewards: Vec<f64>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    /// Sub-env `i`'s episode ended and it has not been reset yet.
    autoreset: Vec<bool>,
    infos: Vec<Info>,
    final_obs: Vec<f32>,
    final_mask: Vec<bool>,
    final_infos: Vec<Info>,
    any_final: bool,
    seeds: Vec<Option<u64>>,
    ep_ret: Vec<f64>,
    ep_len: Vec<u64>,
    ep_start: Vec<Instant>,
    episode: Vec<EpisodeStats>,
    episode_mask: Vec<bool>,
    any_episode: bool,
    episode_count: u64,
}

impl<E> fmt::Debug for SyncVectorEnv<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncVectorEnv")
            .field("num_envs", &self.envs.len())
            .field("autoreset_mode", &self.mode)
            .field("observation_space", &self.observation_space)
            .field("action_space", &self.action_space)
            .field("episode_count", &self.episode_count)
            .finish_non_exhaustive()
    }
}

fn invalid(action: impl Into<String>, space: impl Into<String>, reason: impl Into<String>) -> EnvError {
    EnvError::InvalidAction { action: action.into(), space: space.into(), reason: reason.into() }
}

impl<E: DynEnv> SyncVectorEnv<E> {
    /// Builds a vector env from its sub-envs. Every sub-env must have the same observation and action spaces
    /// (Gymnasium's `observation_mode="same"`), and there must be at least one. Call [`reset`](Self::reset)
    /// before the first step.
    pub fn new(envs: Vec<E>, mode: AutoresetMode) -> Result<Self> {
        let first = envs.first().ok_or_else(|| EnvError::BadOption {
            env: "SyncVectorEnv".into(),
            key: "num_envs".into(),
            value: "0".into(),
            reason: "a vector env needs at least 1 sub-env".into(),
        })?;
        let observation_space = first.observation_space().clone();
        let action_space = first.action_space().clone();
        for (i, e) in envs.iter().enumerate() {
            if *e.observation_space() != observation_space || *e.action_space() != action_space {
                return Err(EnvError::Unsupported(format!(
                    "sub-env {i} has observation space {} and action space {}, but sub-env 0 has {} and {}; \
                     every sub-env of a SyncVectorEnv must have the same spaces",
                    e.observation_space(),
                    e.action_space(),
                    observation_space,
                    action_space
                )));
            }
        }
        let n = envs.len();
        let obs_dim = observation_space.flat_dim();
        let act_dim = action_space.flat_dim();
        let num_actions = action_space.n();
        let now = Instant::now();
        Ok(SyncVectorEnv {
            envs,
            mode,
            observation_space,
            action_space,
            obs_dim,
            act_dim,
            num_actions,
            started: false,
            obs: vec![0.0; n * obs_dim],
            rewards: vec![0.0; n],
            terminated: vec![false; n],
            truncated: vec![false; n],
            autoreset: vec![false; n],
            infos: vec![Info::default(); n],
            final_obs: vec![0.0; n * obs_dim],
            final_mask: vec![false; n],
            final_infos: vec![Info::default(); n],
            any_final: false,
            seeds: vec![None; n],
            ep_ret: vec![0.0; n],
            ep_len: vec![0; n],
            ep_start: vec![now; n],
            episode: vec![EpisodeStats::default(); n],
            episode_mask: vec![false; n],
            any_episode: false,
            episode_count: 0,
        })
    }

    /// Builds `num_envs` sub-envs with `make(i)` (Gymnasium's `SyncVectorEnv([env_fn] * n)`).
    pub fn from_fn(num_envs: usize, make: impl FnMut(usize) -> E, mode: AutoresetMode) -> Result<Self> {
        Self::new((0..num_envs).map(make).collect(), mode)
    }

    /// Number of sub-envs.
    pub fn num_envs(&self) -> usize {
        self.envs.len()
    }
    /// The autoreset mode.
    pub fn autoreset_mode(&self) -> AutoresetMode {
        self.mode
    }
    /// The observation space of one sub-env (Gymnasium's `single_observation_space`).
    pub fn single_observation_space(&self) -> &Space {
        &self.observation_space
    }
    /// The action space of one sub-env (Gymnasium's `single_action_space`).
    pub fn single_action_space(&self) -> &Space {
        &self.action_space
    }
    /// Length of one row of the observation batch (the observation space's `flat_dim`).
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }
    /// Number of `f32` values of one sub-env's action in [`step_continuous`](Self::step_continuous) (1 for a
    /// discrete action space).
    pub fn action_dim(&self) -> usize {
        self.act_dim
    }
    /// The sub-envs. Stepping or resetting them directly bypasses the vector env's bookkeeping.
    pub fn envs(&self) -> &[E] {
        &self.envs
    }
    /// The sub-envs, mutably (e.g. to set a state in a test). Call [`reset`](Self::reset) afterwards if you
    /// step or reset one directly.
    pub fn envs_mut(&mut self) -> &mut [E] {
        &mut self.envs
    }

    /// The observation batch: `num_envs * obs_dim` values, row `i` = sub-env `i`.
    pub fn obs(&self) -> &[f32] {
        &self.obs
    }
    /// Row `i` of the observation batch (`None` when `i >= num_envs`).
    pub fn obs_row(&self, i: usize) -> Option<&[f32]> {
        self.obs.get(i * self.obs_dim..(i + 1) * self.obs_dim)
    }
    /// Rewards of the last step.
    pub fn rewards(&self) -> &[f64] {
        &self.rewards
    }
    /// `terminated` of the last step.
    pub fn terminated(&self) -> &[bool] {
        &self.terminated
    }
    /// `truncated` of the last step.
    pub fn truncated(&self) -> &[bool] {
        &self.truncated
    }
    /// Infos of the last step or reset (in `SameStep` mode, a sub-env reset within the step has its reset info
    /// here and its final step's info in [`final_infos`](Self::final_infos)).
    pub fn infos(&self) -> &[Info] {
        &self.infos
    }
    /// The current batch as a [`VecStep`] view.
    pub fn view(&self) -> VecStep<'_> {
        VecStep { obs: &self.obs, rewards: &self.rewards, terminated: &self.terminated, truncated: &self.truncated }
    }

    /// Sub-envs whose episode ended and that have not been reset yet. In `NextStep` mode these are the sub-envs
    /// the next `step` resets (their actions are ignored); in `Disabled` mode, the ones to reset before the next
    /// step. Always all `false` in `SameStep` mode.
    pub fn autoreset_mask(&self) -> &[bool] {
        &self.autoreset
    }

    /// `SameStep` mode: final observations of the episodes that ended in the last step, `num_envs * obs_dim`
    /// values, row `i` valid where [`final_obs_mask`](Self::final_obs_mask)`[i]` (Gymnasium's
    /// `info["final_obs"]`). Rows not flagged hold stale data.
    pub fn final_obs(&self) -> &[f32] {
        &self.final_obs
    }
    /// Which rows of [`final_obs`](Self::final_obs) belong to the last step (Gymnasium's `info["_final_obs"]`);
    /// all `false` outside `SameStep` mode.
    pub fn final_obs_mask(&self) -> &[bool] {
        &self.final_mask
    }
    /// The final observation of sub-env `i`'s episode if it ended in the last step, in any mode: the row of
    /// [`final_obs`](Self::final_obs) in `SameStep` mode, the row of [`obs`](Self::obs) otherwise.
    pub fn final_obs_row(&self, i: usize) -> Option<&[f32]> {
        if i >= self.envs.len() {
            return None;
        }
        let range = i * self.obs_dim..(i + 1) * self.obs_dim;
        match self.mode {
            AutoresetMode::SameStep => self.final_mask[i].then(|| &self.final_obs[range]),
            _ => (self.terminated[i] || self.truncated[i]).then(|| &self.obs[range]),
        }
    }
    /// `SameStep` mode: infos of the final steps of the episodes that ended in the last step (Gymnasium's
    /// `info["final_info"]`), valid where [`final_obs_mask`](Self::final_obs_mask) is set.
    pub fn final_infos(&self) -> &[Info] {
        &self.final_infos
    }

    /// Which sub-envs finished an episode in the last step (Gymnasium's `info["_episode"]`).
    pub fn episode_mask(&self) -> &[bool] {
        &self.episode_mask
    }
    /// Statistics of the episodes that finished in the last step (Gymnasium's `info["episode"]`), valid where
    /// [`episode_mask`](Self::episode_mask) is set (other entries hold older episodes).
    pub fn episode_stats(&self) -> &[EpisodeStats] {
        &self.episode
    }
    /// `(sub-env, statistics)` of each episode that finished in the last step, without allocating.
    pub fn finished_episodes(&self) -> impl Iterator<Item = (usize, EpisodeStats)> + '_ {
        self.episode_mask.iter().zip(&self.episode).enumerate().filter(|(_, (m, _))| **m).map(|(i, (_, s))| (i, *s))
    }
    /// Number of episodes finished since construction, all sub-envs together.
    pub fn episode_count(&self) -> u64 {
        self.episode_count
    }
    /// Return accumulated so far in each sub-env's current episode.
    pub fn current_returns(&self) -> &[f64] {
        &self.ep_ret
    }
    /// Steps taken so far in each sub-env's current episode.
    pub fn current_lengths(&self) -> &[u64] {
        &self.ep_len
    }

    /// The seed each sub-env was last seeded with (`None`: never seeded, its generator came from OS entropy).
    /// Resets without a seed (including automatic resets) keep the seed: the generator continues its stream,
    /// as Gymnasium's `np_random_seed`.
    pub fn seeds(&self) -> &[Option<u64>] {
        &self.seeds
    }

    fn clear_step_masks(&mut self) {
        if self.any_final {
            self.final_mask.fill(false);
            self.any_final = false;
        }
        if self.any_episode {
            self.episode_mask.fill(false);
            self.any_episode = false;
        }
    }

    fn reset_one(&mut self, i: usize, seed: Option<u64>) -> Result<()> {
        let d = self.obs_dim;
        self.infos[i] = self.envs[i].reset_into(seed, &mut self.obs[i * d..(i + 1) * d])?;
        if seed.is_some() {
            self.seeds[i] = seed;
        }
        self.terminated[i] = false;
        self.truncated[i] = false;
        self.autoreset[i] = false;
        self.ep_ret[i] = 0.0;
        self.ep_len[i] = 0;
        self.ep_start[i] = Instant::now();
        Ok(())
    }

    /// `seed + i`, or an error naming the seed when it would overflow.
    fn seed_for(&self, seed: u64, i: usize) -> Result<u64> {
        seed.checked_add(i as u64).ok_or_else(|| EnvError::BadOption {
            env: "SyncVectorEnv".into(),
            key: "seed".into(),
            value: seed.to_string(),
            reason: format!(
                "sub-env i is seeded with seed + i, so the seed must be at most {} for {} sub-envs",
                u64::MAX - (self.envs.len() as u64 - 1),
                self.envs.len()
            ),
        })
    }

    /// Resets every sub-env and returns the first observations; `Some(seed)` seeds sub-env `i` with `seed + i`
    /// (Gymnasium's `reset(seed=seed)`), `None` continues each sub-env's stream. Clears all flags.
    pub fn reset(&mut self, seed: Option<u64>) -> Result<&[f32]> {
        if let Some(s) = seed {
            self.seed_for(s, self.envs.len() - 1)?;
        }
        self.clear_step_masks();
        for i in 0..self.envs.len() {
            let s = match seed {
                Some(s) => Some(self.seed_for(s, i)?),
                None => None,
            };
            self.reset_one(i, s)?;
        }
        self.rewards.fill(0.0);
        self.started = true;
        Ok(&self.obs)
    }

    /// Resets every sub-env with its own seed (Gymnasium's `reset(seed=[...])`); `seeds.len()` must be
    /// `num_envs`.
    pub fn reset_with_seeds(&mut self, seeds: &[Option<u64>]) -> Result<&[f32]> {
        if seeds.len() != self.envs.len() {
            return Err(EnvError::BadOption {
                env: "SyncVectorEnv".into(),
                key: "seeds".into(),
                value: format!("{seeds:?}"),
                reason: format!("expected {} seeds, one per sub-env", self.envs.len()),
            });
        }
        self.clear_step_masks();
        for (i, s) in seeds.iter().enumerate() {
            self.reset_one(i, *s)?;
        }
        self.rewards.fill(0.0);
        self.started = true;
        Ok(&self.obs)
    }

    /// Resets the sub-envs where `mask[i]` is set (Gymnasium's `reset(seed, options={"reset_mask": mask})`):
    /// `Some(seed)` seeds sub-env `i` with `seed + i`. Their rows of `obs` get the first observations and their
    /// flags are cleared; other sub-envs and all rewards are untouched. Unlike Gymnasium, a mask with no `true`
    /// is a no-op rather than an error. Requires a prior [`reset`](Self::reset).
    pub fn reset_masked(&mut self, mask: &[bool], seed: Option<u64>) -> Result<()> {
        self.check_started()?;
        if mask.len() != self.envs.len() {
            return Err(EnvError::BadOption {
                env: "SyncVectorEnv".into(),
                key: "reset_mask".into(),
                value: format!("a mask of length {}", mask.len()),
                reason: format!("expected length {} (one flag per sub-env)", self.envs.len()),
            });
        }
        for (i, &m) in mask.iter().enumerate() {
            if m {
                let s = match seed {
                    Some(s) => Some(self.seed_for(s, i)?),
                    None => None,
                };
                self.reset_one(i, s)?;
            }
        }
        Ok(())
    }

    /// Resets (without seeds) every sub-env whose episode ended and was not reset yet
    /// ([`autoreset_mask`](Self::autoreset_mask)); returns how many. Allocates nothing. The usual call in
    /// `Disabled` mode, after reading the final observations.
    pub fn reset_done(&mut self) -> Result<usize> {
        self.check_started()?;
        let mut k = 0;
        for i in 0..self.envs.len() {
            if self.autoreset[i] {
                self.reset_one(i, None)?;
                k += 1;
            }
        }
        Ok(k)
    }

    /// Resets sub-env `i` alone, seeding it with `seed` itself when given; returns its first observation.
    pub fn reset_env(&mut self, i: usize, seed: Option<u64>) -> Result<&[f32]> {
        self.check_started()?;
        if i >= self.envs.len() {
            return Err(EnvError::BadOption {
                env: "SyncVectorEnv".into(),
                key: "env index".into(),
                value: i.to_string(),
                reason: format!("must be in 0..{}", self.envs.len()),
            });
        }
        self.reset_one(i, seed)?;
        Ok(&self.obs[i * self.obs_dim..(i + 1) * self.obs_dim])
    }

    fn check_started(&self) -> Result<()> {
        if self.started { Ok(()) } else { Err(EnvError::NeedsReset("on a SyncVectorEnv that was never reset")) }
    }

    fn check_batch(&self, actions: Actions<'_>) -> Result<()> {
        self.check_started()?;
        if self.mode == AutoresetMode::Disabled && self.autoreset.iter().any(|&d| d) {
            return Err(EnvError::NeedsReset(
                "on a sub-env whose episode ended (autoreset mode Disabled; autoreset_mask() says which); \
                 reset it with reset_done(), reset_masked() or reset_env() first",
            ));
        }
        let n = self.envs.len();
        let space = &self.action_space;
        match actions {
            Actions::Discrete(a) => {
                let Some(k) = self.num_actions else {
                    return Err(invalid(
                        "a batch of discrete actions",
                        space.to_string(),
                        "this env has continuous actions: use step_continuous",
                    ));
                };
                if a.len() != n {
                    return Err(invalid(
                        format!("a batch of {} actions", a.len()),
                        space.to_string(),
                        format!("expected {n} actions, one per sub-env"),
                    ));
                }
                if let Some((i, &bad)) = a.iter().enumerate().find(|(_, x)| **x >= k) {
                    return Err(invalid(
                        bad.to_string(),
                        space.to_string(),
                        format!("action of sub-env {i} must be in 0..{k}"),
                    ));
                }
            }
            Actions::Continuous(x) => {
                if self.num_actions.is_some() {
                    return Err(invalid(
                        "a batch of continuous actions",
                        space.to_string(),
                        "this env has discrete actions: use step_discrete",
                    ));
                }
                let d = self.act_dim;
                if x.len() != n * d {
                    return Err(invalid(
                        format!("a batch of {} values", x.len()),
                        space.to_string(),
                        format!("expected {n} sub-envs x {d} values = {}", n * d),
                    ));
                }
                if let Some(j) = x.iter().position(|v| v.is_nan()) {
                    return Err(invalid(
                        format!("{:?}", &x[(j / d) * d..(j / d + 1) * d]),
                        space.to_string(),
                        format!("element {} of the action of sub-env {} is NaN", j % d, j / d),
                    ));
                }
            }
            Actions::Values(v) => {
                if v.len() != n {
                    return Err(invalid(
                        format!("a batch of {} actions", v.len()),
                        space.to_string(),
                        format!("expected {n} actions, one per sub-env"),
                    ));
                }
                for (i, a) in v.iter().enumerate() {
                    match (a, self.num_actions) {
                        (ActionValue::Discrete(x), Some(k)) if *x >= k => {
                            return Err(invalid(
                                x.to_string(),
                                space.to_string(),
                                format!("action of sub-env {i} must be in 0..{k}"),
                            ));
                        }
                        (ActionValue::Discrete(_), Some(_)) => {}
                        (ActionValue::Continuous(x), None)
                            if x.len() == self.act_dim && !x.iter().any(|v| v.is_nan()) => {}
                        (other, _) => {
                            return Err(invalid(
                                format!("{other:?}"),
                                space.to_string(),
                                format!(
                                    "action of sub-env {i} must be {}",
                                    match self.num_actions {
                                        Some(k) => format!("ActionValue::Discrete in 0..{k}"),
                                        None => format!("ActionValue::Continuous of {} non-NaN values", self.act_dim),
                                    }
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Steps every sub-env with one discrete action each (`actions.len() == num_envs`).
    pub fn step_discrete(&mut self, actions: &[usize]) -> Result<VecStep<'_>> {
        self.check_batch(Actions::Discrete(actions))?;
        self.run(|i| ActionValue::Discrete(actions[i]))?;
        Ok(self.view())
    }

    /// Steps every sub-env with a continuous action each: `actions` holds `num_envs * action_dim` values, row
    /// `i` = the action of sub-env `i`. NaN is an error; finite values outside the bounds are clipped by the
    /// sub-envs (as Gymnasium's continuous envs do).
    pub fn step_continuous(&mut self, actions: &[f32]) -> Result<VecStep<'_>> {
        self.check_batch(Actions::Continuous(actions))?;
        let d = self.act_dim;
        self.run(|i| ActionValue::Continuous(&actions[i * d..(i + 1) * d]))?;
        Ok(self.view())
    }

    /// Steps every sub-env with one [`ActionValue`] each (`actions.len() == num_envs`).
    pub fn step(&mut self, actions: &[ActionValue<'_>]) -> Result<VecStep<'_>> {
        self.check_batch(Actions::Values(actions))?;
        self.run(|i| actions[i])?;
        Ok(self.view())
    }

    /// The batch loop (actions already validated). A sub-env error (which validation cannot foresee, e.g. a
    /// backend failure) is returned at once: sub-envs before it have been stepped, later ones not.
    #[inline]
    fn run<'a>(&mut self, action: impl Fn(usize) -> ActionValue<'a>) -> Result<()> {
        self.clear_step_masks();
        let d = self.obs_dim;
        let mode = self.mode;
        let n = self.envs.len();
        // Slices of length exactly `n`, so that indexing by `i < n` below needs no bounds checks.
        let envs = &mut self.envs[..n];
        let obs = &mut self.obs[..n * d];
        let rewards = &mut self.rewards[..n];
        let terminated = &mut self.terminated[..n];
        let truncated = &mut self.truncated[..n];
        let autoreset = &mut self.autoreset[..n];
        let infos = &mut self.infos[..n];
        let ep_ret = &mut self.ep_ret[..n];
        let ep_len = &mut self.ep_len[..n];
        let ep_start = &mut self.ep_start[..n];
        for i in 0..n {
            let row = &mut obs[i * d..(i + 1) * d];
            let env = &mut envs[i];
            if mode == AutoresetMode::NextStep && autoreset[i] {
                // Gymnasium's NEXT_STEP: reset instead of stepping; reward 0, flags false.
                infos[i] = env.reset_into(None, row)?;
                rewards[i] = 0.0;
                terminated[i] = false;
                truncated[i] = false;
                autoreset[i] = false;
                ep_ret[i] = 0.0;
                ep_len[i] = 0;
                ep_start[i] = Instant::now();
                continue;
            }
            let out = env.step_into(action(i), row)?;
            rewards[i] = out.reward;
            terminated[i] = out.terminated;
            truncated[i] = out.truncated;
            infos[i] = out.info;
            ep_ret[i] += out.reward;
            ep_len[i] += 1;
            let done = out.terminated || out.truncated;
            autoreset[i] = done;
            if done {
                self.episode[i] =
                    EpisodeStats { ret: ep_ret[i], len: ep_len[i], time: ep_start[i].elapsed().as_secs_f64() };
                self.episode_mask[i] = true;
                self.any_episode = true;
                self.episode_count += 1;
                if mode == AutoresetMode::SameStep {
                    // Gymnasium's SAME_STEP: keep the final obs and info, reset now.
                    self.final_obs[i * d..(i + 1) * d].copy_from_slice(row);
                    self.final_infos[i] = out.info;
                    self.final_mask[i] = true;
                    self.any_final = true;
                    infos[i] = env.reset_into(None, row)?;
                    autoreset[i] = false;
                    ep_ret[i] = 0.0;
                    ep_len[i] = 0;
                    ep_start[i] = Instant::now();
                }
            }
        }
        Ok(())
    }
}

/// Builds a [`SyncVectorEnv`] of `num_envs` registry envs (Gymnasium's
/// `gym.make_vec(id, num_envs, vectorization_mode="sync")`), each made with `opts` and its time limit.
pub fn make_vec(
    id: &str,
    num_envs: usize,
    opts: &Options,
    mode: AutoresetMode,
) -> Result<SyncVectorEnv<Box<dyn DynEnv>>> {
    let envs = (0..num_envs).map(|_| crate::registry::make_with(id, opts)).collect::<Result<Vec<_>>>()?;
    SyncVectorEnv::new(envs, mode)
}
