//! Frame-deduplicated storage of stacked `u8` image observations (Atari: 4 x 84 x 84).
//!
//! An observation and its next observation share all but one frame, and consecutive transitions share the rest,
//! so storing both stacks in full (Stable-Baselines3's layout: 2 x 4 x 7,056 bytes per transition, 56 GB for
//! 1,000,000 transitions, 28 GB with `optimize_memory_usage`) holds every frame up to 8 times. This storage keeps
//! each distinct frame once in a ring of frames and, per transition, the ids of the `2 * stack` frames of its two
//! stacks; sampling copies the frames back into full stacks.
//!
//! **Lossless.** A sampled stack is bit-for-bit the stack that was pushed: frames are matched by content (a
//! fingerprint, then a full comparison), never assumed. Episode boundaries are therefore exactly those of the
//! frame-stacking wrapper: Gymnasium's `FrameStackObservation` pads the first stack of an episode with the reset
//! frame (`padding_type="reset"`, its default) or with zeros (`padding_type="zero"`); either way a stack never
//! holds a frame of the previous episode, and the repeated padding frame is stored once.
//!
//! **Cost.** With one-step transitions (or n-step ones with `n < stack`), each push stores one new frame, plus
//! one or two per episode start. The frame ring holds `capacity + capacity / 32` frames (at least `capacity +
//! 4 * stack`); if frames run out (very short episodes), the oldest transitions are dropped early, so `len()` may
//! stay a little below `capacity`. 1,000,000 Atari transitions take about 7.4 GB.
//!
//! **Streams.** Frames are matched against the recent frames of the same env (`push_from(env, ..)`, or row `i` of
//! `push_batch`), so parallel envs never mix. Pushing all envs as env 0 stays correct but stores more frames.
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::ops::Range;

use crate::element::Element;
use crate::error::{Result, invalid};
use crate::storage::{Storage, check_len, check_scalars};
use crate::transition::{Batch, Transition};

/// Recent frame ids remembered per env for matching (covers stacks up to 16 and n-step up to 32).
const HISTORY: usize = 64;

#[derive(Debug, Clone, Default)]
struct Stream {
    /// Ids of frames written for this env, oldest first (increasing).
    hist: VecDeque<u64>,
    /// Frame ids of the previous obs stack and next stack of this env (empty before its first push).
    prev_obs: Vec<u64>,
    prev_next: Vec<u64>,
}

/// Frame-deduplicated transition storage for stacks of `u8` frames; see the [module docs](self).
///
/// ```
/// use bellman_replay::{FrameStackStorage, Storage, Transition};
/// let mut s = FrameStackStorage::<i64>::new(100, 4, &[2, 2], 1).unwrap();
/// let stack = |f: [u8; 4]| -> Vec<u8> { f.iter().flat_map(|&x| [x; 4]).collect() };
/// // Gymnasium's reset padding: [r, r, r, r] -> [r, r, r, 1] -> [r, r, 1, 2]
/// let (s0, s1, s2) = (stack([9, 9, 9, 9]), stack([9, 9, 9, 1]), stack([9, 9, 1, 2]));
/// let mk = |o: &[u8], n: &[u8]| (o.to_vec(), n.to_vec());
/// for (o, n) in [mk(&s0, &s1), mk(&s1, &s2)] {
///     let t = Transition { obs: &o, action: &[0], reward: 0.0, next_obs: &n, terminated: false,
///                          truncated: false, discount: 0.99 };
///     s.push(0, &t).unwrap();
/// }
/// assert_eq!(s.frames_stored(), 3); // frames 9, 1 and 2, each once
/// ```
#[derive(Debug, Clone)]
pub struct FrameStackStorage<A> {
    capacity: usize,
    stack: usize,
    frame_shape: Vec<usize>,
    obs_shape: Vec<usize>,
    frame_len: usize,
    action_dim: usize,
    /// Ring of frames: frame id `f` lives at `f % frame_cap`.
    frame_cap: usize,
    frames: Vec<u8>,
    fingerprints: Vec<u64>,
    frames_total: u64,
    /// Per slot: `2 * stack` frame ids (obs stack, then next stack).
    ids: Vec<u64>,
    min_frame: Vec<u64>,
    actions: Vec<A>,
    rewards: Vec<f32>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    discounts: Vec<f32>,
    lo: u64,
    total: u64,
    /// Sliding-window minimum of `min_frame` over live transitions: (push number, min frame id), increasing.
    window: VecDeque<(u64, u64)>,
    streams: Vec<Stream>,
    scratch: Vec<u64>,
}

/// A fast content fingerprint of a frame (four independent multiply-xor lanes over 8-byte words; the constant
/// is the 64-bit golden ratio of Fibonacci hashing, Knuth TAOCP vol. 3, 6.4).
fn fingerprint(frame: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = [1u64, 2, 3, 4];
    let mut chunks = frame.chunks_exact(32);
    for c in &mut chunks {
        for (l, w) in h.iter_mut().zip(c.chunks_exact(8)) {
            *l = (*l ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(K).rotate_left(29);
        }
    }
    let mut tail = 5u64;
    for &b in chunks.remainder() {
        tail = (tail ^ b as u64).wrapping_mul(K);
    }
    h.iter().fold(tail ^ frame.len() as u64, |a, &l| (a ^ l).wrapping_mul(K).rotate_left(31))
}

impl<A: Element> FrameStackStorage<A> {
    /// Storage for `capacity` transitions whose observations are stacks of `stack` frames of `frame_shape`
    /// (`u8`), with actions of `action_dim` elements. Allocates the frame ring here (zeroed, so the operating
    /// system commits pages only as frames are written).
    pub fn new(capacity: usize, stack: usize, frame_shape: &[usize], action_dim: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(invalid("capacity 0: a buffer must hold at least 1 transition"));
        }
        if !(1..=16).contains(&stack) {
            return Err(invalid(format!("stack size {stack} is outside [1, 16]")));
        }
        let frame_len: usize = frame_shape.iter().product();
        if frame_shape.is_empty() || frame_len == 0 {
            return Err(invalid(format!("frame shape {frame_shape:?} is empty; every dimension must be >= 1")));
        }
        if action_dim == 0 {
            return Err(invalid("action_dim 0: an action has at least 1 element"));
        }
        let frame_cap = capacity + (capacity / 32).max(4 * stack);
        let bytes = frame_cap.checked_mul(frame_len).ok_or_else(|| invalid("frame ring size overflows usize"))?;
        let mut obs_shape = vec![stack];
        obs_shape.extend_from_slice(frame_shape);
        Ok(FrameStackStorage {
            capacity,
            stack,
            frame_shape: frame_shape.to_vec(),
            obs_shape,
            frame_len,
            action_dim,
            frame_cap,
            frames: vec![0u8; bytes],
            fingerprints: vec![0; frame_cap],
            frames_total: 0,
            ids: vec![0; capacity * 2 * stack],
            min_frame: vec![0; capacity],
            actions: vec![A::default(); capacity * action_dim],
            rewards: vec![0.0; capacity],
            terminated: vec![false; capacity],
            truncated: vec![false; capacity],
            discounts: vec![0.0; capacity],
            lo: 0,
            total: 0,
            window: VecDeque::with_capacity(capacity),
            streams: Vec::new(),
            scratch: vec![0; 2 * stack],
        })
    }

    /// Bytes that [`Storage::memory_bytes`] reports for a storage built by [`FrameStackStorage::new`] with these
    /// arguments, without allocating it (`None` on overflow). For 1,000,000 Atari transitions (4 x 84 x 84,
    /// one `i64` action) it is about 7.4 GB.
    ///
    /// ```
    /// use bellman_replay::FrameStackStorage;
    /// let b = FrameStackStorage::<i64>::memory_estimate(1_000_000, 4, &[84, 84], 1).unwrap();
    /// assert!(b < 7_500_000_000);
    /// ```
    pub fn memory_estimate(capacity: usize, stack: usize, frame_shape: &[usize], action_dim: usize) -> Option<usize> {
        let frame_len: usize = frame_shape.iter().product();
        let frame_cap = capacity.checked_add((capacity / 32).max(4 * stack))?;
        let frames = frame_cap.checked_mul(frame_len)?;
        let per_frame = 8;
        let per_transition = 2 * stack * 8 + 8 + action_dim * A::SIZE + 4 + 4 + 1 + 1 + 16;
        frames.checked_add(frame_cap * per_frame)?.checked_add(capacity.checked_mul(per_transition)?)
    }

    /// Frames per stack.
    pub fn stack(&self) -> usize {
        self.stack
    }
    /// Shape of one frame.
    pub fn frame_shape(&self) -> &[usize] {
        &self.frame_shape
    }
    /// Number of frames in the frame ring (frames written so far, capped at the ring size).
    pub fn frames_stored(&self) -> usize {
        self.frames_total.min(self.frame_cap as u64) as usize
    }
    /// Size of the frame ring, in frames.
    pub fn frame_capacity(&self) -> usize {
        self.frame_cap
    }

    fn frame(&self, id: u64) -> &[u8] {
        let i = (id % self.frame_cap as u64) as usize;
        &self.frames[i * self.frame_len..(i + 1) * self.frame_len]
    }

    /// True when frame `id` exists and survives `extra` more frame writes.
    fn survives(&self, id: u64, extra: u64) -> bool {
        id < self.frames_total && id + self.frame_cap as u64 >= self.frames_total + extra
    }

    fn matches(&self, id: u64, fp: u64, frame: &[u8]) -> bool {
        self.survives(id, 2 * self.stack as u64)
            && self.fingerprints[(id % self.frame_cap as u64) as usize] == fp
            && self.frame(id) == frame
    }

    fn evict_front(&mut self) {
        self.lo += 1;
        while self.window.front().is_some_and(|&(t, _)| t < self.lo) {
            self.window.pop_front();
        }
    }

    /// Writes a new frame, first dropping the transitions that still use the frame it overwrites.
    fn write_frame(&mut self, stream: usize, frame: &[u8], fp: u64) -> u64 {
        let id = self.frames_total;
        if let Some(over) = id.checked_sub(self.frame_cap as u64) {
            while self.window.front().is_some_and(|&(_, m)| m <= over) {
                let (t, _) = self.window[0];
                while self.lo <= t {
                    self.evict_front();
                }
            }
        }
        let i = (id % self.frame_cap as u64) as usize;
        self.frames[i * self.frame_len..(i + 1) * self.frame_len].copy_from_slice(frame);
        self.fingerprints[i] = fp;
        self.frames_total += 1;
        let h = &mut self.streams[stream].hist;
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(id);
        id
    }

    /// The id following `id` in the stream's history.
    fn successor(&self, stream: usize, id: u64) -> Option<u64> {
        let h = &self.streams[stream].hist;
        let p = h.binary_search(&id).ok()?;
        h.get(p + 1).copied()
    }

    /// Stores the frames of one stack, writing ids into `self.scratch[off..off + stack]`.
    fn store_stack(&mut self, stream: usize, stackdata: &[u8], prev_is_next: bool, off: usize) {
        let (k, fl) = (self.stack, self.frame_len);
        for j in 0..k {
            let frame = &stackdata[j * fl..(j + 1) * fl];
            let mut cands = [u64::MAX; 3];
            if j > 0 {
                let p = self.scratch[off + j - 1];
                cands[0] = self.successor(stream, p).unwrap_or(u64::MAX);
                cands[1] = p;
            } else {
                let s = &self.streams[stream];
                let prev = if prev_is_next { &s.prev_next } else { &s.prev_obs };
                if prev_is_next && off > 0 {
                    // The next stack usually starts with the obs stack's second frame.
                    cands[0] = self.scratch[1.min(k - 1)];
                }
                if !prev.is_empty() {
                    cands[1] = prev[1.min(k - 1)];
                    cands[2] = prev[0];
                }
            }
            // Likely candidates are compared directly; the fingerprint is computed only to search the history
            // and to store a new frame.
            let survive = 2 * k as u64;
            let mut found =
                cands.iter().copied().find(|&c| c != u64::MAX && self.survives(c, survive) && self.frame(c) == frame);
            let id = match found {
                Some(id) => id,
                None => {
                    let fp = fingerprint(frame);
                    found = self.streams[stream].hist.iter().rev().copied().find(|&c| self.matches(c, fp, frame));
                    match found {
                        Some(id) => id,
                        None => self.write_frame(stream, frame, fp),
                    }
                }
            };
            self.scratch[off + j] = id;
        }
    }
}

impl<A: Element> Storage for FrameStackStorage<A> {
    type Obs = u8;
    type Act = A;
    fn capacity(&self) -> usize {
        self.capacity
    }
    fn obs_len(&self) -> usize {
        self.stack * self.frame_len
    }
    fn obs_shape(&self) -> &[usize] {
        &self.obs_shape
    }
    fn action_dim(&self) -> usize {
        self.action_dim
    }
    fn live(&self) -> Range<u64> {
        self.lo..self.total
    }
    fn push(&mut self, stream: usize, t: &Transition<'_, u8, A>) -> Result<usize> {
        let ol = self.stack * self.frame_len;
        check_len("obs", t.obs.len(), ol)?;
        check_len("next_obs", t.next_obs.len(), ol)?;
        check_len("action", t.action.len(), self.action_dim)?;
        check_scalars(t)?;
        if stream >= 1 << 16 {
            return Err(invalid(format!("env index {stream} is outside [0, 65535]")));
        }
        if stream >= self.streams.len() {
            self.streams.resize(stream + 1, Stream::default());
        }
        if self.total - self.lo == self.capacity as u64 {
            self.evict_front();
        }
        let k = self.stack;
        self.store_stack(stream, t.obs, false, 0);
        self.store_stack(stream, t.next_obs, true, k);
        let slot = (self.total % self.capacity as u64) as usize;
        self.ids[slot * 2 * k..(slot + 1) * 2 * k].copy_from_slice(&self.scratch);
        let m = self.scratch.iter().copied().min().unwrap_or(0);
        self.min_frame[slot] = m;
        let ad = self.action_dim;
        self.actions[slot * ad..(slot + 1) * ad].copy_from_slice(t.action);
        self.rewards[slot] = t.reward;
        self.terminated[slot] = t.terminated;
        self.truncated[slot] = t.truncated;
        self.discounts[slot] = t.discount;
        while self.window.back().is_some_and(|&(_, b)| b >= m) {
            self.window.pop_back();
        }
        self.window.push_back((self.total, m));
        self.total += 1;
        if self.lo == self.total {
            // Only possible if this transition's own frames were overwritten, which the ring size prevents.
            self.lo = self.total - 1;
        }
        let s = &mut self.streams[stream];
        s.prev_obs.clear();
        s.prev_obs.extend_from_slice(&self.scratch[..k]);
        s.prev_next.clear();
        s.prev_next.extend_from_slice(&self.scratch[k..]);
        Ok(slot)
    }
    fn gather(&self, batch: &mut Batch<u8, A>) {
        let (k, fl, ad) = (self.stack, self.frame_len, self.action_dim);
        let ol = k * fl;
        for (r, &i) in batch.indices.iter().enumerate() {
            let ids = &self.ids[i * 2 * k..(i + 1) * 2 * k];
            for (j, &id) in ids[..k].iter().enumerate() {
                batch.obs[r * ol + j * fl..r * ol + (j + 1) * fl].copy_from_slice(self.frame(id));
            }
            for j in 0..k {
                let dst = &mut batch.next_obs[r * ol + j * fl..r * ol + (j + 1) * fl];
                // A frame shared with the obs stack is copied from the batch (in cache), not from the ring.
                match ids[..k].iter().position(|&o| o == ids[k + j]) {
                    Some(p) => dst.copy_from_slice(&batch.obs[r * ol + p * fl..r * ol + (p + 1) * fl]),
                    None => dst.copy_from_slice(self.frame(ids[k + j])),
                }
            }
            batch.actions[r * ad..(r + 1) * ad].copy_from_slice(&self.actions[i * ad..(i + 1) * ad]);
            batch.rewards[r] = self.rewards[i];
            batch.terminated[r] = self.terminated[i];
            batch.truncated[r] = self.truncated[i];
            batch.discounts[r] = self.discounts[i];
        }
    }
    fn memory_bytes(&self) -> usize {
        self.frames.capacity()
            + (self.fingerprints.capacity() + self.ids.capacity() + self.min_frame.capacity()) * 8
            + self.actions.capacity() * A::SIZE
            + (self.rewards.capacity() + self.discounts.capacity()) * 4
            + self.terminated.capacity()
            + self.truncated.capacity()
            + self.window.capacity() * 16
    }
    fn kind() -> &'static str {
        "frames"
    }
    fn write_state(&self, w: &mut dyn Write) -> std::io::Result<()> {
        use crate::io::{put_bools, put_u64, put_usizes};
        put_usizes(w, &[self.capacity, self.stack, self.action_dim, self.frame_shape.len()])?;
        put_usizes(w, &self.frame_shape)?;
        for x in [self.lo, self.total, self.frames_total] {
            put_u64(w, x)?;
        }
        w.write_all(&self.frames)?;
        for v in [&self.ids, &self.min_frame] {
            for &x in v.iter() {
                put_u64(w, x)?;
            }
        }
        A::write_slice(&self.actions, w)?;
        f32::write_slice(&self.rewards, w)?;
        f32::write_slice(&self.discounts, w)?;
        put_bools(w, &self.terminated)?;
        put_bools(w, &self.truncated)
    }
    fn read_state(r: &mut dyn Read) -> std::result::Result<Self, String> {
        use crate::io::{get_bools, get_u64, get_usize, io_msg};
        let (capacity, stack, action_dim, ndim) = (get_usize(r)?, get_usize(r)?, get_usize(r)?, get_usize(r)?);
        if ndim > 16 {
            return Err(format!("frame rank {ndim} is implausible (at most 16)"));
        }
        let shape = (0..ndim).map(|_| get_usize(r)).collect::<std::result::Result<Vec<_>, _>>()?;
        let mut s = FrameStackStorage::new(capacity, stack, &shape, action_dim).map_err(|e| e.to_string())?;
        let (lo, total, frames_total) = (get_u64(r)?, get_u64(r)?, get_u64(r)?);
        if lo > total || total - lo > capacity as u64 {
            return Err(format!("live range {lo}..{total} does not fit capacity {capacity}"));
        }
        (s.lo, s.total, s.frames_total) = (lo, total, frames_total);
        r.read_exact(&mut s.frames).map_err(io_msg)?;
        for i in 0..s.ids.len() {
            s.ids[i] = get_u64(r)?;
        }
        for i in 0..s.min_frame.len() {
            s.min_frame[i] = get_u64(r)?;
        }
        A::read_slice(r, &mut s.actions).map_err(io_msg)?;
        f32::read_slice(r, &mut s.rewards).map_err(io_msg)?;
        f32::read_slice(r, &mut s.discounts).map_err(io_msg)?;
        get_bools(r, &mut s.terminated)?;
        get_bools(r, &mut s.truncated)?;
        let (k, fc) = (s.stack, s.frame_cap as u64);
        for t in lo..total {
            let slot = (t % capacity as u64) as usize;
            for &id in &s.ids[slot * 2 * k..(slot + 1) * 2 * k] {
                if id >= frames_total || id + fc < frames_total {
                    return Err(format!(
                        "transition {t} refers to frame {id}, not held (frames written: {frames_total})"
                    ));
                }
            }
            let m = s.min_frame[slot];
            while s.window.back().is_some_and(|&(_, b)| b >= m) {
                s.window.pop_back();
            }
            s.window.push_back((t, m));
        }
        for i in 0..s.frames_stored() {
            let fp = fingerprint(&s.frames[i * s.frame_len..(i + 1) * s.frame_len]);
            s.fingerprints[i] = fp;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_estimate_matches_allocation() {
        for (cap, k, shape, ad) in [(1000usize, 4usize, vec![84usize, 84], 1usize), (77, 2, vec![3, 5, 2], 3)] {
            let s = FrameStackStorage::<i64>::new(cap, k, &shape, ad).unwrap();
            assert_eq!(Some(s.memory_bytes()), FrameStackStorage::<i64>::memory_estimate(cap, k, &shape, ad));
        }
    }

    #[test]
    fn fingerprint_separates_single_byte_changes() {
        let a = vec![7u8; 7056];
        let fa = fingerprint(&a);
        for i in [0, 1, 31, 32, 100, 7055] {
            let mut b = a.clone();
            b[i] ^= 1;
            assert_ne!(fingerprint(&b), fa, "byte {i}");
        }
    }
}
