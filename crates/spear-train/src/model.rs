//! What the VLM and VLA runs share in building their model: the tokenizer and the VLM
//! configuration a run's `[model]` section describes (images and prompts become model inputs
//! through `spear_policy::inputs`, as at inference).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use spear_data::tokenizer::PaliGemmaTokenizer;
use spear_models::import::checkpoint::Checkpoint;
use spear_models::import::layout::{Layout, load};
use spear_models::{SpearVlm, SpearVlmConfig};

use crate::config::{ModelSize, TrainConfig};
use crate::run::TrainError;

/// The `tokenizer.json` of a run: `model.tokenizer`, else the one beside `model.init`, else the
/// one in the PaliGemma snapshot.
pub fn tokenizer_path(config: &TrainConfig) -> Result<PathBuf, TrainError> {
    let m = &config.model;
    let candidates = [
        m.tokenizer.clone(),
        m.init.as_ref().map(|d| d.join("tokenizer.json")),
        m.paligemma.as_ref().map(|d| d.join("tokenizer.json")),
    ];
    candidates.into_iter().flatten().next().ok_or_else(|| {
        TrainError::Task(
            "model.tokenizer: no tokenizer.json (set model.tokenizer, model.init or model.paligemma)".into(),
        )
    })
}

/// Loads the run's tokenizer.
pub fn load_tokenizer(config: &TrainConfig) -> Result<(PaliGemmaTokenizer, PathBuf), TrainError> {
    let path = tokenizer_path(config)?;
    let tokenizer =
        PaliGemmaTokenizer::from_file(&path).map_err(|e| TrainError::task("model.tokenizer", e))?;
    Ok((tokenizer, path))
}

/// Copies the run's tokenizer into an export folder, where `spear policy act` and `spear vlm ask`
/// look for it.
pub fn export_tokenizer(tokenizer: &Path, dir: &Path) -> Result<(), TrainError> {
    let copy = dir.join("tokenizer.json");
    std::fs::copy(tokenizer, &copy).map_err(|e| TrainError::task(copy.display(), e))?;
    Ok(())
}

/// Loads a SPEAR-VLM export (`model.init` of a VLM stage or of VLA pre-training) into `vlm`.
pub fn load_spear_vlm<B: Backend>(vlm: &mut SpearVlm<B>, dir: &Path) -> Result<(), TrainError> {
    let fail = |e: spear_models::ModelError| TrainError::task("model.init", e);
    let checkpoint = Checkpoint::open(dir).map_err(fail)?;
    load(vlm, &checkpoint, Layout::Spear, &[], "SPEAR-VLM").map_err(fail)?;
    Ok(())
}

/// The VLM a run builds: the full or tiny preset with the run's 3D tokens and camera sizes. A
/// tiny model's vocabulary is widened to hold the tokenizer's (rounded up to 64 rows), so that
/// any prompt and every `<locNNNN>` token has an embedding.
pub fn vlm_config(config: &TrainConfig, tokenizer: &PaliGemmaTokenizer) -> SpearVlmConfig {
    vlm_config_for(config, Some(tokenizer.vocab_size()))
}

/// [`vlm_config`] without the data: with the run's tokenizer's vocabulary where it can be read,
/// else the preset's (what `--dry-run` counts and plans).
pub fn planned_vlm_config(config: &TrainConfig) -> SpearVlmConfig {
    vlm_config_for(config, load_tokenizer(config).ok().map(|(t, _)| t.vocab_size()))
}

/// [`vlm_config`] for a tokenizer of `vocab` tokens (`None`: the preset's vocabulary).
fn vlm_config_for(config: &TrainConfig, vocab: Option<usize>) -> SpearVlmConfig {
    let m = &config.model;
    let mut vlm = match m.size {
        ModelSize::Full => SpearVlmConfig::spear_vlm(),
        ModelSize::Tiny => {
            let mut tiny = SpearVlmConfig::tiny();
            tiny.gemma.vocab_size = tiny.gemma.vocab_size.max(vocab.unwrap_or(0).div_ceil(64) * 64);
            tiny
        }
    };
    vlm.num_3d_tokens = m.num_3d_tokens;
    if let Some(size) = m.image_size {
        vlm.image_size = size;
    }
    if let Some(size) = m.wrist_image_size {
        vlm.wrist_image_size = size;
    }
    vlm
}
