//! DQN on candle. Being written.
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::trainer::EnvSetup;

/// Configuration of DQN (placeholder: fields being written).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DqnConfig {}

/// The DQN agent the runner drives (being written).
#[derive(Debug)]
pub struct DqnTrainer;

impl DqnTrainer {
    /// Builds DQN for `env`, seeded with `seed`, on `device` (`cpu`, `cuda`, `cuda:N`).
    pub fn new(_cfg: &DqnConfig, _env: &EnvSetup, _seed: u64, _device: &str) -> Result<Self> {
        Err(AgentError::Unsupported("DQN is not built yet".into()))
    }
}
