//! The runner: one loop drives every agent through [`Trainer`], writes the run directory, evaluates, checkpoints,
//! resumes, and stops cleanly on Ctrl-C.
//!
//! A run directory `<out>/<name>/seed-<seed>/` holds `config.toml`, `episodes.csv`, `monitor.csv`,
//! `metrics.csv`, `summary.json`, `checkpoints/{last,best}.{safetensors,json}` (and `.state.safetensors` when the
//! agent saves more than its weights, `last.replay` when the replay buffer is saved) and `reward.png`. It is
//! created complete (staged in a hidden directory and renamed) or not at all.
//!
//! Resuming ([`resume`]) is exact for agents that checkpoint their whole training state (DQN with its replay
//! buffer saved, tabular learners): the resumed run's `episodes.csv` and `metrics.csv` are those of the run that
//! was never interrupted, but for the wall-time columns. Each resume is recorded in `summary.json` (`resumes`),
//! with the agent's reasons when it is not exact, and printed.
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bellman_agents::trainer::{EpisodeRecord, EvalResult, Reporter, TrainMetrics, Trainer};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, RunnerState};
use crate::config::{AgentConfig, ExperimentConfig};
use crate::progress::{ProgressFactory, ProgressMode, RunProgress};
use crate::runlog::{EvalFigure, ResumeRecord, RunLogs, Summary, atomic_write};

/// Builds the agent of a config on a device (`cpu`, `cuda`, `cuda:N`). [`build_agent`] is the real one; tests
/// pass their own.
pub type BuildFn = dyn Fn(&ExperimentConfig, &str) -> Result<Box<dyn Trainer>> + Sync;

/// Builds the agent `cfg.agent` names, seeded with `cfg.seed`.
pub fn build_agent(cfg: &ExperimentConfig, device: &str) -> Result<Box<dyn Trainer>> {
    let env = cfg.env_setup();
    match &cfg.agent {
        #[cfg(feature = "atari")]
        AgentConfig::Dqn(c) if c.actors > 0 && bellman_agents::dqn::pixels::is_pixel_env(&cfg.env) => {
            // ALE/<Game>-v5 with --actors N: pixel actors feeding one learner (bellman_agents::actors::pixels).
            let t = bellman_agents::actors::pixels::ApexPixelTrainer::new(c, &c.apex, c.actors, &env, cfg.seed, device)
                .with_context(|| {
                    format!("cannot build the pixel DQN agent with {} actors for {}", c.actors, cfg.env)
                })?;
            Ok(Box::new(t))
        }
        #[cfg(feature = "atari")]
        AgentConfig::Dqn(c) if bellman_agents::dqn::pixels::is_pixel_env(&cfg.env) => {
            // ALE/<Game>-v5: u8 frame stacks, frame-deduplicated replay, Nature CNN (bellman_agents::dqn::pixels).
            let t = bellman_agents::dqn::pixels::PixelDqnTrainer::new(c, &env, cfg.seed, device)
                .with_context(|| format!("cannot build the pixel DQN agent for {}", cfg.env))?;
            Ok(Box::new(t))
        }
        #[cfg(not(feature = "atari"))]
        AgentConfig::Dqn(_) if cfg.env.starts_with("ALE/") => {
            bail!(
                "{}: Atari needs the cargo feature `atari` (cargo run --release --features atari -- train ...)",
                cfg.env
            )
        }
        AgentConfig::Dqn(c) if c.actors > 0 => {
            let t = bellman_agents::actors::ApexDqnTrainer::new(c, &c.apex, c.actors, &env, cfg.seed, device)
                .with_context(|| format!("cannot build the DQN agent with {} actors for {}", c.actors, cfg.env))?;
            Ok(Box::new(t))
        }
        AgentConfig::Dqn(c) => {
            let t = bellman_agents::dqn::DqnTrainer::new(c, &env, cfg.seed, device)
                .with_context(|| format!("cannot build the DQN agent for {}", cfg.env))?;
            Ok(Box::new(t))
        }
        AgentConfig::Tabular(c) => {
            if device != "cpu" {
                bail!("--device {device}: tabular agents run on the CPU only; use --device cpu");
            }
            let t = bellman_agents::tabular::TabularTrainer::new(c, &env, cfg.seed)
                .with_context(|| format!("cannot build the tabular agent for {}", cfg.env))?;
            Ok(Box::new(t))
        }
    }
}

/// How to run: where, on what device, how to show progress, and the stop flag Ctrl-C sets.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Root of the run directories (default `runs`).
    pub out: PathBuf,
    /// Device string handed to the agent.
    pub device: String,
    /// Replace an existing run directory.
    pub overwrite: bool,
    /// Progress display.
    pub progress: ProgressMode,
    /// Set to stop every run at its next safe point (a final checkpoint is written).
    pub stop: Arc<AtomicBool>,
    /// Write `reward.png` when a run finishes.
    pub plot: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            out: PathBuf::from("runs"),
            device: "cpu".into(),
            overwrite: false,
            progress: ProgressMode::Auto,
            stop: Arc::new(AtomicBool::new(false)),
            plot: true,
        }
    }
}

/// The run directory of `cfg` under `out`: `<out>/<name>/seed-<seed>`.
pub fn run_dir(out: &Path, cfg: &ExperimentConfig) -> PathBuf {
    out.join(&cfg.name).join(format!("seed-{}", cfg.seed))
}

/// Keeps the last 100 training returns for the progress display (as SB3's `ep_rew_mean`).
const RECENT: usize = 100;

struct RunReporter<'a> {
    logs: RunLogs,
    progress: RunProgress,
    state: RunnerState,
    stop: &'a AtomicBool,
    t0: Instant,
    wall_offset: f64,
    recent: VecDeque<f64>,
    recent_sum: f64,
    stride: u64,
    next_progress: u64,
    error: Option<anyhow::Error>,
}

impl RunReporter<'_> {
    fn wall(&self) -> f64 {
        self.wall_offset + self.t0.elapsed().as_secs_f64()
    }
    fn mean_recent(&self) -> Option<f64> {
        (!self.recent.is_empty()).then(|| self.recent_sum / self.recent.len() as f64)
    }
}

impl Reporter for RunReporter<'_> {
    fn episode(&mut self, e: &EpisodeRecord) {
        let wall = self.wall();
        if let Err(err) = self.logs.episode(e, wall) {
            self.error.get_or_insert(err);
        }
        self.state.episodes += 1;
        if self.recent.len() == RECENT
            && let Some(old) = self.recent.pop_front()
        {
            self.recent_sum -= old;
        }
        self.recent.push_back(e.ret);
        self.recent_sum += e.ret;
        let m = self.mean_recent();
        self.progress.set_stats(m, None);
    }
    fn metrics(&mut self, m: &TrainMetrics) {
        if let Err(err) = self.logs.metrics(m, None) {
            self.error.get_or_insert(err);
        }
        self.progress.set_stats(None, m.epsilon);
    }
    fn progress(&mut self, step: u64) {
        if step >= self.next_progress {
            self.next_progress = step + self.stride;
            self.progress.set_step(step);
        }
    }
    fn stop_requested(&self) -> bool {
        self.error.is_some() || self.stop.load(Ordering::Relaxed)
    }
}

fn figure(r: &EvalResult, seed: u64, step: u64) -> EvalFigure {
    EvalFigure { mean: r.mean(), std: r.std(), episodes: r.returns.len(), seed, step, returns: r.returns.clone() }
}

/// Trains one run (`cfg.seed`) in a new run directory under `opts.out` and returns its summary.
///
/// An existing run directory is an error unless `opts.overwrite`; the directory is created complete or not at
/// all (a read-only or full `out` leaves nothing behind).
pub fn train(cfg: &ExperimentConfig, opts: &RunOptions, build: &BuildFn) -> Result<Summary> {
    cfg.validate()?;
    let dir = run_dir(&opts.out, cfg);
    if dir.exists() && !opts.overwrite {
        bail!(
            "run directory {} exists: pass --resume {} to continue it or --overwrite to replace it",
            dir.display(),
            dir.display()
        );
    }
    let trainer = build(cfg, &opts.device)?;
    let t_start =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
    create_run_dir(&dir, cfg, t_start, opts.overwrite)?;
    let logs = RunLogs::resume(&dir, u64::MAX)?;
    drive(cfg, &dir, trainer, logs, RunnerState::default(), opts)
}

fn create_run_dir(dir: &Path, cfg: &ExperimentConfig, t_start: f64, overwrite: bool) -> Result<()> {
    let parent = dir.parent().context("run directory has no parent")?;
    let parent_existed = parent.is_dir();
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let stage = parent.join(format!(".seed-{}.tmp-{}", cfg.seed, std::process::id()));
    let res = (|| -> Result<()> {
        if stage.exists() {
            std::fs::remove_dir_all(&stage)?;
        }
        std::fs::create_dir(&stage).with_context(|| format!("cannot create {}", stage.display()))?;
        std::fs::create_dir(stage.join("checkpoints"))
            .with_context(|| format!("cannot create {}", stage.join("checkpoints").display()))?;
        atomic_write(&stage.join("config.toml"), cfg.to_toml()?.as_bytes())?;
        let mut logs = RunLogs::create(&stage, &cfg.env, t_start)?;
        logs.flush()?;
        drop(logs);
        if overwrite && dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {} (--overwrite)", dir.display()))?;
        }
        std::fs::rename(&stage, dir).with_context(|| format!("cannot create {}", dir.display()))
    })();
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&stage);
        if !parent_existed {
            // remove_dir only removes an empty directory: another seed's run is never touched
            let _ = std::fs::remove_dir(parent);
        }
    }
    res
}

/// Continues the run in `dir` from `checkpoints/last`: weights and the agent's training state, step counters,
/// the replay buffer when it was saved (`last.replay`), the logs (rows written after that checkpoint are cut, as
/// they will be played again), the best evaluation. `overrides` (`--set`) are applied to the stored config, e.g.
/// `total_steps=200000` to extend a finished run. Whether the continuation is exact is printed and recorded in
/// `summary.json` (`resumes`).
pub fn resume(dir: &Path, overrides: &[String], opts: &RunOptions, build: &BuildFn) -> Result<Summary> {
    let cfg_path = dir.join("config.toml");
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("cannot resume {}: no readable config.toml there", dir.display()))?;
    let cfg =
        ExperimentConfig::resolve(&text, overrides).map_err(|e| anyhow::anyhow!("{}: {e}", cfg_path.display()))?;
    let last = dir.join("checkpoints").join("last");
    let (meta, _, ckpt) = checkpoint::load(&last)?;
    let replay = checkpoint::replay_file(&last, &meta)?;
    if !overrides.is_empty() {
        atomic_write(&cfg_path, cfg.to_toml()?.as_bytes())?;
    }
    if meta.step >= cfg.total_steps {
        bail!(
            "{} is complete at step {} (total_steps = {}): raise it, e.g. --resume {} --set total_steps={}",
            dir.display(),
            meta.step,
            cfg.total_steps,
            dir.display(),
            cfg.total_steps * 2
        );
    }
    let mut trainer = build(&cfg, &opts.device)?;
    let report = trainer
        .resume(&ckpt, replay.as_deref())
        .with_context(|| format!("cannot restore {}", dir.join("checkpoints").join("last.safetensors").display()))?;
    let logs = RunLogs::resume(dir, meta.step)?;
    let mut state = meta.runner;
    state.resumes.push(ResumeRecord { step: meta.step, exact: report.exact, notes: report.notes.clone() });
    drive(&cfg, dir, trainer, logs, state, opts)
}

fn drive(
    cfg: &ExperimentConfig,
    dir: &Path,
    mut trainer: Box<dyn Trainer>,
    logs: RunLogs,
    state: RunnerState,
    opts: &RunOptions,
) -> Result<Summary> {
    let label = format!("{} seed {}", cfg.name, cfg.seed);
    let start_step = trainer.steps_done();
    let total = cfg.total_steps;
    let mut progress_factory = ProgressFactory::new(opts.progress);
    progress_factory.every = std::time::Duration::from_secs(10);
    let progress = progress_factory.run(&label, start_step, total);
    if let Some(r) = state.resumes.last().filter(|r| r.step == start_step) {
        progress.println(&if r.exact {
            format!("resumed at step {}: exact (continues as the uninterrupted run)", r.step)
        } else {
            format!("resumed at step {}: NOT exact: {}", r.step, r.notes.join("; "))
        });
    }
    let mut rep = RunReporter {
        logs,
        progress,
        wall_offset: state.wall_time,
        state,
        stop: &opts.stop,
        t0: Instant::now(),
        recent: VecDeque::with_capacity(RECENT),
        recent_sum: 0.0,
        stride: (total / 1000).max(1),
        next_progress: 0,
        error: None,
    };
    let ckpt_dir = dir.join("checkpoints");
    let threshold = cfg.reward_threshold();
    let eval_seed = cfg.seed.wrapping_add(cfg.eval.seed_offset);
    let next_after =
        |step: u64, every: u64| step.checked_div(every).map_or(u64::MAX, |k| (k + 1).saturating_mul(every));
    let mut next_eval = next_after(start_step, cfg.eval.every_steps);
    let ckpt_every = cfg.checkpoint.every_steps;
    let mut next_ckpt = next_after(start_step, ckpt_every);
    let mut last_eval: Option<EvalFigure> = None;
    let mut interrupted = false;
    let replay_bytes = trainer.replay_bytes();

    // Evaluates, logs, updates best/solved, writes `best` when it improves.
    let evaluate = |trainer: &mut Box<dyn Trainer>, rep: &mut RunReporter<'_>| -> Result<EvalFigure> {
        let step = trainer.steps_done();
        let r = trainer.evaluate(cfg.eval.episodes, eval_seed).context("evaluation failed")?;
        let fig = figure(&r, eval_seed, step);
        let secs = rep.t0.elapsed().as_secs_f64().max(1e-9);
        let m = TrainMetrics { step, steps_per_sec: Some((step - start_step) as f64 / secs), ..Default::default() };
        rep.logs.metrics(&m, Some((fig.mean, fig.std)))?;
        rep.progress.println(&format!(
            "step {step}: eval return {:.2} +- {:.2} ({} episodes)",
            fig.mean, fig.std, fig.episodes
        ));
        if rep.state.solved_at_step.is_none() && threshold.is_some_and(|t| fig.mean >= t) {
            rep.state.solved_at_step = Some(step);
        }
        if rep.state.best_eval.as_ref().is_none_or(|b| fig.mean > b.mean) {
            rep.state.best_eval = Some(fig.clone());
            rep.state.wall_time = rep.wall();
            checkpoint::save(
                &ckpt_dir,
                "best",
                cfg,
                &trainer.checkpoint()?,
                step,
                Some((fig.mean, fig.std)),
                &rep.state,
            )?;
        }
        Ok(fig)
    };

    loop {
        let step = trainer.steps_done();
        if step >= total {
            break;
        }
        let target = total.min(next_eval).min(next_ckpt);
        trainer.train(target, &mut rep).with_context(|| format!("training failed at step {}", trainer.steps_done()))?;
        if let Some(e) = rep.error.take() {
            return Err(e);
        }
        let now = trainer.steps_done();
        rep.progress.set_step(now);
        if opts.stop.load(Ordering::Relaxed) {
            interrupted = now < total;
            break;
        }
        if now <= step {
            bail!("the agent made no progress: train(until = {target}) returned at step {now}");
        }
        let mut save_last = false;
        if now >= next_eval {
            last_eval = Some(evaluate(&mut trainer, &mut rep)?);
            next_eval = next_after(now, cfg.eval.every_steps);
            save_last |= ckpt_every == 0;
        }
        if now >= next_ckpt {
            next_ckpt = next_after(now, ckpt_every);
            save_last = true;
        }
        if save_last && now < total {
            rep.state.wall_time = rep.wall();
            let with_replay = cfg.checkpoint.saves_replay(replay_bytes, false);
            checkpoint::save_trainer(&ckpt_dir, "last", cfg, trainer.as_ref(), now, None, &rep.state, with_replay)?;
            rep.logs.flush()?;
        }
    }

    let step = trainer.steps_done();
    let final_eval = if interrupted {
        rep.progress.println(&format!("interrupted at step {step}: writing the last checkpoint"));
        None
    } else {
        match last_eval.filter(|e| e.step == step) {
            Some(e) => Some(e),
            None => Some(evaluate(&mut trainer, &mut rep)?),
        }
    };
    rep.state.wall_time = rep.wall();
    let with_replay = cfg.checkpoint.saves_replay(trainer.replay_bytes(), true);
    checkpoint::save_trainer(&ckpt_dir, "last", cfg, trainer.as_ref(), step, None, &rep.state, with_replay)?;
    rep.logs.flush()?;
    rep.progress.finish();
    let wall = rep.state.wall_time;
    let summary = Summary {
        experiment: cfg.name.clone(),
        env_id: cfg.env.clone(),
        agent: cfg.agent.kind().into(),
        seed: cfg.seed,
        total_steps: step,
        episodes: rep.state.episodes,
        wall_time: wall,
        steps_per_sec: step as f64 / wall.max(1e-9),
        final_eval,
        best_eval: rep.state.best_eval.clone(),
        reward_threshold: threshold,
        solved_at_step: rep.state.solved_at_step,
        interrupted,
        resumes: rep.state.resumes.clone(),
        versions: checkpoint::versions(),
    };
    summary.write(&dir.join("summary.json"))?;
    if opts.plot && !interrupted {
        let png = dir.join("reward.png");
        if let Err(e) = crate::plot::plot(&[dir.to_path_buf()], &png, &crate::plot::PlotOptions::default()) {
            rep.progress.println(&format!("warning: cannot plot {}: {e:#}", png.display()));
        }
    }
    Ok(summary)
}

/// Trains `cfg` once per seed, the seeds in parallel threads (one run directory each). Returns each seed's result.
pub fn train_seeds(
    cfg: &ExperimentConfig,
    seeds: &[u64],
    opts: &RunOptions,
    build: &BuildFn,
) -> Vec<(u64, Result<Summary>)> {
    if seeds.len() == 1 {
        let mut c = cfg.clone();
        c.seed = seeds[0];
        return vec![(seeds[0], train(&c, opts, build))];
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .iter()
            .map(|&seed| {
                let mut c = cfg.clone();
                c.seed = seed;
                (seed, s.spawn(move || train(&c, opts, build)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(seed, h)| (seed, h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("seed {seed}: the run panicked")))))
            .collect()
    })
}

/// What `bellman eval` prints (and writes with `--json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The checkpoint evaluated.
    pub checkpoint: String,
    /// Experiment name.
    pub experiment: String,
    /// Env id.
    pub env_id: String,
    /// Training step of the checkpoint.
    pub step: u64,
    /// Seed of the first episode.
    pub seed: u64,
    /// Number of episodes.
    pub episodes: usize,
    /// Mean return.
    pub mean: f64,
    /// Population std of the returns.
    pub std: f64,
    /// Every episode's return.
    pub returns: Vec<f64>,
    /// Every episode's length.
    pub lengths: Vec<u64>,
}

/// Evaluates a checkpoint (a `.safetensors` or `.json` of one, or a run directory: its `checkpoints/last`).
/// Defaults: the config's `eval.episodes` episodes from seed `seed + eval.seed_offset`, which reproduces the
/// `final_eval` of `summary.json` for `last`.
pub fn evaluate_checkpoint(
    path: &Path,
    episodes: Option<usize>,
    seed: Option<u64>,
    device: &str,
    build: &BuildFn,
) -> Result<EvalReport> {
    let path = if path.is_dir() { path.join("checkpoints").join("last.safetensors") } else { path.to_path_buf() };
    let (meta, cfg, ckpt) = checkpoint::load(&path)?;
    let mut t = build(&cfg, device)?;
    t.restore(&ckpt).with_context(|| format!("cannot restore {}", path.display()))?;
    let n = episodes.unwrap_or(cfg.eval.episodes);
    if n == 0 {
        bail!("--episodes 0: expected at least 1");
    }
    let seed = seed.unwrap_or(cfg.seed.wrapping_add(cfg.eval.seed_offset));
    let r = t.evaluate(n, seed).context("evaluation failed")?;
    Ok(EvalReport {
        checkpoint: path.display().to_string(),
        experiment: meta.experiment,
        env_id: meta.env_id,
        step: meta.step,
        seed,
        episodes: n,
        mean: r.mean(),
        std: r.std(),
        returns: r.returns,
        lengths: r.lengths,
    })
}
