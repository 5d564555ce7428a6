//! The `bellman` command-line tool: see `bellman --help`.
use mimalloc::MiMalloc;

// mimalloc: candle's CPU training step is markedly faster with it (shared/GPU.md, measured).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    bellman_experiments::cli::main()
}
