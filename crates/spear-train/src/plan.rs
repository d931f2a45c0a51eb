//! What a run would train, before it allocates anything: the model its config builds, with
//! parameter counts per part read from the parameters' lazy shapes (so a full-size plan costs no
//! weight memory) and each part trainable or frozen as `[trainable]` says (the models crate's
//! `with_trainable` applies exactly those flags; the freezing tests check it does).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use spear_models::expert::ActionExpertConfig;
use spear_models::vlm::{SpearVlm, SpearVlmConfig};
use spear_models::{Precision, SpearPolicyConfig};

use crate::config::{Checkpointing, TrainConfig, TrainableSection};

/// One part of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCount {
    /// Its name.
    pub name: &'static str,
    /// Parameters.
    pub params: u64,
    /// Of which receive gradients.
    pub trainable: u64,
}

/// Counts parameters without initialising them.
#[derive(Default)]
struct Count(u64);

impl<B: Backend> ModuleVisitor<B> for Count {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0 += param.lazy_shape().num_elements() as u64;
    }
}

fn params<B: Backend, M: Module<B>>(module: &M) -> u64 {
    let mut c = Count::default();
    module.visit(&mut c);
    c.0
}

fn part(name: &'static str, params: u64, trainable: bool) -> PartCount {
    PartCount { name, params, trainable: if trainable { params } else { 0 } }
}

fn vlm_parts<B: Backend>(vlm: &SpearVlm<B>, t: &TrainableSection) -> Vec<PartCount> {
    let mut parts = vec![part("SigLIP vision tower", params(&vlm.siglip), t.siglip)];
    if let Some(moge) = &vlm.moge {
        parts.push(part("MoGe encoder (DINOv2)", params(moge), t.moge));
    }
    let projectors = params(&vlm.siglip_projector) + vlm.moge_projector.as_ref().map_or(0, params);
    parts.push(part("projectors (SigLIP, MoGe)", projectors, t.projectors));
    parts.push(part("Gemma (with its embedding)", params(&vlm.gemma), t.llm));
    if let Some(rows) = &vlm.embed_3d {
        parts.push(part("3D-token rows", params(rows), t.new_embeddings));
    }
    parts
}

/// The model a run of `config` trains (the VLM within it for a VLM stage), its tiny vocabulary
/// the tokenizer's where it can be read.
fn planned_policy(config: &TrainConfig) -> SpearPolicyConfig {
    crate::stages::vla::policy_config(config, crate::model::planned_vlm_config(config))
}

/// The parameter counts of the model `config` trains, per part, trainable or frozen by its
/// `[trainable]`. Builds the model lazily on `device`: no weight is allocated.
pub fn parameter_counts<B: Backend>(config: &TrainConfig, device: &B::Device) -> Vec<PartCount> {
    model_counts::<B>(&planned_policy(config), config.stage.is_vlm(), &config.trainable, device)
}

/// The parameter counts of `policy` (of its VLM alone with `vlm_only`), per part, trainable or
/// frozen by `trainable`. Builds the model lazily on `device`: no weight is allocated.
pub fn model_counts<B: Backend>(
    policy: &SpearPolicyConfig,
    vlm_only: bool,
    trainable: &TrainableSection,
    device: &B::Device,
) -> Vec<PartCount> {
    if vlm_only {
        vlm_parts(&policy.vlm.init::<B>(device), trainable)
    } else {
        let policy = policy.init::<B>(device).expect("a valid policy config");
        let mut parts = vlm_parts(&policy.vlm, trainable);
        parts.push(part("action expert", params(&policy.expert), trainable.action_expert));
        parts
    }
}

/// The counts as a table, with totals.
pub fn render(parts: &[PartCount]) -> String {
    let millions = |n: u64| format!("{:.1} M", n as f64 / 1e6);
    let mut out = format!("  {:<28} {:>12} {:>12} {:>12}\n", "part", "parameters", "trainable", "frozen");
    for p in parts {
        out += &format!(
            "  {:<28} {:>12} {:>12} {:>12}\n",
            p.name,
            millions(p.params),
            millions(p.trainable),
            millions(p.params - p.trainable)
        );
    }
    let (all, trainable) = parts.iter().fold((0, 0), |(a, t), p| (a + p.params, t + p.trainable));
    out += &format!(
        "  {:<28} {:>12} {:>12} {:>12}\n",
        "total",
        millions(all),
        millions(trainable),
        millions(all - trainable)
    );
    out
}

/// What a training step keeps for its backward pass, in elements, by how it is stored: tensors
/// saved by element-wise operations (norms, activations, softmax: always f32), operands saved by
/// matrix products (f32, or their bf16 casts at [`Precision::Bf16`]), the outputs of the matrix
/// products (what [`Checkpointing::Balanced`] keeps instead, recomputing the rest), and masked
/// attention scores (each with its one-byte mask).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Kept {
    /// f32 elements saved by element-wise operations.
    pub elementwise: f64,
    /// Elements of matrix-product operands.
    pub operands: f64,
    /// Elements of matrix-product outputs.
    pub outputs: f64,
    /// Elements of masked attention scores.
    pub masked: f64,
}

impl std::ops::Add for Kept {
    type Output = Kept;
    fn add(self, o: Kept) -> Kept {
        Kept {
            elementwise: self.elementwise + o.elementwise,
            operands: self.operands + o.operands,
            outputs: self.outputs + o.outputs,
            masked: self.masked + o.masked,
        }
    }
}

impl std::ops::Mul<f64> for Kept {
    type Output = Kept;
    fn mul(self, k: f64) -> Kept {
        Kept {
            elementwise: self.elementwise * k,
            operands: self.operands * k,
            outputs: self.outputs * k,
            masked: self.masked * k,
        }
    }
}

impl Kept {
    /// Bytes at `precision` with `checkpointing` ([`Checkpointing::Blocks`] keeps everything
    /// within the block it recomputes).
    pub fn bytes(&self, precision: Precision, checkpointing: Checkpointing) -> f64 {
        let operand = precision.operand_bytes() as f64;
        match checkpointing {
            Checkpointing::None | Checkpointing::Blocks => {
                4.0 * self.elementwise + operand * self.operands + self.masked
            }
            // burn keeps the outputs of compute-bound operations: the products' (at bf16 also
            // their casts back to f32, and the operands' casts, which burn does not recompute),
            // and the masked scores (a masked fill is compute-bound in burn-autodiff).
            Checkpointing::Balanced => match precision {
                Precision::F32 => 4.0 * (self.outputs + self.masked) + self.masked,
                Precision::Bf16 => 6.0 * self.outputs + 4.0 * self.masked + 2.0 * self.operands + self.masked,
            },
        }
    }
}

/// What one sample of a training step keeps for its backward pass ([`kept_per_sample`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Activations {
    /// Everything a single backward pass through the whole model keeps, with the gradients of
    /// the largest layer on top (a layer's backward pass holds about what it kept).
    pub kept: Kept,
    /// The largest transformer layer's.
    pub largest: Kept,
    /// The loss head's (the LM head's log-softmax in VLM stages).
    pub head: Kept,
    /// f32 elements of the stages' inputs under [`Checkpointing::Blocks`] (each block's input,
    /// the text and suffix embeddings, the frozen towers' outputs).
    pub boundaries: f64,
}

impl Activations {
    /// Bytes per sample at `precision` with `checkpointing`. With [`Checkpointing::Blocks`], the
    /// stage inputs and the larger of one layer or the head, one and a half times: what it keeps,
    /// and the gradients its backward pass makes as it releases what it kept. At either precision
    /// as at f32: a bf16 block's backward pass holds the f32 gradients of its bf16 operands beside
    /// them, and measured on the CPU it peaks no lower than at f32 (`tests/memory.rs`).
    pub fn bytes(&self, precision: Precision, checkpointing: Checkpointing) -> f64 {
        match checkpointing {
            Checkpointing::Blocks => {
                let stage = |k: &Kept| k.bytes(Precision::F32, Checkpointing::Blocks);
                4.0 * self.boundaries + 1.5 * stage(&self.largest).max(stage(&self.head))
            }
            _ => self.kept.bytes(precision, checkpointing),
        }
    }
}

/// One pre-norm transformer layer's kept tensors for `tokens` tokens attending over `keys`, per
/// the operations `spear_models` runs under burn's autodiff: a norm keeps its input and its scaled
/// output, the following products their (shared) input; attention its queries, keys, values, the
/// shifted scores, exponentials and probabilities; the tanh-GELU its input, tanh and `tanh + 1`;
/// the gated or plain MLP its products' inputs.
#[allow(clippy::too_many_arguments)]
fn layer(
    tokens: f64,
    keys: f64,
    width: f64,
    mlp: f64,
    heads: f64,
    kv_heads: f64,
    head_dim: f64,
    gated: bool,
    layer_norm: bool,
    masked: bool,
) -> Kept {
    let (t, d, m) = (tokens, width, mlp);
    // A stream's own keys and values (the joint attention concatenates the streams').
    let (q, kv, scores) = (t * heads * head_dim, t * kv_heads * head_dim, heads * t * keys);
    // RMSNorm keeps x and x·rsqrt; LayerNorm x − mean (twice: variance and centring) and x̂.
    let norm = if layer_norm { 3.0 * t * d } else { 2.0 * t * d };
    // Gemma's RoPE keeps the un-rotated queries and keys.
    let rope = if layer_norm { 0.0 } else { q + t * kv_heads * head_dim };
    // GeGLU: gelu(gate) keeps gate, tanh, tanh + 1; the product keeps gelu(gate) and up.
    let ff = if gated { 5.0 * t * m } else { 3.0 * t * m };
    Kept {
        // The softmax keeps the shifted scores (exp's input) and the exponentials (the division's).
        elementwise: 2.0 * norm + rope + ff + 2.0 * scores,
        // Both norms' outputs, queries, keys, values, probabilities, the merged heads, the
        // down projection's input.
        operands: 2.0 * t * d + q + 2.0 * kv + scores + q + t * m,
        masked: if masked { scores } else { 0.0 },
        // q, k, v, scores, attention, output projection, gate (and up), down.
        outputs: q + 2.0 * kv + scores + q + t * d + if gated { 2.0 } else { 1.0 } * t * m + t * d,
    }
}

/// What one sample of a training step keeps for the backward pass through the VLM `vlm` and,
/// for a policy, the `expert` with chunks of `horizon` (trainable towers only: a frozen tower
/// whose input needs no gradient keeps nothing), with `cameras` images, `text` text tokens in the
/// prefix and the LM head's log-softmax over `logits` positions (VLM stages).
#[allow(clippy::too_many_arguments)]
pub fn kept_per_sample(
    vlm: &SpearVlmConfig,
    expert: Option<&ActionExpertConfig>,
    horizon: usize,
    cameras: usize,
    text: usize,
    logits: usize,
    trainable: &TrainableSection,
) -> Activations {
    let grid = |[h, w]: [usize; 2], patch: usize| ((h / patch) * (w / patch)) as f64;
    let sizes = std::iter::once(vlm.image_size).chain(std::iter::repeat_n(vlm.wrist_image_size, cameras - 1));
    let images: Vec<f64> = sizes.map(|size| grid(size, vlm.siglip.patch_size)).collect();
    let mut kept = Kept::default();
    let mut boundaries = 0.0;
    // The backward pass of a layer holds gradients about the size of what the layer kept, while
    // every earlier layer's tensors are still held: the largest layer once more.
    let mut largest = Kept::default();
    let track = |one: Kept, largest: &mut Kept| {
        if one.elementwise + one.operands > largest.elementwise + largest.operands {
            *largest = one;
        }
    };
    let s = &vlm.siglip;
    // The VLA stage trains SigLIP; otherwise its frozen tower keeps nothing.
    if trainable.siglip {
        let head_dim = (s.hidden_size / s.num_heads) as f64;
        for &n in &images {
            let one = layer(
                n,
                n,
                s.hidden_size as f64,
                s.intermediate_size as f64,
                s.num_heads as f64,
                s.num_heads as f64,
                head_dim,
                false,
                true,
                false,
            );
            track(one, &mut largest);
            kept = kept + one * s.num_layers as f64;
            // The patches and the final norm, the projector's input.
            kept.operands += n * (3 * s.patch_size * s.patch_size + s.hidden_size) as f64;
            kept.elementwise += 3.0 * n * s.hidden_size as f64;
            // Each block's input, and the join's.
            boundaries += (s.num_layers + 1) as f64 * n * s.hidden_size as f64;
        }
    } else {
        kept.operands += images.iter().sum::<f64>() * s.hidden_size as f64;
        boundaries += images.iter().sum::<f64>() * s.hidden_size as f64;
    }
    if let Some(moge) = &vlm.moge {
        // Frozen MoGe keeps nothing; its projector keeps the concatenated layers.
        let features = images.iter().sum::<f64>() * (moge.dinov2.hidden_size * moge.layers.len()) as f64;
        kept.operands += features;
        boundaries += features;
    }
    let g = &vlm.gemma;
    let prefix = images.iter().sum::<f64>() + text as f64;
    let suffix = expert.map_or(0.0, |_| (1 + horizon) as f64);
    let keys = prefix + suffix;
    let gemma_layer = |tokens: f64, c: &spear_models::gemma::GemmaConfig| {
        layer(
            tokens,
            keys,
            c.hidden_size as f64,
            c.intermediate_size as f64,
            c.num_heads as f64,
            c.num_kv_heads as f64,
            c.head_dim as f64,
            true,
            false,
            true,
        )
    };
    let mut joint = gemma_layer(prefix, g);
    if let Some(e) = expert {
        joint = joint + gemma_layer(suffix, &e.gemma);
    }
    track(joint, &mut largest);
    kept = kept + joint * g.num_layers as f64;
    // The text and suffix embeddings (carried past the SigLIP blocks), each joint layer's input
    // and the last one's output.
    let width = |tokens: f64, c: &spear_models::gemma::GemmaConfig| tokens * c.hidden_size as f64;
    let suffix_width = expert.map_or(0.0, |e| width(suffix, &e.gemma));
    boundaries +=
        width(text as f64, g) + suffix_width + (g.num_layers + 1) as f64 * (width(prefix, g) + suffix_width);
    let mut head = Kept::default();
    if logits > 0 {
        // VLM stages: the LM head's input, and the log-softmax over the vocabulary (its
        // exponentials and output) on the text positions.
        let (positions, vocab) = (logits as f64, (g.vocab_size + vlm.num_3d_tokens) as f64);
        head.operands += positions * g.hidden_size as f64;
        head.elementwise += 2.0 * positions * vocab;
        head.outputs += positions * vocab;
    }
    Activations { kept: kept + head + largest, largest, head, boundaries }
}

/// How a run holds its state on each device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    /// Matrix-product arithmetic.
    pub precision: Precision,
    /// Activation checkpointing.
    pub checkpointing: Checkpointing,
    /// Ranks (devices over all nodes).
    pub world: usize,
    /// Whether the optimiser state and EMA are sharded over them.
    pub shard_optimizer: bool,
    /// Micro-batches accumulated per step.
    pub grad_accum: usize,
    /// Samples per micro-batch on one device.
    pub micro_batch: usize,
    /// Whether the run keeps an EMA.
    pub ema: bool,
}

/// The bytes one device holds at the peak of a training step, by what holds them.
///
/// A step peaks either in its backward pass — the weights, AdamW's moments, the EMA and the
/// accumulated gradients always held, with the activations kept by the forward pass (and the
/// bf16 casts of the weights) as the backward pass starts, or the gradients as it ends (it frees
/// the one as it makes the other, the embedding table's gradient last) — or in the update, where
/// every gradient is held and each parameter's new value exists beside its old one (the largest,
/// the embedding table, counts).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    /// `(what, bytes)`, each part once.
    pub rows: Vec<(String, f64)>,
    /// The peak: the larger of [`Self::backward_peak`] and [`Self::update_peak`].
    pub total: f64,
    /// Activation bytes per sample.
    pub per_sample: f64,
    /// Held throughout: weights, moments, EMA, accumulated gradients.
    state: f64,
    /// Gradients of one micro-batch.
    grads: f64,
    /// bf16 casts of the weights kept by the forward pass.
    casts: f64,
    /// The largest parameter's new value during the update.
    transient: f64,
    micro_batch: usize,
}

impl MemoryPlan {
    /// The plan of a model with `params` parameters, `trainable` of them trained, `tracked` of
    /// them weights of matrix products that autodiff tracks and `largest` in its largest trained
    /// tensor, keeping `kept` per sample, under `setting`.
    pub fn new(
        params: u64,
        trainable: u64,
        tracked: u64,
        largest: u64,
        kept: Activations,
        setting: &Setting,
    ) -> Self {
        let (p, t) = (params as f64, trainable as f64);
        let shards = if setting.shard_optimizer { setting.world.max(1) as f64 } else { 1.0 };
        let of = if shards > 1.0 { format!(" (a {}th share)", shards as usize) } else { String::new() };
        let mut rows = vec![("weights (f32)".to_string(), 4.0 * p)];
        let mut state = 4.0 * p;
        let mut hold = |rows: &mut Vec<(String, f64)>, what: String, bytes: f64| {
            rows.push((what, bytes));
            state += bytes;
        };
        if setting.grad_accum > 1 {
            hold(&mut rows, "accumulated gradients".to_string(), 4.0 * t);
        }
        hold(&mut rows, format!("AdamW moments{of}"), 8.0 * t / shards);
        if setting.ema {
            hold(&mut rows, format!("EMA{of}"), 4.0 * t / shards);
        }
        let grads = 4.0 * t;
        rows.push(("gradients (f32)".to_string(), grads));
        let casts = match (setting.precision, setting.checkpointing) {
            (Precision::Bf16, Checkpointing::None) => 2.0 * tracked as f64,
            _ => 0.0,
        };
        if casts > 0.0 {
            rows.push(("bf16 weight casts kept for the backward pass".to_string(), casts));
        }
        let per_sample = kept.bytes(setting.precision, setting.checkpointing);
        let activations = per_sample * setting.micro_batch as f64;
        rows.push((format!("activations (micro-batch of {})", setting.micro_batch), activations));
        let transient = 4.0 * largest as f64;
        rows.push(("the largest tensor's new value in the update".to_string(), transient));
        let mut plan = Self {
            rows,
            total: 0.0,
            per_sample,
            state,
            grads,
            casts,
            transient,
            micro_batch: setting.micro_batch,
        };
        plan.total = plan.backward_peak().max(plan.update_peak());
        plan
    }

    /// The peak of the backward pass.
    pub fn backward_peak(&self) -> f64 {
        self.state + self.casts + (self.per_sample * self.micro_batch as f64).max(self.grads)
    }

    /// The peak of the update.
    pub fn update_peak(&self) -> f64 {
        self.state + self.grads + self.transient
    }

    /// The largest micro-batch whose plan fits `limit` bytes (0 when not even one sample fits).
    pub fn largest_micro_batch(&self, limit: f64) -> usize {
        let room = limit - self.state - self.casts;
        if self.update_peak() > limit || room < self.grads.min(self.per_sample) || self.per_sample <= 0.0 {
            0
        } else {
            (room / self.per_sample) as usize
        }
    }

    /// The plan as a table in GB (10⁹ bytes), with whether it fits `device` GB and, if not, the
    /// largest micro-batch that does.
    pub fn render(&self, device: Option<f64>) -> String {
        let gb = |b: f64| b / 1e9;
        let mut out = String::new();
        for (what, bytes) in &self.rows {
            out += &format!("  {what:<52} {:>9.2} GB\n", gb(*bytes));
        }
        out += &format!("  {:<52} {:>9.2} GB\n", "peak of the backward pass", gb(self.backward_peak()));
        out += &format!("  {:<52} {:>9.2} GB\n", "peak of the update", gb(self.update_peak()));
        out += &format!("  {:<52} {:>9.2} GB", "peak per device", gb(self.total));
        match device {
            Some(limit) if gb(self.total) <= limit => out += &format!(" (fits {limit} GB)\n"),
            Some(limit) => {
                out += &format!(
                    " (does not fit {limit} GB: {:.2} GB over; the largest micro-batch that fits is {})\n",
                    gb(self.total) - limit,
                    self.largest_micro_batch(limit * 1e9)
                )
            }
            None => out += "\n",
        }
        out
    }
}

/// Text tokens per sample the plan assumes: a VLA prompt (openpi's π0 pads prompts to 48), a VLM
/// question and answer (positions that also get logits).
pub const PLAN_TEXT_TOKENS: (usize, usize) = (48, 96);

/// The memory plan of `config` on each of `world` devices (see [`MemoryPlan`], [`Kept`] and
/// [`PLAN_TEXT_TOKENS`]). Builds the model lazily on `device`: no weight is allocated.
pub fn memory_plan<B: Backend>(config: &TrainConfig, world: usize, device: &B::Device) -> MemoryPlan {
    let vlm = config.stage.is_vlm();
    let r = &config.run;
    let setting = Setting {
        precision: config.memory.precision,
        checkpointing: config.memory.checkpointing,
        world,
        shard_optimizer: config.memory.shard_optimizer,
        grad_accum: r.grad_accum,
        micro_batch: r.batch_size / (r.grad_accum * world.max(1)),
        ema: config.ema.decay > 0.0,
    };
    let text = if vlm { PLAN_TEXT_TOKENS.1 } else { PLAN_TEXT_TOKENS.0 };
    model_plan::<B>(&planned_policy(config), vlm, &config.trainable, text, &setting, device)
}

/// The memory plan of training `policy` (its VLM alone with `vlm_only`, one camera, the LM head
/// over the `text` tokens) with `trainable` parts under `setting`, `text` text tokens per sample.
pub fn model_plan<B: Backend>(
    policy: &SpearPolicyConfig,
    vlm_only: bool,
    trainable: &TrainableSection,
    text: usize,
    setting: &Setting,
    device: &B::Device,
) -> MemoryPlan {
    let parts = model_counts::<B>(policy, vlm_only, trainable, device);
    let params: u64 = parts.iter().map(|p| p.params).sum();
    let trained: u64 = parts.iter().map(|p| p.trainable).sum();
    let (cameras, logits) = if vlm_only { (1, text) } else { (policy.cameras, 0) };
    let expert = (!vlm_only).then_some(&policy.expert);
    let kept = kept_per_sample(&policy.vlm, expert, policy.horizon, cameras, text, logits, trainable);
    // Weights of the products autodiff tracks: every tower gradients pass through (Gemma always,
    // the expert, the projectors, SigLIP when it trains); Gemma's table is a lookup in a policy.
    let part = |name: &str| parts.iter().find(|p| p.name.starts_with(name)).map_or(0, |p| p.params);
    let g = &policy.vlm.gemma;
    let table = (g.vocab_size * g.hidden_size) as u64;
    let tracked = part("Gemma")
        + part("projectors")
        + part("action expert")
        + if trainable.siglip { part("SigLIP") } else { 0 }
        - if vlm_only { 0 } else { table };
    // The largest trained tensor: Gemma's table when Gemma trains, else the 3D-token rows.
    let largest = if trainable.llm { table } else { (policy.vlm.num_3d_tokens * g.hidden_size) as u64 };
    MemoryPlan::new(params, trained, tracked, largest, kept, setting)
}
