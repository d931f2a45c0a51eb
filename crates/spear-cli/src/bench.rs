//! `spear bench vlm`: SPEAR-VLM prefill and per-token decode latency on the chosen backend, beside
//! the same forward in PyTorch (`tools/bench/vlm_torch.py`) when a Python with torch is given.
//!
//! `spear bench policy` lives in [`policy`], its FLOP/byte model and the machine's measured peaks
//! in [`roofline`]; `spear bench train` in [`train`]; `spear bench data` in [`data`];
//! `spear bench annotate` in [`annotate`].

pub mod annotate;
pub mod data;
pub mod policy;
pub mod roofline;
pub mod train;

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

/// The median (the upper one for an even count); `v` must not be empty.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process, MB (`VmHWM`), since it started or since the last
/// [`reset_peak_rss`].
pub(crate) fn peak_rss_mb() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kb / 1024.0)
}

/// Restarts [`peak_rss_mb`] from the current resident memory (Linux ≥ 4.0: writing 5 to
/// `/proc/self/clear_refs`), so that one process can report the peak of each of several runs.
pub(crate) fn reset_peak_rss() -> Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting VmHWM through /proc/self/clear_refs")
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

/// Runs `tools/bench/<script>` with `python`, `--config` naming a temporary file that holds
/// `config` as JSON, and `args`; returns the JSON object the script printed last on stdout and a
/// line about the run (torch version, device, threads).
pub(crate) fn run_script(
    python: &Path,
    script: &str,
    config: serde_json::Value,
    args: &[(&str, String)],
) -> Result<(serde_json::Value, String)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/bench").join(script);
    let stem = script.file_stem().unwrap_or_default().to_string_lossy();
    let path = std::env::temp_dir().join(format!("spear-bench-{stem}-{}.json", std::process::id()));
    std::fs::write(&path, config.to_string())?;
    let mut command = Command::new(python);
    command.arg(&script).args(["--config", &path.display().to_string()]);
    for (flag, value) in args {
        command.args([flag, value.as_str()]);
    }
    let output =
        command.output().with_context(|| format!("running {} {}", python.display(), script.display()));
    let _ = std::fs::remove_file(&path);
    let output = output?;
    if !output.status.success() {
        bail!("{} failed:\n{}", script.display(), String::from_utf8_lossy(&output.stderr));
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value = serde_json::from_str(line.trim().lines().last().unwrap_or_default())
        .with_context(|| format!("{} printed no JSON: {line}", script.display()))?;
    let about = format!("torch {} on {}, {} threads", json["torch"], json["device"], json["threads"]);
    Ok((json, about.replace('"', "")))
}
