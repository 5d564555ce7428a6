//! GridWorld: the presets reproduce Sutton and Barto's numbers (`tests/data/sutton_barto.md`) through their
//! models, and the map format's walls, starts, terminals, teleports, slips and errors behave as documented.
use bellman_envs::gridworld::{GridWorld, GridWorldConfig, Teleport};
use bellman_envs::{ActionValue, Env, EnvError, Mdp, Options, Outcome, registry};

/// Synchronous policy evaluation of the equiprobable random policy, until the largest change is below `tol`
/// (or after `max_sweeps` sweeps); returns the values and the number of sweeps.
fn random_policy_values(m: &dyn Mdp, gamma: f64, tol: f64, max_sweeps: usize) -> (Vec<f64>, usize) {
    let (ns, na) = (m.num_states(), m.num_actions());
    let mut v = vec![0.0; ns];
    for sweep in 1..=max_sweeps {
        let mut next = vec![0.0; ns];
        for (s, out) in next.iter_mut().enumerate() {
            for a in 0..na {
                for o in m.outcomes(s, a) {
                    let cont = if o.terminal { 0.0 } else { gamma * v[o.next_state] };
                    *out += o.prob * (o.reward + cont) / na as f64;
                }
            }
        }
        let delta = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        v = next;
        if delta < tol {
            return (v, sweep);
        }
    }
    (v, max_sweeps)
}

/// Value iteration (synchronous) to `tol`.
fn optimal_values(m: &dyn Mdp, gamma: f64, tol: f64) -> Vec<f64> {
    let (ns, na) = (m.num_states(), m.num_actions());
    let mut v = vec![0.0; ns];
    loop {
        let next: Vec<f64> = (0..ns)
            .map(|s| {
                (0..na)
                    .map(|a| {
                        m.outcomes(s, a)
                            .iter()
                            .map(|o| o.prob * (o.reward + if o.terminal { 0.0 } else { gamma * v[o.next_state] }))
                            .sum::<f64>()
                    })
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .collect();
        let delta = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        v = next;
        if delta < tol {
            return v;
        }
    }
}

fn assert_close(ours: &[f64], theirs: &[f64], tol: f64) {
    assert_eq!(ours.len(), theirs.len());
    for (s, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!((a - b).abs() <= tol, "state {s}: ours {a}, reference {b} (tolerance {tol})");
    }
}

#[test]
fn example_3_5_dynamics_are_exact() {
    let env = registry::make_tabular("GridWorld5x5-v0", &Options::new()).unwrap();
    assert_eq!((env.num_states(), env.num_actions(), env.grid_shape()), (25, 4, Some((5, 5))));
    for a in 0..4 {
        assert_eq!(env.outcomes(1, a), &[Outcome { prob: 1.0, next_state: 21, reward: 10.0, terminal: false }]);
        assert_eq!(env.outcomes(3, a), &[Outcome { prob: 1.0, next_state: 13, reward: 5.0, terminal: false }]);
    }
    // Corner (0, 0): left and up bump (-1), down and right move (0).
    let o = |s: usize, a: usize| env.outcomes(s, a)[0];
    assert_eq!(o(0, 0), Outcome { prob: 1.0, next_state: 0, reward: -1.0, terminal: false });
    assert_eq!(o(0, 3), Outcome { prob: 1.0, next_state: 0, reward: -1.0, terminal: false });
    assert_eq!(o(0, 1), Outcome { prob: 1.0, next_state: 5, reward: 0.0, terminal: false });
    assert_eq!(o(0, 2), Outcome { prob: 1.0, next_state: 1, reward: 0.0, terminal: false });
    assert_eq!(o(24, 1), Outcome { prob: 1.0, next_state: 24, reward: -1.0, terminal: false });
    // No terminal anywhere; every cell a possible start.
    assert!((0..25).all(|s| (0..4).all(|a| env.outcomes(s, a).iter().all(|o| !o.terminal))));
    assert!(env.initial_distribution().iter().all(|&p| p == 1.0 / 25.0));
}

#[test]
fn example_3_5_values_match_figures_3_2_and_3_5() {
    let env = registry::make_tabular("GridWorld5x5-v0", &Options::new()).unwrap();
    // tests/data/sutton_barto.md, section 1, full precision (tolerance 1e-6).
    #[rustfmt::skip]
    let v_pi = [
        3.308996, 8.789292, 4.427619, 5.322368, 1.492179,
        1.521588, 2.992318, 2.250140, 1.907572, 0.547403,
        0.050822, 0.738171, 0.673113, 0.358186, -0.403141,
        -0.973592, -0.435495, -0.354882, -0.585605, -1.183075,
        -1.857701, -1.345231, -1.229267, -1.422918, -1.975179,
    ];
    #[rustfmt::skip]
    let v_star = [
        21.977485, 24.419428, 21.977485, 19.419428, 17.477485,
        19.779737, 21.977485, 19.779737, 17.801763, 16.021587,
        17.801763, 19.779737, 17.801763, 16.021587, 14.419428,
        16.021587, 17.801763, 16.021587, 14.419428, 12.977485,
        14.419428, 16.021587, 14.419428, 12.977485, 11.679737,
    ];
    let (v, _) = random_policy_values(&*env, 0.9, 1e-12, 10_000);
    assert_close(&v, &v_pi, 1e-6);
    let v = optimal_values(&*env, 0.9, 1e-12);
    assert_close(&v, &v_star, 1e-6);
    // Closed form: v*(A) = 10 / (1 - 0.9^5).
    assert!((v[1] - 10.0 / (1.0 - 0.9f64.powi(5))).abs() < 1e-9);
}

#[test]
fn example_4_1_values_match_figure_4_1() {
    let env = registry::make_tabular("GridWorld4x4-v0", &Options::new()).unwrap();
    for s in [0, 15] {
        assert_eq!(env.initial_distribution()[s], 0.0);
        assert_eq!(env.state_label(s), Some('T'));
        for a in 0..4 {
            assert_eq!(env.outcomes(s, a), &[Outcome { prob: 1.0, next_state: s, reward: 0.0, terminal: true }]);
        }
    }
    // Into a terminal: -1 and terminal.
    assert_eq!(env.outcomes(1, 0), &[Outcome { prob: 1.0, next_state: 0, reward: -1.0, terminal: true }]);
    assert!((1..15).all(|s| env.initial_distribution()[s] == 1.0 / 14.0));
    // sutton_barto.md section 2: synchronous sweeps k = 1, 2, 3 and the limit.
    let (v1, _) = random_policy_values(&*env, 1.0, 0.0, 1);
    assert_close(&v1[..4], &[0.0, -1.0, -1.0, -1.0], 1e-12);
    let (v2, _) = random_policy_values(&*env, 1.0, 0.0, 2);
    assert_close(&v2[..8], &[0.0, -1.75, -2.0, -2.0, -1.75, -2.0, -2.0, -2.0], 1e-12);
    let (v3, _) = random_policy_values(&*env, 1.0, 0.0, 3);
    assert_close(&v3[..8], &[0.0, -2.4375, -2.9375, -3.0, -2.4375, -2.875, -3.0, -2.9375], 1e-12);
    let (v10, _) = random_policy_values(&*env, 1.0, 0.0, 10);
    assert_close(&v10[..4], &[0.0, -6.138, -8.352, -8.967], 5e-4);
    let (v, sweeps) = random_policy_values(&*env, 1.0, 1e-13, 10_000);
    #[rustfmt::skip]
    let limit = [0.0, -14.0, -20.0, -22.0, -14.0, -18.0, -20.0, -20.0, -20.0, -20.0, -18.0, -14.0, -22.0, -20.0, -14.0, 0.0];
    assert_close(&v, &limit, 1e-9);
    // "converged after 552 synchronous sweeps at tol 1e-13" (a different summation order may move it by one).
    assert!((551..=553).contains(&sweeps), "{sweeps} sweeps");
}

#[test]
fn presets_have_a_time_limit_and_step_as_their_model() {
    let mut env = registry::make_with("GridWorld5x5-v0", &Options::new()).unwrap();
    let mut obs = [0.0f32];
    env.reset_into(Some(3), &mut obs).unwrap();
    let mut truncated_at = None;
    for t in 1..=100 {
        let s = env.step_into(ActionValue::Discrete(t % 4), &mut obs).unwrap();
        assert!(!s.terminated);
        if s.truncated {
            truncated_at = Some(t);
        }
    }
    assert_eq!(truncated_at, Some(100));
    assert!(matches!(env.step_into(ActionValue::Discrete(0), &mut obs), Err(EnvError::NeedsReset(_))));
    // Through Env: a teleport from A.
    let mut gw = GridWorld::new(GridWorldConfig::sutton_barto_5x5()).unwrap();
    gw.reset(Some(0)).unwrap();
    gw.set_state(1).unwrap();
    let s = gw.step(3).unwrap();
    assert_eq!((s.obs, s.reward, s.terminated, s.info.prob), (21, 10.0, false, Some(1.0)));
    assert!(matches!(gw.step(9), Err(EnvError::InvalidAction { .. })));
}

fn world(map: &[&str]) -> GridWorldConfig {
    GridWorldConfig {
        map: map.iter().map(|r| r.to_string()).collect(),
        // G and H are terminals where the map has them (a terminal label missing from the map is an error).
        terminals: [('G', 1.0), ('H', -1.0)].into_iter().filter(|(l, _)| map.iter().any(|r| r.contains(*l))).collect(),
        teleports: vec![],
        step_reward: -0.04,
        bump_reward: -0.5,
        slip: 0.0,
    }
}

#[test]
fn walls_starts_terminals_and_slips() {
    let mut cfg = world(&["S#G", "..H"]);
    cfg.slip = 0.2;
    let env = GridWorld::new(cfg).unwrap();
    assert_eq!(env.initial_distribution(), &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(env.state_label(1), Some('#'));
    // Walls are unreachable absorbing states.
    assert_eq!(env.outcomes(1, 2), &[Outcome { prob: 1.0, next_state: 1, reward: 0.0, terminal: true }]);
    assert!((0..6).all(|s| (0..4).all(|a| env.outcomes(s, a).iter().all(|o| o.next_state != 1 || s == 1))));
    // From S, right into the wall with 0.8, in FrozenLake's order [down, right, up] = [to 3, wall bump, edge bump].
    let exp = [
        Outcome { prob: 0.1, next_state: 3, reward: -0.04, terminal: false },
        Outcome { prob: 0.8, next_state: 0, reward: -0.5, terminal: false },
        Outcome { prob: 0.1, next_state: 0, reward: -0.5, terminal: false },
    ];
    assert_eq!(env.outcomes(0, 2), &exp);
    // From (1, 1) right into the hole: terminal with -1; up is the wall.
    assert_eq!(env.outcomes(4, 2)[1], Outcome { prob: 0.8, next_state: 5, reward: -1.0, terminal: true });
    assert_eq!(env.outcomes(4, 3)[1], Outcome { prob: 0.8, next_state: 4, reward: -0.5, terminal: false });
    // The goal is absorbing.
    assert_eq!(env.outcomes(2, 0), &[Outcome { prob: 1.0, next_state: 2, reward: 0.0, terminal: true }]);
    // No S: uniform over open non-terminal cells.
    let env = GridWorld::new(world(&[".#G", "..H"])).unwrap();
    assert_eq!(env.initial_distribution(), &[1.0 / 3.0, 0.0, 0.0, 1.0 / 3.0, 1.0 / 3.0, 0.0]);
    // Several S: uniform over them.
    let env = GridWorld::new(world(&["S.S", "..G"])).unwrap();
    assert_eq!(env.initial_distribution(), &[0.5, 0.0, 0.5, 0.0, 0.0, 0.0]);
}

#[test]
fn teleports_jump_with_their_reward_and_may_end_the_episode() {
    let mut cfg = world(&["A.a", "B.G"]);
    cfg.teleports = vec![Teleport { from: 'A', to: 'a', reward: 3.0 }, Teleport { from: 'B', to: 'G', reward: 7.0 }];
    cfg.slip = 0.5; // teleports ignore slips
    let mut env = GridWorld::new(cfg).unwrap();
    for a in 0..4 {
        assert_eq!(env.outcomes(0, a), &[Outcome { prob: 1.0, next_state: 2, reward: 3.0, terminal: false }]);
        assert_eq!(env.outcomes(3, a), &[Outcome { prob: 1.0, next_state: 5, reward: 7.0, terminal: true }]);
    }
    env.reset(Some(0)).unwrap();
    env.set_state(3).unwrap();
    let s = env.step(0).unwrap();
    assert_eq!((s.obs, s.reward, s.terminated), (5, 7.0, true));
    assert!(matches!(env.step(0), Err(EnvError::NeedsReset(_))));
}

fn bad(cfg: GridWorldConfig) -> String {
    match GridWorld::new(cfg) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn malformed_worlds_are_errors() {
    assert!(bad(world(&["S..", ".G"])).contains("row 1"));
    assert!(bad(world(&["S.?", "..G"])).contains("'?'"));
    assert!(bad(world(&[])).contains("empty"));
    let mut c = world(&["S..", "..G"]);
    c.terminals.push(('Z', 1.0));
    assert!(bad(c).contains("'Z'"));
    let mut c = world(&["SAa", "a.G"]);
    c.teleports = vec![Teleport { from: 'A', to: 'a', reward: 1.0 }];
    assert!(bad(c).contains("more than once"));
    let mut c = world(&["SG.", "..."]);
    c.teleports = vec![Teleport { from: 'G', to: 'S', reward: 1.0 }];
    assert!(bad(c).contains("both a terminal and a teleport"));
    assert!(bad(world(&["##", "#G"])).contains("no cell to start"));
    let mut c = world(&["S.G"]);
    c.slip = 1.5;
    assert!(bad(c).contains("slip"));
    let mut c = world(&["S.G"]);
    c.step_reward = f64::NAN;
    assert!(bad(c).contains("finite"));
    assert!(matches!(GridWorld::new(world(&["S..", ".G"])), Err(EnvError::BadMap(_))));
}

#[test]
fn options_build_custom_worlds() {
    let o = Options::parse([
        "map=S.A/..a/#.G",
        "terminals=G:2.5",
        "teleports=A>a:4",
        "step_reward=-1",
        "bump_reward=-3",
        "slip=0",
    ])
    .unwrap();
    let env = registry::make_tabular("GridWorld4x4-v0", &o).unwrap();
    assert_eq!((env.num_states(), env.grid_shape()), (9, Some((3, 3))));
    assert_eq!(env.outcomes(2, 0), &[Outcome { prob: 1.0, next_state: 5, reward: 4.0, terminal: false }]);
    assert_eq!(env.outcomes(7, 2), &[Outcome { prob: 1.0, next_state: 8, reward: 2.5, terminal: true }]);
    assert_eq!(env.outcomes(0, 0), &[Outcome { prob: 1.0, next_state: 0, reward: -3.0, terminal: false }]);
    assert_eq!(env.outcomes(3, 1), &[Outcome { prob: 1.0, next_state: 3, reward: -3.0, terminal: false }]);
    assert_eq!(env.outcomes(0, 2), &[Outcome { prob: 1.0, next_state: 1, reward: -1.0, terminal: false }]);
    // `teleports=none` removes the preset's teleports.
    let env = registry::make_tabular("GridWorld5x5-v0", &Options::parse(["teleports=none"]).unwrap()).unwrap();
    assert_eq!(env.outcomes(1, 1)[0].next_state, 6);
    for (k, v) in [("terminals", "G=1"), ("teleports", "A-a:1"), ("slip", "2"), ("step_reward", "x")] {
        let err = registry::make_tabular("GridWorld4x4-v0", &Options::new().with(k, v)).err().unwrap();
        assert!(matches!(err, EnvError::BadOption { .. }), "{k}={v}: {err}");
    }
    let err = registry::make_tabular("GridWorld4x4-v0", &Options::new().with("walls", "1")).err().unwrap();
    assert!(matches!(err, EnvError::UnknownOption { .. }), "{err}");
}
