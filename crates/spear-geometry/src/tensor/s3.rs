//! S³ and Rⁿ flow matching on tensors: paper eqs. 1 and 4–10.

use std::f64::consts::{FRAC_PI_2, PI};

use burn::tensor::{Tensor, backend::Backend};

use super::quat::{components, conjugate, dot, hamilton, norm};
use crate::s3::COSINE_NORM_FLOOR;

/// Within this distance of π the inputs count as antipodal: f32 cannot resolve the great circle
/// through nearly opposite points (the `1/sin θ` factors pass 1e3).
const ANTIPODAL_WITHIN: f64 = 1e-3;

/// The arc angle `θ = arccos(a·b)` per quaternion pair, `[..., 4]` → `[..., 1]`, computed as
/// `2·atan2(‖a − b‖, ‖a + b‖)`: accurate near 0 and π, where `arccos` of an f32 dot product is off
/// by up to 3e-4 rad, and with finite gradients there.
pub fn arc_angle<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    norm(a.clone() - b.clone()).atan2(norm(a + b)).mul_scalar(2.0)
}

/// The great arc of eqs. 1 and 7, `sin((1−t)θ)/sin θ · from + sin(tθ)/sin θ · to` with
/// `t = speed · τ`, with its angle computed once so that a loss can evaluate it at several times.
///
/// Normally `noise → data` at speed 1. For antipodal pairs it is the scalar API's choice
/// (`crate::s3`): the circle through `noise ⊗ i`, as the quarter arc `noise → noise ⊗ i` at
/// speed 2, which stays on S³ and ends at `−noise ≈ data`.
struct Arc<B: Backend, const D: usize> {
    from: Tensor<B, D>,
    to: Tensor<B, D>,
    theta: Tensor<B, D>,
    sin_theta: Tensor<B, D>,
    speed: Tensor<B, D>,
}

impl<B: Backend, const D: usize> Arc<B, D> {
    fn new(noise: Tensor<B, D>, data: Tensor<B, D>) -> Self {
        let theta = arc_angle(noise.clone(), data.clone());
        let antipodal = theta.clone().greater_elem(PI - ANTIPODAL_WITHIN);
        // noise ⊗ i = (−x, w, z, −y): a signed permutation, no product needed.
        let [w, x, y, z] = components(noise.clone());
        let quarter = Tensor::cat(vec![-x, w, z, -y], D - 1);
        let to = data.mask_where(antipodal.clone().repeat_dim(D - 1, 4), quarter);
        let speed = theta.ones_like().mask_fill(antipodal.clone(), 2.0);
        let theta = theta.mask_fill(antipodal, FRAC_PI_2);
        let sin_theta = theta.clone().sin();
        Self { from: noise, to, theta, sin_theta, speed }
    }

    /// Eq. 1 at time `tau`.
    fn point(&self, tau: Tensor<B, D>) -> Tensor<B, D> {
        let t = tau * self.speed.clone();
        let to_from = (one_minus(t.clone()) * self.theta.clone()).sin() / self.sin_theta.clone();
        let to_to = (t * self.theta.clone()).sin() / self.sin_theta.clone();
        self.from.clone() * to_from + self.to.clone() * to_to
    }

    /// Eq. 7 at time `tau`.
    fn velocity(&self, tau: Tensor<B, D>) -> Tensor<B, D> {
        let t = tau * self.speed.clone();
        let scale = self.theta.clone() / self.sin_theta.clone() * self.speed.clone();
        let to_from = (one_minus(t.clone()) * self.theta.clone()).cos().neg();
        let to_to = (t * self.theta.clone()).cos();
        (self.from.clone() * to_from + self.to.clone() * to_to) * scale
    }
}

fn one_minus<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.neg().add_scalar(1.0)
}

/// Eq. 1: `q^τ = sin((1−τ)θ)/sin θ · noise + sin(τθ)/sin θ · data`, literally (no hemisphere
/// flip). `tau` is `[..., 1]` and broadcasts; see [`crate::s3::interpolate`].
pub fn interpolate<B: Backend, const D: usize>(
    noise: Tensor<B, D>,
    data: Tensor<B, D>,
    tau: Tensor<B, D>,
) -> Tensor<B, D> {
    Arc::new(noise, data).point(tau)
}

/// Eq. 7: the conditional velocity `dq^τ/dτ`; see [`crate::s3::target_velocity`].
pub fn target_velocity<B: Backend, const D: usize>(
    noise: Tensor<B, D>,
    data: Tensor<B, D>,
    tau: Tensor<B, D>,
) -> Tensor<B, D> {
    Arc::new(noise, data).velocity(tau)
}

/// Eq. 6: `q ⊗ Δq` with `Δq` the rotation by `ω·dt`, `ω = 2·Im(q* ⊗ velocity)`; `dt` is
/// `[..., 1]`. The result is renormalised against rounding. See [`crate::s3::integrate`].
pub fn integrate<B: Backend, const D: usize>(
    q: Tensor<B, D>,
    velocity: Tensor<B, D>,
    dt: Tensor<B, D>,
) -> Tensor<B, D> {
    let [_, x, y, z] = components(hamilton(conjugate(q.clone()), velocity));
    let omega = Tensor::cat(vec![x, y, z], D - 1).mul_scalar(2.0);
    let half_dt = dt.mul_scalar(0.5);
    // Half the rotation angle, |ω·dt|/2, floored at 1e-6 by `norm`: sin(x)/x and cos(x) are then
    // exact in f32 and their gradients (0 at x → 0) finite.
    let half_angle = norm(omega.clone() * half_dt.clone());
    let sinc = half_angle.clone().sin() / half_angle.clone();
    let delta = Tensor::cat(vec![half_angle.cos(), omega * half_dt * sinc], D - 1);
    let next = hamilton(q, delta);
    next.clone() / norm(next)
}

/// Eq. 5: one Euler step of the rotation sampler — [`integrate`] over `delta`.
pub fn euler_step_s3<B: Backend, const D: usize>(
    q: Tensor<B, D>,
    velocity: Tensor<B, D>,
    delta: Tensor<B, D>,
) -> Tensor<B, D> {
    integrate(q, velocity, delta)
}

/// Eq. 4: one Euler step in Rⁿ, `x + δ·v`; `delta` broadcasts.
pub fn euler_step_linear<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    velocity: Tensor<B, D>,
    delta: Tensor<B, D>,
) -> Tensor<B, D> {
    x + velocity * delta
}

/// The noisy translation/gripper `τ·data + (1 − τ)·noise`; `tau` broadcasts.
pub fn linear_interpolate<B: Backend, const D: usize>(
    noise: Tensor<B, D>,
    data: Tensor<B, D>,
    tau: Tensor<B, D>,
) -> Tensor<B, D> {
    data * tau.clone() + noise * one_minus(tau)
}

/// The linear flow's target velocity `data − noise` (eq. 2's regression target).
pub fn linear_target_velocity<B: Backend, const D: usize>(
    noise: Tensor<B, D>,
    data: Tensor<B, D>,
) -> Tensor<B, D> {
    data - noise
}

/// Eq. 9: `min(‖a − b‖, ‖a + b‖)` per pair, `[..., 4]` → `[..., 1]`. Exactly equal inputs give
/// 1e-6 (the norm floor), not 0, so that the gradient is finite.
pub fn geodesic_loss<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    norm(a.clone() - b.clone()).min_pair(norm(a + b))
}

/// Eq. 8, normalised: `1 − v·u / (max(‖v‖, 1e-3)·max(‖u‖, 1e-3))` per pair, `[..., 4]` →
/// `[..., 1]`. See [`crate::s3::cosine_loss`] for why both vectors are normalised and floored.
pub fn cosine_loss<B: Backend, const D: usize>(
    predicted: Tensor<B, D>,
    target: Tensor<B, D>,
) -> Tensor<B, D> {
    let floored = |v: Tensor<B, D>| norm(v).clamp_min(COSINE_NORM_FLOOR);
    let denom = floored(predicted.clone()) * floored(target.clone());
    one_minus(dot(predicted, target) / denom)
}

/// Eq. 10: `Σ_k [L_cos(v_k, u_k) + L_geo(q_k^{τ+δ}, q_k^τ ⊗ Δq(v_k, δ))]`, summed over the
/// chunk dimension `D − 2`.
///
/// `noise`, `data`, `predicted`: `[..., H, 4]`; `tau`, `delta`: `[..., 1, 1]` or `[..., H, 1]`.
/// Returns `[..., 1, 1]`. See [`crate::s3::rotation_loss`].
pub fn rotation_loss<B: Backend, const D: usize>(
    noise: Tensor<B, D>,
    data: Tensor<B, D>,
    predicted: Tensor<B, D>,
    tau: Tensor<B, D>,
    delta: Tensor<B, D>,
) -> Tensor<B, D> {
    assert!(D >= 2, "rotation_loss needs a chunk dimension: [..., H, 4]");
    let arc = Arc::new(noise, data);
    let noisy = arc.point(tau.clone());
    let target = arc.point(tau.clone() + delta.clone());
    let cosine = cosine_loss(predicted.clone(), arc.velocity(tau));
    let geodesic = geodesic_loss(target, integrate(noisy, predicted, delta));
    (cosine + geodesic).sum_dim(D - 2)
}
