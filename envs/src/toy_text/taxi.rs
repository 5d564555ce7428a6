//! Taxi-v4, as `gymnasium/envs/toy_text/taxi.py` (Gymnasium 1.4), after Dietterich (2000), "Hierarchical
//! Reinforcement Learning with the MAXQ Value Function Decomposition", JAIR 13.
use rand::Rng;

use super::{TabularCore, check_probability, get_probability, tabular_mdp};
use crate::env::{Env, Info, Step};
use crate::error::Result;
use crate::mdp::{Outcome, TransitionTable};
use crate::options::Options;
use crate::space::Space;

/// taxi.py's `MAP`: `|` is a wall between two cells, `:` an opening.
pub const MAP: [&str; 7] =
    ["+---------+", "|R: | : :G|", "| : | : : |", "| : : : : |", "| | : | : |", "|Y| : |B: |", "+---------+"];
/// The four stands R, G, Y, B as (row, col) (taxi.py's `locs`).
const LOCS: [(usize, usize); 4] = [(0, 0), (0, 4), (4, 0), (4, 3)];
/// Passenger location "in the taxi".
const IN_TAXI: usize = 4;
const N_STATES: usize = 500;
const N_ACTIONS: usize = 6;
// Actions (taxi.py's `Actions`).
const SOUTH: usize = 0;
const NORTH: usize = 1;
const EAST: usize = 2;
const WEST: usize = 3;
const PICKUP: usize = 4;
const DROPOFF: usize = 5;
/// The move to the left and to the right of each heading (south, north, east, west), in the order Gymnasium 1.4
/// lists a rainy move's drifts (taxi.py, `_build_transitions`; checked against the recorded `P`).
const LEFT_OF: [usize; 4] = [EAST, WEST, NORTH, SOUTH];
const RIGHT_OF: [usize; 4] = [WEST, EAST, SOUTH, NORTH];
// Rewards (taxi.py): step, illegal pickup/dropoff, delivery.
const PENALTY_STEP: f64 = -1.0;
const PENALTY_ILLEGAL: f64 = -10.0;
const REWARD_COMPLETE: f64 = 20.0;

/// The constructor arguments of Gymnasium's `TaxiEnv` (v4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaxiConfig {
    /// Rain: a move that is not blocked succeeds with `rainy_probability` and drifts to the left or the right of
    /// the heading with `(1 - rainy_probability) / 2` each (a blocked drift stays put). Default false.
    pub is_rainy: bool,
    /// Probability of the intended move when rainy (default 0.8).
    pub rainy_probability: f64,
    /// Fickle passenger: with `fickle_probability` per episode, on the first step that moves the taxi with the
    /// passenger aboard, the destination changes uniformly to one of the three others. Default false.
    pub fickle_passenger: bool,
    /// Probability that the passenger is fickle in an episode (default 0.3).
    pub fickle_probability: f64,
}

impl Default for TaxiConfig {
    fn default() -> Self {
        TaxiConfig { is_rainy: false, rainy_probability: 0.8, fickle_passenger: false, fickle_probability: 0.3 }
    }
}

impl TaxiConfig {
    /// Reads the options `is_rainy`, `rainy_probability`, `fickle_passenger`, `fickle_probability` over `base`.
    ///
    /// ```
    /// use bellman_envs::{Options, toy_text::TaxiConfig};
    /// let o = Options::parse(["is_rainy=true", "rainy_probability=0.9"]).unwrap();
    /// let c = TaxiConfig::from_options("Taxi-v4", &o, TaxiConfig::default()).unwrap();
    /// assert!(c.is_rainy && c.rainy_probability == 0.9);
    /// ```
    pub fn from_options(env: &str, o: &Options, base: Self) -> Result<Self> {
        let mut c = base;
        if let Some(v) = o.get_bool(env, "is_rainy")? {
            c.is_rainy = v;
        }
        if let Some(v) = get_probability(env, o, "rainy_probability")? {
            c.rainy_probability = v;
        }
        if let Some(v) = o.get_bool(env, "fickle_passenger")? {
            c.fickle_passenger = v;
        }
        if let Some(v) = get_probability(env, o, "fickle_probability")? {
            c.fickle_probability = v;
        }
        Ok(c)
    }
}

/// Gymnasium's Taxi: pick a passenger up at one of four stands and drop them at their destination.
///
/// * Observation: `((taxi_row * 5 + taxi_col) * 5 + passenger) * 4 + destination` (see [`Taxi::encode`]);
///   passenger 0..4 are the stands R, G, Y, B, 4 is "in the taxi".
/// * Actions: 0 south, 1 north, 2 east, 3 west, 4 pickup, 5 dropoff.
/// * Rewards: -1 per step, +20 for a delivery (which terminates), -10 for an illegal pickup or dropoff.
/// * Reset: uniform over the 300 states with the passenger at a stand other than the destination.
/// * `Info.prob` is Gymnasium's `info["prob"]`, `Info.action_mask` its `info["action_mask"]` as bits.
/// * With `fickle_passenger` the destination change is not part of the model ([`crate::Mdp`] is `P` as Gymnasium
///   builds it, which ignores fickleness too).
///
/// ```
/// use bellman_envs::{Env, toy_text::Taxi};
/// let mut env = Taxi::new(Default::default()).unwrap();
/// env.reset(Some(0)).unwrap();
/// env.set_state(Taxi::encode(0, 0, 0, 1)).unwrap(); // at R, passenger at R, going to G
/// let s = env.step(4).unwrap(); // pickup
/// assert_eq!(Taxi::decode(s.obs), (0, 0, 4, 1));
/// assert_eq!(s.reward, -1.0);
/// assert_eq!(s.info.action_mask, Some(0b10_0101)); // south, east, or drop off at R
/// ```
#[derive(Debug, Clone)]
pub struct Taxi {
    core: TabularCore,
    config: TaxiConfig,
    fickle_step: bool,
    /// Position after each heading from each cell, `[row][col][dir] = (row, col)` (taxi.py `_movements`).
    movements: [[[(usize, usize); 4]; 5]; 5],
}

fn build_movements() -> [[[(usize, usize); 4]; 5]; 5] {
    let desc: Vec<&[u8]> = MAP.iter().map(|r| r.as_bytes()).collect();
    let mut m = [[[(0, 0); 4]; 5]; 5];
    for (row, line) in m.iter_mut().enumerate() {
        for (col, cell) in line.iter_mut().enumerate() {
            // taxi.py: a move is open unless the MAP shows a wall ('-' or '|') on that side.
            let open_south = desc[row + 2][2 * col + 1] != b'-';
            let open_north = desc[row][2 * col + 1] != b'-';
            let open_east = desc[row + 1][2 * col + 2] != b'|';
            let open_west = desc[row + 1][2 * col] != b'|';
            cell[SOUTH] = if open_south { (row + 1, col) } else { (row, col) };
            cell[NORTH] = if open_north { (row - 1, col) } else { (row, col) };
            cell[EAST] = if open_east { (row, col + 1) } else { (row, col) };
            cell[WEST] = if open_west { (row, col - 1) } else { (row, col) };
        }
    }
    m
}

impl Taxi {
    /// Builds the env and its model (Gymnasium's `TaxiEnv.__init__`); errors when a probability is outside `[0, 1]`.
    pub fn new(config: TaxiConfig) -> Result<Self> {
        check_probability("Taxi-v4", "rainy_probability", config.rainy_probability)?;
        check_probability("Taxi-v4", "fickle_probability", config.fickle_probability)?;
        let movements = build_movements();
        let succeed = config.rainy_probability;
        let drift = (1.0 - succeed) / 2.0;
        let mut t = TransitionTable::builder(N_STATES, N_ACTIONS);
        let mut isd = vec![0.0; N_STATES];
        for (s, start) in isd.iter_mut().enumerate() {
            let (row, col, pass, dest) = Taxi::decode(s);
            if pass < IN_TAXI && pass != dest {
                *start = 1.0;
            }
            for action in 0..N_ACTIONS {
                let (mut nrow, mut ncol, mut npass) = (row, col, pass);
                let mut reward = PENALTY_STEP;
                let mut term = false;
                match action {
                    PICKUP => {
                        if pass < IN_TAXI && (row, col) == LOCS[pass] {
                            npass = IN_TAXI;
                        } else {
                            reward = PENALTY_ILLEGAL;
                        }
                    }
                    DROPOFF => {
                        if pass == IN_TAXI && (row, col) == LOCS[dest] {
                            npass = dest;
                            term = true;
                            reward = REWARD_COMPLETE;
                        } else if let (IN_TAXI, Some(i)) = (pass, LOCS.iter().position(|&l| l == (row, col))) {
                            npass = i;
                        } else {
                            reward = PENALTY_ILLEGAL;
                        }
                    }
                    dir => (nrow, ncol) = movements[row][col][dir],
                }
                let next = Taxi::encode(nrow, ncol, npass, dest);
                if config.is_rainy && action < PICKUP {
                    // A blocked move does not drift: all three outcomes stay put (Gymnasium 1.4's recorded P).
                    let moved = (nrow, ncol) != (row, col);
                    let side = |d: usize| {
                        let (r, c) = if moved { movements[row][col][d] } else { (row, col) };
                        Taxi::encode(r, c, npass, dest)
                    };
                    t.push(Outcome { prob: succeed, next_state: next, reward: PENALTY_STEP, terminal: term });
                    t.push(Outcome {
                        prob: drift,
                        next_state: side(LEFT_OF[action]),
                        reward: PENALTY_STEP,
                        terminal: term,
                    });
                    t.push(Outcome {
                        prob: drift,
                        next_state: side(RIGHT_OF[action]),
                        reward: PENALTY_STEP,
                        terminal: term,
                    });
                } else {
                    t.push(Outcome { prob: 1.0, next_state: next, reward, terminal: term });
                }
                t.end_action();
            }
        }
        let total: f64 = isd.iter().sum();
        isd.iter_mut().for_each(|p| *p /= total);
        Ok(Taxi { core: TabularCore::new(t.build()?, isd)?, config, fickle_step: false, movements })
    }

    /// `((row * 5 + col) * 5 + passenger) * 4 + destination` (taxi.py's `encode`). Arguments are not checked:
    /// `row`, `col` and `passenger` must be below 5, `destination` below 4.
    pub fn encode(row: usize, col: usize, passenger: usize, destination: usize) -> usize {
        ((row * 5 + col) * 5 + passenger) * 4 + destination
    }

    /// The inverse of [`Taxi::encode`]: `(row, col, passenger, destination)`.
    pub fn decode(s: usize) -> (usize, usize, usize, usize) {
        (s / 100, (s / 20) % 5, (s / 4) % 5, s % 4)
    }

    /// Gymnasium's `action_mask(state)` as bits: bit `a` is set when action `a` changes the state (a move that is
    /// not blocked, a legal pickup, a dropoff at a stand). States outside `0..500` give 0.
    pub fn action_mask(&self, s: usize) -> u64 {
        if s >= N_STATES {
            return 0;
        }
        let (row, col, pass, _) = Taxi::decode(s);
        let mut mask = 0u64;
        for dir in [SOUTH, NORTH, EAST, WEST] {
            if self.movements[row][col][dir] != (row, col) {
                mask |= 1 << dir;
            }
        }
        if pass < IN_TAXI && (row, col) == LOCS[pass] {
            mask |= 1 << PICKUP;
        }
        if pass == IN_TAXI && LOCS.contains(&(row, col)) {
            mask |= 1 << DROPOFF;
        }
        mask
    }

    /// taxi.py's `MAP` rows (Gymnasium's `desc`, decoded).
    pub fn desc() -> Vec<String> {
        MAP.iter().map(|r| r.to_string()).collect()
    }

    /// The configuration the env was built with.
    pub fn config(&self) -> &TaxiConfig {
        &self.config
    }

    fn grid_shape_impl(&self) -> Option<(usize, usize)> {
        None
    }

    fn state_label_impl(&self, _s: usize) -> Option<char> {
        None
    }
}

tabular_mdp!(Taxi);

impl Env for Taxi {
    type Obs = usize;
    type Action = usize;
    fn observation_space(&self) -> &Space {
        self.core.observation_space()
    }
    fn action_space(&self) -> &Space {
        self.core.action_space()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<(usize, Info)> {
        let s = self.core.reset(seed);
        // taxi.py reset(): categorical_sample(isd), then fickle_step = fickle_passenger and random() < p.
        let p = self.config.fickle_probability;
        self.fickle_step = self.config.fickle_passenger && self.core.rng().random::<f64>() < p;
        Ok((s, Info { prob: Some(1.0), action_mask: Some(self.action_mask(s)), ..Info::default() }))
    }
    fn step(&mut self, action: usize) -> Result<Step<usize>> {
        let prev = self.core.state;
        let o = self.core.step(action)?;
        let mut next = o.next_state;
        if self.fickle_step {
            let (prow, pcol, ppass, pdest) = Taxi::decode(prev);
            let (row, col, pass, _) = Taxi::decode(next);
            if ppass == IN_TAXI && (row, col) != (prow, pcol) {
                // The passenger changes their mind once: a uniform choice among the other three destinations.
                self.fickle_step = false;
                let k = self.core.rng().random_range(0..3);
                let dest = (0..4).filter(|&d| d != pdest).nth(k).unwrap_or(pdest);
                next = Taxi::encode(row, col, pass, dest);
                self.core.state = next;
            }
        }
        Ok(Step {
            obs: next,
            reward: o.reward,
            terminated: o.terminal,
            truncated: false,
            info: Info { prob: Some(o.prob), action_mask: Some(self.action_mask(next)), ..Info::default() },
        })
    }
}
