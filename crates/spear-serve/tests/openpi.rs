//! π0 through the `droid` and `libero` presets against openpi's transforms, computed in numpy as
//! openpi computes them (`tools/reference/serve_fixtures.py`): the state normalised with the
//! checkpoint's statistics and padded, the frames parsed (float by truncation, CHW) and padded to
//! the model's size as `resize_with_pad` does, the right wrist absent; the model's output
//! unnormalised (LIBERO: the state added to the first 6 values) and cut, in float64.

use std::path::PathBuf;

use spear_data::images::Fit;
use spear_policy::inputs::fit_frame;
use spear_serve::openpi::NormStats;
use spear_serve::preset::{PolicyFacts, Preset};
use spear_serve::wire::{Dtype, Item, decode};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/droid")
}

fn libero() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/libero")
}

fn pi0(norm_stats: Option<NormStats>) -> PolicyFacts {
    PolicyFacts {
        model: "pi0-tiny".into(),
        cameras: ["base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb"].map(String::from).to_vec(),
        state_dim: 32,
        horizon: 4,
        action_dim: 32,
        rate_hz: None,
        in_robot_units: false,
        pi0: true,
        norm_stats,
    }
}

fn expected(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

/// The state, the two cameras at 56×56 and the actions of `preset` on the fixture in `dir`
/// against the reference; returns the observation for further checks.
fn matches_openpi(preset: Preset, dir: &std::path::Path, actions_dim: usize) -> spear_policy::RawObservation {
    let stats = NormStats::read(&dir.join("norm_stats.json")).unwrap();
    let facts = pi0(Some(stats));
    preset.check(&facts).unwrap();
    let message = decode(&std::fs::read(dir.join("observation.msgpack")).unwrap()).unwrap();
    let observation = preset.observation(&message, &facts).unwrap();
    let want = expected(dir);

    let state = floats(&want["state"]);
    assert_eq!(observation.state.len(), 32);
    for (i, (got, want)) in observation.state.iter().zip(&state).enumerate() {
        assert!((f64::from(*got) - want).abs() <= 1e-6 * want.abs().max(1.0), "state {i}: {got} vs {want}");
    }

    let images = std::fs::read(dir.join("images.bin")).unwrap();
    let per = 56 * 56 * 3;
    for (k, name) in ["base", "left wrist"].iter().enumerate() {
        let frame = observation.cameras[k].as_ref().unwrap();
        let got = fit_frame(frame, [56, 56], Fit::Pad).unwrap();
        let reference = &images[k * per..(k + 1) * per];
        let worst = got.iter().zip(reference).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(worst <= 1, "{name}: pixels differ by up to {worst} from resize_with_pad's");
        let rows = |p: &[u8]| p.chunks_exact(56 * 3).map(|r| r.iter().any(|&v| v != 0)).collect::<Vec<_>>();
        assert_eq!(rows(&got), rows(reference), "{name}: the padding's place");
    }
    assert!(observation.cameras[2].is_none(), "the right wrist is absent (openpi masks it)");

    let chunk: Vec<Vec<f32>> = want["model_output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| floats(row).into_iter().map(|v| v as f32).collect())
        .collect();
    let actions = preset.actions(&chunk, &facts, &observation.state);
    assert_eq!((actions.dtype, actions.shape.as_slice()), (Dtype::F64, &[4usize, actions_dim][..]));
    let reference: Vec<f64> = want["actions"].as_array().unwrap().iter().flat_map(floats).collect();
    for (i, (got, want)) in actions.to_f64().iter().zip(&reference).enumerate() {
        assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "action value {i}: {got} vs {want}");
    }
    observation
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn droid_observations_become_what_openpi_feeds_pi0_and_its_actions_what_openpi_returns() {
    let observation = matches_openpi(Preset::Droid, &fixtures(), 8);
    assert_eq!(observation.prompt, "put the marker in the cup");
    // The float CHW wrist frame parsed exactly as openpi does (truncation, not rounding).
    let wrist = observation.cameras[1].as_ref().unwrap().to_image().unwrap();
    assert_eq!((wrist.height, wrist.width), (60, 80));
    assert!(
        wrist.pixels == std::fs::read(fixtures().join("wrist_parsed.bin")).unwrap(),
        "the parsed wrist frame"
    );
}

#[test]
fn libero_observations_become_what_openpi_feeds_pi0_and_its_actions_what_openpi_returns() {
    let observation = matches_openpi(Preset::Libero, &libero(), 7);
    assert_eq!(observation.prompt, "put both the alphabet soup and the tomato sauce in the basket");
    let stats = NormStats::read(&libero().join("norm_stats.json")).unwrap();
    let spear1 = PolicyFacts { pi0: false, in_robot_units: true, ..pi0(Some(stats)) };
    assert!(Preset::Libero.check(&spear1).unwrap_err().contains("axis-angle"));
}

#[test]
fn the_droid_preset_refuses_what_it_cannot_serve_and_says_why() {
    let stats = NormStats::read(&fixtures().join("norm_stats.json")).unwrap();
    let spear1 = PolicyFacts { pi0: false, in_robot_units: true, ..pi0(Some(stats.clone())) };
    assert!(Preset::Droid.check(&spear1).unwrap_err().contains("joint velocities"));
    assert!(Preset::Droid.check(&pi0(None)).unwrap_err().contains("norm_stats.json"));
    let narrow = PolicyFacts { state_dim: 6, ..pi0(Some(stats.clone())) };
    assert!(Preset::Droid.check(&narrow).unwrap_err().contains("narrower than DROID's 8"));

    let facts = pi0(Some(stats));
    let message = decode(&std::fs::read(fixtures().join("observation.msgpack")).unwrap()).unwrap();
    let Item::Map(mut entries) = message else { panic!() };
    let joints = entries.iter_mut().find(|(k, _)| k == "observation/joint_position").unwrap();
    joints.1 = Item::List(vec![Item::Float(0.0); 6]);
    let err = Preset::Droid.observation(&Item::Map(entries.clone()), &facts).unwrap_err();
    assert!(err.contains("DROID sends 7 and 1"), "{err}");
    entries.retain(|(k, _)| k != "prompt");
    let err = Preset::Droid.observation(&Item::Map(entries), &facts).unwrap_err();
    assert!(err.contains("no `prompt`"), "{err}");
}

#[test]
fn norm_stats_files_are_checked() {
    let dir = std::env::temp_dir().join(format!("spear-serve-norm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("norm_stats.json");
    for (text, needle) in [
        (r#"{"norm_stats": {"state": {"mean": [0], "std": [1]}}}"#, "no `norm_stats.actions`"),
        (
            r#"{"norm_stats": {"state": {"mean": [0], "std": [1]}, "actions": {"mean": [0, 1], "std": [1]}}}"#,
            "2 means and 1 stds",
        ),
        (
            r#"{"norm_stats": {"state": {"mean": [0], "std": [-1]}, "actions": {"mean": [0], "std": [1]}}}"#,
            "negative std",
        ),
        (
            r#"{"norm_stats": {"state": {"mean": [0], "std": [1]}, "actions": {"mean": [0], "std": [1]}, "reward": {"mean": [0], "std": [1]}}}"#,
            "`norm_stats.reward`",
        ),
        (r#"{"stats": {}}"#, "not openpi's norm_stats.json"),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = NormStats::read(&path).unwrap_err();
        assert!(err.contains(needle) && err.contains("norm_stats.json"), "{err}");
    }
}
