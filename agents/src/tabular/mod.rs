//! Tabular planning (value and policy iteration) and learning (Q-learning, SARSA). Being written.
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::trainer::EnvSetup;

/// Configuration of a tabular learner (placeholder: fields being written).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TabularConfig {}

/// A tabular learner the runner drives (being written).
#[derive(Debug)]
pub struct TabularTrainer;

impl TabularTrainer {
    /// Builds the learner for `env` seeded with `seed`.
    pub fn new(_cfg: &TabularConfig, _env: &EnvSetup, _seed: u64) -> Result<Self> {
        Err(AgentError::Unsupported("tabular learners are not built yet".into()))
    }
}
