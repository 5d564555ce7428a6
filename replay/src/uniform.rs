//! The uniform replay buffer (DQN, Mnih et al. 2015): sample transitions with replacement, each equally likely.
use std::path::Path;

use rand::Rng;

use crate::element::Element;
use crate::error::{ReplayError, Result, invalid};
use crate::frames::FrameStackStorage;
use crate::storage::{FlatStorage, Storage};
use crate::transition::{Batch, Transition, TransitionBatch};

/// A uniform replay buffer over any [`Storage`].
///
/// Sampling draws `batch_size` live transitions independently and uniformly, with replacement (as
/// Stable-Baselines3's `ReplayBuffer.sample` does), into a caller-owned [`Batch`] (no allocation once the batch
/// has grown to size). Deterministic for a given rng state.
///
/// ```
/// use bellman_replay::{Batch, ReplayBuffer, Transition};
/// use rand::SeedableRng;
/// let mut buf = ReplayBuffer::<_>::flat::<f32, i64>(1000, &[4], 1).unwrap();
/// let (o, n) = ([0.0f32; 4], [1.0f32; 4]);
/// buf.push(&Transition { obs: &o, action: &[1], reward: 1.0, next_obs: &n, terminated: false,
///                        truncated: false, discount: 0.99 }).unwrap();
/// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
/// let mut batch = Batch::new();
/// buf.sample(32, &mut rng, &mut batch).unwrap();
/// assert_eq!(batch.len(), 32);
/// assert_eq!(batch.obs.len(), 32 * 4);
/// assert_eq!(batch.next_obs_row(5), &[1.0; 4]);
/// ```
#[derive(Debug, Clone)]
pub struct ReplayBuffer<S> {
    storage: S,
}

/// Uniform buffer with flat storage: `FlatReplay<f32, i64>` for CartPole-like envs.
pub type FlatReplay<O, A> = ReplayBuffer<FlatStorage<O, A>>;
/// Uniform buffer with frame-deduplicated storage of `u8` frame stacks (Atari).
pub type FrameReplay<A> = ReplayBuffer<FrameStackStorage<A>>;

impl ReplayBuffer<()> {
    /// A uniform buffer with [`FlatStorage`]: `capacity` transitions, observations of `obs_shape`, actions of
    /// `action_dim` elements (1 for discrete).
    pub fn flat<O: Element, A: Element>(
        capacity: usize,
        obs_shape: &[usize],
        action_dim: usize,
    ) -> Result<FlatReplay<O, A>> {
        Ok(ReplayBuffer { storage: FlatStorage::new(capacity, obs_shape, action_dim)? })
    }
    /// A uniform buffer with [`FrameStackStorage`] for stacks of `stack` `u8` frames of `frame_shape`
    /// (Atari: `stack = 4`, `frame_shape = [84, 84]`).
    pub fn frame_stack<A: Element>(
        capacity: usize,
        stack: usize,
        frame_shape: &[usize],
        action_dim: usize,
    ) -> Result<FrameReplay<A>> {
        Ok(ReplayBuffer { storage: FrameStackStorage::new(capacity, stack, frame_shape, action_dim)? })
    }
}

impl<S: Storage> ReplayBuffer<S> {
    /// A uniform buffer over `storage`.
    pub fn from_storage(storage: S) -> Self {
        ReplayBuffer { storage }
    }
    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }
    /// Maximum number of transitions.
    pub fn capacity(&self) -> usize {
        self.storage.capacity()
    }
    /// Number of transitions held.
    pub fn len(&self) -> usize {
        self.storage.len()
    }
    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.storage.is_empty()
    }
    /// Bytes of memory held by the storage.
    pub fn memory_bytes(&self) -> usize {
        self.storage.memory_bytes()
    }
    /// Stores one transition (from env 0); returns its slot. The oldest transition is overwritten when full.
    pub fn push(&mut self, t: &Transition<'_, S::Obs, S::Act>) -> Result<usize> {
        self.storage.push(0, t)
    }
    /// Stores one transition from env `env` (frame storage deduplicates frames per env).
    pub fn push_from(&mut self, env: usize, t: &Transition<'_, S::Obs, S::Act>) -> Result<usize> {
        self.storage.push(env, t)
    }
    /// Stores one step of `n` parallel envs (row `i` from env `i`). All lengths are checked before anything is
    /// stored.
    pub fn push_batch(&mut self, b: &TransitionBatch<'_, S::Obs, S::Act>) -> Result<()> {
        b.validate(self.storage.obs_len(), self.storage.action_dim())?;
        for i in 0..b.len() {
            self.storage.push(i, &b.row(i))?;
        }
        Ok(())
    }
    /// Samples `batch_size` transitions uniformly with replacement into `batch` (weights all 1).
    pub fn sample<R: Rng + ?Sized>(
        &self,
        batch_size: usize,
        rng: &mut R,
        batch: &mut Batch<S::Obs, S::Act>,
    ) -> Result<()> {
        if batch_size == 0 {
            return Err(invalid("batch_size 0: sample at least 1 transition"));
        }
        let live = self.storage.live();
        if live.is_empty() {
            return Err(ReplayError::Empty);
        }
        batch.resize(batch_size, self.storage.obs_len(), self.storage.action_dim());
        let cap = self.storage.capacity() as u64;
        for i in batch.indices.iter_mut() {
            *i = (rng.random_range(live.clone()) % cap) as usize;
        }
        batch.weights.fill(1.0);
        self.storage.gather(batch);
        Ok(())
    }
    /// Copies the transitions in `slots` (slots returned by `push` or found in `batch.indices`) into `batch`, with
    /// weights 1; a slot that holds no transition is an error.
    ///
    /// ```
    /// use bellman_replay::{Batch, ReplayBuffer, Transition};
    /// let mut buf = ReplayBuffer::flat::<f32, i64>(4, &[1], 1).unwrap();
    /// let t = Transition { obs: &[3.0], action: &[1], reward: 1.0, next_obs: &[4.0], terminated: false,
    ///                      truncated: false, discount: 0.9 };
    /// let slot = buf.push(&t).unwrap();
    /// let mut batch = Batch::new();
    /// buf.gather(&[slot], &mut batch).unwrap();
    /// assert_eq!(batch.obs, vec![3.0]);
    /// assert!(buf.gather(&[1], &mut batch).is_err());
    /// ```
    pub fn gather(&self, slots: &[usize], batch: &mut Batch<S::Obs, S::Act>) -> Result<()> {
        let live = self.storage.live();
        let cap = self.storage.capacity();
        let held = (live.end - live.start) as usize;
        let first = (live.start % cap as u64) as usize;
        for &s in slots {
            if s >= cap || (s + cap - first) % cap >= held {
                return Err(invalid(format!(
                    "slot {s} holds no transition ({held} held in a ring of {cap} slots, oldest at slot {first})"
                )));
            }
        }
        batch.resize(slots.len(), self.storage.obs_len(), self.storage.action_dim());
        batch.indices.copy_from_slice(slots);
        batch.weights.fill(1.0);
        self.storage.gather(batch);
        Ok(())
    }
    /// Saves the buffer to `path` (versioned binary, written atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::save(path.as_ref(), "uniform", &self.storage, |_| Ok(()))
    }
    /// Loads a buffer written by [`ReplayBuffer::save`] with the same storage and element types.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        crate::io::load(path.as_ref(), "uniform", |_, s| Ok(ReplayBuffer { storage: s }))
    }
}
