//! `SyncVectorEnv` against fake envs whose episodes end at known steps: exact buffer contents and flags in each
//! Gymnasium autoreset mode (semantics of `gymnasium/vector/sync_vector_env.py`, Gymnasium 1.4), seeding,
//! episode statistics and error handling.
use bellman_envs::space::BoxSpace;
use bellman_envs::vector::{AutoresetMode, SyncVectorEnv};
use bellman_envs::wrappers::TimeLimit;
use bellman_envs::{ActionValue, DynEnv, Env, EnvError, Info, Result, Space, Step};
use proptest::prelude::*;

/// How a fake episode ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Term,
    Trunc,
    Both,
    Never,
}

/// A fake env: observation `[last seed, number of resets, t]`, reward `t + 10 * action`, the episode ends after
/// `len` steps the way `end` says. Step infos carry `prob = Some(t)`, reset infos `prob = None`.
#[derive(Debug, Clone)]
struct Fake {
    len: u64,
    end: End,
    t: u64,
    seed: f32,
    resets: u32,
    needs_reset: bool,
    obs_space: Space,
    act_space: Space,
}

impl Fake {
    fn new(len: u64, end: End) -> Self {
        Fake {
            len,
            end,
            t: 0,
            seed: -1.0,
            resets: 0,
            needs_reset: true,
            obs_space: Space::Box(BoxSpace::new(vec![-1.0; 3], vec![1e6; 3]).unwrap()),
            act_space: Space::Discrete(3),
        }
    }
}

impl Env for Fake {
    type Obs = [f32; 3];
    type Action = usize;
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 3], Info)> {
        if let Some(s) = seed {
            self.seed = s as f32;
        }
        self.resets += 1;
        self.t = 0;
        self.needs_reset = false;
        Ok(([self.seed, self.resets as f32, 0.0], Info::default()))
    }
    fn step(&mut self, action: usize) -> Result<Step<[f32; 3]>> {
        bellman_envs::env::check_discrete(action, &self.act_space)?;
        if self.needs_reset {
            return Err(EnvError::NeedsReset("on the fake env"));
        }
        self.t += 1;
        let done = self.t == self.len && self.end != End::Never;
        let terminated = done && matches!(self.end, End::Term | End::Both);
        let truncated = done && matches!(self.end, End::Trunc | End::Both);
        self.needs_reset = done;
        Ok(Step {
            obs: [self.seed, self.resets as f32, self.t as f32],
            reward: self.t as f64 + 10.0 * action as f64,
            terminated,
            truncated,
            info: Info { prob: Some(self.t as f64), ..Info::default() },
        })
    }
}

/// Sub-env 0 terminates after 2 steps, sub-env 1 is truncated after 3, sub-env 2 ends both ways after 2.
fn three(mode: AutoresetMode) -> SyncVectorEnv<Fake> {
    let specs = [(2, End::Term), (3, End::Trunc), (2, End::Both)];
    SyncVectorEnv::from_fn(3, |i| Fake::new(specs[i].0, specs[i].1), mode).unwrap()
}

fn rows(v: &SyncVectorEnv<impl DynEnv>) -> Vec<Vec<f32>> {
    v.obs().chunks(v.obs_dim()).map(|r| r.to_vec()).collect()
}

#[test]
fn reset_seeds_sub_env_i_with_seed_plus_i_and_records_them() {
    let mut v = three(AutoresetMode::NextStep);
    assert_eq!(v.seeds(), &[None, None, None]);
    let obs = v.reset(Some(10)).unwrap().to_vec();
    assert_eq!(obs, vec![10.0, 1.0, 0.0, 11.0, 1.0, 0.0, 12.0, 1.0, 0.0]);
    assert_eq!(v.seeds(), &[Some(10), Some(11), Some(12)]);
    // A reset without a seed continues the streams: the recorded seeds stay.
    v.reset(None).unwrap();
    assert_eq!(rows(&v), vec![vec![10.0, 2.0, 0.0], vec![11.0, 2.0, 0.0], vec![12.0, 2.0, 0.0]]);
    assert_eq!(v.seeds(), &[Some(10), Some(11), Some(12)]);
    v.reset_with_seeds(&[Some(5), None, Some(7)]).unwrap();
    assert_eq!(v.seeds(), &[Some(5), Some(11), Some(7)]);
    assert_eq!(rows(&v)[0], vec![5.0, 3.0, 0.0]);
    let e = v.reset_with_seeds(&[Some(1)]).unwrap_err().to_string();
    assert!(e.contains("expected 3 seeds"), "{e}");
}

#[test]
fn seed_overflow_is_an_error_naming_the_largest_valid_seed() {
    let mut v = three(AutoresetMode::NextStep);
    let e = v.reset(Some(u64::MAX)).unwrap_err().to_string();
    assert!(e.contains(&u64::MAX.to_string()) && e.contains(&(u64::MAX - 2).to_string()), "{e}");
    // Nothing was reset: stepping is still refused.
    assert!(matches!(v.step_discrete(&[0, 0, 0]), Err(EnvError::NeedsReset(_))));
    v.reset(Some(u64::MAX - 2)).unwrap();
    assert_eq!(v.seeds()[2], Some(u64::MAX));
}

#[test]
fn next_step_mode_exact_buffers() {
    let mut v = three(AutoresetMode::NextStep);
    v.reset(Some(10)).unwrap();

    // Step 1: nobody ends.
    let s = v.step_discrete(&[0, 1, 2]).unwrap();
    assert_eq!(s.obs, &[10.0, 1.0, 1.0, 11.0, 1.0, 1.0, 12.0, 1.0, 1.0]);
    assert_eq!(s.rewards, &[1.0, 11.0, 21.0]);
    assert_eq!(s.terminated, &[false, false, false]);
    assert_eq!(s.truncated, &[false, false, false]);
    assert_eq!(v.episode_mask(), &[false, false, false]);
    assert_eq!(v.infos()[1].prob, Some(1.0));

    // Step 2: sub-env 0 terminates, sub-env 2 terminates and truncates; obs holds their final observations.
    let s = v.step_discrete(&[1, 0, 0]).unwrap();
    assert_eq!(s.obs, &[10.0, 1.0, 2.0, 11.0, 1.0, 2.0, 12.0, 1.0, 2.0]);
    assert_eq!(s.rewards, &[12.0, 2.0, 2.0]);
    assert_eq!(s.terminated, &[true, false, true]);
    assert_eq!(s.truncated, &[false, false, true]);
    assert_eq!(v.autoreset_mask(), &[true, false, true]);
    assert_eq!(v.final_obs_mask(), &[false, false, false], "final_obs is a SameStep buffer");
    assert_eq!(v.final_obs_row(0), Some(&[10.0, 1.0, 2.0][..]));
    assert_eq!(v.final_obs_row(1), None);
    assert_eq!(v.final_obs_row(3), None);
    assert_eq!(v.episode_mask(), &[true, false, true]);
    assert_eq!((v.episode_stats()[0].ret, v.episode_stats()[0].len), (13.0, 2));
    assert_eq!((v.episode_stats()[2].ret, v.episode_stats()[2].len), (23.0, 2));
    assert_eq!(v.finished_episodes().map(|(i, s)| (i, s.len)).collect::<Vec<_>>(), vec![(0, 2), (2, 2)]);
    assert_eq!(v.episode_count(), 2);

    // Step 3: sub-envs 0 and 2 are reset (their actions ignored: reward 0, flags false); sub-env 1 truncates.
    let s = v.step_discrete(&[2, 2, 2]).unwrap();
    assert_eq!(s.obs, &[10.0, 2.0, 0.0, 11.0, 1.0, 3.0, 12.0, 2.0, 0.0]);
    assert_eq!(s.rewards, &[0.0, 23.0, 0.0]);
    assert_eq!(s.terminated, &[false, false, false]);
    assert_eq!(s.truncated, &[false, true, false]);
    assert_eq!(v.infos()[0].prob, None, "the reset info");
    assert_eq!(v.episode_mask(), &[false, true, false]);
    assert_eq!((v.episode_stats()[1].ret, v.episode_stats()[1].len), (36.0, 3));
    assert_eq!(v.autoreset_mask(), &[false, true, false]);
    assert_eq!(v.seeds(), &[Some(10), Some(11), Some(12)], "autoresets pass no seed");

    // Steps 4 and 5: the second episodes of sub-envs 0 and 2 have their true length 2 (the reset step does not
    // count), sub-env 1 is reset at step 4.
    let s = v.step_discrete(&[0, 0, 0]).unwrap();
    assert_eq!(s.obs, &[10.0, 2.0, 1.0, 11.0, 2.0, 0.0, 12.0, 2.0, 1.0]);
    assert_eq!(s.rewards, &[1.0, 0.0, 1.0]);
    v.step_discrete(&[0, 0, 1]).unwrap();
    assert_eq!(v.terminated(), &[true, false, true]);
    assert_eq!(v.episode_mask(), &[true, false, true]);
    assert_eq!((v.episode_stats()[0].ret, v.episode_stats()[0].len), (3.0, 2));
    assert_eq!((v.episode_stats()[2].ret, v.episode_stats()[2].len), (13.0, 2));
    assert_eq!(v.episode_count(), 5);
    assert!(v.episode_stats()[0].time >= 0.0);
}

#[test]
fn same_step_mode_exact_buffers() {
    let mut v = three(AutoresetMode::SameStep);
    v.reset(Some(10)).unwrap();
    v.step_discrete(&[0, 0, 0]).unwrap();
    assert_eq!(v.final_obs_mask(), &[false, false, false]);

    // Step 2: sub-envs 0 and 2 end and are reset in the same step.
    let s = v.step_discrete(&[1, 0, 2]).unwrap();
    assert_eq!(s.obs, &[10.0, 2.0, 0.0, 11.0, 1.0, 2.0, 12.0, 2.0, 0.0], "reset observations of 0 and 2");
    assert_eq!(s.rewards, &[12.0, 2.0, 22.0]);
    assert_eq!(s.terminated, &[true, false, true]);
    assert_eq!(s.truncated, &[false, false, true]);
    assert_eq!(v.final_obs_mask(), &[true, false, true]);
    assert_eq!(&v.final_obs()[0..3], &[10.0, 1.0, 2.0]);
    assert_eq!(&v.final_obs()[6..9], &[12.0, 1.0, 2.0]);
    assert_eq!(v.final_obs_row(2), Some(&[12.0, 1.0, 2.0][..]));
    assert_eq!(v.final_obs_row(1), None);
    assert_eq!(v.final_infos()[0].prob, Some(2.0), "info of the final step");
    assert_eq!(v.infos()[0].prob, None, "info of the reset");
    assert_eq!(v.infos()[1].prob, Some(2.0));
    assert_eq!(v.autoreset_mask(), &[false, false, false]);
    assert_eq!(v.episode_mask(), &[true, false, true]);
    assert_eq!((v.episode_stats()[0].ret, v.episode_stats()[0].len), (13.0, 2));
    assert_eq!((v.episode_stats()[2].ret, v.episode_stats()[2].len), (23.0, 2));

    // Step 3: every sub-env steps (no lost step); sub-env 1 is truncated and reset; the masks of step 2 are gone.
    let s = v.step_discrete(&[0, 1, 0]).unwrap();
    assert_eq!(s.obs, &[10.0, 2.0, 1.0, 11.0, 2.0, 0.0, 12.0, 2.0, 1.0]);
    assert_eq!(s.rewards, &[1.0, 13.0, 1.0]);
    assert_eq!(s.truncated, &[false, true, false]);
    assert_eq!(v.final_obs_mask(), &[false, true, false]);
    assert_eq!(&v.final_obs()[3..6], &[11.0, 1.0, 3.0]);
    assert_eq!(v.episode_mask(), &[false, true, false]);
    assert_eq!((v.episode_stats()[1].ret, v.episode_stats()[1].len), (16.0, 3));

    // Step 4: the second episodes of 0 and 2 end after 2 steps.
    v.step_discrete(&[0, 0, 0]).unwrap();
    assert_eq!(v.final_obs_mask(), &[true, false, true]);
    assert_eq!(&v.final_obs()[0..3], &[10.0, 2.0, 2.0]);
    assert_eq!((v.episode_stats()[0].ret, v.episode_stats()[0].len), (3.0, 2));
    assert_eq!(v.episode_count(), 5);
}

#[test]
fn disabled_mode_refuses_finished_sub_envs_until_they_are_reset() {
    let mut v = three(AutoresetMode::Disabled);
    v.reset(Some(10)).unwrap();
    v.step_discrete(&[0, 0, 0]).unwrap();
    v.step_discrete(&[0, 0, 0]).unwrap();
    assert_eq!(v.terminated(), &[true, false, true]);
    assert_eq!(v.autoreset_mask(), &[true, false, true]);
    let before = v.obs().to_vec();
    let lengths = v.current_lengths().to_vec();

    let e = v.step_discrete(&[0, 0, 0]).unwrap_err();
    assert!(matches!(e, EnvError::NeedsReset(_)), "{e}");
    assert!(e.to_string().contains("reset_done"), "{e}");
    assert_eq!(v.obs(), &before[..], "no sub-env was stepped");
    assert_eq!(v.current_lengths(), &lengths[..]);
    assert_eq!(v.final_obs_row(0), Some(&[10.0, 1.0, 2.0][..]), "final obs still readable");

    assert_eq!(v.reset_done().unwrap(), 2);
    assert_eq!(v.reset_done().unwrap(), 0);
    assert_eq!(rows(&v), vec![vec![10.0, 2.0, 0.0], vec![11.0, 1.0, 2.0], vec![12.0, 2.0, 0.0]]);
    assert_eq!(v.terminated(), &[false, false, false]);
    assert_eq!(v.truncated(), &[false, false, false]);

    // Every sub-env steps; sub-env 1 is truncated now.
    let s = v.step_discrete(&[1, 1, 1]).unwrap();
    assert_eq!(s.obs, &[10.0, 2.0, 1.0, 11.0, 1.0, 3.0, 12.0, 2.0, 1.0]);
    assert_eq!(s.truncated, &[false, true, false]);
    assert_eq!((v.episode_stats()[1].ret, v.episode_stats()[1].len), (6.0 + 10.0, 3));

    // Gymnasium's reset(seed=50, options={"reset_mask": ...}): masked sub-env i gets 50 + i.
    v.reset_masked(&[false, true, false], Some(50)).unwrap();
    assert_eq!(v.seeds(), &[Some(10), Some(51), Some(12)]);
    assert_eq!(rows(&v)[1], vec![51.0, 2.0, 0.0]);
    assert_eq!(v.truncated(), &[false, false, false]);
    assert_eq!(v.rewards(), &[11.0, 13.0, 11.0], "rewards are untouched by a masked reset");
    let e = v.reset_masked(&[true], None).unwrap_err().to_string();
    assert!(e.contains("length 1") && e.contains("expected length 3"), "{e}");

    assert_eq!(v.reset_env(0, Some(99)).unwrap(), &[99.0, 3.0, 0.0]);
    assert_eq!(v.seeds()[0], Some(99));
    assert!(v.reset_env(3, None).unwrap_err().to_string().contains("0..3"));
    v.step_discrete(&[0, 0, 0]).unwrap();
    assert_eq!(v.current_lengths(), &[1, 1, 2]);
}

#[test]
fn bad_action_batches_are_errors_that_step_nothing() {
    let mut v = three(AutoresetMode::NextStep);
    assert!(matches!(v.step_discrete(&[0, 0, 0]), Err(EnvError::NeedsReset(_))), "step before reset");
    assert!(matches!(v.reset_done(), Err(EnvError::NeedsReset(_))));
    v.reset(Some(0)).unwrap();
    let before = v.obs().to_vec();

    let e = v.step_discrete(&[0, 0]).unwrap_err();
    assert!(matches!(e, EnvError::InvalidAction { .. }));
    assert!(e.to_string().contains("batch of 2 actions") && e.to_string().contains("expected 3"), "{e}");

    let e = v.step_discrete(&[0, 3, 0]).unwrap_err().to_string();
    assert!(e.contains("invalid action 3") && e.contains("sub-env 1") && e.contains("0..3"), "{e}");

    let e = v.step_continuous(&[0.0, 0.0, 0.0]).unwrap_err().to_string();
    assert!(e.contains("discrete actions"), "{e}");

    let e = v.step(&[ActionValue::Discrete(0), ActionValue::Continuous(&[0.0]), ActionValue::Discrete(0)]);
    assert!(e.unwrap_err().to_string().contains("sub-env 1"));
    let e = v.step(&[ActionValue::Discrete(0), ActionValue::Discrete(0), ActionValue::Discrete(7)]);
    assert!(e.unwrap_err().to_string().contains("invalid action 7"));

    assert_eq!(v.obs(), &before[..]);
    assert_eq!(v.current_lengths(), &[0, 0, 0], "no sub-env was stepped");

    let s = v.step(&[ActionValue::Discrete(0), ActionValue::Discrete(1), ActionValue::Discrete(2)]).unwrap();
    assert_eq!(s.rewards, &[1.0, 11.0, 21.0]);
}

#[test]
fn construction_errors() {
    let e = SyncVectorEnv::<Fake>::new(Vec::new(), AutoresetMode::NextStep).unwrap_err().to_string();
    assert!(e.contains("at least 1"), "{e}");
    let mut odd = Fake::new(2, End::Term);
    odd.act_space = Space::Discrete(4);
    let e = SyncVectorEnv::new(vec![Fake::new(2, End::Term), odd], AutoresetMode::NextStep).unwrap_err();
    assert!(e.to_string().contains("sub-env 1") && e.to_string().contains("Discrete(4)"), "{e}");
    assert_eq!(three(AutoresetMode::SameStep).autoreset_mode(), AutoresetMode::SameStep);
}

#[test]
fn boxed_dyn_envs_behave_like_the_concrete_type() {
    let specs = [(2, End::Term), (3, End::Trunc), (2, End::Both)];
    for mode in [AutoresetMode::NextStep, AutoresetMode::SameStep] {
        let mut a = three(mode);
        let mut b =
            SyncVectorEnv::from_fn(3, |i| -> Box<dyn DynEnv> { Box::new(Fake::new(specs[i].0, specs[i].1)) }, mode)
                .unwrap();
        a.reset(Some(3)).unwrap();
        b.reset(Some(3)).unwrap();
        for k in 0..20 {
            let acts = [k % 3, (k + 1) % 3, (k + 2) % 3];
            a.step_discrete(&acts).unwrap();
            b.step_discrete(&acts).unwrap();
            assert_eq!(a.view(), b.view());
            assert_eq!(a.final_obs_mask(), b.final_obs_mask());
            assert_eq!(a.episode_mask(), b.episode_mask());
        }
        assert_eq!(a.episode_count(), b.episode_count());
    }
}

#[test]
fn time_limit_sub_envs_truncate_at_the_limit() {
    // A never-ending env under a 4-step TimeLimit, next to one that terminates at step 4: same step, one flag each.
    let mut v = SyncVectorEnv::new(
        vec![TimeLimit::new(Fake::new(0, End::Never), 4), TimeLimit::new(Fake::new(4, End::Term), 100)],
        AutoresetMode::NextStep,
    )
    .unwrap();
    v.reset(Some(0)).unwrap();
    for _ in 0..3 {
        v.step_discrete(&[0, 0]).unwrap();
        assert_eq!((v.terminated(), v.truncated()), (&[false, false][..], &[false, false][..]));
    }
    v.step_discrete(&[0, 0]).unwrap();
    assert_eq!(v.terminated(), &[false, true]);
    assert_eq!(v.truncated(), &[true, false]);
    assert_eq!(v.obs(), &[0.0, 1.0, 4.0, 1.0, 1.0, 4.0]);
    v.step_discrete(&[0, 0]).unwrap();
    assert_eq!(v.obs(), &[0.0, 2.0, 0.0, 1.0, 2.0, 0.0]);
}

/// A fake env with a 2-d box action: observation = the clipped action, reward = its sum.
#[derive(Debug)]
struct Cont {
    obs_space: Space,
    act_space: Space,
}

impl Env for Cont {
    type Obs = [f32; 2];
    type Action = [f32; 2];
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset(&mut self, _seed: Option<u64>) -> Result<([f32; 2], Info)> {
        Ok(([0.0; 2], Info::default()))
    }
    fn step(&mut self, action: [f32; 2]) -> Result<Step<[f32; 2]>> {
        let a = bellman_envs::env::clip_continuous(action, &self.act_space)?;
        Ok(Step { obs: a, reward: (a[0] + a[1]) as f64, terminated: false, truncated: false, info: Info::default() })
    }
}

#[test]
fn continuous_action_batches() {
    let space = Space::Box(BoxSpace::new(vec![-1.0; 2], vec![1.0; 2]).unwrap());
    let make = |_| Cont { obs_space: space.clone(), act_space: space.clone() };
    let mut v = SyncVectorEnv::from_fn(2, make, AutoresetMode::NextStep).unwrap();
    assert_eq!(v.action_dim(), 2);
    v.reset(None).unwrap();
    let s = v.step_continuous(&[0.5, 0.25, -3.0, 1.0]).unwrap();
    assert_eq!(s.obs, &[0.5, 0.25, -1.0, 1.0], "row i = action i, clipped by the sub-env");
    assert_eq!(s.rewards, &[0.75, 0.0]);
    let s = v.step(&[ActionValue::Continuous(&[0.0, 0.5]), ActionValue::Continuous(&[1.0, 1.0])]).unwrap();
    assert_eq!(s.rewards, &[0.5, 2.0]);

    let e = v.step_continuous(&[0.0; 3]).unwrap_err().to_string();
    assert!(e.contains("batch of 3 values") && e.contains("2 sub-envs x 2 values = 4"), "{e}");
    let e = v.step_continuous(&[0.0, 0.0, f32::NAN, 0.0]).unwrap_err().to_string();
    assert!(e.contains("element 0 of the action of sub-env 1 is NaN"), "{e}");
    let e = v.step_discrete(&[0, 0]).unwrap_err().to_string();
    assert!(e.contains("continuous actions"), "{e}");
    let e = v.step(&[ActionValue::Continuous(&[0.0, 0.0]), ActionValue::Continuous(&[0.0])]).unwrap_err();
    assert!(e.to_string().contains("sub-env 1") && e.to_string().contains("2 non-NaN values"), "{e}");
    assert_eq!(v.obs(), &[0.0, 0.5, 1.0, 1.0], "failed batches stepped nothing");
}

#[test]
fn autoreset_mode_names_are_gymnasiums() {
    for (m, s) in [
        (AutoresetMode::NextStep, "NextStep"),
        (AutoresetMode::SameStep, "SameStep"),
        (AutoresetMode::Disabled, "Disabled"),
    ] {
        assert_eq!(m.to_string(), s);
        assert_eq!(s.parse::<AutoresetMode>().unwrap(), m);
    }
    let e = "next_step".parse::<AutoresetMode>().unwrap_err().to_string();
    assert!(e.contains("next_step") && e.contains("NextStep, SameStep or Disabled"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random episode lengths, end kinds, modes and action sequences: every finished episode is reported once,
    /// with its exact length, return and final observation `[seed, episode number, length]`; the number of
    /// finished episodes matches the mode's schedule.
    #[test]
    fn no_final_observation_is_ever_lost(
        cfg in proptest::collection::vec((1u64..6, 0usize..3), 1..6),
        mode_ix in 0usize..3,
        actions in proptest::collection::vec(0usize..3, 40),
    ) {
        let mode = [AutoresetMode::NextStep, AutoresetMode::SameStep, AutoresetMode::Disabled][mode_ix];
        let ends = [End::Term, End::Trunc, End::Both];
        let n = cfg.len();
        let mut v = SyncVectorEnv::from_fn(n, |i| Fake::new(cfg[i].0, ends[cfg[i].1]), mode).unwrap();
        v.reset(Some(100)).unwrap();
        let mut episodes = vec![0u64; n];
        let mut ret = vec![0.0f64; n];
        let mut skip = vec![false; n];
        let steps = actions.len();
        for (k, _) in actions.iter().enumerate() {
            let acts: Vec<usize> = (0..n).map(|i| actions[(k + i) % steps]).collect();
            v.step_discrete(&acts).unwrap();
            for i in 0..n {
                if skip[i] {
                    // NextStep reset step.
                    prop_assert_eq!(v.rewards()[i], 0.0);
                    skip[i] = false;
                    continue;
                }
                ret[i] += v.rewards()[i];
                let done = v.terminated()[i] || v.truncated()[i];
                prop_assert_eq!(v.episode_mask()[i], done);
                if done {
                    episodes[i] += 1;
                    let fin = v.final_obs_row(i).unwrap();
                    prop_assert_eq!(fin, &[100.0 + i as f32, episodes[i] as f32, cfg[i].0 as f32][..]);
                    prop_assert_eq!(v.episode_stats()[i].len, cfg[i].0);
                    prop_assert_eq!(v.episode_stats()[i].ret, ret[i]);
                    ret[i] = 0.0;
                    skip[i] = mode == AutoresetMode::NextStep;
                }
            }
            if mode == AutoresetMode::Disabled {
                v.reset_done().unwrap();
            }
        }
        for i in 0..n {
            let len = cfg[i].0 as usize;
            let expect = match mode {
                AutoresetMode::NextStep => (steps + 1) / (len + 1),
                _ => steps / len,
            };
            prop_assert_eq!(episodes[i], expect as u64);
        }
        prop_assert_eq!(v.episode_count(), episodes.iter().sum::<u64>());
    }
}

/// `make_vec("CartPole-v1", 4)` against four independent `make("CartPole-v1")` envs seeded `7 + i` and driven by
/// hand with Gymnasium's NextStep rule: identical observations, rewards, flags and episode lengths.
#[test]
fn make_vec_matches_independent_envs_under_the_next_step_rule() {
    use bellman_envs::vector::make_vec;
    use bellman_envs::{Options, registry};
    let n = 4;
    let mut v = make_vec("CartPole-v1", n, &Options::new(), AutoresetMode::NextStep).unwrap();
    let mut singles: Vec<Box<dyn DynEnv>> = (0..n).map(|_| registry::make("CartPole-v1").unwrap()).collect();
    let mut obs = vec![0.0f32; n * 4];
    for (i, e) in singles.iter_mut().enumerate() {
        e.reset_into(Some(7 + i as u64), &mut obs[i * 4..(i + 1) * 4]).unwrap();
    }
    assert_eq!(v.reset(Some(7)).unwrap(), &obs[..]);
    let mut done = vec![false; n];
    let mut len = vec![0u64; n];
    let mut finished = 0;
    for k in 0..600usize {
        let acts: Vec<usize> = (0..n).map(|i| (k * 7 + i * 3 + k / 5) % 2).collect();
        v.step_discrete(&acts).unwrap();
        for i in 0..n {
            let row = &mut obs[i * 4..(i + 1) * 4];
            let (r, te, tr) = if done[i] {
                singles[i].reset_into(None, row).unwrap();
                len[i] = 0;
                (0.0, false, false)
            } else {
                let s = singles[i].step_into(ActionValue::Discrete(acts[i]), row).unwrap();
                len[i] += 1;
                (s.reward, s.terminated, s.truncated)
            };
            done[i] = te || tr;
            assert_eq!((v.rewards()[i], v.terminated()[i], v.truncated()[i]), (r, te, tr), "step {k} env {i}");
            if done[i] {
                assert_eq!(v.episode_stats()[i].len, len[i]);
                assert_eq!(v.episode_stats()[i].ret, len[i] as f64, "CartPole pays 1 per step");
                finished += 1;
            }
        }
        assert_eq!(v.obs(), &obs[..], "step {k}");
    }
    assert!(finished > 20, "random-ish play ends many episodes ({finished})");
    assert_eq!(v.episode_count(), finished);
}
