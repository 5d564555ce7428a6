//! Uniform buffer with flat storage against a brute-force model (a deque of the last `capacity` transitions).
use std::collections::VecDeque;

use bellman_replay::{Batch, ReplayBuffer, ReplayError, Storage, Transition, TransitionBatch};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_pcg::Pcg64;

#[derive(Debug, Clone, PartialEq)]
struct Owned {
    obs: Vec<f32>,
    action: Vec<f32>,
    reward: f32,
    next_obs: Vec<f32>,
    terminated: bool,
    truncated: bool,
    discount: f32,
}

fn make(i: usize, obs_len: usize, ad: usize) -> Owned {
    Owned {
        obs: (0..obs_len).map(|k| (i * 10 + k) as f32).collect(),
        action: (0..ad).map(|k| -((i * 10 + k) as f32)).collect(),
        reward: i as f32 * 0.5,
        next_obs: (0..obs_len).map(|k| (i * 10 + k) as f32 + 0.25).collect(),
        terminated: i % 7 == 3,
        truncated: i % 11 == 5,
        discount: 0.99,
    }
}

fn as_t(o: &Owned) -> Transition<'_, f32, f32> {
    Transition {
        obs: &o.obs,
        action: &o.action,
        reward: o.reward,
        next_obs: &o.next_obs,
        terminated: o.terminated,
        truncated: o.truncated,
        discount: o.discount,
    }
}

fn row(b: &Batch<f32, f32>, r: usize) -> Owned {
    Owned {
        obs: b.obs_row(r).to_vec(),
        action: b.action_row(r).to_vec(),
        reward: b.rewards[r],
        next_obs: b.next_obs_row(r).to_vec(),
        terminated: b.terminated[r],
        truncated: b.truncated[r],
        discount: b.discounts[r],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// After any number of pushes the buffer holds exactly the last `capacity` transitions (wraparound), and every
    /// sampled row is one of them, at the slot the buffer reports.
    #[test]
    fn wraparound_and_sampling_match_model(cap in 1usize..40, pushes in 0usize..130, obs_len in 1usize..5,
                                           ad in 1usize..3, seed in 0u64..1000) {
        let mut buf = ReplayBuffer::flat::<f32, f32>(cap, &[obs_len], ad).unwrap();
        let mut model: VecDeque<Owned> = VecDeque::new();
        let mut slot_of = std::collections::HashMap::new();
        for i in 0..pushes {
            let o = make(i, obs_len, ad);
            let slot = buf.push(&as_t(&o)).unwrap();
            prop_assert_eq!(slot, i % cap);
            slot_of.insert(slot, o.clone());
            model.push_back(o);
            if model.len() > cap { model.pop_front(); }
        }
        prop_assert_eq!(buf.len(), model.len());
        let live = buf.storage().live();
        prop_assert_eq!(live.end as usize, pushes);
        prop_assert_eq!((live.end - live.start) as usize, model.len());
        let mut rng = Pcg64::seed_from_u64(seed);
        let mut batch = Batch::new();
        if pushes == 0 {
            prop_assert!(matches!(buf.sample(8, &mut rng, &mut batch), Err(ReplayError::Empty)));
            return Ok(());
        }
        for s in 0..cap + 2 {
            let r = buf.gather(&[s], &mut batch);
            prop_assert_eq!(r.is_ok(), s < pushes.min(cap), "slot {}", s);
            if r.is_ok() { prop_assert_eq!(&row(&batch, 0), &slot_of[&s]); }
        }
        buf.sample(64, &mut rng, &mut batch).unwrap();
        prop_assert_eq!(batch.len(), 64);
        for r in 0..64 {
            let got = row(&batch, r);
            prop_assert!(model.contains(&got), "row {} not in the model: {:?}", r, got);
            prop_assert_eq!(&slot_of[&batch.indices[r]], &got);
            prop_assert_eq!(batch.weights[r], 1.0);
        }
    }
}

#[test]
fn same_seed_same_batch_and_batch_reuse_keeps_capacity() {
    let mut buf = ReplayBuffer::flat::<f32, f32>(100, &[3], 2).unwrap();
    for i in 0..250 {
        buf.push(&as_t(&make(i, 3, 2))).unwrap();
    }
    let (mut a, mut b) = (Batch::new(), Batch::new());
    buf.sample(32, &mut Pcg64::seed_from_u64(5), &mut a).unwrap();
    buf.sample(32, &mut Pcg64::seed_from_u64(5), &mut b).unwrap();
    assert_eq!(a, b);
    let ptr = a.obs.as_ptr();
    let mut rng = Pcg64::seed_from_u64(6);
    buf.sample(16, &mut rng, &mut a).unwrap();
    buf.sample(32, &mut rng, &mut a).unwrap();
    assert_eq!(a.obs.as_ptr(), ptr, "re-sampling into a grown batch must not reallocate");
    assert_ne!(a, b);
}

#[test]
fn uniform_frequencies_pass_chi_square() {
    // 10 transitions, 20,000 draws: chi-square with 9 degrees of freedom; critical value at significance
    // 0.001 is 27.88 (standard table). Seed fixed, so the test is deterministic.
    let mut buf = ReplayBuffer::flat::<f32, f32>(10, &[1], 1).unwrap();
    for i in 0..25 {
        buf.push(&as_t(&make(i, 1, 1))).unwrap();
    }
    let mut counts = [0f64; 10];
    let mut rng = Pcg64::seed_from_u64(42);
    let mut batch = Batch::new();
    for _ in 0..625 {
        buf.sample(32, &mut rng, &mut batch).unwrap();
        for &i in &batch.indices {
            counts[i] += 1.0;
        }
    }
    let e = 20_000.0 / 10.0;
    let chi2: f64 = counts.iter().map(|c| (c - e) * (c - e) / e).sum();
    assert!(chi2 < 27.88, "chi2 = {chi2}, counts = {counts:?}");
}

#[test]
fn push_batch_rows_and_length_errors() {
    let mut buf = ReplayBuffer::flat::<f32, i64>(10, &[2], 1).unwrap();
    let obs = [0.0, 1.0, 10.0, 11.0];
    let next = [2.0, 3.0, 12.0, 13.0];
    let b = TransitionBatch {
        obs: &obs,
        actions: &[4, 5],
        rewards: &[1.0, 2.0],
        next_obs: &next,
        terminated: &[false, true],
        truncated: &[false, false],
        discounts: &[0.9],
    };
    buf.push_batch(&b).unwrap();
    assert_eq!(buf.len(), 2);
    let mut batch = Batch::new();
    batch.resize(2, 2, 1);
    batch.indices.copy_from_slice(&[1, 0]);
    buf.storage().gather(&mut batch);
    assert_eq!(batch.obs, vec![10.0, 11.0, 0.0, 1.0]);
    assert_eq!(batch.actions, vec![5, 4]);
    assert_eq!(batch.terminated, vec![true, false]);
    assert_eq!(batch.discounts, vec![0.9, 0.9]);

    let bad = TransitionBatch { actions: &[4], ..b };
    let err = buf.push_batch(&bad).unwrap_err().to_string();
    assert!(err.contains("actions has 1 elements, expected 2"), "{err}");
    assert_eq!(buf.len(), 2, "a rejected batch stores nothing");
    let t = Transition {
        obs: &obs[..3],
        action: &[0],
        reward: 0.0,
        next_obs: &next[..2],
        terminated: false,
        truncated: false,
        discount: 0.9,
    };
    assert!(buf.push(&t).unwrap_err().to_string().contains("obs has 3 elements, expected 2"));
    let t = Transition { obs: &obs[..2], reward: f32::NAN, ..t };
    assert!(buf.push(&t).unwrap_err().to_string().contains("reward NaN is not finite"));
    let t = Transition { reward: 0.0, discount: 1.5, ..t };
    assert!(buf.push(&t).unwrap_err().to_string().contains("discount 1.5 is outside [0, 1]"));
    assert!(buf.sample(0, &mut Pcg64::seed_from_u64(0), &mut batch).is_err());
    assert!(ReplayBuffer::flat::<f32, i64>(0, &[2], 1).is_err());
    assert!(ReplayBuffer::flat::<f32, i64>(5, &[2, 0], 1).is_err());
    assert!(ReplayBuffer::flat::<f32, i64>(5, &[2], 0).is_err());
}
