//! Non-overlapping patch embedding (a stride-`p` convolution with a `p × p` kernel), computed as
//! a reshape and one matmul, with the convolution's `[out, in, p, p]` weight layout so checkpoints
//! load unchanged.

use burn::module::{Initializer, Param};
use burn::prelude::*;

use crate::precision::Precision;

/// Patch embedding with a PyTorch `Conv2d(in, out, kernel = stride = p)` weight and bias.
#[derive(Module, Debug)]
pub struct PatchEmbedding<B: Backend> {
    /// `[out, channels, p, p]`, as `nn.Conv2d` stores it.
    pub weight: Param<Tensor<B, 4>>,
    /// `[out]`.
    pub bias: Param<Tensor<B, 1>>,
    /// The arithmetic of the projection.
    #[module(skip)]
    pub precision: Precision,
}

impl<B: Backend> PatchEmbedding<B> {
    /// A randomly initialised embedding (uniform, PyTorch's default `k = 1/sqrt(fan_in)`).
    pub fn new(channels: usize, width: usize, patch: usize, device: &B::Device) -> Self {
        let fan_in = channels * patch * patch;
        let init = Initializer::KaimingUniform { gain: 1.0 / 3f64.sqrt(), fan_out_only: false };
        Self {
            weight: init.init_with([width, channels, patch, patch], Some(fan_in), None, device),
            bias: Initializer::Zeros.init([width], device),
            precision: Precision::F32,
        }
    }

    /// The patch side.
    pub fn patch(&self) -> usize {
        self.weight.lazy_shape()[3]
    }

    /// `[B, C, H, W]` (H and W multiples of the patch) → `[B, (H/p)·(W/p), out]`, tokens in
    /// row-major order (token = row · cols + col), as `conv(x).flatten(2).transpose(1, 2)` gives.
    pub fn forward(&self, pixels: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, channels, height, width] = pixels.dims();
        let p = self.patch();
        let (rows, cols) = (height / p, width / p);
        let patches = pixels
            .reshape([batch, channels, rows, p, cols, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch, rows * cols, channels * p * p]);
        let [out, ..] = self.weight.dims();
        let weight = self.weight.val().reshape([out, channels * p * p]).transpose();
        self.precision.matmul(patches, weight.unsqueeze()) + self.bias.val().unsqueeze()
    }
}
