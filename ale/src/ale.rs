//! The safe wrapper over the C shim.
use std::ffi::{CString, c_char, c_int, c_uint};
use std::path::Path;
use std::ptr::NonNull;

use crate::{AleError, Result};

#[repr(C)]
struct RawAle {
    _private: [u8; 0],
}

unsafe extern "C" {
    fn bellman_ale_new(err: *mut c_char, err_len: usize) -> *mut RawAle;
    fn bellman_ale_free(h: *mut RawAle);
    fn bellman_ale_set_int(h: *mut RawAle, key: *const c_char, v: c_int, err: *mut c_char, n: usize) -> c_int;
    fn bellman_ale_set_float(h: *mut RawAle, key: *const c_char, v: f32, err: *mut c_char, n: usize) -> c_int;
    fn bellman_ale_set_bool(h: *mut RawAle, key: *const c_char, v: c_int, err: *mut c_char, n: usize) -> c_int;
    fn bellman_ale_is_supported_rom(
        path: *const c_char,
        name: *mut c_char,
        name_len: usize,
        err: *mut c_char,
        n: usize,
    ) -> c_int;
    fn bellman_ale_load_rom(h: *mut RawAle, path: *const c_char, err: *mut c_char, n: usize) -> c_int;
    fn bellman_ale_act(h: *mut RawAle, a: c_int, paddle: f32, reward: *mut c_int, err: *mut c_char, n: usize) -> c_int;
    fn bellman_ale_game_over(h: *const RawAle, with_truncation: c_int) -> c_int;
    fn bellman_ale_game_truncated(h: *const RawAle) -> c_int;
    fn bellman_ale_reset_game(h: *mut RawAle, err: *mut c_char, n: usize) -> c_int;
    fn bellman_ale_lives(h: *mut RawAle) -> c_int;
    fn bellman_ale_frame_number(h: *const RawAle) -> c_int;
    fn bellman_ale_episode_frame_number(h: *const RawAle) -> c_int;
    fn bellman_ale_minimal_action_set(h: *const RawAle, out: *mut c_int, cap: usize) -> c_int;
    fn bellman_ale_legal_action_set(h: *const RawAle, out: *mut c_int, cap: usize) -> c_int;
    fn bellman_ale_available_modes(h: *const RawAle, out: *mut c_uint, cap: usize) -> c_int;
    fn bellman_ale_available_difficulties(h: *const RawAle, out: *mut c_uint, cap: usize) -> c_int;
    fn bellman_ale_set_mode(h: *mut RawAle, m: c_uint, err: *mut c_char, n: usize) -> c_int;
    fn bellman_ale_set_difficulty(h: *mut RawAle, d: c_uint, err: *mut c_char, n: usize) -> c_int;
    fn bellman_ale_screen_width(h: *const RawAle) -> c_int;
    fn bellman_ale_screen_height(h: *const RawAle) -> c_int;
    fn bellman_ale_screen_grayscale(h: *const RawAle, out: *mut u8, len: usize) -> c_int;
    fn bellman_ale_screen_rgb(h: *const RawAle, out: *mut u8, len: usize) -> c_int;
}

const ERR_LEN: usize = 512;

fn msg(buf: &[u8], what: &str) -> AleError {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    AleError(format!("ALE {what} failed: {}", String::from_utf8_lossy(&buf[..end])))
}

fn cstr(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| AleError(format!("{what} '{s}' contains a NUL byte")))
}

fn path_cstr(p: &Path) -> Result<CString> {
    let s = p.to_str().ok_or_else(|| AleError(format!("ROM path {} is not valid UTF-8", p.display())))?;
    cstr(s, "ROM path")
}

/// One ALE emulator (`ale::ALEInterface`).
///
/// `Send` (it owns its emulator; nothing is shared between instances) but not `Sync`: ALE is not thread-safe,
/// so use one instance per thread. Settings (`set_*`) take effect at the next [`Ale::load_rom`], as in ALE.
pub struct Ale {
    raw: NonNull<RawAle>,
    width: usize,
    height: usize,
    loaded: bool,
}

// SAFETY: an ALEInterface owns all its state (OSystem, settings, ROM, environment); moving it to another thread
// is sound as long as it is used from one thread at a time, which `&mut self` (and the absence of `Sync`)
// enforces. ALE's one process-wide setting, the logger mode, is written once (std::call_once in the shim).
unsafe impl Send for Ale {}

impl std::fmt::Debug for Ale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ale").field("width", &self.width).field("height", &self.height).finish()
    }
}

impl Drop for Ale {
    fn drop(&mut self) {
        // SAFETY: raw came from bellman_ale_new and is freed once.
        unsafe { bellman_ale_free(self.raw.as_ptr()) }
    }
}

impl Ale {
    /// A new emulator with ALE's default settings (no ROM loaded).
    pub fn new() -> Result<Self> {
        let mut err = [0u8; ERR_LEN];
        // SAFETY: err is a writable buffer of ERR_LEN bytes.
        let p = unsafe { bellman_ale_new(err.as_mut_ptr().cast(), ERR_LEN) };
        let raw = NonNull::new(p).ok_or_else(|| msg(&err, "construction"))?;
        Ok(Ale { raw, width: 0, height: 0, loaded: false })
    }

    fn check(&self, rc: c_int, err: &[u8], what: &str) -> Result<()> {
        if rc < 0 { Err(msg(err, what)) } else { Ok(()) }
    }

    /// Sets an integer setting (e.g. `random_seed`, `frame_skip`, `max_num_frames_per_episode`).
    pub fn set_int(&mut self, key: &str, value: i32) -> Result<()> {
        let k = cstr(key, "setting")?;
        let mut err = [0u8; ERR_LEN];
        // SAFETY: valid handle, NUL-terminated key, writable err buffer.
        let rc = unsafe { bellman_ale_set_int(self.raw.as_ptr(), k.as_ptr(), value, err.as_mut_ptr().cast(), ERR_LEN) };
        self.check(rc, &err, &format!("setInt({key}, {value})"))
    }

    /// Sets a float setting (e.g. `repeat_action_probability`).
    pub fn set_float(&mut self, key: &str, value: f32) -> Result<()> {
        let k = cstr(key, "setting")?;
        let mut err = [0u8; ERR_LEN];
        // SAFETY: as in set_int.
        let rc =
            unsafe { bellman_ale_set_float(self.raw.as_ptr(), k.as_ptr(), value, err.as_mut_ptr().cast(), ERR_LEN) };
        self.check(rc, &err, &format!("setFloat({key}, {value})"))
    }

    /// Sets a boolean setting.
    pub fn set_bool(&mut self, key: &str, value: bool) -> Result<()> {
        let k = cstr(key, "setting")?;
        let mut err = [0u8; ERR_LEN];
        // SAFETY: as in set_int.
        let rc = unsafe {
            bellman_ale_set_bool(self.raw.as_ptr(), k.as_ptr(), value as c_int, err.as_mut_ptr().cast(), ERR_LEN)
        };
        self.check(rc, &err, &format!("setBool({key}, {value})"))
    }

    /// The name ALE knows the ROM at `path` by (e.g. `pong`), or `None` when its MD5 is not a supported ROM.
    pub fn supported_rom(path: &Path) -> Result<Option<String>> {
        let p = path_cstr(path)?;
        let mut name = [0u8; 128];
        let mut err = [0u8; ERR_LEN];
        // SAFETY: NUL-terminated path, writable buffers with their lengths.
        let rc = unsafe {
            bellman_ale_is_supported_rom(p.as_ptr(), name.as_mut_ptr().cast(), 128, err.as_mut_ptr().cast(), ERR_LEN)
        };
        match rc {
            1 => {
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                Ok(Some(String::from_utf8_lossy(&name[..end]).into_owned()))
            }
            0 => Ok(None),
            _ => Err(msg(&err, &format!("isSupportedROM({})", path.display()))),
        }
    }

    /// Loads a ROM (and applies the settings). The ROM is checked with [`Ale::supported_rom`] first, because
    /// ALE's `loadROM` calls `exit(1)` on an unknown ROM.
    pub fn load_rom(&mut self, path: &Path) -> Result<()> {
        if Self::supported_rom(path)?.is_none() {
            return Err(AleError(format!(
                "{} is not a ROM supported by ALE 0.12.1 (its MD5 matches no supported game); use the ROMs of \
                 the ale-py==0.12.1 wheel",
                path.display()
            )));
        }
        let p = path_cstr(path)?;
        let mut err = [0u8; ERR_LEN];
        // SAFETY: valid handle, NUL-terminated path, writable err buffer.
        let rc = unsafe { bellman_ale_load_rom(self.raw.as_ptr(), p.as_ptr(), err.as_mut_ptr().cast(), ERR_LEN) };
        self.check(rc, &err, &format!("loadROM({})", path.display()))?;
        // SAFETY: valid handle with a loaded ROM.
        let (w, h) =
            unsafe { (bellman_ale_screen_width(self.raw.as_ptr()), bellman_ale_screen_height(self.raw.as_ptr())) };
        if w <= 0 || h <= 0 {
            return Err(AleError(format!("ALE reported a {w}x{h} screen after loading {}", path.display())));
        }
        self.width = w as usize;
        self.height = h as usize;
        self.loaded = true;
        Ok(())
    }

    fn need_rom(&self, what: &str) -> Result<()> {
        if self.loaded { Ok(()) } else { Err(AleError(format!("ALE {what} called before load_rom"))) }
    }

    /// Applies an ALE action id (`0..18`, see [`crate::ACTION_NAMES`]) for one emulator frame (ALE's own
    /// `frame_skip` setting aside) and returns the reward.
    #[inline]
    pub fn act(&mut self, action: u8, paddle_strength: f32) -> Result<i32> {
        if action >= 18 {
            return Err(AleError(format!("ALE action {action} out of range: must be in 0..18")));
        }
        self.need_rom("act")?;
        let mut r: c_int = 0;
        let mut err = [0u8; 256];
        // SAFETY: valid handle, r is a valid out pointer, err a writable buffer of its length.
        let rc = unsafe {
            bellman_ale_act(self.raw.as_ptr(), action as c_int, paddle_strength, &mut r, err.as_mut_ptr().cast(), 256)
        };
        if rc < 0 {
            return Err(msg(&err, &format!("act({action})")));
        }
        Ok(r)
    }

    /// True when the episode is over (`with_truncation`: also when `max_num_frames_per_episode` is reached).
    pub fn game_over(&self, with_truncation: bool) -> bool {
        // SAFETY: valid handle.
        unsafe { bellman_ale_game_over(self.raw.as_ptr(), with_truncation as c_int) == 1 }
    }

    /// True when the episode hit `max_num_frames_per_episode`.
    pub fn game_truncated(&self) -> bool {
        // SAFETY: valid handle.
        unsafe { bellman_ale_game_truncated(self.raw.as_ptr()) == 1 }
    }

    /// Resets the game (ALE's `reset_game`: soft reset plus the game's start actions and noops).
    pub fn reset_game(&mut self) -> Result<()> {
        self.need_rom("reset_game")?;
        let mut err = [0u8; ERR_LEN];
        // SAFETY: valid handle, writable err buffer.
        let rc = unsafe { bellman_ale_reset_game(self.raw.as_ptr(), err.as_mut_ptr().cast(), ERR_LEN) };
        self.check(rc, &err, "reset_game")
    }

    /// Remaining lives.
    pub fn lives(&mut self) -> i32 {
        // SAFETY: valid handle.
        unsafe { bellman_ale_lives(self.raw.as_ptr()) }
    }

    /// Frames since the ROM was loaded.
    pub fn frame_number(&self) -> i32 {
        // SAFETY: valid handle.
        unsafe { bellman_ale_frame_number(self.raw.as_ptr()) }
    }

    /// Frames since the start of the episode.
    pub fn episode_frame_number(&self) -> i32 {
        // SAFETY: valid handle.
        unsafe { bellman_ale_episode_frame_number(self.raw.as_ptr()) }
    }

    fn ints(&self, f: unsafe extern "C" fn(*const RawAle, *mut c_int, usize) -> c_int, what: &str) -> Result<Vec<u8>> {
        self.need_rom(what)?;
        let mut buf = [0 as c_int; 64];
        // SAFETY: valid handle, buf holds 64 values.
        let n = unsafe { f(self.raw.as_ptr(), buf.as_mut_ptr(), buf.len()) };
        if n < 0 || n as usize > buf.len() {
            return Err(AleError(format!("ALE {what} failed (returned {n})")));
        }
        Ok(buf[..n as usize].iter().map(|&a| a as u8).collect())
    }

    fn uints(
        &self,
        f: unsafe extern "C" fn(*const RawAle, *mut c_uint, usize) -> c_int,
        what: &str,
    ) -> Result<Vec<u32>> {
        self.need_rom(what)?;
        let mut buf = [0 as c_uint; 256];
        // SAFETY: valid handle, buf holds 256 values.
        let n = unsafe { f(self.raw.as_ptr(), buf.as_mut_ptr(), buf.len()) };
        if n < 0 || n as usize > buf.len() {
            return Err(AleError(format!("ALE {what} failed (returned {n})")));
        }
        Ok(buf[..n as usize].to_vec())
    }

    /// The game's minimal action set (ALE action ids), what Gymnasium's v5 envs use by default.
    pub fn minimal_action_set(&self) -> Result<Vec<u8>> {
        self.ints(bellman_ale_minimal_action_set, "getMinimalActionSet")
    }

    /// All 18 actions (ALE's legal action set), for `full_action_space=True`.
    pub fn legal_action_set(&self) -> Result<Vec<u8>> {
        self.ints(bellman_ale_legal_action_set, "getLegalActionSet")
    }

    /// The game modes of the loaded ROM.
    pub fn available_modes(&self) -> Result<Vec<u32>> {
        self.uints(bellman_ale_available_modes, "getAvailableModes")
    }

    /// The difficulties of the loaded ROM.
    pub fn available_difficulties(&self) -> Result<Vec<u32>> {
        self.uints(bellman_ale_available_difficulties, "getAvailableDifficulties")
    }

    /// Sets the game mode (must be one of [`Ale::available_modes`]); takes effect at the next reset.
    pub fn set_mode(&mut self, mode: u32) -> Result<()> {
        let modes = self.available_modes()?;
        if !modes.contains(&mode) {
            return Err(AleError(format!("game mode {mode} is not available; available modes: {modes:?}")));
        }
        let mut err = [0u8; ERR_LEN];
        // SAFETY: valid handle, writable err buffer.
        let rc = unsafe { bellman_ale_set_mode(self.raw.as_ptr(), mode, err.as_mut_ptr().cast(), ERR_LEN) };
        self.check(rc, &err, &format!("setMode({mode})"))
    }

    /// Sets the difficulty (must be one of [`Ale::available_difficulties`]); takes effect at the next reset.
    pub fn set_difficulty(&mut self, difficulty: u32) -> Result<()> {
        let ds = self.available_difficulties()?;
        if !ds.contains(&difficulty) {
            return Err(AleError(format!("difficulty {difficulty} is not available; available difficulties: {ds:?}")));
        }
        let mut err = [0u8; ERR_LEN];
        // SAFETY: valid handle, writable err buffer.
        let rc = unsafe { bellman_ale_set_difficulty(self.raw.as_ptr(), difficulty, err.as_mut_ptr().cast(), ERR_LEN) };
        self.check(rc, &err, &format!("setDifficulty({difficulty})"))
    }

    /// Screen width in pixels (160 for every Atari 2600 game; 0 before a ROM is loaded).
    pub fn screen_width(&self) -> usize {
        self.width
    }

    /// Screen height in pixels (210; 0 before a ROM is loaded).
    pub fn screen_height(&self) -> usize {
        self.height
    }

    /// Writes the screen through ALE's grayscale palette (`getScreenGrayscale`) into `out`, which must hold
    /// `width * height` bytes. Allocates nothing.
    #[inline]
    pub fn screen_grayscale(&self, out: &mut [u8]) -> Result<()> {
        self.need_rom("getScreenGrayscale")?;
        let n = self.width * self.height;
        if out.len() != n {
            return Err(AleError(format!(
                "grayscale buffer of {} bytes, expected {n} (= {}x{})",
                out.len(),
                self.height,
                self.width
            )));
        }
        // SAFETY: valid handle, out holds exactly n bytes.
        let rc = unsafe { bellman_ale_screen_grayscale(self.raw.as_ptr(), out.as_mut_ptr(), n) };
        if rc < 0 { Err(AleError(format!("ALE getScreenGrayscale failed ({rc})"))) } else { Ok(()) }
    }

    /// Writes the screen as interleaved RGB (`getScreenRGB`) into `out` (`width * height * 3` bytes).
    pub fn screen_rgb(&self, out: &mut [u8]) -> Result<()> {
        self.need_rom("getScreenRGB")?;
        let n = self.width * self.height * 3;
        if out.len() != n {
            return Err(AleError(format!(
                "RGB buffer of {} bytes, expected {n} (= {}x{}x3)",
                out.len(),
                self.height,
                self.width
            )));
        }
        // SAFETY: valid handle, out holds exactly n bytes.
        let rc = unsafe { bellman_ale_screen_rgb(self.raw.as_ptr(), out.as_mut_ptr(), n) };
        if rc < 0 { Err(AleError(format!("ALE getScreenRGB failed ({rc})"))) } else { Ok(()) }
    }
}
