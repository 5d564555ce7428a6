//! `TimeLimit` and `RecordEpisodeStatistics` against a fake env whose episodes end at a known step, checked
//! against the semantics of Gymnasium 1.4's `gymnasium/wrappers/common.py` (`TimeLimit`,
//! `RecordEpisodeStatistics`).
use bellman_envs::wrappers::{RecordEpisodeStatistics, TimeLimit};
use bellman_envs::{Env, EnvError, Info, Result, Space, Step};
use proptest::prelude::*;

/// Observation `t`, reward `t + 10 * action`; terminates at step `term_at` (never when `None`). Stepping a
/// finished episode is an error, as for real envs.
#[derive(Debug, Clone)]
struct Fake {
    term_at: Option<u64>,
    t: u64,
    done: bool,
    obs_space: Space,
    act_space: Space,
}

impl Fake {
    fn new(term_at: Option<u64>) -> Self {
        Fake { term_at, t: 0, done: false, obs_space: Space::Discrete(1000), act_space: Space::Discrete(2) }
    }
}

impl Env for Fake {
    type Obs = usize;
    type Action = usize;
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset(&mut self, _seed: Option<u64>) -> Result<(usize, Info)> {
        self.t = 0;
        self.done = false;
        Ok((0, Info::default()))
    }
    fn step(&mut self, action: usize) -> Result<Step<usize>> {
        bellman_envs::env::check_discrete(action, &self.act_space)?;
        if self.done {
            return Err(EnvError::NeedsReset("on the fake env after termination"));
        }
        self.t += 1;
        let terminated = self.term_at == Some(self.t);
        self.done = terminated;
        Ok(Step {
            obs: self.t as usize,
            reward: self.t as f64 + 10.0 * action as f64,
            terminated,
            truncated: false,
            info: Info::default(),
        })
    }
}

#[test]
fn time_limit_truncates_exactly_at_the_limit() {
    let mut env = TimeLimit::new(Fake::new(None), 5);
    assert_eq!(env.max_episode_steps(), 5);
    env.reset(Some(0)).unwrap();
    for t in 1..5 {
        let s = env.step(0).unwrap();
        assert_eq!(s.obs, t);
        assert!(!s.terminated && !s.truncated, "step {t}");
        assert_eq!(env.elapsed_steps(), t as u64);
    }
    let s = env.step(1).unwrap();
    assert_eq!((s.obs, s.reward), (5, 15.0));
    assert!(s.truncated && !s.terminated);
    assert!(s.done());
}

#[test]
fn time_limit_sets_both_flags_when_termination_coincides() {
    let mut env = TimeLimit::new(Fake::new(Some(3)), 3);
    env.reset(None).unwrap();
    env.step(0).unwrap();
    env.step(0).unwrap();
    let s = env.step(0).unwrap();
    assert!(s.terminated && s.truncated);

    // A termination before the limit is not a truncation.
    let mut env = TimeLimit::new(Fake::new(Some(2)), 3);
    env.reset(None).unwrap();
    env.step(0).unwrap();
    let s = env.step(0).unwrap();
    assert!(s.terminated && !s.truncated);
}

#[test]
fn time_limit_needs_reset_before_first_step_and_after_the_end() {
    let mut env = TimeLimit::new(Fake::new(None), 2);
    assert!(matches!(env.step(0), Err(EnvError::NeedsReset(_))), "before the first reset");
    env.reset(None).unwrap();
    env.step(0).unwrap();
    assert!(env.step(0).unwrap().truncated);
    let e = env.step(0).unwrap_err();
    assert!(matches!(e, EnvError::NeedsReset(_)));
    assert!(e.to_string().contains("reset()"), "{e}");
    // The reset restarts the count.
    env.reset(None).unwrap();
    assert_eq!(env.elapsed_steps(), 0);
    assert!(!env.step(0).unwrap().truncated);
    assert!(env.step(0).unwrap().truncated);
}

#[test]
fn time_limit_passes_invalid_actions_through_as_errors() {
    let mut env = TimeLimit::new(Fake::new(None), 2);
    env.reset(None).unwrap();
    let e = env.step(2).unwrap_err().to_string();
    assert!(e.contains("invalid action 2") && e.contains("0..2"), "{e}");
    assert_eq!(env.elapsed_steps(), 0, "a rejected action does not count");
}

#[test]
fn record_episode_statistics_return_and_length_are_exact() {
    let mut env = RecordEpisodeStatistics::new(Fake::new(Some(4)), 2);
    env.reset(Some(1)).unwrap();
    for a in [1, 0, 1] {
        let s = env.step(a).unwrap();
        assert_eq!(s.info.episode, None, "only the final step carries the statistics");
    }
    let s = env.step(0).unwrap();
    assert!(s.terminated);
    let ep = s.info.episode.unwrap();
    // Rewards 11, 2, 13, 4.
    assert_eq!((ep.ret, ep.len), (30.0, 4));
    assert!(ep.time >= 0.0);
    assert_eq!(env.episodes().len(), 1);

    // A reset in the middle of an episode discards it; the next episode is counted from zero.
    env.reset(None).unwrap();
    env.step(1).unwrap();
    env.reset(None).unwrap();
    for _ in 0..3 {
        env.step(0).unwrap();
    }
    let ep = env.step(0).unwrap().info.episode.unwrap();
    assert_eq!((ep.ret, ep.len), (10.0, 4));

    // The queue keeps the last `buffer_len` (= 2) episodes, oldest first.
    env.reset(None).unwrap();
    for _ in 0..4 {
        env.step(1).unwrap();
    }
    let kept: Vec<(f64, u64)> = env.episodes().iter().map(|e| (e.ret, e.len)).collect();
    assert_eq!(kept, vec![(10.0, 4), (50.0, 4)]);
}

#[test]
fn record_episode_statistics_over_time_limit_counts_truncated_episodes() {
    let mut env = RecordEpisodeStatistics::new(TimeLimit::new(Fake::new(None), 3), 10);
    env.reset(None).unwrap();
    env.step(0).unwrap();
    env.step(0).unwrap();
    let s = env.step(0).unwrap();
    assert!(s.truncated && !s.terminated);
    let ep = s.info.episode.unwrap();
    assert_eq!((ep.ret, ep.len), (6.0, 3));
    assert!(matches!(env.step(0), Err(EnvError::NeedsReset(_))));
    assert_eq!(env.episodes().len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// For any limit and termination step, the episode ends at `min(limit, term_at)` with `terminated` iff the
    /// termination step is reached and `truncated` iff the limit is, and the recorded statistics are the exact
    /// length and sum of rewards `sum(t + 10 * a_t)`.
    #[test]
    fn time_limit_and_statistics_agree_with_the_schedule(
        limit in 1u64..40,
        term_at in proptest::option::of(1u64..40),
        actions in proptest::collection::vec(0usize..2, 40),
    ) {
        let mut env = RecordEpisodeStatistics::new(TimeLimit::new(Fake::new(term_at), limit), 1);
        env.reset(None).unwrap();
        let end = term_at.map_or(limit, |t| t.min(limit));
        let mut expect_ret = 0.0;
        for t in 1..=end {
            let a = actions[(t - 1) as usize];
            let s = env.step(a).unwrap();
            expect_ret += t as f64 + 10.0 * a as f64;
            if t < end {
                prop_assert!(!s.done());
                prop_assert!(s.info.episode.is_none());
            } else {
                prop_assert_eq!(s.terminated, term_at == Some(t));
                prop_assert_eq!(s.truncated, t == limit);
                let ep = s.info.episode.unwrap();
                prop_assert_eq!(ep.len, end);
                prop_assert_eq!(ep.ret, expect_ret);
            }
        }
        prop_assert!(matches!(env.step(0), Err(EnvError::NeedsReset(_))));
    }
}
