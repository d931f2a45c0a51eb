//! The RLDS reader against datasets that tensorflow-datasets 4.9.10 wrote with the published
//! schemas of bridge_dataset, droid, fractal20220817_data, language_table and viola, and what tfds
//! itself returned for them (`tools/reference/rlds_fixtures.py`): every field of every step and
//! episode, every image's bytes and pixels; then damaged copies.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use spear_data::rlds::{Column, Episode, RldsDataset, RldsError, Values};
use spear_data::schema::Leaf;
use spear_data::tfrecord::{OnCorrupt, TfRecordError};

mod common;

use common::{DATASETS, fixtures};

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Largest per-channel difference between two equally sized pixel buffers, and the mean one.
fn pixel_error(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0);
    let mean = a.iter().zip(b).map(|(x, y)| f64::from(x.abs_diff(*y))).sum::<f64>() / a.len().max(1) as f64;
    (max, mean)
}

/// tfds decodes JPEG with libjpeg's fast integer IDCT (TensorFlow's default `dct_method`); ours,
/// like libjpeg's own default, uses the accurate one. Against an accurate decode the two differ by
/// rounding; against tfds's fast one by up to ~10 levels at sharp edges, ~1 on average. PNG is exact.
/// Rounding bound: each integer IDCT is within 1 of the exact one (IEEE 1180), so two differ by up to
/// 2 in a Cb sample, which blue amplifies ×1.772 (plus 1 from Y): 4 levels, as droid's first
/// exterior frame reaches at one value of 172,800 (8 more at 3).
const ACCURATE_MAX: u8 = 4;
const ACCURATE_MEAN: f64 = 0.1;
const FAST_MAX: u8 = 16;
const FAST_MEAN: f64 = 1.5;

/// Compares decoded pixels with a fixture summary (`prefix` selects tfds's decode or the accurate
/// one): exact hash, or sampled pixels within `max` and per-channel means within `mean`.
fn check_pixels(
    image: &spear_data::images::Image,
    want: &Value,
    prefix: &str,
    max: u8,
    mean: f64,
    what: &str,
) -> u8 {
    if sha256(&image.pixels) == want[format!("{prefix}decoded_sha256")].as_str().unwrap() {
        return 0;
    }
    assert_ne!(want["encoded_format"], "png", "{what}: PNG pixels differ");
    let mut worst = 0u8;
    for s in want[format!("{prefix}samples")].as_array().unwrap() {
        let (y, x) = (s[0].as_u64().unwrap() as usize, s[1].as_u64().unwrap() as usize);
        for c in 0..3 {
            let ours = image.pixels[(y * image.width + x) * 3 + c];
            worst = worst.max(ours.abs_diff(s[2][c].as_u64().unwrap() as u8));
        }
    }
    assert!(worst <= max, "{what}: a sampled pixel differs by {worst} from the {prefix}decode");
    let pixels = (image.width * image.height) as f64;
    for c in 0..3 {
        let ours: u64 = image.pixels.iter().skip(c).step_by(3).map(|&v| u64::from(v)).sum();
        let theirs = want[format!("{prefix}channel_sums")][c].as_u64().unwrap();
        let error = (ours as f64 - theirs as f64).abs() / pixels;
        assert!(error <= mean, "{what}: channel {c}'s mean differs by {error} from the {prefix}decode");
    }
    worst
}

/// Checks one row of a column against the fixture's description of tfds's value.
/// Returns the worst sampled pixel difference from an accurate decode (0 for non-images).
fn check_value(episode: &Episode, column: &Column, row: usize, want: &Value, what: &str) -> u8 {
    let dtype = want["dtype"].as_str().unwrap();
    match (&column.leaf, dtype) {
        (Leaf::Image { .. }, "image") => {
            let bytes = column.bytes(row).unwrap();
            assert_eq!(bytes.len() as u64, want["encoded_len"].as_u64().unwrap(), "{what}");
            assert_eq!(sha256(bytes), want["encoded_sha256"].as_str().unwrap(), "{what}: encoded bytes");
            let path = what.split(" step ").next().unwrap();
            let image = episode.image(path, row).unwrap();
            let shape: Vec<usize> =
                want["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(vec![image.height, image.width, image.channels], shape, "{what}");
            let worst = check_pixels(&image, want, "accurate_", ACCURATE_MAX, ACCURATE_MEAN, what);
            check_pixels(&image, want, "", FAST_MAX, FAST_MEAN, what);
            worst
        }
        (_, "string") => {
            assert_eq!(hex(column.bytes(row).unwrap()), want["hex"].as_str().unwrap(), "{what}");
            0
        }
        _ => {
            let shape: Vec<usize> =
                want["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(column.shape, shape, "{what}: shape");
            let n = column.row_len();
            let values = want["values"].as_array().unwrap();
            assert_eq!(values.len(), n, "{what}");
            let range = row * n..(row + 1) * n;
            match (&column.values, dtype) {
                (Values::F32(v), "float32") => {
                    for (ours, theirs) in v[range].iter().zip(values) {
                        assert_eq!(f64::from(*ours), theirs.as_f64().unwrap(), "{what}");
                    }
                }
                (Values::F64(v), "float64") => {
                    for (ours, theirs) in v[range].iter().zip(values) {
                        assert_eq!(*ours, theirs.as_f64().unwrap(), "{what}");
                    }
                }
                (Values::Int(v), "int8" | "int16" | "int32" | "int64" | "uint8" | "uint16" | "uint32") => {
                    for (ours, theirs) in v[range].iter().zip(values) {
                        assert_eq!(*ours, theirs.as_i64().unwrap(), "{what}");
                    }
                }
                (Values::Bool(v), "bool") => {
                    for (ours, theirs) in v[range].iter().zip(values) {
                        assert_eq!(*ours, theirs.as_bool().unwrap(), "{what}");
                    }
                }
                (values, dtype) => panic!("{what}: tfds gives {dtype}, we decoded {values:?}"),
            }
            0
        }
    }
}

#[test]
fn every_field_of_every_step_matches_what_tfds_returns() {
    for (name, version) in DATASETS {
        let want = read_json(&fixtures().join(format!("{name}.expected.json")));
        let dataset = RldsDataset::open(fixtures().join(name).join(version)).unwrap();
        assert_eq!((dataset.name.as_str(), dataset.version.as_str()), (name, version));
        let split = dataset.split("train").unwrap();
        assert_eq!(split.episodes(), want["splits"]["train"].as_u64().unwrap(), "{name}");
        let shards: Vec<_> =
            split.shards.iter().map(|s| s.path.file_name().unwrap().to_str().unwrap()).collect();
        let want_shards: Vec<_> =
            want["shards"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(shards, want_shards, "{name}");

        let episodes: Vec<Episode> =
            dataset.episodes("train", OnCorrupt::Fail).unwrap().collect::<Result<_, _>>().unwrap();
        let want_episodes = want["episodes"].as_array().unwrap();
        assert_eq!(episodes.len(), want_episodes.len(), "{name}");
        let mut worst = 0u8;
        for (episode, want) in episodes.iter().zip(want_episodes) {
            let record = &want["record"];
            assert_eq!(episode.source.file.file_name().unwrap(), record["shard"].as_str().unwrap());
            assert_eq!(episode.source.record, record["index_in_shard"].as_u64().unwrap());
            assert_eq!(episode.source.offset, record["offset"].as_u64().unwrap());

            let metadata = want["episode_metadata"].as_object().unwrap();
            assert_eq!(
                episode.metadata.keys().collect::<Vec<_>>(),
                metadata.keys().collect::<Vec<_>>(),
                "{name}"
            );
            for (key, value) in metadata {
                check_value(episode, &episode.metadata[key], 0, value, &format!("{name} {key}"));
            }

            let steps = want["steps"].as_array().unwrap();
            assert_eq!(episode.len, steps.len(), "{name}");
            for (i, step) in steps.iter().enumerate() {
                let step = step.as_object().unwrap();
                assert_eq!(
                    episode.steps.keys().collect::<Vec<_>>(),
                    step.keys().collect::<Vec<_>>(),
                    "{name}"
                );
                for (key, value) in step {
                    let max = check_value(
                        episode,
                        &episode.steps[key],
                        i,
                        value,
                        &format!("{key} step {i} of {name}"),
                    );
                    worst = worst.max(max);
                }
            }
        }
        println!(
            "{name}: {} episodes match; worst sampled pixel difference from an accurate decode {worst}",
            episodes.len()
        );
    }
}

/// The first frame of every camera, pixel by pixel against libjpeg's accurate decode.
#[test]
fn first_frames_match_an_accurate_decode_pixel_by_pixel() {
    for (name, version) in DATASETS {
        let want = read_json(&fixtures().join(format!("{name}.expected.json")));
        let dataset = RldsDataset::open(fixtures().join(name).join(version)).unwrap();
        let episode = dataset.episodes("train", OnCorrupt::Fail).unwrap().next().unwrap().unwrap();
        for camera in want["cameras"].as_array().unwrap() {
            let camera = camera.as_str().unwrap();
            let png =
                std::fs::read(fixtures().join(format!("{name}.{}.png", camera.replace('/', ".")))).unwrap();
            let reference = spear_data::images::decode(&png).unwrap();
            let ours = episode.image(camera, 0).unwrap();
            assert_eq!(
                (ours.width, ours.height, ours.channels),
                (reference.width, reference.height, reference.channels)
            );
            let (max, mean) = pixel_error(&ours.pixels, &reference.pixels);
            println!("{name} {camera}: max pixel difference {max}, mean {mean:.4}");
            assert!(max <= ACCURATE_MAX && mean <= ACCURATE_MEAN, "{name} {camera}: max {max}, mean {mean}");
        }
    }
}

#[test]
fn the_schema_is_typed_from_features_json() {
    let droid = RldsDataset::open(fixtures().join("droid/1.0.1")).unwrap();
    let schema = &droid.schema;
    assert_eq!(schema.steps_key.as_deref(), Some("steps"));
    let field = schema.field("observation/cartesian_position").unwrap();
    assert!(field.per_step);
    assert_eq!(field.example_key, "steps/observation/cartesian_position");
    assert_eq!(field.leaf.describe(), "float64[6]");
    assert_eq!(
        schema.field("observation/wrist_image_left").unwrap().leaf.describe(),
        "image[180, 320, 3] jpeg"
    );
    assert_eq!(schema.field("language_instruction").unwrap().leaf, Leaf::Text);
    let meta = schema.field("episode_metadata/file_path").unwrap();
    assert!(!meta.per_step);
}

fn corrupt() -> (PathBuf, Value) {
    let dir = fixtures().join("corrupt");
    let info = read_json(&dir.join("corrupt.json"));
    (dir, info)
}

#[test]
fn a_bad_checksum_fails_naming_file_record_and_offset_or_is_skipped_and_counted() {
    let (dir, info) = corrupt();
    let bad = &info["bad_crc"];
    let dataset = RldsDataset::open(dir.join(bad["dir"].as_str().unwrap())).unwrap();
    let results: Vec<_> = dataset.episodes("train", OnCorrupt::Fail).unwrap().collect();
    assert!(results[0].is_ok());
    let error = results.last().unwrap().as_ref().unwrap_err();
    match error {
        RldsError::Record(TfRecordError::Corrupt { path, record, offset, problem }) => {
            assert!(path.ends_with(bad["shard"].as_str().unwrap()));
            assert_eq!(*record, bad["record_index"].as_u64().unwrap());
            assert_eq!(*offset, bad["record_offset"].as_u64().unwrap());
            assert!(problem.contains("data checksum"), "{problem}");
        }
        other => panic!("{other}"),
    }
    let message = error.to_string();
    let at = format!("record {} at byte {}", bad["record_index"], bad["record_offset"]);
    assert!(message.contains(bad["shard"].as_str().unwrap()) && message.contains(&at), "{message}");

    let split = dataset.split("train").unwrap();
    let mut episodes = dataset.shard_episodes(&split.shards[0], OnCorrupt::Skip).unwrap();
    let good: Vec<_> = episodes.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(good.len(), 1);
    assert_eq!(episodes.skipped().len(), 1);
    assert!(episodes.skipped()[0].to_string().contains(&at));
}

#[test]
fn a_truncated_shard_fails_at_the_cut_record() {
    let (dir, info) = corrupt();
    let cut = &info["truncated"];
    let dataset = RldsDataset::open(dir.join(cut["dir"].as_str().unwrap())).unwrap();
    for mode in [OnCorrupt::Fail, OnCorrupt::Skip] {
        let results: Vec<_> = dataset.episodes("train", mode).unwrap().collect();
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        let message = results[1].as_ref().unwrap_err().to_string();
        assert!(message.contains(&format!("at byte {}", cut["cut_record_offset"])), "{message}");
        assert!(message.contains("file ends inside the record data"), "{message}");
    }
}

#[test]
fn a_missing_features_json_is_named() {
    let (dir, info) = corrupt();
    let missing = dir.join(info["missing_features"]["dir"].as_str().unwrap());
    let message = RldsDataset::open(&missing).unwrap_err().to_string();
    assert!(message.contains("features.json") && message.contains("No such file"), "{message}");
}

/// Copies a fixture dataset into a temporary folder so that a test can damage it.
fn scratch_copy(name: &str, version: &str, tag: &str) -> PathBuf {
    let from = fixtures().join(name).join(version);
    let to = std::env::temp_dir()
        .join(format!("spear-rlds-{tag}-{}", std::process::id()))
        .join(name)
        .join(version);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to
}

#[test]
fn schema_mismatches_and_missing_shards_are_named() {
    // A features.json that declares a longer state than the records hold.
    let dir = scratch_copy("bridge_dataset", "1.0.0", "shape");
    let features = std::fs::read_to_string(dir.join("features.json")).unwrap();
    let state = features.find("\"state\"").unwrap();
    let seven = state + features[state..].find("\"7\"").unwrap();
    let damaged = format!("{}\"9\"{}", &features[..seven], &features[seven + 3..]);
    std::fs::write(dir.join("features.json"), damaged).unwrap();
    let dataset = RldsDataset::open(&dir).unwrap();
    let error = dataset.episodes("train", OnCorrupt::Fail).unwrap().next().unwrap().unwrap_err().to_string();
    assert!(error.contains("bridge_dataset-train.tfrecord-00000-of-00001"), "{error}");
    assert!(error.contains("steps/observation/state"), "{error}");
    assert!(error.contains("record 0 (byte 0)"), "{error}");

    // A shard listed in dataset_info.json but absent.
    let dir = scratch_copy("fractal20220817_data", "0.1.0", "shard");
    std::fs::remove_file(dir.join("fractal20220817_data-train.tfrecord-00001-of-00002")).unwrap();
    let error = RldsDataset::open(&dir).unwrap_err().to_string();
    assert!(error.contains("dataset_info.json") && error.contains("shard 2 of 2"), "{error}");

    // An unknown split.
    let dataset = RldsDataset::open(fixtures().join("viola/0.1.0")).unwrap();
    let error = dataset.split("val").unwrap_err().to_string();
    assert!(error.contains("no split `val`") && error.contains("train"), "{error}");
}

/// Every fixture dataset rewritten episode by episode with `RldsWriter` (one episode per shard)
/// reads back with the same episodes, record for record.
#[test]
fn written_datasets_read_back_the_same() {
    use spear_data::example::{encode_example, parse_example};
    use spear_data::rlds::RldsWriter;
    for (name, version) in DATASETS {
        let source = RldsDataset::open(fixtures().join(name).join(version)).unwrap();
        let features = read_json(&source.dir.join("features.json"));
        let out =
            std::env::temp_dir().join(format!("spear-rlds-written-{}-{name}/{version}", std::process::id()));
        let mut writer =
            RldsWriter::create(&out, &source.name, &source.version, "rewritten", &features, 1).unwrap();
        let mut originals = Vec::new();
        for shard in &source.split("train").unwrap().shards {
            for record in spear_data::tfrecord::TfRecordReader::open(&shard.path, OnCorrupt::Fail).unwrap() {
                let example = parse_example(&record.unwrap()).unwrap();
                writer.write_episode("train", &example).unwrap();
                originals.push(encode_example(&example));
            }
        }
        let dir = writer.finish().unwrap();
        let written = RldsDataset::open(&dir).unwrap();
        let split = written.split("train").unwrap();
        assert_eq!(split.shards.len(), originals.len(), "{name}: one episode per shard");
        let mut again = Vec::new();
        for shard in &split.shards {
            for record in spear_data::tfrecord::TfRecordReader::open(&shard.path, OnCorrupt::Fail).unwrap() {
                let record = record.unwrap();
                again.push(encode_example(&parse_example(&record).unwrap()));
            }
        }
        assert!(again == originals, "{name}: episodes differ");
        // Decoded through the schema like any dataset.
        let episodes: Vec<_> =
            written.episodes("train", OnCorrupt::Fail).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(episodes.len(), originals.len());
        let _ = std::fs::remove_dir_all(out.parent().unwrap());
    }
}

#[test]
fn an_episode_that_does_not_fit_the_schema_is_not_written() {
    use spear_data::example::{Feature, parse_example};
    use spear_data::rlds::RldsWriter;
    let (name, version) = DATASETS[0];
    let source = RldsDataset::open(fixtures().join(name).join(version)).unwrap();
    let features = read_json(&source.dir.join("features.json"));
    let out = std::env::temp_dir().join(format!("spear-rlds-bad-{}", std::process::id()));
    let mut writer = RldsWriter::create(&out, name, version, "bad", &features, 4).unwrap();
    let shard = &source.split("train").unwrap().shards[0];
    let record = spear_data::tfrecord::TfRecordReader::open(&shard.path, OnCorrupt::Fail)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let mut example = parse_example(&record).unwrap();
    let key = example
        .keys()
        .find(|k| k.starts_with("steps/") && matches!(example[*k], Feature::Float(_)))
        .unwrap()
        .clone();
    if let Some(Feature::Float(values)) = example.get_mut(&key) {
        values.pop();
    }
    let error = writer.write_episode("train", &example).unwrap_err().to_string();
    assert!(error.contains(&key), "{error}");
    let _ = std::fs::remove_dir_all(&out);
}
