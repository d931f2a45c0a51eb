//! spear checkpoints (a folder with `model.safetensors` under module-path names, PyTorch tensor
//! conventions, and `config.json`), and assembling SPEAR-VLM's starting point from the released
//! PaliGemma and MoGe weights (paper §3.1: "we initialize from PaliGemma and MoGe weights, with the
//! MoGe projector and the LLM 3D token embeddings initialized randomly").

use std::path::Path;

use burn::prelude::*;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot};
use safetensors::tensor::TensorView;

use crate::error::ModelError;
use crate::import::checkpoint::Checkpoint;
use crate::import::layout::{Layout, LoadReport, for_policy, load, load_mapped};
use crate::policy::{SpearPolicy, SpearPolicyConfig};
use crate::vlm::{NEW_PARTS, SpearVlm, SpearVlmConfig};

/// Writes `module` as f32 safetensors at `file`, tensors named by module path in PyTorch
/// conventions (`Linear` weights `[out, in]`, norms `weight`/`bias`), so other tools read it too.
pub fn save_safetensors<B: Backend, M: ModuleSnapshot<B>>(module: &M, file: &Path) -> Result<(), ModelError> {
    let bad = |message: String| ModelError::Format { path: file.to_path_buf(), message };
    let snapshots = module.collect(None, Some(Box::new(BurnToPyTorchAdapter)), false);
    let mut tensors = Vec::with_capacity(snapshots.len());
    for snapshot in snapshots {
        let name = snapshot.full_path();
        let data = snapshot.to_data().map_err(|e| bad(format!("tensor {name}: {e:?}")))?.convert::<f32>();
        let shape = data.shape.to_vec();
        let values: Vec<f32> = data.to_vec().map_err(|e| bad(format!("tensor {name}: {e:?}")))?;
        tensors.push((name, shape, values));
    }
    write_f32_safetensors(&tensors, file)
}

/// Writes named f32 tensors (`(name, shape, values)`) as a safetensors file, atomically: into a
/// sibling file first, renamed when complete, so a crash never leaves a truncated checkpoint.
pub fn write_f32_safetensors(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    file: &Path,
) -> Result<(), ModelError> {
    let bad = |message: String| ModelError::Format { path: file.to_path_buf(), message };
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), bytes)| {
            TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| bad(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let partial = file.with_extension("safetensors.partial");
    safetensors::serialize_to_file(views, None, &partial).map_err(|e| bad(e.to_string()))?;
    std::fs::rename(&partial, file).map_err(|source| ModelError::Io { path: file.to_path_buf(), source })
}

/// Saves a model and its configuration into `dir` (`model.safetensors`, `config.json`).
fn save_with_config<B: Backend, M: ModuleSnapshot<B>>(
    model: &M,
    config: &impl serde::Serialize,
    dir: &Path,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?;
    let json = serde_json::to_string_pretty(config).expect("configs serialise");
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, json).map_err(|source| ModelError::Io { path: config_path, source })?;
    save_safetensors(model, &dir.join("model.safetensors"))
}

/// Saves a VLM and its configuration into `dir` (`model.safetensors`, `config.json`).
pub fn save_vlm<B: Backend>(
    model: &SpearVlm<B>,
    config: &SpearVlmConfig,
    dir: &Path,
) -> Result<(), ModelError> {
    save_with_config(model, config, dir)
}

/// Saves a policy and its configuration into `dir` (`model.safetensors`, `config.json`).
pub fn save_policy<B: Backend>(model: &SpearPolicy<B>, dir: &Path) -> Result<(), ModelError> {
    save_with_config(model, model.config(), dir)
}

/// Loads a whole policy strictly: a spear checkpoint folder (as [`save_policy`] writes it) or a
/// π0 checkpoint (openpi's PyTorch port, lerobot, transformers' PI0), configured by the folder's
/// `config.json` (see [`crate::import::hf_config::policy_config`]).
pub fn load_policy<B: Backend>(dir: &Path, device: &B::Device) -> Result<SpearPolicy<B>, ModelError> {
    let checkpoint = Checkpoint::open(dir)?;
    let json = checkpoint
        .config
        .as_ref()
        .ok_or_else(|| ModelError::Format { path: dir.to_path_buf(), message: "no config.json".into() })?;
    let config: SpearPolicyConfig = crate::import::hf_config::policy_config(json)?;
    let layout = Layout::detect(checkpoint.names())
        .filter(|l| l.is_policy() || *l == Layout::Spear)
        .ok_or_else(|| ModelError::UnknownLayout {
            path: dir.to_path_buf(),
            hint: "expected a pi0 or spear policy".into(),
        })?;
    let mut mapping = layout.map_names(checkpoint.names());
    if layout.is_policy() {
        mapping = for_policy(mapping);
    }
    let mut model = config.init::<B>(device)?;
    load_mapped(&mut model, &checkpoint, mapping, &[], "the policy")?;
    Ok(model)
}

/// Loads a whole VLM strictly: a spear checkpoint folder (as [`save_vlm`] writes it) or a
/// PaliGemma snapshot (any transformers layout), configured by the folder's `config.json`.
pub fn load_vlm<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(SpearVlm<B>, SpearVlmConfig), ModelError> {
    let checkpoint = Checkpoint::open(dir)?;
    let json = checkpoint
        .config
        .as_ref()
        .ok_or_else(|| ModelError::Format { path: dir.to_path_buf(), message: "no config.json".into() })?;
    let config = crate::import::hf_config::vlm_config(json)?;
    let layout = Layout::detect(checkpoint.names()).filter(|l| !l.is_moge()).ok_or_else(|| {
        ModelError::UnknownLayout {
            path: dir.to_path_buf(),
            hint: "expected a PaliGemma or spear VLM".into(),
        }
    })?;
    let mut model = config.init::<B>(device);
    load(&mut model, &checkpoint, layout, &[], "the VLM")?;
    Ok((model, config))
}

/// SPEAR-VLM's starting point: PaliGemma weights (SigLIP, projector, Gemma) from `paligemma`, the
/// DINOv2 encoder from a MoGe `model.pt`, a fresh MoGe projector, and 3D-token rows drawn by mean
/// resizing (seed the backend first to make them reproducible). `config` must agree with both
/// checkpoints' shapes; every other tensor of each is accounted for (errors name them).
pub fn assemble_vlm<B: Backend>(
    config: &SpearVlmConfig,
    paligemma: &Path,
    moge: &Path,
    device: &B::Device,
) -> Result<(SpearVlm<B>, [LoadReport; 2]), ModelError> {
    let mut model = config.init::<B>(device);
    let vlm = Checkpoint::open(paligemma)?;
    let vlm_layout = Layout::detect(vlm.names()).filter(|l| !l.is_moge()).ok_or_else(|| {
        ModelError::UnknownLayout { path: paligemma.to_path_buf(), hint: "expected PaliGemma".into() }
    })?;
    let fresh = [&["moge."][..], &NEW_PARTS].concat();
    let first = load(&mut model, &vlm, vlm_layout, &fresh, "SPEAR-VLM (PaliGemma part)")?;
    let encoder = Checkpoint::open(moge)?;
    let moge_layout = Layout::detect(encoder.names()).filter(|l| l.is_moge()).ok_or_else(|| {
        ModelError::UnknownLayout { path: moge.to_path_buf(), hint: "expected a MoGe model.pt".into() }
    })?;
    let others = [&["siglip.", "siglip_projector.", "gemma."][..], &NEW_PARTS].concat();
    let second = load(&mut model, &encoder, moge_layout, &others, "SPEAR-VLM (MoGe encoder)")?;
    Ok((model.init_3d_tokens_by_mean_resizing(), [first, second]))
}
