//! Gymnasium 1.4's five classic-control environments, reproduced step for step:
//!
//! | type | id | obs | action | limit | solved at |
//! |---|---|---|---|---|---|
//! | [`CartPole`] | `CartPole-v1` | `[f32; 4]` | `usize` in `0..2` | 500 | 475 |
//! | [`MountainCar`] | `MountainCar-v0` | `[f32; 2]` | `usize` in `0..3` | 200 | -110 |
//! | [`ContinuousMountainCar`] | `MountainCarContinuous-v0` | `[f32; 2]` | `[f32; 1]` in `[-1, 1]` | 999 | 90 |
//! | [`Acrobot`] | `Acrobot-v1` | `[f32; 6]` | `usize` in `0..3` | 500 | -100 |
//! | [`Pendulum`] | `Pendulum-v1` | `[f32; 3]` | `[f32; 1]` in `[-2, 2]` | 200 | none |
//!
//! The dynamics keep gymnasium's expression order, use the platform libm (`sin`, `cos`, `pow`) as numpy does,
//! and emulate numpy 2's float32 arithmetic where gymnasium mixes float32 actions or states into the update, so
//! the fixtures under `tests/data/gymnasium/classic_control/` replay bit-exactly (see
//! `envs/tests/classic_control_parity.rs`).
//!
//! Differences from gymnasium, all on misuse: `step` before `reset` or after the end of an episode is an
//! [`crate::EnvError::NeedsReset`] (gymnasium only warns), an out-of-range discrete action is an
//! [`crate::EnvError::InvalidAction`] (gymnasium asserts), and a NaN continuous action is an
//! [`crate::EnvError::InvalidAction`] (gymnasium propagates the NaN). Finite out-of-bounds continuous actions are
//! clipped, as gymnasium clips them.
//!
//! Every env has `state()` / `set_state(..)` for tests and parity replays: they read and overwrite gymnasium's
//! `env.unwrapped.state` exactly.
//!
//! ```
//! use bellman_envs::{Env, classic_control::{CartPole, CartPoleConfig}};
//! let mut env = CartPole::with_config(CartPoleConfig { sutton_barto_reward: true }).unwrap();
//! env.reset(Some(3)).unwrap();
//! assert_eq!(env.step(0).unwrap().reward, 0.0);
//! ```
mod acrobot;
mod cartpole;
mod continuous_mountain_car;
mod mountain_car;
mod pendulum;

pub use acrobot::{Acrobot, AcrobotConfig, AcrobotDynamics};
pub use cartpole::{CartPole, CartPoleConfig};
pub use continuous_mountain_car::{ContinuousMountainCar, ContinuousMountainCarConfig};
pub use mountain_car::{MountainCar, MountainCarConfig};
pub use pendulum::{Pendulum, PendulumConfig, PendulumResetOptions};

use crate::error::{EnvError, Result};
use crate::registry::{EnvSpec, OptionDoc, boxed};
use crate::rng::{self, EnvRng};

/// Bounds of the uniform initial-state distribution, gymnasium's reset `options={"low": .., "high": ..}`
/// (`utils.maybe_parse_reset_bounds`), accepted by the `reset_with` of CartPole, MountainCar,
/// MountainCarContinuous and Acrobot.
///
/// ```
/// use bellman_envs::classic_control::{CartPole, ResetBounds};
/// let mut env = CartPole::new();
/// let (obs, _) = env.reset_with(Some(0), ResetBounds { low: 0.0, high: 1.0 }).unwrap();
/// assert!(obs.iter().all(|v| (0.0..=1.0).contains(v)));
/// assert!(env.reset_with(None, ResetBounds { low: 1.0, high: 0.0 }).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResetBounds {
    /// Lower bound (gymnasium's `options["low"]`).
    pub low: f64,
    /// Upper bound (gymnasium's `options["high"]`); must be `>= low`.
    pub high: f64,
}

impl ResetBounds {
    /// Checks the bounds: both finite and `low <= high` (gymnasium raises `ValueError` on `low > high`).
    pub(crate) fn validate(self, env: &str) -> Result<Self> {
        for (key, v) in [("low", self.low), ("high", self.high)] {
            if !v.is_finite() {
                return Err(bad_option(env, key, v, "a finite number"));
            }
        }
        if self.low > self.high {
            return Err(bad_option(
                env,
                "low",
                self.low,
                &format!("lower bound must not exceed the upper bound {}", self.high),
            ));
        }
        Ok(self)
    }
}

/// An `EnvError::BadOption` for a numeric value.
pub(crate) fn bad_option(env: &str, key: &str, value: f64, reason: &str) -> EnvError {
    EnvError::BadOption { env: env.into(), key: key.into(), value: value.to_string(), reason: reason.into() }
}

/// Python's `x ** 2` on a float: C `pow(x, 2.0)` from the platform libm (what CPython and numpy call). The
/// exponent goes through `black_box` so LLVM keeps the libm call instead of folding it to `x * x`.
#[inline]
pub(crate) fn pow2(x: f64) -> f64 {
    x.powf(std::hint::black_box(2.0))
}

/// numpy's float32 `u ** 2`: C `powf(u, 2.0f)` (may differ from `u * u` by one ulp when `u * u` is a tie).
#[inline]
pub(crate) fn pow2_f32(x: f32) -> f32 {
    x.powf(std::hint::black_box(2.0))
}

/// The generator of an env: reseeded by `Some(seed)`, seeded from entropy the first time `None` is given.
pub(crate) fn reseed(rng: &mut Option<EnvRng>, seed: Option<u64>) -> &mut EnvRng {
    match seed {
        Some(s) => rng.insert(rng::seeded(s)),
        None => rng.get_or_insert_with(rng::from_entropy),
    }
}

/// numpy's `Generator.uniform(low, high)`: `low + (high - low) * U[0, 1)`.
#[inline]
pub(crate) fn uniform(rng: &mut EnvRng, low: f64, high: f64) -> f64 {
    use rand::Rng;
    low + (high - low) * rng.random::<f64>()
}

/// The error of `step` before the first `reset` or after the end of an episode.
pub(crate) const NEEDS_RESET: EnvError =
    EnvError::NeedsReset("before reset() or after the episode terminated (gymnasium only warns; Bellman errors)");

/// Reads a finite option or returns `default`.
fn opt_f64(opts: &crate::Options, env: &str, key: &str, default: f64) -> Result<f64> {
    Ok(opts.get_f64(env, key)?.unwrap_or(default))
}

pub(crate) fn specs() -> Vec<EnvSpec> {
    vec![
        EnvSpec {
            id: cartpole::ID,
            max_episode_steps: Some(500),
            reward_threshold: Some(475.0),
            options: &[OptionDoc {
                key: "sutton_barto_reward",
                default: "false",
                help: "reward 0 per step and -1 on failure (Sutton and Barto) instead of +1 per step",
            }],
            make: |o, limit| Ok(boxed(CartPole::from_options(o)?, limit)),
            make_tabular: None,
        },
        EnvSpec {
            id: mountain_car::ID,
            max_episode_steps: Some(200),
            reward_threshold: Some(-110.0),
            options: &[OptionDoc {
                key: "goal_velocity",
                default: "0",
                help: "the car must reach the flag (position >= 0.5) with at least this velocity",
            }],
            make: |o, limit| Ok(boxed(MountainCar::from_options(o)?, limit)),
            make_tabular: None,
        },
        EnvSpec {
            id: continuous_mountain_car::ID,
            max_episode_steps: Some(999),
            reward_threshold: Some(90.0),
            options: &[OptionDoc {
                key: "goal_velocity",
                default: "0",
                help: "the car must reach the flag (position >= 0.45) with at least this velocity",
            }],
            make: |o, limit| Ok(boxed(ContinuousMountainCar::from_options(o)?, limit)),
            make_tabular: None,
        },
        EnvSpec {
            id: acrobot::ID,
            max_episode_steps: Some(500),
            reward_threshold: Some(-100.0),
            options: &[OptionDoc {
                key: "book_or_nips",
                default: "book",
                help: "dynamics of Sutton and Barto's book (gymnasium's default) or of the NIPS 1996 paper",
            }],
            make: |o, limit| Ok(boxed(Acrobot::from_options(o)?, limit)),
            make_tabular: None,
        },
        EnvSpec {
            id: pendulum::ID,
            max_episode_steps: Some(200),
            reward_threshold: None,
            options: &[OptionDoc { key: "g", default: "10.0", help: "gravity in m/s^2" }],
            make: |o, limit| Ok(boxed(Pendulum::from_options(o)?, limit)),
            make_tabular: None,
        },
    ]
}
