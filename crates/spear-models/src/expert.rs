//! π0's action expert: a Gemma-style stack (Gemma 300M in π0 and SPEAR-1) that reads the robot
//! state and a noisy action chunk, attends jointly over the VLM's keys and values layer by layer,
//! and predicts the flow's velocity.
//!
//! The suffix it processes is `[state token][H action tokens]`:
//! - state token: `state_proj(state)`;
//! - action token `k`: `action_time_mlp_out(swish(action_time_mlp_in([action_in_proj(x_k), φ(t)])))`,
//!   with `φ` the sinusoidal embedding of the flow time (sin half first, periods 4e-3 … 4);
//! - output: the final RMSNorm, the state token dropped, `action_out_proj` per action token.
//!
//! Field names follow openpi's PyTorch `PI0Pytorch` (`action_in_proj`, `state_proj`,
//! `action_time_mlp_in/out`, `action_out_proj`); the layers follow transformers' `GemmaModel`.
//!
//! **Time convention.** The network speaks π0's: its time input is `t = 1` for pure noise and its
//! output is `dx/dt` (the data-to-noise direction). [`crate::policy`] works in the paper's time
//! `τ = 1 − t` and converts at this boundary, so π0 checkpoints run unchanged.

use std::f64::consts::TAU;

use burn::prelude::*;
use burn::tensor::activation::silu;

use crate::gemma::{GemmaConfig, GemmaLayer, GemmaRmsNorm};
use crate::precision::{Linear, Precision, set_all};

/// Action-expert configuration.
#[derive(Config, Debug, PartialEq)]
pub struct ActionExpertConfig {
    /// The transformer (its `vocab_size` is unused: the expert has no token embedding). Depth and
    /// head geometry must equal the VLM's, since layer `l` attends over the VLM's layer-`l` keys.
    pub gemma: GemmaConfig,
    /// Width of one action vector as the network sees it (π0: 32, zero-padded; SPEAR-1: 8).
    pub action_dim: usize,
    /// Width of the state vector (π0: 32, zero-padded; SPEAR-1: 8).
    pub state_dim: usize,
    /// Shortest period of the time sinusoid.
    #[config(default = 4e-3)]
    pub min_period: f64,
    /// Longest period of the time sinusoid.
    #[config(default = 4.0)]
    pub max_period: f64,
}

impl ActionExpertConfig {
    /// π0's and SPEAR-1's expert ("gemma_300m"): width 1024, 18 layers, MLP 4096, 8 query heads,
    /// 1 key/value head of 256.
    pub fn gemma_300m() -> GemmaConfig {
        GemmaConfig::new().with_hidden_size(1024).with_intermediate_size(4096)
    }

    /// Builds the expert with random weights (lazily allocated).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ActionExpert<B> {
        let width = self.gemma.hidden_size;
        let linear = |i, o| Linear::new(i, o, true, device);
        ActionExpert {
            layers: self.gemma.init_layers(device),
            norm: GemmaRmsNorm::new(width, self.gemma.rms_norm_eps, device),
            state_proj: linear(self.state_dim, width),
            action_in_proj: linear(self.action_dim, width),
            action_time_mlp_in: linear(2 * width, width),
            action_time_mlp_out: linear(width, width),
            action_out_proj: linear(width, self.action_dim),
            min_period: self.min_period,
            max_period: self.max_period,
        }
    }
}

/// The action expert's weights.
#[derive(Module, Debug)]
pub struct ActionExpert<B: Backend> {
    /// Gemma-style layers, run jointly with the VLM's.
    pub layers: Vec<GemmaLayer<B>>,
    /// Final RMSNorm.
    pub norm: GemmaRmsNorm<B>,
    /// State → one token.
    pub state_proj: Linear<B>,
    /// Noisy action → width.
    pub action_in_proj: Linear<B>,
    /// `[action, time]` → width.
    pub action_time_mlp_in: Linear<B>,
    /// Second layer of the action-time MLP.
    pub action_time_mlp_out: Linear<B>,
    /// Width → velocity.
    pub action_out_proj: Linear<B>,
    #[module(skip)]
    min_period: f64,
    #[module(skip)]
    max_period: f64,
}

impl<B: Backend> ActionExpert<B> {
    /// Sets the arithmetic of every product of the expert ([`Precision`]).
    pub fn set_precision(&mut self, precision: Precision) {
        self.layers.iter_mut().for_each(|l| l.set_precision(precision));
        let projections = [
            &mut self.state_proj,
            &mut self.action_in_proj,
            &mut self.action_time_mlp_in,
            &mut self.action_time_mlp_out,
            &mut self.action_out_proj,
        ];
        set_all(precision, projections);
    }

    /// Residual width.
    pub fn width(&self) -> usize {
        self.action_time_mlp_out.weight.lazy_shape()[0]
    }

    /// Width of the action vectors.
    pub fn action_dim(&self) -> usize {
        self.action_in_proj.weight.lazy_shape()[0]
    }

    /// Width of the state vector.
    pub fn state_dim(&self) -> usize {
        self.state_proj.weight.lazy_shape()[0]
    }

    /// The sinusoidal embedding `[sin(2πt/p), cos(2πt/p)]` of network times `t` (1 = noise),
    /// periods `p` log-spaced from `min_period` to `max_period`: `[B, width]`.
    ///
    /// Computed on the host in f64 from `t` rounded to f32, then rounded to f32 — as openpi's
    /// PyTorch port and lerobot compute it. (transformers and openpi's JAX code use f32 throughout,
    /// which moves the top-frequency features by ~1e-4.)
    pub fn time_embedding(&self, t: &[f64], device: &B::Device) -> Tensor<B, 2> {
        let half = self.width() / 2;
        let ratio = self.max_period / self.min_period;
        let frequencies: Vec<f64> = (0..half)
            .map(|i| {
                let fraction = if half > 1 { i as f64 / (half - 1) as f64 } else { 0.0 };
                TAU / (self.min_period * ratio.powf(fraction))
            })
            .collect();
        let mut values = Vec::with_capacity(t.len() * 2 * half);
        for &time in t {
            let time = f64::from(time as f32);
            values.extend(frequencies.iter().map(|f| (time * f).sin() as f32));
            values.extend(frequencies.iter().map(|f| (time * f).cos() as f32));
        }
        Tensor::from_data(TensorData::new(values, [t.len(), 2 * half]), device)
    }

    /// The suffix tokens `[B, 1 + H, width]`: the state token, then one token per noisy action
    /// (`noisy` `[B, H, action_dim]`) fused with the time embedding (`time` `[B, width]`).
    pub fn embed_suffix(&self, state: Tensor<B, 2>, noisy: Tensor<B, 3>, time: Tensor<B, 2>) -> Tensor<B, 3> {
        let [_, horizon, _] = noisy.dims();
        let actions = self.action_in_proj.forward(noisy);
        let time = time.unsqueeze_dim::<3>(1).repeat_dim(1, horizon);
        let fused = self
            .action_time_mlp_out
            .forward(silu(self.action_time_mlp_in.forward(Tensor::cat(vec![actions, time], 2))));
        Tensor::cat(vec![self.state_proj.forward(state).unsqueeze_dim(1), fused], 1)
    }

    /// The network's velocity `[B, H, action_dim]` (π0 time: `dx/dt`) from the expert's suffix
    /// outputs before the final norm.
    pub fn velocity(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [_, tokens, _] = hidden.dims();
        let actions = self.norm.forward(hidden).narrow(1, 1, tokens - 1);
        self.action_out_proj.forward(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    #[test]
    fn time_embedding_spans_the_periods_sin_first() {
        let config = ActionExpertConfig::new(GemmaConfig::new().with_hidden_size(8), 2, 2);
        let expert = config.init::<B>(&Default::default());
        let emb: Vec<f32> = expert.time_embedding(&[0.5], &Default::default()).into_data().to_vec().unwrap();
        // Periods 4e-3, 4e-2, 4e-1, 4 (log-spaced), sin then cos.
        for (i, period) in [4e-3f64, 4e-2, 4e-1, 4.0].iter().enumerate() {
            let arg = 0.5 * TAU / period;
            assert!((f64::from(emb[i]) - arg.sin()).abs() < 1e-6, "sin {i}");
            assert!((f64::from(emb[4 + i]) - arg.cos()).abs() < 1e-6, "cos {i}");
        }
    }
}
