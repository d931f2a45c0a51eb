//! One scene of the task: blocks on the table, the target and its instruction, the end effector's
//! start, the light; a function of `(config, seed, index)` alone.

use std::f64::consts::PI;

use nalgebra::{UnitQuaternion, Vector3};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spear_geometry::pose::Pose;
use spear_geometry::quat::canonicalize;
use spear_geometry::s3::arc_angle;

use super::{
    BLOCK_GAP, BLOCK_LENGTH, BLOCK_WIDTH, BLOCK_YAW_MAX_DEG, ReachConfig, ReachError, START_ABOVE_TARGET,
    START_YAW_MAX_DEG, TARGET_Z,
};

/// Block colours and their names (as instructions say them).
pub(super) const PALETTE: [(&str, [f64; 3]); 4] = [
    ("red", [205.0, 40.0, 40.0]),
    ("green", [40.0, 165.0, 60.0]),
    ("blue", [45.0, 85.0, 215.0]),
    ("yellow", [225.0, 200.0, 40.0]),
];

/// The instruction's phrasings, around the colour's name.
const PHRASINGS: [(&str, &str); 4] = [
    ("reach the ", " block and align with it"),
    ("move to the ", " block and match its rotation"),
    ("go to the ", " block and line up with it"),
    ("align the gripper with the ", " block"),
];

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
    pub(super) yaw_sin_cos: (f64, f64),
    pub(super) rgb: [f64; 3],
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
pub(super) fn block_spacing() -> (f64, f64) {
    let margin = (BLOCK_LENGTH / 2.0).hypot(BLOCK_WIDTH / 2.0);
    (margin, 2.0 * margin + BLOCK_GAP)
}

/// A quaternion of pure yaw about the base z axis (canonical for |yaw| < π). Not
/// `quat_from_euler_xyz(0, 0, yaw)`: that writes its x and y as −0.0, which would change the
/// dataset's bytes.
pub(super) fn yaw_rotation(yaw: f64) -> UnitQuaternion<f64> {
    canonicalize(&UnitQuaternion::from_axis_angle(&Vector3::z_axis(), yaw))
}

/// The direction of the end effector's x axis projected on the table (its yaw, for pure-yaw poses).
pub(super) fn heading(rotation: &UnitQuaternion<f64>) -> f64 {
    let x = rotation * Vector3::x();
    x.y.atan2(x.x)
}

/// `p` in the frame of a point `centre` turned on the table by the yaw whose `(sin, cos)` is given
/// (taken once per object, not per rendered sample).
pub(super) fn local([x, y]: [f64; 2], [cx, cy]: [f64; 2], (sin, cos): (f64, f64)) -> [f64; 2] {
    let (dx, dy) = (x - cx, y - cy);
    [cos * dx + sin * dy, -sin * dx + cos * dy]
}

/// The rotation angle between two orientations, radians (sign of either quaternion ignored).
pub(super) fn rotation_angle(a: &UnitQuaternion<f64>, b: &UnitQuaternion<f64>) -> f64 {
    let arc = arc_angle(a, b);
    2.0 * arc.min(PI - arc)
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
}
