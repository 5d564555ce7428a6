//! Progress display: an indicatif bar on a terminal, plain periodic log lines otherwise, nothing with `--quiet`.
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar per run when stderr (where progress goes) is a terminal, else plain lines.
    Auto,
    /// Always plain log lines on stderr (every `every`).
    Plain,
    /// Nothing.
    Quiet,
}

/// Creates per-run progress displays sharing one terminal.
#[derive(Debug, Clone)]
pub struct ProgressFactory {
    mode: ProgressMode,
    multi: Option<MultiProgress>,
    /// Interval between plain log lines.
    pub every: Duration,
}

impl ProgressFactory {
    /// A factory for `mode` (Auto picks the bar only when stderr is a terminal).
    pub fn new(mode: ProgressMode) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Auto,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        };
        // One MultiProgress per process, so the bars of runs in parallel threads share the terminal.
        static MULTI: OnceLock<MultiProgress> = OnceLock::new();
        let multi = (mode == ProgressMode::Auto)
            .then(|| MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())).clone());
        ProgressFactory { mode, multi, every: Duration::from_secs(10) }
    }

    /// A display for one run of `total` steps starting at `start`, labelled `label`.
    pub fn run(&self, label: &str, start: u64, total: u64) -> RunProgress {
        let kind = match (&self.mode, &self.multi) {
            (ProgressMode::Auto, Some(m)) => {
                let bar = m.add(ProgressBar::new(total));
                let style = ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {rate} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} steps/s", s.per_sec());
                });
                bar.set_style(style);
                bar.set_prefix(label.to_string());
                bar.set_position(start);
                bar.reset_eta();
                Kind::Bar(bar)
            }
            (ProgressMode::Quiet, _) => Kind::Quiet,
            _ => Kind::Plain,
        };
        RunProgress {
            kind,
            label: label.to_string(),
            total,
            start_step: start,
            started: Instant::now(),
            last_print: Instant::now(),
            every: self.every,
            last_step: start,
            mean_return: None,
            epsilon: None,
        }
    }
}

#[derive(Debug)]
enum Kind {
    Bar(ProgressBar),
    Plain,
    Quiet,
}

/// The progress display of one run.
#[derive(Debug)]
pub struct RunProgress {
    kind: Kind,
    label: String,
    total: u64,
    start_step: u64,
    started: Instant,
    last_print: Instant,
    every: Duration,
    last_step: u64,
    mean_return: Option<f64>,
    epsilon: Option<f64>,
}

impl RunProgress {
    fn message(&self) -> String {
        let mut s = String::new();
        if let Some(r) = self.mean_return {
            s.push_str(&format!("return {r:.2}"));
        }
        if let Some(e) = self.epsilon {
            s.push_str(&format!(" eps {e:.3}"));
        }
        s
    }

    /// Sets the mean return of the last episodes and the exploration epsilon shown (at the next `set_step`).
    pub fn set_stats(&mut self, mean_return: Option<f64>, epsilon: Option<f64>) {
        if mean_return.is_some() {
            self.mean_return = mean_return;
        }
        if epsilon.is_some() {
            self.epsilon = epsilon;
        }
    }

    /// Steps done: updates the bar (which redraws at most a few times a second) or prints a plain line when
    /// `every` has passed. The runner calls it at most about 1000 times per run.
    pub fn set_step(&mut self, step: u64) {
        self.last_step = step;
        match &self.kind {
            Kind::Bar(b) => {
                b.set_message(self.message());
                b.set_position(step);
            }
            Kind::Plain if self.last_print.elapsed() >= self.every => {
                self.last_print = Instant::now();
                self.print_line();
            }
            _ => {}
        }
    }

    fn print_line(&self) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = (self.last_step.saturating_sub(self.start_step)) as f64 / secs;
        let pct = 100.0 * self.last_step as f64 / self.total.max(1) as f64;
        eprintln!(
            "[{}] step {}/{} ({pct:.0}%) {rate:.0} steps/s {}",
            self.label,
            self.last_step,
            self.total,
            self.message()
        );
    }

    /// Prints a line above the bar (or on stderr in plain mode; nothing when quiet).
    pub fn println(&self, line: &str) {
        match &self.kind {
            Kind::Bar(b) => b.println(format!("[{}] {line}", self.label)),
            Kind::Plain => eprintln!("[{}] {line}", self.label),
            Kind::Quiet => {}
        }
    }

    /// Ends the display (the bar stays with its final state; plain mode prints a last line).
    pub fn finish(&self) {
        match &self.kind {
            Kind::Bar(b) => b.abandon_with_message(self.message()),
            Kind::Plain => self.print_line(),
            Kind::Quiet => {}
        }
    }
}
