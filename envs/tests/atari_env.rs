//! Behaviour of the Atari envs: smoke runs, seeding, the preprocessing options, registry, ROM errors and the
//! threaded vector env. Every test skips (with a SKIPPED line) when the ROMs are missing, except under
//! `BELLMAN_REQUIRE_ROMS=1` (CI), where it fails.
#![cfg(feature = "atari")]

mod atari_common;

use atari_common::roms_available;
use bellman_envs::atari::{AtariConfig, AtariEnv, AtariVecEnv, ObsType, Preprocessing};
use bellman_envs::{ActionValue, Env, EnvError, Options, registry};

fn pre(p: Preprocessing) -> AtariConfig {
    AtariConfig::preprocessed("Pong", p)
}

#[test]
fn pong_raw_v5_smoke() {
    if !roms_available("pong_raw_v5_smoke") {
        return;
    }
    let mut env = AtariEnv::new(AtariConfig::v5("Pong")).unwrap();
    assert_eq!(env.obs_shape(), &[210, 160, 3]);
    assert_eq!(env.action_space().n(), Some(6));
    assert_eq!(env.action_set(), &[0, 1, 3, 4, 11, 12]);
    let mut obs = vec![0u8; env.obs_len()];
    let info = env.reset_into(Some(3), &mut obs).unwrap();
    assert_eq!(info.lives, Some(0));
    let mut total = 0.0;
    let mut frames = 0;
    for t in 0..200 {
        let s = env.step_into(t % 6, &mut obs).unwrap();
        total += s.reward;
        frames = s.info.episode_frame_number.unwrap();
        assert!(!s.terminated && !s.truncated);
    }
    // frameskip 4: 200 steps are 800 frames after the reset's frames; random play loses points in Pong.
    assert!(frames >= 800, "{frames}");
    assert!(total <= 0.0, "{total}");
    // Step with a bad action and a bad buffer.
    assert!(matches!(env.step_into(6, &mut obs), Err(EnvError::InvalidAction { .. })));
    assert!(env.step_into(0, &mut obs[..10]).is_err());
}

#[test]
fn same_seed_same_episode_with_sticky_actions() {
    if !roms_available("same_seed_same_episode_with_sticky_actions") {
        return;
    }
    let mut cfg = AtariConfig::v5("Breakout");
    cfg.obs_type = ObsType::Grayscale;
    let run = |seed: u64| {
        let mut env = AtariEnv::new(cfg.clone()).unwrap();
        let mut obs = vec![0u8; env.obs_len()];
        env.reset_into(Some(seed), &mut obs).unwrap();
        let mut trace = Vec::new();
        for t in 0..150 {
            let s = env.step_into([1, 2, 3, 2][t % 4], &mut obs).unwrap();
            trace.push((s.reward, s.info.lives, obs.iter().map(|&b| b as u64).sum::<u64>()));
            if s.terminated {
                break;
            }
        }
        trace
    };
    assert_eq!(run(5), run(5));
    // Sticky actions (p = 0.25) draw from ALE's generator, seeded from the reset seed: seeds differ in frames.
    assert_ne!(run(5), run(6));
}

#[test]
fn frame_stack_shifts_and_pads_with_reset_frame() {
    if !roms_available("frame_stack_shifts_and_pads_with_reset_frame") {
        return;
    }
    let p = Preprocessing { noop_max: 0, frame_stack: 4, ..Preprocessing::default() };
    let mut env = AtariEnv::new(pre(p)).unwrap();
    assert_eq!(env.obs_shape(), &[4, 84, 84]);
    let f = 84 * 84;
    let mut obs = vec![0u8; env.obs_len()];
    env.reset_into(Some(0), &mut obs).unwrap();
    for k in 1..4 {
        assert_eq!(obs[..f], obs[k * f..(k + 1) * f], "reset pads with the first frame");
    }
    let mut prev = obs.clone();
    // A single-frame env with the same seed gives the newest frame.
    let mut single = AtariEnv::new(pre(Preprocessing { frame_stack: 1, ..p })).unwrap();
    let mut one = vec![0u8; single.obs_len()];
    single.reset_into(Some(0), &mut one).unwrap();
    for t in 0..60 {
        env.step_into(t % 6, &mut obs).unwrap();
        single.step_into(t % 6, &mut one).unwrap();
        assert_eq!(obs[..3 * f], prev[f..], "frames shift left by one");
        assert_eq!(obs[3 * f..], one[..], "the newest frame is last");
        prev.copy_from_slice(&obs);
    }
}

#[test]
fn noop_reset_draws_1_to_noop_max_frames() {
    if !roms_available("noop_reset_draws_1_to_noop_max_frames") {
        return;
    }
    let base = {
        let mut env = AtariEnv::new(pre(Preprocessing { noop_max: 0, ..Preprocessing::default() })).unwrap();
        let mut obs = vec![0u8; env.obs_len()];
        env.reset_into(Some(0), &mut obs).unwrap().episode_frame_number.unwrap()
    };
    let mut env = AtariEnv::new(pre(Preprocessing { noop_max: 30, ..Preprocessing::default() })).unwrap();
    let mut obs = vec![0u8; env.obs_len()];
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..10 {
        let n = env.reset_into(Some(seed), &mut obs).unwrap().episode_frame_number.unwrap() - base;
        assert!((1..=30).contains(&n), "seed {seed}: {n} no-ops");
        seen.insert(n);
    }
    // 10 uniform draws from 1..=30 give at least 5 distinct values with probability > 0.9999.
    assert!(seen.len() >= 5, "{seen:?}");
}

#[test]
fn breakout_life_loss_fire_reset_and_clipping() {
    if !roms_available("breakout_life_loss_fire_reset_and_clipping") {
        return;
    }
    let p = Preprocessing {
        noop_max: 0,
        terminal_on_life_loss: true,
        fire_reset: true,
        clip_rewards: true,
        ..Default::default()
    };
    let mut cfg = AtariConfig::preprocessed("Breakout", p);
    cfg.repeat_action_probability = 0.0;
    let mut env = AtariEnv::new(cfg).unwrap();
    let mut obs = vec![0u8; env.obs_len()];
    let info = env.reset_into(Some(0), &mut obs).unwrap();
    assert_eq!(info.lives, Some(5));
    // Fire reset took two agent steps (8 frames) beyond the plain reset.
    let mut plain = AtariConfig::preprocessed("Breakout", Preprocessing { fire_reset: false, ..p });
    plain.repeat_action_probability = 0.0;
    let mut penv = AtariEnv::new(plain).unwrap();
    let f0 = penv.reset_into(Some(0), &mut obs).unwrap().episode_frame_number.unwrap();
    assert_eq!(info.episode_frame_number.unwrap(), f0 + 8);
    // Doing nothing loses the ball: the episode terminates on the first life lost, with 4 lives left.
    let mut steps = 0;
    loop {
        let s = env.step_into(0, &mut obs).unwrap();
        assert!([-1.0, 0.0, 1.0].contains(&s.reward));
        steps += 1;
        if s.terminated {
            assert_eq!(s.info.lives, Some(4));
            break;
        }
        assert!(steps < 2000, "no life lost in 2000 steps");
    }
    assert!(matches!(env.step_into(0, &mut obs), Err(EnvError::NeedsReset(_))));
    // The next reset restarts the game (Gymnasium's terminal_on_life_loss): 5 lives again.
    assert_eq!(env.reset_into(None, &mut obs).unwrap().lives, Some(5));
}

#[test]
fn clipped_rewards_in_pong_are_signs() {
    if !roms_available("clipped_rewards_in_pong_are_signs") {
        return;
    }
    let mut env = AtariEnv::new(pre(Preprocessing { clip_rewards: true, noop_max: 0, ..Default::default() })).unwrap();
    let mut obs = vec![0u8; env.obs_len()];
    env.reset_into(Some(1), &mut obs).unwrap();
    let mut nonzero = 0;
    for t in 0..400 {
        let s = env.step_into(t % 6, &mut obs).unwrap();
        assert!([-1.0, 0.0, 1.0].contains(&s.reward), "{}", s.reward);
        nonzero += (s.reward != 0.0) as usize;
    }
    assert!(nonzero > 0, "no point scored in 400 steps");
}

#[test]
fn registry_makes_ale_v5_with_options() {
    if !roms_available("registry_makes_ale_v5_with_options") {
        return;
    }
    let mut env = registry::make("ALE/Pong-v5").unwrap();
    assert_eq!(env.observation_space().flat_dim(), 210 * 160 * 3);
    let o = Options::parse(["preprocess=true", "frame_stack=4", "repeat_action_probability=0"]).unwrap();
    let mut env2 = registry::make_with("ALE/Breakout-v5", &o).unwrap();
    assert_eq!(env2.observation_space().flat_dim(), 4 * 84 * 84);
    assert_eq!(env2.action_space().n(), Some(4));
    let mut obs = vec![0.0f32; 4 * 84 * 84];
    env2.reset_into(Some(0), &mut obs).unwrap();
    env2.step_into(ActionValue::Discrete(1), &mut obs).unwrap();
    assert!(obs.iter().all(|&v| (0.0..=255.0).contains(&v)));
    let mut big = vec![0.0f32; 210 * 160 * 3];
    env.reset_into(Some(0), &mut big).unwrap();
    let full = registry::make_with("ALE/Pong-v5", &Options::parse(["full_action_space=true"]).unwrap()).unwrap();
    assert_eq!(full.action_space().n(), Some(18));
    let e = registry::make_with("ALE/Pong-v5", &Options::parse(["mode=99"]).unwrap()).err().unwrap().to_string();
    assert!(e.contains("99") && e.contains("available"), "{e}");
    let e = registry::make_with("ALE/Pong-v5", &Options::parse(["framesskip=2"]).unwrap()).err().unwrap().to_string();
    assert!(e.contains("framesskip") && e.contains("frameskip"), "{e}");
    let e = registry::make_with("ALE/Pong-v5", &Options::parse(["preprocess=true", "frameskip=4"]).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("frameskip") && e.contains("must be 1"), "{e}");
}

#[test]
fn unsupported_rom_is_an_error_not_an_exit() {
    // No ROMs needed: ALE's loadROM would exit(1) on this file; the MD5 check runs first.
    let dir = std::env::temp_dir().join(format!("bellman-atari-badrom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rom = dir.join("pong.bin");
    std::fs::write(&rom, vec![0u8; 2048]).unwrap();
    let e = AtariEnv::with_rom(AtariConfig::v5("Pong"), rom).err().unwrap().to_string();
    assert!(e.contains("not a ROM supported") && e.contains("ale-py==0.12.1"), "{e}");
    let e = bellman_envs::atari::GAMES.len();
    assert_eq!(e, 108);
    let missing = bellman_ale::roms::rom_in(&dir, "Breakout").unwrap_err().to_string();
    assert!(missing.contains("breakout.bin") && missing.contains("pip install ale-py==0.12.1"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn vector_env_matches_single_envs() {
    if !roms_available("vector_env_matches_single_envs") {
        return;
    }
    let p = Preprocessing { noop_max: 30, frame_stack: 4, terminal_on_life_loss: true, ..Default::default() };
    let cfg = AtariConfig::preprocessed("Breakout", p);
    let n = 3;
    let mut v = AtariVecEnv::new(&cfg, n, 2).unwrap();
    let mut singles: Vec<AtariEnv> = (0..n).map(|_| AtariEnv::new(cfg.clone()).unwrap()).collect();
    let len = v.obs_len();
    let mut obs = vec![vec![0u8; len]; n];
    v.reset(Some(10)).unwrap();
    for (i, e) in singles.iter_mut().enumerate() {
        e.reset_into(Some(10 + i as u64), &mut obs[i]).unwrap();
        assert_eq!(&v.obs()[i * len..(i + 1) * len], &obs[i][..], "reset row {i}");
    }
    let mut done = vec![false; n];
    let mut resets = 0;
    for t in 0..150 {
        let actions: Vec<usize> = (0..n).map(|i| (t + i) % 4).collect();
        assert_eq!(v.autoreset_mask(), &done[..]);
        let s = v.step(&actions).unwrap();
        for i in 0..n {
            let (r, term) = if done[i] {
                resets += 1;
                singles[i].reset_into(None, &mut obs[i]).unwrap();
                (0.0, false)
            } else {
                let o = singles[i].step_into(actions[i], &mut obs[i]).unwrap();
                (o.reward, o.terminated)
            };
            assert_eq!(&s.obs[i * len..(i + 1) * len], &obs[i][..], "step {t} row {i}");
            assert_eq!((s.rewards[i], s.terminated[i]), (r, term), "step {t} env {i}");
            done[i] = term;
        }
    }
    assert!(resets > 0, "no episode ended: the autoreset path was not exercised");
    // One thread (no worker: the caller steps every env) gives the same batch.
    let mut v1 = AtariVecEnv::new(&cfg, n, 1).unwrap();
    assert_eq!(v1.num_threads(), 1);
    assert_eq!(v1.reset(Some(10)).unwrap(), v.reset(Some(10)).unwrap());
    let s1 = v1.step(&[1, 2, 3]).unwrap().obs.to_vec();
    assert_eq!(s1, v.step(&[1, 2, 3]).unwrap().obs);
    assert!(v.step(&[0; 2]).is_err());
    assert!(v.step(&[0, 0, 9]).is_err());
    assert!(AtariVecEnv::new(&cfg, 2, 3).is_err());
}
