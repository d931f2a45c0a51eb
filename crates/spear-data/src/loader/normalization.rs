//! Normalisation of states and actions: the `[loader.normalization]` choice (the paper's Table 10)
//! and the normalisers it builds, which an exported policy keeps as `normalization.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{LoaderError, MixtureStats};
use crate::stats::{AngleScale, Normalizer};

/// A normaliser choice for one quantity (the paper's Table 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormalizerKind {
    /// Values as they are.
    #[default]
    None,
    /// `[q01, q99] → [−1, 1]` with the mixture's global percentiles (the paper's default).
    Quantile,
    /// `[low, high] → [−1, 1]` with constant bounds (the best translation normaliser in Table 10).
    MinMaxConst,
    /// `(x − mean) / std` (the ablation).
    MeanStd,
}

/// `[loader.normalization]`: which normaliser for action translations and for state positions,
/// from the statistics file `spear data stats` writes (quantile, mean-std) or constant bounds,
/// and whether action rotations are angle-scaled ([`crate::stats::AngleScale`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizationConfig {
    /// The statistics file (relative to the mixture file).
    pub stats: Option<PathBuf>,
    /// For the translation of every action.
    pub actions: NormalizerKind,
    /// For the state's position.
    pub state: NormalizerKind,
    /// `[low, high]` per dimension for `min_max_const` actions.
    pub action_bounds: Option<[[f64; 3]; 2]>,
    /// `[low, high]` per dimension for `min_max_const` states.
    pub state_bounds: Option<[[f64; 3]; 2]>,
    /// Action rotations: `none`, or `angle_quantile` (the 99th-percentile delta angle scaled to
    /// `rotation_angle_deg`).
    pub rotations: RotationNormalizerKind,
    /// The angle, degrees, that `angle_quantile` maps the 99th-percentile rotation to.
    pub rotation_angle_deg: Option<f64>,
}

/// How action rotations are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationNormalizerKind {
    /// Quaternions as they are (the paper).
    #[default]
    None,
    /// Angles scaled about their axes so that the mixture's 99th percentile becomes
    /// `rotation_angle_deg` ([`crate::stats::AngleScale`]).
    AngleQuantile,
}

impl NormalizationConfig {
    /// The normalisers, reading the statistics file when a kind needs it.
    pub fn build(&self) -> Result<Normalization, String> {
        let needs_stats = [self.actions, self.state]
            .iter()
            .any(|k| matches!(k, NormalizerKind::Quantile | NormalizerKind::MeanStd))
            || self.rotations == RotationNormalizerKind::AngleQuantile;
        let stats: Option<MixtureStats> = match (&self.stats, needs_stats) {
            (Some(path), true) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
                Some(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?)
            }
            (None, true) => {
                return Err(
                    "normalization: quantile, mean_std and angle_quantile need `stats` (from `spear data stats`)"
                        .into(),
                );
            }
            _ => None,
        };
        let make = |kind: NormalizerKind,
                    of: fn(&MixtureStats) -> &crate::stats::Stats,
                    bounds: Option<[[f64; 3]; 2]>,
                    what: &str| {
            Ok::<_, String>(match kind {
                NormalizerKind::None => None,
                NormalizerKind::Quantile => {
                    Some(Normalizer::quantile(of(stats.as_ref().expect("read above"))))
                }
                NormalizerKind::MeanStd => {
                    Some(Normalizer::mean_std(of(stats.as_ref().expect("read above"))))
                }
                NormalizerKind::MinMaxConst => {
                    let [low, high] = bounds
                        .ok_or_else(|| format!("normalization: min_max_const {what} need `{what}_bounds`"))?;
                    Some(Normalizer::min_max_const(low.to_vec(), high.to_vec()).map_err(|e| e.to_string())?)
                }
            })
        };
        let action_rotation = match self.rotations {
            RotationNormalizerKind::None => None,
            RotationNormalizerKind::AngleQuantile => {
                let stats = stats.as_ref().expect("read above");
                let angles = stats.action_rotation_angle.as_ref().ok_or_else(|| {
                    format!(
                        "normalization: {:?} has no rotation statistics (written by an older `spear data stats`: \
                         run it again)",
                        self.stats
                    )
                })?;
                let target = self.rotation_angle_deg.unwrap_or(90.0);
                Some(AngleScale::quantile(angles, target.to_radians()).map_err(|e| e.to_string())?)
            }
        };
        let normalization = Normalization {
            action_translation: make(self.actions, |s| &s.action_translation, self.action_bounds, "action")?,
            state_position: make(self.state, |s| &s.state_position, self.state_bounds, "state")?,
            action_rotation,
        };
        normalization.validate().map_err(|e| format!("normalization from {:?}: {e}", self.stats))?;
        Ok(normalization)
    }
}

/// Normalisers of states and actions: the translation / position (first three values) of each,
/// and the rotation of actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Normalization {
    /// For action translations.
    pub action_translation: Option<Normalizer>,
    /// For state positions.
    pub state_position: Option<Normalizer>,
    /// For action rotations (absent in files written before it existed: none).
    #[serde(default)]
    pub action_rotation: Option<AngleScale>,
}

/// Applies `normalizer` (or its inverse) to the first three values.
fn affine3(normalizer: &Option<Normalizer>, values: &mut [f32], undo: bool) {
    if let Some(n) = normalizer {
        let mut v: [f64; 3] = std::array::from_fn(|i| f64::from(values[i]));
        let done = if undo { n.denormalize(&mut v) } else { n.normalize(&mut v) };
        done.expect("normalisers of 3 dimensions are checked when set");
        values[..3].iter_mut().zip(v).for_each(|(x, y)| *x = y as f32);
    }
}

impl Normalization {
    /// Its file in an exported policy's folder: `spear train vla` writes it, `spear policy act`
    /// applies it.
    pub const FILE_NAME: &'static str = "normalization.json";

    /// Writes it as JSON to `path`.
    pub fn write_file(&self, path: &Path) -> Result<(), LoaderError> {
        let json = serde_json::to_string_pretty(self).expect("normalisers serialise");
        std::fs::write(path, json)
            .map_err(|e| LoaderError::Config { path: path.to_path_buf(), problem: e.to_string() })
    }

    /// Reads and checks a file [`Normalization::write_file`] wrote.
    pub fn read_file(path: &Path) -> Result<Self, LoaderError> {
        let fail = |problem: String| LoaderError::Config { path: path.to_path_buf(), problem };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let normalization: Self =
            serde_json::from_str(&text).map_err(|e| fail(format!("not a normalisation file: {e}")))?;
        normalization.validate().map_err(fail)?;
        Ok(normalization)
    }

    /// Normalises a state `[x, y, z, qw, qx, qy, qz, gripper]` in place.
    pub fn normalize_state(&self, state: &mut [f32]) {
        affine3(&self.state_position, state, false);
    }

    /// Normalises an action `[x, y, z, qw, qx, qy, qz, gripper]` in place.
    pub fn normalize_action(&self, action: &mut [f32]) {
        affine3(&self.action_translation, action, false);
        if let Some(scale) = &self.action_rotation {
            let q: [f32; 4] = action[3..7].try_into().expect("an 8-value action");
            action[3..7].copy_from_slice(&scale.normalize(q));
        }
    }

    /// Undoes [`Normalization::normalize_action`]: metres and the real rotation.
    pub fn denormalize_action(&self, action: &mut [f32]) {
        affine3(&self.action_translation, action, true);
        if let Some(scale) = &self.action_rotation {
            let q: [f32; 4] = action[3..7].try_into().expect("an 8-value action");
            action[3..7].copy_from_slice(&scale.denormalize(q));
        }
    }

    /// Checks that each normaliser has three dimensions and each scale is positive.
    pub fn validate(&self) -> Result<(), String> {
        for n in [&self.action_translation, &self.state_position].into_iter().flatten() {
            n.validate(3).map_err(|e| e.to_string())?;
        }
        if let Some(scale) = &self.action_rotation
            && !(scale.factor.is_finite() && scale.factor > 0.0)
        {
            return Err(format!("rotation angle factor {} is not a positive number", scale.factor));
        }
        Ok(())
    }
}
