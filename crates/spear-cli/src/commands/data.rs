//! `spear data`: look at RLDS datasets and compute a mixture's statistics. No compute backend.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::{Rgb, RgbImage};
use serde_json::{Value, json};
use spear_data::images::{self, Fit, Image};
use spear_data::loader::{MixtureConfig, mixture_statistics};
use spear_data::oxe::{Camera, StandardEpisode, spec, standardize};
use spear_data::resample::{ACTION_DIM, ChunkConfig};
use spear_data::rlds::{Episode, RldsDataset};
use spear_data::schema::Leaf;
use spear_data::tfrecord::OnCorrupt;

use crate::draw::{self, fill, line};

/// `spear data …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DataCommand {
    /// A dataset's splits, typed schema, registry entry, and its first episode: steps, duration,
    /// instruction, and frame 0's state and 5 Hz action chunk.
    Inspect {
        /// The dataset's `NAME/VERSION` folder (holding dataset_info.json).
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One pass over a mixture: per-dimension statistics (min, max, mean, std, 1st/99th
    /// percentiles) of 5 Hz action translations and state positions, and of action rotation
    /// angles, written as JSON.
    Stats {
        /// Mixture file (e.g. configs/data/oxe_mixture.toml).
        #[arg(long)]
        mixture: PathBuf,
        /// Where to write the statistics.
        #[arg(long)]
        out: PathBuf,
        /// Folder holding the datasets, instead of the mixture's `root`.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// A contact sheet (PNG) of frames of one episode: external and wrist cameras and each frame's
    /// action chunk drawn (path top-down and height; green open, red closed, grey padding).
    Preview {
        /// The dataset's `NAME/VERSION` folder.
        dir: PathBuf,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
        /// Episode index in the split.
        #[arg(long, default_value_t = 0)]
        episode: usize,
        /// Frames shown, spread over the episode.
        #[arg(long, default_value_t = 6)]
        frames: usize,
    },
}

impl DataCommand {
    /// Runs the command (no compute backend involved) and prints its result.
    pub fn run(self) -> Result<()> {
        match self {
            DataCommand::Inspect { dir, json } => {
                let report = inspect(&dir)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", render_inspect(&report));
                }
            }
            DataCommand::Stats { mixture, out, root } => {
                let stats = stats(&mixture, root.as_deref(), &out)?;
                print!("{}", render_stats(&stats));
                println!("wrote {}", out.display());
            }
            DataCommand::Preview { dir, out, episode, frames } => {
                let drawn = preview(&dir, episode, frames, &out)?;
                println!("wrote {}: frames {drawn:?} of episode {episode}", out.display());
            }
        }
        Ok(())
    }
}

/// A statistics pass's datasets and numbers, for people.
fn render_stats(stats: &spear_data::loader::MixtureStats) -> String {
    let mut out = String::new();
    for d in &stats.datasets {
        out += &format!(
            "  {:<56} {:>8} episodes {:>10} frames {:>6} skipped\n",
            d.name, d.episodes, d.frames, d.skipped
        );
        for reason in &d.skip_reasons {
            out += &format!("      skipped: {reason}\n");
        }
    }
    let f = |v: &[f64]| v.iter().map(|x| format!("{x:+.5}")).collect::<Vec<_>>().join(" ");
    let a = &stats.action_translation;
    out += &format!(
        "action translation (m, 5 Hz, {} actions): q01 [{}] q99 [{}] mean [{}] std [{}]\n",
        a.count,
        f(&a.q01),
        f(&a.q99),
        f(&a.mean),
        f(&a.std)
    );
    let s = &stats.state_position;
    out += &format!("state position (m, {} frames): q01 [{}] q99 [{}]\n", s.count, f(&s.q01), f(&s.q99));
    out
}

/// The episode `index` of the dataset's `train` split (or its first split).
fn nth_episode(dataset: &RldsDataset, index: usize) -> Result<Episode> {
    let split = dataset.splits.iter().find(|s| s.name == "train").unwrap_or(&dataset.splits[0]);
    let total = split.episodes();
    dataset
        .episodes(&split.name, OnCorrupt::Fail)?
        .nth(index)
        .with_context(|| format!("episode {index} of {} (split `{}` has {total})", dataset.name, split.name))?
        .map_err(Into::into)
}

fn standard(dataset: &RldsDataset, episode: Episode) -> Option<Result<StandardEpisode>> {
    spec(&dataset.name).map(|s| standardize(&s, episode).map_err(Into::into))
}

/// `spear data inspect`: the dataset's splits, schema, registry entry and its first episode.
pub fn inspect(dir: &Path) -> Result<Value> {
    let dataset = RldsDataset::open(dir)?;
    let fields: Vec<Value> = dataset
        .schema
        .fields
        .values()
        .map(|f| json!({"path": f.path, "per_step": f.per_step, "type": f.leaf.describe()}))
        .collect();
    let splits: Vec<Value> = dataset
        .splits
        .iter()
        .map(|s| json!({"name": s.name, "episodes": s.episodes(), "shards": s.shards.len()}))
        .collect();
    let episode = nth_episode(&dataset, 0)?;
    let cameras: Vec<Value> = dataset
        .schema
        .step_fields()
        .filter(|f| matches!(f.leaf, Leaf::Image { .. }))
        .map(|f| {
            let image = episode.image(&f.path, 0).ok();
            json!({"field": f.path, "shape": image.map(|i| [i.height, i.width, i.channels])})
        })
        .collect();
    let mut first =
        json!({"steps": episode.len, "shard": episode.source.file, "record": episode.source.record});
    let entry = spec(&dataset.name);
    if let Some(entry) = &entry {
        first["registry"] = json!({
            "rate_hz": entry.rate_hz,
            "duration_s": episode.len.saturating_sub(1) as f64 / entry.rate_hz,
            "external": entry.external,
            "wrist": entry.wrist,
            "weight": entry.weight,
            "excluded": entry.excluded,
        });
        if let Some(s) = standard(&dataset, episode) {
            let s = s?;
            let chunk = s.chunk(0, &ChunkConfig::default());
            first["instruction"] = json!(s.instruction);
            first["frame0"] = json!({
                "state": s.state(0),
                "actions": chunk.actions.chunks(ACTION_DIM).collect::<Vec<_>>(),
                "mask": chunk.mask,
            });
        }
    }
    Ok(json!({
        "name": dataset.name,
        "version": dataset.version,
        "dir": dataset.dir,
        "splits": splits,
        "fields": fields,
        "cameras": cameras,
        "registered": entry.is_some(),
        "first_episode": first,
    }))
}

/// Human-readable form of [`inspect`]'s report.
pub fn render_inspect(report: &Value) -> String {
    let mut out = format!(
        "{} {} ({})\n",
        report["name"].as_str().unwrap_or(""),
        report["version"].as_str().unwrap_or(""),
        report["dir"].as_str().unwrap_or("")
    );
    for s in report["splits"].as_array().into_iter().flatten() {
        out += &format!(
            "  split {}: {} episodes in {} shard(s)\n",
            s["name"].as_str().unwrap_or(""),
            s["episodes"],
            s["shards"]
        );
    }
    out += "  fields (per step unless marked):\n";
    for f in report["fields"].as_array().into_iter().flatten() {
        let scope = if f["per_step"].as_bool() == Some(true) { "" } else { "  [episode]" };
        out += &format!(
            "    {:<48} {}{scope}\n",
            f["path"].as_str().unwrap_or(""),
            f["type"].as_str().unwrap_or("")
        );
    }
    let first = &report["first_episode"];
    out += &format!(
        "  first episode: {} steps (record {} of {})\n",
        first["steps"],
        first["record"],
        first["shard"].as_str().unwrap_or("")
    );
    for c in report["cameras"].as_array().into_iter().flatten() {
        out += &format!(
            "    camera {:<40} {} (height, width, channels)\n",
            c["field"].as_str().unwrap_or(""),
            c["shape"]
        );
    }
    match report["registered"].as_bool() {
        Some(true) => {
            let r = &first["registry"];
            out += &format!(
                "  registry: {} Hz ({:.2} s), external `{}`, wrist {}, weight {}{}\n",
                r["rate_hz"],
                r["duration_s"].as_f64().unwrap_or(0.0),
                r["external"].as_str().unwrap_or(""),
                r["wrist"].as_str().map_or("none".to_string(), |w| format!("`{w}`")),
                r["weight"],
                r["excluded"].as_str().map_or(String::new(), |e| format!(" — EXCLUDED: {e}")),
            );
            if let Some(frame) = first.get("frame0") {
                out += &format!("  instruction: {:?}\n", first["instruction"].as_str().unwrap_or(""));
                let f = |v: &Value| {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| format!("{:+.4}", x.as_f64().unwrap_or(0.0)))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                out +=
                    &format!("  frame 0 state   [{}]  (x y z | qw qx qy qz | gripper)\n", f(&frame["state"]));
                for (m, a) in frame["actions"].as_array().into_iter().flatten().enumerate() {
                    let real = frame["mask"][m].as_bool() == Some(true);
                    out +=
                        &format!("  action {m} (5 Hz) [{}]{}\n", f(a), if real { "" } else { "  (padding)" });
                }
            }
        }
        _ => out += "  not in the OXE registry: no standardisation\n",
    }
    out
}

/// `spear data stats`: one pass over the mixture, written as JSON to `out`, with a progress line.
pub fn stats(mixture: &Path, root: Option<&Path>, out: &Path) -> Result<spear_data::loader::MixtureStats> {
    let config = MixtureConfig::from_file_with_root(mixture, root)?;
    let start = std::time::Instant::now();
    let progress = |done: usize, all: usize, frames: u64| {
        draw::progress_line(done, all, &format!("shards, {frames} frames"), start);
    };
    let stats = mixture_statistics(&config, &progress)?;
    eprintln!();
    std::fs::write(out, serde_json::to_string_pretty(&stats)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(stats)
}

/// Green for an open command, red for a closed one.
fn gripper_colour(closed: f32) -> Rgb<u8> {
    if closed >= 0.5 { Rgb([230, 40, 40]) } else { Rgb([40, 200, 60]) }
}

fn paste(sheet: &mut RgbImage, image: &Image, x: u32, y: u32) {
    image::imageops::replace(sheet, &image.to_rgb(), i64::from(x), i64::from(y));
}

/// The action chunk as a plot of 210 × 210: the end-effector path top-down (x right, y up) and
/// its height profile, each action's segment coloured by its gripper command, padding grey.
fn chunk_plot(actions: &[f32], mask: &[bool]) -> RgbImage {
    let size = 210u32;
    let mut plot = RgbImage::from_pixel(size, size, Rgb([24, 24, 28]));
    let mut points = vec![[0f32; 3]];
    for a in actions.chunks(ACTION_DIM) {
        let p = points[points.len() - 1];
        points.push([p[0] + a[0], p[1] + a[1], p[2] + a[2]]);
    }
    let reach = points.iter().flat_map(|p| p.iter().map(|v| v.abs())).fold(1e-4f32, f32::max);
    let half = (size / 2) as f32 - 12.0;
    let at = |x: f32, y: f32| ((size / 2) as f32 + x / reach * half, (size / 2) as f32 - y / reach * half);
    line(&mut plot, (0, i64::from(size / 2)), (i64::from(size), i64::from(size / 2)), Rgb([60, 60, 70]));
    line(&mut plot, (i64::from(size / 2), 0), (i64::from(size / 2), i64::from(size)), Rgb([60, 60, 70]));
    for (m, a) in actions.chunks(ACTION_DIM).enumerate() {
        let colour = if mask[m] { gripper_colour(a[7]) } else { Rgb([110, 110, 110]) };
        let (p, q) = (points[m], points[m + 1]);
        let (x0, y0) = at(p[0], p[1]);
        let (x1, y1) = at(q[0], q[1]);
        line(&mut plot, (x0 as i64, y0 as i64), (x1 as i64, y1 as i64), colour);
        // Height: a bar per action on the right edge, up = rising.
        let h = (q[2] / reach * half) as i64;
        let x = i64::from(size) - 8 * (actions.len() / ACTION_DIM - m) as i64;
        line(&mut plot, (x, i64::from(size / 2)), (x, i64::from(size / 2) - h), colour);
    }
    fill(&mut plot, size / 2 - 2, size / 2 - 2, 5, 5, Rgb([255, 255, 255]));
    plot
}

/// `spear data preview`: a contact sheet of `frames` frames spread over episode `episode`, each row
/// the external camera (280×210), the wrist camera (112×112, black when none) and the frame's 5 Hz
/// action chunk drawn top-down with a height profile (green: gripper open, red: closed, grey:
/// padding past the end). Returns the frames drawn.
pub fn preview(dir: &Path, episode: usize, frames: usize, out: &Path) -> Result<Vec<usize>> {
    let dataset = RldsDataset::open(dir)?;
    let raw = nth_episode(&dataset, episode)?;
    let Some(standard) = standard(&dataset, raw) else {
        bail!("{} is not in the OXE registry: preview needs its camera and pose conventions", dataset.name);
    };
    let standard = standard?;
    if standard.is_empty() {
        bail!("episode {episode} of {} has no frame", dataset.name);
    }
    let n = standard.len();
    let picks: Vec<usize> = if frames >= n {
        (0..n).collect()
    } else {
        (0..frames.max(1)).map(|i| i * (n - 1) / (frames.max(2) - 1)).collect()
    };
    let (row_h, gap) = (210u32, 4u32);
    let width = 280 + gap + 112 + gap + 210;
    let mut sheet = RgbImage::from_pixel(width, picks.len() as u32 * (row_h + gap), Rgb([12, 12, 14]));
    for (row, &frame) in picks.iter().enumerate() {
        let y = row as u32 * (row_h + gap);
        let external = standard.image(Camera::External, frame)?.expect("every entry has an external camera");
        paste(&mut sheet, &images::resize(&external, 280, 210, Fit::Crop), 0, y);
        let wrist = standard
            .image(Camera::Wrist, frame)?
            .map_or_else(|| Image::black(112, 112), |w| images::resize(&w, 112, 112, Fit::Crop));
        paste(&mut sheet, &wrist, 280 + gap, y);
        // The frame's position in the episode as a bar under the wrist image.
        let progress = ((frame + 1) * 112 / n) as u32;
        fill(&mut sheet, 280 + gap, y + 120, progress, 6, Rgb([200, 200, 210]));
        let chunk = standard.chunk(frame, &ChunkConfig::default());
        let plot = chunk_plot(&chunk.actions, &chunk.mask);
        image::imageops::replace(&mut sheet, &plot, i64::from(280 + gap + 112 + gap), i64::from(y));
    }
    sheet.save(out).with_context(|| format!("writing {}", out.display()))?;
    Ok(picks)
}
