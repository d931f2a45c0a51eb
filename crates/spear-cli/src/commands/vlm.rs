//! `spear vlm ask`: greedy, KV-cached answers from a PaliGemma snapshot or a SPEAR-VLM checkpoint,
//! with 3D tokens printed as the coordinates they stand for; `spear vlm init`: SPEAR-VLM's
//! starting checkpoint from the released PaliGemma and MoGe weights.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use spear_data::coord_tokens::CoordQuantizer;
use spear_data::tokenizer::PaliGemmaTokenizer;
use spear_models::generate::greedy;
use spear_models::import::checkpoint::Checkpoint;
use spear_models::import::hf_config::{dinov2_config_from_moge, vlm_config};
use spear_models::import::layout::Layout;
use spear_models::store::{assemble_vlm, load_vlm, save_vlm};
use spear_models::vlm::MogeEncoderConfig;
use spear_models::{Precision, SpearVlmConfig};
use spear_policy::Frame;
use spear_policy::inputs::{VLM_FIT, fit_frame, image_batch};

use crate::backend::{BackendChoice, BackendJob, BackendKind, run_on};

/// `spear vlm …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum VlmCommand {
    /// Answer a prompt about an image with greedy, KV-cached decoding.
    Ask(Ask),
    /// Build SPEAR-VLM's starting checkpoint: PaliGemma + MoGe encoder weights, a fresh MoGe
    /// projector and mean-resized 3D-token embeddings (paper §3.1).
    Init(Init),
}

impl VlmCommand {
    /// Runs the command on `backend`.
    pub fn run(self, backend: BackendChoice) -> Result<()> {
        match self {
            VlmCommand::Ask(ask) => run_on(backend, ask)?,
            VlmCommand::Init(init) => run_on(backend, init)?,
        }
    }
}

/// What to ask.
#[derive(Debug, Clone, clap::Args)]
pub struct Ask {
    /// Checkpoint folder (weights, config.json, tokenizer.json, and coord_tokens.json for
    /// SPEAR-VLM's 3D tokens).
    #[arg(long)]
    pub weights: PathBuf,
    /// Main camera image (PNG or JPEG), fitted to the model's size as VLM training fits images.
    #[arg(long)]
    pub image: PathBuf,
    /// Wrist camera image, for models trained with one.
    #[arg(long)]
    pub wrist: Option<PathBuf>,
    /// The question.
    #[arg(long)]
    pub prompt: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// The arithmetic of matrix products: f32, or bf16 operands with f32 results (norms, softmax
    /// and the flow's geometry stay f32).
    #[arg(long, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Also print the prompt and answer token ids.
    #[arg(long)]
    pub ids: bool,
}

impl BackendJob for Ask {
    type Output = Result<()>;
    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Result<()> {
        // Inference needs no gradients: the backend under Autodiff.
        let answer = ask::<B::InnerBackend>(&self, &device)?;
        if self.ids {
            println!("prompt ids: {:?}", answer.prompt_ids);
            println!("answer ids: {:?}", answer.tokens);
        }
        println!("{}", answer.render());
        Ok(())
    }
}

/// One piece of the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Ordinary text.
    Text(String),
    /// A 3D token: its index and, with a quantiser, the coordinate in metres.
    Coordinate {
        /// Index among the 3D tokens.
        token: usize,
        /// The bin centre, if the checkpoint has `coord_tokens.json`.
        value: Option<f32>,
    },
}

/// The answer: generated ids and their rendering.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Prompt ids after the image tokens (`<bos>`, prompt, `"\n"`).
    pub prompt_ids: Vec<u32>,
    /// Generated ids.
    pub tokens: Vec<u32>,
    /// Text and coordinates in order.
    pub pieces: Vec<Piece>,
}

impl Answer {
    /// Text with each 3D token written as its coordinate (or `<3d:k>` without a quantiser).
    pub fn render(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Coordinate { value: Some(v), .. } => format!("{v:.3}"),
                Piece::Coordinate { token, value: None } => format!("<3d:{token}>"),
            })
            .collect()
    }
}

/// Reads an image file as the VLM takes it: `[1, 3, height, width]` in [0, 1], fitted as VLM
/// training fits its images (the inference pipeline's [`fit_frame`] with [`VLM_FIT`]).
fn read_image<B: Backend>(path: &Path, size: [usize; 2], device: &B::Device) -> Result<Tensor<B, 4>> {
    let frame = Frame::read(path).map_err(anyhow::Error::msg)?;
    let pixels = fit_frame(&frame, size, VLM_FIT).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(image_batch::<B>(&pixels, 1, size, device))
}

/// Runs [`Ask`] on backend `B`.
pub fn ask<B: Backend>(request: &Ask, device: &B::Device) -> Result<Answer> {
    request.precision.check::<B>(device)?;
    let (model, _) = load_vlm::<B>(&request.weights, device)?;
    let model = model.with_precision(request.precision);
    let tokenizer = PaliGemmaTokenizer::from_file(request.weights.join("tokenizer.json"))?;
    let quantizer_path = request.weights.join("coord_tokens.json");
    let quantizer =
        quantizer_path.exists().then(|| CoordQuantizer::from_json_file(&quantizer_path)).transpose()?;
    let mut cameras = vec![read_image::<B>(&request.image, model.image_size(), device)?];
    if let Some(wrist) = &request.wrist {
        cameras.push(read_image::<B>(wrist, model.wrist_image_size(), device)?);
    }
    let prompt_ids = tokenizer.encode_prefix(&request.prompt)?;
    let generation = greedy(&model, &cameras, &prompt_ids, request.max_new_tokens, Some(tokenizer.eos_id()))?;
    let mut pieces = Vec::new();
    let mut text_run = Vec::new();
    for &id in &generation.tokens {
        match model.token_3d(id) {
            Some(token) => {
                if !text_run.is_empty() {
                    pieces.push(Piece::Text(tokenizer.decode(&std::mem::take(&mut text_run), true)?));
                }
                let value = quantizer.as_ref().map(|q| q.decode(token as u32)).transpose()?;
                pieces.push(Piece::Coordinate { token, value });
            }
            None => text_run.push(id),
        }
    }
    if !text_run.is_empty() {
        pieces.push(Piece::Text(tokenizer.decode(&text_run, true)?));
    }
    Ok(Answer { prompt_ids, tokens: generation.tokens, pieces })
}

/// How to build SPEAR-VLM's starting checkpoint.
#[derive(Debug, Clone, clap::Args)]
pub struct Init {
    /// PaliGemma snapshot folder (weights, config.json, tokenizer files).
    #[arg(long)]
    pub paligemma: PathBuf,
    /// MoGe-1 or MoGe-2 `model.pt`.
    #[arg(long)]
    pub moge: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// DINOv2 blocks to fuse (default: the last four, as the paper; MoGe-2 uses 5,11,17,23).
    #[arg(long, value_delimiter = ',')]
    pub moge_layers: Option<Vec<usize>>,
    /// Number of 3D tokens (1024 in the paper).
    #[arg(long, default_value_t = 1024)]
    pub num_3d_tokens: usize,
    /// Seed for the MoGe projector and the 3D-token rows.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl BackendJob for Init {
    type Output = Result<()>;
    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Result<()> {
        let config = init::<B::InnerBackend>(&self, &device)?;
        let moge = config.moge.as_ref().expect("init fuses MoGe");
        println!(
            "wrote {}: SPEAR-VLM with MoGe blocks {:?} and {} 3D tokens (ids {}..{})",
            self.out.display(),
            moge.layers,
            config.num_3d_tokens,
            config.gemma.vocab_size,
            config.gemma.vocab_size + config.num_3d_tokens
        );
        Ok(())
    }
}

/// Builds SPEAR-VLM from PaliGemma + MoGe weights (fresh MoGe projector, mean-resized 3D-token
/// rows), saves it with its config and the snapshot's tokenizer files, and returns its config.
pub fn init<B: Backend>(request: &Init, device: &B::Device) -> Result<SpearVlmConfig> {
    let paligemma = Checkpoint::open(&request.paligemma)?;
    let json = paligemma
        .config
        .as_ref()
        .with_context(|| format!("{}: no config.json", request.paligemma.display()))?;
    let encoder = Checkpoint::open(&request.moge)?;
    let layout = Layout::detect(encoder.names())
        .filter(|l| l.is_moge())
        .with_context(|| format!("{}: not a MoGe model.pt", request.moge.display()))?;
    let dinov2 = dinov2_config_from_moge(&encoder, layout)?;
    let moge = match &request.moge_layers {
        Some(layers) => MogeEncoderConfig::new(dinov2, layers.clone()),
        None => MogeEncoderConfig::last_four(dinov2),
    };
    if let Some(bad) = moge.layers.iter().find(|&&l| l >= moge.dinov2.num_layers) {
        bail!("--moge-layers: block {bad} does not exist (the encoder has {})", moge.dinov2.num_layers);
    }
    let config = vlm_config(json)?
        .with_moge(Some(moge))
        .with_num_3d_tokens(request.num_3d_tokens)
        .with_image_size(SpearVlmConfig::spear_vlm().image_size);
    B::seed(device, request.seed);
    let (model, _) = assemble_vlm::<B>(&config, &request.paligemma, &request.moge, device)?;
    save_vlm(&model, &config, &request.out)?;
    for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
        let from = request.paligemma.join(name);
        if from.exists() {
            std::fs::copy(&from, request.out.join(name))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    Ok(config)
}
