//! The `bellman` command-line tool: see `bellman --help`.
use mimalloc::MiMalloc;

// mimalloc: candle's CPU training step is markedly faster with it (shared/GPU.md, measured).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // candle 0.11 reads /proc/cpuinfo on every CPU matmul unless RAYON_NUM_THREADS is set (shared/GPU.md:
        // MLP forward 90-120 us -> 2.6 us; a test binary without it trained CartPole-DQN 8x slower, docs/GPU.md).
        // One thread by default: DQN's matrices are small and candle's rayon split gains little or costs (docs/GPU.md,
        // 16-core machine: the 4-256-256-2 MLP update 1.6 ms with 1 thread, 2.3 ms with 16). Parallel seeds
        // (`--seeds`), actors and Atari env workers are threads of their own. Set RAYON_NUM_THREADS to override
        // (the CPU Nature-CNN kernels use extra threads well: docs/BENCHMARKS.md). SAFETY: first statement of main, before any thread is spawned, so nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    bellman_experiments::cli::main()
}
