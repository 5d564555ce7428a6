//! `bellman train --resume` with the real agents: a run stopped at an arbitrary step (mid-episode, as Ctrl-C
//! does), or crashed after a periodic checkpoint, continues bit-identically: its `episodes.csv` and `metrics.csv`
//! equal the uninterrupted run's but for the wall-time columns. Without a saved replay buffer the resume works and
//! says that it is not exact.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bellman_agents::trainer::{Checkpoint, EvalResult, Reporter, ResumeReport, Trainer};
use bellman_experiments::config::ExperimentConfig;
use bellman_experiments::progress::ProgressMode;
use bellman_experiments::runlog::{self, Summary};
use bellman_experiments::runner::{self, RunOptions};

fn opts(out: &Path) -> RunOptions {
    RunOptions { out: out.to_path_buf(), progress: ProgressMode::Quiet, plot: false, ..Default::default() }
}

/// A real agent whose run is stopped at step `at` as Ctrl-C stops it (the stop flag is set while the agent
/// trains, when it reports that step), or that fails at step `at` (a crash between checkpoints).
struct Interrupt {
    inner: Box<dyn Trainer>,
    at: u64,
    stop: Option<Arc<AtomicBool>>,
}

/// Forwards to the runner's reporter and sets the stop flag once the agent reports step `at`.
struct StopAt<'a> {
    inner: &'a mut dyn Reporter,
    at: u64,
    stop: &'a AtomicBool,
}

impl Reporter for StopAt<'_> {
    fn episode(&mut self, e: &bellman_agents::trainer::EpisodeRecord) {
        self.inner.episode(e);
    }
    fn metrics(&mut self, m: &bellman_agents::trainer::TrainMetrics) {
        self.inner.metrics(m);
    }
    fn progress(&mut self, step: u64) {
        self.inner.progress(step);
        if step >= self.at {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
    fn stop_requested(&self) -> bool {
        self.inner.stop_requested()
    }
}

impl Trainer for Interrupt {
    fn steps_done(&self) -> u64 {
        self.inner.steps_done()
    }
    fn train(&mut self, until: u64, rep: &mut dyn Reporter) -> bellman_agents::Result<()> {
        match &self.stop {
            Some(stop) => self.inner.train(until, &mut StopAt { inner: rep, at: self.at, stop }),
            None => {
                self.inner.train(until.min(self.at), rep)?;
                if self.inner.steps_done() >= self.at {
                    return Err(bellman_agents::AgentError::Unsupported("simulated crash".into()));
                }
                Ok(())
            }
        }
    }
    fn evaluate(&mut self, episodes: usize, seed: u64) -> bellman_agents::Result<EvalResult> {
        self.inner.evaluate(episodes, seed)
    }
    fn checkpoint(&self) -> bellman_agents::Result<Checkpoint> {
        self.inner.checkpoint()
    }
    fn restore(&mut self, ckpt: &Checkpoint) -> bellman_agents::Result<()> {
        self.inner.restore(ckpt)
    }
    fn resume(&mut self, ckpt: &Checkpoint, replay: Option<&Path>) -> bellman_agents::Result<ResumeReport> {
        self.inner.resume(ckpt, replay)
    }
    fn replay_bytes(&self) -> Option<u64> {
        self.inner.replay_bytes()
    }
    fn save_replay(&self, path: &Path) -> bellman_agents::Result<bool> {
        self.inner.save_replay(path)
    }
}

/// Trains `cfg` in `out` with the real agent, stopped (`ctrl_c`) or crashed at step `at`.
fn run_cut(cfg: &ExperimentConfig, out: &Path, at: u64, ctrl_c: bool) -> anyhow::Result<Summary> {
    let o = opts(out);
    let stop = o.stop.clone();
    let build = move |c: &ExperimentConfig, d: &str| -> anyhow::Result<Box<dyn Trainer>> {
        let inner = runner::build_agent(c, d)?;
        Ok(Box::new(Interrupt { inner, at, stop: ctrl_c.then(|| stop.clone()) }))
    };
    runner::train(cfg, &o, &build)
}

/// `episodes.csv` without `wall_time`.
fn episodes(dir: &Path) -> Vec<(u64, u64, f64, u64, usize)> {
    runlog::read_episodes(&dir.join("episodes.csv"))
        .unwrap()
        .iter()
        .map(|e| (e.step, e.episode, e.ret, e.length, e.actor))
        .collect()
}

/// `metrics.csv` lines without `steps_per_sec` (column 4).
fn metrics(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    text.lines()
        .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != 4).map(|(_, f)| f).collect::<Vec<_>>().join(","))
        .collect()
}

const DQN: &str = r#"
name = "cp"
env = "CartPole-v1"
total_steps = 3000
[eval]
every_steps = 1000
episodes = 3
[checkpoint]
every_steps = 700
[agent]
kind = "dqn"
hidden = [32]
learning_starts = 200
batch_size = 32
buffer_size = 5000
train_freq = 4
gradient_steps = 1
target_update_interval = 100
metrics_every = 250
"#;

fn dqn(sets: &[&str]) -> ExperimentConfig {
    ExperimentConfig::resolve(DQN, &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

/// The uninterrupted run of `cfg` in `tmp/full`.
fn full_run(cfg: &ExperimentConfig, tmp: &Path) -> (PathBuf, Summary) {
    let s = runner::train(cfg, &opts(&tmp.join("full")), &runner::build_agent).unwrap();
    (tmp.join("full").join(&cfg.name).join(format!("seed-{}", cfg.seed)), s)
}

fn assert_same_run(cut: &Path, full: &Path, s2: &Summary, sf: &Summary) {
    assert_eq!(episodes(cut), episodes(full));
    assert_eq!(metrics(cut), metrics(full));
    assert_eq!((s2.total_steps, s2.episodes, s2.solved_at_step), (sf.total_steps, sf.episodes, sf.solved_at_step));
    assert_eq!(s2.final_eval, sf.final_eval);
    assert_eq!(s2.best_eval, sf.best_eval);
    // the final weights too
    let w = |d: &Path| std::fs::read(d.join("checkpoints/last.safetensors")).unwrap();
    assert_eq!(w(cut), w(full));
}

#[test]
fn dqn_stopped_mid_episode_resumes_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = dqn(&[]);
    let (full, sf) = full_run(&cfg, tmp.path());
    let at = 1234;
    // no episode ends at the stopping step: it is mid-episode
    assert!(episodes(&full).iter().all(|e| e.0 != at));
    let s = run_cut(&cfg, &tmp.path().join("cut"), at, true).unwrap();
    assert!(s.interrupted && s.total_steps == at);
    let cut = tmp.path().join("cut/cp/seed-0");
    // CartPole's 5000-transition buffer is a few hundred kB: saved by default with the final `last`
    assert!(cut.join("checkpoints/last.replay").is_file());
    let s2 = runner::resume(&cut, &[], &opts(&tmp.path().join("cut")), &runner::build_agent).unwrap();
    assert_eq!(s2.resumes.len(), 1);
    assert!(s2.resumes[0].exact && s2.resumes[0].step == at, "{:?}", s2.resumes);
    assert_same_run(&cut, &full, &s2, &sf);
    let written: Summary = Summary::read(&cut.join("summary.json")).unwrap();
    assert_eq!(written.resumes, s2.resumes);
}

#[test]
fn dqn_crashed_after_a_periodic_checkpoint_resumes_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    // n-step returns, prioritised replay, two envs: every piece of state that must survive
    // save_replay = true: the buffer goes with every `last`, the periodic ones included (by default only with the
    // final one)
    let cfg = dqn(&[
        "agent.n_step=3",
        "agent.prioritized=true",
        "agent.n_envs=2",
        "agent.double_dqn=true",
        "checkpoint.save_replay=true",
    ]);
    let (full, sf) = full_run(&cfg, tmp.path());
    // the crash comes 100 steps after the periodic checkpoint at 1400, whose rows are in the logs
    let e = run_cut(&cfg, &tmp.path().join("cut"), 1500, false).unwrap_err();
    assert!(format!("{e:#}").contains("simulated crash"), "{e:#}");
    let cut = tmp.path().join("cut/cp/seed-0");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cut.join("checkpoints/last.json")).unwrap()).unwrap();
    assert_eq!(meta["step"], 1400);
    assert!(episodes(&cut).iter().any(|e| e.0 > 1400), "rows after the checkpoint are in the logs, to be cut");
    let s2 = runner::resume(&cut, &[], &opts(&tmp.path().join("cut")), &runner::build_agent).unwrap();
    assert!(s2.resumes[0].exact, "{:?}", s2.resumes);
    assert_same_run(&cut, &full, &s2, &sf);
}

#[test]
fn dqn_resume_without_saved_replay_works_and_says_it_is_not_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = dqn(&["checkpoint.save_replay=false"]);
    let (full, _) = full_run(&cfg, tmp.path());
    let at = 1234;
    run_cut(&cfg, &tmp.path().join("cut"), at, true).unwrap();
    let cut = tmp.path().join("cut/cp/seed-0");
    assert!(!cut.join("checkpoints/last.replay").exists());
    let s2 = runner::resume(&cut, &[], &opts(&tmp.path().join("cut")), &runner::build_agent).unwrap();
    assert_eq!(s2.total_steps, 3000);
    let r = &s2.resumes[0];
    assert!(!r.exact && r.step == at, "{r:?}");
    assert!(r.notes.iter().any(|n| n.contains("replay buffer was not saved")), "{r:?}");
    let written = std::fs::read_to_string(cut.join("summary.json")).unwrap();
    assert!(written.contains("\"exact\": false") && written.contains("replay buffer was not saved"), "{written}");
    // the rows up to the checkpoint are the uninterrupted run's; learning paused after it, so the rest differs
    let (c, f) = (metrics(&cut), metrics(&full));
    let upto = |m: &[String]| -> Vec<String> {
        m.iter().skip(1).filter(|l| l.split(',').next().unwrap().parse::<u64>().unwrap() <= at).cloned().collect()
    };
    assert_eq!(upto(&c), upto(&f));
    assert_ne!(c, f);
}

#[test]
fn tabular_stopped_mid_episode_resumes_bit_identically() {
    let text = r#"
name = "fl"
env = "FrozenLake-v1"
total_steps = 4000
[eval]
every_steps = 1000
episodes = 5
[agent]
kind = "tabular"
alpha = 0.3
epsilon = 0.2
"#;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ExperimentConfig::resolve(text, &[]).unwrap();
    let (full, sf) = full_run(&cfg, tmp.path());
    let ends: Vec<u64> = episodes(&full).iter().map(|e| e.0).collect();
    // a step inside an episode of at least 3 steps (slippery FrozenLake: the env's generator is mid-stream)
    let at = (1700..2000).find(|s| !ends.contains(s) && !ends.contains(&(s - 1)) && !ends.contains(&(s - 2))).unwrap();
    run_cut(&cfg, &tmp.path().join("cut"), at, true).unwrap();
    let cut = tmp.path().join("cut/fl/seed-0");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cut.join("checkpoints/last.json")).unwrap()).unwrap();
    assert!(meta["agent"]["episode_in_progress"]["len"].as_u64().unwrap() >= 2, "{meta}");
    let s2 = runner::resume(&cut, &[], &opts(&tmp.path().join("cut")), &runner::build_agent).unwrap();
    assert!(s2.resumes[0].exact, "{:?}", s2.resumes);
    assert_eq!(episodes(&cut), episodes(&full));
    assert_eq!(metrics(&cut), metrics(&full));
    assert_eq!(s2.final_eval, sf.final_eval);
}

#[test]
fn a_truncated_replay_file_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = dqn(&["total_steps=600", "checkpoint.save_replay=true"]);
    run_cut(&cfg, tmp.path(), 450, true).unwrap();
    let dir = tmp.path().join("cp/seed-0");
    let p = dir.join("checkpoints/last.replay");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!("{:#}", runner::resume(&dir, &[], &opts(tmp.path()), &runner::build_agent).unwrap_err());
    assert!(e.contains("last.replay") && e.contains("truncated"), "{e}");
    // same size, wrong content (another run's buffer): the agent's own check names the file
    let mut junk = bytes.clone();
    junk[..8].copy_from_slice(b"NOTBELLM");
    std::fs::write(&p, &junk).unwrap();
    let e = format!("{:#}", runner::resume(&dir, &[], &opts(tmp.path()), &runner::build_agent).unwrap_err());
    assert!(e.contains("last.replay"), "{e}");
    std::fs::remove_file(&p).unwrap();
    let e = format!("{:#}", runner::resume(&dir, &[], &opts(tmp.path()), &runner::build_agent).unwrap_err());
    assert!(e.contains("last.replay"), "{e}");
}

#[test]
fn by_default_periodic_checkpoints_leave_the_buffer_out_and_a_crash_resume_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = dqn(&["total_steps=1600"]);
    run_cut(&cfg, tmp.path(), 1500, false).unwrap_err();
    let dir = tmp.path().join("cp/seed-0");
    assert!(dir.join("checkpoints/last.json").is_file() && !dir.join("checkpoints/last.replay").exists());
    let s = runner::resume(&dir, &[], &opts(tmp.path()), &runner::build_agent).unwrap();
    assert!(!s.resumes[0].exact && s.resumes[0].step == 1400, "{:?}", s.resumes);
    // the final `last` carries the buffer: extending the finished run is exact
    assert!(dir.join("checkpoints/last.replay").is_file());
    let s = runner::resume(&dir, &["total_steps=1700".into()], &opts(tmp.path()), &runner::build_agent).unwrap();
    assert!(s.resumes[1].exact && s.resumes[1].step == 1600, "{:?}", s.resumes);
}
