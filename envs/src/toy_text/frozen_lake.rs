//! FrozenLake-v1 and FrozenLake8x8-v1, as `gymnasium/envs/toy_text/frozen_lake.py` (Gymnasium 1.4).
use rand::Rng;

use super::{TabularCore, check_probability, get_probability, tabular_env, tabular_mdp};
use crate::error::{EnvError, Result};
use crate::mdp::{Outcome, TransitionTable};
use crate::options::Options;
use crate::rng::{from_entropy, seeded};

// Action numbering of frozen_lake.py.
const LEFT: usize = 0;
const DOWN: usize = 1;
const RIGHT: usize = 2;
const UP: usize = 3;

/// Gymnasium's preset maps (`frozen_lake.py`, `MAPS`).
const MAP_4X4: [&str; 4] = ["SFFF", "FHFH", "FFFH", "HFFG"];
const MAP_8X8: [&str; 8] =
    ["SFFFFFFF", "FFFFFFFF", "FFFHFFFF", "FFFFFHFF", "FFFHFFFF", "FHHFFFHF", "FHFFHFHF", "FFFHFFFG"];

/// Largest side of a random map (a bound on memory: the model of a `size` x `size` slippery lake holds
/// `12 * size^2` outcomes).
const MAX_RANDOM_MAP_SIZE: usize = 512;

/// Most boards `generate_random_map` draws before giving up (Gymnasium loops forever; with `p` near 0 or a large
/// `size` a valid board may practically never come).
const MAX_RANDOM_MAP_TRIES: usize = 100_000;

/// One of Gymnasium's preset maps by its `map_name` (`"4x4"` or `"8x8"`).
///
/// ```
/// assert_eq!(bellman_envs::toy_text::named_map("4x4").unwrap()[3], "HFFG");
/// assert!(bellman_envs::toy_text::named_map("5x5").is_err());
/// ```
pub fn named_map(name: &str) -> Result<Vec<String>> {
    match name {
        "4x4" => Ok(MAP_4X4.iter().map(|r| r.to_string()).collect()),
        "8x8" => Ok(MAP_8X8.iter().map(|r| r.to_string()).collect()),
        other => Err(EnvError::BadMap(format!("unknown map_name '{other}': expected 4x4, 8x8 (or random)"))),
    }
}

/// Gymnasium's `is_valid` check: a path of non-hole tiles leads from a start tile to a goal (4-neighbour moves).
///
/// Rows may contain `S`, `F`, `H`, `G`; a ragged map has no path.
///
/// ```
/// use bellman_envs::toy_text::has_path_to_goal;
/// assert!(has_path_to_goal(&["SF", "HG"]));
/// assert!(!has_path_to_goal(&["SH", "HG"]));
/// ```
pub fn has_path_to_goal<S: AsRef<str>>(rows: &[S]) -> bool {
    let grid: Vec<&[u8]> = rows.iter().map(|r| r.as_ref().as_bytes()).collect();
    let nrow = grid.len();
    let Some(ncol) = grid.first().map(|r| r.len()) else { return false };
    if grid.iter().any(|r| r.len() != ncol) {
        return false;
    }
    let mut seen = vec![false; nrow * ncol];
    let mut frontier: Vec<(usize, usize)> = Vec::new();
    for (r, row) in grid.iter().enumerate() {
        for (c, &ch) in row.iter().enumerate() {
            if ch == b'S' {
                seen[r * ncol + c] = true;
                frontier.push((r, c));
            }
        }
    }
    while let Some((r, c)) = frontier.pop() {
        if grid[r][c] == b'G' {
            return true;
        }
        let neighbours = [(r + 1, c), (r, c + 1), (r.wrapping_sub(1), c), (r, c.wrapping_sub(1))];
        for (nr, nc) in neighbours {
            if nr < nrow && nc < ncol && !seen[nr * ncol + nc] && grid[nr][nc] != b'H' {
                seen[nr * ncol + nc] = true;
                frontier.push((nr, nc));
            }
        }
    }
    false
}

/// Gymnasium's `generate_random_map(size, p, seed)`: a `size` x `size` board whose tiles are frozen with
/// probability `p` (else holes), `S` at the top-left, `G` at the bottom-right, redrawn until a path from `S` to `G`
/// exists.
///
/// The draws come from Bellman's generator (PCG-64 seeded by `seed`, OS entropy when `None`), not numpy's, so a
/// seed gives a different (but always the same) board than Gymnasium's. `p > 1` counts as 1 (as Gymnasium's
/// `min(1, p)`). Errors: `size` outside `2..=512` (below 2 Gymnasium would loop forever), `p` not in `(0, 1]`,
/// or no valid board in 100 000 draws.
///
/// ```
/// use bellman_envs::toy_text::{generate_random_map, has_path_to_goal};
/// let map = generate_random_map(6, 0.8, Some(11)).unwrap();
/// assert_eq!(map, generate_random_map(6, 0.8, Some(11)).unwrap());
/// assert!(has_path_to_goal(&map) && map[0].starts_with('S') && map[5].ends_with('G'));
/// ```
pub fn generate_random_map(size: usize, p: f64, seed: Option<u64>) -> Result<Vec<String>> {
    if !(2..=MAX_RANDOM_MAP_SIZE).contains(&size) {
        return Err(EnvError::BadMap(format!(
            "random map size {size} is out of range: expected 2..={MAX_RANDOM_MAP_SIZE}"
        )));
    }
    if p.is_nan() || p <= 0.0 {
        return Err(EnvError::BadMap(format!("random map frozen probability p = {p}: expected a value in (0, 1]")));
    }
    let p = p.min(1.0);
    let mut rng = match seed {
        Some(s) => seeded(s),
        None => from_entropy(),
    };
    let mut board = vec![vec![b'F'; size]; size];
    for _ in 0..MAX_RANDOM_MAP_TRIES {
        for row in board.iter_mut() {
            for cell in row.iter_mut() {
                // numpy's choice(["F", "H"], p=[p, 1-p]): "F" when the uniform draw is below p.
                *cell = if rng.random::<f64>() < p { b'F' } else { b'H' };
            }
        }
        board[0][0] = b'S';
        board[size - 1][size - 1] = b'G';
        let rows: Vec<String> = board.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect();
        if has_path_to_goal(&rows) {
            return Ok(rows);
        }
    }
    Err(EnvError::BadMap(format!(
        "no valid {size}x{size} map with frozen probability {p} in {MAX_RANDOM_MAP_TRIES} draws: raise p or lower size"
    )))
}

/// Which map a [`FrozenLake`] uses (Gymnasium's `desc` / `map_name` arguments).
#[derive(Debug, Clone, PartialEq)]
pub enum FrozenLakeMap {
    /// A preset by name: `"4x4"` or `"8x8"` (Gymnasium's `map_name`).
    Named(String),
    /// Custom rows of `S` (start), `F` (frozen), `H` (hole), `G` (goal) (Gymnasium's `desc`).
    Custom(Vec<String>),
    /// A board from [`generate_random_map`] (Gymnasium's `desc=None, map_name=None`: 8 x 8, `p = 0.8`).
    Random {
        /// Side of the square board.
        size: usize,
        /// Probability that a tile is frozen.
        p: f64,
        /// Seed of the board (OS entropy when `None`).
        seed: Option<u64>,
    },
}

/// The constructor arguments of Gymnasium's `FrozenLakeEnv`.
///
/// ```
/// use bellman_envs::{Mdp, toy_text::{FrozenLake, FrozenLakeConfig, FrozenLakeMap}};
/// let cfg = FrozenLakeConfig {
///     map: FrozenLakeMap::Custom(vec!["SFH".into(), "FFG".into()]),
///     success_rate: 0.8,
///     reward_schedule: [10.0, -1.0, 0.0],
///     ..Default::default()
/// };
/// let env = FrozenLake::new(cfg).unwrap();
/// // From S, "right" reaches F with 0.8, slips up (stays) or down with 0.1 each.
/// let probs: Vec<f64> = env.outcomes(0, 2).iter().map(|o| o.prob).collect();
/// assert_eq!(probs, vec![(1.0 - 0.8) / 2.0, 0.8, (1.0 - 0.8) / 2.0]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenLakeConfig {
    /// The map (default: the 4x4 preset).
    pub map: FrozenLakeMap,
    /// Slippery ice: the intended move happens with `success_rate`, each perpendicular one with
    /// `(1 - success_rate) / 2` (default true).
    pub is_slippery: bool,
    /// Probability of the intended move on slippery ice (default 1/3).
    pub success_rate: f64,
    /// Rewards for entering a goal, a hole, and any other tile (Gymnasium's `reward_schedule`, default `(1, 0, 0)`).
    pub reward_schedule: [f64; 3],
}

impl Default for FrozenLakeConfig {
    fn default() -> Self {
        FrozenLakeConfig {
            map: FrozenLakeMap::Named("4x4".into()),
            is_slippery: true,
            success_rate: 1.0 / 3.0,
            reward_schedule: [1.0, 0.0, 0.0],
        }
    }
}

impl FrozenLakeConfig {
    /// The defaults of `FrozenLake8x8-v1` (map_name `8x8`).
    pub fn eight_by_eight() -> Self {
        FrozenLakeConfig { map: FrozenLakeMap::Named("8x8".into()), ..Default::default() }
    }

    /// Reads the options of [`crate::registry::make_with`] over `base`: `desc`, `map_name` (`4x4`, `8x8`, `random`),
    /// `map_size`, `map_p`, `map_seed` (random maps), `is_slippery`, `success_rate`, `reward_schedule` (`1,0,0`).
    ///
    /// ```
    /// use bellman_envs::{Options, toy_text::{FrozenLakeConfig, FrozenLakeMap}};
    /// let o = Options::parse(["desc=SF,HG", "is_slippery=false"]).unwrap();
    /// let c = FrozenLakeConfig::from_options("FrozenLake-v1", &o, FrozenLakeConfig::default()).unwrap();
    /// assert_eq!(c.map, FrozenLakeMap::Custom(vec!["SF".into(), "HG".into()]));
    /// assert!(!c.is_slippery);
    /// ```
    pub fn from_options(env: &str, o: &Options, base: Self) -> Result<Self> {
        let mut c = base;
        let desc = o.get_rows(env, "desc")?;
        let name = o.get_str("map_name").map(|s| s.to_string());
        let size = o.get_u64(env, "map_size")?;
        let p = o.get_f64(env, "map_p")?;
        let seed = o.get_u64(env, "map_seed")?;
        let random_args = size.is_some() || p.is_some() || seed.is_some();
        let bad = |key: &str, value: String, reason: &str| EnvError::BadOption {
            env: env.into(),
            key: key.into(),
            value,
            reason: reason.into(),
        };
        if let Some(rows) = desc {
            if random_args {
                return Err(bad("desc", rows.join(","), "map_size, map_p and map_seed only apply to random maps"));
            }
            // Gymnasium: a given desc wins over map_name.
            c.map = FrozenLakeMap::Custom(rows);
        } else {
            match name.as_deref() {
                Some("random") | Some("none") | Some("None") => {}
                Some(n @ ("4x4" | "8x8")) => {
                    if random_args {
                        return Err(bad(
                            "map_name",
                            n.into(),
                            "map_size, map_p and map_seed only apply to random maps",
                        ));
                    }
                    c.map = FrozenLakeMap::Named(n.into());
                }
                Some(other) => return Err(bad("map_name", other.into(), "expected 4x4, 8x8 or random")),
                None => {}
            }
            let random = matches!(name.as_deref(), Some("random" | "none" | "None")) || random_args;
            if random {
                let size = size.unwrap_or(8);
                let size = usize::try_from(size).map_err(|_| bad("map_size", size.to_string(), "too large"))?;
                c.map = FrozenLakeMap::Random { size, p: p.unwrap_or(0.8), seed };
            }
        }
        if let Some(v) = o.get_bool(env, "is_slippery")? {
            c.is_slippery = v;
        }
        if let Some(v) = get_probability(env, o, "success_rate")? {
            c.success_rate = v;
        }
        if let Some(v) = o.get_str("reward_schedule") {
            let parts: Vec<f64> = v
                .split([',', '/', ';'])
                .filter_map(|x| x.trim().parse::<f64>().ok().filter(|x| x.is_finite()))
                .collect();
            c.reward_schedule = parts.try_into().map_err(|_| {
                bad("reward_schedule", v.into(), "expected three finite numbers goal,hole,frozen, e.g. 1,0,0")
            })?;
        }
        Ok(c)
    }
}

/// Gymnasium's FrozenLake: cross a frozen lake from `S` to `G` without falling into a hole `H`.
///
/// * Observation: `row * ncols + col`. Actions: 0 left, 1 down, 2 right, 3 up.
/// * Entering `G` or `H` ends the episode with the `reward_schedule` reward (1 for `G` by default); goal and hole
///   states are absorbing self-loops `(1.0, s, 0, true)` in the model, as in Gymnasium's `P`.
/// * Slippery ice: outcomes listed in Gymnasium's order `[(a - 1) % 4, a, (a + 1) % 4]`.
/// * `Info.prob` is Gymnasium's `info["prob"]` (1.0 on reset).
///
/// ```
/// use bellman_envs::{Env, toy_text::{FrozenLake, FrozenLakeConfig}};
/// let mut env = FrozenLake::new(FrozenLakeConfig::eight_by_eight()).unwrap();
/// let (s, info) = env.reset(Some(3)).unwrap();
/// assert_eq!((s, info.prob), (0, Some(1.0)));
/// assert_eq!(env.desc()[7], "FFFHFFFG");
/// ```
#[derive(Debug, Clone)]
pub struct FrozenLake {
    core: TabularCore,
    desc: Vec<String>,
    nrow: usize,
    ncol: usize,
}

/// Checks a map's shape and letters; returns `(nrow, ncol)`.
fn check_map(rows: &[String]) -> Result<(usize, usize)> {
    let nrow = rows.len();
    if nrow == 0 {
        return Err(EnvError::BadMap("the map has no rows".into()));
    }
    let ncol = rows[0].chars().count();
    if ncol == 0 {
        return Err(EnvError::BadMap("the map's first row is empty".into()));
    }
    let (mut starts, mut goals) = (0, 0);
    for (r, row) in rows.iter().enumerate() {
        let len = row.chars().count();
        if len != ncol {
            return Err(EnvError::BadMap(format!(
                "ragged map: row {r} ('{row}') has {len} tiles, row 0 has {ncol}; every row must have the same length"
            )));
        }
        for (c, ch) in row.chars().enumerate() {
            match ch {
                'S' => starts += 1,
                'G' => goals += 1,
                'F' | 'H' => {}
                other => {
                    return Err(EnvError::BadMap(format!(
                        "unknown tile '{other}' at row {r}, column {c}: FrozenLake tiles are S, F, H, G"
                    )));
                }
            }
        }
    }
    if starts == 0 {
        return Err(EnvError::BadMap("the map has no start tile 'S'".into()));
    }
    if goals == 0 {
        return Err(EnvError::BadMap("the map has no goal tile 'G'".into()));
    }
    Ok((nrow, ncol))
}

impl FrozenLake {
    /// Builds the env and its model (Gymnasium's `FrozenLakeEnv.__init__`). Errors: a malformed map
    /// ([`EnvError::BadMap`]: empty, ragged rows, a letter other than `S F H G`, no `S`, no `G`), an unknown
    /// `map_name`, or a `success_rate` outside `[0, 1]`.
    pub fn new(config: FrozenLakeConfig) -> Result<Self> {
        check_probability("FrozenLake", "success_rate", config.success_rate)?;
        if config.reward_schedule.iter().any(|r| !r.is_finite()) {
            return Err(EnvError::BadOption {
                env: "FrozenLake".into(),
                key: "reward_schedule".into(),
                value: format!("{:?}", config.reward_schedule),
                reason: "expected three finite numbers".into(),
            });
        }
        let desc = match &config.map {
            FrozenLakeMap::Named(n) => named_map(n)?,
            FrozenLakeMap::Custom(rows) => rows.clone(),
            FrozenLakeMap::Random { size, p, seed } => generate_random_map(*size, *p, *seed)?,
        };
        let (nrow, ncol) = check_map(&desc)?;
        let grid: Vec<&[u8]> = desc.iter().map(|r| r.as_bytes()).collect();
        let ns = nrow * ncol;
        let success = config.success_rate;
        let fail = (1.0 - success) / 2.0; // frozen_lake.py: fail_rate = (1.0 - success_rate) / 2.0
        let [r_goal, r_hole, r_frozen] = config.reward_schedule;
        let inc = |row: usize, col: usize, a: usize| -> (usize, usize) {
            match a {
                LEFT => (row, col.saturating_sub(1)),
                DOWN => ((row + 1).min(nrow - 1), col),
                RIGHT => (row, (col + 1).min(ncol - 1)),
                UP => (row.saturating_sub(1), col),
                _ => (row, col),
            }
        };
        let outcome = |prob: f64, row: usize, col: usize, a: usize| -> Outcome {
            let (nr, nc) = inc(row, col, a);
            let letter = grid[nr][nc];
            // reward_schedule[b"GHF".index(letter if letter in b"GHF" else b"F")]
            let reward = match letter {
                b'G' => r_goal,
                b'H' => r_hole,
                _ => r_frozen,
            };
            Outcome { prob, next_state: nr * ncol + nc, reward, terminal: letter == b'G' || letter == b'H' }
        };
        let mut t = TransitionTable::builder(ns, 4);
        for (row, line) in grid.iter().enumerate() {
            for (col, &letter) in line.iter().enumerate() {
                let s = row * ncol + col;
                for a in 0..4 {
                    if letter == b'G' || letter == b'H' {
                        t.push(Outcome { prob: 1.0, next_state: s, reward: 0.0, terminal: true });
                    } else if config.is_slippery {
                        for b in [(a + 3) % 4, a, (a + 1) % 4] {
                            t.push(outcome(if b == a { success } else { fail }, row, col, b));
                        }
                    } else {
                        t.push(outcome(1.0, row, col, a));
                    }
                    t.end_action();
                }
            }
        }
        let table = t.build()?;
        // initial_state_distrib = (desc == b"S") / count
        let n_start = desc.iter().flat_map(|r| r.bytes()).filter(|&b| b == b'S').count() as f64;
        let isd: Vec<f64> =
            desc.iter().flat_map(|r| r.bytes()).map(|b| if b == b'S' { 1.0 / n_start } else { 0.0 }).collect();
        Ok(FrozenLake { core: TabularCore::new(table, isd)?, desc, nrow, ncol })
    }

    /// The map rows (Gymnasium's `desc`, decoded).
    pub fn desc(&self) -> &[String] {
        &self.desc
    }

    fn grid_shape_impl(&self) -> Option<(usize, usize)> {
        Some((self.nrow, self.ncol))
    }

    fn state_label_impl(&self, s: usize) -> Option<char> {
        self.desc.get(s / self.ncol).and_then(|r| r.as_bytes().get(s % self.ncol)).map(|&b| b as char)
    }
}

tabular_mdp!(FrozenLake);

tabular_env!(FrozenLake);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mdp;

    #[test]
    fn slippery_probabilities_are_gymnasiums_bits() {
        let env = FrozenLake::new(FrozenLakeConfig::default()).unwrap();
        let p: Vec<f64> = env.outcomes(0, 0).iter().map(|o| o.prob).collect();
        assert_eq!(p, vec![0.33333333333333337, 0.3333333333333333, 0.33333333333333337]);
    }

    #[test]
    fn reward_schedule_applies_to_entered_tiles_only() {
        let cfg = FrozenLakeConfig {
            map: FrozenLakeMap::Custom(vec!["SH".into(), "FG".into()]),
            is_slippery: false,
            reward_schedule: [5.0, -3.0, -0.5],
            ..Default::default()
        };
        let env = FrozenLake::new(cfg).unwrap();
        assert_eq!(env.outcomes(0, RIGHT)[0], Outcome { prob: 1.0, next_state: 1, reward: -3.0, terminal: true });
        assert_eq!(env.outcomes(0, DOWN)[0], Outcome { prob: 1.0, next_state: 2, reward: -0.5, terminal: false });
        // Bumping into the edge re-enters S: the "frozen" reward.
        assert_eq!(env.outcomes(0, UP)[0].reward, -0.5);
        assert_eq!(env.outcomes(2, RIGHT)[0], Outcome { prob: 1.0, next_state: 3, reward: 5.0, terminal: true });
        // Absorbing goal and hole: reward 0 whatever the schedule.
        assert_eq!(env.outcomes(3, LEFT)[0], Outcome { prob: 1.0, next_state: 3, reward: 0.0, terminal: true });
        assert_eq!(env.outcomes(1, LEFT)[0], Outcome { prob: 1.0, next_state: 1, reward: 0.0, terminal: true });
    }

    #[test]
    fn several_starts_share_the_initial_distribution() {
        let cfg =
            FrozenLakeConfig { map: FrozenLakeMap::Custom(vec!["SFS".into(), "FSG".into()]), ..Default::default() };
        let env = FrozenLake::new(cfg).unwrap();
        let third = 1.0 / 3.0;
        assert_eq!(env.initial_distribution(), &[third, 0.0, third, 0.0, third, 0.0]);
    }
}
