//! `MountainCarContinuous-v0`: gymnasium/envs/classic_control/continuous_mountain_car.py (gymnasium 1.4), after
//! Moore (1990), with the goal at 0.45 from Arnaud de Broissia's version.
//!
//! Precision: gymnasium stores this env's state as **float32** after every step, and numpy 2 (NEP 50) evaluates
//! `float32 op python-float` in float32. This port emulates that (the recipe in the fixture's `notes.dynamics`),
//! so its trajectories match gymnasium's bit for bit; a plain f64 port drifts by ~1e-7 relative per step.
use super::mountain_car::{MAX_POSITION, MAX_SPEED, MIN_POSITION, RESET_BOUNDS};
use super::{NEEDS_RESET, ResetBounds, bad_option, opt_f64, reseed, uniform};
use crate::env::{Env, Info, Step, clip_continuous};
use crate::error::Result;
use crate::options::Options;
use crate::rng::EnvRng;
use crate::space::{BoxSpace, Space};

pub(crate) const ID: &str = "MountainCarContinuous-v0";

// Constants of continuous_mountain_car.py's `__init__` (gymnasium 1.4).
const MIN_ACTION: f32 = -1.0;
const MAX_ACTION: f32 = 1.0;
/// "was 0.5 in gymnasium, 0.45 in Arnaud de Broissia's version" (continuous_mountain_car.py).
const GOAL_POSITION: f64 = 0.45;
const POWER: f64 = 0.0015;
/// The `0.0025` of `velocity += force * power - 0.0025 * cos(3 * position)`.
const GRAVITY: f64 = 0.0025;

/// Options of [`ContinuousMountainCar`] (gymnasium's `gym.make("MountainCarContinuous-v0", ...)` keyword
/// arguments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContinuousMountainCarConfig {
    /// `goal_velocity`: the episode terminates when `position >= 0.45` and `velocity >= goal_velocity` (default 0).
    pub goal_velocity: f64,
}

impl Default for ContinuousMountainCarConfig {
    fn default() -> Self {
        ContinuousMountainCarConfig { goal_velocity: 0.0 }
    }
}

/// Mountain car with a continuous force (gymnasium's `Continuous_MountainCarEnv`).
///
/// * State `[position, velocity]`; observation `f32(state)`.
/// * Action `[force]`: finite values outside `[-1, 1]` are clipped for the dynamics; NaN is an error.
/// * Reward `-0.1 * a^2` per step with the **unclipped** action `a` (as gymnasium), plus 100 on reaching the goal
///   (`position >= 0.45` and `velocity >= goal_velocity`), which terminates.
/// * Reset: position uniform in `[-0.6, -0.4)` (or [`ResetBounds`]), velocity 0.
///
/// The state is kept as gymnasium keeps it: float64 right after a reset (or [`ContinuousMountainCar::set_state`]),
/// float32 after every step (or [`ContinuousMountainCar::set_state_f32`]); the arithmetic of a step depends on
/// which.
///
/// ```
/// use bellman_envs::{Env, classic_control::ContinuousMountainCar};
/// let mut env = ContinuousMountainCar::new();
/// env.reset(Some(0)).unwrap();
/// let s = env.step([2.0]).unwrap(); // pushes with force 1, pays for 2
/// assert!((s.reward + 0.4).abs() < 1e-12);
/// assert!(env.step([f32::NAN]).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct ContinuousMountainCar {
    config: ContinuousMountainCarConfig,
    state: [f64; 2],
    state_is_f32: bool,
    rng: Option<EnvRng>,
    needs_reset: bool,
    observation_space: Space,
    action_space: Space,
}

impl Default for ContinuousMountainCar {
    fn default() -> Self {
        Self::new()
    }
}

impl ContinuousMountainCar {
    /// MountainCarContinuous with gymnasium's defaults.
    pub fn new() -> Self {
        ContinuousMountainCar {
            config: ContinuousMountainCarConfig::default(),
            state: [0.0; 2],
            state_is_f32: false,
            rng: None,
            needs_reset: true,
            observation_space: Space::Box(BoxSpace::from_constants(
                vec![MIN_POSITION as f32, -MAX_SPEED as f32],
                vec![MAX_POSITION as f32, MAX_SPEED as f32],
            )),
            action_space: Space::Box(BoxSpace::from_constants(vec![MIN_ACTION], vec![MAX_ACTION])),
        }
    }

    /// MountainCarContinuous with options; errors when `goal_velocity` is not finite.
    pub fn with_config(config: ContinuousMountainCarConfig) -> Result<Self> {
        if !config.goal_velocity.is_finite() {
            return Err(bad_option(ID, "goal_velocity", config.goal_velocity, "a finite number"));
        }
        Ok(ContinuousMountainCar { config, ..Self::new() })
    }

    /// MountainCarContinuous from registry options (`goal_velocity=0.01`).
    pub fn from_options(opts: &Options) -> Result<Self> {
        Self::with_config(ContinuousMountainCarConfig { goal_velocity: opt_f64(opts, ID, "goal_velocity", 0.0)? })
    }

    /// The options in use.
    pub fn config(&self) -> ContinuousMountainCarConfig {
        self.config
    }

    /// Resets with the position uniform in `[bounds.low, bounds.high)` and velocity 0 (gymnasium's
    /// `reset(options={"low": .., "high": ..})`); errors when a bound is not finite or `low > high`.
    pub fn reset_with(&mut self, seed: Option<u64>, bounds: ResetBounds) -> Result<([f32; 2], Info)> {
        let b = bounds.validate(ID)?;
        let rng = reseed(&mut self.rng, seed);
        let position = uniform(rng, b.low, b.high);
        self.set_state([position, 0.0]);
        Ok((self.obs(), Info::default()))
    }

    /// The internal state `[position, velocity]` (gymnasium's `env.unwrapped.state`), widened to f64, for tests and
    /// parity replays.
    pub fn state(&self) -> [f64; 2] {
        self.state
    }

    /// True when the state is float32, as gymnasium's is after a step.
    pub fn state_is_f32(&self) -> bool {
        self.state_is_f32
    }

    /// Sets a **float64** state (as gymnasium's reset makes, or `env.unwrapped.state = np.array([p, v])`), for tests
    /// and parity replays, and arms the env for stepping.
    pub fn set_state(&mut self, state: [f64; 2]) {
        self.state = state;
        self.state_is_f32 = false;
        self.needs_reset = false;
    }

    /// Sets a **float32** state (as gymnasium holds after a step), for tests and parity replays, and arms the env
    /// for stepping.
    pub fn set_state_f32(&mut self, state: [f32; 2]) {
        self.state = state.map(f64::from);
        self.state_is_f32 = true;
        self.needs_reset = false;
    }

    /// The observation of the current state, `f32(state)`.
    pub fn obs(&self) -> [f32; 2] {
        self.state.map(|v| v as f32)
    }

    /// One step of gymnasium's dynamics on a float32 state, in numpy 2's float32 arithmetic. `dv` is the velocity
    /// change, already rounded as numpy rounds it. Returns the new state and `terminated`.
    fn step_f32(&self, dv: f32) -> ([f32; 2], bool) {
        let (min_p, max_p, max_v) = (MIN_POSITION as f32, MAX_POSITION as f32, MAX_SPEED as f32);
        let mut position = self.state[0] as f32;
        let mut velocity = (self.state[1] as f32) + dv;
        // The clamps and comparisons against python floats happen in float32 (NEP 50 weak scalars); gymnasium's
        // `if v > max: v = max` pairs are clamps (no NaN reaches them).
        velocity = velocity.clamp(-max_v, max_v);
        position += velocity;
        position = position.clamp(min_p, max_p);
        if position == min_p && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= GOAL_POSITION as f32 && velocity >= self.config.goal_velocity as f32;
        ([position, velocity], terminated)
    }

    /// The same on the float64 state of a fresh reset; the result is stored as float32 like gymnasium's.
    fn step_f64(&self, dv: f64) -> ([f32; 2], bool) {
        let [mut position, mut velocity] = self.state;
        velocity += dv;
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED);
        position += velocity;
        position = position.clamp(MIN_POSITION, MAX_POSITION);
        if position == MIN_POSITION && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= GOAL_POSITION && velocity >= self.config.goal_velocity;
        ([position as f32, velocity as f32], terminated)
    }
}

impl Env for ContinuousMountainCar {
    type Obs = [f32; 2];
    type Action = [f32; 1];

    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 2], Info)> {
        self.reset_with(seed, RESET_BOUNDS)
    }

    fn step(&mut self, action: [f32; 1]) -> Result<Step<[f32; 2]>> {
        if self.needs_reset {
            return Err(NEEDS_RESET);
        }
        // NaN is an error; `force = min(max(a, -1), 1)` is the clipped action.
        let [force] = clip_continuous(action, &self.action_space)?;
        let a = action[0];
        // `0.0025 * math.cos(3 * position)`: `3 * position` is a float32 product when the state is float32.
        let three_p = if self.state_is_f32 { f64::from(3.0 * self.state[0] as f32) } else { 3.0 * self.state[0] };
        let c = GRAVITY * three_p.cos();
        // `force * power - c`: float32 arithmetic when `force` is the float32 action (|a| <= 1), python-float
        // arithmetic when max/min returned the python float bound.
        let in_bounds = force == a;
        let dv32 = (force * POWER as f32) - c as f32;
        let dv64 = f64::from(force) * POWER - c;
        let (state, terminated) = match (self.state_is_f32, in_bounds) {
            (true, true) => self.step_f32(dv32),
            (true, false) => self.step_f32(dv64 as f32),
            (false, true) => self.step_f64(f64::from(dv32)),
            (false, false) => self.step_f64(dv64),
        };
        self.set_state_f32(state);
        // `reward = 100 if terminated else 0; reward -= math.pow(action[0], 2) * 0.1`, with the UNCLIPPED action
        // (in f64: the square of a float32 is exact).
        let a = f64::from(a);
        let reward = (if terminated { 100.0 } else { 0.0 }) - a * a * 0.1;
        self.needs_reset = terminated;
        Ok(Step { obs: state, reward, terminated, truncated: false, info: Info::default() })
    }
}
