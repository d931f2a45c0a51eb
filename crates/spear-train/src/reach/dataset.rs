//! The task as an RLDS dataset in tensorflow-datasets' layout: its schema (`features.json`), its
//! registry entry [`SPEC`] (what `spear_data::oxe::standardize` reads of that schema), the writer,
//! and the example observation an export ships.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::{Value, json};
use spear_data::example::{Example, Feature};
use spear_data::images::Image;
use spear_data::oxe::{DatasetSpec, LanguageSource, Orientation, STATE_DIM, linear, vector};
use spear_data::resample::ACTION_DIM;
use spear_data::rlds::RldsWriter;

use super::{Demonstration, HELD_OUT, ReachConfig, ReachError, ReachObservation, Scene};

/// The dataset's RLDS name (its registry entry: [`SPEC`]).
pub const DATASET_NAME: &str = "spear_reach_rotate";
/// The dataset's version.
pub const DATASET_VERSION: &str = "1.0.0";
/// The demonstrator's (and so the dataset's) control rate, Hz.
const RATE_HZ: f64 = 5.0;

/// The step fields the registry entry reads, as the writer stores them (under `steps/`).
const IMAGE: &str = "observation/image";
const WRIST_IMAGE: &str = "observation/wrist_image";
const STATE: &str = "observation/state";
const ACTION: &str = "action";
const INSTRUCTION: &str = "language_instruction";

/// The dataset's registry entry: 5 Hz episodes whose state holds the end-effector pose as position
/// and quaternion `(w, x, y, z)` followed by the gripper's closedness, and whose action holds the
/// gripper command at index 7.
pub const SPEC: DatasetSpec = DatasetSpec {
    name: DATASET_NAME,
    mixture_name: DATASET_NAME,
    weight: 1.0,
    rate_hz: RATE_HZ,
    external: IMAGE,
    wrist: Some(WRIST_IMAGE),
    language: LanguageSource::Text(INSTRUCTION),
    pose: vector(STATE, 0, Orientation::QuatWxyz(3)),
    gripper_state: linear(STATE, 7, 0.0, 1.0),
    gripper_command: linear(ACTION, 7, 0.0, 1.0),
    excluded: None,
};

/// Hands [`SPEC`] to spear-data's registry, so that loaders, `spear data` and mixtures find
/// `spear_reach_rotate` by name. Idempotent; [`write_dataset`] calls it, and so does any program
/// that reads the dataset by name without having written it (the `spear` binary at start-up).
pub fn register() {
    spear_data::oxe::register(SPEC).expect("no other registry entry is called spear_reach_rotate");
}

/// Episodes per TFRecord shard.
const EPISODES_PER_SHARD: usize = 100;
/// Episodes generated in parallel before being written in order.
const GENERATION_BATCH: usize = 64;

/// PNG bytes of an RGB image.
pub(super) fn png(image: &Image) -> Result<Vec<u8>, ReachError> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&image.pixels, image.width as u32, image.height as u32, image::ExtendedColorType::Rgb8)
        .map_err(|e| ReachError::Png(e.to_string()))?;
    Ok(out)
}

const TFDS: &str = "tensorflow_datasets.core.features";

/// A tfds `Tensor` (or `Scalar` when `dims` is empty) feature.
fn tensor_feature(description: &str, dtype: &str, dims: &[usize]) -> Value {
    let (class, shape) = if dims.is_empty() {
        ("scalar.Scalar", json!({}))
    } else {
        (
            "tensor_feature.Tensor",
            json!({ "dimensions": dims.iter().map(usize::to_string).collect::<Vec<_>>() }),
        )
    };
    json!({
        "description": description,
        "pythonClassName": format!("{TFDS}.{class}"),
        "tensor": { "dtype": dtype, "encoding": "none", "shape": shape },
    })
}

/// A tfds PNG `Image` feature of `[width, height]`.
fn image_feature(description: &str, [width, height]: [usize; 2]) -> Value {
    json!({
        "description": description,
        "image": {
            "dtype": "uint8",
            "encodingFormat": "png",
            "shape": { "dimensions": [height.to_string(), width.to_string(), "3"] },
        },
        "pythonClassName": format!("{TFDS}.image_feature.Image"),
    })
}

fn features_dict(features: Value) -> Value {
    json!({
        "featuresDict": { "features": features },
        "pythonClassName": format!("{TFDS}.features_dict.FeaturesDict"),
    })
}

/// `features.json` as tensorflow-datasets writes it for this dataset's features.
fn features(config: &ReachConfig) -> Value {
    let steps = features_dict(json!({
        "action": tensor_feature(
            "Commanded action: translation delta in the base frame (3, metres), rotation delta in the \
             end-effector frame as a unit quaternion (w, x, y, z), w >= 0 (4), gripper command (1 = close).",
            "float32",
            &[ACTION_DIM],
        ),
        "discount": tensor_feature("Discount, 1.", "float32", &[]),
        "is_first": tensor_feature("True on first step of the episode.", "bool", &[]),
        "is_last": tensor_feature("True on last step of the episode.", "bool", &[]),
        "is_terminal": tensor_feature(
            "True on last step of the episode: every episode ends closed on its goal.",
            "bool",
            &[],
        ),
        "language_instruction": {
            "description": "Language Instruction.",
            "pythonClassName": format!("{TFDS}.text_feature.Text"),
            "text": {},
        },
        "observation": features_dict(json!({
            "image": image_feature(
                "Main camera: top-down orthographic view of the workspace.",
                config.image_size,
            ),
            "state": tensor_feature(
                "End-effector position in the base frame (3, metres), orientation as a unit quaternion \
                 (w, x, y, z), w >= 0 (4), gripper closedness (1 = closed).",
                "float32",
                &[STATE_DIM],
            ),
            "wrist_image": image_feature(
                "Wrist camera: looking down from the end effector, turning with its yaw.",
                config.wrist_size,
            ),
        })),
        "reward": tensor_feature("1 on the last step (every demonstration succeeds).", "float32", &[]),
    }));
    features_dict(json!({
        "episode_metadata": features_dict(json!({
            "episode_id": tensor_feature(
                "Scene index (with the dataset's seed it regenerates the scene).",
                "int64",
                &[],
            ),
            "target_pose": tensor_feature(
                "Goal pose: position (3, metres) and quaternion (w, x, y, z).",
                "float32",
                &[7],
            ),
        })),
        "steps": {
            "pythonClassName": format!("{TFDS}.dataset_feature.Dataset"),
            "sequence": { "feature": steps, "length": "-1" },
        },
    }))
}

/// Scene `index` of `seed` demonstrated and encoded as one RLDS episode.
fn episode_example(config: &ReachConfig, seed: u64, index: u64) -> Result<Example, ReachError> {
    let scene = Scene::sample(config, seed, index)?;
    let demo = Demonstration::record(config, &scene);
    let n = demo.len();
    let mut images = Vec::with_capacity(n);
    let mut wrists = Vec::with_capacity(n);
    for pose in &demo.poses {
        images.push(png(&scene.render_main(config, pose))?);
        wrists.push(png(&scene.render_wrist(config, pose))?);
    }
    let flags = |f: &dyn Fn(usize) -> bool| Feature::Int64((0..n).map(|i| i64::from(f(i))).collect());
    let target = scene.target_pose();
    let (t, q) = (target.translation, target.rotation);
    let mut example = Example::new();
    let mut put = |key: &str, feature: Feature| example.insert(key.to_string(), feature);
    put("episode_metadata/episode_id", Feature::Int64(vec![index as i64]));
    put(
        "episode_metadata/target_pose",
        Feature::Float([t.x, t.y, t.z, q.w, q.i, q.j, q.k].map(|v| v as f32).to_vec()),
    );
    put(&format!("steps/{ACTION}"), Feature::Float((0..n).flat_map(|i| demo.action(i)).collect()));
    put("steps/discount", Feature::Float(vec![1.0; n]));
    put("steps/is_first", flags(&|i| i == 0));
    put("steps/is_last", flags(&|i| i + 1 == n));
    put("steps/is_terminal", flags(&|i| i + 1 == n));
    put(&format!("steps/{INSTRUCTION}"), Feature::Bytes(vec![scene.instruction.clone().into_bytes(); n]));
    put(&format!("steps/{IMAGE}"), Feature::Bytes(images));
    put(&format!("steps/{STATE}"), Feature::Float((0..n).flat_map(|i| demo.state(i)).collect()));
    put(&format!("steps/{WRIST_IMAGE}"), Feature::Bytes(wrists));
    put("steps/reward", Feature::Float((0..n).map(|i| if i + 1 == n { 1.0 } else { 0.0 }).collect()));
    Ok(example)
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ReachError + '_ {
    move |source| ReachError::Io { path: path.to_path_buf(), source }
}

/// Where [`write_dataset`] puts the dataset under `dir`: `dir/spear_reach_rotate/1.0.0`.
pub fn dataset_dir(dir: &Path) -> PathBuf {
    dir.join(DATASET_NAME).join(DATASET_VERSION)
}

/// Writes the dataset `spear_reach_rotate` 1.0.0 under `dir` (as `dir/spear_reach_rotate/1.0.0`,
/// replacing an earlier one there) and returns that folder: `train_episodes` scenes `0..train`
/// of `seed` in split `train` and the next `val_episodes` in `val` (no `val` split when 0).
/// Episodes are generated in parallel and written in order, so the bytes depend only on the
/// arguments.
pub fn write_dataset(
    dir: &Path,
    config: &ReachConfig,
    seed: u64,
    train_episodes: usize,
    val_episodes: usize,
) -> Result<PathBuf, ReachError> {
    config.validate()?;
    register();
    if train_episodes == 0 {
        return Err(ReachError::Argument("write_dataset: train_episodes must be at least 1".into()));
    }
    let done = dataset_dir(dir);
    let root = dir.join(DATASET_NAME);
    // Written beside the final folder and moved into place when complete, so an interrupted run
    // never leaves a dataset that looks whole.
    let partial = root.join(format!("{DATASET_VERSION}.partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io_error(&partial))?;
    }
    let description = format!(
        "spear's generated reach-and-rotate task (spear_train::reach), seed {seed}, config {}",
        serde_json::to_string(config).expect("a config serialises")
    );
    let mut writer = RldsWriter::create(
        &partial,
        DATASET_NAME,
        DATASET_VERSION,
        &description,
        &features(config),
        EPISODES_PER_SHARD,
    )?;
    let total = (train_episodes + val_episodes) as u64;
    for start in (0..total).step_by(GENERATION_BATCH) {
        let indices: Vec<u64> = (start..total.min(start + GENERATION_BATCH as u64)).collect();
        let episodes: Vec<Example> =
            indices.par_iter().map(|&i| episode_example(config, seed, i)).collect::<Result<_, _>>()?;
        for (&i, episode) in indices.iter().zip(&episodes) {
            writer.write_episode(if i < train_episodes as u64 { "train" } else { "val" }, episode)?;
        }
    }
    writer.finish()?;
    if done.exists() {
        std::fs::remove_dir_all(&done).map_err(io_error(&done))?;
    }
    std::fs::rename(&partial, &done).map_err(io_error(&done))?;
    Ok(done)
}

/// Writes the first held-out scene's start observation of `seed` into `dir` as `main.png`,
/// `wrist.png` and `observation.json` (`instruction`, `state` as stored — normalise it as the
/// policy was trained before passing it to `spear policy act --state` — and the goal), and
/// returns it.
pub fn write_example(dir: &Path, config: &ReachConfig, seed: u64) -> Result<ReachObservation, ReachError> {
    let scene = Scene::sample(config, seed, HELD_OUT)?;
    let observation = scene.observe(config, &scene.start, 0.0);
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    for (name, image) in [("main.png", &observation.main), ("wrist.png", &observation.wrist)] {
        let path = dir.join(name);
        std::fs::write(&path, png(image)?).map_err(io_error(&path))?;
    }
    let (t, q) = (observation.target.translation, observation.target.rotation);
    let json = json!({
        "instruction": observation.instruction,
        "state": observation.state,
        "target": { "position": [t.x, t.y, t.z], "quaternion_wxyz": [q.w, q.i, q.j, q.k] },
        "seed": seed,
        "scene_index": HELD_OUT,
    });
    let path = dir.join("observation.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("JSON serialises"))
        .map_err(io_error(&path))?;
    Ok(observation)
}
