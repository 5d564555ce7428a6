//! [`GridWorld`]: grid worlds built from an ASCII map, with walls, terminal cells, teleports and slippery moves;
//! the presets reproduce Sutton and Barto's Example 3.5 (`GridWorld5x5-v0`) and Example 4.1 (`GridWorld4x4-v0`).
//!
//! # Map format
//!
//! One string per row, all of the same length; `(row, col)` from the top-left, state `row * ncols + col`:
//!
//! | char | cell |
//! |---|---|
//! | `.` | open cell |
//! | `#` | wall: cannot be entered (a move into it is a bump) |
//! | `S` | open start cell; with no `S` the episode starts uniformly on every open non-terminal cell |
//! | any other letter or digit | a labelled open cell, whose role comes from the config: a terminal (`terminals`), the source of a teleport (`teleports`), or nothing (e.g. a teleport's target) |
//!
//! Dynamics (actions as FrozenLake: 0 left, 1 down, 2 right, 3 up):
//!
//! * A move to an open cell gives `step_reward`; into a terminal cell, that terminal's reward instead, and the
//!   transition is terminal.
//! * A move off the grid or into a wall stays in place with `bump_reward`.
//! * In a teleport's source cell every action moves to its target with the teleport's reward (no slip).
//! * With `slip > 0` the intended move happens with `1 - slip` and each perpendicular move with `slip / 2`,
//!   listed as FrozenLake's `[(a - 1) % 4, a, (a + 1) % 4]`; with `slip == 0` there is one outcome.
//! * Terminal cells are absorbing self-loops `(1.0, s, 0, terminal)`, like FrozenLake's holes. Walls are states
//!   too (to keep `row * ncols + col`): unreachable, with the same absorbing self-loop and initial probability 0,
//!   so planners give them value 0.
//!
//! ```
//! use bellman_envs::{Env, Mdp, gridworld::{GridWorld, GridWorldConfig, Teleport}};
//! let cfg = GridWorldConfig {
//!     map: vec!["S.#G".into(), "..A.".into(), "a..H".into()],
//!     terminals: vec![('G', 1.0), ('H', -1.0)],
//!     teleports: vec![Teleport { from: 'A', to: 'a', reward: 0.5 }],
//!     step_reward: -0.04,
//!     bump_reward: -0.1,
//!     slip: 0.2,
//! };
//! let mut env = GridWorld::new(cfg).unwrap();
//! assert_eq!(env.reset(Some(1)).unwrap().0, 0);
//! assert_eq!(env.state_label(2), Some('#'));
//! // In A (1, 2) every action jumps to a (2, 0) with +0.5.
//! assert_eq!(env.outcomes(6, 3)[0].next_state, 8);
//! assert_eq!(env.outcomes(6, 3)[0].reward, 0.5);
//! ```
use crate::error::{EnvError, Result};
use crate::mdp::{Outcome, TransitionTable};
use crate::options::Options;
use crate::registry::{EnvSpec, OptionDoc, boxed, boxed_tabular};
use crate::toy_text::{TabularCore, check_probability, get_probability, tabular_env, tabular_mdp};

/// A teleport: any action in the cell labelled `from` moves to the cell labelled `to` with `reward`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Teleport {
    /// Label of the source cell (unique in the map).
    pub from: char,
    /// Label of the target cell (unique in the map).
    pub to: char,
    /// Reward of the jump.
    pub reward: f64,
}

/// The description of a [`GridWorld`] (see the [module docs](self) for the map format and dynamics).
#[derive(Debug, Clone, PartialEq)]
pub struct GridWorldConfig {
    /// Map rows.
    pub map: Vec<String>,
    /// Terminal cells by label, with the reward for entering them.
    pub terminals: Vec<(char, f64)>,
    /// Teleports.
    pub teleports: Vec<Teleport>,
    /// Reward of an ordinary move.
    pub step_reward: f64,
    /// Reward of a move off the grid or into a wall (the agent stays).
    pub bump_reward: f64,
    /// Probability of slipping perpendicular to the intended move (half to each side), in `[0, 1]`.
    pub slip: f64,
}

impl Default for GridWorldConfig {
    /// The `GridWorld4x4-v0` preset.
    fn default() -> Self {
        GridWorldConfig::sutton_barto_4x4()
    }
}

impl GridWorldConfig {
    /// Sutton and Barto (2nd ed.) Example 3.5 / Figure 3.2: a 5 x 5 grid, `A` = (0, 1) -> `A'` = (4, 1) with +10,
    /// `B` = (0, 3) -> `B'` = (2, 3) with +5, an off-grid move stays with -1, every other move 0; no terminal
    /// state (the registry adds a 100-step time limit).
    pub fn sutton_barto_5x5() -> Self {
        GridWorldConfig {
            map: vec![".A.B.".into(), ".....".into(), "...b.".into(), ".....".into(), ".a...".into()],
            terminals: vec![],
            teleports: vec![
                Teleport { from: 'A', to: 'a', reward: 10.0 },
                Teleport { from: 'B', to: 'b', reward: 5.0 },
            ],
            step_reward: 0.0,
            bump_reward: -1.0,
            slip: 0.0,
        }
    }

    /// Sutton and Barto (2nd ed.) Example 4.1 / Figure 4.1: a 4 x 4 grid with terminal corners (0, 0) and (3, 3),
    /// -1 on every transition (into a terminal too), an off-grid move stays (also -1).
    pub fn sutton_barto_4x4() -> Self {
        GridWorldConfig {
            map: vec!["T...".into(), "....".into(), "....".into(), "...T".into()],
            terminals: vec![('T', -1.0)],
            teleports: vec![],
            step_reward: -1.0,
            bump_reward: -1.0,
            slip: 0.0,
        }
    }

    /// Reads options over `base`: `map` (rows separated by `,`), `terminals` (`G:1,H:-1`), `teleports`
    /// (`A>a:10,B>b:5`; `none` for no teleports), `step_reward`, `bump_reward`, `slip`.
    ///
    /// ```
    /// use bellman_envs::{Options, gridworld::GridWorldConfig};
    /// let o = Options::parse(["map=S..,.#G", "terminals=G:1", "teleports=none", "slip=0.1"]).unwrap();
    /// let c = GridWorldConfig::from_options("GridWorld4x4-v0", &o, GridWorldConfig::default()).unwrap();
    /// assert_eq!((c.map.len(), c.terminals.clone(), c.slip), (2, vec![('G', 1.0)], 0.1));
    /// ```
    pub fn from_options(env: &str, o: &Options, base: Self) -> Result<Self> {
        let mut c = base;
        let bad = |key: &str, value: &str, reason: &str| EnvError::BadOption {
            env: env.into(),
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        };
        if let Some(rows) = o.get_rows(env, "map")? {
            c.map = rows;
        }
        if let Some(v) = o.get_str("terminals") {
            c.terminals = parse_list(v, |item| {
                let (l, r) = item.split_once(':')?;
                Some((single_char(l)?, parse_finite(r)?))
            })
            .ok_or_else(|| bad("terminals", v, "expected LABEL:REWARD items separated by ',', e.g. G:1,H:-1"))?;
        }
        if let Some(v) = o.get_str("teleports") {
            c.teleports = parse_list(v, |item| {
                let (from, rest) = item.split_once('>')?;
                let (to, r) = rest.split_once(':')?;
                Some(Teleport { from: single_char(from)?, to: single_char(to)?, reward: parse_finite(r)? })
            })
            .ok_or_else(|| bad("teleports", v, "expected FROM>TO:REWARD items separated by ',', e.g. A>a:10"))?;
        }
        if let Some(v) = o.get_f64(env, "step_reward")? {
            c.step_reward = v;
        }
        if let Some(v) = o.get_f64(env, "bump_reward")? {
            c.bump_reward = v;
        }
        if let Some(v) = get_probability(env, o, "slip")? {
            c.slip = v;
        }
        Ok(c)
    }
}

fn single_char(s: &str) -> Option<char> {
    let mut it = s.trim().chars();
    let ch = it.next()?;
    it.next().is_none().then_some(ch)
}

fn parse_finite(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Parses `a,b,c` with `f` (`none` or an empty string is the empty list); `None` if any item fails.
fn parse_list<T>(v: &str, f: impl Fn(&str) -> Option<T>) -> Option<Vec<T>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    v.split([',', ';']).map(|item| f(item.trim())).collect()
}

/// A grid world from an ASCII map (see the [module docs](self)): implements [`crate::Env`] and [`crate::Mdp`].
#[derive(Debug, Clone)]
pub struct GridWorld {
    core: TabularCore,
    config: GridWorldConfig,
    nrow: usize,
    ncol: usize,
    cells: Vec<char>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Open,
    Wall,
    Terminal(f64),
    Teleport { to: usize, reward: f64 },
}

impl GridWorld {
    /// Builds the world and its model. Errors ([`EnvError::BadMap`]): an empty or ragged map, a character that is
    /// neither `.`, `#`, `S` nor a letter or digit, a terminal or teleport label missing from the map (or used for
    /// more than one cell where one is needed), a label that is both terminal and teleport, no cell to start on;
    /// ([`EnvError::BadOption`]) `slip` outside `[0, 1]` or a non-finite reward.
    pub fn new(config: GridWorldConfig) -> Result<Self> {
        check_probability("GridWorld", "slip", config.slip)?;
        let rewards = [config.step_reward, config.bump_reward]
            .into_iter()
            .chain(config.terminals.iter().map(|t| t.1))
            .chain(config.teleports.iter().map(|t| t.reward));
        for r in rewards {
            if !r.is_finite() {
                return Err(EnvError::BadOption {
                    env: "GridWorld".into(),
                    key: "reward".into(),
                    value: r.to_string(),
                    reason: "rewards must be finite".into(),
                });
            }
        }
        let map = &config.map;
        let nrow = map.len();
        let ncol = map.first().map(|r| r.chars().count()).unwrap_or(0);
        if nrow == 0 || ncol == 0 {
            return Err(EnvError::BadMap("the grid world map is empty".into()));
        }
        let mut cells = Vec::with_capacity(nrow * ncol);
        for (r, row) in map.iter().enumerate() {
            let len = row.chars().count();
            if len != ncol {
                return Err(EnvError::BadMap(format!(
                    "ragged map: row {r} ('{row}') has {len} cells, row 0 has {ncol}; every row must have the same length"
                )));
            }
            for (c, ch) in row.chars().enumerate() {
                if !(ch == '.' || ch == '#' || ch.is_ascii_alphanumeric()) {
                    return Err(EnvError::BadMap(format!(
                        "unknown cell '{ch}' at row {r}, column {c}: expected '.', '#', 'S' or a letter/digit label"
                    )));
                }
                cells.push(ch);
            }
        }
        let find_all = |label: char| -> Vec<usize> {
            cells.iter().enumerate().filter(|(_, c)| **c == label).map(|(i, _)| i).collect()
        };
        let find_one = |label: char, role: &str| -> Result<usize> {
            match find_all(label)[..] {
                [i] => Ok(i),
                [] => Err(EnvError::BadMap(format!("{role} label '{label}' does not appear in the map"))),
                _ => Err(EnvError::BadMap(format!("{role} label '{label}' appears more than once in the map"))),
            }
        };
        let mut kinds: Vec<Cell> = cells.iter().map(|&c| if c == '#' { Cell::Wall } else { Cell::Open }).collect();
        for &(label, reward) in &config.terminals {
            if matches!(label, '.' | '#' | 'S') {
                return Err(EnvError::BadMap(format!("'{label}' cannot label a terminal cell")));
            }
            let at = find_all(label);
            if at.is_empty() {
                return Err(EnvError::BadMap(format!("terminal label '{label}' does not appear in the map")));
            }
            for i in at {
                kinds[i] = Cell::Terminal(reward);
            }
        }
        for tp in &config.teleports {
            if matches!(tp.from, '.' | '#' | 'S') || matches!(tp.to, '.' | '#') {
                return Err(EnvError::BadMap(format!("'{}' > '{}' cannot be a teleport", tp.from, tp.to)));
            }
            if config.terminals.iter().any(|t| t.0 == tp.from) {
                return Err(EnvError::BadMap(format!("label '{}' is both a terminal and a teleport source", tp.from)));
            }
            let from = find_one(tp.from, "teleport source")?;
            let to = find_one(tp.to, "teleport target")?;
            kinds[from] = Cell::Teleport { to, reward: tp.reward };
        }
        let ns = nrow * ncol;
        let slip = config.slip;
        let side = slip / 2.0;
        let target = |row: usize, col: usize, a: usize| -> Option<usize> {
            // FrozenLake's action numbering: 0 left, 1 down, 2 right, 3 up; None when off the grid.
            let (nr, nc) = match a {
                0 => (Some(row), col.checked_sub(1)),
                1 => (Some(row + 1).filter(|&r| r < nrow), Some(col)),
                2 => (Some(row), Some(col + 1).filter(|&c| c < ncol)),
                _ => (row.checked_sub(1), Some(col)),
            };
            Some(nr? * ncol + nc?)
        };
        let outcome = |prob: f64, s: usize, a: usize| -> Outcome {
            match target(s / ncol, s % ncol, a) {
                Some(n) => match kinds[n] {
                    Cell::Wall => Outcome { prob, next_state: s, reward: config.bump_reward, terminal: false },
                    Cell::Terminal(r) => Outcome { prob, next_state: n, reward: r, terminal: true },
                    _ => Outcome { prob, next_state: n, reward: config.step_reward, terminal: false },
                },
                None => Outcome { prob, next_state: s, reward: config.bump_reward, terminal: false },
            }
        };
        let mut t = TransitionTable::builder(ns, 4);
        for (s, kind) in kinds.iter().enumerate() {
            for a in 0..4 {
                match *kind {
                    Cell::Wall | Cell::Terminal(_) => {
                        t.push(Outcome { prob: 1.0, next_state: s, reward: 0.0, terminal: true });
                    }
                    Cell::Teleport { to, reward } => {
                        let terminal = matches!(kinds[to], Cell::Terminal(_));
                        t.push(Outcome { prob: 1.0, next_state: to, reward, terminal });
                    }
                    Cell::Open if slip > 0.0 => {
                        for b in [(a + 3) % 4, a, (a + 1) % 4] {
                            t.push(outcome(if b == a { 1.0 - slip } else { side }, s, b));
                        }
                    }
                    Cell::Open => t.push(outcome(1.0, s, a)),
                }
                t.end_action();
            }
        }
        let table = t.build()?;
        let starts: Vec<usize> = find_all('S');
        let start_cells: Vec<usize> = if starts.is_empty() {
            (0..ns).filter(|&i| matches!(kinds[i], Cell::Open | Cell::Teleport { .. })).collect()
        } else {
            starts
        };
        if start_cells.is_empty() {
            return Err(EnvError::BadMap("no cell to start on: every cell is a wall or terminal".into()));
        }
        let mut isd = vec![0.0; ns];
        let p = 1.0 / start_cells.len() as f64;
        for i in start_cells {
            isd[i] = p;
        }
        Ok(GridWorld { core: TabularCore::new(table, isd)?, config, nrow, ncol, cells })
    }

    /// The configuration the world was built with.
    pub fn config(&self) -> &GridWorldConfig {
        &self.config
    }

    fn grid_shape_impl(&self) -> Option<(usize, usize)> {
        Some((self.nrow, self.ncol))
    }

    /// The map character of the cell.
    fn state_label_impl(&self, s: usize) -> Option<char> {
        self.cells.get(s).copied()
    }
}

tabular_mdp!(GridWorld);

tabular_env!(GridWorld);

const GRIDWORLD_OPTIONS: &[OptionDoc] = &[
    OptionDoc {
        key: "map",
        default: "(the preset's)",
        help: "map rows separated by ',': '.' open, '#' wall, 'S' start, letters/digits are labels",
    },
    OptionDoc {
        key: "terminals",
        default: "(the preset's)",
        help: "terminal labels with their entry reward, e.g. G:1,H:-1 (none for no terminal)",
    },
    OptionDoc {
        key: "teleports",
        default: "(the preset's)",
        help: "teleports FROM>TO:REWARD, e.g. A>a:10,B>b:5 (none for no teleport)",
    },
    OptionDoc { key: "step_reward", default: "(the preset's)", help: "reward of an ordinary move" },
    OptionDoc {
        key: "bump_reward",
        default: "(the preset's)",
        help: "reward of a move off the grid or into a wall (the agent stays)",
    },
    OptionDoc { key: "slip", default: "0", help: "probability of slipping perpendicular (half each side), in [0, 1]" },
];

fn make(id: &'static str, base: fn() -> GridWorldConfig, o: &Options) -> Result<GridWorld> {
    GridWorld::new(GridWorldConfig::from_options(id, o, base())?)
}

pub(crate) fn specs() -> Vec<EnvSpec> {
    vec![
        EnvSpec {
            id: "GridWorld5x5-v0",
            // No terminal state in Example 3.5: episodes need a limit.
            max_episode_steps: Some(100),
            reward_threshold: None,
            options: GRIDWORLD_OPTIONS,
            make: |o, l| Ok(boxed(make("GridWorld5x5-v0", GridWorldConfig::sutton_barto_5x5, o)?, l)),
            make_tabular: Some(|o, l| {
                Ok(boxed_tabular(make("GridWorld5x5-v0", GridWorldConfig::sutton_barto_5x5, o)?, l))
            }),
        },
        EnvSpec {
            id: "GridWorld4x4-v0",
            // A safety cap for policies that never reach a corner; Example 4.1 itself has none.
            max_episode_steps: Some(100),
            reward_threshold: None,
            options: GRIDWORLD_OPTIONS,
            make: |o, l| Ok(boxed(make("GridWorld4x4-v0", GridWorldConfig::sutton_barto_4x4, o)?, l)),
            make_tabular: Some(|o, l| {
                Ok(boxed_tabular(make("GridWorld4x4-v0", GridWorldConfig::sutton_barto_4x4, o)?, l))
            }),
        },
    ]
}
