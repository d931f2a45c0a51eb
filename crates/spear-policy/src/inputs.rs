//! The model's inputs as training and inference both build them: camera frames fitted to the
//! model's sizes by the data pipeline's resize, pixels as tensors, prompts as token ids.

use std::collections::HashMap;

use burn::prelude::*;
use spear_data::images::{self, Fit};
use spear_data::tokenizer::{PaliGemmaTokenizer, TokenizerError};

use crate::frame::Frame;

/// How SPEAR-VLM's images meet its size, in VLM training (the annotated images) and when it is
/// asked (`spear vlm ask`): centre-cropped, as the policy's loader does by default.
pub const VLM_FIT: Fit = Fit::Crop;

/// A frame fitted to `[height, width]`: RGB bytes, row-major HWC, through
/// [`spear_data::images::resize`], the function the training loader fits dataset images with.
pub fn fit_frame(frame: &Frame, [height, width]: [usize; 2], fit: Fit) -> Result<Vec<u8>, String> {
    Ok(images::resize(&frame.to_image()?, width, height, fit).pixels)
}

/// Row-major `[n, height, width, 3]` RGB bytes as the `[n, 3, height, width]` tensor in [0, 1]
/// the vision towers take.
pub fn image_batch<B: Backend>(
    pixels: &[u8],
    n: usize,
    [height, width]: [usize; 2],
    device: &B::Device,
) -> Tensor<B, 4> {
    let data: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    Tensor::<B, 4>::from_data(TensorData::new(data, [n, height, width, 3]), device).permute([0, 3, 1, 2])
}

/// Prompts as the policy takes them, each instruction tokenised once (the cache is cleared when
/// it reaches [`Prompts::CACHE_LIMIT`] instructions, so a server fed ever-new instructions stays
/// bounded).
pub struct Prompts {
    tokenizer: PaliGemmaTokenizer,
    layout: PromptLayout,
    cache: HashMap<String, Vec<u32>>,
}

/// How an instruction becomes token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PromptLayout {
    /// `PaliGemmaProcessor`'s `<bos>` prompt `"\n"` as one string: SPEAR-VLM and SPEAR-1.
    Processor,
    /// openpi's π0 tokenisation, cut to this many tokens.
    Pi0 { max_tokens: usize },
}

impl Prompts {
    /// Instructions kept tokenised at most.
    pub const CACHE_LIMIT: usize = 4096;

    /// openpi's `max_token_len` for π0.
    pub const PI0_MAX_TOKENS: usize = 48;

    /// Prompts as SPEAR trains on them ([`PaliGemmaTokenizer::encode_prefix`]).
    pub fn new(tokenizer: PaliGemmaTokenizer) -> Self {
        Self { tokenizer, layout: PromptLayout::Processor, cache: HashMap::new() }
    }

    /// Prompts as openpi feeds π0 ([`PaliGemmaTokenizer::encode_pi0_prompt`], 48 tokens).
    pub fn pi0(tokenizer: PaliGemmaTokenizer) -> Self {
        let layout = PromptLayout::Pi0 { max_tokens: Self::PI0_MAX_TOKENS };
        Self { tokenizer, layout, cache: HashMap::new() }
    }

    /// The token ids of `instruction`.
    pub fn encode(&mut self, instruction: &str) -> Result<Vec<u32>, TokenizerError> {
        if let Some(ids) = self.cache.get(instruction) {
            return Ok(ids.clone());
        }
        let ids = match self.layout {
            PromptLayout::Processor => self.tokenizer.encode_prefix(instruction)?,
            PromptLayout::Pi0 { max_tokens } => self.tokenizer.encode_pi0_prompt(instruction, max_tokens)?,
        };
        if self.cache.len() >= Self::CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(instruction.to_string(), ids.clone());
        Ok(ids)
    }
}
