//! The error type of every fallible replay operation.
use std::path::PathBuf;

/// What went wrong in a replay-buffer call. Messages name the offending value and the accepted range.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A bad argument: a zero capacity, a slice of the wrong length, a NaN priority, an index out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Sampling from a buffer that holds no transition yet.
    #[error("cannot sample from an empty replay buffer: push at least one transition first")]
    Empty,
    /// The file system refused a read or a write.
    #[error("i/o error on '{path}': {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A saved buffer that cannot be loaded: wrong magic, another format version, a different element type or
    /// shape, or a truncated file.
    #[error("cannot load replay file '{path}': {msg}")]
    Format {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
}

/// `Result` with [`ReplayError`].
pub type Result<T> = std::result::Result<T, ReplayError>;

/// Shorthand for an [`ReplayError::InvalidArgument`].
pub(crate) fn invalid(msg: impl Into<String>) -> ReplayError {
    ReplayError::InvalidArgument(msg.into())
}
