//! The `bellman` command-line tool: see `bellman --help`.
use mimalloc::MiMalloc;

// mimalloc: candle's CPU training step is markedly faster with it (shared/GPU.md, measured).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // candle 0.11 reads /proc/cpuinfo on every CPU matmul unless RAYON_NUM_THREADS is set (shared/GPU.md:
        // MLP forward 90-120 us -> 2.6 us). Set it to the available cores before any candle or rayon work.
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: first statement of main, before any thread is spawned, so nothing reads the environment
        // concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    bellman_experiments::cli::main()
}
