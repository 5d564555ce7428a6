//! The `bellman` command line: `train`, `eval`, `solve`, `plot`, `envs`, `config`, `completions`.
//!
//! ```
//! use clap::Parser;
//! use bellman_experiments::cli::{Cli, Command};
//! let cli = Cli::try_parse_from(["bellman", "train", "cartpole-dqn", "--seeds", "0..3", "--set", "seed=1"]).unwrap();
//! assert!(matches!(cli.command, Command::Train(_)));
//! ```
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::{self, ExperimentConfig};
use crate::plot::{Band, PlotOptions, XAxis};
use crate::progress::ProgressMode;
use crate::runner::{self, RunOptions};

/// Reinforcement learning in Rust: Gymnasium-style envs, tabular planning, DQN.
#[derive(Debug, Parser)]
#[command(name = "bellman", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train an experiment (a name from `bellman config list` or a .toml file), one run directory per seed.
    Train(TrainArgs),
    /// Evaluate a checkpoint greedily: mean +- std over N episodes.
    Eval(EvalArgs),
    /// Solve a tabular env exactly (value / policy iteration): value grid, greedy policy, heatmap.
    Solve(crate::solve::SolveArgs),
    /// Plot reward curves of runs: mean over seeds with a band, one line per experiment.
    Plot(PlotArgs),
    /// List every registered env with its spaces, time limit and reward threshold.
    Envs,
    /// Show or list experiment configs.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Measure speed: `bellman bench dqn --device cuda` times DQN updates and action selection.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Arguments of `bellman train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Experiment: an embedded name (`bellman config list`) or a path to a .toml file.
    #[arg(required_unless_present = "resume")]
    pub experiment: Option<String>,
    /// Override a config field: `--set key=value` (dotted paths, e.g. eval.episodes=10); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Seed of a single run (overrides the config's `seed`).
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Several seeds run in parallel threads: `A..B` (B excluded), `A..=B`, or a list `1,3,7`.
    #[arg(long, value_parser = parse_seeds)]
    pub seeds: Option<Seeds>,
    /// Root directory of the runs.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Device of neural agents: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: String,
    /// Actor threads (Ape-X style) for agents that support them: sets `agent.actors`.
    #[arg(long)]
    pub actors: Option<usize>,
    /// Replace existing run directories.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Continue the run in this run directory from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["seeds", "seed"])]
    pub resume: Option<PathBuf>,
    /// No progress bar and no log lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Plain log lines even on a terminal.
    #[arg(long, conflicts_with = "quiet")]
    pub plain: bool,
    /// Do not write reward.png at the end.
    #[arg(long)]
    pub no_plot: bool,
}

/// A list of seeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeds(pub Vec<u64>);

/// Parses `A..B`, `A..=B` or `1,3,7`.
///
/// ```
/// use bellman_experiments::cli::{parse_seeds, Seeds};
/// assert_eq!(parse_seeds("0..3").unwrap(), Seeds(vec![0, 1, 2]));
/// assert_eq!(parse_seeds("2..=3").unwrap(), Seeds(vec![2, 3]));
/// assert_eq!(parse_seeds("5,1").unwrap(), Seeds(vec![5, 1]));
/// assert!(parse_seeds("3..3").is_err());
/// ```
pub fn parse_seeds(s: &str) -> Result<Seeds, String> {
    let num =
        |x: &str| x.trim().parse::<u64>().map_err(|_| format!("'{x}' in --seeds {s} is not a non-negative integer"));
    let v: Vec<u64> = if let Some((a, b)) = s.split_once("..=") {
        (num(a)?..=num(b)?).collect()
    } else if let Some((a, b)) = s.split_once("..") {
        (num(a)?..num(b)?).collect()
    } else {
        s.split(',').map(num).collect::<Result<_, _>>()?
    };
    if v.is_empty() {
        return Err(format!("--seeds {s} is empty; write A..B with A < B, e.g. 0..5"));
    }
    if v.len() > 1024 {
        return Err(format!("--seeds {s} gives {} seeds; at most 1024", v.len()));
    }
    let mut sorted = v.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != v.len() {
        return Err(format!("--seeds {s} repeats a seed"));
    }
    Ok(Seeds(v))
}

/// Checks `cpu`, `cuda`, `cuda:N`.
pub fn parse_device(s: &str) -> Result<String, String> {
    let ok = s == "cpu" || s == "cuda" || s.strip_prefix("cuda:").is_some_and(|n| n.parse::<usize>().is_ok());
    if ok { Ok(s.to_string()) } else { Err(format!("'{s}': expected cpu, cuda or cuda:N")) }
}

/// Arguments of `bellman eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A checkpoint (`.../checkpoints/best.safetensors` or its `.json`) or a run directory (its last checkpoint).
    pub checkpoint: PathBuf,
    /// Episodes (default: the config's eval.episodes).
    #[arg(long)]
    pub episodes: Option<usize>,
    /// Seed of the first episode (default: the run's seed + eval.seed_offset, as its evaluations).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device of neural agents: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: String,
    /// Write the result as JSON: to FILE, or to stdout instead of the text line when no FILE is given.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<PathBuf>,
}

/// Arguments of `bellman plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run directories (`runs/x/seed-0`) or experiment directories (`runs/x`, all its seeds).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output file, .png or .svg.
    #[arg(short, long, default_value = "curves.png")]
    pub output: PathBuf,
    /// Moving-average window over episodes (1 = raw).
    #[arg(long, default_value_t = 10)]
    pub smooth: usize,
    /// X axis.
    #[arg(long, value_enum, default_value_t = XAxis::Steps)]
    pub x: XAxis,
    /// Band around the mean over seeds.
    #[arg(long, value_enum, default_value_t = Band::Std)]
    pub band: Band,
    /// Image size WIDTHxHEIGHT in pixels.
    #[arg(long, default_value = "1024x640", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Title (default: the env ids).
    #[arg(long)]
    pub title: Option<String>,
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("'{s}': expected WIDTHxHEIGHT, e.g. 1024x640");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?))
}

/// Subcommands of `bellman bench`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time one DQN gradient update (CartPole MLPs, Nature CNN) and one greedy action on a device; prints medians
    /// in microseconds. Compare with `scripts/bench_torch_dqn.py` (same workloads in PyTorch). On the CPU, set
    /// `RAYON_NUM_THREADS=1` for the one-thread figures of docs/BENCHMARKS.md.
    Dqn {
        /// Device: cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu", value_parser = parse_device)]
        device: String,
        /// Timed iterations of each workload (default: 2000 for MLP updates, 20000 for actions, 30 for the CNN).
        #[arg(long)]
        iters: Option<usize>,
        /// Only these workloads (comma-separated names as printed), all by default.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
}

/// `bellman config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the resolved config (every default filled in, overrides applied) as TOML.
    Show {
        /// An embedded name or a .toml file.
        experiment: String,
        /// Override a field: `--set key=value`; repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// List the embedded experiments.
    List,
}

/// Installs a Ctrl-C handler: the first press sets `stop` (runs end at the next safe point with a final
/// checkpoint), a second one at least a second later exits at once with status 130. A second SIGINT within the
/// same second is ignored: `timeout -s INT` (GNU coreutils) signals the child and then its whole process group,
/// so one timeout would otherwise abort the run without its final checkpoint (seen on the GPU machine).
pub fn install_ctrlc(stop: Arc<AtomicBool>) -> Result<()> {
    let first = std::sync::OnceLock::<std::time::Instant>::new();
    ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            if first.get().is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
                return;
            }
            std::process::exit(130);
        }
        let _ = first.set(std::time::Instant::now());
        eprintln!("\nstopping at the next safe point (Ctrl-C again to abort at once)");
    })
    .context("cannot install the Ctrl-C handler")
}

fn train_cmd(a: &TrainArgs) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    install_ctrlc(stop.clone())?;
    let progress = if a.quiet {
        ProgressMode::Quiet
    } else if a.plain {
        ProgressMode::Plain
    } else {
        ProgressMode::Auto
    };
    let opts = RunOptions {
        out: a.out.clone(),
        device: a.device.clone(),
        overwrite: a.overwrite,
        progress,
        stop: stop.clone(),
        plot: !a.no_plot,
    };
    let mut sets = a.set.clone();
    if let Some(n) = a.actors {
        sets.push(format!("agent.actors={n}"));
    }
    let results = if let Some(dir) = &a.resume {
        vec![(0, runner::resume(dir, &sets, &opts, &runner::build_agent))]
    } else {
        let name = a.experiment.as_deref().context("an experiment name or .toml path is needed")?;
        if let Some(s) = a.seed {
            sets.push(format!("seed={s}"));
        }
        let cfg = ExperimentConfig::load(name, &sets)?;
        let seeds = a.seeds.clone().map(|s| s.0).unwrap_or_else(|| vec![cfg.seed]);
        runner::train_seeds(&cfg, &seeds, &opts, &runner::build_agent)
    };
    let mut failed = false;
    for (seed, r) in &results {
        match r {
            Ok(s) => {
                let dir = match &a.resume {
                    Some(d) => d.clone(),
                    None => opts.out.join(&s.experiment).join(format!("seed-{}", s.seed)),
                };
                let eval = s
                    .final_eval
                    .as_ref()
                    .map(|e| format!("eval return {:.2} +- {:.2} over {} episodes", e.mean, e.std, e.episodes))
                    .unwrap_or_else(|| "interrupted".into());
                let solved = s.solved_at_step.map(|x| format!(", solved at step {x}")).unwrap_or_default();
                // The best evaluation's weights are checkpoints/best (SB3's EvalCallback best_model): say so when
                // the final policy is worse, as DQN's often is after solving.
                let best = match (&s.best_eval, &s.final_eval) {
                    (Some(b), Some(f)) if b.mean > f.mean => {
                        format!(", best {:.2} at step {} (checkpoints/best)", b.mean, b.step)
                    }
                    _ => String::new(),
                };
                if !a.quiet {
                    println!(
                        "{} seed {}: {} steps in {:.1}s ({:.0} steps/s), {eval}{best}{solved} -> {}",
                        s.experiment,
                        s.seed,
                        s.total_steps,
                        s.wall_time,
                        s.steps_per_sec,
                        dir.display()
                    );
                }
            }
            Err(e) => {
                failed = true;
                if results.len() > 1 {
                    eprintln!("error: seed {seed}: {e:#}");
                } else {
                    eprintln!("error: {e:#}");
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else if stop.load(Ordering::SeqCst) {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes a line to stdout; a closed pipe (`bellman envs | head`) is an error `main` ends quietly on.
fn say(line: impl std::fmt::Display) -> Result<()> {
    writeln!(std::io::stdout().lock(), "{line}").map_err(anyhow::Error::from)
}

fn eval_cmd(a: &EvalArgs) -> Result<()> {
    let r = runner::evaluate_checkpoint(&a.checkpoint, a.episodes, a.seed, &a.device, &runner::build_agent)?;
    let json = serde_json::to_string_pretty(&r)?;
    match a.json.as_deref() {
        Some(p) if p == std::path::Path::new("-") => say(json)?,
        Some(p) => {
            crate::runlog::atomic_write(p, json.as_bytes())?;
            say(format_args!("{} +- {} ({} episodes, seed {}) -> {}", r.mean, r.std, r.episodes, r.seed, p.display()))?;
        }
        None => say(format_args!(
            "{}: {} at step {}: mean return {} +- {} over {} episodes (seed {})",
            r.checkpoint, r.env_id, r.step, r.mean, r.std, r.episodes, r.seed
        ))?,
    }
    Ok(())
}

fn envs_cmd() -> Result<()> {
    let mut out = std::io::stdout().lock();
    let specs = bellman_envs::registry::specs();
    if specs.is_empty() {
        writeln!(out, "(no environments registered)")?;
    }
    for s in specs {
        let limit = s.max_episode_steps.map(|n| n.to_string()).unwrap_or_else(|| "none".into());
        let thr = s.reward_threshold.map(|t| t.to_string()).unwrap_or_else(|| "none".into());
        match bellman_envs::registry::make(s.id) {
            Ok(env) => writeln!(
                out,
                "{}\n  observation: {}\n  action:      {}\n  time limit: {limit}, reward threshold: {thr}",
                s.id,
                env.observation_space(),
                env.action_space()
            )?,
            Err(e) => writeln!(out, "{}\n  (cannot build: {e})\n  time limit: {limit}, reward threshold: {thr}", s.id)?,
        }
        if !s.options.is_empty() {
            writeln!(out, "  options:")?;
            for o in s.options {
                writeln!(out, "    {}={}: {}", o.key, o.default, o.help)?;
            }
        }
    }
    Ok(())
}

fn plot_cmd(a: &PlotArgs) -> Result<()> {
    let opts = PlotOptions {
        smooth: a.smooth.max(1),
        x: a.x,
        band: a.band,
        size: a.size,
        title: a.title.clone(),
        ..Default::default()
    };
    crate::plot::plot(&a.paths, &a.output, &opts)?;
    say(a.output.display())?;
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Train(a) => return train_cmd(&a),
        Command::Eval(a) => eval_cmd(&a)?,
        Command::Solve(a) => crate::solve::run(&a)?,
        Command::Plot(a) => plot_cmd(&a)?,
        Command::Envs => envs_cmd()?,
        Command::Config(ConfigCommand::Show { experiment, set }) => {
            let text = ExperimentConfig::load(&experiment, &set)?.to_toml()?;
            say(text.trim_end())?;
        }
        Command::Config(ConfigCommand::List) => {
            for n in config::named() {
                say(n)?;
            }
        }
        Command::Bench(BenchCommand::Dqn { device, iters, only }) => bench_dqn_cmd(&device, iters, &only)?,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "bellman", &mut std::io::stdout());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_dqn_cmd(device: &str, iters: Option<usize>, only: &[String]) -> Result<()> {
    use bellman_agents::dqn::speed::{Workload, measure};
    let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
    if let Some(bad) = only.iter().find(|o| !names.contains(&o.as_str())) {
        anyhow::bail!("unknown workload '{bad}'; known: {}", names.join(", "));
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "?".into());
    say(format_args!("device {device}, RAYON_NUM_THREADS={threads}"))?;
    say(format_args!("{:<24} {:>12} {:>12} {:>12} {:>7}", "workload", "median_us", "mean_us", "max_us", "iters"))?;
    for w in Workload::ALL.into_iter().filter(|w| only.is_empty() || only.iter().any(|o| o == w.name())) {
        let t = measure(w, device, iters.unwrap_or(w.default_iters()))
            .with_context(|| format!("benchmark {} on {device}", w.name()))?;
        say(format_args!(
            "{:<24} {:>12.1} {:>12.1} {:>12.1} {:>7}",
            w.name(),
            t.median_us,
            t.mean_us,
            t.max_us,
            t.iters
        ))?;
    }
    Ok(())
}

/// Entry point of the `bellman` binary: parses the arguments, runs, prints `error: ...` on failure.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
