//! The registry: every env by its Gymnasium id, with its time limit, reward threshold and options.
//!
//! ```
//! use bellman_envs::registry;
//! let env = registry::make("CartPole-v1").unwrap();
//! assert_eq!(env.action_space().n(), Some(2));
//! let err = registry::make("CartPole-v9").err().unwrap().to_string();
//! assert!(err.contains("CartPole-v1"), "{err}");
//! ```
use std::sync::OnceLock;

use crate::env::{DynEnv, Env, FromAction, Observation};
use crate::error::{EnvError, Result};
use crate::mdp::Mdp;
use crate::options::Options;
use crate::wrappers::TimeLimit;

/// An env with discrete observations and actions and a transition model: what tabular learners and planners use.
pub trait TabularEnv: Env<Obs = usize, Action = usize> + Mdp + Send {}
impl<E: Env<Obs = usize, Action = usize> + Mdp + Send> TabularEnv for E {}

/// Documentation of one option an env accepts.
#[derive(Debug, Clone, Copy)]
pub struct OptionDoc {
    /// The key.
    pub key: &'static str,
    /// Its default, as text.
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// A constructor of a type-erased env from options (the registry applies the time limit).
pub type MakeFn = fn(&Options, Option<u64>) -> Result<Box<dyn DynEnv>>;
/// A constructor of a tabular env (with the time limit applied when there is one).
pub type MakeTabularFn = fn(&Options, Option<u64>) -> Result<Box<dyn TabularEnv>>;

/// A registered environment.
#[derive(Debug, Clone, Copy)]
pub struct EnvSpec {
    /// Gymnasium's id, e.g. `CartPole-v1`.
    pub id: &'static str,
    /// Default `TimeLimit` (Gymnasium's `max_episode_steps`); `None`: no limit.
    pub max_episode_steps: Option<u64>,
    /// Gymnasium's `reward_threshold`: the mean return at which the env counts as solved.
    pub reward_threshold: Option<f64>,
    /// Options accepted by `make_with`, besides `max_episode_steps`.
    pub options: &'static [OptionDoc],
    /// Builds the env.
    pub make: MakeFn,
    /// Builds the env as a tabular env (toy text and grid worlds).
    pub make_tabular: Option<MakeTabularFn>,
}

/// Boxes an env, wrapping it in a [`TimeLimit`] when `limit` is `Some` (a helper for [`EnvSpec::make`]).
pub fn boxed<E>(env: E, limit: Option<u64>) -> Box<dyn DynEnv>
where
    E: Env + Send + 'static,
    E::Obs: Observation,
    E::Action: FromAction,
{
    match limit {
        Some(n) => Box::new(TimeLimit::new(env, n)),
        None => Box::new(env),
    }
}

/// Boxes a tabular env, wrapping it in a [`TimeLimit`] when `limit` is `Some`.
pub fn boxed_tabular<E: TabularEnv + 'static>(env: E, limit: Option<u64>) -> Box<dyn TabularEnv> {
    match limit {
        Some(n) => Box::new(TimeLimit::new(env, n)),
        None => Box::new(env),
    }
}

/// Every registered env, in a stable order (classic control, toy text, grid worlds).
pub fn specs() -> &'static [EnvSpec] {
    static SPECS: OnceLock<Vec<EnvSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let mut v = crate::classic_control::specs();
        v.extend(crate::toy_text::specs());
        v.extend(crate::gridworld::specs());
        #[cfg(feature = "atari")]
        v.extend(crate::atari::specs());
        v
    })
}

/// The spec of `id`, or an error listing the registered ids.
pub fn spec(id: &str) -> Result<&'static EnvSpec> {
    specs().iter().find(|s| s.id == id).ok_or_else(|| {
        let known: Vec<&str> = specs().iter().map(|s| s.id).collect();
        let hint = match id {
            "Taxi-v3" => " (Taxi-v3 was replaced by Taxi-v4 in Gymnasium 1.x)",
            "CliffWalking-v0" => " (CliffWalking-v0 was replaced by CliffWalking-v1 in Gymnasium 1.x)",
            _ => "",
        };
        EnvError::UnknownEnv { id: format!("{id}{hint}"), known: known.join(", ") }
    })
}

fn limit_of(spec: &EnvSpec, opts: &Options) -> Result<Option<u64>> {
    match opts.get_u64(spec.id, "max_episode_steps")? {
        Some(0) => Ok(None),
        Some(n) => Ok(Some(n)),
        None => Ok(spec.max_episode_steps),
    }
}

/// Builds a registered env with its default options and time limit.
pub fn make(id: &str) -> Result<Box<dyn DynEnv>> {
    make_with(id, &Options::new())
}

/// Builds a registered env with options (`max_episode_steps` overrides the time limit; 0 removes it).
pub fn make_with(id: &str, opts: &Options) -> Result<Box<dyn DynEnv>> {
    let spec = spec(id)?;
    let limit = limit_of(spec, opts)?;
    let env = (spec.make)(opts, limit)?;
    opts.finish(id, &option_keys(spec))?;
    Ok(env)
}

/// Builds a registered env with discrete observations and actions and a model (toy text, grid worlds); an env
/// without a model is an [`EnvError::Unsupported`].
pub fn make_tabular(id: &str, opts: &Options) -> Result<Box<dyn TabularEnv>> {
    let spec = spec(id)?;
    let f = spec.make_tabular.ok_or_else(|| {
        let tabular: Vec<&str> = specs().iter().filter(|s| s.make_tabular.is_some()).map(|s| s.id).collect();
        EnvError::Unsupported(format!(
            "'{id}' has no transition model (continuous state); envs with a model: {}",
            tabular.join(", ")
        ))
    })?;
    let limit = limit_of(spec, opts)?;
    let env = f(opts, limit)?;
    opts.finish(id, &option_keys(spec))?;
    Ok(env)
}

fn option_keys(spec: &EnvSpec) -> Vec<&'static str> {
    let mut k: Vec<&'static str> = spec.options.iter().map(|o| o.key).collect();
    k.push("max_episode_steps");
    k
}
