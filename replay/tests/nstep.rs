//! n-step accumulator against a direct computation over random episodes of several interleaved envs.
use bellman_replay::{NStep, Transition};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
struct Out {
    obs: f32,
    action: i64,
    reward: f32,
    next_obs: f32,
    terminated: bool,
    truncated: bool,
    discount: f32,
}

/// Rows (obs id, reward), then (next obs id, NaN), of one episode, and its end flag.
type Episode = (Vec<(f32, f32)>, u8);

/// One env step: (env, reward, end) with end 0 = continue, 1 = terminated, 2 = truncated.
fn steps() -> impl Strategy<Value = Vec<(usize, f32, u8)>> {
    proptest::collection::vec(
        (0usize..3, -5.0f32..5.0, prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)]),
        0..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn nstep_targets_equal_direct_computation(n in 1usize..6, gamma in 0.0f64..1.0, script in steps()) {
        let mut acc = NStep::<f32, i64>::new(n, gamma, 3, 1, 1).unwrap();
        let mut got: Vec<Vec<Out>> = vec![Vec::new(); 3];
        // episodes[env] = list of episodes, each a list of (obs id, reward) and its end flag
        let mut episodes: Vec<Vec<Episode>> = vec![vec![(Vec::new(), 0)]; 3];
        let mut counter = 0f32;
        let mut next_id = [0f32, 1000.0, 2000.0];
        for &(env, r, end) in &script {
            counter += 1.0;
            let o = [next_id[env]];
            let nx = [next_id[env] + 0.5 + counter];
            let a = [o[0] as i64];
            let t = Transition { obs: &o, action: &a, reward: r, next_obs: &nx, terminated: end == 1,
                                 truncated: end == 2, discount: 0.0 };
            let mut sink = |ev: usize, t: &Transition<'_, f32, i64>| {
                got[ev].push(Out { obs: t.obs[0], action: t.action[0], reward: t.reward, next_obs: t.next_obs[0],
                                   terminated: t.terminated, truncated: t.truncated, discount: t.discount });
                Ok(())
            };
            acc.push(env, &t, &mut sink).unwrap();
            let ep = episodes[env].last_mut().unwrap();
            ep.0.push((o[0], r));
            ep.0.push((nx[0], f32::NAN)); // placeholder carrying next obs
            next_id[env] = nx[0];
            if end != 0 {
                ep.1 = end;
                episodes[env].push((Vec::new(), 0));
                next_id[env] += 10_000.0;
            }
        }
        for env in 0..3 {
            let mut want = Vec::new();
            for (rows, end) in &episodes[env] {
                let len = rows.len() / 2;
                let obs: Vec<f32> = (0..len).map(|j| rows[2 * j].0).collect();
                let rew: Vec<f32> = (0..len).map(|j| rows[2 * j].1).collect();
                let nxt: Vec<f32> = (0..len).map(|j| rows[2 * j + 1].0).collect();
                for t in 0..len {
                    let m = if *end != 0 { n.min(len - t) } else if t + n <= len { n } else { continue };
                    let mut ret = 0.0f64;
                    let mut g = 1.0f64;
                    for k in 0..m { ret += g * rew[t + k] as f64; g *= gamma; }
                    let last = t + m == len && *end != 0;
                    want.push(Out { obs: obs[t], action: obs[t] as i64, reward: ret as f32, next_obs: nxt[t + m - 1],
                                    terminated: last && *end == 1, truncated: last && *end == 2, discount: g as f32 });
                }
            }
            prop_assert_eq!(&got[env], &want, "env {}", env);
            let open = &episodes[env].last().unwrap().0;
            prop_assert_eq!(acc.pending(env), (open.len() / 2).min(n - 1));
        }
    }
}

#[test]
fn n_equal_one_is_the_identity_with_gamma_discount() {
    let mut acc = NStep::<f32, i64>::new(1, 0.9, 1, 2, 1).unwrap();
    let mut out = Vec::new();
    let mut sink = |_e: usize, t: &Transition<'_, f32, i64>| {
        out.push((t.obs.to_vec(), t.reward, t.next_obs.to_vec(), t.discount, t.truncated));
        Ok(())
    };
    let t = Transition {
        obs: &[1.0, 2.0],
        action: &[3],
        reward: 4.0,
        next_obs: &[5.0, 6.0],
        terminated: false,
        truncated: true,
        discount: 0.0,
    };
    assert_eq!(acc.push(0, &t, &mut sink).unwrap(), 1);
    assert_eq!(out, vec![(vec![1.0, 2.0], 4.0, vec![5.0, 6.0], 0.9, true)]);
}

#[test]
fn bad_arguments_are_errors() {
    assert!(NStep::<f32, i64>::new(0, 0.9, 1, 1, 1).is_err());
    assert!(NStep::<f32, i64>::new(3, 1.1, 1, 1, 1).unwrap_err().to_string().contains("gamma 1.1"));
    let mut acc = NStep::<f32, i64>::new(3, 0.9, 2, 1, 1).unwrap();
    let mut sink = |_e: usize, _t: &Transition<'_, f32, i64>| Ok(());
    let t = Transition {
        obs: &[1.0],
        action: &[3],
        reward: 4.0,
        next_obs: &[5.0],
        terminated: false,
        truncated: false,
        discount: 0.0,
    };
    assert!(acc.push(2, &t, &mut sink).unwrap_err().to_string().contains("env 2 is outside [0, 2)"));
    let bad = Transition { obs: &[1.0, 2.0], ..t };
    assert!(acc.push(0, &bad, &mut sink).is_err());
    assert_eq!(acc.pending(0), 0);
}
