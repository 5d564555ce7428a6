//! Speed of DQN's building blocks on a device: what `bellman bench dqn --device cpu|cuda` prints.
//!
//! The same workloads as the criterion benchmark (`cargo bench -p bellman-agents --bench dqn`) and the PyTorch
//! reference (`scripts/bench_torch_dqn.py`): one gradient update of the CartPole MLP through the real
//! [`DqnTrainer::gradient_step`] (replay sampling, upload, targets, Huber loss, backward, clipping, Adam), one
//! greedy action at batch 1, and one Nature-CNN update at batch 32 on `u8` frames uploaded each time. Each update
//! reads its gradient norm back to the host, so a timed iteration includes the device's work (no asynchronous
//! queueing hides it).
//!
//! ```
//! use bellman_agents::dqn::speed::{Workload, measure};
//! let t = measure(Workload::ActB1, "cpu", 50).unwrap();
//! assert_eq!(t.iters, 50);
//! assert!(t.median_us > 0.0 && t.median_us <= t.max_us);
//! ```
use std::time::Instant;

use candle_core::Tensor;
use rand::SeedableRng;

use super::loss::{LossKind, td_loss};
use super::network::{Activation, Arch, Init, NetSpec, QNetwork, terr};
use super::optim::Optim;
use super::{DqnConfig, DqnTrainer};
use crate::error::Result;
use crate::trainer::{EnvSetup, NullReporter, Trainer};

/// One measured workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// CartPole MLP 4-64-64-2 update at batch 128.
    Mlp64UpdateB128,
    /// CartPole MLP 4-64-64-2 update at batch 64.
    Mlp64UpdateB64,
    /// rl-zoo's CartPole MLP 4-256-256-2 update at batch 64.
    Mlp256UpdateB64,
    /// One greedy action of the 4-64-64-2 MLP at batch 1 (the trainer's acting path).
    ActB1,
    /// Nature-CNN (4x84x84 `u8`, 6 actions) update at batch 32.
    NatureCnnUpdateB32,
}

impl Workload {
    /// Every workload, in the order `bellman bench dqn` prints them.
    pub const ALL: [Workload; 5] = [
        Workload::Mlp64UpdateB128,
        Workload::Mlp64UpdateB64,
        Workload::Mlp256UpdateB64,
        Workload::ActB1,
        Workload::NatureCnnUpdateB32,
    ];

    /// The name used by the criterion benchmark and the PyTorch script.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Mlp64UpdateB128 => "mlp64_update_b128",
            Workload::Mlp64UpdateB64 => "mlp64_update_b64",
            Workload::Mlp256UpdateB64 => "mlp256_update_b64",
            Workload::ActB1 => "act_b1",
            Workload::NatureCnnUpdateB32 => "nature_cnn_update_b32",
        }
    }

    /// A sensible number of timed iterations (the CNN update is ~1000x slower than the rest on a CPU).
    pub fn default_iters(self) -> usize {
        match self {
            Workload::NatureCnnUpdateB32 => 30,
            Workload::ActB1 => 20_000,
            _ => 2_000,
        }
    }
}

/// Timings of one workload, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// The workload.
    pub workload: Workload,
    /// Timed iterations (after a warm-up of `max(3, iters / 10)`).
    pub iters: usize,
    /// Median of the iterations.
    pub median_us: f64,
    /// Mean of the iterations.
    pub mean_us: f64,
    /// Slowest iteration.
    pub max_us: f64,
}

fn cartpole_learner(hidden: Vec<usize>, batch: usize, device: &str) -> Result<DqnTrainer> {
    let cfg = DqnConfig {
        hidden,
        batch_size: batch,
        learning_rate: 1e-4,
        buffer_size: 10_000,
        learning_starts: 1_000_000, // only fill the buffer
        total_steps: Some(2_000),
        ..DqnConfig::default()
    };
    let mut t = DqnTrainer::new(&cfg, &EnvSetup::new("CartPole-v1"), 0, device)?;
    t.train(2_000, &mut NullReporter)?;
    Ok(t)
}

fn time(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    for _ in 0..(iters / 10).max(3) {
        f()?;
    }
    let mut ts = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f()?;
        ts.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(ts)
}

/// Runs `workload` on `device` (`cpu`, `cuda`, `cuda:N`) for `iters` timed iterations.
pub fn measure(workload: Workload, device: &str, iters: usize) -> Result<Timing> {
    let iters = iters.max(1);
    let mut ts = match workload {
        Workload::Mlp64UpdateB128 | Workload::Mlp64UpdateB64 | Workload::Mlp256UpdateB64 => {
            let (hidden, batch) = match workload {
                Workload::Mlp64UpdateB128 => (vec![64, 64], 128),
                Workload::Mlp64UpdateB64 => (vec![64, 64], 64),
                _ => (vec![256, 256], 64),
            };
            let mut t = cartpole_learner(hidden, batch, device)?;
            time(iters, || t.gradient_step())?
        }
        Workload::ActB1 => {
            let mut t = cartpole_learner(vec![64, 64], 64, device)?;
            let obs = [0.01f32, -0.2, 0.03, 0.1];
            time(iters, || t.act_greedy(std::hint::black_box(&obs)).map(|_| ()))?
        }
        Workload::NatureCnnUpdateB32 => {
            let dev = super::device::parse_device(device)?;
            let spec = NetSpec {
                arch: Arch::NatureCnn,
                obs_shape: vec![4, 84, 84],
                hidden: vec![512],
                activation: Activation::Relu,
                dueling: false,
                n_actions: 6,
                init: Init::Torch,
            };
            let online = QNetwork::new(&spec, &mut rand_pcg::Pcg64::seed_from_u64(0), &dev)?;
            let target = QNetwork::new(&spec, &mut rand_pcg::Pcg64::seed_from_u64(1), &dev)?;
            let vars = online.vars();
            let mut opt = Optim::adam(vars.clone(), 1e-4, 1e-8)?;
            let frames: Vec<u8> = (0..32 * 4 * 84 * 84).map(|i| (i * 7 % 256) as u8).collect();
            let actions: Vec<u32> = (0..32).map(|i| i % 6).collect();
            time(iters, || {
                let x = Tensor::from_slice(&frames, (32, 4, 84, 84), &dev).map_err(terr)?;
                let a = Tensor::from_slice(&actions, 32, &dev).map_err(terr)?;
                let y = target.forward(&x).and_then(|q| q.max(1)).map_err(terr)?.detach();
                let q = online.forward(&x).map_err(terr)?;
                let (loss, _) = td_loss(&q, &a, &y, None, LossKind::Huber).map_err(terr)?;
                let mut grads = loss.backward().map_err(terr)?;
                opt.clip_and_step(&mut grads, &vars, 10.0).map(|_| ())
            })?
        }
    };
    let mean_us = ts.iter().sum::<f64>() / ts.len() as f64;
    ts.sort_by(f64::total_cmp);
    let n = ts.len();
    let median_us = if n % 2 == 1 { ts[n / 2] } else { 0.5 * (ts[n / 2 - 1] + ts[n / 2]) };
    Ok(Timing { workload, iters: n, median_us, mean_us, max_us: ts[n - 1] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_runs_on_the_cpu_and_reports_ordered_statistics() {
        for w in Workload::ALL {
            let iters = if w == Workload::NatureCnnUpdateB32 { 1 } else { 5 };
            let t = measure(w, "cpu", iters).unwrap();
            assert_eq!((t.workload, t.iters), (w, iters));
            assert!(t.median_us > 0.0 && t.median_us <= t.max_us && t.mean_us <= t.max_us, "{t:?}");
        }
        assert!(measure(Workload::ActB1, "tpu", 1).is_err());
    }
}
