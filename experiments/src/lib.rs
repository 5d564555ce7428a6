//! bellman-experiments: configs, the CLI, the runner, logging and plots.
pub mod cli;
