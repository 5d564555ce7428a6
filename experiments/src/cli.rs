//! The `bellman` command line.
use std::process::ExitCode;

/// Entry point of the `bellman` binary.
pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
