//! Greedy decoding with a KV cache: the image + prompt prefix is encoded once, then one token per
//! step attends over the cache.

use burn::prelude::*;
use burn::tensor::Int;

use crate::attention::TokenLayout;
use crate::error::ModelError;
use crate::gemma::KvCache;
use crate::vlm::SpearVlm;

/// The result of [`greedy`].
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated ids, the final `<eos>` included when it was produced.
    pub tokens: Vec<u32>,
    /// The logits `[vocab]` that chose each token.
    pub logits: Vec<Vec<f32>>,
}

/// A decoding session for one example: the image + prompt prefix is encoded once into the KV
/// cache, then each [`Decoding::push`] runs one token through the decoder against it.
pub struct Decoding<'m, B: Backend> {
    model: &'m SpearVlm<B>,
    layout: TokenLayout,
    cache: KvCache<B>,
    last: Tensor<B, 3>,
}

impl<'m, B: Backend> Decoding<'m, B> {
    /// Encodes `cameras` (`[1, 3, H, W]` each, RGB in [0, 1]) and `prefix` ids (`<bos>`, prompt,
    /// `"\n"`) bidirectionally into a fresh cache.
    pub fn start(
        model: &'m SpearVlm<B>,
        cameras: &[Tensor<B, 4>],
        prefix: &[u32],
    ) -> Result<Self, ModelError> {
        if prefix.is_empty() {
            return Err(ModelError::Input("the prompt must hold at least the <bos> token".into()));
        }
        let images = model.embed_images(cameras)?;
        let total = images.dims()[1] + prefix.len();
        let layout = TokenLayout::new(vec![vec![true; total]], &[vec![false; total]]);
        let mut cache = model.gemma.new_cache();
        let text = model.embed_tokens(ids(prefix, &images.device()));
        let embeds = Tensor::cat(vec![images, text], 1);
        let hidden = model.decode(embeds, &layout, Some(&mut cache));
        let last = hidden.narrow(1, total - 1, 1);
        Ok(Self { model, layout, cache, last })
    }

    /// The logits `[vocab]` after the latest token, read back to the host.
    pub fn logits(&self) -> Result<Vec<f32>, ModelError> {
        self.model
            .logits(self.last.clone())
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| ModelError::Input(format!("reading logits: {e:?}")))
    }

    /// Appends `token` (attending causally over everything before it) and runs it through the decoder.
    pub fn push(&mut self, token: u32) {
        self.layout.extend(1, true, true);
        let embeds = self.model.embed_tokens(ids(&[token], &self.last.device()));
        self.last = self.model.decode(embeds, &self.layout, Some(&mut self.cache));
    }
}

fn ids<B: Backend>(tokens: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    let data: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(data, [1, tokens.len()]), device)
}

/// Greedy decoding for one example: `cameras` (`[1, 3, H, W]` each, RGB in [0, 1]), `prefix`
/// ids (`<bos>`, prompt, `"\n"`), at most `max_new` tokens, stopping after `eos` if given.
pub fn greedy<B: Backend>(
    model: &SpearVlm<B>,
    cameras: &[Tensor<B, 4>],
    prefix: &[u32],
    max_new: usize,
    eos: Option<u32>,
) -> Result<Generation, ModelError> {
    let mut decoding = Decoding::start(model, cameras, prefix)?;
    let mut out = Generation { tokens: Vec::new(), logits: Vec::new() };
    for _ in 0..max_new {
        let logits = decoding.logits()?;
        let token = argmax(&logits);
        out.tokens.push(token);
        out.logits.push(logits);
        if Some(token) == eos || out.tokens.len() == max_new {
            break;
        }
        decoding.push(token);
    }
    Ok(out)
}

/// Index of the largest value (the first on ties, as `torch.argmax`).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}
