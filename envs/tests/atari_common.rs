#![cfg(feature = "atari")]
//! Shared by the Atari tests: ROM availability and the skip rule.
#![allow(dead_code)]

/// True when the Atari ROMs can be found. When they cannot: with `BELLMAN_REQUIRE_ROMS=1` (set by `.ci/run`) the
/// test fails; otherwise it prints a clear SKIPPED line and the caller returns.
pub fn roms_available(test: &str) -> bool {
    match bellman_ale::roms::rom_path("Pong") {
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
