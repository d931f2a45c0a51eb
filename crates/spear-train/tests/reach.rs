//! The generated reach-and-rotate task: scenes, cameras, the written RLDS dataset through the real
//! data path (reader, standardisation, 5 Hz chunks, loader), and the closed-loop evaluator.

use std::path::{Path, PathBuf};

use nalgebra::{UnitQuaternion, Vector3};
use spear_data::images::Image;
use spear_data::loader::{Loader, LoaderConfig, MixtureConfig, MixtureEntry};
use spear_data::oxe::{spec, standardize};
use spear_data::resample::ChunkConfig;
use spear_data::rlds::RldsDataset;
use spear_data::tfrecord::OnCorrupt;
use spear_train::reach::{
    Chunk, DATASET_NAME, DATASET_VERSION, Demonstration, HELD_OUT, ReachConfig, ReachError, ReachObservation,
    ReachReport, Scene, WRIST_FOV_M, evaluate, expert_policy, mean_action_policy, mean_chunk, write_dataset,
    write_example,
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spear-reach-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Every file under `dir`, relative path → bytes, sorted.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn yaw_of(q: &UnitQuaternion<f64>) -> f64 {
    let x = q * Vector3::x();
    x.y.atan2(x.x)
}

#[test]
fn scenes_are_seeded_valid_and_keep_the_rotation_unambiguous() {
    let config = ReachConfig { blocks: 2, ..ReachConfig::default() };
    let a = Scene::sample(&config, 7, 3).unwrap();
    assert_eq!(a, Scene::sample(&config, 7, 3).unwrap());
    assert_ne!(a, Scene::sample(&config, 7, 4).unwrap());
    assert_ne!(a, Scene::sample(&config, 8, 3).unwrap());
    for index in 0..200 {
        let scene = Scene::sample(&config, 1, index).unwrap();
        assert_eq!(scene.blocks.len(), 2);
        let mut colours: Vec<_> = scene.blocks.iter().map(|b| b.colour).collect();
        colours.sort_unstable();
        colours.dedup();
        assert_eq!(colours.len(), 2, "distinct colours");
        assert!(scene.instruction.contains(&format!(" {} block", scene.blocks[scene.target].colour)));
        for (i, a) in scene.blocks.iter().enumerate() {
            assert!(a.yaw.to_degrees().abs() <= 65.0);
            for b in &scene.blocks[i + 1..] {
                // Circumscribed circles (15 × 3 cm blocks) never touch.
                assert!((a.centre[0] - b.centre[0]).hypot(a.centre[1] - b.centre[1]) > 0.15f64.hypot(0.03));
            }
        }
        let start = scene.start;
        assert!(start.rotation.w >= 0.0);
        let tilt = (start.rotation * Vector3::z()).z.clamp(-1.0, 1.0).acos().to_degrees();
        assert!(tilt <= config.start_tilt_deg + 1e-9, "tilted {tilt}°");
        let target = scene.target_pose();
        let remaining = (yaw_of(&target.rotation) - yaw_of(&start.rotation)).to_degrees();
        assert!(remaining.abs() < 90.0, "remaining yaw {remaining}° is ambiguous for a bar");
        assert!(start.translation.z - target.translation.z >= 0.06);
        assert!((target.translation.z - 0.06).abs() < 1e-12, "2 cm above a 4 cm block");
    }
}

#[test]
fn the_written_dataset_is_deterministic_and_its_data_path_lossless() {
    let config = ReachConfig { blocks: 2, image_size: [64, 48], ..ReachConfig::default() };
    let (one, two) = (scratch("det-1"), scratch("det-2"));
    let started = std::time::Instant::now();
    let dir = write_dataset(&one, &config, 11, 6, 2).unwrap();
    eprintln!("8 episodes written in {:.2} s", started.elapsed().as_secs_f64());
    assert_eq!(dir, one.join(DATASET_NAME).join(DATASET_VERSION));
    write_dataset(&two, &config, 11, 6, 2).unwrap();
    let (a, b) = (files(&one), files(&two));
    assert!(a.len() >= 4, "{:?}", a.iter().map(|f| &f.0).collect::<Vec<_>>());
    assert!(a == b, "same arguments, same bytes");
    // Writing again replaces the dataset (no stale partial folder left behind).
    write_dataset(&two, &config, 12, 6, 2).unwrap();
    assert_eq!(std::fs::read_dir(two.join(DATASET_NAME)).unwrap().count(), 1);
    assert!(files(&two) != a, "another seed, other episodes");

    let dataset = RldsDataset::open(&dir).unwrap();
    assert_eq!((dataset.name.as_str(), dataset.version.as_str()), (DATASET_NAME, DATASET_VERSION));
    assert_eq!(dataset.split("train").unwrap().episodes(), 6);
    assert_eq!(dataset.split("val").unwrap().episodes(), 2);
    let spec = spec(DATASET_NAME).expect("a registry entry");
    let chunking = ChunkConfig::default();
    let mut checked = 0;
    for (split, first) in [("train", 0u64), ("val", 6)] {
        for (i, episode) in dataset.episodes(split, OnCorrupt::Fail).unwrap().enumerate() {
            let index = first + i as u64;
            let episode = episode.unwrap();
            let stored = episode.column("action").unwrap().clone();
            let standard = standardize(&spec, episode).unwrap();
            let scene = Scene::sample(&config, 11, index).unwrap();
            let demo = Demonstration::record(&config, &scene);
            let n = demo.len();
            assert_eq!(standard.len(), n);
            assert_eq!(standard.instruction, scene.instruction);
            // Most frames move; the last three close and hold on the goal.
            assert_eq!(&demo.commands[n - 3..], &[1.0; 3]);
            assert_eq!(&demo.gripper[n - 3..], &[0.0, 1.0, 1.0]);
            assert!(demo.commands[..n - 3].iter().all(|&c| c == 0.0));
            let target = scene.target_pose();
            assert!((demo.poses[n - 1].translation - target.translation).norm() < 1e-9);
            for frame in 0..n {
                let action = demo.action(frame);
                assert_eq!(stored.row_f64(frame).unwrap(), action.map(f64::from).to_vec());
                assert_eq!(standard.state(frame)[7], demo.state(frame)[7]);
                for (s, d) in standard.state(frame).iter().zip(demo.state(frame)) {
                    assert!((s - d).abs() <= 1e-7, "state of frame {frame}");
                }
                // The 5 Hz chunks are the demonstrator's own actions (padding repeats the last).
                let chunk = standard.chunk(frame, &chunking);
                for m in 0..chunking.horizon {
                    let want = demo.action((frame + m).min(n - 1));
                    let got = &chunk.actions[8 * m..8 * m + 8];
                    for k in 0..7 {
                        assert!(
                            (got[k] - want[k]).abs() <= 1e-5,
                            "frame {frame} action {m}: {got:?} vs {want:?}"
                        );
                    }
                    assert_eq!(got[7], want[7], "gripper command");
                    assert_eq!(chunk.mask[m], frame + m + 1 < n);
                }
                // PNG is lossless: the stored frames are the renders.
                let main = standard.image(spear_data::oxe::Camera::External, frame).unwrap().unwrap();
                let wrist = standard.image(spear_data::oxe::Camera::Wrist, frame).unwrap().unwrap();
                assert_eq!(main, scene.render_main(&config, &demo.poses[frame]));
                assert_eq!((main.width, main.height), (64, 48));
                assert_eq!(wrist, scene.render_wrist(&config, &demo.poses[frame]));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 8);
    let _ = std::fs::remove_dir_all(&one);
    let _ = std::fs::remove_dir_all(&two);
}

#[test]
fn the_loader_reads_the_dataset_at_the_configured_sizes() {
    let config = ReachConfig { image_size: [64, 48], wrist_size: [40, 40], ..ReachConfig::default() };
    let root = scratch("loader");
    write_dataset(&root, &config, 3, 5, 0).unwrap();
    let mixture = MixtureConfig {
        root: Some(root.clone()),
        split: "train".into(),
        datasets: vec![MixtureEntry { name: DATASET_NAME.into(), weight: 1.0, path: None }],
        loader: LoaderConfig {
            batch_size: 6,
            shuffle_buffer_mb: 4,
            workers: 1,
            external_size: config.image_size,
            wrist_size: config.wrist_size,
            ..LoaderConfig::default()
        },
        file: None,
    };
    let mut loader = Loader::open(&mixture).unwrap();
    assert_eq!(loader.datasets(), vec![(DATASET_NAME, 5)]);
    let batch = loader.next_batch().unwrap();
    assert_eq!(batch.size, 6);
    assert_eq!(batch.external.len(), 6 * 48 * 64 * 3);
    assert_eq!(batch.wrist.len(), 6 * 40 * 40 * 3);
    assert!(batch.wrist_present.iter().all(|&p| p));
    assert_eq!((batch.state.len(), batch.actions.len(), batch.mask.len()), (6 * 8, 6 * 5 * 8, 6 * 5));
    for (i, &(episode, frame)) in batch.source.iter().enumerate() {
        let scene = Scene::sample(&config, 3, episode).unwrap();
        assert_eq!(batch.instructions[i], scene.instruction);
        let demo = Demonstration::record(&config, &scene);
        // Already at the loader's size: the very pixels rendered, not resampled.
        let main = scene.render_main(&config, &demo.poses[frame as usize]);
        assert_eq!(&batch.external[i * main.pixels.len()..(i + 1) * main.pixels.len()], &main.pixels[..]);
        let wrist = scene.render_wrist(&config, &demo.poses[frame as usize]);
        assert_eq!(&batch.wrist[i * wrist.pixels.len()..(i + 1) * wrist.pixels.len()], &wrist.pixels[..]);
        assert!(batch.mask[i * 5], "every sample has a real first action");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// The identity action with gripper command `gripper`.
fn still(gripper: f32) -> [f32; 8] {
    [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, gripper]
}

/// The action rotating by `angle_deg` about the end-effector axis `axis`.
fn turn(axis: Vector3<f64>, angle_deg: f64) -> [f32; 8] {
    let q = UnitQuaternion::from_axis_angle(&nalgebra::Unit::new_normalize(axis), angle_deg.to_radians());
    [0.0, 0.0, 0.0, q.w as f32, q.i as f32, q.j as f32, q.k as f32, 0.0]
}

#[test]
fn the_expert_succeeds_and_standing_still_fails_with_its_initial_errors() {
    // Upright starts: the initial rotation errors are then the yaw differences, by hand.
    let config = ReachConfig { blocks: 2, start_tilt_deg: 0.0, ..ReachConfig::default() };
    let started = std::time::Instant::now();
    let expert = evaluate(&config, 5, 40, 6, expert_policy(&config, 5)).unwrap();
    eprintln!("40 expert rollouts in {:.2} s", started.elapsed().as_secs_f64());
    eprintln!("{}\n{}", ReachReport::TABLE_HEADER, expert.table_row("expert"));
    assert!(expert.success_rate >= 0.95, "{expert:?}");
    assert!(
        expert.outcomes.iter().all(|o| o.closed && o.position_error_m < 1e-4 && o.rotation_error_deg < 0.01)
    );
    assert!(expert.table_row("expert").starts_with("| expert | 40 | 100.0% | 100.0% | 100.0% |"));

    let mut calls = 0;
    let zero = evaluate(&config, 5, 40, 3, |obs: &[ReachObservation]| {
        calls += 1;
        vec![vec![still(0.0); 5]; obs.len()]
    })
    .unwrap();
    assert_eq!(calls, 3, "one batched call per round");
    assert_eq!((zero.success_rate, zero.reach_rate, zero.closed_rate), (0.0, 0.0, 0.0));
    for (i, o) in zero.outcomes.iter().enumerate() {
        assert_eq!(o.chunks, 3);
        assert!((o.position_error_m - o.initial_position_error_m).abs() < 1e-12);
        assert!((o.rotation_error_deg - o.initial_rotation_error_deg).abs() < 1e-9);
        // The initial errors computed by hand from the held-out scene.
        let scene = Scene::sample(&config, 5, HELD_OUT + i as u64).unwrap();
        let target = scene.target_pose();
        let distance = (scene.start.translation - target.translation).norm();
        let yaw = (yaw_of(&target.rotation) - yaw_of(&scene.start.rotation)).to_degrees().abs();
        assert!((o.initial_position_error_m - distance).abs() < 1e-12);
        assert!(
            (o.initial_rotation_error_deg - yaw).abs() < 1e-6,
            "{} vs {yaw}",
            o.initial_rotation_error_deg
        );
    }
    let mean = zero.outcomes.iter().map(|o| o.position_error_m).sum::<f64>() / 40.0;
    assert!((zero.mean_position_error_cm - 100.0 * mean).abs() < 1e-9);
}

#[test]
fn rotation_deltas_compose_in_the_end_effector_frame() {
    let config = ReachConfig { start_tilt_deg: 0.0, ..ReachConfig::default() };
    // From the observed state, turn by the yaw still to go plus 90° about z, then 90° about the
    // end effector's x, then 90° about its y, and close. In the end-effector frame the final
    // orientation is R_goal·Rz(90°)·Rx(90°)·Ry(90°), whose error Rz(90°)·Rx(90°)·Ry(90°) maps
    // x → −x, y → z, z → y: trace −1, a half turn. Composed in the base frame instead, the error
    // would be conjugate to Rz(90°)·Ry(90°)·Rx(90°): trace 1, a quarter turn.
    let policy = |obs: &[ReachObservation]| {
        obs.iter()
            .map(|o| {
                let s = o.state.map(f64::from);
                let q = UnitQuaternion::new_normalize(nalgebra::Quaternion::new(s[3], s[4], s[5], s[6]));
                let remaining = (yaw_of(&o.target.rotation) - yaw_of(&q)).to_degrees();
                vec![
                    turn(Vector3::z(), remaining + 90.0),
                    turn(Vector3::x(), 90.0),
                    turn(Vector3::y(), 90.0),
                    still(1.0),
                    turn(Vector3::x(), 45.0),
                ]
            })
            .collect::<Vec<Chunk>>()
    };
    let report = evaluate(&config, 9, 10, 4, policy).unwrap();
    for o in &report.outcomes {
        assert!(o.closed && o.chunks == 1, "the close ends the rollout before the last action");
        assert!((o.rotation_error_deg - 180.0).abs() < 1e-3, "{}", o.rotation_error_deg);
        assert!((o.position_error_m - o.initial_position_error_m).abs() < 1e-12);
    }
    // A yaw of +20° per action for 5 actions about the end effector's own z axis and nothing else:
    // the error is the angle between start ∘ (100° about z) and the goal.
    let report = evaluate(&config, 9, 10, 1, |obs: &[ReachObservation]| {
        vec![vec![turn(Vector3::z(), 20.0); 5]; obs.len()]
    })
    .unwrap();
    for (i, o) in report.outcomes.iter().enumerate() {
        let scene = Scene::sample(&config, 9, HELD_OUT + i as u64).unwrap();
        let turned =
            scene.start.rotation * UnitQuaternion::from_axis_angle(&Vector3::z_axis(), 100f64.to_radians());
        let want = turned.angle_to(&scene.target_pose().rotation).to_degrees();
        assert!((o.rotation_error_deg - want).abs() < 1e-3, "{} vs {want}", o.rotation_error_deg);
    }
}

#[test]
fn the_mean_chunk_baseline_runs_through_the_dataset() {
    let config = ReachConfig::default();
    let root = scratch("mean");
    let dir = write_dataset(&root, &config, 21, 8, 0).unwrap();
    let chunk = mean_chunk(&dir, "train", &ChunkConfig::default()).unwrap();
    assert_eq!(chunk.len(), 5);
    for action in &chunk {
        let norm: f32 = action[3..7].iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5 && action[3] > 0.0);
        assert!((0.0..0.5).contains(&action[7]), "most actions move with the gripper open");
    }
    // The start is above the goal: the mean motion goes down.
    assert!(chunk[0][2] < 0.0, "{chunk:?}");
    let report = evaluate(&config, 21, 30, 4, mean_action_policy(chunk)).unwrap();
    eprintln!("{}\n{}", ReachReport::TABLE_HEADER, report.table_row("mean action"));
    assert!(report.success_rate < 0.2, "{report:?}");
    let _ = std::fs::remove_dir_all(&root);
}

/// The intensity-weighted centroid of the pixels where red clearly dominates (the red block).
fn red_centroid(image: &Image) -> (f64, f64) {
    let (mut sum, mut su, mut sv) = (0.0, 0.0, 0.0);
    for (i, p) in image.pixels.chunks_exact(3).enumerate() {
        let weight = (f64::from(p[0]) - f64::from(p[1].max(p[2]))).max(0.0);
        if weight > 60.0 {
            let (u, v) = ((i % image.width) as f64 + 0.5, (i / image.width) as f64 + 0.5);
            sum += weight;
            su += weight * u;
            sv += weight * v;
        }
    }
    assert!(sum > 0.0, "the red block is in view");
    (su / sum, sv / sum)
}

#[test]
fn the_wrist_view_turns_with_the_end_effector() {
    let config = ReachConfig { blocks: 2, ..ReachConfig::default() };
    let (scene, red) = (0..)
        .map(|i| Scene::sample(&config, 2, i).unwrap())
        .find_map(|s| {
            let red = s.blocks.iter().position(|b| b.colour == "red")?;
            Some((s.clone(), red))
        })
        .unwrap();
    // Hover 6 cm from the red block so it is off centre in the wrist view.
    let centre = scene.blocks[red].centre;
    let position = Vector3::new(centre[0] - 0.04, centre[1] + 0.045, 0.15);
    let pose = |yaw_deg: f64| {
        spear_geometry::pose::Pose::new(
            position,
            UnitQuaternion::from_axis_angle(&Vector3::z_axis(), yaw_deg.to_radians()),
        )
    };
    let base = scene.render_wrist(&config, &pose(10.0));
    let n = base.width;
    // A quarter turn of the end effector turns the image a quarter turn clockwise, pixel for pixel.
    let turned = scene.render_wrist(&config, &pose(100.0));
    let mut differing = 0;
    for v in 0..n {
        for u in 0..n {
            let (a, b) = ((v * n + u) * 3, (u * n + (n - 1 - v)) * 3);
            if base.pixels[a..a + 3] != turned.pixels[b..b + 3] {
                differing += 1;
            }
        }
    }
    assert!(differing <= n * n / 200, "{differing} of {} pixels differ", n * n);
    // Any turn θ: the red block's centroid turns by −θ in the end effector's frame (image up = its
    // x axis, image right = its −y axis), within a pixel.
    let scale = n as f64 / WRIST_FOV_M;
    let to_ee =
        |(u, v): (f64, f64)| Vector3::new(-(v - n as f64 / 2.0) / scale, -(u - n as f64 / 2.0) / scale, 0.0);
    let before = to_ee(red_centroid(&base));
    // The block's true offset in the gripper frame at yaw 10°.
    let offset = UnitQuaternion::from_axis_angle(&Vector3::z_axis(), -10f64.to_radians())
        * Vector3::new(centre[0] - position.x, centre[1] - position.y, 0.0);
    assert!((before - offset).norm() * scale < 1.0, "{before} vs {offset}");
    for theta in [30.0, -45.0, 70.0] {
        let after = to_ee(red_centroid(&scene.render_wrist(&config, &pose(10.0 + theta))));
        let want = UnitQuaternion::from_axis_angle(&Vector3::z_axis(), -f64::to_radians(theta)) * before;
        assert!((after - want).norm() * scale < 1.0, "θ = {theta}: {after} vs {want}");
    }
    // The main camera shows the end effector's heading: turning it changes the image.
    assert_ne!(scene.render_main(&config, &pose(10.0)), scene.render_main(&config, &pose(40.0)));
}

#[test]
fn the_example_observation_is_written_for_policy_act() {
    let config = ReachConfig::default();
    let dir = scratch("example");
    let observation = write_example(&dir, &config, 4).unwrap();
    let main = spear_data::images::decode(&std::fs::read(dir.join("main.png")).unwrap()).unwrap();
    assert_eq!(main, observation.main);
    let wrist = spear_data::images::decode(&std::fs::read(dir.join("wrist.png")).unwrap()).unwrap();
    assert_eq!((wrist.width, wrist.height), (56, 56));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("observation.json")).unwrap()).unwrap();
    assert_eq!(json["instruction"], observation.instruction.as_str());
    let state: Vec<f32> = serde_json::from_value(json["state"].clone()).unwrap();
    assert_eq!(state, observation.state.to_vec());
    let scene = Scene::sample(&config, 4, HELD_OUT).unwrap();
    assert_eq!(observation, scene.observe(&config, &scene.start, 0.0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configs_and_policies_are_errors_naming_the_problem() {
    let bad = |config: ReachConfig, field: &str| {
        let error = config.validate().unwrap_err();
        assert!(matches!(&error, ReachError::Config { field: f, .. } if *f == field), "{error}");
        assert!(error.to_string().contains(&format!("`{field}`")), "{error}");
        // Every entry point refuses it, for that reason (an empty policy would fail later anyway).
        assert!(matches!(Scene::sample(&config, 0, 0), Err(ReachError::Config { .. })));
        let evaluated = evaluate(&config, 0, 1, 1, |_: &[ReachObservation]| Vec::new());
        assert!(matches!(evaluated, Err(ReachError::Config { .. })), "{:?}", evaluated.err());
    };
    let ok = ReachConfig::default();
    ok.validate().unwrap();
    bad(ReachConfig { blocks: 0, ..ok.clone() }, "blocks");
    bad(ReachConfig { blocks: 5, ..ok.clone() }, "blocks");
    let error = ReachConfig { blocks: 3, ..ok.clone() }.validate().unwrap_err().to_string();
    assert!(error.contains("do not fit") && error.contains("at most 2"), "{error}");
    ReachConfig { blocks: 3, workspace_max: [0.85, 0.15, 0.25], frames: 40, ..ok.clone() }
        .validate()
        .unwrap();
    bad(ReachConfig { max_step: f64::NAN, ..ok.clone() }, "max_step");
    bad(ReachConfig { max_turn_deg: 0.0, ..ok.clone() }, "max_turn_deg");
    bad(ReachConfig { image_size: [0, 56], ..ok.clone() }, "image_size");
    bad(ReachConfig { wrist_size: [56, 100_000], ..ok.clone() }, "wrist_size");
    bad(ReachConfig { workspace_max: [0.45, 0.15, 0.25], ..ok.clone() }, "workspace_max");
    bad(ReachConfig { workspace_min: [0.35, -0.15, 0.1], ..ok.clone() }, "workspace_min");
    bad(ReachConfig { frames: 10, ..ok.clone() }, "frames");
    let error = ReachConfig { max_step: 0.01, ..ok.clone() }.validate().unwrap_err().to_string();
    assert!(error.contains("`frames`") && error.contains("max_step 0.01"), "{error}");
    // TOML: defaults fill the gaps, unknown fields are named.
    let parsed: ReachConfig = toml::from_str("blocks = 3\nimage_size = [64, 48]").unwrap();
    assert_eq!(parsed, ReachConfig { blocks: 3, image_size: [64, 48], ..ok.clone() });
    let error = toml::from_str::<ReachConfig>("max_stepp = 0.1").unwrap_err().to_string();
    assert!(error.contains("max_stepp"), "{error}");
    let error = write_dataset(&scratch("none"), &ok, 0, 0, 1).unwrap_err().to_string();
    assert!(error.contains("train_episodes"), "{error}");

    // Policies that answer wrongly.
    let error = evaluate(&ok, 0, 3, 1, |_: &[ReachObservation]| vec![vec![still(0.0)]]).unwrap_err();
    assert!(error.to_string().contains("1 chunks for 3 observations"), "{error}");
    let error = evaluate(&ok, 0, 2, 1, |o: &[ReachObservation]| vec![Vec::new(); o.len()]).unwrap_err();
    assert!(error.to_string().contains("empty chunk"), "{error}");
    let mut nan = still(0.0);
    nan[1] = f32::NAN;
    let error = evaluate(&ok, 0, 2, 1, |o: &[ReachObservation]| vec![vec![nan]; o.len()]).unwrap_err();
    assert!(error.to_string().contains("value 1") && error.to_string().contains("NaN"), "{error}");
    let zero_quaternion = [0.0; 8];
    let error =
        evaluate(&ok, 0, 2, 1, |o: &[ReachObservation]| vec![vec![zero_quaternion]; o.len()]).unwrap_err();
    assert!(error.to_string().contains("no direction"), "{error}");
    let error = evaluate(&ok, 0, 0, 1, |o: &[ReachObservation]| vec![Vec::new(); o.len()]).unwrap_err();
    assert!(error.to_string().contains("scenes"), "{error}");
}

/// Frames of sizes the model does not take (64×48 and 60×48 main, 40×40 wrist, against the tiny
/// policy's 280×210 and 112×112) through the training loader and through the inference pipeline
/// (`spear_policy::Policy::inputs`, which `policy act`, the rollouts and the server use): the model
/// gets the same bytes, the same normalised states and the same prompt ids, cropped or padded.
#[test]
fn inference_feeds_the_model_exactly_what_training_fed_it() {
    use burn::backend::Flex;
    use spear_data::images::Fit;
    use spear_data::loader::{NormalizationConfig, NormalizerKind};
    use spear_data::oxe::Camera;
    use spear_models::SpearPolicyConfig;
    use spear_policy::{Frame, Policy, PolicySpec, RawObservation};

    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../spear-models/tests/fixtures/paligemma-tiny/tokenizer.json");
    let tokenizer = spear_data::tokenizer::PaliGemmaTokenizer::from_file(tokenizer).unwrap();
    let device = Default::default();
    let policy_config = SpearPolicyConfig::tiny();
    let ([h, w], [wh, ww]) = (policy_config.vlm.image_size, policy_config.vlm.wrist_image_size);
    for (main_size, fit) in [([64, 48], Fit::Crop), ([60, 48], Fit::Crop), ([60, 48], Fit::Pad)] {
        let config = ReachConfig { image_size: main_size, wrist_size: [40, 40], ..ReachConfig::default() };
        let root = scratch(&format!("pipeline-{}-{fit:?}", main_size[0]));
        let dir = write_dataset(&root, &config, 5, 3, 0).unwrap();
        let normalization = NormalizationConfig {
            state: NormalizerKind::MinMaxConst,
            state_bounds: Some([[-0.5, -0.5, 0.0], [0.5, 0.5, 0.6]]),
            ..NormalizationConfig::default()
        };
        let mixture = MixtureConfig {
            root: Some(root.clone()),
            split: "train".into(),
            datasets: vec![MixtureEntry { name: DATASET_NAME.into(), weight: 1.0, path: None }],
            loader: LoaderConfig {
                batch_size: 4,
                shuffle_buffer_mb: 4,
                workers: 1,
                external_size: [w, h],
                wrist_size: [ww, wh],
                fit,
                normalization: normalization.clone(),
                ..LoaderConfig::default()
            },
            file: None,
        };
        let batch = Loader::open(&mixture).unwrap().next_batch().unwrap();

        let model = policy_config.init::<Flex>(&device).unwrap();
        let mut policy_spec = PolicySpec::spear(2);
        policy_spec.cameras.iter_mut().for_each(|c| c.fit = fit);
        let normalizers = Some(normalization.build().unwrap());
        let mut policy = Policy::new(model, tokenizer.clone(), normalizers, policy_spec, &device).unwrap();
        // The raw observations, as the dataset holds them (a robot's frames and state).
        let dataset = RldsDataset::open(&dir).unwrap();
        let episodes: Vec<_> =
            dataset.episodes("train", OnCorrupt::Fail).unwrap().map(Result::unwrap).collect();
        let observations: Vec<RawObservation> = batch
            .source
            .iter()
            .map(|&(episode, frame)| {
                let standard =
                    standardize(&spec(DATASET_NAME).unwrap(), episodes[episode as usize].clone()).unwrap();
                let frame = frame as usize;
                let image = |camera| Frame::from(standard.image(camera, frame).unwrap().unwrap());
                assert_eq!(standard.image(Camera::External, frame).unwrap().unwrap().width, main_size[0]);
                RawObservation {
                    cameras: vec![Some(image(Camera::External)), Some(image(Camera::Wrist))],
                    state: standard.state(frame).to_vec(),
                    prompt: standard.instruction.clone(),
                }
            })
            .collect();
        let inputs = policy.inputs(&observations).unwrap();
        assert!(inputs.cameras[0] == batch.external, "main camera bytes, {main_size:?} {fit:?}");
        assert!(inputs.cameras[1] == batch.wrist, "wrist camera bytes, {fit:?}");
        assert_eq!(inputs.camera_present[1], batch.wrist_present);
        assert_eq!(inputs.state, batch.state, "normalised states");
        let want: Vec<Vec<u32>> =
            batch.instructions.iter().map(|t| tokenizer.encode_prefix(t).unwrap()).collect();
        assert_eq!(inputs.prompts, want);
        let _ = std::fs::remove_dir_all(&root);
    }
}
