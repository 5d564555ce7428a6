//! The runner with the real agents (`runner::build_agent`): tiny budgets, end to end.
use std::path::Path;

use bellman_experiments::config::ExperimentConfig;
use bellman_experiments::progress::ProgressMode;
use bellman_experiments::runlog::{self, Summary};
use bellman_experiments::runner::{self, RunOptions};

fn opts(out: &Path) -> RunOptions {
    RunOptions { out: out.to_path_buf(), progress: ProgressMode::Quiet, plot: false, ..Default::default() }
}

fn episodes_no_time(dir: &Path) -> Vec<(u64, u64, f64, u64)> {
    runlog::read_episodes(&dir.join("episodes.csv"))
        .unwrap()
        .iter()
        .map(|e| (e.step, e.episode, e.ret, e.length))
        .collect()
}

/// Trains, re-runs from the resolved `config.toml`, and evaluates the last checkpoint: the episodes are identical
/// and the checkpoint's evaluation equals `summary.json`'s final one.
fn round_trip(text: &str, name: &str) -> Summary {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ExperimentConfig::resolve(text, &[]).unwrap();
    let s = runner::train(&cfg, &opts(&tmp.path().join("a")), &runner::build_agent).unwrap();
    let a = tmp.path().join("a").join(name).join("seed-0");
    let again = ExperimentConfig::resolve(&std::fs::read_to_string(a.join("config.toml")).unwrap(), &[]).unwrap();
    runner::train(&again, &opts(&tmp.path().join("b")), &runner::build_agent).unwrap();
    let ea = episodes_no_time(&a);
    assert!(!ea.is_empty());
    assert_eq!(ea, episodes_no_time(&tmp.path().join("b").join(name).join("seed-0")));
    let fe = s.final_eval.clone().unwrap();
    let r =
        runner::evaluate_checkpoint(&a.join("checkpoints/last.safetensors"), None, None, "cpu", &runner::build_agent)
            .unwrap();
    assert_eq!((r.mean, r.std, &r.returns), (fe.mean, fe.std, &fe.returns));
    s
}

#[test]
fn tabular_q_learning_on_frozenlake_end_to_end() {
    let s = round_trip(
        r#"
name = "fl"
env = "FrozenLake-v1"
env_options = ["is_slippery=false"]
total_steps = 3000
[eval]
every_steps = 1000
episodes = 10
[agent]
kind = "tabular"
alpha = 0.5
"#,
        "fl",
    );
    assert_eq!(s.total_steps, 3000);
    // Deterministic 4x4 FrozenLake: Q-learning with alpha 0.5 finds the goal within 3000 steps (seed 0); the
    // greedy policy then always reaches it, above Gymnasium's threshold 0.70.
    assert_eq!(s.reward_threshold, Some(0.7));
    assert_eq!(s.final_eval.as_ref().unwrap().mean, 1.0);
    assert!(s.solved_at_step.is_some());
}

#[test]
fn dqn_on_cartpole_end_to_end() {
    let s = round_trip(
        r#"
name = "cp"
env = "CartPole-v1"
total_steps = 600
[eval]
every_steps = 300
episodes = 2
[agent]
kind = "dqn"
learning_starts = 200
buffer_size = 1000
"#,
        "cp",
    );
    assert_eq!(s.total_steps, 600);
    assert_eq!(s.reward_threshold, Some(475.0));
}
