//! `spear bench train`: the time of one optimiser step of the policy — flow draws, the joint
//! training forward and loss, backward, clipping by the global norm, AdamW — beside the same step
//! of transformers' PI0 in PyTorch (`tools/bench/train_torch.py`) when a Python with torch is given.
//!
//! The step is the one `spear_train::run::train` takes, through the same functions
//! ([`gradients`], [`update`]), with openpi's optimiser settings at a fixed learning rate; the
//! loop's EMA update, accumulation and metrics are not part of it. As for `spear bench policy`,
//! the shape compared with PyTorch is π0's ([`tiny_pi0`](super::policy::tiny_pi0) or
//! [`SpearPolicyConfig::pi0`]) and SPEAR-1's own shape is timed on spear alone.
//!
//! `--precision` and `--checkpointing` (lists) give one row per setting, beside PyTorch's at the
//! same precision (bf16 autocast) and checkpointing: none, or every block rematerialised
//! (`train_torch.py` runs PI0 layer by layer under `torch.utils.checkpoint`, since transformers'
//! own gradient checkpointing cannot train PI0); burn's balanced checkpointing has no PyTorch
//! counterpart, so its rows are spear's alone.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::tensor::backend::{AutodiffBackend, Backend};
use rand::{SeedableRng, rngs::StdRng};
use spear_models::vlm::Trainable;
use spear_models::{Precision, SpearPolicy, SpearPolicyConfig};
use spear_train::config::{Checkpointing, OptimSection, TrainableSection};
use spear_train::optim::adamw;
use spear_train::plan::{MemoryPlan, Setting, model_plan};
use spear_train::run::{gradients, update};
use spear_train::stages::vla::staged_gradients;

use super::policy::{cpu_threads, observation};
use super::roofline::chunk_work;
use super::{
    Better, PolicyShapeArgs, describe_cameras, median, peak_rss_mb, ratio_line, reset_peak_rss, run_script,
};
use crate::backend::{BackendJob, BackendKind};

/// `spear bench train`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchTrainArgs {
    #[command(flatten)]
    shapes: PolicyShapeArgs,
    /// Samples per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Prompt tokens.
    #[arg(long, default_value_t = 16)]
    prompt_tokens: usize,
    /// Timed steps after one warm-up step.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// The arithmetic of matrix products (`f32`, `bf16`; several separated by commas: one row each).
    #[arg(long, value_delimiter = ',', default_value = "f32")]
    precision: Vec<Precision>,
    /// Activation checkpointing (`none`, `balanced`, `blocks`; several separated by commas: one row
    /// each).
    #[arg(long, value_delimiter = ',', default_value = "none")]
    checkpointing: Vec<Checkpointing>,
}

impl BackendJob for BenchTrainArgs {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        let args = self;
        let threads = cpu_threads();
        let (batch, prompt_tokens, repeats) =
            (args.batch.max(1), args.prompt_tokens.max(1), args.repeats.max(1));
        println!(
            "bench train: one optimiser step (flow draws, forward and loss, backward, global-norm clip, AdamW; \
             all but MoGe trains, as in the paper's VLA stage) at batch {batch}, {prompt_tokens} prompt tokens, \
             median over {repeats} timed step(s) after one warm-up, on {kind} ({threads} CPU threads)"
        );
        for (shape, config, name) in args.shapes.selected() {
            let spec = TrainBench {
                config,
                batch,
                prompt_tokens,
                repeats,
                precision: Precision::F32,
                checkpointing: Checkpointing::None,
            };
            let tokens = spec.tokens_per_sample();
            println!(
                "{name}: {}, {} actions × {}, {tokens} tokens per sample ({} prefix + {} suffix)",
                describe_cameras(&spec.config),
                spec.config.horizon,
                spec.config.expert.action_dim,
                tokens - spec.config.horizon - 1,
                spec.config.horizon + 1
            );
            let row = |who: &str, t: &StepTime, memory: String| {
                format!(
                    "  {who:<24} {:10.2} ms/step {:9.3} steps/s {:10.2} samples/s {:12.0} tokens/s   {memory}",
                    t.step_ms,
                    t.per_second(1.0),
                    t.per_second(batch as f64),
                    t.per_second((batch * tokens) as f64)
                )
            };
            let parts = |who: &str, t: &StepTime| match t.forward_ms.is_nan() {
                false => format!(
                    "  {who:<24} forward {:10.2} ms   backward {:10.2} ms   update {:9.2} ms   loss {:.4}",
                    t.forward_ms, t.backward_ms, t.update_ms, t.loss
                ),
                // Block rematerialisation interleaves the two.
                true => format!(
                    "  {who:<24} forward and backward {:10.2} ms   update {:9.2} ms   loss {:.4}",
                    t.backward_ms, t.update_ms, t.loss
                ),
            };
            for &precision in &args.precision {
                for &checkpointing in &args.checkpointing {
                    let setting = TrainBench { precision, checkpointing, ..spec.clone() };
                    // PyTorch first: its process has exited, its memory returned, before spear allocates.
                    // PyTorch has no counterpart of burn's balanced checkpointing.
                    let torch = match checkpointing {
                        Checkpointing::None | Checkpointing::Blocks => {
                            args.shapes.torch(shape, |python, device| run_torch(&setting, python, device))?
                        }
                        Checkpointing::Balanced => None,
                    };
                    let ours = run::<B>(&setting, &device)?;
                    let plan = setting.plan::<B::InnerBackend>(&device);
                    let memory = match kind {
                        BackendKind::Cpu => match ours.heap_mb {
                            Some(heap) => format!(
                                "peak memory {:.0} MB (process RSS), heap {heap:.0} MB above the start \
                                 (plan {:.0} MB, {:+.1} %)",
                                ours.peak_rss_mb,
                                plan.total / 1e6,
                                (plan.total / 1e6 / heap - 1.0) * 100.0
                            ),
                            None => format!(
                                "peak memory {:.0} MB (process RSS; plan {:.0} MB)",
                                ours.peak_rss_mb,
                                plan.total / 1e6
                            ),
                        },
                        _ => format!(
                            "peak host RSS {:.0} MB (device memory: burn 0.21 exposes no statistics)",
                            ours.peak_rss_mb
                        ),
                    };
                    let who = format!("spear ({kind}) {precision} {checkpointing}");
                    println!("{}", row(&who, &ours, memory));
                    let Some((torch, about)) = &torch else {
                        println!("{}", parts(&who, &ours));
                        continue;
                    };
                    let memory = match torch.peak_device_mb {
                        Some(device_mb) => {
                            format!("peak device memory {device_mb:.0} MB (max_memory_allocated)")
                        }
                        None => format!("peak memory {:.0} MB (process RSS)", torch.peak_rss_mb),
                    };
                    let torch_who = format!("torch {precision} {checkpointing}");
                    println!("{}   ({about})", row(&torch_who, torch, memory));
                    println!("{}", parts(&who, &ours));
                    println!("{}", parts(&torch_who, torch));
                    let passes = if ours.forward_ms.is_nan() {
                        vec![("forward and backward", ours.backward_ms, torch.forward_ms + torch.backward_ms)]
                    } else {
                        vec![
                            ("forward", ours.forward_ms, torch.forward_ms),
                            ("backward", ours.backward_ms, torch.backward_ms),
                        ]
                    };
                    let ratios: Vec<_> = std::iter::once(("step", ours.step_ms, torch.step_ms))
                        .chain(passes)
                        .chain([("update", ours.update_ms, torch.update_ms)])
                        .collect();
                    println!("{}", ratio_line("torch", &ratios, Better::Lower));
                }
            }
        }
        Ok(())
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct TrainBench {
    /// The policy's shape.
    pub config: SpearPolicyConfig,
    /// Samples per step.
    pub batch: usize,
    /// Prompt tokens (`[BOS]` first) after the cameras' tokens.
    pub prompt_tokens: usize,
    /// Timed steps (after one warm-up step).
    pub repeats: usize,
    /// The arithmetic of the policy's matrix products.
    pub precision: Precision,
    /// Which activations the backward pass recomputes.
    pub checkpointing: Checkpointing,
}

impl TrainBench {
    /// What `spear_train::plan` expects the step to hold: weights, gradients, AdamW's moments,
    /// bf16 casts and the activations of the batch (no EMA, no accumulation).
    pub fn plan<B: Backend>(&self, device: &B::Device) -> MemoryPlan {
        let setting = Setting {
            precision: self.precision,
            checkpointing: self.checkpointing,
            world: 1,
            shard_optimizer: false,
            grad_accum: 1,
            micro_batch: self.batch.max(1),
            ema: false,
        };
        model_plan::<B>(
            &self.config,
            false,
            &TrainableSection::VLA,
            self.prompt_tokens.max(1),
            &setting,
            device,
        )
    }

    /// Tokens one sample puts through the network per step: the prefix (every camera's tokens and
    /// the prompt) and the suffix (the state token and the chunk's actions).
    pub fn tokens_per_sample(&self) -> usize {
        chunk_work(&self.config, self.prompt_tokens.max(1)).prefix_tokens + 1 + self.config.horizon
    }
}

/// One side's step, medians over the timed steps in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTime {
    /// The whole optimiser step.
    pub step_ms: f64,
    /// Draws and the training forward up to the loss.
    pub forward_ms: f64,
    /// The loss read back, backward, the gradients collected.
    pub backward_ms: f64,
    /// Clipping by the global norm and the AdamW update, the device synchronised.
    pub update_ms: f64,
    /// The last step's loss (finite, or the step fails).
    pub loss: f64,
    /// Peak resident memory of the process while it built the model and stepped, MB (an upper
    /// bound when memory freed by an earlier shape is still resident).
    pub peak_rss_mb: f64,
    /// spear's side: the most live heap bytes above those before the model was built, MB, when
    /// the binary counts them (feature `heap-stats`, [`crate::heap`]).
    pub heap_mb: Option<f64>,
    /// Peak device memory, MB, where the side can read it (PyTorch on CUDA; burn 0.21's backend
    /// API exposes no memory statistics).
    pub peak_device_mb: Option<f64>,
}

impl StepTime {
    /// How many of something a step handles per second, at `per_step` per step (1 for steps/s,
    /// the batch for samples/s).
    pub fn per_second(&self, per_step: f64) -> f64 {
        per_step * 1e3 / self.step_ms
    }
}

/// openpi's optimiser (AdamW β = (0.9, 0.95), ε = 1e-8, weight decay 1e-10, global-norm clip 1)
/// at the constant learning rate 2.5e-5 (its peak): `configs/vla/pretrain_oxe.toml`'s section
/// without the schedule, whose value does not change the work.
fn openpi_optim() -> OptimSection {
    OptimSection {
        peak_lr: 2.5e-5,
        warmup_steps: 0,
        decay_steps: 0,
        decay_lr: 2.5e-5,
        b1: 0.9,
        b2: 0.95,
        eps: 1e-8,
        weight_decay: 1e-10,
        clip_norm: 1.0,
    }
}

/// Runs the benchmark on backend `B` with random weights, training what the paper's VLA stage
/// trains ([`Trainable::VLA`]: all but MoGe) on one fixed batch of random cameras, state, prompt
/// and target chunks. Each step draws its noise and flow times ([`spear_models::SpearPolicy::draw`]),
/// takes the loss with every chunk step valid ([`spear_models::SpearPolicy::loss`]), then
/// [`gradients`] (the loss read back, backward) and [`update`] (clip, AdamW), and synchronises the
/// device.
pub fn run<B: AutodiffBackend>(bench: &TrainBench, device: &B::Device) -> Result<StepTime> {
    if bench.checkpointing == Checkpointing::Balanced {
        // burn's checkpointing strategy is part of the autodiff backend's type.
        let unchanged = TrainBench { checkpointing: Checkpointing::None, ..bench.clone() };
        return run::<Autodiff<B::InnerBackend, BalancedCheckpointing>>(&unchanged, device);
    }
    bench.precision.check::<B>(device)?;
    reset_peak_rss()?;
    crate::heap::reset_peak();
    let heap_start = crate::heap::current();
    B::seed(device, 0);
    let mut policy =
        bench.config.init::<B>(device)?.with_trainable(Trainable::VLA, true).with_precision(bench.precision);
    let optim = openpi_optim();
    let mut optimizer = adamw(&optim).init::<B, SpearPolicy<B>>();
    let batch = bench.batch.max(1);
    let obs = observation::<B>(&bench.config, bench.prompt_tokens.max(1), batch, device);
    // Targets in the policy's action layout: its noise is one (S³: unit, canonical quaternions).
    let actions = policy.noise(batch, device);
    let mut rng = StdRng::seed_from_u64(0);
    let (mut step_ms, mut forward_ms, mut backward_ms, mut update_ms) = (vec![], vec![], vec![], vec![]);
    let mut loss = f64::NAN;
    for step in 0..=bench.repeats {
        let start = Instant::now();
        let draws = policy.draw(batch, &mut rng, device);
        let (value, grads, forward) = if bench.checkpointing == Checkpointing::Blocks {
            let (value, _, grads) =
                staged_gradients(&policy, &obs, actions.clone(), None, &draws, step as u64 + 1)?;
            (value, grads, None)
        } else {
            let total = policy.loss(&obs, actions.clone(), None, &draws).context("the training loss")?.total;
            B::sync(device)?;
            let forward = Instant::now();
            let (value, grads) = gradients(&policy, total, step as u64 + 1)?;
            (value, grads, Some(forward))
        };
        // On a GPU the backward pass is only queued by now.
        B::sync(device)?;
        let backward = Instant::now();
        (policy, _) = update(&mut optimizer, policy, grads, optim.peak_lr, optim.clip_norm, None);
        B::sync(device)?;
        let end = Instant::now();
        loss = value;
        if step > 0 {
            let ms = |from: Instant, to: Instant| to.duration_since(from).as_secs_f64() * 1e3;
            step_ms.push(ms(start, end));
            forward_ms.push(forward.map_or(f64::NAN, |f| ms(start, f)));
            backward_ms.push(ms(forward.unwrap_or(start), backward));
            update_ms.push(ms(backward, end));
        }
    }
    Ok(StepTime {
        step_ms: median(step_ms),
        forward_ms: median(forward_ms),
        backward_ms: median(backward_ms),
        update_ms: median(update_ms),
        loss,
        peak_rss_mb: peak_rss_mb()?,
        heap_mb: crate::heap::peak().zip(heap_start).map(|(peak, start)| (peak - start) as f64 / 1e6),
        peak_device_mb: None,
    })
}

/// Runs `tools/bench/train_torch.py` with `python` on the same configuration (which must be
/// π0-shaped: the script says what it cannot run), batch and optimiser settings, on torch device
/// `device` with as many CPU threads as spear computes with ([`cpu_threads`]).
pub fn run_torch(bench: &TrainBench, python: &Path, device: &str) -> Result<(StepTime, String)> {
    let optim = openpi_optim();
    let args = [
        ("--batch", bench.batch.max(1).to_string()),
        ("--lr", optim.peak_lr.to_string()),
        ("--b1", optim.b1.to_string()),
        ("--b2", optim.b2.to_string()),
        ("--eps", optim.eps.to_string()),
        ("--weight-decay", optim.weight_decay.to_string()),
        ("--clip-norm", optim.clip_norm.to_string()),
        ("--prompt-tokens", bench.prompt_tokens.max(1).to_string()),
        ("--repeats", bench.repeats.to_string()),
        ("--device", device.to_string()),
        ("--threads", cpu_threads().to_string()),
        ("--precision", bench.precision.to_string()),
        ("--checkpointing", bench.checkpointing.to_string()),
    ];
    let (json, about) = run_script(python, "train_torch.py", serde_json::to_value(&bench.config)?, &args)?;
    let get = |key: &str| json[key].as_f64().with_context(|| format!("no {key} in {json}"));
    let time = StepTime {
        step_ms: get("step_ms")?,
        forward_ms: get("forward_ms")?,
        backward_ms: get("backward_ms")?,
        update_ms: get("update_ms")?,
        loss: get("loss")?,
        peak_rss_mb: get("peak_rss_mb")?,
        heap_mb: None,
        peak_device_mb: json["peak_device_mb"].as_f64(),
    };
    Ok((time, about))
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Autodiff<burn::backend::Flex>;

    #[test]
    fn counts_prefix_and_suffix_tokens() {
        let bench = TrainBench {
            config: super::super::policy::tiny_pi0(),
            batch: 2,
            prompt_tokens: 16,
            repeats: 1,
            precision: Precision::F32,
            checkpointing: Checkpointing::None,
        };
        // 2 cameras × 256 SigLIP tokens + 16 prompt tokens; state + 5 actions.
        assert_eq!(bench.tokens_per_sample(), 2 * 256 + 16 + 1 + 5);
    }

    #[test]
    fn times_every_part_of_a_step() {
        let bench = TrainBench {
            config: SpearPolicyConfig::tiny(),
            batch: 2,
            prompt_tokens: 4,
            repeats: 1,
            precision: Precision::Bf16,
            checkpointing: Checkpointing::Balanced,
        };
        let t = run::<B>(&bench, &Default::default()).unwrap();
        assert!(t.loss.is_finite() && t.loss > 0.0, "{t:?}");
        assert!(t.forward_ms > 0.0 && t.backward_ms > 0.0 && t.update_ms > 0.0, "{t:?}");
        assert!(t.step_ms >= t.forward_ms && t.peak_rss_mb > 0.0 && t.per_second(2.0) > 0.0, "{t:?}");
    }
}
