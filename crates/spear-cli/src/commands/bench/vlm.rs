//! `spear bench vlm`: SPEAR-VLM prefill and per-token decode latency on the chosen backend, beside
//! the same forward in PyTorch (`tools/bench/vlm_torch.py`) when a Python with torch is given.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;
use spear_models::SpearVlmConfig;
use spear_models::generate::{Decoding, argmax};

use super::{Better, TorchArgs, median, ratio_line, run_script};
use crate::backend::{BackendJob, BackendKind};

/// `spear bench vlm`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchVlmArgs {
    /// The paper's full-size model (PaliGemma 3B + MoGe ViT-L) instead of the tiny one.
    #[arg(long)]
    full: bool,
    #[command(flatten)]
    torch: TorchArgs,
    /// Prompt tokens.
    #[arg(long, default_value_t = 48)]
    prompt_tokens: usize,
    /// Decode steps per round.
    #[arg(long, default_value_t = 16)]
    decode_steps: usize,
    /// Timed rounds after one warm-up.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

impl BackendJob for BenchVlmArgs {
    type Output = Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> Result<()> {
        let config = if self.full { SpearVlmConfig::spear_vlm() } else { SpearVlmConfig::tiny() };
        let spec = VlmBench {
            config,
            prompt_tokens: self.prompt_tokens,
            decode_steps: self.decode_steps,
            repeats: self.repeats.max(1),
        };
        println!(
            "bench vlm: {} model, main {:?} + wrist {:?}, {} prompt tokens, {} decode steps, median of {}",
            if self.full { "full-size" } else { "tiny" },
            spec.config.image_size,
            spec.config.wrist_image_size,
            spec.prompt_tokens,
            spec.decode_steps,
            spec.repeats
        );
        let row = |who: &str, t: &Latency| {
            format!("  {who:<12} prefill {:9.2} ms   decode {:8.3} ms/token", t.prefill_ms, t.decode_ms)
        };
        let ours = run::<B::InnerBackend>(&spec, &device)?;
        println!("{}", row(&format!("spear ({kind})"), &ours));
        if let Some(python) = &self.torch.compare_torch {
            let (torch, about) = run_torch(&spec, python, &self.torch.torch_device)?;
            println!("{}   ({about})", row("torch", &torch));
            let parts =
                [("prefill", ours.prefill_ms, torch.prefill_ms), ("decode", ours.decode_ms, torch.decode_ms)];
            println!("{}", ratio_line("torch", &parts, Better::Lower));
        }
        Ok(())
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct VlmBench {
    /// The model shape.
    pub config: SpearVlmConfig,
    /// Prompt tokens after the image tokens.
    pub prompt_tokens: usize,
    /// Decode steps timed after each prefill.
    pub decode_steps: usize,
    /// Timed rounds (after one warm-up round).
    pub repeats: usize,
}

/// Median latencies in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Images + prompt through the encoders and the decoder, last-position logits read back.
    pub prefill_ms: f64,
    /// One cached decode step, logits read back.
    pub decode_ms: f64,
}

/// Runs the benchmark on backend `B` with random weights.
pub fn run<B: Backend>(bench: &VlmBench, device: &B::Device) -> Result<Latency> {
    B::seed(device, 0);
    let model = bench.config.init::<B>(device);
    let cams = [bench.config.image_size, bench.config.wrist_image_size]
        .map(|[h, w]| Tensor::<B, 4>::random([1, 3, h, w], Distribution::Uniform(0.0, 1.0), device));
    let vocab = bench.config.gemma.vocab_size as u32;
    let prompt: Vec<u32> = (0..bench.prompt_tokens as u32).map(|i| (i * 7919) % vocab).collect();
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    for round in 0..=bench.repeats {
        let start = Instant::now();
        let mut decoding = Decoding::start(&model, &cams, &prompt)?;
        let mut token = argmax(&decoding.logits()?);
        let prefilled = Instant::now();
        for _ in 0..bench.decode_steps {
            decoding.push(token);
            token = argmax(&decoding.logits()?);
        }
        if round > 0 {
            prefill.push(prefilled.duration_since(start).as_secs_f64() * 1e3);
            decode.push(prefilled.elapsed().as_secs_f64() * 1e3 / bench.decode_steps.max(1) as f64);
        }
    }
    Ok(Latency { prefill_ms: median(prefill), decode_ms: median(decode) })
}

/// Runs `tools/bench/vlm_torch.py` with `python` on the same configuration.
pub fn run_torch(bench: &VlmBench, python: &Path, device: &str) -> Result<(Latency, String)> {
    let args = [
        ("--prompt-tokens", bench.prompt_tokens.to_string()),
        ("--decode-steps", bench.decode_steps.to_string()),
        ("--repeats", bench.repeats.to_string()),
        ("--device", device.to_string()),
    ];
    let (json, about) = run_script(python, "vlm_torch.py", serde_json::to_value(&bench.config)?, &args)?;
    let ms = |key: &str| json[key].as_f64().with_context(|| format!("no {key} in {json}"));
    Ok((Latency { prefill_ms: ms("prefill_ms")?, decode_ms: ms("decode_ms")? }, about))
}
