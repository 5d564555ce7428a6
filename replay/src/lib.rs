//! bellman-replay
