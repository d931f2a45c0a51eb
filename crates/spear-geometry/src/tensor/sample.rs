//! Random draws for flow matching: noise quaternions and flow times.

use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use rand::Rng;
use rand_distr::Distribution as _;

use super::quat::norm;
use crate::{GeometryError, flow::beta_distribution};

/// `n` quaternions drawn uniformly from S³ on the device (normalised 4D Gaussians), shape
/// `[n, 4]`, in either half-space; compose with [`super::canonicalize`] for the paper's noise.
/// Reproducible through `B::seed`.
pub fn sample_uniform<B: Backend>(n: usize, device: &B::Device) -> Tensor<B, 2> {
    let gaussian = Tensor::<B, 2>::random([n, 4], Distribution::Normal(0.0, 1.0), device);
    gaussian.clone() / norm(gaussian)
}

/// `n` flow times `τ ~ Beta(alpha, beta)` in paper time (`τ = 0` is noise), shape `[n]`; see
/// [`crate::flow::sample_beta`] for π0's distribution in this convention (`Beta(1, 1.5)`).
///
/// Drawn on the host from `rng` and uploaded (lerobot also samples on the host): burn has no Beta
/// sampler, and a seeded host RNG makes runs reproducible across backends. Errors unless both
/// parameters are finite and positive.
pub fn sample_beta<B: Backend, R: Rng + ?Sized>(
    rng: &mut R,
    n: usize,
    alpha: f64,
    beta: f64,
    device: &B::Device,
) -> Result<Tensor<B, 1>, GeometryError> {
    let distribution = beta_distribution(alpha, beta)?;
    let values: Vec<f32> = (0..n).map(|_| distribution.sample(rng) as f32).collect();
    Ok(Tensor::from_data(TensorData::new(values, [n]), device))
}
