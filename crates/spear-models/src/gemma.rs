//! The Gemma decoder as PaliGemma uses it (Gemma 2B), built so that a second set of Gemma-style
//! weights (SPEAR-1's action expert) can attend jointly over the same keys and values.
//!
//! Per layer: `h = x + o_proj(attn(rope(q), rope(k), v))` over the RMS-normed input, then
//! `y = h + down(gelu_tanh(gate(n)) · up(n))` over the RMS-normed `h`. RMSNorm multiplies by
//! `(1 + w)` (weights are stored zero-centred); RoPE uses the half-split layout; attention is
//! multi-query (8 query heads, 1 key/value head); text embeddings are scaled by `√width`; the LM
//! head is the transposed embedding. Field names follow transformers' `GemmaModel`.

use burn::module::{Initializer, Param};
use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu_approximate;

use crate::attention::{TokenLayout, grouped_attention, merge_heads, split_heads};
use crate::precision::{Linear, Precision, set_all};

/// Gemma configuration. Defaults are PaliGemma's Gemma 2B.
#[derive(Config, Debug, PartialEq)]
pub struct GemmaConfig {
    /// Rows of the token embedding (PaliGemma's HF checkpoints: 257216; openpi: 257152).
    #[config(default = 257216)]
    pub vocab_size: usize,
    /// Residual width.
    #[config(default = 2048)]
    pub hidden_size: usize,
    /// GeGLU width.
    #[config(default = 16384)]
    pub intermediate_size: usize,
    /// Decoder layers.
    #[config(default = 18)]
    pub num_layers: usize,
    /// Query heads.
    #[config(default = 8)]
    pub num_heads: usize,
    /// Key/value heads (1: multi-query attention).
    #[config(default = 1)]
    pub num_kv_heads: usize,
    /// Width of one head.
    #[config(default = 256)]
    pub head_dim: usize,
    /// RMSNorm epsilon.
    #[config(default = 1e-6)]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[config(default = 10000.0)]
    pub rope_theta: f64,
}

impl GemmaConfig {
    /// Builds the layers (no embedding table), e.g. for an action expert that only sees embeddings.
    pub fn init_layers<B: Backend>(&self, device: &B::Device) -> Vec<GemmaLayer<B>> {
        let (d, hd) = (self.hidden_size, self.head_dim);
        let linear = |i, o| Linear::new(i, o, false, device);
        (0..self.num_layers)
            .map(|_| GemmaLayer {
                input_layernorm: GemmaRmsNorm::new(d, self.rms_norm_eps, device),
                self_attn: GemmaAttention {
                    q_proj: linear(d, self.num_heads * hd),
                    k_proj: linear(d, self.num_kv_heads * hd),
                    v_proj: linear(d, self.num_kv_heads * hd),
                    o_proj: linear(self.num_heads * hd, d),
                    num_heads: self.num_heads,
                    num_kv_heads: self.num_kv_heads,
                    rope_theta: self.rope_theta,
                },
                post_attention_layernorm: GemmaRmsNorm::new(d, self.rms_norm_eps, device),
                mlp: GemmaMlp {
                    gate_proj: linear(d, self.intermediate_size),
                    up_proj: linear(d, self.intermediate_size),
                    down_proj: linear(self.intermediate_size, d),
                },
            })
            .collect()
    }

    /// Builds the decoder with random weights (lazily allocated).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Gemma<B> {
        Gemma {
            // N(0, 0.02) as transformers initialises Gemma (`initializer_range`): burn's default
            // N(0, 1) makes the tied LM head's logits about √width wide, and a tiny model's first
            // loss ~90 instead of ~ln(vocab).
            embed_tokens: EmbeddingConfig::new(self.vocab_size, self.hidden_size)
                .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
                .init(device),
            layers: self.init_layers(device),
            norm: GemmaRmsNorm::new(self.hidden_size, self.rms_norm_eps, device),
        }
    }
}

/// Gemma's RMSNorm: `x · rsqrt(mean(x²) + ε) · (1 + w)`.
#[derive(Module, Debug)]
pub struct GemmaRmsNorm<B: Backend> {
    /// Zero-centred scale, applied as `1 + w`.
    pub weight: Param<Tensor<B, 1>>,
    #[module(skip)]
    eps: f64,
}

impl<B: Backend> GemmaRmsNorm<B> {
    /// A norm of `width` channels with zero (identity) scale.
    pub fn new(width: usize, eps: f64, device: &B::Device) -> Self {
        Self { weight: Initializer::Zeros.init([width], device), eps }
    }

    /// Normalises over the last axis.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let inv_rms = (x.clone().powi_scalar(2).mean_dim(2) + self.eps).sqrt().recip();
        x * inv_rms * (self.weight.val() + 1.0).unsqueeze()
    }
}

/// Multi-query attention projections (no biases).
#[derive(Module, Debug)]
pub struct GemmaAttention<B: Backend> {
    /// Query projection, `width → heads·head_dim`.
    pub q_proj: Linear<B>,
    /// Key projection, `width → kv_heads·head_dim`.
    pub k_proj: Linear<B>,
    /// Value projection, `width → kv_heads·head_dim`.
    pub v_proj: Linear<B>,
    /// Output projection, `heads·head_dim → width`.
    pub o_proj: Linear<B>,
    #[module(skip)]
    num_heads: usize,
    #[module(skip)]
    num_kv_heads: usize,
    #[module(skip)]
    rope_theta: f64,
}

/// GeGLU feed-forward: `down(gelu_tanh(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct GemmaMlp<B: Backend> {
    /// Gate projection.
    pub gate_proj: Linear<B>,
    /// Up projection.
    pub up_proj: Linear<B>,
    /// Down projection.
    pub down_proj: Linear<B>,
}

/// One decoder layer.
#[derive(Module, Debug)]
pub struct GemmaLayer<B: Backend> {
    /// Norm before attention.
    pub input_layernorm: GemmaRmsNorm<B>,
    /// Attention projections.
    pub self_attn: GemmaAttention<B>,
    /// Norm before the MLP.
    pub post_attention_layernorm: GemmaRmsNorm<B>,
    /// GeGLU MLP.
    pub mlp: GemmaMlp<B>,
}

impl<B: Backend> GemmaLayer<B> {
    /// Sets the arithmetic of the layer's products ([`Precision`]).
    pub fn set_precision(&mut self, precision: Precision) {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        let projections = [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj];
        set_all(
            precision,
            projections.into_iter().chain([&mut m.gate_proj, &mut m.up_proj, &mut m.down_proj]),
        );
    }
}

/// Rotary tables for a batch of positions: `cos`/`sin` `[B, 1, S, head_dim/2]`.
#[derive(Debug, Clone)]
pub struct Rope<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
}

impl<B: Backend> Rope<B> {
    /// Tables for integer `positions` `[B][S]`. Frequencies are computed in f32 the way
    /// transformers does (`1 / θ^(2i/d)`), then `angle = position · frequency` in f32.
    pub fn new(positions: &[Vec<i64>], head_dim: usize, theta: f64, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
        let (batch, seq) = (positions.len(), positions.first().map_or(0, Vec::len));
        let mut angles = Vec::with_capacity(batch * seq * half);
        for row in positions {
            for &p in row {
                angles.extend(inv_freq.iter().map(|f| p as f32 * f));
            }
        }
        let angles = Tensor::<B, 3>::from_data(TensorData::new(angles, [batch, seq, half]), device);
        Self { cos: angles.clone().cos().unsqueeze_dim(1), sin: angles.sin().unsqueeze_dim(1) }
    }

    /// Rotates `[B, H, S, head_dim]` in the half-split layout:
    /// `[x₁ cos − x₂ sin, x₂ cos + x₁ sin]` with `x₁, x₂` the two halves.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let half = x.dims()[3] / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        Tensor::cat(
            vec![
                x1.clone() * self.cos.clone() - x2.clone() * self.sin.clone(),
                x2 * self.cos.clone() + x1 * self.sin.clone(),
            ],
            3,
        )
    }
}

/// Cached keys and values of every layer, `[B, kv_heads, T, head_dim]` each.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `layers` layers.
    pub fn new(layers: usize) -> Self {
        Self { layers: vec![None; layers] }
    }

    /// Number of cached tokens (0 when empty).
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dims()[2])
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Layer `index`'s keys and values.
    pub fn layer(&self, index: usize) -> Option<&(Tensor<B, 4>, Tensor<B, 4>)> {
        self.layers.get(index).and_then(Option::as_ref)
    }
}

/// One participant of a joint forward pass: a stack of Gemma-style layers, its input hidden
/// states `[B, S, width]` and the RoPE tables of its tokens. π0-style policies run two streams
/// (the VLM on the prefix, the action expert on the suffix) whose queries attend over the
/// concatenation of both streams' keys and values, layer by layer.
pub struct Stream<'a, B: Backend> {
    /// The stream's layers (all streams must have the same depth and head geometry).
    pub layers: &'a [GemmaLayer<B>],
    /// Input hidden states.
    pub hidden: Tensor<B, 3>,
    /// Rotary tables for the stream's tokens.
    pub rope: Rope<B>,
}

/// Runs `streams` through their layers jointly. `mask` is `[B, ΣS, T + ΣS]` (true = allowed) for
/// the streams' tokens in order, over `T` cached tokens then the streams' own. With a `cache`,
/// each layer's new keys/values are appended to it. Returns each stream's output before its final
/// norm.
pub fn joint_forward<B: Backend>(
    mut streams: Vec<Stream<'_, B>>,
    mask: Tensor<B, 3, Bool>,
    mut cache: Option<&mut KvCache<B>>,
) -> Vec<Tensor<B, 3>> {
    for layer in 0..streams[0].layers.len() {
        joint_layer(&mut streams, layer, &mask, cache.as_deref_mut());
    }
    streams.into_iter().map(|s| s.hidden).collect()
}

/// Runs layer `layer` of every stream jointly (see [`joint_forward`]), replacing each stream's
/// hidden states with the layer's output.
pub fn joint_layer<B: Backend>(
    streams: &mut [Stream<'_, B>],
    layer: usize,
    mask: &Tensor<B, 3, Bool>,
    cache: Option<&mut KvCache<B>>,
) {
    let mut queries = Vec::with_capacity(streams.len());
    let mut keys = Vec::with_capacity(streams.len() + 1);
    let mut values = Vec::with_capacity(streams.len() + 1);
    if let Some((k, v)) = cache.as_ref().and_then(|c| c.layer(layer)) {
        keys.push(k.clone());
        values.push(v.clone());
    }
    let mut lengths = Vec::with_capacity(streams.len());
    for stream in streams.iter() {
        let l = &stream.layers[layer];
        let attn = &l.self_attn;
        let x = l.input_layernorm.forward(stream.hidden.clone());
        lengths.push(x.dims()[1]);
        queries.push(stream.rope.apply(split_heads(attn.q_proj.forward(x.clone()), attn.num_heads)));
        keys.push(stream.rope.apply(split_heads(attn.k_proj.forward(x.clone()), attn.num_kv_heads)));
        values.push(split_heads(attn.v_proj.forward(x), attn.num_kv_heads));
    }
    let (k, v) = (Tensor::cat(keys, 2), Tensor::cat(values, 2));
    // The streams' layers share one precision (set model-wide); the first one's decides.
    let precision = streams[0].layers[layer].self_attn.q_proj.precision;
    let out = merge_heads(grouped_attention(
        Tensor::cat(queries, 2),
        k.clone(),
        v.clone(),
        Some(mask.clone()),
        precision,
    ));
    if let Some(cache) = cache {
        cache.layers[layer] = Some((k, v));
    }
    let mut start = 0;
    for (stream, len) in streams.iter_mut().zip(lengths) {
        let l = &stream.layers[layer];
        let attended = l.self_attn.o_proj.forward(out.clone().narrow(1, start, len));
        start += len;
        let h = stream.hidden.clone() + attended;
        let n = l.post_attention_layernorm.forward(h.clone());
        let mlp = &l.mlp;
        let ff = mlp
            .down_proj
            .forward(gelu_approximate(mlp.gate_proj.forward(n.clone())) * mlp.up_proj.forward(n));
        stream.hidden = h + ff;
    }
}

/// The Gemma decoder: token embedding, layers, final norm; the LM head is the embedding.
#[derive(Module, Debug)]
pub struct Gemma<B: Backend> {
    /// Token embedding (also the LM head).
    pub embed_tokens: Embedding<B>,
    /// Decoder layers.
    pub layers: Vec<GemmaLayer<B>>,
    /// Final RMSNorm.
    pub norm: GemmaRmsNorm<B>,
}

impl<B: Backend> Gemma<B> {
    /// Residual width.
    pub fn width(&self) -> usize {
        self.embed_tokens.weight.lazy_shape()[1]
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        let attn = &self.layers[0].self_attn;
        attn.q_proj.weight.lazy_shape()[1] / attn.num_heads
    }

    /// RoPE base.
    pub fn rope_theta(&self) -> f64 {
        self.layers[0].self_attn.rope_theta
    }

    /// Rotary tables for integer `positions` `[B][S]` at this decoder's head width and base.
    pub fn rope(&self, positions: &[Vec<i64>], device: &B::Device) -> Rope<B> {
        Rope::new(positions, self.head_dim(), self.rope_theta(), device)
    }

    /// Sets the arithmetic of every layer's products ([`Precision`]; the LM head is the VLM's).
    pub fn set_precision(&mut self, precision: Precision) {
        self.layers.iter_mut().for_each(|l| l.set_precision(precision));
    }

    /// An empty KV cache sized for this decoder.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.layers.len())
    }

    /// The `√width` scale of text-token embeddings, rounded to f32 as transformers does.
    pub fn embed_scale(&self) -> f64 {
        f64::from((self.width() as f32).sqrt())
    }

    /// Runs the decoder over `embeds` `[B, S, width]` (the last `S` tokens of `layout`), extending
    /// `cache` if given. Returns the final-normed hidden states.
    pub fn forward_embeds(
        &self,
        embeds: Tensor<B, 3>,
        layout: &TokenLayout,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let device = embeds.device();
        let seq = embeds.dims()[1];
        let rope = self.rope(&layout.positions(seq), &device);
        let mask = layout.mask(seq, &device);
        let stream = Stream { layers: &self.layers, hidden: embeds, rope };
        let hidden = joint_forward(vec![stream], mask, cache).remove(0);
        self.norm.forward(hidden)
    }
}
