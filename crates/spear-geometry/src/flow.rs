//! Linear flow matching in Rⁿ (translation and gripper; paper eqs. 2 and 4) and the
//! flow-matching time distribution.
//!
//! Paper time: `tau = 0` is noise, `tau = 1` is data.

use nalgebra::SVector;
use rand::Rng;
use rand_distr::{Beta, Distribution};

use crate::GeometryError;

/// The noisy point `x^τ = τ·data + (1 − τ)·noise`.
pub fn interpolate<const N: usize>(
    noise: &SVector<f64, N>,
    data: &SVector<f64, N>,
    tau: f64,
) -> SVector<f64, N> {
    data * tau + noise * (1.0 - tau)
}

/// The conditional velocity `dx^τ/dτ = data − noise`, the regression target of eq. 2.
pub fn target_velocity<const N: usize>(noise: &SVector<f64, N>, data: &SVector<f64, N>) -> SVector<f64, N> {
    data - noise
}

/// Eq. 4: one Euler step `x^{τ+δ} = x^τ + δ·v`.
pub fn euler_step<const N: usize>(
    x: &SVector<f64, N>,
    velocity: &SVector<f64, N>,
    delta: f64,
) -> SVector<f64, N> {
    x + velocity * delta
}

/// Draws the flow-matching time `τ ~ Beta(alpha, beta)`, in paper time (`τ = 0` is noise).
///
/// π0/openpi draw `t ~ Beta(1.5, 1)` in their code time, where `t = 1` is noise; in this crate's
/// time that is `τ = 1 − t ~ Beta(1, 1.5)`, weighted towards the noisy end (openpi also scales
/// `t` by 0.999 and adds 0.001). Errors unless both parameters are finite and positive.
pub fn sample_beta<R: Rng + ?Sized>(rng: &mut R, alpha: f64, beta: f64) -> Result<f64, GeometryError> {
    Ok(beta_distribution(alpha, beta)?.sample(rng))
}

/// A validated `Beta(alpha, beta)` distribution, for drawing many times.
pub fn beta_distribution(alpha: f64, beta: f64) -> Result<Beta<f64>, GeometryError> {
    for (what, value) in [("alpha", alpha), ("beta", beta)] {
        if !(value.is_finite() && value > 0.0) {
            return Err(GeometryError::InvalidParameter {
                what,
                value,
                reason: "a Beta parameter must be finite and positive",
            });
        }
    }
    Beta::new(alpha, beta).map_err(|_| GeometryError::InvalidParameter {
        what: "alpha",
        value: alpha,
        reason: "rejected by the Beta sampler",
    })
}
