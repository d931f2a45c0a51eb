//! openpi's transforms for π0 checkpoints, as its policy server applies them
//! (`docs/reference/openpi-serving.md`): the normalisation statistics (openpi's `norm_stats.json`,
//! or lerobot's: a dataset's `meta/stats.json` or a policy's normaliser safetensors) applied as
//! openpi applies them (z-score with ε = 1e-6 on `std`: the statistics cut to the state's length on the way in,
//! padded with mean 0 and std 1 to the model's width on the way out) and the robots' image parsing
//! (float frames to 8 bits by truncation, CHW to HWC when the first axis is 3).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use spear_policy::{ChannelOrder, Frame, Pixels};

use crate::wire::{Array, Dtype};

/// One quantity's statistics.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Stats {
    /// Per-dimension mean.
    pub mean: Vec<f64>,
    /// Per-dimension standard deviation.
    pub std: Vec<f64>,
}

/// `norm_stats.json`'s contents for π0: the state's and the actions' statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct NormStats {
    /// Of the state, as the robot sends it (before padding).
    pub state: Stats,
    /// Of the actions.
    pub actions: Stats,
}

#[derive(Deserialize)]
struct File {
    norm_stats: std::collections::BTreeMap<String, Stats>,
}

/// lerobot's names of the state and the action (dataset features, normaliser keys).
const LEROBOT_STATE: &str = "observation.state";
const LEROBOT_ACTION: &str = "action";
/// How lerobot (≥ 0.4) names a policy's saved normaliser: `policy_preprocessor_step_{i}_` then
/// this (`processor/normalize_processor.py`; its `state_dict` keys are `{feature}.{statistic}`).
const LEROBOT_NORMALIZER: &str = "_normalizer_processor.safetensors";

impl NormStats {
    /// The file's usual name.
    pub const FILE_NAME: &'static str = "norm_stats.json";

    /// Reads the statistics of a π0 checkpoint: openpi's `norm_stats.json` (`{"norm_stats":
    /// {"state": {mean, std, …}, "actions": …}}`; openpi's server fails on any other top-level
    /// statistic, so one is refused here), lerobot's `stats.json` (`{"observation.state": {mean,
    /// std, …}, "action": …}`, other features ignored) or lerobot's normaliser safetensors
    /// (`observation.state.mean`, `….std`, `action.mean`, `action.std`).
    pub fn read(path: &Path) -> Result<Self, String> {
        let fail = |problem: String| format!("{}: {problem}", path.display());
        let (state, actions) = if path.extension().is_some_and(|e| e == "safetensors") {
            read_lerobot_normalizer(path).map_err(fail)?
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
            if value.get("norm_stats").is_some() {
                let file: File = serde_json::from_value(value)
                    .map_err(|e| fail(format!("not openpi's norm_stats.json: {e}")))?;
                let mut stats = file.norm_stats;
                let mut take =
                    |key: &str| stats.remove(key).ok_or_else(|| fail(format!("no `norm_stats.{key}`")));
                let (state, actions) = (take("state")?, take("actions")?);
                if let Some(other) = stats.keys().next() {
                    return Err(fail(format!("`norm_stats.{other}` is neither `state` nor `actions`")));
                }
                (state, actions)
            } else if value.get(LEROBOT_STATE).is_some() || value.get(LEROBOT_ACTION).is_some() {
                let take = |key: &str| match value.get(key) {
                    Some(stats) => serde_json::from_value::<Stats>(stats.clone())
                        .map_err(|e| fail(format!("`{key}` in lerobot's stats: {e}"))),
                    None => Err(fail(format!("lerobot's stats without `{key}`"))),
                };
                (take(LEROBOT_STATE)?, take(LEROBOT_ACTION)?)
            } else {
                return Err(fail(
                    "neither openpi's norm_stats.json ({\"norm_stats\": …}) nor lerobot's stats \
                     ({\"observation.state\": …, \"action\": …})"
                        .into(),
                ));
            }
        };
        for (name, s) in [("state", &state), ("actions", &actions)] {
            if s.mean.len() != s.std.len() || s.mean.is_empty() {
                return Err(fail(format!("`{name}`: {} means and {} stds", s.mean.len(), s.std.len())));
            }
            if let Some(v) = s.mean.iter().chain(&s.std).find(|v| !v.is_finite()) {
                return Err(fail(format!("`{name}` holds {v}")));
            }
            if let Some(v) = s.std.iter().find(|v| **v < 0.0) {
                return Err(fail(format!("`{name}` has a negative std {v}")));
            }
        }
        Ok(Self { state, actions })
    }

    /// The statistics a checkpoint folder carries: `norm_stats.json` beside the weights, else the one
    /// `assets/*/norm_stats.json` of an openpi checkpoint (refused when there are several), else
    /// lerobot's `policy_preprocessor_step_*_normalizer_processor.safetensors`.
    pub fn find(dir: &Path) -> Result<Option<PathBuf>, String> {
        let beside = dir.join(Self::FILE_NAME);
        if beside.is_file() {
            return Ok(Some(beside));
        }
        let lerobot = || {
            let entries = std::fs::read_dir(dir).ok()?;
            entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with("policy_preprocessor_step_") && n.ends_with(LEROBOT_NORMALIZER)
                })
            })
        };
        let assets = dir.join("assets");
        let Ok(entries) = std::fs::read_dir(&assets) else { return Ok(lerobot()) };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join(Self::FILE_NAME))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        match found.len() {
            0 => Ok(lerobot()),
            1 => Ok(found.pop()),
            _ => Err(format!(
                "{} holds several norm_stats.json ({}); pass the robot's with --norm-stats",
                assets.display(),
                found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// openpi's `Normalize` then `PadStatesAndActions`: `(x − mean) / (std + 1e-6)` over the
    /// state's own length (longer statistics are cut), then zeros up to `width`.
    pub fn normalize_state(&self, state: &[f64], width: usize) -> Result<Vec<f32>, String> {
        if state.len() > self.state.mean.len() {
            return Err(format!(
                "the state has {} values; norm_stats.json describes {}",
                state.len(),
                self.state.mean.len()
            ));
        }
        if state.len() > width {
            return Err(format!("the state has {} values; the model takes {width}", state.len()));
        }
        let mut out: Vec<f32> = state
            .iter()
            .zip(self.state.mean.iter().zip(&self.state.std))
            .map(|(x, (m, s))| ((x - m) / (s + 1e-6)) as f32)
            .collect();
        out.resize(width, 0.0);
        Ok(out)
    }

    /// openpi's `Unnormalize` of one padded action: `x · (std + 1e-6) + mean`, the statistics padded
    /// with mean 0 and std 1 to the action's width. In float64, as openpi's (its statistics are).
    pub fn unnormalize_action(&self, action: &[f32]) -> Vec<f64> {
        unnormalize(&self.actions, action)
    }

    /// The same for the padded, normalised state the model saw: openpi's output path adds this
    /// state back to delta actions (`AbsoluteActions`).
    pub fn unnormalize_state(&self, state: &[f32]) -> Vec<f64> {
        unnormalize(&self.state, state)
    }
}

/// The state's and the action's mean and std from lerobot's normaliser safetensors.
fn read_lerobot_normalizer(path: &Path) -> Result<(Stats, Stats), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let tensors =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let vector = |name: String| -> Result<Vec<f64>, String> {
        let view = tensors.tensor(&name).map_err(|_| format!("no tensor `{name}` (lerobot's normaliser)"))?;
        let data = view.data();
        match view.dtype() {
            safetensors::Dtype::F32 => Ok(data
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
                .collect()),
            safetensors::Dtype::F64 => {
                Ok(data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect())
            }
            other => Err(format!("`{name}` is {other:?}; statistics are float32 or float64")),
        }
    };
    let stats = |feature: &str| -> Result<Stats, String> {
        Ok(Stats { mean: vector(format!("{feature}.mean"))?, std: vector(format!("{feature}.std"))? })
    };
    Ok((stats(LEROBOT_STATE)?, stats(LEROBOT_ACTION)?))
}

/// `x · (std + 1e-6) + mean` per value, the statistics padded with mean 0 and std 1.
fn unnormalize(stats: &Stats, x: &[f32]) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(i, &x)| {
            let mean = stats.mean.get(i).copied().unwrap_or(0.0);
            let std = stats.std.get(i).copied().unwrap_or(1.0);
            f64::from(x) * (std + 1e-6) + mean
        })
        .collect()
}

/// openpi's `_parse_image`: a float frame becomes 8 bits as numpy's `(255 · x).astype(uint8)` does
/// (truncation), and a frame whose first axis is 3 is taken as CHW.
pub fn parse_image(array: &Array, key: &str) -> Result<Frame, String> {
    let (height, width, channels, order) = match array.shape[..] {
        [3, h, w] => (h, w, 3, ChannelOrder::Chw),
        [h, w, c] if (1..=4).contains(&c) => (h, w, c, ChannelOrder::Hwc),
        _ => {
            return Err(format!(
                "`{key}` has shape {:?}; openpi's clients send [H, W, 3] or [3, H, W] images",
                array.shape
            ));
        }
    };
    let pixels = match array.dtype {
        Dtype::U8 => array.data.clone(),
        Dtype::F16 | Dtype::F32 | Dtype::F64 => {
            if let Some(v) = array.to_f64().iter().find(|v| !(0.0..=1.0).contains(*v)) {
                return Err(format!("`{key}` holds {v}; float images are in [0, 1]"));
            }
            // `255 · x` in the array's own precision, as numpy computes it, then truncated.
            let n = array.dtype.itemsize();
            array
                .data
                .chunks_exact(n)
                .map(|c| match array.dtype {
                    Dtype::F16 => {
                        half::f16::from_f32(255.0 * half::f16::from_le_bytes([c[0], c[1]]).to_f32()).to_f32()
                            as u8
                    }
                    Dtype::F32 => (255.0 * f32::from_le_bytes([c[0], c[1], c[2], c[3]])) as u8,
                    _ => (255.0 * f64::from_le_bytes(c.try_into().expect("8 bytes"))) as u8,
                })
                .collect()
        }
        other => return Err(format!("`{key}` is {}; images are uint8 or float", other.numpy())),
    };
    Ok(Frame { height, width, channels, order, pixels: Pixels::U8(pixels) })
}
