//! The Open X-Embodiment registry: for each dataset of the paper's mixture (Table 4), where its
//! cameras, instruction, end-effector pose and gripper live, and how they become SPEAR-1's one step
//! schema ([`standardize`]): an end-effector trajectory in the robot base frame (position + unit
//! quaternion, `w ≥ 0`) with a binary gripper command per frame (1 = closed) and the gripper state
//! in [0, 1] (1 = closed), at the dataset's native rate. [`crate::resample`] turns that trajectory
//! into 5 Hz action chunks (translation deltas in the base frame, rotation deltas in the
//! end-effector frame).
//!
//! Actions are always recomputed from poses — observed poses where a dataset records them, poses
//! integrated from its delta actions where it does not — because the stored action vectors mean
//! different things per dataset (normalised controller inputs, Euler differences, velocities,
//! absolute targets). Every entry's sources and assumptions are in `docs/datasets.md`; `features.json`
//! of the dataset is the ground truth for keys and shapes, and a key an entry names but the dataset
//! lacks is an error naming both.

use std::sync::RwLock;

use nalgebra::{Matrix3, UnitQuaternion, Vector3};
use spear_geometry::pose::Pose;
use spear_geometry::quat::canonicalize;
use spear_geometry::rotation::{
    quat_from_euler_xyz, quat_from_rotation, quat_from_rotvec, rotation_from_matrix,
};

use crate::images::Image;
use crate::resample::{ActionChunk, ChunkConfig, Trajectory};
use crate::rlds::{Episode, RldsError, Values};

/// How an orientation is stored in a float vector, starting at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// Extrinsic x-y-z Euler angles (roll, pitch, yaw; scipy's `"xyz"`), radians.
    EulerXyz(usize),
    /// Extrinsic x-y-z Euler angles in degrees.
    EulerXyzDegrees(usize),
    /// scipy's extrinsic `"zxy"`: the angles about z, x, y in that order (`R = R_y·R_x·R_z`).
    EulerZxy(usize),
    /// Quaternion `(x, y, z, w)`.
    QuatXyzw(usize),
    /// Quaternion `(w, x, y, z)`.
    QuatWxyz(usize),
    /// Rotation vector (axis × angle), radians.
    RotVec(usize),
    /// No orientation: the end effector never rotates (planar pushers).
    Fixed,
}

/// In which frame a delta rotation composes with the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaFrame {
    /// `R' = ΔR · R` (the delta is expressed in the base frame).
    Base,
    /// `R' = R · ΔR` (the delta is expressed in the end-effector frame).
    EndEffector,
}

/// Where the end-effector pose of each frame comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PoseSource {
    /// A float vector holding the position (3 values, or 2 for a planar robot with `z = 0`) and
    /// an orientation.
    Vector {
        /// Step field.
        key: &'static str,
        /// Offset of the position.
        position: usize,
        /// Position components (3, or 2 for planar data).
        position_dims: usize,
        /// Metres per stored unit (0.001 for millimetres).
        position_scale: f64,
        /// The orientation.
        orientation: Orientation,
    },
    /// Like `Vector`, but the value stored at step `t` is the pose reached at step `t + 1` (an
    /// absolute target), so frame 0 has no pose and is dropped.
    NextVector {
        /// Step field.
        key: &'static str,
        /// Offset of the position.
        position: usize,
        /// The orientation.
        orientation: Orientation,
    },
    /// A 4×4 homogeneous matrix of 16 floats.
    Matrix {
        /// Step field.
        key: &'static str,
        /// Offset of the 16 values.
        offset: usize,
        /// Whether it is stored column by column (libfranka's `O_T_EE`).
        column_major: bool,
    },
    /// No pose recorded: integrate the per-step delta actions from the identity pose.
    Integrate {
        /// Step field of the translation delta (3 values, base frame, metres).
        translation: &'static str,
        /// Offset inside it.
        translation_offset: usize,
        /// Step field of the rotation delta.
        rotation: &'static str,
        /// How the rotation delta is stored.
        orientation: Orientation,
        /// How it composes.
        frame: DeltaFrame,
    },
}

/// Where a gripper value comes from and how it maps to closedness in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GripperSource {
    /// A value that is `open` when fully open and `closed` when fully closed, linearly in between,
    /// clamped (widths, ±1 commands, bools as 0/1).
    Linear {
        /// Step field.
        key: &'static str,
        /// Index inside it.
        index: usize,
        /// The value meaning open.
        open: f64,
        /// The value meaning closed.
        closed: f64,
    },
    /// Relative events: above +0.1 closes, below −0.1 opens, otherwise no change. The state before
    /// the first event is the opposite of that event (open if none), as Octo and OpenVLA assume.
    Events {
        /// Step field.
        key: &'static str,
        /// Index inside it.
        index: usize,
    },
    /// A dataset without a gripper (or one that never moves it).
    Constant(f64),
}

/// Where the instruction comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanguageSource {
    /// A text/string step field (the first step's value is the episode's).
    Text(&'static str),
    /// An int32 step field of UTF-8 bytes, zero padded (language_table).
    Utf8Ints(&'static str),
    /// None recorded.
    None,
}

/// One dataset of the mixture.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    /// The RLDS name (folder name in the OXE bucket).
    pub name: &'static str,
    /// The name in the paper's Table 4 and `configs/data/oxe_mixture.toml`.
    pub mixture_name: &'static str,
    /// Sampling weight in Table 4.
    pub weight: f64,
    /// Native control rate, Hz.
    pub rate_hz: f64,
    /// External camera (step image field).
    pub external: &'static str,
    /// Wrist camera, if the dataset has one.
    pub wrist: Option<&'static str>,
    /// The instruction.
    pub language: LanguageSource,
    /// The end-effector pose.
    pub pose: PoseSource,
    /// Gripper state (observation).
    pub gripper_state: GripperSource,
    /// Gripper command (action), binarised at 0.5.
    pub gripper_command: GripperSource,
    /// Why the dataset cannot be used yet, for the entries the registry lists but excludes.
    pub excluded: Option<&'static str>,
}

/// A gripper value read linearly from `key[index]`: `open` maps to 0 and `closed` to 1.
pub const fn linear(key: &'static str, index: usize, open: f64, closed: f64) -> GripperSource {
    GripperSource::Linear { key, index, open, closed }
}

/// A pose stored as a vector `key`: metres at `position..position + 3`, then `orientation`.
pub const fn vector(key: &'static str, position: usize, orientation: Orientation) -> PoseSource {
    PoseSource::Vector { key, position, position_dims: 3, position_scale: 1.0, orientation }
}

const fn franka_matrix(key: &'static str, offset: usize) -> PoseSource {
    PoseSource::Matrix { key, offset, column_major: true }
}

const fn integrate_base_euler() -> PoseSource {
    PoseSource::Integrate {
        translation: "action/world_vector",
        translation_offset: 0,
        rotation: "action/rotation_delta",
        orientation: Orientation::EulerXyz(0),
        frame: DeltaFrame::Base,
    }
}

/// The Franka Hand's full opening, metres.
const FRANKA_WIDTH: f64 = 0.08;

/// deoxys (UT-Austin): `action[6]` −1 opens, +1 closes; the gripper state is the finger width.
const fn deoxys(
    name: &'static str,
    mixture_name: &'static str,
    weight: f64,
    pose: PoseSource,
    width: GripperSource,
) -> DatasetSpec {
    DatasetSpec {
        name,
        mixture_name,
        weight,
        rate_hz: 20.0,
        external: "observation/image",
        wrist: Some("observation/wrist_image"),
        language: LanguageSource::Text("language_instruction"),
        pose,
        gripper_state: width,
        gripper_command: linear("action", 6, -1.0, 1.0),
        excluded: None,
    }
}

/// Every dataset of the paper's Table 4, in its order.
pub fn registry() -> Vec<DatasetSpec> {
    use LanguageSource::{Text, Utf8Ints};
    use Orientation::*;
    let rt1_language = Text("observation/natural_language_instruction");
    vec![
        deoxys(
            "austin_buds_dataset_converted_externally_to_rlds",
            "austin_buds_dataset",
            0.5,
            franka_matrix("observation/state", 8),
            linear("observation/state", 7, FRANKA_WIDTH, 0.0),
        ),
        deoxys(
            "austin_sailor_dataset_converted_externally_to_rlds",
            "austin_sailor_dataset",
            2.0,
            franka_matrix("observation/state_ee", 0),
            linear("observation/state_gripper", 0, FRANKA_WIDTH, 0.0),
        ),
        deoxys(
            "austin_sirius_dataset_converted_externally_to_rlds",
            "austin_sirius_dataset",
            0.5,
            franka_matrix("observation/state_ee", 0),
            linear("observation/state_gripper", 0, FRANKA_WIDTH, 0.0),
        ),
        DatasetSpec {
            name: "berkeley_autolab_ur5",
            mixture_name: "berkeley_autolab_ur5",
            weight: 1.0,
            rate_hz: 5.0,
            external: "observation/image",
            wrist: Some("observation/hand_image"),
            language: rt1_language,
            pose: vector("observation/robot_state", 6, QuatXyzw(9)),
            gripper_state: linear("observation/robot_state", 13, 0.0, 1.0),
            gripper_command: GripperSource::Events { key: "action/gripper_closedness_action", index: 0 },
            excluded: None,
        },
        DatasetSpec {
            name: "berkeley_cable_routing",
            mixture_name: "berkeley_cable_routing",
            weight: 0.1,
            rate_hz: 10.0,
            external: "observation/image",
            wrist: Some("observation/wrist45_image"),
            language: rt1_language,
            pose: integrate_base_euler(),
            // The cable stays grasped.
            gripper_state: GripperSource::Constant(1.0),
            gripper_command: GripperSource::Constant(1.0),
            excluded: None,
        },
        DatasetSpec {
            name: "berkeley_fanuc_manipulation",
            mixture_name: "berkeley_fanuc_manipulation",
            weight: 1.0,
            rate_hz: 10.0,
            external: "observation/image",
            wrist: Some("observation/wrist_image"),
            language: Text("language_instruction"),
            pose: vector("observation/end_effector_state", 0, QuatXyzw(3)),
            gripper_state: linear("observation/state", 6, 0.0, 1.0),
            // No gripper action is stored: the state stands in for the command.
            gripper_command: linear("observation/state", 6, 0.0, 1.0),
            excluded: None,
        },
        DatasetSpec {
            name: "bridge_dataset",
            mixture_name: "bridge",
            weight: 18.0,
            rate_hz: 5.0,
            external: "observation/image_0",
            wrist: None,
            language: Text("language_instruction"),
            pose: vector("observation/state", 0, EulerXyz(3)),
            gripper_state: linear("observation/state", 6, 1.0, 0.0),
            gripper_command: linear("action", 6, 1.0, 0.0),
            excluded: None,
        },
        DatasetSpec {
            name: "dlr_edan_shared_control_converted_externally_to_rlds",
            mixture_name: "dlr_edan_shared_control",
            weight: 0.1,
            rate_hz: 5.0,
            external: "observation/image",
            wrist: None,
            language: Text("language_instruction"),
            pose: vector("observation/state", 0, EulerZxy(3)),
            gripper_state: linear("observation/state", 6, 0.0, 1.0),
            gripper_command: linear("action", 6, 0.0, 1.0),
            excluded: None,
        },
        DatasetSpec {
            name: "droid",
            mixture_name: "droid",
            weight: 35.0,
            rate_hz: 15.0,
            external: "observation/exterior_image_1_left",
            wrist: Some("observation/wrist_image_left"),
            language: Text("language_instruction"),
            pose: vector("observation/cartesian_position", 0, EulerXyz(3)),
            gripper_state: linear("observation/gripper_position", 0, 0.0, 1.0),
            gripper_command: linear("action_dict/gripper_position", 0, 0.0, 1.0),
            excluded: None,
        },
        DatasetSpec {
            name: "fmb",
            mixture_name: "fmb",
            weight: 1.5,
            rate_hz: 10.0,
            external: "observation/image_side_1",
            wrist: Some("observation/image_wrist_1"),
            language: Text("language_instruction"),
            pose: vector("observation/eef_pose", 0, QuatXyzw(3)),
            gripper_state: linear("observation/state_gripper_pose", 0, 0.0, 1.0),
            gripper_command: linear("action", 6, 0.0, 1.0),
            excluded: None,
        },
        DatasetSpec {
            name: "fractal20220817_data",
            mixture_name: "fractal20220817_data",
            weight: 12.0,
            rate_hz: 3.0,
            external: "observation/image",
            wrist: None,
            language: rt1_language,
            pose: vector("observation/base_pose_tool_reached", 0, QuatXyzw(3)),
            gripper_state: linear("observation/gripper_closed", 0, 0.0, 1.0),
            gripper_command: GripperSource::Events { key: "action/gripper_closedness_action", index: 0 },
            excluded: None,
        },
        DatasetSpec {
            name: "furniture_bench_dataset_converted_externally_to_rlds",
            mixture_name: "furniture_bench_dataset",
            weight: 1.5,
            rate_hz: 10.0,
            external: "observation/image",
            wrist: Some("observation/wrist_image"),
            language: Text("language_instruction"),
            pose: vector("observation/state", 0, QuatXyzw(3)),
            gripper_state: linear("observation/state", 34, FRANKA_WIDTH, 0.0),
            gripper_command: linear("action", 7, -1.0, 1.0),
            excluded: None,
        },
        DatasetSpec {
            name: "iamlab_cmu_pickup_insert_converted_externally_to_rlds",
            mixture_name: "iamlab_cmu_pickup_insert",
            weight: 0.3,
            rate_hz: 20.0,
            external: "observation/image",
            wrist: Some("observation/wrist_image"),
            language: Text("language_instruction"),
            pose: PoseSource::NextVector { key: "action", position: 0, orientation: QuatWxyz(3) },
            gripper_state: linear("observation/state", 7, 1.0, 0.0),
            gripper_command: linear("action", 7, 1.0, 0.0),
            excluded: None,
        },
        DatasetSpec {
            name: "kuka",
            mixture_name: "kuka",
            weight: 4.0,
            rate_hz: 10.0,
            external: "observation/image",
            wrist: None,
            language: rt1_language,
            pose: vector("observation/clip_function_input/base_pose_tool_reached", 0, QuatXyzw(3)),
            gripper_state: linear("observation/gripper_closed", 0, 0.0, 1.0),
            gripper_command: GripperSource::Events { key: "action/gripper_closedness_action", index: 0 },
            excluded: None,
        },
        DatasetSpec {
            name: "language_table",
            mixture_name: "language_table",
            weight: 1.5,
            rate_hz: 10.0,
            external: "observation/rgb",
            wrist: None,
            language: Utf8Ints("observation/instruction"),
            pose: PoseSource::Vector {
                key: "observation/effector_translation",
                position: 0,
                position_dims: 2,
                position_scale: 1.0,
                orientation: Fixed,
            },
            // A pusher, no gripper: "open".
            gripper_state: GripperSource::Constant(0.0),
            gripper_command: GripperSource::Constant(0.0),
            excluded: None,
        },
        DatasetSpec {
            name: "nyu_franka_play_dataset_converted_externally_to_rlds",
            mixture_name: "nyu_franka_play_dataset",
            weight: 0.3,
            rate_hz: 3.0,
            external: "observation/image",
            wrist: None,
            language: Text("language_instruction"),
            pose: vector("observation/state", 7, EulerXyz(10)),
            // No gripper state: the command stands in.
            gripper_state: linear("action", 13, 1.0, -1.0),
            gripper_command: linear("action", 13, 1.0, -1.0),
            excluded: None,
        },
        DatasetSpec {
            name: "robo_set",
            mixture_name: "roboset",
            // Table 4: 2.0 kinesthetic + 5.0 teleoperation.
            weight: 7.0,
            rate_hz: 5.0,
            external: "observation/image_left",
            wrist: Some("observation/image_wrist"),
            language: Text("language_instruction"),
            pose: vector("observation/state", 0, Fixed),
            gripper_state: linear("observation/state", 7, 0.0, 1.0),
            gripper_command: linear("action", 7, -1.0, 1.0),
            excluded: Some(
                "joint-space only (joint states and joint-position actions, no end-effector pose); needs the \
                 Franka's forward kinematics",
            ),
        },
        DatasetSpec {
            name: "roboturk",
            mixture_name: "roboturk",
            weight: 3.0,
            rate_hz: 10.0,
            external: "observation/front_rgb",
            wrist: None,
            language: rt1_language,
            pose: integrate_base_euler(),
            gripper_state: linear("action/gripper_closedness_action", 0, 0.0, 1.0),
            gripper_command: linear("action/gripper_closedness_action", 0, 0.0, 1.0),
            excluded: None,
        },
        DatasetSpec {
            name: "stanford_hydra_dataset_converted_externally_to_rlds",
            mixture_name: "stanford_hydra_dataset",
            weight: 3.0,
            rate_hz: 10.0,
            external: "observation/image",
            wrist: Some("observation/wrist_image"),
            language: Text("language_instruction"),
            pose: vector("observation/state", 0, QuatXyzw(3)),
            gripper_state: linear("observation/state", 25, 0.0, 1.0),
            gripper_command: linear("action", 6, 0.0, 1.0),
            excluded: None,
        },
        DatasetSpec {
            name: "taco_play",
            mixture_name: "taco_play",
            weight: 2.0,
            rate_hz: 15.0,
            external: "observation/rgb_static",
            wrist: Some("observation/rgb_gripper"),
            language: rt1_language,
            pose: vector("observation/robot_obs", 0, EulerXyz(3)),
            gripper_state: linear("observation/robot_obs", 6, FRANKA_WIDTH, 0.0),
            // robot_obs[14], the gripper action: the TACO README's "close = −1, open = 1".
            gripper_command: linear("observation/robot_obs", 14, 1.0, -1.0),
            excluded: None,
        },
        DatasetSpec {
            name: "toto",
            mixture_name: "toto",
            weight: 1.5,
            rate_hz: 30.0,
            external: "observation/image",
            wrist: None,
            language: rt1_language,
            pose: integrate_base_euler(),
            gripper_state: linear("action/open_gripper", 0, 1.0, 0.0),
            gripper_command: linear("action/open_gripper", 0, 1.0, 0.0),
            excluded: None,
        },
        DatasetSpec {
            name: "ucsd_kitchen_dataset_converted_externally_to_rlds",
            mixture_name: "ucsd_kitchen_dataset",
            weight: 0.2,
            rate_hz: 2.0,
            external: "observation/image",
            wrist: None,
            language: Text("language_instruction"),
            // The action is the xArm's absolute pose in millimetres and degrees.
            pose: PoseSource::Vector {
                key: "action",
                position: 0,
                position_dims: 3,
                position_scale: 0.001,
                orientation: EulerXyzDegrees(3),
            },
            gripper_state: linear("action", 6, 0.0, 1.0),
            gripper_command: linear("action", 6, 0.0, 1.0),
            excluded: None,
        },
        deoxys(
            "utaustin_mutex",
            "utaustin_mutex",
            3.0,
            franka_matrix("observation/state", 8),
            linear("observation/state", 7, FRANKA_WIDTH, 0.0),
        ),
        DatasetSpec {
            external: "observation/agentview_rgb",
            wrist: Some("observation/eye_in_hand_rgb"),
            language: rt1_language,
            gripper_command: linear("action/gripper_closedness_action", 0, -1.0, 1.0),
            ..deoxys(
                "viola",
                "viola",
                1.0,
                franka_matrix("observation/ee_states", 0),
                linear("observation/gripper_states", 0, FRANKA_WIDTH, 0.0),
            )
        },
    ]
}

/// Entries handed over at run time: datasets a program generates itself (spear-train's
/// reach-and-rotate task registers `spear_reach_rotate`), defined beside their writers. They are
/// not in the paper's Table 4 (so not in [`registry`]), but [`spec`] and mixture files find them
/// by name like any entry.
static REGISTERED: RwLock<Vec<DatasetSpec>> = RwLock::new(Vec::new());

/// Adds `entry` to the registry for this process. Registering the same entry again does nothing;
/// an entry whose name (RLDS or mixture name) is already taken by another is refused, naming it.
pub fn register(entry: DatasetSpec) -> Result<(), String> {
    let mut registered = REGISTERED.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let clash = registry()
        .into_iter()
        .chain(registered.iter().cloned())
        .find(|s| [s.name, s.mixture_name].iter().any(|n| *n == entry.name || *n == entry.mixture_name));
    match clash {
        Some(existing) if existing == entry => Ok(()),
        Some(existing) => Err(format!(
            "registry: `{}` is already the entry of `{}`, which differs",
            entry.name, existing.name
        )),
        None => {
            registered.push(entry);
            Ok(())
        }
    }
}

impl DatasetSpec {
    /// The step fields [`standardize`] and the cameras read (a loader decodes only these).
    pub fn fields_read(&self) -> Vec<&'static str> {
        let mut keys = vec![self.external];
        keys.extend(self.wrist);
        match self.language {
            LanguageSource::Text(k) | LanguageSource::Utf8Ints(k) => keys.push(k),
            LanguageSource::None => {}
        }
        match self.pose {
            PoseSource::Vector { key, .. }
            | PoseSource::NextVector { key, .. }
            | PoseSource::Matrix { key, .. } => keys.push(key),
            PoseSource::Integrate { translation, rotation, .. } => keys.extend([translation, rotation]),
        }
        for gripper in [self.gripper_state, self.gripper_command] {
            if let GripperSource::Linear { key, .. } | GripperSource::Events { key, .. } = gripper {
                keys.push(key);
            }
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// The entry a mixture file names: by RLDS name (or alias) or by its Table 4 name (`bridge`,
/// `roboset`). Only for names written by people: a dataset's own `dataset_info.json` name goes
/// through [`spec`], since the bucket's older `bridge` export is not `bridge_dataset`.
pub fn spec_for_mixture(name: &str) -> Option<DatasetSpec> {
    spec(name).or_else(|| known().find(|s| s.mixture_name == name))
}

/// The mixture's datasets, then the [`register`]ed ones.
fn known() -> impl Iterator<Item = DatasetSpec> {
    let registered = REGISTERED.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    registry().into_iter().chain(registered)
}

/// Names some releases give themselves in `dataset_info.json`, and the entry they belong to:
/// DROID 1.0.1's is reportedly `droid_101`.
const ALIASES: [(&str, &str); 1] = [("droid_101", "droid")];

/// The registry entry for an RLDS dataset name (or a known alias of one), among the mixture's
/// datasets and the [`register`]ed ones.
pub fn spec(name: &str) -> Option<DatasetSpec> {
    let name = ALIASES.iter().find(|(alias, _)| *alias == name).map_or(name, |(_, real)| real);
    known().find(|s| s.name == name)
}

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
