//! A procedurally generated reach-and-rotate task, small enough to train a tiny SPEAR-1 on the CPU
//! in minutes and to show by closed-loop rollouts that it learned.
//!
//! * **Scene** ([`Scene::sample`], seeded by `(seed, index)` alone): 1 to 4 coloured 15 × 3 cm
//!   blocks (as many as the workspace holds; one by default) on a table, each with a random yaw; the instruction names one of them; the end effector starts above
//!   the table at a random height with a random yaw and a small tilt (`start_tilt_deg`), gripper open. The goal is the target
//!   block's top centre (plus 2 cm) at the block's yaw. Block yaws lie in ±65° and start yaws in
//!   ±20°, so the rotation left to do is always within ±85°: a long block looks the same
//!   after a half turn, and inside (−90°, 90°) the shorter way round is never in doubt.
//! * **Cameras** (RGB, 2×2 supersampled): the main camera looks straight down on the workspace
//!   (orthographic; image up = base +x, image right = base −y) and draws blocks as long coloured bars
//!   with a darker stripe along their x axis, and the end effector as a white disc (larger when higher)
//!   with a black bar along its own x axis. The wrist camera looks down from the end effector over a
//!   fixed 0.25 m and turns with it (image up = the end effector's x axis), so the target block
//!   appears at its offset in the gripper's frame with its bar turned by exactly the yaw still to go:
//!   the remaining rotation is visible, not only the goal's. Each scene has its own brightness.
//! * **Demonstrator** ([`Demonstration::record`]): at 5 Hz, moves straight toward the goal by at most
//!   `max_step` and turns toward it by the same share of the remaining turn, at most `max_turn_deg`
//!   (about its own axis: the rotation delta is in the end-effector frame), so that position and
//!   orientation arrive together; within 1 cm and 5° it closes the gripper with its last small
//!   move, which ends exactly on the goal, holds two frames, and the episode ends.
//! * **Dataset** ([`write_dataset`]): an RLDS dataset `spear_reach_rotate` 1.0.0 in tensorflow-datasets'
//!   layout, read back like any Open X-Embodiment dataset: its registry entry [`SPEC`] is defined
//!   beside the writer and handed to `spear_data::oxe` by [`register`].
//! * **Evaluation** ([`evaluate`]): closed-loop rollouts on held-out scenes, batched over scenes, with
//!   the demonstrator ([`expert_policy`]) and a constant chunk ([`mean_action_policy`],
//!   [`mean_chunk`]) as baselines.
//!
//! Files: `scene.rs` (sampling), `render.rs` (the two cameras), `demonstrator.rs`, `dataset.rs`
//! (the RLDS writer, its schema and registry entry), `rollout.rs` (closed-loop evaluation and the
//! baselines).

mod dataset;
mod demonstrator;
mod render;
mod rollout;
mod scene;

use std::path::PathBuf;

use nalgebra::Vector3;
use serde::{Deserialize, Serialize};
use spear_data::rlds::RldsError;

pub use dataset::{DATASET_NAME, DATASET_VERSION, SPEC, dataset_dir, register, write_dataset, write_example};
pub use demonstrator::Demonstration;
pub use render::{ReachObservation, WRIST_FOV_M};
pub use rollout::{
    Chunk, ReachOutcome, ReachReport, evaluate, expert_policy, mean_action_policy, mean_chunk,
};
pub use scene::{Block, Scene};
use scene::{PALETTE, block_spacing};

/// Scene indices from here on are held out: [`evaluate`] and [`write_example`] use them, and
/// [`write_dataset`] never does (its indices count up from 0), whatever the seeds.
pub const HELD_OUT: u64 = 1 << 63;
/// A rollout reaches when its final position is within this many metres of the goal.
pub const SUCCESS_DISTANCE_M: f64 = 0.02;
/// A rollout succeeds when it reaches and its final orientation is within this many degrees.
pub const SUCCESS_ANGLE_DEG: f64 = 10.0;

/// A block's length (along its x axis) and width, metres. Long, so that its heading is a large
/// feature of both images: a tiny vision tower trained for minutes reads the angle of a bar half
/// the image long but not of a 5 cm square's stripe (a probe: 5° against no better than chance
/// after 900 steps).
const BLOCK_LENGTH: f64 = 0.15;
const BLOCK_WIDTH: f64 = 0.03;
/// Block height, metres (the table is at z = 0).
const BLOCK_HEIGHT: f64 = 0.04;
/// The goal is this far above the target block's top.
const GRASP_ABOVE: f64 = 0.02;
/// The goal's height.
const TARGET_Z: f64 = BLOCK_HEIGHT + GRASP_ABOVE;
/// Block yaws lie in ±this.
const BLOCK_YAW_MAX_DEG: f64 = 65.0;
/// Start yaws lie in ±this; with the blocks' range the remaining yaw stays within ±85°.
const START_YAW_MAX_DEG: f64 = 20.0;
/// The end effector starts at least this far above the goal, so no scene starts reached.
const START_ABOVE_TARGET: f64 = 0.06;
/// Space between blocks beyond their circumscribed circles.
const BLOCK_GAP: f64 = 0.01;
/// The narrowest workspace side accepted (a block is 15 cm long); how many blocks fit is checked
/// separately.
const MIN_WORKSPACE_SIDE: f64 = 0.2;
/// The demonstrator closes within this distance (m) and angle (degrees) of the goal.
const CLOSE_DISTANCE: f64 = 0.01;
const CLOSE_ANGLE_DEG: f64 = 5.0;
/// Frames the demonstrator holds after the close command.
const HOLD_FRAMES: usize = 2;
/// Largest image side accepted (a guard against typos that would allocate gigabytes).
const MAX_IMAGE_SIDE: usize = 1024;

/// What can go wrong generating, writing or evaluating the task.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// A [`ReachConfig`] field is out of range.
    #[error("reach config: `{field}`: {problem}")]
    Config {
        /// The field's name (`max_step`).
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A function was called with an unusable argument.
    #[error("{0}")]
    Argument(String),
    /// A policy's output cannot be executed.
    #[error("policy, held-out scene {scene}: {problem}")]
    Policy {
        /// The scene's position in the evaluation.
        scene: usize,
        /// What is wrong.
        problem: String,
    },
    /// A file could not be written or a folder replaced.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An image could not be PNG-encoded.
    #[error("PNG encoding: {0}")]
    Png(String),
    /// The dataset could not be written or read.
    #[error(transparent)]
    Data(#[from] RldsError),
}

/// The task's settings (the trainer's `[data.reach]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReachConfig {
    /// Blocks on the table, 1 to 4 and no more than the workspace holds without touching (two in
    /// the default one), each a different colour.
    pub blocks: usize,
    /// Most frames an episode may have; must cover the demonstrator's worst case.
    pub frames: usize,
    /// Metres the demonstrator moves per 5 Hz frame, at most.
    pub max_step: f64,
    /// Degrees the demonstrator turns per frame, at most.
    pub max_turn_deg: f64,
    /// The end effector starts tilted (about a random horizontal axis of its own) by up to this
    /// many degrees, which the demonstrator turns away with the yaw: demonstrations of
    /// recovering from roll and pitch, which a policy's small rotation errors add up to in closed
    /// loop (an upright-only dataset never shows how to undo them).
    pub start_tilt_deg: f64,
    /// Main camera `[width, height]`.
    pub image_size: [usize; 2],
    /// Wrist camera `[width, height]`.
    pub wrist_size: [usize; 2],
    /// The workspace's lower corner `[x, y, z]` in the base frame, metres (the table is z = 0):
    /// blocks lie inside its x-y extent, the main camera frames it, and the end effector is
    /// clamped to it.
    pub workspace_min: [f64; 3],
    /// The workspace's upper corner.
    pub workspace_max: [f64; 3],
}

impl Default for ReachConfig {
    fn default() -> Self {
        Self {
            blocks: 1,
            frames: 20,
            max_step: 0.03,
            max_turn_deg: 30.0,
            start_tilt_deg: 15.0,
            image_size: [56, 56],
            wrist_size: [56, 56],
            workspace_min: [0.35, -0.15, 0.0],
            workspace_max: [0.65, 0.15, 0.25],
        }
    }
}

impl ReachConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ReachError> {
        let fail = |field: &'static str, problem: String| Err(ReachError::Config { field, problem });
        if !(1..=PALETTE.len()).contains(&self.blocks) {
            return fail("blocks", format!("must be 1 to {} (got {})", PALETTE.len(), self.blocks));
        }
        if !(self.max_step.is_finite() && self.max_step > 0.0 && self.max_step <= 0.2) {
            return fail("max_step", format!("must be in (0, 0.2] metres (got {})", self.max_step));
        }
        if !(self.max_turn_deg.is_finite() && self.max_turn_deg > 0.0 && self.max_turn_deg <= 90.0) {
            return fail("max_turn_deg", format!("must be in (0, 90] degrees (got {})", self.max_turn_deg));
        }
        if !(0.0..=45.0).contains(&self.start_tilt_deg) {
            return fail(
                "start_tilt_deg",
                format!("must be in [0, 45] degrees (got {})", self.start_tilt_deg),
            );
        }
        for (field, size) in [("image_size", self.image_size), ("wrist_size", self.wrist_size)] {
            if size.iter().any(|&s| s == 0 || s > MAX_IMAGE_SIDE) {
                return fail(field, format!("{size:?}: each side must be 1 to {MAX_IMAGE_SIDE} pixels"));
            }
        }
        let (lo, hi) = (self.workspace_min, self.workspace_max);
        if !lo.iter().chain(&hi).all(|v| v.is_finite()) {
            return fail("workspace_min", format!("{lo:?} to {hi:?} is not finite"));
        }
        for (axis, name) in ["x", "y"].iter().enumerate() {
            if hi[axis] - lo[axis] < MIN_WORKSPACE_SIDE {
                return fail(
                    "workspace_max",
                    format!(
                        "the workspace's {name} extent {} m is below {MIN_WORKSPACE_SIDE} m \
                         (blocks must fit)",
                        hi[axis] - lo[axis]
                    ),
                );
            }
        }
        if lo[2] > TARGET_Z {
            return fail(
                "workspace_min",
                format!("z = {} m is above the goal height {TARGET_Z} m (block top + 2 cm)", lo[2]),
            );
        }
        // Start heights are drawn from [goal + START_ABOVE_TARGET, top]: leave that range 4 cm.
        let lowest_top = TARGET_Z + START_ABOVE_TARGET + 0.04;
        if hi[2] < lowest_top {
            return fail(
                "workspace_max",
                format!("z = {} m leaves no room to start above the goal (needs ≥ {lowest_top} m)", hi[2]),
            );
        }
        let fits = self.block_capacity();
        if self.blocks > fits {
            return fail(
                "blocks",
                format!(
                    "{} blocks of {} m do not fit in this workspace (at most {fits}; widen workspace_min/max)",
                    self.blocks, BLOCK_LENGTH
                ),
            );
        }
        let needed = self.worst_case_frames();
        if self.frames < needed {
            return fail(
                "frames",
                format!(
                    "{} is too few: the demonstrator may need {needed} frames in this workspace at \
                     max_step {} m and max_turn_deg {}",
                    self.frames, self.max_step, self.max_turn_deg
                ),
            );
        }
        Ok(())
    }

    /// How many blocks certainly fit without touching: a grid of block-spacing cells over the
    /// region their centres may take, or two on its diagonal.
    fn block_capacity(&self) -> usize {
        let (margin, spacing) = block_spacing();
        let (lo, hi) = (self.workspace_min, self.workspace_max);
        let (rx, ry) = (hi[0] - lo[0] - 2.0 * margin, hi[1] - lo[1] - 2.0 * margin);
        if rx < 0.0 || ry < 0.0 {
            return 0;
        }
        let grid = ((rx / spacing).floor() as usize + 1) * ((ry / spacing).floor() as usize + 1);
        grid.max(if rx.hypot(ry) >= spacing { 2 } else { 1 })
    }

    /// The most frames a demonstration can take: the longest move or turn, then the close
    /// command and the hold (motion and turning happen together).
    fn worst_case_frames(&self) -> usize {
        let (lo, hi) = (self.workspace_min, self.workspace_max);
        let distance = Vector3::new(hi[0] - lo[0], hi[1] - lo[1], hi[2] - TARGET_Z).norm();
        let moves = (distance / self.max_step)
            .ceil()
            .max((BLOCK_YAW_MAX_DEG + START_YAW_MAX_DEG + self.start_tilt_deg) / self.max_turn_deg);
        moves.ceil() as usize + 1 + HOLD_FRAMES
    }

    /// Clamps a position into the workspace.
    pub(super) fn clamp(&self, p: Vector3<f64>) -> Vector3<f64> {
        Vector3::from_fn(|i, _| p[i].clamp(self.workspace_min[i], self.workspace_max[i]))
    }

    pub(super) fn inside_table(&self, [x, y]: [f64; 2]) -> bool {
        let (lo, hi) = (self.workspace_min, self.workspace_max);
        (lo[0]..=hi[0]).contains(&x) && (lo[1]..=hi[1]).contains(&y)
    }
}
