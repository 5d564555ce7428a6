//! Dynamic programming on a known model: policy evaluation, value iteration and policy iteration (Sutton and
//! Barto, *Reinforcement Learning: An Introduction*, 2nd ed., chapter 4).
//!
//! Every algorithm works on a [`CompiledMdp`]: the model of any [`Mdp`] compiled once into flat arrays. The
//! outcomes of each `(s, a)` are stored CSR-style (one offset per `(s, a)`, or none at all when every `(s, a)` has
//! the same number of outcomes), each outcome as a `u32` next state and a small index (`u8`, `u16` or `u32`) into a
//! table of the distinct `(p * r, p * (1 - terminated))` pairs of the model. A deterministic grid world thus costs
//! 5 bytes per `(s, a)`, which is what a sweep reads from memory.
//!
//! One backup is Gymnasium's / the book's
//! `Q(s, a) = sum over outcomes (p, s', r, terminated) of p * r + gamma * p * (1 - terminated) * V(s')`.
//! Terminal handling comes only from each outcome's `terminated` flag: no state is special-cased.
//!
//! Synchronous (Jacobi) sweeps of large models run on all threads of a rayon pool; each state's backup reads only
//! the previous sweep's values and is computed in the same order, so the result is bit-identical to the serial
//! sweep. In-place (Gauss-Seidel) sweeps always run serially (their result depends on the state order).
//!
//! ```
//! use bellman_agents::tabular::planning::{CompiledMdp, ViOptions, value_iteration};
//! // Two states: state 0 can stay (reward 0) or move to the terminal outcome (reward 1).
//! let mut b = CompiledMdp::builder(2, 2).unwrap();
//! b.push(1.0, 0, 0.0, false).unwrap(); b.end_action().unwrap(); // (0, stay)
//! b.push(1.0, 1, 1.0, true).unwrap(); b.end_action().unwrap();  // (0, go)
//! b.push(1.0, 1, 0.0, true).unwrap(); b.end_action().unwrap();  // (1, *) absorbing
//! b.push(1.0, 1, 0.0, true).unwrap(); b.end_action().unwrap();
//! let m = b.build().unwrap();
//! let sol = value_iteration(&m, &ViOptions::new(0.9)).unwrap();
//! assert_eq!(sol.policy, vec![1, 0]);
//! assert!((sol.values[0] - 1.0).abs() < 1e-12);
//! assert!(sol.converged);
//! ```
use std::collections::HashMap;

use bellman_envs::Mdp;
use rayon::prelude::*;

use crate::error::{AgentError, Result};

/// States per parallel task of a synchronous sweep (a chunk this size amortises rayon's scheduling).
const PAR_CHUNK: usize = 8192;
/// Below this many states a sweep runs serially whatever `threads` says (threads cost more than they save).
const PAR_MIN_STATES: usize = 4 * PAR_CHUNK;

/// Where the outcomes of `(s, a)` start and end in the flat outcome arrays.
#[derive(Debug, Clone, PartialEq)]
enum Rows {
    /// Every `(s, a)` has exactly this many outcomes: row `i` is `i * k .. (i + 1) * k`.
    Stride(usize),
    /// Row `i` is `offsets[i] .. offsets[i + 1]`.
    Csr(Vec<u32>),
}

/// Index of an outcome's `(p * r, p * (1 - terminated))` pair in the dictionary of distinct pairs.
#[derive(Debug, Clone, PartialEq)]
enum Kinds {
    /// Up to 256 distinct pairs (grid worlds, most toy text): one byte per outcome.
    U8(Vec<u8>),
    /// Up to 65,536 distinct pairs.
    U16(Vec<u16>),
    /// More distinct pairs.
    U32(Vec<u32>),
}

/// An [`Mdp`] compiled into flat arrays for fast sweeps. Build it with [`CompiledMdp::compile`] from any `Mdp`, or
/// directly with [`CompiledMdp::builder`] for models too large to list as [`bellman_envs::Outcome`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledMdp {
    n_states: usize,
    n_actions: usize,
    rows: Rows,
    next: Vec<u32>,
    kinds: Kinds,
    /// `p * r` of each distinct pair.
    pr: Vec<f64>,
    /// `p * (1 - terminated)` of each distinct pair.
    pc: Vec<f64>,
    grid: Option<(usize, usize)>,
}

/// Builds a [`CompiledMdp`] outcome by outcome: push the outcomes of `(0, 0)`, call
/// [`CompiledMdpBuilder::end_action`], then those of `(0, 1)`, and so on, state-major.
#[derive(Debug)]
pub struct CompiledMdpBuilder {
    n_states: usize,
    n_actions: usize,
    offsets: Vec<u32>,
    next: Vec<u32>,
    kinds: Vec<u32>,
    pr: Vec<f64>,
    pc: Vec<f64>,
    dict: HashMap<(u64, u64), u32>,
    row_prob: f64,
    grid: Option<(usize, usize)>,
}

impl CompiledMdpBuilder {
    /// Appends an outcome `(prob, next_state, reward, terminal)` to the current `(s, a)`.
    ///
    /// Errors on a probability outside `[0, 1]`, a non-finite reward, a next state out of range, or more
    /// outcomes than fit in `u32` indices.
    pub fn push(&mut self, prob: f64, next_state: usize, reward: f64, terminal: bool) -> Result<()> {
        let row = self.offsets.len() - 1;
        if row >= self.n_states * self.n_actions {
            return Err(AgentError::Config(format!(
                "outcome pushed after the last (s, a) row ({} states x {} actions)",
                self.n_states, self.n_actions
            )));
        }
        if !(0.0..=1.0).contains(&prob) {
            return Err(AgentError::Config(format!(
                "state {} action {}: probability {prob} is outside [0, 1]",
                row / self.n_actions,
                row % self.n_actions
            )));
        }
        if !reward.is_finite() {
            return Err(AgentError::Config(format!(
                "state {} action {}: reward {reward} is not finite",
                row / self.n_actions,
                row % self.n_actions
            )));
        }
        if next_state >= self.n_states {
            return Err(AgentError::Config(format!(
                "state {} action {}: next state {next_state} is outside 0..{}",
                row / self.n_actions,
                row % self.n_actions,
                self.n_states
            )));
        }
        if self.next.len() >= u32::MAX as usize {
            return Err(AgentError::Config("more than 2^32 - 1 outcomes do not fit a compiled model".into()));
        }
        let pr = prob * reward;
        let pc = if terminal { 0.0 } else { prob };
        let key = (pr.to_bits(), pc.to_bits());
        let k = match self.dict.get(&key) {
            Some(&k) => k,
            None => {
                let k = self.pr.len() as u32;
                self.dict.insert(key, k);
                self.pr.push(pr);
                self.pc.push(pc);
                k
            }
        };
        self.next.push(next_state as u32);
        self.kinds.push(k);
        self.row_prob += prob;
        Ok(())
    }

    /// Closes the current `(s, a)`; its probabilities must sum to 1 within 1e-9.
    pub fn end_action(&mut self) -> Result<()> {
        let row = self.offsets.len() - 1;
        if row >= self.n_states * self.n_actions {
            return Err(AgentError::Config(format!(
                "end_action called after the last (s, a) row ({} states x {} actions)",
                self.n_states, self.n_actions
            )));
        }
        if (self.row_prob - 1.0).abs() > 1e-9 {
            return Err(AgentError::Config(format!(
                "state {} action {}: outcome probabilities sum to {}, expected 1 (within 1e-9)",
                row / self.n_actions,
                row % self.n_actions,
                self.row_prob
            )));
        }
        self.row_prob = 0.0;
        self.offsets.push(self.next.len() as u32);
        Ok(())
    }

    /// Marks the model as a `rows x cols` grid (state `row * cols + col`), for rendering.
    pub fn grid_shape(&mut self, shape: Option<(usize, usize)>) {
        self.grid = shape;
    }

    /// Finishes the model; every `(s, a)` must have been closed.
    pub fn build(self) -> Result<CompiledMdp> {
        let rows_done = self.offsets.len() - 1;
        if rows_done != self.n_states * self.n_actions {
            return Err(AgentError::Config(format!(
                "model has {rows_done} closed (s, a) rows, expected {} ({} states x {} actions)",
                self.n_states * self.n_actions,
                self.n_states,
                self.n_actions
            )));
        }
        let stride = if self.n_states > 0 && self.n_actions > 0 { self.offsets[1] as usize } else { 0 };
        let uniform = self.offsets.windows(2).all(|w| (w[1] - w[0]) as usize == stride);
        let rows = if uniform { Rows::Stride(stride) } else { Rows::Csr(self.offsets) };
        let kinds = if self.pr.len() <= u8::MAX as usize + 1 {
            Kinds::U8(self.kinds.iter().map(|&k| k as u8).collect())
        } else if self.pr.len() <= u16::MAX as usize + 1 {
            Kinds::U16(self.kinds.iter().map(|&k| k as u16).collect())
        } else {
            Kinds::U32(self.kinds)
        };
        Ok(CompiledMdp {
            n_states: self.n_states,
            n_actions: self.n_actions,
            rows,
            next: self.next,
            kinds,
            pr: self.pr,
            pc: self.pc,
            grid: self.grid,
        })
    }
}

/// Index types of the outcome dictionary.
trait Kind: Copy + Send + Sync {
    fn idx(self) -> usize;
}
impl Kind for u8 {
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }
}
impl Kind for u16 {
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }
}
impl Kind for u32 {
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }
}

/// The arrays one backup reads, borrowed and typed for the inner loop.
#[derive(Clone, Copy)]
struct Kernel<'a, K: Kind> {
    n_states: usize,
    n_actions: usize,
    stride: usize,
    offsets: &'a [u32],
    next: &'a [u32],
    kinds: &'a [K],
    pr: &'a [f64],
    /// `gamma * p * (1 - terminated)` of each dictionary entry.
    gpc: &'a [f64],
}

impl<K: Kind> Kernel<'_, K> {
    #[inline(always)]
    fn q(&self, row: usize, v: &[f64]) -> f64 {
        let (lo, hi) = if self.offsets.is_empty() {
            (row * self.stride, (row + 1) * self.stride)
        } else {
            (self.offsets[row] as usize, self.offsets[row + 1] as usize)
        };
        let mut q = 0.0;
        for o in lo..hi {
            let k = self.kinds[o].idx();
            q += self.pr[k] + self.gpc[k] * v[self.next[o] as usize];
        }
        q
    }

    /// `max_a Q(s, a)` under `v` (`q > best` comparisons: a plain maxsd, and NaN never wins).
    #[inline(always)]
    fn best(&self, s: usize, v: &[f64]) -> f64 {
        let base = s * self.n_actions;
        let mut best = f64::NEG_INFINITY;
        for a in 0..self.n_actions {
            let q = self.q(base + a, v);
            if q > best {
                best = q;
            }
        }
        best
    }

    /// `sum_a pi(a | s) Q(s, a)` under `v`.
    #[inline(always)]
    fn expected(&self, s: usize, pi: &[f64], v: &[f64]) -> f64 {
        let base = s * self.n_actions;
        let mut e = 0.0;
        for a in 0..self.n_actions {
            let p = pi[base + a];
            if p != 0.0 {
                e += p * self.q(base + a, v);
            }
        }
        e
    }
}

/// What a sweep backs up: the greedy max (value iteration) or a policy's expectation (policy evaluation).
#[derive(Clone, Copy)]
enum Backup<'a> {
    Max,
    Policy(&'a [f64]),
}

impl CompiledMdp {
    /// Starts a model of `n_states` x `n_actions` built outcome by outcome.
    ///
    /// Errors when a count is zero or the states do not fit `u32` indices.
    pub fn builder(n_states: usize, n_actions: usize) -> Result<CompiledMdpBuilder> {
        if n_states == 0 || n_actions == 0 || n_states > u32::MAX as usize {
            return Err(AgentError::Config(format!(
                "a model needs 1..=2^32-1 states and at least one action, got {n_states} states and {n_actions} \
                 actions"
            )));
        }
        let mut offsets = Vec::with_capacity(n_states * n_actions + 1);
        offsets.push(0);
        Ok(CompiledMdpBuilder {
            n_states,
            n_actions,
            offsets,
            next: Vec::new(),
            kinds: Vec::new(),
            pr: Vec::new(),
            pc: Vec::new(),
            dict: HashMap::new(),
            row_prob: 0.0,
            grid: None,
        })
    }

    /// Compiles any [`Mdp`] (its outcomes in `P[s][a]` order; its grid shape is kept for rendering).
    pub fn compile<M: Mdp + ?Sized>(mdp: &M) -> Result<CompiledMdp> {
        let (ns, na) = (mdp.num_states(), mdp.num_actions());
        let mut b = CompiledMdp::builder(ns, na)?;
        for s in 0..ns {
            for a in 0..na {
                for o in mdp.outcomes(s, a) {
                    b.push(o.prob, o.next_state, o.reward, o.terminal)?;
                }
                b.end_action()?;
            }
        }
        b.grid_shape(mdp.grid_shape());
        b.build()
    }

    /// Number of states.
    pub fn num_states(&self) -> usize {
        self.n_states
    }

    /// Number of actions.
    pub fn num_actions(&self) -> usize {
        self.n_actions
    }

    /// Total number of outcomes over all `(s, a)`.
    pub fn num_outcomes(&self) -> usize {
        self.next.len()
    }

    /// `(rows, cols)` when the source model is grid-shaped.
    pub fn grid_shape(&self) -> Option<(usize, usize)> {
        self.grid
    }

    /// Bytes of the compiled model one sweep reads (outcome arrays, offsets, dictionary), not counting the value
    /// vectors: the numerator of the memory-bandwidth bound in `docs/BENCHMARKS.md`.
    pub fn model_bytes(&self) -> usize {
        let rows = match &self.rows {
            Rows::Stride(_) => 0,
            Rows::Csr(o) => o.len() * 4,
        };
        let kinds = match &self.kinds {
            Kinds::U8(k) => k.len(),
            Kinds::U16(k) => k.len() * 2,
            Kinds::U32(k) => k.len() * 4,
        };
        rows + self.next.len() * 4 + kinds + self.pr.len() * 16
    }

    /// `Q(s, a)` for every state and action under `v` (state-major, `n_states * n_actions` values).
    pub fn q_values(&self, v: &[f64], gamma: f64) -> Result<Vec<f64>> {
        self.check_len("value vector", v.len(), self.n_states)?;
        let gpc: Vec<f64> = self.pc.iter().map(|c| gamma * c).collect();
        let rows = self.n_states * self.n_actions;
        Ok(match &self.kinds {
            Kinds::U8(k) => {
                let kern = self.kernel(k, &gpc);
                (0..rows).map(|r| kern.q(r, v)).collect()
            }
            Kinds::U16(k) => {
                let kern = self.kernel(k, &gpc);
                (0..rows).map(|r| kern.q(r, v)).collect()
            }
            Kinds::U32(k) => {
                let kern = self.kernel(k, &gpc);
                (0..rows).map(|r| kern.q(r, v)).collect()
            }
        })
    }

    /// One synchronous value-iteration sweep `out(s) = max_a Q(s, a)` under `v`, on `pool`'s threads when given
    /// (bit-identical to the serial sweep); returns the max-norm change. Allocates only the discounted copy of
    /// the outcome dictionary (a few entries for a grid world). The building block
    /// [`value_iteration`] loops over, public for benchmarks and custom stopping rules.
    ///
    /// ```
    /// use bellman_agents::tabular::planning::CompiledMdp;
    /// let mut b = CompiledMdp::builder(1, 1).unwrap();
    /// b.push(1.0, 0, 1.0, false).unwrap();
    /// b.end_action().unwrap();
    /// let m = b.build().unwrap();
    /// let mut out = [0.0];
    /// assert_eq!(m.bellman_sweep(&[2.0], &mut out, 0.5, None).unwrap(), 0.0); // 1 + 0.5 * 2 = 2
    /// ```
    pub fn bellman_sweep(
        &self,
        v: &[f64],
        out: &mut [f64],
        gamma: f64,
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<f64> {
        self.check_len("value vector", v.len(), self.n_states)?;
        self.check_len("output vector", out.len(), self.n_states)?;
        let gpc: Vec<f64> = self.pc.iter().map(|c| gamma * c).collect();
        Ok(match &self.kinds {
            Kinds::U8(k) => sweep_jacobi(self.kernel(k, &gpc), Backup::Max, pool, v, out),
            Kinds::U16(k) => sweep_jacobi(self.kernel(k, &gpc), Backup::Max, pool, v, out),
            Kinds::U32(k) => sweep_jacobi(self.kernel(k, &gpc), Backup::Max, pool, v, out),
        })
    }

    fn check_len(&self, what: &str, got: usize, want: usize) -> Result<()> {
        if got == want {
            Ok(())
        } else {
            Err(AgentError::Config(format!("{what} has {got} entries, the model needs {want}")))
        }
    }

    fn kernel<'a, K: Kind>(&'a self, kinds: &'a [K], gpc: &'a [f64]) -> Kernel<'a, K> {
        let (stride, offsets): (usize, &[u32]) = match &self.rows {
            Rows::Stride(k) => (*k, &[]),
            Rows::Csr(o) => (0, o),
        };
        // The unchecked loads of `Kernel::best_single` rely on this (an internal invariant, not an input).
        assert_eq!(gpc.len(), self.pr.len(), "discounted dictionary out of step with the model");
        Kernel {
            n_states: self.n_states,
            n_actions: self.n_actions,
            stride,
            offsets,
            next: &self.next,
            kinds,
            pr: &self.pr,
            gpc,
        }
    }

    /// One sweep: writes the backed-up values into `out` (Jacobi, reading `v`) or into `v` itself (Gauss-Seidel,
    /// `out` unused) and returns the max-norm change.
    fn sweep(
        &self,
        backup: Backup<'_>,
        gpc: &[f64],
        sweep: Sweep,
        pool: Option<&rayon::ThreadPool>,
        v: &mut [f64],
        out: &mut [f64],
    ) -> f64 {
        match &self.kinds {
            Kinds::U8(k) => sweep_with(self.kernel(k, gpc), backup, sweep, pool, v, out),
            Kinds::U16(k) => sweep_with(self.kernel(k, gpc), backup, sweep, pool, v, out),
            Kinds::U32(k) => sweep_with(self.kernel(k, gpc), backup, sweep, pool, v, out),
        }
    }
}

fn backup_state<K: Kind>(kern: &Kernel<'_, K>, backup: Backup<'_>, s: usize, v: &[f64]) -> f64 {
    match backup {
        Backup::Max => kern.best(s, v),
        Backup::Policy(pi) => kern.expected(s, pi, v),
    }
}

fn sweep_with<K: Kind>(
    kern: Kernel<'_, K>,
    backup: Backup<'_>,
    sweep: Sweep,
    pool: Option<&rayon::ThreadPool>,
    v: &mut [f64],
    out: &mut [f64],
) -> f64 {
    match sweep {
        Sweep::InPlace => {
            let mut delta = 0.0f64;
            for s in 0..v.len() {
                let new = backup_state(&kern, backup, s, v);
                delta = delta.max((new - v[s]).abs());
                v[s] = new;
            }
            delta
        }
        Sweep::Synchronous => sweep_jacobi(kern, backup, pool, v, out),
    }
}

fn sweep_jacobi<K: Kind>(
    kern: Kernel<'_, K>,
    backup: Backup<'_>,
    pool: Option<&rayon::ThreadPool>,
    v: &[f64],
    out: &mut [f64],
) -> f64 {
    // One monomorphised loop per backup, so the inner loop has no per-state dispatch; deterministic models
    // (one outcome per (s, a)) with 4 actions, the grid-world case, get a fully unrolled loop.
    let single = kern.offsets.is_empty() && kern.stride == 1;
    match backup {
        Backup::Max if single && kern.n_actions == 4 => {
            jacobi_chunks(pool, v, out, |base, o| max_single_chunk::<K, 4>(&kern, base, o, v))
        }
        Backup::Max => jacobi_chunks(pool, v, out, |base, o| per_state_chunk(base, o, v, |s| kern.best(s, v))),
        Backup::Policy(pi) => {
            jacobi_chunks(pool, v, out, |base, o| per_state_chunk(base, o, v, |s| kern.expected(s, pi, v)))
        }
    }
}

/// Splits `out` into chunks of [`PAR_CHUNK`] states, runs `chunk(first_state, out_chunk)` on each (on `pool`
/// when given) and returns the largest change any chunk reports.
fn jacobi_chunks<F: Fn(usize, &mut [f64]) -> f64 + Sync>(
    pool: Option<&rayon::ThreadPool>,
    v: &[f64],
    out: &mut [f64],
    chunk: F,
) -> f64 {
    debug_assert_eq!(v.len(), out.len());
    let run = |(ci, o): (usize, &mut [f64])| chunk(ci * PAR_CHUNK, o);
    match pool {
        Some(pool) => pool.install(|| out.par_chunks_mut(PAR_CHUNK).enumerate().map(run).reduce(|| 0.0, f64::max)),
        None => out.chunks_mut(PAR_CHUNK).enumerate().map(run).fold(0.0, f64::max),
    }
}

/// Backs up states `base..base + out.len()` one by one with `backup`; returns the max-norm change.
#[inline(always)]
fn per_state_chunk(base: usize, out: &mut [f64], v: &[f64], backup: impl Fn(usize) -> f64) -> f64 {
    let mut delta = 0.0f64;
    for ((x, s), old) in out.iter_mut().zip(base..).zip(&v[base..]) {
        let new = backup(s);
        let d = (new - old).abs();
        // `d > delta` ignores NaN like `f64::max`, and compiles to a plain maxsd.
        if d > delta {
            delta = d;
        }
        *x = new;
    }
    delta
}

/// The hot loop of large deterministic models (the benchmark's maze): `max_a (pr + gamma pc V(next))` over
/// exactly `NA` single-outcome actions per state, unrolled, without bounds checks on indices the builder has
/// validated. Gives the same values as [`Kernel::best`] (which adds each single outcome to `0.0`: `0.0 + x == x`).
#[inline(always)]
fn max_single_chunk<K: Kind, const NA: usize>(kern: &Kernel<'_, K>, base: usize, out: &mut [f64], v: &[f64]) -> f64 {
    let end = base + out.len();
    let (next, kinds) = (&kern.next[base * NA..end * NA], &kern.kinds[base * NA..end * NA]);
    let (pr, gpc) = (kern.pr, kern.gpc);
    assert!(v.len() == kern.n_states && pr.len() == gpc.len());
    let mut delta = 0.0f64;
    for (((x, old), nx), kd) in out.iter_mut().zip(&v[base..end]).zip(next.chunks_exact(NA)).zip(kinds.chunks_exact(NA))
    {
        let mut best = f64::NEG_INFINITY;
        for i in 0..NA {
            let k = kd[i].idx();
            // SAFETY: `CompiledMdpBuilder::push` rejects next states >= n_states and gives every outcome a
            // dictionary index < pr.len(); pr.len() == gpc.len() and v.len() == n_states are asserted above.
            let q = unsafe { pr.get_unchecked(k) + gpc.get_unchecked(k) * v.get_unchecked(nx[i] as usize) };
            // Same comparison as `Kernel::best` (a plain maxsd; NaN never wins).
            if q > best {
                best = q;
            }
        }
        let d = (best - old).abs();
        if d > delta {
            delta = d;
        }
        *x = best;
    }
    delta
}

/// How a sweep updates the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sweep {
    /// Jacobi: every state is backed up from the previous sweep's values (the book's two-array version, and
    /// Gymnasium's reference value iteration). Parallel across threads, bit-identical to the serial sweep.
    #[default]
    Synchronous,
    /// Gauss-Seidel: states are backed up in order `0..n` and each new value is used at once (the book's
    /// in-place version). Usually fewer sweeps; always serial.
    InPlace,
}

/// Settings of the planning algorithms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViOptions {
    /// Discount factor, in `(0, 1]`. With 1 the MDP must terminate under the policies swept (a proper MDP).
    pub gamma: f64,
    /// Stop after the first sweep whose max-norm change is below `tol` (> 0). Default 1e-10.
    pub tol: f64,
    /// Stop after this many sweeps even without convergence ([`Solution::converged`] is then false). Default
    /// 100,000.
    pub max_sweeps: usize,
    /// Jacobi or Gauss-Seidel sweeps. Default synchronous.
    pub sweep: Sweep,
    /// Threads for synchronous sweeps of models with at least 32,768 states: 0 = all cores (rayon's default),
    /// 1 = serial. Default 0.
    pub threads: usize,
    /// Actions whose `Q` is within `tie_tol * max(1, |max Q|)` of the best count as tied; the greedy policy
    /// takes the smallest such index. Default 1e-9 (the Gymnasium fixtures' `tie_tol`).
    pub tie_tol: f64,
}

impl ViOptions {
    /// Defaults with discount `gamma`.
    pub fn new(gamma: f64) -> Self {
        ViOptions { gamma, tol: 1e-10, max_sweeps: 100_000, sweep: Sweep::Synchronous, threads: 0, tie_tol: 1e-9 }
    }

    /// Checks every field; the message names the bad value and the accepted range.
    pub fn validate(&self) -> Result<()> {
        if !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(AgentError::Config(format!("gamma = {} is outside (0, 1]", self.gamma)));
        }
        if !(self.tol > 0.0 && self.tol.is_finite()) {
            return Err(AgentError::Config(format!("tol = {} must be a finite number > 0", self.tol)));
        }
        if self.max_sweeps == 0 {
            return Err(AgentError::Config("max_sweeps = 0 must be at least 1".into()));
        }
        if !(self.tie_tol >= 0.0 && self.tie_tol.is_finite()) {
            return Err(AgentError::Config(format!("tie_tol = {} must be a finite number >= 0", self.tie_tol)));
        }
        Ok(())
    }

    fn pool(&self, n_states: usize) -> Result<Option<rayon::ThreadPool>> {
        if self.sweep == Sweep::InPlace || self.threads == 1 || n_states < PAR_MIN_STATES {
            return Ok(None);
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()
            .map(Some)
            .map_err(|e| AgentError::Config(format!("cannot start {} threads: {e}", self.threads)))
    }
}

/// A policy for [`policy_evaluation`].
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// One action per state.
    Deterministic(Vec<usize>),
    /// `pi(a | s)` state-major (`n_states * n_actions` values; each state's row sums to 1).
    Stochastic(Vec<f64>),
    /// Every action with probability `1 / n_actions`.
    UniformRandom,
}

impl Policy {
    /// The policy as a dense `pi(a | s)` table, checked against the model's shape.
    fn dense(&self, ns: usize, na: usize) -> Result<Vec<f64>> {
        match self {
            Policy::UniformRandom => Ok(vec![1.0 / na as f64; ns * na]),
            Policy::Deterministic(p) => {
                if p.len() != ns {
                    return Err(AgentError::Config(format!("policy has {} states, the model has {ns}", p.len())));
                }
                let mut pi = vec![0.0; ns * na];
                for (s, &a) in p.iter().enumerate() {
                    if a >= na {
                        return Err(AgentError::Config(format!("policy action {a} in state {s} is outside 0..{na}")));
                    }
                    pi[s * na + a] = 1.0;
                }
                Ok(pi)
            }
            Policy::Stochastic(pi) => {
                if pi.len() != ns * na {
                    return Err(AgentError::Config(format!(
                        "stochastic policy has {} entries, expected {ns} states x {na} actions = {}",
                        pi.len(),
                        ns * na
                    )));
                }
                for (s, row) in pi.chunks(na).enumerate() {
                    let total: f64 = row.iter().sum();
                    if row.iter().any(|p| !(0.0..=1.0).contains(p)) || (total - 1.0).abs() > 1e-9 {
                        return Err(AgentError::Config(format!(
                            "policy row of state {s} is {row:?}: entries must be in [0, 1] and sum to 1"
                        )));
                    }
                }
                Ok(pi.clone())
            }
        }
    }
}

/// The result of a planning algorithm.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// `V(s)` for every state.
    pub values: Vec<f64>,
    /// `Q(s, a)` computed from `values`, state-major (`q[s * n_actions + a]`).
    pub q: Vec<f64>,
    /// Greedy action of every state under `q`: the smallest index within the tie tolerance of the best.
    pub policy: Vec<usize>,
    /// Number of sweeps done (for policy iteration: evaluation sweeps over all iterations).
    pub sweeps: usize,
    /// Max-norm change of the last sweep.
    pub delta: f64,
    /// Whether the last sweep's change was below the tolerance (for policy iteration: the policy is stable).
    pub converged: bool,
    /// Policy-improvement steps (policy iteration only; 0 otherwise).
    pub improvements: usize,
    /// Number of actions (the row length of `q`).
    pub n_actions: usize,
}

impl Solution {
    /// `Q(s, .)` of state `s` (empty when `s` is not a state).
    pub fn q_row(&self, s: usize) -> &[f64] {
        self.q.get(s * self.n_actions..(s + 1) * self.n_actions).unwrap_or(&[])
    }

    /// An error unless the algorithm converged, explaining the likely cause.
    pub fn ensure_converged(&self, gamma: f64) -> Result<()> {
        if self.converged {
            return Ok(());
        }
        let hint = if gamma >= 1.0 {
            "; with gamma = 1 values converge only if the policies swept reach a terminal outcome (a proper \
             MDP), and slowly when their episodes are long: raise the sweep limit or use gamma < 1"
        } else {
            "; raise the sweep limit or the tolerance"
        };
        Err(AgentError::Diverged(format!(
            "no convergence after {} sweeps (last max-norm change {:e}){hint}",
            self.sweeps, self.delta
        )))
    }
}

/// Greedy actions of a state-major `Q`: the smallest index within `tie_tol * max(1, |max|)` of the row's max
/// (empty when `n_actions` is 0).
pub fn greedy_policy(q: &[f64], n_actions: usize, tie_tol: f64) -> Vec<usize> {
    if n_actions == 0 {
        return Vec::new();
    }
    q.chunks(n_actions)
        .map(|row| {
            let best = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let thr = best - tie_tol * best.abs().max(1.0);
            row.iter().position(|&x| x >= thr).unwrap_or(0)
        })
        .collect()
}

/// Runs sweeps of `backup` from `v` until convergence or the sweep limit; returns (values, sweeps, delta,
/// converged).
fn iterate(
    m: &CompiledMdp,
    backup: Backup<'_>,
    opts: &ViOptions,
    mut v: Vec<f64>,
) -> Result<(Vec<f64>, usize, f64, bool)> {
    let gpc: Vec<f64> = m.pc.iter().map(|c| opts.gamma * c).collect();
    let pool = opts.pool(m.n_states)?;
    let mut out = match opts.sweep {
        Sweep::Synchronous => vec![0.0; m.n_states],
        Sweep::InPlace => Vec::new(),
    };
    let mut delta = f64::INFINITY;
    for k in 1..=opts.max_sweeps {
        delta = m.sweep(backup, &gpc, opts.sweep, pool.as_ref(), &mut v, &mut out);
        if opts.sweep == Sweep::Synchronous {
            std::mem::swap(&mut v, &mut out);
        }
        if !delta.is_finite() {
            return Err(AgentError::Diverged(format!(
                "values became non-finite at sweep {k} (gamma = {}); the model's rewards or probabilities are \
                 unbounded",
                opts.gamma
            )));
        }
        if delta < opts.tol {
            return Ok((v, k, delta, true));
        }
    }
    Ok((v, opts.max_sweeps, delta, false))
}

fn solution(
    m: &CompiledMdp,
    v: Vec<f64>,
    opts: &ViOptions,
    sweeps: usize,
    delta: f64,
    converged: bool,
) -> Result<Solution> {
    if let Some(s) = v.iter().position(|x| !x.is_finite()) {
        return Err(AgentError::Diverged(format!(
            "V({s}) = {} after {sweeps} sweeps (gamma = {}): the values overflowed",
            v[s], opts.gamma
        )));
    }
    let q = m.q_values(&v, opts.gamma)?;
    let policy = greedy_policy(&q, m.n_actions, opts.tie_tol);
    Ok(Solution { values: v, q, policy, sweeps, delta, converged, improvements: 0, n_actions: m.n_actions })
}

/// Iterative policy evaluation of `policy` from `V = 0` (Sutton and Barto section 4.1). The returned
/// [`Solution`] holds `V_pi`, `Q_pi` and the greedy policy with respect to `Q_pi`.
///
/// ```
/// use bellman_agents::tabular::planning::{CompiledMdp, Policy, ViOptions, policy_evaluation};
/// // One state, two actions: reward 1 or 0, both continue with gamma 0.5.
/// let mut b = CompiledMdp::builder(1, 2).unwrap();
/// b.push(1.0, 0, 1.0, false).unwrap(); b.end_action().unwrap();
/// b.push(1.0, 0, 0.0, false).unwrap(); b.end_action().unwrap();
/// let m = b.build().unwrap();
/// let sol = policy_evaluation(&m, &Policy::UniformRandom, &ViOptions::new(0.5)).unwrap();
/// assert!((sol.values[0] - 1.0).abs() < 1e-9); // 0.5 / (1 - 0.5)
/// ```
pub fn policy_evaluation(m: &CompiledMdp, policy: &Policy, opts: &ViOptions) -> Result<Solution> {
    opts.validate()?;
    let pi = policy.dense(m.n_states, m.n_actions)?;
    let (v, sweeps, delta, converged) = iterate(m, Backup::Policy(&pi), opts, vec![0.0; m.n_states])?;
    solution(m, v, opts, sweeps, delta, converged)
}

/// Value iteration from `V = 0` (Sutton and Barto section 4.4): sweeps `V(s) <- max_a Q(s, a)` until the
/// max-norm change of a sweep is below `opts.tol` (the values of that sweep are kept, as in the Gymnasium
/// fixtures) or `opts.max_sweeps` is reached (then `converged` is false: see [`Solution::ensure_converged`]).
pub fn value_iteration(m: &CompiledMdp, opts: &ViOptions) -> Result<Solution> {
    opts.validate()?;
    let (v, sweeps, delta, converged) = iterate(m, Backup::Max, opts, vec![0.0; m.n_states])?;
    solution(m, v, opts, sweeps, delta, converged)
}

/// Policy iteration (Sutton and Barto section 4.3), starting from the uniform random policy (so that with
/// gamma = 1 the first evaluation terminates whenever any policy does: the random policy follows every path
/// with positive probability). Each evaluation runs sweeps to `opts.tol` from the previous values; the
/// improvement keeps the current action unless another beats it by more than the tie tolerance, so the loop
/// cannot cycle between equally good policies. Stops when the policy is stable, or after `opts.max_sweeps`
/// evaluation sweeps in total (then `converged` is false).
pub fn policy_iteration(m: &CompiledMdp, opts: &ViOptions) -> Result<Solution> {
    opts.validate()?;
    let (ns, na) = (m.n_states, m.n_actions);
    let mut pi = Policy::UniformRandom.dense(ns, na)?;
    let mut v = vec![0.0; ns];
    let mut total = 0usize;
    let mut current: Option<Vec<usize>> = None;
    let mut improvements = 0usize;
    loop {
        let budget = ViOptions { max_sweeps: opts.max_sweeps.saturating_sub(total).max(1), ..*opts };
        let (nv, sweeps, delta, converged) = iterate(m, Backup::Policy(&pi), &budget, v)?;
        v = nv;
        total += sweeps;
        if !converged {
            let q = m.q_values(&v, opts.gamma)?;
            let policy = current.unwrap_or_else(|| greedy_policy(&q, na, opts.tie_tol));
            return Ok(Solution {
                values: v,
                q,
                policy,
                sweeps: total,
                delta,
                converged: false,
                improvements,
                n_actions: na,
            });
        }
        let q = m.q_values(&v, opts.gamma)?;
        let mut next = greedy_policy(&q, na, opts.tie_tol);
        if let Some(cur) = &current {
            for (s, a) in next.iter_mut().enumerate() {
                let row = &q[s * na..(s + 1) * na];
                let best = row[*a];
                if row[cur[s]] >= best - opts.tie_tol * best.abs().max(1.0) {
                    *a = cur[s];
                }
            }
        }
        improvements += 1;
        if current.as_ref() == Some(&next) {
            let policy = greedy_policy(&q, na, opts.tie_tol);
            return Ok(Solution {
                values: v,
                q,
                policy,
                sweeps: total,
                delta,
                converged: true,
                improvements,
                n_actions: na,
            });
        }
        pi.iter_mut().for_each(|p| *p = 0.0);
        for (s, &a) in next.iter().enumerate() {
            pi[s * na + a] = 1.0;
        }
        current = Some(next);
    }
}
