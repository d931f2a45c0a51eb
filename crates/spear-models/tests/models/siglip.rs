use spear_models::import::checkpoint::Checkpoint;
use spear_models::import::layout::{Layout, load_mapped, strip_prefix};
use spear_models::siglip::{SiglipConfig, SiglipVision};

use crate::common::*;

/// The tiny tower of `siglip.safetensors` (`SiglipVisionModel` state dict: `vision_model.*`).
fn tiny_siglip(device: &burn::prelude::Device<Cpu>) -> SiglipVision<Cpu> {
    let config = SiglipConfig::new()
        .with_hidden_size(32)
        .with_intermediate_size(48)
        .with_num_layers(2)
        .with_num_heads(4);
    let mut model = config.init::<Cpu>(device);
    let checkpoint = Checkpoint::open(fixtures().join("siglip.safetensors")).unwrap();
    // The bare tower's keys are PaliGemma's without the `vision_tower.` prefix.
    let names: Vec<String> = checkpoint.names().map(|n| format!("vision_tower.{n}")).collect();
    let mapping = Layout::PaliGemma
        .map_names(names.iter().map(String::as_str))
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("vision_tower.").to_string(), v))
        .collect();
    load_mapped(&mut model, &checkpoint, strip_prefix(mapping, "siglip"), &[], "SigLIP").unwrap();
    model
}

#[test]
fn position_tables_match_torch_bicubic() {
    let device = Default::default();
    let model = tiny_siglip(&device);
    let want = read("siglip_expected.safetensors", "pos_15x20");
    assert_close(model.position_table(15, 20), &want, 1e-5, "SigLIP position table 16×16 → 15×20");
    let want = read("siglip_expected.safetensors", "pos_8x8");
    assert_close(model.position_table(8, 8), &want, 1e-5, "SigLIP position table 16×16 → 8×8");
}

#[test]
fn tower_matches_transformers_at_280x210_and_112x112() {
    let device = Default::default();
    let model = tiny_siglip(&device);
    let main = tensor::<Cpu, 4>("siglip_expected.safetensors", "main_pixels", &device);
    let want = read("siglip_expected.safetensors", "main_out");
    assert_close(model.forward(main), &want, 1e-4, "SigLIP 280×210");
    let wrist = tensor::<Cpu, 4>("siglip_expected.safetensors", "wrist_pixels", &device);
    let want = read("siglip_expected.safetensors", "wrist_out");
    assert_close(model.forward(wrist), &want, 1e-4, "SigLIP 112×112 (batch 2)");
}
