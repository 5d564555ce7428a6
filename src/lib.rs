//! Bellman: reinforcement learning in Rust.
//!
//! This facade re-exports the member crates so a user depends on one crate:
//!
//! ```
//! use bellman::envs::Space;
//! assert_eq!(Space::Discrete(2).n(), Some(2));
//! ```
pub use bellman_agents as agents;
pub use bellman_envs as envs;
pub use bellman_experiments as experiments;
pub use bellman_replay as replay;
