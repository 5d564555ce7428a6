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
//! stay a little below `capacity`. 1,000,000 Atari transitions take about 7.4 GB. On Linux the ring is advised for
//! transparent huge pages (`madvise`), which makes the scattered reads of sampling cheaper.
//!
//! **Streams.** Frames are matched against the recent frames of the same env (`push_from(env, ..)`, or row `i` of
//! `push_batch`), so parallel envs never mix. Pushing all envs as env 0 stays correct but stores more frames.
//! Saved files hold this per-env history too, so a reloaded storage stores, drops and samples exactly as the
//! original would have.
//!
//! **Sampling.** `sample` rebuilds both stacks of every row into a [`Batch`] (`2 * stack` frames per row);
//! `sample_window` writes the frames a row needs once into a [`WindowBatch`] (`stack + 1` frames per row for
//! one-step transitions), from which both stacks are views.
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::ops::Range;

use crate::element::Element;
use crate::error::{Result, invalid};
use crate::storage::{Storage, check_len, check_scalars};
use crate::transition::{Batch, Transition};
use crate::window::{WindowBatch, shift_mask};

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

/// Asks Linux to back `buf` (the frame ring: gigabytes, read at random) with 2 MiB transparent huge pages. A sampled
/// batch touches hundreds of scattered 4 KiB pages, each a TLB miss (a nested page walk in a VM); with huge pages,
/// `sample_window` of 32 from a full 1M ring took 146-152 us instead of 160 us on the dev box (docs/BENCHMARKS.md).
/// Only a hint (`madvise(2)`, `MADV_HUGEPAGE`; effective when `/sys/kernel/mm/transparent_hugepage/enabled` is
/// `madvise` or `always`): contents and results are unchanged, and a refusal is ignored.
fn advise_huge_pages(buf: &[u8]) {
    #[cfg(target_os = "linux")]
    {
        // The PMD huge-page size of x86-64 and of AArch64 with 4 KiB pages (Linux `Documentation/admin-guide/mm/
        // transhuge.rst`); rings smaller than 16 of them are left alone.
        const HUGE: usize = 2 << 20;
        let start = buf.as_ptr() as usize;
        let lo = start.div_ceil(HUGE) * HUGE;
        let hi = (start + buf.len()) / HUGE * HUGE;
        if hi >= lo + 16 * HUGE {
            let ptr = buf.as_ptr().wrapping_add(lo - start) as *mut libc::c_void;
            // SAFETY: [lo, hi) is inside `buf`, an allocation this storage owns for its whole life; MADV_HUGEPAGE
            // changes only how the kernel backs those pages, never their contents or validity, and its result
            // (an error where THP is unavailable) can be ignored.
            let _ = unsafe { libc::madvise(ptr, hi - lo, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
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
        let overflow = || invalid(format!("capacity {capacity}: the storage size overflows usize"));
        let frame_cap = capacity.checked_add((capacity / 32).max(4 * stack)).ok_or_else(overflow)?;
        let bytes = frame_cap.checked_mul(frame_len).ok_or_else(overflow)?;
        let n_ids = capacity.checked_mul(2 * stack).ok_or_else(overflow)?;
        let n_actions = capacity.checked_mul(action_dim).ok_or_else(overflow)?;
        let mut obs_shape = vec![stack];
        obs_shape.extend_from_slice(frame_shape);
        let frames = vec![0u8; bytes];
        advise_huge_pages(&frames);
        Ok(FrameStackStorage {
            capacity,
            stack,
            frame_shape: frame_shape.to_vec(),
            obs_shape,
            frame_len,
            action_dim,
            frame_cap,
            frames,
            fingerprints: vec![0; frame_cap],
            frames_total: 0,
            ids: vec![0; n_ids],
            min_frame: vec![0; capacity],
            actions: vec![A::default(); n_actions],
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

    /// Copies the transitions in `w.indices` (live slots, unchecked as in [`Storage::gather`]) into `w` in window
    /// layout: the smallest shift shared by every row, then `stack + shift` frames per row (see
    /// [`WindowBatch`]).
    pub(crate) fn gather_window(&self, w: &mut WindowBatch<A>) {
        let (k, fl, ad) = (self.stack, self.frame_len, self.action_dim);
        // Bits 1..=k: the shifts every row so far allows.
        let mut mask = ((1u32 << (k + 1)) - 1) & !1;
        for &i in &w.indices {
            let ids = &self.ids[i * 2 * k..(i + 1) * 2 * k];
            mask &= shift_mask(&ids[..k], &ids[k..]);
            if mask == 1 << k {
                break;
            }
        }
        let s = mask.trailing_zeros() as usize;
        let width = k + s;
        (w.shift, w.width) = (s, width);
        let n = w.indices.len();
        w.frames.resize(n * width * fl, 0);
        for (r, &i) in w.indices.iter().enumerate() {
            let ids = &self.ids[i * 2 * k..(i + 1) * 2 * k];
            let row = &mut w.frames[r * width * fl..(r + 1) * width * fl];
            // obs = window[0..k], and the last s frames of next_obs complete window[s..s + k].
            for (dst, &id) in row.chunks_exact_mut(fl).zip(ids[..k].iter().chain(&ids[2 * k - s..])) {
                dst.copy_from_slice(self.frame(id));
            }
            w.actions[r * ad..(r + 1) * ad].copy_from_slice(&self.actions[i * ad..(i + 1) * ad]);
            w.rewards[r] = self.rewards[i];
            w.terminated[r] = self.terminated[i];
            w.truncated[r] = self.truncated[i];
            w.discounts[r] = self.discounts[i];
        }
    }

    /// Bytes per frame.
    pub fn frame_len(&self) -> usize {
        self.frame_len
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
        self.ids.iter().try_for_each(|&x| put_u64(w, x))?;
        A::write_slice(&self.actions, w)?;
        f32::write_slice(&self.rewards, w)?;
        f32::write_slice(&self.discounts, w)?;
        put_bools(w, &self.terminated)?;
        put_bools(w, &self.truncated)?;
        // The per-env frame history that new pushes are matched against (format version 2).
        put_u64(w, self.streams.len() as u64)?;
        for st in &self.streams {
            put_u64(w, st.hist.len() as u64)?;
            st.hist.iter().try_for_each(|&x| put_u64(w, x))?;
            for ids in [&st.prev_obs, &st.prev_next] {
                put_u64(w, ids.len() as u64)?;
                ids.iter().try_for_each(|&x| put_u64(w, x))?;
            }
        }
        Ok(())
    }
    fn read_state(r: &mut dyn Read, avail: u64) -> std::result::Result<Self, String> {
        use crate::io::{check_fits, get_bools, get_u64, get_usize, io_msg};
        let (capacity, stack, action_dim, ndim) = (get_usize(r)?, get_usize(r)?, get_usize(r)?, get_usize(r)?);
        if ndim > 16 {
            return Err(format!("frame rank {ndim} is implausible (at most 16)"));
        }
        let shape = (0..ndim).map(|_| get_usize(r)).collect::<std::result::Result<Vec<_>, _>>()?;
        // Bytes of the body after the shape, as written above (the frame history at its smallest, 8 bytes).
        let need = (|| {
            let (cap, k) = (capacity as u64, stack as u64);
            let fl = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
            let frame_cap = cap.checked_add((cap / 32).max(k.checked_mul(4)?))?;
            let row = k.checked_mul(16)?.checked_add((action_dim as u64).checked_mul(A::SIZE as u64)?)?;
            frame_cap.checked_mul(fl)?.checked_add(cap.checked_mul(row.checked_add(4 + 4 + 1 + 1)?)?)?.checked_add(32)
        })();
        let head = (4 + ndim as u64) * 8;
        check_fits(
            || format!("capacity {capacity}, stack {stack}, frame shape {shape:?}, action_dim {action_dim}"),
            need,
            avail.saturating_sub(head),
        )?;
        let mut s = FrameStackStorage::new(capacity, stack, &shape, action_dim).map_err(|e| e.to_string())?;
        let (lo, total, frames_total) = (get_u64(r)?, get_u64(r)?, get_u64(r)?);
        if lo > total || total - lo > capacity as u64 {
            return Err(format!("live range {lo}..{total} does not fit capacity {capacity}"));
        }
        if total.max(frames_total) > crate::io::MAX_COUNT {
            return Err(format!("counters ({total} pushes, {frames_total} frames) are implausible: corrupt file"));
        }
        (s.lo, s.total, s.frames_total) = (lo, total, frames_total);
        r.read_exact(&mut s.frames).map_err(io_msg)?;
        for i in 0..s.ids.len() {
            s.ids[i] = get_u64(r)?;
        }
        A::read_slice(r, &mut s.actions).map_err(io_msg)?;
        f32::read_slice(r, &mut s.rewards).map_err(io_msg)?;
        f32::read_slice(r, &mut s.discounts).map_err(io_msg)?;
        get_bools(r, &mut s.terminated)?;
        get_bools(r, &mut s.truncated)?;
        let (k, fc) = (s.stack, s.frame_cap as u64);
        let held = |id: u64| id < frames_total && id + fc >= frames_total;
        for t in lo..total {
            let slot = (t % capacity as u64) as usize;
            let ids = &s.ids[slot * 2 * k..(slot + 1) * 2 * k];
            if let Some(&id) = ids.iter().find(|&&id| !held(id)) {
                return Err(format!(
                    "transition {t} refers to frame {id}, not held (frames written: {frames_total}, ring of {fc})"
                ));
            }
            let m = ids.iter().copied().min().unwrap_or(0);
            s.min_frame[slot] = m;
            while s.window.back().is_some_and(|&(_, b)| b >= m) {
                s.window.pop_back();
            }
            s.window.push_back((t, m));
        }
        crate::io::check_scalars_loaded(s.live().map(|t| (t % capacity as u64) as usize), &s.rewards, &s.discounts)?;
        let n_streams = get_u64(r)?;
        if n_streams > 1 << 16 {
            return Err(format!("{n_streams} env streams in the frame history: at most 65536"));
        }
        for e in 0..n_streams as usize {
            let mut st = Stream::default();
            let mut read_ids = |what: &str, max: usize, out: &mut Vec<u64>| -> std::result::Result<(), String> {
                let n = get_u64(r)?;
                if n > max as u64 {
                    return Err(format!("env {e}: {n} ids in its {what}, at most {max}"));
                }
                for _ in 0..n {
                    let id = get_u64(r)?;
                    if id >= frames_total {
                        return Err(format!("env {e}: {what} refers to frame {id}, not written ({frames_total})"));
                    }
                    out.push(id);
                }
                Ok(())
            };
            let mut hist = Vec::new();
            read_ids("frame history", HISTORY, &mut hist)?;
            read_ids("last observation", k, &mut st.prev_obs)?;
            read_ids("last next observation", k, &mut st.prev_next)?;
            if hist.windows(2).any(|p| p[0] >= p[1]) {
                return Err(format!("env {e}: frame history {hist:?} is not increasing"));
            }
            if ![0, k].contains(&st.prev_obs.len()) || st.prev_next.len() != st.prev_obs.len() {
                return Err(format!(
                    "env {e}: last stacks of {} and {} frames, expected 0 or {k} each",
                    st.prev_obs.len(),
                    st.prev_next.len()
                ));
            }
            st.hist = hist.into();
            s.streams.push(st);
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
