//! The Open X-Embodiment registry's standardisation of the tfds-written fixtures against the
//! numpy/scipy re-implementation in `tools/reference/oxe_reference.py`: instruction, state, and every
//! 5 Hz action chunk and padding mask of every frame.

use std::path::PathBuf;

use serde_json::Value;
use spear_data::oxe::{Camera, STATE_DIM, registry, spec, standardize};
use spear_data::resample::{ACTION_DIM, ChunkConfig};
use spear_data::rlds::RldsDataset;
use spear_data::tfrecord::OnCorrupt;

const DATASETS: [(&str, &str); 5] = [
    ("bridge_dataset", "1.0.0"),
    ("droid", "1.0.1"),
    ("fractal20220817_data", "0.1.0"),
    ("language_table", "0.0.1"),
    ("viola", "0.1.0"),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rlds")
}

/// Our f32 outputs against scipy's f64: rounding to f32 and the float32 storage of the inputs.
const TOLERANCE: f64 = 2e-6;

fn close(ours: f32, theirs: &Value) -> bool {
    let theirs = theirs.as_f64().unwrap();
    (f64::from(ours) - theirs).abs() <= TOLERANCE * (1.0 + theirs.abs())
}

#[test]
fn fixtures_standardise_as_the_scipy_reference_does() {
    let config = ChunkConfig::default();
    for (name, version) in DATASETS {
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(format!("{name}.standard.json"))).unwrap(),
        )
        .unwrap();
        let dataset = RldsDataset::open(fixtures().join(name).join(version)).unwrap();
        let entry = spec(name).unwrap();
        let episodes = dataset.episodes("train", OnCorrupt::Fail).unwrap();
        let mut frames = 0;
        let mut worst = 0.0f64;
        for (episode, want) in episodes.zip(want["episodes"].as_array().unwrap()) {
            let standard = standardize(&entry, episode.unwrap()).unwrap();
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
                for m in 0..config.horizon {
                    for d in 0..ACTION_DIM {
                        let (ours, theirs) = (chunk.actions[m * ACTION_DIM + d], &want_chunk[m][d]);
                        worst = worst.max((f64::from(ours) - theirs.as_f64().unwrap()).abs());
                        assert!(
                            close(ours, theirs),
                            "{name} frame {frame} action {m}[{d}]: {ours} vs {theirs}"
                        );
                    }
                }
                frames += 1;
            }
            assert_eq!(standard.state(0).len(), STATE_DIM);
            // Every frame has its external image; the wrist image exactly when the dataset has one.
            let external = standard.image(Camera::External, 0).unwrap().unwrap();
            assert!(external.width > 0);
            assert_eq!(standard.image(Camera::Wrist, 0).unwrap().is_some(), entry.wrist.is_some());
        }
        println!("{name}: {frames} frames agree with scipy; largest action difference {worst:.1e}");
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
