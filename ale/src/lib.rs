//! bellman-ale: the Arcade Learning Environment (ALE) 0.12.1 for Bellman, through a small C shim.
//!
//! **Licence: GPL-2.0-only** (ALE's). This crate is only compiled and linked with its `link` feature, which
//! `bellman-envs`' `atari` feature turns on; the default Bellman build contains no GPL code.
//!
//! * `Ale` (with the `link` feature): one emulator instance. It is `Send` but not `Sync` (ALE is not thread-safe): use one per thread.
//! * [`roms`]: finds ROMs at run time (`ALE_ROMS_DIR`, else the installed `ale-py` wheel), never committed.
//!
//! The C++ sources come from the `ale-py==0.12.1` sdist (see `build.rs`); every C++ exception is caught in the
//! shim and becomes an [`AleError`].
//!
//! ```no_run
//! # #[cfg(feature = "link")] {
//! use bellman_ale::{Ale, roms};
//! let rom = roms::rom_path("pong").unwrap();
//! let mut ale = Ale::new().unwrap();
//! ale.set_float("repeat_action_probability", 0.0).unwrap();
//! ale.load_rom(&rom).unwrap();
//! let mut screen = vec![0u8; ale.screen_width() * ale.screen_height()];
//! let r = ale.act(0, 1.0).unwrap();
//! ale.screen_grayscale(&mut screen).unwrap();
//! assert_eq!(r, 0);
//! # }
//! ```
#![cfg_attr(not(feature = "link"), allow(dead_code))]

pub mod roms;

#[cfg(feature = "link")]
mod ale;
#[cfg(feature = "link")]
pub use ale::Ale;

/// An error from ALE or from ROM discovery; the message names the bad value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AleError(pub String);

impl std::fmt::Display for AleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AleError {}

/// Result of ALE calls.
pub type Result<T> = std::result::Result<T, AleError>;

/// ALE's 18 joystick actions (`ale::Action` in ALE's `common/Constants.h`), in ALE's numbering.
pub const ACTION_NAMES: [&str; 18] = [
    "NOOP",
    "FIRE",
    "UP",
    "RIGHT",
    "LEFT",
    "DOWN",
    "UPRIGHT",
    "UPLEFT",
    "DOWNRIGHT",
    "DOWNLEFT",
    "UPFIRE",
    "RIGHTFIRE",
    "LEFTFIRE",
    "DOWNFIRE",
    "UPRIGHTFIRE",
    "UPLEFTFIRE",
    "DOWNRIGHTFIRE",
    "DOWNLEFTFIRE",
];
