//! Reward curves: one line per experiment (the mean over its seeds) with a shaded band, the env's reward
//! threshold dashed, as PNG or SVG.
//!
//! Text is drawn with plotters' pure-Rust `ab_glyph` path and an embedded DejaVu Sans (assets/DejaVuSans.ttf,
//! Bitstream Vera licence, see assets/LICENSE-DejaVu.txt), so plotting needs no fontconfig or freetype.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::config::ExperimentConfig;
use crate::runlog::read_episodes;

/// DejaVu Sans 2.37 (Debian fonts-dejavu-core), Bitstream Vera licence: assets/LICENSE-DejaVu.txt.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// The family name plots use.
pub(crate) const FAMILY: &str = "sans-serif";

pub(crate) fn register_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    if *DONE.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        bail!("the embedded font assets/DejaVuSans.ttf could not be loaded")
    }
}

/// What the x axis shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum XAxis {
    /// Env steps.
    #[default]
    Steps,
    /// Wall-clock seconds.
    Time,
}

/// The shaded band around each mean curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Band {
    /// Mean +- one standard deviation over seeds.
    #[default]
    Std,
    /// Minimum to maximum over seeds.
    Minmax,
    /// 95% confidence interval of the mean (normal approximation, mean +- 1.96 std / sqrt(seeds)).
    Ci95,
    /// No band.
    None,
}

/// Plot settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotOptions {
    /// Trailing moving-average window over episodes (1 = raw), as rl-zoo's `--rolling-window`. Default 10.
    pub smooth: usize,
    /// X axis. Default steps.
    pub x: XAxis,
    /// Band. Default std.
    pub band: Band,
    /// Image size in pixels. Default 1024x640.
    pub size: (u32, u32),
    /// Title; default: the env ids.
    pub title: Option<String>,
    /// Points of the common grid each seed's curve is resampled on. Default 200.
    pub points: usize,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions { smooth: 10, x: XAxis::Steps, band: Band::Std, size: (1024, 640), title: None, points: 200 }
    }
}

/// One experiment's runs.
#[derive(Debug, Clone)]
struct Group {
    label: String,
    env: Option<String>,
    threshold: Option<f64>,
    runs: Vec<Vec<(f64, f64)>>,
}

/// One experiment's curve: grid x, mean, band low and high.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend label (the experiment name).
    pub label: String,
    /// Grid points.
    pub x: Vec<f64>,
    /// Mean over seeds.
    pub mean: Vec<f64>,
    /// Lower edge of the band.
    pub low: Vec<f64>,
    /// Upper edge of the band.
    pub high: Vec<f64>,
    /// Number of seeds.
    pub seeds: usize,
}

fn run_dirs(path: &Path) -> Result<Vec<PathBuf>> {
    if path.join("episodes.csv").is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("episodes.csv").is_file())
        .collect();
    if dirs.is_empty() {
        bail!(
            "{} is neither a run directory (with episodes.csv) nor an experiment directory (with seed-*/episodes.csv)",
            path.display()
        );
    }
    dirs.sort();
    Ok(dirs)
}

/// Trailing moving average over `w` points.
fn smooth(ys: &mut [f64], w: usize) {
    if w <= 1 {
        return;
    }
    let orig = ys.to_vec();
    let mut sum = 0.0;
    for i in 0..orig.len() {
        sum += orig[i];
        if i >= w {
            sum -= orig[i - w];
        }
        ys[i] = sum / (i + 1).min(w) as f64;
    }
}

fn load_groups(paths: &[PathBuf], opts: &PlotOptions) -> Result<Vec<Group>> {
    let mut groups: Vec<Group> = Vec::new();
    let mut keys: Vec<PathBuf> = Vec::new();
    for p in paths {
        for dir in run_dirs(p)? {
            let cfg = std::fs::read_to_string(dir.join("config.toml"))
                .ok()
                .and_then(|t| ExperimentConfig::resolve(&t, &[]).ok());
            let label = cfg.as_ref().map(|c| c.name.clone()).unwrap_or_else(|| {
                dir.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            });
            let eps = read_episodes(&dir.join("episodes.csv"))?;
            if eps.is_empty() {
                continue;
            }
            let xs: Vec<f64> = eps
                .iter()
                .map(|e| match opts.x {
                    XAxis::Steps => e.step as f64,
                    XAxis::Time => e.wall_time,
                })
                .collect();
            let mut ys: Vec<f64> = eps.iter().map(|e| e.ret).collect();
            smooth(&mut ys, opts.smooth);
            let run: Vec<(f64, f64)> = xs.into_iter().zip(ys).collect();
            // One line per experiment directory (the parent of `seed-<n>/`), labelled by the experiment's name.
            let exp_dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
            match groups.iter_mut().zip(&mut keys).find(|(g, k)| g.label == label && **k == exp_dir) {
                Some((g, _)) => g.runs.push(run),
                None => {
                    keys.push(exp_dir);
                    groups.push(Group {
                        label,
                        env: cfg.as_ref().map(|c| c.env.clone()),
                        threshold: cfg.as_ref().and_then(|c| c.reward_threshold()),
                        runs: vec![run],
                    })
                }
            }
        }
    }
    // Same experiment name in different directories (e.g. two `--out` roots): tell them apart in the legend.
    let labels: Vec<String> = groups.iter().map(|g| g.label.clone()).collect();
    for (g, k) in groups.iter_mut().zip(&keys) {
        if labels.iter().filter(|l| **l == g.label).count() > 1 {
            g.label = format!("{} ({})", g.label, k.display());
        }
    }
    if groups.is_empty() {
        bail!(
            "no finished episodes to plot in {}",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(groups)
}

/// Value of a step curve at `x`: the last point with `px <= x`.
fn value_at(run: &[(f64, f64)], x: f64) -> f64 {
    let i = run.partition_point(|p| p.0 <= x);
    run[i.saturating_sub(1)].1
}

fn curve(g: &Group, opts: &PlotOptions) -> Curve {
    // The grid spans where every seed has data: from the latest first episode to the earliest last one.
    let lo = g.runs.iter().map(|r| r[0].0).fold(f64::MIN, f64::max);
    let hi = g.runs.iter().map(|r| r[r.len() - 1].0).fold(f64::MAX, f64::min).max(lo);
    let n = opts.points.max(2);
    let (mut x, mut mean, mut low, mut high) = (vec![], vec![], vec![], vec![]);
    let mut vals = vec![0.0; g.runs.len()];
    for i in 0..n {
        let xi = lo + (hi - lo) * i as f64 / (n - 1) as f64;
        for (v, r) in vals.iter_mut().zip(&g.runs) {
            *v = value_at(r, xi);
        }
        let k = vals.len() as f64;
        let m = vals.iter().sum::<f64>() / k;
        let sd = (vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / k).sqrt();
        let (l, h) = match opts.band {
            Band::Std => (m - sd, m + sd),
            Band::Minmax => {
                (vals.iter().copied().fold(f64::MAX, f64::min), vals.iter().copied().fold(f64::MIN, f64::max))
            }
            // 1.96: the two-sided 95% quantile of the normal distribution.
            Band::Ci95 => (m - 1.96 * sd / k.sqrt(), m + 1.96 * sd / k.sqrt()),
            Band::None => (m, m),
        };
        x.push(xi);
        mean.push(m);
        low.push(l);
        high.push(h);
    }
    Curve { label: g.label.clone(), x, mean, low, high, seeds: g.runs.len() }
}

/// The curves `plot` draws (one per experiment), for tests and other front ends.
pub fn curves(paths: &[PathBuf], opts: &PlotOptions) -> Result<Vec<Curve>> {
    Ok(load_groups(paths, opts)?.iter().map(|g| curve(g, opts)).collect())
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    groups: &[Group],
    curves: &[Curve],
    opts: &PlotOptions,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing failed: {err}");
    root.fill(&WHITE).map_err(e)?;
    let threshold = groups.iter().find_map(|g| g.threshold);
    let mut envs: Vec<&str> = groups.iter().filter_map(|g| g.env.as_deref()).collect();
    envs.dedup();
    let title = opts.title.clone().unwrap_or_else(|| if envs.is_empty() { "reward".into() } else { envs.join(", ") });
    let x_max = curves.iter().map(|c| *c.x.last().unwrap_or(&1.0)).fold(0.0, f64::max).max(1.0);
    let x_min = curves.iter().map(|c| c.x[0]).fold(f64::MAX, f64::min).min(x_max);
    let mut y_min = curves.iter().flat_map(|c| c.low.iter()).copied().fold(f64::MAX, f64::min);
    let mut y_max = curves.iter().flat_map(|c| c.high.iter()).copied().fold(f64::MIN, f64::max);
    if let Some(t) = threshold {
        y_min = y_min.min(t);
        y_max = y_max.max(t);
    }
    let pad = ((y_max - y_min) * 0.05).max(1e-3);
    let (y_min, y_max) = (y_min - pad, y_max + pad);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 24))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x_min..x_max, y_min..y_max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(match opts.x {
            XAxis::Steps => "env steps",
            XAxis::Time => "wall time (s)",
        })
        .y_desc("episode return")
        .x_label_formatter(&|x| fmt_tick(*x, x_max - x_min))
        .y_label_formatter(&|y| fmt_tick(*y, y_max - y_min))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(e)?;
    for (i, c) in curves.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        if opts.band != Band::None && c.seeds > 1 {
            let mut poly: Vec<(f64, f64)> = c.x.iter().copied().zip(c.high.iter().copied()).collect();
            poly.extend(c.x.iter().copied().zip(c.low.iter().copied()).rev());
            chart.draw_series(std::iter::once(Polygon::new(poly, colour.mix(0.2).filled()))).map_err(e)?;
        }
        let label = format!("{} ({} seed{})", c.label, c.seeds, if c.seeds == 1 { "" } else { "s" });
        chart
            .draw_series(LineSeries::new(c.x.iter().copied().zip(c.mean.iter().copied()), colour.stroke_width(2)))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    if let Some(t) = threshold {
        chart
            .draw_series(DashedLineSeries::new(vec![(x_min, t), (x_max, t)], 8, 6, BLACK.stroke_width(1)))
            .map_err(e)?
            .label(format!("reward threshold {t}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// A tick label with as many decimals as the axis span needs (`50000`, `0.25`).
fn fmt_tick(v: f64, span: f64) -> String {
    let decimals = if span >= 20.0 {
        0
    } else if span >= 2.0 {
        1
    } else {
        2
    };
    format!("{v:.decimals$}")
}

/// Plots the runs under `paths` (run directories or experiment directories) into `out` (`.png` or `.svg`),
/// written atomically.
pub fn plot(paths: &[PathBuf], out: &Path, opts: &PlotOptions) -> Result<()> {
    let ext = out.extension().and_then(|x| x.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    if ext != "png" && ext != "svg" {
        bail!("-o {}: expected a .png or .svg file name", out.display());
    }
    let (w, h) = opts.size;
    if !(64..=16384).contains(&w) || !(64..=16384).contains(&h) {
        bail!("--size {w}x{h}: width and height must be within 64..=16384 pixels");
    }
    register_font()?;
    let groups = load_groups(paths, opts)?;
    let curves: Vec<Curve> = groups.iter().map(|g| curve(g, opts)).collect();
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Same extension: the bitmap backend picks the encoder from it.
    let tmp = dir.join(format!(".tmp-{}-{name}", std::process::id()));
    let res = if ext == "png" {
        draw(BitMapBackend::new(&tmp, (w, h)).into_drawing_area(), &groups, &curves, opts)
    } else {
        draw(SVGBackend::new(&tmp, (w, h)).into_drawing_area(), &groups, &curves, opts)
    }
    .and_then(|_| std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display())));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.with_context(|| format!("cannot plot {}", out.display()))
}

/// Renders the plot into an RGB buffer of `opts.size` (what `plot` writes as PNG), for tests and previews.
pub fn render_rgb(paths: &[PathBuf], opts: &PlotOptions) -> Result<Vec<u8>> {
    register_font()?;
    let groups = load_groups(paths, opts)?;
    let curves: Vec<Curve> = groups.iter().map(|g| curve(g, opts)).collect();
    let (w, h) = opts.size;
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    draw(BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area(), &groups, &curves, opts)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_is_a_trailing_mean() {
        let mut y = vec![1.0, 2.0, 3.0, 4.0];
        smooth(&mut y, 2);
        assert_eq!(y, vec![1.0, 1.5, 2.5, 3.5]);
    }

    #[test]
    fn curve_means_and_bands_over_seeds() {
        let g = Group {
            label: "a".into(),
            env: None,
            threshold: None,
            runs: vec![vec![(0.0, 1.0), (10.0, 3.0)], vec![(0.0, 3.0), (10.0, 5.0)]],
        };
        let opts = PlotOptions { points: 3, ..Default::default() };
        let c = curve(&g, &opts);
        assert_eq!(c.x, vec![0.0, 5.0, 10.0]);
        assert_eq!(c.mean, vec![2.0, 2.0, 4.0]);
        assert_eq!(c.low, vec![1.0, 1.0, 3.0]);
        let c = curve(&g, &PlotOptions { points: 3, band: Band::Ci95, ..Default::default() });
        assert!((c.high[0] - (2.0 + 1.96 / 2f64.sqrt())).abs() < 1e-12);
        let c = curve(&g, &PlotOptions { points: 3, band: Band::Minmax, ..Default::default() });
        assert_eq!((c.low[2], c.high[2]), (3.0, 5.0));
    }
}
