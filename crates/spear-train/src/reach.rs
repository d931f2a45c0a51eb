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
//!   layout, read back like any Open X-Embodiment dataset (its registry entry is
//!   `spear_data::oxe::generated`).
//! * **Evaluation** ([`evaluate`]): closed-loop rollouts on held-out scenes, batched over scenes, with
//!   the demonstrator ([`expert_policy`]) and a constant chunk ([`mean_action_policy`],
//!   [`mean_chunk`]) as baselines.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use nalgebra::{UnitQuaternion, Vector3};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spear_data::example::{Example, Feature};
use spear_data::images::Image;
use spear_data::oxe::{STATE_DIM, spec, standardize};
use spear_data::resample::{ACTION_DIM, ChunkConfig};
use spear_data::rlds::{RldsDataset, RldsError, RldsWriter};
use spear_data::tfrecord::OnCorrupt;
use spear_geometry::pose::Pose;
use spear_geometry::quat::{canonicalize, slerp};
use spear_geometry::s3::arc_angle;

/// The dataset's RLDS name (its registry entry: `spear_data::oxe::generated`).
pub const DATASET_NAME: &str = "spear_reach_rotate";
/// The dataset's version.
pub const DATASET_VERSION: &str = "1.0.0";
/// Scene indices from here on are held out: [`evaluate`] and [`write_example`] use them, and
/// [`write_dataset`] never does (its indices count up from 0), whatever the seeds.
pub const HELD_OUT: u64 = 1 << 63;
/// A rollout reaches when its final position is within this many metres of the goal.
pub const SUCCESS_DISTANCE_M: f64 = 0.02;
/// A rollout succeeds when it reaches and its final orientation is within this many degrees.
pub const SUCCESS_ANGLE_DEG: f64 = 10.0;
/// The wrist camera's field of view across the image width, metres on the table.
pub const WRIST_FOV_M: f64 = 0.25;

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
/// Episodes per TFRecord shard.
const EPISODES_PER_SHARD: usize = 100;
/// Episodes generated in parallel before being written in order.
const GENERATION_BATCH: usize = 64;

/// Block colours and their names (as instructions say them).
const PALETTE: [(&str, [f64; 3]); 4] = [
    ("red", [205.0, 40.0, 40.0]),
    ("green", [40.0, 165.0, 60.0]),
    ("blue", [45.0, 85.0, 215.0]),
    ("yellow", [225.0, 200.0, 40.0]),
];
const TABLE: [f64; 3] = [165.0, 150.0, 130.0];
/// Outside the workspace (the margins of the main camera, the wrist camera near the edges).
const FLOOR: [f64; 3] = [70.0, 70.0, 75.0];
/// A darker stripe along a block's long axis (its colour times this).
const BLOCK_STRIPE: f64 = 0.5;
const STRIPE_WIDTH: f64 = 0.01;
const EE_DISC: [f64; 3] = [250.0, 250.0, 250.0];
const EE_BAR: [f64; 3] = [0.0, 0.0, 0.0];
/// The end effector's bar along its x axis, to line up with a block's.
const EE_BAR_LENGTH: f64 = 0.1;
const EE_BAR_WIDTH: f64 = 0.012;
/// The end effector's disc radius at z = 0 and its growth per metre of height (a depth cue).
const EE_RADIUS: f64 = 0.008;
const EE_RADIUS_PER_M: f64 = 0.06;

/// The instruction's phrasings, around the colour's name.
const PHRASINGS: [(&str, &str); 4] = [
    ("reach the ", " block and align with it"),
    ("move to the ", " block and match its rotation"),
    ("go to the ", " block and line up with it"),
    ("align the gripper with the ", " block"),
];

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
    fn clamp(&self, p: Vector3<f64>) -> Vector3<f64> {
        Vector3::from_fn(|i, _| p[i].clamp(self.workspace_min[i], self.workspace_max[i]))
    }

    fn inside_table(&self, [x, y]: [f64; 2]) -> bool {
        let (lo, hi) = (self.workspace_min, self.workspace_max);
        (lo[0]..=hi[0]).contains(&x) && (lo[1]..=hi[1]).contains(&y)
    }
}

/// One block on the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Its colour's name, as the instruction says it.
    pub colour: &'static str,
    /// Its centre `[x, y]` on the table, base frame, metres.
    pub centre: [f64; 2],
    /// Its yaw about the base z axis, radians (its bar lies along its x axis).
    pub yaw: f64,
    /// `yaw.sin_cos()`, for rendering.
    yaw_sin_cos: (f64, f64),
    rgb: [f64; 3],
}

/// One scene of the task.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// The blocks.
    pub blocks: Vec<Block>,
    /// Index of the target block in `blocks`.
    pub target: usize,
    /// The instruction naming the target block.
    pub instruction: String,
    /// The end effector's start pose: above the table, a yaw and a small tilt, canonical
    /// quaternion.
    pub start: Pose,
    /// The scene's brightness factor (applied to every colour of both cameras).
    pub light: f64,
}

/// How far a block's centre stays from the workspace's edges (its circumscribed radius, so that a
/// turned block stays inside), and from another block's centre.
fn block_spacing() -> (f64, f64) {
    let margin = (BLOCK_LENGTH / 2.0).hypot(BLOCK_WIDTH / 2.0);
    (margin, 2.0 * margin + BLOCK_GAP)
}

/// A quaternion of pure yaw about the base z axis (canonical for |yaw| < π). Not
/// `quat_from_euler_xyz(0, 0, yaw)`: that writes its x and y as −0.0, which would change the
/// dataset's bytes.
fn yaw_rotation(yaw: f64) -> UnitQuaternion<f64> {
    canonicalize(&UnitQuaternion::from_axis_angle(&Vector3::z_axis(), yaw))
}

/// The direction of the end effector's x axis projected on the table (its yaw, for pure-yaw poses).
fn heading(rotation: &UnitQuaternion<f64>) -> f64 {
    let x = rotation * Vector3::x();
    x.y.atan2(x.x)
}

/// `p` in the frame of a point `centre` turned on the table by the yaw whose `(sin, cos)` is given
/// (taken once per object, not per rendered sample).
fn local([x, y]: [f64; 2], [cx, cy]: [f64; 2], (sin, cos): (f64, f64)) -> [f64; 2] {
    let (dx, dy) = (x - cx, y - cy);
    [cos * dx + sin * dy, -sin * dx + cos * dy]
}

/// The rotation angle between two orientations, radians (sign of either quaternion ignored).
fn rotation_angle(a: &UnitQuaternion<f64>, b: &UnitQuaternion<f64>) -> f64 {
    let arc = arc_angle(a, b);
    2.0 * arc.min(PI - arc)
}

/// Renders `size` pixels: each pixel is the mean of 2×2 samples of `shade` at the world points
/// `to_world` gives for fractional pixel coordinates, times `light`.
fn render(
    [width, height]: [usize; 2],
    light: f64,
    to_world: impl Fn(f64, f64) -> [f64; 2],
    shade: impl Fn([f64; 2]) -> [f64; 3],
) -> Image {
    const SAMPLES: [(f64, f64); 4] = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)];
    let mut pixels = Vec::with_capacity(width * height * 3);
    for v in 0..height {
        for u in 0..width {
            let mut sum = [0.0; 3];
            for (du, dv) in SAMPLES {
                let colour = shade(to_world(u as f64 + du, v as f64 + dv));
                sum.iter_mut().zip(colour).for_each(|(s, c)| *s += c);
            }
            pixels.extend(sum.map(|s| (s / 4.0 * light).round().clamp(0.0, 255.0) as u8));
        }
    }
    Image { height, width, channels: 3, pixels }
}

impl Scene {
    /// The scene `index` of `seed`: a function of `(config, seed, index)` alone (one ChaCha stream
    /// per index), so scenes can be made in any order and in parallel.
    pub fn sample(config: &ReachConfig, seed: u64, index: u64) -> Result<Self, ReachError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        let mut colours: Vec<usize> = (0..PALETTE.len()).collect();
        colours.shuffle(&mut rng);
        let (lo, hi) = (config.workspace_min, config.workspace_max);
        // Rotated blocks stay on the table; centres far enough apart that blocks never touch.
        let (margin, spacing) = block_spacing();
        let mut centres: Vec<[f64; 2]> = Vec::with_capacity(config.blocks);
        let mut attempts = 0;
        while centres.len() < config.blocks {
            attempts += 1;
            if attempts > 100_000 {
                return Err(ReachError::Config {
                    field: "blocks",
                    problem: format!("{} blocks do not fit in the workspace", config.blocks),
                });
            }
            let c = [
                rng.random_range(lo[0] + margin..=hi[0] - margin),
                rng.random_range(lo[1] + margin..=hi[1] - margin),
            ];
            if centres.iter().all(|o| (o[0] - c[0]).hypot(o[1] - c[1]) >= spacing) {
                centres.push(c);
            } else if attempts % 100 == 0 {
                // A layout that has boxed itself in: start again.
                centres.clear();
            }
        }
        let blocks: Vec<Block> = centres
            .into_iter()
            .zip(&colours)
            .map(|(centre, &c)| {
                let yaw = rng.random_range(-BLOCK_YAW_MAX_DEG..=BLOCK_YAW_MAX_DEG).to_radians();
                Block { colour: PALETTE[c].0, rgb: PALETTE[c].1, centre, yaw, yaw_sin_cos: yaw.sin_cos() }
            })
            .collect();
        let target = rng.random_range(0..blocks.len());
        let (before, after) = PHRASINGS[rng.random_range(0..PHRASINGS.len())];
        let instruction = format!("{before}{}{after}", blocks[target].colour);
        let position = Vector3::new(
            rng.random_range(lo[0]..=hi[0]),
            rng.random_range(lo[1]..=hi[1]),
            rng.random_range(TARGET_Z + START_ABOVE_TARGET..=hi[2]),
        );
        let yaw = rng.random_range(-START_YAW_MAX_DEG..=START_YAW_MAX_DEG).to_radians();
        let light = rng.random_range(0.85..=1.15);
        let axis = rng.random_range(-PI..PI);
        let tilt = rng.random_range(0.0..=config.start_tilt_deg).to_radians();
        let tilt = UnitQuaternion::from_axis_angle(
            &nalgebra::Unit::new_unchecked(Vector3::new(axis.cos(), axis.sin(), 0.0)),
            tilt,
        );
        let start = Pose::new(position, canonicalize(&(yaw_rotation(yaw) * tilt)));
        Ok(Self { blocks, target, instruction, start, light })
    }

    /// The goal: the target block's top centre plus 2 cm, at the block's yaw.
    pub fn target_pose(&self) -> Pose {
        let block = &self.blocks[self.target];
        Pose::new(Vector3::new(block.centre[0], block.centre[1], TARGET_Z), yaw_rotation(block.yaw))
    }

    /// The table, the floor around it and the blocks at a point of the plane z = 0.
    fn shade_table(&self, config: &ReachConfig, p: [f64; 2]) -> [f64; 3] {
        for block in &self.blocks {
            let [lx, ly] = local(p, block.centre, block.yaw_sin_cos);
            if lx.abs() <= BLOCK_LENGTH / 2.0 && ly.abs() <= BLOCK_WIDTH / 2.0 {
                let stripe = if ly.abs() <= STRIPE_WIDTH / 2.0 { BLOCK_STRIPE } else { 1.0 };
                return block.rgb.map(|c| c * stripe);
            }
        }
        if config.inside_table(p) { TABLE } else { FLOOR }
    }

    /// The main camera with the end effector at `pose`: top-down, orthographic, the workspace's
    /// x-y extent fitted and centred (image up = +x, image right = −y).
    pub fn render_main(&self, config: &ReachConfig, pose: &Pose) -> Image {
        let [w, h] = config.image_size;
        let (lo, hi) = (config.workspace_min, config.workspace_max);
        let scale = (w as f64 / (hi[1] - lo[1])).min(h as f64 / (hi[0] - lo[0]));
        let (xc, yc) = ((lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0);
        let ee = [pose.translation.x, pose.translation.y];
        let yaw = heading(&pose.rotation).sin_cos();
        let radius = EE_RADIUS + EE_RADIUS_PER_M * pose.translation.z.max(0.0);
        render(
            config.image_size,
            self.light,
            |u, v| [xc - (v - h as f64 / 2.0) / scale, yc - (u - w as f64 / 2.0) / scale],
            |p| {
                let [lx, ly] = local(p, ee, yaw);
                if lx.abs() <= EE_BAR_LENGTH / 2.0 && ly.abs() <= EE_BAR_WIDTH / 2.0 {
                    EE_BAR
                } else if lx.hypot(ly) <= radius {
                    EE_DISC
                } else {
                    self.shade_table(config, p)
                }
            },
        )
    }

    /// The wrist camera with the end effector at `pose`: looking down from it over
    /// [`WRIST_FOV_M`] of table, centred on it and turned with its yaw (image up = its x axis,
    /// image right = its −y axis).
    pub fn render_wrist(&self, config: &ReachConfig, pose: &Pose) -> Image {
        let [w, h] = config.wrist_size;
        let scale = w as f64 / WRIST_FOV_M;
        let (cx, cy) = (pose.translation.x, pose.translation.y);
        let (sin, cos) = heading(&pose.rotation).sin_cos();
        render(
            config.wrist_size,
            self.light,
            |u, v| {
                let (qx, qy) = (-(v - h as f64 / 2.0) / scale, -(u - w as f64 / 2.0) / scale);
                [cx + cos * qx - sin * qy, cy + sin * qx + cos * qy]
            },
            |p| self.shade_table(config, p),
        )
    }

    /// What a policy sees with the end effector at `pose` and the gripper's closedness `gripper`.
    pub fn observe(&self, config: &ReachConfig, pose: &Pose, gripper: f64) -> ReachObservation {
        ReachObservation {
            main: self.render_main(config, pose),
            wrist: self.render_wrist(config, pose),
            state: pose_row(pose, gripper),
            instruction: self.instruction.clone(),
            target: self.target_pose(),
        }
    }
}

/// One observation of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct ReachObservation {
    /// The main camera (RGB, row-major HWC, `image_size`).
    pub main: Image,
    /// The wrist camera (RGB, `wrist_size`).
    pub wrist: Image,
    /// The state exactly as the dataset stores it: position (3), quaternion `(w, x, y, z)`,
    /// `w ≥ 0` (4), gripper closedness (1).
    pub state: [f32; STATE_DIM],
    /// The instruction.
    pub instruction: String,
    /// The goal pose. Privileged: for scripted baselines ([`expert_policy`]), never for a
    /// learned policy's input.
    pub target: Pose,
}

/// A pose and a gripper value in the layout states and actions share: position, canonical
/// quaternion `w, x, y, z`, gripper (closedness for a state, the close command for an action).
fn pose_row(pose: &Pose, gripper: f64) -> [f32; STATE_DIM] {
    const _: () = assert!(STATE_DIM == ACTION_DIM);
    let (t, q) = (pose.translation, canonicalize(&pose.rotation));
    [t.x, t.y, t.z, q.w, q.i, q.j, q.k, gripper].map(|v| v as f32)
}

/// The pose of a stored state (quaternion renormalised after its rounding to f32).
fn state_pose(state: &[f32; STATE_DIM]) -> Pose {
    let s = state.map(f64::from);
    let q = nalgebra::Quaternion::new(s[3], s[4], s[5], s[6]);
    Pose::new(Vector3::new(s[0], s[1], s[2]), UnitQuaternion::new_normalize(q))
}

/// The demonstrator's move from `pose`: a step straight toward `target` of at most `max_step` and
/// a turn toward it of at most `max_turn_deg` about the shortest axis, expressed in the
/// end-effector frame; and whether to close the gripper with it, which it does within 1 cm and 5°
/// of the goal (or one step and one turn, when those are smaller), so that the closing move ends
/// exactly on the goal.
fn expert_step(config: &ReachConfig, pose: &Pose, target: &Pose) -> (Pose, bool) {
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

/// PNG bytes of an RGB image.
fn png(image: &Image) -> Result<Vec<u8>, ReachError> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&image.pixels, image.width as u32, image.height as u32, image::ExtendedColorType::Rgb8)
        .map_err(|e| ReachError::Png(e.to_string()))?;
    Ok(out)
}

const TFDS: &str = "tensorflow_datasets.core.features";

/// A tfds `Tensor` (or `Scalar` when `dims` is empty) feature.
fn tensor_feature(description: &str, dtype: &str, dims: &[usize]) -> Value {
    let (class, shape) = if dims.is_empty() {
        ("scalar.Scalar", json!({}))
    } else {
        (
            "tensor_feature.Tensor",
            json!({ "dimensions": dims.iter().map(usize::to_string).collect::<Vec<_>>() }),
        )
    };
    json!({
        "description": description,
        "pythonClassName": format!("{TFDS}.{class}"),
        "tensor": { "dtype": dtype, "encoding": "none", "shape": shape },
    })
}

/// A tfds PNG `Image` feature of `[width, height]`.
fn image_feature(description: &str, [width, height]: [usize; 2]) -> Value {
    json!({
        "description": description,
        "image": {
            "dtype": "uint8",
            "encodingFormat": "png",
            "shape": { "dimensions": [height.to_string(), width.to_string(), "3"] },
        },
        "pythonClassName": format!("{TFDS}.image_feature.Image"),
    })
}

fn features_dict(features: Value) -> Value {
    json!({
        "featuresDict": { "features": features },
        "pythonClassName": format!("{TFDS}.features_dict.FeaturesDict"),
    })
}

/// `features.json` as tensorflow-datasets writes it for this dataset's features.
fn features(config: &ReachConfig) -> Value {
    let steps = features_dict(json!({
        "action": tensor_feature(
            "Commanded action: translation delta in the base frame (3, metres), rotation delta in the \
             end-effector frame as a unit quaternion (w, x, y, z), w >= 0 (4), gripper command (1 = close).",
            "float32",
            &[ACTION_DIM],
        ),
        "discount": tensor_feature("Discount, 1.", "float32", &[]),
        "is_first": tensor_feature("True on first step of the episode.", "bool", &[]),
        "is_last": tensor_feature("True on last step of the episode.", "bool", &[]),
        "is_terminal": tensor_feature(
            "True on last step of the episode: every episode ends closed on its goal.",
            "bool",
            &[],
        ),
        "language_instruction": {
            "description": "Language Instruction.",
            "pythonClassName": format!("{TFDS}.text_feature.Text"),
            "text": {},
        },
        "observation": features_dict(json!({
            "image": image_feature(
                "Main camera: top-down orthographic view of the workspace.",
                config.image_size,
            ),
            "state": tensor_feature(
                "End-effector position in the base frame (3, metres), orientation as a unit quaternion \
                 (w, x, y, z), w >= 0 (4), gripper closedness (1 = closed).",
                "float32",
                &[STATE_DIM],
            ),
            "wrist_image": image_feature(
                "Wrist camera: looking down from the end effector, turning with its yaw.",
                config.wrist_size,
            ),
        })),
        "reward": tensor_feature("1 on the last step (every demonstration succeeds).", "float32", &[]),
    }));
    features_dict(json!({
        "episode_metadata": features_dict(json!({
            "episode_id": tensor_feature(
                "Scene index (with the dataset's seed it regenerates the scene).",
                "int64",
                &[],
            ),
            "target_pose": tensor_feature(
                "Goal pose: position (3, metres) and quaternion (w, x, y, z).",
                "float32",
                &[7],
            ),
        })),
        "steps": {
            "pythonClassName": format!("{TFDS}.dataset_feature.Dataset"),
            "sequence": { "feature": steps, "length": "-1" },
        },
    }))
}

/// Scene `index` of `seed` demonstrated and encoded as one RLDS episode.
fn episode_example(config: &ReachConfig, seed: u64, index: u64) -> Result<Example, ReachError> {
    let scene = Scene::sample(config, seed, index)?;
    let demo = Demonstration::record(config, &scene);
    let n = demo.len();
    let mut images = Vec::with_capacity(n);
    let mut wrists = Vec::with_capacity(n);
    for pose in &demo.poses {
        images.push(png(&scene.render_main(config, pose))?);
        wrists.push(png(&scene.render_wrist(config, pose))?);
    }
    let flags = |f: &dyn Fn(usize) -> bool| Feature::Int64((0..n).map(|i| i64::from(f(i))).collect());
    let target = scene.target_pose();
    let (t, q) = (target.translation, target.rotation);
    let mut example = Example::new();
    let mut put = |key: &str, feature: Feature| example.insert(key.to_string(), feature);
    put("episode_metadata/episode_id", Feature::Int64(vec![index as i64]));
    put(
        "episode_metadata/target_pose",
        Feature::Float([t.x, t.y, t.z, q.w, q.i, q.j, q.k].map(|v| v as f32).to_vec()),
    );
    put("steps/action", Feature::Float((0..n).flat_map(|i| demo.action(i)).collect()));
    put("steps/discount", Feature::Float(vec![1.0; n]));
    put("steps/is_first", flags(&|i| i == 0));
    put("steps/is_last", flags(&|i| i + 1 == n));
    put("steps/is_terminal", flags(&|i| i + 1 == n));
    put("steps/language_instruction", Feature::Bytes(vec![scene.instruction.clone().into_bytes(); n]));
    put("steps/observation/image", Feature::Bytes(images));
    put("steps/observation/state", Feature::Float((0..n).flat_map(|i| demo.state(i)).collect()));
    put("steps/observation/wrist_image", Feature::Bytes(wrists));
    put("steps/reward", Feature::Float((0..n).map(|i| if i + 1 == n { 1.0 } else { 0.0 }).collect()));
    Ok(example)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ReachError + '_ {
    move |source| ReachError::Io { path: path.to_path_buf(), source }
}

/// Where [`write_dataset`] puts the dataset under `dir`: `dir/spear_reach_rotate/1.0.0`.
pub fn dataset_dir(dir: &Path) -> PathBuf {
    dir.join(DATASET_NAME).join(DATASET_VERSION)
}

/// Writes the dataset `spear_reach_rotate` 1.0.0 under `dir` (as `dir/spear_reach_rotate/1.0.0`,
/// replacing an earlier one there) and returns that folder: `train_episodes` scenes `0..train`
/// of `seed` in split `train` and the next `val_episodes` in `val` (no `val` split when 0).
/// Episodes are generated in parallel and written in order, so the bytes depend only on the
/// arguments.
pub fn write_dataset(
    dir: &Path,
    config: &ReachConfig,
    seed: u64,
    train_episodes: usize,
    val_episodes: usize,
) -> Result<PathBuf, ReachError> {
    config.validate()?;
    if train_episodes == 0 {
        return Err(ReachError::Argument("write_dataset: train_episodes must be at least 1".into()));
    }
    let done = dataset_dir(dir);
    let root = dir.join(DATASET_NAME);
    // Written beside the final folder and moved into place when complete, so an interrupted run
    // never leaves a dataset that looks whole.
    let partial = root.join(format!("{DATASET_VERSION}.partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io_error(&partial))?;
    }
    let description = format!(
        "spear's generated reach-and-rotate task (spear_train::reach), seed {seed}, config {}",
        serde_json::to_string(config).expect("a config serialises")
    );
    let mut writer = RldsWriter::create(
        &partial,
        DATASET_NAME,
        DATASET_VERSION,
        &description,
        &features(config),
        EPISODES_PER_SHARD,
    )?;
    let total = (train_episodes + val_episodes) as u64;
    for start in (0..total).step_by(GENERATION_BATCH) {
        let indices: Vec<u64> = (start..total.min(start + GENERATION_BATCH as u64)).collect();
        let episodes: Vec<Example> =
            indices.par_iter().map(|&i| episode_example(config, seed, i)).collect::<Result<_, _>>()?;
        for (&i, episode) in indices.iter().zip(&episodes) {
            writer.write_episode(if i < train_episodes as u64 { "train" } else { "val" }, episode)?;
        }
    }
    writer.finish()?;
    if done.exists() {
        std::fs::remove_dir_all(&done).map_err(io_error(&done))?;
    }
    std::fs::rename(&partial, &done).map_err(io_error(&done))?;
    Ok(done)
}

/// An action chunk: `[x, y, z, qw, qx, qy, qz, gripper]` per action (translation in metres in the
/// base frame, rotation delta in the end-effector frame, gripper ≥ 0.5 closes).
pub type Chunk = Vec<[f32; ACTION_DIM]>;

/// One held-out scene's rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReachOutcome {
    /// Distance from the start to the goal, metres.
    pub initial_position_error_m: f64,
    /// Rotation from the start to the goal, degrees.
    pub initial_rotation_error_deg: f64,
    /// Final distance to the goal, metres.
    pub position_error_m: f64,
    /// Final rotation to the goal (geodesic angle, tilt included), degrees.
    pub rotation_error_deg: f64,
    /// Whether the policy closed the gripper (which ends the rollout).
    pub closed: bool,
    /// Chunks executed.
    pub chunks: usize,
}

impl ReachOutcome {
    /// Within [`SUCCESS_DISTANCE_M`] of the goal.
    pub fn reached(&self) -> bool {
        self.position_error_m <= SUCCESS_DISTANCE_M
    }

    /// Reached and within [`SUCCESS_ANGLE_DEG`] of the goal's orientation.
    pub fn succeeded(&self) -> bool {
        self.reached() && self.rotation_error_deg <= SUCCESS_ANGLE_DEG
    }
}

/// A policy's closed-loop results over the held-out scenes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReachReport {
    /// Fraction of scenes that succeeded (position ≤ 2 cm and rotation ≤ 10°).
    pub success_rate: f64,
    /// Fraction of scenes whose final position is within 2 cm.
    pub reach_rate: f64,
    /// Fraction of scenes where the policy closed the gripper.
    pub closed_rate: f64,
    /// Mean final position error, centimetres.
    pub mean_position_error_cm: f64,
    /// Mean final rotation error, degrees.
    pub mean_rotation_error_deg: f64,
    /// Each scene's rollout, in order.
    pub outcomes: Vec<ReachOutcome>,
}

impl ReachReport {
    /// The header of [`ReachReport::table_row`]'s Markdown table.
    pub const TABLE_HEADER: &str = "| policy | scenes | success | reach | closed | position error (cm) \
                                    | rotation error (°) |\n|---|---|---|---|---|---|---|";

    fn from_outcomes(outcomes: Vec<ReachOutcome>) -> Self {
        let n = outcomes.len() as f64;
        let rate = |f: fn(&ReachOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count() as f64 / n;
        let mean = |f: fn(&ReachOutcome) -> f64| outcomes.iter().map(f).sum::<f64>() / n;
        Self {
            success_rate: rate(ReachOutcome::succeeded),
            reach_rate: rate(ReachOutcome::reached),
            closed_rate: rate(|o| o.closed),
            mean_position_error_cm: 100.0 * mean(|o| o.position_error_m),
            mean_rotation_error_deg: mean(|o| o.rotation_error_deg),
            outcomes,
        }
    }

    /// One Markdown table row for the policy called `policy`.
    pub fn table_row(&self, policy: &str) -> String {
        format!(
            "| {policy} | {} | {:.1}% | {:.1}% | {:.1}% | {:.2} | {:.1} |",
            self.outcomes.len(),
            100.0 * self.success_rate,
            100.0 * self.reach_rate,
            100.0 * self.closed_rate,
            self.mean_position_error_cm,
            self.mean_rotation_error_deg
        )
    }
}

/// The delta of an action, or why it cannot be executed.
fn action_delta(action: &[f32; ACTION_DIM]) -> Result<Pose, String> {
    if let Some(i) = action.iter().position(|v| !v.is_finite()) {
        return Err(format!("value {i} of an action is {}", action[i]));
    }
    let a = action.map(f64::from);
    let q = nalgebra::Quaternion::new(a[3], a[4], a[5], a[6]);
    let rotation = UnitQuaternion::try_new(q, 1e-6)
        .ok_or_else(|| format!("rotation quaternion {:?} has no direction", &a[3..7]))?;
    Ok(Pose::new(Vector3::new(a[0], a[1], a[2]), rotation))
}

/// Closed-loop rollouts of `policy` on `scenes` held-out scenes of `seed` (indices
/// [`HELD_OUT`]`..`, so never a training scene): observe every unfinished scene, ask the policy
/// for one chunk per observation (one call per round, batched over scenes), execute every action
/// of each chunk (`pose ← pose ∘ delta`, position clamped to the workspace, quaternion normalised;
/// an action whose gripper value is ≥ 0.5 closes the gripper after its motion and ends the
/// rollout), and repeat for at most `max_chunks` rounds. Errors when the policy returns the wrong
/// number of chunks, an empty chunk or a value that is not finite.
pub fn evaluate(
    config: &ReachConfig,
    seed: u64,
    scenes: usize,
    max_chunks: usize,
    mut policy: impl FnMut(&[ReachObservation]) -> Vec<Chunk>,
) -> Result<ReachReport, ReachError> {
    config.validate()?;
    if scenes == 0 {
        return Err(ReachError::Argument("evaluate: scenes must be at least 1".into()));
    }
    let scenes: Vec<Scene> =
        (0..scenes as u64).map(|i| Scene::sample(config, seed, HELD_OUT + i)).collect::<Result<_, _>>()?;
    let mut poses: Vec<Pose> = scenes.iter().map(|s| s.start).collect();
    let mut closed = vec![false; scenes.len()];
    let mut chunks = vec![0; scenes.len()];
    for _ in 0..max_chunks {
        let active: Vec<usize> = (0..scenes.len()).filter(|&i| !closed[i]).collect();
        if active.is_empty() {
            break;
        }
        let observations: Vec<ReachObservation> =
            active.par_iter().map(|&i| scenes[i].observe(config, &poses[i], 0.0)).collect();
        let answers = policy(&observations);
        if answers.len() != active.len() {
            return Err(ReachError::Policy {
                scene: active[0],
                problem: format!("{} chunks for {} observations", answers.len(), active.len()),
            });
        }
        for (&i, chunk) in active.iter().zip(&answers) {
            let fail = |problem: String| ReachError::Policy { scene: i, problem };
            if chunk.is_empty() {
                return Err(fail("an empty chunk".into()));
            }
            chunks[i] += 1;
            for action in chunk {
                let delta = action_delta(action).map_err(fail)?;
                let moved = poses[i].apply_delta(&delta);
                poses[i] = Pose::new(config.clamp(moved.translation), moved.rotation);
                if action[ACTION_DIM - 1] >= 0.5 {
                    closed[i] = true;
                    break;
                }
            }
        }
    }
    let outcomes = scenes
        .iter()
        .zip(&poses)
        .zip(closed.iter().zip(&chunks))
        .map(|((scene, pose), (&closed, &chunks))| {
            let target = scene.target_pose();
            let error = |p: &Pose| {
                (
                    (p.translation - target.translation).norm(),
                    rotation_angle(&p.rotation, &target.rotation).to_degrees(),
                )
            };
            let (initial_position_error_m, initial_rotation_error_deg) = error(&scene.start);
            let (position_error_m, rotation_error_deg) = error(pose);
            ReachOutcome {
                initial_position_error_m,
                initial_rotation_error_deg,
                position_error_m,
                rotation_error_deg,
                closed,
                chunks,
            }
        })
        .collect();
    Ok(ReachReport::from_outcomes(outcomes))
}

/// The demonstrator as a policy: from each observation's state, its next `horizon` moves toward
/// the (privileged) goal, as the dataset's 5 Hz chunks hold them; the close command once within
/// 1 cm and 5°. Shows that the task is solvable at the evaluation's tolerances.
pub fn expert_policy(
    config: &ReachConfig,
    horizon: usize,
) -> impl FnMut(&[ReachObservation]) -> Vec<Chunk> + use<> {
    let config = config.clone();
    move |observations| {
        observations
            .iter()
            .map(|o| {
                let mut pose = state_pose(&o.state);
                (0..horizon)
                    .map(|_| {
                        let (delta, close) = expert_step(&config, &pose, &o.target);
                        pose = pose.apply_delta(&delta);
                        pose_row(&delta, if close { 1.0 } else { 0.0 })
                    })
                    .collect()
            })
            .collect()
    }
}

/// A policy that answers every observation with `chunk` (e.g. [`mean_chunk`]: what a policy that
/// ignores its inputs would best do).
pub fn mean_action_policy(chunk: Chunk) -> impl FnMut(&[ReachObservation]) -> Vec<Chunk> {
    move |observations| vec![chunk.clone(); observations.len()]
}

/// The mean 5 Hz chunk of a written dataset's `split`, through the same path as training
/// (`standardize`, then `chunking` chunks of every frame whose first action is real): per action
/// slot, the mean translation, the normalised mean quaternion (all have `w ≥ 0` and lie near the
/// identity, so the mean is meaningful) and the mean gripper command over real actions (the
/// identity with gripper 0 where a slot has none).
pub fn mean_chunk(dataset_dir: &Path, split: &str, chunking: &ChunkConfig) -> Result<Chunk, ReachError> {
    let dataset = RldsDataset::open(dataset_dir)?;
    let spec = spec(&dataset.name).filter(|s| s.name == DATASET_NAME).ok_or_else(|| {
        ReachError::Argument(format!(
            "{}: dataset `{}`, not {DATASET_NAME}",
            dataset_dir.display(),
            dataset.name
        ))
    })?;
    let mut sums = vec![[0f64; ACTION_DIM]; chunking.horizon];
    let mut counts = vec![0usize; chunking.horizon];
    for episode in dataset.episodes(split, OnCorrupt::Fail)? {
        let episode = standardize(&spec, episode?)?;
        for frame in (0..episode.len()).filter(|&j| episode.trajectory.first_action_real(j, chunking)) {
            let chunk = episode.chunk(frame, chunking);
            for (m, action) in
                chunk.actions.chunks_exact(ACTION_DIM).enumerate().filter(|(m, _)| chunk.mask[*m])
            {
                sums[m].iter_mut().zip(action).for_each(|(s, &a)| *s += f64::from(a));
                counts[m] += 1;
            }
        }
    }
    Ok(sums
        .iter()
        .zip(&counts)
        .map(|(sum, &count)| {
            let mean = sum.map(|s| s / count.max(1) as f64);
            let q = nalgebra::Quaternion::new(mean[3], mean[4], mean[5], mean[6]);
            let rotation = UnitQuaternion::try_new(q, 1e-9).unwrap_or_else(UnitQuaternion::identity);
            pose_row(&Pose::new(Vector3::new(mean[0], mean[1], mean[2]), rotation), mean[7])
        })
        .collect())
}

/// Writes the first held-out scene's start observation of `seed` into `dir` as `main.png`,
/// `wrist.png` and `observation.json` (`instruction`, `state` as stored — normalise it as the
/// policy was trained before passing it to `spear policy act --state` — and the goal), and
/// returns it.
pub fn write_example(dir: &Path, config: &ReachConfig, seed: u64) -> Result<ReachObservation, ReachError> {
    let scene = Scene::sample(config, seed, HELD_OUT)?;
    let observation = scene.observe(config, &scene.start, 0.0);
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    for (name, image) in [("main.png", &observation.main), ("wrist.png", &observation.wrist)] {
        let path = dir.join(name);
        std::fs::write(&path, png(image)?).map_err(io_error(&path))?;
    }
    let (t, q) = (observation.target.translation, observation.target.rotation);
    let json = json!({
        "instruction": observation.instruction,
        "state": observation.state,
        "target": { "position": [t.x, t.y, t.z], "quaternion_wxyz": [q.w, q.i, q.j, q.k] },
        "seed": seed,
        "scene_index": HELD_OUT,
    });
    let path = dir.join("observation.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("JSON serialises"))
        .map_err(io_error(&path))?;
    Ok(observation)
}
