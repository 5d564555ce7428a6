//! [`AtariEnv`]: an ALE game with Gymnasium's `ALE/<Game>-v5` options and, optionally, the DQN preprocessing of
//! Gymnasium's `AtariPreprocessing` plus frame stacking, writing observations into caller buffers.
use std::time::Instant;

use bellman_ale::{Ale, roms};
use rand::Rng;

use super::resize::AreaResizer;
use super::seed::seed_sequence;
use crate::env::{Env, EpisodeStats, Info, Observation, Step, StepOutcome, check_discrete};
use crate::error::{EnvError, Result};
use crate::rng::{self, EnvRng};
use crate::space::{BoxSpace, Dtype, Space};

/// What the raw (unpreprocessed) env observes, Gymnasium's `obs_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObsType {
    /// 210x160x3 RGB (Gymnasium's default).
    Rgb,
    /// 210x160 through ALE's grayscale palette.
    Grayscale,
}

/// The DQN preprocessing, as Gymnasium 1.4's `AtariPreprocessing` (`gymnasium/wrappers/atari_preprocessing.py`)
/// with grayscale observations, plus the Stable-Baselines3 extras (`EpisodicLifeEnv`, `FireResetEnv`,
/// `ClipRewardEnv` in `stable_baselines3/common/atari_wrappers.py`) and Gymnasium's `FrameStackObservation`.
///
/// Lives: `episodic_life` is SB3's `EpisodicLifeEnv` (a lost life ends the episode for the learner, the next
/// reset continues the same game), `terminal_on_life_loss` Gymnasium's flag (a lost life ends the episode and
/// the next reset restarts the game). They exclude each other: [`AtariEnv::new`] rejects both together.
///
/// ```
/// use bellman_envs::atari::Preprocessing;
/// let p = Preprocessing::nature();
/// assert!(p.episodic_life && !p.terminal_on_life_loss);
/// assert_eq!((p.frame_skip, p.frame_stack, p.screen_size), (4, 4, 84));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocessing {
    /// Up to this many no-op frames after a reset (uniform in `1..=noop_max`; 0 disables). Default 30.
    pub noop_max: u32,
    /// Frames per agent step; the observation is the max of the last two frames. Default 4.
    pub frame_skip: u32,
    /// Side of the square observation. Default 84.
    pub screen_size: usize,
    /// A lost life ends the episode (`terminated`); the next reset restarts the game (Gymnasium's
    /// `AtariPreprocessing(terminal_on_life_loss=True)`). Default false.
    pub terminal_on_life_loss: bool,
    /// SB3's `EpisodicLifeEnv`: a lost life (lives still > 0) ends the episode (`terminated`), and the next
    /// unseeded reset continues the same game with one no-op agent step (through the frame skip and max-pool)
    /// instead of restarting it; the game restarts only after a game over or truncation, on a seeded reset, and
    /// on a reset in the middle of an episode (where SB3's wrapper would continue: here only a life-loss end
    /// continues). Default false.
    pub episodic_life: bool,
    /// After a reset, press FIRE (action 1) then action 2, as SB3's `FireResetEnv`; only for games whose
    /// action set has FIRE at index 1 and at least 3 actions. Default false.
    pub fire_reset: bool,
    /// Rewards become their sign (-1, 0, +1), as SB3's `ClipRewardEnv`. Default false.
    pub clip_rewards: bool,
    /// Number of stacked frames (1: no stacking), oldest first, the reset frame repeated at the start of an
    /// episode (Gymnasium's `FrameStackObservation`, `padding_type="reset"`). Default 1.
    pub frame_stack: usize,
}

impl Default for Preprocessing {
    fn default() -> Self {
        // Gymnasium's AtariPreprocessing defaults (noop_max=30, frame_skip=4, screen_size=84).
        Preprocessing {
            noop_max: 30,
            frame_skip: 4,
            screen_size: 84,
            terminal_on_life_loss: false,
            episodic_life: false,
            fire_reset: false,
            clip_rewards: false,
            frame_stack: 1,
        }
    }
}

impl Preprocessing {
    /// The Nature-DQN setting as SB3's `AtariWrapper` defaults (`stable_baselines3/common/atari_wrappers.py`;
    /// Mnih et al. 2015): 30 no-ops, skip 4, 84x84, episodic life (`EpisodicLifeEnv`, not Gymnasium's
    /// `terminal_on_life_loss`), fire reset, clipped rewards, 4 stacked frames.
    pub fn nature() -> Self {
        Preprocessing { episodic_life: true, fire_reset: true, clip_rewards: true, frame_stack: 4, ..Self::default() }
    }
}

/// Options of an [`AtariEnv`]: Gymnasium's `ALE/<Game>-v5` keyword arguments and the optional preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct AtariConfig {
    /// The game, by Gymnasium name (`Pong`, `SpaceInvaders`) or ROM name (`space_invaders`).
    pub game: String,
    /// Emulator frames per `step` of the raw env (v5 default 4); must be 1 with preprocessing, which skips
    /// frames itself.
    pub frameskip: u32,
    /// Sticky actions: probability of repeating the previous action each frame (v5 default 0.25).
    pub repeat_action_probability: f32,
    /// Use all 18 actions instead of the game's minimal set (default false).
    pub full_action_space: bool,
    /// Game mode (`None`: the game's default).
    pub mode: Option<u32>,
    /// Game difficulty (`None`: the default).
    pub difficulty: Option<u32>,
    /// Frames after which an episode is truncated (v5 default 108000 = 30 minutes at 60 Hz).
    pub max_num_frames_per_episode: Option<u32>,
    /// Observation of the raw env (ignored with preprocessing, which observes grayscale).
    pub obs_type: ObsType,
    /// The DQN preprocessing, or `None` for the raw env.
    pub preprocessing: Option<Preprocessing>,
}

impl AtariConfig {
    /// `ALE/<game>-v5` with Gymnasium's defaults (frameskip 4, sticky actions 0.25, RGB).
    pub fn v5(game: &str) -> Self {
        AtariConfig {
            game: game.to_string(),
            frameskip: 4,
            repeat_action_probability: 0.25,
            full_action_space: false,
            mode: None,
            difficulty: None,
            max_num_frames_per_episode: Some(108_000),
            obs_type: ObsType::Rgb,
            preprocessing: None,
        }
    }

    /// `ALE/<game>-v5` with `frameskip=1` wrapped in the preprocessing `p` (what DQN trains on).
    pub fn preprocessed(game: &str, p: Preprocessing) -> Self {
        AtariConfig { frameskip: 1, preprocessing: Some(p), ..Self::v5(game) }
    }
}

/// Why `episodic_life` and `terminal_on_life_loss` cannot be combined (shared with the registry options).
pub(crate) const EXCLUSIVE_LIVES: &str = "cannot be combined with terminal_on_life_loss=true: episodic_life \
    (SB3's EpisodicLifeEnv) continues the game after a lost life, terminal_on_life_loss (Gymnasium's flag) \
    restarts it; pick one";

const SCREEN_H: usize = 210;
const SCREEN_W: usize = 160;

/// An Atari 2600 game on ALE, with Gymnasium's `ALE/<Game>-v5` semantics, optionally preprocessed.
///
/// * Actions are indices into the minimal action set ([`AtariEnv::action_set`] maps them to ALE ids), or into
///   all 18 actions with `full_action_space`.
/// * Observations are `u8`, written by [`AtariEnv::reset_into`] / [`AtariEnv::step_into`] into a caller buffer
///   of [`AtariEnv::obs_len`] bytes without allocating: `[frame_stack, screen, screen]` with preprocessing,
///   `[210, 160, 3]` (RGB) or `[210, 160]` (grayscale) without.
/// * The [`Env`] impl returns each observation as a new boxed slice (an allocation per step, for generic code);
///   hot loops use `step_into`.
/// * Seeding: `reset(Some(seed))` derives ALE's `random_seed` as ale-py does (numpy `SeedSequence(seed)`, word 1
///   as int32) and reloads the ROM; the no-op count is drawn from a PCG-64 seeded with `seed` (so it differs from
///   Gymnasium's numpy stream). `reset(None)` continues.
/// * `info.lives` and `info.episode_frame_number` are ALE's.
/// * Games and episodes: a *game* runs from a restart of the game (a reset that is not an `episodic_life`
///   continuation) to its end: game over, ALE's truncation, or a life lost under `terminal_on_life_loss`. The
///   env keeps the game's raw (unclipped) score and length and sets `info.episode = Some(EpisodeStats { ret,
///   len, time })` on the step that ends the game, what SB3's `Monitor` (inside `AtariWrapper`) logs: `ret` is
///   the raw score of the whole game, including rewards of the steps a reset plays by itself (no-ops, FIRE,
///   the `episodic_life` no-op), `len` the agent steps ([`AtariEnv::step_into`] calls) of the game, `time` the
///   wall-clock seconds since the game started. An `episodic_life` life loss ends an episode but not the game:
///   no `info.episode` there. When a game ends inside a reset's own steps (the continuation no-op or a FIRE step
///   loses the last life), that reset restarts the game and its returned info carries the ended game's stats.
///   A caller that resets mid-game (e.g. after an outer time limit) restarts the game without stats.
///
/// `AtariEnv` is `Send` (one ALE per env; use one env per thread).
pub struct AtariEnv {
    ale: Ale,
    cfg: AtariConfig,
    action_set: Vec<u8>,
    rom: std::path::PathBuf,
    rng: EnvRng,
    obs_space: Space,
    act_space: Space,
    b0: Vec<u8>,
    b1: Vec<u8>,
    resizer: Option<AreaResizer>,
    /// Frame stack, `[frame_stack, s, s]`, oldest first.
    stack: Vec<u8>,
    lives: i32,
    needs_reset: bool,
    fire_ok: bool,
    /// The last step lost a life under `episodic_life` (not the game): the next unseeded reset continues.
    continue_game: bool,
    /// Raw score, agent steps and start time of the game in progress.
    game_ret: f64,
    game_len: u64,
    game_start: Instant,
    /// Stats of a game that ended inside the reset in progress (returned in the reset's info).
    pending_episode: Option<EpisodeStats>,
}

impl std::fmt::Debug for AtariEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtariEnv").field("cfg", &self.cfg).field("action_set", &self.action_set).finish()
    }
}

fn backend(e: bellman_ale::AleError) -> EnvError {
    EnvError::Backend(e.0)
}

impl AtariEnv {
    /// Builds the env: finds the ROM (see [`bellman_ale::roms`]), loads it, and checks every option.
    pub fn new(cfg: AtariConfig) -> Result<Self> {
        let rom = roms::rom_path(&cfg.game).map_err(backend)?;
        Self::with_rom(cfg, rom)
    }

    /// Builds the env from an explicit ROM file.
    pub fn with_rom(cfg: AtariConfig, rom: std::path::PathBuf) -> Result<Self> {
        let bad = |key: &str, value: String, reason: &str| EnvError::BadOption {
            env: format!("ALE/{}-v5", cfg.game),
            key: key.into(),
            value,
            reason: reason.into(),
        };
        if cfg.frameskip == 0 {
            return Err(bad("frameskip", "0".into(), "must be >= 1"));
        }
        let p = cfg.repeat_action_probability;
        if !(0.0..=1.0).contains(&p) {
            return Err(bad("repeat_action_probability", p.to_string(), "must be in [0, 1]"));
        }
        if cfg.max_num_frames_per_episode.is_some_and(|m| m > i32::MAX as u32) {
            return Err(bad(
                "max_num_frames_per_episode",
                format!("{:?}", cfg.max_num_frames_per_episode),
                "too large",
            ));
        }
        let mut resizer = None;
        if let Some(pp) = &cfg.preprocessing {
            if cfg.frameskip != 1 {
                // Gymnasium's AtariPreprocessing raises the same error: frames would be skipped twice.
                return Err(bad(
                    "frameskip",
                    cfg.frameskip.to_string(),
                    "must be 1 with preprocessing (it skips frames)",
                ));
            }
            if pp.frame_skip == 0 {
                return Err(bad("frame_skip", "0".into(), "must be >= 1"));
            }
            if pp.episodic_life && pp.terminal_on_life_loss {
                return Err(bad("episodic_life", "true".into(), EXCLUSIVE_LIVES));
            }
            if pp.frame_stack == 0 || pp.frame_stack > 64 {
                return Err(bad("frame_stack", pp.frame_stack.to_string(), "must be in 1..=64"));
            }
            resizer = Some(
                AreaResizer::new(SCREEN_H, SCREEN_W, pp.screen_size, pp.screen_size)
                    .map_err(|e| bad("screen_size", pp.screen_size.to_string(), &e.to_string()))?,
            );
        }
        let mut ale = Ale::new().map_err(backend)?;
        let mut rng = rng::from_entropy();
        // ale-py seeds ALE at construction from fresh entropy (seed_game(None)).
        let ale_seed = seed_sequence::<2>(rng.random::<u64>())[1] as i32;
        Self::configure(&mut ale, &cfg, &rom, ale_seed)?;
        let action_set =
            if cfg.full_action_space { ale.legal_action_set() } else { ale.minimal_action_set() }.map_err(backend)?;
        if ale.screen_height() != SCREEN_H || ale.screen_width() != SCREEN_W {
            return Err(EnvError::Backend(format!(
                "unexpected {}x{} screen (expected {SCREEN_H}x{SCREEN_W})",
                ale.screen_height(),
                ale.screen_width()
            )));
        }
        let (shape, stack) = match (&cfg.preprocessing, cfg.obs_type) {
            (Some(pp), _) => {
                (vec![pp.frame_stack, pp.screen_size, pp.screen_size], vec![0; pp.frame_stack * pp.screen_size.pow(2)])
            }
            (None, ObsType::Rgb) => (vec![SCREEN_H, SCREEN_W, 3], Vec::new()),
            (None, ObsType::Grayscale) => (vec![SCREEN_H, SCREEN_W], Vec::new()),
        };
        let fire_ok = action_set.len() >= 3 && action_set[1] == 1;
        if cfg.preprocessing.is_some_and(|p| p.fire_reset) && !fire_ok {
            return Err(bad("fire_reset", "true".into(), "the game's action set has no FIRE at index 1"));
        }
        Ok(AtariEnv {
            obs_space: Space::Box(BoxSpace::uniform(0.0, 255.0, &shape, Dtype::U8)),
            act_space: Space::Discrete(action_set.len()),
            ale,
            cfg,
            action_set,
            rom,
            rng,
            b0: vec![0; SCREEN_H * SCREEN_W],
            b1: vec![0; SCREEN_H * SCREEN_W],
            resizer,
            stack,
            lives: 0,
            needs_reset: true,
            fire_ok,
            continue_game: false,
            game_ret: 0.0,
            game_len: 0,
            game_start: Instant::now(),
            pending_episode: None,
        })
    }

    /// ale-py's `seed_game` + `load_game`: settings, `random_seed`, `loadROM`, then mode and difficulty.
    fn configure(ale: &mut Ale, cfg: &AtariConfig, rom: &std::path::Path, ale_seed: i32) -> Result<()> {
        ale.set_float("repeat_action_probability", cfg.repeat_action_probability).map_err(backend)?;
        if let Some(m) = cfg.max_num_frames_per_episode {
            ale.set_int("max_num_frames_per_episode", m as i32).map_err(backend)?;
        }
        ale.set_int("random_seed", ale_seed).map_err(backend)?;
        ale.load_rom(rom).map_err(backend)?;
        if let Some(m) = cfg.mode {
            ale.set_mode(m).map_err(backend)?;
        }
        if let Some(d) = cfg.difficulty {
            ale.set_difficulty(d).map_err(backend)?;
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &AtariConfig {
        &self.cfg
    }

    /// ALE action id of each action index.
    pub fn action_set(&self) -> &[u8] {
        &self.action_set
    }

    /// Bytes of one observation.
    pub fn obs_len(&self) -> usize {
        self.obs_space.flat_dim()
    }

    /// Shape of one observation.
    pub fn obs_shape(&self) -> &[usize] {
        match &self.obs_space {
            Space::Box(b) => &b.shape,
            _ => &[],
        }
    }

    /// The emulator (e.g. to read lives or the RGB screen).
    pub fn ale(&self) -> &Ale {
        &self.ale
    }

    /// The last max-pooled 210x160 grayscale frame of the preprocessing (before resizing), for debugging.
    pub fn pooled_frame(&self) -> &[u8] {
        &self.b0
    }

    fn info(&mut self) -> Info {
        Info {
            lives: Some(self.ale.lives().max(0) as u32),
            episode_frame_number: Some(self.ale.episode_frame_number().max(0) as u64),
            ..Info::default()
        }
    }

    fn check_out(&self, out: &[u8]) -> Result<()> {
        if out.len() == self.obs_len() {
            Ok(())
        } else {
            Err(EnvError::Unsupported(format!(
                "observation buffer of {} bytes, expected {} (shape {:?})",
                out.len(),
                self.obs_len(),
                self.obs_shape()
            )))
        }
    }

    /// ale-py `AtariEnv.reset`: reseed and reload on `Some(seed)`, then `reset_game`.
    fn inner_reset(&mut self, seed: Option<u64>) -> Result<()> {
        if let Some(s) = seed {
            self.rng = rng::seeded(s);
            let ale_seed = seed_sequence::<2>(s)[1] as i32;
            Self::configure(&mut self.ale, &self.cfg, &self.rom, ale_seed)?;
        }
        self.ale.reset_game().map_err(backend)
    }

    /// ale-py `AtariEnv.step` with frameskip `n`: sum of rewards, then `(terminated, truncated)`.
    #[inline]
    fn inner_step(&mut self, ale_action: u8, n: u32) -> Result<(f64, bool, bool)> {
        let mut r = 0i64;
        for _ in 0..n {
            r += self.ale.act(ale_action, 1.0).map_err(backend)? as i64;
        }
        Ok((r as f64, self.ale.game_over(false), self.ale.game_truncated()))
    }

    fn write_raw(&mut self, out: &mut [u8]) -> Result<()> {
        match self.cfg.obs_type {
            ObsType::Rgb => self.ale.screen_rgb(out).map_err(backend),
            ObsType::Grayscale => self.ale.screen_grayscale(out).map_err(backend),
        }
    }

    /// Max-pools b0 and b1 into b0, resizes into the newest stack slot (shifting the others), and writes the
    /// stack into `out`.
    fn push_frame(&mut self, out: &mut [u8], fill: bool) -> Result<()> {
        for (a, b) in self.b0.iter_mut().zip(&self.b1) {
            *a = (*a).max(*b);
        }
        let pp = self.cfg.preprocessing.expect("preprocessing");
        let f = pp.screen_size * pp.screen_size;
        let n = self.stack.len();
        self.stack.copy_within(f.., 0);
        let resizer = self.resizer.as_mut().expect("resizer");
        resizer.resize(&self.b0, &mut self.stack[n - f..])?;
        if fill {
            let (head, last) = self.stack.split_at_mut(n - f);
            for chunk in head.chunks_exact_mut(f) {
                chunk.copy_from_slice(last);
            }
        }
        out.copy_from_slice(&self.stack);
        Ok(())
    }

    /// Starts the stats of a new game.
    fn start_game(&mut self) {
        self.game_ret = 0.0;
        self.game_len = 0;
        self.game_start = Instant::now();
        self.continue_game = false;
    }

    /// The stats of the game in progress (what SB3's `Monitor` logs at its end).
    fn game_stats(&self) -> EpisodeStats {
        EpisodeStats { ret: self.game_ret, len: self.game_len, time: self.game_start.elapsed().as_secs_f64() }
    }

    /// Starts an episode and writes the first observation into `out` ([`AtariEnv::obs_len`] bytes).
    ///
    /// With `episodic_life`, an unseeded reset right after a step that lost a life but not the game continues
    /// that game (SB3's `EpisodicLifeEnv.reset`: one no-op agent step, then the fire reset if on, and a new frame
    /// stack); every other reset, and every seeded one, restarts the game. The returned `info.episode` is set
    /// only when a game ended inside this reset's own steps (see [`AtariEnv`]).
    pub fn reset_into(&mut self, seed: Option<u64>, out: &mut [u8]) -> Result<Info> {
        self.check_out(out)?;
        self.pending_episode = None;
        let Some(pp) = self.cfg.preprocessing else {
            self.inner_reset(seed)?;
            self.start_game();
            self.needs_reset = false;
            self.write_raw(out)?;
            return Ok(self.info());
        };
        self.episodic_reset(seed, &pp, out)?;
        if pp.fire_reset && self.fire_ok {
            // SB3 FireResetEnv.reset: step(1); if done: reset; step(2); if done: reset. It wraps EpisodicLifeEnv in
            // AtariWrapper, so it runs after every reset (continuations included) and "done" includes a lost life.
            for a in [1usize, 2] {
                if self.hidden_step(a, &pp, out)? {
                    self.episodic_reset(None, &pp, out)?;
                }
            }
        }
        let mut info = self.info();
        info.episode = self.pending_episode.take();
        Ok(info)
    }

    /// SB3's `EpisodicLifeEnv.reset` (stable_baselines3/common/atari_wrappers.py) over Gymnasium's
    /// `AtariPreprocessing.reset`: after a life lost under `episodic_life` (and no seed), continue the game with
    /// one no-op agent step, restarting it if that step ends the game; otherwise restart the game.
    fn episodic_reset(&mut self, seed: Option<u64>, pp: &Preprocessing, out: &mut [u8]) -> Result<()> {
        if seed.is_none() && self.continue_game {
            self.continue_game = false;
            // SB3: "no-op step to advance from terminal/lost life state", action 0 through MaxAndSkipEnv.
            let (r, terminated, truncated) = self.skip_frames(self.action_set[0], pp)?;
            self.game_ret += r;
            self.lives = self.ale.lives();
            if !(terminated || truncated) {
                // A new episode for the learner: the stack restarts, padded with this frame (Gymnasium's
                // FrameStackObservation, padding_type="reset").
                self.push_frame(out, true)?;
                self.needs_reset = false;
                return Ok(());
            }
            // SB3: "The no-op step can lead to a game over", then it resets; the game's stats leave with this
            // reset's info.
            self.pending_episode = Some(self.game_stats());
        }
        self.restart_game(seed, pp, out)
    }

    /// Gymnasium's `AtariPreprocessing.reset`: ale-py's reset (reseeding on `Some(seed)`), then no-ops in
    /// `1..=noop_max` of action index 0, restarting if the game ends; the first frame fills the stack.
    fn restart_game(&mut self, seed: Option<u64>, pp: &Preprocessing, out: &mut [u8]) -> Result<()> {
        self.inner_reset(seed)?;
        self.start_game();
        if pp.noop_max > 0 {
            let noops = self.rng.random_range(1..=pp.noop_max);
            let noop = self.action_set[0];
            for _ in 0..noops {
                let (r, term, trunc) = self.inner_step(noop, 1)?;
                self.game_ret += r;
                if term || trunc {
                    self.inner_reset(None)?;
                    self.start_game();
                }
            }
        }
        self.lives = self.ale.lives();
        self.ale.screen_grayscale(&mut self.b0).map_err(backend)?;
        self.b1.fill(0);
        self.push_frame(out, true)?;
        self.needs_reset = false;
        Ok(())
    }

    /// One agent step that a reset plays by itself (FireResetEnv's FIRE steps, which go through
    /// `EpisodicLifeEnv.step`): its raw reward counts toward the game's score, not its length. True when it ends
    /// the episode (the caller resets again).
    fn hidden_step(&mut self, action: usize, pp: &Preprocessing, out: &mut [u8]) -> Result<bool> {
        let (r, terminated, truncated) = self.skip_frames(self.action_set[action], pp)?;
        self.push_frame(out, false)?;
        self.game_ret += r;
        let life_lost = self.episodic_life_lost(pp, terminated || truncated);
        if (terminated || truncated) && self.game_len > 0 {
            // A game the agent played ended here (not one that ended before its first agent step).
            self.pending_episode = Some(self.game_stats());
        }
        Ok(terminated || truncated || life_lost)
    }

    /// SB3 `EpisodicLifeEnv.step`'s check after an agent step: with `episodic_life`, a life lost while lives
    /// remain (`0 < lives < self.lives`: Qbert sits at 0 lives for a few frames before its game over) ends the
    /// episode; unless the game itself ended (`was_real_done`), the next reset continues the game. Updates the
    /// lives; returns whether a life was lost.
    fn episodic_life_lost(&mut self, pp: &Preprocessing, game_ended: bool) -> bool {
        if !pp.episodic_life {
            return false;
        }
        let lives = self.ale.lives();
        let lost = 0 < lives && lives < self.lives;
        self.lives = lives;
        self.continue_game = lost && !game_ended;
        lost
    }

    /// Gymnasium's `AtariPreprocessing.step` frame loop: `frame_skip` frames of ALE action `a`, the last two
    /// grayscale frames into `b1` and `b0` (pooled by `push_frame`). Returns the raw reward sum, `terminated`
    /// (game over, or a lost life with `terminal_on_life_loss`) and `truncated`.
    #[inline]
    fn skip_frames(&mut self, a: u8, pp: &Preprocessing) -> Result<(f64, bool, bool)> {
        let (mut total, mut terminated, mut truncated) = (0.0, false, false);
        for t in 0..pp.frame_skip {
            let (r, term, trunc) = self.inner_step(a, 1)?;
            total += r;
            terminated = term;
            truncated = trunc;
            if pp.terminal_on_life_loss {
                let new_lives = self.ale.lives();
                terminated = terminated || new_lives < self.lives;
                self.lives = new_lives;
            }
            if terminated || truncated {
                break;
            }
            if t + 2 == pp.frame_skip {
                self.ale.screen_grayscale(&mut self.b1).map_err(backend)?;
            } else if t + 1 == pp.frame_skip {
                self.ale.screen_grayscale(&mut self.b0).map_err(backend)?;
            }
        }
        Ok((total, terminated, truncated))
    }

    /// Advances one agent step with action index `action` and writes the observation into `out`.
    /// Allocates nothing. On the step that ends a game, `info.episode` holds the game's raw score, length and
    /// time (see [`AtariEnv`]); with `episodic_life` a lost life sets `terminated` without ending the game.
    pub fn step_into(&mut self, action: usize, out: &mut [u8]) -> Result<StepOutcome> {
        if self.needs_reset {
            return Err(EnvError::NeedsReset("before reset() or after the episode ended"));
        }
        check_discrete(action, &self.act_space)?;
        self.check_out(out)?;
        let a = self.action_set[action];
        let Some(pp) = self.cfg.preprocessing else {
            let (reward, terminated, truncated) = self.inner_step(a, self.cfg.frameskip)?;
            self.write_raw(out)?;
            self.needs_reset = terminated || truncated;
            self.game_ret += reward;
            self.game_len += 1;
            let mut info = self.info();
            if self.needs_reset {
                info.episode = Some(self.game_stats());
            }
            return Ok(StepOutcome { reward, terminated, truncated, info });
        };
        let (total, game_over, truncated) = self.skip_frames(a, &pp)?;
        self.push_frame(out, false)?;
        let life_lost = self.episodic_life_lost(&pp, game_over || truncated);
        let terminated = game_over || life_lost;
        self.needs_reset = terminated || truncated;
        self.game_ret += total;
        self.game_len += 1;
        let mut info = self.info();
        if game_over || truncated {
            info.episode = Some(self.game_stats());
        }
        let reward = if pp.clip_rewards { sign(total) } else { total };
        Ok(StepOutcome { reward, terminated, truncated, info })
    }
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// A boxed `u8` observation of an [`AtariEnv`] (what [`Env::step`] returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtariObs(pub Box<[u8]>);

impl Observation for AtariObs {
    /// Writes the bytes as `f32` values in `0..=255` (not scaled).
    fn write_f32(&self, out: &mut [f32]) {
        for (o, &b) in out.iter_mut().zip(self.0.iter()) {
            *o = b as f32;
        }
    }
}

impl Env for AtariEnv {
    type Obs = AtariObs;
    type Action = usize;
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<(AtariObs, Info)> {
        let mut o = vec![0u8; self.obs_len()].into_boxed_slice();
        let info = self.reset_into(seed, &mut o)?;
        Ok((AtariObs(o), info))
    }
    fn step(&mut self, action: usize) -> Result<Step<AtariObs>> {
        let mut o = vec![0u8; self.obs_len()].into_boxed_slice();
        let s = self.step_into(action, &mut o)?;
        Ok(Step { obs: AtariObs(o), reward: s.reward, terminated: s.terminated, truncated: s.truncated, info: s.info })
    }
}
