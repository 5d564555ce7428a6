//! DQN speed: one gradient update of the CartPole MLP (4-64-64-2, batch 128 and 64; and rl-zoo's 4-256-256-2 at
//! batch 64), one greedy action at batch 1 (candle forward vs the plain-Rust CPU copy), and one Nature-CNN update
//! at batch 32 (on the fused CPU kernels, and on candle's `conv2d` for comparison). One thread, as the PyTorch
//! reference (`scripts/bench_torch_dqn.py`, `torch.set_num_threads(1)`).
//!
//! `cargo bench -p bellman-agents --bench dqn` (`-- cnn` for the CNN only)
use std::hint::black_box;

use bellman_agents::dqn::loss::{LossKind, td_loss};
use bellman_agents::dqn::network::{Activation, Arch, CpuMlp, Init, NetSpec, QNetwork};
use bellman_agents::dqn::optim::Optim;
use bellman_agents::dqn::{DqnConfig, DqnTrainer};
use bellman_agents::trainer::{EnvSetup, NullReporter, Trainer};
use candle_core::{Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;

// GPU.md: the binary uses mimalloc; benchmarks measure the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cartpole_learner(hidden: Vec<usize>, batch: usize) -> DqnTrainer {
    let cfg = DqnConfig {
        hidden,
        batch_size: batch,
        learning_rate: 1e-4,
        buffer_size: 10_000,
        learning_starts: 1_000_000, // only fill the buffer
        total_steps: Some(2_000),
        ..DqnConfig::default()
    };
    let mut t = DqnTrainer::new(&cfg, &EnvSetup::new("CartPole-v1"), 0, "cpu").unwrap();
    t.train(2_000, &mut NullReporter).unwrap();
    t
}

fn bench(c: &mut Criterion) {
    // SAFETY: set before the first candle operation, single-threaded at this point.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    for (name, hidden, batch) in [
        ("mlp64_update_b128", vec![64, 64], 128),
        ("mlp64_update_b64", vec![64, 64], 64),
        ("mlp256_update_b64", vec![256, 256], 64),
    ] {
        let mut t = cartpole_learner(hidden, batch);
        c.bench_function(name, |b| b.iter(|| t.gradient_step().unwrap()));
    }
    let spec = NetSpec {
        arch: Arch::Mlp,
        obs_shape: vec![4],
        hidden: vec![64, 64],
        activation: Activation::Relu,
        dueling: false,
        n_actions: 2,
        init: Init::Torch,
    };
    let net = QNetwork::new(&spec, &mut rand_pcg::Pcg64::seed_from_u64(0), &Device::Cpu).unwrap();
    let obs = [0.01f32, -0.2, 0.03, 0.1];
    c.bench_function("act_b1_candle", |b| {
        b.iter(|| {
            let x = Tensor::from_slice(&obs, (1, 4), &Device::Cpu).unwrap();
            let q = net.forward(&x).unwrap().argmax(1).unwrap().to_vec1::<u32>().unwrap();
            black_box(q[0])
        })
    });
    let mut cpu = CpuMlp::from_network(&net).unwrap();
    c.bench_function("act_b1_cpu_copy", |b| b.iter(|| black_box(cpu.act(black_box(&obs)))));
    let mut t = cartpole_learner(vec![64, 64], 64);
    c.bench_function("act_b1_trainer", |b| b.iter(|| black_box(t.act_greedy(black_box(&obs)).unwrap())));

    // The Nature-CNN update as `bellman bench dqn` times it (speed.rs): target max, online forward, Huber loss,
    // backward, clip_grad_norm 10 and Adam, on u8 frames uploaded each time.
    let cnn = NetSpec { arch: Arch::NatureCnn, obs_shape: vec![4, 84, 84], hidden: vec![512], n_actions: 6, ..spec };
    let mut g = c.benchmark_group("cnn");
    g.sample_size(10);
    for (name, kernels) in [("nature_cnn_update_b32", true), ("nature_cnn_update_b32_candle_conv2d", false)] {
        let mut online = QNetwork::new(&cnn, &mut rand_pcg::Pcg64::seed_from_u64(0), &Device::Cpu).unwrap();
        let mut target = QNetwork::new(&cnn, &mut rand_pcg::Pcg64::seed_from_u64(1), &Device::Cpu).unwrap();
        online.set_cpu_kernels(kernels).unwrap();
        target.set_cpu_kernels(kernels).unwrap();
        let vars = online.vars();
        let mut opt = Optim::adam(vars.clone(), 1e-4, 1e-8).unwrap();
        let frames: Vec<u8> = (0..32 * 4 * 84 * 84).map(|i| (i * 7 % 256) as u8).collect();
        let actions: Vec<u32> = (0..32).map(|i| i % 6).collect();
        g.bench_function(name, |b| {
            b.iter(|| {
                let x = Tensor::from_slice(&frames, (32, 4, 84, 84), &Device::Cpu).unwrap();
                let a = Tensor::from_slice(&actions, 32, &Device::Cpu).unwrap();
                let y = target.forward(&x).unwrap().max(1).unwrap().detach();
                let q = online.forward(&x).unwrap();
                let (loss, _) = td_loss(&q, &a, &y, None, LossKind::Huber).unwrap();
                black_box(opt.clip_and_step(&mut loss.backward().unwrap(), &vars, 10.0).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
