//! The whole annotation run on a synthetic scene with known boxes: every answer is checked against
//! the ground truth computed here, the skips and counts against what the scene contains, and the
//! output is read back through `spear_data::vqa` (the trainer's reader).
//!
//! Each object's pixels hold its box's 8 corners, random points inside it and two flying pixels far
//! behind it, so after outlier removal its hull's corners are exactly the box's and the fitted box
//! must be the true one.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use spear_annotate::moge::{NpyFloat, npy_points};
use spear_annotate::pipeline::{AnnotateConfig, Inputs, run};
use spear_data::tokenizer::PaliGemmaTokenizer;
use spear_data::vqa::{Segment, encode, fit_quantizer, read_examples};

const H: usize = 96;
const W: usize = 128;
const F: f64 = 100.0;

struct TrueBox {
    label: &'static str,
    center: [f64; 3],
    rotation: [[f64; 3]; 3],
    extent: [f64; 3],
    samples: Vec<[f64; 3]>,
}

impl TrueBox {
    fn corner(&self, s: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|r| {
            self.center[r] + (0..3).map(|k| self.rotation[r][k] * s[k] * self.extent[k] / 2.0).sum::<f64>()
        })
    }
    /// Corner `k` of the documented order for a box whose axes are near the camera's.
    fn ordered(&self, k: usize) -> [f64; 3] {
        self.corner(std::array::from_fn(|c| if k >> c & 1 == 1 { 1.0 } else { -1.0 }))
    }
}

fn rotation(yaw: f64, pitch: f64) -> [[f64; 3]; 3] {
    let (cy, sy, cp, sp) = (yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin());
    // R = Ry(yaw) · Rx(pitch)
    [[cy, sy * sp, sy * cp], [0.0, cp, -sp], [-sy, cy * sp, cy * cp]]
}

fn true_box(
    label: &'static str,
    center: [f64; 3],
    yaw: f64,
    extent: [f64; 3],
    n: usize,
    seed: u64,
) -> TrueBox {
    let mut b = TrueBox { label, center, rotation: rotation(yaw, 0.15), extent, samples: Vec::new() };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples: Vec<[f64; 3]> = (0..8).map(|k| b.ordered(k)).collect();
    while samples.len() < n {
        // Points strictly inside: a float32 point map puts face points off their face by
        // rounding, which would make them hull corners.
        samples.push(b.corner(std::array::from_fn(|_| rng.random_range(-0.95..0.95))));
    }
    b.samples = samples;
    b
}

struct Scene {
    boxes: Vec<TrueBox>,
    intrinsics: [f64; 4],
}

/// Writes image `key` with objects in pixel rectangles; returns the ground truth.
fn write_image(root: &Path, key: &str, json_masks: bool) -> Scene {
    let boxes = vec![
        true_box("mug", [-0.35, 0.05, 1.4], 0.3, [0.12, 0.1, 0.08], 144, 1),
        true_box("bowl", [0.3, 0.1, 2.0], -0.2, [0.3, 0.12, 0.2], 144, 2),
        true_box("cup", [0.0, -0.2, 1.8], 0.1, [0.1, 0.12, 0.1], 144, 3),
        true_box("cup", [0.1, 0.3, 1.6], 0.1, [0.1, 0.12, 0.1], 144, 4),
    ];
    let (fx, fy, cx, cy) = (F, F, W as f64 / 2.0, H as f64 / 2.0);
    // A wall at z = 3 where the top 8 rows are invalid.
    let mut points: Vec<[f32; 3]> = (0..H * W)
        .map(|i| {
            let (r, c) = (i / W, i % W);
            if r < 8 {
                return [f32::INFINITY; 3];
            }
            let z = 3.0;
            [((c as f64 + 0.5 - cx) / fx * z) as f32, ((r as f64 + 0.5 - cy) / fy * z) as f32, z as f32]
        })
        .collect();
    let mut index = vec![0u8; H * W];
    // Object k fills the 12×12 rectangle at rows 10.., columns 14·k..: samples, then 2 flying pixels.
    let rect = |k: usize| (0..144).map(move |j| (10 + j / 12) * W + 14 * k + j % 12);
    for (k, b) in boxes.iter().enumerate() {
        for (j, pixel) in rect(k).enumerate() {
            let p = if j < 142 {
                b.samples[j]
            } else {
                [b.center[0], b.center[1], b.center[2] + 1.5 + j as f64 * 0.1]
            };
            points[pixel] = p.map(|v| v as f32);
            index[pixel] = k as u8 + 1;
        }
    }
    // A flat sheet (a coplanar object) and an unlabelled blob.
    for (k, z) in [(4usize, 1.2f32), (5, 1.3)] {
        for (j, pixel) in rect(k).enumerate() {
            let (u, v) = ((j % 12) as f32 * 0.01, (j / 12) as f32 * 0.01);
            points[pixel] = if k == 4 { [u, v, z] } else { [u, v, z + (u * v * 40.0).sin() * 0.05] };
            index[pixel] = k as u8 + 1;
        }
    }
    let dir = root.join("points").join(key);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("points.npy"), npy_points(H, W, &points, NpyFloat::F32)).unwrap();
    std::fs::write(dir.join("intrinsics.json"), json!({"fx": fx, "fy": fy, "cx": cx, "cy": cy}).to_string())
        .unwrap();
    image::GrayImage::from_fn(W as u32, H as u32, |x, y| image::Luma([(x + y) as u8]))
        .save(root.join("images").join(format!("{key}.png")))
        .unwrap();
    let labels = json!({"1": "mug", "2": "bowl", "3": "cup", "4": "cup", "5": "paper"});
    if json_masks {
        // Uncompressed COCO RLE (column-major runs, starting with zeros), plus an empty instance.
        let mut list = Vec::new();
        for id in 1..=6u8 {
            let mut runs = vec![];
            let (mut current, mut run) = (false, 0u64);
            for c in 0..W {
                for r in 0..H {
                    let set = index[r * W + c] == id;
                    if set != current {
                        runs.push(run);
                        (current, run) = (set, 0);
                    }
                    run += 1;
                }
            }
            runs.push(run);
            let label = labels.get(id.to_string()).cloned().unwrap_or(serde_json::Value::Null);
            list.push(json!({"id": id, "label": label, "segmentation": {"size": [H, W], "counts": runs}}));
        }
        list.push(
            json!({"id": "ghost", "label": "ghost", "segmentation": {"size": [H, W], "counts": [H * W]}}),
        );
        std::fs::write(root.join("masks").join(format!("{key}.json")), serde_json::to_string(&list).unwrap())
            .unwrap();
    } else {
        image::GrayImage::from_raw(W as u32, H as u32, index)
            .unwrap()
            .save(root.join("masks").join(format!("{key}.png")))
            .unwrap();
    }
    Scene { boxes, intrinsics: [fx, fy, cx, cy] }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spear-annotate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["images", "points", "masks"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    dir
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

fn config() -> AnnotateConfig {
    let mut config = AnnotateConfig { shard_size: 1, ..AnnotateConfig::default() };
    // Sparse synthetic samples: corners sit further from their neighbours than real surface
    // points do, so cut outliers a little less eagerly than the default 2.0.
    config.geometry.std_ratio = 5.0;
    // Every pixel of an object's rectangle holds one of its samples.
    config.geometry.erode_px = 0;
    config.qa.examples_per_image = 12;
    config
}

#[test]
fn a_synthetic_scene_gets_its_true_answers() {
    let root = temp_dir("e2e");
    let scene = write_image(&root, "a", false);
    write_image(&root, "b", true);
    // An image without masks is skipped and counted.
    std::fs::copy(root.join("images/a.png"), root.join("images/c.png")).unwrap();
    std::fs::create_dir_all(root.join("points/c")).unwrap();
    let labels = root.join("labels.json");
    std::fs::write(
        &labels,
        json!({"a": {"1": "mug", "2": "bowl", "3": "cup", "4": "cup", "5": "paper"}}).to_string(),
    )
    .unwrap();
    let inputs = Inputs {
        images: root.join("images"),
        points: root.join("points"),
        masks: root.join("masks"),
        labels: Some(labels.clone()),
    };
    let out = root.join("out");
    let manifest = run(&inputs, &out, &config(), &|_, _| {}).unwrap();
    let c = &manifest.counts;
    assert_eq!((c.images, c.annotated_images, c.objects), (3, 2, 4), "{c:?}");
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(c.skipped_images.get("missing_masks"), Some(&1));
    // Per annotated image: two cups (ambiguous), the flat sheet; image a's blob has no label,
    // image b's ghost an empty mask and its blob no label either.
    assert_eq!(c.skipped_objects.get("duplicate_label"), Some(&4));
    assert_eq!(
        c.skipped_objects.get("degenerate").unwrap_or(&0) + c.skipped_objects.get("flat").unwrap_or(&0),
        2
    );
    assert_eq!(c.skipped_objects.get("no_label"), Some(&2));
    assert_eq!(c.skipped_objects.get("empty_mask"), Some(&1));
    assert_eq!(c.tasks.len(), 6, "all six families drawn: {:?}", c.tasks);

    let [fx, fy, cx, cy] = scene.intrinsics;
    let truth = |label: &str| scene.boxes.iter().find(|b| b.label == label).unwrap();
    let mut checked = 0;
    for shard in &manifest.shards {
        for example in read_examples(out.join(shard)).unwrap() {
            assert!(example.image.is_file(), "{}", example.image.display());
            assert!((1..=4).contains(&example.pairs.len()));
            for pair in &example.pairs {
                let q = &pair.question;
                assert!(!q.contains("cup") && !q.contains("paper") && !q.contains("ghost"), "{q}");
                let coords: Vec<f64> = pair
                    .answer
                    .iter()
                    .flat_map(|s| match s {
                        Segment::Coords { coords } => coords.clone(),
                        _ => vec![],
                    })
                    .collect();
                // The first object named in the question is `a`.
                let (mug_at, bowl_at) = (q.find("mug"), q.find("bowl"));
                let (a, b) = match (mug_at, bowl_at) {
                    (Some(m), Some(w)) if w < m => (truth("bowl"), Some(truth("mug"))),
                    (Some(_), Some(_)) => (truth("mug"), Some(truth("bowl"))),
                    (Some(_), None) => (truth("mug"), None),
                    _ => (truth("bowl"), None),
                };
                let corners: Vec<[f64; 3]> = (0..8).map(|k| a.ordered(k)).collect();
                let norm = |p: [f64; 3]| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
                let closest =
                    |t: &TrueBox| *t.samples.iter().min_by(|x, y| norm(**x).total_cmp(&norm(**y))).unwrap();
                match pair.task.as_deref().unwrap() {
                    "box" => assert!(close(&coords, &corners.concat(), 1e-6), "{q}: {coords:?}"),
                    "keypoints" => {
                        let furthest =
                            *a.samples.iter().max_by(|x, y| norm(**x).total_cmp(&norm(**y))).unwrap();
                        let want = [closest(a), furthest, a.center].concat();
                        assert!(close(&coords, &want, 1e-6), "{q}: {coords:?} vs {want:?}");
                    }
                    "distance" => {
                        let b = b.unwrap();
                        let d: Vec<f64> = (0..3).map(|i| b.center[i] - a.center[i]).collect();
                        let want = [vec![norm([d[0], d[1], d[2]])], d].concat();
                        assert!(close(&coords, &want, 1e-6), "{q}");
                    }
                    "box_distance" => {
                        let b = b.unwrap();
                        let mut want: Vec<f64> = (0..8)
                            .flat_map(|k| (0..3).map(move |i| (k, i)))
                            .map(|(k, i)| b.ordered(k)[i] - a.ordered(k)[i])
                            .collect();
                        want.extend((0..3).map(|i| b.center[i] - a.center[i]));
                        assert!(close(&coords, &want, 1e-6), "{q}: {coords:?} vs {want:?}");
                    }
                    "backprojection" => {
                        let locs: Vec<f64> = pair
                            .answer
                            .iter()
                            .flat_map(|s| match s {
                                Segment::Loc { loc } => loc.to_vec(),
                                _ => vec![],
                            })
                            .collect();
                        let want: Vec<f64> = corners
                            .iter()
                            .flat_map(|p| {
                                [(fy * p[1] / p[2] + cy) / H as f64, (fx * p[0] / p[2] + cx) / W as f64]
                            })
                            .collect();
                        assert!(close(&locs, &want, 1e-6), "{q}: {locs:?} vs {want:?}");
                    }
                    "closer" => {
                        let b = b.unwrap();
                        let (da, db) = (norm(closest(a)), norm(closest(b)));
                        assert!(close(&coords, &[da, db], 1e-6), "{q}");
                        let text = pair.text.as_deref().unwrap();
                        let nearer = if da < db { a.label } else { b.label };
                        assert!(text.ends_with(&format!("so the {nearer} is closer.")), "{text}");
                    }
                    other => panic!("unknown task {other}"),
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "{checked} pairs checked");

    // Every example becomes SPEAR-VLM tokens: a quantiser fitted to the set, PaliGemma's tokenizer.
    let examples: Vec<_> = manifest.shards.iter().flat_map(|s| read_examples(out.join(s)).unwrap()).collect();
    let quantizer = fit_quantizer(&examples, 1024).unwrap();
    let tokenizer = PaliGemmaTokenizer::from_file(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../spear-models/tests/fixtures/paligemma-tiny/tokenizer.json"),
    )
    .unwrap();
    for example in &examples {
        let tokens = encode(&example.pairs, &tokenizer, &quantizer, 257_216).unwrap();
        let values: usize = example
            .pairs
            .iter()
            .flat_map(|p| &p.answer)
            .map(|s| if let Segment::Coords { coords } = s { coords.len() } else { 0 })
            .sum();
        assert_eq!(tokens.is_3d.iter().filter(|&&b| b).count(), values);
    }

    // Same inputs, same bytes; a re-run reuses every shard; a changed input redoes only its shard.
    let again = root.join("again");
    let second = run(&inputs, &again, &config(), &|_, _| {}).unwrap();
    assert_eq!(second.fingerprint, manifest.fingerprint);
    for shard in &manifest.shards {
        assert_eq!(std::fs::read(out.join(shard)).unwrap(), std::fs::read(again.join(shard)).unwrap());
    }
    let resumed = run(&inputs, &out, &config(), &|_, _| {}).unwrap();
    assert_eq!((resumed.reused_shards, resumed.counts.clone()), (3, manifest.counts.clone()));
    std::fs::write(&labels, json!({"a": {"1": "mug", "2": "pot", "3": "cup", "4": "cup"}}).to_string())
        .unwrap();
    let changed = run(&inputs, &out, &config(), &|_, _| {}).unwrap();
    assert_eq!(changed.reused_shards, 2);
    assert_ne!(changed.fingerprint, manifest.fingerprint);
    assert_eq!(changed.input_hashes.len(), 3);

    // Lines that are not the ones their statistics describe (a run interrupted between writing
    // a shard's lines and its statistics, a hand edit) are redone.
    std::fs::write(out.join("shard-00001.jsonl"), "").unwrap();
    let redone = run(&inputs, &out, &config(), &|_, _| {}).unwrap();
    assert_eq!(redone.reused_shards, 2);
    assert_eq!(redone.counts, changed.counts);
    // Moving the images changes where the examples point: every shard is redone.
    std::fs::rename(root.join("images"), root.join("moved")).unwrap();
    let moved = Inputs { images: root.join("moved"), ..inputs.clone() };
    let after_move = run(&moved, &out, &config(), &|_, _| {}).unwrap();
    assert_eq!(after_move.reused_shards, 0);
    let first = read_examples(out.join("shard-00000.jsonl")).unwrap();
    assert!(first[0].image.starts_with(root.join("out/../moved")), "{}", first[0].image.display());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn images_may_be_resized_but_labels_are_compared_without_case() {
    let root = temp_dir("resized");
    write_image(&root, "a", false);
    // The image at twice the point map's size (MoGe ran with --resize): accepted.
    image::GrayImage::new(2 * W as u32, 2 * H as u32).save(root.join("images/a.png")).unwrap();
    let labels = root.join("labels.json");
    std::fs::write(&labels, json!({"a": {"1": "Mug", "2": "mug", "3": "cup", "4": "bowl"}}).to_string())
        .unwrap();
    let inputs = Inputs {
        images: root.join("images"),
        points: root.join("points"),
        masks: root.join("masks"),
        labels: Some(labels),
    };
    let manifest = run(&inputs, &root.join("out"), &config(), &|_, _| {}).unwrap();
    assert!(manifest.counts.errors.is_empty(), "{:?}", manifest.counts.errors);
    // "Mug" and "mug" are one label used twice.
    assert_eq!(manifest.counts.skipped_objects.get("duplicate_label"), Some(&2));
    assert_eq!(manifest.counts.objects, 2);
    // Another shape is an error naming the image.
    image::GrayImage::new(W as u32, W as u32).save(root.join("images/a.png")).unwrap();
    let manifest = run(&inputs, &root.join("out"), &config(), &|_, _| {}).unwrap();
    let (_, error) = &manifest.counts.errors[0];
    assert!(error.contains("a.png") && error.contains("shape"), "{error}");
    // A shard with errors is never reused (the error may have been passing).
    let again = run(&inputs, &root.join("out"), &config(), &|_, _| {}).unwrap();
    assert_eq!((again.reused_shards, again.counts.errors.len()), (0, 1));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn unusable_inputs_are_reported_by_file() {
    let root = temp_dir("errors");
    write_image(&root, "a", false);
    // A mask of the wrong size.
    image::GrayImage::from_fn(10, 10, |x, _| image::Luma([(x % 2) as u8]))
        .save(root.join("masks/a.png"))
        .unwrap();
    let inputs = Inputs {
        images: root.join("images"),
        points: root.join("points"),
        masks: root.join("masks"),
        labels: None,
    };
    let manifest = run(&inputs, &root.join("out"), &config(), &|_, _| {}).unwrap();
    let (key, error) = &manifest.counts.errors[0];
    assert_eq!(key, "a");
    assert!(error.contains("a.png") && error.contains("[10, 10]"), "{error}");
    // A point map of the wrong shape.
    std::fs::write(root.join("points/a/points.npy"), b"\x93NUMPY\x01\x00\x10\x00{'descr': '<i4'}").unwrap();
    let manifest = run(&inputs, &root.join("out"), &config(), &|_, _| {}).unwrap();
    let (_, error) = &manifest.counts.errors[0];
    assert!(error.contains("points.npy") && error.contains("float32 or float64"), "{error}");
    // Bad parameters are refused before anything runs.
    let mut bad = config();
    bad.qa.max_pairs = 0;
    assert!(run(&inputs, &root.join("out"), &bad, &|_, _| {}).unwrap_err().to_string().contains("max_pairs"));
    let _ = std::fs::remove_dir_all(&root);
}
