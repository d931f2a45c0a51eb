//! `spear bench policy`: the time per action chunk — the prefix (cameras and prompt through the
//! VLM into a KV cache) once, then N flow steps of the action expert — beside transformers' PI0
//! (`tools/bench/policy_torch.py`) on the same configuration when a Python with torch is given.
//!
//! transformers' PI0 has no MoGe encoder and only linear flow, and its SigLIP takes one square
//! image size for every camera, so the configuration compared with it is π0-shaped: full size is
//! π0 itself ([`SpearPolicyConfig::pi0`]), tiny is [`tiny_pi0`]. SPEAR-1's own shape (MoGe, S³,
//! 280×210 + 112×112) is timed on spear alone.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::prelude::*;
use burn::tensor::Distribution;
use spear_models::policy::{Observation, RotationMode, SpearPolicyConfig};

use burn::tensor::backend::AutodiffBackend;

use super::roofline::{chunk_work, probe};
use super::{Better, PolicyShapeArgs, describe_cameras, median, ratio_line, run_script};
use crate::backend::{BackendJob, BackendKind};

/// `spear bench policy`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchPolicyArgs {
    #[command(flatten)]
    shapes: PolicyShapeArgs,
    /// Prompt tokens.
    #[arg(long, default_value_t = 48)]
    prompt_tokens: usize,
    /// Timed rounds after one warm-up.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

impl BackendJob for BenchPolicyArgs {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        let args = self;
        let threads = cpu_threads();
        let repeats = args.repeats.max(1);
        println!(
            "bench policy: batch 1, {} prompt tokens, median over {repeats} timed round(s) after one warm-up, \
             on {kind} ({threads} CPU threads)",
            args.prompt_tokens.max(1)
        );
        let peak = probe::<B::InnerBackend>(&device)?;
        println!("  peak      {peak}");
        let row = |who: &str, t: &ChunkLatency| {
            format!(
                "  {who:<12} prefix {:10.2} ms   step {:9.3} ms   chunk {:10.2} ms",
                t.prefix_ms, t.step_ms, t.chunk_ms
            )
        };
        for (shape, config, name) in args.shapes.selected() {
            println!(
                "{name}: {}, {} actions × {}, {} flow steps",
                describe_cameras(&config),
                config.horizon,
                config.expert.action_dim,
                config.flow.num_steps
            );
            let work = chunk_work(&config, args.prompt_tokens.max(1));
            println!(
                "  work      prefix of {} tokens: {}; per step: {}",
                work.prefix_tokens, work.prefix, work.step
            );
            let spec = PolicyBench { config, prompt_tokens: args.prompt_tokens, repeats };
            // PyTorch first: its process has exited, its memory returned, before spear allocates
            // (full size in f32 is ~14 GB on each side).
            let torch =
                args.shapes.torch(shape, |python, device| run_torch(&spec, python, device, threads))?;
            let ours = run::<B::InnerBackend>(&spec, &device)?;
            println!("{}", row(&format!("spear ({kind})"), &ours));
            if let Some((torch, about)) = &torch {
                println!("{}   ({about})", row("torch", torch));
                println!(
                    "{}",
                    ratio_line(
                        "torch",
                        &[
                            ("prefix", ours.prefix_ms, torch.prefix_ms),
                            ("step", ours.step_ms, torch.step_ms),
                            ("chunk", ours.chunk_ms, torch.chunk_ms),
                        ],
                        Better::Lower
                    )
                );
            }
            let bound = ChunkLatency {
                prefix_ms: peak.seconds(work.prefix) * 1e3,
                step_ms: peak.seconds(work.step) * 1e3,
                chunk_ms: peak.chunk_seconds(&work) * 1e3,
            };
            let limit = |w| if peak.compute_bound(w) { "compute" } else { "memory" };
            println!(
                "{}   (prefix {}-bound, step {}-bound)",
                row("roofline", &bound),
                limit(work.prefix),
                limit(work.step)
            );
            let mut over = format!("  measured/bound   spear {:.1}x", ours.chunk_ms / bound.chunk_ms);
            if let Some((torch, _)) = &torch {
                over += &format!("   torch {:.1}x", torch.chunk_ms / bound.chunk_ms);
            }
            println!("{over}   (per chunk)");
        }
        Ok(())
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct PolicyBench {
    /// The policy's shape.
    pub config: SpearPolicyConfig,
    /// Prompt tokens (`[BOS]` first) after the cameras' tokens.
    pub prompt_tokens: usize,
    /// Timed rounds (after one warm-up round).
    pub repeats: usize,
}

/// Median latencies of one action chunk (batch 1), in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkLatency {
    /// Cameras and prompt through the VLM into the KV cache, the device synchronised.
    pub prefix_ms: f64,
    /// One flow step of the action expert (the N steps' time over N, the actions read back).
    pub step_ms: f64,
    /// The prefix and the N steps, as one round measured them.
    pub chunk_ms: f64,
}

/// π0's shape at tiny size, the configuration both spear and transformers' PI0 can run:
/// [`SpearPolicyConfig::tiny`] without MoGe or 3D tokens, in linear mode, every camera at SigLIP's
/// native 224×224.
pub fn tiny_pi0() -> SpearPolicyConfig {
    let mut config = SpearPolicyConfig::tiny();
    config.vlm.moge = None;
    config.vlm.num_3d_tokens = 0;
    let side = config.vlm.siglip.position_grid * config.vlm.siglip.patch_size;
    config.vlm.image_size = [side, side];
    config.vlm.wrist_image_size = [side, side];
    config.rotation = RotationMode::Linear;
    config
}

/// The prompt both sides use: `[BOS]`, then ids spread over the base vocabulary.
fn prompt(config: &SpearPolicyConfig, tokens: usize) -> Vec<u32> {
    let vocab = config.vlm.gemma.vocab_size as u32;
    std::iter::once(config.vlm.bos_token_id).chain((1..tokens as u32).map(|i| (i * 7919) % vocab)).collect()
}

/// `batch` observations of random images (main camera at `vlm.image_size`, the others at
/// `vlm.wrist_image_size`) and states, each with [`prompt`].
pub(crate) fn observation<B: Backend>(
    config: &SpearPolicyConfig,
    prompt_tokens: usize,
    batch: usize,
    device: &B::Device,
) -> Observation<B> {
    let cameras = (0..config.cameras)
        .map(|c| {
            let [h, w] = if c == 0 { config.vlm.image_size } else { config.vlm.wrist_image_size };
            Tensor::random([batch, 3, h, w], Distribution::Uniform(0.0, 1.0), device)
        })
        .collect();
    Observation {
        cameras,
        camera_present: None,
        prompts: vec![prompt(config, prompt_tokens); batch],
        state: Tensor::random([batch, config.expert.state_dim], Distribution::Normal(0.0, 1.0), device),
    }
}

/// Runs the benchmark on backend `B` with random weights: each round encodes the observation
/// ([`spear_models::SpearPolicy::encode`], then `B::sync`) and samples from it
/// ([`spear_models::SpearPolicy::sample_encoded`], the actions read back to the host).
pub fn run<B: Backend>(bench: &PolicyBench, device: &B::Device) -> Result<ChunkLatency> {
    B::seed(device, 0);
    let policy = bench.config.init::<B>(device)?;
    let obs = observation::<B>(&bench.config, bench.prompt_tokens.max(1), 1, device);
    let noise = policy.noise(1, device);
    let steps = bench.config.flow.num_steps;
    let (mut prefix, mut step, mut chunk) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=bench.repeats {
        let start = Instant::now();
        let encoded = policy.encode(&obs)?;
        B::sync(device)?;
        let encoded_at = Instant::now();
        policy.sample_encoded(&encoded, noise.clone()).into_data();
        let end = Instant::now();
        if round > 0 {
            prefix.push(encoded_at.duration_since(start).as_secs_f64() * 1e3);
            step.push(end.duration_since(encoded_at).as_secs_f64() * 1e3 / steps as f64);
            chunk.push(end.duration_since(start).as_secs_f64() * 1e3);
        }
    }
    Ok(ChunkLatency { prefix_ms: median(prefix), step_ms: median(step), chunk_ms: median(chunk) })
}

/// Runs `tools/bench/policy_torch.py` with `python` on the same configuration (which must be
/// π0-shaped: the script says what it cannot run), on torch device `device` with `threads` CPU
/// threads.
pub fn run_torch(
    bench: &PolicyBench,
    python: &Path,
    device: &str,
    threads: usize,
) -> Result<(ChunkLatency, String)> {
    let args = [
        ("--prompt-tokens", bench.prompt_tokens.max(1).to_string()),
        ("--repeats", bench.repeats.to_string()),
        ("--device", device.to_string()),
        ("--threads", threads.to_string()),
    ];
    let (json, about) = run_script(python, "policy_torch.py", serde_json::to_value(&bench.config)?, &args)?;
    let ms = |key: &str| json[key].as_f64().with_context(|| format!("no {key} in {json}"));
    let latency =
        ChunkLatency { prefix_ms: ms("prefix_ms")?, step_ms: ms("step_ms")?, chunk_ms: ms("chunk_ms")? };
    Ok((latency, about))
}

/// The CPU threads spear computes with: burn-flex runs on rayon's global pool, which has
/// `RAYON_NUM_THREADS` threads when that is set, else one per logical core.
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    #[test]
    fn tiny_pi0_is_tiny_without_the_parts_transformers_lacks() {
        let config = tiny_pi0();
        assert!(config.vlm.moge.is_none() && config.rotation == RotationMode::Linear);
        assert_eq!((config.vlm.image_size, config.vlm.wrist_image_size), ([224, 224], [224, 224]));
        assert_eq!(config.expert, SpearPolicyConfig::tiny().expert);
        config.validate().unwrap();
    }

    #[test]
    fn prompts_start_with_bos_and_stay_in_the_vocabulary() {
        let config = tiny_pi0();
        let ids = prompt(&config, 48);
        assert_eq!((ids.len(), ids[0]), (48, config.vlm.bos_token_id));
        assert!(ids.iter().all(|&id| (id as usize) < config.vlm.gemma.vocab_size));
    }

    #[test]
    fn times_every_phase() {
        let bench = PolicyBench { config: tiny_pi0(), prompt_tokens: 4, repeats: 1 };
        let t = run::<B>(&bench, &Default::default()).unwrap();
        assert!(t.prefix_ms > 0.0 && t.step_ms > 0.0, "{t:?}");
        assert!(t.chunk_ms >= t.prefix_ms + t.step_ms * bench.config.flow.num_steps as f64 * 0.999, "{t:?}");
    }
}
