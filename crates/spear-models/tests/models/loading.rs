//! Broken checkpoints give errors that name the problem.

use std::fs;
use std::path::{Path, PathBuf};

use spear_models::ModelError;
use spear_models::import::checkpoint::Checkpoint;
use spear_models::import::hf_config::vlm_config;
use spear_models::import::layout::{Layout, load};
use spear_models::store::write_f32_safetensors;

use crate::common::*;

fn copy_snapshot(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spear-models-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for entry in fs::read_dir(fixtures().join("paligemma-tiny")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

fn try_load(dir: &Path) -> Result<(), ModelError> {
    let checkpoint = Checkpoint::open(dir)?;
    let config = vlm_config(checkpoint.config.as_ref().unwrap())?;
    let mut model = config.init::<Cpu>(&Default::default());
    load(&mut model, &checkpoint, Layout::PaliGemma, &[], "PaliGemma").map(|_| ())
}

/// Rewrites one shard through `edit` (name → (shape, f32 data)) with the safetensors crate.
fn rewrite_shard(
    dir: &Path,
    tensor: &str,
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
) -> PathBuf {
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap()).unwrap();
    let shard = dir.join(index["weight_map"][tensor].as_str().unwrap());
    let checkpoint = Checkpoint::open(&shard).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = checkpoint
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone(), t.read().unwrap().to_vec::<f32>().unwrap()))
        .collect();
    edit(&mut tensors);
    write_f32_safetensors(&tensors, &shard).unwrap();
    shard
}

/// Applies `edit` to the snapshot's `weight_map`.
fn edit_index(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join("model.safetensors.index.json");
    let mut index: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(index["weight_map"].as_object_mut().unwrap());
    fs::write(&path, index.to_string()).unwrap();
}

#[test]
fn intact_snapshot_loads() {
    try_load(&fixtures().join("paligemma-tiny")).unwrap();
}

#[test]
fn wrong_shape_is_named() {
    let dir = copy_snapshot("shape");
    let name = "language_model.model.layers.1.mlp.up_proj.weight";
    rewrite_shard(&dir, name, |tensors| {
        let t = tensors.iter_mut().find(|t| t.0 == name).unwrap();
        t.1[0] -= 1;
        let len: usize = t.1.iter().product();
        t.2.truncate(len);
    });
    let err = try_load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("wrong shape")
            && err.contains(name)
            && err.contains("gemma.layers.1.mlp.up_proj.weight"),
        "{err}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_snapshot("missing");
    let name = "vision_tower.vision_model.post_layernorm.bias";
    rewrite_shard(&dir, name, |tensors| tensors.retain(|t| t.0 != name));
    // The index still lists it: the shard no longer holds it.
    let err = Checkpoint::open(&dir).unwrap_err().to_string();
    assert!(err.contains(name) && err.contains("does not contain it"), "{err}");
    // With the index fixed too, the load names the missing module path.
    edit_index(&dir, |map| {
        map.remove(name);
    });
    let err = try_load(&dir).unwrap_err().to_string();
    assert!(err.contains("missing: siglip.post_layernorm.bias"), "{err}");
}

#[test]
fn extra_tensor_is_named() {
    let dir = copy_snapshot("extra");
    let name = "vision_tower.vision_model.post_layernorm.bias";
    // A tensor no module has (SigLIP's pooling head would be ignored with its reason instead).
    let extra = "vision_tower.vision_model.post_layernorm.scale";
    rewrite_shard(&dir, name, |tensors| tensors.push((extra.into(), vec![2], vec![0.0; 2])));
    edit_index(&dir, |map| {
        let shard = map[name].clone();
        map.insert(extra.into(), shard);
    });
    let err = try_load(&dir).unwrap_err().to_string();
    assert!(err.contains(&format!("unexpected (left over): {extra}")), "{err}");
}

#[test]
fn truncated_shard_is_named() {
    let dir = copy_snapshot("truncated");
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap()).unwrap();
    let shard = dir.join(index["weight_map"]["multi_modal_projector.linear.weight"].as_str().unwrap());
    let bytes = fs::read(&shard).unwrap();
    fs::write(&shard, &bytes[..bytes.len() - 100]).unwrap();
    let err = Checkpoint::open(&dir).unwrap_err().to_string();
    assert!(err.contains("truncated") && err.contains(&shard.display().to_string()), "{err}");
    fs::write(&shard, &bytes[..4]).unwrap();
    let err = Checkpoint::open(&dir).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn unknown_layout_and_missing_files_are_clear() {
    let err = Checkpoint::open("/nonexistent/spear/model.safetensors").unwrap_err().to_string();
    assert!(err.contains("/nonexistent/spear/model.safetensors"), "{err}");
    assert_eq!(Layout::detect(["foo.weight", "bar.bias"]), None);
}
