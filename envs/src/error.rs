//! The error type of every fallible environment operation.

/// What went wrong in an environment call. Every variant's message names the offending value and what was
/// expected, so a user can fix the call without reading the source.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvError {
    /// An action outside the action space (a discrete index out of range, a NaN, a wrong length).
    #[error("invalid action {action} for action space {space}: {reason}")]
    InvalidAction {
        /// The action as given, formatted.
        action: String,
        /// The action space, formatted as Gymnasium prints it.
        space: String,
        /// Why it is rejected.
        reason: String,
    },
    /// `step` was called before the first `reset`, or after a step that ended the episode.
    #[error("step() called {0}; call reset() first")]
    NeedsReset(&'static str),
    /// `make` was given an id that is not registered.
    #[error("unknown environment id '{id}'; registered ids: {known}")]
    UnknownEnv {
        /// The id asked for.
        id: String,
        /// Every registered id, comma separated.
        known: String,
    },
    /// An option key the environment does not have.
    #[error("environment '{env}' has no option '{key}'; its options are: {known}")]
    UnknownOption {
        /// The environment id.
        env: String,
        /// The unknown key.
        key: String,
        /// The keys it accepts.
        known: String,
    },
    /// An option value of the wrong type or out of range.
    #[error("bad value '{value}' for option '{key}' of '{env}': {reason}")]
    BadOption {
        /// The environment id.
        env: String,
        /// The option key.
        key: String,
        /// The value given.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A map (FrozenLake, GridWorld) that cannot be built.
    #[error("malformed map: {0}")]
    BadMap(String),
    /// A space that cannot be built (bounds of different lengths, a NaN bound, `low > high`), or a buffer whose
    /// length does not fit a space.
    #[error("space mismatch: {0}")]
    BadSpace(String),
    /// The environment does not support the requested operation (e.g. no transition model).
    #[error("{0}")]
    Unsupported(String),
    /// A failure inside an external engine (e.g. the Arcade Learning Environment).
    #[error("environment backend error: {0}")]
    Backend(String),
}

/// Result of environment operations.
pub type Result<T> = std::result::Result<T, EnvError>;
