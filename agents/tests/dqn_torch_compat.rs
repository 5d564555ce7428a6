//! A DQN checkpoint loads into the equivalent PyTorch module (`scripts/dqn_torch_module.py`) with
//! `safetensors.torch.load_file` + `load_state_dict(strict=True)` and gives the same Q-values. Skipped (with a
//! message) when `python3` with `torch` and `safetensors` is not installed.
use std::process::Command;

use bellman_agents::dqn::{DqnConfig, DqnTrainer};
use bellman_agents::trainer::{EnvSetup, Trainer};

fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, safetensors.torch"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn checkpoint_loads_into_pytorch_module() {
    // SAFETY: first statement, before candle starts any thread (GPU.md).
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    if !torch_available() {
        eprintln!("skipped: python3 with torch and safetensors is not installed");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/dqn_torch_module.py");
    let dir = std::env::temp_dir().join(format!("bellman-dqn-torch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for dueling in [false, true] {
        let cfg = DqnConfig { hidden: vec![32, 16], dueling, ..DqnConfig::default() };
        let mut agent = DqnTrainer::new(&cfg, &EnvSetup::new("CartPole-v1"), 5, "cpu").unwrap();
        let obs = [0.1f32, -0.5, 0.03, 1.2];
        let q = agent.q_values(&obs).unwrap();
        let path = dir.join(format!("q-{dueling}.safetensors"));
        std::fs::write(&path, agent.checkpoint().unwrap().weights).unwrap();
        let join = |v: &[f32]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg(&path).args(["--obs-dim", "4", "--hidden", "32,16", "--actions", "2"]);
        if dueling {
            cmd.arg("--dueling");
        }
        // `--key=value`: argparse would read a leading '-' of a negative value as an option.
        let out = cmd.arg(format!("--obs={}", join(&obs))).arg(format!("--expect={}", join(&q))).output().unwrap();
        assert!(
            out.status.success(),
            "dueling {dueling}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
