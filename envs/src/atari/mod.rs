//! Atari 2600 games through the Arcade Learning Environment (cargo feature `atari`; links the GPL-2.0-only
//! [`bellman_ale`] crate).
//!
//! * [`AtariEnv`]: `ALE/<Game>-v5` with Gymnasium's options, optionally with the DQN [`Preprocessing`]
//!   (Gymnasium's `AtariPreprocessing`, bit-exact: see `envs/tests/atari_parity.rs`) and frame stacking,
//!   writing `u8` observations into caller buffers.
//! * [`AtariVecEnv`]: N games on worker threads (one ALE each), observations in one batch buffer.
//! * [`AreaResizer`]: OpenCV's INTER_AREA resize, bit-exact.
//! * Registered ids: `ALE/<Game>-v5` for the 108 ROMs of ale-py 0.12.1 ([`specs`]).
//!
//! ROMs are found at run time (`ALE_ROMS_DIR`, else the `ale-py` wheel): see [`bellman_ale::roms`].
//!
//! ```no_run
//! use bellman_envs::atari::{AtariConfig, AtariEnv, Preprocessing};
//! let mut env = AtariEnv::new(AtariConfig::preprocessed("Pong", Preprocessing::nature())).unwrap();
//! let mut obs = vec![0u8; env.obs_len()]; // 4 x 84 x 84
//! env.reset_into(Some(0), &mut obs).unwrap();
//! let out = env.step_into(0, &mut obs).unwrap();
//! assert!(!out.terminated);
//! ```
mod env;
mod resize;
mod seed;
mod vector;

pub use bellman_ale::roms::{GAMES, rom_path, roms_dir};
pub use env::{AtariConfig, AtariEnv, AtariObs, ObsType, Preprocessing};
pub use resize::AreaResizer;
pub use seed::seed_sequence;
pub use vector::{AtariVecEnv, AtariVecStep};

use crate::env::DynEnv;
use crate::error::{EnvError, Result};
use crate::options::Options;
use crate::registry::{EnvSpec, OptionDoc, boxed};

/// Options of the `ALE/<Game>-v5` envs: Gymnasium's keyword arguments, then the preprocessing (used when
/// `preprocess=true`).
pub const OPTIONS: &[OptionDoc] = &[
    OptionDoc { key: "frameskip", default: "4 (1 with preprocess)", help: "emulator frames per step" },
    OptionDoc { key: "repeat_action_probability", default: "0.25", help: "sticky-action probability" },
    OptionDoc { key: "full_action_space", default: "false", help: "all 18 actions instead of the minimal set" },
    OptionDoc { key: "mode", default: "game default", help: "game mode" },
    OptionDoc { key: "difficulty", default: "game default", help: "game difficulty" },
    OptionDoc { key: "max_num_frames_per_episode", default: "108000", help: "frames before truncation" },
    OptionDoc { key: "obs_type", default: "rgb", help: "rgb or grayscale (raw env)" },
    OptionDoc { key: "preprocess", default: "false", help: "AtariPreprocessing (84x84 grayscale, max-pool)" },
    OptionDoc { key: "noop_max", default: "30", help: "max no-ops after reset (preprocess)" },
    OptionDoc { key: "frame_skip", default: "4", help: "frames per agent step (preprocess)" },
    OptionDoc { key: "screen_size", default: "84", help: "observation side (preprocess)" },
    OptionDoc {
        key: "terminal_on_life_loss",
        default: "false",
        help: "life loss ends the episode, next reset restarts the game (Gymnasium; preprocess)",
    },
    OptionDoc {
        key: "episodic_life",
        default: "false",
        help: "life loss ends the episode, next reset continues the game (SB3 EpisodicLifeEnv; preprocess)",
    },
    OptionDoc { key: "fire_reset", default: "false", help: "press FIRE after reset (preprocess)" },
    OptionDoc { key: "clip_rewards", default: "false", help: "rewards to their sign (preprocess)" },
    OptionDoc { key: "frame_stack", default: "1", help: "stacked frames (preprocess)" },
];

/// Reads an [`AtariConfig`] for `game` from registry options (see [`OPTIONS`]).
pub fn config_from_options(id: &str, game: &str, o: &Options) -> Result<AtariConfig> {
    let preprocess = o.get_bool(id, "preprocess")?.unwrap_or(false);
    let mut cfg = AtariConfig::v5(game);
    if preprocess {
        let d = Preprocessing::default();
        let small = |key: &str, v: Option<u64>, def: u64, max: u64| -> Result<u64> {
            match v {
                Some(x) if x > max => Err(EnvError::BadOption {
                    env: id.into(),
                    key: key.into(),
                    value: x.to_string(),
                    reason: format!("must be at most {max}"),
                }),
                Some(x) => Ok(x),
                None => Ok(def),
            }
        };
        let p = Preprocessing {
            noop_max: small("noop_max", o.get_u64(id, "noop_max")?, d.noop_max as u64, 10_000)? as u32,
            frame_skip: small("frame_skip", o.get_u64(id, "frame_skip")?, d.frame_skip as u64, 1_000)? as u32,
            screen_size: small("screen_size", o.get_u64(id, "screen_size")?, d.screen_size as u64, 160)? as usize,
            terminal_on_life_loss: o.get_bool(id, "terminal_on_life_loss")?.unwrap_or(false),
            episodic_life: o.get_bool(id, "episodic_life")?.unwrap_or(false),
            fire_reset: o.get_bool(id, "fire_reset")?.unwrap_or(false),
            clip_rewards: o.get_bool(id, "clip_rewards")?.unwrap_or(false),
            frame_stack: small("frame_stack", o.get_u64(id, "frame_stack")?, 1, 64)? as usize,
        };
        if p.episodic_life && p.terminal_on_life_loss {
            return Err(EnvError::BadOption {
                env: id.into(),
                key: "episodic_life".into(),
                value: "true".into(),
                reason: env::EXCLUSIVE_LIVES.into(),
            });
        }
        cfg.preprocessing = Some(p);
        cfg.frameskip = 1;
    }
    if let Some(f) = o.get_u64(id, "frameskip")? {
        cfg.frameskip = u32::try_from(f).map_err(|_| EnvError::BadOption {
            env: id.into(),
            key: "frameskip".into(),
            value: f.to_string(),
            reason: "must be a small positive integer".into(),
        })?;
    }
    if let Some(p) = o.get_f64(id, "repeat_action_probability")? {
        cfg.repeat_action_probability = p as f32;
    }
    if let Some(b) = o.get_bool(id, "full_action_space")? {
        cfg.full_action_space = b;
    }
    let u32_opt = |key: &str, v: Option<u64>| -> Result<Option<u32>> {
        v.map(|x| {
            u32::try_from(x).map_err(|_| EnvError::BadOption {
                env: id.into(),
                key: key.into(),
                value: x.to_string(),
                reason: "must fit in 32 bits".into(),
            })
        })
        .transpose()
    };
    cfg.mode = u32_opt("mode", o.get_u64(id, "mode")?)?;
    cfg.difficulty = u32_opt("difficulty", o.get_u64(id, "difficulty")?)?;
    if let Some(m) = u32_opt("max_num_frames_per_episode", o.get_u64(id, "max_num_frames_per_episode")?)? {
        cfg.max_num_frames_per_episode = if m == 0 { None } else { Some(m) };
    }
    if let Some(t) = o.get_str("obs_type") {
        cfg.obs_type = match t {
            "rgb" => ObsType::Rgb,
            "grayscale" => ObsType::Grayscale,
            other => {
                return Err(EnvError::BadOption {
                    env: id.into(),
                    key: "obs_type".into(),
                    value: other.into(),
                    reason: "expected rgb or grayscale".into(),
                });
            }
        };
    }
    Ok(cfg)
}

fn make_game<const I: usize>(o: &Options, limit: Option<u64>) -> Result<Box<dyn DynEnv>> {
    let (_, name) = GAMES[I];
    let id = format!("ALE/{name}-v5");
    let cfg = config_from_options(&id, name, o)?;
    Ok(boxed(AtariEnv::new(cfg)?, limit))
}

macro_rules! spec {
    ($id:literal, $i:literal) => {
        EnvSpec {
            id: $id,
            max_episode_steps: None,
            reward_threshold: None,
            options: OPTIONS,
            make: make_game::<$i>,
            make_tabular: None,
        }
    };
}

/// The `ALE/<Game>-v5` specs (no step limit: ALE truncates at `max_num_frames_per_episode`, as Gymnasium).
pub fn specs() -> Vec<EnvSpec> {
    vec![
        spec!("ALE/Adventure-v5", 0),
        spec!("ALE/AirRaid-v5", 1),
        spec!("ALE/Alien-v5", 2),
        spec!("ALE/Amidar-v5", 3),
        spec!("ALE/Assault-v5", 4),
        spec!("ALE/Asterix-v5", 5),
        spec!("ALE/Asteroids-v5", 6),
        spec!("ALE/Atlantis-v5", 7),
        spec!("ALE/Atlantis2-v5", 8),
        spec!("ALE/Backgammon-v5", 9),
        spec!("ALE/BankHeist-v5", 10),
        spec!("ALE/BasicMath-v5", 11),
        spec!("ALE/BattleZone-v5", 12),
        spec!("ALE/BeamRider-v5", 13),
        spec!("ALE/Berzerk-v5", 14),
        spec!("ALE/Blackjack-v5", 15),
        spec!("ALE/Bowling-v5", 16),
        spec!("ALE/Boxing-v5", 17),
        spec!("ALE/Breakout-v5", 18),
        spec!("ALE/Carnival-v5", 19),
        spec!("ALE/Casino-v5", 20),
        spec!("ALE/Centipede-v5", 21),
        spec!("ALE/ChopperCommand-v5", 22),
        spec!("ALE/Combat-v5", 23),
        spec!("ALE/CrazyClimber-v5", 24),
        spec!("ALE/Crossbow-v5", 25),
        spec!("ALE/Darkchambers-v5", 26),
        spec!("ALE/Defender-v5", 27),
        spec!("ALE/DemonAttack-v5", 28),
        spec!("ALE/DonkeyKong-v5", 29),
        spec!("ALE/DoubleDunk-v5", 30),
        spec!("ALE/Earthworld-v5", 31),
        spec!("ALE/ElevatorAction-v5", 32),
        spec!("ALE/Enduro-v5", 33),
        spec!("ALE/Entombed-v5", 34),
        spec!("ALE/Et-v5", 35),
        spec!("ALE/FishingDerby-v5", 36),
        spec!("ALE/FlagCapture-v5", 37),
        spec!("ALE/Freeway-v5", 38),
        spec!("ALE/Frogger-v5", 39),
        spec!("ALE/Frostbite-v5", 40),
        spec!("ALE/Galaxian-v5", 41),
        spec!("ALE/Gopher-v5", 42),
        spec!("ALE/Gravitar-v5", 43),
        spec!("ALE/Hangman-v5", 44),
        spec!("ALE/HauntedHouse-v5", 45),
        spec!("ALE/Hero-v5", 46),
        spec!("ALE/HumanCannonball-v5", 47),
        spec!("ALE/IceHockey-v5", 48),
        spec!("ALE/Jamesbond-v5", 49),
        spec!("ALE/JourneyEscape-v5", 50),
        spec!("ALE/Joust-v5", 51),
        spec!("ALE/Kaboom-v5", 52),
        spec!("ALE/Kangaroo-v5", 53),
        spec!("ALE/KeystoneKapers-v5", 54),
        spec!("ALE/KingKong-v5", 55),
        spec!("ALE/Klax-v5", 56),
        spec!("ALE/Koolaid-v5", 57),
        spec!("ALE/Krull-v5", 58),
        spec!("ALE/KungFuMaster-v5", 59),
        spec!("ALE/LaserGates-v5", 60),
        spec!("ALE/LostLuggage-v5", 61),
        spec!("ALE/MarioBros-v5", 62),
        spec!("ALE/MazeCraze-v5", 63),
        spec!("ALE/MiniatureGolf-v5", 64),
        spec!("ALE/MontezumaRevenge-v5", 65),
        spec!("ALE/MrDo-v5", 66),
        spec!("ALE/MsPacman-v5", 67),
        spec!("ALE/NameThisGame-v5", 68),
        spec!("ALE/Othello-v5", 69),
        spec!("ALE/Pacman-v5", 70),
        spec!("ALE/Phoenix-v5", 71),
        spec!("ALE/Pitfall-v5", 72),
        spec!("ALE/Pitfall2-v5", 73),
        spec!("ALE/Pong-v5", 74),
        spec!("ALE/Pooyan-v5", 75),
        spec!("ALE/PrivateEye-v5", 76),
        spec!("ALE/Qbert-v5", 77),
        spec!("ALE/Riverraid-v5", 78),
        spec!("ALE/RoadRunner-v5", 79),
        spec!("ALE/Robotank-v5", 80),
        spec!("ALE/Seaquest-v5", 81),
        spec!("ALE/SirLancelot-v5", 82),
        spec!("ALE/Skiing-v5", 83),
        spec!("ALE/Solaris-v5", 84),
        spec!("ALE/SpaceInvaders-v5", 85),
        spec!("ALE/SpaceWar-v5", 86),
        spec!("ALE/StarGunner-v5", 87),
        spec!("ALE/Superman-v5", 88),
        spec!("ALE/Surround-v5", 89),
        spec!("ALE/Tennis-v5", 90),
        spec!("ALE/Tetris-v5", 91),
        spec!("ALE/TicTacToe3D-v5", 92),
        spec!("ALE/TimePilot-v5", 93),
        spec!("ALE/Trondead-v5", 94),
        spec!("ALE/Turmoil-v5", 95),
        spec!("ALE/Tutankham-v5", 96),
        spec!("ALE/UpNDown-v5", 97),
        spec!("ALE/Venture-v5", 98),
        spec!("ALE/VideoCheckers-v5", 99),
        spec!("ALE/VideoChess-v5", 100),
        spec!("ALE/VideoCube-v5", 101),
        spec!("ALE/VideoPinball-v5", 102),
        spec!("ALE/Warlords-v5", 103),
        spec!("ALE/WizardOfWor-v5", 104),
        spec!("ALE/WordZapper-v5", 105),
        spec!("ALE/YarsRevenge-v5", 106),
        spec!("ALE/Zaxxon-v5", 107),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_games() {
        let s = specs();
        assert_eq!(s.len(), GAMES.len());
        for (spec, (_, name)) in s.iter().zip(GAMES.iter()) {
            assert_eq!(spec.id, format!("ALE/{name}-v5"));
        }
        assert!(s.iter().any(|x| x.id == "ALE/Pong-v5"));
        assert!(s.iter().any(|x| x.id == "ALE/SpaceInvaders-v5"));
    }

    #[test]
    fn options_are_checked() {
        let o = Options::parse(["preprocess=true", "frame_stack=4", "noop_max=0"]).unwrap();
        let c = config_from_options("ALE/Pong-v5", "Pong", &o).unwrap();
        assert_eq!(c.frameskip, 1);
        assert_eq!(c.preprocessing.unwrap().frame_stack, 4);
        assert_eq!(c.preprocessing.unwrap().noop_max, 0);
        let o = Options::parse(["obs_type=ram"]).unwrap();
        let e = config_from_options("ALE/Pong-v5", "Pong", &o).unwrap_err().to_string();
        assert!(e.contains("ram") && e.contains("rgb or grayscale"), "{e}");
        let o = Options::parse(["preprocess=true", "frame_stack=100"]).unwrap();
        assert!(config_from_options("ALE/Pong-v5", "Pong", &o).is_err());
    }

    #[test]
    fn episodic_life_option_and_its_exclusion() {
        let o = Options::parse(["preprocess=true", "episodic_life=true"]).unwrap();
        let p = config_from_options("ALE/Breakout-v5", "Breakout", &o).unwrap().preprocessing.unwrap();
        assert!(p.episodic_life && !p.terminal_on_life_loss);
        let o = Options::parse(["preprocess=true"]).unwrap();
        assert!(!config_from_options("ALE/Breakout-v5", "Breakout", &o).unwrap().preprocessing.unwrap().episodic_life);
        let o = Options::parse(["preprocess=true", "episodic_life=true", "terminal_on_life_loss=true"]).unwrap();
        let e = config_from_options("ALE/Breakout-v5", "Breakout", &o).unwrap_err().to_string();
        assert!(e.contains("episodic_life") && e.contains("terminal_on_life_loss") && e.contains("pick one"), "{e}");
        // Without preprocess the key is unread, like every preprocessing key: `finish` reports it.
        let o = Options::parse(["episodic_life=true"]).unwrap();
        config_from_options("ALE/Breakout-v5", "Breakout", &o).unwrap();
        let keys: Vec<&str> = OPTIONS.iter().map(|d| d.key).collect();
        assert!(keys.contains(&"episodic_life"));
        let e = o.finish("ALE/Breakout-v5", &keys).unwrap_err().to_string();
        assert!(e.contains("episodic_life"), "{e}");
    }
}
