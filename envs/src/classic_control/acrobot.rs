//! `Acrobot-v1`: gymnasium/envs/classic_control/acrobot.py (gymnasium 1.4), after Sutton (1996), "Generalization
//! in reinforcement learning: successful examples using sparse coarse coding", NIPS 8, and Sutton and Barto (2018),
//! "Reinforcement Learning: An Introduction" (the book's equations are gymnasium's default).
use std::f64::consts::PI;

use super::{NEEDS_RESET, ResetBounds, pow2, reseed, uniform};
use crate::env::{Env, Info, Step, check_discrete};
use crate::error::{EnvError, Result};
use crate::options::Options;
use crate::rng::EnvRng;
use crate::space::{BoxSpace, Space};

pub(crate) const ID: &str = "Acrobot-v1";

// Class constants of acrobot.py's `AcrobotEnv` (gymnasium 1.4).
const DT: f64 = 0.2;
const LINK_LENGTH_1: f64 = 1.0;
const LINK_MASS_1: f64 = 1.0;
const LINK_MASS_2: f64 = 1.0;
const LINK_COM_POS_1: f64 = 0.5;
const LINK_COM_POS_2: f64 = 0.5;
const LINK_MOI: f64 = 1.0;
const MAX_VEL_1: f64 = 4.0 * PI;
const MAX_VEL_2: f64 = 9.0 * PI;
const AVAIL_TORQUE: [f64; 3] = [-1.0, 0.0, 1.0];
/// The `g = 9.8` of `_dsdt`.
const G: f64 = 9.8;
/// Default reset bounds: `uniform(-0.1, 0.1, size=4).astype(float32)`.
const RESET_BOUNDS: ResetBounds = ResetBounds { low: -0.1, high: 0.1 };

/// Which equations of motion [`Acrobot`] integrates (gymnasium's class attribute `book_or_nips`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcrobotDynamics {
    /// Sutton and Barto's book (and the Java implementation): gymnasium's default.
    #[default]
    Book,
    /// The NIPS 1996 paper, which misses the `m2 l1 lc2 dtheta1^2 sin(theta2)` term.
    Nips,
}

/// Options of [`Acrobot`]. Gymnasium's constructor takes none; `book_or_nips` is its class attribute
/// (`env.unwrapped.book_or_nips = "nips"`), exposed here as an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AcrobotConfig {
    /// The equations of motion (default [`AcrobotDynamics::Book`]).
    pub book_or_nips: AcrobotDynamics,
}

/// A two-link pendulum actuated at the middle joint that must swing its tip above a line (gymnasium's
/// `AcrobotEnv`).
///
/// * State `[theta1, theta2, dtheta1, dtheta2]` in f64 (float32-valued right after a reset, as gymnasium's);
///   observation `f32([cos t1, sin t1, cos t2, sin t2, dt1, dt2])`.
/// * Actions 0, 1, 2: torque -1, 0, +1 on the middle joint.
/// * One classic RK4 step of 0.2 s per env step; angles wrapped into `[-pi, pi]`, velocities bounded to `4 pi` and
///   `9 pi`.
/// * Reward -1 per step, 0 on the terminating step: `-cos(t1) - cos(t2 + t1) > 1`.
/// * Reset: every element uniform in `[-0.1, 0.1)` (or [`ResetBounds`]), rounded to float32.
///
/// ```
/// use bellman_envs::{Env, classic_control::Acrobot};
/// let mut env = Acrobot::new();
/// let (obs, _) = env.reset(Some(0)).unwrap();
/// assert!(obs[0] > 0.99); // cos of a small angle
/// assert_eq!(env.step(0).unwrap().reward, -1.0);
/// ```
#[derive(Debug, Clone)]
pub struct Acrobot {
    config: AcrobotConfig,
    state: [f64; 4],
    rng: Option<EnvRng>,
    needs_reset: bool,
    observation_space: Space,
    action_space: Space,
}

impl Default for Acrobot {
    fn default() -> Self {
        Self::new()
    }
}

impl Acrobot {
    /// Acrobot with gymnasium's defaults.
    pub fn new() -> Self {
        let high = [1.0, 1.0, 1.0, 1.0, MAX_VEL_1 as f32, MAX_VEL_2 as f32];
        Acrobot {
            config: AcrobotConfig::default(),
            state: [0.0; 4],
            rng: None,
            needs_reset: true,
            observation_space: Space::Box(BoxSpace::symmetric(&high)),
            action_space: Space::Discrete(3),
        }
    }

    /// Acrobot with options (every [`AcrobotConfig`] is valid).
    pub fn with_config(config: AcrobotConfig) -> Result<Self> {
        Ok(Acrobot { config, ..Self::new() })
    }

    /// Acrobot from registry options (`book_or_nips=nips`).
    pub fn from_options(opts: &Options) -> Result<Self> {
        let book_or_nips = match opts.get_str("book_or_nips") {
            None | Some("book") => AcrobotDynamics::Book,
            Some("nips") => AcrobotDynamics::Nips,
            Some(other) => {
                return Err(EnvError::BadOption {
                    env: ID.into(),
                    key: "book_or_nips".into(),
                    value: other.into(),
                    reason: "expected 'book' or 'nips'".into(),
                });
            }
        };
        Self::with_config(AcrobotConfig { book_or_nips })
    }

    /// The options in use.
    pub fn config(&self) -> AcrobotConfig {
        self.config
    }

    /// Resets with every state element uniform in `[bounds.low, bounds.high)`, rounded to float32 (gymnasium's
    /// `reset(options={"low": .., "high": ..})`); errors when a bound is not finite or `low > high`.
    pub fn reset_with(&mut self, seed: Option<u64>, bounds: ResetBounds) -> Result<([f32; 6], Info)> {
        let b = bounds.validate(ID)?;
        let rng = reseed(&mut self.rng, seed);
        for s in &mut self.state {
            *s = f64::from(uniform(rng, b.low, b.high) as f32);
        }
        self.needs_reset = false;
        Ok((self.obs(), Info::default()))
    }

    /// The internal state `[theta1, theta2, dtheta1, dtheta2]` (gymnasium's `env.unwrapped.state`), for tests and
    /// parity replays.
    pub fn state(&self) -> [f64; 4] {
        self.state
    }

    /// Overwrites the internal state, for tests and parity replays, and arms the env for stepping.
    pub fn set_state(&mut self, state: [f64; 4]) {
        self.state = state;
        self.needs_reset = false;
    }

    /// The observation of the current state: `f32([cos t1, sin t1, cos t2, sin t2, dt1, dt2])`.
    pub fn obs(&self) -> [f32; 6] {
        let [t1, t2, d1, d2] = self.state;
        [t1.cos(), t1.sin(), t2.cos(), t2.sin(), d1, d2].map(|v| v as f32)
    }

    /// `_dsdt`: the time derivative of `(theta1, theta2, dtheta1, dtheta2, torque)`, in gymnasium's expression order.
    fn dsdt(&self, s: &[f64; 5]) -> [f64; 5] {
        let (m1, m2, l1, lc1, lc2, i1, i2) =
            (LINK_MASS_1, LINK_MASS_2, LINK_LENGTH_1, LINK_COM_POS_1, LINK_COM_POS_2, LINK_MOI, LINK_MOI);
        let [theta1, theta2, dtheta1, dtheta2, a] = *s;
        // `lc1**2` etc. of Python floats: exact squares of 0.5 and 1.0.
        let d1 = m1 * (lc1 * lc1) + m2 * (l1 * l1 + lc2 * lc2 + 2.0 * l1 * lc2 * theta2.cos()) + i1 + i2;
        let d2 = m2 * (lc2 * lc2 + l1 * lc2 * theta2.cos()) + i2;
        let phi2 = m2 * lc2 * G * (theta1 + theta2 - PI / 2.0).cos();
        let phi1 = -m2 * l1 * lc2 * pow2(dtheta2) * theta2.sin()
            - 2.0 * m2 * l1 * lc2 * dtheta2 * dtheta1 * theta2.sin()
            + (m1 * lc1 + m2 * l1) * G * (theta1 - PI / 2.0).cos()
            + phi2;
        let denom = m2 * (lc2 * lc2) + i2 - pow2(d2) / d1;
        let ddtheta2 = match self.config.book_or_nips {
            AcrobotDynamics::Nips => (a + d2 / d1 * phi1 - phi2) / denom,
            AcrobotDynamics::Book => (a + d2 / d1 * phi1 - m2 * l1 * lc2 * pow2(dtheta1) * theta2.sin() - phi2) / denom,
        };
        let ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
        [dtheta1, dtheta2, ddtheta1, ddtheta2, 0.0]
    }

    /// acrobot.py's `rk4(self._dsdt, s_augmented, [0, dt])`: one classic Runge-Kutta step of `dt`.
    fn rk4(&self, y0: [f64; 5]) -> [f64; 5] {
        let dt = DT - 0.0;
        let dt2 = dt / 2.0;
        let add = |y: &[f64; 5], h: f64, k: &[f64; 5]| std::array::from_fn(|i| y[i] + h * k[i]);
        let k1 = self.dsdt(&y0);
        let k2 = self.dsdt(&add(&y0, dt2, &k1));
        let k3 = self.dsdt(&add(&y0, dt2, &k2));
        let k4 = self.dsdt(&add(&y0, dt, &k3));
        std::array::from_fn(|i| y0[i] + dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]))
    }
}

/// acrobot.py's `wrap(x, m, M)`: adds or subtracts `M - m` until `m <= x <= M`.
fn wrap(mut x: f64, m: f64, big_m: f64) -> f64 {
    let diff = big_m - m;
    while x > big_m {
        x -= diff;
    }
    while x < m {
        x += diff;
    }
    x
}

/// acrobot.py's `bound(x, m, M)`: `min(max(x, m), M)`.
fn bound(x: f64, m: f64, big_m: f64) -> f64 {
    x.max(m).min(big_m)
}

impl Env for Acrobot {
    type Obs = [f32; 6];
    type Action = usize;

    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 6], Info)> {
        self.reset_with(seed, RESET_BOUNDS)
    }

    fn step(&mut self, action: usize) -> Result<Step<[f32; 6]>> {
        if self.needs_reset {
            return Err(NEEDS_RESET);
        }
        check_discrete(action, &self.action_space)?;
        // torque_noise_max = 0 in gymnasium 1.4: no noise.
        let torque = AVAIL_TORQUE[action];
        let [t1, t2, d1, d2] = self.state;
        let ns = self.rk4([t1, t2, d1, d2, torque]);
        self.state = [
            wrap(ns[0], -PI, PI),
            wrap(ns[1], -PI, PI),
            bound(ns[2], -MAX_VEL_1, MAX_VEL_1),
            bound(ns[3], -MAX_VEL_2, MAX_VEL_2),
        ];
        let [t1, t2, ..] = self.state;
        let terminated = -t1.cos() - (t2 + t1).cos() > 1.0;
        let reward = if terminated { 0.0 } else { -1.0 };
        self.needs_reset = terminated;
        Ok(Step { obs: self.obs(), reward, terminated, truncated: false, info: Info::default() })
    }
}
