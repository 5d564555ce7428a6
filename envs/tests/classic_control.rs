//! Behaviour of the classic-control envs beyond the gymnasium fixtures: reset distributions, seeding, errors,
//! clipping, thresholds, options, the registry entries, and that a step allocates nothing.
use std::f64::consts::PI;

use bellman_envs::classic_control::{
    Acrobot, AcrobotConfig, AcrobotDynamics, CartPole, CartPoleConfig, ContinuousMountainCar,
    ContinuousMountainCarConfig, MountainCar, MountainCarConfig, Pendulum, PendulumConfig, PendulumResetOptions,
    ResetBounds,
};
use bellman_envs::wrappers::TimeLimit;
use bellman_envs::{ActionValue, Env, EnvError, Options, registry};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations_during;

/// Steps `env` `n` times with `action(t)`, resetting when an episode ends.
fn run<E: Env>(env: &mut E, n: usize, action: impl Fn(usize) -> E::Action) {
    for t in 0..n {
        let s = env.step(action(t)).unwrap();
        if s.terminated || s.truncated {
            env.reset(None).unwrap();
        }
    }
}

#[test]
fn stepping_allocates_nothing() {
    let mut cp = TimeLimit::new(CartPole::new(), 500);
    let mut mc = TimeLimit::new(MountainCar::new(), 200);
    let mut mcc = TimeLimit::new(ContinuousMountainCar::new(), 999);
    let mut ac = TimeLimit::new(Acrobot::new(), 500);
    let mut pe = TimeLimit::new(Pendulum::new(), 200);
    // The counter works: a heap allocation is seen.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 16]))) >= 1);
    // The first reset(None) seeds from entropy (which may allocate); seed explicitly before counting.
    cp.reset(Some(0)).unwrap();
    mc.reset(Some(0)).unwrap();
    mcc.reset(Some(0)).unwrap();
    ac.reset(Some(0)).unwrap();
    pe.reset(Some(0)).unwrap();
    let n = allocations_during(|| {
        run(&mut cp, 2000, |t| t % 2);
        run(&mut mc, 2000, |t| t % 3);
        run(&mut mcc, 2000, |t| [((t % 7) as f32 - 3.0) * 0.5]);
        run(&mut ac, 2000, |t| t % 3);
        run(&mut pe, 2000, |t| [((t % 9) as f32 - 4.0) * 0.7]);
    });
    assert_eq!(n, 0, "{n} allocations in 10000 steps and resets");

    // Also through the type-erased registry env.
    let mut env = registry::make("Pendulum-v1").unwrap();
    let mut obs = [0.0f32; 3];
    env.reset_into(Some(1), &mut obs).unwrap();
    let n = allocations_during(|| {
        for _ in 0..150 {
            env.step_into(ActionValue::Continuous(&[0.5]), &mut obs).unwrap();
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn toy_text_and_vector_stepping_allocate_nothing() {
    use bellman_envs::{AutoresetMode, make_vec};
    // Registry envs (TimeLimit inside), including Taxi's action mask and FrozenLake's slippery sampling.
    for (id, n_actions) in [("FrozenLake-v1", 4), ("Taxi-v4", 6), ("CliffWalking-v1", 4), ("GridWorld4x4-v0", 4)] {
        let mut env = registry::make(id).unwrap();
        let mut obs = [0.0f32; 1];
        env.reset_into(Some(0), &mut obs).unwrap();
        let n = allocations_during(|| {
            for t in 0..3000 {
                let out = env.step_into(ActionValue::Discrete(t % n_actions), &mut obs).unwrap();
                if out.terminated || out.truncated {
                    env.reset_into(None, &mut obs).unwrap();
                }
            }
        });
        assert_eq!(n, 0, "{id}: {n} allocations in 3000 steps and resets");
    }
    // A vector env in every autoreset mode, episodes ending often (CartPole falls within ~10 steps of a constant
    // action; Disabled mode resets by hand).
    for mode in [AutoresetMode::NextStep, AutoresetMode::SameStep, AutoresetMode::Disabled] {
        let mut v = make_vec("CartPole-v1", 4, &Options::new(), mode).unwrap();
        v.reset(Some(0)).unwrap();
        let actions = [1usize; 4];
        let n = allocations_during(|| {
            for _ in 0..2000 {
                v.step_discrete(&actions).unwrap();
                if mode == AutoresetMode::Disabled {
                    v.reset_done().unwrap();
                }
            }
        });
        assert_eq!(n, 0, "{mode:?}: {n} allocations in 2000 vector steps");
        assert!(v.episode_count() > 100, "episodes must have ended: {}", v.episode_count());
    }
}

// ---- Reset distributions. ----

/// Mean of uniform samples on `[lo, hi)`: checks the range is covered and centred. With `n` samples the mean has
/// standard deviation `(hi - lo) / sqrt(12 n)`; the tolerance is 5 of those.
fn check_uniform(samples: &[f64], lo: f64, hi: f64) {
    let n = samples.len() as f64;
    assert!(samples.iter().all(|v| (lo..hi).contains(v)), "a sample outside [{lo}, {hi})");
    let mean = samples.iter().sum::<f64>() / n;
    let sd_mean = (hi - lo) / (12.0 * n).sqrt();
    assert!((mean - (lo + hi) / 2.0).abs() < 5.0 * sd_mean, "mean {mean} of uniform [{lo}, {hi})");
    let span = hi - lo;
    let (min, max) = samples.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    // With n >= 1000 samples the chance that no sample falls in the outer 1% of either side is below 1e-4.
    assert!(min < lo + 0.01 * span && max > hi - 0.01 * span, "samples span [{min}, {max}] of [{lo}, {hi})");
}

#[test]
fn cartpole_reset_is_uniform_in_gymnasium_range() {
    let mut env = CartPole::new();
    env.reset(Some(11)).unwrap();
    let mut cols = vec![Vec::new(); 4];
    for _ in 0..2000 {
        let (obs, _) = env.reset(None).unwrap();
        let s = env.state();
        assert_eq!(obs, s.map(|v| v as f32));
        for (c, v) in cols.iter_mut().zip(s) {
            c.push(v);
        }
    }
    for c in &cols {
        check_uniform(c, -0.05, 0.05);
    }
    // Reset options low/high.
    let mut xs = Vec::new();
    for seed in 0..500 {
        env.reset_with(Some(seed), ResetBounds { low: -0.2, high: 0.3 }).unwrap();
        xs.extend(env.state());
    }
    check_uniform(&xs, -0.2, 0.3);
}

#[test]
fn mountain_car_resets_are_uniform_in_gymnasium_range() {
    let mut mc = MountainCar::new();
    let mut mcc = ContinuousMountainCar::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for seed in 0..2000 {
        let (obs, _) = mc.reset(Some(seed)).unwrap();
        assert_eq!(obs[1], 0.0);
        assert_eq!(mc.state()[1], 0.0);
        a.push(mc.state()[0]);
        mcc.reset(Some(seed)).unwrap();
        assert!(!mcc.state_is_f32(), "gymnasium's reset state is float64");
        b.push(mcc.state()[0]);
    }
    check_uniform(&a, -0.6, -0.4);
    check_uniform(&b, -0.6, -0.4);
    let mut c = Vec::new();
    for seed in 0..1000 {
        mc.reset_with(Some(seed), ResetBounds { low: -1.0, high: 0.0 }).unwrap();
        c.push(mc.state()[0]);
    }
    check_uniform(&c, -1.0, 0.0);
}

#[test]
fn acrobot_reset_is_uniform_and_float32_valued() {
    let mut env = Acrobot::new();
    let mut all = Vec::new();
    for seed in 0..1000 {
        let (obs, _) = env.reset(Some(seed)).unwrap();
        let s = env.state();
        assert!(s.iter().all(|v| f64::from(*v as f32) == *v), "{s:?} is not float32-valued");
        assert_eq!(obs, [s[0].cos(), s[0].sin(), s[1].cos(), s[1].sin(), s[2], s[3]].map(|v| v as f32));
        all.extend(s);
    }
    // Rounding to float32 can step just past either bound (f32(-0.1) < -0.1); widen by more than an f32 ulp.
    check_uniform(&all, -0.1 - 1e-8, 0.1 + 1e-8);
}

#[test]
fn pendulum_reset_is_uniform_with_x_and_y_init() {
    let mut env = Pendulum::new();
    let (mut th, mut thd) = (Vec::new(), Vec::new());
    for seed in 0..2000 {
        env.reset(Some(seed)).unwrap();
        th.push(env.state()[0]);
        thd.push(env.state()[1]);
    }
    check_uniform(&th, -PI, PI);
    check_uniform(&thd, -1.0, 1.0);
    let (mut th, mut thd) = (Vec::new(), Vec::new());
    for seed in 0..2000 {
        env.reset_with(Some(seed), PendulumResetOptions { x_init: 0.5, y_init: 8.0 }).unwrap();
        th.push(env.state()[0]);
        thd.push(env.state()[1]);
    }
    check_uniform(&th, -0.5, 0.5);
    check_uniform(&thd, -8.0, 8.0);
    for bad in
        [PendulumResetOptions { x_init: -1.0, y_init: 1.0 }, PendulumResetOptions { x_init: 1.0, y_init: f64::NAN }]
    {
        let err = env.reset_with(None, bad).unwrap_err();
        assert!(matches!(err, EnvError::BadOption { .. }), "{err}");
    }
}

#[test]
fn bad_reset_bounds_are_errors_naming_the_value() {
    let mut env = CartPole::new();
    let err = env.reset_with(Some(0), ResetBounds { low: 0.5, high: 0.1 }).unwrap_err().to_string();
    assert!(err.contains("0.5") && err.contains("0.1"), "{err}");
    let err = Acrobot::new().reset_with(Some(0), ResetBounds { low: f64::NEG_INFINITY, high: 0.1 }).unwrap_err();
    assert!(err.to_string().contains("-inf"), "{err}");
    // The env stays un-reset after a failed reset.
    assert!(matches!(env.step(0), Err(EnvError::NeedsReset(_))));
}

// ---- Seeding. ----

fn trajectory<E: Env>(env: &mut E, seed: Option<u64>, action: impl Fn(usize) -> E::Action) -> Vec<E::Obs> {
    let (o, _) = env.reset(seed).unwrap();
    let mut out = vec![o];
    for t in 0..50 {
        let s = env.step(action(t)).unwrap();
        out.push(s.obs);
        if s.terminated {
            break;
        }
    }
    out
}

fn check_seeding<E: Env>(mut make: impl FnMut() -> E, action: impl Fn(usize) -> E::Action + Copy)
where
    E::Obs: PartialEq + std::fmt::Debug,
{
    let (mut a, mut b) = (make(), make());
    let ta = trajectory(&mut a, Some(5), action);
    assert_eq!(ta, trajectory(&mut b, Some(5), action), "same seed, same trajectory");
    assert_ne!(ta[0], trajectory(&mut b, Some(6), action)[0], "another seed, another start");
    // reset(None) continues the stream: the same in two envs seeded alike, and not a repeat of the seeded start.
    let na = trajectory(&mut a, None, action);
    trajectory(&mut b, Some(5), action);
    assert_eq!(na, trajectory(&mut b, None, action));
    assert_ne!(na[0], ta[0]);
    // Never seeded: entropy; two fresh envs start differently.
    let (mut c, mut d) = (make(), make());
    assert_ne!(c.reset(None).unwrap().0, d.reset(None).unwrap().0);
}

#[test]
fn same_seed_same_trajectory_for_every_env() {
    check_seeding(CartPole::new, |t| t % 2);
    check_seeding(MountainCar::new, |t| t % 3);
    check_seeding(ContinuousMountainCar::new, |t| [(t % 3) as f32 - 1.0]);
    check_seeding(Acrobot::new, |t| t % 3);
    check_seeding(Pendulum::new, |t| [(t % 5) as f32 - 2.0]);
}

// ---- Errors. ----

#[test]
fn step_before_reset_and_after_the_end_needs_reset() {
    fn needs_reset<T: std::fmt::Debug>(r: bellman_envs::Result<T>) {
        assert!(matches!(r, Err(EnvError::NeedsReset(_))), "{r:?}");
    }
    needs_reset(CartPole::new().step(0));
    needs_reset(MountainCar::new().step(0));
    needs_reset(ContinuousMountainCar::new().step([0.0]));
    needs_reset(Acrobot::new().step(0));
    needs_reset(Pendulum::new().step([0.0]));

    // After termination.
    let mut cp = CartPole::new();
    cp.reset(Some(0)).unwrap();
    while !cp.step(1).unwrap().terminated {}
    needs_reset(cp.step(1));
    cp.reset(None).unwrap();
    cp.step(1).unwrap();

    let mut mc = MountainCar::new();
    mc.reset(Some(0)).unwrap();
    mc.set_state([0.49, 0.05]);
    assert!(mc.step(2).unwrap().terminated);
    needs_reset(mc.step(2));

    let mut mcc = ContinuousMountainCar::new();
    mcc.reset(Some(0)).unwrap();
    mcc.set_state([0.44, 0.05]);
    assert!(mcc.step([1.0]).unwrap().terminated);
    needs_reset(mcc.step([1.0]));

    let mut ac = Acrobot::new();
    ac.reset(Some(0)).unwrap();
    ac.set_state([PI, 0.0, 0.0, 0.0]);
    assert!(ac.step(1).unwrap().terminated);
    needs_reset(ac.step(1));

    // After truncation by the registry's time limit (Pendulum never terminates).
    let mut pe = registry::make("Pendulum-v1").unwrap();
    let mut obs = [0.0f32; 3];
    pe.reset_into(Some(0), &mut obs).unwrap();
    for t in 0..200 {
        let s = pe.step_into(ActionValue::Continuous(&[0.0]), &mut obs).unwrap();
        assert_eq!(s.truncated, t == 199);
        assert!(!s.terminated);
    }
    needs_reset(pe.step_into(ActionValue::Continuous(&[0.0]), &mut obs));
}

#[test]
fn out_of_range_discrete_actions_are_invalid() {
    let mut cp = CartPole::new();
    cp.reset(Some(0)).unwrap();
    let err = cp.step(2).unwrap_err();
    assert!(matches!(err, EnvError::InvalidAction { .. }));
    assert!(err.to_string().contains('2') && err.to_string().contains("Discrete(2)"), "{err}");
    let mut mc = MountainCar::new();
    mc.reset(Some(0)).unwrap();
    assert!(matches!(mc.step(3), Err(EnvError::InvalidAction { .. })));
    let mut ac = Acrobot::new();
    ac.reset(Some(0)).unwrap();
    assert!(matches!(ac.step(usize::MAX), Err(EnvError::InvalidAction { .. })));
    // A rejected action leaves the state untouched and the env usable.
    let before = ac.state();
    assert!(ac.step(3).is_err());
    assert_eq!(ac.state(), before);
    ac.step(2).unwrap();
    // The wrong kind through the type-erased env.
    let mut env = registry::make("CartPole-v1").unwrap();
    let mut obs = [0.0f32; 4];
    env.reset_into(Some(0), &mut obs).unwrap();
    assert!(matches!(env.step_into(ActionValue::Continuous(&[1.0]), &mut obs), Err(EnvError::InvalidAction { .. })));
}

#[test]
fn nan_continuous_actions_are_errors() {
    let mut mcc = ContinuousMountainCar::new();
    mcc.reset(Some(0)).unwrap();
    let before = mcc.state();
    let err = mcc.step([f32::NAN]).unwrap_err();
    assert!(matches!(err, EnvError::InvalidAction { .. }) && err.to_string().contains("NaN"), "{err}");
    assert_eq!(mcc.state(), before);
    let mut pe = Pendulum::new();
    pe.reset(Some(0)).unwrap();
    assert!(matches!(pe.step([f32::NAN]), Err(EnvError::InvalidAction { .. })));
    pe.step([0.0]).unwrap();
}

#[test]
fn continuous_actions_are_clipped_and_rewards_follow_gymnasium() {
    // Pendulum: the clipped torque drives both the dynamics and the reward.
    let (mut a, mut b) = (Pendulum::new(), Pendulum::new());
    for e in [&mut a, &mut b] {
        e.reset(Some(0)).unwrap();
        e.set_state([1.0, -0.5]);
    }
    let (sa, sb) = (a.step([2.0]).unwrap(), b.step([1e6]).unwrap());
    assert_eq!(sa, sb);
    assert_eq!(a.state(), b.state());
    let (sa, sb) = (a.step([f32::NEG_INFINITY]).unwrap(), b.step([-2.0]).unwrap());
    assert_eq!((sa, a.state()), (sb, b.state()));

    // MountainCarContinuous: the clipped force drives the dynamics, the UNCLIPPED action the reward.
    let (mut a, mut b) = (ContinuousMountainCar::new(), ContinuousMountainCar::new());
    for e in [&mut a, &mut b] {
        e.reset(Some(0)).unwrap();
        e.set_state_f32([-0.5, 0.01]);
    }
    let (sa, sb) = (a.step([1.0]).unwrap(), b.step([3.0]).unwrap());
    // Equal up to float32 rounding: gymnasium computes `force * power` in float32 for an in-bounds action and in
    // f64 for a clipped one, so the last bit may differ.
    for (x, y) in a.state().iter().zip(b.state()) {
        assert!((x - y).abs() <= 1e-8, "{:?} vs {:?}", a.state(), b.state());
    }
    assert_eq!(sa.reward, -0.1);
    assert_eq!(sb.reward, -(9.0 * 0.1));
}

// ---- Dynamics at thresholds. ----

#[test]
fn cartpole_terminates_strictly_beyond_the_thresholds_with_reward_one() {
    let x_thr = 2.4f64;
    let th_thr = 12.0 * 2.0 * PI / 360.0;
    let mut env = CartPole::new();
    // With zero velocities the Euler step keeps x and theta, so the thresholds are hit exactly.
    for (state, terminated) in [
        ([x_thr, 0.0, 0.0, 0.0], false),
        ([x_thr.next_up(), 0.0, 0.0, 0.0], true),
        ([-x_thr, 0.0, 0.0, 0.0], false),
        ([(-x_thr).next_down(), 0.0, 0.0, 0.0], true),
        ([0.0, 0.0, th_thr, 0.0], false),
        ([0.0, 0.0, th_thr.next_up(), 0.0], true),
        ([0.0, 0.0, -th_thr, 0.0], false),
        ([0.0, 0.0, (-th_thr).next_down(), 0.0], true),
    ] {
        env.set_state(state);
        let s = env.step(1).unwrap();
        assert_eq!(s.terminated, terminated, "{state:?}");
        assert_eq!(s.reward, 1.0, "reward 1 on every step, the failing one included");
        assert!(!s.truncated);
    }
    assert_eq!(th_thr, 0.20943951023931953, "gymnasium's theta_threshold_radians");
}

#[test]
fn cartpole_sutton_barto_reward() {
    let mut env = CartPole::with_config(CartPoleConfig { sutton_barto_reward: true }).unwrap();
    env.reset(Some(0)).unwrap();
    let mut rewards = Vec::new();
    loop {
        let s = env.step(0).unwrap();
        rewards.push(s.reward);
        if s.terminated {
            break;
        }
    }
    let (last, rest) = rewards.split_last().unwrap();
    assert_eq!(*last, -1.0);
    assert!(!rest.is_empty() && rest.iter().all(|r| *r == 0.0), "{rewards:?}");
    // Same dynamics as the default reward.
    let mut plain = CartPole::new();
    plain.reset(Some(0)).unwrap();
    let n = (0..).take_while(|_| !plain.step(0).unwrap().terminated).count() + 1;
    assert_eq!(n, rewards.len());
    // Through the registry.
    let mut env = registry::make_with("CartPole-v1", &Options::parse(["sutton_barto_reward=true"]).unwrap()).unwrap();
    let mut obs = [0.0f32; 4];
    env.reset_into(Some(0), &mut obs).unwrap();
    assert_eq!(env.step_into(ActionValue::Discrete(0), &mut obs).unwrap().reward, 0.0);
}

#[test]
fn mountain_car_wall_goal_and_goal_velocity() {
    let mut env = MountainCar::new();
    // Hitting the left wall stops the car.
    env.set_state([-1.19, -0.05]);
    let s = env.step(0).unwrap();
    assert_eq!(env.state(), [-1.2, 0.0]);
    assert_eq!((s.reward, s.terminated), (-1.0, false));
    // Velocity is capped at 0.07.
    env.set_state([-0.5, 0.0699]);
    env.step(2).unwrap();
    assert_eq!(env.state()[1], 0.07);
    // Goal: position >= 0.5 with velocity >= goal_velocity.
    env.set_state([0.45, 0.06]);
    assert!(env.step(2).unwrap().terminated);
    let mut strict = MountainCar::with_config(MountainCarConfig { goal_velocity: 0.07 }).unwrap();
    strict.set_state([0.45, 0.06]);
    assert!(!strict.step(1).unwrap().terminated);
    let o = Options::parse(["goal_velocity=0.07"]).unwrap();
    assert_eq!(MountainCar::from_options(&o).unwrap().config().goal_velocity, 0.07);
    assert!(MountainCar::with_config(MountainCarConfig { goal_velocity: f64::NAN }).is_err());

    let mut c = ContinuousMountainCar::new();
    c.set_state([-1.19, -0.05]);
    c.step([-1.0]).unwrap();
    assert_eq!(c.state(), [f64::from(-1.2f32), 0.0]);
    assert!(c.state_is_f32());
    // Goal at 0.45 with a +100 bonus.
    c.set_state_f32([0.44, 0.02]);
    let s = c.step([0.0]).unwrap();
    assert!(s.terminated && s.reward == 100.0);
    let mut strict = ContinuousMountainCar::with_config(ContinuousMountainCarConfig { goal_velocity: 0.05 }).unwrap();
    strict.set_state_f32([0.44, 0.02]);
    assert!(!strict.step([0.0]).unwrap().terminated);
}

#[test]
fn acrobot_wraps_angles_bounds_velocities_and_terminates() {
    let mut env = Acrobot::new();
    for seed in 0..5 {
        env.reset(Some(seed)).unwrap();
        env.set_state([3.1, -3.1, 12.0, 28.0]);
        for t in 0..200 {
            let s = env.step(t % 3).unwrap();
            let [t1, t2, d1, d2] = env.state();
            assert!((-PI..=PI).contains(&t1) && (-PI..=PI).contains(&t2), "{:?}", env.state());
            assert!(d1.abs() <= 4.0 * PI && d2.abs() <= 9.0 * PI, "{:?}", env.state());
            assert!(env.observation_space().contains_box(&s.obs), "{:?}", s.obs);
            assert_eq!(s.reward, if s.terminated { 0.0 } else { -1.0 });
            assert_eq!(s.terminated, -t1.cos() - (t2 + t1).cos() > 1.0);
            if s.terminated {
                break;
            }
        }
    }
    // Book and NIPS dynamics differ only through the dtheta1^2 term.
    let mut nips = Acrobot::with_config(AcrobotConfig { book_or_nips: AcrobotDynamics::Nips }).unwrap();
    let mut book = Acrobot::new();
    for e in [&mut nips, &mut book] {
        e.set_state([0.3, 0.5, 0.0, 0.0]);
        e.step(1).unwrap();
    }
    let (n, b) = (nips.state(), book.state());
    assert_ne!(n, b);
    // Without any angular velocity for the missing term to act on, the first RK4 stage agrees; the step
    // still differs as the velocities build up, but only slightly.
    assert!(n.iter().zip(b).all(|(x, y)| (x - y).abs() < 0.05), "{n:?} vs {b:?}");
    let o = Options::parse(["book_or_nips=nips"]).unwrap();
    assert_eq!(Acrobot::from_options(&o).unwrap().config().book_or_nips, AcrobotDynamics::Nips);
    let bad = Options::parse(["book_or_nips=paper"]).unwrap();
    assert!(Acrobot::from_options(&bad).unwrap_err().to_string().contains("paper"));
}

#[test]
fn pendulum_dynamics_reward_and_gravity_option() {
    let mut env = Pendulum::new();
    // Upright and still with no torque: stays, cost 0.
    env.set_state([0.0, 0.0]);
    let s = env.step([0.0]).unwrap();
    assert_eq!((s.reward, env.state()), (0.0, [0.0, 0.0]));
    // Hanging down (theta = pi): cost pi^2 from the state before the step.
    env.set_state([PI, 0.0]);
    let s = env.step([0.0]).unwrap();
    assert!((s.reward + PI * PI).abs() < 1e-12, "{}", s.reward);
    // theta is not wrapped in the state, but the cost normalises it: 2 pi + 0.1 costs like 0.1.
    let mut a = Pendulum::new();
    a.set_state([2.0 * PI + 0.1, 0.0]);
    let ra = a.step([0.0]).unwrap().reward;
    assert!((ra + 0.01).abs() < 1e-12, "{ra}");
    assert!(a.state()[0] > PI);
    // The speed is capped at 8.
    a.set_state([1.5, 7.9]);
    a.step([2.0]).unwrap();
    assert_eq!(a.state()[1], 8.0);
    // g scales the gravity term: theta_dot' = theta_dot + (3 g / 2 sin(theta)) dt.
    let mut moon = Pendulum::with_config(PendulumConfig { g: 1.62 }).unwrap();
    moon.set_state([0.5, 0.0]);
    moon.step([0.0]).unwrap();
    assert!((moon.state()[1] - 3.0 * 1.62 / 2.0 * 0.5f64.sin() * 0.05).abs() < 1e-15);
    let o = Options::parse(["g=9.81"]).unwrap();
    assert_eq!(Pendulum::from_options(&o).unwrap().config().g, 9.81);
    let bad = Options::parse(["g=heavy"]).unwrap();
    assert!(Pendulum::from_options(&bad).unwrap_err().to_string().contains("heavy"));
    assert!(Pendulum::with_config(PendulumConfig { g: f64::INFINITY }).is_err());
}

// ---- Registry. ----

#[test]
fn registry_entries_match_gymnasium() {
    let expected = [
        ("CartPole-v1", 500, Some(475.0), 4, Some(2), &["sutton_barto_reward"][..]),
        ("MountainCar-v0", 200, Some(-110.0), 2, Some(3), &["goal_velocity"][..]),
        ("MountainCarContinuous-v0", 999, Some(90.0), 2, None, &["goal_velocity"][..]),
        ("Acrobot-v1", 500, Some(-100.0), 6, Some(3), &["book_or_nips"][..]),
        ("Pendulum-v1", 200, None, 3, None, &["g"][..]),
    ];
    for (id, limit, threshold, obs_dim, n_actions, options) in expected {
        let spec = registry::spec(id).unwrap();
        assert_eq!(spec.max_episode_steps, Some(limit), "{id}");
        assert_eq!(spec.reward_threshold, threshold, "{id}");
        assert!(spec.make_tabular.is_none(), "{id}");
        let keys: Vec<&str> = spec.options.iter().map(|o| o.key).collect();
        assert_eq!(keys, options, "{id}");
        assert!(spec.options.iter().all(|o| !o.help.is_empty() && !o.default.is_empty()));
        let mut env = registry::make(id).unwrap();
        assert_eq!(env.observation_space().flat_dim(), obs_dim, "{id}");
        assert_eq!(env.action_space().n(), n_actions, "{id}");
        let mut obs = vec![0.0f32; obs_dim];
        env.reset_into(Some(0), &mut obs).unwrap();
        assert!(env.observation_space().contains_box(&obs), "{id}: {obs:?}");
        assert!(matches!(registry::make_tabular(id, &Options::new()), Err(EnvError::Unsupported(_))));
    }
    // Spaces printed as gymnasium prints them.
    assert_eq!(
        registry::make("MountainCarContinuous-v0").unwrap().action_space().to_string(),
        "Box(-1, 1, (1,), float32)"
    );
    assert_eq!(
        registry::make("Pendulum-v1").unwrap().observation_space().to_string(),
        "Box([-1 -1 -8], [1 1 8], (3,), float32)"
    );
    // Unknown options and bad values are errors naming them.
    let err = registry::make_with("CartPole-v1", &Options::parse(["gravity=3"]).unwrap()).err().unwrap();
    assert!(err.to_string().contains("gravity") && err.to_string().contains("sutton_barto_reward"), "{err}");
    let err = registry::make_with("MountainCar-v0", &Options::parse(["goal_velocity=fast"]).unwrap()).err().unwrap();
    assert!(err.to_string().contains("fast"), "{err}");
    // max_episode_steps overrides the limit.
    let mut env = registry::make_with("CartPole-v1", &Options::parse(["max_episode_steps=3"]).unwrap()).unwrap();
    let mut obs = [0.0f32; 4];
    env.reset_into(Some(0), &mut obs).unwrap();
    let flags: Vec<bool> =
        (0..3).map(|t| env.step_into(ActionValue::Discrete(t % 2), &mut obs).unwrap().truncated).collect();
    assert_eq!(flags, [false, false, true]);
}

#[test]
fn wrong_length_observation_buffers_are_errors_that_touch_nothing() {
    let mut env = registry::make("CartPole-v1").unwrap();
    let e = env.reset_into(Some(0), &mut [0.0; 3]).unwrap_err().to_string();
    assert!(e.contains("has 3 elements") && e.contains("flat_dim = 4"), "{e}");
    let mut obs = [0.0f32; 4];
    env.reset_into(Some(0), &mut obs).unwrap();
    let first = obs;
    let e = env.step_into(ActionValue::Discrete(0), &mut [0.0; 5]).unwrap_err().to_string();
    assert!(e.contains("has 5 elements"), "{e}");
    // The rejected step did not advance the env: stepping now equals the first step of a fresh seed-0 episode.
    let mut fresh = registry::make("CartPole-v1").unwrap();
    let mut obs2 = [0.0f32; 4];
    fresh.reset_into(Some(0), &mut obs2).unwrap();
    assert_eq!(first, obs2);
    env.step_into(ActionValue::Discrete(0), &mut obs).unwrap();
    fresh.step_into(ActionValue::Discrete(0), &mut obs2).unwrap();
    assert_eq!(obs, obs2);
}
