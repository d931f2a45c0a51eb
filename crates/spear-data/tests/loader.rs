//! The mixture loader on the five tfds-written fixture datasets: batch contents, determinism,
//! weights, resuming, prefetching, the memory cap, and bad configurations.

use std::path::PathBuf;

use spear_data::loader::{Batch, Loader, LoaderError, MixtureConfig, Normalization, Shard};
use spear_data::oxe::{STATE_DIM, spec};
use spear_data::resample::ACTION_DIM;

mod common;

fn mixture_path() -> PathBuf {
    common::fixtures().join("mixture.toml")
}

fn mixture() -> MixtureConfig {
    MixtureConfig::from_file(mixture_path()).unwrap()
}

fn batches(loader: &mut Loader, n: usize) -> Vec<Batch> {
    (0..n).map(|_| loader.next_batch().unwrap()).collect()
}

/// What identifies a batch's samples and targets (images follow from them).
fn key(b: &Batch) -> (Vec<u32>, Vec<(u64, u32)>, Vec<f32>) {
    (b.dataset.clone(), b.source.clone(), b.actions.clone())
}

#[test]
fn batches_hold_resized_images_states_chunks_and_masks_of_the_right_shapes() {
    let config = mixture();
    let mut loader = Loader::open(&config).unwrap();
    assert_eq!(
        loader.datasets(),
        vec![
            ("bridge_dataset", 2),
            ("droid", 2),
            ("fractal20220817_data", 4),
            ("language_table", 2),
            ("viola", 2)
        ]
    );
    for batch in batches(&mut loader, 6) {
        let n = batch.size;
        assert_eq!(n, 4);
        assert_eq!(batch.external.len(), n * 210 * 280 * 3);
        assert_eq!(batch.wrist.len(), n * 112 * 112 * 3);
        assert_eq!(batch.state.len(), n * STATE_DIM);
        assert_eq!(batch.actions.len(), n * 5 * ACTION_DIM);
        assert_eq!(batch.mask.len(), n * 5);
        for i in 0..n {
            let name = loader.datasets()[batch.dataset[i] as usize].0;
            let has_wrist = spec(name).unwrap().wrist.is_some();
            assert_eq!(batch.wrist_present[i], has_wrist, "{name}");
            let wrist = &batch.wrist[i * 112 * 112 * 3..(i + 1) * 112 * 112 * 3];
            assert_eq!(wrist.iter().all(|&p| p == 0), !has_wrist, "{name}: black exactly when missing");
            assert!(!batch.instructions[i].is_empty(), "empty instructions are dropped");
            // Unit quaternions in state and in every real action.
            let q = &batch.state[i * STATE_DIM + 3..i * STATE_DIM + 7];
            assert!((q.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
            for m in 0..5 {
                let a = &batch.actions[(i * 5 + m) * ACTION_DIM..(i * 5 + m + 1) * ACTION_DIM];
                assert!(a[3] >= 0.0 && (a[3..7].iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
                assert!(a[7] == 0.0 || a[7] == 1.0, "binary gripper");
            }
        }
    }
}

#[test]
fn the_stream_is_deterministic_for_a_seed_and_changes_with_it() {
    let config = mixture();
    let a: Vec<_> = batches(&mut Loader::open(&config).unwrap(), 5).iter().map(key).collect();
    let b: Vec<_> = batches(&mut Loader::open(&config).unwrap(), 5).iter().map(key).collect();
    assert_eq!(a, b);
    let mut other = config.clone();
    other.loader.seed += 1;
    let c: Vec<_> = batches(&mut Loader::open(&other).unwrap(), 5).iter().map(key).collect();
    assert_ne!(a, c);
}

#[test]
fn a_resumed_loader_continues_the_same_stream() {
    let config = mixture();
    let all = batches(&mut Loader::open(&config).unwrap(), 6);
    let state = all[2].state_after.clone();
    // Through JSON, as a checkpoint would store it.
    let state = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
    let mut resumed = Loader::resume(&config, state).unwrap();
    let rest = batches(&mut resumed, 3);
    for (a, b) in all[3..].iter().zip(&rest) {
        assert_eq!(key(a), key(b));
        assert_eq!(a.external, b.external);
        assert_eq!(a.state_after, b.state_after);
    }
}

#[test]
fn sharded_loaders_decode_their_share_of_the_one_device_stream() {
    let config = mixture();
    let all = batches(&mut Loader::open(&config).unwrap(), 6);
    for index in 0..2 {
        let mut sharded = config.clone();
        sharded.loader.shard = Some(Shard { index, count: 2 });
        let mut loader = Loader::open(&sharded).unwrap();
        let mut mine = batches(&mut loader, 3);
        // Resumed mid-stream (from another rank's batch), the share goes on.
        let mut resumed = Loader::resume(&sharded, mine[2].state_after.clone()).unwrap();
        mine.extend(batches(&mut resumed, 3));
        for (number, (one, theirs)) in all.iter().zip(&mine).enumerate() {
            assert_eq!(theirs.decoded, number % 2 == index, "batch {number} of rank {index}");
            assert_eq!(
                (&one.dataset, &one.source, &one.state_after),
                (&theirs.dataset, &theirs.source, &theirs.state_after)
            );
            if theirs.decoded {
                assert_eq!(one, theirs, "batch {number}");
            } else {
                assert!(theirs.external.is_empty() && theirs.actions.is_empty());
            }
        }
    }
}

#[test]
fn prefetching_yields_the_same_batches() {
    let config = mixture();
    let direct = batches(&mut Loader::open(&config).unwrap(), 4);
    let prefetched: Vec<Batch> =
        Loader::open(&config).unwrap().prefetch().take(4).map(Result::unwrap).collect();
    assert_eq!(direct, prefetched);
}

#[test]
fn each_dataset_gets_its_weights_share_of_frames() {
    let mut config = mixture();
    config.loader.batch_size = 16;
    config.loader.shuffle_buffer_mb = 0;
    // Small images: this test is about which frames are drawn.
    (config.loader.external_size, config.loader.wrist_size) = ([8, 6], [4, 4]);
    let mut loader = Loader::open(&config).unwrap();
    batches(&mut loader, 40);
    let state = loader.state();
    let frames: Vec<f64> = state.cursors.iter().map(|c| c.frames as f64).collect();
    let total: f64 = frames.iter().sum();
    let weights = [2.0, 3.0, 1.0, 1.0, 1.0];
    // The scheduler keeps every dataset within one episode of its share.
    for (d, (&f, w)) in frames.iter().zip(weights).enumerate() {
        let share = w / 8.0 * total;
        assert!((f - share).abs() <= 12.0, "dataset {d}: {f} frames, share {share:.1} of {total}");
    }
    // bridge's second episode has no instruction: dropped and counted, every epoch.
    assert!(state.cursors[0].skipped > 0);
}

#[test]
fn the_shuffle_buffer_stays_within_its_cap() {
    let mut config = mixture();
    config.loader.shuffle_buffer_mb = 1;
    let mut loader = Loader::open(&config).unwrap();
    let mut distinct = std::collections::BTreeSet::new();
    for batch in batches(&mut loader, 10) {
        // The buffer holds whole episodes up to the cap: at most the cap plus one episode's frames.
        assert!(batch.state_after.buffer.len() < 200, "{}", batch.state_after.buffer.len());
        distinct.extend(batch.dataset.iter().zip(&batch.source).map(|(d, s)| (*d, s.0)));
    }
    assert!(distinct.len() >= 6, "samples come from many episodes: {distinct:?}");
}

#[test]
fn bad_mixtures_are_named() {
    let dir = std::env::temp_dir().join(format!("spear-mixture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let check = |text: &str, expect: &str| {
        let path = dir.join("m.toml");
        std::fs::write(&path, text).unwrap();
        let error = MixtureConfig::from_file(&path).unwrap_err();
        assert!(matches!(error, LoaderError::Config { .. }));
        let message = error.to_string();
        assert!(message.contains("m.toml") && message.contains(expect), "{message}");
    };
    check("root = \".\"\n[[dataset]]\nname = \"nope\"\nweight = 1.0\n", "`nope` is not in the registry");
    check("root = \".\"\n[[dataset]]\nname = \"roboset\"\nweight = 1.0\n", "forward kinematics");
    check("root = \".\"\n[[dataset]]\nname = \"droid\"\nweight = 0.0\n", "every weight is 0");
    check("[[dataset]]\nname = \"droid\"\nweight = 1.0\n", "no `path` and the mixture no `root`");
    check("root = \".\"\n[[dataset]]\nname = \"droid\"\nweight = -1.0\n", "weight -1");
    check("root = \".\"\n[[dataset]]\nname = \"droid\"\nwieght = 1.0\n", "unknown field `wieght`");
    // A root without the dataset.
    let path = dir.join("m.toml");
    std::fs::write(&path, "root = \".\"\n[[dataset]]\nname = \"droid\"\nweight = 1.0\n").unwrap();
    let message = Loader::open(&MixtureConfig::from_file(&path).unwrap()).err().unwrap().to_string();
    assert!(message.contains("m.toml") && message.contains("droid"), "{message}");
}

#[test]
fn mixture_statistics_match_the_scipy_reference_chunks() {
    use spear_data::loader::{NormalizationConfig, NormalizerKind, mixture_statistics};
    let config = mixture();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let stats = mixture_statistics(&config, &|done, all, _| {
        assert!(done <= all);
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(calls.into_inner(), 6, "one call per shard (fractal has two)");
    // The same numbers from the reference's chunks: action 0 of every frame where it is real.
    let (mut actions, mut states, mut angles) = (Vec::new(), Vec::new(), Vec::new());
    let fixtures = mixture_path().parent().unwrap().to_path_buf();
    for name in ["bridge_dataset", "droid", "fractal20220817_data", "language_table", "viola"] {
        let want: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures.join(format!("{name}.standard.json"))).unwrap(),
        )
        .unwrap();
        for episode in want["episodes"].as_array().unwrap() {
            for (frame, state) in episode["states"].as_array().unwrap().iter().enumerate() {
                states.push((0..3).map(|d| state[d].as_f64().unwrap()).collect::<Vec<_>>());
                if episode["masks"][frame][0].as_bool().unwrap() {
                    let action = &episode["chunks"][frame][0];
                    actions.push((0..3).map(|d| action[d].as_f64().unwrap()).collect::<Vec<_>>());
                    let [w, x, y, z] = [3, 4, 5, 6].map(|d| action[d].as_f64().unwrap());
                    angles.push(2.0 * (x * x + y * y + z * z).sqrt().atan2(w.abs()));
                }
            }
        }
    }
    for (got, rows) in [(&stats.action_translation, &actions), (&stats.state_position, &states)] {
        assert_eq!(got.count, rows.len() as u64);
        for d in 0..3 {
            let column: Vec<f64> = rows.iter().map(|r| r[d]).collect();
            let n = column.len() as f64;
            let mean = column.iter().sum::<f64>() / n;
            let std = (column.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            let (min, max) = column.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            // Our values are f32 states and actions; the reference's are f64.
            let tol = 1e-6 * (1.0 + max.abs().max(min.abs()));
            assert!((got.mean[d] - mean).abs() < tol && (got.std[d] - std).abs() < tol, "dim {d}");
            assert!((got.min[d] - min).abs() < tol && (got.max[d] - max).abs() < tol, "dim {d}");
            assert!(got.q01[d] >= min - tol && got.q99[d] <= max + tol && got.q01[d] <= got.q99[d]);
        }
    }
    // The rotation angles of the same actions (the rotation normaliser's statistics).
    let got = stats.action_rotation_angle.as_ref().unwrap();
    assert_eq!(got.count, angles.len() as u64);
    let mean = angles.iter().sum::<f64>() / angles.len() as f64;
    let max = angles.iter().cloned().fold(0.0, f64::max);
    assert!((got.mean[0] - mean).abs() < 1e-5 && (got.max[0] - max).abs() < 1e-5, "{got:?}");
    let frames: u64 = stats.datasets.iter().map(|d| d.frames).sum();
    assert_eq!(frames as usize, states.len());
    // Quantile normalisation from the saved file maps q99 to 1.
    let file = std::env::temp_dir().join(format!("spear-stats-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_string(&stats).unwrap()).unwrap();
    let config = NormalizationConfig {
        stats: Some(file.clone()),
        actions: NormalizerKind::Quantile,
        ..Default::default()
    };
    let normalization = config.build().unwrap();
    assert!(normalization.state_position.is_none());
    let mut v = stats.action_translation.q99.clone();
    normalization.action_translation.unwrap().normalize(&mut v).unwrap();
    assert!(v.iter().all(|x| (x - 1.0).abs() < 1e-9), "{v:?}");

    // The loader applies it: every real action's translation within the normalised range seen.
    let mut mixture = mixture();
    mixture.loader.normalization = config;
    let batch = Loader::open(&mixture).unwrap().next_batch().unwrap();
    let raw = Loader::open(&self::mixture()).unwrap().next_batch().unwrap();
    assert_eq!(batch.source, raw.source);
    let n = Normalization {
        action_translation: Some(spear_data::stats::Normalizer::quantile(&stats.action_translation)),
        state_position: None,
        action_rotation: None,
    };
    for (a, r) in batch.actions.chunks(ACTION_DIM).zip(raw.actions.chunks(ACTION_DIM)) {
        let mut expect: Vec<f64> = r[..3].iter().map(|&x| f64::from(x)).collect();
        n.action_translation.as_ref().unwrap().normalize(&mut expect).unwrap();
        for d in 0..3 {
            assert!((f64::from(a[d]) - expect[d]).abs() < 1e-5, "{a:?} vs {expect:?}");
        }
        assert_eq!(a[3..], r[3..], "quaternions and gripper untouched");
    }
    assert_eq!(batch.state, raw.state, "state left alone");
    // A kind that needs bounds or statistics says so.
    let bad = NormalizationConfig { actions: NormalizerKind::MinMaxConst, ..Default::default() };
    assert!(bad.build().unwrap_err().contains("action_bounds"));
    let bad = NormalizationConfig { state: NormalizerKind::Quantile, ..Default::default() };
    assert!(bad.build().unwrap_err().contains("stats"));

    // Rotations angle-scaled: the 99th-percentile angle becomes 90°, each delta's angle grows by
    // the same factor about the same axis, and undoing it gives the delta back.
    use spear_data::loader::RotationNormalizerKind;
    let rotations = NormalizationConfig {
        stats: Some(file.clone()),
        rotations: RotationNormalizerKind::AngleQuantile,
        rotation_angle_deg: Some(90.0),
        ..Default::default()
    };
    let normalization = rotations.build().unwrap();
    let factor = normalization.action_rotation.unwrap().factor;
    assert!(
        (factor * stats.action_rotation_angle.as_ref().unwrap().q99[0] - 90f64.to_radians()).abs() < 1e-12
    );
    let mut mixture = self::mixture();
    mixture.loader.normalization = rotations;
    let batch = Loader::open(&mixture).unwrap().next_batch().unwrap();
    let angle = |a: &[f32]| spear_data::stats::rotation_angle([a[3], a[4], a[5], a[6]]);
    for (a, r) in batch.actions.chunks(ACTION_DIM).zip(raw.actions.chunks(ACTION_DIM)) {
        let want = (angle(r) * factor).min(std::f64::consts::PI);
        assert!((angle(a) - want).abs() < 1e-4, "{} vs {want}", angle(a));
        let axis = |q: &[f32]| {
            let v = [q[4], q[5], q[6]];
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
            v.map(|x| x / n)
        };
        if angle(r) > 1e-3 {
            let (p, q) = (axis(a), axis(r));
            assert!((p[0] * q[0] + p[1] * q[1] + p[2] * q[2] - 1.0).abs() < 1e-4, "same axis");
        }
        assert_eq!(a[..3], r[..3], "translation untouched");
        let mut back = a.to_vec();
        normalization.denormalize_action(&mut back);
        if angle(r) * factor < std::f64::consts::PI - 1e-3 {
            for d in 3..7 {
                assert!((back[d] - r[d]).abs() < 1e-4, "{back:?} vs {r:?}");
            }
        }
    }
    // The exported file reads back the same; a damaged one is refused, naming it.
    let exported = file.with_file_name(Normalization::FILE_NAME);
    normalization.write_file(&exported).unwrap();
    assert_eq!(Normalization::read_file(&exported).unwrap(), normalization);
    std::fs::write(&exported, "{\"action_translation\": 3}").unwrap();
    let error = Normalization::read_file(&exported).unwrap_err().to_string();
    assert!(
        error.contains(Normalization::FILE_NAME) && error.contains("not a normalisation file"),
        "{error}"
    );
    let _ = std::fs::remove_file(&exported);
    // Statistics files from before rotation statistics are refused with the remedy.
    let mut old: serde_json::Value = serde_json::to_value(&stats).unwrap();
    old.as_object_mut().unwrap().remove("action_rotation_angle");
    std::fs::write(&file, old.to_string()).unwrap();
    let refused = NormalizationConfig {
        stats: Some(file.clone()),
        rotations: RotationNormalizerKind::AngleQuantile,
        ..Default::default()
    };
    assert!(refused.build().unwrap_err().contains("run it again"));
    let _ = std::fs::remove_file(&file);
}

#[test]
fn the_holdout_splits_each_dataset_by_episode_once_and_for_all() {
    use spear_data::loader::Holdout;
    // Across many indices the held-out share is the fraction, and the choice is stable.
    let h = Holdout { fraction: 0.2, held_out: true };
    let held = (0..10_000u64).filter(|&e| h.is_held_out("bridge_dataset", e)).count();
    assert!((1800..2200).contains(&held), "{held}");
    assert_ne!(
        (0..64u64).map(|e| h.is_held_out("bridge_dataset", e)).collect::<Vec<_>>(),
        (0..64u64).map(|e| h.is_held_out("droid", e)).collect::<Vec<_>>(),
        "each dataset its own split"
    );
    // The training and validation loaders read disjoint episodes that together are all of them.
    let mut train = mixture();
    train.loader.holdout = Holdout { fraction: 0.5, held_out: false };
    let mut held = train.clone();
    held.loader.holdout.held_out = true;
    let (a, b) = (Loader::open(&train).unwrap(), Loader::open(&held).unwrap());
    let all = Loader::open(&mixture()).unwrap();
    for ((name, total), ((_, x), (_, y))) in all.datasets().iter().zip(a.datasets().iter().zip(b.datasets()))
    {
        assert_eq!(x + y, *total, "{name}");
    }
    let mut a = a;
    let seen: std::collections::HashSet<(u32, u64)> = (0..8)
        .flat_map(|_| {
            let batch = a.next_batch().unwrap();
            batch.dataset.iter().zip(&batch.source).map(|(&d, &(e, _))| (d, e)).collect::<Vec<_>>()
        })
        .collect();
    let names = all.datasets();
    for (d, e) in seen {
        assert!(!Holdout { fraction: 0.5, held_out: true }.is_held_out(names[d as usize].0, e));
    }
    let mut bad = mixture();
    bad.loader.holdout.fraction = 1.5;
    assert!(Loader::open(&bad).err().unwrap().to_string().contains("holdout.fraction"));
}

#[test]
fn the_shipped_oxe_mixture_is_table_4() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/data/oxe_mixture.toml");
    let config = MixtureConfig::from_file(&path).unwrap();
    // Table 4's 24 datasets but roboset (excluded until forward kinematics exist): weights 100 − 7.
    assert_eq!(config.datasets.len(), 23);
    let total: f64 = config.datasets.iter().map(|d| d.weight).sum();
    assert!((total - 93.0).abs() < 1e-9, "{total}");
    assert_eq!((config.loader.external_size, config.loader.wrist_size), ([280, 210], [112, 112]));
    assert_eq!((config.loader.horizon, config.loader.rate_hz), (5, 5.0));
}

#[test]
fn datasets_without_a_usable_episode_are_dropped_and_the_rest_serve() {
    // One-second actions: only fractal's episodes (3 Hz, up to 1.33 s) are long enough for a real
    // first action; every other dataset yields nothing and must not stall the loader.
    let mut config = mixture();
    config.loader.rate_hz = 1.0;
    (config.loader.external_size, config.loader.wrist_size) = ([8, 6], [4, 4]);
    let mut loader = Loader::open(&config).unwrap();
    for batch in batches(&mut loader, 3) {
        assert!(batch.dataset.iter().all(|&d| d == 2), "{:?}", batch.dataset);
    }
    let cursors = loader.state().cursors;
    assert!(cursors[1].skipped > 0 && cursors[1].usable == 0);
}

#[test]
fn a_state_from_another_mixture_is_refused() {
    let config = mixture();
    let state = Loader::open(&config).unwrap().next_batch().unwrap().state_after;
    let mut other = config.clone();
    other.datasets.pop();
    let error = Loader::resume(&other, state.clone()).err().unwrap().to_string();
    assert!(error.contains("taken on datasets"), "{error}");
    let mut broken = state;
    broken.buffer[0].frame = 10_000;
    let error = Loader::resume(&config, broken).err().unwrap().to_string();
    assert!(error.contains("frame 10000"), "{error}");
}
