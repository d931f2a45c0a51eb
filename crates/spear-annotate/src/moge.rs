//! MoGe's outputs as `moge infer --maps` writes them: `points.exr` (float32; R = x, G = y, B = z in
//! OpenCV camera axes — x right, y down, z forward — with +inf at invalid pixels), `mask.png`
//! (255 valid) and `fov.json` (degrees, rounded to 2 decimals), and object point clouds cut from
//! them by instance masks.

use std::path::{Path, PathBuf};

/// Why an input cannot be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A file is unreadable or malformed.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Two inputs disagree in size.
    #[error("{path}: {found:?} (height, width), but the point map is {expected:?}")]
    Size {
        /// The mismatching file.
        path: PathBuf,
        /// Its size.
        found: [usize; 2],
        /// The point map's size.
        expected: [usize; 2],
    },
}

fn file_error(path: &Path, problem: impl ToString) -> InputError {
    InputError::File { path: path.to_path_buf(), problem: problem.to_string() }
}

/// Pinhole intrinsics in pixels: `u = fx·X/Z + cx`, `v = fy·Y/Z + cy`, pixel `(row i, column j)`
/// centred at `(j + 0.5, i + 0.5)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intrinsics {
    /// Horizontal focal length.
    pub fx: f64,
    /// Vertical focal length.
    pub fy: f64,
    /// Principal point, horizontal.
    pub cx: f64,
    /// Principal point, vertical.
    pub cy: f64,
}

/// A per-pixel 3D point map with its validity.
#[derive(Debug, Clone, PartialEq)]
pub struct PointMap {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Row-major points, metres (MoGe-2) or up to scale (MoGe-1).
    pub points: Vec<[f32; 3]>,
    /// Valid pixels: `mask.png` set and all three coordinates finite.
    pub valid: Vec<bool>,
    /// Horizontal field of view, degrees.
    pub fov_x_deg: f64,
    /// Vertical field of view, degrees.
    pub fov_y_deg: f64,
}

/// Reads an 8-bit mask PNG (grey, or the first channel of anything else) as `value > 0`.
pub fn read_mask_png(path: &Path) -> Result<(usize, usize, Vec<bool>), InputError> {
    let image = image::open(path).map_err(|e| file_error(path, e))?.into_luma8();
    let (w, h) = (image.width() as usize, image.height() as usize);
    Ok((h, w, image.into_raw().into_iter().map(|v| v > 0).collect()))
}

impl PointMap {
    /// Reads MoGe's `points.exr`, `mask.png` and `fov.json` from `dir`.
    pub fn read_moge(dir: impl AsRef<Path>) -> Result<Self, InputError> {
        let dir = dir.as_ref();
        let exr_path = dir.join("points.exr");
        let image =
            exr::prelude::read_first_flat_layer_from_file(&exr_path).map_err(|e| file_error(&exr_path, e))?;
        let layer = &image.layer_data;
        let (width, height) = (layer.size.width(), layer.size.height());
        let channel = |name: &str| {
            let c = layer.channel_data.list.iter().find(|c| c.name == *name).ok_or_else(|| {
                file_error(&exr_path, format!("no channel {name} (MoGe writes R = x, G = y, B = z)"))
            })?;
            match &c.sample_data {
                exr::prelude::FlatSamples::F32(v) => Ok(v),
                _ => Err(file_error(&exr_path, format!("channel {name} is not float32"))),
            }
        };
        let (x, y, z) = (channel("R")?, channel("G")?, channel("B")?);
        let points: Vec<[f32; 3]> = (0..width * height).map(|i| [x[i], y[i], z[i]]).collect();
        let mask_path = dir.join("mask.png");
        let (mh, mw, mask) = read_mask_png(&mask_path)?;
        if [mh, mw] != [height, width] {
            return Err(InputError::Size { path: mask_path, found: [mh, mw], expected: [height, width] });
        }
        let valid = points.iter().zip(&mask).map(|(p, &m)| m && p.iter().all(|v| v.is_finite())).collect();
        let fov_path = dir.join("fov.json");
        let fov: serde_json::Value = std::fs::read_to_string(&fov_path)
            .map_err(|e| file_error(&fov_path, e))
            .and_then(|t| serde_json::from_str(&t).map_err(|e| file_error(&fov_path, e)))?;
        let angle = |key: &str| {
            fov[key]
                .as_f64()
                .filter(|v| *v > 0.0 && *v < 180.0)
                .ok_or_else(|| file_error(&fov_path, format!("no `{key}` between 0 and 180 degrees")))
        };
        Ok(Self { height, width, points, valid, fov_x_deg: angle("fov_x")?, fov_y_deg: angle("fov_y")? })
    }

    /// The pinhole intrinsics implied by the fields of view and a centred principal point (MoGe's
    /// normalised intrinsics in pixels).
    pub fn intrinsics(&self) -> Intrinsics {
        let focal = |size: usize, fov: f64| 0.5 * size as f64 / (fov.to_radians() / 2.0).tan();
        Intrinsics {
            fx: focal(self.width, self.fov_x_deg),
            fy: focal(self.height, self.fov_y_deg),
            cx: self.width as f64 / 2.0,
            cy: self.height as f64 / 2.0,
        }
    }

    /// The points of the valid pixels inside `instance` (row-major, same size as the map; `path`
    /// names it in errors), in row-major order, widened to f64.
    pub fn object_cloud(&self, instance: &[bool], path: &Path) -> Result<ObjectCloud, InputError> {
        if instance.len() != self.points.len() {
            return Err(InputError::Size {
                path: path.to_path_buf(),
                found: [instance.len() / self.width.max(1), self.width],
                expected: [self.height, self.width],
            });
        }
        let (mut points, mut pixels) = (Vec::new(), Vec::new());
        for i in (0..self.points.len()).filter(|&i| instance[i] && self.valid[i]) {
            points.push(self.points[i].map(f64::from));
            pixels.push([i / self.width, i % self.width]);
        }
        Ok(ObjectCloud { points, pixels })
    }
}

/// An object's points and the pixels they come from.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectCloud {
    /// Camera-frame points, row-major pixel order.
    pub points: Vec<[f64; 3]>,
    /// `(row, column)` of each.
    pub pixels: Vec<[usize; 2]>,
}
