//! `spear policy act`: one action chunk from a SPEAR-1 or π0 checkpoint for one observation.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use spear_models::RotationMode;
use spear_models::policy::ROTATION;
use spear_policy::{Frame, LoadOptions, Policy, RawObservation};

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

/// Loads the policy and samples one chunk on backend `B`, through the inference pipeline.
pub fn act<B: Backend>(request: &Act, device: &B::Device) -> Result<Chunk> {
    let options = LoadOptions {
        tokenizer: request.tokenizer.clone(),
        cameras: request.cameras,
        pad_state: request.pad_state,
    };
    let mut policy = Policy::<B>::load(&request.checkpoint, &options, device)?;
    let cameras = std::iter::once(&request.image)
        .chain(&request.wrist)
        .map(|path| Frame::read(path).map(Some).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let observation =
        RawObservation { cameras, state: request.state.clone(), prompt: request.prompt.clone() };
    B::seed(device, request.seed);
    let actions = policy.act(&[observation])?.remove(0);
    Ok(Chunk { actions, rotation: policy.rotation(), normalized: !policy.in_robot_units() })
}
