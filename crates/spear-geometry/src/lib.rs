//! Geometry for SPEAR-1: unit quaternions, flow matching on S³ and in Rⁿ, the rotation losses,
//! conversions between rotation formats, and end-effector pose deltas.
//!
//! Two APIs cover the same equations:
//! - a scalar f64 API on [nalgebra] types ([`quat`], [`s3`], [`flow`], [`rotation`], [`pose`]),
//!   the reference that is checked against scipy/numpy;
//! - a batched, differentiable [burn] API ([`tensor`]), generic over the backend, used by training
//!   and the sampler, and checked against the scalar API.
//!
//! Conventions: quaternions are `(w, x, y, z)`, Hamilton product, unit norm, canonical half-space
//! `w ≥ 0`. Flow-matching time is the paper's: `tau = 0` is noise, `tau = 1` is data. Translation
//! deltas are in the robot base frame, rotation deltas in the end-effector frame.
//!
//! # Example: one S³ training target and one sampling step
//!
//! ```
//! use nalgebra::UnitQuaternion;
//! use spear_geometry::{quat, rotation, s3};
//!
//! let mut rng = rand::rng();
//! let data = rotation::quat_from_euler_xyz(0.1, -0.2, 0.3); // the action's rotation delta
//! let noise = quat::canonicalize(&quat::sample_uniform(&mut rng));
//! let tau = 0.4;
//!
//! // Training: the noisy input (eq. 1) and the velocity the network must predict (eq. 7).
//! let noisy = s3::interpolate(&noise, &data, tau);
//! let target = s3::target_velocity(&noise, &data, tau);
//!
//! // Sampling: one Euler step on S³ (eq. 5). With the exact velocity, integrating from τ to 1
//! // lands on the data.
//! let next = s3::euler_step(&noisy, &target, 1.0 - tau);
//! assert!(s3::geodesic_loss(&next, &data) < 1e-9);
//! # let _: UnitQuaternion<f64> = next;
//! ```

pub mod error;
pub mod flow;
pub mod pose;
pub mod quat;
pub mod rotation;
pub mod s3;
pub mod tensor;

pub use error::GeometryError;
pub use pose::Pose;
