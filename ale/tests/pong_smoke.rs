//! Smoke test of the bindings on Pong: load, act, screen, errors. Skips with a SKIPPED line when the ROMs are
//! missing, unless `BELLMAN_REQUIRE_ROMS=1` (CI), where it fails.
#![cfg(feature = "link")]

use bellman_ale::{Ale, roms};

fn pong() -> Option<std::path::PathBuf> {
    match roms::rom_path("Pong") {
        Ok(p) => Some(p),
        Err(e) if std::env::var("BELLMAN_REQUIRE_ROMS").is_ok_and(|v| v == "1") => panic!("ROMs required: {e}"),
        Err(e) => {
            println!("SKIPPED pong smoke test: {e}");
            None
        }
    }
}

#[test]
fn steps_pong() {
    let Some(rom) = pong() else { return };
    assert_eq!(Ale::supported_rom(&rom).unwrap().as_deref(), Some("pong"));
    let mut ale = Ale::new().unwrap();
    assert!(ale.act(0, 1.0).is_err(), "act before load_rom must be an error");
    ale.set_int("random_seed", 0).unwrap();
    ale.set_float("repeat_action_probability", 0.0).unwrap();
    ale.load_rom(&rom).unwrap();
    assert_eq!((ale.screen_height(), ale.screen_width()), (210, 160));
    // Pong's minimal action set (ALE ids NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE).
    assert_eq!(ale.minimal_action_set().unwrap(), vec![0, 1, 3, 4, 11, 12]);
    assert_eq!(ale.legal_action_set().unwrap(), (0..18).collect::<Vec<u8>>());
    assert!(ale.available_modes().unwrap().len() >= 2);
    ale.reset_game().unwrap();
    let f0 = ale.episode_frame_number();
    let mut gray = vec![0u8; 210 * 160];
    let mut rgb = vec![0u8; 210 * 160 * 3];
    let mut rewards = Vec::new();
    for t in 0..3000 {
        let r = ale.act([0, 3, 4][t % 3], 1.0).unwrap();
        if r != 0 {
            rewards.push(r);
        }
    }
    assert_eq!(ale.episode_frame_number(), f0 + 3000);
    // In 3000 frames (50 s) someone scores in Pong, each point is +-1.
    assert!(!rewards.is_empty() && rewards.iter().all(|r| r.abs() == 1), "{rewards:?}");
    assert!(!ale.game_over(true));
    ale.screen_grayscale(&mut gray).unwrap();
    ale.screen_rgb(&mut rgb).unwrap();
    assert!(gray.iter().any(|&g| g != gray[0]), "a blank screen");
    assert!(ale.screen_grayscale(&mut gray[..100]).is_err());
    let e = ale.act(18, 1.0).unwrap_err().0;
    assert!(e.contains("18") && e.contains("0..18"), "{e}");
    let e = ale.set_mode(12345).unwrap_err().0;
    assert!(e.contains("12345") && e.contains("available"), "{e}");
}

#[test]
fn unknown_rom_is_an_error() {
    let dir = std::env::temp_dir().join(format!("bellman-ale-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("pong.bin");
    std::fs::write(&bad, [0u8; 4096]).unwrap();
    assert_eq!(Ale::supported_rom(&bad).unwrap(), None);
    let mut ale = Ale::new().unwrap();
    let e = ale.load_rom(&bad).unwrap_err().0;
    assert!(e.contains("not a ROM supported"), "{e}");
    let e = Ale::supported_rom(&dir.join("missing.bin")).unwrap_err().0;
    assert!(e.contains("doesn't exist"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
