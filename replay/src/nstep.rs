//! n-step returns (Sutton and Barto 2018, section 7.1; used by Rainbow, Hessel et al. 2018) in front of any
//! buffer.
use crate::element::Element;
use crate::error::{Result, invalid};
use crate::prioritized::PrioritizedReplayBuffer;
use crate::storage::{Storage, check_len};
use crate::transition::Transition;
use crate::uniform::ReplayBuffer;

/// Where [`NStep`] sends the transitions it emits: any buffer, or a closure `FnMut(env, &Transition)`.
pub trait TransitionSink<O, A> {
    /// Takes one transition from env `env`.
    fn push_transition(&mut self, env: usize, t: &Transition<'_, O, A>) -> Result<()>;
}

impl<S: Storage> TransitionSink<S::Obs, S::Act> for ReplayBuffer<S> {
    fn push_transition(&mut self, env: usize, t: &Transition<'_, S::Obs, S::Act>) -> Result<()> {
        self.push_from(env, t).map(|_| ())
    }
}

impl<S: Storage> TransitionSink<S::Obs, S::Act> for PrioritizedReplayBuffer<S> {
    fn push_transition(&mut self, env: usize, t: &Transition<'_, S::Obs, S::Act>) -> Result<()> {
        self.push_from(env, t).map(|_| ())
    }
}

impl<O, A, F: FnMut(usize, &Transition<'_, O, A>) -> Result<()>> TransitionSink<O, A> for F {
    fn push_transition(&mut self, env: usize, t: &Transition<'_, O, A>) -> Result<()> {
        self(env, t)
    }
}

#[derive(Debug, Clone)]
struct Pending<O, A> {
    obs: Vec<O>,
    actions: Vec<A>,
    rewards: Vec<f32>,
    start: usize,
    len: usize,
}

/// Turns one-step transitions into n-step ones, per env.
///
/// Fed `(s_t, a_t, r_t, s_{t+1}, terminated, truncated)` for each env in order, it emits
/// `(s_t, a_t, sum_{k<m} gamma^k r_{t+k}, s_{t+m}, terminated, truncated, gamma^m)` with `m = n`, or with the
/// shorter `m` left at an episode's end: every pending step of the episode is then emitted with the final
/// observation, the episode's `terminated` (no bootstrap: the target is the plain sum) and `truncated` (the
/// target bootstraps from the final observation with `gamma^m`). Envs never mix. Nothing allocates per step.
/// The returns are summed in `f64` and stored as `f32`.
///
/// ```
/// use bellman_replay::{NStep, Transition};
/// let mut acc = NStep::<f32, i64>::new(3, 0.5, 1, 1, 1).unwrap();
/// let mut out = Vec::new();
/// let mut sink = |_env: usize, t: &Transition<'_, f32, i64>| {
///     out.push((t.obs[0], t.reward, t.next_obs[0], t.terminated, t.discount));
///     Ok(())
/// };
/// for s in 0..4 {
///     let (o, n) = ([s as f32], [s as f32 + 1.0]);
///     let t = Transition { obs: &o, action: &[0], reward: 1.0, next_obs: &n, terminated: s == 3,
///                          truncated: false, discount: 0.0 };
///     acc.push(0, &t, &mut sink).unwrap();
/// }
/// assert_eq!(out, vec![(0.0, 1.75, 3.0, false, 0.125), (1.0, 1.75, 4.0, true, 0.125),
///                      (2.0, 1.5, 4.0, true, 0.25), (3.0, 1.0, 4.0, true, 0.5)]);
/// ```
#[derive(Debug, Clone)]
pub struct NStep<O, A> {
    n: usize,
    gamma: f64,
    obs_len: usize,
    action_dim: usize,
    envs: Vec<Pending<O, A>>,
}

impl<O: Element, A: Element> NStep<O, A> {
    /// An accumulator of `n` steps (in [1, 1000]) with discount `gamma` (in [0, 1]) for `num_envs` envs,
    /// observations of `obs_len` elements and actions of `action_dim`.
    pub fn new(n: usize, gamma: f64, num_envs: usize, obs_len: usize, action_dim: usize) -> Result<Self> {
        if !(1..=1000).contains(&n) {
            return Err(invalid(format!("n {n} is outside [1, 1000]")));
        }
        if !(0.0..=1.0).contains(&gamma) {
            return Err(invalid(format!("gamma {gamma} is outside [0, 1]")));
        }
        if num_envs == 0 || obs_len == 0 || action_dim == 0 {
            return Err(invalid(format!(
                "num_envs {num_envs}, obs_len {obs_len}, action_dim {action_dim}: each must be >= 1"
            )));
        }
        let env = Pending {
            obs: vec![O::default(); n * obs_len],
            actions: vec![A::default(); n * action_dim],
            rewards: vec![0.0; n],
            start: 0,
            len: 0,
        };
        Ok(NStep { n, gamma, obs_len, action_dim, envs: vec![env; num_envs] })
    }
    /// Steps per return.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Number of envs.
    pub fn num_envs(&self) -> usize {
        self.envs.len()
    }
    /// Steps of env `env` waiting for their return to complete.
    pub fn pending(&self, env: usize) -> usize {
        self.envs.get(env).map_or(0, |e| e.len)
    }
    /// Drops the pending steps of env `env` (when its episode is abandoned without a final step).
    pub fn reset_env(&mut self, env: usize) {
        if let Some(e) = self.envs.get_mut(env) {
            e.len = 0;
        }
    }

    fn emit<S: TransitionSink<O, A> + ?Sized>(
        &self,
        env: usize,
        first: usize,
        t: &Transition<'_, O, A>,
        ended: bool,
        sink: &mut S,
    ) -> Result<()> {
        let e = &self.envs[env];
        let (n, ol, ad) = (self.n, self.obs_len, self.action_dim);
        let m = e.len - first;
        let mut ret = 0.0f64;
        let mut g = 1.0f64;
        for k in 0..m {
            ret += g * e.rewards[(e.start + first + k) % n] as f64;
            g *= self.gamma;
        }
        let slot = (e.start + first) % n;
        let out = Transition {
            obs: &e.obs[slot * ol..(slot + 1) * ol],
            action: &e.actions[slot * ad..(slot + 1) * ad],
            reward: ret as f32,
            next_obs: t.next_obs,
            terminated: ended && t.terminated,
            truncated: ended && t.truncated,
            discount: g as f32,
        };
        sink.push_transition(env, &out)
    }

    /// Feeds one step of env `env` (its `discount` is ignored) and sends every n-step transition it completes to
    /// `sink`; returns how many were sent (0 or 1 mid-episode, all pending ones at an episode's end).
    pub fn push<S: TransitionSink<O, A> + ?Sized>(
        &mut self,
        env: usize,
        t: &Transition<'_, O, A>,
        sink: &mut S,
    ) -> Result<usize> {
        if env >= self.envs.len() {
            return Err(invalid(format!("env {env} is outside [0, {})", self.envs.len())));
        }
        check_len("obs", t.obs.len(), self.obs_len)?;
        check_len("next_obs", t.next_obs.len(), self.obs_len)?;
        check_len("action", t.action.len(), self.action_dim)?;
        if !t.reward.is_finite() {
            return Err(invalid(format!("reward {} is not finite", t.reward)));
        }
        let (n, ol, ad) = (self.n, self.obs_len, self.action_dim);
        let e = &mut self.envs[env];
        let slot = (e.start + e.len) % n;
        e.obs[slot * ol..(slot + 1) * ol].copy_from_slice(t.obs);
        e.actions[slot * ad..(slot + 1) * ad].copy_from_slice(t.action);
        e.rewards[slot] = t.reward;
        e.len += 1;
        if t.terminated || t.truncated {
            let len = e.len;
            let res = (0..len).try_for_each(|first| self.emit(env, first, t, true, sink));
            self.envs[env].len = 0;
            res.map(|_| len)
        } else if e.len == n {
            let res = self.emit(env, 0, t, false, sink);
            let e = &mut self.envs[env];
            e.start = (e.start + 1) % n;
            e.len -= 1;
            res.map(|_| 1)
        } else {
            Ok(0)
        }
    }
}
