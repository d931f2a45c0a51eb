//! SigLIP vision tower (So400m/14 as PaliGemma ships it): patch embedding, a learned position
//! table resized per input grid with PyTorch-exact bicubic, pre-LN transformer blocks with
//! tanh-GELU, and the final LayerNorm. No pooling head (PaliGemma does not use it).
//!
//! Field names follow transformers' `SiglipVisionTransformer`, so a checkpoint's
//! `vision_tower.vision_model.*` keys map here by dropping their prefix.

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu_approximate;

use crate::attention::{grouped_attention, merge_heads, split_heads};
use crate::patch::PatchEmbedding;
use crate::precision::{Linear, Precision, set_all};
use crate::resize::{PositionResizer, Sampling};
use crate::vision::check_image;

/// SigLIP vision configuration. Defaults are So400m/14 at 224 (PaliGemma 3B).
#[derive(Config, Debug, PartialEq)]
pub struct SiglipConfig {
    /// Token width.
    #[config(default = 1152)]
    pub hidden_size: usize,
    /// MLP width (4304 for So400m, not 4 × 1152).
    #[config(default = 4304)]
    pub intermediate_size: usize,
    /// Transformer blocks.
    #[config(default = 27)]
    pub num_layers: usize,
    /// Attention heads.
    #[config(default = 16)]
    pub num_heads: usize,
    /// Patch side in pixels.
    #[config(default = 14)]
    pub patch_size: usize,
    /// Side of the learned position grid (224 / 14 = 16).
    #[config(default = 16)]
    pub position_grid: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-6)]
    pub layer_norm_eps: f64,
}

impl SiglipConfig {
    /// Builds the tower with random weights (lazily allocated; loading a checkpoint replaces them).
    pub fn init<B: Backend>(&self, device: &B::Device) -> SiglipVision<B> {
        let d = self.hidden_size;
        let norm = || LayerNormConfig::new(d).with_epsilon(self.layer_norm_eps).init(device);
        let linear = |i, o| Linear::new(i, o, true, device);
        let layers = (0..self.num_layers)
            .map(|_| SiglipLayer {
                layer_norm1: norm(),
                self_attn: SiglipAttention {
                    q_proj: linear(d, d),
                    k_proj: linear(d, d),
                    v_proj: linear(d, d),
                    out_proj: linear(d, d),
                    num_heads: self.num_heads,
                },
                layer_norm2: norm(),
                mlp: SiglipMlp {
                    fc1: linear(d, self.intermediate_size),
                    fc2: linear(self.intermediate_size, d),
                },
            })
            .collect();
        SiglipVision {
            embeddings: SiglipEmbeddings {
                patch_embedding: PatchEmbedding::new(3, d, self.patch_size, device),
                position_embedding: EmbeddingConfig::new(self.position_grid * self.position_grid, d)
                    .init(device),
                resizer: PositionResizer::new(self.position_grid, Sampling::Size),
            },
            encoder: SiglipEncoder { layers },
            post_layernorm: norm(),
        }
    }
}

/// The SigLIP vision tower.
#[derive(Module, Debug)]
pub struct SiglipVision<B: Backend> {
    /// Patch and position embeddings.
    pub embeddings: SiglipEmbeddings<B>,
    /// The transformer blocks.
    pub encoder: SiglipEncoder<B>,
    /// Final LayerNorm.
    pub post_layernorm: LayerNorm<B>,
}

/// Patch embedding plus the learned position table.
#[derive(Module, Debug)]
pub struct SiglipEmbeddings<B: Backend> {
    /// Stride-14 patch projection.
    pub patch_embedding: PatchEmbedding<B>,
    /// The learned `grid²` position table.
    pub position_embedding: Embedding<B>,
    #[module(skip)]
    resizer: PositionResizer,
}

/// The stack of transformer blocks.
#[derive(Module, Debug)]
pub struct SiglipEncoder<B: Backend> {
    /// Blocks in order.
    pub layers: Vec<SiglipLayer<B>>,
}

/// One pre-LN block.
#[derive(Module, Debug)]
pub struct SiglipLayer<B: Backend> {
    /// Norm before attention.
    pub layer_norm1: LayerNorm<B>,
    /// Multi-head self-attention.
    pub self_attn: SiglipAttention<B>,
    /// Norm before the MLP.
    pub layer_norm2: LayerNorm<B>,
    /// Two-layer tanh-GELU MLP.
    pub mlp: SiglipMlp<B>,
}

/// Bidirectional multi-head self-attention with biased projections.
#[derive(Module, Debug)]
pub struct SiglipAttention<B: Backend> {
    /// Query projection.
    pub q_proj: Linear<B>,
    /// Key projection.
    pub k_proj: Linear<B>,
    /// Value projection.
    pub v_proj: Linear<B>,
    /// Output projection.
    pub out_proj: Linear<B>,
    #[module(skip)]
    num_heads: usize,
}

/// `fc2(gelu_tanh(fc1(x)))`.
#[derive(Module, Debug)]
pub struct SiglipMlp<B: Backend> {
    /// Up projection.
    pub fc1: Linear<B>,
    /// Down projection.
    pub fc2: Linear<B>,
}

impl<B: Backend> SiglipAttention<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.num_heads;
        let q = split_heads(self.q_proj.forward(x.clone()), h);
        let k = split_heads(self.k_proj.forward(x.clone()), h);
        let v = split_heads(self.v_proj.forward(x), h);
        self.out_proj.forward(merge_heads(grouped_attention(q, k, v, None, self.q_proj.precision)))
    }
}

impl<B: Backend> SiglipLayer<B> {
    /// The block on tokens `[B, T, width]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        let h = self.mlp.fc1.forward(self.layer_norm2.forward(x.clone()));
        x + self.mlp.fc2.forward(gelu_approximate(h))
    }
}

impl<B: Backend> SiglipVision<B> {
    /// Sets the arithmetic of every product of the tower ([`Precision`]).
    pub fn set_precision(&mut self, precision: Precision) {
        self.embeddings.patch_embedding.precision = precision;
        for layer in &mut self.encoder.layers {
            let (a, m) = (&mut layer.self_attn, &mut layer.mlp);
            let all = [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.out_proj, &mut m.fc1, &mut m.fc2];
            set_all(precision, all);
        }
    }

    /// The patch side in pixels.
    pub fn patch_size(&self) -> usize {
        self.embeddings.patch_embedding.patch()
    }

    /// The position table resized to a `rows × cols` token grid, `[rows·cols, width]`.
    pub fn position_table(&self, rows: usize, cols: usize) -> Tensor<B, 2> {
        self.embeddings.resizer.resize(self.embeddings.position_embedding.weight.val(), rows, cols)
    }

    /// Pixels `[B, 3, H, W]` in [−1, 1], H and W multiples of the patch → tokens
    /// `[B, (H/14)·(W/14), width]` after the final LayerNorm, in row-major grid order.
    pub fn forward(&self, pixels: Tensor<B, 4>) -> Tensor<B, 3> {
        let mut x = self.embed(pixels);
        for layer in &self.encoder.layers {
            x = layer.forward(x);
        }
        self.post_layernorm.forward(x)
    }

    /// The tokens entering the first block: patches plus positions (the first part of
    /// [`Self::forward`], which then runs every [`SiglipLayer`] and the final LayerNorm).
    pub fn embed(&self, pixels: Tensor<B, 4>) -> Tensor<B, 3> {
        let [rows, cols] = check_image(&pixels, self.patch_size(), "SigLIP");
        let tokens = self.embeddings.patch_embedding.forward(pixels);
        tokens + self.position_table(rows, cols).unsqueeze()
    }
}
