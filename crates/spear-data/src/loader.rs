//! Training batches from a weighted mixture of RLDS datasets: deterministic for a seed, bounded in
//! memory, decoded in parallel, prefetched, and resumable.
//!
//! * **Mixture** ([`MixtureConfig`], TOML): datasets with weights (the paper's Table 4 in
//!   `configs/data/oxe_mixture.toml`) and the loader's settings.
//! * **Sampling**: each dataset's episodes are visited in a fresh seeded permutation per epoch
//!   (episode-level shuffling, by random access through each shard's record offsets). The next
//!   episode always comes from the dataset furthest below its share of the frames read so far
//!   (`weight × total − frames`), so each dataset's share of training frames follows its weight
//!   exactly, whatever its episode lengths (skipped episodes cost nothing; a dataset with no usable
//!   episode is dropped). Every frame with a real first action enters a step-shuffle buffer
//!   bounded by the encoded bytes it holds (`shuffle_buffer_mb`); samples are drawn from it
//!   uniformly at random.
//! * **Batches** ([`Batch`]): plain arrays — images resized without distortion (280×210 external,
//!   112×112 wrist, black when missing), state, 5 Hz action chunks, masks, instructions — decoded by
//!   a rayon pool and prefetched by a producer thread.
//! * **Resuming**: every batch carries the [`LoaderState`] after it; [`Loader::resume`] continues
//!   the exact same stream from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::images::{self, Augment, Fit, Image};
use crate::oxe::{Camera, DatasetSpec, STATE_DIM, StandardEpisode, standardize};
use crate::resample::{ACTION_DIM, ChunkConfig};
use crate::rlds::{EpisodeSource, RldsDataset, RldsError};
use crate::stats::{AngleScale, Normalizer};
use crate::tfrecord::{read_record_at, record_offsets};

/// One dataset of a mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixtureEntry {
    /// RLDS name (`droid`) or Table 4 name (`bridge`).
    pub name: String,
    /// Sampling weight (share of training frames, relative to the others).
    pub weight: f64,
    /// The `NAME/VERSION` folder; default: the newest version under `root/NAME`.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// Loader settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Samples per batch.
    pub batch_size: usize,
    /// Memory cap of the step-shuffle buffer, in MB of encoded episodes held.
    pub shuffle_buffer_mb: usize,
    /// Decoding threads (0: one per core).
    pub workers: usize,
    /// Batches decoded ahead.
    pub prefetch: usize,
    /// External camera `[width, height]`.
    pub external_size: [usize; 2],
    /// Wrist camera `[width, height]`.
    pub wrist_size: [usize; 2],
    /// Crop or pad to the target aspect ratio.
    pub fit: Fit,
    /// Actions per chunk.
    pub horizon: usize,
    /// Action rate, Hz.
    pub rate_hz: f64,
    /// Training augmentations (all off by default).
    pub augment: Augment,
    /// Skip episodes without an instruction.
    pub drop_empty_instructions: bool,
    /// Skip (and count) episodes that fail to read or standardise, instead of stopping.
    pub skip_bad_episodes: bool,
    /// How action translations, state positions and rotation angles are normalised (off by default).
    pub normalization: NormalizationConfig,
    /// Episodes held out for validation (none by default).
    pub holdout: Holdout,
}

/// `[loader.holdout]`: a fixed share of each dataset's episodes, chosen by a hash of the dataset's
/// name and the episode's index (so the same episodes whatever the seed, the mixture or the
/// machine), set apart for validation. A training loader reads the rest; a validation loader
/// (`held_out = true`) reads only those. With `fraction` 0 nothing is held out and either reads
/// every episode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Holdout {
    /// Share of the episodes held out, in [0, 1).
    pub fraction: f64,
    /// Read the held-out episodes instead of the others.
    pub held_out: bool,
}

impl Holdout {
    /// Whether episode `episode` of dataset `name` is held out.
    pub fn is_held_out(&self, name: &str, episode: u64) -> bool {
        // FNV-1a of the name, mixed with the index by splitmix64: a fixed, portable hash.
        use crate::hash::{GOLDEN, fnv1a, mix64};
        let h = mix64(fnv1a(name.as_bytes()) ^ episode.wrapping_mul(GOLDEN));
        ((h >> 11) as f64 / (1u64 << 53) as f64) < self.fraction
    }

    /// The episodes of `0..count` this loader reads.
    fn select(&self, name: &str, count: u64) -> Vec<u64> {
        (0..count).filter(|&e| self.fraction <= 0.0 || self.is_held_out(name, e) == self.held_out).collect()
    }
}

/// A normaliser choice for one quantity (the paper's Table 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormalizerKind {
    /// Values as they are.
    #[default]
    None,
    /// `[q01, q99] → [−1, 1]` with the mixture's global percentiles (the paper's default).
    Quantile,
    /// `[low, high] → [−1, 1]` with constant bounds (the best translation normaliser in Table 10).
    MinMaxConst,
    /// `(x − mean) / std` (the ablation).
    MeanStd,
}

/// `[loader.normalization]`: which normaliser for action translations and for state positions,
/// from the statistics file `spear data stats` writes (quantile, mean-std) or constant bounds,
/// and whether action rotations are angle-scaled ([`crate::stats::AngleScale`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizationConfig {
    /// The statistics file (relative to the mixture file).
    pub stats: Option<PathBuf>,
    /// For the translation of every action.
    pub actions: NormalizerKind,
    /// For the state's position.
    pub state: NormalizerKind,
    /// `[low, high]` per dimension for `min_max_const` actions.
    pub action_bounds: Option<[[f64; 3]; 2]>,
    /// `[low, high]` per dimension for `min_max_const` states.
    pub state_bounds: Option<[[f64; 3]; 2]>,
    /// Action rotations: `none`, or `angle_quantile` (the 99th-percentile delta angle scaled to
    /// `rotation_angle_deg`).
    pub rotations: RotationNormalizerKind,
    /// The angle, degrees, that `angle_quantile` maps the 99th-percentile rotation to.
    pub rotation_angle_deg: Option<f64>,
}

/// How action rotations are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationNormalizerKind {
    /// Quaternions as they are (the paper).
    #[default]
    None,
    /// Angles scaled about their axes so that the mixture's 99th percentile becomes
    /// `rotation_angle_deg` ([`crate::stats::AngleScale`]).
    AngleQuantile,
}

impl NormalizationConfig {
    /// The normalisers, reading the statistics file when a kind needs it.
    pub fn build(&self) -> Result<Normalization, String> {
        let needs_stats = [self.actions, self.state]
            .iter()
            .any(|k| matches!(k, NormalizerKind::Quantile | NormalizerKind::MeanStd))
            || self.rotations == RotationNormalizerKind::AngleQuantile;
        let stats: Option<MixtureStats> = match (&self.stats, needs_stats) {
            (Some(path), true) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
                Some(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?)
            }
            (None, true) => {
                return Err(
                    "normalization: quantile, mean_std and angle_quantile need `stats` (from `spear data stats`)"
                        .into(),
                );
            }
            _ => None,
        };
        let make = |kind: NormalizerKind,
                    of: fn(&MixtureStats) -> &crate::stats::Stats,
                    bounds: Option<[[f64; 3]; 2]>,
                    what: &str| {
            Ok::<_, String>(match kind {
                NormalizerKind::None => None,
                NormalizerKind::Quantile => {
                    Some(Normalizer::quantile(of(stats.as_ref().expect("read above"))))
                }
                NormalizerKind::MeanStd => {
                    Some(Normalizer::mean_std(of(stats.as_ref().expect("read above"))))
                }
                NormalizerKind::MinMaxConst => {
                    let [low, high] = bounds
                        .ok_or_else(|| format!("normalization: min_max_const {what} need `{what}_bounds`"))?;
                    Some(Normalizer::min_max_const(low.to_vec(), high.to_vec()).map_err(|e| e.to_string())?)
                }
            })
        };
        let action_rotation = match self.rotations {
            RotationNormalizerKind::None => None,
            RotationNormalizerKind::AngleQuantile => {
                let stats = stats.as_ref().expect("read above");
                let angles = stats.action_rotation_angle.as_ref().ok_or_else(|| {
                    format!(
                        "normalization: {:?} has no rotation statistics (written by an older `spear data stats`: \
                         run it again)",
                        self.stats
                    )
                })?;
                let target = self.rotation_angle_deg.unwrap_or(90.0);
                Some(AngleScale::quantile(angles, target.to_radians()).map_err(|e| e.to_string())?)
            }
        };
        let normalization = Normalization {
            action_translation: make(self.actions, |s| &s.action_translation, self.action_bounds, "action")?,
            state_position: make(self.state, |s| &s.state_position, self.state_bounds, "state")?,
            action_rotation,
        };
        normalization.validate().map_err(|e| format!("normalization from {:?}: {e}", self.stats))?;
        Ok(normalization)
    }
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            batch_size: 32,
            shuffle_buffer_mb: 1024,
            workers: 0,
            prefetch: 4,
            external_size: [280, 210],
            wrist_size: [112, 112],
            fit: Fit::Crop,
            horizon: 5,
            rate_hz: 5.0,
            augment: Augment::default(),
            drop_empty_instructions: true,
            skip_bad_episodes: true,
            normalization: NormalizationConfig::default(),
            holdout: Holdout::default(),
        }
    }
}

/// A mixture file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixtureConfig {
    /// Folder holding the datasets (`root/NAME/VERSION`); relative to the file.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// The split to read.
    #[serde(default = "default_split")]
    pub split: String,
    /// The datasets.
    #[serde(rename = "dataset")]
    pub datasets: Vec<MixtureEntry>,
    /// Loader settings.
    #[serde(default)]
    pub loader: LoaderConfig,
    /// The file it was read from (for errors; `None` when built in code).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

fn default_split() -> String {
    "train".into()
}

/// Errors of the mixture file and the loader.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// The mixture file is unreadable or invalid.
    #[error("{path}: {problem}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A dataset failed to open or an episode to read (in fail mode).
    #[error(transparent)]
    Data(#[from] RldsError),
    /// Every dataset is exhausted of usable episodes.
    #[error("no usable episode in any dataset of the mixture ({0})")]
    Empty(String),
}

impl MixtureConfig {
    /// Reads a TOML mixture; relative paths are resolved against its folder.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, LoaderError> {
        Self::from_file_with_root(path, None)
    }

    /// [`MixtureConfig::from_file`] with `root` (when given) in place of the file's own.
    pub fn from_file_with_root(path: impl AsRef<Path>, root: Option<&Path>) -> Result<Self, LoaderError> {
        let path = path.as_ref();
        let fail = |problem: String| LoaderError::Config { path: path.to_path_buf(), problem };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let mut config: MixtureConfig = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.root = root.map(Path::to_path_buf).or_else(|| config.root.map(|r| base.join(r)));
        for entry in &mut config.datasets {
            entry.path = entry.path.take().map(|p| base.join(p));
        }
        let stats = &mut config.loader.normalization.stats;
        *stats = stats.take().map(|p| base.join(p));
        config.validate().map_err(fail)?;
        config.file = Some(path.to_path_buf());
        Ok(config)
    }

    /// An error about this mixture, naming its file.
    fn error(&self, problem: String) -> LoaderError {
        LoaderError::Config { path: self.file.clone().unwrap_or_else(|| PathBuf::from("mixture")), problem }
    }

    /// Checks weights, names and sizes.
    pub fn validate(&self) -> Result<(), String> {
        if self.datasets.is_empty() {
            return Err("no [[dataset]]".into());
        }
        for entry in &self.datasets {
            if !(entry.weight.is_finite() && entry.weight >= 0.0) {
                return Err(format!(
                    "dataset `{}`: weight {} is not a non-negative number",
                    entry.name, entry.weight
                ));
            }
            let spec = resolve_spec(&entry.name)?;
            if let Some(reason) = spec.excluded {
                return Err(format!("dataset `{}` cannot be used: {reason}", entry.name));
            }
            if entry.path.is_none() && self.root.is_none() {
                return Err(format!("dataset `{}` has no `path` and the mixture no `root`", entry.name));
            }
        }
        if self.datasets.iter().all(|e| e.weight == 0.0) {
            return Err("every weight is 0".into());
        }
        let l = &self.loader;
        if l.batch_size == 0 || l.horizon == 0 || !l.rate_hz.is_finite() || l.rate_hz <= 0.0 {
            return Err("loader: batch_size and horizon must be positive, rate_hz finite and > 0".into());
        }
        l.augment.validate().map_err(|e| format!("loader.augment: {e}"))?;
        if l.external_size.contains(&0) || l.wrist_size.contains(&0) {
            return Err("loader: image sizes must be positive".into());
        }
        if !(0.0..1.0).contains(&l.holdout.fraction) {
            return Err(format!("loader.holdout.fraction: {} is not in [0, 1)", l.holdout.fraction));
        }
        Ok(())
    }

    /// The version folder of `entry`: its `path`, or the newest version under `root/NAME`.
    pub fn dataset_dir(&self, entry: &MixtureEntry) -> Result<PathBuf, String> {
        if let Some(path) = &entry.path {
            return Ok(path.clone());
        }
        let spec = resolve_spec(&entry.name)?;
        let dir = self.root.as_ref().expect("validated").join(spec.name);
        let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .filter(|e| e.path().join("dataset_info.json").is_file())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let version = name.split('.').map(str::parse).collect::<Result<Vec<u64>, _>>().ok()?;
                Some((version, e.path()))
            })
            .collect();
        versions.sort();
        versions
            .pop()
            .map(|(_, p)| p)
            .ok_or_else(|| format!("{}: no VERSION folder with a dataset_info.json", dir.display()))
    }
}

/// Opens a dataset of the mixture and checks that it is the registry entry's dataset and has every
/// step field the entry reads.
fn open_dataset(spec: &DatasetSpec, dir: &Path) -> Result<RldsDataset, LoaderError> {
    let dataset = RldsDataset::open(dir)?;
    let info = dir.join("features.json");
    let fail = |problem: String| LoaderError::Config { path: info.clone(), problem };
    if crate::oxe::spec(&dataset.name).is_none_or(|s| s.name != spec.name) {
        return Err(fail(format!("dataset `{}`, but the mixture names `{}` here", dataset.name, spec.name)));
    }
    for key in spec.fields_read() {
        match dataset.schema.field(key) {
            Some(f) if f.per_step => {}
            _ => {
                return Err(fail(format!(
                    "no step field `{key}`, which the registry entry of {} reads",
                    spec.name
                )));
            }
        }
    }
    Ok(dataset)
}

/// The registry entry for a mixture name (RLDS or Table 4 name).
fn resolve_spec(name: &str) -> Result<DatasetSpec, String> {
    crate::oxe::spec_for_mixture(name)
        .ok_or_else(|| format!("dataset `{name}` is not in the registry (crates/spear-data/src/oxe.rs)"))
}

/// A dataset opened for sampling.
struct Source {
    spec: DatasetSpec,
    dataset: RldsDataset,
    split: usize,
    weight: f64,
    /// First global episode index of each shard.
    shard_starts: Vec<u64>,
    /// The episodes this loader reads (all, or one side of the holdout), ascending.
    selected: Vec<u64>,
    /// Record offsets of each shard, read on first use.
    offsets: HashMap<usize, Vec<u64>>,
}

impl Source {
    /// How many episodes this loader reads.
    fn episodes(&self) -> u64 {
        self.selected.len() as u64
    }

    fn read(&mut self, episode: u64) -> Result<StandardEpisode, RldsError> {
        let shard = self.shard_starts.partition_point(|&s| s <= episode) - 1;
        let record = episode - self.shard_starts[shard];
        let path = self.dataset.splits[self.split].shards[shard].path.clone();
        let offsets = match self.offsets.entry(shard) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(record_offsets(&path)?),
        };
        let offset = *offsets.get(record as usize).ok_or_else(|| RldsError::Info {
            path: path.clone(),
            problem: format!("holds {} records, but dataset_info.json says more", offsets.len()),
        })?;
        let bytes = read_record_at(&path, offset, record)?;
        // Only the fields the registry reads are decoded: other cameras, embeddings etc. are skipped.
        let source = EpisodeSource { file: path, record, offset };
        let episode = self.dataset.decode_only(&bytes, source, &self.spec.fields_read())?;
        let mut standard = standardize(&self.spec, episode)?;
        // Only the cameras are read after this: free the rest.
        let cameras = [Some(self.spec.external), self.spec.wrist];
        standard.episode.steps.retain(|key, _| cameras.contains(&Some(key.as_str())));
        Ok(standard)
    }
}

/// Where each dataset is in its episode order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Completed passes over the dataset.
    pub epoch: u64,
    /// Position in this epoch's permutation.
    pub position: u64,
    /// Frames taken from this dataset so far.
    pub frames: u64,
    /// Episodes skipped (unreadable, or without instruction when those are dropped).
    pub skipped: u64,
    /// Episodes used.
    pub usable: u64,
    /// Episodes skipped since the last usable one (twice the episode count drops the dataset).
    pub failed_in_a_row: u64,
    /// Frames skipped at batch time because an image would not decode.
    pub bad_frames: u64,
}

/// Everything needed to continue a loader's stream exactly: the random generator, each dataset's
/// cursor and the shuffle buffer's contents (by dataset, episode and frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoaderState {
    /// The generator, mid-stream.
    pub rng: ChaCha8Rng,
    /// One per dataset of the mixture, in its order.
    pub cursors: Vec<Cursor>,
    /// The buffer's frames, in order.
    pub buffer: Vec<BufferedFrame>,
    /// The id the next episode read into the buffer gets.
    pub next_insertion: u64,
    /// Batches produced.
    pub batches: u64,
    /// Each dataset's name and episode count when the state was taken (checked on resume).
    pub datasets: Vec<(String, u64)>,
}

/// A frame in the shuffle buffer, as the loader state records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferedFrame {
    /// Index of the dataset in the mixture.
    pub dataset: u32,
    /// Episode index in its split.
    pub episode: u64,
    /// Frame in the episode.
    pub frame: u32,
    /// Which read of the episode (frames of one read share its memory).
    pub insertion: u64,
}

/// A buffered frame.
struct Slot {
    dataset: u32,
    episode: u64,
    frame: u32,
    data: Arc<StandardEpisode>,
    /// Which read of the episode it belongs to: its bytes stay charged until the last frame of
    /// that read leaves the buffer, since the episode stays in memory until then.
    insertion: u64,
}

/// The sequential, deterministic half of the loader: which frames make each batch.
struct Sampler {
    sources: Vec<Source>,
    config: LoaderConfig,
    rng: ChaCha8Rng,
    cursors: Vec<Cursor>,
    buffer: Vec<Slot>,
    /// Per read episode in the buffer: its bytes and its frames still buffered.
    held: HashMap<u64, (usize, usize)>,
    /// Bytes of the episodes held.
    bytes: usize,
    next_insertion: u64,
    batches: u64,
    /// Each dataset's episode order for its current epoch.
    orders: Vec<Option<(u64, Vec<u64>)>>,
}

/// Bytes an episode holds in memory (encoded images, arrays), for the buffer's cap.
fn episode_bytes(episode: &StandardEpisode) -> usize {
    use crate::rlds::Values;
    let columns = episode.episode.steps.values().chain(episode.episode.metadata.values());
    columns
        .map(|c| match &c.values {
            Values::Bytes(v) => v.iter().map(Vec::len).sum(),
            Values::F32(v) => v.len() * 4,
            Values::F64(v) => v.len() * 8,
            Values::Int(v) => v.len() * 8,
            Values::Bool(v) => v.len(),
        })
        .sum()
}

impl Sampler {
    /// The episode order of `dataset` in `epoch`: a permutation seeded by (seed, dataset, epoch).
    fn order(&mut self, dataset: usize, epoch: u64) -> &[u64] {
        if self.orders[dataset].as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order: Vec<u64> = self.sources[dataset].selected.clone();
            let seed = self.config.seed
                ^ (dataset as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ epoch.rotate_left(32);
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            self.orders[dataset] = Some((epoch, order));
        }
        &self.orders[dataset].as_ref().expect("just set").1
    }

    /// The dataset furthest below its share of the frames read so far.
    fn next_dataset(&self) -> Option<usize> {
        let total: u64 = self.cursors.iter().map(|c| c.frames).sum();
        let weights: f64 = self.sources.iter().filter(|s| s.episodes() > 0).map(|s| s.weight).sum();
        (0..self.sources.len())
            .filter(|&d| {
                let s = &self.sources[d];
                s.episodes() > 0 && s.weight > 0.0 && self.cursors[d].failed_in_a_row < 2 * s.episodes()
            })
            .max_by(|&a, &b| {
                let deficit = |d: usize| {
                    self.sources[d].weight / weights * total as f64 - self.cursors[d].frames as f64
                };
                deficit(a).total_cmp(&deficit(b)).then(b.cmp(&a))
            })
    }

    fn insert(
        &mut self,
        dataset: u32,
        episode: u64,
        data: Arc<StandardEpisode>,
        frames: &[u32],
        insertion: u64,
    ) {
        // The frames' own bookkeeping counts too, so that no episode is free.
        let bytes = episode_bytes(&data) + frames.len() * std::mem::size_of::<Slot>();
        for &frame in frames {
            self.buffer.push(Slot { dataset, episode, frame, data: data.clone(), insertion });
        }
        self.held.insert(insertion, (bytes, frames.len()));
        self.bytes += bytes;
        self.next_insertion = self.next_insertion.max(insertion + 1);
    }

    /// Reads the next usable episode into the buffer.
    fn fill_one(&mut self) -> Result<(), LoaderError> {
        loop {
            let Some(d) = self.next_dataset() else {
                let skipped: Vec<String> = self
                    .sources
                    .iter()
                    .zip(&self.cursors)
                    .map(|(s, c)| format!("{}: {} skipped", s.spec.name, c.skipped))
                    .collect();
                return Err(LoaderError::Empty(skipped.join(", ")));
            };
            let (epoch, position) = (self.cursors[d].epoch, self.cursors[d].position);
            let episode = self.order(d, epoch)[position as usize];
            let cursor = &mut self.cursors[d];
            cursor.position += 1;
            if cursor.position == self.sources[d].episodes() {
                (cursor.epoch, cursor.position) = (cursor.epoch + 1, 0);
            }
            let config = ChunkConfig { horizon: self.config.horizon, rate_hz: self.config.rate_hz };
            let problem = match self.sources[d].read(episode) {
                Ok(data) if self.config.drop_empty_instructions && data.instruction.is_empty() => None,
                Ok(data) => {
                    // Frames whose first action is padding (the episode's last fifth of a second)
                    // have nothing to learn: left out, so that every sample has a real target.
                    let frames: Vec<u32> = (0..data.len())
                        .filter(|&f| data.trajectory.first_action_real(f, &config))
                        .map(|f| f as u32)
                        .collect();
                    if !frames.is_empty() {
                        let cursor = &mut self.cursors[d];
                        (cursor.frames, cursor.usable, cursor.failed_in_a_row) =
                            (cursor.frames + frames.len() as u64, cursor.usable + 1, 0);
                        self.insert(d as u32, episode, Arc::new(data), &frames, self.next_insertion);
                        return Ok(());
                    }
                    None
                }
                Err(e) if self.config.skip_bad_episodes => Some(e),
                Err(e) => return Err(e.into()),
            };
            if let Some(e) = problem {
                tracing_skip(&self.sources[d].spec, &e.to_string());
            }
            // Skipped episodes cost no frames, so the dataset is asked again until it delivers its
            // share of usable frames; one that yields nothing in twice its episode count (a run
            // that must hold a whole epoch) has no usable episode and is dropped.
            let cursor = &mut self.cursors[d];
            cursor.skipped += 1;
            cursor.failed_in_a_row += 1;
        }
    }

    /// Draws `n` frames from the buffer, refilling it up to its cap first.
    fn draw(&mut self, n: usize) -> Result<Vec<Slot>, LoaderError> {
        let cap = self.config.shuffle_buffer_mb.saturating_mul(1 << 20);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            while self.buffer.is_empty() || self.bytes < cap {
                self.fill_one()?;
            }
            let slot = self.buffer.swap_remove(self.rng.random_range(0..self.buffer.len()));
            let held = self.held.get_mut(&slot.insertion).expect("buffered frames are held");
            held.1 -= 1;
            if held.1 == 0 {
                self.bytes -= held.0;
                self.held.remove(&slot.insertion);
            }
            out.push(slot);
        }
        Ok(out)
    }

    fn state(&self) -> LoaderState {
        LoaderState {
            rng: self.rng.clone(),
            cursors: self.cursors.clone(),
            buffer: self
                .buffer
                .iter()
                .map(|s| BufferedFrame {
                    dataset: s.dataset,
                    episode: s.episode,
                    frame: s.frame,
                    insertion: s.insertion,
                })
                .collect(),
            next_insertion: self.next_insertion,
            datasets: self.sources.iter().map(|s| (s.spec.name.to_string(), s.episodes())).collect(),
            batches: self.batches,
        }
    }
}

fn tracing_skip(spec: &DatasetSpec, error: &str) {
    eprintln!("spear-data: skipping in {}: {error}", spec.name);
}

/// One training batch, as plain row-major arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Samples.
    pub size: usize,
    /// External images, `size × height × width × 3` (the configured external size).
    pub external: Vec<u8>,
    /// Wrist images, `size × height × width × 3`; black where `wrist_present` is false.
    pub wrist: Vec<u8>,
    /// Whether each sample's dataset has a wrist camera.
    pub wrist_present: Vec<bool>,
    /// Instructions.
    pub instructions: Vec<String>,
    /// States, `size × 8` (position normalised when the loader has a state normaliser).
    pub state: Vec<f32>,
    /// Action chunks, `size × horizon × 8` (translation normalised when it has an action normaliser).
    pub actions: Vec<f32>,
    /// `size × horizon`: real actions (false: padding past the episode's end).
    pub mask: Vec<bool>,
    /// Index of each sample's dataset in the mixture.
    pub dataset: Vec<u32>,
    /// Each sample's `(episode, frame)` in its dataset.
    pub source: Vec<(u64, u32)>,
    /// The loader's state after this batch: resume from it to continue after this batch.
    pub state_after: LoaderState,
}

/// Normalisers of states and actions: the translation / position (first three values) of each,
/// and the rotation of actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Normalization {
    /// For action translations.
    pub action_translation: Option<Normalizer>,
    /// For state positions.
    pub state_position: Option<Normalizer>,
    /// For action rotations (absent in files written before it existed: none).
    #[serde(default)]
    pub action_rotation: Option<AngleScale>,
}

/// Applies `normalizer` (or its inverse) to the first three values.
fn affine3(normalizer: &Option<Normalizer>, values: &mut [f32], undo: bool) {
    if let Some(n) = normalizer {
        let mut v: [f64; 3] = std::array::from_fn(|i| f64::from(values[i]));
        let done = if undo { n.denormalize(&mut v) } else { n.normalize(&mut v) };
        done.expect("normalisers of 3 dimensions are checked when set");
        values[..3].iter_mut().zip(v).for_each(|(x, y)| *x = y as f32);
    }
}

impl Normalization {
    /// Its file in an exported policy's folder: `spear train vla` writes it, `spear policy act`
    /// applies it.
    pub const FILE_NAME: &'static str = "normalization.json";

    /// Writes it as JSON to `path`.
    pub fn write_file(&self, path: &Path) -> Result<(), LoaderError> {
        let json = serde_json::to_string_pretty(self).expect("normalisers serialise");
        std::fs::write(path, json)
            .map_err(|e| LoaderError::Config { path: path.to_path_buf(), problem: e.to_string() })
    }

    /// Reads and checks a file [`Normalization::write_file`] wrote.
    pub fn read_file(path: &Path) -> Result<Self, LoaderError> {
        let fail = |problem: String| LoaderError::Config { path: path.to_path_buf(), problem };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let normalization: Self =
            serde_json::from_str(&text).map_err(|e| fail(format!("not a normalisation file: {e}")))?;
        normalization.validate().map_err(fail)?;
        Ok(normalization)
    }

    /// Normalises a state `[x, y, z, qw, qx, qy, qz, gripper]` in place.
    pub fn normalize_state(&self, state: &mut [f32]) {
        affine3(&self.state_position, state, false);
    }

    /// Normalises an action `[x, y, z, qw, qx, qy, qz, gripper]` in place.
    pub fn normalize_action(&self, action: &mut [f32]) {
        affine3(&self.action_translation, action, false);
        if let Some(scale) = &self.action_rotation {
            let q: [f32; 4] = action[3..7].try_into().expect("an 8-value action");
            action[3..7].copy_from_slice(&scale.normalize(q));
        }
    }

    /// Undoes [`Normalization::normalize_action`]: metres and the real rotation.
    pub fn denormalize_action(&self, action: &mut [f32]) {
        affine3(&self.action_translation, action, true);
        if let Some(scale) = &self.action_rotation {
            let q: [f32; 4] = action[3..7].try_into().expect("an 8-value action");
            action[3..7].copy_from_slice(&scale.denormalize(q));
        }
    }

    /// Checks that each normaliser has three dimensions and each scale is positive.
    pub fn validate(&self) -> Result<(), String> {
        for n in [&self.action_translation, &self.state_position].into_iter().flatten() {
            n.validate(3).map_err(|e| e.to_string())?;
        }
        if let Some(scale) = &self.action_rotation
            && !(scale.factor.is_finite() && scale.factor > 0.0)
        {
            return Err(format!("rotation angle factor {} is not a positive number", scale.factor));
        }
        Ok(())
    }
}

/// A sample decoded.
struct Decoded {
    wrist_present: bool,
    state: [f32; STATE_DIM],
    actions: Vec<f32>,
    mask: Vec<bool>,
    instruction: String,
}

/// The decoding half: images, chunks, normalisation.
struct Decoder {
    config: LoaderConfig,
    normalization: Normalization,
}

impl Decoder {
    /// Decodes one sample, its images straight into their slots of the batch (`external`,
    /// `wrist`; the wrist slot stays black when the dataset has no wrist camera).
    fn decode(
        &self,
        slot: &Slot,
        seed: u64,
        external: &mut [u8],
        wrist: &mut [u8],
    ) -> Result<Decoded, RldsError> {
        let c = &self.config;
        let episode = &slot.data;
        let frame = slot.frame as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut resize = |image: &Image, [w, h]: [usize; 2], out: &mut [u8]| {
            if c.augment.is_active() {
                out.copy_from_slice(&c.augment.apply(image, w, h, c.fit, &mut rng).pixels);
            } else {
                images::resize_into(image, out, w, h, c.fit);
            }
        };
        let image = episode.image(Camera::External, frame)?.expect("every entry has an external camera");
        resize(&image, c.external_size, external);
        let wrist_image = episode.image(Camera::Wrist, frame)?;
        if let Some(image) = &wrist_image {
            resize(image, c.wrist_size, wrist);
        }
        let mut state = episode.state(frame);
        let chunk = episode.chunk(frame, &ChunkConfig { horizon: c.horizon, rate_hz: c.rate_hz });
        let mut actions = chunk.actions;
        self.normalization.normalize_state(&mut state);
        for action in actions.chunks_exact_mut(ACTION_DIM) {
            self.normalization.normalize_action(action);
        }
        Ok(Decoded {
            wrist_present: wrist_image.is_some(),
            state,
            actions,
            mask: chunk.mask,
            instruction: episode.instruction.clone(),
        })
    }
}

/// The loader: a mixture opened and ready to produce batches.
pub struct Loader {
    sampler: Sampler,
    decoder: Arc<Decoder>,
    pool: rayon::ThreadPool,
}

impl Loader {
    /// Opens every dataset of `mixture` (reads `dataset_info.json` and `features.json`; shard
    /// offsets are read on first use).
    pub fn open(mixture: &MixtureConfig) -> Result<Self, LoaderError> {
        let fail = |problem: String| mixture.error(problem);
        mixture.validate().map_err(fail)?;
        let mut sources = Vec::new();
        let config_holdout = mixture.loader.holdout;
        for entry in &mixture.datasets {
            let spec = resolve_spec(&entry.name).map_err(fail)?;
            let dir = mixture.dataset_dir(entry).map_err(fail)?;
            let dataset = open_dataset(&spec, &dir)?;
            let split = dataset
                .splits
                .iter()
                .position(|s| s.name == mixture.split)
                .ok_or_else(|| dataset.split(&mixture.split).expect_err("absent"))?;
            let mut shard_starts = Vec::new();
            let mut episodes = 0;
            for shard in &dataset.splits[split].shards {
                shard_starts.push(episodes);
                episodes += shard.episodes;
            }
            let selected = config_holdout.select(spec.name, episodes);
            sources.push(Source {
                spec,
                dataset,
                split,
                weight: entry.weight,
                shard_starts,
                selected,
                offsets: HashMap::new(),
            });
        }
        if sources.iter().all(|s| s.episodes() == 0 || s.weight == 0.0) {
            return Err(LoaderError::Empty("no dataset with a positive weight has an episode".into()));
        }
        let config = mixture.loader.clone();
        let n = sources.len();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.workers)
            .thread_name(|i| format!("spear-data-{i}"))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let sampler = Sampler {
            sources,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            cursors: vec![
                Cursor {
                    epoch: 0,
                    position: 0,
                    frames: 0,
                    skipped: 0,
                    usable: 0,
                    failed_in_a_row: 0,
                    bad_frames: 0
                };
                n
            ],
            buffer: Vec::new(),
            held: HashMap::new(),
            bytes: 0,
            next_insertion: 0,
            batches: 0,
            orders: vec![None; n],
            config: config.clone(),
        };
        let normalization = config.normalization.build().map_err(fail)?;
        Self { sampler, decoder: Arc::new(Decoder { config, normalization: Normalization::default() }), pool }
            .with_normalization(normalization)
    }

    /// Opens `mixture` and continues from `state` (taken from a batch of a loader of the same
    /// mixture and settings).
    pub fn resume(mixture: &MixtureConfig, state: LoaderState) -> Result<Self, LoaderError> {
        let mut loader = Self::open(mixture)?;
        let s = &mut loader.sampler;
        let fail = |problem: String| LoaderError::Config { path: PathBuf::from("loader state"), problem };
        let now: Vec<(String, u64)> =
            s.sources.iter().map(|s| (s.spec.name.to_string(), s.episodes())).collect();
        if state.datasets != now || state.cursors.len() != now.len() {
            return Err(fail(format!("taken on datasets {:?}, but the mixture has {now:?}", state.datasets)));
        }
        for (c, (name, episodes)) in state.cursors.iter().zip(&now) {
            if c.position >= (*episodes).max(1) {
                return Err(fail(format!("{name}: position {} of {episodes} episodes", c.position)));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for f in &state.buffer {
            if f.dataset as usize >= now.len()
                || s.sources[f.dataset as usize].selected.binary_search(&f.episode).is_err()
                || !seen.insert((f.insertion, f.frame))
            {
                return Err(fail(format!("buffer entry {f:?} does not fit the mixture")));
            }
        }
        // One read per insertion, frames in buffer order: the same memory accounting as before.
        let mut reads: Vec<(u64, u32, u64, Vec<u32>)> = Vec::new();
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut order = Vec::with_capacity(state.buffer.len());
        for f in &state.buffer {
            let i = *index.entry(f.insertion).or_insert_with(|| {
                reads.push((f.insertion, f.dataset, f.episode, Vec::new()));
                reads.len() - 1
            });
            reads[i].3.push(f.frame);
            order.push(f);
        }
        let mut episodes: HashMap<(u32, u64), Arc<StandardEpisode>> = HashMap::new();
        for (insertion, d, e, frames) in &reads {
            let data = match episodes.entry((*d, *e)) {
                std::collections::hash_map::Entry::Occupied(o) => o.get().clone(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Arc::new(s.sources[*d as usize].read(*e)?)).clone()
                }
            };
            if let Some(f) = frames.iter().find(|&&f| f as usize >= data.len()) {
                return Err(fail(format!(
                    "frame {f} of episode {e} of {}, which has {}",
                    now[*d as usize].0,
                    data.len()
                )));
            }
            s.insert(*d, *e, data, frames, *insertion);
        }
        // `insert` appended read by read; restore the recorded buffer order exactly.
        let mut slots: HashMap<(u64, u32), Slot> =
            s.buffer.drain(..).map(|slot| ((slot.insertion, slot.frame), slot)).collect();
        s.buffer =
            order.iter().map(|f| slots.remove(&(f.insertion, f.frame)).expect("inserted above")).collect();
        s.next_insertion = state.next_insertion;
        (s.rng, s.cursors, s.batches) = (state.rng, state.cursors, state.batches);
        Ok(loader)
    }

    /// Sets the normalisers (each over 3 dimensions), replacing those of `[loader.normalization]`.
    pub fn with_normalization(mut self, normalization: Normalization) -> Result<Self, LoaderError> {
        normalization
            .validate()
            .map_err(|problem| LoaderError::Config { path: PathBuf::from("normalization"), problem })?;
        self.decoder = Arc::new(Decoder { config: self.decoder.config.clone(), normalization });
        Ok(self)
    }

    /// The mixture's datasets, in order: (RLDS name, episodes it reads: the split's, less or only the held-out ones).
    pub fn datasets(&self) -> Vec<(&'static str, u64)> {
        self.sampler.sources.iter().map(|s| (s.spec.name, s.episodes())).collect()
    }

    /// The state before the next batch.
    pub fn state(&self) -> LoaderState {
        self.sampler.state()
    }

    /// Produces the next batch on this thread (decoding on the pool).
    pub fn next_batch(&mut self) -> Result<Batch, LoaderError> {
        let size = self.sampler.config.batch_size;
        let mut slots = self.sampler.draw(size)?;
        // One seed per sample from the stream, so augmentation is deterministic and parallel.
        let seeds: Vec<u64> = (0..size).map(|_| self.sampler.rng.random()).collect();
        let decoder = self.decoder.clone();
        let c = &self.decoder.config;
        let external_len = c.external_size[0] * c.external_size[1] * 3;
        let wrist_len = c.wrist_size[0] * c.wrist_size[1] * 3;
        // Zeroed (lazily, by the allocator) so that absent wrist cameras are black.
        let mut external = vec![0u8; size * external_len];
        let mut wrist = vec![0u8; size * wrist_len];
        let mut decoded: Vec<Result<Decoded, RldsError>> = self.pool.install(|| {
            slots
                .par_iter()
                .zip(&seeds)
                .zip(external.par_chunks_mut(external_len))
                .zip(wrist.par_chunks_mut(wrist_len))
                .map(|(((slot, &seed), e), w)| decoder.decode(slot, seed, e, w))
                .collect()
        });
        // A frame whose image will not decode is replaced by the next draw (in skip mode), in
        // order, so that the stream stays deterministic and a resume does not meet it again.
        for i in 0..size {
            while let Err(e) = &decoded[i] {
                if !self.sampler.config.skip_bad_episodes {
                    return Err(decoded.swap_remove(i).err().expect("an error").into());
                }
                tracing_skip(&self.sampler.sources[slots[i].dataset as usize].spec, &e.to_string());
                self.sampler.cursors[slots[i].dataset as usize].bad_frames += 1;
                slots[i] = self.sampler.draw(1)?.pop().expect("one slot");
                let seed = self.sampler.rng.random();
                let (e, w) = (
                    &mut external[i * external_len..(i + 1) * external_len],
                    &mut wrist[i * wrist_len..(i + 1) * wrist_len],
                );
                e.fill(0);
                w.fill(0);
                decoded[i] = decoder.decode(&slots[i], seed, e, w);
            }
        }
        self.sampler.batches += 1;
        let state_after = self.sampler.state();
        let mut batch = Batch {
            size,
            external,
            wrist,
            wrist_present: Vec::with_capacity(size),
            instructions: Vec::with_capacity(size),
            state: Vec::with_capacity(size * STATE_DIM),
            actions: Vec::with_capacity(size * c.horizon * ACTION_DIM),
            mask: Vec::with_capacity(size * c.horizon),
            dataset: slots.iter().map(|s| s.dataset).collect(),
            source: slots.iter().map(|s| (s.episode, s.frame)).collect(),
            state_after,
        };
        for d in decoded {
            let d = d?;
            batch.wrist_present.push(d.wrist_present);
            batch.instructions.push(d.instruction);
            batch.state.extend(d.state);
            batch.actions.extend(d.actions);
            batch.mask.extend(d.mask);
        }
        Ok(batch)
    }

    /// Moves the loader to a producer thread that keeps `prefetch` batches ready.
    pub fn prefetch(mut self) -> Prefetch {
        let (tx, rx) = sync_channel(self.decoder.config.prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("spear-data-producer".into())
            .spawn(move || {
                loop {
                    let batch = self.next_batch();
                    let stop = batch.is_err();
                    if tx.send(batch).is_err() || stop {
                        return;
                    }
                }
            })
            .expect("spawn the producer thread");
        Prefetch { rx, _handle: handle }
    }
}

/// Batches produced ahead on a background thread; an iterator that ends after the first error.
pub struct Prefetch {
    rx: Receiver<Result<Batch, LoaderError>>,
    _handle: std::thread::JoinHandle<()>,
}

impl Iterator for Prefetch {
    type Item = Result<Batch, LoaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

/// Statistics of one mixture, saved beside a run (`spear data stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixtureStats {
    /// Of the 5 Hz action translations (the first action of every frame's chunk, real ones only).
    pub action_translation: crate::stats::Stats,
    /// Of the state positions.
    pub state_position: crate::stats::Stats,
    /// Of the rotation angles (radians) of the same actions (absent in files written before it
    /// existed).
    #[serde(default)]
    pub action_rotation_angle: Option<crate::stats::Stats>,
    /// Per dataset, in the mixture's order.
    pub datasets: Vec<DatasetCount>,
}

/// What a statistics pass read of one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetCount {
    /// RLDS name.
    pub name: String,
    /// Episodes used.
    pub episodes: u64,
    /// Frames used.
    pub frames: u64,
    /// Episodes skipped (unreadable or failing standardisation).
    pub skipped: u64,
    /// The first skip reasons.
    pub skip_reasons: Vec<String>,
}

/// One streaming pass over every episode of every dataset of `mixture` (shards in parallel on
/// `workers` threads): per-dimension statistics of action translations and state positions, and
/// the distribution of action rotation angles. Held-out episodes (`loader.holdout`) are counted
/// too: the statistics describe the data, and a run's normalisers do not change with its split.
/// `progress(shards done, shards in all, frames so far)` is called after each shard.
pub fn mixture_statistics(
    mixture: &MixtureConfig,
    progress: &(dyn Fn(usize, usize, u64) + Sync),
) -> Result<MixtureStats, LoaderError> {
    use crate::stats::RunningStats;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let fail = |problem: String| mixture.error(problem);
    mixture.validate().map_err(fail)?;
    let mut jobs = Vec::new();
    let mut datasets = Vec::new();
    for (d, entry) in mixture.datasets.iter().enumerate() {
        let spec = resolve_spec(&entry.name).map_err(fail)?;
        let dataset = open_dataset(&spec, &mixture.dataset_dir(entry).map_err(fail)?)?;
        let shards = dataset.split(&mixture.split)?.shards.clone();
        jobs.extend(shards.into_iter().map(|shard| (d, shard)));
        datasets.push((spec, dataset));
    }
    let chunk = ChunkConfig { horizon: 1, rate_hz: mixture.loader.rate_hz };
    let (done, frames_seen) = (AtomicUsize::new(0), AtomicU64::new(0));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(mixture.loader.workers)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    struct Part {
        actions: RunningStats,
        angles: RunningStats,
        states: RunningStats,
        counts: Vec<DatasetCount>,
    }
    let empty = || Part {
        actions: RunningStats::new(3),
        angles: RunningStats::new(1),
        states: RunningStats::new(3),
        counts: datasets
            .iter()
            .map(|(s, _)| DatasetCount {
                name: s.name.into(),
                episodes: 0,
                frames: 0,
                skipped: 0,
                skip_reasons: vec![],
            })
            .collect(),
    };
    let skip = mixture.loader.skip_bad_episodes;
    let merge = |mut total: Part, part: Part| {
        total.actions.merge(&part.actions).expect("3 dimensions");
        total.angles.merge(&part.angles).expect("1 dimension");
        total.states.merge(&part.states).expect("3 dimensions");
        for (t, p) in total.counts.iter_mut().zip(part.counts) {
            t.episodes += p.episodes;
            t.frames += p.frames;
            t.skipped += p.skipped;
            t.skip_reasons.extend(p.skip_reasons);
            t.skip_reasons.truncate(5);
        }
        total
    };
    // Shards run in at most 64 fixed groups, each folded in order, and the groups are merged in
    // order: the histograms' re-binning makes merging order-sensitive, and this order does not
    // depend on the thread count or on scheduling, so the statistics are reproducible.
    let run = |(d, shard): &(usize, crate::rlds::Shard), part: &mut Part| -> Result<(), LoaderError> {
        let (spec, dataset) = &datasets[*d];
        let count = &mut part.counts[*d];
        let before = count.frames;
        let on_corrupt =
            if skip { crate::tfrecord::OnCorrupt::Skip } else { crate::tfrecord::OnCorrupt::Fail };
        let mut episodes = dataset.shard_episodes(shard, on_corrupt)?;
        for episode in episodes.by_ref() {
            let standard = episode.and_then(|e| standardize(spec, e));
            let standard = match standard {
                Ok(s) => s,
                Err(e) if skip => {
                    count.skipped += 1;
                    if count.skip_reasons.len() < 5 {
                        count.skip_reasons.push(e.to_string());
                    }
                    if matches!(e, RldsError::Record(_)) {
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            count.episodes += 1;
            count.frames += standard.len() as u64;
            for frame in 0..standard.len() {
                let state = standard.state(frame);
                part.states
                    .push(&state[..3].iter().map(|&x| f64::from(x)).collect::<Vec<_>>())
                    .expect("finite");
                let c = standard.chunk(frame, &chunk);
                if c.mask[0] {
                    part.actions
                        .push(&c.actions[..3].iter().map(|&x| f64::from(x)).collect::<Vec<_>>())
                        .expect("finite");
                    let q: [f32; 4] = c.actions[3..7].try_into().expect("8 values");
                    part.angles.push(&[crate::stats::rotation_angle(q)]).expect("finite");
                }
            }
        }
        count.skipped += episodes.skipped().len() as u64;
        let added = count.frames - before;
        let frames = frames_seen.fetch_add(added, Ordering::Relaxed) + added;
        progress(done.fetch_add(1, Ordering::Relaxed) + 1, jobs.len(), frames);
        Ok(())
    };
    let group = jobs.len().div_ceil(64).max(1);
    let parts: Vec<Part> = pool.install(|| {
        jobs.par_chunks(group)
            .map(|jobs| {
                let mut part = empty();
                for job in jobs {
                    run(job, &mut part)?;
                }
                Ok::<_, LoaderError>(part)
            })
            .collect::<Result<_, _>>()
    })?;
    let total = parts.into_iter().fold(empty(), merge);
    Ok(MixtureStats {
        action_translation: total.actions.summary(),
        state_position: total.states.summary(),
        action_rotation_angle: Some(total.angles.summary()),
        datasets: total.counts,
    })
}
