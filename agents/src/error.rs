//! The error type of the agents.
use bellman_envs::EnvError;

/// What can go wrong when building, training, evaluating or restoring an agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// An environment call failed.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// A configuration value is out of range or inconsistent (the message names the field and the range).
    #[error("invalid config: {0}")]
    Config(String),
    /// The env's spaces do not suit the agent (e.g. continuous actions given to DQN).
    #[error("unsupported environment: {0}")]
    Unsupported(String),
    /// A tensor or device operation failed.
    #[error("tensor error: {0}")]
    Tensor(String),
    /// Training diverged (e.g. a NaN loss).
    #[error("training diverged: {0}")]
    Diverged(String),
    /// A checkpoint or saved state that cannot be read.
    #[error("bad checkpoint: {0}")]
    Checkpoint(String),
    /// A worker thread (actor) failed.
    #[error("actor {id} failed: {cause}")]
    Actor {
        /// The actor's index.
        id: usize,
        /// What happened.
        cause: String,
    },
    /// Replay-buffer error.
    #[error("replay: {0}")]
    Replay(String),
}

/// Result of agent operations.
pub type Result<T> = std::result::Result<T, AgentError>;
