//! Byte parity with Gymnasium 1.4.0 + ale-py 0.12.1: replays every fixture file in `tests/data/atari/`
//! (override with `BELLMAN_ATARI_FIXTURES`) and matches every observation hash, pooled-frame hash, reward, flag,
//! life count and frame number. The algorithm is in `tests/data/atari/README.md`.
#![cfg(feature = "atari")]

mod atari_common;

use std::path::PathBuf;

use bellman_envs::atari::{AtariConfig, AtariEnv, Preprocessing, seed_sequence};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn fixture_dir() -> PathBuf {
    match std::env::var_os("BELLMAN_ATARI_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/atari"),
    }
}

fn replay(path: &std::path::Path) -> usize {
    let name = path.display().to_string();
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let env_id = d["env_id"].as_str().unwrap();
    let game = env_id.strip_prefix("ALE/").and_then(|s| s.strip_suffix("-v5")).unwrap();
    let mk = &d["make_kwargs"];
    let wk = &d["wrapper_kwargs"];
    assert_eq!(mk["frameskip"].as_u64(), Some(1), "{name}");
    assert_eq!(wk["grayscale_obs"].as_bool(), Some(true), "{name}");
    assert_eq!(wk["scale_obs"].as_bool(), Some(false), "{name}");
    let p = Preprocessing {
        noop_max: wk["noop_max"].as_u64().unwrap() as u32,
        frame_skip: wk["frame_skip"].as_u64().unwrap() as u32,
        screen_size: wk["screen_size"].as_u64().unwrap() as usize,
        terminal_on_life_loss: wk["terminal_on_life_loss"].as_bool().unwrap(),
        episodic_life: false,
        fire_reset: false,
        clip_rewards: false,
        frame_stack: 1,
    };
    let mut cfg = AtariConfig::preprocessed(game, p);
    cfg.repeat_action_probability = mk["repeat_action_probability"].as_f64().unwrap() as f32;
    let mut env = AtariEnv::new(cfg).unwrap();
    let want_set: Vec<u8> =
        d["minimal_action_set"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
    assert_eq!(env.action_set(), &want_set[..], "{name}: minimal action set");

    let seed = d["seed"].as_u64().unwrap();
    let words = seed_sequence::<2>(seed);
    let want_words: Vec<u64> = d["reset"]["seeds"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(words.map(u64::from).to_vec(), want_words, "{name}: SeedSequence words");
    assert_eq!(words[1] as i32 as i64, d["ale_random_seed"].as_i64().unwrap(), "{name}: ALE random_seed");

    let mut obs = vec![0u8; env.obs_len()];
    let info = env.reset_into(Some(seed), &mut obs).unwrap();
    let r = &d["reset"];
    assert_eq!(hex(env.pooled_frame()), r["pooled_210x160_sha256"].as_str().unwrap(), "{name}: reset pooled frame");
    assert_eq!(hex(&obs), r["obs_sha256"].as_str().unwrap(), "{name}: reset obs");
    assert_eq!(info.lives, Some(r["lives"].as_u64().unwrap() as u32), "{name}: reset lives");

    let steps = d["steps"].as_array().unwrap();
    for s in steps {
        let i = s["i"].as_u64().unwrap();
        let a = s["action_index"].as_u64().unwrap() as usize;
        assert_eq!(env.action_set()[a] as u64, s["ale_action"].as_u64().unwrap(), "{name} step {i}: ALE action");
        let out = env.step_into(a, &mut obs).unwrap();
        let ctx = format!("{name} step {i}");
        assert_eq!(hex(env.pooled_frame()), s["pooled_210x160_sha256"].as_str().unwrap(), "{ctx}: pooled frame");
        assert_eq!(hex(&obs), s["obs_sha256"].as_str().unwrap(), "{ctx}: obs");
        assert_eq!(out.reward, s["reward"].as_f64().unwrap(), "{ctx}: reward");
        assert_eq!(out.terminated, s["terminated"].as_bool().unwrap(), "{ctx}: terminated");
        assert_eq!(out.truncated, s["truncated"].as_bool().unwrap(), "{ctx}: truncated");
        assert_eq!(out.info.lives, Some(s["lives"].as_u64().unwrap() as u32), "{ctx}: lives");
        assert_eq!(
            out.info.episode_frame_number,
            Some(s["episode_frame_number"].as_u64().unwrap()),
            "{ctx}: episode frame number"
        );
        if out.terminated || out.truncated {
            assert_eq!(Some(s), steps.last(), "{ctx}: the episode ended before the fixture's last step");
        }
    }
    steps.len()
}

#[test]
fn every_fixture_matches_gymnasium_byte_for_byte() {
    if !atari_common::roms_available("every_fixture_matches_gymnasium_byte_for_byte") {
        return;
    }
    let dir = fixture_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixture folder {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.json fixtures in {}", dir.display());
    for f in &files {
        let n = replay(f);
        println!("{}: {n} steps match", f.display());
    }
}

#[test]
fn first_observations_match_raw_bytes() {
    // The fixtures also carry raw bytes of the first observations: a mismatch here pinpoints the pixels.
    if !atari_common::roms_available("first_observations_match_raw_bytes") {
        return;
    }
    use base64::Engine as _;
    let path = fixture_dir().join("pong_fixture.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("SKIPPED first_observations_match_raw_bytes: no {} (BELLMAN_ATARI_FIXTURES)", path.display());
        return;
    };
    let d: Value = serde_json::from_str(&text).unwrap();
    let p = Preprocessing { noop_max: 0, ..Preprocessing::default() };
    let mut cfg = AtariConfig::preprocessed("Pong", p);
    cfg.repeat_action_probability = 0.0;
    let mut env = AtariEnv::new(cfg).unwrap();
    let mut obs = vec![0u8; env.obs_len()];
    env.reset_into(Some(0), &mut obs).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let want = b64.decode(d["first_obs_b64"]["reset"].as_str().unwrap()).unwrap();
    let diff: Vec<usize> = (0..obs.len()).filter(|&i| obs[i] != want[i]).collect();
    assert!(diff.is_empty(), "reset obs differs at {} pixels, first {:?}", diff.len(), &diff[..diff.len().min(10)]);
    for (k, key) in ["step0", "step1"].iter().enumerate() {
        let a = d["steps"][k]["action_index"].as_u64().unwrap() as usize;
        env.step_into(a, &mut obs).unwrap();
        let want = b64.decode(d["first_obs_b64"][key].as_str().unwrap()).unwrap();
        assert_eq!(obs, want, "{key}");
    }
}
