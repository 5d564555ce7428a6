//! ROM discovery. ROMs are never part of this repository; they are found at run time in
//!
//! 1. the folder named by the `ALE_ROMS_DIR` environment variable, else
//! 2. the installed `ale-py` wheel (`ale_py/roms/*.bin`), located by asking `python3` (or `$PYTHON`),
//!
//! else the error says the one command that installs them.
//!
//! ROM files are named by the game in snake case (`pong.bin`, `space_invaders.bin`), as in the wheel.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{AleError, Result};

/// The command that installs the ROMs, quoted in every error.
pub const INSTALL_HINT: &str = "pip install ale-py==0.12.1";

/// Every ROM of the ale-py 0.12.1 wheel: (ROM stem, Gymnasium name). The name is ale-py's `rom_id_to_name`
/// (`rom.title().replace("_", "")`, `ale_py/registration.py`); Gymnasium registers `ALE/<name>-v5` for each.
pub const GAMES: [(&str, &str); 108] = [
    ("adventure", "Adventure"),
    ("air_raid", "AirRaid"),
    ("alien", "Alien"),
    ("amidar", "Amidar"),
    ("assault", "Assault"),
    ("asterix", "Asterix"),
    ("asteroids", "Asteroids"),
    ("atlantis", "Atlantis"),
    ("atlantis2", "Atlantis2"),
    ("backgammon", "Backgammon"),
    ("bank_heist", "BankHeist"),
    ("basic_math", "BasicMath"),
    ("battle_zone", "BattleZone"),
    ("beam_rider", "BeamRider"),
    ("berzerk", "Berzerk"),
    ("blackjack", "Blackjack"),
    ("bowling", "Bowling"),
    ("boxing", "Boxing"),
    ("breakout", "Breakout"),
    ("carnival", "Carnival"),
    ("casino", "Casino"),
    ("centipede", "Centipede"),
    ("chopper_command", "ChopperCommand"),
    ("combat", "Combat"),
    ("crazy_climber", "CrazyClimber"),
    ("crossbow", "Crossbow"),
    ("darkchambers", "Darkchambers"),
    ("defender", "Defender"),
    ("demon_attack", "DemonAttack"),
    ("donkey_kong", "DonkeyKong"),
    ("double_dunk", "DoubleDunk"),
    ("earthworld", "Earthworld"),
    ("elevator_action", "ElevatorAction"),
    ("enduro", "Enduro"),
    ("entombed", "Entombed"),
    ("et", "Et"),
    ("fishing_derby", "FishingDerby"),
    ("flag_capture", "FlagCapture"),
    ("freeway", "Freeway"),
    ("frogger", "Frogger"),
    ("frostbite", "Frostbite"),
    ("galaxian", "Galaxian"),
    ("gopher", "Gopher"),
    ("gravitar", "Gravitar"),
    ("hangman", "Hangman"),
    ("haunted_house", "HauntedHouse"),
    ("hero", "Hero"),
    ("human_cannonball", "HumanCannonball"),
    ("ice_hockey", "IceHockey"),
    ("jamesbond", "Jamesbond"),
    ("journey_escape", "JourneyEscape"),
    ("joust", "Joust"),
    ("kaboom", "Kaboom"),
    ("kangaroo", "Kangaroo"),
    ("keystone_kapers", "KeystoneKapers"),
    ("king_kong", "KingKong"),
    ("klax", "Klax"),
    ("koolaid", "Koolaid"),
    ("krull", "Krull"),
    ("kung_fu_master", "KungFuMaster"),
    ("laser_gates", "LaserGates"),
    ("lost_luggage", "LostLuggage"),
    ("mario_bros", "MarioBros"),
    ("maze_craze", "MazeCraze"),
    ("miniature_golf", "MiniatureGolf"),
    ("montezuma_revenge", "MontezumaRevenge"),
    ("mr_do", "MrDo"),
    ("ms_pacman", "MsPacman"),
    ("name_this_game", "NameThisGame"),
    ("othello", "Othello"),
    ("pacman", "Pacman"),
    ("phoenix", "Phoenix"),
    ("pitfall", "Pitfall"),
    ("pitfall2", "Pitfall2"),
    ("pong", "Pong"),
    ("pooyan", "Pooyan"),
    ("private_eye", "PrivateEye"),
    ("qbert", "Qbert"),
    ("riverraid", "Riverraid"),
    ("road_runner", "RoadRunner"),
    ("robotank", "Robotank"),
    ("seaquest", "Seaquest"),
    ("sir_lancelot", "SirLancelot"),
    ("skiing", "Skiing"),
    ("solaris", "Solaris"),
    ("space_invaders", "SpaceInvaders"),
    ("space_war", "SpaceWar"),
    ("star_gunner", "StarGunner"),
    ("superman", "Superman"),
    ("surround", "Surround"),
    ("tennis", "Tennis"),
    ("tetris", "Tetris"),
    ("tic_tac_toe_3d", "TicTacToe3D"),
    ("time_pilot", "TimePilot"),
    ("trondead", "Trondead"),
    ("turmoil", "Turmoil"),
    ("tutankham", "Tutankham"),
    ("up_n_down", "UpNDown"),
    ("venture", "Venture"),
    ("video_checkers", "VideoCheckers"),
    ("video_chess", "VideoChess"),
    ("video_cube", "VideoCube"),
    ("video_pinball", "VideoPinball"),
    ("warlords", "Warlords"),
    ("wizard_of_wor", "WizardOfWor"),
    ("word_zapper", "WordZapper"),
    ("yars_revenge", "YarsRevenge"),
    ("zaxxon", "Zaxxon"),
];

/// The ROM file stem of a Gymnasium game name: `SpaceInvaders` -> `space_invaders`, `TicTacToe3D` ->
/// `tic_tac_toe_3d` (looked up in [`GAMES`]; an unknown name is snake-cased, an already snake-cased name is
/// returned unchanged).
///
/// ```
/// assert_eq!(bellman_ale::roms::rom_stem("SpaceInvaders"), "space_invaders");
/// assert_eq!(bellman_ale::roms::rom_stem("TicTacToe3D"), "tic_tac_toe_3d");
/// assert_eq!(bellman_ale::roms::rom_stem("pong"), "pong");
/// ```
pub fn rom_stem(game: &str) -> String {
    if let Some((stem, _)) = GAMES.iter().find(|(stem, name)| *name == game || *stem == game) {
        return stem.to_string();
    }
    let mut s = String::with_capacity(game.len() + 4);
    for (i, c) in game.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

fn python_roms_dir() -> Option<PathBuf> {
    // Asked once per process: the wheel's location does not change while we run.
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let out = Command::new(python)
            .args(["-c", "import importlib.util as u, os; s = u.find_spec('ale_py'); print(os.path.join(os.path.dirname(s.origin), 'roms') if s else '')"])
            .output()
            .ok()?;
        let s = String::from_utf8(out.stdout).ok()?;
        let s = s.trim();
        (out.status.success() && !s.is_empty()).then(|| PathBuf::from(s)).filter(|p| p.is_dir())
    })
    .clone()
}

/// Where ROMs are looked for: `ALE_ROMS_DIR` if set, else the `ale-py` wheel's `roms` folder.
pub fn roms_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("ALE_ROMS_DIR") {
        let d = PathBuf::from(d);
        if !d.is_dir() {
            return Err(AleError(format!(
                "ALE_ROMS_DIR={} is not a folder; point it at a folder of ALE ROMs (*.bin) or unset it to use the \
                 ale-py wheel's ROMs ({INSTALL_HINT})",
                d.display()
            )));
        }
        return Ok(d);
    }
    python_roms_dir().ok_or_else(|| {
        AleError(format!(
            "no Atari ROMs found: ALE_ROMS_DIR is not set and python3 has no ale-py package; install the ROMs with \
             `{INSTALL_HINT}` (or set ALE_ROMS_DIR to a folder of ROMs)"
        ))
    })
}

/// The path of the ROM of `game` (`Pong`, `SpaceInvaders` or `space_invaders`), or an error naming the folder
/// searched and the install command.
pub fn rom_path(game: &str) -> Result<PathBuf> {
    let dir = roms_dir()?;
    rom_in(&dir, game)
}

/// The ROM of `game` in `dir`, or an error listing what `dir` holds.
pub fn rom_in(dir: &Path, game: &str) -> Result<PathBuf> {
    let stem = rom_stem(game);
    let p = dir.join(format!("{stem}.bin"));
    if p.is_file() {
        return Ok(p);
    }
    let mut known: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".bin")).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    known.sort();
    Err(AleError(format!(
        "no ROM '{stem}.bin' for game '{game}' in {}; ROMs there: [{}]; the ale-py wheel has every supported ROM \
         (`{INSTALL_HINT}`)",
        dir.display(),
        known.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems() {
        assert_eq!(rom_stem("Pong"), "pong");
        assert_eq!(rom_stem("SpaceInvaders"), "space_invaders");
        assert_eq!(rom_stem("MontezumaRevenge"), "montezuma_revenge");
        assert_eq!(rom_stem("space_invaders"), "space_invaders");
        assert_eq!(rom_stem("UpNDown"), "up_n_down");
        assert_eq!(rom_stem("Pitfall2"), "pitfall2");
        assert_eq!(GAMES.len(), 108);
    }

    #[test]
    fn missing_rom_lists_folder() {
        let dir = std::env::temp_dir().join(format!("bellman-ale-roms-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pong.bin"), b"x").unwrap();
        assert_eq!(rom_in(&dir, "Pong").unwrap(), dir.join("pong.bin"));
        let e = rom_in(&dir, "Breakout").unwrap_err().0;
        assert!(e.contains("breakout.bin") && e.contains("[pong]") && e.contains(INSTALL_HINT), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
