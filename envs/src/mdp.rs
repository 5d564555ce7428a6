//! Explicit models for planning: the [`Mdp`] trait and a compact [`TransitionTable`] that stores Gymnasium's
//! `P[s][a]` lists in flat (CSR) arrays.
use rand::Rng;

use crate::error::{EnvError, Result};

/// One possible result of taking action `a` in state `s`: Gymnasium's `(prob, next_state, reward, terminated)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Probability of this outcome.
    pub prob: f64,
    /// The next state.
    pub next_state: usize,
    /// The reward received.
    pub reward: f64,
    /// Whether the transition ends the episode (no bootstrap from `next_state`).
    pub terminal: bool,
}

/// A finite MDP with a known transition model, for planning (value and policy iteration).
///
/// States and actions are numbered `0..num_states()` and `0..num_actions()` as the matching Gymnasium env numbers
/// them (grid envs: `row * ncols + col`), and [`Mdp::outcomes`] lists outcomes in Gymnasium's `P[s][a]` order.
///
/// ```
/// use bellman_envs::{Mdp, toy_text::FrozenLake};
/// let env = FrozenLake::new(Default::default()).unwrap();
/// assert_eq!((env.num_states(), env.num_actions()), (16, 4));
/// let total: f64 = env.outcomes(0, 1).iter().map(|o| o.prob).sum();
/// assert!((total - 1.0).abs() < 1e-12);
/// ```
pub trait Mdp {
    /// Number of states.
    fn num_states(&self) -> usize;
    /// Number of actions (the same in every state).
    fn num_actions(&self) -> usize;
    /// The outcomes of action `a` in state `s`, in Gymnasium's `P[s][a]` order. Probabilities sum to 1; the
    /// built-in models return an empty slice when `s` or `a` is out of range (and so should yours: never panic).
    fn outcomes(&self, s: usize, a: usize) -> &[Outcome];
    /// The initial-state distribution (Gymnasium's `initial_state_distrib`), `num_states()` entries.
    fn initial_distribution(&self) -> &[f64];
    /// `(rows, cols)` for grid-shaped envs whose state is `row * cols + col`; `None` otherwise.
    fn grid_shape(&self) -> Option<(usize, usize)> {
        None
    }
    /// A one-character label of a state for text rendering (`'H'`, `'G'`, `'#'`...), if it has one.
    fn state_label(&self, _s: usize) -> Option<char> {
        None
    }
}

impl<M: Mdp + ?Sized> Mdp for Box<M> {
    fn num_states(&self) -> usize {
        (**self).num_states()
    }
    fn num_actions(&self) -> usize {
        (**self).num_actions()
    }
    fn outcomes(&self, s: usize, a: usize) -> &[Outcome] {
        (**self).outcomes(s, a)
    }
    fn initial_distribution(&self) -> &[f64] {
        (**self).initial_distribution()
    }
    fn grid_shape(&self) -> Option<(usize, usize)> {
        (**self).grid_shape()
    }
    fn state_label(&self, s: usize) -> Option<char> {
        (**self).state_label(s)
    }
}

/// Gymnasium's `P[s][a]` stored flat: the outcomes of `(s, a)` are `outcomes[offsets[s*nA+a]..offsets[s*nA+a+1]]`.
///
/// ```
/// use bellman_envs::mdp::{Outcome, TransitionTable};
/// let mut t = TransitionTable::builder(1, 1);
/// t.push(Outcome { prob: 1.0, next_state: 0, reward: 0.0, terminal: true });
/// t.end_action();
/// let t = t.build().unwrap();
/// assert_eq!(t.get(0, 0).len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionTable {
    n_states: usize,
    n_actions: usize,
    offsets: Vec<usize>,
    outcomes: Vec<Outcome>,
}

/// Builds a [`TransitionTable`] row by row: push the outcomes of `(0,0)`, call `end_action`, then `(0,1)`...
#[derive(Debug)]
pub struct TransitionTableBuilder {
    table: TransitionTable,
}

impl TransitionTableBuilder {
    /// Appends an outcome to the current `(s, a)`.
    pub fn push(&mut self, o: Outcome) {
        self.table.outcomes.push(o);
    }
    /// Closes the current `(s, a)`.
    pub fn end_action(&mut self) {
        self.table.offsets.push(self.table.outcomes.len());
    }
    /// Checks the shape, indices and probabilities (each `(s, a)` sums to 1 within 1e-9) and returns the table.
    pub fn build(self) -> Result<TransitionTable> {
        let t = self.table;
        let expected = t.n_states * t.n_actions + 1;
        if t.offsets.len() != expected {
            return Err(EnvError::BadMap(format!(
                "transition table has {} (s, a) rows, expected {}",
                t.offsets.len() - 1,
                expected - 1
            )));
        }
        for s in 0..t.n_states {
            for a in 0..t.n_actions {
                let os = t.get(s, a);
                if os.is_empty() {
                    return Err(EnvError::BadMap(format!("state {s} action {a} has no outcomes")));
                }
                let mut total = 0.0;
                for o in os {
                    if o.next_state >= t.n_states || o.prob.is_nan() || o.prob < 0.0 {
                        return Err(EnvError::BadMap(format!("state {s} action {a}: bad outcome {o:?}")));
                    }
                    total += o.prob;
                }
                if (total - 1.0).abs() > 1e-9 {
                    return Err(EnvError::BadMap(format!("state {s} action {a}: probabilities sum to {total}")));
                }
            }
        }
        Ok(t)
    }
}

impl TransitionTable {
    /// Starts building a table for `n_states` x `n_actions`.
    pub fn builder(n_states: usize, n_actions: usize) -> TransitionTableBuilder {
        let mut offsets = Vec::with_capacity(n_states * n_actions + 1);
        offsets.push(0);
        TransitionTableBuilder { table: TransitionTable { n_states, n_actions, offsets, outcomes: Vec::new() } }
    }
    /// Number of states.
    pub fn num_states(&self) -> usize {
        self.n_states
    }
    /// Number of actions.
    pub fn num_actions(&self) -> usize {
        self.n_actions
    }
    /// Outcomes of `(s, a)`; empty when `s >= num_states()` or `a >= num_actions()`.
    pub fn get(&self, s: usize, a: usize) -> &[Outcome] {
        if s >= self.n_states || a >= self.n_actions {
            return &[];
        }
        let i = s * self.n_actions + a;
        &self.outcomes[self.offsets[i]..self.offsets[i + 1]]
    }
    /// Samples an outcome of `(s, a)` exactly as Gymnasium's `categorical_sample`: the first outcome whose
    /// cumulative probability exceeds a uniform draw in `[0, 1)`. `None` when `(s, a)` is out of range.
    pub fn sample<R: Rng + ?Sized>(&self, s: usize, a: usize, rng: &mut R) -> Option<&Outcome> {
        sample_outcome(self.get(s, a), rng)
    }
}

/// Checks an initial-state distribution: `n_states` finite, non-negative entries summing to 1 within 1e-9.
///
/// ```
/// use bellman_envs::mdp::check_initial_distribution;
/// assert!(check_initial_distribution(&[0.25, 0.75], 2).is_ok());
/// assert!(check_initial_distribution(&[0.5, 0.4], 2).is_err());
/// assert!(check_initial_distribution(&[1.0], 2).is_err());
/// assert!(check_initial_distribution(&[1.5, -0.5], 2).is_err());
/// ```
pub fn check_initial_distribution(isd: &[f64], n_states: usize) -> Result<()> {
    if isd.len() != n_states {
        return Err(EnvError::BadMap(format!("initial distribution has {} entries, expected {n_states}", isd.len())));
    }
    if let Some((s, p)) = isd.iter().enumerate().find(|(_, p)| !p.is_finite() || **p < 0.0) {
        return Err(EnvError::BadMap(format!("initial probability of state {s} is {p}, expected a value in [0, 1]")));
    }
    let total: f64 = isd.iter().sum();
    if (total - 1.0).abs() > 1e-9 {
        return Err(EnvError::BadMap(format!("initial distribution sums to {total}, expected 1 (within 1e-9)")));
    }
    Ok(())
}

/// Gymnasium's `categorical_sample` over a list of outcomes; `None` for an empty list.
///
/// ```
/// use bellman_envs::mdp::{Outcome, sample_outcome};
/// let os = [Outcome { prob: 1.0, next_state: 3, reward: 0.5, terminal: false }];
/// let mut rng = bellman_envs::rng::seeded(0);
/// assert_eq!(sample_outcome(&os, &mut rng).map(|o| o.next_state), Some(3));
/// assert!(sample_outcome(&[], &mut rng).is_none());
/// ```
pub fn sample_outcome<'a, R: Rng + ?Sized>(outcomes: &'a [Outcome], rng: &mut R) -> Option<&'a Outcome> {
    let u: f64 = rng.random();
    let mut c = 0.0;
    for o in outcomes {
        c += o.prob;
        if c > u {
            return Some(o);
        }
    }
    // Rounding left the cumulative sum just under u: numpy's argmax of an all-false array is 0.
    outcomes.first()
}

/// Samples an index from a probability vector as Gymnasium's `categorical_sample` (0 for an empty or all-zero
/// vector, as numpy's `argmax` of an all-false array).
pub fn sample_categorical<R: Rng + ?Sized>(probs: &[f64], rng: &mut R) -> usize {
    let u: f64 = rng.random();
    let mut c = 0.0;
    for (i, p) in probs.iter().enumerate() {
        c += p;
        if c > u {
            return i;
        }
    }
    0
}
