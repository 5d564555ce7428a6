//! Proportional prioritised experience replay (Schaul, Quan, Antonoglou and Silver, "Prioritized Experience
//! Replay", ICLR 2016, section 3.3 and Algorithm 1).
use std::path::Path;

use rand::Rng;

use crate::element::Element;
use crate::error::{ReplayError, Result, invalid};
use crate::frames::FrameStackStorage;
use crate::storage::Storage;
use crate::transition::{Batch, Transition, TransitionBatch};
use crate::tree::{MinTree, SumTree};
use crate::window::WindowBatch;

/// A prioritised replay buffer over any [`Storage`].
///
/// * Priority of transition `i`: `p_i = (|delta_i| + eps)^alpha`; sampled with probability `P(i) = p_i / sum p`.
/// * New transitions get the largest raw priority `|delta| + eps` seen so far (1 at the start), so each is
///   sampled at least once with high probability (the paper's Algorithm 1, line 6).
/// * Stratified sampling: the total is cut into `batch_size` equal segments and one value is drawn uniformly in
///   each (the paper's appendix B.2.1).
/// * Importance weights `w_i = (N * P(i))^-beta / max_j w_j`, `N` the number of transitions held; the max runs
///   over all held transitions (that of the least likely one, from the [`MinTree`]), as in the paper and
///   Baselines. The caller anneals `beta` (the paper: from 0.4 or 0.5 to 1).
/// * A NaN, infinite or negative priority or TD error is an error and changes nothing.
///
/// ```
/// use bellman_replay::{Batch, FlatStorage, PrioritizedReplayBuffer, Transition};
/// use rand::SeedableRng;
/// let storage = FlatStorage::<f32, i64>::new(1000, &[4], 1).unwrap();
/// let mut per = PrioritizedReplayBuffer::new(storage, 0.6, 1e-6).unwrap();
/// let o = [0.0f32; 4];
/// for _ in 0..10 {
///     per.push(&Transition { obs: &o, action: &[0], reward: 0.0, next_obs: &o, terminated: false,
///                            truncated: false, discount: 0.99 }).unwrap();
/// }
/// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
/// let mut batch = Batch::new();
/// per.sample(4, 0.4, &mut rng, &mut batch).unwrap();
/// assert!(batch.weights.iter().all(|&w| w == 1.0)); // equal priorities
/// let idx = batch.indices.clone();
/// per.update_priorities(&idx, &[0.5, -2.0, 0.0, 1.0]).unwrap();
/// assert!(per.update_priorities(&idx[..1], &[f32::NAN]).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct PrioritizedReplayBuffer<S> {
    storage: S,
    sum: SumTree,
    min: MinTree,
    alpha: f64,
    eps: f64,
    max_priority: f64,
    scratch_idx: Vec<usize>,
    scratch_p: Vec<f64>,
}

fn check_raw(i: usize, p: f64) -> Result<()> {
    if !p.is_finite() || p < 0.0 {
        return Err(invalid(format!("priority {p} (row {i}) is not a finite number >= 0")));
    }
    Ok(())
}

impl<S: Storage> PrioritizedReplayBuffer<S> {
    /// A prioritised buffer over `storage` with exponent `alpha` (in [0, 10]; the paper uses 0.6 for
    /// proportional replay) and `eps > 0` added to `|delta|` (the paper: a small positive constant; 1e-6 in
    /// Baselines and SB3-contrib).
    pub fn new(storage: S, alpha: f64, eps: f64) -> Result<Self> {
        if !(0.0..=10.0).contains(&alpha) {
            return Err(invalid(format!("alpha {alpha} is outside [0, 10]")));
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(invalid(format!("eps {eps} must be a finite number > 0")));
        }
        let cap = storage.capacity();
        let mut per = PrioritizedReplayBuffer {
            storage,
            sum: SumTree::new(cap),
            min: MinTree::new(cap),
            alpha,
            eps,
            max_priority: 1.0,
            scratch_idx: Vec::new(),
            scratch_p: Vec::new(),
        };
        let live = per.storage.live();
        for t in live {
            per.set_leaf((t % cap as u64) as usize, 1.0);
        }
        Ok(per)
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
    /// Bytes of memory held (storage and both trees).
    pub fn memory_bytes(&self) -> usize {
        self.storage.memory_bytes() + self.sum.memory_bytes() + self.min.memory_bytes()
    }
    /// The exponent `alpha`.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    /// The largest raw priority `|delta| + eps` seen (1 initially): new transitions get it.
    pub fn max_priority(&self) -> f64 {
        self.max_priority
    }
    /// `p_i` of slot `i` (0 when the slot holds no transition).
    pub fn priority(&self, slot: usize) -> f64 {
        if slot < self.capacity() { self.sum.get(slot) } else { 0.0 }
    }
    /// Sum of all `p_i`.
    pub fn total_priority(&self) -> f64 {
        self.sum.total()
    }

    fn set_leaf(&mut self, slot: usize, raw: f64) {
        let p = raw.powf(self.alpha);
        self.sum.set(slot, p);
        self.min.set(slot, p);
    }

    fn after_push(&mut self, before: std::ops::Range<u64>, slot: usize, raw: f64) {
        let cap = self.capacity() as u64;
        let after = self.storage.live();
        for t in before.start..after.start.min(before.end) {
            let s = (t % cap) as usize;
            if s != slot {
                self.sum.set(s, 0.0);
                self.min.set(s, f64::INFINITY);
            }
        }
        self.max_priority = self.max_priority.max(raw);
        self.set_leaf(slot, raw);
    }

    /// Stores one transition (env 0) at the running max priority; returns its slot.
    pub fn push(&mut self, t: &Transition<'_, S::Obs, S::Act>) -> Result<usize> {
        self.push_from(0, t)
    }
    /// Stores one transition from env `env` at the running max priority; returns its slot.
    pub fn push_from(&mut self, env: usize, t: &Transition<'_, S::Obs, S::Act>) -> Result<usize> {
        let before = self.storage.live();
        let slot = self.storage.push(env, t)?;
        self.after_push(before, slot, self.max_priority);
        Ok(slot)
    }
    /// Stores one transition with a given raw priority (`|delta| + eps` as computed by an actor, Ape-X style).
    pub fn push_with_priority(
        &mut self,
        env: usize,
        t: &Transition<'_, S::Obs, S::Act>,
        raw_priority: f64,
    ) -> Result<usize> {
        check_raw(0, raw_priority)?;
        if raw_priority == 0.0 {
            return Err(invalid("priority 0 would never be sampled; priorities must be > 0"));
        }
        let before = self.storage.live();
        let slot = self.storage.push(env, t)?;
        self.after_push(before, slot, raw_priority);
        Ok(slot)
    }
    /// Stores one step of `n` parallel envs at the running max priority (row `i` from env `i`).
    pub fn push_batch(&mut self, b: &TransitionBatch<'_, S::Obs, S::Act>) -> Result<()> {
        b.validate(self.storage.obs_len(), self.storage.action_dim())?;
        for i in 0..b.len() {
            self.push_from(i, &b.row(i))?;
        }
        Ok(())
    }

    /// Samples `batch_size` transitions, one per equal segment of the total priority, into `batch` with their
    /// slots (`batch.indices`) and importance weights (`batch.weights`) for exponent `beta` in [0, 1].
    pub fn sample<R: Rng + ?Sized>(
        &self,
        batch_size: usize,
        beta: f64,
        rng: &mut R,
        batch: &mut Batch<S::Obs, S::Act>,
    ) -> Result<()> {
        self.check_sample(batch_size, beta)?;
        batch.resize(batch_size, self.storage.obs_len(), self.storage.action_dim());
        self.draw(beta, rng, &mut batch.scratch, &mut batch.indices, &mut batch.weights);
        self.storage.gather(batch);
        Ok(())
    }

    fn check_sample(&self, batch_size: usize, beta: f64) -> Result<()> {
        if batch_size == 0 {
            return Err(invalid("batch_size 0: sample at least 1 transition"));
        }
        if !(0.0..=1.0).contains(&beta) {
            return Err(invalid(format!("beta {beta} is outside [0, 1]")));
        }
        if self.storage.is_empty() {
            return Err(ReplayError::Empty);
        }
        Ok(())
    }

    /// Stratified draw of `indices.len()` slots with their importance weights (the buffer is not empty).
    fn draw<R: Rng + ?Sized>(
        &self,
        beta: f64,
        rng: &mut R,
        scratch: &mut Vec<f64>,
        indices: &mut [usize],
        weights: &mut [f32],
    ) {
        let n = indices.len();
        let total = self.sum.total();
        let p_min = self.min.min();
        let seg = total / n as f64;
        scratch.resize(n, 0.0);
        for (k, u) in scratch.iter_mut().enumerate() {
            *u = ((k as f64 + rng.random::<f64>()) * seg).min(total);
        }
        self.sum.find_prefix_many(scratch, indices);
        for (&i, w) in indices.iter().zip(weights.iter_mut()) {
            // (N P(i))^-beta / (N P_min)^-beta = (p_i / p_min)^-beta
            *w = (self.sum.get(i) / p_min).powf(-beta) as f32;
        }
    }

    /// Sets `p_i = (|delta_i| + eps)^alpha` for each slot in `indices` (as returned in `batch.indices`). Every
    /// value is checked before any is applied: an index out of range or a NaN/infinite TD error is an error.
    /// Slots whose transition has since been dropped (frame storage only) are skipped.
    pub fn update_priorities(&mut self, indices: &[usize], td_errors: &[f32]) -> Result<()> {
        if indices.len() != td_errors.len() {
            return Err(invalid(format!(
                "{} indices but {} TD errors: one TD error per index",
                indices.len(),
                td_errors.len()
            )));
        }
        for (k, (&i, &d)) in indices.iter().zip(td_errors).enumerate() {
            if i >= self.capacity() {
                return Err(invalid(format!("index {i} (row {k}) is outside [0, {})", self.capacity())));
            }
            if !d.is_finite() {
                return Err(invalid(format!("TD error {d} (row {k}, index {i}) is not finite")));
            }
        }
        self.scratch_idx.clear();
        self.scratch_p.clear();
        for (&i, &d) in indices.iter().zip(td_errors) {
            if self.sum.get(i) > 0.0 {
                let raw = (d as f64).abs() + self.eps;
                self.max_priority = self.max_priority.max(raw);
                self.scratch_idx.push(i);
                self.scratch_p.push(raw.powf(self.alpha));
            }
        }
        self.sum.set_many(&self.scratch_idx, &self.scratch_p);
        self.min.set_many(&self.scratch_idx, &self.scratch_p);
        Ok(())
    }

    /// Sets raw priorities (`|delta| + eps`, before `alpha`) directly; negative, NaN or infinite values are an
    /// error and change nothing.
    pub fn set_priorities(&mut self, indices: &[usize], raw: &[f64]) -> Result<()> {
        if indices.len() != raw.len() {
            return Err(invalid(format!("{} indices but {} priorities", indices.len(), raw.len())));
        }
        for (k, (&i, &p)) in indices.iter().zip(raw).enumerate() {
            if i >= self.capacity() {
                return Err(invalid(format!("index {i} (row {k}) is outside [0, {})", self.capacity())));
            }
            check_raw(k, p)?;
            if p == 0.0 {
                return Err(invalid(format!("priority 0 (row {k}) would never be sampled; priorities must be > 0")));
            }
        }
        for (&i, &p) in indices.iter().zip(raw) {
            if self.sum.get(i) > 0.0 {
                self.max_priority = self.max_priority.max(p);
                self.set_leaf(i, p);
            }
        }
        Ok(())
    }

    /// Saves the buffer (storage, priorities, `alpha`, `eps`, max priority) to `path`, atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let cap = self.capacity();
        crate::io::save(path.as_ref(), "prioritized", &self.storage, |w| {
            for x in [self.alpha, self.eps, self.max_priority] {
                w.write_all(&x.to_le_bytes())?;
            }
            for i in 0..cap {
                w.write_all(&self.sum.get(i).to_le_bytes())?;
            }
            Ok(())
        })
    }
    /// Loads a buffer written by [`PrioritizedReplayBuffer::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        crate::io::load(path.as_ref(), "prioritized", |r, storage: S| {
            let mut f = || -> std::result::Result<f64, String> { Ok(f64::from_bits(crate::io::get_u64(r)?)) };
            let (alpha, eps, max_priority) = (f()?, f()?, f()?);
            let mut per = PrioritizedReplayBuffer::new(storage, alpha, eps).map_err(|e| e.to_string())?;
            if !(max_priority.is_finite() && max_priority > 0.0) {
                return Err(format!("max priority {max_priority} is not a finite number > 0"));
            }
            per.max_priority = max_priority;
            // `new` gave every live slot priority 1 and every other slot 0: exactly the live slots carry one.
            for i in 0..per.capacity() {
                let p = f()?;
                let live = per.sum.get(i) > 0.0;
                if !p.is_finite() || p < 0.0 {
                    return Err(format!("priority {p} of slot {i} is not a finite number >= 0"));
                }
                if live != (p > 0.0) {
                    let what = if live { "a live transition" } else { "no transition" };
                    return Err(format!("priority {p} of slot {i}, which holds {what}: corrupt file"));
                }
                per.sum.set(i, p);
                per.min.set(i, if p > 0.0 { p } else { f64::INFINITY });
            }
            Ok(per)
        })
    }
}

impl<A: Element> PrioritizedReplayBuffer<FrameStackStorage<A>> {
    /// Samples like [`PrioritizedReplayBuffer::sample`] (the same rows and weights for the same rng state) into
    /// the window layout of [`WindowBatch`]: each frame a row needs is written once.
    pub fn sample_window<R: Rng + ?Sized>(
        &self,
        batch_size: usize,
        beta: f64,
        rng: &mut R,
        batch: &mut WindowBatch<A>,
    ) -> Result<()> {
        self.check_sample(batch_size, beta)?;
        let s = &self.storage;
        batch.resize_rows(batch_size, s.stack(), s.frame_len(), s.action_dim());
        self.draw(beta, rng, &mut batch.scratch, &mut batch.indices, &mut batch.weights);
        s.gather_window(batch);
        Ok(())
    }
}
