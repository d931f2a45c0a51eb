//! The mixture file: which datasets, with which weights, and the loader's settings (`[loader]`,
//! its `[loader.holdout]`; `[loader.normalization]` is [`super::normalization`]'s).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::NormalizationConfig;
use crate::images::{Augment, Fit};
use crate::oxe::DatasetSpec;
use crate::rlds::{RldsDataset, RldsError};

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
    /// Decode only this share of the batches (a rank of a data-parallel run; set by the trainer,
    /// never in a file).
    #[serde(skip)]
    pub shard: Option<Shard>,
}

/// The batches one rank of a data-parallel run decodes: those whose number (counted from the
/// stream's start) is `index` modulo `count`. The others come back undecoded
/// ([`super::Batch::decoded`] false) at the cost of drawing them, and the stream, its state and
/// the samples of every batch stay those of a loader without a shard: the ranks' shares together
/// are the one-device stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This rank.
    pub index: usize,
    /// Ranks.
    pub count: usize,
}

impl Shard {
    /// Whether batch `number` is this rank's.
    pub fn decodes(&self, number: u64) -> bool {
        number % self.count.max(1) as u64 == self.index as u64
    }
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
    pub(super) fn select(&self, name: &str, count: u64) -> Vec<u64> {
        (0..count).filter(|&e| self.fraction <= 0.0 || self.is_held_out(name, e) == self.held_out).collect()
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
            shard: None,
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
    pub(super) fn error(&self, problem: String) -> LoaderError {
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
pub(super) fn open_dataset(spec: &DatasetSpec, dir: &Path) -> Result<RldsDataset, LoaderError> {
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
pub(super) fn resolve_spec(name: &str) -> Result<DatasetSpec, String> {
    crate::oxe::spec_for_mixture(name).ok_or_else(|| {
        format!("dataset `{name}` is not in the registry (crates/spear-data/src/oxe/registry.rs)")
    })
}
