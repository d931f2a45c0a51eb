//! How a policy is fed and read (`policy.json` in an exported folder): its cameras by name, in
//! the model's order, each with the fit training used, and the rate of its actions. The sizes,
//! the horizon and the action layout are the model's own (`config.json`), not restated here.

use std::path::Path;

use serde::{Deserialize, Serialize};
use spear_data::images::Fit;

/// One camera of the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSpec {
    /// What clients call it (`main`, `wrist`; openpi's `base_0_rgb`, …).
    pub name: String,
    /// How a frame of another aspect ratio meets the model's size: as in training.
    pub fit: Fit,
}

/// The contents of `policy.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// The cameras in the model's order: the main camera, then the wrist cameras.
    pub cameras: Vec<CameraSpec>,
    /// Rate of the actions of a chunk, Hz (`None` when the checkpoint does not say, as π0's don't).
    pub rate_hz: Option<f64>,
}

impl PolicySpec {
    /// The file's name in an exported policy folder.
    pub const FILE_NAME: &'static str = "policy.json";

    /// SPEAR-1 as `spear train vla` trains it, for exports without the file: `main` then `wrist`
    /// cameras, centre-cropped (the loader's default).
    pub fn spear(cameras: usize) -> Self {
        let names = (0..cameras).map(|k| match k {
            0 => "main".to_string(),
            1 => "wrist".to_string(),
            k => format!("wrist_{}", k - 1),
        });
        Self { cameras: names.map(|name| CameraSpec { name, fit: Fit::Crop }).collect(), rate_hz: None }
    }

    /// π0 as openpi feeds it: its camera names, frames resized with padding
    /// (`image_tools.resize_with_pad`).
    pub fn pi0(cameras: usize) -> Self {
        let names = (0..cameras).map(|k| match k {
            0 => "base_0_rgb".to_string(),
            1 => "left_wrist_0_rgb".to_string(),
            2 => "right_wrist_0_rgb".to_string(),
            k => format!("camera_{k}"),
        });
        Self { cameras: names.map(|name| CameraSpec { name, fit: Fit::Pad }).collect(), rate_hz: None }
    }

    /// Writes it as JSON.
    pub fn write_file(&self, path: &Path) -> Result<(), String> {
        let json = serde_json::to_string_pretty(self).expect("the spec serialises");
        std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Reads and checks a `policy.json`.
    pub fn read_file(path: &Path) -> Result<Self, String> {
        let fail = |problem: String| format!("{}: {problem}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let spec: Self = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        if spec.cameras.is_empty() {
            return Err(fail("no cameras".into()));
        }
        if let Some(rate) = spec.rate_hz
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(fail(format!("rate_hz is {rate}; it must be positive")));
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_round_trips_and_a_damaged_one_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("spear-policy-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(PolicySpec::FILE_NAME);
        let spec = PolicySpec { rate_hz: Some(5.0), ..PolicySpec::spear(2) };
        spec.write_file(&path).unwrap();
        assert_eq!(PolicySpec::read_file(&path).unwrap(), spec);
        std::fs::write(&path, r#"{"cameras": [{"name": "main", "fit": "stretch"}], "rate_hz": 5}"#).unwrap();
        let e = PolicySpec::read_file(&path).unwrap_err();
        assert!(e.contains("policy.json") && e.contains("stretch"), "{e}");
        std::fs::write(&path, r#"{"cameras": [{"name": "main", "fit": "crop"}], "rate_hz": -1}"#).unwrap();
        assert!(PolicySpec::read_file(&path).unwrap_err().contains("rate_hz is -1"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn defaults_name_the_cameras_as_their_clients_do() {
        let names = |s: PolicySpec| s.cameras.into_iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(names(PolicySpec::spear(2)), ["main", "wrist"]);
        assert_eq!(names(PolicySpec::pi0(3)), ["base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb"]);
        assert!(PolicySpec::pi0(1).cameras.iter().all(|c| c.fit == Fit::Pad));
    }
}
