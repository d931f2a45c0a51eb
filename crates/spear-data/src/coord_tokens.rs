//! The 3D tokens of SPEAR-1 (paper appendix A.1.3): a metric coordinate (metres, any of x, y, z)
//! quantised into one of N bins over `[z_min, z_max]`, the 1st and 99th percentiles of the
//! coordinates in the data. The paper uses N = 1024 and non-uniform bins, finer near the mean,
//! such that normally distributed coordinates use every token about equally often:
//! [`CoordQuantizer::normal`] puts the bin edges at equal-probability quantiles of the normal
//! distribution truncated to the range, and [`CoordQuantizer::from_samples`] fits that
//! distribution and the range to data.
//!
//! Token `t` covers `[edges[t], edges[t + 1])` (the last bin includes its upper edge); values
//! outside the range go to the first or last token, and a token decodes to the midpoint of its bin.
//! Tokens are numbered `0..N` here; giving them ids in the extended vocabulary is not this
//! module's job.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors of [`CoordQuantizer`]. File errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// The number of tokens is below 2 or does not fit a `u32`.
    #[error("a coordinate quantizer needs 2 to u32::MAX tokens, got {n}")]
    TokenCount {
        /// The number of tokens asked for.
        n: usize,
    },
    /// A parameter or an edge is NaN or infinite.
    #[error("{field} must be finite, got {value}")]
    NotFinite {
        /// The parameter, e.g. `mean` or `edges[3]`.
        field: String,
        /// Its value.
        value: f64,
    },
    /// `min` is not below `max`.
    #[error("the range is empty: min ({min}) must be below max ({max})")]
    EmptyRange {
        /// The lower end.
        min: f64,
        /// The upper end.
        max: f64,
    },
    /// The standard deviation is not positive.
    #[error("std must be positive, got {std}")]
    NonPositiveStd {
        /// The standard deviation.
        std: f64,
    },
    /// Two consecutive edges do not increase (for [`CoordQuantizer::normal`]: the distribution has
    /// too little probability in the range, or the bins would be narrower than `f64` resolves).
    #[error("edges must increase strictly: edges[{index}] = {value} is not above edges[{}] = {previous}", index - 1)]
    NotIncreasing {
        /// The index of the edge that is not above its predecessor.
        index: usize,
        /// The predecessor's value.
        previous: f64,
        /// The edge's value.
        value: f64,
    },
    /// [`CoordQuantizer::from_samples`] got fewer than 2 samples.
    #[error("need at least 2 samples to fit a coordinate quantizer, got {count}")]
    TooFewSamples {
        /// The number of samples.
        count: usize,
    },
    /// [`CoordQuantizer::encode`] got NaN.
    #[error("cannot encode NaN as a 3D token")]
    NaN,
    /// [`CoordQuantizer::decode`] got a token outside `0..n`.
    #[error("token {token} is out of range: the quantizer has {n} tokens")]
    TokenOutOfRange {
        /// The token.
        token: u32,
        /// The number of tokens.
        n: u32,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not a valid quantizer (bad JSON, a missing or unknown field, or edges that fail
    /// validation), or the quantizer could not be written as JSON.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The JSON error, which carries the validation error if that was the cause.
        source: serde_json::Error,
    },
}

/// Maps metric coordinates to N tokens and back through N + 1 strictly increasing bin edges.
///
/// Serialises as `{"edges": [...]}`; deserialising validates the edges as [`Self::from_edges`] does.
///
/// ```
/// use spear_data::CoordQuantizer;
///
/// // N(0.1 m, 0.3 m) truncated to [-0.5 m, 0.7 m], in 1024 equally probable bins.
/// let q = CoordQuantizer::normal(1024, 0.1, 0.3, -0.5, 0.7)?;
/// let token = q.encode(0.25)?;
/// let centre = q.decode(token)?;
/// let edges = q.edges();
/// let half_width = (edges[token as usize + 1] - edges[token as usize]) / 2.0;
/// assert!((f64::from(centre) - 0.25).abs() <= half_width + 1e-7);
/// assert_eq!(q.encode(5.0)?, 1023); // clamped to the range
/// # Ok::<(), spear_data::CoordError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EdgesFile")]
pub struct CoordQuantizer {
    edges: Vec<f64>,
}

/// The serialised form, validated into a [`CoordQuantizer`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgesFile {
    edges: Vec<f64>,
}

impl TryFrom<EdgesFile> for CoordQuantizer {
    type Error = CoordError;

    fn try_from(file: EdgesFile) -> Result<Self, CoordError> {
        Self::from_edges(file.edges)
    }
}

impl CoordQuantizer {
    /// A quantizer with the given N + 1 edges: N ≥ 2 bins, finite, strictly increasing edges.
    pub fn from_edges(edges: Vec<f64>) -> Result<Self, CoordError> {
        let n = edges.len().saturating_sub(1);
        if n < 2 || u32::try_from(n).is_err() {
            return Err(CoordError::TokenCount { n });
        }
        if let Some((i, &value)) = edges.iter().enumerate().find(|(_, e)| !e.is_finite()) {
            return Err(CoordError::NotFinite { field: format!("edges[{i}]"), value });
        }
        if let Some(i) = (1..edges.len()).find(|&i| edges[i] <= edges[i - 1]) {
            return Err(CoordError::NotIncreasing { index: i, previous: edges[i - 1], value: edges[i] });
        }
        Ok(Self { edges })
    }

    /// `n` bins of equal width over `[min, max]`.
    pub fn uniform(n: u32, min: f64, max: f64) -> Result<Self, CoordError> {
        check_range(min, max)?;
        let edges = (0..=n)
            .map(|i| match i {
                0 => min,
                i if i == n => max,
                i => min + (max - min) * (f64::from(i) / f64::from(n)),
            })
            .collect();
        Self::from_edges(edges)
    }

    /// `n` bins of equal probability under the normal distribution N(`mean`, `std`²) truncated to
    /// `[min, max]`: edge `i` is the quantile of probability `Φ(a) + (Φ(b) − Φ(a))·i/n`, with
    /// `a`, `b` the standardised `min`, `max`. Bins are narrowest at the mean.
    ///
    /// Fails if the distribution puts so little probability in the range that edges coincide.
    pub fn normal(n: u32, mean: f64, std: f64, min: f64, max: f64) -> Result<Self, CoordError> {
        check_range(min, max)?;
        check_finite("mean", mean)?;
        check_finite("std", std)?;
        if std <= 0.0 {
            return Err(CoordError::NonPositiveStd { std });
        }
        let (a, b) = ((min - mean) / std, (max - mean) / std);
        // Probabilities below the edge (p) and above it (q), each interpolated from its own tail
        // so that neither end of the range loses precision to 1 − p.
        let (p_lo, p_hi) = (normal_cdf(a), normal_cdf(b));
        let (q_lo, q_hi) = (normal_cdf(-a), normal_cdf(-b));
        let edges = (0..=n)
            .map(|i| {
                if i == 0 {
                    return min;
                }
                if i == n {
                    return max;
                }
                let t = f64::from(i) / f64::from(n);
                let p = p_lo + (p_hi - p_lo) * t;
                let z =
                    if p <= 0.5 { normal_quantile(p) } else { -normal_quantile(q_lo - (q_lo - q_hi) * t) };
                (mean + std * z).clamp(min, max)
            })
            .collect();
        Self::from_edges(edges)
    }

    /// [`Self::normal`] fitted to `samples`: the range is their 1st to 99th percentile (linear
    /// interpolation between order statistics, numpy's default), the mean and the population
    /// standard deviation are theirs. The paper fits one quantizer to the x, y and z coordinates
    /// together, so pass all three.
    pub fn from_samples(n: u32, samples: &[f32]) -> Result<Self, CoordError> {
        if samples.len() < 2 {
            return Err(CoordError::TooFewSamples { count: samples.len() });
        }
        let mut sorted: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
        if let Some(&value) = sorted.iter().find(|s| !s.is_finite()) {
            return Err(CoordError::NotFinite { field: "samples".into(), value });
        }
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len() as f64;
        let mean = sorted.iter().sum::<f64>() / count;
        let std = (sorted.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / count).sqrt();
        Self::normal(n, mean, std, percentile(&sorted, 0.01), percentile(&sorted, 0.99))
    }

    /// Reads a quantizer saved by [`Self::to_json_file`], validating it.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, CoordError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| CoordError::Io { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text).map_err(|source| CoordError::Json { path: path.to_path_buf(), source })
    }

    /// Writes the quantizer as JSON (`{"edges": [...]}`); `f64` values round-trip exactly.
    pub fn to_json_file(&self, path: impl AsRef<Path>) -> Result<(), CoordError> {
        let path = path.as_ref();
        let text = serde_json::to_string_pretty(self)
            .map_err(|source| CoordError::Json { path: path.to_path_buf(), source })?;
        std::fs::write(path, text).map_err(|source| CoordError::Io { path: path.to_path_buf(), source })
    }

    /// The number of tokens N.
    pub fn num_tokens(&self) -> u32 {
        // from_edges checked that this fits.
        (self.edges.len() - 1) as u32
    }

    /// The N + 1 bin edges, strictly increasing; the first and last are the range.
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// The token whose bin holds `value`; values outside the range go to the first or last token.
    pub fn encode(&self, value: f32) -> Result<u32, CoordError> {
        if value.is_nan() {
            return Err(CoordError::NaN);
        }
        let value = f64::from(value);
        let interior = &self.edges[1..self.edges.len() - 1];
        // The number of interior edges at or below the value is the bin's index, below N.
        Ok(interior.partition_point(|&e| e <= value) as u32)
    }

    /// The midpoint of `token`'s bin, rounded to `f32`: `encode` maps it back to `token` unless
    /// the bin is so narrow, a few `f32` steps, that the rounding leaves it.
    pub fn decode(&self, token: u32) -> Result<f32, CoordError> {
        let n = self.num_tokens();
        if token >= n {
            return Err(CoordError::TokenOutOfRange { token, n });
        }
        let t = token as usize;
        Ok(((self.edges[t] + self.edges[t + 1]) / 2.0) as f32)
    }
}

/// Fails unless `value` is finite.
fn check_finite(field: &str, value: f64) -> Result<(), CoordError> {
    if value.is_finite() { Ok(()) } else { Err(CoordError::NotFinite { field: field.into(), value }) }
}

/// Fails unless `min < max`, both finite.
fn check_range(min: f64, max: f64) -> Result<(), CoordError> {
    check_finite("min", min)?;
    check_finite("max", max)?;
    if min < max { Ok(()) } else { Err(CoordError::EmptyRange { min, max }) }
}

/// The `quantile` (in `[0, 1]`) of sorted, non-empty data, interpolating linearly between order
/// statistics as numpy's default method does, including its choice of formula by the fraction.
fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    let index = (sorted.len() - 1) as f64 * quantile;
    let below = index.floor();
    let gamma = index - below;
    let a = sorted[below as usize];
    let b = sorted[(below as usize + 1).min(sorted.len() - 1)];
    let diff = b - a;
    if gamma >= 0.5 { b - diff * (1.0 - gamma) } else { a + diff * gamma }
}

/// Φ, the standard normal cumulative distribution function, through `erfc`:
/// `Φ(z) = erfc(−z/√2)/2`. Measured against mpmath at the 14 points of the tests, z = −37.5 to
/// 8.3: relative error at most 1.8e-16 for |z| ≤ 2.4, 1e-15 at z = −3.5, 7e-15 at −8 and 1.2e-13
/// at −37.5, where the rounding of z² in e^(−z²/2) dominates.
fn normal_cdf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    if x < 0.0 { erfc(-x) / 2.0 } else { 1.0 - erfc(x) / 2.0 }
}

/// The complementary error function for `x ≥ 0`: `1 − erf(x)` with erf's series
/// `erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3···(2n+1))` (all terms positive) below 1.5, the
/// continued fraction `erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))` from 1.5
/// on, where the series' `1 − erf` would lose digits and the fraction needs under 100 terms.
fn erfc(x: f64) -> f64 {
    const FRAC_1_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI / 2.0;
    let gaussian = (-x * x).exp();
    if gaussian == 0.0 {
        // erfc(x) < e^(−x²) underflows too (x > 27.3, or infinite).
        return 0.0;
    }
    if x < 1.5 {
        let (mut term, mut sum) = (x, x);
        for k in 0.. {
            term *= 2.0 * x * x / f64::from(2 * k + 3);
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        1.0 - std::f64::consts::FRAC_2_SQRT_PI * gaussian * sum
    } else {
        // Modified Lentz evaluation of x + a₁/(x + a₂/(x + ...)) with a_k = k/2.
        let (mut fraction, mut c, mut d) = (x, x, 0.0);
        for k in 1..=500 {
            let a = f64::from(k) / 2.0;
            d = 1.0 / (x + a * d);
            c = x + a / c;
            let delta = c * d;
            fraction *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        gaussian * FRAC_1_SQRT_PI / fraction
    }
}

/// Φ⁻¹, the standard normal quantile function (−∞ at p = 0, +∞ at 1): Wichura's algorithm AS241
/// (PPND16, Applied Statistics 37(3), 1988), whose coefficients are those of CPython's
/// `statistics.NormalDist.inv_cdf`. Measured against mpmath at the 15 points of the tests, p = 1e-300
/// to 1 − 1e-6: relative error at most 4e-16.
fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q * horner(&as241::CENTRAL_NUM, r) / horner(&as241::CENTRAL_DEN, r);
    }
    let r = (-(if q < 0.0 { p } else { 1.0 - p }).ln()).sqrt();
    let x = if r <= 5.0 {
        horner(&as241::NEAR_NUM, r - 1.6) / horner(&as241::NEAR_DEN, r - 1.6)
    } else {
        horner(&as241::FAR_NUM, r - 5.0) / horner(&as241::FAR_DEN, r - 5.0)
    };
    if q < 0.0 { -x } else { x }
}

/// The polynomial with `coefficients` (highest degree first) at `r`, by Horner's rule.
fn horner(coefficients: &[f64], r: f64) -> f64 {
    coefficients.iter().fold(0.0, |acc, &c| acc * r + c)
}

/// The coefficients of AS241's rational approximations.
#[expect(
    clippy::excessive_precision,
    reason = "AS241's coefficients as published, more digits than f64 holds"
)]
mod as241 {
    /// AS241's numerator for |p − 0.5| ≤ 0.425, in r = 0.180625 − (p − 0.5)²; highest degree first.
    pub(super) const CENTRAL_NUM: [f64; 8] = [
        2.5090809287301226727e+3,
        3.3430575583588128105e+4,
        6.7265770927008700853e+4,
        4.5921953931549871457e+4,
        1.3731693765509461125e+4,
        1.9715909503065514427e+3,
        1.3314166789178437745e+2,
        3.3871328727963666080e+0,
    ];

    /// AS241's its denominator; highest degree first.
    pub(super) const CENTRAL_DEN: [f64; 8] = [
        5.2264952788528545610e+3,
        2.8729085735721942674e+4,
        3.9307895800092710610e+4,
        2.1213794301586595867e+4,
        5.3941960214247511077e+3,
        6.8718700749205790830e+2,
        4.2313330701600911252e+1,
        1.0,
    ];

    /// AS241's numerator for the tails with r = √(−ln p) ≤ 5, in r − 1.6; highest degree first.
    pub(super) const NEAR_NUM: [f64; 8] = [
        7.74545014278341407640e-4,
        2.27238449892691845833e-2,
        2.41780725177450611770e-1,
        1.27045825245236838258e+0,
        3.64784832476320460504e+0,
        5.76949722146069140550e+0,
        4.63033784615654529590e+0,
        1.42343711074968357734e+0,
    ];

    /// AS241's its denominator; highest degree first.
    pub(super) const NEAR_DEN: [f64; 8] = [
        1.05075007164441684324e-9,
        5.47593808499534494600e-4,
        1.51986665636164571966e-2,
        1.48103976427480074590e-1,
        6.89767334985100004550e-1,
        1.67638483018380384940e+0,
        2.05319162663775882187e+0,
        1.0,
    ];

    /// AS241's numerator for the far tails, r > 5, in r − 5; highest degree first.
    pub(super) const FAR_NUM: [f64; 8] = [
        2.01033439929228813265e-7,
        2.71155556874348757815e-5,
        1.24266094738807843860e-3,
        2.65321895265761230930e-2,
        2.96560571828504891230e-1,
        1.78482653991729133580e+0,
        5.46378491116411436990e+0,
        6.65790464350110377720e+0,
    ];

    /// AS241's its denominator; highest degree first.
    pub(super) const FAR_DEN: [f64; 8] = [
        2.04426310338993978564e-15,
        1.42151175831644588870e-7,
        1.84631831751005468180e-5,
        7.86869131145613259100e-4,
        1.48753612908506148525e-2,
        1.36929880922735805310e-1,
        5.99832206555887937690e-1,
        1.0,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error, or absolute where the expected value is 0.
    fn error(got: f64, expected: f64) -> f64 {
        if expected == 0.0 { got.abs() } else { ((got - expected) / expected).abs() }
    }

    #[test]
    fn normal_cdf_matches_mpmath() {
        // mpmath.ncdf at 50 digits.
        let table = [
            (-37.5, 4.605353009581955e-308),
            (-20.0, 2.7536241186062337e-89),
            (-8.0, 6.220960574271784e-16),
            (-5.0, 2.866515718791939e-07),
            (-3.5, 0.00023262907903552504),
            (-2.326, 0.010009275340867665),
            (-1.0, 0.15865525393145705),
            (-0.3, 0.3820885778110474),
            (0.0, 0.5),
            (0.5, 0.6914624612740131),
            (1.959963984540054, 0.975),
            (3.0, 0.9986501019683699),
            (6.0, 0.9999999990134123),
            (8.3, 1.0),
        ];
        for (z, expected) in table {
            let got = normal_cdf(z);
            assert!(error(got, expected) <= 1e-12, "Φ({z}) = {got:e}, expected {expected:e}");
        }
        assert_eq!(normal_cdf(-40.0), 0.0);
        assert_eq!(normal_cdf(f64::INFINITY), 1.0);
    }

    #[test]
    fn normal_quantile_matches_mpmath() {
        // sqrt(2)·erfinv(2p − 1) (findroot of ncdf for 1e-300) in mpmath at 50 digits.
        let table = [
            (1e-300, -37.0470962993612),
            (1e-20, -9.262340089798407),
            (1e-10, -6.361340902404057),
            (1e-05, -4.264890793922825),
            (0.001, -3.0902323061678136),
            (0.01, -2.326347874040841),
            (0.02425, -1.972961051311885),
            (0.075, -1.439531470938456),
            (0.3, -0.5244005127080408),
            (0.5, 0.0),
            (0.6, 0.2533471031357997),
            (0.9, 1.2815515655446006),
            (0.975, 1.9599639845400538),
            (0.99, 2.3263478740408408),
            (0.999999, 4.753424308817087),
        ];
        for (p, expected) in table {
            let got = normal_quantile(p);
            assert!(error(got, expected) <= 1e-12, "Φ⁻¹({p}) = {got}, expected {expected}");
        }
    }

    #[test]
    fn quantile_inverts_cdf() {
        for i in -800..=800 {
            let z = f64::from(i) / 100.0;
            let p = if z <= 0.0 { normal_cdf(z) } else { normal_cdf(-z) };
            let back = if z <= 0.0 { normal_quantile(p) } else { -normal_quantile(p) };
            assert!((back - z).abs() <= 1e-12 * z.abs().max(1.0), "z = {z}: Φ⁻¹(Φ(z)) = {back}");
        }
    }

    #[test]
    fn normal_bins_have_equal_probability() {
        let (mean, std, min, max) = (0.3, 0.4, -0.5, 1.9);
        let q = CoordQuantizer::normal(1024, mean, std, min, max).unwrap();
        let cdf = |x: f64| normal_cdf((x - mean) / std);
        let expected = (cdf(max) - cdf(min)) / 1024.0;
        for bin in q.edges().windows(2) {
            let mass = cdf(bin[1]) - cdf(bin[0]);
            assert!(error(mass, expected) <= 1e-9, "bin {bin:?} holds {mass}, expected {expected}");
        }
    }
}
