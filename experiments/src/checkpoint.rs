//! Checkpoint files: `<tag>.safetensors` (the policy's weights), `<tag>.state.safetensors` (the rest of the
//! training state, when the agent has one) and `<tag>.json` (metadata: experiment, resolved config, step, env id,
//! versions, the agent's own counters and the runner's). Each file is written atomically, the JSON last, so a
//! checkpoint is complete exactly when its JSON names sizes that match the files next to it.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bellman_agents::trainer::Checkpoint;
use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::runlog::{EvalFigure, atomic_write};

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

/// Writes checkpoint `tag` into `dir` (each file atomically, the metadata last).
pub fn save(
    dir: &Path,
    tag: &str,
    cfg: &ExperimentConfig,
    ckpt: &Checkpoint,
    step: u64,
    eval: Option<(f64, f64)>,
    runner: &RunnerState,
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
