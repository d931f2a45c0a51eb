//! Model configurations from the JSON stored beside checkpoints: transformers' PaliGemma
//! `config.json` and spear's own `config.json` (a serialised [`SpearVlmConfig`]).
//!
//! transformers writes only the fields of a sub-config that differ from that class's defaults,
//! so a field absent from `vision_config` takes `SiglipVisionConfig`'s default (768 wide, patch
//! 16, …) and one absent from `text_config` takes `GemmaConfig`'s (Gemma 7B's) — not PaliGemma's.

use serde_json::Value;

use crate::checkpoint::Checkpoint;
use crate::dinov2::Dinov2Config;
use crate::error::ModelError;
use crate::gemma::GemmaConfig;
use crate::layout::Layout;
use crate::siglip::SiglipConfig;
use crate::vlm::SpearVlmConfig;

fn field(section: Option<&Value>, key: &str, default: f64) -> f64 {
    section.and_then(|s| s.get(key)).and_then(Value::as_f64).unwrap_or(default)
}

/// Reads a PaliGemma `config.json` (transformers' `PaliGemmaConfig`) into a VLM config with no
/// MoGe and no 3D tokens.
pub fn paligemma_config(json: &Value) -> Result<SpearVlmConfig, ModelError> {
    let vision = json.get("vision_config");
    let text = json.get("text_config");
    let int = |section, key, default: usize| field(section, key, default as f64) as usize;
    let patch = int(vision, "patch_size", 16);
    let image = int(vision, "image_size", 224);
    if patch == 0 || !image.is_multiple_of(patch) {
        return Err(ModelError::Input(format!(
            "config.json: image_size {image} is not a multiple of patch_size {patch}"
        )));
    }
    let siglip = SiglipConfig::new()
        .with_hidden_size(int(vision, "hidden_size", 768))
        .with_intermediate_size(int(vision, "intermediate_size", 3072))
        .with_num_layers(int(vision, "num_hidden_layers", 12))
        .with_num_heads(int(vision, "num_attention_heads", 12))
        .with_patch_size(patch)
        .with_position_grid(image / patch)
        .with_layer_norm_eps(field(vision, "layer_norm_eps", 1e-6));
    let heads = int(text, "num_attention_heads", 16);
    let gemma = GemmaConfig::new()
        .with_vocab_size(int(text, "vocab_size", int(Some(json), "vocab_size", 256000)))
        .with_hidden_size(int(text, "hidden_size", 3072))
        .with_intermediate_size(int(text, "intermediate_size", 24576))
        .with_num_layers(int(text, "num_hidden_layers", 28))
        .with_num_heads(heads)
        .with_num_kv_heads(int(text, "num_key_value_heads", heads))
        .with_head_dim(int(text, "head_dim", 256))
        .with_rms_norm_eps(field(text, "rms_norm_eps", 1e-6))
        .with_rope_theta(field(text, "rope_theta", 10000.0));
    let token = |key: &str, default: u32| {
        json.get(key)
            .or_else(|| text.and_then(|t| t.get(key)))
            .and_then(Value::as_u64)
            .map_or(default, |v| v as u32)
    };
    Ok(SpearVlmConfig::new(siglip, gemma)
        .with_image_size([image, image])
        .with_bos_token_id(token("bos_token_id", 2))
        .with_eos_token_id(token("eos_token_id", 1)))
}

/// The VLM configuration of a checkpoint's stored JSON: spear's own (it has a `"gemma"` key) or
/// transformers' PaliGemma (`"model_type": "paligemma"`).
pub fn vlm_config(json: &Value) -> Result<SpearVlmConfig, ModelError> {
    if json.get("gemma").is_some() {
        return serde_json::from_value(json.clone())
            .map_err(|e| ModelError::Input(format!("config.json is not a spear VLM config: {e}")));
    }
    match json.get("model_type").and_then(Value::as_str) {
        Some("paligemma") | None => paligemma_config(json),
        Some(other) => Err(ModelError::Input(format!(
            "config.json: model_type {other:?} is not a PaliGemma or spear VLM"
        ))),
    }
}

/// A MoGe checkpoint's DINOv2 size, read from tensor shapes (its `model_config` only names the
/// architecture, e.g. `dinov2_vitl14`). Heads are invisible in shapes; DINOv2's are 64 wide.
pub fn dinov2_config_from_moge(checkpoint: &Checkpoint, layout: Layout) -> Result<Dinov2Config, ModelError> {
    let prefix = if layout == Layout::MogeV2 { "encoder.backbone." } else { "backbone." };
    let bad = |message: String| ModelError::Format { path: checkpoint.path.clone(), message };
    let shape = |name: &str| {
        checkpoint
            .tensors
            .get(&format!("{prefix}{name}"))
            .map(|t| t.shape.clone())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("no tensor {prefix}{name}")))
    };
    let hidden = *shape("cls_token")?.last().unwrap_or(&0);
    let positions = shape("pos_embed")?.get(1).copied().unwrap_or(0).saturating_sub(1);
    let grid = (positions as f64).sqrt().round() as usize;
    if grid * grid != positions || grid == 0 {
        return Err(bad(format!("{prefix}pos_embed has {positions} patch positions, not a square grid")));
    }
    let blocks = checkpoint
        .names()
        .filter_map(|n| n.strip_prefix(&format!("{prefix}blocks."))?.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1);
    let patch = *shape("patch_embed.proj.weight")?.last().unwrap_or(&0);
    Ok(Dinov2Config::new()
        .with_hidden_size(hidden)
        .with_num_layers(blocks)
        .with_num_heads((hidden / 64).max(1))
        .with_intermediate_size(shape("blocks.0.mlp.fc1.weight")?[0])
        .with_patch_size(patch)
        .with_position_grid(grid))
}
