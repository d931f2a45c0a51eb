//! What the VLM and VLA runs share in building their model: the tokenizer, the VLM configuration
//! a run's `[model]` section describes, images as tensors, and prompts as token ids.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use spear_data::tokenizer::PaliGemmaTokenizer;
use spear_models::checkpoint::Checkpoint;
use spear_models::layout::{Layout, load};
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
    let m = &config.model;
    let mut vlm = match m.size {
        ModelSize::Full => SpearVlmConfig::spear_vlm(),
        ModelSize::Tiny => {
            let mut tiny = SpearVlmConfig::tiny();
            tiny.gemma.vocab_size = tiny.gemma.vocab_size.max(tokenizer.vocab_size().div_ceil(64) * 64);
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

/// Row-major `[n, height, width, 3]` RGB bytes as a `[n, 3, height, width]` tensor in [0, 1].
pub fn images<B: Backend>(
    pixels: &[u8],
    n: usize,
    [height, width]: [usize; 2],
    device: &B::Device,
) -> Tensor<B, 4> {
    let data: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    Tensor::<B, 4>::from_data(TensorData::new(data, [n, height, width, 3]), device).permute([0, 3, 1, 2])
}

/// Prompts as the policy takes them (`<bos>` prompt `"\n"`), each instruction tokenised once.
pub struct Prompts {
    tokenizer: PaliGemmaTokenizer,
    cache: HashMap<String, Vec<u32>>,
}

impl Prompts {
    /// Prompts of `tokenizer`.
    pub fn new(tokenizer: PaliGemmaTokenizer) -> Self {
        Self { tokenizer, cache: HashMap::new() }
    }

    /// The token ids of each instruction.
    pub fn encode(&mut self, instructions: &[String]) -> Result<Vec<Vec<u32>>, TrainError> {
        instructions
            .iter()
            .map(|text| {
                if let Some(ids) = self.cache.get(text) {
                    return Ok(ids.clone());
                }
                let ids = self
                    .tokenizer
                    .encode_prefix(text)
                    .map_err(|e| TrainError::task(format!("instruction {text:?}"), e))?;
                self.cache.insert(text.clone(), ids.clone());
                Ok(ids)
            })
            .collect()
    }
}
