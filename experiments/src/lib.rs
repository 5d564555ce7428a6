//! bellman-experiments: configs, the `bellman` CLI, the runner, run logs, checkpoints, progress and plots.
//!
//! * [`config`]: the TOML experiment schema, embedded named experiments, `--set` overrides.
//! * [`runner`]: drives any [`bellman_agents::trainer::Trainer`], writes the run directory, evaluates,
//!   checkpoints, resumes, stops cleanly on Ctrl-C.
//! * [`runlog`]: `episodes.csv`, `metrics.csv`, SB3-compatible `monitor.csv`, `summary.json`.
//! * [`checkpoint`]: safetensors weights + JSON metadata, written atomically, checked on load.
//! * [`plot`]: reward curves (PNG/SVG) with an embedded font.
//! * [`solve`]: `bellman solve`, exact planning on envs with a model.
//! * [`cli`]: the `bellman` command line.
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod plot;
pub mod progress;
pub mod runlog;
pub mod runner;
pub mod solve;
