//! Per-dimension statistics of a stream of vectors and the normalisers built from them.
//!
//! One streaming pass over a whole mixture gives, for each dimension, the exact count, min, max,
//! mean and standard deviation (Welford's update, merged with Chan et al.'s formula, in f64), and the
//! 1st/99th percentiles (or any other) from a histogram whose range follows the data, as openpi's
//! `RunningStats` does: when a value falls outside the current range the range grows and the counts
//! are re-binned. A percentile is exact to within a few bins (a bin is range / `bins`, 0.001 % of the
//! range with the default 100 000 bins; each re-binning can move counts by up to one bin, and one far
//! outlier widens the range for every value). Accumulators merge, so workers can each fold a part.
//!
//! Normalisers ([`Normalizer`]) follow the paper's Table 10: the global quantile normaliser maps the
//! mixture's [q01, q99] to [−1, 1]; min-max-constant maps fixed per-dimension bounds to [−1, 1];
//! mean-std is there for the ablation. They apply to translations and state positions, never to
//! quaternions or the gripper ([`crate::resample`] lays actions out so that the caller picks the
//! dimensions). Rotations have their own, optional normaliser, [`AngleScale`], which scales a
//! rotation's angle about its own axis and keeps it a unit quaternion.

use serde::{Deserialize, Serialize};

/// Default number of histogram bins per dimension.
pub const DEFAULT_BINS: usize = 100_000;

/// Running statistics of one dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Dim {
    count: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    /// Histogram over `[lo, hi]`; empty until the first value.
    counts: Vec<u64>,
    lo: f64,
    hi: f64,
}

impl Dim {
    fn new() -> Self {
        Self {
            count: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            counts: Vec::new(),
            lo: 0.0,
            hi: 0.0,
        }
    }

    fn bin(&self, x: f64) -> usize {
        let n = self.counts.len();
        if self.hi <= self.lo {
            return 0;
        }
        (((x - self.lo) / (self.hi - self.lo) * n as f64) as usize).min(n - 1)
    }

    /// Widens the histogram's range to cover `[lo, hi]`, moving each old bin's count to the new
    /// bin holding its centre.
    fn widen(&mut self, lo: f64, hi: f64, bins: usize) {
        let old = std::mem::replace(&mut self.counts, vec![0; bins]);
        let (old_lo, old_hi) = (self.lo, self.hi);
        // Leave headroom so that a slowly growing range does not re-bin at every value.
        let pad = (hi - lo) * 0.1;
        (self.lo, self.hi) = if hi > lo { (lo - pad, hi + pad) } else { (lo - 0.5, hi + 0.5) };
        let width = (old_hi - old_lo) / old.len().max(1) as f64;
        for (i, c) in old.into_iter().enumerate().filter(|(_, c)| *c > 0) {
            let centre = old_lo + (i as f64 + 0.5) * width;
            let b = self.bin(centre);
            self.counts[b] += c;
        }
    }

    fn push(&mut self, x: f64, bins: usize) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        if self.counts.is_empty() || x < self.lo || x > self.hi {
            self.widen(self.min, self.max, bins);
        }
        let b = self.bin(x);
        self.counts[b] += 1;
    }

    fn merge(&mut self, other: &Dim, bins: usize) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let n = self.count + other.count;
        let delta = other.mean - self.mean;
        self.mean += delta * other.count as f64 / n as f64;
        self.m2 += other.m2 + delta * delta * self.count as f64 * other.count as f64 / n as f64;
        self.count = n;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if self.min < self.lo || self.max > self.hi {
            self.widen(self.min, self.max, bins);
        }
        let width = (other.hi - other.lo) / other.counts.len() as f64;
        for (i, &c) in other.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            let b = self.bin(other.lo + (i as f64 + 0.5) * width);
            self.counts[b] += c;
        }
    }

    /// The `q`-quantile (0 ≤ q ≤ 1), linearly interpolated inside the bin that holds it and
    /// clamped to the exact min/max.
    fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let target = q * self.count as f64;
        let width = (self.hi - self.lo) / self.counts.len() as f64;
        let mut seen = 0.0;
        for (i, &c) in self.counts.iter().enumerate() {
            let c = c as f64;
            if c > 0.0 && seen + c >= target {
                let x = self.lo + (i as f64 + (target - seen) / c) * width;
                return x.clamp(self.min, self.max);
            }
            seen += c;
        }
        self.max
    }
}

/// Streaming statistics of fixed-length vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningStats {
    bins: usize,
    dims: Vec<Dim>,
}

/// Why values cannot be accumulated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// A vector of the wrong length.
    #[error("a vector of {found} values, expected {expected}")]
    Length {
        /// Expected length.
        expected: usize,
        /// Given length.
        found: usize,
    },
    /// NaN or infinity.
    #[error("dimension {dim}: non-finite value {value}")]
    NonFinite {
        /// The dimension.
        dim: usize,
        /// The value.
        value: f64,
    },
    /// Normaliser parameters that do not fit.
    #[error("normaliser: {0}")]
    Normalizer(String),
}

impl RunningStats {
    /// Statistics of `dims`-long vectors with [`DEFAULT_BINS`] histogram bins.
    pub fn new(dims: usize) -> Self {
        Self::with_bins(dims, DEFAULT_BINS)
    }

    /// Statistics with `bins` histogram bins per dimension (at least 2).
    pub fn with_bins(dims: usize, bins: usize) -> Self {
        Self { bins: bins.max(2), dims: vec![Dim::new(); dims] }
    }

    /// Adds one vector.
    pub fn push(&mut self, values: &[f64]) -> Result<(), StatsError> {
        if values.len() != self.dims.len() {
            return Err(StatsError::Length { expected: self.dims.len(), found: values.len() });
        }
        if let Some((dim, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(StatsError::NonFinite { dim, value });
        }
        for (d, &x) in self.dims.iter_mut().zip(values) {
            d.push(x, self.bins);
        }
        Ok(())
    }

    /// Folds in another accumulator of the same length.
    pub fn merge(&mut self, other: &RunningStats) -> Result<(), StatsError> {
        if other.dims.len() != self.dims.len() {
            return Err(StatsError::Length { expected: self.dims.len(), found: other.dims.len() });
        }
        for (d, o) in self.dims.iter_mut().zip(&other.dims) {
            d.merge(o, self.bins);
        }
        Ok(())
    }

    /// Vectors seen.
    pub fn count(&self) -> u64 {
        self.dims.first().map_or(0, |d| d.count)
    }

    /// The summary.
    pub fn summary(&self) -> Stats {
        let per = |f: &dyn Fn(&Dim) -> f64| self.dims.iter().map(f).collect::<Vec<_>>();
        Stats {
            count: self.count(),
            min: per(&|d| d.min),
            max: per(&|d| d.max),
            mean: per(&|d| d.mean),
            std: per(&|d| if d.count > 0 { (d.m2 / d.count as f64).sqrt() } else { f64::NAN }),
            q01: per(&|d| d.quantile(0.01)),
            q99: per(&|d| d.quantile(0.99)),
        }
    }
}

/// Per-dimension statistics (population standard deviation, as numpy's `std`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Vectors seen.
    pub count: u64,
    /// Minimum.
    pub min: Vec<f64>,
    /// Maximum.
    pub max: Vec<f64>,
    /// Mean.
    pub mean: Vec<f64>,
    /// Standard deviation.
    pub std: Vec<f64>,
    /// 1st percentile.
    pub q01: Vec<f64>,
    /// 99th percentile.
    pub q99: Vec<f64>,
}

/// Scales the angle of rotation deltas about their own axes (`q → q^factor`, see
/// `spear_geometry::quat::scale_angle`), the rotations' counterpart of the translation
/// normalisers: 5 Hz deltas turn a few degrees, a sliver of S³ next to the identity, where the
/// flow's uniform noise carries little of the difference between one delta and another. With
/// `factor` set so that the mixture's 99th-percentile angle becomes a chosen angle (e.g. 90°), the
/// flow sees deltas spread over S³ and its errors shrink by `factor` when undone. Not in the
/// paper (which normalises translations only); off unless configured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AngleScale {
    /// The angle multiplier (> 0).
    pub factor: f64,
}

impl AngleScale {
    /// The scale that maps the 99th percentile of `angles` (radians, 1-D statistics of rotation
    /// angles) to `target` radians.
    pub fn quantile(angles: &Stats, target: f64) -> Result<Self, StatsError> {
        let q99 = angles.q99.first().copied().unwrap_or(0.0);
        if !(q99.is_finite() && q99 > 1e-6 && target.is_finite() && target > 0.0) {
            return Err(StatsError::Normalizer(format!(
                "rotation angles' 99th percentile {q99} rad cannot be scaled to {target} rad"
            )));
        }
        Ok(Self { factor: target / q99 })
    }

    /// The normalised quaternion `(w, x, y, z)`.
    pub fn normalize(&self, q: [f32; 4]) -> [f32; 4] {
        scale(q, self.factor)
    }

    /// Undoes [`AngleScale::normalize`] (exactly, for angles up to π / `factor`).
    pub fn denormalize(&self, q: [f32; 4]) -> [f32; 4] {
        scale(q, 1.0 / self.factor)
    }
}

fn scale(q: [f32; 4], factor: f64) -> [f32; 4] {
    let [w, x, y, z] = q.map(f64::from);
    let unit = nalgebra::UnitQuaternion::new_normalize(nalgebra::Quaternion::new(w, x, y, z));
    let scaled = spear_geometry::quat::scale_angle(&unit, factor);
    [scaled.w, scaled.i, scaled.j, scaled.k].map(|v| v as f32)
}

/// The rotation angle (radians, in [0, π]) of a quaternion `(w, x, y, z)`, either sign.
pub fn rotation_angle(q: [f32; 4]) -> f64 {
    let [w, x, y, z] = q.map(f64::from);
    spear_geometry::quat::angle(&nalgebra::UnitQuaternion::new_unchecked(nalgebra::Quaternion::new(
        w, x, y, z,
    )))
}

/// Maps each dimension to roughly [−1, 1] (the paper's Table 10 strategies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Normalizer {
    /// `[q01, q99] → [−1, 1]` with the mixture's global percentiles (the paper's default for
    /// actions).
    Quantile {
        /// Lower bounds.
        low: Vec<f64>,
        /// Upper bounds.
        high: Vec<f64>,
    },
    /// `[min, max] → [−1, 1]` with fixed constants (best in the paper's Table 10 for translations).
    MinMaxConst {
        /// Lower bounds.
        low: Vec<f64>,
        /// Upper bounds.
        high: Vec<f64>,
    },
    /// `(x − mean) / std`.
    MeanStd {
        /// Means.
        mean: Vec<f64>,
        /// Standard deviations.
        std: Vec<f64>,
    },
}

/// Below this span a dimension is treated as constant and mapped to 0, not divided by ~0.
const MIN_SPAN: f64 = 1e-8;

impl Normalizer {
    /// The quantile normaliser of `stats`.
    pub fn quantile(stats: &Stats) -> Self {
        Self::Quantile { low: stats.q01.clone(), high: stats.q99.clone() }
    }

    /// The mean-std normaliser of `stats`.
    pub fn mean_std(stats: &Stats) -> Self {
        Self::MeanStd { mean: stats.mean.clone(), std: stats.std.clone() }
    }

    /// A min-max normaliser with constant bounds; each `low < high`.
    pub fn min_max_const(low: Vec<f64>, high: Vec<f64>) -> Result<Self, StatsError> {
        if low.len() != high.len() {
            return Err(StatsError::Normalizer(format!(
                "{} lower and {} upper bounds",
                low.len(),
                high.len()
            )));
        }
        if let Some(i) =
            (0..low.len()).find(|&i| low[i].partial_cmp(&high[i]) != Some(std::cmp::Ordering::Less))
        {
            return Err(StatsError::Normalizer(format!(
                "dimension {i}: low {} is not below high {}",
                low[i], high[i]
            )));
        }
        Ok(Self::MinMaxConst { low, high })
    }

    /// Checks that it has `dims` dimensions, matching lengths and usable parameters (finite,
    /// `low < high`, `std > 0`), e.g. after reading it from a file.
    pub fn validate(&self, dims: usize) -> Result<(), StatsError> {
        let (a, b, what) = match self {
            Self::Quantile { low, high } | Self::MinMaxConst { low, high } => (low, high, "low < high"),
            Self::MeanStd { mean, std } => (mean, std, "std > 0"),
        };
        if a.len() != dims || b.len() != dims {
            return Err(StatsError::Normalizer(format!(
                "{} and {} values, expected {dims}",
                a.len(),
                b.len()
            )));
        }
        for i in 0..dims {
            let ok = a[i].is_finite()
                && b[i].is_finite()
                && match self {
                    Self::MeanStd { .. } => b[i] > 0.0,
                    _ => a[i] < b[i],
                };
            if !ok {
                return Err(StatsError::Normalizer(format!(
                    "dimension {i}: {} and {} break {what}",
                    a[i], b[i]
                )));
            }
        }
        Ok(())
    }

    /// Dimensions it applies to.
    pub fn dims(&self) -> usize {
        match self {
            Self::Quantile { low, .. } | Self::MinMaxConst { low, .. } => low.len(),
            Self::MeanStd { mean, .. } => mean.len(),
        }
    }

    /// Scale and offset of dimension `i`: `normalised = (x − offset) · scale`.
    fn affine(&self, i: usize) -> (f64, f64) {
        match self {
            Self::Quantile { low, high } | Self::MinMaxConst { low, high } => {
                let span = high[i] - low[i];
                if span < MIN_SPAN {
                    (0.5 * (low[i] + high[i]), 0.0)
                } else {
                    (0.5 * (low[i] + high[i]), 2.0 / span)
                }
            }
            Self::MeanStd { mean, std } => (mean[i], if std[i] < MIN_SPAN { 0.0 } else { 1.0 / std[i] }),
        }
    }

    /// Normalises `values` in place.
    pub fn normalize(&self, values: &mut [f64]) -> Result<(), StatsError> {
        self.check(values.len())?;
        for (i, x) in values.iter_mut().enumerate() {
            let (offset, scale) = self.affine(i);
            *x = (*x - offset) * scale;
        }
        Ok(())
    }

    /// Undoes [`Normalizer::normalize`] in place (a constant dimension comes back as its value).
    pub fn denormalize(&self, values: &mut [f64]) -> Result<(), StatsError> {
        self.check(values.len())?;
        for (i, x) in values.iter_mut().enumerate() {
            let (offset, scale) = self.affine(i);
            *x = if scale == 0.0 { offset } else { *x / scale + offset };
        }
        Ok(())
    }

    fn check(&self, len: usize) -> Result<(), StatsError> {
        if len == self.dims() {
            Ok(())
        } else {
            Err(StatsError::Length { expected: self.dims(), found: len })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact percentile with numpy's default linear interpolation.
    fn percentile(sorted: &[f64], q: f64) -> f64 {
        let x = q * (sorted.len() - 1) as f64;
        let (i, f) = (x.floor() as usize, x.fract());
        if i + 1 < sorted.len() { sorted[i] * (1.0 - f) + sorted[i + 1] * f } else { sorted[i] }
    }

    #[test]
    fn moments_and_percentiles_match_exact_values_and_merging_changes_nothing() {
        // A skewed, growing stream: the histogram re-bins many times.
        let values: Vec<f64> =
            (0..20_000).map(|i| ((i as f64) * 0.618).sin().powi(3) * (1.0 + i as f64 / 5000.0)).collect();
        let mut whole = RunningStats::with_bins(1, 20_000);
        let mut a = RunningStats::with_bins(1, 20_000);
        let mut b = RunningStats::with_bins(1, 20_000);
        for (i, &v) in values.iter().enumerate() {
            whole.push(&[v]).unwrap();
            if i % 3 == 0 { a.push(&[v]).unwrap() } else { b.push(&[v]).unwrap() }
        }
        a.merge(&b).unwrap();
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        let range = sorted[sorted.len() - 1] - sorted[0];
        for stats in [whole.summary(), a.summary()] {
            assert_eq!(stats.count, 20_000);
            assert_eq!((stats.min[0], stats.max[0]), (sorted[0], sorted[sorted.len() - 1]));
            assert!((stats.mean[0] - mean).abs() < 1e-12);
            assert!((stats.std[0] - std).abs() < 1e-12);
            // Within a few bins of the exact percentile (re-binning moves counts by up to a bin).
            assert!(
                (stats.q01[0] - percentile(&sorted, 0.01)).abs() < 5e-4 * range,
                "{} vs {}",
                stats.q01[0],
                percentile(&sorted, 0.01)
            );
            assert!((stats.q99[0] - percentile(&sorted, 0.99)).abs() < 5e-4 * range);
        }
    }

    #[test]
    fn normalizers_map_their_bounds_to_minus_one_and_one_and_invert() {
        let stats = Stats {
            count: 3,
            min: vec![-1.0, 5.0],
            max: vec![3.0, 5.0],
            mean: vec![1.0, 5.0],
            std: vec![2.0, 0.0],
            q01: vec![-0.5, 5.0],
            q99: vec![2.5, 5.0],
        };
        let q = Normalizer::quantile(&stats);
        let mut v = vec![-0.5, 5.0];
        q.normalize(&mut v).unwrap();
        assert_eq!(v, vec![-1.0, 0.0]);
        let mut v = vec![2.5, 5.0];
        q.normalize(&mut v).unwrap();
        assert_eq!(v, vec![1.0, 0.0]);
        q.denormalize(&mut v).unwrap();
        assert_eq!(v, vec![2.5, 5.0]);
        let m = Normalizer::mean_std(&stats);
        let mut v = vec![3.0, 7.0];
        m.normalize(&mut v).unwrap();
        assert_eq!(v, vec![1.0, 0.0]);
        assert!(Normalizer::min_max_const(vec![0.0], vec![0.0]).is_err());
        assert!(matches!(q.normalize(&mut [1.0]), Err(StatsError::Length { expected: 2, found: 1 })));
        let mut s = RunningStats::new(2);
        assert!(matches!(s.push(&[1.0, f64::NAN]), Err(StatsError::NonFinite { dim: 1, .. })));
    }
}
