//! The annotation run: every image of a folder, with its point map and instance masks, into
//! sharded JSON-lines examples (`spear_data::vqa::VqaExample`, one per line) and a manifest.
//!
//! Layout of the inputs, by image key (the image's path under `images/` without extension, e.g.
//! `kitchen/0001`): `images/<key>.{jpg,jpeg,png}`, `points/<key>/` (see [`crate::moge`]),
//! `masks/<key>.png | <key>.json | <key>/` (see [`crate::instances`]) and an optional labels file.
//!
//! Output: `shard-00000.jsonl`, … (`shard_size` images each, in key order) and beside each a
//! `shard-00000.json` with its statistics and its *fingerprint* — a hash of the crate version, the
//! parameters and every input byte it was made from; then `manifest.json` (parameters, totals per family, skipped
//! objects and images by reason, errors, shards). Every file is written to a temporary name and
//! renamed (after an fsync); a shard's old statistics are deleted before its new lines are written
//! and the new statistics (with the lines' SHA-256) written after, and `manifest.json` is removed
//! when a run starts and written when it ends — so an interrupted run leaves whole shards and no
//! stale manifest. Re-running reuses a shard only when its fingerprint (which also covers where the
//! examples say the images are) and its lines' hash still match and it had no input errors; the
//! rest are redone. Two runs must not write to the same folder at once.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spear_data::vqa::VqaExample;

use crate::geometry::{GeometryConfig, ObjectGeometry, SkipReason, erode, object_geometry};
use crate::instances::{Labels, find_masks, read_instances};
use crate::moge::{InputError, PointMap, file_error};
use crate::qa::{QaConfig, View, draw_pairs, image_rng};

/// Everything that decides the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnnotateConfig {
    /// Seed of the question draws (each image's draws depend only on it and the image's key).
    pub seed: u64,
    /// Images per output shard.
    pub shard_size: usize,
    /// Per-object geometry.
    pub geometry: GeometryConfig,
    /// Question drawing.
    pub qa: QaConfig,
}

impl Default for AnnotateConfig {
    fn default() -> Self {
        Self { seed: 0, shard_size: 1000, geometry: GeometryConfig::default(), qa: QaConfig::default() }
    }
}

impl AnnotateConfig {
    /// Checks every parameter.
    pub fn validate(&self) -> Result<(), String> {
        self.geometry.validate()?;
        if self.shard_size == 0 {
            return Err("shard_size must be ≥ 1".into());
        }
        self.qa.validate()
    }
}

/// Where the inputs are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    /// Images.
    pub images: PathBuf,
    /// Point maps, one folder per image.
    pub points: PathBuf,
    /// Instance masks.
    pub masks: PathBuf,
    /// Labels file, if any.
    pub labels: Option<PathBuf>,
}

/// Counts of a shard or a whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Images seen.
    pub images: usize,
    /// Images with at least one example.
    pub annotated_images: usize,
    /// Examples written.
    pub examples: usize,
    /// Question–answer pairs written.
    pub pairs: usize,
    /// Objects with a box (asked about or not).
    pub objects: usize,
    /// Pairs per family.
    pub tasks: BTreeMap<String, usize>,
    /// Objects skipped, by reason.
    pub skipped_objects: BTreeMap<String, usize>,
    /// Images skipped, by reason.
    pub skipped_images: BTreeMap<String, usize>,
    /// Images whose inputs are unusable: `(key, error)`.
    pub errors: Vec<(String, String)>,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.images += other.images;
        self.annotated_images += other.annotated_images;
        self.examples += other.examples;
        self.pairs += other.pairs;
        self.objects += other.objects;
        for (into, from) in [
            (&mut self.tasks, &other.tasks),
            (&mut self.skipped_objects, &other.skipped_objects),
            (&mut self.skipped_images, &other.skipped_images),
        ] {
            for (k, v) in from {
                *into.entry(k.clone()).or_default() += v;
            }
        }
        self.errors.extend(other.errors.iter().cloned());
    }
}

/// A shard's statistics file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardStats {
    /// Hash of the parameters and of the shard's inputs.
    pub fingerprint: String,
    /// `(key, SHA-256 of its inputs)` of each image.
    pub images: Vec<(String, String)>,
    /// SHA-256 of the shard's `.jsonl`: it is reused only if the file is still exactly that.
    pub jsonl_sha256: String,
    /// Its counts.
    pub counts: Counts,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The crate version that wrote it.
    pub generator: String,
    /// Parameters.
    pub config: AnnotateConfig,
    /// Inputs.
    pub inputs: Inputs,
    /// Totals.
    pub counts: Counts,
    /// Shard files, in order.
    pub shards: Vec<String>,
    /// `(key, SHA-256 of its inputs)` of every image, in key order.
    pub input_hashes: Vec<(String, String)>,
    /// Hash of all shards' fingerprints: equal manifests, equal data.
    pub fingerprint: String,
    /// Shards reused from an earlier run.
    pub reused_shards: usize,
}

/// A run's failure (per-image input problems are counted in the manifest instead).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad parameters.
    #[error("annotation parameters: {0}")]
    Config(String),
    /// An input folder or the labels file is unusable.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Writing the output failed.
    #[error("{path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One image to annotate.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageItem {
    /// Its key.
    pub key: String,
    /// Its file.
    pub path: PathBuf,
}

/// The images under `dir` (jpg, jpeg, png; recursively), sorted by key.
pub fn discover_images(dir: &Path) -> Result<Vec<ImageItem>, InputError> {
    let mut items = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|e| file_error(&folder, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
            {
                let relative = path.strip_prefix(dir).expect("under dir").with_extension("");
                let key = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                items.push(ImageItem { key, path });
            }
        }
    }
    items.sort_by(|a, b| a.key.cmp(&b.key));
    if let Some(w) = items.windows(2).find(|w| w[0].key == w[1].key) {
        return Err(file_error(
            &w[1].path,
            format!("two images have the key `{}` ({})", w[0].key, w[0].path.display()),
        ));
    }
    Ok(items)
}

/// One image's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOutcome {
    /// Its examples.
    pub examples: Vec<VqaExample>,
    /// The objects that got a box.
    pub objects: Vec<ObjectGeometry>,
    /// The camera and image size (absent when the image was skipped).
    pub view: Option<View>,
    /// Its counts.
    pub counts: Counts,
}

/// The files an image's annotation reads, for the fingerprint.
fn input_files(item: &ImageItem, inputs: &Inputs) -> Vec<PathBuf> {
    let mut files = vec![item.path.clone()];
    let points = inputs.points.join(&item.key);
    for name in ["points.exr", "points.npy", "mask.png", "fov.json", "intrinsics.json"] {
        files.push(points.join(name));
    }
    if let Some(masks) = find_masks(&inputs.masks, &item.key) {
        if masks.is_dir() {
            let mut inner: Vec<PathBuf> =
                std::fs::read_dir(&masks).into_iter().flatten().flatten().map(|e| e.path()).collect();
            inner.sort();
            files.extend(inner);
        } else {
            files.push(masks);
        }
    }
    files
}

fn hash_inputs(item: &ImageItem, inputs: &Inputs, labels: &Labels) -> String {
    let mut hasher = Sha256::new();
    for file in input_files(item, inputs) {
        // Absent optional files hash as absent; unreadable ones surface when annotating.
        if let Ok(bytes) = std::fs::read(&file) {
            hasher.update(file.file_name().unwrap_or_default().as_encoded_bytes());
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
    }
    hasher.update(serde_json::to_vec(&labels.0.get(&item.key)).expect("labels serialise"));
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Annotates one image; `image_ref` is how its examples name it. `Ok` with a skipped-image count
/// when its point map or masks are missing; `Err` when they are unusable.
pub fn annotate_image(
    item: &ImageItem,
    inputs: &Inputs,
    labels: &Labels,
    config: &AnnotateConfig,
    image_ref: &Path,
) -> Result<ImageOutcome, InputError> {
    config.validate().map_err(InputError::Parameters)?;
    let mut counts = Counts { images: 1, ..Counts::default() };
    let points_dir = inputs.points.join(&item.key);
    let masks = find_masks(&inputs.masks, &item.key);
    let missing = if !points_dir.is_dir() {
        Some("missing_points")
    } else {
        masks.is_none().then_some("missing_masks")
    };
    if let Some(reason) = missing {
        counts.skipped_images.insert(reason.into(), 1);
        return Ok(ImageOutcome { examples: Vec::new(), objects: Vec::new(), view: None, counts });
    }
    let map = PointMap::read_dir(&points_dir)?;
    // The image may be larger or smaller than the point map (MoGe's --resize), but not another
    // shape: locations are fractions of the image.
    let (w, h) = image::image_dimensions(&item.path).map_err(|e| file_error(&item.path, e))?;
    let (w, h) = (w as usize, h as usize);
    if w.abs_diff(map.width * h / map.height.max(1)) > 1 + w / 100 {
        return Err(file_error(
            &item.path,
            format!(
                "{h}×{w} (height × width) is not the point map's {}×{} shape, so image locations would not match",
                map.height, map.width
            ),
        ));
    }
    let masks = masks.expect("checked");
    let instances = read_instances(&masks, Some([map.height, map.width]))?;
    let mut skip = |reason: SkipReason| *counts.skipped_objects.entry(reason.name().into()).or_default() += 1;
    // Labelled instances with a usable, non-empty mask; labels compared case-insensitively.
    let mut named = Vec::new();
    for instance in instances {
        let label = labels.get(&item.key, &instance.id).map(str::to_owned).or(instance.label.clone());
        let Some(label) = label.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()) else {
            skip(SkipReason::NoLabel);
            continue;
        };
        match instance.mask {
            None => skip(SkipReason::UnsupportedMask),
            Some(mask) if mask.area() == 0 => skip(SkipReason::EmptyMask),
            Some(mask) => named.push((label, instance.id, mask)),
        }
    }
    let mut occurrences: BTreeMap<String, usize> = BTreeMap::new();
    for (label, ..) in &named {
        *occurrences.entry(label.to_lowercase()).or_default() += 1;
    }
    let mut objects = Vec::new();
    for (label, id, mask) in &named {
        if occurrences[&label.to_lowercase()] > 1 {
            skip(SkipReason::DuplicateLabel);
            continue;
        }
        let pixels = erode(&mask.pixels, map.width, config.geometry.erode_px);
        let cloud = map.object_cloud(&pixels, &masks)?;
        match object_geometry(id, label, &cloud.points, &config.geometry) {
            Ok(object) => objects.push(object),
            Err(reason) => skip(reason),
        }
    }
    counts.objects = objects.len();
    let view = View { intrinsics: map.intrinsics, height: map.height, width: map.width };
    let mut rng = image_rng(config.seed, &item.key);
    let mut examples = Vec::new();
    for _ in 0..config.qa.examples_per_image {
        let drawn = draw_pairs(&objects, &view, &config.qa, &mut rng);
        if drawn.is_empty() {
            break;
        }
        for pair in &drawn {
            *counts.tasks.entry(pair.task.name().into()).or_default() += 1;
        }
        counts.pairs += drawn.len();
        examples.push(VqaExample {
            image: image_ref.to_path_buf(),
            pairs: drawn.into_iter().map(|d| d.pair).collect(),
        });
    }
    counts.examples = examples.len();
    counts.annotated_images = usize::from(!examples.is_empty());
    Ok(ImageOutcome { examples, objects, view: Some(view), counts })
}

/// `target` relative to the folder `base` (both made absolute).
fn relative_path(base: &Path, target: &Path) -> PathBuf {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (base, target) = (absolute(base), absolute(target));
    let (b, t): (Vec<Component<'_>>, Vec<Component<'_>>) =
        (base.components().collect(), target.components().collect());
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return target;
    }
    let mut out: PathBuf = b[common..].iter().map(|_| Component::ParentDir).collect();
    out.extend(&t[common..]);
    out
}

/// Writes `bytes` to a temporary file, flushes it to disk, and renames it to `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    use std::io::Write;
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let fail = |source| RunError::Output { path: path.to_path_buf(), source };
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

fn remove_if_present(path: &Path) -> Result<(), RunError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(RunError::Output { path: path.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Annotates every image under `inputs.images` into `out`; `progress(done, total)` after each
/// image (from worker threads).
pub fn run(
    inputs: &Inputs,
    out: &Path,
    config: &AnnotateConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Manifest, RunError> {
    config.validate().map_err(RunError::Config)?;
    for dir in [&inputs.images, &inputs.points, &inputs.masks] {
        if !dir.is_dir() {
            return Err(file_error(dir, "not a folder").into());
        }
    }
    let labels = inputs.labels.as_deref().map(Labels::read).transpose()?.unwrap_or_default();
    let items = discover_images(&inputs.images)?;
    std::fs::create_dir_all(out).map_err(|source| RunError::Output { path: out.to_path_buf(), source })?;
    let config_json = serde_json::to_string(config).expect("config serialises");
    let done = AtomicUsize::new(0);
    let mut counts = Counts::default();
    let (mut shards, mut fingerprints, mut reused) = (Vec::new(), Sha256::new(), 0);
    let mut input_hashes = Vec::with_capacity(items.len());
    // A manifest describes a finished run only.
    remove_if_present(&out.join("manifest.json"))?;
    for (index, chunk) in items.chunks(config.shard_size).enumerate() {
        let name = format!("shard-{index:05}");
        let (jsonl, stats_path) = (out.join(format!("{name}.jsonl")), out.join(format!("{name}.json")));
        let hashes: Vec<(String, String)> =
            chunk.par_iter().map(|item| (item.key.clone(), hash_inputs(item, inputs, &labels))).collect();
        // Where the examples say each image is.
        let image_refs: Vec<PathBuf> = chunk.iter().map(|item| relative_path(out, &item.path)).collect();
        let mut hasher = Sha256::new();
        // A new release may phrase or compute differently: its shards are not reused.
        hasher.update(env!("CARGO_PKG_VERSION"));
        hasher.update(&config_json);
        for ((key, hash), image_ref) in hashes.iter().zip(&image_refs) {
            hasher.update(key.as_bytes());
            hasher.update(hash.as_bytes());
            // Moving the images or the output changes the references.
            hasher.update(image_ref.as_os_str().as_encoded_bytes());
        }
        let fingerprint = hex(&hasher.finalize());
        // Reused only when made from the same inputs and parameters, without errors (which may
        // have been passing), and when the lines are still the ones the statistics describe.
        let previous: Option<ShardStats> = std::fs::read_to_string(&stats_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .filter(|s: &ShardStats| s.fingerprint == fingerprint && s.counts.errors.is_empty())
            .filter(|s| std::fs::read(&jsonl).is_ok_and(|bytes| sha256_hex(&bytes) == s.jsonl_sha256));
        let stats = if let Some(stats) = previous {
            reused += 1;
            progress(done.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len(), items.len());
            stats
        } else {
            let outcomes: Vec<(String, Result<ImageOutcome, InputError>)> = chunk
                .par_iter()
                .zip(image_refs.par_iter())
                .map(|(item, image_ref)| {
                    let outcome = annotate_image(item, inputs, &labels, config, image_ref);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, items.len());
                    (item.key.clone(), outcome)
                })
                .collect();
            let mut shard_counts = Counts::default();
            let mut lines = String::new();
            for (key, outcome) in outcomes {
                match outcome {
                    Ok(outcome) => {
                        shard_counts.add(&outcome.counts);
                        for example in &outcome.examples {
                            lines.push_str(&serde_json::to_string(example).expect("examples serialise"));
                            lines.push('\n');
                        }
                    }
                    Err(e) => {
                        shard_counts.images += 1;
                        shard_counts.errors.push((key, e.to_string()));
                    }
                }
            }
            // The old statistics go first: lines without matching statistics are never reused.
            remove_if_present(&stats_path)?;
            write_atomically(&jsonl, lines.as_bytes())?;
            let stats = ShardStats {
                fingerprint: fingerprint.clone(),
                images: hashes,
                jsonl_sha256: sha256_hex(lines.as_bytes()),
                counts: shard_counts,
            };
            write_atomically(&stats_path, &serde_json::to_vec_pretty(&stats).expect("stats serialise"))?;
            stats
        };
        counts.add(&stats.counts);
        fingerprints.update(stats.fingerprint.as_bytes());
        input_hashes.extend(stats.images.iter().cloned());
        shards.push(format!("{name}.jsonl"));
    }
    // Shards of an earlier, larger run are not part of this one.
    for index in shards.len().. {
        let stale = [out.join(format!("shard-{index:05}.jsonl")), out.join(format!("shard-{index:05}.json"))];
        if !stale.iter().any(|p| p.exists()) {
            break;
        }
        for path in &stale {
            remove_if_present(path)?;
        }
    }
    let manifest = Manifest {
        generator: format!("spear-annotate {}", env!("CARGO_PKG_VERSION")),
        config: config.clone(),
        inputs: inputs.clone(),
        counts,
        shards,
        input_hashes,
        fingerprint: hex(&fingerprints.finalize()),
        reused_shards: reused,
    };
    write_atomically(
        &out.join("manifest.json"),
        &serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
    )?;
    Ok(manifest)
}
