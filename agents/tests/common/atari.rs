//! Shared by the Atari test files (`#[path = "common/atari.rs"] mod atari;`).
use bellman_agents::trainer::EnvSetup;

/// True when Pong's ROM is found; otherwise prints a SKIPPED line, or panics under `BELLMAN_REQUIRE_ROMS=1` (CI).
pub fn roms_available(test: &str) -> bool {
    match bellman_envs::atari::rom_path("Pong") {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("BELLMAN_REQUIRE_ROMS").is_ok_and(|v| v == "1") {
                panic!("{test}: Atari ROMs are required (BELLMAN_REQUIRE_ROMS=1) but missing: {e}");
            }
            eprintln!("SKIPPED {test}: Atari ROMs not found ({e})");
            println!("SKIPPED {test}: Atari ROMs not found; run scripts/setup-atari.sh");
            false
        }
    }
}

/// Pong with the Nature preprocessing, episodes truncated after 400 emulator frames (100 agent steps).
pub fn pong() -> EnvSetup {
    EnvSetup {
        id: "ALE/Pong-v5".into(),
        options: [
            "preprocess=true",
            "frame_stack=4",
            "fire_reset=true",
            "clip_rewards=true",
            "max_num_frames_per_episode=400",
        ]
        .map(String::from)
        .to_vec(),
    }
}

/// Breakout as SB3's `AtariWrapper` (the Nature setting): episodic life (a lost life ends the learner's episode,
/// the game goes on), FIRE reset, clipped rewards, 4 stacked frames; 5 lives per game.
#[allow(dead_code)]
pub fn breakout_episodic() -> EnvSetup {
    EnvSetup {
        id: "ALE/Breakout-v5".into(),
        options: ["preprocess=true", "frame_stack=4", "fire_reset=true", "clip_rewards=true", "episodic_life=true"]
            .map(String::from)
            .to_vec(),
    }
}
