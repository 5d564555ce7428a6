//! Wrappers: [`TimeLimit`] and [`RecordEpisodeStatistics`], as Gymnasium's wrappers of the same names.
use std::time::Instant;

use crate::env::{Env, EpisodeStats, Info, Step};
use crate::error::{EnvError, Result};
use crate::mdp::{Mdp, Outcome};
use crate::space::Space;

/// Truncates episodes after `max_episode_steps` steps (Gymnasium's `TimeLimit`): the step that reaches the limit
/// has `truncated = true` (and keeps the inner env's `terminated`, so both can be true).
///
/// ```
/// use bellman_envs::{Env, classic_control::CartPole, wrappers::TimeLimit};
/// let mut env = TimeLimit::new(CartPole::new(), 3);
/// env.reset(Some(0)).unwrap();
/// env.step(0).unwrap();
/// env.step(1).unwrap();
/// assert!(env.step(0).unwrap().truncated);
/// ```
#[derive(Debug, Clone)]
pub struct TimeLimit<E> {
    env: E,
    max_episode_steps: u64,
    elapsed: u64,
    needs_reset: bool,
}

impl<E> TimeLimit<E> {
    /// Wraps `env` with a limit of `max_episode_steps` steps per episode.
    pub fn new(env: E, max_episode_steps: u64) -> Self {
        TimeLimit { env, max_episode_steps, elapsed: 0, needs_reset: true }
    }
    /// The inner env.
    pub fn inner(&self) -> &E {
        &self.env
    }
    /// The inner env, mutably (e.g. to set a state in a parity test).
    pub fn inner_mut(&mut self) -> &mut E {
        &mut self.env
    }
    /// Steps taken in the current episode.
    pub fn elapsed_steps(&self) -> u64 {
        self.elapsed
    }
    /// Sets the elapsed-step counter (re-arming the limit part-way, as the teacher-forced parity replay does).
    pub fn set_elapsed_steps(&mut self, elapsed: u64) {
        self.elapsed = elapsed;
        self.needs_reset = false;
    }
    /// The limit.
    pub fn max_episode_steps(&self) -> u64 {
        self.max_episode_steps
    }
}

impl<E: Env> Env for TimeLimit<E> {
    type Obs = E::Obs;
    type Action = E::Action;
    fn observation_space(&self) -> &Space {
        self.env.observation_space()
    }
    fn action_space(&self) -> &Space {
        self.env.action_space()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<(Self::Obs, Info)> {
        let r = self.env.reset(seed)?;
        self.elapsed = 0;
        self.needs_reset = false;
        Ok(r)
    }
    fn step(&mut self, action: Self::Action) -> Result<Step<Self::Obs>> {
        if self.needs_reset {
            return Err(EnvError::NeedsReset("after the episode was truncated by the time limit"));
        }
        let mut s = self.env.step(action)?;
        self.elapsed += 1;
        if self.elapsed >= self.max_episode_steps {
            s.truncated = true;
        }
        if s.terminated || s.truncated {
            self.needs_reset = true;
        }
        Ok(s)
    }
}

impl<E: Mdp> Mdp for TimeLimit<E> {
    fn num_states(&self) -> usize {
        self.env.num_states()
    }
    fn num_actions(&self) -> usize {
        self.env.num_actions()
    }
    fn outcomes(&self, s: usize, a: usize) -> &[Outcome] {
        self.env.outcomes(s, a)
    }
    fn initial_distribution(&self) -> &[f64] {
        self.env.initial_distribution()
    }
    fn grid_shape(&self) -> Option<(usize, usize)> {
        self.env.grid_shape()
    }
    fn state_label(&self, s: usize) -> Option<char> {
        self.env.state_label(s)
    }
}

/// Records the return, length and wall time of every episode (Gymnasium's `RecordEpisodeStatistics`): the final
/// step's `info.episode` holds them, and the last `buffer_len` episodes are kept in queues.
///
/// ```
/// use bellman_envs::{Env, classic_control::CartPole, wrappers::RecordEpisodeStatistics};
/// let mut env = RecordEpisodeStatistics::new(CartPole::new(), 100);
/// env.reset(Some(0)).unwrap();
/// loop {
///     let s = env.step(0).unwrap();
///     if s.done() {
///         assert_eq!(s.info.episode.unwrap().len as f64, s.info.episode.unwrap().ret);
///         break;
///     }
/// }
/// assert_eq!(env.episodes().len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct RecordEpisodeStatistics<E> {
    env: E,
    ret: f64,
    len: u64,
    start: Instant,
    buffer_len: usize,
    episodes: std::collections::VecDeque<EpisodeStats>,
}

impl<E> RecordEpisodeStatistics<E> {
    /// Wraps `env`, keeping the statistics of the last `buffer_len` episodes.
    pub fn new(env: E, buffer_len: usize) -> Self {
        RecordEpisodeStatistics {
            env,
            ret: 0.0,
            len: 0,
            start: Instant::now(),
            buffer_len,
            episodes: std::collections::VecDeque::with_capacity(buffer_len),
        }
    }
    /// The statistics of the last finished episodes, oldest first.
    pub fn episodes(&self) -> &std::collections::VecDeque<EpisodeStats> {
        &self.episodes
    }
    /// The inner env.
    pub fn inner(&self) -> &E {
        &self.env
    }
}

impl<E: Env> Env for RecordEpisodeStatistics<E> {
    type Obs = E::Obs;
    type Action = E::Action;
    fn observation_space(&self) -> &Space {
        self.env.observation_space()
    }
    fn action_space(&self) -> &Space {
        self.env.action_space()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<(Self::Obs, Info)> {
        let r = self.env.reset(seed)?;
        self.ret = 0.0;
        self.len = 0;
        self.start = Instant::now();
        Ok(r)
    }
    fn step(&mut self, action: Self::Action) -> Result<Step<Self::Obs>> {
        let mut s = self.env.step(action)?;
        self.ret += s.reward;
        self.len += 1;
        if s.terminated || s.truncated {
            let stats = EpisodeStats { ret: self.ret, len: self.len, time: self.start.elapsed().as_secs_f64() };
            s.info.episode = Some(stats);
            if self.buffer_len > 0 {
                if self.episodes.len() == self.buffer_len {
                    self.episodes.pop_front();
                }
                self.episodes.push_back(stats);
            }
        }
        Ok(s)
    }
}
