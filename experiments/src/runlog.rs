//! The files of a run directory: `episodes.csv`, `metrics.csv`, the SB3-compatible `monitor.csv`,
//! `summary.json`, and atomic writes.
//!
//! `monitor.csv` follows Stable-Baselines3's `Monitor` (stable_baselines3/common/monitor.py): a first line
//! `#{"t_start": <unix seconds>, "env_id": "<id>"}` (Python's `json.dumps` layout), a header `r,l,t`, then one row
//! per episode with the return, the length and the seconds since `t_start`, so SB3's `load_results` and rl-zoo's
//! plotting scripts read Bellman runs unchanged.
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bellman_agents::trainer::{EpisodeRecord, TrainMetrics};
use serde::{Deserialize, Serialize};

/// Header of `episodes.csv` (`actor`: which actor thread or sub-env played the episode; 0 for single actors).
pub const EPISODES_HEADER: [&str; 6] = ["step", "episode", "return", "length", "wall_time", "actor"];
/// Header of `metrics.csv`. `extra` holds the agent's further figures as `name=value;name=value`.
pub const METRICS_HEADER: [&str; 8] =
    ["step", "loss", "mean_q", "epsilon", "steps_per_sec", "eval_mean", "eval_std", "extra"];

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename. On any error the
/// temporary file is removed and the error names `path`; an existing `path` is left untouched.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("a.json");
/// bellman_experiments::runlog::atomic_write(&p, b"{}").unwrap();
/// assert_eq!(std::fs::read(&p).unwrap(), b"{}");
/// ```
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Rounds to 6 decimals, as SB3's `Monitor` writes `r` and `t`.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// Python's `json.dumps` of SB3's monitor header: `{"t_start": 1700000000.5, "env_id": "CartPole-v1"}`.
pub fn monitor_header_line(t_start: f64, env_id: &str) -> String {
    let id = serde_json::to_string(env_id).unwrap_or_else(|_| "\"\"".into());
    format!("#{{\"t_start\": {t_start:?}, \"env_id\": {id}}}")
}

/// The streaming logs of one run: `episodes.csv`, `monitor.csv` and `metrics.csv`, appended to.
pub struct RunLogs {
    dir: PathBuf,
    episodes: csv::Writer<BufWriter<File>>,
    monitor: csv::Writer<BufWriter<File>>,
    metrics: csv::Writer<BufWriter<File>>,
    t_start: f64,
}

impl std::fmt::Debug for RunLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLogs").field("dir", &self.dir).field("t_start", &self.t_start).finish()
    }
}

fn open_append(path: &Path, fresh: bool) -> Result<BufWriter<File>> {
    let f = if fresh { File::create(path) } else { OpenOptions::new().append(true).open(path) }
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok(BufWriter::new(f))
}

impl RunLogs {
    /// Creates the three files with their headers in `dir` (`t_start`: unix seconds of the run's start).
    pub fn create(dir: &Path, env_id: &str, t_start: f64) -> Result<Self> {
        let mut episodes = csv::Writer::from_writer(open_append(&dir.join("episodes.csv"), true)?);
        episodes.write_record(EPISODES_HEADER)?;
        let mut mon_file = open_append(&dir.join("monitor.csv"), true)?;
        writeln!(mon_file, "{}", monitor_header_line(t_start, env_id))?;
        let mut monitor = csv::Writer::from_writer(mon_file);
        monitor.write_record(["r", "l", "t"])?;
        let mut metrics = csv::Writer::from_writer(open_append(&dir.join("metrics.csv"), true)?);
        metrics.write_record(METRICS_HEADER)?;
        let mut logs = RunLogs { dir: dir.to_path_buf(), episodes, monitor, metrics, t_start };
        logs.flush()?;
        Ok(logs)
    }

    /// Reopens the files of an interrupted run for appending, first cutting every row logged after `step`
    /// (what a resumed run will log again): episodes with `step > step`, their `monitor.csv` rows, metrics rows.
    pub fn resume(dir: &Path, step: u64) -> Result<Self> {
        let eps = read_episodes_lenient(&dir.join("episodes.csv"))?;
        let kept: Vec<EpisodeRow> = eps.into_iter().filter(|e| e.step <= step).collect();
        let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
        w.write_record(EPISODES_HEADER)?;
        for e in &kept {
            w.serialize(e)?;
        }
        atomic_write(&dir.join("episodes.csv"), &w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;

        let mon_path = dir.join("monitor.csv");
        let mon = std::fs::read_to_string(&mon_path).with_context(|| format!("cannot read {}", mon_path.display()))?;
        let first = mon.lines().next().unwrap_or_default();
        let t_start =
            parse_monitor_header(first).with_context(|| format!("{}: bad first line {first:?}", mon_path.display()))?.0;
        let mut text: String = mon.lines().take(2 + kept.len()).collect::<Vec<_>>().join("\n");
        text.push('\n');
        atomic_write(&mon_path, text.as_bytes())?;

        let met_path = dir.join("metrics.csv");
        let mut r = csv::Reader::from_path(&met_path).with_context(|| format!("cannot read {}", met_path.display()))?;
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(METRICS_HEADER)?;
        let recs: Vec<csv::Result<csv::StringRecord>> = r.records().collect();
        let n = recs.len();
        for (i, rec) in recs.into_iter().enumerate() {
            let rec = match rec {
                Ok(r) if r.len() == METRICS_HEADER.len() => r,
                // a partial last line (a full disk, a killed process) is dropped
                _ if i + 1 == n => break,
                Ok(_) => bail!("bad row {} in {}", i + 1, met_path.display()),
                Err(e) => return Err(e).with_context(|| format!("bad row in {}", met_path.display())),
            };
            if rec.get(0).and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s <= step) {
                w.write_record(&rec)?;
            }
        }
        atomic_write(&met_path, &w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;

        Ok(RunLogs {
            dir: dir.to_path_buf(),
            episodes: csv::Writer::from_writer(open_append(&dir.join("episodes.csv"), false)?),
            monitor: csv::Writer::from_writer(open_append(&mon_path, false)?),
            metrics: csv::Writer::from_writer(open_append(&met_path, false)?),
            t_start,
        })
    }

    /// Appends one finished episode (`wall_time`: seconds since the run started) to `episodes.csv` and
    /// `monitor.csv`.
    pub fn episode(&mut self, e: &EpisodeRecord, wall_time: f64) -> Result<()> {
        // Tuples serialize field by field into the writer's buffer: no allocation per episode.
        let t = round6(wall_time);
        self.episodes
            .serialize((e.step, e.episode, e.ret, e.len, t, e.actor))
            .with_context(|| format!("cannot write {}", self.dir.join("episodes.csv").display()))?;
        // SB3's Monitor (stable_baselines3/common/monitor.py) rounds r and t to 6 digits.
        self.monitor
            .serialize((round6(e.ret), e.len, t))
            .with_context(|| format!("cannot write {}", self.dir.join("monitor.csv").display()))?;
        Ok(())
    }

    /// Appends one metrics row (`eval`: mean and std when this row reports an evaluation).
    pub fn metrics(&mut self, m: &TrainMetrics, eval: Option<(f64, f64)>) -> Result<()> {
        let extra: Vec<String> = m.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.metrics
            .write_record(&[
                m.step.to_string(),
                fmt_opt(m.loss),
                fmt_opt(m.mean_q),
                fmt_opt(m.epsilon),
                fmt_opt(m.steps_per_sec),
                fmt_opt(eval.map(|e| e.0)),
                fmt_opt(eval.map(|e| e.1)),
                extra.join(";"),
            ])
            .with_context(|| format!("cannot write {}", self.dir.join("metrics.csv").display()))?;
        Ok(())
    }

    /// Flushes all three files to the OS.
    pub fn flush(&mut self) -> Result<()> {
        self.episodes
            .flush()
            .and_then(|_| self.monitor.flush())
            .and_then(|_| self.metrics.flush())
            .with_context(|| format!("cannot write the logs in {}", self.dir.display()))
    }

    /// Unix seconds at which the run started (`monitor.csv`'s `t_start`).
    pub fn t_start(&self) -> f64 {
        self.t_start
    }
}

/// One row of `episodes.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpisodeRow {
    /// Total env steps when the episode finished.
    pub step: u64,
    /// Episode index.
    pub episode: u64,
    /// Undiscounted return.
    #[serde(rename = "return")]
    pub ret: f64,
    /// Length in steps.
    pub length: u64,
    /// Seconds since the run started.
    pub wall_time: f64,
    /// The actor (or sub-env) that played it; 0 in files written before the column existed.
    #[serde(default)]
    pub actor: usize,
}

/// Reads `episodes.csv`.
pub fn read_episodes(path: &Path) -> Result<Vec<EpisodeRow>> {
    let mut r = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    r.deserialize().map(|row| row.with_context(|| format!("bad row in {}", path.display()))).collect()
}

/// Reads `episodes.csv`, dropping a partial last line (what a full disk or a killed process leaves).
fn read_episodes_lenient(path: &Path) -> Result<Vec<EpisodeRow>> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let rows: Vec<csv::Result<EpisodeRow>> = r.deserialize().collect();
    let n = rows.len();
    let mut out = Vec::with_capacity(n);
    for (i, row) in rows.into_iter().enumerate() {
        match row {
            Ok(e) => out.push(e),
            Err(_) if i + 1 == n => break,
            Err(e) => return Err(e).with_context(|| format!("bad row {} in {}", i + 1, path.display())),
        }
    }
    Ok(out)
}

/// One row of `monitor.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct MonitorRow {
    /// Return.
    pub r: f64,
    /// Length.
    pub l: u64,
    /// Seconds since `t_start`.
    pub t: f64,
}

/// Parses SB3's first line `#{"t_start": ..., "env_id": ...}` into `(t_start, env_id)`.
pub fn parse_monitor_header(line: &str) -> Result<(f64, String)> {
    let json = line.strip_prefix('#').context("monitor.csv must start with '#'")?;
    let v: serde_json::Value = serde_json::from_str(json).context("monitor.csv header is not JSON")?;
    let t = v.get("t_start").and_then(|x| x.as_f64()).context("monitor.csv header lacks t_start")?;
    let id = v.get("env_id").and_then(|x| x.as_str()).unwrap_or_default().to_string();
    Ok((t, id))
}

/// Reads `monitor.csv` as SB3's `load_results` does: the JSON first line, then a CSV with `r,l,t`.
pub fn read_monitor(path: &Path) -> Result<((f64, String), Vec<MonitorRow>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (first, rest) = text.split_once('\n').with_context(|| format!("{} is empty", path.display()))?;
    let header = parse_monitor_header(first).with_context(|| path.display().to_string())?;
    let mut r = csv::Reader::from_reader(rest.as_bytes());
    let rows: Result<Vec<MonitorRow>> =
        r.deserialize().map(|row| row.with_context(|| format!("bad row in {}", path.display()))).collect();
    Ok((header, rows?))
}

/// Mean and std of one evaluation, with where and how it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalFigure {
    /// Mean return.
    pub mean: f64,
    /// Population std of the returns (numpy's default, as SB3's `evaluate_policy`).
    pub std: f64,
    /// Number of episodes.
    pub episodes: usize,
    /// Seed of the first eval episode (then +1 per episode).
    pub seed: u64,
    /// Env steps of training when it ran.
    pub step: u64,
    /// Every episode's return.
    pub returns: Vec<f64>,
}

/// One `--resume` of a run: the checkpoint's step and whether the continuation is exact (bit-identical to the
/// uninterrupted run), with the agent's reasons when it is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRecord {
    /// Env steps of the checkpoint resumed from.
    pub step: u64,
    /// True when the resumed run continues bit-identically.
    pub exact: bool,
    /// What was not restored exactly (empty when exact).
    pub notes: Vec<String>,
}

/// `summary.json`: the final figures of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Experiment name.
    pub experiment: String,
    /// Env id.
    pub env_id: String,
    /// Agent kind.
    pub agent: String,
    /// The run's seed.
    pub seed: u64,
    /// Env steps done.
    pub total_steps: u64,
    /// Training episodes finished.
    pub episodes: u64,
    /// Seconds of training (summed over resumed sessions).
    pub wall_time: f64,
    /// Env steps per second over the whole run.
    pub steps_per_sec: f64,
    /// The final evaluation (None when the run was interrupted before it).
    pub final_eval: Option<EvalFigure>,
    /// The best periodic evaluation.
    pub best_eval: Option<EvalFigure>,
    /// The reward threshold used (config, else the env's registry threshold).
    pub reward_threshold: Option<f64>,
    /// First env step at which an evaluation mean reached the threshold.
    pub solved_at_step: Option<u64>,
    /// True when the run was stopped (Ctrl-C) before its budget.
    pub interrupted: bool,
    /// Every `--resume` of the run, in order (empty: never resumed); a resume that is not `exact` means the run
    /// differs from one that was never interrupted, and its `notes` say why.
    #[serde(default)]
    pub resumes: Vec<ResumeRecord>,
    /// Crate versions (`bellman`, and the agent's own).
    pub versions: serde_json::Value,
}

impl Summary {
    /// Reads `summary.json`.
    pub fn read(path: &Path) -> Result<Summary> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a valid summary", path.display()))
    }

    /// Writes `summary.json` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        atomic_write(path, serde_json::to_string_pretty(self)?.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_parse_back_and_resume_cuts_later_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut logs = RunLogs::create(dir.path(), "CartPole-v1", 1_700_000_000.25).unwrap();
        for i in 0..4u64 {
            let e =
                EpisodeRecord { step: 10 * (i + 1), episode: i, ret: i as f64 + 0.5, len: 10, ..Default::default() };
            logs.episode(&e, i as f64).unwrap();
            let m = TrainMetrics {
                step: 10 * (i + 1),
                loss: Some(0.25),
                extra: vec![("a".into(), 1.0)],
                ..Default::default()
            };
            logs.metrics(&m, (i == 3).then_some((1.0, 0.5))).unwrap();
        }
        logs.flush().unwrap();
        drop(logs);
        let eps = read_episodes(&dir.path().join("episodes.csv")).unwrap();
        assert_eq!(eps.len(), 4);
        assert_eq!(eps[2], EpisodeRow { step: 30, episode: 2, ret: 2.5, length: 10, wall_time: 2.0, actor: 0 });
        let ((t, id), mon) = read_monitor(&dir.path().join("monitor.csv")).unwrap();
        assert_eq!((t, id.as_str()), (1_700_000_000.25, "CartPole-v1"));
        assert_eq!(mon[3], MonitorRow { r: 3.5, l: 10, t: 3.0 });
        let text = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
        assert_eq!(text.lines().nth(4).unwrap(), "40,0.25,,,,1,0.5,a=1");

        let mut logs = RunLogs::resume(dir.path(), 20).unwrap();
        logs.episode(&EpisodeRecord { step: 25, episode: 2, ret: 9.0, len: 5, ..Default::default() }, 7.0).unwrap();
        logs.flush().unwrap();
        let eps = read_episodes(&dir.path().join("episodes.csv")).unwrap();
        assert_eq!(eps.iter().map(|e| e.step).collect::<Vec<_>>(), vec![10, 20, 25]);
        let (_, mon) = read_monitor(&dir.path().join("monitor.csv")).unwrap();
        assert_eq!(mon.iter().map(|m| m.r).collect::<Vec<_>>(), vec![0.5, 1.5, 9.0]);
        let text = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn resume_drops_a_partial_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut logs = RunLogs::create(dir.path(), "X-v0", 1.0).unwrap();
        logs.episode(&EpisodeRecord { step: 5, episode: 0, ret: 1.0, len: 5, ..Default::default() }, 0.5).unwrap();
        logs.metrics(&TrainMetrics { step: 5, ..Default::default() }, None).unwrap();
        logs.flush().unwrap();
        drop(logs);
        for (f, tail) in [("episodes.csv", "9,1,2."), ("metrics.csv", "9,0.1"), ("monitor.csv", "2.0,4")] {
            let mut t = std::fs::read_to_string(dir.path().join(f)).unwrap();
            t.push_str(tail);
            std::fs::write(dir.path().join(f), t).unwrap();
        }
        RunLogs::resume(dir.path(), 100).unwrap();
        assert_eq!(read_episodes(&dir.path().join("episodes.csv")).unwrap().len(), 1);
        assert_eq!(read_monitor(&dir.path().join("monitor.csv")).unwrap().1.len(), 1);
        let m = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
        assert_eq!(m.lines().count(), 2, "{m}");
        // a bad row that is not the last one is an error naming the file
        std::fs::write(dir.path().join("episodes.csv"), "step,episode,return,length,wall_time\nx\n1,0,1,1,1\n")
            .unwrap();
        let e = format!("{:#}", RunLogs::resume(dir.path(), 100).unwrap_err());
        assert!(e.contains("episodes.csv"), "{e}");
    }

    #[test]
    fn monitor_header_is_python_json() {
        assert_eq!(
            monitor_header_line(1700000000.0, "FrozenLake-v1"),
            "#{\"t_start\": 1700000000.0, \"env_id\": \"FrozenLake-v1\"}"
        );
    }

    #[test]
    fn atomic_write_to_missing_dir_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope").join("x.json");
        let e = format!("{:#}", atomic_write(&p, b"1").unwrap_err());
        assert!(e.contains("x.json"), "{e}");
    }
}
