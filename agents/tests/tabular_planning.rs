//! Planning on small MDPs built here: Sutton and Barto's Example 3.5 and Example 4.1 grid worlds (reference
//! numbers from tests/data/sutton_barto.md, copied into this file), the parallel sweep, and bad input.
use bellman_agents::tabular::learning::TableMdp;
use bellman_agents::tabular::planning::{
    CompiledMdp, Policy, Sweep, ViOptions, greedy_policy, policy_evaluation, policy_iteration, value_iteration,
};
use bellman_envs::Mdp;
use bellman_envs::mdp::{Outcome, TransitionTable};

/// Sutton and Barto Example 3.5 (5x5, actions L/U/R/D; off-grid: stay with -1; any action in A=(0,1) -> A'=(4,1)
/// +10; in B=(0,3) -> B'=(2,3) +5).
fn example_3_5() -> TableMdp {
    let mut t = TransitionTable::builder(25, 4);
    for s in 0..25 {
        let (r, c) = ((s / 5) as i64, (s % 5) as i64);
        for (dr, dc) in [(0i64, -1i64), (-1, 0), (0, 1), (1, 0)] {
            let (next, reward) = if s == 1 {
                (21, 10.0)
            } else if s == 3 {
                (13, 5.0)
            } else {
                let (nr, nc) = (r + dr, c + dc);
                if (0..5).contains(&nr) && (0..5).contains(&nc) { ((nr * 5 + nc) as usize, 0.0) } else { (s, -1.0) }
            };
            t.push(Outcome { prob: 1.0, next_state: next, reward, terminal: false });
            t.end_action();
        }
    }
    TableMdp::new(t.build().unwrap(), vec![1.0 / 25.0; 25]).unwrap()
}

/// Sutton and Barto Example 4.1 (4x4, reward -1 per step, terminals at (0,0) and (3,3) modelled as absorbing
/// zero-reward self-loops, actions L/U/R/D, off-grid: stay).
fn example_4_1() -> TableMdp {
    let mut t = TransitionTable::builder(16, 4);
    for s in 0..16 {
        let (r, c) = ((s / 4) as i64, (s % 4) as i64);
        for (dr, dc) in [(0i64, -1i64), (-1, 0), (0, 1), (1, 0)] {
            if s == 0 || s == 15 {
                t.push(Outcome { prob: 1.0, next_state: s, reward: 0.0, terminal: true });
            } else {
                let (nr, nc) = (r + dr, c + dc);
                let n = if (0..4).contains(&nr) && (0..4).contains(&nc) { (nr * 4 + nc) as usize } else { s };
                t.push(Outcome { prob: 1.0, next_state: n, reward: -1.0, terminal: n == 0 || n == 15 });
            }
            t.end_action();
        }
    }
    TableMdp::new(t.build().unwrap(), vec![1.0 / 16.0; 16]).unwrap()
}

const FIG_3_2: [f64; 25] = [
    3.308996, 8.789292, 4.427619, 5.322368, 1.492179, //
    1.521588, 2.992318, 2.250140, 1.907572, 0.547403, //
    0.050822, 0.738171, 0.673113, 0.358186, -0.403141, //
    -0.973592, -0.435495, -0.354882, -0.585605, -1.183075, //
    -1.857701, -1.345231, -1.229267, -1.422918, -1.975179,
];

const FIG_3_5: [f64; 25] = [
    21.977485, 24.419428, 21.977485, 19.419428, 17.477485, //
    19.779737, 21.977485, 19.779737, 17.801763, 16.021587, //
    17.801763, 19.779737, 17.801763, 16.021587, 14.419428, //
    16.021587, 17.801763, 16.021587, 14.419428, 12.977485, //
    14.419428, 16.021587, 14.419428, 12.977485, 11.679737,
];

const FIG_4_1_INF: [f64; 16] =
    [0.0, -14.0, -20.0, -22.0, -14.0, -18.0, -20.0, -20.0, -20.0, -20.0, -18.0, -14.0, -22.0, -20.0, -14.0, 0.0];

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (s, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}: state {s}: got {g}, want {w} (tol {tol})");
    }
}

fn opts(gamma: f64, tol: f64) -> ViOptions {
    ViOptions { tol, ..ViOptions::new(gamma) }
}

#[test]
fn example_3_5_random_policy_matches_figure_3_2() {
    let m = CompiledMdp::compile(&example_3_5()).unwrap();
    for sweep in [Sweep::Synchronous, Sweep::InPlace] {
        let sol = policy_evaluation(&m, &Policy::UniformRandom, &ViOptions { sweep, ..opts(0.9, 1e-12) }).unwrap();
        assert!(sol.converged);
        // Table values are rounded to 6 decimals: 5e-7 rounding plus 1e-6 tolerance.
        assert_close(&sol.values, &FIG_3_2, 1.5e-6, "Figure 3.2");
    }
    // The same policy given as an explicit stochastic table gives the same values.
    let pi = Policy::Stochastic(vec![0.25; 100]);
    let sol = policy_evaluation(&m, &pi, &opts(0.9, 1e-12)).unwrap();
    assert_close(&sol.values, &FIG_3_2, 1.5e-6, "Figure 3.2 (stochastic table)");
}

#[test]
fn example_3_5_optimal_values_match_figure_3_5_and_closed_form() {
    let m = CompiledMdp::compile(&example_3_5()).unwrap();
    for sweep in [Sweep::Synchronous, Sweep::InPlace] {
        let sol = value_iteration(&m, &ViOptions { sweep, ..opts(0.9, 1e-12) }).unwrap();
        assert!(sol.converged, "{sweep:?}");
        assert_close(&sol.values, &FIG_3_5, 1.5e-6, "Figure 3.5");
        // v*(A) = 10 / (1 - 0.9^5) (Sutton and Barto, exercise 3.22 discussion; sutton_barto.md).
        assert!((sol.values[1] - 10.0 / (1.0 - 0.9f64.powi(5))).abs() < 1e-9, "{}", sol.values[1]);
        // Every action in A is optimal (they all jump to A'): the deterministic tie rule takes action 0.
        assert_eq!(sol.policy[1], 0);
        // Figure 3.5's pi*: from (4, 4) going up or left is optimal; action 0 (left) is the smallest.
        assert_eq!(sol.policy[24], 0);
    }
    let pi = policy_iteration(&m, &opts(0.9, 1e-12)).unwrap();
    assert!(pi.converged && pi.improvements >= 2);
    assert_close(&pi.values, &FIG_3_5, 1.5e-6, "policy iteration");
}

#[test]
fn example_4_1_converges_to_the_exact_integers() {
    let m = CompiledMdp::compile(&example_4_1()).unwrap();
    let sol = policy_evaluation(&m, &Policy::UniformRandom, &opts(1.0, 1e-13)).unwrap();
    assert!(sol.converged);
    assert_close(&sol.values, &FIG_4_1_INF, 1e-10, "Figure 4.1 k = inf");
    // sutton_barto.md: 552 synchronous sweeps at tol 1e-13.
    assert!((550..=554).contains(&sol.sweeps), "{} sweeps", sol.sweeps);
}

#[test]
fn example_4_1_first_sweeps_match_figure_4_1() {
    let m = CompiledMdp::compile(&example_4_1()).unwrap();
    let k = |n: usize| {
        let o = ViOptions { max_sweeps: n, ..opts(1.0, 1e-13) };
        let sol = policy_evaluation(&m, &Policy::UniformRandom, &o).unwrap();
        assert_eq!(sol.sweeps, n);
        assert!(!sol.converged);
        sol.values
    };
    let mut k1 = vec![-1.0; 16];
    (k1[0], k1[15]) = (0.0, 0.0);
    assert_eq!(k(1), k1);
    #[rustfmt::skip]
    let k2 = [0.0, -1.75, -2.0, -2.0, -1.75, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0, -1.75, -2.0, -2.0, -1.75, 0.0];
    assert_eq!(k(2), k2);
    let k3 = k(3);
    assert_eq!(&k3[..8], &[0.0, -2.4375, -2.9375, -3.0, -2.4375, -2.875, -3.0, -2.9375]);
    let k10 = k(10);
    assert_close(&k10[..8], &[0.0, -6.138, -8.352, -8.967, -6.138, -7.737, -8.428, -8.352], 5e-4, "k = 10");
}

#[test]
fn example_4_1_greedy_policy_and_control() {
    let m = CompiledMdp::compile(&example_4_1()).unwrap();
    let vi = value_iteration(&m, &opts(1.0, 1e-12)).unwrap();
    // Optimal values: minus the Manhattan distance to the nearest corner terminal.
    for s in 0..16 {
        let (r, c) = ((s / 4) as f64, (s % 4) as f64);
        let d = (r + c).min(6.0 - r - c);
        assert_eq!(vi.values[s], -d, "state {s}");
    }
    let pi = policy_iteration(&m, &opts(1.0, 1e-12)).unwrap();
    assert_eq!(pi.values, vi.values);
    assert_eq!(pi.policy, vi.policy);
    // Ties broken to the smallest action: state 5 = (1,1) has L and U optimal -> 0 (L); (0,1) goes L; (3,2) R.
    assert_eq!(vi.policy[5], 0);
    assert_eq!(vi.policy[1], 0);
    assert_eq!(vi.policy[14], 2);
}

#[test]
fn q_values_are_consistent_with_values() {
    let m = CompiledMdp::compile(&example_3_5()).unwrap();
    let sol = value_iteration(&m, &opts(0.9, 1e-12)).unwrap();
    for s in 0..25 {
        let best = sol.q_row(s).iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!((best - sol.values[s]).abs() < 1e-10, "state {s}");
        assert_eq!(sol.q_row(s)[sol.policy[s]], best);
    }
}

#[test]
fn greedy_policy_breaks_ties_to_the_smallest_index() {
    let q = [1.0, 3.0, 3.0 - 1e-12, 2.0, /* */ 0.0, 0.0, 0.0, 0.0, /* */ -5.0, -1.0, -1.0 - 1e-3, -1.0];
    assert_eq!(greedy_policy(&q, 4, 1e-9), vec![1, 0, 1]);
    // Relative tolerance for large values: 1e6 + 1e-4 ties with 1e6 at tie_tol 1e-9 (threshold 1e-3).
    assert_eq!(greedy_policy(&[1e6, 1e6 + 1e-4], 2, 1e-9), vec![0]);
    assert_eq!(greedy_policy(&[1e6, 1e6 + 1e-2], 2, 1e-9), vec![1]);
}

/// A random sparse MDP with `n` states: each (s, a) has 1-3 outcomes with random probabilities and rewards.
fn random_mdp(n: usize, seed: u64) -> CompiledMdp {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut b = CompiledMdp::builder(n, 3).unwrap();
    for _s in 0..n {
        for _a in 0..3 {
            let k = rng.random_range(1..=3);
            let w: Vec<f64> = (0..k).map(|_| rng.random_range(0.1..1.0)).collect();
            let tot: f64 = w.iter().sum();
            for x in &w {
                let next = rng.random_range(0..n);
                b.push(x / tot, next, rng.random_range(-1.0..1.0), rng.random_bool(0.05)).unwrap();
            }
            b.end_action().unwrap();
        }
    }
    b.build().unwrap()
}

#[test]
fn parallel_synchronous_sweeps_are_bit_identical_to_serial() {
    // 40,000 states: above the parallel threshold (32,768), several rayon chunks.
    let m = random_mdp(40_000, 3);
    let base = ViOptions { max_sweeps: 30, ..opts(0.95, 1e-12) };
    let serial = value_iteration(&m, &ViOptions { threads: 1, ..base }).unwrap();
    let par = value_iteration(&m, &ViOptions { threads: 2, ..base }).unwrap();
    let par4 = value_iteration(&m, &ViOptions { threads: 4, ..base }).unwrap();
    assert_eq!(serial.sweeps, 30);
    assert_eq!(serial.values, par.values);
    assert_eq!(serial.values, par4.values);
    assert_eq!(serial.delta.to_bits(), par.delta.to_bits());
    let pe_s = policy_evaluation(&m, &Policy::UniformRandom, &ViOptions { threads: 1, ..base }).unwrap();
    let pe_p = policy_evaluation(&m, &Policy::UniformRandom, &ViOptions { threads: 3, ..base }).unwrap();
    assert_eq!(pe_s.values, pe_p.values);
}

#[test]
fn in_place_and_synchronous_agree_on_a_random_mdp() {
    let m = random_mdp(500, 9);
    let a = value_iteration(&m, &opts(0.9, 1e-12)).unwrap();
    let b = value_iteration(&m, &ViOptions { sweep: Sweep::InPlace, ..opts(0.9, 1e-12) }).unwrap();
    let c = policy_iteration(&m, &opts(0.9, 1e-12)).unwrap();
    assert!(b.sweeps < a.sweeps, "Gauss-Seidel {} vs Jacobi {}", b.sweeps, a.sweeps);
    assert_close(&b.values, &a.values, 1e-9, "in place vs synchronous");
    assert_close(&c.values, &a.values, 1e-9, "policy iteration vs value iteration");
    assert_eq!(a.policy, c.policy);
}

#[test]
fn compact_layouts_match_the_transition_table() {
    // Example 3.5 has one outcome per (s, a) (stride layout); a mixed MDP uses CSR offsets. Both must give the
    // same Q as a direct computation from the table.
    let t = example_3_5();
    let m = CompiledMdp::compile(&t).unwrap();
    assert_eq!(m.num_outcomes(), 100);
    assert_eq!(m.model_bytes(), 100 * 4 + 100 + 4 * 16); // next u32 + kind u8 + 4 distinct (pr, pc) pairs
    let v: Vec<f64> = (0..25).map(|s| s as f64 * 0.5 - 3.0).collect();
    let q = m.q_values(&v, 0.7).unwrap();
    for s in 0..25 {
        for a in 0..4 {
            let want: f64 = t
                .outcomes(s, a)
                .iter()
                .map(|o| o.prob * (o.reward + 0.7 * if o.terminal { 0.0 } else { v[o.next_state] }))
                .sum();
            assert!((q[s * 4 + a] - want).abs() < 1e-12);
        }
    }
    let r = random_mdp(50, 1);
    assert!(r.model_bytes() > r.num_outcomes() * 5 + 3 * 50 * 4); // offsets present, u16 or u32 kinds
}

#[test]
fn bad_input_is_a_clear_error() {
    let m = CompiledMdp::compile(&example_4_1()).unwrap();
    for (gamma, needle) in [(0.0, "gamma = 0"), (1.5, "gamma = 1.5"), (f64::NAN, "gamma = NaN"), (-0.1, "(0, 1]")] {
        let e = value_iteration(&m, &ViOptions::new(gamma)).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
    for tol in [0.0, -1.0, f64::INFINITY] {
        let e = value_iteration(&m, &opts(0.9, tol)).unwrap_err().to_string();
        assert!(e.contains("tol") && e.contains("> 0"), "{e}");
    }
    let e = policy_evaluation(&m, &Policy::Deterministic(vec![0; 3]), &opts(0.9, 1e-6)).unwrap_err().to_string();
    assert!(e.contains("3 states") && e.contains("16"), "{e}");
    let e = policy_evaluation(&m, &Policy::Deterministic(vec![4; 16]), &opts(0.9, 1e-6)).unwrap_err().to_string();
    assert!(e.contains("action 4") && e.contains("0..4"), "{e}");
    let e = policy_evaluation(&m, &Policy::Stochastic(vec![0.5; 64]), &opts(0.9, 1e-6)).unwrap_err().to_string();
    assert!(e.contains("sum to 1"), "{e}");
    // Builder errors name the bad value.
    let mut b = CompiledMdp::builder(2, 1).unwrap();
    assert!(b.push(1.2, 0, 0.0, false).unwrap_err().to_string().contains("1.2"));
    assert!(b.push(1.0, 5, 0.0, false).unwrap_err().to_string().contains("next state 5"));
    b.push(0.5, 0, 0.0, false).unwrap();
    assert!(b.end_action().unwrap_err().to_string().contains("sum to 0.5"));
    assert!(CompiledMdp::builder(0, 1).is_err());
    let mut b = CompiledMdp::builder(2, 1).unwrap();
    b.push(1.0, 0, 0.0, false).unwrap();
    b.end_action().unwrap();
    assert!(b.build().unwrap_err().to_string().contains("1 closed (s, a) rows, expected 2"));
    // Out-of-range lookups are empty, not panics.
    let sol = value_iteration(&m, &opts(0.9, 1e-6)).unwrap();
    assert_eq!(sol.q_row(15).len(), 4);
    assert!(sol.q_row(16).is_empty());
    assert!(greedy_policy(&[1.0, 2.0], 0, 0.0).is_empty());
    assert!(example_4_1().outcomes(16, 0).is_empty() && example_4_1().outcomes(0, 4).is_empty());
}

#[test]
fn gamma_one_without_termination_is_reported_as_non_convergence() {
    // One state looping forever with reward -1: V diverges linearly under gamma = 1.
    let mut b = CompiledMdp::builder(1, 1).unwrap();
    b.push(1.0, 0, -1.0, false).unwrap();
    b.end_action().unwrap();
    let m = b.build().unwrap();
    let sol = value_iteration(&m, &ViOptions { max_sweeps: 1000, ..ViOptions::new(1.0) }).unwrap();
    assert!(!sol.converged);
    assert_eq!(sol.sweeps, 1000);
    assert_eq!(sol.values[0], -1000.0);
    let e = sol.ensure_converged(1.0).unwrap_err().to_string();
    assert!(e.contains("no convergence after 1000 sweeps") && e.contains("proper"), "{e}");
    let pi = policy_iteration(&m, &ViOptions { max_sweeps: 500, ..ViOptions::new(1.0) }).unwrap();
    assert!(!pi.converged);
    // The same loop with gamma < 1 converges to -1 / (1 - gamma).
    let sol = value_iteration(&m, &ViOptions::new(0.5)).unwrap();
    sol.ensure_converged(0.5).unwrap();
    assert!((sol.values[0] + 2.0).abs() < 1e-9);
}

#[test]
fn deterministic_fast_path_equals_the_generic_path() {
    // Example 3.5 has one outcome per (s, a) and 4 actions: the unrolled kernel. The same model with an extra
    // zero-probability outcome per (s, a) takes the generic CSR-free stride-2 loop; values must be bit-identical.
    let t = example_3_5();
    let fast = CompiledMdp::compile(&t).unwrap();
    let mut b = CompiledMdp::builder(25, 4).unwrap();
    for s in 0..25 {
        for a in 0..4 {
            let o = t.outcomes(s, a)[0];
            b.push(o.prob, o.next_state, o.reward, o.terminal).unwrap();
            b.push(0.0, (s + 7) % 25, 3.0, false).unwrap();
            b.end_action().unwrap();
        }
    }
    let slow = b.build().unwrap();
    for threads in [1, 2] {
        let o = ViOptions { threads, max_sweeps: 40, ..opts(0.9, 1e-12) };
        let (a, b) = (value_iteration(&fast, &o).unwrap(), value_iteration(&slow, &o).unwrap());
        assert_eq!(a.values, b.values);
        assert_eq!(a.delta.to_bits(), b.delta.to_bits());
    }
}
