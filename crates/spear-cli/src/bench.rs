//! `spear bench vlm`: SPEAR-VLM prefill and per-token decode latency on the chosen backend, beside
//! the same forward in PyTorch (`tools/bench/vlm_torch.py`) when a Python with torch is given.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::Distribution;
use spear_models::SpearVlmConfig;
use spear_models::generate::{Decoding, argmax};

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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/bench/vlm_torch.py");
    let config = std::env::temp_dir().join(format!("spear-bench-vlm-{}.json", std::process::id()));
    std::fs::write(&config, serde_json::to_string(&bench.config)?)?;
    let output = Command::new(python)
        .arg(&script)
        .args(["--config", &config.display().to_string()])
        .args(["--prompt-tokens", &bench.prompt_tokens.to_string()])
        .args(["--decode-steps", &bench.decode_steps.to_string()])
        .args(["--repeats", &bench.repeats.to_string()])
        .args(["--device", device])
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    let _ = std::fs::remove_file(&config);
    if !output.status.success() {
        bail!("{} failed:\n{}", script.display(), String::from_utf8_lossy(&output.stderr));
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value = serde_json::from_str(line.trim().lines().last().unwrap_or_default())
        .with_context(|| format!("{} printed no JSON: {line}", script.display()))?;
    let ms = |key: &str| json[key].as_f64().with_context(|| format!("no {key} in {json}"));
    let about = format!("torch {} on {}, {} threads", json["torch"], json["device"], json["threads"]);
    Ok((Latency { prefill_ms: ms("prefill_ms")?, decode_ms: ms("decode_ms")? }, about.replace('"', "")))
}
