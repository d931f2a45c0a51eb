//! Synthetic tabletop scenes whose geometry is known exactly, written in the layout
//! [`crate::pipeline::run`] reads: 3D question–answer data made by the real pipeline from inputs
//! with a known truth, for training a small SPEAR-VLM and for testing the annotator.
//!
//! **Scene.** In a world frame with z up, the table is a `table[0]` × `table[1]` rectangle on
//! z = 0 centred at the origin (x across, y away from the camera). Blocks — cuboids resting on
//! it — get random sides, heights and yaw, each a different palette colour and a label like
//! `"red block"` (`"red cube"` when its three sides are within 25 % of each other). A pinhole
//! camera with square pixels looks at a point near the table centre from `distance`, tilted
//! `tilt_deg` from straight down, its heading jittered, without roll. A block is placed where a
//! random pixel's ray meets the table and redrawn until its footprint is on the table and at least
//! `gap` from the others and — for the first half of the tries — all 8 corners are inside the
//! image; a block that never fits is left out. A scene depends only on the parameters, the seed
//! and its index (ChaCha8, stream = index), so scenes are made in parallel with the same result.
//!
//! **Rendering.** One ray per pixel centre — pixel (row i, column j) at (j + 0.5, i + 0.5), the
//! [`Intrinsics`] convention — in the OpenCV camera frame (x right, y down, z forward); the nearest
//! hit among the blocks (slab test in each block's frame) and the table wins. A pixel's point is
//! `t · d` for its ray `d = ((j + 0.5 − cx) / fx, (i + 0.5 − cy) / fy, 1)`, so it projects back onto
//! its own pixel centre. Rays that miss everything see the background: point +inf (invalid, as
//! MoGe writes it), id 0. Shading is flat: a face's colour times a Lambert term for a fixed light,
//! so a block's faces differ; the table is a light checkerboard of 5 cm squares.
//!
//! **Files** ([`write_scenes`]), key [`scene_key`] (`scene-000123` for index 123):
//!
//! - `images/<key>.png` — RGB;
//! - `points/<key>/points.npy` — H × W × 3 float32, camera frame, metres, +inf where invalid;
//! - `points/<key>/intrinsics.json` — `{"fx", "fy", "cx", "cy"}` in pixels;
//! - `masks/<key>.png` — 8-bit grey: block id (1, 2, …) per pixel, 0 elsewhere;
//! - `labels.json` — `{"<key>": {"<id>": "red block", …}}`;
//! - `truth.json` — a [`Truth`]: the parameters and every [`Scene`], blocks as camera-frame cuboids.
//!
//! The pipeline fits each block's box to the points it *sees* (top and one or two sides, eroded),
//! so its boxes are those of visible surfaces, not the cuboids: `tests/synthetic.rs` measures by
//! how much.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, Rgb, RgbImage};
use nalgebra::{Matrix3, Vector3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::geometry::project;
use crate::moge::{Intrinsics, NpyFloat, npy_points};
use crate::obb::OrientedBox;
use crate::pipeline::Inputs;

/// A palette entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Colour {
    /// Its name, the first word of a block's label.
    pub name: String,
    /// sRGB of a fully lit face.
    pub rgb: [u8; 3],
}

/// The camera's pose distribution and lens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    /// Distance from the camera to the table point it looks at, metres, `[min, max]`.
    pub distance: [f64; 2],
    /// Angle between the optical axis and straight down, degrees, `[min, max]`.
    pub tilt_deg: [f64; 2],
    /// The heading (about the vertical) is uniform in ± this many degrees; 0 looks along +y.
    pub heading_jitter_deg: f64,
    /// The point looked at is uniform in ± this many metres around the table centre, along x and y.
    pub target_jitter: f64,
    /// Horizontal field of view, degrees (square pixels: the vertical one follows from the shape).
    pub fov_x_deg: f64,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            distance: [0.6, 0.9],
            tilt_deg: [30.0, 50.0],
            heading_jitter_deg: 10.0,
            target_jitter: 0.05,
            fov_x_deg: 55.0,
        }
    }
}

/// What scenes look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SceneConfig {
    /// Image width, pixels.
    pub width: usize,
    /// Image height, pixels.
    pub height: usize,
    /// Blocks per scene, `[min, max]` inclusive (fewer when one does not fit).
    pub blocks: [usize; 2],
    /// Each side of a block's footprint, metres, `[min, max]`.
    pub side: [f64; 2],
    /// A block's height, metres, `[min, max]`.
    pub block_height: [f64; 2],
    /// Least distance between two blocks' footprints, metres.
    pub gap: f64,
    /// The table's size, metres: across (x) and away from the camera (y).
    pub table: [f64; 2],
    /// The camera.
    pub camera: CameraConfig,
    /// Block colours; a scene uses each at most once, so labels are unique within a scene.
    pub palette: Vec<Colour>,
}

impl Default for SceneConfig {
    fn default() -> Self {
        let palette = [
            ("red", [215, 40, 40]),
            ("green", [40, 165, 60]),
            ("blue", [40, 80, 215]),
            ("yellow", [235, 205, 40]),
            ("orange", [245, 130, 30]),
            ("purple", [135, 60, 175]),
            ("white", [235, 235, 235]),
            ("black", [35, 35, 35]),
        ]
        .map(|(name, rgb)| Colour { name: name.into(), rgb })
        .to_vec();
        Self {
            width: 112,
            height: 112,
            blocks: [2, 4],
            side: [0.04, 0.12],
            block_height: [0.03, 0.15],
            gap: 0.01,
            table: [1.2, 0.9],
            camera: CameraConfig::default(),
            palette,
        }
    }
}

/// `Err` naming `name` unless both ends of `range` pass `ok` (described by `what`) and are in order.
fn check_range(name: &str, range: [f64; 2], ok: impl Fn(f64) -> bool, what: &str) -> Result<(), String> {
    if range.iter().all(|&v| v.is_finite() && ok(v)) && range[0] <= range[1] {
        Ok(())
    } else {
        Err(format!("{name}: need [min, max] with min ≤ max, {what} (got {range:?})"))
    }
}

impl SceneConfig {
    /// Checks every parameter; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, pixels) in [("width", self.width), ("height", self.height)] {
            if pixels < 8 {
                return Err(format!("{name}: need at least 8 pixels (got {pixels})"));
            }
        }
        // Ids are 8-bit mask values.
        let most = self.palette.len().min(255);
        if !(1 <= self.blocks[0] && self.blocks[0] <= self.blocks[1] && self.blocks[1] <= most) {
            return Err(format!(
                "blocks: need 1 ≤ min ≤ max ≤ {most} (the palette's colours, at most 255) (got {:?})",
                self.blocks
            ));
        }
        check_range("side", self.side, |v| v > 0.0, "both > 0 m")?;
        check_range("block_height", self.block_height, |v| v > 0.0, "both > 0 m")?;
        if !(self.gap.is_finite() && self.gap >= 0.0) {
            return Err(format!("gap: need ≥ 0 m (got {})", self.gap));
        }
        if !self.table.iter().all(|&v| v.is_finite() && v > 0.0) {
            return Err(format!("table: need both sides > 0 m (got {:?})", self.table));
        }
        let camera = &self.camera;
        check_range("camera.distance", camera.distance, |v| v > 0.0, "both > 0 m")?;
        check_range("camera.tilt_deg", camera.tilt_deg, |v| (0.0..90.0).contains(&v), "both in [0, 90)")?;
        if !(0.0..=180.0).contains(&camera.heading_jitter_deg) {
            return Err(format!(
                "camera.heading_jitter_deg: need 0 to 180 (got {})",
                camera.heading_jitter_deg
            ));
        }
        if !(camera.target_jitter.is_finite() && camera.target_jitter >= 0.0) {
            return Err(format!("camera.target_jitter: need ≥ 0 m (got {})", camera.target_jitter));
        }
        if !(camera.fov_x_deg > 0.0 && camera.fov_x_deg < 180.0) {
            return Err(format!("camera.fov_x_deg: need between 0 and 180 (got {})", camera.fov_x_deg));
        }
        // A camera inside a block would see it from within.
        let lowest = camera.distance[0] * camera.tilt_deg[1].to_radians().cos();
        if lowest <= self.block_height[1] {
            return Err(format!(
                "camera: its lowest height, distance[0] · cos(tilt_deg[1]) = {lowest:.3} m, must be above \
                 the tallest block (block_height[1] = {} m)",
                self.block_height[1]
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for colour in &self.palette {
            let name = colour.name.trim();
            // The annotator compares labels without case: two such colours would be one label.
            if name.is_empty() || !names.insert(name.to_lowercase()) {
                return Err(format!("palette: colour names must be non-empty and distinct (`{name}`)"));
            }
        }
        Ok(())
    }
}

/// Why scenes cannot be made or written.
#[derive(Debug, thiserror::Error)]
pub enum SyntheticError {
    /// Bad parameters.
    #[error("synthetic scene parameters: {0}")]
    Config(String),
    /// Writing a file failed.
    #[error("{path}: {problem}")]
    Output {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        problem: String,
    },
    /// The output holds something this run does not write, which the annotator would read too.
    #[error(
        "{path}: not part of these {count} scenes, and the annotator would read it with them; remove it or write elsewhere"
    )]
    Foreign {
        /// The file or folder.
        path: PathBuf,
        /// Scenes of this run.
        count: usize,
    },
}

fn output_error(path: &Path, problem: impl ToString) -> SyntheticError {
    SyntheticError::Output { path: path.to_path_buf(), problem: problem.to_string() }
}

/// One block of a scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    /// Instance id: its value in the mask and its key in the labels (1, 2, … in scene order).
    pub id: u8,
    /// Label, e.g. `"red block"`.
    pub label: String,
    /// Colour of a fully lit face.
    pub rgb: [u8; 3],
    /// The cuboid in the camera frame, metres: axes (columns of `rotation`) are the footprint's two
    /// sides and the table's upward normal, `extent` = `[side, side, height]`.
    pub cuboid: OrientedBox,
}

/// A scene: the camera, the table and the blocks; also its ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// Image key.
    pub key: String,
    /// Image width, pixels.
    pub width: usize,
    /// Image height, pixels.
    pub height: usize,
    /// Pixel intrinsics.
    pub intrinsics: Intrinsics,
    /// Camera centre in the world frame (table centre at the origin, z up), metres.
    pub camera_position: [f64; 3],
    /// Camera-to-world rotation, row-major: its columns are the camera's x, y, z in the world.
    pub camera_rotation: [[f64; 3]; 3],
    /// Table size (x, y), metres.
    pub table: [f64; 2],
    /// The table's plane in the camera frame: `n · p + d = 0` for `[n, d]`, `n` its unit upward
    /// normal (so `d` is the camera's height above it).
    pub table_plane: [f64; 4],
    /// The blocks.
    pub blocks: Vec<Block>,
}

/// A rendered scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendering {
    /// Colours.
    pub image: RgbImage,
    /// Row-major camera-frame points, metres; `[+inf; 3]` where a ray hits nothing.
    pub points: Vec<[f64; 3]>,
    /// Block id per pixel, 0 for table and background.
    pub ids: GrayImage,
}

/// `truth.json`: how the scenes were made and what they hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// The crate version that wrote it.
    pub generator: String,
    /// The seed.
    pub seed: u64,
    /// The parameters.
    pub config: SceneConfig,
    /// Every scene, in index order.
    pub scenes: Vec<Scene>,
}

/// The image key of scene `index`.
pub fn scene_key(index: usize) -> String {
    format!("scene-{index:06}")
}

/// Tries to place a block; the second half of them no longer needs it inside the image.
const TRIES: usize = 200;

/// A block's footprint on the table, world frame.
struct Footprint {
    centre: [f64; 2],
    /// Unit side directions.
    axes: [[f64; 2]; 2],
    half: [f64; 2],
}

impl Footprint {
    fn corners(&self) -> impl Iterator<Item = [f64; 2]> + '_ {
        [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]].into_iter().map(|[a, b]| {
            std::array::from_fn(|d| {
                self.centre[d] + a * self.half[0] * self.axes[0][d] + b * self.half[1] * self.axes[1][d]
            })
        })
    }

    /// Half its width along the unit direction `axis`.
    fn radius(&self, axis: [f64; 2]) -> f64 {
        (0..2).map(|k| self.half[k] * (self.axes[k][0] * axis[0] + self.axes[k][1] * axis[1]).abs()).sum()
    }

    /// Whether a side direction of either separates the two by at least `gap` (separating axes:
    /// for rectangles the sides' directions are the only candidates).
    fn apart(&self, other: &Footprint, gap: f64) -> bool {
        let offset = [other.centre[0] - self.centre[0], other.centre[1] - self.centre[1]];
        self.axes
            .iter()
            .chain(&other.axes)
            .any(|&a| (offset[0] * a[0] + offset[1] * a[1]).abs() >= self.radius(a) + other.radius(a) + gap)
    }
}

fn to_rows(m: &Matrix3<f64>) -> [[f64; 3]; 3] {
    std::array::from_fn(|r| std::array::from_fn(|c| m[(r, c)]))
}

fn from_rows(m: &[[f64; 3]; 3]) -> Matrix3<f64> {
    Matrix3::from_fn(|r, c| m[r][c])
}

impl Scene {
    /// Scene `index` of `seed`: depends on nothing else, so any subset can be made in any order.
    pub fn sample(config: &SceneConfig, seed: u64, index: usize) -> Result<Self, SyntheticError> {
        config.validate().map_err(SyntheticError::Config)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index as u64);
        let camera = &config.camera;
        let distance = rng.random_range(camera.distance[0]..=camera.distance[1]);
        let tilt = rng.random_range(camera.tilt_deg[0]..=camera.tilt_deg[1]).to_radians();
        let heading = rng.random_range(-camera.heading_jitter_deg..=camera.heading_jitter_deg).to_radians();
        let jitter = camera.target_jitter;
        let target =
            Vector3::new(rng.random_range(-jitter..=jitter), rng.random_range(-jitter..=jitter), 0.0);
        let forward = Vector3::new(tilt.sin() * heading.sin(), tilt.sin() * heading.cos(), -tilt.cos());
        // Horizontal (no roll), and well defined even looking straight down.
        let right = Vector3::new(heading.cos(), -heading.sin(), 0.0);
        let down = forward.cross(&right);
        let rotation = Matrix3::from_columns(&[right, down, forward]);
        let position = target - distance * forward;
        let (w, h) = (config.width as f64, config.height as f64);
        let focal = w / 2.0 / (camera.fov_x_deg.to_radians() / 2.0).tan();
        let intrinsics = Intrinsics { fx: focal, fy: focal, cx: w / 2.0, cy: h / 2.0 };
        let to_camera = |p: Vector3<f64>| rotation.transpose() * (p - position);
        let up = rotation.transpose() * Vector3::z();

        let count = rng.random_range(config.blocks[0]..=config.blocks[1]);
        let colours = rand::seq::index::sample(&mut rng, config.palette.len(), count);
        let (mut footprints, mut blocks): (Vec<Footprint>, Vec<Block>) = (Vec::new(), Vec::new());
        for colour in colours.iter().map(|i| &config.palette[i]) {
            for attempt in 0..TRIES {
                let sides = [
                    rng.random_range(config.side[0]..=config.side[1]),
                    rng.random_range(config.side[0]..=config.side[1]),
                ];
                let height = rng.random_range(config.block_height[0]..=config.block_height[1]);
                let yaw = rng.random_range(0.0..=PI);
                let (u, v) = (rng.random_range(0.0..=w), rng.random_range(0.0..=h));
                // Where the pixel's ray meets the table: blocks spread over the image.
                let ray =
                    rotation * Vector3::new((u - intrinsics.cx) / focal, (v - intrinsics.cy) / focal, 1.0);
                if ray.z >= 0.0 {
                    continue;
                }
                let on_table = position - position.z / ray.z * ray;
                let (c, s) = (yaw.cos(), yaw.sin());
                let footprint = Footprint {
                    centre: [on_table.x, on_table.y],
                    axes: [[c, s], [-s, c]],
                    half: [sides[0] / 2.0, sides[1] / 2.0],
                };
                let inside =
                    |p: [f64; 2]| p[0].abs() <= config.table[0] / 2.0 && p[1].abs() <= config.table[1] / 2.0;
                if !footprint.corners().all(inside)
                    || !footprints.iter().all(|f| f.apart(&footprint, config.gap))
                {
                    continue;
                }
                let axes = [Vector3::new(c, s, 0.0), Vector3::new(-s, c, 0.0), Vector3::z()];
                let cuboid = OrientedBox {
                    center: to_camera(on_table + Vector3::new(0.0, 0.0, height / 2.0)).into(),
                    rotation: to_rows(&Matrix3::from_columns(&axes.map(|a| rotation.transpose() * a))),
                    extent: [sides[0], sides[1], height],
                };
                let in_image = cuboid.open3d_box_points().iter().all(|&p| {
                    project(&intrinsics, p)
                        .is_some_and(|[u, v]| (0.0..=w).contains(&u) && (0.0..=h).contains(&v))
                });
                if attempt < TRIES / 2 && !in_image {
                    continue;
                }
                let (least, most) =
                    cuboid.extent.iter().fold((f64::INFINITY, 0.0f64), |(l, m), &e| (l.min(e), m.max(e)));
                let noun = if most <= 1.25 * least { "cube" } else { "block" };
                blocks.push(Block {
                    id: blocks.len() as u8 + 1,
                    label: format!("{} {noun}", colour.name.trim()),
                    rgb: colour.rgb,
                    cuboid,
                });
                footprints.push(footprint);
                break;
            }
        }
        Ok(Scene {
            key: scene_key(index),
            width: config.width,
            height: config.height,
            intrinsics,
            camera_position: position.into(),
            camera_rotation: to_rows(&rotation),
            table: config.table,
            table_plane: [up.x, up.y, up.z, position.z],
            blocks,
        })
    }

    /// Ray-casts the scene (see the module documentation).
    pub fn render(&self) -> Rendering {
        const BACKGROUND: [u8; 3] = [18, 18, 24];
        const TABLE: [f64; 3] = [165.0, 150.0, 130.0];
        const SQUARE: f64 = 0.05;
        const AMBIENT: f64 = 0.3;
        let (w, h) = (self.width, self.height);
        let k = self.intrinsics;
        let rotation = from_rows(&self.camera_rotation);
        let position = Vector3::from(self.camera_position);
        let [nx, ny, nz, offset] = self.table_plane;
        let up = Vector3::new(nx, ny, nz);
        // From above, in front and to the left: tops brightest, the four sides all different.
        let light = Vector3::new(-0.3, -0.5, 1.0).normalize();
        let shade = |camera_normal: Vector3<f64>| {
            AMBIENT + (1.0 - AMBIENT) * (rotation * camera_normal).dot(&light).max(0.0)
        };
        let table_shade = shade(up);
        // Per block: camera-to-block rotation, the camera centre in the block frame, half extents.
        let frames: Vec<(Matrix3<f64>, Vector3<f64>, Vector3<f64>)> = self
            .blocks
            .iter()
            .map(|b| {
                let to_block = from_rows(&b.cuboid.rotation).transpose();
                (to_block, -(to_block * Vector3::from(b.cuboid.center)), Vector3::from(b.cuboid.extent) / 2.0)
            })
            .collect();
        let mut image = RgbImage::from_pixel(w as u32, h as u32, Rgb(BACKGROUND));
        let mut ids = GrayImage::new(w as u32, h as u32);
        let mut points = vec![[f64::INFINITY; 3]; w * h];
        for i in 0..h {
            for j in 0..w {
                let d = Vector3::new((j as f64 + 0.5 - k.cx) / k.fx, (i as f64 + 0.5 - k.cy) / k.fy, 1.0);
                // (t, block index or None for the table, colour)
                let mut nearest: Option<(f64, Option<usize>, [f64; 3])> = None;
                let along = up.dot(&d);
                if along < 0.0 {
                    let t = -offset / along;
                    let world = rotation * (t * d) + position;
                    if world.x.abs() <= self.table[0] / 2.0 && world.y.abs() <= self.table[1] / 2.0 {
                        let square = (world.x / SQUARE).floor() + (world.y / SQUARE).floor();
                        let texture = if square.rem_euclid(2.0) < 1.0 { 1.0 } else { 0.9 };
                        nearest = Some((t, None, TABLE.map(|c| c * texture * table_shade)));
                    }
                }
                for (b, (to_block, origin, half)) in frames.iter().enumerate() {
                    let Some((t, axis, sign)) = slab(origin, &(to_block * d), half) else { continue };
                    if nearest.is_none_or(|(best, ..)| t < best) {
                        let normal = to_block.transpose().column(axis) * sign;
                        let lit = shade(normal);
                        nearest = Some((t, Some(b), self.blocks[b].rgb.map(|c| f64::from(c) * lit)));
                    }
                }
                if let Some((t, block, colour)) = nearest {
                    points[i * w + j] = (t * d).into();
                    image.put_pixel(
                        j as u32,
                        i as u32,
                        Rgb(colour.map(|c| c.round().clamp(0.0, 255.0) as u8)),
                    );
                    if let Some(b) = block {
                        ids.put_pixel(j as u32, i as u32, Luma([self.blocks[b].id]));
                    }
                }
            }
        }
        Rendering { image, points, ids }
    }
}

/// Where the ray `origin + t · dir` enters the box `[−half, half]` (in the box's frame): `t` and
/// the face it crosses (axis, outward sign); `None` when it misses or starts inside.
fn slab(origin: &Vector3<f64>, dir: &Vector3<f64>, half: &Vector3<f64>) -> Option<(f64, usize, f64)> {
    let (mut near, mut far, mut face) = (f64::NEG_INFINITY, f64::INFINITY, (0, 1.0));
    for k in 0..3 {
        // A zero direction gives ±inf here: the slab is then everything or nothing, as it should.
        let (a, b) = ((-half[k] - origin[k]) / dir[k], (half[k] - origin[k]) / dir[k]);
        let (enter, leave) = if a < b { (a, b) } else { (b, a) };
        if enter > near {
            near = enter;
            face = (k, if dir[k] > 0.0 { -1.0 } else { 1.0 });
        }
        far = far.min(leave);
    }
    (near <= far && near > 0.0).then_some((near, face.0, face.1))
}

/// Refuses an entry of `dir` that is not `scene_key(i) + suffix` for `i < count`, and in such an
/// entry (a folder) any file not named in `inner`: the annotator would read it along.
fn refuse_foreign(dir: &Path, count: usize, suffix: &str, inner: &[&str]) -> Result<(), SyntheticError> {
    let foreign = |path: PathBuf| Err(SyntheticError::Foreign { path, count });
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let ours = name
            .to_str()
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|stem| Some((stem, stem.strip_prefix("scene-")?.parse::<usize>().ok()?)))
            .is_some_and(|(stem, index)| index < count && scene_key(index) == stem);
        if !ours {
            return foreign(entry.path());
        }
        if entry.path().is_dir() {
            for file in std::fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                if !file.file_name().to_str().is_some_and(|n| inner.contains(&n)) {
                    return foreign(file.path());
                }
            }
        }
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SyntheticError> {
    std::fs::write(path, bytes).map_err(|e| output_error(path, e))
}

/// Renders `scene` and writes its image, point map, intrinsics and mask.
fn write_scene(inputs: &Inputs, scene: &Scene) -> Result<(), SyntheticError> {
    let rendering = scene.render();
    let image = inputs.images.join(format!("{}.png", scene.key));
    rendering.image.save(&image).map_err(|e| output_error(&image, e))?;
    let points = inputs.points.join(&scene.key);
    std::fs::create_dir_all(&points).map_err(|e| output_error(&points, e))?;
    write_file(
        &points.join("points.npy"),
        &npy_points(scene.height, scene.width, &rendering.points, NpyFloat::F32),
    )?;
    let intrinsics = serde_json::to_vec(&scene.intrinsics).map_err(|e| output_error(&points, e))?;
    write_file(&points.join("intrinsics.json"), &intrinsics)?;
    let mask = inputs.masks.join(format!("{}.png", scene.key));
    rendering.ids.save(&mask).map_err(|e| output_error(&mask, e))
}

/// Makes scenes `0..count` of `seed` and writes them under `out_dir` in the annotator's input
/// layout (see the module documentation), in parallel; the bytes do not depend on the thread
/// count. Returns where the annotator's inputs are. Files of these scenes are overwritten; anything
/// else in `images/`, `points/` or `masks/` is refused before anything is written, since the
/// annotator would read it along.
pub fn write_scenes(
    out_dir: &Path,
    config: &SceneConfig,
    seed: u64,
    count: usize,
) -> Result<Inputs, SyntheticError> {
    config.validate().map_err(SyntheticError::Config)?;
    let inputs = Inputs {
        images: out_dir.join("images"),
        points: out_dir.join("points"),
        masks: out_dir.join("masks"),
        labels: Some(out_dir.join("labels.json")),
    };
    refuse_foreign(&inputs.images, count, ".png", &[])?;
    refuse_foreign(&inputs.points, count, "", &["points.npy", "intrinsics.json"])?;
    refuse_foreign(&inputs.masks, count, ".png", &[])?;
    for dir in [&inputs.images, &inputs.points, &inputs.masks] {
        std::fs::create_dir_all(dir).map_err(|e| output_error(dir, e))?;
    }
    let scenes: Vec<Scene> = (0..count)
        .into_par_iter()
        .map(|index| {
            let scene = Scene::sample(config, seed, index)?;
            write_scene(&inputs, &scene)?;
            Ok(scene)
        })
        .collect::<Result<_, SyntheticError>>()?;
    let labels: BTreeMap<&str, BTreeMap<String, &str>> = scenes
        .iter()
        .map(|s| (s.key.as_str(), s.blocks.iter().map(|b| (b.id.to_string(), b.label.as_str())).collect()))
        .collect();
    let labels_path = out_dir.join("labels.json");
    write_file(
        &labels_path,
        &serde_json::to_vec_pretty(&labels).map_err(|e| output_error(&labels_path, e))?,
    )?;
    let truth = Truth {
        generator: format!("spear-annotate {}", env!("CARGO_PKG_VERSION")),
        seed,
        config: config.clone(),
        scenes,
    };
    let truth_path = out_dir.join("truth.json");
    write_file(&truth_path, &serde_json::to_vec_pretty(&truth).map_err(|e| output_error(&truth_path, e))?)?;
    Ok(inputs)
}
