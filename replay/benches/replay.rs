//! Replay benchmarks: push throughput, uniform sampling from full 1M buffers (CartPole-sized observations and
//! Atari frame stacks, as full stacks or frame windows), prioritised sample + priority update.
//!
//! `cargo bench -p bellman-replay --bench replay` runs the CartPole-sized and prioritised groups; the Atari group
//! runs only with `BELLMAN_BENCH_ATARI_CAP=1000000` (a full 1,000,000-transition frame buffer, about 7.4 GB of
//! RAM; a smaller number uses fewer transitions). Filter groups with the usual criterion arguments, e.g.
//! `-- uniform_cartpole`. With `BELLMAN_BENCH_CPU_TIME=1` (Linux) the benches measure the benchmark thread's
//! on-CPU time instead of wall-clock time (for a machine shared with other jobs).
use std::hint::black_box;
use std::time::Duration;

use bellman_replay::{Batch, FlatStorage, PrioritizedReplayBuffer, ReplayBuffer, Transition, WindowBatch};
use criterion::Criterion;
use criterion::measurement::Measurement;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

const CAP: usize = 1_000_000;
const FRAME: usize = 84 * 84;

fn cartpole_buffer() -> ReplayBuffer<FlatStorage<f32, i64>> {
    let mut buf = ReplayBuffer::flat::<f32, i64>(CAP, &[4], 1).unwrap();
    let mut rng = Pcg64::seed_from_u64(0);
    let mut o = [0f32; 4];
    for i in 0..CAP {
        let n: [f32; 4] = rng.random();
        buf.push(&Transition {
            obs: &o,
            action: &[(i % 2) as i64],
            reward: 1.0,
            next_obs: &n,
            terminated: i % 200 == 199,
            truncated: false,
            discount: 0.99,
        })
        .unwrap();
        o = n;
    }
    buf
}

/// Plays Atari-like episodes of 1,000 steps with Gymnasium's reset padding; frames are distinct (a counter in the
/// first bytes over random content drawn from a small pool, so filling is fast).
fn fill_atari<F: FnMut(&Transition<'_, u8, i64>)>(n: usize, mut push: F) {
    let mut rng = Pcg64::seed_from_u64(1);
    let pool: Vec<u8> = (0..FRAME * 64).map(|_| rng.random()).collect();
    let mut frame_no = 0u64;
    let mut new_frame = |buf: &mut [u8]| {
        let k = (frame_no % 64) as usize;
        buf.copy_from_slice(&pool[k * FRAME..(k + 1) * FRAME]);
        buf[..8].copy_from_slice(&frame_no.to_le_bytes());
        frame_no += 1;
    };
    let mut obs = vec![0u8; 4 * FRAME];
    let mut next = vec![0u8; 4 * FRAME];
    let reset = |obs: &mut Vec<u8>, new_frame: &mut dyn FnMut(&mut [u8])| {
        new_frame(&mut obs[..FRAME]);
        let (first, rest) = obs.split_at_mut(FRAME);
        for c in rest.chunks_exact_mut(FRAME) {
            c.copy_from_slice(first);
        }
    };
    reset(&mut obs, &mut new_frame);
    for i in 0..n {
        next[..3 * FRAME].copy_from_slice(&obs[FRAME..]);
        new_frame(&mut next[3 * FRAME..]);
        let end = i % 1000 == 999;
        push(&Transition {
            obs: &obs,
            action: &[(i % 6) as i64],
            reward: 0.0,
            next_obs: &next,
            terminated: end,
            truncated: false,
            discount: 0.99,
        });
        if end {
            reset(&mut obs, &mut new_frame);
        } else {
            std::mem::swap(&mut obs, &mut next);
        }
    }
}

fn bench_push<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let mut g = c.benchmark_group(format!("{prefix}push"));
    g.measurement_time(Duration::from_secs(3)).sample_size(10);
    g.throughput(criterion::Throughput::Elements(10_000));
    g.bench_function("cartpole_10k", |b| {
        let mut buf = ReplayBuffer::flat::<f32, i64>(100_000, &[4], 1).unwrap();
        let o = [0.5f32; 4];
        let t = Transition {
            obs: &o,
            action: &[1],
            reward: 1.0,
            next_obs: &o,
            terminated: false,
            truncated: false,
            discount: 0.99,
        };
        b.iter(|| {
            for _ in 0..10_000 {
                buf.push(black_box(&t)).unwrap();
            }
        })
    });
    g.bench_function("atari_frames_10k", |b| {
        let mut buf = ReplayBuffer::frame_stack::<i64>(100_000, 4, &[84, 84], 1).unwrap();
        b.iter(|| {
            fill_atari(10_000, |t| {
                buf.push(t).unwrap();
            })
        })
    });
    g.bench_function("atari_frames_10k_generate_only", |b| {
        b.iter(|| {
            fill_atari(10_000, |t| {
                black_box(t);
            })
        })
    });
    g.finish();
}

fn bench_uniform_cartpole<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let buf = cartpole_buffer();
    let mut g = c.benchmark_group(format!("{prefix}uniform_cartpole_1M"));
    g.measurement_time(Duration::from_secs(3));
    for bs in [32, 256] {
        let mut rng = Pcg64::seed_from_u64(2);
        let mut batch = Batch::new();
        g.bench_function(format!("sample_{bs}"), |b| b.iter(|| buf.sample(bs, &mut rng, &mut batch).unwrap()));
    }
    g.finish();
}

fn bench_prioritized<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let storage = FlatStorage::<f32, i64>::new(CAP, &[4], 1).unwrap();
    let mut per = PrioritizedReplayBuffer::new(storage, 0.6, 1e-6).unwrap();
    let mut rng = Pcg64::seed_from_u64(3);
    for i in 0..CAP {
        let o: [f32; 4] = rng.random();
        per.push(&Transition {
            obs: &o,
            action: &[(i % 2) as i64],
            reward: 1.0,
            next_obs: &o,
            terminated: false,
            truncated: false,
            discount: 0.99,
        })
        .unwrap();
    }
    // spread the priorities as after some training
    let idx: Vec<usize> = (0..CAP).collect();
    let td: Vec<f32> = (0..CAP).map(|_| rng.random_range(0.0f32..10.0)).collect();
    per.update_priorities(&idx, &td).unwrap();
    let mut g = c.benchmark_group(format!("{prefix}prioritized_cartpole_1M"));
    g.measurement_time(Duration::from_secs(3));
    for bs in [32, 512] {
        let mut batch = Batch::new();
        let td: Vec<f32> = (0..bs).map(|_| rng.random_range(0.0f32..10.0)).collect();
        let mut idx = vec![0usize; bs];
        g.bench_function(format!("sample_update_{bs}"), |b| {
            b.iter(|| {
                per.sample(bs, 0.4, &mut rng, &mut batch).unwrap();
                idx.copy_from_slice(&batch.indices);
                per.update_priorities(&idx, &td).unwrap();
            })
        });
    }
    g.finish();
}

fn bench_uniform_atari<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    // Opt-in: the full-size buffer takes ~7.4 GB, too much to allocate by accident on a shared machine.
    let Some(cap) = std::env::var("BELLMAN_BENCH_ATARI_CAP").ok().and_then(|s| s.parse::<usize>().ok()) else {
        eprintln!("uniform_atari skipped: set BELLMAN_BENCH_ATARI_CAP=1000000 (about 7.4 GB of RAM) to run it");
        return;
    };
    let mut buf = ReplayBuffer::frame_stack::<i64>(cap, 4, &[84, 84], 1).unwrap();
    let start = std::time::Instant::now();
    fill_atari(cap, |t| {
        buf.push(t).unwrap();
    });
    eprintln!(
        "atari buffer: {} transitions in {:.1} s, memory_bytes {} ({:.2} GB), frames stored {}",
        buf.len(),
        start.elapsed().as_secs_f64(),
        buf.memory_bytes(),
        buf.memory_bytes() as f64 / 1e9,
        buf.storage().frames_stored()
    );
    let mut g = c.benchmark_group(format!("{prefix}uniform_atari_{}k", cap / 1000));
    g.measurement_time(Duration::from_secs(3));
    for bs in [32, 256] {
        let mut rng = Pcg64::seed_from_u64(4);
        let mut batch = Batch::new();
        g.bench_function(format!("sample_{bs}"), |b| b.iter(|| buf.sample(bs, &mut rng, &mut batch).unwrap()));
        let mut rng = Pcg64::seed_from_u64(4);
        let mut window = WindowBatch::new();
        g.bench_function(format!("sample_window_{bs}"), |b| {
            b.iter(|| buf.sample_window(bs, &mut rng, &mut window).unwrap())
        });
    }
    // The memory bound: one contiguous copy of the bytes a window batch of 32 writes (32 x 5 frames), from a
    // 1 GiB source at a rotating offset (never in cache). `sample_window_32` cannot beat this; it also pays
    // for 160 scattered frames (page and TLB misses) instead of one stream.
    let n = 32 * 5 * FRAME;
    let src = vec![1u8; 1 << 30];
    let mut dst = vec![0u8; n];
    let mut off = 0usize;
    g.throughput(criterion::Throughput::Bytes(n as u64));
    g.bench_function("memcpy_32x5_frames", |b| {
        b.iter(|| {
            off = (off + n + 4096) % (src.len() - n);
            dst.copy_from_slice(&src[off..off + n]);
            black_box(&dst);
        })
    });
    // Two threads gathering the 32 random 5-frame windows, 16 each (a persistent helper woken by a barrier: no
    // thread start per iteration). Wall time only: with on-CPU time it would count one thread. On the 2-core dev
    // box this was no faster than one thread (docs/BENCHMARKS.md, Replay): the memory system, not the core, is
    // the bound.
    if prefix.is_empty() {
        let windows = (src.len() - 5 * FRAME) / FRAME;
        let mut rng = Pcg64::seed_from_u64(5);
        let (h0, h1) = dst.split_at_mut(16 * 5 * FRAME);
        let copy_rows = |dst: &mut [u8], starts: &[usize]| {
            for (r, &f) in starts.iter().enumerate() {
                dst[r * 5 * FRAME..(r + 1) * 5 * FRAME].copy_from_slice(&src[f * FRAME..(f + 5) * FRAME]);
            }
        };
        let go = std::sync::Barrier::new(2);
        let done = std::sync::Barrier::new(2);
        let starts = std::sync::Mutex::new([0usize; 32]);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                loop {
                    go.wait();
                    if stop.load(std::sync::atomic::Ordering::Acquire) {
                        break;
                    }
                    let s = *starts.lock().unwrap();
                    copy_rows(h1, &s[16..]);
                    done.wait();
                }
            });
            g.bench_function("gather_32x5_frames_2_threads", |b| {
                b.iter(|| {
                    let mut s = [0usize; 32];
                    for x in s.iter_mut() {
                        *x = rng.random_range(0..windows);
                    }
                    *starts.lock().unwrap() = s;
                    go.wait();
                    copy_rows(h0, &s[..16]);
                    done.wait();
                    black_box(&h0);
                })
            });
            stop.store(true, std::sync::atomic::Ordering::Release);
            go.wait();
        });
        let mut rng = Pcg64::seed_from_u64(5);
        g.bench_function("gather_32x5_frames_1_thread", |b| {
            b.iter(|| {
                for r in 0..32 {
                    let f = rng.random_range(0..windows);
                    dst[r * 5 * FRAME..(r + 1) * 5 * FRAME].copy_from_slice(&src[f * FRAME..(f + 5) * FRAME]);
                }
                black_box(&dst);
            })
        });
    }
    g.finish();
}

/// Every bench of this file, under the measurement `bellman_benchkit::main` picks (`BELLMAN_BENCH_CPU_TIME=1`:
/// on-CPU time, ids prefixed `cpu/`).
struct All;

impl bellman_benchkit::Benches for All {
    fn run<M: Measurement>(&self, c: &mut Criterion<M>, prefix: &str) {
        bench_push(c, prefix);
        bench_uniform_cartpole(c, prefix);
        bench_prioritized(c, prefix);
        bench_uniform_atari(c, prefix);
    }
}

fn main() {
    bellman_benchkit::main(All);
}
