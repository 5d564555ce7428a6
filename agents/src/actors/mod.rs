//! Parallel actors, Ape-X style (Horgan et al. 2018, "Distributed Prioritized Experience Replay"): actor threads
//! own their envs and a CPU copy of the policy, send batches of transitions with initial priorities over bounded
//! crossbeam channels, and pick up versioned weights the learner publishes.
//!
//! The machinery is generic, so that the protocol can be tested with fake envs and learners:
//!
//! * [`Actor`]: what runs on each actor thread (an env, a policy copy, its exploration).
//! * [`Learner`]: what the learner thread does with the data (insert into replay, update, publish weights).
//! * [`ActorPool`]: spawns the actors, runs the learner loop ([`ActorPool::run`]) with a [`RateLimiter`]
//!   (Reverb's `SampleToInsertRatio`), counts every transition ([`CounterSnapshot`]), measures policy lag and
//!   surfaces an actor's panic or error as [`AgentError::Actor`] naming it, then stops the others.
//! * [`WeightsCell`]: versioned weights; actors never block the learner.
//! * [`apex_epsilon`]: Ape-X's per-actor exploration rates.
//! * [`dqn`]: Ape-X DQN on flat observations; `pixels` (feature `atari`): on Atari frames, with a CPU copy of the
//!   Nature CNN per actor and frames sent once each.
//!
//! ```
//! use bellman_agents::actors::{Actor, ActorBatch, ActorPool, Learner, PoolConfig, RateLimit};
//! use bellman_agents::trainer::{NullReporter, TrainMetrics};
//!
//! /// An actor whose "env" emits its step counter.
//! struct Counting(u64);
//! impl Actor for Counting {
//!     type Weights = u64;
//!     type Payload = Vec<u64>;
//!     fn new_payload(&self) -> Vec<u64> { Vec::with_capacity(8) }
//!     fn load_weights(&mut self, _w: &u64, _version: u64) -> bellman_agents::Result<()> { Ok(()) }
//!     fn step(&mut self, b: &mut ActorBatch<Vec<u64>>) -> bellman_agents::Result<()> {
//!         self.0 += 1;
//!         b.payload.push(self.0);
//!         b.priorities.push(1.0);
//!         b.env_steps += 1;
//!         Ok(())
//!     }
//! }
//! /// A learner that sums what it receives.
//! struct Summing { sum: u64, updates: u64 }
//! impl Learner for Summing {
//!     type Weights = u64;
//!     type Payload = Vec<u64>;
//!     fn sample_batch(&self) -> usize { 4 }
//!     fn insert(&mut self, b: &ActorBatch<Vec<u64>>, i: usize) -> bellman_agents::Result<bool> {
//!         self.sum += b.payload[i];
//!         Ok(false)
//!     }
//!     fn update(&mut self, _step: u64) -> bellman_agents::Result<()> { self.updates += 1; Ok(()) }
//!     fn weights(&mut self) -> bellman_agents::Result<u64> { Ok(self.updates) }
//!     fn metrics(&mut self, step: u64) -> bellman_agents::Result<TrainMetrics> {
//!         Ok(TrainMetrics { step, ..TrainMetrics::default() })
//!     }
//! }
//! let rate = RateLimit { samples_per_insert: 1.0, min_size_to_sample: 8, error_buffer: 8.0, ..RateLimit::default() };
//! let cfg = PoolConfig { send_batch: 8, rate, ..PoolConfig::default() };
//! let mut pool = ActorPool::spawn(vec![Counting(0), Counting(0)], 0, &cfg, 4).unwrap();
//! let mut learner = Summing { sum: 0, updates: 0 };
//! pool.run(&mut learner, 1_000, &mut NullReporter).unwrap();
//! let c = pool.shutdown().unwrap();
//! assert!(c.env_steps_received >= 1_000);
//! assert_eq!(c.sent, c.received);
//! assert_eq!(c.received, c.inserted + c.discarded);
//! ```
pub mod admission;
pub mod counters;
pub mod dqn;
pub(crate) mod learner;
pub mod limiter;
#[cfg(feature = "atari")]
pub mod pixels;
pub mod pool;
pub(crate) mod run;
pub mod weights;

pub use counters::CounterSnapshot;
pub use dqn::{ActorEpsilon, ApexConfig, ApexDqnTrainer};
pub use limiter::{RateLimit, RateLimiter};
pub use pool::{ActorPool, PoolConfig};
pub use weights::WeightsCell;

#[cfg(doc)]
use crate::error::AgentError;
use crate::error::{AgentError as Error, Result};
use crate::trainer::TrainMetrics;

/// The transitions of one message, in whatever layout the actor and learner agree on (flat arrays for DQN, so that
/// filling a batch allocates nothing).
pub trait Payload: Send + 'static {
    /// Number of transitions.
    fn len(&self) -> usize;
    /// True when there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Removes every transition, keeping the allocation.
    fn clear(&mut self);
}

impl<T: Send + 'static> Payload for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn clear(&mut self) {
        Vec::clear(self)
    }
}

/// A finished episode, as an actor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ActorEpisode {
    /// Undiscounted return.
    pub ret: f64,
    /// Length in env steps.
    pub len: u64,
}

/// One message from an actor to the learner. The pool recycles batches (the learner hands emptied ones back), so
/// steady-state sending allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct ActorBatch<P> {
    /// The sending actor's index.
    pub actor: usize,
    /// The weights version the actor acted with.
    pub version: u64,
    /// The transitions.
    pub payload: P,
    /// Initial priority of each transition (Ape-X: `|TD error|` under the actor's own Q-values).
    pub priorities: Vec<f32>,
    /// Env steps taken to produce this batch (n-step returns lag behind the steps).
    pub env_steps: u64,
    /// Episodes that finished while filling this batch.
    pub episodes: Vec<ActorEpisode>,
}

impl<P: Payload> ActorBatch<P> {
    /// An empty batch around `payload`.
    pub fn new(payload: P) -> Self {
        ActorBatch { actor: 0, version: 0, payload, priorities: Vec::new(), env_steps: 0, episodes: Vec::new() }
    }
    /// Number of transitions.
    pub fn len(&self) -> usize {
        self.payload.len()
    }
    /// True when it holds no transition.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
    fn reset(&mut self, actor: usize, version: u64) {
        self.actor = actor;
        self.version = version;
        self.payload.clear();
        self.priorities.clear();
        self.env_steps = 0;
        self.episodes.clear();
    }
}

/// The work of one actor thread.
pub trait Actor: Send + 'static {
    /// The weights the learner publishes.
    type Weights: Send + Sync + 'static;
    /// The transitions' layout.
    type Payload: Payload;
    /// An empty payload (called a few times per actor; batches are recycled).
    fn new_payload(&self) -> Self::Payload;
    /// Loads weights `version` (before the first step and whenever a newer version was published).
    fn load_weights(&mut self, weights: &Self::Weights, version: u64) -> Result<()>;
    /// Takes one env step (or one vector step), appends the transitions it completes (with their priorities) to
    /// `batch`, adds the env steps to `batch.env_steps` and pushes finished episodes. An `Err` ends the run with
    /// an [`AgentError::Actor`] naming this actor.
    fn step(&mut self, batch: &mut ActorBatch<Self::Payload>) -> Result<()>;
}

/// The learner's side of the protocol (it runs on the thread that calls [`ActorPool::run`]).
pub trait Learner {
    /// The weights it publishes.
    type Weights: Send + Sync + 'static;
    /// The transitions' layout.
    type Payload: Payload;
    /// Transitions sampled per update (the rate limiter counts them).
    fn sample_batch(&self) -> usize;
    /// Inserts transition `index` of `batch` (priority `batch.priorities[index]`); returns true when an older
    /// transition was evicted to make room.
    fn insert(&mut self, batch: &ActorBatch<Self::Payload>, index: usize) -> Result<bool>;
    /// One update (sampling [`Learner::sample_batch`] transitions); `env_steps` is the env steps received so far.
    fn update(&mut self, env_steps: u64) -> Result<()>;
    /// The weights to publish now.
    fn weights(&mut self) -> Result<Self::Weights>;
    /// Overwrites `w` (weights an earlier [`Learner::weights`] returned, no longer held by any actor) with the
    /// weights to publish now; the pool publishes through it once the first weights are out, so publication
    /// allocates nothing. The default builds new ones.
    fn refresh_weights(&mut self, w: &mut Self::Weights) -> Result<()> {
        *w = self.weights()?;
        Ok(())
    }
    /// The learner's own metrics since the last call (loss, mean Q...); the pool adds its counters to `extra`.
    fn metrics(&mut self, env_steps: u64) -> Result<TrainMetrics>;
}

/// Ape-X's exploration rate of actor `i` of `n`: `eps_i = base^(1 + alpha * i / (n - 1))` with base 0.4 and
/// alpha 7 (Horgan et al. 2018, section 4.1); a single actor gets `base`.
///
/// ```
/// use bellman_agents::actors::apex_epsilon;
/// assert_eq!(apex_epsilon(0, 4), 0.4);
/// assert!((apex_epsilon(3, 4) - 0.4f64.powi(8)).abs() < 1e-15);
/// assert_eq!(apex_epsilon(0, 1), 0.4);
/// ```
pub fn apex_epsilon(i: usize, n: usize) -> f64 {
    // Horgan et al. 2018, section 4.1: epsilon = 0.4, alpha = 7.
    const BASE: f64 = 0.4;
    const ALPHA: f64 = 7.0;
    if n <= 1 {
        return BASE;
    }
    BASE.powf(1.0 + ALPHA * i as f64 / (n - 1) as f64)
}

pub(crate) fn actor_error(id: usize, cause: impl Into<String>) -> Error {
    Error::Actor { id, cause: cause.into() }
}
