//! SPEAR-1: SPEAR-VLM plus π0's flow-matching action expert, with rotations generated on S³
//! (paper §3.2, appendix A.2.2–A.2.3).
//!
//! The sequence is `[cameras…][prompt] | [state] | [H actions]`: three blocks, each attending to
//! itself and the blocks before it (appendix A.2.2). The VLM runs the first block, the action
//! expert the other two, and every layer attends over both stacks' keys and values
//! ([`crate::gemma::joint_forward`]). Because the prefix never sees the suffix, sampling encodes the
//! prefix once into a KV cache and runs only the expert for each of the N flow steps.
//!
//! **Time.** This module uses the paper's time: `τ = 0` is noise, `τ = 1` is data, the noisy chunk
//! is `A^τ = τ·A + (1 − τ)·ε`, sampling integrates `τ` from 0 to 1 in N Euler steps, and
//! [`SpearPolicy::velocity`] returns `dA^τ/dτ`. The network itself keeps π0's convention (time
//! input `t = 1 − τ`, output `dx/dt = −dA^τ/dτ`; see [`crate::expert`]), so π0 checkpoints load
//! and sample exactly as in openpi, lerobot and transformers.
//!
//! **Rotation modes.** [`RotationMode::Linear`] is plain flow matching in Rᵈ on every action
//! dimension: π0, and the paper's Table 11 baseline. [`RotationMode::S3`] is the paper's: the
//! action vector is `[x, y, z, qw, qx, qy, qz, gripper]`, the quaternion's noise is uniform on S³
//! (canonical, `w ≥ 0`), its noisy point is eq. 1, its target eq. 7, its loss the cosine (eq. 8)
//! plus geodesic (eq. 9) terms, and sampling steps it with eq. 5; translation and gripper stay
//! linear (eqs. 2, 4).

use burn::prelude::*;
use burn::tensor::{Bool, Distribution};
use rand::Rng;
use rand_distr::{Distribution as _, StandardNormal};
use serde::{Deserialize, Serialize};
use spear_geometry::flow::beta_distribution;
use spear_geometry::tensor as geo;
use spear_geometry::{quat, s3};

use crate::attention::TokenLayout;
use crate::error::ModelError;
use crate::expert::{ActionExpert, ActionExpertConfig};
use crate::gemma::{GemmaConfig, KvCache, Rope, Stream, joint_forward};
use crate::precision::Precision;
use crate::vlm::{SpearVlm, SpearVlmConfig, Trainable};

/// Where the quaternion sits in a SPEAR-1 action (and state) vector.
pub const ROTATION: std::ops::Range<usize> = 3..7;
/// Width of a SPEAR-1 action: translation (3), quaternion (4), gripper (1).
pub const SPEAR_ACTION_DIM: usize = 8;

/// How rotations are generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RotationMode {
    /// Flow matching in Rᵈ on every dimension (π0; the paper's ablation baseline). Quaternions in
    /// the action vector, if any, come out as plain 4-vectors: normalise them downstream.
    Linear,
    /// The paper's flow matching on S³ for the quaternion, linear for the rest.
    S3,
}

/// Flow-matching settings: sampling steps, the training time distribution and loss weights.
#[derive(Config, Debug, PartialEq)]
pub struct FlowConfig {
    /// Euler steps of the sampler (π0 and the paper: 10).
    #[config(default = 10)]
    pub num_steps: usize,
    /// Training time: π0 draws `t = scale·u + offset`, `u ~ Beta(alpha, beta)` in its own time
    /// (t = 1 noise), i.e. `τ = 1 − t`. Defaults are openpi's (`Beta(1.5, 1)`, 0.999, 0.001);
    /// the paper names a Beta distribution without its parameters.
    #[config(default = 1.5)]
    pub time_alpha: f64,
    /// See `time_alpha`.
    #[config(default = 1.0)]
    pub time_beta: f64,
    /// See `time_alpha`.
    #[config(default = 0.999)]
    pub time_scale: f64,
    /// See `time_alpha`.
    #[config(default = 0.001)]
    pub time_offset: f64,
    /// Weight of the translation MSE (S³ mode).
    #[config(default = 1.0)]
    pub translation_weight: f64,
    /// Weight of the rotation loss, cosine + geodesic (S³ mode).
    #[config(default = 1.0)]
    pub rotation_weight: f64,
    /// Weight of the gripper MSE (S³ mode).
    #[config(default = 1.0)]
    pub gripper_weight: f64,
}

/// SPEAR-1 (or π0) configuration.
#[derive(Config, Debug, PartialEq)]
pub struct SpearPolicyConfig {
    /// The VLM.
    pub vlm: SpearVlmConfig,
    /// The action expert.
    pub expert: ActionExpertConfig,
    /// Actions per chunk (SPEAR-1: 5 at 5 Hz; π0: 50).
    pub horizon: usize,
    /// Rotation generation.
    pub rotation: RotationMode,
    /// Cameras per observation: the main camera at `vlm.image_size`, then wrist cameras at
    /// `vlm.wrist_image_size` (SPEAR-1: 2; π0: 3).
    pub cameras: usize,
    /// Flow matching.
    #[config(default = "FlowConfig::new()")]
    pub flow: FlowConfig,
}

impl SpearPolicyConfig {
    /// The paper's SPEAR-1: SPEAR-VLM, the Gemma-300M expert, chunks of 5 actions
    /// `[x, y, z, qw, qx, qy, qz, gripper]`, S³ rotations, main (280×210) and wrist (112×112)
    /// cameras, state `[EE position, EE quaternion, gripper]`.
    pub fn spear1() -> Self {
        let expert = ActionExpertConfig::new(ActionExpertConfig::gemma_300m(), SPEAR_ACTION_DIM, 8);
        Self::new(SpearVlmConfig::spear_vlm(), expert, 5, RotationMode::S3, 2)
    }

    /// π0 as openpi ships it: PaliGemma 3B (224×224, vocabulary 257152), the Gemma-300M expert,
    /// 50 actions of 32 (zero-padded) dimensions, state padded to 32, linear flow, 3 cameras.
    pub fn pi0() -> Self {
        let mut vlm = SpearVlmConfig::paligemma_3b().with_wrist_image_size([224, 224]);
        vlm.gemma.vocab_size = 257152;
        let expert = ActionExpertConfig::new(ActionExpertConfig::gemma_300m(), 32, 32);
        Self::new(vlm, expert, 50, RotationMode::Linear, 3)
    }

    /// A tiny SPEAR-1 with the paper's topology ([`SpearVlmConfig::tiny`], 2 expert layers of
    /// width 64): for the demo, tests and benchmarks.
    pub fn tiny() -> Self {
        let vlm = SpearVlmConfig::tiny();
        let expert = GemmaConfig::new()
            .with_hidden_size(64)
            .with_intermediate_size(128)
            .with_num_layers(vlm.gemma.num_layers)
            .with_num_heads(vlm.gemma.num_heads)
            .with_head_dim(vlm.gemma.head_dim);
        Self::new(vlm, ActionExpertConfig::new(expert, SPEAR_ACTION_DIM, 8), 5, RotationMode::S3, 2)
    }

    /// Checks that the parts fit together: the expert must match the VLM's depth and head
    /// geometry (layer `l` of each attends over the other's keys), S³ mode needs SPEAR's 8-wide
    /// action layout, and sizes must be positive.
    pub fn validate(&self) -> Result<(), ModelError> {
        let (v, e) = (&self.vlm.gemma, &self.expert.gemma);
        let pairs = [
            ("num_layers", v.num_layers, e.num_layers),
            ("num_heads", v.num_heads, e.num_heads),
            ("num_kv_heads", v.num_kv_heads, e.num_kv_heads),
            ("head_dim", v.head_dim, e.head_dim),
        ];
        for (field, vlm, expert) in pairs {
            if vlm != expert {
                return Err(ModelError::Input(format!(
                    "policy config: the action expert's {field} ({expert}) must equal the VLM's ({vlm})"
                )));
            }
        }
        if self.rotation == RotationMode::S3 && self.expert.action_dim != SPEAR_ACTION_DIM {
            return Err(ModelError::Input(format!(
                "policy config: S³ rotations need the action layout [x, y, z, qw, qx, qy, qz, gripper] \
                 (action_dim 8), got action_dim {}",
                self.expert.action_dim
            )));
        }
        for (field, value) in [
            ("horizon", self.horizon),
            ("cameras", self.cameras),
            ("flow.num_steps", self.flow.num_steps),
            ("expert.action_dim", self.expert.action_dim),
            ("expert.state_dim", self.expert.state_dim),
        ] {
            if value == 0 {
                return Err(ModelError::Input(format!("policy config: {field} must be positive")));
            }
        }
        beta_distribution(self.flow.time_alpha, self.flow.time_beta)
            .map_err(|e| ModelError::Input(format!("policy config: flow time distribution: {e}")))?;
        Ok(())
    }

    /// Builds the policy with random weights (lazily allocated), after [`Self::validate`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<SpearPolicy<B>, ModelError> {
        self.validate()?;
        Ok(SpearPolicy { vlm: self.vlm.init(device), expert: self.expert.init(device), config: self.clone() })
    }
}

/// One batch of observations.
#[derive(Debug, Clone)]
pub struct Observation<B: Backend> {
    /// Per camera, `[B, 3, H, W]` RGB in [0, 1]: the main camera first, then the wrist cameras.
    pub cameras: Vec<Tensor<B, 4>>,
    /// Per camera, per sample: whether that camera is present. Absent cameras' tokens are masked
    /// out (openpi's `image_masks`); `None` means all present.
    pub camera_present: Option<Vec<Vec<bool>>>,
    /// Per sample, the prompt's token ids (`[BOS] prompt "\n"`), unpadded; rows may differ in
    /// length.
    pub prompts: Vec<Vec<u32>>,
    /// Proprioceptive state `[B, state_dim]`.
    pub state: Tensor<B, 2>,
}

/// Draws for one training step: noise, flow times and the geodesic loss's integration steps.
#[derive(Debug, Clone)]
pub struct FlowDraws<B: Backend> {
    /// `[B, H, action_dim]`: Gaussian, with canonical uniform quaternions in S³ mode.
    pub noise: Tensor<B, 3>,
    /// Paper time per sample (0 = noise).
    pub tau: Vec<f64>,
    /// `δ ~ U(0.01, 1 − τ)` per sample, `[B, 1, 1]` (used in S³ mode).
    pub delta: Tensor<B, 3>,
}

/// The training loss and its parts.
#[derive(Debug, Clone)]
pub struct PolicyLoss<B: Backend> {
    /// The weighted mean over valid chunk steps, `[1]`.
    pub total: Tensor<B, 1>,
    /// Per step `[B, H]`, before masking: linear mode — the mean squared velocity error over the
    /// action dimensions (π0's loss); S³ mode — the weighted sum of eq. 2 (translation, gripper)
    /// and eq. 10's summand (cosine + geodesic).
    pub per_step: Tensor<B, 2>,
    /// Squared velocity errors `[B, H, action_dim]` of the linearly flowed dimensions (zero on the
    /// quaternion in S³ mode).
    pub squared_error: Tensor<B, 3>,
    /// S³ mode: eq. 8 per step `[B, H]`.
    pub cosine: Option<Tensor<B, 2>>,
    /// S³ mode: eq. 9 per step `[B, H]`.
    pub geodesic: Option<Tensor<B, 2>>,
}

/// An observation encoded for sampling: the prefix's KV cache, the state, and the suffix's
/// attention mask and rotary tables (the same at every flow step).
#[derive(Debug, Clone)]
pub struct EncodedObservation<B: Backend> {
    cache: KvCache<B>,
    batch: usize,
    state: Tensor<B, 2>,
    suffix_mask: Tensor<B, 3, Bool>,
    suffix_rope: Rope<B>,
}

/// SPEAR-1 (or π0): the VLM and the action expert.
#[derive(Module, Debug)]
pub struct SpearPolicy<B: Backend> {
    /// The vision-language model (prefix).
    pub vlm: SpearVlm<B>,
    /// The action expert (suffix).
    pub expert: ActionExpert<B>,
    #[module(skip)]
    config: SpearPolicyConfig,
}

impl<B: Backend> SpearPolicy<B> {
    /// The configuration the policy was built with.
    pub fn config(&self) -> &SpearPolicyConfig {
        &self.config
    }

    /// Actions per chunk.
    pub fn horizon(&self) -> usize {
        self.config.horizon
    }

    /// Width of one action vector.
    pub fn action_dim(&self) -> usize {
        self.config.expert.action_dim
    }

    /// The same policy expecting `cameras` camera images per observation (π0 checkpoints do not
    /// record how many they were trained with).
    pub fn with_cameras(mut self, cameras: usize) -> Self {
        self.config.cameras = cameras;
        self
    }

    /// The same network with another rotation mode (e.g. a π0 checkpoint fine-tuned in S³ mode);
    /// fails if the action layout does not allow it.
    pub fn with_rotation(mut self, rotation: RotationMode) -> Result<Self, ModelError> {
        let config = SpearPolicyConfig { rotation, ..self.config.clone() };
        config.validate()?;
        self.config = config;
        Ok(self)
    }

    /// Sets the arithmetic of every matrix product of the VLM and the expert ([`Precision`]);
    /// the flow's geometry, its time embedding, norms and losses stay f32 either way.
    pub fn set_precision(&mut self, precision: Precision) {
        self.vlm.set_precision(precision);
        self.expert.set_precision(precision);
    }

    /// The same policy computing at `precision` ([`Self::set_precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.set_precision(precision);
        self
    }

    /// The arithmetic of the matrix products.
    pub fn precision(&self) -> Precision {
        self.vlm.precision()
    }

    /// Freezes the VLM parts not marked trainable (the paper's VLA stage: [`Trainable::VLA`]) and
    /// the expert unless `expert`.
    pub fn with_trainable(mut self, vlm: Trainable, expert: bool) -> Self {
        self.vlm = self.vlm.with_trainable(vlm);
        if !expert {
            self.expert = self.expert.no_grad();
        }
        self
    }

    /// Checks an observation against the configuration; returns the batch size.
    pub fn check(&self, obs: &Observation<B>) -> Result<usize, ModelError> {
        let bad = |m: String| Err(ModelError::Input(m));
        let cameras = self.config.cameras;
        if obs.cameras.len() != cameras {
            let wrist = if cameras > obs.cameras.len() { " (is the wrist camera missing?)" } else { "" };
            return bad(format!(
                "observation: expected {cameras} camera images (main, then wrist), got {}{wrist}; \
                 pass a black image and mark it absent when a camera is unavailable",
                obs.cameras.len()
            ));
        }
        let batch = obs.prompts.len();
        if batch == 0 {
            return bad("observation: empty batch (no prompts)".into());
        }
        for (c, image) in obs.cameras.iter().enumerate() {
            let want = if c == 0 { self.vlm.image_size() } else { self.vlm.wrist_image_size() };
            let [b, channels, h, w] = image.dims();
            if b != batch || channels != 3 || [h, w] != want {
                return bad(format!(
                    "observation: {} must be [{batch}, 3, {}, {}] (batch, RGB, height, width), got \
                     [{b}, {channels}, {h}, {w}]",
                    camera_name(c),
                    want[0],
                    want[1]
                ));
            }
        }
        if let Some(present) = &obs.camera_present
            && (present.len() != cameras || present.iter().any(|p| p.len() != batch))
        {
            return bad(format!("observation: camera_present must be {cameras} rows of {batch} flags"));
        }
        let vocab = self.vlm.vocab();
        for (b, prompt) in obs.prompts.iter().enumerate() {
            if prompt.is_empty() {
                return bad(format!("observation: prompt {b} is empty (expected at least BOS)"));
            }
            if let Some(id) = prompt.iter().find(|&&id| id as usize >= vocab) {
                return bad(format!(
                    "observation: prompt {b} has token id {id} outside the vocabulary ({vocab})"
                ));
            }
        }
        let state_dim = self.config.expert.state_dim;
        if obs.state.dims() != [batch, state_dim] {
            return bad(format!(
                "observation: state must be [{batch}, {state_dim}], got {:?}",
                obs.state.dims()
            ));
        }
        // One read-back for every NaN check.
        let mut flags: Vec<Tensor<B, 1, Bool>> =
            obs.cameras.iter().map(|c| c.clone().is_nan().any()).collect();
        flags.push(obs.state.clone().is_nan().any());
        let flags = Tensor::cat(flags, 0).int().into_data().convert::<i64>();
        if let Some(index) = flags.iter::<i64>().position(|f| f != 0) {
            let what = if index == cameras { "state".to_string() } else { camera_name(index) };
            return bad(format!("observation: {what} contains NaN"));
        }
        Ok(batch)
    }

    /// The prefix embeddings `[B, P, width]` (cameras, then right-padded prompts) and their layout.
    fn prefix(&self, obs: &Observation<B>) -> Result<(Tensor<B, 3>, TokenLayout), ModelError> {
        self.check(obs)?;
        let mut embeds = obs
            .cameras
            .iter()
            .map(|image| self.vlm.embed_image(image.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let counts: Vec<usize> = embeds.iter().map(|t| t.dims()[1]).collect();
        let (ids, layout) = self.prompt_layout(obs, &counts);
        embeds.push(self.vlm.embed_tokens(ids));
        Ok((Tensor::cat(embeds, 1), layout))
    }

    /// The right-padded prompt ids `[B, longest]` of a checked observation whose cameras give
    /// `image_tokens` tokens each, and the prefix's layout (absent cameras' tokens and padding
    /// invalid).
    pub(crate) fn prompt_layout(
        &self,
        obs: &Observation<B>,
        image_tokens: &[usize],
    ) -> (Tensor<B, 2, Int>, TokenLayout) {
        let batch = obs.prompts.len();
        let mut valid = vec![Vec::new(); batch];
        for (c, &count) in image_tokens.iter().enumerate() {
            for (b, row) in valid.iter_mut().enumerate() {
                let present = obs.camera_present.as_ref().is_none_or(|p| p[c][b]);
                row.extend(std::iter::repeat_n(present, count));
            }
        }
        let (ids, longest) = crate::vlm::right_padded(obs.prompts.iter().map(Vec::as_slice));
        for (row, prompt) in valid.iter_mut().zip(&obs.prompts) {
            row.extend((0..longest).map(|i| i < prompt.len()));
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, longest]), &obs.state.device());
        let ar: Vec<Vec<bool>> = valid.iter().map(|row| vec![false; row.len()]).collect();
        (ids, TokenLayout::new(valid, &ar))
    }

    /// The positions of the prefix's and the suffix's tokens and the joint mask, for a prefix of
    /// `layout`.
    pub(crate) fn joint_layout(&self, layout: TokenLayout, device: &B::Device) -> JointLayout<B> {
        let prefix_len = layout.len();
        let layout = self.with_suffix(layout);
        let positions = layout.positions(layout.len());
        let (prefix, suffix) =
            positions.iter().map(|row| (row[..prefix_len].to_vec(), row[prefix_len..].to_vec())).unzip();
        JointLayout { prefix, suffix, mask: layout.mask(layout.len(), device) }
    }

    /// `layout` followed by the suffix: the state token (a new block) and the action tokens
    /// (another block).
    fn with_suffix(&self, mut layout: TokenLayout) -> TokenLayout {
        layout.extend(1, true, true);
        layout.extend(1, true, true);
        layout.extend(self.config.horizon - 1, true, false);
        layout
    }

    /// The expert's suffix tokens for noisy actions at paper times `tau`.
    fn suffix(&self, state: Tensor<B, 2>, actions: Tensor<B, 3>, tau: &[f64]) -> Tensor<B, 3> {
        let t: Vec<f64> = tau.iter().map(|tau| 1.0 - tau).collect();
        let time = self.expert.time_embedding(&t, &actions.device());
        self.expert.embed_suffix(state, actions, time)
    }

    fn check_actions(&self, what: &str, actions: &Tensor<B, 3>, batch: usize) -> Result<(), ModelError> {
        let want = [batch, self.config.horizon, self.action_dim()];
        if actions.dims() != want {
            return Err(ModelError::Input(format!("{what} must be {want:?}, got {:?}", actions.dims())));
        }
        if actions.clone().is_nan().any().int().into_scalar().elem::<i64>() != 0 {
            return Err(ModelError::Input(format!("{what} contains NaN")));
        }
        Ok(())
    }

    fn check_tau(tau: &[f64], batch: usize) -> Result<(), ModelError> {
        if tau.len() != batch || tau.iter().any(|t| !t.is_finite()) {
            return Err(ModelError::Input(format!(
                "flow times: expected {batch} finite values, got {tau:?}"
            )));
        }
        Ok(())
    }

    /// The flow's velocity `dA^τ/dτ` `[B, H, action_dim]` at the noisy chunk `actions` and paper
    /// times `tau` (one per sample), by one joint pass of the VLM and the expert: the training
    /// forward, through which gradients reach the VLM.
    pub fn velocity(
        &self,
        obs: &Observation<B>,
        actions: Tensor<B, 3>,
        tau: &[f64],
    ) -> Result<Tensor<B, 3>, ModelError> {
        let (prefix, layout) = self.prefix(obs)?;
        let batch = layout.batch();
        self.check_actions("noisy actions", &actions, batch)?;
        Self::check_tau(tau, batch)?;
        let device = prefix.device();
        let joint = self.joint_layout(layout, &device);
        let streams = vec![
            Stream {
                layers: &self.vlm.gemma.layers,
                hidden: prefix,
                rope: self.vlm.gemma.rope(&joint.prefix, &device),
            },
            Stream {
                layers: &self.expert.layers,
                hidden: self.suffix(obs.state.clone(), actions, tau),
                rope: self.vlm.gemma.rope(&joint.suffix, &device),
            },
        ];
        let mut outputs = joint_forward(streams, joint.mask, None);
        Ok(-self.expert.velocity(outputs.remove(1)))
    }

    /// Runs the VLM over the observation's prefix once, keeping its keys and values for
    /// [`Self::velocity_cached`].
    pub fn encode(&self, obs: &Observation<B>) -> Result<EncodedObservation<B>, ModelError> {
        let (prefix, layout) = self.prefix(obs)?;
        let device = prefix.device();
        let mut cache = self.vlm.gemma.new_cache();
        self.vlm.gemma.forward_embeds(prefix, &layout, Some(&mut cache));
        let batch = layout.batch();
        let layout = self.with_suffix(layout);
        let queries = self.config.horizon + 1;
        Ok(EncodedObservation {
            cache,
            batch,
            state: obs.state.clone(),
            suffix_mask: layout.mask(queries, &device),
            suffix_rope: self.vlm.gemma.rope(&layout.positions(queries), &device),
        })
    }

    /// The flow's velocity `dA^τ/dτ` for an encoded observation: the expert alone, attending over
    /// the cached prefix. Equal to [`Self::velocity`] (the prefix never attends to the suffix).
    pub fn velocity_cached(
        &self,
        encoded: &EncodedObservation<B>,
        actions: Tensor<B, 3>,
        tau: &[f64],
    ) -> Tensor<B, 3> {
        let stream = Stream {
            layers: &self.expert.layers,
            hidden: self.suffix(encoded.state.clone(), actions, tau),
            rope: encoded.suffix_rope.clone(),
        };
        // The suffix's keys go into a copy of the cache (tensors are shared, not copied) so that
        // every step sees the prefix alone.
        let mut cache = encoded.cache.clone();
        let mut outputs = joint_forward(vec![stream], encoded.suffix_mask.clone(), Some(&mut cache));
        -self.expert.velocity(outputs.remove(0))
    }

    /// Noise to start sampling from, or to train with: `[batch, H, action_dim]` standard Gaussian,
    /// with canonical uniform quaternions (`w ≥ 0`) in S³ mode. Reproducible through `B::seed`.
    pub fn noise(&self, batch: usize, device: &B::Device) -> Tensor<B, 3> {
        let (horizon, dim) = (self.config.horizon, self.action_dim());
        let gaussian = Tensor::random([batch, horizon, dim], Distribution::Normal(0.0, 1.0), device);
        match self.config.rotation {
            RotationMode::Linear => gaussian,
            RotationMode::S3 => {
                let q = geo::canonicalize(geo::sample_uniform::<B>(batch * horizon, device));
                with_rotation(gaussian, q.reshape([batch, horizon, 4]))
            }
        }
    }

    /// One Euler step of size `delta` along the velocity `v`: `x + δ·v` (eq. 4), and eq. 5 on the
    /// quaternion in S³ mode.
    fn step(&self, x: Tensor<B, 3>, v: Tensor<B, 3>, delta: f64) -> Tensor<B, 3> {
        match self.config.rotation {
            RotationMode::Linear => x + v * delta,
            RotationMode::S3 => {
                let q = geo::euler_step_s3(rotation(x.clone()), rotation(v.clone()), scalar_like(&x, delta));
                with_rotation(x + v * delta, q)
            }
        }
    }

    /// Samples an action chunk `[B, H, action_dim]` from `noise` (e.g. [`Self::noise`]): the prefix
    /// is encoded once, then N Euler steps from `τ = 0` to 1 run the expert alone. In S³ mode the
    /// quaternions come out unit and canonical (`w ≥ 0`).
    pub fn sample(&self, obs: &Observation<B>, noise: Tensor<B, 3>) -> Result<Tensor<B, 3>, ModelError> {
        let encoded = self.encode(obs)?;
        self.check_actions("noise", &noise, encoded.batch)?;
        Ok(self.sample_encoded(&encoded, noise))
    }

    /// [`Self::sample`] for an already encoded observation.
    pub fn sample_encoded(&self, encoded: &EncodedObservation<B>, noise: Tensor<B, 3>) -> Tensor<B, 3> {
        let batch = encoded.batch;
        let steps = self.config.flow.num_steps;
        let delta = 1.0 / steps as f64;
        let mut x = noise;
        for k in 0..steps {
            // π0 evaluates at t = 1 + k·(−1/N) (the same f32 values as τ = k/N would give).
            let tau = 1.0 - (1.0 + k as f64 * -delta);
            let v = self.velocity_cached(encoded, x.clone(), &vec![tau; batch]);
            x = self.step(x, v, delta);
        }
        match self.config.rotation {
            RotationMode::Linear => x,
            RotationMode::S3 => {
                let q = geo::canonicalize(rotation(x.clone()));
                with_rotation(x, q)
            }
        }
    }

    /// Draws the noise, flow times (π0's Beta distribution, see [`FlowConfig`]) and geodesic
    /// integration steps of a training batch, all from `rng` on the host (in that order), then
    /// uploads them: the draws are a function of `rng` alone, not of the backend's generator, so
    /// a micro-batch seeded from its index gets the same draws on any device, thread or rank.
    pub fn draw<R: Rng + ?Sized>(&self, batch: usize, rng: &mut R, device: &B::Device) -> FlowDraws<B> {
        let flow = &self.config.flow;
        let beta = beta_distribution(flow.time_alpha, flow.time_beta).expect("validated with the config");
        let tau: Vec<f64> = (0..batch)
            .map(|_| {
                let t = beta.sample(rng) * flow.time_scale + flow.time_offset;
                1.0 - t
            })
            .collect();
        let (horizon, dim) = (self.config.horizon, self.action_dim());
        let mut noise: Vec<f32> = (0..batch * horizon * dim).map(|_| rng.sample(StandardNormal)).collect();
        if self.config.rotation == RotationMode::S3 {
            for action in noise.chunks_mut(dim) {
                let q = quat::canonicalize(&quat::sample_uniform(rng));
                for (slot, v) in action[ROTATION].iter_mut().zip([q.w, q.i, q.j, q.k]) {
                    *slot = v as f32;
                }
            }
        }
        let delta: Vec<f64> = tau.iter().map(|&t| s3::sample_delta(rng, t)).collect();
        FlowDraws {
            noise: Tensor::from_data(TensorData::new(noise, [batch, horizon, dim]), device),
            delta: per_sample(&delta, device),
            tau,
        }
    }

    /// The training loss of a batch with target chunks `actions` `[B, H, action_dim]` (quaternions
    /// unit and canonical in S³ mode) and `valid` `[B, H]` (false for steps past an episode's end;
    /// `None`: all valid).
    pub fn loss(
        &self,
        obs: &Observation<B>,
        actions: Tensor<B, 3>,
        valid: Option<Tensor<B, 2, Bool>>,
        draws: &FlowDraws<B>,
    ) -> Result<PolicyLoss<B>, ModelError> {
        let noisy = self.noisy_actions(obs, &actions, draws)?;
        let v = self.velocity(obs, noisy, &draws.tau)?;
        Ok(self.loss_of_velocity(v, actions, valid, draws))
    }

    /// The noisy chunk `A^τ` of a training batch (eq. 1 on the quaternion in S³ mode), the
    /// targets and draws checked.
    pub(crate) fn noisy_actions(
        &self,
        obs: &Observation<B>,
        actions: &Tensor<B, 3>,
        draws: &FlowDraws<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let batch = obs.prompts.len();
        self.check_actions("target actions", actions, batch)?;
        self.check_actions("noise", &draws.noise, batch)?;
        Self::check_tau(&draws.tau, batch)?;
        let tau = per_sample(&draws.tau, &actions.device());
        let noise = draws.noise.clone();
        let noisy = geo::linear_interpolate(noise.clone(), actions.clone(), tau.clone());
        Ok(match self.config.rotation {
            RotationMode::Linear => noisy,
            RotationMode::S3 => {
                with_rotation(noisy, geo::interpolate(rotation(noise), rotation(actions.clone()), tau))
            }
        })
    }

    /// The loss of the predicted velocity `v` ([`Self::loss`] after the forward pass).
    pub(crate) fn loss_of_velocity(
        &self,
        v: Tensor<B, 3>,
        actions: Tensor<B, 3>,
        valid: Option<Tensor<B, 2, Bool>>,
        draws: &FlowDraws<B>,
    ) -> PolicyLoss<B> {
        let device = actions.device();
        let tau = per_sample(&draws.tau, &device);
        let noise = draws.noise.clone();
        let squared =
            (v.clone() - geo::linear_target_velocity(noise.clone(), actions.clone())).powi_scalar(2);
        let flow = &self.config.flow;
        let (per_step, squared_error, cosine, geodesic) = match self.config.rotation {
            RotationMode::Linear => (squared.clone().mean_dim(2).squeeze_dim(2), squared, None, None),
            RotationMode::S3 => {
                let [b, h, _] = squared.dims();
                let squared = with_rotation(squared, Tensor::zeros([b, h, 4], &device));
                let (eps, data, vq) = (rotation(noise), rotation(actions), rotation(v));
                let noisy_q = geo::interpolate(eps.clone(), data.clone(), tau.clone());
                let target = geo::interpolate(eps.clone(), data.clone(), tau.clone() + draws.delta.clone());
                let cosine =
                    geo::cosine_loss(vq.clone(), geo::target_velocity(eps, data, tau)).squeeze_dim(2);
                let geodesic = geo::geodesic_loss(target, geo::integrate(noisy_q, vq, draws.delta.clone()))
                    .squeeze_dim(2);
                let translation = squared.clone().narrow(2, 0, 3).sum_dim(2).squeeze_dim(2);
                let gripper = squared.clone().narrow(2, 7, 1).squeeze_dim(2);
                let per_step = translation * flow.translation_weight
                    + (cosine.clone() + geodesic.clone()) * flow.rotation_weight
                    + gripper * flow.gripper_weight;
                (per_step, squared, Some(cosine), Some(geodesic))
            }
        };
        let total = match valid {
            None => per_step.clone().mean(),
            Some(valid) => {
                let weights = valid.float();
                (per_step.clone() * weights.clone()).sum() / weights.sum().clamp_min(1.0)
            }
        };
        PolicyLoss { total, per_step, squared_error, cosine, geodesic }
    }
}

/// Where the prefix's and the suffix's tokens sit in a joint pass ([`SpearPolicy::joint_layout`]).
pub(crate) struct JointLayout<B: Backend> {
    /// Positions of the prefix tokens, per sample.
    pub prefix: Vec<Vec<i64>>,
    /// Positions of the suffix tokens, per sample.
    pub suffix: Vec<Vec<i64>>,
    /// `[B, P + S, P + S]`.
    pub mask: Tensor<B, 3, Bool>,
}

/// A camera as errors name it: `camera 0 (main)`, `camera 1 (wrist 1)`.
fn camera_name(index: usize) -> String {
    if index == 0 { "camera 0 (main)".into() } else { format!("camera {index} (wrist {index})") }
}

/// The quaternion part `[B, H, 4]` of actions in SPEAR's layout.
fn rotation<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    x.narrow(2, ROTATION.start, ROTATION.len())
}

/// `x` with its quaternion part replaced by `q`.
fn with_rotation<B: Backend>(x: Tensor<B, 3>, q: Tensor<B, 3>) -> Tensor<B, 3> {
    let dim = x.dims()[2];
    let head = x.clone().narrow(2, 0, ROTATION.start);
    let tail = x.narrow(2, ROTATION.end, dim - ROTATION.end);
    Tensor::cat(vec![head, q, tail], 2)
}

/// Per-sample values as `[B, 1, 1]` (broadcasting over a chunk).
fn per_sample<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 3> {
    let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, [values.len(), 1, 1]), device)
}

/// A `[B, 1, 1]` tensor of `value` for `x` `[B, …]`.
fn scalar_like<B: Backend>(x: &Tensor<B, 3>, value: f64) -> Tensor<B, 3> {
    Tensor::full([x.dims()[0], 1, 1], value, &x.device())
}
