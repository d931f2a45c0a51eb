//! Statistical outlier removal with Open3D's exact semantics
//! (`PointCloud::RemoveStatisticalOutliers`, Open3D 0.20), so that the kept points are the ones
//! Open3D keeps:
//!
//! - each point's score is the mean distance to its `min(k, N)` nearest neighbours **counting
//!   itself** (distance 0): squared distances `(dx² + dy²) + dz²`, ascending, square-rooted and summed
//!   in that order;
//! - `mean` sums the positive scores in index order and divides by N; `std` sums the squared
//!   deviations of the positive scores and divides by N − 1;
//! - a point is kept iff its score is positive and strictly below `mean + ratio · std` (so exact
//!   duplicates, whose score is 0, and the two points of a 2-point cloud are removed).
//!
//! Neighbours come from an exact k-d tree; the points' scores are computed in parallel and every
//! sum runs in index order, so the result does not depend on the thread count.

use rayon::prelude::*;

use crate::knn::KdTree;

/// Why outlier removal cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OutlierError {
    /// Open3D refuses these too.
    #[error("outlier removal needs nb_neighbors ≥ 1 and std_ratio > 0 (got {nb_neighbors}, {std_ratio})")]
    Parameters {
        /// Neighbours asked for.
        nb_neighbors: usize,
        /// Standard-deviation ratio asked for.
        std_ratio: f64,
    },
    /// A point is NaN or infinite (MoGe marks invalid pixels with +inf: filter them first).
    #[error("point {index} is not finite: {point:?}")]
    NonFinite {
        /// Its index.
        index: usize,
        /// Its coordinates.
        point: [f64; 3],
    },
}

/// The result: kept indices (ascending) and the statistics behind the cut.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierRemoval {
    /// Indices of the kept points, ascending.
    pub kept: Vec<usize>,
    /// Each point's mean neighbour distance.
    pub scores: Vec<f64>,
    /// The cut: `mean + std_ratio · std` (NaN for fewer than 2 points).
    pub threshold: f64,
}

/// Open3D's `remove_statistical_outlier(nb_neighbors, std_ratio)` on `points`.
pub fn remove_statistical_outliers(
    points: &[[f64; 3]],
    nb_neighbors: usize,
    std_ratio: f64,
) -> Result<OutlierRemoval, OutlierError> {
    if nb_neighbors < 1 || std_ratio.is_nan() || std_ratio <= 0.0 {
        return Err(OutlierError::Parameters { nb_neighbors, std_ratio });
    }
    if let Some((index, &point)) = points.iter().enumerate().find(|(_, p)| !p.iter().all(|v| v.is_finite())) {
        return Err(OutlierError::NonFinite { index, point });
    }
    let n = points.len();
    if n == 0 {
        return Ok(OutlierRemoval { kept: Vec::new(), scores: Vec::new(), threshold: f64::NAN });
    }
    let k = nb_neighbors.min(n);
    let tree = KdTree::new(points);
    // Queries in leaf order (neighbouring queries share their search paths in cache), each
    // score stored at its point's index.
    let mut scores = vec![0.0; n];
    let in_leaf_order: Vec<(u32, f64)> = tree
        .leaf_order()
        .par_iter()
        .map_init(Vec::new, |nearest, &i| {
            tree.nearest_squared(&points[i as usize], k, nearest);
            (i, nearest.iter().map(|d| d.sqrt()).sum::<f64>() / k as f64)
        })
        .collect();
    for (i, score) in in_leaf_order {
        scores[i as usize] = score;
    }
    let positive = || scores.iter().filter(|&&s| s > 0.0);
    let mean = positive().sum::<f64>() / n as f64;
    let std = (positive().map(|s| (s - mean) * (s - mean)).sum::<f64>() / (n as f64 - 1.0)).sqrt();
    let threshold = mean + std_ratio * std;
    let kept = (0..n).filter(|&i| scores[i] > 0.0 && scores[i] < threshold).collect();
    Ok(OutlierRemoval { kept, scores, threshold })
}
