//! π0 through the `droid`, `libero` and `aloha` presets against openpi's transforms, computed in numpy as
//! openpi computes them (`tools/reference/serve_fixtures.py`): the state normalised with the
//! checkpoint's statistics and padded, the frames parsed (float by truncation, CHW) and padded to
//! the model's size as `resize_with_pad` does, the right wrist absent; the model's output
//! unnormalised (LIBERO: the state added to the first 6 values; ALOHA: to the 12 joints, then
//! ALOHA's signs and gripper units) and cut, in float64.
//!
//! And end to end: a tiny π0 served through the `droid` preset against openpi's pipeline around
//! transformers' PI0 from the same noise (`tools/reference/pi0_serve_fixtures.py`).

use std::path::PathBuf;

use burn::backend::Flex;
use burn::prelude::*;
use spear_data::images::Fit;
use spear_policy::inputs::fit_frame;
use spear_policy::{LoadOptions, Policy};
use spear_serve::openpi::NormStats;
use spear_serve::preset::{PolicyFacts, Preset};
use spear_serve::server::facts;
use spear_serve::wire::{Array, Dtype, Item, decode, encode};

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
        default_prompt: None,
    }
}

fn expected(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

/// The state, the two cameras at 56×56 and the actions of `preset` on the fixture in `dir`
/// against the reference's `actions` (or `sim_actions` for `aloha-sim`); returns the observation
/// for further checks.
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

    let chunk = model_output(&want);
    let actions = preset.actions(&chunk, &facts, &observation.state);
    assert_eq!((actions.dtype, actions.shape.as_slice()), (Dtype::F64, &[4usize, actions_dim][..]));
    let key = if preset == Preset::AlohaSim { "sim_actions" } else { "actions" };
    let reference: Vec<f64> = want[key].as_array().unwrap().iter().flat_map(floats).collect();
    for (i, (got, want)) in actions.to_f64().iter().zip(&reference).enumerate() {
        assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "action value {i}: {got} vs {want}");
    }
    observation
}

/// The reference's `model_output`: what the model would return, per action, as float32.
fn model_output(want: &serde_json::Value) -> Vec<Vec<f32>> {
    let rows = want["model_output"].as_array().unwrap();
    rows.iter().map(|row| floats(row).into_iter().map(|v| v as f32).collect()).collect()
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
fn aloha_observations_become_what_openpi_feeds_pi0_and_its_actions_what_openpi_returns() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aloha");
    // ALOHA's clients send no prompt: the server's default, else aloha-sim's own, else an error.
    let observation = matches_openpi(Preset::AlohaSim, &dir, 14);
    assert_eq!(observation.prompt, "Transfer cube");
    let stats = NormStats::read(&dir.join("norm_stats.json")).unwrap();
    let message = decode(&std::fs::read(dir.join("observation.msgpack")).unwrap()).unwrap();
    let err = Preset::Aloha.observation(&message, &pi0(Some(stats.clone()))).unwrap_err();
    assert!(err.contains("no `prompt`") && err.contains("--default-prompt"), "{err}");
    let facts = PolicyFacts { default_prompt: Some("fold the towel".into()), ..pi0(Some(stats.clone())) };
    assert_eq!(Preset::Aloha.observation(&message, &facts).unwrap().prompt, "fold the towel");
    let Item::Map(mut entries) = message.clone() else { panic!() };
    entries.push(("prompt".into(), Item::Bytes(b"open the tupperware".to_vec())));
    assert_eq!(Preset::Aloha.observation(&Item::Map(entries), &facts).unwrap().prompt, "open the tupperware");

    // pi0_aloha: the joints made absolute, then ALOHA's signs and grippers.
    let facts = PolicyFacts { default_prompt: Some("fold the towel".into()), ..pi0(Some(stats.clone())) };
    let observation = Preset::Aloha.observation(&message, &facts).unwrap();
    let want = expected(&dir);
    let chunk = model_output(&want);
    let actions = Preset::Aloha.actions(&chunk, &facts, &observation.state).to_f64();
    let reference: Vec<f64> = want["actions"].as_array().unwrap().iter().flat_map(floats).collect();
    assert_eq!(actions.len(), 4 * 14);
    for (i, (got, want)) in actions.iter().zip(&reference).enumerate() {
        assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "action value {i}: {got} vs {want}");
    }
    let metadata = Preset::Aloha.metadata(&facts);
    let pose = [0, -1, 1, 0, 0, 0].map(|v: i64| v as f64 * 1.5);
    let Some(Item::List(reset)) = metadata.get("reset_pose") else { panic!("pi0_aloha's reset_pose") };
    assert_eq!(reset.len(), 6);
    for (item, want) in reset.iter().zip(pose) {
        match item {
            Item::Int(v) => assert_eq!(*v as f64, want),
            Item::Float(v) => assert_eq!(*v, want),
            other => panic!("{other:?}"),
        }
    }
    assert!(Preset::AlohaSim.metadata(&facts).get("reset_pose").is_none());
    // π0 checkpoints record no rate: the one openpi's example client steps at (LIBERO's sim: none).
    assert_eq!(metadata.get("rate_hz"), Some(&Item::Float(50.0)));
    assert_eq!(Preset::Droid.metadata(&facts).get("rate_hz"), Some(&Item::Float(15.0)));
    assert_eq!(Preset::Libero.metadata(&facts).get("rate_hz"), Some(&Item::Nil));

    // What ALOHA's clients cannot send.
    let Item::Map(entries) = &message else { panic!() };
    let with_images = |images: Item| {
        let mut e = entries.clone();
        e.iter_mut().find(|(k, _)| k == "images").unwrap().1 = images;
        Item::Map(e)
    };
    let Some(Item::Map(cams)) = message.get("images") else { panic!() };
    let mut extra = cams.clone();
    extra.push(("cam_top".into(), extra[0].1.clone()));
    let err = Preset::Aloha.observation(&with_images(Item::Map(extra)), &facts).unwrap_err();
    assert!(err.contains("unknown key `cam_top`"), "{err}");
    let no_high: Vec<_> = cams.iter().filter(|(k, _)| k != "cam_high").cloned().collect();
    let err = Preset::Aloha.observation(&with_images(Item::Map(no_high)), &facts).unwrap_err();
    assert!(err.contains("no `cam_high`"), "{err}");
    let narrow = PolicyFacts { state_dim: 8, ..facts.clone() };
    assert!(Preset::Aloha.check(&narrow).unwrap_err().contains("narrower than ALOHA's 14"));
    let spear1 = PolicyFacts { pi0: false, in_robot_units: true, ..facts };
    assert!(Preset::AlohaSim.check(&spear1).unwrap_err().contains("absolute joint positions"));
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
    let Item::Map(entries) = message else { panic!() };
    let mut short = entries.clone();
    short.iter_mut().find(|(k, _)| k == "observation/joint_position").unwrap().1 =
        Item::List(vec![Item::Float(0.0); 6]);
    let err = Preset::Droid.observation(&Item::Map(short), &facts).unwrap_err();
    assert!(err.contains("DROID sends 7 and 1"), "{err}");
    let mut unprompted = entries.clone();
    unprompted.retain(|(k, _)| k != "prompt");
    let err = Preset::Droid.observation(&Item::Map(unprompted.clone()), &facts).unwrap_err();
    assert!(err.contains("no `prompt`"), "{err}");
    let facts = PolicyFacts { default_prompt: Some("wipe the table".into()), ..facts };
    assert_eq!(Preset::Droid.observation(&Item::Map(unprompted), &facts).unwrap().prompt, "wipe the table");
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
        (r#"{"stats": {}}"#, "neither openpi's norm_stats.json"),
        (r#"{"norm_stats": {"state": [0]}}"#, "not openpi's norm_stats.json"),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = NormStats::read(&path).unwrap_err();
        assert!(err.contains(needle) && err.contains("norm_stats.json"), "{err}");
    }
}

/// A DROID client's observation as it reaches the server: its frames (the exterior camera uint8
/// HWC, the wrist camera float32 CHW), joints and gripper as float64, the prompt; through the
/// wire and back.
fn droid_message(exterior: &[u8], wrist: &[u8], fields: &serde_json::Value) -> Item {
    let array =
        |dtype, shape: Vec<usize>, data: &[u8]| Item::Array(Array { dtype, shape, data: data.to_vec() });
    let message = Item::Map(vec![
        ("observation/exterior_image_1_left".into(), array(Dtype::U8, vec![56, 56, 3], exterior)),
        ("observation/wrist_image_left".into(), array(Dtype::F32, vec![3, 56, 56], wrist)),
        (
            "observation/joint_position".into(),
            Item::Array(Array::f64(vec![7], &floats(&fields["joint_position"]))),
        ),
        (
            "observation/gripper_position".into(),
            Item::Array(Array::f64(vec![1], &floats(&fields["gripper_position"]))),
        ),
        ("prompt".into(), Item::Str(fields["prompt"].as_str().unwrap().into())),
    ]);
    decode(&encode(&message)).unwrap()
}

fn pi0_droid() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pi0_droid")
}

/// The lerobot normaliser file of the π0 fixture.
const LEROBOT_NORMALIZER: &str = "policy_preprocessor_step_3_normalizer_processor.safetensors";

#[test]
fn pi0_served_through_the_droid_preset_returns_what_openpi_returns_within_1e_4() {
    // With openpi's statistics, and with the same statistics as lerobot writes them (its float32
    // normaliser included).
    for stats in ["norm_stats.json", "lerobot_stats.json", LEROBOT_NORMALIZER] {
        let worst = droid_parity(&pi0_droid().join(stats));
        eprintln!(
            "π0 through the droid preset ({stats}): largest difference from openpi's pipeline {worst:.2e}"
        );
    }
}

/// The largest difference of the tiny π0 served as `droid`, its statistics read from `stats`,
/// from openpi's pipeline around transformers' PI0; panics beyond 1e-4.
fn droid_parity(stats: &std::path::Path) -> f64 {
    let dir = pi0_droid();
    let tokenizer = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../spear-models/tests/fixtures/paligemma-tiny/tokenizer.json");
    let device = Default::default();
    let options = LoadOptions { tokenizer: Some(tokenizer), ..LoadOptions::default() };
    let mut policy = Policy::<Flex>::load(&dir, &options, &device).unwrap();
    let facts = facts(&policy, "pi0_droid", Some(NormStats::read(stats).unwrap()));
    Preset::Droid.check(&facts).unwrap();
    let want = expected(&dir);

    let images = std::fs::read(dir.join("images.bin")).unwrap();
    let (exterior, wrist) = (56 * 56 * 3, 3 * 56 * 56 * 4);
    let observations: Vec<_> = want["observations"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(b, fields)| {
            let at = b * (exterior + wrist);
            let message = droid_message(
                &images[at..at + exterior],
                &images[at + exterior..at + exterior + wrist],
                fields,
            );
            Preset::Droid.observation(&message, &facts).unwrap()
        })
        .collect();

    // What the model sees: openpi's tokenisation (cleaned prompt, the newline on its own) and state.
    let inputs = policy.inputs(&observations).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(want["prompt_ids"].clone()).unwrap();
    assert_eq!(inputs.prompts, ids, "openpi's PaligemmaTokenizer layout");
    let state: Vec<f64> = want["state"].as_array().unwrap().iter().flat_map(floats).collect();
    for (i, (got, want)) in inputs.state.iter().zip(&state).enumerate() {
        assert!((f64::from(*got) - want).abs() <= 1e-5 * want.abs().max(1.0), "state {i}: {got} vs {want}");
    }

    let noise: Vec<f32> = want["noise"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|chunk| chunk.as_array().unwrap().iter().flat_map(floats))
        .map(|v| v as f32)
        .collect();
    let noise = Tensor::<Flex, 3>::from_data(TensorData::new(noise, [observations.len(), 10, 32]), &device);
    let chunks = policy.act_from(&observations, noise).unwrap();
    let mut worst = 0f64;
    for (b, (chunk, observation)) in chunks.iter().zip(&observations).enumerate() {
        let actions = Preset::Droid.actions(chunk, &facts, &observation.state);
        assert_eq!((actions.dtype, actions.shape.as_slice()), (Dtype::F64, &[10usize, 8][..]));
        let reference: Vec<f64> = want["actions"][b].as_array().unwrap().iter().flat_map(floats).collect();
        for (i, (got, want)) in actions.to_f64().iter().zip(&reference).enumerate() {
            assert!((got - want).abs() <= 1e-4, "observation {b}, action value {i}: {got} vs {want}");
            worst = worst.max((got - want).abs());
        }
    }
    worst
}

#[test]
fn lerobot_statistics_read_as_openpi_s() {
    let dir = pi0_droid();
    let openpi = NormStats::read(&dir.join("norm_stats.json")).unwrap();
    assert_eq!(NormStats::read(&dir.join("lerobot_stats.json")).unwrap(), openpi);
    let normalizer = NormStats::read(&dir.join(LEROBOT_NORMALIZER)).unwrap();
    for (ours, theirs) in [(&normalizer.state, &openpi.state), (&normalizer.actions, &openpi.actions)] {
        for (a, b) in ours.mean.iter().chain(&ours.std).zip(theirs.mean.iter().chain(&theirs.std)) {
            assert_eq!(*a, f64::from(*b as f32), "lerobot stores float32");
        }
    }

    // A lerobot checkpoint folder: its normaliser is found beside the weights.
    let folder = std::env::temp_dir().join(format!("spear-serve-lerobot-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    assert_eq!(NormStats::find(&folder).unwrap(), None);
    std::fs::copy(dir.join(LEROBOT_NORMALIZER), folder.join(LEROBOT_NORMALIZER)).unwrap();
    assert_eq!(NormStats::find(&folder).unwrap(), Some(folder.join(LEROBOT_NORMALIZER)));

    // What is not lerobot's: named.
    let bad = folder.join("broken_normalizer.safetensors");
    std::fs::write(&bad, b"not safetensors").unwrap();
    assert!(NormStats::read(&bad).unwrap_err().contains("not a safetensors file"));
    let stats = folder.join("stats.json");
    std::fs::write(&stats, r#"{"observation.state": {"mean": [0], "std": [1]}}"#).unwrap();
    let err = NormStats::read(&stats).unwrap_err();
    assert!(err.contains("without `action`"), "{err}");
    std::fs::write(&stats, r#"{"state": {"mean": [0], "std": [1]}}"#).unwrap();
    let err = NormStats::read(&stats).unwrap_err();
    assert!(err.contains("neither openpi's norm_stats.json") && err.contains("stats.json"), "{err}");
    std::fs::remove_dir_all(&folder).unwrap();
}
