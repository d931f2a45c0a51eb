//! DINOv2 ViT (L/14 in MoGe) as MoGe vendors it: CLS token, no register tokens, LayerScale on both
//! residual branches, exact-erf GELU, LayerNorm ε = 1e-6, and the position table resized with
//! DINOv2's `scale_factor = (n + 0.1)/37` bicubic (not transformers' size-based resize).
//!
//! [`Dinov2::intermediate_layers`] is MoGe's `get_intermediate_layers(..., norm=True)`: the
//! outputs of the chosen blocks, each through the final LayerNorm, CLS dropped.
//! Field names follow MoGe's `backbone.*` checkpoint keys.

use burn::module::{Initializer, Param};
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;

use crate::attention::{grouped_attention, merge_heads};
use crate::patch::PatchEmbedding;
use crate::precision::{Linear, Precision, set_all};
use crate::resize::{PositionResizer, Sampling};
use crate::vision::check_image;

/// DINOv2 configuration. Defaults are ViT-L/14 at 518 (MoGe's encoder).
#[derive(Config, Debug, PartialEq)]
pub struct Dinov2Config {
    /// Token width.
    #[config(default = 1024)]
    pub hidden_size: usize,
    /// MLP width.
    #[config(default = 4096)]
    pub intermediate_size: usize,
    /// Transformer blocks.
    #[config(default = 24)]
    pub num_layers: usize,
    /// Attention heads.
    #[config(default = 16)]
    pub num_heads: usize,
    /// Patch side in pixels.
    #[config(default = 14)]
    pub patch_size: usize,
    /// Side of the learned position grid (518 / 14 = 37).
    #[config(default = 37)]
    pub position_grid: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-6)]
    pub layer_norm_eps: f64,
    /// DINOv2's `interpolate_offset` (0.1 in MoGe's copy).
    #[config(default = 0.1)]
    pub interpolate_offset: f64,
}

impl Dinov2Config {
    /// Builds the encoder with random weights (lazily allocated).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Dinov2<B> {
        let d = self.hidden_size;
        let norm = || LayerNormConfig::new(d).with_epsilon(self.layer_norm_eps).init(device);
        let linear = |i, o| Linear::new(i, o, true, device);
        let scale = || LayerScale { gamma: Initializer::Ones.init([d], device) };
        let blocks = (0..self.num_layers)
            .map(|_| Dinov2Block {
                norm1: norm(),
                attn: Dinov2Attention {
                    qkv: linear(d, 3 * d),
                    proj: linear(d, d),
                    num_heads: self.num_heads,
                },
                ls1: scale(),
                norm2: norm(),
                mlp: Dinov2Mlp {
                    fc1: linear(d, self.intermediate_size),
                    fc2: linear(self.intermediate_size, d),
                },
                ls2: scale(),
            })
            .collect();
        let positions = 1 + self.position_grid * self.position_grid;
        let small = Initializer::Normal { mean: 0.0, std: 0.02 };
        Dinov2 {
            cls_token: small.init([1, 1, d], device),
            pos_embed: small.init([1, positions, d], device),
            patch_embed: Dinov2PatchEmbed { proj: PatchEmbedding::new(3, d, self.patch_size, device) },
            blocks,
            norm: norm(),
            resizer: PositionResizer::new(
                self.position_grid,
                Sampling::ScaleFactorOffset(self.interpolate_offset),
            ),
        }
    }
}

/// The DINOv2 encoder.
#[derive(Module, Debug)]
pub struct Dinov2<B: Backend> {
    /// `[1, 1, width]`.
    pub cls_token: Param<Tensor<B, 3>>,
    /// `[1, 1 + grid², width]`: the CLS position, then the patch grid row-major.
    pub pos_embed: Param<Tensor<B, 3>>,
    /// Stride-14 patch projection.
    pub patch_embed: Dinov2PatchEmbed<B>,
    /// Blocks in order.
    pub blocks: Vec<Dinov2Block<B>>,
    /// Final LayerNorm, applied to every returned intermediate layer.
    pub norm: LayerNorm<B>,
    #[module(skip)]
    resizer: PositionResizer,
}

/// `patch_embed.proj` in DINOv2's naming.
#[derive(Module, Debug)]
pub struct Dinov2PatchEmbed<B: Backend> {
    /// The convolution-shaped projection.
    pub proj: PatchEmbedding<B>,
}

/// One block: `x + ls1(attn(norm1(x)))`, then `x + ls2(mlp(norm2(x)))`.
#[derive(Module, Debug)]
pub struct Dinov2Block<B: Backend> {
    /// Norm before attention.
    pub norm1: LayerNorm<B>,
    /// Self-attention with a fused qkv projection.
    pub attn: Dinov2Attention<B>,
    /// LayerScale of the attention branch.
    pub ls1: LayerScale<B>,
    /// Norm before the MLP.
    pub norm2: LayerNorm<B>,
    /// Exact-GELU MLP.
    pub mlp: Dinov2Mlp<B>,
    /// LayerScale of the MLP branch.
    pub ls2: LayerScale<B>,
}

/// Multi-head self-attention with a fused `[q; k; v]` projection.
#[derive(Module, Debug)]
pub struct Dinov2Attention<B: Backend> {
    /// Fused query/key/value projection, `width → 3·width`.
    pub qkv: Linear<B>,
    /// Output projection.
    pub proj: Linear<B>,
    #[module(skip)]
    num_heads: usize,
}

/// `fc2(gelu(fc1(x)))` with the exact erf GELU.
#[derive(Module, Debug)]
pub struct Dinov2Mlp<B: Backend> {
    /// Up projection.
    pub fc1: Linear<B>,
    /// Down projection.
    pub fc2: Linear<B>,
}

/// Per-channel residual-branch scale.
#[derive(Module, Debug)]
pub struct LayerScale<B: Backend> {
    /// `[width]`.
    pub gamma: Param<Tensor<B, 1>>,
}

impl<B: Backend> Dinov2Attention<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, width] = x.dims();
        let h = self.num_heads;
        let qkv = self.qkv.forward(x).reshape([batch, seq, 3, h, width / h]).permute([2, 0, 3, 1, 4]);
        let [q, k, v] = [0, 1, 2].map(|i| qkv.clone().narrow(0, i, 1).squeeze_dim::<4>(0));
        self.proj.forward(merge_heads(grouped_attention(q, k, v, None, self.qkv.precision)))
    }
}

impl<B: Backend> Dinov2Block<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let scale = |ls: &LayerScale<B>| ls.gamma.val().unsqueeze::<3>();
        let x = x.clone() + self.attn.forward(self.norm1.forward(x)) * scale(&self.ls1);
        let h = self.mlp.fc2.forward(gelu(self.mlp.fc1.forward(self.norm2.forward(x.clone()))));
        x + h * scale(&self.ls2)
    }
}

impl<B: Backend> Dinov2<B> {
    /// Sets the arithmetic of every product of the encoder ([`Precision`]).
    pub fn set_precision(&mut self, precision: Precision) {
        self.patch_embed.proj.precision = precision;
        for block in &mut self.blocks {
            let (a, m) = (&mut block.attn, &mut block.mlp);
            set_all(precision, [&mut a.qkv, &mut a.proj, &mut m.fc1, &mut m.fc2]);
        }
    }

    /// Number of blocks.
    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    /// The patch side in pixels.
    pub fn patch_size(&self) -> usize {
        self.patch_embed.proj.patch()
    }

    /// The patch position table resized to `rows × cols` (CLS position excluded), `[rows·cols, width]`.
    pub fn position_table(&self, rows: usize, cols: usize) -> Tensor<B, 2> {
        let [_, positions, width] = self.pos_embed.dims();
        let patches = self.pos_embed.val().narrow(1, 1, positions - 1).reshape([positions - 1, width]);
        self.resizer.resize(patches, rows, cols)
    }

    /// ImageNet-normalised pixels `[B, 3, H, W]` → for each block index in `layers` (in the given
    /// order), that block's output through the final norm without CLS: `[B, rows·cols, width]`.
    ///
    /// # Panics
    /// When a layer index is out of range or the image sides are not multiples of the patch.
    pub fn intermediate_layers(&self, pixels: Tensor<B, 4>, layers: &[usize]) -> Vec<Tensor<B, 3>> {
        let [rows, cols] = check_image(&pixels, self.patch_size(), "DINOv2");
        assert!(
            layers.iter().all(|&l| l < self.blocks.len()),
            "DINOv2 has {} blocks; asked for layers {layers:?}",
            self.blocks.len()
        );
        let batch = pixels.dims()[0];
        let width = self.cls_token.dims()[2];
        let patches = self.patch_embed.proj.forward(pixels) + self.position_table(rows, cols).unsqueeze();
        let cls = self.cls_token.val() + self.pos_embed.val().narrow(1, 0, 1);
        let mut x = Tensor::cat(vec![cls.expand([batch, 1, width]), patches], 1);
        let last = layers.iter().copied().max().unwrap_or(0);
        let mut kept = Vec::with_capacity(layers.len());
        for (index, block) in self.blocks.iter().enumerate().take(last + 1) {
            x = block.forward(x);
            if layers.contains(&index) {
                kept.push((index, x.clone()));
            }
        }
        layers
            .iter()
            .map(|l| {
                let (_, out) = kept.iter().find(|(i, _)| i == l).expect("collected above");
                let tokens = out.dims()[1];
                self.norm.forward(out.clone().narrow(1, 1, tokens - 1))
            })
            .collect()
    }
}
