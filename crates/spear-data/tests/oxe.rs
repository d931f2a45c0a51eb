//! The Open X-Embodiment registry's standardisation against numpy/scipy: the five tfds-written fixtures of
//! `tools/reference/rlds_fixtures.py` against `tools/reference/oxe_reference.py`, and one schema-faithful synthetic
//! episode of every other registry entry (`fixtures/oxe/`, written and re-implemented by
//! `tools/reference/oxe_synthetic.py`): instruction, state, and every 5 Hz action chunk and padding mask of every
//! frame.

use std::path::{Path, PathBuf};

use serde_json::Value;
use spear_data::oxe::{Camera, STATE_DIM, registry, spec, standardize};
use spear_data::resample::{ACTION_DIM, ChunkConfig};
use spear_data::rlds::RldsDataset;
use spear_data::tfrecord::OnCorrupt;

mod common;

use common::{DATASETS, fixtures};

fn synthetic() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oxe")
}

/// Our f32 outputs against scipy's f64: rounding to f32 and the float32 storage of the inputs.
const TOLERANCE: f64 = 2e-6;

fn close(ours: f32, theirs: &Value) -> bool {
    let theirs = theirs.as_f64().unwrap();
    (f64::from(ours) - theirs).abs() <= TOLERANCE * (1.0 + theirs.abs())
}

/// What one dataset's comparison covered.
struct Agreement {
    steps: usize,
    frames: usize,
    real_actions: usize,
    worst: f64,
}

/// Standardises every episode of the dataset in `dir` (`NAME/VERSION`) with the registry entry `name` and compares
/// it with `standard` (`NAME.standard.json`): instruction, source steps, states, chunks and masks.
fn compare(name: &str, dir: &Path, standard: &Path) -> Agreement {
    let config = ChunkConfig::default();
    let want: Value = serde_json::from_str(&std::fs::read_to_string(standard).unwrap()).unwrap();
    let dataset = RldsDataset::open(dir).unwrap();
    let entry = spec(name).unwrap_or_else(|| panic!("{name} is not in the registry"));
    let wanted = want["episodes"].as_array().unwrap();
    let mut agreement = Agreement { steps: 0, frames: 0, real_actions: 0, worst: 0.0 };
    let mut episodes = 0;
    for (episode, want) in dataset.episodes("train", OnCorrupt::Fail).unwrap().zip(wanted) {
        let episode = episode.unwrap();
        agreement.steps += episode.len;
        let standard = standardize(&entry, episode).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(standard.instruction, want["instruction"].as_str().unwrap(), "{name}");
        let steps: Vec<usize> =
            want["steps"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(standard.steps, steps, "{name}");
        for (frame, want_state) in want["states"].as_array().unwrap().iter().enumerate() {
            let mut state = standard.state(frame);
            let want_state = want_state.as_array().unwrap();
            // At w ≈ 0 (a gripper pointing straight down, roll ≈ π) the half-space w ≥ 0 holds
            // q and ≈ −q: rounding picks one, both are right.
            if state[3].abs() < 1e-4 && !close(state[4], &want_state[4]) {
                state[3..7].iter_mut().for_each(|x| *x = -*x);
            }
            for (d, (ours, theirs)) in state.iter().zip(want_state).enumerate() {
                assert!(close(*ours, theirs), "{name} frame {frame} state[{d}]: {ours} vs {theirs}");
            }
            let chunk = standard.chunk(frame, &config);
            let want_chunk = &want["chunks"][frame];
            let want_mask: Vec<bool> =
                want["masks"][frame].as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect();
            assert_eq!(chunk.mask, want_mask, "{name} frame {frame}");
            agreement.real_actions += chunk.mask.iter().filter(|&&real| real).count();
            for m in 0..config.horizon {
                for d in 0..ACTION_DIM {
                    let (ours, theirs) = (chunk.actions[m * ACTION_DIM + d], &want_chunk[m][d]);
                    agreement.worst = agreement.worst.max((f64::from(ours) - theirs.as_f64().unwrap()).abs());
                    assert!(close(ours, theirs), "{name} frame {frame} action {m}[{d}]: {ours} vs {theirs}");
                }
            }
            agreement.frames += 1;
        }
        assert_eq!(standard.len(), want["states"].as_array().unwrap().len(), "{name}");
        assert_eq!(standard.state(0).len(), STATE_DIM);
        // Every frame has its external image; the wrist image exactly when the dataset has one.
        let external = standard.image(Camera::External, 0).unwrap().unwrap();
        assert!(external.width > 0);
        assert_eq!(standard.image(Camera::Wrist, 0).unwrap().is_some(), entry.wrist.is_some());
        episodes += 1;
    }
    assert_eq!(episodes, wanted.len(), "{name}: episodes");
    assert!(agreement.real_actions > 0, "{name}: no real 5 Hz action to compare");
    agreement
}

#[test]
fn fixtures_standardise_as_the_scipy_reference_does() {
    for (name, version) in DATASETS {
        let a = compare(
            name,
            &fixtures().join(name).join(version),
            &fixtures().join(format!("{name}.standard.json")),
        );
        println!("{name}: {} frames agree with scipy; largest action difference {:.1e}", a.frames, a.worst);
    }
}

/// The `NAME/VERSION` dataset folders under `root` (those with a `dataset_info.json`), by name.
fn dataset_dirs(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let versions: Vec<PathBuf> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("dataset_info.json").is_file())
            .collect();
        assert!(versions.len() <= 1, "{}: more than one version folder", path.display());
        if let Some(version) = versions.into_iter().next() {
            out.push((path.file_name().unwrap().to_str().unwrap().to_string(), version));
        }
    }
    out.sort();
    out
}

#[test]
fn synthetic_episodes_of_every_other_entry_standardise_as_the_scipy_reference_does() {
    let datasets = dataset_dirs(&synthetic());
    assert!(!datasets.is_empty(), "no dataset in fixtures/oxe/");
    for (name, dir) in datasets {
        let a = compare(&name, &dir, &synthetic().join(format!("{name}.standard.json")));
        let rate = spec(&name).unwrap().rate_hz;
        println!(
            "{name}: {} steps at {rate} Hz, {} frames, {} real 5 Hz actions agree with scipy; largest action \
             difference {:.1e}",
            a.steps, a.frames, a.real_actions, a.worst
        );
    }
}

#[test]
fn every_entry_of_the_registry_has_a_fixture() {
    let names = |root: &Path| dataset_dirs(root).into_iter().map(|(name, _)| name).collect::<Vec<_>>();
    let (rlds, oxe) = (names(&fixtures()), names(&synthetic()));
    // Every dataset of fixtures/rlds/ is one the first test runs (corrupt/ holds damaged copies, not datasets).
    assert_eq!(rlds, DATASETS.map(|(name, _)| name.to_string()));
    for e in registry().iter().filter(|e| e.excluded.is_none()) {
        let root = if rlds.iter().any(|n| n == e.name) {
            fixtures()
        } else if oxe.iter().any(|n| n == e.name) {
            synthetic()
        } else {
            panic!("{}: no fixture in fixtures/rlds/ or fixtures/oxe/", e.name)
        };
        assert!(root.join(format!("{}.standard.json", e.name)).is_file(), "{}: no scipy reference", e.name);
    }
}

#[test]
fn the_registry_covers_table_4() {
    let entries = registry();
    let mut names: Vec<_> = entries.iter().map(|e| e.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), entries.len(), "duplicate names");
    // Table 4's 25 rows: 24 datasets, roboset's two (kinesthetic 2.0, teleoperation 5.0) in one entry.
    assert_eq!(entries.len(), 24);
    let total: f64 = entries.iter().map(|e| e.weight).sum();
    assert!((total - 100.0).abs() < 1e-9, "Table 4's weights sum to 100, got {total}");
    for e in &entries {
        assert!(e.rate_hz > 0.0 && e.weight > 0.0, "{}", e.name);
    }
    assert_eq!(
        entries.iter().filter(|e| e.excluded.is_some()).map(|e| e.name).collect::<Vec<_>>(),
        ["robo_set"]
    );
}

#[test]
fn a_key_the_entry_names_but_the_dataset_lacks_is_an_error_naming_both() {
    // viola's episodes read as if they were bridge_dataset's.
    let dataset = RldsDataset::open(fixtures().join("viola/0.1.0")).unwrap();
    let episode = dataset.episodes("train", OnCorrupt::Fail).unwrap().next().unwrap().unwrap();
    let error = standardize(&spec("bridge_dataset").unwrap(), episode).unwrap_err().to_string();
    assert!(error.contains("viola-train.tfrecord-00000-of-00001"), "{error}");
    assert!(error.contains("observation/image_0") && error.contains("no such step field"), "{error}");
    let excluded = spec("robo_set").unwrap();
    let episode = dataset.episodes("train", OnCorrupt::Fail).unwrap().next().unwrap().unwrap();
    let error = standardize(&excluded, episode).unwrap_err().to_string();
    assert!(error.contains("excluded") && error.contains("forward kinematics"), "{error}");
}

#[test]
fn a_registered_entry_is_found_by_name_and_a_clashing_one_refused() {
    use spear_data::oxe::{register, spec_for_mixture};
    let mut entry = spec("bridge_dataset").unwrap();
    assert!(register(entry.clone()).is_ok(), "a Table 4 entry registered again is the same entry");
    entry.name = "spear_test_generated";
    entry.mixture_name = "spear_test_generated";
    entry.excluded = None;
    assert!(spec("spear_test_generated").is_none());
    register(entry.clone()).unwrap();
    register(entry.clone()).unwrap();
    assert_eq!(spec("spear_test_generated"), Some(entry.clone()));
    assert_eq!(spec_for_mixture("spear_test_generated"), Some(entry.clone()));
    let mut other = entry.clone();
    other.rate_hz += 1.0;
    let err = register(other).unwrap_err();
    assert!(err.contains("spear_test_generated") && err.contains("differs"), "{err}");
    let mut taken = entry;
    taken.name = "spear_test_other";
    taken.mixture_name = "bridge";
    let err = register(taken).unwrap_err();
    assert!(err.contains("bridge_dataset"), "{err}");
}
