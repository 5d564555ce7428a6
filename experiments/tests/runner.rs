//! The runner end to end with a fake, deterministic, tiny `Trainer`: run directory layout, config round trip,
//! resume, checkpoints, eval, SB3 monitor files, plots, bad input, and Ctrl-C (SIGINT to a child process).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bellman_agents::AgentError;
use bellman_agents::trainer::{Checkpoint, EpisodeRecord, EvalResult, Reporter, TrainMetrics, Trainer};
use bellman_experiments::config::ExperimentConfig;
use bellman_experiments::plot::{self, PlotOptions};
use bellman_experiments::progress::ProgressMode;
use bellman_experiments::runlog::{self, Summary};
use bellman_experiments::runner::{self, RunOptions};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// A fake agent: a "skill" `w` that grows 0.01 per step, noisy episode returns from a splitmix64 stream, and an
/// evaluation that is a pure function of `w` and the seed.
struct Fake {
    steps: u64,
    episode: u64,
    rng: u64,
    w: f64,
    ep_len: u64,
    ep_ret: f64,
    ep_target: u64,
    /// Sets the stop flag when `steps` reaches this (a simulated Ctrl-C).
    stop_at: Option<(u64, Arc<AtomicBool>)>,
    delay: Duration,
}

impl Fake {
    fn new(seed: u64) -> Self {
        Fake {
            steps: 0,
            episode: 0,
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
            w: 0.0,
            ep_len: 0,
            ep_ret: 0.0,
            ep_target: 0,
            stop_at: None,
            delay: Duration::ZERO,
        }
    }
    fn next(&mut self) -> u64 {
        // splitmix64 (Steele, Lea and Flood 2014)
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn tensors(name: &str, v: f64) -> Vec<u8> {
    let bytes = v.to_le_bytes();
    let view = TensorView::new(Dtype::F64, vec![1], &bytes).unwrap();
    safetensors::tensor::serialize([(name, view)], None).unwrap()
}

fn read_tensor(bytes: &[u8], name: &str) -> Result<f64, AgentError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| AgentError::Checkpoint(e.to_string()))?;
    let t = st.tensor(name).map_err(|e| AgentError::Checkpoint(e.to_string()))?;
    let b: [u8; 8] = t.data().try_into().map_err(|_| AgentError::Checkpoint("bad length".into()))?;
    Ok(f64::from_le_bytes(b))
}

impl Trainer for Fake {
    fn steps_done(&self) -> u64 {
        self.steps
    }
    fn train(&mut self, until: u64, rep: &mut dyn Reporter) -> bellman_agents::Result<()> {
        while self.steps < until && !rep.stop_requested() {
            if self.ep_target == 0 {
                self.ep_target = 3 + self.next() % 5;
            }
            self.steps += 1;
            self.w += 0.01;
            self.ep_len += 1;
            self.ep_ret += self.w + (self.next() % 10) as f64 * 0.1;
            if self.ep_len == self.ep_target {
                rep.episode(&EpisodeRecord {
                    step: self.steps,
                    episode: self.episode,
                    ret: self.ep_ret,
                    len: self.ep_len,
                    ..Default::default()
                });
                self.episode += 1;
                (self.ep_len, self.ep_ret, self.ep_target) = (0, 0.0, 0);
            }
            if self.steps.is_multiple_of(25) {
                rep.metrics(&TrainMetrics {
                    step: self.steps,
                    loss: Some(1.0 / self.steps as f64),
                    epsilon: Some(0.5),
                    ..Default::default()
                });
            }
            rep.progress(self.steps);
            if let Some((at, flag)) = &self.stop_at
                && self.steps >= *at
            {
                flag.store(true, Ordering::SeqCst);
            }
            if !self.delay.is_zero() {
                std::thread::sleep(self.delay);
            }
        }
        Ok(())
    }
    fn evaluate(&mut self, episodes: usize, seed: u64) -> bellman_agents::Result<EvalResult> {
        let returns: Vec<f64> =
            (0..episodes as u64).map(|i| (self.w * 10.0).floor() + ((seed + i) % 3) as f64).collect();
        Ok(EvalResult { lengths: vec![10; episodes], returns })
    }
    fn checkpoint(&self) -> bellman_agents::Result<Checkpoint> {
        Ok(Checkpoint {
            weights: tensors("w", self.w),
            train_state: Some(tensors("ep_ret", self.ep_ret)),
            meta: serde_json::json!({
                "steps": self.steps, "episode": self.episode, "rng": self.rng,
                "ep_len": self.ep_len, "ep_target": self.ep_target,
            }),
        })
    }
    fn restore(&mut self, c: &Checkpoint) -> bellman_agents::Result<()> {
        self.w = read_tensor(&c.weights, "w")?;
        if let Some(s) = &c.train_state {
            self.ep_ret = read_tensor(s, "ep_ret")?;
            let g = |k: &str| c.meta.get(k).and_then(|v| v.as_u64()).ok_or_else(|| AgentError::Checkpoint(k.into()));
            self.steps = g("steps")?;
            self.episode = g("episode")?;
            self.rng = g("rng")?;
            self.ep_len = g("ep_len")?;
            self.ep_target = g("ep_target")?;
        }
        Ok(())
    }
}

fn build(cfg: &ExperimentConfig, _device: &str) -> anyhow::Result<Box<dyn Trainer>> {
    Ok(Box::new(Fake::new(cfg.seed)))
}

const FIXTURE: &str = r#"
name = "fake"
env = "Fake-v0"
seed = 3
total_steps = 200
[eval]
every_steps = 50
episodes = 3
reward_threshold = 12.0
[agent]
kind = "tabular"
"#;

fn cfg(sets: &[&str]) -> ExperimentConfig {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    ExperimentConfig::resolve(FIXTURE, &sets).unwrap()
}

fn opts(out: &Path) -> RunOptions {
    RunOptions { out: out.to_path_buf(), progress: ProgressMode::Quiet, plot: false, ..Default::default() }
}

/// `episodes.csv` without the wall-time column (the only column that depends on the machine).
fn episodes_no_time(dir: &Path) -> Vec<(u64, u64, f64, u64)> {
    runlog::read_episodes(&dir.join("episodes.csv"))
        .unwrap()
        .iter()
        .map(|e| (e.step, e.episode, e.ret, e.length))
        .collect()
}

#[test]
fn run_directory_has_every_file_and_the_summary_is_right() {
    let tmp = tempfile::tempdir().unwrap();
    let o = RunOptions { plot: true, ..opts(tmp.path()) };
    let s = runner::train(&cfg(&[]), &o, &build).unwrap();
    let dir = tmp.path().join("fake/seed-3");
    for f in [
        "config.toml",
        "episodes.csv",
        "metrics.csv",
        "monitor.csv",
        "summary.json",
        "reward.png",
        "checkpoints/last.safetensors",
        "checkpoints/last.state.safetensors",
        "checkpoints/last.json",
        "checkpoints/best.safetensors",
        "checkpoints/best.json",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    let leftovers: Vec<_> =
        std::fs::read_dir(tmp.path().join("fake")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "staging directories left behind: {leftovers:?}");
    // summary.json parses back (serde_json's default float parsing may differ in the last bit: compare those
    // two floats with a tolerance)
    let mut back = Summary::read(&dir.join("summary.json")).unwrap();
    assert!((back.wall_time - s.wall_time).abs() < 1e-9 && (back.steps_per_sec / s.steps_per_sec - 1.0).abs() < 1e-12);
    (back.wall_time, back.steps_per_sec) = (s.wall_time, s.steps_per_sec);
    assert_eq!(back, s);
    assert_eq!(s.total_steps, 200);
    assert!(!s.interrupted);
    // w = 0.01 * step; eval returns floor(10 w) + (1003 + i) % 3 for i = 0, 1, 2 -> mean floor(10 w) + 1.
    // Step 100: floor(10.0 or 9.99..) + 1 <= 11 < 12; step 150: 15 + 1 (or 14 + 1) >= 12.
    assert_eq!(s.solved_at_step, Some(150));
    let fe = s.final_eval.as_ref().unwrap();
    assert_eq!((fe.step, fe.episodes, fe.seed), (200, 3, 1003));
    assert!((fe.mean - 21.0).abs() <= 1.0 + 1e-9, "{}", fe.mean);
    assert!((fe.std - (2.0f64 / 3.0).sqrt()).abs() < 1e-12, "{}", fe.std);
    assert_eq!(s.best_eval.as_ref().unwrap().step, 200);
    let eps = runlog::read_episodes(&dir.join("episodes.csv")).unwrap();
    assert_eq!(s.episodes, eps.len() as u64);
    assert!(eps.windows(2).all(|w| w[0].step < w[1].step && w[0].episode + 1 == w[1].episode));
    // metrics: the agent's rows every 25 steps plus one eval row at 50, 100, 150, 200
    let mut r = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 8 + 4);
    let evals: Vec<&str> = rows.iter().filter(|r| !r[5].is_empty()).map(|r| &r[0]).collect::<Vec<_>>();
    assert_eq!(evals, ["50", "100", "150", "200"]);
}

#[test]
fn resolved_config_reruns_to_identical_episodes() {
    let tmp = tempfile::tempdir().unwrap();
    runner::train(&cfg(&["seed=5"]), &opts(&tmp.path().join("a")), &build).unwrap();
    let a = tmp.path().join("a/fake/seed-5");
    let text = std::fs::read_to_string(a.join("config.toml")).unwrap();
    let again = ExperimentConfig::resolve(&text, &[]).unwrap();
    assert_eq!(again, cfg(&["seed=5"]));
    runner::train(&again, &opts(&tmp.path().join("b")), &build).unwrap();
    let ea = episodes_no_time(&a);
    assert!(ea.len() > 20);
    assert_eq!(ea, episodes_no_time(&tmp.path().join("b/fake/seed-5")));
    // a different seed gives different episodes (the comparison can fail)
    runner::train(&cfg(&["seed=6"]), &opts(&tmp.path().join("a")), &build).unwrap();
    assert_ne!(ea, episodes_no_time(&tmp.path().join("a/fake/seed-6")));
}

#[test]
fn monitor_csv_follows_sb3_load_results_rules() {
    let tmp = tempfile::tempdir().unwrap();
    runner::train(&cfg(&[]), &opts(tmp.path()), &build).unwrap();
    let dir = tmp.path().join("fake/seed-3");
    let text = std::fs::read_to_string(dir.join("monitor.csv")).unwrap();
    let mut lines = text.lines();
    // stable_baselines3/common/monitor.py load_results: first line '#' + JSON with t_start, then pandas.read_csv
    // of a header r,l,t; t is added to t_start.
    let first = lines.next().unwrap();
    let header: serde_json::Value = serde_json::from_str(first.strip_prefix('#').unwrap()).unwrap();
    assert!(header["t_start"].as_f64().unwrap() > 1.6e9);
    assert_eq!(header["env_id"], "Fake-v0");
    assert_eq!(lines.next(), Some("r,l,t"));
    let (_, rows) = runlog::read_monitor(&dir.join("monitor.csv")).unwrap();
    let eps = runlog::read_episodes(&dir.join("episodes.csv")).unwrap();
    assert_eq!(rows.len(), eps.len());
    for (m, e) in rows.iter().zip(&eps) {
        assert!((m.r - e.ret).abs() < 1e-6 && m.l == e.length && (m.t - e.wall_time).abs() < 1e-6);
    }
    assert!(rows.windows(2).all(|w| w[0].t <= w[1].t));
}

#[test]
fn eval_of_saved_checkpoint_reproduces_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let s = runner::train(&cfg(&["eval.every_steps=0"]), &opts(tmp.path()), &build).unwrap();
    let dir = tmp.path().join("fake/seed-3");
    let fe = s.final_eval.unwrap();
    let r = runner::evaluate_checkpoint(&dir.join("checkpoints/last.safetensors"), None, None, "cpu", &build).unwrap();
    assert_eq!((r.mean, r.std, r.episodes, r.seed, r.step), (fe.mean, fe.std, fe.episodes, fe.seed, 200));
    assert_eq!(r.returns, fe.returns);
    // a run directory means its last checkpoint; another seed gives another figure
    let r2 = runner::evaluate_checkpoint(&dir, Some(3), Some(1004), "cpu", &build).unwrap();
    assert_ne!(r2.returns, fe.returns);
    // no periodic eval: the final one is the only one and sets best
    assert_eq!(s.best_eval.unwrap().step, 200);
}

#[test]
fn corrupt_or_truncated_checkpoints_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    runner::train(&cfg(&[]), &opts(tmp.path()), &build).unwrap();
    let ck = tmp.path().join("fake/seed-3/checkpoints");
    let w = ck.join("best.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() - 3]).unwrap();
    let e = format!("{:#}", runner::evaluate_checkpoint(&w, None, None, "cpu", &build).unwrap_err());
    assert!(e.contains("best.safetensors") && e.contains("truncated"), "{e}");
    // same length, garbage header
    let mut bad = bytes.clone();
    bad[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&w, &bad).unwrap();
    let e = format!("{:#}", runner::evaluate_checkpoint(&w, None, None, "cpu", &build).unwrap_err());
    assert!(e.contains("best.safetensors") && e.contains("not a valid safetensors"), "{e}");
    std::fs::write(ck.join("last.json"), "{\"format\": ").unwrap();
    let e = format!(
        "{:#}",
        runner::evaluate_checkpoint(&ck.join("last.safetensors"), None, None, "cpu", &build).unwrap_err()
    );
    assert!(e.contains("last.json"), "{e}");
    let e = format!(
        "{:#}",
        runner::evaluate_checkpoint(&ck.join("nothing.safetensors"), None, None, "cpu", &build).unwrap_err()
    );
    assert!(e.contains("nothing.json"), "{e}");
}

#[test]
fn existing_run_directory_is_refused_unless_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(&["total_steps=60"]);
    runner::train(&c, &opts(tmp.path()), &build).unwrap();
    let e = runner::train(&c, &opts(tmp.path()), &build).unwrap_err().to_string();
    assert!(e.contains("exists") && e.contains("--resume") && e.contains("--overwrite"), "{e}");
    let o = RunOptions { overwrite: true, ..opts(tmp.path()) };
    let s = runner::train(&c, &o, &build).unwrap();
    assert_eq!(s.total_steps, 60);
}

#[test]
fn unwritable_out_is_a_clear_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let e = format!("{:#}", runner::train(&cfg(&[]), &opts(&file.join("runs")), &build).unwrap_err());
    assert!(e.contains("cannot create") && e.contains("a-file"), "{e}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn interrupted_run_resumes_to_the_same_episodes() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(&[]);
    runner::train(&c, &opts(&tmp.path().join("full")), &build).unwrap();
    let full = tmp.path().join("full/fake/seed-3");

    let out = tmp.path().join("cut");
    let o = opts(&out);
    let stop = o.stop.clone();
    let interrupting = move |cfg: &ExperimentConfig, _d: &str| -> anyhow::Result<Box<dyn Trainer>> {
        let mut f = Fake::new(cfg.seed);
        f.stop_at = Some((117, stop.clone()));
        Ok(Box::new(f))
    };
    let s = runner::train(&c, &o, &interrupting).unwrap();
    assert!(s.interrupted && s.final_eval.is_none());
    assert_eq!(s.total_steps, 117);
    let cut = out.join("fake/seed-3");
    let e = runner::train(&c, &o, &build).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    let o2 = opts(&out);
    let s2 = runner::resume(&cut, &[], &o2, &build).unwrap();
    assert!(!s2.interrupted);
    assert_eq!(episodes_no_time(&cut), episodes_no_time(&full));
    let sf = Summary::read(&full.join("summary.json")).unwrap();
    assert_eq!((s2.total_steps, s2.episodes, s2.solved_at_step), (sf.total_steps, sf.episodes, sf.solved_at_step));
    assert_eq!(s2.final_eval.as_ref().unwrap().returns, sf.final_eval.as_ref().unwrap().returns);
    assert_eq!(
        std::fs::read(cut.join("monitor.csv")).unwrap().iter().filter(|&&b| b == b'\n').count(),
        2 + sf.episodes as usize
    );
    // a finished run cannot be resumed without a larger budget, which extends it
    let e = runner::resume(&cut, &[], &o2, &build).unwrap_err().to_string();
    assert!(e.contains("complete at step 200") && e.contains("total_steps="), "{e}");
    let s3 = runner::resume(&cut, &["total_steps=260".into()], &o2, &build).unwrap();
    assert_eq!(s3.total_steps, 260);
    assert!(std::fs::read_to_string(cut.join("config.toml")).unwrap().contains("total_steps = 260"));
}

#[test]
fn several_seeds_run_in_parallel_each_in_its_own_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let res = runner::train_seeds(&cfg(&["total_steps=80"]), &[0, 1, 2], &opts(tmp.path()), &build);
    assert_eq!(res.len(), 3);
    for (seed, r) in &res {
        let s = r.as_ref().unwrap();
        assert_eq!(s.seed, *seed);
        assert!(tmp.path().join(format!("fake/seed-{seed}/summary.json")).is_file());
    }
    let e0 = episodes_no_time(&tmp.path().join("fake/seed-0"));
    assert_ne!(e0, episodes_no_time(&tmp.path().join("fake/seed-1")));
}

fn variance(buf: &[u8]) -> f64 {
    let n = buf.len() as f64;
    let m = buf.iter().map(|&b| b as f64).sum::<f64>() / n;
    buf.iter().map(|&b| (b as f64 - m).powi(2)).sum::<f64>() / n
}

#[test]
fn plot_of_a_fixture_run_has_the_size_and_is_not_blank() {
    let tmp = tempfile::tempdir().unwrap();
    runner::train_seeds(&cfg(&[]), &[0, 1], &opts(tmp.path()), &build).into_iter().for_each(|(_, r)| {
        r.unwrap();
    });
    let exp: Vec<PathBuf> = vec![tmp.path().join("fake")];
    let png = tmp.path().join("curves.png");
    let o = PlotOptions { size: (640, 400), smooth: 5, ..Default::default() };
    plot::plot(&exp, &png, &o).unwrap();
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (640, 400));
    let v = variance(img.as_raw());
    // A white image has variance 0; axes, two bands, a line, a dashed threshold and text give far more.
    assert!(v > 200.0, "pixel variance {v}");
    // Text is really drawn (the embedded font): another title changes the pixels.
    let a = plot::render_rgb(&exp, &PlotOptions { title: Some("A".into()), ..o.clone() }).unwrap();
    let b = plot::render_rgb(&exp, &PlotOptions { title: Some("BBBB BBBB".into()), ..o.clone() }).unwrap();
    assert_eq!(a.len(), 640 * 400 * 3);
    assert!(a.iter().zip(&b).filter(|(x, y)| x != y).count() > 100);
    let curves = plot::curves(&exp, &o).unwrap();
    assert_eq!((curves.len(), curves[0].seeds), (1, 2));
    let svg = tmp.path().join("curves.svg");
    plot::plot(&[tmp.path().join("fake/seed-0")], &svg, &o).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg") && text.contains("fake (1 seed)") && text.contains("reward threshold 12"));
    let e = plot::plot(&exp, &tmp.path().join("x.jpg"), &o).unwrap_err().to_string();
    assert!(e.contains(".png or .svg"), "{e}");
    let e = plot::plot(&[tmp.path().to_path_buf()], &png, &o).unwrap_err().to_string();
    assert!(e.contains("neither a run directory"), "{e}");
}

/// Runs in a child process (see `ctrl_c_writes_a_final_checkpoint`): a slow run that waits for SIGINT.
#[test]
fn sigint_child_entry() {
    let Some(out) = std::env::var_os("BELLMAN_SIGINT_CHILD") else { return };
    let o = RunOptions { out: PathBuf::from(out), progress: ProgressMode::Plain, ..Default::default() };
    bellman_experiments::cli::install_ctrlc(o.stop.clone()).unwrap();
    let slow = |cfg: &ExperimentConfig, _d: &str| -> anyhow::Result<Box<dyn Trainer>> {
        let mut f = Fake::new(cfg.seed);
        f.delay = Duration::from_millis(2);
        Ok(Box::new(f))
    };
    let s = runner::train(&cfg(&["total_steps=1000000"]), &o, &slow).unwrap();
    assert!(s.interrupted);
}

#[test]
fn ctrl_c_writes_a_final_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["sigint_child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env("BELLMAN_SIGINT_CHILD", tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = tmp.path().join("fake/seed-3");
    let t0 = Instant::now();
    // wait until a few episodes are logged (the logs are flushed at each checkpoint: every 50 steps here)
    while !dir.join("checkpoints/last.json").is_file() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the child never checkpointed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Twice at once, as `timeout -s INT` does (child, then its process group): still one clean stop.
    for _ in 0..2 {
        let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
    let t1 = Instant::now();
    let code = loop {
        if let Some(c) = child.try_wait().unwrap() {
            break c;
        }
        assert!(t1.elapsed() < Duration::from_secs(30), "the child did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "child exit {code:?}");
    let s = Summary::read(&dir.join("summary.json")).unwrap();
    assert!(s.interrupted && s.total_steps < 1_000_000);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("checkpoints/last.json")).unwrap()).unwrap();
    assert_eq!(meta["step"].as_u64(), Some(s.total_steps));
    let eps = runlog::read_episodes(&dir.join("episodes.csv")).unwrap();
    assert_eq!(eps.len() as u64, s.episodes);
    assert!(eps.iter().all(|e| e.step <= s.total_steps));
    // and it resumes
    let o = RunOptions { plot: false, ..opts(tmp.path()) };
    let s2 =
        runner::resume(&dir, &["total_steps=".to_string() + &(s.total_steps + 30).to_string()], &o, &build).unwrap();
    assert_eq!(s2.total_steps, s.total_steps + 30);
}
