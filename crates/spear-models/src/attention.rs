//! Scaled dot-product attention with grouped (multi-query) key/value heads, and the block masks of
//! PaliGemma's prefix-LM and π0-style policies, built from per-token "autoregressive" flags.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::backend::ops::AttentionModuleOptions;
use burn::tensor::module::attention as fused_attention;

use crate::precision::Precision;

/// Attention of `query` `[B, H, Sq, hd]` over `key`/`value` `[B, KV, Sk, hd]` (`H` a multiple of
/// `KV`), scaled by `hd^-0.5`. `mask` is `[B, Sq, Sk]`, `true` where attention is **allowed**.
///
/// Query heads sharing a key/value head are folded into the sequence axis
/// (`[B, KV, (H/KV)·Sq, hd]`) instead of repeating the keys and values `H/KV` times, which keeps
/// the decode step's memory traffic at one copy of the cache.
///
/// At [`Precision::F32`] this is burn's attention (the backend's fused kernel where it has one).
/// At [`Precision::Bf16`] both products take bf16 operands while the scores, the mask and the
/// softmax stay f32 (burn's own attention would run its softmax in the operands' dtype).
pub fn grouped_attention<B: Backend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    mask: Option<Tensor<B, 3, Bool>>,
    precision: Precision,
) -> Tensor<B, 4> {
    let [batch, heads, seq_q, head_dim] = query.dims();
    let kv_heads = key.dims()[1];
    let group = heads / kv_heads;
    let seq_k = key.dims()[2];
    let query = query.reshape([batch, kv_heads, group * seq_q, head_dim]);
    let mask = mask
        .map(|allowed| allowed.bool_not().unsqueeze_dim::<4>(1).repeat_dim(2, group).repeat_dim(1, kv_heads));
    debug_assert!(mask.as_ref().is_none_or(|m| m.dims() == [batch, kv_heads, group * seq_q, seq_k]));
    let out = match precision {
        Precision::F32 => fused_attention(query, key, value, mask, None, AttentionModuleOptions::default()),
        Precision::Bf16 => {
            let scores = precision.matmul(query, key.transpose()).mul_scalar((head_dim as f64).powf(-0.5));
            let scores = match mask {
                Some(masked) => scores.mask_fill(masked, f32::NEG_INFINITY),
                None => scores,
            };
            precision.matmul(softmax(scores, 3), value)
        }
    };
    out.reshape([batch, heads, seq_q, head_dim])
}

/// Splits `[B, S, H·hd]` into heads `[B, H, S, hd]`.
pub fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [batch, seq, width] = x.dims();
    x.reshape([batch, seq, heads, width / heads]).swap_dims(1, 2)
}

/// Merges heads `[B, H, S, hd]` back into `[B, S, H·hd]`.
pub fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, heads, seq, head_dim] = x.dims();
    x.swap_dims(1, 2).reshape([batch, seq, heads * head_dim])
}

/// The token layout of a batch of sequences, kept on the host: which tokens are real (not
/// padding) and each token's "autoregressive" flag, as big_vision/openpi's `make_attn_mask` takes
/// them. Token `i` may attend to token `j` when both are real and `cumsum(ar)[j] <= cumsum(ar)[i]`:
/// a run of `ar = false` tokens is one bidirectional block (image + prompt in PaliGemma), and each
/// `ar = true` token opens a new block that sees everything before it (a causal answer).
///
/// It grows with a KV cache: [`TokenLayout::extend`] appends the decoded tokens, and
/// [`TokenLayout::mask`] builds the mask of the newest queries against every cached key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLayout {
    valid: Vec<Vec<bool>>,
    block: Vec<Vec<i64>>,
}

impl TokenLayout {
    /// A layout from per-row validity and autoregressive flags (equal lengths).
    pub fn new(valid: Vec<Vec<bool>>, ar: &[Vec<bool>]) -> Self {
        let block = ar
            .iter()
            .map(|row| {
                row.iter()
                    .scan(0i64, |sum, &a| {
                        *sum += i64::from(a);
                        Some(*sum)
                    })
                    .collect()
            })
            .collect();
        Self { valid, block }
    }

    /// Batch size.
    pub fn batch(&self) -> usize {
        self.valid.len()
    }

    /// Tokens per row (padding included).
    pub fn len(&self) -> usize {
        self.valid.first().map_or(0, Vec::len)
    }

    /// Whether the layout holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `tokens` tokens per row with the given flags (one value for the whole batch).
    pub fn extend(&mut self, tokens: usize, valid: bool, ar: bool) {
        for (v, b) in self.valid.iter_mut().zip(&mut self.block) {
            for _ in 0..tokens {
                let last = b.last().copied().unwrap_or(0);
                v.push(valid);
                b.push(last + i64::from(ar));
            }
        }
    }

    /// RoPE positions `[B, S]` of the last `queries` tokens: the number of real tokens before each
    /// (openpi's `cumsum(mask) − 1`), so left padding does not shift positions.
    pub fn positions(&self, queries: usize) -> Vec<Vec<i64>> {
        self.valid
            .iter()
            .map(|row| {
                let mut count = -1i64;
                let all: Vec<i64> = row
                    .iter()
                    .map(|&v| {
                        count += i64::from(v);
                        count.max(0)
                    })
                    .collect();
                all[all.len() - queries..].to_vec()
            })
            .collect()
    }

    /// The `[B, queries, len]` mask (true = may attend) of the last `queries` tokens over all
    /// tokens. A padding query is allowed to see itself so that its softmax stays finite; its
    /// output is never used.
    pub fn mask<B: Backend>(&self, queries: usize, device: &B::Device) -> Tensor<B, 3, Bool> {
        let keys = self.len();
        let mut data = Vec::with_capacity(self.batch() * queries * keys);
        for (valid, block) in self.valid.iter().zip(&self.block) {
            for i in keys - queries..keys {
                for j in 0..keys {
                    let allowed = (valid[i] && valid[j] && block[j] <= block[i]) || (!valid[i] && i == j);
                    data.push(allowed);
                }
            }
        }
        Tensor::from_data(TensorData::new(data, [self.batch(), queries, keys]), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_lm_blocks() {
        // image, image, prompt | answer, answer
        let layout = TokenLayout::new(vec![vec![true; 5]], &[vec![false, false, false, true, true]]);
        let mask = layout.mask::<burn::backend::Flex>(5, &Default::default());
        let got: Vec<bool> = mask.into_data().to_vec().unwrap();
        #[rustfmt::skip]
        let want = [
            1, 1, 1, 0, 0,
            1, 1, 1, 0, 0,
            1, 1, 1, 0, 0,
            1, 1, 1, 1, 0,
            1, 1, 1, 1, 1,
        ];
        assert_eq!(got, want.iter().map(|&w| w == 1).collect::<Vec<_>>());
    }

    #[test]
    fn padding_is_invisible_and_positions_skip_it() {
        let layout = TokenLayout::new(vec![vec![false, true, true]], &[vec![false, false, true]]);
        assert_eq!(layout.positions(3), vec![vec![0, 0, 1]]);
        let mask: Vec<bool> =
            layout.mask::<burn::backend::Flex>(3, &Default::default()).into_data().to_vec().unwrap();
        assert_eq!(mask, vec![true, false, false, false, true, false, false, true, true]);
    }
}
