//! Temporal processing: an episode's end-effector trajectory at its native control rate becomes,
//! for each observed frame, a chunk of `H` actions at a fixed rate (the paper's H = 5 at 5 Hz).
//!
//! Observations stay where the dataset recorded them (images and state of frame `j`, at time
//! `sⱼ = j / rate`); the action targets are resampled, as section 3.2 and appendix A.2.4 say: the
//! pose is interpolated at `sⱼ + m·Δ` (`Δ = 1 / target rate`, `m = 0..=H`) — translation linearly,
//! rotation by shortest-path slerp — and action `m` is the delta from the pose at `sⱼ + m·Δ` to the
//! pose at `sⱼ + (m + 1)·Δ` ([`Pose::delta_to`]: translation in the base frame, rotation in the
//! end-effector frame, `w ≥ 0`). Deltas are never interpolated themselves. The gripper command of
//! action `m` is the one in force at `sⱼ + m·Δ` (zero-order hold: a binary command has no in-between).
//! At a dataset's own 5 Hz this is exactly consecutive frames' deltas and the recorded commands.
//!
//! Near the episode's end a chunk runs past the last frame: those actions are padding (identity
//! delta, the gripper command in force at their start) with `mask = false`, so the loss can ignore
//! them.

use nalgebra::{UnitQuaternion, Vector3};
use spear_geometry::pose::Pose;
use spear_geometry::quat::slerp;

/// Floats per action: translation (3), unit quaternion `(w, x, y, z)` (4), gripper (1) — the
/// policy's layout.
pub const ACTION_DIM: usize = 8;

/// An end-effector trajectory at its native rate: one pose and one gripper command per frame,
/// at least one frame, every value finite (checked by [`Trajectory::new`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    rate_hz: f64,
    poses: Vec<Pose>,
    gripper: Vec<f64>,
}

/// Chunking parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkConfig {
    /// Actions per chunk (`H`).
    pub horizon: usize,
    /// Rate of the actions, Hz.
    pub rate_hz: f64,
}

impl Default for ChunkConfig {
    /// The paper's H = 5 at 5 Hz.
    fn default() -> Self {
        Self { horizon: 5, rate_hz: 5.0 }
    }
}

/// The action chunk of one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionChunk {
    /// `horizon × ACTION_DIM` values, row-major.
    pub actions: Vec<f32>,
    /// Whether each action is real (`false`: padding past the episode's end).
    pub mask: Vec<bool>,
}

/// Why a trajectory cannot be chunked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResampleError {
    /// A rate is not a positive finite number.
    #[error("rate {0} Hz is not a positive number")]
    Rate(f64),
    /// No frame.
    #[error("an empty trajectory")]
    Empty,
    /// Poses and gripper commands differ in length.
    #[error("{poses} poses but {gripper} gripper commands")]
    Length {
        /// Poses.
        poses: usize,
        /// Gripper commands.
        gripper: usize,
    },
    /// A value is NaN, infinite or beyond f32's range.
    #[error("frame {frame}: {what} is not a finite f32")]
    NonFinite {
        /// The frame.
        frame: usize,
        /// Which value.
        what: &'static str,
    },
}

impl Trajectory {
    /// A trajectory of `poses` and gripper commands (in [0, 1], 1 = closed) recorded at `rate_hz`.
    pub fn new(rate_hz: f64, poses: Vec<Pose>, gripper: Vec<f64>) -> Result<Self, ResampleError> {
        if !(rate_hz.is_finite() && rate_hz > 0.0) {
            return Err(ResampleError::Rate(rate_hz));
        }
        if poses.len() != gripper.len() {
            return Err(ResampleError::Length { poses: poses.len(), gripper: gripper.len() });
        }
        if poses.is_empty() {
            return Err(ResampleError::Empty);
        }
        // Finite and within f32's range, since states and actions are handed on as f32.
        let fits = |x: &f64| x.is_finite() && x.abs() <= f64::from(f32::MAX);
        for (frame, (pose, g)) in poses.iter().zip(&gripper).enumerate() {
            if !pose.translation.iter().all(fits) {
                return Err(ResampleError::NonFinite { frame, what: "position" });
            }
            if !pose.rotation.coords.iter().all(fits) {
                return Err(ResampleError::NonFinite { frame, what: "orientation" });
            }
            if !fits(g) {
                return Err(ResampleError::NonFinite { frame, what: "gripper command" });
            }
        }
        Ok(Self { rate_hz, poses, gripper })
    }

    /// Frames per second of the recording.
    pub fn rate_hz(&self) -> f64 {
        self.rate_hz
    }

    /// The end-effector pose of each frame (base frame).
    pub fn poses(&self) -> &[Pose] {
        &self.poses
    }

    /// The gripper command issued at each frame.
    pub fn gripper(&self) -> &[f64] {
        &self.gripper
    }

    /// Duration from the first to the last frame, seconds.
    pub fn duration(&self) -> f64 {
        self.poses.len().saturating_sub(1) as f64 / self.rate_hz
    }

    /// The pose at `time` seconds after the first frame (clamped to the recording): translation
    /// interpolated linearly and rotation by slerp between the two frames around it.
    pub fn pose_at(&self, time: f64) -> Pose {
        let (i, f) = self.locate(time);
        if f == 0.0 {
            return self.poses[i];
        }
        let (a, b) = (&self.poses[i], &self.poses[i + 1]);
        Pose::new(a.translation.lerp(&b.translation, f), slerp(&a.rotation, &b.rotation, f))
    }

    /// The gripper command in force at `time` (the last one issued at or before it).
    pub fn gripper_at(&self, time: f64) -> f64 {
        self.gripper[self.locate(time).0]
    }

    /// The frame at or before `time` and the fraction of the way to the next one.
    fn locate(&self, time: f64) -> (usize, f64) {
        let last = self.poses.len() - 1;
        let x = (time * self.rate_hz).clamp(0.0, last as f64);
        // Times on the frame grid computed as j/rate + m/5 can land a hair below an integer.
        let nearest = x.round();
        let x = if (x - nearest).abs() < 1e-9 { nearest } else { x };
        let i = (x.floor() as usize).min(last);
        if i == last { (last, 0.0) } else { (i, x - i as f64) }
    }

    /// Whether the recording reaches `time` (seconds after the first frame), with slack for the
    /// rounding of `j / rate + m / 5`.
    fn covers(&self, time: f64) -> bool {
        time <= self.duration() + 1e-9
    }

    /// Whether frame `frame`'s first action is real (not padding past the end): what
    /// `chunk(frame, config).mask[0]` says, without computing the chunk.
    pub fn first_action_real(&self, frame: usize, config: &ChunkConfig) -> bool {
        self.covers(frame as f64 / self.rate_hz + 1.0 / config.rate_hz)
    }

    /// The action chunk of frame `frame`.
    pub fn chunk(&self, frame: usize, config: &ChunkConfig) -> ActionChunk {
        let dt = 1.0 / config.rate_hz;
        let start = frame as f64 / self.rate_hz;
        let mut actions = Vec::with_capacity(config.horizon * ACTION_DIM);
        let mut mask = Vec::with_capacity(config.horizon);
        for m in 0..config.horizon {
            let (t0, t1) = (start + m as f64 * dt, start + (m + 1) as f64 * dt);
            let real = self.covers(t1);
            let delta = if real {
                self.pose_at(t0).delta_to(&self.pose_at(t1))
            } else {
                Pose::new(Vector3::zeros(), UnitQuaternion::identity())
            };
            let q = delta.rotation.quaternion();
            actions.extend(delta.translation.iter().map(|&x| x as f32));
            actions.extend([q.w, q.i, q.j, q.k].map(|x| x as f32));
            actions.push(self.gripper_at(t0.min(self.duration())) as f32);
            mask.push(real);
        }
        ActionChunk { actions, mask }
    }

    /// The chunks of every frame.
    pub fn chunks(&self, config: &ChunkConfig) -> Vec<ActionChunk> {
        (0..self.poses.len()).map(|j| self.chunk(j, config)).collect()
    }
}
