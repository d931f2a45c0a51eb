//! `spear plot RUN_DIR`: a run's metrics (`metrics.jsonl`) drawn as one panel per series — loss,
//! validation loss, learning rate, gradient norm, … — against the step, into a PNG.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::{Rgb, RgbImage};
use spear_train::metrics::{metrics_path, read_metrics, series};

use crate::draw::{fill, line, text};

const WIDTH: u32 = 800;
const PANEL: u32 = 200;
/// Plot-area margins in pixels.
const LEFT: u32 = 90;
const RIGHT: u32 = 20;
const TOP: u32 = 28;
const BOTTOM: u32 = 26;

/// `spear plot`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlotArgs {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The PNG to write (default: RUN_DIR/metrics.png).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl PlotArgs {
    /// Draws the plot and says what it drew.
    pub fn run(self) -> Result<()> {
        let out = self.out.unwrap_or_else(|| self.run_dir.join("metrics.png"));
        let names = plot(&self.run_dir, &out)?;
        println!("wrote {}: {}", out.display(), names.join(", "));
        Ok(())
    }
}

/// Draws every series of `run_dir`'s metrics into `out`; returns the series' names.
pub fn plot(run_dir: &Path, out: &Path) -> Result<Vec<String>> {
    let path = metrics_path(run_dir);
    let lines = read_metrics(&path)?;
    let all = series(&lines);
    if all.is_empty() {
        bail!("{}: no metrics logged yet", path.display());
    }
    let mut canvas = RgbImage::from_pixel(WIDTH, PANEL * all.len() as u32, Rgb([22, 22, 28]));
    let (first, last) = all.values().flatten().fold((u64::MAX, 0), |(a, b), &(s, _)| (a.min(s), b.max(s)));
    for (k, (name, points)) in all.iter().enumerate() {
        let top = PANEL * k as u32;
        let (w, h) = (WIDTH - LEFT - RIGHT, PANEL - TOP - BOTTOM);
        fill(&mut canvas, LEFT, top + TOP, w, h, Rgb([34, 34, 42]));
        let (lo, hi) =
            points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(_, v)| (a.min(v), b.max(v)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let steps = (last - first).max(1) as f64;
        let at = |(s, v): (u64, f64)| {
            let x = f64::from(LEFT) + (s - first) as f64 / steps * f64::from(w - 1);
            let y = f64::from(top + TOP) + (1.0 - (v - lo) / span) * f64::from(h - 1);
            (x as i64, y as i64)
        };
        for pair in points.windows(2) {
            line(&mut canvas, at(pair[0]), at(pair[1]), Rgb([90, 200, 255]));
        }
        if let [only] = points.as_slice() {
            let (x, y) = at(*only);
            fill(&mut canvas, (x - 2).max(0) as u32, (y - 2).max(0) as u32, 5, 5, Rgb([90, 200, 255]));
        }
        let label = |v: f64| {
            if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
                format!("{v:.2e}")
            } else {
                format!("{v:.4}")
            }
        };
        let grey = Rgb([200, 200, 210]);
        text(
            &mut canvas,
            i64::from(LEFT),
            i64::from(top) + 6,
            &format!("{name}  last {}", label(points[points.len() - 1].1)),
            2,
            Rgb([255, 255, 255]),
        );
        text(&mut canvas, 4, i64::from(top + TOP), &label(hi), 2, grey);
        text(&mut canvas, 4, i64::from(top + TOP + h) - 14, &label(lo), 2, grey);
        text(&mut canvas, i64::from(LEFT), i64::from(top + TOP + h) + 4, &first.to_string(), 2, grey);
        let end = last.to_string();
        text(
            &mut canvas,
            i64::from(WIDTH - RIGHT) - 8 * end.len() as i64 - 4,
            i64::from(top + TOP + h) + 4,
            &end,
            2,
            grey,
        );
    }
    canvas.save(out).with_context(|| format!("writing {}", out.display()))?;
    Ok(all.keys().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spear_train::metrics::MetricsWriter;

    #[test]
    fn every_series_gets_a_panel() {
        let dir = std::env::temp_dir().join(format!("spear-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("plot.png");
        assert!(plot(&dir, &out).is_err(), "no metrics yet");
        let mut writer = MetricsWriter::open(&dir, None).unwrap();
        for step in 0..50u64 {
            writer.write(step, &[("loss", (-(step as f64) / 10.0).exp()), ("lr", 1e-3)]).unwrap();
        }
        writer.write(50, &[("val_loss", 0.1)]).unwrap();
        drop(writer);
        assert_eq!(plot(&dir, &out).unwrap(), ["loss", "lr", "val_loss"]);
        let png = image::open(&out).unwrap().to_rgb8();
        assert_eq!(png.dimensions(), (WIDTH, 3 * PANEL));
        // The loss curve is drawn in its panel.
        assert!(
            (0..PANEL)
                .flat_map(|y| (LEFT..WIDTH - RIGHT).map(move |x| (x, y)))
                .any(|(x, y)| *png.get_pixel(x, y) == Rgb([90, 200, 255]))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
