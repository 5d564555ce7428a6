//! The frame-window batch layout of [`crate::FrameStackStorage`]: each sampled transition as one run of
//! consecutive frames, from which both stacks are views.
//!
//! A transition's observation and next observation share frames: with one-step transitions, `next_obs` is `obs`
//! shifted by one frame (`obs = [f0, f1, f2, f3]`, `next_obs = [f1, f2, f3, f4]`), so the two stacks are windows
//! `[0, k)` and `[1, k + 1)` of the `k + 1` frames `[f0, .., f4]`. Writing that window once moves `k + 1` frames
//! per row instead of `2 k` (Atari, `k = 4`: 5 frames instead of 8, 1.13 MB instead of 1.81 MB for a batch of
//! 32), and a consumer that uploads the window to a device takes the two stacks as views (`narrow` on dim 1).
//!
//! **Exact in every case.** The batch picks one `shift` `s` in `1..=k` for all its rows: the smallest with
//! `next_obs[j] == obs[j + s]` for every `j < k - s` in every row (compared by frame id: the same stored
//! frame), and stores row `r` as `obs ++ next_obs[k - s..]`, so `obs = window[0..k]` and `next_obs =
//! window[s..s + k]` hold exactly the pushed stacks. One-step transitions give `s = 1`, including the first
//! transition of an episode (Gymnasium's `FrameStackObservation` pads the first stack with the reset frame or
//! with zeros, and the next stack is still that stack shifted by one) and the last one (the final observation
//! is the shifted stack too); the storage matches the shared frames to the same stored frames, except in rare
//! cases (a frame about to leave the ring is stored again) that only widen the window. n-step transitions
//! (n < k) give `s = n` unless a batch holds a shorter episode tail; any batch whose rows share no shift (or n >= k, or stacks pushed in another pattern) falls back to
//! `s = k`: both stacks in full, `2 k` frames per row, never wrong.
use crate::element::Element;
use crate::transition::Batch;

/// A sampled batch of frame-stack transitions in window layout (see the [module docs](self)); owned by the caller
/// and reused (no allocation once it has grown to the largest batch).
///
/// Row `r` is `width = stack + shift` frames of `frame_len` bytes at `frames[r * width * frame_len..]`;
/// its observation is frames `0..stack` of the row, its next observation frames `shift..shift + stack`.
///
/// ```
/// use bellman_replay::{ReplayBuffer, Transition, WindowBatch};
/// use rand::SeedableRng;
/// let mut buf = ReplayBuffer::frame_stack::<i64>(100, 4, &[1], 1).unwrap();
/// // frames 1, 2, 3, ...: obs [1, 2, 3, 4] -> next [2, 3, 4, 5], and so on
/// for t in 0..10u8 {
///     let (obs, next) = ([t + 1, t + 2, t + 3, t + 4], [t + 2, t + 3, t + 4, t + 5]);
///     buf.push(&Transition { obs: &obs, action: &[0], reward: 0.0, next_obs: &next, terminated: false,
///                            truncated: false, discount: 0.99 }).unwrap();
/// }
/// let mut w = WindowBatch::new();
/// buf.sample_window(3, &mut rand_pcg::Pcg64::seed_from_u64(0), &mut w).unwrap();
/// assert_eq!((w.shift, w.width), (1, 5));
/// let t = w.indices[0] as u8;
/// assert_eq!(w.window_row(0), &[t + 1, t + 2, t + 3, t + 4, t + 5]);
/// assert_eq!(w.next_obs_frame(0, 3), &[t + 5]);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowBatch<A> {
    /// `rows * width * frame_len` bytes: the frame windows, row after row.
    pub frames: Vec<u8>,
    /// Frames per row: `stack + shift`.
    pub width: usize,
    /// Offset of the next observation in a row, in frames (`1..=stack`).
    pub shift: usize,
    /// Frames per stack.
    pub stack: usize,
    /// Bytes per frame.
    pub frame_len: usize,
    /// `rows * action_dim` actions.
    pub actions: Vec<A>,
    /// Rewards.
    pub rewards: Vec<f32>,
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
    /// Elements per action.
    pub action_dim: usize,
    /// Scratch space of the prioritised sampler.
    pub(crate) scratch: Vec<f64>,
}

impl<A: Element> WindowBatch<A> {
    /// An empty batch.
    pub fn new() -> Self {
        WindowBatch {
            frames: Vec::new(),
            width: 0,
            shift: 0,
            stack: 0,
            frame_len: 0,
            actions: Vec::new(),
            rewards: Vec::new(),
            terminated: Vec::new(),
            truncated: Vec::new(),
            discounts: Vec::new(),
            indices: Vec::new(),
            weights: Vec::new(),
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
    /// The `width` frames of row `r`.
    pub fn window_row(&self, r: usize) -> &[u8] {
        let n = self.width * self.frame_len;
        &self.frames[r * n..(r + 1) * n]
    }
    /// Frame `j` (`< stack`) of row `r`'s observation.
    pub fn obs_frame(&self, r: usize, j: usize) -> &[u8] {
        let f = (r * self.width + j) * self.frame_len;
        &self.frames[f..f + self.frame_len]
    }
    /// Frame `j` (`< stack`) of row `r`'s next observation.
    pub fn next_obs_frame(&self, r: usize, j: usize) -> &[u8] {
        self.obs_frame(r, self.shift + j)
    }
    /// Row `r`'s observation, a contiguous slice of the window.
    pub fn obs_row(&self, r: usize) -> &[u8] {
        let f = r * self.width * self.frame_len;
        &self.frames[f..f + self.stack * self.frame_len]
    }
    /// Row `r`'s next observation, a contiguous slice of the window.
    pub fn next_obs_row(&self, r: usize) -> &[u8] {
        let f = (r * self.width + self.shift) * self.frame_len;
        &self.frames[f..f + self.stack * self.frame_len]
    }
    /// Action of row `r`.
    pub fn action_row(&self, r: usize) -> &[A] {
        &self.actions[r * self.action_dim..(r + 1) * self.action_dim]
    }
    /// Copies this batch into the stacked layout of [`Batch`] (both stacks in full), for consumers that need it.
    pub fn to_batch(&self, out: &mut Batch<u8, A>) {
        let n = self.len();
        let ol = self.stack * self.frame_len;
        out.resize(n, ol, self.action_dim);
        for r in 0..n {
            out.obs[r * ol..(r + 1) * ol].copy_from_slice(self.obs_row(r));
            out.next_obs[r * ol..(r + 1) * ol].copy_from_slice(self.next_obs_row(r));
        }
        out.actions.copy_from_slice(&self.actions);
        out.rewards.copy_from_slice(&self.rewards);
        out.terminated.copy_from_slice(&self.terminated);
        out.truncated.copy_from_slice(&self.truncated);
        out.discounts.copy_from_slice(&self.discounts);
        out.indices.copy_from_slice(&self.indices);
        out.weights.copy_from_slice(&self.weights);
    }
    /// Sizes the per-row fields for `n` rows. The frame bytes are sized by the storage once the shift is known;
    /// their capacity is reserved for the widest layout (`2 * stack` frames) so that no later batch of this size
    /// allocates.
    pub(crate) fn resize_rows(&mut self, n: usize, stack: usize, frame_len: usize, action_dim: usize) {
        self.stack = stack;
        self.frame_len = frame_len;
        self.action_dim = action_dim;
        let widest = n * 2 * stack * frame_len;
        if self.frames.capacity() < widest {
            self.frames.reserve_exact(widest - self.frames.len());
        }
        self.actions.resize(n * action_dim, A::default());
        self.rewards.resize(n, 0.0);
        self.terminated.resize(n, false);
        self.truncated.resize(n, false);
        self.discounts.resize(n, 0.0);
        self.indices.resize(n, 0);
        self.weights.resize(n, 1.0);
    }
}

/// Bit `s` (for `s` in `1..=k`) is set when `next[j] == obs[j + s]` for every `j < k - s`: the next stack is the
/// observation shifted by `s` frames, as far as the two overlap. Bit `k` is always set (no overlap).
pub(crate) fn shift_mask(obs: &[u64], next: &[u64]) -> u32 {
    let k = obs.len();
    let mut mask = 0u32;
    for s in 1..=k {
        if (0..k - s).all(|j| next[j] == obs[j + s]) {
            mask |= 1 << s;
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_mask_finds_every_consistent_shift() {
        // one-step: only shift 1 and the trivial k
        assert_eq!(shift_mask(&[1, 2, 3, 4], &[2, 3, 4, 5]), (1 << 1) | (1 << 4));
        // reset padding [r, r, r, r] -> [r, r, r, 5]: shifts 1, 2, 3 all consistent
        assert_eq!(shift_mask(&[9, 9, 9, 9], &[9, 9, 9, 5]), 0b11110);
        // two-step
        assert_eq!(shift_mask(&[1, 2, 3, 4], &[3, 4, 5, 6]), (1 << 2) | (1 << 4));
        // unrelated stacks: only the full fallback
        assert_eq!(shift_mask(&[1, 2, 3, 4], &[7, 8, 9, 10]), 1 << 4);
        assert_eq!(shift_mask(&[1], &[2]), 1 << 1);
    }
}
