//! Model configurations from the JSON stored beside checkpoints: transformers' PaliGemma and PI0
//! `config.json`, lerobot's π0 `config.json`, and spear's own (serialised [`SpearVlmConfig`] /
//! [`SpearPolicyConfig`]).
//!
//! transformers writes only the fields of a sub-config that differ from that class's defaults,
//! so a field absent from `vision_config` takes `SiglipVisionConfig`'s default (768 wide, patch
//! 16, …) and one absent from `text_config` takes `GemmaConfig`'s (Gemma 7B's) — not PaliGemma's.

use serde_json::Value;

use crate::dinov2::Dinov2Config;
use crate::error::ModelError;
use crate::expert::ActionExpertConfig;
use crate::gemma::GemmaConfig;
use crate::import::checkpoint::Checkpoint;
use crate::import::layout::Layout;
use crate::policy::{FlowConfig, RotationMode, SpearPolicyConfig};
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

/// The policy configuration of a checkpoint's stored JSON: spear's own (a serialised
/// [`SpearPolicyConfig`], with an `"expert"` key), transformers' `PI0Config`
/// (`"model_type": "pi0"`), lerobot's π0 config (`"type": "pi0"`) or the `config.json` openpi's
/// PyTorch converter writes (`action_dim`, `action_horizon`, `paligemma_variant`, …).
///
/// π0 configurations do not say how many cameras the policy was trained with; they get π0's 3
/// (change it with [`crate::policy::SpearPolicy::with_cameras`]) — except lerobot's, whose
/// `input_features` list them.
pub fn policy_config(json: &Value) -> Result<SpearPolicyConfig, ModelError> {
    if json.get("expert").is_some() {
        return serde_json::from_value(json.clone())
            .map_err(|e| ModelError::Input(format!("config.json is not a spear policy config: {e}")));
    }
    let int = |key: &str, default: usize| field(Some(json), key, default as f64) as usize;
    let number = |key: &str, default: f64| field(Some(json), key, default);
    let pi0 = SpearPolicyConfig::pi0();
    let (vlm, expert_gemma, cameras) =
        match (json.get("model_type").and_then(Value::as_str), json.get("type").and_then(Value::as_str)) {
            (Some("pi0"), _) => {
                let vlm_json = json.get("vlm_config").ok_or_else(|| {
                    ModelError::Input("config.json: a pi0 config without vlm_config".into())
                })?;
                let mut vlm = paligemma_config(vlm_json)?;
                vlm.wrist_image_size = vlm.image_size;
                let dit = json.get("dit_config");
                let d = ActionExpertConfig::gemma_300m();
                let size = |key: &str, default: usize| field(dit, key, default as f64) as usize;
                let heads = size("num_attention_heads", d.num_heads);
                let expert = d
                    .clone()
                    .with_hidden_size(size("hidden_size", d.hidden_size))
                    .with_intermediate_size(size("intermediate_size", d.intermediate_size))
                    .with_num_layers(size("num_hidden_layers", d.num_layers))
                    .with_num_heads(heads)
                    .with_num_kv_heads(size("num_key_value_heads", d.num_kv_heads))
                    .with_head_dim(size("head_dim", d.head_dim))
                    .with_rms_norm_eps(field(dit, "rms_norm_eps", d.rms_norm_eps));
                (vlm, expert, pi0.cameras)
            }
            // lerobot (`"type": "pi0"`) and openpi's converter (`action_horizon`, `action_dim` and the
            // variants, nothing else) name the standard sizes.
            (_, Some("pi0")) | (None, None)
                if json.get("paligemma_variant").is_some() || json.get("type").is_some() =>
            {
                for (key, want) in
                    [("paligemma_variant", "gemma_2b"), ("action_expert_variant", "gemma_300m")]
                {
                    let got = json.get(key).and_then(Value::as_str).unwrap_or(want);
                    if got != want {
                        return Err(ModelError::Input(format!(
                            "config.json: {key} {got:?} is not supported (only {want:?})"
                        )));
                    }
                }
                let cameras = json
                    .get("input_features")
                    .and_then(Value::as_object)
                    .map(|f| {
                        f.values().filter(|v| v.get("type").and_then(Value::as_str) == Some("VISUAL")).count()
                    })
                    .filter(|&n| n > 0)
                    .unwrap_or(pi0.cameras);
                (pi0.vlm.clone(), pi0.expert.gemma.clone(), cameras)
            }
            _ => {
                return Err(ModelError::Input(
                    "config.json: neither a spear policy config nor a pi0 config (model_type/type \"pi0\")"
                        .into(),
                ));
            }
        };
    // openpi pads the state to the action width.
    let action_dim = int("max_action_dim", int("action_dim", 32));
    let expert = ActionExpertConfig::new(expert_gemma, action_dim, int("max_state_dim", action_dim))
        .with_min_period(number("min_period", 4e-3))
        .with_max_period(number("max_period", 4.0));
    let flow = FlowConfig::new()
        .with_num_steps(int("num_inference_steps", 10))
        .with_time_alpha(number("time_sampling_beta_alpha", 1.5))
        .with_time_beta(number("time_sampling_beta_beta", 1.0))
        .with_time_scale(number("time_sampling_scale", 0.999))
        .with_time_offset(number("time_sampling_offset", 0.001));
    let horizon = int("chunk_size", int("action_horizon", 50));
    let config = SpearPolicyConfig::new(vlm, expert, horizon, RotationMode::Linear, cameras).with_flow(flow);
    config.validate()?;
    Ok(config)
}
