//! Where transitions live: the [`Storage`] trait and the plain struct-of-arrays [`FlatStorage`].
use std::io::{Read, Write};
use std::ops::Range;

use crate::element::Element;
use crate::error::{Result, invalid};
use crate::transition::{Batch, Transition};

/// Fixed-capacity transition storage, ring-ordered. Transition number `t` (counting every push since creation)
/// lives in slot `t % capacity` while `t` is in [`Storage::live`].
pub trait Storage {
    /// Observation element (`f32` or `u8`).
    type Obs: Element;
    /// Action element (`i64` for discrete, `f32` for continuous actions).
    type Act: Element;
    /// Maximum number of transitions held.
    fn capacity(&self) -> usize;
    /// Elements per observation (product of the shape).
    fn obs_len(&self) -> usize;
    /// Observation shape (for frame storage: `[stack, frame shape...]`).
    fn obs_shape(&self) -> &[usize];
    /// Elements per action.
    fn action_dim(&self) -> usize;
    /// Push numbers of the transitions held now (at most `capacity` of them, the most recent ones).
    fn live(&self) -> Range<u64>;
    /// Number of transitions held.
    fn len(&self) -> usize {
        let r = self.live();
        (r.end - r.start) as usize
    }
    /// True when nothing is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Stores one transition from env `stream` (streams matter only to frame deduplication); returns its slot.
    fn push(&mut self, stream: usize, t: &Transition<'_, Self::Obs, Self::Act>) -> Result<usize>;
    /// Copies the transitions in `batch.indices` into `batch`, whose vectors are already sized (the hot path of
    /// sampling: the slots are not checked, and a slot `>= capacity` panics; [`crate::ReplayBuffer::gather`] is the
    /// checked form).
    fn gather(&self, batch: &mut Batch<Self::Obs, Self::Act>);
    /// Bytes of memory the storage holds (allocated capacity of its arrays).
    fn memory_bytes(&self) -> usize;
    /// Stable name of the storage kind in saved files.
    fn kind() -> &'static str
    where
        Self: Sized;
    /// Writes the full state (after the file header).
    fn write_state(&self, w: &mut dyn Write) -> std::io::Result<()>;
    /// Reads a state written by [`Storage::write_state`] from a file with `avail` bytes left (sizes read from the
    /// header are checked against it before anything is allocated); the message of an error says what does not
    /// match.
    fn read_state(r: &mut dyn Read, avail: u64) -> std::result::Result<Self, String>
    where
        Self: Sized;
}

/// Checks the scalar fields of a transition (finite reward, discount in [0, 1]).
pub(crate) fn check_scalars<O, A>(t: &Transition<'_, O, A>) -> Result<()> {
    if !t.reward.is_finite() {
        return Err(invalid(format!("reward {} is not finite", t.reward)));
    }
    if !(0.0..=1.0).contains(&t.discount) {
        return Err(invalid(format!("discount {} is outside [0, 1]", t.discount)));
    }
    Ok(())
}

pub(crate) fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(invalid(format!("{what} has {got} elements, expected {want}")));
    }
    Ok(())
}

/// Preallocated struct-of-arrays storage: observation and next observation of every transition, stored in full.
/// Right for small observations (CartPole: 4 `f32`); for stacked Atari frames use
/// [`crate::FrameStackStorage`].
///
/// ```
/// use bellman_replay::{FlatStorage, Storage, Transition};
/// let mut s = FlatStorage::<f32, i64>::new(2, &[1], 1).unwrap();
/// for i in 0..3 {
///     let o = [i as f32];
///     let t = Transition { obs: &o, action: &[0], reward: 0.0, next_obs: &o, terminated: false,
///                          truncated: false, discount: 0.99 };
///     s.push(0, &t).unwrap();
/// }
/// assert_eq!(s.len(), 2);
/// assert_eq!(s.live(), 1..3);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FlatStorage<O, A> {
    capacity: usize,
    obs_shape: Vec<usize>,
    obs_len: usize,
    action_dim: usize,
    total: u64,
    obs: Vec<O>,
    next_obs: Vec<O>,
    actions: Vec<A>,
    rewards: Vec<f32>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    discounts: Vec<f32>,
}

impl<O: Element, A: Element> FlatStorage<O, A> {
    /// Storage for `capacity` transitions with observations of `obs_shape` and actions of `action_dim` elements
    /// (1 for a discrete action). Everything is allocated (zeroed) here.
    pub fn new(capacity: usize, obs_shape: &[usize], action_dim: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(invalid("capacity 0: a buffer must hold at least 1 transition"));
        }
        let obs_len: usize = obs_shape.iter().product();
        if obs_shape.is_empty() || obs_len == 0 {
            return Err(invalid(format!("observation shape {obs_shape:?} is empty; every dimension must be >= 1")));
        }
        if action_dim == 0 {
            return Err(invalid("action_dim 0: an action has at least 1 element"));
        }
        let n = capacity.checked_mul(obs_len).ok_or_else(|| invalid("capacity * obs_len overflows usize"))?;
        let na = capacity.checked_mul(action_dim).ok_or_else(|| invalid("capacity * action_dim overflows usize"))?;
        Ok(FlatStorage {
            capacity,
            obs_shape: obs_shape.to_vec(),
            obs_len,
            action_dim,
            total: 0,
            obs: vec![O::default(); n],
            next_obs: vec![O::default(); n],
            actions: vec![A::default(); na],
            rewards: vec![0.0; capacity],
            terminated: vec![false; capacity],
            truncated: vec![false; capacity],
            discounts: vec![0.0; capacity],
        })
    }
}

impl<O: Element, A: Element> Storage for FlatStorage<O, A> {
    type Obs = O;
    type Act = A;
    fn capacity(&self) -> usize {
        self.capacity
    }
    fn obs_len(&self) -> usize {
        self.obs_len
    }
    fn obs_shape(&self) -> &[usize] {
        &self.obs_shape
    }
    fn action_dim(&self) -> usize {
        self.action_dim
    }
    fn live(&self) -> Range<u64> {
        self.total.saturating_sub(self.capacity as u64)..self.total
    }
    fn push(&mut self, _stream: usize, t: &Transition<'_, O, A>) -> Result<usize> {
        check_len("obs", t.obs.len(), self.obs_len)?;
        check_len("next_obs", t.next_obs.len(), self.obs_len)?;
        check_len("action", t.action.len(), self.action_dim)?;
        check_scalars(t)?;
        let i = (self.total % self.capacity as u64) as usize;
        let (ol, ad) = (self.obs_len, self.action_dim);
        self.obs[i * ol..(i + 1) * ol].copy_from_slice(t.obs);
        self.next_obs[i * ol..(i + 1) * ol].copy_from_slice(t.next_obs);
        self.actions[i * ad..(i + 1) * ad].copy_from_slice(t.action);
        self.rewards[i] = t.reward;
        self.terminated[i] = t.terminated;
        self.truncated[i] = t.truncated;
        self.discounts[i] = t.discount;
        self.total += 1;
        Ok(i)
    }
    fn gather(&self, batch: &mut Batch<O, A>) {
        let (ol, ad) = (self.obs_len, self.action_dim);
        for (r, &i) in batch.indices.iter().enumerate() {
            batch.obs[r * ol..(r + 1) * ol].copy_from_slice(&self.obs[i * ol..(i + 1) * ol]);
            batch.next_obs[r * ol..(r + 1) * ol].copy_from_slice(&self.next_obs[i * ol..(i + 1) * ol]);
            batch.actions[r * ad..(r + 1) * ad].copy_from_slice(&self.actions[i * ad..(i + 1) * ad]);
            batch.rewards[r] = self.rewards[i];
            batch.terminated[r] = self.terminated[i];
            batch.truncated[r] = self.truncated[i];
            batch.discounts[r] = self.discounts[i];
        }
    }
    fn memory_bytes(&self) -> usize {
        (self.obs.capacity() + self.next_obs.capacity()) * O::SIZE
            + self.actions.capacity() * A::SIZE
            + (self.rewards.capacity() + self.discounts.capacity()) * 4
            + self.terminated.capacity()
            + self.truncated.capacity()
    }
    fn kind() -> &'static str {
        "flat"
    }
    fn write_state(&self, w: &mut dyn Write) -> std::io::Result<()> {
        use crate::io::{put_u64, put_usizes};
        put_usizes(w, &[self.capacity, self.action_dim])?;
        put_usizes(w, &[self.obs_shape.len()])?;
        put_usizes(w, &self.obs_shape)?;
        put_u64(w, self.total)?;
        O::write_slice(&self.obs, w)?;
        O::write_slice(&self.next_obs, w)?;
        A::write_slice(&self.actions, w)?;
        f32::write_slice(&self.rewards, w)?;
        f32::write_slice(&self.discounts, w)?;
        crate::io::put_bools(w, &self.terminated)?;
        crate::io::put_bools(w, &self.truncated)
    }
    fn read_state(r: &mut dyn Read, avail: u64) -> std::result::Result<Self, String> {
        use crate::io::{check_fits, get_u64, get_usize, io_msg};
        let capacity = get_usize(r)?;
        let action_dim = get_usize(r)?;
        let ndim = get_usize(r)?;
        if ndim > 16 {
            return Err(format!("observation rank {ndim} is implausible (at most 16)"));
        }
        let shape = (0..ndim).map(|_| get_usize(r)).collect::<std::result::Result<Vec<_>, _>>()?;
        // Bytes of the body after the shape: total, obs and next_obs, actions, rewards, discounts, two flags.
        let need = (|| {
            let ol = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
            let row =
                (2 * O::SIZE as u64).checked_mul(ol)?.checked_add((action_dim as u64).checked_mul(A::SIZE as u64)?)?;
            (capacity as u64).checked_mul(row.checked_add(4 + 4 + 1 + 1)?)?.checked_add(8)
        })();
        let head = (3 + ndim as u64) * 8;
        check_fits(
            || format!("capacity {capacity}, observation shape {shape:?}, action_dim {action_dim}"),
            need,
            avail.saturating_sub(head),
        )?;
        let mut s = FlatStorage::new(capacity, &shape, action_dim).map_err(|e| e.to_string())?;
        s.total = get_u64(r)?;
        if s.total > crate::io::MAX_COUNT {
            return Err(format!("push counter {} is implausible: corrupt file", s.total));
        }
        O::read_slice(r, &mut s.obs).map_err(io_msg)?;
        O::read_slice(r, &mut s.next_obs).map_err(io_msg)?;
        A::read_slice(r, &mut s.actions).map_err(io_msg)?;
        f32::read_slice(r, &mut s.rewards).map_err(io_msg)?;
        f32::read_slice(r, &mut s.discounts).map_err(io_msg)?;
        crate::io::get_bools(r, &mut s.terminated)?;
        crate::io::get_bools(r, &mut s.truncated)?;
        let cap = s.capacity as u64;
        let slots = s.live().map(|t| (t % cap) as usize);
        crate::io::check_scalars_loaded(slots, &s.rewards, &s.discounts)?;
        Ok(s)
    }
}
