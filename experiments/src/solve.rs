//! `bellman solve <env-id>`: value or policy iteration on any registered env that has a model. Grid-shaped envs
//! are printed as a value grid and a greedy-policy grid of arrows, and drawn as a heatmap PNG with the arrows;
//! `--json` writes the solution in the env's state numbering.
//!
//! ```
//! use clap::Parser;
//! use bellman_experiments::solve::SolveArgs;
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     solve: SolveArgs,
//! }
//! let cli = Cli::try_parse_from(["solve", "FrozenLake-v1", "--opt", "is_slippery=false", "--gamma", "0.9"]).unwrap();
//! assert_eq!(cli.solve.env, "FrozenLake-v1");
//! assert_eq!(cli.solve.gamma, Some(0.9));
//! ```
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bellman_agents::tabular::planning::{CompiledMdp, Solution, Sweep, ViOptions, policy_iteration, value_iteration};
use bellman_envs::{Mdp, Options};
use plotters::prelude::*;

/// The planning algorithm of `bellman solve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Algo {
    /// Value iteration.
    #[default]
    Vi,
    /// Policy iteration.
    Pi,
}

impl Algo {
    fn name(self) -> &'static str {
        match self {
            Algo::Vi => "vi",
            Algo::Pi => "pi",
        }
    }
}

/// Arguments of `bellman solve`.
#[derive(Debug, Clone, clap::Args)]
pub struct SolveArgs {
    /// Registry id of an env with a model (toy text, grid worlds): `bellman envs` lists them.
    #[arg(default_value = "GridWorld5x5-v0")]
    pub env: String,
    /// Value iteration (`vi`) or policy iteration (`pi`).
    #[arg(long, value_enum, default_value_t = Algo::Vi)]
    pub algo: Algo,
    /// Discount in (0, 1]; default 0.9 for GridWorld5x5-v0 (Example 3.5), 1 for GridWorld4x4-v0 (Example 4.1),
    /// 0.99 otherwise.
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Stop when a sweep changes no value by `tol` or more (> 0).
    #[arg(long, default_value_t = 1e-10)]
    pub tol: f64,
    /// Give up (with an error) after this many sweeps.
    #[arg(long, default_value_t = 100_000)]
    pub max_sweeps: usize,
    /// In-place (Gauss-Seidel) sweeps instead of synchronous ones.
    #[arg(long)]
    pub in_place: bool,
    /// Threads for synchronous sweeps of large models (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// An env option `key=value` as `make` accepts (e.g. `is_slippery=false`, `desc=SFFF,FHFH,FFFH,HFFG`);
    /// repeatable.
    #[arg(long = "opt", value_name = "KEY=VALUE")]
    pub opt: Vec<String>,
    /// Write the solution as JSON: env, gamma, algo, sweeps, delta, values, policy, q.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw the values as a heatmap with the greedy actions as arrows (grid-shaped envs only).
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Print nothing on stdout.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The conventional discount of an env when `--gamma` is not given.
pub fn default_gamma(env: &str) -> f64 {
    match env {
        "GridWorld5x5-v0" => 0.9, // Sutton and Barto, Example 3.5
        "GridWorld4x4-v0" => 1.0, // Sutton and Barto, Example 4.1
        _ => 0.99,
    }
}

/// A solved env: the model's shape and rendering hints with the solution.
#[derive(Debug, Clone)]
pub struct Solved {
    /// The env id.
    pub env: String,
    /// The discount used.
    pub gamma: f64,
    /// The algorithm used.
    pub algo: Algo,
    /// The solution.
    pub solution: Solution,
    /// `(rows, cols)` of a grid-shaped env.
    pub grid: Option<(usize, usize)>,
    /// The text label of each state, if it has one (`H`, `G`, `#`, ...).
    pub labels: Vec<Option<char>>,
    /// States whose every action is a terminal self-loop (holes, goals, walls): drawn without an arrow.
    pub absorbing: Vec<bool>,
    /// The arrow of each action inferred from the model (see [`action_arrows`]).
    pub arrows: Vec<char>,
}

/// Builds the env, compiles its model and solves it (no printing, no files).
pub fn solve(args: &SolveArgs) -> Result<Solved> {
    let opts = Options::parse(&args.opt)?;
    let env = bellman_envs::make_tabular(&args.env, &opts).with_context(|| format!("cannot solve '{}'", args.env))?;
    let gamma = args.gamma.unwrap_or_else(|| default_gamma(&args.env));
    let vi = ViOptions {
        gamma,
        tol: args.tol,
        max_sweeps: args.max_sweeps,
        sweep: if args.in_place { Sweep::InPlace } else { Sweep::Synchronous },
        threads: args.threads,
        ..ViOptions::new(gamma)
    };
    vi.validate()?;
    let model = CompiledMdp::compile(&*env)?;
    let solution = match args.algo {
        Algo::Vi => value_iteration(&model, &vi)?,
        Algo::Pi => policy_iteration(&model, &vi)?,
    };
    solution.ensure_converged(gamma).with_context(|| format!("{} on {}", args.algo.name(), args.env))?;
    let ns = env.num_states();
    let absorbing = (0..ns)
        .map(|s| {
            (0..env.num_actions())
                .all(|a| env.outcomes(s, a).iter().all(|o| o.terminal && o.next_state == s && o.reward == 0.0))
        })
        .collect();
    Ok(Solved {
        env: args.env.clone(),
        gamma,
        algo: args.algo,
        grid: env.grid_shape(),
        labels: (0..ns).map(|s| env.state_label(s)).collect(),
        absorbing,
        arrows: action_arrows(&*env),
        solution,
    })
}

/// The arrow of each action of a grid-shaped model: the sign of the mean unit displacement `(d_row, d_col)` it
/// causes over all states (slips to both perpendicular sides cancel out, so slippery envs get the intended
/// direction). Envs number their actions differently (FrozenLake: left, down, right, up; CliffWalking: up,
/// right, down, left), so this is read from the model rather than assumed. An action with no clear direction
/// is shown as its index.
pub fn action_arrows<M: Mdp + ?Sized>(m: &M) -> Vec<char> {
    let digit = |a: usize| char::from_digit(a as u32 % 36, 36).unwrap_or('?');
    let Some((_rows, cols)) = m.grid_shape() else {
        return (0..m.num_actions()).map(digit).collect();
    };
    (0..m.num_actions())
        .map(|a| {
            let (mut dr, mut dc) = (0.0f64, 0.0f64);
            for s in 0..m.num_states() {
                let (r, c) = ((s / cols) as i64, (s % cols) as i64);
                for o in m.outcomes(s, a) {
                    let (nr, nc) = ((o.next_state / cols) as i64, (o.next_state % cols) as i64);
                    if (nr - r).abs() + (nc - c).abs() == 1 {
                        dr += o.prob * (nr - r) as f64;
                        dc += o.prob * (nc - c) as f64;
                    }
                }
            }
            let eps = 1e-6 * m.num_states() as f64;
            if dr.abs() > dc.abs() + eps {
                if dr > 0.0 { '↓' } else { '↑' }
            } else if dc.abs() > dr.abs() + eps {
                if dc > 0.0 { '→' } else { '←' }
            } else {
                digit(a)
            }
        })
        .collect()
}

impl Solved {
    /// The symbol of state `s` in the policy grid: its label when absorbing (`H`, `G`, `#`; `·` unlabelled),
    /// else the arrow of its greedy action.
    pub fn policy_symbol(&self, s: usize) -> char {
        if self.absorbing[s] { self.labels[s].unwrap_or('·') } else { self.arrows[self.solution.policy[s]] }
    }

    /// The text report: a summary line, and for grid-shaped envs the value grid and the policy grid.
    pub fn render_text(&self) -> String {
        let sol = &self.solution;
        let mut out = String::new();
        let algo = match self.algo {
            Algo::Vi => "value iteration".to_string(),
            Algo::Pi => format!("policy iteration ({} improvements)", sol.improvements),
        };
        let _ = writeln!(
            out,
            "{}: {algo}, gamma {}, {} sweeps, final max-norm change {:.3e}",
            self.env, self.gamma, sol.sweeps, sol.delta
        );
        match self.grid {
            Some((rows, cols)) => {
                let _ = writeln!(out, "\nV* ({rows} x {cols}, row 0 at the top):");
                for r in 0..rows {
                    let line: Vec<String> = (0..cols).map(|c| format!("{:>9.4}", sol.values[r * cols + c])).collect();
                    let _ = writeln!(out, "{}", line.join(""));
                }
                let _ = writeln!(out, "\ngreedy policy:");
                for r in 0..rows {
                    let line: String = (0..cols).map(|c| format!(" {}", self.policy_symbol(r * cols + c))).collect();
                    let _ = writeln!(out, "{line}");
                }
            }
            None => {
                let n = sol.values.len();
                let (lo, hi) =
                    sol.values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
                let _ =
                    writeln!(out, "{n} states (not grid-shaped): V* in [{lo:.4}, {hi:.4}]; --json writes every value");
            }
        }
        out
    }

    /// The JSON document of `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        let sol = &self.solution;
        let q: Vec<&[f64]> = (0..sol.values.len()).map(|s| sol.q_row(s)).collect();
        serde_json::json!({
            "env": self.env,
            "gamma": self.gamma,
            "algo": self.algo.name(),
            "sweeps": sol.sweeps,
            "delta": sol.delta,
            "values": sol.values,
            "policy": sol.policy,
            "q": q,
        })
    }

    /// Draws the value heatmap (viridis) with the greedy action of each state as an arrow and its value as text.
    pub fn draw_png(&self, path: &Path) -> Result<()> {
        let Some((rows, cols)) = self.grid else {
            bail!("--png needs a grid-shaped env; '{}' is not one (use --json)", self.env);
        };
        crate::plot::register_font()?;
        let cell = (720 / cols.max(rows)).clamp(12, 120) as i32;
        let (w, h) = (cols as i32 * cell + 40, rows as i32 * cell + 70);
        let root = BitMapBackend::new(path, (w as u32, h as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!("{}: V* (gamma {}), greedy policy", self.env, self.gamma);
        root.draw(&Text::new(title, (20, 12), (crate::plot::FAMILY, 18).into_font().color(&BLACK)))?;
        let vals = &self.solution.values;
        let (lo, hi) = vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let (x0, y0) = (20, 50);
        for (s, &value) in vals.iter().enumerate().take(rows * cols) {
            let (r, c) = ((s / cols) as i32, (s % cols) as i32);
            let (x, y) = (x0 + c * cell, y0 + r * cell);
            let t = if hi > lo { (value - lo) / (hi - lo) } else { 0.5 };
            let color = if self.labels[s] == Some('#') { RGBColor(40, 40, 40) } else { viridis(t) };
            root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], color.filled()))?;
            root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], WHITE.stroke_width(1)))?;
            let ink = if t > 0.6 { BLACK } else { WHITE };
            let (cx, cy) = (x + cell / 2, y + cell / 2);
            if self.absorbing[s] {
                if let Some(l) = self.labels[s] {
                    let style = (crate::plot::FAMILY, cell / 2).into_font().color(&ink);
                    root.draw(&Text::new(l.to_string(), (cx - cell / 8, cy - cell / 4), style))?;
                }
                continue;
            }
            let (dx, dy) = match self.arrows[self.solution.policy[s]] {
                '←' => (-1, 0),
                '→' => (1, 0),
                '↑' => (0, -1),
                '↓' => (0, 1),
                _ => (0, 0),
            };
            let len = cell * 3 / 10;
            if (dx, dy) != (0, 0) {
                let (tx, ty) = (cx + dx * len, cy + dy * len);
                let (bx, by) = (cx - dx * len, cy - dy * len);
                root.draw(&PathElement::new(vec![(bx, by), (tx, ty)], ink.stroke_width(2)))?;
                let head = cell / 8;
                let (px, py) = (-dy, dx); // perpendicular
                let tri = vec![
                    (tx + dx * head, ty + dy * head),
                    (tx + px * head, ty + py * head),
                    (tx - px * head, ty - py * head),
                ];
                root.draw(&Polygon::new(tri, ink.filled()))?;
            }
            if cell >= 48 {
                let style = (crate::plot::FAMILY, cell / 6).into_font().color(&ink);
                root.draw(&Text::new(format!("{value:.2}"), (x + 3, y + 2), style))?;
            }
        }
        root.present().with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

/// Matplotlib's viridis (8 anchors, as in plotters' `ViridisRGB`), linearly interpolated; `t` in [0, 1].
fn viridis(t: f64) -> RGBColor {
    const A: [(f64, f64, f64); 8] = [
        (68.0, 1.0, 84.0),
        (70.0, 50.0, 127.0),
        (54.0, 92.0, 141.0),
        (39.0, 127.0, 143.0),
        (31.0, 162.0, 136.0),
        (74.0, 194.0, 110.0),
        (160.0, 219.0, 57.0),
        (254.0, 232.0, 37.0),
    ];
    let x = t.clamp(0.0, 1.0) * 7.0;
    let i = (x.floor() as usize).min(6);
    let f = x - i as f64;
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(mix(A[i].0, A[i + 1].0), mix(A[i].1, A[i + 1].1), mix(A[i].2, A[i + 1].2))
}

/// Runs `bellman solve`: solves, prints the report, writes `--json` and `--png`.
pub fn run(args: &SolveArgs) -> Result<()> {
    let solved = solve(args)?;
    if !args.quiet {
        print!("{}", solved.render_text());
    }
    if let Some(p) = &args.json {
        let text = serde_json::to_string(&solved.to_json())?;
        std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
        if !args.quiet {
            println!("wrote {}", p.display());
        }
    }
    if let Some(p) = &args.png {
        solved.draw_png(p)?;
        if !args.quiet {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        solve: SolveArgs,
    }

    fn args(v: &[&str]) -> SolveArgs {
        let mut all = vec!["solve"];
        all.extend_from_slice(v);
        Cli::try_parse_from(all).unwrap().solve
    }

    #[test]
    fn gridworld_5x5_default_is_example_3_5_with_arrows_json_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let (json, png) = (dir.path().join("s.json"), dir.path().join("s.png"));
        let a = args(&["--quiet", "--json", json.to_str().unwrap(), "--png", png.to_str().unwrap()]);
        assert_eq!(a.env, "GridWorld5x5-v0");
        run(&a).unwrap();
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(
            (v["env"].as_str(), v["gamma"].as_f64(), v["algo"].as_str()),
            (Some("GridWorld5x5-v0"), Some(0.9), Some("vi"))
        );
        // Figure 3.5: v*(A) = 10 / (1 - 0.9^5) = 24.4194280970, v*(0, 0) = 21.977485.
        assert!((v["values"][1].as_f64().unwrap() - 24.419428097).abs() < 1e-6);
        assert!((v["values"][0].as_f64().unwrap() - 21.977485).abs() < 1e-6);
        assert_eq!(v["q"].as_array().unwrap().len(), 25);
        assert_eq!(v["q"][0].as_array().unwrap().len(), 4);
        assert_eq!(v["policy"].as_array().unwrap().len(), 25);
        assert!(v["sweeps"].as_u64().unwrap() > 100 && v["delta"].as_f64().unwrap() < 1e-10);
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        // Text: (0, 0) heads right towards A; the bottom-left corner heads up.
        let solved = solve(&a).unwrap();
        assert_eq!(solved.arrows, vec!['←', '↓', '→', '↑']);
        assert_eq!(solved.policy_symbol(0), '→');
        // Figure 3.5: up and right are both optimal at (4, 0); the tie goes to the smaller action, 2 (right).
        assert_eq!(solved.policy_symbol(20), '→');
        let text = solved.render_text();
        assert!(text.contains("  24.4194"), "{text}");
        let policy_lines: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("greedy policy")).skip(1).collect();
        assert_eq!(policy_lines.len(), 5, "{text}");
        assert!(policy_lines[0].starts_with(" → ") && policy_lines[4].starts_with(" → "), "{text}");
    }

    #[test]
    fn frozen_lake_and_cliff_walking_arrows_follow_each_envs_action_order() {
        let fl = solve(&args(&["FrozenLake-v1", "--quiet"])).unwrap();
        assert_eq!(fl.arrows, vec!['←', '↓', '→', '↑']); // slippery: the slips cancel out
        assert_eq!(fl.policy_symbol(5), 'H');
        assert_eq!(fl.policy_symbol(15), 'G');
        assert_eq!(fl.policy_symbol(0), '←'); // the well-known optimal first move of slippery 4x4 (gamma 0.99)
        // Policy iteration starts from the uniform random policy, whose gamma-1 evaluation on CliffWalking takes
        // very long episodes: gamma 0.999 keeps it quick and gives the same greedy path.
        let cw = solve(&args(&["CliffWalking-v1", "--algo", "pi", "--gamma", "0.999"])).unwrap();
        assert_eq!(cw.arrows, vec!['↑', '→', '↓', '←']);
        // The optimal path from the start (3, 0): up, then right along row 2, down at the end: return -13.
        assert!((cw.solution.values[36] + (1.0 - 0.999f64.powi(13)) / 0.001).abs() < 1e-6);
        let vi = solve(&args(&["CliffWalking-v1", "--gamma", "1"])).unwrap();
        assert_eq!(vi.solution.values[36], -13.0);
        assert_eq!(cw.policy_symbol(36), '↑');
        assert!((25..35).all(|s| cw.policy_symbol(s) == '→'));
        assert_eq!(cw.policy_symbol(35), '↓');
    }

    #[test]
    fn policy_iteration_agrees_with_value_iteration_and_options_are_passed() {
        let vi = solve(&args(&["FrozenLake-v1", "--opt", "is_slippery=false", "--gamma", "0.9"])).unwrap();
        let pi =
            solve(&args(&["FrozenLake-v1", "--opt", "is_slippery=false", "--gamma", "0.9", "--algo", "pi"])).unwrap();
        // Deterministic 4x4: V*(start) = 0.9^5 (6 steps to G, reward 1 on the last).
        assert!((vi.solution.values[0] - 0.9f64.powi(5)).abs() < 1e-9);
        assert!(vi.solution.values.iter().zip(&pi.solution.values).all(|(a, b)| (a - b).abs() < 1e-9));
        let taxi = solve(&args(&["Taxi-v4", "--in-place"])).unwrap();
        assert!(taxi.grid.is_none());
        assert!(taxi.render_text().contains("500 states (not grid-shaped)"));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let e = format!("{:#}", solve(&args(&["CartPole-v1"])).unwrap_err());
        assert!(e.contains("no transition model") && e.contains("FrozenLake-v1"), "{e}");
        for (g, needle) in [("0", "gamma = 0 is outside (0, 1]"), ("1.01", "gamma = 1.01")] {
            let e = format!("{:#}", solve(&args(&["FrozenLake-v1", "--gamma", g])).unwrap_err());
            assert!(e.contains(needle), "{e}");
        }
        let e = format!("{:#}", solve(&args(&["FrozenLake-v1", "--tol", "0"])).unwrap_err());
        assert!(e.contains("tol = 0 must be a finite number > 0"), "{e}");
        let e = format!("{:#}", solve(&args(&["FrozenLake-v1", "--opt", "is_slipery=false"])).unwrap_err());
        assert!(e.contains("is_slipery"), "{e}");
        // CliffWalking with gamma 1 and a sweep limit too small to converge: reported, with the hint.
        let e = format!("{:#}", solve(&args(&["CliffWalking-v1", "--gamma", "1", "--max-sweeps", "5"])).unwrap_err());
        assert!(e.contains("no convergence after 5 sweeps") && e.contains("proper"), "{e}");
        let taxi = solve(&args(&["Taxi-v4"])).unwrap();
        let e = taxi.draw_png(Path::new("/nonexistent/x.png")).unwrap_err().to_string();
        assert!(e.contains("grid-shaped"), "{e}");
    }
}
