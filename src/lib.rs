//! Bellman: reinforcement learning in Rust. This facade re-exports the member crates, so one dependency gives
//! all of them: [`envs`], [`replay`], [`agents`], [`experiments`]. The README follows (its Rust example is
//! compiled and run as a doctest).
//!
#![doc = include_str!("../README.md")]
pub use bellman_agents as agents;
pub use bellman_envs as envs;
pub use bellman_experiments as experiments;
pub use bellman_replay as replay;
