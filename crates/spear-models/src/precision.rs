//! Mixed precision as openpi trains: parameters stay f32 and are cast to bf16 where they are used
//! in a matrix product; every matrix product (linear layers, attention's two products, the patch
//! projections, the LM head) runs on bf16 operands and returns f32; norms, softmax, activations,
//! residual sums, the flow-time sinusoid, the losses and the S³ geometry stay f32.
//!
//! burn has no autocast, so the model carries its [`Precision`]: each [`Linear`] and each
//! attention reads it, and [`crate::SpearPolicy::set_precision`] / [`crate::SpearVlm::set_precision`]
//! set it everywhere at once. Gradients flow through the casts (burn casts them back), so the
//! optimiser sees f32 gradients of f32 parameters.

use std::fmt;
use std::str::FromStr;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

use crate::error::ModelError;
use serde::{Deserialize, Serialize};

/// The arithmetic of matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Matrix products on bf16 operands (f32 results); everything else f32.
    Bf16,
}

impl Precision {
    /// `lhs · rhs` (batched over leading axes) at this precision, returned in f32.
    pub fn matmul<B: Backend, const D: usize>(self, lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Precision::F32 => lhs.matmul(rhs),
            Precision::Bf16 => {
                lhs.cast(FloatDType::BF16).matmul(rhs.cast(FloatDType::BF16)).cast(FloatDType::F32)
            }
        }
    }

    /// Whether backend `B` on `device` can compute at this precision: bf16 needs bf16 arithmetic,
    /// which burn-flex and CUDA have and WGPU (WGSL or SPIR-V) has not.
    pub fn check<B: Backend>(self, device: &B::Device) -> Result<(), ModelError> {
        if self == Precision::Bf16 && !B::supports_dtype(device, DType::BF16) {
            return Err(ModelError::Input(format!(
                "precision bf16: the {} backend has no bf16 arithmetic; use f32, or the cpu or cuda backend",
                B::name(device)
            )));
        }
        Ok(())
    }

    /// Bytes of one element of a matrix product's operand (what autodiff keeps for the backward
    /// pass).
    pub fn operand_bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::Bf16 => 2,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision `{other}` (expected f32 or bf16)")),
        }
    }
}

/// A linear layer `y = x·W + b` (`W` `[in, out]`) computed at its [`Precision`]. The same record as
/// burn's `Linear` (and the same module type name, which weight import and export key on), so
/// checkpoints load and save unchanged.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// `[d_input, d_output]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[d_output]`, when the layer has one.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// The arithmetic of the product (the bias is added in f32).
    #[module(skip)]
    pub precision: Precision,
}

impl<B: Backend> From<burn::nn::Linear<B>> for Linear<B> {
    fn from(linear: burn::nn::Linear<B>) -> Self {
        Self { weight: linear.weight, bias: linear.bias, precision: Precision::F32 }
    }
}

impl<B: Backend> Linear<B> {
    /// A layer initialised as burn's `LinearConfig::new(d_input, d_output)` initialises one.
    pub fn new(d_input: usize, d_output: usize, bias: bool, device: &B::Device) -> Self {
        burn::nn::LinearConfig::new(d_input, d_output).with_bias(bias).init(device).into()
    }

    /// Applies the layer over the last axis of `input`.
    pub fn forward<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        let bias = self.bias.as_ref().map(|b| b.val());
        match self.precision {
            Precision::F32 => burn::tensor::module::linear(input, self.weight.val(), bias),
            Precision::Bf16 => {
                let out = burn::tensor::module::linear(
                    input.cast(FloatDType::BF16),
                    self.weight.val().cast(FloatDType::BF16),
                    None,
                )
                .cast(FloatDType::F32);
                match bias {
                    Some(b) => out + b.unsqueeze(),
                    None => out,
                }
            }
        }
    }
}

/// Sets the precision of several linear layers.
pub fn set_all<'a, B: Backend + 'a>(
    precision: Precision,
    layers: impl IntoIterator<Item = &'a mut Linear<B>>,
) {
    for layer in layers {
        layer.precision = precision;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    #[test]
    fn bf16_linear_rounds_operands_and_returns_f32() {
        let device = Default::default();
        let mut layer = Linear::<B>::new(8, 4, true, &device);
        let x = Tensor::<B, 3>::random([2, 3, 8], burn::tensor::Distribution::Default, &device);
        let f32_out = layer.forward(x.clone());
        layer.precision = Precision::Bf16;
        let bf16_out = layer.forward(x.clone());
        assert_eq!(bf16_out.dtype(), burn::tensor::DType::F32);
        // The same product on operands rounded to bf16 by hand, in f32.
        let round = |t: Tensor<B, 2>| t.cast(FloatDType::BF16).cast(FloatDType::F32);
        let w = round(layer.weight.val());
        let want = x.reshape([6, 8]).cast(FloatDType::BF16).cast(FloatDType::F32).matmul(w)
            + layer.bias.as_ref().unwrap().val().unsqueeze();
        let (got, want, exact) = (
            bf16_out.reshape([6, 4]).into_data().to_vec::<f32>().unwrap(),
            want.into_data().to_vec::<f32>().unwrap(),
            f32_out.reshape([6, 4]).into_data().to_vec::<f32>().unwrap(),
        );
        let mut differs = false;
        for ((g, w), e) in got.iter().zip(&want).zip(&exact) {
            // bf16 keeps 8 bits of mantissa: the result is rounded once more to bf16.
            assert!((g - w).abs() <= 1e-2 * w.abs().max(1.0), "{g} vs {w}");
            differs |= g != e;
        }
        assert!(differs, "bf16 must change some result against f32");
    }

    #[test]
    fn precision_names_round_trip() {
        for precision in [Precision::F32, Precision::Bf16] {
            assert_eq!(precision.to_string().parse::<Precision>().unwrap(), precision);
        }
        assert!("fp16".parse::<Precision>().unwrap_err().contains("f32 or bf16"));
    }
}
