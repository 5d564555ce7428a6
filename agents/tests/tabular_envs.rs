//! Planning and learning on the registered envs: Sutton and Barto's grid worlds (Examples 3.5 and 4.1),
//! FrozenLake rolled out in the env itself, and Cliff Walking (Example 6.6). Reference numbers from
//! tests/data/sutton_barto.md, copied here.
use bellman_agents::tabular::learning::{rollout_policy, run_episodes};
use bellman_agents::tabular::planning::{CompiledMdp, Policy, ViOptions, policy_evaluation, value_iteration};
use bellman_agents::tabular::{TabularConfig, TdAlgorithm};
use bellman_envs::{Mdp, Options, make_tabular};

fn compiled(id: &str, opts: &[&str]) -> CompiledMdp {
    let env = make_tabular(id, &Options::parse(opts).unwrap()).unwrap();
    CompiledMdp::compile(&*env).unwrap()
}

fn opts(gamma: f64, tol: f64) -> ViOptions {
    ViOptions { tol, ..ViOptions::new(gamma) }
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (s, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}: state {s}: got {g}, want {w} (tol {tol})");
    }
}

#[test]
fn gridworld_5x5_is_example_3_5() {
    let m = compiled("GridWorld5x5-v0", &[]);
    assert_eq!(m.grid_shape(), Some((5, 5)));
    // Figure 3.2 (random policy) and Figure 3.5 (optimal), full precision; table rounding 5e-7 + 1e-6.
    #[rustfmt::skip]
    let fig_3_2 = [
        3.308996, 8.789292, 4.427619, 5.322368, 1.492179,
        1.521588, 2.992318, 2.250140, 1.907572, 0.547403,
        0.050822, 0.738171, 0.673113, 0.358186, -0.403141,
        -0.973592, -0.435495, -0.354882, -0.585605, -1.183075,
        -1.857701, -1.345231, -1.229267, -1.422918, -1.975179,
    ];
    #[rustfmt::skip]
    let fig_3_5 = [
        21.977485, 24.419428, 21.977485, 19.419428, 17.477485,
        19.779737, 21.977485, 19.779737, 17.801763, 16.021587,
        17.801763, 19.779737, 17.801763, 16.021587, 14.419428,
        16.021587, 17.801763, 16.021587, 14.419428, 12.977485,
        14.419428, 16.021587, 14.419428, 12.977485, 11.679737,
    ];
    let pe = policy_evaluation(&m, &Policy::UniformRandom, &opts(0.9, 1e-12)).unwrap();
    assert_close(&pe.values, &fig_3_2, 1.5e-6, "Figure 3.2");
    let vi = value_iteration(&m, &opts(0.9, 1e-12)).unwrap();
    assert_close(&vi.values, &fig_3_5, 1.5e-6, "Figure 3.5");
    assert!((vi.values[1] - 10.0 / (1.0 - 0.9f64.powi(5))).abs() < 1e-9);
}

#[test]
fn gridworld_4x4_is_example_4_1() {
    let m = compiled("GridWorld4x4-v0", &[]);
    let pe = policy_evaluation(&m, &Policy::UniformRandom, &opts(1.0, 1e-13)).unwrap();
    #[rustfmt::skip]
    let k_inf = [0.0, -14.0, -20.0, -22.0, -14.0, -18.0, -20.0, -20.0, -20.0, -20.0, -18.0, -14.0, -22.0, -20.0, -14.0, 0.0];
    assert_close(&pe.values, &k_inf, 1e-10, "k = inf");
    let rounded: Vec<f64> = pe.values.iter().map(|v| v.round()).collect();
    assert_eq!(rounded, k_inf);
    let k = |n: usize| {
        policy_evaluation(&m, &Policy::UniformRandom, &ViOptions { max_sweeps: n, ..opts(1.0, 1e-13) }).unwrap().values
    };
    let mut k1 = vec![-1.0; 16];
    (k1[0], k1[15]) = (0.0, 0.0);
    assert_eq!(k(1), k1);
    #[rustfmt::skip]
    let k2 = [0.0, -1.75, -2.0, -2.0, -1.75, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0, -1.75, -2.0, -2.0, -1.75, 0.0];
    assert_eq!(k(2), k2);
    assert_eq!(&k(3)[..8], &[0.0, -2.4375, -2.9375, -3.0, -2.4375, -2.875, -3.0, -2.9375]);
}

/// Success rate of the greedy policy of gamma-0.99 value iteration, rolled out in the env (its time limit
/// included) over 10,000 seeded episodes, and the exact finite-horizon value of that policy (gamma-1 policy
/// evaluation for exactly `limit` synchronous sweeps from V = 0 is the probability of reaching the goal within
/// `limit` steps).
fn frozen_lake_success(id: &str, limit: usize) -> (f64, f64) {
    let mut env = make_tabular(id, &Options::new()).unwrap();
    let m = CompiledMdp::compile(&*env).unwrap();
    let vi = value_iteration(&m, &opts(0.99, 1e-12)).unwrap();
    let horizon = ViOptions { max_sweeps: limit, ..opts(1.0, 1e-300) };
    let pe = policy_evaluation(&m, &Policy::Deterministic(vi.policy.clone()), &horizon).unwrap();
    let exact: f64 = env.initial_distribution().iter().zip(&pe.values).map(|(p, v)| p * v).sum();
    let (returns, lengths) = rollout_policy(&mut *env, &vi.policy, 10_000, 12345, u64::MAX).unwrap();
    assert!(lengths.iter().all(|&l| l <= limit as u64));
    (returns.iter().sum::<f64>() / returns.len() as f64, exact)
}

#[test]
fn frozen_lake_4x4_greedy_policy_reaches_the_goal_74_percent() {
    let (rate, exact) = frozen_lake_success("FrozenLake-v1", 100);
    // Exact 0.7402 (4 decimals); the binomial standard error over 10,000 episodes is 0.0044, so +-0.013 is 3 sigma.
    assert!((exact - 0.7402).abs() < 5e-5, "exact {exact}");
    assert!((rate - 0.740).abs() <= 0.013, "success rate {rate}");
}

#[test]
fn frozen_lake_8x8_greedy_policy_reaches_the_goal_86_percent() {
    let (rate, exact) = frozen_lake_success("FrozenLake8x8-v1", 200);
    assert!((exact - 0.8630).abs() < 5e-5, "exact {exact}");
    assert!((rate - 0.863).abs() <= 0.011, "success rate {rate}");
}

/// Example 6.6: epsilon 0.1, alpha 0.5, gamma 1, 500 episodes.
fn cliff_runs(algorithm: TdAlgorithm, runs: u64) -> (f64, Vec<f64>) {
    let cfg = TabularConfig { algorithm, gamma: 1.0, alpha: 0.5, epsilon: 0.1, ..Default::default() };
    let mut env = make_tabular("CliffWalking-v1", &Options::new()).unwrap();
    let (mut total, mut greedy) = (0.0, Vec::new());
    for seed in 0..runs {
        let run = run_episodes(&cfg, &mut *env, 500, seed).unwrap();
        total += run.returns[100..].iter().sum::<f64>() / 400.0;
        let (ret, _) = rollout_policy(&mut *env, &run.learner.greedy_policy(), 1, 0, 1000).unwrap();
        greedy.push(ret[0]);
    }
    (total / runs as f64, greedy)
}

#[test]
fn cliff_walking_sarsa_is_safer_online_than_q_learning() {
    let (sarsa, sarsa_greedy) = cliff_runs(TdAlgorithm::Sarsa, 50);
    let (q, q_greedy) = cliff_runs(TdAlgorithm::QLearning, 50);
    // sutton_barto.md (200 runs): Sarsa -27.63, Q-learning -49.54 over episodes 101-500.
    assert!((-32.0..=-23.0).contains(&sarsa), "Sarsa mean reward of episodes 101-500: {sarsa}");
    assert!((-55.0..=-45.0).contains(&q), "Q-learning mean reward of episodes 101-500: {q}");
    assert!(sarsa > q);
    // Q-learning's greedy policy walks the cliff edge: the optimal return -13, in every run.
    assert!(q_greedy.iter().all(|&r| r == -13.0), "{q_greedy:?}");
    // Sarsa's greedy path is never the edge; where it reaches the goal it takes a safe path (-15 via row 1, -17
    // via row 0, -19 with a detour). Its greedy policy can also loop in states exploration rarely visits (a run
    // cut at 1000 steps returns -1000): 10 of these 50 seeded runs do, so at least 35 must reach the goal.
    assert!(!sarsa_greedy.contains(&-13.0), "{sarsa_greedy:?}");
    let safe = sarsa_greedy.iter().filter(|&&r| (-19.0..=-15.0).contains(&r)).count();
    assert!(safe >= 35, "{safe} safe paths: {sarsa_greedy:?}");
}
