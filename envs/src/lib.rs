//! bellman-envs: Gymnasium-style environments in Rust.
//!
//! * [`Env`]: `reset(seed)` / `step(action)` with `terminated` and `truncated` kept apart.
//! * [`Space`]: `Discrete` and `Box`.
//! * [`Mdp`]: explicit transition models for planning.
//! * [`wrappers`]: `TimeLimit`, `RecordEpisodeStatistics`; [`vector`]: N envs stepped as one.
//! * [`registry`]: `make("CartPole-v1")` by Gymnasium id.
//! * Environments: [`classic_control`] (CartPole, MountainCar, Acrobot, Pendulum), [`toy_text`] (FrozenLake,
//!   CliffWalking, Taxi) and [`gridworld`] (ASCII-map grid worlds, Sutton and Barto's examples), with Gymnasium
//!   1.4's dynamics, checked against fixtures recorded from Gymnasium itself.
//!
//! ```
//! use bellman_envs::{registry, ActionValue};
//! let mut env = registry::make("CartPole-v1").unwrap();
//! let mut obs = vec![0.0f32; 4];
//! env.reset_into(Some(0), &mut obs).unwrap();
//! let mut ret = 0.0;
//! loop {
//!     let s = env.step_into(ActionValue::Discrete(0), &mut obs).unwrap();
//!     ret += s.reward;
//!     if s.terminated || s.truncated { break; }
//! }
//! assert!(ret > 0.0);
//! ```
#[cfg(feature = "atari")]
pub mod atari;
pub mod classic_control;
pub mod env;
pub mod error;
pub mod gridworld;
pub mod mdp;
pub mod options;
pub mod registry;
pub mod rng;
pub mod space;
pub mod toy_text;
pub mod vector;
pub mod wrappers;

pub use env::{ActionValue, DynEnv, Env, EpisodeStats, FromAction, Info, Observation, Step, StepOutcome};
pub use error::{EnvError, Result};
pub use mdp::{Mdp, Outcome, TransitionTable};
pub use options::Options;
pub use registry::{EnvSpec, TabularEnv, make, make_tabular, make_with};
pub use space::{BoxSpace, Dtype, Space};
pub use vector::{AutoresetMode, SyncVectorEnv, VecStep, make_vec};
