//! Unit-quaternion basics: Hamilton product, conjugate, canonical half-space, uniform sampling,
//! shortest-path slerp.
//!
//! Quaternions are nalgebra's: `Quaternion::new(w, x, y, z)`, and `*` is the Hamilton product.

use nalgebra::{Quaternion, UnitQuaternion};
use rand::Rng;
use rand_distr::StandardNormal;

/// Hamilton product `a ⊗ b` (composition: rotate by `b`, then by `a`).
pub fn hamilton(a: &Quaternion<f64>, b: &Quaternion<f64>) -> Quaternion<f64> {
    a * b
}

/// Conjugate `q* = (w, −x, −y, −z)`, the inverse of a unit quaternion.
pub fn conjugate(q: &Quaternion<f64>) -> Quaternion<f64> {
    q.conjugate()
}

/// The representative of `q`'s rotation in the half-space `w ≥ 0` (`q` and `−q` are the same
/// rotation). A quaternion with `w = 0` exactly is returned unchanged.
pub fn canonicalize(q: &UnitQuaternion<f64>) -> UnitQuaternion<f64> {
    if q.w < 0.0 { UnitQuaternion::new_unchecked(-q.into_inner()) } else { *q }
}

/// A quaternion drawn uniformly from S³ (a normalised 4D standard Gaussian), in either half-space.
/// Compose with [`canonicalize`] for the paper's noise, which lives in `w ≥ 0`.
pub fn sample_uniform<R: Rng + ?Sized>(rng: &mut R) -> UnitQuaternion<f64> {
    loop {
        let v: [f64; 4] = std::array::from_fn(|_| rng.sample(StandardNormal));
        let q = Quaternion::new(v[0], v[1], v[2], v[3]);
        // Reject the (probability ~0) near-zero draw whose direction is dominated by rounding.
        if q.norm() > 1e-6 {
            return UnitQuaternion::new_normalize(q);
        }
    }
}

/// The rotation angle of `q` in [0, π], whichever sign represents it: `2·atan2(‖v‖, |w|)`, which
/// stays accurate for the small rotations of per-step deltas, where `2·acos(|w|)` loses half its
/// digits.
pub fn angle(q: &UnitQuaternion<f64>) -> f64 {
    2.0 * q.imag().norm().atan2(q.w.abs())
}

/// The rotation of `q` with its angle multiplied by `factor` about the same axis — `q^factor` for
/// the canonical representative — the angle capped at π. For `factor > 1` it spreads small
/// rotations over more of S³ (see `spear_data::stats::AngleScale`); `1 / factor` undoes it below
/// the cap. The result is canonical (`w ≥ 0`).
pub fn scale_angle(q: &UnitQuaternion<f64>, factor: f64) -> UnitQuaternion<f64> {
    let q = canonicalize(q);
    let (v, norm) = (q.imag(), q.imag().norm());
    if norm < 1e-12 {
        return UnitQuaternion::identity();
    }
    let scaled = (angle(&q) / 2.0 * factor).min(std::f64::consts::FRAC_PI_2);
    let axis = v / norm;
    canonicalize(&UnitQuaternion::new_unchecked(Quaternion::from_parts(scaled.cos(), axis * scaled.sin())))
}

/// Shortest-path spherical interpolation between two rotations: flips `b` into `a`'s hemisphere
/// first, so the path is the shorter arc (angle ≤ π/2 on S³, ≤ π in rotation space).
/// `t = 0` gives `a`, `t = 1` gives `b` (up to sign).
///
/// This is the slerp a user wants for poses. The flow-matching path of the paper is
/// [`crate::s3::interpolate`], which deliberately does not flip.
pub fn slerp(a: &UnitQuaternion<f64>, b: &UnitQuaternion<f64>, t: f64) -> UnitQuaternion<f64> {
    let b = if a.coords.dot(&b.coords) < 0.0 { UnitQuaternion::new_unchecked(-b.into_inner()) } else { *b };
    crate::s3::interpolate(a, &b, t)
}
