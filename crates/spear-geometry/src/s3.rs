//! Flow matching on S³, the manifold of unit quaternions (paper eqs. 1, 5–10), scalar f64.
//!
//! Paper time: `tau = 0` is the noise quaternion, `tau = 1` is the data quaternion. The batched,
//! differentiable versions of these functions live in [`crate::tensor`].

use std::f64::consts::FRAC_PI_2;

use nalgebra::{Quaternion, UnitQuaternion};
use rand::Rng;

use crate::GeometryError;

/// Smallest integration step of the geodesic loss, `δ ~ U(0.01, 1 − τ)` (paper, before eq. 3).
pub const MIN_DELTA: f64 = 0.01;

/// Below this angle the ratios `sin(kθ)/sin(θ)`, `θ/sin(θ)` and `sin(x)/x` use their Taylor
/// series: the direct quotient is 0/0 at zero, and the series is exact to f64 rounding here.
const SERIES_BELOW: f64 = 1e-4;

/// Beyond this angle the inputs are antipodal to rounding and eq. 1 names no great circle
/// (every one through `noise` reaches `−noise`); `Arc::new` then picks the one through `noise ⊗ i`.
const ANTIPODAL_ABOVE: f64 = std::f64::consts::PI - 1e-7;

/// The arc angle `θ = arccos(a·b)` between two unit quaternions, computed as
/// `2·atan2(‖a − b‖, ‖a + b‖)`: the same number, but accurate to rounding near 0 and π where
/// `arccos` loses half its digits.
pub fn arc_angle(a: &UnitQuaternion<f64>, b: &UnitQuaternion<f64>) -> f64 {
    2.0 * (a.coords - b.coords).norm().atan2((a.coords + b.coords).norm())
}

/// `sin(kθ) / sin(θ)`, finite at θ → 0.
fn sin_ratio(k: f64, theta: f64) -> f64 {
    if theta < SERIES_BELOW {
        k * (1.0 - (k * k - 1.0) * theta * theta / 6.0)
    } else {
        (k * theta).sin() / theta.sin()
    }
}

/// `θ / sin(θ)`, finite at θ → 0.
fn angle_over_sin(theta: f64) -> f64 {
    if theta < SERIES_BELOW { 1.0 + theta * theta / 6.0 } else { theta / theta.sin() }
}

/// `sin(x) / x`, finite at x → 0.
fn sinc(x: f64) -> f64 {
    if x.abs() < SERIES_BELOW { 1.0 - x * x / 6.0 } else { x.sin() / x }
}

/// Eq. 1: the noisy quaternion `q^τ = sin((1−τ)θ)/sin θ · noise + sin(τθ)/sin θ · data` with
/// `θ = arccos(noise · data)`, taken literally: no hemisphere flip, so the path is the great arc
/// from `noise` to `data` as given. `tau = 0` returns `noise`, `tau = 1` returns `data`.
///
/// The result has unit norm for every `tau`; outside [0, 1] it continues along the same great
/// circle.
pub fn interpolate(noise: &UnitQuaternion<f64>, data: &UnitQuaternion<f64>, tau: f64) -> UnitQuaternion<f64> {
    let arc = Arc::new(noise, data);
    let t = arc.speed * tau;
    let q = arc.from * sin_ratio(1.0 - t, arc.theta) + arc.to * sin_ratio(t, arc.theta);
    UnitQuaternion::new_unchecked(q)
}

/// Eq. 7: the conditional velocity `u = dq^τ/dτ
/// = θ/sin θ · [−cos((1−τ)θ) · noise + cos(τθ) · data]`, a 4-vector tangent to S³ at `q^τ`
/// with norm θ.
pub fn target_velocity(noise: &UnitQuaternion<f64>, data: &UnitQuaternion<f64>, tau: f64) -> Quaternion<f64> {
    let arc = Arc::new(noise, data);
    let t = arc.speed * tau;
    (arc.from * (-((1.0 - t) * arc.theta).cos()) + arc.to * (t * arc.theta).cos())
        * (arc.speed * angle_over_sin(arc.theta))
}

/// The great arc that eqs. 1 and 7 follow, as `sin((1−t)θ)/sin θ · from + sin(tθ)/sin θ · to`
/// with `t = speed · τ`.
///
/// Normally that is `noise` to `data` at speed 1. For antipodal inputs (θ = π to rounding) the
/// equations name no arc: every great circle through `noise` reaches `−noise`. We then take the
/// one through `noise ⊗ i`, written as the quarter arc `noise → noise ⊗ i` run at speed 2, so
/// outputs stay finite, unit and continuous in τ and still end at `−noise ≈ data`.
struct Arc {
    from: Quaternion<f64>,
    to: Quaternion<f64>,
    theta: f64,
    speed: f64,
}

impl Arc {
    fn new(noise: &UnitQuaternion<f64>, data: &UnitQuaternion<f64>) -> Self {
        let theta = arc_angle(noise, data);
        if theta > ANTIPODAL_ABOVE {
            let quarter = noise.into_inner() * Quaternion::new(0.0, 1.0, 0.0, 0.0);
            Self { from: noise.into_inner(), to: quarter, theta: FRAC_PI_2, speed: 2.0 }
        } else {
            Self { from: noise.into_inner(), to: data.into_inner(), theta, speed: 1.0 }
        }
    }
}

/// Eq. 6: integrates the quaternion velocity `velocity = q̇` over `dt` starting at `q`.
///
/// `ω = 2·Im(q* ⊗ q̇)` is the body-frame angular velocity, `Δφ = ‖ω‖·dt` and
/// `Δq = [cos(Δφ/2), ω/‖ω‖ · sin(Δφ/2)]`; the result is `q ⊗ Δq`. The radial part of `q̇`
/// (along `q`) does not rotate and is ignored, so the result is always a unit quaternion.
/// A negative `dt` integrates backwards.
pub fn integrate(q: &UnitQuaternion<f64>, velocity: &Quaternion<f64>, dt: f64) -> UnitQuaternion<f64> {
    UnitQuaternion::new_normalize(q.into_inner() * delta_quaternion(q, velocity, dt))
}

/// The `Δq` of eq. 6 for velocity `q̇` at `q` over `dt`.
fn delta_quaternion(q: &UnitQuaternion<f64>, velocity: &Quaternion<f64>, dt: f64) -> Quaternion<f64> {
    let omega = (q.into_inner().conjugate() * velocity).imag() * 2.0;
    // ω/‖ω‖ · sin(‖ω‖dt/2) = ω·dt/2 · sinc(‖ω‖dt/2): no division by ‖ω‖, so ω → 0 is fine.
    let half = omega.norm() * dt / 2.0;
    let axis_part = omega * (dt / 2.0 * sinc(half));
    Quaternion::from_parts(half.cos(), axis_part)
}

/// Eq. 5: one Euler step of the rotation sampler, `q^{τ+δ} = q^τ ⊗ Δq(v, δ)` — [`integrate`] by
/// another name, kept so that sampler code reads like the paper.
pub fn euler_step(q: &UnitQuaternion<f64>, velocity: &Quaternion<f64>, delta: f64) -> UnitQuaternion<f64> {
    integrate(q, velocity, delta)
}

/// Eq. 9: the geodesic loss `min(‖a − b‖, ‖a + b‖)`, invariant to the sign of either input
/// (`q` and `−q` are the same rotation).
pub fn geodesic_loss(a: &UnitQuaternion<f64>, b: &UnitQuaternion<f64>) -> f64 {
    (a.coords - b.coords).norm().min((a.coords + b.coords).norm())
}

/// Norms below this count as this in the cosine loss, which bounds its gradient (`∝ 1/‖v‖`).
pub(crate) const COSINE_NORM_FLOOR: f64 = 1e-3;

/// Eq. 8: the cosine loss `1 − v·u / (max(‖v‖, 1e-3)·max(‖u‖, 1e-3))` between a predicted and a
/// target velocity.
///
/// The paper writes `1 − v·u`. Read literally, that is unbounded below (scaling `v` up lowers it
/// without limit) and the target's norm is θ, not 1, so we normalise both vectors: the cosine loss
/// then supervises the direction only, in [0, 2], and the velocity's magnitude is supervised by
/// the geodesic loss on the integrated rotation. The price of normalising is a gradient that grows
/// as `1/‖v‖`; flooring the norms at 1e-3 caps it at ~1e3 and makes the loss go smoothly to 1 as
/// either vector goes to zero. Vectors longer than 1e-3 (θ > 1e-3 for the target) are unaffected.
pub fn cosine_loss(predicted: &Quaternion<f64>, target: &Quaternion<f64>) -> f64 {
    let floored = |q: &Quaternion<f64>| q.norm().max(COSINE_NORM_FLOOR);
    1.0 - predicted.coords.dot(&target.coords) / (floored(predicted) * floored(target))
}

/// Eq. 10 for one action chunk: `Σ_k [L_cos(v_k, u_k) + L_geo(q_k^{τ+δ}, q_k^τ ⊗ Δq(v_k, δ))]`,
/// where `u_k` is [`target_velocity`] and `q_k^τ`, `q_k^{τ+δ}` come from [`interpolate`].
///
/// `noise`, `data` and `predicted` hold one quaternion per step of the chunk; `tau` and `delta`
/// are shared by the chunk (draw `delta` with [`sample_delta`]).
pub fn rotation_loss(
    noise: &[UnitQuaternion<f64>],
    data: &[UnitQuaternion<f64>],
    predicted: &[Quaternion<f64>],
    tau: f64,
    delta: f64,
) -> Result<f64, GeometryError> {
    for (what, got) in [("data", data.len()), ("predicted", predicted.len())] {
        if got != noise.len() {
            return Err(GeometryError::LengthMismatch { what, expected: noise.len(), got });
        }
    }
    let loss = noise
        .iter()
        .zip(data)
        .zip(predicted)
        .map(|((eps, x), v)| {
            let noisy = interpolate(eps, x, tau);
            let target = interpolate(eps, x, tau + delta);
            cosine_loss(v, &target_velocity(eps, x, tau))
                + geodesic_loss(&target, &integrate(&noisy, v, delta))
        })
        .sum();
    Ok(loss)
}

/// Draws the geodesic loss's integration step `δ ~ U(0.01, 1 − τ)`.
///
/// When `τ > 0.99` the interval is empty; `δ` is then 0.01 (the target is extrapolated slightly
/// past `τ = 1`, which eq. 1 defines without trouble).
pub fn sample_delta<R: Rng + ?Sized>(rng: &mut R, tau: f64) -> f64 {
    let hi = (1.0 - tau).max(MIN_DELTA);
    MIN_DELTA + (hi - MIN_DELTA) * rng.random::<f64>()
}
