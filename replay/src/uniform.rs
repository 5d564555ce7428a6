//! The uniform replay buffer (DQN, Mnih et al. 2015): sample transitions with replacement, each equally likely.
use std::path::Path;

use rand::Rng;

use crate::element::Element;
use crate::error::{ReplayError, Result, invalid};
use crate::frames::FrameStackStorage;
use crate::storage::{FlatStorage, Storage};
use crate::transition::{Batch, Transition, TransitionBatch};
use crate::window::WindowBatch;

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
        self.check_sample(batch_size)?;
        batch.resize(batch_size, self.storage.obs_len(), self.storage.action_dim());
        self.draw(rng, &mut batch.indices);
        batch.weights.fill(1.0);
        self.storage.gather(batch);
        Ok(())
    }
    fn check_sample(&self, batch_size: usize) -> Result<()> {
        if batch_size == 0 {
            return Err(invalid("batch_size 0: sample at least 1 transition"));
        }
        if self.storage.is_empty() {
            return Err(ReplayError::Empty);
        }
        Ok(())
    }
    /// Fills `indices` with live slots drawn uniformly (the buffer is not empty).
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R, indices: &mut [usize]) {
        let live = self.storage.live();
        let cap = self.storage.capacity() as u64;
        for i in indices.iter_mut() {
            *i = (rng.random_range(live.clone()) % cap) as usize;
        }
    }
    /// Checks that every slot in `slots` holds a transition.
    fn check_slots(&self, slots: &[usize]) -> Result<()> {
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
        self.check_slots(slots)?;
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

impl<A: Element> ReplayBuffer<FrameStackStorage<A>> {
    /// Samples like [`ReplayBuffer::sample`] (the same rows for the same rng state) into the window layout of
    /// [`WindowBatch`]: each frame a row needs is written once (Atari: 5 frames per row instead of 8).
    ///
    /// ```
    /// use bellman_replay::{Batch, ReplayBuffer, Transition, WindowBatch};
    /// use rand::SeedableRng;
    /// let mut buf = ReplayBuffer::frame_stack::<i64>(10, 2, &[1], 1).unwrap();
    /// for t in 0..5u8 {
    ///     buf.push(&Transition { obs: &[t, t + 1], action: &[0], reward: 1.0, next_obs: &[t + 1, t + 2],
    ///                            terminated: false, truncated: false, discount: 0.9 }).unwrap();
    /// }
    /// let (mut w, mut b) = (WindowBatch::new(), Batch::new());
    /// buf.sample_window(4, &mut rand_pcg::Pcg64::seed_from_u64(3), &mut w).unwrap();
    /// buf.sample(4, &mut rand_pcg::Pcg64::seed_from_u64(3), &mut b).unwrap();
    /// assert_eq!(w.frames.len(), 4 * 3); // 3 frames per row, not 4
    /// for r in 0..4 {
    ///     assert_eq!((w.obs_row(r), w.next_obs_row(r)), (b.obs_row(r), b.next_obs_row(r)));
    /// }
    /// ```
    pub fn sample_window<R: Rng + ?Sized>(
        &self,
        batch_size: usize,
        rng: &mut R,
        batch: &mut WindowBatch<A>,
    ) -> Result<()> {
        self.check_sample(batch_size)?;
        let s = &self.storage;
        batch.resize_rows(batch_size, s.stack(), s.frame_len(), s.action_dim());
        self.draw(rng, &mut batch.indices);
        batch.weights.fill(1.0);
        s.gather_window(batch);
        Ok(())
    }
    /// Copies the transitions in `slots` into `batch` in window layout, with weights 1; a slot that holds no
    /// transition is an error (the window form of [`ReplayBuffer::gather`]).
    pub fn gather_window(&self, slots: &[usize], batch: &mut WindowBatch<A>) -> Result<()> {
        self.check_slots(slots)?;
        let s = &self.storage;
        batch.resize_rows(slots.len(), s.stack(), s.frame_len(), s.action_dim());
        batch.indices.copy_from_slice(slots);
        batch.weights.fill(1.0);
        s.gather_window(batch);
        Ok(())
    }
}
