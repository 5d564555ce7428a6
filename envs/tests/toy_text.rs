//! Behaviour of the toy-text envs through `Env`: sampling matches the model (chi-square), errors, seeding, the
//! registry's time limits, Taxi's action mask and fickle passenger, FrozenLake's options and random maps.
use std::collections::BTreeMap;

use bellman_envs::toy_text::{
    CliffWalking, CliffWalkingConfig, FrozenLake, FrozenLakeConfig, FrozenLakeMap, Taxi, TaxiConfig,
    generate_random_map, has_path_to_goal,
};
use bellman_envs::{ActionValue, Env, EnvError, Mdp, Options, Outcome, registry};

/// Chi-square statistic of `counts` against `probs` over `n` draws.
fn chi_square(counts: &[u64], probs: &[f64], n: u64) -> f64 {
    counts
        .iter()
        .zip(probs)
        .map(|(&c, &p)| {
            let e = p * n as f64;
            (c as f64 - e).powi(2) / e
        })
        .sum()
}

/// Lets the sampling helper set the state of each concrete env.
trait SetState {
    fn put(&mut self, s: usize);
}
impl SetState for FrozenLake {
    fn put(&mut self, s: usize) {
        self.set_state(s).unwrap();
    }
}
impl SetState for Taxi {
    fn put(&mut self, s: usize) {
        self.set_state(s).unwrap();
    }
}
impl SetState for CliffWalking {
    fn put(&mut self, s: usize) {
        self.set_state(s).unwrap();
    }
}

/// Steps `n` times from state `s` with action `a` (putting the env back on `s` before each step) and returns the
/// chi-square statistic of the observed outcomes against the model's, with outcomes that look alike (same next
/// state, reward and flag) grouped, and the number of groups. Also checks `info.prob` on every step.
fn sampled<E>(env: &mut E, s: usize, a: usize, n: u64) -> (f64, usize)
where
    E: Env<Obs = usize, Action = usize> + Mdp + SetState,
{
    env.reset(Some(12345)).unwrap();
    let key = |next: usize, reward: f64, term: bool| (next, reward.to_bits(), term);
    let mut expected: BTreeMap<(usize, u64, bool), f64> = BTreeMap::new();
    for o in env.outcomes(s, a) {
        *expected.entry(key(o.next_state, o.reward, o.terminal)).or_default() += o.prob;
    }
    let mut counts: BTreeMap<(usize, u64, bool), u64> = expected.keys().map(|k| (*k, 0)).collect();
    for _ in 0..n {
        env.put(s);
        let st = env.step(a).unwrap();
        let probs: Vec<f64> = env
            .outcomes(s, a)
            .iter()
            .filter(|o| key(o.next_state, o.reward, o.terminal) == key(st.obs, st.reward, st.terminated))
            .map(|o| o.prob)
            .collect();
        assert!(probs.contains(&st.info.prob.unwrap()), "info.prob {:?} not among {probs:?}", st.info.prob);
        *counts.get_mut(&key(st.obs, st.reward, st.terminated)).expect("an outcome the model does not have") += 1;
    }
    let c: Vec<u64> = counts.values().copied().collect();
    let p: Vec<f64> = expected.values().copied().collect();
    (chi_square(&c, &p, n), c.len())
}

// Chi-square critical values at p = 0.001 (any standard table): df 1: 10.83, df 2: 13.82.
const CHI2_DF1_999: f64 = 10.83;
const CHI2_DF2_999: f64 = 13.82;

#[test]
fn frozen_lake_samples_match_the_model() {
    let mut env = FrozenLake::new(FrozenLakeConfig::default()).unwrap();
    // State 6 = (1, 2), down: left into hole 5, down to 10, right into hole 7, 1/3 each.
    let (chi, groups) = sampled(&mut env, 6, 1, 30_000);
    assert_eq!(groups, 3);
    assert!(chi < CHI2_DF2_999, "chi-square {chi} with 2 degrees of freedom");
    // State 0, left: stays (up slip or left bump) with 2/3, down to 4 with 1/3.
    let (chi, groups) = sampled(&mut env, 0, 0, 30_000);
    assert_eq!(groups, 2);
    assert!(chi < CHI2_DF1_999, "chi-square {chi} with 1 degree of freedom");
}

#[test]
fn rainy_taxi_and_slippery_cliff_samples_match_the_model() {
    let mut taxi = Taxi::new(TaxiConfig { is_rainy: true, ..Default::default() }).unwrap();
    // (2, 2) heading south: 0.8 to (3, 2), 0.1 drift east, 0.1 drift west.
    let (chi, groups) = sampled(&mut taxi, Taxi::encode(2, 2, 0, 1), 0, 30_000);
    assert_eq!(groups, 3);
    assert!(chi < CHI2_DF2_999, "chi-square {chi}");
    let mut cliff = CliffWalking::new(CliffWalkingConfig { is_slippery: true }).unwrap();
    // Start, up: stay (-1), up to 24 (-1), into the cliff (-100, back to 36): 1/3 each.
    let (chi, groups) = sampled(&mut cliff, 36, 0, 30_000);
    assert_eq!(groups, 3);
    assert!(chi < CHI2_DF2_999, "chi-square {chi}");
}

#[test]
fn taxi_resets_uniformly_over_its_300_start_states() {
    let mut env = Taxi::new(TaxiConfig::default()).unwrap();
    let n = 60_000u64;
    let mut counts = vec![0u64; 500];
    env.reset(Some(7)).unwrap();
    for _ in 0..n {
        let (s, info) = env.reset(None).unwrap();
        assert_eq!(info.action_mask, Some(env.action_mask(s)));
        counts[s] += 1;
    }
    let support: Vec<usize> = (0..500).filter(|&s| env.initial_distribution()[s] > 0.0).collect();
    assert_eq!(support.len(), 300);
    assert!(counts.iter().enumerate().all(|(s, &c)| c == 0 || support.contains(&s)));
    let c: Vec<u64> = support.iter().map(|&s| counts[s]).collect();
    let chi = chi_square(&c, &vec![1.0 / 300.0; 300], n);
    // df 299 at p = 0.001: 380.3 (Wilson-Hilferty approximation).
    assert!(chi < 380.3, "chi-square {chi} with 299 degrees of freedom");
}

#[test]
fn errors_name_the_problem() {
    let mut env = FrozenLake::new(FrozenLakeConfig { is_slippery: false, ..Default::default() }).unwrap();
    assert!(matches!(env.step(0), Err(EnvError::NeedsReset(_))));
    env.reset(Some(0)).unwrap();
    let err = env.step(4).unwrap_err();
    assert!(matches!(err, EnvError::InvalidAction { .. }));
    assert!(err.to_string().contains("0..4"), "{err}");
    // Right to 1, then down into the hole at 5: terminated, then NeedsReset.
    assert!(!env.step(2).unwrap().terminated);
    let s = env.step(1).unwrap();
    assert!(s.terminated && s.obs == 5 && s.reward == 0.0);
    assert!(matches!(env.step(0), Err(EnvError::NeedsReset(_))));
    env.reset(None).unwrap();
    assert_eq!(env.step(2).unwrap().obs, 1);
    assert!(env.set_state(16).is_err());

    let mut taxi = Taxi::new(TaxiConfig::default()).unwrap();
    assert!(matches!(taxi.step(0), Err(EnvError::NeedsReset(_))));
    taxi.reset(Some(0)).unwrap();
    assert!(matches!(taxi.step(6), Err(EnvError::InvalidAction { .. })));
    assert!(Taxi::new(TaxiConfig { rainy_probability: 1.5, ..Default::default() }).is_err());
    assert!(Taxi::new(TaxiConfig { fickle_probability: -0.1, ..Default::default() }).is_err());
}

fn bad_map(rows: &[&str]) -> String {
    let cfg = FrozenLakeConfig {
        map: FrozenLakeMap::Custom(rows.iter().map(|r| r.to_string()).collect()),
        ..Default::default()
    };
    match FrozenLake::new(cfg) {
        Err(e @ EnvError::BadMap(_)) => e.to_string(),
        other => panic!("expected BadMap for {rows:?}, got {other:?}"),
    }
}

#[test]
fn malformed_maps_are_bad_map_errors() {
    assert!(bad_map(&["SFF", "FG"]).contains("row 1"));
    let e = bad_map(&["SFX", "FFG"]);
    assert!(e.contains("'X'") && e.contains("row 0, column 2"), "{e}");
    assert!(bad_map(&["FFF", "FFG"]).contains("no start"));
    assert!(bad_map(&["SFF", "FFH"]).contains("no goal"));
    assert!(bad_map(&[]).contains("no rows"));
    assert!(bad_map(&[""]).contains("empty"));
    // Gymnasium accepts a map without a path to the goal; so do we.
    assert!(
        FrozenLake::new(FrozenLakeConfig {
            map: FrozenLakeMap::Custom(vec!["SH".into(), "HG".into()]),
            ..Default::default()
        })
        .is_ok()
    );
    let err = registry::make_with("FrozenLake-v1", &Options::parse(["desc=SFF,FG"]).unwrap()).err().unwrap();
    assert!(matches!(err, EnvError::BadMap(_)), "{err}");
    let err = registry::make_with("FrozenLake-v1", &Options::parse(["map_name=5x5"]).unwrap()).err().unwrap();
    assert!(err.to_string().contains("5x5"), "{err}");
    let err = registry::make_with("FrozenLake-v1", &Options::parse(["success_rate=1.5"]).unwrap()).err().unwrap();
    assert!(matches!(err, EnvError::BadOption { .. }), "{err}");
    let err = registry::make_with("FrozenLake-v1", &Options::parse(["reward_schedule=1,0"]).unwrap()).err().unwrap();
    assert!(err.to_string().contains("reward_schedule"), "{err}");
}

#[test]
fn frozen_lake_options_reach_the_model() {
    let o =
        Options::parse(["is_slippery=true", "success_rate=0.5", "reward_schedule=2,-1,-0.1", "map_name=8x8"]).unwrap();
    let env = registry::make_tabular("FrozenLake-v1", &o).unwrap();
    assert_eq!(env.num_states(), 64);
    // (0, 0) right: [up (stay, -0.1), right to 1 (-0.1), down to 8 (-0.1)] with [0.25, 0.5, 0.25].
    let probs: Vec<f64> = env.outcomes(0, 2).iter().map(|o| o.prob).collect();
    assert_eq!(probs, vec![0.25, 0.5, 0.25]);
    assert!(env.outcomes(0, 2).iter().all(|o| o.reward == -0.1));
    // (7, 6) right into the goal 63: reward 2.
    assert_eq!(env.outcomes(62, 2)[1], Outcome { prob: 0.5, next_state: 63, reward: 2.0, terminal: true });
    // (5, 0) down... (4, 1) down into the hole at (5, 1) = 41: reward -1.
    assert_eq!(env.outcomes(33, 1)[1], Outcome { prob: 0.5, next_state: 41, reward: -1.0, terminal: true });
    assert_eq!(env.grid_shape(), Some((8, 8)));
    assert_eq!(env.state_label(41), Some('H'));
    // FrozenLake8x8-v1 with map_name=4x4 is the 4x4 map.
    let small = registry::make_tabular("FrozenLake8x8-v1", &Options::parse(["map_name=4x4"]).unwrap()).unwrap();
    assert_eq!(small.num_states(), 16);
}

#[test]
fn random_maps_are_valid_reproducible_and_reachable_from_options() {
    let a = generate_random_map(8, 0.8, Some(3)).unwrap();
    assert_eq!(a, generate_random_map(8, 0.8, Some(3)).unwrap());
    assert_ne!(a, generate_random_map(8, 0.8, Some(4)).unwrap());
    for seed in 0..50 {
        let m = generate_random_map(5, 0.6, Some(seed)).unwrap();
        assert!(has_path_to_goal(&m), "{m:?}");
        assert!(m[0].starts_with('S') && m[4].ends_with('G') && m.iter().all(|r| r.len() == 5));
    }
    // p > 1 is p = 1 (Gymnasium's min(1, p)): all frozen.
    assert_eq!(generate_random_map(3, 2.0, Some(0)).unwrap(), vec!["SFF", "FFF", "FFG"]);
    assert!(generate_random_map(1, 0.8, Some(0)).is_err());
    assert!(generate_random_map(513, 0.8, Some(0)).unwrap_err().to_string().contains("2..=512"));
    assert!(generate_random_map(4, 0.0, Some(0)).is_err());
    assert!(generate_random_map(4, f64::NAN, Some(0)).is_err());
    // Hopeless: holes almost everywhere on a big board.
    assert!(generate_random_map(12, 0.05, Some(0)).is_err());

    let o = Options::parse(["map_name=random", "map_size=6", "map_seed=11"]).unwrap();
    let cfg = FrozenLakeConfig::from_options("FrozenLake-v1", &o, FrozenLakeConfig::default()).unwrap();
    assert_eq!(cfg.map, FrozenLakeMap::Random { size: 6, p: 0.8, seed: Some(11) });
    let env = FrozenLake::new(cfg).unwrap();
    assert_eq!(env.desc(), generate_random_map(6, 0.8, Some(11)).unwrap().as_slice());
    // map_seed alone implies a random map; with a named map it is an error.
    let env = registry::make_tabular("FrozenLake-v1", &Options::parse(["map_seed=5"]).unwrap()).unwrap();
    assert_eq!(env.num_states(), 64);
    assert!(registry::make_tabular("FrozenLake-v1", &Options::parse(["map_name=4x4", "map_p=0.5"]).unwrap()).is_err());
}

/// Runs `steps` steps of a fixed action pattern, resetting (without a seed) after each episode.
fn trajectory(env: &mut FrozenLake, seed: u64, steps: usize) -> Vec<(usize, f64, bool)> {
    let mut out = Vec::with_capacity(steps);
    env.reset(Some(seed)).unwrap();
    for t in 0..steps {
        let s = env.step([1, 2, 2, 1][t % 4]).unwrap();
        out.push((s.obs, s.reward, s.terminated));
        if s.terminated {
            let (s0, _) = env.reset(None).unwrap();
            out.push((s0, 0.0, false));
        }
    }
    out
}

#[test]
fn seeding_is_reproducible() {
    let mut a = FrozenLake::new(FrozenLakeConfig::default()).unwrap();
    let mut b = FrozenLake::new(FrozenLakeConfig::default()).unwrap();
    let ta = trajectory(&mut a, 42, 400);
    assert_eq!(ta, trajectory(&mut b, 42, 400));
    assert_ne!(ta, trajectory(&mut b, 43, 400));
    // Reseeding an env that has run gives the same episode again.
    assert_eq!(ta, trajectory(&mut a, 42, 400));
    // An env never seeded still runs (OS entropy).
    let mut c = FrozenLake::new(FrozenLakeConfig::default()).unwrap();
    assert_eq!(c.reset(None).unwrap().0, 0);
    c.step(1).unwrap();
}

#[test]
fn time_limits_truncate_as_registered() {
    let o = Options::parse(["is_slippery=false"]).unwrap();
    let mut env = registry::make_with("FrozenLake-v1", &o).unwrap();
    let mut obs = [0.0f32];
    env.reset_into(Some(0), &mut obs).unwrap();
    for t in 1..=100 {
        let s = env.step_into(ActionValue::Discrete(0), &mut obs).unwrap(); // left: bump, stay on 0
        assert_eq!(obs[0], 0.0);
        assert!(!s.terminated);
        assert_eq!(s.truncated, t == 100, "step {t}");
    }
    assert!(matches!(env.step_into(ActionValue::Discrete(0), &mut obs), Err(EnvError::NeedsReset(_))));
    // max_episode_steps overrides; FrozenLake8x8-v1 has 200.
    let mut env = registry::make_with("FrozenLake8x8-v1", &o.clone().with("max_episode_steps", 3)).unwrap();
    env.reset_into(Some(0), &mut obs).unwrap();
    let flags: Vec<bool> =
        (0..3).map(|_| env.step_into(ActionValue::Discrete(3), &mut obs).unwrap().truncated).collect();
    assert_eq!(flags, vec![false, false, true]);
    assert_eq!(registry::spec("FrozenLake8x8-v1").unwrap().max_episode_steps, Some(200));
    assert_eq!(registry::spec("Taxi-v4").unwrap().max_episode_steps, Some(200));
    assert_eq!(registry::spec("Taxi-v4").unwrap().reward_threshold, Some(8.0));
    assert_eq!(registry::spec("FrozenLake-v1").unwrap().reward_threshold, Some(0.70));
    assert_eq!(registry::spec("FrozenLake8x8-v1").unwrap().reward_threshold, Some(0.85));
    // CliffWalking has no limit: 1000 steps up stay in the episode.
    let mut env = registry::make("CliffWalking-v1").unwrap();
    env.reset_into(Some(0), &mut obs).unwrap();
    for _ in 0..1000 {
        let s = env.step_into(ActionValue::Discrete(0), &mut obs).unwrap();
        assert!(!s.truncated && !s.terminated);
    }
    assert_eq!(obs[0], 0.0);
}

#[test]
fn cliff_walking_follows_sutton_and_barto() {
    let mut env = CliffWalking::new(CliffWalkingConfig::default()).unwrap();
    env.reset(Some(0)).unwrap();
    // The optimal path: up, 11 x right, down: return -13.
    let mut ret = 0.0;
    let mut last = None;
    for a in std::iter::once(0).chain(std::iter::repeat_n(1, 11)).chain(std::iter::once(2)) {
        let s = env.step(a).unwrap();
        ret += s.reward;
        last = Some(s);
    }
    let last = last.unwrap();
    assert_eq!((last.obs, last.terminated, ret), (47, true, -13.0));
    assert_eq!(env.state_label(40), Some('C'));
    assert_eq!(env.grid_shape(), Some((4, 12)));
    assert!(
        registry::make_tabular("CliffWalkingSlippery-v1", &Options::parse(["is_slippery=false"]).unwrap())
            .unwrap()
            .outcomes(36, 0)
            .len()
            == 1
    );
}

#[test]
fn taxi_action_mask_marks_the_actions_that_change_the_state() {
    let env = Taxi::new(TaxiConfig::default()).unwrap();
    for s in 0..500 {
        let mut expected = 0u64;
        for a in 0..6 {
            if env.outcomes(s, a)[0].next_state != s {
                expected |= 1 << a;
            }
        }
        assert_eq!(env.action_mask(s), expected, "state {s} = {:?}", Taxi::decode(s));
    }
    for s in 0..500 {
        assert_eq!(Taxi::encode(Taxi::decode(s).0, Taxi::decode(s).1, Taxi::decode(s).2, Taxi::decode(s).3), s);
    }
}

#[test]
fn taxi_delivery_terminates_with_20() {
    let mut env = Taxi::new(TaxiConfig::default()).unwrap();
    env.reset(Some(1)).unwrap();
    env.set_state(Taxi::encode(4, 3, 4, 3)).unwrap(); // at B with the passenger, going to B
    let s = env.step(5).unwrap();
    assert_eq!((Taxi::decode(s.obs), s.reward, s.terminated), ((4, 3, 3, 3), 20.0, true));
    assert!(matches!(env.step(0), Err(EnvError::NeedsReset(_))));
    env.reset(None).unwrap();
    env.set_state(Taxi::encode(2, 2, 4, 3)).unwrap();
    let s = env.step(5).unwrap(); // not at a stand
    assert_eq!((s.reward, s.terminated, s.obs), (-10.0, false, Taxi::encode(2, 2, 4, 3)));
}

#[test]
fn fickle_passenger_changes_destination_once() {
    let cfg = TaxiConfig { fickle_passenger: true, fickle_probability: 1.0, ..Default::default() };
    let mut env = Taxi::new(cfg).unwrap();
    let mut counts = [0u64; 4];
    let n = 3000;
    for i in 0..n {
        env.reset(Some(i)).unwrap();
        env.set_state(Taxi::encode(0, 0, 4, 1)).unwrap(); // at R with the passenger, going to G
        let s = env.step(0).unwrap(); // south: moved, the passenger changes their mind
        let (row, col, pass, dest) = Taxi::decode(s.obs);
        assert_eq!((row, col, pass), (1, 0, 4));
        assert_ne!(dest, 1);
        counts[dest] += 1;
        let s2 = env.step(1).unwrap(); // north: no second change
        assert_eq!(Taxi::decode(s2.obs).3, dest);
    }
    let c = [counts[0], counts[2], counts[3]];
    let chi = chi_square(&c, &[1.0 / 3.0; 3], n);
    assert!(chi < CHI2_DF2_999, "new destinations {counts:?}, chi-square {chi}");
    // Never fickle with probability 0, nor when the option is off.
    for cfg in [
        TaxiConfig { fickle_passenger: true, fickle_probability: 0.0, ..Default::default() },
        TaxiConfig { fickle_passenger: false, fickle_probability: 1.0, ..Default::default() },
    ] {
        let mut env = Taxi::new(cfg).unwrap();
        env.reset(Some(0)).unwrap();
        env.set_state(Taxi::encode(0, 0, 4, 1)).unwrap();
        assert_eq!(Taxi::decode(env.step(0).unwrap().obs).3, 1);
    }
}

#[test]
fn sampling_helper_detects_a_wrong_model() {
    // The chi-square check is not vacuous: sampling FrozenLake's state 6 / down against a model that puts 1/2
    // on the middle outcome fails it.
    let mut env = FrozenLake::new(FrozenLakeConfig::default()).unwrap();
    env.reset(Some(5)).unwrap();
    let mut counts = [0u64; 3];
    let n = 30_000;
    for _ in 0..n {
        env.set_state(6).unwrap();
        let s = env.step(1).unwrap();
        counts[[5, 10, 7].iter().position(|&x| x == s.obs).unwrap()] += 1;
    }
    assert!(chi_square(&counts, &[0.25, 0.5, 0.25], n) > CHI2_DF2_999);
    assert!(chi_square(&counts, &[1.0 / 3.0; 3], n) < CHI2_DF2_999);
}
