//! bellman-agents: tabular planning and learning, DQN on candle, and parallel actors.
//!
//! Agents are trained through the [`trainer::Trainer`] trait, which the experiment runner drives.
pub mod actors;
pub mod dqn;
pub mod error;
pub mod tabular;
pub mod trainer;

pub use error::{AgentError, Result};
