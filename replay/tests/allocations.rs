//! The hot paths allocate nothing once warm: `push` and `sample` of the uniform and prioritised buffers (flat and
//! frame storage), `sample_window` and `update_priorities`, counted by a global allocator wrapper.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bellman_replay::{Batch, FlatStorage, PrioritizedReplayBuffer, ReplayBuffer, Transition, WindowBatch};
use rand::SeedableRng;
use rand_pcg::Pcg64;

struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts (per thread, so parallel tests do
// not disturb each other).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// Pushes `steps` transitions into both buffers, sampling a batch from each and updating the sampled priorities
/// after every push.
fn churn(
    uni: &mut ReplayBuffer<FlatStorage<f32, i64>>,
    per: &mut PrioritizedReplayBuffer<FlatStorage<f32, i64>>,
    steps: usize,
    rng: &mut Pcg64,
    batches: &mut (Batch<f32, i64>, Batch<f32, i64>),
) {
    let td = [0.5f32; 32];
    for t in 0..steps {
        let (o, n) = ([t as f32; 4], [t as f32 + 1.0; 4]);
        let tr = Transition {
            obs: &o,
            action: &[(t % 3) as i64],
            reward: 1.0,
            next_obs: &n,
            terminated: t % 50 == 49,
            truncated: false,
            discount: 0.99,
        };
        uni.push(&tr).unwrap();
        per.push(&tr).unwrap();
        uni.sample(32, rng, &mut batches.0).unwrap();
        per.sample(32, 0.4, rng, &mut batches.1).unwrap();
        per.update_priorities(&batches.1.indices, &td).unwrap();
    }
}

#[test]
fn warm_flat_push_sample_and_update_allocate_nothing() {
    // The counter works: a heap allocation is seen.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 16]))) >= 1);
    let mut rng = Pcg64::seed_from_u64(3);
    let mut uni = ReplayBuffer::flat::<f32, i64>(64, &[4], 1).unwrap();
    let mut per = PrioritizedReplayBuffer::new(FlatStorage::new(64, &[4], 1).unwrap(), 0.6, 1e-6).unwrap();
    let mut batches = (Batch::new(), Batch::new());
    // Warm up: the batches and the update scratch grow to their final size once.
    churn(&mut uni, &mut per, 40, &mut rng, &mut batches);
    // Then 300 more pushes (the 64-slot buffers wrap several times), samples and updates.
    let n = allocations_during(|| churn(&mut uni, &mut per, 300, &mut rng, &mut batches));
    assert_eq!(n, 0, "{n} allocations in 300 warm push/sample/update rounds");
    assert_eq!((uni.len(), per.len()), (64, 64));
}

#[test]
fn warm_frame_stack_push_and_sample_allocate_nothing() {
    const K: usize = 4;
    const F: usize = 16; // 4x4 frames
    // A stream of frames; the stack at step t is frames t..t+K (a FrameStackObservation without episode ends).
    let frames: Vec<u8> = (0..(600 + K + 1) * F).map(|i| (i / F % 251) as u8).collect();
    let mut buf = ReplayBuffer::frame_stack::<i64>(128, K, &[4, 4], 1).unwrap();
    let mut batch = Batch::new();
    let mut window = WindowBatch::new();
    let mut rng = Pcg64::seed_from_u64(4);
    let mut push_and_sample = |range: std::ops::Range<usize>, buf: &mut ReplayBuffer<_>| {
        for t in range {
            let tr = Transition {
                obs: &frames[t * F..(t + K) * F],
                action: &[0i64],
                reward: 0.0,
                next_obs: &frames[(t + 1) * F..(t + 1 + K) * F],
                terminated: false,
                truncated: false,
                discount: 0.99,
            };
            buf.push(&tr).unwrap();
            buf.sample(32, &mut rng, &mut batch).unwrap();
            buf.sample_window(32, &mut rng, &mut window).unwrap();
        }
    };
    push_and_sample(0..200, &mut buf);
    let n = allocations_during(|| push_and_sample(200..600, &mut buf));
    assert_eq!(n, 0, "{n} allocations in 400 warm frame-stack push/sample/sample_window rounds");
    assert_eq!(buf.len(), 128);
}
