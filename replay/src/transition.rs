//! What goes in ([`Transition`], [`TransitionBatch`]) and what comes out ([`Batch`]) of a buffer.
use crate::element::Element;
use crate::error::{Result, invalid};

/// One transition, borrowed from the caller (nothing is copied until the buffer stores it).
///
/// Rewards are `f32` (as Stable-Baselines3 stores them, and exact for Atari's clipped rewards); the n-step
/// accumulator sums in `f64` and rounds once. `discount` is the factor of the bootstrapped value in the TD target
/// `reward + discount * (1 - terminated) * V(next_obs)`: `gamma` for a one-step transition, `gamma^m` for an
/// m-step return (what [`crate::NStep`] emits).
///
/// ```
/// use bellman_replay::Transition;
/// let (obs, next) = ([0.1f32, 0.2, 0.3, 0.4], [0.2f32, 0.3, 0.4, 0.5]);
/// let t = Transition { obs: &obs, action: &[1i64], reward: 1.0, next_obs: &next, terminated: false,
///                      truncated: false, discount: 0.99 };
/// assert_eq!(t.action, &[1]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition<'a, O, A> {
    /// Observation `s_t`, flattened (row-major), `obs_len` elements.
    pub obs: &'a [O],
    /// Action `a_t`: one `i64` index for discrete actions, `action_dim` values for continuous ones.
    pub action: &'a [A],
    /// Reward (or discounted n-step return).
    pub reward: f32,
    /// Observation after the step (the final observation when the episode ended there).
    pub next_obs: &'a [O],
    /// The MDP ended: do not bootstrap from `next_obs`.
    pub terminated: bool,
    /// A time limit (or other outside cause) cut the episode: bootstrap from `next_obs`.
    pub truncated: bool,
    /// Factor of the bootstrapped value (`gamma^m`).
    pub discount: f32,
}

/// Transitions from `n` parallel envs at once (one step of a vector env), as concatenated slices.
/// Row `i` belongs to env `i` (its stream, for the frame-deduplicated storage).
///
/// `discounts` holds either `n` values or one value used for every row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransitionBatch<'a, O, A> {
    /// `n * obs_len` observations.
    pub obs: &'a [O],
    /// `n * action_dim` actions.
    pub actions: &'a [A],
    /// `n` rewards.
    pub rewards: &'a [f32],
    /// `n * obs_len` next observations.
    pub next_obs: &'a [O],
    /// `n` terminated flags.
    pub terminated: &'a [bool],
    /// `n` truncated flags.
    pub truncated: &'a [bool],
    /// `n` discounts, or one shared by all rows.
    pub discounts: &'a [f32],
}

impl<'a, O: Element, A: Element> TransitionBatch<'a, O, A> {
    /// Number of rows (`rewards.len()`).
    pub fn len(&self) -> usize {
        self.rewards.len()
    }
    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }
    /// Checks every slice length against `n = rewards.len()`.
    pub fn validate(&self, obs_len: usize, action_dim: usize) -> Result<()> {
        let n = self.len();
        let check = |name: &str, got: usize, want: usize| {
            if got == want {
                Ok(())
            } else {
                Err(invalid(format!("TransitionBatch.{name} has {got} elements, expected {want} (n = {n} rows)")))
            }
        };
        check("obs", self.obs.len(), n * obs_len)?;
        check("next_obs", self.next_obs.len(), n * obs_len)?;
        check("actions", self.actions.len(), n * action_dim)?;
        check("terminated", self.terminated.len(), n)?;
        check("truncated", self.truncated.len(), n)?;
        if self.discounts.len() != 1 {
            check("discounts", self.discounts.len(), n)?;
        }
        Ok(())
    }
    /// Row `i` as a [`Transition`] (call [`Self::validate`] first).
    pub fn row(&self, i: usize) -> Transition<'a, O, A> {
        let ol = self.obs.len() / self.len().max(1);
        let ad = self.actions.len() / self.len().max(1);
        Transition {
            obs: &self.obs[i * ol..(i + 1) * ol],
            action: &self.actions[i * ad..(i + 1) * ad],
            reward: self.rewards[i],
            next_obs: &self.next_obs[i * ol..(i + 1) * ol],
            terminated: self.terminated[i],
            truncated: self.truncated[i],
            discount: if self.discounts.len() == 1 { self.discounts[0] } else { self.discounts[i] },
        }
    }
}

/// A sampled batch, owned by the caller and reused: sampling resizes the vectors (allocating only the first time
/// or when the batch grows) and overwrites them. Row `i` of `obs` is `obs[i * obs_len..(i + 1) * obs_len]`.
///
/// ```
/// use bellman_replay::Batch;
/// let b: Batch<f32, i64> = Batch::new();
/// assert!(b.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch<O, A> {
    /// `batch_size * obs_len` observations (frame stacks rebuilt for frame storage).
    pub obs: Vec<O>,
    /// `batch_size * action_dim` actions.
    pub actions: Vec<A>,
    /// Rewards.
    pub rewards: Vec<f32>,
    /// `batch_size * obs_len` next observations.
    pub next_obs: Vec<O>,
    /// Terminated flags.
    pub terminated: Vec<bool>,
    /// Truncated flags.
    pub truncated: Vec<bool>,
    /// Bootstrap discounts (`gamma^m`).
    pub discounts: Vec<f32>,
    /// Slot of each row in the buffer (pass them back to `update_priorities`).
    pub indices: Vec<usize>,
    /// Importance-sampling weights (all 1 for uniform sampling).
    pub weights: Vec<f32>,
    /// Elements per observation.
    pub obs_len: usize,
    /// Elements per action.
    pub action_dim: usize,
    /// Scratch space of the prioritised sampler.
    pub(crate) scratch: Vec<f64>,
}

impl<O: Element, A: Element> Batch<O, A> {
    /// An empty batch.
    pub fn new() -> Self {
        Batch {
            obs: Vec::new(),
            actions: Vec::new(),
            rewards: Vec::new(),
            next_obs: Vec::new(),
            terminated: Vec::new(),
            truncated: Vec::new(),
            discounts: Vec::new(),
            indices: Vec::new(),
            weights: Vec::new(),
            obs_len: 0,
            action_dim: 0,
            scratch: Vec::new(),
        }
    }
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }
    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }
    /// Observation of row `i`.
    pub fn obs_row(&self, i: usize) -> &[O] {
        &self.obs[i * self.obs_len..(i + 1) * self.obs_len]
    }
    /// Next observation of row `i`.
    pub fn next_obs_row(&self, i: usize) -> &[O] {
        &self.next_obs[i * self.obs_len..(i + 1) * self.obs_len]
    }
    /// Action of row `i`.
    pub fn action_row(&self, i: usize) -> &[A] {
        &self.actions[i * self.action_dim..(i + 1) * self.action_dim]
    }
    /// Resizes every field for `n` rows (no allocation when the capacity suffices). Sampling calls it; call it
    /// yourself to gather chosen slots with [`crate::Storage::gather`].
    pub fn resize(&mut self, n: usize, obs_len: usize, action_dim: usize) {
        self.obs_len = obs_len;
        self.action_dim = action_dim;
        self.obs.resize(n * obs_len, O::default());
        self.next_obs.resize(n * obs_len, O::default());
        self.actions.resize(n * action_dim, A::default());
        self.rewards.resize(n, 0.0);
        self.terminated.resize(n, false);
        self.truncated.resize(n, false);
        self.discounts.resize(n, 0.0);
        self.indices.resize(n, 0);
        self.weights.resize(n, 1.0);
    }
}
