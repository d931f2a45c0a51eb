//! `spear policy act`: one action chunk from a SPEAR-1 or π0 checkpoint for one observation.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use spear_models::policy::ROTATION;
use spear_models::{Precision, RotationMode};
use spear_policy::{Frame, LoadOptions, Policy, RawObservation};

use crate::backend::{BackendChoice, BackendJob, BackendKind, run_on};

/// `spear policy …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PolicyCommand {
    /// Sample one action chunk for an observation (images, state, instruction) through the inference
    /// pipeline: frames fitted as in training, the prefix encoded once, then the flow's Euler steps
    /// on the action expert alone.
    Act(Act),
}

impl PolicyCommand {
    /// Runs the command on `backend`.
    pub fn run(self, backend: BackendChoice) -> Result<()> {
        match self {
            PolicyCommand::Act(act) => run_on(backend, act)?,
        }
    }
}

/// What to act on.
#[derive(Debug, Clone, clap::Args)]
pub struct Act {
    /// Checkpoint folder: weights and config.json (spear, transformers PI0, lerobot or openpi π0).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// tokenizer.json (default: the checkpoint's).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Main camera image (PNG or JPEG), fitted to the policy's size as in training (centre-cropped
    /// or padded, as the checkpoint's policy.json says; never stretched).
    #[arg(long)]
    pub image: PathBuf,
    /// Wrist camera image; repeat for policies with several wrist cameras.
    #[arg(long)]
    pub wrist: Vec<PathBuf>,
    /// Proprioceptive state: numbers separated by commas or spaces (SPEAR-1: EE position x,y,z,
    /// EE quaternion w,x,y,z, gripper). Raw (metres) for checkpoints that carry
    /// normalization.json (those `spear train vla` writes), else normalised as in training.
    #[arg(long, allow_hyphen_values = true)]
    pub state: State,
    /// Zero-pad a shorter state to the policy's state width (π0 pads to 32).
    #[arg(long)]
    pub pad_state: bool,
    /// The instruction.
    #[arg(long)]
    pub prompt: String,
    /// Cameras the policy was trained with (π0 checkpoints do not record it; default 3 for them).
    #[arg(long)]
    pub cameras: Option<usize>,
    /// The arithmetic of matrix products: f32, or bf16 operands with f32 results (norms, softmax
    /// and the flow's geometry stay f32).
    #[arg(long, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the chunk as JSON.
    #[arg(long)]
    pub json: bool,
}

impl BackendJob for Act {
    type Output = Result<()>;
    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Result<()> {
        // Inference needs no gradients: the backend under Autodiff.
        let chunk = act::<B::InnerBackend>(&self, &device)?;
        if self.json {
            println!("{}", chunk.to_json());
        } else {
            print!("{}", chunk.render());
        }
        Ok(())
    }
}

/// A state given on the command line: numbers separated by commas and/or spaces, all finite.
#[derive(Debug, Clone, PartialEq)]
pub struct State(pub Vec<f32>);

impl std::str::FromStr for State {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, s)| match s.parse::<f32>() {
                Ok(v) if v.is_finite() => Ok(v),
                Ok(v) => Err(format!("value {i} is {v}")),
                Err(_) => Err(format!("value {i} ({s:?}) is not a number")),
            })
            .collect::<Result<_, _>>()
            .map(State)
    }
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

/// Loads the policy and samples one chunk on backend `B`, through the inference pipeline.
pub fn act<B: Backend>(request: &Act, device: &B::Device) -> Result<Chunk> {
    let options = LoadOptions {
        tokenizer: request.tokenizer.clone(),
        cameras: request.cameras,
        pad_state: request.pad_state,
        precision: request.precision,
    };
    let mut policy = Policy::<B>::load(&request.checkpoint, &options, device)?;
    let cameras = std::iter::once(&request.image)
        .chain(&request.wrist)
        .map(|path| Frame::read(path).map(Some).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let observation =
        RawObservation { cameras, state: request.state.0.clone(), prompt: request.prompt.clone() };
    B::seed(device, request.seed);
    let actions = policy.act(&[observation])?.remove(0);
    Ok(Chunk { actions, rotation: policy.rotation(), normalized: !policy.in_robot_units() })
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn states_parse_from_commas_or_spaces_and_refuse_what_is_not_a_finite_number() {
        assert_eq!("0.1, -2 3e-1".parse::<State>().unwrap(), State(vec![0.1, -2.0, 0.3]));
        assert_eq!("0,0,x".parse::<State>().unwrap_err(), "value 2 (\"x\") is not a number");
        assert_eq!("1 nan".parse::<State>().unwrap_err(), "value 1 is NaN");
    }
}
