//! The `bellman` command-line tool: see `bellman --help`.
use mimalloc::MiMalloc;

// mimalloc: candle's CPU training step is markedly faster with it (shared/GPU.md, measured).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // candle 0.11 reads /proc/cpuinfo on every CPU matmul unless RAYON_NUM_THREADS is set (shared/GPU.md:
        // MLP forward 90-120 us -> 2.6 us). One thread by default: DQN's matrices are small and candle's rayon
        // split costs more than it gains (docs/GPU.md, measured on a 16-core machine: CartPole-DQN training 5,300
        // env steps/s with 1 thread, 670 with 16; the Nature-CNN update 141 ms with 1 thread, 133 ms with 16).
        // Parallel seeds (`--seeds`), actors and Atari env workers are threads of their own. Set
        // RAYON_NUM_THREADS to override. SAFETY: first statement of main, before any thread is spawned, so nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    bellman_experiments::cli::main()
}
