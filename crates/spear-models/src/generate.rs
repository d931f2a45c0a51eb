//! Greedy decoding with a KV cache: the image + prompt prefix is encoded once, then one token per
//! step attends over the cache.

use burn::prelude::*;
use burn::tensor::Int;

use crate::attention::TokenLayout;
use crate::error::ModelError;
use crate::vlm::SpearVlm;

/// The result of [`greedy`].
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated ids, the final `<eos>` included when it was produced.
    pub tokens: Vec<u32>,
    /// The logits `[vocab]` that chose each token.
    pub logits: Vec<Vec<f32>>,
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
    if prefix.is_empty() {
        return Err(ModelError::Input("the prompt must hold at least the <bos> token".into()));
    }
    let images = model.embed_images(cameras)?;
    let device = images.device();
    let ids = |tokens: &[u32]| {
        let data: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        Tensor::<B, 2, Int>::from_data(TensorData::new(data, [1, tokens.len()]), &device)
    };
    let image_tokens = images.dims()[1];
    let total = image_tokens + prefix.len();
    let mut layout = TokenLayout::new(vec![vec![true; total]], &[vec![false; total]]);
    let mut cache = model.gemma.new_cache();
    let embeds = Tensor::cat(vec![images, model.embed_tokens(ids(prefix))], 1);
    let mut hidden = model.decode(embeds, &layout, Some(&mut cache));
    let mut out = Generation { tokens: Vec::new(), logits: Vec::new() };
    for _ in 0..max_new {
        let seq = hidden.dims()[1];
        let last = hidden.narrow(1, seq - 1, 1);
        let logits: Vec<f32> = model
            .logits(last)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| ModelError::Input(format!("reading logits: {e:?}")))?;
        let token = argmax(&logits);
        out.tokens.push(token);
        out.logits.push(logits);
        if Some(token) == eos || out.tokens.len() == max_new {
            break;
        }
        layout.extend(1, true, true);
        hidden = model.decode(model.embed_tokens(ids(&[token])), &layout, Some(&mut cache));
    }
    Ok(out)
}

/// Index of the largest value (the first on ties, as `torch.argmax`).
fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}
