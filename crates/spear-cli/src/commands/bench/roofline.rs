//! The roofline bound of an action chunk: the work of the policy counted from its configuration
//! (FLOPs and bytes read, [`chunk_work`]) against the machine's peaks measured in-process on the
//! same backend ([`probe`]).
//!
//! **What is counted.** FLOPs are those of the matrix products, `2·m·k·n` for `[m, k]·[k, n]`: every
//! linear layer (patch embeddings included), and attention's scores `QKᵀ` and weighted values
//! `PV`; norms, activations, softmax and RoPE are left out (a few percent at most). Bytes are f32
//! reads from memory, each at most once per phase: every weight the phase uses (the prefix reads the
//! vision towers, projectors and the VLM's layers once, as if all cameras were batched; of the token
//! table only the prompt's rows), and for each flow step the action expert's weights plus the
//! prefix's KV cache. Activations are assumed to stay in cache. Both are lower bounds, so the bound
//! `max(FLOPs / peak FLOP/s, bytes / peak bytes/s)` per phase is a time no implementation on this
//! machine and backend can beat.

use std::fmt;
use std::ops::{Add, Mul};
use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::Distribution;
use spear_models::gemma::GemmaConfig;
use spear_models::policy::SpearPolicyConfig;

/// Bytes of one f32.
const F32: f64 = 4.0;

/// Floating-point operations and bytes read from memory.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Work {
    /// Floating-point operations (a multiply-add is two).
    pub flops: f64,
    /// Bytes read from memory.
    pub bytes: f64,
}

impl Add for Work {
    type Output = Work;
    fn add(self, other: Work) -> Work {
        Work { flops: self.flops + other.flops, bytes: self.bytes + other.bytes }
    }
}

impl Mul<usize> for Work {
    type Output = Work;
    fn mul(self, n: usize) -> Work {
        Work { flops: self.flops * n as f64, bytes: self.bytes * n as f64 }
    }
}

impl std::iter::Sum for Work {
    fn sum<I: Iterator<Item = Work>>(iter: I) -> Work {
        iter.fold(Work::default(), Add::add)
    }
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (bytes, unit) =
            if self.bytes >= 1e9 { (self.bytes / 1e9, "GB") } else { (self.bytes / 1e6, "MB") };
        write!(f, "{:.4} GFLOP, {bytes:.2} {unit} read", self.flops / 1e9)
    }
}

/// The work of one action chunk: the prefix once, then `steps` flow steps of the action expert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkWork {
    /// Prefix tokens: every camera's visual tokens, then the prompt.
    pub prefix_tokens: usize,
    /// Vision encoders, projectors and the VLM over the prefix, filling the KV cache.
    pub prefix: Work,
    /// One flow step: the expert over `1 + H` tokens attending over the prefix's cache and itself.
    pub step: Work,
    /// Flow steps per chunk.
    pub steps: usize,
}

impl ChunkWork {
    /// The whole chunk.
    pub fn total(&self) -> Work {
        self.prefix + self.step * self.steps
    }
}

/// A linear layer applied to `tokens` rows; its weights (and bias) read once.
fn linear(tokens: usize, inputs: usize, outputs: usize, bias: bool) -> Work {
    Work {
        flops: 2.0 * (tokens * inputs * outputs) as f64,
        bytes: F32 * (inputs * outputs + if bias { outputs } else { 0 }) as f64,
    }
}

/// Attention scores and weighted values of `queries` over `keys`, `heads` heads of `head_dim`.
fn attention(queries: usize, keys: usize, heads: usize, head_dim: usize) -> Work {
    Work { flops: 4.0 * (queries * keys * heads * head_dim) as f64, bytes: 0.0 }
}

/// `count` f32 values read without matrix products (norm scales, position tables, table rows, cache).
fn read(count: usize) -> Work {
    Work { flops: 0.0, bytes: F32 * count as f64 }
}

/// One pre-norm ViT block (SigLIP's and DINOv2's cost the same; DINOv2's LayerScale is `extra`
/// parameters) over `tokens` tokens of width `d`.
fn vit_block(tokens: usize, d: usize, mlp: usize, heads: usize, extra: usize) -> Work {
    linear(tokens, d, d, true) * 4
        + attention(tokens, tokens, heads, d / heads)
        + linear(tokens, d, mlp, true)
        + linear(tokens, mlp, d, true)
        + read(4 * d + extra)
}

/// One Gemma decoder layer: `tokens` queries attending over `keys` keys.
fn gemma_layer(g: &GemmaConfig, tokens: usize, keys: usize) -> Work {
    let (w, attn, kv) = (g.hidden_size, g.num_heads * g.head_dim, g.num_kv_heads * g.head_dim);
    linear(tokens, w, attn, false)
        + linear(tokens, w, kv, false) * 2
        + attention(tokens, keys, g.num_heads, g.head_dim)
        + linear(tokens, attn, w, false)
        + linear(tokens, w, g.intermediate_size, false) * 2
        + linear(tokens, g.intermediate_size, w, false)
        + read(2 * w)
}

/// One camera through SigLIP (+ projector) and, when fused, MoGe's DINOv2 (+ projector):
/// its visual tokens and work.
fn camera(config: &SpearPolicyConfig, [h, w]: [usize; 2]) -> (usize, Work) {
    let (s, width) = (&config.vlm.siglip, config.vlm.gemma.hidden_size);
    let tokens = (h / s.patch_size) * (w / s.patch_size);
    let mut work = linear(tokens, 3 * s.patch_size * s.patch_size, s.hidden_size, true)
        + read(s.position_grid * s.position_grid * s.hidden_size)
        + vit_block(tokens, s.hidden_size, s.intermediate_size, s.num_heads, 0) * s.num_layers
        + read(2 * s.hidden_size)
        + linear(tokens, s.hidden_size, width, true);
    if let Some(moge) = &config.vlm.moge {
        let d = &moge.dinov2;
        let patches = (h / d.patch_size) * (w / d.patch_size);
        let blocks = moge.layers.iter().max().map_or(0, |last| last + 1);
        work = work
            + linear(patches, 3 * d.patch_size * d.patch_size, d.hidden_size, true)
            + read((2 + d.position_grid * d.position_grid) * d.hidden_size)
            + vit_block(patches + 1, d.hidden_size, d.intermediate_size, d.num_heads, 2 * d.hidden_size)
                * blocks
            + read(2 * d.hidden_size)
            + linear(patches, d.hidden_size * moge.layers.len(), width, true);
    }
    (tokens, work)
}

/// The work of one action chunk (batch 1) for `config` with a prompt of `prompt_tokens` tokens.
pub fn chunk_work(config: &SpearPolicyConfig, prompt_tokens: usize) -> ChunkWork {
    let sizes =
        (0..config.cameras).map(|c| if c == 0 { config.vlm.image_size } else { config.vlm.wrist_image_size });
    let cameras: Vec<(usize, Work)> = sizes.map(|size| camera(config, size)).collect();
    let prefix_tokens = cameras.iter().map(|(tokens, _)| tokens).sum::<usize>() + prompt_tokens;
    // Every camera runs the same weights: their flops add up, their bytes are read once.
    let vision = Work {
        flops: cameras.iter().map(|(_, w)| w.flops).sum(),
        bytes: cameras.iter().map(|(_, w)| w.bytes).fold(0.0, f64::max),
    };
    let g = &config.vlm.gemma;
    let prefix = vision
        + read(prompt_tokens * g.hidden_size)
        + gemma_layer(g, prefix_tokens, prefix_tokens) * g.num_layers
        + read(g.hidden_size);

    let (e, width) = (&config.expert, config.expert.gemma.hidden_size);
    let (horizon, suffix) = (config.horizon, config.horizon + 1);
    let cache = 2 * prefix_tokens * e.gemma.num_kv_heads * e.gemma.head_dim * e.gemma.num_layers;
    let step = linear(1, e.state_dim, width, true)
        + linear(horizon, e.action_dim, width, true)
        + linear(horizon, 2 * width, width, true)
        + linear(horizon, width, width, true)
        + gemma_layer(&e.gemma, suffix, prefix_tokens + suffix) * e.gemma.num_layers
        + read(width)
        + linear(horizon, width, e.action_dim, true)
        + read(cache);
    ChunkWork { prefix_tokens, prefix, step, steps: config.flow.num_steps }
}

/// The machine's peaks on one backend, measured in-process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// f32 FLOP/s of the best of five `n × n · n × n` matmuls.
    pub flops_per_s: f64,
    /// Bytes/s of the best of five sums over one large f32 tensor (read bandwidth).
    pub bytes_per_s: f64,
    /// `n` of the matmul.
    pub matmul_size: usize,
    /// Size of the summed tensor in bytes.
    pub sum_bytes: usize,
}

impl Peak {
    /// The roofline time of `work` in seconds: `max(flops / peak FLOP/s, bytes / peak bytes/s)`.
    pub fn seconds(&self, work: Work) -> f64 {
        (work.flops / self.flops_per_s).max(work.bytes / self.bytes_per_s)
    }

    /// Whether `work` is limited by arithmetic rather than memory traffic.
    pub fn compute_bound(&self, work: Work) -> bool {
        work.flops / self.flops_per_s >= work.bytes / self.bytes_per_s
    }

    /// The bound of a whole chunk in seconds: the prefix's plus `steps` times a step's (each phase
    /// bound by its own limit).
    pub fn chunk_seconds(&self, work: &ChunkWork) -> f64 {
        self.seconds(work.prefix) + self.seconds(work.step) * work.steps as f64
    }
}

impl fmt::Display for Peak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "matmul {n}×{n}·{n}×{n} {:.1} GFLOP/s, sum over {} MiB {:.1} GB/s (f32, best of 5)",
            self.flops_per_s / 1e9,
            self.sum_bytes >> 20,
            self.bytes_per_s / 1e9,
            n = self.matmul_size,
        )
    }
}

/// Best of three timings of `f`, in seconds.
fn best_of_five(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Measures the peaks of backend `B` on `device`: the matmul doubles from 512 until one takes 50 ms
/// (at most 8192), the summed tensor from 128 MiB (beyond the caches) until one sum takes 20 ms
/// (at most 1 GiB); each is then timed five times after that first run.
pub fn probe<B: Backend>(device: &B::Device) -> Result<Peak> {
    let uniform = Distribution::Uniform(-1.0, 1.0);
    let mut n = 512;
    let flops_per_s = loop {
        let a = Tensor::<B, 2>::random([n, n], uniform, device);
        let b = Tensor::<B, 2>::random([n, n], uniform, device);
        B::sync(device)?;
        // Reading one number back waits for the product (and keeps a lazy backend from
        // skipping it); the sum adds n² reads to 2n³ FLOPs.
        let product = || -> Result<()> {
            a.clone().matmul(b.clone()).sum().into_scalar();
            Ok(())
        };
        let start = Instant::now();
        product()?;
        if start.elapsed().as_secs_f64() >= 0.05 || n >= 8192 {
            break 2.0 * (n as f64).powi(3) / best_of_five(product)?;
        }
        n *= 2;
    };
    let mut len = 1 << 25;
    let bytes_per_s = loop {
        let x = Tensor::<B, 1>::random([len], uniform, device);
        B::sync(device)?;
        let sum = || -> Result<()> {
            x.clone().sum().into_scalar();
            Ok(())
        };
        let start = Instant::now();
        sum()?;
        if start.elapsed().as_secs_f64() >= 0.02 || len >= 1 << 28 {
            break F32 * len as f64 / best_of_five(sum)?;
        }
        len *= 2;
    };
    Ok(Peak { flops_per_s, bytes_per_s, matmul_size: n, sum_bytes: len * F32 as usize })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use spear_models::expert::ActionExpertConfig;
    use spear_models::policy::RotationMode;
    use spear_models::siglip::SiglipConfig;
    use spear_models::vlm::SpearVlmConfig;

    type B = burn::backend::Flex;

    /// One SigLIP layer, one Gemma layer, one expert layer, one 28×28 camera (4 patches), a
    /// 2-token prompt, 2 actions of 3 dimensions, state of 2.
    fn toy() -> SpearPolicyConfig {
        let siglip = SiglipConfig::new()
            .with_hidden_size(8)
            .with_intermediate_size(16)
            .with_num_layers(1)
            .with_num_heads(2)
            .with_position_grid(2);
        let layer = |width, mlp| {
            GemmaConfig::new()
                .with_vocab_size(32)
                .with_hidden_size(width)
                .with_intermediate_size(mlp)
                .with_num_layers(1)
                .with_num_heads(2)
                .with_num_kv_heads(1)
                .with_head_dim(8)
        };
        let vlm = SpearVlmConfig::new(siglip, layer(16, 32)).with_image_size([28, 28]);
        SpearPolicyConfig::new(vlm, ActionExpertConfig::new(layer(8, 16), 3, 2), 2, RotationMode::Linear, 1)
    }

    #[test]
    fn counts_a_one_layer_toy_by_hand() {
        let work = chunk_work(&toy(), 2);
        assert_eq!(work.prefix_tokens, 6);
        // SigLIP, 4 tokens of width 8: patches 2·4·588·8 = 37632; q, k, v, o 4·2·4·8·8 = 2048;
        // attention 4·4·4·(2·4) = 512; MLP 2·2·4·8·16 = 2048; projector 2·4·8·16 = 1024.
        let siglip = 37632 + 2048 + 512 + 2048 + 1024;
        // Gemma over P = 6 tokens, width 16, 2 heads + 1 KV head of 8, MLP 32: q 2·6·16·16 = 3072,
        // k + v 2·2·6·16·8 = 3072, o 3072, attention 4·6·6·16 = 2304, GeGLU 3·2·6·16·32 = 18432.
        let gemma = 3072 + 3072 + 3072 + 2304 + 18432;
        assert_eq!(work.prefix.flops, f64::from(siglip + gemma));
        // Expert over 1 + 2 tokens attending over 9 keys, width 8, MLP 16: state 2·1·2·8 = 32,
        // actions 2·2·3·8 = 96, action-time MLP 2·2·16·8 + 2·2·8·8 = 768; q 2·3·8·16 = 768,
        // k + v 768, o 768, attention 4·3·9·16 = 1728, GeGLU 3·2·3·8·16 = 2304; out 2·2·8·3 = 96.
        let step = 32 + 96 + 768 + 768 + 768 + 768 + 1728 + 2304 + 96;
        assert_eq!(work.step.flops, f64::from(step));
        // Parameters: SigLIP patches 588·8 + 8, positions 4·8, layer 4·72 + 144 + 136 + 4·8,
        // post-norm 16 = 5360; projector 8·16 + 16 = 144; prompt rows 2·16 = 32; Gemma layer
        // 256 + 128 + 128 + 256 + 3·512 + 32 = 2336; final norm 16.
        assert_eq!(work.prefix.bytes, 4.0 * f64::from(5360 + 144 + 32 + 2336 + 16));
        // Expert: state 24, actions 32, MLP 136 + 72, layer 128 + 64 + 64 + 128 + 384 + 16 = 784,
        // norm 8, out 27; KV cache 2·6·8 = 96.
        assert_eq!(work.step.bytes, 4.0 * f64::from(24 + 32 + 136 + 72 + 784 + 8 + 27 + 96));
        assert_eq!(work.total(), work.prefix + work.step * 10);
    }

    #[test]
    fn bytes_are_the_parameters_the_tiny_models_hold() {
        for config in [toy(), SpearPolicyConfig::tiny()] {
            let prompt = 3;
            let work = chunk_work(&config, prompt);
            let policy = config.init::<B>(&Default::default()).unwrap();
            let vlm = &policy.vlm;
            let prefix_params = vlm.siglip.num_params()
                + vlm.siglip_projector.num_params()
                + vlm.moge.as_ref().map_or(0, Module::num_params)
                + vlm.moge_projector.as_ref().map_or(0, Module::num_params)
                + vlm.gemma.layers.num_params()
                + vlm.gemma.norm.num_params()
                + prompt * config.vlm.gemma.hidden_size;
            assert_eq!(work.prefix.bytes, 4.0 * prefix_params as f64);
            let e = &config.expert.gemma;
            let cache = 2 * work.prefix_tokens * e.num_kv_heads * e.head_dim * e.num_layers;
            assert_eq!(work.step.bytes, 4.0 * (policy.expert.num_params() + cache) as f64);
        }
    }

    #[test]
    fn the_bound_is_the_slower_of_arithmetic_and_memory() {
        let peak = Peak { flops_per_s: 1e9, bytes_per_s: 1e8, matmul_size: 0, sum_bytes: 0 };
        let compute = Work { flops: 2e9, bytes: 1e8 };
        let memory = Work { flops: 1e8, bytes: 3e8 };
        assert_eq!((peak.seconds(compute), peak.compute_bound(compute)), (2.0, true));
        assert_eq!((peak.seconds(memory), peak.compute_bound(memory)), (3.0, false));
        let chunk = ChunkWork { prefix_tokens: 1, prefix: compute, step: memory, steps: 10 };
        assert_eq!(peak.chunk_seconds(&chunk), 32.0);
    }

    #[test]
    fn probe_measures_positive_peaks() {
        let peak = probe::<B>(&Default::default()).unwrap();
        assert!(peak.flops_per_s > 0.0 && peak.bytes_per_s > 0.0, "{peak}");
        assert!(peak.matmul_size >= 512 && peak.sum_bytes >= 128 << 20, "{peak}");
    }
}
