//! `spear policy act`: one action chunk from a SPEAR-1 or π0 checkpoint for one observation.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use spear_data::loader::Normalization;
use spear_data::tokenizer::PaliGemmaTokenizer;
use spear_models::policy::{Observation, ROTATION};
use spear_models::store::load_policy;
use spear_models::{RotationMode, SpearPolicy};

use crate::vlm::read_image;

/// What to act on.
#[derive(Debug, Clone)]
pub struct Act {
    /// Checkpoint folder: weights and `config.json` (spear's, transformers' PI0 or lerobot's π0).
    pub checkpoint: PathBuf,
    /// `tokenizer.json`; default: the checkpoint's.
    pub tokenizer: Option<PathBuf>,
    /// Main camera image.
    pub image: PathBuf,
    /// Wrist camera images, in the policy's camera order.
    pub wrist: Vec<PathBuf>,
    /// Proprioceptive state: raw when the checkpoint has `normalization.json` (its normalisers
    /// are applied here, and undone on the actions), else already normalised as the policy was
    /// trained.
    pub state: Vec<f32>,
    /// Zero-pad a shorter state to the policy's width (π0 pads to 32 after normalising).
    pub pad_state: bool,
    /// The instruction.
    pub prompt: String,
    /// Cameras the policy expects (π0 checkpoints do not record it); default: its config's.
    pub cameras: Option<usize>,
    /// Seed of the sampling noise.
    pub seed: u64,
}

/// A sampled chunk.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// `H` action vectors.
    pub actions: Vec<Vec<f32>>,
    /// How rotations were generated (S³: actions are `[x, y, z, qw, qx, qy, qz, gripper]`).
    pub rotation: RotationMode,
    /// Whether the translations are in the policy's normalised units (the checkpoint has no
    /// `normalization.json`) rather than metres.
    pub normalized: bool,
}

impl Chunk {
    /// One line per step; S³ chunks split into translation, quaternion and gripper.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let fmt = |v: &[f32]| v.iter().map(|x| format!("{x:+.4}")).collect::<Vec<_>>().join(" ");
        let unit = if self.normalized { "" } else { " (m)" };
        for (k, a) in self.actions.iter().enumerate() {
            let _ = match self.rotation {
                RotationMode::S3 => writeln!(
                    s,
                    "step {k}: translation{unit} [{}]  quaternion wxyz [{}]  gripper {}",
                    fmt(&a[..ROTATION.start]),
                    fmt(&a[ROTATION]),
                    fmt(&a[ROTATION.end..])
                ),
                RotationMode::Linear => writeln!(s, "step {k}: [{}]", fmt(a)),
            };
        }
        s
    }

    /// `{"rotation": "s3", "translation": "metres", "actions": [[...], ...]}` (`"normalised"`
    /// when the checkpoint has no normalisers).
    pub fn to_json(&self) -> serde_json::Value {
        let translation = if self.normalized { "normalised" } else { "metres" };
        serde_json::json!({ "rotation": self.rotation, "translation": translation, "actions": self.actions })
    }
}

/// Parses a state written as numbers separated by commas and/or spaces.
pub fn parse_state(text: &str) -> Result<Vec<f32>> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| {
            let v: f32 = s.parse().with_context(|| format!("--state: value {i} ({s:?}) is not a number"))?;
            if !v.is_finite() {
                bail!("--state: value {i} is {v}");
            }
            Ok(v)
        })
        .collect()
}

/// Loads the policy and samples one chunk on backend `B`.
pub fn act<B: Backend>(request: &Act, device: &B::Device) -> Result<Chunk> {
    let mut policy: SpearPolicy<B> = load_policy(&request.checkpoint, device)?;
    if let Some(cameras) = request.cameras {
        policy = policy.with_cameras(cameras);
    }
    let tokenizer_path =
        request.tokenizer.clone().unwrap_or_else(|| request.checkpoint.join("tokenizer.json"));
    let tokenizer = PaliGemmaTokenizer::from_file(&tokenizer_path)
        .with_context(|| format!("loading the tokenizer {} (pass --tokenizer)", tokenizer_path.display()))?;
    let [height, width] = policy.vlm.image_size();
    let mut cameras = vec![read_image::<B>(&request.image, height, width, device)?];
    for wrist in &request.wrist {
        let [h, w] = policy.vlm.wrist_image_size();
        cameras.push(read_image::<B>(wrist, h, w, device)?);
    }
    let state_dim = policy.config().expert.state_dim;
    let mut state = request.state.clone();
    if request.pad_state && state.len() < state_dim {
        state.resize(state_dim, 0.0);
    }
    if state.len() != state_dim {
        bail!(
            "--state has {} values; this policy expects {state_dim}{}",
            state.len(),
            if state.len() < state_dim { " (add --pad-state to zero-pad, as π0 does)" } else { "" }
        );
    }
    let normalization = read_normalization(&request.checkpoint)?;
    if let Some(n) = &normalization {
        n.normalize_state(&mut state);
    }
    let obs = Observation {
        cameras,
        camera_present: None,
        prompts: vec![tokenizer.encode_prefix(&request.prompt)?],
        state: Tensor::from_data(TensorData::new(state, [1, state_dim]), device),
    };
    B::seed(device, request.seed);
    let noise = policy.noise(1, device);
    let actions = policy.sample(&obs, noise)?;
    let dim = policy.action_dim();
    let values: Vec<f32> = actions.into_data().convert::<f32>().to_vec().expect("f32 actions");
    let mut actions: Vec<Vec<f32>> = values.chunks(dim).map(<[f32]>::to_vec).collect();
    if let Some(n) = &normalization {
        actions.iter_mut().for_each(|a| n.denormalize_action(a));
    }
    Ok(Chunk { actions, rotation: policy.config().rotation, normalized: normalization.is_none() })
}

/// The checkpoint's `normalization.json` (written by `spear train vla`), if it has one.
fn read_normalization(checkpoint: &std::path::Path) -> Result<Option<Normalization>> {
    let path = checkpoint.join(Normalization::FILE_NAME);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(Normalization::read_file(&path)?))
}
