//! SB3's `EpisodicLifeEnv` in [`AtariEnv`] (`Preprocessing::episodic_life`) and the full-game statistics
//! (`info.episode`), on Breakout (5 lives). Every ROM-using test skips (with a SKIPPED line) when the ROMs are
//! missing, except under `BELLMAN_REQUIRE_ROMS=1` (CI), where it fails.
//!
//! Reference: `EpisodicLifeEnv` and `FireResetEnv` in `stable_baselines3/common/atari_wrappers.py` (SB3 2.x): a
//! lost life with lives still > 0 sets `terminated`; the next reset takes one no-op step (action 0, through
//! `MaxAndSkipEnv`) instead of restarting, unless the last step was a real game over or truncation; FIRE and
//! action 2 follow every reset.
#![cfg(feature = "atari")]

mod atari_common;

use atari_common::roms_available;
use bellman_envs::atari::{AtariConfig, AtariEnv, AtariVecEnv, Preprocessing};
use bellman_envs::{EnvError, Info};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations_during;

// ---- Helpers. ----

/// Breakout without sticky actions or no-ops (deterministic for any seed), episodic life, FIRE reset, 4 frames.
fn episodic() -> Preprocessing {
    Preprocessing { noop_max: 0, episodic_life: true, fire_reset: true, frame_stack: 4, ..Preprocessing::default() }
}

fn breakout(p: Preprocessing) -> AtariEnv {
    let mut cfg = AtariConfig::preprocessed("Breakout", p);
    cfg.repeat_action_probability = 0.0;
    AtariEnv::new(cfg).unwrap()
}

/// A fixed action sequence that moves the paddle and fires (Breakout's actions: NOOP, FIRE, RIGHT, LEFT).
fn action(t: usize) -> usize {
    [1, 2, 2, 0, 3, 3, 3, 0, 2][t % 9]
}

/// `info` without the wall-clock time of `info.episode` (the only field that differs between two runs).
fn untimed(mut info: Info) -> Info {
    if let Some(e) = info.episode.as_mut() {
        e.time = 0.0;
    }
    info
}

/// One step as the test sees it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    reward: f64,
    terminated: bool,
    truncated: bool,
    info: Info,
}

/// Plays one whole game from `reset_into(Some(seed))` with `action(t)`, continuing through episodic resets: the
/// visible steps, and the infos of the resets that followed a life loss.
fn play_game(env: &mut AtariEnv, seed: u64) -> (Vec<Seen>, Vec<Info>) {
    let mut obs = vec![0u8; env.obs_len()];
    env.reset_into(Some(seed), &mut obs).unwrap();
    let (mut steps, mut resets) = (Vec::new(), Vec::new());
    for t in 0..20_000 {
        let s = env.step_into(action(t), &mut obs).unwrap();
        steps.push(Seen { reward: s.reward, terminated: s.terminated, truncated: s.truncated, info: untimed(s.info) });
        if s.info.episode.is_some() {
            return (steps, resets);
        }
        if s.terminated || s.truncated {
            resets.push(untimed(env.reset_into(None, &mut obs).unwrap()));
        }
    }
    panic!("no game over in 20000 steps");
}

// ---- Tests. ----

/// A lost life sets `terminated` with lives still > 0 and no `info.episode`; stepping then needs a reset; the
/// unseeded reset continues the same game: the lives stay one fewer, ALE's frame counter goes on by exactly the
/// continuation's frames (one no-op agent step and the two FIRE-reset steps: 3 x 4 frames), never back to 5
/// lives. The game over carries `info.episode` with the raw score of all lives and the game's agent steps; the
/// next reset starts a new game (5 lives).
#[test]
fn a_lost_life_ends_the_episode_and_the_reset_continues_the_game() {
    if !roms_available("a_lost_life_ends_the_episode_and_the_reset_continues_the_game") {
        return;
    }
    let mut env = breakout(episodic());
    let mut obs = vec![0u8; env.obs_len()];
    let start = env.reset_into(Some(0), &mut obs).unwrap();
    assert_eq!(start.lives, Some(5));
    assert_eq!(start.episode, None);
    let (mut lives, mut losses, mut len, mut score) = (5u32, 0, 0u64, 0.0);
    let mut frame = start.episode_frame_number.unwrap();
    for t in 0..20_000 {
        let s = env.step_into(action(t), &mut obs).unwrap();
        len += 1;
        score += s.reward;
        let now = s.info.lives.unwrap();
        let f = s.info.episode_frame_number.unwrap();
        assert!(f > frame && f <= frame + 4, "step {t}: frame {frame} -> {f}");
        frame = f;
        if now == 0 {
            // The game over: the real end, with the whole game's stats.
            assert!(s.terminated && !s.truncated, "step {t}");
            assert_eq!(lives, 1, "the game ends after the last of 5 lives");
            let ep = s.info.episode.expect("the game over carries info.episode");
            assert_eq!(ep.len, len, "agent steps of the whole game");
            assert_eq!(ep.ret, score, "raw score over all lives (rewards not clipped here)");
            assert!(ep.time >= 0.0);
            assert_eq!(losses, 4);
            let next = env.reset_into(None, &mut obs).unwrap();
            assert_eq!(next.lives, Some(5), "after a game over the reset restarts the game");
            assert!(next.episode_frame_number.unwrap() < 20, "{next:?}");
            return;
        }
        if now < lives {
            assert!(s.terminated && !s.truncated, "step {t}: a lost life terminates the episode");
            assert_eq!(now, lives - 1);
            assert_eq!(s.info.episode, None, "a lost life is not the end of the game");
            assert!(matches!(env.step_into(0, &mut obs), Err(EnvError::NeedsReset(_))));
            let r = env.reset_into(None, &mut obs).unwrap();
            assert_eq!(r.lives, Some(now), "the game goes on with the lives left");
            assert_eq!(r.episode_frame_number.unwrap(), frame + 12, "no-op step + FIRE + action 2, 4 frames each");
            assert_eq!(r.episode, None);
            frame += 12;
            lives = now;
            losses += 1;
        } else {
            assert!(!s.terminated && !s.truncated, "step {t}: {s:?}");
        }
    }
    panic!("no game over in 20000 steps");
}

/// Without the FIRE reset the continuation is exactly one no-op agent step (4 frames), and the frame stack
/// restarts padded with its frame (Gymnasium's `FrameStackObservation`, padding with the reset frame): the
/// four frames are equal, and they are the newest frame of a one-frame env run the same way.
#[test]
fn the_continuation_is_one_noop_step_and_restarts_the_frame_stack() {
    if !roms_available("the_continuation_is_one_noop_step_and_restarts_the_frame_stack") {
        return;
    }
    let p = Preprocessing { fire_reset: false, ..episodic() };
    let mut env = breakout(p);
    let mut single = breakout(Preprocessing { frame_stack: 1, ..p });
    let f = 84 * 84;
    let mut obs = vec![0u8; env.obs_len()];
    let mut one = vec![0u8; single.obs_len()];
    env.reset_into(Some(3), &mut obs).unwrap();
    single.reset_into(Some(3), &mut one).unwrap();
    let mut continued = 0;
    for t in 0..3000 {
        let s = env.step_into(action(t), &mut obs).unwrap();
        let s1 = single.step_into(action(t), &mut one).unwrap();
        assert_eq!((s.reward, s.terminated, untimed(s.info)), (s1.reward, s1.terminated, untimed(s1.info)), "step {t}");
        if s.info.episode.is_some() {
            break;
        }
        if s.terminated {
            let frame = s.info.episode_frame_number.unwrap();
            let r = env.reset_into(None, &mut obs).unwrap();
            single.reset_into(None, &mut one).unwrap();
            assert_eq!(r.episode_frame_number.unwrap(), frame + 4, "one no-op agent step");
            for k in 1..4 {
                assert_eq!(obs[..f], obs[k * f..(k + 1) * f], "the stack is padded with the continuation's frame");
            }
            assert_eq!(obs[3 * f..], one[..]);
            assert!(one.iter().any(|&b| b != 0), "a real frame");
            continued += 1;
        }
    }
    assert!(continued >= 2, "only {continued} continuations in 3000 steps");
}

/// With clipped rewards the learner sees signs, and `info.episode.ret` is still the raw game score: it equals
/// the unclipped run's summed rewards (same seed and actions, no sticky actions: the same game).
#[test]
fn the_game_score_is_raw_when_rewards_are_clipped() {
    if !roms_available("the_game_score_is_raw_when_rewards_are_clipped") {
        return;
    }
    let (raw_steps, raw_resets) = play_game(&mut breakout(episodic()), 1);
    let (clip_steps, clip_resets) = play_game(&mut breakout(Preprocessing { clip_rewards: true, ..episodic() }), 1);
    assert_eq!(raw_steps.len(), clip_steps.len(), "the same game");
    assert_eq!(raw_resets, clip_resets);
    assert_eq!(raw_resets.len(), 4, "4 lives lost before the game over");
    assert!(raw_resets.iter().all(|i| i.episode.is_none() && i.lives.unwrap() > 0), "{raw_resets:?}");
    let raw_score: f64 = raw_steps.iter().map(|s| s.reward).sum();
    let clipped_sum: f64 = clip_steps.iter().map(|s| s.reward).sum();
    assert!(raw_score > 0.0, "the fixed actions hit some bricks");
    assert!(clip_steps.iter().all(|s| [-1.0, 0.0, 1.0].contains(&s.reward)));
    for (r, c) in raw_steps.iter().zip(&clip_steps) {
        let sign = if r.reward > 0.0 {
            1.0
        } else if r.reward < 0.0 {
            -1.0
        } else {
            0.0
        };
        assert_eq!(c.reward, sign);
    }
    let ep = clip_steps.last().unwrap().info.episode.unwrap();
    assert_eq!(ep.ret, raw_score, "clipped sum {clipped_sum}");
    assert_eq!(ep.len, clip_steps.len() as u64);
    assert_eq!(raw_steps.last().unwrap().info.episode.unwrap().ret, raw_score);
    // Exactly one step carries the stats: the game's last.
    assert_eq!(clip_steps.iter().filter(|s| s.info.episode.is_some()).count(), 1);
}

/// A seeded reset always restarts the game, even right after a lost life; so does an unseeded reset in the
/// middle of an episode (not after a lost life: e.g. after an outer time limit).
#[test]
fn a_seeded_reset_restarts_the_game() {
    if !roms_available("a_seeded_reset_restarts_the_game") {
        return;
    }
    let mut env = breakout(episodic());
    let mut obs = vec![0u8; env.obs_len()];
    let fresh = env.reset_into(Some(4), &mut obs).unwrap();
    let fresh_obs = obs.clone();
    let mut t = 0;
    loop {
        let s = env.step_into(action(t), &mut obs).unwrap();
        t += 1;
        if s.terminated {
            assert_eq!(s.info.lives, Some(4));
            break;
        }
    }
    let again = env.reset_into(Some(4), &mut obs).unwrap();
    assert_eq!(again, fresh, "5 lives, the same first frame number");
    assert_eq!(obs, fresh_obs, "the same first observation");
    // Mid-episode (after a few steps, no life lost) an unseeded reset restarts the game too.
    for t in 0..5 {
        env.step_into(action(t), &mut obs).unwrap();
    }
    let mid = env.reset_into(None, &mut obs).unwrap();
    assert_eq!(mid.lives, Some(5));
    assert_eq!(mid.episode_frame_number, fresh.episode_frame_number);
}

/// `episodic_life` and `terminal_on_life_loss` together are an error naming both (checked before the ROM is
/// read, so this needs no ROM).
#[test]
fn both_life_flags_together_are_an_error() {
    let p = Preprocessing { terminal_on_life_loss: true, ..episodic() };
    let cfg = AtariConfig::preprocessed("Breakout", p);
    let e = AtariEnv::with_rom(cfg, std::path::PathBuf::from("/nonexistent/breakout.bin")).unwrap_err().to_string();
    assert!(e.contains("episodic_life") && e.contains("terminal_on_life_loss") && e.contains("ALE/Breakout-v5"), "{e}");
    assert!(Preprocessing::nature().episodic_life && !Preprocessing::nature().terminal_on_life_loss);
}

/// Gymnasium's `terminal_on_life_loss` restarts the game at the next reset, so its game ends at the lost life:
/// that step carries `info.episode`. The raw env (no preprocessing) reports its games too (here truncated by
/// ALE's frame limit).
#[test]
fn games_end_at_a_life_loss_with_terminal_on_life_loss_and_in_the_raw_env() {
    if !roms_available("games_end_at_a_life_loss_with_terminal_on_life_loss_and_in_the_raw_env") {
        return;
    }
    let p = Preprocessing { terminal_on_life_loss: true, ..Preprocessing { episodic_life: false, ..episodic() } };
    let mut env = breakout(p);
    let mut obs = vec![0u8; env.obs_len()];
    env.reset_into(Some(0), &mut obs).unwrap();
    let (mut len, mut score) = (0, 0.0);
    for t in 0.. {
        let s = env.step_into(action(t), &mut obs).unwrap();
        len += 1;
        score += s.reward;
        if s.terminated {
            assert_eq!(s.info.lives, Some(4));
            let ep = s.info.episode.expect("the game ends at the lost life");
            assert_eq!((ep.len, ep.ret), (len, score));
            break;
        }
        assert_eq!(s.info.episode, None);
    }
    assert_eq!(env.reset_into(None, &mut obs).unwrap().lives, Some(5));

    let mut cfg = AtariConfig::v5("Pong");
    cfg.max_num_frames_per_episode = Some(400);
    let mut raw = AtariEnv::new(cfg).unwrap();
    let mut obs = vec![0u8; raw.obs_len()];
    raw.reset_into(Some(0), &mut obs).unwrap();
    let (mut len, mut score) = (0, 0.0);
    loop {
        let s = raw.step_into(len as usize % 6, &mut obs).unwrap();
        len += 1;
        score += s.reward;
        if s.truncated || s.terminated {
            assert!(s.truncated);
            let ep = s.info.episode.expect("a truncated game carries info.episode");
            assert_eq!((ep.len, ep.ret), (len, score));
            assert_eq!(len, 100, "400 frames at frameskip 4");
            break;
        }
        assert_eq!(s.info.episode, None);
    }
}

/// A game that ends inside a reset's own steps (here ALE's frame limit falls inside the continuation's no-op
/// step) restarts, and that reset's info carries the ended game's stats (SB3: "The no-op step can lead to a game
/// over", then EpisodicLifeEnv resets).
#[test]
fn a_game_ending_inside_the_continuation_is_reported_by_the_reset() {
    if !roms_available("a_game_ending_inside_the_continuation_is_reported_by_the_reset") {
        return;
    }
    // Find the frame of the first lost life, then cut the game 2 frames after it.
    let (steps, _) = play_game(&mut breakout(episodic()), 2);
    let k = steps.iter().position(|s| s.terminated).unwrap();
    let frame = steps[k].info.episode_frame_number.unwrap();
    let mut cfg = AtariConfig::preprocessed("Breakout", episodic());
    cfg.repeat_action_probability = 0.0;
    cfg.max_num_frames_per_episode = Some(frame as u32 + 2);
    let mut env = AtariEnv::new(cfg).unwrap();
    let mut obs = vec![0u8; env.obs_len()];
    env.reset_into(Some(2), &mut obs).unwrap();
    let mut score = 0.0;
    for t in 0..=k {
        let s = env.step_into(action(t), &mut obs).unwrap();
        score += s.reward;
        assert_eq!((s.terminated, s.truncated), (t == k, false), "step {t}");
        assert_eq!(s.info.episode, None);
    }
    let r = env.reset_into(None, &mut obs).unwrap();
    let ep = r.episode.expect("the reset reports the game that ended inside it");
    assert_eq!((ep.len, ep.ret), (k as u64 + 1, score));
    assert_eq!(r.lives, Some(5), "and restarts the game");
    assert!(r.episode_frame_number.unwrap() < 20);
}

/// `AtariVecEnv`'s autoreset is the env's own unseeded reset: after a lost life the row continues the same
/// game. The batch equals single envs driven by hand (reset(None) after every end), and over a run the lives
/// go down through autoresets without returning to 5 until a game over.
#[test]
fn the_vector_env_autoresets_episodically() {
    if !roms_available("the_vector_env_autoresets_episodically") {
        return;
    }
    let p = Preprocessing { noop_max: 30, ..episodic() };
    let mut cfg = AtariConfig::preprocessed("Breakout", p);
    cfg.repeat_action_probability = 0.0;
    let n = 3;
    let mut v = AtariVecEnv::new(&cfg, n, 2).unwrap();
    let mut singles: Vec<AtariEnv> = (0..n).map(|_| AtariEnv::new(cfg.clone()).unwrap()).collect();
    let len = v.obs_len();
    let mut obs = vec![vec![0u8; len]; n];
    v.reset(Some(20)).unwrap();
    for (i, e) in singles.iter_mut().enumerate() {
        e.reset_into(Some(20 + i as u64), &mut obs[i]).unwrap();
    }
    let mut done = vec![false; n];
    let mut last_lives = vec![5u32; n];
    let (mut continuations, mut games) = (0, 0);
    for t in 0..2500 {
        let actions: Vec<usize> = (0..n).map(|i| action(t + 3 * i)).collect();
        let s = v.step(&actions).unwrap();
        for i in 0..n {
            let (r, term, info) = if done[i] {
                let info = singles[i].reset_into(None, &mut obs[i]).unwrap();
                if info.lives.unwrap() == last_lives[i] && last_lives[i] > 0 {
                    continuations += 1;
                }
                (0.0, false, info)
            } else {
                let o = singles[i].step_into(actions[i], &mut obs[i]).unwrap();
                (o.reward, o.terminated, o.info)
            };
            assert_eq!(&s.obs[i * len..(i + 1) * len], &obs[i][..], "step {t} row {i}");
            assert_eq!(
                (s.rewards[i], s.terminated[i], untimed(s.infos[i])),
                (r, term, untimed(info)),
                "step {t} env {i}"
            );
            games += info.episode.is_some() as usize;
            let lives = info.lives.unwrap();
            assert!(lives <= last_lives[i] || info.episode_frame_number.unwrap() < 200, "step {t} env {i}");
            last_lives[i] = lives;
            done[i] = term;
        }
    }
    assert!(continuations >= 4, "only {continuations} episodic autoresets");
    assert!(games >= 1, "no game over in 2500 steps");
}

/// Stepping and episodic continuations allocate nothing (the stats live in the env; `Info` is `Copy`).
#[test]
fn episodic_steps_and_continuations_allocate_nothing() {
    if !roms_available("episodic_steps_and_continuations_allocate_nothing") {
        return;
    }
    let mut env = breakout(Preprocessing { clip_rewards: true, ..episodic() });
    let mut obs = vec![0u8; env.obs_len()];
    env.reset_into(Some(0), &mut obs).unwrap();
    let mut continuations = 0;
    let n = allocations_during(|| {
        for t in 0..1500 {
            let s = env.step_into(action(t), &mut obs).unwrap();
            if s.info.episode.is_some() {
                break;
            }
            if s.terminated {
                env.reset_into(None, &mut obs).unwrap();
                continuations += 1;
            }
        }
    });
    assert!(continuations >= 2, "only {continuations} continuations");
    assert_eq!(n, 0, "{n} allocations in steps and {continuations} episodic resets");
}

/// Parity with Stable-Baselines3 2.9.2's `AtariWrapper` (Monitor inside it, as `make_atari_env`) on Breakout:
/// `tests/data/atari/sb3/breakout_episodic_life.json` (generator and versions in tests/data/atari/README.md)
/// holds two whole games of a fixed action sequence with `env.reset()` after every end. Every step's clipped
/// reward, flags, lives, ALE frame number and grayscale screen, every reset's (4 continuations per game, one
/// game restart), and Monitor's raw score per game match; our `info.episode` appears exactly where Monitor's
/// `info["episode"]` does, with `len` = the game's agent steps (Monitor's `l` counts emulator frames).
#[test]
fn the_life_loss_and_continue_sequence_matches_sb3_atari_wrapper() {
    if !roms_available("the_life_loss_and_continue_sequence_matches_sb3_atari_wrapper") {
        return;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/atari/sb3/breakout_episodic_life.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(d["deterministic_rerun"], true);
    let p = Preprocessing { clip_rewards: true, frame_stack: 1, ..episodic() };
    let mut env = breakout(p);
    let mut obs = vec![0u8; env.obs_len()];
    let mut screen = vec![0u8; 210 * 160];
    let mut state = |env: &AtariEnv, info: &Info| {
        env.ale().screen_grayscale(&mut screen).unwrap();
        let hash: String = Sha256::digest(&screen).iter().map(|x| format!("{x:02x}")).collect();
        (info.lives.unwrap() as u64, info.episode_frame_number.unwrap(), hash)
    };
    let want = |e: &Value| {
        let hash = e["screen_gray_sha256"].as_str().unwrap().to_string();
        (e["lives"].as_u64().unwrap(), e["episode_frame_number"].as_u64().unwrap(), hash)
    };
    let events = d["events"].as_array().unwrap();
    let (mut games, mut continuations) = (0, 0);
    for (i, e) in events.iter().enumerate() {
        if e["kind"] == "reset" {
            let info = env.reset_into(if i == 0 { Some(d["seed"].as_u64().unwrap()) } else { None }, &mut obs).unwrap();
            assert_eq!(state(&env, &info), want(e), "event {i}: reset");
            assert_eq!(info.episode, None, "event {i}");
            continuations += (info.lives != Some(5)) as usize;
            continue;
        }
        let s = env.step_into(e["action"].as_u64().unwrap() as usize, &mut obs).unwrap();
        let got = (s.reward, s.terminated, s.truncated);
        let exp =
            (e["reward"].as_f64().unwrap(), e["terminated"].as_bool().unwrap(), e["truncated"].as_bool().unwrap());
        assert_eq!(got, exp, "event {i}: step");
        assert_eq!(state(&env, &s.info), want(e), "event {i}: step");
        match (&e["monitor_episode"], s.info.episode) {
            (Value::Null, None) => {}
            (m, Some(ep)) if !m.is_null() => {
                assert_eq!(ep.ret, m["r"].as_f64().unwrap(), "event {i}: Monitor's raw score");
                assert_eq!(ep.len, m["agent_steps"].as_u64().unwrap(), "event {i}: agent steps of the game");
                games += 1;
            }
            (m, ep) => panic!("event {i}: Monitor episode {m}, ours {ep:?}"),
        }
    }
    assert_eq!((games, continuations), (2, 8));
}
