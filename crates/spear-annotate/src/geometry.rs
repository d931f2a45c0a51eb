//! What the questions are about: per object, its cleaned point cloud's oriented box with the 8
//! corners in a fixed order, three keypoints and the corners' pixels; and the skips, with reasons.
//!
//! **Corner order.** The box's axes are relabelled to the camera's: each camera axis x, y, z gets
//! the box axis most aligned with it (the permutation maximising `Σ |cos|`), pointed along its
//! positive direction. Corner `k` is then the one on the negative (−) or positive (+) side of
//! those axes given by the bits of `k`: bit 0 for x (left/right), bit 1 for y (up/down; y points
//! down), bit 2 for z (near/far). So corner 0 is the near top-left one, 1 near top-right,
//! 2 near bottom-left, 3 near bottom-right, 4–7 the same on the far side — the order of sorting
//! the corners by (z, y, x) for a box that faces the camera, and stable while the box turns less
//! than 45° about any axis.
//!
//! **Keypoints.** *Closest* and *furthest* are the cloud's points nearest to and furthest from
//! the camera centre by Euclidean distance (not depth); *centre* is the box's centre (not the
//! mean of the visible points, which sits on the visible surface).

use serde::{Deserialize, Serialize};

use crate::moge::Intrinsics;
use crate::obb::{ObbError, OrientedBox, norm, oriented_bounding_box};
use crate::outliers::remove_statistical_outliers;

/// Parameters of the per-object geometry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeometryConfig {
    /// Outlier removal: neighbours per point (Open3D's `nb_neighbors`).
    pub nb_neighbors: usize,
    /// Outlier removal: cut at mean + `std_ratio` · std.
    pub std_ratio: f64,
    /// Objects with fewer points after outlier removal are skipped.
    pub min_points: usize,
    /// Objects whose box is thinner than this (metres, or the map's units) are skipped as flat.
    pub min_extent: f64,
    /// Shrink each instance mask by this many pixels (a square neighbourhood) before taking its
    /// points: drops the depth-discontinuity ("flying") pixels at object borders that a point
    /// map's own mask keeps (on the MoGe-style fixture, whose masks are 1 px wider than the
    /// objects, one pixel brings the boxes from table-sized back to the objects). 0 takes the
    /// mask as it is.
    pub erode_px: usize,
}

impl GeometryConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.nb_neighbors < 1 || !(self.std_ratio.is_finite() && self.std_ratio > 0.0) {
            return Err(format!(
                "need nb_neighbors ≥ 1 and std_ratio > 0 (got {}, {})",
                self.nb_neighbors, self.std_ratio
            ));
        }
        if !(self.min_extent.is_finite() && self.min_extent >= 0.0) {
            return Err(format!("min_extent must be ≥ 0 (got {})", self.min_extent));
        }
        Ok(())
    }
}

impl Default for GeometryConfig {
    fn default() -> Self {
        Self { nb_neighbors: 20, std_ratio: 2.0, min_points: 20, min_extent: 0.005, erode_px: 1 }
    }
}

/// Why an object gets no questions.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    /// No label in the labels file or the masks.
    NoLabel,
    /// Another object of the image has the same label, so "the X" would be ambiguous.
    DuplicateLabel,
    /// The mask is empty.
    EmptyMask,
    /// The mask covers no valid point.
    NoValidPoints,
    /// Too few points left after outlier removal.
    TooFewPoints,
    /// No box: the points are identical, collinear or coplanar.
    Degenerate,
    /// The box is thinner than `min_extent`.
    Flat,
    /// The convex hull failed (not expected; counted rather than silently called degenerate).
    HullFailed,
    /// The mask's format is not supported (COCO polygons).
    UnsupportedMask,
    /// Outlier removal refused the parameters or a point (callers of [`object_geometry`] that
    /// skip [`GeometryConfig::validate`] or pass non-finite points).
    InvalidInput,
}

impl SkipReason {
    /// The manifest's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NoLabel => "no_label",
            Self::DuplicateLabel => "duplicate_label",
            Self::EmptyMask => "empty_mask",
            Self::NoValidPoints => "no_valid_points",
            Self::TooFewPoints => "too_few_points",
            Self::Degenerate => "degenerate",
            Self::Flat => "flat",
            Self::HullFailed => "hull_failed",
            Self::UnsupportedMask => "unsupported_mask",
            Self::InvalidInput => "invalid_input",
        }
    }
}

/// An object's geometry in the camera frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectGeometry {
    /// Instance id.
    pub id: String,
    /// Semantic label.
    pub label: String,
    /// Points kept by outlier removal.
    pub points: usize,
    /// The box as Open3D fits it.
    pub obb: OrientedBox,
    /// Its corners in the documented order.
    pub corners: [[f64; 3]; 8],
    /// Point nearest the camera centre.
    pub closest: [f64; 3],
    /// Point furthest from it.
    pub furthest: [f64; 3],
    /// The box's centre.
    pub center: [f64; 3],
}

impl ObjectGeometry {
    /// Distance from the camera centre to the object's closest point.
    pub fn distance_to_camera(&self) -> f64 {
        norm(self.closest)
    }
}

/// Cleans `cloud` and fits its box; `Err` says why the object is skipped.
pub fn object_geometry(
    id: &str,
    label: &str,
    cloud: &[[f64; 3]],
    config: &GeometryConfig,
) -> Result<ObjectGeometry, SkipReason> {
    if cloud.is_empty() {
        return Err(SkipReason::NoValidPoints);
    }
    let removal = remove_statistical_outliers(cloud, config.nb_neighbors, config.std_ratio)
        .map_err(|_| SkipReason::InvalidInput)?;
    let kept: Vec<[f64; 3]> = removal.kept.iter().map(|&i| cloud[i]).collect();
    if kept.len() < config.min_points.max(4) {
        return Err(SkipReason::TooFewPoints);
    }
    let fit = oriented_bounding_box(&kept).map_err(|e| match e {
        ObbError::TooFewPoints(_) => SkipReason::TooFewPoints,
        ObbError::Identical | ObbError::Collinear | ObbError::Coplanar => SkipReason::Degenerate,
        ObbError::NonFinite(_) => SkipReason::InvalidInput,
        ObbError::Numerical(_) => SkipReason::HullFailed,
    })?;
    if !fit.obb.extent.iter().all(|e| e.is_finite()) {
        return Err(SkipReason::HullFailed);
    }
    if fit.obb.extent.iter().any(|&e| e < config.min_extent) {
        return Err(SkipReason::Flat);
    }
    let by_distance = |a: &&[f64; 3], b: &&[f64; 3]| norm(**a).total_cmp(&norm(**b));
    let closest = *kept.iter().min_by(by_distance).expect("non-empty");
    let furthest = *kept.iter().max_by(by_distance).expect("non-empty");
    Ok(ObjectGeometry {
        id: id.to_owned(),
        label: label.to_owned(),
        points: kept.len(),
        corners: ordered_corners(&fit.obb),
        closest,
        furthest,
        center: fit.obb.center,
        obb: fit.obb,
    })
}

/// The 8 corners in the order the module documentation defines.
pub fn ordered_corners(obb: &OrientedBox) -> [[f64; 3]; 8] {
    const PERMUTATIONS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    // perm[c] = the box axis assigned to camera axis c.
    let alignment = |perm: &[usize; 3]| (0..3).map(|c| obb.rotation[c][perm[c]].abs()).sum::<f64>();
    let perm = PERMUTATIONS.iter().max_by(|a, b| alignment(a).total_cmp(&alignment(b))).expect("six");
    std::array::from_fn(|k| {
        let mut signs = [0.0; 3];
        for (c, &axis) in perm.iter().enumerate() {
            let side = if k >> c & 1 == 1 { 1.0 } else { -1.0 };
            // Point the box axis along the camera axis' positive direction.
            let towards = if obb.rotation[c][axis] < 0.0 { -1.0 } else { 1.0 };
            signs[axis] = side * towards;
        }
        obb.corner(signs)
    })
}

/// Projects a camera-frame point to pixel coordinates `(u, v)` (pixel `(row i, column j)` spans
/// `[j, j + 1) × [i, i + 1)`); `None` behind the camera.
pub fn project(k: &Intrinsics, p: [f64; 3]) -> Option<[f64; 2]> {
    (p[2] > 0.0).then(|| [k.fx * p[0] / p[2] + k.cx, k.fy * p[1] / p[2] + k.cy])
}

/// `mask` (row-major, `width` columns) shrunk by `radius` pixels: a pixel stays set when every
/// pixel within `radius` in both directions is set (outside the image counts as set, so objects
/// cut by the border keep their border pixels).
pub fn erode(mask: &[bool], width: usize, radius: usize) -> Vec<bool> {
    if radius == 0 || width == 0 {
        return mask.to_vec();
    }
    let height = mask.len() / width;
    // Separable: along rows, then along columns.
    let mut rows = vec![false; mask.len()];
    for r in 0..height {
        for c in 0..width {
            let (lo, hi) = (c.saturating_sub(radius), (c + radius).min(width - 1));
            rows[r * width + c] = (lo..=hi).all(|x| mask[r * width + x]);
        }
    }
    let mut out = vec![false; mask.len()];
    for r in 0..height {
        let (lo, hi) = (r.saturating_sub(radius), (r + radius).min(height - 1));
        for c in 0..width {
            out[r * width + c] = (lo..=hi).all(|y| rows[y * width + c]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erosion_shrinks_inner_borders_only() {
        // A 4 × 5 block in the top-left corner of a 6 × 7 image.
        let (h, w) = (6, 7);
        let mask: Vec<bool> = (0..h * w).map(|i| i / w < 4 && i % w < 5).collect();
        let eroded = erode(&mask, w, 1);
        let set: Vec<(usize, usize)> = (0..h * w).filter(|&i| eroded[i]).map(|i| (i / w, i % w)).collect();
        // The image border is not an object border: rows 0..3, columns 0..4 stay.
        let want: Vec<(usize, usize)> = (0..3).flat_map(|r| (0..4).map(move |c| (r, c))).collect();
        assert_eq!(set, want);
        assert_eq!(erode(&mask, w, 0), mask);
    }
}
