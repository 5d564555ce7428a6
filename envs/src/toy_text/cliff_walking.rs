//! CliffWalking-v1 and CliffWalkingSlippery-v1, as `gymnasium/envs/toy_text/cliffwalking.py` (Gymnasium 1.4),
//! after Sutton and Barto's Example 6.6.
use super::{TabularCore, tabular_env, tabular_mdp};
use crate::error::Result;
use crate::mdp::{Outcome, TransitionTable};
use crate::options::Options;

const NROW: usize = 4;
const NCOL: usize = 12;
/// Start (3, 0) = 36 (cliffwalking.py: `start_state_index`).
const START: usize = 3 * NCOL;
/// Goal (3, 11) = 47.
const GOAL: usize = NROW * NCOL - 1;
/// cliffwalking.py's `POSITION_MAPPING`: 0 up, 1 right, 2 down, 3 left, as (d_row, d_col).
const DELTAS: [(isize, isize); 4] = [(-1, 0), (0, 1), (1, 0), (0, -1)];

/// The constructor arguments of Gymnasium's `CliffWalkingEnv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CliffWalkingConfig {
    /// Slippery cliff: the intended move and each perpendicular one with probability 1/3 each (default false;
    /// true for `CliffWalkingSlippery-v1`).
    pub is_slippery: bool,
}

impl CliffWalkingConfig {
    /// Reads the `is_slippery` option over `base`.
    ///
    /// ```
    /// use bellman_envs::{Options, toy_text::CliffWalkingConfig};
    /// let o = Options::parse(["is_slippery=true"]).unwrap();
    /// let c = CliffWalkingConfig::from_options("CliffWalking-v1", &o, CliffWalkingConfig::default()).unwrap();
    /// assert!(c.is_slippery);
    /// ```
    pub fn from_options(env: &str, o: &Options, base: Self) -> Result<Self> {
        let mut c = base;
        if let Some(v) = o.get_bool(env, "is_slippery")? {
            c.is_slippery = v;
        }
        Ok(c)
    }
}

/// Gymnasium's CliffWalking: walk a 4 x 12 grid from (3, 0) to (3, 11) along a cliff on row 3, columns 1..=10.
///
/// * Observation: `row * 12 + col`. Actions (Gymnasium's numbering): **0 up, 1 right, 2 down, 3 left**.
/// * Every step gives -1; stepping into the cliff gives -100 and moves back to the start **without** ending the
///   episode; entering (3, 11) terminates. Moves off the grid stay in place.
/// * Slippery: outcomes `[(a - 1) % 4, a, (a + 1) % 4]`, 1/3 each. `Info.prob` is Gymnasium's `info["prob"]`.
/// * No time limit is registered (Gymnasium's `max_episode_steps=None`).
///
/// ```
/// use bellman_envs::{Env, toy_text::CliffWalking};
/// let mut env = CliffWalking::new(Default::default()).unwrap();
/// assert_eq!(env.reset(Some(0)).unwrap().0, 36);
/// let s = env.step(1).unwrap(); // right, into the cliff
/// assert_eq!((s.obs, s.reward, s.terminated), (36, -100.0, false));
/// ```
#[derive(Debug, Clone)]
pub struct CliffWalking {
    core: TabularCore,
}

fn is_cliff(row: usize, col: usize) -> bool {
    row == NROW - 1 && (1..NCOL - 1).contains(&col)
}

impl CliffWalking {
    /// Builds the env and its model (Gymnasium's `CliffWalkingEnv.__init__`).
    pub fn new(config: CliffWalkingConfig) -> Result<Self> {
        let ns = NROW * NCOL;
        let mut t = TransitionTable::builder(ns, 4);
        for s in 0..ns {
            let (row, col) = (s / NCOL, s % NCOL);
            for a in 0..4 {
                let moves: &[usize] = if config.is_slippery { &[(a + 3) % 4, a, (a + 1) % 4] } else { &[a] };
                let prob = 1.0 / moves.len() as f64; // cliffwalking.py: 1 / len(deltas)
                for &m in moves {
                    let (dr, dc) = DELTAS[m];
                    // _limit_coordinates: clamp into the grid.
                    let nr = row.saturating_add_signed(dr).min(NROW - 1);
                    let nc = col.saturating_add_signed(dc).min(NCOL - 1);
                    let o = if is_cliff(nr, nc) {
                        Outcome { prob, next_state: START, reward: -100.0, terminal: false }
                    } else {
                        let next = nr * NCOL + nc;
                        Outcome { prob, next_state: next, reward: -1.0, terminal: next == GOAL }
                    };
                    t.push(o);
                }
                t.end_action();
            }
        }
        let mut isd = vec![0.0; ns];
        isd[START] = 1.0;
        Ok(CliffWalking { core: TabularCore::new(t.build()?, isd)? })
    }

    fn grid_shape_impl(&self) -> Option<(usize, usize)> {
        Some((NROW, NCOL))
    }

    /// `S` start, `G` goal, `C` cliff, `.` other cells.
    fn state_label_impl(&self, s: usize) -> Option<char> {
        match s {
            START => Some('S'),
            GOAL => Some('G'),
            s if s < NROW * NCOL && is_cliff(s / NCOL, s % NCOL) => Some('C'),
            s if s < NROW * NCOL => Some('.'),
            _ => None,
        }
    }
}

tabular_mdp!(CliffWalking);

tabular_env!(CliffWalking);
