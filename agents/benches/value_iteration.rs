//! Value iteration on a 1000 x 1000 maze (1,000,000 states, 4 actions, about 20% walls, one goal, reward -1 per
//! step, gamma 0.99, tolerance 1e-6): time per synchronous sweep and to convergence, serial and on all cores,
//! plus the machine's copy bandwidth for the memory-bandwidth bound. scripts/bench_numpy_vi.py solves the same
//! maze (same wall hash) with numpy; docs/BENCHMARKS.md has the figures.
//!
//! `cargo bench -p bellman-agents --bench value_iteration` (add `-- sweep` or `-- converge` to pick a group).
//! `BELLMAN_VI_SIDE=300` shrinks the maze for a quick look; `BELLMAN_VI_REPORT=1` first prints the model size, the
//! sweep count and V(start) (the numpy script prints the same two figures).
use std::hint::black_box;
use std::time::Duration;

use bellman_agents::tabular::planning::{CompiledMdp, Sweep, ViOptions, value_iteration};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// SplitMix64 (Steele, Lea and Flood 2014), the wall hash the numpy script uses too.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Cell `i` is a wall when `splitmix64(i ^ 0x5EED) % 5 == 0` (20%), except the start (0) and the goal (last).
fn is_wall(i: usize, n: usize) -> bool {
    i != 0 && i != n - 1 && splitmix64(i as u64 ^ 0x5EED).is_multiple_of(5)
}

/// The maze as a compiled model. Actions left, down, right, up (FrozenLake's order); a move off the grid or into
/// a wall stays put; every move costs -1; entering the goal (bottom-right) is terminal; the goal and the walls
/// are absorbing zero-reward states (GridWorld's convention), so their value is 0.
fn maze(side: usize) -> CompiledMdp {
    let n = side * side;
    let goal = n - 1;
    let mut b = CompiledMdp::builder(n, 4).unwrap();
    for s in 0..n {
        let (r, c) = (s / side, s % side);
        for a in 0..4 {
            if s == goal || is_wall(s, n) {
                b.push(1.0, s, 0.0, true).unwrap();
            } else {
                let t = match a {
                    0 if c > 0 => s - 1,
                    1 if r + 1 < side => s + side,
                    2 if c + 1 < side => s + 1,
                    3 if r > 0 => s - side,
                    _ => s,
                };
                let t = if is_wall(t, n) { s } else { t };
                b.push(1.0, t, -1.0, t == goal).unwrap();
            }
            b.end_action().unwrap();
        }
    }
    b.build().unwrap()
}

fn side() -> usize {
    std::env::var("BELLMAN_VI_SIDE").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

fn bench(c: &mut Criterion) {
    let side = side();
    let m = maze(side);
    let n = m.num_states();
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let all = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let opts = ViOptions { tol: 1e-6, ..ViOptions::new(0.99) };
    // The sweep count and V(start) of this maze, to compare with the numpy script's (BELLMAN_VI_REPORT=1).
    if std::env::var_os("BELLMAN_VI_REPORT").is_some() {
        let sol = value_iteration(&m, &opts).unwrap();
        eprintln!(
            "maze {side}x{side}: {n} states, {} outcomes, model {} bytes, {} sweeps to tol 1e-6, V(start) = {:.6}, \
             {threads} threads",
            m.num_outcomes(),
            m.model_bytes(),
            sol.sweeps,
            sol.values[0]
        );
    }

    let mut g = c.benchmark_group("copy_bandwidth");
    let src = vec![1.0f64; n * 8];
    let mut dst = vec![0.0f64; n * 8];
    // STREAM convention: a copy moves 2 x size bytes (read + write).
    g.throughput(Throughput::Bytes((src.len() * 8 * 2) as u64));
    g.bench_function("memcpy_64MB", |b| b.iter(|| dst.copy_from_slice(black_box(&src))));
    g.finish();
    drop((src, dst));

    let mut g = c.benchmark_group("vi_sweep");
    g.throughput(Throughput::Elements(n as u64));
    let v: Vec<f64> = (0..n).map(|s| -((s % 977) as f64) * 0.1).collect();
    let mut out = vec![0.0; n];
    g.bench_function("serial", |b| b.iter(|| m.bellman_sweep(black_box(&v), &mut out, 0.99, None).unwrap()));
    g.bench_function(format!("threads_{threads}"), |b| {
        b.iter(|| m.bellman_sweep(black_box(&v), &mut out, 0.99, Some(&all)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("vi_converge");
    g.sample_size(10).warm_up_time(Duration::from_millis(100)).measurement_time(Duration::from_secs(20));
    g.bench_function("serial", |b| b.iter(|| value_iteration(&m, &ViOptions { threads: 1, ..opts }).unwrap().sweeps));
    g.bench_function(format!("threads_{threads}"), |b| {
        b.iter(|| value_iteration(&m, &ViOptions { threads, ..opts }).unwrap().sweeps)
    });
    g.bench_function("in_place_serial", |b| {
        b.iter(|| value_iteration(&m, &ViOptions { sweep: Sweep::InPlace, ..opts }).unwrap().sweeps)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
