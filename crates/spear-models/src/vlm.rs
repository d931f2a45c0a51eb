//! SPEAR-VLM: PaliGemma (SigLIP → linear projector → Gemma) with MoGe's DINOv2 encoder as a second
//! vision tower and 1024 "3D tokens" appended to the vocabulary (paper §3.1, appendix A.1).
//!
//! Per camera, visual tokens are the mean of the SigLIP projection and the MoGe projection (the
//! chosen DINOv2 blocks through the final norm, concatenated along channels, then one linear map
//! to the LLM width). Both encoders see the same image on the same 14-pixel grid, so tokens align
//! one to one: 280×210 → 15×20 = 300 tokens, 112×112 → 64. Without MoGe the model is exactly
//! PaliGemma. The sequence is `[main image][wrist image][BOS, prompt, "\n"][answer, EOS]`:
//! images and prompt attend bidirectionally, the answer causally.

use burn::module::{Initializer, Param};
use burn::prelude::*;
use burn::tensor::Int;

use crate::attention::TokenLayout;
use crate::dinov2::{Dinov2, Dinov2Config};
use crate::embedding::mean_resized_rows;
use crate::error::ModelError;
use crate::gemma::{Gemma, GemmaConfig, KvCache};
use crate::precision::{Linear, Precision, set_all};
use crate::siglip::{SiglipConfig, SiglipVision};
use crate::vision::{imagenet_pixels, siglip_pixels, token_grid};

/// The MoGe encoder: a DINOv2 and which of its blocks feed the projector.
#[derive(Config, Debug, PartialEq)]
pub struct MogeEncoderConfig {
    /// The ViT.
    pub dinov2: Dinov2Config,
    /// Block indices whose normed outputs are concatenated. The paper: "the last 4 layers"
    /// (MoGe-1's choice, blocks 20–23 of ViT-L); MoGe-2 uses `[5, 11, 17, 23]`.
    pub layers: Vec<usize>,
}

impl MogeEncoderConfig {
    /// The paper's choice for a ViT: its last four blocks.
    pub fn last_four(dinov2: Dinov2Config) -> Self {
        let n = dinov2.num_layers;
        Self { layers: (n.saturating_sub(4)..n).collect(), dinov2 }
    }
}

/// SPEAR-VLM configuration. `moge = None` and `num_3d_tokens = 0` is plain PaliGemma.
#[derive(Config, Debug, PartialEq)]
pub struct SpearVlmConfig {
    /// SigLIP tower.
    pub siglip: SiglipConfig,
    /// Gemma decoder.
    pub gemma: GemmaConfig,
    /// MoGe encoder, if fused.
    #[config(default = "None")]
    pub moge: Option<MogeEncoderConfig>,
    /// Tokens appended after the Gemma vocabulary (1024 in the paper); token `k` has id
    /// `gemma.vocab_size + k`.
    #[config(default = 0)]
    pub num_3d_tokens: usize,
    /// Main camera input `[height, width]` (PaliGemma: its square training size; SPEAR: 210×280).
    #[config(default = "[224, 224]")]
    pub image_size: [usize; 2],
    /// Wrist camera input `[height, width]`.
    #[config(default = "[112, 112]")]
    pub wrist_image_size: [usize; 2],
    /// `<bos>` id.
    #[config(default = 2)]
    pub bos_token_id: u32,
    /// `<eos>` id.
    #[config(default = 1)]
    pub eos_token_id: u32,
}

impl SpearVlmConfig {
    /// PaliGemma 3B (pt-224 weights) without MoGe or 3D tokens.
    pub fn paligemma_3b() -> Self {
        Self::new(SiglipConfig::new(), GemmaConfig::new())
    }

    /// The paper's SPEAR-VLM: PaliGemma 3B + MoGe ViT-L (last 4 blocks) + 1024 3D tokens.
    pub fn spear_vlm() -> Self {
        Self::paligemma_3b()
            .with_moge(Some(MogeEncoderConfig::last_four(Dinov2Config::new())))
            .with_num_3d_tokens(1024)
            .with_image_size([210, 280])
    }

    /// A tiny SPEAR-VLM with the paper's topology (MoGe fused on its last 4 of 4 blocks, 1024 3D
    /// tokens, 280×210 main and 112×112 wrist cameras) and small widths: for the demo, tests
    /// and benchmarks.
    pub fn tiny() -> Self {
        Self::new(
            SiglipConfig::new()
                .with_hidden_size(64)
                .with_intermediate_size(128)
                .with_num_layers(2)
                .with_num_heads(4),
            GemmaConfig::new()
                .with_vocab_size(1024)
                .with_hidden_size(128)
                .with_intermediate_size(256)
                .with_num_layers(2)
                .with_num_heads(4)
                .with_head_dim(32),
        )
        .with_moge(Some(MogeEncoderConfig::last_four(
            Dinov2Config::new()
                .with_hidden_size(64)
                .with_intermediate_size(256)
                .with_num_layers(4)
                .with_num_heads(4),
        )))
        .with_num_3d_tokens(1024)
        .with_image_size([210, 280])
    }

    /// Builds the model with random weights (lazily allocated, so loading a checkpoint right
    /// after does not pay for the initialisation).
    pub fn init<B: Backend>(&self, device: &B::Device) -> SpearVlm<B> {
        let width = self.gemma.hidden_size;
        let moge = self.moge.as_ref().map(|m| m.dinov2.init(device));
        let moge_projector = self
            .moge
            .as_ref()
            .map(|m| Linear::new(m.dinov2.hidden_size * m.layers.len(), width, true, device));
        let embed_3d = (self.num_3d_tokens > 0)
            .then(|| Initializer::Normal { mean: 0.0, std: 0.02 }.init([self.num_3d_tokens, width], device));
        SpearVlm {
            siglip: self.siglip.init(device),
            siglip_projector: Linear::new(self.siglip.hidden_size, width, true, device),
            moge,
            moge_projector,
            gemma: self.gemma.init(device),
            embed_3d,
            moge_layers: self.moge.as_ref().map(|m| m.layers.clone()).unwrap_or_default(),
            bos: self.bos_token_id,
            eos: self.eos_token_id,
            image_size: self.image_size,
            wrist_image_size: self.wrist_image_size,
            precision: Precision::F32,
        }
    }
}

/// Module paths of the parts no released checkpoint holds (SPEAR-VLM initialises them itself).
pub const NEW_PARTS: [&str; 2] = ["moge_projector", "embed_3d"];

/// Which parts train; the rest is frozen (no gradients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trainable {
    /// SigLIP tower.
    pub siglip: bool,
    /// MoGe's DINOv2.
    pub moge: bool,
    /// Both projectors.
    pub projectors: bool,
    /// Gemma, its original embedding rows included.
    pub llm: bool,
    /// The 3D-token embedding rows.
    pub new_embeddings: bool,
}

impl Trainable {
    /// Paper stage 1: only the randomly initialised weights (MoGe projector, 3D-token rows) and
    /// the SigLIP projector train.
    pub const STAGE_1: Self =
        Self { siglip: false, moge: false, projectors: true, llm: false, new_embeddings: true };
    /// Paper stage 2: everything but the two vision encoders trains.
    pub const STAGE_2: Self =
        Self { siglip: false, moge: false, projectors: true, llm: true, new_embeddings: true };
    /// Paper VLA stage (§3.2, Table 9): SigLIP trains, MoGe is frozen, everything else trains.
    pub const VLA: Self =
        Self { siglip: true, moge: false, projectors: true, llm: true, new_embeddings: true };
}

/// SPEAR-VLM (or PaliGemma when built without MoGe and 3D tokens).
#[derive(Module, Debug)]
pub struct SpearVlm<B: Backend> {
    /// SigLIP vision tower.
    pub siglip: SiglipVision<B>,
    /// SigLIP width → LLM width.
    pub siglip_projector: Linear<B>,
    /// MoGe's DINOv2 encoder.
    pub moge: Option<Dinov2<B>>,
    /// Concatenated MoGe features → LLM width.
    pub moge_projector: Option<Linear<B>>,
    /// The language model.
    pub gemma: Gemma<B>,
    /// Embedding rows of the 3D tokens, `[num_3d_tokens, width]` (also their LM-head rows).
    pub embed_3d: Option<Param<Tensor<B, 2>>>,
    #[module(skip)]
    moge_layers: Vec<usize>,
    #[module(skip)]
    bos: u32,
    #[module(skip)]
    eos: u32,
    #[module(skip)]
    image_size: [usize; 2],
    #[module(skip)]
    wrist_image_size: [usize; 2],
    #[module(skip)]
    precision: Precision,
}

impl<B: Backend> SpearVlm<B> {
    /// Rows of the original vocabulary; 3D token `k` has id `base_vocab() + k`.
    pub fn base_vocab(&self) -> usize {
        self.gemma.embed_tokens.weight.lazy_shape()[0]
    }

    /// Number of 3D tokens.
    pub fn num_3d_tokens(&self) -> usize {
        self.embed_3d.as_ref().map_or(0, |e| e.lazy_shape()[0])
    }

    /// Total vocabulary (logit width).
    pub fn vocab(&self) -> usize {
        self.base_vocab() + self.num_3d_tokens()
    }

    /// `<bos>` id.
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// `<eos>` id.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Main camera input `[height, width]`.
    pub fn image_size(&self) -> [usize; 2] {
        self.image_size
    }

    /// Wrist camera input `[height, width]`.
    pub fn wrist_image_size(&self) -> [usize; 2] {
        self.wrist_image_size
    }

    /// Whether a token id is a 3D token, and which.
    pub fn token_3d(&self, id: u32) -> Option<usize> {
        let k = (id as usize).checked_sub(self.base_vocab())?;
        (k < self.num_3d_tokens()).then_some(k)
    }

    /// Sets the 3D-token rows by mean resizing of the current embedding (seed the backend first
    /// for reproducibility). Call after loading PaliGemma weights.
    pub fn init_3d_tokens_by_mean_resizing(mut self) -> Self {
        if let Some(rows) = self.embed_3d.take() {
            let count = rows.lazy_shape()[0];
            let fresh = mean_resized_rows(self.gemma.embed_tokens.weight.val(), count);
            self.embed_3d = Some(Param::initialized(rows.id, fresh.detach().require_grad()));
        }
        self
    }

    /// Sets the arithmetic of every matrix product ([`Precision`]): both towers, the projectors,
    /// Gemma and the LM head. Parameters keep their dtype (f32).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
        self.siglip.set_precision(precision);
        if let Some(moge) = &mut self.moge {
            moge.set_precision(precision);
        }
        set_all(precision, std::iter::once(&mut self.siglip_projector).chain(self.moge_projector.as_mut()));
        self.gemma.set_precision(precision);
    }

    /// The same model computing at `precision` ([`Self::set_precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.set_precision(precision);
        self
    }

    /// The arithmetic of the matrix products.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Freezes every part not marked trainable.
    pub fn with_trainable(mut self, t: Trainable) -> Self {
        if !t.siglip {
            self.siglip = self.siglip.no_grad();
        }
        if !t.moge {
            self.moge = self.moge.map(Module::no_grad);
        }
        if !t.projectors {
            self.siglip_projector = self.siglip_projector.no_grad();
            self.moge_projector = self.moge_projector.map(Module::no_grad);
        }
        if !t.llm {
            self.gemma = self.gemma.no_grad();
        }
        if !t.new_embeddings {
            self.embed_3d = self.embed_3d.map(|p| p.set_require_grad(false));
        }
        self
    }

    /// Checks an RGB batch against both encoders' patch grids; returns the token grid.
    pub fn check_image(&self, rgb: &Tensor<B, 4>) -> Result<[usize; 2], ModelError> {
        let [_, channels, height, width] = rgb.dims();
        if channels != 3 {
            return Err(ModelError::Input(format!(
                "images must be RGB [B, 3, H, W]; got {channels} channels"
            )));
        }
        if let Some(moge) = &self.moge {
            token_grid(height, width, moge.patch_size(), "MoGe")?;
        }
        token_grid(height, width, self.siglip.patch_size(), "SigLIP")
    }

    /// Visual tokens of one camera: RGB `[B, 3, H, W]` in [0, 1] → `[B, (H/14)·(W/14), width]`.
    pub fn embed_image(&self, rgb: Tensor<B, 4>) -> Result<Tensor<B, 3>, ModelError> {
        self.check_image(&rgb)?;
        let features = self.moge_features(rgb.clone());
        Ok(self.join_image(self.siglip.forward(siglip_pixels(rgb)), features))
    }

    /// MoGe's part of one camera's tokens before its projector: the chosen DINOv2 blocks through
    /// the final norm, concatenated along channels (`None` without MoGe).
    pub fn moge_features(&self, rgb: Tensor<B, 4>) -> Option<Tensor<B, 3>> {
        let moge = self.moge.as_ref()?;
        Some(Tensor::cat(moge.intermediate_layers(imagenet_pixels(rgb), &self.moge_layers), 2))
    }

    /// One camera's visual tokens from SigLIP's output (after its final norm) and
    /// [`Self::moge_features`]: the mean of both projections.
    pub fn join_image(&self, siglip: Tensor<B, 3>, moge: Option<Tensor<B, 3>>) -> Tensor<B, 3> {
        let siglip = self.siglip_projector.forward(siglip);
        match (moge, &self.moge_projector) {
            (Some(features), Some(projector)) => (siglip + projector.forward(features)) / 2.0,
            _ => siglip,
        }
    }

    /// Visual tokens of all cameras in order (`[main][wrist]`), concatenated along the sequence.
    pub fn embed_images(&self, cameras: &[Tensor<B, 4>]) -> Result<Tensor<B, 3>, ModelError> {
        let tokens = cameras.iter().map(|c| self.embed_image(c.clone())).collect::<Result<Vec<_>, _>>()?;
        if tokens.is_empty() {
            return Err(ModelError::Input("at least one camera image is required".into()));
        }
        Ok(Tensor::cat(tokens, 1))
    }

    /// Text embeddings `[B, S, width]` of token ids `[B, S]` (3D tokens included), × √width.
    pub fn embed_tokens(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let scale = self.gemma.embed_scale();
        let base = self.base_vocab() as i64;
        let words = self.gemma.embed_tokens.forward(ids.clone().clamp(0, base - 1));
        let embeds = match &self.embed_3d {
            Some(rows) => {
                let [batch, seq] = ids.dims();
                let count = self.num_3d_tokens() as i64;
                let local = (ids.clone() - base).clamp(0, count - 1).reshape([batch * seq]);
                let width = words.dims()[2];
                let extra = rows.val().select(0, local).reshape([batch, seq, width]);
                let is_3d = ids.greater_equal_elem(base).unsqueeze_dim::<3>(2).repeat_dim(2, width);
                words.mask_where(is_3d, extra)
            }
            None => words,
        };
        embeds * scale
    }

    /// Logits `[B, S, vocab]` from final hidden states (the LM head is the embedding, 3D rows last).
    ///
    /// Computed as `E · hᵀ` on the stored `[vocab, width]` table rather than `h · Eᵀ`: a
    /// transposed view of the 257k-row table makes CPU matmul copy 2 GB per decode step.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, width] = hidden.dims();
        let columns = hidden.reshape([batch * seq, width]).transpose();
        let head = |table: Tensor<B, 2>| self.precision.matmul(table, columns.clone());
        let mut logits = head(self.gemma.embed_tokens.weight.val());
        if let Some(rows) = &self.embed_3d {
            logits = Tensor::cat(vec![logits, head(rows.val())], 0);
        }
        let vocab = logits.dims()[0];
        logits.transpose().reshape([batch, seq, vocab])
    }

    /// Runs the decoder over `embeds` (the last tokens of `layout`), extending `cache` if given,
    /// and returns final hidden states.
    pub fn decode(
        &self,
        embeds: Tensor<B, 3>,
        layout: &TokenLayout,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        self.gemma.forward_embeds(embeds, layout, cache)
    }

    /// Full forward of a batch: images (per camera `[B, 3, H, W]`), then `prefix` ids (BOS, prompt,
    /// "\n"), then `suffix` ids (answer, EOS; may be empty). Prefix attends bidirectionally with
    /// the images, the suffix causally. Rows are unpadded (equal lengths). Returns logits over
    /// every position.
    pub fn forward(
        &self,
        cameras: &[Tensor<B, 4>],
        prefix: Tensor<B, 2, Int>,
        suffix: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let images = self.embed_images(cameras)?;
        let [batch, image_tokens, _] = images.dims();
        let prefix_len = prefix.dims()[1];
        let mut embeds = vec![images, self.embed_tokens(prefix)];
        let suffix_len = suffix.as_ref().map_or(0, |s| s.dims()[1]);
        if let Some(suffix) = suffix {
            embeds.push(self.embed_tokens(suffix));
        }
        let ar: Vec<bool> =
            (0..image_tokens + prefix_len + suffix_len).map(|i| i >= image_tokens + prefix_len).collect();
        let layout = TokenLayout::new(vec![vec![true; ar.len()]; batch], &vec![ar; batch]);
        let hidden = self.decode(Tensor::cat(embeds, 1), &layout, None);
        Ok(self.logits(hidden))
    }

    /// The training forward of a batch whose rows differ in length: per row its token ids (`<bos>`
    /// first) and how many of them are the prefix (attending bidirectionally with the images; the
    /// rest attends causally). Rows are right-padded to the longest; padding neither attends nor
    /// is attended to, and RoPE positions count real tokens only, so each row computes exactly
    /// what it would alone. Returns the logits `[B, L, vocab]` of the text positions only (`L`:
    /// the longest row), where position `t` predicts token `t + 1`.
    pub fn forward_rows(
        &self,
        cameras: &[Tensor<B, 4>],
        rows: &[(&[u32], usize)],
    ) -> Result<Tensor<B, 3>, ModelError> {
        let images = self.embed_images(cameras)?;
        let [batch, image_tokens, _] = images.dims();
        let text = self.rows_text(rows, batch, image_tokens, &images.device())?;
        let embeds = Tensor::cat(vec![images, self.embed_tokens(text.ids)], 1);
        let hidden = self.decode(embeds, &text.layout, None);
        Ok(self.logits(hidden.narrow(1, image_tokens, text.longest)))
    }

    /// The text of [`Self::forward_rows`] after `image_tokens` visual tokens per sample: the
    /// right-padded ids and the whole sequence's layout, the rows checked.
    pub(crate) fn rows_text(
        &self,
        rows: &[(&[u32], usize)],
        batch: usize,
        image_tokens: usize,
        device: &B::Device,
    ) -> Result<RowsText<B>, ModelError> {
        if rows.len() != batch {
            return Err(ModelError::Input(format!(
                "{} token rows for a batch of {batch} images",
                rows.len()
            )));
        }
        let vocab = self.vocab();
        for (r, (ids, prefix_len)) in rows.iter().enumerate() {
            if ids.is_empty() || *prefix_len == 0 || *prefix_len > ids.len() {
                return Err(ModelError::Input(format!(
                    "row {r}: {} tokens with a prefix of {prefix_len} (expected 1 ≤ prefix ≤ tokens)",
                    ids.len()
                )));
            }
            if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(ModelError::Input(format!(
                    "row {r}: token id {id} outside the vocabulary ({vocab})"
                )));
            }
        }
        let (padded, longest) = right_padded(rows.iter().map(|(ids, _)| *ids));
        let (mut valid, mut ar) = (Vec::with_capacity(batch), Vec::with_capacity(batch));
        for (ids, prefix_len) in rows {
            let text = (0..longest).map(|t| t < ids.len());
            valid.push(std::iter::repeat_n(true, image_tokens).chain(text).collect::<Vec<_>>());
            let causal = (0..longest).map(|t| t >= *prefix_len);
            ar.push(std::iter::repeat_n(false, image_tokens).chain(causal).collect::<Vec<_>>());
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(padded, [batch, longest]), device);
        Ok(RowsText { ids, layout: TokenLayout::new(valid, &ar), longest })
    }
}

/// Token rows ready for the decoder ([`SpearVlm::rows_text`]).
pub(crate) struct RowsText<B: Backend> {
    /// Right-padded ids `[B, longest]`.
    pub ids: Tensor<B, 2, Int>,
    /// Images then text.
    pub layout: TokenLayout,
    /// The longest row.
    pub longest: usize,
}

/// Token rows right-padded with id 0 to the longest, flattened row-major, and that length.
pub(crate) fn right_padded<'a>(rows: impl Iterator<Item = &'a [u32]> + Clone) -> (Vec<i64>, usize) {
    let longest = rows.clone().map(<[u32]>::len).max().unwrap_or(0);
    let mut padded = Vec::new();
    for ids in rows {
        padded.extend(ids.iter().map(|&id| i64::from(id)));
        padded.extend(std::iter::repeat_n(0, longest - ids.len()));
    }
    (padded, longest)
}
