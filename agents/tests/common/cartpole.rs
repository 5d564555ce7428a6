//! Shared by the actor measurement tests (`#[path = "common/cartpole.rs"] mod cartpole;`).
use bellman_agents::dqn::DqnConfig;

/// rl-baselines3-zoo's CartPole-v1 DQN settings as in experiments/configs/cartpole-dqn.toml.
pub fn cartpole_cfg() -> DqnConfig {
    DqnConfig {
        hidden: vec![64, 64],
        learning_rate: 2.3e-3,
        batch_size: 64,
        buffer_size: 100_000,
        learning_starts: 1_000,
        gamma: 0.99,
        target_update_interval: 10,
        train_freq: 256,
        gradient_steps: 128,
        exploration_fraction: 0.16,
        exploration_final_eps: 0.04,
        total_steps: Some(50_000),
        ..DqnConfig::default()
    }
}
