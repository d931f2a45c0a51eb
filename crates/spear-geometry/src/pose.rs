//! End-effector poses and the action deltas between them.

use nalgebra::{UnitQuaternion, Vector3};

use crate::quat::canonicalize;

/// A rigid pose: the end effector's position and orientation in the robot base frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Position in the base frame.
    pub translation: Vector3<f64>,
    /// Orientation: maps end-effector coordinates to base coordinates.
    pub rotation: UnitQuaternion<f64>,
}

impl Pose {
    /// A pose from its parts.
    pub fn new(translation: Vector3<f64>, rotation: UnitQuaternion<f64>) -> Self {
        Self { translation, rotation }
    }

    /// The action that moves `self` to `next`, in SPEAR-1's convention: the translation delta in
    /// the base frame (`p₁ − p₀`) and the rotation delta in the end-effector frame (`R₀⁻¹·R₁`),
    /// canonical (`w ≥ 0`).
    pub fn delta_to(&self, next: &Pose) -> Pose {
        Pose {
            translation: next.translation - self.translation,
            rotation: canonicalize(&(self.rotation.inverse() * next.rotation)),
        }
    }

    /// Applies an action made by [`Pose::delta_to`]: `p₀ + Δp` and `R₀·ΔR`, with the rotation
    /// canonical (`w ≥ 0`). So `a.apply_delta(&a.delta_to(&b))` is `b` up to rounding — and up to
    /// the quaternion's sign if `b`'s was not canonical, which `==` (componentwise) does not
    /// forgive: compare rotations with [`crate::s3::geodesic_loss`].
    pub fn apply_delta(&self, delta: &Pose) -> Pose {
        Pose {
            translation: self.translation + delta.translation,
            rotation: canonicalize(&(self.rotation * delta.rotation)),
        }
    }
}
