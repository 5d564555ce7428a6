//! `CartPole-v1`: gymnasium/envs/classic_control/cartpole.py (gymnasium 1.4), after Barto, Sutton and Anderson
//! (1983), "Neuronlike adaptive elements that can solve difficult learning control problems".
use super::{NEEDS_RESET, ResetBounds, reseed, uniform};
use crate::env::{Env, Info, Step, check_discrete};
use crate::error::Result;
use crate::options::Options;
use crate::rng::EnvRng;
use crate::space::{BoxSpace, Space};

pub(crate) const ID: &str = "CartPole-v1";

// Constants of cartpole.py's `__init__` (gymnasium 1.4), evaluated the same way.
const GRAVITY: f64 = 9.8;
const MASSCART: f64 = 1.0;
const MASSPOLE: f64 = 0.1;
const TOTAL_MASS: f64 = MASSPOLE + MASSCART;
/// Half the pole's length.
const LENGTH: f64 = 0.5;
const POLEMASS_LENGTH: f64 = MASSPOLE * LENGTH;
const FORCE_MAG: f64 = 10.0;
/// Seconds between state updates (explicit Euler, gymnasium's `kinematics_integrator = "euler"`).
const TAU: f64 = 0.02;
/// 12 degrees, written as gymnasium writes it: `12 * 2 * math.pi / 360`.
pub(crate) const THETA_THRESHOLD_RADIANS: f64 = 12.0 * 2.0 * std::f64::consts::PI / 360.0;
pub(crate) const X_THRESHOLD: f64 = 2.4;
/// Default reset bounds: `uniform(-0.05, 0.05, size=4)`.
const RESET_BOUNDS: ResetBounds = ResetBounds { low: -0.05, high: 0.05 };

/// Options of [`CartPole`] (gymnasium's `gym.make("CartPole-v1", ...)` keyword arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CartPoleConfig {
    /// `sutton_barto_reward`: reward 0 on every non-terminal step and -1 on the failing step, instead of +1 on every
    /// step including the failing one (gymnasium's default, `false`).
    pub sutton_barto_reward: bool,
}

/// A pole balanced on a cart (gymnasium's `CartPoleEnv`).
///
/// * State `[x, x_dot, theta, theta_dot]` in f64; observation `f32(state)`.
/// * Actions: 0 pushes the cart left, 1 right, with a force of 10 N.
/// * Terminates when `|x| > 2.4` or `|theta| > 12°`; reward +1 on every step including the failing one (or the
///   Sutton-Barto reward, see [`CartPoleConfig`]).
/// * Reset: every state element uniform in `[-0.05, 0.05)`, or in [`ResetBounds`] with [`CartPole::reset_with`].
///
/// ```
/// use bellman_envs::{Env, classic_control::CartPole};
/// let mut env = CartPole::new();
/// env.reset(Some(0)).unwrap();
/// env.set_state([0.0, 0.0, 0.2, 1.0]);
/// let s = env.step(1).unwrap();
/// assert!(s.terminated && s.reward == 1.0);
/// assert!(env.step(1).is_err()); // NeedsReset
/// ```
#[derive(Debug, Clone)]
pub struct CartPole {
    config: CartPoleConfig,
    state: [f64; 4],
    rng: Option<EnvRng>,
    needs_reset: bool,
    observation_space: Space,
    action_space: Space,
}

impl Default for CartPole {
    fn default() -> Self {
        Self::new()
    }
}

impl CartPole {
    /// CartPole with gymnasium's defaults.
    pub fn new() -> Self {
        // Observation bounds: `[x_threshold * 2, inf, theta_threshold_radians * 2, inf]` as float32.
        let high = [(X_THRESHOLD * 2.0) as f32, f32::INFINITY, (THETA_THRESHOLD_RADIANS * 2.0) as f32, f32::INFINITY];
        CartPole {
            config: CartPoleConfig::default(),
            state: [0.0; 4],
            rng: None,
            needs_reset: true,
            observation_space: Space::Box(BoxSpace::symmetric(&high)),
            action_space: Space::Discrete(2),
        }
    }

    /// CartPole with options (every [`CartPoleConfig`] is valid; the `Result` keeps the constructors uniform).
    pub fn with_config(config: CartPoleConfig) -> Result<Self> {
        Ok(CartPole { config, ..Self::new() })
    }

    /// CartPole from registry options (`sutton_barto_reward=true`).
    pub fn from_options(opts: &Options) -> Result<Self> {
        let sutton_barto_reward = opts.get_bool(ID, "sutton_barto_reward")?.unwrap_or(false);
        Self::with_config(CartPoleConfig { sutton_barto_reward })
    }

    /// The options in use.
    pub fn config(&self) -> CartPoleConfig {
        self.config
    }

    /// Resets with every state element uniform in `[bounds.low, bounds.high)` (gymnasium's
    /// `reset(options={"low": .., "high": ..})`); errors when a bound is not finite or `low > high`.
    pub fn reset_with(&mut self, seed: Option<u64>, bounds: ResetBounds) -> Result<([f32; 4], Info)> {
        let b = bounds.validate(ID)?;
        let rng = reseed(&mut self.rng, seed);
        for s in &mut self.state {
            *s = uniform(rng, b.low, b.high);
        }
        self.needs_reset = false;
        Ok((self.obs(), Info::default()))
    }

    /// The internal state `[x, x_dot, theta, theta_dot]` (gymnasium's `env.unwrapped.state`), for tests and parity
    /// replays.
    pub fn state(&self) -> [f64; 4] {
        self.state
    }

    /// Overwrites the internal state (gymnasium's `env.unwrapped.state = ...`), for tests and parity replays, and
    /// arms the env for stepping as if an episode had just started from that state.
    pub fn set_state(&mut self, state: [f64; 4]) {
        self.state = state;
        self.needs_reset = false;
    }

    /// The observation of the current state, `f32(state)`.
    pub fn obs(&self) -> [f32; 4] {
        self.state.map(|v| v as f32)
    }
}

impl Env for CartPole {
    type Obs = [f32; 4];
    type Action = usize;

    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 4], Info)> {
        self.reset_with(seed, RESET_BOUNDS)
    }

    fn step(&mut self, action: usize) -> Result<Step<[f32; 4]>> {
        if self.needs_reset {
            return Err(NEEDS_RESET);
        }
        check_discrete(action, &self.action_space)?;
        let [x, x_dot, theta, theta_dot] = self.state;
        let force = if action == 1 { FORCE_MAG } else { -FORCE_MAG };
        let costheta = theta.cos();
        let sintheta = theta.sin();
        // Gymnasium's expression order (the fixture README: `pml*(thd*thd)` and `masspole*(c*c)` matter bit-wise),
        // Gymnasium writes `x**2`; `x * x` (IEEE exact rounding) replays every fixture step bit-exactly too and
        // avoids two libm `pow` calls per step (measured 3x faster).
        let temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS;
        let thetaacc = (GRAVITY * sintheta - costheta * temp)
            / (LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / TOTAL_MASS));
        let xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS;
        // kinematics_integrator == "euler": right-hand sides use the old values.
        let x = x + TAU * x_dot;
        let x_dot = x_dot + TAU * xacc;
        let theta = theta + TAU * theta_dot;
        let theta_dot = theta_dot + TAU * thetaacc;
        self.state = [x, x_dot, theta, theta_dot];

        // gymnasium: `x < -x_threshold or x > x_threshold or theta < -theta_threshold or theta > theta_threshold`.
        let terminated = !(-X_THRESHOLD..=X_THRESHOLD).contains(&x)
            || !(-THETA_THRESHOLD_RADIANS..=THETA_THRESHOLD_RADIANS).contains(&theta);
        // Steps after termination (gymnasium's `steps_beyond_terminated`) are NeedsReset errors here, so only the
        // first two branches of gymnasium's reward exist.
        let reward = match (self.config.sutton_barto_reward, terminated) {
            (false, _) => 1.0,
            (true, false) => 0.0,
            (true, true) => -1.0,
        };
        self.needs_reset = terminated;
        Ok(Step { obs: self.obs(), reward, terminated, truncated: false, info: Info::default() })
    }
}
