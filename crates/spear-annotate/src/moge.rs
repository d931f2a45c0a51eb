//! Point maps: MoGe's outputs as `moge infer --maps` writes them — `points.exr` (float32; R = x,
//! G = y, B = z in OpenCV camera axes — x right, y down, z forward — with +inf at invalid pixels),
//! `mask.png` (255 valid) and `fov.json` (degrees, rounded to 2 decimals) — or a NumPy
//! `points.npy` (H × W × 3, float32 or float64, non-finite = invalid; [`npy_points`] writes one)
//! with an optional `mask.png` and `fov.json` or `intrinsics.json` (`{"fx", "fy", "cx", "cy"}` in
//! pixels); and object point clouds cut from them by instance masks.
//!
//! Without either JSON file the intrinsics are fitted to the point map itself: `u = fx·X/Z + cx`
//! is exactly linear for MoGe's maps (it projects its depth through a pinhole), so a least-squares
//! line over the valid pixels recovers them (better than `fov.json`'s 0.01° rounding).

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
    /// The annotation parameters are invalid.
    #[error("annotation parameters: {0}")]
    Parameters(String),
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

pub(crate) fn file_error(path: &Path, problem: impl ToString) -> InputError {
    InputError::File { path: path.to_path_buf(), problem: problem.to_string() }
}

/// Pinhole intrinsics in pixels: `u = fx·X/Z + cx`, `v = fy·Y/Z + cy`, pixel `(row i, column j)`
/// centred at `(j + 0.5, i + 0.5)`. Serialises as `intrinsics.json` reads it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// Pixel intrinsics.
    pub intrinsics: Intrinsics,
}

/// Reads a mask PNG (grey, grey + alpha, RGB or RGBA; 8 or 16 bits) as "any colour channel is
/// non-zero" (alpha is ignored).
pub fn read_mask_png(path: &Path) -> Result<(usize, usize, Vec<bool>), InputError> {
    use image::DynamicImage as D;
    let image = image::open(path).map_err(|e| file_error(path, e))?;
    let (w, h) = (image.width() as usize, image.height() as usize);
    fn any<T: Copy + Default + PartialEq>(samples: &[T], stride: usize, colours: usize) -> Vec<bool> {
        samples.chunks_exact(stride).map(|p| p[..colours].iter().any(|&v| v != T::default())).collect()
    }
    let set = match &image {
        D::ImageLuma8(i) => any(i.as_raw(), 1, 1),
        D::ImageLumaA8(i) => any(i.as_raw(), 2, 1),
        D::ImageRgb8(i) => any(i.as_raw(), 3, 3),
        D::ImageRgba8(i) => any(i.as_raw(), 4, 3),
        D::ImageLuma16(i) => any(i.as_raw(), 1, 1),
        D::ImageLumaA16(i) => any(i.as_raw(), 2, 1),
        D::ImageRgb16(i) => any(i.as_raw(), 3, 3),
        D::ImageRgba16(i) => any(i.as_raw(), 4, 3),
        other => return Err(file_error(path, format!("{:?} is not a mask format", other.color()))),
    };
    Ok((h, w, set))
}

impl PointMap {
    /// Reads the point map in `dir`: `points.exr` (MoGe) or `points.npy`, with `mask.png`,
    /// `fov.json` / `intrinsics.json` as the module documentation describes.
    pub fn read_dir(dir: impl AsRef<Path>) -> Result<Self, InputError> {
        let dir = dir.as_ref();
        let (exr, npy) = (dir.join("points.exr"), dir.join("points.npy"));
        let (height, width, points) = if exr.is_file() {
            read_exr_points(&exr)?
        } else if npy.is_file() {
            read_npy_points(&npy)?
        } else {
            return Err(file_error(dir, "no points.exr or points.npy"));
        };
        let mask_path = dir.join("mask.png");
        let mask = if mask_path.is_file() {
            let (mh, mw, mask) = read_mask_png(&mask_path)?;
            if [mh, mw] != [height, width] {
                return Err(InputError::Size { path: mask_path, found: [mh, mw], expected: [height, width] });
            }
            Some(mask)
        } else if exr.is_file() {
            return Err(file_error(&mask_path, "missing (MoGe writes it beside points.exr)"));
        } else {
            None
        };
        let valid: Vec<bool> = points
            .iter()
            .enumerate()
            .map(|(i, p)| mask.as_ref().is_none_or(|m| m[i]) && p.iter().all(|v| v.is_finite()) && p[2] > 0.0)
            .collect();
        let (fov_path, k_path) = (dir.join("fov.json"), dir.join("intrinsics.json"));
        let intrinsics = if fov_path.is_file() {
            let fov = read_json(&fov_path)?;
            let angle = |key: &str| {
                fov[key]
                    .as_f64()
                    .filter(|v| *v > 0.0 && *v < 180.0)
                    .ok_or_else(|| file_error(&fov_path, format!("no `{key}` between 0 and 180 degrees")))
            };
            let focal = |size: usize, fov: f64| 0.5 * size as f64 / (fov.to_radians() / 2.0).tan();
            Intrinsics {
                fx: focal(width, angle("fov_x")?),
                fy: focal(height, angle("fov_y")?),
                cx: width as f64 / 2.0,
                cy: height as f64 / 2.0,
            }
        } else if k_path.is_file() {
            let k = read_json(&k_path)?;
            let get = |key: &str| {
                k[key]
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| file_error(&k_path, format!("no number `{key}`")))
            };
            let intrinsics = Intrinsics { fx: get("fx")?, fy: get("fy")?, cx: get("cx")?, cy: get("cy")? };
            if intrinsics.fx <= 0.0 || intrinsics.fy <= 0.0 {
                return Err(file_error(&k_path, "focal lengths must be positive"));
            }
            intrinsics
        } else {
            fit_intrinsics(width, &points, &valid).ok_or_else(|| {
                file_error(dir, "no fov.json or intrinsics.json, and too few valid points to fit them")
            })?
        };
        if !valid.iter().any(|&v| v) {
            return Err(file_error(dir, "the point map has no valid pixel"));
        }
        Ok(Self { height, width, points, valid, intrinsics })
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

/// A JSON file, errors naming it.
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, InputError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    serde_json::from_str(&text).map_err(|e| file_error(path, e))
}

type Points = (usize, usize, Vec<[f32; 3]>);

fn read_exr_points(path: &Path) -> Result<Points, InputError> {
    let image = exr::prelude::read_first_flat_layer_from_file(path).map_err(|e| file_error(path, e))?;
    let layer = &image.layer_data;
    let (width, height) = (layer.size.width(), layer.size.height());
    let channel = |name: &str| {
        let c = layer.channel_data.list.iter().find(|c| c.name == *name).ok_or_else(|| {
            file_error(path, format!("no channel {name} (MoGe writes R = x, G = y, B = z)"))
        })?;
        match &c.sample_data {
            exr::prelude::FlatSamples::F32(v) => Ok(v),
            _ => Err(file_error(path, format!("channel {name} is not float32"))),
        }
    };
    let (x, y, z) = (channel("R")?, channel("G")?, channel("B")?);
    Ok((height, width, (0..width * height).map(|i| [x[i], y[i], z[i]]).collect()))
}

/// A NumPy `.npy` (format 1–3) holding an H × W × 3 array of little-endian f32 or f64, C order.
fn read_npy_points(path: &Path) -> Result<Points, InputError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let bad = |problem: &str| file_error(path, format!("not a usable .npy point map: {problem}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no NumPy magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => return Err(bad(&format!("format version {v}"))),
    };
    let header = bytes.get(start..start + header_len).ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| {
        let at = header.find(&format!("'{key}'")).ok_or_else(|| bad(&format!("no '{key}' in the header")))?;
        Ok::<_, InputError>(header[at + key.len() + 2..].trim_start_matches([':', ' ']))
    };
    let descr = field("descr")?;
    let width_bytes = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(bad("dtype must be little-endian float32 or float64 ('<f4' / '<f8')"));
    };
    if !field("fortran_order")?.starts_with("False") {
        return Err(bad("Fortran order is not supported (save a C-contiguous array)"));
    }
    let shape = field("shape")?;
    let shape = shape.strip_prefix('(').ok_or_else(|| bad("shape is not a tuple"))?;
    let shape: Vec<usize> = shape[..shape.find(')').ok_or_else(|| bad("shape"))?]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("shape")))
        .collect::<Result<_, _>>()?;
    let [height, width, 3] = shape[..] else {
        return Err(bad(&format!("shape {shape:?}, expected (height, width, 3)")));
    };
    let data = &bytes[start + header_len..];
    let expected = height.checked_mul(width).and_then(|n| n.checked_mul(3 * width_bytes));
    if expected != Some(data.len()) {
        return Err(bad(&format!("{} data bytes for shape {shape:?}", data.len())));
    }
    let value = |i: usize| -> f32 {
        if width_bytes == 4 {
            f32::from_le_bytes(data[4 * i..4 * i + 4].try_into().unwrap())
        } else {
            f64::from_le_bytes(data[8 * i..8 * i + 8].try_into().unwrap()) as f32
        }
    };
    Ok((
        height,
        width,
        (0..height * width).map(|p| [value(3 * p), value(3 * p + 1), value(3 * p + 2)]).collect(),
    ))
}

/// The element type of a written `.npy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyFloat {
    /// `'<f4'`.
    F32,
    /// `'<f8'`.
    F64,
}

/// A NumPy 1.0 `.npy` file of shape `(height, width, 3)`, C order, little-endian `dtype` — the
/// `points.npy` that [`PointMap::read_dir`] reads — from row-major `points` (non-finite values
/// stay non-finite: invalid pixels).
///
/// # Panics
///
/// If `points` does not hold `height · width` points.
pub fn npy_points<T: Copy + Into<f64>>(
    height: usize,
    width: usize,
    points: &[[T; 3]],
    dtype: NpyFloat,
) -> Vec<u8> {
    assert_eq!(points.len(), height * width, "npy_points: {height} × {width} points expected");
    let descr = match dtype {
        NpyFloat::F32 => "<f4",
        NpyFloat::F64 => "<f8",
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({height}, {width}, 3), }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes (NumPy's rule).
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    for &value in points.iter().flatten() {
        let value: f64 = value.into();
        match dtype {
            NpyFloat::F32 => bytes.extend((value as f32).to_le_bytes()),
            NpyFloat::F64 => bytes.extend(value.to_le_bytes()),
        }
    }
    bytes
}

/// Least-squares `u = fx·X/Z + cx`, `v = fy·Y/Z + cy` over the valid pixels (pixel centres at
/// `j + 0.5`, `i + 0.5`); `None` when fewer than 2 distinct values.
pub fn fit_intrinsics(width: usize, points: &[[f32; 3]], valid: &[bool]) -> Option<Intrinsics> {
    let fit = |axis: usize, pixel: &dyn Fn(usize) -> f64| {
        let (mut n, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in (0..points.len()).filter(|&i| valid[i]) {
            let p = points[i];
            let x = f64::from(p[axis]) / f64::from(p[2]);
            let y = pixel(i);
            (n, sx, sy, sxx, sxy) = (n + 1.0, sx + x, sy + y, sxx + x * x, sxy + x * y);
        }
        let det = n * sxx - sx * sx;
        (det > 0.0).then(|| {
            let slope = (n * sxy - sx * sy) / det;
            (slope, (sy - slope * sx) / n)
        })
    };
    let (fx, cx) = fit(0, &|i| (i % width) as f64 + 0.5)?;
    let (fy, cy) = fit(1, &|i| (i / width) as f64 + 0.5)?;
    (fx > 0.0 && fy > 0.0).then_some(Intrinsics { fx, fy, cx, cy })
}
