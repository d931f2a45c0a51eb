//! The batched, differentiable tensor API, generic over any burn backend.
//!
//! Everything the S³ flow-matching loss and sampler need, as burn tensor operations so that it runs
//! on the training device and autodiff flows through it.
//!
//! Conventions:
//! - A quaternion tensor has its components `(w, x, y, z)` in the **last** dimension, of size 4;
//!   any leading shape (`[batch, horizon, 4]`, `[n, 4]`, …).
//! - Per-quaternion scalars (`tau`, `delta`, `dt`, losses) have the same rank with a last
//!   dimension of 1, and broadcast against the quaternions (`tau` of shape `[batch, 1, 1]` serves a
//!   whole `[batch, horizon, 4]` chunk).
//! - Paper time: `tau = 0` is noise, `tau = 1` is data.
//!
//! Passing a tensor whose last dimension is not 4 where a quaternion is expected panics with a
//! message naming the shape, as burn does for other shape errors.
//!
//! Numerical stability: norms are floored at 1e-6 before square roots and divisions, and the
//! arc angle is computed as `2·atan2(‖a − b‖, ‖a + b‖)`, so values **and gradients** stay finite
//! for identical (θ → 0) and antipodal (θ → π) quaternions. Pairs within 1e-3 rad of antipodal
//! follow the scalar API's explicit circle through `noise ⊗ i` (the scalar API switches only within
//! 1e-7 rad, where f64 still resolves the true arc); everywhere else the two agree to f32 rounding.
//! Below θ ≈ 1e-5 an f32 input no longer fixes the direction of the target velocity, which is
//! inherent to f32, not to these formulas.
//!
//! Precision: run these functions in f32 even when a model computes in bf16 — bf16 keeps 8
//! mantissa bits (~4e-3 relative per operation), too coarse for unit-norm paths and small angles.

mod quat;
mod s3;
mod sample;
pub mod selfcheck;

pub use quat::{canonicalize, conjugate, dot, hamilton, norm};
pub use s3::{
    arc_angle, cosine_loss, euler_step_linear, euler_step_s3, geodesic_loss, integrate, interpolate,
    linear_interpolate, linear_target_velocity, rotation_loss, target_velocity,
};
pub use sample::{sample_beta, sample_uniform};
