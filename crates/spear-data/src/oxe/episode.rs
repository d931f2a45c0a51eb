//! [`standardize`]: one episode of a registry entry's dataset in SPEAR-1's step schema.

use nalgebra::{Matrix3, UnitQuaternion, Vector3};
use spear_geometry::pose::Pose;
use spear_geometry::quat::canonicalize;
use spear_geometry::rotation::{
    quat_from_euler_xyz, quat_from_rotation, quat_from_rotvec, rotation_from_matrix,
};

use super::{DatasetSpec, DeltaFrame, GripperSource, LanguageSource, Orientation, PoseSource};
use crate::images::Image;
use crate::resample::{ActionChunk, ChunkConfig, Trajectory};
use crate::rlds::{Episode, RldsError, Values};

/// One episode in SPEAR-1's step schema, at the dataset's native rate.
#[derive(Debug, Clone)]
pub struct StandardEpisode {
    /// The dataset's registry entry.
    pub spec: DatasetSpec,
    /// The instruction (empty when the episode has none).
    pub instruction: String,
    /// End-effector poses and binary gripper commands.
    pub trajectory: Trajectory,
    /// Gripper state of each frame, in [0, 1] (1 = closed).
    pub gripper_state: Vec<f64>,
    /// The episode step each frame comes from (frames can start after step 0).
    pub steps: Vec<usize>,
    /// The episode, for its images.
    pub episode: Episode,
}

/// Which camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Camera {
    /// The external (third-person) camera.
    External,
    /// The wrist camera.
    Wrist,
}

/// Floats in a state: position (3), quaternion `(w, x, y, z)` (4), gripper (1).
pub const STATE_DIM: usize = 8;

impl StandardEpisode {
    /// Frames.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there is no frame.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The proprioceptive state of `frame`.
    pub fn state(&self, frame: usize) -> [f32; STATE_DIM] {
        let pose = &self.trajectory.poses()[frame];
        let q = pose.rotation.quaternion();
        let t = pose.translation;
        [t.x, t.y, t.z, q.w, q.i, q.j, q.k, self.gripper_state[frame]].map(|x| x as f32)
    }

    /// The action chunk of `frame`.
    pub fn chunk(&self, frame: usize, config: &ChunkConfig) -> ActionChunk {
        self.trajectory.chunk(frame, config)
    }

    /// The image of `camera` at `frame`; `None` when the dataset has no such camera.
    pub fn image(&self, camera: Camera, frame: usize) -> Result<Option<Image>, RldsError> {
        let key = match camera {
            Camera::External => Some(self.spec.external),
            Camera::Wrist => self.spec.wrist,
        };
        key.map(|key| self.episode.image(key, self.steps[frame])).transpose()
    }
}

/// A step field's rows as f64 vectors, or an error naming it.
fn rows(episode: &Episode, key: &str) -> Result<Vec<Vec<f64>>, RldsError> {
    let column = episode.column(key)?;
    (0..column.rows)
        .map(|i| column.row_f64(i).ok_or_else(|| episode.source.error(key, "is not numeric")))
        .collect()
}

fn need(episode: &Episode, key: &str, row: &[f64], end: usize) -> Result<(), RldsError> {
    if row.len() < end {
        return Err(episode
            .source
            .error(key, format!("has {} values, the registry reads up to index {}", row.len(), end - 1)));
    }
    Ok(())
}

/// Reads an orientation from `row`; `key` and `step` name it in errors.
fn orientation(
    episode: &Episode,
    key: &str,
    step: usize,
    row: &[f64],
    format: Orientation,
) -> Result<UnitQuaternion<f64>, RldsError> {
    use Orientation::*;
    let end = match format {
        EulerXyz(o) | EulerXyzDegrees(o) | EulerZxy(o) | RotVec(o) => o + 3,
        QuatXyzw(o) | QuatWxyz(o) => o + 4,
        Fixed => 0,
    };
    need(episode, key, row, end)?;
    let quat = |w: f64, x: f64, y: f64, z: f64| {
        let q = nalgebra::Quaternion::new(w, x, y, z);
        let norm = q.norm();
        // Stored quaternions are rounded to float32, and some exporters store them unnormalised;
        // a zero or wildly off norm means a missing pose.
        if !(0.9..=1.1).contains(&norm) {
            return Err(episode
                .source
                .error(key, format!("step {step}: quaternion norm {norm:.4} is not ≈ 1")));
        }
        Ok(UnitQuaternion::new_normalize(q))
    };
    let q = match format {
        EulerXyz(o) => quat_from_euler_xyz(row[o], row[o + 1], row[o + 2]),
        EulerXyzDegrees(o) => {
            quat_from_euler_xyz(row[o].to_radians(), row[o + 1].to_radians(), row[o + 2].to_radians())
        }
        EulerZxy(o) => {
            let axis = |v: Vector3<f64>, angle: f64| {
                UnitQuaternion::from_axis_angle(&nalgebra::Unit::new_unchecked(v), angle)
            };
            axis(Vector3::y(), row[o + 2]) * axis(Vector3::x(), row[o + 1]) * axis(Vector3::z(), row[o])
        }
        QuatXyzw(o) => quat(row[o + 3], row[o], row[o + 1], row[o + 2])?,
        QuatWxyz(o) => quat(row[o], row[o + 1], row[o + 2], row[o + 3])?,
        RotVec(o) => quat_from_rotvec(&Vector3::new(row[o], row[o + 1], row[o + 2])),
        Fixed => UnitQuaternion::identity(),
    };
    Ok(canonicalize(&q))
}

/// The pose of every step (`None` where the source has none: frame 0 of `NextVector`).
fn poses(episode: &Episode, source: &PoseSource) -> Result<Vec<Option<Pose>>, RldsError> {
    match *source {
        PoseSource::Vector { key, position, position_dims, position_scale, orientation: format } => {
            rows(episode, key)?
                .iter()
                .enumerate()
                .map(|(step, row)| {
                    need(episode, key, row, position + position_dims)?;
                    let mut p = Vector3::zeros();
                    for d in 0..position_dims {
                        p[d] = row[position + d] * position_scale;
                    }
                    Ok(Some(Pose::new(p, orientation(episode, key, step, row, format)?)))
                })
                .collect()
        }
        PoseSource::NextVector { key, position, orientation: format } => {
            let mut out = vec![None];
            for (step, row) in rows(episode, key)?.iter().enumerate().take(episode.len.saturating_sub(1)) {
                need(episode, key, row, position + 3)?;
                let p = Vector3::new(row[position], row[position + 1], row[position + 2]);
                out.push(Some(Pose::new(p, orientation(episode, key, step, row, format)?)));
            }
            Ok(out)
        }
        PoseSource::Matrix { key, offset, column_major } => rows(episode, key)?
            .iter()
            .enumerate()
            .map(|(step, row)| {
                need(episode, key, row, offset + 16)?;
                let at = |r: usize, c: usize| {
                    if column_major { row[offset + 4 * c + r] } else { row[offset + 4 * r + c] }
                };
                let m = Matrix3::from_fn(at);
                let rotation = rotation_from_matrix(&m, 1e-3)
                    .map_err(|e| episode.source.error(key, format!("step {step}: {e}")))?;
                Ok(Some(Pose::new(Vector3::new(at(0, 3), at(1, 3), at(2, 3)), quat_from_rotation(&rotation))))
            })
            .collect(),
        PoseSource::Integrate { translation, translation_offset, rotation, orientation: format, frame } => {
            let (moves, turns) = (rows(episode, translation)?, rows(episode, rotation)?);
            let mut pose = Pose::new(Vector3::zeros(), UnitQuaternion::identity());
            let mut out = Vec::with_capacity(episode.len);
            for (step, (m, r)) in moves.iter().zip(&turns).enumerate() {
                out.push(Some(pose));
                need(episode, translation, m, translation_offset + 3)?;
                let delta = orientation(episode, rotation, step, r, format)?;
                pose.translation +=
                    Vector3::new(m[translation_offset], m[translation_offset + 1], m[translation_offset + 2]);
                pose.rotation = canonicalize(&match frame {
                    DeltaFrame::Base => delta * pose.rotation,
                    DeltaFrame::EndEffector => pose.rotation * delta,
                });
            }
            Ok(out)
        }
    }
}

/// The raw gripper values at `index` of `key`, each finite, or an error naming the key and step.
fn gripper_values(episode: &Episode, key: &str, index: usize) -> Result<Vec<f64>, RldsError> {
    rows(episode, key)?
        .iter()
        .enumerate()
        .map(|(step, row)| {
            need(episode, key, row, index + 1)?;
            let v = row[index];
            if !v.is_finite() {
                return Err(episode.source.error(key, format!("step {step}: gripper value {v}")));
            }
            Ok(v)
        })
        .collect()
}

/// Closedness in [0, 1] of every step.
fn gripper(episode: &Episode, source: &GripperSource) -> Result<Vec<f64>, RldsError> {
    match *source {
        GripperSource::Constant(c) => Ok(vec![c; episode.len]),
        GripperSource::Linear { key, index, open, closed } => Ok(gripper_values(episode, key, index)?
            .into_iter()
            .map(|v| ((v - open) / (closed - open)).clamp(0.0, 1.0))
            .collect()),
        GripperSource::Events { key, index } => {
            let events: Vec<f64> = gripper_values(episode, key, index)?
                .into_iter()
                .map(|v| match v {
                    v if v > 0.1 => 1.0,
                    v if v < -0.1 => -1.0,
                    _ => 0.0,
                })
                .collect();
            // Before the first event the gripper is in the state that event leaves.
            let mut closed = events.iter().find(|&&e| e != 0.0).is_some_and(|&e| e < 0.0);
            Ok(events
                .iter()
                .map(|&e| {
                    if e != 0.0 {
                        closed = e > 0.0;
                    }
                    f64::from(u8::from(closed))
                })
                .collect())
        }
    }
}

fn instruction(episode: &Episode, source: &LanguageSource) -> Result<String, RldsError> {
    let text = match *source {
        LanguageSource::None => return Ok(String::new()),
        LanguageSource::Text(key) => {
            let bytes = episode.column(key)?.bytes(0).unwrap_or_default();
            String::from_utf8(bytes.to_vec())
                .map_err(|_| episode.source.error(key, "instruction is not UTF-8"))?
        }
        LanguageSource::Utf8Ints(key) => {
            let column = episode.column(key)?;
            let Values::Int(values) = &column.values else {
                return Err(episode.source.error(key, "is not an integer field"));
            };
            let bytes: Vec<u8> = values[..column.row_len().min(values.len())]
                .iter()
                .take_while(|&&v| v != 0)
                .map(|&v| {
                    u8::try_from(v).map_err(|_| episode.source.error(key, format!("{v} is not a byte")))
                })
                .collect::<Result<_, _>>()?;
            String::from_utf8(bytes).map_err(|_| episode.source.error(key, "instruction is not UTF-8"))?
        }
    };
    Ok(text.trim().to_string())
}

/// Converts one episode of `spec`'s dataset into the step schema.
pub fn standardize(spec: &DatasetSpec, episode: Episode) -> Result<StandardEpisode, RldsError> {
    if let Some(reason) = spec.excluded {
        return Err(episode.source.error(spec.name, format!("excluded from the mixture: {reason}")));
    }
    for key in [Some(spec.external), spec.wrist].into_iter().flatten() {
        episode.column(key)?;
    }
    let instruction = instruction(&episode, &spec.language)?;
    let poses = poses(&episode, &spec.pose)?;
    let state = gripper(&episode, &spec.gripper_state)?;
    let command = gripper(&episode, &spec.gripper_command)?;
    let mut steps = Vec::new();
    let (mut kept_poses, mut kept_state, mut kept_command) = (Vec::new(), Vec::new(), Vec::new());
    for (step, pose) in poses.into_iter().enumerate() {
        if let Some(pose) = pose {
            steps.push(step);
            kept_poses.push(pose);
            kept_state.push(state[step]);
            kept_command.push(if command[step] >= 0.5 { 1.0 } else { 0.0 });
        }
    }
    let trajectory = Trajectory::new(spec.rate_hz, kept_poses, kept_command)
        .map_err(|e| episode.source.error(spec.name, e.to_string()))?;
    Ok(StandardEpisode {
        spec: spec.clone(),
        instruction,
        trajectory,
        gripper_state: kept_state,
        steps,
        episode,
    })
}
