//! MoGe's post-processing of a predicted point map, as `moge.utils.geometry_torch` computes it:
//! the view-plane UV grid, the recovery of the focal length and the z shift of an
//! affine-invariant map, and the intrinsics that follow.
//!
//! Maps are row-major `H × W` slices of `[x, y, z]` in OpenCV camera axes (x right, y down,
//! z forward). Focal lengths are relative to the half diagonal of the image, MoGe's unit.

/// The side of the grid the focal and shift are fitted on (MoGe's `downsample_size`).
pub const FIT_GRID: usize = 64;

/// MoGe's `normalized_view_plane_uv(width, height)`: per pixel, row-major, the offset of its centre
/// from the image centre in half-diagonal units — `u` spans `±a/√(1+a²)·(W−1)/W` and `v` spans
/// `±1/√(1+a²)·(H−1)/H` (`a = W/H`), each an f32 `linspace` as PyTorch computes it.
pub fn view_plane_uv(width: usize, height: usize) -> Vec<[f32; 2]> {
    let aspect = width as f64 / height as f64;
    let norm = (1.0 + aspect * aspect).sqrt();
    let u = linspace_f32(aspect / norm * (width - 1) as f64 / width as f64, width);
    let v = linspace_f32(1.0 / norm * (height - 1) as f64 / height as f64, height);
    v.iter().flat_map(|&v| u.iter().map(move |&u| [u, v])).collect()
}

/// `torch.linspace(-end, end, steps, dtype=float32)`: the step in f32, the first half counted up
/// from the start and the second half down from the end, as PyTorch's CPU kernel does.
fn linspace_f32(end: f64, steps: usize) -> Vec<f32> {
    let (start, end) = (-end as f32, end as f32);
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| if i < half { start + step * i as f32 } else { end - step * (steps - 1 - i) as f32 })
        .collect()
}

/// The source index of output `index` when nearest-resizing `input` samples to `output`
/// (PyTorch's `mode='nearest'`: `min(floor(index · input/output), input − 1)`, in f32).
fn nearest(index: usize, input: usize, output: usize) -> usize {
    let scale = input as f32 / output as f32;
    ((index as f32 * scale).floor() as usize).min(input - 1)
}

/// A focal length (half-diagonal units) and the z shift that makes an affine-invariant point map
/// a camera-space one (`depth = z + shift`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FocalShift {
    /// Focal length relative to the half diagonal.
    pub focal: f32,
    /// Added to every z.
    pub shift: f32,
}

/// MoGe's `recover_focal_shift`: nearest-resizes the map, its UV grid and `mask` to
/// [`FIT_GRID`]², then fits the shift minimising `Σ ‖f·xy/(z + shift) − uv‖²` over the valid
/// samples, with `f` in closed form (`Σ p·uv / Σ p²`, `p = xy/(z + shift)`) or `focal` when given
/// (e.g. from a known field of view, [`focal_from_fov_x`]). Below two valid samples: focal 1
/// (or the given one), shift 0, as MoGe returns.
///
/// MoGe solves with scipy's Levenberg–Marquardt from shift 0 (`ftol=1e-3`); this converges the
/// same one-dimensional problem from the same start by Newton steps on the exact gradient (its
/// derivative by a central difference), halved until the cost falls, and lands where scipy's
/// stops to within 1e-7 on well-posed maps (`tests/models/moge_post.rs`). As in MoGe, the shift
/// is rounded to f32 and the focal recomputed from it.
///
/// # Panics
/// When `points` (or `mask`) does not hold `height × width` entries.
pub fn recover_focal_shift(
    points: &[[f32; 3]],
    mask: Option<&[bool]>,
    height: usize,
    width: usize,
    focal: Option<f32>,
) -> FocalShift {
    assert_eq!(points.len(), height * width, "a point map of {height} × {width}");
    assert!(mask.is_none_or(|m| m.len() == height * width), "a mask of {height} × {width}");
    let uv = view_plane_uv(width, height);
    let mut samples: Vec<([f64; 2], [f64; 2], f64)> = Vec::with_capacity(FIT_GRID * FIT_GRID);
    for row in 0..FIT_GRID {
        let i = nearest(row, height, FIT_GRID);
        for col in 0..FIT_GRID {
            let index = i * width + nearest(col, width, FIT_GRID);
            if mask.is_none_or(|m| m[index]) {
                let [x, y, z] = points[index].map(f64::from);
                let [u, v] = uv[index].map(f64::from);
                samples.push(([x, y], [u, v], z));
            }
        }
    }
    if samples.len() < 2 {
        return FocalShift { focal: focal.unwrap_or(1.0), shift: 0.0 };
    }
    let shift = solve_shift(&samples, focal.map(f64::from)) as f32;
    let focal = focal.unwrap_or_else(|| {
        // Recomputed in f32 from the rounded shift, as MoGe does.
        let (mut dot, mut square) = (0.0f64, 0.0f64);
        for (xy, uv, z) in &samples {
            let depth = *z as f32 + shift;
            for k in 0..2 {
                let p = f64::from(xy[k] as f32 / depth);
                dot += p * uv[k];
                square += p * p;
            }
        }
        (dot / square) as f32
    });
    FocalShift { focal, shift }
}

/// The residuals' sum of squares and its derivative in the shift, with the focal in closed form
/// (variable projection) or fixed.
fn objective(samples: &[([f64; 2], [f64; 2], f64)], shift: f64, focal: Option<f64>) -> (f64, f64) {
    // p = xy/(z+s), dp/ds = -p/(z+s).
    let (mut a, mut b, mut da, mut db) = (0.0, 0.0, 0.0, 0.0);
    for (xy, uv, z) in samples {
        let d = z + shift;
        for k in 0..2 {
            let p = xy[k] / d;
            let dp = -p / d;
            a += p * uv[k];
            b += p * p;
            da += dp * uv[k];
            db += 2.0 * p * dp;
        }
    }
    let (f, df) = match focal {
        Some(f) => (f, 0.0),
        None if b > 0.0 => (a / b, (da * b - a * db) / (b * b)),
        None => (0.0, 0.0),
    };
    let (mut cost, mut gradient) = (0.0, 0.0);
    for (xy, uv, z) in samples {
        let d = z + shift;
        for k in 0..2 {
            let p = xy[k] / d;
            let r = f * p - uv[k];
            let dr = df * p + f * (-p / d);
            cost += r * r;
            gradient += r * dr;
        }
    }
    (cost, gradient)
}

/// Minimises [`objective`] over the shift from 0: Newton steps (the curvature from a central
/// difference of the gradient), halved until the cost falls, to convergence.
fn solve_shift(samples: &[([f64; 2], [f64; 2], f64)], focal: Option<f64>) -> f64 {
    let mut shift = 0.0f64;
    let (mut cost, mut gradient) = objective(samples, shift, focal);
    for _ in 0..200 {
        let h = 1e-6 * (1.0 + shift.abs());
        let curvature =
            (objective(samples, shift + h, focal).1 - objective(samples, shift - h, focal).1) / (2.0 * h);
        // A stationary start (e.g. one point repeated: every shift fits it) stays where it is, as
        // scipy's solver does.
        if gradient == 0.0 {
            break;
        }
        let mut step = if curvature > 0.0 { -gradient / curvature } else { -gradient.signum() * h * 1e3 };
        if !step.is_finite() {
            break;
        }
        let mut accepted = false;
        for _ in 0..60 {
            let (c, g) = objective(samples, shift + step, focal);
            if c.is_finite() && c < cost {
                (shift, cost, gradient) = (shift + step, c, g);
                accepted = true;
                break;
            }
            step /= 2.0;
        }
        if !accepted || step.abs() <= 1e-13 * (1.0 + shift.abs()) {
            break;
        }
    }
    shift
}

/// The focal length (half-diagonal units) of a horizontal field of view `fov_x` (radians) on an
/// image of aspect `width / height`: `a/√(1+a²) / tan(fov_x/2)`.
pub fn focal_from_fov_x(fov_x: f64, aspect: f64) -> f64 {
    aspect / (1.0 + aspect * aspect).sqrt() / (fov_x / 2.0).tan()
}

/// Normalised intrinsics of a half-diagonal `focal` on an image of aspect `width / height`:
/// `(fx, fy)` in units of the image width and height (`fx = focal/2·√(1+a²)/a`,
/// `fy = focal/2·√(1+a²)`), the principal point at the centre (0.5, 0.5).
pub fn normalized_focal(focal: f64, aspect: f64) -> (f64, f64) {
    let norm = (1.0 + aspect * aspect).sqrt();
    (focal / 2.0 * norm / aspect, focal / 2.0 * norm)
}

/// MoGe's answer for one image once its network has run ([`finish`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    /// Camera-space points, row-major; `+inf` outside the mask.
    pub points: Vec<[f32; 3]>,
    /// Depth (`z`), row-major; `+inf` outside the mask.
    pub depth: Vec<f32>,
    /// Where the network's mask passed its threshold.
    pub mask: Vec<bool>,
    /// The focal (half-diagonal units) and the shift applied.
    pub focal_shift: FocalShift,
    /// Normalised intrinsics `(fx, fy)` ([`normalized_focal`]); the principal point is the centre.
    pub focal_xy: (f32, f32),
}

/// MoGe-1's `infer` after its network (the CLI's settings: f32, `force_projection` and
/// `apply_mask` on): the raw `mask` thresholded (`> threshold`), the focal and shift recovered
/// ([`recover_focal_shift`]; with `fov_x_degrees`, the focal it implies and the shift alone),
/// `depth = z + shift`, and the points re-projected from the depth through the intrinsics (pixel
/// `(i, j)` at `((j + 0.5)/W, (i + 0.5)/H)`), both `+inf` outside the mask.
///
/// # Panics
/// When `points` or `mask` does not hold `height × width` entries.
pub fn finish(
    points: &[[f32; 3]],
    mask: &[f32],
    height: usize,
    width: usize,
    threshold: f32,
    fov_x_degrees: Option<f64>,
) -> Camera {
    assert_eq!(mask.len(), height * width, "a mask of {height} × {width}");
    let valid: Vec<bool> = mask.iter().map(|&m| m > threshold).collect();
    let aspect = width as f64 / height as f64;
    let given = fov_x_degrees.map(|fov| focal_from_fov_x(fov.to_radians(), aspect) as f32);
    let focal_shift = recover_focal_shift(points, Some(&valid), height, width, given);
    let (fx, fy) = normalized_focal(f64::from(focal_shift.focal), aspect);
    let (fx, fy) = (fx as f32, fy as f32);
    let (mut out, mut depth) = (Vec::with_capacity(points.len()), Vec::with_capacity(points.len()));
    for (index, (point, &keep)) in points.iter().zip(&valid).enumerate() {
        if !keep {
            out.push([f32::INFINITY; 3]);
            depth.push(f32::INFINITY);
            continue;
        }
        let z = point[2] + focal_shift.shift;
        let (i, j) = (index / width, index % width);
        let u = (j as f32 + 0.5) / width as f32;
        let v = (i as f32 + 0.5) / height as f32;
        out.push([(u - 0.5) / fx * z, (v - 0.5) / fy * z, z]);
        depth.push(z);
    }
    Camera { points: out, depth, mask: valid, focal_shift, focal_xy: (fx, fy) }
}
