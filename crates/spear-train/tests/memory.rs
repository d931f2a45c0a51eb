//! The memory plan (`spear_train::plan`) against the live heap of real training steps on the CPU:
//! a tiny SPEAR-1 trained as the VLA stage trains it (all but MoGe), at both precisions, without
//! checkpointing, with burn's balanced checkpointing and with block rematerialisation. This test binary counts every allocation (its own global
//! allocator), so the peak is exact, not the process's resident memory.

use burn::backend::Autodiff;
use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use spear_models::policy::Observation;
use spear_models::vlm::Trainable;
use spear_models::{Precision, SpearPolicyConfig};
use spear_train::config::{Checkpointing, OptimSection, TrainableSection};
use spear_train::optim::adamw;
use spear_train::plan::{Setting, model_plan};
use spear_train::run::{gradients, update};
use spear_train::stages::vla::staged_gradients;

#[global_allocator]
static HEAP: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

const BATCH: usize = 8;
const PROMPT: usize = 16;

/// The most live heap bytes of building the tiny policy and taking three optimiser steps (so that
/// AdamW's moments exist), above the bytes live before.
fn measured<B: AutodiffBackend>(
    config: &SpearPolicyConfig,
    precision: Precision,
    checkpointing: Checkpointing,
) -> f64 {
    let device = Default::default();
    HEAP.reset_peak_usage();
    let start = HEAP.current_usage();
    B::seed(&device, 0);
    let mut policy =
        config.init::<B>(&device).unwrap().with_trainable(Trainable::VLA, true).with_precision(precision);
    let optim = OptimSection {
        peak_lr: 1e-4,
        warmup_steps: 0,
        decay_steps: 0,
        decay_lr: 1e-4,
        b1: 0.9,
        b2: 0.95,
        eps: 1e-8,
        weight_decay: 1e-10,
        clip_norm: 1.0,
    };
    let mut optimizer = adamw(&optim).init();
    let cameras = [config.vlm.image_size, config.vlm.wrist_image_size]
        .map(|[h, w]| Tensor::random([BATCH, 3, h, w], Distribution::Uniform(0.0, 1.0), &device))
        .to_vec();
    let prompt: Vec<u32> = (0..PROMPT as u32).map(|i| 2 + i).collect();
    let obs = Observation::<B> {
        cameras,
        camera_present: None,
        prompts: vec![prompt; BATCH],
        state: Tensor::random([BATCH, config.expert.state_dim], Distribution::Normal(0.0, 1.0), &device),
    };
    let actions = policy.noise(BATCH, &device);
    let mut rng = StdRng::seed_from_u64(0);
    for step in 0..3 {
        let draws = policy.draw(BATCH, &mut rng, &device);
        let grads = if checkpointing == Checkpointing::Blocks {
            staged_gradients(&policy, &obs, actions.clone(), None, &draws, step + 1).unwrap().2
        } else {
            let loss = policy.loss(&obs, actions.clone(), None, &draws).unwrap().total;
            gradients(&policy, loss, step + 1).unwrap().1
        };
        (policy, _) = update(&mut optimizer, policy, grads, optim.peak_lr, optim.clip_norm, None);
    }
    (HEAP.peak_usage() - start) as f64
}

#[test]
fn the_plan_holds_the_live_heap_of_real_steps_within_15_percent() {
    let config = SpearPolicyConfig::tiny();
    let mut report = Vec::new();
    for precision in [Precision::F32, Precision::Bf16] {
        for checkpointing in [Checkpointing::None, Checkpointing::Balanced, Checkpointing::Blocks] {
            let setting = Setting {
                precision,
                checkpointing,
                world: 1,
                shard_optimizer: false,
                grad_accum: 1,
                micro_batch: BATCH,
                ema: false,
            };
            let plan = model_plan::<Flex>(
                &config,
                false,
                &TrainableSection::VLA,
                PROMPT,
                &setting,
                &Default::default(),
            )
            .total;
            let heap = match checkpointing {
                Checkpointing::Balanced => {
                    measured::<Autodiff<Flex, BalancedCheckpointing>>(&config, precision, checkpointing)
                }
                _ => measured::<Autodiff<Flex>>(&config, precision, checkpointing),
            };
            let error = plan / heap - 1.0;
            report.push(format!(
                "{precision} {checkpointing}: heap {:.0} MB, plan {:.0} MB ({:+.1} %)",
                heap / 1e6,
                plan / 1e6,
                error * 100.0
            ));
            eprintln!("{}", report.last().unwrap());
            assert!(error.abs() <= 0.15, "{}", report.join("\n"));
        }
    }
}
