//! `Pendulum-v1`: gymnasium/envs/classic_control/pendulum.py (gymnasium 1.4), the classic inverted-pendulum
//! swing-up problem.
use std::f64::consts::PI;

use super::{NEEDS_RESET, bad_option, opt_f64, pow2, pow2_f32, reseed, uniform};
use crate::env::{Env, Info, Step, clip_continuous};
use crate::error::Result;
use crate::options::Options;
use crate::rng::EnvRng;
use crate::space::{BoxSpace, Space};

pub(crate) const ID: &str = "Pendulum-v1";

// Constants of pendulum.py's `__init__` (gymnasium 1.4).
const MAX_SPEED: f64 = 8.0;
const MAX_TORQUE: f32 = 2.0;
const DT: f64 = 0.05;
const M: f64 = 1.0;
const L: f64 = 1.0;
/// pendulum.py's `DEFAULT_X = np.pi` and `DEFAULT_Y = 1.0`: the reset bounds of theta and theta_dot.
const DEFAULT_X: f64 = PI;
const DEFAULT_Y: f64 = 1.0;

/// Options of [`Pendulum`] (gymnasium's `gym.make("Pendulum-v1", ...)` keyword arguments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PendulumConfig {
    /// `g`: the acceleration of gravity in m/s^2 (default 10.0).
    pub g: f64,
}

impl Default for PendulumConfig {
    fn default() -> Self {
        PendulumConfig { g: 10.0 }
    }
}

/// Reset options of [`Pendulum::reset_with`] (gymnasium's `reset(options={"x_init": .., "y_init": ..})`): theta is
/// drawn uniform in `[-x_init, x_init)` and theta_dot in `[-y_init, y_init)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PendulumResetOptions {
    /// Bound of the initial angle (default pi).
    pub x_init: f64,
    /// Bound of the initial angular velocity (default 1.0).
    pub y_init: f64,
}

impl Default for PendulumResetOptions {
    fn default() -> Self {
        PendulumResetOptions { x_init: DEFAULT_X, y_init: DEFAULT_Y }
    }
}

/// An inverted pendulum to swing up and hold upright with a limited torque (gymnasium's `PendulumEnv`).
///
/// * State `[theta, theta_dot]` in f64 (theta is not wrapped); observation `f32([cos theta, sin theta,
///   theta_dot])`.
/// * Action `[torque]`: clipped to `[-2, 2]` (also for the reward); NaN is an error.
/// * Reward `-(angle_normalize(theta)^2 + 0.1 theta_dot^2 + 0.001 u^2)` from the state before the step; never
///   terminates (the registry's time limit truncates at 200 steps).
/// * Reset: theta uniform in `[-pi, pi)`, theta_dot in `[-1, 1)` (or [`PendulumResetOptions`]).
///
/// ```
/// use bellman_envs::{Env, classic_control::Pendulum};
/// let mut env = Pendulum::new();
/// env.reset(Some(0)).unwrap();
/// env.set_state([0.0, 0.0]);
/// let s = env.step([5.0]).unwrap(); // clipped to 2
/// assert!((s.reward + 0.004).abs() < 1e-9);
/// ```
#[derive(Debug, Clone)]
pub struct Pendulum {
    config: PendulumConfig,
    state: [f64; 2],
    rng: Option<EnvRng>,
    needs_reset: bool,
    observation_space: Space,
    action_space: Space,
}

impl Default for Pendulum {
    fn default() -> Self {
        Self::new()
    }
}

impl Pendulum {
    /// Pendulum with gymnasium's defaults.
    pub fn new() -> Self {
        let high = [1.0, 1.0, MAX_SPEED as f32];
        Pendulum {
            config: PendulumConfig::default(),
            state: [0.0; 2],
            rng: None,
            needs_reset: true,
            observation_space: Space::Box(BoxSpace::symmetric(&high)),
            action_space: Space::Box(BoxSpace::from_constants(vec![-MAX_TORQUE], vec![MAX_TORQUE])),
        }
    }

    /// Pendulum with options; errors when `g` is not finite.
    pub fn with_config(config: PendulumConfig) -> Result<Self> {
        if !config.g.is_finite() {
            return Err(bad_option(ID, "g", config.g, "a finite number"));
        }
        Ok(Pendulum { config, ..Self::new() })
    }

    /// Pendulum from registry options (`g=9.81`).
    pub fn from_options(opts: &Options) -> Result<Self> {
        Self::with_config(PendulumConfig { g: opt_f64(opts, ID, "g", 10.0)? })
    }

    /// The options in use.
    pub fn config(&self) -> PendulumConfig {
        self.config
    }

    /// Resets with theta uniform in `[-x_init, x_init)` and theta_dot in `[-y_init, y_init)`; errors when a bound is
    /// not finite or negative (gymnasium draws from `uniform(-high, high)`, which needs `high >= 0`).
    pub fn reset_with(&mut self, seed: Option<u64>, options: PendulumResetOptions) -> Result<([f32; 3], Info)> {
        for (key, v) in [("x_init", options.x_init), ("y_init", options.y_init)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad_option(ID, key, v, "a finite number >= 0"));
            }
        }
        let rng = reseed(&mut self.rng, seed);
        let theta = uniform(rng, -options.x_init, options.x_init);
        let theta_dot = uniform(rng, -options.y_init, options.y_init);
        self.state = [theta, theta_dot];
        self.needs_reset = false;
        Ok((self.obs(), Info::default()))
    }

    /// The internal state `[theta, theta_dot]` (gymnasium's `env.unwrapped.state`), for tests and parity replays.
    pub fn state(&self) -> [f64; 2] {
        self.state
    }

    /// Overwrites the internal state, for tests and parity replays, and arms the env for stepping.
    pub fn set_state(&mut self, state: [f64; 2]) {
        self.state = state;
        self.needs_reset = false;
    }

    /// The observation of the current state: `f32([cos theta, sin theta, theta_dot])`.
    pub fn obs(&self) -> [f32; 3] {
        let [th, thdot] = self.state;
        [th.cos() as f32, th.sin() as f32, thdot as f32]
    }
}

/// pendulum.py's `angle_normalize(x) = ((x + pi) % (2 * pi)) - pi`, with numpy's floor modulo (`npy_divmod`:
/// C `fmod`, shifted by the divisor when the signs differ).
fn angle_normalize(x: f64) -> f64 {
    let b = 2.0 * PI;
    let mut m = (x + PI) % b;
    if m != 0.0 {
        if (b < 0.0) != (m < 0.0) {
            m += b;
        }
    } else {
        m = 0.0f64.copysign(b);
    }
    m - PI
}

impl Env for Pendulum {
    type Obs = [f32; 3];
    type Action = [f32; 1];

    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 3], Info)> {
        self.reset_with(seed, PendulumResetOptions::default())
    }

    fn step(&mut self, action: [f32; 1]) -> Result<Step<[f32; 3]>> {
        if self.needs_reset {
            return Err(NEEDS_RESET);
        }
        // `u = np.clip(u, -max_torque, max_torque)[0]`: a float32; NaN is an error here.
        let [u] = clip_continuous(action, &self.action_space)?;
        let [th, thdot] = self.state;
        let g = self.config.g;
        // numpy 2 (NEP 50): `0.001 * (u**2)` is float32 with a float32 `powf`; the other terms are float64.
        let costs = pow2(angle_normalize(th)) + 0.1 * pow2(thdot) + f64::from(0.001f32 * pow2_f32(u));
        // `3.0 / (m * l**2) * u` is a float32 product too.
        let u_term = f64::from((3.0 / (M * L * L)) as f32 * u);
        let newthdot = thdot + (3.0 * g / (2.0 * L) * th.sin() + u_term) * DT;
        let newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED);
        let newth = th + newthdot * DT;
        self.state = [newth, newthdot];
        Ok(Step { obs: self.obs(), reward: -costs, terminated: false, truncated: false, info: Info::default() })
    }
}
