//! The two cameras: a top-down orthographic main camera over the workspace and a wrist camera
//! that looks down from the end effector and turns with it, both 2×2 supersampled.

use spear_data::images::Image;
use spear_geometry::pose::Pose;

use super::demonstrator::pose_row;
use super::scene::{heading, local};
use super::{BLOCK_LENGTH, BLOCK_WIDTH, ReachConfig, Scene};
use spear_data::oxe::STATE_DIM;

/// The wrist camera's field of view across the image width, metres on the table.
pub const WRIST_FOV_M: f64 = 0.25;

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
    /// The goal pose. Privileged: for scripted baselines ([`expert_policy`](super::rollout::expert_policy)), never for a
    /// learned policy's input.
    pub target: Pose,
}
