//! Frame-deduplicated storage: stacks come back bit-exact after wraparound, eviction and episode boundaries, and
//! each frame is stored once. The env side is a model of Gymnasium's `FrameStackObservation` (gymnasium 1.x,
//! `gymnasium/wrappers/stateful_observation.py`): the first stack of an episode is padded with the reset frame
//! (`padding_type="reset"`) or with zeros (`padding_type="zero"`), then each step drops the oldest frame.
use bellman_replay::{Batch, FrameStackStorage, NStep, ReplayBuffer, Storage, Transition};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

const K: usize = 4;

struct Stacker {
    frame_len: usize,
    zero_pad: bool,
    stack: Vec<u8>,
}

impl Stacker {
    fn reset(&mut self, first: &[u8]) -> Vec<u8> {
        self.stack.clear();
        for _ in 0..K - 1 {
            if self.zero_pad {
                self.stack.extend(std::iter::repeat_n(0u8, self.frame_len));
            } else {
                self.stack.extend_from_slice(first);
            }
        }
        self.stack.extend_from_slice(first);
        self.stack.clone()
    }
    fn step(&mut self, frame: &[u8]) -> Vec<u8> {
        self.stack.drain(..self.frame_len);
        self.stack.extend_from_slice(frame);
        self.stack.clone()
    }
}

/// Plays random episodes on `envs` interleaved envs, pushes every transition, returns (obs, next) per push.
#[allow(clippy::too_many_arguments)] // a test helper: every knob of the simulated run
fn play(
    buf: &mut ReplayBuffer<FrameStackStorage<i64>>,
    seed: u64,
    envs: usize,
    pushes: usize,
    frame_len: usize,
    zero_pad: bool,
    alphabet: u8,
    p_end: f64,
    as_env_zero: bool,
) -> Vec<(Vec<u8>, Vec<u8>, bool, bool)> {
    let mut rng = Pcg64::seed_from_u64(seed);
    let frame = |rng: &mut Pcg64| -> Vec<u8> { (0..frame_len).map(|_| rng.random_range(0..alphabet)).collect() };
    let mut st: Vec<Stacker> = (0..envs).map(|_| Stacker { frame_len, zero_pad, stack: Vec::new() }).collect();
    let mut cur: Vec<Vec<u8>> = (0..envs)
        .map(|e| {
            let f = frame(&mut rng);
            st[e].reset(&f)
        })
        .collect();
    let mut log = Vec::new();
    for _ in 0..pushes {
        let e = rng.random_range(0..envs);
        let f = frame(&mut rng);
        let next = st[e].step(&f);
        let end = rng.random_bool(p_end);
        let (term, trunc) = if end { (rng.random_bool(0.5), false) } else { (false, false) };
        let trunc = trunc || (end && !term);
        let t = Transition {
            obs: &cur[e],
            action: &[e as i64],
            reward: 1.0,
            next_obs: &next,
            terminated: term,
            truncated: trunc,
            discount: 0.99,
        };
        buf.push_from(if as_env_zero { 0 } else { e }, &t).unwrap();
        log.push((cur[e].clone(), next.clone(), term, trunc));
        cur[e] = if end {
            let f = frame(&mut rng);
            st[e].reset(&f)
        } else {
            next
        };
    }
    log
}

fn check_all_live(
    buf: &ReplayBuffer<FrameStackStorage<i64>>,
    log: &[(Vec<u8>, Vec<u8>, bool, bool)],
) -> Result<(), TestCaseError> {
    let s = buf.storage();
    let live = s.live();
    prop_assert_eq!(live.end as usize, log.len());
    let mut batch = Batch::new();
    let ts: Vec<u64> = live.clone().collect();
    let slots: Vec<usize> = ts.iter().map(|&t| (t % s.capacity() as u64) as usize).collect();
    buf.gather(&slots, &mut batch).unwrap();
    for dead in (0..s.capacity()).filter(|x| !slots.contains(x)) {
        prop_assert!(buf.gather(&[dead], &mut batch).is_err(), "dead slot {} gathered", dead);
    }
    buf.gather(&slots, &mut batch).unwrap();
    for (r, &t) in ts.iter().enumerate() {
        let (o, n, term, trunc) = &log[t as usize];
        prop_assert_eq!(batch.obs_row(r), &o[..], "obs of push {}", t);
        prop_assert_eq!(batch.next_obs_row(r), &n[..], "next obs of push {}", t);
        prop_assert_eq!((batch.terminated[r], batch.truncated[r]), (*term, *trunc));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// Whatever the episodes, padding, interleaving of envs and wraparound, every live transition's stacks are the
    /// pushed ones, bit for bit.
    #[test]
    fn stacks_round_trip_after_wraparound_and_episode_ends(seed in 0u64..10_000, cap in 1usize..60, envs in 1usize..4,
            pushes in 0usize..300, zero_pad: bool, alphabet in prop_oneof![Just(2u8), Just(255u8)],
            p_end in prop_oneof![Just(0.02f64), Just(0.3), Just(0.9)], as_env_zero: bool) {
        let mut buf = ReplayBuffer::frame_stack::<i64>(cap, K, &[2, 3], 1).unwrap();
        let log = play(&mut buf, seed, envs, pushes, 6, zero_pad, alphabet, p_end, as_env_zero);
        check_all_live(&buf, &log)?;
        prop_assert!(buf.len() <= cap && (pushes == 0 || !buf.is_empty()));
        // sampling draws only live transitions
        if pushes > 0 {
            let mut batch = Batch::new();
            buf.sample(16, &mut Pcg64::seed_from_u64(seed), &mut batch).unwrap();
            let live = buf.storage().live();
            for r in 0..16 {
                let slot = batch.indices[r] as u64;
                let t = (live.start..live.end).find(|t| t % cap as u64 == slot).expect("sampled slot is live");
                prop_assert_eq!(batch.obs_row(r), &log[t as usize].0[..]);
            }
        }
    }
}

#[test]
fn first_stack_of_an_episode_holds_no_frame_of_the_previous_one() {
    for zero_pad in [false, true] {
        let mut buf = ReplayBuffer::frame_stack::<i64>(8, K, &[1], 1).unwrap();
        let mut st = Stacker { frame_len: 1, zero_pad, stack: Vec::new() };
        let mut obs = st.reset(&[10]);
        let mut id = 10u8;
        for step in 0..30 {
            id += 1;
            let next = st.step(&[id]);
            let end = step % 5 == 4;
            buf.push(&Transition {
                obs: &obs,
                action: &[0],
                reward: 0.0,
                next_obs: &next,
                terminated: end,
                truncated: false,
                discount: 0.9,
            })
            .unwrap();
            obs = if end {
                id += 1;
                st.reset(&[id])
            } else {
                next
            };
        }
        // push 25 (index 25, the start of the 6th episode, after wraparound) has stack [p, p, p, r]
        let mut batch = Batch::new();
        batch.resize(1, K, 1);
        batch.indices[0] = 25 % 8;
        buf.storage().gather(&mut batch);
        let r = batch.obs[3];
        let pad = if zero_pad { 0 } else { r };
        assert_eq!(batch.obs, vec![pad, pad, pad, r], "zero_pad {zero_pad}");
        assert_eq!(batch.next_obs, vec![pad, pad, r, r + 1]);
    }
}

#[test]
fn one_frame_per_transition_with_parallel_envs_and_nstep() {
    // 4 envs, 84x84 frames, episodes of 50 steps, 1,000 pushes: reset padding stores one frame per push plus one
    // per episode start. The same through a 3-step accumulator (n < stack) stores no more.
    for nstep in [false, true] {
        let mut buf = ReplayBuffer::frame_stack::<i64>(2000, K, &[84, 84], 1).unwrap();
        let mut acc = NStep::<u8, i64>::new(3, 0.99, 4, K * 84 * 84, 1).unwrap();
        let mut rng = Pcg64::seed_from_u64(1);
        let fl = 84 * 84;
        let mut st: Vec<Stacker> =
            (0..4).map(|_| Stacker { frame_len: fl, zero_pad: false, stack: Vec::new() }).collect();
        let frame = |rng: &mut Pcg64| -> Vec<u8> { (0..fl).map(|_| rng.random()).collect() };
        let mut cur: Vec<Vec<u8>> = (0..4)
            .map(|e| {
                let f = frame(&mut rng);
                st[e].reset(&f)
            })
            .collect();
        let mut episodes = 4;
        for step in 0..250 {
            for e in 0..4 {
                let next = st[e].step(&frame(&mut rng));
                let end = step % 50 == 49;
                let t = Transition {
                    obs: &cur[e],
                    action: &[0],
                    reward: 1.0,
                    next_obs: &next,
                    terminated: end,
                    truncated: false,
                    discount: 0.99,
                };
                if nstep {
                    acc.push(e, &t, &mut buf).unwrap();
                } else {
                    buf.push_from(e, &t).unwrap();
                }
                cur[e] = if end {
                    episodes += 1;
                    let f = frame(&mut rng);
                    st[e].reset(&f)
                } else {
                    next
                };
            }
        }
        let pushes = buf.storage().live().end as usize;
        assert_eq!(pushes, 1000);
        let episodes_started = episodes - 4; // the last resets pushed nothing
        assert_eq!(buf.storage().frames_stored(), pushes + episodes_started, "nstep {nstep}");
    }
}

#[test]
fn bad_lengths_and_arguments_are_errors() {
    assert!(FrameStackStorage::<i64>::new(0, 4, &[84, 84], 1).is_err());
    assert!(FrameStackStorage::<i64>::new(10, 0, &[84, 84], 1).unwrap_err().to_string().contains("stack size 0"));
    assert!(FrameStackStorage::<i64>::new(10, 4, &[], 1).is_err());
    let mut buf = ReplayBuffer::frame_stack::<i64>(10, 2, &[3], 1).unwrap();
    let t = Transition {
        obs: &[0u8; 6],
        action: &[0],
        reward: 0.0,
        next_obs: &[0u8; 5],
        terminated: false,
        truncated: false,
        discount: 0.9,
    };
    assert!(buf.push(&t).unwrap_err().to_string().contains("next_obs has 5 elements, expected 6"));
    assert_eq!(buf.len(), 0);
}

#[test]
fn short_episodes_evict_early_but_stay_exact_and_prioritized_forgets_evicted() {
    // Every step ends an episode and frames never repeat: 3 frames per push (reset padding: r, then the new
    // frame; plus nothing shared), so the frame ring (20 + 16 frames) runs out before the transition ring.
    let mut buf = ReplayBuffer::frame_stack::<i64>(20, K, &[2, 3], 1).unwrap();
    let log = play(&mut buf, 9, 1, 200, 6, false, 255, 1.0, false);
    check_all_live(&buf, &log).unwrap();
    assert!(buf.len() < 20 && buf.len() >= 5, "len {}", buf.len());

    let storage = FrameStackStorage::<i64>::new(20, K, &[2, 3], 1).unwrap();
    let mut per = bellman_replay::PrioritizedReplayBuffer::new(storage, 0.6, 1e-6).unwrap();
    let mut rng = Pcg64::seed_from_u64(2);
    for (o, n, term, trunc) in &log {
        per.push(&Transition {
            obs: o,
            action: &[0],
            reward: 0.0,
            next_obs: n,
            terminated: *term,
            truncated: *trunc,
            discount: 0.9,
        })
        .unwrap();
        let live = per.storage().live();
        let positive = (0..20).filter(|&s| per.priority(s) > 0.0).count();
        assert_eq!(positive, live.clone().count(), "only live slots carry priority");
        let mut batch = Batch::new();
        per.sample(8, 0.4, &mut rng, &mut batch).unwrap();
        for &i in &batch.indices {
            assert!(live.clone().any(|t| t % 20 == i as u64), "sampled dead slot {i}");
        }
    }
}
