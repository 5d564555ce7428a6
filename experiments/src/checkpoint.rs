//! Checkpoint files: `<tag>.safetensors` (the policy's weights), `<tag>.state.safetensors` (the rest of the
//! training state, when the agent has one), `<tag>.replay` (the replay buffer, when saved: `bellman_replay`'s
//! versioned format) and `<tag>.json` (metadata: experiment, resolved config, step, env id, versions, the agent's
//! own counters and the runner's). Each file is written atomically, the JSON last, so a checkpoint is complete
//! exactly when its JSON names sizes that match the files next to it.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bellman_agents::trainer::{Checkpoint, Trainer};
use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::runlog::{EvalFigure, ResumeRecord, atomic_write};

/// Format tag in every checkpoint's JSON.
pub const FORMAT: &str = "bellman-checkpoint/1";

/// The runner's own counters, saved with each checkpoint so a resumed run continues its bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunnerState {
    /// Training episodes finished.
    pub episodes: u64,
    /// Seconds of training so far.
    pub wall_time: f64,
    /// The best evaluation so far.
    pub best_eval: Option<EvalFigure>,
    /// First step at which an evaluation reached the reward threshold.
    pub solved_at_step: Option<u64>,
    /// Every resume of the run so far: at which step, and whether it was exact.
    #[serde(default)]
    pub resumes: Vec<ResumeRecord>,
}

/// The JSON metadata of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// Experiment name.
    pub experiment: String,
    /// Env id.
    pub env_id: String,
    /// Env steps done when it was written.
    pub step: u64,
    /// The resolved experiment config, as TOML text (enough to rebuild the agent).
    pub config: String,
    /// Crate versions.
    pub versions: serde_json::Value,
    /// Size in bytes of `<tag>.safetensors`.
    pub weights_bytes: u64,
    /// Size in bytes of `<tag>.state.safetensors` (None: no such file).
    pub state_bytes: Option<u64>,
    /// Size in bytes of `<tag>.replay`, the saved replay buffer (None: not saved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_bytes: Option<u64>,
    /// The mean and std of the evaluation that made this checkpoint (for `best`).
    pub eval: Option<(f64, f64)>,
    /// The runner's counters.
    pub runner: RunnerState,
    /// The agent's own metadata ([`Checkpoint::meta`]).
    pub agent: serde_json::Value,
}

/// Versions recorded in checkpoints and summaries.
pub fn versions() -> serde_json::Value {
    serde_json::json!({ "bellman": env!("CARGO_PKG_VERSION"), "format": FORMAT })
}

/// The three paths of checkpoint `tag` in `dir`: weights, train state, metadata.
pub fn paths(dir: &Path, tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(format!("{tag}.safetensors")),
        dir.join(format!("{tag}.state.safetensors")),
        dir.join(format!("{tag}.json")),
    )
}

/// The path of checkpoint `tag`'s replay buffer in `dir`: `<tag>.replay`.
pub fn replay_path(dir: &Path, tag: &str) -> PathBuf {
    dir.join(format!("{tag}.replay"))
}

/// Writes checkpoint `tag` of `trainer` into `dir`, with its replay buffer as `<tag>.replay` when `with_replay`
/// and the agent has one (written first; a stale one is removed otherwise), then as [`save`] does.
#[allow(clippy::too_many_arguments)]
pub fn save_trainer(
    dir: &Path,
    tag: &str,
    cfg: &ExperimentConfig,
    trainer: &dyn Trainer,
    step: u64,
    eval: Option<(f64, f64)>,
    runner: &RunnerState,
    with_replay: bool,
) -> Result<()> {
    let rp = replay_path(dir, tag);
    let saved = with_replay
        && trainer.save_replay(&rp).with_context(|| format!("cannot save the replay buffer {}", rp.display()))?;
    let replay_bytes = if saved {
        Some(std::fs::metadata(&rp).with_context(|| format!("cannot read {}", rp.display()))?.len())
    } else {
        if rp.exists() {
            std::fs::remove_file(&rp).with_context(|| format!("cannot remove stale {}", rp.display()))?;
        }
        None
    };
    write(dir, tag, cfg, &trainer.checkpoint()?, step, eval, runner, replay_bytes)
}

/// Writes checkpoint `tag` into `dir` (each file atomically, the metadata last), without a replay buffer.
pub fn save(
    dir: &Path,
    tag: &str,
    cfg: &ExperimentConfig,
    ckpt: &Checkpoint,
    step: u64,
    eval: Option<(f64, f64)>,
    runner: &RunnerState,
) -> Result<()> {
    let rp = replay_path(dir, tag);
    if rp.exists() {
        std::fs::remove_file(&rp).with_context(|| format!("cannot remove stale {}", rp.display()))?;
    }
    write(dir, tag, cfg, ckpt, step, eval, runner, None)
}

#[allow(clippy::too_many_arguments)]
fn write(
    dir: &Path,
    tag: &str,
    cfg: &ExperimentConfig,
    ckpt: &Checkpoint,
    step: u64,
    eval: Option<(f64, f64)>,
    runner: &RunnerState,
    replay_bytes: Option<u64>,
) -> Result<()> {
    let (w, s, m) = paths(dir, tag);
    if let Some(state) = &ckpt.train_state {
        atomic_write(&s, state)?;
    } else if s.exists() {
        std::fs::remove_file(&s).with_context(|| format!("cannot remove stale {}", s.display()))?;
    }
    atomic_write(&w, &ckpt.weights)?;
    let meta = CheckpointMeta {
        format: FORMAT.into(),
        experiment: cfg.name.clone(),
        env_id: cfg.env.clone(),
        step,
        config: cfg.to_toml()?,
        versions: versions(),
        weights_bytes: ckpt.weights.len() as u64,
        state_bytes: ckpt.train_state.as_ref().map(|b| b.len() as u64),
        replay_bytes,
        eval,
        runner: runner.clone(),
        agent: ckpt.meta.clone(),
    };
    atomic_write(&m, serde_json::to_string_pretty(&meta)?.as_bytes())
}

fn check_safetensors(path: &Path, bytes: &[u8], expect: u64) -> Result<()> {
    if bytes.len() as u64 != expect {
        bail!(
            "corrupt checkpoint {}: {} bytes, the metadata says {expect} (truncated or overwritten)",
            path.display(),
            bytes.len()
        );
    }
    safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow::anyhow!("corrupt checkpoint {}: not a valid safetensors file ({e})", path.display()))?;
    Ok(())
}

/// Reads a checkpoint given any of its files (`<tag>.safetensors`, `<tag>.json`) or `<dir>/<tag>`: checks the
/// metadata, the sizes and the safetensors headers, and names the bad file in every error.
pub fn load(path: &Path) -> Result<(CheckpointMeta, ExperimentConfig, Checkpoint)> {
    let s = path.to_string_lossy();
    let base = s
        .strip_suffix(".state.safetensors")
        .or_else(|| s.strip_suffix(".safetensors"))
        .or_else(|| s.strip_suffix(".json"))
        .unwrap_or(&s)
        .to_string();
    let (wp, sp, mp) = (
        PathBuf::from(format!("{base}.safetensors")),
        PathBuf::from(format!("{base}.state.safetensors")),
        PathBuf::from(format!("{base}.json")),
    );
    let text =
        std::fs::read_to_string(&mp).with_context(|| format!("cannot read checkpoint metadata {}", mp.display()))?;
    let meta: CheckpointMeta = serde_json::from_str(&text)
        .with_context(|| format!("corrupt checkpoint metadata {}: not the JSON Bellman writes", mp.display()))?;
    if meta.format != FORMAT {
        bail!("{}: checkpoint format {:?}, this build reads {FORMAT:?}", mp.display(), meta.format);
    }
    let cfg = ExperimentConfig::resolve(&meta.config, &[])
        .map_err(|e| anyhow::anyhow!("{}: the stored config does not load: {e}", mp.display()))?;
    let weights = std::fs::read(&wp).with_context(|| format!("cannot read checkpoint weights {}", wp.display()))?;
    check_safetensors(&wp, &weights, meta.weights_bytes)?;
    let train_state = match meta.state_bytes {
        None => None,
        Some(n) => {
            let b = std::fs::read(&sp).with_context(|| format!("cannot read checkpoint state {}", sp.display()))?;
            check_safetensors(&sp, &b, n)?;
            Some(b)
        }
    };
    let ckpt = Checkpoint { weights, train_state, meta: meta.agent.clone() };
    Ok((meta, cfg, ckpt))
}

/// The replay buffer saved with the checkpoint `base` (`<dir>/<tag>`, as given to [`load`]) whose metadata is
/// `meta`: `None` when none was saved, else its path once its size matches the metadata (an error naming the file
/// otherwise). Its content is checked when the agent loads it.
pub fn replay_file(base: &Path, meta: &CheckpointMeta) -> Result<Option<PathBuf>> {
    let Some(n) = meta.replay_bytes else { return Ok(None) };
    let p = PathBuf::from(format!("{}.replay", base.display()));
    let got = std::fs::metadata(&p)
        .with_context(|| format!("cannot read the replay buffer {} that the checkpoint names", p.display()))?
        .len();
    if got != n {
        bail!("corrupt checkpoint {}: {got} bytes, the metadata says {n} (truncated or overwritten)", p.display());
    }
    Ok(Some(p))
}
