//! `--dry-run` parameter counts of every paper run, without allocating full-size weights, against
//! the published sizes.

use std::path::Path;

use burn::backend::Flex;
use spear_train::config::TrainConfig;
use spear_train::plan::{PartCount, parameter_counts, render};

fn counts(config: &str) -> Vec<PartCount> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(config);
    let config = TrainConfig::load(path, &[]).unwrap();
    parameter_counts::<Flex>(&config, &Default::default())
}

fn get<'a>(parts: &'a [PartCount], name: &str) -> &'a PartCount {
    parts.iter().find(|p| p.name.starts_with(name)).unwrap_or_else(|| panic!("no part {name}"))
}

#[test]
fn full_size_counts_are_the_published_sizes() {
    let vla = counts("vla/pretrain_oxe.toml");
    eprintln!("{}", render(&vla));
    let within = |part: &str, low: f64, high: f64| {
        let n = get(&vla, part).params as f64 / 1e6;
        assert!((low..=high).contains(&n), "{part}: {n:.1} M, expected {low}–{high} M");
    };
    within("SigLIP", 400.0, 430.0); // SigLIP So400m/14 vision tower
    within("Gemma", 2500.0, 2520.0); // Gemma 2B with PaliGemma's 257 216-row embedding
    within("MoGe", 300.0, 306.0); // DINOv2 ViT-L/14
    within("action expert", 300.0, 320.0); // Gemma-300M-shaped expert ("311M" in openpi)
    // MoGe frozen, the rest trained (Table 9).
    assert_eq!(get(&vla, "MoGe").trainable, 0);
    assert_eq!(get(&vla, "SigLIP").trainable, get(&vla, "SigLIP").params);
    let stage1 = counts("vlm/stage1.toml");
    eprintln!("{}", render(&stage1));
    let trainable: u64 = stage1.iter().map(|p| p.trainable).sum();
    let rows = get(&stage1, "3D-token rows").params;
    assert_eq!(rows, 1024 * 2048);
    assert_eq!(trainable, rows + get(&stage1, "projectors").params);
    assert!(stage1.iter().all(|p| p.name != "action expert"));
}

#[test]
fn tiny_runs_are_tiny() {
    for config in ["vlm/tiny.toml", "vla/tiny.toml"] {
        let total: u64 = counts(config).iter().map(|p| p.params).sum();
        assert!(total < 3_000_000, "{config}: {total}");
    }
}

#[test]
fn the_full_pretraining_plan_counts_every_part_of_the_state() {
    use spear_models::Precision;
    use spear_train::plan::memory_plan;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/vla/pretrain_oxe.toml");
    let set = ["memory.precision=\"bf16\"".to_string(), "memory.shard_optimizer=true".to_string()];
    let config = TrainConfig::load(path, &set).unwrap();
    assert_eq!(config.memory.precision, Precision::Bf16);
    let parts = parameter_counts::<Flex>(&config, &Default::default());
    let (all, trained) = parts.iter().fold((0, 0), |(a, t), p| (a + p.params, t + p.trainable));
    let plan = memory_plan::<Flex>(&config, 8, &Default::default());
    eprintln!("{}", plan.render(Some(80.0)));
    let row = |name: &str| plan.rows.iter().find(|(n, _)| n.starts_with(name)).unwrap().1;
    assert_eq!(row("weights"), 4.0 * all as f64);
    assert_eq!(row("gradients"), 4.0 * trained as f64);
    assert_eq!(row("AdamW moments"), 8.0 * trained as f64 / 8.0, "a rank's share of 8");
    assert_eq!(row("EMA"), 4.0 * trained as f64 / 8.0);
    assert!(plan.rows.iter().all(|(n, _)| !n.starts_with("accumulated")), "no accumulation");
    // The paper's batch of 2048 over 8 devices is 256 samples per device: far more activations
    // than 80 GB hold without block checkpointing; the plan names the micro-batch that fits.
    assert!(plan.total > 80e9);
    let fits = plan.largest_micro_batch(80e9);
    assert!((1..256).contains(&fits), "{fits}");
    assert!(plan.update_peak() < 80e9, "the state and the update fit");
    let held = plan.backward_peak() - plan.per_sample * 256.0;
    assert!(
        held + fits as f64 * plan.per_sample <= 80e9 && held + (fits + 1) as f64 * plan.per_sample > 80e9
    );
}
