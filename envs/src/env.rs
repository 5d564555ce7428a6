//! The [`Env`] trait (Gymnasium's `Env` API) and the type-erased [`DynEnv`] the registry hands out.
use crate::error::{EnvError, Result};
use crate::space::Space;

/// Statistics of a finished episode, as Gymnasium's `RecordEpisodeStatistics` puts in `info["episode"]`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EpisodeStats {
    /// Undiscounted sum of rewards (`r`).
    pub ret: f64,
    /// Number of steps (`l`).
    pub len: u64,
    /// Wall-clock seconds from the reset to the final step (`t`).
    pub time: f64,
}

/// Extra information of a reset or step, Gymnasium's `info` dict with its common keys as typed fields.
///
/// Building one allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Info {
    /// Probability of the transition that happened (toy text's `info["prob"]`).
    pub prob: Option<f64>,
    /// Taxi's `info["action_mask"]` as a bit mask: bit `a` set when action `a` changes the state.
    pub action_mask: Option<u64>,
    /// Remaining lives (Atari's `info["lives"]`).
    pub lives: Option<u32>,
    /// Frame number within the episode (Atari's `info["episode_frame_number"]`).
    pub episode_frame_number: Option<u64>,
    /// Set on the final step of an episode by [`crate::wrappers::RecordEpisodeStatistics`].
    pub episode: Option<EpisodeStats>,
}

/// What one [`Env::step`] returns: Gymnasium's `(obs, reward, terminated, truncated, info)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<O> {
    /// The observation after the step.
    pub obs: O,
    /// The reward of the step.
    pub reward: f64,
    /// The MDP reached a terminal state: the value of `obs` is zero, do not bootstrap from it.
    pub terminated: bool,
    /// The episode was cut from outside the MDP (a time limit): `obs` is a real state, bootstrap from it.
    pub truncated: bool,
    /// Extra information.
    pub info: Info,
}

impl<O> Step<O> {
    /// True when the episode is over (terminated or truncated) and the env needs a reset.
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// A reinforcement-learning environment with Gymnasium's semantics.
///
/// * `reset(seed)` starts an episode. `Some(seed)` reseeds the env's generator (the same seed always gives the
///   same episode for the same actions); `None` continues the current stream (seeded from OS entropy if the env
///   was never seeded).
/// * `step(action)` advances one step and returns a [`Step`]:
///   - `terminated`: the MDP itself ended (goal, failure). The final observation has value zero:
///     **learning targets must not bootstrap** from it.
///   - `truncated`: the episode was cut by something outside the MDP, usually a time limit. The final
///     observation is a real, non-terminal state: **targets bootstrap** from it.
///   - Both can be true on the same step (a terminal state reached exactly at the time limit); then
///     `terminated` wins for learning.
/// * After a step with `terminated || truncated`, `step` returns [`EnvError::NeedsReset`] until `reset`.
/// * An action outside the action space is an [`EnvError::InvalidAction`]; continuous envs clip finite
///   out-of-bounds actions to the bounds (as Gymnasium's envs do) and reject NaN.
///
/// Observations and actions are associated types (`[f32; 4]`, `usize`, ...), so stepping a classic-control env
/// allocates nothing.
///
/// ```
/// use bellman_envs::{Env, classic_control::CartPole};
/// let mut env = CartPole::new();
/// let (obs, _info) = env.reset(Some(42)).unwrap();
/// assert!(env.observation_space().contains_box(&obs));
/// let step = env.step(1).unwrap();
/// assert_eq!(step.reward, 1.0);
/// ```
pub trait Env {
    /// The observation type.
    type Obs: Clone;
    /// The action type.
    type Action: Clone;

    /// The space observations belong to.
    fn observation_space(&self) -> &Space;
    /// The space actions must belong to.
    fn action_space(&self) -> &Space;
    /// Starts a new episode, reseeding when `seed` is given.
    fn reset(&mut self, seed: Option<u64>) -> Result<(Self::Obs, Info)>;
    /// Advances one step.
    fn step(&mut self, action: Self::Action) -> Result<Step<Self::Obs>>;
}

impl<E: Env + ?Sized> Env for Box<E> {
    type Obs = E::Obs;
    type Action = E::Action;
    fn observation_space(&self) -> &Space {
        (**self).observation_space()
    }
    fn action_space(&self) -> &Space {
        (**self).action_space()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<(Self::Obs, Info)> {
        (**self).reset(seed)
    }
    fn step(&mut self, action: Self::Action) -> Result<Step<Self::Obs>> {
        (**self).step(action)
    }
}

/// An observation with a flat `f32` encoding (what vector envs and neural networks consume).
pub trait Observation: Clone {
    /// Writes the flat encoding into `out` (`out.len()` is the observation space's `flat_dim`).
    fn write_f32(&self, out: &mut [f32]);
}

impl<const N: usize> Observation for [f32; N] {
    fn write_f32(&self, out: &mut [f32]) {
        out.copy_from_slice(self);
    }
}

impl Observation for usize {
    /// A discrete observation is encoded as its index.
    fn write_f32(&self, out: &mut [f32]) {
        out[0] = *self as f32;
    }
}

/// A borrowed action of any kind, for type-erased stepping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActionValue<'a> {
    /// An index into a discrete action space.
    Discrete(usize),
    /// A point of a box action space.
    Continuous(&'a [f32]),
}

/// An action type that can be built from an [`ActionValue`].
pub trait FromAction: Sized {
    /// Converts, or explains why not (wrong kind, wrong length).
    fn from_action(a: ActionValue<'_>) -> Result<Self>;
}

impl FromAction for usize {
    #[inline]
    fn from_action(a: ActionValue<'_>) -> Result<Self> {
        match a {
            ActionValue::Discrete(i) => Ok(i),
            ActionValue::Continuous(x) => Err(EnvError::InvalidAction {
                action: format!("{x:?}"),
                space: "Discrete".into(),
                reason: "a continuous action given to an env with discrete actions".into(),
            }),
        }
    }
}

impl<const N: usize> FromAction for [f32; N] {
    fn from_action(a: ActionValue<'_>) -> Result<Self> {
        match a {
            ActionValue::Continuous(x) if x.len() == N => {
                let mut out = [0.0; N];
                out.copy_from_slice(x);
                Ok(out)
            }
            other => Err(EnvError::InvalidAction {
                action: format!("{other:?}"),
                space: format!("Box(shape ({N},))"),
                reason: format!("expected a continuous action of {N} values"),
            }),
        }
    }
}

/// Reward and flags of a type-erased step (the observation goes into a caller's buffer).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepOutcome {
    /// The reward.
    pub reward: f64,
    /// See [`Step::terminated`].
    pub terminated: bool,
    /// See [`Step::truncated`].
    pub truncated: bool,
    /// Extra information.
    pub info: Info,
}

/// An environment behind a trait object, writing flat `f32` observations into caller buffers: what
/// [`crate::registry::make`] returns and what agents that do not know the concrete env type use.
///
/// Every [`Env`] whose observation is an [`Observation`] and whose action is [`FromAction`] is a `DynEnv`.
///
/// ```
/// use bellman_envs::{registry, ActionValue};
/// let mut env = registry::make("CartPole-v1").unwrap();
/// let mut obs = vec![0.0f32; env.observation_space().flat_dim()];
/// env.reset_into(Some(0), &mut obs).unwrap();
/// let out = env.step_into(ActionValue::Discrete(0), &mut obs).unwrap();
/// assert_eq!(out.reward, 1.0);
/// ```
pub trait DynEnv: Send {
    /// See [`Env::observation_space`].
    fn observation_space(&self) -> &Space;
    /// See [`Env::action_space`].
    fn action_space(&self) -> &Space;
    /// Resets and writes the first observation into `obs`, which must have the observation space's `flat_dim`
    /// elements (else an [`EnvError::BadSpace`], and the env is left untouched).
    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<Info>;
    /// Steps and writes the next observation into `obs` (`flat_dim` elements, as for
    /// [`reset_into`](Self::reset_into)).
    fn step_into(&mut self, action: ActionValue<'_>, obs: &mut [f32]) -> Result<StepOutcome>;
}

impl<E> DynEnv for E
where
    E: Env + Send,
    E::Obs: Observation,
    E::Action: FromAction,
{
    fn observation_space(&self) -> &Space {
        Env::observation_space(self)
    }
    fn action_space(&self) -> &Space {
        Env::action_space(self)
    }
    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<Info> {
        check_obs_buffer(Env::observation_space(self), obs)?;
        let (o, info) = self.reset(seed)?;
        o.write_f32(obs);
        Ok(info)
    }
    fn step_into(&mut self, action: ActionValue<'_>, obs: &mut [f32]) -> Result<StepOutcome> {
        check_obs_buffer(Env::observation_space(self), obs)?;
        let a = E::Action::from_action(action)?;
        let s = self.step(a)?;
        s.obs.write_f32(obs);
        Ok(StepOutcome { reward: s.reward, terminated: s.terminated, truncated: s.truncated, info: s.info })
    }
}

/// Checks that a caller's observation buffer has the space's `flat_dim` elements (before the env is touched).
#[inline]
fn check_obs_buffer(space: &Space, obs: &[f32]) -> Result<()> {
    if obs.len() == space.flat_dim() {
        Ok(())
    } else {
        Err(EnvError::BadSpace(format!(
            "the observation buffer has {} elements; observation space {space} needs flat_dim = {}",
            obs.len(),
            space.flat_dim()
        )))
    }
}

impl DynEnv for Box<dyn DynEnv> {
    fn observation_space(&self) -> &Space {
        (**self).observation_space()
    }
    fn action_space(&self) -> &Space {
        (**self).action_space()
    }
    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<Info> {
        (**self).reset_into(seed, obs)
    }
    fn step_into(&mut self, action: ActionValue<'_>, obs: &mut [f32]) -> Result<StepOutcome> {
        (**self).step_into(action, obs)
    }
}

/// Checks a discrete action against `n`, with Gymnasium-style error text.
#[inline]
pub fn check_discrete(action: usize, space: &Space) -> Result<()> {
    if space.contains_discrete(action) {
        Ok(())
    } else {
        Err(EnvError::InvalidAction {
            action: action.to_string(),
            space: space.to_string(),
            reason: format!("must be in 0..{}", space.n().unwrap_or(0)),
        })
    }
}

/// Checks a continuous action: NaN (or wrong length) is an error; finite values outside the bounds are clipped
/// into the returned array, as Gymnasium's continuous envs clip.
///
/// ```
/// use bellman_envs::{Space, space::BoxSpace, env::clip_continuous};
/// let space = Space::Box(BoxSpace::new(vec![-2.0], vec![2.0]).unwrap());
/// assert_eq!(clip_continuous([3.5], &space).unwrap(), [2.0]);
/// assert!(clip_continuous([f32::NAN], &space).is_err());
/// assert!(clip_continuous([0.0, 0.0], &space).is_err());
/// ```
pub fn clip_continuous<const N: usize>(action: [f32; N], space: &Space) -> Result<[f32; N]> {
    let b = space.as_box().ok_or_else(|| EnvError::Unsupported("continuous action on a discrete space".into()))?;
    if b.low.len() != N || b.high.len() != N {
        return Err(EnvError::InvalidAction {
            action: format!("{action:?}"),
            space: space.to_string(),
            reason: format!("expected {} values, got {N}", b.low.len()),
        });
    }
    let mut out = action;
    for (i, v) in out.iter_mut().enumerate() {
        if v.is_nan() {
            return Err(EnvError::InvalidAction {
                action: format!("{action:?}"),
                space: space.to_string(),
                reason: format!("element {i} is NaN"),
            });
        }
        *v = v.clamp(b.low[i], b.high[i]);
    }
    Ok(out)
}
