//! `MountainCar-v0`: gymnasium/envs/classic_control/mountain_car.py (gymnasium 1.4), after Moore (1990),
//! "Efficient memory-based learning for robot control", PhD thesis, University of Cambridge.
use super::{NEEDS_RESET, ResetBounds, bad_option, opt_f64, reseed, uniform};
use crate::env::{Env, Info, Step, check_discrete};
use crate::error::Result;
use crate::options::Options;
use crate::rng::EnvRng;
use crate::space::{BoxSpace, Space};

pub(crate) const ID: &str = "MountainCar-v0";

// Constants of mountain_car.py's `__init__` (gymnasium 1.4).
pub(crate) const MIN_POSITION: f64 = -1.2;
pub(crate) const MAX_POSITION: f64 = 0.6;
pub(crate) const MAX_SPEED: f64 = 0.07;
pub(crate) const GOAL_POSITION: f64 = 0.5;
const FORCE: f64 = 0.001;
const GRAVITY: f64 = 0.0025;
/// Default reset bounds of the position: `uniform(-0.6, -0.4)`, velocity 0.
pub(crate) const RESET_BOUNDS: ResetBounds = ResetBounds { low: -0.6, high: -0.4 };

/// Options of [`MountainCar`] (gymnasium's `gym.make("MountainCar-v0", ...)` keyword arguments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MountainCarConfig {
    /// `goal_velocity`: the episode terminates when `position >= 0.5` and `velocity >= goal_velocity` (default 0).
    pub goal_velocity: f64,
}

impl Default for MountainCarConfig {
    fn default() -> Self {
        MountainCarConfig { goal_velocity: 0.0 }
    }
}

/// An under-powered car in a valley that must rock back and forth to reach the flag (gymnasium's
/// `MountainCarEnv`).
///
/// * State `[position, velocity]` in f64; observation `f32(state)`.
/// * Actions: 0 accelerate left, 1 do nothing, 2 accelerate right.
/// * Reward -1 per step; terminates at `position >= 0.5` with `velocity >= goal_velocity`.
/// * Reset: position uniform in `[-0.6, -0.4)` (or [`ResetBounds`] with [`MountainCar::reset_with`]), velocity 0.
///
/// ```
/// use bellman_envs::{Env, classic_control::MountainCar};
/// let mut env = MountainCar::new();
/// let (obs, _) = env.reset(Some(0)).unwrap();
/// assert!((-0.6..=-0.4).contains(&obs[0]) && obs[1] == 0.0);
/// assert_eq!(env.step(2).unwrap().reward, -1.0);
/// ```
#[derive(Debug, Clone)]
pub struct MountainCar {
    config: MountainCarConfig,
    state: [f64; 2],
    rng: Option<EnvRng>,
    needs_reset: bool,
    observation_space: Space,
    action_space: Space,
}

impl Default for MountainCar {
    fn default() -> Self {
        Self::new()
    }
}

impl MountainCar {
    /// MountainCar with gymnasium's defaults.
    pub fn new() -> Self {
        MountainCar {
            config: MountainCarConfig::default(),
            state: [0.0; 2],
            rng: None,
            needs_reset: true,
            observation_space: Space::Box(BoxSpace::from_constants(
                vec![MIN_POSITION as f32, -MAX_SPEED as f32],
                vec![MAX_POSITION as f32, MAX_SPEED as f32],
            )),
            action_space: Space::Discrete(3),
        }
    }

    /// MountainCar with options; errors when `goal_velocity` is not finite.
    pub fn with_config(config: MountainCarConfig) -> Result<Self> {
        if !config.goal_velocity.is_finite() {
            return Err(bad_option(ID, "goal_velocity", config.goal_velocity, "a finite number"));
        }
        Ok(MountainCar { config, ..Self::new() })
    }

    /// MountainCar from registry options (`goal_velocity=0.01`).
    pub fn from_options(opts: &Options) -> Result<Self> {
        Self::with_config(MountainCarConfig { goal_velocity: opt_f64(opts, ID, "goal_velocity", 0.0)? })
    }

    /// The options in use.
    pub fn config(&self) -> MountainCarConfig {
        self.config
    }

    /// Resets with the position uniform in `[bounds.low, bounds.high)` and velocity 0 (gymnasium's
    /// `reset(options={"low": .., "high": ..})`); errors when a bound is not finite or `low > high`.
    pub fn reset_with(&mut self, seed: Option<u64>, bounds: ResetBounds) -> Result<([f32; 2], Info)> {
        let b = bounds.validate(ID)?;
        let rng = reseed(&mut self.rng, seed);
        self.state = [uniform(rng, b.low, b.high), 0.0];
        self.needs_reset = false;
        Ok((self.obs(), Info::default()))
    }

    /// The internal state `[position, velocity]` (gymnasium's `env.unwrapped.state`), for tests and parity replays.
    pub fn state(&self) -> [f64; 2] {
        self.state
    }

    /// Overwrites the internal state, for tests and parity replays, and arms the env for stepping.
    pub fn set_state(&mut self, state: [f64; 2]) {
        self.state = state;
        self.needs_reset = false;
    }

    /// The observation of the current state, `f32(state)`.
    pub fn obs(&self) -> [f32; 2] {
        self.state.map(|v| v as f32)
    }
}

impl Env for MountainCar {
    type Obs = [f32; 2];
    type Action = usize;

    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 2], Info)> {
        self.reset_with(seed, RESET_BOUNDS)
    }

    fn step(&mut self, action: usize) -> Result<Step<[f32; 2]>> {
        if self.needs_reset {
            return Err(NEEDS_RESET);
        }
        check_discrete(action, &self.action_space)?;
        let [mut position, mut velocity] = self.state;
        // `velocity += (action - 1) * force + cos(3 * position) * (-gravity)`: the right side is summed first.
        velocity += (action as f64 - 1.0) * FORCE + (3.0 * position).cos() * (-GRAVITY);
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED);
        position += velocity;
        position = position.clamp(MIN_POSITION, MAX_POSITION);
        if position == MIN_POSITION && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= GOAL_POSITION && velocity >= self.config.goal_velocity;
        self.state = [position, velocity];
        self.needs_reset = terminated;
        Ok(Step { obs: self.obs(), reward: -1.0, terminated, truncated: false, info: Info::default() })
    }
}
