//! Conversions between rotation formats: unit quaternion, rotation matrix, Euler angles,
//! rotation vector and the continuous 6D representation.
//!
//! Every quaternion returned is canonical (`w ≥ 0`), so a rotation has one representative.

use nalgebra::{Matrix3, Rotation3, UnitQuaternion, Vector3};

use crate::{GeometryError, quat::canonicalize};

/// The quaternion of extrinsic x-y-z Euler angles: rotate by `roll` about the fixed x axis, then
/// `pitch` about fixed y, then `yaw` about fixed z, so `R = Rz(yaw)·Ry(pitch)·Rx(roll)`.
/// This is scipy's `'xyz'` and the most common convention among Open X-Embodiment datasets (each
/// dataset's registry entry in spear-data states its own).
pub fn quat_from_euler_xyz(roll: f64, pitch: f64, yaw: f64) -> UnitQuaternion<f64> {
    canonicalize(&UnitQuaternion::from_euler_angles(roll, pitch, yaw))
}

/// The extrinsic x-y-z Euler angles `(roll, pitch, yaw)` of `q`, each in [−π, π], pitch in
/// [−π/2, π/2]. At gimbal lock (pitch within 1e-7 of ±π/2) yaw is set to 0 and the rotation
/// folded into roll, as scipy does.
///
/// Computed directly from the quaternion (Bernardes & Viollet, 2022, the method scipy uses), which
/// stays accurate near gimbal lock, where extracting angles from the rotation matrix via `asin`
/// loses half the digits (nalgebra's `euler_angles` is off by 0.05 rad in roll there).
pub fn euler_xyz_from_quat(q: &UnitQuaternion<f64>) -> (f64, f64, f64) {
    use std::f64::consts::{FRAC_PI_2, PI};
    // scipy's threshold for calling the middle angle 0 or π.
    const LOCK: f64 = 1e-7;
    // The paper's permuted components for the sequence x-y-z (an even permutation).
    let (a, b, c, d) = (q.w - q.j, q.i + q.k, q.j + q.w, q.k - q.i);
    let middle = 2.0 * c.hypot(d).atan2(a.hypot(b));
    let half_sum = b.atan2(a);
    let half_diff = d.atan2(c);
    let (roll, yaw) = if middle.abs() <= LOCK {
        (2.0 * half_sum, 0.0)
    } else if (middle - PI).abs() <= LOCK {
        (-2.0 * half_diff, 0.0)
    } else {
        (half_sum - half_diff, half_sum + half_diff)
    };
    let wrap = |x: f64| {
        if x < -PI {
            x + 2.0 * PI
        } else if x > PI {
            x - 2.0 * PI
        } else {
            x
        }
    };
    (wrap(roll), middle - FRAC_PI_2, wrap(yaw))
}

/// The rotation matrix of `q`.
pub fn rotation_from_quat(q: &UnitQuaternion<f64>) -> Rotation3<f64> {
    q.to_rotation_matrix()
}

/// The canonical quaternion of a rotation matrix.
pub fn quat_from_rotation(r: &Rotation3<f64>) -> UnitQuaternion<f64> {
    canonicalize(&UnitQuaternion::from_rotation_matrix(r))
}

/// Checks that `m` is a rotation matrix up to `tolerance` (every entry of `MᵀM − I` within it,
/// determinant positive) and returns the nearest exact rotation (`U·Vᵀ` of its SVD), so that
/// quaternions made from it have unit norm. Use it on matrices read from data files, whose
/// entries were rounded when stored.
pub fn rotation_from_matrix(m: &Matrix3<f64>, tolerance: f64) -> Result<Rotation3<f64>, GeometryError> {
    let error = (m.transpose() * m - Matrix3::identity()).amax();
    let determinant = m.determinant();
    if !(error <= tolerance && determinant > 0.0) {
        return Err(GeometryError::NotARotation { orthogonality_error: error, determinant });
    }
    let svd = m.svd(true, true);
    let (u, v_t) = (svd.u.expect("SVD computed with U"), svd.v_t.expect("SVD computed with Vᵀ"));
    Ok(Rotation3::from_matrix_unchecked(u * v_t))
}

/// The rotation vector (axis × angle, angle in [0, π]) of `q`.
pub fn rotvec_from_quat(q: &UnitQuaternion<f64>) -> Vector3<f64> {
    canonicalize(q).scaled_axis()
}

/// The canonical quaternion of a rotation vector (axis × angle, any angle).
pub fn quat_from_rotvec(v: &Vector3<f64>) -> UnitQuaternion<f64> {
    canonicalize(&UnitQuaternion::from_scaled_axis(*v))
}

/// The continuous 6D representation (Zhou et al., 2019): the first two columns of the rotation
/// matrix, `[r00, r10, r20, r01, r11, r21]`.
pub fn sixd_from_rotation(r: &Rotation3<f64>) -> [f64; 6] {
    let m = r.matrix();
    [m[(0, 0)], m[(1, 0)], m[(2, 0)], m[(0, 1)], m[(1, 1)], m[(2, 1)]]
}

/// The rotation of a (possibly unnormalised) 6D vector, by Gram–Schmidt: `b1 = a1/‖a1‖`,
/// `b2` = the part of `a2` orthogonal to `b1`, normalised, `b3 = b1 × b2`. This is how a network's
/// raw 6D output becomes a valid rotation.
///
/// Errors when a column is not finite, or the two columns are (nearly) parallel or zero.
pub fn rotation_from_sixd(v: &[f64; 6]) -> Result<Rotation3<f64>, GeometryError> {
    let a1 = Vector3::new(v[0], v[1], v[2]);
    let a2 = Vector3::new(v[3], v[4], v[5]);
    let degenerate = || GeometryError::Degenerate6d(*v);
    let b1 = a1.try_normalize(1e-12).ok_or_else(degenerate)?;
    let b2 = (a2 - b1 * b1.dot(&a2)).try_normalize(1e-9 * a2.norm().max(1e-12)).ok_or_else(degenerate)?;
    if !(b1.iter().chain(b2.iter()).all(|x| x.is_finite())) {
        return Err(degenerate());
    }
    Ok(Rotation3::from_matrix_unchecked(Matrix3::from_columns(&[b1, b2, b1.cross(&b2)])))
}

/// The 6D representation of `q` (see [`sixd_from_rotation`]).
pub fn sixd_from_quat(q: &UnitQuaternion<f64>) -> [f64; 6] {
    sixd_from_rotation(&rotation_from_quat(q))
}

/// The canonical quaternion of a 6D vector (see [`rotation_from_sixd`]).
pub fn quat_from_sixd(v: &[f64; 6]) -> Result<UnitQuaternion<f64>, GeometryError> {
    Ok(quat_from_rotation(&rotation_from_sixd(v)?))
}
