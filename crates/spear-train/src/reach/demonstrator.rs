//! The scripted demonstrator: straight toward the goal and turning toward it by the same share,
//! closing within 1 cm and 5°, at 5 Hz.

use nalgebra::{UnitQuaternion, Vector3};
use spear_data::oxe::STATE_DIM;
use spear_data::resample::ACTION_DIM;
use spear_geometry::pose::Pose;
use spear_geometry::quat::{canonicalize, slerp};

use super::{CLOSE_ANGLE_DEG, CLOSE_DISTANCE, HOLD_FRAMES, ReachConfig, Scene};

/// A pose and a gripper value in the layout states and actions share: position, canonical
/// quaternion `w, x, y, z`, gripper (closedness for a state, the close command for an action).
pub(super) fn pose_row(pose: &Pose, gripper: f64) -> [f32; STATE_DIM] {
    const _: () = assert!(STATE_DIM == ACTION_DIM);
    let (t, q) = (pose.translation, canonicalize(&pose.rotation));
    [t.x, t.y, t.z, q.w, q.i, q.j, q.k, gripper].map(|v| v as f32)
}

/// The pose of a stored state (quaternion renormalised after its rounding to f32).
pub(super) fn state_pose(state: &[f32; STATE_DIM]) -> Pose {
    let s = state.map(f64::from);
    let q = nalgebra::Quaternion::new(s[3], s[4], s[5], s[6]);
    Pose::new(Vector3::new(s[0], s[1], s[2]), UnitQuaternion::new_normalize(q))
}

/// The demonstrator's move from `pose`: a step straight toward `target` of at most `max_step` and
/// a turn toward it of at most `max_turn_deg` about the shortest axis, expressed in the
/// end-effector frame; and whether to close the gripper with it, which it does within 1 cm and 5°
/// of the goal (or one step and one turn, when those are smaller), so that the closing move ends
/// exactly on the goal.
pub(super) fn expert_step(config: &ReachConfig, pose: &Pose, target: &Pose) -> (Pose, bool) {
    let offset = target.translation - pose.translation;
    let turn = canonicalize(&(pose.rotation.inverse() * target.rotation));
    let (distance, angle) = (offset.norm(), turn.angle());
    let max_turn = config.max_turn_deg.to_radians();
    let close = distance <= CLOSE_DISTANCE.min(config.max_step)
        && angle <= CLOSE_ANGLE_DEG.to_radians().min(max_turn);
    // The same share of the way in position and in rotation, so that both arrive together and
    // every moving frame turns (an episode that turned only at its start would show the turning
    // while the block is still out of the wrist camera's view); the turn capped at `max_turn`.
    // At the goal the ratio is infinite and the share 1.
    let share = (config.max_step / distance).min(1.0);
    let translation = offset * share;
    let turn_share = if angle * share <= max_turn { share } else { max_turn / angle };
    let rotation = slerp(&UnitQuaternion::identity(), &turn, turn_share);
    (Pose::new(translation, rotation), close)
}

/// The demonstrator's episode in one scene, at 5 Hz.
#[derive(Debug, Clone, PartialEq)]
pub struct Demonstration {
    /// The end effector's pose at each frame.
    pub poses: Vec<Pose>,
    /// The gripper's closedness at each frame (1 = closed).
    pub gripper: Vec<f64>,
    /// The gripper command issued at each frame (1 = close).
    pub commands: Vec<f64>,
}

impl Demonstration {
    /// Runs the demonstrator from the scene's start until it has closed and held, or for
    /// `config.frames` frames (a validated config leaves room for the worst case).
    pub fn record(config: &ReachConfig, scene: &Scene) -> Self {
        let target = scene.target_pose();
        let mut pose = scene.start;
        let mut closed_at: Option<usize> = None;
        let mut demo = Self { poses: Vec::new(), gripper: Vec::new(), commands: Vec::new() };
        for frame in 0..config.frames {
            demo.poses.push(pose);
            if let Some(closed) = closed_at {
                demo.gripper.push(1.0);
                demo.commands.push(1.0);
                if frame == closed + HOLD_FRAMES {
                    break;
                }
                continue;
            }
            let (delta, close) = expert_step(config, &pose, &target);
            demo.gripper.push(0.0);
            demo.commands.push(if close { 1.0 } else { 0.0 });
            if close {
                closed_at = Some(frame);
            }
            pose = pose.apply_delta(&delta);
        }
        demo
    }

    /// Frames.
    pub fn len(&self) -> usize {
        self.poses.len()
    }

    /// Whether there is no frame (only with `frames = 0`, which validation refuses).
    pub fn is_empty(&self) -> bool {
        self.poses.is_empty()
    }

    /// The stored state of `frame`.
    pub fn state(&self, frame: usize) -> [f32; STATE_DIM] {
        pose_row(&self.poses[frame], self.gripper[frame])
    }

    /// The stored action of `frame`: the delta to the next frame's pose ([`Pose::delta_to`]:
    /// translation in the base frame, rotation in the end-effector frame; identity at the last
    /// frame) and the gripper command.
    pub fn action(&self, frame: usize) -> [f32; ACTION_DIM] {
        let next = self.poses.get(frame + 1).unwrap_or(&self.poses[frame]);
        pose_row(&self.poses[frame].delta_to(next), self.commands[frame])
    }
}
