//! Training runs as data: one typed TOML file per run the paper describes (`configs/vlm/*.toml`,
//! `configs/vla/*.toml`).
//!
//! - Unknown fields are errors that name the field's path and the file (`optim.peak_lrr in
//!   configs/vla/pretrain_oxe.toml: unknown field …`); so are values out of range.
//! - `extends = "other.toml"` starts from another file (tables merge key by key, this file
//!   winning), so the tiny variants say only what differs from the paper's runs.
//! - `--set section.key=value` overrides apply last; values are TOML (`0.5`, `true`, `"text"`) or
//!   else taken as a string.
//! - Relative paths in a file are relative to that file's folder (`--set` paths: to the working
//!   folder).
//! - [`TrainConfig::to_toml`] is the fully resolved config, written into the run folder.
//!
//! Where the paper is silent, values are openpi's published defaults
//! (`src/openpi/training/optimizer.py`, `config.py`): AdamW β = (0.9, 0.95), ε = 1e-8,
//! weight decay 1e-10, gradient clipping at norm 1.0, warmup 1000 steps, cosine decay to a tenth
//! of the peak learning rate 2.5e-5, EMA decay 0.99, seed 42.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// Why a config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read or parsed.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A field is unknown, of the wrong type or out of range.
    #[error("{field} in {path}: {problem}")]
    Field {
        /// The file (the one given on the command line).
        path: PathBuf,
        /// The field's dotted path.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A `--set` override is malformed.
    #[error("--set {0}: expected section.key=value")]
    Override(String),
}

/// Which training the file describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// SPEAR-VLM stage 1 (§3.1): new weights and the SigLIP projector only.
    VlmStage1,
    /// SPEAR-VLM stage 2: most of the model, λ-weighted 3D tokens.
    VlmStage2,
    /// SPEAR-1 pre-training on the OXE mixture from SPEAR-VLM and a fresh action expert.
    VlaPretrain,
    /// SPEAR-1 post-training on one dataset from a pre-trained SPEAR-1.
    VlaPosttrain,
}

impl Stage {
    /// Whether it trains the VLM alone (VQA data) rather than the policy (robot data).
    pub fn is_vlm(self) -> bool {
        matches!(self, Stage::VlmStage1 | Stage::VlmStage2)
    }
}

/// Model sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSize {
    /// The paper's: PaliGemma 3B (SigLIP So400m + Gemma 2B), MoGe's DINOv2 ViT-L, the Gemma-300M
    /// action expert.
    Full,
    /// The tiny topology-preserving model of the embedded default and the tests.
    Tiny,
}

/// Rotation handling of the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    /// SPEAR-1's flow on S³ (eqs. 5–10).
    S3,
    /// π0's linear flow on every dimension.
    Linear,
}

/// `[run]`: length, batch, cadence, seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Names the run folder.
    pub name: String,
    /// Seed of every random draw (initialisation, data order, flow noise and times).
    pub seed: u64,
    /// Optimiser steps.
    pub steps: u64,
    /// Examples per optimiser step (across devices and accumulation).
    pub batch_size: usize,
    /// Micro-batches accumulated per step (`batch_size` must divide by it).
    pub grad_accum: usize,
    /// Steps between metric lines.
    pub log_every: u64,
    /// Steps between validation passes (0: never).
    pub eval_every: u64,
    /// Steps between checkpoints (one is always written at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept (oldest deleted first; the final one always kept).
    pub keep_checkpoints: usize,
}

/// `[model]`: size and where the weights start from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Full or tiny.
    pub size: ModelSize,
    /// A PaliGemma snapshot folder (VLM stage 1 at full size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paligemma: Option<PathBuf>,
    /// MoGe's `model.pt` (VLM stage 1 at full size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moge: Option<PathBuf>,
    /// A spear checkpoint to start from: stage 1's output for stage 2, SPEAR-VLM for VLA
    /// pre-training, a pre-trained SPEAR-1 for post-training. Tiny runs without one start from
    /// random weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Number of 3D tokens (appendix A.1.3).
    pub num_3d_tokens: usize,
    /// Main camera input `[height, width]` (default: the model's, 210×280 for SPEAR); a multiple
    /// of the 14-pixel patch in each direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<[usize; 2]>,
    /// Wrist camera input `[height, width]` (default: the model's, 112×112).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrist_image_size: Option<[usize; 2]>,
    /// The PaliGemma `tokenizer.json` (default: the one beside `init`, else in `paligemma`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    /// VLA: actions per chunk, `H` (default: the model's, 5 for SPEAR-1). The one place it is set:
    /// the loader's chunks, the evaluation and the exported policy follow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<usize>,
    /// VLA: rate of a chunk's actions, Hz (default: the paper's 5 Hz). The loader resamples every
    /// dataset to it; the exported `policy.json` records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_hz: Option<f64>,
}

impl ModelSection {
    /// The action rate the run trains at: `rate_hz`, else the paper's 5 Hz.
    pub fn rate_hz(&self) -> f64 {
        self.rate_hz.unwrap_or(spear_data::resample::ChunkConfig::default().rate_hz)
    }
}

/// `[trainable]`: which parts receive gradients; the rest is frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainableSection {
    /// SigLIP's vision tower.
    pub siglip: bool,
    /// MoGe's DINOv2 encoder.
    pub moge: bool,
    /// The SigLIP and MoGe projectors.
    pub projectors: bool,
    /// Gemma (its original embedding rows included).
    pub llm: bool,
    /// The 3D-token embedding rows.
    pub new_embeddings: bool,
    /// The action expert (VLA stages).
    pub action_expert: bool,
}

impl TrainableSection {
    /// The paper's VLA stage (Table 9): everything but MoGe trains.
    pub const VLA: Self = Self {
        siglip: true,
        moge: false,
        projectors: true,
        llm: true,
        new_embeddings: true,
        action_expert: true,
    };

    /// The VLM's part of it, as the models crate takes it.
    pub fn vlm(&self) -> spear_models::vlm::Trainable {
        spear_models::vlm::Trainable {
            siglip: self.siglip,
            moge: self.moge,
            projectors: self.projectors,
            llm: self.llm,
            new_embeddings: self.new_embeddings,
        }
    }
}

/// `[optim]`: AdamW with linear warmup and cosine decay (optax's `warmup_cosine_decay_schedule`,
/// as openpi: from `peak_lr / (warmup_steps + 1)` up to `peak_lr`, then down to `decay_lr` at
/// `decay_steps`, constant after).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    /// Peak learning rate.
    pub peak_lr: f64,
    /// Warmup steps.
    pub warmup_steps: u64,
    /// Step where the cosine reaches `decay_lr`.
    pub decay_steps: u64,
    /// Final learning rate.
    pub decay_lr: f64,
    /// Adam β₁.
    pub b1: f64,
    /// Adam β₂.
    pub b2: f64,
    /// Adam ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip (0: none).
    pub clip_norm: f64,
}

/// `[ema]`: exponential moving average of the trainable weights, checkpointed beside them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmaSection {
    /// `ema ← decay · ema + (1 − decay) · weights` after each step; 0 turns EMA off.
    pub decay: f64,
}

/// `[loss]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossSection {
    /// VLM: weight of the next-token loss on 3D tokens (λ = 2 in stage 2, §3.1).
    pub lambda_3d: f64,
    /// VLA: the rotation flow.
    pub rotation: Rotation,
    /// VLA: weight of the S³ rotation terms (cosine + geodesic) against the translation and
    /// gripper terms; the paper gives none, so 1.
    #[serde(default = "one")]
    pub rotation_weight: f64,
}

fn one() -> f64 {
    1.0
}

/// Where a run's data comes from (`[data] source`): `{ mixture = "file" }`,
/// `{ annotations = "folder" }` or `"embedded"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// VLA: a mixture file (`configs/data/*.toml`).
    Mixture(PathBuf),
    /// VLM: an annotation output folder (`spear annotate --out`).
    Annotations(PathBuf),
    /// The embedded default's generated data, sized by `[data.embedded]`: the reach-and-rotate
    /// task (VLA, `[data.reach]`) or annotated tabletop scenes (VLM).
    Embedded,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Where the data comes from.
    pub source: DataSource,
    /// Share of the data held out for validation: VLM — of the images (by a hash of their path);
    /// VLA — of each dataset's training episodes (by a hash of the episode's index), unless every
    /// dataset of the mixture has a `val` split, which is then used instead.
    pub val_fraction: f64,
    /// The generated data of the embedded defaults (`source = "embedded"`).
    #[serde(default)]
    pub embedded: EmbeddedSection,
    /// VLA: the embedded reach-and-rotate task (its cameras take the model's sizes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach: Option<crate::reach::ReachConfig>,
}

/// `[data.embedded]`: how much data the embedded defaults generate, and how they are evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedSection {
    /// VLA: training episodes of the reach task; VLM: annotated scenes (`val_fraction` of them
    /// held out).
    pub episodes: usize,
    /// VLA: validation episodes (the dataset's `val` split).
    pub val_episodes: usize,
    /// VLA: held-out scenes rolled out in closed loop after training.
    pub eval_scenes: usize,
    /// VLA: action chunks per rollout.
    pub eval_chunks: usize,
    /// VLA: scale the rotation deltas' angles so that their 99th percentile becomes this many
    /// degrees (`spear_data::stats::AngleScale`; absent: rotations as they are, as in the paper).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_angle_deg: Option<f64>,
}

impl Default for EmbeddedSection {
    fn default() -> Self {
        Self { episodes: 1000, val_episodes: 100, eval_scenes: 64, eval_chunks: 16, rotation_angle_deg: None }
    }
}

/// Activation checkpointing: which activations the backward pass recomputes instead of keeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkpointing {
    /// Keep every activation the backward pass needs.
    #[default]
    None,
    /// burn's `BalancedCheckpointing`: keep the outputs of compute-bound operations (matrix
    /// products), recompute the memory-bound ones (element-wise chains, norms, softmax) from them.
    Balanced,
    /// Block-level rematerialisation (`spear_models::remat`): the forward pass keeps only each
    /// transformer block's input; the backward pass recomputes one block at a time from it.
    Blocks,
}

impl std::str::FromStr for Checkpointing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Checkpointing::None),
            "balanced" => Ok(Checkpointing::Balanced),
            "blocks" => Ok(Checkpointing::Blocks),
            other => Err(format!("unknown checkpointing `{other}` (expected none, balanced or blocks)")),
        }
    }
}

impl std::fmt::Display for Checkpointing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Checkpointing::None => "none",
            Checkpointing::Balanced => "balanced",
            Checkpointing::Blocks => "blocks",
        })
    }
}

/// `[memory]`: how a run trades memory for compute (all optional; the defaults are plain f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySection {
    /// The arithmetic of matrix products: `"f32"`, or `"bf16"` (parameters, gradients and optimiser
    /// state stay f32; products take bf16 operands; norms, softmax, losses and the S³ geometry
    /// stay f32; see `spear_models::precision`).
    pub precision: spear_models::Precision,
    /// Activation checkpointing (`"none"`, `"balanced"` or `"blocks"`). It changes no result:
    /// the same gradients, bit for bit on the CPU with `"balanced"`, to float rounding with
    /// `"blocks"` (a weight used by two blocks adds its two parts in another order).
    pub checkpointing: Checkpointing,
    /// ZeRO-1 on a data-parallel run: each rank keeps AdamW's moments and the EMA of its share
    /// of the trainable parameters only (`spear_train::dist::Owners`), updates that share and
    /// hands it to the others. The same weights as unsharded, bit for bit; checkpoints hold one
    /// optimiser file per rank and resume on any number of devices.
    pub shard_optimizer: bool,
}

/// One training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Which training.
    pub stage: Stage,
    /// Length, batch, cadence, seed.
    pub run: RunSection,
    /// Size and initial weights.
    pub model: ModelSection,
    /// What trains.
    pub trainable: TrainableSection,
    /// Optimiser and schedule.
    pub optim: OptimSection,
    /// Weight averaging.
    pub ema: EmaSection,
    /// Loss weights.
    pub loss: LossSection,
    /// Data.
    pub data: DataSection,
    /// Precision and memory savings.
    #[serde(default)]
    pub memory: MemorySection,
}

/// Merges `over` into `base`, key by key (tables recursively, anything else replaced).
fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The fields that hold paths, as key paths.
const PATHS: [&[&str]; 6] = [
    &["model", "paligemma"],
    &["model", "moge"],
    &["model", "init"],
    &["model", "tokenizer"],
    &["data", "source", "mixture"],
    &["data", "source", "annotations"],
];

/// The string at key path `keys` of `table`, if there is one.
fn string_at<'t>(table: &'t mut Table, keys: &[&str]) -> Option<&'t mut String> {
    let (last, sections) = keys.split_last()?;
    let mut current = table;
    for section in sections {
        current = current.get_mut(*section)?.as_table_mut()?;
    }
    match current.get_mut(*last)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// Makes a file's relative paths absolute against its folder.
fn anchor_paths(table: &mut Table, dir: &Path) {
    for keys in PATHS {
        if let Some(path) = string_at(table, keys)
            && !path.is_empty()
            && Path::new(path.as_str()).is_relative()
        {
            *path = dir.join(&*path).to_string_lossy().into_owned();
        }
    }
}

/// Removes the paths set to `""` (cleared), after merging.
fn drop_cleared_paths(table: &mut Table) {
    for keys in PATHS {
        let (last, sections) = keys.split_last().expect("non-empty");
        let mut current = Some(&mut *table);
        for section in sections {
            current = current.and_then(|t| t.get_mut(*section)).and_then(Value::as_table_mut);
        }
        if let Some(t) = current
            && t.get(*last).is_some_and(|v| v.as_str() == Some(""))
        {
            t.remove(*last);
        }
    }
}

fn read_table(path: &Path, depth: usize) -> Result<Table, ConfigError> {
    let fail = |problem: String| ConfigError::File { path: path.to_path_buf(), problem };
    if depth > 8 {
        return Err(fail("`extends` nests more than 8 deep (a cycle?)".into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let mut table: Table = text.parse().map_err(|e: toml::de::Error| fail(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    anchor_paths(&mut table, dir);
    match table.remove("extends") {
        None => Ok(table),
        Some(Value::String(parent)) => {
            let mut base = read_table(&dir.join(parent), depth + 1)?;
            merge(&mut base, table);
            Ok(base)
        }
        Some(other) => Err(fail(format!("`extends` must be a file name, not {other}"))),
    }
}

/// Applies one `section.key=value` override.
fn apply_override(table: &mut Table, assignment: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::Override(assignment.to_owned());
    let (key, raw) = assignment.split_once('=').ok_or_else(bad)?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    // A TOML value if it parses as one, else the text itself.
    let value = format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()));
    let (last, sections) = parts.split_last().expect("non-empty");
    let mut current = table;
    for section in sections {
        let entry = current.entry(section.to_string()).or_insert_with(|| Value::Table(Table::new()));
        // A value where a table is now named (`data.source.mixture=…` over `source = "embedded"`)
        // gives way to the table.
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        current = entry.as_table_mut().expect("a table");
    }
    current.insert(last.to_string(), value);
    Ok(())
}

impl TrainConfig {
    /// Reads `path` (following `extends`), applies `overrides` (`section.key=value`), checks
    /// every field.
    pub fn load(path: impl AsRef<Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let mut table = read_table(path, 0)?;
        for assignment in overrides {
            apply_override(&mut table, assignment)?;
        }
        drop_cleared_paths(&mut table);
        let config: TrainConfig = serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::Field { path: path.to_path_buf(), field, problem: e.into_inner().to_string() }
        })?;
        config.validate().map_err(|(field, problem)| ConfigError::Field {
            path: path.to_path_buf(),
            field,
            problem,
        })?;
        Ok(config)
    }

    /// The resolved config as TOML (what the run folder records).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config serialises")
    }

    /// Checks ranges and the stage's requirements; `Err((field, problem))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, problem: String| Err((field.to_owned(), problem));
        let r = &self.run;
        if r.steps == 0 {
            return fail("run.steps", "must be at least 1".into());
        }
        if r.batch_size == 0 || r.grad_accum == 0 || !r.batch_size.is_multiple_of(r.grad_accum) {
            return fail(
                "run.grad_accum",
                format!(
                    "batch_size {} must be a positive multiple of grad_accum {}",
                    r.batch_size, r.grad_accum
                ),
            );
        }
        if r.log_every == 0 || r.checkpoint_every == 0 || r.keep_checkpoints == 0 {
            return fail("run", "log_every, checkpoint_every and keep_checkpoints must be at least 1".into());
        }
        let o = &self.optim;
        let positive = [("optim.peak_lr", o.peak_lr), ("optim.eps", o.eps)];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return fail(field, format!("must be positive (got {v})"));
            }
        }
        let non_negative = [
            ("optim.decay_lr", o.decay_lr),
            ("optim.weight_decay", o.weight_decay),
            ("optim.clip_norm", o.clip_norm),
            ("loss.lambda_3d", self.loss.lambda_3d),
            ("loss.rotation_weight", self.loss.rotation_weight),
        ];
        for (field, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return fail(field, format!("must be ≥ 0 (got {v})"));
            }
        }
        for (field, v) in [("optim.b1", o.b1), ("optim.b2", o.b2), ("ema.decay", self.ema.decay)] {
            if !(0.0..1.0).contains(&v) {
                return fail(field, format!("must be in [0, 1) (got {v})"));
            }
        }
        if o.decay_steps < o.warmup_steps {
            return fail(
                "optim.decay_steps",
                format!("{} is before the end of warmup ({})", o.decay_steps, o.warmup_steps),
            );
        }
        if !(0.0..1.0).contains(&self.data.val_fraction) {
            return fail("data.val_fraction", format!("must be in [0, 1) (got {})", self.data.val_fraction));
        }
        if self.model.num_3d_tokens == 0 {
            return fail("model.num_3d_tokens", "must be at least 1".into());
        }
        let sizes = [
            ("model.image_size", self.model.image_size),
            ("model.wrist_image_size", self.model.wrist_image_size),
        ];
        for (field, size) in sizes {
            if let Some([h, w]) = size
                && (h == 0 || w == 0 || h % 14 != 0 || w % 14 != 0)
            {
                return fail(field, format!("[{h}, {w}] must be positive multiples of the 14-pixel patch"));
            }
        }
        let e = &self.data.embedded;
        if e.episodes == 0 || e.eval_chunks == 0 {
            return fail("data.embedded", "episodes and eval_chunks must be at least 1".into());
        }
        if let Some(angle) = e.rotation_angle_deg
            && !(angle > 0.0 && angle <= 180.0)
        {
            return fail("data.embedded.rotation_angle_deg", format!("must be in (0, 180] (got {angle})"));
        }
        if let Some(reach) = &self.data.reach
            && let Err(crate::reach::ReachError::Config { field, problem }) = reach.validate()
        {
            return fail(&format!("data.reach.{field}"), problem);
        }
        let t = &self.trainable;
        if ![t.siglip, t.moge, t.projectors, t.llm, t.new_embeddings, t.action_expert].contains(&true) {
            return fail("trainable", "nothing would train".into());
        }
        let full = self.model.size == ModelSize::Full;
        match (self.stage.is_vlm(), &self.data.source) {
            (true, DataSource::Mixture(_)) => {
                return fail(
                    "data.source",
                    "a VLM stage reads VQA data: { annotations = \"folder\" } or \"embedded\", not a mixture"
                        .into(),
                );
            }
            (false, DataSource::Annotations(_)) => {
                return fail(
                    "data.source",
                    "a VLA stage reads robot data: { mixture = \"file\" } or \"embedded\", not annotations"
                        .into(),
                );
            }
            _ => {}
        }
        if self.stage.is_vlm() && t.action_expert {
            return fail("trainable.action_expert", "a VLM stage has no action expert".into());
        }
        if self.model.horizon == Some(0) {
            return fail("model.horizon", "must be at least 1".into());
        }
        if let Some(rate) = self.model.rate_hz
            && !(rate.is_finite() && rate > 0.0)
        {
            return fail("model.rate_hz", format!("must be positive (got {rate})"));
        }
        if !self.stage.is_vlm() && self.data.source == DataSource::Embedded {
            // The reach task's demonstrations and rollouts step at its recorded rate.
            let native = crate::reach::SPEC.rate_hz;
            if self.model.rate_hz() != native {
                return fail(
                    "model.rate_hz",
                    format!("the embedded reach task steps at {native} Hz (got {})", self.model.rate_hz()),
                );
            }
        }
        match self.stage {
            Stage::VlmStage1 if full && (self.model.paligemma.is_none() || self.model.moge.is_none()) => {
                fail(
                    "model.paligemma",
                    "full-size stage 1 starts from a PaliGemma snapshot and a MoGe model.pt".into(),
                )
            }
            Stage::VlmStage2 | Stage::VlaPretrain | Stage::VlaPosttrain
                if full && self.model.init.is_none() =>
            {
                fail(
                    "model.init",
                    "a full-size run after stage 1 starts from the previous stage's checkpoint".into(),
                )
            }
            _ => Ok(()),
        }
    }
}
