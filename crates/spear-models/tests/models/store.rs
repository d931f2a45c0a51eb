//! Assembling SPEAR-VLM from PaliGemma + MoGe checkpoints, saving and reloading it, freezing.

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::Int;
use spear_models::dinov2::Dinov2Config;
use spear_models::import::checkpoint::Checkpoint;
use spear_models::import::hf_config::vlm_config;
use spear_models::store::{assemble_vlm, load_vlm, save_vlm};
use spear_models::vision::imagenet_pixels;
use spear_models::vlm::{MogeEncoderConfig, SpearVlmConfig, Trainable};

use crate::common::*;

fn tiny_spear_config() -> SpearVlmConfig {
    let paligemma = Checkpoint::open(fixtures().join("paligemma-tiny")).unwrap();
    let dinov2 = Dinov2Config::new()
        .with_hidden_size(32)
        .with_intermediate_size(128)
        .with_num_layers(6)
        .with_num_heads(4);
    vlm_config(paligemma.config.as_ref().unwrap())
        .unwrap()
        .with_moge(Some(MogeEncoderConfig::last_four(dinov2)))
        .with_num_3d_tokens(16)
}

fn assemble<B: Backend>(device: &B::Device) -> spear_models::SpearVlm<B> {
    B::seed(device, 11);
    let config = tiny_spear_config();
    let (model, [first, second]) = assemble_vlm::<B>(
        &config,
        &fixtures().join("paligemma-tiny"),
        &fixtures().join("moge_v2/model.pt"),
        device,
    )
    .unwrap();
    assert!(first.missing.iter().all(|m| m.starts_with("moge") || m == "embed_3d"), "PaliGemma part");
    assert!(second.missing.iter().all(|m| !m.starts_with("moge.")), "MoGe part");
    model
}

#[test]
fn assembled_vlm_carries_both_checkpoints_and_mean_resized_3d_tokens() {
    let device = Default::default();
    let model = assemble::<Cpu>(&device);
    let pixels = tensor::<Cpu, 4>("paligemma_expected.safetensors", "pixel_values", &device);
    assert_close(
        model.siglip.forward(pixels),
        &read("paligemma_expected.safetensors", "vision_last_hidden_state"),
        1e-4,
        "SigLIP part",
    );
    let image = imagenet_pixels(tensor::<Cpu, 4>("dinov2_expected.safetensors", "image", &device));
    let last4 = Tensor::stack::<4>(model.moge.as_ref().unwrap().intermediate_layers(image, &[2, 3, 4, 5]), 0);
    assert_close(last4, &read("dinov2_expected.safetensors", "main_last4"), 1e-4, "MoGe part");
    // New rows sit at the mean embedding (noise ~3e-5 of the spread).
    let mean = model.gemma.embed_tokens.weight.val().mean_dim(0);
    let rows = model.embed_3d.as_ref().unwrap().val();
    let gap: f32 = (rows - mean).abs().max().into_scalar();
    assert!(gap < 1e-3, "3D rows drift {gap} from the mean embedding");
    // 3D-token ids follow the base vocabulary and round-trip through the embedding.
    assert_eq!(model.vocab(), model.base_vocab() + 16);
    assert_eq!(model.token_3d(model.base_vocab() as u32 + 3), Some(3));
    assert_eq!(model.token_3d(5), None);
}

#[test]
fn saved_checkpoint_reloads_to_identical_outputs() {
    let device = Default::default();
    let model = assemble::<Cpu>(&device);
    let dir = std::env::temp_dir().join(format!("spear-vlm-roundtrip-{}", std::process::id()));
    save_vlm(&model, &tiny_spear_config(), &dir).unwrap();
    let (reloaded, config) = load_vlm::<Cpu>(&dir, &device).unwrap();
    assert_eq!(config, tiny_spear_config());
    let rgb =
        Tensor::<Cpu, 4>::random([1, 3, 56, 56], burn::tensor::Distribution::Uniform(0.0, 1.0), &device);
    let base = model.base_vocab() as i64;
    let ids =
        Tensor::<Cpu, 2, Int>::from_data(TensorData::new(vec![2i64, 300, base + 3, 260], [1, 4]), &device);
    let a = model.forward(std::slice::from_ref(&rgb), ids.clone(), None).unwrap();
    let b = reloaded.forward(&[rgb], ids, None).unwrap();
    assert_close(b, &a.into_data(), 0.0, "reloaded logits");
}

#[test]
fn stage_one_trains_only_projectors_and_3d_rows() {
    type Grad = Autodiff<Cpu>;
    let device = Default::default();
    let model = assemble::<Grad>(&device).with_trainable(Trainable::STAGE_1);
    let rgb =
        Tensor::<Grad, 4>::random([1, 3, 56, 56], burn::tensor::Distribution::Uniform(0.0, 1.0), &device);
    let base = model.base_vocab() as i64;
    let ids = Tensor::<Grad, 2, Int>::from_data(TensorData::new(vec![2i64, 300, base + 3], [1, 3]), &device);
    let grads = model.forward(&[rgb], ids, None).unwrap().powi_scalar(2).mean().backward();
    assert!(model.siglip_projector.weight.grad(&grads).is_some(), "SigLIP projector trains");
    assert!(model.moge_projector.as_ref().unwrap().weight.grad(&grads).is_some(), "MoGe projector trains");
    assert!(model.embed_3d.as_ref().unwrap().grad(&grads).is_some(), "3D rows train");
    assert!(model.gemma.layers[0].mlp.up_proj.weight.grad(&grads).is_none(), "Gemma is frozen");
    assert!(model.gemma.embed_tokens.weight.grad(&grads).is_none(), "old embeddings are frozen");
    assert!(model.siglip.post_layernorm.gamma.grad(&grads).is_none(), "SigLIP is frozen");
    assert!(model.moge.as_ref().unwrap().norm.gamma.grad(&grads).is_none(), "MoGe is frozen");
}
