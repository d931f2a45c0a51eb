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
//!
//! Files: this one (the entry types and the lookup by name, [`register`] for datasets a program
//! generates), `registry.rs` (Table 4's entries), `episode.rs` ([`standardize`] and
//! [`StandardEpisode`]).

mod episode;
mod registry;

use std::sync::RwLock;

pub use episode::{Camera, STATE_DIM, StandardEpisode, standardize};
pub use registry::registry;

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
