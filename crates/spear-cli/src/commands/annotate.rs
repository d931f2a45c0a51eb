//! `spear annotate`: 3D question–answer data from images, point maps and masks (spear-annotate's
//! pipeline with a progress line), and `spear annotate preview`, which draws one image's boxes
//! and keypoints so a person can check them at a glance.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::{Rgb, RgbImage};
use spear_annotate::geometry::{ObjectGeometry, project};
use spear_annotate::instances::Labels;
use spear_annotate::pipeline::{AnnotateConfig, ImageItem, Inputs, Manifest, annotate_image, run};

use crate::draw::{self, fill, line, text};

/// `spear annotate [preview KEY] …`.
#[derive(Debug, Clone, clap::Args)]
#[command(subcommand_negates_reqs = true)]
pub struct AnnotateCommand {
    #[command(subcommand)]
    preview: Option<AnnotateSubcommand>,
    #[command(flatten)]
    inputs: AnnotateInputs,
    /// Output folder (shards, their statistics, manifest.json).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum AnnotateSubcommand {
    /// Draw image KEY's projected boxes (corner 0 marked), keypoints (closest red, furthest blue,
    /// centre white) and labels into a PNG.
    Preview {
        /// The image's key: its path under --images without extension.
        key: String,
        #[command(flatten)]
        inputs: AnnotateInputs,
        /// The PNG to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The annotation's inputs and parameters, as `spear annotate` and its preview take them.
#[derive(Debug, Clone, clap::Args)]
struct AnnotateInputs {
    /// Images (`<key>.jpg|jpeg|png`, searched recursively).
    #[arg(long, required = true)]
    images: Option<PathBuf>,
    /// Point maps: `<key>/points.exr` (MoGe's `--maps` output) or `<key>/points.npy`.
    #[arg(long, required = true)]
    points: Option<PathBuf>,
    /// Instance masks: `<key>.png` (indexed), `<key>.json` (COCO RLE / Ego-Exo4D) or `<key>/*.png`.
    #[arg(long, required = true)]
    masks: Option<PathBuf>,
    /// Labels: `{"<key>": {"<instance id>": "label"}}` (else the masks JSON's `label`).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Parameters (TOML; see configs/annotate/default.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides the parameters' seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Overrides the parameters' examples per image.
    #[arg(long)]
    examples_per_image: Option<usize>,
}

impl AnnotateInputs {
    fn resolve(self) -> Result<(Inputs, AnnotateConfig)> {
        let mut config = load_config(self.config.as_deref())?;
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let Some(n) = self.examples_per_image {
            config.qa.examples_per_image = n;
        }
        let need = |p: Option<PathBuf>, flag: &str| p.ok_or_else(|| anyhow::anyhow!("{flag} is required"));
        let inputs = Inputs {
            images: need(self.images, "--images")?,
            points: need(self.points, "--points")?,
            masks: need(self.masks, "--masks")?,
            labels: self.labels,
        };
        Ok((inputs, config))
    }
}

impl AnnotateCommand {
    /// Runs the annotation, or draws the preview, and prints what it did (no compute backend).
    pub fn run(self) -> Result<()> {
        match self.preview {
            Some(AnnotateSubcommand::Preview { key, inputs, out }) => {
                let (inputs, config) = inputs.resolve()?;
                let objects = preview(&inputs, &key, &config, &out)?;
                for o in &objects {
                    let [x, y, z] = o.center;
                    let [a, b, c] = o.obb.extent;
                    println!(
                        "  {:<24} {:>6} points  centre ({x:+.3}, {y:+.3}, {z:+.3})  extent {a:.3} × {b:.3} × {c:.3}  {:.3} from the camera",
                        o.label,
                        o.points,
                        o.distance_to_camera()
                    );
                }
                println!("wrote {}: {} objects", out.display(), objects.len());
            }
            None => {
                let out = self.out.ok_or_else(|| anyhow::anyhow!("--out is required"))?;
                let (inputs, config) = self.inputs.resolve()?;
                let manifest = annotate(&inputs, &out, &config)?;
                println!("{}", render_summary(&manifest, &out));
            }
        }
        Ok(())
    }
}

/// Reads a TOML parameters file (any subset of [`AnnotateConfig`]'s fields; the rest default).
pub fn load_config(path: Option<&Path>) -> Result<AnnotateConfig> {
    let Some(path) = path else { return Ok(AnnotateConfig::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: AnnotateConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    config.validate().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(config)
}

/// Runs the annotation with a progress line on stderr.
pub fn annotate(inputs: &Inputs, out: &Path, config: &AnnotateConfig) -> Result<Manifest> {
    let start = std::time::Instant::now();
    let progress = |done: usize, all: usize| draw::progress_line(done, all, "images", start);
    let manifest = run(inputs, out, config, &progress)?;
    eprintln!();
    Ok(manifest)
}

/// The run's totals, one line each.
pub fn render_summary(manifest: &Manifest, out: &Path) -> String {
    let c = &manifest.counts;
    let map = |m: &std::collections::BTreeMap<String, usize>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        }
    };
    let mut s = format!(
        "{} images: {} annotated, {} examples, {} pairs, {} objects with a box\n",
        c.images, c.annotated_images, c.examples, c.pairs, c.objects
    );
    s += &format!("pairs per family: {}\n", map(&c.tasks));
    s += &format!("objects skipped: {}\n", map(&c.skipped_objects));
    s += &format!("images skipped: {}\n", map(&c.skipped_images));
    if !c.errors.is_empty() {
        s += &format!("{} images with unusable inputs (listed in the manifest):\n", c.errors.len());
        for (key, error) in c.errors.iter().take(5) {
            s += &format!("  {key}: {error}\n");
        }
    }
    s += &format!(
        "wrote {} shards to {} ({} reused from an earlier run), manifest.json",
        manifest.shards.len(),
        out.display(),
        manifest.reused_shards
    );
    s
}

const COLOURS: [Rgb<u8>; 6] = [
    Rgb([255, 200, 40]),
    Rgb([80, 200, 255]),
    Rgb([255, 90, 200]),
    Rgb([120, 255, 120]),
    Rgb([255, 140, 60]),
    Rgb([180, 140, 255]),
];

/// Draws image `key`'s boxes (12 edges, corner 0 marked), keypoints (closest red, furthest blue,
/// centre white) and labels into a PNG at `out`; returns the objects.
pub fn preview(
    inputs: &Inputs,
    key: &str,
    config: &AnnotateConfig,
    out: &Path,
) -> Result<Vec<ObjectGeometry>> {
    let labels = inputs.labels.as_deref().map(Labels::read).transpose()?.unwrap_or_default();
    let item = spear_annotate::pipeline::discover_images(&inputs.images)?
        .into_iter()
        .find(|i| i.key == key)
        .with_context(|| format!("no image with key `{key}` under {}", inputs.images.display()))?;
    let ImageItem { path, .. } = &item;
    let outcome = annotate_image(&item, inputs, &labels, config, path)?;
    let Some(view) = outcome.view else {
        bail!("image `{key}` was skipped: {:?}", outcome.counts.skipped_images.keys().collect::<Vec<_>>())
    };
    let image = image::open(path).with_context(|| format!("reading {}", path.display()))?.to_rgb8();
    // Small images are enlarged so that lines and labels stay legible.
    let scale = (640 / image.width().max(1)).max(1);
    let mut canvas: RgbImage = image::imageops::resize(
        &image,
        image.width() * scale,
        image.height() * scale,
        image::imageops::FilterType::Nearest,
    );
    // Points far off the canvas (a corner just in front of the camera) are not drawn, so that no
    // line runs for billions of pixels.
    let limit = 4.0 * f64::from(canvas.width().max(canvas.height()));
    let to_canvas = |p: [f64; 3]| {
        project(&view.intrinsics, p)
            .map(|[u, v]| [u * f64::from(scale), v * f64::from(scale)])
            .filter(|c| c.iter().all(|x| x.abs() < limit))
            .map(|[x, y]| (x as i64, y as i64))
    };
    for (n, object) in outcome.objects.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let corners: Vec<Option<(i64, i64)>> = object.corners.iter().map(|&c| to_canvas(c)).collect();
        // Corners differing in one bit of their index share an edge.
        for k in 0..8 {
            for bit in [1, 2, 4] {
                if k & bit == 0
                    && let (Some(a), Some(b)) = (corners[k], corners[k | bit])
                {
                    line(&mut canvas, a, b, colour);
                }
            }
        }
        if let Some((x, y)) = corners[0] {
            fill(&mut canvas, (x - 3).max(0) as u32, (y - 3).max(0) as u32, 7, 7, colour);
        }
        for (point, mark) in [
            (object.closest, Rgb([255, 40, 40])),
            (object.furthest, Rgb([40, 80, 255])),
            (object.center, Rgb([255, 255, 255])),
        ] {
            if let Some((x, y)) = to_canvas(point) {
                fill(&mut canvas, (x - 3).max(0) as u32, (y - 3).max(0) as u32, 7, 7, mark);
            }
        }
        if let Some((x, y)) = corners.iter().flatten().min_by_key(|(x, y)| (*y, *x)) {
            text(&mut canvas, *x, *y - 16, &object.label, 2, colour);
        }
    }
    canvas.save(out).with_context(|| format!("writing {}", out.display()))?;
    Ok(outcome.objects)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn the_shipped_parameters_file_is_the_defaults() {
        let config = load_config(Some(&root().join("configs/annotate/default.toml"))).unwrap();
        assert_eq!(config, AnnotateConfig::default());
        let bad = std::env::temp_dir().join(format!("spear-annotate-bad-{}.toml", std::process::id()));
        std::fs::write(&bad, "[geometry]\nstd_ratio = -1.0\n").unwrap();
        let error = format!("{:#}", load_config(Some(&bad)).unwrap_err());
        assert!(error.contains("std_ratio") && error.contains(".toml"), "{error}");
        std::fs::write(&bad, "[qa]\nmax_pair = 3\n").unwrap();
        let error = format!("{:#}", load_config(Some(&bad)).unwrap_err());
        assert!(error.contains("max_pair"), "{error}");
        let _ = std::fs::remove_file(&bad);
    }

    #[test]
    fn preview_draws_the_moge_scene() {
        // The MoGe-style fixture laid out as the annotator expects.
        let fixture = root().join("crates/spear-annotate/tests/fixtures/moge");
        let dir = std::env::temp_dir().join(format!("spear-annotate-preview-{}", std::process::id()));
        for sub in ["images", "points/scene", "masks/scene"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::copy(fixture.join("image.jpg"), dir.join("images/scene.jpg")).unwrap();
        for f in ["points.exr", "mask.png", "fov.json"] {
            std::fs::copy(fixture.join(f), dir.join("points/scene").join(f)).unwrap();
        }
        for f in ["1.png", "2.png"] {
            std::fs::copy(fixture.join("masks").join(f), dir.join("masks/scene").join(f)).unwrap();
        }
        std::fs::write(dir.join("labels.json"), r#"{"scene": {"1": "red box", "2": "blue box"}}"#).unwrap();
        let inputs = Inputs {
            images: dir.join("images"),
            points: dir.join("points"),
            masks: dir.join("masks"),
            labels: Some(dir.join("labels.json")),
        };
        let out = dir.join("preview.png");
        let objects = preview(&inputs, "scene", &AnnotateConfig::default(), &out).unwrap();
        assert_eq!(objects.iter().map(|o| o.label.as_str()).collect::<Vec<_>>(), ["red box", "blue box"]);
        let png = image::open(&out).unwrap().to_rgb8();
        assert_eq!(png.dimensions(), (640, 480));
        // The first object's colour is on its box edges.
        assert!(png.pixels().filter(|p| **p == COLOURS[0]).count() > 500);
        let error = preview(&inputs, "nope", &AnnotateConfig::default(), &out).unwrap_err().to_string();
        assert!(error.contains("no image with key `nope`"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
